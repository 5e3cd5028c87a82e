/*
 * sig_delegate.c - what the token does not do: verification, by the key's public half,
 * and every operation on software keys (a program that loads p11mtls first gets our
 * keymgmt for its own keys, see provider.h), by the whole key. Both are handed to
 * another provider unchanged; the common functions in signature.c pass on to the
 * EVP context made here whenever one exists.
 */
#include "signature.h"

int p11m_sig_is_soft(const void *keydata)
{
    const P11M_KEY *key = keydata;

    return key != NULL && key->obj == NULL;
}

void p11m_sig_delegate_reset(P11M_SIG_CTX *ctx)
{
    if (ctx->dmdctx != NULL)
        EVP_MD_CTX_free(ctx->dmdctx);
    else
        EVP_PKEY_CTX_free(ctx->dpctx);
    ctx->dmdctx = NULL;
    ctx->dpctx = NULL;
}

static int sig_delegate_key(P11M_SIG_CTX *ctx, void *keydata)
{
    P11M_KEY *key = keydata;

    p11m_sig_delegate_reset(ctx);
    if (key != NULL) {
        p11m_key_free(ctx->key);
        ctx->key = p11m_key_ref(key);
    }
    return ctx->key != NULL && ctx->key->pub != NULL;
}

int p11m_sig_soft_sign_init(P11M_SIG_CTX *ctx, void *keydata, const OSSL_PARAM params[])
{
    if (!sig_delegate_key(ctx, keydata))
        return 0;
    ctx->dpctx =
        EVP_PKEY_CTX_new_from_pkey(ctx->prov->libctx, ctx->key->pub, P11M_NOT_US);
    return ctx->dpctx != NULL && EVP_PKEY_sign_init_ex(ctx->dpctx, params) > 0;
}

int p11m_sig_soft_digest_sign_init(P11M_SIG_CTX *ctx, void *keydata, const char *mdname,
                                   const OSSL_PARAM params[])
{
    if (!sig_delegate_key(ctx, keydata) || (ctx->dmdctx = EVP_MD_CTX_new()) == NULL)
        return 0;
    if (mdname != NULL && *mdname == '\0')
        mdname = NULL;
    return EVP_DigestSignInit_ex(ctx->dmdctx, &ctx->dpctx, mdname, ctx->prov->libctx,
                                 P11M_NOT_US, ctx->key->pub, params) > 0;
}

int p11m_sig_verify_init(void *vctx, void *keydata, const OSSL_PARAM params[])
{
    P11M_SIG_CTX *ctx = vctx;

    if (!sig_delegate_key(ctx, keydata))
        return 0;
    ctx->dpctx =
        EVP_PKEY_CTX_new_from_pkey(ctx->prov->libctx, ctx->key->pub, P11M_NOT_US);
    return ctx->dpctx != NULL && EVP_PKEY_verify_init_ex(ctx->dpctx, params) > 0;
}

int p11m_sig_verify(void *vctx, const unsigned char *sig, size_t siglen,
                    const unsigned char *tbs, size_t tbslen)
{
    P11M_SIG_CTX *ctx = vctx;

    return ctx->dpctx != NULL &&
           EVP_PKEY_verify(ctx->dpctx, sig, siglen, tbs, tbslen) > 0;
}

int p11m_sig_digest_verify_init(void *vctx, const char *mdname, void *keydata,
                                const OSSL_PARAM params[])
{
    P11M_SIG_CTX *ctx = vctx;

    if (!sig_delegate_key(ctx, keydata) || (ctx->dmdctx = EVP_MD_CTX_new()) == NULL)
        return 0;
    if (mdname != NULL && *mdname == '\0')
        mdname = NULL;
    return EVP_DigestVerifyInit_ex(ctx->dmdctx, &ctx->dpctx, mdname, ctx->prov->libctx,
                                   P11M_NOT_US, ctx->key->pub, params) > 0;
}

int p11m_sig_digest_verify_update(void *vctx, const unsigned char *data, size_t len)
{
    P11M_SIG_CTX *ctx = vctx;

    return ctx->dmdctx != NULL && EVP_DigestVerifyUpdate(ctx->dmdctx, data, len) > 0;
}

int p11m_sig_digest_verify_final(void *vctx, const unsigned char *sig, size_t siglen)
{
    P11M_SIG_CTX *ctx = vctx;

    return ctx->dmdctx != NULL && EVP_DigestVerifyFinal(ctx->dmdctx, sig, siglen) > 0;
}

int p11m_sig_digest_verify(void *vctx, const unsigned char *sig, size_t siglen,
                           const unsigned char *tbs, size_t tbslen)
{
    P11M_SIG_CTX *ctx = vctx;

    return ctx->dmdctx != NULL &&
           EVP_DigestVerify(ctx->dmdctx, sig, siglen, tbs, tbslen) > 0;
}
