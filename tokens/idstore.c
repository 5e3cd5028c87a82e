/*
 * idstore.c - an identity's objects on its token: reading them through the core, the
 * rule that chooses among several certificates, and the few writes enrol and renew make.
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/rand.h>

#include "choose.h"
#include "idstore.h"

/* ---- reading ---- */

struct ids_collect {
    struct ids *ids;
    const char *prefix; /* chain: labels starting with it; else NULL */
};

static X509 *ids_obj_x509(const P11M_OBJ *obj)
{
    size_t len;
    const unsigned char *der = p11m_obj_attr(obj, CKA_VALUE, &len);
    X509 *x = der != NULL ? d2i_X509(NULL, &der, (long) len) : NULL;

    ERR_clear_error();
    return x;
}

static int ids_take_cert(P11M_OBJ *obj, void *arg)
{
    struct ids_collect *c = arg;
    struct ids *ids = c->ids;
    struct ids_cert *v;
    size_t idlen;
    X509 *x;

    p11m_obj_id(obj, &idlen);
    if (c->prefix != NULL) {
        if (strncmp(p11m_obj_label(obj), c->prefix, strlen(c->prefix)) == 0 &&
            (x = ids_obj_x509(obj)) != NULL && !sk_X509_push(ids->chain, x))
            X509_free(x);
        p11m_obj_free(obj);
        return 1;
    }
    if (idlen == 0 || strcmp(p11m_obj_label(obj), ids->label) != 0 ||
        (x = ids_obj_x509(obj)) == NULL) {
        p11m_obj_free(obj);
        return 1;
    }
    if ((v = realloc(ids->certs, (ids->n_certs + 1) * sizeof(*v))) == NULL) {
        X509_free(x);
        p11m_obj_free(obj);
        return 0;
    }
    ids->certs = v;
    v[ids->n_certs++] = (struct ids_cert){obj, x};
    return 1;
}

static int ids_take_cert(P11M_OBJ *obj, void *arg);

/* Every certificate found (the chain filter and label checks of ids_take_cert aside). */
static int ids_take_cert_any(P11M_OBJ *obj, void *arg)
{
    struct ids_collect c = {arg, NULL};

    return ids_take_cert(obj, &c);
}

/* Calls p11m_obj_find for class cls and label (NULL: any) on the identity's token. 1 on
 * success (even with nothing found), 0 on error (raised). */
static int ids_find(struct ids *ids, CK_OBJECT_CLASS cls, const char *label,
                    const unsigned char *id, size_t idlen, P11M_LOGIN_INFO *li,
                    p11m_obj_cb *cb, void *arg)
{
    char *s = tool_obj_uri(ids->tok, cls, id, idlen, label);
    P11KitUri *uri = s != NULL ? p11m_uri_parse(s) : NULL;
    P11M_FIND_ARGS args = {uri, cls, li, NULL, 0};
    int ok = uri != NULL && p11m_obj_find(ids->mod, &args, cb, arg, NULL) == CKR_OK;

    p11_kit_uri_free(uri);
    free(s);
    return ok;
}

int ids_choose(X509 *const *v, size_t n)
{
    int best = n > 0 ? 0 : -1;

    /* The provider's rule (choose.c), so that the tool and the TLS stacks agree. */
    for (size_t i = 1; i < n; i++)
        if (p11m_choose_cert_cmp(v[i], v[best]) < 0)
            best = (int) i;
    return best;
}

int ids_load(struct ids *ids, P11KitUri *tokuri, const char *module, const char *label)
{
    struct ids_collect c = {ids, NULL};
    char prefix[220];
    X509 **xs;

    memset(ids, 0, sizeof(*ids));
    ids->chosen = -1;
    snprintf(ids->label, sizeof(ids->label), "%s", label);
    if ((ids->mod = tool_module(tokuri, module)) == NULL ||
        (ids->tok = tool_token_one(ids->mod, tokuri)) == NULL ||
        (ids->chain = sk_X509_new_null()) == NULL)
        return 0;
    if (!ids_find(ids, CKO_CERTIFICATE, label, NULL, 0, NULL, ids_take_cert, &c))
        return 0;
    snprintf(prefix, sizeof(prefix), "%s-ca", label);
    c.prefix = prefix;
    if (!ids_find(ids, CKO_CERTIFICATE, NULL, NULL, 0, NULL, ids_take_cert, &c))
        return 0;
    if (ids->n_certs > 0 && (xs = calloc(ids->n_certs, sizeof(*xs))) != NULL) {
        for (size_t i = 0; i < ids->n_certs; i++)
            xs[i] = ids->certs[i].x;
        ids->chosen = ids_choose(xs, ids->n_certs);
        free(xs);
    }
    return 1;
}

void ids_free(struct ids *ids)
{
    for (size_t i = 0; i < ids->n_certs; i++) {
        p11m_obj_free(ids->certs[i].obj);
        X509_free(ids->certs[i].x);
    }
    free(ids->certs);
    sk_X509_pop_free(ids->chain, X509_free);
    memset(ids, 0, sizeof(*ids));
}

X509 *ids_cert(const struct ids *ids)
{
    return ids->chosen >= 0 ? ids->certs[ids->chosen].x : NULL;
}

const unsigned char *ids_id(const struct ids *ids, size_t *len)
{
    *len = 0;
    return ids->chosen >= 0 ? p11m_obj_id(ids->certs[ids->chosen].obj, len) : NULL;
}

static int ids_take_first(P11M_OBJ *obj, void *arg)
{
    P11M_OBJ **first = arg;

    if (*first == NULL)
        *first = obj;
    else
        p11m_obj_free(obj);
    return 1;
}

P11M_OBJ *ids_key(struct ids *ids, const char *label, const unsigned char *id,
                  size_t idlen, P11M_LOGIN_INFO *li)
{
    P11M_OBJ *key = NULL;

    if (!ids_find(ids, CKO_PRIVATE_KEY, label, id, idlen, li, ids_take_first, &key)) {
        p11m_obj_free(key);
        return NULL;
    }
    return key;
}

/* ---- writing ---- */

static long ids_handles(struct ids *ids, CK_SESSION_HANDLE s, CK_OBJECT_CLASS cls,
                        const unsigned char *id, size_t idlen, const char *label,
                        CK_OBJECT_HANDLE *h, CK_ULONG cap)
{
    CK_ATTRIBUTE t[3] = {{CKA_CLASS, &cls, sizeof(cls)},
                         {CKA_LABEL, (void *) label, strlen(label)},
                         {CKA_ID, (void *) id, idlen}};
    CK_ULONG n = 0;
    CK_RV rv = p11m_find_handles(p11m_token_module(ids->tok), s, t, id != NULL ? 3 : 2, h,
                                 cap, &n);

    if (rv != CKR_OK) {
        tool_err("searching the token: %s", p11m_ckr_name(rv));
        return -1;
    }
    return (long) n;
}

int ids_store_cert(struct ids *ids, CK_SESSION_HANDLE s, X509 *x, const char *label,
                   const unsigned char *id, size_t idlen)
{
    CK_RV rv = cert_create_x509(ids->tok, s, x, label, id, idlen, 1);

    if (rv != CKR_OK)
        tool_err("storing the certificate: C_CreateObject: %s", p11m_ckr_name(rv));
    return rv == CKR_OK;
}

int ids_store_chain(struct ids *ids, CK_SESSION_HANDLE s, STACK_OF(X509) * chain,
                    X509 *leaf)
{
    char label[240];
    int next = sk_X509_num(ids->chain) + 1;

    for (int i = 0; i < sk_X509_num(chain); i++) {
        X509 *x = sk_X509_value(chain, i);
        int have = X509_cmp(x, leaf) == 0;
        CK_RV rv;

        for (int j = 0; !have && j < sk_X509_num(ids->chain); j++)
            have = X509_cmp(x, sk_X509_value(ids->chain, j)) == 0;
        if (have)
            continue;
        snprintf(label, sizeof(label), "%s-ca%d", ids->label, next++);
        if ((rv = cert_create_x509(ids->tok, s, x, label, NULL, 0, 2)) != CKR_OK) {
            tool_err("storing a CA certificate: C_CreateObject: %s", p11m_ckr_name(rv));
            return 0;
        }
        if (!X509_up_ref(x) || !sk_X509_push(ids->chain, x))
            return 0;
    }
    return 1;
}

int ids_generate(struct ids *ids, CK_SESSION_HANDLE s, const char *type,
                 const char *label, unsigned char *id, size_t *idlen)
{
    /* What a CMP CA takes with OpenSSL 3.0's client (no Ed25519, no RSA-PSS keys). */
    static const char *const types[] = {"ec:P-256", "ec:P-384", "rsa:2048", "rsa:3072"};
    size_t i = 0;

    while (i < sizeof(types) / sizeof(types[0]) && strcmp(type, types[i]) != 0)
        i++;
    if (i == sizeof(types) / sizeof(types[0])) {
        tool_err("--type: '%s' is not ec:P-256, ec:P-384, rsa:2048 or rsa:3072", type);
        return 0;
    }
    *idlen = 16;
    if (RAND_bytes(id, 16) != 1) {
        tool_ossl_err("no random bytes for the key id");
        return 0;
    }
    return key_generate_pair(ids->tok, s, type, label, id, *idlen);
}

int ids_destroy(struct ids *ids, CK_SESSION_HANDLE s, CK_OBJECT_CLASS cls,
                const unsigned char *id, size_t idlen, const char *label)
{
    CK_OBJECT_HANDLE h[16];
    long n = ids_handles(ids, s, cls, id, idlen, label, h, 16);

    for (long i = 0; i < n; i++) {
        CK_RV rv = p11m_object_destroy(ids->tok, s, h[i]);

        if (rv != CKR_OK) {
            tool_err("removing an old object: C_DestroyObject: %s", p11m_ckr_name(rv));
            return 0;
        }
    }
    return n >= 0;
}

int ids_destroy_cert(struct ids *ids, CK_SESSION_HANDLE s, X509 *x, const char *label)
{
    P11M_MODULE *mod = p11m_token_module(ids->tok);
    CK_OBJECT_CLASS cls = CKO_CERTIFICATE;
    unsigned char *der = NULL;
    int len = i2d_X509(x, &der);
    CK_ATTRIBUTE t[3] = {{CKA_CLASS, &cls, sizeof(cls)},
                         {CKA_LABEL, (void *) label, strlen(label)},
                         {CKA_VALUE, der, (CK_ULONG) (len > 0 ? len : 0)}};
    CK_OBJECT_HANDLE h[4];
    CK_ULONG n = 0;
    CK_RV rv = len > 0 ? p11m_find_handles(mod, s, t, 3, h, 4, &n) : CKR_HOST_MEMORY;

    OPENSSL_free(der);
    for (CK_ULONG i = 0; rv == CKR_OK && i < n; i++)
        rv = p11m_object_destroy(ids->tok, s, h[i]);
    if (rv != CKR_OK)
        tool_err("removing the old certificate: %s", p11m_ckr_name(rv));
    return rv == CKR_OK;
}

struct ids_orphans {
    P11M_OBJ *v[16];
    size_t n;
};

static int ids_take_key(P11M_OBJ *obj, void *arg)
{
    struct ids_orphans *o = arg;

    if (o->n < sizeof(o->v) / sizeof(o->v[0]))
        o->v[o->n++] = obj;
    else
        p11m_obj_free(obj);
    return 1;
}

/* Whether a certificate of the identity (still on the token) has this CKA_ID. */
static int ids_has_cert(struct ids *ids, const unsigned char *id, size_t idlen)
{
    struct ids fresh;
    int found = 0;

    memset(&fresh, 0, sizeof(fresh));
    fresh.mod = ids->mod;
    fresh.tok = ids->tok;
    memcpy(fresh.label, ids->label, sizeof(fresh.label));
    fresh.chosen = -1;
    if (!ids_find(&fresh, CKO_CERTIFICATE, ids->label, id, idlen, NULL, ids_take_cert_any,
                  &fresh))
        found = 1; /* when in doubt, keep the key */
    found |= fresh.n_certs > 0;
    for (size_t i = 0; i < fresh.n_certs; i++) {
        p11m_obj_free(fresh.certs[i].obj);
        X509_free(fresh.certs[i].x);
    }
    free(fresh.certs);
    return found;
}

int ids_destroy_orphans(struct ids *ids, CK_SESSION_HANDLE s, P11M_LOGIN_INFO *li,
                        long grace)
{
    int waited = 0;
    struct ids_orphans o = {{NULL}, 0};
    size_t idlen, oidlen;
    const unsigned char *id = ids_id(ids, &idlen), *oid;
    int ok = ids_find(ids, CKO_PRIVATE_KEY, ids->label, NULL, 0, li, ids_take_key, &o);

    for (size_t i = 0; i < o.n; i++) {
        oid = p11m_obj_id(o.v[i], &oidlen);
        if (ok && oidlen > 0 && !(oidlen == idlen && memcmp(oid, id, idlen) == 0) &&
            !ids_has_cert(ids, oid, oidlen)) {
            if (!waited++ && grace > 0) {
                fprintf(stderr,
                        "p11mtls: removing the old key of '%s' in %ld s, once running "
                        "programs use the new one\n",
                        ids->label, grace);
                sleep((unsigned) grace);
            }
            ok = ids_destroy(ids, s, CKO_PRIVATE_KEY, oid, oidlen, ids->label) &&
                 ids_destroy(ids, s, CKO_PUBLIC_KEY, oid, oidlen, ids->label);
            ids_step(7, "old key removed");
        }
        p11m_obj_free(o.v[i]);
    }
    return ok;
}

int ids_relabel(struct ids *ids, CK_SESSION_HANDLE s, CK_OBJECT_CLASS cls,
                const unsigned char *id, size_t idlen, const char *from, const char *to)
{
    CK_OBJECT_HANDLE h[16];
    long n = ids_handles(ids, s, cls, id, idlen, from, h, 16);
    CK_ATTRIBUTE a = {CKA_LABEL, (void *) to, strlen(to)};

    for (long i = 0; i < n; i++) {
        CK_RV rv = p11m_object_set_attrs(ids->tok, s, h[i], &a, 1);

        if (rv != CKR_OK) {
            tool_err("relabelling '%s' to '%s': C_SetAttributeValue: %s", from, to,
                     p11m_ckr_name(rv));
            return 0;
        }
    }
    return n >= 0;
}

void ids_step(int n, const char *what)
{
    const char *at = getenv("P11MTLS_TEST_KILL_AT");

    if (at != NULL && atoi(at) == n) {
        fprintf(stderr, "p11mtls: test: killed at step %d (%s)\n", n, what);
        fflush(stderr);
        raise(SIGKILL);
    }
}
