/*
 * fuzz_cert.c - the shim's certificate handling (shim/identity.c) on certificates and
 * acceptable-CA lists from the input: the subject and serial it logs, the validity check
 * and the CA match against the names a server sends (SSL_get0_peer_CA_list, answered
 * here from the input through the shim's function table).
 *
 * Input: DER certificate, then DER X.509 names (the server's list), then optionally a
 * second DER certificate used as the chain. identity.c is included whole so that its
 * static helpers (identity_describe) are reached too.
 */
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "fuzz.h"
#include "../../shim/identity.c"

static STACK_OF(X509_NAME) * fuzz_cas;

static const STACK_OF(X509_NAME) * fake_peer_ca_list(const SSL *ssl)
{
    (void) ssl;
    return fuzz_cas;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void) argc, (void) argv;
    SSL_CTX_free(SSL_CTX_new(TLS_client_method()));
    if (!shim_ossl_ready())
        abort();
    shim_fn.SSL_get0_peer_CA_list = fake_peer_ca_list;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const unsigned char *p = data, *end = data + size;
    struct shim_identity id = {0};
    char why[512];
    X509_NAME *name;

    id.cert = d2i_X509(NULL, &p, (long) size);
    if (id.cert == NULL) {
        ERR_clear_error();
        return 0;
    }
    fuzz_cas = sk_X509_NAME_new_null();
    while (p < end && sk_X509_NAME_num(fuzz_cas) < 64) {
        const unsigned char *before = p;
        X509 *chain;

        name = d2i_X509_NAME(NULL, &p, end - p);
        if (name != NULL) {
            sk_X509_NAME_push(fuzz_cas, name);
            continue;
        }
        p = before;
        chain = d2i_X509(NULL, &p, end - p);
        if (chain == NULL)
            break;
        if (id.chain == NULL)
            id.chain = sk_X509_new_null();
        sk_X509_push(id.chain, chain);
    }
    identity_describe(&id);
    FUZZ_ASSERT(memchr(id.subject, '\0', sizeof(id.subject)) != NULL &&
                    memchr(id.serial, '\0', sizeof(id.serial)) != NULL,
                "unterminated subject or serial");
    why[0] = '\0';
    if (!shim_identity_valid_now(&id, why, sizeof(why)))
        FUZZ_ASSERT(why[0] != '\0', "invalid without a reason");
    why[0] = '\0';
    if (!shim_identity_ca_match(&id, (const SSL *) &id, why, sizeof(why)))
        FUZZ_ASSERT(why[0] != '\0' && sk_X509_NAME_num(fuzz_cas) > 0,
                    "CA mismatch without a reason or with an empty list");
    identity_release(&id);
    sk_X509_NAME_pop_free(fuzz_cas, X509_NAME_free);
    fuzz_cas = NULL;
    ERR_clear_error();
    return 0;
}
