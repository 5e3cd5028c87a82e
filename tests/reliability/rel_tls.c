/*
 * rel_tls.c - TLS handshakes with client authentication, many at once, for the
 * reliability tests: threads, fork, and which destinations see the device certificate.
 *
 * Each handshake runs against a server inside this process: a pool of server threads
 * with a software key (FX_SERVER_CERT/KEY) that requests a client certificate, verifies
 * it against the CA chain, and answers one line: "OK <subject>" or "OK none". Clients
 * reach it over a socketpair (the destination is then the SNI name only) or over
 * loopback TCP (--port P, repeatable: a listener on 127.0.0.1:P, 0 for any free port; the
 * destination is then 127.0.0.1:P, or the SNI name if one is given). No session
 * resumption: no tickets, no session cache.
 *
 * The client has certificate code only with --key/--cert (provider mode: both loaded by
 * URI through OSSL_STORE, as an application would with the p11mtls provider configured
 * by OPENSSL_CONF). Without them (shim mode) it is a plain TLS client that never touches
 * a certificate or key: whatever it presents comes from an LD_PRELOADed shim.
 *
 *   rel-tls [options] threads     T threads x N handshakes
 *   rel-tls [options] fork        W handshakes in the parent (none with --fresh), then C
 *                                 children at once (one after the other with --serial),
 *                                 each N handshakes with its own server
 *                                 threads, ending by --child-exit; then one more
 * handshake in the parent. --busy B keeps B parent threads handshaking while it forks.
 *   rel-tls [options] dests       T threads x N handshakes, round robin over the
 *                                 destinations (--sni names and/or --port ports); prints
 *                                 "dest NAME handshakes=H cert=C" per destination.
 *
 * Options: --key URI --cert URI (provider mode), --server-cert F --server-key F
 * --server-chain F --ca F (server verifies clients against it and sends its names),
 * --root F (client verifies the server), --sni NAME (repeatable; NAME@P: that name over
 * TCP to --port P), --port P (repeatable), --threads T, --n N, --children C, --warm W,
 * --fresh, --serial, --busy B, --child-exit exit|_exit|return|mix, --optional (server
 * does not insist on a certificate), --expect SUBJECT (one-line form, "/CN=.../UID=..."),
 * --tls 1.2|1.3|mix (per thread), --pause MS (between a thread's handshakes), --timeout S
 * (whole run; a deadlock ends the program with status 124 and "TIMEOUT" instead of
 * hanging the test).
 *
 * Summary on stdout: "handshakes=H ok=K verified=V expected=E none=X errors=F". Exit 0
 * when every handshake completed and (with --expect) every peer the server saw had that
 * subject; 1 otherwise.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/store.h>
#include <openssl/x509.h>

#define MAX_THREADS 64
#define MAX_DESTS   64
#define IO_TIMEOUT  20 /* seconds, per socket operation */

struct opts {
    const char *key, *cert, *server_cert, *server_key, *server_chain, *ca, *root;
    const char *sni[MAX_DESTS];
    int nsni, ntcp, threads, n, children, warm, fresh, busy, optional, serial, pause,
        timeout;
    const char *child_exit, *expect, *tls;
};

static struct opts o = {
    .threads = 1,
    .n = 1,
    .children = 0,
    .warm = 1,
    .timeout = 300,
    .child_exit = "exit",
    .tls = "1.3",
};

/* ---- counters ---- */

static long c_handshakes, c_ok, c_verified, c_expected, c_none, c_errors;
static long c_srv_fail;

static void count(long *c)
{
    __atomic_add_fetch(c, 1, __ATOMIC_RELAXED);
}

static long get(const long *c)
{
    return __atomic_load_n(c, __ATOMIC_RELAXED);
}

static pthread_mutex_t err_lock = PTHREAD_MUTEX_INITIALIZER;
static int errors_shown;

/* The first few failures are printed with OpenSSL's queue; later ones only counted. */
static void report(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void report(const char *fmt, ...)
{
    va_list ap;

    pthread_mutex_lock(&err_lock);
    if (errors_shown++ < 10) {
        fprintf(stderr, "rel-tls[%d]: ", (int) getpid());
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
        ERR_print_errors_fp(stderr);
    }
    pthread_mutex_unlock(&err_lock);
    ERR_clear_error();
}

/* ---- watchdog: a deadlock must fail the test, not hang it ---- */

static void on_alarm(int sig)
{
    static const char msg[] = "rel-tls: TIMEOUT (deadlock or stall)\n";

    (void) sig;
    if (write(2, msg, sizeof(msg) - 1) < 0)
        _exit(124);
    _exit(124);
}

static void watchdog(int seconds)
{
    signal(SIGALRM, on_alarm);
    alarm((unsigned) seconds);
}

static void set_timeouts(int fd)
{
    struct timeval tv = {IO_TIMEOUT, 0};

    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

/* Why a handshake step failed, when OpenSSL's queue may be empty: the SSL_get_error
 * code, errno, and how long the handshake took (a read timeout shows as IO_TIMEOUT s). */
static const char *io_why(const SSL *ssl, int ret, const struct timespec *t0, char *buf,
                          size_t len)
{
    int err = errno;
    struct timespec t1;

    clock_gettime(CLOCK_MONOTONIC, &t1);
    snprintf(buf, len, "SSL_get_error %d, errno %d (%s), after %.3f s",
             ssl != NULL ? SSL_get_error(ssl, ret) : -1, err, strerror(err),
             (double) (t1.tv_sec - t0->tv_sec) + (t1.tv_nsec - t0->tv_nsec) / 1e9);
    return buf;
}

/*
 * 1 when a blocking socket call only was interrupted: signal(7) says reads and writes on
 * a socket with a timeout (SO_RCVTIMEO, SO_SNDTIMEO) fail with EINTR whenever a signal
 * handler runs, SA_RESTART or not, and OpenSSL reports that as "want read/write". Seen
 * in the parent while it examined and killed hung children.
 */
static int io_interrupted(const SSL *ssl, int ret, int err)
{
    int e = SSL_get_error(ssl, ret);

    return (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) && err == EINTR;
}

/* SSL_accept, SSL_connect, SSL_read or SSL_write, again after an interruption. */
#define IO_RETRY(ret, ssl, call)                                                         \
    do {                                                                                 \
        errno = 0;                                                                       \
        (ret) = (call);                                                                  \
    } while ((ret) <= 0 && io_interrupted((ssl), (ret), errno))

/* ---- the server ---- */

static SSL_CTX *srv_ctx;

struct queue {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int fds[1024];
    int head, n;
    int stop;
};

static struct queue q = {
    PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, {0}, 0, 0, 0};
static int srv_started, srv_busy; /* server threads running, and serving a connection */

static void queue_push(int fd)
{
    pthread_mutex_lock(&q.lock);
    while (q.n == (int) (sizeof(q.fds) / sizeof(q.fds[0])))
        pthread_cond_wait(&q.cond, &q.lock);
    q.fds[(q.head + q.n++) % 1024] = fd;
    pthread_cond_broadcast(&q.cond);
    pthread_mutex_unlock(&q.lock);
}

static int queue_pop(void)
{
    int fd = -1;

    pthread_mutex_lock(&q.lock);
    while (q.n == 0 && !q.stop)
        pthread_cond_wait(&q.cond, &q.lock);
    if (q.n > 0) {
        fd = q.fds[q.head];
        q.head = (q.head + 1) % 1024;
        q.n--;
        __atomic_add_fetch(&srv_busy, 1, __ATOMIC_SEQ_CST);
        pthread_cond_broadcast(&q.cond);
    }
    pthread_mutex_unlock(&q.lock);
    return fd;
}

static SSL_CTX *server_ctx(void)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    STACK_OF(X509_NAME) * names;
    int mode = SSL_VERIFY_PEER | (o.optional ? 0 : SSL_VERIFY_FAIL_IF_NO_PEER_CERT);

    if (ctx == NULL ||
        SSL_CTX_use_certificate_file(ctx, o.server_cert, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, o.server_key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_load_verify_locations(ctx, o.ca, NULL) != 1)
        return NULL;
    if (o.server_chain != NULL) {
        FILE *f = fopen(o.server_chain, "r");
        X509 *x;

        while (f != NULL && (x = PEM_read_X509(f, NULL, NULL, NULL)) != NULL)
            SSL_CTX_add0_chain_cert(ctx, x);
        if (f != NULL)
            fclose(f);
        ERR_clear_error();
    }
    names = SSL_load_client_CA_file(o.ca);
    if (names != NULL)
        SSL_CTX_set_client_CA_list(ctx, names);
    SSL_CTX_set_verify(ctx, mode, NULL);
    SSL_CTX_set_verify_depth(ctx, 3);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    SSL_CTX_set_num_tickets(ctx, 0);
    return ctx;
}

static void serve_one(int fd)
{
    SSL *ssl = SSL_new(srv_ctx);
    char line[512], subject[400] = "none", why[160];
    struct timespec t0;
    X509 *peer;
    int ok;

    clock_gettime(CLOCK_MONOTONIC, &t0);
    set_timeouts(fd);
    if (ssl == NULL || SSL_set_fd(ssl, fd) != 1) {
        count(&c_srv_fail);
        goto done;
    }
    IO_RETRY(ok, ssl, SSL_accept(ssl));
    if (ok != 1) {
        count(&c_srv_fail);
        report("server: handshake failed: %s", io_why(ssl, ok, &t0, why, sizeof(why)));
        goto done;
    }
    peer = SSL_get1_peer_certificate(ssl);
    if (peer != NULL) {
        if (SSL_get_verify_result(ssl) == X509_V_OK)
            X509_NAME_oneline(X509_get_subject_name(peer), subject, sizeof(subject));
        else
            snprintf(subject, sizeof(subject), "unverified");
        X509_free(peer);
    }
    snprintf(line, sizeof(line), "OK %s\n", subject);
    IO_RETRY(ok, ssl, SSL_write(ssl, line, (int) strlen(line)));
    if (ok <= 0)
        count(&c_srv_fail);
    SSL_shutdown(ssl);
done:
    SSL_free(ssl);
    close(fd);
    ERR_clear_error();
}

static void *server_thread(void *arg)
{
    int fd;

    (void) arg;
    __atomic_add_fetch(&srv_started, 1, __ATOMIC_SEQ_CST);
    while ((fd = queue_pop()) >= 0) {
        serve_one(fd);
        __atomic_sub_fetch(&srv_busy, 1, __ATOMIC_SEQ_CST);
    }
    return NULL;
}

/*
 * Before a fork that the test does not mean to race: every server thread has started
 * and is back waiting for work, so none is inside malloc or libssl. glibc's malloc is
 * fork-safe anyway; the ASan runtime's allocator (gcc 12) is not, and a child forked
 * while another thread allocates hangs in it.
 */
static void servers_quiet(int nthreads)
{
    while (__atomic_load_n(&srv_started, __ATOMIC_SEQ_CST) < nthreads ||
           __atomic_load_n(&srv_busy, __ATOMIC_SEQ_CST) != 0)
        usleep(1000);
    usleep(2000); /* from the decrement back into pthread_cond_wait */
}

/* TCP listeners feed the same queue. */
static int tcp_fds[MAX_DESTS], tcp_ports[MAX_DESTS];

static void *accept_thread(void *arg)
{
    int lfd = *(int *) arg, fd;

    while ((fd = accept(lfd, NULL, NULL)) >= 0)
        queue_push(fd);
    return NULL;
}

static int srv_threads; /* the pool's size */

/*
 * Before the process ends: no server thread is still inside libssl. A client can have
 * its answer while its server thread is still in SSL_shutdown/SSL_free, and exit()'s
 * OpenSSL cleanup under a thread still using OpenSSL is the program's bug, not a fault
 * the tests look for.
 */
static void servers_done(void)
{
    if (srv_threads > 0)
        servers_quiet(srv_threads);
}

static int server_start(int nthreads)
{
    pthread_t t;

    srv_threads = nthreads;

    srv_ctx = server_ctx();
    if (srv_ctx == NULL) {
        report("cannot set up the server context");
        return 0;
    }
    for (int i = 0; i < nthreads; i++)
        if (pthread_create(&t, NULL, server_thread, NULL) != 0)
            return 0;
        else
            pthread_detach(t);
    for (int i = 0; i < o.ntcp; i++) {
        struct sockaddr_in sa = {.sin_family = AF_INET};
        socklen_t sl = sizeof(sa);
        int one = 1;

        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        sa.sin_port = htons((uint16_t) tcp_ports[i]);
        tcp_fds[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (tcp_fds[i] >= 0)
            setsockopt(tcp_fds[i], SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (tcp_fds[i] < 0 ||
            bind(tcp_fds[i], (struct sockaddr *) &sa, sizeof(sa)) != 0 ||
            listen(tcp_fds[i], 128) != 0 ||
            getsockname(tcp_fds[i], (struct sockaddr *) &sa, &sl) != 0)
            return 0;
        tcp_ports[i] = ntohs(sa.sin_port);
        if (pthread_create(&t, NULL, accept_thread, &tcp_fds[i]) != 0)
            return 0;
        pthread_detach(t);
    }
    return 1;
}

/* ---- the client ---- */

static EVP_PKEY *c_key;
static X509 *c_cert;

static void *store_load(const char *uri, int type)
{
    OSSL_STORE_CTX *st = OSSL_STORE_open(uri, NULL, NULL, NULL, NULL);
    void *obj = NULL;

    if (st == NULL)
        return NULL;
    OSSL_STORE_expect(st, type);
    while (obj == NULL && !OSSL_STORE_eof(st)) {
        OSSL_STORE_INFO *info = OSSL_STORE_load(st);

        if (info == NULL)
            break;
        obj = type == OSSL_STORE_INFO_PKEY ? (void *) OSSL_STORE_INFO_get1_PKEY(info)
                                           : (void *) OSSL_STORE_INFO_get1_CERT(info);
        OSSL_STORE_INFO_free(info);
    }
    OSSL_STORE_close(st);
    return obj;
}

static int client_identity(void)
{
    if (o.key == NULL)
        return 1; /* shim mode: no certificate code at all */
    if (c_key == NULL)
        c_key = store_load(o.key, OSSL_STORE_INFO_PKEY);
    if (c_cert == NULL)
        c_cert = store_load(o.cert, OSSL_STORE_INFO_CERT);
    if (c_key == NULL || c_cert == NULL) {
        report("cannot load the client identity (%s, %s)", o.key, o.cert);
        return 0;
    }
    return 1;
}

/* A client context; version: 12 or 13. */
static SSL_CTX *client_ctx(int version)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    int v = version == 12 ? TLS1_2_VERSION : TLS1_3_VERSION;

    if (ctx == NULL)
        return NULL;
    SSL_CTX_set_min_proto_version(ctx, v);
    SSL_CTX_set_max_proto_version(ctx, v);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    if (o.root != NULL) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        if (SSL_CTX_load_verify_locations(ctx, o.root, NULL) != 1) {
            SSL_CTX_free(ctx);
            return NULL;
        }
    }
    if (c_key != NULL && (SSL_CTX_use_certificate(ctx, c_cert) != 1 ||
                          SSL_CTX_use_PrivateKey(ctx, c_key) != 1)) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

struct dest {
    const char *sni; /* NULL: none */
    char sni_buf[256];
    int tcp; /* index into tcp_ports, or -1: socketpair */
    char name[300];
    long handshakes, certs;
};

static struct dest dests[MAX_DESTS * 2];
static int ndests;

static void dests_init(int round_robin)
{
    ndests = 0;
    if (!round_robin || (o.nsni == 0 && o.ntcp == 0)) {
        dests[0] = (struct dest){.sni = o.nsni > 0 ? o.sni[0] : NULL,
                                 .tcp = o.ntcp > 0 ? 0 : -1};
        ndests = 1;
    } else {
        for (int i = 0; i < o.nsni; i++) {
            struct dest *d = &dests[ndests++];
            const char *at = strchr(o.sni[i], '@');

            *d = (struct dest){.sni = o.sni[i], .tcp = -1};
            if (at == NULL)
                continue;
            /* NAME@PORT: that SNI name over TCP to the listener on PORT */
            snprintf(d->sni_buf, sizeof(d->sni_buf), "%.*s", (int) (at - o.sni[i]),
                     o.sni[i]);
            d->sni = d->sni_buf;
            for (int j = 0; j < o.ntcp; j++)
                if (tcp_ports[j] == atoi(at + 1))
                    d->tcp = j;
        }
        for (int i = 0; i < o.ntcp; i++)
            dests[ndests++] = (struct dest){.sni = NULL, .tcp = i};
    }
    for (int i = 0; i < ndests; i++) {
        if (dests[i].tcp >= 0)
            snprintf(dests[i].name, sizeof(dests[i].name), "%s@127.0.0.1:%d",
                     dests[i].sni != NULL ? dests[i].sni : "-", tcp_ports[dests[i].tcp]);
        else
            snprintf(dests[i].name, sizeof(dests[i].name), "%s",
                     dests[i].sni != NULL ? dests[i].sni : "-");
    }
}

static int client_connect(const struct dest *d)
{
    int sv[2];

    if (d->tcp >= 0) {
        struct sockaddr_in sa = {.sin_family = AF_INET};
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        sa.sin_port = htons((uint16_t) tcp_ports[d->tcp]);
        if (fd >= 0 && connect(fd, (struct sockaddr *) &sa, sizeof(sa)) != 0) {
            close(fd);
            fd = -1;
        }
        if (fd >= 0)
            set_timeouts(fd);
        return fd;
    }
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        return -1;
    set_timeouts(sv[0]);
    queue_push(sv[1]);
    return sv[0];
}

/* The handshake, then the server's one-line answer into line (n: SSL_read's return);
 * 1 if the handshake completed. */
static int client_io(SSL *ssl, char *line, size_t len, int *n)
{
    IO_RETRY(*n, ssl, SSL_connect(ssl));
    if (*n != 1)
        return 0;
    IO_RETRY(*n, ssl, SSL_read(ssl, line, (int) len - 1));
    return 1;
}

/* One handshake to d; 1 if it completed and the server answered. */
static int handshake(SSL_CTX *ctx, struct dest *d)
{
    struct timespec t0;
    int fd, ok = 0, n = 0, step = 0;
    char line[512], why[160];
    SSL *ssl;

    clock_gettime(CLOCK_MONOTONIC, &t0);
    fd = client_connect(d);
    count(&c_handshakes);
    if (fd < 0) {
        count(&c_errors);
        report("cannot connect to %s: %s", d->name, strerror(errno));
        return 0;
    }
    ssl = SSL_new(ctx);
    if (ssl != NULL && SSL_set_fd(ssl, fd) == 1 &&
        (d->sni == NULL || SSL_set_tlsext_host_name(ssl, d->sni) == 1) &&
        (step = 1, client_io(ssl, line, sizeof(line), &n)) && (step = 2, n > 0)) {
        line[n] = '\0';
        line[strcspn(line, "\n")] = '\0';
        ok = strncmp(line, "OK ", 3) == 0;
    }
    if (ok) {
        const char *subject = line + 3;

        count(&c_ok);
        __atomic_add_fetch(&d->handshakes, 1, __ATOMIC_RELAXED);
        if (strcmp(subject, "none") == 0) {
            count(&c_none);
        } else if (strcmp(subject, "unverified") != 0) {
            count(&c_verified);
            __atomic_add_fetch(&d->certs, 1, __ATOMIC_RELAXED);
            if (o.expect != NULL && strcmp(subject, o.expect) == 0)
                count(&c_expected);
        }
    } else {
        count(&c_errors);
        report("handshake to %s failed%s: %s", d->name,
               step == 2 ? " (reading the server's answer)" : "",
               io_why(ssl, n, &t0, why, sizeof(why)));
    }
    if (ssl != NULL) {
        SSL_shutdown(ssl);
        SSL_free(ssl);
    }
    close(fd);
    ERR_clear_error();
    return ok;
}

static SSL_CTX *shared_ctx[2]; /* TLS 1.2, 1.3 */

static int thread_version(int i)
{
    if (strcmp(o.tls, "mix") == 0)
        return i % 2 == 0 ? 13 : 12;
    return strcmp(o.tls, "1.2") == 0 ? 12 : 13;
}

struct worker {
    int idx, n, round_robin;
    volatile int *stop;
    int failed;
};

/* Even threads share one context per version; odd ones make their own. */
static void *worker_main(void *arg)
{
    struct worker *w = arg;
    int v = thread_version(w->idx);
    SSL_CTX *own = NULL, *ctx = shared_ctx[v == 13];

    if (w->idx % 2 == 1) {
        own = client_ctx(v);
        ctx = own;
    }
    if (ctx == NULL) {
        report("thread %d: no client context", w->idx);
        w->failed = w->n;
        return NULL;
    }
    for (int i = 0; w->stop != NULL ? !*w->stop : i < w->n; i++) {
        struct dest *d = &dests[w->round_robin ? (i + w->idx) % ndests : 0];

        if (!handshake(ctx, d))
            w->failed++;
        if (o.pause > 0)
            usleep((useconds_t) o.pause * 1000);
    }
    SSL_CTX_free(own);
    return NULL;
}

static int run_threads(int nthreads, int n, int round_robin)
{
    pthread_t t[MAX_THREADS];
    struct worker w[MAX_THREADS];
    int failed = 0;

    for (int i = 0; i < nthreads; i++) {
        w[i] = (struct worker){.idx = i, .n = n, .round_robin = round_robin};
        if (pthread_create(&t[i], NULL, worker_main, &w[i]) != 0)
            return nthreads * n;
    }
    for (int i = 0; i < nthreads; i++) {
        pthread_join(t[i], NULL);
        failed += w[i].failed;
    }
    return failed;
}

static int setup_client(void)
{
    if (!client_identity())
        return 0;
    shared_ctx[0] = client_ctx(12);
    shared_ctx[1] = client_ctx(13);
    if (shared_ctx[0] == NULL || shared_ctx[1] == NULL) {
        report("cannot set up the client contexts");
        return 0;
    }
    return 1;
}

static void summary(const char *who)
{
    printf("%shandshakes=%ld ok=%ld verified=%ld expected=%ld none=%ld errors=%ld "
           "server_failures=%ld\n",
           who, get(&c_handshakes), get(&c_ok), get(&c_verified), get(&c_expected),
           get(&c_none), get(&c_errors), get(&c_srv_fail));
    fflush(stdout);
}

static int all_good(void)
{
    return get(&c_errors) == 0 && get(&c_ok) == get(&c_handshakes) &&
           (o.expect == NULL || get(&c_expected) == get(&c_ok));
}

/* ---- modes ---- */

static int mode_threads(void)
{
    if (!server_start(o.threads) || !setup_client())
        return 1;
    dests_init(0);
    run_threads(o.threads, o.n, 0);
    servers_done();
    summary("");
    return all_good() ? 0 : 1;
}

static int mode_dests(void)
{
    if (!server_start(o.threads) || !setup_client())
        return 1;
    dests_init(1);
    run_threads(o.threads, o.n, 1);
    servers_done();
    for (int i = 0; i < ndests; i++)
        printf("dest %s handshakes=%ld cert=%ld\n", dests[i].name, dests[i].handshakes,
               dests[i].certs);
    summary("");
    return get(&c_errors) == 0 ? 0 : 1;
}

/* In a child: a fresh server pool (the parent's threads do not exist here). Returns the
 * child's exit status. */
static int child_main(int idx)
{
    watchdog(o.timeout);
    c_handshakes = c_ok = c_verified = c_expected = c_none = c_errors = c_srv_fail = 0;
    /* the parent's pool threads are gone; the queue may hold their descriptors */
    pthread_mutex_init(&q.lock, NULL);
    pthread_cond_init(&q.cond, NULL);
    q.n = q.head = 0;
    srv_started = srv_busy = 0;
    if (!server_start(1) || (shared_ctx[1] == NULL && !setup_client()))
        return 1;
    for (int i = 0; i < o.n; i++)
        handshake(shared_ctx[thread_version(idx) == 13], &dests[0]);
    servers_done();
    if (!all_good()) {
        summary("child: ");
        return 1;
    }
    return 0;
}

/* How child idx ends: "exit" (atexit handlers, OpenSSL's cleanup, module destructors),
 * "_exit" (none of that), or "return" (from main, which is exit again). */
static const char *child_exit_how(int idx)
{
    if (strcmp(o.child_exit, "mix") != 0)
        return o.child_exit;
    return idx % 3 == 0 ? "exit" : idx % 3 == 1 ? "_exit" : "return";
}

static volatile int busy_stop;

/* A hung child is looked at before it is killed: $REL_TLS_ON_HANG PID (e.g. a script
 * that saves gdb's backtraces of it), so a test can say where it hung. */
static void on_hang(pid_t pid)
{
    const char *cmd = getenv("REL_TLS_ON_HANG");
    char line[4096];

    if (cmd == NULL || *cmd == '\0' ||
        snprintf(line, sizeof(line), "%s %d", cmd, (int) pid) >= (int) sizeof(line))
        return;
    if (system(line) != 0)
        fprintf(stderr, "rel-tls: %s failed\n", line);
}

/* Waits for child i until deadline (then kills it); 1 if it failed or hung. */
static int wait_child(pid_t *pids, int i, time_t deadline)
{
    int status;

    while (waitpid(pids[i], &status, WNOHANG) == 0) {
        if (time(NULL) >= deadline) {
            fprintf(stderr, "rel-tls: child %d hung (deadlock?): killed\n", i);
            on_hang(pids[i]);
            kill(pids[i], SIGKILL);
            waitpid(pids[i], &status, 0);
            pids[i] = 0;
            return 1;
        }
        usleep(5000);
    }
    pids[i] = 0;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return 0;
    fprintf(stderr, "rel-tls: child %d %s %d\n", i,
            WIFEXITED(status) ? "exited with status" : "killed by signal",
            WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
    return 1;
}

static int mode_fork(int *child_rc)
{
    pid_t pids[1024];
    pthread_t busy[MAX_THREADS];
    struct worker bw[MAX_THREADS];
    int nchildren = o.children > 1024 ? 1024 : o.children;
    int nservers = o.busy > 0 ? o.busy + 1 : 1;
    int failed = 0, timed_out = 0, left, status;
    time_t deadline;

    if (!server_start(nservers))
        return 1;
    dests_init(0);
    if (!o.fresh) {
        if (!setup_client())
            return 1;
        for (int i = 0; i < o.warm; i++)
            handshake(shared_ctx[1], &dests[0]);
    }
    for (int i = 0; i < o.busy && i < MAX_THREADS; i++) {
        bw[i] = (struct worker){.idx = i, .stop = &busy_stop};
        pthread_create(&busy[i], NULL, worker_main, &bw[i]);
    }
    fflush(NULL);
    for (int i = 0; i < nchildren; i++) {
        if (o.busy == 0)
            servers_quiet(nservers);
        pids[i] = fork();
        if (pids[i] == 0) {
            int rc = child_main(i);
            const char *how = child_exit_how(i);

            fflush(NULL);
            if (strcmp(how, "_exit") == 0)
                _exit(rc);
            if (strcmp(how, "exit") == 0)
                exit(rc);
            *child_rc = rc;
            return -1; /* main returns child_rc */
        }
        if (pids[i] < 0) {
            report("fork: %s", strerror(errno));
            failed++;
        }
        if (o.serial && pids[i] > 0)
            failed += wait_child(pids, i, time(NULL) + o.timeout / 2);
    }
    /* Wait for them all, but not forever. */
    deadline = time(NULL) + o.timeout / 2;
    left = 0;
    for (int i = 0; i < nchildren; i++)
        left += pids[i] > 0;
    while (left > 0 && time(NULL) < deadline) {
        int progressed = 0;

        for (int i = 0; i < nchildren; i++) {
            if (pids[i] <= 0 || waitpid(pids[i], &status, WNOHANG) != pids[i])
                continue;
            progressed = 1;
            left--;
            pids[i] = 0;
            if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                failed++;
                fprintf(stderr, "rel-tls: child %d %s %d\n", i,
                        WIFEXITED(status) ? "exited with status" : "killed by signal",
                        WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
            }
        }
        if (!progressed)
            usleep(20000);
    }
    for (int i = 0; i < nchildren; i++) {
        if (pids[i] > 0) {
            timed_out++;
            on_hang(pids[i]);
            kill(pids[i], SIGKILL);
            waitpid(pids[i], &status, 0);
        }
    }
    busy_stop = 1;
    for (int i = 0; i < o.busy && i < MAX_THREADS; i++)
        pthread_join(busy[i], NULL);
    /* The parent still works after its children went, however they went. */
    if (o.fresh && !setup_client())
        return 1;
    handshake(shared_ctx[1], &dests[0]);
    servers_done();
    printf("children=%d failed=%d timed_out=%d\n", nchildren, failed, timed_out);
    summary("parent: ");
    return failed == 0 && timed_out == 0 && all_good() ? 0 : 1;
}

/* ---- options ---- */

static int usage(void)
{
    fprintf(stderr, "usage: rel-tls [options] threads|fork|dests (see rel_tls.c)\n");
    return 2;
}

int main(int argc, char **argv)
{
    const char *mode = NULL;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int takes = 1;

        if (a[0] != '-') {
            mode = a;
            takes = 0;
        } else if (strcmp(a, "--fresh") == 0) {
            o.fresh = 1;
            takes = 0;
        } else if (strcmp(a, "--optional") == 0) {
            o.optional = 1;
            takes = 0;
        } else if (strcmp(a, "--serial") == 0) {
            o.serial = 1;
            takes = 0;
        } else if (v == NULL) {
            return usage();
        } else if (strcmp(a, "--key") == 0) {
            o.key = v;
        } else if (strcmp(a, "--cert") == 0) {
            o.cert = v;
        } else if (strcmp(a, "--server-cert") == 0) {
            o.server_cert = v;
        } else if (strcmp(a, "--server-key") == 0) {
            o.server_key = v;
        } else if (strcmp(a, "--server-chain") == 0) {
            o.server_chain = v;
        } else if (strcmp(a, "--ca") == 0) {
            o.ca = v;
        } else if (strcmp(a, "--root") == 0) {
            o.root = v;
        } else if (strcmp(a, "--sni") == 0 && o.nsni < MAX_DESTS) {
            o.sni[o.nsni++] = v;
        } else if (strcmp(a, "--port") == 0 && o.ntcp < MAX_DESTS) {
            tcp_ports[o.ntcp++] = atoi(v);
        } else if (strcmp(a, "--threads") == 0) {
            o.threads = atoi(v) < MAX_THREADS ? atoi(v) : MAX_THREADS;
        } else if (strcmp(a, "--n") == 0) {
            o.n = atoi(v);
        } else if (strcmp(a, "--children") == 0) {
            o.children = atoi(v);
        } else if (strcmp(a, "--warm") == 0) {
            o.warm = atoi(v);
        } else if (strcmp(a, "--pause") == 0) {
            o.pause = atoi(v);
        } else if (strcmp(a, "--busy") == 0) {
            o.busy = atoi(v);
        } else if (strcmp(a, "--child-exit") == 0) {
            o.child_exit = v;
        } else if (strcmp(a, "--expect") == 0) {
            o.expect = v;
        } else if (strcmp(a, "--tls") == 0) {
            o.tls = v;
        } else if (strcmp(a, "--timeout") == 0) {
            o.timeout = atoi(v);
        } else {
            return usage();
        }
        i += takes;
    }
    if (mode == NULL || o.server_cert == NULL || o.server_key == NULL || o.ca == NULL ||
        (o.key == NULL) != (o.cert == NULL) || o.threads < 1)
        return usage();
    signal(SIGPIPE, SIG_IGN);
    watchdog(o.timeout);
    if (strcmp(mode, "threads") == 0)
        return mode_threads();
    if (strcmp(mode, "fork") == 0) {
        int child_rc = 0, rc = mode_fork(&child_rc);

        return rc < 0 ? child_rc : rc;
    }
    if (strcmp(mode, "dests") == 0)
        return mode_dests();
    return usage();
}
