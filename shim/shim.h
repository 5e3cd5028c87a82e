/*
 * shim.h - internal interfaces of libp11mtls-preload.so.
 *
 * Flow: hooks.c installs a certificate callback on every client-capable SSL_CTX. When a
 * server sends a CertificateRequest, decide.c takes the destination (dest.c), finds the
 * first matching rule (rules.c) in the configuration (conf.c), gets the rule's identity
 * from the process cache (identity.c, PIN via pin.c) and installs it, logging the
 * decision (log.c). Nothing here runs before the program's first SSL_CTX_new.
 */
#ifndef SHIM_H
#define SHIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ossl.h"

/* ---- logging (log.c) ---- */

enum shim_level { SHIM_ERROR, SHIM_WARN, SHIM_INFO, SHIM_DEBUG };
enum shim_log_target { SHIM_LOG_STDERR, SHIM_LOG_SYSLOG, SHIM_LOG_FILE };

void shim_log_configure(enum shim_log_target target, const char *file,
                        enum shim_level level);
bool shim_log_enabled(enum shim_level level);
void shim_log(enum shim_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* snprintf for messages, where cutting a long text short is acceptable. */
void shim_fmt(char *buf, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- destinations and patterns (rules.c, dest.c) ---- */

#define SHIM_HOST_MAX 254

struct shim_dest {
    char host[SHIM_HOST_MAX]; /* lower case, no trailing dot; "" if unknown */
    bool has_ip;
    int family; /* AF_INET or AF_INET6 */
    uint8_t addr[16];
    int port;           /* -1 if unknown */
    const char *source; /* "sni", "verify-host", "verify-ip", "peer" or NULL */
};

enum shim_pattern_kind { SHIM_PAT_ANY, SHIM_PAT_HOST, SHIM_PAT_WILDCARD, SHIM_PAT_IP };

struct shim_pattern {
    enum shim_pattern_kind kind;
    char host[SHIM_HOST_MAX]; /* HOST: the name; WILDCARD: the suffix with its dot */
    int family;
    uint8_t addr[16];
    int prefix; /* bits compared for IP */
    int port;   /* -1: any port */
};

/* Set the destination from a host name or IP literal; false if it is neither. */
bool shim_dest_set_name(struct shim_dest *d, const char *name, const char *source);
void shim_dest_set_addr(struct shim_dest *d, int family, const void *addr);
/* "host:port", "[v6]:port", ... or "unknown". */
void shim_dest_format(const struct shim_dest *d, char *buf, size_t len);
bool shim_pattern_parse(const char *text, struct shim_pattern *p, char *why, size_t len);
bool shim_pattern_match(const struct shim_pattern *p, const struct shim_dest *d);

/* Fill d from what the program told libssl about the peer (dest.c). */
void shim_dest_from_ssl(const SSL *ssl, struct shim_dest *d);

/* ---- configuration (conf.c) ---- */

struct shim_param {
    char *name, *value;
};

struct shim_identity_conf {
    char *name;       /* the key in the identities section */
    char *section;    /* where it is defined, for messages */
    char *key;        /* URI or file */
    char *cert;       /* URI or file */
    char *chain;      /* file, or NULL */
    char *pin_source; /* "file:PATH", "env:NAME" or NULL */
};

struct shim_rule {
    char *name;
    struct shim_pattern *patterns;
    size_t npatterns;
    size_t identity; /* index into shim_conf.ids */
    bool require_ca_match;
    bool abort_unavailable;
};

struct shim_conf {
    char *path;
    bool present;   /* a file was found (or named by P11MTLS_CONF) */
    bool enabled;   /* loaded without errors: rules apply */
    bool abort_all; /* errors and fail-closed: every client handshake fails */
    enum shim_log_target log_target;
    char *log_file;
    enum shim_level log_level;
    char *provider;
    struct shim_param *params; /* extra provider parameters */
    size_t nparams;
    bool post_handshake_auth;
    long reload_interval; /* seconds between re-reads of a loaded identity; 0: never */
    struct shim_identity_conf *ids;
    size_t nids;
    struct shim_rule *rules;
    size_t nrules;
    char **errors; /* one line each, without the consequence */
    size_t nerrors;
};

/*
 * Load and validate a configuration. explicit: the path was named by the user (a
 * missing file is an error rather than "not deployed"). Never NULL except out of memory.
 */
struct shim_conf *shim_conf_load(const char *path, bool explicit);
/* The process configuration: loaded on first use, errors logged once, never freed. */
const struct shim_conf *shim_conf_get(void);

/* First rule with a pattern matching d, or NULL (rules.c). */
const struct shim_rule *shim_rules_find(const struct shim_conf *c,
                                        const struct shim_dest *d);

/* ---- identities (identity.c, pin.c) ---- */

struct shim_identity {
    EVP_PKEY *key;
    X509 *cert;
    STACK_OF(X509) * chain; /* may be NULL */
    char subject[256];
    char serial[80];
    int refs; /* identity.c's: see shim_identity_get */
};

/*
 * The loaded identity number idx of c, loading it on first use (token access and login
 * happen here). NULL with why filled when it is unavailable; failures are remembered for
 * a while so a missing token is not probed on every handshake. The caller holds a
 * reference to the identity returned: shim_identity_put() it when done (a reload may
 * replace the identity meanwhile; it is freed when the last holder puts it).
 */
const struct shim_identity *shim_identity_get(const struct shim_conf *c, size_t idx,
                                              char *why, size_t len);
/* One more reference to an identity the caller holds. */
void shim_identity_hold(const struct shim_identity *id);
/* Drops a reference (NULL: nothing). */
void shim_identity_put(const struct shim_identity *id);
/*
 * Not for the preload library: a program that links the shim's code (p11mtls doctor)
 * and has the provider built in registers it in the private library context here,
 * before the first identity loads, so that the process keeps a single PKCS#11 core.
 * fn returns 1 on success. Call it before the first shim_identity_get().
 */
typedef int shim_libctx_prepare_fn(OSSL_LIB_CTX *lc);
void shim_identity_prepare(shim_libctx_prepare_fn *fn);
/* The private library context the identities live in (NULL before the first load). */
OSSL_LIB_CTX *shim_identity_libctx(void);
/* True if cert is one the shim loaded and installed (so a renegotiation may replace it),
 * whether or not its identity has been replaced since. */
bool shim_identity_owns(const X509 *cert);
bool shim_identity_valid_now(const struct shim_identity *id, char *why, size_t len);
/* The server's acceptable-CA list names an issuer of ours, or is empty. */
bool shim_identity_ca_match(const struct shim_identity *id, const SSL *ssl, char *why,
                            size_t len);
/* The same for a list of names the caller has at hand (NULL or empty: no constraint). */
bool shim_identity_ca_listed(const struct shim_identity *id,
                             const STACK_OF(X509_NAME) * cas, char *why, size_t len);

/*
 * PIN sources follow the rules of p11m_util.h, as in the provider. Why the last PIN read
 * of this thread (in the UI method) failed is kept for the log line (shim_pin_error(),
 * "" if it did not).
 */
const char *shim_pin_error(void);
void shim_pin_error_clear(void);
/* key with "pin-source=<source>" added to the query (malloc'd), or a copy of key. */
char *shim_pin_uri(const char *key, const char *source);
/* A UI method that answers prompts from the identity's pin_source and never asks. */
UI_METHOD *shim_pin_ui_method(void);

/* ---- the decision (decide.c) ---- */

/*
 * A client connection at a CertificateRequest, whatever TLS library carries it: the same
 * rules, checks and log lines apply to OpenSSL and GnuTLS programs. The library's side
 * answers through the callbacks, with conn as their first argument.
 */
struct shim_request {
    struct shim_dest dest;
    const char *tls; /* "TLSv1.3", ... */
    bool tls13;
    void *conn;
    /* NULL, or why the program decides itself ("the program set its own certificate") */
    const char *(*program_owns)(void *conn);
    bool (*ca_match)(void *conn, const struct shim_identity *id, char *why, size_t len);
    /* install id for this handshake; false with why filled if the library refused it */
    bool (*present)(void *conn, const struct shim_identity *id, char *why, size_t len);
};

enum shim_action {
    SHIM_NO_RULE, /* no rule matches: no certificate from p11mtls */
    SHIM_PRESENT, /* the rule's identity is presented */
    SHIM_SKIP,    /* it cannot be: the handshake goes on without a certificate */
    SHIM_ABORT,   /* it cannot be and on_unavailable = abort: the handshake fails */
};

struct shim_verdict {
    enum shim_action action;
    const struct shim_rule *rule;   /* NULL with SHIM_NO_RULE */
    const struct shim_identity *id; /* the loaded identity, if it could be loaded:
                                       held, shim_identity_put() it when done */
    char why[512];                  /* SKIP, ABORT: why it is not presented */
};

/*
 * What the preload library does for dest, and the one place that decides it (p11mtls
 * doctor asks it too): the first rule matching dest, its identity (loaded and cached on
 * first use, token login included), the identity's validity now and, with rq (inside
 * a certificate callback), the server's acceptable-CA list under require_ca_match; with
 * rq and SHIM_PRESENT the identity is installed on rq's connection. unusable, when not
 * NULL, is a reason the identity must not be loaded at all (doctor: the token already
 * refused the PIN, which must not be tried again).
 */
void shim_decide_dest(const struct shim_request *rq, const struct shim_conf *c,
                      const struct shim_dest *dest, const char *unusable,
                      struct shim_verdict *v);
/* OpenSSL's side of a request on a client SSL, its destination included. */
void shim_ssl_request(SSL *ssl, struct shim_request *rq);

/* Run at a CertificateRequest on a client SSL: 1 to continue, 0 to abort the handshake.
 */
int shim_decide(SSL *ssl, const struct shim_conf *c);

/* 1 to continue (with or without the identity), 0 to abort the handshake. */
int shim_decide_request(const struct shim_request *rq, const struct shim_conf *c);
/* Fail-closed mode (on_config_error = abort): says so once; returns 0. */
int shim_decide_fail_closed(void);

/* ---- whose socket is this? (io.c) ---- */

/*
 * A program with its own transport (curl's BIO, GnuTLS push/pull functions) shows the
 * shim no socket. The hooks note which descriptor recv() read during one handshake call
 * of one connection object; -1 if none. shim_io_begin/end bracket that call.
 */
struct shim_io {
    const void *conn;
    int fd;
    bool frozen; /* a certificate callback runs: later reads are not the connection's */
    struct shim_io *outer;
};
void shim_io_begin(struct shim_io *io, const void *conn);
void shim_io_end(struct shim_io *io);
/* recv() read from fd: credited to the innermost call running on this thread. */
void shim_io_note(int fd);
/* Called first thing in a certificate callback: keep the descriptor noted so far. */
void shim_io_freeze(void);
/* The descriptor conn read in the handshake call now running on this thread, or -1. */
int shim_io_fd(const void *conn);
/* Port and (when nothing named the peer) address of the socket fd's peer. */
void shim_dest_from_fd(int fd, struct shim_dest *d);

#endif
