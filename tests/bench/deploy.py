#!/usr/bin/env python3
"""deploy.py [--commits N] [--servers M] [--bindings-per-server K]: Bindings
under load. Prints figures, no pass/fail.

1. Commit-to-command latency: one Binding on one Server over ssh (a
   loopback sshd, pooled session). N times (default 100): the fake GitHub's
   branch head moves, a signed push webhook is sent, and the command — `date
   +%s.%N` — prints when it started on the server. Latency = that time minus
   the time the webhook was sent; median, p99 and max. Each commit waits for
   its run to finish, so none is coalesced with the next.
2. M Bindings on M Servers (default 100, one loopback sshd each) all
   changing at once: one webhook moves the Repo they share, and the clock
   runs until every one of the M Runs has Succeeded. The same command on the
   same M sshd with parallel-ssh -p 32 alongside. Two commits: the first
   after the Servers' checks (sessions already pooled), the second likewise.
3. With --bindings-per-server K > 1: M x K Bindings on the M Servers (e.g.
   1,000 on 100), one commit for all, against M Bindings alone: the time
   until every Run is done (seen on a watch stream) and rprd's CPU per Run
   (user + system from /proc), which must stay flat as Bindings are added;
   and parallel-ssh running the same M x K commands (each host K times).

Everyone logs in as a plain user whose shell is /bin/sh and uses the key
exchange libssh2 uses (see fanout.sh). Expects bin/rprd (make all;
RPR_BIN_DIR overrides) and parallel-ssh (make bench-deps).
"""

import argparse
import hashlib
import hmac
import json
import os
import pwd
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
BIN = os.environ.get("RPR_BIN_DIR", os.path.join(REPO, "bin"))
FAKE = os.path.join(REPO, "tests", "github_fake.py")
PUSH = os.path.join(REPO, "tests", "fixtures", "github", "webhooks", "push.4.json")
USER = os.environ.get("RPR_BENCH_USER", "rprbench")
SECRET = "bench-webhook-secret"
PAT = "ghp_bench0123456789abcdefghijklmnopqrstuv"  # anonymous: 60 requests an hour, as GitHub
KEX = "curve25519-sha256"
COMMAND = "date +%s.%N"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(url, body=None, headers=None, method=None):
    data = body if body is None or isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method or ("POST" if data is not None else "GET"),
                                 headers=dict({"Content-Type": "application/json"}, **(headers or {})))
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def sha(i):
    return hashlib.sha1(b"bench-%d" % i).hexdigest()


class World:
    """The processes of one benchmark: sshds, the fake GitHub, rprd."""

    def __init__(self):
        self.tmp = tempfile.mkdtemp(prefix="rpr-bench-deploy-")
        os.chmod(self.tmp, 0o755)
        self.procs = []
        self.ports = []
        self.ensure_user()
        self.host_key = self.keygen("host")
        self.client_key = self.keygen("client")
        fp = subprocess.run(["ssh-keygen", "-lf", self.host_key + ".pub"], capture_output=True, text=True,
                            check=True).stdout.split()[1]
        self.pin = "ssh-ed25519 " + fp

    def ensure_user(self):
        try:
            pwd.getpwnam(USER)
        except KeyError:
            subprocess.run(["useradd", "-m", "-s", "/bin/sh", USER], check=True)
        subprocess.run(["usermod", "-p", "*", USER], check=True)  # sshd refuses a locked account
        os.makedirs("/run/sshd", exist_ok=True)

    def keygen(self, name):
        path = os.path.join(self.tmp, name)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "bench-" + name, "-f", path],
                       check=True)
        return path

    def start_sshds(self, n):
        for i in range(n):
            port = free_port()
            conf = os.path.join(self.tmp, "sshd_config.%d" % port)
            with open(conf, "w") as f:
                f.write("Port %d\nListenAddress 127.0.0.1\nHostKey %s\nAuthorizedKeysFile %s.pub\nUsePAM no\n"
                        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nStrictModes no\n"
                        "KexAlgorithms %s\nMaxStartups 200:30:400\nPidFile %s/sshd.%d.pid\nLogLevel ERROR\n"
                        % (port, self.host_key, self.client_key, KEX, self.tmp, port))
            self.procs.append(subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", conf],
                                               stderr=open(os.path.join(self.tmp, "sshd.log"), "a")))
            self.ports.append(port)
        for port in self.ports:
            for _ in range(200):
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    time.sleep(0.02)

    def start_fake(self):
        fake = subprocess.Popen([sys.executable, FAKE, "--port", "0"], stdout=subprocess.PIPE, text=True)
        self.procs.append(fake)
        self.fake = "http://127.0.0.1:%d" % int(fake.stdout.readline())
        request(self.fake + "/_fake/tokens", {"token": PAT, "valid": True})
        request(self.fake + "/_fake/repos", {"owner": "Codertocat", "name": "Hello-World",
                                             "branches": {"master": {"sha": sha(0)}}})

    def start_rprd(self):
        port = free_port()
        state = os.path.join(self.tmp, "state")
        self.rprd = subprocess.Popen([os.path.join(BIN, "rprd"), "--state-dir", state, "--allow-networks", "127.0.0.0/8,::1/128", "--listen",
                                      "tcp:127.0.0.1:%d" % port], stdout=subprocess.DEVNULL,
                                     stderr=open(os.path.join(self.tmp, "rprd.log"), "w"))
        self.procs.append(self.rprd)
        self.api = "http://127.0.0.1:%d" % port
        for _ in range(200):
            try:
                urllib.request.urlopen(self.api + "/healthz", timeout=1)
                break
            except OSError:
                time.sleep(0.05)
        self.auth = {"Authorization": "Bearer " + open(os.path.join(state, "admin.token")).read().strip()}

    def apply(self, objs):
        status, body = request(self.api + "/api/v1/apply", objs, self.auth)
        assert status == 200, body[:500]

    def get(self, path):
        status, body = request(self.api + path, headers=self.auth)
        assert status == 200, body[:500]
        return json.loads(body)

    def push(self, commit):
        """Moves the head and sends the signed webhook; returns when it was sent."""
        request(self.fake + "/_fake/head", {"owner": "Codertocat", "name": "Hello-World", "branch": "master",
                                            "sha": commit, "message": "bench"})
        with open(PUSH, "rb") as f:
            body = json.loads(f.read())
        body["after"] = commit
        data = json.dumps(body).encode()
        sig = "sha256=" + hmac.new(SECRET.encode(), data, hashlib.sha256).hexdigest()
        t = time.time()
        status, answer = request(self.api + "/hooks/github", data,
                                 {"X-GitHub-Event": "push", "X-GitHub-Delivery": commit, "X-Hub-Signature-256": sig})
        assert status == 202, answer
        return t

    def stop(self):
        for p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(self.tmp, ignore_errors=True)


def base_objects(w):
    return [{"apiVersion": "rpr/v1", "kind": "Token", "metadata": {"name": "hook"},
             "spec": {"type": "webhook", "value": SECRET}},
            {"apiVersion": "rpr/v1", "kind": "Token", "metadata": {"name": "gh"},
             "spec": {"type": "github", "value": PAT}},
            {"apiVersion": "rpr/v1", "kind": "Repo", "metadata": {"name": "site"},
             "spec": {"provider": "github", "url": "https://github.com/Codertocat/Hello-World", "apiURL": w.fake,
                      "branch": "master", "interval": "24h", "tokenRef": "gh"}}]


def server(w, name, port):
    return {"apiVersion": "rpr/v1", "kind": "Server", "metadata": {"name": name, "labels": {"bench": "deploy"}},
            "spec": {"host": "127.0.0.1", "port": port, "user": USER, "identityFile": w.client_key,
                     "hostKey": w.pin, "check": {"interval": "1h"}}}


def binding(name, srv):
    return {"apiVersion": "rpr/v1", "kind": "Binding", "metadata": {"name": name},
            "spec": {"repo": "site", "server": srv, "command": COMMAND, "deployOnCreate": False}}


def runs_done(w, commit):
    items = w.get("/api/v1/namespaces/default/runs")["items"]
    return [r for r in items if r["spec"].get("commit") == commit and r.get("status", {}).get("phase") in
            ("Succeeded", "Failed", "Canceled", "Interrupted")]


class RunWatch:
    """Counts finished Runs of one commit from a watch stream opened before
    the push: the clock stops at the event that finishes the last one, and
    no listing of every Run is repeated while the runs go (that cost rprd
    and this script CPU that the machine's two cores also give the runs)."""

    def __init__(self, w):
        rv = w.get("/api/v1/servers?labelSelector=none%3Dnone")["metadata"]["resourceVersion"]
        req = urllib.request.Request(w.api + "/api/v1/namespaces/default/runs?watch=1&resourceVersion=" + rv,
                                     headers=w.auth)
        self.resp = urllib.request.urlopen(req, timeout=300)

    def wait(self, commit, n):
        done = {}
        while sum(1 for p in done.values() if p) < n:
            line = self.resp.readline()
            if not line:
                raise SystemExit("deploy: the watch ended")
            ev = json.loads(line)
            o = ev["object"]
            if o["spec"].get("commit") != commit:
                continue
            phase = o.get("status", {}).get("phase")
            done[o["metadata"]["name"]] = phase in ("Succeeded", "Failed", "Canceled", "Interrupted")
        return time.time()

    def close(self):
        self.resp.close()


def wait_reachable(w, n):
    for _ in range(1200):
        items = w.get("/api/v1/servers")["items"]
        if sum(1 for o in items if o.get("status", {}).get("phase") == "Reachable") == n:
            return
        time.sleep(0.1)
    raise SystemExit("deploy: not every server became Reachable")


def wait_bound(w, n):
    for _ in range(1200):
        items = w.get("/api/v1/bindings")["items"]
        if sum(1 for o in items if o.get("status", {}).get("servers", {})) == n:
            return
        time.sleep(0.1)
    raise SystemExit("deploy: not every binding saw the repo")


def latency(commits):
    w = World()
    try:
        w.start_sshds(1)
        w.start_fake()
        w.start_rprd()
        w.apply(base_objects(w) + [server(w, "web-1", w.ports[0]), binding("deploy", "web-1")])
        wait_reachable(w, 1)
        wait_bound(w, 1)
        lat = []
        for i in range(1, commits + 6):
            c = sha(i)
            sent = w.push(c)
            deadline = time.time() + 30
            while not runs_done(w, c):
                if time.time() > deadline:
                    raise SystemExit("deploy: no run for commit %d" % i)
                time.sleep(0.005)
            run = runs_done(w, c)[0]
            status, log = request(w.api + "/api/v1/namespaces/default/runs/%s/log" % run["metadata"]["name"],
                                  headers=w.auth)
            started = float([ln.split(" ", 2)[2] for ln in log.decode().splitlines() if " out " in ln][0])
            if i > 5:  # the first ones warm the session and the caches
                lat.append((started - sent) * 1000)
        lat.sort()
        return {"median": statistics.median(lat), "p99": lat[int(len(lat) * 0.99) - 1], "max": lat[-1],
                "n": len(lat)}
    finally:
        w.stop()


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def fan_out(m, k=1, pssh_too=True):
    """m Servers, k Bindings on each; two commits. Returns the seconds of
    each round, rprd's CPU seconds of each, and parallel-ssh's times."""
    w = World()
    try:
        w.start_sshds(m)
        w.start_fake()
        w.start_rprd()
        names = ["web-%03d" % i for i in range(m)]
        w.apply(base_objects(w) + [server(w, n, p) for n, p in zip(names, w.ports)] +
                [binding("deploy-%03d-%d" % (i, j), n) for i, n in enumerate(names) for j in range(k)])
        wait_reachable(w, m)
        wait_bound(w, m * k)
        rounds, cpu = [], []
        for r in (1, 2):
            c = sha(1000 + r)
            watch = RunWatch(w)
            t0, c0 = time.time(), cpu_seconds(w.rprd.pid)
            w.push(c)
            rounds.append(watch.wait(c, m * k) - t0)
            cpu.append(cpu_seconds(w.rprd.pid) - c0)
            watch.close()
            ok = sum(1 for x in runs_done(w, c) if x["status"]["phase"] == "Succeeded")
            assert ok == m * k, "%d of %d succeeded" % (ok, m * k)
        if not pssh_too:
            return rounds, cpu, None

        hosts = os.path.join(w.tmp, "hosts")
        with open(hosts, "w") as f:  # each host k times: the same commands as the Runs
            f.write("".join("127.0.0.1:%d\n" % p for p in w.ports for _ in range(k)))
        opts = ("-o KexAlgorithms=%s -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "
                "-o LogLevel=ERROR -i %s" % (KEX, w.client_key))
        pssh = []
        for _ in range(2):
            t0 = time.time()
            subprocess.run(["parallel-ssh", "-h", hosts, "-p", "32", "-l", USER, "-t", "60", "-x", opts, COMMAND],
                           check=True, stdout=subprocess.DEVNULL)
            pssh.append(time.time() - t0)
        return rounds, cpu, pssh
    finally:
        w.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--commits", type=int, default=100)
    ap.add_argument("--servers", type=int, default=100)
    ap.add_argument("--bindings-per-server", type=int, default=1)
    args = ap.parse_args()
    if not shutil.which("parallel-ssh"):
        raise SystemExit("deploy: parallel-ssh missing (make bench-deps)")

    lat = latency(args.commits)
    rounds, cpu, pssh = fan_out(args.servers)
    print()
    print("commit-to-command: signed push webhook sent -> command started on the server (pooled ssh, %d commits)"
          % lat["n"])
    print("  median %.1f ms   p99 %.1f ms   max %.1f ms" % (lat["median"], lat["p99"], lat["max"]))
    print()
    print("%d bindings on %d servers, one commit for all: webhook sent -> every run Succeeded (seconds), %d CPUs"
          % (args.servers, args.servers, os.cpu_count()))
    print("  %-34s %8s %8s" % ("", "first", "second"))
    print("  %-34s %8.2f %8.2f" % ("rpr (webhook, check, %d runs)" % args.servers, rounds[0], rounds[1]))
    print("  %-34s %8.2f %8.2f" % ("parallel-ssh -p 32 (command only)", pssh[0], pssh[1]))
    k = args.bindings_per_server
    if k > 1:
        many, many_cpu, many_pssh = fan_out(args.servers, k)
        m = args.servers
        print()
        print("bindings per server: every run done (s) and rprd CPU per run (ms), second commit")
        print("  %6d bindings on %d servers   %6.2f s   %6.2f ms" % (m, m, rounds[1], cpu[1] / m * 1000))
        print("  %6d bindings on %d servers   %6.2f s   %6.2f ms" % (m * k, m, many[1], many_cpu[1] / (m * k) * 1000))
        print("  parallel-ssh -p 32, the same %d commands (%d a host)   %6.2f s" % (m * k, k, many_pssh[1]))


if __name__ == "__main__":
    main()
