/*
 * pin.c - where an identity's PIN comes from, and how it reaches the provider.
 *
 * The PIN never passes through the shim's configuration or logs. The identity's
 * pin_source ("file:PATH" or "env:NAME") is handed to the provider as the RFC 7512
 * "pin-source" query attribute of the key URI: the provider logs in lazily and, after a
 * fork, logs in again from the same source. OpenSSL must never prompt on a terminal, so
 * OSSL_STORE gets a UI method that answers a PIN prompt from the same source or fails.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "p11m_util.h"
#include "shim.h"

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

char *shim_pin_uri(const char *key, const char *source)
{
    /* Only token keys take the attribute; a URI that names its own PIN keeps it. */
    if (source == NULL || strncmp(key, "pkcs11:", 7) != 0 ||
        p11m_query_has(key, "pin-source") || p11m_query_has(key, "pin-value"))
        return strdup(key);
    return p11m_query_add(key, "pin-source", source);
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
    char pin[P11M_PIN_MAX + 1];
    size_t len;
    int ok;

    switch (shim_fn.UI_get_string_type(uis)) {
    case UIT_PROMPT:
    case UIT_VERIFY:
        if (ic == NULL || ic->pin_source == NULL ||
            !p11m_pinsrc_read(ic->pin_source, pin, sizeof(pin), &len, pin_error,
                              sizeof(pin_error)))
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
