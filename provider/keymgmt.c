/*
 * keymgmt.c - key management for token keys (and, handed to the software provider,
 * for the program's own keys when p11mtls is loaded first). Private keys stay references
 * to token objects; everything public is answered by the key's public half, so libssl's
 * checks (X509_check_private_key, EVP_PKEY_eq, bits, security bits, maximum size, default
 * digest) behave as for an in-memory key. Public parts can be exported; private parts
 * never leave the token.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/params.h>

#include "provider.h"

/* Shared by every key type's table; the per-type functions are declared with them. */
static OSSL_FUNC_keymgmt_free_fn km_free;
static OSSL_FUNC_keymgmt_load_fn km_load;
static OSSL_FUNC_keymgmt_dup_fn km_dup;
static OSSL_FUNC_keymgmt_has_fn km_has;
static OSSL_FUNC_keymgmt_match_fn km_match;
static OSSL_FUNC_keymgmt_validate_fn km_validate;
static OSSL_FUNC_keymgmt_get_params_fn km_get_params;
static OSSL_FUNC_keymgmt_gettable_params_fn km_gettable_params;
static OSSL_FUNC_keymgmt_set_params_fn km_set_params;
static OSSL_FUNC_keymgmt_settable_params_fn km_settable_params;
static OSSL_FUNC_keymgmt_import_fn km_import;
static OSSL_FUNC_keymgmt_import_types_fn km_rsa_types, km_ec_types, km_ecx_types;
static OSSL_FUNC_keymgmt_export_fn km_export;
static OSSL_FUNC_keymgmt_gen_set_template_fn km_gen_set_template;
static OSSL_FUNC_keymgmt_gen_set_params_fn km_gen_set_params;
static OSSL_FUNC_keymgmt_gen_fn km_gen;
static OSSL_FUNC_keymgmt_gen_cleanup_fn km_gen_cleanup;

static int km_has(const void *keydata, int selection)
{
    const P11M_KEY *key = keydata;

    if (key == NULL)
        return 0;
    if ((selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) && !p11m_key_is_private(key) &&
        !key->soft_private)
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
    if ((selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) && key->obj != NULL) {
        /* Quietly: OpenSSL probes exports while looking for an implementation. */
        return 0;
    }
    return EVP_PKEY_export(key->pub, selection, cb, cbarg);
}

static int km_fromdata_selection(int selection)
{
    if (selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY)
        return EVP_PKEY_KEYPAIR;
    if (selection & OSSL_KEYMGMT_SELECT_PUBLIC_KEY)
        return EVP_PKEY_PUBLIC_KEY;
    return EVP_PKEY_KEY_PARAMETERS;
}

/* Only software keys are imported: token keys come from the store. */
static int km_import_into(P11M_KEY *key, int selection, const OSSL_PARAM params[])
{
    EVP_PKEY_CTX *ctx;
    EVP_PKEY *pub = NULL;
    int ok;

    if (key->obj != NULL)
        return 0;
    ctx = EVP_PKEY_CTX_new_from_name(key->prov->libctx, p11m_key_type_name(key->type),
                                     P11M_NOT_US);
    ok = ctx != NULL && EVP_PKEY_fromdata_init(ctx) > 0 &&
         EVP_PKEY_fromdata(ctx, &pub, km_fromdata_selection(selection),
                           (OSSL_PARAM *) params) > 0;
    EVP_PKEY_CTX_free(ctx);
    if (!ok)
        return 0;
    EVP_PKEY_free(key->pub);
    key->pub = pub;
    key->soft_private = (selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) != 0;
    return 1;
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

    (void) selection;
    return types;
}

static const OSSL_PARAM *km_ec_types(int selection)
{
    static const OSSL_PARAM types[] = {
        OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, NULL, 0),
        OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_PUB_KEY, NULL, 0),
        OSSL_PARAM_END,
    };

    (void) selection;
    return types;
}

static const OSSL_PARAM *km_ecx_types(int selection)
{
    static const OSSL_PARAM types[] = {
        OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_PUB_KEY, NULL, 0),
        OSSL_PARAM_END,
    };

    (void) selection;
    return types;
}

static void *km_dup(const void *keydata, int selection)
{
    const P11M_KEY *src = keydata;
    P11M_KEY *key = p11m_key_new(src->prov, src->type);

    (void) selection;
    if (key == NULL)
        return NULL;
    key->soft_private = src->soft_private;
    if (src->obj != NULL) {
        key->obj = p11m_obj_ref(src->obj);
        if (src->pub != NULL && EVP_PKEY_up_ref(src->pub))
            key->pub = src->pub;
    } else if (src->pub != NULL) {
        key->pub = EVP_PKEY_dup(src->pub); /* software keys can change: copy */
    }
    if (src->pub != NULL && key->pub == NULL) {
        p11m_key_free(key);
        return NULL;
    }
    return key;
}

static int km_set_params(void *keydata, const OSSL_PARAM params[])
{
    P11M_KEY *key = keydata;

    return key->obj == NULL && key->pub != NULL &&
           EVP_PKEY_set_params(key->pub, (OSSL_PARAM *) params);
}

static const OSSL_PARAM *km_settable_params(void *provctx)
{
    static const OSSL_PARAM settable[] = {
        OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, NULL, 0),
        OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, NULL, 0),
        OSSL_PARAM_END,
    };

    (void) provctx;
    return settable;
}

static int km_validate(const void *keydata, int selection, int checktype)
{
    const P11M_KEY *key = keydata;
    EVP_PKEY_CTX *ctx;
    int ok;

    (void) checktype;
    if (key->pub == NULL || (ctx = EVP_PKEY_CTX_new_from_pkey(key->prov->libctx, key->pub,
                                                              P11M_NOT_US)) == NULL)
        return 0;
    if ((selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) && key->obj == NULL)
        ok = EVP_PKEY_check(ctx) > 0;
    else if (selection & OSSL_KEYMGMT_SELECT_PUBLIC_KEY)
        ok = EVP_PKEY_public_check(ctx) > 0;
    else
        ok = EVP_PKEY_param_check(ctx) > 0 ||
             !(selection & OSSL_KEYMGMT_SELECT_ALL_PARAMETERS);
    EVP_PKEY_CTX_free(ctx);
    return ok;
}

/* ---- generation: software keys only, done by the software provider ---- */

typedef struct km_gen {
    P11M_PROV *prov;
    enum p11m_key_type type;
    int selection;
    EVP_PKEY_CTX *ctx;
} KM_GEN;

static int km_gen_start(KM_GEN *gen, EVP_PKEY *templ)
{
    EVP_PKEY_CTX_free(gen->ctx);
    gen->ctx = templ != NULL
                   ? EVP_PKEY_CTX_new_from_pkey(gen->prov->libctx, templ, P11M_NOT_US)
                   : EVP_PKEY_CTX_new_from_name(
                         gen->prov->libctx, p11m_key_type_name(gen->type), P11M_NOT_US);
    if (gen->ctx == NULL)
        return 0;
    if (gen->selection & OSSL_KEYMGMT_SELECT_KEYPAIR)
        return EVP_PKEY_keygen_init(gen->ctx) > 0;
    return EVP_PKEY_paramgen_init(gen->ctx) > 0;
}

static void km_gen_cleanup(void *genctx)
{
    KM_GEN *gen = genctx;

    if (gen != NULL)
        EVP_PKEY_CTX_free(gen->ctx);
    free(gen);
}

static void *km_gen_init(P11M_PROV *prov, enum p11m_key_type type, int selection,
                         const OSSL_PARAM params[])
{
    KM_GEN *gen = calloc(1, sizeof(*gen));

    if (gen == NULL)
        return NULL;
    gen->prov = prov;
    gen->type = type;
    gen->selection = selection;
    if (!km_gen_start(gen, NULL) ||
        (params != NULL && EVP_PKEY_CTX_set_params(gen->ctx, params) <= 0)) {
        km_gen_cleanup(gen);
        return NULL;
    }
    return gen;
}

static int km_gen_set_template(void *genctx, void *templ)
{
    P11M_KEY *key = templ;

    return key != NULL && key->pub != NULL && km_gen_start(genctx, key->pub);
}

static int km_gen_set_params(void *genctx, const OSSL_PARAM params[])
{
    KM_GEN *gen = genctx;

    return EVP_PKEY_CTX_set_params(gen->ctx, params) > 0;
}

static void *km_gen(void *genctx, OSSL_CALLBACK *cb, void *cbarg)
{
    KM_GEN *gen = genctx;
    EVP_PKEY *pkey = NULL;
    P11M_KEY *key;

    (void) cb;
    (void) cbarg;
    if (EVP_PKEY_generate(gen->ctx, &pkey) <= 0)
        return NULL;
    if ((key = p11m_key_new(gen->prov, gen->type)) == NULL) {
        EVP_PKEY_free(pkey);
        return NULL;
    }
    key->pub = pkey;
    key->soft_private = (gen->selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) != 0;
    return key;
}

/* What the software provider's generator of this type takes. */
static const OSSL_PARAM *km_gen_settable(P11M_PROV *prov, enum p11m_key_type type)
{
    EVP_KEYMGMT *km =
        EVP_KEYMGMT_fetch(prov->libctx, p11m_key_type_name(type), P11M_NOT_US);
    const OSSL_PARAM *p = km != NULL ? EVP_KEYMGMT_gen_settable_params(km) : NULL;

    EVP_KEYMGMT_free(km); /* the parameter list is static in the provider */
    return p;
}

/* One table per key type: they differ in the type a new key gets and in the names of
 * the operations OpenSSL should fetch for their keys. */
#define KEYMGMT_TABLE(name, TYPE, types_fn, exchange)                                    \
    static OSSL_FUNC_keymgmt_new_fn km_new_##name;                                       \
    static OSSL_FUNC_keymgmt_gen_init_fn km_gen_init_##name;                             \
    static OSSL_FUNC_keymgmt_gen_settable_params_fn km_gen_settable_##name;              \
    static OSSL_FUNC_keymgmt_query_operation_name_fn km_opname_##name;                   \
    static void *km_new_##name(void *provctx)                                            \
    {                                                                                    \
        return p11m_key_new(provctx, TYPE);                                              \
    }                                                                                    \
    static void *km_gen_init_##name(void *provctx, int selection, const OSSL_PARAM p[])  \
    {                                                                                    \
        return km_gen_init(provctx, TYPE, selection, p);                                 \
    }                                                                                    \
    static const OSSL_PARAM *km_gen_settable_##name(void *genctx, void *provctx)         \
    {                                                                                    \
        (void) genctx;                                                                   \
        return km_gen_settable(provctx, TYPE);                                           \
    }                                                                                    \
    static const char *km_opname_##name(int operation_id)                                \
    {                                                                                    \
        if (operation_id == OSSL_OP_SIGNATURE)                                           \
            return p11m_key_sig_name(TYPE);                                              \
        return operation_id == OSSL_OP_KEYEXCH ? exchange : NULL;                        \
    }                                                                                    \
    const OSSL_DISPATCH p11m_##name##_keymgmt_functions[] = {                            \
        {OSSL_FUNC_KEYMGMT_NEW, (void (*)(void)) km_new_##name},                         \
        {OSSL_FUNC_KEYMGMT_FREE, (void (*)(void)) km_free},                              \
        {OSSL_FUNC_KEYMGMT_LOAD, (void (*)(void)) km_load},                              \
        {OSSL_FUNC_KEYMGMT_DUP, (void (*)(void)) km_dup},                                \
        {OSSL_FUNC_KEYMGMT_HAS, (void (*)(void)) km_has},                                \
        {OSSL_FUNC_KEYMGMT_MATCH, (void (*)(void)) km_match},                            \
        {OSSL_FUNC_KEYMGMT_VALIDATE, (void (*)(void)) km_validate},                      \
        {OSSL_FUNC_KEYMGMT_GET_PARAMS, (void (*)(void)) km_get_params},                  \
        {OSSL_FUNC_KEYMGMT_GETTABLE_PARAMS, (void (*)(void)) km_gettable_params},        \
        {OSSL_FUNC_KEYMGMT_SET_PARAMS, (void (*)(void)) km_set_params},                  \
        {OSSL_FUNC_KEYMGMT_SETTABLE_PARAMS, (void (*)(void)) km_settable_params},        \
        {OSSL_FUNC_KEYMGMT_IMPORT, (void (*)(void)) km_import},                          \
        {OSSL_FUNC_KEYMGMT_IMPORT_TYPES, (void (*)(void)) types_fn},                     \
        {OSSL_FUNC_KEYMGMT_EXPORT, (void (*)(void)) km_export},                          \
        {OSSL_FUNC_KEYMGMT_EXPORT_TYPES, (void (*)(void)) types_fn},                     \
        {OSSL_FUNC_KEYMGMT_GEN_INIT, (void (*)(void)) km_gen_init_##name},               \
        {OSSL_FUNC_KEYMGMT_GEN_SET_TEMPLATE, (void (*)(void)) km_gen_set_template},      \
        {OSSL_FUNC_KEYMGMT_GEN_SET_PARAMS, (void (*)(void)) km_gen_set_params},          \
        {OSSL_FUNC_KEYMGMT_GEN_SETTABLE_PARAMS,                                          \
         (void (*)(void)) km_gen_settable_##name},                                       \
        {OSSL_FUNC_KEYMGMT_GEN, (void (*)(void)) km_gen},                                \
        {OSSL_FUNC_KEYMGMT_GEN_CLEANUP, (void (*)(void)) km_gen_cleanup},                \
        {OSSL_FUNC_KEYMGMT_QUERY_OPERATION_NAME, (void (*)(void)) km_opname_##name},     \
        {0, NULL},                                                                       \
    }

KEYMGMT_TABLE(rsa, P11M_KEY_RSA, km_rsa_types, NULL);
KEYMGMT_TABLE(rsapss, P11M_KEY_RSA_PSS, km_rsa_types, NULL);
KEYMGMT_TABLE(ec, P11M_KEY_EC, km_ec_types, "ECDH");
KEYMGMT_TABLE(ed25519, P11M_KEY_ED25519, km_ecx_types, NULL);
KEYMGMT_TABLE(ed448, P11M_KEY_ED448, km_ecx_types, NULL);
