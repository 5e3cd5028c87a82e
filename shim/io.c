/*
 * io.c - which socket belongs to a connection object whose program hides it.
 *
 * curl gives OpenSSL its own BIO and GnuTLS its own push/pull functions, so neither
 * library knows the descriptor. What the program's transport reads is known, though:
 * the recv() hook (hooks.c) reports each descriptor it read from, and a handshake call
 * of one SSL or GnuTLS session (shim_io_begin ... shim_io_end, on this thread) reads
 * only that connection's socket. Several transfers in one thread (curl multi) make
 * separate calls; a TLS connection tunnelled through another (an HTTPS proxy) sees the
 * outer connection's reads land on the outer call, so the inner one stays unknown
 * rather than taking the proxy's address.
 */
#include <stddef.h>

#include "shim.h"

static __thread struct shim_io *io_current;

void shim_io_begin(struct shim_io *io, const void *conn)
{
    io->conn = conn;
    io->fd = -1;
    io->frozen = false;
    io->outer = io_current;
    io_current = io;
}

void shim_io_end(struct shim_io *io)
{
    io_current = io->outer;
}

void shim_io_note(int fd)
{
    struct shim_io *io = io_current;

    if (io != NULL && !io->frozen)
        io->fd = fd;
}

/* From the certificate callback on, reads are the shim's or the program's callback's
 * (configuration, token, files), not the connection's. */
void shim_io_freeze(void)
{
    if (io_current != NULL)
        io_current->frozen = true;
}

int shim_io_fd(const void *conn)
{
    const struct shim_io *io = io_current;

    return io != NULL && io->conn == conn ? io->fd : -1;
}
