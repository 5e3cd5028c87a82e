#!/usr/bin/python3
"""soak_client.py URL CAFILE LOG STOPFILE [--cert F --key F] [--threads T] [--fork-every N]

A long-lived TLS client for tests/reliability/t-soak.sh. T threads (default 4) make
HTTPS GET requests to URL (nginx requiring a client certificate) one after another until
STOPFILE exists. Without --cert/--key the program has no certificate code at all: what it
presents comes from the LD_PRELOADed shim. With them (a PEM-URI key file) it loads its
identity through OpenSSL, i.e. the p11mtls provider configured by OPENSSL_CONF.

Every N requests of thread 0 (default 50) the program forks a child that makes two
requests and exits. It forks the way tests/RELIABILITY.md tells programs to: only while
no other thread is inside OpenSSL (the workers hold a shared gate around each request;
the forker takes it exclusively), because OpenSSL 3.0 takes none of its locks around
fork. A child is bounded by alarm(60): a hang shows as exit status 124.

LOG gets one line per request: "<unix time> <pid> ok <dn>" or
"<unix time> <pid> fail <reason>", and "<unix time> <pid> child <status>" per child.
"""
import os
import signal
import ssl
import sys
import threading
import time
import http.client
import urllib.parse


class Gate:
    """Shared by requests, exclusive for fork."""

    def __init__(self):
        self.cond = threading.Condition()
        self.inside = 0
        self.forking = False

    def enter(self):
        with self.cond:
            while self.forking:
                self.cond.wait()
            self.inside += 1

    def leave(self):
        with self.cond:
            self.inside -= 1
            self.cond.notify_all()

    def lock_for_fork(self):
        with self.cond:
            while self.forking:
                self.cond.wait()
            self.forking = True
            while self.inside > 0:
                self.cond.wait()

    def unlock_for_fork(self):
        with self.cond:
            self.forking = False
            self.cond.notify_all()


def main():
    args = sys.argv[1:]
    url, cafile, logpath, stopfile = args[:4]
    opts = dict(zip(args[4::2], args[5::2]))
    threads = int(opts.get("--threads", "4"))
    fork_every = int(opts.get("--fork-every", "50"))
    u = urllib.parse.urlsplit(url)

    def make_ctx():
        ctx = ssl.create_default_context(cafile=cafile)
        if "--cert" in opts:
            ctx.load_cert_chain(opts["--cert"], opts["--key"])
        return ctx

    ctx = make_ctx()
    log = open(logpath, "a", buffering=1)
    log_lock = threading.Lock()
    gate = Gate()

    def note(what):
        line = "%.3f %d %s\n" % (time.time(), os.getpid(), what)
        with log_lock:
            log.write(line)

    def request(c):
        try:
            conn = http.client.HTTPSConnection(u.hostname, u.port, context=c, timeout=30)
            conn.request("GET", "/")
            r = conn.getresponse()
            body = r.read().decode(errors="replace").strip()
            conn.close()
            if r.status == 200 and "verify=SUCCESS" in body:
                note("ok " + body.split("dn=", 1)[-1])
            else:
                note("fail http %d %s" % (r.status, " ".join(body[:200].split())[:80]))
        except Exception as e:  # any failure is a data point, not the end of the soak
            note("fail %s" % str(e).replace("\n", " ")[:200])

    def child():
        signal.signal(signal.SIGALRM, lambda *_: os._exit(124))
        signal.alarm(60)
        log_lock.__init__()  # the parent's lock may have been held by another thread
        try:
            c = make_ctx()
            request(c)
            request(c)
        except Exception as e:  # a key the child may not use (a TPM's): logged
            note("fail %s" % str(e).replace("\n", " ")[:200])
        log.flush()
        os._exit(0)

    def do_fork():
        pid = -1
        gate.lock_for_fork()
        try:
            pid = os.fork()
            if pid == 0:
                child()
        finally:
            if pid != 0:
                gate.unlock_for_fork()
        _, status = os.waitpid(pid, 0)
        note("child %d" % (os.waitstatus_to_exitcode(status)))

    def worker(idx):
        n = 0
        while not os.path.exists(stopfile):
            gate.enter()
            try:
                request(ctx)
            finally:
                gate.leave()
            n += 1
            if idx == 0 and fork_every > 0 and n % fork_every == 0:
                do_fork()

    ts = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    note("done")


if __name__ == "__main__":
    main()
