#!/usr/bin/env python3
"""pipeline_history.py [--tasks 200] [--history 50] [--updates 100]: what a
Pipeline's reconcile costs as its history of jobs grows. Prints figures, no
pass/fail.

One Pipeline of N independent trivial tasks (`true`, on rprd's host) keeps
its last H jobs. Jobs are run one after another; when 1, H/5 and H jobs are
in its history, the Pipeline is re-applied U times with a changed label
(each apply wakes its reconcile: admission, trimming and its status, all of
which read its jobs), and rprd's CPU time (utime + stime from /proc) per
update is printed. Reconcile cost independent of history: the three
figures stay the same.

Expects bin/rprd (make all; RPR_BIN_DIR overrides).
"""

import argparse
import shutil
import tempfile
import time

from deploy import cpu_seconds
from pipeline import request, start_rprd


def pipeline(n, history, label):
    return {"apiVersion": "rpr/v1", "kind": "Pipeline", "metadata": {"name": "hist", "labels": {"round": str(label)}},
            "spec": {"tasks": {"t%03d" % i: {"script": "true"} for i in range(n)}, "parallelism": 8,
                     "queueLimit": 0, "history": history}}


def run_job(api, token):
    status, run = request(api + "/api/v1/namespaces/default/pipelines/hist/runs", token, {})
    assert status == 201, run
    path = "/api/v1/namespaces/default/runs/" + run["metadata"]["name"]
    while True:
        _, j = request(api + path, token)
        if j.get("status", {}).get("phase") in ("Succeeded", "Failed", "Canceled", "Interrupted"):
            assert j["status"]["phase"] == "Succeeded", j["status"]
            return
        time.sleep(0.02)


def settle(api, token, label):
    """Until the reconcile of the last update wrote the Pipeline's status."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        _, p = request(api + "/api/v1/namespaces/default/pipelines/hist", token)
        if p["status"].get("observedGeneration") is not None and \
                p["metadata"]["labels"]["round"] == str(label) and p["status"].get("running") == 0:
            return
        time.sleep(0.01)


def measure(api, token, pid, args, first_label):
    """rprd CPU per update of the Pipeline (apply + reconcile), ms."""
    time.sleep(0.5)  # what the last job left (flush, trim) is done
    c0 = cpu_seconds(pid)
    for k in range(args.updates):
        status, body = request(api + "/api/v1/apply", token, [pipeline(args.tasks, args.history, first_label + k)])
        assert status == 200, body
        time.sleep(0.02)  # one reconcile per update, not one for many
    settle(api, token, first_label + args.updates - 1)
    time.sleep(0.5)
    return (cpu_seconds(pid) - c0) / args.updates * 1000


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=200)
    ap.add_argument("--history", type=int, default=50)
    ap.add_argument("--updates", type=int, default=100)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="rpr-bench-history-")
    rprd = None
    try:
        rprd, api, token = start_rprd(tmp)
        status, body = request(api + "/api/v1/apply", token, [pipeline(args.tasks, args.history, 0)])
        assert status == 200, body

        rows, done, label = [], 0, 1
        for want in sorted({1, max(1, args.history // 5), args.history}):
            while done < want:
                run_job(api, token)
                done += 1
            rows.append((want, measure(api, token, rprd.pid, args, label)))
            label += args.updates
        print()
        print("a Pipeline of %d tasks, history %d, %d updates each (rprd CPU per update: apply + reconcile)"
              % (args.tasks, args.history, args.updates))
        print("  %-22s %12s" % ("jobs in its history", "ms / update"))
        for n, ms in rows:
            print("  %-22d %12.2f" % (n, ms))
    finally:
        if rprd:
            rprd.terminate()
            rprd.wait(60)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
