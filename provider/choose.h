/*
 * choose.h - which object to use when a URI matches several: the rule that lets a
 * renewed certificate (and, after a key rotation, its new key) take over from the old one
 * without any configuration change.
 *
 * Certificates: the one valid now with the latest notAfter first (on a tie, the latest
 * notBefore); then the others by notAfter, latest first. Private and public keys: by
 * the same rank of the best certificate with the key's CKA_ID and label on its token;
 * keys without one last (a key whose certificate is not stored, or not relabelled, yet
 * is never chosen). Ties keep the token's order.
 */
#ifndef P11M_CHOOSE_H
#define P11M_CHOOSE_H

#include <openssl/x509.h>

#include "p11m.h"

/* Sorts objs[0..n-1] (one class) so that the one to use comes first. */
void p11m_choose_order(P11M_MODULE *mod, P11M_OBJ **objs, size_t n);
/* <0 when a ranks before b under the certificate rule, >0 after, 0 equal. */
int p11m_choose_cert_cmp(const X509 *a, const X509 *b);

#endif
