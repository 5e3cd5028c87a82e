/*
 * tool.h - what the commands of the p11mtls tool share: exit codes, messages, option
 * helpers, PINs, URIs and tokens through the PKCS#11 core, and keys through the provider.
 */
#ifndef P11MTLS_TOOL_H
#define P11MTLS_TOOL_H

#include <getopt.h>
#include <stdio.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "p11m.h"

/* Exit codes, documented in `p11mtls --help`. */
#define TOOL_EXIT_OK    0
#define TOOL_EXIT_FAIL  1   /* the operation failed (token, file, TLS, ...) */
#define TOOL_EXIT_USAGE 2   /* bad command line */
#define TOOL_EXIT_CHECK 3   /* doctor: at least one check failed */
#define TOOL_EXIT_EXEC  127 /* run: the command could not be executed */

/* Command groups: argv[0] is the command name, the rest its arguments. */
int token_main(int argc, char **argv);
int key_main(int argc, char **argv);
int csr_main(int argc, char **argv);
int ca_main(int argc, char **argv);
int cert_main(int argc, char **argv);
int list_main(int argc, char **argv);
int pemuri_main(int argc, char **argv);
int run_main(int argc, char **argv);
int doctor_main(int argc, char **argv);
int pin_main(int argc, char **argv);
/* doctor --program: report the TLS library of a program or process; adds to *warns,
 * returns nonzero if the check itself failed (tlslib.c). */
int doctor_program(const char *prog, int *warns);
int enroll_main(int argc, char **argv);
int renew_main(int argc, char **argv);
int status_main(int argc, char **argv);

/* "/A=b/C=d" into a name (csr.c); NULL with a usage message when it is not one. */
X509_NAME *csr_parse_subject(const char *s);

/* ---- token writes shared by the commands ---- */

/*
 * A key pair of type ("ec:P-256", "rsa:2048", ... as for key generate) generated on the
 * token in the logged-in RW session s, labelled label with CKA_ID id: sign-only where
 * the token allows it, else with the usage a TPM chooses itself (warned). 1, or 0 with
 * the error printed (key.c).
 */
int key_generate_pair(P11M_TOKEN *tok, CK_SESSION_HANDLE s, const char *type,
                      const char *label, const unsigned char *id, size_t idlen);
/* The certificate object for x: label, CKA_ID id (idlen 0: none), category 1 (token
 * user) or 2 (authority) (cert.c). */
CK_RV cert_create_x509(P11M_TOKEN *tok, CK_SESSION_HANDLE s, X509 *x, const char *label,
                       const unsigned char *id, size_t idlen, CK_ULONG category);

/* ---- messages (tool.c) ---- */

/* "p11mtls: <message>" on stderr. */
void tool_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* "p11mtls: warning: <message>" on stderr. */
void tool_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* A usage error of command cmd: prints it with a hint to --help; returns TOOL_EXIT_USAGE.
 */
int tool_usage(const char *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Prints what and then OpenSSL's error queue (emptied). */
void tool_ossl_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Routes core errors to stderr as "p11mtls: <reason>: <message>"; quiet mode counts only.
 */
void tool_core_errors(int quiet);
/* Reason of the last core error (0 if none since tool_core_errors). */
int tool_core_last_reason(void);

/* ---- options (tool.c) ---- */

/* getopt_long wrapper state reset: every command parses its own argv. */
void tool_getopt_reset(void);
/*
 * A command's options for tool_getopt: its name in messages, getopt's short options
 * ("h", "o:h"; a leading '+' stops at the first operand), the long ones, its usage
 * (printed on stdout for help), and how many operands may follow the options (-1: the
 * command checks them itself).
 */
typedef struct tool_cmd {
    const char *name;
    const char *shortopts;
    const struct option *longopts;
    void (*usage)(FILE *);
    int max_operands;
} TOOL_CMD;
/* Takes option c (its argument arg, or NULL) into the command's options o: 0 to go on,
 * else the exit code to return (a usage error it printed). */
typedef int tool_opt_fn(int c, char *arg, void *o);
#define TOOL_PARSED (-1)
/*
 * The option loop of every command: each option but help goes to fn; help, an unknown
 * or incomplete option and unexpected operands are answered here. TOOL_PARSED when the
 * command goes on (operands from argv[optind]), else the exit code to return.
 */
int tool_getopt(const TOOL_CMD *cmd, int argc, char **argv, tool_opt_fn *fn, void *o);
/* Checks a --pin-source style option (NULL is fine); prints the usage error if bad. */
int tool_pin_source_ok(const char *cmd, const char *opt, const char *spec);
/* A command group with one subcommand: help, dispatch to fn, or a usage error. */
int tool_subcommand(const char *group, const char *sub, int (*fn)(int, char **),
                    void (*usage)(FILE *), int argc, char **argv);
/* Parses a decimal number in [min, max] for option opt; 0 (usage error printed) if bad.
 */
int tool_parse_long(const char *cmd, const char *opt, const char *s, long min, long max,
                    long *out);
/* Parses hex ("01ab", "%01%ab" or "01:ab") into at most cap bytes; returns length or -1.
 */
long tool_parse_hex(const char *s, unsigned char *out, size_t cap);
/* Lower-case hex of buf into out (2 * len + 1 bytes). */
void tool_hex(const unsigned char *buf, size_t len, char *out);

/* ---- PINs (tool.c) ---- */

/*
 * Login info from --pin-source (may be NULL). Without a source, a no-echo prompt is used
 * when stdin is a terminal; otherwise a login fails with "PIN missing".
 */
void tool_login_info(P11M_LOGIN_INFO *li, const char *pin_source);
/* A new PIN (token init): from source, else prompted twice on a terminal. 1 on success.
 */
int tool_new_pin(const char *source, const char *what, P11M_PIN *pin);

/* ---- URIs, modules, tokens and objects (tool.c) ---- */

/* Parses a pkcs11: URI from option opt; refuses pin-value (no PIN on a command line). */
P11KitUri *tool_uri(const char *cmd, const char *opt, const char *s);
/* The module: module-path / module-name of uri, else --module, else p11-kit's proxy. */
P11M_MODULE *tool_module(P11KitUri *uri, const char *module);
/* The one token that uri names; NULL (error printed) for none or several. */
P11M_TOKEN *tool_token_one(P11M_MODULE *mod, P11KitUri *uri);
/* The one object of class cls that uri names; NULL (error printed) for none or several.
 */
P11M_OBJ *tool_obj_one(P11M_MODULE *mod, P11KitUri *uri, CK_OBJECT_CLASS cls,
                       P11M_LOGIN_INFO *li);
/* A short URI for an object: token label, id, object label, type. Caller frees. */
char *tool_obj_uri(P11M_TOKEN *tok, CK_OBJECT_CLASS cls, const unsigned char *id,
                   size_t idlen, const char *label);
/* The public key of a key object from its cached token attributes (default provider). */
EVP_PKEY *tool_obj_pubkey(const P11M_OBJ *obj);
/* "RSA 2048", "EC P-256", "Ed25519", ... into buf. */
const char *tool_pkey_desc(const EVP_PKEY *pkey, char *buf, size_t len);
/* The DER of an X.509 name as one line ("CN=a, UID=b") into buf. */
const char *tool_name_str(const X509_NAME *name, char *buf, size_t len);
/* Days from now until t (negative when past). */
long tool_days_left(const ASN1_TIME *t);
/* t as "YYYY-MM-DDTHH:MM:SSZ" into buf. */
const char *tool_time_str(const ASN1_TIME *t, char *buf, size_t len);

/* ---- the provider (tool.c) ---- */

/* The provider path: --provider, else $P11MTLS_PROVIDER, else the installed path. */
const char *tool_provider_path(const char *opt);
/* Registers the built-in provider as "p11mtls" in lc (not loaded yet); 1 on success. */
int tool_provider_builtin(OSSL_LIB_CTX *lc);
/* A private library context with the p11mtls provider and default. NULL (printed). */
OSSL_LIB_CTX *tool_libctx(const char *provider_path);
/*
 * The private key uri names, loaded through the provider in lc. pin_source and module
 * (may be NULL) go into the URI query (the provider takes no parameters when loaded by
 * path); a terminal prompt is offered through OpenSSL's UI otherwise.
 */
EVP_PKEY *tool_load_key(OSSL_LIB_CTX *lc, const char *uri, const char *pin_source,
                        const char *module);

/* ---- files (tool.c) ---- */

/* Opens path for writing ("-" or NULL: stdout) with the given mode for new files. */
BIO *tool_bio_out(const char *path, int mode);
/* Reads a certificate in PEM or DER. NULL (printed) on failure. */
X509 *tool_read_cert(const char *path);
/* Reads every PEM certificate of path. NULL (printed) on failure or when it has none. */
STACK_OF(X509) * tool_read_certs(const char *path);

#endif
