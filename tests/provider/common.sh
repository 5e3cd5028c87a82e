# shellcheck shell=bash
# Shared by the provider tests: the fixtures, a provider config, and helpers.
source "$P11M_SRCDIR/tests/fixtures/lib.sh"
TPROV="$P11M_BUILDDIR/tests/provider/tprov"
PROV_DIR=$(dirname "$P11M_PROVIDER")
# The test token's keys (P11M_TEST_TOKEN=tpm: rsa2048 p256 only).
KEYS=("${FX_KEYS[@]}")

# prov_conf [PARAM=VALUE...]: fx_openssl_cnf into $WORK/openssl.cnf, exported as
# OPENSSL_CONF (PROV_FIRST=1: p11mtls activated before default).
prov_conf() {
    fx_openssl_cnf "$WORK/openssl.cnf" "$@"
    export OPENSSL_CONF="$WORK/openssl.cnf"
}

key_uri() { echo "pkcs11:token=$FX_TOKEN_LABEL;object=$1;type=private"; }
cert_uri() { echo "pkcs11:token=$FX_TOKEN_LABEL;object=$1;type=cert"; }
dev_cert() { local v="FX_DEV_CERT_$1"; echo "${!v}"; }
pub_pem() { local v="FX_PUB_$1"; echo "${!v}"; }

# osl ARGS...: openssl with the sanitizer runtime preloaded in ASan builds.
osl() { (fx_preload_env && exec openssl "$@"); }
tprov() { (fx_preload_env && exec "$TPROV" "$@"); }

# run_loop OUT N: sign with p256 every 200 ms in the background (N attempts), output in
# OUT (the attempts' lines only: modules registered with p11-kit may print their own
# noise on stderr); its pid in LOOP.
run_loop() {
    (tprov loop "$(key_uri p256)" "$2" 200 2>&1; echo "exit $?") |
        grep --line-buffered -E '^([0-9]+ |exit )' >"$1" &
    LOOP=$!
}
loop_rc() { sed -n 's/^exit //p' "$1"; }
# wait_line OUT REGEX [FROM]: waits (up to 30 s) for a line of OUT, from line FROM on
# (default 1), that matches REGEX.
wait_line() {
    for _ in $(seq 150); do
        tail -n +"${3:-1}" "$1" | grep -qE "$2" && return 0
        sleep 0.2
    done
    return 1
}
# first_attempt OUT: waits (up to 30 s) for the loop's first attempt, however slowly the
# program starts (ASan builds, a busy machine).
first_attempt() { wait_line "$1" '^0 '; }
