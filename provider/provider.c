/*
 * provider.c - the provider's entry point: configuration, the algorithm tables, and
 * errors routed through the core.
 *
 * Loading costs nothing measurable: the PKCS#11 module is loaded and the token opened
 * only when a pkcs11: URI is first opened. The algorithm tables are fixed, so contexts
 * created before any token key exists can use token keys later.
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/conf.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/params.h>
#include <openssl/proverr.h>
#include <openssl/tls1.h>

#include "p11m_config.h"
#include "pemuri.h"
#include "provider.h"

/* ---- errors through the core ---- */

static OSSL_FUNC_provider_get_reason_strings_fn prov_get_reason_strings;
static OSSL_FUNC_provider_query_operation_fn prov_query;
static OSSL_FUNC_provider_get_capabilities_fn prov_get_capabilities;
static OSSL_FUNC_provider_gettable_params_fn prov_gettable_params;
static OSSL_FUNC_provider_get_params_fn prov_get_params;
static OSSL_FUNC_provider_teardown_fn prov_teardown;

static OSSL_FUNC_core_get_params_fn *core_get_params;
static OSSL_FUNC_core_new_error_fn *core_new_error;
static OSSL_FUNC_core_set_error_debug_fn *core_set_error_debug;
static OSSL_FUNC_core_vset_error_fn *core_vset_error;

static void prov_vraise(const P11M_PROV *prov, int reason, const char *file, int line,
                        const char *func, const char *fmt, va_list ap)
{
    if (prov == NULL || core_new_error == NULL)
        return;
    core_new_error(prov->handle);
    core_set_error_debug(prov->handle, file, line, func);
    core_vset_error(prov->handle, (uint32_t) reason, fmt, ap);
}

static void prov_raise_at(const P11M_PROV *prov, int reason, const char *file, int line,
                          const char *func, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    prov_vraise(prov, reason, file, line, func, fmt, ap);
    va_end(ap);
}

void p11m_prov_raise(const P11M_PROV *prov, int reason, const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    p11m_note_error(reason, msg);
    prov_raise_at(prov, reason, NULL, 0, NULL, "%s", msg);
}

/* Errors the core raises during an operation go to the provider context behind it. */
static void prov_error_sink(void *arg, int reason, const char *file, int line,
                            const char *func, const char *msg)
{
    prov_raise_at(arg, reason, file, line, func, "%s", msg);
}

void p11m_prov_enter(const P11M_PROV *prov, P11M_ERR_SCOPE *scope)
{
    p11m_err_scope_enter(scope, prov_error_sink, (void *) prov);
}

void p11m_prov_leave(P11M_ERR_SCOPE *scope)
{
    p11m_err_scope_leave(scope);
}

static OSSL_ITEM reason_strings[P11M_R_MAX];

static const OSSL_ITEM *prov_get_reason_strings(void *provctx)
{
    (void) provctx;
    return reason_strings;
}

static void prov_init_once(void)
{
    for (int r = 1; r < P11M_R_MAX; r++)
        reason_strings[r - 1] = (OSSL_ITEM){(unsigned) r, (void *) p11m_reason_string(r)};
    reason_strings[P11M_R_MAX - 1] = (OSSL_ITEM){0, NULL};
}

/* ---- configuration ---- */

void p11m_prov_login_info(const P11M_PROV *prov, P11M_LOGIN_INFO *li)
{
    memset(li, 0, sizeof(*li));
    li->pin_source = prov->pin_source;
}

static int prov_pw_pin(P11M_PIN *pin, const char *token_label, void *arg)
{
    P11M_PROV_PW *pw = arg;
    OSSL_PARAM params[] = {
        OSSL_PARAM_utf8_string(OSSL_PASSPHRASE_PARAM_INFO, (char *) token_label, 0),
        OSSL_PARAM_END,
    };
    size_t len = 0;

    if (!pw->cb(pin->buf, sizeof(pin->buf) - 1, &len, params, pw->cbarg) ||
        len >= sizeof(pin->buf))
        return 0;
    pin->len = len;
    pin->buf[len] = '\0';
    return 1;
}

void p11m_prov_login_info_pw(const P11M_PROV *prov, P11M_LOGIN_INFO *li, P11M_PROV_PW *pw)
{
    p11m_prov_login_info(prov, li);
    if (pw->cb != NULL) {
        li->cb = prov_pw_pin;
        li->cb_arg = pw;
    }
}

int p11m_prov_pw_login(P11M_TOKEN *tok, const P11M_LOGIN_INFO *li, P11KitUri *uri)
{
    if (li->cb == NULL || li->pin_source != NULL ||
        p11_kit_uri_get_pin_value(uri) != NULL || p11_kit_uri_get_pin_source(uri) != NULL)
        return 1;
    return p11m_token_login(tok, li) == CKR_OK;
}

/* Parameter names in the provider's openssl.cnf section. */
#define PARAM_MODULE     "pkcs11-module"
#define PARAM_INIT_ARGS  "pkcs11-init-args"
#define PARAM_PIN_SOURCE "pin-source"
#define PARAM_DEBUG      "debug-level"
#define PARAM_DEBUG_FILE "debug-file"
#define PARAM_PEM_URI    "pem-uri-files"
#define PARAM_KEY_CACHE  "key-cache"

/* Keys of a provider section: OpenSSL's own four, then ours. */
static const char *const prov_known_keys[] = {
    "module",         "activate",      "identity",       "soft_load",
    PARAM_MODULE,     PARAM_INIT_ARGS, PARAM_PIN_SOURCE, PARAM_DEBUG,
    PARAM_DEBUG_FILE, PARAM_PEM_URI,   PARAM_KEY_CACHE,  NULL,
};

static int prov_known_key(const char *name)
{
    for (int i = 0; prov_known_keys[i] != NULL; i++)
        if (strcmp(name, prov_known_keys[i]) == 0)
            return 1;
    return 0;
}

/*
 * OpenSSL hands a provider only the parameters it asks for, so a misspelt one would
 * be ignored without a word. Read our own section of the configuration file in effect
 * and refuse keys we don't know. Only when that section's module is this very file:
 * providers loaded from code or another file are not checked.
 */
static int prov_check_section(P11M_PROV *prov)
{
    char *name = NULL, *modfile = NULL, *file = CONF_get1_default_config_file();
    OSSL_PARAM params[] = {
        OSSL_PARAM_utf8_ptr(OSSL_PROV_PARAM_CORE_PROV_NAME, &name, 0),
        OSSL_PARAM_utf8_ptr(OSSL_PROV_PARAM_CORE_MODULE_FILENAME, &modfile, 0),
        OSSL_PARAM_END,
    };
    CONF *conf = NCONF_new(NULL);
    const char *init, *providers, *section, *module;
    STACK_OF(CONF_VALUE) *values = NULL;
    long line;
    int ok = 1;

    ERR_set_mark(); /* absent keys and files are not errors here */
    if (file == NULL || conf == NULL || !core_get_params(prov->handle, params) ||
        name == NULL || modfile == NULL || NCONF_load(conf, file, &line) <= 0 ||
        (init = NCONF_get_string(conf, NULL, "openssl_conf")) == NULL ||
        (providers = NCONF_get_string(conf, init, "providers")) == NULL ||
        (section = NCONF_get_string(conf, providers, name)) == NULL ||
        (module = NCONF_get_string(conf, section, "module")) == NULL ||
        strcmp(module, modfile) != 0 ||
        (values = NCONF_get_section(conf, section)) == NULL)
        goto done;
    for (int i = 0; i < sk_CONF_VALUE_num(values) && ok; i++) {
        const CONF_VALUE *v = sk_CONF_VALUE_value(values, i);

        if (!prov_known_key(v->name)) {
            char known[256] = "";

            for (int k = 4; prov_known_keys[k] != NULL; k++) /* ours, not OpenSSL's */
                snprintf(known + strlen(known), sizeof(known) - strlen(known), "%s%s",
                         k > 4 ? ", " : "", prov_known_keys[k]);
            p11m_prov_raise(prov, P11M_R_BAD_CONFIG,
                            "%s, section [%s]: unknown parameter '%s' (known: %s)", file,
                            section, v->name, known);
            ok = 0;
        }
    }
done:
    ERR_pop_to_mark();
    NCONF_free(conf);
    OPENSSL_free(file);
    return ok;
}

static int prov_dup_param(const char *v, char **out)
{
    if (v == NULL || *v == '\0')
        return 1;
    *out = strdup(v);
    return *out != NULL;
}

/* A yes/no parameter: *out is dflt when absent. 0 (raised) for anything else. */
static int prov_yes_no(P11M_PROV *prov, const char *name, const char *v, int dflt,
                       int *out)
{
    if (v == NULL)
        *out = dflt;
    else if (strcmp(v, "yes") == 0 || strcmp(v, "1") == 0)
        *out = 1;
    else if (strcmp(v, "no") == 0 || strcmp(v, "0") == 0)
        *out = 0;
    else {
        p11m_prov_raise(prov, P11M_R_BAD_CONFIG, "%s = %s: expected yes or no", name, v);
        return 0;
    }
    return 1;
}

static int prov_configure(P11M_PROV *prov)
{
    char *module = NULL, *init_args = NULL, *pin_source = NULL, *debug = NULL,
         *debug_file = NULL, *pem_uri = NULL, *key_cache = NULL;
    OSSL_PARAM params[] = {
        OSSL_PARAM_utf8_ptr(PARAM_MODULE, &module, 0),
        OSSL_PARAM_utf8_ptr(PARAM_INIT_ARGS, &init_args, 0),
        OSSL_PARAM_utf8_ptr(PARAM_PIN_SOURCE, &pin_source, 0),
        OSSL_PARAM_utf8_ptr(PARAM_DEBUG, &debug, 0),
        OSSL_PARAM_utf8_ptr(PARAM_DEBUG_FILE, &debug_file, 0),
        OSSL_PARAM_utf8_ptr(PARAM_PEM_URI, &pem_uri, 0),
        OSSL_PARAM_utf8_ptr(PARAM_KEY_CACHE, &key_cache, 0),
        OSSL_PARAM_END,
    };
    char *end;
    long level;
    int cache;

    if (!core_get_params(prov->handle, params) || !prov_check_section(prov))
        return 0;
    if (debug != NULL) {
        level = strtol(debug, &end, 10);
        if (end == debug || *end != '\0' || level < 0 || level > 9) {
            p11m_prov_raise(prov, P11M_R_BAD_CONFIG, "%s = %s: expected a number 0..9",
                            PARAM_DEBUG, debug);
            return 0;
        }
        if (!p11m_log_setup((int) level, debug_file))
            return 0;
    }
    if (!prov_yes_no(prov, PARAM_PEM_URI, pem_uri, 0, &prov->pem_uri) ||
        !prov_yes_no(prov, PARAM_KEY_CACHE, key_cache, 1, &cache))
        return 0;
    p11m_keycache_configure(cache);
    if (pin_source != NULL && !p11m_pin_source_valid(pin_source)) {
        /* The value is not shown: it may be a PIN typed in the wrong place. */
        p11m_prov_raise(prov, P11M_R_BAD_CONFIG,
                        "%s: expected file:PATH or env:NAME (value not shown)",
                        PARAM_PIN_SOURCE);
        return 0;
    }
    return prov_dup_param(module, &prov->module_path) &&
           prov_dup_param(init_args, &prov->init_args) &&
           prov_dup_param(pin_source, &prov->pin_source);
}

/* ---- algorithms ---- */

static const OSSL_ALGORITHM prov_store[] = {
    {"pkcs11", P11M_PROP, p11m_store_functions, "RFC 7512 pkcs11: URIs"},
    {NULL, NULL, NULL, NULL},
};

static const OSSL_ALGORITHM prov_keymgmt[] = {
    {"RSA:rsaEncryption:1.2.840.113549.1.1.1", P11M_PROP, p11m_rsa_keymgmt_functions,
     "PKCS#11 RSA keys"},
    {"RSA-PSS:RSASSA-PSS:1.2.840.113549.1.1.10", P11M_PROP, p11m_rsapss_keymgmt_functions,
     "PKCS#11 RSA-PSS keys"},
    {"EC:id-ecPublicKey:1.2.840.10045.2.1", P11M_PROP, p11m_ec_keymgmt_functions,
     "PKCS#11 EC keys"},
    {"ED25519:1.3.101.112", P11M_PROP, p11m_ed25519_keymgmt_functions,
     "PKCS#11 Ed25519 keys"},
    {"ED448:1.3.101.113", P11M_PROP, p11m_ed448_keymgmt_functions, "PKCS#11 Ed448 keys"},
    {NULL, NULL, NULL, NULL},
};

static const OSSL_ALGORITHM prov_signature[] = {
    {"P11MTLS-RSA", P11M_PROP, p11m_rsa_signature_functions, "RSA signatures on a token"},
    {"P11MTLS-EC", P11M_PROP, p11m_ecdsa_signature_functions, "ECDSA on a token"},
    {"P11MTLS-EDDSA", P11M_PROP, p11m_eddsa_signature_functions, "EdDSA on a token"},
    {NULL, NULL, NULL, NULL},
};

/* One entry per key type: a name list in one entry would make the names aliases. */
#define PER_KEY_TYPE(props, fns, desc)                                                   \
    {"RSA", props, fns, desc}, {"RSA-PSS", props, fns, desc}, {"EC", props, fns, desc},  \
        {"ED25519", props, fns, desc},                                                   \
    {                                                                                    \
        "ED448", props, fns, desc                                                        \
    }

/* Named for what it replaces in OpenSSL's chain (PEM to DER): decoders are linked by
 * name, and the key reference it yields goes straight to the key constructor. */
static const OSSL_ALGORITHM prov_decoder[] = {
    {"DER", P11M_PROP ",input=pem", p11m_pem_decoder_functions,
     "PEM file wrapping a pkcs11: URI"},
    PER_KEY_TYPE(P11M_PROP ",input=der,structure=" P11M_PEMURI_STRUCTURE,
                 p11m_der_decoder_functions, "DER wrapping a pkcs11: URI"),
    {NULL, NULL, NULL, NULL},
};

static const OSSL_ALGORITHM prov_encoder[] = {
    PER_KEY_TYPE(P11M_PROP ",output=text", p11m_text_encoder_functions,
                 "token keys as text, with their URI"),
    {NULL, NULL, NULL, NULL},
};

static const OSSL_ALGORITHM *prov_query(void *provctx, int operation_id, int *no_cache)
{
    const P11M_PROV *prov = provctx;

    *no_cache = 0;
    switch (operation_id) {
    case OSSL_OP_STORE:
        return prov_store;
    case OSSL_OP_KEYMGMT:
        return prov_keymgmt;
    case OSSL_OP_SIGNATURE:
        return prov_signature;
    case OSSL_OP_DECODER:
        /* Opt-in: registered decoders make every key decode in the process (certificate
         * parsing included) consider them, which costs a few percent of a handshake. */
        return prov->pem_uri ? prov_decoder : NULL;
    case OSSL_OP_ENCODER:
        return prov_encoder;
    default:
        return NULL;
    }
}

/* ---- TLS groups ----
 *
 * libssl keeps a TLS group only when the provider that advertises it is also the one a
 * plain fetch of the group's key type returns. Loaded before the default provider, this
 * provider is the one the "EC" fetch returns, so it advertises the EC groups itself
 * (keys for them are generated and used by the software provider, see keymgmt.c).
 */
struct prov_group {
    const char *name, *internal;
    unsigned int id, bits;
};

static const struct prov_group prov_groups[] = {
    {"secp256r1", "prime256v1", 23, 128}, {"P-256", "prime256v1", 23, 128},
    {"secp384r1", "secp384r1", 24, 192},  {"P-384", "secp384r1", 24, 192},
    {"secp521r1", "secp521r1", 25, 256},  {"P-521", "secp521r1", 25, 256},
};

static int prov_get_capabilities(void *provctx, const char *capability, OSSL_CALLBACK *cb,
                                 void *arg)
{
    (void) provctx;
    if (strcmp(capability, "TLS-GROUP") != 0)
        return 0;
    for (size_t i = 0; i < sizeof(prov_groups) / sizeof(prov_groups[0]); i++) {
        const struct prov_group *g = &prov_groups[i];
        unsigned int id = g->id, bits = g->bits;
        int min_tls = TLS1_VERSION, max_tls = 0, min_dtls = DTLS1_VERSION, max_dtls = 0;
        OSSL_PARAM params[] = {
            OSSL_PARAM_utf8_string(OSSL_CAPABILITY_TLS_GROUP_NAME, (char *) g->name, 0),
            OSSL_PARAM_utf8_string(OSSL_CAPABILITY_TLS_GROUP_NAME_INTERNAL,
                                   (char *) g->internal, 0),
            OSSL_PARAM_utf8_string(OSSL_CAPABILITY_TLS_GROUP_ALG, "EC", 0),
            OSSL_PARAM_uint(OSSL_CAPABILITY_TLS_GROUP_ID, &id),
            OSSL_PARAM_uint(OSSL_CAPABILITY_TLS_GROUP_SECURITY_BITS, &bits),
            OSSL_PARAM_int(OSSL_CAPABILITY_TLS_GROUP_MIN_TLS, &min_tls),
            OSSL_PARAM_int(OSSL_CAPABILITY_TLS_GROUP_MAX_TLS, &max_tls),
            OSSL_PARAM_int(OSSL_CAPABILITY_TLS_GROUP_MIN_DTLS, &min_dtls),
            OSSL_PARAM_int(OSSL_CAPABILITY_TLS_GROUP_MAX_DTLS, &max_dtls),
            OSSL_PARAM_END,
        };

        if (!cb(params, arg))
            return 0;
    }
    return 1;
}

/* ---- provider parameters and teardown ---- */

static const OSSL_PARAM *prov_gettable_params(void *provctx)
{
    static const OSSL_PARAM gettable[] = {
        OSSL_PARAM_utf8_ptr(OSSL_PROV_PARAM_NAME, NULL, 0),
        OSSL_PARAM_utf8_ptr(OSSL_PROV_PARAM_VERSION, NULL, 0),
        OSSL_PARAM_utf8_ptr(OSSL_PROV_PARAM_BUILDINFO, NULL, 0),
        OSSL_PARAM_int(OSSL_PROV_PARAM_STATUS, NULL),
        OSSL_PARAM_END,
    };

    (void) provctx;
    return gettable;
}

static int prov_get_params(void *provctx, OSSL_PARAM params[])
{
    OSSL_PARAM *p;

    (void) provctx;
    if ((p = OSSL_PARAM_locate(params, OSSL_PROV_PARAM_NAME)) != NULL &&
        !OSSL_PARAM_set_utf8_ptr(p, "p11mtls PKCS#11 provider"))
        return 0;
    if ((p = OSSL_PARAM_locate(params, OSSL_PROV_PARAM_VERSION)) != NULL &&
        !OSSL_PARAM_set_utf8_ptr(p, P11M_VERSION))
        return 0;
    if ((p = OSSL_PARAM_locate(params, OSSL_PROV_PARAM_BUILDINFO)) != NULL &&
        !OSSL_PARAM_set_utf8_ptr(p, P11M_VERSION))
        return 0;
    if ((p = OSSL_PARAM_locate(params, OSSL_PROV_PARAM_STATUS)) != NULL &&
        !OSSL_PARAM_set_int(p, 1))
        return 0;
    return 1;
}

static const int prov_md_nids[5] = {NID_sha1, NID_sha224, NID_sha256, NID_sha384,
                                    NID_sha512};

/* The index in prov->mds of a spelling seen before, else -1. */
static int prov_md_seen(P11M_PROV *prov, const char *mdname)
{
    int n = __atomic_load_n(&prov->n_md_names, __ATOMIC_ACQUIRE);

    for (int i = 0; i < n; i++)
        if (__atomic_load_n(&prov->md_names[i].ready, __ATOMIC_ACQUIRE) &&
            strcmp(prov->md_names[i].name, mdname) == 0)
            return prov->md_names[i].mds_index;
    return -1;
}

/* Remembers a spelling while there is room; two threads may both add one: harmless. */
static void prov_md_remember(P11M_PROV *prov, const char *mdname, int index)
{
    int n = __atomic_load_n(&prov->n_md_names, __ATOMIC_ACQUIRE);

    if (strlen(mdname) >= sizeof(prov->md_names[0].name))
        return;
    do
        if (n >= (int) (sizeof(prov->md_names) / sizeof(prov->md_names[0])))
            return;
    while (!__atomic_compare_exchange_n(&prov->n_md_names, &n, n + 1, 0, __ATOMIC_ACQ_REL,
                                        __ATOMIC_ACQUIRE));
    strcpy(prov->md_names[n].name, mdname);
    prov->md_names[n].mds_index = index;
    __atomic_store_n(&prov->md_names[n].ready, 1, __ATOMIC_RELEASE);
}

/* The index in prov->mds of a digest known by its object name, else -1. */
static int prov_md_by_object(const char *mdname)
{
    int nid = OBJ_sn2nid(mdname); /* unlike OBJ_txt2nid, leaves no error behind */

    if (nid == NID_undef)
        nid = OBJ_ln2nid(mdname);
    for (int i = 0; i < 5; i++)
        if (prov_md_nids[i] == nid)
            return i;
    return -1;
}

EVP_MD *p11m_prov_md(P11M_PROV *prov, const char *mdname)
{
    int i = prov_md_seen(prov, mdname), seen = i >= 0;
    EVP_MD *md, *expected = NULL;

    /* Fetching costs more than a signature's own work on fast tokens: keep one each.
     * Names are looked up once: libssl passes "SHA2-256", which object names lack. */
    if (i < 0)
        i = prov_md_by_object(mdname);
    if (i >= 0 && (md = __atomic_load_n(&prov->mds[i], __ATOMIC_ACQUIRE)) != NULL) {
        if (!seen)
            prov_md_remember(prov, mdname, i);
        return EVP_MD_up_ref(md) ? md : NULL;
    }
    md = EVP_MD_fetch(prov->libctx, mdname, P11M_NOT_US);
    for (i = 0; i < 5 && md != NULL; i++)
        if (EVP_MD_get_type(md) == prov_md_nids[i])
            break;
    if (md == NULL || i == 5) {
        EVP_MD_free(md);
        return NULL;
    }
    if (EVP_MD_up_ref(md) &&
        !__atomic_compare_exchange_n(&prov->mds[i], &expected, md, 0, __ATOMIC_ACQ_REL,
                                     __ATOMIC_ACQUIRE))
        EVP_MD_free(md); /* another thread cached one first: drop our extra reference */
    if (!seen)
        prov_md_remember(prov, mdname, i);
    return md;
}

static void prov_free(P11M_PROV *prov)
{
    for (int i = 0; i < 5; i++)
        EVP_MD_free(prov->mds[i]);
    /* Tokens and modules stay: other instances may use them, and finalising a module
     * at exit crashes some (SoftHSM2). */
    OSSL_LIB_CTX_free(prov->libctx);
    free(prov->module_path);
    free(prov->init_args);
    free(prov->pin_source);
    free(prov);
}

static void prov_teardown(void *provctx)
{
    prov_free(provctx);
}

static const OSSL_DISPATCH prov_functions[] = {
    {OSSL_FUNC_PROVIDER_TEARDOWN, (void (*)(void)) prov_teardown},
    {OSSL_FUNC_PROVIDER_GETTABLE_PARAMS, (void (*)(void)) prov_gettable_params},
    {OSSL_FUNC_PROVIDER_GET_PARAMS, (void (*)(void)) prov_get_params},
    {OSSL_FUNC_PROVIDER_QUERY_OPERATION, (void (*)(void)) prov_query},
    {OSSL_FUNC_PROVIDER_GET_REASON_STRINGS, (void (*)(void)) prov_get_reason_strings},
    {OSSL_FUNC_PROVIDER_GET_CAPABILITIES, (void (*)(void)) prov_get_capabilities},
    {0, NULL},
};

static void prov_take_core_functions(const OSSL_DISPATCH *in)
{
    for (; in->function_id != 0; in++) {
        switch (in->function_id) {
        case OSSL_FUNC_CORE_GET_PARAMS:
            core_get_params = OSSL_FUNC_core_get_params(in);
            break;
        case OSSL_FUNC_CORE_NEW_ERROR:
            core_new_error = OSSL_FUNC_core_new_error(in);
            break;
        case OSSL_FUNC_CORE_SET_ERROR_DEBUG:
            core_set_error_debug = OSSL_FUNC_core_set_error_debug(in);
            break;
        case OSSL_FUNC_CORE_VSET_ERROR:
            core_vset_error = OSSL_FUNC_core_vset_error(in);
            break;
        default:
            break;
        }
    }
}

__attribute__((visibility("default"))) int
OSSL_provider_init(const OSSL_CORE_HANDLE *handle, const OSSL_DISPATCH *in,
                   const OSSL_DISPATCH **out, void **provctx)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    P11M_PROV *prov;

    p11m_log_init();
    prov_take_core_functions(in);
    if (core_get_params == NULL || core_new_error == NULL || core_vset_error == NULL)
        return 0;
    pthread_once(&once, prov_init_once);
    if ((prov = calloc(1, sizeof(*prov))) == NULL)
        return 0;
    prov->handle = handle;
    prov->libctx = OSSL_LIB_CTX_new_child(handle, in);
    if (prov->libctx == NULL || !prov_configure(prov)) {
        /* Without config_diagnostics, OpenSSL 3.0 drops a provider that fails to load
         * without a word: say it once, so a misconfiguration is never silent. */
        int reason;
        const char *msg = p11m_last_error(&reason);

        fprintf(stderr, "p11mtls: provider not loaded: %s: %s\n",
                p11m_reason_string(reason), msg);
        prov_free(prov);
        return 0;
    }
    p11m_log(1, "provider loaded (module %s)",
             prov->module_path != NULL ? prov->module_path : P11M_DEFAULT_MODULE);
    *out = prov_functions;
    *provctx = prov;
    return 1;
}
