/*
 * tool.c - helpers shared by the commands: messages, option parsing, PINs, URIs, tokens,
 * objects, public keys from token attributes, the provider, and files.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/core.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/provider.h>
#include <openssl/store.h>
#include <openssl/ui.h>

#include "p11m_config.h"
#include "p11m_util.h"
#include "pubkey.h"
#include "tool.h"

/* The name the built-in provider is registered under in the tool's library contexts. */
#define P11M_TOOL_PROV_NAME "p11mtls"

/* ---- messages ---- */

static void tool_vmsg(const char *prefix, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

static void tool_vmsg(const char *prefix, const char *fmt, va_list ap)
{
    fputs("p11mtls: ", stderr);
    fputs(prefix, stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

void tool_err(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    tool_vmsg("", fmt, ap);
    va_end(ap);
}

void tool_warn(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    tool_vmsg("warning: ", fmt, ap);
    va_end(ap);
}

int tool_usage(const char *cmd, const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "p11mtls %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n(see 'p11mtls %s --help')\n", cmd);
    return TOOL_EXIT_USAGE;
}

static int tool_ossl_err_line(const char *str, size_t len, void *u)
{
    (void) u;
    /* OpenSSL's lines end in '\n' already. */
    fprintf(stderr, "p11mtls:   %.*s", (int) len, str);
    if (len == 0 || str[len - 1] != '\n')
        fputc('\n', stderr);
    return 1;
}

void tool_ossl_err(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    tool_vmsg("", fmt, ap);
    va_end(ap);
    ERR_print_errors_cb(tool_ossl_err_line, NULL);
}

static int core_quiet;
static int core_reason;

static void tool_core_sink(void *arg, int reason, const char *file, int line,
                           const char *func, const char *msg)
{
    (void) arg, (void) file, (void) line, (void) func;
    core_reason = reason;
    if (!core_quiet)
        fprintf(stderr, "p11mtls: %s: %s\n", p11m_reason_string(reason), msg);
}

void tool_core_errors(int quiet)
{
    /* The tool's own scope, for its whole run on the main thread; the provider opens
     * its own inside it when the tool signs through it. */
    static P11M_ERR_SCOPE scope;
    static int entered;

    core_quiet = quiet;
    core_reason = 0;
    if (!entered) {
        p11m_err_scope_enter(&scope, tool_core_sink, NULL);
        entered = 1;
    }
}

int tool_core_last_reason(void)
{
    return core_reason;
}

/* ---- options ---- */

int tool_pin_source_ok(const char *cmd, const char *opt, const char *spec)
{
    if (spec == NULL || p11m_pin_source_valid(spec))
        return 1;
    tool_usage(cmd, "%s: '%s' is not file:PATH or env:NAME", opt, spec);
    return 0;
}

int tool_subcommand(const char *group, const char *sub, int (*fn)(int, char **),
                    void (*usage)(FILE *), int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? TOOL_EXIT_USAGE : TOOL_EXIT_OK;
    }
    if (strcmp(argv[1], sub) == 0)
        return fn(argc - 1, argv + 1);
    return tool_usage(group, "unknown subcommand '%s' (expected: %s)", argv[1], sub);
}

void tool_getopt_reset(void)
{
    optind = 0; /* GNU: 0 re-initialises getopt for a new argv */
    opterr = 0; /* errors are reported by the commands, naming the argument */
}

int tool_getopt(const TOOL_CMD *cmd, int argc, char **argv, tool_opt_fn *fn, void *o)
{
    int c, rc;

    tool_getopt_reset();
    while ((c = getopt_long(argc, argv, cmd->shortopts, cmd->longopts, NULL)) != -1) {
        if (c == 'h') {
            cmd->usage(stdout);
            return TOOL_EXIT_OK;
        }
        if (c == '?' || c == ':')
            return tool_usage(cmd->name, "unknown or incomplete option '%s'",
                              argv[optind - 1]);
        if ((rc = fn(c, optarg, o)) != 0)
            return rc;
    }
    if (cmd->max_operands >= 0 && argc - optind > cmd->max_operands)
        return tool_usage(cmd->name, "unexpected argument '%s'",
                          argv[optind + cmd->max_operands]);
    return TOOL_PARSED;
}

int tool_parse_long(const char *cmd, const char *opt, const char *s, long min, long max,
                    long *out)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < min || v > max) {
        tool_usage(cmd, "%s: '%s' is not a number from %ld to %ld", opt, s, min, max);
        return 0;
    }
    *out = v;
    return 1;
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

long tool_parse_hex(const char *s, unsigned char *out, size_t cap)
{
    size_t n = 0;

    while (*s != '\0') {
        int hi, lo;

        if (*s == '%' || *s == ':') {
            s++;
            continue;
        }
        hi = hexval(s[0]);
        lo = hi < 0 ? -1 : hexval(s[1]);
        if (lo < 0 || n == cap)
            return -1;
        out[n++] = (unsigned char) (hi << 4 | lo);
        s += 2;
    }
    return n == 0 ? -1 : (long) n;
}

void tool_hex(const unsigned char *buf, size_t len, char *out)
{
    static const char digits[] = "0123456789abcdef";

    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[buf[i] >> 4];
        out[2 * i + 1] = digits[buf[i] & 15];
    }
    out[2 * len] = '\0';
}

/* ---- PINs ---- */

/* The core's PIN callback: a no-echo prompt on the terminal (OpenSSL's UI). */
static int tool_pin_prompt(P11M_PIN *pin, const char *info, void *arg)
{
    char prompt[128];

    (void) arg;
    snprintf(prompt, sizeof(prompt), "PIN for token '%s': ", info != NULL ? info : "");
    if (UI_UTIL_read_pw_string(pin->buf, (int) sizeof(pin->buf), prompt, 0) != 0) {
        p11m_pin_cleanse(pin);
        return 0;
    }
    pin->len = strlen(pin->buf);
    return 1;
}

void tool_login_info(P11M_LOGIN_INFO *li, const char *pin_source)
{
    memset(li, 0, sizeof(*li));
    li->pin_source = pin_source;
    if (pin_source == NULL && isatty(STDIN_FILENO))
        li->cb = tool_pin_prompt;
}

int tool_new_pin(const char *source, const char *what, P11M_PIN *pin)
{
    char prompt[96];

    pin->len = 0;
    if (source != NULL)
        return p11m_pin_load(source, pin) == CKR_OK;
    if (!isatty(STDIN_FILENO)) {
        tool_err("no %s given: pass a PIN source (file:PATH or env:NAME), or run on a "
                 "terminal to be asked",
                 what);
        return 0;
    }
    snprintf(prompt, sizeof(prompt), "New %s: ", what);
    if (UI_UTIL_read_pw_string(pin->buf, (int) sizeof(pin->buf), prompt, 1) != 0) {
        p11m_pin_cleanse(pin);
        tool_err("%s not entered (or the two entries differ)", what);
        return 0;
    }
    pin->len = strlen(pin->buf);
    if (pin->len == 0) {
        tool_err("empty %s", what);
        return 0;
    }
    return 1;
}

/* ---- URIs, modules, tokens, objects ---- */

P11KitUri *tool_uri(const char *cmd, const char *opt, const char *s)
{
    P11KitUri *uri;

    if (s == NULL || strncmp(s, "pkcs11:", 7) != 0) {
        tool_usage(cmd, "%s: '%s' is not a pkcs11: URI", opt, s != NULL ? s : "");
        return NULL;
    }
    if ((uri = p11m_uri_parse(s)) == NULL) {
        tool_usage(cmd, "%s: not a valid pkcs11: URI", opt);
        return NULL;
    }
    if (p11_kit_uri_get_pin_value(uri) != NULL) {
        p11_kit_uri_free(uri);
        tool_usage(cmd,
                   "%s: pin-value is refused: a PIN never goes on a command line; use "
                   "--pin-source file:PATH|env:NAME (or pin-source= in the URI)",
                   opt);
        return NULL;
    }
    return uri;
}

P11M_MODULE *tool_module(P11KitUri *uri, const char *module)
{
    return p11m_uri_module(uri, module, NULL);
}

static const char *tool_uri_token_label(P11KitUri *uri, char *buf, size_t len)
{
    CK_TOKEN_INFO *ti = p11_kit_uri_get_token_info(uri);
    size_t n = sizeof(ti->label);

    while (n > 0 && (ti->label[n - 1] == ' ' || ti->label[n - 1] == '\0'))
        n--;
    if (n >= len)
        n = len - 1;
    memcpy(buf, ti->label, n);
    buf[n] = '\0';
    return n > 0 ? buf : "(any)";
}

P11M_TOKEN *tool_token_one(P11M_MODULE *mod, P11KitUri *uri)
{
    P11M_TOKEN_LIST list;
    P11M_TOKEN *tok = NULL;
    char label[40];

    if (p11m_token_list_fill(mod, uri, &list) != CKR_OK)
        return NULL;
    if (list.n == 1)
        tok = list.v[0];
    else if (list.n == 0)
        tool_err("no token matches token=%s in %s (see 'p11mtls list')",
                 tool_uri_token_label(uri, label, sizeof(label)), mod->path);
    else
        tool_err("%zu tokens match the URI; add serial= or slot-id= to it", list.n);
    p11m_token_list_free(&list);
    return tok;
}

struct obj_pick {
    P11M_OBJ *first;
    int n;
};

static int tool_obj_pick_cb(P11M_OBJ *obj, void *arg)
{
    struct obj_pick *p = arg;

    if (p->n++ == 0)
        p->first = obj;
    else
        p11m_obj_free(obj);
    return 1;
}

P11M_OBJ *tool_obj_one(P11M_MODULE *mod, P11KitUri *uri, CK_OBJECT_CLASS cls,
                       P11M_LOGIN_INFO *li)
{
    P11M_FIND_ARGS args = {uri, cls, li, NULL, 0};
    struct obj_pick pick = {NULL, 0};
    const char *what = cls == CKO_CERTIFICATE ? "certificate" : "key";

    if (p11m_obj_find(mod, &args, tool_obj_pick_cb, &pick, NULL) != CKR_OK)
        return NULL;
    if (pick.n == 1)
        return pick.first;
    p11m_obj_free(pick.first);
    if (pick.n == 0)
        tool_err("no %s matches the URI (see 'p11mtls list')", what);
    else
        tool_err("%d objects match the URI; name one %s with id= or object=", pick.n,
                 what);
    return NULL;
}

char *tool_obj_uri(P11M_TOKEN *tok, CK_OBJECT_CLASS cls, const unsigned char *id,
                   size_t idlen, const char *label)
{
    P11KitUri *uri = p11_kit_uri_new();
    CK_TOKEN_INFO *ti;
    CK_ATTRIBUTE a;
    char *s = NULL;

    if (uri == NULL)
        return NULL;
    ti = p11_kit_uri_get_token_info(uri);
    memcpy(ti->label, p11m_token_info(tok)->label, sizeof(ti->label));
    a = (CK_ATTRIBUTE){CKA_CLASS, &cls, sizeof(cls)};
    p11_kit_uri_set_attribute(uri, &a);
    if (idlen > 0) {
        a = (CK_ATTRIBUTE){CKA_ID, (void *) id, idlen};
        p11_kit_uri_set_attribute(uri, &a);
    }
    if (label != NULL && *label != '\0') {
        a = (CK_ATTRIBUTE){CKA_LABEL, (void *) label, strlen(label)};
        p11_kit_uri_set_attribute(uri, &a);
    }
    if (p11_kit_uri_format(uri, P11_KIT_URI_FOR_OBJECT_ON_TOKEN, &s) != P11_KIT_URI_OK)
        s = NULL;
    p11_kit_uri_free(uri);
    return s;
}

/* ---- public keys from token attributes ---- */

EVP_PKEY *tool_obj_pubkey(const P11M_OBJ *obj)
{
    return p11m_obj_public_key(obj, NULL, NULL);
}

const char *tool_pkey_desc(const EVP_PKEY *pkey, char *buf, size_t len)
{
    char group[64];

    if (pkey == NULL)
        snprintf(buf, len, "unknown");
    else if (EVP_PKEY_is_a(pkey, "RSA"))
        snprintf(buf, len, "RSA %d", EVP_PKEY_get_bits(pkey));
    else if (EVP_PKEY_is_a(pkey, "ED25519"))
        snprintf(buf, len, "Ed25519");
    else if (EVP_PKEY_is_a(pkey, "ED448"))
        snprintf(buf, len, "Ed448");
    else if (EVP_PKEY_is_a(pkey, "EC") &&
             EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME, group,
                                            sizeof(group), NULL)) {
        int nid = OBJ_sn2nid(group);
        const char *nist = nid != NID_undef ? EC_curve_nid2nist(nid) : NULL;

        snprintf(buf, len, "EC %s", nist != NULL ? nist : group);
    } else {
        snprintf(buf, len, "%s", EVP_PKEY_get0_type_name(pkey));
    }
    return buf;
}

const char *tool_name_str(const X509_NAME *name, char *buf, size_t len)
{
    BIO *b = BIO_new(BIO_s_mem());
    unsigned long flags = (XN_FLAG_ONELINE & ~XN_FLAG_SPC_EQ & ~ASN1_STRFLGS_ESC_MSB) |
                          ASN1_STRFLGS_UTF8_CONVERT;
    int n = -1;

    buf[0] = '\0';
    if (b != NULL && X509_NAME_print_ex(b, name, 0, flags) >= 0)
        n = BIO_read(b, buf, (int) len - 1);
    buf[n > 0 ? n : 0] = '\0';
    BIO_free(b);
    return buf;
}

long tool_days_left(const ASN1_TIME *t)
{
    int days = 0, secs = 0;

    if (!ASN1_TIME_diff(&days, &secs, NULL, t))
        return 0;
    /* Round towards the past: one second before expiry is "0 days left". */
    if (days <= 0 && secs < 0)
        return days - 1;
    return days;
}

const char *tool_time_str(const ASN1_TIME *t, char *buf, size_t len)
{
    struct tm tm;

    if (!ASN1_TIME_to_tm(t, &tm) || strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(buf, len, "?");
    return buf;
}

/* ---- the provider ---- */

const char *tool_provider_path(const char *opt)
{
    const char *env = getenv("P11MTLS_PROVIDER");

    if (opt != NULL)
        return opt;
    if (env != NULL && *env != '\0')
        return env;
    return P11M_PROVIDER_PATH;
}

int tool_provider_builtin(OSSL_LIB_CTX *lc)
{
    return OSSL_PROVIDER_add_builtin(lc, P11M_TOOL_PROV_NAME, OSSL_provider_init);
}

OSSL_LIB_CTX *tool_libctx(const char *provider_path)
{
    OSSL_LIB_CTX *lc;

    /* The installed file must be there (the preload library and openssl.cnf load it),
     * but the tool signs with the same code built in (see below), not a second copy. */
    if (access(provider_path, R_OK) != 0) {
        tool_err("provider %s: %s (build it, or give --provider PATH or "
                 "P11MTLS_PROVIDER)",
                 provider_path, strerror(errno));
        return NULL;
    }
    if ((lc = OSSL_LIB_CTX_new()) == NULL) {
        tool_ossl_err("cannot create a library context");
        return NULL;
    }
    /*
     * default first: libssl keeps a TLS group only if fetching its key type ("EC") gives
     * the provider that announced the group, and the first provider loaded wins that
     * fetch. With p11mtls first, P-256 and friends vanish from the ClientHello.
     */
    if (OSSL_PROVIDER_load(lc, "default") == NULL) {
        tool_ossl_err("cannot load OpenSSL's default provider");
        OSSL_LIB_CTX_free(lc);
        return NULL;
    }
    /*
     * Built in rather than loaded from provider_path: p11mtls.so carries a PKCS#11 core
     * of its own, and the tool's (token lookups, login state, the module's function
     * list) must be the only one in the process.
     */
    if (!tool_provider_builtin(lc) ||
        OSSL_PROVIDER_load(lc, P11M_TOOL_PROV_NAME) == NULL) {
        tool_ossl_err("cannot load the provider %s", provider_path);
        OSSL_LIB_CTX_free(lc);
        return NULL;
    }
    return lc;
}

/* uri with pin-source= and module-path= added where given and not there yet. */
static char *uri_for_provider(const char *uri, const char *pin_source, const char *module)
{
    char *s = strdup(uri), *t;

    if (s != NULL && pin_source != NULL && !p11m_query_has(s, "pin-source")) {
        t = p11m_query_add(s, "pin-source", pin_source);
        free(s);
        s = t;
    }
    if (s != NULL && module != NULL && !p11m_query_has(s, "module-path") &&
        !p11m_query_has(s, "module-name")) {
        t = p11m_query_add(s, "module-path", module);
        free(s);
        s = t;
    }
    return s;
}

EVP_PKEY *tool_load_key(OSSL_LIB_CTX *lc, const char *uri, const char *pin_source,
                        const char *module)
{
    char *full = uri_for_provider(uri, pin_source, module);
    const UI_METHOD *ui = isatty(STDIN_FILENO) ? UI_OpenSSL() : NULL;
    OSSL_STORE_CTX *st = NULL;
    EVP_PKEY *pkey = NULL;

    if (full != NULL)
        st = OSSL_STORE_open_ex(full, lc, NULL, ui, NULL, NULL, NULL, NULL);
    if (st != NULL && OSSL_STORE_expect(st, OSSL_STORE_INFO_PKEY)) {
        while (pkey == NULL && !OSSL_STORE_eof(st)) {
            OSSL_STORE_INFO *info = OSSL_STORE_load(st);

            if (info == NULL)
                break; /* an error, or nothing more */
            if (OSSL_STORE_INFO_get_type(info) == OSSL_STORE_INFO_PKEY)
                pkey = OSSL_STORE_INFO_get1_PKEY(info);
            OSSL_STORE_INFO_free(info);
        }
    }
    OSSL_STORE_close(st);
    free(full);
    if (pkey == NULL)
        tool_ossl_err("the provider found no private key for %s", uri);
    return pkey;
}

/* ---- files ---- */

BIO *tool_bio_out(const char *path, int mode)
{
    FILE *fp;
    BIO *b;
    int fd;

    if (path == NULL || strcmp(path, "-") == 0)
        return BIO_new_fp(stdout, BIO_NOCLOSE);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0) {
        tool_err("%s: %s", path, strerror(errno));
        return NULL;
    }
    /* A file that existed with a wider mode must not keep it for a private key. */
    if ((mode & 077) == 0 && fchmod(fd, (mode_t) mode) != 0) {
        tool_err("%s: %s", path, strerror(errno));
        close(fd);
        return NULL;
    }
    if ((fp = fdopen(fd, "w")) == NULL) {
        close(fd);
        return NULL;
    }
    if ((b = BIO_new_fp(fp, BIO_CLOSE)) == NULL)
        fclose(fp);
    return b;
}

X509 *tool_read_cert(const char *path)
{
    BIO *b = BIO_new_file(path, "rb");
    X509 *x = NULL;

    if (b == NULL) {
        tool_err("%s: %s", path, strerror(errno));
        ERR_clear_error();
        return NULL;
    }
    x = PEM_read_bio_X509(b, NULL, NULL, NULL);
    if (x == NULL && BIO_reset(b) == 0)
        x = d2i_X509_bio(b, NULL);
    BIO_free(b);
    if (x == NULL)
        tool_ossl_err("%s: not a certificate (PEM or DER)", path);
    else
        ERR_clear_error();
    return x;
}

STACK_OF(X509) * tool_read_certs(const char *path)
{
    BIO *b = BIO_new_file(path, "rb");
    STACK_OF(X509) * sk;
    X509 *x;

    if (b == NULL) {
        tool_err("%s: %s", path, strerror(errno));
        ERR_clear_error();
        return NULL;
    }
    sk = sk_X509_new_null();
    while (sk != NULL && (x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL)
        if (!sk_X509_push(sk, x))
            X509_free(x);
    BIO_free(b);
    ERR_clear_error(); /* the end of the file shows up as "no start line" */
    if (sk == NULL || sk_X509_num(sk) == 0) {
        tool_err("%s: no PEM certificate in it", path);
        sk_X509_free(sk);
        return NULL;
    }
    return sk;
}
