/*
 * fuzz_dest.c - the shim's destination patterns and destinations (shim/rules.c):
 * shim_pattern_parse, shim_dest_set_name, shim_dest_set_addr, shim_pattern_match,
 * shim_dest_format, shim_rules_find.
 *
 * Input: "PATTERN\nNAME\n" then raw bytes (address family, 16 address bytes, 2 port
 * bytes). Properties: a host-name pattern matches the destination of that very name,
 * in any letter case, and no other port when it names one; an IPv4 literal pattern
 * matches its own address; formatting never overruns.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <sys/socket.h>

#include "fuzz.h"
#include "shim.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = fuzz_string(data, size), *pattern = s, *name, *rest = NULL, *upper;
    struct shim_pattern p;
    struct shim_dest d;
    struct shim_conf c = {0};
    struct shim_rule r = {0};
    char why[128], buf[SHIM_HOST_MAX + 16];
    bool parsed, named;

    name = strchr(s, '\n');
    if (name != NULL) {
        *name++ = '\0';
        rest = strchr(name, '\n');
        if (rest != NULL)
            *rest++ = '\0';
    } else {
        name = "";
    }
    parsed = shim_pattern_parse(pattern, &p, why, sizeof(why));
    FUZZ_ASSERT(parsed || why[0] != '\0', "refused \"%s\" without saying why", pattern);

    memset(&d, 0, sizeof(d));
    d.port = -1;
    named = shim_dest_set_name(&d, name, "sni");
    if (rest != NULL && strlen(rest) >= 19) {
        d.port = (unsigned char) rest[17] << 8 | (unsigned char) rest[18];
        if (!named)
            shim_dest_set_addr(&d, rest[0] & 1 ? AF_INET6 : AF_INET, rest + 1);
    }
    shim_dest_format(&d, buf, sizeof(buf));
    FUZZ_ASSERT(strlen(buf) < sizeof(buf), "format overran");
    if (parsed) {
        bool m = shim_pattern_match(&p, &d);

        r.patterns = &p;
        r.npatterns = 1;
        c.rules = &r;
        c.nrules = 1;
        FUZZ_ASSERT((shim_rules_find(&c, &d) != NULL) == m, "rules_find disagrees");
    }

    /* self-match: a plain host name (no port, no wildcard) */
    if (parsed && p.kind == SHIM_PAT_HOST && p.port < 0 &&
        strpbrk(pattern, ":/[]*") == NULL) {
        memset(&d, 0, sizeof(d));
        d.port = 443;
        FUZZ_ASSERT(shim_dest_set_name(&d, pattern, "sni"), "pattern \"%s\" is no name",
                    pattern);
        FUZZ_ASSERT(shim_pattern_match(&p, &d), "\"%s\" does not match itself", pattern);
        upper = strdup(pattern);
        for (char *q = upper; *q != '\0'; q++)
            *q = (char) toupper((unsigned char) *q);
        memset(&d, 0, sizeof(d));
        FUZZ_ASSERT(shim_dest_set_name(&d, upper, "sni") && shim_pattern_match(&p, &d),
                    "\"%s\" does not match \"%s\"", pattern, upper);
        free(upper);
    }
    /* an IPv4 literal pattern with a port matches its address on that port only */
    if (parsed && p.kind == SHIM_PAT_IP && p.family == AF_INET && p.prefix == 32 &&
        p.port > 0) {
        memset(&d, 0, sizeof(d));
        shim_dest_set_addr(&d, AF_INET, p.addr);
        d.port = p.port;
        FUZZ_ASSERT(shim_pattern_match(&p, &d), "\"%s\" does not match its address",
                    pattern);
        d.port = p.port == 1 ? 2 : p.port - 1;
        FUZZ_ASSERT(!shim_pattern_match(&p, &d), "\"%s\" matches another port", pattern);
    }
    free(s);
    return 0;
}
