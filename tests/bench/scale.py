#!/usr/bin/env python3
"""scale.py [BINDIR]: rprd holding many objects. Prints figures, no pass/fail.

N inactive Servers (127.0.0.1 port 1, labels role, rack and group, 100 a
group; SCALE_N, default 100,000) applied with `rprctl apply -f` of one YAML
file, while a watch is open on them. Then:

  apply          rprctl apply's wall time (its YAML parse included)
  settled        from the end of the apply until the Server controller has
                 written every status (rpr_controller_pending back to 0)
  watch          events the open watch saw, and whether it was cut off (410)
  GET one        mean time of 200 GETs of one object, keep-alive
  selected 100   mean time of 50 label-selected lists of 100 (group=gK)
  RSS            rprd's peak during the apply (VmHWM) and after it settled;
                 then after a restart on the same state, holding the N
                 objects (with their status) once its controllers settled

Side by side, etcd itself (Debian's etcd-server, when installed) holding
the same N objects as rprd stores them, written in transactions of 128 (its
--max-txn-ops) over its JSON gateway: the time to write them, a GET of one,
what choosing 100 by label costs without a label index (the prefix read
whole and filtered), and etcd's RSS.

Run with the release build (make all): `tests/bench/scale.py`.
"""

import base64
import http.client
import json
import shutil
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
BIN = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(REPO, "bin"))
N = int(os.environ.get("SCALE_N", "100000"))


class UnixConn(http.client.HTTPConnection):
    def __init__(self, path, timeout=600):
        super().__init__("localhost", timeout=timeout)
        self.path_ = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path_)


def status_kb(pid, field):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def manifest(path):
    with open(path, "w") as f:
        for i in range(N):
            f.write("---\napiVersion: rpr/v1\nkind: Server\nmetadata:\n  name: srv-%06d\n"
                    "  labels: {role: web, rack: r%d, group: g%d}\nspec:\n  host: 127.0.0.1\n  port: 1\n"
                    "  user: deploy\n  active: false\n" % (i, i % 10, i // 100))


class Watcher(threading.Thread):
    def __init__(self, sock, token):
        super().__init__(daemon=True)
        self.sock, self.token = sock, token
        self.added = self.modified = 0
        self.error = None
        self.ready = threading.Event()

    def run(self):
        c = UnixConn(self.sock, timeout=None)
        c.request("GET", "/api/v1/servers?watch=1", headers={"Authorization": "Bearer " + self.token})
        r = c.getresponse()
        self.ready.set()
        for line in r:
            if not line.strip():
                continue
            e = json.loads(line)
            if e["type"] == "ADDED":
                self.added += 1
            elif e["type"] == "MODIFIED":
                self.modified += 1
            elif e["type"] == "ERROR":
                self.error = e["object"].get("message")
                return


def get(conn, token, path):
    conn.request("GET", path, headers={"Authorization": "Bearer " + token})
    r = conn.getresponse()
    body = r.read()
    assert r.status == 200, (path, r.status, body[:200])
    return body


def pending(conn, token):
    for line in get(conn, token, "/metrics").decode().splitlines():
        if line.startswith("rpr_controller_pending "):
            return int(line.split()[1])
    return -1


def mean_ms(conn, token, path, times):
    t0 = time.monotonic()
    for _ in range(times):
        get(conn, token, path)
    return (time.monotonic() - t0) / times * 1000


def b64(text):
    return base64.b64encode(text.encode() if isinstance(text, str) else text).decode()


def etcd_side_by_side(objects, tmp):
    """objects: (key, json text) as rprd stores them. Prints etcd's figures."""
    if not shutil.which("etcd"):
        print("  etcd: not installed (apt-get install etcd-server), no side-by-side")
        return
    ports = []
    for _ in range(2):
        with socket.socket() as sk:
            sk.bind(("127.0.0.1", 0))
            ports.append(sk.getsockname()[1])
    client, peer = "http://127.0.0.1:%d" % ports[0], "http://127.0.0.1:%d" % ports[1]
    etcd = subprocess.Popen(["etcd", "--data-dir", os.path.join(tmp, "etcd"), "--listen-client-urls", client,
                             "--advertise-client-urls", client, "--listen-peer-urls", peer,
                             "--initial-advertise-peer-urls", peer, "--initial-cluster", "default=" + peer,
                             "--name", "default"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        conn = http.client.HTTPConnection("127.0.0.1", ports[0], timeout=60)

        def call(path, body):
            for _ in range(100):
                try:
                    conn.request("POST", path, body=json.dumps(body))
                    r = conn.getresponse()
                    return json.loads(r.read())
                except OSError:
                    conn.close()
                    time.sleep(0.1)
            raise SystemExit("etcd does not answer")
        call("/v3/kv/range", {"key": b64("x")})
        t0 = time.monotonic()
        for i in range(0, len(objects), 128):
            call("/v3/kv/txn", {"success": [{"requestPut": {"key": b64(k), "value": b64(v)}}
                                            for k, v in objects[i:i + 128]]})
        t_put = time.monotonic() - t0
        key = b64(objects[len(objects) // 2][0])
        t0 = time.monotonic()
        for _ in range(200):
            call("/v3/kv/range", {"key": key})
        t_get = (time.monotonic() - t0) / 200 * 1000
        want = '"group":"g%d"' % (len(objects) // 200)
        t0 = time.monotonic()
        got = call("/v3/kv/range", {"key": b64("/rpr/Server/"), "range_end": b64("/rpr/Server0")})
        picked = [kv for kv in got.get("kvs", []) if want in base64.b64decode(kv["value"]).decode()]
        t_sel = (time.monotonic() - t0) * 1000
        print("  etcd 3.4, the same objects: written (128 a transaction) %.1f s, GET of one %.2f ms, "
              "%d by label (prefix read and filtered) %.0f ms, RSS %.0f MB"
              % (t_put, t_get, len(picked), t_sel, status_kb(etcd.pid, "VmRSS") / 1024))
    finally:
        etcd.terminate()
        etcd.wait(60)


def main():
    tmp = tempfile.mkdtemp(prefix="rpr-scale-")
    state = os.path.join(tmp, "state")
    sock = os.path.join(state, "rpr.sock")
    os.mkdir(state, 0o700)
    path = os.path.join(tmp, "servers.yaml")
    manifest(path)
    rprd = subprocess.Popen([os.path.join(BIN, "rprd"), "--state-dir", state, "--listen", "unix:" + sock,
                             "--allow-networks", "127.0.0.0/8,::1/128"],
                            stdout=subprocess.DEVNULL, stderr=open(os.path.join(tmp, "rprd.log"), "w"))
    try:
        for _ in range(200):
            if os.path.exists(os.path.join(state, "admin.token")) and os.path.exists(sock):
                break
            time.sleep(0.05)
        time.sleep(0.2)
        token = open(os.path.join(state, "admin.token")).read().strip()
        w = Watcher(sock, token)
        w.start()
        w.ready.wait(10)

        peak = [0]
        stop = threading.Event()

        def sample():
            while not stop.is_set():
                peak[0] = max(peak[0], status_kb(rprd.pid, "VmRSS"))
                time.sleep(0.05)
        threading.Thread(target=sample, daemon=True).start()

        t0 = time.monotonic()
        p = subprocess.run([os.path.join(BIN, "rprctl"), "--server", "unix:" + sock, "--token", token,
                            "apply", "-f", path], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        t_apply = time.monotonic() - t0
        assert p.returncode == 0, p.stderr
        conn = UnixConn(sock)
        t1 = time.monotonic()
        while pending(conn, token) != 0:
            time.sleep(0.1)
        t_settle = time.monotonic() - t1
        stop.set()
        time.sleep(1)

        one = mean_ms(conn, token, "/api/v1/namespaces/default/servers/srv-%06d" % (N // 2), 200)
        sel = mean_ms(conn, token, "/api/v1/servers?labelSelector=group%%3Dg%d" % (N // 200), 50)
        body = json.loads(get(conn, token, "/api/v1/servers?labelSelector=group%%3Dg%d" % (N // 200)))
        rss = status_kb(rprd.pid, "VmRSS")
        listing = json.loads(get(conn, token, "/api/v1/servers"))["items"]
        objects = [("/rpr/Server/default/" + o["metadata"]["name"], json.dumps(o, separators=(",", ":")))
                   for o in listing]
        del listing

        print("rpr scale benchmark: %d Servers (inactive), 2 cores" % N)
        print("  apply (rprctl apply -f, one YAML file)   %6.1f s" % t_apply)
        print("  controller settled after the apply       %6.1f s" % t_settle)
        print("  open watch: %d ADDED, %d MODIFIED%s" % (w.added, w.modified,
                                                         ", cut off: %s" % w.error if w.error else ", never cut off"))
        print("  GET of one object                         %6.2f ms" % one)
        print("  label-selected list of %d                %6.2f ms" % (len(body["items"]), sel))
        print("  rprd RSS: peak during the apply %.0f MB (VmHWM %.0f MB), after settling %.0f MB"
              % (peak[0] / 1024, status_kb(rprd.pid, "VmHWM") / 1024, rss / 1024))
        rprd.terminate()
        rprd.wait(60)
        t2 = time.monotonic()
        rprd = subprocess.Popen([os.path.join(BIN, "rprd"), "--state-dir", state, "--listen", "unix:" + sock,
                                 "--allow-networks", "127.0.0.0/8,::1/128"],
                                stdout=subprocess.DEVNULL, stderr=open(os.path.join(tmp, "rprd2.log"), "w"))
        for _ in range(1200):
            try:
                conn = UnixConn(sock)
                if pending(conn, token) == 0:
                    break
            except OSError:
                pass
            time.sleep(0.1)
        t_start = time.monotonic() - t2
        time.sleep(2)
        print("  after a restart: serving and settled in %.1f s, RSS %.0f MB holding %d Servers"
              % (t_start, status_kb(rprd.pid, "VmRSS") / 1024, N))
        rprd.terminate()
        rprd.wait(60)
        etcd_side_by_side(objects, tmp)
    finally:
        rprd.terminate()
        rprd.wait(60)
        subprocess.run(["rm", "-rf", tmp])


if __name__ == "__main__":
    main()
