/*
 * log.c - one line per event to stderr, syslog or a file.
 *
 * Lines are written with a single write() so concurrent threads and processes do not
 * interleave. The log file is opened for each line: daemons often close every descriptor
 * after start-up, and a descriptor kept open could by then belong to a socket.
 * errno is preserved: the program may be between a failing call and reading errno.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "shim.h"

#define LOG_LINE_MAX 1024

static struct {
    enum shim_log_target target;
    enum shim_level level;
    char file[512];
} log_cfg = {SHIM_LOG_STDERR, SHIM_WARN, ""};

static const char *const log_names[] = {"error", "warn", "info", "debug"};

void shim_log_configure(enum shim_log_target target, const char *file,
                        enum shim_level level)
{
    log_cfg.target = target;
    log_cfg.level = level;
    snprintf(log_cfg.file, sizeof(log_cfg.file), "%s", file != NULL ? file : "");
}

bool shim_log_enabled(enum shim_level level)
{
    return level <= log_cfg.level;
}

/* Names and error texts come from peers and tokens: keep the line a single line. */
static void log_sanitise(char *s)
{
    for (; *s != '\0'; s++)
        if ((unsigned char) *s < 0x20 || *s == 0x7f)
            *s = '?';
}

static void log_write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, buf, len);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return;
        buf += n;
        len -= (size_t) n;
    }
}

static size_t log_timestamp(char *buf, size_t len)
{
    struct timespec ts;
    struct tm tm;

    clock_gettime(CLOCK_REALTIME, &ts);
    localtime_r(&ts.tv_sec, &tm);
    return strftime(buf, len, "%Y-%m-%dT%H:%M:%S%z ", &tm);
}

static void log_emit(enum shim_level level, const char *msg)
{
    static const int prio[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};
    char line[LOG_LINE_MAX + 128];
    size_t n = 0;
    int fd;

    if (log_cfg.target == SHIM_LOG_SYSLOG) {
        syslog(LOG_USER | prio[level], "p11mtls: %s: %s", log_names[level], msg);
        return;
    }
    if (log_cfg.target == SHIM_LOG_FILE)
        n = log_timestamp(line, sizeof(line));
    snprintf(line + n, sizeof(line) - n, "p11mtls[%ld]: %s: %s\n", (long) getpid(),
             log_names[level], msg);
    if (log_cfg.target == SHIM_LOG_STDERR) {
        log_write_all(STDERR_FILENO, line, strlen(line));
        return;
    }
    fd = open(log_cfg.file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0600);
    if (fd < 0)
        return;
    log_write_all(fd, line, strlen(line));
    close(fd);
}

void shim_log(enum shim_level level, const char *fmt, ...)
{
    char msg[LOG_LINE_MAX];
    int saved = errno;
    va_list ap;

    if (!shim_log_enabled(level))
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    log_sanitise(msg);
    log_emit(level, msg);
    errno = saved;
}

void shim_fmt(char *buf, size_t len, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(buf, len, fmt, ap);
    va_end(ap);
}
