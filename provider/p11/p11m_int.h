/*
 * p11m_int.h - what token.c, session.c and object.c share inside the core.
 */
#ifndef P11M_INT_H
#define P11M_INT_H

#include <pthread.h>

#include "p11m.h"

#define P11M_POOL_MAX 8

struct p11m_token {
    P11M_MODULE *mod;
    CK_SLOT_ID slot;
    CK_TOKEN_INFO info;

    /* The one lock of the token: pool, login state, epoch. Never held across a PKCS#11
     * call that may block on the user, nor across callbacks. */
    pthread_mutex_t lock;
    CK_SESSION_HANDLE idle[P11M_POOL_MAX];
    size_t n_idle;
    /* Bumped whenever handles of this token may have gone stale: fork, removal. */
    unsigned epoch;
    unsigned mod_epoch; /* the module's epoch this entry was last valid in */
    int absent;
    int logged_in;
    int pin_refused;
    pthread_mutex_t login_lock; /* serialises C_Login; taken after the PIN is in hand */

    CK_MECHANISM_TYPE *mechs;
    CK_ULONG n_mechs;
    int fork_unsafe; /* served by a module that does not notice fork (module.c) */

    unsigned login_gen;       /* bumped by every change to logged in (keycache.c) */
    struct p11m_keycache *kc; /* session copies of keys (keycache.c); under lock */
};

/* Fails (CKR_FUNCTION_REJECTED) in a forked child when the token's module kept the
 * parent's state: using it there would break the parent's sessions. */
CK_RV p11m_token_fork_guard(P11M_TOKEN *tok);

/* Drops pooled sessions and login state if the module was re-initialised since the
 * last use (after fork, token.c's atfork handler has done so already). */
void p11m_token_check_fork(P11M_TOKEN *tok);
/* Makes sure the entry still points at its token (same label and serial), finding it in
 * another slot if it moved; CKR_TOKEN_NOT_PRESENT when it is nowhere. */
CK_RV p11m_token_revalidate(P11M_TOKEN *tok);
/* Marks the token gone: idle sessions closed, login forgotten, object handles stale.
 * Caller is inside the module (p11m_module_acquire). */
void p11m_token_mark_absent(P11M_TOKEN *tok);
unsigned p11m_token_epoch(P11M_TOKEN *tok);
/* Whether rv says the session (or the whole token) is no longer usable. */
int p11m_rv_session_dead(CK_RV rv);
int p11m_rv_token_gone(CK_RV rv);

/*
 * Session copies of private keys (keycache.c). With the pooled session sess checked
 * out, the handle to sign with for token object h: its session copy (made now if need
 * be) or h itself. _lost: the token said the copy's handle is invalid.
 */
CK_OBJECT_HANDLE p11m_keycache_pick(P11M_TOKEN *tok, CK_SESSION_HANDLE sess,
                                    CK_OBJECT_HANDLE h, int always_auth);
void p11m_keycache_lost(P11M_TOKEN *tok, CK_OBJECT_HANDLE copy);
#endif

#ifndef P11M_INT_LOGIN
#define P11M_INT_LOGIN
/* C_Login(CKU_CONTEXT_SPECIFIC) right after C_SignInit, for CKA_ALWAYS_AUTHENTICATE keys.
 */
CK_RV p11m_token_login_context(P11M_TOKEN *tok, CK_SESSION_HANDLE sess,
                               const P11M_LOGIN_INFO *li);
#endif
