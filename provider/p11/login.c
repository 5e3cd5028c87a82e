/*
 * login.c - user login with PIN sources. The rules that protect a token from lockout:
 * check the PIN flags before trying, try a PIN at most once per token and process, and
 * never hold a lock while a PIN callback (which may prompt) runs.
 */
#include <string.h>

#include "p11m_int.h"

static unsigned long login_calls;

unsigned long p11m_login_count(void)
{
    return __atomic_load_n(&login_calls, __ATOMIC_SEQ_CST);
}

static int login_state(P11M_TOKEN *tok, int *refused)
{
    int in;

    p11m_token_check_fork(tok);
    pthread_mutex_lock(&tok->lock);
    in = tok->logged_in;
    *refused = tok->pin_refused;
    pthread_mutex_unlock(&tok->lock);
    return in;
}

static void login_set(P11M_TOKEN *tok, int in, int refused)
{
    pthread_mutex_lock(&tok->lock);
    if (in && !tok->logged_in)
        tok->login_gen++; /* a logout destroyed private session objects (keycache.c) */
    tok->logged_in = in;
    tok->pin_refused |= refused;
    pthread_mutex_unlock(&tok->lock);
}

/* *in: whether a session already sees a logged-in user (login state is token-wide). */
static CK_RV login_session_says_in(P11M_TOKEN *tok, int *in)
{
    CK_SESSION_HANDLE sess;
    CK_SESSION_INFO si;
    CK_RV rv;

    if ((rv = p11m_session_get(tok, &sess)) != CKR_OK)
        return rv;
    rv = P11M_CALL(tok->mod, C_GetSessionInfo, sess, &si);
    p11m_session_put(tok, sess, rv);
    if (rv != CKR_OK) {
        p11m_raise_ckr(rv, "C_GetSessionInfo", "checking the login state");
        return rv;
    }
    *in = si.state == CKS_RO_USER_FUNCTIONS || si.state == CKS_RW_USER_FUNCTIONS;
    return CKR_OK;
}

static CK_RV login_check_flags(P11M_TOKEN *tok, const char *label)
{
    CK_FLAGS f;
    CK_RV rv = p11m_token_refresh_info(tok);

    if (rv != CKR_OK) {
        p11m_raise_ckr(rv, "C_GetTokenInfo", "token '%s'", label);
        return rv;
    }
    f = tok->info.flags;
    if (f & CKF_USER_PIN_LOCKED) {
        p11m_raise(P11M_R_PIN_LOCKED, "token '%s': user PIN is locked; no login tried",
                   label);
        return CKR_PIN_LOCKED;
    }
    if (f & CKF_USER_PIN_FINAL_TRY) {
        p11m_raise(
            P11M_R_PIN_LOCKED,
            "token '%s': user PIN is on its final try; no login tried, so a wrong "
            "PIN cannot lock it (log in once with the right PIN to reset the count)",
            label);
        return CKR_PIN_LOCKED;
    }
    if (f & CKF_USER_PIN_TO_BE_CHANGED) {
        p11m_raise(P11M_R_PIN_LOCKED,
                   "token '%s': user PIN must be changed first; no login tried", label);
        return CKR_PIN_EXPIRED;
    }
    if (!(f & CKF_USER_PIN_INITIALIZED)) {
        p11m_raise(P11M_R_PIN_MISSING, "token '%s': user PIN not initialised", label);
        return CKR_USER_PIN_NOT_INITIALIZED;
    }
    return CKR_OK;
}

/* The PIN for a login, in the documented order. Nothing is locked here. */
static CK_RV login_get_pin(const P11M_LOGIN_INFO *li, const char *label, P11M_PIN *pin)
{
    size_t len;

    if (li != NULL && li->pin_value != NULL) {
        len = strlen(li->pin_value);
        if (len >= sizeof(pin->buf)) {
            p11m_raise(P11M_R_PIN_SOURCE, "pin-value in URI is too long");
            return CKR_PIN_LEN_RANGE;
        }
        memcpy(pin->buf, li->pin_value, len + 1);
        pin->len = len;
        return CKR_OK;
    }
    if (li != NULL && li->pin_source != NULL)
        return p11m_pin_load(li->pin_source, pin);
    if (li != NULL && li->cb != NULL) {
        if (li->cb(pin, label, li->cb_arg) && pin->len > 0 && pin->len < sizeof(pin->buf))
            return CKR_OK;
        p11m_pin_cleanse(pin);
    }
    p11m_raise(P11M_R_PIN_MISSING,
               "token '%s' needs a PIN and none is configured (set pin-source)", label);
    return CKR_FUNCTION_FAILED;
}

/* Where the PIN came from, for the refusal record (never the PIN). */
static const char *login_source(const P11M_LOGIN_INFO *li)
{
    if (li != NULL && li->pin_value != NULL)
        return "the pin-value of the URI";
    if (li != NULL && li->pin_source != NULL)
        return li->pin_source;
    return "the program's PIN callback";
}

/*
 * A refusal is believed only from a token that still works afterwards: a module whose
 * link to its device broke during C_Login may answer CKR_PIN_INCORRECT (tpm2-pkcs11 does
 * when tpm2-abrmd restarts under it: "Error unsealing wrapping key"), and a refusal
 * remembered then would shut the identity out on the whole device. Only a general or
 * device error, or a dead session, on a request for one random byte says the token is
 * broken; any other answer (none to give, not logged in, ...) leaves the refusal
 * believed. A general or device error from C_Login is put to the same test: a broken
 * link (tpm2-pkcs11 whose tpm2-abrmd went away before the login) answers every C_Login
 * so until the module is initialised again. A token found broken is reported as
 * CKR_DEVICE_REMOVED: the device as the module knew it is gone, and what follows a
 * removal (re-initialise, find the token again: object.c) is what brings it back.
 */
static CK_RV login_token_works(P11M_TOKEN *tok, CK_SESSION_HANDLE sess)
{
    CK_BYTE b[1];
    CK_RV rv = P11M_CALL(tok->mod, C_GenerateRandom, sess, b, sizeof(b));

    return rv == CKR_GENERAL_ERROR || p11m_rv_session_dead(rv) ? rv : CKR_OK;
}

static CK_RV login_do(P11M_TOKEN *tok, CK_USER_TYPE user, CK_SESSION_HANDLE sess,
                      const P11M_PIN *pin, const char *label)
{
    CK_RV rv, works;

    __atomic_add_fetch(&login_calls, 1, __ATOMIC_SEQ_CST);
    rv = P11M_CALL(tok->mod, C_Login, sess, user,
                   pin != NULL ? (CK_UTF8CHAR_PTR) pin->buf : NULL,
                   pin != NULL ? pin->len : 0);
    if (rv == CKR_OK || rv == CKR_USER_ALREADY_LOGGED_IN)
        return CKR_OK;
    if ((p11m_ckr_reason(rv) == P11M_R_PIN_INCORRECT || rv == CKR_GENERAL_ERROR ||
         rv == CKR_DEVICE_ERROR) &&
        (works = login_token_works(tok, sess)) != CKR_OK) {
        p11m_raise_ckr(works, "C_GenerateRandom",
                       "token '%s' answered C_Login with %s, then failed a plain call: "
                       "the token is not working (a refusal would not be believed)",
                       label, p11m_ckr_name(rv));
        return CKR_DEVICE_REMOVED;
    }
    if (p11m_ckr_reason(rv) == P11M_R_PIN_INCORRECT) {
        login_set(tok, 0,
                  user == CKU_USER); /* a wrong SO PIN says nothing of the user's */
        p11m_raise_ckr(rv, "C_Login",
                       "token '%s' refused the PIN; it will not be tried again by this "
                       "process",
                       label);
    } else {
        p11m_raise_ckr(rv, "C_Login", "logging in to token '%s'", label);
    }
    return rv;
}

/* Refuses at once when the token refused a PIN earlier in this process. */
static CK_RV login_refused_before(int refused, const char *label)
{
    if (!refused)
        return CKR_OK;
    p11m_raise(P11M_R_PIN_INCORRECT,
               "token '%s' refused the PIN earlier in this process; not tried again",
               label);
    return CKR_PIN_INCORRECT;
}

/* The C_Login of a user login, under the token's login lock, with the PIN at hand. */
static CK_RV login_user_locked(P11M_TOKEN *tok, const P11M_LOGIN_INFO *li,
                               const P11M_PIN *pin, const char *label)
{
    CK_SESSION_HANDLE sess;
    int refused, record;
    CK_RV rv;

    if (login_state(tok, &refused))
        return CKR_OK; /* another thread logged in while we read the PIN */
    if ((rv = login_refused_before(refused, label)) != CKR_OK)
        return rv;
    record = pin == NULL ? -1 : p11m_refusal_open(&tok->info);
    if (pin != NULL && p11m_refusal_check(record, label, login_source(li), pin)) {
        login_set(tok, 0, 1); /* another process's try: none here */
        rv = CKR_PIN_INCORRECT;
    } else if ((rv = p11m_session_get(tok, &sess)) == CKR_OK) {
        rv = login_do(tok, CKU_USER, sess, pin, label);
        p11m_session_put(tok, sess, rv == CKR_DEVICE_REMOVED ? rv : CKR_OK);
        if (rv == CKR_OK)
            login_set(tok, 1, 0);
        else if (pin != NULL && login_state(tok, &refused) == 0 && refused)
            p11m_refusal_record(record, &tok->info, login_source(li), pin);
    }
    p11m_refusal_close(record);
    return rv;
}

CK_RV p11m_token_login(P11M_TOKEN *tok, const P11M_LOGIN_INFO *li)
{
    char label[40];
    P11M_PIN pin;
    int refused, in, protected_path;
    CK_RV rv;

    p11m_token_label(tok, label, sizeof(label));
    if (login_state(tok, &refused))
        return CKR_OK;
    if ((rv = login_refused_before(refused, label)) != CKR_OK)
        return rv;
    if ((rv = login_session_says_in(tok, &in)) != CKR_OK)
        return rv;
    if (in) {
        login_set(tok, 1, 0);
        return CKR_OK;
    }
    if ((rv = login_check_flags(tok, label)) != CKR_OK)
        return rv;
    protected_path = (tok->info.flags & CKF_PROTECTED_AUTHENTICATION_PATH) != 0;
    pin.len = 0;
    if (!protected_path && (rv = login_get_pin(li, label, &pin)) != CKR_OK)
        return rv;
    pthread_mutex_lock(&tok->login_lock);
    rv = login_user_locked(tok, li, protected_path ? NULL : &pin, label);
    pthread_mutex_unlock(&tok->login_lock);
    p11m_pin_cleanse(&pin);
    if (rv == CKR_OK)
        p11m_log(1, "logged in to token '%s'", label);
    return rv;
}

int p11m_logged_in(P11M_TOKEN *tok, CK_SESSION_HANDLE sess)
{
    CK_SESSION_INFO si;
    int refused, in;

    if (!login_state(tok, &refused))
        return 0;
    /* The token may have logged us out (idle timeout, another program): ask it. */
    in = P11M_CALL(tok->mod, C_GetSessionInfo, sess, &si) == CKR_OK &&
         (si.state == CKS_RO_USER_FUNCTIONS || si.state == CKS_RW_USER_FUNCTIONS);
    if (!in)
        login_set(tok, 0, 0);
    return in;
}

void p11m_login_lost(P11M_TOKEN *tok)
{
    login_set(tok, 0, 0);
}

CK_RV p11m_token_login_so(P11M_TOKEN *tok, CK_SESSION_HANDLE sess,
                          const P11M_LOGIN_INFO *li)
{
    char label[40];
    P11M_PIN pin;
    CK_RV rv;

    p11m_token_label(tok, label, sizeof(label));
    if (p11m_token_refresh_info(tok) == CKR_OK &&
        (tok->info.flags & (CKF_SO_PIN_LOCKED | CKF_SO_PIN_FINAL_TRY))) {
        p11m_raise(P11M_R_PIN_LOCKED,
                   "token '%s': SO PIN is locked or on its final try; no login tried",
                   label);
        return CKR_PIN_LOCKED;
    }
    pin.len = 0;
    if ((rv = login_get_pin(li, label, &pin)) != CKR_OK)
        return rv;
    rv = login_do(tok, CKU_SO, sess, &pin, label);
    p11m_pin_cleanse(&pin);
    return rv;
}

CK_RV p11m_token_login_context(P11M_TOKEN *tok, CK_SESSION_HANDLE sess,
                               const P11M_LOGIN_INFO *li)
{
    char label[40];
    P11M_PIN pin;
    CK_RV rv;
    int refused;

    p11m_token_label(tok, label, sizeof(label));
    login_state(tok, &refused);
    if ((rv = login_refused_before(refused, label)) != CKR_OK ||
        (rv = login_check_flags(tok, label)) != CKR_OK)
        return rv;
    pin.len = 0;
    if ((rv = login_get_pin(li, label, &pin)) != CKR_OK)
        return rv;
    __atomic_add_fetch(&login_calls, 1, __ATOMIC_SEQ_CST);
    rv = P11M_CALL(tok->mod, C_Login, sess, CKU_CONTEXT_SPECIFIC,
                   (CK_UTF8CHAR_PTR) pin.buf, pin.len);
    p11m_pin_cleanse(&pin);
    if (rv != CKR_OK) {
        if (p11m_ckr_reason(rv) == P11M_R_PIN_INCORRECT)
            login_set(tok, 0, 1);
        p11m_raise_ckr(rv, "C_Login", "context-specific login to token '%s'", label);
    }
    return rv;
}
