#!/bin/bash
# The whole enrolment with p11mtls on a FRESH token: token init, a key of every type
# generated on the token, CSRs signed through the provider, the dev CA, certificate
# import, list (human and JSON), pem-uri; then each identity is presented with openssl
# s_client through the provider, and one through `p11mtls run` + curl against nginx
# after a renewal from another CA.
# SoftHSM2: a fresh token directory (its free slot). TPM (P11M_TEST_TOKEN=tpm): the free
# slot tpm2-pkcs11 always offers next to the fixture's token, initialised through its
# module; a TPM makes no Ed25519 key, sets a key's usage itself (sign and decrypt) and
# cannot re-initialise a token (tpm2_ptool removes it): each is asserted as the tool
# reports it.
source "$(dirname "$0")/common.sh"
fx_workdir tool-enrol
fx_ca || skip_all "CA fixture could not be built"
(umask 077 && echo 87654321 >"$WORK/so.pin" && echo 4321 >"$WORK/pin.txt")
PIN=file:$WORK/pin.txt
SO=file:$WORK/so.pin
LABEL=enrol
labels=(p256 p384 rsa2048 rsa3072 ed25519)
init_args=()
if [ "$P11M_TEST_TOKEN" = tpm ]; then
    # fx_token's pin.txt would replace ours: the TPM first.
    fx_token || bail_out "TPM fixture could not be built"
    (umask 077 && echo 4321 >"$WORK/pin.txt")
    labels=(p256 p384 rsa2048 rsa3072)
    # Through p11-kit's proxy the first free slot would be SoftHSM2's (still registered).
    init_args=(--module "$FX_TPM_MODULE")
    plan 89
else
    fresh_softhsm hsm
    plan 79
fi
declare -A types=([p256]=ec:P-256 [p384]=ec:P-384 [rsa2048]=rsa:2048 [rsa3072]=rsa:3072
    [ed25519]=ed25519)
declare -A desc=([p256]="EC P-256" [p384]="EC P-384" [rsa2048]="RSA 2048"
    [rsa3072]="RSA 3072" [ed25519]=Ed25519)
declare -A uri

# ---- token
rc_is "token init on a fresh token ($P11M_TEST_TOKEN)" 0 "$TOOL" token init --label "$LABEL" \
    "${init_args[@]}" --so-pin-source "$SO" --pin-source "$PIN"
out_has "token init prints the token URI" "^pkcs11:token=$LABEL$"
rc_is "a second init of that token is refused" 1 "$TOOL" token init --label "$LABEL" \
    "${init_args[@]}" --so-pin-source "$SO" --pin-source "$PIN"
out_has "...saying why" "may hold private objects .*add --force to erase it"
if [ "$P11M_TEST_TOKEN" = tpm ]; then
    rc_is "...with --force, the TPM cannot re-initialise it" 1 "$TOOL" token init \
        --label "$LABEL" --force "${init_args[@]}" --so-pin-source "$SO" --pin-source "$PIN"
    out_has "...and the tool says what to do instead" \
        "cannot re-initialise a token that exists; .*tpm2_ptool rmtoken --label '$LABEL'"
    check "...which is done: tpm2_ptool rmtoken" tpm2_ptool rmtoken --label "$LABEL"
    rc_is "...then token init takes the free slot again" 0 "$TOOL" token init \
        --label "$LABEL" "${init_args[@]}" --so-pin-source "$SO" --pin-source "$PIN"
else
    rc_is "...and done with --force" 0 "$TOOL" token init --label "$LABEL" --force \
        --so-pin-source "$SO" --pin-source "$PIN"
fi
rc_is "list --json of the empty token" 0 "$TOOL" list "pkcs11:token=$LABEL" --json
check "it has the token and no objects" /usr/bin/python3 -c '
import json, sys
t = json.load(open(sys.argv[1]))["tokens"]
assert len(t) == 1 and t[0]["label"] == sys.argv[2], t
assert t[0]["keys"] == [] and t[0]["certificates"] == [] and t[0]["user_pin"] == "ok", t
' "$WORK/last.out" "$LABEL"
if [ "$P11M_TEST_TOKEN" = tpm ]; then
    rc_is "list --json of every token" 0 "$TOOL" list --json
    # tpm2-pkcs11: every token's serial is all zeros; its spare slot is no token.
    check "the TPM's two tokens, told apart by label (serials all zero), and no uninitialised one" \
        /usr/bin/python3 -c '
import json, sys
t = json.load(open(sys.argv[1]))["tokens"]
assert sorted(x["label"] for x in t) == sorted(sys.argv[2:]), t
assert all(x["serial"] == "0" * 16 and x["model"] == "SW   TPM" for x in t), t
' "$WORK/last.out" "$LABEL" "$FX_TOKEN_LABEL"
fi

# ---- keys, requests, certificates
check "ca init --intermediate" "$TOOL" ca init "$WORK/ca" --intermediate
is "CA keys are private files" "$(stat -c %a "$WORK/ca/root.key" "$WORK/ca/intermediate.key" | sort -u)" 600
check "the chain verifies" openssl verify -CAfile "$WORK/ca/root.pem" "$WORK/ca/intermediate.pem"

for l in "${labels[@]}"; do
    rc_is "$l: key generate ${types[$l]}" 0 "$TOOL" key generate \
        --uri "pkcs11:token=$LABEL;object=$l" --type "${types[$l]}" --pin-source "$PIN"
    uri[$l]=$(tail -n 1 "$WORK/last.out")
    like "$l: prints the private key URI" "${uri[$l]}" "^pkcs11:token=$LABEL;id=(%[0-9A-F]{2}){16};object=$l;type=private$"
    rc_is "$l: csr through the provider" 0 "$TOOL" csr --key "${uri[$l]}" \
        --subject "/CN=device-$l/UID=dev-$l" -o "$WORK/$l.csr" --pin-source "$PIN"
    rc_is "$l: ca issue" 0 "$TOOL" ca issue "$WORK/ca" --csr "$WORK/$l.csr" --days 30 \
        -o "$WORK/$l.pem"
    rc_is "$l: cert import with the chain" 0 "$TOOL" cert import --uri "${uri[$l]}" \
        --cert "$WORK/$l.pem" --chain "$WORK/ca/chain.pem" --pin-source "$PIN"
done
if [ "$P11M_TEST_TOKEN" = tpm ]; then
    # tpm2-pkcs11 keeps its objects in an SQLite store without a busy timeout: a write
    # that meets another program reading it (each one does, in C_Initialize) fails with
    # CKR_GENERAL_ERROR. The core writes again (provider/p11/provision.c). Programs
    # starting all the time beside ten certificate replacements: before that, about one
    # replacement in five failed.
    "$TOOL" ca issue "$WORK/ca" --csr "$WORK/p256.csr" --days 30 -o "$WORK/p256-b.pem" \
        >"$WORK/busy-ca.out" 2>&1 || bail_out "ca issue: $(cat "$WORK/busy-ca.out")"
    rm -f "$WORK/readers.stop"
    (while [ ! -e "$WORK/readers.stop" ]; do
        "$TOOL" list "pkcs11:token=$LABEL" >/dev/null 2>&1
        sleep 0.1
    done) &
    readers=$!
    failed=""
    for i in 1 2 3 4 5 6 7 8 9 10; do
        c=$WORK/p256-b.pem
        [ $((i % 2)) = 1 ] || c=$WORK/p256.pem
        "$TOOL" cert import --uri "${uri[p256]}" --cert "$c" --pin-source "$PIN" --force \
            >"$WORK/busy-$i.out" 2>&1 || failed+="$i: $(cat "$WORK/busy-$i.out") "
    done
    touch "$WORK/readers.stop"
    wait "$readers"
    is "ten certificate replacements while programs keep starting beside them" "$failed" ""

    # A replacement whose store fails keeps the certificate it was to replace (the key
    # never goes without one). gdb holds the tool at tpm2-pkcs11's C_CreateObject while
    # another connection takes the store's write lock for 12 s, longer than the core
    # writes again (7.55 s). LeakSanitizer cannot run under ptrace.
    db=$TPM2_PKCS11_STORE/tpm2_pkcs11.sqlite3
    cat >"$WORK/lock.py" <<'PY'
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN IMMEDIATE")
open(sys.argv[2], "w").close()
time.sleep(12)
db.execute("ROLLBACK")
PY
    # shellcheck disable=SC2016 # $_exitcode is gdb's
    ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0 gdb -nx -batch \
        -ex 'set breakpoint pending on' -ex 'break C_CreateObject' -ex run \
        -ex "shell python3 '$WORK/lock.py' '$db' '$WORK/locked' & for i in \$(seq 100); do [ -e '$WORK/locked' ] && break; sleep 0.1; done" \
        -ex delete -ex continue -ex 'printf "exit %d\n", $_exitcode' \
        --args "$TOOL" cert import --uri "${uri[p256]}" --cert "$WORK/p256-b.pem" \
        --pin-source "$PIN" --force </dev/null >"$WORK/locked.out" 2>&1
    like "a replacement that cannot store the new certificate fails" \
        "$(grep -E '^exit |storing the certificate' "$WORK/locked.out" | tr '\n' ' ')" \
        "storing the certificate: C_CreateObject: CKR_GENERAL_ERROR.* exit 1 $"
    python3 -c 'import sqlite3, sys
sqlite3.connect(sys.argv[1], timeout=60, isolation_level=None).execute("BEGIN IMMEDIATE")' "$db"
    pkcs11-tool --module "$FX_TOKEN_MODULE" --token-label "$LABEL" -O --type cert \
        >"$WORK/certs.out" 2>&1
    pkcs11-tool --module "$FX_TOKEN_MODULE" --token-label "$LABEL" --read-object \
        --type cert --label p256 -o "$WORK/kept.der" >/dev/null 2>&1
    is "...and the key keeps the certificate it had, alone" \
        "$(grep -c 'label: *p256$' "$WORK/certs.out") $(openssl x509 -inform der -in "$WORK/kept.der" -noout -fingerprint -sha256)" \
        "1 $(openssl x509 -in "$WORK/p256.pem" -noout -fingerprint -sha256)"
fi
if [ "$P11M_TEST_TOKEN" = tpm ]; then
    rc_is "ed25519: the TPM cannot make the key" 1 "$TOOL" key generate \
        --uri "pkcs11:token=$LABEL;object=ed25519" --type ed25519 --pin-source "$PIN"
    out_has "...and the tool says so" "the token cannot generate ed25519 keys \(no mechanism 0x1055\)"
    for step in "prints the private key URI" "csr through the provider" "ca issue" \
        "cert import with the chain"; do
        skip "ed25519: $step" "the TPM makes no Ed25519 key (its refusal is asserted above)"
    done
fi
check "request subject and signature (openssl req -verify)" \
    openssl req -in "$WORK/p256.csr" -noout -verify -subject
check "issued certificate: clientAuth from the intermediate" openssl verify \
    -CAfile "$WORK/ca/root.pem" -untrusted "$WORK/ca/intermediate.pem" -purpose sslclient \
    "$WORK/${labels[-1]}.pem"
rc_is "a second key with the same label is refused" 1 "$TOOL" key generate \
    --uri "pkcs11:token=$LABEL;object=p256" --type ec:P-256 --pin-source "$PIN"
rc_is "key generate --id" 0 "$TOOL" key generate --uri "pkcs11:token=$LABEL;object=fixed" \
    --type ec:P-256 --id 0a0b --pin-source "$PIN"
out_has "...uses that id" "id=%0A%0B;object=fixed;type=private"
nkeys=$((${#labels[@]} + 1))

# The private halves as the token keeps them.
pkcs11-tool --module "$FX_TOKEN_MODULE" --token-label "$LABEL" --login --pin 4321 \
    --list-objects --type privkey >"$WORK/privkeys.txt" 2>&1
is "every private key is sensitive and never extractable" \
    "$(grep -c 'Access: *sensitive, always sensitive, never extractable' "$WORK/privkeys.txt")" $nkeys
if [ "$P11M_TEST_TOKEN" = tpm ]; then
    # tpm2-pkcs11 refuses a sign-only template and makes keys that sign and decrypt.
    out_has "the tool said the TPM chose the key's usage" \
        "warning: the token refused a sign-only key; it generated the key with the usage it chooses itself"
    is "every private key signs (and, the TPM's choice, decrypts)" \
        "$(grep -c 'Usage: *decrypt, sign$' "$WORK/privkeys.txt")" $nkeys
else
    is "every private key signs and does nothing else" "$(grep -c 'Usage: *sign$' "$WORK/privkeys.txt")" $nkeys
fi

# ---- list
json_want=()
for l in "${labels[@]}"; do json_want+=("$l=${desc[$l]}"); done
rc_is "list (human)" 0 "$TOOL" list "pkcs11:token=$LABEL"
out_has "human list pairs a key with its certificate" "^        certificate pkcs11:token=$LABEL;id=.*;object=p256;type=cert$"
out_has "human list shows days left" "\(29 days left\)|\(30 days left\)"
rc_is "list --json with the PIN" 0 "$TOOL" list "pkcs11:token=$LABEL" --json --pin-source "$PIN"
check "JSON: every key paired, typed and private; certificates valid for 30 days" \
    /usr/bin/python3 -c '
import json, sys
doc = json.load(open(sys.argv[1]))
tok, = doc["tokens"]
keys = {k["label"]: k for k in tok["keys"]}
certs = {c["uri"]: c for c in tok["certificates"]}
want = dict(a.split("=", 1) for a in sys.argv[2:])
for label, typ in want.items():
    k = keys[label]
    assert k["type"] == typ and k["private"] is True, k
    c = certs[k["certificate"]]
    assert c["key"] == k["uri"] and c["subject"] == "CN=device-%s, UID=dev-%s" % (label, label), c
    assert c["days_left"] in (29, 30) and c["ca"] is False, c
    assert c["issuer"] == "CN=p11mtls development intermediate CA", c
assert keys["fixed"]["id"] == "0a0b" and keys["fixed"]["certificate"] is None
cas = [c for c in tok["certificates"] if c["ca"]]
assert len(cas) == 2 and all(c["key"] is None and c["id"] == "" for c in cas), cas
' "$WORK/last.out" "${json_want[@]}"

pkcs11-tool --module "$FX_TOKEN_MODULE" --token-label "$LABEL" --login --pin 4321 \
    --delete-object --type pubkey --label fixed >/dev/null 2>&1
rc_is "list a key whose public half is gone, with a login" 0 "$TOOL" list \
    "pkcs11:token=$LABEL;object=fixed" --json --pin-source "$PIN"
check "JSON: the private key is still listed, type unknown" /usr/bin/python3 -c '
import json, sys
k, = json.load(open(sys.argv[1]))["tokens"][0]["keys"]
assert k["label"] == "fixed" and k["private"] is True and k["type"] is None, k
' "$WORK/last.out"
rc_is "list without a login" 0 "$TOOL" list "pkcs11:token=$LABEL;object=p256"
out_has "private halves are not checked without a login" "EC P-256, private half not checked \(no login\)"

# ---- pem-uri
rc_is "pem-uri" 0 "$TOOL" pem-uri --key "${uri[p256]}" -o "$WORK/p256-key.pem"
check "pem-uri file has the PKCS#11 PROVIDER URI label" grep -q "^-----BEGIN PKCS#11 PROVIDER URI-----$" "$WORK/p256-key.pem"
rc_is "pem-uri --show reads it back" 0 "$TOOL" pem-uri --show "$WORK/p256-key.pem"
is "...the same URI" "$(cat "$WORK/last.out")" "${uri[p256]}"
rc_is "pem-uri refuses a key that is not there" 1 "$TOOL" pem-uri \
    --key "pkcs11:token=$LABEL;object=nosuch" -o "$WORK/nosuch.pem"
rc_is "pem-uri refuses a URI with module-path" 2 "$TOOL" pem-uri \
    --key "${uri[p256]}?module-path=$FX_TOKEN_MODULE" -o "$WORK/modpath.pem"
out_has "... and says why" "module-path is refused in a key file"
check "... and writes no file" test ! -e "$WORK/modpath.pem"

# ---- the identities in TLS, through the provider
# TLS 1.2 loads default before p11mtls: with p11mtls first, the provider's EC keymgmt
# answers OpenSSL's group lookups and no ECDHE cipher is left (reported to the provider).
client() { # PORT KEY CERT PROVIDERS...
    local port=$1 key=$2 cert=$3 p args=()
    shift 3
    for p; do args+=(-provider "$p"); done
    echo | with_asan openssl s_client -provider-path "$(dirname "$P11M_PROVIDER")" "${args[@]}" \
        -connect "127.0.0.1:$port" -CAfile "$FX_CA_ROOT" -verify_return_error \
        -key "$key" -cert "$cert"
}
check "s_server (TLS 1.3) trusting the new CA" fx_s_server_start srv13 -tls1_3 -CAfile "$WORK/ca/chain.pem"
port13=$FX_PORT
check "s_server (TLS 1.2) trusting the new CA" fx_s_server_start srv12 -tls1_2 -CAfile "$WORK/ca/chain.pem"
port12=$FX_PORT
for l in "${labels[@]}"; do
    client "$port13" "${uri[$l]}?pin-source=$PIN" "$WORK/$l.pem" p11mtls default >"$WORK/c13-$l.log" 2>&1
    is "$l: presented over TLS 1.3" "$(fx_s_server_peer srv13)" "CN = device-$l, UID = dev-$l"
    client "$port12" "${uri[$l]}?pin-source=$PIN" "$WORK/$l.pem" default p11mtls >"$WORK/c12-$l.log" 2>&1
    is "$l: presented over TLS 1.2" "$(fx_s_server_peer srv12)" "CN = device-$l, UID = dev-$l"
done
if [ "$P11M_TEST_TOKEN" = tpm ]; then
    skip "ed25519: presented over TLS 1.3" "the TPM makes no Ed25519 key"
    skip "ed25519: presented over TLS 1.2" "the TPM makes no Ed25519 key"
fi
FX_PIN_FILE=$WORK/pin.txt fx_provider_cnf "$WORK/openssl.cnf"
OPENSSL_CONF=$WORK/openssl.cnf with_asan openssl s_client -connect "127.0.0.1:$port13" -CAfile "$FX_CA_ROOT" \
    -key "$WORK/p256-key.pem" -cert "$WORK/p256.pem" </dev/null >"$WORK/cpem.log" 2>&1
is "the pem-uri file works as s_client's key file" "$(fx_s_server_peer srv13)" "CN = device-p256, UID = dev-p256"

# ---- renewal from the organisation's CA (the fixture CA), then p11mtls run + curl
mkdir -p "$WORK/org"
ln -s "$FX_CA_INTER_KEY" "$WORK/org/intermediate.key"
ln -s "$FX_CA_INTER" "$WORK/org/intermediate.pem"
ln -s "$FX_CA_ROOT_KEY" "$WORK/org/root.key"
ln -s "$FX_CA_CHAIN" "$WORK/org/chain.pem"
rc_is "ca issue from an existing CA" 0 "$TOOL" ca issue "$WORK/org" --csr "$WORK/p256.csr" -o "$WORK/p256-org.pem"
rc_is "cert import of a different certificate needs --force" 1 "$TOOL" cert import \
    --uri "${uri[p256]}" --cert "$WORK/p256-org.pem" --pin-source "$PIN"
rc_is "cert import --force replaces it" 0 "$TOOL" cert import --force \
    --uri "${uri[p256]}" --cert "$WORK/p256-org.pem" --chain "$FX_CA_CHAIN" --pin-source "$PIN"
cat >"$WORK/shim.conf" <<EOC
[p11mtls]
identities = ids
rules = rules
log = stderr
log_level = info
[ids]
device = device_id
[device_id]
key = pkcs11:token=$LABEL;object=p256;type=private
cert = pkcs11:token=$LABEL;object=p256;type=cert
chain = $FX_CA_CHAIN
pin_source = $PIN
[rules]
local = rule_local
[rule_local]
match = localhost
identity = device
EOC
check "nginx requiring client certificates" fx_nginx_start web
run_get "$WORK/shim.conf" "$FX_NGINX_PORT" >"$WORK/get.out" 2>&1
check "p11mtls run -- curl: nginx verified the token identity" \
    grep -q "^verify=SUCCESS dn=UID=dev-p256,CN=device-p256$" "$WORK/get.out"
rc_is "doctor passes on this healthy setup" 0 "$TOOL" doctor --config "$WORK/shim.conf" \
    "https://localhost:$FX_NGINX_PORT/"
out_has "doctor saw the identity accepted" "^ok +handshake +the identity was presented and accepted \(HTTP status 200\)"
finish
