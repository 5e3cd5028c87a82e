/*
 * worker.c - p11mtls-bench-worker: one benchmark contender in its own process.
 *
 * The driver (driver.c) starts one worker per contender, so that each has its own
 * PKCS#11 module state, OpenSSL configuration and LD_PRELOAD, and then times them in
 * turn. The worker sets its contender up, prints "ready", and answers commands read
 * from stdin, one per line:
 *
 *   run MS THREADS   repeat the operation in THREADS threads for MS milliseconds;
 *                    answers "ok OPS NANOSECONDS CPU_NANOSECONDS" (the process's CPU
 *                    time in the slice: less than THREADS x NANOSECONDS when something
 *                    else had the CPUs)
 *   n COUNT          exactly COUNT operations in one thread; "ok COUNT NANOSECONDS"
 *                    (under callgrind, the loop's counts are dumped as part 1)
 *   rss              resident set size; "ok KILOBYTES"
 *   quit             (or end of input) exit
 *
 * A failed operation prints the reason on stderr and ends the worker with status 1.
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>

#include <openssl/store.h>

#include "bench.h"

#ifdef HAVE_CALLGRIND_H
#include <valgrind/callgrind.h>
#else
#define CALLGRIND_ZERO_STATS
#define CALLGRIND_DUMP_STATS_AT(what)
#endif

const unsigned char bench_msg[BENCH_MSG_LEN] = {
    /* 64 spaces */
    ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ',
    ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ',
    ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ',
    ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ',
    /* "TLS 1.3, client CertificateVerify", a zero */
    'T', 'L', 'S', ' ', '1', '.', '3', ',', ' ', 'c', 'l', 'i', 'e', 'n', 't', ' ', 'C',
    'e', 'r', 't', 'i', 'f', 'i', 'c', 'a', 't', 'e', 'V', 'e', 'r', 'i', 'f', 'y', 0,
    /* a transcript hash (any 32 bytes) */
    0x3a, 0x91, 0x5c, 0x07, 0xee, 0x12, 0x48, 0xb6, 0x2d, 0x70, 0xc4, 0x19, 0x85, 0xfa,
    0x63, 0x0e, 0xd1, 0x27, 0x9b, 0x44, 0x5f, 0xa8, 0x36, 0xc2, 0x0b, 0x7d, 0xe9, 0x51,
    0x16, 0x8c, 0xf3, 0x60};

void bench_ossl_error(const char *msg)
{
    fprintf(stderr, "p11mtls-bench-worker: %s\n", msg);
    ERR_print_errors_fp(stderr);
}

EVP_PKEY *bench_store_key(const char *uri)
{
    OSSL_STORE_CTX *st = OSSL_STORE_open(uri, NULL, NULL, NULL, NULL);
    EVP_PKEY *key = NULL;

    if (st == NULL)
        return NULL;
    OSSL_STORE_expect(st, OSSL_STORE_INFO_PKEY);
    while (key == NULL && !OSSL_STORE_eof(st)) {
        OSSL_STORE_INFO *info = OSSL_STORE_load(st);

        if (info == NULL)
            break;
        key = OSSL_STORE_INFO_get1_PKEY(info);
        OSSL_STORE_INFO_free(info);
    }
    OSSL_STORE_close(st);
    return key;
}

int bench_read_line(const char *path, char *buf, size_t len)
{
    FILE *f = fopen(path, "r");
    int ok;

    if (f == NULL) {
        fprintf(stderr, "p11mtls-bench-worker: %s: %s\n", path, strerror(errno));
        return 0;
    }
    ok = fgets(buf, (int) len, f) != NULL;
    fclose(f);
    if (ok)
        buf[strcspn(buf, "\r\n")] = '\0';
    return ok && buf[0] != '\0';
}

static double clock_ns(clockid_t clk)
{
    struct timespec ts;

    clock_gettime(clk, &ts);
    return (double) ts.tv_sec * 1e9 + (double) ts.tv_nsec;
}

static double now_ns(void)
{
    return clock_ns(CLOCK_MONOTONIC);
}

/* ---- timed slices ---- */

static BENCH_CONTENDER contender;
static void *tstate[BENCH_MAX_THREADS];

struct slice_thread {
    pthread_t tid;
    int idx;
    pthread_barrier_t *start;
    double deadline;
    unsigned long ops;
    double end;
    int failed;
};

static void *slice_run(void *varg)
{
    struct slice_thread *t = varg;
    void *st = tstate[t->idx];

    pthread_barrier_wait(t->start);
    do {
        if (!contender.op(contender.arg, st)) {
            t->failed = 1;
            break;
        }
        t->ops++;
        t->end = now_ns();
    } while (t->end < t->deadline);
    return NULL;
}

/* Per-thread state is made before the clock starts, once per thread index. */
static int slice_states(int threads)
{
    for (int i = 0; i < threads; i++) {
        if (tstate[i] == NULL &&
            (tstate[i] = contender.thread_new(contender.arg, i)) == NULL)
            return 0;
    }
    return 1;
}

static int slice(double ms, int threads, unsigned long *ops, double *ns, double *cpu)
{
    struct slice_thread t[BENCH_MAX_THREADS];
    pthread_barrier_t start;
    double t0, cpu0, end = 0;
    int failed = 0;

    if (!slice_states(threads))
        return 0;
    pthread_barrier_init(&start, NULL, (unsigned) threads + 1);
    memset(t, 0, sizeof(t));
    for (int i = 0; i < threads; i++) {
        t[i].idx = i;
        t[i].start = &start;
        if (pthread_create(&t[i].tid, NULL, slice_run, &t[i]) != 0) {
            fprintf(stderr, "p11mtls-bench-worker: pthread_create failed\n");
            exit(1);
        }
    }
    cpu0 = clock_ns(CLOCK_PROCESS_CPUTIME_ID);
    t0 = now_ns();
    for (int i = 0; i < threads; i++)
        t[i].deadline = t0 + ms * 1e6;
    pthread_barrier_wait(&start);
    *ops = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(t[i].tid, NULL);
        *ops += t[i].ops;
        failed |= t[i].failed;
        if (t[i].end > end)
            end = t[i].end;
    }
    pthread_barrier_destroy(&start);
    *ns = end - t0;
    *cpu = clock_ns(CLOCK_PROCESS_CPUTIME_ID) - cpu0;
    return !failed;
}

static int count_run(unsigned long n, double *ns)
{
    double t0;

    if (!slice_states(1))
        return 0;
    /* Under callgrind, the counts of exactly this loop go to <out-file>.1. */
    CALLGRIND_ZERO_STATS;
    t0 = now_ns();
    for (unsigned long i = 0; i < n; i++)
        if (!contender.op(contender.arg, tstate[0]))
            return 0;
    *ns = now_ns() - t0;
    CALLGRIND_DUMP_STATS_AT("count");
    return 1;
}

static long rss_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;

    if (f == NULL)
        return -1;
    while (fgets(line, sizeof(line), f) != NULL)
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
            break;
    fclose(f);
    return kb;
}

/* ---- main ---- */

static void usage(void)
{
    fputs("usage: p11mtls-bench-worker sign --via raw|rawcopy|rawmech|prov|engine|soft\n"
          "           --scheme S\n"
          "           [--module SO --pin-file F --uri URI --conf CNF --key-file PEM\n"
          "            --engine SO --init-only]\n"
          "       p11mtls-bench-worker tls --via file|uri|engine|none --tls 1.2|1.3\n"
          "           --dir DIR [--cert PEM --key-file PEM --uri URI --conf CNF\n"
          "            --module SO --pin-file F --engine SO --server-shared\n"
          "            --verify require|request --expect cert|nocert\n"
          "            --plus-raw-sign --scheme S]\n"
          "schemes: rsa-pkcs1 rsa-pss ecdsa ed25519. Commands on stdin: run MS THREADS,\n"
          "n COUNT, rss, quit (see worker.c).\n",
          stderr);
    exit(2);
}

static void parse(int argc, char **argv, BENCH_OPTS *o)
{
    static const struct option longopts[] = {
        {"via", required_argument, NULL, 'v'},
        {"scheme", required_argument, NULL, 's'},
        {"module", required_argument, NULL, 'm'},
        {"pin-file", required_argument, NULL, 'p'},
        {"uri", required_argument, NULL, 'u'},
        {"conf", required_argument, NULL, 'c'},
        {"key-file", required_argument, NULL, 'k'},
        {"engine", required_argument, NULL, 'e'},
        {"tls", required_argument, NULL, 't'},
        {"dir", required_argument, NULL, 'd'},
        {"cert", required_argument, NULL, 'C'},
        {"verify", required_argument, NULL, 'V'},
        {"expect", required_argument, NULL, 'E'},
        {"init-only", no_argument, NULL, 'I'},
        {"server-shared", no_argument, NULL, 'S'},
        {"plus-raw-sign", no_argument, NULL, 'P'},
        {NULL, 0, NULL, 0},
    };
    int ch;

    if (argc < 2)
        usage();
    memset(o, 0, sizeof(*o));
    o->kind = argv[1];
    optind = 2;
    while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (ch) {
        case 'v':
            o->via = optarg;
            break;
        case 's':
            o->scheme = optarg;
            break;
        case 'm':
            o->module = optarg;
            break;
        case 'p':
            o->pin_file = optarg;
            break;
        case 'u':
            o->uri = optarg;
            break;
        case 'c':
            o->conf = optarg;
            break;
        case 'k':
            o->key_file = optarg;
            break;
        case 'e':
            o->engine = optarg;
            break;
        case 't':
            o->tls = optarg;
            break;
        case 'd':
            o->dir = optarg;
            break;
        case 'C':
            o->cert = optarg;
            break;
        case 'V':
            o->verify = optarg;
            break;
        case 'E':
            o->expect = optarg;
            break;
        case 'I':
            o->init_only = 1;
            break;
        case 'S':
            o->server_shared = 1;
            break;
        case 'P':
            o->plus_raw_sign = 1;
            break;
        default:
            usage();
        }
    }
    if (optind != argc || o->via == NULL)
        usage();
}

/*
 * --plus-raw-sign: one operation is a handshake and then a raw C_Sign on the token key
 * (--module, --pin-file, --uri, --scheme). With an in-memory client key this measures,
 * in the same slices, what a handshake on the token key could reach at best.
 */
struct pair {
    BENCH_CONTENDER first, then;
};
struct pair_state {
    void *first, *then;
};

static void *pair_thread_new(void *arg, int idx)
{
    struct pair *p = arg;
    struct pair_state *s = calloc(1, sizeof(*s));

    if (s == NULL || (s->first = p->first.thread_new(p->first.arg, idx)) == NULL ||
        (s->then = p->then.thread_new(p->then.arg, idx)) == NULL) {
        free(s);
        return NULL;
    }
    return s;
}

static int pair_op(void *arg, void *state)
{
    struct pair *p = arg;
    struct pair_state *s = state;

    return p->first.op(p->first.arg, s->first) && p->then.op(p->then.arg, s->then);
}

static int pair_setup(const BENCH_OPTS *o, BENCH_CONTENDER *c)
{
    static struct pair p;
    BENCH_OPTS so = *o;

    so.via = "raw";
    if (!bench_tls_setup(o, &p.first) || !bench_sign_setup(&so, &p.then))
        return 0;
    c->thread_new = pair_thread_new;
    c->op = pair_op;
    c->arg = &p;
    return 1;
}

int main(int argc, char **argv)
{
    BENCH_OPTS o;
    char line[256];
    int ok;

    parse(argc, argv, &o);
    if (strcmp(o.kind, "sign") == 0)
        ok = strcmp(o.via, "engine") == 0 ? bench_engine_setup(&o, &contender)
                                          : bench_sign_setup(&o, &contender);
    else if (strcmp(o.kind, "tls") == 0)
        ok = o.plus_raw_sign ? pair_setup(&o, &contender)
                             : bench_tls_setup(&o, &contender);
    else if (strcmp(o.kind, "gtls") == 0)
        ok = bench_gtls_setup(&o, &contender);
    else
        usage();
    if (!ok)
        return 1;
    /* One operation before "ready": loads, logins and first-use lookups are not timed. */
    if (!slice_states(1) || !contender.op(contender.arg, tstate[0])) {
        fprintf(stderr, "p11mtls-bench-worker: the first operation failed\n");
        return 1;
    }
    printf("ready\n");
    fflush(stdout);

    while (fgets(line, sizeof(line), stdin) != NULL) {
        unsigned long ops, n;
        double ms, ns, cpu;
        int threads;

        if (sscanf(line, "run %lf %d", &ms, &threads) == 2 && threads >= 1 &&
            threads <= BENCH_MAX_THREADS && ms > 0) {
            if (!slice(ms, threads, &ops, &ns, &cpu))
                return 1;
            printf("ok %lu %.0f %.0f\n", ops, ns, cpu);
        } else if (sscanf(line, "n %lu", &n) == 1) {
            if (!count_run(n, &ns))
                return 1;
            printf("ok %lu %.0f\n", n, ns);
        } else if (strncmp(line, "rss", 3) == 0) {
            printf("ok %ld\n", rss_kb());
        } else if (strncmp(line, "quit", 4) == 0) {
            break;
        } else {
            fprintf(stderr, "p11mtls-bench-worker: unknown command: %s", line);
            return 2;
        }
        fflush(stdout);
    }
    return 0;
}
