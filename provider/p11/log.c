/*
 * log.c - the debug log: off by default, one write(2) per line so lines from several
 * threads or processes never interleave. Set with P11MTLS_DEBUG="N" or "N,file:/path".
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "p11m.h"

int p11m_log_level;
static int log_fd = 2;
static pthread_once_t log_env_once = PTHREAD_ONCE_INIT;

int p11m_log_setup(int level, const char *path)
{
    if (path != NULL && *path != '\0') {
        int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);

        if (fd < 0) {
            p11m_raise(P11M_R_BAD_CONFIG, "debug file %s: %s", path, strerror(errno));
            return 0;
        }
        if (log_fd > 2)
            close(log_fd);
        log_fd = fd;
    }
    p11m_log_level = level;
    return 1;
}

static void log_from_env(void)
{
    const char *v = secure_getenv("P11MTLS_DEBUG");
    const char *file;
    char *end;
    long level;

    if (v == NULL || *v == '\0')
        return;
    level = strtol(v, &end, 10);
    if (end == v || level < 0 || level > 9)
        return;
    file = strstr(v, "file:");
    p11m_log_setup((int) level, file != NULL ? file + 5 : NULL);
}

void p11m_log_init(void)
{
    pthread_once(&log_env_once, log_from_env);
}

void p11m_log_(int level, const char *fmt, ...)
{
    char line[1024];
    int n;
    va_list ap;

    (void) level;
    n = snprintf(line, sizeof(line), "p11mtls[%d]: ", (int) getpid());
    va_start(ap, fmt);
    n += vsnprintf(line + n, sizeof(line) - (size_t) n - 1, fmt, ap);
    va_end(ap);
    if (n > (int) sizeof(line) - 2)
        n = (int) sizeof(line) - 2;
    line[n++] = '\n';
    if (write(log_fd, line, (size_t) n) < 0)
        return; /* nowhere left to report it */
}
