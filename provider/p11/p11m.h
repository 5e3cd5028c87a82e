/*
 * p11m.h - the shared PKCS#11 core of p11mtls.
 *
 * Used by the provider (provider/) and the command-line tool (tokens/). It owns the
 * PKCS#11 side of things: loading modules through p11-kit, finding tokens and objects
 * by RFC 7512 URI (parsed and matched by p11-kit), a session pool per token, login with
 * PIN sources, and the recovery after fork or token removal. It knows nothing of EVP:
 * callers turn attributes into OpenSSL objects themselves.
 *
 * Errors: every function that can fail returns a CK_RV (functions that make an object
 * return it, or NULL). A failed operation has raised one error through p11m_raise() (see
 * the error sink) before it returns, naming the cause and, where a token said no, the
 * PKCS#11 function and the CKR_ name; its CK_RV is the token's, or the standard code
 * closest to the cause (CKR_HOST_MEMORY, CKR_TOKEN_NOT_PRESENT, CKR_PIN_INCORRECT, ...).
 * Callers pass a failed CK_RV on and raise nothing more. The exceptions raise nothing and
 * say so where they are declared: P11M_CALL, and the primitives of one PKCS#11 call each
 * that the tool words its own messages for (provisioning, p11m_find_handles, ...).
 * Predicates ("has", "is", "whether") return 1 or 0 and never fail.
 */
#ifndef P11M_H
#define P11M_H

#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <p11-kit/pkcs11.h>
#include <p11-kit/uri.h>

/* ---- errors and logging (error.c, log.c) ---- */

enum p11m_reason {
    P11M_R_MODULE_LOAD = 1, /* module not loadable or C_Initialize failed */
    P11M_R_NO_TOKEN,        /* no token matches the URI */
    P11M_R_PIN_MISSING,     /* a login is needed and no PIN source gives a PIN */
    P11M_R_PIN_INCORRECT,   /* the token refused the PIN (never tried again) */
    P11M_R_PIN_LOCKED,      /* PIN locked, on its final try, or expired: no login tried */
    P11M_R_NO_OBJECT,       /* no object matches the URI */
    P11M_R_MECHANISM,       /* the token has no mechanism for the requested scheme */
    P11M_R_TOKEN_ERROR,     /* any other failure reported by the token */
    P11M_R_BAD_URI,         /* not a pkcs11: URI p11-kit accepts */
    P11M_R_BAD_CONFIG,      /* unknown parameter or unusable value */
    P11M_R_PIN_SOURCE,      /* PIN source unreadable, empty or insecure */
    P11M_R_TOKEN_ABSENT,    /* the token was removed */
    P11M_R_INTERNAL,        /* out of memory, bad arguments, bug */
    P11M_R_UNSUPPORTED,     /* key type or operation p11mtls does not support */
    P11M_R_MAX
};

const char *p11m_reason_string(int reason);
const char *p11m_ckr_name(CK_RV rv);
/* The reason a CK_RV falls under (PIN_INCORRECT for CKR_PIN_INCORRECT, ...). */
int p11m_ckr_reason(CK_RV rv);

/*
 * Where raised errors go: to the sink of the innermost error scope of the calling
 * thread. Whoever calls into the core opens a scope for the call: the provider with the
 * provider context of the operation (its errors reach that context's error upcalls),
 * the tool with its own printer. There is no process-wide sink. Outside any scope an
 * error is only kept as the thread's last message (p11m_last_error()) and logged.
 */
typedef void p11m_error_sink_fn(void *arg, int reason, const char *file, int line,
                                const char *func, const char *msg);
typedef struct p11m_err_scope {
    p11m_error_sink_fn *fn;
    void *arg;
    struct p11m_err_scope *prev;
} P11M_ERR_SCOPE;
/* Until the matching leave, errors raised on this thread go to fn(arg). Scopes nest;
 * scope lives on the caller's stack. */
void p11m_err_scope_enter(P11M_ERR_SCOPE *scope, p11m_error_sink_fn *fn, void *arg);
void p11m_err_scope_leave(P11M_ERR_SCOPE *scope);
void p11m_raise_(int reason, const char *file, int line, const char *func,
                 const char *fmt, ...) __attribute__((format(printf, 5, 6)));
#define p11m_raise(reason, ...)                                                          \
    p11m_raise_((reason), __FILE__, __LINE__, __func__, __VA_ARGS__)
/* Raises for a failed PKCS#11 call: "<what>: <fn>: CKR_xxx", reason from the CK_RV. */
#define p11m_raise_ckr(rv, fn, ...)                                                      \
    p11m_raise_ckr_((rv), (fn), __FILE__, __LINE__, __func__, __VA_ARGS__)
void p11m_raise_ckr_(CK_RV rv, const char *fn, const char *file, int line,
                     const char *func, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
const char *p11m_last_error(int *reason);
/*
 * Retry loops hold errors: while held, a raised error is only remembered (the last one);
 * releasing with emit=1 passes it to the sink, with emit=0 drops it, so an attempt that a
 * retry made good leaves nothing on the program's error queue.
 */
void p11m_error_hold(void);
void p11m_error_release(int emit);
/* Records reason/msg as the thread's last error and logs it, without the sink (for
 * callers that raise through their own channel). */
void p11m_note_error(int reason, const char *msg);

/*
 * Debug log: level 0 off, 1 decisions and errors, 2 every PKCS#11 call. Set from
 * P11MTLS_DEBUG ("N" or "N,file:/path") at first use, or by p11m_log_setup(). A PIN is
 * never logged at any level.
 */
extern int p11m_log_level;
int p11m_log_setup(int level, const char *path);
/* Reads P11MTLS_DEBUG once; called by every entry point that may log. */
void p11m_log_init(void);
void p11m_log_(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define p11m_log(level, ...)                                                             \
    do {                                                                                 \
        if (p11m_log_level >= (level))                                                   \
            p11m_log_((level), __VA_ARGS__);                                             \
    } while (0)

/* ---- modules (module.c) ---- */

typedef struct p11m_module P11M_MODULE;

/*
 * Every PKCS#11 call goes through this: it calls fn on the module's function list and
 * logs name and result at level 2. It raises nothing: callers add the context.
 */
#define P11M_CALL(mod, fn, ...) p11m_call_done((mod), #fn, (mod)->fl->fn(__VA_ARGS__))
CK_RV p11m_call_done(const P11M_MODULE *mod, const char *name, CK_RV rv);

struct p11m_module {
    CK_FUNCTION_LIST *fl; /* read-only after load */
    char *path;
    char *init_args;
    CK_INFO info;
    unsigned generation; /* fork generation at the last C_Initialize */
    unsigned epoch;      /* bumped by every re-initialisation */
    int shared;          /* initialised by someone else first: never finalised by us */
    /* The module keeps its state across fork (tpm2-pkcs11: C_Initialize in the child
     * answers CKR_CRYPTOKI_ALREADY_INITIALIZED and the child would share the parent's TPM
     * session): a child that inherited it must not use it, nor finalise it. */
    int fork_unsafe;
    unsigned born; /* fork generation the module was loaded in */
    /* Held for reading while a session is checked out (and around slot listing), for
     * writing while the module is re-initialised: C_Finalize never runs under a call. */
    pthread_rwlock_t use_lock;
    long long last_reinit_ms;
    int reinit_streak; /* re-initialisations since a session last opened */
};

/*
 * The module for path (NULL or "": the default, p11-kit's proxy) with init_args (may be
 * NULL), loaded and initialised on first request. Modules stay loaded for the life of the
 * process and are never finalised: several tokens' modules (SoftHSM2 among them) crash
 * when finalised after their own static destructors ran at exit.
 */
P11M_MODULE *p11m_module_get(const char *path, const char *init_args);
/* After fork, re-initialises the module in the child. Cheap when nothing changed. */
CK_RV p11m_module_check_fork(P11M_MODULE *mod);
/*
 * Finalises and initialises the module again, so a module that only scans for tokens at
 * initialisation (SoftHSM2) sees a token that came back. At most once a second per
 * module (after ten in a row with no session opened since, every 2, 4, 8, 16, then 30 s),
 * and never for a module that the program or another library initialised first
 * (finalising it would end their sessions); never call it while holding a session of
 * the module. 1 if it re-initialised.
 */
int p11m_module_reinit(P11M_MODULE *mod);
/* A session opened on one of the module's tokens: re-initialisations go fast again. */
void p11m_module_token_seen(P11M_MODULE *mod);
/* Whether the module is known not to notice fork (see fork_unsafe), from its library
 * information or from a PKCS#11 module file name. */
int p11m_module_info_fork_unsafe(const CK_INFO *info, const char *path);
/* Read lock around use of the module, released by p11m_module_release. */
CK_RV p11m_module_acquire(P11M_MODULE *mod);
void p11m_module_release(P11M_MODULE *mod);
/* Fork generation: bumped in every child after fork. */
unsigned p11m_fork_generation(void);

/* ---- PIN sources (pin.c) ---- */

/*
 * A PIN source: "file:/ABSOLUTE/PATH" or "env:NAME", with the rules of p11m_util.h
 * (shared with the preload library and the tool), or a literal given in a URI as
 * pin-value. The PIN is read when a login needs it, passed to C_Login and cleansed at
 * once; it is never copied anywhere else.
 */
typedef struct p11m_pin {
    char buf[256];
    size_t len;
} P11M_PIN;
/* Checks the syntax of a PIN source spec without reading it. 1 if usable. */
int p11m_pin_source_valid(const char *spec);
/* Reads the PIN from spec into pin (reason PIN_SOURCE on failure). */
CK_RV p11m_pin_load(const char *spec, P11M_PIN *pin);
void p11m_pin_cleanse(P11M_PIN *pin);

/*
 * How a login obtains its PIN, tried in order: a pin-value from the URI, a pin-source
 * from the URI, the configured source, then the callback (an application's passphrase
 * callback, or the tool's no-echo prompt). The callback writes at most pin->buf's size
 * and returns 1 on success.
 */
typedef int p11m_pin_cb(P11M_PIN *pin, const char *prompt_info, void *arg);
typedef struct p11m_login_info {
    const char *pin_value;  /* from the URI; may be NULL */
    const char *pin_source; /* from the URI, else from the configuration; may be NULL */
    p11m_pin_cb *cb;        /* may be NULL */
    void *cb_arg;
} P11M_LOGIN_INFO;

/* ---- tokens, sessions and login (token.c, session.c) ---- */

typedef struct p11m_token P11M_TOKEN;

/*
 * Tokens are found by URI: module-path/module-name pick the module (default: the
 * configured one), then every slot with a token whose module, slot and token info match
 * the URI (p11_kit_uri_match_*) and, if the URI names one, slot-id. Token entries live as
 * long as the process; a token that goes away is marked absent and found again when it
 * comes back.
 */
typedef struct p11m_token_list {
    P11M_TOKEN **v;
    size_t n;
    size_t seen; /* initialised tokens the module showed, matching or not */
} P11M_TOKEN_LIST;
/* Fills list with the present tokens of module mod matching uri; CKR_OK with n == 0 when
 * none matches. */
CK_RV p11m_token_list_fill(P11M_MODULE *mod, P11KitUri *uri, P11M_TOKEN_LIST *list);
void p11m_token_list_free(P11M_TOKEN_LIST *list);

P11M_MODULE *p11m_token_module(const P11M_TOKEN *tok);
CK_SLOT_ID p11m_token_slot(const P11M_TOKEN *tok);
/* Token info as read when found or last refreshed (label etc. are blank-padded). */
const CK_TOKEN_INFO *p11m_token_info(const P11M_TOKEN *tok);
/* Fresh token info from the token (flags for PIN state change). Raises nothing: the
 * caller says what it needed the flags for. */
CK_RV p11m_token_refresh_info(P11M_TOKEN *tok);
/* Label without the padding, in buf. */
const char *p11m_token_label(const P11M_TOKEN *tok, char *buf, size_t len);
/* Whether the token's mechanism list (read once) has mech. */
int p11m_token_has_mech(P11M_TOKEN *tok, CK_MECHANISM_TYPE mech);

/*
 * Session pool: one mutex, sessions handed out one per operation. A session returned
 * with a CK_RV that says it is dead (session closed, device removed, ...) is dropped.
 * RW sessions are for provisioning (key generation, import) and are not pooled.
 */
CK_RV p11m_session_get(P11M_TOKEN *tok, CK_SESSION_HANDLE *sess);
void p11m_session_put(P11M_TOKEN *tok, CK_SESSION_HANDLE sess, CK_RV last_rv);
CK_RV p11m_session_open_rw(P11M_TOKEN *tok, CK_SESSION_HANDLE *sess);
void p11m_session_close(P11M_TOKEN *tok, CK_SESSION_HANDLE sess);

/*
 * Ensures the user is logged in to tok (token-wide in PKCS#11). Checks the token's PIN
 * flags first and refuses a locked, final-try or must-change PIN without calling C_Login.
 * A PIN the token refused is remembered, and every later login on that token in this
 * process fails at once with PIN_INCORRECT. Only one thread logs in at a time; no lock is
 * held while the PIN callback runs.
 */
CK_RV p11m_token_login(P11M_TOKEN *tok, const P11M_LOGIN_INFO *li);
/* Whether this process is logged in to tok, checked on sess when it believes so. */
int p11m_logged_in(P11M_TOKEN *tok, CK_SESSION_HANDLE sess);
/* Forgets the logged-in state (after CKR_USER_NOT_LOGGED_IN) so the next login logs
 * in again. A refused PIN stays refused. */
void p11m_login_lost(P11M_TOKEN *tok);
/* SO login on a RW session, for provisioning (tool only). */
CK_RV p11m_token_login_so(P11M_TOKEN *tok, CK_SESSION_HANDLE sess,
                          const P11M_LOGIN_INFO *li);
/* Number of C_Login calls this process made (for tests). */
unsigned long p11m_login_count(void);

/*
 * PINs a token refused, recorded for every process of the device (refusal.c). The
 * directory: $P11MTLS_RUNTIME_DIR (not in setuid programs), /run/p11mtls for root, else
 * $XDG_RUNTIME_DIR/p11mtls; 0 when there is none. p11m_refusal_path: the token's record.
 * p11m_refusal_open locks the record (-1: none, logged); p11m_refusal_check raises
 * P11M_R_PIN_INCORRECT and returns 1 when this PIN was refused before.
 */
int p11m_refusal_dir(char *buf, size_t len);
int p11m_refusal_path(const CK_TOKEN_INFO *ti, char *buf, size_t len);
int p11m_refusal_open(const CK_TOKEN_INFO *ti);
void p11m_refusal_close(int fd);
int p11m_refusal_check(int fd, const char *label, const char *from, const P11M_PIN *pin);
void p11m_refusal_record(int fd, const CK_TOKEN_INFO *ti, const char *source,
                         const P11M_PIN *pin);

/* ---- objects (object.c) ---- */

/*
 * An object on a token, found by URI. The object keeps what is needed to find it again
 * (class, CKA_ID, label) so that after fork or token re-insertion its handle is refreshed
 * transparently. Before login, a private key is found through its public half or
 * certificate (same CKA_ID), and its handle is looked up at first use, after login; once
 * logged in, only private keys that are really there are found. With nothing public to
 * go by, a login is tried only when one of the tokens searched has a user PIN.
 */
typedef struct p11m_obj P11M_OBJ;

typedef struct p11m_find_args {
    P11KitUri *uri;      /* object attributes (id, object, type) and token filter */
    CK_OBJECT_CLASS cls; /* class wanted, or (CK_OBJECT_CLASS)-1 for what the URI says */
    P11M_LOGIN_INFO *li; /* used to log in when a private key needs it; may be NULL */
    const unsigned char *subject; /* DER subject a certificate must have; may be NULL */
    size_t subject_len;
} P11M_FIND_ARGS;

/*
 * Calls cb once per matching object (certificates, public keys, private keys, in that
 * order per token); cb takes a reference it must drop with p11m_obj_free and returns 0 to
 * stop. *count (may be NULL): the number of objects passed to cb. A failure on one token
 * does not hide what another had: CKR_OK if any object was found.
 */
typedef int p11m_obj_cb(P11M_OBJ *obj, void *arg);
CK_RV p11m_obj_find(P11M_MODULE *mod, const P11M_FIND_ARGS *args, p11m_obj_cb *cb,
                    void *arg, size_t *count);

P11M_OBJ *p11m_obj_ref(P11M_OBJ *obj);
void p11m_obj_free(P11M_OBJ *obj);
CK_OBJECT_CLASS p11m_obj_class(const P11M_OBJ *obj);
CK_KEY_TYPE p11m_obj_key_type(const P11M_OBJ *obj); /* CKK_*, or -1 for certificates */
P11M_TOKEN *p11m_obj_token(const P11M_OBJ *obj);
const unsigned char *p11m_obj_id(const P11M_OBJ *obj, size_t *len);
const char *p11m_obj_label(const P11M_OBJ *obj); /* "" when none */
/* Whether the private key needs C_Login(CKU_CONTEXT_SPECIFIC) after each C_SignInit. */
int p11m_obj_always_authenticate(const P11M_OBJ *obj);
/* The login info remembered from the URI that found the object (for re-login). */
const P11M_LOGIN_INFO *p11m_obj_login_info(const P11M_OBJ *obj);

/*
 * Public material, read at find time and cached (no token access afterwards):
 * CKA_VALUE (certificate DER), CKA_MODULUS, CKA_PUBLIC_EXPONENT, CKA_EC_PARAMS,
 * CKA_EC_POINT (as the token gives it), CKA_SUBJECT, CKA_ISSUER, CKA_SERIAL_NUMBER,
 * CKA_ALLOWED_MECHANISMS. For a private key these come from its public key or
 * certificate when the private object does not carry them. NULL when absent.
 */
const unsigned char *p11m_obj_attr(const P11M_OBJ *obj, CK_ATTRIBUTE_TYPE type,
                                   size_t *len);

/*
 * The object's handle in sess, valid in this process generation: after fork or token
 * re-insertion it is looked up again; for a private key this logs in first. CKR_OK or an
 * error rv (raised).
 */
CK_RV p11m_obj_handle(P11M_OBJ *obj, CK_SESSION_HANDLE sess, CK_OBJECT_HANDLE *h);

/* The object's own URI (token, id, object, type), allocated with malloc. */
char *p11m_obj_uri(const P11M_OBJ *obj);

/*
 * One-shot signature on the token with the object's private key: one session checkout,
 * C_SignInit, C_Sign (two calls when sig is NULL only to size it: pass sig NULL to get
 * the length). Logs in as needed, re-logs in once after CKR_USER_NOT_LOGGED_IN, does the
 * context-specific login for CKA_ALWAYS_AUTHENTICATE keys. CKR_OK or error rv (raised).
 */
CK_RV p11m_sign(P11M_OBJ *key, CK_MECHANISM *mech, const unsigned char *in, size_t inlen,
                unsigned char *sig, size_t *siglen);

/* ---- finding, slots and provisioning (object.c, token.c, provision.c) ---- */

/*
 * The one C_FindObjectsInit / C_FindObjects / C_FindObjectsFinal of the core: handles
 * of the objects matching template t[0..nt-1] on session s, at most cap into h (one
 * C_FindObjects call). With h NULL, counts every match instead. CKR_OK or the first
 * error rv (raises nothing).
 */
CK_RV p11m_find_handles(P11M_MODULE *mod, CK_SESSION_HANDLE s, const CK_ATTRIBUTE *t,
                        CK_ULONG nt, CK_OBJECT_HANDLE *h, CK_ULONG cap, CK_ULONG *n);
/*
 * The slots of mod with a token present, in *slots (malloc'd, never NULL on success even
 * when *n is 0). CKR_OK or the error rv (raises nothing). Callers sharing the module with
 * other threads hold its use lock (p11m_module_acquire).
 */
CK_RV p11m_module_slots(P11M_MODULE *mod, CK_SLOT_ID **slots, CK_ULONG *n);

/*
 * Provisioning, for the tool: each is one PKCS#11 call and returns its CK_RV, raising
 * nothing (the caller names the step that failed). Slot-level calls work on tokens
 * that p11m_token_list_fill does not show (uninitialised ones).
 */
CK_RV p11m_slot_token_info(P11M_MODULE *mod, CK_SLOT_ID slot, CK_TOKEN_INFO *info);
/* Objects visible without login, on a session of its own that is closed again (so that
 * C_InitToken may follow). */
CK_RV p11m_slot_count_objects(P11M_MODULE *mod, CK_SLOT_ID slot, CK_ULONG *count);
CK_RV p11m_slot_init_token(P11M_MODULE *mod, CK_SLOT_ID slot, const P11M_PIN *so,
                           const CK_UTF8CHAR label[32]);
CK_RV p11m_session_login_pin(P11M_TOKEN *tok, CK_SESSION_HANDLE s, CK_USER_TYPE user,
                             const P11M_PIN *pin);
CK_RV p11m_session_init_pin(P11M_TOKEN *tok, CK_SESSION_HANDLE s, const P11M_PIN *pin);
CK_RV p11m_session_logout(P11M_TOKEN *tok, CK_SESSION_HANDLE s);
CK_RV p11m_object_create(P11M_TOKEN *tok, CK_SESSION_HANDLE s, CK_ATTRIBUTE *t,
                         CK_ULONG n, CK_OBJECT_HANDLE *h);
CK_RV p11m_object_destroy(P11M_TOKEN *tok, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h);
CK_RV p11m_object_get_attrs(P11M_TOKEN *tok, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h,
                            CK_ATTRIBUTE *t, CK_ULONG n);
/* Relabelling and the like (CKA_LABEL, CKA_ID). */
CK_RV p11m_object_set_attrs(P11M_TOKEN *tok, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h,
                            CK_ATTRIBUTE *t, CK_ULONG n);
CK_RV p11m_keypair_generate(P11M_TOKEN *tok, CK_SESSION_HANDLE s, CK_MECHANISM *mech,
                            CK_ATTRIBUTE *pubt, CK_ULONG npub, CK_ATTRIBUTE *privt,
                            CK_ULONG npriv, CK_OBJECT_HANDLE *pub,
                            CK_OBJECT_HANDLE *priv);

/*
 * Session copies of private keys (keycache.c): p11m_sign signs with a copy of the key
 * made by C_CopyObject with CKA_TOKEN = false (faster on software tokens), where the
 * token allows it. Off until a caller configures 1; a 0 from any caller keeps it off.
 */
void p11m_keycache_configure(int on);
int p11m_keycache_enabled(void);

/* ---- URIs (uri.c) ---- */

/* Parses s (raises BAD_URI naming what p11-kit said). Caller frees with p11_kit_uri_free.
 */
P11KitUri *p11m_uri_parse(const char *s);
/* The module that uri names with module-path / module-name, else the one given by
 * default_path/init_args. */
P11M_MODULE *p11m_uri_module(P11KitUri *uri, const char *default_path,
                             const char *init_args);
/* Copies s with pin-value redacted, for log messages. Caller frees. */
char *p11m_uri_redact(const char *s);

#endif /* P11M_H */
