/*
 * key.c - "p11mtls key generate": a key pair generated on the token. The private half is
 * sensitive, never extractable, private and for signing only; both halves share a
 * CKA_ID (random unless given) and the label from the URI's object=.
 */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/err.h>
#include <openssl/obj_mac.h>
#include <openssl/objects.h>
#include <openssl/rand.h>

#include "tool.h"

#define CMD    "key generate"
#define ID_MAX 64

struct keytype {
    const char *name;
    CK_KEY_TYPE ktype;
    CK_MECHANISM_TYPE mech;
    CK_ULONG bits; /* RSA */
    int nid;       /* EC and Edwards curves */
};

static const struct keytype keytypes[] = {
    {"ec:P-256", CKK_EC, CKM_EC_KEY_PAIR_GEN, 0, NID_X9_62_prime256v1},
    {"ec:P-384", CKK_EC, CKM_EC_KEY_PAIR_GEN, 0, NID_secp384r1},
    {"ec:P-521", CKK_EC, CKM_EC_KEY_PAIR_GEN, 0, NID_secp521r1},
    {"rsa:2048", CKK_RSA, CKM_RSA_PKCS_KEY_PAIR_GEN, 2048, 0},
    {"rsa:3072", CKK_RSA, CKM_RSA_PKCS_KEY_PAIR_GEN, 3072, 0},
    {"rsa:4096", CKK_RSA, CKM_RSA_PKCS_KEY_PAIR_GEN, 4096, 0},
    {"ed25519", CKK_EC_EDWARDS, CKM_EC_EDWARDS_KEY_PAIR_GEN, 0, NID_ED25519},
};

struct gen_opts {
    const char *uri;
    const char *type;
    const char *id;
    const char *pin_source;
    const char *module;
};

/* What a generation needs, filled from the options. */
struct gen {
    const struct keytype *kt;
    unsigned char id[ID_MAX];
    size_t idlen;
    char label[256];
    unsigned char params[64]; /* CKA_EC_PARAMS */
    size_t plen;
};

static void key_usage(FILE *out)
{
    fputs(
        "Usage: p11mtls key generate --uri 'pkcs11:token=LABEL;object=NAME' --type TYPE\n"
        "                            [--id HEX] [--pin-source SRC] [--module PATH]\n"
        "\n"
        "Generates a key pair ON the token (the private key never leaves it: sensitive,\n"
        "not extractable, private, signing only) and prints the private key's URI.\n"
        "\n"
        "  --uri URI          token and object= label of the new key\n"
        "  --type TYPE        ec:P-256, ec:P-384, ec:P-521, rsa:2048, rsa:3072, "
        "rsa:4096\n"
        "                     or ed25519\n"
        "  --id HEX           CKA_ID of both halves (default: 16 random bytes; id= in\n"
        "                     the URI works too)\n"
        "  --pin-source SRC   user PIN: file:PATH or env:NAME (else asked on a "
        "terminal)\n"
        "  --module PATH      PKCS#11 module (default: p11-kit's proxy)\n",
        out);
}

static const struct keytype *key_type(const char *name)
{
    for (size_t i = 0; i < sizeof(keytypes) / sizeof(keytypes[0]); i++)
        if (strcasecmp(name, keytypes[i].name) == 0)
            return &keytypes[i];
    return NULL;
}

/* CKA_EC_PARAMS as the DER of the curve's OID (RFC 8410's for Ed25519). */
static int key_params_oid(struct gen *g)
{
    unsigned char *p = g->params;
    int n = i2d_ASN1_OBJECT(OBJ_nid2obj(g->kt->nid), NULL);

    if (n <= 0 || (size_t) n > sizeof(g->params))
        return 0;
    g->plen = (size_t) i2d_ASN1_OBJECT(OBJ_nid2obj(g->kt->nid), &p);
    return 1;
}

/* The older form some tokens want for Edwards curves: PrintableString "edwards25519". */
static void key_params_edwards_name(struct gen *g)
{
    static const char name[] = "edwards25519";

    g->params[0] = V_ASN1_PRINTABLESTRING;
    g->params[1] = sizeof(name) - 1;
    memcpy(g->params + 2, name, sizeof(name) - 1);
    g->plen = sizeof(name) + 1;
}

/* Fills g from the options and the URI; a usage error returns TOOL_EXIT_USAGE. */
static int key_prepare(const struct gen_opts *o, P11KitUri *uri, struct gen *g)
{
    CK_ATTRIBUTE *label = p11_kit_uri_get_attribute(uri, CKA_LABEL);
    CK_ATTRIBUTE *uid = p11_kit_uri_get_attribute(uri, CKA_ID);
    long n;

    if ((g->kt = key_type(o->type)) == NULL)
        return tool_usage(CMD, "--type: unknown key type '%s'", o->type);
    if (label == NULL || label->ulValueLen == 0 || label->ulValueLen >= sizeof(g->label))
        return tool_usage(CMD, "--uri: name the key with object=NAME");
    memcpy(g->label, label->pValue, label->ulValueLen);
    g->label[label->ulValueLen] = '\0';
    if (o->id != NULL) {
        if ((n = tool_parse_hex(o->id, g->id, sizeof(g->id))) < 0)
            return tool_usage(CMD, "--id: '%s' is not 1 to %d bytes of hex", o->id,
                              ID_MAX);
        g->idlen = (size_t) n;
        if (uid != NULL &&
            (uid->ulValueLen != g->idlen || memcmp(uid->pValue, g->id, g->idlen) != 0))
            return tool_usage(CMD, "--id differs from the id= of --uri");
    } else if (uid != NULL && uid->ulValueLen > 0 && uid->ulValueLen <= sizeof(g->id)) {
        memcpy(g->id, uid->pValue, uid->ulValueLen);
        g->idlen = uid->ulValueLen;
    } else {
        g->idlen = 16;
        if (RAND_bytes(g->id, 16) != 1) {
            tool_ossl_err("no random bytes for the key id");
            return TOOL_EXIT_FAIL;
        }
    }
    if (g->kt->ktype != CKK_RSA && !key_params_oid(g)) {
        tool_err("cannot encode the curve parameters");
        return TOOL_EXIT_FAIL;
    }
    return TOOL_EXIT_OK;
}

/* Objects on the token (after login) with attribute a; -1 on error. */
static long key_count(P11M_TOKEN *tok, CK_SESSION_HANDLE s, CK_ATTRIBUTE *a)
{
    CK_OBJECT_HANDLE h[16];
    CK_ULONG n = 0;
    CK_RV rv = p11m_find_handles(p11m_token_module(tok), s, a, 1, h, 16, &n);

    return rv == CKR_OK ? (long) n : -1;
}

/* A second key with the same id or label would make URIs ambiguous. */
static int key_check_free(P11M_TOKEN *tok, CK_SESSION_HANDLE s, const struct gen *g)
{
    char hex[2 * ID_MAX + 1];
    CK_ATTRIBUTE by_id = {CKA_ID, (void *) g->id, g->idlen};
    CK_ATTRIBUTE by_label = {CKA_LABEL, (void *) g->label, strlen(g->label)};
    long n;

    if ((n = key_count(tok, s, &by_id)) != 0) {
        tool_hex(g->id, g->idlen, hex);
        tool_err(n < 0 ? "cannot search the token for id %s"
                       : "the token already has objects with id %s: choose another --id",
                 hex);
        return 0;
    }
    if ((n = key_count(tok, s, &by_label)) != 0) {
        tool_err(n < 0 ? "cannot search the token for '%s'"
                       : "the token already has objects labelled '%s': choose another "
                         "object= name",
                 g->label);
        return 0;
    }
    return 1;
}

/* minimal: without the usage restrictions (no encrypt, wrap, derive, decrypt, unwrap),
 * for tokens that set a key's usage themselves (tpm2-pkcs11 refuses to be told). */
static CK_RV key_generate(P11M_TOKEN *tok, CK_SESSION_HANDLE s, const struct gen *g,
                          int minimal)
{
    static CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    static CK_BYTE exponent[] = {1, 0, 1};
    CK_ULONG bits = g->kt->bits;
    CK_MECHANISM mech = {g->kt->mech, NULL, 0};
    CK_OBJECT_HANDLE pub, priv;
    CK_ATTRIBUTE pubt[] = {
        {CKA_TOKEN, &yes, 1},
        {CKA_PRIVATE, &no, 1},
        {CKA_VERIFY, &yes, 1},
        {CKA_ENCRYPT, &no, 1},
        {CKA_WRAP, &no, 1},
        {CKA_ID, (void *) g->id, g->idlen},
        {CKA_LABEL, (void *) g->label, strlen(g->label)},
        /* key-type specific, last: */
        {CKA_MODULUS_BITS, &bits, sizeof(bits)},
        {CKA_PUBLIC_EXPONENT, exponent, sizeof(exponent)},
    };
    CK_ATTRIBUTE privt[] = {
        {CKA_TOKEN, &yes, 1},
        {CKA_PRIVATE, &yes, 1},
        {CKA_SENSITIVE, &yes, 1},
        {CKA_EXTRACTABLE, &no, 1},
        {CKA_ID, (void *) g->id, g->idlen},
        {CKA_LABEL, (void *) g->label, strlen(g->label)},
        {CKA_SIGN, &yes, 1},
        /* usage restrictions, last: */
        {CKA_DERIVE, &no, 1},
        {CKA_DECRYPT, &no, 1},
        {CKA_UNWRAP, &no, 1},
    };
    CK_ULONG npub = sizeof(pubt) / sizeof(pubt[0]);
    CK_ULONG npriv = sizeof(privt) / sizeof(privt[0]) - (minimal ? 3 : 0);

    if (g->kt->ktype != CKK_RSA) {
        pubt[npub - 2] = (CK_ATTRIBUTE){CKA_EC_PARAMS, (void *) g->params, g->plen};
        npub--;
    }
    if (minimal) { /* drop CKA_ENCRYPT and CKA_WRAP (entries 3 and 4) */
        memmove(&pubt[3], &pubt[5], (npub - 5) * sizeof(pubt[0]));
        npub -= 2;
    }
    return p11m_keypair_generate(tok, s, &mech, pubt, npub, privt, npriv, &pub, &priv);
}

/* Generates, retrying Ed25519 with the curve's name when the token wants that form. */
static int key_generate_retry(P11M_TOKEN *tok, CK_SESSION_HANDLE s, struct gen *g)
{
    CK_RV rv = key_generate(tok, s, g, 0);

    if (rv != CKR_OK && g->kt->ktype == CKK_EC_EDWARDS &&
        (rv == CKR_ATTRIBUTE_VALUE_INVALID || rv == CKR_CURVE_NOT_SUPPORTED ||
         rv == CKR_DOMAIN_PARAMS_INVALID || rv == CKR_TEMPLATE_INCONSISTENT)) {
        key_params_edwards_name(g);
        rv = key_generate(tok, s, g, 0);
    }
    if (rv == CKR_GENERAL_ERROR || rv == CKR_TEMPLATE_INCONSISTENT ||
        rv == CKR_ATTRIBUTE_VALUE_INVALID) {
        /* A TPM (tpm2-pkcs11) decides a key's usage itself and refuses "sign only". */
        rv = key_generate(tok, s, g, 1);
        if (rv == CKR_OK)
            tool_warn("the token refused a sign-only key; it generated the key with the "
                      "usage it chooses itself (a TPM key may also decrypt)");
    }
    if (rv != CKR_OK)
        tool_err("generating the %s key: C_GenerateKeyPair: %s", g->kt->name,
                 p11m_ckr_name(rv));
    return rv == CKR_OK;
}

int key_generate_pair(P11M_TOKEN *tok, CK_SESSION_HANDLE s, const char *type,
                      const char *label, const unsigned char *id, size_t idlen)
{
    struct gen g;

    memset(&g, 0, sizeof(g));
    if ((g.kt = key_type(type)) == NULL) {
        tool_err("unknown key type '%s'", type);
        return 0;
    }
    if (strlen(label) >= sizeof(g.label) || idlen > sizeof(g.id)) {
        tool_err("key label or id too long");
        return 0;
    }
    strcpy(g.label, label);
    memcpy(g.id, id, idlen);
    g.idlen = idlen;
    if (g.kt->ktype != CKK_RSA && !key_params_oid(&g)) {
        tool_err("cannot encode the curve parameters");
        return 0;
    }
    return key_generate_retry(tok, s, &g);
}

static int key_do_generate(const struct gen_opts *o)
{
    P11KitUri *uri = tool_uri(CMD, "--uri", o->uri);
    P11M_LOGIN_INFO li;
    P11M_MODULE *mod;
    P11M_TOKEN *tok = NULL;
    CK_SESSION_HANDLE s;
    struct gen g;
    char *out;
    int rc;

    memset(&g, 0, sizeof(g));
    if (uri == NULL)
        return TOOL_EXIT_USAGE;
    if ((rc = key_prepare(o, uri, &g)) != TOOL_EXIT_OK)
        goto done;
    rc = TOOL_EXIT_FAIL;
    if ((mod = tool_module(uri, o->module)) == NULL ||
        (tok = tool_token_one(mod, uri)) == NULL)
        goto done;
    if (!p11m_token_has_mech(tok, g.kt->mech)) {
        tool_err("the token cannot generate %s keys (no mechanism 0x%lx)", g.kt->name,
                 g.kt->mech);
        goto done;
    }
    tool_login_info(&li, o->pin_source);
    if (p11m_token_login(tok, &li) != CKR_OK || p11m_session_open_rw(tok, &s) != CKR_OK)
        goto done;
    if (key_check_free(tok, s, &g) && key_generate_retry(tok, s, &g))
        rc = TOOL_EXIT_OK;
    p11m_session_close(tok, s);
    if (rc == TOOL_EXIT_OK &&
        (out = tool_obj_uri(tok, CKO_PRIVATE_KEY, g.id, g.idlen, g.label)) != NULL) {
        printf("%s\n", out);
        free(out);
    }
done:
    p11_kit_uri_free(uri);
    return rc;
}

/* tool_getopt: one option of the command into its options. */
static int key_gen_opt(int c, char *arg, void *vo)
{
    struct gen_opts *o = vo;

    switch (c) {
    case 'u':
        o->uri = arg;
        break;
    case 't':
        o->type = arg;
        break;
    case 'i':
        o->id = arg;
        break;
    case 'p':
        o->pin_source = arg;
        break;
    case 'm':
        o->module = arg;
        break;
    }
    return 0;
}

static int key_gen(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"uri", required_argument, NULL, 'u'},
        {"type", required_argument, NULL, 't'},
        {"id", required_argument, NULL, 'i'},
        {"pin-source", required_argument, NULL, 'p'},
        {"module", required_argument, NULL, 'm'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    static const TOOL_CMD cmd = {CMD, "", longopts, key_usage, 0};
    struct gen_opts o = {NULL, NULL, NULL, NULL, NULL};
    int rc;

    if ((rc = tool_getopt(&cmd, argc, argv, key_gen_opt, &o)) != TOOL_PARSED)
        return rc;
    if (o.uri == NULL || o.type == NULL)
        return tool_usage(CMD, "--uri and --type are required");
    if (!tool_pin_source_ok(CMD, "--pin-source", o.pin_source))
        return TOOL_EXIT_USAGE;
    return key_do_generate(&o);
}

int key_main(int argc, char **argv)
{
    return tool_subcommand("key", "generate", key_gen, key_usage, argc, argv);
}
