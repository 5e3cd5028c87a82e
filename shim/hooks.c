/*
 * hooks.c - the only exported functions: libssl entry points the shim interposes.
 *
 * Exported under the OPENSSL_3.0.0 version node only (libp11mtls-preload.map), so a
 * program bound to another OpenSSL major version never reaches this code.
 *
 * SSL_CTX_new_ex / SSL_CTX_new: after the real call, a context that can act as a client
 * gets the shim's certificate callback (at most once: SSL_CTX_new calls SSL_CTX_new_ex
 * in Debian's libssl). Server-only contexts are not touched. All decisions wait for the
 * callback, when the role, the destination and the server's request are known.
 *
 * SSL_CTX_set_cert_cb / SSL_set_cert_cb: OpenSSL has a single certificate-callback
 * slot and no getter, so a program setting its own would evict the shim. The program's
 * callback is recorded instead and called first from the shim's.
 *
 * SSL_connect / SSL_do_handshake / SSL_read / SSL_read_ex bracket the calls in which a
 * client's certificate callback can run, and recv (exported under glibc's version) notes
 * the socket read inside them: a program with its own BIO (curl) shows OpenSSL no
 * descriptor, but its BIO reads exactly that connection's socket in that call (io.c);
 * read does the same for transports that use it (libldap).
 */
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "shim.h"

#define SHIM_EXPORT __attribute__((visibility("default")))

typedef int (*cert_cb_fn)(SSL *ssl, void *arg);
typedef int (*sec_cb_fn)(const SSL *s, const SSL_CTX *ctx, int op, int bits, int nid,
                         void *other, void *ex);

/*
 * The program's own callback, passed as the argument of ours. A context owns one in
 * its ex_data; an SSL that set its own owns another, shared with SSL_dup copies (whose
 * callback argument is copied too), hence the reference count.
 */
struct hooks_chain {
    cert_cb_fn cb;
    void *arg;
    sec_cb_fn sec_cb; /* contexts only: the security callback we wrap (fail-closed) */
    int refs;
};

static pthread_once_t hooks_once = PTHREAD_ONCE_INIT;
static const struct shim_conf *hooks_conf; /* set once, when the shim is active */
static int hooks_ctx_index = -1, hooks_ssl_index = -1;
/* Set while the shim works on this thread: a provider or PKCS#11 module that itself
 * uses TLS must not re-enter the shim and wait for the identity it is loading. */
static __thread int hooks_busy;

/* ---- chain records ---- */

static void hooks_chain_release(struct hooks_chain *ch)
{
    if (ch != NULL && __atomic_sub_fetch(&ch->refs, 1, __ATOMIC_ACQ_REL) == 0)
        free(ch);
}

static void hooks_ex_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
                          void *argp)
{
    (void) parent, (void) ad, (void) idx, (void) argl, (void) argp;
    hooks_chain_release(ptr);
}

static int hooks_ex_dup(CRYPTO_EX_DATA *to, const CRYPTO_EX_DATA *from, void **from_d,
                        int idx, long argl, void *argp)
{
    (void) to, (void) from, (void) idx, (void) argl, (void) argp;
    if (from_d != NULL && *from_d != NULL)
        __atomic_add_fetch(&((struct hooks_chain *) *from_d)->refs, 1, __ATOMIC_RELAXED);
    return 1;
}

static struct hooks_chain *hooks_chain_new(void)
{
    struct hooks_chain *ch = calloc(1, sizeof(*ch));

    if (ch != NULL)
        ch->refs = 1;
    return ch;
}

static int hooks_index(const int *slot)
{
    return __atomic_load_n(slot, __ATOMIC_ACQUIRE);
}

/* The context's record, or NULL if the shim did not attach to it. */
static struct hooks_chain *hooks_ctx_chain(const SSL_CTX *ctx)
{
    int idx = hooks_index(&hooks_ctx_index);

    return ctx != NULL && idx >= 0 ? shim_fn.SSL_CTX_get_ex_data(ctx, idx) : NULL;
}

/* ---- the callbacks ---- */

static int hooks_fail_closed(void)
{
    static int told;

    if (!__atomic_exchange_n(&told, 1, __ATOMIC_RELAXED))
        shim_log(SHIM_ERROR, "refusing client TLS handshakes: the p11mtls configuration "
                             "has errors and on_config_error = abort");
    return 0;
}

static int hooks_cert_cb(SSL *ssl, void *arg)
{
    struct hooks_chain *ch = arg;
    const struct shim_conf *c = hooks_conf;
    int rc = 1, saved;

    shim_io_freeze();
    if (ch != NULL && ch->cb != NULL)
        rc = ch->cb(ssl, ch->arg);
    if (rc <= 0 || c == NULL || hooks_busy || shim_fn.SSL_is_server(ssl))
        return rc;
    if (c->abort_all)
        return hooks_fail_closed();
    saved = errno;
    hooks_busy = 1;
    /* Errors the shim causes must not reach the program (non-blocking handshakes read
     * a non-empty queue as failure). */
    shim_fn.ERR_set_mark();
    rc = shim_decide(ssl, c);
    shim_fn.ERR_pop_to_mark();
    hooks_busy = 0;
    errno = saved;
    return rc;
}

/*
 * Fail-closed mode: a client's certificate callback runs only if the server asks for a
 * certificate, but the security callback is consulted while building every ClientHello.
 * Refusing there fails every client handshake; servers and context-level checks get
 * the original callback's answer.
 */
static int hooks_security_cb(const SSL *s, const SSL_CTX *ctx, int op, int bits, int nid,
                             void *other, void *ex)
{
    const SSL_CTX *owner = ctx != NULL ? ctx : shim_fn.SSL_get_SSL_CTX(s);
    struct hooks_chain *ch = hooks_ctx_chain(owner);

    if (s != NULL && !shim_fn.SSL_is_server(s))
        return hooks_fail_closed();
    if (ch == NULL || ch->sec_cb == NULL)
        return 1;
    return ch->sec_cb(s, ctx, op, bits, nid, other, ex);
}

/* ---- attaching to new contexts ---- */

static bool hooks_server_only(const SSL_METHOD *m)
{
    const SSL_METHOD *(*const server[])(void) = {
        shim_fn.TLS_server_method,     shim_fn.DTLS_server_method,
        shim_fn.TLSv1_server_method,   shim_fn.TLSv1_1_server_method,
        shim_fn.TLSv1_2_server_method, shim_fn.DTLSv1_server_method,
        shim_fn.DTLSv1_2_server_method};

    for (size_t i = 0; i < sizeof(server) / sizeof(server[0]); i++)
        if (server[i] != NULL && server[i]() == m)
            return true;
    return false;
}

/* First client-capable context: read the configuration. */
static void hooks_init(void)
{
    const struct shim_conf *c = shim_conf_get();
    int ci, si;

    if (c == NULL || (!c->enabled && !c->abort_all))
        return;
    ci = shim_fn.CRYPTO_get_ex_new_index(CRYPTO_EX_INDEX_SSL_CTX, 0, NULL, NULL, NULL,
                                         hooks_ex_free);
    si = shim_fn.CRYPTO_get_ex_new_index(CRYPTO_EX_INDEX_SSL, 0, NULL, NULL, hooks_ex_dup,
                                         hooks_ex_free);
    if (ci < 0 || si < 0)
        return;
    hooks_conf = c;
    __atomic_store_n(&hooks_ssl_index, si, __ATOMIC_RELEASE);
    __atomic_store_n(&hooks_ctx_index, ci, __ATOMIC_RELEASE);
}

static void hooks_install(SSL_CTX *ctx, struct hooks_chain *ch)
{
    shim_fn.SSL_CTX_set_cert_cb(ctx, hooks_cert_cb, ch);
    if (hooks_conf->abort_all) {
        ch->sec_cb = shim_fn.SSL_CTX_get_security_callback(ctx);
        shim_fn.SSL_CTX_set_security_callback(ctx, hooks_security_cb);
    }
    if (hooks_conf->post_handshake_auth)
        shim_fn.SSL_CTX_set_post_handshake_auth(ctx, 1);
}

static void hooks_attach(SSL_CTX *ctx)
{
    struct hooks_chain *ch;

    if (ctx == NULL || hooks_busy ||
        hooks_server_only(shim_fn.SSL_CTX_get_ssl_method(ctx)))
        return;
    shim_fn.ERR_set_mark();
    pthread_once(&hooks_once, hooks_init);
    if (hooks_conf != NULL && hooks_ctx_chain(ctx) == NULL) {
        ch = hooks_chain_new();
        if (ch != NULL && shim_fn.SSL_CTX_set_ex_data(ctx, hooks_ctx_index, ch))
            hooks_install(ctx, ch);
        else
            free(ch);
    }
    shim_fn.ERR_pop_to_mark();
}

/* ---- exported hooks ---- */

SHIM_EXPORT SSL_CTX *SSL_CTX_new_ex(OSSL_LIB_CTX *libctx, const char *propq,
                                    const SSL_METHOD *meth)
{
    __typeof__(SSL_CTX_new_ex) *next;
    SSL_CTX *ctx;
    int saved;

    if (!shim_ossl_ready()) {
        next = shim_ossl_next("SSL_CTX_new_ex");
        return next != NULL ? next(libctx, propq, meth) : NULL;
    }
    ctx = shim_fn.SSL_CTX_new_ex(libctx, propq, meth);
    saved = errno;
    hooks_attach(ctx);
    errno = saved;
    return ctx;
}

SHIM_EXPORT SSL_CTX *SSL_CTX_new(const SSL_METHOD *meth)
{
    __typeof__(SSL_CTX_new) *next;
    SSL_CTX *ctx;
    int saved;

    if (!shim_ossl_ready()) {
        /* e.g. GnuTLS' OpenSSL compatibility library: not ours, pass through */
        next = shim_ossl_next("SSL_CTX_new");
        return next != NULL ? next(meth) : NULL;
    }
    ctx = shim_fn.SSL_CTX_new(meth);
    saved = errno;
    hooks_attach(ctx);
    errno = saved;
    return ctx;
}

SHIM_EXPORT void SSL_CTX_set_cert_cb(SSL_CTX *ctx, cert_cb_fn cb, void *arg)
{
    __typeof__(SSL_CTX_set_cert_cb) *next;
    struct hooks_chain *ch;

    if (!shim_ossl_ready()) {
        next = shim_ossl_next("SSL_CTX_set_cert_cb");
        if (next != NULL)
            next(ctx, cb, arg);
        return;
    }
    ch = hooks_ctx_chain(ctx);
    if (ch == NULL || cb == hooks_cert_cb) {
        shim_fn.SSL_CTX_set_cert_cb(ctx, cb, arg);
        return;
    }
    ch->cb = cb;
    ch->arg = arg;
}

SHIM_EXPORT void SSL_set_cert_cb(SSL *s, cert_cb_fn cb, void *arg)
{
    __typeof__(SSL_set_cert_cb) *next;
    struct hooks_chain *ch, *old;
    int idx = hooks_index(&hooks_ssl_index);

    if (!shim_ossl_ready()) {
        next = shim_ossl_next("SSL_set_cert_cb");
        if (next != NULL)
            next(s, cb, arg);
        return;
    }
    if (s == NULL || cb == hooks_cert_cb ||
        hooks_ctx_chain(shim_fn.SSL_get_SSL_CTX(s)) == NULL ||
        (ch = hooks_chain_new()) == NULL) {
        shim_fn.SSL_set_cert_cb(s, cb, arg);
        return;
    }
    ch->cb = cb;
    ch->arg = arg;
    /* A fresh record: the old one may be shared with an SSL_dup copy. */
    old = shim_fn.SSL_get_ex_data(s, idx);
    if (!shim_fn.SSL_set_ex_data(s, idx, ch)) {
        free(ch);
        shim_fn.SSL_set_cert_cb(s, cb, arg);
        return;
    }
    shim_fn.SSL_set_cert_cb(s, hooks_cert_cb, ch);
    hooks_chain_release(old);
}

/* ---- the socket behind a program's own BIO ---- */

#define HOOKS_IO_CALL(ssl, call)                                                         \
    do {                                                                                 \
        struct shim_io io;                                                               \
        __typeof__(call) rc;                                                             \
                                                                                         \
        shim_io_begin(&io, ssl);                                                         \
        rc = call;                                                                       \
        shim_io_end(&io);                                                                \
        return rc;                                                                       \
    } while (0)

SHIM_EXPORT int SSL_connect(SSL *s)
{
    __typeof__(SSL_connect) *next;

    if (!shim_ossl_ready()) {
        next = shim_ossl_next("SSL_connect");
        return next != NULL ? next(s) : -1;
    }
    HOOKS_IO_CALL(s, shim_fn.SSL_connect(s));
}

SHIM_EXPORT int SSL_do_handshake(SSL *s)
{
    __typeof__(SSL_do_handshake) *next;

    if (!shim_ossl_ready()) {
        next = shim_ossl_next("SSL_do_handshake");
        return next != NULL ? next(s) : -1;
    }
    HOOKS_IO_CALL(s, shim_fn.SSL_do_handshake(s));
}

/* TLS 1.3 post-handshake auth and TLS 1.2 renegotiation run inside reads. */
SHIM_EXPORT int SSL_read(SSL *s, void *buf, int num)
{
    __typeof__(SSL_read) *next;

    if (!shim_ossl_ready()) {
        next = shim_ossl_next("SSL_read");
        return next != NULL ? next(s, buf, num) : -1;
    }
    HOOKS_IO_CALL(s, shim_fn.SSL_read(s, buf, num));
}

SHIM_EXPORT int SSL_read_ex(SSL *s, void *buf, size_t num, size_t *readbytes)
{
    __typeof__(SSL_read_ex) *next;

    if (!shim_ossl_ready()) {
        next = shim_ossl_next("SSL_read_ex");
        return next != NULL ? next(s, buf, num, readbytes) : 0;
    }
    HOOKS_IO_CALL(s, shim_fn.SSL_read_ex(s, buf, num, readbytes));
}

/*
 * glibc's recv and read, under glibc's base version (the map's node, found by meson):
 * they pass everything through and only note the descriptor when a bracketed call runs
 * on this thread. curl, libcurl-gnutls, python and GnuTLS's default transport use recv;
 * libldap's transport uses read.
 */
static __thread int hooks_resolving;

static void *hooks_libc(void **slot, const char *name)
{
    void *fn = __atomic_load_n(slot, __ATOMIC_ACQUIRE);

    /* dlvsym may itself read (a preloaded allocator): the raw system call then */
    if (fn == NULL && !hooks_resolving) {
        hooks_resolving = 1;
        fn = dlvsym(RTLD_NEXT, name, SHIM_GLIBC_BASE);
        hooks_resolving = 0;
        __atomic_store_n(slot, fn, __ATOMIC_RELEASE);
    }
    return fn;
}

static void hooks_note(int fd, ssize_t n)
{
    int saved = errno;

    if (n > 0)
        shim_io_note(fd);
    errno = saved;
}

SHIM_EXPORT ssize_t recv(int fd, void *buf, size_t len, int flags)
{
    static void *real;
    __typeof__(recv) *fn = (__typeof__(recv) *) hooks_libc(&real, "recv");
    ssize_t n = fn != NULL ? fn(fd, buf, len, flags)
                           : syscall(SYS_recvfrom, fd, buf, len, flags, NULL, NULL);

    hooks_note(fd, n);
    return n;
}

SHIM_EXPORT ssize_t read(int fd, void *buf, size_t len)
{
    static void *real;
    __typeof__(read) *fn = (__typeof__(read) *) hooks_libc(&real, "read");
    ssize_t n = fn != NULL ? fn(fd, buf, len) : syscall(SYS_read, fd, buf, len);

    hooks_note(fd, n);
    return n;
}
