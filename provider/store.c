/*
 * store.c - the OSSL_STORE loader for pkcs11: URIs. Opening parses the URI; the first
 * load searches every matching token once (certificates, public keys, private keys) and
 * later loads hand the results over one by one. Keys go out by reference to the
 * keymgmt, certificates as DER.
 *
 * No PIN is needed to load certificates or public keys. With a PIN source (configured
 * or in the URI), private keys load without a login too, which then happens at the first
 * signature. Without one, loading a private key logs in through the program's passphrase
 * callback (its UI), so an interactive prompt appears while the program expects it.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/core_object.h>
#include <openssl/params.h>
#include <openssl/store.h>

#include "choose.h"
#include "provider.h"

typedef struct store_ctx {
    P11M_PROV *prov;
    P11KitUri *uri;
    P11M_MODULE *mod;
    int expect; /* OSSL_STORE_INFO_*, 0 for anything */
    unsigned char *subject;
    size_t subject_len;
    int searched, failed;
    P11M_OBJ **objs;
    size_t n, next;
} STORE_CTX;

static OSSL_FUNC_store_open_fn store_open;
static OSSL_FUNC_store_settable_ctx_params_fn store_settable_ctx_params;
static OSSL_FUNC_store_set_ctx_params_fn store_set_ctx_params;
static OSSL_FUNC_store_load_fn store_load;
static OSSL_FUNC_store_eof_fn store_eof;
static OSSL_FUNC_store_close_fn store_close;

static void *store_open(void *provctx, const char *uri)
{
    STORE_CTX *ctx = calloc(1, sizeof(*ctx));
    P11M_PROV *prov = provctx;
    P11M_ERR_SCOPE scope;

    if (ctx == NULL)
        return NULL;
    ctx->prov = prov;
    p11m_prov_enter(prov, &scope);
    ctx->uri = p11m_uri_parse(uri);
    if (ctx->uri != NULL)
        ctx->mod = p11m_uri_module(ctx->uri, prov->module_path, prov->init_args);
    p11m_prov_leave(&scope);
    if (ctx->mod == NULL) {
        if (ctx->uri != NULL)
            p11_kit_uri_free(ctx->uri);
        free(ctx);
        return NULL;
    }
    return ctx;
}

static const OSSL_PARAM *store_settable_ctx_params(void *provctx)
{
    static const OSSL_PARAM settable[] = {
        OSSL_PARAM_int(OSSL_STORE_PARAM_EXPECT, NULL),
        OSSL_PARAM_octet_string(OSSL_STORE_PARAM_SUBJECT, NULL, 0),
        OSSL_PARAM_END,
    };

    (void) provctx;
    return settable;
}

static int store_set_ctx_params(void *vctx, const OSSL_PARAM params[])
{
    STORE_CTX *ctx = vctx;
    const OSSL_PARAM *p;
    const void *v;
    size_t len;

    if (params == NULL)
        return 1;
    if ((p = OSSL_PARAM_locate_const(params, OSSL_STORE_PARAM_EXPECT)) != NULL &&
        !OSSL_PARAM_get_int(p, &ctx->expect))
        return 0;
    if ((p = OSSL_PARAM_locate_const(params, OSSL_STORE_PARAM_SUBJECT)) != NULL) {
        if (!OSSL_PARAM_get_octet_string_ptr(p, &v, &len))
            return 0;
        free(ctx->subject);
        if ((ctx->subject = malloc(len > 0 ? len : 1)) == NULL)
            return 0;
        memcpy(ctx->subject, v, len);
        ctx->subject_len = len;
    }
    return 1;
}

/* ---- searching ---- */

static int store_collect(P11M_OBJ *obj, void *arg)
{
    STORE_CTX *ctx = arg;
    P11M_OBJ **v = realloc(ctx->objs, (ctx->n + 1) * sizeof(*v));

    if (v == NULL) {
        p11m_obj_free(obj);
        return 0;
    }
    ctx->objs = v;
    ctx->objs[ctx->n++] = obj;
    return 1;
}

static CK_OBJECT_CLASS store_class(const STORE_CTX *ctx)
{
    switch (ctx->expect) {
    case OSSL_STORE_INFO_PKEY:
        return CKO_PRIVATE_KEY;
    case OSSL_STORE_INFO_PUBKEY:
        return CKO_PUBLIC_KEY;
    case OSSL_STORE_INFO_CERT:
        return CKO_CERTIFICATE;
    default:
        return (CK_OBJECT_CLASS) -1;
    }
}

/* With an interactive program and no PIN source, log in now rather than mid-handshake. */
static int store_login_now(STORE_CTX *ctx, P11M_LOGIN_INFO *li)
{
    for (size_t i = 0; i < ctx->n; i++)
        if (p11m_obj_class(ctx->objs[i]) == CKO_PRIVATE_KEY &&
            !p11m_prov_pw_login(p11m_obj_token(ctx->objs[i]), li, ctx->uri))
            return 0;
    return 1;
}

static int store_search_in(STORE_CTX *ctx, OSSL_PASSPHRASE_CALLBACK *pw_cb,
                           void *pw_cbarg)
{
    P11M_PROV_PW pw = {pw_cb, pw_cbarg};
    P11M_LOGIN_INFO li;
    P11M_FIND_ARGS args;
    size_t n;

    p11m_prov_login_info_pw(ctx->prov, &li, &pw);
    memset(&args, 0, sizeof(args));
    args.uri = ctx->uri;
    args.cls = store_class(ctx);
    args.li = &li;
    args.subject = ctx->subject;
    args.subject_len = ctx->subject_len;
    if (p11m_obj_find(ctx->mod, &args, store_collect, ctx, &n) != CKR_OK)
        return 0;
    /* A renewal leaves old and new side by side for a moment: the new one goes first. */
    if (args.cls != (CK_OBJECT_CLASS) -1)
        p11m_choose_order(ctx->mod, ctx->objs, ctx->n);
    if (!store_login_now(ctx, &li))
        return 0;
    if (n == 0)
        p11m_prov_raise(ctx->prov, P11M_R_NO_OBJECT, "no %s matches the URI",
                        ctx->expect == OSSL_STORE_INFO_CERT     ? "certificate"
                        : ctx->expect == OSSL_STORE_INFO_PKEY   ? "private key"
                        : ctx->expect == OSSL_STORE_INFO_PUBKEY ? "public key"
                                                                : "object");
    return n > 0;
}

static int store_search(STORE_CTX *ctx, OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_cbarg)
{
    P11M_ERR_SCOPE scope;
    int ok;

    p11m_prov_enter(ctx->prov, &scope);
    ok = store_search_in(ctx, pw_cb, pw_cbarg);
    p11m_prov_leave(&scope);
    return ok;
}

/* ---- handing objects over ---- */

static int store_emit_cert(STORE_CTX *ctx, P11M_OBJ *obj, OSSL_CALLBACK *cb, void *cbarg)
{
    int type = OSSL_OBJECT_CERT;
    size_t len;
    const unsigned char *der = p11m_obj_attr(obj, CKA_VALUE, &len);
    OSSL_PARAM params[] = {
        OSSL_PARAM_int(OSSL_OBJECT_PARAM_TYPE, &type),
        OSSL_PARAM_octet_string(OSSL_OBJECT_PARAM_DATA, (void *) der, len),
        OSSL_PARAM_utf8_string(OSSL_OBJECT_PARAM_DATA_STRUCTURE, "Certificate", 0),
        OSSL_PARAM_END,
    };

    if (der == NULL) {
        p11m_prov_raise(ctx->prov, P11M_R_NO_OBJECT, "certificate '%s' has no value",
                        p11m_obj_label(obj));
        return 0;
    }
    if (!cb(params, cbarg)) {
        /* OpenSSL's own error says only "unsupported": name the object it came from. */
        p11m_prov_raise(
            ctx->prov, P11M_R_UNSUPPORTED,
            "certificate '%s' on the token: OpenSSL cannot decode its %zu bytes "
            "of DER as X.509",
            p11m_obj_label(obj), len);
        return 0;
    }
    return 1;
}

static int store_emit_key(STORE_CTX *ctx, P11M_OBJ *obj, OSSL_CALLBACK *cb, void *cbarg)
{
    P11M_KEY *key = p11m_key_from_obj(ctx->prov, obj);
    int ok = key != NULL && p11m_key_pass(key, cb, cbarg);

    p11m_key_free(key);
    return ok;
}

static int store_load(void *vctx, OSSL_CALLBACK *object_cb, void *object_cbarg,
                      OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_cbarg)
{
    STORE_CTX *ctx = vctx;
    P11M_OBJ *obj;

    if (!ctx->searched) {
        ctx->searched = 1;
        if (!store_search(ctx, pw_cb, pw_cbarg)) {
            ctx->failed = 1;
            return 0;
        }
    }
    if (ctx->next >= ctx->n)
        return 0;
    obj = ctx->objs[ctx->next++];
    if (p11m_obj_class(obj) == CKO_CERTIFICATE)
        return store_emit_cert(ctx, obj, object_cb, object_cbarg);
    return store_emit_key(ctx, obj, object_cb, object_cbarg);
}

static int store_eof(void *vctx)
{
    STORE_CTX *ctx = vctx;

    return ctx->failed || (ctx->searched && ctx->next >= ctx->n);
}

static int store_close(void *vctx)
{
    STORE_CTX *ctx = vctx;

    for (size_t i = 0; i < ctx->n; i++)
        p11m_obj_free(ctx->objs[i]);
    free(ctx->objs);
    free(ctx->subject);
    p11_kit_uri_free(ctx->uri);
    free(ctx);
    return 1;
}

const OSSL_DISPATCH p11m_store_functions[] = {
    {OSSL_FUNC_STORE_OPEN, (void (*)(void)) store_open},
    {OSSL_FUNC_STORE_SETTABLE_CTX_PARAMS, (void (*)(void)) store_settable_ctx_params},
    {OSSL_FUNC_STORE_SET_CTX_PARAMS, (void (*)(void)) store_set_ctx_params},
    {OSSL_FUNC_STORE_LOAD, (void (*)(void)) store_load},
    {OSSL_FUNC_STORE_EOF, (void (*)(void)) store_eof},
    {OSSL_FUNC_STORE_CLOSE, (void (*)(void)) store_close},
    {0, NULL},
};
