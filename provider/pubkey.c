/*
 * pubkey.c - the public key of a token object as an EVP_PKEY: from its attributes
 * (CKA_MODULUS/CKA_PUBLIC_EXPONENT, CKA_EC_PARAMS/CKA_EC_POINT) or, for a key found only
 * through its certificate, from the certificate. Shared by the provider and the tool.
 */
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/param_build.h>
#include <openssl/x509.h>

#include "pubkey.h"

static EVP_PKEY *pub_fromdata(OSSL_LIB_CTX *libctx, const char *propq, const char *type,
                              OSSL_PARAM *params)
{
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(libctx, type, propq);
    EVP_PKEY *pkey = NULL;

    if (ctx == NULL || EVP_PKEY_fromdata_init(ctx) <= 0 ||
        EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) <= 0)
        pkey = NULL;
    EVP_PKEY_CTX_free(ctx);
    return pkey;
}

static EVP_PKEY *pub_rsa(OSSL_LIB_CTX *libctx, const char *propq, const P11M_OBJ *obj)
{
    size_t nlen, elen;
    const unsigned char *n = p11m_obj_attr(obj, CKA_MODULUS, &nlen);
    const unsigned char *e = p11m_obj_attr(obj, CKA_PUBLIC_EXPONENT, &elen);
    BIGNUM *bn = NULL, *be = NULL;
    OSSL_PARAM_BLD *bld = NULL;
    OSSL_PARAM *params = NULL;
    EVP_PKEY *pkey = NULL;

    if (n == NULL || e == NULL || nlen > 2048 || elen > 2048)
        return NULL;
    bn = BN_bin2bn(n, (int) nlen, NULL);
    be = BN_bin2bn(e, (int) elen, NULL);
    bld = OSSL_PARAM_BLD_new();
    if (bn != NULL && be != NULL && bld != NULL &&
        OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn) &&
        OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, be) &&
        (params = OSSL_PARAM_BLD_to_param(bld)) != NULL)
        pkey = pub_fromdata(libctx, propq, "RSA", params);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    BN_free(bn);
    BN_free(be);
    return pkey;
}

/*
 * CKA_EC_PARAMS holds a DER OID, or for Edwards curves possibly a PrintableString
 * ("edwards25519", as SoftHSM2 stores it); the OpenSSL short name comes back.
 */
static const char *pub_curve_name(const unsigned char *der, size_t len)
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
        int slen = ASN1_STRING_length(str);
        const unsigned char *s = ASN1_STRING_get0_data(str);

        if (slen == 12 && memcmp(s, "edwards25519", 12) == 0)
            name = "ED25519";
        else if (slen == 10 && memcmp(s, "edwards448", 10) == 0)
            name = "ED448";
        ASN1_PRINTABLESTRING_free(str);
    }
    return name;
}

/* CKA_EC_POINT is a DER OCTET STRING; some tokens give the raw point instead. */
static ASN1_OCTET_STRING *pub_ec_point(const P11M_OBJ *obj)
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

static EVP_PKEY *pub_ec(OSSL_LIB_CTX *libctx, const char *propq, const P11M_OBJ *obj)
{
    size_t plen;
    const unsigned char *params_der = p11m_obj_attr(obj, CKA_EC_PARAMS, &plen);
    const char *curve;
    ASN1_OCTET_STRING *point;
    OSSL_PARAM params[3];
    EVP_PKEY *pkey = NULL;
    int edwards;

    if (params_der == NULL || (curve = pub_curve_name(params_der, plen)) == NULL)
        return NULL;
    if ((point = pub_ec_point(obj)) == NULL)
        return NULL;
    edwards = strcmp(curve, "ED25519") == 0 || strcmp(curve, "ED448") == 0;
    if (edwards) {
        params[0] = OSSL_PARAM_construct_octet_string(
            OSSL_PKEY_PARAM_PUB_KEY, point->data, (size_t) point->length);
        params[1] = OSSL_PARAM_construct_end();
    } else {
        params[0] = OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME,
                                                     (char *) curve, 0);
        params[1] = OSSL_PARAM_construct_octet_string(
            OSSL_PKEY_PARAM_PUB_KEY, point->data, (size_t) point->length);
    }
    params[2] = OSSL_PARAM_construct_end();
    pkey = pub_fromdata(libctx, propq, edwards ? curve : "EC", params);
    ASN1_OCTET_STRING_free(point);
    return pkey;
}

static EVP_PKEY *pub_from_cert(OSSL_LIB_CTX *libctx, const char *propq,
                               const P11M_OBJ *obj)
{
    size_t len;
    const unsigned char *der = p11m_obj_attr(obj, CKA_VALUE, &len);
    X509 *x;
    EVP_PKEY *pkey = NULL;

    if (der == NULL || (x = X509_new_ex(libctx, propq)) == NULL)
        return NULL;
    if (d2i_X509(&x, &der, (long) len) != NULL && (pkey = X509_get0_pubkey(x)) != NULL)
        EVP_PKEY_up_ref(pkey);
    X509_free(x);
    return pkey;
}

EVP_PKEY *p11m_obj_public_key(const P11M_OBJ *obj, OSSL_LIB_CTX *libctx,
                              const char *propq)
{
    CK_KEY_TYPE kt = p11m_obj_key_type(obj);
    EVP_PKEY *pkey = NULL;

    ERR_set_mark(); /* malformed attributes are reported by the caller, as "unusable" */
    if (kt == CKK_RSA)
        pkey = pub_rsa(libctx, propq, obj);
    else if (kt == CKK_EC || kt == CKK_EC_EDWARDS)
        pkey = pub_ec(libctx, propq, obj);
    if (pkey == NULL)
        pkey = pub_from_cert(libctx, propq, obj);
    ERR_pop_to_mark();
    return pkey;
}
