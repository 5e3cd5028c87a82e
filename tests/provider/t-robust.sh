#!/bin/bash
# Threads, fork, keys of the program beside token keys, libssl's key checks,
# and a wrong PIN that is tried exactly once.
source "$(dirname "$0")/common.sh"
fx_workdir provider-robust
fx_token && fx_ca || bail_out "fixtures could not be built"
prov_conf
plan 17

for key in rsa2048 p256 ed25519; do
    check "$key: 4 threads x 50 signatures, all verified" tprov threads "$(key_uri "$key")" 4 50
done
# The token returns r||s; the provider writes the DER. In 1000 signatures some r and s
# have their top bit set (a sign byte is due) and some are a byte short (leading zero
# dropped); OpenSSL's verification accepts only the canonical encoding.
for key in p256 p384; do
    is "$key: 1000 ECDSA signatures, each canonical DER that verifies" \
        "$(tprov repeat "$(key_uri "$key")" 1000 2>&1 | tail -n 1)" "1000 attempts: 0 failed"
done
check "p256: sign in the parent, then in 10 forked children" tprov fork "$(key_uri p256)" 10
check "rsa2048: fork children after use" tprov fork "$(key_uri rsa2048)" 5
check "software RSA/EC/Ed25519 keys keep working beside a token key" tprov mixed "$(key_uri p256)"
PROV_FIRST=1 prov_conf
check "... also when p11mtls is activated before default" tprov mixed "$(key_uri p256)"
check "... and token keys still sign then" tprov threads "$(key_uri rsa2048)" 2 10
prov_conf
for key in rsa2048 p384 ed25519; do
    check "$key: X509_check_private_key, EVP_PKEY_eq, bits, size, digest" \
        tprov checks "$(key_uri "$key")" "$(dev_cert "$key")"
done

(umask 077 && echo 0000 >wrong-pin.txt)
prov_conf "pin-source=file:$WORK/wrong-pin.txt" debug-level=2 "debug-file=$WORK/wrong.log"
out=$(tprov repeat "$(key_uri p256)" 3 2>&1)
like "wrong PIN: every attempt fails" "$out" "3 attempts: 3 failed"
like "... with a clear reason" "$out" "PIN incorrect.*refused the PIN"
is "... and the token saw exactly one C_Login" "$(grep -c 'C_Login(' wrong.log)" 1
prov_conf
out=$(tprov repeat "$(key_uri p256)" 2 2>&1)
like "the right PIN in a new process works" "$out" "2 attempts: 0 failed"
finish
