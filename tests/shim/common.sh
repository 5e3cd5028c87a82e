# shellcheck shell=bash
# Helpers shared by the shim's integration tests (sourced; meson's test_env is set).
#
#   sh_conf OUT KEY CERT MATCH     write a shim config with one identity and one rule;
#                                  SH_RULE_EXTRA, SH_ID_EXTRA, SH_MAIN_EXTRA add lines,
#                                  SH_PIN_SOURCE replaces the fixture PIN file ("none":
#                                  no pin_source line)
#   sh_token_conf OUT LABEL MATCH  the same with the token key and certificate LABEL
#   sh_shim CMD...                 run CMD with the shim preloaded and $WORK/shim.conf
#   sh_log_new                     print shim log lines written since the last call
#   sh_client NAME CMD...          run a client (output in file SH_OUT, status SH_RC)
#
# The shim logs to $WORK/shim.log so tests read exactly what it decided.
# shellcheck source=../fixtures/lib.sh
source "$P11M_SRCDIR/tests/fixtures/lib.sh"

SH_DIR=$P11M_SRCDIR/tests/shim
SH_PY=/usr/bin/python3
SH_CLIENT_PY=$SH_DIR/client.py
SH_LEGACY=${P11M_LEGACY_CLIENT:-$P11M_BUILDDIR/tests/shim/legacy-client}

# sh_need_provider: tests with token identities fail, never skip, without the provider.
sh_need_provider() {
    if [ -f "$P11M_PROVIDER" ]; then
        ok "provider is built ($P11M_PROVIDER)"
        return 0
    fi
    fail "provider is built" "missing: $P11M_PROVIDER"
    finish
}

sh_conf() { # OUT KEY CERT MATCH
    {
        echo "[p11mtls]"
        echo "identities = ids"
        echo "rules = rules"
        echo "log = file:$WORK/shim.log"
        echo "log_level = ${SH_LOG_LEVEL:-info}"
        echo "${SH_MAIN_EXTRA:-}"
        echo "[ids]"
        echo "device = device_id"
        echo "[device_id]"
        echo "key = $2"
        echo "cert = $3"
        [ "${SH_PIN_SOURCE:-}" = none ] || echo "pin_source = ${SH_PIN_SOURCE:-file:$FX_PIN_FILE}"
        echo "${SH_ID_EXTRA:-}"
        echo "[rules]"
        echo "r = rule_r"
        echo "[rule_r]"
        echo "match = $4"
        echo "identity = device"
        echo "${SH_RULE_EXTRA:-}"
    } >"$1"
}

sh_token_conf() { # OUT LABEL MATCH
    sh_conf "$1" "$(fx_key_uri "$2")" "$(fx_cert_uri "$2")" "$3"
}

sh_shim() {
    (
        fx_preload_env "$P11M_PRELOAD"
        export P11MTLS_CONF=${SH_CONF:-$WORK/shim.conf} P11MTLS_PROVIDER=$P11M_PROVIDER
        "$@"
    )
}

sh_log_new() {
    local log=$WORK/shim.log off=0
    [ -f "$log.off" ] && off=$(cat "$log.off")
    if [ ! -f "$log" ]; then
        echo 0 >"$log.off"
        return 0
    fi
    tail -c +$((off + 1)) "$log"
    stat -c %s "$log" >"$log.off"
}

# sh_client NAME CMD...: run CMD, keep its output in the file SH_OUT and its exit
# status in SH_RC. Death by a signal (a crash) is reported as a failure at once.
sh_client() {
    local name=$1
    shift
    SH_OUT=$WORK/out.${name//[^A-Za-z0-9._-]/_}
    SH_RC=0
    "$@" >"$SH_OUT" 2>&1 || SH_RC=$?
    fx_drop_foreign_noise "$SH_OUT"
    if [ "$SH_RC" -gt 128 ]; then
        fail "$name: no crash" "killed by signal $((SH_RC - 128)): $*" "$(tail -n 20 "$SH_OUT")"
    fi
    return 0
}

sh_curl() { # ARGS... URL
    curl -sS --max-time "${SH_TIMEOUT:-2}" --cacert "$FX_CA_ROOT" "$@" </dev/null
}

sh_py() { # MODE TARGET ARGS...
    "$SH_PY" "$SH_CLIENT_PY" "$1" "$2" --cafile "$FX_CA_ROOT" --timeout "${SH_TIMEOUT:-2}" \
        "${@:3}" </dev/null
}

# s_client sends one HTTP request (nginx answers and closes; s_server only logs it, so
# s_client is stopped after SH_TIMEOUT seconds: status 124).
sh_s_client() { # HOST:PORT ARGS...
    printf 'GET / HTTP/1.0\r\n\r\n' |
        timeout "${SH_TIMEOUT:-2}" openssl s_client -connect "$1" -CAfile "$FX_CA_ROOT" \
            -verify_return_error -quiet "${@:2}"
}

sh_legacy() { # HOST PORT ARGS...
    "$SH_LEGACY" -c "$FX_CA_ROOT" -t "${SH_TIMEOUT:-2}" "${@:3}" "$1" "$2" </dev/null
}
