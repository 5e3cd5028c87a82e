#!/usr/bin/python3
"""A TLS 1.3 server that asks for a client certificate only after the handshake.

  pha_server.py CERT KEY CLIENT_CA PORTFILE

Serves one connection on 127.0.0.1 (its port written to PORTFILE), then requests the
client's certificate with post-handshake authentication and prints what it got:
  client: CN=...      the certificate, after the client answered the request
  client: none        the client sent none
  client: error ...   e.g. the client never offered post-handshake auth
"""
import socket
import ssl
import sys


def cn(cert):
    for rdn in (cert or {}).get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return "CN=" + value
    return "none"


def main():
    cert, key, client_ca, portfile = sys.argv[1:5]
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_cert_chain(cert, key)
    ctx.load_verify_locations(client_ca)
    ctx.post_handshake_auth = True  # no CertificateRequest in the handshake itself
    ctx.verify_mode = ssl.CERT_OPTIONAL
    listener = socket.create_server(("127.0.0.1", 0))
    with open(portfile, "w") as f:
        f.write("%d\n" % listener.getsockname()[1])
    listener.settimeout(20)
    conn, _ = listener.accept()
    conn.settimeout(10)
    try:
        with ctx.wrap_socket(conn, server_side=True) as s:
            s.recv(4096)  # the client's request
            s.verify_client_post_handshake()
            s.sendall(b"hello\n")  # carries the CertificateRequest
            while s.recv(4096):  # the client's answer is processed here
                pass
            print("client:", cn(s.getpeercert()))
    except (ssl.SSLError, OSError) as e:
        print("client: error", e)


if __name__ == "__main__":
    main()
