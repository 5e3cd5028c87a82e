/*
 * ca.c - "p11mtls ca init | issue": a small development CA for demos and tests. Its keys
 * are plain EC P-256 files (mode 0600): production devices get their certificates from
 * the organisation's CA instead.
 *
 * A CA directory holds root.key/root.pem, optionally intermediate.key/intermediate.pem
 * (the issuer when present), and chain.pem: the issuer's chain up to the root, which is
 * what a device presents with its certificate and what a server trusts.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "tool.h"

#define CA_KEY_MODE 0600

struct ca_file {
    char key[PATH_MAX];
    char cert[PATH_MAX];
};

static void ca_usage(FILE *out)
{
    fputs(
        "Usage: p11mtls ca init DIR [--intermediate] [--name NAME] [--days N]\n"
        "       p11mtls ca issue DIR --csr FILE [--days N] [-o FILE] [--chain-out FILE]\n"
        "\n"
        "A small development CA for demos and tests, with EC P-256 keys in plain files\n"
        "(mode 0600). Production devices get their certificates from the organisation's\n"
        "CA: send it the request from 'p11mtls csr' instead.\n"
        "\n"
        "ca init: creates DIR with root.key/root.pem, with --intermediate also\n"
        "  intermediate.key/intermediate.pem (then the issuer), and chain.pem (the\n"
        "  issuer's chain up to the root: give it to servers as their client CA file).\n"
        "  --name NAME     common-name prefix (default \"p11mtls development\")\n"
        "  --days N        validity of the CA certificates (default 3650)\n"
        "\n"
        "ca issue: verifies the request's signature and issues a client certificate for\n"
        "  its subject and key: random serial, CA:FALSE, keyUsage digitalSignature,\n"
        "  extendedKeyUsage clientAuth, subject and authority key identifiers.\n"
        "  --csr FILE        the request (PEM or DER)\n"
        "  --days N          validity in days (default 365)\n"
        "  -o, --out FILE    the certificate (default: standard output)\n"
        "  --chain-out FILE  a copy of DIR/chain.pem, for 'cert import --chain'\n",
        out);
}

static void ca_paths(const char *dir, const char *base, struct ca_file *f)
{
    snprintf(f->key, sizeof(f->key), "%s/%s.key", dir, base);
    snprintf(f->cert, sizeof(f->cert), "%s/%s.pem", dir, base);
}

static int ca_write_key(const char *path, EVP_PKEY *key)
{
    BIO *b = tool_bio_out(path, CA_KEY_MODE);
    int ok = b != NULL && PEM_write_bio_PrivateKey(b, key, NULL, NULL, 0, NULL, NULL) &&
             BIO_flush(b) > 0;

    if (b != NULL && !ok)
        tool_ossl_err("%s: cannot write the key", path);
    BIO_free(b);
    return ok;
}

static int ca_write_certs(const char *path, X509 *const *certs, int n)
{
    BIO *b = tool_bio_out(path, 0644);
    int ok = b != NULL;

    for (int i = 0; ok && i < n; i++)
        ok = PEM_write_bio_X509(b, certs[i]);
    ok = ok && BIO_flush(b) > 0;
    if (b != NULL && !ok)
        tool_ossl_err("%s: cannot write", path);
    BIO_free(b);
    return ok;
}

static EVP_PKEY *ca_read_key(const char *path)
{
    BIO *b = BIO_new_file(path, "rb");
    EVP_PKEY *k = b != NULL ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL) : NULL;

    BIO_free(b);
    if (k == NULL)
        tool_ossl_err("%s: cannot read the CA key", path);
    return k;
}

static int ca_add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509_EXTENSION *ext;
    int ok;

    X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
    ext = X509V3_EXT_nconf_nid(NULL, &ctx, nid, value);
    ok = ext != NULL && X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    return ok;
}

/* 127 random bits: positive, unique enough for a development CA, never zero. */
static int ca_set_serial(X509 *x)
{
    BIGNUM *bn = BN_new();
    int ok = bn != NULL && BN_rand(bn, 127, BN_RAND_TOP_ONE, BN_RAND_BOTTOM_ANY) &&
             BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) != NULL;

    BN_free(bn);
    return ok;
}

/* An unsigned certificate for subject/pub from issuer (NULL: self-issued). */
static X509 *ca_cert_new(const X509_NAME *subject, EVP_PKEY *pub, X509 *issuer, long days)
{
    X509 *x = X509_new();
    int ok = x != NULL && X509_set_version(x, X509_VERSION_3) && ca_set_serial(x) &&
             X509_set_subject_name(x, subject) &&
             X509_set_issuer_name(x, issuer != NULL ? X509_get_subject_name(issuer)
                                                    : subject) &&
             X509_gmtime_adj(X509_getm_notBefore(x), -300) &&
             X509_time_adj_ex(X509_getm_notAfter(x), (int) days, 0, NULL) &&
             X509_set_pubkey(x, pub);

    if (!ok) {
        X509_free(x);
        return NULL;
    }
    return x;
}

static X509 *ca_make_ca_cert(const char *cn, EVP_PKEY *key, X509 *issuer, EVP_PKEY *ikey,
                             long days, int pathlen0)
{
    X509_NAME *name = X509_NAME_new();
    X509 *x = NULL;
    int ok;

    if (name != NULL && X509_NAME_add_entry_by_NID(name, NID_commonName, MBSTRING_UTF8,
                                                   (const unsigned char *) cn, -1, -1, 0))
        x = ca_cert_new(name, key, issuer, days);
    X509_NAME_free(name);
    if (x == NULL)
        return NULL;
    ok = ca_add_ext(x, issuer != NULL ? issuer : x, NID_basic_constraints,
                    pathlen0 ? "critical,CA:TRUE,pathlen:0" : "critical,CA:TRUE") &&
         ca_add_ext(x, x, NID_key_usage, "critical,keyCertSign,cRLSign") &&
         ca_add_ext(x, x, NID_subject_key_identifier, "hash") &&
         ca_add_ext(x, issuer != NULL ? issuer : x, NID_authority_key_identifier,
                    "keyid:always") &&
         X509_sign(x, issuer != NULL ? ikey : key, EVP_sha256()) > 0;
    if (!ok) {
        X509_free(x);
        return NULL;
    }
    return x;
}

static int ca_mkdir(const char *dir)
{
    struct ca_file root;

    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        tool_err("%s: %s", dir, strerror(errno));
        return 0;
    }
    ca_paths(dir, "root", &root);
    if (access(root.key, F_OK) == 0) {
        tool_err("%s already holds a CA (%s); choose another directory", dir, root.key);
        return 0;
    }
    return 1;
}

struct ca_init_opts {
    const char *dir;
    const char *name;
    long days;
    int intermediate;
};

static int ca_do_init(const struct ca_init_opts *o)
{
    struct ca_file rf, inf;
    char cn[256], chain[PATH_MAX];
    EVP_PKEY *rkey = NULL, *ikey = NULL;
    X509 *root = NULL, *inter = NULL, *certs[2];
    int ok = 0;

    if (!ca_mkdir(o->dir))
        return TOOL_EXIT_FAIL;
    ca_paths(o->dir, "root", &rf);
    ca_paths(o->dir, "intermediate", &inf);
    snprintf(chain, sizeof(chain), "%s/chain.pem", o->dir);
    snprintf(cn, sizeof(cn), "%s root CA", o->name);
    rkey = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    if (rkey == NULL ||
        (root = ca_make_ca_cert(cn, rkey, NULL, NULL, o->days, 0)) == NULL) {
        tool_ossl_err("cannot create the root CA");
        goto done;
    }
    if (o->intermediate) {
        snprintf(cn, sizeof(cn), "%s intermediate CA", o->name);
        ikey = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
        if (ikey == NULL ||
            (inter = ca_make_ca_cert(cn, ikey, root, rkey, o->days, 1)) == NULL) {
            tool_ossl_err("cannot create the intermediate CA");
            goto done;
        }
    }
    certs[0] = inter != NULL ? inter : root;
    certs[1] = root;
    ok = ca_write_key(rf.key, rkey) && ca_write_certs(rf.cert, &root, 1) &&
         (inter == NULL ||
          (ca_write_key(inf.key, ikey) && ca_write_certs(inf.cert, &inter, 1))) &&
         ca_write_certs(chain, certs, inter != NULL ? 2 : 1);
    if (ok)
        printf("development CA in %s: issuer %s, chain %s\n", o->dir,
               inter != NULL ? inf.cert : rf.cert, chain);
done:
    X509_free(root);
    X509_free(inter);
    EVP_PKEY_free(rkey);
    EVP_PKEY_free(ikey);
    return ok ? TOOL_EXIT_OK : TOOL_EXIT_FAIL;
}

/* tool_getopt: one option of the command into its options. */
static int ca_init_opt(int c, char *arg, void *vo)
{
    struct ca_init_opts *o = vo;

    switch (c) {
    case 'i':
        o->intermediate = 1;
        break;
    case 'n':
        o->name = arg;
        break;
    case 'd':
        if (!tool_parse_long("ca init", "--days", arg, 1, 36500, &o->days))
            return TOOL_EXIT_USAGE;
        break;
    }
    return 0;
}

static int ca_init(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"intermediate", no_argument, NULL, 'i'},
        {"name", required_argument, NULL, 'n'},
        {"days", required_argument, NULL, 'd'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    static const TOOL_CMD cmd = {"ca init", "h", longopts, ca_usage, -1};
    struct ca_init_opts o = {NULL, "p11mtls development", 3650, 0};
    int rc;

    if ((rc = tool_getopt(&cmd, argc, argv, ca_init_opt, &o)) != TOOL_PARSED)
        return rc;
    if (argc - optind != 1)
        return tool_usage("ca init", "give exactly one directory");
    if (*o.name == '\0' || strlen(o.name) > 200)
        return tool_usage("ca init", "--name: give 1 to 200 bytes");
    o.dir = argv[optind];
    return ca_do_init(&o);
}

/* ---- issue ---- */

static X509_REQ *ca_read_csr(const char *path)
{
    BIO *b = BIO_new_file(path, "rb");
    X509_REQ *req = NULL;

    if (b == NULL) {
        tool_err("--csr: %s: %s", path, strerror(errno));
        ERR_clear_error();
        return NULL;
    }
    req = PEM_read_bio_X509_REQ(b, NULL, NULL, NULL);
    if (req == NULL && BIO_reset(b) == 0)
        req = d2i_X509_REQ_bio(b, NULL);
    BIO_free(b);
    if (req == NULL) {
        tool_ossl_err("--csr: %s: not a certificate request (PEM or DER)", path);
        return NULL;
    }
    ERR_clear_error();
    return req;
}

/* The issuing CA of dir: the intermediate when there is one, else the root. */
static int ca_load_issuer(const char *dir, X509 **cert, EVP_PKEY **key)
{
    struct ca_file f;

    ca_paths(dir, "intermediate", &f);
    if (access(f.key, F_OK) != 0)
        ca_paths(dir, "root", &f);
    if (access(f.key, F_OK) != 0) {
        tool_err("%s is not a CA directory (no root.key): run 'p11mtls ca init %s'", dir,
                 dir);
        return 0;
    }
    if ((*cert = tool_read_cert(f.cert)) == NULL || (*key = ca_read_key(f.key)) == NULL)
        return 0;
    if (X509_check_private_key(*cert, *key) != 1) {
        tool_ossl_err("%s does not belong to %s", f.key, f.cert);
        return 0;
    }
    return 1;
}

static X509 *ca_issue_cert(X509_REQ *req, X509 *icert, EVP_PKEY *ikey, long days)
{
    EVP_PKEY *pub = X509_REQ_get0_pubkey(req);
    X509 *x = ca_cert_new(X509_REQ_get_subject_name(req), pub, icert, days);
    int ok = x != NULL &&
             ca_add_ext(x, icert, NID_basic_constraints, "critical,CA:FALSE") &&
             ca_add_ext(x, icert, NID_key_usage, "critical,digitalSignature") &&
             ca_add_ext(x, icert, NID_ext_key_usage, "clientAuth") &&
             ca_add_ext(x, icert, NID_subject_key_identifier, "hash") &&
             ca_add_ext(x, icert, NID_authority_key_identifier, "keyid:always") &&
             X509_sign(x, ikey, EVP_sha256()) > 0;

    if (!ok) {
        tool_ossl_err("cannot issue the certificate");
        X509_free(x);
        return NULL;
    }
    return x;
}

static int ca_copy_chain(const char *dir, const char *out)
{
    char path[PATH_MAX];
    STACK_OF(X509) * sk;
    X509 *certs[8];
    int n, ok;

    snprintf(path, sizeof(path), "%s/chain.pem", dir);
    if ((sk = tool_read_certs(path)) == NULL)
        return 0;
    n = sk_X509_num(sk) < 8 ? sk_X509_num(sk) : 8;
    for (int i = 0; i < n; i++)
        certs[i] = sk_X509_value(sk, i);
    ok = ca_write_certs(out, certs, n);
    sk_X509_pop_free(sk, X509_free);
    return ok;
}

struct ca_issue_opts {
    const char *dir;
    const char *csr;
    const char *out;
    const char *chain_out;
    long days;
};

static int ca_do_issue(const struct ca_issue_opts *o)
{
    X509_REQ *req = ca_read_csr(o->csr);
    X509 *icert = NULL, *x = NULL;
    EVP_PKEY *ikey = NULL;
    char subj[512];
    int ok = 0;

    if (req == NULL)
        return TOOL_EXIT_FAIL;
    if (X509_REQ_get0_pubkey(req) == NULL ||
        X509_REQ_verify(req, X509_REQ_get0_pubkey(req)) <= 0) {
        tool_ossl_err("--csr: %s: the request's signature does not verify", o->csr);
        goto done;
    }
    if (!ca_load_issuer(o->dir, &icert, &ikey) ||
        (x = ca_issue_cert(req, icert, ikey, o->days)) == NULL ||
        !ca_write_certs(o->out, &x, 1))
        goto done;
    ok = o->chain_out == NULL || ca_copy_chain(o->dir, o->chain_out);
    fprintf(stderr, "p11mtls: issued %s for %ld days; chain: %s/chain.pem\n",
            tool_name_str(X509_get_subject_name(x), subj, sizeof(subj)), o->days, o->dir);
done:
    X509_free(x);
    X509_free(icert);
    EVP_PKEY_free(ikey);
    X509_REQ_free(req);
    return ok ? TOOL_EXIT_OK : TOOL_EXIT_FAIL;
}

/* tool_getopt: one option of the command into its options. */
static int ca_issue_opt(int c, char *arg, void *vo)
{
    struct ca_issue_opts *o = vo;

    switch (c) {
    case 'c':
        o->csr = arg;
        break;
    case 'd':
        if (!tool_parse_long("ca issue", "--days", arg, 1, 36500, &o->days))
            return TOOL_EXIT_USAGE;
        break;
    case 'o':
        o->out = arg;
        break;
    case 'C':
        o->chain_out = arg;
        break;
    }
    return 0;
}

static int ca_issue(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"csr", required_argument, NULL, 'c'},
        {"days", required_argument, NULL, 'd'},
        {"out", required_argument, NULL, 'o'},
        {"chain-out", required_argument, NULL, 'C'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    static const TOOL_CMD cmd = {"ca issue", "o:h", longopts, ca_usage, -1};
    struct ca_issue_opts o = {NULL, NULL, NULL, NULL, 365};
    int rc;

    if ((rc = tool_getopt(&cmd, argc, argv, ca_issue_opt, &o)) != TOOL_PARSED)
        return rc;
    if (argc - optind != 1)
        return tool_usage("ca issue", "give exactly one CA directory");
    if (o.csr == NULL)
        return tool_usage("ca issue", "--csr is required");
    o.dir = argv[optind];
    return ca_do_issue(&o);
}

int ca_main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        ca_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? TOOL_EXIT_USAGE : TOOL_EXIT_OK;
    }
    if (strcmp(argv[1], "init") == 0)
        return ca_init(argc - 1, argv + 1);
    if (strcmp(argv[1], "issue") == 0)
        return ca_issue(argc - 1, argv + 1);
    return tool_usage("ca", "unknown subcommand '%s' (expected: init or issue)", argv[1]);
}
