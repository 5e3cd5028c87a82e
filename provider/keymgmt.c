/*
 * keymgmt.c - key management for token keys. Private keys stay references to token
 * objects; everything public is answered by the key's public half, so libssl's checks
 * (X509_check_private_key, EVP_PKEY_eq, bits, security bits, maximum size, default
 * digest) behave as for an in-memory key. Public parts can be exported; private parts
 * never leave the token.
 */
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/params.h>

#include "provider.h"

#define NOT_US "provider!=" P11M_PROV_NAME

static int km_has(const void *keydata, int selection)
{
    const P11M_KEY *key = keydata;

    if (key == NULL)
        return 0;
    if ((selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) && !p11m_key_is_private(key))
        return 0;
    if ((selection & OSSL_KEYMGMT_SELECT_ALL_PARAMETERS) ||
        (selection & OSSL_KEYMGMT_SELECT_PUBLIC_KEY))
        return key->pub != NULL;
    return 1;
}

static int km_match(const void *a, const void *b, int selection)
{
    const P11M_KEY *ka = a, *kb = b;

    if (ka->type != kb->type || ka->pub == NULL || kb->pub == NULL)
        return 0;
    if ((selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) && ka->obj != kb->obj &&
        !(selection & OSSL_KEYMGMT_SELECT_PUBLIC_KEY))
        return 0; /* two token objects are the same private key only by their public half
                   */
    return EVP_PKEY_eq(ka->pub, kb->pub) == 1;
}

static void km_free(void *keydata)
{
    p11m_key_free(keydata);
}

/* The store hands keys over by reference: a pointer to a P11M_KEY it keeps alive. */
static void *km_load(const void *reference, size_t reference_sz)
{
    P11M_KEY *key;

    if (reference == NULL || reference_sz != sizeof(key))
        return NULL;
    memcpy(&key, reference, sizeof(key));
    return p11m_key_ref(key);
}

static int km_get_params(void *keydata, OSSL_PARAM params[])
{
    P11M_KEY *key = keydata;

    return key->pub != NULL && EVP_PKEY_get_params(key->pub, params);
}

static const OSSL_PARAM *km_gettable_params(void *provctx)
{
    static const OSSL_PARAM gettable[] = {
        OSSL_PARAM_int(OSSL_PKEY_PARAM_BITS, NULL),
        OSSL_PARAM_int(OSSL_PKEY_PARAM_SECURITY_BITS, NULL),
        OSSL_PARAM_int(OSSL_PKEY_PARAM_MAX_SIZE, NULL),
        OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_DEFAULT_DIGEST, NULL, 0),
        OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_MANDATORY_DIGEST, NULL, 0),
        OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, NULL, 0),
        OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_PUB_KEY, NULL, 0),
        OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, NULL, 0),
        OSSL_PARAM_BN(OSSL_PKEY_PARAM_RSA_N, NULL, 0),
        OSSL_PARAM_BN(OSSL_PKEY_PARAM_RSA_E, NULL, 0),
        OSSL_PARAM_END,
    };

    (void) provctx;
    return gettable;
}

static int km_export(void *keydata, int selection, OSSL_CALLBACK *cb, void *cbarg)
{
    P11M_KEY *key = keydata;

    if (key->pub == NULL)
        return 0;
    if (selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) {
        /* Quietly: OpenSSL probes exports while looking for an implementation. */
        return 0;
    }
    return EVP_PKEY_export(key->pub, selection, cb, cbarg);
}

static int km_import_into(P11M_KEY *key, int selection, const OSSL_PARAM params[])
{
    EVP_PKEY_CTX *ctx;
    EVP_PKEY *pub = NULL;
    int ok;

    if ((selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) || key->pub != NULL ||
        key->obj != NULL)
        return 0;
    ctx = EVP_PKEY_CTX_new_from_name(key->prov->libctx, p11m_key_type_name(key->type),
                                     NOT_US);
    ok = ctx != NULL && EVP_PKEY_fromdata_init(ctx) > 0 &&
         EVP_PKEY_fromdata(ctx, &pub,
                           (selection & OSSL_KEYMGMT_SELECT_PUBLIC_KEY)
                               ? EVP_PKEY_PUBLIC_KEY
                               : EVP_PKEY_KEY_PARAMETERS,
                           (OSSL_PARAM *) params) > 0;
    EVP_PKEY_CTX_free(ctx);
    key->pub = ok ? pub : NULL;
    return ok;
}

static int km_import(void *keydata, int selection, const OSSL_PARAM params[])
{
    return km_import_into(keydata, selection, params);
}

static const OSSL_PARAM *km_rsa_types(int selection)
{
    static const OSSL_PARAM types[] = {
        OSSL_PARAM_BN(OSSL_PKEY_PARAM_RSA_N, NULL, 0),
        OSSL_PARAM_BN(OSSL_PKEY_PARAM_RSA_E, NULL, 0),
        OSSL_PARAM_END,
    };

    return (selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) ? NULL : types;
}

static const OSSL_PARAM *km_ec_types(int selection)
{
    static const OSSL_PARAM types[] = {
        OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, NULL, 0),
        OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_PUB_KEY, NULL, 0),
        OSSL_PARAM_END,
    };

    return (selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) ? NULL : types;
}

static const OSSL_PARAM *km_ecx_types(int selection)
{
    static const OSSL_PARAM types[] = {
        OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_PUB_KEY, NULL, 0),
        OSSL_PARAM_END,
    };

    return (selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) ? NULL : types;
}

static void *km_dup(const void *keydata, int selection)
{
    const P11M_KEY *src = keydata;
    P11M_KEY *key = p11m_key_new(src->prov, src->type);

    (void) selection;
    if (key == NULL)
        return NULL;
    if (src->obj != NULL)
        key->obj = p11m_obj_ref(src->obj);
    if (src->pub != NULL && EVP_PKEY_up_ref(src->pub))
        key->pub = src->pub;
    return key;
}

/* One table per key type: they differ in the type a new key gets and in the name of
 * the signature operation that OpenSSL should fetch for them. */
#define KEYMGMT_TABLE(name, TYPE, types_fn)                                              \
    static void *km_new_##name(void *provctx)                                            \
    {                                                                                    \
        return p11m_key_new(provctx, TYPE);                                              \
    }                                                                                    \
    static const char *km_opname_##name(int operation_id)                                \
    {                                                                                    \
        return operation_id == OSSL_OP_SIGNATURE ? p11m_key_sig_name(TYPE) : NULL;       \
    }                                                                                    \
    const OSSL_DISPATCH p11m_##name##_keymgmt_functions[] = {                            \
        {OSSL_FUNC_KEYMGMT_NEW, (void (*)(void)) km_new_##name},                         \
        {OSSL_FUNC_KEYMGMT_FREE, (void (*)(void)) km_free},                              \
        {OSSL_FUNC_KEYMGMT_LOAD, (void (*)(void)) km_load},                              \
        {OSSL_FUNC_KEYMGMT_DUP, (void (*)(void)) km_dup},                                \
        {OSSL_FUNC_KEYMGMT_HAS, (void (*)(void)) km_has},                                \
        {OSSL_FUNC_KEYMGMT_MATCH, (void (*)(void)) km_match},                            \
        {OSSL_FUNC_KEYMGMT_GET_PARAMS, (void (*)(void)) km_get_params},                  \
        {OSSL_FUNC_KEYMGMT_GETTABLE_PARAMS, (void (*)(void)) km_gettable_params},        \
        {OSSL_FUNC_KEYMGMT_IMPORT, (void (*)(void)) km_import},                          \
        {OSSL_FUNC_KEYMGMT_IMPORT_TYPES, (void (*)(void)) types_fn},                     \
        {OSSL_FUNC_KEYMGMT_EXPORT, (void (*)(void)) km_export},                          \
        {OSSL_FUNC_KEYMGMT_EXPORT_TYPES, (void (*)(void)) types_fn},                     \
        {OSSL_FUNC_KEYMGMT_QUERY_OPERATION_NAME, (void (*)(void)) km_opname_##name},     \
        {0, NULL},                                                                       \
    }

KEYMGMT_TABLE(rsa, P11M_KEY_RSA, km_rsa_types);
KEYMGMT_TABLE(rsapss, P11M_KEY_RSA_PSS, km_rsa_types);
KEYMGMT_TABLE(ec, P11M_KEY_EC, km_ec_types);
KEYMGMT_TABLE(ed25519, P11M_KEY_ED25519, km_ecx_types);
KEYMGMT_TABLE(ed448, P11M_KEY_ED448, km_ecx_types);
