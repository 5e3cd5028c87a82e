/*
 * rsa_sig.c - RSA signatures on the token: PKCS#1 v1.5 and PSS (with its parameters),
 * PSS encoded here for tokens that only have raw RSA, and the AlgorithmIdentifiers
 * (RSASSA-PSS with RFC 4055 parameters) that certificates, CRLs and CMS carry.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/asn1.h>
#include <openssl/core_names.h>
#include <openssl/objects.h>
#include <openssl/params.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "signature.h"

static OSSL_FUNC_signature_newctx_fn rsa_newctx;
static OSSL_FUNC_signature_gettable_ctx_params_fn rsa_gettable_ctx_params;
static OSSL_FUNC_signature_settable_ctx_params_fn rsa_settable_ctx_params;

static void *rsa_newctx(void *provctx, const char *propq)
{
    P11M_SIG_CTX *ctx = p11m_sig_newctx(provctx, &p11m_rsa_sig_scheme);

    (void) propq;
    if (ctx == NULL)
        return NULL;
    ctx->pad = RSA_PKCS1_PADDING;
    ctx->saltlen = RSA_PSS_SALTLEN_AUTO;
    return ctx;
}

static int rsa_init(P11M_SIG_CTX *ctx)
{
    if (ctx->key->type == P11M_KEY_RSA_PSS)
        ctx->pad = RSA_PKCS1_PSS_PADDING;
    return 1;
}

static const char *rsa_scheme_name(const P11M_SIG_CTX *ctx)
{
    return ctx->pad == RSA_PKCS1_PSS_PADDING ? "RSA-PSS" : "RSA PKCS#1 v1.5";
}

static void rsa_mechs(const P11M_SIG_CTX *ctx, CK_MECHANISM_TYPE *raw,
                      CK_MECHANISM_TYPE *combined)
{
    const P11M_SIG_MD_MECHS *m = p11m_sig_md_mechs(ctx->md);
    int pss = ctx->pad == RSA_PKCS1_PSS_PADDING;

    *raw = pss ? CKM_RSA_PKCS_PSS : CKM_RSA_PKCS;
    *combined = m == NULL ? P11M_SIG_NO_MECH : pss ? m->rsa_pss : m->rsa_pkcs;
}

/* ---- PSS ---- */

static const EVP_MD *rsa_mgf1_md(const P11M_SIG_CTX *ctx)
{
    return ctx->mgf1_md != NULL ? ctx->mgf1_md : ctx->md;
}

static int rsa_saltlen(const P11M_SIG_CTX *ctx, CK_ULONG *out)
{
    int hlen = EVP_MD_get_size(ctx->md);
    int emlen = (EVP_PKEY_get_bits(ctx->key->pub) - 1 + 7) / 8;

    switch (ctx->saltlen) {
    case RSA_PSS_SALTLEN_DIGEST:
        *out = (CK_ULONG) hlen;
        return 1;
    case RSA_PSS_SALTLEN_AUTO:
    case RSA_PSS_SALTLEN_MAX:
        if (emlen - hlen - 2 < 0)
            return 0;
        *out = (CK_ULONG) (emlen - hlen - 2);
        return 1;
    default:
        if (ctx->saltlen < 0 || ctx->saltlen > emlen - hlen - 2)
            return 0;
        *out = (CK_ULONG) ctx->saltlen;
        return 1;
    }
}

static int rsa_pss_params(P11M_SIG_CTX *ctx, CK_RSA_PKCS_PSS_PARAMS *pss)
{
    const P11M_SIG_MD_MECHS *m = p11m_sig_md_mechs(ctx->md);
    const P11M_SIG_MD_MECHS *mgf = p11m_sig_md_mechs(rsa_mgf1_md(ctx));

    if (m == NULL || mgf == NULL) {
        p11m_prov_raise(ctx->prov, P11M_R_UNSUPPORTED,
                        "RSA-PSS needs a SHA-1/SHA-2 digest");
        return 0;
    }
    pss->hashAlg = m->hash;
    pss->mgf = mgf->mgf;
    if (!rsa_saltlen(ctx, &pss->sLen)) {
        p11m_prov_raise(ctx->prov, P11M_R_UNSUPPORTED,
                        "RSA-PSS salt length %d is invalid", ctx->saltlen);
        return 0;
    }
    return 1;
}

static int rsa_mech_is_pss(const P11M_SIG_CTX *ctx, CK_MECHANISM_TYPE mtype)
{
    const P11M_SIG_MD_MECHS *m;

    if (mtype == CKM_RSA_PKCS_PSS)
        return 1;
    return (m = p11m_sig_md_mechs(ctx->md)) != NULL && m->rsa_pss == mtype;
}

static int rsa_token_sign(P11M_SIG_CTX *ctx, CK_MECHANISM_TYPE mtype,
                          const unsigned char *in, size_t inlen, unsigned char *sig,
                          size_t *siglen, size_t sigsize)
{
    CK_RSA_PKCS_PSS_PARAMS pss;
    CK_MECHANISM mech = {mtype, NULL, 0};
    unsigned char buf[P11M_SIG_MAX];
    size_t len = sizeof(buf);

    if (rsa_mech_is_pss(ctx, mtype)) {
        if (!rsa_pss_params(ctx, &pss))
            return 0;
        mech.pParameter = &pss;
        mech.ulParameterLen = sizeof(pss);
    }
    return p11m_sig_token_call(ctx, &mech, in, inlen, buf, &len) &&
           p11m_sig_copy_out(ctx, buf, len, sig, siglen, sigsize);
}

/*
 * RSA-PSS for tokens that have raw RSA (CKM_RSA_X_509) but no PSS mechanism (older smart
 * cards), so TLS 1.3 still works with them: the PSS encoding is done here, over the
 * public half only, and the token does the one private-key operation. OpenSSL 3.0 offers
 * the encoding only through its RSA API, deprecated but present.
 */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
static int rsa_pss_emulate(P11M_SIG_CTX *ctx, unsigned char *sig, size_t *siglen,
                           size_t sigsize, const unsigned char *h)
{
    RSA *rsa = EVP_PKEY_get1_RSA(ctx->key->pub);
    unsigned char em[P11M_SIG_MAX];
    CK_ULONG slen;
    int emlen = rsa != NULL ? RSA_size(rsa) : 0;
    int ok = emlen > 0 && emlen <= (int) sizeof(em) && rsa_saltlen(ctx, &slen) &&
             RSA_padding_add_PKCS1_PSS_mgf1(rsa, em, h, ctx->md, rsa_mgf1_md(ctx),
                                            (int) slen) == 1;
    RSA_free(rsa);
    if (!ok) {
        p11m_prov_raise(ctx->prov, P11M_R_INTERNAL, "RSA-PSS encoding failed");
        return 0;
    }
    ok = rsa_token_sign(ctx, CKM_RSA_X_509, em, (size_t) emlen, sig, siglen, sigsize);
    OPENSSL_cleanse(em, sizeof(em));
    return ok;
}
#pragma GCC diagnostic pop

/* ---- PKCS#1 v1.5 over a raw mechanism ---- */

/* DER DigestInfo for PKCS#1 v1.5 over a raw mechanism, built with OpenSSL's ASN.1. */
static int rsa_digest_info(const EVP_MD *md, const unsigned char *h, size_t hlen,
                           unsigned char **out, size_t *outlen)
{
    X509_SIG *sig = X509_SIG_new();
    X509_ALGOR *alg;
    ASN1_OCTET_STRING *digest;
    int len = -1;

    *out = NULL;
    if (sig == NULL)
        return 0;
    X509_SIG_getm(sig, &alg, &digest);
    if (X509_ALGOR_set0(alg, OBJ_nid2obj(EVP_MD_get_type(md)), V_ASN1_NULL, NULL) &&
        ASN1_OCTET_STRING_set(digest, h, (int) hlen))
        len = i2d_X509_SIG(sig, out);
    X509_SIG_free(sig);
    if (len <= 0)
        return 0;
    *outlen = (size_t) len;
    return 1;
}

static int rsa_sign_hash(P11M_SIG_CTX *ctx, unsigned char *sig, size_t *siglen,
                         size_t sigsize, const unsigned char *h, size_t hlen)
{
    P11M_TOKEN *tok = p11m_sig_token(ctx);
    CK_MECHANISM_TYPE raw, combined;
    unsigned char *di = NULL;
    size_t dilen;
    int ok;

    rsa_mechs(ctx, &raw, &combined);
    if (raw == CKM_RSA_PKCS_PSS && !p11m_token_has_mech(tok, raw) &&
        p11m_token_has_mech(tok, CKM_RSA_X_509) && ctx->md != NULL)
        return rsa_pss_emulate(ctx, sig, siglen, sigsize, h);
    if (!p11m_token_has_mech(tok, raw)) {
        p11m_prov_raise(ctx->prov, P11M_R_MECHANISM,
                        "token has no raw %s mechanism (0x%lx) to sign a prepared hash",
                        rsa_scheme_name(ctx), (unsigned long) raw);
        return 0;
    }
    if (raw == CKM_RSA_PKCS && ctx->md != NULL) {
        if (!rsa_digest_info(ctx->md, h, hlen, &di, &dilen))
            return 0;
        ok = rsa_token_sign(ctx, raw, di, dilen, sig, siglen, sigsize);
        OPENSSL_free(di);
        return ok;
    }
    return rsa_token_sign(ctx, raw, h, hlen, sig, siglen, sigsize);
}

/* ---- AlgorithmIdentifier ---- */

/* RSASSA-PSS-params (RFC 4055) for what this context signs with; SHA-1 and a salt of 20
 * are the DEFAULTs and stay absent, as DER requires. NULL on failure. */
static ASN1_STRING *rsa_pss_algorithm_params(const P11M_SIG_CTX *ctx)
{
    const EVP_MD *mgf1 = rsa_mgf1_md(ctx);
    RSA_PSS_PARAMS *pss = RSA_PSS_PARAMS_new();
    X509_ALGOR *mgf1_hash = NULL;
    ASN1_STRING *mgf1_der = NULL, *der = NULL;
    CK_ULONG saltlen;
    int ok = pss != NULL && ctx->md != NULL && rsa_saltlen(ctx, &saltlen);

    if (ok && EVP_MD_get_type(ctx->md) != NID_sha1 &&
        (ok = (pss->hashAlgorithm = X509_ALGOR_new()) != NULL))
        X509_ALGOR_set_md(pss->hashAlgorithm, ctx->md);
    if (ok && EVP_MD_get_type(mgf1) != NID_sha1) {
        if ((ok = (mgf1_hash = X509_ALGOR_new()) != NULL))
            X509_ALGOR_set_md(mgf1_hash, mgf1);
        ok = ok &&
             (mgf1_der = ASN1_item_pack(mgf1_hash, ASN1_ITEM_rptr(X509_ALGOR), NULL)) !=
                 NULL &&
             (pss->maskGenAlgorithm = X509_ALGOR_new()) != NULL &&
             X509_ALGOR_set0(pss->maskGenAlgorithm, OBJ_nid2obj(NID_mgf1),
                             V_ASN1_SEQUENCE, mgf1_der);
        if (ok)
            mgf1_der = NULL; /* owned by maskGenAlgorithm now */
    }
    if (ok && saltlen != 20)
        ok = (pss->saltLength = ASN1_INTEGER_new()) != NULL &&
             ASN1_INTEGER_set(pss->saltLength, (long) saltlen);
    if (ok)
        der = ASN1_item_pack(pss, ASN1_ITEM_rptr(RSA_PSS_PARAMS), NULL);
    ASN1_STRING_free(mgf1_der);
    X509_ALGOR_free(mgf1_hash);
    RSA_PSS_PARAMS_free(pss);
    return der;
}

static int rsa_algorithm_id(const P11M_SIG_CTX *ctx, unsigned char **der)
{
    X509_ALGOR *alg = X509_ALGOR_new();
    int sig_nid = NID_undef,
        md_nid = ctx->md != NULL ? EVP_MD_get_type(ctx->md) : NID_undef;
    int ptype = V_ASN1_UNDEF, len = -1;
    ASN1_STRING *pval = NULL;

    if (ctx->pad == RSA_PKCS1_PSS_PADDING) {
        if ((pval = rsa_pss_algorithm_params(ctx)) != NULL) {
            sig_nid = NID_rsassaPss;
            ptype = V_ASN1_SEQUENCE;
        }
    } else if (ctx->pad == RSA_PKCS1_PADDING) {
        OBJ_find_sigid_by_algs(&sig_nid, md_nid, NID_rsaEncryption);
        ptype = V_ASN1_NULL;
    }
    if (alg != NULL && sig_nid != NID_undef &&
        X509_ALGOR_set0(alg, OBJ_nid2obj(sig_nid), ptype, pval)) {
        pval = NULL; /* owned by alg */
        len = i2d_X509_ALGOR(alg, der);
    }
    ASN1_STRING_free(pval);
    X509_ALGOR_free(alg);
    return len;
}

/* ---- parameters: padding, salt length, MGF1 digest ---- */

/* Padding modes and PSS salt lengths travel as ints or as names (EVP_PKEY_CTX_get_rsa_*
 * in OpenSSL 3.0 asks for the name), both ways. */
struct named_int {
    int value;
    const char *name;
};
static const struct named_int pad_names[] = {
    {RSA_PKCS1_PADDING, OSSL_PKEY_RSA_PAD_MODE_PKCSV15},
    {RSA_PKCS1_PSS_PADDING, OSSL_PKEY_RSA_PAD_MODE_PSS},
    {0, NULL},
};
static const struct named_int saltlen_names[] = {
    {RSA_PSS_SALTLEN_DIGEST, OSSL_PKEY_RSA_PSS_SALT_LEN_DIGEST},
    {RSA_PSS_SALTLEN_MAX, OSSL_PKEY_RSA_PSS_SALT_LEN_MAX},
    {RSA_PSS_SALTLEN_AUTO, OSSL_PKEY_RSA_PSS_SALT_LEN_AUTO},
    {0, NULL},
};

/* A name not in the table reads as a number when numeric, else as -1 (refused later). */
static int rsa_param_get_named(const OSSL_PARAM *p, const struct named_int *names,
                               int numeric, int *out)
{
    const char *s;

    if (p->data_type == OSSL_PARAM_INTEGER)
        return OSSL_PARAM_get_int(p, out);
    if (!OSSL_PARAM_get_utf8_string_ptr(p, &s))
        return 0;
    for (; names->name != NULL; names++)
        if (strcmp(s, names->name) == 0) {
            *out = names->value;
            return 1;
        }
    *out = numeric ? atoi(s) : -1;
    return 1;
}

static int rsa_param_set_named(OSSL_PARAM *p, const struct named_int *names, int value)
{
    char num[16];

    if (p->data_type != OSSL_PARAM_UTF8_STRING)
        return OSSL_PARAM_set_int(p, value);
    for (; names->name != NULL; names++)
        if (names->value == value)
            return OSSL_PARAM_set_utf8_string(p, names->name);
    snprintf(num, sizeof(num), "%d", value);
    return OSSL_PARAM_set_utf8_string(p, num);
}

static int rsa_get_params(P11M_SIG_CTX *ctx, OSSL_PARAM params[])
{
    OSSL_PARAM *p;
    const EVP_MD *mgf1 = rsa_mgf1_md(ctx);

    if ((p = OSSL_PARAM_locate(params, OSSL_SIGNATURE_PARAM_PAD_MODE)) != NULL &&
        !rsa_param_set_named(p, pad_names, ctx->pad))
        return 0;
    if ((p = OSSL_PARAM_locate(params, OSSL_SIGNATURE_PARAM_PSS_SALTLEN)) != NULL &&
        !rsa_param_set_named(p, saltlen_names, ctx->saltlen))
        return 0;
    if ((p = OSSL_PARAM_locate(params, OSSL_SIGNATURE_PARAM_MGF1_DIGEST)) != NULL &&
        !OSSL_PARAM_set_utf8_string(p, mgf1 != NULL ? EVP_MD_get0_name(mgf1) : ""))
        return 0;
    return 1;
}

static int rsa_set_pad(P11M_SIG_CTX *ctx, int pad)
{
    if (ctx->key == NULL || (pad != RSA_PKCS1_PADDING && pad != RSA_PKCS1_PSS_PADDING) ||
        (pad == RSA_PKCS1_PADDING && ctx->key->type == P11M_KEY_RSA_PSS)) {
        p11m_prov_raise(ctx->prov, P11M_R_UNSUPPORTED,
                        "padding mode %d is not supported for this key", pad);
        return 0;
    }
    ctx->pad = pad;
    return p11m_sig_check_possible(ctx);
}

static int rsa_set_params(P11M_SIG_CTX *ctx, const OSSL_PARAM params[])
{
    const OSSL_PARAM *p;
    const char *s;
    int v;

    if ((p = OSSL_PARAM_locate_const(params, OSSL_SIGNATURE_PARAM_PAD_MODE)) != NULL &&
        (!rsa_param_get_named(p, pad_names, 0, &v) || !rsa_set_pad(ctx, v)))
        return 0;
    if ((p = OSSL_PARAM_locate_const(params, OSSL_SIGNATURE_PARAM_PSS_SALTLEN)) != NULL &&
        !rsa_param_get_named(p, saltlen_names, 1, &ctx->saltlen))
        return 0;
    if ((p = OSSL_PARAM_locate_const(params, OSSL_SIGNATURE_PARAM_MGF1_DIGEST)) != NULL) {
        EVP_MD *md;

        if (!OSSL_PARAM_get_utf8_string_ptr(p, &s) ||
            (md = EVP_MD_fetch(ctx->prov->libctx, s, P11M_NOT_US)) == NULL)
            return 0;
        EVP_MD_free(ctx->mgf1_md);
        ctx->mgf1_md = md;
    }
    return 1;
}

static const OSSL_PARAM *rsa_gettable_ctx_params(void *vctx, void *provctx)
{
    static const OSSL_PARAM gettable[] = {
        OSSL_PARAM_octet_string(OSSL_SIGNATURE_PARAM_ALGORITHM_ID, NULL, 0),
        OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_DIGEST, NULL, 0),
        OSSL_PARAM_int(OSSL_SIGNATURE_PARAM_PAD_MODE, NULL),
        OSSL_PARAM_int(OSSL_SIGNATURE_PARAM_PSS_SALTLEN, NULL),
        OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_MGF1_DIGEST, NULL, 0),
        OSSL_PARAM_END,
    };

    (void) vctx;
    (void) provctx;
    return gettable;
}

static const OSSL_PARAM *rsa_settable_ctx_params(void *vctx, void *provctx)
{
    static const OSSL_PARAM settable[] = {
        OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_DIGEST, NULL, 0),
        OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_PAD_MODE, NULL, 0),
        OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_PSS_SALTLEN, NULL, 0),
        OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_MGF1_DIGEST, NULL, 0),
        OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_PROPERTIES, NULL, 0),
        OSSL_PARAM_END,
    };

    (void) vctx;
    (void) provctx;
    return settable;
}

const P11M_SIG_SCHEME p11m_rsa_sig_scheme = {
    .name = "P11MTLS-RSA",
    .init = rsa_init,
    .scheme_name = rsa_scheme_name,
    .mechs = rsa_mechs,
    .sign_hash = rsa_sign_hash,
    .token_sign = rsa_token_sign,
    .algorithm_id = rsa_algorithm_id,
    .get_params = rsa_get_params,
    .set_params = rsa_set_params,
};

/* Hash (or hash-and-sign) then sign, plus signing a prepared hash. */
const OSSL_DISPATCH p11m_rsa_signature_functions[] = {
    {OSSL_FUNC_SIGNATURE_NEWCTX, (void (*)(void)) rsa_newctx},
    P11M_SIG_HASHED_FUNCTIONS,
    {OSSL_FUNC_SIGNATURE_GETTABLE_CTX_PARAMS, (void (*)(void)) rsa_gettable_ctx_params},
    {OSSL_FUNC_SIGNATURE_SETTABLE_CTX_PARAMS, (void (*)(void)) rsa_settable_ctx_params},
    {0, NULL},
};
