# shellcheck shell=bash
# Shared by the reliability tests (sourced; meson's test_env is set).
#
#   rel_tls ARGS...          tests/reliability/rel-tls with the fixture server, CA and
#                            client trust (see rel_tls.c); provider mode when ARGS name
#                            --key/--cert (set OPENSSL_CONF first, see rel_provider_cnf)
#   rel_shim CONF CMD...     CMD with the shim preloaded and configured by CONF; for
#                            programs built here (sanitized in ASan builds: no second
#                            runtime, see below)
#   rel_shim_ext CONF CMD... the same for programs not built here (curl, openssl)
#   rel_shim_conf OUT LABEL PATTERN...   a shim config for the token key LABEL, logging
#                            to $WORK/shim.log; REL_PIN_SOURCE, REL_LOG_LEVEL,
#                            REL_MAIN_EXTRA, REL_RULE_EXTRA change it
#   rel_provider_cnf [PARAM=VALUE...]    $WORK/openssl.cnf (default + p11mtls with the
#                            fixture PIN file unless pin-source= is given), exported as
#                            OPENSSL_CONF
#   rel_osl ARGS...          openssl with the ASan runtime in ASan builds
#   rel_openssl ARGS...      openssl without provider or preload, to make test files
#   rel_count REGEX FILE     number of lines of FILE matching REGEX (0 if no file)
#   rel_no_crash DESC RC OUT a test line: the program ended by exit, not by a signal
#                            (status > 128 in the shell) or a sanitizer report
#
# ASan builds: programs meson built here are sanitized and carry the runtime themselves;
# preloading it again is wrong, so they get only the shim in LD_PRELOAD and ASan is told
# not to insist on coming first. Programs from the system (openssl, curl) get the runtime
# preloaded first through fx_preload_env.
# Exports in ( ) are meant to stay in the subshell; rel_provider_cnf takes optional args.
# shellcheck disable=SC2030,SC2031,SC2120
# shellcheck source=../fixtures/lib.sh
source "$P11M_SRCDIR/tests/fixtures/lib.sh"

REL_TLS=$P11M_BUILDDIR/tests/reliability/rel-tls
# shellcheck disable=SC2034 # used by the scripts that source this file
REL_OBJ=$P11M_BUILDDIR/tests/reliability/rel-obj
# shellcheck disable=SC2034
REL_SUBJECT_p256="/CN=device-p256/UID=dev-p256"
REL_ASAN=${P11M_ASAN_PRELOAD:+1}

rel_tls() {
    "$REL_TLS" --server-cert "$FX_SERVER_CERT" --server-key "$FX_SERVER_KEY" \
        --server-chain "$FX_CA_INTER" --ca "$FX_CA_CHAIN" --root "$FX_CA_ROOT" "$@"
}

rel_shim() {
    local conf=$1
    shift
    (
        export P11MTLS_CONF=$conf P11MTLS_PROVIDER=$P11M_PROVIDER
        export LD_PRELOAD=$P11M_PRELOAD${LD_PRELOAD:+:$LD_PRELOAD}
        [ -z "$REL_ASAN" ] || export ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0
        "$@"
    )
}

rel_shim_ext() {
    local conf=$1
    shift
    (
        export P11MTLS_CONF=$conf P11MTLS_PROVIDER=$P11M_PROVIDER
        fx_preload_env "$P11M_PRELOAD"
        "$@"
    )
}

rel_osl() {
    (fx_preload_env && exec openssl "$@")
}

# openssl as a plain tool (making test files): no provider, no preload
rel_openssl() {
    env -u OPENSSL_CONF -u LD_PRELOAD openssl "$@"
}

rel_shim_conf() { # OUT LABEL PATTERN...
    local out=$1 label=$2
    shift 2
    {
        echo "[p11mtls]"
        echo "identities = ids"
        echo "rules = rules"
        echo "log = file:$WORK/shim.log"
        echo "log_level = ${REL_LOG_LEVEL:-info}"
        # loads are counted: no periodic re-read unless a test asks for it
        echo "reload_interval = ${REL_RELOAD_INTERVAL:-0}"
        echo "${REL_MAIN_EXTRA:-}"
        echo "[ids]"
        echo "device = device_id"
        echo "[device_id]"
        echo "key = $(fx_key_uri "$label")"
        echo "cert = $(fx_cert_uri "$label")"
        echo "pin_source = ${REL_PIN_SOURCE:-file:$FX_PIN_FILE}"
        echo "[rules]"
        echo "named = rule_named"
        echo "[rule_named]"
        echo "match = $*"
        echo "identity = device"
        echo "${REL_RULE_EXTRA:-}"
    } >"$out"
}

rel_provider_cnf() {
    fx_openssl_cnf "$WORK/openssl.cnf" "$@"
    export OPENSSL_CONF=$WORK/openssl.cnf
}

rel_count() {
    local n
    n=$(grep -Ec -- "$1" "$2" 2>/dev/null) || true
    echo "${n:-0}"
}

# Sanitizer reports and crashes look alike to a test: no signal, no report.
rel_no_crash() { # DESC RC OUTFILE
    if [ "$2" -gt 128 ] && [ "$2" -ne 124 ]; then
        fail "$1" "killed by signal $(($2 - 128))" "$(tail -n 15 "$3")"
    elif grep -Eq 'ERROR: AddressSanitizer|runtime error:|LeakSanitizer' "$3"; then
        # the report's own lines: other processes' noise may come in between
        fail "$1" "sanitizer report" "$(grep -E '==[0-9]+==ERROR|runtime error:|^ +#[0-9]+ 0x|SUMMARY: ' "$3" | head -n 40)"
    elif [ "$2" -eq 124 ]; then
        fail "$1" "timed out (hung)" "$(tail -n 15 "$3")"
    else
        ok "$1"
    fi
}

# rel_known DESC REASON CMD...: a check of a known, reported bug. Passing is a plain ok;
# failing is "not ok ... # TODO REASON", which TAP does not count as a failure.
rel_known() {
    local desc=$1 reason=$2 out rc=0
    shift 2
    out=$(mktemp "$WORK/.known.XXXXXX")
    "$@" </dev/null >"$out" 2>&1 || rc=$?
    FX_TAP_N=$((FX_TAP_N + 1))
    if [ "$rc" -eq 0 ]; then
        echo "ok $FX_TAP_N - $desc"
    else
        echo "not ok $FX_TAP_N - $desc # TODO $reason"
        tail -n 5 "$out" | sed 's/^/# /'
    fi
    rm -f "$out"
}
