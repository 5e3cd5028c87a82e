/*
 * p11m_util.h - what must behave the same in the provider's PKCS#11 core, the preload
 * library and the tool, written once. libc only: the preload library links neither
 * libcrypto nor p11-kit.
 *
 * Errors are returned as text in the caller's buffer (err, errlen): each caller raises
 * or logs it its own way. Nothing here logs, and no message ever contains a PIN.
 */
#ifndef P11M_UTIL_H
#define P11M_UTIL_H

#include <stddef.h>

/* ---- careful file reads (file.c) ---- */

/* The file must not be accessible by group or others (PIN files). */
#define P11M_FILE_PRIVATE 1u

/*
 * The contents of the regular file at path, NUL-terminated (malloc'd; *len without the
 * NUL). Opened non-blocking, so a FIFO or a device named by mistake fails at once
 * ("not a regular file") instead of stalling the program; at most max bytes, a larger
 * file is an error, never cut short. NULL with err filled: messages start with what
 * ("PIN file /x: not a regular file", "/x: cannot read: larger than 1 MiB"). The caller
 * frees with p11m_file_free, which zeroes the buffer first.
 */
char *p11m_file_read(const char *path, const char *what, size_t max, unsigned flags,
                     size_t *len, char *err, size_t errlen);
void p11m_file_free(char *data, size_t len);

/* ---- PIN sources (pin.c) ----
 *
 * The one rule set for every PIN source of p11mtls (the provider's pin-source parameter
 * and URI attribute, the preload library's pin_source, the tool's --pin-source):
 *   file:/ABSOLUTE/PATH  a regular file that group and others cannot access (mode 0600
 *                        or stricter); read without blocking (a FIFO is refused), at
 *                        most P11M_PIN_MAX bytes of PIN: a longer file is an error
 *                        naming the file, never cut short.
 *   env:NAME             the environment variable NAME (secure_getenv: ignored in
 *                        set-user-ID programs); unset is an error.
 * The PIN is one line: one trailing newline (LF or CR LF) is dropped, any other CR, LF
 * or NUL byte is an error, and an empty PIN is an error. Nothing else is a PIN source:
 * a bare path, a relative file: path or a literal PIN are refused.
 */
#define P11M_PIN_MAX 255

/* 1 if spec has the syntax of a PIN source (nothing is read). */
int p11m_pinsrc_valid(const char *spec);
/*
 * Reads the PIN of spec into pin (cap > P11M_PIN_MAX bytes), NUL-terminated, length in
 * *len; 1 on success. On failure pin is zeroed and err says why (naming the file or
 * variable, never the PIN). The caller zeroes pin after use.
 */
int p11m_pinsrc_read(const char *spec, char *pin, size_t cap, size_t *len, char *err,
                     size_t errlen);

/* ---- pkcs11: URI queries (uri.c) ---- */

/* 1 if the query of uri (after '?') has the attribute name (any case). */
int p11m_query_has(const char *uri, const char *name);
/* uri with "name=value" appended to its query, value percent-encoded (malloc'd). */
char *p11m_query_add(const char *uri, const char *name, const char *value);
/* uri copied to out (outlen > 0) with the value of every pin-value (any letter case)
 * replaced by "***", for logs. */
void p11m_redact(const char *uri, char *out, size_t outlen);

/* ---- the preload library's configuration (conf.c) ---- */

#define P11M_CONF_ENV "P11MTLS_CONF"

/*
 * The configuration file the preload library reads: $P11MTLS_CONF when set and not
 * empty (secure_getenv: not in set-user-ID programs; *named = 1, a missing file is then
 * an error), else the installed default (*named = 0).
 */
const char *p11m_conf_path(int *named);
/* The installed default, for help texts. */
const char *p11m_conf_default(void);

#endif /* P11M_UTIL_H */
