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

static int decide_unavailable(const struct decision *d, const struct shim_rule *r,
                              const char *why)
{
    const char *identity = d->c->ids[r->identity].name;

    if (r->abort_unavailable) {
        shim_log(SHIM_ERROR,
                 "dest=%s (%s) %s rule=%s identity=%s: not presented: %s; "
                 "handshake aborted (on_unavailable = abort)",
                 d->dest, d->source, decide_tls(d), r->name, identity, why);
        return 0;
    }
    shim_log(SHIM_WARN,
             "dest=%s (%s) %s rule=%s identity=%s: not presented: %s; "
             "continuing without a client certificate",
             d->dest, d->source, decide_tls(d), r->name, identity, why);
    return 1;
}

static int decide_present(const struct decision *d, const struct shim_rule *r)
{
    const char *name = d->c->ids[r->identity].name;
    const struct shim_identity *id;
    char why[512] = "";

    id = shim_identity_get(d->c, r->identity, why, sizeof(why));
    if (id == NULL)
        return decide_unavailable(d, r, why);
    if (!shim_identity_valid_now(id, why, sizeof(why)))
        return decide_unavailable(d, r, why);
    if (r->require_ca_match && !shim_identity_ca_match(id, d->ssl, why, sizeof(why)))
        return decide_unavailable(d, r, why);
    if (shim_fn.SSL_use_cert_and_key(d->ssl, id->cert, id->key, id->chain, 1) != 1) {
        char err[256];

        shim_ossl_error_text(err, sizeof(err), true);
        shim_fmt(why, sizeof(why), "libssl refused the key and certificate: %s", err);
        return decide_unavailable(d, r, why);
    }
    shim_log(SHIM_INFO,
             "dest=%s (%s) %s rule=%s identity=%s: presented subject=\"%s\" "
             "serial=%s%s",
             d->dest, d->source, decide_tls(d), r->name, name, id->subject, id->serial,
             shim_fn.SSL_version(d->ssl) == TLS1_3_VERSION
                 ? " (TLS 1.3: if the server rejects it, the program sees the error at "
                   "its first read)"
                 : "");
    return 1;
}

int shim_decide(SSL *ssl, const struct shim_conf *c)
{
    struct decision d = {.ssl = ssl, .c = c};
    const struct shim_rule *r;
    struct shim_dest dest;

    shim_dest_from_ssl(ssl, &dest);
    shim_dest_format(&dest, d.dest, sizeof(d.dest));
    d.source = dest.source != NULL ? dest.source : "no SNI, verify host or socket";
    if (decide_program_owns(&d))
        return 1;
    r = shim_rules_find(c, &dest);
    if (r == NULL) {
        shim_log(SHIM_INFO, "dest=%s (%s) %s: %s; no certificate from p11mtls", d.dest,
                 d.source, decide_tls(&d),
                 dest.source == NULL ? "destination unknown, no rule can match"
                                     : "no rule matches");
        return 1;
    }
    return decide_present(&d, r);
}
