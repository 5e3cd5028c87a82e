/*
 * identity.c - load identities into a private library context and cache them.
 *
 * The provider is loaded into the shim's own OSSL_LIB_CTX, never into the program's
 * default one: loading there would switch off OpenSSL's fallback to the default provider,
 * and loading by path would create a second instance beside one the program configured.
 * Its parameters come from a providers-only configuration built in code and applied to
 * that library context alone. Neither the library context nor the provider is ever
 * freed: PKCS#11 modules (SoftHSM) crash when finalised during exit, and OpenSSL has
 * already cleaned up by the time a destructor could run.
 *
 * Keys, certificates and chains are loaded with OSSL_STORE, from pkcs11: URIs or files,
 * on the first handshake that needs them. The loading thread holds no lock while it talks
 * to the token; others wait on a condition.
 *
 * A renewal puts a new certificate on the token under the same URI (the provider's store
 * hands out the valid one with the latest notAfter first), so a loaded identity is read
 * again every reload_interval seconds (default 60, 0: never), and at once when its
 * certificate is not valid or ends within IDENTITY_END_MARGIN seconds. One handshake
 * does that while the others go on with the identity they have; a new one replaces it
 * only when its certificate differs.
 *
 * Identities are reference counted: the slot holds one for its current identity, each
 * shim_identity_get() caller one until its shim_identity_put(). A replaced identity is
 * freed when the last handshake that got it lets go (libssl keeps its own references to
 * the key and certificates it was given; the GnuTLS side holds the identity itself while
 * GnuTLS keeps its key). Certificates the shim loaded carry a mark (X509 ex_data), so
 * that one still installed on a connection is recognised after its identity is gone.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "p11m_util.h"
#include "shim.h"

/* A failed load is retried after this long, so a token inserted later is found. */
#define IDENTITY_RETRY_SECONDS 30
#define STORE_MAX_OBJECTS      256
/*
 * A certificate that ends this soon is read again (at most once a second) so that a
 * renewed one takes over before it ends: a handshake begun with it must not reach the
 * server after it expired.
 */
#define IDENTITY_END_MARGIN 10

enum slot_state { SLOT_IDLE, SLOT_LOADING, SLOT_READY, SLOT_FAILED };

struct id_slot {
    pthread_mutex_t lock;
    pthread_cond_t done;
    enum slot_state state;
    time_t failed_at;
    char why[512];
    struct shim_identity *id; /* READY: the current one (the slot holds a reference) */
    time_t loaded_at;         /* when id was loaded or last checked */
    bool reloading;           /* a thread is reading it again */
    bool inherited;           /* READY from before a fork: not yet tried here */
};

static pthread_once_t identity_once = PTHREAD_ONCE_INIT;
static struct id_slot *slots;
static size_t nslots;
static OSSL_LIB_CTX *identity_libctx;
static int identity_mark_idx = -1; /* X509 ex_data index of the shim's mark */
static char identity_mark;         /* its value: the address is what counts */
static size_t identity_live;       /* identities loaded and not freed yet (debug log) */

static pthread_once_t provider_once = PTHREAD_ONCE_INIT;
static const struct shim_conf *provider_conf;
static bool provider_ok;
static char provider_why[256];

/* ---- fork: a load in progress in another thread does not exist in the child ---- */

static void identity_prefork(void)
{
    for (size_t i = 0; i < nslots; i++)
        pthread_mutex_lock(&slots[i].lock);
}

static void identity_postfork_parent(void)
{
    for (size_t i = 0; i < nslots; i++)
        pthread_mutex_unlock(&slots[i].lock);
}

static void identity_postfork_child(void)
{
    for (size_t i = 0; i < nslots; i++) {
        if (slots[i].state == SLOT_LOADING)
            slots[i].state = SLOT_IDLE;
        slots[i].reloading = false;
        slots[i].inherited = slots[i].state == SLOT_READY;
        pthread_cond_init(&slots[i].done, NULL);
        pthread_mutex_unlock(&slots[i].lock);
    }
}

/* ---- library context and provider ---- */

static const struct shim_conf *identity_conf; /* the first caller's, for identity_init */
static shim_libctx_prepare_fn *identity_prepare;

void shim_identity_prepare(shim_libctx_prepare_fn *fn)
{
    identity_prepare = fn;
}

static void identity_init(void)
{
    const struct shim_conf *c = __atomic_load_n(&identity_conf, __ATOMIC_RELAXED);
    OSSL_LIB_CTX *lc;

    if (c == NULL || c->nids == 0)
        return;
    slots = calloc(c->nids, sizeof(*slots));
    lc = shim_fn.OSSL_LIB_CTX_new();
    if (slots == NULL || lc == NULL)
        return;
    /* default: file keys, PEM decoding, certificate checks */
    if (shim_fn.OSSL_PROVIDER_load(lc, "default") == NULL) {
        shim_log(SHIM_ERROR, "cannot load OpenSSL's default provider into the private "
                             "library context");
        return;
    }
    if (identity_prepare != NULL && !identity_prepare(lc)) {
        shim_log(SHIM_ERROR, "cannot prepare the private library context");
        return;
    }
    __atomic_store_n(
        &identity_mark_idx,
        shim_fn.CRYPTO_get_ex_new_index(CRYPTO_EX_INDEX_X509, 0, NULL, NULL, NULL, NULL),
        __ATOMIC_RELEASE);
    for (size_t i = 0; i < c->nids; i++) {
        pthread_mutex_init(&slots[i].lock, NULL);
        pthread_cond_init(&slots[i].done, NULL);
    }
    nslots = c->nids;
    pthread_atfork(identity_prefork, identity_postfork_parent, identity_postfork_child);
    identity_libctx = lc;
}

/* key = "value", quoted so paths with '#', '$' or spaces survive NCONF. */
static size_t provider_put(char *buf, size_t len, size_t at, const char *key,
                           const char *value)
{
    int n = snprintf(buf + at, at < len ? len - at : 0, "%s = \"", key);

    at += n > 0 ? (size_t) n : 0;
    for (; *value != '\0'; value++) {
        if (*value == '"' || *value == '\\') {
            if (at < len)
                buf[at] = '\\';
            at++;
        }
        if (at < len)
            buf[at] = *value;
        at++;
    }
    n = snprintf(buf + (at < len ? at : len), at < len ? len - at : 0, "\"\n");
    return at + (n > 0 ? (size_t) n : 0);
}

/* The providers-only configuration, as text; NULL if out of memory. */
static char *provider_conf_text(const struct shim_conf *c)
{
    static const char head[] = "openssl_conf = p11m_init\n"
                               "[p11m_init]\nproviders = p11m_providers\n"
                               "[p11m_providers]\np11mtls = p11m_provider\n"
                               "[p11m_provider]\n";
    size_t len = sizeof(head) + 64 + 2 * strlen(c->provider);
    char *text;
    size_t at;

    for (size_t i = 0; i < c->nparams; i++)
        len += 8 + strlen(c->params[i].name) + 2 * strlen(c->params[i].value);
    text = malloc(len);
    if (text == NULL)
        return NULL;
    at = (size_t) snprintf(text, len, "%s", head);
    at = provider_put(text, len, at, "module", c->provider);
    for (size_t i = 0; i < c->nparams; i++)
        at = provider_put(text, len, at, c->params[i].name, c->params[i].value);
    snprintf(text + at, len - at, "activate = 1\n");
    return text;
}

/* CONF_modules_load needs the built-in "providers" module, which a program that
 * skipped OpenSSL's config loading has not registered yet. */
static bool provider_apply(CONF *cnf)
{
    if (shim_fn.CONF_modules_load(cnf, NULL, 0) > 0)
        return true;
    shim_fn.OPENSSL_load_builtin_modules();
    return shim_fn.CONF_modules_load(cnf, NULL, 0) > 0;
}

static void provider_load(void)
{
    const struct shim_conf *c = provider_conf;
    char *text = provider_conf_text(c);
    CONF *cnf = shim_fn.NCONF_new_ex(identity_libctx, NULL);
    BIO *bio = text != NULL ? shim_fn.BIO_new_mem_buf(text, -1) : NULL;
    long eline = -1;

    if (cnf != NULL && bio != NULL && shim_fn.NCONF_load_bio(cnf, bio, &eline) > 0 &&
        provider_apply(cnf) &&
        shim_fn.OSSL_PROVIDER_available(identity_libctx, "p11mtls")) {
        provider_ok = true;
        shim_log(SHIM_DEBUG, "provider %s loaded into the private library context",
                 c->provider);
    } else {
        shim_ossl_error_text(provider_why, sizeof(provider_why), true);
        if (provider_why[0] == '\0')
            shim_fmt(provider_why, sizeof(provider_why), "not loadable");
        shim_log(SHIM_ERROR, "provider %s: %s", c->provider, provider_why);
    }
    shim_fn.BIO_free(bio);
    shim_fn.NCONF_free(cnf);
    free(text);
}

static bool identity_provider(const struct shim_conf *c, char *why, size_t len)
{
    provider_conf = c;
    pthread_once(&provider_once, provider_load);
    if (!provider_ok)
        shim_fmt(why, len, "provider %s unavailable: %s", c->provider, provider_why);
    return provider_ok;
}

static bool identity_is_uri(const char *s)
{
    return s != NULL && strncmp(s, "pkcs11:", 7) == 0;
}

/* ---- OSSL_STORE ---- */

/* Visit the objects of type at uri until want() keeps one (returns true). */
static bool store_each(const char *uri, const struct shim_identity_conf *ic, int type,
                       bool (*want)(OSSL_STORE_INFO *info, void *arg), void *arg)
{
    UI_METHOD *ui = shim_pin_ui_method();
    OSSL_STORE_CTX *sc;
    bool kept = false;

    if (ui == NULL) /* never let OpenSSL fall back to its prompting UI */
        return false;
    sc = shim_fn.OSSL_STORE_open_ex(uri, identity_libctx, NULL, ui, (void *) ic, NULL,
                                    NULL, NULL);
    if (sc == NULL)
        return false;
    shim_fn.OSSL_STORE_expect(sc, type);
    for (int n = 0; !kept && n < STORE_MAX_OBJECTS && !shim_fn.OSSL_STORE_eof(sc); n++) {
        OSSL_STORE_INFO *info = shim_fn.OSSL_STORE_load(sc);

        if (info == NULL)
            continue;
        if (shim_fn.OSSL_STORE_INFO_get_type(info) == type)
            kept = want(info, arg);
        shim_fn.OSSL_STORE_INFO_free(info);
    }
    shim_fn.OSSL_STORE_close(sc);
    return kept;
}

static bool store_want_key(OSSL_STORE_INFO *info, void *arg)
{
    *(EVP_PKEY **) arg = shim_fn.OSSL_STORE_INFO_get1_PKEY(info);
    return *(EVP_PKEY **) arg != NULL;
}

static bool store_want_cert(OSSL_STORE_INFO *info, void *arg)
{
    *(X509 **) arg = shim_fn.OSSL_STORE_INFO_get1_CERT(info);
    return *(X509 **) arg != NULL;
}

/* Collects every certificate: returns false to keep going. */
static bool store_want_chain(OSSL_STORE_INFO *info, void *arg)
{
    X509 *x = shim_fn.OSSL_STORE_INFO_get1_CERT(info);

    if (x != NULL && shim_fn.OPENSSL_sk_push(arg, x) <= 0)
        shim_fn.X509_free(x);
    return false;
}

/* ---- loading one identity ---- */

static void identity_fail(char *why, size_t len, const char *what, const char *where)
{
    char err[384], shown[256];

    /* A PIN source the shim refused says more than OpenSSL's "bad decrypt". */
    if (shim_pin_error()[0] != '\0')
        shim_fmt(err, sizeof(err), "%s", shim_pin_error());
    else
        shim_ossl_error_text(err, sizeof(err), true);
    p11m_redact(where, shown, sizeof(shown));
    shim_fmt(why, len, "%s %s%s%s", what, shown, err[0] ? ": " : "", err);
}

/*
 * Sign once now: the provider logs in lazily, so a wrong PIN or a missing token would
 * otherwise surface in the middle of the handshake, after the certificate was sent.
 */
static bool identity_probe(EVP_PKEY *key, char *why, size_t len)
{
    static const unsigned char tbs[] = "p11mtls shim probe";
    bool raw =
        shim_fn.EVP_PKEY_is_a(key, "ED25519") || shim_fn.EVP_PKEY_is_a(key, "ED448");
    EVP_MD_CTX *md = shim_fn.EVP_MD_CTX_new();
    unsigned char sig[1024];
    size_t siglen = sizeof(sig);
    bool ok = md != NULL &&
              shim_fn.EVP_DigestSignInit_ex(md, NULL, raw ? NULL : "SHA256",
                                            identity_libctx, NULL, key, NULL) > 0 &&
              shim_fn.EVP_DigestSign(md, sig, &siglen, tbs, sizeof(tbs)) > 0;

    shim_fn.EVP_MD_CTX_free(md);
    if (!ok) {
        char err[384];

        shim_ossl_error_text(err, sizeof(err), true);
        shim_fmt(why, len, "test signature failed%s%s", err[0] ? ": " : "", err);
    }
    return ok;
}

static void identity_describe(struct shim_identity *id)
{
    const ASN1_INTEGER *serial = shim_fn.X509_get0_serialNumber(id->cert);
    BIGNUM *bn = serial != NULL ? shim_fn.ASN1_INTEGER_to_BN(serial, NULL) : NULL;
    char *hex = bn != NULL ? shim_fn.BN_bn2hex(bn) : NULL;

    shim_fn.X509_NAME_oneline(shim_fn.X509_get_subject_name(id->cert), id->subject,
                              sizeof(id->subject));
    shim_fmt(id->serial, sizeof(id->serial), "%s", hex != NULL ? hex : "?");
    shim_fn.CRYPTO_free(hex, __FILE__, __LINE__);
    shim_fn.BN_free(bn);
}

static void identity_release(struct shim_identity *id)
{
    shim_fn.EVP_PKEY_free(id->key);
    shim_fn.X509_free(id->cert);
    if (id->chain != NULL)
        shim_fn.OPENSSL_sk_pop_free((OPENSSL_STACK *) id->chain,
                                    (void (*)(void *)) shim_fn.X509_free);
    id->key = NULL;
    id->cert = NULL;
    id->chain = NULL;
}

static struct shim_identity *identity_new(void)
{
    struct shim_identity *id = calloc(1, sizeof(*id));

    if (id != NULL) {
        id->refs = 1;
        __atomic_add_fetch(&identity_live, 1, __ATOMIC_RELAXED);
    }
    return id;
}

/* An identity nobody holds any more (or one never handed out). */
static void identity_free(struct shim_identity *id)
{
    if (id == NULL)
        return;
    __atomic_sub_fetch(&identity_live, 1, __ATOMIC_RELAXED);
    identity_release(id);
    free(id);
}

void shim_identity_hold(const struct shim_identity *id)
{
    __atomic_add_fetch(&((struct shim_identity *) id)->refs, 1, __ATOMIC_RELAXED);
}

void shim_identity_put(const struct shim_identity *id)
{
    struct shim_identity *mid = (struct shim_identity *) id;
    char serial[sizeof(mid->serial)];

    if (mid == NULL || __atomic_sub_fetch(&mid->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    memcpy(serial, mid->serial, sizeof(serial));
    identity_free(mid);
    shim_log(SHIM_DEBUG, "replaced identity serial %s freed (%zu identities loaded)",
             serial, __atomic_load_n(&identity_live, __ATOMIC_RELAXED));
}

/* Marks the certificate as the shim's (shim_identity_owns). */
static bool identity_mark_cert(struct shim_identity *id, char *why, size_t len)
{
    int idx = __atomic_load_n(&identity_mark_idx, __ATOMIC_ACQUIRE);

    if (idx >= 0 && shim_fn.X509_set_ex_data(id->cert, idx, &identity_mark) == 1)
        return true;
    shim_fmt(why, len, "cannot mark the certificate as the shim's (out of memory)");
    return false;
}

static bool identity_load_objects(const struct shim_identity_conf *ic,
                                  struct shim_identity *id, char *why, size_t len)
{
    char *key_uri = shim_pin_uri(ic->key, ic->pin_source);
    bool ok;

    shim_pin_error_clear();
    ok = key_uri != NULL &&
         store_each(key_uri, ic, OSSL_STORE_INFO_PKEY, store_want_key, &id->key);

    free(key_uri);
    if (!ok) {
        identity_fail(why, len, "no private key at", ic->key);
        return false;
    }
    if (!store_each(ic->cert, ic, OSSL_STORE_INFO_CERT, store_want_cert, &id->cert)) {
        identity_fail(why, len, "no certificate at", ic->cert);
        return false;
    }
    if (ic->chain == NULL)
        return true;
    id->chain = (STACK_OF(X509) *) shim_fn.OPENSSL_sk_new_null();
    store_each(ic->chain, ic, OSSL_STORE_INFO_CERT, store_want_chain, id->chain);
    if (id->chain == NULL || shim_fn.OPENSSL_sk_num((OPENSSL_STACK *) id->chain) <= 0) {
        identity_fail(why, len, "no certificates in chain file", ic->chain);
        return false;
    }
    return true;
}

static bool identity_load(const struct shim_conf *c, size_t idx, struct shim_identity *id,
                          char *why, size_t len)
{
    const struct shim_identity_conf *ic = &c->ids[idx];
    bool ok;

    if ((identity_is_uri(ic->key) || identity_is_uri(ic->cert) ||
         identity_is_uri(ic->chain)) &&
        !identity_provider(c, why, len))
        return false;
    ok = identity_load_objects(ic, id, why, len) && identity_probe(id->key, why, len) &&
         identity_mark_cert(id, why, len);
    if (!ok) {
        identity_release(id);
        return false;
    }
    identity_describe(id);
    shim_log(SHIM_DEBUG,
             "identity %s loaded: subject=\"%s\" serial=%s (%zu identities loaded)",
             ic->name, id->subject, id->serial,
             __atomic_load_n(&identity_live, __ATOMIC_RELAXED));
    return true;
}

/* ---- the cache ---- */

/* Called with the slot locked; returns with it locked. */
static void identity_fill(struct id_slot *s, const struct shim_conf *c, size_t idx)
{
    struct shim_identity *id = identity_new();
    char why[sizeof(s->why)] = "out of memory";
    bool ok;

    s->state = SLOT_LOADING;
    pthread_mutex_unlock(&s->lock);
    ok = id != NULL && identity_load(c, idx, id, why, sizeof(why));
    pthread_mutex_lock(&s->lock);
    if (s->state !=
        SLOT_LOADING) { /* a fork reset the slot meanwhile: not ours to fill */
        identity_free(id);
        return;
    }
    if (ok) {
        s->loaded_at = time(NULL);
        s->id = id;
        s->state = SLOT_READY;
    } else {
        identity_free(id);
        shim_fmt(s->why, sizeof(s->why), "%s", why);
        s->failed_at = time(NULL);
        s->state = SLOT_FAILED;
    }
    pthread_cond_broadcast(&s->done);
}

/* Whether the ready identity of s is due to be read again. */
static bool identity_due(const struct id_slot *s, const struct shim_conf *c, time_t now)
{
    time_t soon = now + IDENTITY_END_MARGIN;
    char why[64];

    if (s->reloading || now == s->loaded_at)
        return false;
    if (c->reload_interval > 0 && now - s->loaded_at >= c->reload_interval)
        return true;
    return !shim_identity_valid_now(s->id, why, sizeof(why)) ||
           shim_fn.X509_cmp_time(shim_fn.X509_get0_notAfter(s->id->cert), &soon) <= 0;
}

/*
 * Reads the identity again; called with the slot locked, returns with it locked. The
 * identity it replaced, if any, is returned for the caller to put once it has unlocked.
 */
static struct shim_identity *identity_reload(struct id_slot *s, const struct shim_conf *c,
                                             size_t idx)
{
    struct shim_identity *id = identity_new(), *old = NULL;
    char why[512] = "out of memory";
    bool ok;

    s->reloading = true;
    pthread_mutex_unlock(&s->lock);
    ok = id != NULL && identity_load(c, idx, id, why, sizeof(why));
    pthread_mutex_lock(&s->lock);
    s->reloading = false;
    s->loaded_at = time(NULL);
    if (ok && s->state == SLOT_READY &&
        (strcmp(id->serial, s->id->serial) != 0 ||
         strcmp(id->subject, s->id->subject) != 0)) {
        old = s->id;
        shim_log(SHIM_INFO, "identity %s reloaded: serial %s replaces %s",
                 c->ids[idx].name, id->serial, old->serial);
        s->id = id;
        return old;
    }
    if (!ok)
        shim_log(SHIM_DEBUG,
                 "identity %s: reading it again failed (%s); keeping serial %s",
                 c->ids[idx].name, why, s->id->serial);
    identity_free(id);
    return NULL;
}

/*
 * An identity loaded before this process was forked: its token may not serve the child
 * (tpm2-pkcs11 keeps the parent's TPM session, and the provider refuses to use it here).
 * One test signature tells, before a handshake presents a key that cannot sign and fails
 * with an opaque error. Called with the slot locked; returns with it locked.
 */
static void identity_check_inherited(struct id_slot *s, const struct shim_conf *c,
                                     size_t idx)
{
    struct shim_identity *id = s->id;
    char why[sizeof(s->why) - 64];
    bool ok;

    s->inherited = false;
    s->state = SLOT_LOADING; /* other threads wait for the outcome */
    pthread_mutex_unlock(&s->lock);
    ok = identity_probe(id->key, why, sizeof(why));
    pthread_mutex_lock(&s->lock);
    if (s->state != SLOT_LOADING)
        return;
    if (ok) {
        s->state = SLOT_READY;
    } else {
        s->id = NULL; /* handshakes still holding it keep it alive */
        shim_identity_put(id);
        shim_fmt(s->why, sizeof(s->why), "%s (identity %s was loaded before a fork)", why,
                 c->ids[idx].name);
        s->failed_at = time(NULL);
        s->state = SLOT_FAILED;
    }
    pthread_cond_broadcast(&s->done);
}

const struct shim_identity *shim_identity_get(const struct shim_conf *c, size_t idx,
                                              char *why, size_t len)
{
    struct shim_identity *id = NULL, *old = NULL;
    struct id_slot *s;

    /* the process configuration; doctor's when doctor asks (it reads its own) */
    __atomic_store_n(&identity_conf, c, __ATOMIC_RELAXED);
    pthread_once(&identity_once, identity_init);
    if (identity_libctx == NULL || idx >= nslots) {
        shim_fmt(why, len, "private library context unavailable");
        return NULL;
    }
    s = &slots[idx];
    pthread_mutex_lock(&s->lock);
    while (s->state == SLOT_LOADING)
        pthread_cond_wait(&s->done, &s->lock);
    if (s->state == SLOT_READY && s->inherited)
        identity_check_inherited(s, c, idx);
    if (s->state == SLOT_IDLE ||
        (s->state == SLOT_FAILED && time(NULL) - s->failed_at >= IDENTITY_RETRY_SECONDS))
        identity_fill(s, c, idx);
    else if (s->state == SLOT_READY && identity_due(s, c, time(NULL)))
        old = identity_reload(s, c, idx);
    if (s->state == SLOT_READY) {
        id = s->id;
        shim_identity_hold(id);
    } else {
        shim_fmt(why, len, "%s", s->state == SLOT_FAILED ? s->why : "load interrupted");
    }
    pthread_mutex_unlock(&s->lock);
    shim_identity_put(old); /* the slot's reference: freed unless a handshake holds it */
    return id;
}

OSSL_LIB_CTX *shim_identity_libctx(void)
{
    return identity_libctx;
}

bool shim_identity_owns(const X509 *cert)
{
    int idx = __atomic_load_n(&identity_mark_idx, __ATOMIC_ACQUIRE);

    return cert != NULL && idx >= 0 &&
           shim_fn.X509_get_ex_data(cert, idx) == &identity_mark;
}

/* ---- per-handshake checks ---- */

bool shim_identity_valid_now(const struct shim_identity *id, char *why, size_t len)
{
    int after_start = shim_fn.X509_cmp_time(shim_fn.X509_get0_notBefore(id->cert), NULL);
    int before_end = shim_fn.X509_cmp_time(shim_fn.X509_get0_notAfter(id->cert), NULL);

    if (after_start == 0 || before_end == 0)
        shim_fmt(why, len, "certificate validity dates unreadable");
    else if (after_start > 0)
        shim_fmt(why, len, "certificate not yet valid");
    else if (before_end < 0)
        shim_fmt(why, len, "certificate expired");
    else
        return true;
    return false;
}

static bool identity_issuer_listed(const X509_NAME *issuer,
                                   const STACK_OF(X509_NAME) * cas)
{
    int n = shim_fn.OPENSSL_sk_num((const OPENSSL_STACK *) cas);

    for (int i = 0; i < n; i++)
        if (shim_fn.X509_NAME_cmp(
                issuer, shim_fn.OPENSSL_sk_value((const OPENSSL_STACK *) cas, i)) == 0)
            return true;
    return false;
}

/*
 * The server names the CAs it accepts. Ours qualifies if it lists the issuer of our
 * certificate or of any certificate in our chain (a server may list only the root).
 */
bool shim_identity_ca_match(const struct shim_identity *id, const SSL *ssl, char *why,
                            size_t len)
{
    return shim_identity_ca_listed(id, shim_fn.SSL_get0_peer_CA_list(ssl), why, len);
}

bool shim_identity_ca_listed(const struct shim_identity *id,
                             const STACK_OF(X509_NAME) * cas, char *why, size_t len)
{
    int nchain =
        id->chain != NULL ? shim_fn.OPENSSL_sk_num((OPENSSL_STACK *) id->chain) : 0;
    char issuer[256];

    if (cas == NULL || shim_fn.OPENSSL_sk_num((const OPENSSL_STACK *) cas) <= 0)
        return true; /* the server sent no names: no constraint */
    if (identity_issuer_listed(shim_fn.X509_get_issuer_name(id->cert), cas))
        return true;
    for (int i = 0; i < nchain; i++) {
        X509 *x = shim_fn.OPENSSL_sk_value((OPENSSL_STACK *) id->chain, i);

        if (identity_issuer_listed(shim_fn.X509_get_issuer_name(x), cas))
            return true;
    }
    shim_fn.X509_NAME_oneline(shim_fn.X509_get_issuer_name(id->cert), issuer,
                              sizeof(issuer));
    shim_fmt(why, len,
             "server's acceptable CA list (%d names) does not include issuer \"%s\"",
             shim_fn.OPENSSL_sk_num((const OPENSSL_STACK *) cas), issuer);
    return false;
}
