"""Pipelines end to end: a real rprd (the sanitizer build) running jobs of
script tasks on its own host (and on a real sshd for the offline case).

DAG order and parallelism proven by the tasks' millisecond timestamps;
concurrency and the wait-list (append, replace, refusal), startDelay
debounce, cron, a commit trigger, args, timeout, cancel killing
grandchildren, retries, onError, allowFailure, kill -9 then restart
(fail and resume, queued jobs keeping their place), a 1000-lines-a-second
task followed live, history and retention removing jobs and files.
"""

import datetime
import json
import os
import re
import shutil
import sqlite3
import subprocess
import tempfile
import time

import pytest

from conftest import RPRCTL, status_of
from sshd import login_user
from test_repos import GitRepo

CONTROLLERS = True
WAIT = 30
FINISHED = ("Succeeded", "Failed", "Canceled", "Interrupted")


def pipeline(name, tasks, **spec):
    s = {"tasks": tasks}
    s.update(spec)
    return {"apiVersion": "rpr/v1", "kind": "Pipeline", "metadata": {"name": name}, "spec": s}


def start(d, name, args=None):
    return d.request("POST", "/api/v1/namespaces/default/pipelines/%s/runs" % name,
                     body={"args": args} if args else {})


def job(d, name):
    r = d.get("/api/v1/namespaces/default/runs/" + name)
    return r.json() if r.status == 200 else None


def wait_job(d, name, pred=lambda j: j["status"].get("phase") in FINISHED, what="the job to end", timeout=WAIT):
    deadline = time.time() + timeout
    j = None
    while time.time() < deadline:
        j = job(d, name)
        if j and pred(j):
            return j
        time.sleep(0.05)
    raise AssertionError("timed out waiting for %s: %s" % (what, j and j.get("status")))


def ts(s):
    return datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ").timestamp()


def span(j, task):
    t = j["status"]["tasks"][task]
    return ts(t["startTime"]), ts(t["endTime"])


def task_log(d, run, task):
    p = d.ctl("logs", "run/" + run, "--task", task)
    assert p.returncode == 0, p.stderr
    return p.stdout


def out_lines(log):
    return [line.split(" ", 2)[2] for line in log.splitlines() if line.split(" ", 2)[1:2] == ["out"]]


def procs(marker):
    p = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True)
    return p.stdout.split()


def jobs_of(d, name):
    items = d.get("/api/v1/namespaces/default/runs").json()["items"]
    mine = [r for r in items if r["spec"].get("pipeline") == name]
    return sorted(mine, key=lambda r: int(r["metadata"]["name"].rsplit("-", 1)[1]))


# ---- the DAG ----------------------------------------------------------------------

def test_dag_order_and_parallelism(rprd):
    tasks = {"a": {"script": "sleep 0.6"}, "b": {"script": "sleep 0.6"},
             "c": {"script": "echo c", "dependsOn": ["a", "b"]}}
    rprd.apply([pipeline("wide", tasks, parallelism=4), pipeline("narrow", tasks, parallelism=1)])
    assert start(rprd, "wide").status == 201
    assert start(rprd, "narrow").status == 201
    wide = wait_job(rprd, "wide-1")
    narrow = wait_job(rprd, "narrow-1")
    assert wide["status"]["phase"] == "Succeeded" and narrow["status"]["phase"] == "Succeeded"
    (a0, a1), (b0, b1), (c0, c1) = span(wide, "a"), span(wide, "b"), span(wide, "c")
    assert a0 < b1 and b0 < a1, "a and b overlapped under parallelism 4"
    assert c0 >= max(a1, b1), "c started after both of its dependencies"
    (a0, a1), (b0, b1), (c0, c1) = span(narrow, "a"), span(narrow, "b"), span(narrow, "c")
    assert a1 <= b0 or b1 <= a0, "never two at once under parallelism 1"
    assert c0 >= max(a1, b1)


def test_failure_skips_dependents_allow_failure_does_not(rprd):
    rprd.apply([pipeline("p", {
        "ok": {"script": "true"},
        "bad": {"script": "echo oops >&2; exit 4"},
        "after-bad": {"script": "echo never", "dependsOn": ["bad"]},
        "flaky": {"script": "exit 1", "allowFailure": True},
        "after-flaky": {"script": "echo fine", "dependsOn": ["flaky", "ok"]},
        "notify": {"script": "echo notified $RPR_PIPELINE $RPR_RUN"},
    }, onError="notify")])
    assert start(rprd, "p").status == 201
    j = wait_job(rprd, "p-1")
    t = j["status"]["tasks"]
    assert j["status"]["phase"] == "Failed" and "bad" in j["status"]["message"], j["status"]
    assert t["bad"]["phase"] == "Failed" and t["bad"]["exitCode"] == 4
    assert t["after-bad"]["phase"] == "Skipped"
    assert t["flaky"]["phase"] == "Failed" and t["after-flaky"]["phase"] == "Succeeded"
    assert t["notify"]["phase"] == "Succeeded", "onError ran"
    assert out_lines(task_log(rprd, "p-1", "notify")) == ["notified p p-1"]
    assert "err oops" in task_log(rprd, "p-1", "bad")


def test_args_reach_scripts_and_undeclared_ones_are_refused(rprd):
    rprd.apply([pipeline("deploy", {"go": {"script": ["echo to $target", "echo v=$version"]}},
                         args={"target": {"default": "staging"}, "version": {}})])
    r = start(rprd, "deploy", {"target": "prod"})
    assert r.status == 201, r
    name = r.json()["metadata"]["name"]
    wait_job(rprd, name)
    assert out_lines(task_log(rprd, name, "go")) == ["to prod", "v="]
    r = start(rprd, "deploy", {"nope": "1"})
    assert r.status == 422 and 'undeclared argument "nope"' in status_of(r)["message"], r
    p = rprd.ctl("run", "pipeline", "deploy", "--arg", "nope=1")
    assert p.returncode == 1 and "undeclared argument" in p.stderr
    p = rprd.ctl("run", "pipeline", "deploy", "--arg", "target=qa", "--wait")
    assert p.returncode == 0 and "Succeeded" in p.stdout, p.stdout + p.stderr


def test_a_list_script_stops_at_the_first_failure_and_wait_says_so(rprd):
    rprd.apply([pipeline("l", {"t": {"script": ["echo one", "false", "echo three"]}})])
    p = rprd.ctl("run", "pipeline", "l", "--wait")
    assert p.returncode == 1 and "Failed" in p.stderr, p.stdout + p.stderr
    assert out_lines(task_log(rprd, "l-1", "t")) == ["one"]


def test_cycles_and_unknown_tasks_are_refused_at_apply(rprd):
    r = rprd.request("POST", "/api/v1/apply", body=[pipeline("c", {
        "a": {"script": "true", "dependsOn": ["b"]}, "b": {"script": "true", "dependsOn": ["a"]}})])
    assert r.status == 422 and "cycle" in str(status_of(r)["details"]), r
    r = rprd.request("POST", "/api/v1/apply", body=[pipeline("c", {"a": {"script": "true", "dependsOn": ["zz"]}})])
    assert r.status == 422 and 'unknown task \\"zz\\"' in r.text, r
    r = rprd.request("POST", "/api/v1/apply", body=[pipeline("c", {"a": {"script": "true"}}, schedule="61 * * * *")])
    assert r.status == 422 and "spec.schedule" in r.text, r


# ---- the wait-list ---------------------------------------------------------------------

def test_concurrency_one_queue_limit_two(rprd):
    rprd.apply([pipeline("q", {"t": {"script": "sleep 1"}}, concurrency=1, queueLimit=2)])
    codes = [start(rprd, "q") for _ in range(5)]
    assert [r.status for r in codes] == [201, 201, 201, 409, 409], codes
    assert "queue is full: 2 jobs wait (queueLimit 2)" in status_of(codes[3])["message"]
    phases = [j["status"]["phase"] for j in jobs_of(rprd, "q")]
    assert phases[0] in ("Pending", "Running") and phases[1:] == ["Queued", "Queued"], phases
    first = wait_job(rprd, "q-1")
    second = wait_job(rprd, "q-2")
    third = wait_job(rprd, "q-3")
    assert ts(second["status"]["tasks"]["t"]["startTime"]) >= ts(first["status"]["tasks"]["t"]["endTime"])
    assert ts(third["status"]["tasks"]["t"]["startTime"]) >= ts(second["status"]["tasks"]["t"]["endTime"])
    assert rprd.obj("pipelines", "q")["status"]["queued"] == 0


def test_replace_strategy_drops_the_oldest_waiting_job(rprd):
    rprd.apply([pipeline("r", {"t": {"script": "sleep 1"}}, queueLimit=1, queueStrategy="replace")])
    assert [start(rprd, "r").status for _ in range(3)] == [201, 201, 201]
    assert wait_job(rprd, "r-2")["status"]["reason"] == "Replaced"
    assert wait_job(rprd, "r-3")["status"]["phase"] == "Succeeded"
    assert wait_job(rprd, "r-1")["status"]["phase"] == "Succeeded"


def test_start_delay_debounces(rprd):
    rprd.apply([pipeline("d", {"t": {"script": "echo once"}}, startDelay="1s")])
    t0 = time.time()
    assert [start(rprd, "d").status for _ in range(3)] == [201, 201, 201]
    last = wait_job(rprd, "d-3")
    assert last["status"]["phase"] == "Succeeded"
    assert ts(last["status"]["tasks"]["t"]["startTime"]) >= t0 + 0.9
    for n in ("d-1", "d-2"):
        st = job(rprd, n)["status"]
        assert st["phase"] == "Canceled" and st["reason"] == "Replaced", st


# ---- schedule and trigger --------------------------------------------------------------

def test_cron_every_minute(rprd):
    # The schedule fires at the start of each minute (local time): wait for one.
    rprd.apply([pipeline("tick", {"t": {"script": "date +%S"}}, schedule="* * * * *")])
    deadline = time.time() + WAIT
    while "nextScheduleTime" not in rprd.obj("pipelines", "tick").get("status", {}) and time.time() < deadline:
        time.sleep(0.05)
    nxt = rprd.obj("pipelines", "tick")["status"]["nextScheduleTime"]
    assert nxt.endswith(":00Z"), nxt
    due = datetime.datetime.strptime(nxt, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc).timestamp()
    assert 0 < due - time.time() <= 61
    j = wait_job(rprd, "tick-1", timeout=75)
    assert j["spec"]["triggeredBy"] == "schedule" and j["status"]["phase"] == "Succeeded"
    assert ts(j["status"]["tasks"]["t"]["startTime"]) >= due - 0.001
    assert rprd.obj("pipelines", "tick")["status"]["nextScheduleTime"] > nxt


def test_a_commit_triggers_a_job(rprd):
    root = tempfile.mkdtemp(prefix="rpr-pl-git-")
    try:
        g = GitRepo(root)
        g.commit("first")
        rprd.apply([{"apiVersion": "rpr/v1", "kind": "Repo", "metadata": {"name": "site"},
                     "spec": {"provider": "git", "url": g.url, "branch": "main", "interval": "1h"}},
                    pipeline("ci", {"build": {"script": "echo building $RPR_COMMIT"}}, trigger={"repo": "site"})])
        first = wait_job(rprd, "ci-1")  # the repo's first look is a new commit
        sha = g.commit("second")
        assert rprd.request("POST", "/api/v1/namespaces/default/repos/site/check").status == 200
        j = wait_job(rprd, "ci-2")
        assert j["spec"]["triggeredBy"] == "commit" and j["spec"]["commit"] == sha
        assert out_lines(task_log(rprd, "ci-2", "build")) == ["building " + sha]
        assert first["spec"]["commit"] != sha
    finally:
        shutil.rmtree(root, ignore_errors=True)


# ---- one task's life ---------------------------------------------------------------------

def test_timeout_retries_and_cancel(rprd, tmp_path):
    marker = tmp_path / "tried"
    rprd.apply([pipeline("t", {
        "slow": {"script": "sleep 6201", "timeout": "1s"},
        "second-time": {"script": "test -e %s || { touch %s; exit 9; }" % (marker, marker), "retries": 2},
    }), pipeline("k", {"tree": {"script": "sh -c 'sleep 6202' & sleep 6203; wait"}})])
    assert start(rprd, "t").status == 201
    j = wait_job(rprd, "t-1")
    t = j["status"]["tasks"]
    assert t["slow"]["phase"] == "Failed" and t["slow"]["reason"] == "Timeout", t["slow"]
    assert t["second-time"]["phase"] == "Succeeded" and t["second-time"]["attempt"] == 2, t["second-time"]
    assert not procs("sleep 6201")

    assert start(rprd, "k").status == 201
    wait_for = time.time() + WAIT
    while not (procs("sleep 6202") and procs("sleep 6203")) and time.time() < wait_for:
        time.sleep(0.05)
    assert procs("sleep 6202") and procs("sleep 6203")
    p = rprd.ctl("cancel", "run", "k-1")
    assert p.returncode == 0, p.stderr
    j = wait_job(rprd, "k-1")
    assert j["status"]["phase"] == "Canceled" and j["status"]["tasks"]["tree"]["phase"] == "Canceled"
    deadline = time.time() + 5
    while (procs("sleep 6202") or procs("sleep 6203")) and time.time() < deadline:
        time.sleep(0.05)
    assert not procs("sleep 6202") and not procs("sleep 6203"), "the grandchildren were killed too"
    assert rprd.ctl("cancel", "run", "k-1").returncode == 1


def test_a_task_waits_for_its_offline_server(rprd, sshd_factory, ssh_keys):
    s = sshd_factory(start=False)
    rprd.apply([{"apiVersion": "rpr/v1", "kind": "Server", "metadata": {"name": "far"},
                 "spec": {"host": "127.0.0.1", "port": s.port, "user": login_user(),
                          "identityFile": ssh_keys.client("ed25519"), "hostKey": s.pin("ed25519"),
                          "check": {"interval": "1h", "retries": 0, "retryInterval": "1s"}}},
                pipeline("remote", {"t": {"script": "echo on $RPR_SERVER", "server": "far"}})])
    assert start(rprd, "remote").status == 201
    wait_job(rprd, "remote-1", lambda j: j["status"].get("tasks", {}).get("t", {}).get("phase") == "Waiting",
             "the task to wait")
    s.start()
    j = wait_job(rprd, "remote-1")
    assert j["status"]["phase"] == "Succeeded", j["status"]
    assert out_lines(task_log(rprd, "remote-1", "t")) == ["on far"]


# ---- crashes ----------------------------------------------------------------------------

def crash_pipeline(name, tmp_path, on_interrupt):
    counter = tmp_path / (name + "-first-runs")
    return pipeline(name, {
        "first": {"script": "echo ran >> %s" % counter},
        "long": {"script": "sleep 2; echo long done", "dependsOn": ["first"]},
    }, onInterrupt=on_interrupt), counter


def test_kill_9_mid_job_fail(rprd, tmp_path):
    p, counter = crash_pipeline("f", tmp_path, "fail")
    rprd.apply([p])
    assert start(rprd, "f").status == 201
    wait_job(rprd, "f-1", lambda j: j["status"].get("tasks", {}).get("long", {}).get("phase") == "Running", "long")
    time.sleep(0.2)  # the tasks' states reach the store every 50 ms
    rprd.kill()
    rprd.start()
    j = wait_job(rprd, "f-1")
    st = j["status"]
    assert st["phase"] == "Interrupted" and st["reason"] == "RprdRestarted", st
    assert st["tasks"]["first"]["phase"] == "Succeeded", "finished tasks keep their results"
    assert st["tasks"]["long"]["phase"] == "Interrupted"


def test_kill_9_mid_job_resume_keeps_finished_tasks_and_queue(rprd, tmp_path):
    p, counter = crash_pipeline("r", tmp_path, "resume")
    rprd.apply([p])
    assert start(rprd, "r").status == 201
    assert start(rprd, "r").status == 201  # waits behind the first (concurrency 1)
    wait_job(rprd, "r-1", lambda j: j["status"].get("tasks", {}).get("long", {}).get("phase") == "Running", "long")
    time.sleep(0.2)
    assert job(rprd, "r-2")["status"]["phase"] == "Queued"
    rprd.kill()
    rprd.start()
    j = wait_job(rprd, "r-1")
    assert j["status"]["phase"] == "Succeeded" and j["status"]["resumes"] == 1, j["status"]
    assert out_lines(task_log(rprd, "r-1", "long"))[-1] == "long done"
    second = wait_job(rprd, "r-2")
    assert second["status"]["phase"] == "Succeeded"
    assert ts(second["status"]["tasks"]["first"]["startTime"]) >= ts(j["status"]["tasks"]["long"]["endTime"])
    assert counter.read_text().count("ran") == 2, "first ran once per job: not again on resume"


def test_an_end_only_in_the_journal_is_not_run_again_on_resume(rprd, tmp_path):
    """A task's end that dependents wait for is durable in the job's journal
    before they start; the store gets it with the next batch. An rprd killed
    before that batch was written takes the end from the journal."""
    p, counter = crash_pipeline("jr", tmp_path, "resume")
    rprd.apply([p])
    assert start(rprd, "jr").status == 201
    wait_job(rprd, "jr-1", lambda j: j["status"].get("tasks", {}).get("long", {}).get("phase") == "Running", "long")
    journal = os.path.join(rprd.state_dir, "runs", "default", "jr-1", "ends.journal")
    ends = [json.loads(line) for line in open(journal).read().splitlines()]
    assert [(e["key"], e["status"]["phase"]) for e in ends] == [("first", "Succeeded")], ends
    rprd.kill()
    # As if rprd had died before the batch: the store has "first" Running.
    con = sqlite3.connect(os.path.join(rprd.state_dir, "state.db"))
    (text,) = con.execute("SELECT json FROM objects WHERE kind = 'Run' AND name = 'jr-1'").fetchone()
    obj = json.loads(text)
    first = obj["status"]["tasks"]["first"]
    for k in ("exitCode", "endTime", "reason"):
        first.pop(k, None)
    first["phase"] = "Running"
    con.execute("UPDATE objects SET json = ? WHERE kind = 'Run' AND name = 'jr-1'", (json.dumps(obj),))
    con.commit()
    con.close()
    rprd.start()
    j = wait_job(rprd, "jr-1")
    st = j["status"]
    assert st["phase"] == "Succeeded" and st["resumes"] == 1, st
    assert st["tasks"]["first"]["phase"] == "Succeeded" and st["tasks"]["first"]["exitCode"] == 0, st["tasks"]
    assert counter.read_text().count("ran") == 1, "first's end was recorded: not run again"
    assert not os.path.exists(journal), "the journal goes once the job's end is in the store"


# ---- output and retention -------------------------------------------------------------------

def test_a_thousand_lines_a_second_followed_live(rprd):
    rprd.apply([pipeline("chatty", {"talk": {"script": "i=0; while [ $i -lt 1000 ]; do i=$((i+1)); echo line $i; "
                                                       "case $i in *00) sleep 0.1;; esac; done"}})])
    assert start(rprd, "chatty").status == 201
    wait_job(rprd, "chatty-1", lambda j: j["status"]["phase"] != "Queued", "the job to start")
    p = subprocess.run([RPRCTL, "--server", "unix:" + rprd.sock, "--token", rprd.token, "logs", "run/chatty-1",
                        "--task", "talk", "-f"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    lines = out_lines(p.stdout)
    assert lines == ["line %d" % i for i in range(1, 1001)], lines[:3] + lines[-3:]
    assert wait_job(rprd, "chatty-1")["status"]["phase"] == "Succeeded"


def test_history_and_retention_remove_jobs_and_files(rprd):
    rprd.apply([pipeline("h", {"t": {"script": "echo hi"}}, history=2)])
    for i in range(1, 5):
        assert start(rprd, "h").status == 201
        wait_job(rprd, "h-%d" % i)
    out = os.path.join(rprd.state_dir, "runs", "default")
    deadline = time.time() + WAIT
    while len(jobs_of(rprd, "h")) > 2 and time.time() < deadline:
        time.sleep(0.05)
    assert [j["metadata"]["name"] for j in jobs_of(rprd, "h")] == ["h-3", "h-4"]
    assert not os.path.exists(os.path.join(out, "h-1.log")) and not os.path.exists(os.path.join(out, "h-1"))
    assert os.path.exists(os.path.join(out, "h-4", "t.log"))

    rprd.apply([pipeline("h", {"t": {"script": "echo hi"}}, history=10, retention="1s")])
    time.sleep(1.5)
    assert start(rprd, "h").status == 201  # the pipeline looks again, and trims
    wait_job(rprd, "h-5")
    deadline = time.time() + WAIT
    while len(jobs_of(rprd, "h")) > 1 and time.time() < deadline:
        time.sleep(0.05)
    assert [j["metadata"]["name"] for j in jobs_of(rprd, "h")] == ["h-5"]
    assert not os.path.exists(os.path.join(out, "h-4"))


def test_history_counts_finished_jobs_by_number_across_a_restart(rprd):
    """history 2 of jobs h-1..h-11 keeps h-10 and h-11 (by number, not by
    name: h-9 sorts after h-10 as text); a running job is kept and not
    counted; after a restart (what the store keeps beside each job is read
    again from disk) trimming goes on the same way."""
    rprd.apply([pipeline("h", {"t": {"script": "true"}}, history=2)])
    for i in range(1, 12):
        assert start(rprd, "h").status == 201
        wait_job(rprd, "h-%d" % i)
    deadline = time.time() + WAIT
    while len(jobs_of(rprd, "h")) > 2 and time.time() < deadline:
        time.sleep(0.05)
    assert [j["metadata"]["name"] for j in jobs_of(rprd, "h")] == ["h-10", "h-11"]

    rprd.restart()
    rprd.apply([pipeline("h", {"t": {"script": "sleep 30"}}, history=2)])
    assert start(rprd, "h").status == 201
    wait_job(rprd, "h-12", pred=lambda j: j["status"].get("phase") == "Running", what="h-12 to run")
    rprd.apply([pipeline("h", {"t": {"script": "sleep 30"}}, history=1)])  # the pipeline looks again, and trims
    deadline = time.time() + WAIT
    while len(jobs_of(rprd, "h")) > 2 and time.time() < deadline:
        time.sleep(0.05)
    names = [j["metadata"]["name"] for j in jobs_of(rprd, "h")]
    assert names == ["h-11", "h-12"], names  # the running one is kept and not counted
    assert rprd.request("POST", "/api/v1/namespaces/default/runs/h-12/cancel", body={}).status in (200, 202)
    wait_job(rprd, "h-12")
    deadline = time.time() + WAIT
    while len(jobs_of(rprd, "h")) > 1 and time.time() < deadline:
        time.sleep(0.05)
    assert [j["metadata"]["name"] for j in jobs_of(rprd, "h")] == ["h-12"]
