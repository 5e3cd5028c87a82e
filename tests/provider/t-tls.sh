#!/bin/bash
# TLS client authentication with token keys, TLS 1.2 and 1.3, against the
# s_server fixture; the server reports the client certificate it verified.
source "$(dirname "$0")/common.sh"
fx_workdir provider-tls
fx_token && fx_ca || bail_out "fixtures could not be built"
TPROV_KEYS=$(fx_have_key rsa2048 p256 ed25519)
# The PEM-URI key file: p384 where the token has it.
PEMKEY=$(fx_have_key p384)
: "${PEMKEY:=p256}"
plan $((2 * (${#KEYS[@]} + $(wc -w <<<"$TPROV_KEYS") + 3) + 5))

s_client() { # version key: provider from the command line, no openssl.cnf
    echo hello | OPENSSL_CONF=/dev/null osl s_client -provider-path "$PROV_DIR" \
        -provider p11mtls -provider default -connect "127.0.0.1:$FX_PORT" "$1" \
        -CAfile "$FX_CA_ROOT" -verify_return_error \
        -key "$(key_uri "$2")?pin-source=file:$FX_PIN_FILE" -cert "$(dev_cert "$2")"
}

for v in -tls1_2 -tls1_3; do
    fx_s_server_start "srv$v" "$v" >/dev/null || fail "s_server $v starts"
    for key in "${KEYS[@]}"; do
        s_client "$v" "$key" >"client-$key$v.log" 2>&1
        is "s_client $v $key: server verified the device" "$(fx_s_server_peer "srv$v")" \
            "$(fx_cert_subject "$(dev_cert "$key")")"
    done
    prov_conf pem-uri-files=yes
    for key in $TPROV_KEYS; do
        tprov tls "$FX_PORT" "$(cert_uri "$key")" "$(key_uri "$key")" >"tprov-$key$v.log" 2>&1
        is "C client $v: SSL_CTX_use_PrivateKey with $key by URI" \
            "$(fx_s_server_peer "srv$v")" "$(fx_cert_subject "$(dev_cert "$key")")"
    done
    check "p11mtls tool or helper writes a PEM-URI file" \
        "$P11M_BUILDDIR/tests/provider/tpemuri" "$(key_uri "$PEMKEY")" "key-$PEMKEY.pem"
    tprov tls "$FX_PORT" "$(cert_uri "$PEMKEY")" "key-$PEMKEY.pem" file >"tprov-file$v.log" 2>&1
    is "C client $v: SSL_CTX_use_PrivateKey_file with a PEM-URI file" \
        "$(fx_s_server_peer "srv$v")" "$(fx_cert_subject "$(dev_cert "$PEMKEY")")"
    if [ "$v" = -tls1_3 ]; then
        prov_conf
        out=$(tprov tls "$FX_PORT" "$(cert_uri "$PEMKEY")" "key-$PEMKEY.pem" file 2>&1)
        fx_s_server_peer "srv$v" >/dev/null
        like "PEM-URI key files are served only with pem-uri-files = yes" "$out" \
            "(unsupported|No supported data to decode)"
    fi
    unset OPENSSL_CONF
    echo hello | osl s_client -connect "127.0.0.1:$FX_PORT" "$v" -CAfile "$FX_CA_ROOT" >/dev/null 2>&1
    is "$v without a client key the server sees none" "$(fx_s_server_peer "srv$v")" none
    fx_s_server_stop "srv$v"
done
# TLS 1.3 with an RSA key must use RSA-PSS on the token (CKM_RSA_PKCS_PSS or a hashed PSS).
fx_s_server_start pss -tls1_3 >/dev/null || true
echo hello | P11MTLS_DEBUG="2,file:$WORK/pss-debug.log" OPENSSL_CONF=/dev/null osl s_client \
    -provider-path "$PROV_DIR" -provider p11mtls -provider default -connect "127.0.0.1:$FX_PORT" \
    -tls1_3 -CAfile "$FX_CA_ROOT" -key "$(key_uri rsa2048)?pin-source=file:$FX_PIN_FILE" \
    -cert "$(dev_cert rsa2048)" >pss-client.log 2>&1
is "TLS 1.3 with RSA: the server verified the device" "$(fx_s_server_peer pss)" \
    "$(fx_cert_subject "$(dev_cert rsa2048)")"
like "...signed with an RSA-PSS mechanism" "$(grep mechanism pss-debug.log)" \
    "mechanism 0x(d|43|44|45|46)$"
# The key cache: SoftHSM2 copies the key into a session object; tpm2-pkcs11 has no
# C_CopyObject, so p11mtls signs with the token object there.
if [ "${P11M_TEST_TOKEN:-softhsm}" = tpm ]; then
    cache="key cache: the token refused a session copy of key object [0-9]+ \(CKR_FUNCTION_NOT_SUPPORTED\)$"
else
    cache="key cache: key object [0-9]+ has session copy [0-9]+$"
fi
like "...key cache on ${P11M_TEST_TOKEN:-softhsm}: as the token allows" \
    "$(grep 'key cache' pss-debug.log)" "$cache"
fx_s_server_start ecdhe -tls1_2 -groups P-256 >/dev/null || true
echo hello | OPENSSL_CONF=/dev/null osl s_client -provider-path "$PROV_DIR" -provider p11mtls \
    -provider default -connect "127.0.0.1:$FX_PORT" -tls1_2 -groups P-256 -CAfile "$FX_CA_ROOT" \
    -key "$(key_uri p256)?pin-source=file:$FX_PIN_FILE" -cert "$(dev_cert p256)" >ecdhe-client.log 2>&1
is "ECDHE P-256 still uses software keys with p11mtls loaded first" "$(fx_s_server_peer ecdhe)" \
    "$(fx_cert_subject "$(dev_cert p256)")"
finish
