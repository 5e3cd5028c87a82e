/*
 * sign.c - signing contenders: the token itself (raw PKCS#11 through the core), the
 * p11mtls provider through EVP_DigestSign, and an in-memory key in OpenSSL's default
 * provider. (The libp11 engine is in engine.c.)
 *
 *   raw      C_SignInit + C_Sign, nothing else, on a session of the thread's own taken
 *            once from the core's pool. The mechanism is the one the provider picks:
 *            the token's combined hash-and-sign mechanism when it lists one (the input
 *            is then the message), else the raw one over a hash computed once, before
 *            timing. This is the limit of the token.
 *   rawcopy  raw, on a session copy of the key (C_CopyObject with CKA_TOKEN = false,
 *            made once in a session kept open): what p11mtls's key cache signs with, and
 *            the limit of a token that signs faster with session objects (SoftHSM2).
 *   rawmech  the raw mechanism (CKM_RSA_PKCS over a DigestInfo, CKM_RSA_PKCS_PSS,
 *            CKM_ECDSA) with SHA-256 computed in software for every signature, as the
 *            provider does for tokens without the combined mechanism and as libp11 does.
 *   prov     EVP_MD_CTX_new, EVP_DigestSignInit_ex, EVP_DigestSign, EVP_MD_CTX_free for
 *            every signature, as libssl does, with the key loaded once through
 *            OSSL_STORE after the provider configuration is loaded.
 *   soft     the same EVP calls on a PEM key in the default provider.
 *
 * With --init-only, prov and soft stop after EVP_DigestSignInit_ex: libcrypto's share of
 * a signature through a provider key, which the instruction counts set apart.
 *
 * RSA-PSS uses SHA-256, MGF1-SHA-256 and a 32-byte salt (what TLS uses) everywhere.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/pem.h>
#include <openssl/store.h>

#include "bench.h"
#include "p11m.h"

enum scheme { S_RSA_PKCS1, S_RSA_PSS, S_ECDSA, S_ED25519 };

static int scheme_of(const char *name, enum scheme *s)
{
    static const char *const names[] = {"rsa-pkcs1", "rsa-pss", "ecdsa", "ed25519"};

    for (int i = 0; i < 4; i++) {
        if (name != NULL && strcmp(name, names[i]) == 0) {
            *s = (enum scheme) i;
            return 1;
        }
    }
    fprintf(stderr, "p11mtls-bench-worker: unknown scheme %s\n", name ? name : "(none)");
    return 0;
}

/* ---- raw PKCS#11 ---- */

/* DER DigestInfo header of a SHA-256 hash (RFC 8017, 9.2 note 1). */
static const unsigned char sha256_di[19] = {0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60,
                                            0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                                            0x01, 0x05, 0x00, 0x04, 0x20};

typedef struct raw {
    P11M_OBJ *key;
    P11M_TOKEN *tok;
    CK_FUNCTION_LIST *fl;
    CK_MECHANISM mech;
    CK_RSA_PKCS_PSS_PARAMS pss;
    int hash_each;         /* rawmech: SHA-256 in software for every signature */
    CK_OBJECT_HANDLE copy; /* rawcopy: the session copy, else CK_INVALID_HANDLE */
    size_t hash_off;       /* where the hash goes in in[] (after a DigestInfo header) */
    EVP_MD *sha256;
    unsigned char in[BENCH_MSG_LEN];
    size_t inlen;
} RAW;

typedef struct raw_thread {
    CK_SESSION_HANDLE sess;
    CK_OBJECT_HANDLE h;
} RAW_THREAD;

static int raw_keep_first(P11M_OBJ *obj, void *arg)
{
    P11M_OBJ **out = arg;

    if (*out == NULL)
        *out = obj;
    else
        p11m_obj_free(obj);
    return 0;
}

static int raw_fail(const char *what)
{
    int reason;
    const char *msg = p11m_last_error(&reason);

    fprintf(stderr, "p11mtls-bench-worker: %s: %s\n", what, msg != NULL ? msg : "failed");
    return 0;
}

static void *raw_thread_new(void *arg, int idx)
{
    RAW *r = arg;
    RAW_THREAD *t = calloc(1, sizeof(*t));

    (void) idx;
    if (t == NULL)
        return NULL;
    if (p11m_session_get(r->tok, &t->sess) != CKR_OK ||
        p11m_obj_handle(r->key, t->sess, &t->h) != CKR_OK) {
        raw_fail("session or key handle");
        free(t);
        return NULL;
    }
    if (r->copy != CK_INVALID_HANDLE)
        t->h = r->copy;
    return t;
}

static int raw_op(void *arg, void *tstate)
{
    RAW *r = arg;
    RAW_THREAD *t = tstate;
    unsigned char in[BENCH_MSG_LEN], sig[1024];
    const unsigned char *p = r->in;
    CK_ULONG siglen = sizeof(sig);
    unsigned int hlen;
    CK_RV rv;

    if (r->hash_each) {
        memcpy(in, r->in, r->hash_off);
        if (!EVP_Digest(bench_msg, BENCH_MSG_LEN, in + r->hash_off, &hlen, r->sha256,
                        NULL))
            return 0;
        p = in;
    }
    rv = r->fl->C_SignInit(t->sess, &r->mech, t->h);
    if (rv == CKR_OK)
        rv = r->fl->C_Sign(t->sess, (CK_BYTE_PTR) p, r->inlen, sig, &siglen);
    if (rv != CKR_OK) {
        fprintf(stderr, "p11mtls-bench-worker: C_SignInit/C_Sign: %s\n",
                p11m_ckr_name(rv));
        return 0;
    }
    return 1;
}

/* The session copy, in a session kept open for the life of the process. */
static int raw_copy_key(RAW *r)
{
    CK_BBOOL no = CK_FALSE;
    CK_ATTRIBUTE tmpl[] = {{CKA_TOKEN, &no, sizeof(no)}};
    CK_SESSION_HANDLE keeper;
    CK_OBJECT_HANDLE h;
    CK_RV rv;

    if (p11m_session_get(r->tok, &keeper) != CKR_OK ||
        p11m_obj_handle(r->key, keeper, &h) != CKR_OK)
        return raw_fail("session or key handle");
    rv = r->fl->C_CopyObject(keeper, h, tmpl, 1, &r->copy);
    if (rv != CKR_OK) {
        fprintf(stderr, "p11mtls-bench-worker: C_CopyObject: %s\n", p11m_ckr_name(rv));
        return 0;
    }
    return 1; /* keeper is never given back */
}

static int raw_setup(const BENCH_OPTS *o, enum scheme s, BENCH_CONTENDER *c)
{
    static const CK_MECHANISM_TYPE combined[] = {
        CKM_SHA256_RSA_PKCS, CKM_SHA256_RSA_PKCS_PSS, CKM_ECDSA_SHA256, CKM_EDDSA};
    static const CK_MECHANISM_TYPE raw[] = {CKM_RSA_PKCS, CKM_RSA_PKCS_PSS, CKM_ECDSA,
                                            CKM_EDDSA};
    RAW *r = calloc(1, sizeof(*r));
    char pin_source[4200];
    P11M_LOGIN_INFO li = {0};
    P11M_FIND_ARGS fa = {0};
    P11M_MODULE *mod;
    unsigned int hlen;
    int use_raw;

    if (r == NULL || o->module == NULL || o->uri == NULL || o->pin_file == NULL) {
        fprintf(stderr, "p11mtls-bench-worker: raw needs --module, --uri, --pin-file\n");
        return 0;
    }
    /* With --conf, p11mtls is loaded (and not used): what the token's own library costs
     * in a process where the provider sits in the default library context. */
    if (o->conf != NULL && !OSSL_LIB_CTX_load_config(NULL, o->conf)) {
        bench_ossl_error("loading the provider configuration");
        return 0;
    }
    snprintf(pin_source, sizeof(pin_source), "file:%s", o->pin_file);
    li.pin_source = pin_source;
    if ((mod = p11m_module_get(o->module, NULL)) == NULL)
        return raw_fail("loading the module");
    if ((fa.uri = p11m_uri_parse(o->uri)) == NULL)
        return raw_fail("key URI");
    fa.cls = CKO_PRIVATE_KEY;
    fa.li = &li;
    if (p11m_obj_find(mod, &fa, raw_keep_first, &r->key, NULL) != CKR_OK ||
        r->key == NULL)
        return raw_fail("finding the key");
    p11_kit_uri_free(fa.uri);
    r->tok = p11m_obj_token(r->key);
    r->fl = mod->fl;
    if (strcmp(o->via, "rawcopy") == 0 && !raw_copy_key(r))
        return 0;
    r->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    if (r->sha256 == NULL) {
        bench_ossl_error("SHA256");
        return 0;
    }

    /* The provider's choice: combined when listed (and wanted), else raw. */
    use_raw = strcmp(o->via, "rawmech") == 0 || !p11m_token_has_mech(r->tok, combined[s]);
    r->mech.mechanism = use_raw ? raw[s] : combined[s];
    if (s == S_RSA_PSS) {
        r->pss = (CK_RSA_PKCS_PSS_PARAMS){CKM_SHA256, CKG_MGF1_SHA256, 32};
        r->mech.pParameter = &r->pss;
        r->mech.ulParameterLen = sizeof(r->pss);
    }
    if (!use_raw || s == S_ED25519) {
        memcpy(r->in, bench_msg, BENCH_MSG_LEN);
        r->inlen = BENCH_MSG_LEN;
    } else {
        if (s == S_RSA_PKCS1) {
            memcpy(r->in, sha256_di, sizeof(sha256_di));
            r->hash_off = sizeof(sha256_di);
        }
        if (!EVP_Digest(bench_msg, BENCH_MSG_LEN, r->in + r->hash_off, &hlen, r->sha256,
                        NULL))
            return 0;
        r->inlen = r->hash_off + hlen;
        r->hash_each = strcmp(o->via, "rawmech") == 0;
    }
    fprintf(stderr,
            "p11mtls-bench-worker: %s signs with mechanism 0x%lx over %zu bytes%s\n",
            o->via, (unsigned long) r->mech.mechanism, r->inlen,
            r->hash_each ? ", SHA-256 in software each time" : "");
    c->thread_new = raw_thread_new;
    c->op = raw_op;
    c->arg = r;
    return 1;
}

/* ---- EVP_DigestSign: provider and default-provider keys ---- */

typedef struct evp {
    EVP_PKEY *key;
    const char *md; /* NULL for EdDSA */
    int pss;
    int init_only; /* stop after EVP_DigestSignInit_ex: what libcrypto costs per key */
} EVP;

static void *evp_thread_new(void *arg, int idx)
{
    (void) idx;
    return arg; /* nothing per thread: a context per signature, as libssl makes */
}

static int evp_op(void *arg, void *tstate)
{
    EVP *e = arg;
    EVP_MD_CTX *m = EVP_MD_CTX_new();
    OSSL_PARAM pss[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_SIGNATURE_PARAM_PAD_MODE,
                                         (char *) OSSL_PKEY_RSA_PAD_MODE_PSS, 0),
        OSSL_PARAM_construct_utf8_string(OSSL_SIGNATURE_PARAM_PSS_SALTLEN,
                                         (char *) OSSL_PKEY_RSA_PSS_SALT_LEN_DIGEST, 0),
        OSSL_PARAM_construct_utf8_string(OSSL_SIGNATURE_PARAM_MGF1_DIGEST,
                                         (char *) "SHA256", 0),
        OSSL_PARAM_construct_end(),
    };
    unsigned char sig[1024];
    size_t siglen = sizeof(sig);
    int ok;

    (void) tstate;
    ok = m != NULL &&
         EVP_DigestSignInit_ex(m, NULL, e->md, NULL, NULL, e->key, e->pss ? pss : NULL) ==
             1 &&
         (e->init_only || EVP_DigestSign(m, sig, &siglen, bench_msg, BENCH_MSG_LEN) == 1);
    EVP_MD_CTX_free(m);
    if (!ok)
        bench_ossl_error("EVP_DigestSign failed");
    return ok;
}

static int evp_setup(const BENCH_OPTS *o, enum scheme s, BENCH_CONTENDER *c)
{
    EVP *e = calloc(1, sizeof(*e));

    if (e == NULL)
        return 0;
    if (strcmp(o->via, "prov") == 0) {
        if (o->conf == NULL || o->uri == NULL) {
            fprintf(stderr, "p11mtls-bench-worker: prov needs --conf and --uri\n");
            return 0;
        }
        if (!OSSL_LIB_CTX_load_config(NULL, o->conf)) {
            bench_ossl_error("loading the provider configuration");
            return 0;
        }
        e->key = bench_store_key(o->uri);
    } else {
        FILE *f = o->key_file != NULL ? fopen(o->key_file, "r") : NULL;

        if (f == NULL) {
            fprintf(stderr, "p11mtls-bench-worker: soft needs a readable --key-file\n");
            return 0;
        }
        e->key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
        fclose(f);
    }
    if (e->key == NULL) {
        bench_ossl_error("loading the key");
        return 0;
    }
    e->md = s == S_ED25519 ? NULL : "SHA256";
    e->pss = s == S_RSA_PSS;
    e->init_only = o->init_only;
    c->thread_new = evp_thread_new;
    c->op = evp_op;
    c->arg = e;
    return 1;
}

int bench_sign_setup(const BENCH_OPTS *o, BENCH_CONTENDER *c)
{
    enum scheme s;

    if (!scheme_of(o->scheme, &s))
        return 0;
    if (strcmp(o->via, "raw") == 0 || strcmp(o->via, "rawmech") == 0 ||
        strcmp(o->via, "rawcopy") == 0)
        return raw_setup(o, s, c);
    if (strcmp(o->via, "prov") == 0 || strcmp(o->via, "soft") == 0)
        return evp_setup(o, s, c);
    fprintf(stderr, "p11mtls-bench-worker: unknown --via %s for sign\n", o->via);
    return 0;
}
