/*
 * decide.c - what to do when a server asks this client for a certificate.
 *
 * Runs inside libssl's certificate callback or GnuTLS's certificate retrieve callback,
 * which a client reaches only when the server sent a CertificateRequest (in the
 * handshake, or later for TLS 1.3 post-handshake auth and TLS 1.2 renegotiation). Every
 * outcome is one log line naming the destination, the rule and what was presented or
 * why not. The TLS library's side comes in a struct shim_request; p11mtls doctor asks
 * the same decision (shim_decide_dest) so that the two never disagree.
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

/* true if the identity of r can be presented now; else false with v->why. */
static bool decide_usable(const struct shim_request *rq, const struct shim_conf *c,
                          const struct shim_rule *r, const char *unusable,
                          struct shim_verdict *v)
{
    if (unusable != NULL) {
        shim_fmt(v->why, sizeof(v->why), "%s", unusable);
        return false;
    }
    v->id = shim_identity_get(c, r->identity, v->why, sizeof(v->why));
    if (v->id == NULL || !shim_identity_valid_now(v->id, v->why, sizeof(v->why)))
        return false;
    if (rq == NULL)
        return true;
    if (r->require_ca_match && !rq->ca_match(rq->conn, v->id, v->why, sizeof(v->why)))
        return false;
    return rq->present(rq->conn, v->id, v->why, sizeof(v->why));
}

void shim_decide_dest(const struct shim_request *rq, const struct shim_conf *c,
                      const struct shim_dest *dest, const char *unusable,
                      struct shim_verdict *v)
{
    memset(v, 0, sizeof(*v));
    v->rule = shim_rules_find(c, dest);
    if (v->rule == NULL)
        v->action = SHIM_NO_RULE;
    else if (decide_usable(rq, c, v->rule, unusable, v))
        v->action = SHIM_PRESENT;
    else /* the rule says whether the handshake goes on */
        v->action = v->rule->abort_unavailable ? SHIM_ABORT : SHIM_SKIP;
}

/* One log line for the decision; 0 to abort the handshake. */
static int decide_log(const struct decision *d, const struct shim_verdict *v)
{
    const struct shim_request *rq = d->rq;
    const char *identity = v->rule != NULL ? d->c->ids[v->rule->identity].name : "";

    switch (v->action) {
    case SHIM_NO_RULE:
        shim_log(SHIM_INFO, "dest=%s (%s) %s: %s; no certificate from p11mtls", d->dest,
                 d->source, rq->tls,
                 rq->dest.source == NULL ? "destination unknown, no rule can match"
                                         : "no rule matches");
        return 1;
    case SHIM_SKIP:
    case SHIM_ABORT:
        shim_log(v->action == SHIM_ABORT ? SHIM_ERROR : SHIM_WARN,
                 "dest=%s (%s) %s rule=%s identity=%s: not presented: %s; %s", d->dest,
                 d->source, rq->tls, v->rule->name, identity, v->why,
                 v->action == SHIM_ABORT ? "handshake aborted (on_unavailable = abort)"
                                         : "continuing without a client certificate");
        return v->action != SHIM_ABORT;
    case SHIM_PRESENT:
        break;
    }
    shim_log(SHIM_INFO,
             "dest=%s (%s) %s rule=%s identity=%s: presented subject=\"%s\" "
             "serial=%s%s",
             d->dest, d->source, rq->tls, v->rule->name, identity, v->id->subject,
             v->id->serial,
             rq->tls13
                 ? " (TLS 1.3: if the server rejects it, the program sees the error "
                   "at its first read)"
                 : "");
    return 1;
}

int shim_decide_request(const struct shim_request *rq, const struct shim_conf *c)
{
    struct decision d = {.rq = rq, .c = c};
    struct shim_verdict v;
    const char *own;
    int rc;

    shim_dest_format(&rq->dest, d.dest, sizeof(d.dest));
    d.source =
        rq->dest.source != NULL ? rq->dest.source : "no SNI, verify host or socket";
    own = rq->program_owns(rq->conn);
    if (own != NULL) {
        shim_log(SHIM_INFO, "dest=%s (%s) %s: %s; p11mtls not involved", d.dest, d.source,
                 rq->tls, own);
        return 1;
    }
    shim_decide_dest(rq, c, &rq->dest, NULL, &v);
    rc = decide_log(&d, &v);
    shim_identity_put(v.id);
    return rc;
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

void shim_ssl_request(SSL *ssl, struct shim_request *rq)
{
    memset(rq, 0, sizeof(*rq));
    rq->tls = shim_fn.SSL_get_version(ssl);
    rq->tls13 = shim_fn.SSL_version(ssl) == TLS1_3_VERSION;
    rq->conn = ssl;
    rq->program_owns = decide_ssl_program_owns;
    rq->ca_match = decide_ssl_ca_match;
    rq->present = decide_ssl_present;
    shim_dest_from_ssl(ssl, &rq->dest);
}

int shim_decide(SSL *ssl, const struct shim_conf *c)
{
    struct shim_request rq;

    shim_ssl_request(ssl, &rq);
    return shim_decide_request(&rq, c);
}
