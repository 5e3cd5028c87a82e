/*
 * gnutls.c - the same client identity for GnuTLS programs (wget, git over https, apt,
 * OpenLDAP clients, gnutls-cli).
 *
 * The hooks are exported under GnuTLS's own version nodes (libp11mtls-preload.map), so
 * only programs bound to libgnutls.so.30 reach them; nothing here links GnuTLS or
 * OpenSSL. They keep a side table of client sessions (gnutls_session_get_ptr belongs to
 * the program) with the SNI the program set and the socket its handshake read, and
 * install a certificate retrieve callback (function3: TLS 1.2, TLS 1.3 and post-handshake
 * auth) on the certificate credentials of client sessions. GnuTLS calls it only when a
 * server sends a CertificateRequest; only then are libssl (RTLD_LOCAL, if the program
 * has none), the configuration and the identity loaded, and decide.c applies the same
 * rules and log lines as for OpenSSL programs. The key is the shim's own EVP_PKEY (one
 * login per process, the identity's pin_source), wrapped in a gnutls_privkey_t whose
 * sign callbacks call the p11mtls provider.
 *
 * The program keeps the last word: a retrieve callback it installed is called first and
 * what it returns is used; certificates it loaded into the credentials are handed back;
 * a legacy (version 1) retrieve function replaces the shim's; server sessions are left
 * to the program.
 */
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

#include "shim.h"

#define SHIM_EXPORT __attribute__((visibility("default")))

/* ---- the GnuTLS functions the shim calls, from the libgnutls in the process ---- */

#define GT_FUNCS(X)                                                                      \
    X(gnutls_init, "GNUTLS_3_4")                                                         \
    X(gnutls_deinit, "GNUTLS_3_4")                                                       \
    X(gnutls_server_name_set, "GNUTLS_3_4")                                              \
    X(gnutls_credentials_set, "GNUTLS_3_4")                                              \
    X(gnutls_handshake, "GNUTLS_3_4")                                                    \
    X(gnutls_reauth, "GNUTLS_3_6_3")                                                     \
    X(gnutls_certificate_set_retrieve_function, "GNUTLS_3_4")                            \
    X(gnutls_certificate_set_retrieve_function2, "GNUTLS_3_4")                           \
    X(gnutls_certificate_set_retrieve_function3, "GNUTLS_3_6_3")                         \
    X(gnutls_certificate_free_credentials, "GNUTLS_3_4")                                 \
    X(gnutls_certificate_get_x509_crt, "GNUTLS_3_4")                                     \
    X(gnutls_certificate_get_x509_key, "GNUTLS_3_4")                                     \
    X(gnutls_protocol_get_version, "GNUTLS_3_4")                                         \
    X(gnutls_protocol_get_name, "GNUTLS_3_4")                                            \
    X(gnutls_sign_get_hash_algorithm, "GNUTLS_3_4")                                      \
    X(gnutls_sign_get_pk_algorithm, "GNUTLS_3_4")                                        \
    X(gnutls_pcert_import_x509_raw, "GNUTLS_3_4")                                        \
    X(gnutls_pcert_import_x509, "GNUTLS_3_4")                                            \
    X(gnutls_pcert_deinit, "GNUTLS_3_4")                                                 \
    X(gnutls_privkey_init, "GNUTLS_3_4")                                                 \
    X(gnutls_privkey_deinit, "GNUTLS_3_4")                                               \
    X(gnutls_privkey_import_ext4, "GNUTLS_3_6_0")                                        \
    X(gnutls_privkey_import_x509, "GNUTLS_3_4")                                          \
    X(gnutls_x509_crt_deinit, "GNUTLS_3_4")                                              \
    X(gnutls_x509_privkey_deinit, "GNUTLS_3_4")

#define GT_MEMBER(name, ver) __typeof__(name) *name;
static struct {
    GT_FUNCS(GT_MEMBER)
    gnutls_alloc_function *malloc_fn; /* the variables gnutls_malloc and gnutls_free */
    gnutls_free_function *free_fn;
} gt;
#undef GT_MEMBER

static pthread_once_t gt_once = PTHREAD_ONCE_INIT;
static bool gt_ok;

/* Set while the shim works on this thread (a PKCS#11 module using TLS must not
 * re-enter the shim and wait for the identity it is loading). */
static __thread int gt_busy;

/* fork: a table lock held by another thread at fork time would never be released in
 * the child (the tables themselves stay valid: the child has the same sessions). */
static void gt_prefork(void);
static void gt_postfork(void);

static void gt_resolve(void)
{
    void *h = dlopen("libgnutls.so.30", RTLD_LAZY | RTLD_NOLOAD);
    bool ok = true;

    if (h == NULL)
        h = RTLD_NEXT;
#define GT_RESOLVE(name, ver)                                                            \
    gt.name = (__typeof__(gt.name)) dlvsym(h, #name, ver);                               \
    ok = ok && gt.name != NULL;
    GT_FUNCS(GT_RESOLVE)
#undef GT_RESOLVE
    gt.malloc_fn = dlvsym(h, "gnutls_malloc", "GNUTLS_3_4");
    gt.free_fn = dlvsym(h, "gnutls_free", "GNUTLS_3_4");
    gt_ok = ok && gt.malloc_fn != NULL && gt.free_fn != NULL;
    if (gt_ok)
        pthread_atfork(gt_prefork, gt_postfork, gt_postfork);
}

/* The real function, or NULL when libgnutls lacks one the shim needs: the hooks then
 * pass calls through and do nothing else. */
#define GT_REAL(name) (pthread_once(&gt_once, gt_resolve), gt.name)

/* ---- side tables: client sessions and the credentials they use ---- */

#define GT_BUCKETS 64

struct gt_session {
    gnutls_session_t s;
    char sni[SHIM_HOST_MAX];
    int fd; /* the socket a handshake call of this session read, or -1 */
    struct gt_session *next;
};

struct gt_cred {
    gnutls_certificate_credentials_t cred;
    gnutls_certificate_retrieve_function2 *prog2; /* the program's callback, if any */
    gnutls_certificate_retrieve_function3 *prog3;
    bool prog_legacy; /* set_retrieve_function (v1): the program decides alone */
    bool installed;   /* ours is the credentials' callback */
    struct gt_cred *next;
};

static pthread_mutex_t gt_lock = PTHREAD_MUTEX_INITIALIZER;
static struct gt_session *gt_sessions[GT_BUCKETS];
static struct gt_cred *gt_creds[GT_BUCKETS];

static size_t gt_bucket(const void *p)
{
    uintptr_t v = (uintptr_t) p;

    return (size_t) ((v >> 4) ^ (v >> 12)) % GT_BUCKETS;
}

/* Called with gt_lock held. */
static struct gt_session *gt_session_find(gnutls_session_t s)
{
    struct gt_session *e = gt_sessions[gt_bucket(s)];

    while (e != NULL && e->s != s)
        e = e->next;
    return e;
}

static struct gt_cred *gt_cred_find(gnutls_certificate_credentials_t cred, bool add)
{
    struct gt_cred **head = &gt_creds[gt_bucket(cred)], *e = *head;

    while (e != NULL && e->cred != cred)
        e = e->next;
    if (e == NULL && add && (e = calloc(1, sizeof(*e))) != NULL) {
        e->cred = cred;
        e->next = *head;
        *head = e;
    }
    return e;
}

/* ---- the shim's key, as GnuTLS sees it ---- */

static void gt_prefork(void)
{
    pthread_mutex_lock(&gt_lock);
}

static void gt_postfork(void)
{
    pthread_mutex_unlock(&gt_lock);
}

/* What one CertificateRequest gets: GnuTLS frees it (GNUTLS_CERT_RETR_DEINIT_ALL). */
struct gt_key {
    gnutls_pcert_st *pcerts; /* gnutls_malloc'd */
    unsigned npcerts;
    gnutls_privkey_t key; /* holds a reference to the identity until deinitialised */
};

static bool gt_key_is(const struct shim_identity *id, const char *type)
{
    return shim_fn.EVP_PKEY_is_a(id->key, type);
}

static int gt_key_pk(const struct shim_identity *id)
{
    if (gt_key_is(id, "RSA"))
        return GNUTLS_PK_RSA;
    if (gt_key_is(id, "EC"))
        return GNUTLS_PK_ECDSA;
    if (gt_key_is(id, "ED25519"))
        return GNUTLS_PK_EDDSA_ED25519;
    return GNUTLS_PK_UNKNOWN;
}

static const char *gt_digest_name(gnutls_digest_algorithm_t dig)
{
    switch (dig) {
    case GNUTLS_DIG_SHA1:
        return "SHA1";
    case GNUTLS_DIG_SHA224:
        return "SHA224";
    case GNUTLS_DIG_SHA256:
        return "SHA256";
    case GNUTLS_DIG_SHA384:
        return "SHA384";
    case GNUTLS_DIG_SHA512:
        return "SHA512";
    default:
        return NULL;
    }
}

/* How the provider must sign for GnuTLS's algorithm; false if the key cannot. */
struct gt_scheme {
    const char *md; /* NULL: none (EdDSA, or RSA over a prepared DigestInfo) */
    bool pss;
};

static bool gt_scheme(const struct shim_identity *id, gnutls_sign_algorithm_t algo,
                      struct gt_scheme *sc)
{
    gnutls_pk_algorithm_t pk = gt.gnutls_sign_get_pk_algorithm(algo);
    int mine = gt_key_pk(id);

    sc->md = gt_digest_name(gt.gnutls_sign_get_hash_algorithm(algo));
    sc->pss = pk == GNUTLS_PK_RSA_PSS;
    if (algo == GNUTLS_SIGN_RSA_RAW)
        return mine == GNUTLS_PK_RSA && (sc->md = NULL, true);
    if (mine == GNUTLS_PK_RSA)
        return (pk == GNUTLS_PK_RSA || pk == GNUTLS_PK_RSA_PSS) && sc->md != NULL;
    if (mine == GNUTLS_PK_ECDSA)
        return pk == GNUTLS_PK_ECDSA && sc->md != NULL;
    if (mine == GNUTLS_PK_EDDSA_ED25519)
        return pk == GNUTLS_PK_EDDSA_ED25519 && (sc->md = NULL, true);
    return false;
}

static bool gt_rsa_params(EVP_PKEY_CTX *pctx, const struct gt_scheme *sc)
{
    if (sc->pss)
        return shim_fn.EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) > 0 &&
               shim_fn.EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) > 0;
    return shim_fn.EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) > 0;
}

/* A signature buffer GnuTLS frees with gnutls_free. */
static bool gt_sig_alloc(gnutls_datum_t *sig, size_t len)
{
    if (len == 0 || len > UINT32_MAX)
        return false;
    sig->data = (*gt.malloc_fn)(len);
    sig->size = (unsigned) len;
    return sig->data != NULL;
}

static void gt_sig_free(gnutls_datum_t *sig)
{
    if (sig->data != NULL)
        (*gt.free_fn)(sig->data);
    sig->data = NULL;
    sig->size = 0;
}

/* Sign the message (TLS 1.2 and 1.3 CertificateVerify come here). */
static int gt_sign_data(gnutls_privkey_t key, gnutls_sign_algorithm_t algo,
                        void *userdata, unsigned flags, const gnutls_datum_t *data,
                        gnutls_datum_t *sig)
{
    const struct shim_identity *id = userdata;
    EVP_MD_CTX *md = NULL;
    EVP_PKEY_CTX *pctx = NULL;
    struct gt_scheme sc;
    size_t len = 0;
    int saved = errno;
    bool ok;

    (void) key, (void) flags;
    sig->data = NULL;
    if (!gt_scheme(id, algo, &sc))
        return GNUTLS_E_UNSUPPORTED_SIGNATURE_ALGORITHM;
    shim_fn.ERR_set_mark();
    ok = (md = shim_fn.EVP_MD_CTX_new()) != NULL &&
         shim_fn.EVP_DigestSignInit_ex(md, &pctx, sc.md, shim_identity_libctx(), NULL,
                                       id->key, NULL) > 0 &&
         (gt_key_pk(id) != GNUTLS_PK_RSA || gt_rsa_params(pctx, &sc)) &&
         shim_fn.EVP_DigestSign(md, NULL, &len, data->data, data->size) > 0 &&
         gt_sig_alloc(sig, len) &&
         shim_fn.EVP_DigestSign(md, sig->data, &len, data->data, data->size) > 0;
    shim_fn.EVP_MD_CTX_free(md);
    shim_fn.ERR_pop_to_mark();
    errno = saved; /* the token's file and socket calls are not the program's */
    if (!ok) {
        gt_sig_free(sig);
        return GNUTLS_E_PK_SIGN_FAILED;
    }
    sig->size = (unsigned) len;
    return 0;
}

/* Sign a prepared hash (older protocol versions, RSA over a DigestInfo). */
static int gt_sign_hash(gnutls_privkey_t key, gnutls_sign_algorithm_t algo,
                        void *userdata, unsigned flags, const gnutls_datum_t *hash,
                        gnutls_datum_t *sig)
{
    const struct shim_identity *id = userdata;
    EVP_PKEY_CTX *pctx;
    EVP_MD *md = NULL;
    struct gt_scheme sc;
    size_t len = 0;
    int saved = errno;
    bool ok;

    (void) key;
    sig->data = NULL;
    if (flags & GNUTLS_PRIVKEY_SIGN_FLAG_TLS1_RSA)
        algo = GNUTLS_SIGN_RSA_RAW;
    if (!gt_scheme(id, algo, &sc) || gt_key_pk(id) == GNUTLS_PK_EDDSA_ED25519)
        return GNUTLS_E_UNSUPPORTED_SIGNATURE_ALGORITHM;
    shim_fn.ERR_set_mark();
    pctx = shim_fn.EVP_PKEY_CTX_new_from_pkey(shim_identity_libctx(), id->key, NULL);
    ok = pctx != NULL && shim_fn.EVP_PKEY_sign_init(pctx) > 0 &&
         (gt_key_pk(id) != GNUTLS_PK_RSA || gt_rsa_params(pctx, &sc)) &&
         (sc.md == NULL ||
          ((md = shim_fn.EVP_MD_fetch(shim_identity_libctx(), sc.md, NULL)) != NULL &&
           shim_fn.EVP_PKEY_CTX_set_signature_md(pctx, md) > 0)) &&
         shim_fn.EVP_PKEY_sign(pctx, NULL, &len, hash->data, hash->size) > 0 &&
         gt_sig_alloc(sig, len) &&
         shim_fn.EVP_PKEY_sign(pctx, sig->data, &len, hash->data, hash->size) > 0;
    shim_fn.EVP_MD_free(md);
    shim_fn.EVP_PKEY_CTX_free(pctx);
    shim_fn.ERR_pop_to_mark();
    errno = saved;
    if (!ok) {
        gt_sig_free(sig);
        return GNUTLS_E_PK_SIGN_FAILED;
    }
    sig->size = (unsigned) len;
    return 0;
}

static int gt_key_info(gnutls_privkey_t key, unsigned flags, void *userdata)
{
    const struct shim_identity *id = userdata;
    struct gt_scheme sc;

    (void) key;
    if (flags & GNUTLS_PRIVKEY_INFO_HAVE_SIGN_ALGO)
        return gt_scheme(id, GNUTLS_FLAGS_TO_SIGN_ALGO(flags), &sc);
    if (flags & GNUTLS_PRIVKEY_INFO_PK_ALGO)
        return gt_key_pk(id);
    if (flags & GNUTLS_PRIVKEY_INFO_PK_ALGO_BITS)
        return shim_fn.EVP_PKEY_get_bits(id->key);
    if (flags & GNUTLS_PRIVKEY_INFO_SIGN_ALGO)
        return 0;
    return -1;
}

/* gnutls_privkey_deinit of the key: GnuTLS is done with the identity. */
static void gt_key_deinit(gnutls_privkey_t key, void *userdata)
{
    (void) key;
    shim_identity_put(userdata);
}

static void gt_key_free(struct gt_key *k)
{
    for (unsigned i = 0; i < k->npcerts; i++)
        gt.gnutls_pcert_deinit(&k->pcerts[i]);
    if (k->pcerts != NULL)
        (*gt.free_fn)(k->pcerts);
    if (k->key != NULL)
        gt.gnutls_privkey_deinit(k->key);
}

static bool gt_pcert_add(struct gt_key *k, X509 *x)
{
    unsigned char *der = NULL;
    int len = shim_fn.i2d_X509(x, &der);
    gnutls_datum_t d = {der, len > 0 ? (unsigned) len : 0};
    bool ok = len > 0 && gt.gnutls_pcert_import_x509_raw(&k->pcerts[k->npcerts], &d,
                                                         GNUTLS_X509_FMT_DER, 0) == 0;

    shim_fn.CRYPTO_free(der, __FILE__, __LINE__);
    if (ok)
        k->npcerts++;
    return ok;
}

/*
 * The identity's certificate, chain and key for one CertificateRequest. GnuTLS keeps
 * them as long as the session may need them (a signature later in the handshake, the
 * certificate it reports) and then frees them; the key's reference to the identity goes
 * with them (gt_key_deinit), so a replaced identity lives exactly that long.
 */
static bool gt_key_build(const struct shim_identity *id, struct gt_key *k)
{
    int nchain =
        id->chain != NULL ? shim_fn.OPENSSL_sk_num((OPENSSL_STACK *) id->chain) : 0;
    bool ok = nchain >= 0 &&
              (k->pcerts = (*gt.malloc_fn)(((size_t) nchain + 1) * sizeof(*k->pcerts))) !=
                  NULL &&
              gt_pcert_add(k, id->cert);

    for (int i = 0; ok && i < nchain; i++)
        ok = gt_pcert_add(k, shim_fn.OPENSSL_sk_value((OPENSSL_STACK *) id->chain, i));
    ok = ok && gt.gnutls_privkey_init(&k->key) == 0;
    if (ok) {
        shim_identity_hold(id);
        if (gt.gnutls_privkey_import_ext4(k->key, (void *) id, gt_sign_data, gt_sign_hash,
                                          NULL, gt_key_deinit, gt_key_info, 0) != 0) {
            shim_identity_put(id); /* the key has no deinit function yet */
            ok = false;
        }
    }
    if (!ok)
        gt_key_free(k);
    return ok;
}

/* ---- one CertificateRequest ---- */

struct gt_conn {
    gnutls_session_t session;
    const struct gnutls_cert_retr_st *info;
    gnutls_pcert_st **pcerts;
    unsigned *npcerts;
    gnutls_privkey_t *key;
    unsigned *flags;
    bool program_chose; /* the program's own retrieve callback returned a certificate */
};

/* Certificates the program loaded into the credentials go back to GnuTLS, as if the
 * shim's callback were not there (GnuTLS frees these copies: DEINIT_ALL). */
static bool gt_hand_back(struct gt_conn *c, gnutls_x509_crt_t *crts, unsigned ncrts)
{
    gnutls_x509_privkey_t xkey = NULL;
    gnutls_pcert_st *pc = (*gt.malloc_fn)(ncrts * sizeof(*pc));
    gnutls_privkey_t key = NULL;
    unsigned n = 0;
    bool ok = pc != NULL;

    for (; ok && n < ncrts; n++)
        ok = gt.gnutls_pcert_import_x509(&pc[n], crts[n], 0) == 0;
    if (!ok && n > 0)
        n--;
    ok =
        ok && gt.gnutls_certificate_get_x509_key(c->info->cred, 0, &xkey) == 0 &&
        gt.gnutls_privkey_init(&key) == 0 &&
        gt.gnutls_privkey_import_x509(key, xkey, GNUTLS_PRIVKEY_IMPORT_AUTO_RELEASE) == 0;
    if (!ok) {
        for (unsigned i = 0; i < n; i++)
            gt.gnutls_pcert_deinit(&pc[i]);
        if (pc != NULL)
            (*gt.free_fn)(pc);
        if (key != NULL)
            gt.gnutls_privkey_deinit(key);
        else if (xkey != NULL)
            gt.gnutls_x509_privkey_deinit(xkey);
        return false;
    }
    *c->pcerts = pc;
    *c->npcerts = ncrts;
    *c->key = key;
    *c->flags = GNUTLS_CERT_RETR_DEINIT_ALL;
    return true;
}

static const char *gt_program_owns(void *conn)
{
    struct gt_conn *c = conn;
    gnutls_x509_crt_t *crts = NULL;
    unsigned ncrts = 0;
    bool back;

    if (c->program_chose)
        return "the program's certificate callback chose the certificate";
    if (gt.gnutls_certificate_get_x509_crt(c->info->cred, 0, &crts, &ncrts) != 0)
        return NULL;
    back = ncrts > 0 && gt_hand_back(c, crts, ncrts);
    for (unsigned i = 0; i < ncrts; i++)
        gt.gnutls_x509_crt_deinit(crts[i]);
    (*gt.free_fn)(crts);
    return back ? "the program set its own certificate"
                : "the program set its own certificate (p11mtls could not hand it back "
                  "to GnuTLS: none sent)";
}

static bool gt_ca_match(void *conn, const struct shim_identity *id, char *why, size_t len)
{
    const struct gnutls_cert_retr_st *info = ((struct gt_conn *) conn)->info;
    OPENSSL_STACK *names = shim_fn.OPENSSL_sk_new_null();
    bool ok;

    if (names == NULL) {
        shim_fmt(why, len, "out of memory reading the server's acceptable CA list");
        return false;
    }
    for (unsigned i = 0; i < info->nreqs; i++) {
        const unsigned char *p = info->req_ca_rdn[i].data;
        X509_NAME *n = shim_fn.d2i_X509_NAME(NULL, &p, info->req_ca_rdn[i].size);

        if (n != NULL && shim_fn.OPENSSL_sk_push(names, n) <= 0)
            shim_fn.X509_NAME_free(n);
    }
    ok = shim_identity_ca_listed(id, (STACK_OF(X509_NAME) *) names, why, len);
    shim_fn.OPENSSL_sk_pop_free(names, (void (*)(void *)) shim_fn.X509_NAME_free);
    return ok;
}

static bool gt_present(void *conn, const struct shim_identity *id, char *why, size_t len)
{
    struct gt_conn *c = conn;
    const struct gnutls_cert_retr_st *info = c->info;
    int pk = gt_key_pk(id);
    bool accepted = info->pk_algos_length == 0;
    struct gt_key k = {NULL, 0, NULL};

    /* TLS 1.2 servers name the key types they accept; RSA-PSS accepts RSA keys */
    for (unsigned i = 0; i < info->pk_algos_length && !accepted; i++)
        accepted = (int) info->pk_algos[i] == pk ||
                   (pk == GNUTLS_PK_RSA && info->pk_algos[i] == GNUTLS_PK_RSA_PSS);
    if (!accepted) {
        shim_fmt(why, len, "the server accepts no %s keys",
                 pk == GNUTLS_PK_RSA     ? "RSA"
                 : pk == GNUTLS_PK_ECDSA ? "EC"
                                         : "such");
        return false;
    }
    if (!gt_key_build(id, &k)) {
        shim_fmt(why, len, "GnuTLS refused the key and certificate");
        return false;
    }
    *c->pcerts = k.pcerts;
    *c->npcerts = k.npcerts;
    *c->key = k.key;
    *c->flags = GNUTLS_CERT_RETR_DEINIT_ALL;
    return true;
}

static const char *gt_tls_name(gnutls_session_t s)
{
    switch (gt.gnutls_protocol_get_version(s)) {
    case GNUTLS_TLS1_0:
        return "TLSv1";
    case GNUTLS_TLS1_1:
        return "TLSv1.1";
    case GNUTLS_TLS1_2:
        return "TLSv1.2";
    case GNUTLS_TLS1_3:
        return "TLSv1.3";
    default: {
        const char *n = gt.gnutls_protocol_get_name(gt.gnutls_protocol_get_version(s));

        return n != NULL ? n : "TLS";
    }
    }
}

/* The configuration, with OpenSSL loaded for it; NULL when the shim stays out. A
 * program that uses libssl too finds its error queue as it was (a file that does not
 * parse leaves errors there). */
static const struct shim_conf *gt_conf(void)
{
    const struct shim_conf *c;

    if (!shim_ossl_load())
        return NULL;
    shim_fn.ERR_set_mark();
    c = shim_conf_get();
    shim_fn.ERR_pop_to_mark();
    return c != NULL && (c->enabled || c->abort_all) ? c : NULL;
}

/* Fail-closed mode (a broken configuration and on_config_error = abort). */
static bool gt_fail_closed(void)
{
    const struct shim_conf *c = gt_conf();

    return c != NULL && c->abort_all;
}

/* Decide for a client session; a negative GnuTLS error aborts the handshake. */
static int gt_decide(struct gt_conn *conn, const struct gt_session *copy,
                     const struct shim_conf *c)
{
    struct shim_request rq = {
        .conn = conn,
        .program_owns = gt_program_owns,
        .ca_match = gt_ca_match,
        .present = gt_present,
    };
    int fd, rc;

    rq.tls = gt_tls_name(conn->session);
    rq.tls13 = gt.gnutls_protocol_get_version(conn->session) == GNUTLS_TLS1_3;
    memset(&rq.dest, 0, sizeof(rq.dest));
    rq.dest.port = -1;
    if (copy->sni[0] != '\0')
        shim_dest_set_name(&rq.dest, copy->sni, "sni");
    fd = shim_io_fd(conn->session);
    shim_dest_from_fd(fd >= 0 ? fd : copy->fd, &rq.dest);
    shim_fn.ERR_set_mark();
    rc = shim_decide_request(&rq, c);
    shim_fn.ERR_pop_to_mark();
    return rc ? 0 : GNUTLS_E_CERTIFICATE_ERROR;
}

static int gt_retrieve(gnutls_session_t session, const struct gnutls_cert_retr_st *info,
                       gnutls_pcert_st **pcerts, unsigned *npcerts,
                       gnutls_ocsp_data_st **ocsp, unsigned *nocsp, gnutls_privkey_t *key,
                       unsigned *flags)
{
    gnutls_certificate_retrieve_function2 *prog2 = NULL;
    gnutls_certificate_retrieve_function3 *prog3 = NULL;
    struct gt_conn conn = {session, info, pcerts, npcerts, key, flags};
    struct gt_session copy = {.fd = -1};
    const struct shim_conf *c = NULL;
    const struct gt_cred *cr;
    const struct gt_session *e;
    bool client;
    int rc = 0, saved = errno;

    shim_io_freeze();
    *pcerts = NULL;
    *npcerts = 0;
    *key = NULL;
    *flags = 0;
    if (ocsp != NULL)
        *ocsp = NULL;
    if (nocsp != NULL)
        *nocsp = 0;
    pthread_mutex_lock(&gt_lock);
    if ((cr = gt_cred_find(info->cred, false)) != NULL) {
        prog2 = cr->prog2;
        prog3 = cr->prog3;
    }
    e = gt_session_find(session);
    client = e != NULL;
    if (client)
        copy = *e;
    pthread_mutex_unlock(&gt_lock);

    /* Fail-closed mode refuses every client handshake that reaches a CertificateRequest,
     * whatever the program would send (as for OpenSSL programs): nothing is asked of
     * its callback, so nothing it returns needs freeing. */
    if (client && !gt_busy) {
        c = gt_conf();
        errno = saved;
        if (c != NULL && c->abort_all) {
            shim_decide_fail_closed();
            errno = saved;
            return GNUTLS_E_CERTIFICATE_ERROR;
        }
    }
    /* The program's own callback comes first; what it returns is what is sent. */
    if (prog3 != NULL)
        rc = prog3(session, info, pcerts, npcerts, ocsp, nocsp, key, flags);
    else if (prog2 != NULL)
        rc = prog2(session, info->req_ca_rdn, (int) info->nreqs, info->pk_algos,
                   (int) info->pk_algos_length, pcerts, npcerts, key);
    saved = errno; /* the program's, from here on */
    if (rc < 0)
        return rc;
    /* A server sharing the credentials, no configuration (or no OpenSSL to read it) or
     * the shim's own work: as without the shim, the program's loaded certificates too */
    if (!client || c == NULL || gt_busy) {
        if (prog2 == NULL && prog3 == NULL)
            gt_program_owns(&conn);
        errno = saved;
        return rc;
    }
    conn.program_chose = *npcerts > 0;
    gt_busy = 1;
    /* the decision is logged even when the program chose: its result is kept */
    if (gt_decide(&conn, &copy, c) < 0 && !conn.program_chose)
        rc = GNUTLS_E_CERTIFICATE_ERROR;
    gt_busy = 0;
    errno = saved;
    return rc;
}

/* Called with gt_lock held: make the shim's callback the credentials' one. */
static void gt_cred_install(struct gt_cred *cr)
{
    gnutls_x509_crt_t *crts = NULL;
    unsigned ncrts = 0;

    if (cr->installed || cr->prog_legacy)
        return;
    /* Certificates already loaded: the program chose; GnuTLS keeps selecting them. */
    if (cr->prog2 == NULL && cr->prog3 == NULL &&
        gt.gnutls_certificate_get_x509_crt(cr->cred, 0, &crts, &ncrts) == 0) {
        for (unsigned i = 0; i < ncrts; i++)
            gt.gnutls_x509_crt_deinit(crts[i]);
        (*gt.free_fn)(crts);
        cr->prog_legacy = true;
        return;
    }
    gt.gnutls_certificate_set_retrieve_function3(cr->cred, gt_retrieve);
    cr->installed = true;
}

/* Fail-closed mode: the shim's callback on credentials the program filled itself, so
 * that the CertificateRequest fails (the mode lasts for the life of the process). */
static void gt_cred_refuse(gnutls_certificate_credentials_t cred)
{
    struct gt_cred *cr;

    pthread_mutex_lock(&gt_lock);
    if ((cr = gt_cred_find(cred, false)) != NULL && !cr->installed) {
        gt.gnutls_certificate_set_retrieve_function3(cred, gt_retrieve);
        cr->installed = true;
        cr->prog_legacy = false;
    }
    pthread_mutex_unlock(&gt_lock);
}

/* ---- exported hooks ---- */

SHIM_EXPORT int gnutls_init(gnutls_session_t *session, unsigned int flags)
{
    __typeof__(gnutls_init) *real = GT_REAL(gnutls_init);
    struct gt_session *e;
    int rc;

    if (real == NULL)
        return GNUTLS_E_INTERNAL_ERROR;
    rc = real(session, flags);
    if (rc != 0 || !gt_ok || !(flags & GNUTLS_CLIENT) ||
        (e = calloc(1, sizeof(*e))) == NULL)
        return rc;
    e->s = *session;
    e->fd = -1;
    pthread_mutex_lock(&gt_lock);
    e->next = gt_sessions[gt_bucket(e->s)];
    gt_sessions[gt_bucket(e->s)] = e;
    pthread_mutex_unlock(&gt_lock);
    return rc;
}

SHIM_EXPORT void gnutls_deinit(gnutls_session_t session)
{
    __typeof__(gnutls_deinit) *real = GT_REAL(gnutls_deinit);
    struct gt_session **p, *gone = NULL;

    pthread_mutex_lock(&gt_lock);
    for (p = &gt_sessions[gt_bucket(session)]; *p != NULL; p = &(*p)->next)
        if ((*p)->s == session) {
            gone = *p;
            *p = gone->next;
            break;
        }
    pthread_mutex_unlock(&gt_lock);
    free(gone);
    if (real != NULL)
        real(session);
}

SHIM_EXPORT int gnutls_server_name_set(gnutls_session_t session,
                                       gnutls_server_name_type_t type, const void *name,
                                       size_t name_length)
{
    __typeof__(gnutls_server_name_set) *real = GT_REAL(gnutls_server_name_set);
    struct gt_session *e;
    int rc;

    if (real == NULL)
        return GNUTLS_E_INTERNAL_ERROR;
    rc = real(session, type, name, name_length);
    if (rc != 0 || type != GNUTLS_NAME_DNS || name == NULL)
        return rc;
    pthread_mutex_lock(&gt_lock);
    e = gt_session_find(session);
    if (e != NULL) {
        /* too long for a host name: not a destination the rules can name */
        size_t n = name_length < sizeof(e->sni) ? name_length : 0;

        memcpy(e->sni, name, n);
        e->sni[n] = '\0';
        if (memchr(e->sni, '\0', n) != NULL)
            e->sni[0] = '\0';
    }
    pthread_mutex_unlock(&gt_lock);
    return rc;
}

SHIM_EXPORT int gnutls_credentials_set(gnutls_session_t session,
                                       gnutls_credentials_type_t type, void *cred)
{
    __typeof__(gnutls_credentials_set) *real = GT_REAL(gnutls_credentials_set);
    bool program_alone = false;
    struct gt_cred *cr;
    int rc, saved;

    if (real == NULL)
        return GNUTLS_E_INTERNAL_ERROR;
    rc = real(session, type, cred);
    if (rc != 0 || type != GNUTLS_CRD_CERTIFICATE || cred == NULL || !gt_ok)
        return rc;
    pthread_mutex_lock(&gt_lock);
    if (gt_session_find(session) != NULL && (cr = gt_cred_find(cred, true)) != NULL) {
        gt_cred_install(cr);
        program_alone = cr->prog_legacy;
    }
    pthread_mutex_unlock(&gt_lock);
    /* Credentials the program filled itself are left to GnuTLS, unless fail-closed mode
     * must refuse them too: only for these is the configuration read this early. */
    saved = errno;
    if (program_alone && !gt_busy && gt_fail_closed())
        gt_cred_refuse(cred);
    errno = saved;
    return rc;
}

SHIM_EXPORT void
gnutls_certificate_set_retrieve_function(gnutls_certificate_credentials_t cred,
                                         gnutls_certificate_retrieve_function *func)
{
    __typeof__(gnutls_certificate_set_retrieve_function) *real =
        GT_REAL(gnutls_certificate_set_retrieve_function);
    struct gt_cred *cr;

    if (real == NULL)
        return;
    pthread_mutex_lock(&gt_lock);
    /* GnuTLS replaces the shim's callback with it: the program decides alone */
    if (gt_ok && (cr = gt_cred_find(cred, true)) != NULL) {
        cr->prog_legacy = func != NULL;
        cr->installed = false;
    }
    real(cred, func);
    pthread_mutex_unlock(&gt_lock);
}

/* Record the program's callback; keep the shim's installed if it was. */
static void gt_set_prog(gnutls_certificate_credentials_t cred,
                        gnutls_certificate_retrieve_function2 *f2,
                        gnutls_certificate_retrieve_function3 *f3)
{
    struct gt_cred *cr;

    pthread_mutex_lock(&gt_lock);
    if (f2 != NULL)
        gt.gnutls_certificate_set_retrieve_function2(cred, f2);
    else
        gt.gnutls_certificate_set_retrieve_function3(cred, f3);
    if (gt_ok && (cr = gt_cred_find(cred, true)) != NULL) {
        cr->prog2 = f2;
        cr->prog3 = f3;
        cr->prog_legacy = false;
        if (cr->installed)
            gt.gnutls_certificate_set_retrieve_function3(cred, gt_retrieve);
    }
    pthread_mutex_unlock(&gt_lock);
}

SHIM_EXPORT void
gnutls_certificate_set_retrieve_function2(gnutls_certificate_credentials_t cred,
                                          gnutls_certificate_retrieve_function2 *func)
{
    if (GT_REAL(gnutls_certificate_set_retrieve_function2) != NULL)
        gt_set_prog(cred, func, NULL);
}

SHIM_EXPORT void
gnutls_certificate_set_retrieve_function3(gnutls_certificate_credentials_t cred,
                                          gnutls_certificate_retrieve_function3 *func)
{
    if (GT_REAL(gnutls_certificate_set_retrieve_function3) != NULL)
        gt_set_prog(cred, NULL, func);
}

SHIM_EXPORT void
gnutls_certificate_free_credentials(gnutls_certificate_credentials_t cred)
{
    __typeof__(gnutls_certificate_free_credentials) *real =
        GT_REAL(gnutls_certificate_free_credentials);
    struct gt_cred **p, *gone = NULL;

    pthread_mutex_lock(&gt_lock);
    for (p = &gt_creds[gt_bucket(cred)]; *p != NULL; p = &(*p)->next)
        if ((*p)->cred == cred) {
            gone = *p;
            *p = gone->next;
            break;
        }
    pthread_mutex_unlock(&gt_lock);
    free(gone);
    if (real != NULL)
        real(cred);
}

/* After a handshake call: remember the socket it read, for a later gnutls_reauth
 * (the post-handshake CertificateRequest was read by gnutls_record_recv). */
static void gt_note_fd(gnutls_session_t session, int fd)
{
    struct gt_session *e;

    if (fd < 0)
        return;
    pthread_mutex_lock(&gt_lock);
    if ((e = gt_session_find(session)) != NULL)
        e->fd = fd;
    pthread_mutex_unlock(&gt_lock);
}

SHIM_EXPORT int gnutls_handshake(gnutls_session_t session)
{
    __typeof__(gnutls_handshake) *real = GT_REAL(gnutls_handshake);
    struct shim_io io;
    int rc, saved;

    if (real == NULL)
        return GNUTLS_E_INTERNAL_ERROR;
    shim_io_begin(&io, session);
    rc = real(session);
    shim_io_end(&io);
    saved = errno;
    gt_note_fd(session, io.fd);
    errno = saved;
    return rc;
}

SHIM_EXPORT int gnutls_reauth(gnutls_session_t session, unsigned int flags)
{
    __typeof__(gnutls_reauth) *real = GT_REAL(gnutls_reauth);
    struct shim_io io;
    int rc, saved;

    if (real == NULL)
        return GNUTLS_E_INTERNAL_ERROR;
    shim_io_begin(&io, session);
    rc = real(session, flags);
    shim_io_end(&io);
    saved = errno;
    gt_note_fd(session, io.fd);
    errno = saved;
    return rc;
}
