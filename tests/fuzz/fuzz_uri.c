/*
 * fuzz_uri.c - pkcs11: URIs as the core and the shim take them: p11m_uri_parse (p11-kit's
 * parser plus the core's checks and messages), p11m_uri_redact (the core's allocation
 * around p11m-util's p11m_redact), p11m_redact into the shim's fixed buffer, and
 * shim_pin_uri.
 *
 * Properties: after redaction every "pin-value=" (in any letter case) is followed by
 * "***" and then the end or a separator, and the redacted text is never longer than the
 * core's allocation.
 */
#include <strings.h>

#include "fuzz.h"
#include "p11m.h"
#include "p11m_util.h"
#include "shim.h"

static void check_redacted(const char *what, const char *out, int any_case)
{
    const char *p = out;

    for (;;) {
        const char *hit =
            any_case ? strcasestr(p, "pin-value=") : strstr(p, "pin-value=");

        if (hit == NULL)
            return;
        hit += 10;
        FUZZ_ASSERT(strncmp(hit, "***", 3) == 0, "%s left a PIN in \"%s\"", what, out);
        hit += 3;
        FUZZ_ASSERT(*hit == '\0' || strchr(";?&", *hit) != NULL,
                    "%s kept part of a PIN in \"%s\"", what, out);
        p = hit;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = fuzz_string(data, size), *red, *with_pin;
    char shown[256];
    P11KitUri *uri;

    uri = p11m_uri_parse(s);
    if (uri != NULL)
        p11_kit_uri_free(uri);

    red = p11m_uri_redact(s);
    if (red != NULL) {
        FUZZ_ASSERT(strlen(red) <= 2 * strlen(s) + 3, "redaction overran its buffer");
        check_redacted("p11m_uri_redact", red, 1);
        free(red);
    }

    p11m_redact(s, shown, sizeof(shown));
    FUZZ_ASSERT(strlen(shown) < sizeof(shown), "bounded redaction not terminated");
    /* a cut at the buffer's end may split "pin-value=": check only complete ones */
    if (strlen(shown) + 20 < sizeof(shown))
        check_redacted("p11m_redact", shown, 1);

    if (strncmp(s, "pkcs11:", 7) == 0 && size < 4096) {
        with_pin = shim_pin_uri(s, "file:/etc/p11mtls/pin 1%?&=;");
        if (with_pin != NULL) {
            uri = p11m_uri_parse(with_pin);
            if (uri != NULL)
                p11_kit_uri_free(uri);
            free(with_pin);
        }
    }
    free(s);
    return 0;
}
