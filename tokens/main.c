/*
 * main.c - the p11mtls command: dispatch to the command groups and the top-level help.
 */
#include <stdio.h>
#include <string.h>

#include "p11m_config.h"
#include "tool.h"

struct command {
    const char *name;
    int (*main)(int argc, char **argv);
    const char *summary;
};

static const struct command commands[] = {
    {"token", token_main, "token init: initialise a token and set its user PIN"},
    {"key", key_main, "key generate: generate a key pair on the token"},
    {"csr", csr_main, "make a certificate request signed on the token"},
    {"ca", ca_main, "ca init | ca issue: a small development CA (not for production)"},
    {"cert", cert_main, "cert import: store a certificate (and chain) next to its key"},
    {"list", list_main, "list tokens, keys and certificates (--json for scripts)"},
    {"pem-uri", pemuri_main, "write a PEM file that wraps a key's URI for key-file APIs"},
    {"run", run_main, "run a program with the p11mtls preload library"},
    {"doctor", doctor_main,
     "explain whether this device presents its identity to a server"},
    {"pin", pin_main, "pin reset-refusal: try again a PIN a token refused, once fixed"},
    {"enroll", enroll_main, "enrol the token key with the CA over CMP (ir, p10cr)"},
    {"renew", renew_main, "renew the certificate over CMP (kur), optionally a new key"},
    {"status", status_main, "identities' expiry and last renewal (--json, --prometheus)"},
};

static void main_usage(FILE *out)
{
    fprintf(out,
            "Usage: p11mtls COMMAND [OPTIONS] [ARGS]\n"
            "\n"
            "Sets up and debugs a hardware-held TLS client identity: a key that never\n"
            "leaves a PKCS#11 token, its certificate, and the programs that present it.\n"
            "\n"
            "Commands:\n");
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        fprintf(out, "  %-9s %s\n", commands[i].name, commands[i].summary);
    fprintf(
        out,
        "\n"
        "'p11mtls COMMAND --help' describes each command.\n"
        "\n"
        "PINs are read only from a PIN source (--pin-source file:PATH, the file not\n"
        "readable by group or others, or env:NAME) or asked for without echo when\n"
        "standard input is a terminal; never from the command line.\n"
        "The PKCS#11 module is --module PATH, or module-path= in a URI, else p11-kit's\n"
        "proxy (%s), which reaches every registered token.\n"
        "\n"
        "Environment: P11MTLS_PROVIDER (provider path, default %s),\n"
        "  P11MTLS_PRELOAD (preload library, default %s),\n"
        "  P11MTLS_CONF (configuration of the preload library, default\n"
        "  %s), P11MTLS_DEBUG (core debug log: \"1\", \"2\" or\n"
        "  \"2,file:/path\").\n"
        "\n"
        "Exit status:\n"
        "  0    success\n"
        "  1    the operation failed (token, PIN, file, TLS, ...)\n"
        "  2    usage error: a bad command, option or argument (the message names it)\n"
        "  3    doctor: at least one check failed\n"
        "  127  run: the command could not be executed\n",
        P11M_DEFAULT_MODULE, P11M_PROVIDER_PATH, P11M_PRELOAD_PATH, P11M_CONF_PATH);
}

/* The version and the paths this build was configured with (see the top meson.build). */
static void main_version(void)
{
    printf("p11mtls %s\n"
           "prefix:         %s\n"
           "provider:       %s\n"
           "preload:        %s\n"
           "configuration:  %s\n"
           "pkcs11-module:  %s\n",
           P11M_VERSION, P11M_PREFIX, P11M_PROVIDER_PATH, P11M_PRELOAD_PATH,
           P11M_CONF_PATH, P11M_DEFAULT_MODULE);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        main_usage(stderr);
        return TOOL_EXIT_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        main_usage(stdout);
        return TOOL_EXIT_OK;
    }
    if (strcmp(argv[1], "--version") == 0) {
        main_version();
        return TOOL_EXIT_OK;
    }
    tool_core_errors(0);
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (strcmp(argv[1], commands[i].name) == 0)
            return commands[i].main(argc - 1, argv + 1);
    fprintf(stderr, "p11mtls: unknown command '%s' (see 'p11mtls --help')\n", argv[1]);
    return TOOL_EXIT_USAGE;
}
