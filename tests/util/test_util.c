/*
 * test_util.c - the rules every PIN source of p11mtls follows (provider, preload
 * library, tool), and the URI and file helpers they share, on real files.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "p11m_util.h"
#include "tap.h"

static char dir[] = "/tmp/p11m-util-XXXXXX";

/* "file:DIR/name" holding len bytes of text, with mode. */
static const char *pin_file(const char *name, const char *text, size_t len, mode_t mode)
{
    static char spec[512];
    FILE *f;

    snprintf(spec, sizeof(spec), "file:%s/%s", dir, name);
    f = fopen(spec + 5, "w");
    if (f == NULL || fwrite(text, 1, len, f) != len || fclose(f) != 0 ||
        chmod(spec + 5, mode) != 0)
        tap_diag("cannot write %s", spec + 5);
    return spec;
}

/* 1 if spec reads as want; else 0 with the error containing err_has. */
static int pin_is(const char *spec, const char *want, const char *err_has)
{
    char pin[P11M_PIN_MAX + 1], err[512] = "";
    size_t len = 99;
    int ok = p11m_pinsrc_read(spec, pin, sizeof(pin), &len, err, sizeof(err));

    if (want != NULL)
        return ok && len == strlen(want) && strcmp(pin, want) == 0;
    if (ok || len != 0 || pin[0] != '\0' || strstr(err, err_has) == NULL)
        tap_diag("%s: ok=%d len=%zu err=%s", spec, ok, len, err);
    return !ok && len == 0 && pin[0] == '\0' && strstr(err, err_has) != NULL;
}

static void test_pin_sources(void)
{
    char big[P11M_PIN_MAX + 3], longest[P11M_PIN_MAX + 1];
    char fifo[600];

    tap_ok(p11m_pinsrc_valid("file:/x") && p11m_pinsrc_valid("env:X") &&
               !p11m_pinsrc_valid("/x") && !p11m_pinsrc_valid("file:x") &&
               !p11m_pinsrc_valid("file:") && !p11m_pinsrc_valid("env:") &&
               !p11m_pinsrc_valid("env:A=B") && !p11m_pinsrc_valid("1234") &&
               !p11m_pinsrc_valid(NULL),
           "syntax: only file:/ABSOLUTE/PATH and env:NAME");
    tap_ok(pin_is("1234", NULL, "value not shown"), "a literal is refused, not shown");
    tap_ok(pin_is(pin_file("a", "1234\n", 5, 0600), "1234", NULL),
           "one trailing LF is dropped");
    tap_ok(pin_is(pin_file("b", "1234\r\n", 6, 0600), "1234", NULL),
           "one trailing CR LF is dropped");
    tap_ok(pin_is(pin_file("c", "12 34", 5, 0400), "12 34", NULL),
           "no line end: the whole file, spaces kept");
    tap_ok(pin_is(pin_file("d", "1234\n5678\n", 10, 0600), NULL, "not one line"),
           "two lines: refused, not cut at the first");
    tap_ok(pin_is(pin_file("e",
                           "12\0"
                           "34",
                           5, 0600),
                  NULL, "not one line"),
           "a NUL byte: refused");
    tap_ok(pin_is(pin_file("f", "\n", 1, 0600), NULL, "empty PIN"), "empty: refused");
    tap_ok(pin_is(pin_file("g", "1234\n", 5, 0640), NULL,
                  "is accessible by group or others (mode 640); refusing it: chmod 600"),
           "mode 0640: refused with the fix");
    memset(big, 'x', sizeof(big));
    memset(longest, 'x', P11M_PIN_MAX);
    longest[P11M_PIN_MAX] = '\0';
    big[P11M_PIN_MAX] = '\n';
    tap_ok(pin_is(pin_file("h", big, P11M_PIN_MAX + 1, 0600), longest, NULL),
           "%d bytes and a newline: read", P11M_PIN_MAX);
    big[P11M_PIN_MAX] = 'x';
    tap_ok(pin_is(pin_file("i", big, P11M_PIN_MAX + 1, 0600), NULL,
                  "/i: longer than 255 bytes"),
           "one byte more: an error naming the file, never cut short");
    tap_ok(pin_is(pin_file("j", big, P11M_PIN_MAX + 3, 0600), NULL,
                  "PIN file /tmp/p11m-util-"),
           "a file longer than a PIN and a CR LF: refused before it is read");
    snprintf(fifo, sizeof(fifo), "file:%s/fifo", dir);
    tap_ok(mkfifo(fifo + 5, 0600) == 0 && pin_is(fifo, NULL, "fifo: not a regular file"),
           "a FIFO: refused at once, no blocking");
    tap_ok(pin_is("file:/nonexistent/pin", NULL, "PIN file /nonexistent/pin: No such"),
           "a missing file: named");
    setenv("P11M_UTIL_PIN", "4321\n", 1);
    tap_ok(pin_is("env:P11M_UTIL_PIN", "4321", NULL), "env: the same rules");
    unsetenv("P11M_UTIL_PIN");
    tap_ok(pin_is("env:P11M_UTIL_PIN", NULL, "P11M_UTIL_PIN is not set"),
           "env: unset is an error");
}

static void test_uris(void)
{
    char out[128];
    char *u = p11m_query_add("pkcs11:token=L;id=%01", "pin-source", "file:/p 1/#@.txt");

    tap_ok(u != NULL &&
               strcmp(u, "pkcs11:token=L;id=%01?pin-source=file:/p%201/%23%40.txt") == 0,
           "query started, value encoded: %s", u);
    free(u);
    u = p11m_query_add("pkcs11:token=L?module-path=/m.so", "pin-source", "env:P");
    tap_ok(u != NULL &&
               strcmp(u, "pkcs11:token=L?module-path=/m.so&pin-source=env:P") == 0,
           "appended to a query: %s", u);
    free(u);
    tap_ok(p11m_query_has("pkcs11:a=b?x=1&Pin-Value=2", "pin-value") &&
               !p11m_query_has("pkcs11:pin-value=2", "pin-value") &&
               !p11m_query_has("pkcs11:a?xpin-value=2", "pin-value") &&
               !p11m_query_has("pkcs11:a?pin-values=2", "pin-value"),
           "query attributes found by name, in the query only");
    p11m_redact("pkcs11:token=t;PIN-VALUE=12;id=%01?pin-value=34&x=1", out, sizeof(out));
    tap_ok(strcmp(out, "pkcs11:token=t;PIN-VALUE=***;id=%01?pin-value=***&x=1") == 0,
           "every pin-value redacted: %s", out);
    p11m_redact("pkcs11:token=t?pin-value=1234", out, 20);
    tap_ok(strlen(out) == 19 && strstr(out, "1234") == NULL, "redaction is bounded: %s",
           out);
}

static void test_file(void)
{
    char err[256], path[600];
    size_t len = 0;
    char *t;

    snprintf(path, sizeof(path), "%s/conf", dir);
    pin_file("conf", "[p11mtls]\n", 10, 0644);
    t = p11m_file_read(path, "conf", 10, 0, &len, err, sizeof(err));
    tap_ok(t != NULL && len == 10 && strcmp(t, "[p11mtls]\n") == 0,
           "a file of exactly max bytes is read whole");
    p11m_file_free(t, len);
    t = p11m_file_read(path, "conf", 9, 0, &len, err, sizeof(err));
    tap_ok(t == NULL && strcmp(err, "conf: larger than 9 bytes") == 0, "one more: %s",
           err);
    t = p11m_file_read(dir, "dir", 1024 * 1024, 0, &len, err, sizeof(err));
    tap_ok(t == NULL && strcmp(err, "dir: not a regular file") == 0, "a directory: %s",
           err);
    t = p11m_file_read("/dev/zero", "zero", 1024 * 1024, 0, &len, err, sizeof(err));
    tap_ok(t == NULL && strcmp(err, "zero: not a regular file") == 0, "a device: %s",
           err);
}

static void test_conf_path(void)
{
    int named = -1;

    unsetenv(P11M_CONF_ENV);
    tap_ok(strcmp(p11m_conf_path(&named), p11m_conf_default()) == 0 && named == 0,
           "no P11MTLS_CONF: the default %s", p11m_conf_default());
    setenv(P11M_CONF_ENV, "", 1);
    tap_ok(strcmp(p11m_conf_path(&named), p11m_conf_default()) == 0 && named == 0,
           "an empty P11MTLS_CONF: the default");
    setenv(P11M_CONF_ENV, "/x.conf", 1);
    tap_ok(strcmp(p11m_conf_path(&named), "/x.conf") == 0 && named == 1,
           "P11MTLS_CONF names the file");
}

int main(void)
{
    char cmd[64];

    if (mkdtemp(dir) == NULL)
        return 1;
    test_pin_sources();
    test_uris();
    test_file();
    test_conf_path();
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd) != 0)
        tap_diag("cannot remove %s", dir);
    return tap_done();
}
