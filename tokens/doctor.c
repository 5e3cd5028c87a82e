/*
 * doctor.c - "p11mtls doctor": explains, step by step, whether this device would present
 * its client certificate to a destination, why not, and what to do about it.
 *
 * The configuration is read, matched and decided on by the shim's own code (shim/conf.c,
 * shim/rules.c and shim_decide_dest() in shim/decide.c, linked in): the verdict and
 * what the TLS check presents are the preload library's own, never a re-statement.
 * Token checks go through the PKCS#11 core and never cost a PIN retry: the PIN flags are
 * read before the one login, a refused PIN is never tried again, and nothing that would
 * log in runs after a failed login. The TLS checks make one real connection in-process,
 * watching the CertificateRequest from a certificate callback, the way the shim does.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <poll.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "p11m_config.h"
#include "p11m_util.h"
#include "shim.h"
#include "tool.h"

#define CMD           "doctor"
#define DOC_WARN_DAYS 30
#define DOC_HOST_MAX  256

enum doc_level { DOC_OK, DOC_INFO, DOC_WARN, DOC_FAIL };

struct doc_opts {
    const char *dest;
    const char *config;
    const char *ca;
    const char *module;
    const char *provider;
    const char *program; /* --program: which TLS library it uses (tlslib.c) */
    long timeout;
    long wait;
};

/* Everything the checks learn, in the order they learn it. */
struct doc {
    const struct doc_opts *o;
    int fails, warns;
    const struct shim_conf *c;
    /* destination */
    char host[DOC_HOST_MAX];
    char path[512];
    int port;
    int is_ip;
    int https;
    struct shim_dest dest; /* as the preload library would see it */
    const struct shim_rule *rule;
    /* identity */
    const struct shim_identity_conf *ic;
    const char *module;     /* PKCS#11 module for the identity, NULL: p11-kit's proxy */
    const char *pin_source; /* from the identity, the URI or the provider parameters */
    P11M_TOKEN *tok;
    P11M_OBJ *key;
    X509 *cert;
    STACK_OF(X509) * chain;
    int login_failed; /* nothing that logs in runs afterwards */
    int identity_ok;  /* the shim could present it */
    OSSL_LIB_CTX *lc;
    EVP_PKEY *pkey; /* the token key through the provider */
};

/* ---- output ---- */

static void doc_line(struct doc *d, enum doc_level lvl, const char *topic,
                     const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void doc_line(struct doc *d, enum doc_level lvl, const char *topic,
                     const char *fmt, ...)
{
    static const char *const tags[] = {"ok  ", "--  ", "warn", "FAIL"};
    va_list ap;

    printf("%s  %-10s ", tags[lvl], topic);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
    d->fails += lvl == DOC_FAIL;
    d->warns += lvl == DOC_WARN;
}

static void doc_fix(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void doc_fix(const char *fmt, ...)
{
    va_list ap;

    fputs("                 fix: ", stdout);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
}

/* The last error of the core, for a check line. */
static const char *doc_core_error(void)
{
    const char *m = p11m_last_error(NULL);

    return m != NULL && *m != '\0' ? m : "unknown error";
}

/* The last OpenSSL error as text (the queue is emptied). */
static const char *doc_ossl_error(char *buf, size_t len)
{
    unsigned long e = ERR_peek_last_error();

    if (e == 0)
        snprintf(buf, len, "no details");
    else
        ERR_error_string_n(e, buf, len);
    ERR_clear_error();
    return buf;
}

/* ---- configuration and rule ---- */

static int doc_config(struct doc *d)
{
    int explicit = 1;
    const char *path = d->o->config != NULL ? d->o->config : p11m_conf_path(&explicit);
    struct shim_conf *c;

    if (!shim_ossl_ready()) {
        doc_line(d, DOC_FAIL, "config", "cannot use libssl's configuration reader");
        return 0;
    }
    c = shim_conf_load(path, explicit);
    d->c = c;
    /* the preload library's identities load through the tool's built-in provider: one
     * PKCS#11 core in this process, not a second one from p11mtls.so */
    shim_identity_prepare(tool_provider_builtin);
    /* the provider the preload library loads identities with, as in doc_provider() */
    if (c != NULL && d->o->provider != NULL) {
        char *p = strdup(d->o->provider);

        if (p == NULL)
            return 0;
        free(c->provider);
        c->provider = p;
    }
    if (c == NULL || !c->present) {
        doc_line(d, DOC_FAIL, "config",
                 "no configuration at %s: the preload library "
                 "presents nothing",
                 path);
        doc_fix("write one (see the p11mtls documentation) or give --config FILE");
        return 0;
    }
    for (size_t i = 0; i < c->nerrors; i++)
        doc_line(d, DOC_FAIL, "config", "%s", c->errors[i]);
    if (c->nerrors > 0) {
        doc_fix("correct %s: with any error the preload library stays out of every "
                "program%s",
                path,
                c->abort_all ? " (on_config_error = abort: every client handshake "
                               "fails)"
                             : "");
        return 0;
    }
    doc_line(d, DOC_OK, "config", "%s: %zu identit%s, %zu rule%s", path, c->nids,
             c->nids == 1 ? "y" : "ies", c->nrules, c->nrules == 1 ? "" : "s");
    return 1;
}

/* "https://host[:port][/path]", "host:port", "[v6]:port", "host" (port 443). */
static int doc_parse_dest(struct doc *d, const char *arg)
{
    const char *s = arg, *end;
    char *colon;
    long port = 443;

    if (strncasecmp(s, "https://", 8) == 0) {
        d->https = 1;
        s += 8;
    } else if (strstr(s, "://") != NULL) {
        return tool_usage(CMD, "'%s': only https:// URLs or host:port", arg), 0;
    }
    end = s + strcspn(s, "/?#");
    snprintf(d->path, sizeof(d->path), "%s", *end == '/' ? end : "/");
    if ((size_t) (end - s) >= sizeof(d->host) || end == s)
        return tool_usage(CMD, "'%s': no host", arg), 0;
    memcpy(d->host, s, (size_t) (end - s));
    d->host[end - s] = '\0';
    if (d->host[0] == '[') {
        char *close = strchr(d->host, ']');

        if (close == NULL || (close[1] != '\0' && close[1] != ':'))
            return tool_usage(CMD, "'%s': bad [IPv6] address", arg), 0;
        colon = close[1] == ':' ? close + 1 : NULL;
        *close = '\0';
        memmove(d->host, d->host + 1, strlen(d->host + 1) + 1);
        if (colon != NULL)
            colon -= 2; /* moved with the text */
    } else {
        colon = strchr(d->host, ':');
        if (colon != NULL && strchr(colon + 1, ':') != NULL)
            colon = NULL; /* a bare IPv6 address */
    }
    if (colon != NULL) {
        *colon = '\0';
        if (!tool_parse_long(CMD, "destination port", colon + 1, 1, 65535, &port))
            return 0;
    }
    d->port = (int) port;
    {
        unsigned char buf[16];

        d->is_ip = inet_pton(AF_INET, d->host, buf) == 1 ||
                   inet_pton(AF_INET6, d->host, buf) == 1;
    }
    return 1;
}

static int doc_rule(struct doc *d)
{
    struct shim_dest *dest = &d->dest;
    char shown[DOC_HOST_MAX + 16];

    memset(dest, 0, sizeof(*dest));
    dest->port = d->port;
    if (!shim_dest_set_name(dest, d->host, d->is_ip ? "verify-ip" : "sni")) {
        doc_line(d, DOC_FAIL, "rule", "'%s' is neither a host name nor an IP address",
                 d->host);
        return 0;
    }
    shim_dest_format(dest, shown, sizeof(shown));
    d->rule = shim_rules_find(d->c, dest);
    if (d->rule == NULL) {
        doc_line(d, DOC_FAIL, "rule",
                 "no rule matches %s: no certificate is presented "
                 "there",
                 shown);
        doc_fix("add \"%s\" (or \"%s\") to the match = line of a rule in %s", shown,
                d->host, d->c->path);
        return 0;
    }
    d->ic = &d->c->ids[d->rule->identity];
    doc_line(d, DOC_OK, "rule", "%s matches rule '%s' -> identity '%s'%s%s", shown,
             d->rule->name, d->ic->name,
             d->rule->require_ca_match ? " (require_ca_match)" : "",
             d->rule->abort_unavailable ? " (on_unavailable = abort: the handshake fails "
                                          "when the identity cannot be used)"
                                        : "");
    for (size_t i = 0; i < d->rule->npatterns; i++) {
        const struct shim_pattern *p = &d->rule->patterns[i];

        if (!shim_pattern_match(p, dest))
            continue;
        if (p->port >= 0)
            doc_line(d, DOC_INFO, "rule",
                     "the pattern names a port: the preload library "
                     "learns it from the socket, so programs with their own I/O (curl) "
                     "never match it");
        if (d->is_ip)
            doc_line(d, DOC_INFO, "rule",
                     "an IP destination: curl sends no SNI for IP "
                     "literals and hides its socket, so it never matches; use a name");
        break;
    }
    return 1;
}

/* ---- the identity ---- */

static const char *doc_param(const struct shim_conf *c, const char *name)
{
    for (size_t i = 0; i < c->nparams; i++)
        if (strcmp(c->params[i].name, name) == 0)
            return c->params[i].value;
    return NULL;
}

static P11M_MODULE *doc_module(struct doc *d, P11KitUri *uri)
{
    P11M_MODULE *mod = p11m_uri_module(uri, d->module, NULL);
    char desc[33];
    size_t n = sizeof(mod->info.libraryDescription);

    if (mod == NULL) {
        doc_line(d, DOC_FAIL, "module", "%s", doc_core_error());
        doc_fix("install the PKCS#11 module, or correct module-path= in the key URI or "
                "pkcs11-module in the provider parameters");
        return NULL;
    }
    while (n > 0 && mod->info.libraryDescription[n - 1] == ' ')
        n--; /* blank-padded */
    memcpy(desc, mod->info.libraryDescription, n);
    desc[n] = '\0';
    doc_line(d, DOC_OK, "module", "%s loaded (%s)", mod->path, desc);
    return mod;
}

static void doc_list_labels(P11M_MODULE *mod)
{
    P11KitUri *all = p11_kit_uri_new();
    P11M_TOKEN_LIST list = {NULL, 0};
    char label[40];

    if (all != NULL && p11m_token_list_fill(mod, all, &list) == CKR_OK && list.n > 0) {
        printf("                 tokens present:");
        for (size_t i = 0; i < list.n; i++)
            printf(" '%s'", p11m_token_label(list.v[i], label, sizeof(label)));
        putchar('\n');
    }
    p11m_token_list_free(&list);
    p11_kit_uri_free(all);
}

static int doc_token(struct doc *d, P11M_MODULE *mod, P11KitUri *uri)
{
    P11M_TOKEN_LIST list = {NULL, 0};
    char label[40];

    if (p11m_token_list_fill(mod, uri, &list) != CKR_OK) {
        doc_line(d, DOC_FAIL, "token", "%s", doc_core_error());
        return 0;
    }
    if (list.n != 1) {
        doc_line(d, DOC_FAIL, "token",
                 list.n == 0 ? "no token matches the key URI %s"
                             : "several tokens match the key URI %s",
                 d->ic->key);
        if (list.n == 0)
            doc_list_labels(mod);
        doc_fix(list.n == 0
                    ? "insert (or initialise) the token, or correct token= in [%s] "
                      "key"
                    : "add serial= to the URI in [%s] key",
                d->ic->section);
        p11m_token_list_free(&list);
        return 0;
    }
    d->tok = list.v[0];
    p11m_token_list_free(&list);
    doc_line(d, DOC_OK, "token", "'%s' present (slot %lu)",
             p11m_token_label(d->tok, label, sizeof(label)), p11m_token_slot(d->tok));
    return 1;
}

/* A PIN the token refused before (any process) is not tried: say so, and how to undo. */
static int doc_pin_refused(struct doc *d, const P11M_PIN *pin)
{
    char label[40];
    int fd = p11m_refusal_open(p11m_token_info(d->tok)), refused;

    refused = p11m_refusal_check(fd, p11m_token_label(d->tok, label, sizeof(label)),
                                 d->pin_source, pin);
    p11m_refusal_close(fd);
    if (!refused)
        return 0;
    doc_line(d, DOC_FAIL, "pin", "%s", doc_core_error());
    doc_fix("put the right PIN in %s, then run `p11mtls pin reset-refusal %s`",
            d->pin_source, label);
    d->login_failed = 1; /* never log in with it */
    return 1;
}

static int doc_pin_source(struct doc *d)
{
    P11M_PIN pin;

    if (!(p11m_token_info(d->tok)->flags & CKF_LOGIN_REQUIRED)) {
        doc_line(d, DOC_OK, "pin", "the token needs no login");
        return 1;
    }
    if (d->pin_source == NULL) {
        doc_line(d, DOC_FAIL, "pin",
                 "no PIN source: the preload library never prompts, "
                 "so it cannot log in");
        doc_fix("add pin_source = file:/PATH (mode 0600) to [%s]", d->ic->section);
        return 0;
    }
    if (p11m_pin_load(d->pin_source, &pin) != CKR_OK) {
        doc_line(d, DOC_FAIL, "pin", "%s", doc_core_error());
        doc_fix("make %s readable by this user only, holding the user PIN",
                d->pin_source);
        return 0;
    }
    if (doc_pin_refused(d, &pin)) {
        p11m_pin_cleanse(&pin);
        return 0;
    }
    p11m_pin_cleanse(&pin);
    doc_line(d, DOC_OK, "pin", "PIN source %s readable", d->pin_source);
    return 1;
}

/* The token's PIN flags, read before any login: a login on a final try could lock it. */
static int doc_pin_state(struct doc *d)
{
    CK_FLAGS f;

    if (p11m_token_refresh_info(d->tok) != CKR_OK) {
        doc_line(d, DOC_FAIL, "pin-state", "cannot read the token's flags");
        return 0;
    }
    f = p11m_token_info(d->tok)->flags;
    if (f & CKF_USER_PIN_LOCKED) {
        doc_line(d, DOC_FAIL, "pin-state", "the user PIN is LOCKED; no login tried");
        doc_fix("unlock it with the SO PIN (C_InitPIN) or re-initialise the token");
    } else if (f & CKF_USER_PIN_FINAL_TRY) {
        doc_line(d, DOC_FAIL, "pin-state",
                 "the user PIN is on its FINAL TRY: one wrong "
                 "PIN locks the token; no login tried");
        doc_fix("check the PIN in %s by hand, then log in once with it (p11mtls list "
                "--login) to reset the counter",
                d->pin_source != NULL ? d->pin_source : "the PIN source");
    } else if (f & CKF_USER_PIN_TO_BE_CHANGED) {
        doc_line(d, DOC_FAIL, "pin-state", "the user PIN must be changed first");
        doc_fix("change the PIN with the token's tools, then update the PIN source");
    } else if (!(f & CKF_USER_PIN_INITIALIZED)) {
        doc_line(d, DOC_FAIL, "pin-state", "the user PIN is not initialised");
        doc_fix("p11mtls token init (or the token's tools) sets it");
    } else {
        if (f & CKF_USER_PIN_COUNT_LOW)
            doc_line(d, DOC_WARN, "pin-state",
                     "a wrong PIN was given recently (count low)");
        else
            doc_line(d, DOC_OK, "pin-state", "user PIN initialised, not locked");
        return 1;
    }
    d->login_failed = 1; /* never log in on these flags */
    return 0;
}

struct doc_pick {
    P11M_OBJ *obj;
    int n;
};

static int doc_pick_cb(P11M_OBJ *obj, void *arg)
{
    struct doc_pick *p = arg;

    if (p->n++ == 0)
        p->obj = obj;
    else
        p11m_obj_free(obj);
    return 1;
}

static P11M_OBJ *doc_find(P11M_MODULE *mod, const char *s, CK_OBJECT_CLASS cls, int *n)
{
    P11KitUri *uri = p11m_uri_parse(s);
    P11M_FIND_ARGS args = {uri, cls, NULL, NULL, 0};
    struct doc_pick pick = {NULL, 0};

    *n = -1;
    if (uri != NULL && p11m_obj_find(mod, &args, doc_pick_cb, &pick, NULL) == CKR_OK)
        *n = pick.n;
    p11_kit_uri_free(uri);
    return pick.obj;
}

static X509 *doc_obj_cert(const P11M_OBJ *obj)
{
    size_t len;
    const unsigned char *der = p11m_obj_attr(obj, CKA_VALUE, &len);

    return der != NULL ? d2i_X509(NULL, &der, (long) len) : NULL;
}

static int doc_key(struct doc *d, P11M_MODULE *mod)
{
    int n;

    d->key = doc_find(mod, d->ic->key, CKO_PRIVATE_KEY, &n);
    if (d->key == NULL || n != 1) {
        doc_line(d, DOC_FAIL, "key",
                 n == 0  ? "no key on the token matches %s"
                 : n > 1 ? "%s matches several keys"
                         : "%s: cannot search the token",
                 d->ic->key);
        doc_fix("check the URI in [%s] key against 'p11mtls list'", d->ic->section);
        return 0;
    }
    doc_line(d, DOC_OK, "key", "found '%s' on the token", p11m_obj_label(d->key));
    return 1;
}

static int doc_cert(struct doc *d, P11M_MODULE *mod)
{
    P11M_OBJ *obj;
    char subj[512];
    int n = 1;

    if (strncmp(d->ic->cert, "pkcs11:", 7) == 0) {
        obj = mod != NULL ? doc_find(mod, d->ic->cert, CKO_CERTIFICATE, &n) : NULL;
        d->cert = obj != NULL ? doc_obj_cert(obj) : NULL;
        p11m_obj_free(obj);
    } else {
        d->cert = tool_read_cert(d->ic->cert);
    }
    if (d->cert == NULL) {
        doc_line(d, DOC_FAIL, "cert", "no certificate at %s", d->ic->cert);
        doc_fix("import it: p11mtls cert import --uri KEY-URI --cert FILE");
        return 0;
    }
    doc_line(d, DOC_OK, "cert", "%s%s",
             tool_name_str(X509_get_subject_name(d->cert), subj, sizeof(subj)),
             n > 1 ? " (the URI matches several certificates: the first is used)" : "");
    return 1;
}

static int doc_match(struct doc *d)
{
    EVP_PKEY *pub = tool_obj_pubkey(d->key);
    int eq = pub != NULL && EVP_PKEY_eq(pub, X509_get0_pubkey(d->cert)) == 1;

    EVP_PKEY_free(pub);
    ERR_clear_error();
    if (!eq) {
        doc_line(d, DOC_FAIL, "match", "the certificate is for another key than %s",
                 d->ic->key);
        doc_fix("import the certificate issued for this key (p11mtls cert import), or "
                "point cert at it");
        return 0;
    }
    doc_line(d, DOC_OK, "match", "the certificate's public key is the token key's");
    return 1;
}

static int doc_validity(struct doc *d)
{
    long left = tool_days_left(X509_get0_notAfter(d->cert));
    char when[32];

    if (X509_cmp_current_time(X509_get0_notBefore(d->cert)) > 0) {
        doc_line(d, DOC_FAIL, "validity", "not valid before %s",
                 tool_time_str(X509_get0_notBefore(d->cert), when, sizeof(when)));
        doc_fix("check this device's clock; otherwise wait or re-issue");
        return 0;
    }
    if (X509_cmp_current_time(X509_get0_notAfter(d->cert)) < 0) {
        doc_line(d, DOC_FAIL, "validity", "EXPIRED on %s (%ld days ago)",
                 tool_time_str(X509_get0_notAfter(d->cert), when, sizeof(when)), -left);
        doc_fix("renew: p11mtls csr --key KEY-URI ..., have it signed, then p11mtls cert "
                "import --force");
        return 0;
    }
    doc_line(d, left < DOC_WARN_DAYS ? DOC_WARN : DOC_OK, "validity",
             "valid until %s (%ld days left)%s",
             tool_time_str(X509_get0_notAfter(d->cert), when, sizeof(when)), left,
             left < DOC_WARN_DAYS ? ": renew soon" : "");
    return 1;
}

static int doc_collect_cb(P11M_OBJ *obj, void *arg)
{
    STACK_OF(X509) *sk = arg;
    X509 *x = doc_obj_cert(obj);

    if (x != NULL && !sk_X509_push(sk, x))
        X509_free(x);
    p11m_obj_free(obj);
    return 1;
}

/* A chain given as a pkcs11: URI: every certificate it names on the token. */
static STACK_OF(X509) * doc_chain_from_token(P11M_MODULE *mod, const char *s)
{
    P11KitUri *uri = mod != NULL ? p11m_uri_parse(s) : NULL;
    P11M_FIND_ARGS args = {uri, CKO_CERTIFICATE, NULL, NULL, 0};
    STACK_OF(X509) *sk = uri != NULL ? sk_X509_new_null() : NULL;

    if (sk != NULL && p11m_obj_find(mod, &args, doc_collect_cb, sk, NULL) != CKR_OK) {
        sk_X509_pop_free(sk, X509_free);
        sk = NULL;
    }
    p11_kit_uri_free(uri);
    return sk;
}

/* Trust anchors: the self-signed certificates of sk; the others are intermediates. */
static X509_STORE *doc_store_from(STACK_OF(X509) * sk, STACK_OF(X509) * *untrusted)
{
    X509_STORE *st = X509_STORE_new();

    *untrusted = sk_X509_new_null();
    for (int i = 0; st != NULL && i < sk_X509_num(sk); i++) {
        X509 *x = sk_X509_value(sk, i);

        if (X509_check_issued(x, x) == X509_V_OK)
            X509_STORE_add_cert(st, x);
        else if (*untrusted != NULL)
            sk_X509_push(*untrusted, x);
    }
    return st;
}

/* X509_V_OK or the verification error of x against store (+ untrusted). */
static int doc_verify(X509 *x, X509_STORE *st, STACK_OF(X509) * untrusted, int purpose,
                      const char *host, int is_ip)
{
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    int rc = X509_V_ERR_UNSPECIFIED;

    if (ctx != NULL && st != NULL && X509_STORE_CTX_init(ctx, st, x, untrusted)) {
        X509_VERIFY_PARAM *vp = X509_STORE_CTX_get0_param(ctx);

        X509_STORE_CTX_set_purpose(ctx, purpose);
        if (host != NULL && is_ip)
            X509_VERIFY_PARAM_set1_ip_asc(vp, host);
        else if (host != NULL)
            X509_VERIFY_PARAM_set1_host(vp, host, 0);
        rc = X509_verify_cert(ctx) == 1 ? X509_V_OK : X509_STORE_CTX_get_error(ctx);
    }
    X509_STORE_CTX_free(ctx);
    ERR_clear_error();
    return rc;
}

static int doc_chain(struct doc *d, P11M_MODULE *mod)
{
    STACK_OF(X509) *untrusted = NULL;
    X509_STORE *st;
    int rc;

    if (d->ic->chain == NULL) {
        doc_line(d, DOC_INFO, "chain",
                 "no chain configured: the certificate is sent "
                 "alone (servers must know its issuer)");
        return 1;
    }
    d->chain = strncmp(d->ic->chain, "pkcs11:", 7) == 0
                   ? doc_chain_from_token(mod, d->ic->chain)
                   : tool_read_certs(d->ic->chain);
    if (d->chain == NULL || sk_X509_num(d->chain) == 0) {
        doc_line(d, DOC_FAIL, "chain", "no certificates in %s", d->ic->chain);
        doc_fix("point chain at the PEM file of the issuing CA(s) (intermediate + root)");
        return 0;
    }
    st = doc_store_from(d->chain, &untrusted);
    rc = doc_verify(d->cert, st, untrusted, X509_PURPOSE_SSL_CLIENT, NULL, 0);
    X509_STORE_free(st);
    sk_X509_free(untrusted);
    if (rc != X509_V_OK) {
        doc_line(d, DOC_FAIL, "chain", "the certificate does not chain to %s: %s",
                 d->ic->chain, X509_verify_cert_error_string(rc));
        doc_fix("use the chain of the CA that issued the certificate (it must end in a "
                "self-signed root), or re-issue from that CA");
        return 0;
    }
    doc_line(d, DOC_OK, "chain", "chains to a root in %s (%d certificate%s)",
             d->ic->chain, sk_X509_num(d->chain), sk_X509_num(d->chain) == 1 ? "" : "s");
    return 1;
}

static int doc_login(struct doc *d)
{
    P11M_LOGIN_INFO li;
    unsigned long before = p11m_login_count();

    memset(&li, 0, sizeof(li));
    li.pin_source = d->pin_source; /* no prompt: the preload library never asks either */
    if (p11m_token_login(d->tok, &li) == CKR_OK) {
        doc_line(d, DOC_OK, "login", "the token accepts the PIN from %s",
                 d->pin_source != NULL ? d->pin_source : "(none needed)");
        return 1;
    }
    d->login_failed = 1;
    doc_line(d, DOC_FAIL, "login", "%s (%lu C_Login attempt%s; no other will be made)",
             doc_core_error(), p11m_login_count() - before,
             p11m_login_count() - before == 1 ? "" : "s");
    if (tool_core_last_reason() == P11M_R_PIN_INCORRECT) {
        p11m_token_refresh_info(d->tok);
        doc_fix("put the right user PIN in %s%s; every wrong try brings the token closer "
                "to locking",
                d->pin_source,
                p11m_token_info(d->tok)->flags & CKF_USER_PIN_FINAL_TRY
                    ? " (the token is now on its FINAL TRY)"
                    : "");
    }
    return 0;
}

/* Loads the key through the provider and signs once, as the preload library does. */
static int doc_provider(struct doc *d)
{
    static const unsigned char tbs[] = "p11mtls doctor probe";
    const char *path = d->o->provider != NULL ? d->o->provider : d->c->provider;
    int raw, ok;
    unsigned char sig[1024];
    size_t siglen = sizeof(sig);
    EVP_MD_CTX *md;
    char err[256];

    if ((d->lc = tool_libctx(path)) == NULL) {
        doc_line(d, DOC_FAIL, "provider", "cannot load %s", path);
        doc_fix("install p11mtls.so there, or set provider in [p11mtls]");
        return 0;
    }
    ERR_set_mark();
    d->pkey = tool_load_key(d->lc, d->ic->key, d->pin_source, d->module);
    ERR_pop_to_mark();
    if (d->pkey == NULL) {
        doc_line(d, DOC_FAIL, "provider", "the provider cannot load %s", d->ic->key);
        return 0;
    }
    raw = EVP_PKEY_is_a(d->pkey, "ED25519") || EVP_PKEY_is_a(d->pkey, "ED448");
    md = EVP_MD_CTX_new();
    ok = md != NULL &&
         EVP_DigestSignInit_ex(md, NULL, raw ? NULL : "SHA256", d->lc, NULL, d->pkey,
                               NULL) > 0 &&
         EVP_DigestSign(md, sig, &siglen, tbs, sizeof(tbs)) > 0;
    EVP_MD_CTX_free(md);
    if (ok) {
        md = EVP_MD_CTX_new();
        ok = md != NULL &&
             EVP_DigestVerifyInit_ex(md, NULL, raw ? NULL : "SHA256", NULL, NULL,
                                     X509_get0_pubkey(d->cert), NULL) > 0 &&
             EVP_DigestVerify(md, sig, siglen, tbs, sizeof(tbs)) == 1;
        EVP_MD_CTX_free(md);
        if (!ok) {
            doc_line(d, DOC_FAIL, "sign",
                     "the token's signature does not verify with the "
                     "certificate");
            return 0;
        }
    }
    if (!ok) {
        doc_line(d, DOC_FAIL, "sign", "test signature on the token failed: %s",
                 doc_ossl_error(err, sizeof(err)));
        return 0;
    }
    doc_line(d, DOC_OK, "sign",
             "the key signs on the token (through %s) and the "
             "certificate verifies it",
             path);
    return 1;
}

static P11KitUri *doc_key_uri(struct doc *d)
{
    P11KitUri *uri = p11m_uri_parse(d->ic->key);

    if (uri == NULL) {
        doc_line(d, DOC_FAIL, "key", "%s", doc_core_error());
        return NULL;
    }
    if (d->pin_source == NULL)
        d->pin_source = p11_kit_uri_get_pin_source(uri);
    return uri;
}

/* The token checks, in order; each stops the ones that depend on it. */
static int doc_token_identity(struct doc *d)
{
    P11KitUri *uri = doc_key_uri(d);
    P11M_MODULE *mod = uri != NULL ? doc_module(d, uri) : NULL;
    int ok = mod != NULL && doc_token(d, mod, uri);
    int objs;

    if (ok) {
        ok = doc_pin_source(d);
        ok = doc_pin_state(d) && ok;
        objs = doc_key(d, mod);
        objs = doc_cert(d, mod) && objs;
        objs = objs && doc_match(d);
        ok = objs && ok;
    } else {
        doc_cert(d, NULL);
    }
    if (d->cert != NULL)
        ok = doc_validity(d) && ok;
    if (d->cert != NULL)
        ok = doc_chain(d, mod) && ok;
    if (ok && !d->login_failed) {
        ok = doc_login(d);
        if (ok)
            ok = doc_provider(d);
        else
            doc_line(d, DOC_INFO, "sign",
                     "skipped: after a failed login nothing may try "
                     "the PIN again");
    } else
        doc_line(d, DOC_INFO, "login", "skipped: %s",
                 d->login_failed ? "the PIN state forbids a login"
                                 : "fix the failures above first");
    p11_kit_uri_free(uri);
    return ok;
}

static int doc_identity(struct doc *d)
{
    printf("identity '%s' [%s]\n", d->ic->name, d->ic->section);
    d->module = d->o->module != NULL ? d->o->module : doc_param(d->c, "pkcs11-module");
    d->pin_source =
        d->ic->pin_source != NULL ? d->ic->pin_source : doc_param(d->c, "pin-source");
    if (strncmp(d->ic->key, "pkcs11:", 7) != 0) {
        doc_line(d, DOC_WARN, "key",
                 "%s is a key file, not a token key: it can be copied "
                 "off this device",
                 d->ic->key);
        if (doc_cert(d, NULL))
            d->identity_ok = doc_validity(d) && doc_chain(d, NULL);
        return d->identity_ok;
    }
    d->identity_ok = doc_token_identity(d);
    return d->identity_ok;
}

/* ---- TLS ---- */

struct doc_tls {
    struct doc *d;
    int cr_seen;
    STACK_OF(X509_NAME) * cas;
    int ca_match; /* -1 not checked */
    char ca_why[512];
    struct shim_verdict v; /* the preload library's decision at the request */
};

/*
 * Why the preload library's decision must not load the identity: after a refused PIN
 * (or a PIN state that forbids a login) the PIN is never tried again. NULL otherwise.
 */
static const char *doc_unusable(const struct doc *d)
{
    return d->login_failed ? "the token refused the PIN, or its PIN state forbids a "
                             "login (see above)"
                           : NULL;
}

/*
 * The certificate callback: runs only when the server sent a CertificateRequest. The
 * preload library's own decision runs here, on this connection, and is carried out as
 * it would be: the identity installed, or none, or the handshake aborted.
 */
static int doc_cert_cb(SSL *ssl, void *arg)
{
    struct doc_tls *t = arg;
    struct doc *d = t->d;
    const STACK_OF(X509_NAME) *cas = SSL_get0_peer_CA_list(ssl);
    struct shim_request rq;

    t->cr_seen = 1;
    if (cas != NULL && t->cas == NULL)
        t->cas = sk_X509_NAME_deep_copy(cas, X509_NAME_dup, X509_NAME_free);
    shim_ssl_request(ssl, &rq);
    shim_identity_put(t->v.id); /* a second request on this connection */
    shim_decide_dest(&rq, d->c, &d->dest, doc_unusable(d), &t->v);
    /* also without require_ca_match: a server that names other CAs will reject ours */
    if (t->v.id != NULL)
        t->ca_match = shim_identity_ca_match(t->v.id, ssl, t->ca_why, sizeof(t->ca_why));
    ERR_clear_error();
    return t->v.action != SHIM_ABORT;
}

static int doc_connect_fd(struct doc *d)
{
    struct addrinfo hints, *res = NULL, *ai;
    struct timeval tv = {d->o->timeout, 0};
    char port[8];
    int fd = -1, rc, err = 0;

    memset(&hints, 0, sizeof(hints));
    hints.ai_socktype = SOCK_STREAM;
    snprintf(port, sizeof(port), "%d", d->port);
    if ((rc = getaddrinfo(d->host, port, &hints, &res)) != 0) {
        doc_line(d, DOC_FAIL, "connect", "%s: %s", d->host, gai_strerror(rc));
        doc_fix("check the name and this device's DNS");
        return -1;
    }
    for (ai = res; ai != NULL && fd < 0; ai = ai->ai_next) {
        struct pollfd p;

        if ((fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK, 0)) < 0)
            continue;
        p = (struct pollfd){fd, POLLOUT, 0};
        if ((connect(fd, ai->ai_addr, ai->ai_addrlen) == 0 ||
             (errno == EINPROGRESS && poll(&p, 1, (int) d->o->timeout * 1000) == 1)) &&
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &(socklen_t){sizeof(err)}) == 0 &&
            err == 0)
            break;
        err = err != 0 ? err : errno != EINPROGRESS ? errno : ETIMEDOUT;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        doc_line(d, DOC_FAIL, "connect", "%s port %d: %s", d->host, d->port,
                 strerror(err));
        doc_fix("is the server running and reachable from here (firewall, proxy)?");
        return -1;
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    doc_line(d, DOC_OK, "connect", "%s port %d", d->host, d->port);
    return fd;
}

/* The expected CA of the server: --ca, else the identity's chain. */
static int doc_server_cert(struct doc *d, SSL *ssl)
{
    X509 *x = SSL_get0_peer_certificate(ssl);
    STACK_OF(X509) *peer = SSL_get_peer_cert_chain(ssl), *anchors = NULL,
                   *untrusted = NULL;
    X509_STORE *st = NULL;
    const char *what = d->o->ca != NULL ? d->o->ca : d->ic != NULL ? d->ic->chain : NULL;
    char issuer[512];
    int rc = X509_V_ERR_UNSPECIFIED, sys, have_anchors;

    if (x == NULL) {
        doc_line(d, DOC_FAIL, "server", "no server certificate received");
        return 0;
    }
    tool_name_str(X509_get_issuer_name(x), issuer, sizeof(issuer));
    if (d->o->ca != NULL)
        anchors = tool_read_certs(d->o->ca);
    else if (d->chain != NULL)
        anchors = X509_chain_up_ref(d->chain);
    have_anchors = anchors != NULL;
    if (have_anchors) {
        /* untrusted holds borrowed pointers: the anchors' intermediates and the peer's */
        st = doc_store_from(anchors, &untrusted);
        for (int i = 0; untrusted != NULL && peer != NULL && i < sk_X509_num(peer); i++)
            sk_X509_push(untrusted, sk_X509_value(peer, i));
        rc = doc_verify(x, st, untrusted, X509_PURPOSE_SSL_SERVER, d->host, d->is_ip);
        X509_STORE_free(st);
        sk_X509_free(untrusted);
        sk_X509_pop_free(anchors, X509_free);
        if (rc == X509_V_OK) {
            doc_line(d, DOC_OK, "server", "certificate (issuer %s) verifies against %s",
                     issuer, what);
            return 1;
        }
    }
    st = X509_STORE_new();
    sys =
        st != NULL && X509_STORE_set_default_paths(st) &&
        doc_verify(x, st, peer, X509_PURPOSE_SSL_SERVER, d->host, d->is_ip) == X509_V_OK;
    X509_STORE_free(st);
    if (sys && !have_anchors) {
        doc_line(d, DOC_OK, "server",
                 "certificate (issuer %s) verifies against the system "
                 "CAs",
                 issuer);
        return 1;
    }
    if (!have_anchors) {
        doc_line(d, DOC_WARN, "server",
                 "certificate issued by %s is not trusted by the "
                 "system CAs, and no CA is expected (no chain, no --ca)",
                 issuer);
        doc_fix("give --ca FILE with the server's CA to check it; programs that verify "
                "the server need that CA too");
        return 1;
    }
    if (sys) {
        doc_line(d, DOC_WARN, "server",
                 "certificate issued by %s: trusted by the system, "
                 "but not from %s",
                 issuer, what);
        return 1;
    }
    doc_line(d, DOC_FAIL, "server",
             "certificate issued by %s does not verify against %s: "
             "%s",
             issuer, what != NULL ? what : "the system CAs",
             have_anchors ? X509_verify_cert_error_string(rc) : "untrusted");
    doc_fix("a TLS-intercepting proxy, or the wrong server? Check the network path; give "
            "--ca FILE if the server legitimately uses another CA");
    return 0;
}

static void doc_ca_list(struct doc *d, struct doc_tls *t)
{
    char name[512];
    int n = t->cas != NULL ? sk_X509_NAME_num(t->cas) : 0;

    if (n == 0) {
        doc_line(d, DOC_OK, "ca-list", "the server names no acceptable CAs (any issuer)");
        return;
    }
    if (t->ca_match > 0) {
        doc_line(d, DOC_OK, "ca-list", "the server accepts our issuer (%d CA name%s)", n,
                 n == 1 ? "" : "s");
        return;
    }
    if (t->ca_match < 0) {
        doc_line(d, DOC_INFO, "ca-list",
                 "the server names %d acceptable CA%s; not compared: the identity is "
                 "unavailable",
                 n, n == 1 ? "" : "s");
        return;
    }
    doc_line(d, d->rule != NULL && d->rule->require_ca_match ? DOC_FAIL : DOC_WARN,
             "ca-list", "%s%s", t->ca_why,
             d->rule != NULL && d->rule->require_ca_match
                 ? ": with require_ca_match the identity is not presented"
                 : ": the server will probably reject the certificate");
    for (int i = 0; i < n && i < 5; i++)
        printf("                 server accepts: %s\n",
               tool_name_str(sk_X509_NAME_value(t->cas, i), name, sizeof(name)));
    doc_fix("this server wants certificates from another CA: enrol with that CA, or ask "
            "for ours to be added to its client CA list");
}

/* After a TLS 1.3 handshake a rejection arrives at the first read. */
static int doc_read_result(struct doc *d, SSL *ssl, char *why, size_t len)
{
    char req[1024], buf[256];
    struct timeval tv = {d->o->wait, 0};
    int n;

    setsockopt(SSL_get_fd(ssl), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (d->https) {
        snprintf(req, sizeof(req),
                 "HEAD %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: p11mtls-doctor\r\n"
                 "Connection: close\r\n\r\n",
                 d->path, d->host);
        SSL_write(ssl, req, (int) strlen(req));
    }
    n = SSL_read(ssl, buf, sizeof(buf) - 1);
    if (n > 0) {
        int status = 0;

        buf[n] = '\0';
        if (d->https && sscanf(buf, "HTTP/%*s %d", &status) == 1 &&
            (status == 400 || status == 401 || status == 403 || status == 495 ||
             status == 496)) {
            snprintf(why, len,
                     "the server answered HTTP %d (nginx says 400 when the "
                     "client certificate did not verify)",
                     status);
            return 0;
        }
        snprintf(why, len, status > 0 ? "HTTP status %d" : "the server sent data",
                 status);
        return 1;
    }
    if (SSL_get_error(ssl, n) == SSL_ERROR_SSL) {
        doc_ossl_error(why, len);
        return 0;
    }
    snprintf(why, len, "no rejection within %ld s", d->o->wait);
    return 1;
}

static void doc_handshake_result(struct doc *d, SSL *ssl, struct doc_tls *t, int hs_ok,
                                 const char *hs_err)
{
    char why[512];

    if (!t->cr_seen) {
        if (hs_ok) {
            doc_line(d, DOC_FAIL, "request",
                     "the server did not ask for a client "
                     "certificate (no CertificateRequest): nothing is presented");
            doc_fix("make the server request client certificates (nginx: "
                    "ssl_verify_client on; s_server: -Verify 1), or this endpoint does "
                    "not use mTLS");
        } else {
            doc_line(d, DOC_FAIL, "handshake", "failed before any CertificateRequest: %s",
                     hs_err);
        }
        return;
    }
    doc_line(d, DOC_OK, "request", "the server asks for a client certificate (%s)",
             SSL_get_version(ssl));
    doc_ca_list(d, t);
    if (t->v.action == SHIM_ABORT) {
        doc_line(d, DOC_FAIL, "handshake",
                 "no certificate presented: %s; the preload library aborts the handshake "
                 "(on_unavailable = abort)",
                 t->v.why);
        return;
    }
    if (t->v.action != SHIM_PRESENT) {
        doc_line(
            d, hs_ok ? DOC_INFO : DOC_FAIL, "handshake",
            "no certificate presented (%s)%s%s",
            t->v.action == SHIM_NO_RULE ? "no rule matches" : t->v.why,
            hs_ok ? "" : "; the server refused the connection: ", hs_ok ? "" : hs_err);
        return;
    }
    if (!hs_ok) {
        doc_line(d, DOC_FAIL, "handshake", "the server rejected the certificate: %s",
                 hs_err);
        doc_fix("the server must trust the issuer of the certificate (its client CA "
                "file), and the certificate must be valid for client authentication");
    } else if (!doc_read_result(d, ssl, why, sizeof(why))) {
        doc_line(d, DOC_FAIL, "handshake",
                 "the server rejected the certificate after the "
                 "handshake: %s",
                 why);
        doc_fix(
            "the server must trust the issuer of the certificate (its client CA file)");
    } else {
        doc_line(d, DOC_OK, "handshake", "the identity was presented and accepted (%s)",
                 why);
    }
}

static void doc_tls(struct doc *d)
{
    struct doc_tls t = {.d = d, .ca_match = -1};
    SSL_CTX *ctx = SSL_CTX_new_ex(d->lc, NULL, TLS_client_method());
    SSL *ssl = NULL;
    char err[256] = "";
    int fd, hs_ok;

    printf("TLS to %s port %d\n", d->host, d->port);
    if (ctx == NULL || (fd = doc_connect_fd(d)) < 0) {
        SSL_CTX_free(ctx);
        return;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL); /* judged below, with reasons */
    SSL_CTX_set_cert_cb(ctx, doc_cert_cb, &t);
    if ((ssl = SSL_new(ctx)) == NULL || !SSL_set_fd(ssl, fd)) {
        doc_line(d, DOC_FAIL, "handshake", "cannot set up TLS");
        goto done;
    }
    if (!d->is_ip)
        SSL_set_tlsext_host_name(ssl, d->host);
    ERR_clear_error();
    hs_ok = SSL_connect(ssl) == 1;
    if (!hs_ok)
        doc_ossl_error(err, sizeof(err));
    if (SSL_get0_peer_certificate(ssl) != NULL)
        doc_server_cert(d, ssl);
    doc_handshake_result(d, ssl, &t, hs_ok, err);
done:
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    close(fd);
    sk_X509_NAME_pop_free(t.cas, X509_NAME_free);
    shim_identity_put(t.v.id);
}

/* ---- the preload library's verdict ---- */

/*
 * What the preload library decides for the destination, asked of its own code (the
 * identity is loaded the way it loads it); before any connection, so without the
 * server's acceptable-CA list, which the TLS check adds.
 */
static void doc_decision(struct doc *d)
{
    struct shim_verdict v;
    char shown[DOC_HOST_MAX + 16];

    shim_dest_format(&d->dest, shown, sizeof(shown));
    shim_decide_dest(NULL, d->c, &d->dest, doc_unusable(d), &v);
    ERR_clear_error();
    switch (v.action) {
    case SHIM_NO_RULE:
        doc_line(d, DOC_INFO, "decision",
                 "the preload library presents nothing to %s: no rule matches", shown);
        break;
    case SHIM_PRESENT:
        doc_line(d, DOC_OK, "decision",
                 "the preload library presents identity '%s' to %s (subject %s, "
                 "serial %s)",
                 d->c->ids[v.rule->identity].name, shown, v.id->subject, v.id->serial);
        break;
    case SHIM_SKIP:
    case SHIM_ABORT:
        doc_line(d, DOC_FAIL, "decision",
                 "the preload library does not present identity '%s' to %s: %s; %s",
                 d->c->ids[v.rule->identity].name, shown, v.why,
                 v.action == SHIM_ABORT
                     ? "the handshake is aborted (on_unavailable = abort)"
                     : "the handshake goes on without a client certificate");
        break;
    }
    shim_identity_put(v.id);
}

/* ---- the command ---- */

static void doc_reset_identity(struct doc *d)
{
    p11m_obj_free(d->key);
    X509_free(d->cert);
    sk_X509_pop_free(d->chain, X509_free);
    EVP_PKEY_free(d->pkey);
    OSSL_LIB_CTX_free(d->lc);
    d->key = NULL;
    d->cert = NULL;
    d->chain = NULL;
    d->pkey = NULL;
    d->lc = NULL;
    d->tok = NULL;
    d->login_failed = 0;
    d->identity_ok = 0;
}

static int doc_run(const struct doc_opts *o)
{
    struct doc d;

    memset(&d, 0, sizeof(d));
    d.o = o;
    tool_core_errors(1); /* the core's messages go into the check lines */
    if (o->dest != NULL && !doc_parse_dest(&d, o->dest))
        return TOOL_EXIT_USAGE;
    if (o->program != NULL)
        d.fails += doctor_program(o->program, &d.warns) != 0;
    if (doc_config(&d)) {
        if (o->dest != NULL) {
            if (doc_rule(&d)) {
                doc_identity(&d);
                doc_decision(&d);
                doc_tls(&d);
            } else if (d.dest.source != NULL) {
                doc_decision(&d);
            }
        } else {
            for (size_t i = 0; i < d.c->nids; i++) {
                d.ic = &d.c->ids[i];
                doc_identity(&d);
                doc_reset_identity(&d);
            }
            printf("(give a destination, URL or host:port, to check a server too)\n");
        }
    }
    doc_reset_identity(&d);
    printf("result: %d check%s failed, %d warning%s\n", d.fails, d.fails == 1 ? "" : "s",
           d.warns, d.warns == 1 ? "" : "s");
    return d.fails > 0 ? TOOL_EXIT_CHECK : TOOL_EXIT_OK;
}

static void doctor_usage(FILE *out)
{
    fprintf(out,
            "Usage: p11mtls doctor [URL | HOST[:PORT]] [--config FILE] [--ca FILE]\n"
            "                      [--module PATH] [--provider PATH] [--timeout S] "
            "[--wait S]\n"
            "                      [--program PROGRAM|PID]\n"
            "\n"
            "Explains step by step whether this device would present its client\n"
            "certificate to the destination, and why not: the configuration, the rule\n"
            "that matches, the module, token, PIN source and PIN state (a locked or\n"
            "final-try PIN is never tried; a wrong PIN is tried once only), key and\n"
            "certificate, validity (warning under %d days), chain, a test signature\n"
            "through the provider, then one real TLS connection: does the server ask\n"
            "for a certificate, does it accept our issuer, is its own certificate from\n"
            "the expected CA (else a TLS-intercepting proxy may be in the way), and is\n"
            "the identity accepted. Without a destination every identity is checked.\n"
            "Each line is ok, warn, FAIL (with the fix) or -- (information).\n"
            "\n"
            "  --config FILE   the preload library's configuration (default:\n"
            "                  $P11MTLS_CONF, else %s)\n"
            "  --ca FILE       CA(s) the server's certificate must come from (default:\n"
            "                  the identity's chain; the system CAs give a warning)\n"
            "  --module PATH   PKCS#11 module (default: pkcs11-module of the provider\n"
            "                  parameters, else p11-kit's proxy)\n"
            "  --provider PATH p11mtls.so (default: as the preload library finds it)\n"
            "  --timeout S     connect and handshake timeout (default 10)\n"
            "  --wait S        how long to wait for a late rejection (default 2)\n"
            "  --program PROG  which TLS library PROG (a path or command name) or a\n"
            "                  running process (PID) uses, and whether the preload\n"
            "                  library covers it (OpenSSL 3 and GnuTLS, linked\n"
            "                  dynamically), else what to use instead\n"
            "Exit status: 0 every check passed (warnings allowed), 3 a check failed,\n"
            "2 usage error.\n",
            DOC_WARN_DAYS, p11m_conf_default());
}

/* tool_getopt: one option of the command into its options. */
static int doctor_main_opt(int c, char *arg, void *vo)
{
    struct doc_opts *o = vo;

    switch (c) {
    case 'c':
        o->config = arg;
        break;
    case 'a':
        o->ca = arg;
        break;
    case 'm':
        o->module = arg;
        break;
    case 'P':
        o->provider = arg;
        break;
    case 't':
        if (!tool_parse_long(CMD, "--timeout", arg, 1, 600, &o->timeout))
            return TOOL_EXIT_USAGE;
        break;
    case 'w':
        if (!tool_parse_long(CMD, "--wait", arg, 0, 600, &o->wait))
            return TOOL_EXIT_USAGE;
        break;
    case 'p':
        o->program = arg;
        break;
    }
    return 0;
}

int doctor_main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"ca", required_argument, NULL, 'a'},
        {"module", required_argument, NULL, 'm'},
        {"provider", required_argument, NULL, 'P'},
        {"timeout", required_argument, NULL, 't'},
        {"wait", required_argument, NULL, 'w'},
        {"program", required_argument, NULL, 'p'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    static const TOOL_CMD cmd = {CMD, "h", longopts, doctor_usage, 1};
    struct doc_opts o = {NULL, NULL, NULL, NULL, NULL, NULL, 10, 2};
    int rc;

    if ((rc = tool_getopt(&cmd, argc, argv, doctor_main_opt, &o)) != TOOL_PARSED)
        return rc;
    if (optind < argc)
        o.dest = argv[optind];
    if (o.config != NULL && access(o.config, R_OK) != 0)
        return tool_usage(CMD, "--config: %s: %s", o.config, strerror(errno));
    return doc_run(&o);
}
