/*
 * csr.c - "p11mtls csr": a certificate request signed on the token through the provider.
 *
 * The request's public key comes from the token's public attributes (read by the core, no
 * login); the signature is made by the provider's key, and the request is verified with
 * that public key before it is written, so a key and public half that do not belong
 * together are caught here rather than at the CA.
 */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>

#include "tool.h"

#define CMD "csr"

struct csr_opts {
    const char *key;
    const char *subject;
    const char *device_id;
    const char *out;
    const char *pin_source;
    const char *module;
    const char *provider;
};

static void csr_usage(FILE *out)
{
    fputs(
        "Usage: p11mtls csr --key URI --subject '/CN=NAME/UID=DEVICE-ID' [-o FILE]\n"
        "                   [--device-id ID] [--pin-source SRC] [--module PATH]\n"
        "                   [--provider PATH]\n"
        "\n"
        "Writes a PEM certificate request for the token key URI, signed on the token\n"
        "through the p11mtls provider. The device id belongs in the subject as UID.\n"
        "\n"
        "  --key URI          the private key (pkcs11: URI, e.g. from 'key generate')\n"
        "  --subject DN       /TYPE=value/... (OpenSSL names: CN, O, OU, C, UID, ...);\n"
        "                     a '/' inside a value is written '\\/'\n"
        "  --device-id ID     appends /UID=ID to the subject\n"
        "  -o, --out FILE     output file (default: standard output)\n"
        "  --pin-source SRC   user PIN: file:PATH or env:NAME (else asked on a "
        "terminal)\n"
        "  --module PATH      PKCS#11 module (default: p11-kit's proxy)\n"
        "  --provider PATH    p11mtls.so (default: $P11MTLS_PROVIDER, else installed)\n",
        out);
}

/* Adds one "TYPE=value" to name; 0 with a usage message when it is not one. */
static int csr_add_rdn(X509_NAME *name, char *rdn)
{
    char *eq = strchr(rdn, '=');

    if (eq == NULL || eq == rdn || eq[1] == '\0') {
        tool_usage(CMD, "--subject: '%s' is not TYPE=value", rdn);
        return 0;
    }
    *eq = '\0';
    if (OBJ_txt2nid(rdn) == NID_undef) {
        tool_usage(CMD, "--subject: unknown attribute type '%s'", rdn);
        return 0;
    }
    if (!X509_NAME_add_entry_by_txt(name, rdn, MBSTRING_UTF8, (unsigned char *) eq + 1,
                                    -1, -1, 0)) {
        ERR_clear_error();
        tool_usage(CMD, "--subject: bad value for %s", rdn);
        return 0;
    }
    return 1;
}

/*
 * "/A=b/C=d" into an X509_NAME, splitting on unescaped '/' ("\/" and "\\" are literal).
 * OpenSSL 3.0 has no public parser for this form.
 */
X509_NAME *csr_parse_subject(const char *s)
{
    X509_NAME *name = X509_NAME_new();
    char *buf = malloc(strlen(s) + 1), *w = buf;
    int ok = name != NULL && buf != NULL;

    if (ok && *s != '/') {
        tool_usage(CMD, "--subject: must start with '/', as in /CN=device/UID=1234");
        ok = 0;
    }
    for (s = ok ? s + 1 : s; ok; s++) {
        if (*s == '\\' && s[1] != '\0') {
            *w++ = *++s;
            continue;
        }
        if (*s != '/' && *s != '\0') {
            *w++ = *s;
            continue;
        }
        *w = '\0';
        ok = csr_add_rdn(name, buf);
        w = buf;
        if (*s == '\0')
            break;
    }
    free(buf);
    if (!ok) {
        X509_NAME_free(name);
        return NULL;
    }
    return name;
}

static int csr_subject_has_uid(const X509_NAME *name)
{
    return X509_NAME_get_index_by_NID(name, NID_userId, -1) >= 0;
}

/* The digest for a key: SHA-256, longer for bigger curves, none for EdDSA. */
static const char *csr_digest(const EVP_PKEY *pub)
{
    char desc[64];

    tool_pkey_desc(pub, desc, sizeof(desc));
    if (strncmp(desc, "Ed", 2) == 0)
        return NULL;
    if (strcmp(desc, "EC P-384") == 0)
        return "SHA384";
    if (strcmp(desc, "EC P-521") == 0)
        return "SHA512";
    return "SHA256";
}

/* The public key of the request: the token's public attributes, read by the core. */
static EVP_PKEY *csr_token_pubkey(const struct csr_opts *o, P11KitUri *uri)
{
    P11M_MODULE *mod = tool_module(uri, o->module);
    P11M_OBJ *obj = mod != NULL ? tool_obj_one(mod, uri, CKO_PRIVATE_KEY, NULL) : NULL;
    EVP_PKEY *pub = obj != NULL ? tool_obj_pubkey(obj) : NULL;

    if (obj != NULL && pub == NULL)
        tool_err("the token shows no usable public key for %s", o->key);
    p11m_obj_free(obj);
    return pub;
}

static int csr_sign(X509_REQ *req, EVP_PKEY *key, EVP_PKEY *pub, OSSL_LIB_CTX *lc)
{
    EVP_MD_CTX *mctx = EVP_MD_CTX_new();
    int ok =
        mctx != NULL &&
        EVP_DigestSignInit_ex(mctx, NULL, csr_digest(pub), lc, NULL, key, NULL) > 0 &&
        X509_REQ_sign_ctx(req, mctx) > 0;

    EVP_MD_CTX_free(mctx);
    if (!ok) {
        tool_ossl_err("signing the request on the token failed");
        return 0;
    }
    if (X509_REQ_verify(req, pub) <= 0) {
        tool_ossl_err("the token's signature does not verify with its public key: the "
                      "key and its public half do not match");
        return 0;
    }
    return 1;
}

static int csr_make(const struct csr_opts *o, X509_NAME *subj, P11KitUri *uri)
{
    OSSL_LIB_CTX *lc = NULL;
    EVP_PKEY *pub = csr_token_pubkey(o, uri), *key = NULL;
    X509_REQ *req = NULL;
    BIO *out = NULL;
    int ok = 0;

    if (pub == NULL || (lc = tool_libctx(tool_provider_path(o->provider))) == NULL ||
        (key = tool_load_key(lc, o->key, o->pin_source, o->module)) == NULL)
        goto done;
    if ((req = X509_REQ_new_ex(lc, NULL)) == NULL || !X509_REQ_set_version(req, 0) ||
        !X509_REQ_set_subject_name(req, subj) || !X509_REQ_set_pubkey(req, pub)) {
        tool_ossl_err("cannot build the request");
        goto done;
    }
    if (!csr_sign(req, key, pub, lc) || (out = tool_bio_out(o->out, 0644)) == NULL)
        goto done;
    ok = PEM_write_bio_X509_REQ(out, req) && BIO_flush(out) > 0;
    if (!ok)
        tool_ossl_err("%s: cannot write the request", o->out != NULL ? o->out : "stdout");
done:
    BIO_free(out);
    X509_REQ_free(req);
    EVP_PKEY_free(key);
    EVP_PKEY_free(pub);
    OSSL_LIB_CTX_free(lc);
    return ok ? TOOL_EXIT_OK : TOOL_EXIT_FAIL;
}

static int csr_run(const struct csr_opts *o)
{
    P11KitUri *uri = tool_uri(CMD, "--key", o->key);
    X509_NAME *subj = uri != NULL ? csr_parse_subject(o->subject) : NULL;
    int rc = TOOL_EXIT_USAGE;

    if (subj != NULL && o->device_id != NULL &&
        !X509_NAME_add_entry_by_NID(subj, NID_userId, MBSTRING_UTF8,
                                    (unsigned char *) o->device_id, -1, -1, 0)) {
        ERR_clear_error();
        tool_usage(CMD, "--device-id: unusable value");
        goto done;
    }
    if (subj == NULL)
        goto done;
    if (!csr_subject_has_uid(subj))
        tool_warn("the subject has no UID: the device id belongs there (/UID=...)");
    rc = csr_make(o, subj, uri);
done:
    X509_NAME_free(subj);
    p11_kit_uri_free(uri);
    return rc;
}

/* tool_getopt: one option of the command into its options. */
static int csr_main_opt(int c, char *arg, void *vo)
{
    struct csr_opts *o = vo;

    switch (c) {
    case 'k':
        o->key = arg;
        break;
    case 's':
        o->subject = arg;
        break;
    case 'd':
        o->device_id = arg;
        break;
    case 'o':
        o->out = arg;
        break;
    case 'p':
        o->pin_source = arg;
        break;
    case 'm':
        o->module = arg;
        break;
    case 'P':
        o->provider = arg;
        break;
    }
    return 0;
}

int csr_main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"key", required_argument, NULL, 'k'},
        {"subject", required_argument, NULL, 's'},
        {"device-id", required_argument, NULL, 'd'},
        {"out", required_argument, NULL, 'o'},
        {"pin-source", required_argument, NULL, 'p'},
        {"module", required_argument, NULL, 'm'},
        {"provider", required_argument, NULL, 'P'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    static const TOOL_CMD cmd = {CMD, "o:h", longopts, csr_usage, 0};
    struct csr_opts o = {NULL, NULL, NULL, NULL, NULL, NULL, NULL};
    int rc;

    if ((rc = tool_getopt(&cmd, argc, argv, csr_main_opt, &o)) != TOOL_PARSED)
        return rc;
    if (o.key == NULL || o.subject == NULL)
        return tool_usage(CMD, "--key and --subject are required");
    if (!tool_pin_source_ok(CMD, "--pin-source", o.pin_source))
        return TOOL_EXIT_USAGE;
    return csr_run(&o);
}
