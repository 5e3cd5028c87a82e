/*
 * keycache.c - session copies of private keys, for tokens that sign faster with them.
 *
 * A software token (SoftHSM2) decodes a token object's key for every C_SignInit but
 * keeps a session object's key ready, so signing with a copy made by C_CopyObject with
 * CKA_TOKEN = false is up to 1.5x faster. The copy stays on the token: it is checked
 * to read back CKA_SENSITIVE = true, CKA_EXTRACTABLE = false, else it is destroyed and
 * the token object used.
 *
 * Session objects are visible to every session of the application and die with the
 * session that made them (PKCS#11 3.0, 4.4; SoftHSM2 does the same). So the copies are
 * made in a "keeper" session of their own, outside the pool, opened at the first copy
 * and kept: one copy per key per token, whatever the number of sessions or of key
 * references. Copies are private objects, which C_Logout destroys: a new login (the
 * core's login generation) closes the keeper, taking any survivor with it, and copies
 * are made again. After fork or a token removal the token's epoch changes: keeper and
 * copies are forgotten without a call (their handles mean nothing in the new module
 * instance) and made again at the next signature.
 *
 * Never for CKA_ALWAYS_AUTHENTICATE keys nor for CKA_COPYABLE = false ones; any refusal
 * leaves that key on its token object until the next epoch or login. Off unless
 * p11m_keycache_configure(1) was called and no caller asked for 0.
 */
#include <stdlib.h>

#include "p11m_int.h"

#define KC_MAX 16 /* distinct keys copied per token; more sign with the token object */

enum { KC_READY = 1, KC_REFUSED };

struct kc_entry {
    CK_OBJECT_HANDLE orig; /* the token object */
    CK_OBJECT_HANDLE copy;
    int state;
};

struct p11m_keycache {
    unsigned epoch;     /* the token epoch keeper and entries belong to */
    unsigned login_gen; /* the login they were made under */
    CK_SESSION_HANDLE keeper;
    int have_keeper;
    int busy; /* a thread is making a copy: the keeper is in use */
    struct kc_entry e[KC_MAX];
    size_t n;
};

static int kc_wanted, kc_refused;

void p11m_keycache_configure(int on)
{
    if (on)
        __atomic_store_n(&kc_wanted, 1, __ATOMIC_RELAXED);
    else
        __atomic_store_n(&kc_refused, 1, __ATOMIC_RELAXED); /* "no" from anyone wins */
}

int p11m_keycache_enabled(void)
{
    return __atomic_load_n(&kc_wanted, __ATOMIC_RELAXED) &&
           !__atomic_load_n(&kc_refused, __ATOMIC_RELAXED);
}

/* Caller holds tok->lock. Brings the cache to the token's epoch and login; returns the
 * keeper session to close (its copies may outlive a logout), or CK_INVALID_HANDLE. */
static CK_SESSION_HANDLE kc_sync(P11M_TOKEN *tok, struct p11m_keycache *kc)
{
    CK_SESSION_HANDLE stale = CK_INVALID_HANDLE;

    if (kc->epoch != tok->epoch) {
        /* fork, removal, re-initialisation: the handles died with the old state */
        kc->have_keeper = 0;
        kc->busy = 0;
    } else if (kc->login_gen != tok->login_gen) {
        if (kc->have_keeper && !kc->busy) {
            stale = kc->keeper;
            kc->have_keeper = 0;
        }
    } else {
        return CK_INVALID_HANDLE;
    }
    kc->epoch = tok->epoch;
    kc->login_gen = tok->login_gen;
    kc->n = 0;
    return stale;
}

static struct kc_entry *kc_find(struct p11m_keycache *kc, CK_OBJECT_HANDLE orig)
{
    for (size_t i = 0; i < kc->n; i++)
        if (kc->e[i].orig == orig)
            return &kc->e[i];
    return NULL;
}

/* The CK_BBOOL attributes types[0..n) of h, CK_UNAVAILABLE_INFORMATION-marked values
 * set to -1. CKR_OK or the token's rv. */
static CK_RV kc_read_bools(P11M_TOKEN *tok, CK_SESSION_HANDLE sess, CK_OBJECT_HANDLE h,
                           const CK_ATTRIBUTE_TYPE *types, int *v, int n)
{
    CK_BBOOL b[4];
    CK_ATTRIBUTE t[4];
    CK_RV rv;

    for (int i = 0; i < n; i++)
        t[i] = (CK_ATTRIBUTE){types[i], &b[i], sizeof(b[i])};
    rv = P11M_CALL(tok->mod, C_GetAttributeValue, sess, h, t, (CK_ULONG) n);
    if (rv != CKR_OK && rv != CKR_ATTRIBUTE_TYPE_INVALID)
        return rv;
    for (int i = 0; i < n; i++)
        v[i] = t[i].ulValueLen == sizeof(CK_BBOOL) ? b[i] == CK_TRUE : -1;
    return CKR_OK;
}

/* Whether the token object may be copied: copyable (or a token too old to say) and
 * without a per-signature login. */
static int kc_may_copy(P11M_TOKEN *tok, CK_SESSION_HANDLE sess, CK_OBJECT_HANDLE h)
{
    static const CK_ATTRIBUTE_TYPE types[2] = {CKA_COPYABLE, CKA_ALWAYS_AUTHENTICATE};
    int v[2];
    CK_RV rv = kc_read_bools(tok, sess, h, types, v, 2);

    if (rv != CKR_OK) {
        p11m_log(1, "key cache: key object %lu: C_GetAttributeValue: %s; no copy",
                 (unsigned long) h, p11m_ckr_name(rv));
        return 0;
    }
    if (v[0] == 0 || v[1] == 1) {
        p11m_log(1, "key cache: key object %lu is %s; signing with the token object",
                 (unsigned long) h,
                 v[0] == 0 ? "not copyable (CKA_COPYABLE false)" : "always-authenticate");
        return 0;
    }
    return 1;
}

/* The copy must stay as secret as its token object and must not reach the token. */
static int kc_copy_is_safe(P11M_TOKEN *tok, CK_SESSION_HANDLE sess, CK_OBJECT_HANDLE c)
{
    static const CK_ATTRIBUTE_TYPE types[3] = {CKA_TOKEN, CKA_SENSITIVE, CKA_EXTRACTABLE};
    int v[3];
    CK_RV rv = kc_read_bools(tok, sess, c, types, v, 3);

    if (rv == CKR_OK && v[0] == 0 && v[1] == 1 && v[2] == 0)
        return 1;
    p11m_log(1,
             "key cache: copy %lu reads token=%d sensitive=%d extractable=%d (%s), not "
             "false/true/false; destroyed, signing with the token object",
             (unsigned long) c, v[0], v[1], v[2], p11m_ckr_name(rv));
    return 0;
}

/* Makes the copy of orig in the keeper session (opened if need be). sess is a pooled
 * session of the caller, used for reading. 1 with *copy set, or 0. */
static int kc_make(P11M_TOKEN *tok, CK_SESSION_HANDLE sess, CK_SESSION_HANDLE *keeper,
                   int *have_keeper, CK_OBJECT_HANDLE orig, CK_OBJECT_HANDLE *copy)
{
    CK_BBOOL no = CK_FALSE;
    CK_ATTRIBUTE tmpl[] = {{CKA_TOKEN, &no, sizeof(no)}};
    CK_RV rv;

    if (!kc_may_copy(tok, sess, orig))
        return 0;
    if (!*have_keeper) {
        rv = P11M_CALL(tok->mod, C_OpenSession, tok->slot, CKF_SERIAL_SESSION, NULL, NULL,
                       keeper);
        if (rv != CKR_OK) {
            p11m_log(1, "key cache: no session to keep copies in (%s)",
                     p11m_ckr_name(rv));
            return 0;
        }
        *have_keeper = 1;
    }
    rv = P11M_CALL(tok->mod, C_CopyObject, *keeper, orig, tmpl, 1, copy);
    if (rv != CKR_OK) {
        p11m_log(1, "key cache: the token refused a session copy of key object %lu (%s)",
                 (unsigned long) orig, p11m_ckr_name(rv));
        return 0;
    }
    if (!kc_copy_is_safe(tok, sess, *copy)) {
        P11M_CALL(tok->mod, C_DestroyObject, *keeper, *copy);
        return 0;
    }
    p11m_log(1, "key cache: key object %lu has session copy %lu", (unsigned long) orig,
             (unsigned long) *copy);
    return 1;
}

CK_OBJECT_HANDLE p11m_keycache_pick(P11M_TOKEN *tok, CK_SESSION_HANDLE sess,
                                    CK_OBJECT_HANDLE h, int always_auth)
{
    struct p11m_keycache *kc;
    struct kc_entry *e;
    CK_SESSION_HANDLE stale, keeper;
    CK_OBJECT_HANDLE copy = CK_INVALID_HANDLE;
    unsigned epoch, gen;
    int have_keeper, ok;

    if (always_auth || !p11m_keycache_enabled())
        return h;
    pthread_mutex_lock(&tok->lock);
    if (tok->kc == NULL && (tok->kc = calloc(1, sizeof(*tok->kc))) != NULL)
        tok->kc->epoch = tok->epoch - 1; /* synced below */
    if ((kc = tok->kc) == NULL) {
        pthread_mutex_unlock(&tok->lock);
        return h;
    }
    stale = kc_sync(tok, kc);
    if ((e = kc_find(kc, h)) != NULL || kc->busy || kc->n == KC_MAX) {
        copy = e != NULL && e->state == KC_READY ? e->copy : h;
        pthread_mutex_unlock(&tok->lock);
        if (stale != CK_INVALID_HANDLE)
            P11M_CALL(tok->mod, C_CloseSession, stale);
        return copy;
    }
    /* This thread makes the copy; others sign with the token object meanwhile. */
    kc->busy = 1;
    epoch = kc->epoch;
    gen = kc->login_gen;
    keeper = kc->keeper;
    have_keeper = kc->have_keeper;
    pthread_mutex_unlock(&tok->lock);
    if (stale != CK_INVALID_HANDLE)
        P11M_CALL(tok->mod, C_CloseSession, stale);

    ok = kc_make(tok, sess, &keeper, &have_keeper, h, &copy);

    stale = CK_INVALID_HANDLE;
    pthread_mutex_lock(&tok->lock);
    if (kc->epoch == epoch)
        kc->busy = 0; /* ours; a new epoch's flag belongs to another thread */
    if (kc->epoch == epoch && kc->login_gen == gen) {
        kc->keeper = keeper;
        kc->have_keeper = have_keeper;
        kc->e[kc->n++] = (struct kc_entry){h, copy, ok ? KC_READY : KC_REFUSED};
    } else {
        /* Reset meanwhile. A new epoch took keeper and copy with it; after a new
         * login, close the keeper so that no copy outlives it. */
        if (kc->epoch == epoch && have_keeper)
            stale = keeper;
        ok = 0;
    }
    pthread_mutex_unlock(&tok->lock);
    if (stale != CK_INVALID_HANDLE)
        P11M_CALL(tok->mod, C_CloseSession, stale);
    return ok ? copy : h;
}

void p11m_keycache_lost(P11M_TOKEN *tok, CK_OBJECT_HANDLE copy)
{
    pthread_mutex_lock(&tok->lock);
    for (size_t i = 0; tok->kc != NULL && i < tok->kc->n; i++) {
        if (tok->kc->e[i].state == KC_READY && tok->kc->e[i].copy == copy) {
            /* Not copied again before the next login or epoch: a token that drops
             * copies signs with its token objects. */
            tok->kc->e[i].state = KC_REFUSED;
            p11m_log(1, "key cache: session copy %lu is gone", (unsigned long) copy);
        }
    }
    pthread_mutex_unlock(&tok->lock);
}
