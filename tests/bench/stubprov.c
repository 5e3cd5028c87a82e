/*
 * stubprov.c - a provider that only declares an Ed25519 key manager, and cannot make a
 * key. The benchmarks load it in place of p11mtls to show what any provider that offers
 * Ed25519 keys costs a process: OpenSSL 3.0 sets up every key decode (SoftHSM2 decodes
 * its Ed25519 key at each C_Sign) over the names of every key manager of the type.
 */
#include <openssl/core.h>
#include <openssl/core_dispatch.h>

static void *stub_new(void *provctx)
{
    (void) provctx;
    return NULL;
}

static void stub_free(void *key)
{
    (void) key;
}

static int stub_has(const void *key, int selection)
{
    (void) key;
    (void) selection;
    return 0;
}

static const OSSL_DISPATCH stub_keymgmt_functions[] = {
    {OSSL_FUNC_KEYMGMT_NEW, (void (*)(void)) stub_new},
    {OSSL_FUNC_KEYMGMT_FREE, (void (*)(void)) stub_free},
    {OSSL_FUNC_KEYMGMT_HAS, (void (*)(void)) stub_has},
    {0, NULL},
};

static const OSSL_ALGORITHM stub_keymgmt[] = {
    {"ED25519:1.3.101.112", "provider=bench-stub", stub_keymgmt_functions, NULL},
    {NULL, NULL, NULL, NULL},
};

static const OSSL_ALGORITHM *stub_query(void *provctx, int operation_id, int *no_cache)
{
    (void) provctx;
    *no_cache = 0;
    return operation_id == OSSL_OP_KEYMGMT ? stub_keymgmt : NULL;
}

static const OSSL_DISPATCH stub_dispatch[] = {
    {OSSL_FUNC_PROVIDER_QUERY_OPERATION, (void (*)(void)) stub_query},
    {0, NULL},
};

__attribute__((visibility("default"))) int
OSSL_provider_init(const OSSL_CORE_HANDLE *handle, const OSSL_DISPATCH *in,
                   const OSSL_DISPATCH **out, void **provctx)
{
    (void) handle;
    (void) in;
    *out = stub_dispatch;
    *provctx = (void *) stub_dispatch; /* any non-NULL context */
    return 1;
}
