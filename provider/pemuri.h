/*
 * pemuri.h - PEM files that wrap a pkcs11: URI, so that programs that only take key
 * files can use token keys. The format is the one other PKCS#11 providers use: PEM label
 * "PKCS#11 PROVIDER URI" over DER SEQUENCE { VisibleString desc, UTF8String uri }.
 */
#ifndef P11M_PEMURI_H
#define P11M_PEMURI_H

#include <openssl/bio.h>

#define P11M_PEMURI_LABEL "PKCS#11 PROVIDER URI"
/* The DER structure name that links the two decoder stages. */
#define P11M_PEMURI_STRUCTURE "pkcs11-uri"

/* Writes uri as a PEM-URI file to out. 1 on success. */
int p11m_pemuri_write(BIO *out, const char *uri);
/* Parses the DER body of a PEM-URI file; the URI is malloc'ed into *uri. 1 on success,
 * 0 when the data is not a PEM-URI body. */
int p11m_pemuri_parse(const unsigned char *der, long len, char **uri);

#endif
