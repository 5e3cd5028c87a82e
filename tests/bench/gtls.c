/*
 * gtls.c - the same handshakes as tls.c with a GnuTLS client: client and server in one
 * thread, GnuTLS's push/pull functions on one end of an OpenSSL BIO pair, tls.c's
 * OpenSSL server (and its --verify, --expect) on the other. The client verifies the
 * server (root CA, name localhost, SNI localhost) and gets its identity from:
 *   --via uri    the token key through GnuTLS's own PKCS#11 support (p11-kit), the
 *                certificate from --cert: the program "given the token key natively"
 *   --via none   nothing: whatever the preloaded shim presents, if anything
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gnutls/gnutls.h>
#include <gnutls/pkcs11.h>
#include <openssl/ssl.h>

#include "bench.h"

typedef struct gtls {
    SSL_CTX *sctx;
    gnutls_certificate_credentials_t cred;
    gnutls_priority_t prio;
    int expect_cert;
} GTLS;

static void *gtls_thread_new(void *arg, int idx)
{
    (void) idx;
    return arg;
}

static ssize_t gtls_push(gnutls_transport_ptr_t p, const void *data, size_t len)
{
    int n = BIO_write(p, data, (int) (len > 65536 ? 65536 : len));

    if (n <= 0) {
        errno = EAGAIN;
        return -1;
    }
    return n;
}

static ssize_t gtls_pull(gnutls_transport_ptr_t p, void *data, size_t len)
{
    int n = BIO_read(p, data, (int) (len > 65536 ? 65536 : len));

    if (n <= 0) {
        errno = EAGAIN;
        return -1;
    }
    return n;
}

static int gtls_server_step(SSL *s, int *done)
{
    int rc;

    if (*done)
        return 1;
    rc = SSL_do_handshake(s);
    if (rc == 1)
        *done = 1;
    else if (SSL_get_error(s, rc) != SSL_ERROR_WANT_READ) {
        fprintf(stderr, "p11mtls-bench-worker: server handshake failed\n");
        bench_ossl_error("TLS");
        return 0;
    }
    return 1;
}

static int gtls_client_step(gnutls_session_t c, int *done)
{
    int rc;

    if (*done)
        return 1;
    rc = gnutls_handshake(c);
    if (rc == 0)
        *done = 1;
    else if (rc != GNUTLS_E_AGAIN && rc != GNUTLS_E_INTERRUPTED) {
        fprintf(stderr, "p11mtls-bench-worker: GnuTLS client handshake failed: %s\n",
                gnutls_strerror(rc));
        return 0;
    }
    return 1;
}

static int gtls_op(void *arg, void *tstate)
{
    GTLS *t = arg;
    gnutls_session_t c = NULL;
    SSL *s = SSL_new(t->sctx);
    BIO *cb = NULL, *sb = NULL;
    int cdone = 0, sdone = 0, ok = 0;

    (void) tstate;
    if (s == NULL || !BIO_new_bio_pair(&cb, 0, &sb, 0) ||
        gnutls_init(&c, GNUTLS_CLIENT | GNUTLS_NONBLOCK) != 0 ||
        gnutls_priority_set(c, t->prio) != 0 ||
        gnutls_credentials_set(c, GNUTLS_CRD_CERTIFICATE, t->cred) != 0 ||
        gnutls_server_name_set(c, GNUTLS_NAME_DNS, "localhost", 9) != 0) {
        fprintf(stderr, "p11mtls-bench-worker: session setup failed\n");
        goto out;
    }
    gnutls_session_set_verify_cert(c, "localhost", 0);
    gnutls_transport_set_ptr(c, cb);
    gnutls_transport_set_push_function(c, gtls_push);
    gnutls_transport_set_pull_function(c, gtls_pull);
    SSL_set_bio(s, sb, sb);
    sb = NULL;
    SSL_set_accept_state(s);
    for (int i = 0; i < 64 && !(cdone && sdone); i++)
        if (!gtls_client_step(c, &cdone) || !gtls_server_step(s, &sdone))
            goto out;
    if (!(cdone && sdone)) {
        fprintf(stderr, "p11mtls-bench-worker: handshake did not finish\n");
        goto out;
    }
    if ((SSL_get0_peer_certificate(s) != NULL) != t->expect_cert) {
        fprintf(stderr, "p11mtls-bench-worker: the server saw %s client certificate\n",
                t->expect_cert ? "no" : "a");
        goto out;
    }
    ok = 1;
out:
    if (c != NULL)
        gnutls_deinit(c);
    SSL_free(s);
    BIO_free(cb);
    BIO_free(sb);
    return ok;
}

int bench_gtls_setup(const BENCH_OPTS *o, BENCH_CONTENDER *c)
{
    GTLS *t = calloc(1, sizeof(*t));
    int uri = o->via != NULL && strcmp(o->via, "uri") == 0, version, rc;
    char root[4200], key[1024], pin[256];

    if (t == NULL || o->tls == NULL || o->dir == NULL ||
        (!uri && strcmp(o->via, "none") != 0) ||
        (uri && (o->uri == NULL || o->cert == NULL || o->pin_file == NULL))) {
        fprintf(stderr, "p11mtls-bench-worker: gtls needs --via uri|none, --tls, --dir "
                        "(and --uri, --cert, --pin-file with uri)\n");
        return 0;
    }
    version = strcmp(o->tls, "1.2") == 0 ? TLS1_2_VERSION : TLS1_3_VERSION;
    if ((t->sctx = bench_tls_server_ctx(o, version)) == NULL) {
        bench_ossl_error("server context");
        return 0;
    }
    snprintf(root, sizeof(root), "%s/root.pem", o->dir);
    rc = gnutls_certificate_allocate_credentials(&t->cred);
    if (rc == 0 &&
        gnutls_certificate_set_x509_trust_file(t->cred, root, GNUTLS_X509_FMT_PEM) <= 0)
        rc = GNUTLS_E_FILE_ERROR;
    if (rc == 0)
        rc = gnutls_priority_init2(&t->prio,
                                   version == TLS1_2_VERSION ? "-VERS-ALL:+VERS-TLS1.2"
                                                             : "-VERS-ALL:+VERS-TLS1.3",
                                   NULL, GNUTLS_PRIORITY_INIT_DEF_APPEND);
    if (rc == 0 && uri) {
        if (!bench_read_line(o->pin_file, pin, sizeof(pin))) {
            fprintf(stderr, "p11mtls-bench-worker: cannot read %s\n", o->pin_file);
            return 0;
        }
        snprintf(key, sizeof(key), "%s?pin-value=%s", o->uri, pin);
        rc = gnutls_certificate_set_x509_key_file2(t->cred, o->cert, key,
                                                   GNUTLS_X509_FMT_PEM, NULL, 0);
        memset(pin, 0, sizeof(pin));
        memset(key, 0, sizeof(key));
    }
    if (rc < 0) {
        fprintf(stderr, "p11mtls-bench-worker: GnuTLS client setup: %s\n",
                gnutls_strerror(rc));
        return 0;
    }
    t->expect_cert = o->expect == NULL || strcmp(o->expect, "cert") == 0;
    c->thread_new = gtls_thread_new;
    c->op = gtls_op;
    c->arg = t;
    return 1;
}
