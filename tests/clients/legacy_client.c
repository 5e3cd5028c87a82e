/*
 * legacy_client.c - a TLS client of the old school, for the shim's tests.
 *
 * Plain libssl as many older programs use it: SSLv23_method() (or TLS_method() with
 * -m tls), a socket handed over with SSL_set_fd, and no certificate code at all. It
 * sends no SNI unless -n NAME is given, so the shim sees only the socket's peer.
 *
 * Usage: legacy-client [-m sslv23|tls] [-n SNI] [-c CAFILE] [-v tls1.2|tls1.3]
 *                      [-t SECONDS] [-b ctx|ssl|client] HOST PORT [REQUEST]
 *
 * Connects, sends REQUEST (default "GET / HTTP/1.0\r\n\r\n"), prints what the server
 * answers until it closes or stays silent for SECONDS (default 3). Exit 0 if the
 * handshake and the first read worked (TLS 1.3 reports a rejected client certificate
 * only at that read), 1 otherwise, with OpenSSL's errors on stderr. -b installs a
 * certificate callback of the program's own (on the context or the connection) that
 * sets nothing and says "app cert_cb called" on stderr: some programs have one, and
 * the shim must keep both working. -b client installs a client_cert_cb that declines
 * to send a certificate: the program chooses, so the shim must stay out.
 */
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

struct options {
    const char *method, *sni, *cafile, *version, *host, *port, *request, *cert_cb;
    int timeout;
};

static int usage(void)
{
    fprintf(stderr, "usage: legacy-client [-m sslv23|tls] [-n SNI] [-c CAFILE] "
                    "[-v tls1.2|tls1.3] [-t SECONDS] [-b ctx|ssl|client] HOST PORT "
                    "[REQUEST]\n");
    return 2;
}

static int parse_options(int argc, char **argv, struct options *o)
{
    int opt;

    o->method = "sslv23";
    o->request = "GET / HTTP/1.0\r\n\r\n";
    o->timeout = 3;
    while ((opt = getopt(argc, argv, "m:n:c:v:t:b:")) != -1) {
        switch (opt) {
        case 'm':
            o->method = optarg;
            break;
        case 'n':
            o->sni = optarg;
            break;
        case 'c':
            o->cafile = optarg;
            break;
        case 'v':
            o->version = optarg;
            break;
        case 't':
            o->timeout = atoi(optarg);
            break;
        case 'b':
            o->cert_cb = optarg;
            break;
        default:
            return 0;
        }
    }
    if (argc - optind < 2 || argc - optind > 3)
        return 0;
    o->host = argv[optind];
    o->port = argv[optind + 1];
    if (argc - optind == 3)
        o->request = argv[optind + 2];
    return 1;
}

static int tcp_connect(const char *host, const char *port, int timeout)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res, *ai;
    struct timeval tv = {.tv_sec = timeout};
    int fd = -1;

    if (getaddrinfo(host, port, &hints, &res) != 0)
        return -1;
    for (ai = res; ai != NULL; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
        if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
            break;
        if (fd >= 0)
            close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd >= 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    return fd;
}

static int app_cert_cb(SSL *ssl, void *arg)
{
    (void) ssl;
    fprintf(stderr, "app cert_cb called (%s)\n", (const char *) arg);
    return 1;
}

static int app_client_cert_cb(SSL *ssl, X509 **x509, EVP_PKEY **pkey)
{
    (void) ssl, (void) x509, (void) pkey;
    fprintf(stderr, "app client_cert_cb called: no certificate\n");
    return 0;
}

static SSL_CTX *make_ctx(const struct options *o)
{
    SSL_CTX *ctx =
        SSL_CTX_new(strcmp(o->method, "tls") == 0 ? TLS_method() : SSLv23_method());

    if (ctx == NULL)
        return NULL;
    if (o->cafile != NULL) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        if (SSL_CTX_load_verify_locations(ctx, o->cafile, NULL) != 1)
            return NULL;
    }
    if (o->version != NULL) {
        int v = strcmp(o->version, "tls1.3") == 0 ? TLS1_3_VERSION : TLS1_2_VERSION;

        SSL_CTX_set_min_proto_version(ctx, v);
        SSL_CTX_set_max_proto_version(ctx, v);
    }
    if (o->cert_cb != NULL && strcmp(o->cert_cb, "ctx") == 0)
        SSL_CTX_set_cert_cb(ctx, app_cert_cb, "ctx");
    if (o->cert_cb != NULL && strcmp(o->cert_cb, "client") == 0)
        SSL_CTX_set_client_cert_cb(ctx, app_client_cert_cb);
    return ctx;
}

/* Print the answer; 1 if the first read did not fail (EOF and timeouts are fine). */
static int exchange(SSL *ssl, const char *request)
{
    char buf[4096];
    int n, first = 1;

    if (SSL_write(ssl, request, (int) strlen(request)) <= 0)
        return 0;
    while ((n = SSL_read(ssl, buf, sizeof(buf))) > 0) {
        fwrite(buf, 1, (size_t) n, stdout);
        first = 0;
    }
    if (!first)
        return 1;
    n = SSL_get_error(ssl, n);
    return n == SSL_ERROR_ZERO_RETURN ||
           (n == SSL_ERROR_SYSCALL && ERR_peek_error() == 0);
}

int main(int argc, char **argv)
{
    struct options o = {0};
    SSL_CTX *ctx;
    SSL *ssl;
    int fd, ok;

    if (!parse_options(argc, argv, &o))
        return usage();
    SSL_library_init();
    SSL_load_error_strings();
    ctx = make_ctx(&o);
    fd = tcp_connect(o.host, o.port, o.timeout);
    if (ctx == NULL || fd < 0) {
        fprintf(stderr, "legacy-client: cannot set up the context or connect\n");
        ERR_print_errors_fp(stderr);
        return 1;
    }
    ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    if (o.cert_cb != NULL && strcmp(o.cert_cb, "ssl") == 0)
        SSL_set_cert_cb(ssl, app_cert_cb, "ssl");
    if (o.sni != NULL)
        SSL_set_tlsext_host_name(ssl, o.sni);
    ok = SSL_connect(ssl) == 1 && exchange(ssl, o.request);
    if (!ok) {
        fprintf(stderr, "legacy-client: TLS failed\n");
        ERR_print_errors_fp(stderr);
    } else {
        fprintf(stderr, "legacy-client: %s, %s\n", SSL_get_version(ssl),
                SSL_get_cipher_name(ssl));
    }
    SSL_shutdown(ssl);
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    close(fd);
    return ok ? 0 : 1;
}
