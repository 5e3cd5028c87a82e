/*
 * signature.c - what every signature on the token shares: the context, the choice
 * between the token's hash-and-sign mechanism and hashing in software, and the
 * parameters every scheme has. The families (rsa_sig.c, ecdsa_sig.c, eddsa_sig.c) add
 * their mechanisms, encodings and AlgorithmIdentifiers; software keys and verification
 * go to another provider (sig_delegate.c).
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
#include <openssl/objects.h>
#include <openssl/params.h>

#include "signature.h"

#define MAX_ONE_SHOT 65536 /* beyond this, hash in software even if the token could */

/* Digest → PKCS#11 mechanisms. */
static const P11M_SIG_MD_MECHS md_table[] = {
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

const P11M_SIG_MD_MECHS *p11m_sig_md_mechs(const EVP_MD *md)
{
    int nid = md != NULL ? EVP_MD_get_type(md) : NID_undef;

    for (size_t i = 0; i < sizeof(md_table) / sizeof(md_table[0]); i++)
        if (md_table[i].nid == nid)
            return &md_table[i];
    return NULL;
}

/* The family that signs with keys of this type. */
static const P11M_SIG_SCHEME *sig_scheme_of(enum p11m_key_type type)
{
    switch (type) {
    case P11M_KEY_RSA:
    case P11M_KEY_RSA_PSS:
        return &p11m_rsa_sig_scheme;
    case P11M_KEY_EC:
        return &p11m_ecdsa_sig_scheme;
    case P11M_KEY_ED25519:
    case P11M_KEY_ED448:
        return &p11m_eddsa_sig_scheme;
    case P11M_KEY_TYPES:
        break;
    }
    return NULL;
}

/* ---- context life ---- */

P11M_SIG_CTX *p11m_sig_newctx(void *provctx, const P11M_SIG_SCHEME *scheme)
{
    /* malloc, not calloc: glibc's calloc bypasses its per-thread cache, and this runs
     * once per signature (0.4k instructions less, counted) */
    P11M_SIG_CTX *ctx = malloc(sizeof(*ctx));

    if (ctx == NULL)
        return NULL;
    memset(ctx, 0, sizeof(*ctx));
    ctx->prov = provctx;
    ctx->scheme = scheme;
    return ctx;
}

static void sig_reset_message(P11M_SIG_CTX *ctx)
{
    if (ctx->msg != NULL)
        OPENSSL_clear_free(ctx->msg, ctx->msg_len);
    ctx->msg = NULL;
    ctx->msg_len = 0;
    ctx->hash_only = 0;
}

void p11m_sig_freectx(void *vctx)
{
    P11M_SIG_CTX *ctx = vctx;

    if (ctx == NULL)
        return;
    sig_reset_message(ctx);
    p11m_sig_delegate_reset(ctx);
    EVP_MD_CTX_free(ctx->mdctx);
    EVP_MD_free(ctx->md);
    EVP_MD_free(ctx->mgf1_md);
    p11m_key_free(ctx->key);
    free(ctx);
}

void *p11m_sig_dupctx(void *vctx)
{
    P11M_SIG_CTX *src = vctx, *ctx = malloc(sizeof(*ctx));

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
    p11m_sig_freectx(ctx);
    return NULL;
}

static int sig_set_md(P11M_SIG_CTX *ctx, const char *mdname)
{
    EVP_MD *md;

    if (mdname == NULL || *mdname == '\0')
        return 1;
    md = p11m_prov_md(ctx->prov, mdname);
    if (md == NULL || p11m_sig_md_mechs(md) == NULL) {
        EVP_MD_free(md);
        p11m_prov_raise(ctx->prov, P11M_R_UNSUPPORTED, "digest %s is not supported",
                        mdname);
        return 0;
    }
    EVP_MD_free(ctx->md);
    ctx->md = md;
    return 1;
}

int p11m_sig_init(P11M_SIG_CTX *ctx, void *keydata, const char *mdname,
                  const OSSL_PARAM params[])
{
    P11M_KEY *key = keydata;

    if (key != NULL) {
        if (!p11m_key_is_private(key)) {
            p11m_prov_raise(ctx->prov, P11M_R_NO_OBJECT,
                            "signing needs a private key on the token");
            return 0;
        }
        if (sig_scheme_of(key->type) != ctx->scheme) {
            p11m_prov_raise(ctx->prov, P11M_R_UNSUPPORTED, "%s keys do not sign with %s",
                            p11m_key_type_name(key->type), ctx->scheme->name);
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
    return (ctx->scheme->init == NULL || ctx->scheme->init(ctx)) &&
           sig_set_md(ctx, mdname) && p11m_sig_set_ctx_params(ctx, params);
}

int p11m_sig_sign_init(void *vctx, void *keydata, const OSSL_PARAM params[])
{
    if (p11m_sig_is_soft(keydata))
        return p11m_sig_soft_sign_init(vctx, keydata, params);
    return p11m_sig_init(vctx, keydata, NULL, params);
}

/* ---- the token call ---- */

P11M_TOKEN *p11m_sig_token(const P11M_SIG_CTX *ctx)
{
    return p11m_obj_token(ctx->key->obj);
}

int p11m_sig_check_possible(P11M_SIG_CTX *ctx)
{
    CK_MECHANISM_TYPE raw, combined;
    P11M_TOKEN *tok = p11m_sig_token(ctx);
    char label[40];

    ctx->scheme->mechs(ctx, &raw, &combined);
    if (p11m_token_has_mech(tok, raw) ||
        (combined != P11M_SIG_NO_MECH && p11m_token_has_mech(tok, combined)) ||
        (raw == CKM_RSA_PKCS_PSS && p11m_token_has_mech(tok, CKM_RSA_X_509)))
        return 1;
    p11m_prov_raise(ctx->prov, P11M_R_MECHANISM,
                    "token '%s' cannot sign %s (neither mechanism 0x%lx nor 0x%lx)",
                    p11m_token_label(tok, label, sizeof(label)),
                    ctx->scheme->scheme_name(ctx), (unsigned long) raw,
                    (unsigned long) combined);
    return 0;
}

int p11m_sig_token_call(P11M_SIG_CTX *ctx, CK_MECHANISM *mech, const unsigned char *in,
                        size_t inlen, unsigned char *buf, size_t *len)
{
    P11M_ERR_SCOPE scope;
    CK_RV rv;

    p11m_prov_enter(ctx->prov, &scope);
    rv = p11m_sign(ctx->key->obj, mech, in, inlen, buf, len);
    p11m_prov_leave(&scope);
    return rv == CKR_OK;
}

int p11m_sig_copy_out(P11M_SIG_CTX *ctx, const unsigned char *buf, size_t len,
                      unsigned char *sig, size_t *siglen, size_t sigsize)
{
    if (len > sigsize) {
        p11m_prov_raise(ctx->prov, P11M_R_INTERNAL, "signature buffer too small");
        return 0;
    }
    memcpy(sig, buf, len);
    *siglen = len;
    return 1;
}

/* ---- sign a prepared hash ---- */

int p11m_sig_sign(void *vctx, unsigned char *sig, size_t *siglen, size_t sigsize,
                  const unsigned char *tbs, size_t tbslen)
{
    P11M_SIG_CTX *ctx = vctx;

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
    return p11m_sig_check_possible(ctx) &&
           ctx->scheme->sign_hash(ctx, sig, siglen, sigsize, tbs, tbslen);
}

/* ---- digest-sign: hash-and-sign on the token, or hash here and sign the hash ---- */

int p11m_sig_digest_sign_init(void *vctx, const char *mdname, void *keydata,
                              const OSSL_PARAM params[])
{
    P11M_SIG_CTX *ctx = vctx;
    CK_MECHANISM_TYPE raw, combined;

    if (p11m_sig_is_soft(keydata))
        return p11m_sig_soft_digest_sign_init(ctx, keydata, mdname, params);
    if (!p11m_sig_init(ctx, keydata, mdname, params))
        return 0;
    if (ctx->md == NULL && !sig_set_md(ctx, "SHA256"))
        return 0;
    ctx->mdctx = EVP_MD_CTX_new();
    if (ctx->mdctx == NULL || !EVP_DigestInit_ex2(ctx->mdctx, ctx->md, NULL) ||
        !p11m_sig_check_possible(ctx))
        return 0;
    ctx->scheme->mechs(ctx, &raw, &combined);
    /* Without a hash-and-sign mechanism the message is only hashed, never kept. */
    ctx->hash_only = combined == P11M_SIG_NO_MECH ||
                     !p11m_token_has_mech(p11m_sig_token(ctx), combined);
    return 1;
}

int p11m_sig_digest_sign_update(void *vctx, const unsigned char *data, size_t datalen)
{
    P11M_SIG_CTX *ctx = vctx;
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

int p11m_sig_digest_sign_final(void *vctx, unsigned char *sig, size_t *siglen,
                               size_t sigsize)
{
    P11M_SIG_CTX *ctx = vctx;
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
    ctx->scheme->mechs(ctx, &raw, &combined);
    if (!ctx->hash_only && combined != P11M_SIG_NO_MECH &&
        p11m_token_has_mech(p11m_sig_token(ctx), combined))
        return ctx->scheme->token_sign(ctx, combined, ctx->msg != NULL ? ctx->msg : h,
                                       ctx->msg_len, sig, siglen, sigsize);
    if (!EVP_DigestFinal_ex(ctx->mdctx, h, &hlen))
        return 0;
    return ctx->scheme->sign_hash(ctx, sig, siglen, sigsize, h, hlen);
}

int p11m_sig_digest_sign(void *vctx, unsigned char *sig, size_t *siglen, size_t sigsize,
                         const unsigned char *tbs, size_t tbslen)
{
    P11M_SIG_CTX *ctx = vctx;

    if (ctx->dmdctx != NULL) {
        *siglen = sigsize;
        return EVP_DigestSign(ctx->dmdctx, sig, siglen, tbs, tbslen) > 0;
    }
    *siglen = p11m_key_max_sig(ctx->key);
    if (sig == NULL)
        return 1;
    return p11m_sig_digest_sign_update(ctx, tbs, tbslen) &&
           p11m_sig_digest_sign_final(ctx, sig, siglen, sigsize);
}

/* ---- parameters every scheme has; the family adds its own ---- */

int p11m_sig_get_ctx_params(void *vctx, OSSL_PARAM params[])
{
    P11M_SIG_CTX *ctx = vctx;
    OSSL_PARAM *p;

    if (ctx->dpctx != NULL)
        return EVP_PKEY_CTX_get_params(ctx->dpctx, params);
    if ((p = OSSL_PARAM_locate(params, OSSL_SIGNATURE_PARAM_ALGORITHM_ID)) != NULL &&
        ctx->key != NULL) {
        unsigned char *der = NULL;
        int len = ctx->scheme->algorithm_id(ctx, &der);

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
    return ctx->scheme->get_params == NULL || ctx->scheme->get_params(ctx, params);
}

int p11m_sig_set_ctx_params(void *vctx, const OSSL_PARAM params[])
{
    P11M_SIG_CTX *ctx = vctx;
    const OSSL_PARAM *p;
    const char *s;

    if (params == NULL)
        return 1;
    if (ctx->dpctx != NULL)
        return EVP_PKEY_CTX_set_params(ctx->dpctx, params);
    if ((p = OSSL_PARAM_locate_const(params, OSSL_SIGNATURE_PARAM_DIGEST)) != NULL &&
        (!OSSL_PARAM_get_utf8_string_ptr(p, &s) || !sig_set_md(ctx, s)))
        return 0;
    return ctx->scheme->set_params == NULL || ctx->scheme->set_params(ctx, params);
}

/* What ECDSA and EdDSA take; RSA adds its padding parameters (rsa_sig.c). */
const OSSL_PARAM *p11m_sig_gettable_ctx_params(void *vctx, void *provctx)
{
    static const OSSL_PARAM gettable[] = {
        OSSL_PARAM_octet_string(OSSL_SIGNATURE_PARAM_ALGORITHM_ID, NULL, 0),
        OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_DIGEST, NULL, 0),
        OSSL_PARAM_END,
    };

    (void) vctx;
    (void) provctx;
    return gettable;
}

const OSSL_PARAM *p11m_sig_settable_ctx_params(void *vctx, void *provctx)
{
    static const OSSL_PARAM settable[] = {
        OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_DIGEST, NULL, 0),
        OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_PROPERTIES, NULL, 0),
        OSSL_PARAM_END,
    };

    (void) vctx;
    (void) provctx;
    return settable;
}
