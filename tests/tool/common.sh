# shellcheck shell=bash
# Shared by the tool tests: the fixtures library, the tool, the provider.
# shellcheck source=../fixtures/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../fixtures/lib.sh"

: "${P11M_TOOL:=$P11M_BUILDDIR/tokens/p11mtls}"
: "${P11M_PROVIDER:=$P11M_BUILDDIR/provider/p11mtls.so}"
: "${P11M_PRELOAD:=$P11M_BUILDDIR/shim/libp11mtls-preload.so}"
export P11M_TOOL P11M_PROVIDER P11M_PRELOAD
# The tool finds the provider and the preload library the way an installed one would
# find them through the environment.
export P11MTLS_PROVIDER=$P11M_PROVIDER P11MTLS_PRELOAD=$P11M_PRELOAD

export TOOL=$P11M_TOOL

# with_asan CMD...: CMD with the sanitizer runtime preloaded first in ASan builds, as an
# unsanitized program (openssl, curl) that loads our sanitized provider or preload
# library needs it; a no-op in normal builds.
with_asan() {
    # shellcheck disable=SC2119 # nothing to add but the runtime
    (fx_preload_env && "$@")
}

# run_get CONF PORT: GET https://localhost:PORT/ through `p11mtls run --config CONF`
# with curl. ASan builds use openssl s_client instead: curl deadlocks in setlocale()
# whenever the ASan runtime is preloaded into it, with or without p11mtls.
run_get() {
    local conf=$1 port=$2
    if [ -z "${P11M_ASAN_PRELOAD:-}" ]; then
        with_asan "$TOOL" run --config "$conf" -- \
            curl -sS --cacert "$FX_CA_ROOT" "https://localhost:$port/"
        return
    fi
    printf 'GET / HTTP/1.0\r\nHost: localhost\r\n\r\n' |
        with_asan "$TOOL" run --config "$conf" -- openssl s_client -quiet -verify_quiet \
            -connect "localhost:$port" -servername localhost -CAfile "$FX_CA_ROOT"
}

# rc_is DESC EXPECTED CMD...: CMD's exit status must be EXPECTED; its output is kept
# in $WORK/last.out for later checks.
rc_is() {
    local desc=$1 want=$2 rc=0
    shift 2
    "$@" </dev/null >"$WORK/last.out" 2>&1 || rc=$?
    fx_drop_foreign_noise "$WORK/last.out"
    if [ "$rc" -eq "$want" ]; then
        ok "$desc"
    else
        fail "$desc" "exit status $rc, expected $want: $*" "$(tail -n 20 "$WORK/last.out")"
    fi
}

# out_has DESC REGEX: the output of the last rc_is matches the extended regex.
out_has() {
    if grep -Eq -- "$2" "$WORK/last.out"; then
        ok "$1"
    else
        fail "$1" "no line matches: $2" "$(tail -n 30 "$WORK/last.out")"
    fi
}

# fresh_softhsm NAME: an empty SoftHSM2 token directory (only its free slot).
fresh_softhsm() {
    mkdir -p "$WORK/$1"
    cat >"$WORK/$1.conf" <<EOC
directories.tokendir = $WORK/$1
objectstore.backend = file
log.level = ERROR
slots.removable = false
EOC
    export SOFTHSM2_CONF=$WORK/$1.conf
}
