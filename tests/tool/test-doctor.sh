#!/bin/bash
# p11mtls doctor: passes on a healthy setup and names each failure cause with the
# documented exit status 3: no configuration, a bad one, no rule, no token, a wrong PIN
# (tried once only, never again), an expired certificate, a certificate of another key,
# a server that does not ask for a certificate, one that asks for another CA, and a
# server certificate from an unexpected CA (as a TLS-intercepting proxy would show).
# A refused PIN is not tried by a second run either. On the emulated TPM
# (P11M_TEST_TOKEN=tpm) the same, plus: the wrong PIN moves the TPM's dictionary-attack
# counter once for both runs, and the TPM's uninitialised slot is not shown as a token.
source "$(dirname "$0")/common.sh"
fx_workdir tool-doctor
fx_token || skip_all "token fixture could not be built"
fx_ca || skip_all "CA fixture could not be built"
unset P11MTLS_CONF P11MTLS_DEBUG
if [ "$P11M_TEST_TOKEN" = tpm ]; then plan 55; else plan 53; fi
# The certificate of another key on the same token (SoftHSM2: p384; the TPM has none).
read -r other_key _ <<<"$(fx_have_key p384 rsa2048)"
other_cert=FX_DEV_CERT_$other_key

# conf OUT [KEY=VALUE...]: a shim configuration for the token key p256 and the
# fixture chain, matching localhost; KEY=VALUE pairs replace identity lines.
conf() {
    local out=$1 key cert chain pin match=localhost kv
    key="pkcs11:token=$FX_TOKEN_LABEL;id=%03;type=private"
    cert="pkcs11:token=$FX_TOKEN_LABEL;id=%03;type=cert"
    chain=$FX_CA_CHAIN pin=file:$FX_PIN_FILE
    shift
    for kv; do
        case $kv in
        key=*) key=${kv#key=} ;; cert=*) cert=${kv#cert=} ;; pin=*) pin=${kv#pin=} ;;
        match=*) match=${kv#match=} ;;
        esac
    done
    cat >"$out" <<EOC
[p11mtls]
identities = ids
rules = rules
[ids]
device = device_id
[device_id]
key = $key
cert = $cert
chain = $chain
pin_source = $pin
[rules]
local = rule_local
[rule_local]
match = $match
identity = device
require_ca_match = yes
EOC
}

# shellcheck disable=SC2317 # called through check
# own_server NAME ARGS...: openssl s_server on 127.0.0.1:$FX_PORT with exactly ARGS
# (the fixture's always asks for a client certificate); stopped at exit.
own_server() {
    local name=$1 i
    shift
    FX_PORT=$(fx_free_port)
    mkfifo "$WORK/$name.stdin"
    env -u LD_PRELOAD -u OPENSSL_CONF -u OPENSSL_MODULES openssl s_server \
        -accept "127.0.0.1:$FX_PORT" "$@" 0<>"$WORK/$name.stdin" >"$WORK/$name.log" 2>&1 &
    fx__track $! "$name"
    for ((i = 0; i < 100; i++)); do
        grep -q '^ACCEPT' "$WORK/$name.log" && return 0
        sleep 0.05
    done
    return 1
}

doctor() {
    rc_is "$1" "$2" "$TOOL" doctor --wait 1 "${@:3}"
}

check "s_server requiring a client certificate" fx_s_server_start good
good=$FX_PORT
conf "$WORK/good.conf"

# ---- healthy
doctor "healthy setup: exit 0" 0 --config "$WORK/good.conf" "localhost:$good"
out_has "every step is ok" "^result: 0 checks failed, 0 warnings$"
out_has "the server accepted the identity" "^ok +handshake +the identity was presented and accepted"
is "s_server saw the token identity" "$(fx_s_server_peer good)" "CN = device-p256, UID = dev-p256"
check "s_server with TLS 1.2 only" fx_s_server_start good12 -tls1_2
doctor "healthy setup over TLS 1.2 (ECDSA server): exit 0" 0 --config "$WORK/good.conf" "localhost:$FX_PORT"
out_has "...presented and accepted" "^ok +handshake +the identity was presented and accepted"
is "s_server (TLS 1.2) saw the token identity" "$(fx_s_server_peer good12)" "CN = device-p256, UID = dev-p256"
doctor "no destination: the identity alone" 0 --config "$WORK/good.conf"
out_has "...signs through the provider" "^ok +sign "

# ---- configuration and rule
doctor "no configuration" 3 "localhost:$good"
out_has "...named" "^FAIL +config +no configuration at "
printf '[p11mtls\nidentities = ids\n' >"$WORK/broken.conf"
doctor "a configuration that does not parse" 3 --config "$WORK/broken.conf" "localhost:$good"
out_has "...with the file and line" "^FAIL +config +.*broken.conf"
doctor "no rule for the destination" 3 --config "$WORK/good.conf" "example.org:443"
out_has "...named, with the fix" "^FAIL +rule +no rule matches example.org:443"
out_has "...the fix names the config" "fix: add \"example.org:443\""

# ---- token, PIN, certificate
conf "$WORK/notoken.conf" key="pkcs11:token=nosuch;id=%03;type=private" \
    cert="pkcs11:token=nosuch;id=%03;type=cert"
doctor "no token" 3 --config "$WORK/notoken.conf" "localhost:$good"
out_has "...named" "^FAIL +token +no token matches the key URI pkcs11:token=nosuch"
out_has "...with the tokens that are there" "tokens present:.*'$FX_TOKEN_LABEL'"
if [ "$P11M_TEST_TOKEN" = tpm ]; then
    # tpm2-pkcs11 always offers an uninitialised slot: no token there, no '' in the list.
    out_has "...the TPM's uninitialised slot is not one of them" "tokens present: '$FX_TOKEN_LABEL'$"
    da_before=$(fx_tpm_lockout_counter)
fi

(umask 077 && echo 9999 >"$WORK/wrong-pin.txt")
conf "$WORK/wrongpin.conf" pin="file:$WORK/wrong-pin.txt"
rm -f "$WORK/debug.log"
P11MTLS_DEBUG="2,file:$WORK/debug.log" doctor "wrong PIN" 3 --config "$WORK/wrongpin.conf" "localhost:$good"
out_has "...named" "^FAIL +login +.*refused the PIN"
out_has "...tried once and never again" "\(1 C_Login attempt; no other will be made\)"
out_has "...no signature tried" "^-- +sign +skipped"
is "exactly one C_Login reached the token" "$(grep -c 'C_Login(' "$WORK/debug.log")" 1
out_has "...the server then saw no certificate" "^-- +handshake +no certificate presented|^FAIL +handshake +no certificate presented"
is "s_server saw no identity" "$(fx_s_server_peer good)" none
rm -f "$WORK/debug.log"
P11MTLS_DEBUG="2,file:$WORK/debug.log" doctor "wrong PIN again: refused without a try" 3 \
    --config "$WORK/wrongpin.conf" "localhost:$good"
out_has "...the earlier refusal named, with the fix" \
    "^FAIL +pin +the PIN from file:.*wrong-pin.txt was refused by token '$FX_TOKEN_LABEL' at .*not tried again by any process"
is "...no C_Login this time" "$(grep -c 'C_Login(' "$WORK/debug.log")" 0
if [ "$P11M_TEST_TOKEN" = tpm ]; then
    is "the TPM counted one failed authorisation for both runs" \
        "$(fx_tpm_lockout_counter)" $((da_before + 1))
fi

conf "$WORK/expired.conf" cert="$FX_DEV_CERT_p256_expired"
doctor "expired certificate" 3 --config "$WORK/expired.conf" "localhost:$good"
out_has "...named" "^FAIL +validity +EXPIRED on "
conf "$WORK/otherkey.conf" cert="${!other_cert}"
doctor "certificate of another key" 3 --config "$WORK/otherkey.conf" "localhost:$good"
out_has "...named" "^FAIL +match +the certificate is for another key"

# A certificate that expires in 10 days: a warning, not a failure.
openssl x509 -new -force_pubkey "$FX_PUB_p256" -subj "/CN=device-p256/UID=dev-p256" \
    -CA "$FX_CA_INTER" -CAkey "$FX_CA_INTER_KEY" -days 10 -extfile "$FX_CACHE/ca/client.ext" \
    -out "$WORK/soon.pem" 2>"$WORK/soon.err"
conf "$WORK/soon.conf" cert="$WORK/soon.pem"
doctor "certificate expiring soon: still exit 0" 0 --config "$WORK/soon.conf" "localhost:$good"
out_has "...with a warning" "^warn +validity +valid until .*\((9|10) days left\): renew soon"

# ---- servers
check "s_server that asks for no client certificate" own_server noreq \
    -cert "$FX_SERVER_CERT" -key "$FX_SERVER_KEY" -cert_chain "$FX_CA_INTER"
doctor "server does not ask for a certificate" 3 --config "$WORK/good.conf" "localhost:$FX_PORT"
out_has "...named" "^FAIL +request +the server did not ask for a client certificate"
out_has "...and its own certificate was fine" "^ok +server +certificate"

check "s_server that wants certificates from another CA" fx_s_server_start otherca -CAfile "$FX_OTHER_CA"
doctor "server asks for another CA" 3 --config "$WORK/good.conf" "localhost:$FX_PORT"
out_has "...named" "^FAIL +ca-list +server's acceptable CA list .* does not include issuer"
out_has "...showing what it accepts" "server accepts: CN=p11mtls other CA"
is "nothing was presented there" "$(fx_s_server_peer otherca)" none

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj "/CN=intercepting proxy" -addext "subjectAltName=DNS:localhost" \
    -keyout "$WORK/mitm.key" -out "$WORK/mitm.pem" 2>"$WORK/mitm.err"
check "s_server with a certificate from an unexpected CA" own_server mitm \
    -cert "$WORK/mitm.pem" -key "$WORK/mitm.key" -verify 1 -CAfile "$FX_CA_CHAIN"
doctor "server certificate from an unexpected CA" 3 --config "$WORK/good.conf" "localhost:$FX_PORT"
out_has "...named" "^FAIL +server +certificate issued by CN=intercepting proxy does not verify against $FX_CA_CHAIN"
out_has "...suggesting a proxy" "TLS-intercepting proxy"
doctor "...passes when that CA is the expected one (--ca)" 0 --config "$WORK/good.conf" \
    --ca "$WORK/mitm.pem" "localhost:$FX_PORT"

doctor "an https URL" 0 --config "$WORK/good.conf" "https://localhost:$good/"
rc_is "a bad destination is a usage error" 2 "$TOOL" doctor --config "$WORK/good.conf" "ftp://x"
finish
