/*
 * pin.c - where an identity's PIN comes from, and how it reaches the provider.
 *
 * The PIN never passes through the shim's configuration or logs. The identity's
 * pin_source ("file:PATH" or "env:NAME") is handed to the provider as the RFC 7512
 * "pin-source" query attribute of the key URI: the provider logs in lazily and, after a
 * fork, logs in again from the same source. OpenSSL must never prompt on a terminal, so
 * OSSL_STORE gets a UI method that answers a PIN prompt from the same source or fails.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "shim.h"

bool shim_pin_source_valid(const char *source)
{
    if (strncmp(source, "file:", 5) == 0)
        return source[5] == '/';
    if (strncmp(source, "env:", 4) == 0)
        return source[4] != '\0' && strchr(source + 4, '=') == NULL;
    return false;
}

/* Why the last PIN read of this thread failed ("" if it did not), for the decision line.
 */
static __thread char pin_error[320];

const char *shim_pin_error(void)
{
    return pin_error;
}

void shim_pin_error_clear(void)
{
    pin_error[0] = '\0';
}

/*
 * The same rules as the provider's PIN files: a regular file (O_NONBLOCK, so a FIFO or a
 * device cannot stall a handshake at open), not accessible by group or others.
 */
static bool pin_read_file(const char *path, char *pin, size_t len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    struct stat st;
    size_t got = 0;

    if (fd < 0) {
        shim_fmt(pin_error, sizeof(pin_error), "PIN file %s: %s", path, strerror(errno));
        return false;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        shim_fmt(pin_error, sizeof(pin_error), "PIN file %s: not a regular file", path);
        close(fd);
        return false;
    }
    if ((st.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
        shim_fmt(pin_error, sizeof(pin_error),
                 "PIN file %s is accessible by group or others (mode %03o); refusing it: "
                 "chmod 600 %s",
                 path, (unsigned) (st.st_mode & 0777), path);
        close(fd);
        return false;
    }
    while (got + 1 < len) {
        ssize_t n = read(fd, pin + got, len - 1 - got);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t) n;
    }
    close(fd);
    pin[got] = '\0';
    return true;
}

bool shim_pin_read(const char *source, char *pin, size_t len)
{
    const char *env;
    bool ok = false;

    if (source == NULL || len == 0)
        return false;
    pin[0] = '\0';
    if (strncmp(source, "file:", 5) == 0) {
        ok = pin_read_file(source + 5, pin, len);
    } else if (strncmp(source, "env:", 4) == 0) {
        env = secure_getenv(source + 4);
        ok = env != NULL && strlen(env) < len;
        if (ok)
            strcpy(pin, env);
        else
            shim_fmt(pin_error, sizeof(pin_error), "PIN environment variable %s is %s",
                     source + 4, env == NULL ? "not set" : "too long");
    }
    /* A PIN file usually ends with a newline that is not part of the PIN. */
    pin[strcspn(pin, "\r\n")] = '\0';
    if (ok && pin[0] == '\0')
        shim_fmt(pin_error, sizeof(pin_error), "PIN source %s gave an empty PIN", source);
    if (!ok || pin[0] == '\0') {
        explicit_bzero(pin, len);
        return false;
    }
    return true;
}

/* Percent-encode a query value (RFC 3986), leaving the characters paths need. */
static void pin_encode(const char *in, char *out)
{
    static const char hex[] = "0123456789ABCDEF";

    for (; *in != '\0'; in++) {
        unsigned char ch = (unsigned char) *in;

        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
            (ch >= '0' && ch <= '9') || strchr("-._~/:@", ch) != NULL) {
            *out++ = (char) ch;
        } else {
            *out++ = '%';
            *out++ = hex[ch >> 4];
            *out++ = hex[ch & 15];
        }
    }
    *out = '\0';
}

char *shim_pin_uri(const char *key, const char *source)
{
    const char *query = strchr(key, '?');
    size_t len;
    char *uri;

    /* Only token keys take the attribute; a URI that names its own PIN keeps it. */
    if (source == NULL || strncmp(key, "pkcs11:", 7) != 0 ||
        (query != NULL && (strstr(query, "pin-source=") || strstr(query, "pin-value="))))
        return strdup(key);
    len = strlen(key) + strlen("&pin-source=") + 3 * strlen(source) + 1;
    uri = malloc(len);
    if (uri == NULL)
        return NULL;
    snprintf(uri, len, "%s%spin-source=", key, query != NULL ? "&" : "?");
    pin_encode(source, uri + strlen(uri));
    return uri;
}

/* ---- the UI method ---- */

static int pin_ui_nothing(UI *ui)
{
    (void) ui;
    return 1;
}

/* Messages OpenSSL wants shown go nowhere: no terminal, no stdout. */
static int pin_ui_write(UI *ui, UI_STRING *uis)
{
    (void) ui;
    (void) uis;
    return 1;
}

static int pin_ui_read(UI *ui, UI_STRING *uis)
{
    const struct shim_identity_conf *ic = shim_fn.UI_get0_user_data(ui);
    char pin[256];
    int ok;

    switch (shim_fn.UI_get_string_type(uis)) {
    case UIT_PROMPT:
    case UIT_VERIFY:
        if (ic == NULL || !shim_pin_read(ic->pin_source, pin, sizeof(pin)))
            return 0;
        ok = shim_fn.UI_set_result(ui, uis, pin) >= 0;
        explicit_bzero(pin, sizeof(pin));
        return ok;
    case UIT_INFO:
    case UIT_ERROR:
        return 1;
    default:
        return 0;
    }
}

static pthread_once_t pin_once = PTHREAD_ONCE_INIT;
static UI_METHOD *pin_method;

static void pin_make_method(void)
{
    UI_METHOD *m = shim_fn.UI_create_method("p11mtls shim (non-interactive)");

    if (m == NULL)
        return;
    shim_fn.UI_method_set_opener(m, pin_ui_nothing);
    shim_fn.UI_method_set_writer(m, pin_ui_write);
    shim_fn.UI_method_set_reader(m, pin_ui_read);
    shim_fn.UI_method_set_closer(m, pin_ui_nothing);
    pin_method = m;
}

UI_METHOD *shim_pin_ui_method(void)
{
    pthread_once(&pin_once, pin_make_method);
    return pin_method;
}
