#!/bin/bash
# A second software token, NSS softokn, reached only through p11-kit's registration:
# the default-module path real deployments use. No --module, no pkcs11-module: the tool,
# the provider and the preload library load p11-kit's proxy, which loads softokn because
# a module file in ~/.config/pkcs11/modules/ registers it (with the x-init-reserved
# parameters softokn takes: its database directory). p11-kit reads that user
# configuration only for unprivileged users, so, run as root (as CI does), every
# command that uses the token runs as nobody (setpriv) with a private HOME; run as
# another user, as that user. Nothing is registered system-wide: /etc/pkcs11 and
# /usr/share/p11-kit stay as they are for every other program on the machine.
#
# On that token: `p11mtls list` shows it (and only the registration brings it);
# `key generate` makes an EC P-256 key on it; `csr` signs a request there, the fixture
# CA issues the certificate and `cert import` stores it (and the intermediate) next to
# the key; openssl s_client (TLS 1.2, 1.3) and a C client present it to s_server
# through the provider; curl under `p11mtls run` presents it to nginx; doctor checks
# it; fork, and a wrong PIN (refused once, never tried again by another process). With a
# second PIN-protected token (SoftHSM2) behind the same proxy, a key URI naming no token
# never tries softokn's PIN on it.
# shellcheck disable=SC2016 # single-quoted strings are expanded by the user's shell
source "$(dirname "$0")/common.sh"
fx_workdir provider-p11kit-nss
fx_ca || bail_out "CA fixture could not be built"
: "${P11M_TOOL:=$P11M_BUILDDIR/tokens/p11mtls}"
: "${P11M_PRELOAD:=$P11M_BUILDDIR/shim/libp11mtls-preload.so}"
SOFTOKN=/usr/lib/$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)/libsoftokn3.so
[ -f "$SOFTOKN" ] || bail_out "NSS softokn not found at $SOFTOKN (package libnss3)"
command -v certutil >/dev/null || bail_out "certutil not found (package libnss3-tools)"
command -v setpriv >/dev/null || bail_out "setpriv not found (package util-linux)"

# ---- the unprivileged user and its private directory

AS=()
if [ "$(id -u)" -eq 0 ]; then
    if ! NUID=$(id -u nobody) || ! NGID=$(id -g nobody); then bail_out "no user 'nobody' to run as"; fi
    AS=(setpriv "--reuid=$NUID" "--regid=$NGID" --clear-groups)
fi
U=$WORK/user # HOME, NSS database, PIN file, runtime dir: the user's, mode 0700
chmod 0711 "$WORK"
mkdir -p "$U/home/.config/pkcs11/modules" "$U/bare-home" "$U/run" "$U/nssdb" "$U/softhsm"
[ "${#AS[@]}" -eq 0 ] || chown -R "$NUID:$NGID" "$U"
chmod 0700 "$U"

# as_user [--asan] CMD...: CMD as the user, with the private HOME and nothing of root's
# p11-kit or p11mtls state. --asan: the sanitizer runtime preloaded (ASan builds), for an
# unsanitized program that loads the provider.
as_user() {
    local pre=()
    if [ "$1" = --asan ]; then
        shift
        [ -z "${P11M_ASAN_PRELOAD:-}" ] || pre=("LD_PRELOAD=$P11M_ASAN_PRELOAD")
    fi
    "${AS[@]}" env -u XDG_CONFIG_HOME -u XDG_RUNTIME_DIR -u OPENSSL_CONF -u P11MTLS_CONF \
        -u P11MTLS_DEBUG HOME="$U/home" USER="$(id -un "${NUID:-$(id -u)}")" \
        P11MTLS_RUNTIME_DIR="$U/run" SOFTHSM2_CONF="$U/softhsm2.conf" \
        P11MTLS_PROVIDER="$P11M_PROVIDER" P11MTLS_PRELOAD="$P11M_PRELOAD" "${pre[@]}" \
        "${USER_ENV[@]}" "$@"
}
USER_ENV=()

# The user must reach the build (CI may clone where nobody cannot): fail, naming the
# path, rather than let every check below fail obscurely.
unreachable=()
for f in "$P11M_TOOL" "$P11M_PROVIDER" "$P11M_PRELOAD" "$TPROV" "$FX_CA_ROOT" \
    ${P11M_ASAN_PRELOAD:+${P11M_ASAN_PRELOAD//:/ }}; do
    as_user test -r "$f" || unreachable+=("$f")
done
as_user test -w "$U/run" || unreachable+=("$U (write)")
if [ "${#unreachable[@]}" -gt 0 ]; then
    fail "user $(id -un "${NUID:-$(id -u)}") can read the build and write $U" \
        "not reachable: ${unreachable[*]}" "$(namei -m "${unreachable[0]%% (write)}")" \
        "give the build tree's directories o+x (and its files o+r), or build elsewhere"
    bail_out "the unprivileged user cannot reach the build tree"
fi

plan 31

# SoftHSM2 stays registered system-wide: give it an empty directory of the user's.
printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' \
    "$U/softhsm" >"$U/softhsm2.conf"
NSS_PIN="nss-$$-pin"
as_user sh -c 'umask 077 && printf "%s\n" "$1" >"$2" && printf "9%s\n" "$1" >"$3"' _ \
    "$NSS_PIN" "$U/pin" "$U/wrong-pin"
TOK='pkcs11:token=NSS%20Certificate%20DB'
KEY="$TOK;object=device;type=private"
CERT="$TOK;object=device;type=cert"
SUBJECT="CN = device-nss, UID = dev-nss"

# ---- the token, registered with p11-kit only

check "certutil creates the NSS database (password = user PIN)" \
    as_user certutil -N -d "sql:$U/nssdb" -f "$U/pin"
cat >"$U/home/.config/pkcs11/modules/nss-softokn.module" <<EOF
module: $SOFTOKN
x-init-reserved: configdir='sql:$U/nssdb' certPrefix='' keyPrefix='' secmod='secmod.db' flags=
critical: yes
EOF
chmod 0644 "$U/home/.config/pkcs11/modules/nss-softokn.module"

USER_ENV=(HOME="$U/bare-home")
as_user "$P11M_TOOL" list >bare-list.out 2>&1
fx_drop_foreign_noise bare-list.out
if grep -q 'NSS' bare-list.out; then
    fail "without the module file, p11-kit (and so p11mtls) does not see softokn" "$(cat bare-list.out)"
else
    ok "without the module file, p11-kit (and so p11mtls) does not see softokn"
fi
USER_ENV=()
as_user "$P11M_TOOL" list >list.out 2>&1
fx_drop_foreign_noise list.out
like "p11mtls list (no --module) shows the registered token" "$(cat list.out)" \
    "token $TOK"$'\n'" +Mozilla Foundation NSS 3, serial [0-9]+, slot [0-9]+, user PIN ok"
json=$(as_user "$P11M_TOOL" list "$TOK" --json 2>/dev/null)
like "... reached through p11-kit's proxy" "$json" "\"module\":\"$FX_P11KIT_PROXY\""

# ---- key, request, certificate

as_user "$P11M_TOOL" key generate --uri "$TOK;object=device" --type ec:P-256 \
    --pin-source "file:$U/pin" >keygen.out 2>&1
fx_drop_foreign_noise keygen.out
like "key generate: an EC P-256 key on softokn" "$(cat keygen.out)" \
    "^$TOK;id=(%[0-9A-F]{2})+;object=device;type=private$"
as_user pkcs11-tool --module "$FX_P11KIT_PROXY" --token-label 'NSS Certificate DB' \
    --login --pin "$NSS_PIN" --list-objects --type privkey >attrs.out 2>&1
like "... private half sensitive, never extractable, signing only" "$(cat attrs.out)" \
    "label: +device"$'\n'"[^"$'\n'"]*ID:[^"$'\n'"]*"$'\n'" +Usage: +sign"$'\n'" +Access: +sensitive, always sensitive, never extractable"
check "csr: the request is signed on the token" as_user "$P11M_TOOL" csr --key "$KEY" \
    --subject /CN=device-nss/UID=dev-nss --pin-source "file:$U/pin" -o "$U/device.csr"
check "... and verifies in software" openssl req -in "$U/device.csr" -noout -verify
check "the fixture CA issues the certificate" openssl x509 -req -in "$U/device.csr" \
    -CA "$FX_CA_INTER" -CAkey "$FX_CA_INTER_KEY" -set_serial "0x$(openssl rand -hex 8)" \
    -days 365 -extfile "$FX_CA_DIR/client.ext" -out "$U/device.pem"
chmod 0644 "$U/device.pem"
as_user "$P11M_TOOL" cert import --uri "$KEY" --cert "$U/device.pem" --chain "$FX_CA_INTER" \
    --pin-source "file:$U/pin" >import.out 2>import.err
like "cert import stores the certificate and the intermediate on softokn" \
    "$(cat import.out) $(grep -v '^ERROR: ' import.err)" \
    "^$TOK;id=(%[0-9A-F]{2})+;object=device;type=cert p11mtls: stored 1 chain certificate"
# Every token, with a PIN: softokn's "NSS Generic Crypto Services" beside the database has
# no user PIN; a login is not tried there, and that is no error.
as_user "$P11M_TOOL" list --pin-source "file:$U/pin" >list-pin.out 2>&1
rc=$?
fx_drop_foreign_noise list-pin.out
like "list --pin-source: the key pairs with its certificate, private half present" \
    "$(cat list-pin.out)" \
    "key +$TOK;id=[^;]+;object=device;type=private"$'\n'" +EC P-256, private half present"$'\n'" +certificate $TOK;id=[^;]+;object=device;type=cert"
if [ "$rc" -eq 0 ] && ! grep -q 'PIN missing\|error' list-pin.out; then
    ok "... and reports no error for the token that has no user PIN"
else
    fail "... and reports no error for the token that has no user PIN" "exit status $rc" \
        "$(cat list-pin.out)"
fi
like "... the certificate is the CA's, the chain certificate stored apart" "$(cat list-pin.out)" \
    "subject +CN=device-nss, UID=dev-nss"$'\n'" +issuer +CN=p11mtls test intermediate CA.*object=device-ca1;type=cert"

# ---- the provider: openssl s_client and a C client

fx_openssl_cnf "$U/openssl.cnf" "pin-source=file:$U/pin"
chmod 0644 "$U/openssl.cnf"
if grep -q 'pkcs11-module' "$U/openssl.cnf"; then
    fail "the provider configuration names no PKCS#11 module" "$(cat "$U/openssl.cnf")"
else
    ok "the provider configuration names no PKCS#11 module"
fi
USER_ENV=(OPENSSL_CONF="$U/openssl.cnf")
for v in -tls1_2 -tls1_3; do
    fx_s_server_start "srv$v" "$v" >/dev/null || fail "s_server $v starts"
    echo hello | as_user --asan openssl s_client -connect "127.0.0.1:$FX_PORT" "$v" \
        -CAfile "$FX_CA_ROOT" -verify_return_error -key "$KEY" -cert "$CERT" \
        >"s_client$v.log" 2>&1
    is "s_client $v, key and certificate from softokn by URI: the server verified the device" \
        "$(fx_s_server_peer "srv$v")" "$SUBJECT"
done
# URIs without token=: every token p11-kit offers is searched. From here on it offers the
# fixture's SoftHSM2 token too (its own PIN), as well as softokn's second token, which
# has no user PIN. Neither may get a login with softokn's PIN, nor leave an error behind
# a successful load.
cp -a "$FX_CACHE/token/." "$U/softhsm/"
[ "${#AS[@]}" -eq 0 ] || chown -R "$NUID:$NGID" "$U/softhsm"
logins() { grep -c '^p11mtls\[[0-9]*\]: C_Login(' "$1"; }
refusals() { cat "$U"/run/*.refused 2>/dev/null | grep -vc '^#'; }
USER_ENV=(OPENSSL_CONF="$U/openssl.cnf" P11MTLS_DEBUG="2,file:$U/load.log")
as_user --asan "$TPROV" load 'pkcs11:object=device;type=private' >load.out 2>&1
fx_drop_foreign_noise load.out
is "a key URI naming no token loads from softokn, error queue empty, no login anywhere" \
    "$(cat load.out) $(as_user "$P11M_TOOL" list | grep -c '^token ') tokens, $(logins "$U/load.log") logins" \
    "loaded, error queue empty 3 tokens, 0 logins"
USER_ENV=(OPENSSL_CONF="$U/openssl.cnf" P11MTLS_DEBUG="2,file:$U/nosuch.log")
as_user --asan "$TPROV" load 'pkcs11:object=nosuch;type=private' >nosuch.out 2>&1
fx_drop_foreign_noise nosuch.out
like "a key nothing public names, two tokens with PINs: no PIN tried, a clear error" \
    "$(logins "$U/nosuch.log") logins, $(refusals) refusals: $(cat nosuch.out)" \
    "^0 logins, 0 refusals: not loaded.* 2 tokens \('(p11mtls-test|NSS Certificate DB)', '(p11mtls-test|NSS Certificate DB)'\) need a login .* name the token in the URI"
USER_ENV=(P11MTLS_DEBUG="2,file:$U/list-all.log")
as_user "$P11M_TOOL" list --pin-source "file:$U/pin" >list-all.out 2>&1
rc=$?
like "list --pin-source, every token: one PIN is not tried on two tokens with PINs" \
    "rc=$rc $(logins "$U/list-all.log") logins, $(refusals) refusals: $(grep warning list-all.out)" \
    "^rc=0 0 logins, 0 refusals: p11mtls: warning: 2 tokens have a user PIN .* name the token"
USER_ENV=()
like "list URI --pin-source, one token named: its private halves are checked" \
    "$(as_user "$P11M_TOOL" list "$TOK" --pin-source "file:$U/pin" 2>&1)" \
    "object=device;type=private"$'\n'" +EC P-256, private half present"
USER_ENV=(OPENSSL_CONF="$U/openssl.cnf")
as_user --asan "$TPROV" tls "$FX_PORT" 'pkcs11:object=device;type=cert' \
    'pkcs11:object=device;type=private' >tprov-tls.log 2>&1
is "C client (SSL_CTX_use_PrivateKey), URIs naming no token: the server verified the device" \
    "$(fx_s_server_peer srv-tls1_3)" "$SUBJECT"
as_user --asan "$TPROV" fork 'pkcs11:object=device;type=private' 4 >fork.out 2>&1
fx_drop_foreign_noise fork.out
is "fork: the parent and 4 children sign (each child re-initialises p11-kit and softokn)" \
    "$(cat fork.out)" "parent after fork: ok"$'\n'"4 children: 0 failed"

# ---- a wrong PIN: refused once, not tried again by another process, the right one works

for i in 1 2; do
    USER_ENV=(P11MTLS_DEBUG="2,file:$U/wrong$i.log")
    as_user "$P11M_TOOL" csr --key "$KEY" --subject /CN=x/UID=x \
        --pin-source "file:$U/wrong-pin" -o "$U/wrong.csr" >"wrong$i.out" 2>&1
    rc=$?
    fx_drop_foreign_noise "wrong$i.out"
    logins=$(grep -c '^p11mtls\[[0-9]*\]: C_Login(' "$U/wrong$i.log")
    if [ "$i" = 1 ]; then
        like "a wrong PIN: softokn refuses it, one C_Login" "rc=$rc logins=$logins $(cat wrong1.out)" \
            "^rc=1 logins=1 .*token 'NSS Certificate DB' refused the PIN"
    else
        like "... another process does not try it again" "rc=$rc logins=$logins $(cat wrong2.out)" \
            "^rc=1 logins=0 .*refused by token 'NSS Certificate DB' .* not tried again by any process"
    fi
done
USER_ENV=()
check "... the right PIN still works" as_user "$P11M_TOOL" csr --key "$KEY" \
    --subject /CN=device-nss/UID=dev-nss --pin-source "file:$U/pin" -o "$U/again.csr"

# ---- the preload library: curl under p11mtls run, against nginx

check "nginx requiring client certificates" fx_nginx_start web
cat >"$U/shim.conf" <<EOF
[p11mtls]
identities = ids
rules = rules
[ids]
device = device_id
[device_id]
key = $KEY
cert = $CERT
pin_source = file:$U/pin
[rules]
local = rule_local
[rule_local]
match = localhost:$FX_NGINX_PORT
identity = device
EOF
chmod 0644 "$U/shim.conf"
# get [p11mtls run --config FILE --]: GET / from nginx as the user. ASan builds use
# s_client: curl deadlocks in setlocale() under the preloaded runtime (tests/tool).
get() {
    if [ -z "${P11M_ASAN_PRELOAD:-}" ]; then
        as_user "$@" curl -sS --cacert "$FX_CA_ROOT" "https://localhost:$FX_NGINX_PORT/"
    else
        printf 'GET / HTTP/1.0\r\nHost: localhost\r\n\r\n' | as_user --asan "$@" openssl \
            s_client -quiet -verify_quiet -connect "localhost:$FX_NGINX_PORT" \
            -servername localhost -CAfile "$FX_CA_ROOT"
    fi
}
get >plain.out 2>&1
like "without p11mtls the client presents nothing and nginx refuses it" \
    "$(tail -n 1 "$WORK/web/access.log")" '" 400 TLSv1.3 verify=NONE dn="-"$'
get "$P11M_TOOL" run --config "$U/shim.conf" -- >run.out 2>&1
fx_drop_foreign_noise run.out
like "curl under p11mtls run: nginx answers to the device" "$(cat run.out)" \
    "verify=SUCCESS dn=UID=dev-nss,CN=device-nss"
like "... and nginx logged the verified peer" "$(tail -n 1 "$WORK/web/access.log")" \
    '" 200 TLSv1.3 verify=SUCCESS dn="UID=dev-nss,CN=device-nss"$'
as_user "$P11M_TOOL" doctor "https://localhost:$FX_NGINX_PORT/" --config "$U/shim.conf" \
    --ca "$FX_CA_ROOT" >doctor.out 2>&1
rc=$?
fx_drop_foreign_noise doctor.out
is "doctor: every check passes on softokn through p11-kit" "$rc" 0
like "... the identity was presented and accepted by nginx" "$(cat doctor.out)" \
    "ok +handshake +the identity was presented and accepted"
finish
