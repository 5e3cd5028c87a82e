#!/bin/bash
# What the shim decides, and that it says why: destinations no rule names, unknown
# destinations, programs with their own certificate, and an identity that cannot be
# used (wrong PIN, no PIN, absent token, expired or not yet valid certificate, CA not
# accepted by the server) with on_unavailable = continue (the handshake goes on
# without a certificate) and abort (it fails). nginx asks for a certificate but
# accepts connections without one (ssl_verify_client optional) and says what it got.
source "$P11M_SRCDIR/tests/shim/common.sh"
fx_workdir shim-policy
sh_need_provider
fx_token
fx_ca
fx_nginx_start nginx optional
NP=$FX_NGINX_PORT
URL=https://localhost:$NP/
KEY=$(fx_key_uri p256)
CERT=$(fx_cert_uri p256)

# expect NAME WANT_BODY LOG_REGEX CMD...: the client's output matches WANT_BODY (an
# ERE; "FAIL" means the client must fail) and the shim logged exactly one line,
# matching LOG_REGEX.
expect() {
    local name=$1 want=$2 logre=$3 log lines
    shift 3
    sh_client "$name" sh_shim "$@"
    log=$(sh_log_new)
    lines=$(grep -c . <<<"$log")
    if [ "$want" = FAIL ]; then
        [ "$SH_RC" -ne 0 ] || { fail "$name: client fails" "$(cat "$SH_OUT")"; return; }
    elif [ "$SH_RC" -ne 0 ] || ! grep -Eq "$want" "$SH_OUT"; then
        fail "$name: client gets $want" "exit status $SH_RC" "$(tail -n 5 "$SH_OUT")" \
            "shim log: $log"
        return
    fi
    if [ "$lines" -eq 1 ] && [[ $log =~ $logre ]]; then
        ok "$name: ${log#*: }"
    else
        fail "$name: one log line matching $logre" "shim log ($lines lines): $log"
    fi
}

DEVICE='verify=SUCCESS dn=UID=dev-p256,CN=device-p256'
NONE='verify=NONE'

# -- destinations
sh_conf "$WORK/shim.conf" "$KEY" "$CERT" "other.example 10.0.0.0/8"
expect "no rule for the destination" "$NONE" \
    "dest=localhost:$NP \(sni\) TLSv1.3: no rule matches; no certificate" sh_curl "$URL"
sh_conf "$WORK/shim.conf" "$KEY" "$CERT" "127.0.0.1"
expect "curl with an IP literal (its own BIO, no SNI): the socket its BIO read" "$DEVICE" \
    "dest=127.0.0.1:$NP \(peer\) .*rule=r identity=device: presented" sh_curl "https://127.0.0.1:$NP/"
sh_conf "$WORK/shim.conf" "$KEY" "$CERT" "127.0.0.1:$NP"
expect "IP and port rule (python, verify-ip + socket port)" "$DEVICE" \
    "dest=127.0.0.1:$NP \(verify-ip\) .*rule=r identity=device: presented" \
    sh_py urllib "https://127.0.0.1:$NP/"
sh_conf "$WORK/shim.conf" "$KEY" "$CERT" "127.0.0.1:1 localhost:1"
expect "other port: no rule" "$NONE" "dest=localhost:$NP \(sni\) .*no rule matches" \
    sh_py urllib "$URL"
sh_conf "$WORK/shim.conf" "$KEY" "$CERT" "*.localdomain.example localhost"
expect "host rule (legacy client with SNI)" "$DEVICE" "dest=localhost:$NP \(sni\).*presented" \
    sh_legacy 127.0.0.1 "$NP" -n localhost

# -- the program's own certificate wins
sh_conf "$WORK/shim.conf" "$KEY" "$CERT" "localhost"
expect "curl --cert/--key keeps its own certificate" "dn=UID=soft-client,CN=soft-client" \
    "the program set its own certificate; p11mtls not involved" \
    sh_curl --cert "$FX_SOFT_CLIENT_CERT" --key "$FX_SOFT_CLIENT_KEY" "$URL"

# -- a software identity (key and certificate files) needs no token
sh_conf "$WORK/shim.conf" "$FX_SOFT_CLIENT_KEY" "$FX_SOFT_CLIENT_CERT" "localhost"
expect "software identity from files" "dn=UID=soft-client,CN=soft-client" \
    'presented subject="/CN=soft-client/UID=soft-client"' sh_curl "$URL"

# -- an encrypted key file: the pin_source is its passphrase (through the UI method)
openssl pkey -in "$FX_SOFT_CLIENT_KEY" -aes256 -passout pass:s3cret-pass -out "$WORK/enc.key"
(umask 077 && echo s3cret-pass >"$WORK/pass.txt")
SH_PIN_SOURCE=file:$WORK/pass.txt sh_conf "$WORK/shim.conf" "$WORK/enc.key" \
    "$FX_SOFT_CLIENT_CERT" "localhost"
expect "encrypted key file, passphrase from pin_source" "dn=UID=soft-client,CN=soft-client" \
    'presented subject="/CN=soft-client/UID=soft-client"' sh_curl "$URL"

# -- PIN sources
SH_PIN_SOURCE=env:SHIM_TEST_PIN sh_conf "$WORK/shim.conf" "$KEY" "$CERT" "localhost"
export SHIM_TEST_PIN=$FX_PIN
expect "pin_source env:NAME" "$DEVICE" "presented" sh_curl "$URL"
unset SHIM_TEST_PIN

# provider parameters from an application-style openssl.cnf: here the PKCS#11 module
# (the token's own, SoftHSM2 or tpm2-pkcs11, instead of the p11-kit proxy) and the PIN source
fx_provider_cnf "$WORK/openssl-p11mtls.cnf" "$FX_TOKEN_MODULE"
SH_PIN_SOURCE=none SH_MAIN_EXTRA="provider_config = $WORK/openssl-p11mtls.cnf" \
    sh_conf "$WORK/shim.conf" "$KEY" "$CERT" "localhost"
expect "provider_config: module and PIN source from the provider section" "$DEVICE" \
    "presented" sh_curl "$URL"
SH_PIN_SOURCE=none SH_MAIN_EXTRA="provider_params = pp
[pp]
pkcs11-module = /nonexistent/module.so" sh_conf "$WORK/shim.conf" "$KEY" "$CERT" "localhost"
expect "provider_params: a bad module path reaches the provider" "$NONE" \
    "not presented: .*nonexistent/module.so" sh_curl "$URL"

# unavailable CASE KEY CERT LOG_REGEX: continue, then abort (TLS 1.3 and 1.2).
unavailable() {
    local what=$1 key=$2 cert=$3 why=$4
    sh_conf "$WORK/shim.conf" "$key" "$cert" "localhost"
    expect "$what, continue" "$NONE" \
        "identity=device: not presented: $why.*; continuing without a client certificate" \
        sh_curl "$URL"
    SH_RULE_EXTRA="on_unavailable = abort" sh_conf "$WORK/shim.conf" "$key" "$cert" "localhost"
    expect "$what, abort (TLS 1.3)" FAIL "not presented: $why.*; handshake aborted" \
        sh_curl "$URL"
    expect "$what, abort (TLS 1.2)" FAIL "TLSv1.2 .*not presented: $why.*; handshake aborted" \
        sh_py urllib "$URL" --tls 1.2
}

WRONG_PIN=987654
(umask 077 && echo "$WRONG_PIN" >"$WORK/wrong-pin.txt")
SH_PIN_SOURCE=file:$WORK/wrong-pin.txt unavailable "wrong PIN" "$KEY" "$CERT" \
    "test signature failed"
SH_PIN_SOURCE=none unavailable "no PIN anywhere (never prompts)" "$KEY" "$CERT" \
    "no private key at .*PIN missing"
unavailable "absent token" "pkcs11:token=no-such-token;id=%03;type=private?pin-value=55aa55" \
    "pkcs11:token=no-such-token;id=%03;type=cert" "no private key at pkcs11:token=no-such-token"
unavailable "expired certificate" "$KEY" "$FX_DEV_CERT_p256_expired" "certificate expired"
unavailable "certificate not yet valid" "$KEY" "$FX_DEV_CERT_p256_notyet" \
    "certificate not yet valid"
unavailable "CA not accepted by the server" "$KEY" "$FX_OTHER_DEV_CERT_p256" \
    "server's acceptable CA list \(2 names\) does not include issuer \"/CN=p11mtls other CA\""

SH_RULE_EXTRA="require_ca_match = no" sh_conf "$WORK/shim.conf" "$KEY" "$FX_OTHER_DEV_CERT_p256" \
    localhost
expect "require_ca_match = no presents it anyway (nginx then rejects it)" "400 Bad Request|certificate" \
    'presented subject="/CN=device-p256/UID=dev-p256"' sh_curl "$URL"

# -- TLS 1.3 post-handshake authentication: the client must offer it (an option)
pha_case() { # WHAT MAIN_EXTRA WANT_REGEX
    local pid i
    rm -f "$WORK/pha.port"
    "$SH_PY" "$SH_DIR/pha_server.py" "$FX_SERVER_FULLCHAIN" "$FX_SERVER_KEY" "$FX_CA_CHAIN" \
        "$WORK/pha.port" >"$WORK/pha.out" 2>&1 &
    pid=$!
    for ((i = 0; i < 100; i++)); do
        [ -s "$WORK/pha.port" ] && break
        sleep 0.05
    done
    SH_MAIN_EXTRA=$2 sh_conf "$WORK/shim.conf" "$KEY" "$CERT" localhost
    sh_client "$1" sh_shim sh_legacy 127.0.0.1 "$(cat "$WORK/pha.port")" -n localhost -v tls1.3
    wait "$pid"
    like "$1" "$(cat "$WORK/pha.out")" "$3"
}
pha_case "post_handshake_auth = yes: a certificate requested after the handshake" \
    "post_handshake_auth = yes" "^client: CN=device-p256"
pha_case "post_handshake_auth unset: the legacy client offers none" "" "^client: (none|error)"
sh_log_new >/dev/null

# -- secrets stay out of the log
if grep -q -e "$WRONG_PIN" -e 55aa55 -e s3cret "$WORK/shim.log"; then
    fail "no PIN in the log" "$(grep -e "$WRONG_PIN" -e 55aa55 -e s3cret "$WORK/shim.log")"
else
    ok "no PIN in the log (pin-value shown as ***: $(grep -c 'pin-value=\*\*\*' "$WORK/shim.log") lines)"
fi
finish
