/*
 * fork_hang_min.c - OpenSSL alone (no p11mtls, no PKCS#11, no configuration file): does
 * a child forked while other threads do TLS handshakes hang in libcrypto?
 *
 *   fork-hang-min [--busy B] [--children C] [--timeout S] [--keep-hung]
 *
 * B threads (default 4) do TLS 1.3 handshakes with client authentication in a loop, in
 * memory (a BIO pair per handshake; client and server keys are EC P-256 keys made at
 * start, in memory). Meanwhile the main thread forks C children (default 50), one after
 * another; each child does one such handshake and exits 0, under alarm(S) (default 20):
 * a child still running after S seconds exits 124 ("hung"). With --keep-hung the parent
 * prints the pids of children alive after S/2 seconds and waits S more seconds before
 * reaping, so that `gdb -p PID -batch -ex 'thread apply all bt'` can look at them.
 *
 * Output: "children=C ok=N hung=H failed=F"; exit 0 only if every child handshook.
 * tests/RELIABILITY.md says what it showed and where the children hang.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#define MAX_BUSY     64
#define MAX_CHILDREN 1024

static SSL_CTX *srv_ctx, *cli_ctx;
static volatile int stop;

static EVP_PKEY *make_key(void)
{
    return EVP_EC_gen("P-256");
}

static X509 *make_cert(EVP_PKEY *key, const char *cn)
{
    X509 *x = X509_new();
    X509_NAME *name = X509_NAME_new();

    if (x == NULL || name == NULL ||
        !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *) cn,
                                    -1, -1, 0) ||
        !X509_set_version(x, 2) || !ASN1_INTEGER_set(X509_get_serialNumber(x), 1) ||
        X509_gmtime_adj(X509_getm_notBefore(x), -3600) == NULL ||
        X509_gmtime_adj(X509_getm_notAfter(x), 86400) == NULL ||
        !X509_set_subject_name(x, name) || !X509_set_issuer_name(x, name) ||
        !X509_set_pubkey(x, key) || X509_sign(x, key, EVP_sha256()) == 0) {
        X509_free(x);
        x = NULL;
    }
    X509_NAME_free(name);
    return x;
}

static int accept_any(int ok, X509_STORE_CTX *ctx)
{
    (void) ok;
    (void) ctx;
    return 1; /* self-signed test certificates; the point is the work, not the trust */
}

static SSL_CTX *make_ctx(int server)
{
    EVP_PKEY *key = make_key();
    X509 *cert = key != NULL ? make_cert(key, server ? "server" : "client") : NULL;
    SSL_CTX *ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());

    if (ctx == NULL || cert == NULL || !SSL_CTX_use_certificate(ctx, cert) ||
        !SSL_CTX_use_PrivateKey(ctx, key)) {
        SSL_CTX_free(ctx);
        ctx = NULL;
    } else {
        SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT,
                           accept_any);
    }
    X509_free(cert);
    EVP_PKEY_free(key);
    return ctx;
}

/* One handshake with client authentication through a BIO pair; 1 if both ends agree. */
static int handshake(void)
{
    SSL *c = SSL_new(cli_ctx), *s = SSL_new(srv_ctx);
    BIO *cb = NULL, *sb = NULL;
    int done = 0, ok = 0;

    if (c == NULL || s == NULL || !BIO_new_bio_pair(&cb, 0, &sb, 0))
        goto out;
    SSL_set_bio(c, cb, cb);
    SSL_set_bio(s, sb, sb);
    SSL_set_connect_state(c);
    SSL_set_accept_state(s);
    for (int round = 0; round < 100 && done != 3; round++) {
        if (!(done & 1) && SSL_do_handshake(c) == 1)
            done |= 1;
        if (!(done & 2) && SSL_do_handshake(s) == 1)
            done |= 2;
    }
    if (done == 3) {
        X509 *peer = SSL_get1_peer_certificate(s);

        ok = peer != NULL;
        X509_free(peer);
    }
out:
    SSL_free(c);
    SSL_free(s);
    ERR_clear_error();
    return ok;
}

static void *busy_main(void *arg)
{
    long *n = arg;

    while (!stop)
        *n += handshake();
    return NULL;
}

static void on_alarm(int sig)
{
    (void) sig;
    _exit(124);
}

int main(int argc, char **argv)
{
    int nbusy = 4, nchildren = 50, timeout = 20, keep = 0;
    int ok = 0, hung = 0, failed = 0, status;
    pthread_t th[MAX_BUSY];
    long done[MAX_BUSY] = {0};
    pid_t pids[MAX_CHILDREN];

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--keep-hung") == 0)
            keep = 1;
        else if (i + 1 < argc && strcmp(argv[i], "--busy") == 0)
            nbusy = atoi(argv[++i]);
        else if (i + 1 < argc && strcmp(argv[i], "--children") == 0)
            nchildren = atoi(argv[++i]);
        else if (i + 1 < argc && strcmp(argv[i], "--timeout") == 0)
            timeout = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: fork-hang-min [--busy B] [--children C] "
                            "[--timeout S] [--keep-hung]\n");
            return 2;
        }
    }
    if (nbusy < 0 || nbusy > MAX_BUSY || nchildren < 1 || nchildren > MAX_CHILDREN ||
        timeout < 2) {
        fprintf(stderr, "fork-hang-min: --busy 0..%d, --children 1..%d, --timeout >= 2\n",
                MAX_BUSY, MAX_CHILDREN);
        return 2;
    }
    srv_ctx = make_ctx(1);
    cli_ctx = make_ctx(0);
    if (srv_ctx == NULL || cli_ctx == NULL || !handshake()) {
        fprintf(stderr, "fork-hang-min: set-up failed\n");
        ERR_print_errors_fp(stderr);
        return 1;
    }
    for (int i = 0; i < nbusy; i++)
        pthread_create(&th[i], NULL, busy_main, &done[i]);
    usleep(100000);
    for (int i = 0; i < nchildren; i++) {
        pids[i] = fork();
        if (pids[i] == 0) {
            signal(SIGALRM, on_alarm);
            alarm((unsigned) timeout);
            if (handshake())
                _exit(0);
            ERR_print_errors_fp(stderr);
            _exit(1);
        }
        if (pids[i] < 0) {
            fprintf(stderr, "fork-hang-min: fork: %s\n", strerror(errno));
            failed++;
        }
        usleep(20000);
    }
    if (keep) {
        sleep((unsigned) timeout / 2);
        for (int i = 0; i < nchildren; i++) {
            siginfo_t si = {0};

            /* WNOWAIT: look, but leave the child to be reaped below */
            if (pids[i] > 0 &&
                waitid(P_PID, (id_t) pids[i], &si, WEXITED | WNOHANG | WNOWAIT) == 0 &&
                si.si_pid == 0)
                printf("alive after %ds: pid %d\n", timeout / 2, (int) pids[i]);
        }
        fflush(stdout);
        sleep((unsigned) timeout);
    }
    for (int i = 0; i < nchildren; i++) {
        if (pids[i] <= 0)
            continue;
        if (waitpid(pids[i], &status, 0) != pids[i])
            failed++;
        else if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
            ok++;
        else if (WIFEXITED(status) && WEXITSTATUS(status) == 124)
            hung++;
        else if (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
            hung++; /* killed by hand after a look with gdb */
        else
            failed++;
    }
    stop = 1;
    for (int i = 0; i < nbusy; i++)
        pthread_join(th[i], NULL);
    printf("children=%d ok=%d hung=%d failed=%d\n", nchildren, ok, hung, failed);
    SSL_CTX_free(srv_ctx);
    SSL_CTX_free(cli_ctx);
    return ok == nchildren ? 0 : 1;
}
