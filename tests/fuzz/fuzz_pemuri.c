/*
 * fuzz_pemuri.c - the PEM-URI format: p11m_pemuri_parse on the DER body, and on the
 * body of the PEM block when the input is PEM text (as the provider's decoder and the
 * tool's "pem-uri --show" take it).
 *
 * Properties: a URI it accepts is a NUL-free string of 1..4096 bytes, and writing it
 * back with p11m_pemuri_write and parsing that gives the same URI.
 */
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>

#include "fuzz.h"
#include "pemuri.h"

static void check_der(const unsigned char *der, long len)
{
    char *uri = NULL, *again = NULL, *name = NULL, *header = NULL;
    unsigned char *body = NULL;
    long blen = 0;
    BIO *mem;

    if (!p11m_pemuri_parse(der, len, &uri)) {
        FUZZ_ASSERT(uri == NULL, "a refused body left a URI behind");
        return;
    }
    FUZZ_ASSERT(uri != NULL && strlen(uri) >= 1 && strlen(uri) <= 4096,
                "accepted URI of %zu bytes", uri != NULL ? strlen(uri) : 0);
    mem = BIO_new(BIO_s_mem());
    FUZZ_ASSERT(mem != NULL && p11m_pemuri_write(mem, uri), "cannot write back \"%s\"",
                uri);
    FUZZ_ASSERT(PEM_read_bio(mem, &name, &header, &body, &blen) > 0 &&
                    strcmp(name, P11M_PEMURI_LABEL) == 0,
                "written PEM does not read back");
    FUZZ_ASSERT(p11m_pemuri_parse(body, blen, &again) && strcmp(again, uri) == 0,
                "round trip changed \"%s\"", uri);
    OPENSSL_free(name);
    OPENSSL_free(header);
    OPENSSL_free(body);
    BIO_free(mem);
    free(again);
    free(uri);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *name = NULL, *header = NULL;
    unsigned char *body = NULL;
    long blen = 0;
    BIO *in;

    if (size > 65536)
        return 0;
    check_der(data, (long) size);
    in = BIO_new_mem_buf(data, (int) size);
    if (in != NULL && PEM_read_bio(in, &name, &header, &body, &blen) > 0 &&
        strcmp(name, P11M_PEMURI_LABEL) == 0)
        check_der(body, blen);
    OPENSSL_free(name);
    OPENSSL_free(header);
    OPENSSL_free(body);
    BIO_free(in);
    ERR_clear_error();
    return 0;
}
