/*
 * key.c - the provider's key object: a token object plus its public half, built once
 * from the token's attributes (or from the certificate stored with the key) as an
 * EVP_PKEY of another provider, never of this one.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/objects.h>
#include <openssl/param_build.h>
#include <openssl/x509.h>

#include "provider.h"

/* Public halves and software helpers must never come back to this provider. */
#define NOT_US "provider!=" P11M_PROV_NAME

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

/* ---- public halves from attributes ---- */

static EVP_PKEY *key_fromdata(P11M_PROV *prov, const char *type, OSSL_PARAM *params)
{
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(prov->libctx, type, NOT_US);
    EVP_PKEY *pkey = NULL;

    if (ctx == NULL || EVP_PKEY_fromdata_init(ctx) <= 0 ||
        EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) <= 0)
        pkey = NULL;
    EVP_PKEY_CTX_free(ctx);
    return pkey;
}

static EVP_PKEY *key_rsa_pub(P11M_PROV *prov, P11M_OBJ *obj, const char *type)
{
    size_t nlen, elen;
    const unsigned char *n = p11m_obj_attr(obj, CKA_MODULUS, &nlen);
    const unsigned char *e = p11m_obj_attr(obj, CKA_PUBLIC_EXPONENT, &elen);
    BIGNUM *bn = NULL, *be = NULL;
    OSSL_PARAM_BLD *bld = NULL;
    OSSL_PARAM *params = NULL;
    EVP_PKEY *pkey = NULL;

    if (n == NULL || e == NULL)
        return NULL;
    bn = BN_bin2bn(n, (int) nlen, NULL);
    be = BN_bin2bn(e, (int) elen, NULL);
    bld = OSSL_PARAM_BLD_new();
    if (bn != NULL && be != NULL && bld != NULL &&
        OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn) &&
        OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, be) &&
        (params = OSSL_PARAM_BLD_to_param(bld)) != NULL)
        pkey = key_fromdata(prov, type, params);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    BN_free(bn);
    BN_free(be);
    return pkey;
}

/*
 * CKA_EC_PARAMS holds a DER OID, or for Edwards curves possibly a PrintableString
 * ("edwards25519"); the OpenSSL short name comes back in buf.
 */
static const char *key_curve_name(const unsigned char *der, size_t len)
{
    const unsigned char *p = der;
    ASN1_OBJECT *oid = d2i_ASN1_OBJECT(NULL, &p, (long) len);
    ASN1_PRINTABLESTRING *str;
    const char *name = NULL;

    if (oid != NULL) {
        int nid = OBJ_obj2nid(oid);

        if (nid != NID_undef)
            name = OBJ_nid2sn(nid);
        ASN1_OBJECT_free(oid);
        return name;
    }
    p = der;
    str = d2i_ASN1_PRINTABLESTRING(NULL, &p, (long) len);
    if (str != NULL) {
        const char *s = (const char *) ASN1_STRING_get0_data(str);

        if (strcmp(s, "edwards25519") == 0)
            name = "ED25519";
        else if (strcmp(s, "edwards448") == 0)
            name = "ED448";
        ASN1_PRINTABLESTRING_free(str);
    }
    return name;
}

/* CKA_EC_POINT is a DER OCTET STRING; some tokens give the raw point instead. */
static ASN1_OCTET_STRING *key_ec_point(P11M_OBJ *obj)
{
    size_t len;
    const unsigned char *der = p11m_obj_attr(obj, CKA_EC_POINT, &len);
    const unsigned char *p = der;
    ASN1_OCTET_STRING *os;

    if (der == NULL)
        return NULL;
    os = d2i_ASN1_OCTET_STRING(NULL, &p, (long) len);
    if (os != NULL && p == der + len)
        return os;
    ASN1_OCTET_STRING_free(os);
    os = ASN1_OCTET_STRING_new();
    if (os != NULL && !ASN1_OCTET_STRING_set(os, der, (int) len)) {
        ASN1_OCTET_STRING_free(os);
        os = NULL;
    }
    return os;
}

static EVP_PKEY *key_ec_pub(P11M_PROV *prov, P11M_OBJ *obj, enum p11m_key_type *type)
{
    size_t plen;
    const unsigned char *params_der = p11m_obj_attr(obj, CKA_EC_PARAMS, &plen);
    const char *curve;
    ASN1_OCTET_STRING *point;
    OSSL_PARAM params[3];
    EVP_PKEY *pkey = NULL;

    if (params_der == NULL || (curve = key_curve_name(params_der, plen)) == NULL)
        return NULL;
    if ((point = key_ec_point(obj)) == NULL)
        return NULL;
    params[1] = OSSL_PARAM_construct_end();
    params[2] = OSSL_PARAM_construct_end();
    if (strcmp(curve, "ED25519") == 0 || strcmp(curve, "ED448") == 0) {
        *type = curve[2] == '2' ? P11M_KEY_ED25519 : P11M_KEY_ED448;
        params[0] = OSSL_PARAM_construct_octet_string(
            OSSL_PKEY_PARAM_PUB_KEY, point->data, (size_t) point->length);
        pkey = key_fromdata(prov, curve, params);
    } else {
        *type = P11M_KEY_EC;
        params[0] = OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME,
                                                     (char *) curve, 0);
        params[1] = OSSL_PARAM_construct_octet_string(
            OSSL_PKEY_PARAM_PUB_KEY, point->data, (size_t) point->length);
        pkey = key_fromdata(prov, "EC", params);
    }
    ASN1_OCTET_STRING_free(point);
    return pkey;
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

/* The public key of the certificate stored with a key whose public object is absent. */
static EVP_PKEY *key_cert_pub(P11M_PROV *prov, P11M_OBJ *obj)
{
    size_t len;
    const unsigned char *der = p11m_obj_attr(obj, CKA_VALUE, &len);
    X509 *x;
    EVP_PKEY *pkey = NULL;

    if (der == NULL || (x = X509_new_ex(prov->libctx, NOT_US)) == NULL)
        return NULL;
    if (d2i_X509(&x, &der, (long) len) != NULL && (pkey = X509_get0_pubkey(x)) != NULL)
        EVP_PKEY_up_ref(pkey);
    X509_free(x);
    return pkey;
}

P11M_KEY *p11m_key_from_obj(P11M_PROV *prov, P11M_OBJ *obj)
{
    enum p11m_key_type type = P11M_KEY_RSA;
    CK_KEY_TYPE kt = p11m_obj_key_type(obj);
    EVP_PKEY *pub = NULL;
    P11M_KEY *key;

    if (kt == CKK_RSA)
        pub = key_rsa_pub(prov, obj, "RSA");
    else if (kt == CKK_EC || kt == CKK_EC_EDWARDS)
        pub = key_ec_pub(prov, obj, &type);
    if (pub == NULL && (pub = key_cert_pub(prov, obj)) != NULL &&
        !key_type_of_pkey(pub, &type)) {
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
