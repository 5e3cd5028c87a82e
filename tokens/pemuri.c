/*
 * pemuri.c - "p11mtls pem-uri": a PEM file that wraps a key's pkcs11: URI, for programs
 * that only take a key file. The format (pkcs11-provider's, so either provider reads it)
 * is encoded and parsed by the provider's pemuri library, so both sides agree on it.
 */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>

#include "pemuri.h"
#include "tool.h"

#define CMD "pem-uri"

struct pemuri_opts {
    const char *key;
    const char *out;
    const char *show;
    const char *module;
    int no_check;
};

static void pemuri_usage(FILE *out)
{
    fputs("Usage: p11mtls pem-uri --key URI -o FILE [--module PATH] [--no-check]\n"
          "       p11mtls pem-uri --show FILE\n"
          "\n"
          "Writes a PEM file (\"" P11M_PEMURI_LABEL
          "\", the format of pkcs11-provider) that\n"
          "wraps the key's URI, for programs that only accept a key file; OpenSSL reads\n"
          "it back as the token key when the p11mtls provider is loaded with\n"
          "\"pem-uri-files = yes\" in its openssl.cnf section. The file holds\n"
          "no secret; a URI with pin-value is refused (use pin-source= in the URI), and\n"
          "so is module-path (the provider loads no library a key file names).\n"
          "\n"
          "  --key URI        the private key's pkcs11: URI\n"
          "  -o, --out FILE   the PEM file (\"-\": standard output)\n"
          "  --module PATH    PKCS#11 module for the check (default: p11-kit's proxy)\n"
          "  --no-check       do not check that the key is on a token now\n"
          "  --show FILE      print the URI that a PEM file wraps\n",
          out);
}

static int pemuri_write(const char *uri, const char *path)
{
    BIO *out = tool_bio_out(path, 0644);
    int ok = out != NULL && p11m_pemuri_write(out, uri) && BIO_flush(out) > 0;

    if (out != NULL && !ok)
        tool_ossl_err("%s: cannot write", path);
    BIO_free(out);
    return ok;
}

static int pemuri_show(const char *path)
{
    BIO *in = BIO_new_file(path, "rb");
    char *name = NULL, *header = NULL, *uri = NULL;
    unsigned char *data = NULL;
    long len = 0;
    int ok = in != NULL && PEM_read_bio(in, &name, &header, &data, &len) &&
             strcmp(name, P11M_PEMURI_LABEL) == 0 && p11m_pemuri_parse(data, len, &uri);

    if (ok)
        printf("%s\n", uri);
    else
        tool_ossl_err("--show: %s is not a \"" P11M_PEMURI_LABEL "\" PEM file", path);
    free(uri);
    OPENSSL_free(name);
    OPENSSL_free(header);
    OPENSSL_free(data);
    BIO_free(in);
    return ok ? TOOL_EXIT_OK : TOOL_EXIT_FAIL;
}

static int pemuri_run(const struct pemuri_opts *o)
{
    P11KitUri *uri = tool_uri(CMD, "--key", o->key);
    P11M_MODULE *mod;
    P11M_OBJ *obj = NULL;
    int ok = 0;

    if (uri == NULL)
        return TOOL_EXIT_USAGE;
    if (p11_kit_uri_get_module_path(uri) != NULL) {
        tool_err(
            "--key: module-path is refused in a key file: the provider loads no "
            "library a key file names (set pkcs11-module in its openssl.cnf section)");
        p11_kit_uri_free(uri);
        return TOOL_EXIT_USAGE;
    }
    if (!o->no_check && ((mod = tool_module(uri, o->module)) == NULL ||
                         (obj = tool_obj_one(mod, uri, CKO_PRIVATE_KEY, NULL)) == NULL)) {
        tool_err("not writing %s (--no-check writes it anyway)", o->out);
        goto done;
    }
    ok = pemuri_write(o->key, o->out);
done:
    p11m_obj_free(obj);
    p11_kit_uri_free(uri);
    return ok ? TOOL_EXIT_OK : TOOL_EXIT_FAIL;
}

/* tool_getopt: one option of the command into its options. */
static int pemuri_main_opt(int c, char *arg, void *vo)
{
    struct pemuri_opts *o = vo;

    switch (c) {
    case 'k':
        o->key = arg;
        break;
    case 'o':
        o->out = arg;
        break;
    case 'm':
        o->module = arg;
        break;
    case 'n':
        o->no_check = 1;
        break;
    case 's':
        o->show = arg;
        break;
    }
    return 0;
}

int pemuri_main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"key", required_argument, NULL, 'k'},
        {"out", required_argument, NULL, 'o'},
        {"module", required_argument, NULL, 'm'},
        {"no-check", no_argument, NULL, 'n'},
        {"show", required_argument, NULL, 's'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    static const TOOL_CMD cmd = {CMD, "o:h", longopts, pemuri_usage, 0};
    struct pemuri_opts o = {NULL, NULL, NULL, NULL, 0};
    int rc;

    if ((rc = tool_getopt(&cmd, argc, argv, pemuri_main_opt, &o)) != TOOL_PARSED)
        return rc;
    if (o.show != NULL)
        return o.key == NULL ? pemuri_show(o.show)
                             : tool_usage(CMD, "--show does not go with --key");
    if (o.key == NULL || o.out == NULL)
        return tool_usage(CMD, "--key and -o FILE are required");
    return pemuri_run(&o);
}
