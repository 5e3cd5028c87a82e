/*
 * module.c - PKCS#11 modules: loaded through p11-kit, initialised once per process
 * generation, never finalised.
 *
 * p11-kit refuses to load its own proxy as a module, so the proxy (the default, which
 * gives access to every token registered with p11-kit) is opened directly; any other
 * module goes through p11_kit_module_load(). After fork the child must call C_Initialize
 * again before using a module (p11-kit's proxy answers CKR_CRYPTOKI_NOT_INITIALIZED until
 * then); p11m_module_check_fork() does that lazily on first use in the child.
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <p11-kit/p11-kit.h>

#include "p11m.h"
#include "p11m_config.h"

#define MAX_MODULES 16

static pthread_mutex_t modules_lock = PTHREAD_MUTEX_INITIALIZER;
static P11M_MODULE *modules[MAX_MODULES];
static size_t n_modules;
static unsigned fork_generation;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

/*
 * Around fork: wait (briefly) until no thread is inside a module, so the child does not
 * inherit a module's internal locks held by threads it does not have. Bounded, because
 * the forking thread may itself hold a session (a program that forks from a callback):
 * then the fork goes ahead unquiesced rather than deadlocking.
 */
static int held_for_fork[MAX_MODULES];

static void module_atfork_prepare(void)
{
    struct timespec deadline;

    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += 1;
    pthread_mutex_lock(&modules_lock);
    for (size_t i = 0; i < n_modules; i++)
        held_for_fork[i] =
            pthread_rwlock_timedwrlock(&modules[i]->use_lock, &deadline) == 0;
}

static void module_atfork_parent(void)
{
    for (size_t i = 0; i < n_modules; i++)
        if (held_for_fork[i])
            pthread_rwlock_unlock(&modules[i]->use_lock);
    pthread_mutex_unlock(&modules_lock);
}

static void module_atfork_child(void)
{
    /* Only counters and locks: PKCS#11 work in an atfork handler can deadlock (p11-kit).
     */
    __atomic_add_fetch(&fork_generation, 1, __ATOMIC_SEQ_CST);
    pthread_mutex_init(&modules_lock, NULL);
    for (size_t i = 0; i < n_modules; i++)
        pthread_rwlock_init(&modules[i]->use_lock, NULL);
}

static void module_register_atfork(void)
{
    pthread_atfork(module_atfork_prepare, module_atfork_parent, module_atfork_child);
}

unsigned p11m_fork_generation(void)
{
    return __atomic_load_n(&fork_generation, __ATOMIC_SEQ_CST);
}

CK_RV p11m_call_done(const P11M_MODULE *mod, const char *name, CK_RV rv)
{
    if (p11m_log_level >= 2 || (rv != CKR_OK && p11m_log_level >= 1))
        p11m_log(1, "%s(%s) = %s", name, mod->path, p11m_ckr_name(rv));
    return rv;
}

static int module_is_proxy(const char *path)
{
    const char *base = strrchr(path, '/');

    return strcmp(base != NULL ? base + 1 : path, "p11-kit-proxy.so") == 0;
}

static CK_FUNCTION_LIST *module_open(const char *path)
{
    CK_FUNCTION_LIST *fl = NULL;
    CK_C_GetFunctionList get_list;
    void *dl;

    if (!module_is_proxy(path)) {
        fl = p11_kit_module_load(path, P11_KIT_MODULE_UNMANAGED);
        if (fl == NULL)
            p11m_raise(P11M_R_MODULE_LOAD, "%s: %s", path, p11_kit_message());
        return fl;
    }
    dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (dl == NULL) {
        p11m_raise(P11M_R_MODULE_LOAD, "%s: %s", path, dlerror());
        return NULL;
    }
    get_list = (CK_C_GetFunctionList) dlsym(dl, "C_GetFunctionList");
    if (get_list == NULL || get_list(&fl) != CKR_OK || fl == NULL) {
        p11m_raise(P11M_R_MODULE_LOAD, "%s: no usable C_GetFunctionList", path);
        dlclose(dl);
        return NULL;
    }
    return fl;
}

/* first: the initialisation at load, where ALREADY_INITIALIZED means someone else. */
static CK_RV module_initialize(P11M_MODULE *mod, int first)
{
    CK_C_INITIALIZE_ARGS args;
    CK_RV rv;

    memset(&args, 0, sizeof(args));
    args.flags = CKF_OS_LOCKING_OK;
    args.pReserved = mod->init_args;
    rv = P11M_CALL(mod, C_Initialize, &args);
    if (rv == CKR_CRYPTOKI_ALREADY_INITIALIZED) {
        /* The program or another library initialised it first: share, never finalise. */
        if (first)
            mod->shared = 1;
        else if (!mod->shared)
            mod->fork_unsafe = 1; /* we initialised it, in the parent: it kept that */
        rv = CKR_OK;
    }
    if (rv != CKR_OK) {
        p11m_raise_ckr(rv, "C_Initialize", "module %s", mod->path);
        return rv;
    }
    __atomic_store_n(&mod->generation, p11m_fork_generation(), __ATOMIC_RELEASE);
    return CKR_OK;
}

static P11M_MODULE *module_load(const char *path, const char *init_args)
{
    P11M_MODULE *mod = calloc(1, sizeof(*mod));
    CK_RV rv;

    if (mod == NULL)
        return NULL;
    pthread_rwlock_init(&mod->use_lock, NULL);
    mod->path = strdup(path);
    mod->init_args = init_args != NULL ? strdup(init_args) : NULL;
    if (mod->path == NULL || (init_args != NULL && mod->init_args == NULL))
        goto fail;
    mod->fl = module_open(path);
    if (mod->fl == NULL || module_initialize(mod, 1) != CKR_OK)
        goto fail;
    rv = P11M_CALL(mod, C_GetInfo, &mod->info);
    if (rv != CKR_OK) {
        p11m_raise_ckr(rv, "C_GetInfo", "module %s", path);
        goto fail; /* left loaded: unloading a half-initialised module is riskier */
    }
    mod->born = p11m_fork_generation();
    mod->fork_unsafe = p11m_module_info_fork_unsafe(&mod->info, path);
    p11m_log(1, "loaded PKCS#11 module %s", path);
    return mod;
fail:
    free(mod->path);
    free(mod->init_args);
    free(mod);
    return NULL;
}

int p11m_module_info_fork_unsafe(const CK_INFO *info, const char *path)
{
    static const char tpm2[] = "tpm2-software"; /* tpm2-pkcs11's manufacturerID */

    if (info != NULL && memcmp(info->manufacturerID, tpm2, sizeof(tpm2) - 1) == 0)
        return 1;
    return path != NULL && strstr(path, "libtpm2_pkcs11") != NULL;
}

static int module_same(const P11M_MODULE *mod, const char *path, const char *init_args)
{
    if (strcmp(mod->path, path) != 0)
        return 0;
    if (mod->init_args == NULL || init_args == NULL)
        return mod->init_args == init_args;
    return strcmp(mod->init_args, init_args) == 0;
}

P11M_MODULE *p11m_module_get(const char *path, const char *init_args)
{
    P11M_MODULE *mod = NULL;

    p11m_log_init();
    pthread_once(&atfork_once, module_register_atfork);
    if (path == NULL || *path == '\0')
        path = P11M_DEFAULT_MODULE;
    pthread_mutex_lock(&modules_lock);
    for (size_t i = 0; i < n_modules && mod == NULL; i++)
        if (module_same(modules[i], path, init_args))
            mod = modules[i];
    if (mod == NULL) {
        if (n_modules == MAX_MODULES)
            p11m_raise(P11M_R_MODULE_LOAD, "%s: too many PKCS#11 modules in use", path);
        else if ((mod = module_load(path, init_args)) != NULL)
            modules[n_modules++] = mod;
    }
    pthread_mutex_unlock(&modules_lock);
    if (mod != NULL && p11m_module_check_fork(mod) != CKR_OK)
        return NULL;
    return mod;
}

CK_RV p11m_module_check_fork(P11M_MODULE *mod)
{
    CK_RV rv = CKR_OK;

    if (__atomic_load_n(&mod->generation, __ATOMIC_ACQUIRE) == p11m_fork_generation())
        return CKR_OK;
    pthread_mutex_lock(&modules_lock);
    if (mod->generation != p11m_fork_generation()) {
        p11m_log(1, "re-initialising %s after fork", mod->path);
        rv = module_initialize(mod, 0);
    }
    pthread_mutex_unlock(&modules_lock);
    return rv;
}

CK_RV p11m_module_acquire(P11M_MODULE *mod)
{
    /* Readers nest (a login inside a checkout); glibc's default rwlock lets them in
     * while a writer waits. */
    int err = pthread_rwlock_rdlock(&mod->use_lock);

    if (err == 0)
        return CKR_OK;
    p11m_raise(P11M_R_INTERNAL, "module %s: lock: %s", mod->path, strerror(err));
    return CKR_CANT_LOCK;
}

void p11m_module_release(P11M_MODULE *mod)
{
    pthread_rwlock_unlock(&mod->use_lock);
}

static long long module_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Fast tries before backing off: tpm2-abrmd's restart takes a few seconds. */
#define REINIT_FAST_TRIES 10

/*
 * How long after a re-initialisation the next may come, given how many in a row found
 * no token to open a session on. Some modules lose memory at every C_Initialize that
 * cannot reach their device (tpm2-pkcs11 1.9: 11 KB, behind p11-kit's proxy too), and a
 * resource manager that stays down for a day must not cost a day of them.
 */
static long long module_reinit_gap_ms(int streak)
{
    int over = streak - (REINIT_FAST_TRIES - 1);

    if (over <= 0)
        return 1000;
    return over >= 5 ? 30000 : 1000LL << over;
}

void p11m_module_token_seen(P11M_MODULE *mod)
{
    if (__atomic_load_n(&mod->reinit_streak, __ATOMIC_RELAXED) != 0)
        __atomic_store_n(&mod->reinit_streak, 0, __ATOMIC_RELAXED);
}

int p11m_module_reinit(P11M_MODULE *mod)
{
    long long now = module_now_ms(), gap;
    int done = 0;

    struct timespec deadline;

    gap = module_reinit_gap_ms(__atomic_load_n(&mod->reinit_streak, __ATOMIC_RELAXED));
    /* C_Finalize in a child would flush the parent's TPM objects. */
    if (mod->shared || (mod->fork_unsafe && mod->born != p11m_fork_generation()) ||
        now - __atomic_load_n(&mod->last_reinit_ms, __ATOMIC_RELAXED) < gap)
        return 0;
    /* Other threads may keep the module busy: give up rather than stall the caller. */
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += 2;
    if (pthread_rwlock_timedwrlock(&mod->use_lock, &deadline) != 0)
        return 0;
    if (now - mod->last_reinit_ms >= module_reinit_gap_ms(mod->reinit_streak)) {
        int streak = mod->reinit_streak < 1000000 ? mod->reinit_streak + 1 : 1000000;

        mod->last_reinit_ms = now;
        p11m_log(1, "re-initialising %s to look for tokens again", mod->path);
        P11M_CALL(mod, C_Finalize, NULL);
        done = module_initialize(mod, 0) == CKR_OK;
        __atomic_store_n(&mod->reinit_streak, streak, __ATOMIC_RELAXED);
        if (streak == REINIT_FAST_TRIES)
            p11m_log(
                1,
                "%s: %d re-initialisations in a row found no token to open a session "
                "on: trying again every 2 s to 30 s from now on",
                mod->path, streak);
        __atomic_add_fetch(&mod->epoch, 1, __ATOMIC_RELEASE);
    }
    pthread_rwlock_unlock(&mod->use_lock);
    return done;
}
