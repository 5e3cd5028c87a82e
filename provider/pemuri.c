/*
 * pemuri.c - the PEM-URI format, with OpenSSL's ASN.1 templates doing the DER.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/asn1t.h>
#include <openssl/pem.h>

#include "pemuri.h"

#define PEMURI_DESC "PKCS#11 Provider URI v1.0"
#define PEMURI_MAX  4096 /* a URI longer than this is not a key reference */

typedef struct pemuri_st {
    ASN1_VISIBLESTRING *desc;
    ASN1_UTF8STRING *uri;
} PEMURI;

ASN1_SEQUENCE(PEMURI) =
    {
        ASN1_SIMPLE(PEMURI, desc, ASN1_VISIBLESTRING),
        ASN1_SIMPLE(PEMURI, uri, ASN1_UTF8STRING),
} ASN1_SEQUENCE_END(PEMURI)

        IMPLEMENT_ASN1_FUNCTIONS(PEMURI)

            int p11m_pemuri_write(BIO * out, const char *uri)
{
    PEMURI *p = PEMURI_new();
    unsigned char *der = NULL;
    int len = -1, ok = 0;

    if (p != NULL && ASN1_STRING_set(p->desc, PEMURI_DESC, (int) strlen(PEMURI_DESC)) &&
        ASN1_STRING_set(p->uri, uri, (int) strlen(uri)))
        len = i2d_PEMURI(p, &der);
    if (len > 0)
        ok = PEM_write_bio(out, P11M_PEMURI_LABEL, "", der, len) > 0;
    OPENSSL_free(der);
    PEMURI_free(p);
    return ok;
}

int p11m_pemuri_parse(const unsigned char *der, long len, char **uri)
{
    const unsigned char *p = der;
    PEMURI *pu = d2i_PEMURI(NULL, &p, len);
    int ok = 0;

    *uri = NULL;
    if (pu == NULL)
        return 0;
    if (p == der + len && ASN1_STRING_length(pu->desc) == (int) strlen(PEMURI_DESC) &&
        memcmp(ASN1_STRING_get0_data(pu->desc), PEMURI_DESC, strlen(PEMURI_DESC)) == 0 &&
        ASN1_STRING_length(pu->uri) > 0 && ASN1_STRING_length(pu->uri) <= PEMURI_MAX) {
        size_t n = (size_t) ASN1_STRING_length(pu->uri);

        if ((*uri = malloc(n + 1)) != NULL) {
            memcpy(*uri, ASN1_STRING_get0_data(pu->uri), n);
            (*uri)[n] = '\0';
            ok = memchr(*uri, '\0', n) == NULL;
        }
    }
    if (!ok) {
        free(*uri);
        *uri = NULL;
    }
    PEMURI_free(pu);
    return ok;
}
