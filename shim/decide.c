/*
 * decide.c - what to do when a server asks this client for a certificate.
 *
 * Runs inside libssl's certificate callback, which a client reaches only when the server
 * sent a CertificateRequest (in the handshake, or later for TLS 1.3 post-handshake auth
 * and TLS 1.2 renegotiation). Every outcome is one log line naming the destination, the
 * rule and what was presented or why not.
 */
#include <stdio.h>
#include <string.h>

#include "shim.h"

struct decision {
    SSL *ssl;
    const struct shim_conf *c;
    char dest[SHIM_HOST_MAX + 16];
    const char *source;
};

static const char *decide_tls(const struct decision *d)
{
    return shim_fn.SSL_get_version(d->ssl);
}

/* The program configured a certificate or a client-certificate callback: it decides. */
static bool decide_program_owns(const struct decision *d)
{
    X509 *own = shim_fn.SSL_get_certificate(d->ssl);

    if (own != NULL && shim_identity_owns(own)) {
        /* ours from an earlier handshake on this SSL: decide afresh */
        shim_fn.SSL_certs_clear(d->ssl);
    } else if (own != NULL && shim_fn.SSL_get_privatekey(d->ssl) != NULL) {
        shim_log(SHIM_INFO,
                 "dest=%s (%s) %s: the program set its own certificate; "
                 "p11mtls not involved",
                 d->dest, d->source, decide_tls(d));
        return true;
    }
    if (shim_fn.SSL_CTX_get_client_cert_cb(shim_fn.SSL_get_SSL_CTX(d->ssl)) != NULL) {
        shim_log(SHIM_INFO,
                 "dest=%s (%s) %s: the program chooses client certificates "
                 "itself (client_cert_cb); p11mtls not involved",
                 d->dest, d->source, decide_tls(d));
        return true;
    }
    return false;
}

/* true if the identity of r can be presented now; else false with v->why. */
static bool decide_usable(SSL *ssl, const struct shim_conf *c, const struct shim_rule *r,
                          const char *unusable, struct shim_verdict *v)
{
    if (unusable != NULL) {
        shim_fmt(v->why, sizeof(v->why), "%s", unusable);
        return false;
    }
    v->id = shim_identity_get(c, r->identity, v->why, sizeof(v->why));
    if (v->id == NULL || !shim_identity_valid_now(v->id, v->why, sizeof(v->why)))
        return false;
    if (ssl == NULL)
        return true;
    if (r->require_ca_match &&
        !shim_identity_ca_match(v->id, ssl, v->why, sizeof(v->why)))
        return false;
    if (shim_fn.SSL_use_cert_and_key(ssl, v->id->cert, v->id->key, v->id->chain, 1) !=
        1) {
        char err[256];

        shim_ossl_error_text(err, sizeof(err), true);
        shim_fmt(v->why, sizeof(v->why), "libssl refused the key and certificate: %s",
                 err);
        return false;
    }
    return true;
}

void shim_decide_dest(SSL *ssl, const struct shim_conf *c, const struct shim_dest *dest,
                      const char *unusable, struct shim_verdict *v)
{
    memset(v, 0, sizeof(*v));
    v->rule = shim_rules_find(c, dest);
    if (v->rule == NULL)
        v->action = SHIM_NO_RULE;
    else if (decide_usable(ssl, c, v->rule, unusable, v))
        v->action = SHIM_PRESENT;
    else /* the rule says whether the handshake goes on */
        v->action = v->rule->abort_unavailable ? SHIM_ABORT : SHIM_SKIP;
}

/* One log line for the decision; 0 to abort the handshake. */
static int decide_log(const struct decision *d, const struct shim_dest *dest,
                      const struct shim_verdict *v)
{
    const char *identity = v->rule != NULL ? d->c->ids[v->rule->identity].name : "";

    switch (v->action) {
    case SHIM_NO_RULE:
        shim_log(SHIM_INFO, "dest=%s (%s) %s: %s; no certificate from p11mtls", d->dest,
                 d->source, decide_tls(d),
                 dest->source == NULL ? "destination unknown, no rule can match"
                                      : "no rule matches");
        return 1;
    case SHIM_SKIP:
    case SHIM_ABORT:
        shim_log(v->action == SHIM_ABORT ? SHIM_ERROR : SHIM_WARN,
                 "dest=%s (%s) %s rule=%s identity=%s: not presented: %s; %s", d->dest,
                 d->source, decide_tls(d), v->rule->name, identity, v->why,
                 v->action == SHIM_ABORT ? "handshake aborted (on_unavailable = abort)"
                                         : "continuing without a client certificate");
        return v->action != SHIM_ABORT;
    case SHIM_PRESENT:
        break;
    }
    shim_log(SHIM_INFO,
             "dest=%s (%s) %s rule=%s identity=%s: presented subject=\"%s\" "
             "serial=%s%s",
             d->dest, d->source, decide_tls(d), v->rule->name, identity, v->id->subject,
             v->id->serial,
             shim_fn.SSL_version(d->ssl) == TLS1_3_VERSION
                 ? " (TLS 1.3: if the server rejects it, the program sees the error at "
                   "its first read)"
                 : "");
    return 1;
}

int shim_decide(SSL *ssl, const struct shim_conf *c)
{
    struct decision d = {.ssl = ssl, .c = c};
    struct shim_verdict v;
    struct shim_dest dest;

    shim_dest_from_ssl(ssl, &dest);
    shim_dest_format(&dest, d.dest, sizeof(d.dest));
    d.source = dest.source != NULL ? dest.source : "no SNI, verify host or socket";
    if (decide_program_owns(&d))
        return 1;
    shim_decide_dest(ssl, c, &dest, NULL, &v);
    return decide_log(&d, &dest, &v);
}
