#!/usr/bin/env python3
"""autoscale.py [--hosts H] [--rounds R] [--rest S]: an autoscaled Runner
(min 0, max 60, idle 0, ephemeral) over H loopback sshd hosts (default 4),
against the fake GitHub (tests/github_fake.py, in this process) which
delivers signed workflow_job webhooks to rprd, with the stand-in runner
release (tests/integration/runner_release.py). Prints figures, no
pass/fail, for R rounds (default 3) and their ranges, beside the load
average:

  - bursts of 1, 10 and 50 queued jobs (each runs 15 s): the time from the
    queued webhook to each job taken by a runner (p50, max); runners
    started for the burst, how many took a job, how many were stopped
    without one (the target: started = jobs, none stopped for nothing)
  - at rest (no job) for S seconds (default 60, or $BENCH_SECONDS): GitHub
    requests a minute, by endpoint (the poll of queued runs is every 1 m
    and costs 304s when nothing changed)

Run as root (the sshd hosts log in as a plain user, as the integration
tests do). Expects bin/rprd (make all; RPR_BIN_DIR overrides).
"""

import argparse
import os
import shutil
import signal
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from runners import REPO, Rprd, by_endpoint, github_and_install, objects, wait  # noqa: E402

sys.path.insert(0, os.path.join(REPO, "tests"))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))

from sshd import Keys, Sshd, login_user  # noqa: E402

HOOK_SECRET = "bench-autoscale-hook-secret-0123456789"
BURSTS = (1, 10, 50)
JOB_SECONDS = 15


def autoscale_objects(gh, hosts, keys, user, install):
    objs = objects(gh, hosts, keys, user, install, 0)
    r = objs[-1]["spec"]
    del r["replicas"]
    r["autoscale"] = {"min": 0, "max": 60, "idle": 0, "scaleDownDelay": "30s", "webhookTokenRef": "hooks"}
    objs.insert(0, {"apiVersion": "rpr/v1", "kind": "Token", "metadata": {"name": "hooks"},
                    "spec": {"type": "webhook", "value": HOOK_SECRET}})
    return objs


def kill_runners(install):
    """The stand-in runners left under install (their fake is gone)."""
    for p in os.listdir("/proc"):
        try:
            if p.isdigit() and os.readlink("/proc/%s/cwd" % p).startswith(install):
                os.kill(int(p), signal.SIGKILL)
        except OSError:
            pass


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def burst(d, gh, n):
    """Queues n jobs; returns the figures once every job ended and the
    runners are back to none."""
    started0 = len(gh.runner_attr("jits"))
    decisions0 = d.runner().get("status", {}).get("autoscale", {}).get("decisions", 0)
    gone0 = len(gh.runner_attr("gone"))
    ids = set(gh.queue_jobs(repo="acme/site", count=n, labels=["self-hosted", "linux", "bench"],
                            duration=JOB_SECONDS))
    wait(lambda: all(j["taken_at"] for j in gh.jobs() if j["id"] in ids), "%d jobs taken" % n)
    # Scale-up decisions: those made before the first job of the burst ended.
    ups = d.runner().get("status", {}).get("autoscale", {}).get("decisions", 0) - decisions0
    if any(j["done_at"] for j in gh.jobs() if j["id"] in ids):
        ups = None  # a job ended before all were taken: downs mixed in
    wait(lambda: all(j["status"] == "completed" for j in gh.jobs() if j["id"] in ids), "%d jobs done" % n)
    wait(lambda: not d.runner().get("status", {}).get("instances") and not gh.runners(), "back to none")
    jobs = [j for j in gh.jobs() if j["id"] in ids]
    waits = [j["taken_at"] - j["queued_at"] for j in jobs]
    started = len(gh.runner_attr("jits")) - started0
    took = len({j["runner"] for j in jobs})
    # Ephemeral runners leave GitHub by themselves after their job; a
    # DELETE from rpr is a runner stopped (with or without a job).
    deleted = len(gh.runner_attr("gone")) - gone0
    decisions = d.runner().get("status", {}).get("autoscale", {}).get("decisions", 0) - decisions0
    return {"n": n, "p50": pct(waits, 50), "max": max(waits), "started": started, "took": took,
            "stopped_without_job": started - took, "deleted": deleted, "decisions": decisions, "ups": ups}


def at_rest(d, gh, seconds):
    time.sleep(5)
    gh.clear_requests()
    w0 = time.time()
    time.sleep(seconds)
    reqs = gh.requests()
    return len(reqs) * 60 / (time.time() - w0), by_endpoint(reqs)


def one_round(args, r, user, keys, hosts):
    tmp = tempfile.mkdtemp(prefix="rpr-bench-autoscale-")
    os.chmod(tmp, 0o755)
    gh, install = github_and_install(tmp, user)
    state = os.path.join(tmp, "state")
    os.mkdir(state)
    d = Rprd(state)
    out = {"bursts": []}
    try:
        st, _ = d.call("POST", "/api/v1/apply", autoscale_objects(gh, hosts, keys, user, install))
        assert st == 200, st
        gh.runner_control("hook", url=d.url + "/hooks/github", secret=HOOK_SECRET)
        wait(lambda: "autoscale" in d.runner().get("status", {}), "the first pass")
        for n in BURSTS:
            b = burst(d, gh, n)
            out["bursts"].append(b)
            print("round %d burst %2d: webhook -> taken p50 %.2f s, max %.2f s; runners started %d, took a job %d, "
                  "stopped without one %d; %d scale decisions (up: %s); load %s"
                  % (r, n, b["p50"], b["max"], b["started"], b["took"], b["stopped_without_job"], b["decisions"],
                     "?" if b["ups"] is None else b["ups"], load()), flush=True)
        per_min, eps = at_rest(d, gh, args.rest)
        out["rest"] = per_min
        print("round %d at rest %d s: %.1f GitHub requests a minute %s; load %s"
              % (r, args.rest, per_min, eps, load()), flush=True)
        decisions = d.runner().get("status", {}).get("autoscale", {}).get("decisions")
        out["decisions"] = decisions
    finally:
        d.stop()
        kill_runners(install)
        gh.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def load():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def span(xs, fmt):
    return (fmt % min(xs)) + ("" if min(xs) == max(xs) else " - " + fmt % max(xs))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hosts", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--rest", type=int, default=int(os.environ.get("BENCH_SECONDS", "60")))
    args = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="rpr-bench-autoscale-keys-")
    user = login_user()
    keys = Keys.generate(os.path.join(tmp, "keys"))
    hosts = [Sshd(None, host_keys=[keys.host("ed25519")], authorized=[keys.client_pub("ed25519")]).start()
             for _ in range(args.hosts)]
    rounds = []
    try:
        for r in range(1, args.rounds + 1):
            rounds.append(one_round(args, r, user, keys, hosts))
    finally:
        for h in hosts:
            h.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)
    print("over %d rounds, %d sshd hosts (load now %s):" % (len(rounds), args.hosts, load()))
    for i, n in enumerate(BURSTS):
        bs = [r["bursts"][i] for r in rounds]
        print("  burst %2d: webhook -> job taken p50 %s s, max %s s; started %s, stopped without a job %s, "
              "scale decisions %s (up: %s)"
              % (n, span([b["p50"] for b in bs], "%.2f"), span([b["max"] for b in bs], "%.2f"),
                 span([b["started"] for b in bs], "%d"), span([b["stopped_without_job"] for b in bs], "%d"),
                 span([b["decisions"] for b in bs], "%d"),
                 ",".join("?" if b["ups"] is None else str(b["ups"]) for b in bs)))
    print("  at rest: %s GitHub requests a minute" % span([r["rest"] for r in rounds], "%.1f"))


if __name__ == "__main__":
    main()
