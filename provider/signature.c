/*
 * signature.c - signatures on the token: RSA PKCS#1 v1.5, RSA-PSS, ECDSA and EdDSA.
 *
 * Each signature is one session checkout and one C_SignInit/C_Sign. With a digest, the
 * message is kept (up to a bound) so the token's hash-and-sign mechanism can take it in
 * one call where the token has one; otherwise (or for long messages) it is hashed in
 * software alongside and the token signs the hash with the raw mechanism. Initialisation
 * touches no token: libssl initialises a context per candidate signature algorithm.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/asn1.h>
#include <openssl/objects.h>
#include <openssl/params.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "provider.h"

#define MAX_ONE_SHOT 65536 /* beyond this, hash in software even if the token could */
#define MAX_SIG      1024  /* RSA-8192 */

typedef struct sig_ctx {
    P11M_PROV *prov;
    P11M_KEY *key;
    EVP_MD *md; /* NULL: none chosen (EdDSA, or sign() over raw input) */
    EVP_MD_CTX *mdctx;
    unsigned char *msg; /* the message so far, while it fits MAX_ONE_SHOT */
    size_t msg_len;
    int hash_only; /* the message is hashed, not kept for a hash-and-sign mechanism */
    int pad;       /* RSA_PKCS1_PADDING or RSA_PKCS1_PSS_PADDING */
    int saltlen;   /* RSA_PSS_SALTLEN_* or a length */
    EVP_MD *mgf1_md;
    /* Verification, and everything on software keys, is done by the key's public half
     * (the whole key, for software keys) in another provider. */
    EVP_MD_CTX *dmdctx;
    EVP_PKEY_CTX *dpctx; /* owned by dmdctx when that exists */
} SIG_CTX;

/* Digest → PKCS#11 mechanisms. */
static const struct md_mechs {
    int nid;
    CK_MECHANISM_TYPE hash, mgf, rsa_pkcs, rsa_pss, ecdsa;
} md_table[] = {
    {NID_sha1, CKM_SHA_1, CKG_MGF1_SHA1, CKM_SHA1_RSA_PKCS, CKM_SHA1_RSA_PKCS_PSS,
     CKM_ECDSA_SHA1},
    {NID_sha224, CKM_SHA224, CKG_MGF1_SHA224, CKM_SHA224_RSA_PKCS,
     CKM_SHA224_RSA_PKCS_PSS, CKM_ECDSA_SHA224},
    {NID_sha256, CKM_SHA256, CKG_MGF1_SHA256, CKM_SHA256_RSA_PKCS,
     CKM_SHA256_RSA_PKCS_PSS, CKM_ECDSA_SHA256},
    {NID_sha384, CKM_SHA384, CKG_MGF1_SHA384, CKM_SHA384_RSA_PKCS,
     CKM_SHA384_RSA_PKCS_PSS, CKM_ECDSA_SHA384},
    {NID_sha512, CKM_SHA512, CKG_MGF1_SHA512, CKM_SHA512_RSA_PKCS,
     CKM_SHA512_RSA_PKCS_PSS, CKM_ECDSA_SHA512},
};

static const struct md_mechs *sig_md_mechs(const EVP_MD *md)
{
    int nid = md != NULL ? EVP_MD_get_type(md) : NID_undef;

    for (size_t i = 0; i < sizeof(md_table) / sizeof(md_table[0]); i++)
        if (md_table[i].nid == nid)
            return &md_table[i];
    return NULL;
}

/* ---- context life ---- */

static void *sig_newctx(void *provctx, const char *propq)
{
    SIG_CTX *ctx = calloc(1, sizeof(*ctx));

    (void) propq;
    if (ctx == NULL)
        return NULL;
    ctx->prov = provctx;
    ctx->pad = RSA_PKCS1_PADDING;
    ctx->saltlen = RSA_PSS_SALTLEN_AUTO;
    return ctx;
}

static void sig_reset_message(SIG_CTX *ctx)
{
    if (ctx->msg != NULL)
        OPENSSL_clear_free(ctx->msg, ctx->msg_len);
    ctx->msg = NULL;
    ctx->msg_len = 0;
    ctx->hash_only = 0;
}

static void sig_delegate_reset(SIG_CTX *ctx)
{
    if (ctx->dmdctx != NULL)
        EVP_MD_CTX_free(ctx->dmdctx);
    else
        EVP_PKEY_CTX_free(ctx->dpctx);
    ctx->dmdctx = NULL;
    ctx->dpctx = NULL;
}

static void sig_freectx(void *vctx)
{
    SIG_CTX *ctx = vctx;

    if (ctx == NULL)
        return;
    sig_reset_message(ctx);
    sig_delegate_reset(ctx);
    EVP_MD_CTX_free(ctx->mdctx);
    EVP_MD_free(ctx->md);
    EVP_MD_free(ctx->mgf1_md);
    p11m_key_free(ctx->key);
    free(ctx);
}

static void *sig_dupctx(void *vctx)
{
    SIG_CTX *src = vctx, *ctx = malloc(sizeof(*ctx));

    if (ctx == NULL)
        return NULL;
    *ctx = *src;
    ctx->mdctx = NULL;
    ctx->msg = NULL;
    ctx->dmdctx = NULL;
    ctx->dpctx = NULL;
    if (src->dmdctx != NULL && ((ctx->dmdctx = EVP_MD_CTX_new()) == NULL ||
                                !EVP_MD_CTX_copy_ex(ctx->dmdctx, src->dmdctx))) {
        EVP_MD_CTX_free(ctx->dmdctx);
        free(ctx);
        return NULL;
    }
    if (ctx->dmdctx != NULL)
        ctx->dpctx = EVP_MD_CTX_get_pkey_ctx(ctx->dmdctx);
    else if (src->dpctx != NULL && (ctx->dpctx = EVP_PKEY_CTX_dup(src->dpctx)) == NULL) {
        free(ctx);
        return NULL;
    }
    if (ctx->key != NULL)
        p11m_key_ref(ctx->key);
    if ((ctx->md != NULL && !EVP_MD_up_ref(ctx->md)) ||
        (ctx->mgf1_md != NULL && !EVP_MD_up_ref(ctx->mgf1_md)))
        goto fail_refs;
    if (src->mdctx != NULL && ((ctx->mdctx = EVP_MD_CTX_new()) == NULL ||
                               !EVP_MD_CTX_copy_ex(ctx->mdctx, src->mdctx)))
        goto fail;
    if (src->msg != NULL && (ctx->msg = OPENSSL_memdup(src->msg, src->msg_len)) == NULL)
        goto fail;
    return ctx;
fail_refs:
    ctx->md = ctx->mgf1_md = NULL; /* refs not all taken: leak nothing, free nothing */
fail:
    sig_freectx(ctx);
    return NULL;
}

static int sig_set_md(SIG_CTX *ctx, const char *mdname)
{
    EVP_MD *md;

    if (mdname == NULL || *mdname == '\0')
        return 1;
    md = p11m_prov_md(ctx->prov, mdname);
    if (md == NULL || sig_md_mechs(md) == NULL) {
        EVP_MD_free(md);
        p11m_prov_raise(ctx->prov, P11M_R_UNSUPPORTED, "digest %s is not supported",
                        mdname);
        return 0;
    }
    EVP_MD_free(ctx->md);
    ctx->md = md;
    return 1;
}

static int sig_set_ctx_params(void *vctx, const OSSL_PARAM params[]);

static int sig_init(SIG_CTX *ctx, void *keydata, const char *mdname,
                    const OSSL_PARAM params[])
{
    P11M_KEY *key = keydata;

    if (key != NULL) {
        if (!p11m_key_is_private(key)) {
            p11m_prov_raise(ctx->prov, P11M_R_NO_OBJECT,
                            "signing needs a private key on the token");
            return 0;
        }
        p11m_key_free(ctx->key);
        ctx->key = p11m_key_ref(key);
    }
    if (ctx->key == NULL)
        return 0;
    sig_reset_message(ctx);
    EVP_MD_CTX_free(ctx->mdctx);
    ctx->mdctx = NULL;
    if (ctx->key->type == P11M_KEY_RSA_PSS)
        ctx->pad = RSA_PKCS1_PSS_PADDING;
    return sig_set_md(ctx, mdname) && sig_set_ctx_params(ctx, params);
}

static int sig_soft_sign_init(SIG_CTX *ctx, void *keydata, const OSSL_PARAM params[]);
static int sig_soft_digest_sign_init(SIG_CTX *ctx, void *keydata, const char *mdname,
                                     const OSSL_PARAM params[]);

static int sig_is_soft(const void *keydata)
{
    const P11M_KEY *key = keydata;

    return key != NULL && key->obj == NULL;
}

static int sig_sign_init(void *vctx, void *keydata, const OSSL_PARAM params[])
{
    if (sig_is_soft(keydata))
        return sig_soft_sign_init(vctx, keydata, params);
    return sig_init(vctx, keydata, NULL, params);
}

/* ---- mechanism choice and the token call ---- */

static P11M_TOKEN *sig_token(const SIG_CTX *ctx)
{
    return p11m_obj_token(ctx->key->obj);
}

static int sig_saltlen(const SIG_CTX *ctx, CK_ULONG *out)
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

static int sig_pss_params(SIG_CTX *ctx, CK_RSA_PKCS_PSS_PARAMS *pss)
{
    const struct md_mechs *m = sig_md_mechs(ctx->md);
    const struct md_mechs *mgf =
        sig_md_mechs(ctx->mgf1_md != NULL ? ctx->mgf1_md : ctx->md);

    if (m == NULL || mgf == NULL) {
        p11m_prov_raise(ctx->prov, P11M_R_UNSUPPORTED,
                        "RSA-PSS needs a SHA-1/SHA-2 digest");
        return 0;
    }
    pss->hashAlg = m->hash;
    pss->mgf = mgf->mgf;
    if (!sig_saltlen(ctx, &pss->sLen)) {
        p11m_prov_raise(ctx->prov, P11M_R_UNSUPPORTED,
                        "RSA-PSS salt length %d is invalid", ctx->saltlen);
        return 0;
    }
    return 1;
}

/* The raw (hash already computed) mechanism and the combined one for this context. */
static void sig_mechs(const SIG_CTX *ctx, CK_MECHANISM_TYPE *raw,
                      CK_MECHANISM_TYPE *combined)
{
    const struct md_mechs *m = sig_md_mechs(ctx->md);

    *combined = CKM_VENDOR_DEFINED; /* none */
    switch (ctx->key->type) {
    case P11M_KEY_RSA:
    case P11M_KEY_RSA_PSS:
        if (ctx->pad == RSA_PKCS1_PSS_PADDING) {
            *raw = CKM_RSA_PKCS_PSS;
            if (m != NULL)
                *combined = m->rsa_pss;
        } else {
            *raw = CKM_RSA_PKCS;
            if (m != NULL)
                *combined = m->rsa_pkcs;
        }
        break;
    case P11M_KEY_EC:
        *raw = CKM_ECDSA;
        if (m != NULL)
            *combined = m->ecdsa;
        break;
    default:
        *raw = CKM_EDDSA;
        break;
    }
}

static const char *sig_scheme_name(const SIG_CTX *ctx)
{
    if (ctx->key->type == P11M_KEY_EC)
        return "ECDSA";
    if (ctx->key->type >= P11M_KEY_ED25519)
        return "EdDSA";
    return ctx->pad == RSA_PKCS1_PSS_PADDING ? "RSA-PSS" : "RSA PKCS#1 v1.5";
}

/* Checked at init and when padding changes: a scheme the token can't do fails early. */
static int sig_check_possible(SIG_CTX *ctx)
{
    CK_MECHANISM_TYPE raw, combined;
    P11M_TOKEN *tok = sig_token(ctx);
    char label[40];

    sig_mechs(ctx, &raw, &combined);
    if (p11m_token_has_mech(tok, raw) ||
        (combined != CKM_VENDOR_DEFINED && p11m_token_has_mech(tok, combined)) ||
        (raw == CKM_RSA_PKCS_PSS && p11m_token_has_mech(tok, CKM_RSA_X_509)))
        return 1;
    p11m_prov_raise(ctx->prov, P11M_R_MECHANISM,
                    "token '%s' cannot sign %s (neither mechanism 0x%lx nor 0x%lx)",
                    p11m_token_label(tok, label, sizeof(label)), sig_scheme_name(ctx),
                    (unsigned long) raw, (unsigned long) combined);
    return 0;
}

/* DER DigestInfo for PKCS#1 v1.5 over a raw mechanism, built with OpenSSL's ASN.1. */
static int sig_digest_info(const EVP_MD *md, const unsigned char *h, size_t hlen,
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

/* Largest ECDSA r or s: P-521's 66 bytes. */
#define ECDSA_MAX_HALF 66

/* One half of r||s as a DER INTEGER at *pp: unsigned, so its leading zero bytes go (DER
 * wants the shortest form) and OpenSSL's encoder adds a sign byte where one is due. */
static int sig_der_uint(const unsigned char *v, size_t n, unsigned char **pp)
{
    ASN1_INTEGER *ai = ASN1_INTEGER_new();
    int len = -1;

    while (n > 1 && v[0] == 0) {
        v++;
        n--;
    }
    if (ai != NULL && ASN1_STRING_set(ai, v, (int) n))
        len = i2d_ASN1_INTEGER(ai, pp);
    ASN1_INTEGER_free(ai);
    return len;
}

/*
 * ECDSA: the token's r||s becomes the DER SEQUENCE OpenSSL and TLS expect, written with
 * OpenSSL's DER primitives straight from the bytes: going through ECDSA_SIG's BIGNUMs
 * costs more than the rest of p11mtls's part of a signature on a software token.
 */
static int sig_ecdsa_to_der(unsigned char *sig, size_t *siglen, size_t sigsize)
{
    /* Two INTEGERs: tag, length, a sign byte, the value. */
    unsigned char body[2 * (3 + ECDSA_MAX_HALF)], *q = body, *p = sig;
    size_t half = *siglen / 2;
    int lr, ls, total;

    if (*siglen % 2 != 0 || half == 0 || half > ECDSA_MAX_HALF)
        return 0;
    lr = sig_der_uint(sig, half, &q);
    ls = lr > 0 ? sig_der_uint(sig + half, half, &q) : -1;
    if (lr <= 0 || ls <= 0 || (size_t) (q - body) != (size_t) (lr + ls))
        return 0;
    total = ASN1_object_size(1, lr + ls, V_ASN1_SEQUENCE);
    if (total <= 0 || (size_t) total > sigsize)
        return 0;
    ASN1_put_object(&p, 1, lr + ls, V_ASN1_SEQUENCE, V_ASN1_UNIVERSAL);
    memcpy(p, body, (size_t) (lr + ls));
    *siglen = (size_t) total;
    return 1;
}

static int sig_mech_is_pss(CK_MECHANISM_TYPE mtype)
{
    if (mtype == CKM_RSA_PKCS_PSS)
        return 1;
    for (size_t i = 0; i < sizeof(md_table) / sizeof(md_table[0]); i++)
        if (md_table[i].rsa_pss == mtype)
            return 1;
    return 0;
}

static int sig_token_sign(SIG_CTX *ctx, CK_MECHANISM_TYPE mtype, const unsigned char *in,
                          size_t inlen, unsigned char *sig, size_t *siglen,
                          size_t sigsize)
{
    CK_RSA_PKCS_PSS_PARAMS pss;
    CK_MECHANISM mech = {mtype, NULL, 0};
    unsigned char buf[MAX_SIG];
    size_t len = sizeof(buf);
    P11M_ERR_SCOPE scope;
    CK_RV rv;

    if (sig_mech_is_pss(mtype)) {
        if (!sig_pss_params(ctx, &pss))
            return 0;
        mech.pParameter = &pss;
        mech.ulParameterLen = sizeof(pss);
    }
    p11m_prov_enter(ctx->prov, &scope);
    rv = p11m_sign(ctx->key->obj, &mech, in, inlen, buf, &len);
    p11m_prov_leave(&scope);
    if (rv != CKR_OK)
        return 0;
    if (ctx->key->type == P11M_KEY_EC) {
        if (!sig_ecdsa_to_der(buf, &len, sizeof(buf))) {
            p11m_prov_raise(
                ctx->prov, P11M_R_INTERNAL,
                "cannot DER-encode the token's %zu-byte ECDSA signature (r||s)", len);
            return 0;
        }
    }
    if (len > sigsize) {
        p11m_prov_raise(ctx->prov, P11M_R_INTERNAL, "signature buffer too small");
        return 0;
    }
    memcpy(sig, buf, len);
    *siglen = len;
    return 1;
}

/*
 * RSA-PSS for tokens that have raw RSA (CKM_RSA_X_509) but no PSS mechanism (older smart
 * cards), so TLS 1.3 still works with them: the PSS encoding is done here, over the
 * public half only, and the token does the one private-key operation. OpenSSL 3.0 offers
 * the encoding only through its RSA API, deprecated but present.
 */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
static int sig_pss_emulate(SIG_CTX *ctx, unsigned char *sig, size_t *siglen,
                           size_t sigsize, const unsigned char *h)
{
    RSA *rsa = EVP_PKEY_get1_RSA(ctx->key->pub);
    unsigned char em[MAX_SIG];
    CK_ULONG slen;
    int emlen = rsa != NULL ? RSA_size(rsa) : 0;
    int ok = emlen > 0 && emlen <= (int) sizeof(em) && sig_saltlen(ctx, &slen) &&
             RSA_padding_add_PKCS1_PSS_mgf1(rsa, em, h, ctx->md,
                                            ctx->mgf1_md != NULL ? ctx->mgf1_md : ctx->md,
                                            (int) slen) == 1;
    RSA_free(rsa);
    if (!ok) {
        p11m_prov_raise(ctx->prov, P11M_R_INTERNAL, "RSA-PSS encoding failed");
        return 0;
    }
    ok = sig_token_sign(ctx, CKM_RSA_X_509, em, (size_t) emlen, sig, siglen, sigsize);
    OPENSSL_cleanse(em, sizeof(em));
    return ok;
}
#pragma GCC diagnostic pop

/* Signs a hash already computed (EVP_PKEY_sign, or the end of a digest-sign). */
static int sig_sign_hash(SIG_CTX *ctx, unsigned char *sig, size_t *siglen, size_t sigsize,
                         const unsigned char *h, size_t hlen)
{
    CK_MECHANISM_TYPE raw, combined;
    unsigned char *di = NULL;
    size_t dilen;
    int ok;

    sig_mechs(ctx, &raw, &combined);
    if (raw == CKM_RSA_PKCS_PSS && !p11m_token_has_mech(sig_token(ctx), raw) &&
        p11m_token_has_mech(sig_token(ctx), CKM_RSA_X_509) && ctx->md != NULL)
        return sig_pss_emulate(ctx, sig, siglen, sigsize, h);
    if (!p11m_token_has_mech(sig_token(ctx), raw)) {
        p11m_prov_raise(ctx->prov, P11M_R_MECHANISM,
                        "token has no raw %s mechanism (0x%lx) to sign a prepared hash",
                        sig_scheme_name(ctx), (unsigned long) raw);
        return 0;
    }
    if (raw == CKM_RSA_PKCS && ctx->md != NULL) {
        if (!sig_digest_info(ctx->md, h, hlen, &di, &dilen))
            return 0;
        ok = sig_token_sign(ctx, raw, di, dilen, sig, siglen, sigsize);
        OPENSSL_free(di);
        return ok;
    }
    return sig_token_sign(ctx, raw, h, hlen, sig, siglen, sigsize);
}

static int sig_sign(void *vctx, unsigned char *sig, size_t *siglen, size_t sigsize,
                    const unsigned char *tbs, size_t tbslen)
{
    SIG_CTX *ctx = vctx;

    if (ctx->dpctx != NULL) {
        *siglen = sigsize;
        return EVP_PKEY_sign(ctx->dpctx, sig, siglen, tbs, tbslen) > 0;
    }

    *siglen = p11m_key_max_sig(ctx->key);
    if (sig == NULL)
        return 1;
    if (ctx->md != NULL && tbslen != (size_t) EVP_MD_get_size(ctx->md)) {
        p11m_prov_raise(ctx->prov, P11M_R_INTERNAL, "input is not a %s hash",
                        EVP_MD_get0_name(ctx->md));
        return 0;
    }
    return sig_check_possible(ctx) &&
           sig_sign_hash(ctx, sig, siglen, sigsize, tbs, tbslen);
}

/* ---- digest-sign ---- */

static int sig_digest_sign_init(void *vctx, const char *mdname, void *keydata,
                                const OSSL_PARAM params[])
{
    SIG_CTX *ctx = vctx;
    CK_MECHANISM_TYPE raw, combined;

    if (sig_is_soft(keydata))
        return sig_soft_digest_sign_init(ctx, keydata, mdname, params);

    if (!sig_init(ctx, keydata, mdname, params))
        return 0;
    if (ctx->key->type >= P11M_KEY_ED25519) {
        if (ctx->md != NULL) {
            p11m_prov_raise(ctx->prov, P11M_R_UNSUPPORTED, "EdDSA takes no digest");
            return 0;
        }
        return sig_check_possible(ctx);
    }
    if (ctx->md == NULL && !sig_set_md(ctx, "SHA256"))
        return 0;
    ctx->mdctx = EVP_MD_CTX_new();
    if (ctx->mdctx == NULL || !EVP_DigestInit_ex2(ctx->mdctx, ctx->md, NULL) ||
        !sig_check_possible(ctx))
        return 0;
    sig_mechs(ctx, &raw, &combined);
    /* Without a hash-and-sign mechanism the message is only hashed, never kept. */
    ctx->hash_only =
        combined == CKM_VENDOR_DEFINED || !p11m_token_has_mech(sig_token(ctx), combined);
    return 1;
}

static int sig_digest_sign_update(void *vctx, const unsigned char *data, size_t datalen)
{
    SIG_CTX *ctx = vctx;
    unsigned char *m;

    if (ctx->dmdctx != NULL)
        return EVP_DigestSignUpdate(ctx->dmdctx, data, datalen) > 0;
    if (ctx->mdctx == NULL || !EVP_DigestUpdate(ctx->mdctx, data, datalen))
        return 0;
    if (ctx->hash_only)
        return 1;
    if (datalen > MAX_ONE_SHOT - ctx->msg_len) {
        sig_reset_message(ctx);
        ctx->hash_only = 1;
        return 1;
    }
    if ((m = OPENSSL_realloc(ctx->msg, ctx->msg_len + datalen + 1)) == NULL)
        return 0;
    memcpy(m + ctx->msg_len, data, datalen);
    ctx->msg = m;
    ctx->msg_len += datalen;
    return 1;
}

static int sig_digest_sign_final(void *vctx, unsigned char *sig, size_t *siglen,
                                 size_t sigsize)
{
    SIG_CTX *ctx = vctx;
    CK_MECHANISM_TYPE raw, combined;
    unsigned char h[EVP_MAX_MD_SIZE];
    unsigned int hlen;

    if (ctx->dmdctx != NULL) {
        *siglen = sigsize;
        return EVP_DigestSignFinal(ctx->dmdctx, sig, siglen) > 0;
    }
    *siglen = p11m_key_max_sig(ctx->key);
    if (sig == NULL)
        return 1;
    if (ctx->mdctx == NULL)
        return 0;
    sig_mechs(ctx, &raw, &combined);
    if (!ctx->hash_only && combined != CKM_VENDOR_DEFINED &&
        p11m_token_has_mech(sig_token(ctx), combined))
        return sig_token_sign(ctx, combined, ctx->msg != NULL ? ctx->msg : h,
                              ctx->msg_len, sig, siglen, sigsize);
    if (!EVP_DigestFinal_ex(ctx->mdctx, h, &hlen))
        return 0;
    return sig_sign_hash(ctx, sig, siglen, sigsize, h, hlen);
}

static int sig_digest_sign(void *vctx, unsigned char *sig, size_t *siglen, size_t sigsize,
                           const unsigned char *tbs, size_t tbslen)
{
    SIG_CTX *ctx = vctx;

    if (ctx->dmdctx != NULL) {
        *siglen = sigsize;
        return EVP_DigestSign(ctx->dmdctx, sig, siglen, tbs, tbslen) > 0;
    }
    *siglen = p11m_key_max_sig(ctx->key);
    if (sig == NULL)
        return 1;
    if (ctx->key->type >= P11M_KEY_ED25519)
        return sig_token_sign(ctx, CKM_EDDSA, tbs, tbslen, sig, siglen, sigsize);
    return sig_digest_sign_update(ctx, tbs, tbslen) &&
           sig_digest_sign_final(ctx, sig, siglen, sigsize);
}

/* ---- verification, by the public half ---- */

static int sig_verify_key(SIG_CTX *ctx, void *keydata)
{
    P11M_KEY *key = keydata;

    sig_delegate_reset(ctx);
    if (key != NULL) {
        p11m_key_free(ctx->key);
        ctx->key = p11m_key_ref(key);
    }
    return ctx->key != NULL && ctx->key->pub != NULL;
}

static int sig_soft_sign_init(SIG_CTX *ctx, void *keydata, const OSSL_PARAM params[])
{
    if (!sig_verify_key(ctx, keydata))
        return 0;
    ctx->dpctx =
        EVP_PKEY_CTX_new_from_pkey(ctx->prov->libctx, ctx->key->pub, P11M_NOT_US);
    return ctx->dpctx != NULL && EVP_PKEY_sign_init_ex(ctx->dpctx, params) > 0;
}

static int sig_soft_digest_sign_init(SIG_CTX *ctx, void *keydata, const char *mdname,
                                     const OSSL_PARAM params[])
{
    if (!sig_verify_key(ctx, keydata) || (ctx->dmdctx = EVP_MD_CTX_new()) == NULL)
        return 0;
    if (mdname != NULL && *mdname == '\0')
        mdname = NULL;
    return EVP_DigestSignInit_ex(ctx->dmdctx, &ctx->dpctx, mdname, ctx->prov->libctx,
                                 P11M_NOT_US, ctx->key->pub, params) > 0;
}

static int sig_verify_init(void *vctx, void *keydata, const OSSL_PARAM params[])
{
    SIG_CTX *ctx = vctx;

    if (!sig_verify_key(ctx, keydata))
        return 0;
    ctx->dpctx =
        EVP_PKEY_CTX_new_from_pkey(ctx->prov->libctx, ctx->key->pub, P11M_NOT_US);
    return ctx->dpctx != NULL && EVP_PKEY_verify_init_ex(ctx->dpctx, params) > 0;
}

static int sig_verify(void *vctx, const unsigned char *sig, size_t siglen,
                      const unsigned char *tbs, size_t tbslen)
{
    SIG_CTX *ctx = vctx;

    return ctx->dpctx != NULL &&
           EVP_PKEY_verify(ctx->dpctx, sig, siglen, tbs, tbslen) > 0;
}

static int sig_digest_verify_init(void *vctx, const char *mdname, void *keydata,
                                  const OSSL_PARAM params[])
{
    SIG_CTX *ctx = vctx;

    if (!sig_verify_key(ctx, keydata) || (ctx->dmdctx = EVP_MD_CTX_new()) == NULL)
        return 0;
    if (mdname != NULL && *mdname == '\0')
        mdname = NULL;
    return EVP_DigestVerifyInit_ex(ctx->dmdctx, &ctx->dpctx, mdname, ctx->prov->libctx,
                                   P11M_NOT_US, ctx->key->pub, params) > 0;
}

static int sig_digest_verify_update(void *vctx, const unsigned char *data, size_t len)
{
    SIG_CTX *ctx = vctx;

    return ctx->dmdctx != NULL && EVP_DigestVerifyUpdate(ctx->dmdctx, data, len) > 0;
}

static int sig_digest_verify_final(void *vctx, const unsigned char *sig, size_t siglen)
{
    SIG_CTX *ctx = vctx;

    return ctx->dmdctx != NULL && EVP_DigestVerifyFinal(ctx->dmdctx, sig, siglen) > 0;
}

static int sig_digest_verify(void *vctx, const unsigned char *sig, size_t siglen,
                             const unsigned char *tbs, size_t tbslen)
{
    SIG_CTX *ctx = vctx;

    return ctx->dmdctx != NULL &&
           EVP_DigestVerify(ctx->dmdctx, sig, siglen, tbs, tbslen) > 0;
}

/* ---- parameters ---- */

/* RSASSA-PSS-params (RFC 4055) for what this context signs with; SHA-1 and a salt of 20
 * are the DEFAULTs and stay absent, as DER requires. NULL on failure. */
static ASN1_STRING *sig_pss_algorithm_params(const SIG_CTX *ctx)
{
    const EVP_MD *mgf1 = ctx->mgf1_md != NULL ? ctx->mgf1_md : ctx->md;
    RSA_PSS_PARAMS *pss = RSA_PSS_PARAMS_new();
    X509_ALGOR *mgf1_hash = NULL;
    ASN1_STRING *mgf1_der = NULL, *der = NULL;
    CK_ULONG saltlen;
    int ok = pss != NULL && ctx->md != NULL && sig_saltlen(ctx, &saltlen);

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

static int sig_algorithm_id(const SIG_CTX *ctx, unsigned char **der)
{
    X509_ALGOR *alg = X509_ALGOR_new();
    int sig_nid = NID_undef,
        md_nid = ctx->md != NULL ? EVP_MD_get_type(ctx->md) : NID_undef;
    int ptype = V_ASN1_UNDEF, len = -1;
    void *pval = NULL;

    switch (ctx->key->type) {
    case P11M_KEY_ED25519:
        sig_nid = NID_ED25519;
        break;
    case P11M_KEY_ED448:
        sig_nid = NID_ED448;
        break;
    case P11M_KEY_EC:
        OBJ_find_sigid_by_algs(&sig_nid, md_nid, NID_X9_62_id_ecPublicKey);
        break;
    case P11M_KEY_RSA:
    case P11M_KEY_RSA_PSS:
        if (ctx->pad == RSA_PKCS1_PSS_PADDING) {
            if ((pval = sig_pss_algorithm_params(ctx)) != NULL) {
                sig_nid = NID_rsassaPss;
                ptype = V_ASN1_SEQUENCE;
            }
        } else if (ctx->pad == RSA_PKCS1_PADDING) {
            OBJ_find_sigid_by_algs(&sig_nid, md_nid, NID_rsaEncryption);
            ptype = V_ASN1_NULL;
        }
        break;
    default:
        break;
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
static int sig_param_get_named(const OSSL_PARAM *p, const struct named_int *names,
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

static int sig_param_set_named(OSSL_PARAM *p, const struct named_int *names, int value)
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

static int sig_get_ctx_params(void *vctx, OSSL_PARAM params[])
{
    SIG_CTX *ctx = vctx;
    OSSL_PARAM *p;

    if (ctx->dpctx != NULL)
        return EVP_PKEY_CTX_get_params(ctx->dpctx, params);
    if ((p = OSSL_PARAM_locate(params, OSSL_SIGNATURE_PARAM_ALGORITHM_ID)) != NULL &&
        ctx->key != NULL) {
        unsigned char *der = NULL;
        int len = sig_algorithm_id(ctx, &der);

        /* None without a digest: left unset, as OpenSSL's providers do. */
        if (len > 0 && !OSSL_PARAM_set_octet_string(p, der, (size_t) len)) {
            OPENSSL_free(der);
            return 0;
        }
        OPENSSL_free(der);
    }
    if ((p = OSSL_PARAM_locate(params, OSSL_SIGNATURE_PARAM_DIGEST)) != NULL &&
        !OSSL_PARAM_set_utf8_string(p, ctx->md != NULL ? EVP_MD_get0_name(ctx->md) : ""))
        return 0;
    if ((p = OSSL_PARAM_locate(params, OSSL_SIGNATURE_PARAM_PAD_MODE)) != NULL &&
        !sig_param_set_named(p, pad_names, ctx->pad))
        return 0;
    if ((p = OSSL_PARAM_locate(params, OSSL_SIGNATURE_PARAM_PSS_SALTLEN)) != NULL &&
        !sig_param_set_named(p, saltlen_names, ctx->saltlen))
        return 0;
    if ((p = OSSL_PARAM_locate(params, OSSL_SIGNATURE_PARAM_MGF1_DIGEST)) != NULL) {
        const EVP_MD *mgf1 = ctx->mgf1_md != NULL ? ctx->mgf1_md : ctx->md;

        if (!OSSL_PARAM_set_utf8_string(p, mgf1 != NULL ? EVP_MD_get0_name(mgf1) : ""))
            return 0;
    }
    return 1;
}

static const OSSL_PARAM *sig_gettable_ctx_params(void *vctx, void *provctx)
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

static int sig_set_pad(SIG_CTX *ctx, int pad)
{
    int is_rsa = ctx->key != NULL && ctx->key->type <= P11M_KEY_RSA_PSS;

    if (!is_rsa || (pad != RSA_PKCS1_PADDING && pad != RSA_PKCS1_PSS_PADDING) ||
        (pad == RSA_PKCS1_PADDING && ctx->key->type == P11M_KEY_RSA_PSS)) {
        p11m_prov_raise(ctx->prov, P11M_R_UNSUPPORTED,
                        "padding mode %d is not supported for this key", pad);
        return 0;
    }
    ctx->pad = pad;
    return sig_check_possible(ctx);
}

static int sig_set_ctx_params(void *vctx, const OSSL_PARAM params[])
{
    SIG_CTX *ctx = vctx;
    const OSSL_PARAM *p;
    const char *s;
    int v;

    if (params == NULL)
        return 1;
    if (ctx->dpctx != NULL)
        return EVP_PKEY_CTX_set_params(ctx->dpctx, params);
    if ((p = OSSL_PARAM_locate_const(params, OSSL_SIGNATURE_PARAM_DIGEST)) != NULL &&
        (!OSSL_PARAM_get_utf8_string_ptr(p, &s) || !sig_set_md(ctx, s)))
        return 0;
    if ((p = OSSL_PARAM_locate_const(params, OSSL_SIGNATURE_PARAM_PAD_MODE)) != NULL &&
        (!sig_param_get_named(p, pad_names, 0, &v) || !sig_set_pad(ctx, v)))
        return 0;
    if ((p = OSSL_PARAM_locate_const(params, OSSL_SIGNATURE_PARAM_PSS_SALTLEN)) != NULL &&
        !sig_param_get_named(p, saltlen_names, 1, &ctx->saltlen))
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

static const OSSL_PARAM *sig_settable_ctx_params(void *vctx, void *provctx)
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

#define FN(id, fn)                                                                       \
    {                                                                                    \
        OSSL_FUNC_SIGNATURE_##id, (void (*)(void)) fn                                    \
    }

/* RSA and ECDSA: hash (or hash-and-sign) then sign, plus signing a prepared hash. */
const OSSL_DISPATCH p11m_hashed_signature_functions[] = {
    FN(NEWCTX, sig_newctx),
    FN(FREECTX, sig_freectx),
    FN(DUPCTX, sig_dupctx),
    FN(SIGN_INIT, sig_sign_init),
    FN(SIGN, sig_sign),
    FN(DIGEST_SIGN_INIT, sig_digest_sign_init),
    FN(DIGEST_SIGN_UPDATE, sig_digest_sign_update),
    FN(DIGEST_SIGN_FINAL, sig_digest_sign_final),
    FN(DIGEST_SIGN, sig_digest_sign),
    FN(VERIFY_INIT, sig_verify_init),
    FN(VERIFY, sig_verify),
    FN(DIGEST_VERIFY_INIT, sig_digest_verify_init),
    FN(DIGEST_VERIFY_UPDATE, sig_digest_verify_update),
    FN(DIGEST_VERIFY_FINAL, sig_digest_verify_final),
    FN(DIGEST_VERIFY, sig_digest_verify),
    FN(GET_CTX_PARAMS, sig_get_ctx_params),
    FN(GETTABLE_CTX_PARAMS, sig_gettable_ctx_params),
    FN(SET_CTX_PARAMS, sig_set_ctx_params),
    FN(SETTABLE_CTX_PARAMS, sig_settable_ctx_params),
    {0, NULL},
};

/* EdDSA signs the message itself, in one call. */
const OSSL_DISPATCH p11m_eddsa_signature_functions[] = {
    FN(NEWCTX, sig_newctx),
    FN(FREECTX, sig_freectx),
    FN(DUPCTX, sig_dupctx),
    FN(DIGEST_SIGN_INIT, sig_digest_sign_init),
    FN(DIGEST_SIGN, sig_digest_sign),
    FN(DIGEST_VERIFY_INIT, sig_digest_verify_init),
    FN(DIGEST_VERIFY, sig_digest_verify),
    FN(GET_CTX_PARAMS, sig_get_ctx_params),
    FN(GETTABLE_CTX_PARAMS, sig_gettable_ctx_params),
    FN(SET_CTX_PARAMS, sig_set_ctx_params),
    FN(SETTABLE_CTX_PARAMS, sig_settable_ctx_params),
    {0, NULL},
};
