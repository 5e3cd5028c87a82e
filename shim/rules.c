/*
 * rules.c - destination patterns and rule lookup.
 *
 * Pure string and address work (no OpenSSL, no DNS): a rule can only match what the
 * program itself told libssl, never what a resolver says, so it cannot be steered by DNS
 * and never blocks a handshake.
 *
 * Pattern syntax (one per word of a rule's `match`):
 *   host.example  *.example  1.2.3.4  10.0.0.0/8  fd00::1  fd00::/8  *
 * each optionally followed by :PORT; IPv6 with a port is written [fd00::1]:443 or
 * [fd00::/8]:443. "*.example" matches any name below example (a.example, a.b.example),
 * not example itself. "*" matches any known destination. Names compare
 * case-insensitively.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "shim.h"

#define PATTERN_MAX 300

static bool rules_valid_name(const char *s)
{
    size_t label = 0;

    if (*s == '\0' || strlen(s) >= SHIM_HOST_MAX)
        return false;
    for (; *s != '\0'; s++) {
        if (*s == '.') {
            if (label == 0)
                return false;
            label = 0;
        } else if (isalnum((unsigned char) *s) || *s == '-' || *s == '_') {
            if (++label > 63)
                return false;
        } else {
            return false;
        }
    }
    return label > 0;
}

/* Whether a name (a trailing dot aside) fits SHIM_HOST_MAX: a longer one is no host name,
 * and cutting it to fit would make a pattern name another host. */
static bool rules_name_fits(const char *s)
{
    size_t n = strlen(s);

    if (n > 0 && s[n - 1] == '.')
        n--;
    return n < SHIM_HOST_MAX;
}

/* Copy a host name in canonical form: lower case, no trailing dot. */
static void rules_canon_name(char *dst, const char *src, size_t len)
{
    size_t i;

    for (i = 0; src[i] != '\0' && i + 1 < len; i++)
        dst[i] = (char) tolower((unsigned char) src[i]);
    dst[i] = '\0';
    if (i > 1 && dst[i - 1] == '.')
        dst[i - 1] = '\0';
}

/* Parse an IP literal; IPv4-mapped IPv6 becomes IPv4 so either spelling matches. */
static bool rules_parse_ip(const char *s, int *family, uint8_t addr[16])
{
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    uint8_t buf[16];

    if (inet_pton(AF_INET, s, buf) == 1) {
        *family = AF_INET;
        memcpy(addr, buf, 4);
        return true;
    }
    if (inet_pton(AF_INET6, s, buf) != 1)
        return false;
    if (memcmp(buf, mapped, sizeof(mapped)) == 0) {
        *family = AF_INET;
        memcpy(addr, buf + 12, 4);
        return true;
    }
    *family = AF_INET6;
    memcpy(addr, buf, 16);
    return true;
}

void shim_dest_set_addr(struct shim_dest *d, int family, const void *addr)
{
    char text[INET6_ADDRSTRLEN];

    if (inet_ntop(family, addr, text, sizeof(text)) == NULL)
        return;
    d->has_ip = rules_parse_ip(text, &d->family, d->addr);
}

bool shim_dest_set_name(struct shim_dest *d, const char *name, const char *source)
{
    char canon[SHIM_HOST_MAX];

    if (name == NULL || !rules_name_fits(name))
        return false;
    if (rules_parse_ip(name, &d->family, d->addr)) {
        d->has_ip = true;
        d->source = source;
        return true;
    }
    rules_canon_name(canon, name, sizeof(canon));
    if (!rules_valid_name(canon))
        return false;
    memcpy(d->host, canon, sizeof(canon));
    d->source = source;
    return true;
}

void shim_dest_format(const struct shim_dest *d, char *buf, size_t len)
{
    char what[SHIM_HOST_MAX + 2] = "unknown";
    char ip[INET6_ADDRSTRLEN];

    if (d->host[0] != '\0')
        snprintf(what, sizeof(what), "%s", d->host);
    else if (d->has_ip && inet_ntop(d->family, d->addr, ip, sizeof(ip)) != NULL)
        snprintf(what, sizeof(what), d->family == AF_INET6 ? "[%s]" : "%s", ip);
    if (d->port >= 0)
        snprintf(buf, len, "%s:%d", what, d->port);
    else
        snprintf(buf, len, "%s", what);
}

/* A decimal number in [min, max] and nothing else. */
static bool rules_parse_number(const char *s, long min, long max, int *out)
{
    char *end;
    long v;

    if (!isdigit((unsigned char) *s) || strlen(s) > 5)
        return false;
    v = strtol(s, &end, 10);
    if (*end != '\0' || v < min || v > max)
        return false;
    *out = (int) v;
    return true;
}

static bool rules_parse_port(const char *s, int *port)
{
    return rules_parse_number(s, 1, 65535, port);
}

/* Split "host", "host:port", "[v6]:port" or a bare IPv6 into host and port. */
static bool rules_split_port(char *text, char **host, int *port, char *why, size_t len)
{
    char *colon;

    *port = -1;
    if (text[0] == '[') {
        char *close = strchr(text, ']');

        if (close == NULL) {
            shim_fmt(why, len, "missing ']'");
            return false;
        }
        *close = '\0';
        *host = text + 1;
        if (close[1] == '\0')
            return true;
        if (close[1] != ':' || !rules_parse_port(close + 2, port)) {
            shim_fmt(why, len, "bad port after ']'");
            return false;
        }
        return true;
    }
    *host = text;
    colon = strchr(text, ':');
    if (colon == NULL || strchr(colon + 1, ':') != NULL)
        return true; /* no port, or a bare IPv6 address */
    *colon = '\0';
    if (!rules_parse_port(colon + 1, port)) {
        shim_fmt(why, len, "bad port \"%s\"", colon + 1);
        return false;
    }
    return true;
}

/* "addr" or "addr/len"; host bits beyond the prefix are ignored. */
static bool rules_parse_cidr(char *host, struct shim_pattern *p, char *why, size_t len)
{
    char *slash = strchr(host, '/');
    int max;

    if (slash != NULL)
        *slash = '\0';
    if (!rules_parse_ip(host, &p->family, p->addr)) {
        shim_fmt(why, len, "not an IP address");
        return false;
    }
    max = p->family == AF_INET ? 32 : 128;
    p->prefix = max;
    if (slash == NULL)
        return true;
    if (!rules_parse_number(slash + 1, 0, max, &p->prefix)) {
        shim_fmt(why, len, "prefix length must be 0..%d", max);
        return false;
    }
    return true;
}

static bool rules_parse_host(char *host, struct shim_pattern *p, char *why, size_t len)
{
    bool has_separator = strchr(host, ':') != NULL || strchr(host, '/') != NULL;

    if (strcmp(host, "*") == 0) {
        p->kind = SHIM_PAT_ANY;
        return true;
    }
    if (!rules_name_fits(host)) {
        shim_fmt(why, len, "longer than a host name can be");
        return false;
    }
    if (strncmp(host, "*.", 2) == 0) {
        p->kind = SHIM_PAT_WILDCARD;
        rules_canon_name(p->host, host + 1, sizeof(p->host));
        if (!rules_valid_name(p->host + 1)) {
            shim_fmt(why, len, "bad name after \"*.\"");
            return false;
        }
        return true;
    }
    if (strchr(host, '*') != NULL) {
        shim_fmt(why, len, "'*' is allowed only as \"*\" or a leading \"*.\"");
        return false;
    }
    if (has_separator || isdigit((unsigned char) host[0])) {
        struct shim_pattern ip = *p;
        char copy[PATTERN_MAX];

        snprintf(copy, sizeof(copy), "%s", host);
        if (rules_parse_cidr(copy, &ip, why, len)) {
            ip.kind = SHIM_PAT_IP;
            *p = ip;
            return true;
        }
        if (has_separator) /* no host name has ':' or '/' */
            return false;
    }
    p->kind = SHIM_PAT_HOST;
    rules_canon_name(p->host, host, sizeof(p->host));
    if (!rules_valid_name(p->host)) {
        shim_fmt(why, len, "not a host name, IP address or CIDR");
        return false;
    }
    return true;
}

bool shim_pattern_parse(const char *text, struct shim_pattern *p, char *why, size_t len)
{
    char buf[PATTERN_MAX];
    char *host;

    memset(p, 0, sizeof(*p));
    if (strlen(text) >= sizeof(buf) || *text == '\0') {
        shim_fmt(why, len, "empty or too long");
        return false;
    }
    strcpy(buf, text);
    if (!rules_split_port(buf, &host, &p->port, why, len))
        return false;
    return rules_parse_host(host, p, why, len);
}

static bool rules_prefix_equal(const uint8_t *a, const uint8_t *b, int bits)
{
    int bytes = bits / 8, rest = bits % 8;

    if (memcmp(a, b, (size_t) bytes) != 0)
        return false;
    if (rest == 0)
        return true;
    return ((a[bytes] ^ b[bytes]) & (0xff << (8 - rest))) == 0;
}

static bool rules_host_match(const struct shim_pattern *p, const struct shim_dest *d)
{
    size_t hl = strlen(d->host), sl;

    if (d->host[0] == '\0')
        return false;
    if (p->kind == SHIM_PAT_HOST)
        return strcmp(p->host, d->host) == 0;
    sl = strlen(p->host);
    return hl > sl && strcmp(d->host + hl - sl, p->host) == 0;
}

bool shim_pattern_match(const struct shim_pattern *p, const struct shim_dest *d)
{
    bool known = d->host[0] != '\0' || d->has_ip;

    if (p->port >= 0 && p->port != d->port)
        return false;
    switch (p->kind) {
    case SHIM_PAT_ANY:
        return known;
    case SHIM_PAT_HOST:
    case SHIM_PAT_WILDCARD:
        return rules_host_match(p, d);
    case SHIM_PAT_IP:
        return d->host[0] == '\0' && d->has_ip && d->family == p->family &&
               rules_prefix_equal(d->addr, p->addr, p->prefix);
    }
    return false;
}

const struct shim_rule *shim_rules_find(const struct shim_conf *c,
                                        const struct shim_dest *d)
{
    for (size_t r = 0; r < c->nrules; r++)
        for (size_t i = 0; i < c->rules[r].npatterns; i++)
            if (shim_pattern_match(&c->rules[r].patterns[i], d))
                return &c->rules[r];
    return NULL;
}
