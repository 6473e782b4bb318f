#!/usr/bin/env python3
"""pipeline.py [--parallel N] [--repeat R]: the cost of running pipeline
tasks, next to make -j on the same graph. Prints figures, no pass/fail.

Two graphs of trivial tasks (the script is `true`):
  - a DAG of 200 tasks: 20 layers of 10, each task depending on the whole
    previous layer;
  - 1,000 independent tasks.
rpr runs each as one job of a Pipeline (tasks on rprd's host, parallelism
N, default 8) through the API: the time from the POST that starts it to
the job seen Succeeded. make runs a generated Makefile with the same graph
and recipes, make -jN. The ratio rpr/make is the per-task overhead rpr
adds (target: within 2x). Best of R runs (default 3) each.

Expects bin/rprd (make all; RPR_BIN_DIR overrides).
"""

import argparse
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
BIN = os.environ.get("RPR_BIN_DIR", os.path.join(REPO, "bin"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(url, token, body=None, method=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method or ("POST" if data is not None else "GET"),
                                 headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def dag():
    tasks = {}
    for layer in range(20):
        for i in range(10):
            t = {"script": "true"}
            if layer:
                t["dependsOn"] = ["t%02d_%d" % (layer - 1, j) for j in range(10)]
            tasks["t%02d_%d" % (layer, i)] = t
    return tasks


def flat():
    return {"t%04d" % i: {"script": "true"} for i in range(1000)}


def makefile(tasks, path):
    with open(path, "w") as f:
        f.write(".PHONY: all %s\nall: %s\n" % (" ".join(tasks), " ".join(tasks)))
        for name, t in tasks.items():
            f.write("%s: %s\n\t@true\n" % (name, " ".join(t.get("dependsOn", []))))


def time_make(path, n, repeat):
    best = None
    for _ in range(repeat):
        t0 = time.monotonic()
        subprocess.run(["make", "-s", "-j%d" % n, "-f", path, "all"], check=True)
        t = time.monotonic() - t0
        best = t if best is None else min(best, t)
    return best


def time_rpr(api, token, name, tasks, n, repeat):
    status, body = request(api + "/api/v1/apply", token, [{
        "apiVersion": "rpr/v1", "kind": "Pipeline", "metadata": {"name": name},
        "spec": {"tasks": tasks, "parallelism": n, "queueLimit": 0, "history": 5}}])
    assert status == 200, body
    best = None
    for _ in range(repeat):
        t0 = time.monotonic()
        status, run = request(api + "/api/v1/namespaces/default/pipelines/%s/runs" % name, token, {})
        assert status == 201, run
        path = "/api/v1/namespaces/default/runs/" + run["metadata"]["name"]
        while True:
            _, j = request(api + path, token)
            phase = j.get("status", {}).get("phase")
            if phase in ("Succeeded", "Failed", "Canceled", "Interrupted"):
                break
            time.sleep(0.005)
        t = time.monotonic() - t0
        assert phase == "Succeeded", j.get("status")
        best = t if best is None else min(best, t)
    return best


def start_rprd(tmp):
    """rprd on a state dir in tmp, ready: (process, API URL, admin token)."""
    port = free_port()
    state = os.path.join(tmp, "state")
    rprd = subprocess.Popen([os.path.join(BIN, "rprd"), "--state-dir", state, "--allow-networks", "127.0.0.0/8,::1/128",
                             "--listen", "tcp:127.0.0.1:%d" % port], stdout=subprocess.DEVNULL,
                            stderr=open(os.path.join(tmp, "rprd.log"), "w"), cwd=tmp)
    api = "http://127.0.0.1:%d" % port
    for _ in range(200):
        try:
            urllib.request.urlopen(api + "/healthz", timeout=1)
            break
        except OSError:
            time.sleep(0.05)
    return rprd, api, open(os.path.join(state, "admin.token")).read().strip()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--parallel", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="rpr-bench-pipeline-")
    rprd = None
    try:
        rprd, api, token = start_rprd(tmp)

        rows = []
        for label, name, tasks in (("DAG: 200 tasks, 20 layers of 10", "dag", dag()),
                                   ("1,000 independent tasks", "flat", flat())):
            mk = os.path.join(tmp, name + ".mk")
            makefile(tasks, mk)
            m = time_make(mk, args.parallel, args.repeat)
            r = time_rpr(api, token, name, tasks, args.parallel, args.repeat)
            rows.append((label, r, m, len(tasks)))
        print()
        print("trivial tasks (`true`) on this host, %d at a time, best of %d, %d CPUs (seconds)"
              % (args.parallel, args.repeat, os.cpu_count()))
        print("  %-34s %8s %8s %7s %16s" % ("", "rpr", "make -j", "ratio", "rpr per task"))
        for label, r, m, n in rows:
            print("  %-34s %8.3f %8.3f %6.2fx %13.2f ms" % (label, r, m, r / m, r / n * 1000))
    finally:
        if rprd:
            rprd.terminate()
            rprd.wait(60)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
