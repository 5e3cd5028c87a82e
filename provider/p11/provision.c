/*
 * provision.c - what the tool does to a token besides using keys: initialise a token
 * and its user PIN, create, relabel and destroy objects, generate key pairs, read
 * attributes. Thin on purpose: each returns the token's CK_RV and raises nothing, so the
 * tool words the message for the step that failed.
 */
#include <time.h>

#include "p11m_int.h"

CK_RV p11m_slot_token_info(P11M_MODULE *mod, CK_SLOT_ID slot, CK_TOKEN_INFO *info)
{
    return P11M_CALL(mod, C_GetTokenInfo, slot, info);
}

CK_RV p11m_slot_count_objects(P11M_MODULE *mod, CK_SLOT_ID slot, CK_ULONG *count)
{
    CK_SESSION_HANDLE s;
    CK_RV rv = P11M_CALL(mod, C_OpenSession, slot, CKF_SERIAL_SESSION, NULL, NULL, &s);

    *count = 0;
    if (rv != CKR_OK)
        return rv;
    rv = p11m_find_handles(mod, s, NULL, 0, NULL, 0, count);
    /* C_InitToken needs every session on the token closed. */
    P11M_CALL(mod, C_CloseSession, s);
    return rv;
}

CK_RV p11m_slot_init_token(P11M_MODULE *mod, CK_SLOT_ID slot, const P11M_PIN *so,
                           const CK_UTF8CHAR label[32])
{
    return P11M_CALL(mod, C_InitToken, slot, (CK_UTF8CHAR_PTR) so->buf, so->len,
                     (CK_UTF8CHAR_PTR) label);
}

CK_RV p11m_session_login_pin(P11M_TOKEN *tok, CK_SESSION_HANDLE s, CK_USER_TYPE user,
                             const P11M_PIN *pin)
{
    return P11M_CALL(tok->mod, C_Login, s, user, (CK_UTF8CHAR_PTR) pin->buf, pin->len);
}

CK_RV p11m_session_init_pin(P11M_TOKEN *tok, CK_SESSION_HANDLE s, const P11M_PIN *pin)
{
    return P11M_CALL(tok->mod, C_InitPIN, s, (CK_UTF8CHAR_PTR) pin->buf, pin->len);
}

CK_RV p11m_session_logout(P11M_TOKEN *tok, CK_SESSION_HANDLE s)
{
    return P11M_CALL(tok->mod, C_Logout, s);
}

/*
 * A write that met another program reading the token's store: tried again, 50 ms later
 * and doubling up to 1 s, 12 times in all (7.55 s of waiting at most). tpm2-pkcs11
 * keeps its objects in an SQLite database without a busy timeout, and every program
 * that loads it reads that database in C_Initialize: a write meeting such a reader fails
 * with CKR_GENERAL_ERROR, its transaction rolled back (a certificate replacement failed
 * so while other programs started). Other answers are final.
 */
#define WRITE_TRIES 12

static int write_again(CK_RV rv, int tried)
{
    struct timespec gap = {0, 0};
    long ms = tried < 6 ? 50L << (tried - 1) : 1000;

    if (rv != CKR_GENERAL_ERROR || tried >= WRITE_TRIES)
        return 0;
    gap.tv_sec = ms / 1000;
    gap.tv_nsec = (ms % 1000) * 1000000L;
    nanosleep(&gap, NULL);
    return 1;
}

CK_RV p11m_object_create(P11M_TOKEN *tok, CK_SESSION_HANDLE s, CK_ATTRIBUTE *t,
                         CK_ULONG n, CK_OBJECT_HANDLE *h)
{
    CK_RV rv;

    for (int tried = 1;
         (rv = P11M_CALL(tok->mod, C_CreateObject, s, t, n, h)) != CKR_OK &&
         write_again(rv, tried);
         tried++)
        ;
    return rv;
}

CK_RV p11m_object_destroy(P11M_TOKEN *tok, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h)
{
    CK_RV rv;

    for (int tried = 1; (rv = P11M_CALL(tok->mod, C_DestroyObject, s, h)) != CKR_OK &&
                        write_again(rv, tried);
         tried++)
        ;
    return rv;
}

CK_RV p11m_object_get_attrs(P11M_TOKEN *tok, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h,
                            CK_ATTRIBUTE *t, CK_ULONG n)
{
    return P11M_CALL(tok->mod, C_GetAttributeValue, s, h, t, n);
}

CK_RV p11m_object_set_attrs(P11M_TOKEN *tok, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h,
                            CK_ATTRIBUTE *t, CK_ULONG n)
{
    CK_RV rv;

    for (int tried = 1;
         (rv = P11M_CALL(tok->mod, C_SetAttributeValue, s, h, t, n)) != CKR_OK &&
         write_again(rv, tried);
         tried++)
        ;
    return rv;
}

CK_RV p11m_keypair_generate(P11M_TOKEN *tok, CK_SESSION_HANDLE s, CK_MECHANISM *mech,
                            CK_ATTRIBUTE *pubt, CK_ULONG npub, CK_ATTRIBUTE *privt,
                            CK_ULONG npriv, CK_OBJECT_HANDLE *pub, CK_OBJECT_HANDLE *priv)
{
    return P11M_CALL(tok->mod, C_GenerateKeyPair, s, mech, pubt, npub, privt, npriv, pub,
                     priv);
}
