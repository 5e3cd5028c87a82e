/*
 * pubkey.h - the public key of a token object (see pubkey.c).
 */
#ifndef P11M_PUBKEY_H
#define P11M_PUBKEY_H

#include <openssl/evp.h>

#include "p11m.h"

/* A new EVP_PKEY with the object's public key, made in libctx with propq; NULL when the
 * object has no usable public key attributes (nor certificate). */
EVP_PKEY *p11m_obj_public_key(const P11M_OBJ *obj, OSSL_LIB_CTX *libctx,
                              const char *propq);

#endif
