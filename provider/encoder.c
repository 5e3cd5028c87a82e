/*
 * encoder.c - token keys as text: the object's URI, then its public half as OpenSSL
 * prints it. Only keys on a token are taken; everything else goes to other encoders.
 */
#include <stdlib.h>

#include <openssl/encoder.h>

#include "provider.h"

static OSSL_FUNC_encoder_newctx_fn enc_newctx;
static OSSL_FUNC_encoder_freectx_fn enc_freectx;
static OSSL_FUNC_encoder_encode_fn enc_encode;

static void *enc_newctx(void *provctx)
{
    return provctx;
}

static void enc_freectx(void *ctx)
{
    (void) ctx;
}

static int enc_print_public(EVP_PKEY *pub, BIO *out)
{
    OSSL_ENCODER_CTX *ectx = OSSL_ENCODER_CTX_new_for_pkey(
        pub, OSSL_KEYMGMT_SELECT_PUBLIC_KEY | OSSL_KEYMGMT_SELECT_ALL_PARAMETERS, "TEXT",
        NULL, P11M_NOT_US);
    int ok = ectx != NULL && OSSL_ENCODER_to_bio(ectx, out);

    OSSL_ENCODER_CTX_free(ectx);
    return ok;
}

static int enc_encode(void *vctx, OSSL_CORE_BIO *cout, const void *obj_raw,
                      const OSSL_PARAM obj_abstract[], int selection,
                      OSSL_PASSPHRASE_CALLBACK *cb, void *cbarg)
{
    P11M_PROV *prov = vctx;
    const P11M_KEY *key = obj_raw;
    BIO *out;
    char *uri;
    int ok;

    (void) obj_abstract;
    (void) selection;
    (void) cb;
    (void) cbarg;
    if (key == NULL || key->obj == NULL || key->pub == NULL)
        return 0;
    if ((out = BIO_new_from_core_bio(prov->libctx, cout)) == NULL)
        return 0;
    uri = p11m_obj_uri(key->obj);
    ok = BIO_printf(out, "%s %s key on a PKCS#11 token\nURI: %s\n",
                    p11m_key_is_private(key) ? "Private" : "Public",
                    p11m_key_type_name(key->type), uri != NULL ? uri : "(none)") > 0 &&
         enc_print_public(key->pub, out);
    free(uri);
    BIO_free(out);
    return ok;
}

const OSSL_DISPATCH p11m_text_encoder_functions[] = {
    {OSSL_FUNC_ENCODER_NEWCTX, (void (*)(void)) enc_newctx},
    {OSSL_FUNC_ENCODER_FREECTX, (void (*)(void)) enc_freectx},
    {OSSL_FUNC_ENCODER_ENCODE, (void (*)(void)) enc_encode},
    {0, NULL},
};
