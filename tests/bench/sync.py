#!/usr/bin/env python3
"""sync.py [--objects N] [--changes K]: a config repository of N manifests
(default 5000 Servers, 100 to a file) synced by rprd. Prints figures, no
pass/fail:

  - the first sync: from applying the Sync to lastAppliedRevision
  - a one-object change: from the signed push webhook to the change applied
    (the changed Server's new port, seen by polling that small object every
    5 ms rather than the Sync, whose status holds the 5,000-entry
    inventory), K times (default 10): median and worst. Target: < 300 ms.
  - store revisions written by the first sync and by each change
  - rprd's RSS after all of it

Side by side, on a fresh rprd: `rprctl apply -f` of the same directory
(first apply), and again after the same one-object change.

The Servers are inactive (active: false), so that no check of 5,000
unreachable hosts runs beside the figures. Expects bin/rprd and bin/rprctl
(make all; RPR_BIN_DIR overrides).
"""

import argparse
import hashlib
import hmac
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
import urllib.error
import urllib.request
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
BIN = os.environ.get("RPR_BIN_DIR", os.path.join(REPO, "bin"))
HOOK_SECRET = "bench-webhook-secret-for-sync"
PER_FILE = 100


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def git(*args, cwd=None):
    env = dict(os.environ, GIT_AUTHOR_NAME="Bench", GIT_AUTHOR_EMAIL="bench@example.com",
               GIT_COMMITTER_NAME="Bench", GIT_COMMITTER_EMAIL="bench@example.com", HOME=tempfile.gettempdir())
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True,
                          text=True).stdout.strip()


def server_doc(i, port=1):
    return json.dumps({"apiVersion": "rpr/v1", "kind": "Server", "metadata": {"name": "s-%d" % i},
                       "spec": {"host": "127.0.0.1", "port": port, "user": "deploy", "active": False}})


class Config:
    def __init__(self, root, n):
        self.n = n
        self.bare = os.path.join(root, "config.git")
        self.work = os.path.join(root, "work")
        git("init", "-q", "--bare", "-b", "main", self.bare)
        git("init", "-q", "-b", "main", self.work)
        git("remote", "add", "origin", self.bare, cwd=self.work)
        self.dir = os.path.join(self.work, "fleet")
        os.makedirs(self.dir)
        for f in range((n + PER_FILE - 1) // PER_FILE):
            self.write_file(f, {})

    def write_file(self, f, ports):
        docs = [server_doc(i, ports.get(i, 1)) for i in range(f * PER_FILE, min(self.n, (f + 1) * PER_FILE))]
        with open(os.path.join(self.dir, "f%03d.yaml" % f), "w") as out:
            out.write("\n---\n".join(docs) + "\n")

    def push(self, msg):
        git("add", "-A", cwd=self.work)
        git("commit", "-q", "-m", msg, cwd=self.work)
        git("push", "-q", "origin", "HEAD:refs/heads/main", cwd=self.work)
        return git("rev-parse", "HEAD", cwd=self.work)


class Rprd:
    def __init__(self):
        self.state = tempfile.mkdtemp(prefix="rpr-bench-sync-")
        self.port = free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        self.log = open(os.path.join(self.state, "stderr.log"), "wb")
        self.proc = subprocess.Popen([os.path.join(BIN, "rprd"), "--state-dir", self.state,
                                      "--allow-networks", "127.0.0.0/8,::1/128",
                                      "--listen", "tcp:127.0.0.1:%d" % self.port],
                                     stdout=self.log, stderr=self.log)
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                self.req("GET", "/healthz", auth=False)
                break
            except OSError:
                time.sleep(0.05)
        with open(os.path.join(self.state, "admin.token")) as f:
            self.token = f.read().strip()

    def req(self, method, path, body=None, auth=True, headers=None):
        h = dict(headers or {})
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            h["Content-Type"] = "application/json"
        if auth:
            h["Authorization"] = "Bearer " + self.token
        r = urllib.request.Request(self.url + path, data=data, method=method, headers=h)
        with urllib.request.urlopen(r, timeout=120) as resp:
            text = resp.read()
        return json.loads(text) if text else None

    def revision(self):
        return int(self.req("GET", "/healthz", auth=False)["revision"])

    def rss_mib(self):
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return 0

    def applied(self):
        o = self.req("GET", "/api/v1/namespaces/default/syncs/fleet")
        return o.get("status", {}).get("lastAppliedRevision", "")

    def wait_applied(self, sha, timeout=300):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.applied() == "main@sha1:" + sha:
                return
            time.sleep(0.005)
        raise SystemExit("sync did not apply %s within %d s; see %s" % (sha, timeout, self.log.name))

    def wait_port(self, name, port, timeout=300):
        deadline = time.time() + timeout
        while time.time() < deadline:
            o = self.req("GET", "/api/v1/namespaces/default/servers/" + name)
            if o["spec"]["port"] == port:
                return
            time.sleep(0.005)
        raise SystemExit("%s did not get port %d within %d s; see %s" % (name, port, timeout, self.log.name))

    def ctl(self, *args):
        t = time.monotonic()
        subprocess.run([os.path.join(BIN, "rprctl"), "--server", self.url, "--token", self.token, *args],
                       check=True, capture_output=True)
        return time.monotonic() - t

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(60)
        shutil.rmtree(self.state, ignore_errors=True)


def push_hook(d, cfg, sha):
    body = json.dumps({"ref": "refs/heads/main", "after": sha,
                       "repository": {"full_name": "bench/config", "clone_url": "file://" + cfg.bare}}).encode()
    sig = "sha256=" + hmac.new(HOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
    d.req("POST", "/hooks/github", body, auth=False,
          headers={"X-GitHub-Event": "push", "X-GitHub-Delivery": str(uuid.uuid4()), "X-Hub-Signature-256": sig})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--objects", type=int, default=5000)
    ap.add_argument("--changes", type=int, default=10)
    a = ap.parse_args()
    root = tempfile.mkdtemp(prefix="rpr-bench-config-")
    cfg = Config(root, a.objects)
    sha = cfg.push("first")
    d = Rprd()
    try:
        d.req("POST", "/api/v1/apply", [
            {"apiVersion": "rpr/v1", "kind": "Token", "metadata": {"name": "hook"},
             "spec": {"type": "webhook", "value": HOOK_SECRET}},
            {"apiVersion": "rpr/v1", "kind": "Repo", "metadata": {"name": "config"},
             "spec": {"provider": "git", "url": "file://" + cfg.bare, "interval": "24h"}}])
        time.sleep(1)
        rev0 = d.revision()
        t = time.monotonic()
        d.req("POST", "/api/v1/apply", [{"apiVersion": "rpr/v1", "kind": "Sync", "metadata": {"name": "fleet"},
                                          "spec": {"repo": "config", "path": "fleet", "interval": "1h"}}])
        d.wait_applied(sha)
        first = time.monotonic() - t
        time.sleep(2)  # the Server controller marks them Inactive
        print("first sync of %d objects: %.2f s, %d store revisions (with the Server controller's status writes); "
              "rprd RSS %.1f MiB" % (a.objects, first, d.revision() - rev0, d.rss_mib()))

        times, revs = [], []
        perf = subprocess.Popen(["perf", "record", "-q", "-g", "-o", "/tmp/sync-perf.data", "-p", str(d.proc.pid)]) \
            if os.environ.get("BENCH_PERF") else None
        for k in range(a.changes):
            i = (k * 37) % a.objects
            cfg.write_file(i // PER_FILE, {i: 1000 + k})
            sha = cfg.push("change %d" % k)
            time.sleep(0.5)
            rev = d.revision()
            t = time.monotonic()
            push_hook(d, cfg, sha)
            d.wait_port("s-%d" % i, 1000 + k)
            times.append(time.monotonic() - t)
            d.wait_applied(sha)
            time.sleep(0.3)
            revs.append(d.revision() - rev)
        if perf:
            perf.send_signal(signal.SIGINT)
            perf.wait()
        print("one-object change, webhook to applied: median %.0f ms, worst %.0f ms (%d changes; target < 300 ms)"
              % (statistics.median(times) * 1000, max(times) * 1000, a.changes))
        print("store revisions per change (every write: the object, its Server status, the Sync's status, the Repo's status): %s" % revs)
        print("rprd RSS after: %.1f MiB" % d.rss_mib())
        with urllib.request.urlopen(d.url + "/metrics", timeout=30) as r:
            last = [l for l in r.read().decode().splitlines() if l.startswith("rpr_sync_last_duration_seconds ")]
        print("of which the last sync itself (read, parse, validate, compare, commit): %.0f ms"
              % (float(last[0].split()[1]) * 1000 if last else -1))
    finally:
        d.stop()

    # Side by side: rprctl apply -f of the same directory, on a fresh rprd.
    d = Rprd()
    try:
        for f in os.listdir(cfg.dir):
            cfg.write_file(int(f[1:4]), {})
        apply_first = d.ctl("apply", "-f", cfg.dir)
        cfg.write_file(0, {0: 2000})
        apply_again = d.ctl("apply", "-f", cfg.dir)
        print("rprctl apply -f of the same directory: first %.2f s, after a one-object change %.0f ms; "
              "rprd RSS %.1f MiB" % (apply_first, apply_again * 1000, d.rss_mib()))
    finally:
        d.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
