/*
 * eddsa_sig.c - EdDSA (Ed25519, Ed448) on the token: the message itself is signed, in
 * one C_Sign, with no digest of ours.
 */
#include <openssl/objects.h>
#include <openssl/x509.h>

#include "signature.h"

static OSSL_FUNC_signature_newctx_fn eddsa_newctx;
static OSSL_FUNC_signature_digest_sign_init_fn eddsa_digest_sign_init;
static OSSL_FUNC_signature_digest_sign_fn eddsa_digest_sign;

static void *eddsa_newctx(void *provctx, const char *propq)
{
    (void) propq;
    return p11m_sig_newctx(provctx, &p11m_eddsa_sig_scheme);
}

static const char *eddsa_scheme_name(const P11M_SIG_CTX *ctx)
{
    (void) ctx;
    return "EdDSA";
}

static void eddsa_mechs(const P11M_SIG_CTX *ctx, CK_MECHANISM_TYPE *raw,
                        CK_MECHANISM_TYPE *combined)
{
    (void) ctx;
    *raw = CKM_EDDSA;
    *combined = P11M_SIG_NO_MECH;
}

static int eddsa_token_sign(P11M_SIG_CTX *ctx, CK_MECHANISM_TYPE mtype,
                            const unsigned char *in, size_t inlen, unsigned char *sig,
                            size_t *siglen, size_t sigsize)
{
    CK_MECHANISM mech = {mtype, NULL, 0};
    unsigned char buf[P11M_SIG_MAX];
    size_t len = sizeof(buf);

    return p11m_sig_token_call(ctx, &mech, in, inlen, buf, &len) &&
           p11m_sig_copy_out(ctx, buf, len, sig, siglen, sigsize);
}

/* The curve's own OID, with no parameters (RFC 8410). */
static int eddsa_algorithm_id(const P11M_SIG_CTX *ctx, unsigned char **der)
{
    X509_ALGOR *alg;
    int sig_nid = NID_undef, len = -1;

    switch (ctx->key->type) {
    case P11M_KEY_ED25519:
        sig_nid = NID_ED25519;
        break;
    case P11M_KEY_ED448:
        sig_nid = NID_ED448;
        break;
    case P11M_KEY_RSA:
    case P11M_KEY_RSA_PSS:
    case P11M_KEY_EC:
    case P11M_KEY_TYPES:
        return -1; /* not EdDSA keys: sig_init keeps them out */
    }
    if ((alg = X509_ALGOR_new()) != NULL &&
        X509_ALGOR_set0(alg, OBJ_nid2obj(sig_nid), V_ASN1_UNDEF, NULL))
        len = i2d_X509_ALGOR(alg, der);
    X509_ALGOR_free(alg);
    return len;
}

static int eddsa_digest_sign_init(void *vctx, const char *mdname, void *keydata,
                                  const OSSL_PARAM params[])
{
    P11M_SIG_CTX *ctx = vctx;

    if (p11m_sig_is_soft(keydata))
        return p11m_sig_soft_digest_sign_init(ctx, keydata, mdname, params);
    if (!p11m_sig_init(ctx, keydata, mdname, params))
        return 0;
    if (ctx->md != NULL) {
        p11m_prov_raise(ctx->prov, P11M_R_UNSUPPORTED, "EdDSA takes no digest");
        return 0;
    }
    return p11m_sig_check_possible(ctx);
}

static int eddsa_digest_sign(void *vctx, unsigned char *sig, size_t *siglen,
                             size_t sigsize, const unsigned char *tbs, size_t tbslen)
{
    P11M_SIG_CTX *ctx = vctx;

    if (ctx->dmdctx != NULL) {
        *siglen = sigsize;
        return EVP_DigestSign(ctx->dmdctx, sig, siglen, tbs, tbslen) > 0;
    }
    *siglen = p11m_key_max_sig(ctx->key);
    if (sig == NULL)
        return 1;
    return eddsa_token_sign(ctx, CKM_EDDSA, tbs, tbslen, sig, siglen, sigsize);
}

const P11M_SIG_SCHEME p11m_eddsa_sig_scheme = {
    .name = "P11MTLS-EDDSA",
    .scheme_name = eddsa_scheme_name,
    .mechs = eddsa_mechs,
    .token_sign = eddsa_token_sign,
    .algorithm_id = eddsa_algorithm_id,
};

/* One-shot only: EdDSA signs the message itself. */
const OSSL_DISPATCH p11m_eddsa_signature_functions[] = {
    {OSSL_FUNC_SIGNATURE_NEWCTX, (void (*)(void)) eddsa_newctx},
    {OSSL_FUNC_SIGNATURE_FREECTX, (void (*)(void)) p11m_sig_freectx},
    {OSSL_FUNC_SIGNATURE_DUPCTX, (void (*)(void)) p11m_sig_dupctx},
    {OSSL_FUNC_SIGNATURE_DIGEST_SIGN_INIT, (void (*)(void)) eddsa_digest_sign_init},
    {OSSL_FUNC_SIGNATURE_DIGEST_SIGN, (void (*)(void)) eddsa_digest_sign},
    {OSSL_FUNC_SIGNATURE_DIGEST_VERIFY_INIT,
     (void (*)(void)) p11m_sig_digest_verify_init},
    {OSSL_FUNC_SIGNATURE_DIGEST_VERIFY, (void (*)(void)) p11m_sig_digest_verify},
    {OSSL_FUNC_SIGNATURE_GET_CTX_PARAMS, (void (*)(void)) p11m_sig_get_ctx_params},
    {OSSL_FUNC_SIGNATURE_GETTABLE_CTX_PARAMS,
     (void (*)(void)) p11m_sig_gettable_ctx_params},
    {OSSL_FUNC_SIGNATURE_SET_CTX_PARAMS, (void (*)(void)) p11m_sig_set_ctx_params},
    {OSSL_FUNC_SIGNATURE_SETTABLE_CTX_PARAMS,
     (void (*)(void)) p11m_sig_settable_ctx_params},
    {0, NULL},
};
