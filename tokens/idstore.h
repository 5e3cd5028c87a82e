/*
 * idstore.h - an identity on a token, as enrol, renew and status see it: the key pairs
 * and certificates that carry the identity's label (CKA_LABEL), paired by CKA_ID, and its
 * chain (label "NAME-caN", no CKA_ID). Everything lives on the token; nothing outside it
 * can disagree.
 *
 * Choosing among several certificates of one identity (the rule the provider's store
 * applies as well): the currently valid one with the latest notAfter; if none is valid,
 * the one with the latest notAfter. The identity's key is the one with that certificate's
 * CKA_ID. A key labelled "NAME.new" is a new key of a renewal with --new-key that is not
 * complete yet; it is never chosen.
 */
#ifndef P11MTLS_IDSTORE_H
#define P11MTLS_IDSTORE_H

#include "tool.h"

#define IDS_ID_MAX 64
#define IDS_NEW    ".new" /* label suffix of a renewal's pending key and certificate */

struct ids_cert {
    P11M_OBJ *obj;
    X509 *x;
};

struct ids {
    P11M_MODULE *mod;
    P11M_TOKEN *tok;
    char label[200];
    struct ids_cert *certs; /* labelled NAME, with a CKA_ID */
    size_t n_certs;
    int chosen;             /* index into certs, -1 when none */
    STACK_OF(X509) * chain; /* NAME-caN */
};

/* Reads the identity label's certificates and chain on the one token uri names. */
int ids_load(struct ids *ids, P11KitUri *tokuri, const char *module, const char *label);
void ids_free(struct ids *ids);
/* The chosen certificate, or NULL. */
X509 *ids_cert(const struct ids *ids);
/* The chosen certificate's CKA_ID. */
const unsigned char *ids_id(const struct ids *ids, size_t *len);
/* Index of the certificate the rule picks among v[0..n-1] (-1 for n == 0). */
int ids_choose(X509 *const *v, size_t n);

/* The private key with label and id (login with li), or NULL (quiet). */
P11M_OBJ *ids_key(struct ids *ids, const char *label, const unsigned char *id,
                  size_t idlen, P11M_LOGIN_INFO *li);

/*
 * Token writes (a logged-in RW session s), through the core's provisioning calls.
 */
int ids_store_cert(struct ids *ids, CK_SESSION_HANDLE s, X509 *x, const char *label,
                   const unsigned char *id, size_t idlen);
int ids_store_chain(struct ids *ids, CK_SESSION_HANDLE s, STACK_OF(X509) * chain,
                    X509 *leaf);
/* Generates an EC P-256 (or type) key pair with label and a random id (out). */
int ids_generate(struct ids *ids, CK_SESSION_HANDLE s, const char *type,
                 const char *label, unsigned char *id, size_t *idlen);
/* Destroys the objects of class cls with id and label (every match). */
int ids_destroy(struct ids *ids, CK_SESSION_HANDLE s, CK_OBJECT_CLASS cls,
                const unsigned char *id, size_t idlen, const char *label);
/* Destroys the certificate x labelled label. */
int ids_destroy_cert(struct ids *ids, CK_SESSION_HANDLE s, X509 *x, const char *label);
/* Destroys the key pairs labelled like the identity that have no certificate of it,
 * except the chosen certificate's (login with li), after waiting grace seconds. */
int ids_destroy_orphans(struct ids *ids, CK_SESSION_HANDLE s, P11M_LOGIN_INFO *li,
                        long grace);
/* Sets CKA_LABEL of the objects of class cls with id and label from to to. */
int ids_relabel(struct ids *ids, CK_SESSION_HANDLE s, CK_OBJECT_CLASS cls,
                const unsigned char *id, size_t idlen, const char *from, const char *to);

/* P11MTLS_TEST_KILL_AT=N makes the tool SIGKILL itself at step N (tests only). */
void ids_step(int n, const char *what);

#endif
