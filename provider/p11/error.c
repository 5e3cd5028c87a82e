/*
 * error.c - reasons, CK_RV names and the per-thread error scopes of the PKCS#11 core.
 */
#include <stdio.h>
#include <string.h>

#include "p11m.h"

static const char *const reason_strings[P11M_R_MAX] = {
    [P11M_R_MODULE_LOAD] = "PKCS#11 module not loadable",
    [P11M_R_NO_TOKEN] = "no token matches the URI",
    [P11M_R_PIN_MISSING] = "PIN missing",
    [P11M_R_PIN_INCORRECT] = "PIN incorrect",
    [P11M_R_PIN_LOCKED] = "PIN locked or on its final try",
    [P11M_R_NO_OBJECT] = "no object matches the URI",
    [P11M_R_MECHANISM] = "mechanism not supported by the token",
    [P11M_R_TOKEN_ERROR] = "token error",
    [P11M_R_BAD_URI] = "bad pkcs11 URI",
    [P11M_R_BAD_CONFIG] = "bad configuration",
    [P11M_R_PIN_SOURCE] = "PIN source unusable",
    [P11M_R_TOKEN_ABSENT] = "token not present",
    [P11M_R_INTERNAL] = "internal error",
    [P11M_R_UNSUPPORTED] = "unsupported",
};

const char *p11m_reason_string(int reason)
{
    if (reason <= 0 || reason >= P11M_R_MAX)
        return "unknown error";
    return reason_strings[reason];
}

#define CKR_ENTRY(x)                                                                     \
    {                                                                                    \
        x, #x                                                                            \
    }
static const struct {
    CK_RV rv;
    const char *name;
} ckr_names[] = {
    CKR_ENTRY(CKR_OK),
    CKR_ENTRY(CKR_CANCEL),
    CKR_ENTRY(CKR_HOST_MEMORY),
    CKR_ENTRY(CKR_SLOT_ID_INVALID),
    CKR_ENTRY(CKR_GENERAL_ERROR),
    CKR_ENTRY(CKR_FUNCTION_FAILED),
    CKR_ENTRY(CKR_ARGUMENTS_BAD),
    CKR_ENTRY(CKR_NO_EVENT),
    CKR_ENTRY(CKR_NEED_TO_CREATE_THREADS),
    CKR_ENTRY(CKR_CANT_LOCK),
    CKR_ENTRY(CKR_ATTRIBUTE_READ_ONLY),
    CKR_ENTRY(CKR_ATTRIBUTE_SENSITIVE),
    CKR_ENTRY(CKR_ATTRIBUTE_TYPE_INVALID),
    CKR_ENTRY(CKR_ATTRIBUTE_VALUE_INVALID),
    CKR_ENTRY(CKR_ACTION_PROHIBITED),
    CKR_ENTRY(CKR_DATA_INVALID),
    CKR_ENTRY(CKR_DATA_LEN_RANGE),
    CKR_ENTRY(CKR_DEVICE_ERROR),
    CKR_ENTRY(CKR_DEVICE_MEMORY),
    CKR_ENTRY(CKR_DEVICE_REMOVED),
    CKR_ENTRY(CKR_ENCRYPTED_DATA_INVALID),
    CKR_ENTRY(CKR_ENCRYPTED_DATA_LEN_RANGE),
    CKR_ENTRY(CKR_FUNCTION_CANCELED),
    CKR_ENTRY(CKR_FUNCTION_NOT_PARALLEL),
    CKR_ENTRY(CKR_FUNCTION_NOT_SUPPORTED),
    CKR_ENTRY(CKR_KEY_HANDLE_INVALID),
    CKR_ENTRY(CKR_KEY_SIZE_RANGE),
    CKR_ENTRY(CKR_KEY_TYPE_INCONSISTENT),
    CKR_ENTRY(CKR_KEY_FUNCTION_NOT_PERMITTED),
    CKR_ENTRY(CKR_MECHANISM_INVALID),
    CKR_ENTRY(CKR_MECHANISM_PARAM_INVALID),
    CKR_ENTRY(CKR_OBJECT_HANDLE_INVALID),
    CKR_ENTRY(CKR_OPERATION_ACTIVE),
    CKR_ENTRY(CKR_OPERATION_NOT_INITIALIZED),
    CKR_ENTRY(CKR_PIN_INCORRECT),
    CKR_ENTRY(CKR_PIN_INVALID),
    CKR_ENTRY(CKR_PIN_LEN_RANGE),
    CKR_ENTRY(CKR_PIN_EXPIRED),
    CKR_ENTRY(CKR_PIN_LOCKED),
    CKR_ENTRY(CKR_SESSION_CLOSED),
    CKR_ENTRY(CKR_SESSION_COUNT),
    CKR_ENTRY(CKR_SESSION_HANDLE_INVALID),
    CKR_ENTRY(CKR_SESSION_PARALLEL_NOT_SUPPORTED),
    CKR_ENTRY(CKR_SESSION_READ_ONLY),
    CKR_ENTRY(CKR_SESSION_EXISTS),
    CKR_ENTRY(CKR_SESSION_READ_ONLY_EXISTS),
    CKR_ENTRY(CKR_SESSION_READ_WRITE_SO_EXISTS),
    CKR_ENTRY(CKR_SIGNATURE_INVALID),
    CKR_ENTRY(CKR_SIGNATURE_LEN_RANGE),
    CKR_ENTRY(CKR_TEMPLATE_INCOMPLETE),
    CKR_ENTRY(CKR_TEMPLATE_INCONSISTENT),
    CKR_ENTRY(CKR_TOKEN_NOT_PRESENT),
    CKR_ENTRY(CKR_TOKEN_NOT_RECOGNIZED),
    CKR_ENTRY(CKR_TOKEN_WRITE_PROTECTED),
    CKR_ENTRY(CKR_USER_ALREADY_LOGGED_IN),
    CKR_ENTRY(CKR_USER_NOT_LOGGED_IN),
    CKR_ENTRY(CKR_USER_PIN_NOT_INITIALIZED),
    CKR_ENTRY(CKR_USER_TYPE_INVALID),
    CKR_ENTRY(CKR_USER_ANOTHER_ALREADY_LOGGED_IN),
    CKR_ENTRY(CKR_USER_TOO_MANY_TYPES),
    CKR_ENTRY(CKR_DOMAIN_PARAMS_INVALID),
    CKR_ENTRY(CKR_CURVE_NOT_SUPPORTED),
    CKR_ENTRY(CKR_BUFFER_TOO_SMALL),
    CKR_ENTRY(CKR_RANDOM_SEED_NOT_SUPPORTED),
    CKR_ENTRY(CKR_CRYPTOKI_NOT_INITIALIZED),
    CKR_ENTRY(CKR_CRYPTOKI_ALREADY_INITIALIZED),
    CKR_ENTRY(CKR_FUNCTION_REJECTED),
};

const char *p11m_ckr_name(CK_RV rv)
{
    for (size_t i = 0; i < sizeof(ckr_names) / sizeof(ckr_names[0]); i++)
        if (ckr_names[i].rv == rv)
            return ckr_names[i].name;
    return "CKR_(unknown)";
}

int p11m_ckr_reason(CK_RV rv)
{
    switch (rv) {
    case CKR_PIN_INCORRECT:
    case CKR_PIN_INVALID:
    case CKR_PIN_LEN_RANGE:
        return P11M_R_PIN_INCORRECT;
    case CKR_PIN_LOCKED:
    case CKR_PIN_EXPIRED:
        return P11M_R_PIN_LOCKED;
    case CKR_USER_PIN_NOT_INITIALIZED:
        return P11M_R_PIN_MISSING;
    case CKR_MECHANISM_INVALID:
    case CKR_MECHANISM_PARAM_INVALID:
    case CKR_KEY_TYPE_INCONSISTENT:
    case CKR_KEY_FUNCTION_NOT_PERMITTED:
        return P11M_R_MECHANISM;
    case CKR_TOKEN_NOT_PRESENT:
    case CKR_DEVICE_REMOVED:
    case CKR_TOKEN_NOT_RECOGNIZED:
        return P11M_R_TOKEN_ABSENT;
    case CKR_HOST_MEMORY:
    case CKR_ARGUMENTS_BAD:
        return P11M_R_INTERNAL;
    default:
        return P11M_R_TOKEN_ERROR;
    }
}

static __thread P11M_ERR_SCOPE *err_scope;
static __thread char last_msg[512];
static __thread int last_reason;
static __thread int hold_depth;
static __thread struct {
    int reason, line, valid;
    const char *file, *func;
} held;

void p11m_err_scope_enter(P11M_ERR_SCOPE *scope, p11m_error_sink_fn *fn, void *arg)
{
    scope->fn = fn;
    scope->arg = arg;
    scope->prev = err_scope;
    err_scope = scope;
}

void p11m_err_scope_leave(P11M_ERR_SCOPE *scope)
{
    if (err_scope == scope)
        err_scope = scope->prev;
}

void p11m_note_error(int reason, const char *msg)
{
    last_reason = reason;
    snprintf(last_msg, sizeof(last_msg), "%s", msg);
    p11m_log(1, "error: %s: %s", p11m_reason_string(reason), msg);
}

static void error_emit(int reason, const char *file, int line, const char *func,
                       const char *msg)
{
    p11m_note_error(reason, msg);
    if (hold_depth > 0) {
        held.reason = reason;
        held.file = file;
        held.line = line;
        held.func = func;
        held.valid = 1;
        return;
    }
    if (err_scope != NULL)
        err_scope->fn(err_scope->arg, reason, file, line, func, msg);
}

void p11m_raise_(int reason, const char *file, int line, const char *func,
                 const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    error_emit(reason, file, line, func, msg);
}

void p11m_raise_ckr_(CK_RV rv, const char *fn, const char *file, int line,
                     const char *func, const char *fmt, ...)
{
    char what[384], msg[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    snprintf(msg, sizeof(msg), "%s: %s: %s", what, fn, p11m_ckr_name(rv));
    error_emit(p11m_ckr_reason(rv), file, line, func, msg);
}

const char *p11m_last_error(int *reason)
{
    if (reason != NULL)
        *reason = last_reason;
    return last_msg;
}

void p11m_error_hold(void)
{
    hold_depth++;
}

void p11m_error_release(int emit)
{
    if (hold_depth == 0 || --hold_depth > 0)
        return;
    if (emit && held.valid && err_scope != NULL)
        err_scope->fn(err_scope->arg, held.reason, held.file, held.line, held.func,
                      last_msg);
    held.valid = 0;
}
