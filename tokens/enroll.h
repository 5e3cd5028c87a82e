/*
 * enroll.h - what enroll/renew and status share: the record of the last attempt per
 * identity. It is not identity state (that lives on the token); it only lets status and
 * its metrics show a timer's failures.
 */
#ifndef P11MTLS_ENROLL_H
#define P11MTLS_ENROLL_H

#include "p11m_config.h"
#include "tool.h"

#define ENROLL_STATE_DIR P11M_STATEDIR /* LOCALSTATEDIR/lib/p11mtls of this build */

/* Replaces DIR/IDENTITY.last with text plus "time=<epoch>" (atomically). 1 on success. */
int enroll_state_write(const char *dir, const char *identity, const char *text);
/* Reads DIR/IDENTITY.last into buf ("" when there is none). */
void enroll_state_read(const char *dir, const char *identity, char *buf, size_t len);
/* The value of "key=" in a state text, into out ("" when absent). */
const char *enroll_state_get(const char *text, const char *key, char *out, size_t len);

#endif
