/*
 * run.c - "p11mtls run": starts a program with the preload library, so that its TLS
 * client connections present the device identity where the configuration says so.
 * An LD_PRELOAD that is already set (a sanitizer runtime, another shim) is kept: ours is
 * appended after it.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "p11m_config.h"
#include "tool.h"

#define CMD "run"

static void run_usage(FILE *out)
{
    fprintf(
        out,
        "Usage: p11mtls run [--config FILE] [--preload PATH] -- COMMAND [ARGS...]\n"
        "\n"
        "Runs COMMAND with the p11mtls preload library added to LD_PRELOAD (after any\n"
        "value already there), so that its OpenSSL client connections present the\n"
        "device's token identity to the destinations the configuration names.\n"
        "\n"
        "  --config FILE    configuration of the preload library (sets P11MTLS_CONF)\n"
        "  --preload PATH   the preload library (default: $P11MTLS_PRELOAD, else\n"
        "                   %s)\n"
        "Exit status: that of COMMAND; 127 when it cannot be run, 1 when the preload\n"
        "library is missing, 2 for usage errors.\n",
        P11M_PRELOAD_PATH);
}

/* LD_PRELOAD with lib appended (separated by ':'), unless it is there already. */
static char *run_preload_value(const char *lib)
{
    const char *old = getenv("LD_PRELOAD");
    size_t len;
    char *v;

    if (old == NULL || *old == '\0')
        return strdup(lib);
    len = strlen(old) + strlen(lib) + 2;
    if ((v = malloc(len)) == NULL)
        return NULL;
    snprintf(v, len, "%s:%s", old, lib);
    return v;
}

static int run_exec(const char *preload, const char *config, char **cmd)
{
    char abs[PATH_MAX], *value;

    /* The loader resolves a relative LD_PRELOAD entry against each program's cwd. */
    if (realpath(preload, abs) == NULL || access(abs, R_OK) != 0) {
        tool_err("preload library %s: %s (give --preload PATH or set P11MTLS_PRELOAD)",
                 preload, strerror(errno));
        return TOOL_EXIT_FAIL;
    }
    preload = abs;
    if (config != NULL && access(config, R_OK) != 0) {
        tool_err("--config: %s: %s", config, strerror(errno));
        return TOOL_EXIT_USAGE;
    }
    if ((value = run_preload_value(preload)) == NULL ||
        setenv("LD_PRELOAD", value, 1) != 0 ||
        (config != NULL && setenv("P11MTLS_CONF", config, 1) != 0)) {
        tool_err("cannot set up the environment");
        free(value);
        return TOOL_EXIT_EXEC;
    }
    free(value);
    fflush(NULL);
    execvp(cmd[0], cmd);
    tool_err("cannot run %s: %s", cmd[0], strerror(errno));
    return TOOL_EXIT_EXEC;
}

struct run_opts {
    const char *config, *preload;
};

/* tool_getopt: one option of the command into its options. */
static int run_main_opt(int c, char *arg, void *vo)
{
    struct run_opts *o = vo;

    switch (c) {
    case 'c':
        o->config = arg;
        break;
    case 'P':
        o->preload = arg;
        break;
    }
    return 0;
}

int run_main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"preload", required_argument, NULL, 'P'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    /* "+": stop at the first non-option, which is the command. */
    static const TOOL_CMD cmd = {CMD, "+h", longopts, run_usage, -1};
    struct run_opts o = {NULL, NULL};
    const char *env = getenv("P11MTLS_PRELOAD");
    int rc;

    if ((rc = tool_getopt(&cmd, argc, argv, run_main_opt, &o)) != TOOL_PARSED)
        return rc;
    if (optind >= argc)
        return tool_usage(CMD, "no command given (p11mtls run -- COMMAND ARGS...)");
    if (o.preload == NULL)
        o.preload = env != NULL && *env != '\0' ? env : P11M_PRELOAD_PATH;
    return run_exec(o.preload, o.config, argv + optind);
}
