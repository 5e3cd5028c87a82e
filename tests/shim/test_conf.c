/*
 * test_conf.c - the configuration loader with good and bad files.
 *
 * Each bad file must give exactly the expected error, as one line that names the
 * file and the line (syntax) or the section and key (meaning), and leave the shim
 * disabled (or fail-closed when the file asks for it).
 */
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shim.h"
#include "tap.h"

static char dir[] = "/tmp/p11mtls-test-conf.XXXXXX";

static const char base[] = "[p11mtls]\n"
                           "identities = ids\n"
                           "rules = rules\n"
                           "[ids]\n"
                           "device = device_id\n"
                           "[device_id]\n"
                           "key = pkcs11:token=L;id=%01;type=private\n"
                           "cert = pkcs11:token=L;id=%01;type=cert\n"
                           "[rules]\n"
                           "local = rule_local\n"
                           "[rule_local]\n"
                           "match = localhost\n"
                           "identity = device\n";

static char *write_file(const char *name, const char *text)
{
    static char path[256];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    f = fopen(path, "w");
    if (f == NULL)
        abort();
    fputs(text, f);
    fclose(f);
    return path;
}

static struct shim_conf *load_text(const char *text)
{
    return shim_conf_load(write_file("p11mtls.conf", text), true);
}

/* base with extra lines appended to the section that starts with marker. */
static struct shim_conf *load_with(const char *marker, const char *extra)
{
    char text[4096];
    const char *at = strstr(base, marker);
    size_t head;

    if (at == NULL)
        abort();
    at = strchr(at, '\n') + 1;
    head = (size_t) (at - base);
    snprintf(text, sizeof(text), "%.*s%s%s", (int) head, base, extra, at);
    return load_text(text);
}

static void show_errors(const struct shim_conf *c)
{
    for (size_t i = 0; c != NULL && i < c->nerrors; i++)
        tap_diag("error: %s", c->errors[i]);
}

/* Exactly one error, containing want, and the shim disabled. */
static void expect_error(struct shim_conf *c, const char *what, const char *want)
{
    int ok =
        c != NULL && c->nerrors == 1 && strstr(c->errors[0], want) != NULL &&
        (strstr(c->errors[0], dir) != NULL || strstr(c->errors[0], c->path) != NULL) &&
        strchr(c->errors[0], '\n') == NULL && !c->enabled && !c->abort_all;

    if (!tap_ok(ok, "%s: one error mentioning \"%s\"", what, want))
        show_errors(c);
}

static void test_example(void)
{
    char text[4096];
    struct shim_conf *c;

    snprintf(text, sizeof(text),
             "# the example from the documentation\n"
             "[p11mtls]\n"
             "identities = ids\n"
             "rules = rules\n"
             "log = stderr            # stderr | syslog | file:/path\n"
             "log_level = info        # error | warn | info | debug\n"
             "provider = /path/to/p11mtls.so\n"
             "provider_config = %s\n"
             "[ids]\n"
             "device = device_id\n"
             "[device_id]\n"
             "key = pkcs11:token=L;id=%%01;type=private\n"
             "cert = pkcs11:token=L;id=%%01;type=cert     # or a PEM file path\n"
             "chain = /path/chain.pem\n"
             "pin_source = file:/path/pin.txt\n"
             "[rules]\n"
             "local = rule_local\n"
             "[rule_local]\n"
             "match = 127.0.0.1:8443 localhost *.corp.example 10.0.0.0/8\n"
             "identity = device\n"
             "require_ca_match = yes\n"
             "on_unavailable = continue   # or abort\n",
             strdup(write_file("openssl-p11mtls.cnf",
                               "openssl_conf = init\n"
                               "[init]\nproviders = provs\n"
                               "[provs]\ndefault = dflt\np11mtls = p11m\n"
                               "[dflt]\nactivate = 1\n"
                               "[p11m]\nmodule = /x/p11mtls.so\nactivate = 1\n"
                               "pkcs11-module = /usr/lib/softhsm/libsofthsm2.so\n"
                               "debug-level = 2\n")));
    c = load_text(text);
    show_errors(c);
    tap_ok(c && c->enabled && c->nerrors == 0, "documented example loads without errors");
    if (c == NULL || !c->enabled)
        return;
    tap_ok(c->nids == 1 && strcmp(c->ids[0].name, "device") == 0 &&
               strcmp(c->ids[0].key, "pkcs11:token=L;id=%01;type=private") == 0 &&
               strcmp(c->ids[0].cert, "pkcs11:token=L;id=%01;type=cert") == 0 &&
               strcmp(c->ids[0].chain, "/path/chain.pem") == 0 &&
               strcmp(c->ids[0].pin_source, "file:/path/pin.txt") == 0,
           "identity read, trailing comments stripped");
    tap_ok(c->nrules == 1 && c->rules[0].npatterns == 4 && c->rules[0].identity == 0 &&
               c->rules[0].require_ca_match && !c->rules[0].abort_unavailable,
           "rule read");
    tap_ok(c->log_target == SHIM_LOG_STDERR && c->log_level == SHIM_INFO, "log settings");
    tap_ok(c->nparams == 2 && strcmp(c->params[0].name, "pkcs11-module") == 0 &&
               strcmp(c->params[1].name, "debug-level") == 0 &&
               strcmp(c->params[1].value, "2") == 0,
           "provider_config: provider parameters taken, module/activate left out");
    if (getenv("P11MTLS_PROVIDER") == NULL)
        tap_ok(strcmp(c->provider, "/path/to/p11mtls.so") == 0, "provider path");
}

/* The example users copy must load as it is. */
static void test_shipped_example(void)
{
    const char *build = getenv("P11M_BUILDDIR"); /* conf/ with this build's paths */
    char path[512];
    struct shim_conf *c;

    snprintf(path, sizeof(path), "%s/conf/p11mtls.conf", build != NULL ? build : ".");
    c = shim_conf_load(path, true);
    show_errors(c);
    tap_ok(c && c->enabled && c->nerrors == 0 && c->nids == 1 && c->nrules == 2 &&
               c->log_target == SHIM_LOG_SYSLOG && c->rules[1].abort_unavailable,
           "conf/p11mtls.conf loads without errors");
}

static void test_defaults(void)
{
    struct shim_conf *c = load_text(base);

    show_errors(c);
    tap_ok(c && c->enabled && c->nrules == 1 && c->rules[0].require_ca_match &&
               !c->rules[0].abort_unavailable && c->log_level == SHIM_WARN &&
               c->log_target == SHIM_LOG_STDERR && c->ids[0].pin_source == NULL &&
               !c->post_handshake_auth,
           "defaults: require_ca_match yes, on_unavailable continue, warn to stderr");
    c = load_with("[p11mtls]",
                  "log = file:/var/log/p11mtls.log\npost_handshake_auth = on\n"
                  "provider_params = pp\n[pp]\npkcs11-module = /m.so\n"
                  "[p11mtls]\n");
    show_errors(c);
    tap_ok(c && c->enabled && c->log_target == SHIM_LOG_FILE &&
               strcmp(c->log_file, "/var/log/p11mtls.log") == 0 &&
               c->post_handshake_auth && c->nparams == 1 &&
               strcmp(c->params[0].value, "/m.so") == 0,
           "log file, post_handshake_auth, provider_params");
    c = load_with("[rule_local]", "on_unavailable = abort\nrequire_ca_match = no\n");
    tap_ok(c && c->enabled && c->rules[0].abort_unavailable &&
               !c->rules[0].require_ca_match,
           "on_unavailable = abort, require_ca_match = no");
    c = shim_conf_load("/nonexistent/p11mtls.conf", false);
    tap_ok(c && !c->present && !c->enabled && c->nerrors == 0,
           "absent default file: not deployed, nothing said");
}

static void test_errors(void)
{
    expect_error(load_with("[p11mtls]", "colour = blue\n"), "unknown main key",
                 "[p11mtls] colour: unknown key");
    expect_error(load_with("[device_id]", "pin = 1234\n"), "unknown identity key",
                 "[device_id] pin: unknown key");
    expect_error(load_with("[rule_local]", "port = 443\n"), "unknown rule key",
                 "[rule_local] port: unknown key");
    expect_error(load_with("[p11mtls]", "log = console\n"), "bad log", "[p11mtls] log:");
    expect_error(load_with("[p11mtls]", "log = file:relative.log\n"), "relative log file",
                 "[p11mtls] log:");
    expect_error(load_with("[p11mtls]", "log_level = loud\n"), "bad log_level",
                 "[p11mtls] log_level:");
    expect_error(load_with("[p11mtls]", "provider = p11mtls.so\n"), "relative provider",
                 "[p11mtls] provider:");
    expect_error(load_with("[p11mtls]", "post_handshake_auth = maybe\n"), "bad boolean",
                 "[p11mtls] post_handshake_auth:");
    expect_error(load_with("[rules]", "r2 = r2_sect\n[r2_sect]\nidentity = device\n"
                                      "match = localhost 10.0.0.0/33\n[rules]\n"),
                 "bad pattern", "[r2_sect] match: bad pattern \"10.0.0.0/33\"");
    expect_error(load_with("[rule_local]", "require_ca_match = perhaps\n"), "bad boolean",
                 "[rule_local] require_ca_match:");
    expect_error(load_with("[rule_local]", "on_unavailable = explode\n"),
                 "bad on_unavailable", "[rule_local] on_unavailable:");
    expect_error(load_with("[device_id]", "pin_source = stdin\n"), "bad pin_source",
                 "[device_id] pin_source:");
    expect_error(load_with("[device_id]", "chain = chain.pem\n"), "relative chain",
                 "[device_id] chain:");
    expect_error(load_with("[ids]", "other = missing_section\n"),
                 "missing identity section", "[ids] other: no section [missing_section]");
    expect_error(load_with("[rules]", "r2 = r2_sect\n[r2_sect]\nmatch = x.example\n"
                                      "identity = nobody\n[rules]\n"),
                 "unknown identity", "[r2_sect] identity: no identity \"nobody\"");
    expect_error(
        load_with("[rules]", "r2 = r2_sect\n[r2_sect]\nidentity = device\n[rules]\n"),
        "rule without match", "[r2_sect] match: missing");
    expect_error(load_with("[rules]",
                           "r2 = r2_sect\n[r2_sect]\nidentity = device\nmatch = ,\n"
                           "[rules]\n"),
                 "rule with an empty match", "[r2_sect] match: empty");
    expect_error(load_with("[ids]", "bare = bare_id\n[bare_id]\ncert = /c.pem\n[ids]\n"),
                 "identity without key", "[bare_id] key: missing");
    expect_error(load_text("[p11mtls]\nlog_level = info\n[ids\ndevice = x\n"),
                 "syntax error", "p11mtls.conf:3: syntax error");
    expect_error(load_text("[other]\nx = 1\n"), "no main section",
                 "no [p11mtls] section");
    expect_error(shim_conf_load("/nonexistent/p11mtls.conf", true), "named file missing",
                 "/nonexistent/p11mtls.conf: cannot read");
}

static void test_provider_config_errors(void)
{
    char extra[512];
    const char *pc;

    pc = write_file("bad-modules.cnf", "openssl_conf = init\n[init]\nproviders = provs\n"
                                       "ssl_conf = ssl\n[provs]\np11mtls = p\n[p]\n"
                                       "activate = 1\n[ssl]\nsystem_default = sd\n[sd]\n"
                                       "MinProtocol = TLSv1.3\n");
    snprintf(extra, sizeof(extra), "provider_config = %s\n", pc);
    expect_error(load_with("[p11mtls]", extra), "provider_config with ssl_conf",
                 "[init] ssl_conf: only a providers section is allowed");
    pc = write_file("no-p11mtls.cnf", "openssl_conf = init\n[init]\nproviders = provs\n"
                                      "[provs]\ndefault = d\n[d]\nactivate = 1\n");
    snprintf(extra, sizeof(extra), "provider_config = %s\n", pc);
    expect_error(load_with("[p11mtls]", extra), "provider_config without p11mtls",
                 "no p11mtls provider section");
    pc = write_file("syntax.cnf", "openssl_conf = init\n[init\n");
    snprintf(extra, sizeof(extra), "provider_config = %s\n", pc);
    expect_error(load_with("[p11mtls]", extra), "provider_config syntax",
                 "syntax.cnf:2:");
}

static void test_fail_closed(void)
{
    struct shim_conf *c =
        load_with("[p11mtls]", "on_config_error = abort\ncolour = blue\n");

    tap_ok(c && c->nerrors == 1 && !c->enabled && c->abort_all,
           "on_config_error = abort with an error: fail closed");
    c = load_with("[p11mtls]", "on_config_error = abort\n");
    tap_ok(c && c->nerrors == 0 && c->enabled && !c->abort_all,
           "on_config_error = abort without errors: normal");
    c = load_with("[p11mtls]", "on_config_error = abrot\n");
    tap_ok(c && c->nerrors == 1 && c->abort_all, "misspelt on_config_error fails closed");
    setenv("P11MTLS_ON_CONFIG_ERROR", "abort", 1);
    c = load_text("[p11mtls\n");
    tap_ok(c && c->nerrors == 1 && c->abort_all,
           "syntax error with P11MTLS_ON_CONFIG_ERROR=abort: fail closed");
    unsetenv("P11MTLS_ON_CONFIG_ERROR");
}

static int remove_entry(const char *path, const struct stat *sb, int flag,
                        struct FTW *ftw)
{
    (void) sb, (void) flag, (void) ftw;
    return remove(path);
}

int main(void)
{
    int rc;

    /* link libssl for real, so the shim finds it as it would in a client */
    OPENSSL_init_ssl(0, NULL);
    if (mkdtemp(dir) == NULL || !tap_ok(shim_ossl_ready(), "OpenSSL functions resolved"))
        return tap_done();
    test_example();
    test_shipped_example();
    test_defaults();
    test_errors();
    test_provider_config_errors();
    test_fail_closed();
    rc = tap_done();
    nftw(dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
    return rc;
}
