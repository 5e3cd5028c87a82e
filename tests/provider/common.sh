# shellcheck shell=bash
# Shared by the provider tests: the fixtures, a provider config, and helpers.
source "$P11M_SRCDIR/tests/fixtures/lib.sh"
TPROV="$P11M_BUILDDIR/tests/provider/tprov"
PROV_DIR=$(dirname "$P11M_PROVIDER")
KEYS=(rsa2048 rsa3072 p256 p384 ed25519)

# prov_conf [PARAM=VALUE...]: write $WORK/openssl.cnf activating default and p11mtls
# (with the fixture PIN file unless a pin-source is given) and export OPENSSL_CONF.
# With PROV_FIRST=1, p11mtls is activated before default.
prov_conf() {
    local extra=("$@") pin="pin-source = file:$FX_PIN_FILE" line
    for line in "${extra[@]}"; do [[ $line == pin-source* ]] && pin=""; done
    {
        echo "openssl_conf = openssl_init"
        echo "[openssl_init]"
        echo "providers = provider_sect"
        echo "[provider_sect]"
        if [ "${PROV_FIRST:-0}" = 1 ]; then
            echo "p11mtls = p11mtls_sect"
            echo "default = default_sect"
        else
            echo "default = default_sect"
            echo "p11mtls = p11mtls_sect"
        fi
        echo "[default_sect]"
        echo "activate = 1"
        echo "[p11mtls_sect]"
        echo "module = $P11M_PROVIDER"
        echo "activate = 1"
        [ -z "$pin" ] || echo "$pin"
        for line in "${extra[@]}"; do echo "${line/=/ = }"; done
    } >"$WORK/openssl.cnf"
    export OPENSSL_CONF="$WORK/openssl.cnf"
}

key_uri() { echo "pkcs11:token=$FX_TOKEN_LABEL;object=$1;type=private"; }
cert_uri() { echo "pkcs11:token=$FX_TOKEN_LABEL;object=$1;type=cert"; }
dev_cert() { local v="FX_DEV_CERT_$1"; echo "${!v}"; }
pub_pem() { local v="FX_PUB_$1"; echo "${!v}"; }

# osl ARGS...: openssl with the sanitizer runtime preloaded in ASan builds.
osl() { (fx_preload_env && exec openssl "$@"); }
tprov() { (fx_preload_env && exec "$TPROV" "$@"); }
