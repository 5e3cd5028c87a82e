/*
 * uri.c - editing the query of a pkcs11: URI (RFC 7512) as text, and redacting the PIN
 * a URI may carry. Parsing stays with p11-kit, in the core.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "p11m_util.h"

int p11m_query_has(const char *uri, const char *name)
{
    const char *q = strchr(uri, '?');
    size_t n = strlen(name);

    while (q != NULL) {
        q++;
        if (strncasecmp(q, name, n) == 0 && q[n] == '=')
            return 1;
        q = strchr(q, '&');
    }
    return 0;
}

/* RFC 3986 unreserved characters and the two a path needs stay as they are. */
static int uri_plain(unsigned char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
           (ch >= '0' && ch <= '9') || (ch != '\0' && strchr("-._~/:", ch) != NULL);
}

char *p11m_query_add(const char *uri, const char *name, const char *value)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t cap = strlen(uri) + strlen(name) + 3 * strlen(value) + 3;
    char *out = malloc(cap), *p;
    int n;

    if (out == NULL)
        return NULL;
    n = snprintf(out, cap, "%s%c%s=", uri, strchr(uri, '?') != NULL ? '&' : '?', name);
    if (n < 0 || (size_t) n >= cap) {
        free(out);
        return NULL;
    }
    for (p = out + n; *value != '\0'; value++) {
        unsigned char ch = (unsigned char) *value;

        if (uri_plain(ch)) {
            *p++ = (char) ch;
        } else {
            *p++ = '%';
            *p++ = hex[ch >> 4];
            *p++ = hex[ch & 15];
        }
    }
    *p = '\0';
    return out;
}

void p11m_redact(const char *uri, char *out, size_t outlen)
{
    static const char attr[] = "pin-value=";
    size_t o = 0;

    if (outlen == 0)
        return;
    while (*uri != '\0' && o + 1 < outlen) {
        /* Attribute names are case-insensitive to some parsers: redact any spelling. */
        if (strncasecmp(uri, attr, sizeof(attr) - 1) == 0) {
            /* the name as written, so the line still shows where the PIN was */
            int n = snprintf(out + o, outlen - o, "%.*s***", (int) sizeof(attr) - 1, uri);

            o = n < 0 || (size_t) n >= outlen - o ? outlen - 1 : o + (size_t) n;
            uri += sizeof(attr) - 1;
            uri += strcspn(uri, ";?&");
            continue;
        }
        out[o++] = *uri++;
    }
    out[o] = '\0';
}
