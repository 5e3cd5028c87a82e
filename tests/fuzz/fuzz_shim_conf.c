/*
 * fuzz_shim_conf.c - the shim's configuration loader (shim/conf.c, with the pattern
 * parser of shim/rules.c and the PIN-source checks of shim/pin.c) on arbitrary file
 * contents, through the same path a real file takes: a regular file (a memfd, named by
 * /proc/self/fd/N), read and parsed with OpenSSL's NCONF from the program's libssl.
 *
 * Properties: every error is one line naming the file (or the provider_config file it
 * concerns); a configuration without errors
 * is enabled, one with errors is not; every rule names an existing identity; and the
 * loaded rules answer lookups without crashing.
 */
#include <sys/mman.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include "fuzz.h"
#include "shim.h"

static int memfd = -1;
static char path[64];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void) argc, (void) argv;
    /* shim_fn comes from the libssl in the process, as in a real program */
    SSL_CTX_free(SSL_CTX_new(TLS_client_method()));
    if (!shim_ossl_ready())
        abort();
    memfd = memfd_create("p11mtls-fuzz.conf", 0);
    if (memfd < 0)
        abort();
    snprintf(path, sizeof(path), "/proc/self/fd/%d", memfd);
    unsetenv("P11MTLS_ON_CONFIG_ERROR");
    return 0;
}

static void conf_free(struct shim_conf *c)
{
    free(c->path);
    free(c->log_file);
    free(c->provider);
    for (size_t i = 0; i < c->nparams; i++) {
        free(c->params[i].name);
        free(c->params[i].value);
    }
    free(c->params);
    for (size_t i = 0; i < c->nids; i++) {
        free(c->ids[i].name);
        free(c->ids[i].section);
        free(c->ids[i].key);
        free(c->ids[i].cert);
        free(c->ids[i].chain);
        free(c->ids[i].pin_source);
    }
    free(c->ids);
    for (size_t i = 0; i < c->nrules; i++) {
        free(c->rules[i].name);
        free(c->rules[i].patterns);
    }
    free(c->rules);
    for (size_t i = 0; i < c->nerrors; i++)
        free(c->errors[i]);
    free(c->errors);
    free(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const names[] = {"localhost", "api.corp.example", "10.1.2.3",
                                        "fd00::1"};
    struct shim_conf *c;

    if (size > 65536 || ftruncate(memfd, 0) != 0 ||
        pwrite(memfd, data, size, 0) != (ssize_t) size)
        return 0;
    c = shim_conf_load(path, true);
    FUZZ_ASSERT(c != NULL, "no configuration object");
    FUZZ_ASSERT(c->enabled == (c->nerrors == 0), "enabled with %zu errors", c->nerrors);
    /* an error names this file, or the provider_config file it concerns (absolute) */
    for (size_t i = 0; i < c->nerrors; i++)
        FUZZ_ASSERT(strchr(c->errors[i], '\n') == NULL &&
                        (strstr(c->errors[i], path) != NULL || c->errors[i][0] == '/'),
                    "error line \"%s\"", c->errors[i]);
    if (c->enabled) {
        for (size_t i = 0; i < c->nrules; i++)
            FUZZ_ASSERT(c->rules[i].identity < c->nids, "rule %s has no identity",
                        c->rules[i].name);
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
            struct shim_dest d = {.port = 443};

            if (shim_dest_set_name(&d, names[i], "sni"))
                (void) shim_rules_find(c, &d);
        }
    }
    conf_free(c);
    return 0;
}
