#!/bin/bash
# valgrind memcheck over TLS with the device identity: the provider from a C client
# (rel-tls, two threads, in-process server) and from openssl s_client, the shim under the
# legacy C client and under curl. No invalid access and no leak ("definitely" or
# "indirectly lost") attributable to p11mtls; suppressions (valgrind.supp) cover
# third-party code only, each with its reason. vgcheck.py reads the reports.
# shellcheck disable=SC2119 # rel_provider_cnf without parameters
source "$(dirname "$0")/common.sh"
fx_workdir reliability-valgrind
[ -z "$REL_ASAN" ] || skip_all "sanitized build: valgrind cannot run ASan code (the ASan build checks the same paths)"
command -v valgrind >/dev/null || bail_out "valgrind not found (tests/packages.txt lists it)"
if ! fx_token || ! fx_ca; then bail_out "fixtures could not be built"; fi
fx_s_server_start sserver || bail_out "s_server did not start"
SP=$FX_PORT
fx_nginx_start nginx on || bail_out "nginx did not start"
NP=$FX_NGINX_PORT
DIR=$P11M_SRCDIR/tests/reliability
LEGACY=$P11M_BUILDDIR/tests/shim/legacy-client
plan 12

# shellcheck disable=SC2054 # the commas belong to the options
VG=(valgrind --leak-check=full --show-leak-kinds=definite,indirect
    --errors-for-leak-kinds=definite,indirect --num-callers=40 --keep-debuginfo=yes
    --suppressions="$DIR/valgrind.supp")

# vg_check NAME DESC: the memcheck verdict on NAME.vg
vg_check() {
    local verdict rc=0
    verdict=$(/usr/bin/python3 "$DIR/vgcheck.py" "$WORK/$1.vg") || rc=$?
    if [ "$rc" -eq 0 ]; then
        ok "$2 ($(head -n 1 <<<"$verdict"))"
    else
        fail "$2" "$verdict"
    fi
}

rel_provider_cnf
"${VG[@]}" --log-file="$WORK/provider-c.vg" "$REL_TLS" --key "$(fx_key_uri p256)" \
    --cert "$(fx_cert_uri p256)" --server-cert "$FX_SERVER_CERT" --server-key "$FX_SERVER_KEY" \
    --server-chain "$FX_CA_INTER" --ca "$FX_CA_CHAIN" --root "$FX_CA_ROOT" \
    --expect "$REL_SUBJECT_p256" --threads 2 --n 3 --tls mix --timeout 240 threads \
    >provider-c.out 2>&1
like "provider, C client under valgrind: 2 threads x 3 verified handshakes" \
    "$(cat provider-c.out)" "handshakes=6 ok=6 verified=6 expected=6 .*errors=0"
vg_check provider-c "... no invalid access, no leak"

echo "hello from s_client" |
    "${VG[@]}" --log-file="$WORK/provider-s_client.vg" openssl s_client -quiet -no_ign_eof \
        -connect "127.0.0.1:$SP" -cert "$(fx_cert_uri p256)" -key "$(fx_key_uri p256)" \
        -CAfile "$FX_CA_ROOT" -verify_return_error >provider-s_client.out 2>&1
is "provider, openssl s_client under valgrind: the server verified the device" \
    "$(fx_s_server_peer sserver)" "$(fx_cert_subject "$FX_DEV_CERT_p256")"
vg_check provider-s_client "... no invalid access, no leak"
unset OPENSSL_CONF

rel_shim_conf shim.conf p256 localhost
rel_shim "$WORK/shim.conf" "${VG[@]}" --log-file="$WORK/shim-legacy.vg" "$LEGACY" \
    -c "$FX_CA_ROOT" -t 20 -n localhost 127.0.0.1 "$NP" >shim-legacy.out 2>&1
like "shim, legacy client under valgrind: nginx verified the device" \
    "$(cat shim-legacy.out)" "verify=SUCCESS dn=UID=dev-p256,CN=device-p256"
vg_check shim-legacy "... no invalid access, no leak"
rel_shim "$WORK/shim.conf" "${VG[@]}" --log-file="$WORK/shim-legacy12.vg" "$LEGACY" \
    -c "$FX_CA_ROOT" -t 20 -v tls1.2 -n localhost 127.0.0.1 "$NP" >shim-legacy12.out 2>&1
like "shim, legacy client TLS 1.2 under valgrind: nginx verified the device" \
    "$(cat shim-legacy12.out)" "verify=SUCCESS dn=UID=dev-p256,CN=device-p256"
vg_check shim-legacy12 "... no invalid access, no leak"

rel_shim "$WORK/shim.conf" "${VG[@]}" --log-file="$WORK/shim-curl.vg" curl -sS --max-time 60 \
    --cacert "$FX_CA_ROOT" "https://localhost:$NP/" >shim-curl.out 2>&1
like "shim, curl under valgrind: nginx verified the device" \
    "$(cat shim-curl.out)" "verify=SUCCESS dn=UID=dev-p256,CN=device-p256"
vg_check shim-curl "... no invalid access, no leak"

# the shim with an identity that fails (wrong PIN): the error paths leak nothing either
(umask 077 && echo 0000 >wrong-pin.txt)
REL_PIN_SOURCE=file:$WORK/wrong-pin.txt rel_shim_conf wrong.conf p256 localhost
rel_shim "$WORK/wrong.conf" "${VG[@]}" --log-file="$WORK/shim-wrong.vg" "$LEGACY" \
    -c "$FX_CA_ROOT" -t 20 -n localhost 127.0.0.1 "$NP" >shim-wrong.out 2>&1
like "shim, wrong PIN under valgrind: the client goes on without a certificate" \
    "$(cat shim-wrong.out)" "400 Bad Request|No required SSL certificate"
vg_check shim-wrong "... no invalid access, no leak"
finish
