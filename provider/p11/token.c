/*
 * token.c - tokens found by URI. A token entry (module + slot) lives for the whole
 * process so that objects can refer to it; when its token is removed or replaced the
 * entry is reset and its objects find their handles again.
 */
#include <stdlib.h>
#include <string.h>

#include <p11-kit/p11-kit.h>

#include "p11m_int.h"

#define MAX_TOKENS 64

static pthread_mutex_t tokens_lock = PTHREAD_MUTEX_INITIALIZER;
static P11M_TOKEN *tokens[MAX_TOKENS];
static size_t n_tokens;

P11M_MODULE *p11m_token_module(const P11M_TOKEN *tok)
{
    return tok->mod;
}

CK_SLOT_ID p11m_token_slot(const P11M_TOKEN *tok)
{
    return tok->slot;
}

const CK_TOKEN_INFO *p11m_token_info(const P11M_TOKEN *tok)
{
    return &tok->info;
}

const char *p11m_token_label(const P11M_TOKEN *tok, char *buf, size_t len)
{
    size_t n = sizeof(tok->info.label);

    while (n > 0 && tok->info.label[n - 1] == ' ')
        n--;
    if (n >= len)
        n = len - 1;
    memcpy(buf, tok->info.label, n);
    buf[n] = '\0';
    return buf;
}

int p11m_rv_token_gone(CK_RV rv)
{
    return rv == CKR_DEVICE_REMOVED || rv == CKR_TOKEN_NOT_PRESENT ||
           rv == CKR_TOKEN_NOT_RECOGNIZED || rv == CKR_SLOT_ID_INVALID ||
           rv == CKR_CRYPTOKI_NOT_INITIALIZED;
}

int p11m_rv_session_dead(CK_RV rv)
{
    return p11m_rv_token_gone(rv) || rv == CKR_SESSION_HANDLE_INVALID ||
           rv == CKR_SESSION_CLOSED || rv == CKR_DEVICE_ERROR;
}

static int token_same_identity(const CK_TOKEN_INFO *a, const CK_TOKEN_INFO *b)
{
    return memcmp(a->label, b->label, sizeof(a->label)) == 0 &&
           memcmp(a->serialNumber, b->serialNumber, sizeof(a->serialNumber)) == 0;
}

/* Caller holds tok->lock. */
static void token_reset_locked(P11M_TOKEN *tok)
{
    tok->n_idle = 0; /* stale handles are forgotten, not closed: they may be reused */
    tok->logged_in = 0;
    tok->epoch++;
}

/*
 * In the child after fork: the parent's locks may have been held by threads that do not
 * exist here, so every token starts afresh (memory only: PKCS#11 calls in an atfork
 * handler can deadlock). Sessions and handles are forgotten; the module is initialised
 * again at first use (module.c).
 */
static void token_atfork_child(void)
{
    pthread_mutex_init(&tokens_lock, NULL);
    for (size_t i = 0; i < n_tokens; i++) {
        pthread_mutex_init(&tokens[i]->lock, NULL);
        pthread_mutex_init(&tokens[i]->login_lock, NULL);
        token_reset_locked(tokens[i]);
    }
}

static void token_register_atfork(void)
{
    pthread_atfork(NULL, NULL, token_atfork_child);
}

void p11m_token_check_fork(P11M_TOKEN *tok)
{
    unsigned mod_epoch = __atomic_load_n(&tok->mod->epoch, __ATOMIC_ACQUIRE);

    if (__atomic_load_n(&tok->mod_epoch, __ATOMIC_ACQUIRE) != mod_epoch) {
        pthread_mutex_lock(&tok->lock);
        if (tok->mod_epoch != mod_epoch) {
            token_reset_locked(tok); /* every handle died with the old initialisation */
            tok->mod_epoch = mod_epoch;
        }
        pthread_mutex_unlock(&tok->lock);
    }
}

/* Caller holds the module's use lock. */
static int token_slot_holds(P11M_TOKEN *tok, CK_SLOT_ID slot, CK_TOKEN_INFO *info)
{
    return P11M_CALL(tok->mod, C_GetTokenInfo, slot, info) == CKR_OK &&
           token_same_identity(&tok->info, info);
}

CK_RV p11m_module_slots(P11M_MODULE *mod, CK_SLOT_ID **slots, CK_ULONG *n)
{
    CK_ULONG cap;
    CK_RV rv = P11M_CALL(mod, C_GetSlotList, CK_TRUE, NULL, n);

    *slots = NULL;
    if (rv != CKR_OK)
        return rv;
    cap = *n;
    if (cap > 4096 || (*slots = calloc(cap > 0 ? cap : 1, sizeof(**slots))) == NULL)
        return CKR_HOST_MEMORY;
    if (cap > 0 && (rv = P11M_CALL(mod, C_GetSlotList, CK_TRUE, *slots, n)) != CKR_OK) {
        free(*slots);
        *slots = NULL;
        return rv;
    }
    if (*n > cap)
        *n = cap;
    return CKR_OK;
}

CK_RV p11m_token_revalidate(P11M_TOKEN *tok)
{
    CK_SLOT_ID *slots = NULL;
    CK_ULONG n = 0;
    CK_TOKEN_INFO info;
    char label[40];
    CK_RV rv;

    if ((rv = p11m_module_acquire(tok->mod)) != CKR_OK)
        return rv;
    rv = CKR_TOKEN_NOT_PRESENT;
    if (token_slot_holds(tok, tok->slot, &info)) {
        rv = CKR_OK;
    } else if (p11m_module_slots(tok->mod, &slots, &n) == CKR_OK) {
        for (CK_ULONG i = 0; i < n && rv != CKR_OK; i++) {
            if (token_slot_holds(tok, slots[i], &info)) {
                pthread_mutex_lock(&tok->lock);
                tok->slot = slots[i];
                token_reset_locked(tok);
                pthread_mutex_unlock(&tok->lock);
                rv = CKR_OK;
            }
        }
    }
    p11m_module_release(tok->mod);
    free(slots);
    pthread_mutex_lock(&tok->lock);
    tok->absent = rv != CKR_OK;
    pthread_mutex_unlock(&tok->lock);
    if (rv != CKR_OK)
        p11m_raise(P11M_R_TOKEN_ABSENT, "token '%s' is not present in %s",
                   p11m_token_label(tok, label, sizeof(label)), tok->mod->path);
    return rv;
}

void p11m_token_mark_absent(P11M_TOKEN *tok)
{
    CK_SESSION_HANDLE idle[P11M_POOL_MAX];
    size_t n = 0;

    pthread_mutex_lock(&tok->lock);
    if (!tok->absent)
        p11m_log(1, "token in slot %lu of %s went away", tok->slot, tok->mod->path);
    tok->absent = 1;
    /* The module keeps a session until it is closed or the module finalised, which
     * p11mtls never does to a module that other code initialised. Only handles of the
     * module's current initialisation are closed: after a re-initialisation their
     * numbers may name new sessions. */
    if (tok->mod_epoch == __atomic_load_n(&tok->mod->epoch, __ATOMIC_ACQUIRE)) {
        n = tok->n_idle;
        memcpy(idle, tok->idle, n * sizeof(idle[0]));
    }
    token_reset_locked(tok);
    pthread_mutex_unlock(&tok->lock);
    for (size_t i = 0; i < n; i++)
        P11M_CALL(tok->mod, C_CloseSession, idle[i]);
}

unsigned p11m_token_epoch(P11M_TOKEN *tok)
{
    unsigned e;

    pthread_mutex_lock(&tok->lock);
    e = tok->epoch;
    pthread_mutex_unlock(&tok->lock);
    return e;
}

/*
 * Behind p11-kit's proxy the module serving a token is not visible: ask p11-kit which
 * registered module holds a token with this identity, and whether that module is one
 * that does not notice fork. The modules were initialised by the proxy already.
 */
static int token_behind_fork_unsafe(const CK_TOKEN_INFO *info)
{
    CK_FUNCTION_LIST **mods;
    CK_TOKEN_INFO ti;
    int found = 0;

    /* tpm2-pkcs11's serial numbers are all zeros: other tokens cost nothing here. */
    if (strspn((const char *) info->serialNumber, "0") != sizeof(info->serialNumber))
        return 0;
    mods = p11_kit_modules_load(NULL, P11_KIT_MODULE_UNMANAGED);
    if (mods == NULL)
        return 0;
    for (size_t i = 0; mods[i] != NULL && !found; i++) {
        char *file = p11_kit_module_get_filename(mods[i]);
        P11M_MODULE m = {.fl = mods[i], .path = file};
        CK_SLOT_ID *slots = NULL;
        CK_ULONG n = 0;

        if (file != NULL && p11m_module_info_fork_unsafe(NULL, file) &&
            p11m_module_slots(&m, &slots, &n) == CKR_OK)
            for (CK_ULONG j = 0; j < n && !found; j++)
                found = P11M_CALL(&m, C_GetTokenInfo, slots[j], &ti) == CKR_OK &&
                        token_same_identity(&ti, info) &&
                        memcmp(ti.manufacturerID, info->manufacturerID,
                               sizeof(ti.manufacturerID)) == 0 &&
                        memcmp(ti.model, info->model, sizeof(ti.model)) == 0;
        free(slots);
        free(file);
    }
    p11_kit_modules_release(mods);
    return found;
}

CK_RV p11m_token_fork_guard(P11M_TOKEN *tok)
{
    char label[40];

    if (!tok->fork_unsafe || tok->mod->born == p11m_fork_generation())
        return CKR_OK;
    p11m_raise(P11M_R_UNSUPPORTED,
               "token '%s' cannot be used in a forked child: its PKCS#11 module "
               "(tpm2-pkcs11) keeps the parent's TPM session after fork, and using it "
               "here would break the parent's; open the identity in a process that did "
               "not inherit it (for instance after exec)",
               p11m_token_label(tok, label, sizeof(label)));
    return CKR_FUNCTION_REJECTED;
}

static P11M_TOKEN *token_new(P11M_MODULE *mod, CK_SLOT_ID slot, const CK_TOKEN_INFO *info)
{
    P11M_TOKEN *tok = calloc(1, sizeof(*tok));

    if (tok == NULL)
        return NULL;
    tok->mod = mod;
    tok->slot = slot;
    tok->info = *info;
    tok->mod_epoch = mod->epoch;
    tok->fork_unsafe = mod->fork_unsafe || (strstr(mod->path, "p11-kit-proxy") != NULL &&
                                            token_behind_fork_unsafe(info));
    pthread_mutex_init(&tok->lock, NULL);
    pthread_mutex_init(&tok->login_lock, NULL);
    return tok;
}

/* The registry entry for (mod, slot); a different token now in the slot resets it. */
static P11M_TOKEN *token_entry(P11M_MODULE *mod, CK_SLOT_ID slot,
                               const CK_TOKEN_INFO *info)
{
    static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;
    P11M_TOKEN *tok = NULL;

    pthread_once(&atfork_once, token_register_atfork);
    pthread_mutex_lock(&tokens_lock);
    for (size_t i = 0; i < n_tokens && tok == NULL; i++)
        if (tokens[i]->mod == mod && tokens[i]->slot == slot)
            tok = tokens[i];
    if (tok == NULL && n_tokens < MAX_TOKENS &&
        (tok = token_new(mod, slot, info)) != NULL)
        tokens[n_tokens++] = tok;
    pthread_mutex_unlock(&tokens_lock);
    if (tok == NULL) {
        p11m_raise(P11M_R_INTERNAL, "too many tokens");
        return NULL;
    }
    p11m_token_check_fork(tok);
    pthread_mutex_lock(&tok->lock);
    if (!token_same_identity(&tok->info, info)) {
        token_reset_locked(tok);
        tok->pin_refused = 0; /* a different token: its own PIN state */
        free(tok->mechs);
        tok->mechs = NULL;
        tok->n_mechs = 0;
    } else if (tok->absent) {
        token_reset_locked(tok); /* the same token back: handles gone, PIN state kept */
    }
    tok->absent = 0;
    tok->info = *info;
    pthread_mutex_unlock(&tok->lock);
    return tok;
}

static int token_slot_matches(P11M_MODULE *mod, P11KitUri *uri, CK_SLOT_ID slot,
                              CK_TOKEN_INFO *info, size_t *seen)
{
    CK_SLOT_INFO sinfo;
    CK_SLOT_ID want = p11_kit_uri_get_slot_id(uri);
    CK_RV rv;

    if (want != (CK_SLOT_ID) -1 && want != slot)
        return 0;
    rv = P11M_CALL(mod, C_GetSlotInfo, slot, &sinfo);
    if (rv != CKR_OK || !(sinfo.flags & CKF_TOKEN_PRESENT))
        return 0;
    if (!p11_kit_uri_match_slot_info(uri, &sinfo))
        return 0;
    rv = P11M_CALL(mod, C_GetTokenInfo, slot, info);
    if (rv != CKR_OK)
        return 0; /* e.g. SoftHSM's uninitialised slot: not a usable token */
    if (!(info->flags & CKF_TOKEN_INITIALIZED))
        return 0;
    (*seen)++;
    return p11_kit_uri_match_token_info(uri, info);
}

static CK_RV token_list_add(P11M_TOKEN_LIST *list, P11M_TOKEN *tok)
{
    P11M_TOKEN **v = realloc(list->v, (list->n + 1) * sizeof(*v));

    if (v == NULL) {
        p11m_raise(P11M_R_INTERNAL, "out of memory listing tokens");
        return CKR_HOST_MEMORY;
    }
    list->v = v;
    list->v[list->n++] = tok;
    return CKR_OK;
}

CK_RV p11m_token_list_fill(P11M_MODULE *mod, P11KitUri *uri, P11M_TOKEN_LIST *list)
{
    CK_SLOT_ID *slots = NULL;
    CK_ULONG n = 0;
    CK_TOKEN_INFO info;
    CK_RV rv;

    list->v = NULL;
    list->n = 0;
    list->seen = 0;
    if ((rv = p11m_module_check_fork(mod)) != CKR_OK)
        return rv;
    if (!p11_kit_uri_match_module_info(uri, &mod->info))
        return CKR_OK;
    if ((rv = p11m_module_acquire(mod)) != CKR_OK)
        return rv;
    rv = p11m_module_slots(mod, &slots, &n);
    if (rv != CKR_OK)
        p11m_raise_ckr(rv, "C_GetSlotList", "listing slots of %s", mod->path);
    for (CK_ULONG i = 0; rv == CKR_OK && i < n; i++) {
        P11M_TOKEN *tok;

        if (!token_slot_matches(mod, uri, slots[i], &info, &list->seen))
            continue;
        if ((tok = token_entry(mod, slots[i], &info)) == NULL)
            rv = CKR_HOST_MEMORY; /* raised */
        else
            rv = token_list_add(list, tok);
    }
    p11m_module_release(mod);
    free(slots);
    if (rv != CKR_OK)
        p11m_token_list_free(list);
    return rv;
}

void p11m_token_list_free(P11M_TOKEN_LIST *list)
{
    free(list->v);
    list->v = NULL;
    list->n = 0;
}

CK_RV p11m_token_refresh_info(P11M_TOKEN *tok)
{
    CK_TOKEN_INFO info;
    CK_RV rv;

    if ((rv = p11m_module_acquire(tok->mod)) != CKR_OK)
        return rv;
    rv = P11M_CALL(tok->mod, C_GetTokenInfo, tok->slot, &info);
    if (rv != CKR_OK && p11m_rv_token_gone(rv))
        p11m_token_mark_absent(tok);
    p11m_module_release(tok->mod);
    if (rv != CKR_OK)
        return rv;
    pthread_mutex_lock(&tok->lock);
    tok->info = info;
    pthread_mutex_unlock(&tok->lock);
    return CKR_OK;
}

static int mech_cmp(const void *a, const void *b)
{
    CK_MECHANISM_TYPE x = *(const CK_MECHANISM_TYPE *) a,
                      y = *(const CK_MECHANISM_TYPE *) b;

    return (x > y) - (x < y);
}

/* Sorted, for a binary search: signing asks about three mechanisms each time. */
static CK_RV token_load_mechs(P11M_TOKEN *tok)
{
    CK_MECHANISM_TYPE *m = NULL;
    CK_ULONG n = 0, cap;
    CK_RV rv;

    if ((rv = p11m_module_acquire(tok->mod)) != CKR_OK)
        return rv;
    rv = P11M_CALL(tok->mod, C_GetMechanismList, tok->slot, NULL, &n);
    if (rv == CKR_OK && n > 0) {
        cap = n;
        if (cap > 4096 || (m = calloc(cap, sizeof(*m))) == NULL)
            rv = CKR_HOST_MEMORY;
        else
            rv = P11M_CALL(tok->mod, C_GetMechanismList, tok->slot, m, &n);
        if (n > cap)
            n = cap;
    }
    p11m_module_release(tok->mod);
    if (rv != CKR_OK) {
        free(m);
        return rv;
    }
    if (m != NULL)
        qsort(m, n, sizeof(*m), mech_cmp);
    pthread_mutex_lock(&tok->lock);
    if (tok->mechs == NULL) {
        tok->mechs = m;
        tok->n_mechs = n;
        m = NULL;
    }
    pthread_mutex_unlock(&tok->lock);
    free(m);
    return CKR_OK;
}

/* 1 when listed; -1 when the list is not loaded yet. */
static int token_mech_listed(P11M_TOKEN *tok, CK_MECHANISM_TYPE mech)
{
    int listed = -1;

    pthread_mutex_lock(&tok->lock);
    if (tok->mechs != NULL)
        listed = bsearch(&mech, tok->mechs, tok->n_mechs, sizeof(mech), mech_cmp) != NULL;
    pthread_mutex_unlock(&tok->lock);
    return listed;
}

int p11m_token_has_mech(P11M_TOKEN *tok, CK_MECHANISM_TYPE mech)
{
    int listed = token_mech_listed(tok, mech);

    if (listed >= 0)
        return listed;
    if (token_load_mechs(tok) != CKR_OK)
        return 0;
    return token_mech_listed(tok, mech) == 1;
}
