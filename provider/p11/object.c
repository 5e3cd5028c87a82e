/*
 * object.c - objects on tokens: found by URI, public attributes read once and cached,
 * handles refreshed after fork or token re-insertion, and the one-shot signature.
 *
 * Handles are collected first and attributes read afterwards, never interleaved with a
 * C_FindObjects sequence (some modules mishandle that).
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "p11m_int.h"

#define MAX_FOUND     256
#define MAX_ATTR_LEN  65536
#define MAX_OBJ_ATTRS 12

struct obj_attr {
    CK_ATTRIBUTE_TYPE type;
    unsigned char *val;
    size_t len;
};

struct p11m_obj {
    int refs;
    P11M_TOKEN *tok;
    CK_OBJECT_CLASS cls;
    CK_KEY_TYPE ktype;
    unsigned char *id;
    size_t idlen;
    char *label;
    int always_auth;
    struct obj_attr attrs[MAX_OBJ_ATTRS];
    size_t n_attrs;

    /* The handle cache, guarded by tok->lock. */
    CK_OBJECT_HANDLE handle;
    unsigned epoch;
    int have_handle;
    int signed_once; /* atomic: a C_Sign with this key has succeeded */

    P11M_LOGIN_INFO li; /* pin_value and pin_source owned (copied), cb never kept */
};

static const CK_ATTRIBUTE_TYPE cert_attrs[] = {CKA_VALUE, CKA_SUBJECT, CKA_ISSUER,
                                               CKA_SERIAL_NUMBER};
static const CK_ATTRIBUTE_TYPE rsa_attrs[] = {CKA_MODULUS, CKA_PUBLIC_EXPONENT,
                                              CKA_ALLOWED_MECHANISMS};
static const CK_ATTRIBUTE_TYPE ec_attrs[] = {CKA_EC_PARAMS, CKA_EC_POINT,
                                             CKA_ALLOWED_MECHANISMS};

/* ---- accessors ---- */

P11M_OBJ *p11m_obj_ref(P11M_OBJ *obj)
{
    __atomic_add_fetch(&obj->refs, 1, __ATOMIC_RELAXED);
    return obj;
}

static void obj_free_secret(char *s)
{
    if (s != NULL) {
        OPENSSL_cleanse(s, strlen(s));
        free(s);
    }
}

void p11m_obj_free(P11M_OBJ *obj)
{
    if (obj == NULL || __atomic_sub_fetch(&obj->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    for (size_t i = 0; i < obj->n_attrs; i++)
        free(obj->attrs[i].val);
    free(obj->id);
    free(obj->label);
    obj_free_secret((char *) obj->li.pin_value);
    free((char *) obj->li.pin_source);
    free(obj);
}

CK_OBJECT_CLASS p11m_obj_class(const P11M_OBJ *obj)
{
    return obj->cls;
}

CK_KEY_TYPE p11m_obj_key_type(const P11M_OBJ *obj)
{
    return obj->ktype;
}

P11M_TOKEN *p11m_obj_token(const P11M_OBJ *obj)
{
    return obj->tok;
}

const unsigned char *p11m_obj_id(const P11M_OBJ *obj, size_t *len)
{
    *len = obj->idlen;
    return obj->id;
}

const char *p11m_obj_label(const P11M_OBJ *obj)
{
    return obj->label != NULL ? obj->label : "";
}

int p11m_obj_always_authenticate(const P11M_OBJ *obj)
{
    return __atomic_load_n(&obj->always_auth, __ATOMIC_ACQUIRE);
}

const P11M_LOGIN_INFO *p11m_obj_login_info(const P11M_OBJ *obj)
{
    return &obj->li;
}

const unsigned char *p11m_obj_attr(const P11M_OBJ *obj, CK_ATTRIBUTE_TYPE type,
                                   size_t *len)
{
    for (size_t i = 0; i < obj->n_attrs; i++) {
        if (obj->attrs[i].type == type) {
            *len = obj->attrs[i].len;
            return obj->attrs[i].val;
        }
    }
    *len = 0;
    return NULL;
}

/* ---- reading from the token ---- */

/* Reads the attributes in types that the object has; absent ones are skipped. */
static CK_RV obj_read_attrs(P11M_OBJ *obj, CK_SESSION_HANDLE sess, CK_OBJECT_HANDLE h,
                            const CK_ATTRIBUTE_TYPE *types, size_t n)
{
    CK_ATTRIBUTE t[MAX_OBJ_ATTRS];
    CK_RV rv;

    for (size_t i = 0; i < n; i++)
        t[i] = (CK_ATTRIBUTE){types[i], NULL, 0};
    /* Sizes first; CKR_ATTRIBUTE_TYPE_INVALID still fills the lengths of the others. */
    rv = P11M_CALL(obj->tok->mod, C_GetAttributeValue, sess, h, t, n);
    if (rv != CKR_OK && rv != CKR_ATTRIBUTE_TYPE_INVALID && rv != CKR_ATTRIBUTE_SENSITIVE)
        return rv;
    for (size_t i = 0; i < n; i++) {
        if (t[i].ulValueLen == CK_UNAVAILABLE_INFORMATION || t[i].ulValueLen == 0 ||
            t[i].ulValueLen > MAX_ATTR_LEN || obj->n_attrs == MAX_OBJ_ATTRS ||
            p11m_obj_attr(obj, types[i], &(size_t){0}) != NULL) {
            t[i].ulValueLen = 0;
            continue;
        }
        size_t cap = t[i].ulValueLen;

        t[i].pValue = malloc(cap);
        if (t[i].pValue == NULL)
            return CKR_HOST_MEMORY;
        rv = P11M_CALL(obj->tok->mod, C_GetAttributeValue, sess, h, &t[i], 1);
        if (rv == CKR_OK && (t[i].ulValueLen > cap || t[i].ulValueLen == 0))
            rv = CKR_GENERAL_ERROR; /* a module that changed its answer: not trusted */
        if (rv != CKR_OK) {
            free(t[i].pValue);
            continue; /* an attribute that vanished or grew: leave it out */
        }
        obj->attrs[obj->n_attrs++] =
            (struct obj_attr){types[i], t[i].pValue, t[i].ulValueLen};
    }
    return CKR_OK;
}

static CK_RV obj_read_ulong(P11M_MODULE *mod, CK_SESSION_HANDLE sess, CK_OBJECT_HANDLE h,
                            CK_ATTRIBUTE_TYPE type, CK_ULONG *v)
{
    CK_ATTRIBUTE a = {type, v, sizeof(*v)};

    return P11M_CALL(mod, C_GetAttributeValue, sess, h, &a, 1);
}

/* Longest CKA_ID or CKA_LABEL read: longer ones are not names a URI carries. */
#define OBJ_NAME_MAX 4096

/* CKA_ID and CKA_LABEL. Returns 1, or 0 with an error raised that names the object. */
static int obj_read_names(P11M_OBJ *obj, CK_SESSION_HANDLE sess, CK_OBJECT_HANDLE h)
{
    static const char *const names[2] = {"CKA_ID", "CKA_LABEL"};
    CK_ATTRIBUTE t[2] = {{CKA_ID, NULL, 0}, {CKA_LABEL, NULL, 0}};
    CK_RV rv = P11M_CALL(obj->tok->mod, C_GetAttributeValue, sess, h, t, 2);

    if (rv != CKR_OK && rv != CKR_ATTRIBUTE_TYPE_INVALID)
        goto token_error;
    for (int i = 0; i < 2; i++) {
        if (t[i].ulValueLen == CK_UNAVAILABLE_INFORMATION) {
            t[i].ulValueLen = 0;
        } else if (t[i].ulValueLen > OBJ_NAME_MAX) {
            p11m_raise(P11M_R_UNSUPPORTED,
                       "object handle %lu: its %s is %lu bytes, over the %d that p11mtls "
                       "reads; object skipped",
                       (unsigned long) h, names[i], (unsigned long) t[i].ulValueLen,
                       OBJ_NAME_MAX);
            return 0;
        }
    }
    CK_ULONG id_cap = t[0].ulValueLen, label_cap = t[1].ulValueLen;

    obj->id = malloc(id_cap + 1);
    obj->label = malloc(label_cap + 1);
    if (obj->id == NULL || obj->label == NULL) {
        p11m_raise(P11M_R_INTERNAL, "out of memory");
        return 0;
    }
    t[0].pValue = obj->id;
    t[1].pValue = obj->label;
    rv = P11M_CALL(obj->tok->mod, C_GetAttributeValue, sess, h, t, 2);
    if (rv != CKR_OK && rv != CKR_ATTRIBUTE_TYPE_INVALID)
        goto token_error;
    /* Lengths from the module are checked against what was allocated. */
    obj->idlen = t[0].ulValueLen <= id_cap ? t[0].ulValueLen : 0;
    obj->label[t[1].ulValueLen <= label_cap ? t[1].ulValueLen : 0] = '\0';
    return 1;

token_error:
    p11m_raise_ckr(rv, "C_GetAttributeValue", "reading the names of object handle %lu",
                   (unsigned long) h);
    return 0;
}

static char *obj_strdup(const char *s)
{
    return s != NULL ? strdup(s) : NULL;
}

static P11M_OBJ *obj_new(P11M_TOKEN *tok, CK_OBJECT_CLASS cls, const P11M_LOGIN_INFO *li)
{
    P11M_OBJ *obj = calloc(1, sizeof(*obj));

    if (obj == NULL)
        return NULL;
    obj->refs = 1;
    obj->tok = tok;
    obj->cls = cls;
    obj->ktype = (CK_KEY_TYPE) -1;
    if (li != NULL) {
        obj->li.pin_value = obj_strdup(li->pin_value);
        obj->li.pin_source = obj_strdup(li->pin_source);
    }
    return obj;
}

/* The handle cache is guarded by the token's lock, which a forked child re-creates. */
static void obj_set_handle(P11M_OBJ *obj, CK_OBJECT_HANDLE h, unsigned epoch)
{
    pthread_mutex_lock(&obj->tok->lock);
    obj->handle = h;
    obj->have_handle = 1;
    obj->epoch = epoch;
    pthread_mutex_unlock(&obj->tok->lock);
}

/* CKA_ALWAYS_AUTHENTICATE of a private key (a CK_BBOOL); absent means false. */
static void obj_read_always_auth(P11M_OBJ *obj, CK_SESSION_HANDLE sess,
                                 CK_OBJECT_HANDLE h)
{
    CK_BBOOL v = CK_FALSE;
    CK_ATTRIBUTE a = {CKA_ALWAYS_AUTHENTICATE, &v, sizeof(v)};

    if (P11M_CALL(obj->tok->mod, C_GetAttributeValue, sess, h, &a, 1) != CKR_OK)
        v = CK_FALSE;
    __atomic_store_n(&obj->always_auth, v == CK_TRUE, __ATOMIC_RELEASE);
}

static CK_RV obj_read_key(P11M_OBJ *obj, CK_SESSION_HANDLE sess, CK_OBJECT_HANDLE h)
{
    CK_ULONG v;
    CK_RV rv = obj_read_ulong(obj->tok->mod, sess, h, CKA_KEY_TYPE, &v);

    if (rv != CKR_OK)
        return rv;
    obj->ktype = v;
    if (obj->cls == CKO_PRIVATE_KEY)
        obj_read_always_auth(obj, sess, h);
    if (obj->ktype == CKK_RSA)
        return obj_read_attrs(obj, sess, h, rsa_attrs, 3);
    if (obj->ktype == CKK_EC || obj->ktype == CKK_EC_EDWARDS)
        return obj_read_attrs(obj, sess, h, ec_attrs, 3);
    return CKR_OK;
}

/* A new object for handle h of class cls, with names and public attributes read. */
static P11M_OBJ *obj_load(P11M_TOKEN *tok, CK_SESSION_HANDLE sess, CK_OBJECT_HANDLE h,
                          CK_OBJECT_CLASS cls, const P11M_LOGIN_INFO *li)
{
    P11M_OBJ *obj = obj_new(tok, cls, li);
    CK_RV rv;

    if (obj == NULL)
        return NULL;
    if (!obj_read_names(obj, sess, h)) {
        p11m_obj_free(obj);
        return NULL;
    }
    rv = cls == CKO_CERTIFICATE ? obj_read_attrs(obj, sess, h, cert_attrs, 4)
                                : obj_read_key(obj, sess, h);
    if (rv != CKR_OK) {
        p11m_raise_ckr(rv, "C_GetAttributeValue", "reading object attributes");
        p11m_obj_free(obj);
        return NULL;
    }
    obj_set_handle(obj, h, p11m_token_epoch(tok));
    return obj;
}

/* ---- finding ---- */

typedef struct find_tmpl {
    CK_ATTRIBUTE a[5];
    CK_ULONG n;
    CK_OBJECT_CLASS cls;
    CK_BBOOL token;
} FIND_TMPL;

/* Token objects only: the session copies of keys (keycache.c) share their CKA_ID and
 * label, and must be neither listed nor taken for the key itself. */
static void tmpl_init(FIND_TMPL *t, CK_OBJECT_CLASS cls)
{
    t->cls = cls;
    t->token = CK_TRUE;
    t->a[0] = (CK_ATTRIBUTE){CKA_CLASS, &t->cls, sizeof(t->cls)};
    t->a[1] = (CK_ATTRIBUTE){CKA_TOKEN, &t->token, sizeof(t->token)};
    t->n = 2;
}

static void tmpl_add(FIND_TMPL *t, CK_ATTRIBUTE_TYPE type, const void *v, size_t len)
{
    if (t->n < 5)
        t->a[t->n++] = (CK_ATTRIBUTE){type, (void *) v, len};
}

CK_RV p11m_find_handles(P11M_MODULE *mod, CK_SESSION_HANDLE s, const CK_ATTRIBUTE *t,
                        CK_ULONG nt, CK_OBJECT_HANDLE *h, CK_ULONG cap, CK_ULONG *n)
{
    CK_OBJECT_HANDLE scratch[64], *out = h != NULL ? h : scratch;
    CK_ULONG room = h != NULL ? cap : 64, got = 0;
    CK_RV rv = P11M_CALL(mod, C_FindObjectsInit, s, (CK_ATTRIBUTE_PTR) t, nt);

    *n = 0;
    if (rv != CKR_OK)
        return rv;
    /* Collecting takes one round; counting as many as the token needs to say "no more".
     */
    do {
        if ((rv = P11M_CALL(mod, C_FindObjects, s, out, room, &got)) != CKR_OK)
            break;
        *n += got > room ? room : got;
    } while (h == NULL && got > 0);
    P11M_CALL(mod, C_FindObjectsFinal, s);
    return rv;
}

static CK_RV obj_find_handles(P11M_TOKEN *tok, CK_SESSION_HANDLE sess, FIND_TMPL *t,
                              CK_OBJECT_HANDLE *h, CK_ULONG *n)
{
    return p11m_find_handles(tok->mod, sess, t->a, t->n, h, MAX_FOUND, n);
}

static void tmpl_from_uri(FIND_TMPL *t, P11KitUri *uri, CK_OBJECT_CLASS cls)
{
    CK_ATTRIBUTE *a;

    tmpl_init(t, cls);
    if ((a = p11_kit_uri_get_attribute(uri, CKA_ID)) != NULL)
        tmpl_add(t, CKA_ID, a->pValue, a->ulValueLen);
    if ((a = p11_kit_uri_get_attribute(uri, CKA_LABEL)) != NULL)
        tmpl_add(t, CKA_LABEL, a->pValue, a->ulValueLen);
}

struct find_run {
    const P11M_FIND_ARGS *args;
    p11m_obj_cb *cb;
    void *cb_arg;
    int count;
    int stop;
    P11M_LOGIN_INFO li; /* URI's PIN info, else the caller's */
    /* Tokens where only a login could show the private key (find_private): counted,
     * the first two kept, so that a login is tried on one token only (find_by_login). */
    size_t n_login;
    P11M_TOKEN *login_tok[2];
};

static int find_emit(struct find_run *run, P11M_OBJ *obj)
{
    run->count++;
    if (!run->cb(obj, run->cb_arg))
        run->stop = 1;
    return !run->stop;
}

/* Fills a private key's missing public attributes from its public key or certificate. */
static void find_complete_private(P11M_OBJ *key, CK_SESSION_HANDLE sess)
{
    static const CK_OBJECT_CLASS order[] = {CKO_PUBLIC_KEY, CKO_CERTIFICATE};
    CK_OBJECT_HANDLE h[MAX_FOUND];
    CK_ULONG n;
    FIND_TMPL t;
    size_t len;

    if (key->idlen == 0 ||
        p11m_obj_attr(key, key->ktype == CKK_RSA ? CKA_MODULUS : CKA_EC_POINT, &len) !=
            NULL)
        return;
    for (int i = 0; i < 2; i++) {
        tmpl_init(&t, order[i]);
        tmpl_add(&t, CKA_ID, key->id, key->idlen);
        if (obj_find_handles(key->tok, sess, &t, h, &n) != CKR_OK || n == 0)
            continue;
        if (order[i] == CKO_PUBLIC_KEY) {
            const CK_ATTRIBUTE_TYPE *types = key->ktype == CKK_RSA ? rsa_attrs : ec_attrs;
            obj_read_attrs(key, sess, h[0], types, 2);
        } else {
            obj_read_attrs(key, sess, h[0], cert_attrs, 1);
        }
        return;
    }
}

/*
 * Private keys stand for an object that a login may be needed to see: made from the
 * public key (else the certificate) with the same CKA_ID, with the handle looked up at
 * first use. This keeps listing and loading free of PIN prompts.
 */
static P11M_OBJ *find_private_standin(P11M_TOKEN *tok, CK_SESSION_HANDLE sess,
                                      CK_OBJECT_HANDLE h, CK_OBJECT_CLASS from,
                                      const P11M_LOGIN_INFO *li)
{
    P11M_OBJ *src = obj_load(tok, sess, h, from, li);
    P11M_OBJ *key;

    if (src == NULL || src->idlen == 0) {
        p11m_obj_free(src);
        return NULL;
    }
    key = src;
    key->cls = CKO_PRIVATE_KEY;
    key->have_handle = 0;
    if (from == CKO_CERTIFICATE) {
        /* Keep only the certificate DER: the caller derives the public key from it. */
        size_t keep = key->n_attrs > 0 && key->attrs[0].type == CKA_VALUE ? 1 : 0;

        for (size_t i = keep; i < key->n_attrs; i++)
            free(key->attrs[i].val);
        key->n_attrs = keep;
    } else {
        for (size_t i = 0; i < key->n_attrs; i++)
            if (key->attrs[i].type == CKA_ALLOWED_MECHANISMS)
                key->attrs[i].len = 0; /* the public key's list says nothing of signing */
    }
    return key;
}

/* Emits the objects of class cls on tok (as load_as); *found: how many. */
static CK_RV find_class(struct find_run *run, P11M_TOKEN *tok, CK_SESSION_HANDLE sess,
                        CK_OBJECT_CLASS cls, CK_OBJECT_CLASS load_as, size_t *found)
{
    CK_OBJECT_HANDLE *h = calloc(MAX_FOUND, sizeof(*h));
    CK_ULONG n = 0;
    FIND_TMPL t;
    CK_RV rv;

    *found = 0;
    if (h == NULL) {
        p11m_raise(P11M_R_INTERNAL, "out of memory searching the token");
        return CKR_HOST_MEMORY;
    }
    tmpl_from_uri(&t, run->args->uri, cls);
    if (cls == CKO_CERTIFICATE && run->args->subject != NULL)
        tmpl_add(&t, CKA_SUBJECT, run->args->subject, run->args->subject_len);
    rv = obj_find_handles(tok, sess, &t, h, &n);
    if (rv != CKR_OK) {
        p11m_raise_ckr(rv, "C_FindObjects", "searching the token");
        free(h);
        return rv;
    }
    for (CK_ULONG i = 0; i < n && !run->stop; i++) {
        P11M_OBJ *obj = load_as == cls
                            ? obj_load(tok, sess, h[i], cls, &run->li)
                            : find_private_standin(tok, sess, h[i], cls, &run->li);

        if (obj == NULL)
            continue;
        if (obj->cls == CKO_PRIVATE_KEY)
            find_complete_private(obj, sess);
        (*found)++;
        find_emit(run, obj);
    }
    free(h);
    return CKR_OK;
}

static CK_RV find_private(struct find_run *run, P11M_TOKEN *tok, CK_SESSION_HANDLE sess,
                          int explicit)
{
    size_t n;
    CK_RV rv = find_class(run, tok, sess, CKO_PRIVATE_KEY, CKO_PRIVATE_KEY, &n);

    /* Logged in, the search above saw every private key: no stand-ins. */
    if (rv != CKR_OK || n != 0 || !explicit || run->stop || p11m_logged_in(tok, sess))
        return rv;
    rv = find_class(run, tok, sess, CKO_PUBLIC_KEY, CKO_PRIVATE_KEY, &n);
    if (rv == CKR_OK && n == 0)
        rv = find_class(run, tok, sess, CKO_CERTIFICATE, CKO_PRIVATE_KEY, &n);
    if (rv != CKR_OK || n != 0)
        return rv;
    /* Nothing public to go by: only a login can show whether the key exists, on a
     * token with a user PIN to log in with (NSS softokn's "Generic Crypto Services"
     * beside its key database has none, and hides nothing). Whether to log in is
     * decided once every token has been searched without one (find_by_login). */
    if (p11m_token_info(tok)->flags & CKF_USER_PIN_INITIALIZED) {
        if (run->n_login < 2)
            run->login_tok[run->n_login] = tok;
        run->n_login++;
    }
    return CKR_OK;
}

/*
 * Nothing the URI names was found without a login. The PIN is meant for one token: it
 * is tried only when one token is left that a login could show the key on. With more
 * (p11-kit's proxy offers every registered token), trying it on each would be a wrong
 * PIN for all but one: a retry counter spent, a TPM's lockout counter raised.
 */
static CK_RV find_by_login(struct find_run *run)
{
    CK_SESSION_HANDLE sess;
    char a[40], b[40];
    size_t n;
    CK_RV rv;

    if (run->n_login > 1) {
        p11m_token_label(run->login_tok[0], a, sizeof(a));
        p11m_token_label(run->login_tok[1], b, sizeof(b));
        p11m_raise(P11M_R_NO_OBJECT,
                   "no public key or certificate matches the URI, and %zu tokens ('%s', "
                   "'%s'%s) need a login to show private keys: name the token in the "
                   "URI (token=...) so that the PIN is tried on that token only",
                   run->n_login, a, b, run->n_login > 2 ? ", ..." : "");
        return CKR_FUNCTION_FAILED;
    }
    if ((rv = p11m_token_login(run->login_tok[0], &run->li)) != CKR_OK ||
        (rv = p11m_session_get(run->login_tok[0], &sess)) != CKR_OK)
        return rv;
    rv = find_class(run, run->login_tok[0], sess, CKO_PRIVATE_KEY, CKO_PRIVATE_KEY, &n);
    p11m_session_put(run->login_tok[0], sess, rv);
    return rv;
}

static CK_OBJECT_CLASS find_wanted_class(const P11M_FIND_ARGS *args)
{
    CK_ATTRIBUTE *a;

    if (args->cls != (CK_OBJECT_CLASS) -1)
        return args->cls;
    a = p11_kit_uri_get_attribute(args->uri, CKA_CLASS);
    if (a != NULL && a->ulValueLen == sizeof(CK_OBJECT_CLASS))
        return *(CK_OBJECT_CLASS *) a->pValue;
    return (CK_OBJECT_CLASS) -1;
}

static CK_RV find_on_token(struct find_run *run, P11M_TOKEN *tok)
{
    CK_OBJECT_CLASS want = find_wanted_class(run->args);
    CK_SESSION_HANDLE sess;
    size_t n;
    CK_RV rv;

    if ((rv = p11m_session_get(tok, &sess)) != CKR_OK)
        return rv;
    if (want == (CK_OBJECT_CLASS) -1 || want == CKO_CERTIFICATE)
        rv = find_class(run, tok, sess, CKO_CERTIFICATE, CKO_CERTIFICATE, &n);
    if (rv == CKR_OK && !run->stop &&
        (want == (CK_OBJECT_CLASS) -1 || want == CKO_PUBLIC_KEY))
        rv = find_class(run, tok, sess, CKO_PUBLIC_KEY, CKO_PUBLIC_KEY, &n);
    if (rv == CKR_OK && !run->stop &&
        (want == (CK_OBJECT_CLASS) -1 || want == CKO_PRIVATE_KEY))
        rv = find_private(run, tok, sess, want == CKO_PRIVATE_KEY);
    p11m_session_put(tok, sess, rv);
    return rv;
}

CK_RV p11m_obj_find(P11M_MODULE *mod, const P11M_FIND_ARGS *args, p11m_obj_cb *cb,
                    void *arg, size_t *count)
{
    struct find_run run = {.args = args, .cb = cb, .cb_arg = arg};
    P11M_TOKEN_LIST list;
    CK_RV rv, err = CKR_OK;

    if (args->li != NULL)
        run.li = *args->li;
    if (p11_kit_uri_get_pin_value(args->uri) != NULL)
        run.li.pin_value = p11_kit_uri_get_pin_value(args->uri);
    if (p11_kit_uri_get_pin_source(args->uri) != NULL)
        run.li.pin_source = p11_kit_uri_get_pin_source(args->uri);
    if (count != NULL)
        *count = 0;
    if ((rv = p11m_token_list_fill(mod, args->uri, &list)) != CKR_OK)
        return rv;
    /* A module that scans for tokens only at initialisation (SoftHSM2) needs one to see a
     * token that arrived since: only when it shows no token at all (a URI naming a token
     * that is not there is no reason to disturb the others), at most once a second. */
    if (list.n == 0 && p11m_module_reinit(mod) &&
        (rv = p11m_token_list_fill(mod, args->uri, &list)) != CKR_OK)
        return rv;
    if (list.n == 0) {
        p11m_raise(P11M_R_NO_TOKEN, "no token in %s matches the URI", mod->path);
        return CKR_TOKEN_NOT_PRESENT;
    }
    for (size_t i = 0; i < list.n && !run.stop; i++)
        if ((rv = find_on_token(&run, list.v[i])) != CKR_OK)
            err = rv;
    if (run.count == 0 && run.n_login > 0 && (rv = find_by_login(&run)) != CKR_OK)
        err = rv;
    p11m_token_list_free(&list);
    if (count != NULL)
        *count = run.count;
    /* A token that went away or stopped working (login.c) comes back, if ever, only
     * with the module initialised afresh: done now, for the next attempt. */
    if (run.count == 0 && p11m_rv_token_gone(err))
        p11m_module_reinit(mod);
    /* A failure on one token does not hide what another token had. */
    return run.count > 0 ? CKR_OK : err;
}

/* ---- handles and signing ---- */

static CK_RV obj_lookup_handle(P11M_OBJ *obj, CK_SESSION_HANDLE sess, CK_OBJECT_HANDLE *h)
{
    CK_OBJECT_HANDLE found[2];
    CK_ULONG n;
    FIND_TMPL t;
    CK_RV rv;

    tmpl_init(&t, obj->cls);
    if (obj->idlen > 0)
        tmpl_add(&t, CKA_ID, obj->id, obj->idlen);
    else if (obj->label != NULL && obj->label[0] != '\0')
        tmpl_add(&t, CKA_LABEL, obj->label, strlen(obj->label));
    rv = p11m_find_handles(obj->tok->mod, sess, t.a, t.n, found, 1, &n);
    if (rv != CKR_OK)
        return rv;
    if (n == 0 || n > 1)
        return CKR_OBJECT_HANDLE_INVALID;
    *h = found[0];
    return CKR_OK;
}

CK_RV p11m_obj_handle(P11M_OBJ *obj, CK_SESSION_HANDLE sess, CK_OBJECT_HANDLE *h)
{
    unsigned epoch;
    int cached;
    CK_RV rv;

    pthread_mutex_lock(&obj->tok->lock);
    epoch = obj->tok->epoch; /* read before the lookup: a reset during it wins */
    cached = obj->have_handle && obj->epoch == epoch;
    *h = obj->handle;
    pthread_mutex_unlock(&obj->tok->lock);
    if (cached)
        return CKR_OK;
    /* Checked on the token, not taken from memory: a token that logged us out shows a
     * private key's handle as invalid, not as needing a login. */
    if (obj->cls == CKO_PRIVATE_KEY && !p11m_logged_in(obj->tok, sess) &&
        (rv = p11m_token_login(obj->tok, &obj->li)) != CKR_OK)
        return rv;
    rv = obj_lookup_handle(obj, sess, h);
    if (rv == CKR_OBJECT_HANDLE_INVALID) {
        p11m_raise(P11M_R_NO_OBJECT, "object '%s' is not on the token",
                   p11m_obj_label(obj));
        return rv;
    }
    if (rv != CKR_OK) {
        p11m_raise_ckr(rv, "C_FindObjects", "looking up object '%s'",
                       p11m_obj_label(obj));
        return rv;
    }
    /* A key found through its public half could not know this before login. */
    if (obj->cls == CKO_PRIVATE_KEY)
        obj_read_always_auth(obj, sess, *h);
    obj_set_handle(obj, *h, epoch);
    return CKR_OK;
}

static void obj_forget_handle(P11M_OBJ *obj)
{
    pthread_mutex_lock(&obj->tok->lock);
    obj->have_handle = 0;
    pthread_mutex_unlock(&obj->tok->lock);
}

/*
 * One attempt: checkout, SignInit, (context login), Sign, give the session back.
 * *signing: whether rv is C_SignInit's or C_Sign's, which p11m_sign may retry and
 * raises itself when it gives up; any other failure is raised where it happened.
 */
static CK_RV sign_once(P11M_OBJ *key, CK_MECHANISM *mech, const unsigned char *in,
                       size_t inlen, unsigned char *sig, size_t *siglen, int *signing)
{
    P11M_TOKEN *tok = key->tok;
    CK_SESSION_HANDLE sess;
    CK_OBJECT_HANDLE h, hs;
    CK_ULONG len = *siglen;
    CK_RV rv;

    *signing = 0;
    if ((rv = p11m_session_get(tok, &sess)) != CKR_OK)
        return rv;
    if ((rv = p11m_obj_handle(key, sess, &h)) != CKR_OK) {
        p11m_session_put(tok, sess, rv);
        return rv;
    }
    hs = p11m_keycache_pick(tok, sess, h, p11m_obj_always_authenticate(key));
    p11m_log(2, "signing with '%s' (%s %lu), mechanism 0x%lx", p11m_obj_label(key),
             hs != h ? "session copy" : "token object", (unsigned long) hs,
             (unsigned long) mech->mechanism);
    rv = P11M_CALL(tok->mod, C_SignInit, sess, mech, hs);
    if (hs != h && (rv == CKR_KEY_HANDLE_INVALID || rv == CKR_OBJECT_HANDLE_INVALID))
        p11m_keycache_lost(tok, hs);
    if (rv == CKR_OK && p11m_obj_always_authenticate(key) &&
        (rv = p11m_token_login_context(tok, sess, &key->li)) != CKR_OK) {
        p11m_session_close(tok, sess); /* the operation is still active: not pooled */
        return rv;
    }
    *signing = 1;
    if (rv == CKR_OK)
        rv = P11M_CALL(tok->mod, C_Sign, sess, (CK_BYTE_PTR) in, inlen, sig, &len);
    if (rv == CKR_BUFFER_TOO_SMALL) {
        p11m_session_close(tok, sess); /* likewise */
        return rv;
    }
    p11m_session_put(tok, sess, rv);
    *siglen = len;
    return rv;
}

/* After the token went away: re-initialise the module and find the token again. Only
 * between attempts, with no session held (the re-initialisation waits for all of them).
 */
static int sign_recover(P11M_TOKEN *tok)
{
    return p11m_module_reinit(tok->mod) && p11m_token_revalidate(tok) == CKR_OK;
}

/*
 * Worth re-initialising the module and looking for the token again: the token went
 * away, or came back without the key (the lookup found none); or a key that has signed
 * before now gets a device or general error, as when the module lost its own state under
 * it (tpm2-pkcs11 answers CKR_GENERAL_ERROR to every call once tpm2-abrmd, the TPM's
 * resource manager, has restarted). A key that never signed keeps such errors: the key
 * itself may be what the token cannot use.
 */
static int sign_token_lost(const P11M_OBJ *key, CK_RV rv, int signing)
{
    if (p11m_rv_token_gone(rv) || (!signing && rv == CKR_OBJECT_HANDLE_INVALID))
        return 1;
    return signing && (rv == CKR_GENERAL_ERROR || rv == CKR_DEVICE_ERROR) &&
           __atomic_load_n(&key->signed_once, __ATOMIC_RELAXED);
}

/* The digest length of a PSS parameter's hash when its MGF1 uses the same hash, else 0.
 */
static CK_ULONG sign_pss_hash_len(const CK_MECHANISM *mech)
{
    static const struct {
        CK_MECHANISM_TYPE hash;
        CK_RSA_PKCS_MGF_TYPE mgf;
        CK_ULONG len;
    } hashes[] = {
        {CKM_SHA_1, CKG_MGF1_SHA1, 20},    {CKM_SHA224, CKG_MGF1_SHA224, 28},
        {CKM_SHA256, CKG_MGF1_SHA256, 32}, {CKM_SHA384, CKG_MGF1_SHA384, 48},
        {CKM_SHA512, CKG_MGF1_SHA512, 64},
    };
    const CK_RSA_PKCS_PSS_PARAMS *pss = mech->pParameter;

    switch (mech->mechanism) {
    case CKM_RSA_PKCS_PSS:
    case CKM_SHA1_RSA_PKCS_PSS:
    case CKM_SHA224_RSA_PKCS_PSS:
    case CKM_SHA256_RSA_PKCS_PSS:
    case CKM_SHA384_RSA_PKCS_PSS:
    case CKM_SHA512_RSA_PKCS_PSS:
        break;
    default:
        return 0;
    }
    if (pss == NULL || mech->ulParameterLen != sizeof(*pss))
        return 0;
    for (size_t i = 0; i < sizeof(hashes) / sizeof(hashes[0]); i++)
        if (pss->hashAlg == hashes[i].hash && pss->mgf == hashes[i].mgf)
            return hashes[i].len;
    return 0;
}

/* Mechanism parameters refused. TPMs (tpm2-pkcs11) take RSA-PSS only with a salt as
 * long as the digest: say so, rather than leave the caller to guess. */
static void sign_raise_params(P11M_OBJ *key, const CK_MECHANISM *mech, CK_RV rv)
{
    CK_ULONG hlen = sign_pss_hash_len(mech);
    const CK_RSA_PKCS_PSS_PARAMS *pss = mech->pParameter;
    char label[40];

    if (hlen != 0 && pss->sLen != hlen)
        p11m_raise(P11M_R_MECHANISM,
                   "signing with '%s': token '%s' refused RSA-PSS with a %lu-byte salt "
                   "(%s); it may accept only salt length = digest length (%lu bytes): "
                   "use rsa_pss_saltlen:digest",
                   p11m_obj_label(key), p11m_token_label(key->tok, label, sizeof(label)),
                   (unsigned long) pss->sLen, p11m_ckr_name(rv), (unsigned long) hlen);
    else
        p11m_raise(P11M_R_MECHANISM,
                   "signing with '%s': the token refused the mechanism parameters "
                   "(mechanism 0x%lx): C_Sign: %s",
                   p11m_obj_label(key), (unsigned long) mech->mechanism,
                   p11m_ckr_name(rv));
}

static void sign_raise(P11M_OBJ *key, const CK_MECHANISM *mech, CK_RV rv)
{
    if (rv == CKR_ARGUMENTS_BAD || rv == CKR_MECHANISM_PARAM_INVALID)
        sign_raise_params(key, mech, rv);
    else
        p11m_raise_ckr(rv, "C_Sign", "signing with '%s'", p11m_obj_label(key));
}

CK_RV p11m_sign(P11M_OBJ *key, CK_MECHANISM *mech, const unsigned char *in, size_t inlen,
                unsigned char *sig, size_t *siglen)
{
    size_t cap = *siglen;
    int recovered = 0, signing = 0;
    CK_RV rv = CKR_OK;

    /* A C_Sign size query would leave the operation active on a pooled session. */
    if (sig == NULL || cap == 0) {
        p11m_raise(P11M_R_INTERNAL, "p11m_sign needs a signature buffer");
        return CKR_ARGUMENTS_BAD;
    }

    p11m_error_hold();
    for (int attempt = 0; attempt < 3; attempt++) {
        *siglen = cap;
        rv = sign_once(key, mech, in, inlen, sig, siglen, &signing);
        if (rv == CKR_OK) {
            __atomic_store_n(&key->signed_once, 1, __ATOMIC_RELAXED);
            break;
        }
        if (signing && rv == CKR_USER_NOT_LOGGED_IN && attempt == 0) {
            /* The token forgot us (idle logout, card reset): look the key up again,
             * which logs in first. */
            p11m_login_lost(key->tok);
            obj_forget_handle(key);
            continue;
        }
        if (signing &&
            (rv == CKR_KEY_HANDLE_INVALID || rv == CKR_OBJECT_HANDLE_INVALID) &&
            attempt == 0) {
            obj_forget_handle(key);
            continue;
        }
        if (!recovered && sign_token_lost(key, rv, signing)) {
            recovered = 1;
            if (sign_recover(key->tok))
                continue;
            if (rv == CKR_GENERAL_ERROR || rv == CKR_DEVICE_ERROR)
                break; /* the token's own error says more than "absent" */
            p11m_raise(P11M_R_TOKEN_ABSENT, "the token holding '%s' is not present",
                       p11m_obj_label(key));
            rv = CKR_TOKEN_NOT_PRESENT;
            signing = 0;
        }
        break;
    }
    if (rv != CKR_OK && signing)
        sign_raise(key, mech, rv);
    p11m_error_release(rv != CKR_OK);
    return rv;
}

/* ---- URIs ---- */

char *p11m_obj_uri(const P11M_OBJ *obj)
{
    P11KitUri *uri = p11_kit_uri_new();
    CK_TOKEN_INFO *ti;
    CK_OBJECT_CLASS cls = obj->cls;
    CK_ATTRIBUTE a;
    char *s = NULL;

    if (uri == NULL)
        return NULL;
    ti = p11_kit_uri_get_token_info(uri);
    memcpy(ti->label, obj->tok->info.label, sizeof(ti->label));
    memcpy(ti->manufacturerID, obj->tok->info.manufacturerID, sizeof(ti->manufacturerID));
    memcpy(ti->model, obj->tok->info.model, sizeof(ti->model));
    memcpy(ti->serialNumber, obj->tok->info.serialNumber, sizeof(ti->serialNumber));
    a = (CK_ATTRIBUTE){CKA_CLASS, &cls, sizeof(cls)};
    p11_kit_uri_set_attribute(uri, &a);
    if (obj->idlen > 0) {
        a = (CK_ATTRIBUTE){CKA_ID, obj->id, obj->idlen};
        p11_kit_uri_set_attribute(uri, &a);
    }
    if (obj->label != NULL && obj->label[0] != '\0') {
        a = (CK_ATTRIBUTE){CKA_LABEL, obj->label, strlen(obj->label)};
        p11_kit_uri_set_attribute(uri, &a);
    }
    if (p11_kit_uri_format(uri, P11_KIT_URI_FOR_OBJECT_ON_TOKEN, &s) != P11_KIT_URI_OK)
        s = NULL;
    p11_kit_uri_free(uri);
    return s;
}
