#!/usr/bin/env python3
"""coldstart.py [--objects N] [--starts K]: how fast a socket-activated rprd
answers its first request, with N objects (default 1,000) in the store,
median over K starts (default 20); and rprd's RSS once it idles. Prints
figures, no pass/fail.

The sockets are held here and handed to each new rprd as systemd's socket
units would (LISTEN_FDS, LISTEN_FDNAMES=web:api), the request is already
waiting in the backlog when rprd starts, and the time is from the exec to
the answer. Side by side: the same for a Python http.server started the
same way (the usual quick HTTP endpoint), and `sqlite3` reading the count
of the same store.

Expects bin/rprd (make all; RPR_BIN_DIR overrides).
"""

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
BIN = os.environ.get("RPR_BIN_DIR", os.path.join(REPO, "bin"))
RPRD = os.path.join(BIN, "rprd")


def listener():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    s.listen(64)
    return s


def launch(argv, sock, names="web"):
    def hand_over():
        fd = os.dup(sock.fileno())
        os.dup2(fd, 3)
    env = dict(os.environ, LISTEN_FDS="1", LISTEN_FDNAMES=names)
    return subprocess.Popen(["/bin/sh", "-c", 'LISTEN_PID=$$ exec "$0" "$@"', *argv], env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            preexec_fn=hand_over, close_fds=False)


def first_answer(argv, path, starts):
    sock = listener()
    port = sock.getsockname()[1]
    times = []
    for _ in range(starts):
        c = socket.create_connection(("127.0.0.1", port))  # waits in the backlog
        c.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        t0 = time.monotonic()
        p = launch(argv, sock)
        data = c.recv(64)
        times.append((time.monotonic() - t0) * 1000)
        assert data.startswith(b"HTTP/1."), data
        c.close()
        p.send_signal(signal.SIGTERM)
        p.wait(30)
    sock.close()
    return times


def prepare(state, n):
    port_sock = listener()
    p = launch([RPRD, "--state-dir", state, "--allow-networks", "127.0.0.0/8,::1/128"], port_sock)
    url = "http://127.0.0.1:%d" % port_sock.getsockname()[1]
    for _ in range(200):
        try:
            urllib.request.urlopen(url + "/healthz", timeout=1)
            break
        except OSError:
            time.sleep(0.05)
    token = open(os.path.join(state, "admin.token")).read().strip()
    objs = [{"apiVersion": "rpr/v1", "kind": "Server", "metadata": {"name": "srv-%05d" % i},
             "spec": {"transport": "ssh", "host": "127.255.%d.%d" % (i // 250, i % 250 + 1), "user": "deploy",
                      "identityFile": "/etc/rpr/key", "active": False}} for i in range(n)]
    req = urllib.request.Request(url + "/api/v1/apply", data=json.dumps(objs).encode(), method="POST",
                                 headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"})
    urllib.request.urlopen(req, timeout=120).read()
    time.sleep(2)  # the controller marks them Inactive
    p.send_signal(signal.SIGTERM)
    p.wait(30)
    port_sock.close()


def idle_rss(state):
    sock = listener()
    p = launch([RPRD, "--state-dir", state, "--allow-networks", "127.0.0.0/8,::1/128"], sock)
    url = "http://127.0.0.1:%d" % sock.getsockname()[1]
    urllib.request.urlopen(url + "/healthz", timeout=30).read()
    time.sleep(3)
    with open("/proc/%d/status" % p.pid) as f:
        rss = next(int(l.split()[1]) for l in f if l.startswith("VmRSS:")) / 1024
    p.send_signal(signal.SIGTERM)
    p.wait(30)
    sock.close()
    return rss


def summary(times):
    times = sorted(times)
    return "median %.1f ms (min %.1f, max %.1f)" % (statistics.median(times), times[0], times[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--objects", type=int, default=1000)
    ap.add_argument("--starts", type=int, default=20)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="rpr-bench-cold-")
    try:
        state = os.path.join(tmp, "state")
        prepare(state, args.objects)
        rprd = first_answer([RPRD, "--state-dir", state, "--allow-networks", "127.0.0.0/8,::1/128"], "/healthz", args.starts)
        rss = idle_rss(state)
        web = os.path.join(tmp, "www")
        os.makedirs(web)
        py = first_answer([sys.executable, "-c",
                           "import socket,http.server as h;s=h.HTTPServer(('127.0.0.1',0),h.SimpleHTTPRequestHandler,"
                           "bind_and_activate=False);s.socket=socket.socket(fileno=3);s.serve_forever()"],
                          "/", args.starts)
        t = []
        for _ in range(args.starts):
            t0 = time.monotonic()
            subprocess.run(["sqlite3", os.path.join(state, "state.db"), "select count(*) from objects"],
                           capture_output=True, check=True)
            t.append((time.monotonic() - t0) * 1000)
        print("coldstart: socket activation to the first answer, %d objects in the store, %d starts"
              % (args.objects, args.starts))
        print("  rprd GET /healthz: %s" % summary(rprd))
        print("  rprd RSS once idle: %.1f MB" % rss)
        print("  side by side: python3 http.server GET /: %s" % summary(py))
        print("  side by side: sqlite3 count(*) of the same store: %s" % summary(t))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
