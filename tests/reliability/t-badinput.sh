#!/bin/bash
# Bad input, each through the part that reads it: malformed pkcs11: URIs (provider via
# openssl storeutl, shim configuration, tool), broken configuration files (shim and
# provider), PEM-URI key files (garbage, truncated, wrong label, valid label with
# garbage DER, over-long URI, valid ones naming what is not there), and malformed or
# oversized objects ON THE TOKEN (certificates with garbage or truncated DER, a 60 KB
# CKA_LABEL, CKA_ID or CKA_VALUE, public keys with garbage or huge key material, a
# private key with garbage parameters), made with rel-obj.
#
# Every case: the program ends by itself (at most 30 s), with no crash and no sanitizer
# report, and says clearly what is wrong. Programs that merely use the shim go on
# without a client certificate.
# Functions run through clean's "bash -c" are exported, not called directly.
# shellcheck disable=SC2016,SC2030,SC2031,SC2119,SC2317
source "$(dirname "$0")/common.sh"
fx_workdir reliability-badinput
if ! fx_token || ! fx_ca; then bail_out "fixtures could not be built"; fi
fx_nginx_start nginx optional || bail_out "nginx did not start"
NP=$FX_NGINX_PORT
L=$FX_TOKEN_LABEL
export P11MTLS_PROVIDER=$P11M_PROVIDER
TOOL=$P11M_TOOL
LEGACY=$P11M_BUILDDIR/tests/shim/legacy-client

# clean DESC REGEX CMD...: CMD (a program or an exported function) ends by itself without
# a crash and its output matches the extended regex REGEX.
clean() {
    local desc=$1 re=$2 out rc=0
    shift 2

    out=$WORK/case-$((FX_TAP_N + 1)).out
    timeout 30 bash -c '"$@"' _ "$@" </dev/null >"$out" 2>&1 || rc=$?
    if [ "$rc" -gt 128 ] || [ "$rc" -eq 124 ] ||
        grep -Eq 'ERROR: AddressSanitizer|runtime error:' "$out"; then
        rel_no_crash "$desc" "$rc" "$out"
    elif grep -Eq -- "$re" "$out"; then
        ok "$desc"
    else
        fail "$desc" "exit status $rc, no line matches: $re" "$(tail -n 12 "$out")"
    fi
}

# shim_clean DESC CONF REGEX: the legacy client (no certificate code) under the shim with
# CONF against nginx (asks for a certificate, does not insist) still gets its answer,
# without a certificate, and the shim's log matches REGEX.
shim_clean() {
    local desc=$1 conf=$2 re=$3 out rc=0

    out=$WORK/case-$((FX_TAP_N + 1)).out
    : >shim.log
    rel_shim "$conf" timeout 30 "$LEGACY" -c "$FX_CA_ROOT" -t 5 -n localhost 127.0.0.1 "$NP" \
        </dev/null >"$out" 2>&1 || rc=$?
    cat shim.log >>"$out"
    if [ "$rc" -gt 128 ] || [ "$rc" -eq 124 ] ||
        grep -Eq 'ERROR: AddressSanitizer|runtime error:' "$out"; then
        rel_no_crash "$desc" "$rc" "$out"
    elif [ "$rc" -ne 0 ] || ! grep -q 'verify=NONE' "$out"; then
        fail "$desc" "the client did not get its answer without a certificate (exit $rc)" \
            "$(tail -n 12 "$out")"
    elif grep -Eq -- "$re" shim.log; then
        ok "$desc"
    else
        fail "$desc" "no shim log line matches: $re" "$(tail -n 12 "$out")"
    fi
}

# conf_with KEY CERT: a shim config for localhost with that key and certificate
conf_with() {
    local out=$WORK/shim-$((FX_TAP_N + 1)).conf
    rel_shim_conf "$out" p256 localhost
    sed -i -e "s|^key = .*|key = $1|" -e "s|^cert = .*|cert = $2|" "$out"
    echo "$out"
}

plan 85

# ------------------------------------------------------------------ malformed URIs
rel_provider_cnf
long=$(head -c 100000 /dev/zero | tr '\0' a)
many=$(for i in $(seq 1000); do printf 'object=x%d;' "$i"; done)
storeutl() { rel_osl storeutl -noout "$@"; }
export -f storeutl rel_osl fx_preload_env
clean "provider: bad percent-encoding" "bad pkcs11 URI.*encoding" storeutl "pkcs11:token=%zz"
clean "provider: truncated percent-encoding" "bad pkcs11 URI.*encoding" \
    storeutl "pkcs11:token=$L;id=%0"
clean "provider: empty attributes" "bad pkcs11 URI.*syntax" storeutl "pkcs11:;;;;"
clean "provider: unknown type" "bad pkcs11 URI" storeutl "pkcs11:token=$L;type=nonsense"
clean "provider: NUL in an object label" "Total found: 0" storeutl "pkcs11:token=$L;object=%00p256"
clean "provider: 100 KB object label" "Total found: 0" storeutl "pkcs11:token=$L;object=$long"
clean "provider: 1000 attributes" "Total found: 0" storeutl "pkcs11:token=$L;$many"
clean "provider: module-path that is not a module" "not loadable.*invalid ELF header" \
    storeutl "pkcs11:token=$L?module-path=/etc/passwd"
clean "provider: 5000-byte module-path" "not loadable" \
    storeutl "pkcs11:token=$L?module-path=/$(head -c 5000 /dev/zero | tr '\0' m)"
clean "provider: unknown module-name" "no such module registered" \
    storeutl "pkcs11:token=$L?module-name=no-such-module"

clean "tool: bad percent-encoding" "bad pkcs11 URI|URI encoding" "$TOOL" list "pkcs11:token=%zz"
clean "tool: 100 KB object label" "." "$TOOL" list "pkcs11:token=$L;object=$long"
clean "tool: 1000 attributes" "." "$TOOL" list "pkcs11:token=$L;$many"

shim_clean "shim: key URI with bad percent-encoding" "$(conf_with "pkcs11:token=%zz" "$(fx_cert_uri p256)")" \
    "not presented: no private key at pkcs11:token=%zz.*bad pkcs11 URI"
shim_clean "shim: 100 KB key URI" "$(conf_with "pkcs11:token=$L;object=$long" "$(fx_cert_uri p256)")" \
    "not presented: no private key at pkcs11:token=$L;object=aaaa"
shim_clean "shim: key URI naming a module that is not one" \
    "$(conf_with "pkcs11:token=$L;id=%03;type=private?module-path=/etc/passwd" "$(fx_cert_uri p256)")" \
    "not presented: no private key at .*not loadable"

# ------------------------------------------------------------------ configuration files
shim_cfg() { # DESC FILE REGEX: the shim's one error line, the program unaffected
    local desc=$1 file=$2 re=$3 out rc=0

    out=$WORK/case-$((FX_TAP_N + 1)).out
    : >shim.log
    rel_shim "$file" timeout 30 "$LEGACY" -c "$FX_CA_ROOT" -t 5 -n localhost 127.0.0.1 "$NP" \
        </dev/null >"$out" 2>&1 || rc=$?
    cat shim.log >>"$out" # where a file that parses sends its errors
    if [ "$rc" -gt 128 ] || [ "$rc" -eq 124 ] ||
        grep -Eq 'ERROR: AddressSanitizer|runtime error:' "$out"; then
        rel_no_crash "$desc" "$rc" "$out"
    elif [ "$rc" -ne 0 ] || ! grep -q 'verify=NONE' "$out"; then
        fail "$desc" "the program was affected (exit $rc)" "$(tail -n 8 "$out")"
    elif [ "$(grep -c 'p11mtls\[[0-9]*\]: error: config: ' "$out")" -ge 1 ] &&
        grep -Eq -- "$re" "$out"; then
        ok "$desc"
    else
        fail "$desc" "expected a config error matching: $re" "$(tail -n 8 "$out")"
    fi
}
head -c 4000 /dev/urandom >garbage.conf
rel_shim_conf good.conf p256 localhost
head -n 2 good.conf >truncated.conf # a section header cut short, whatever the paths
echo "[p11mtls" >>truncated.conf
head -c 2000000 /dev/zero | tr '\0' '#' >huge.conf
mkfifo fifo.conf
{ cat good.conf; echo "bogus = \$undefined_variable"; } >undefvar.conf
{ cat good.conf; echo "[rule_named]"; echo "match = $(head -c 500000 /dev/zero | tr '\0' x).example"; } >longline.conf
sed 's/^identities = ids/identities = p11mtls/' good.conf >selfref.conf
sed 's/^match = localhost$/match = evil\\nok localhost/' good.conf >newline.conf
shim_cfg "shim config: random bytes" garbage.conf "garbage.conf"
shim_cfg "shim config: truncated mid-section" truncated.conf "truncated.conf:[0-9]+: syntax error"
shim_cfg "shim config: 2 MB" huge.conf "huge.conf: cannot read: larger than 1 MiB"
shim_cfg "shim config: a FIFO does not stall the program (shim fix)" fifo.conf \
    "fifo.conf: cannot read: not a regular file"
shim_cfg "shim config: a directory" "$WORK" "cannot read: not a regular file"
shim_cfg "shim config: /dev/zero" /dev/zero "/dev/zero: cannot read: not a regular file"
shim_cfg "shim config: undefined \$variable" undefvar.conf "undefvar.conf:[0-9]+: syntax error"
shim_cfg "shim config: 500 KB pattern" longline.conf "bad pattern"
shim_cfg "shim config: identities section pointing back at [p11mtls]" selfref.conf \
    "selfref.conf: .*unknown key"
shim_cfg "shim config: a \\n escape in a pattern: still one error line (shim fix)" newline.conf \
    'bad pattern "evil\?ok": not a host name'
clean "tool doctor: ... and one line there too" '^FAIL  config .*bad pattern "evil\?ok": not a host name' \
    "$TOOL" doctor --config "$WORK/newline.conf"
rules=$(for i in $(seq 3000); do echo "r$i = rule_r$i"; done)
{
    sed '/^\[rules\]/,$d' good.conf
    echo "[rules]"
    echo "$rules"
    for i in $(seq 3000); do printf '[rule_r%d]\nmatch = host%d.example\nidentity = device\n' "$i" "$i"; done
} >manyrules.conf
sed -i 's/^r3000 = rule_r3000$/r3000 = rule_r3000\nlast = rule_named/' manyrules.conf
printf '[rule_named]\nmatch = localhost\nidentity = device\n' >>manyrules.conf
: >shim.log
rel_shim "$WORK/manyrules.conf" timeout 30 "$LEGACY" -c "$FX_CA_ROOT" -t 5 -n localhost \
    127.0.0.1 "$NP" </dev/null >"case-$((FX_TAP_N + 1)).out" 2>&1
like "shim config: 3001 rules, the last one matching, still presents" \
    "$(cat "case-$((FX_TAP_N + 1)).out" shim.log)" "verify=SUCCESS.*rule=last identity=device: presented"

prov_cfg() { # DESC REGEX LINE: the provider section plus LINE
    local desc=$1 re=$2
    rel_provider_cnf
    echo "$3" >>"$WORK/openssl.cnf"
    clean "$desc" "$re" storeutl "$(fx_cert_uri p256)"
    rel_provider_cnf
}
prov_cfg "provider config: debug-level = 99" "debug-level.*expected a number 0..9" "debug-level = 99"
prov_cfg "provider config: unknown parameter" "unknown parameter.*frobnicate" "frobnicate = 1"
prov_cfg "provider config: empty pin-source" "pin-source.*expected file:PATH or env:NAME" "pin-source ="
prov_cfg "provider config: debug file in a missing directory" \
    "debug file.*/nonexistent/dir/x.log" $'debug-level = 1\ndebug-file = /nonexistent/dir/x.log'
prov_cfg "provider config: /dev/null as module" "module not loadable.*/dev/null" "pkcs11-module = /dev/null"
prov_cfg "provider config: 100 KB module path" "module not loadable" \
    "pkcs11-module = /$(head -c 100000 /dev/zero | tr '\0' y)"
prov_cfg "provider config: 100 KB init args (SoftHSM ignores them)" "Total found: 1" \
    "pkcs11-init-args = $(head -c 100000 /dev/zero | tr '\0' x)"

# ------------------------------------------------------------------ PEM-URI key files
# The provider serves PEM-URI key files only with pem-uri-files = yes.
rel_provider_cnf pem-uri-files=yes
mkdir -p pem
# mkpem NAME DESCRIPTION URI: the PEM-URI structure, made independently of p11mtls
mkpem() {
    printf 'asn1=SEQUENCE:seq\n[seq]\ndesc=VISIBLESTRING:%s\nuri=UTF8String:%s\n' \
        "${2//#/\\#}" "${3//#/\\#}" >"pem/$1.cnf"
    rel_openssl asn1parse -genconf "pem/$1.cnf" -out "pem/$1.der" -noout &&
        { echo "-----BEGIN PKCS#11 PROVIDER URI-----"; base64 -w64 "pem/$1.der"
          echo "-----END PKCS#11 PROVIDER URI-----"; } >"pem/$1.pem"
}
D="PKCS#11 Provider URI v1.0"
mkpem good "$D" "$(fx_key_uri p256)"
mkpem longuri "$D" "pkcs11:token=$L;object=$(head -c 5000 /dev/zero | tr '\0' a)"
mkpem hugeder "$D" "pkcs11:token=$L;object=$(head -c 9000 /dev/zero | tr '\0' a)"
mkpem baddesc "Not the description" "$(fx_key_uri p256)"
mkpem notpkcs11 "$D" "file:/etc/passwd"
mkpem notoken "$D" "pkcs11:token=no-such-token;id=%03;type=private"
mkpem module "$D" "$(fx_key_uri p256)?module-path=/etc/passwd"
head -c 500 /dev/urandom >pem/garbage.pem
head -c 100 pem/good.pem >pem/truncated.pem
sed 's/PROVIDER URI/PROVIDER URL/' pem/good.pem >pem/wronglabel.pem
{ echo "-----BEGIN PKCS#11 PROVIDER URI-----"; head -c 300 /dev/urandom | base64 -w64
  echo "-----END PKCS#11 PROVIDER URI-----"; } >pem/garbageder.pem
pkey() { rel_osl pkey -pubout -in "$1"; }
export -f pkey
clean "PEM-URI control: a good file reads as the token key" "BEGIN PUBLIC KEY" pkey pem/good.pem
# With no PIN source at all, the PIN comes from the program's passphrase callback, at load.
sign_nopin() { # PASSIN
    echo x | OPENSSL_CONF=$WORK/nopin.cnf rel_osl dgst -sha256 -hex -sign pem/good.pem -passin "$1"
}
export -f sign_nopin
sed '/^pin-source/d' "$OPENSSL_CONF" >"$WORK/nopin.cnf"
clean "PEM-URI without a pin-source: dgst -sign logs in with the -passin PIN" \
    "= [0-9a-f]{100,}" sign_nopin "file:$FX_PIN_FILE"
# OpenSSL drops a decoder's errors (it tries the next one): the debug log says why.
clean "PEM-URI without a pin-source: a wrong -passin PIN is refused at load" \
    "p11mtls\[[0-9]+\]: error: .*PIN incorrect" env P11MTLS_DEBUG=1 bash -c 'sign_nopin pass:000000'

for f in garbage truncated wronglabel garbageder longuri hugeder baddesc; do
    clean "PEM-URI $f: openssl pkey refuses it" "Could not read key from pem/$f.pem" pkey "pem/$f.pem"
    clean "PEM-URI $f: tool pem-uri --show says it is not one" "is not a \"PKCS#11 PROVIDER URI\" PEM file" \
        "$TOOL" pem-uri --show "pem/$f.pem"
done
# Valid files naming what is not there: OpenSSL 3.0's file store drops decoder errors,
# so the program says only "Could not read key"; the reason is in the debug log.
for f in notpkcs11:"not a pkcs11: URI" notoken:"no token .* matches the URI" \
    module:"may not name a module-path"; do
    why=${f#*:} f=${f%%:*}
    clean "PEM-URI naming $f: refused, the debug log says why" "p11mtls\[[0-9]+\]: error: .*$why" \
        env P11MTLS_DEBUG=1 bash -c 'pkey "$1"' _ "pem/$f.pem"
done
clean "PEM-URI as s_client -key: a garbage file is refused" "(unable to load|Could not read) .*key" \
    rel_osl s_client -connect "127.0.0.1:$NP" -cert "$FX_DEV_CERT_p256" -key pem/garbageder.pem
# The shim's provider reads PEM-URI key files when its provider_params say so; the PIN
# comes from the provider's pin-source or, without one, from the identity's pin_source
# (the provider's decoder asks the shim's UI method, at load).
pem_conf() { # KEYFILE [PROVIDER_PIN_SOURCE]
    local out
    out=$(REL_MAIN_EXTRA="provider_params = pp" conf_with "$1" "$(fx_cert_uri p256)")
    printf '[pp]\npem-uri-files = yes\n' >>"$out"
    [ "${2-file:$FX_PIN_FILE}" = none ] || printf 'pin-source = %s\n' "${2-file:$FX_PIN_FILE}" >>"$out"
    echo "$out"
}
N=$((FX_TAP_N + 1))
: >shim.log
rel_shim "$(pem_conf "$WORK/pem/good.pem")" timeout 30 "$LEGACY" -c "$FX_CA_ROOT" -t 5 \
    -n localhost 127.0.0.1 "$NP" </dev/null >"case-$N.out" 2>&1
like "shim control: a good PEM-URI key file is presented" "$(cat "case-$N.out" shim.log)" \
    "verify=SUCCESS.*presented subject=\"/CN=device-p256/UID=dev-p256\""
N=$((FX_TAP_N + 1))
: >shim.log
rel_shim "$(pem_conf "$WORK/pem/good.pem" none)" timeout 30 "$LEGACY" -c "$FX_CA_ROOT" -t 5 \
    -n localhost 127.0.0.1 "$NP" </dev/null >"case-$N.out" 2>&1
like "shim: a PEM-URI key file takes the identity's pin_source when the provider has none" \
    "$(cat "case-$N.out" shim.log)" "verify=SUCCESS.*presented subject=\"/CN=device-p256/UID=dev-p256\""
N=$((FX_TAP_N + 1))
: >shim.log
rel_shim "$(REL_PIN_SOURCE=env:P11M_NO_SUCH_VAR pem_conf "$WORK/pem/good.pem" none)" timeout 30 \
    "$LEGACY" -c "$FX_CA_ROOT" -t 5 -n localhost 127.0.0.1 "$NP" </dev/null >"case-$N.out" 2>&1
like "shim: ... and says so when that pin_source gives no PIN" "$(cat "case-$N.out" shim.log)" \
    "not presented: no private key at .*good.pem.*P11M_NO_SUCH_VAR"
shim_clean "shim: key file with a garbage PEM-URI" "$(pem_conf "$WORK/pem/garbageder.pem")" \
    "not presented: no private key at .*garbageder.pem"
shim_clean "shim: key file with a PEM-URI naming no token" "$(pem_conf "$WORK/pem/notoken.pem")" \
    "not presented: no private key at .*notoken.pem"

# ------------------------------------------------------------------ objects on the token
obj() { "$REL_OBJ" "$FX_TOKEN_URI" "file:$FX_PIN_FILE" "$@" >/dev/null; }
rel_openssl x509 -in "$FX_DEV_CERT_p256" -outform DER -out p256.der
head -c 200 p256.der >truncated.der
# a valid certificate of about 60 KB (a long comment extension), same key as p256
printf 'basicConstraints = critical, CA:FALSE\nextendedKeyUsage = clientAuth\nnsComment = %s\n' \
    "$(head -c 59000 /dev/zero | tr '\0' c)" >big.ext
rel_openssl x509 -new -force_pubkey "$FX_PUB_p256" -subj "/CN=big-cert/UID=big" -CA "$FX_CA_INTER" \
    -CAkey "$FX_CA_INTER_KEY" -days 30 -extfile big.ext -outform DER -out big.der 2>/dev/null
if obj cert 06 garbage-der @300 && obj cert 07 truncated-der truncated.der &&
    obj cert 08 @60000 p256.der && obj cert 09 huge-value @60000 && obj cert @60000 huge-id p256.der &&
    obj cert 0a big-cert big.der && obj ecpub 0b bad-ec @40 @70 && obj rsapub 0c huge-rsa @60000 &&
    obj ecpriv 0d bad-priv @20 @32 && obj cert 0d bad-priv p256.der; then
    ok "rel-obj put 10 malformed or oversized objects on the token"
else
    fail "rel-obj put 10 malformed or oversized objects on the token"
fi

rel_provider_cnf
clean "provider: listing the whole token still shows the 5 good certificates" \
    "Total found: 1[0-9]" storeutl "$FX_TOKEN_URI"
clean "provider: ... and names the 60 KB label and id it skipped" \
    "CKA_LABEL is 60000 bytes, over the 4096 that p11mtls reads; object skipped" \
    storeutl "$FX_TOKEN_URI"
clean "provider: ... (the id)" "CKA_ID is 60000 bytes, over the 4096" storeutl "$FX_TOKEN_URI"
clean "provider: garbage certificate DER is refused" "Total found: 0" storeutl "pkcs11:token=$L;id=%06"
clean "provider: truncated certificate DER is refused" "Total found: 0" storeutl "pkcs11:token=$L;id=%07"
clean "provider: ... with an error that names the certificate" \
    "certificate 'truncated-der' on the token: OpenSSL cannot decode its 200 bytes" \
    storeutl "pkcs11:token=$L;id=%07"
clean "provider: certificate with a 60 KB label" "Total found: 0" storeutl "pkcs11:token=$L;id=%08"
clean "provider: 60 KB garbage CKA_VALUE" "Total found: 0" storeutl "pkcs11:token=$L;id=%09"
clean "provider: a valid 60 KB certificate is read whole" "Total found: 1" \
    storeutl -certs "pkcs11:token=$L;id=%0a"
clean "provider: EC public key with garbage parameters" "'bad-ec': key type .* not usable" \
    storeutl "pkcs11:token=$L;id=%0b"
clean "provider: RSA public key with a 480000-bit modulus" "'huge-rsa': key type .* not usable" \
    storeutl "pkcs11:token=$L;id=%0c"
clean "provider: s_client with a garbage certificate from the token" "(unable to load|Could not read|Could not find) .*cert" \
    rel_osl s_client -connect "127.0.0.1:$NP" -cert "pkcs11:token=$L;id=%06;type=cert" \
    -key "$(fx_key_uri p256)"
clean "provider: signing with a private key whose parameters are garbage fails cleanly" \
    "p11mtls:.*(C_SignInit|C_Sign|mechanism|token error)" \
    bash -c "echo x | rel_osl dgst -sha256 -sign 'pkcs11:token=$L;id=%0d;type=private' -out /dev/null"

for c in 06:"no certificate at" 07:"no certificate at" 08:"no certificate at" 09:"no certificate at"; do
    id=${c%%:*} why=${c#*:}
    shim_clean "shim: certificate $id from the token is unusable" \
        "$(conf_with "$(fx_key_uri p256)" "pkcs11:token=$L;id=%$id;type=cert")" "not presented: $why"
done
shim_clean "shim: key with garbage parameters: the test signature fails, nothing sent" \
    "$(conf_with "pkcs11:token=$L;id=%0d;type=private" "pkcs11:token=$L;id=%0d;type=cert")" \
    "not presented: test signature failed"
shim_clean "shim: key whose public half is garbage" \
    "$(conf_with "pkcs11:token=$L;id=%0b;type=private" "$(fx_cert_uri p256)")" "not presented: no private key at"
: >shim.log
rel_shim_ext "$(conf_with "$(fx_key_uri p256)" "pkcs11:token=$L;id=%07;type=cert")" timeout 30 \
    curl -sS --max-time 10 --cacert "$FX_CA_ROOT" "https://localhost:$NP/" >"case-$((FX_TAP_N + 1)).out" 2>&1
like "shim: curl with a truncated certificate on the token goes on without one" \
    "$(cat "case-$((FX_TAP_N + 1)).out" shim.log)" "verify=NONE.*not presented: no certificate at"

clean "tool: list survives the bad objects and marks them" \
    "object=garbage-der;type=cert.*[[:space:]]+\(not an X.509 certificate p11mtls can read\)" \
    bash -c "$TOOL list 2>&1 | tr '\n' ' '"
clean "tool: list shows the 60 KB certificate" "object=big-cert" "$TOOL" list
clean "tool: list names the unreadable ones" "CKA_LABEL is 60000 bytes, over the 4096" "$TOOL" list
finish
