/*
 * signature.h - what the signature files share: the context, the common dispatch
 * functions (signature.c, sig_delegate.c) and the scheme families that fill them in
 * (rsa_sig.c, ecdsa_sig.c, eddsa_sig.c), each with its own dispatch table.
 */
#ifndef P11M_SIGNATURE_H
#define P11M_SIGNATURE_H

#include <openssl/core_dispatch.h>

#include "provider.h"

#define P11M_SIG_MAX 1024 /* bytes of the largest signature: RSA-8192 */

typedef struct p11m_sig_scheme P11M_SIG_SCHEME;

typedef struct p11m_sig_ctx {
    P11M_PROV *prov;
    const P11M_SIG_SCHEME *scheme; /* the family of the dispatch table in use */
    P11M_KEY *key;
    EVP_MD *md; /* NULL: none chosen (EdDSA, or sign() over raw input) */
    EVP_MD_CTX *mdctx;
    unsigned char *msg; /* the message so far, while it is kept for one C_Sign */
    size_t msg_len;
    int hash_only; /* the message is hashed, not kept for a hash-and-sign mechanism */
    int pad;       /* RSA: RSA_PKCS1_PADDING or RSA_PKCS1_PSS_PADDING */
    int saltlen;   /* RSA-PSS: RSA_PSS_SALTLEN_* or a length */
    EVP_MD *mgf1_md;
    /* Verification, and everything on software keys, is done by the key's public half
     * (the whole key, for software keys) in another provider (sig_delegate.c). */
    EVP_MD_CTX *dmdctx;
    EVP_PKEY_CTX *dpctx; /* owned by dmdctx when that exists */
} P11M_SIG_CTX;

/* CKM_VENDOR_DEFINED as a mechanism: none. */
#define P11M_SIG_NO_MECH CKM_VENDOR_DEFINED

/* What a scheme family adds to the common flow. */
struct p11m_sig_scheme {
    const char *name; /* the algorithm name in provider.c's table, for messages */
    /* The key is set: settle what the key type implies (RSA-PSS keys pad with PSS).
     * NULL: nothing to settle. */
    int (*init)(P11M_SIG_CTX *ctx);
    /* "ECDSA", "RSA-PSS", ...: what this context signs, for messages. */
    const char *(*scheme_name)(const P11M_SIG_CTX *ctx);
    /* The raw mechanism (over a prepared hash or the message) and the hash-and-sign one
     * for the context's digest (P11M_SIG_NO_MECH: none). */
    void (*mechs)(const P11M_SIG_CTX *ctx, CK_MECHANISM_TYPE *raw,
                  CK_MECHANISM_TYPE *combined);
    /* Signs a prepared hash with the raw mechanism (NULL only for a family whose table
     * has neither sign nor digest_sign_final). */
    int (*sign_hash)(P11M_SIG_CTX *ctx, unsigned char *sig, size_t *siglen,
                     size_t sigsize, const unsigned char *h, size_t hlen);
    /* One C_Sign with mechanism mtype, the result in the form OpenSSL expects. */
    int (*token_sign)(P11M_SIG_CTX *ctx, CK_MECHANISM_TYPE mtype, const unsigned char *in,
                      size_t inlen, unsigned char *sig, size_t *siglen, size_t sigsize);
    /* The DER X509_ALGOR of what this context signs; -1 when there is none. */
    int (*algorithm_id)(const P11M_SIG_CTX *ctx, unsigned char **der);
    /* The family's own context parameters, beyond the digest (NULL: none). */
    int (*get_params)(P11M_SIG_CTX *ctx, OSSL_PARAM params[]);
    int (*set_params)(P11M_SIG_CTX *ctx, const OSSL_PARAM params[]);
};

extern const P11M_SIG_SCHEME p11m_rsa_sig_scheme;
extern const P11M_SIG_SCHEME p11m_ecdsa_sig_scheme;
extern const P11M_SIG_SCHEME p11m_eddsa_sig_scheme;

/* ---- common (signature.c) ---- */

/* A new context for a family's table. */
P11M_SIG_CTX *p11m_sig_newctx(void *provctx, const P11M_SIG_SCHEME *scheme);
/* Takes keydata (a token key of the context's family; NULL: keep the one set), then
 * mdname and params: a new signature starts. */
int p11m_sig_init(P11M_SIG_CTX *ctx, void *keydata, const char *mdname,
                  const OSSL_PARAM params[]);

OSSL_FUNC_signature_freectx_fn p11m_sig_freectx;
OSSL_FUNC_signature_dupctx_fn p11m_sig_dupctx;
OSSL_FUNC_signature_sign_init_fn p11m_sig_sign_init;
OSSL_FUNC_signature_sign_fn p11m_sig_sign;
OSSL_FUNC_signature_digest_sign_init_fn p11m_sig_digest_sign_init;
OSSL_FUNC_signature_digest_sign_update_fn p11m_sig_digest_sign_update;
OSSL_FUNC_signature_digest_sign_final_fn p11m_sig_digest_sign_final;
OSSL_FUNC_signature_digest_sign_fn p11m_sig_digest_sign;
OSSL_FUNC_signature_get_ctx_params_fn p11m_sig_get_ctx_params;
OSSL_FUNC_signature_set_ctx_params_fn p11m_sig_set_ctx_params;
OSSL_FUNC_signature_gettable_ctx_params_fn p11m_sig_gettable_ctx_params;
OSSL_FUNC_signature_settable_ctx_params_fn p11m_sig_settable_ctx_params;

/* The token holding the context's key. */
P11M_TOKEN *p11m_sig_token(const P11M_SIG_CTX *ctx);
/* Hash → PKCS#11 mechanisms, or NULL for a digest p11mtls does not sign with. */
typedef struct p11m_sig_md_mechs {
    int nid;
    CK_MECHANISM_TYPE hash, mgf, rsa_pkcs, rsa_pss, ecdsa;
} P11M_SIG_MD_MECHS;
const P11M_SIG_MD_MECHS *p11m_sig_md_mechs(const EVP_MD *md);
/* Checked at init and when padding changes: a scheme the token can't do fails early. */
int p11m_sig_check_possible(P11M_SIG_CTX *ctx);
/* C_Sign with mech on the context's key into buf (*len: its size in, the length out). */
int p11m_sig_token_call(P11M_SIG_CTX *ctx, CK_MECHANISM *mech, const unsigned char *in,
                        size_t inlen, unsigned char *buf, size_t *len);
/* Copies a finished signature of len bytes out, bounded by sigsize. */
int p11m_sig_copy_out(P11M_SIG_CTX *ctx, const unsigned char *buf, size_t len,
                      unsigned char *sig, size_t *siglen, size_t sigsize);

/* ---- software keys and verification, by another provider (sig_delegate.c) ---- */

int p11m_sig_is_soft(const void *keydata);
void p11m_sig_delegate_reset(P11M_SIG_CTX *ctx);
int p11m_sig_soft_sign_init(P11M_SIG_CTX *ctx, void *keydata, const OSSL_PARAM params[]);
int p11m_sig_soft_digest_sign_init(P11M_SIG_CTX *ctx, void *keydata, const char *mdname,
                                   const OSSL_PARAM params[]);
OSSL_FUNC_signature_verify_init_fn p11m_sig_verify_init;
OSSL_FUNC_signature_verify_fn p11m_sig_verify;
OSSL_FUNC_signature_digest_verify_init_fn p11m_sig_digest_verify_init;
OSSL_FUNC_signature_digest_verify_update_fn p11m_sig_digest_verify_update;
OSSL_FUNC_signature_digest_verify_final_fn p11m_sig_digest_verify_final;
OSSL_FUNC_signature_digest_verify_fn p11m_sig_digest_verify;

/* The dispatch entries RSA and ECDSA share after their newctx: hash (or hash-and-sign)
 * then sign, sign a prepared hash, verify. */
#define P11M_SIG_HASHED_FUNCTIONS                                                        \
    {OSSL_FUNC_SIGNATURE_FREECTX, (void (*)(void)) p11m_sig_freectx},                    \
        {OSSL_FUNC_SIGNATURE_DUPCTX, (void (*)(void)) p11m_sig_dupctx},                  \
        {OSSL_FUNC_SIGNATURE_SIGN_INIT, (void (*)(void)) p11m_sig_sign_init},            \
        {OSSL_FUNC_SIGNATURE_SIGN, (void (*)(void)) p11m_sig_sign},                      \
        {OSSL_FUNC_SIGNATURE_DIGEST_SIGN_INIT,                                           \
         (void (*)(void)) p11m_sig_digest_sign_init},                                    \
        {OSSL_FUNC_SIGNATURE_DIGEST_SIGN_UPDATE,                                         \
         (void (*)(void)) p11m_sig_digest_sign_update},                                  \
        {OSSL_FUNC_SIGNATURE_DIGEST_SIGN_FINAL,                                          \
         (void (*)(void)) p11m_sig_digest_sign_final},                                   \
        {OSSL_FUNC_SIGNATURE_DIGEST_SIGN, (void (*)(void)) p11m_sig_digest_sign},        \
        {OSSL_FUNC_SIGNATURE_VERIFY_INIT, (void (*)(void)) p11m_sig_verify_init},        \
        {OSSL_FUNC_SIGNATURE_VERIFY, (void (*)(void)) p11m_sig_verify},                  \
        {OSSL_FUNC_SIGNATURE_DIGEST_VERIFY_INIT,                                         \
         (void (*)(void)) p11m_sig_digest_verify_init},                                  \
        {OSSL_FUNC_SIGNATURE_DIGEST_VERIFY_UPDATE,                                       \
         (void (*)(void)) p11m_sig_digest_verify_update},                                \
        {OSSL_FUNC_SIGNATURE_DIGEST_VERIFY_FINAL,                                        \
         (void (*)(void)) p11m_sig_digest_verify_final},                                 \
        {OSSL_FUNC_SIGNATURE_DIGEST_VERIFY, (void (*)(void)) p11m_sig_digest_verify},    \
        {OSSL_FUNC_SIGNATURE_GET_CTX_PARAMS, (void (*)(void)) p11m_sig_get_ctx_params},  \
    {                                                                                    \
        OSSL_FUNC_SIGNATURE_SET_CTX_PARAMS, (void (*)(void)) p11m_sig_set_ctx_params     \
    }

#endif
