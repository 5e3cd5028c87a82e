/*
 * pin.c - PIN sources. A PIN lives only in a P11M_PIN on the stack of the login that
 * needs it and is cleansed right after C_Login. The rules of a PIN source are
 * p11m_util's, shared with the preload library and the tool.
 */
#include <string.h>

#include <openssl/crypto.h>

#include "p11m.h"
#include "p11m_util.h"

_Static_assert(sizeof(((P11M_PIN *) 0)->buf) > P11M_PIN_MAX, "P11M_PIN holds any PIN");

int p11m_pin_source_valid(const char *spec)
{
    return p11m_pinsrc_valid(spec);
}

void p11m_pin_cleanse(P11M_PIN *pin)
{
    OPENSSL_cleanse(pin->buf, sizeof(pin->buf));
    pin->len = 0;
}

CK_RV p11m_pin_load(const char *spec, P11M_PIN *pin)
{
    char err[512];

    if (p11m_pinsrc_read(spec, pin->buf, sizeof(pin->buf), &pin->len, err, sizeof(err)))
        return CKR_OK;
    p11m_raise(P11M_R_PIN_SOURCE, "%s", err);
    return CKR_FUNCTION_FAILED;
}
