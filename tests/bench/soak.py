#!/usr/bin/env python3
"""soak.py [--kills N] [--writers W] [--seed S]: kill -9 rprd at random
points, again and again, while it works; prints what happened. The long
form of tests/integration/test_crash_safety.py's soak.

While the daemon runs: W clients apply new objects as fast as they are
answered, and two Bindings run a command that holds a lock on the host
(flock -n) for 1 to 3 s, one on a `transport: local` Server and one over
ssh to a loopback sshd; each is triggered again before every kill, and
retries what a kill interrupted. After the last restart the soak waits for
every Run to end, then counts:

  kills              how often rprd was killed (SIGKILL)
  writes acked       applies rprd answered 200
  writes lost        of those, absent after the restarts (must be 0)
  overlaps           a command that found the lock taken: two copies at
                     once on one host (must be 0)
  runs               by phase; Interrupted ones by what was left of them
  unstated           Runs without a phase, reason or message (must be 0)
  left running       commands still running after the last restart (must be 0)
  integrity_check    SQLite's verdict on state.db at the end

Exit status 1 when any "must be 0" is not. Uses bin/rprd (make all;
RPR_BIN_DIR overrides) and the integration tests' sshd helper (as root it
logs in as a plain user, made if missing).
"""

import argparse
import collections
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
os.environ.setdefault("RPR_BIN_DIR", os.path.join(REPO, "bin"))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))

from conftest import Rprd, server  # noqa: E402
from sshd import Keys, Sshd, login_user  # noqa: E402
from test_repos import GitRepo  # noqa: E402

STATED = ("Succeeded", "Failed", "Canceled", "Interrupted")


def locked(host_dir, name):
    return ("exec 9>>%(d)s/%(n)s.lock; if ! flock -n 9; then echo overlap >> %(d)s/%(n)s.overlaps; exit 3; fi; "
            "sleep $(($$ %% 3 + 1))" % {"d": host_dir, "n": name})


def binding(name, command, srv):
    return {"apiVersion": "rpr/v1", "kind": "Binding", "metadata": {"name": name},
            "spec": {"repo": "site", "server": srv, "command": command, "retries": 100,
                     "backoff": {"base": "1s", "max": "1s"}, "history": 1000}}


def runs(d):
    items = d.get("/api/v1/namespaces/default/runs").json()["items"]
    return [r for r in items if r["spec"].get("binding") in ("loc", "rem")]


class Writers:
    """Clients applying new objects; acked[name] = resourceVersion answered."""

    def __init__(self, d, n):
        self.d, self.n = d, n
        self.acked = {}
        self.serial = 0
        self.lock = threading.Lock()

    def start(self):
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.run) for _ in range(self.n)]
        for t in self.threads:
            t.start()

    def run(self):
        while not self.stop.is_set():
            with self.lock:
                self.serial += 1
                name = "soak-%d" % self.serial
            obj = server(name)
            obj["spec"]["active"] = False  # nothing to check: only the store is under test
            try:
                r = self.d.request("POST", "/api/v1/apply", body=[obj])
            except OSError:
                return  # rprd died under the request: not acknowledged
            if r.status != 200:
                return
            self.acked[name] = int(r.json()["items"][0]["resourceVersion"])

    def join(self):
        self.stop.set()
        for t in self.threads:
            t.join()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kills", type=int, default=100)
    ap.add_argument("--writers", type=int, default=3)
    ap.add_argument("--seed", type=int, default=16)
    args = ap.parse_args()
    rng = random.Random(args.seed)

    tmp = tempfile.mkdtemp(prefix="rpr-soak-")
    host_dir = os.path.join(tmp, "host")
    os.mkdir(host_dir)
    os.chmod(tmp, 0o755)
    os.chmod(host_dir, 0o777)
    keys = Keys.generate(os.path.join(tmp, "keys"))
    sshd = Sshd(None, host_keys=[keys.host("ed25519")], authorized=[keys.client_pub("ed25519")]).start()
    git = GitRepo(os.path.join(tmp, "git"))
    git.commit("first")
    d = Rprd(state_dir=os.path.join(tmp, "state"))
    os.mkdir(d.state_dir, 0o700)
    d.start()
    try:
        d.apply([{"apiVersion": "rpr/v1", "kind": "Repo", "metadata": {"name": "site"},
                  "spec": {"provider": "git", "url": git.url, "branch": "main", "interval": "1h"}},
                 {"apiVersion": "rpr/v1", "kind": "Server", "metadata": {"name": "a"},
                  "spec": {"transport": "local", "check": {"interval": "1h"}}},
                 {"apiVersion": "rpr/v1", "kind": "Server", "metadata": {"name": "web-1"},
                  "spec": {"transport": "ssh", "host": "127.0.0.1", "port": sshd.port, "user": login_user(),
                           "identityFile": keys.client("ed25519"), "hostKey": sshd.pin("ed25519"),
                           "check": {"interval": "1h", "retries": 0, "retryInterval": "1s"}}}])
        time.sleep(1)
        d.apply([binding("loc", locked(host_dir, "loc"), "a"), binding("rem", locked(host_dir, "rem"), "web-1")])
        writers = Writers(d, args.writers)
        for k in range(args.kills):
            # A trigger during a run is only queued: let the last ones end
            # (or a retry start) first, so that every round starts runs.
            quiet = time.time() + 3
            while time.time() < quiet and any(r.get("status", {}).get("phase") == "Running" for r in runs(d)):
                time.sleep(0.1)
            writers.start()
            for b in ("loc", "rem"):
                d.request("POST", "/api/v1/namespaces/default/bindings/%s/trigger" % b, body={})
            time.sleep(rng.uniform(0.1, 1.5))
            d.kill()
            writers.join()
            d.start()
            print("kill %d/%d: %d writes acked so far" % (k + 1, args.kills, len(writers.acked)), flush=True)

        deadline = time.time() + 600
        while time.time() < deadline:
            rs = runs(d)
            if all(r.get("status", {}).get("phase") in STATED for r in rs):
                time.sleep(3)  # longer than the backoff: no retry is coming
                if len(runs(d)) == len(rs):
                    break
            time.sleep(0.5)
        rs = runs(d)
        have = {o["metadata"]["name"]: int(o["metadata"]["resourceVersion"])
                for o in d.get("/api/v1/servers").json()["items"]}
        lost = [n for n, rv in writers.acked.items() if have.get(n, 0) < rv]
        overlaps = sum(len(open(os.path.join(host_dir, f)).read().split())
                       for f in os.listdir(host_dir) if f.endswith(".overlaps"))
        phases = collections.Counter(r.get("status", {}).get("phase") for r in rs)
        leftovers = collections.Counter(r["status"].get("leftover") for r in rs
                                        if r.get("status", {}).get("phase") == "Interrupted")
        unstated = [r["metadata"]["name"] for r in rs
                    if not (r.get("status", {}).get("phase") in STATED and r["status"].get("reason")
                            and r["status"].get("message"))]
        left = subprocess.run(["pgrep", "-f", host_dir], capture_output=True, text=True).stdout.split()
        con = sqlite3.connect("file:%s?mode=ro" % os.path.join(d.state_dir, "state.db"), uri=True)
        integrity = con.execute("PRAGMA integrity_check").fetchone()[0]
        con.close()
    finally:
        d.stop()
        sshd.cleanup()

    print("kills            %d" % args.kills)
    print("writes acked     %d" % len(writers.acked))
    print("writes lost      %d" % len(lost))
    print("overlaps         %d" % overlaps)
    print("runs             %d  %s" % (len(rs), dict(phases)))
    print("interrupted      %s" % dict(leftovers))
    print("unstated         %d" % len(unstated))
    print("left running     %d" % len(left))
    print("integrity_check  %s" % integrity)
    shutil.rmtree(tmp, ignore_errors=True)
    bad = lost or overlaps or unstated or left or integrity != "ok"
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
