/*
 * conf.c - read and check the shim's configuration (OpenSSL config syntax, via NCONF).
 *
 * The file is only parsed here, never applied with CONF_modules_load: config modules are
 * process-wide, and the shim must not change the program's own TLS settings. Every error
 * is collected as one line naming the file and the line (syntax) or the section and key
 * (meaning); shim_conf_get() prints them once. Any error disables the shim unless the
 * file asks for fail-closed (on_config_error = abort).
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "p11m_config.h"
#include "p11m_util.h"
#include "shim.h"

#define CONF_MAIN       "p11mtls"
#define CONF_MAX_ERRORS 20
/* A configuration is a few kilobytes; anything this big is a mistake. */
#define CONF_MAX_SIZE  (1024 * 1024)
#define CONF_ERROR_MAX 768 /* one error line */

typedef STACK_OF(CONF_VALUE) conf_section;

struct conf_state {
    struct shim_conf *c;
    CONF *cnf;
    bool fail_closed;
    bool fail_closed_set; /* the file said continue or abort */
};

static void conf_replace(char **slot, const char *value)
{
    char *copy = strdup(value);

    if (copy != NULL) {
        free(*slot);
        *slot = copy;
    }
}

static void conf_error(struct shim_conf *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void conf_error(struct shim_conf *c, const char *fmt, ...)
{
    char line[768];
    char **grown;
    va_list ap;

    if (c->nerrors >= CONF_MAX_ERRORS)
        return;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    /* Values quoted in the message may hold control characters ("\n" escapes, stray
     * bytes): the error stays one printable line wherever it is shown (doctor too). */
    for (char *p = line; *p != '\0'; p++)
        if ((unsigned char) *p < 0x20 || *p == 0x7f)
            *p = '?';
    grown = realloc(c->errors, (c->nerrors + 1) * sizeof(*grown));
    if (grown == NULL)
        return;
    c->errors = grown;
    c->errors[c->nerrors] = strdup(line);
    if (c->errors[c->nerrors] != NULL)
        c->nerrors++;
}

/* A problem with one key: "FILE: [section] key: why". */
#define conf_bad(st, sect, key, ...)                                                     \
    conf_bad_at((st)->c, (st)->c->path, sect, key, __VA_ARGS__)

static void conf_bad_at(struct shim_conf *c, const char *file, const char *sect,
                        const char *key, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static void conf_bad_at(struct shim_conf *c, const char *file, const char *sect,
                        const char *key, const char *fmt, ...)
{
    char why[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    conf_error(c, "%s: [%s] %s: %s", file, sect, key, why);
}

static int conf_count(const conf_section *s)
{
    return s != NULL ? shim_fn.OPENSSL_sk_num((const OPENSSL_STACK *) s) : 0;
}

static const CONF_VALUE *conf_value(const conf_section *s, int i)
{
    return shim_fn.OPENSSL_sk_value((const OPENSSL_STACK *) s, i);
}

static bool conf_bool(const char *v, bool *out)
{
    static const char *const yes[] = {"yes", "true", "on", "1"};
    static const char *const no[] = {"no", "false", "off", "0"};

    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        if (strcasecmp(v, yes[i]) == 0 || strcasecmp(v, no[i]) == 0) {
            *out = strcasecmp(v, yes[i]) == 0;
            return true;
        }
    }
    return false;
}

/* Values end up in generated config text or in file names: no control characters. */
static bool conf_printable(const char *v)
{
    for (; *v != '\0'; v++)
        if ((unsigned char) *v < 0x20 || *v == 0x7f)
            return false;
    return true;
}

/* The text of a configuration file (p11m_file_read: regular, non-blocking, bounded).
 * NULL with the error recorded otherwise. */
static char *conf_read_file(struct shim_conf *c, const char *path, size_t *len)
{
    char what[CONF_ERROR_MAX], err[CONF_ERROR_MAX];
    char *text;

    shim_fmt(what, sizeof(what), "%s: cannot read", path);
    text = p11m_file_read(path, what, CONF_MAX_SIZE, 0, len, err, sizeof(err));
    if (text == NULL)
        conf_error(c, "%s", err);
    return text;
}

/* NCONF over the file's text, errors as "FILE:LINE: reason" or "FILE: reason". */
static CONF *conf_parse_file(struct shim_conf *c, const char *path)
{
    CONF *cnf = shim_fn.NCONF_new_ex(NULL, NULL);
    size_t len = 0;
    char *text = cnf != NULL ? conf_read_file(c, path, &len) : NULL;
    BIO *bio = text != NULL ? shim_fn.BIO_new_mem_buf(text, (int) len) : NULL;
    char why[256];
    long eline = -1;
    int ok;

    if (cnf == NULL || (text != NULL && bio == NULL))
        conf_error(c, "%s: out of memory", path);
    if (bio == NULL) {
        free(text);
        shim_fn.NCONF_free(cnf);
        return NULL;
    }
    ok = shim_fn.NCONF_load_bio(cnf, bio, &eline) > 0;
    shim_fn.BIO_free(bio);
    free(text);
    if (ok)
        return cnf;
    /* with a line number, OpenSSL's detail text only repeats it */
    shim_ossl_error_text(why, sizeof(why), eline <= 0);
    if (eline > 0)
        conf_error(c, "%s:%ld: syntax error: %s", path, eline, why);
    else
        conf_error(c, "%s: cannot read: %s", path, why[0] ? why : "unreadable");
    shim_fn.NCONF_free(cnf);
    return NULL;
}

/* ---- log, log_level ---- */

static void conf_log(struct conf_state *st, const char *v)
{
    struct shim_conf *c = st->c;

    if (strcmp(v, "stderr") == 0) {
        c->log_target = SHIM_LOG_STDERR;
    } else if (strcmp(v, "syslog") == 0) {
        c->log_target = SHIM_LOG_SYSLOG;
    } else if (strncmp(v, "file:", 5) == 0 && v[5] == '/' && conf_printable(v)) {
        c->log_target = SHIM_LOG_FILE;
        conf_replace(&c->log_file, v + 5);
    } else {
        conf_bad(st, CONF_MAIN, "log",
                 "\"%s\" is not stderr, syslog or file:/ABSOLUTE/PATH", v);
    }
}

static void conf_log_level(struct conf_state *st, const char *v)
{
    static const char *const names[] = {"error", "warn", "info", "debug"};

    for (int i = 0; i < 4; i++) {
        if (strcasecmp(v, names[i]) == 0) {
            st->c->log_level = (enum shim_level) i;
            return;
        }
    }
    conf_bad(st, CONF_MAIN, "log_level", "\"%s\" is not error, warn, info or debug", v);
}

static void conf_on_config_error(struct conf_state *st, const char *v)
{
    st->fail_closed_set = true;
    if (strcmp(v, "continue") == 0) {
        st->fail_closed = false;
        return;
    }
    /* Anything but "continue" reads as a wish to fail closed, a typo included. */
    st->fail_closed = true;
    if (strcmp(v, "abort") != 0)
        conf_bad(st, CONF_MAIN, "on_config_error", "\"%s\" is not continue or abort", v);
}

/* ---- provider parameters ---- */

static bool conf_param_name_ok(const char *n)
{
    if (*n == '\0')
        return false;
    for (; *n != '\0'; n++)
        if (!(n[0] >= 'a' && n[0] <= 'z') && !(n[0] >= 'A' && n[0] <= 'Z') &&
            !(n[0] >= '0' && n[0] <= '9') && strchr("-_.", *n) == NULL)
            return false;
    return true;
}

static void conf_add_param(struct conf_state *st, const char *file, const char *sect,
                           const CONF_VALUE *v)
{
    struct shim_conf *c = st->c;
    struct shim_param *grown;

    if (!conf_param_name_ok(v->name) || !conf_printable(v->value)) {
        conf_bad_at(c, file, sect, v->name, "unusable provider parameter");
        return;
    }
    grown = realloc(c->params, (c->nparams + 1) * sizeof(*grown));
    if (grown == NULL)
        return;
    c->params = grown;
    c->params[c->nparams].name = strdup(v->name);
    c->params[c->nparams].value = strdup(v->value);
    c->nparams++;
}

/* Keys of a provider section that are OpenSSL's, not the provider's. */
static bool conf_param_is_openssl(const char *name)
{
    return strcmp(name, "module") == 0 || strcmp(name, "activate") == 0 ||
           strcmp(name, "identity") == 0 || strcmp(name, "soft_load") == 0;
}

static void conf_provider_params(struct conf_state *st, const char *sect)
{
    const conf_section *s = shim_fn.NCONF_get_section(st->cnf, sect);

    if (s == NULL) {
        conf_bad(st, CONF_MAIN, "provider_params", "no section [%s]", sect);
        return;
    }
    for (int i = 0; i < conf_count(s); i++) {
        const CONF_VALUE *v = conf_value(s, i);

        if (conf_param_is_openssl(v->name))
            conf_bad(st, sect, v->name, "set by the shim, not a provider parameter");
        else
            conf_add_param(st, st->c->path, sect, v);
    }
}

/* The p11mtls entry of a providers section: named p11mtls, or whose module is ours. */
static const char *conf_find_provider(CONF *pc, const conf_section *provs)
{
    for (int i = 0; i < conf_count(provs); i++)
        if (strcmp(conf_value(provs, i)->name, "p11mtls") == 0)
            return conf_value(provs, i)->value;
    for (int i = 0; i < conf_count(provs); i++) {
        const char *sect = conf_value(provs, i)->value;
        const char *mod = shim_fn.NCONF_get_string(pc, sect, "module");
        const char *base = mod != NULL ? strrchr(mod, '/') : NULL;

        if (mod != NULL && strcmp(base != NULL ? base + 1 : mod, "p11mtls.so") == 0)
            return sect;
    }
    return NULL;
}

/* openssl_conf -> init section holding nothing but "providers"; returns that section. */
static const char *conf_providers_section(struct conf_state *st, CONF *pc,
                                          const char *file)
{
    const char *init = shim_fn.NCONF_get_string(pc, NULL, "openssl_conf");
    const conf_section *is = init != NULL ? shim_fn.NCONF_get_section(pc, init) : NULL;
    const char *provs = NULL;

    if (is == NULL) {
        conf_bad_at(st->c, file, "default", "openssl_conf",
                    "missing or names no section");
        return NULL;
    }
    for (int i = 0; i < conf_count(is); i++) {
        const CONF_VALUE *v = conf_value(is, i);

        if (strcmp(v->name, "providers") == 0)
            provs = v->value;
        else
            conf_bad_at(st->c, file, init, v->name,
                        "only a providers section is allowed here (other modules "
                        "would change the whole program)");
    }
    if (provs == NULL)
        conf_bad_at(st->c, file, init, "providers", "missing");
    return provs;
}

/*
 * provider_config: an OpenSSL config file of the kind used to load p11mtls.so into
 * applications. Only the parameters of its p11mtls provider section are taken.
 */
static void conf_provider_config(struct conf_state *st, const char *file)
{
    const char *provs, *psect;
    const conf_section *ps;
    CONF *pc;

    if (file[0] != '/') {
        conf_bad(st, CONF_MAIN, "provider_config", "\"%s\" is not an absolute path",
                 file);
        return;
    }
    pc = conf_parse_file(st->c, file);
    if (pc == NULL)
        return;
    provs = conf_providers_section(st, pc, file);
    psect = provs != NULL ? conf_find_provider(pc, shim_fn.NCONF_get_section(pc, provs))
                          : NULL;
    ps = psect != NULL ? shim_fn.NCONF_get_section(pc, psect) : NULL;
    if (provs != NULL && ps == NULL)
        conf_bad_at(st->c, file, provs, "p11mtls", "no p11mtls provider section");
    for (int i = 0; i < conf_count(ps); i++)
        if (!conf_param_is_openssl(conf_value(ps, i)->name))
            conf_add_param(st, file, psect, conf_value(ps, i));
    shim_fn.NCONF_free(pc);
}

/* ---- identities ---- */

static void conf_identity_key(struct conf_state *st, struct shim_identity_conf *ic,
                              const CONF_VALUE *v)
{
    char **slot = NULL;

    if (strcmp(v->name, "key") == 0)
        slot = &ic->key;
    else if (strcmp(v->name, "cert") == 0)
        slot = &ic->cert;
    else if (strcmp(v->name, "chain") == 0)
        slot = &ic->chain;
    else if (strcmp(v->name, "pin_source") == 0)
        slot = &ic->pin_source;
    if (slot == NULL) {
        conf_bad(st, ic->section, v->name,
                 "unknown key (expected key, cert, chain, pin_source)");
        return;
    }
    if (v->value[0] == '\0' || !conf_printable(v->value)) {
        conf_bad(st, ic->section, v->name, "empty or unprintable value");
        return;
    }
    conf_replace(slot, v->value);
}

static void conf_identity(struct conf_state *st, const char *ids_sect,
                          const CONF_VALUE *ref, struct shim_identity_conf *ic)
{
    const conf_section *s = shim_fn.NCONF_get_section(st->cnf, ref->value);

    ic->name = strdup(ref->name);
    ic->section = strdup(ref->value);
    if (s == NULL) {
        conf_bad(st, ids_sect, ref->name, "no section [%s]", ref->value);
        return;
    }
    for (int i = 0; i < conf_count(s); i++)
        conf_identity_key(st, ic, conf_value(s, i));
    if (ic->key == NULL)
        conf_bad(st, ic->section, "key", "missing (a pkcs11: URI or a key file)");
    if (ic->cert == NULL)
        conf_bad(st, ic->section, "cert", "missing (a pkcs11: URI or a PEM file)");
    if (ic->chain != NULL && ic->chain[0] != '/')
        conf_bad(st, ic->section, "chain", "\"%s\" is not an absolute path", ic->chain);
    if (ic->pin_source != NULL && !p11m_pinsrc_valid(ic->pin_source))
        conf_bad(st, ic->section, "pin_source",
                 "\"%s\" is not file:/ABSOLUTE/PATH or env:NAME", ic->pin_source);
}

static void conf_identities(struct conf_state *st, const char *sect)
{
    const conf_section *s = shim_fn.NCONF_get_section(st->cnf, sect);
    struct shim_conf *c = st->c;

    if (s == NULL) {
        conf_bad(st, CONF_MAIN, "identities", "no section [%s]", sect);
        return;
    }
    c->ids = calloc((size_t) conf_count(s) + 1, sizeof(*c->ids));
    if (c->ids == NULL)
        return;
    for (int i = 0; i < conf_count(s); i++)
        conf_identity(st, sect, conf_value(s, i), &c->ids[c->nids++]);
}

/* ---- rules ---- */

static void conf_rule_match(struct conf_state *st, struct shim_rule *r, const char *sect,
                            const char *v)
{
    char *copy = strdup(v), *save = NULL, *word;
    char why[128];

    if (copy == NULL)
        return;
    if (strspn(v, " \t,") == strlen(v))
        conf_bad(st, sect, "match", "empty");
    r->patterns = calloc(strlen(v) / 2 + 1, sizeof(*r->patterns));
    for (word = strtok_r(copy, " \t,", &save); word != NULL && r->patterns != NULL;
         word = strtok_r(NULL, " \t,", &save)) {
        if (shim_pattern_parse(word, &r->patterns[r->npatterns], why, sizeof(why)))
            r->npatterns++;
        else
            conf_bad(st, sect, "match", "bad pattern \"%s\": %s", word, why);
    }
    free(copy);
}

static void conf_rule_identity(struct conf_state *st, struct shim_rule *r,
                               const char *sect, const char *v)
{
    for (size_t i = 0; i < st->c->nids; i++) {
        if (strcmp(st->c->ids[i].name, v) == 0) {
            r->identity = i;
            return;
        }
    }
    conf_bad(st, sect, "identity", "no identity \"%s\" in the identities section", v);
}

static void conf_rule_key(struct conf_state *st, struct shim_rule *r, const char *sect,
                          const CONF_VALUE *v, bool *has_match, bool *has_identity)
{
    if (strcmp(v->name, "match") == 0) {
        *has_match = true;
        conf_rule_match(st, r, sect, v->value);
    } else if (strcmp(v->name, "identity") == 0) {
        *has_identity = true;
        conf_rule_identity(st, r, sect, v->value);
    } else if (strcmp(v->name, "require_ca_match") == 0) {
        if (!conf_bool(v->value, &r->require_ca_match))
            conf_bad(st, sect, v->name, "\"%s\" is not yes or no", v->value);
    } else if (strcmp(v->name, "on_unavailable") == 0) {
        r->abort_unavailable = strcmp(v->value, "abort") == 0;
        if (!r->abort_unavailable && strcmp(v->value, "continue") != 0)
            conf_bad(st, sect, v->name, "\"%s\" is not continue or abort", v->value);
    } else {
        conf_bad(
            st, sect, v->name,
            "unknown key (expected match, identity, require_ca_match, on_unavailable)");
    }
}

static void conf_rule(struct conf_state *st, const char *rules_sect,
                      const CONF_VALUE *ref, struct shim_rule *r)
{
    const conf_section *s = shim_fn.NCONF_get_section(st->cnf, ref->value);
    bool has_match = false, has_identity = false;

    r->name = strdup(ref->name);
    r->require_ca_match = true;
    if (s == NULL) {
        conf_bad(st, rules_sect, ref->name, "no section [%s]", ref->value);
        return;
    }
    for (int i = 0; i < conf_count(s); i++)
        conf_rule_key(st, r, ref->value, conf_value(s, i), &has_match, &has_identity);
    if (!has_match)
        conf_bad(st, ref->value, "match", "missing");
    if (!has_identity)
        conf_bad(st, ref->value, "identity", "missing");
}

static void conf_rules(struct conf_state *st, const char *sect)
{
    const conf_section *s = shim_fn.NCONF_get_section(st->cnf, sect);
    struct shim_conf *c = st->c;

    if (s == NULL) {
        conf_bad(st, CONF_MAIN, "rules", "no section [%s]", sect);
        return;
    }
    c->rules = calloc((size_t) conf_count(s) + 1, sizeof(*c->rules));
    if (c->rules == NULL)
        return;
    for (int i = 0; i < conf_count(s); i++)
        conf_rule(st, sect, conf_value(s, i), &c->rules[c->nrules++]);
}

/* ---- [p11mtls] ---- */

static void conf_main_key(struct conf_state *st, const CONF_VALUE *v, const char **ids,
                          const char **rules)
{
    struct shim_conf *c = st->c;

    if (strcmp(v->name, "identities") == 0) {
        *ids = v->value;
    } else if (strcmp(v->name, "rules") == 0) {
        *rules = v->value;
    } else if (strcmp(v->name, "log") == 0) {
        conf_log(st, v->value);
    } else if (strcmp(v->name, "log_level") == 0) {
        conf_log_level(st, v->value);
    } else if (strcmp(v->name, "provider") == 0) {
        if (v->value[0] != '/' || !conf_printable(v->value))
            conf_bad(st, CONF_MAIN, v->name, "\"%s\" is not an absolute path", v->value);
        else if (secure_getenv("P11MTLS_PROVIDER") == NULL)
            conf_replace(&c->provider, v->value);
    } else if (strcmp(v->name, "provider_config") == 0) {
        conf_provider_config(st, v->value);
    } else if (strcmp(v->name, "provider_params") == 0) {
        conf_provider_params(st, v->value);
    } else if (strcmp(v->name, "on_config_error") == 0) {
        /* read before the other keys */
    } else if (strcmp(v->name, "reload_interval") == 0) {
        char *end;
        long n = strtol(v->value, &end, 10);

        if (end == v->value || *end != '\0' || n < 0 || n > 86400)
            conf_bad(st, CONF_MAIN, v->name, "\"%s\" is not 0 to 86400 (seconds)",
                     v->value);
        else
            c->reload_interval = n;
    } else if (strcmp(v->name, "post_handshake_auth") == 0) {
        if (!conf_bool(v->value, &c->post_handshake_auth))
            conf_bad(st, CONF_MAIN, v->name, "\"%s\" is not yes or no", v->value);
    } else {
        conf_bad(st, CONF_MAIN, v->name, "unknown key");
    }
}

static void conf_main(struct conf_state *st)
{
    const conf_section *s = shim_fn.NCONF_get_section(st->cnf, CONF_MAIN);
    const char *ids = NULL, *rules = NULL;

    if (s == NULL) {
        conf_error(st->c, "%s: no [" CONF_MAIN "] section", st->c->path);
        return;
    }
    for (int i = 0; i < conf_count(s); i++)
        if (strcmp(conf_value(s, i)->name, "on_config_error") == 0)
            conf_on_config_error(st, conf_value(s, i)->value);
    for (int i = 0; i < conf_count(s); i++)
        conf_main_key(st, conf_value(s, i), &ids, &rules);
    if (ids != NULL)
        conf_identities(st, ids);
    if (rules != NULL && ids == NULL)
        conf_bad(st, CONF_MAIN, "rules", "rules need an identities section");
    else if (rules != NULL)
        conf_rules(st, rules);
}

static struct shim_conf *conf_new(const char *path)
{
    struct shim_conf *c = calloc(1, sizeof(*c));
    const char *prov = secure_getenv("P11MTLS_PROVIDER");

    if (c == NULL)
        return NULL;
    c->path = strdup(path);
    c->provider = strdup(prov != NULL && *prov != '\0' ? prov : P11M_PROVIDER_PATH);
    c->log_target = SHIM_LOG_STDERR;
    c->log_level = SHIM_WARN;
    c->reload_interval = 60;
    if (c->path == NULL || c->provider == NULL) {
        free(c->path);
        free(c->provider);
        free(c);
        return NULL;
    }
    return c;
}

struct shim_conf *shim_conf_load(const char *path, bool explicit)
{
    const char *env = secure_getenv("P11MTLS_ON_CONFIG_ERROR");
    struct conf_state st = {.c = conf_new(path)};
    struct stat sb;

    if (st.c == NULL)
        return NULL;
    st.fail_closed = env != NULL && strcmp(env, "abort") == 0;
    if (!explicit && stat(path, &sb) != 0 && errno == ENOENT)
        return st.c; /* not deployed: nothing to do, nothing to say */
    st.c->present = true;
    st.cnf = conf_parse_file(st.c, path);
    if (st.cnf != NULL) {
        conf_main(&st);
        shim_fn.NCONF_free(st.cnf);
    }
    st.c->enabled = st.c->nerrors == 0;
    st.c->abort_all = st.c->nerrors > 0 && st.fail_closed;
    return st.c;
}

static pthread_once_t conf_once = PTHREAD_ONCE_INIT;
static struct shim_conf *conf_process;

static void conf_report(const struct shim_conf *c)
{
    const char *then = c->abort_all
                           ? "every client TLS handshake of this program will fail "
                             "(on_config_error = abort)"
                           : "p11mtls stays out of this program";

    for (size_t i = 0; i < c->nerrors; i++)
        shim_log(SHIM_ERROR, "config: %s; %s", c->errors[i], then);
    if (c->enabled)
        shim_log(SHIM_DEBUG, "config: %s: %zu identities, %zu rules", c->path, c->nids,
                 c->nrules);
}

static void conf_init(void)
{
    int named;
    const char *path = p11m_conf_path(&named);

    conf_process = shim_conf_load(path, named);
    if (conf_process == NULL)
        return;
    shim_log_configure(conf_process->log_target, conf_process->log_file,
                       conf_process->log_level);
    conf_report(conf_process);
}

const struct shim_conf *shim_conf_get(void)
{
    pthread_once(&conf_once, conf_init);
    return conf_process;
}
