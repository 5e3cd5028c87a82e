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
