/*
 * test_rules.c - destination patterns: parsing (good and bad) and matching.
 */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include "p11m_util.h"
#include "shim.h"
#include "tap.h"

static struct shim_dest dest(const char *name, int port)
{
    struct shim_dest d;

    memset(&d, 0, sizeof(d));
    d.port = port;
    if (name != NULL)
        shim_dest_set_name(&d, name, "test");
    return d;
}

static int matches(const char *pattern, const char *name, int port)
{
    struct shim_pattern p;
    struct shim_dest d = dest(name, port);
    char why[128];

    if (!shim_pattern_parse(pattern, &p, why, sizeof(why))) {
        tap_diag("pattern %s rejected: %s", pattern, why);
        return -1;
    }
    return shim_pattern_match(&p, &d);
}

static void test_good_patterns(void)
{
    static const struct {
        const char *pattern, *name;
        int port, want;
    } cases[] = {
        {"localhost", "localhost", -1, 1},
        {"localhost", "LOCALHOST.", 443, 1},
        {"localhost", "otherhost", 443, 0},
        {"localhost:8443", "localhost", 8443, 1},
        {"localhost:8443", "localhost", 443, 0},
        {"localhost:8443", "localhost", -1, 0}, /* port unknown: no match */
        {"*.corp.example", "api.corp.example", 443, 1},
        {"*.corp.example", "a.b.corp.example", 443, 1},
        {"*.corp.example", "corp.example", 443, 0},
        {"*.corp.example", "evilcorp.example", 443, 0},
        {"*.Corp.Example:443", "API.corp.example", 443, 1},
        {"127.0.0.1:8443", "127.0.0.1", 8443, 1},
        {"127.0.0.1:8443", "127.0.0.2", 8443, 0},
        {"127.0.0.1", "::ffff:127.0.0.1", 1, 1}, /* mapped IPv4 is IPv4 */
        {"10.0.0.0/8", "10.200.3.4", 443, 1},
        {"10.0.0.0/8", "11.0.0.1", 443, 0},
        {"10.1.2.3/8", "10.9.9.9", 443, 1}, /* host bits ignored */
        {"192.168.1.0/23", "192.168.0.200", -1, 1},
        {"192.168.1.0/23", "192.168.2.1", -1, 0},
        {"0.0.0.0/0", "8.8.8.8", -1, 1},
        {"fd00::/8", "fd12::1", 443, 1},
        {"fd00::/8", "fe80::1", 443, 0},
        {"[fd00::1]:443", "fd00::1", 443, 1},
        {"[fd00::1]:443", "fd00::1", 444, 0},
        {"[fd00::/16]:443", "fd00:0:1::5", 443, 1},
        {"::1", "::1", 8443, 1},
        {"10.0.0.0/8", "ten.example", 443, 0}, /* no DNS: names never match IPs */
        {"localhost", "127.0.0.1", 443, 0},
        {"*", "anything.example", 1, 1},
        {"*", "10.1.1.1", 1, 1},
        {"*", NULL, 443, 0}, /* unknown destination matches nothing */
        {"*:8443", "x.example", 8443, 1},
        {"*:8443", "x.example", 443, 0},
        {"1password.example", "1password.example", 443, 1},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        tap_ok(matches(cases[i].pattern, cases[i].name, cases[i].port) == cases[i].want,
               "\"%s\" vs %s:%d -> %s", cases[i].pattern,
               cases[i].name ? cases[i].name : "(unknown)", cases[i].port,
               cases[i].want ? "match" : "no match");
}

static void test_bad_patterns(void)
{
    static const char *const bad[] = {
        "",           "10.0.0.0/33",   "fd00::/129",  "a*.example",    "*.",
        "*example",   "host:0",        "host:65536",  "host:https",    "[fd00::1",
        "[fd00::1]x", "bad_host!name", "1.2.3.4/",    "1.2.3.4/x",     "fd00::zz",
        "a..b",       ".leading",      "*.*.example", "host:12:34:zz", "10.0.0.0/8/8",
    };
    struct shim_pattern p;
    char why[128];

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        why[0] = '\0';
        tap_ok(!shim_pattern_parse(bad[i], &p, why, sizeof(why)) && why[0] != '\0',
               "\"%s\" rejected (%s)", bad[i], why);
    }
}

static void test_dest_names(void)
{
    struct shim_dest d;
    char buf[300];

    memset(&d, 0, sizeof(d));
    tap_ok(!shim_dest_set_name(&d, "bad name", "sni"),
           "a name with a space is no destination");
    tap_ok(!shim_dest_set_name(&d, "", "sni"), "an empty name is no destination");
    d = dest("Example.COM.", 443);
    shim_dest_format(&d, buf, sizeof(buf));
    tap_ok(strcmp(buf, "example.com:443") == 0, "names are canonical: %s", buf);
    d = dest("fd00::1", 443);
    shim_dest_format(&d, buf, sizeof(buf));
    tap_ok(strcmp(buf, "[fd00::1]:443") == 0, "IPv6 with port: %s", buf);
    d = dest(NULL, -1);
    shim_dest_format(&d, buf, sizeof(buf));
    tap_ok(strcmp(buf, "unknown") == 0, "unknown destination: %s", buf);
}

static void test_rule_order(void)
{
    struct shim_pattern p[3];
    struct shim_rule rules[2] = {{.name = "first", .patterns = &p[0], .npatterns = 1},
                                 {.name = "second", .patterns = &p[1], .npatterns = 2}};
    struct shim_conf c = {.rules = rules, .nrules = 2};
    struct shim_dest d;
    char why[64];

    shim_pattern_parse("*.corp.example", &p[0], why, sizeof(why));
    shim_pattern_parse("10.0.0.0/8", &p[1], why, sizeof(why));
    shim_pattern_parse("*", &p[2], why, sizeof(why));
    d = dest("a.corp.example", 443);
    tap_ok(shim_rules_find(&c, &d) == &rules[0], "first matching rule wins");
    d = dest("10.1.1.1", 443);
    tap_ok(shim_rules_find(&c, &d) == &rules[1],
           "later rule when the first does not match");
    d = dest(NULL, -1);
    tap_ok(shim_rules_find(&c, &d) == NULL, "unknown destination: no rule");
}

static void test_redaction(void)
{
    char out[256];

    p11m_redact("pkcs11:token=t;id=%01?pin-value=1234&module-path=/m.so", out,
                sizeof(out));
    tap_ok(strstr(out, "1234") == NULL && strstr(out, "pin-value=***") != NULL &&
               strstr(out, "module-path=/m.so") != NULL,
           "pin-value redacted: %s", out);
    p11m_redact("pkcs11:token=t;pin-value=secret", out, sizeof(out));
    tap_ok(strcmp(out, "pkcs11:token=t;pin-value=***") == 0,
           "path pin-value redacted: %s", out);
}

static void test_pin_uri(void)
{
    char *u =
        shim_pin_uri("pkcs11:token=L;id=%01;type=private", "file:/etc/p 1/pin#.txt");

    tap_ok(u && strcmp(u, "pkcs11:token=L;id=%01;type=private?pin-source=file:/etc/p%201/"
                          "pin%23.txt") == 0,
           "pin-source added and encoded: %s", u);
    free(u);
    u = shim_pin_uri("pkcs11:token=L?module-path=/m.so", "env:PIN");
    tap_ok(u && strcmp(u, "pkcs11:token=L?module-path=/m.so&pin-source=env:PIN") == 0,
           "appended to an existing query: %s", u);
    free(u);
    u = shim_pin_uri("pkcs11:token=L?pin-value=1", "env:PIN");
    tap_ok(u && strcmp(u, "pkcs11:token=L?pin-value=1") == 0, "a URI's own PIN is kept");
    free(u);
    u = shim_pin_uri("/etc/key.pem", "env:PIN");
    tap_ok(u && strcmp(u, "/etc/key.pem") == 0, "files are left alone");
    free(u);
}

int main(void)
{
    test_good_patterns();
    test_bad_patterns();
    test_dest_names();
    test_rule_order();
    test_redaction();
    test_pin_uri();
    return tap_done();
}
