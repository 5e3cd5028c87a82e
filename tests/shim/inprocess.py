#!/usr/bin/python3
"""A TLS server and a TLS client in one process, for the shim's tests.

  inprocess.py generic|server-only CERT KEY CLIENT_CA ROOT_CA

The server context (generic PROTOCOL_TLS, i.e. TLS_method, or PROTOCOL_TLS_SERVER)
serves CERT/KEY on 127.0.0.1 and requires a client certificate issued under
CLIENT_CA; the client (no certificate of its own) connects to "localhost". Prints what
each side saw of the other:
  client saw server: CN=...
  server saw client: CN=...
"""
import socket
import ssl
import sys
import threading
import warnings


def cn(cert):
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return "CN=" + value
    return "none"


def main():
    kind, cert, key, client_ca, root = sys.argv[1:6]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        proto = ssl.PROTOCOL_TLS if kind == "generic" else ssl.PROTOCOL_TLS_SERVER
        server_ctx = ssl.SSLContext(proto)
    server_ctx.load_cert_chain(cert, key)
    server_ctx.load_verify_locations(client_ca)
    server_ctx.verify_mode = ssl.CERT_REQUIRED

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    seen = {}

    def serve():
        conn, _ = listener.accept()
        try:
            with server_ctx.wrap_socket(conn, server_side=True) as s:
                seen["client"] = cn(s.getpeercert())
                s.sendall(b"bye")
        except ssl.SSLError as e:
            seen["client"] = "error: %s" % e

    t = threading.Thread(target=serve)
    t.start()
    client_ctx = ssl.create_default_context(cafile=root)
    with socket.create_connection(("127.0.0.1", port)) as raw:
        with client_ctx.wrap_socket(raw, server_hostname="localhost") as c:
            print("client saw server:", cn(c.getpeercert()))
            c.recv(16)
    t.join()
    print("server saw client:", seen.get("client"))


if __name__ == "__main__":
    main()
