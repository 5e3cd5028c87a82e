/*
 * pin.c - PIN sources: the one rule set documented in p11m_util.h.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "p11m_util.h"

/* A PIN file holds the PIN and one line end. */
#define PIN_FILE_MAX (P11M_PIN_MAX + 2)

int p11m_pinsrc_valid(const char *spec)
{
    if (spec == NULL)
        return 0;
    if (strncmp(spec, "file:", 5) == 0)
        return spec[5] == '/';
    if (strncmp(spec, "env:", 4) == 0)
        return spec[4] != '\0' && strchr(spec + 4, '=') == NULL;
    return 0;
}

/*
 * The PIN in value: one line end dropped, then it must be one non-empty line of at most
 * P11M_PIN_MAX bytes.
 */
static int pin_from(const char *spec, const char *value, size_t vlen, char *pin,
                    size_t *len, char *err, size_t errlen)
{
    if (vlen > 0 && value[vlen - 1] == '\n')
        vlen--;
    if (vlen > 0 && value[vlen - 1] == '\r')
        vlen--;
    if (vlen == 0) {
        snprintf(err, errlen, "PIN source %s gave an empty PIN", spec);
        return 0;
    }
    if (vlen > P11M_PIN_MAX) {
        snprintf(err, errlen, "PIN source %s: longer than %d bytes", spec, P11M_PIN_MAX);
        return 0;
    }
    if (memchr(value, '\0', vlen) != NULL || memchr(value, '\n', vlen) != NULL ||
        memchr(value, '\r', vlen) != NULL) {
        snprintf(err, errlen, "PIN source %s: the PIN is not one line of text", spec);
        return 0;
    }
    memcpy(pin, value, vlen);
    pin[vlen] = '\0';
    *len = vlen;
    return 1;
}

static int pin_file(const char *spec, char *pin, size_t *len, char *err, size_t errlen)
{
    char what[64 + 4096];
    size_t flen = 0;
    char *data;
    int ok;

    snprintf(what, sizeof(what), "PIN file %s", spec + 5);
    data = p11m_file_read(spec + 5, what, PIN_FILE_MAX, P11M_FILE_PRIVATE, &flen, err,
                          errlen);
    if (data == NULL)
        return 0;
    ok = pin_from(spec, data, flen, pin, len, err, errlen);
    p11m_file_free(data, flen);
    return ok;
}

static int pin_env(const char *spec, char *pin, size_t *len, char *err, size_t errlen)
{
    const char *v = secure_getenv(spec + 4);

    if (v == NULL) {
        snprintf(err, errlen, "PIN environment variable %s is not set", spec + 4);
        return 0;
    }
    return pin_from(spec, v, strlen(v), pin, len, err, errlen);
}

int p11m_pinsrc_read(const char *spec, char *pin, size_t cap, size_t *len, char *err,
                     size_t errlen)
{
    int ok;

    *len = 0;
    if (cap <= P11M_PIN_MAX) {
        snprintf(err, errlen, "PIN buffer too small");
        return 0;
    }
    if (!p11m_pinsrc_valid(spec)) {
        /* The value is not shown: it may be a PIN typed in the wrong place. */
        snprintf(
            err, errlen,
            "PIN source: expected file:/ABSOLUTE/PATH or env:NAME (value not shown)");
        ok = 0;
    } else if (spec[0] == 'f') {
        ok = pin_file(spec, pin, len, err, errlen);
    } else {
        ok = pin_env(spec, pin, len, err, errlen);
    }
    if (!ok) {
        explicit_bzero(pin, cap);
        *len = 0;
    }
    return ok;
}
