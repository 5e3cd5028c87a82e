/*
 * decide.c - what to do when a server asks this client for a certificate.
 *
 * Runs inside libssl's certificate callback or GnuTLS's certificate retrieve callback,
 * which a client reaches only when the server sent a CertificateRequest (in the
 * handshake, or later for TLS 1.3 post-handshake auth and TLS 1.2 renegotiation). Every
 * outcome is one log line naming the destination, the rule and what was presented or
 * why not. The TLS library's side comes in a struct shim_request.
 */
#include <stdio.h>
#include <string.h>

#include "shim.h"

struct decision {
    const struct shim_request *rq;
    const struct shim_conf *c;
    char dest[SHIM_HOST_MAX + 16];
    const char *source;
};

static int decide_unavailable(const struct decision *d, const struct shim_rule *r,
                              const char *why)
{
    const char *identity = d->c->ids[r->identity].name;

    if (r->abort_unavailable) {
        shim_log(SHIM_ERROR,
                 "dest=%s (%s) %s rule=%s identity=%s: not presented: %s; "
                 "handshake aborted (on_unavailable = abort)",
                 d->dest, d->source, d->rq->tls, r->name, identity, why);
        return 0;
    }
    shim_log(SHIM_WARN,
             "dest=%s (%s) %s rule=%s identity=%s: not presented: %s; "
             "continuing without a client certificate",
             d->dest, d->source, d->rq->tls, r->name, identity, why);
    return 1;
}

static int decide_present(const struct decision *d, const struct shim_rule *r)
{
    const struct shim_request *rq = d->rq;
    const char *name = d->c->ids[r->identity].name;
    const struct shim_identity *id;
    char why[512] = "";

    id = shim_identity_get(d->c, r->identity, why, sizeof(why));
    if (id == NULL)
        return decide_unavailable(d, r, why);
    if (!shim_identity_valid_now(id, why, sizeof(why)))
        return decide_unavailable(d, r, why);
    if (r->require_ca_match && !rq->ca_match(rq->conn, id, why, sizeof(why)))
        return decide_unavailable(d, r, why);
    if (!rq->present(rq->conn, id, why, sizeof(why)))
        return decide_unavailable(d, r, why);
    shim_log(SHIM_INFO,
             "dest=%s (%s) %s rule=%s identity=%s: presented subject=\"%s\" "
             "serial=%s%s",
             d->dest, d->source, rq->tls, r->name, name, id->subject, id->serial,
             rq->tls13
                 ? " (TLS 1.3: if the server rejects it, the program sees the error "
                   "at its first read)"
                 : "");
    return 1;
}

int shim_decide_request(const struct shim_request *rq, const struct shim_conf *c)
{
    struct decision d = {.rq = rq, .c = c};
    const struct shim_rule *r;
    const char *own;

    shim_dest_format(&rq->dest, d.dest, sizeof(d.dest));
    d.source =
        rq->dest.source != NULL ? rq->dest.source : "no SNI, verify host or socket";
    own = rq->program_owns(rq->conn);
    if (own != NULL) {
        shim_log(SHIM_INFO, "dest=%s (%s) %s: %s; p11mtls not involved", d.dest, d.source,
                 rq->tls, own);
        return 1;
    }
    r = shim_rules_find(c, &rq->dest);
    if (r == NULL) {
        shim_log(SHIM_INFO, "dest=%s (%s) %s: %s; no certificate from p11mtls", d.dest,
                 d.source, rq->tls,
                 rq->dest.source == NULL ? "destination unknown, no rule can match"
                                         : "no rule matches");
        return 1;
    }
    return decide_present(&d, r);
}

int shim_decide_fail_closed(void)
{
    static int told;

    if (!__atomic_exchange_n(&told, 1, __ATOMIC_RELAXED))
        shim_log(SHIM_ERROR, "refusing client TLS handshakes: the p11mtls configuration "
                             "has errors and on_config_error = abort");
    return 0;
}

/* ---- OpenSSL's side of a request ---- */

/* The program configured a certificate or a client-certificate callback: it decides. */
static const char *decide_ssl_program_owns(void *conn)
{
    SSL *ssl = conn;
    X509 *own = shim_fn.SSL_get_certificate(ssl);

    if (own != NULL && shim_identity_owns(own)) {
        /* ours from an earlier handshake on this SSL: decide afresh */
        shim_fn.SSL_certs_clear(ssl);
    } else if (own != NULL && shim_fn.SSL_get_privatekey(ssl) != NULL) {
        return "the program set its own certificate";
    }
    if (shim_fn.SSL_CTX_get_client_cert_cb(shim_fn.SSL_get_SSL_CTX(ssl)) != NULL)
        return "the program chooses client certificates itself (client_cert_cb)";
    return NULL;
}

static bool decide_ssl_ca_match(void *conn, const struct shim_identity *id, char *why,
                                size_t len)
{
    return shim_identity_ca_match(id, conn, why, len);
}

static bool decide_ssl_present(void *conn, const struct shim_identity *id, char *why,
                               size_t len)
{
    char err[256];

    if (shim_fn.SSL_use_cert_and_key(conn, id->cert, id->key, id->chain, 1) == 1)
        return true;
    shim_ossl_error_text(err, sizeof(err), true);
    shim_fmt(why, len, "libssl refused the key and certificate: %s", err);
    return false;
}

int shim_decide(SSL *ssl, const struct shim_conf *c)
{
    struct shim_request rq = {
        .tls = shim_fn.SSL_get_version(ssl),
        .tls13 = shim_fn.SSL_version(ssl) == TLS1_3_VERSION,
        .conn = ssl,
        .program_owns = decide_ssl_program_owns,
        .ca_match = decide_ssl_ca_match,
        .present = decide_ssl_present,
    };

    shim_dest_from_ssl(ssl, &rq.dest);
    return shim_decide_request(&rq, c);
}
