/*
 * provider.h - what the provider's operation files share: the provider context, the key
 * object behind every EVP_PKEY this provider makes, and error raising.
 */
#ifndef P11M_PROVIDER_H
#define P11M_PROVIDER_H

#include <openssl/core.h>
#include <openssl/core_dispatch.h>
#include <openssl/evp.h>

#include "p11m.h"

#define P11M_PROV_NAME "p11mtls"
#define P11M_PROP      "provider=p11mtls"
/* For fetching what another provider implements: never p11mtls itself. */
#define P11M_NOT_US "provider!=" P11M_PROV_NAME

typedef struct p11m_prov {
    const OSSL_CORE_HANDLE *handle;
    OSSL_LIB_CTX
    *libctx;           /* child of the application's: software hashing, public halves */
    char *module_path; /* NULL: p11-kit's proxy */
    char *init_args;
    char *pin_source;
    int pem_uri;    /* serve PEM-URI key files (decoders): opt-in, see provider.c */
    EVP_MD *mds[5]; /* SHA-1, SHA-224, SHA-256, SHA-384, SHA-512, fetched once */
    /* The spellings callers used for them ("SHA256", "SHA2-256", ...), each with its
     * index in mds: immutable once ready is set, so read without a lock. */
    struct {
        char name[32];
        int mds_index;
        int ready;
    } md_names[8];
    int n_md_names;
} P11M_PROV;

/* The digest named mdname from the software provider, fetched once per provider (a
 * reference the caller frees), or NULL if it is not one p11mtls signs with. */
EVP_MD *p11m_prov_md(P11M_PROV *prov, const char *mdname);

/* The provider context's settings in the form the core's login wants them. */
void p11m_prov_login_info(const P11M_PROV *prov, P11M_LOGIN_INFO *li);

/* The program's passphrase callback (its UI), asked for a PIN as the last source. */
typedef struct p11m_prov_pw {
    OSSL_PASSPHRASE_CALLBACK *cb;
    void *cbarg;
} P11M_PROV_PW;

/* p11m_prov_login_info, with pw's callback (if any) as the last PIN source. The
 * callback lives only as long as the call that received it: see p11m_prov_pw_login. */
void p11m_prov_login_info_pw(const P11M_PROV *prov, P11M_LOGIN_INFO *li,
                             P11M_PROV_PW *pw);

/* When only the callback can give the PIN (no PIN source configured or in uri), logs in
 * to tok now, while the callback is valid, rather than at the first signature. */
int p11m_prov_pw_login(P11M_TOKEN *tok, const P11M_LOGIN_INFO *li, P11KitUri *uri);

/*
 * Around every call into the PKCS#11 core: errors the core raises until the leave are
 * reported through prov's error upcalls (the core has no process-wide error sink).
 */
void p11m_prov_enter(const P11M_PROV *prov, P11M_ERR_SCOPE *scope);
void p11m_prov_leave(P11M_ERR_SCOPE *scope);

/* Raises an error with one of the core's reasons through the core's error upcalls. */
void p11m_prov_raise(const P11M_PROV *prov, int reason, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- keys (key.c) ---- */

enum p11m_key_type {
    P11M_KEY_RSA,
    P11M_KEY_RSA_PSS,
    P11M_KEY_EC,
    P11M_KEY_ED25519,
    P11M_KEY_ED448,
    P11M_KEY_TYPES
};

/*
 * A key as OpenSSL sees it: the token object (a private key that signs on the token,
 * or a public key) and its public half as an EVP_PKEY of another provider, which
 * answers every question about public parameters without touching the token.
 *
 * A program that loads p11mtls before the default provider gets this keymgmt for every
 * RSA, EC or EdDSA key it makes (generation, import): such software keys have no token
 * object, and every operation on them is handed to the software provider unchanged.
 * Reference counted: the store keeps one reference, every EVP_PKEY another.
 */
typedef struct p11m_key {
    int refs;
    P11M_PROV *prov;
    enum p11m_key_type type;
    P11M_OBJ *obj; /* NULL for a software key */
    EVP_PKEY *pub; /* the public half; for a software key, the whole key */
    int soft_private;
} P11M_KEY;

/* The key for a token object, with its public half built from the object's attributes
 * (or from its certificate). NULL (raised) when the key type is not supported. */
P11M_KEY *p11m_key_from_obj(P11M_PROV *prov, P11M_OBJ *obj);
P11M_KEY *p11m_key_new(P11M_PROV *prov, enum p11m_key_type type);
P11M_KEY *p11m_key_ref(P11M_KEY *key);
void p11m_key_free(P11M_KEY *key);
int p11m_key_is_private(const P11M_KEY *key);
/* Hands key to OpenSSL's object callback by reference (store and decoder results),
 * which leads to our keymgmt's load; the callee takes its own reference if it keeps it.
 * Returns the callback's result. */
int p11m_key_pass(P11M_KEY *key, OSSL_CALLBACK *cb, void *cbarg);
/* OpenSSL's name for the type ("RSA", "RSA-PSS", "EC", "ED25519", "ED448"). */
const char *p11m_key_type_name(enum p11m_key_type type);
/* The signature algorithm name our keymgmt hands OpenSSL: unique to this provider, so
 * operations on keys that are not ours can never land here. */
const char *p11m_key_sig_name(enum p11m_key_type type);
/* Size in bytes of the largest signature the key makes. */
size_t p11m_key_max_sig(const P11M_KEY *key);

/* ---- dispatch tables (one file each; signatures one per scheme family) ---- */

extern const OSSL_DISPATCH p11m_store_functions[];
extern const OSSL_DISPATCH p11m_pem_decoder_functions[];
extern const OSSL_DISPATCH p11m_der_decoder_functions[];
extern const OSSL_DISPATCH p11m_rsa_keymgmt_functions[];
extern const OSSL_DISPATCH p11m_rsapss_keymgmt_functions[];
extern const OSSL_DISPATCH p11m_ec_keymgmt_functions[];
extern const OSSL_DISPATCH p11m_ed25519_keymgmt_functions[];
extern const OSSL_DISPATCH p11m_ed448_keymgmt_functions[];
extern const OSSL_DISPATCH p11m_rsa_signature_functions[];
extern const OSSL_DISPATCH p11m_ecdsa_signature_functions[];
extern const OSSL_DISPATCH p11m_eddsa_signature_functions[];
extern const OSSL_DISPATCH p11m_text_encoder_functions[];

#endif
