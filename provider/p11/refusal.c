/*
 * refusal.c - PINs a token refused, remembered across processes. With the preload
 * library in every program, "one try per process" still lets N processes make N tries,
 * and a TPM (tpm2-pkcs11 never sets the PIN-low or final-try flags) locks itself after
 * its dictionary-attack threshold (3 on swtpm). So a refusal is written to a record in a
 * runtime directory only root (or, for other users, the user) can read, and no process
 * tries that PIN on that token again until the PIN changes or the record is reset.
 *
 * The directory: $P11MTLS_RUNTIME_DIR (honoured only when the program is not setuid),
 * else /run/p11mtls for root, else $XDG_RUNTIME_DIR/p11mtls. One file per token, named
 * by a hash of its identity (label, manufacturer, model, serial: TPM serials are all
 * zero), holding one line per refused PIN: time, salt, PBKDF2 of the PIN (never the PIN),
 * and the PIN source it came from. An flock on that file serialises C_Login across
 * processes, so concurrent processes do not each try the same wrong PIN.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "p11m_int.h"

#define REFUSAL_SALT  16
#define REFUSAL_HASH  32
#define REFUSAL_ITERS 20000

static int refusal_mkdir(const char *path)
{
    struct stat st;

    if (mkdir(path, 0700) != 0 && errno != EEXIST)
        return 0;
    /* Ours, and nobody else may write there: else the records are not to be trusted. */
    return lstat(path, &st) == 0 && S_ISDIR(st.st_mode) && st.st_uid == geteuid() &&
           (st.st_mode & (S_IWGRP | S_IWOTH)) == 0;
}

int p11m_refusal_dir(char *buf, size_t len)
{
    const char *dir = secure_getenv("P11MTLS_RUNTIME_DIR");
    const char *xdg;
    int n;

    if (dir != NULL && dir[0] == '/')
        n = snprintf(buf, len, "%s", dir);
    else if (geteuid() == 0)
        n = snprintf(buf, len, "/run/p11mtls");
    else if ((xdg = secure_getenv("XDG_RUNTIME_DIR")) != NULL && xdg[0] == '/')
        n = snprintf(buf, len, "%s/p11mtls", xdg);
    else
        return 0;
    return n > 0 && (size_t) n < len;
}

static void refusal_hex(const unsigned char *in, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        snprintf(out + 2 * i, 3, "%02x", in[i]);
}

/* The record's path for this token. */
int p11m_refusal_path(const CK_TOKEN_INFO *ti, char *buf, size_t len)
{
    unsigned char md[32];
    char hex[65], dir[4096];
    unsigned int mdlen = 0;
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    int ok = c != NULL && EVP_DigestInit_ex(c, EVP_sha256(), NULL) &&
             EVP_DigestUpdate(c, ti->label, sizeof(ti->label)) &&
             EVP_DigestUpdate(c, ti->manufacturerID, sizeof(ti->manufacturerID)) &&
             EVP_DigestUpdate(c, ti->model, sizeof(ti->model)) &&
             EVP_DigestUpdate(c, ti->serialNumber, sizeof(ti->serialNumber)) &&
             EVP_DigestFinal_ex(c, md, &mdlen) && mdlen == sizeof(md);

    EVP_MD_CTX_free(c);
    if (!ok || !p11m_refusal_dir(dir, sizeof(dir)))
        return 0;
    refusal_hex(md, 16, hex);
    ok = snprintf(buf, len, "%s/%s.refused", dir, hex);
    return ok > 0 && (size_t) ok < len;
}

static int refusal_pin_hash(const P11M_PIN *pin, const unsigned char *salt,
                            unsigned char *out)
{
    return PKCS5_PBKDF2_HMAC(pin->buf, (int) pin->len, salt, REFUSAL_SALT, REFUSAL_ITERS,
                             EVP_sha256(), REFUSAL_HASH, out) == 1;
}

static int refusal_unhex(const char *s, unsigned char *out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned v;

        if (sscanf(s + 2 * i, "%2x", &v) != 1)
            return 0;
        out[i] = (unsigned char) v;
    }
    return 1;
}

/* Whether a line of the record names this PIN; *when and source get its details. */
static int refusal_line_matches(const char *line, const P11M_PIN *pin, long long *when,
                                char *source, size_t srclen)
{
    char salt_hex[2 * REFUSAL_SALT + 1], hash_hex[2 * REFUSAL_HASH + 1];
    unsigned char salt[REFUSAL_SALT], want[REFUSAL_HASH], got[REFUSAL_HASH];
    int off = 0, same;

    if (sscanf(line, "%lld %32s %64s %n", when, salt_hex, hash_hex, &off) != 3 ||
        off == 0 || strlen(salt_hex) != sizeof(salt_hex) - 1 ||
        strlen(hash_hex) != sizeof(hash_hex) - 1 ||
        !refusal_unhex(salt_hex, salt, sizeof(salt)) ||
        !refusal_unhex(hash_hex, want, sizeof(want)) || !refusal_pin_hash(pin, salt, got))
        return 0;
    same = CRYPTO_memcmp(want, got, sizeof(got)) == 0;
    OPENSSL_cleanse(got, sizeof(got));
    snprintf(source, srclen, "%.*s", (int) strcspn(line + off, "\n"), line + off);
    return same;
}

int p11m_refusal_open(const CK_TOKEN_INFO *ti)
{
    char path[4200], dir[4096];
    int fd;

    if (!p11m_refusal_dir(dir, sizeof(dir)) || !refusal_mkdir(dir) ||
        !p11m_refusal_path(ti, path, sizeof(path))) {
        p11m_log(1, "no runtime directory for PIN refusal records: a refused PIN is "
                    "remembered by this process only");
        return -1;
    }
    fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        p11m_log(1, "PIN refusal record %s: %s", path, strerror(errno));
        return -1;
    }
    /* Serialises the check, C_Login and the record across processes. */
    while (flock(fd, LOCK_EX) != 0)
        if (errno != EINTR) {
            close(fd);
            return -1;
        }
    return fd;
}

void p11m_refusal_close(int fd)
{
    if (fd >= 0)
        close(fd); /* drops the lock */
}

int p11m_refusal_check(int fd, const char *label, const char *from, const P11M_PIN *pin)
{
    char line[1024], source[512], when_s[64];
    long long when = 0;
    struct tm tm;
    time_t t;
    FILE *f;
    int dup, found = 0;

    if (fd < 0 || (dup = fcntl(fd, F_DUPFD_CLOEXEC, 0)) < 0)
        return 0;
    if (lseek(dup, 0, SEEK_SET) != 0 || (f = fdopen(dup, "r")) == NULL) {
        close(dup);
        return 0;
    }
    while (!found && fgets(line, sizeof(line), f) != NULL)
        found = line[0] != '#' &&
                refusal_line_matches(line, pin, &when, source, sizeof(source));
    fclose(f);
    if (!found)
        return 0;
    t = (time_t) when;
    if (gmtime_r(&t, &tm) == NULL ||
        strftime(when_s, sizeof(when_s), "%Y-%m-%d %H:%M:%S UTC", &tm) == 0)
        snprintf(when_s, sizeof(when_s), "%lld", when);
    p11m_raise(
        P11M_R_PIN_INCORRECT,
        "the PIN from %s was refused by token '%s' at %s%s%s%s; not tried again by "
        "any process: fix the PIN source, then run `p11mtls pin reset-refusal` or "
        "change the source",
        from, label, when_s, strcmp(from, source) != 0 ? " (given then by " : "",
        strcmp(from, source) != 0 ? source : "", strcmp(from, source) != 0 ? ")" : "");
    return 1;
}

void p11m_refusal_record(int fd, const CK_TOKEN_INFO *ti, const char *source,
                         const P11M_PIN *pin)
{
    unsigned char salt[REFUSAL_SALT], hash[REFUSAL_HASH];
    char salt_hex[2 * REFUSAL_SALT + 1], hash_hex[2 * REFUSAL_HASH + 1], line[1024];
    struct stat st;
    int n;

    if (fd < 0 || RAND_bytes(salt, sizeof(salt)) != 1 ||
        !refusal_pin_hash(pin, salt, hash))
        return;
    refusal_hex(salt, sizeof(salt), salt_hex);
    refusal_hex(hash, sizeof(hash), hash_hex);
    OPENSSL_cleanse(hash, sizeof(hash));
    /* A header naming the token, for people and for `p11mtls doctor`. */
    if (fstat(fd, &st) == 0 && st.st_size == 0) {
        n = snprintf(line, sizeof(line), "# token %.32s %.32s %.16s %.16s\n", ti->label,
                     ti->manufacturerID, ti->model, ti->serialNumber);
        if (n > 0 && (size_t) n < sizeof(line) && write(fd, line, (size_t) n) != n)
            p11m_log(1, "PIN refusal record: write: %s", strerror(errno));
    }
    /* The source only names where the PIN came from: a long path is cut, never the
     * record. */
    n = snprintf(line, sizeof(line), "%lld %s %s %.512s\n", (long long) time(NULL),
                 salt_hex, hash_hex, source);
    if (n > 0 && (size_t) n < sizeof(line) && write(fd, line, (size_t) n) != n)
        p11m_log(1, "PIN refusal record: write: %s", strerror(errno));
}
