/*
 * tlslib.c - "p11mtls doctor --program PROG|PID": which TLS library a program uses, and
 * whether the preload library reaches it.
 *
 * The libraries come from the dynamic loader itself (ldd, which runs ld.so in trace
 * mode and never the program) or, for a running process, from /proc/PID/maps, which
 * also shows libraries loaded later with dlopen (python's ssl module). The shim covers
 * dynamically linked OpenSSL 3 (libssl.so.3) and GnuTLS (libgnutls.so.30); everything
 * else is named with the alternative.
 */
#include <ctype.h>
#include <errno.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tool.h"

extern char **environ;

struct tls_lib {
    const char *soname; /* prefix of the library's file name */
    const char *name;
    const char *alternative; /* NULL: the shim covers it */
};

static const struct tls_lib tls_libs[] = {
    {"libssl.so.3", "OpenSSL 3", NULL},
    {"libgnutls.so.30", "GnuTLS", NULL},
    {"libssl.so.1", "OpenSSL 1.x",
     "not covered (only OpenSSL 3); use the program's own PKCS#11 support"},
    {"libnss3.so", "NSS",
     "not covered; add the PKCS#11 module to the program's NSS database (modutil)"},
    {"libmbedtls.so", "mbed TLS", "not covered; use the program's own PKCS#11 support"},
    {"libwolfssl.so", "wolfSSL", "not covered; use the program's own PKCS#11 support"},
    {"libjli.so", "Java (JSSE)",
     "not covered; configure the SunPKCS11 provider and a PKCS11 keystore"},
};

#define TLS_NLIBS (sizeof(tls_libs) / sizeof(tls_libs[0]))

/* Mark each known TLS library named in text (one library path or name per line). */
static void tls_scan(const char *text, bool found[TLS_NLIBS])
{
    for (size_t i = 0; i < TLS_NLIBS; i++) {
        const char *p = text;
        size_t n = strlen(tls_libs[i].soname);

        while ((p = strstr(p, tls_libs[i].soname)) != NULL) {
            /* a whole file name: preceded by '/', blank or line start */
            if (p == text || p[-1] == '/' || isspace((unsigned char) p[-1]))
                found[i] = true;
            p += n;
        }
    }
}

/* The output of ldd PROG (at most len - 1 bytes); its exit status, -1 if not run. */
static int tls_ldd(const char *prog, char *out, size_t len)
{
    char *argv[] = {"ldd", (char *) prog, NULL};
    posix_spawn_file_actions_t fa;
    size_t used = 0;
    int pipefd[2], status = -1;
    pid_t pid;

    out[0] = '\0';
    if (pipe(pipefd) != 0)
        return -1;
    if (posix_spawn_file_actions_init(&fa) != 0) {
        close(pipefd[0]);
        close(pipefd[1]);
        return -1;
    }
    posix_spawn_file_actions_adddup2(&fa, pipefd[1], STDOUT_FILENO);
    posix_spawn_file_actions_adddup2(&fa, pipefd[1], STDERR_FILENO);
    posix_spawn_file_actions_addclose(&fa, pipefd[0]);
    if (posix_spawnp(&pid, "ldd", &fa, NULL, argv, environ) != 0)
        pid = -1;
    posix_spawn_file_actions_destroy(&fa);
    close(pipefd[1]);
    for (ssize_t n = 1; n > 0;) {
        char drain[512];
        bool room = used + 1 < len;

        n = read(pipefd[0], room ? out + used : drain,
                 room ? len - 1 - used : sizeof(drain));
        if (n < 0 && errno == EINTR)
            n = 1;
        else if (n > 0 && room)
            used += (size_t) n;
    }
    out[used] = '\0';
    close(pipefd[0]);
    while (pid > 0 && waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    return pid > 0 && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* The libraries mapped by process pid (its /proc/PID/maps). */
static bool tls_maps(const char *pid, char *out, size_t len)
{
    char path[64];
    FILE *f;
    size_t n;

    snprintf(path, sizeof(path), "/proc/%s/maps", pid);
    if ((f = fopen(path, "r")) == NULL)
        return false;
    n = fread(out, 1, len - 1, f);
    out[n] = '\0';
    fclose(f);
    return true;
}

/* "#!": ldd calls a script not dynamic, which must not read as statically linked */
static bool tls_is_script(const char *prog)
{
    char head[2] = {0};
    FILE *f = fopen(prog, "r");
    bool script =
        f != NULL && fread(head, 1, 2, f) == 2 && head[0] == '#' && head[1] == '!';

    if (f != NULL)
        fclose(f);
    return script;
}

static bool tls_is_pid(const char *s)
{
    if (*s == '\0')
        return false;
    for (; *s != '\0'; s++)
        if (!isdigit((unsigned char) *s))
            return false;
    return true;
}

int doctor_program(const char *prog, int *warns)
{
    static const char static_alt[] =
        "not covered: nothing can be preloaded into it. If it uses OpenSSL 3 "
        "internally, load the p11mtls provider through its openssl.cnf; else use its "
        "own PKCS#11 support";
    size_t len = 1 << 20;
    char *text = malloc(len);
    bool found[TLS_NLIBS] = {false}, any = false, running = tls_is_pid(prog);
    int rc;

    if (text == NULL) {
        fprintf(stderr, "doctor: out of memory\n");
        return -1;
    }
    if (running) {
        if (!tls_maps(prog, text, len)) {
            printf("FAIL  program    process %s: cannot read /proc/%s/maps: %s\n", prog,
                   prog, strerror(errno));
            free(text);
            return 1;
        }
    } else if ((rc = tls_ldd(prog, text, len)) != 0 ||
               strstr(text, "statically linked") != NULL) {
        bool is_static = strstr(text, "not a dynamic executable") != NULL ||
                         strstr(text, "statically linked") != NULL;

        if (is_static && tls_is_script(prog)) {
            printf("warn  program    %s is a script: name its interpreter, or give the "
                   "PID of a running process\n",
                   prog);
            (*warns)++;
            free(text);
            return 0;
        }
        if (is_static)
            printf("warn  program    %s is statically linked (Go, or a static TLS "
                   "library): %s\n",
                   prog, static_alt);
        else
            printf("FAIL  program    %s: ldd failed: %s\n", prog,
                   text[0] != '\0' ? strtok(text, "\n") : "cannot run ldd");
        *warns += is_static;
        free(text);
        return is_static ? 0 : 1;
    }
    tls_scan(text, found);
    free(text);
    for (size_t i = 0; i < TLS_NLIBS; i++) {
        if (!found[i])
            continue;
        any = true;
        if (tls_libs[i].alternative == NULL)
            printf("ok    program    %s uses %s (%s): covered by the preload library\n",
                   prog, tls_libs[i].name, tls_libs[i].soname);
        else
            printf("warn  program    %s uses %s (%s): %s\n", prog, tls_libs[i].name,
                   tls_libs[i].soname, tls_libs[i].alternative);
        *warns += tls_libs[i].alternative != NULL;
    }
    if (found[0] && found[1])
        printf("--    program    both: each connection is handled once, by the library "
               "that makes it\n");
    if (!any) {
        printf("warn  program    %s links no TLS library the shim knows: it uses none, "
               "or brings its own (Go, Rust, Node.js or Python builds with a bundled "
               "OpenSSL); %s%s\n",
               prog, static_alt,
               running ? ""
                       : " (a library loaded later with dlopen, as python's ssl "
                         "module, shows when you give a running process's PID)");
        (*warns)++;
    }
    return 0;
}
