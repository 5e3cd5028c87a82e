#!/bin/bash
# shellcheck disable=SC2016 # the child shells expand the variables, not this one
# p11mtls run: LD_PRELOAD is appended to (never replaced), P11MTLS_CONF is set from
# --config, a command that cannot run gives 127, and curl run through it presents the
# fixture token's identity to nginx.
source "$(dirname "$0")/common.sh"
fx_workdir tool-run
fx_token || skip_all "token fixture could not be built"
fx_ca || skip_all "CA fixture could not be built"
plan 14

fake=$WORK/libfake.so # never loaded: the shell only prints the variable
: >"$fake"
rc_is "run without LD_PRELOAD" 0 env -u LD_PRELOAD "$TOOL" run --preload "$fake" -- \
    sh -c 'echo "LD_PRELOAD=$LD_PRELOAD"'
out_has "sets LD_PRELOAD to the preload library" "^LD_PRELOAD=$fake$"
rc_is "run with an LD_PRELOAD already set" 0 env LD_PRELOAD=/first.so "$TOOL" run \
    --preload "$fake" -- sh -c 'echo "LD_PRELOAD=$LD_PRELOAD"'
out_has "keeps the existing value and appends ours" "^LD_PRELOAD=/first.so:$fake$"
rc_is "P11MTLS_PRELOAD names the library" 0 env -u LD_PRELOAD P11MTLS_PRELOAD="$fake" \
    "$TOOL" run -- sh -c 'echo "LD_PRELOAD=$LD_PRELOAD"'
out_has "...and is used" "^LD_PRELOAD=$fake$"
fx_shim_conf "$WORK/shim.conf" p256 localhost
rc_is "--config sets P11MTLS_CONF" 0 env -u LD_PRELOAD "$TOOL" run --preload "$fake" \
    --config "$WORK/shim.conf" -- sh -c 'echo "P11MTLS_CONF=$P11MTLS_CONF"'
out_has "...to that file" "^P11MTLS_CONF=$WORK/shim.conf$"
rc_is "a command that does not exist: 127" 127 env -u LD_PRELOAD "$TOOL" run \
    --preload "$fake" -- "$WORK/no-such-program"
out_has "...with a clear message" "cannot run $WORK/no-such-program: No such file"
rc_is "a missing preload library: 1" 1 "$TOOL" run --preload "$WORK/none.so" -- true
rc_is "the command's exit status is passed on" 7 env -u LD_PRELOAD "$TOOL" run \
    --preload "$fake" -- sh -c 'exit 7'

check "nginx requiring client certificates" fx_nginx_start web
run_get "$WORK/shim.conf" "$FX_NGINX_PORT" >"$WORK/curl.out" 2>&1
like "curl through p11mtls run presents the token identity" "$(cat "$WORK/curl.out")" \
    "verify=SUCCESS dn=UID=dev-p256,CN=device-p256"
finish
