/*
 * ossl.c - find the program's OpenSSL 3 and fill the function table.
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "ossl.h"

struct shim_ossl shim_fn;

static pthread_once_t ossl_once = PTHREAD_ONCE_INIT;
static bool ossl_ok;
static void *ossl_handle; /* the program's libssl, even if something was missing */

/*
 * The libssl that defines SSL_CTX_new_ex@OPENSSL_3.0.0. RTLD_NEXT finds it when libssl
 * is in the global scope; python loads it RTLD_LOCAL, so fall back to the soname.
 * RTLD_NOLOAD: never bring libssl into a process that does not have it.
 */
static void *ossl_open_libssl(int mode)
{
    void *next = dlvsym(RTLD_NEXT, "SSL_CTX_new_ex", SHIM_OSSL_VERSION);
    Dl_info info;
    void *h = NULL;

    if (next != NULL && dladdr(next, &info) != 0 && info.dli_fname != NULL)
        h = dlopen(info.dli_fname, RTLD_LAZY | RTLD_NOLOAD);
    if (h == NULL)
        h = dlopen("libssl.so.3", RTLD_LAZY | mode);
    return h;
}

/* A handle lookup never returns the preload, but make sure we do not call ourselves. */
static bool ossl_is_self(void *fn)
{
    Dl_info self, other;

    if (fn == NULL || dladdr((void *) ossl_is_self, &self) == 0 ||
        dladdr(fn, &other) == 0)
        return false;
    return self.dli_fbase == other.dli_fbase;
}

static void ossl_fill(int mode)
{
    void *h = ossl_open_libssl(mode);
    bool ok = h != NULL;

    if (!ok)
        return;
    ossl_handle = h;
#define SHIM_OSSL_REQ(name)                                                              \
    shim_fn.name = (__typeof__(shim_fn.name)) dlvsym(h, #name, SHIM_OSSL_VERSION);       \
    ok = ok && shim_fn.name != NULL;
#define SHIM_OSSL_OPT(name)                                                              \
    shim_fn.name = (__typeof__(shim_fn.name)) dlvsym(h, #name, SHIM_OSSL_VERSION);
    SHIM_OSSL_REQUIRED(SHIM_OSSL_REQ)
    SHIM_OSSL_OPTIONAL(SHIM_OSSL_OPT)
#undef SHIM_OSSL_REQ
#undef SHIM_OSSL_OPT
    if (ok && ossl_is_self((void *) shim_fn.SSL_CTX_new_ex))
        ok = false;
    __atomic_store_n(&ossl_ok, ok, __ATOMIC_RELEASE);
}

static void ossl_resolve(void)
{
    ossl_fill(RTLD_NOLOAD);
}

bool shim_ossl_ready(void)
{
    pthread_once(&ossl_once, ossl_resolve);
    return __atomic_load_n(&ossl_ok, __ATOMIC_ACQUIRE);
}

static pthread_once_t ossl_load_once = PTHREAD_ONCE_INIT;

/* RTLD_LOCAL: the program's own symbol lookups must not start finding OpenSSL. */
static void ossl_load_libssl(void)
{
    if (!shim_ossl_ready() && ossl_handle == NULL)
        ossl_fill(RTLD_LOCAL);
}

bool shim_ossl_load(void)
{
    pthread_once(&ossl_load_once, ossl_load_libssl);
    return __atomic_load_n(&ossl_ok, __ATOMIC_ACQUIRE);
}

/*
 * The function a hook stands in for when the shim cannot work: OpenSSL 3's, found the
 * same way as in ossl_resolve (python's libssl is not in the global scope), else
 * whatever comes next (an unversioned definition, e.g. GnuTLS' compatibility layer).
 */
void *shim_ossl_next(const char *name)
{
    void *fn = dlvsym(RTLD_NEXT, name, SHIM_OSSL_VERSION);

    shim_ossl_ready();
    if (fn == NULL && ossl_handle != NULL)
        fn = dlvsym(ossl_handle, name, SHIM_OSSL_VERSION);
    if (ossl_is_self(fn))
        fn = NULL;
    return fn != NULL ? fn : dlsym(RTLD_NEXT, name);
}

void shim_ossl_error_text(char *buf, size_t len, bool detail)
{
    const char *data = NULL, *reason;
    int flags = 0;
    unsigned long e = shim_fn.ERR_peek_last_error_all(NULL, NULL, NULL, &data, &flags);

    if (len == 0)
        return;
    buf[0] = '\0';
    if (e == 0)
        return;
    reason = shim_fn.ERR_reason_error_string(e);
    if (!detail || !(flags & ERR_TXT_STRING) || data == NULL || *data == '\0')
        data = NULL;
    if (reason != NULL && data != NULL)
        snprintf(buf, len, "%s: %s", reason, data);
    else if (reason != NULL)
        snprintf(buf, len, "%s", reason);
    else if (data != NULL)
        snprintf(buf, len, "error 0x%lx: %s", e, data);
    else
        snprintf(buf, len, "error 0x%lx", e);
}
