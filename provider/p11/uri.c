/*
 * uri.c - RFC 7512 URIs: parsed by p11-kit; this adds the error messages, the module
 * that a URI names, and redaction for logs.
 */
#include <stdlib.h>
#include <string.h>

#include <p11-kit/p11-kit.h>

#include "p11m.h"
#include "p11m_util.h"

P11KitUri *p11m_uri_parse(const char *s)
{
    P11KitUri *uri;
    char *shown;
    int rc;

    if (s == NULL || strncmp(s, "pkcs11:", 7) != 0) {
        p11m_raise(P11M_R_BAD_URI, "not a pkcs11: URI");
        return NULL;
    }
    if ((uri = p11_kit_uri_new()) == NULL)
        return NULL;
    rc = p11_kit_uri_parse(s, P11_KIT_URI_FOR_ANY, uri);
    if (rc == P11_KIT_URI_OK && p11_kit_uri_any_unrecognized(uri))
        rc = P11_KIT_URI_NOT_FOUND; /* reported below as an unknown attribute */
    if (rc == P11_KIT_URI_OK)
        return uri;
    shown = p11m_uri_redact(s);
    p11m_raise(P11M_R_BAD_URI, "%s: %s", shown != NULL ? shown : "URI",
               rc == P11_KIT_URI_NOT_FOUND ? "unknown attribute"
                                           : p11_kit_uri_message(rc));
    free(shown);
    p11_kit_uri_free(uri);
    return NULL;
}

/* The file of the module p11-kit has registered under name (module-name=). */
static char *uri_module_by_name(const char *name)
{
    CK_FUNCTION_LIST **all = p11_kit_modules_load(NULL, P11_KIT_MODULE_UNMANAGED);
    CK_FUNCTION_LIST *m;
    char *path = NULL;

    if (all == NULL)
        return NULL;
    m = p11_kit_module_for_name(all, name);
    if (m != NULL)
        path = p11_kit_module_get_filename(m);
    p11_kit_modules_release(all);
    return path;
}

P11M_MODULE *p11m_uri_module(P11KitUri *uri, const char *default_path,
                             const char *init_args)
{
    const char *path = p11_kit_uri_get_module_path(uri);
    const char *name = p11_kit_uri_get_module_name(uri);
    P11M_MODULE *mod;
    char *found;

    if (path != NULL)
        return p11m_module_get(path, NULL);
    if (name == NULL)
        return p11m_module_get(default_path, init_args);
    found = uri_module_by_name(name);
    if (found == NULL) {
        p11m_raise(P11M_R_MODULE_LOAD,
                   "module-name=%s: no such module registered with p11-kit", name);
        return NULL;
    }
    mod = p11m_module_get(found, NULL);
    free(found);
    return mod;
}

char *p11m_uri_redact(const char *s)
{
    /* Each "pin-value=" (10 bytes) may grow by at most 3: twice the length suffices. */
    size_t len = 2 * strlen(s) + 4;
    char *out = malloc(len);

    if (out != NULL)
        p11m_redact(s, out, len);
    return out;
}
