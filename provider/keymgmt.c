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
        KM_FN(NEW, km_new_##name),                                                       \
        KM_FN(FREE, km_free),                                                            \
        KM_FN(LOAD, km_load),                                                            \
        KM_FN(DUP, km_dup),                                                              \
        KM_FN(HAS, km_has),                                                              \
        KM_FN(MATCH, km_match),                                                          \
        KM_FN(VALIDATE, km_validate),                                                    \
        KM_FN(GET_PARAMS, km_get_params),                                                \
        KM_FN(GETTABLE_PARAMS, km_gettable_params),                                      \
        KM_FN(SET_PARAMS, km_set_params),                                                \
        KM_FN(SETTABLE_PARAMS, km_settable_params),                                      \
        KM_FN(IMPORT, km_import),                                                        \
        KM_FN(IMPORT_TYPES, types_fn),                                                   \
        KM_FN(EXPORT, km_export),                                                        \
        KM_FN(EXPORT_TYPES, types_fn),                                                   \
        KM_FN(GEN_INIT, km_gen_init_##name),                                             \
        KM_FN(GEN_SET_TEMPLATE, km_gen_set_template),                                    \
        KM_FN(GEN_SET_PARAMS, km_gen_set_params),                                        \
        KM_FN(GEN_SETTABLE_PARAMS, km_gen_settable_##name),                              \
        KM_FN(GEN, km_gen),                                                              \
        KM_FN(GEN_CLEANUP, km_gen_cleanup),                                              \
        KM_FN(QUERY_OPERATION_NAME, km_opname_##name),                                   \
        {0, NULL},                                                                       \
    }

#define KM_FN(id, fn)                                                                    \
    {                                                                                    \
        OSSL_FUNC_KEYMGMT_##id, (void (*)(void)) fn                                      \
    }

KEYMGMT_TABLE(rsa, P11M_KEY_RSA, km_rsa_types, NULL);
KEYMGMT_TABLE(rsapss, P11M_KEY_RSA_PSS, km_rsa_types, NULL);
KEYMGMT_TABLE(ec, P11M_KEY_EC, km_ec_types, "ECDH");
KEYMGMT_TABLE(ed25519, P11M_KEY_ED25519, km_ecx_types, NULL);
KEYMGMT_TABLE(ed448, P11M_KEY_ED448, km_ecx_types, NULL);
