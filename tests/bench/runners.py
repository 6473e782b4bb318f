#!/usr/bin/env python3
"""runners.py [--replicas N] [--hosts H] [--seconds S]: a Runner of N
replicas (default 20) spread over H loopback sshd hosts (default 4), against
the fake GitHub (tests/github_fake.py, in this process) with the stand-in
runner release (tests/integration/runner_release.py). Prints figures, no
pass/fail:

  - apply -> N idle: the time, and the GitHub requests it took, by endpoint
  - steady state for S seconds (default 120, or $BENCH_SECONDS): GitHub
    requests a minute, rprd's CPU use and RSS
  - scale N -> 0 with 5 runners busy: the time until the idle ones are gone
    (the busy ones must stay, registered and running), then until the last
    is gone once their jobs end; the requests it took

Beside them, what actions-runner-controller documents for the same work:
one list call per scope per sync (its default sync period is 1 minute).

Run as root (the sshd hosts log in as a plain user, as the integration
tests do). Expects bin/rprd (make all; RPR_BIN_DIR overrides).
"""

import argparse
import collections
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tests"))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))

from github_fake import FakeGitHub  # noqa: E402
from runner_release import build  # noqa: E402
from sshd import Keys, Sshd, login_user  # noqa: E402

BIN = os.environ.get("RPR_BIN_DIR", os.path.join(REPO, "bin"))
PAT = "ghp_benchRunners0123456789abcdefghijklmn"
CLK = os.sysconf("SC_CLK_TCK")


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Rprd:
    def __init__(self, state):
        self.state = state
        self.port = free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        self.log = open(os.path.join(state, "rprd.log"), "wb")
        self.proc = subprocess.Popen([os.path.join(BIN, "rprd"), "--state-dir", state, "--listen",
                                      "tcp:127.0.0.1:%d" % self.port, "--allow-networks", "127.0.0.0/8,::1/128",
                                      "--log-level", "warning"],
                                     stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log, cwd=state)
        for _ in range(200):
            try:
                urllib.request.urlopen(self.url + "/healthz", timeout=1).read()
                break
            except OSError:
                time.sleep(0.05)
        with open(os.path.join(state, "admin.token")) as f:
            self.token = f.read().strip()

    def call(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Authorization": "Bearer " + self.token,
                                              "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, None

    def runner(self):
        return self.call("GET", "/api/v1/namespaces/default/runners/ci")[1] or {}

    def cpu(self):
        with open("/proc/%d/stat" % self.proc.pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK

    def rss_mb(self):
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return 0

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(60)


def wait(pred, what, timeout=600):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.1)
    raise SystemExit("timed out waiting for " + what)


def by_endpoint(reqs):
    c = collections.Counter()
    for r in reqs:
        path = r["path"].split("?")[0]
        tail = path.split("/actions/", 1)[-1]
        if tail.startswith("runners/") and tail.split("/")[1].isdigit():
            tail = "runners/{id}"
        c["%s %s" % (r["method"], tail)] += 1
    return dict(sorted(c.items()))


def github_and_install(tmp, user):
    """The fake GitHub (repo acme/site, token PAT) serving the stand-in
    runner release, and the runners' install directory, owned by the ssh
    user."""
    install = os.path.join(tmp, "install")
    os.mkdir(install)
    shutil.chown(install, user=user)
    gh = FakeGitHub().start()
    gh.add_repo("acme", "site")
    gh.add_token(PAT)
    path, _ = build(tmp)
    os.chmod(path, 0o644)
    gh.runner_control("runner_release", path=path, version="2.321.0")
    return gh, install


def objects(gh, hosts, keys, user, install, replicas):
    out = [{"apiVersion": "rpr/v1", "kind": "Token", "metadata": {"name": "gh"},
            "spec": {"type": "github", "value": PAT}},
           {"apiVersion": "rpr/v1", "kind": "Repo", "metadata": {"name": "site"},
            "spec": {"provider": "github", "owner": "acme", "name": "site", "apiURL": gh.url,
                     "tokenRef": "gh", "interval": "24h"}}]
    for i, h in enumerate(hosts):
        out.append({"apiVersion": "rpr/v1", "kind": "Server",
                    "metadata": {"name": "host%d" % (i + 1), "labels": {"ci": "true"}},
                    "spec": {"transport": "ssh", "host": "127.0.0.1", "port": h.port, "user": user,
                             "identityFile": keys.client("ed25519"), "hostKey": h.pin("ed25519")}})
    out.append({"apiVersion": "rpr/v1", "kind": "Runner", "metadata": {"name": "ci"},
                "spec": {"repo": "site", "tokenRef": "gh", "servers": {"matchLabels": {"ci": "true"}},
                         "replicas": replicas, "installDir": install, "labels": ["bench"]}})
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--replicas", type=int, default=20)
    ap.add_argument("--hosts", type=int, default=4)
    ap.add_argument("--seconds", type=int, default=int(os.environ.get("BENCH_SECONDS", "120")))
    args = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="rpr-bench-runners-")
    os.chmod(tmp, 0o755)
    user = login_user()
    keys = Keys.generate(os.path.join(tmp, "keys"))
    hosts = [Sshd(None, host_keys=[keys.host("ed25519")], authorized=[keys.client_pub("ed25519")]).start()
             for _ in range(args.hosts)]
    gh, install = github_and_install(tmp, user)
    state = os.path.join(tmp, "state")
    os.mkdir(state)
    d = Rprd(state)
    n = args.replicas
    try:
        # ---- apply -> N idle
        t0 = time.time()
        st, _ = d.call("POST", "/api/v1/apply", objects(gh, hosts, keys, user, install, n))
        assert st == 200, st
        wait(lambda: d.runner().get("status", {}).get("readyReplicas") == n, "%d idle" % n)
        up = time.time() - t0
        reqs = gh.requests()
        print("apply -> %d idle over %d sshd hosts: %.1f s, %d GitHub requests %s"
              % (n, args.hosts, up, len(reqs), json.dumps(by_endpoint(reqs))))

        # ---- steady state
        time.sleep(35)  # the last starts settle
        gh.clear_requests()
        c0, w0 = d.cpu(), time.time()
        time.sleep(args.seconds)
        c1, w1 = d.cpu(), time.time()
        reqs = gh.requests()
        per_min = len(reqs) * 60 / (w1 - w0)
        print("steady state, %d s window: %.1f GitHub requests a minute %s; rprd CPU %.2f%% of one core, RSS %.0f MB"
              % (w1 - w0, per_min, json.dumps(by_endpoint(reqs)), 100 * (c1 - c0) / (w1 - w0), d.rss_mb()))
        print("  actions-runner-controller: one list call per scope per sync (sync period 1 min) -> 1 a minute "
              "for one scope; rpr: %.1f (the list is cached for syncInterval, at most 60 s; default 30 s)" % per_min)

        # ---- scale N -> 0 with 5 busy
        insts = d.runner()["status"]["instances"]
        busy = [i["name"] for i in insts[:5]]
        for name in busy:
            gh.runner_control("runner_job", name=name)
        wait(lambda: d.runner().get("status", {}).get("busyReplicas") == 5, "5 busy")
        gh.clear_requests()
        t0 = time.time()
        objs = objects(gh, hosts, keys, user, install, 0)
        d.call("POST", "/api/v1/apply", objs)
        wait(lambda: sorted(i["name"] for i in d.runner()["status"]["instances"]) == sorted(busy), "idle ones gone")
        idle_gone = time.time() - t0
        time.sleep(5)
        left = sorted(i["name"] for i in d.runner()["status"]["instances"])
        registered = sorted(r["name"] for r in gh.runners())
        print("scale %d -> 0 with 5 busy: the %d idle gone in %.1f s; after 5 s more, %d left (busy: %s), "
              "%d registered" % (n, n - 5, idle_gone, len(left), left == sorted(busy), len(registered)))
        t1 = time.time()
        for name in busy:
            gh.runner_control("runner_job_done", name=name)
        wait(lambda: not d.runner()["status"]["instances"], "all gone")
        reqs = gh.requests()
        print("  jobs over -> last gone in %.1f s; %d GitHub requests for the scale down %s"
              % (time.time() - t1, len(reqs), json.dumps(by_endpoint(reqs))))
        d.call("DELETE", "/api/v1/namespaces/default/runners/ci")
        wait(lambda: d.call("GET", "/api/v1/namespaces/default/runners/ci")[0] == 404, "deleted", 120)
    finally:
        d.stop()
        for h in hosts:
            h.cleanup()
        gh.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
