/*
 * bench.h - the benchmark worker's contenders.
 *
 * A worker process sets up one contender (a way to sign, or a way to run a TLS client
 * handshake) and then times it on the driver's command. A contender gives each thread its
 * own state, made before any timing, and one operation that the timed loop repeats.
 */
#ifndef P11M_BENCH_H
#define P11M_BENCH_H

#include <stddef.h>

#include <openssl/evp.h>

#define BENCH_MAX_THREADS 8

/* What the worker was asked to set up (see worker.c's usage text). */
typedef struct bench_opts {
    const char *kind; /* sign | tls | gtls */
    const char
        *via; /* sign: raw rawcopy rawmech prov engine soft; tls: file uri engine none */
    const char *scheme;   /* rsa-pkcs1 rsa-pss ecdsa ed25519 */
    const char *module;   /* PKCS#11 module path (raw, rawmech, engine) */
    const char *pin_file; /* PIN file (raw, rawmech, engine) */
    const char *uri;      /* key URI (raw, rawmech, prov, engine, tls uri) */
    const char *conf;     /* openssl.cnf loading p11mtls (prov, tls uri) */
    const char *key_file; /* PEM private key (soft, tls file) */
    const char *engine;   /* libp11's pkcs11.so (engine) */
    const char *tls;      /* 1.2 | 1.3 */
    const char *dir;  /* bench dir: server.crt server.key inter.crt chain.pem root.pem */
    const char *cert; /* client certificate PEM (tls file, tls uri) */
    const char *verify; /* server side: require (default) | request */
    const char *expect; /* tls: cert | nocert: what the server must have seen */
    int init_only;      /* sign prov|soft: EVP context and DigestSignInit, no signature */
    int server_shared;  /* tls: the server in the default library context, the client's */
    int plus_raw_sign;  /* tls: each handshake followed by a raw C_Sign (sign raw's
                           options) */
} BENCH_OPTS;

/* One contender: per-thread state and the operation. op returns 1 on success. */
typedef struct bench_contender {
    void *(*thread_new)(void *arg, int idx);
    int (*op)(void *arg, void *tstate);
    void *arg;
} BENCH_CONTENDER;

/* Each returns 1 and fills c, or prints why not on stderr and returns 0. */
int bench_sign_setup(const BENCH_OPTS *o, BENCH_CONTENDER *c);
int bench_engine_setup(const BENCH_OPTS *o, BENCH_CONTENDER *c);
int bench_tls_setup(const BENCH_OPTS *o, BENCH_CONTENDER *c);
/* The key at o->uri through libp11's engine (o->engine, o->module, o->pin_file). */
EVP_PKEY *bench_engine_key(const BENCH_OPTS *o);
/* The same handshakes with a GnuTLS client (gtls.c). */
int bench_gtls_setup(const BENCH_OPTS *o, BENCH_CONTENDER *c);
/* tls.c's server: its own library context, the fixture certificate, --verify. */
struct ssl_ctx_st *bench_tls_server_ctx(const BENCH_OPTS *o, int version);

/* The message every signing contender signs: as long as a TLS 1.3 CertificateVerify
 * input (64 spaces, a 33-byte context string, a zero, a SHA-256 transcript hash). */
#define BENCH_MSG_LEN 130
extern const unsigned char bench_msg[BENCH_MSG_LEN];

/* Prints msg and OpenSSL's error queue on stderr. */
void bench_ossl_error(const char *msg);
/* The first private key at uri, through OSSL_STORE (the provider for pkcs11: URIs). */
EVP_PKEY *bench_store_key(const char *uri);
/* Reads the first line of a file (a PIN) into buf; 1 on success. */
int bench_read_line(const char *path, char *buf, size_t len);

#endif
