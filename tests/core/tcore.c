/*
 * tcore.c - the PKCS#11 core used directly, against the fixture's SoftHSM2 token
 * (SOFTHSM2_CONF set by the calling script; module: p11-kit's proxy, the default).
 *
 *   tcore PINFILE BADPINFILE
 *
 * TAP output. Signatures are verified with OpenSSL against the public key attributes.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dlfcn.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/sha.h>

#include "p11m.h"

static int n_tests, n_failed;

static void t_ok(int ok, const char *fmt, ...)
{
    va_list ap;

    printf("%s %d - ", ok ? "ok" : "not ok", ++n_tests);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    if (!ok) {
        int reason;
        const char *msg = p11m_last_error(&reason);

        printf("# last core error: %s: %s\n", p11m_reason_string(reason), msg);
        n_failed++;
    }
}

struct first {
    P11M_OBJ *obj;
};

static int take_first(P11M_OBJ *obj, void *arg)
{
    struct first *f = arg;

    if (f->obj == NULL) {
        f->obj = obj;
        return 0;
    }
    p11m_obj_free(obj);
    return 0;
}

static P11M_OBJ *find_one(P11M_MODULE *mod, const char *uri_s, P11M_LOGIN_INFO *li)
{
    P11KitUri *uri = p11m_uri_parse(uri_s);
    P11M_FIND_ARGS args = {uri, (CK_OBJECT_CLASS) -1, li, NULL, 0};
    struct first f = {NULL};

    if (uri == NULL)
        return NULL;
    p11m_obj_find(mod, &args, take_first, &f, NULL);
    p11_kit_uri_free(uri);
    return f.obj;
}

static int count_cb(P11M_OBJ *obj, void *arg)
{
    (*(int *) arg)++;
    p11m_obj_free(obj);
    return 1;
}

/* ECDSA over SHA-256 with the token key, checked against CKA_EC_POINT of its public key.
 */
static int sign_ecdsa_and_verify(P11M_OBJ *key, P11M_OBJ *pub)
{
    unsigned char h[32], sig[132];
    size_t siglen = sizeof(sig), plen, qlen;
    CK_MECHANISM mech = {CKM_ECDSA, NULL, 0};
    const unsigned char *point = p11m_obj_attr(pub, CKA_EC_POINT, &plen);
    const unsigned char *q = point + 2; /* DER OCTET STRING of a P-256 point: 04 41 ... */
    ECDSA_SIG *es = NULL;
    unsigned char *der = NULL;
    EVP_PKEY_CTX *ctx = NULL;
    EVP_PKEY *pk = NULL;
    OSSL_PARAM params[3];
    int ok = 0, derlen;

    qlen = plen - 2;
    SHA256((const unsigned char *) "core", 4, h);
    if (point == NULL || plen != 67 ||
        p11m_sign(key, &mech, h, sizeof(h), sig, &siglen) != CKR_OK)
        return 0;
    es = ECDSA_SIG_new();
    ECDSA_SIG_set0(es, BN_bin2bn(sig, (int) siglen / 2, NULL),
                   BN_bin2bn(sig + siglen / 2, (int) siglen / 2, NULL));
    derlen = i2d_ECDSA_SIG(es, &der);
    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, "P-256", 0);
    params[1] =
        OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, (void *) q, qlen);
    params[2] = OSSL_PARAM_construct_end();
    ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    if (ctx != NULL && EVP_PKEY_fromdata_init(ctx) > 0 &&
        EVP_PKEY_fromdata(ctx, &pk, EVP_PKEY_PUBLIC_KEY, params) > 0) {
        EVP_PKEY_CTX_free(ctx);
        ctx = EVP_PKEY_CTX_new(pk, NULL);
        ok = ctx != NULL && EVP_PKEY_verify_init(ctx) > 0 &&
             EVP_PKEY_verify(ctx, der, (size_t) derlen, h, sizeof(h)) == 1;
    }
    EVP_PKEY_CTX_free(ctx);
    EVP_PKEY_free(pk);
    OPENSSL_free(der);
    ECDSA_SIG_free(es);
    return ok;
}

/* A session logged in as the user: the core's C_Logout on it logs the whole token out. */
static void logout_behind_the_cores_back(P11M_OBJ *key)
{
    P11M_TOKEN *tok = p11m_obj_token(key);
    P11M_MODULE *mod = p11m_token_module(tok);
    CK_SESSION_HANDLE s;

    if (p11m_session_get(tok, &s) == CKR_OK) {
        P11M_CALL(mod, C_Logout, s);
        p11m_session_put(tok, s, CKR_OK);
    }
}

/* An EC key pair with CKA_ALWAYS_AUTHENTICATE on the private half. */
static int make_always_auth_key(P11M_TOKEN *tok)
{
    static const unsigned char p256_oid[] = {0x06, 0x08, 0x2a, 0x86, 0x48,
                                             0xce, 0x3d, 0x03, 0x01, 0x07};
    static const unsigned char id[] = {0x77};
    CK_BBOOL yes = CK_TRUE;
    CK_MECHANISM mech = {CKM_EC_KEY_PAIR_GEN, NULL, 0};
    CK_ATTRIBUTE pub[] = {{CKA_EC_PARAMS, (void *) p256_oid, sizeof(p256_oid)},
                          {CKA_TOKEN, &yes, sizeof(yes)},
                          {CKA_VERIFY, &yes, sizeof(yes)},
                          {CKA_ID, (void *) id, sizeof(id)},
                          {CKA_LABEL, "always", 6}};
    CK_ATTRIBUTE priv[] = {{CKA_TOKEN, &yes, sizeof(yes)},
                           {CKA_PRIVATE, &yes, sizeof(yes)},
                           {CKA_SENSITIVE, &yes, sizeof(yes)},
                           {CKA_SIGN, &yes, sizeof(yes)},
                           {CKA_ALWAYS_AUTHENTICATE, &yes, sizeof(yes)},
                           {CKA_ID, (void *) id, sizeof(id)},
                           {CKA_LABEL, "always", 6}};
    CK_OBJECT_HANDLE hpub, hpriv;
    CK_SESSION_HANDLE s;
    CK_RV rv;

    if (p11m_session_open_rw(tok, &s) != CKR_OK)
        return 0;
    rv = P11M_CALL(p11m_token_module(tok), C_GenerateKeyPair, s, &mech, pub, 5, priv, 7,
                   &hpub, &hpriv);
    p11m_session_close(tok, s);
    return rv == CKR_OK;
}

static void test_pin_sources(const char *pinfile)
{
    P11M_PIN pin;
    char spec[] = "file:/tmp/tcore-pin-XXXXXX", *path = spec + 5;
    FILE *f;
    int fd;

    t_ok(p11m_pin_source_valid(pinfile) && p11m_pin_load(pinfile, &pin) == CKR_OK,
         "pin source: file:/ABSOLUTE/PATH is read");
    p11m_pin_cleanse(&pin);
    t_ok(!p11m_pin_source_valid(pinfile + 5) &&
             p11m_pin_load(pinfile + 5, &pin) != CKR_OK &&
             !p11m_pin_source_valid("file:pin.txt"),
         "pin source: a bare path and a relative file: path are refused");
    t_ok(!p11m_pin_source_valid("nonsense:x") && !p11m_pin_source_valid("file:") &&
             p11m_pin_source_valid("env:X") && p11m_pin_source_valid("file:/x"),
         "pin source: syntax checks");
    setenv("TCORE_PIN", "4321", 1);
    t_ok(p11m_pin_load("env:TCORE_PIN", &pin) == CKR_OK && pin.len == 4 &&
             memcmp(pin.buf, "4321", 4) == 0,
         "pin source: env:NAME");
    p11m_pin_cleanse(&pin);
    t_ok(pin.len == 0 && pin.buf[0] == '\0', "pin buffer cleansed");
    t_ok(p11m_pin_load("env:TCORE_NO_SUCH_VARIABLE", &pin) != CKR_OK,
         "pin source: unset variable refused");
    fd = mkstemp(path);
    f = fdopen(fd, "w");
    fputs("1234\n", f);
    fclose(f);
    chmod(path, 0644);
    t_ok(p11m_pin_load(spec, &pin) != CKR_OK &&
             strstr(p11m_last_error(NULL), "accessible by group or others") != NULL,
         "pin source: a file readable by others is refused");
    chmod(path, 0600);
    t_ok(p11m_pin_load(spec, &pin) == CKR_OK && pin.len == 4,
         "pin source: a private file is read, newline dropped");
    p11m_pin_cleanse(&pin);
    remove(path);
}

static void test_uris(void)
{
    P11KitUri *uri;
    char *r;

    t_ok(p11m_uri_parse("file:/etc/passwd") == NULL &&
             strstr(p11m_last_error(NULL), "not a pkcs11: URI") != NULL,
         "uri: other schemes refused");
    t_ok(p11m_uri_parse("pkcs11:token=a;nosuch=b") == NULL &&
             strstr(p11m_last_error(NULL), "unknown attribute") != NULL,
         "uri: unknown attribute named");
    t_ok(p11m_uri_parse("pkcs11:id=%zz") == NULL, "uri: bad percent-encoding refused");
    uri = p11m_uri_parse(
        "pkcs11:token=a%20b;id=%01%02?pin-source=file:/p&module-path=/m.so");
    t_ok(uri != NULL && strcmp(p11_kit_uri_get_pin_source(uri), "file:/p") == 0 &&
             strcmp(p11_kit_uri_get_module_path(uri), "/m.so") == 0,
         "uri: query attributes pin-source and module-path");
    if (uri != NULL)
        p11_kit_uri_free(uri);
    r = p11m_uri_redact("pkcs11:token=a?pin-value=1&pin-value=secret99");
    t_ok(r != NULL && strstr(r, "secret99") == NULL && strstr(r, "pin-value=1") == NULL,
         "uri: pin-value redacted for logs (%s)", r != NULL ? r : "NULL");
    free(r);
}

/* A module the program initialised itself, before the core: its session must survive
 * everything the core does. */
static CK_FUNCTION_LIST *app_module(const char *path, CK_SESSION_HANDLE *sess)
{
    CK_FUNCTION_LIST *fl = NULL;
    CK_C_GetFunctionList get;
    CK_SLOT_ID slots[8];
    CK_ULONG n = 8;
    void *dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);

    if (dl == NULL ||
        (get = (CK_C_GetFunctionList) dlsym(dl, "C_GetFunctionList")) == NULL ||
        get(&fl) != CKR_OK || fl->C_Initialize(NULL) != CKR_OK ||
        fl->C_GetSlotList(CK_TRUE, slots, &n) != CKR_OK || n == 0 ||
        fl->C_OpenSession(slots[0], CKF_SERIAL_SESSION, NULL, NULL, sess) != CKR_OK)
        return NULL;
    return fl;
}

int main(int argc, char **argv)
{
    P11M_LOGIN_INFO li = {NULL, NULL, NULL, NULL}, bad = {NULL, NULL, NULL, NULL};
    CK_FUNCTION_LIST *app;
    CK_SESSION_HANDLE app_sess = CK_INVALID_HANDLE;
    CK_SESSION_INFO app_si;
    P11M_MODULE *mod;
    P11M_OBJ *key, *pub, *aa_key, *aa_pub;
    P11KitUri *uri;
    P11M_FIND_ARGS args;
    P11M_TOKEN_LIST list;
    unsigned long logins;
    int n = 0;
    size_t found = 0;

    if (argc != 3) {
        fprintf(stderr, "usage: tcore PINFILE BADPINFILE\n");
        return 2;
    }
    li.pin_source = argv[1];
    bad.pin_source = argv[2];
    test_pin_sources(argv[1]);
    test_uris();

    /* SoftHSM2 answers a second C_Initialize with ALREADY_INITIALIZED: shared, never
     * finalised by the core. p11-kit's proxy counts initialisations: finalising once
     * more than we initialised never ends the program's use of it. */
    app = app_module(SOFTHSM_MODULE, &app_sess);
    t_ok(app != NULL, "setup: the program initialised SoftHSM2 itself first");
    mod = p11m_module_get(SOFTHSM_MODULE, NULL);
    t_ok(mod != NULL && !p11m_module_reinit(mod),
         "module: one the program initialised first is never finalised by us");
    t_ok(app != NULL && app->C_GetSessionInfo(app_sess, &app_si) == CKR_OK,
         "... and the program's own session is still valid");
    app = app_module(P11KIT_PROXY, &app_sess);
    mod = p11m_module_get(NULL, NULL);
    t_ok(mod != NULL, "module: p11-kit's proxy loads as the default");
    t_ok(app != NULL && mod != NULL && p11m_module_reinit(mod) &&
             app->C_GetSessionInfo(app_sess, &app_si) == CKR_OK,
         "module: re-initialising the proxy leaves the program's session valid");
    t_ok(p11m_module_get("/nonexistent/module.so", NULL) == NULL &&
             strstr(p11m_last_error(NULL), "/nonexistent/module.so") != NULL,
         "module: a missing module is named in the error");
    uri = p11m_uri_parse("pkcs11:token=p11mtls-test");
    t_ok(p11m_token_list_fill(mod, uri, &list) == CKR_OK && list.n == 1,
         "token: found by label");
    p11m_token_list_free(&list);
    memset(&args, 0, sizeof(args));
    args.uri = uri;
    args.cls = (CK_OBJECT_CLASS) -1;
    n = 0;
    if (p11m_obj_find(mod, &args, count_cb, &n, &found) != CKR_OK || found != (size_t) n)
        n = -1;
    t_ok(n == 10, "objects: 5 certificates and 5 public keys without login (%d)", n);
    t_ok(p11m_login_count() == 0, "objects: no C_Login for public objects");
    p11_kit_uri_free(uri);

    key = find_one(mod, "pkcs11:token=p11mtls-test;object=p256;type=private", &li);
    pub = find_one(mod, "pkcs11:token=p11mtls-test;object=p256;type=public", NULL);
    t_ok(key != NULL && pub != NULL && p11m_obj_class(key) == CKO_PRIVATE_KEY &&
             p11m_obj_key_type(key) == CKK_EC,
         "objects: the p256 private key is found, still without login");
    t_ok(key != NULL && pub != NULL && sign_ecdsa_and_verify(key, pub),
         "sign: ECDSA on the token through the core verifies");
    logins = p11m_login_count();
    t_ok(logins == 1, "sign: exactly one C_Login so far (%lu)", logins);
    t_ok(key != NULL && pub != NULL && sign_ecdsa_and_verify(key, pub) &&
             p11m_login_count() == logins,
         "sign: a second signature needs no new login");

    logout_behind_the_cores_back(key);
    t_ok(key != NULL && pub != NULL && sign_ecdsa_and_verify(key, pub),
         "sign: after the token logged us out, the core logs in again and signs");
    t_ok(p11m_login_count() == logins + 1, "... with one more C_Login");

    t_ok(make_always_auth_key(p11m_obj_token(key)),
         "setup: key with CKA_ALWAYS_AUTHENTICATE");
    aa_key = find_one(mod, "pkcs11:token=p11mtls-test;object=always;type=private", &li);
    aa_pub = find_one(mod, "pkcs11:token=p11mtls-test;object=always;type=public", NULL);
    t_ok(aa_key != NULL && p11m_obj_always_authenticate(aa_key),
         "always-authenticate: flag read from the key");
    logins = p11m_login_count();
    t_ok(aa_key != NULL && aa_pub != NULL && sign_ecdsa_and_verify(aa_key, aa_pub) &&
             sign_ecdsa_and_verify(aa_key, aa_pub),
         "always-authenticate: two signatures, each after a context-specific login");
    t_ok(p11m_login_count() == logins + 2, "... two context-specific C_Login calls (%lu)",
         p11m_login_count() - logins);
    p11m_obj_free(aa_key);

    /* Found before login, the key stands in for its public half: the flag must still be
     * learnt when its handle is looked up. */
    logout_behind_the_cores_back(key);
    p11m_login_lost(p11m_obj_token(key));
    aa_key = find_one(mod, "pkcs11:token=p11mtls-test;object=always;type=private", &li);
    logins = p11m_login_count();
    t_ok(aa_key != NULL && aa_pub != NULL && sign_ecdsa_and_verify(aa_key, aa_pub) &&
             p11m_obj_always_authenticate(aa_key),
         "always-authenticate: a key found before login signs with a context login");
    t_ok(p11m_login_count() == logins + 2,
         "... one user and one context-specific C_Login (%lu)",
         p11m_login_count() - logins);
    p11m_obj_free(aa_key);
    p11m_obj_free(aa_pub);
    sleep(1); /* re-initialisation is rate-limited to once a second */
    t_ok(p11m_module_reinit(mod) == 1,
         "read-write sessions leave the module lock balanced (re-init can take it)");

    /* Last, as it leaves the token's PIN refused for the rest of this process. */
    p11m_obj_free(key);
    key = find_one(mod, "pkcs11:token=p11mtls-test;object=p256;type=private", &bad);
    logout_behind_the_cores_back(key);
    logins = p11m_login_count();
    t_ok(key != NULL && !sign_ecdsa_and_verify(key, pub) &&
             strstr(p11m_last_error(NULL), "refused the PIN") != NULL,
         "wrong PIN: signing fails with the reason");
    t_ok(!sign_ecdsa_and_verify(key, pub) && !sign_ecdsa_and_verify(key, pub) &&
             p11m_login_count() == logins + 1,
         "wrong PIN: three signatures, one C_Login (%lu)", p11m_login_count() - logins);
    p11m_obj_free(key);
    p11m_obj_free(pub);

    printf("1..%d\n", n_tests);
    return n_failed != 0;
}
