#!/bin/bash
# 8 threads x 2,000 TLS 1.2/1.3 handshakes with client authentication, each verified by
# the server (SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT) as the device:
#   t-threads.sh provider   the program loads key and certificate by pkcs11: URI
#   t-threads.sh shim       the program has no certificate code; the shim presents them
# Half the threads share one SSL_CTX, the others have their own. No resumption.
# shellcheck disable=SC2119 # rel_provider_cnf without extra parameters
source "$(dirname "$0")/common.sh"
mode=${1:?provider or shim}
fx_workdir "reliability-threads-$mode"
if ! fx_token || ! fx_ca; then bail_out "fixtures could not be built"; fi
T=8 N=${REL_HANDSHAKES:-2000}
total=$((T * N))
plan 5

export P11MTLS_DEBUG="2,file:$WORK/p11.log"
args=(--threads "$T" --n "$N" --tls mix --expect "$REL_SUBJECT_p256" --timeout 500)
if [ "$mode" = provider ]; then
    rel_provider_cnf
    rel_tls --key "$(fx_key_uri p256)" --cert "$(fx_cert_uri p256)" "${args[@]}" threads \
        >out 2>&1
    rc=$?
else
    REL_LOG_LEVEL=debug rel_shim_conf shim.conf p256 localhost
    rel_shim "$WORK/shim.conf" rel_tls --sni localhost "${args[@]}" threads >out 2>&1
    rc=$?
fi
rel_no_crash "$mode: no crash, no hang" "$rc" out
is "$mode: $T x $N handshakes completed, each verified by the server as the device" \
    "$(grep -o 'handshakes=.*' out)" \
    "handshakes=$total ok=$total verified=$total expected=$total none=0 errors=0 server_failures=0"
is "$mode: one C_Login for all of them" "$(rel_count 'C_Login\(' p11.log)" 1
is "$mode: no PKCS#11 call failed" "$(grep -E '= CKR_' p11.log | grep -vc '= CKR_OK$')" 0
if [ "$mode" = provider ]; then
    is "$mode: the key was signing on the token ($total C_Sign)" \
        "$(rel_count 'C_Sign\(.*= CKR_OK' p11.log)" "$total"
else
    is "$mode: the shim loaded the identity once and presented it $total times" \
        "$(rel_count 'identity device loaded' shim.log) $(rel_count ': presented subject' shim.log)" \
        "1 $total"
fi
finish
