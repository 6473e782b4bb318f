#!/usr/bin/env python3
"""repos.py [--repos N] [--seconds S]: N Repos (default 1000) polled every
minute by rprd against the fake GitHub API (tests/github_fake.py, its own
process) for S seconds (default 300, or $BENCH_SECONDS). Prints figures, no
pass/fail:

  - rprd's CPU use over the window (utime + stime / wall) and its RSS
  - GitHub requests per minute, and the share answered 304 (no rate limit)
  - rate limit spent (X-RateLimit-Remaining of the token at the end)
  - the delay from a signed push webhook to the new commit in the Repo's
    status, seen on a watch stream (every 5 s: a head moved, a webhook sent)

Side by side: what the same 1000 conditional requests a minute cost the
usual alternative, a cron job running curl with If-None-Match (xargs -P 8),
measured as CPU seconds for one round.

Expects bin/rprd (make all; RPR_BIN_DIR overrides).
"""

import argparse
import hashlib
import hmac
import http.client
import json
import os
import random
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
BIN = os.environ.get("RPR_BIN_DIR", os.path.join(REPO, "bin"))
FAKE = os.path.join(REPO, "tests", "github_fake.py")
PUSH = os.path.join(REPO, "tests", "fixtures", "github", "webhooks", "push.4.json")
PAT = "ghp_bench0123456789abcdefghijklmnopqrstuv"
HOOK_SECRET = "bench-webhook-secret"
CLK = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url, body, headers=None):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method="POST",
                                 headers=dict({"Content-Type": "application/json"}, **(headers or {})))
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def get_json(url, token=None):
    req = urllib.request.Request(url, headers={"Authorization": "Bearer " + token} if token else {})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read())


def cpu_ticks(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def rss_mb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def sha(i, gen):
    return hashlib.sha1(b"%d-%d" % (i, gen)).hexdigest()


class Watch(threading.Thread):
    """Reads the Repo watch stream; records when each sha first appears."""

    def __init__(self, port, token):
        super().__init__(daemon=True)
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=3600)
        self.conn.request("GET", "/api/v1/repos?watch=1", headers={"Authorization": "Bearer " + token})
        self.resp = self.conn.getresponse()
        self.seen = {}
        self.lock = threading.Lock()

    def run(self):
        while True:
            line = self.resp.readline()
            if not line:
                return
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            s = ev.get("object", {}).get("status", {}).get("lastCommit", {}).get("sha")
            if s:
                with self.lock:
                    self.seen.setdefault(s, time.monotonic())

    def when(self, s):
        with self.lock:
            return self.seen.get(s)


def curl_round(fake_url, n, tmp):
    """One cron round of curl with If-None-Match for n repos: CPU seconds."""
    etags = os.path.join(tmp, "etags")
    os.makedirs(etags, exist_ok=True)
    urls = os.path.join(tmp, "urls")
    with open(urls, "w") as f:
        for i in range(n):
            f.write("%s/repos/acme/r%04d/branches/main\n" % (fake_url, i))
    script = ('u="$1"; e=%s/$(echo "$u" | md5sum | cut -c1-16); '
              'curl -s -o /dev/null -H "Authorization: Bearer %s" --etag-compare "$e" --etag-save "$e" "$u"'
              % (etags, PAT))
    cmd = ["xargs", "-P", "8", "-n", "1", "sh", "-c", script, "sh"]
    res = []
    for _ in range(2):  # the first round fills the ETags; the second is the steady state
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.monotonic()
        with open(urls) as f:
            subprocess.run(cmd, stdin=f, check=True)
        wall = time.monotonic() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        res.append((after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, wall))
    return res[-1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repos", type=int, default=1000)
    ap.add_argument("--seconds", type=int, default=int(os.environ.get("BENCH_SECONDS", "300")))
    args = ap.parse_args()
    n = args.repos

    tmp = tempfile.mkdtemp(prefix="rpr-bench-repos-")
    procs = []
    try:
        fake = subprocess.Popen([sys.executable, FAKE, "--port", "0"], stdout=subprocess.PIPE, text=True)
        procs.append(fake)
        fake_url = "http://127.0.0.1:%d" % int(fake.stdout.readline())
        post(fake_url + "/_fake/tokens", {"token": PAT, "valid": True})
        for i in range(n):
            post(fake_url + "/_fake/repos", {"owner": "acme", "name": "r%04d" % i,
                                             "branches": {"main": {"sha": sha(i, 0)}}})

        port = free_port()
        state = os.path.join(tmp, "state")
        rprd = subprocess.Popen([os.path.join(BIN, "rprd"), "--state-dir", state, "--allow-networks", "127.0.0.0/8,::1/128", "--listen",
                                 "tcp:127.0.0.1:%d" % port], stdout=subprocess.DEVNULL,
                                stderr=open(os.path.join(tmp, "rprd.log"), "w"))
        procs.append(rprd)
        api = "http://127.0.0.1:%d" % port
        for _ in range(200):
            try:
                urllib.request.urlopen(api + "/healthz", timeout=1)
                break
            except OSError:
                time.sleep(0.05)
        token = open(os.path.join(state, "admin.token")).read().strip()
        auth = {"Authorization": "Bearer " + token}

        objs = [{"apiVersion": "rpr/v1", "kind": "Token", "metadata": {"name": "gh"},
                 "spec": {"type": "github", "value": PAT}},
                {"apiVersion": "rpr/v1", "kind": "Token", "metadata": {"name": "hook"},
                 "spec": {"type": "webhook", "value": HOOK_SECRET}}]
        objs += [{"apiVersion": "rpr/v1", "kind": "Repo", "metadata": {"name": "r%04d" % i},
                  "spec": {"owner": "acme", "name": "r%04d" % i, "apiURL": fake_url, "tokenRef": "gh",
                           "interval": "1m"}} for i in range(n)]
        t0 = time.monotonic()
        status, body = post(api + "/api/v1/apply", objs, auth)
        assert status == 200, body[:300]
        # settled: every Repo has its first commit
        while True:
            lst = get_json(api + "/api/v1/repos", token)
            done = sum(1 for o in lst["items"] if o.get("status", {}).get("lastCommit"))
            if done == n:
                break
            time.sleep(0.2)
        first_round = time.monotonic() - t0

        watch = Watch(port, token)
        watch.start()
        post(fake_url + "/_fake/clear_requests", {})
        cpu0, w0 = cpu_ticks(rprd.pid), time.monotonic()
        template = json.load(open(PUSH))
        delays, gen = [], 1
        end = w0 + args.seconds
        while time.monotonic() < end:
            time.sleep(min(5, max(0, end - time.monotonic())))
            if time.monotonic() >= end:
                break
            i = random.randrange(n)
            new = sha(i, gen)
            gen += 1
            post(fake_url + "/_fake/head", {"owner": "acme", "name": "r%04d" % i, "branch": "main", "sha": new})
            p = json.loads(json.dumps(template))
            p["ref"] = "refs/heads/main"
            p["after"] = new
            p["repository"]["full_name"] = "acme/r%04d" % i
            for k in ("clone_url", "html_url", "ssh_url", "git_url", "url", "svn_url"):
                p["repository"].pop(k, None)
            body = json.dumps(p).encode()
            sig = "sha256=" + hmac.new(HOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
            sent = time.monotonic()
            st, _ = post(api + "/hooks/github", body, {"X-GitHub-Event": "push", "X-Hub-Signature-256": sig,
                                                       "X-GitHub-Delivery": "bench-%d" % gen})
            assert st == 202, st
            while watch.when(new) is None and time.monotonic() - sent < 10:
                time.sleep(0.001)
            if watch.when(new) is not None:
                delays.append((watch.when(new) - sent) * 1000)
        wall = time.monotonic() - w0
        cpu = (cpu_ticks(rprd.pid) - cpu0) / CLK
        rss = rss_mb(rprd.pid)
        reqs = get_json(fake_url + "/_fake/requests")
        total, n304 = reqs["total"], reqs["not_modified"]

        curl_cpu, curl_wall = curl_round(fake_url, n, tmp)

        print("repos: %d Repos at interval 1m against the fake GitHub API, %.0f s" % (n, wall))
        print("  first round (apply to every Repo's first commit): %.2f s" % first_round)
        print("  rprd CPU: %.2f%% of one core (%.2f s over %.0f s); RSS %.1f MB" % (100 * cpu / wall, cpu, wall, rss))
        print("  GitHub requests: %.0f per minute; %.1f%% answered 304 (no rate limit spent)"
              % (total / (wall / 60), 100.0 * n304 / max(total, 1)))
        if delays:
            delays.sort()
            print("  webhook -> new commit in status: median %.1f ms, p95 %.1f ms, max %.1f ms (%d pushes)"
                  % (statistics.median(delays), delays[int(0.95 * (len(delays) - 1))], delays[-1], len(delays)))
        print("  side by side: cron + curl --etag-compare (xargs -P 8), one round of %d conditional requests:"
              " %.2f s CPU, %.2f s wall -> %.1f%% of one core at one round a minute"
              % (n, curl_cpu, curl_wall, 100 * curl_cpu / 60))
    finally:
        for p in reversed(procs):
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
