#!/usr/bin/python3
"""TLS clients without any certificate code, for the shim's tests.

  client.py MODE URL_OR_HOSTPORT [--cafile F] [--tls 1.2|1.3] [--timeout S]

MODE:
  urllib   GET the https URL with urllib.request and an ssl context; print the body.
  socket   wrap a TCP socket (ssl context, server_hostname from the host); send a
           line, read once (TLS 1.3 reports a rejected client certificate there).
  asyncio  the same through asyncio streams (non-blocking, memory BIOs).
  fork     socket once in the parent, then once in a forked child (the identity is
           loaded before the fork); --fork-first: fork first, the child loads it;
           --parent-again: the parent once more after the child (a child's failure
           is reported as "child: failed ..." and does not stop the parent).
  threads  socket from N threads at once (--threads N); print one line per thread.
  twice    socket twice, each time with a new context (made after the first
           handshake loaded the identity); print both TLS versions and answers.

Exit 0 when the TLS exchange worked, 1 on a TLS error, with the error on stderr.
"""
import argparse
import asyncio
import os
import socket
import ssl
import sys
import threading
import urllib.parse
import urllib.request


def context(args):
    ctx = ssl.create_default_context(cafile=args.cafile)
    if args.tls:
        v = ssl.TLSVersion.TLSv1_2 if args.tls == "1.2" else ssl.TLSVersion.TLSv1_3
        ctx.minimum_version = ctx.maximum_version = v
    return ctx


def split(target):
    if "://" in target:
        u = urllib.parse.urlsplit(target)
        return u.hostname, u.port or 443
    host, port = target.rsplit(":", 1)
    return host.strip("[]"), int(port)


def run_urllib(args):
    with urllib.request.urlopen(args.target, context=context(args), timeout=args.timeout) as r:
        sys.stdout.write(r.read().decode())


def exchange_socket(args):
    host, port = split(args.target)
    with socket.create_connection((host, port), timeout=args.timeout) as raw:
        with context(args).wrap_socket(raw, server_hostname=host) as s:
            s.sendall(b"GET / HTTP/1.0\r\nHost: %s\r\n\r\n" % host.encode())
            try:
                data = s.recv(4096)
            except socket.timeout:
                data = b""
            return s.version(), data.decode(errors="replace")


def run_socket(args):
    version, data = exchange_socket(args)
    print(version)
    sys.stdout.write(data)


async def exchange_asyncio(args):
    host, port = split(args.target)
    reader, writer = await asyncio.open_connection(host, port, ssl=context(args))
    writer.write(b"GET / HTTP/1.0\r\nHost: %s\r\n\r\n" % host.encode())
    await writer.drain()
    try:
        data = await asyncio.wait_for(reader.read(4096), args.timeout)
    except asyncio.TimeoutError:
        data = b""
    version = writer.get_extra_info("ssl_object").version()
    writer.close()
    return version, data.decode(errors="replace")


def run_asyncio(args):
    version, data = asyncio.run(exchange_asyncio(args))
    print(version)
    sys.stdout.write(data)


def run_fork(args):
    if not args.fork_first:
        print("parent:", exchange_socket(args)[1].splitlines()[-1:], flush=True)
    pid = os.fork()
    if pid == 0:
        try:
            print("child:", exchange_socket(args)[1].splitlines()[-1:], flush=True)
            os._exit(0)
        except Exception as e:  # report, never fall back into the parent's code
            print("child failed:", e, file=sys.stderr, flush=True)
            if args.parent_again:
                print("child: failed", flush=True)
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    if status != 0 and not args.parent_again:
        raise SystemExit("child exited with status %d" % status)
    if args.fork_first or args.parent_again:
        print("parent:", exchange_socket(args)[1].splitlines()[-1:], flush=True)


def run_twice(args):
    for _ in range(2):
        version, data = exchange_socket(args)
        print(version, data.splitlines()[-1:])


def run_threads(args):
    results = [None] * args.threads
    barrier = threading.Barrier(args.threads)

    def one(i):
        barrier.wait()
        try:
            results[i] = exchange_socket(args)[1].splitlines()[-1:]
        except Exception as e:
            results[i] = "error: %s" % e

    threads = [threading.Thread(target=one, args=(i,)) for i in range(args.threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, r in enumerate(results):
        print("thread %d: %s" % (i, r))
    if any(isinstance(r, str) for r in results):
        raise SystemExit(1)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["urllib", "socket", "asyncio", "fork", "threads", "twice"])
    p.add_argument("target")
    p.add_argument("--cafile")
    p.add_argument("--tls", choices=["1.2", "1.3"])
    p.add_argument("--timeout", type=float, default=3)
    p.add_argument("--threads", type=int, default=16)
    p.add_argument("--fork-first", action="store_true")
    p.add_argument("--parent-again", action="store_true")
    args = p.parse_args()
    try:
        globals()["run_" + args.mode](args)
    except (ssl.SSLError, OSError) as e:
        print("client.py: %s: %s" % (type(e).__name__, e), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
