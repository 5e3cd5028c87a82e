/*
 * cert.c - "p11mtls cert import": the certificate goes on the token under its key's
 * CKA_ID and label (that pairing is how the provider and the shim find it), chain
 * certificates next to it with their own labels and an empty CKA_ID so they never pair
 * with a key.
 */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509.h>

#include "tool.h"

#define CMD "cert import"

struct import_opts {
    const char *uri;
    const char *cert;
    const char *chain;
    const char *pin_source;
    const char *module;
    int force;
};

/* The DER pieces of a certificate that become its attributes. */
struct cert_der {
    unsigned char *value, *subject, *issuer, *serial;
    int value_len, subject_len, issuer_len, serial_len;
};

static void cert_usage(FILE *out)
{
    fputs("Usage: p11mtls cert import --uri KEY-URI --cert FILE [--chain FILE]\n"
          "                           [--pin-source SRC] [--module PATH] [--force]\n"
          "\n"
          "Stores the certificate on the token next to its key (same CKA_ID and label),\n"
          "after checking that its public key is the key's. Chain certificates (PEM)\n"
          "are stored as separate objects labelled LABEL-ca1, LABEL-ca2, ... with no\n"
          "CKA_ID; ones already on the token are skipped.\n"
          "\n"
          "  --uri URI          the key (pkcs11: URI)\n"
          "  --cert FILE        the certificate, PEM or DER\n"
          "  --chain FILE       intermediate and root certificates, PEM\n"
          "  --pin-source SRC   user PIN: file:PATH or env:NAME (else asked on a "
          "terminal)\n"
          "  --module PATH      PKCS#11 module (default: p11-kit's proxy)\n"
          "  --force            replace a different certificate already stored for the "
          "key\n",
          out);
}

static void cert_der_free(struct cert_der *d)
{
    OPENSSL_free(d->value);
    OPENSSL_free(d->subject);
    OPENSSL_free(d->issuer);
    OPENSSL_free(d->serial);
}

static int cert_der_get(X509 *x, struct cert_der *d)
{
    memset(d, 0, sizeof(*d));
    d->value_len = i2d_X509(x, &d->value);
    d->subject_len = i2d_X509_NAME(X509_get_subject_name(x), &d->subject);
    d->issuer_len = i2d_X509_NAME(X509_get_issuer_name(x), &d->issuer);
    d->serial_len = i2d_ASN1_INTEGER(X509_get0_serialNumber(x), &d->serial);
    if (d->value_len > 0 && d->subject_len > 0 && d->issuer_len > 0 && d->serial_len > 0)
        return 1;
    cert_der_free(d);
    tool_ossl_err("cannot encode the certificate");
    return 0;
}

/* Handles of certificates with the attributes a[0..na-1] (na <= 2); -1 on error. */
static long cert_find(P11M_TOKEN *tok, CK_SESSION_HANDLE s, const CK_ATTRIBUTE *a,
                      CK_ULONG na, CK_OBJECT_HANDLE *h, CK_ULONG cap)
{
    CK_OBJECT_CLASS cls = CKO_CERTIFICATE;
    CK_ATTRIBUTE t[3] = {{CKA_CLASS, &cls, sizeof(cls)}, a[0], na > 1 ? a[1] : a[0]};
    CK_ULONG n = 0;
    CK_RV rv = p11m_find_handles(p11m_token_module(tok), s, t, 1 + na, h, cap, &n);

    if (rv != CKR_OK) {
        tool_err("searching the token: %s", p11m_ckr_name(rv));
        return -1;
    }
    return (long) n;
}

static CK_RV cert_create(P11M_TOKEN *tok, CK_SESSION_HANDLE s, const struct cert_der *d,
                         const char *label, const unsigned char *id, size_t idlen,
                         CK_ULONG category)
{
    static CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    CK_OBJECT_CLASS cls = CKO_CERTIFICATE;
    CK_CERTIFICATE_TYPE ctype = CKC_X_509;
    CK_OBJECT_HANDLE h;
    CK_ATTRIBUTE t[] = {
        {CKA_CLASS, &cls, sizeof(cls)},
        {CKA_CERTIFICATE_TYPE, &ctype, sizeof(ctype)},
        {CKA_TOKEN, &yes, 1},
        {CKA_PRIVATE, &no, 1},
        {CKA_LABEL, (void *) label, strlen(label)},
        {CKA_ID, (void *) id, idlen},
        {CKA_SUBJECT, d->subject, (CK_ULONG) d->subject_len},
        {CKA_ISSUER, d->issuer, (CK_ULONG) d->issuer_len},
        {CKA_SERIAL_NUMBER, d->serial, (CK_ULONG) d->serial_len},
        {CKA_VALUE, d->value, (CK_ULONG) d->value_len},
        {CKA_CERTIFICATE_CATEGORY, &category, sizeof(category)},
    };

    return p11m_object_create(tok, s, t, sizeof(t) / sizeof(t[0]), &h);
}

CK_RV cert_create_x509(P11M_TOKEN *tok, CK_SESSION_HANDLE s, X509 *x, const char *label,
                       const unsigned char *id, size_t idlen, CK_ULONG category)
{
    struct cert_der d;
    CK_RV rv;

    if (!cert_der_get(x, &d))
        return CKR_GENERAL_ERROR;
    rv = cert_create(tok, s, &d, label, id, idlen, category);
    cert_der_free(&d);
    return rv;
}

/* The certificates stored for the key's CKA_ID. */
struct cert_old {
    CK_OBJECT_HANDLE h[16];
    long n;
};

/*
 * What is stored for the key's CKA_ID already: 0 nothing, or (with --force) different
 * certificates, listed in old to be removed once the new one is stored; 1 this very
 * certificate; -1 a different one kept (error printed) or an error.
 */
static int cert_existing(P11M_TOKEN *tok, CK_SESSION_HANDLE s, const P11M_OBJ *key,
                         const struct cert_der *d, int force, struct cert_old *old)
{
    size_t idlen;
    const unsigned char *id = p11m_obj_id(key, &idlen);
    const CK_ATTRIBUTE q[2] = {{CKA_ID, (void *) id, idlen},
                               {CKA_VALUE, d->value, (CK_ULONG) d->value_len}};
    CK_OBJECT_HANDLE same_h[16];
    long same;

    old->n = cert_find(tok, s, q, 1, old->h, 16);
    if (old->n <= 0)
        return (int) old->n;
    if ((same = cert_find(tok, s, q, 2, same_h, 16)) < 0)
        return -1;
    if (same == old->n)
        return 1;
    if (!force) {
        tool_err(
            "the token already has a different certificate for key '%s'; add --force "
            "to replace it",
            p11m_obj_label(key));
        return -1;
    }
    return 0;
}

/* After the new certificate is stored: the key never goes without one. */
static int cert_remove_old(P11M_TOKEN *tok, CK_SESSION_HANDLE s,
                           const struct cert_old *old)
{
    for (long i = 0; i < old->n; i++) {
        CK_RV rv = p11m_object_destroy(tok, s, old->h[i]);

        if (rv != CKR_OK) {
            tool_err("the new certificate is stored, but removing the old one failed: "
                     "C_DestroyObject: %s",
                     p11m_ckr_name(rv));
            return 0;
        }
    }
    return 1;
}

/* Stores the chain certificates that are not on the token yet. */
static int cert_store_chain(P11M_TOKEN *tok, CK_SESSION_HANDLE s, STACK_OF(X509) * chain,
                            X509 *leaf, const char *label)
{
    char clabel[300];
    int stored = 0;

    for (int i = 0; i < sk_X509_num(chain); i++) {
        X509 *x = sk_X509_value(chain, i);
        struct cert_der d;
        CK_OBJECT_HANDLE h[4];
        CK_ATTRIBUTE by_value;
        long n;
        CK_RV rv;

        if (X509_cmp(x, leaf) == 0 || !cert_der_get(x, &d))
            continue;
        by_value = (CK_ATTRIBUTE){CKA_VALUE, d.value, (CK_ULONG) d.value_len};
        n = cert_find(tok, s, &by_value, 1, h, 4);
        snprintf(clabel, sizeof(clabel), "%s-ca%d", label, i + 1);
        rv = n == 0 ? cert_create(tok, s, &d, clabel, NULL, 0, 2) : CKR_OK;
        cert_der_free(&d);
        if (n < 0)
            return 0;
        if (rv != CKR_OK) {
            tool_err("storing chain certificate %d: C_CreateObject: %s", i + 1,
                     p11m_ckr_name(rv));
            return 0;
        }
        stored += n == 0;
    }
    if (stored > 0)
        fprintf(stderr, "p11mtls: stored %d chain certificate(s)\n", stored);
    return 1;
}

/* The certificate's key must be the token key's: anything else can never be used. */
static int cert_matches_key(X509 *x, const P11M_OBJ *key, const char *path)
{
    EVP_PKEY *pub = tool_obj_pubkey(key);
    int eq = pub != NULL && EVP_PKEY_eq(pub, X509_get0_pubkey(x)) == 1;
    char a[64], b[64];

    if (!eq)
        tool_err("--cert: %s is for a different key (%s) than '%s' (%s): refused", path,
                 tool_pkey_desc(X509_get0_pubkey(x), a, sizeof(a)), p11m_obj_label(key),
                 tool_pkey_desc(pub, b, sizeof(b)));
    EVP_PKEY_free(pub);
    ERR_clear_error();
    return eq;
}

static int cert_store(const struct import_opts *o, P11M_OBJ *key, X509 *x,
                      STACK_OF(X509) * chain)
{
    P11M_TOKEN *tok = p11m_obj_token(key);
    P11M_LOGIN_INFO li;
    CK_SESSION_HANDLE s;
    struct cert_der d;
    struct cert_old old;
    size_t idlen;
    const unsigned char *id = p11m_obj_id(key, &idlen);
    int ok = 0, have;
    CK_RV rv;

    tool_login_info(&li, o->pin_source);
    if (!cert_der_get(x, &d))
        return 0;
    if (p11m_token_login(tok, &li) != CKR_OK || p11m_session_open_rw(tok, &s) != CKR_OK)
        goto done;
    have = cert_existing(tok, s, key, &d, o->force, &old);
    if (have == 0) {
        rv = cert_create(tok, s, &d, p11m_obj_label(key), id, idlen, 1);
        if (rv != CKR_OK)
            tool_err("storing the certificate: C_CreateObject: %s", p11m_ckr_name(rv));
        have = rv == CKR_OK && cert_remove_old(tok, s, &old) ? 0 : -1;
    } else if (have == 1) {
        fprintf(stderr, "p11mtls: the certificate is on the token already\n");
    }
    ok = have >= 0 &&
         (chain == NULL || cert_store_chain(tok, s, chain, x, p11m_obj_label(key)));
    p11m_session_close(tok, s);
done:
    cert_der_free(&d);
    return ok;
}

static void cert_warn_validity(X509 *x)
{
    long left = tool_days_left(X509_get0_notAfter(x));

    if (left < 0)
        tool_warn("the certificate expired %ld day(s) ago", -left);
    else if (tool_days_left(X509_get0_notBefore(x)) > 0)
        tool_warn("the certificate is not valid yet");
}

static int cert_do_import(const struct import_opts *o)
{
    P11KitUri *uri = tool_uri(CMD, "--uri", o->uri);
    P11M_MODULE *mod;
    P11M_OBJ *key = NULL;
    STACK_OF(X509) *chain = NULL;
    X509 *x = NULL;
    size_t idlen;
    char *curi;
    int rc = TOOL_EXIT_FAIL;

    if (uri == NULL)
        return TOOL_EXIT_USAGE;
    if ((x = tool_read_cert(o->cert)) == NULL ||
        (o->chain != NULL && (chain = tool_read_certs(o->chain)) == NULL))
        goto done;
    if ((mod = tool_module(uri, o->module)) == NULL ||
        (key = tool_obj_one(mod, uri, CKO_PRIVATE_KEY, NULL)) == NULL)
        goto done;
    p11m_obj_id(key, &idlen);
    if (idlen == 0) {
        tool_err("key '%s' has no CKA_ID, so no certificate can be paired with it",
                 p11m_obj_label(key));
        goto done;
    }
    if (!cert_matches_key(x, key, o->cert))
        goto done;
    cert_warn_validity(x);
    if (!cert_store(o, key, x, chain))
        goto done;
    rc = TOOL_EXIT_OK;
    curi = tool_obj_uri(p11m_obj_token(key), CKO_CERTIFICATE, p11m_obj_id(key, &idlen),
                        idlen, p11m_obj_label(key));
    if (curi != NULL)
        printf("%s\n", curi);
    free(curi);
done:
    p11m_obj_free(key);
    X509_free(x);
    sk_X509_pop_free(chain, X509_free);
    p11_kit_uri_free(uri);
    return rc;
}

/* tool_getopt: one option of the command into its options. */
static int cert_import_opt(int c, char *arg, void *vo)
{
    struct import_opts *o = vo;

    switch (c) {
    case 'u':
        o->uri = arg;
        break;
    case 'c':
        o->cert = arg;
        break;
    case 'C':
        o->chain = arg;
        break;
    case 'p':
        o->pin_source = arg;
        break;
    case 'm':
        o->module = arg;
        break;
    case 'f':
        o->force = 1;
        break;
    }
    return 0;
}

static int cert_import(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"uri", required_argument, NULL, 'u'},
        {"cert", required_argument, NULL, 'c'},
        {"chain", required_argument, NULL, 'C'},
        {"pin-source", required_argument, NULL, 'p'},
        {"module", required_argument, NULL, 'm'},
        {"force", no_argument, NULL, 'f'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    static const TOOL_CMD cmd = {CMD, "h", longopts, cert_usage, 0};
    struct import_opts o = {NULL, NULL, NULL, NULL, NULL, 0};
    int rc;

    if ((rc = tool_getopt(&cmd, argc, argv, cert_import_opt, &o)) != TOOL_PARSED)
        return rc;
    if (o.uri == NULL || o.cert == NULL)
        return tool_usage(CMD, "--uri and --cert are required");
    if (!tool_pin_source_ok(CMD, "--pin-source", o.pin_source))
        return TOOL_EXIT_USAGE;
    return cert_do_import(&o);
}

int cert_main(int argc, char **argv)
{
    return tool_subcommand("cert", "import", cert_import, cert_usage, argc, argv);
}
