/*
 * tkeycache.c - session copies of private keys (provider/p11/keycache.c), against the
 * fixture's SoftHSM2 token through p11-kit's proxy.
 *
 *   tkeycache PIN-SOURCE TOKENDIR LOGFILE
 *
 * What the token holds is counted from outside the core's cache: session objects found
 * with C_FindObjects (CKA_TOKEN = false), their attributes read back. Which handle each
 * signature used, and every C_CopyObject, come from the core's level-2 log (LOGFILE,
 * lines of this process only). Signatures are verified with OpenSSL. TAP output.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/sha.h>

#include "p11m.h"

static int n_tests, n_failed;
static const char *log_path;

static void t_ok(int ok, const char *fmt, ...)
{
    va_list ap;

    printf("%s %d - ", ok ? "ok" : "not ok", ++n_tests);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
    if (!ok) {
        int reason;
        const char *msg = p11m_last_error(&reason);

        printf("# last core error: %s: %s\n", p11m_reason_string(reason), msg);
        n_failed++;
    }
}

/* Lines of this process's log containing needle; *last gets the last one. */
static int log_count(const char *needle, char *last, size_t lastlen)
{
    char prefix[32], line[1024];
    FILE *f = fopen(log_path, "r");
    int n = 0;

    snprintf(prefix, sizeof(prefix), "p11mtls[%d]: ", (int) getpid());
    if (last != NULL)
        last[0] = '\0';
    if (f == NULL)
        return -1;
    while (fgets(line, sizeof(line), f) != NULL) {
        if (strncmp(line, prefix, strlen(prefix)) != 0 || strstr(line, needle) == NULL)
            continue;
        n++;
        if (last != NULL)
            snprintf(last, lastlen, "%s", line);
    }
    fclose(f);
    return n;
}

static int copies_made(void)
{
    return log_count("C_CopyObject(", NULL, 0);
}

/* Whether the last signature with key label used its session copy (1), the token
 * object (0), or is not in the log (-1). */
static int last_sign_used_copy(const char *label)
{
    char needle[64], last[1024];

    snprintf(needle, sizeof(needle), "signing with '%s'", label);
    if (log_count(needle, last, sizeof(last)) <= 0)
        return -1;
    return strstr(last, "session copy") != NULL;
}

static int take_first(P11M_OBJ *obj, void *arg)
{
    P11M_OBJ **out = arg;

    if (*out == NULL)
        *out = obj;
    else
        p11m_obj_free(obj);
    return 0;
}

static P11M_OBJ *find_one(P11M_MODULE *mod, const char *label, const char *type,
                          P11M_LOGIN_INFO *li)
{
    char s[256];
    P11KitUri *uri;
    P11M_FIND_ARGS args = {NULL, (CK_OBJECT_CLASS) -1, li, NULL, 0};
    P11M_OBJ *obj = NULL;

    snprintf(s, sizeof(s), "pkcs11:token=p11mtls-test;object=%s;type=%s", label, type);
    if ((uri = p11m_uri_parse(s)) == NULL)
        return NULL;
    args.uri = uri;
    p11m_obj_find(mod, &args, take_first, &obj, NULL);
    p11_kit_uri_free(uri);
    return obj;
}

static int count_cb(P11M_OBJ *obj, void *arg)
{
    (*(int *) arg)++;
    p11m_obj_free(obj);
    return 1;
}

/* How many private keys a search by label finds (the copy must not be one of them). */
static int count_private(P11M_MODULE *mod, const char *label, P11M_LOGIN_INFO *li)
{
    char s[256];
    P11M_FIND_ARGS args = {NULL, CKO_PRIVATE_KEY, li, NULL, 0};
    int n = 0;

    snprintf(s, sizeof(s), "pkcs11:token=p11mtls-test;object=%s", label);
    if ((args.uri = p11m_uri_parse(s)) == NULL)
        return -1;
    if (p11m_obj_find(mod, &args, count_cb, &n, NULL) != CKR_OK)
        n = -1;
    p11_kit_uri_free(args.uri);
    return n;
}

/* Private key objects with CKA_TOKEN = false this process sees: the copies. Up to 8
 * handles in h. -1 on error. */
static int session_keys(P11M_TOKEN *tok, CK_OBJECT_HANDLE *h)
{
    P11M_MODULE *mod = p11m_token_module(tok);
    CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
    CK_BBOOL no = CK_FALSE;
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof(cls)}, {CKA_TOKEN, &no, sizeof(no)}};
    CK_SESSION_HANDLE s;
    CK_ULONG n = 0;
    CK_RV rv;

    if (p11m_session_get(tok, &s) != CKR_OK)
        return -1;
    rv = P11M_CALL(mod, C_FindObjectsInit, s, t, 2);
    if (rv == CKR_OK) {
        rv = P11M_CALL(mod, C_FindObjects, s, h, 8, &n);
        P11M_CALL(mod, C_FindObjectsFinal, s);
    }
    p11m_session_put(tok, s, rv);
    return rv == CKR_OK ? (int) n : -1;
}

/* The copy as the token shows it: not on the token, private, sensitive, not
 * extractable, and its key value refused. */
static int copy_is_secret(P11M_TOKEN *tok, CK_OBJECT_HANDLE h)
{
    P11M_MODULE *mod = p11m_token_module(tok);
    CK_BBOOL v[4];
    CK_ATTRIBUTE t[] = {{CKA_TOKEN, &v[0], 1},
                        {CKA_PRIVATE, &v[1], 1},
                        {CKA_SENSITIVE, &v[2], 1},
                        {CKA_EXTRACTABLE, &v[3], 1}};
    unsigned char val[512];
    CK_ATTRIBUTE secret = {CKA_VALUE, val, sizeof(val)};
    CK_SESSION_HANDLE s;
    CK_RV rv, rv_val = CKR_OK;

    if (p11m_session_get(tok, &s) != CKR_OK)
        return 0;
    rv = P11M_CALL(mod, C_GetAttributeValue, s, h, t, 4);
    if (rv == CKR_OK)
        rv_val = P11M_CALL(mod, C_GetAttributeValue, s, h, &secret, 1);
    p11m_session_put(tok, s, CKR_OK);
    printf("# copy %lu: token=%d private=%d sensitive=%d extractable=%d, CKA_VALUE: %s\n",
           (unsigned long) h, v[0], v[1], v[2], v[3], p11m_ckr_name(rv_val));
    return rv == CKR_OK && v[0] == CK_FALSE && v[1] == CK_TRUE && v[2] == CK_TRUE &&
           v[3] == CK_FALSE && rv_val == CKR_ATTRIBUTE_SENSITIVE;
}

/* ECDSA P-256 over SHA-256 with key, verified against the EC point of pub. */
static int sign_ecdsa(P11M_OBJ *key, P11M_OBJ *pub)
{
    unsigned char h[32], sig[132];
    size_t siglen = sizeof(sig), plen;
    CK_MECHANISM mech = {CKM_ECDSA, NULL, 0};
    const unsigned char *point =
        pub != NULL ? p11m_obj_attr(pub, CKA_EC_POINT, &plen) : NULL;
    ECDSA_SIG *es = NULL;
    unsigned char *der = NULL;
    EVP_PKEY_CTX *ctx = NULL;
    EVP_PKEY *pk = NULL;
    OSSL_PARAM params[3];
    int ok = 0, derlen;

    SHA256((const unsigned char *) "keycache", 8, h);
    if (key == NULL || point == NULL || plen != 67 ||
        p11m_sign(key, &mech, h, sizeof(h), sig, &siglen) != CKR_OK || siglen != 64)
        return 0;
    es = ECDSA_SIG_new();
    ECDSA_SIG_set0(es, BN_bin2bn(sig, 32, NULL), BN_bin2bn(sig + 32, 32, NULL));
    derlen = i2d_ECDSA_SIG(es, &der);
    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, "P-256", 0);
    params[1] = OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY,
                                                  (void *) (point + 2), plen - 2);
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

/* PKCS#1 v1.5 signature of a SHA-256 DigestInfo (not verified: the ECDSA ones are). */
static int sign_rsa(P11M_OBJ *key)
{
    unsigned char in[51] = {0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01,
                            0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20},
                  sig[512];
    size_t siglen = sizeof(sig);
    CK_MECHANISM mech = {CKM_RSA_PKCS, NULL, 0};

    return key != NULL && p11m_sign(key, &mech, in, sizeof(in), sig, &siglen) == CKR_OK &&
           siglen == 256;
}

/* A P-256 key pair labelled label; the private half with copyable and always_auth as
 * given. */
static int make_key(P11M_TOKEN *tok, const char *label, unsigned char id,
                    CK_BBOOL copyable, CK_BBOOL always_auth)
{
    static const unsigned char p256_oid[] = {0x06, 0x08, 0x2a, 0x86, 0x48,
                                             0xce, 0x3d, 0x03, 0x01, 0x07};
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    CK_MECHANISM mech = {CKM_EC_KEY_PAIR_GEN, NULL, 0};
    CK_ULONG ll = strlen(label);
    CK_ATTRIBUTE pub[] = {{CKA_EC_PARAMS, (void *) p256_oid, sizeof(p256_oid)},
                          {CKA_TOKEN, &yes, 1},
                          {CKA_VERIFY, &yes, 1},
                          {CKA_ID, &id, 1},
                          {CKA_LABEL, (void *) label, ll}};
    CK_ATTRIBUTE priv[] = {{CKA_TOKEN, &yes, 1},
                           {CKA_PRIVATE, &yes, 1},
                           {CKA_SENSITIVE, &yes, 1},
                           {CKA_EXTRACTABLE, &no, 1},
                           {CKA_SIGN, &yes, 1},
                           {CKA_ID, &id, 1},
                           {CKA_LABEL, (void *) label, ll},
                           {CKA_COPYABLE, &copyable, 1},
                           {CKA_ALWAYS_AUTHENTICATE, &always_auth, 1}};
    CK_OBJECT_HANDLE hpub, hpriv;
    CK_SESSION_HANDLE s;
    CK_RV rv;

    if (p11m_session_open_rw(tok, &s) != CKR_OK)
        return 0;
    rv = P11M_CALL(p11m_token_module(tok), C_GenerateKeyPair, s, &mech, pub, 5, priv, 9,
                   &hpub, &hpriv);
    p11m_session_close(tok, s);
    return rv == CKR_OK;
}

static void logout_behind_the_cores_back(P11M_TOKEN *tok)
{
    CK_SESSION_HANDLE s;

    if (p11m_session_get(tok, &s) == CKR_OK) {
        P11M_CALL(p11m_token_module(tok), C_Logout, s);
        p11m_session_put(tok, s, CKR_OK);
    }
}

/* In a child: signs with the parent's key object, which finds its copy gone with the
 * parent's module state and makes its own. Exit status: number of failed checks. */
static int child_checks(P11M_OBJ *key, P11M_OBJ *pub, int parent_keys)
{
    CK_OBJECT_HANDLE h[8];
    int signed_ok = sign_ecdsa(key, pub) && sign_ecdsa(key, pub);
    int made = copies_made(), used = last_sign_used_copy("p256");
    int n = session_keys(p11m_obj_token(key), h);

    printf("# child: signed %d, C_CopyObject %d, used copy %d, session keys %d\n",
           signed_ok, made, used, n);
    fflush(stdout);
    /* SoftHSM2 in the child still lists the session objects of the parent's memory
     * (without the core, the parent's sessions are inherited the same way). */
    return !signed_ok + (made != 1) + (used != 1) + (n != parent_keys + 1);
}

static int sign_until(P11M_OBJ *key, P11M_OBJ *pub, int want_ok, int tries)
{
    for (int i = 0; i < tries; i++) {
        if (sign_ecdsa(key, pub) == want_ok)
            return 1;
        usleep(300 * 1000);
    }
    return 0;
}

int main(int argc, char **argv)
{
    P11M_LOGIN_INFO li = {NULL, NULL, NULL, NULL};
    CK_OBJECT_HANDLE h[8];
    P11M_MODULE *mod;
    P11M_OBJ *key, *pub, *rsa, *nc, *nc_pub, *aa, *aa_pub;
    P11M_TOKEN *tok;
    char away[4200];
    int n, ok, made, status;
    pid_t pid;

    if (argc != 4) {
        fprintf(stderr, "usage: tkeycache PIN-SOURCE TOKENDIR LOGFILE\n");
        return 2;
    }
    li.pin_source = argv[1];
    log_path = argv[3];
    snprintf(away, sizeof(away), "%s.away", argv[2]);
    if (!p11m_log_setup(2, log_path)) {
        fprintf(stderr, "tkeycache: cannot log to %s\n", log_path);
        return 2;
    }

    mod = p11m_module_get(NULL, NULL);
    key = find_one(mod, "p256", "private", &li);
    pub = find_one(mod, "p256", "public", NULL);
    t_ok(key != NULL && pub != NULL, "setup: the p256 key pair is found");
    tok = key != NULL ? p11m_obj_token(key) : NULL;
    if (tok == NULL)
        return 1;

    /* Off until configured: the tool and other core users sign with the token object. */
    t_ok(sign_ecdsa(key, pub) && copies_made() == 0 && last_sign_used_copy("p256") == 0,
         "off by default in the core: no C_CopyObject, the token object signs");
    p11m_keycache_configure(1);
    t_ok(p11m_keycache_enabled(), "configured on");

    t_ok(sign_ecdsa(key, pub), "ECDSA signature verifies");
    t_ok(copies_made() == 1, "one C_CopyObject (%d)", copies_made());
    t_ok(last_sign_used_copy("p256") == 1, "the signature used the session copy");
    n = session_keys(tok, h);
    t_ok(n == 1, "the token holds one session private key (%d)", n);
    t_ok(n == 1 && copy_is_secret(tok, h[0]),
         "the copy is a session object, private, sensitive, not extractable; its "
         "CKA_VALUE is refused");

    ok = 1;
    for (int i = 0; i < 20; i++)
        ok &= sign_ecdsa(key, pub);
    for (int i = 0; i < 5; i++) { /* the key loaded again and again, as programs do */
        P11M_OBJ *again = find_one(mod, "p256", "private", &li);

        ok &= sign_ecdsa(again, pub);
        p11m_obj_free(again);
    }
    t_ok(ok, "25 more signatures verify, 5 of them with the key loaded anew");
    t_ok(count_private(mod, "p256", &li) == 1,
         "with the copy on the token, a search for the key still finds one object");
    t_ok(copies_made() == 1 && session_keys(tok, h) == 1,
         "... still one C_CopyObject, one session key: no copy per load");
    t_ok(log_count("session copy", NULL, 0) == 26 + 1,
         "... every signature since configuring used the copy (%d)",
         log_count("session copy", NULL, 0));

    rsa = find_one(mod, "rsa2048", "private", &li);
    t_ok(sign_rsa(rsa) && last_sign_used_copy("rsa2048") == 1 && copies_made() == 2 &&
             session_keys(tok, h) == 2,
         "an RSA key gets its own copy: two session keys");

    t_ok(make_key(tok, "nocopy", 0x61, CK_FALSE, CK_FALSE),
         "setup: a key pair with CKA_COPYABLE = false");
    nc = find_one(mod, "nocopy", "private", &li);
    nc_pub = find_one(mod, "nocopy", "public", NULL);
    t_ok(sign_ecdsa(nc, nc_pub) && sign_ecdsa(nc, nc_pub),
         "the non-copyable key signs (twice), verified");
    t_ok(last_sign_used_copy("nocopy") == 0 && copies_made() == 2 &&
             session_keys(tok, h) == 2,
         "... with the token object: no C_CopyObject tried, no new session key");
    t_ok(log_count("not copyable", NULL, 0) == 1, "... the log says why, once");

    t_ok(make_key(tok, "always2", 0x62, CK_TRUE, CK_TRUE),
         "setup: a copyable key pair with CKA_ALWAYS_AUTHENTICATE");
    aa = find_one(mod, "always2", "private", &li);
    aa_pub = find_one(mod, "always2", "public", NULL);
    t_ok(sign_ecdsa(aa, aa_pub) && sign_ecdsa(aa, aa_pub),
         "the always-authenticate key signs (twice), verified");
    t_ok(last_sign_used_copy("always2") == 0 && copies_made() == 2 &&
             session_keys(tok, h) == 2,
         "... with the token object: no copy of an always-authenticate key");

    /* A logout destroys private session objects: the next signature logs in again and
     * copies again. */
    logout_behind_the_cores_back(tok);
    t_ok(session_keys(tok, h) == 0, "after a logout the token holds no session key");
    t_ok(sign_ecdsa(key, pub) && last_sign_used_copy("p256") == 1 && copies_made() == 3,
         "after the re-login the key is copied again and the copy signs");
    t_ok(session_keys(tok, h) == 1, "... one session key (%d)", session_keys(tok, h));

    n = session_keys(tok, h);
    fflush(stdout);
    pid = fork();
    if (pid == 0)
        _exit(child_checks(key, pub, n));
    status = -1;
    if (pid > 0 && waitpid(pid, &status, 0) != pid)
        status = -1;
    printf("# child: wait status 0x%x\n", (unsigned) status);
    t_ok(status == 0,
         "a forked child signs with a copy of its own: verified, one C_CopyObject, one "
         "session key more than the parent's");
    made = copies_made();
    t_ok(sign_ecdsa(key, pub) && last_sign_used_copy("p256") == 1 && made == 3 &&
             session_keys(tok, h) == 1,
         "the parent keeps signing with its own copy");

    /* SoftHSM2's token taken away (its directory) and put back, as in provider-faults. */
    /* SoftHSM2 notices a missing directory only when it reads a token object, so the
     * non-copyable key goes first; the core then re-initialises the module, which ends
     * every session and with them the copy. */
    t_ok(rename(argv[2], away) == 0 && sign_until(nc, nc_pub, 0, 10),
         "token removed: signing with a token object fails");
    sleep(1);
    t_ok(sign_until(key, pub, 0, 10), "... and with the key whose copy was in use");
    t_ok(rename(away, argv[2]) == 0, "token put back");
    sleep(1); /* the core re-initialises the module at most once a second */
    t_ok(sign_until(key, pub, 1, 10), "signing works again");
    t_ok(last_sign_used_copy("p256") == 1 && copies_made() == made + 1,
         "... with a new copy (C_CopyObject %d -> %d)", made, copies_made());
    n = session_keys(tok, h);
    t_ok(n == 1 && copy_is_secret(tok, h[0]), "... one session key, as secret (%d)", n);

    /* Off: a copy already made is not used any more, none is made. */
    p11m_keycache_configure(0);
    p11m_keycache_configure(1);
    made = copies_made();
    t_ok(!p11m_keycache_enabled(), "configured off once: stays off");
    t_ok(sign_ecdsa(key, pub) && sign_rsa(rsa), "signatures with the cache off");
    t_ok(last_sign_used_copy("p256") == 0 && last_sign_used_copy("rsa2048") == 0 &&
             copies_made() == made && session_keys(tok, h) == 1,
         "... used the token objects; no C_CopyObject");

    p11m_obj_free(aa);
    p11m_obj_free(aa_pub);
    p11m_obj_free(nc);
    p11m_obj_free(nc_pub);
    p11m_obj_free(rsa);
    p11m_obj_free(key);
    p11m_obj_free(pub);
    printf("1..%d\n", n_tests);
    return n_failed != 0;
}
