/*
 * driver.c - p11mtls-bench: runs the benchmark contenders side by side and prints the
 * table. Run it through tests/bench/run, which builds, makes the token, the CA, the
 * keys and the configuration files in DIR, and then calls
 *
 *   p11mtls-bench --dir DIR --worker PATH --preload PATH --provider PATH --module PATH
 *                 [--engine SO] [--quick] [--rounds N] [--slice MS] [--only LIST]
 *                 [--pp-conf CNF] [--tpm]
 *
 * --pp-conf: an openssl.cnf loading pkcs11-provider (the reference provider) with the
 * same module and PIN: it becomes contender p. Without it, p's columns say "-".
 *
 * Method. These machines' speed swings by a quarter within seconds, so one long run per
 * contender compares weather, not code. Every contender runs in its own worker process
 * (worker.c), set up and warmed before any timing; the driver then times them in turn in
 * short slices (A B C A B C ..., the order rotated each round) and keeps each one's BEST
 * slice. Contenders compared by a ratio have thus met the same conditions, and the best
 * slice is the one least disturbed. Absolute figures depend on the machine; the ratios
 * are what to compare.
 *
 * LIST (comma-separated, default all but count): sign, tls, shim, startup, mem, count,
 * count-shim (the shim's counted table only)
 * (instructions per operation under callgrind: repeatable, about 3 minutes).
 * --tpm: the token is an emulated TPM 2.0 with the RSA-2048 and P-256 keys only; runs
 * section 6 (p11mtls against raw C_Sign on the TPM) instead of the others.
 * Exit status: 0 when everything ran (targets met or not: see the table), 1 when a
 * contender could not run, 2 on usage errors.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

extern char **environ;

/* ---- options ---- */

static struct {
    const char *dir, *worker, *preload, *provider, *module, *engine, *only, *pp_conf;
    int rounds, quick, mem_first, mem_second, spawn_runs, tpm;
    double slice_ms;
} opt;

static int failures;
static int targets_met, targets_missed;

static int want(const char *part)
{
    size_t n = strlen(part);

    if (opt.only == NULL)
        return 1;
    for (const char *p = opt.only; (p = strstr(p, part)) != NULL; p += n)
        if ((p == opt.only || p[-1] == ',') && (p[n] == ',' || p[n] == '\0'))
            return 1;
    return 0;
}

static const char *in_dir(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static const char *in_dir(const char *fmt, ...)
{
    static char buf[32][PATH_MAX];
    static int next;
    char *p = buf[next++ % 32], name[256];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(name, sizeof(name), fmt, ap);
    va_end(ap);
    snprintf(p, PATH_MAX, "%s/%s", opt.dir, name);
    return p;
}

static double now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double) ts.tv_sec * 1e9 + (double) ts.tv_nsec;
}

/* ---- workers ---- */

#define MAX_ARGS 40
#define MAX_ENV  8

typedef struct worker {
    char name[80];
    const char *argv[MAX_ARGS];
    int argc;
    const char *cg_out;       /* run under callgrind, writing this file */
    const char *env[MAX_ENV]; /* "NAME=VALUE" to set, "NAME" to unset */
    int envc;
    pid_t pid;
    FILE *to, *from;
    char log[PATH_MAX];
    int alive;
    char why[200];
} WORKER;

static void w_args(WORKER *w, ...)
{
    va_list ap;
    const char *a;

    va_start(ap, w);
    while ((a = va_arg(ap, const char *)) != NULL && w->argc < MAX_ARGS - 1)
        w->argv[w->argc++] = a;
    va_end(ap);
    w->argv[w->argc] = NULL;
}

static void w_env(WORKER *w, const char *kv)
{
    if (w->envc < MAX_ENV)
        w->env[w->envc++] = kv;
}

static void w_why_from_log(WORKER *w)
{
    FILE *f = fopen(w->log, "r");
    char line[512];

    if (f == NULL)
        return;
    while (fgets(line, sizeof(line), f) != NULL) {
        line[strcspn(line, "\n")] = '\0';
        /* The last line that says something about the failure. */
        if (strstr(line, "signs with mechanism") == NULL && line[0] != '\0')
            snprintf(w->why, sizeof(w->why), "%.190s", line);
    }
    fclose(f);
}

static void w_dead(WORKER *w)
{
    int st;

    if (!w->alive && w->pid == 0)
        return;
    w->alive = 0;
    if (w->to != NULL)
        fclose(w->to);
    if (w->from != NULL)
        fclose(w->from);
    w->to = w->from = NULL;
    if (w->pid > 0)
        waitpid(w->pid, &st, 0);
    w->pid = 0;
    if (w->why[0] == '\0')
        w_why_from_log(w);
}

/* Starts the worker and waits for its "ready". */
static int w_start(WORKER *w)
{
    int in[2], out[2], fd;
    char line[256], *slug;

    snprintf(w->log, sizeof(w->log), "%s/logs/%s.log", opt.dir, w->name);
    for (slug = strrchr(w->log, '/') + 1; *slug != '\0'; slug++)
        if (*slug == ' ' || *slug == '/' || *slug == '\'')
            *slug = '_';
    w->why[0] = '\0';
    if (pipe(in) != 0 || pipe(out) != 0)
        return 0;
    fflush(NULL);
    w->pid = fork();
    if (w->pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        fd = open(w->log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0)
            dup2(fd, 2);
        close(in[0]);
        close(in[1]);
        close(out[0]);
        close(out[1]);
        for (int i = 0; i < w->envc; i++) {
            const char *eq = strchr(w->env[i], '=');

            if (eq == NULL) {
                unsetenv(w->env[i]);
            } else {
                char name[128];

                snprintf(name, sizeof(name), "%.*s", (int) (eq - w->env[i]), w->env[i]);
                setenv(name, eq + 1, 1);
            }
        }
        if (w->cg_out != NULL) {
            const char *argv[MAX_ARGS + 8];
            char cg[PATH_MAX + 32];
            int n = 0;

            snprintf(cg, sizeof(cg), "--callgrind-out-file=%s", w->cg_out);
            argv[n++] = "valgrind";
            argv[n++] = "--tool=callgrind";
            argv[n++] = "-q";
            argv[n++] = cg;
            argv[n++] = opt.worker;
            for (int i = 1; i < w->argc; i++)
                argv[n++] = w->argv[i];
            argv[n] = NULL;
            execvp("valgrind", (char *const *) argv);
            fprintf(stderr, "exec valgrind: %s\n", strerror(errno));
            _exit(127);
        }
        execv(opt.worker, (char *const *) w->argv);
        fprintf(stderr, "exec %s: %s\n", opt.worker, strerror(errno));
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    w->to = fdopen(in[1], "w");
    w->from = fdopen(out[0], "r");
    w->alive = 1;
    if (fgets(line, sizeof(line), w->from) == NULL || strncmp(line, "ready", 5) != 0) {
        w_dead(w);
        return 0;
    }
    return 1;
}

/* Sends a command line. */
static void w_send(WORKER *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void w_send(WORKER *w, const char *fmt, ...)
{
    va_list ap;

    if (!w->alive)
        return;
    va_start(ap, fmt);
    vfprintf(w->to, fmt, ap);
    va_end(ap);
    fputc('\n', w->to);
    fflush(w->to);
}

/* Reads "ok A B [C]": the number of values read, 0 if the worker died. The third value,
 * when there is one, goes to w_extra. */
static double w_extra;
static int w_recv(WORKER *w, double *a, double *b)
{
    char line[256];
    int n;

    w_extra = -1;
    if (!w->alive)
        return 0;
    if (fgets(line, sizeof(line), w->from) == NULL ||
        (n = sscanf(line, "ok %lf %lf %lf", a, b, &w_extra)) < 1) {
        w_dead(w);
        return 0;
    }
    return n;
}

#define w_cmd(w, a, b, ...) (w_send((w), __VA_ARGS__), w_recv((w), (a), (b)))

static void w_stop(WORKER *w)
{
    if (w->alive) {
        fputs("quit\n", w->to);
        fflush(w->to);
    }
    w_dead(w);
}

/* A contender in a comparison: its worker and its best rate per thread count. */
typedef struct cont {
    WORKER w;
    const char *tag;  /* short column tag */
    double best[2];   /* best rate over undisturbed slices (else over all) */
    double second[2]; /* the second best of those */
    int clean[2];     /* undisturbed slices */
    double any[2];    /* best rate over all slices */
    double pool[2];   /* compare_pooled: the rate in each half of the run */
} CONT;

static void cont_init(CONT *c, const char *tag, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void cont_init(CONT *c, const char *tag, const char *fmt, ...)
{
    va_list ap;

    memset(c, 0, sizeof(*c));
    c->tag = tag;
    va_start(ap, fmt);
    vsnprintf(c->w.name, sizeof(c->w.name), fmt, ap);
    va_end(ap);
    c->w.argv[c->w.argc++] = "p11mtls-bench-worker";
}

/*
 * Whether something else ran during a slice. /proc/stat says how much CPU time the
 * whole machine spent busy (steal time included: a hypervisor that takes the CPU away
 * is as bad as a neighbour); the worker says how much of it was its own. A slice where
 * others took more than 5% of the machine's capacity is disturbed: it is not used for
 * the best rate while undisturbed slices exist.
 */
static double stat_busy_ns(void)
{
    unsigned long long v[8] = {0};
    FILE *f = fopen("/proc/stat", "r");
    int n = 0;

    if (f != NULL) {
        n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2],
                   &v[3], &v[4], &v[5], &v[6], &v[7]);
        fclose(f);
    }
    if (n < 8)
        return -1;
    /* user nice system [idle iowait] irq softirq steal */
    return (double) (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) * 1e9 /
           (double) sysconf(_SC_CLK_TCK);
}

static long ncpu;
static int slices_total, slices_disturbed;

/*
 * Before a slice, waits (up to 1 s, and 90 s in the whole run) for a moment when the
 * machine is idle: 50 ms in which less than 5% of its capacity was busy.
 */
static double waited_ns;
static void quiet_wait(void)
{
    const struct timespec probe = {0, 50 * 1000 * 1000};

    for (int i = 0; i < 20 && waited_ns < 90e9; i++) {
        double t0 = now_ns(), b0 = stat_busy_ns(), b1, dt;

        nanosleep(&probe, NULL);
        b1 = stat_busy_ns();
        dt = now_ns() - t0;
        waited_ns += dt;
        if (b0 < 0 || b1 < 0 || b1 - b0 <= 0.05 * dt * (double) ncpu)
            return;
    }
}

/* Counts a slice that began at busy0 and lasted ns (the worker's CPU time in w_extra):
 * 1 if undisturbed, 0 if other processes took more than 5% of the machine in it. */
static int slice_count(double busy0, double ns)
{
    double busy1 = stat_busy_ns();
    double others = busy0 < 0 || busy1 < 0 || w_extra < 0 ? 0 : (busy1 - busy0) - w_extra;
    int clean = others <= 0.05 * ns * (double) ncpu;

    slices_total++;
    if (!clean)
        slices_disturbed++;
    return clean;
}

/* One timed slice; 1 and the rate if the worker answered. */
static int timed_slice(CONT *x, int t, int threads)
{
    double ops, ns, busy0, r;
    int clean;

    quiet_wait();
    busy0 = stat_busy_ns();

    if (w_cmd(&x->w, &ops, &ns, "run %.0f %d", opt.slice_ms, threads) < 2 || ns <= 0)
        return 0;
    clean = slice_count(busy0, ns);
    r = ops * 1e9 / ns;
    if (r > x->any[t])
        x->any[t] = r;
    if (clean) {
        x->clean[t]++;
        if (r > x->best[t]) {
            x->second[t] = x->best[t];
            x->best[t] = r;
        } else if (r > x->second[t]) {
            x->second[t] = r;
        }
    }
    return 1;
}

/* Starts a contender's worker and runs one warm-up slice per thread count. */
static int cont_start(CONT *c, const int *threads, int nthreads)
{
    double ops, ns;

    if (!w_start(&c->w)) {
        fprintf(stderr, "p11mtls-bench: %s: could not start: %s (log: %s)\n", c->w.name,
                c->w.why, c->w.log);
        return 0;
    }
    for (int t = 0; t < nthreads; t++)
        w_cmd(&c->w, &ops, &ns, "run %.0f %d", opt.slice_ms, threads[t]);
    return 1;
}

/*
 * Times the contenders: start all, one warm-up slice each, then at least `rounds`
 * rounds; in each round and for each thread count, one slice per contender in rotated
 * order. Halfway through, every contender starts again in a fresh process: how threads
 * meet a token's locks (and memory layout) differ between processes by more than slices
 * of one process do, so the best slice is taken over two processes. While a contender has
 * fewer than 3 undisturbed slices, rounds go on, up to twice `rounds`. A contender that
 * cannot start or dies is reported and left out (its rate stays 0). A rate from disturbed
 * slices only is shown with a '~'.
 */
static void compare(CONT *c, int n, const int *threads, int nthreads)
{
    for (int i = 0; i < n; i++)
        cont_start(&c[i], threads, nthreads);
    for (int r = 0; r < 2 * opt.rounds; r++) {
        int short_of_clean = 0;

        if (r > 0 && r == opt.rounds / 2)
            for (int i = 0; i < n; i++)
                if (c[i].w.alive) {
                    w_stop(&c[i].w);
                    cont_start(&c[i], threads, nthreads);
                }

        for (int i = 0; i < n; i++)
            for (int t = 0; t < nthreads; t++)
                if (c[i].w.alive && c[i].clean[t] < 3)
                    short_of_clean = 1;
        if (r >= opt.rounds && !short_of_clean)
            break;
        for (int t = 0; t < nthreads; t++)
            for (int k = 0; k < n; k++)
                timed_slice(&c[(k + r) % n], t, threads[t]);
    }
    for (int i = 0; i < n; i++) {
        for (int t = 0; t < nthreads; t++)
            if (c[i].clean[t] == 0)
                c[i].best[t] = -c[i].any[t]; /* negative: disturbed only */
        if (!c[i].w.alive) {
            if (c[i].w.why[0] == '\0')
                w_why_from_log(&c[i].w);
            if (c[i].any[0] > 0)
                fprintf(stderr, "p11mtls-bench: %s died: %s (log: %s)\n", c[i].w.name,
                        c[i].w.why, c[i].w.log);
            c[i].best[0] = c[i].best[1] = 0;
            failures++;
        }
        w_stop(&c[i].w);
    }
}

/*
 * Times the contenders taking turns every POOL_TURN_MS (A B C A B C ..., the order
 * rotated each round) and pools each one's rate over all its turns: a speed that drifts
 * more slowly than a round weighs on every contender alike. For the TPM, whose rate
 * drifts from one second to the next by more than the differences measured (best slices
 * of 500 ms put p11mtls 6-9% above raw C_Sign, which does strictly less work). The run
 * has two halves, each in fresh processes; best[0] is the pooled rate of both, pool[]
 * the rate of each half (pooled_noise). A contender that cannot start or dies is
 * reported and left out (its rate stays 0).
 */
#define POOL_TURN_MS 50

static void compare_pooled(CONT *c, int n)
{
    static const int one[] = {1};
    double ops[2][8] = {{0}}, ns[2][8] = {{0}};
    int turns = (int) (opt.slice_ms * opt.rounds / POOL_TURN_MS);

    for (int h = 0; h < 2 && n <= 8; h++) {
        for (int i = 0; i < n; i++) {
            if (h > 0 && !c[i].w.alive)
                continue;
            w_stop(&c[i].w);
            cont_start(&c[i], one, 1);
        }
        for (int r = 0; r < turns; r++)
            for (int k = 0; k < n; k++) {
                CONT *x = &c[(k + r) % n];
                double o, t, b0 = stat_busy_ns();

                if (w_cmd(&x->w, &o, &t, "run %d 1", POOL_TURN_MS) < 2 || t <= 0)
                    continue;
                slice_count(b0, t);
                ops[h][x - c] += o;
                ns[h][x - c] += t;
            }
    }
    for (int i = 0; i < n && n <= 8; i++) {
        for (int h = 0; h < 2; h++)
            c[i].pool[h] = ns[h][i] > 0 ? ops[h][i] * 1e9 / ns[h][i] : 0;
        c[i].best[0] = ns[0][i] + ns[1][i] > 0
                           ? (ops[0][i] + ops[1][i]) * 1e9 / (ns[0][i] + ns[1][i])
                           : 0;
        if (!c[i].w.alive) {
            if (c[i].w.why[0] == '\0')
                w_why_from_log(&c[i].w);
            fprintf(stderr, "p11mtls-bench: %s died: %s (log: %s)\n", c[i].w.name,
                    c[i].w.why, c[i].w.log);
            c[i].best[0] = 0;
            failures++;
        }
        w_stop(&c[i].w);
    }
}

/* How far the ratio of one half of a pooled run stands from the other's, in percent of
 * their mean, halved: the ratio's own spread. */
static char *pooled_noise(double r0, double r1)
{
    static char buf[8][16];
    static int next;
    char *p = buf[next++ % 8];

    if (r0 <= 0 || r1 <= 0)
        snprintf(p, 16, "-");
    else
        snprintf(p, 16, "%.1f%%", fabs(r0 - r1) / (r0 + r1) * 100);
    return p;
}

/* ---- table cells ---- */

/* A rate; '~' in front when only disturbed slices were had (stored negative). */
static char *rate(double v)
{
    static char buf[16][24];
    static int next;
    char *p = buf[next++ % 16];
    const char *mark = v < 0 ? "~" : "";

    v = v < 0 ? -v : v;
    if (v == 0)
        snprintf(p, 24, "n/a");
    else if (v >= 100)
        snprintf(p, 24, "%s%.0f", mark, v);
    else
        snprintf(p, 24, "%s%.1f", mark, v);
    return p;
}

/* "0.990 met" / "0.950 MISSED" (target > 0), or "0.990" (no target); a '~' after the
 * number when a figure came from disturbed slices only. */
static char *ratio(double num, double den, double target)
{
    static char buf[16][32];
    static int next;
    char *p = buf[next++ % 16];
    const char *mark = num < 0 || den < 0 ? "~" : "";
    double r;

    num = num < 0 ? -num : num;
    den = den < 0 ? -den : den;
    if (num == 0 || den == 0) {
        snprintf(p, 32, "n/a");
        return p;
    }
    r = num / den;
    if (target <= 0) {
        snprintf(p, 32, "%.3f%s", r, mark);
        return p;
    }
    /* Judged on the printed value (three decimals). */
    if (r + 0.0005 >= target) {
        snprintf(p, 32, "%.3f%s met", r, mark);
        targets_met++;
    } else {
        snprintf(p, 32, "%.3f%s MISSED", r, mark);
        targets_missed++;
    }
    return p;
}

/*
 * How far the best slice stands above the second best, in percent, for the worse of
 * two contenders: what dropping one lucky slice would change. A ratio that misses its
 * target by less than this is within the measurement's noise.
 */
static char *noise(const CONT *x, const CONT *y, int t)
{
    static char buf[16][16];
    static int next;
    char *p = buf[next++ % 16];
    double n = 0;
    const CONT *c[2] = {x, y};

    for (int i = 0; i < 2; i++) {
        if (c[i] == NULL || c[i]->best[t] <= 0 || c[i]->second[t] <= 0) {
            snprintf(p, 16, "-");
            return p;
        }
        if ((c[i]->best[t] - c[i]->second[t]) / c[i]->best[t] > n)
            n = (c[i]->best[t] - c[i]->second[t]) / c[i]->best[t];
    }
    snprintf(p, 16, "%.1f%%", n * 100);
    return p;
}

/* ---- 1. signing ---- */

static const struct scheme {
    const char *title, *name, *label;
} schemes[] = {
    {"RSA-2048 PKCS#1", "rsa-pkcs1", "rsa2048"},
    {"RSA-2048 PSS", "rsa-pss", "rsa2048"},
    {"ECDSA P-256", "ecdsa", "p256"},
    {"Ed25519", "ed25519", "ed25519"},
};

static const struct scheme *scheme_named(const char *name)
{
    for (size_t i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++)
        if (strcmp(schemes[i].name, name) == 0)
            return &schemes[i];
    abort(); /* a name from this file's own tables */
}

static const char *key_uri(const char *label)
{
    static char buf[8][200];
    static int next;
    char *p = buf[next++ % 8];

    snprintf(p, 200, "pkcs11:token=p11mtls-test;object=%s;type=private", label);
    return p;
}

/* Sets the engine's token up: libp11 0.4.12 cannot list the private keys of a token
 * that holds an EdDSA key, so it gets a copy of the token without the Ed25519 key (the
 * same RSA and EC key objects). */
static void engine_env(WORKER *w)
{
    static char conf[PATH_MAX + 20];

    snprintf(conf, sizeof(conf), "SOFTHSM2_CONF=%s", in_dir("softhsm2-libp11.conf"));
    w_env(w, conf);
    w_args(w, "--engine", opt.engine, NULL);
}

/* via: a worker --via, or "pp": the prov contender with pkcs11-provider's conf. */
static void sign_worker(CONT *c, const char *tag, const struct scheme *s, const char *via)
{
    int pp = strcmp(via, "pp") == 0;

    cont_init(c, tag, "sign-%s-%s%s", s->name, via,
              strcmp(tag, "a*") == 0 ? "-loaded" : "");
    w_env(&c->w, "LD_PRELOAD");
    w_args(&c->w, "sign", "--via", pp ? "prov" : via, "--scheme", s->name, NULL);
    if (pp)
        w_args(&c->w, "--conf", opt.pp_conf, "--uri", key_uri(s->label), NULL);
    else if (strcmp(via, "prov") == 0)
        w_args(&c->w, "--conf", in_dir("provider.cnf"), "--uri", key_uri(s->label), NULL);
    else if (strcmp(via, "soft") == 0)
        w_args(&c->w, "--key-file", in_dir("soft-%s.key", s->label), NULL);
    else
        w_args(&c->w, "--module", opt.module, "--pin-file", in_dir("pin.txt"), "--uri",
               key_uri(s->label), NULL);
    if (strcmp(tag, "a*") == 0)
        w_args(&c->w, "--conf", in_dir("provider.cnf"), NULL);
    if (strcmp(via, "engine") == 0)
        engine_env(&c->w);
}

/* Rates kept for section 2's RSA limit: 1 thread, RSA-PSS (what TLS signs with). */
static double pss_token_rate, pss_memory_rate;

static double best_of(double x, double y)
{
    return fabs(x) >= fabs(y) ? x : y;
}

static void bench_sign(void)
{
    static const int threads[] = {1, 2};
    static const char *const fmt =
        "%-15s %3s %6s %6s %6s %6s %6s %6s %6s %6s  %-12s %-12s %-12s %s\n";

    printf(
        "\n1. Signing, operations per second (best slice); all but d use the same token "
        "key\n");
    printf("   a   C_SignInit+C_Sign only, the mechanism p11mtls picks, a session per "
           "thread,\n       on the token object\n");
    printf(
        "   as  the same on a session copy of the key (C_CopyObject, CKA_TOKEN=false): "
        "SoftHSM2\n       signs faster with it. max(a, as) is the limit of the token\n");
    printf("   a'  a with the raw mechanism and SHA-256 in software each time "
           "(what libp11 does)\n");
    printf("   a*  a, in a process that has p11mtls loaded (configured, unused)\n");
    printf("   b   p11mtls as shipped (key-cache on): EVP_MD_CTX_new, "
           "EVP_DigestSignInit_ex,\n       EVP_DigestSign, EVP_MD_CTX_free\n");
    printf("   p   pkcs11-provider %s, its defaults (it caches keys as\n       session "
           "copies too), the same EVP calls\n",
           opt.pp_conf != NULL ? "(Debian 1.0, bookworm-backports)"
                               : "(not installed: -)");
    printf(
        "   c   libp11 engine (libengine-pkcs11-openssl 0.4.12), the same EVP calls\n");
    printf("   d   in-memory key in OpenSSL's default provider, the same EVP calls\n");
    printf("   targets: b/max(a,as) >= 0.95, b/p >= 1.05, b/c >= 1.00. noise: how much "
           "the best slice\n   of b, p or c stands above its second best (a miss by "
           "less is within noise)\n\n");
    printf(fmt, "scheme", "thr", "a", "as", "a'", "a*", "b", "p", "c", "d", "b/max(a,as)",
           "b/p", "b/c", "noise");
    for (size_t i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++) {
        const struct scheme *s = &schemes[i];
        int eddsa = strcmp(s->name, "ed25519") == 0;
        CONT c[8];
        int n = 0, ia, ias, iam = -1, ial, ib, ip = -1, ic = -1, id;

        ia = n;
        sign_worker(&c[n++], "a", s, "raw");
        ias = n;
        sign_worker(&c[n++], "as", s, "rawcopy");
        if (!eddsa) {
            iam = n;
            sign_worker(&c[n++], "a'", s, "rawmech");
        }
        ial = n;
        sign_worker(&c[n++], "a*", s, "raw");
        ib = n;
        sign_worker(&c[n++], "b", s, "prov");
        if (opt.pp_conf != NULL) {
            ip = n;
            sign_worker(&c[n++], "p", s, "pp");
        }
        if (!eddsa) { /* libp11 0.4.12 has no EdDSA */
            ic = n;
            sign_worker(&c[n++], "c", s, "engine");
        }
        id = n;
        sign_worker(&c[n++], "d", s, "soft");
        compare(c, n, threads, 2);
        for (int t = 0; t < 2; t++) {
            char thr[8];
            double fast = best_of(c[ia].best[t], c[ias].best[t]);
            const CONT *worst = ip >= 0 ? &c[ip] : ic >= 0 ? &c[ic] : &c[ia];

            if (t == 0 && strcmp(s->name, "rsa-pss") == 0) {
                pss_token_rate = fabs(fast);
                pss_memory_rate = fabs(c[id].best[0]);
            }
            snprintf(thr, sizeof(thr), "%d", threads[t]);
            printf(fmt, s->title, thr, rate(c[ia].best[t]), rate(c[ias].best[t]),
                   iam >= 0 ? rate(c[iam].best[t]) : "-", rate(c[ial].best[t]),
                   rate(c[ib].best[t]), ip >= 0 ? rate(c[ip].best[t]) : "-",
                   ic >= 0 ? rate(c[ic].best[t]) : "-", rate(c[id].best[t]),
                   ratio(c[ib].best[t], fast, 0.95),
                   ip >= 0 ? ratio(c[ib].best[t], c[ip].best[t], 1.05) : "-",
                   ic >= 0 ? ratio(c[ib].best[t], c[ic].best[t], 1.0) : "-",
                   noise(&c[ib], worst, t));
        }
    }
    printf("   (-: not applicable. a for ECDSA is CKM_ECDSA over a SHA-256 hash computed "
           "once: SoftHSM2 lists\n   no CKM_ECDSA_SHA256. c: libp11 0.4.12 has no "
           "EdDSA.)\n");
}

/* ---- 2. and 3. TLS handshakes ---- */

static void tls_worker(CONT *c, const char *tag, const char *ver, const char *label,
                       const char *via, const char *verify, const char *expect)
{
    int pp = strcmp(via, "pp") == 0;

    cont_init(c, tag, "tls%s-%s-%s", ver, label, tag);
    w_args(&c->w, "tls", "--via", pp ? "uri" : via, "--tls", ver, "--dir", opt.dir,
           "--verify", verify, "--expect", expect, NULL);
    if (strcmp(via, "uri") == 0 || pp)
        w_args(&c->w, "--conf", pp ? opt.pp_conf : in_dir("provider.cnf"), "--uri",
               key_uri(label), "--cert", in_dir("dev-%s.pem", label), NULL);
    else if (strcmp(via, "file") == 0)
        w_args(&c->w, "--key-file", in_dir("soft-%s.key", label), "--cert",
               in_dir("soft-%s.pem", label), NULL);
    else if (strcmp(via, "engine") == 0) {
        w_args(&c->w, "--module", opt.module, "--pin-file", in_dir("pin.txt"), "--uri",
               key_uri(label), "--cert", in_dir("dev-%s.pem", label), NULL);
        engine_env(&c->w);
    }
}

static const char *const tls_versions[] = {"1.2", "1.3"};
static const struct {
    const char *title, *label;
} tls_keys[] = {{"RSA-2048", "rsa2048"}, {"P-256", "p256"}};

/* The rows of sections 2 and 5: every version and key with the server in a library
 * context of its own, and the P-256 ones again with the server sharing the client's. */
static const struct tls_row {
    int v, k, shared;
} tls_rows[] = {{0, 0, 0}, {0, 1, 0}, {1, 0, 0}, {1, 1, 0}, {0, 1, 1}, {1, 1, 1}};
#define N_TLS_ROWS (sizeof(tls_rows) / sizeof(tls_rows[0]))

/* The four contenders of a section-2 row: p11mtls, pkcs11-provider (when there is
 * one), libp11's engine and the in-memory key. Returns how many were set up. */
static int tls_row_workers(CONT c[4], const struct tls_row *r, const char *suffix)
{
    static const char *const tags[] = {"p11mtls", "pp", "libp11", "memory"};
    static const char *const vias[] = {"uri", "pp", "engine", "file"};
    int n = 0;

    for (int i = 0; i < 4; i++) {
        if (i == 1 && opt.pp_conf == NULL)
            continue;
        tls_worker(&c[n], tags[i], tls_versions[r->v], tls_keys[r->k].label, vias[i],
                   "require", "cert");
        snprintf(c[n].w.name + strlen(c[n].w.name),
                 sizeof(c[n].w.name) - strlen(c[n].w.name), "%s%s",
                 r->shared ? "-shared" : "", suffix);
        if (r->shared)
            w_args(&c[n].w, "--server-shared", NULL);
        w_env(&c[n].w, "LD_PRELOAD");
        n++;
    }
    return n;
}

static void bench_tls(void)
{
    static const int one[] = {1};
    static const char *const fmt = "%-4s %-8s %-6s %7s %7s %7s %7s %7s  %-12s %-12s "
                                   "%-12s %s\n";

    printf(
        "\n2. Full TLS handshakes per second with client authentication (best slice)\n");
    printf("   client and server in one thread over a BIO pair, no resumption; server "
           "P-256,\n   SSL_VERIFY_PEER|FAIL_IF_NO_PEER_CERT. The same client key on the "
           "token through p11mtls\n   (b), pkcs11-provider (p), libp11's engine (c); a "
           "software key of the same type in\n   memory (d). server: own = a library "
           "context of its own with the default provider;\n   shared = the default "
           "context, where the client's provider is loaded.\n");
    printf(
        "   targets, P-256: b/p >= 1.2, b/c >= 1.0, b/d >= 0.95. RSA-2048: b/p >= 1.0, "
        "b/c >= 1.0,\n   b/limit >= 0.97, limit = 1/(1/d + 1/token sign - 1/in-memory "
        "sign) with section 1's\n   1-thread RSA-PSS rates (max(a,as) and d): what "
        "d's handshake becomes when its\n   signature takes as long as the token's. "
        "%s\n\n",
        pss_token_rate > 0 ? "" : "(section 1 not run: no limit)");
    printf(fmt, "TLS", "client", "server", "b", "p", "c", "d", "limit", "b/p", "b/c",
           "b/d|b/limit", "noise");
    for (size_t i = 0; i < N_TLS_ROWS; i++) {
        const struct tls_row *r = &tls_rows[i];
        int rsa = r->k == 0, ip = opt.pp_conf != NULL ? 1 : -1, ic = ip >= 0 ? 2 : 1,
            id = ic + 1;
        double limit = 0;
        CONT c[4];
        int n = tls_row_workers(c, r, "");

        compare(c, n, one, 1);
        if (rsa && pss_token_rate > 0 && pss_memory_rate > 0 && c[id].best[0] != 0)
            limit =
                1 / (1 / fabs(c[id].best[0]) + 1 / pss_token_rate - 1 / pss_memory_rate);
        printf(fmt, tls_versions[r->v], tls_keys[r->k].title,
               r->shared ? "shared" : "own", rate(c[0].best[0]),
               ip >= 0 ? rate(c[ip].best[0]) : "-", rate(c[ic].best[0]),
               rate(c[id].best[0]), rsa ? rate(limit) : "-",
               ip >= 0 ? ratio(c[0].best[0], c[ip].best[0], rsa ? 1.0 : 1.2) : "-",
               ratio(c[0].best[0], c[ic].best[0], 1.0),
               rsa ? ratio(c[0].best[0], limit, 0.97)
                   : ratio(c[0].best[0], c[id].best[0], 0.95),
               noise(&c[0], &c[id], 0));
        fflush(stdout);
    }
}

/* ---- 6. On a TPM ---- */

/* The TPM handshake's limit from d+a and ds: 1/(1/(d+a) - 1/ds); 0 without both. */
static double tpm_limit(double da, double ds)
{
    return da > 0 && ds > 0 && ds > da ? 1 / (1 / da - 1 / ds) : 0;
}

/*
 * The token is an emulated TPM 2.0 (tests/bench/run --token tpm): a signature takes
 * milliseconds there, so whatever p11mtls adds must vanish next to it. Signing through
 * p11mtls against raw C_Sign on the same key. Handshakes against the best a handshake
 * with that key can do, measured in the same turns: an in-memory key's handshake
 * followed by a raw C_Sign on the TPM (d+a), less the in-memory signature it made (ds).
 * The TPM's rate drifts from one second to the next, so the contenders of a row take
 * turns (compare_pooled), and a limit from separately measured rates would not do.
 */
static void bench_tpm(void)
{
    static const char *const fmt = "%-20s %7s %7s %7s %7s %7s %7s  %-12s %s\n";
    static const char *const sign_rows[] = {"rsa-pkcs1", "rsa-pss", "ecdsa"};
    static const struct {
        const char *title, *label, *scheme;
    } tls_rows_tpm[] = {{"TLS 1.3, RSA-2048", "rsa2048", "rsa-pss"},
                        {"TLS 1.3, P-256", "p256", "ecdsa"}};

    printf("\n6. On the TPM (swtpm behind tpm2-abrmd, tpm2-pkcs11), 1 thread, operations "
           "per second\n   (the contenders of a row take turns every %d ms; each rate is "
           "pooled "
           "over its turns)\n",
           POOL_TURN_MS);
    printf(
        "   a   C_SignInit+C_Sign on the TPM key, the mechanism p11mtls picks (section "
        "1's a)\n");
    printf("   b   p11mtls: signing with EVP as in section 1; a full handshake as in "
           "section 2\n");
    printf("   d   the handshake with an in-memory key of the same type; ds: its "
           "in-memory signature\n");
    printf("   d+a d's handshake, then a's C_Sign on the TPM key, as one operation\n");
    printf(
        "   limit = 1/(1/(d+a) - 1/ds): the handshake on the TPM key at no cost beyond "
        "the TPM's\n");
    printf("   targets: b/a >= 0.99 (signing), b/limit >= 0.99 (handshakes); noise: how "
           "far the\n   ratio of each half of the run (fresh processes) stands from "
           "their mean\n\n");
    printf(fmt, "operation", "a", "b", "d", "ds", "d+a", "limit", "b/a|b/limit", "noise");
    for (size_t i = 0; i < sizeof(sign_rows) / sizeof(sign_rows[0]); i++) {
        const struct scheme *s = scheme_named(sign_rows[i]);
        double r[2];
        CONT c[2];

        sign_worker(&c[0], "a", s, "raw");
        sign_worker(&c[1], "b", s, "prov");
        compare_pooled(c, 2);
        for (int h = 0; h < 2; h++)
            r[h] = c[0].pool[h] > 0 ? c[1].pool[h] / c[0].pool[h] : 0;
        printf(fmt, s->title, rate(c[0].best[0]), rate(c[1].best[0]), "-", "-", "-", "-",
               ratio(c[1].best[0], c[0].best[0], 0.99), pooled_noise(r[0], r[1]));
    }
    for (size_t i = 0; i < sizeof(tls_rows_tpm) / sizeof(tls_rows_tpm[0]); i++) {
        const struct scheme *s = scheme_named(tls_rows_tpm[i].scheme);
        double limit, r[2];
        CONT c[5];

        tls_worker(&c[0], "b", "1.3", tls_rows_tpm[i].label, "uri", "require", "cert");
        tls_worker(&c[1], "d+a", "1.3", tls_rows_tpm[i].label, "file", "require", "cert");
        w_args(&c[1].w, "--plus-raw-sign", "--scheme", s->name, "--module", opt.module,
               "--pin-file", in_dir("pin.txt"), "--uri", key_uri(s->label), NULL);
        tls_worker(&c[2], "d", "1.3", tls_rows_tpm[i].label, "file", "require", "cert");
        sign_worker(&c[3], "a", s, "raw");
        sign_worker(&c[4], "ds", s, "soft");
        compare_pooled(c, 5);
        limit = tpm_limit(c[1].best[0], c[4].best[0]);
        for (int h = 0; h < 2; h++) {
            double l = tpm_limit(c[1].pool[h], c[4].pool[h]);

            r[h] = l > 0 ? c[0].pool[h] / l : 0;
        }
        printf(fmt, tls_rows_tpm[i].title, rate(c[3].best[0]), rate(c[0].best[0]),
               rate(c[2].best[0]), rate(c[4].best[0]), rate(c[1].best[0]), rate(limit),
               ratio(c[0].best[0], limit, 0.99), pooled_noise(r[0], r[1]));
    }
}

static char env_preload[PATH_MAX + 20], env_provider[PATH_MAX + 20];

static void shim_env(WORKER *w, const char *conf)
{
    static char buf[8][PATH_MAX + 20];
    static int next;
    char *p = buf[next++ % 8];

    snprintf(p, PATH_MAX + 20, "P11MTLS_CONF=%s", conf);
    w_env(w, env_preload);
    w_env(w, env_provider);
    w_env(w, p);
}

/* The shim's four contenders for one TLS version and client key (see bench_shim). */
static void shim_workers(CONT c[4], const char *ver, const char *label)
{
    tls_worker(&c[0], "none", ver, label, "none", "request", "nocert");
    w_env(&c[0].w, "LD_PRELOAD");
    tls_worker(&c[1], "nomatch", ver, label, "none", "request", "nocert");
    shim_env(&c[1].w, in_dir("shim-nomatch-%s.conf", label));
    tls_worker(&c[2], "shim", ver, label, "none", "require", "cert");
    shim_env(&c[2].w, in_dir("shim-%s.conf", label));
    tls_worker(&c[3], "native", ver, label, "uri", "require", "cert");
    w_env(&c[3].w, "LD_PRELOAD");
}

/* The same four with a GnuTLS client (native: GnuTLS's own PKCS#11 key). */
static void shim_gnutls_workers(CONT c[4], const char *ver, const char *label)
{
    static const char *const tag[] = {"g-none", "g-nomatch", "g-shim", "g-native"};

    for (int i = 0; i < 4; i++) {
        cont_init(&c[i], tag[i], "gtls%s-%s-%s", ver, label, tag[i]);
        w_args(&c[i].w, "gtls", "--via", i == 3 ? "uri" : "none", "--tls", ver, "--dir",
               opt.dir, "--verify", i < 2 ? "request" : "require", "--expect",
               i < 2 ? "nocert" : "cert", NULL);
    }
    w_args(&c[3].w, "--uri", key_uri(label), "--cert", in_dir("dev-%s.pem", label),
           "--pin-file", in_dir("pin.txt"), NULL);
    w_env(&c[0].w, "LD_PRELOAD");
    shim_env(&c[1].w, in_dir("shim-nomatch-%s.conf", label));
    shim_env(&c[2].w, in_dir("shim-%s.conf", label));
    w_env(&c[3].w, "LD_PRELOAD");
}

static void bench_shim(void)
{
    static const int one[] = {1};

    printf("\n3. The shim (libp11mtls-preload.so): handshakes per second of one client "
           "program\n");
    printf("   none     no shim; server asks for a certificate, gets none\n");
    printf("   nomatch  shim preloaded, no rule names the server; same server\n");
    printf(
        "   shim     shim preloaded, presents the token identity; server requires it\n");
    printf("   native   no shim; the program loads the same token key through p11mtls\n");
    printf("   targets: nomatch/none >= 0.99, shim/native >= 0.97\n\n");
    printf("   GnuTLS rows: the same with a GnuTLS client (native: the key through "
           "GnuTLS's own\n   PKCS#11 support, gnutls_certificate_set_x509_key_file2 with "
           "the pkcs11: URI)\n\n");
    printf("%-10s %-9s %7s %7s %7s %7s  %-13s %-6s %-13s %s\n", "TLS", "client", "none",
           "nomatch", "shim", "native", "nomatch/none", "noise", "shim/native", "noise");
    for (int row = 0; row < 8; row++) {
        {
            int v = (row / 2) % 2, k = row % 2, gnutls = row >= 4;
            const char *ver = tls_versions[v], *label = tls_keys[k].label;
            char title[32];
            CONT c[4];

            snprintf(title, sizeof(title), "%s%s", gnutls ? "GnuTLS " : "", ver);
            if (gnutls)
                shim_gnutls_workers(c, ver, label);
            else
                shim_workers(c, ver, label);
            compare(c, 4, one, 1);
            printf("%-10s %-9s %7s %7s %7s %7s  %-13s %-6s %-13s %s\n", title,
                   tls_keys[k].title, rate(c[0].best[0]), rate(c[1].best[0]),
                   rate(c[2].best[0]), rate(c[3].best[0]),
                   ratio(c[1].best[0], c[0].best[0], 0.99), noise(&c[1], &c[0], 0),
                   ratio(c[2].best[0], c[3].best[0], 0.97), noise(&c[2], &c[3], 0));
            fflush(stdout);
        }
    }
}

/* ---- 3b. start-up ---- */

/* Builds an environment: environ without LD_PRELOAD, plus the shim's when preload. */
static char **spawn_env(int preload)
{
    size_t n = 0;
    char **env;

    while (environ[n] != NULL)
        n++;
    env = calloc(n + 4, sizeof(*env));
    n = 0;
    for (char **e = environ; *e != NULL; e++)
        if (strncmp(*e, "LD_PRELOAD=", 11) != 0 && strncmp(*e, "P11MTLS_CONF=", 13) != 0)
            env[n++] = *e;
    if (preload) {
        static char conf[PATH_MAX + 20];

        snprintf(conf, sizeof(conf), "P11MTLS_CONF=%s", in_dir("shim-p256.conf"));
        env[n++] = env_preload;
        env[n++] = env_provider;
        env[n++] = conf;
    }
    return env;
}

/* Mean wall time of one run, in ms, over `runs` runs; -1 if a run failed. */
static double spawn_slice(char *const argv[], char **env, int runs)
{
    posix_spawn_file_actions_t fa;
    double t0 = now_ns();
    int ok = 1;

    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    for (int i = 0; i < runs && ok; i++) {
        pid_t pid;
        int st;

        if (posix_spawn(&pid, argv[0], &fa, NULL, argv, env) != 0 ||
            waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
            ok = 0;
    }
    posix_spawn_file_actions_destroy(&fa);
    return ok ? (now_ns() - t0) / runs / 1e6 : -1;
}

static void bench_startup(void)
{
    static char *true_argv[] = {"/bin/true", NULL};
    static char *curl_argv[] = {"/usr/bin/curl", "--version", NULL};
    static char *gnutls_argv[] = {"/usr/bin/gnutls-cli", "--version", NULL};
    static char **const progs[] = {true_argv, curl_argv, gnutls_argv};
    char **env[2] = {spawn_env(0), spawn_env(1)};

    printf("\n   Start-up: wall time of one run (fork+exec+exit, best slice mean of %d "
           "runs)\n",
           opt.spawn_runs);
    printf("   target: overhead <= 2 ms\n\n");
    printf("%-22s %12s %12s  %s\n", "program", "no preload", "preload", "overhead");
    for (int p = 0; p < 3; p++) {
        double best[2] = {1e9, 1e9};
        char name[64];

        if (access(progs[p][0], X_OK) != 0) {
            printf("%-22s (not installed)\n", progs[p][0]);
            continue;
        }
        for (int r = 0; r < opt.rounds + 1; r++) {
            for (int k = 0; k < 2; k++) {
                int i = (k + r) % 2;
                double ms = spawn_slice(progs[p], env[i], opt.spawn_runs);

                if (ms < 0) {
                    fprintf(stderr, "p11mtls-bench: %s failed\n", progs[p][0]);
                    failures++;
                    best[i] = -1;
                } else if (r > 0 && ms < best[i] && best[i] >= 0) {
                    best[i] = ms; /* round 0 warms the page cache */
                }
            }
        }
        snprintf(name, sizeof(name), "%s%s%s", progs[p][0], progs[p][1] ? " " : "",
                 progs[p][1] ? progs[p][1] : "");
        if (best[0] < 0 || best[1] < 0) {
            printf("%-22s %12s %12s  n/a\n", name, "failed", "failed");
            continue;
        }
        printf("%-22s %9.3f ms %9.3f ms  %+.3f ms %s\n", name, best[0], best[1],
               best[1] - best[0], best[1] - best[0] <= 2.0 ? "met" : "MISSED");
        if (best[1] - best[0] <= 2.0)
            targets_met++;
        else
            targets_missed++;
    }
    free(env[0]);
    free(env[1]);
}

/* ---- 4. memory ---- */

static void bench_mem(void)
{
    static const char *const title[] = {"token via p11mtls", "token via the shim",
                                        "in memory (reference)"};
    const int first = opt.mem_first, second = opt.mem_second;
    /* Noise: what a process that leaks nothing may drift by (heap, arenas). */
    const double noise_kb = 256;
    double kb1[3] = {0}, kb2[3] = {0}, ops, ns;
    CONT c[3];

    tls_worker(&c[0], "p11mtls", "1.3", "p256", "uri", "require", "cert");
    w_env(&c[0].w, "LD_PRELOAD");
    tls_worker(&c[1], "shim", "1.3", "p256", "none", "require", "cert");
    shim_env(&c[1].w, in_dir("shim-p256.conf"));
    tls_worker(&c[2], "memory", "1.3", "p256", "file", "require", "cert");
    w_env(&c[2].w, "LD_PRELOAD");

    printf("\n4. Memory: resident set size of the client+server process, TLS 1.3, "
           "P-256 client key\n");
    printf("   target: growth from %d to %d handshakes within noise (%.0f KiB)\n\n",
           first, second, noise_kb);
    printf("%-26s %12s %12s %10s %12s\n", "client key", "RSS@first", "RSS@second",
           "growth", "per hshake");
    /* Not a timing: the three run at once. Each did 1 handshake before "ready". */
    for (int i = 0; i < 3; i++) {
        snprintf(c[i].w.name, sizeof(c[i].w.name), "mem-%s", c[i].tag);
        if (w_start(&c[i].w))
            w_send(&c[i].w, "n %d", first - 1);
    }
    for (int i = 0; i < 3; i++)
        if (w_recv(&c[i].w, &ops, &ns) == 2 && w_cmd(&c[i].w, &kb1[i], &ns, "rss") >= 1)
            w_send(&c[i].w, "n %d", second - first);
    for (int i = 0; i < 3; i++) {
        if (w_recv(&c[i].w, &ops, &ns) != 2 || w_cmd(&c[i].w, &kb2[i], &ns, "rss") < 1) {
            printf("%-26s failed: %s (log: %s)\n", title[i], c[i].w.why, c[i].w.log);
            failures++;
            w_stop(&c[i].w);
            continue;
        }
        w_stop(&c[i].w);
        printf("%-26s %8.0f KiB %8.0f KiB %6.0f KiB %8.1f B  %s\n", title[i], kb1[i],
               kb2[i], kb2[i] - kb1[i], (kb2[i] - kb1[i]) * 1024 / (second - first),
               i == 2 ? "" : (kb2[i] - kb1[i] <= noise_kb ? "met" : "MISSED"));
        if (i < 2) {
            if (kb2[i] - kb1[i] <= noise_kb)
                targets_met++;
            else
                targets_missed++;
        }
    }
}

/* ---- 5. instructions (callgrind) ---- */

/*
 * Instructions per operation, counted by callgrind: the worker zeroes the counters
 * before its `n COUNT` loop and dumps them after it (<valgrind/callgrind.h>), so set-up
 * and the first operation are not counted. Repeatable to a fraction of a percent
 * whatever else the machine does; it misses what instructions do not show (cache misses,
 * lock waits, system calls' time). Returns instructions per operation, 0 on failure.
 */
static double count_one(CONT *c, int n)
{
    char out[PATH_MAX], part[PATH_MAX + 4], line[256];
    double ops, ns, total = 0;
    FILE *f;

    snprintf(out, sizeof(out), "%s/logs/%s.callgrind", opt.dir, c->w.name);
    snprintf(part, sizeof(part), "%s.1", out);
    unlink(part);
    c->w.cg_out = out;
    if (!w_start(&c->w) || w_cmd(&c->w, &ops, &ns, "n %d", n) != 2) {
        printf("   %s: failed: %s (log: %s)\n", c->w.name, c->w.why, c->w.log);
        failures++;
        w_stop(&c->w);
        return 0;
    }
    w_stop(&c->w);
    if ((f = fopen(part, "r")) == NULL) {
        printf("   %s: no callgrind dump (%s): worker built without "
               "valgrind/callgrind.h?\n",
               c->w.name, part);
        failures++;
        return 0;
    }
    while (fgets(line, sizeof(line), f) != NULL)
        if (sscanf(line, "summary: %lf", &total) == 1)
            break;
    fclose(f);
    return total / n;
}

static char *kinstr(double v)
{
    static char buf[16][24];
    static int next;
    char *p = buf[next++ % 16];

    if (v <= 0)
        snprintf(p, 24, "-");
    else
        snprintf(p, 24, "%.1fk", v / 1000);
    return p;
}

/* Like kinstr, for differences, which may be negative. */
static char *kinstr_signed(double v)
{
    static char buf[16][24];
    static int next;
    char *p = buf[next++ % 16];

    snprintf(p, 24, "%+.1fk", v / 1000);
    return p;
}

static void bench_count_shim(void);

static void bench_count(void)
{
    static const int nsign[] = {30, 30, 300, 100};
    static const char *const fmt =
        "%-16s %8s %8s %8s %8s %8s %8s %8s  %-7s %-7s %-7s %-7s %-7s %s\n";
    static const char *const fmt2 = "%-16s %9s %9s %9s %9s %9s %9s\n";
    const int nhs = 40;
    double cnt[4][10] = {{0}};

    printf("\n5. Instructions per operation (callgrind; repeatable, load-independent)\n");
    printf("   the same contenders, counted instead of timed. Ratios are given as "
           "throughput:\n   b/a = instructions(a) / instructions(b), so they read like "
           "the timed ones.\n   ceiling: a / (a + init), the best b/a any provider "
           "reaches through these EVP calls,\n   where init is what libcrypto spends on "
           "EVP_MD_CTX_new, EVP_DigestSignInit_ex and\n   EVP_MD_CTX_free for a key of "
           "its own default provider (counted without signing)\n\n");
    printf("   as, p: as in section 1 (session copy; pkcs11-provider). b/fast: against "
           "the faster of a, as\n\n");
    printf(fmt, "scheme", "a", "as", "a*", "b", "p", "c", "d", "b/a", "b/fast", "b/a*",
           "b/p", "b/c", "ceiling");
    for (size_t i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++) {
        const struct scheme *s = &schemes[i];
        int eddsa = strcmp(s->name, "ed25519") == 0;
        double *x = cnt[i];
        /* the file names tell the workers apart: b-init, d-init and a-stub need one */
        static const char *const suffix[10] = {"",      "",      "",      "", "",
                                               "-init", "-init", "-stub", "", ""};
        CONT c[10];
        double fast;

        sign_worker(&c[0], "a", s, "raw");
        sign_worker(&c[1], "a*", s, "raw");
        sign_worker(&c[2], "b", s, "prov");
        sign_worker(&c[3], "c", s, "engine");
        sign_worker(&c[4], "d", s, "soft");
        sign_worker(&c[5], "b-init", s, "prov");
        sign_worker(&c[6], "d-init", s, "soft");
        sign_worker(&c[7], "a-stub", s, "raw");
        for (int k = 5; k < 7; k++)
            w_args(&c[k].w, "--init-only", NULL);
        w_args(&c[7].w, "--conf", in_dir("stub.cnf"), NULL);
        sign_worker(&c[8], "as", s, "rawcopy");
        if (opt.pp_conf != NULL)
            sign_worker(&c[9], "p", s, "pp");
        for (int k = 0; k < 10; k++) {
            snprintf(c[k].w.name + strlen(c[k].w.name),
                     sizeof(c[k].w.name) - strlen(c[k].w.name), "%s-count", suffix[k]);
            /* libp11 has no EdDSA; the stub only matters where the token decodes keys */
            if (!(k == 3 && eddsa) && !(k == 7 && !eddsa) &&
                !(k == 9 && opt.pp_conf == NULL))
                x[k] = count_one(&c[k], nsign[i]);
        }
        fast = x[8] > 0 && x[8] < x[0] ? x[8] : x[0];
        printf(fmt, s->title, kinstr(x[0]), kinstr(x[8]), kinstr(x[1]), kinstr(x[2]),
               kinstr(x[9]), kinstr(x[3]), kinstr(x[4]), ratio(x[0], x[2], 0),
               ratio(fast, x[2], 0), ratio(x[1], x[2], 0),
               x[9] > 0 ? ratio(x[9], x[2], 0) : "-",
               x[3] > 0 ? ratio(x[3], x[2], 0) : "-",
               x[0] > 0 && x[6] > 0 ? ratio(x[0], x[0] + x[6], 0) : "n/a");
    }
    printf(
        "\n   Where b's extra instructions (b - a) go. RSA is left out: its signatures' "
        "counts\n"
        "   vary by tens of thousands from run to run (blinding), more than these "
        "parts.\n"
        "   loaded     a* - a: the token's own C_Sign, slower with p11mtls in the "
        "process\n"
        "              (SoftHSM2 decodes its Ed25519 key with OpenSSL at every C_Sign)\n"
        "   stub       the same with a provider that only declares an Ed25519 key\n"
        "              manager (stubprov.c): what any provider of Ed25519 keys costs\n"
        "   libcrypto  the init counted for the in-memory key: any provider key pays it\n"
        "   p11m init  the init counted for b's key, minus libcrypto's\n"
        "   signing    b - a* - b's init: EVP_DigestSign beyond the token's C_Sign\n"
        "              (hashing the message, DER for ECDSA, p11mtls's own code)\n\n");
    printf(fmt2, "scheme", "b - a", "loaded", "stub", "libcrypto", "p11m init",
           "signing");
    for (size_t i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++) {
        const double *x = cnt[i];

        if (strncmp(schemes[i].name, "rsa", 3) == 0 || x[0] <= 0 || x[1] <= 0 ||
            x[2] <= 0 || x[5] <= 0 || x[6] <= 0)
            continue;
        printf(fmt2, schemes[i].title, kinstr_signed(x[2] - x[0]),
               kinstr_signed(x[1] - x[0]), x[7] > 0 ? kinstr_signed(x[7] - x[0]) : "-",
               kinstr_signed(x[6]), kinstr_signed(x[5] - x[6]),
               kinstr_signed(x[2] - x[1] - x[5]));
    }
    printf("\n   TLS handshakes (section 2's contenders; instructions of client and "
           "server together)\n\n");
    printf("%-4s %-8s %-6s %9s %9s %9s %9s  %-7s %-7s %s\n", "TLS", "client", "server",
           "b", "p", "c", "d", "b/p", "b/c", "b/d");
    for (size_t i = 0; i < N_TLS_ROWS; i++) {
        const struct tls_row *r = &tls_rows[i];
        double x[4] = {0}, y[4] = {0};
        CONT c[4];
        int n = tls_row_workers(c, r, "-count"), ip = opt.pp_conf != NULL ? 1 : -1;

        for (int j = 0; j < n; j++)
            x[j] = count_one(&c[j], nhs);
        /* b, p, c, d whether p ran or not */
        y[0] = x[0];
        y[1] = ip >= 0 ? x[1] : 0;
        y[2] = x[ip >= 0 ? 2 : 1];
        y[3] = x[ip >= 0 ? 3 : 2];
        printf("%-4s %-8s %-6s %9s %9s %9s %9s  %-7s %-7s %s\n", tls_versions[r->v],
               tls_keys[r->k].title, r->shared ? "shared" : "own", kinstr(y[0]),
               kinstr(y[1]), kinstr(y[2]), kinstr(y[3]),
               y[1] > 0 ? ratio(y[1], y[0], 0) : "-", ratio(y[2], y[0], 0),
               ratio(y[3], y[0], 0));
    }
    bench_count_shim();
}

/* The shim's table counted, with its GnuTLS rows (part count-shim alone). */
static void bench_count_shim(void)
{
    const int nhs = 40;

    printf("\n   The shim's contenders (section 3)\n");
    printf("\n%-10s %-9s %8s %8s %8s %8s  %-12s %s\n", "TLS", "client", "none", "nomatch",
           "shim", "native", "nomatch/none", "shim/native");
    for (int row = 0; row < 8; row++) {
        {
            int v = (row / 2) % 2, k = row % 2, gnutls = row >= 4;
            const char *ver = tls_versions[v], *label = tls_keys[k].label;
            char title[32];
            double x[4] = {0};
            CONT c[4];

            snprintf(title, sizeof(title), "%s%s", gnutls ? "GnuTLS " : "", ver);
            if (gnutls)
                shim_gnutls_workers(c, ver, label);
            else
                shim_workers(c, ver, label);
            for (int j = 0; j < 4; j++) {
                snprintf(c[j].w.name + strlen(c[j].w.name),
                         sizeof(c[j].w.name) - strlen(c[j].w.name), "-count");
                x[j] = count_one(&c[j], nhs);
            }
            printf("%-10s %-9s %8s %8s %8s %8s  %-12s %s\n", title, tls_keys[k].title,
                   kinstr(x[0]), kinstr(x[1]), kinstr(x[2]), kinstr(x[3]),
                   ratio(x[0], x[1], 0), ratio(x[3], x[2], 0));
        }
    }
}

/* ---- main ---- */

static void usage(void)
{
    fputs("usage: p11mtls-bench --dir DIR --worker PATH --preload PATH --provider PATH\n"
          "                     --module PATH [--engine SO] [--quick] [--rounds N]\n"
          "                     [--slice MS]\n"
          "                     [--only sign,tls,shim,startup,mem,count,count-shim]\n"
          "                     [--pp-conf CNF] [--tpm]\n"
          "Normally run through tests/bench/run, which prepares DIR.\n",
          stderr);
    exit(2);
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"dir", required_argument, NULL, 'd'},
        {"worker", required_argument, NULL, 'w'},
        {"preload", required_argument, NULL, 'p'},
        {"provider", required_argument, NULL, 'P'},
        {"module", required_argument, NULL, 'm'},
        {"engine", required_argument, NULL, 'e'},
        {"quick", no_argument, NULL, 'q'},
        {"rounds", required_argument, NULL, 'r'},
        {"slice", required_argument, NULL, 's'},
        {"only", required_argument, NULL, 'o'},
        {"pp-conf", required_argument, NULL, 'x'},
        {"tpm", no_argument, NULL, 't'},
        {NULL, 0, NULL, 0},
    };
    double t0 = now_ns();
    int ch;

    opt.engine = BENCH_ENGINE_SO;
    opt.rounds = 0;
    while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (ch) {
        case 'd':
            opt.dir = optarg;
            break;
        case 'w':
            opt.worker = optarg;
            break;
        case 'p':
            opt.preload = optarg;
            break;
        case 'P':
            opt.provider = optarg;
            break;
        case 'm':
            opt.module = optarg;
            break;
        case 'e':
            opt.engine = optarg;
            break;
        case 'q':
            opt.quick = 1;
            break;
        case 'r':
            opt.rounds = atoi(optarg);
            break;
        case 's':
            opt.slice_ms = atof(optarg);
            break;
        case 'o':
            opt.only = optarg;
            break;
        case 'x':
            opt.pp_conf = optarg;
            break;
        case 't':
            opt.tpm = 1;
            break;
        default:
            usage();
        }
    }
    if (optind != argc || !opt.dir || !opt.worker || !opt.preload || !opt.provider ||
        !opt.module)
        usage();
    if (opt.rounds <= 0)
        opt.rounds = opt.quick ? 4 : 8;
    if (opt.slice_ms <= 0) /* a TPM signs a few hundred times a second at most */
        opt.slice_ms = opt.tpm ? 500 : opt.quick ? 100 : 200;
    opt.mem_first = opt.quick ? 500 : 1000;
    opt.mem_second = opt.quick ? 2000 : 10000;
    opt.spawn_runs = opt.quick ? 10 : 20;
    ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    snprintf(env_preload, sizeof(env_preload), "LD_PRELOAD=%s", opt.preload);
    snprintf(env_provider, sizeof(env_provider), "P11MTLS_PROVIDER=%s", opt.provider);
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IOLBF, 0);

    printf("p11mtls benchmarks: %ld CPUs, %s, PKCS#11 module %s, %s token\n",
           sysconf(_SC_NPROCESSORS_ONLN), OpenSSL_version(OPENSSL_VERSION), opt.module,
           opt.tpm ? "TPM 2.0 (swtpm)" : "SoftHSM2");
    printf("method: each contender in its own process, started again halfway; slices of "
           "%.0f ms\ninterleaved, %d rounds, best slice kept. Absolute figures vary by "
           "machine: compare the ratios.\n",
           opt.slice_ms, opt.rounds);
    if (opt.tpm) { /* the other sections need SoftHSM2's keys (Ed25519, libp11's copy) */
        bench_tpm();
    } else {
        if (want("sign"))
            bench_sign();
        if (want("tls"))
            bench_tls();
        if (want("shim"))
            bench_shim();
        if (want("startup"))
            bench_startup();
        if (want("mem"))
            bench_mem();
        if (opt.only != NULL && want("count"))
            bench_count();
        else if (opt.only != NULL && want("count-shim"))
            bench_count_shim();
    }
    printf("\ntargets: %d met, %d missed; %d contender(s) failed to run; %d of %d slices "
           "disturbed by other processes; %.0f s (%.0f s waiting for a quiet machine)\n",
           targets_met, targets_missed, failures, slices_disturbed, slices_total,
           (now_ns() - t0) / 1e9, waited_ns / 1e9);
    return failures ? 1 : 0;
}
