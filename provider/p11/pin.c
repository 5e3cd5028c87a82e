/*
 * pin.c - PIN sources. A PIN lives only in a P11M_PIN on the stack of the login that
 * needs it and is cleansed right after C_Login.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "p11m.h"

int p11m_pin_source_valid(const char *spec)
{
    if (spec == NULL)
        return 0;
    if (strncmp(spec, "file:", 5) == 0)
        return spec[5] != '\0';
    if (strncmp(spec, "env:", 4) == 0)
        return spec[4] != '\0';
    return spec[0] == '/'; /* RFC 7512 examples use plain paths too */
}

void p11m_pin_cleanse(P11M_PIN *pin)
{
    OPENSSL_cleanse(pin->buf, sizeof(pin->buf));
    pin->len = 0;
}

/* Drops one trailing newline (files written with echo) but keeps other bytes. */
static void pin_chomp(P11M_PIN *pin)
{
    if (pin->len > 0 && pin->buf[pin->len - 1] == '\n')
        pin->len--;
    if (pin->len > 0 && pin->buf[pin->len - 1] == '\r')
        pin->len--;
    pin->buf[pin->len] = '\0';
}

static int pin_read_file(const char *path, P11M_PIN *pin)
{
    struct stat st;
    ssize_t n;
    /* Non-blocking: a FIFO or device named by mistake must not hang the program. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);

    if (fd < 0) {
        p11m_raise(P11M_R_PIN_SOURCE, "PIN file %s: %s", path, strerror(errno));
        return 0;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        p11m_raise(P11M_R_PIN_SOURCE, "PIN file %s: not a regular file", path);
        goto fail;
    }
    if ((st.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
        p11m_raise(P11M_R_PIN_SOURCE,
                   "PIN file %s is accessible by group or others (mode %03o); "
                   "refusing it: chmod 600 %s",
                   path, (unsigned) (st.st_mode & 0777), path);
        goto fail;
    }
    n = read(fd, pin->buf, sizeof(pin->buf) - 1);
    if (n < 0) {
        p11m_raise(P11M_R_PIN_SOURCE, "PIN file %s: %s", path, strerror(errno));
        goto fail;
    }
    if ((size_t) n == sizeof(pin->buf) - 1) {
        p11m_raise(P11M_R_PIN_SOURCE, "PIN file %s: longer than %zu bytes", path,
                   sizeof(pin->buf) - 2);
        goto fail;
    }
    close(fd);
    pin->len = (size_t) n;
    pin_chomp(pin);
    return 1;
fail:
    close(fd);
    p11m_pin_cleanse(pin);
    return 0;
}

static int pin_read_env(const char *name, P11M_PIN *pin)
{
    const char *v = secure_getenv(name);
    size_t len;

    if (v == NULL) {
        p11m_raise(P11M_R_PIN_SOURCE, "PIN environment variable %s is not set", name);
        return 0;
    }
    len = strlen(v);
    if (len >= sizeof(pin->buf)) {
        p11m_raise(P11M_R_PIN_SOURCE, "PIN environment variable %s: too long", name);
        return 0;
    }
    memcpy(pin->buf, v, len + 1);
    pin->len = len;
    return 1;
}

int p11m_pin_read(const char *spec, P11M_PIN *pin)
{
    int ok;

    pin->len = 0;
    if (!p11m_pin_source_valid(spec)) {
        /* The value is not shown: it may be a PIN typed in the wrong place. */
        p11m_raise(P11M_R_PIN_SOURCE,
                   "PIN source: expected file:PATH, env:NAME or an absolute path "
                   "(value not shown)");
        return 0;
    }
    if (spec[0] == '/')
        ok = pin_read_file(spec, pin);
    else if (spec[0] == 'f')
        ok = pin_read_file(spec + 5, pin);
    else
        ok = pin_read_env(spec + 4, pin);
    if (ok && pin->len == 0) {
        p11m_raise(P11M_R_PIN_SOURCE, "PIN source %s gave an empty PIN", spec);
        return 0;
    }
    return ok;
}
