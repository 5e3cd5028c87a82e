/*
 * gnutls_client.c - a long-running GnuTLS client for the shim's tests.
 *
 * Like a daemon that talks HTTPS now and then (one process, one set of certificate
 * credentials shared by all its sessions, no certificate code): it reads commands on
 * stdin and makes a new connection for each, so a test can change the token between
 * two handshakes of the same process.
 *
 * Usage: gnutls-client -c CAFILE [-p PRIORITY] [-C CERT -K KEY] HOST PORT
 * -C/-K: the program's own certificate, loaded into the shared credentials only after
 * the first session took them (gnutls_credentials_set), as programs that set up their
 * credentials lazily do.
 * Commands, one per line:
 *   get PATH          one connection: GET PATH
 *   threads N PATH    N connections at once, one per thread (N <= 16)
 *   fork PATH         one connection in a child process made with fork()
 * Each connection prints one line, in command (and thread) order: "ok BODY" with the
 * last line of the server's answer, or "error WHAT". Exit 0 at the end of stdin.
 */
#include <netdb.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gnutls/gnutls.h>

#define MAX_THREADS  16
#define LINE_MAX_LEN 512

static const char *host, *port, *priority, *late_cert, *late_key;
static gnutls_certificate_credentials_t cred;
static pthread_mutex_t late_lock = PTHREAD_MUTEX_INITIALIZER;
static bool late_loaded;

struct conn_job {
    const char *path;
    char result[LINE_MAX_LEN];
    pthread_t thread;
};

static int tcp_connect(void)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res, *ai;
    int fd = -1;

    if (getaddrinfo(host, port, &hints, &res) != 0)
        return -1;
    for (ai = res; ai != NULL && fd < 0; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
        if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    return fd;
}

/* The last non-empty line of an HTTP answer. */
static void last_line(char *buf, size_t len, char *out, size_t outlen)
{
    char *nl;

    while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
        len--;
    buf[len] = '\0';
    nl = strrchr(buf, '\n');
    snprintf(out, outlen, "ok %.400s", nl != NULL ? nl + 1 : buf);
}

static int exchange(gnutls_session_t s, const char *path, char *out, size_t outlen)
{
    char req[LINE_MAX_LEN], buf[8192];
    size_t got = 0;
    ssize_t n;
    int rc;

    do
        rc = gnutls_handshake(s);
    while (rc < 0 && !gnutls_error_is_fatal(rc));
    if (rc < 0)
        return snprintf(out, outlen, "error handshake: %s", gnutls_strerror(rc)), -1;
    snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\nHost: %s\r\n\r\n", path, host);
    if (gnutls_record_send(s, req, strlen(req)) < 0)
        return snprintf(out, outlen, "error send"), -1;
    while (got < sizeof(buf) - 1 &&
           (n = gnutls_record_recv(s, buf + got, sizeof(buf) - 1 - got)) != 0) {
        if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED)
            continue;
        if (n < 0 && got > 0 && n == GNUTLS_E_PREMATURE_TERMINATION)
            break;
        if (n < 0)
            return snprintf(out, outlen, "error read: %s", gnutls_strerror((int) n)), -1;
        got += (size_t) n;
    }
    last_line(buf, got, out, outlen);
    return 0;
}

/* The program's own certificate, after its credentials are in use. */
static int late_load(void)
{
    int rc = 0;

    if (late_cert == NULL)
        return 0;
    pthread_mutex_lock(&late_lock);
    if (!late_loaded)
        rc = gnutls_certificate_set_x509_key_file(cred, late_cert, late_key,
                                                  GNUTLS_X509_FMT_PEM);
    late_loaded = late_loaded || rc >= 0;
    pthread_mutex_unlock(&late_lock);
    return rc < 0 ? rc : 0;
}

static void one_connection(const char *path, char *out, size_t outlen)
{
    gnutls_session_t s;
    const char *err = NULL;
    int fd = tcp_connect();

    if (fd < 0) {
        snprintf(out, outlen, "error connect");
        return;
    }
    if (gnutls_init(&s, GNUTLS_CLIENT) != 0) {
        snprintf(out, outlen, "error gnutls_init");
        close(fd);
        return;
    }
    if ((priority != NULL ? gnutls_priority_set_direct(s, priority, &err)
                          : gnutls_set_default_priority(s)) != 0 ||
        gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, cred) != 0 ||
        late_load() != 0 ||
        gnutls_server_name_set(s, GNUTLS_NAME_DNS, host, strlen(host)) != 0) {
        snprintf(out, outlen, "error session setup%s%s", err ? ": " : "", err ? err : "");
    } else {
        gnutls_session_set_verify_cert(s, host, 0);
        gnutls_transport_set_int(s, fd);
        if (exchange(s, path, out, outlen) == 0)
            gnutls_bye(s, GNUTLS_SHUT_WR);
    }
    gnutls_deinit(s);
    close(fd);
}

static void *thread_main(void *arg)
{
    struct conn_job *j = arg;

    one_connection(j->path, j->result, sizeof(j->result));
    return NULL;
}

static void cmd_threads(int n, const char *path)
{
    struct conn_job jobs[MAX_THREADS];
    int started = 0;

    for (; started < n; started++) {
        jobs[started].path = path;
        snprintf(jobs[started].result, sizeof(jobs[started].result), "error thread");
        if (pthread_create(&jobs[started].thread, NULL, thread_main, &jobs[started]) != 0)
            break;
    }
    for (int i = 0; i < n; i++) {
        if (i < started)
            pthread_join(jobs[i].thread, NULL);
        printf("%s\n", jobs[i].result);
    }
}

static void cmd_fork(const char *path)
{
    char line[LINE_MAX_LEN];
    int status;
    pid_t pid;

    fflush(stdout);
    pid = fork();
    if (pid == 0) {
        one_connection(path, line, sizeof(line));
        printf("%s\n", line);
        fflush(stdout);
        _exit(0);
    }
    if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
        WEXITSTATUS(status) != 0)
        printf("error child %s\n", pid < 0 ? "not started" : "died");
}

static void run_command(char *line)
{
    char out[LINE_MAX_LEN], path[LINE_MAX_LEN];
    int n;

    line[strcspn(line, "\r\n")] = '\0';
    if (sscanf(line, "get %511s", path) == 1) {
        one_connection(path, out, sizeof(out));
        printf("%s\n", out);
    } else if (sscanf(line, "threads %d %511s", &n, path) == 2 && n > 0 &&
               n <= MAX_THREADS) {
        cmd_threads(n, path);
    } else if (sscanf(line, "fork %511s", path) == 1) {
        cmd_fork(path);
    } else if (line[0] != '\0') {
        printf("error bad command: %s\n", line);
    }
    fflush(stdout);
}

int main(int argc, char **argv)
{
    const char *cafile = NULL;
    char line[LINE_MAX_LEN];
    int opt;

    while ((opt = getopt(argc, argv, "c:p:C:K:")) != -1) {
        if (opt == 'c')
            cafile = optarg;
        else if (opt == 'p')
            priority = optarg;
        else if (opt == 'C')
            late_cert = optarg;
        else if (opt == 'K')
            late_key = optarg;
        else
            return 2;
    }
    if (cafile == NULL || argc - optind != 2 ||
        (late_cert == NULL) != (late_key == NULL)) {
        fprintf(stderr, "usage: gnutls-client -c CAFILE [-p PRIORITY] [-C CERT -K KEY] "
                        "HOST PORT\n");
        return 2;
    }
    host = argv[optind];
    port = argv[optind + 1];
    if (gnutls_global_init() != 0 ||
        gnutls_certificate_allocate_credentials(&cred) != 0 ||
        gnutls_certificate_set_x509_trust_file(cred, cafile, GNUTLS_X509_FMT_PEM) <= 0) {
        fprintf(stderr, "gnutls-client: cannot set up credentials with %s\n", cafile);
        return 1;
    }
    while (fgets(line, sizeof(line), stdin) != NULL)
        run_command(line);
    gnutls_certificate_free_credentials(cred);
    gnutls_global_deinit();
    return 0;
}
