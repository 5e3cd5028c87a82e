/*
 * file.c - the one careful read of a small file (configuration, PIN): a regular file,
 * opened without blocking, bounded, read whole.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "p11m_util.h"

#define MIB ((size_t) 1024 * 1024)

static int file_check(int fd, const char *path, const char *what, size_t max,
                      unsigned flags, struct stat *st, char *err, size_t errlen)
{
    if (fstat(fd, st) != 0 || !S_ISREG(st->st_mode)) {
        snprintf(err, errlen, "%s: not a regular file", what);
        return 0;
    }
    if ((flags & P11M_FILE_PRIVATE) && (st->st_mode & (S_IRWXG | S_IRWXO)) != 0) {
        snprintf(err, errlen,
                 "%s is accessible by group or others (mode %03o); refusing it: "
                 "chmod 600 %s",
                 what, (unsigned) (st->st_mode & 0777), path);
        return 0;
    }
    if ((unsigned long long) st->st_size > max) {
        if (max % MIB == 0)
            snprintf(err, errlen, "%s: larger than %zu MiB", what, max / MIB);
        else
            snprintf(err, errlen, "%s: larger than %zu bytes", what, max);
        return 0;
    }
    return 1;
}

/* Reads up to size bytes; the file may have shrunk meanwhile. -1 on a read error. */
static ssize_t file_read_all(int fd, char *buf, size_t size)
{
    size_t got = 0;

    while (got < size) {
        ssize_t n = read(fd, buf + got, size - got);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        if (n == 0)
            break;
        got += (size_t) n;
    }
    return (ssize_t) got;
}

char *p11m_file_read(const char *path, const char *what, size_t max, unsigned flags,
                     size_t *len, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    struct stat st;
    char *buf = NULL;
    ssize_t n = -1;

    if (fd < 0) {
        snprintf(err, errlen, "%s: %s", what, strerror(errno));
        return NULL;
    }
    if (file_check(fd, path, what, max, flags, &st, err, errlen)) {
        buf = malloc((size_t) st.st_size + 1);
        n = buf != NULL ? file_read_all(fd, buf, (size_t) st.st_size) : -1;
        if (buf == NULL)
            snprintf(err, errlen, "%s: out of memory", what);
        else if (n < 0)
            snprintf(err, errlen, "%s: %s", what, strerror(errno));
    }
    close(fd);
    if (n < 0) {
        p11m_file_free(buf, (size_t) st.st_size);
        return NULL;
    }
    buf[n] = '\0';
    *len = (size_t) n;
    return buf;
}

void p11m_file_free(char *data, size_t len)
{
    if (data == NULL)
        return;
    explicit_bzero(data, len);
    free(data);
}
