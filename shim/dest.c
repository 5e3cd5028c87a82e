/*
 * dest.c - where is this client SSL going?
 *
 * Only what the program itself gave libssl counts, in this order: the SNI host name,
 * else the host or IP it asked libssl to verify, else the address of the connected
 * socket. The port is known only from the socket. curl uses its own BIO (no descriptor)
 * and sends no SNI for IP literals: its socket is the one its BIO read from during this
 * handshake call (shim_io_fd). A destination still unknown matches nothing.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

#include "shim.h"

static void dest_from_params(const SSL *ssl, struct shim_dest *d)
{
    X509_VERIFY_PARAM *vp = shim_fn.SSL_get0_param((SSL *) ssl);
    const char *host;
    char *ip;

    if (vp == NULL)
        return;
    host = shim_fn.X509_VERIFY_PARAM_get0_host(vp, 0);
    if (host != NULL && shim_dest_set_name(d, host, "verify-host"))
        return;
    ip = shim_fn.X509_VERIFY_PARAM_get1_ip_asc(vp);
    if (ip != NULL) {
        shim_dest_set_name(d, ip, "verify-ip");
        shim_fn.CRYPTO_free(ip, __FILE__, __LINE__);
    }
}

/* The socket peer: its port always, its address only when nothing named the peer. */
void shim_dest_from_fd(int fd, struct shim_dest *d)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    bool named = d->source != NULL;

    if (fd < 0 || getpeername(fd, (struct sockaddr *) &ss, &sl) != 0)
        return;
    if (ss.ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *) &ss;

        d->port = ntohs(in->sin_port);
        if (!named)
            shim_dest_set_addr(d, AF_INET, &in->sin_addr);
    } else if (ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *) &ss;

        d->port = ntohs(in6->sin6_port);
        if (!named)
            shim_dest_set_addr(d, AF_INET6, &in6->sin6_addr);
    } else {
        return;
    }
    if (!named && d->has_ip)
        d->source = "peer";
}

void shim_dest_from_ssl(const SSL *ssl, struct shim_dest *d)
{
    const char *sni = shim_fn.SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    int fd;

    memset(d, 0, sizeof(*d));
    d->port = -1;
    if (sni == NULL || !shim_dest_set_name(d, sni, "sni"))
        dest_from_params(ssl, d);
    fd = shim_fn.SSL_get_fd(ssl);
    /* curl's BIO: the socket its reads went to during this handshake call */
    shim_dest_from_fd(fd >= 0 ? fd : shim_io_fd(ssl), d);
}
