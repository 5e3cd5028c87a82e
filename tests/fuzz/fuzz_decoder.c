/*
 * fuzz_decoder.c - the provider's decoders through OpenSSL's own OSSL_DECODER, with the
 * p11mtls provider (compiled into this program from provider/, registered as a built-in
 * provider) and OpenSSL's default provider in one library context, as a program with
 * p11mtls in its openssl.cnf reads a key file: PEM input (stage 1, the PEM-URI label)
 * and DER input of the "pkcs11-uri" structure (stage 2, URI to key).
 *
 * The provider serves PEM-URI files (pem-uri-files = yes) with a PKCS#11 module that does
 * not exist, so a URI that parses fails fast at module loading instead of reaching a
 * token. Inputs that name a
 * module themselves (module-path=, module-name=) are skipped: they would make the
 * fuzzer dlopen() whatever file the input names (a known property of PEM-URI files,
 * see tests/RELIABILITY.md); their URI parsing is covered by fuzz_uri.
 */
#include <unistd.h>

#include <openssl/core.h>
#include <openssl/decoder.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/provider.h>

#include "fuzz.h"
#include "pemuri.h"

OSSL_provider_init_fn OSSL_provider_init;

static OSSL_LIB_CTX *libctx;

/*
 * The two decoder contexts are made once: building one fetches every decoder of both
 * providers, which cost far more than decoding an input (27 exec/s). A context decodes
 * any number of inputs, each into `decoded` (the key the last successful decode made).
 */
static EVP_PKEY *decoded;
static OSSL_DECODER_CTX *dc_pem, *dc_der;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char path[] = "/tmp/p11mtls-fuzz-decoder.XXXXXX";
    int fd = mkstemp(path);
    static const char cnf[] = "openssl_conf = init\n"
                              "[init]\nproviders = provs\n"
                              "[provs]\ndefault = dflt\np11mtls = p11m\n"
                              "[dflt]\nactivate = 1\n"
                              "[p11m]\nactivate = 1\n"
                              "pkcs11-module = /nonexistent/p11mtls-fuzz-module.so\n"
                              "pem-uri-files = yes\n";

    (void) argc, (void) argv;
    if (fd < 0 || write(fd, cnf, sizeof(cnf) - 1) != (ssize_t) sizeof(cnf) - 1)
        abort();
    close(fd);
    libctx = OSSL_LIB_CTX_new();
    if (libctx == NULL ||
        !OSSL_PROVIDER_add_builtin(libctx, "p11mtls", OSSL_provider_init) ||
        !OSSL_LIB_CTX_load_config(libctx, path) ||
        !OSSL_PROVIDER_available(libctx, "p11mtls")) {
        ERR_print_errors_fp(stderr);
        abort();
    }
    unlink(path);
    dc_pem = OSSL_DECODER_CTX_new_for_pkey(&decoded, "PEM", NULL, NULL,
                                           OSSL_KEYMGMT_SELECT_PRIVATE_KEY, libctx, NULL);
    dc_der = OSSL_DECODER_CTX_new_for_pkey(&decoded, "DER", P11M_PEMURI_STRUCTURE, NULL,
                                           OSSL_KEYMGMT_SELECT_PRIVATE_KEY, libctx, NULL);
    if (dc_pem == NULL || dc_der == NULL)
        abort();
    return 0;
}

static void decode(OSSL_DECODER_CTX *dc, const uint8_t *data, size_t size)
{
    const unsigned char *p = data;
    size_t len = size;

    decoded = NULL;
    if (OSSL_DECODER_from_data(dc, &p, &len))
        FUZZ_ASSERT(decoded != NULL, "decoded without a key");
    EVP_PKEY_free(decoded);
    decoded = NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 16384 || memmem(data, size, "module-", 7) != NULL)
        return 0;
    decode(dc_pem, data, size);
    decode(dc_der, data, size);
    ERR_clear_error();
    return 0;
}
