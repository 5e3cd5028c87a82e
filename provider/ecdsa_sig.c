/*
 * ecdsa_sig.c - ECDSA on the token: the token's r||s becomes the DER SEQUENCE that
 * OpenSSL and TLS expect, and the AlgorithmIdentifier is ecdsa-with-<digest>.
 */
#include <string.h>

#include <openssl/asn1.h>
#include <openssl/objects.h>
#include <openssl/x509.h>

#include "signature.h"

static OSSL_FUNC_signature_newctx_fn ecdsa_newctx;

static void *ecdsa_newctx(void *provctx, const char *propq)
{
    (void) propq;
    return p11m_sig_newctx(provctx, &p11m_ecdsa_sig_scheme);
}

static const char *ecdsa_scheme_name(const P11M_SIG_CTX *ctx)
{
    (void) ctx;
    return "ECDSA";
}

static void ecdsa_mechs(const P11M_SIG_CTX *ctx, CK_MECHANISM_TYPE *raw,
                        CK_MECHANISM_TYPE *combined)
{
    const P11M_SIG_MD_MECHS *m = p11m_sig_md_mechs(ctx->md);

    *raw = CKM_ECDSA;
    *combined = m != NULL ? m->ecdsa : P11M_SIG_NO_MECH;
}

/* Largest ECDSA r or s: P-521's 66 bytes. */
#define ECDSA_MAX_HALF 66

/* One half of r||s as a DER INTEGER at *pp: unsigned, so its leading zero bytes go (DER
 * wants the shortest form) and OpenSSL's encoder adds a sign byte where one is due. The
 * ASN1_INTEGER lives on the stack and points into v: allocating, copying and freeing one
 * per half cost as much as the encoding. */
static int ecdsa_der_uint(const unsigned char *v, size_t n, unsigned char **pp)
{
    ASN1_INTEGER ai = {0};

    while (n > 1 && v[0] == 0) {
        v++;
        n--;
    }
    ai.type = V_ASN1_INTEGER;
    ai.length = (int) n;
    ai.data = (unsigned char *) v; /* i2d only reads it */
    return i2d_ASN1_INTEGER(&ai, pp);
}

/*
 * r||s to DER, written with OpenSSL's DER primitives straight from the bytes: going
 * through ECDSA_SIG's BIGNUMs costs more than the rest of p11mtls's part of a signature
 * on a software token.
 */
static int ecdsa_to_der(unsigned char *sig, size_t *siglen, size_t sigsize)
{
    /* Two INTEGERs: tag, length, a sign byte, the value. */
    unsigned char body[2 * (3 + ECDSA_MAX_HALF)], *q = body, *p = sig;
    size_t half = *siglen / 2;
    int lr, ls, total;

    if (*siglen % 2 != 0 || half == 0 || half > ECDSA_MAX_HALF)
        return 0;
    lr = ecdsa_der_uint(sig, half, &q);
    ls = lr > 0 ? ecdsa_der_uint(sig + half, half, &q) : -1;
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

static int ecdsa_token_sign(P11M_SIG_CTX *ctx, CK_MECHANISM_TYPE mtype,
                            const unsigned char *in, size_t inlen, unsigned char *sig,
                            size_t *siglen, size_t sigsize)
{
    CK_MECHANISM mech = {mtype, NULL, 0};
    unsigned char buf[P11M_SIG_MAX];
    size_t len = sizeof(buf);

    if (!p11m_sig_token_call(ctx, &mech, in, inlen, buf, &len))
        return 0;
    if (!ecdsa_to_der(buf, &len, sizeof(buf))) {
        p11m_prov_raise(ctx->prov, P11M_R_INTERNAL,
                        "cannot DER-encode the token's %zu-byte ECDSA signature (r||s)",
                        len);
        return 0;
    }
    return p11m_sig_copy_out(ctx, buf, len, sig, siglen, sigsize);
}

static int ecdsa_sign_hash(P11M_SIG_CTX *ctx, unsigned char *sig, size_t *siglen,
                           size_t sigsize, const unsigned char *h, size_t hlen)
{
    if (!p11m_token_has_mech(p11m_sig_token(ctx), CKM_ECDSA)) {
        p11m_prov_raise(ctx->prov, P11M_R_MECHANISM,
                        "token has no raw %s mechanism (0x%lx) to sign a prepared hash",
                        "ECDSA", (unsigned long) CKM_ECDSA);
        return 0;
    }
    return ecdsa_token_sign(ctx, CKM_ECDSA, h, hlen, sig, siglen, sigsize);
}

static int ecdsa_algorithm_id(const P11M_SIG_CTX *ctx, unsigned char **der)
{
    X509_ALGOR *alg = X509_ALGOR_new();
    int sig_nid = NID_undef, len = -1;

    if (ctx->md != NULL)
        OBJ_find_sigid_by_algs(&sig_nid, EVP_MD_get_type(ctx->md),
                               NID_X9_62_id_ecPublicKey);
    if (alg != NULL && sig_nid != NID_undef &&
        X509_ALGOR_set0(alg, OBJ_nid2obj(sig_nid), V_ASN1_UNDEF, NULL))
        len = i2d_X509_ALGOR(alg, der);
    X509_ALGOR_free(alg);
    return len;
}

const P11M_SIG_SCHEME p11m_ecdsa_sig_scheme = {
    .name = "P11MTLS-EC",
    .scheme_name = ecdsa_scheme_name,
    .mechs = ecdsa_mechs,
    .sign_hash = ecdsa_sign_hash,
    .token_sign = ecdsa_token_sign,
    .algorithm_id = ecdsa_algorithm_id,
};

/* Hash (or hash-and-sign) then sign, plus signing a prepared hash. */
const OSSL_DISPATCH p11m_ecdsa_signature_functions[] = {
    {OSSL_FUNC_SIGNATURE_NEWCTX, (void (*)(void)) ecdsa_newctx},
    P11M_SIG_HASHED_FUNCTIONS,
    {OSSL_FUNC_SIGNATURE_GETTABLE_CTX_PARAMS,
     (void (*)(void)) p11m_sig_gettable_ctx_params},
    {OSSL_FUNC_SIGNATURE_SETTABLE_CTX_PARAMS,
     (void (*)(void)) p11m_sig_settable_ctx_params},
    {0, NULL},
};
