/*
 * key.c - the provider's key object: a token object plus its public half, built once
 * (pubkey.c) as an EVP_PKEY of another provider, never of this one.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/core_object.h>
#include <openssl/objects.h>
#include <openssl/param_build.h>
#include <openssl/x509.h>

#include "provider.h"
#include "pubkey.h"

/* Public halves and software helpers must never come back to this provider. */

static const char *const type_names[P11M_KEY_TYPES] = {"RSA", "RSA-PSS", "EC", "ED25519",
                                                       "ED448"};
static const char *const sig_names[P11M_KEY_TYPES] = {
    "P11MTLS-RSA", "P11MTLS-RSA", "P11MTLS-EC", "P11MTLS-EDDSA", "P11MTLS-EDDSA"};

const char *p11m_key_type_name(enum p11m_key_type type)
{
    return type_names[type];
}

const char *p11m_key_sig_name(enum p11m_key_type type)
{
    return sig_names[type];
}

P11M_KEY *p11m_key_new(P11M_PROV *prov, enum p11m_key_type type)
{
    P11M_KEY *key = calloc(1, sizeof(*key));

    if (key == NULL)
        return NULL;
    key->refs = 1;
    key->prov = prov;
    key->type = type;
    return key;
}

P11M_KEY *p11m_key_ref(P11M_KEY *key)
{
    __atomic_add_fetch(&key->refs, 1, __ATOMIC_RELAXED);
    return key;
}

void p11m_key_free(P11M_KEY *key)
{
    if (key == NULL || __atomic_sub_fetch(&key->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    p11m_obj_free(key->obj);
    EVP_PKEY_free(key->pub);
    free(key);
}

int p11m_key_is_private(const P11M_KEY *key)
{
    return key->obj != NULL && p11m_obj_class(key->obj) == CKO_PRIVATE_KEY;
}

size_t p11m_key_max_sig(const P11M_KEY *key)
{
    int n = key->pub != NULL ? EVP_PKEY_get_size(key->pub) : 0;

    return n > 0 ? (size_t) n : 0;
}

static int key_type_of_pkey(const EVP_PKEY *pkey, enum p11m_key_type *type)
{
    for (int t = 0; t < P11M_KEY_TYPES; t++) {
        if (EVP_PKEY_is_a(pkey, type_names[t])) {
            *type = (enum p11m_key_type) t;
            return 1;
        }
    }
    return 0;
}

int p11m_key_pass(P11M_KEY *key, OSSL_CALLBACK *cb, void *cbarg)
{
    int type = OSSL_OBJECT_PKEY;
    /* The construct calls, not the macros: a UTF-8 parameter needs its length. */
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_int(OSSL_OBJECT_PARAM_TYPE, &type),
        OSSL_PARAM_construct_utf8_string(OSSL_OBJECT_PARAM_DATA_TYPE,
                                         (char *) p11m_key_type_name(key->type), 0),
        OSSL_PARAM_construct_octet_string(OSSL_OBJECT_PARAM_REFERENCE, &key, sizeof(key)),
        OSSL_PARAM_construct_end(),
    };

    return cb(params, cbarg);
}

P11M_KEY *p11m_key_from_obj(P11M_PROV *prov, P11M_OBJ *obj)
{
    enum p11m_key_type type = P11M_KEY_RSA;
    CK_KEY_TYPE kt = p11m_obj_key_type(obj);
    EVP_PKEY *pub = p11m_obj_public_key(obj, prov->libctx, P11M_NOT_US);
    P11M_KEY *key;

    if (pub != NULL && !key_type_of_pkey(pub, &type)) {
        EVP_PKEY_free(pub);
        pub = NULL;
    }
    if (pub == NULL) {
        p11m_prov_raise(prov, P11M_R_UNSUPPORTED,
                        "object '%s': key type 0x%lx or its public attributes are not "
                        "usable",
                        p11m_obj_label(obj), (unsigned long) kt);
        return NULL;
    }
    if ((key = p11m_key_new(prov, type)) == NULL) {
        EVP_PKEY_free(pub);
        return NULL;
    }
    key->obj = p11m_obj_ref(obj);
    key->pub = pub;
    return key;
}
