/*
 * engine.c - the peer: libp11's PKCS#11 engine (Debian's libengine-pkcs11-openssl)
 * signing with the same token key, through the deprecated ENGINE API (this file is
 * built with -Wno-deprecated-declarations). Per signature it makes the same EVP calls
 * as the provider contender: a new EVP_MD_CTX, EVP_DigestSignInit, EVP_DigestSign.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/engine.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>

#include "bench.h"

typedef struct eng {
    EVP_PKEY *key;
    const EVP_MD *md; /* NULL for EdDSA */
    int pss;
} ENG;

static void *eng_thread_new(void *arg, int idx)
{
    (void) idx;
    return arg;
}

static int eng_op(void *arg, void *tstate)
{
    ENG *e = arg;
    EVP_MD_CTX *m = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pctx = NULL;
    unsigned char sig[1024];
    size_t siglen = sizeof(sig);
    int ok;

    (void) tstate;
    ok = m != NULL && EVP_DigestSignInit(m, &pctx, e->md, NULL, e->key) == 1;
    if (ok && e->pss)
        ok = EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) > 0 &&
             EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) > 0 &&
             EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, EVP_sha256()) > 0;
    ok = ok && EVP_DigestSign(m, sig, &siglen, bench_msg, BENCH_MSG_LEN) == 1;
    EVP_MD_CTX_free(m);
    if (!ok)
        bench_ossl_error("libp11 engine: EVP_DigestSign failed");
    return ok;
}

static int ctrl(ENGINE *e, const char *cmd, const char *arg)
{
    if (ENGINE_ctrl_cmd_string(e, cmd, arg, 0))
        return 1;
    fprintf(stderr, "p11mtls-bench-worker: engine control %s failed\n", cmd);
    bench_ossl_error("libp11 engine");
    return 0;
}

EVP_PKEY *bench_engine_key(const BENCH_OPTS *o)
{
    char pin[256];
    ENGINE *e;
    EVP_PKEY *key;

    if (o->engine == NULL || o->module == NULL || o->uri == NULL || o->pin_file == NULL) {
        fprintf(stderr, "p11mtls-bench-worker: engine needs --engine, --module, --uri, "
                        "--pin-file\n");
        return NULL;
    }
    if (!bench_read_line(o->pin_file, pin, sizeof(pin)))
        return NULL;
    ENGINE_load_dynamic();
    if ((e = ENGINE_by_id("dynamic")) == NULL) {
        bench_ossl_error("no dynamic engine");
        return 0;
    }
    if (!ctrl(e, "SO_PATH", o->engine) || !ctrl(e, "ID", "pkcs11") ||
        !ctrl(e, "LIST_ADD", "1") || !ctrl(e, "LOAD", NULL) ||
        !ctrl(e, "MODULE_PATH", o->module) || !ctrl(e, "PIN", pin))
        return NULL;
    OPENSSL_cleanse(pin, sizeof(pin));
    if (!ENGINE_init(e)) {
        bench_ossl_error("libp11 engine: ENGINE_init");
        return NULL;
    }
    key = ENGINE_load_private_key(e, o->uri, NULL, NULL);
    if (key == NULL)
        bench_ossl_error("libp11 engine: loading the key");
    return key;
}

int bench_engine_setup(const BENCH_OPTS *o, BENCH_CONTENDER *c)
{
    ENG *eng = calloc(1, sizeof(*eng));

    if (eng == NULL || o->scheme == NULL) {
        fprintf(stderr, "p11mtls-bench-worker: engine needs --scheme\n");
        return 0;
    }
    if ((eng->key = bench_engine_key(o)) == NULL)
        return 0;
    if (strcmp(o->scheme, "ed25519") == 0) {
        eng->md = NULL;
    } else {
        eng->md = EVP_sha256();
        eng->pss = strcmp(o->scheme, "rsa-pss") == 0;
    }
    c->thread_new = eng_thread_new;
    c->op = eng_op;
    c->arg = eng;
    return 1;
}
