/*
 * tprov.c - drives the provider from a real OpenSSL program for the provider tests.
 * The provider comes from the openssl.cnf the test sets (OPENSSL_CONF); keys and
 * certificates are loaded by URI through OSSL_STORE, as any application would.
 *
 *   tprov threads URI NTHREADS N   N signatures per thread, each verified
 *   tprov fork URI NCHILDREN       sign in the parent, then in each child
 *   tprov repeat URI N             N signing attempts; prints how many failed
 *   tprov mixed URI                software keys work beside the token key
 *   tprov tls PORT CERT KEY [file] TLS client: cert/key by URI, or key from a PEM file
 *   tprov checks URI CERTFILE      libssl's key checks against the certificate
 *   tprov loop URI N MS            N attempts MS apart: load the key if not loaded yet,
 *                                  sign; one line each: "N ok" or "N FAIL <error>"
 *   tprov load URI                 the key loads and leaves the error queue empty
 *
 * Exit 0 on success; failures print the OpenSSL error queue.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/store.h>
#include <openssl/x509.h>

static void *load(const char *uri, int type)
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
        if (type == OSSL_STORE_INFO_PKEY)
            obj = OSSL_STORE_INFO_get1_PKEY(info);
        else if (type == OSSL_STORE_INFO_CERT)
            obj = OSSL_STORE_INFO_get1_CERT(info);
        OSSL_STORE_INFO_free(info);
    }
    OSSL_STORE_close(st);
    return obj;
}

static EVP_PKEY *public_copy(EVP_PKEY *key)
{
    unsigned char *der = NULL;
    const unsigned char *p;
    int len = i2d_PUBKEY(key, &der);
    EVP_PKEY *pub = NULL;

    p = der;
    if (len > 0)
        pub = d2i_PUBKEY_ex(NULL, &p, len, NULL, "provider=default");
    OPENSSL_free(der);
    return pub;
}

static int sign_verify(EVP_PKEY *key, const char *msg)
{
    const char *md =
        EVP_PKEY_is_a(key, "ED25519") || EVP_PKEY_is_a(key, "ED448") ? NULL : "SHA256";
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned char sig[1024];
    size_t siglen = sizeof(sig);
    EVP_PKEY *pub;
    int ok;

    ok = ctx != NULL &&
         EVP_DigestSignInit_ex(ctx, NULL, md, NULL, NULL, key, NULL) == 1 &&
         EVP_DigestSign(ctx, sig, &siglen, (const unsigned char *) msg, strlen(msg)) == 1;
    EVP_MD_CTX_free(ctx);
    if (!ok)
        return 0;
    /* Verify as a peer would: with a copy of the public key decoded from its DER. */
    pub = public_copy(key);
    ctx = EVP_MD_CTX_new();
    ok =
        ctx != NULL && pub != NULL &&
        EVP_DigestVerifyInit_ex(ctx, NULL, md, NULL, "provider=default", pub, NULL) ==
            1 &&
        EVP_DigestVerify(ctx, sig, siglen, (const unsigned char *) msg, strlen(msg)) == 1;
    EVP_MD_CTX_free(ctx);
    EVP_PKEY_free(pub);
    return ok;
}

struct thread_arg {
    EVP_PKEY *key;
    int n, failed;
};

static void *thread_main(void *p)
{
    struct thread_arg *a = p;
    char msg[64];

    for (int i = 0; i < a->n; i++) {
        snprintf(msg, sizeof(msg), "message %d from %p", i, (void *) a);
        if (!sign_verify(a->key, msg))
            a->failed++;
    }
    return NULL;
}

static int cmd_threads(const char *uri, int nthreads, int n)
{
    EVP_PKEY *key = load(uri, OSSL_STORE_INFO_PKEY);
    pthread_t t[64];
    struct thread_arg a[64];
    int failed = 0;

    if (key == NULL || nthreads < 1 || nthreads > 64)
        return 1;
    for (int i = 0; i < nthreads; i++) {
        a[i] = (struct thread_arg){key, n, 0};
        pthread_create(&t[i], NULL, thread_main, &a[i]);
    }
    for (int i = 0; i < nthreads; i++) {
        pthread_join(t[i], NULL);
        failed += a[i].failed;
    }
    printf("%d threads x %d signatures: %d failed\n", nthreads, n, failed);
    EVP_PKEY_free(key);
    return failed != 0;
}

static int cmd_fork(const char *uri, int nchildren)
{
    EVP_PKEY *key = load(uri, OSSL_STORE_INFO_PKEY);
    int failed = 0, status;

    if (key == NULL || !sign_verify(key, "parent before fork"))
        return 1;
    for (int i = 0; i < nchildren; i++) {
        pid_t pid = fork();

        if (pid == 0) {
            if (sign_verify(key, "child") && sign_verify(key, "child again"))
                _exit(0);
            printf("child: failed\n"); /* with why: a module may refuse forked children */
            ERR_print_errors_fp(stdout);
            fflush(stdout);
            _exit(1);
        }
        if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
            WEXITSTATUS(status) != 0)
            failed++;
    }
    if (!sign_verify(key, "parent after fork")) {
        failed++;
        printf("parent after fork: failed\n");
        ERR_print_errors_fp(stdout);
    } else {
        printf("parent after fork: ok\n");
    }
    printf("%d children: %d failed\n", nchildren, failed);
    EVP_PKEY_free(key);
    return failed != 0;
}

static int cmd_repeat(const char *uri, int n)
{
    EVP_PKEY *key = load(uri, OSSL_STORE_INFO_PKEY);
    int failed = 0;

    if (key == NULL)
        return 2;
    for (int i = 0; i < n; i++) {
        if (!sign_verify(key, "repeat")) {
            failed++;
            ERR_print_errors_fp(stdout);
        }
    }
    printf("%d attempts: %d failed\n", n, failed);
    EVP_PKEY_free(key);
    return 0;
}

/* Software keys beside the token key: none of their operations may reach the token. */
static int cmd_mixed(const char *uri)
{
    EVP_PKEY *token = load(uri, OSSL_STORE_INFO_PKEY);
    EVP_PKEY *rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t) 2048);
    EVP_PKEY *ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    EVP_PKEY *ed = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    int ok = token != NULL && rsa != NULL && ec != NULL && ed != NULL &&
             sign_verify(token, "token first") && sign_verify(rsa, "soft rsa") &&
             sign_verify(ec, "soft ec") && sign_verify(ed, "soft ed") &&
             sign_verify(token, "token again") && EVP_PKEY_eq(rsa, ec) != 1 &&
             EVP_PKEY_eq(token, ec) != 1;

    EVP_PKEY_free(token);
    EVP_PKEY_free(rsa);
    EVP_PKEY_free(ec);
    EVP_PKEY_free(ed);
    return !ok;
}

static int cmd_checks(const char *uri, const char *certfile)
{
    EVP_PKEY *key = load(uri, OSSL_STORE_INFO_PKEY);
    BIO *b = BIO_new_file(certfile, "r");
    X509 *x = b != NULL ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
    EVP_PKEY *cpub = x != NULL ? X509_get0_pubkey(x) : NULL;
    char mdname[64] = "";
    int ok = key != NULL && cpub != NULL;

    ok = ok && X509_check_private_key(x, key) == 1;
    ok = ok && EVP_PKEY_eq(cpub, key) == 1 && EVP_PKEY_eq(key, cpub) == 1;
    ok = ok && EVP_PKEY_get_bits(key) == EVP_PKEY_get_bits(cpub);
    ok = ok && EVP_PKEY_get_security_bits(key) == EVP_PKEY_get_security_bits(cpub);
    ok = ok && EVP_PKEY_get_size(key) == EVP_PKEY_get_size(cpub);
    if (ok && !EVP_PKEY_is_a(key, "ED25519"))
        ok = EVP_PKEY_get_default_digest_name(key, mdname, sizeof(mdname)) > 0 &&
             strcmp(mdname, "SHA256") == 0;
    printf("bits %d, security bits %d, max size %d, default digest '%s'\n",
           EVP_PKEY_get_bits(key), EVP_PKEY_get_security_bits(key),
           EVP_PKEY_get_size(key), mdname);
    X509_free(x);
    BIO_free(b);
    EVP_PKEY_free(key);
    return !ok;
}

static int cmd_tls(const char *port, const char *cert_uri, const char *key_arg,
                   int key_file)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    X509 *cert = load(cert_uri, OSSL_STORE_INFO_CERT);
    EVP_PKEY *key = key_file ? NULL : load(key_arg, OSSL_STORE_INFO_PKEY);
    char addr[64], buf[256];
    BIO *bio;
    SSL *ssl;
    int ok;

    snprintf(addr, sizeof(addr), "127.0.0.1:%s", port);
    ok = ctx != NULL && cert != NULL && SSL_CTX_use_certificate(ctx, cert) == 1;
    if (ok && key_file)
        ok = SSL_CTX_use_PrivateKey_file(ctx, key_arg, SSL_FILETYPE_PEM) == 1;
    else if (ok)
        ok = key != NULL && SSL_CTX_use_PrivateKey(ctx, key) == 1;
    ok = ok && SSL_CTX_check_private_key(ctx) == 1;
    bio = ok ? BIO_new_ssl_connect(ctx) : NULL;
    ok = bio != NULL && BIO_get_ssl(bio, &ssl) == 1 &&
         BIO_set_conn_hostname(bio, addr) == 1 && BIO_do_handshake(bio) == 1 &&
         BIO_puts(bio, "hello from tprov\n") > 0 && BIO_flush(bio) == 1;
    /* TLS 1.3 servers judge the certificate after the handshake: a rejection arrives as
     * an alert on the next read. Silence for a second means the server accepted us. */
    if (ok) {
        struct timeval tv = {1, 0};
        int fd = -1;

        BIO_get_fd(bio, &fd);
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        if (SSL_read(ssl, buf, sizeof(buf)) <= 0 && ERR_peek_error() != 0)
            ok = 0;
    }
    BIO_free_all(bio);
    X509_free(cert);
    EVP_PKEY_free(key);
    SSL_CTX_free(ctx);
    return !ok;
}

/* A load that succeeded must leave nothing on the error queue: applications that look
 * at it after a successful call (SSL_get_error does) would take it for a failure. */
static int cmd_load(const char *uri)
{
    EVP_PKEY *key;
    int ok;

    ERR_clear_error();
    key = load(uri, OSSL_STORE_INFO_PKEY);
    ok = key != NULL && ERR_peek_error() == 0;
    printf("%s, error queue %s\n", key != NULL ? "loaded" : "not loaded",
           ERR_peek_error() == 0 ? "empty" : "not empty:");
    ERR_print_errors_fp(stdout);
    EVP_PKEY_free(key);
    return !ok;
}

/* Keeps trying, as a long-running service would, while a test takes the token away. */
static int cmd_loop(const char *uri, int n, int ms)
{
    EVP_PKEY *key = NULL;
    char err[256];

    setvbuf(stdout, NULL, _IONBF, 0);
    for (int i = 0; i < n; i++) {
        int ok;

        if (key == NULL)
            key = load(uri, OSSL_STORE_INFO_PKEY);
        ok = key != NULL && sign_verify(key, "loop");
        err[0] = '\0';
        if (!ok)
            ERR_error_string_n(ERR_peek_last_error(), err, sizeof(err));
        printf("%d %s %s\n", i, ok ? "ok" : "FAIL", err);
        ERR_clear_error();
        usleep((useconds_t) ms * 1000);
    }
    EVP_PKEY_free(key);
    return 0;
}

int main(int argc, char **argv)
{
    int rc = 2;

    if (argc >= 5 && strcmp(argv[1], "threads") == 0)
        rc = cmd_threads(argv[2], atoi(argv[3]), atoi(argv[4]));
    else if (argc >= 4 && strcmp(argv[1], "fork") == 0)
        rc = cmd_fork(argv[2], atoi(argv[3]));
    else if (argc >= 4 && strcmp(argv[1], "repeat") == 0)
        rc = cmd_repeat(argv[2], atoi(argv[3]));
    else if (argc >= 3 && strcmp(argv[1], "mixed") == 0)
        rc = cmd_mixed(argv[2]);
    else if (argc >= 4 && strcmp(argv[1], "checks") == 0)
        rc = cmd_checks(argv[2], argv[3]);
    else if (argc >= 5 && strcmp(argv[1], "loop") == 0)
        rc = cmd_loop(argv[2], atoi(argv[3]), atoi(argv[4]));
    else if (argc >= 3 && strcmp(argv[1], "load") == 0)
        rc = cmd_load(argv[2]);
    else if (argc >= 5 && strcmp(argv[1], "tls") == 0)
        rc =
            cmd_tls(argv[2], argv[3], argv[4], argc >= 6 && strcmp(argv[5], "file") == 0);
    else
        fprintf(stderr, "usage: see the comment at the top of tprov.c\n");
    if (rc == 1)
        ERR_print_errors_fp(stderr);
    return rc;
}
