/*
 * pin.c - `p11mtls pin reset-refusal [LABEL]`: forget the PINs tokens refused (the core's
 * records in /run/p11mtls or $XDG_RUNTIME_DIR/p11mtls, see provider/p11/refusal.c), after
 * the PIN source was fixed, so that processes try the PIN again.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "tool.h"

#define CMD "pin reset-refusal"

static void pin_usage(FILE *out)
{
    fprintf(
        out,
        "Usage: p11mtls pin reset-refusal [TOKEN-LABEL]\n"
        "\n"
        "A PIN a token refused is not tried again by any process on this device (a\n"
        "TPM locks itself after a few wrong PINs). Once the PIN source holds the right\n"
        "PIN, this forgets the refusals of the token labelled TOKEN-LABEL (all tokens\n"
        "without one). A PIN source whose PIN changed is tried again without it.\n");
}

/* The label in a record's header line "# token LABEL ...", padded as on the token. */
static int pin_record_is(const char *path, const char *label, char *name, size_t len)
{
    char line[256];
    FILE *f = fopen(path, "r");
    int ok = 0;

    if (f == NULL)
        return 0;
    if (fgets(line, sizeof(line), f) != NULL && strncmp(line, "# token ", 8) == 0) {
        /* The label field is 32 bytes, space-padded. */
        snprintf(name, len, "%.32s", line + 8);
        for (size_t n = strlen(name); n > 0 && name[n - 1] == ' '; n--)
            name[n - 1] = '\0';
        ok = label == NULL || strcmp(name, label) == 0;
    }
    fclose(f);
    return ok;
}

static int pin_reset(int argc, char **argv)
{
    const char *label = argc > 1 ? argv[1] : NULL;
    char dir[4096], path[4400], name[64];
    struct dirent *e;
    DIR *dp;
    int n = 0, failed = 0;

    if (argc > 2)
        return tool_usage(CMD, "one token label at most");
    if (!p11m_refusal_dir(dir, sizeof(dir))) {
        tool_err("no runtime directory for PIN refusal records (set XDG_RUNTIME_DIR)");
        return TOOL_EXIT_FAIL;
    }
    if ((dp = opendir(dir)) == NULL) {
        if (errno == ENOENT) {
            printf("no PIN refusal recorded (%s does not exist)\n", dir);
            return TOOL_EXIT_OK;
        }
        tool_err("%s: %s", dir, strerror(errno));
        return TOOL_EXIT_FAIL;
    }
    while ((e = readdir(dp)) != NULL) {
        size_t len = strlen(e->d_name);

        if (len < 9 || strcmp(e->d_name + len - 8, ".refused") != 0)
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        if (!pin_record_is(path, label, name, sizeof(name)))
            continue;
        if (unlink(path) != 0) {
            tool_err("%s: %s", path, strerror(errno));
            failed = 1;
            continue;
        }
        printf("forgot the PINs token '%s' refused\n", name);
        n++;
    }
    closedir(dp);
    if (n == 0 && !failed)
        printf("no PIN refusal recorded%s%s%s\n", label ? " for token '" : "",
               label ? label : "", label ? "'" : "");
    return failed ? TOOL_EXIT_FAIL : TOOL_EXIT_OK;
}

int pin_main(int argc, char **argv)
{
    return tool_subcommand("pin", "reset-refusal", pin_reset, pin_usage, argc, argv);
}
