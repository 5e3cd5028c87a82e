/*
 * list.c - "p11mtls list": tokens, keys and certificates, with their URIs and which key
 * pairs with which certificate (same CKA_ID). Nothing here needs a login: keys are shown
 * through their public halves; with a PIN source (or --login) the private halves are
 * checked too. Human output by default, JSON (--json) for scripts.
 */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "tool.h"

#define CMD    "list"
#define ID_MAX 128

struct litem {
    P11M_TOKEN *tok;
    char *label;
    unsigned char id[ID_MAX];
    size_t idlen;
    char *uri;
    EVP_PKEY *pub; /* keys: public key; certificates: NULL */
    X509 *x;       /* certificates */
    int priv;      /* keys: 1 private half seen, 0 not there, -1 not checked */
    int pair;      /* index of the paired key/certificate, or -1 */
};

struct lset {
    struct litem *v;
    size_t n;
};

struct list_opts {
    const char *uri;
    const char *module;
    const char *pin_source;
    int login;
    int json;
};

static void list_usage(FILE *out)
{
    fputs(
        "Usage: p11mtls list [URI] [--json] [--module PATH] [--pin-source SRC | "
        "--login]\n"
        "\n"
        "Lists the tokens that URI (default: every token) names, their keys and\n"
        "certificates with URIs, key types, subjects, issuers, validity and days left,\n"
        "and which key pairs with which certificate (same CKA_ID).\n"
        "Without a login, keys are shown through their public halves; with\n"
        "--pin-source (or --login, asking on a terminal) the private halves are "
        "checked.\n"
        "\n"
        "  --json             one JSON document on standard output, for scripts\n"
        "  --module PATH      PKCS#11 module (default: p11-kit's proxy)\n"
        "  --pin-source SRC   user PIN: file:PATH or env:NAME\n"
        "  --login            log in (asks for the PIN on a terminal)\n",
        out);
}

/* ---- a small JSON writer: strings escaped, invalid UTF-8 replaced ---- */

struct json {
    FILE *f;
    int need_comma[16];
    int depth;
};

/* Length of the valid UTF-8 sequence at s, or 0. */
static size_t json_utf8_len(const unsigned char *s)
{
    size_t n = s[0] >= 0xf0 && s[0] <= 0xf4   ? 4
               : s[0] >= 0xe0 && s[0] <= 0xef ? 3
               : s[0] >= 0xc2 && s[0] <= 0xdf ? 2
                                              : 0;

    for (size_t i = 1; i < n; i++)
        if ((s[i] & 0xc0) != 0x80)
            return 0;
    /* overlong 3-byte, surrogates, overlong 4-byte and beyond U+10FFFF */
    if ((n == 3 && s[0] == 0xe0 && s[1] < 0xa0) ||
        (n == 3 && s[0] == 0xed && s[1] >= 0xa0) ||
        (n == 4 && s[0] == 0xf0 && s[1] < 0x90) ||
        (n == 4 && s[0] == 0xf4 && s[1] >= 0x90))
        return 0;
    return n;
}

static void json_string(FILE *f, const char *str)
{
    const unsigned char *s = (const unsigned char *) str;

    fputc('"', f);
    while (*s != '\0') {
        size_t n;

        if (*s == '"' || *s == '\\') {
            fprintf(f, "\\%c", *s++);
        } else if (*s == '\n') {
            fputs("\\n", f), s++;
        } else if (*s < 0x20 || *s == 0x7f) {
            fprintf(f, "\\u%04x", *s++);
        } else if (*s < 0x80) {
            fputc(*s++, f);
        } else if ((n = json_utf8_len(s)) > 0) {
            fwrite(s, 1, n, f);
            s += n;
        } else {
            fputs("\\ufffd", f), s++;
        }
    }
    fputc('"', f);
}

static void json_sep(struct json *j)
{
    if (j->need_comma[j->depth])
        fputc(',', j->f);
    j->need_comma[j->depth] = 1;
}

static void json_key(struct json *j, const char *key)
{
    json_sep(j);
    json_string(j->f, key);
    fputc(':', j->f);
    j->need_comma[j->depth] = 0; /* the value follows without a comma */
}

static void json_value_done(struct json *j)
{
    j->need_comma[j->depth] = 1;
}

static void json_open(struct json *j, const char *key, char c)
{
    if (key != NULL)
        json_key(j, key);
    else
        json_sep(j);
    fputc(c, j->f);
    j->depth++;
    j->need_comma[j->depth] = 0;
}

static void json_close(struct json *j, char c)
{
    j->depth--;
    fputc(c, j->f);
    json_value_done(j);
}

static void json_str(struct json *j, const char *key, const char *v)
{
    json_key(j, key);
    if (v != NULL)
        json_string(j->f, v);
    else
        fputs("null", j->f);
    json_value_done(j);
}

static void json_long(struct json *j, const char *key, long v)
{
    json_key(j, key);
    fprintf(j->f, "%ld", v);
    json_value_done(j);
}

/* -1 is written as null ("not known"). */
static void json_bool(struct json *j, const char *key, int v)
{
    json_key(j, key);
    fputs(v < 0 ? "null" : v ? "true" : "false", j->f);
    json_value_done(j);
}

/* ---- gathering ---- */

static struct litem *lset_add(struct lset *s, P11M_TOKEN *tok, const char *label,
                              const unsigned char *id, size_t idlen)
{
    struct litem *v = realloc(s->v, (s->n + 1) * sizeof(*v)), *it;

    if (v == NULL)
        return NULL;
    s->v = v;
    it = &s->v[s->n++];
    memset(it, 0, sizeof(*it));
    it->tok = tok;
    it->label = strdup(label);
    it->idlen = idlen < ID_MAX ? idlen : ID_MAX;
    memcpy(it->id, id, it->idlen);
    it->priv = -1;
    it->pair = -1;
    return it;
}

static void lset_free(struct lset *s)
{
    for (size_t i = 0; i < s->n; i++) {
        free(s->v[i].label);
        free(s->v[i].uri);
        EVP_PKEY_free(s->v[i].pub);
        X509_free(s->v[i].x);
    }
    free(s->v);
}

struct gather {
    struct lset *keys, *certs;
};

static int list_take_obj(P11M_OBJ *obj, void *arg)
{
    struct gather *g = arg;
    size_t idlen, len;
    const unsigned char *id = p11m_obj_id(obj, &idlen);
    CK_OBJECT_CLASS cls = p11m_obj_class(obj);
    struct litem *it = lset_add(cls == CKO_CERTIFICATE ? g->certs : g->keys,
                                p11m_obj_token(obj), p11m_obj_label(obj), id, idlen);
    const unsigned char *der;

    if (it != NULL && cls == CKO_CERTIFICATE) {
        der = p11m_obj_attr(obj, CKA_VALUE, &len);
        it->x = der != NULL ? d2i_X509(NULL, &der, (long) len) : NULL;
        it->uri = tool_obj_uri(it->tok, CKO_CERTIFICATE, id, idlen, it->label);
    } else if (it != NULL) {
        it->pub = tool_obj_pubkey(obj);
        it->uri = tool_obj_uri(it->tok, CKO_PRIVATE_KEY, id, idlen, it->label);
    }
    ERR_clear_error();
    p11m_obj_free(obj);
    return 1;
}

static CK_OBJECT_CLASS list_uri_class(P11KitUri *uri)
{
    CK_ATTRIBUTE *a = p11_kit_uri_get_attribute(uri, CKA_CLASS);

    if (a != NULL && a->ulValueLen == sizeof(CK_OBJECT_CLASS))
        return *(CK_OBJECT_CLASS *) a->pValue;
    return (CK_OBJECT_CLASS) -1;
}

/* CKA_ID and CKA_LABEL of a private key (label NUL-terminated in label). */
static int list_read_names(P11M_TOKEN *tok, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h,
                           unsigned char *id, size_t *idlen, char *label, size_t llen)
{
    CK_ATTRIBUTE t[2] = {{CKA_ID, id, ID_MAX}, {CKA_LABEL, label, llen - 1}};
    CK_RV rv = p11m_object_get_attrs(tok, s, h, t, 2);

    if (rv != CKR_OK && rv != CKR_ATTRIBUTE_TYPE_INVALID)
        return 0;
    *idlen = t[0].ulValueLen == CK_UNAVAILABLE_INFORMATION ? 0 : t[0].ulValueLen;
    label[t[1].ulValueLen == CK_UNAVAILABLE_INFORMATION ? 0 : t[1].ulValueLen] = '\0';
    return 1;
}

static struct litem *list_key_by_id(struct lset *keys, P11M_TOKEN *tok,
                                    const unsigned char *id, size_t idlen)
{
    for (size_t i = 0; i < keys->n; i++)
        if (keys->v[i].tok == tok && idlen > 0 && keys->v[i].idlen == idlen &&
            memcmp(keys->v[i].id, id, idlen) == 0)
            return &keys->v[i];
    return NULL;
}

/*
 * After a login: which keys have their private half, and which private keys have no
 * public half at all (they are added). A raw search, because the core stands in for a
 * private key with its public half whenever it finds no private object.
 */
static void list_check_private(P11M_TOKEN *tok, P11KitUri *uri, struct lset *keys)
{
    CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
    CK_ATTRIBUTE t[3] = {{CKA_CLASS, &cls, sizeof(cls)}}, *a;
    CK_OBJECT_HANDLE h[256];
    CK_ULONG n = 0, nt = 1;
    CK_SESSION_HANDLE s;
    CK_RV rv;

    if ((a = p11_kit_uri_get_attribute(uri, CKA_ID)) != NULL)
        t[nt++] = *a;
    if ((a = p11_kit_uri_get_attribute(uri, CKA_LABEL)) != NULL)
        t[nt++] = *a;
    if (p11m_session_get(tok, &s) != CKR_OK)
        return;
    rv = p11m_find_handles(p11m_token_module(tok), s, t, nt, h, 256, &n);
    for (size_t i = 0; rv == CKR_OK && i < keys->n; i++)
        if (keys->v[i].tok == tok)
            keys->v[i].priv = 0;
    for (CK_ULONG i = 0; rv == CKR_OK && i < n; i++) {
        unsigned char id[ID_MAX];
        char label[256];
        size_t idlen;
        struct litem *k;

        if (!list_read_names(tok, s, h[i], id, &idlen, label, sizeof(label)))
            continue;
        if ((k = list_key_by_id(keys, tok, id, idlen)) == NULL &&
            (k = lset_add(keys, tok, label, id, idlen)) != NULL)
            k->uri = tool_obj_uri(tok, CKO_PRIVATE_KEY, id, idlen, label);
        if (k != NULL)
            k->priv = 1;
    }
    p11m_session_put(tok, s, rv);
}

/* A key with no public object shows the public key of its certificate. */
static void list_pub_from_certs(struct lset *keys, const struct lset *certs)
{
    for (size_t i = 0; i < keys->n; i++)
        if (keys->v[i].pub == NULL && keys->v[i].pair >= 0 &&
            certs->v[keys->v[i].pair].x != NULL)
            keys->v[i].pub = X509_get_pubkey(certs->v[keys->v[i].pair].x);
}

static void list_pair(struct lset *keys, struct lset *certs)
{
    for (size_t i = 0; i < keys->n; i++) {
        for (size_t c = 0; c < certs->n; c++) {
            struct litem *k = &keys->v[i], *x = &certs->v[c];

            if (k->tok == x->tok && k->idlen > 0 && k->idlen == x->idlen &&
                memcmp(k->id, x->id, k->idlen) == 0 && x->pair < 0) {
                k->pair = (int) c;
                x->pair = (int) i;
                break;
            }
        }
    }
}

/* ---- output ---- */

static const char *list_pin_state(const CK_TOKEN_INFO *ti)
{
    if (!(ti->flags & CKF_USER_PIN_INITIALIZED))
        return "not initialised";
    if (ti->flags & CKF_USER_PIN_LOCKED)
        return "locked";
    if (ti->flags & CKF_USER_PIN_FINAL_TRY)
        return "final try";
    if (ti->flags & CKF_USER_PIN_TO_BE_CHANGED)
        return "to be changed";
    if (ti->flags & CKF_USER_PIN_COUNT_LOW)
        return "count low";
    return "ok";
}

static char *list_token_uri(P11M_TOKEN *tok)
{
    P11KitUri *uri = p11_kit_uri_new();
    char *s = NULL;

    if (uri == NULL)
        return NULL;
    memcpy(p11_kit_uri_get_token_info(uri)->label, p11m_token_info(tok)->label, 32);
    if (p11_kit_uri_format(uri, P11_KIT_URI_FOR_TOKEN, &s) != P11_KIT_URI_OK)
        s = NULL;
    p11_kit_uri_free(uri);
    return s;
}

/* A blank-padded token info field as a C string. */
static const char *list_field(const unsigned char *f, size_t len, char *buf)
{
    while (len > 0 && (f[len - 1] == ' ' || f[len - 1] == '\0'))
        len--;
    memcpy(buf, f, len);
    buf[len] = '\0';
    return buf;
}

static int list_is_ca(X509 *x)
{
    return X509_check_ca(x) > 0;
}

static void list_human_cert(const struct litem *c, const struct lset *keys)
{
    char subj[512], iss[512], nb[32], na[32];

    printf("  cert  %s\n", c->uri != NULL ? c->uri : "?");
    if (c->x == NULL) {
        printf("        (not an X.509 certificate p11mtls can read)\n");
        return;
    }
    printf("        subject  %s\n",
           tool_name_str(X509_get_subject_name(c->x), subj, sizeof(subj)));
    printf("        issuer   %s\n",
           tool_name_str(X509_get_issuer_name(c->x), iss, sizeof(iss)));
    printf("        valid    %s .. %s (%ld days left)\n",
           tool_time_str(X509_get0_notBefore(c->x), nb, sizeof(nb)),
           tool_time_str(X509_get0_notAfter(c->x), na, sizeof(na)),
           tool_days_left(X509_get0_notAfter(c->x)));
    if (c->pair >= 0)
        printf("        key      %s\n", keys->v[c->pair].uri);
    else if (list_is_ca(c->x))
        printf("        (CA certificate)\n");
    else
        printf("        (no key on this token pairs with it)\n");
}

static void list_human_token(P11M_TOKEN *tok, const struct lset *keys,
                             const struct lset *certs)
{
    const CK_TOKEN_INFO *ti = p11m_token_info(tok);
    char manuf[40], model[20], serial[20], desc[64], *turi = list_token_uri(tok);

    printf("token %s\n      %s %s, serial %s, slot %lu, user PIN %s\n",
           turi != NULL ? turi : "?", list_field(ti->manufacturerID, 32, manuf),
           list_field(ti->model, 16, model), list_field(ti->serialNumber, 16, serial),
           p11m_token_slot(tok), list_pin_state(ti));
    free(turi);
    for (size_t i = 0; i < keys->n; i++) {
        const struct litem *k = &keys->v[i];

        if (k->tok != tok)
            continue;
        printf("  key   %s\n        %s, private half %s\n", k->uri,
               k->pub != NULL ? tool_pkey_desc(k->pub, desc, sizeof(desc))
                              : "type unknown (no public key object or certificate)",
               k->priv < 0 ? "not checked (no login)"
               : k->priv   ? "present"
                           : "MISSING");
        printf("        %s%s\n", k->pair >= 0 ? "certificate " : "no certificate",
               k->pair >= 0 ? certs->v[k->pair].uri : "");
    }
    for (size_t i = 0; i < certs->n; i++)
        if (certs->v[i].tok == tok)
            list_human_cert(&certs->v[i], keys);
}

static void list_json_cert(struct json *j, const struct litem *c, const struct lset *keys)
{
    char buf[512], hex[2 * ID_MAX + 1];
    BIGNUM *bn;
    char *sn;

    json_open(j, NULL, '{');
    json_str(j, "uri", c->uri);
    json_str(j, "label", c->label);
    tool_hex(c->id, c->idlen, hex);
    json_str(j, "id", hex);
    if (c->x != NULL) {
        json_str(j, "subject",
                 tool_name_str(X509_get_subject_name(c->x), buf, sizeof(buf)));
        json_str(j, "issuer",
                 tool_name_str(X509_get_issuer_name(c->x), buf, sizeof(buf)));
        bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(c->x), NULL);
        sn = bn != NULL ? BN_bn2hex(bn) : NULL;
        json_str(j, "serial", sn);
        OPENSSL_free(sn);
        BN_free(bn);
        json_str(j, "not_before",
                 tool_time_str(X509_get0_notBefore(c->x), buf, sizeof(buf)));
        json_str(j, "not_after",
                 tool_time_str(X509_get0_notAfter(c->x), buf, sizeof(buf)));
        json_long(j, "days_left", tool_days_left(X509_get0_notAfter(c->x)));
        json_bool(j, "ca", list_is_ca(c->x));
    }
    json_str(j, "key", c->pair >= 0 ? keys->v[c->pair].uri : NULL);
    json_close(j, '}');
}

static void list_json_key(struct json *j, const struct litem *k, const struct lset *certs)
{
    char desc[64], hex[2 * ID_MAX + 1];

    json_open(j, NULL, '{');
    json_str(j, "uri", k->uri);
    json_str(j, "label", k->label);
    tool_hex(k->id, k->idlen, hex);
    json_str(j, "id", hex);
    json_str(j, "type",
             k->pub != NULL ? tool_pkey_desc(k->pub, desc, sizeof(desc)) : NULL);
    json_long(j, "bits", k->pub != NULL ? EVP_PKEY_get_bits(k->pub) : 0);
    json_bool(j, "private", k->priv);
    json_str(j, "certificate", k->pair >= 0 ? certs->v[k->pair].uri : NULL);
    json_close(j, '}');
}

static void list_json_token(struct json *j, P11M_TOKEN *tok, const struct lset *keys,
                            const struct lset *certs)
{
    const CK_TOKEN_INFO *ti = p11m_token_info(tok);
    char buf[40], *turi = list_token_uri(tok);

    json_open(j, NULL, '{');
    json_str(j, "uri", turi);
    free(turi);
    json_str(j, "label", list_field(ti->label, 32, buf));
    json_str(j, "manufacturer", list_field(ti->manufacturerID, 32, buf));
    json_str(j, "model", list_field(ti->model, 16, buf));
    json_str(j, "serial", list_field(ti->serialNumber, 16, buf));
    json_long(j, "slot", (long) p11m_token_slot(tok));
    json_str(j, "module", p11m_token_module(tok)->path);
    json_str(j, "user_pin", list_pin_state(ti));
    json_open(j, "keys", '[');
    for (size_t i = 0; i < keys->n; i++)
        if (keys->v[i].tok == tok)
            list_json_key(j, &keys->v[i], certs);
    json_close(j, ']');
    json_open(j, "certificates", '[');
    for (size_t i = 0; i < certs->n; i++)
        if (certs->v[i].tok == tok)
            list_json_cert(j, &certs->v[i], keys);
    json_close(j, ']');
    json_close(j, '}');
}

/* ---- the command ---- */

/* A token without a user PIN (NSS's "Generic Crypto Services") hides no private half;
 * its token line already says that its PIN is not initialised. */
static int list_pin_token(P11M_TOKEN *tok)
{
    return (p11m_token_info(tok)->flags & CKF_USER_PIN_INITIALIZED) != 0;
}

/* A PIN source holds one token's PIN: tried on several tokens (p11-kit's proxy offers
 * every registered one), it would be a wrong PIN for all but one. Asked on a terminal,
 * each token gets its own. */
static int list_login_allowed(const struct list_opts *o, const P11M_TOKEN_LIST *toks)
{
    size_t n = 0;

    if (o->pin_source == NULL)
        return 1;
    for (size_t t = 0; t < toks->n; t++)
        n += list_pin_token(toks->v[t]);
    if (n <= 1)
        return 1;
    tool_warn("%zu tokens have a user PIN and --pin-source gives one: no login tried; "
              "name the token in the URI (token=...) to check its private halves",
              n);
    return 0;
}

static int list_gather(const struct list_opts *o, P11M_MODULE *mod, P11KitUri *uri,
                       P11M_TOKEN_LIST *toks, struct gather *g)
{
    CK_OBJECT_CLASS want = list_uri_class(uri);
    P11M_FIND_ARGS args = {uri, CKO_CERTIFICATE, NULL, NULL, 0};
    P11M_LOGIN_INFO li;

    if (want == (CK_OBJECT_CLASS) -1 || want == CKO_CERTIFICATE)
        if (p11m_obj_find(mod, &args, list_take_obj, g, NULL) != CKR_OK)
            return 0;
    args.cls = CKO_PUBLIC_KEY;
    if (want != CKO_CERTIFICATE &&
        p11m_obj_find(mod, &args, list_take_obj, g, NULL) != CKR_OK)
        return 0;
    for (size_t i = 0; i < g->keys->n; i++) {
        free(g->keys->v[i].uri); /* shown as the private key they stand for */
        g->keys->v[i].uri =
            tool_obj_uri(g->keys->v[i].tok, CKO_PRIVATE_KEY, g->keys->v[i].id,
                         g->keys->v[i].idlen, g->keys->v[i].label);
    }
    if ((o->login || o->pin_source != NULL) && list_login_allowed(o, toks)) {
        tool_login_info(&li, o->pin_source);
        for (size_t t = 0; t < toks->n; t++)
            if (list_pin_token(toks->v[t]) && p11m_token_login(toks->v[t], &li) == CKR_OK)
                list_check_private(toks->v[t], uri, g->keys);
    }
    list_pair(g->keys, g->certs);
    list_pub_from_certs(g->keys, g->certs);
    return 1;
}

static int list_run(const struct list_opts *o)
{
    P11KitUri *uri = tool_uri(CMD, "URI", o->uri != NULL ? o->uri : "pkcs11:");
    struct lset keys = {NULL, 0}, certs = {NULL, 0};
    struct gather g = {&keys, &certs};
    struct json j = {stdout, {0}, 0};
    P11M_TOKEN_LIST toks = {NULL, 0};
    P11M_MODULE *mod;
    int rc = TOOL_EXIT_FAIL;

    if (uri == NULL)
        return TOOL_EXIT_USAGE;
    if ((mod = tool_module(uri, o->module)) == NULL ||
        p11m_token_list_fill(mod, uri, &toks) != CKR_OK)
        goto done;
    if (toks.n > 0 && !list_gather(o, mod, uri, &toks, &g))
        goto done;
    if (o->json) {
        json_open(&j, NULL, '{');
        json_open(&j, "tokens", '[');
        for (size_t t = 0; t < toks.n; t++)
            list_json_token(&j, toks.v[t], &keys, &certs);
        json_close(&j, ']');
        json_close(&j, '}');
        fputc('\n', stdout);
    } else if (toks.n == 0) {
        printf("no token matches (module %s)\n", mod->path);
    }
    for (size_t t = 0; !o->json && t < toks.n; t++)
        list_human_token(toks.v[t], &keys, &certs);
    rc = TOOL_EXIT_OK;
done:
    p11m_token_list_free(&toks);
    lset_free(&keys);
    lset_free(&certs);
    p11_kit_uri_free(uri);
    return rc;
}

/* tool_getopt: one option of the command into its options. */
static int list_main_opt(int c, char *arg, void *vo)
{
    struct list_opts *o = vo;

    switch (c) {
    case 'j':
        o->json = 1;
        break;
    case 'm':
        o->module = arg;
        break;
    case 'p':
        o->pin_source = arg;
        break;
    case 'l':
        o->login = 1;
        break;
    }
    return 0;
}

int list_main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"json", no_argument, NULL, 'j'},
        {"module", required_argument, NULL, 'm'},
        {"pin-source", required_argument, NULL, 'p'},
        {"login", no_argument, NULL, 'l'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    static const TOOL_CMD cmd = {CMD, "h", longopts, list_usage, 1};
    struct list_opts o = {NULL, NULL, NULL, 0, 0};
    int rc;

    if ((rc = tool_getopt(&cmd, argc, argv, list_main_opt, &o)) != TOOL_PARSED)
        return rc;
    if (optind < argc)
        o.uri = argv[optind];
    if (!tool_pin_source_ok(CMD, "--pin-source", o.pin_source))
        return TOOL_EXIT_USAGE;
    return list_run(&o);
}
