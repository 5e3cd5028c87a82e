#!/bin/bash
# Tokens with fewer mechanisms: the provider uses what the token lists, does RSA-PSS in
# software around raw RSA when the token has no PSS mechanism (so TLS 1.3 still works),
# and says clearly when a scheme is impossible on the token.
source "$(dirname "$0")/common.sh"
fx_workdir provider-mechs
fx_ca || bail_out "fixtures could not be built"
plan 7
echo "the message" >msg.txt

# SoftHSM 2.6 takes a list of the mechanisms to offer (it ignores "-MECH" exclusions).
pkcs1="CKM_RSA_PKCS,CKM_SHA1_RSA_PKCS,CKM_SHA256_RSA_PKCS,CKM_SHA384_RSA_PKCS,CKM_SHA512_RSA_PKCS"

# A token without any PSS mechanism, but with raw RSA.
FX_SOFTHSM_MECHANISMS="$pkcs1,CKM_RSA_X_509" fx_token || bail_out "token fixture could not be built"
prov_conf debug-level=2 "debug-file=$WORK/nopss.log"
check "no PSS mechanism: PSS signature made over raw RSA" osl dgst -sha256 \
    -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:digest -sign "$(key_uri rsa2048)" \
    -out sig.bin msg.txt
check "... verifies in software" env OPENSSL_CONF=/dev/null openssl dgst -sha256 \
    -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:digest -verify "$(pub_pem rsa2048)" \
    -signature sig.bin msg.txt
like "... and the token did a raw RSA operation (CKM_RSA_X_509)" "$(grep mechanism nopss.log)" \
    "mechanism 0x3$"
fx_s_server_start srv -tls1_3 >/dev/null || fail "s_server starts"
echo hi | osl s_client -connect "127.0.0.1:$FX_PORT" -tls1_3 -CAfile "$FX_CA_ROOT" \
    -key "$(key_uri rsa2048)" -cert "$FX_DEV_CERT_rsa2048" >client.log 2>&1
is "... TLS 1.3 client auth with RSA works on such a token" "$(fx_s_server_peer srv)" \
    "$(fx_cert_subject "$FX_DEV_CERT_rsa2048")"

# A token that can do neither PSS nor raw RSA: PSS is impossible, and said so.
FX_SOFTHSM_MECHANISMS="$pkcs1" fx_token || bail_out "token fixture could not be built"
prov_conf
out=$(osl dgst -sha256 -sigopt rsa_padding_mode:pss -sign "$(key_uri rsa2048)" -out sig.bin msg.txt 2>&1)
like "no PSS and no raw RSA: clear error" "$out" \
    "mechanism not supported by the token.*cannot sign RSA-PSS"
check "... PKCS#1 v1.5 still works there" osl dgst -sha256 -sign "$(key_uri rsa2048)" \
    -out sig.bin msg.txt
out=$(echo hi | osl s_client -connect "127.0.0.1:$FX_PORT" -tls1_3 -CAfile "$FX_CA_ROOT" \
    -key "$(key_uri rsa2048)" -cert "$FX_DEV_CERT_rsa2048" 2>&1)
fx_s_server_peer srv >/dev/null
like "... and TLS 1.3 with that RSA key fails with the reason" "$out" "cannot sign RSA-PSS"
finish
