/*
 * tls.c - full TLS handshakes with client authentication, client and server in one
 * thread over a BIO pair: no sockets, no resumption (no tickets, no session caches).
 *
 * The server has its own library context with only the default provider, so it costs
 * the same whatever the client loads: EC P-256 fixture certificate and chain, client CA
 * list and trust from the fixture chain, SSL_VERIFY_PEER with FAIL_IF_NO_PEER_CERT
 * (--verify require) or without it (--verify request: asks for a certificate but takes
 * none, for the shim's no-match case). The client verifies the server (root CA, host
 * name localhost, SNI localhost) and gets its identity from:
 *   --via file   a PEM key and certificate (in memory)
 *   --via uri    a key loaded through OSSL_STORE from the p11mtls provider, which --conf
 *                loads into the default library context (the program's "native" setup)
 *   --via engine the key through libp11's engine (--engine, --module, --pin-file)
 *   --via none   nothing: whatever the preloaded shim presents, if anything
 * With --server-shared the server uses the default library context instead, made after
 * the client's: where the client's --conf loaded a provider, the server's certificate
 * parsing and verification meet it, as in a program that is both client and server.
 * After each handshake the server must have seen a client certificate (--expect cert,
 * the default) or none (--expect nocert): a contender that silently stopped presenting
 * would otherwise look fast.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/provider.h>
#include <openssl/ssl.h>
#include <openssl/store.h>

#include "bench.h"

typedef struct tls {
    SSL_CTX *sctx, *cctx;
    int expect_cert;
} TLS;

static void *tls_thread_new(void *arg, int idx)
{
    (void) idx;
    return arg;
}

static int tls_step(SSL *ssl, int *done, const char *side)
{
    int rc;

    if (*done)
        return 1;
    rc = SSL_do_handshake(ssl);
    if (rc == 1) {
        *done = 1;
        return 1;
    }
    if (SSL_get_error(ssl, rc) == SSL_ERROR_WANT_READ)
        return 1;
    fprintf(stderr, "p11mtls-bench-worker: %s handshake failed\n", side);
    bench_ossl_error("TLS");
    return 0;
}

static int tls_op(void *arg, void *tstate)
{
    TLS *t = arg;
    SSL *c = SSL_new(t->cctx), *s = SSL_new(t->sctx);
    BIO *cb = NULL, *sb = NULL;
    int cdone = 0, sdone = 0, ok = 0;

    (void) tstate;
    if (c == NULL || s == NULL || !BIO_new_bio_pair(&cb, 0, &sb, 0)) {
        bench_ossl_error("SSL_new / BIO pair");
        goto out;
    }
    SSL_set_bio(c, cb, cb);
    SSL_set_bio(s, sb, sb);
    SSL_set_connect_state(c);
    SSL_set_accept_state(s);
    if (!SSL_set_tlsext_host_name(c, "localhost") || !SSL_set1_host(c, "localhost"))
        goto out;
    for (int i = 0; i < 64 && !(cdone && sdone); i++)
        if (!tls_step(c, &cdone, "client") || !tls_step(s, &sdone, "server"))
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
    SSL_free(c);
    SSL_free(s);
    return ok;
}

static char *path_in(const char *dir, const char *name)
{
    static char buf[8][4200];
    static int next;
    char *p = buf[next++ % 8];

    snprintf(p, sizeof(buf[0]), "%s/%s", dir, name);
    return p;
}

static int tls_versions(SSL_CTX *ctx, int v)
{
    return SSL_CTX_set_min_proto_version(ctx, v) && SSL_CTX_set_max_proto_version(ctx, v);
}

SSL_CTX *bench_tls_server_ctx(const BENCH_OPTS *o, int version)
{
    OSSL_LIB_CTX *lib = o->server_shared ? NULL : OSSL_LIB_CTX_new();
    SSL_CTX *s;
    STACK_OF(X509_NAME) * cas;
    int require = o->verify == NULL || strcmp(o->verify, "require") == 0;

    if (!o->server_shared && (lib == NULL || OSSL_PROVIDER_load(lib, "default") == NULL))
        return NULL;
    if ((s = SSL_CTX_new_ex(lib, NULL, TLS_server_method())) == NULL)
        return NULL;
    if (!tls_versions(s, version) ||
        SSL_CTX_use_certificate_chain_file(s, path_in(o->dir, "server-fullchain.pem")) !=
            1 ||
        SSL_CTX_use_PrivateKey_file(s, path_in(o->dir, "server.key"), SSL_FILETYPE_PEM) !=
            1 ||
        SSL_CTX_load_verify_locations(s, path_in(o->dir, "chain.pem"), NULL) != 1 ||
        (cas = SSL_load_client_CA_file_ex(path_in(o->dir, "chain.pem"), lib, NULL)) ==
            NULL)
        return NULL;
    SSL_CTX_set_client_CA_list(s, cas);
    SSL_CTX_set_verify(
        s, SSL_VERIFY_PEER | (require ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0), NULL);
    SSL_CTX_set_session_cache_mode(s, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_options(s, SSL_OP_NO_TICKET);
    SSL_CTX_set_num_tickets(s, 0);
    return s;
}

static SSL_CTX *client_ctx(const BENCH_OPTS *o, int version)
{
    SSL_CTX *c;
    EVP_PKEY *key;

    if (strcmp(o->via, "uri") == 0 && !OSSL_LIB_CTX_load_config(NULL, o->conf))
        return NULL;
    if ((c = SSL_CTX_new(TLS_client_method())) == NULL || !tls_versions(c, version) ||
        SSL_CTX_load_verify_locations(c, path_in(o->dir, "root.pem"), NULL) != 1)
        return NULL;
    SSL_CTX_set_verify(c, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_OFF);
    if (strcmp(o->via, "none") == 0)
        return c;
    if (o->cert == NULL ||
        SSL_CTX_use_certificate_file(c, o->cert, SSL_FILETYPE_PEM) != 1)
        return NULL;
    if (strcmp(o->via, "file") == 0) {
        if (o->key_file == NULL ||
            SSL_CTX_use_PrivateKey_file(c, o->key_file, SSL_FILETYPE_PEM) != 1)
            return NULL;
    } else {
        key = strcmp(o->via, "engine") == 0 ? bench_engine_key(o)
              : o->uri != NULL              ? bench_store_key(o->uri)
                                            : NULL;
        if (key == NULL || SSL_CTX_use_PrivateKey(c, key) != 1)
            return NULL;
        EVP_PKEY_free(key);
    }
    return SSL_CTX_check_private_key(c) == 1 ? c : NULL;
}

int bench_tls_setup(const BENCH_OPTS *o, BENCH_CONTENDER *c)
{
    TLS *t = calloc(1, sizeof(*t));
    int version;

    if (t == NULL || o->tls == NULL || o->dir == NULL ||
        (strcmp(o->via, "file") != 0 && strcmp(o->via, "uri") != 0 &&
         strcmp(o->via, "engine") != 0 && strcmp(o->via, "none") != 0) ||
        (strcmp(o->via, "uri") == 0 && o->conf == NULL)) {
        fprintf(
            stderr,
            "p11mtls-bench-worker: tls needs --via file|uri|engine|none, --tls, --dir "
            "(and --conf with uri)\n");
        return 0;
    }
    version = strcmp(o->tls, "1.2") == 0 ? TLS1_2_VERSION : TLS1_3_VERSION;
    /* A shared server comes second, into the library context the client configured. */
    if (!o->server_shared && (t->sctx = bench_tls_server_ctx(o, version)) == NULL) {
        bench_ossl_error("server context");
        return 0;
    }
    if ((t->cctx = client_ctx(o, version)) == NULL) {
        bench_ossl_error("client context");
        return 0;
    }
    if (o->server_shared && (t->sctx = bench_tls_server_ctx(o, version)) == NULL) {
        bench_ossl_error("server context");
        return 0;
    }
    t->expect_cert = o->expect == NULL || strcmp(o->expect, "cert") == 0;
    c->thread_new = tls_thread_new;
    c->op = tls_op;
    c->arg = t;
    return 1;
}
