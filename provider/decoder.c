/*
 * decoder.c - reads PEM files that wrap a pkcs11: URI, so legacy key-file APIs
 * (SSL_CTX_use_PrivateKey_file, PEM_read_bio_PrivateKey) get the token key. Input that
 * is not such a file is left to the other decoders. The PIN comes as for store.c: from
 * a PIN source, or else from the program's passphrase callback, asked at load.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/core_object.h>
#include <openssl/params.h>
#include <openssl/err.h>
#include <openssl/pem.h>

#include "pemuri.h"
#include "provider.h"

static OSSL_FUNC_decoder_newctx_fn dec_newctx;
static OSSL_FUNC_decoder_freectx_fn dec_freectx;
static OSSL_FUNC_decoder_decode_fn dec_pem_decode;
static OSSL_FUNC_decoder_decode_fn dec_der_decode;

static void *dec_newctx(void *provctx)
{
    return provctx;
}

static void dec_freectx(void *ctx)
{
    (void) ctx;
}

static int dec_take_first(P11M_OBJ *obj, void *arg)
{
    *(P11M_OBJ **) arg = obj;
    return 0; /* the first private key is the one */
}

/*
 * The private key the URI names, as a key object. NULL (raised) when none. Without a
 * PIN source, the PIN comes from the program's passphrase callback, now (as in store.c).
 */
static P11M_KEY *dec_load(P11M_PROV *prov, const char *uri_string, P11M_PROV_PW *pw)
{
    P11M_ERR_SCOPE scope;
    P11KitUri *uri;
    P11M_MODULE *mod = NULL;
    P11M_LOGIN_INFO li;
    P11M_FIND_ARGS args;
    P11M_OBJ *obj = NULL;
    P11M_KEY *key = NULL;
    size_t n;

    p11m_prov_enter(prov, &scope);
    uri = p11m_uri_parse(uri_string);

    /* Key files travel and get read as data: one must not choose a library to load. */
    if (uri != NULL && p11_kit_uri_get_module_path(uri) != NULL)
        p11m_prov_raise(prov, P11M_R_BAD_URI,
                        "a " P11M_PEMURI_LABEL " file may not name a module-path (set "
                        "pkcs11-module in the provider's configuration instead)");
    else if (uri != NULL)
        mod = p11m_uri_module(uri, prov->module_path, prov->init_args);
    if (mod != NULL) {
        p11m_prov_login_info_pw(prov, &li, pw);
        memset(&args, 0, sizeof(args));
        args.uri = uri;
        args.cls = CKO_PRIVATE_KEY;
        args.li = &li;
        if (p11m_obj_find(mod, &args, dec_take_first, &obj, &n) == CKR_OK && n == 0)
            p11m_prov_raise(prov, P11M_R_NO_OBJECT, "no private key matches %s",
                            P11M_PEMURI_LABEL " file's URI");
    }
    if (obj != NULL && p11m_prov_pw_login(p11m_obj_token(obj), &li, uri))
        key = p11m_key_from_obj(prov, obj);
    p11m_obj_free(obj);
    if (uri != NULL)
        p11_kit_uri_free(uri);
    p11m_prov_leave(&scope);
    return key;
}

/*
 * Stage 1, PEM to DER (it replaces OpenSSL's pem2der for this one label): the DER goes
 * on tagged with the structure name stage 2 takes. Handing out a key reference here
 * would be wrong: through OpenSSL's file store it would reach another provider's keymgmt.
 */
static int dec_pem_decode(void *vctx, OSSL_CORE_BIO *cin, int selection,
                          OSSL_CALLBACK *data_cb, void *data_cbarg,
                          OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_cbarg)
{
    P11M_PROV *prov = vctx;
    BIO *in = BIO_new_from_core_bio(prov->libctx, cin);
    char *name = NULL, *header = NULL;
    unsigned char *der = NULL;
    long len = 0;
    int ok = 1, type = OSSL_OBJECT_PKEY;
    OSSL_PARAM params[4];

    (void) selection;
    (void) pw_cb;
    (void) pw_cbarg;
    if (in == NULL)
        return 0;
    ERR_set_mark();
    if (PEM_read_bio(in, &name, &header, &der, &len) <= 0 ||
        strcmp(name, P11M_PEMURI_LABEL) != 0) {
        ERR_pop_to_mark(); /* not ours: quietly let the next decoder try */
        goto done;
    }
    ERR_clear_last_mark();
    params[0] = OSSL_PARAM_construct_int(OSSL_OBJECT_PARAM_TYPE, &type);
    params[1] =
        OSSL_PARAM_construct_octet_string(OSSL_OBJECT_PARAM_DATA, der, (size_t) len);
    params[2] = OSSL_PARAM_construct_utf8_string(OSSL_OBJECT_PARAM_DATA_STRUCTURE,
                                                 P11M_PEMURI_STRUCTURE, 0);
    params[3] = OSSL_PARAM_construct_end();
    ok = data_cb(params, data_cbarg);
done:
    OPENSSL_free(name);
    OPENSSL_free(header);
    OPENSSL_free(der);
    BIO_free(in);
    return ok;
}

/* Reads the whole (small) DER input. */
static long dec_read_all(BIO *in, unsigned char *buf, size_t cap)
{
    size_t n = 0;
    int r;

    while (n < cap && (r = BIO_read(in, buf + n, (int) (cap - n))) > 0)
        n += (size_t) r;
    return n < cap ? (long) n : -1;
}

/* Stage 2, DER of the URI wrapper to a key reference for our keymgmt. */
static int dec_der_decode(void *vctx, OSSL_CORE_BIO *cin, int selection,
                          OSSL_CALLBACK *data_cb, void *data_cbarg,
                          OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_cbarg)
{
    P11M_PROV *prov = vctx;
    BIO *in = BIO_new_from_core_bio(prov->libctx, cin);
    unsigned char der[8192];
    char *uri = NULL;
    long len;
    P11M_KEY *key = NULL;
    int ok = 1;
    P11M_PROV_PW pw = {pw_cb, pw_cbarg};

    if (in == NULL)
        return 0;
    if (selection != 0 && !(selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY))
        goto done; /* only private keys are wrapped this way */
    len = dec_read_all(in, der, sizeof(der));
    if (len <= 0 || !p11m_pemuri_parse(der, len, &uri))
        goto done; /* not a URI wrapper: not ours */
    if ((key = dec_load(prov, uri, &pw)) == NULL) {
        ok = 0;
        goto done;
    }
    ok = p11m_key_pass(key, data_cb, data_cbarg);
done:
    p11m_key_free(key);
    free(uri);
    BIO_free(in);
    return ok;
}

const OSSL_DISPATCH p11m_pem_decoder_functions[] = {
    {OSSL_FUNC_DECODER_NEWCTX, (void (*)(void)) dec_newctx},
    {OSSL_FUNC_DECODER_FREECTX, (void (*)(void)) dec_freectx},
    {OSSL_FUNC_DECODER_DECODE, (void (*)(void)) dec_pem_decode},
    {0, NULL},
};

const OSSL_DISPATCH p11m_der_decoder_functions[] = {
    {OSSL_FUNC_DECODER_NEWCTX, (void (*)(void)) dec_newctx},
    {OSSL_FUNC_DECODER_FREECTX, (void (*)(void)) dec_freectx},
    {OSSL_FUNC_DECODER_DECODE, (void (*)(void)) dec_der_decode},
    {0, NULL},
};
