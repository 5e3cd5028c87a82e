/*
 * status.c - "p11mtls status": per identity on a token, the certificate the choosing rule
 * presents (subject, issuer, notAfter, days left) and the outcome of the last enrol or
 * renewal attempt; as text, JSON, or a Prometheus text file for node_exporter's textfile
 * collector. Nothing here needs a login: certificates are public objects.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>

#include "enroll.h"
#include "idstore.h"

#define CMD "status"

enum { ST_OK = 0, ST_EXPIRING = 1, ST_EXPIRED = 2 };

struct status_opts {
    const char *token, *identity, *prometheus, *state_dir, *module;
    long warn_days;
    int json;
};

struct status_row {
    char name[200];
    char subject[300], issuer[300], not_after[32];
    long days_left;
    time_t not_after_t;
    int state, have_cert;
    char last[700];
};

static const char *const state_names[] = {"ok", "expiring", "expired"};

static void status_usage(FILE *out)
{
    fputs(
        "Usage: p11mtls status --token URI [--identity NAME] [--json | --prometheus "
        "FILE]\n"
        "                      [--warn-days N] [--state-dir DIR] [--module PATH]\n"
        "\n"
        "Per identity (the labels of certificates paired with a key; or NAME): the\n"
        "certificate presented (the currently valid one with the latest notAfter),\n"
        "its subject, issuer, notAfter and days left, and the last enrol/renew\n"
        "attempt and its outcome.\n"
        "\n"
        "  --json             one JSON document on standard output\n"
        "  --prometheus FILE  write the metrics for node_exporter's textfile collector\n"
        "                     (replaced atomically), as well as the text report\n"
        "  --warn-days N      'expiring' with N days or fewer left (default 14)\n"
        "  --state-dir DIR    where enroll/renew record their last attempt\n"
        "                     (default " ENROLL_STATE_DIR ")\n"
        "\n"
        "Exit status: 0 every identity ok, 1 one is expiring, 2 one is expired or\n"
        "missing (no certificate), 3 the token could not be read.\n",
        out);
}

/* ---- the state file ---- */

static void state_path(const char *dir, const char *identity, char *out, size_t len)
{
    snprintf(out, len, "%s/%s.last", dir != NULL ? dir : ENROLL_STATE_DIR, identity);
}

int enroll_state_write(const char *dir, const char *identity, const char *text)
{
    char path[4096], tmp[4200];
    FILE *f;
    int ok;

    state_path(dir, identity, path, sizeof(path));
    snprintf(tmp, sizeof(tmp), "%s.%ld.tmp", path, (long) getpid());
    if ((f = fopen(tmp, "w")) == NULL)
        return 0;
    ok = fprintf(f, "time=%lld\n%s", (long long) time(NULL), text) > 0;
    ok = fclose(f) == 0 && ok && rename(tmp, path) == 0;
    if (!ok)
        unlink(tmp);
    return ok;
}

void enroll_state_read(const char *dir, const char *identity, char *buf, size_t len)
{
    char path[4096];
    FILE *f;
    size_t n = 0;

    buf[0] = '\0';
    state_path(dir, identity, path, sizeof(path));
    if ((f = fopen(path, "r")) == NULL)
        return;
    n = fread(buf, 1, len - 1, f);
    buf[n] = '\0';
    fclose(f);
}

const char *enroll_state_get(const char *text, const char *key, char *out, size_t len)
{
    size_t kl = strlen(key);
    const char *p = text;

    out[0] = '\0';
    while (p != NULL && *p != '\0') {
        if (strncmp(p, key, kl) == 0 && p[kl] == '=') {
            size_t n = strcspn(p + kl + 1, "\n");

            snprintf(out, len, "%.*s", (int) n, p + kl + 1);
            break;
        }
        p = strchr(p, '\n');
        p = p != NULL ? p + 1 : NULL;
    }
    return out;
}

/* ---- gathering ---- */

struct labels {
    char **v;
    size_t n;
};

static int status_take_label(P11M_OBJ *obj, void *arg)
{
    struct labels *l = arg;
    const char *label = p11m_obj_label(obj);
    size_t idlen, sl = strlen(label), nl = strlen(IDS_NEW);
    char **v;

    p11m_obj_id(obj, &idlen);
    if (idlen > 0 && *label != '\0' &&
        !(sl > nl && strcmp(label + sl - nl, IDS_NEW) == 0)) {
        for (size_t i = 0; i < l->n; i++)
            if (strcmp(l->v[i], label) == 0)
                goto out;
        if ((v = realloc(l->v, (l->n + 1) * sizeof(*v))) != NULL) {
            l->v = v;
            if ((l->v[l->n] = strdup(label)) != NULL)
                l->n++;
        }
    }
out:
    p11m_obj_free(obj);
    return 1;
}

static void status_fill(const struct status_opts *o, const struct ids *ids,
                        struct status_row *r)
{
    X509 *x = ids_cert(ids);
    int days = 0, secs = 0;

    snprintf(r->name, sizeof(r->name), "%s", ids->label);
    enroll_state_read(o->state_dir, ids->label, r->last, sizeof(r->last));
    r->have_cert = x != NULL;
    if (x == NULL) {
        r->state = ST_EXPIRED;
        return;
    }
    tool_name_str(X509_get_subject_name(x), r->subject, sizeof(r->subject));
    tool_name_str(X509_get_issuer_name(x), r->issuer, sizeof(r->issuer));
    tool_time_str(X509_get0_notAfter(x), r->not_after, sizeof(r->not_after));
    r->days_left = tool_days_left(X509_get0_notAfter(x));
    if (ASN1_TIME_diff(&days, &secs, NULL, X509_get0_notAfter(x)))
        r->not_after_t = time(NULL) + (time_t) days * 86400 + secs;
    if (X509_cmp_time(X509_get0_notAfter(x), NULL) <= 0 ||
        X509_cmp_time(X509_get0_notBefore(x), NULL) >= 0)
        r->state = ST_EXPIRED;
    else
        r->state = r->days_left <= o->warn_days ? ST_EXPIRING : ST_OK;
}

/* ---- output ---- */

static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char) *s;

        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

static void status_text(const struct status_row *r)
{
    char v[300];

    if (!r->have_cert)
        printf("%s: no certificate on the token [expired/missing]\n", r->name);
    else
        printf("%s: %s\n  issuer %s\n  not after %s (%ld days left) [%s]\n", r->name,
               r->subject, r->issuer, r->not_after, r->days_left, state_names[r->state]);
    if (r->last[0] != '\0') {
        time_t t = (time_t) atoll(enroll_state_get(r->last, "time", v, sizeof(v)));
        char when[32], a[32], res[32];
        struct tm tm;

        gmtime_r(&t, &tm);
        strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
        enroll_state_get(r->last, "action", a, sizeof(a));
        enroll_state_get(r->last, "result", res, sizeof(res));
        printf("  last attempt %s: %s %s: %s\n", when, a, res,
               enroll_state_get(r->last, "message", v, sizeof(v)));
    } else {
        printf("  last attempt: none recorded\n");
    }
}

static void status_json(FILE *f, const struct status_row *rows, size_t n)
{
    static const char *const keys[] = {"time", "action", "result", "message"};
    char v[600];

    fputs("{\"identities\": [", f);
    for (size_t i = 0; i < n; i++) {
        const struct status_row *r = &rows[i];

        fprintf(f, "%s\n  {\"name\": ", i > 0 ? "," : "");
        json_str(f, r->name);
        fprintf(f, ", \"state\": \"%s\"",
                r->have_cert ? state_names[r->state] : "missing");
        if (r->have_cert) {
            fputs(", \"subject\": ", f);
            json_str(f, r->subject);
            fputs(", \"issuer\": ", f);
            json_str(f, r->issuer);
            fprintf(f, ", \"not_after\": \"%s\", \"days_left\": %ld", r->not_after,
                    r->days_left);
        }
        fputs(", \"last_attempt\": ", f);
        if (r->last[0] == '\0') {
            fputs("null", f);
        } else {
            for (size_t k = 0; k < 4; k++) {
                fprintf(f, "%s\"%s\": ", k == 0 ? "{" : ", ", keys[k]);
                enroll_state_get(r->last, keys[k], v, sizeof(v));
                if (k == 0)
                    fprintf(f, "%lld", atoll(v));
                else
                    json_str(f, v);
            }
            fputc('}', f);
        }
        fputc('}', f);
    }
    fputs("\n]}\n", f);
}

static void prom_metric(FILE *f, const char *name, const char *help)
{
    fprintf(f, "# HELP %s %s\n# TYPE %s gauge\n", name, help, name);
}

/* Label values: backslash, quote and newline escaped as the text format wants. */
static void prom_label(FILE *f, const char *s)
{
    for (; *s != '\0'; s++)
        if (*s == '\\' || *s == '"')
            fprintf(f, "\\%c", *s);
        else if (*s == '\n')
            fputs("\\n", f);
        else
            fputc(*s, f);
}

static void prom_rows(FILE *f, const struct status_row *rows, size_t n, int which)
{
    char v[64];

    for (size_t i = 0; i < n; i++) {
        const struct status_row *r = &rows[i];
        const char *res;

        if ((which <= 1 && !r->have_cert) || (which >= 3 && r->last[0] == '\0'))
            continue;
        fputs(which == 0   ? "p11mtls_cert_not_after_seconds{identity=\""
              : which == 1 ? "p11mtls_cert_days_left{identity=\""
              : which == 2 ? "p11mtls_cert_status{identity=\""
              : which == 3 ? "p11mtls_renew_last_attempt_timestamp_seconds{identity=\""
                           : "p11mtls_renew_last_success{identity=\"",
              f);
        prom_label(f, r->name);
        fputs("\"} ", f);
        if (which == 0)
            fprintf(f, "%lld\n", (long long) r->not_after_t);
        else if (which == 1)
            fprintf(f, "%ld\n", r->days_left);
        else if (which == 2)
            fprintf(f, "%d\n", r->have_cert ? r->state : ST_EXPIRED);
        else if (which == 3)
            fprintf(f, "%lld\n", atoll(enroll_state_get(r->last, "time", v, sizeof(v))));
        else
            fprintf(f, "%d\n",
                    strcmp((res = enroll_state_get(r->last, "result", v, sizeof(v))),
                           "ok") == 0);
    }
}

static int status_prometheus(const char *path, const struct status_row *rows, size_t n)
{
    static const char *const names[][2] = {
        {"p11mtls_cert_not_after_seconds",
         "notAfter of the presented certificate (Unix time)"},
        {"p11mtls_cert_days_left", "Days until the presented certificate expires"},
        {"p11mtls_cert_status", "0 ok, 1 expiring, 2 expired or missing"},
        {"p11mtls_renew_last_attempt_timestamp_seconds",
         "Time of the last enrol/renew attempt"},
        {"p11mtls_renew_last_success", "1 if the last enrol/renew attempt succeeded"},
    };
    char tmp[4200];
    FILE *f;
    int ok;

    /* node_exporter must never read a half-written file: write aside, then rename. */
    snprintf(tmp, sizeof(tmp), "%s.%ld.tmp", path, (long) getpid());
    if ((f = fopen(tmp, "w")) == NULL) {
        tool_err("--prometheus: %s: %s", tmp, strerror(errno));
        return 0;
    }
    for (int w = 0; w < 5; w++) {
        prom_metric(f, names[w][0], names[w][1]);
        prom_rows(f, rows, n, w);
    }
    ok = fclose(f) == 0 && rename(tmp, path) == 0;
    if (!ok) {
        tool_err("--prometheus: %s: %s", path, strerror(errno));
        unlink(tmp);
    }
    return ok;
}

/* ---- the command ---- */

static int status_run(const struct status_opts *o)
{
    P11KitUri *tu = tool_uri(CMD, "--token", o->token);
    struct labels l = {NULL, 0};
    struct status_row *rows = NULL;
    P11M_FIND_ARGS args = {tu, CKO_CERTIFICATE, NULL, NULL, 0};
    P11M_MODULE *mod;
    int rc = 3, worst = ST_OK;

    if (tu == NULL)
        return TOOL_EXIT_USAGE;
    if ((mod = tool_module(tu, o->module)) == NULL)
        goto done;
    if (o->identity != NULL) {
        if ((l.v = malloc(sizeof(*l.v))) == NULL ||
            (l.v[0] = strdup(o->identity)) == NULL)
            goto done;
        l.n = 1;
    } else if (p11m_obj_find(mod, &args, status_take_label, &l, NULL) != CKR_OK) {
        goto done;
    }
    if ((rows = calloc(l.n + 1, sizeof(*rows))) == NULL)
        goto done;
    for (size_t i = 0; i < l.n; i++) {
        struct ids ids;

        if (!ids_load(&ids, tu, o->module, l.v[i])) {
            ids_free(&ids);
            goto done;
        }
        status_fill(o, &ids, &rows[i]);
        ids_free(&ids);
        if (rows[i].state > worst)
            worst = rows[i].state;
    }
    if (l.n == 0)
        tool_warn("no identity (certificate paired with a key) on the token");
    if (o->json)
        status_json(stdout, rows, l.n);
    else
        for (size_t i = 0; i < l.n; i++)
            status_text(&rows[i]);
    rc = worst;
    if (o->prometheus != NULL && !status_prometheus(o->prometheus, rows, l.n))
        rc = 3;
done:
    for (size_t i = 0; i < l.n; i++)
        free(l.v[i]);
    free(l.v);
    free(rows);
    p11_kit_uri_free(tu);
    return rc;
}

/* tool_getopt: one option of the command into its options. */
static int status_opt(int c, char *arg, void *vo)
{
    struct status_opts *o = vo;

    switch (c) {
    case 't':
        o->token = arg;
        break;
    case 'i':
        o->identity = arg;
        break;
    case 'j':
        o->json = 1;
        break;
    case 'P':
        o->prometheus = arg;
        break;
    case 'w':
        if (!tool_parse_long(CMD, "--warn-days", arg, 0, 100000, &o->warn_days))
            return TOOL_EXIT_USAGE;
        break;
    case 'd':
        o->state_dir = arg;
        break;
    case 'm':
        o->module = arg;
        break;
    }
    return 0;
}

int status_main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"token", required_argument, NULL, 't'},
        {"identity", required_argument, NULL, 'i'},
        {"json", no_argument, NULL, 'j'},
        {"prometheus", required_argument, NULL, 'P'},
        {"warn-days", required_argument, NULL, 'w'},
        {"state-dir", required_argument, NULL, 'd'},
        {"module", required_argument, NULL, 'm'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    static const TOOL_CMD cmd = {CMD, "h", longopts, status_usage, 0};
    struct status_opts o = {NULL, NULL, NULL, NULL, NULL, 14, 0};
    int rc;

    if ((rc = tool_getopt(&cmd, argc, argv, status_opt, &o)) != TOOL_PARSED)
        return rc;
    if (o.token == NULL)
        return tool_usage(CMD, "--token is required");
    return status_run(&o);
}
