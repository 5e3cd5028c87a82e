/*
 * token.c - "p11mtls token init": initialise a token and set its user PIN.
 *
 * The core only finds initialised tokens, so this talks to the module's slots directly
 * until the token exists, then finds it through the core (SoftHSM2 moves an initialised
 * token to a new slot id, so the slot cannot be kept across C_InitToken).
 */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "tool.h"

#define CMD "token init"

struct init_opts {
    const char *label;
    const char *so_pin_source;
    const char *pin_source;
    const char *module;
    long slot; /* -1: choose */
    int force;
};

static void token_usage(FILE *out)
{
    fputs(
        "Usage: p11mtls token init --label LABEL [--so-pin-source SRC] [--pin-source "
        "SRC]\n"
        "                          [--module PATH] [--slot N] [--force]\n"
        "\n"
        "Initialises a token with LABEL, then sets its user PIN (SO login, C_InitPIN).\n"
        "Without --slot, the token already labelled LABEL is taken (re-initialised),\n"
        "else the first slot with an uninitialised token (SoftHSM2's free slot).\n"
        "A token that holds objects, or may hold private ones, is only re-initialised\n"
        "with --force: that erases every key and certificate on it.\n"
        "\n"
        "  --label LABEL         token label (at most 32 bytes)\n"
        "  --so-pin-source SRC   Security Officer PIN: file:PATH or env:NAME (new for "
        "an\n"
        "                        uninitialised token, the current one otherwise)\n"
        "  --pin-source SRC      the new user PIN: file:PATH or env:NAME\n"
        "  --module PATH         PKCS#11 module (default: p11-kit's proxy)\n"
        "  --slot N              slot id to initialise\n"
        "  --force               re-initialise a token that holds objects\n"
        "Without a PIN source, each PIN is asked for twice when stdin is a terminal.\n",
        out);
}

static CK_SLOT_ID *token_slots(P11M_MODULE *mod, CK_ULONG *n)
{
    CK_SLOT_ID *slots;
    CK_RV rv = p11m_module_slots(mod, &slots, n);

    if (rv != CKR_OK) {
        tool_err("listing the slots of %s: %s", mod->path, p11m_ckr_name(rv));
        return NULL;
    }
    return slots;
}

static void token_label_pad(const char *label, CK_UTF8CHAR out[32])
{
    memset(out, ' ', 32);
    memcpy(out, label, strlen(label));
}

/* The slot to initialise: --slot, the token labelled LABEL, else a free one. */
static int token_pick_slot(P11M_MODULE *mod, const struct init_opts *o, CK_SLOT_ID *slot,
                           CK_TOKEN_INFO *info)
{
    CK_UTF8CHAR want[32];
    CK_ULONG n = 0;
    CK_SLOT_ID *slots = token_slots(mod, &n);
    int found = 0, free_found = 0;

    if (slots == NULL)
        return 0;
    token_label_pad(o->label, want);
    for (CK_ULONG i = 0; i < n && found == 0; i++) {
        CK_TOKEN_INFO ti;

        if (p11m_slot_token_info(mod, slots[i], &ti) != CKR_OK)
            continue;
        if (o->slot >= 0) {
            found = slots[i] == (CK_SLOT_ID) o->slot;
        } else if ((ti.flags & CKF_TOKEN_INITIALIZED) &&
                   memcmp(ti.label, want, 32) == 0) {
            found = 1;
        } else if (!(ti.flags & CKF_TOKEN_INITIALIZED) && !free_found) {
            free_found = 1; /* remembered; a token already labelled LABEL wins */
            *slot = slots[i];
            *info = ti;
            continue;
        }
        if (found) {
            *slot = slots[i];
            *info = ti;
        }
    }
    free(slots);
    if (found || (o->slot < 0 && free_found))
        return 1;
    if (o->slot >= 0)
        tool_err("--slot %ld: no token present in that slot of %s", o->slot, mod->path);
    else
        tool_err("no uninitialised token in %s (SoftHSM2: its free slot); give --slot N "
                 "to re-initialise one",
                 mod->path);
    return 0;
}

/* Number of objects visible without login, or -1. */
static long token_count_public(P11M_MODULE *mod, CK_SLOT_ID slot)
{
    CK_ULONG n = 0;

    return p11m_slot_count_objects(mod, slot, &n) == CKR_OK ? (long) n : -1;
}

/* Refuses to erase a token that holds (or may hold) objects unless --force. */
static int token_may_erase(P11M_MODULE *mod, CK_SLOT_ID slot, const CK_TOKEN_INFO *ti,
                           int force)
{
    long n;

    if (!(ti->flags & CKF_TOKEN_INITIALIZED))
        return 1;
    n = token_count_public(mod, slot);
    if (force) {
        tool_warn("re-initialising slot %lu: every object on it is erased", slot);
        return 1;
    }
    if (n != 0)
        tool_err("the token in slot %lu holds %s object(s); re-initialising erases them: "
                 "add --force if that is what you want",
                 slot, n < 0 ? "an unknown number of" : "some");
    else if (ti->flags & CKF_USER_PIN_INITIALIZED)
        tool_err(
            "the token in slot %lu is initialised and may hold private objects (they "
            "cannot be counted without its user PIN); add --force to erase it",
            slot);
    else
        return 1;
    return 0;
}

static int token_set_user_pin(P11M_MODULE *mod, const char *label, const P11M_PIN *so,
                              const P11M_PIN *user)
{
    P11KitUri *uri = p11_kit_uri_new();
    CK_TOKEN_INFO *ti = p11_kit_uri_get_token_info(uri);
    CK_SESSION_HANDLE s;
    P11M_TOKEN *tok;
    CK_RV rv;

    token_label_pad(label, ti->label);
    tok = tool_token_one(mod, uri);
    p11_kit_uri_free(uri);
    if (tok == NULL || p11m_session_open_rw(tok, &s) != CKR_OK)
        return 0;
    rv = p11m_session_login_pin(tok, s, CKU_SO, so);
    if (rv == CKR_OK) {
        rv = p11m_session_init_pin(tok, s, user);
        if (rv != CKR_OK)
            tool_err("setting the user PIN: C_InitPIN: %s%s", p11m_ckr_name(rv),
                     rv == CKR_PIN_LEN_RANGE ? " (PIN too short or too long)" : "");
        p11m_session_logout(tok, s);
    } else {
        tool_err("SO login after initialisation: C_Login: %s", p11m_ckr_name(rv));
    }
    p11m_session_close(tok, s);
    return rv == CKR_OK;
}

/* Some modules initialise only an empty slot: tpm2-pkcs11 answers C_InitToken on a
 * token that exists with CKR_ARGUMENTS_BAD ("Token already initialized"); others may
 * say the function is not supported or rejected. */
static void token_reinit_hint(const char *label)
{
    tool_err("the module cannot re-initialise a token that exists; remove the token '%s' "
             "with the module's own tool (a TPM through tpm2-pkcs11: tpm2_ptool rmtoken "
             "--label '%s'), then run token init again: it takes the free slot",
             label, label);
}

static int token_do_init(const struct init_opts *o)
{
    P11M_MODULE *mod = p11m_module_get(o->module, NULL);
    P11M_PIN so, user;
    CK_TOKEN_INFO ti;
    CK_UTF8CHAR label[32];
    CK_SLOT_ID slot = 0;
    CK_RV rv;
    int ok = 0, reinit;

    so.len = user.len = 0;
    memset(&ti, 0, sizeof(ti));
    if (mod == NULL || !token_pick_slot(mod, o, &slot, &ti))
        return TOOL_EXIT_FAIL;
    reinit = (ti.flags & CKF_TOKEN_INITIALIZED) != 0;
    if (!token_may_erase(mod, slot, &ti, o->force))
        return TOOL_EXIT_FAIL;
    if (!tool_new_pin(o->so_pin_source, reinit ? "current SO PIN" : "SO PIN", &so) ||
        !tool_new_pin(o->pin_source, "user PIN", &user))
        goto done;
    token_label_pad(o->label, label);
    rv = p11m_slot_init_token(mod, slot, &so, label);
    if (rv != CKR_OK) {
        tool_err("initialising the token in slot %lu: C_InitToken: %s%s", slot,
                 p11m_ckr_name(rv),
                 rv == CKR_PIN_INCORRECT   ? " (wrong SO PIN)"
                 : rv == CKR_PIN_LEN_RANGE ? " (SO PIN too short or too long)"
                                           : "");
        if (reinit && (rv == CKR_ARGUMENTS_BAD || rv == CKR_FUNCTION_NOT_SUPPORTED ||
                       rv == CKR_FUNCTION_REJECTED))
            token_reinit_hint(o->label);
        goto done;
    }
    ok = token_set_user_pin(mod, o->label, &so, &user);
    if (ok)
        printf("initialised token '%s'\npkcs11:token=%s\n", o->label, o->label);
done:
    p11m_pin_cleanse(&so);
    p11m_pin_cleanse(&user);
    return ok ? TOOL_EXIT_OK : TOOL_EXIT_FAIL;
}

/* tool_getopt: one option of the command into its options. */
static int token_init_opt(int c, char *arg, void *vo)
{
    struct init_opts *o = vo;

    switch (c) {
    case 'l':
        o->label = arg;
        break;
    case 'S':
        o->so_pin_source = arg;
        break;
    case 'p':
        o->pin_source = arg;
        break;
    case 'm':
        o->module = arg;
        break;
    case 's':
        if (!tool_parse_long(CMD, "--slot", arg, 0, 0x7fffffffL, &o->slot))
            return TOOL_EXIT_USAGE;
        break;
    case 'f':
        o->force = 1;
        break;
    }
    return 0;
}

static int token_init(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"label", required_argument, NULL, 'l'},
        {"so-pin-source", required_argument, NULL, 'S'},
        {"pin-source", required_argument, NULL, 'p'},
        {"module", required_argument, NULL, 'm'},
        {"slot", required_argument, NULL, 's'},
        {"force", no_argument, NULL, 'f'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    static const TOOL_CMD cmd = {CMD, "", longopts, token_usage, 0};
    struct init_opts o = {NULL, NULL, NULL, NULL, -1, 0};
    int rc;

    if ((rc = tool_getopt(&cmd, argc, argv, token_init_opt, &o)) != TOOL_PARSED)
        return rc;
    if (o.label == NULL || *o.label == '\0' || strlen(o.label) > 32)
        return tool_usage(CMD, "--label: give a label of 1 to 32 bytes");
    if (!tool_pin_source_ok(CMD, "--so-pin-source", o.so_pin_source))
        return TOOL_EXIT_USAGE;
    if (!tool_pin_source_ok(CMD, "--pin-source", o.pin_source))
        return TOOL_EXIT_USAGE;
    return token_do_init(&o);
}

int token_main(int argc, char **argv)
{
    return tool_subcommand("token", "init", token_init, token_usage, argc, argv);
}
