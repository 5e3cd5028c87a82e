/*
 * enroll.c - "p11mtls enroll" and "p11mtls renew": a certificate for a key on the token
 * from the organisation's CA over CMP (RFC 4210, the Lightweight CMP Profile RFC 9483),
 * with OpenSSL's own CMP client. Every signature (proof of possession, message
 * protection) is made on the token through the p11mtls provider.
 *
 * Renewal never leaves the identity without a valid certificate: the new certificate is
 * stored next to the old one under the same label and CKA_ID (the choosing rule of
 * idstore.h then presents the new one), and only then is the old one removed. With
 * --new-key the new key pair and its certificate carry the label "NAME.new" until the
 * certificate is stored; then they are relabelled NAME and the old pair removed. A rerun
 * after a crash finishes what it finds (a complete "NAME.new" pair is switched over, a
 * lone "NAME.new" key is reused, superseded objects are removed).
 */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/cmp.h>
#include <openssl/err.h>
#include <openssl/http.h>
#include <openssl/httperr.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "enroll.h"
#include "idstore.h"

struct cmp_opts {
    const char *cmd;
    const char *server, *token, *identity, *subject, *secret_source, *ref;
    const char *bootstrap, *trusted, *tls_trusted, *type, *pin_source, *module;
    const char *provider, *state_dir;
    int p10cr, new_key;
    long if_expiring, timeout, grace;
};

/* The way to the CA, decided once per run: TLS and the proxy. */
struct cmp_conn {
    SSL_CTX *sctx;           /* https: the TLS client context; NULL: plain HTTP */
    OSSL_HTTP_REQ_CTX *http; /* the connection kept alive between messages */
    char server[258];        /* the CA's host as the URL gives it (IPv6 in brackets) */
    char host[256];          /* the same without brackets: SNI, name check */
    char port[8];
    char path[512];
    const char *proxy_url; /* the proxy's URL (the environment's), or "": direct */
    char proxy[300];       /* the proxy in effect, as host:port ("": direct) */
    int timeout;           /* seconds for the proxy's CONNECT */
    char tls_why[560];     /* why TLS to the CA failed, when we know better than libssl */
};

/* What one CMP exchange needs and gives. */
struct cmp_run {
    const struct cmp_opts *o;
    OSSL_LIB_CTX *lc;
    STACK_OF(X509) * anchors; /* trust for the new certificate; NULL: the caPubs */
    STACK_OF(X509) * chain;   /* untrusted intermediates */
    char why[600];            /* one line for the state file and the error */
    struct cmp_conn conn;
};

/* ---- usage ---- */

static void enroll_usage(FILE *out)
{
    fputs(
        "Usage: p11mtls enroll --server URL --token URI --identity NAME\n"
        "                      (--ref REF --secret-source SRC | --bootstrap LABEL "
        "--trusted FILE)\n"
        "                      [--subject DN] [--p10cr] [--type TYPE] [--timeout SECS]\n"
        "                      [--tls-trusted FILE] [--pin-source SRC] [--module PATH]\n"
        "                      [--provider PATH] [--state-dir DIR]\n"
        "\n"
        "Initial enrolment over CMP of the key labelled NAME on the token (generated on\n"
        "the token when there is none). The certificate is stored under the key's label\n"
        "and CKA_ID, the CA certificates of the answer (caPubs, extraCerts) as "
        "NAME-caN:\n"
        "the identity's chain and the trust anchors of later renewals.\n"
        "\n"
        "  --server URL         the CA: http[s]://host[:port]/path (https_proxy,\n"
        "                       http_proxy and no_proxy are honoured)\n"
        "  --token URI          the token (pkcs11:token=LABEL)\n"
        "  --identity NAME      label of the key and certificate on the token\n"
        "  --ref REF            the shared secret's reference (senderKID)\n"
        "  --secret-source SRC  the shared secret: file:PATH or env:NAME (PBM MAC)\n"
        "  --bootstrap LABEL    sign the request with the key and certificate LABEL\n"
        "                       already on the token (manufacturer certificate)\n"
        "  --trusted FILE       CA certificates that the answer must verify against\n"
        "                       (required with --bootstrap)\n"
        "  --subject DN         /CN=NAME/UID=DEVICE-ID (default /CN=NAME; the CA may\n"
        "                       fix it)\n"
        "  --p10cr              send a PKCS#10 request (p10cr) instead of an ir\n"
        "  --type TYPE          key type when one is generated: ec:P-256 (default),\n"
        "                       ec:P-384, rsa:2048, rsa:3072\n"
        "  --timeout SECS       give up after SECS, polling included (default 120)\n"
        "  --tls-trusted FILE   CA file for an https server (default: system CAs)\n"
        "  --pin-source SRC     user PIN: file:PATH or env:NAME (else asked on a "
        "terminal)\n"
        "  --module PATH        PKCS#11 module (default: p11-kit's proxy)\n"
        "  --provider PATH      p11mtls.so (default: $P11MTLS_PROVIDER, else installed)\n"
        "  --state-dir DIR      where the outcome of the last attempt is kept for\n"
        "                       'p11mtls status' (default " ENROLL_STATE_DIR ")\n"
        "\n"
        "Exit status: 0 enrolled, 1 failed (the message says why), 2 usage.\n",
        out);
}

static void renew_usage(FILE *out)
{
    fputs(
        "Usage: p11mtls renew --server URL --token URI --identity NAME [--new-key]\n"
        "                     [--if-expiring-within DAYS] [--timeout SECS]\n"
        "                     [--tls-trusted FILE] [--pin-source SRC] [--module PATH]\n"
        "                     [--provider PATH] [--state-dir DIR]\n"
        "\n"
        "Key update (kur) over CMP, protected by the identity's current key and\n"
        "certificate on the token; the CA's answer must verify against the identity's\n"
        "chain on the token. The new certificate goes on the token under the same label\n"
        "and CKA_ID; the old one is removed only after that. Configuration that names\n"
        "the identity (shim rules, openssl.cnf URIs) stays as it is.\n"
        "\n"
        "  --new-key                  a new key pair, generated on the token; the old\n"
        "                             one is removed once the new certificate is stored\n"
        "                             (name the identity by object= in URIs, not id=)\n"
        "  --if-expiring-within DAYS  do nothing (exit 0) while the certificate has\n"
        "                             more than DAYS days left\n"
        "  --grace SECS               with --new-key, wait SECS before removing the old\n"
        "                             key so that running programs move to the new one\n"
        "                             first (default 70: more than the shim's\n"
        "                             reload_interval)\n"
        "  (other options as for 'p11mtls enroll')\n",
        out);
}

/* ---- the outcome, for status ---- */

static void cmp_outcome(const struct cmp_opts *o, const char *action, int ok,
                        const char *why)
{
    char text[700];

    snprintf(text, sizeof(text), "action=%s\nresult=%s\nmessage=%s\n", action,
             ok ? "ok" : "failed", why);
    if (!enroll_state_write(o->state_dir, o->identity, text))
        tool_warn("could not record the outcome in %s",
                  o->state_dir != NULL ? o->state_dir : ENROLL_STATE_DIR);
}

/* ---- the CMP context ---- */

/* Records why the CA server's certificate was refused, for the error message. */
static int cmp_tls_verify(int ok, X509_STORE_CTX *xs)
{
    SSL *ssl = X509_STORE_CTX_get_ex_data(xs, SSL_get_ex_data_X509_STORE_CTX_idx());
    struct cmp_run *r = ssl != NULL ? SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl)) : NULL;
    X509 *x = X509_STORE_CTX_get0_cert(xs); /* the server's own certificate */
    char subject[128] = "?", issuer[128] = "?";

    if (ok || r == NULL || r->conn.tls_why[0] != '\0')
        return ok;
    if (x != NULL) {
        tool_name_str(X509_get_subject_name(x), subject, sizeof(subject));
        tool_name_str(X509_get_issuer_name(x), issuer, sizeof(issuer));
    }
    snprintf(r->conn.tls_why, sizeof(r->conn.tls_why),
             "TLS: the CA server %.100s is not trusted (%s; its certificate \"%s\" from "
             "\"%s\"; trusted: %.100s): nothing sent",
             r->conn.host, X509_verify_cert_error_string(X509_STORE_CTX_get_error(xs)),
             subject, issuer,
             r->o->tls_trusted != NULL ? r->o->tls_trusted : "the system's CAs");
    return ok;
}

/* The server's name for SNI and the certificate check (an address: its IP SAN). */
static int cmp_tls_name(SSL *ssl, const char *host)
{
    ASN1_OCTET_STRING *ip = a2i_IPADDRESS(host);

    if (ip != NULL) {
        ASN1_OCTET_STRING_free(ip);
        return X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host);
    }
    ERR_clear_error();
    return SSL_set_tlsext_host_name(ssl, host) && SSL_set1_host(ssl, host);
}

/*
 * OSSL_HTTP_bio_cb_t: at the connection, TLS on top of it; through a proxy, a CONNECT
 * tunnel first (OpenSSL's HTTP client proxies plain HTTP itself, HTTPS only this way).
 */
static BIO *cmp_tls_cb(BIO *bio, void *arg, int connect, int detail)
{
    struct cmp_run *r = arg;
    struct cmp_conn *c = &r->conn;
    BIO *sbio;
    SSL *ssl = NULL;

    if (!connect || !detail)
        return bio;
    if (c->proxy[0] != '\0' && !OSSL_HTTP_proxy_connect(bio, c->host, c->port, NULL, NULL,
                                                        c->timeout, NULL, NULL)) {
        snprintf(c->tls_why, sizeof(c->tls_why),
                 "the proxy %.150s opened no tunnel (CONNECT) to %.150s:%s", c->proxy,
                 c->host, c->port);
        return NULL;
    }
    if ((sbio = BIO_new_ssl(c->sctx, 1)) == NULL || BIO_get_ssl(sbio, &ssl) <= 0 ||
        !cmp_tls_name(ssl, c->host)) {
        BIO_free(sbio);
        return NULL;
    }
    return BIO_push(sbio, bio);
}

/*
 * The proxy OpenSSL's HTTP client takes for this server (http_proxy or https_proxy,
 * unless no_proxy names it) or NULL; c->proxy shows it as host:port, as a proxy URL may
 * carry credentials.
 */
static const char *cmp_proxy(struct cmp_conn *c, int tls)
{
    const char *p = OSSL_HTTP_adapt_proxy(NULL, NULL, c->host, tls);
    char *host = NULL, *port = NULL;

    c->proxy[0] = '\0';
    if (p == NULL)
        return NULL;
    if (OSSL_HTTP_parse_url(p, NULL, NULL, &host, &port, NULL, NULL, NULL, NULL))
        snprintf(c->proxy, sizeof(c->proxy), "%s:%s", host, port);
    else
        snprintf(c->proxy, sizeof(c->proxy), "in %s", tls ? "https_proxy" : "http_proxy");
    ERR_clear_error();
    OPENSSL_free(host);
    OPENSSL_free(port);
    return p;
}

static int cmp_tls(struct cmp_run *r)
{
    struct cmp_conn *c = &r->conn;
    const char *trusted = r->o->tls_trusted;

    if ((c->sctx = SSL_CTX_new(TLS_client_method())) == NULL)
        return 0;
    if (trusted != NULL ? !SSL_CTX_load_verify_file(c->sctx, trusted)
                        : !SSL_CTX_set_default_verify_paths(c->sctx)) {
        tool_ossl_err("--tls-trusted %s: no CA certificates could be read",
                      trusted != NULL ? trusted : "(the system's CAs)");
        return -1;
    }
    SSL_CTX_set_verify(c->sctx, SSL_VERIFY_PEER, cmp_tls_verify);
    return SSL_CTX_set_app_data(c->sctx, r);
}

/*
 * OSSL_CMP_transfer_cb_t: OpenSSL's own HTTP exchange, made as its default
 * (OSSL_CMP_MSG_http_perform) makes it, less the Content-Type check. OpenSSL 3.0's
 * OSSL_HTTP_REQ_CTX_nbio keeps "Content-Type seen" in a local variable: when the header
 * lines of the answer come in pieces (proxies such as tinyproxy write them one by one)
 * and it has to wait between two, it forgets the line and fails with "missing content
 * type". The body still has to be a CMP message in DER.
 */
static OSSL_CMP_MSG *cmp_transfer(OSSL_CMP_CTX *ctx, const OSSL_CMP_MSG *req)
{
    struct cmp_run *r = OSSL_CMP_CTX_get_transfer_cb_arg(ctx);
    struct cmp_conn *c = &r->conn;
    STACK_OF(CONF_VALUE) *headers = NULL;
    BIO *req_mem = BIO_new(BIO_s_mem()), *rsp = NULL;
    OSSL_CMP_MSG *msg = NULL;

    if (req_mem != NULL && i2d_OSSL_CMP_MSG_bio(req_mem, req) > 0 &&
        X509V3_add_value("Pragma", "no-cache", &headers))
        rsp = OSSL_HTTP_transfer(
            &c->http, c->server, c->port, c->path, c->sctx != NULL, c->proxy_url, NULL,
            NULL, NULL, c->sctx != NULL ? cmp_tls_cb : NULL, r, 0, headers,
            "application/pkixcmp", req_mem, NULL, 1, OSSL_HTTP_DEFAULT_MAX_RESP_LEN,
            OSSL_CMP_CTX_get_option(ctx, OSSL_CMP_OPT_MSG_TIMEOUT),
            OSSL_CMP_CTX_get_option(ctx, OSSL_CMP_OPT_KEEP_ALIVE));
    if (rsp != NULL)
        msg = d2i_OSSL_CMP_MSG_bio(rsp, NULL);
    BIO_free(rsp);
    BIO_free(req_mem);
    sk_CONF_VALUE_pop_free(headers, X509V3_conf_free);
    return msg;
}

static int cmp_server(OSSL_CMP_CTX *ctx, struct cmp_run *r)
{
    struct cmp_conn *c = &r->conn;
    const char *url = r->o->server;
    char *host = NULL, *path = NULL;
    int tls = 0, port = 0, ok;

    if (!OSSL_HTTP_parse_url(url, &tls, NULL, &host, NULL, &port, &path, NULL, NULL)) {
        ERR_clear_error();
        tool_err("--server: '%s' is not an http:// or https:// URL", url);
        return 0;
    }
    ok = strlen(host) < sizeof(c->server) && strlen(path) < sizeof(c->path);
    snprintf(c->server, sizeof(c->server), "%s", host);
    snprintf(c->path, sizeof(c->path), "%s", path);
    snprintf(c->host, sizeof(c->host), "%s", host[0] == '[' ? host + 1 : host);
    c->host[strcspn(c->host, "]")] = '\0';
    snprintf(c->port, sizeof(c->port), "%d", port);
    c->timeout = (int) (r->o->timeout < 30 ? r->o->timeout : 30);
    OPENSSL_free(host);
    OPENSSL_free(path);
    if (!ok) {
        tool_err("--server: '%s' is too long", url);
        return 0;
    }
    /* Decided once, so that the CONNECT in cmp_tls_cb agrees with the HTTP client. */
    c->proxy_url = cmp_proxy(c, tls);
    if (c->proxy_url == NULL)
        c->proxy_url = "";
    ok = OSSL_CMP_CTX_set_transfer_cb(ctx, cmp_transfer) &&
         OSSL_CMP_CTX_set_transfer_cb_arg(ctx, r);
    if (ok && tls && (ok = cmp_tls(r)) < 0)
        return 0;
    if (!ok)
        tool_ossl_err("cannot set up the connection to %s", url);
    return ok;
}

/* The end of a run's exchanges: the context, the connection, TLS. */
static void cmp_ctx_free(struct cmp_run *r, OSSL_CMP_CTX *ctx)
{
    OSSL_CMP_CTX_free(ctx);
    OSSL_HTTP_close(r->conn.http, 1);
    r->conn.http = NULL;
    SSL_CTX_free(r->conn.sctx);
    r->conn.sctx = NULL;
}

/* The new certificate must chain to the anchors (the caPubs when there are none). */
static int cmp_certconf(OSSL_CMP_CTX *ctx, X509 *cert, int fail_info, const char **text)
{
    struct cmp_run *r = OSSL_CMP_CTX_get_certConf_cb_arg(ctx);
    STACK_OF(X509) *capubs = r->anchors == NULL ? OSSL_CMP_CTX_get1_caPubs(ctx) : NULL;
    STACK_OF(X509) *extra = OSSL_CMP_CTX_get1_extraCertsIn(ctx);
    STACK_OF(X509) *anchors = r->anchors != NULL ? r->anchors : capubs;
    X509_STORE *st = X509_STORE_new();
    X509_STORE_CTX *vc = X509_STORE_CTX_new_ex(r->lc, NULL);
    int ok = st != NULL && vc != NULL && sk_X509_num(anchors) > 0;

    for (int i = 0; ok && i < sk_X509_num(anchors); i++)
        ok = X509_STORE_add_cert(st, sk_X509_value(anchors, i));
    for (int i = 0; ok && extra != NULL && i < sk_X509_num(r->chain); i++)
        ok = X509_add_cert(extra, sk_X509_value(r->chain, i), X509_ADD_FLAG_UP_REF);
    ok = ok && X509_STORE_CTX_init(vc, st, cert, extra != NULL ? extra : r->chain) &&
         X509_STORE_CTX_set_purpose(vc, X509_PURPOSE_SSL_CLIENT) &&
         X509_verify_cert(vc) > 0;
    if (fail_info != 0 && r->why[0] == '\0')
        snprintf(r->why, sizeof(r->why),
                 "the CA's certificate is refused (%s): nothing stored",
                 *text != NULL ? *text : "not acceptable");
    if (fail_info == 0 && !ok) {
        int err = vc != NULL ? X509_STORE_CTX_get_error(vc) : 0;

        snprintf(r->why, sizeof(r->why),
                 "the CA's certificate does not verify against the trusted CA "
                 "certificates (%s): refused, nothing stored",
                 sk_X509_num(anchors) > 0 ? X509_verify_cert_error_string(err)
                                          : "the CA sent no caPubs: give --trusted");
        *text = "certificate not trusted";
        fail_info = 1 << OSSL_CMP_PKIFAILUREINFO_incorrectData;
    }
    X509_STORE_CTX_free(vc);
    X509_STORE_free(st);
    sk_X509_pop_free(capubs, X509_free);
    sk_X509_pop_free(extra, X509_free);
    ERR_clear_error();
    return fail_info;
}

static OSSL_CMP_CTX *cmp_ctx(struct cmp_run *r)
{
    OSSL_CMP_CTX *ctx = OSSL_CMP_CTX_new(r->lc, NULL);

    if (ctx == NULL) {
        tool_ossl_err("cannot create the CMP context");
        return NULL;
    }
    /* Errors reach the user through tool_ossl_err, not OpenSSL's own CMP log. */
    if (!OSSL_CMP_CTX_set_log_verbosity(ctx, OSSL_CMP_LOG_CRIT) ||
        !OSSL_CMP_CTX_set_option(ctx, OSSL_CMP_OPT_TOTAL_TIMEOUT, (int) r->o->timeout) ||
        !OSSL_CMP_CTX_set_option(ctx, OSSL_CMP_OPT_MSG_TIMEOUT,
                                 r->o->timeout < 30 ? (int) r->o->timeout : 30) ||
        !OSSL_CMP_CTX_set_certConf_cb(ctx, cmp_certconf) ||
        !OSSL_CMP_CTX_set_certConf_cb_arg(ctx, r) || !cmp_server(ctx, r)) {
        OSSL_CMP_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

/*
 * A transfer error from a server that answered, only not with CMP (an HTTP error status,
 * another content type, a body that is not a CMP message): 1 with what it answered in
 * buf. 0 when nothing answered (no connection, timeout). The transfer's first error
 * says which: OpenSSL's CMP client clears the queue before it sends.
 */
static int cmp_answered_not_cmp(char *buf, size_t n)
{
    const char *data = NULL;
    int flags = 0;
    unsigned long e = ERR_peek_error_data(&data, &flags);
    const char *what = ERR_reason_error_string(e);

    if (ERR_GET_LIB(e) == ERR_LIB_HTTP) {
        switch (ERR_GET_REASON(e)) {
        case HTTP_R_CONNECT_FAILURE:
        case HTTP_R_ERROR_SENDING:
        case HTTP_R_ERROR_RECEIVING:
        case HTTP_R_FAILED_READING_DATA:
        case HTTP_R_RETRY_TIMEOUT:
        case HTTP_R_SERVER_CANCELED_CONNECTION:
            return 0;
        default:
            break;
        }
    } else if (ERR_GET_LIB(e) != ERR_LIB_ASN1) {
        return 0;
    }
    snprintf(buf, n, "%s%s%s%s", what != NULL ? what : "?",
             (flags & ERR_TXT_STRING) && data != NULL && *data != '\0' ? ": " : "",
             (flags & ERR_TXT_STRING) && data != NULL ? data : "",
             ERR_GET_LIB(e) == ERR_LIB_ASN1 ? " (not a CMP message)" : "");
    return 1;
}

/* Why the exchange failed, in one line (into r->why unless the callback wrote it). */
static void cmp_why(struct cmp_run *r, OSSL_CMP_CTX *ctx)
{
    char si[400], answer[300];
    unsigned long e = ERR_peek_last_error();
    int lib = ERR_GET_LIB(e), reason = ERR_GET_REASON(e);
    int status = OSSL_CMP_CTX_get_status(ctx);
    char err[256];

    if (r->why[0] != '\0')
        return;
    ERR_error_string_n(e, err, sizeof(err));
    if (r->conn.tls_why[0] != '\0')
        snprintf(r->why, sizeof(r->why), "%s", r->conn.tls_why);
    else if (ERR_GET_LIB(ERR_peek_error()) == ERR_LIB_SSL)
        snprintf(r->why, sizeof(r->why), "TLS with the CA at %s failed: %s", r->o->server,
                 ERR_reason_error_string(ERR_peek_error()));
    else if (status == OSSL_CMP_PKISTATUS_rejection &&
             OSSL_CMP_CTX_snprint_PKIStatus(ctx, si, sizeof(si)) != NULL)
        snprintf(r->why, sizeof(r->why), "the CA refused the request: %s", si);
    else if (status == OSSL_CMP_PKISTATUS_waiting)
        snprintf(r->why, sizeof(r->why),
                 "the CA asked to wait (polling) longer than --timeout %ld s allows",
                 r->o->timeout);
    else if (status < 0 && lib == ERR_LIB_CMP && reason == CMP_R_TRANSFER_ERROR &&
             cmp_answered_not_cmp(answer, sizeof(answer)))
        snprintf(
            r->why, sizeof(r->why),
            "the server at %s answered, but not as a CMP server (%s): check --server",
            r->o->server, answer);
    else if (status < 0 && lib == ERR_LIB_CMP &&
             (reason == CMP_R_TRANSFER_ERROR || reason == CMP_R_TOTAL_TIMEOUT))
        snprintf(r->why, sizeof(r->why), "the CA at %s is unreachable%s%s (%s)",
                 r->o->server, r->conn.proxy[0] != '\0' ? " via the proxy " : "",
                 r->conn.proxy, err);
    else if (lib == ERR_LIB_CMP && reason == CMP_R_ERROR_VALIDATING_PROTECTION)
        snprintf(r->why, sizeof(r->why),
                 "the CA's answer is not signed by a trusted CA (or the shared secret "
                 "is wrong): refused, nothing stored");
    else if (lib == ERR_LIB_CMP && reason == CMP_R_CERTIFICATE_NOT_ACCEPTED)
        snprintf(r->why, sizeof(r->why),
                 "the CA's certificate is not for this key or not trusted: refused, "
                 "nothing stored (%s)",
                 err);
    else
        snprintf(r->why, sizeof(r->why), "CMP exchange with %s failed: %s", r->o->server,
                 err);
}

/* One exchange of type (OSSL_CMP_IR, _P10CR, _KUR); the new certificate or NULL. */
static X509 *cmp_exec(struct cmp_run *r, OSSL_CMP_CTX *ctx, int type)
{
    X509 *x = OSSL_CMP_exec_certreq(ctx, type, NULL);

    if (x == NULL) {
        cmp_why(r, ctx);
        tool_err("%s", r->why);
        if (getenv("P11MTLS_DEBUG") != NULL)
            ERR_print_errors_fp(stderr);
        ERR_clear_error();
        return NULL;
    }
    if (!X509_up_ref(x))
        return NULL;
    return x;
}

/* The device's clock against the certificate: a start in the future means one is off.
 */
static int cmp_check_clock(struct cmp_run *r, X509 *x)
{
    time_t slack = time(NULL) + 300;

    if (X509_cmp_time(X509_get0_notBefore(x), &slack) <= 0)
        return 1;
    snprintf(r->why, sizeof(r->why),
             "clock skew: the new certificate is valid only from a time more than 5 "
             "minutes ahead of this device's clock; check the clock (nothing stored)");
    tool_err("%s", r->why);
    return 0;
}

/* The current certificate starting in the future says the same before any exchange. */
static int renew_check_clock(struct cmp_run *r, X509 *cur)
{
    time_t slack = time(NULL) + 300;
    char nb[32];

    if (X509_cmp_time(X509_get0_notBefore(cur), &slack) <= 0)
        return 1;
    snprintf(r->why, sizeof(r->why),
             "clock skew: the current certificate is valid from %s, more than 5 minutes "
             "ahead of this device's clock; check the clock (nothing stored)",
             tool_time_str(X509_get0_notBefore(cur), nb, sizeof(nb)));
    tool_err("%s", r->why);
    return 0;
}

/* ---- enrol ---- */

static X509_REQ *enroll_csr(struct cmp_run *r, EVP_PKEY *key, const X509_NAME *subj)
{
    X509_REQ *req = X509_REQ_new_ex(r->lc, NULL);
    EVP_MD_CTX *mctx = EVP_MD_CTX_new();
    int ok = req != NULL && mctx != NULL && X509_REQ_set_version(req, 0) &&
             X509_REQ_set_subject_name(req, subj) && X509_REQ_set_pubkey(req, key) &&
             EVP_DigestSignInit_ex(mctx, NULL, "SHA256", r->lc, NULL, key, NULL) > 0 &&
             X509_REQ_sign_ctx(req, mctx) > 0;

    EVP_MD_CTX_free(mctx);
    if (!ok) {
        tool_ossl_err("cannot make the PKCS#10 request on the token");
        X509_REQ_free(req);
        return NULL;
    }
    return req;
}

/* The CA's signed answers must verify against anchors. */
static int cmp_trust(OSSL_CMP_CTX *ctx, STACK_OF(X509) * anchors)
{
    X509_STORE *ts = X509_STORE_new();
    int ok = ts != NULL;

    for (int i = 0; ok && i < sk_X509_num(anchors); i++)
        ok = X509_STORE_add_cert(ts, sk_X509_value(anchors, i));
    if (ok && OSSL_CMP_CTX_set0_trustedStore(ctx, ts))
        return 1;
    X509_STORE_free(ts);
    return 0;
}

/* Protection of the ir: the shared secret (PBM) or the bootstrap key and certificate. */
static int enroll_protect(struct cmp_run *r, struct ids *ids, OSSL_CMP_CTX *ctx,
                          P11M_LOGIN_INFO *li)
{
    const struct cmp_opts *o = r->o;
    struct ids boot;
    P11M_OBJ *bkey = NULL;
    EVP_PKEY *pk = NULL;
    char *uri = NULL;
    size_t idlen;
    const unsigned char *id;
    P11M_PIN sec;
    P11KitUri *tu;
    int ok = 0;

    if (o->secret_source != NULL) {
        if (p11m_pin_load(o->secret_source, &sec) != CKR_OK)
            return 0;
        ok = OSSL_CMP_CTX_set1_referenceValue(ctx, (const unsigned char *) o->ref,
                                              (int) strlen(o->ref)) &&
             OSSL_CMP_CTX_set1_secretValue(ctx, (unsigned char *) sec.buf, (int) sec.len);
        p11m_pin_cleanse(&sec);
        if (!ok)
            tool_ossl_err("cannot set the shared secret");
        return ok;
    }
    if ((tu = tool_uri(o->cmd, "--token", o->token)) == NULL)
        return 0;
    if (ids_load(&boot, tu, o->module, o->bootstrap) && ids_cert(&boot) != NULL &&
        (id = ids_id(&boot, &idlen)) != NULL &&
        (bkey = ids_key(ids, o->bootstrap, id, idlen, li)) != NULL &&
        (uri = tool_obj_uri(ids->tok, CKO_PRIVATE_KEY, id, idlen, o->bootstrap)) !=
            NULL &&
        (pk = tool_load_key(r->lc, uri, o->pin_source, o->module)) != NULL)
        ok = OSSL_CMP_CTX_set1_cert(ctx, ids_cert(&boot)) &&
             OSSL_CMP_CTX_set1_pkey(ctx, pk) &&
             OSSL_CMP_CTX_set1_untrusted(ctx, boot.chain) && cmp_trust(ctx, r->anchors);
    else if (pk == NULL && uri == NULL)
        tool_err("--bootstrap: no certificate and key labelled '%s' on the token",
                 o->bootstrap);
    EVP_PKEY_free(pk);
    free(uri);
    p11m_obj_free(bkey);
    ids_free(&boot);
    p11_kit_uri_free(tu);
    return ok;
}

/* The identity's key: the existing one, else a new one generated on the token. */
static P11M_OBJ *enroll_key(const struct cmp_opts *o, struct ids *ids,
                            P11M_LOGIN_INFO *li)
{
    unsigned char id[IDS_ID_MAX];
    size_t idlen;
    CK_SESSION_HANDLE s;
    P11M_OBJ *key = ids_key(ids, o->identity, NULL, 0, li);
    int ok;

    if (key != NULL || p11m_token_login(ids->tok, li) != CKR_OK)
        return key;
    if (p11m_session_open_rw(ids->tok, &s) != CKR_OK)
        return NULL;
    ok = ids_generate(ids, s, o->type, o->identity, id, &idlen);
    p11m_session_close(ids->tok, s);
    if (!ok)
        return NULL;
    fprintf(stderr, "p11mtls: generated a %s key '%s' on the token\n", o->type,
            o->identity);
    return ids_key(ids, o->identity, id, idlen, li);
}

static int enroll_store(struct ids *ids, P11M_OBJ *key, X509 *x, STACK_OF(X509) * cas,
                        P11M_LOGIN_INFO *li)
{
    CK_SESSION_HANDLE s;
    size_t idlen;
    const unsigned char *id = p11m_obj_id(key, &idlen);
    int ok;

    if (p11m_token_login(ids->tok, li) != CKR_OK ||
        p11m_session_open_rw(ids->tok, &s) != CKR_OK)
        return 0;
    /* The chain first: a crash before the certificate leaves only CA certificates. */
    ok = ids_store_chain(ids, s, cas, x) &&
         ids_store_cert(ids, s, x, ids->label, id, idlen);
    p11m_session_close(ids->tok, s);
    return ok;
}

/* The CA certificates of the answer: caPubs and the CA certificates of extraCerts. */
static STACK_OF(X509) * cmp_ca_certs(OSSL_CMP_CTX *ctx)
{
    STACK_OF(X509) *out = OSSL_CMP_CTX_get1_caPubs(ctx);
    STACK_OF(X509) *extra = OSSL_CMP_CTX_get1_extraCertsIn(ctx);

    if (out == NULL)
        out = sk_X509_new_null();
    for (int i = 0; out != NULL && i < sk_X509_num(extra); i++) {
        X509 *x = sk_X509_value(extra, i);

        if (X509_check_ca(x) > 0)
            X509_add_cert(out, x, X509_ADD_FLAG_UP_REF | X509_ADD_FLAG_NO_DUP);
    }
    sk_X509_pop_free(extra, X509_free);
    return out;
}

static STACK_OF(X509) * cmp_read_trusted(const char *path)
{
    return path != NULL ? tool_read_certs(path) : NULL;
}

static int enroll_run(const struct cmp_opts *o)
{
    struct cmp_run r = {o, NULL, NULL, NULL, ""};
    P11KitUri *tu = tool_uri(o->cmd, "--token", o->token);
    X509_NAME *subj = NULL;
    X509_REQ *csr = NULL;
    OSSL_CMP_CTX *ctx = NULL;
    P11M_OBJ *key = NULL;
    EVP_PKEY *pk = NULL;
    STACK_OF(X509) *cas = NULL;
    P11M_LOGIN_INFO li;
    struct ids ids;
    X509 *x = NULL;
    char *uri = NULL, dn[300];
    size_t idlen;
    const unsigned char *id;
    int ok = 0;

    memset(&ids, 0, sizeof(ids));
    if (tu == NULL)
        return TOOL_EXIT_USAGE;
    snprintf(dn, sizeof(dn), "/CN=%s", o->identity);
    if ((subj = csr_parse_subject(o->subject != NULL ? o->subject : dn)) == NULL) {
        p11_kit_uri_free(tu);
        return TOOL_EXIT_USAGE;
    }
    tool_login_info(&li, o->pin_source);
    if ((o->trusted != NULL && (r.anchors = cmp_read_trusted(o->trusted)) == NULL) ||
        !ids_load(&ids, tu, o->module, o->identity) ||
        (r.lc = tool_libctx(tool_provider_path(o->provider))) == NULL)
        goto done;
    if (ids_cert(&ids) != NULL &&
        X509_cmp_time(X509_get0_notAfter(ids_cert(&ids)), NULL) > 0)
        tool_warn("'%s' has a valid certificate already; enrolling again", o->identity);
    if ((key = enroll_key(o, &ids, &li)) == NULL) {
        if (tool_core_last_reason() == 0)
            tool_err("no key '%s' on the token and none could be generated", o->identity);
        goto done;
    }
    id = p11m_obj_id(key, &idlen);
    if ((uri = tool_obj_uri(ids.tok, CKO_PRIVATE_KEY, id, idlen, o->identity)) == NULL ||
        (pk = tool_load_key(r.lc, uri, o->pin_source, o->module)) == NULL ||
        (ctx = cmp_ctx(&r)) == NULL || !enroll_protect(&r, &ids, ctx, &li))
        goto done;
    if (o->p10cr) {
        ok = (csr = enroll_csr(&r, pk, subj)) != NULL &&
             OSSL_CMP_CTX_set1_p10CSR(ctx, csr);
    } else {
        ok = EVP_PKEY_up_ref(pk) && OSSL_CMP_CTX_set0_newPkey(ctx, 1, pk) &&
             OSSL_CMP_CTX_set1_subjectName(ctx, subj);
    }
    if (!ok || (x = cmp_exec(&r, ctx, o->p10cr ? OSSL_CMP_P10CR : OSSL_CMP_IR)) == NULL ||
        !cmp_check_clock(&r, x)) {
        ok = 0;
        goto done;
    }
    cas = cmp_ca_certs(ctx);
    ids_step(2, "enroll: certificate received");
    ok = enroll_store(&ids, key, x, cas, &li);
    if (ok) {
        char *curi = tool_obj_uri(ids.tok, CKO_CERTIFICATE, id, idlen, o->identity);
        char sb[300];

        fprintf(stderr, "p11mtls: enrolled '%s': %s\n", o->identity,
                tool_name_str(X509_get_subject_name(x), sb, sizeof(sb)));
        printf("key  %s\ncert %s\n", uri, curi != NULL ? curi : "");
        free(curi);
    }
done:
    if (r.why[0] == '\0' && !ok)
        snprintf(r.why, sizeof(r.why),
                 "enrolment failed before reaching the CA (token, "
                 "PIN or configuration: see the error above)");
    cmp_outcome(o, "enroll", ok, ok ? "enrolled" : r.why);
    sk_X509_pop_free(cas, X509_free);
    X509_free(x);
    X509_REQ_free(csr);
    cmp_ctx_free(&r, ctx);
    EVP_PKEY_free(pk);
    free(uri);
    p11m_obj_free(key);
    ids_free(&ids);
    sk_X509_pop_free(r.anchors, X509_free);
    OSSL_LIB_CTX_free(r.lc);
    X509_NAME_free(subj);
    p11_kit_uri_free(tu);
    return ok ? TOOL_EXIT_OK : TOOL_EXIT_FAIL;
}

/* ---- renew ---- */

/* Self-signed certificates of the identity's chain are its trust anchors. */
static void renew_trust(struct cmp_run *r, const struct ids *ids)
{
    r->anchors = sk_X509_new_null();
    r->chain = sk_X509_new_null();
    for (int i = 0; i < sk_X509_num(ids->chain); i++) {
        X509 *x = sk_X509_value(ids->chain, i);
        int self = X509_check_issued(x, x) == X509_V_OK;

        X509_add_cert(self ? r->anchors : r->chain, x, X509_ADD_FLAG_UP_REF);
    }
}

/*
 * Removes what a complete renewal superseded: certificates of the identity that end
 * before the chosen one, and key pairs (other than the chosen one's) left without a
 * certificate. Only when the chosen certificate is valid now.
 */
static int renew_tidy(struct ids *ids, CK_SESSION_HANDLE s, P11M_LOGIN_INFO *li,
                      long grace)
{
    X509 *cur = ids_cert(ids);
    int ok = 1;

    if (cur == NULL || X509_cmp_time(X509_get0_notBefore(cur), NULL) >= 0 ||
        X509_cmp_time(X509_get0_notAfter(cur), NULL) <= 0)
        return 1;
    for (size_t i = 0; ok && i < ids->n_certs; i++) {
        if ((int) i == ids->chosen || X509_cmp(ids->certs[i].x, cur) == 0)
            continue;
        ok = ids_destroy_cert(ids, s, ids->certs[i].x, ids->label);
        ids_step(6, "old certificate removed");
    }
    /*
     * Old key pairs (left without a certificate) go last, after the grace period: a
     * running program signs with the old key until its next reload of the identity.
     */
    return ok && ids_destroy_orphans(ids, s, li, grace);
}

/* Switches a complete "NAME.new" pair over to NAME (step 4 and 5). */
static int renew_switch(struct ids *ids, CK_SESSION_HANDLE s, const unsigned char *id,
                        size_t idlen)
{
    char pending[240];

    snprintf(pending, sizeof(pending), "%s" IDS_NEW, ids->label);
    if (!ids_relabel(ids, s, CKO_PRIVATE_KEY, id, idlen, pending, ids->label) ||
        !ids_relabel(ids, s, CKO_PUBLIC_KEY, id, idlen, pending, ids->label))
        return 0;
    ids_step(4, "new key relabelled");
    if (!ids_relabel(ids, s, CKO_CERTIFICATE, id, idlen, pending, ids->label))
        return 0;
    ids_step(5, "new certificate relabelled");
    return 1;
}

struct renew_state {
    struct ids ids;     /* NAME */
    struct ids pending; /* NAME.new */
    P11M_OBJ *key;      /* the current key */
    P11M_OBJ *new_key;  /* --new-key: the pending key */
};

static int renew_write(const struct cmp_opts *o, struct renew_state *st, X509 *x,
                       STACK_OF(X509) * cas, P11M_LOGIN_INFO *li)
{
    P11M_OBJ *k = st->new_key != NULL ? st->new_key : st->key;
    CK_SESSION_HANDLE s;
    size_t idlen;
    const unsigned char *id = p11m_obj_id(k, &idlen);
    int ok;

    (void) o;
    if (X509_cmp(x, ids_cert(&st->ids)) == 0) {
        fprintf(stderr, "p11mtls: the CA returned the current certificate again\n");
        return 1;
    }
    if (p11m_token_login(st->ids.tok, li) != CKR_OK ||
        p11m_session_open_rw(st->ids.tok, &s) != CKR_OK)
        return 0;
    ok = ids_store_chain(&st->ids, s, cas, x) &&
         ids_store_cert(&st->ids, s, x,
                        st->new_key != NULL ? st->pending.label : st->ids.label, id,
                        idlen);
    if (ok)
        ids_step(3, "new certificate stored");
    if (ok && st->new_key != NULL)
        ok = renew_switch(&st->ids, s, id, idlen);
    p11m_session_close(st->ids.tok, s);
    return ok;
}

/* Reloads the identity and removes what the renewal superseded. */
static int renew_finish(const struct cmp_opts *o, struct renew_state *st, P11KitUri *tu,
                        P11M_LOGIN_INFO *li)
{
    CK_SESSION_HANDLE s;
    int ok;

    ids_free(&st->ids);
    if (!ids_load(&st->ids, tu, o->module, o->identity) ||
        p11m_token_login(st->ids.tok, li) != CKR_OK ||
        p11m_session_open_rw(st->ids.tok, &s) != CKR_OK)
        return 0;
    ok = renew_tidy(&st->ids, s, li, o->grace);
    p11m_session_close(st->ids.tok, s);
    return ok;
}

/*
 * What an interrupted --new-key renewal left: a complete pending pair is switched over
 * (returns 1: done), a lone pending key is kept in st->new_key for reuse.
 */
static int renew_recover(const struct cmp_opts *o, struct renew_state *st, P11KitUri *tu,
                         P11M_LOGIN_INFO *li)
{
    char pending[240];
    X509 *px;
    size_t idlen;
    const unsigned char *id;
    CK_SESSION_HANDLE s;
    int ok;

    snprintf(pending, sizeof(pending), "%s" IDS_NEW, o->identity);
    if (!ids_load(&st->pending, tu, o->module, pending))
        return -1;
    px = ids_cert(&st->pending);
    if (px != NULL && X509_cmp_time(X509_get0_notAfter(px), NULL) > 0) {
        id = ids_id(&st->pending, &idlen);
        if (p11m_token_login(st->ids.tok, li) != CKR_OK ||
            p11m_session_open_rw(st->ids.tok, &s) != CKR_OK)
            return -1;
        fprintf(stderr, "p11mtls: finishing an interrupted renewal of '%s'\n",
                o->identity);
        ok = renew_switch(&st->ids, s, id, idlen);
        p11m_session_close(st->ids.tok, s);
        return ok ? 1 : -1;
    }
    if (o->new_key)
        st->new_key = ids_key(&st->pending, pending, NULL, 0, li);
    return 0;
}

static int renew_new_key(const struct cmp_opts *o, struct renew_state *st,
                         P11M_LOGIN_INFO *li)
{
    unsigned char id[IDS_ID_MAX];
    size_t idlen;
    CK_SESSION_HANDLE s;
    int ok;

    if (st->new_key != NULL)
        return 1;
    if (p11m_session_open_rw(st->ids.tok, &s) != CKR_OK)
        return 0;
    ok = ids_generate(&st->ids, s, o->type, st->pending.label, id, &idlen);
    p11m_session_close(st->ids.tok, s);
    if (ok)
        ids_step(1, "new key generated");
    return ok && (st->new_key =
                      ids_key(&st->pending, st->pending.label, id, idlen, li)) != NULL;
}

static EVP_PKEY *renew_load(struct cmp_run *r, struct ids *ids, P11M_OBJ *key)
{
    size_t idlen;
    const unsigned char *id = p11m_obj_id(key, &idlen);
    char *uri = tool_obj_uri(ids->tok, CKO_PRIVATE_KEY, id, idlen, p11m_obj_label(key));
    EVP_PKEY *pk =
        uri != NULL ? tool_load_key(r->lc, uri, r->o->pin_source, r->o->module) : NULL;

    free(uri);
    return pk;
}

/* The exchange; the new certificate (CA certificates into *cas) or NULL. */
static X509 *renew_kur(struct cmp_run *r, struct renew_state *st, STACK_OF(X509) * *cas)
{
    OSSL_CMP_CTX *ctx = cmp_ctx(r);
    EVP_PKEY *pk = ctx != NULL ? renew_load(r, &st->ids, st->key) : NULL;
    EVP_PKEY *npk = pk != NULL && st->new_key != NULL
                        ? renew_load(r, &st->pending, st->new_key)
                        : NULL;
    X509 *x = NULL;
    int ok = pk != NULL && (st->new_key == NULL || npk != NULL) &&
             cmp_trust(ctx, r->anchors) && OSSL_CMP_CTX_set1_untrusted(ctx, r->chain) &&
             OSSL_CMP_CTX_set1_cert(ctx, ids_cert(&st->ids)) &&
             OSSL_CMP_CTX_set1_oldCert(ctx, ids_cert(&st->ids)) &&
             OSSL_CMP_CTX_set1_pkey(ctx, pk) &&
             (npk == NULL || OSSL_CMP_CTX_set0_newPkey(ctx, 1, npk));
    if (ok)
        npk = NULL;
    if (ok && (x = cmp_exec(r, ctx, OSSL_CMP_KUR)) != NULL && !cmp_check_clock(r, x)) {
        X509_free(x);
        x = NULL;
    }
    if (x != NULL)
        *cas = cmp_ca_certs(ctx);
    EVP_PKEY_free(npk);
    EVP_PKEY_free(pk);
    cmp_ctx_free(r, ctx);
    return x;
}

static int renew_run(const struct cmp_opts *o)
{
    struct cmp_run r = {o, NULL, NULL, NULL, ""};
    P11KitUri *tu = tool_uri(o->cmd, "--token", o->token);
    struct renew_state st;
    STACK_OF(X509) *cas = NULL;
    P11M_LOGIN_INFO li;
    X509 *cur, *x = NULL;
    size_t idlen;
    const unsigned char *id;
    int ok = 0, rec;
    long left;

    memset(&st, 0, sizeof(st));
    if (tu == NULL)
        return TOOL_EXIT_USAGE;
    tool_login_info(&li, o->pin_source);
    if (!ids_load(&st.ids, tu, o->module, o->identity))
        goto done;
    if ((cur = ids_cert(&st.ids)) == NULL) {
        snprintf(r.why, sizeof(r.why),
                 "no certificate labelled '%s' on the token: enrol it first",
                 o->identity);
        tool_err("%s", r.why);
        goto done;
    }
    if ((rec = renew_recover(o, &st, tu, &li)) < 0)
        goto done;
    if (rec == 1) {
        ok = renew_finish(o, &st, tu, &li);
        goto done;
    }
    if (!renew_check_clock(&r, cur))
        goto done;
    left = tool_days_left(X509_get0_notAfter(cur));
    if (o->if_expiring >= 0 && left > o->if_expiring) {
        fprintf(stderr, "p11mtls: '%s' has %ld days left (more than %ld): not renewed\n",
                o->identity, left, o->if_expiring);
        ok = renew_finish(o, &st, tu, &li);
        snprintf(r.why, sizeof(r.why), "fresh: %ld days left", left);
        goto done;
    }
    if (left < 0)
        tool_warn("the certificate of '%s' has expired; the CA may refuse to renew it",
                  o->identity);
    id = ids_id(&st.ids, &idlen);
    if ((st.key = ids_key(&st.ids, o->identity, id, idlen, &li)) == NULL) {
        if (tool_core_last_reason() == 0)
            tool_err("no private key labelled '%s' for its certificate on the token",
                     o->identity);
        goto done;
    }
    renew_trust(&r, &st.ids);
    if ((o->new_key && !renew_new_key(o, &st, &li)) ||
        (r.lc = tool_libctx(tool_provider_path(o->provider))) == NULL ||
        (x = renew_kur(&r, &st, &cas)) == NULL)
        goto done;
    ids_step(2, "new certificate received");
    ok = renew_write(o, &st, x, cas, &li) && renew_finish(o, &st, tu, &li);
    if (ok) {
        char nb[32], serial[80];
        BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
        char *hex = bn != NULL ? BN_bn2hex(bn) : NULL;

        snprintf(serial, sizeof(serial), "%s", hex != NULL ? hex : "?");
        OPENSSL_free(hex);
        BN_free(bn);
        snprintf(r.why, sizeof(r.why), "renewed%s: serial %s, valid until %s",
                 o->new_key ? " with a new key" : "", serial,
                 tool_time_str(X509_get0_notAfter(x), nb, sizeof(nb)));
        printf("%s\n", r.why);
    }
done:
    if (r.why[0] == '\0' && !ok)
        snprintf(r.why, sizeof(r.why),
                 "renewal failed before reaching the CA (token, "
                 "PIN or configuration: see the error above)");
    cmp_outcome(o, "renew", ok, ok ? r.why : r.why);
    sk_X509_pop_free(cas, X509_free);
    X509_free(x);
    p11m_obj_free(st.key);
    p11m_obj_free(st.new_key);
    ids_free(&st.ids);
    ids_free(&st.pending);
    sk_X509_pop_free(r.anchors, X509_free);
    sk_X509_pop_free(r.chain, X509_free);
    OSSL_LIB_CTX_free(r.lc);
    p11_kit_uri_free(tu);
    return ok ? TOOL_EXIT_OK : TOOL_EXIT_FAIL;
}

/* ---- options ---- */

static const struct option cmp_longopts[] = {
    {"server", required_argument, NULL, 's'},
    {"token", required_argument, NULL, 't'},
    {"identity", required_argument, NULL, 'i'},
    {"subject", required_argument, NULL, 'S'},
    {"secret-source", required_argument, NULL, 'x'},
    {"ref", required_argument, NULL, 'r'},
    {"bootstrap", required_argument, NULL, 'b'},
    {"trusted", required_argument, NULL, 'T'},
    {"tls-trusted", required_argument, NULL, 'L'},
    {"type", required_argument, NULL, 'y'},
    {"p10cr", no_argument, NULL, '1'},
    {"new-key", no_argument, NULL, 'n'},
    {"if-expiring-within", required_argument, NULL, 'e'},
    {"timeout", required_argument, NULL, 'o'},
    {"grace", required_argument, NULL, 'g'},
    {"pin-source", required_argument, NULL, 'p'},
    {"module", required_argument, NULL, 'm'},
    {"provider", required_argument, NULL, 'P'},
    {"state-dir", required_argument, NULL, 'd'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

/* tool_getopt: one option of enroll or renew into its options. */
static int cmp_opt(int c, char *arg, void *vo)
{
    struct cmp_opts *o = vo;

    switch (c) {
    case 's':
        o->server = arg;
        break;
    case 't':
        o->token = arg;
        break;
    case 'i':
        o->identity = arg;
        break;
    case 'S':
        o->subject = arg;
        break;
    case 'x':
        o->secret_source = arg;
        break;
    case 'r':
        o->ref = arg;
        break;
    case 'b':
        o->bootstrap = arg;
        break;
    case 'T':
        o->trusted = arg;
        break;
    case 'L':
        o->tls_trusted = arg;
        break;
    case 'y':
        o->type = arg;
        break;
    case '1':
        o->p10cr = 1;
        break;
    case 'n':
        o->new_key = 1;
        break;
    case 'e':
        if (!tool_parse_long(o->cmd, "--if-expiring-within", arg, 0, 100000,
                             &o->if_expiring))
            return TOOL_EXIT_USAGE;
        break;
    case 'o':
        if (!tool_parse_long(o->cmd, "--timeout", arg, 1, 86400, &o->timeout))
            return TOOL_EXIT_USAGE;
        break;
    case 'g':
        if (!tool_parse_long(o->cmd, "--grace", arg, 0, 86400, &o->grace))
            return TOOL_EXIT_USAGE;
        break;
    case 'p':
        o->pin_source = arg;
        break;
    case 'm':
        o->module = arg;
        break;
    case 'P':
        o->provider = arg;
        break;
    case 'd':
        o->state_dir = arg;
        break;
    }
    return 0;
}

/* TOOL_PARSED when the options are complete and consistent, else the exit code. */
static int cmp_parse(struct cmp_opts *o, int argc, char **argv, void (*usage)(FILE *))
{
    const TOOL_CMD cmd = {o->cmd, "h", cmp_longopts, usage, 0};
    int rc = tool_getopt(&cmd, argc, argv, cmp_opt, o);

    if (rc != TOOL_PARSED)
        return rc;
    if (o->server == NULL || o->token == NULL || o->identity == NULL)
        return tool_usage(o->cmd, "--server, --token and --identity are required");
    if (o->identity[0] == '\0' || strlen(o->identity) > 150 ||
        strchr(o->identity, '/') != NULL)
        return tool_usage(o->cmd, "--identity: 1 to 150 characters, no '/'");
    if (!tool_pin_source_ok(o->cmd, "--pin-source", o->pin_source) ||
        !tool_pin_source_ok(o->cmd, "--secret-source", o->secret_source))
        return TOOL_EXIT_USAGE;
    return TOOL_PARSED;
}

int enroll_main(int argc, char **argv)
{
    struct cmp_opts o = {.cmd = "enroll",
                         .type = "ec:P-256",
                         .if_expiring = -1,
                         .timeout = 120,
                         .grace = 70};
    int rc = cmp_parse(&o, argc, argv, enroll_usage);

    if (rc != TOOL_PARSED)
        return rc;
    if ((o.secret_source != NULL) == (o.bootstrap != NULL))
        return tool_usage(o.cmd, "give either --ref and --secret-source (shared secret) "
                                 "or --bootstrap (a certificate on the token)");
    if (o.secret_source != NULL && o.ref == NULL)
        return tool_usage(o.cmd, "--secret-source needs --ref (the secret's reference)");
    if (o.bootstrap != NULL && o.trusted == NULL)
        return tool_usage(o.cmd, "--bootstrap needs --trusted (the CA's certificates)");
    if (o.new_key || o.if_expiring >= 0)
        return tool_usage(o.cmd, "--new-key and --if-expiring-within are for 'renew'");
    return enroll_run(&o);
}

int renew_main(int argc, char **argv)
{
    struct cmp_opts o = {.cmd = "renew",
                         .type = "ec:P-256",
                         .if_expiring = -1,
                         .timeout = 120,
                         .grace = 70};
    int rc = cmp_parse(&o, argc, argv, renew_usage);

    if (rc != TOOL_PARSED)
        return rc;
    if (o.secret_source != NULL || o.bootstrap != NULL || o.p10cr || o.subject != NULL)
        return tool_usage(o.cmd,
                          "renew takes no --secret-source, --bootstrap, --p10cr or "
                          "--subject: the current key and certificate protect it");
    return renew_run(&o);
}
