/*
 * session.c - the session pool of a token: one lock, one pass. A caller takes an idle
 * session or opens a new one, and gives it back with the last CK_RV it saw, which
 * decides whether the session is kept, closed, or the token is marked gone.
 */
#include "p11m_int.h"

/* Inside the module, ready to use the token (after fork too), or failed (raised). */
static CK_RV session_enter(P11M_TOKEN *tok)
{
    CK_RV rv;

    if ((rv = p11m_token_fork_guard(tok)) != CKR_OK ||
        (rv = p11m_module_check_fork(tok->mod)) != CKR_OK ||
        (rv = p11m_module_acquire(tok->mod)) != CKR_OK)
        return rv;
    p11m_token_check_fork(tok);
    return CKR_OK;
}

CK_RV p11m_session_get(P11M_TOKEN *tok, CK_SESSION_HANDLE *sess)
{
    CK_RV rv;

    if ((rv = session_enter(tok)) != CKR_OK)
        return rv;
    pthread_mutex_lock(&tok->lock);
    if (tok->n_idle > 0) {
        *sess = tok->idle[--tok->n_idle];
        pthread_mutex_unlock(&tok->lock);
        return CKR_OK;
    }
    pthread_mutex_unlock(&tok->lock);
    rv = P11M_CALL(tok->mod, C_OpenSession, tok->slot, CKF_SERIAL_SESSION, NULL, NULL,
                   sess);
    if (rv == CKR_OK) {
        p11m_module_token_seen(tok->mod);
        return CKR_OK;
    }
    if (p11m_rv_token_gone(rv))
        p11m_token_mark_absent(tok);
    p11m_module_release(tok->mod);
    if (p11m_rv_token_gone(rv)) {
        p11m_raise(P11M_R_TOKEN_ABSENT, "token in slot %lu of %s is not present (%s)",
                   tok->slot, tok->mod->path, p11m_ckr_name(rv));
    } else {
        p11m_raise_ckr(rv, "C_OpenSession", "opening a session on slot %lu", tok->slot);
    }
    return rv;
}

void p11m_session_put(P11M_TOKEN *tok, CK_SESSION_HANDLE sess, CK_RV last_rv)
{
    if (p11m_rv_token_gone(last_rv)) {
        P11M_CALL(tok->mod, C_CloseSession, sess); /* frees the module's state */
        p11m_token_mark_absent(tok);
        p11m_module_release(tok->mod);
        return;
    }
    if (!p11m_rv_session_dead(last_rv)) {
        pthread_mutex_lock(&tok->lock);
        if (tok->n_idle < P11M_POOL_MAX) {
            tok->idle[tok->n_idle++] = sess;
            sess = CK_INVALID_HANDLE;
        }
        pthread_mutex_unlock(&tok->lock);
    }
    if (sess != CK_INVALID_HANDLE)
        P11M_CALL(tok->mod, C_CloseSession, sess);
    p11m_module_release(tok->mod);
}

CK_RV p11m_session_open_rw(P11M_TOKEN *tok, CK_SESSION_HANDLE *sess)
{
    CK_RV rv;

    /* Held until p11m_session_close, like a pooled session. */
    if ((rv = session_enter(tok)) != CKR_OK)
        return rv;
    rv = P11M_CALL(tok->mod, C_OpenSession, tok->slot,
                   CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, sess);
    if (rv == CKR_OK)
        return CKR_OK;
    p11m_module_release(tok->mod);
    p11m_raise_ckr(rv, "C_OpenSession", "opening a read-write session on slot %lu",
                   tok->slot);
    return rv;
}

void p11m_session_close(P11M_TOKEN *tok, CK_SESSION_HANDLE sess)
{
    P11M_CALL(tok->mod, C_CloseSession, sess);
    p11m_module_release(tok->mod);
}
