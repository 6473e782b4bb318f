"""Bindings and Runs end to end: a real rprd (the sanitizer build), real
OpenSSH sshd processes on loopback, real git repositories (provider git,
file:// URLs) and, for the webhook path, the fake GitHub with GitHub's own
push payload.

A commit runs the command on the server with every RPR_ variable; failures
retry with backoff and end Failed with the exit code; a timeout kills the
remote process; quick commits coalesce; fan-out over labels waits for the
server that is down; kill -9 mid-run is Interrupted and retried; cancel,
delete while running, manual triggers, log follow, history trimming,
waitTimeout, restart while waiting, and bad input.
"""

import glob
import json
import os
import shutil
import subprocess
import tempfile
import time

import pytest

from conftest import RPRCTL, metric_sum, status_of
from sshd import login_user
from test_repos import GitRepo

CONTROLLERS = True
USER = login_user()
WAIT = 30


# ---- fixtures and helpers ---------------------------------------------------------

@pytest.fixture
def gitrepo():
    root = tempfile.mkdtemp(prefix="rpr-git-")
    g = GitRepo(root)
    g.first = g.commit("first")
    yield g
    shutil.rmtree(root, ignore_errors=True)


def ssh_server(name, sshd, keys, labels=None, **check):
    spec = {"transport": "ssh", "host": "127.0.0.1", "port": sshd.port, "user": USER,
            "identityFile": keys.client("ed25519"), "hostKey": sshd.pin("ed25519"),
            "check": dict({"interval": "1h", "retries": 0, "retryInterval": "1s"}, **check)}
    o = {"apiVersion": "rpr/v1", "kind": "Server", "metadata": {"name": name}, "spec": spec}
    if labels:
        o["metadata"]["labels"] = labels
    return o


def local_server(name, labels=None):
    o = {"apiVersion": "rpr/v1", "kind": "Server", "metadata": {"name": name},
         "spec": {"transport": "local", "check": {"interval": "1h"}}}
    if labels:
        o["metadata"]["labels"] = labels
    return o


def git_repo(name, g, interval="1h"):
    return {"apiVersion": "rpr/v1", "kind": "Repo", "metadata": {"name": name},
            "spec": {"provider": "git", "url": g.url, "branch": "main", "interval": interval}}


def binding(name, command, repo="site", server=None, labels=None, **spec):
    s = {"repo": repo, "command": command}
    if labels:
        s["servers"] = {"matchLabels": labels}
    else:
        s["server"] = server
    s.update(spec)
    return {"apiVersion": "rpr/v1", "kind": "Binding", "metadata": {"name": name}, "spec": s}


def wait_for(pred, what, timeout=WAIT, interval=0.05):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError("timed out waiting for %s (last: %r)" % (what, last))


def runs_of(d, name):
    """The Runs of binding name, oldest first."""
    items = d.get("/api/v1/namespaces/default/runs").json()["items"]
    mine = [r for r in items if r["spec"].get("binding") == name]
    return sorted(mine, key=lambda r: int(r["metadata"]["name"].rsplit("-", 1)[1]))


def phase(run):
    return run.get("status", {}).get("phase")


def wait_runs(d, name, pred, what, timeout=WAIT):
    return wait_for(lambda: (lambda rs: rs if pred(rs) else None)(runs_of(d, name)), what, timeout)


def finished(run):
    return phase(run) in ("Succeeded", "Failed", "Canceled", "Interrupted")


def run_log(d, run_name):
    p = d.ctl("logs", "run/" + run_name)
    assert p.returncode == 0, p.stderr
    return p.stdout


def out_lines(log):
    """The command's stdout lines from a run's output file."""
    return [line.split(" ", 2)[2] for line in log.splitlines() if line.split(" ", 2)[1:2] == ["out"]]


def check_repo(d, name="site"):
    r = d.request("POST", "/api/v1/namespaces/default/repos/%s/check" % name)
    assert r.status == 200, r


def remote_processes(marker):
    p = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True)
    return [int(x) for x in p.stdout.split()]


def when(run, key):
    s = run["status"][key]
    return time.mktime(time.strptime(s, "%Y-%m-%dT%H:%M:%SZ"))


@pytest.fixture
def site(rprd, gitrepo, sshd, ssh_keys):
    """rprd with Repo site (checked) and Server web-1 (reachable)."""
    rprd.apply([git_repo("site", gitrepo), ssh_server("web-1", sshd, ssh_keys)])
    wait_for(lambda: rprd.obj("repos", "site").get("status", {}).get("lastCommit"), "repo checked")
    wait_for(lambda: rprd.obj("servers", "web-1").get("status", {}).get("phase") == "Reachable", "web-1 reachable")
    return rprd


# ---- the main path ------------------------------------------------------------------

def test_commit_runs_the_command_with_every_rpr_variable(site, gitrepo):
    site.apply([binding("deploy", "env | grep -E '^(RPR_|APP_ENV)' | sort; pwd; echo oops >&2",
                        server="web-1", workdir="/tmp", env={"APP_ENV": "production"})])
    first = wait_runs(site, "deploy", lambda rs: rs and finished(rs[-1]), "the first deploy")[-1]
    assert first["spec"]["triggeredBy"] == "create" and first["spec"]["commit"] == gitrepo.first

    sha = gitrepo.commit("second", date="2026-11-21T08:30:00Z")
    check_repo(site)
    rs = wait_runs(site, "deploy", lambda rs: len(rs) == 2 and finished(rs[1]), "the run of the new commit")
    run = rs[1]
    st = run["status"]
    assert st["phase"] == "Succeeded" and st["reason"] == "ExitCode" and st["exitCode"] == 0, st
    assert run["spec"]["commit"] == sha and run["spec"]["server"] == "web-1" and run["spec"]["attempt"] == 1
    assert st["startTime"] and st["endTime"] and st["durationSeconds"] >= 0
    name = run["metadata"]["name"]
    assert out_lines(run_log(site, name)) == [
        "APP_ENV=production",
        "RPR_ATTEMPT=1",
        "RPR_BINDING=deploy",
        "RPR_BRANCH=main",
        "RPR_COMMIT=" + sha,
        "RPR_COMMIT_TIME=2026-11-21T08:30:00Z",
        "RPR_REPO=site",
        "RPR_RUN=" + name,
        "RPR_SERVER=web-1",
        "/tmp",
    ]
    log = run_log(site, name)
    assert " err oops" in log
    first_line = log.splitlines()[0]
    assert first_line[:4] == "2026" and first_line.split(" ")[1] == "rpr", first_line

    b = site.obj("bindings", "deploy")["status"]
    assert b["servers"]["web-1"]["deployedCommit"] == sha
    assert b["servers"]["web-1"]["lastRun"] == name
    deployed = [c for c in b["conditions"] if c["type"] == "Deployed"][0]
    assert deployed["status"] == "True", b

    m = site.metrics()
    assert metric_sum(m, "rpr_runs", phase="Succeeded") == 2 and metric_sum(m, "rpr_runs", phase="Running") == 0

    activity = site.ctl("logs", "activity", "--tail", "50").stdout
    assert "repo default/site: main at %s" % sha[:12] in activity
    assert "run %s for server web-1: commit %s (commit, attempt 1)" % (name, sha[:12]) in activity
    assert "run default/%s: Running" % name in activity
    assert "run default/%s: Succeeded" % name in activity


def test_failing_command_retries_with_backoff_then_fails(site):
    site.apply([binding("deploy", "echo trying; exit 3", server="web-1", retries=2,
                        backoff={"base": "1s", "max": "2s"})])
    rs = wait_runs(site, "deploy", lambda rs: len(rs) == 3 and finished(rs[2]), "three attempts", timeout=40)
    assert [r["spec"]["attempt"] for r in rs] == [1, 2, 3]
    assert [r["spec"]["triggeredBy"] for r in rs] == ["create", "retry", "retry"]
    for r in rs:
        assert r["status"]["phase"] == "Failed" and r["status"]["reason"] == "ExitCode", r["status"]
        assert r["status"]["exitCode"] == 3 and "exited with 3" in r["status"]["message"]
    # Backoff: 1 s before the second attempt, 2 s before the third (second precision).
    assert when(rs[1], "startTime") - when(rs[0], "endTime") >= 1
    assert when(rs[2], "startTime") - when(rs[1], "endTime") >= 2
    time.sleep(3)
    assert len(runs_of(site, "deploy")) == 3, "no attempt beyond spec.retries"
    cond = [c for c in site.obj("bindings", "deploy")["status"]["conditions"] if c["type"] == "Deployed"][0]
    assert cond["reason"] == "RunFailed", cond


def test_timeout_kills_the_remote_process(site):
    site.apply([binding("deploy", "sleep 6001; echo never", server="web-1", timeout="1s")])
    run = wait_runs(site, "deploy", lambda rs: rs and finished(rs[0]), "the timeout")[0]
    assert run["status"]["phase"] == "Failed" and run["status"]["reason"] == "Timeout", run["status"]
    assert "1s (spec.timeout)" in run["status"]["message"]
    wait_for(lambda: not remote_processes("sleep 6001"), "the remote sleep to be killed", timeout=5)
    assert "never" not in run_log(site, run["metadata"]["name"])


def test_quick_commits_coalesce_into_one_run_of_the_newest(site, gitrepo):
    site.apply([binding("deploy", "sleep 2; echo deployed $RPR_COMMIT", server="web-1")])
    wait_runs(site, "deploy", lambda rs: rs and phase(rs[0]) == "Running", "the first run to start")
    gitrepo.commit("two")
    check_repo(site)
    newest = gitrepo.commit("three")
    check_repo(site)
    rs = wait_runs(site, "deploy", lambda rs: len(rs) >= 2 and finished(rs[-1]), "the next run")
    time.sleep(1)
    rs = runs_of(site, "deploy")
    assert len(rs) == 2, [(r["metadata"]["name"], r["spec"]["commit"]) for r in rs]
    assert rs[1]["spec"]["commit"] == newest and rs[1]["status"]["phase"] == "Succeeded"
    assert when(rs[1], "startTime") >= when(rs[0], "endTime"), "never two at once on one server"


# ---- fan-out and offline servers --------------------------------------------------------

def test_fan_out_waits_for_the_server_that_is_down(rprd, gitrepo, sshd_factory, ssh_keys):
    daemons = [sshd_factory() for _ in range(3)]
    daemons[2].stop()
    web = {"role": "web"}
    rprd.apply([git_repo("site", gitrepo)] +
               [ssh_server("web-%d" % i, s, ssh_keys, labels=web) for i, s in enumerate(daemons)] +
               [ssh_server("db", daemons[0], ssh_keys, labels={"role": "db"})])
    wait_for(lambda: rprd.obj("servers", "web-2").get("status", {}).get("phase") == "Unreachable", "web-2 down")
    rprd.apply([binding("deploy", "echo hello from $RPR_SERVER", labels=web)])

    def two_done_one_waiting(rs):
        by = {r["spec"]["server"]: r for r in rs}
        return (len(rs) == 3 and phase(by["web-0"]) == "Succeeded" and phase(by["web-1"]) == "Succeeded"
                and by["web-2"]["status"].get("reason") == "WaitingForServer")
    rs = wait_runs(rprd, "deploy", two_done_one_waiting, "two runs done, one waiting")
    assert sorted(r["spec"]["server"] for r in rs) == ["web-0", "web-1", "web-2"], "db is not a target"
    waiting = [r for r in rs if r["spec"]["server"] == "web-2"][0]
    assert waiting["status"]["phase"] == "Pending" and "unreachable" in waiting["status"]["message"]

    daemons[2].start()
    run = wait_for(lambda: [r for r in runs_of(rprd, "deploy") if r["spec"]["server"] == "web-2"
                            and phase(r) == "Succeeded"], "web-2's run once its sshd is back")[0]
    assert out_lines(run_log(rprd, run["metadata"]["name"])) == ["hello from web-2"]
    assert len(runs_of(rprd, "deploy")) == 3


def test_wait_timeout_fails_the_run(rprd, gitrepo, sshd_factory, ssh_keys):
    down = sshd_factory(start=False)
    rprd.apply([git_repo("site", gitrepo), ssh_server("web-1", down, ssh_keys),
                binding("deploy", "true", server="web-1", waitTimeout="2s")])
    run = wait_runs(rprd, "deploy", lambda rs: rs and finished(rs[0]), "the wait to time out")[0]
    st = run["status"]
    assert st["phase"] == "Failed" and st["reason"] == "ServerUnreachable", st
    assert "2s (spec.waitTimeout)" in st["message"]
    assert "ServerUnreachable" in run_log(rprd, run["metadata"]["name"])


def test_a_waiting_run_survives_a_restart(rprd, gitrepo, sshd_factory, ssh_keys):
    s = sshd_factory(start=False)
    rprd.apply([git_repo("site", gitrepo), ssh_server("web-1", s, ssh_keys),
                binding("deploy", "echo finally", server="web-1")])
    wait_runs(rprd, "deploy", lambda rs: rs and rs[0]["status"].get("reason") == "WaitingForServer", "waiting")
    rprd.stop()
    s.start()
    rprd.start()
    rs = wait_runs(rprd, "deploy", lambda rs: rs and phase(rs[0]) == "Succeeded", "the run after the restart")
    assert len(rs) == 1 and out_lines(run_log(rprd, rs[0]["metadata"]["name"])) == ["finally"]


# ---- crashes, cancel, delete ----------------------------------------------------------------

def test_kill_9_mid_run_is_interrupted_then_retried(site):
    site.apply([binding("deploy", "sleep 2; echo done", server="web-1", retries=1, backoff={"base": "1s"})])
    wait_runs(site, "deploy", lambda rs: rs and phase(rs[0]) == "Running", "the run to start")
    site.kill()
    site.start()
    rs = wait_runs(site, "deploy", lambda rs: len(rs) == 2 and phase(rs[1]) == "Succeeded", "the retry")
    assert rs[0]["status"]["phase"] == "Interrupted" and rs[0]["status"]["reason"] == "RprdRestarted"
    assert rs[1]["spec"]["attempt"] == 2 and rs[1]["spec"]["triggeredBy"] == "retry"
    assert rs[1]["spec"]["commit"] == rs[0]["spec"]["commit"]
    assert "Interrupted" in run_log(site, rs[0]["metadata"]["name"])
    time.sleep(1)
    assert len(runs_of(site, "deploy")) == 2, "retried once, not more"


def test_cancel_stops_the_remote_command(site):
    site.apply([binding("deploy", "echo started; sleep 6002", server="web-1")])
    run = wait_runs(site, "deploy", lambda rs: rs and phase(rs[0]) == "Running", "the run to start")[0]
    wait_for(lambda: remote_processes("sleep 6002"), "the remote sleep")
    p = site.ctl("cancel", "run", run["metadata"]["name"])
    assert p.returncode == 0 and "canceled" in p.stdout, p.stderr
    run = wait_runs(site, "deploy", lambda rs: finished(rs[0]), "the cancel")[0]
    assert run["status"]["phase"] == "Canceled" and run["status"]["reason"] == "Canceled"
    wait_for(lambda: not remote_processes("sleep 6002"), "the remote process group to be killed", timeout=5)
    p = site.ctl("cancel", "run", run["metadata"]["name"])
    assert p.returncode == 1 and "already finished" in p.stderr
    time.sleep(0.5)
    assert len(runs_of(site, "deploy")) == 1, "a canceled run is not retried"


def test_deleting_a_binding_cancels_its_runs_first(site):
    site.apply([binding("deploy", "sleep 6003", server="web-1")])
    run = wait_runs(site, "deploy", lambda rs: rs and phase(rs[0]) == "Running", "the run to start")[0]
    log_file = run["status"]["logFile"]
    assert os.path.exists(log_file)
    assert site.ctl("delete", "binding", "deploy").returncode == 0
    wait_for(lambda: site.get("/api/v1/namespaces/default/bindings/deploy").status == 404, "the binding to go")
    assert runs_of(site, "deploy") == []
    assert not os.path.exists(log_file)
    wait_for(lambda: not remote_processes("sleep 6003"), "the remote command to be stopped", timeout=5)
    assert "BindingDeleted" in site.ctl("logs", "activity", "--tail", "20").stdout


# ---- triggers ----------------------------------------------------------------------------------

def test_manual_trigger(rprd, gitrepo):
    rprd.apply([git_repo("site", gitrepo), local_server("a", {"role": "web"}), local_server("b", {"role": "web"}),
                binding("deploy", 'test "$RPR_SERVER" != b || test -e /tmp/rpr-b-ok-$PPID', labels={"role": "web"},
                        deployOnCreate=False)])
    wait_for(lambda: rprd.obj("bindings", "deploy").get("status", {}).get("servers", {}).get("b"), "first pass")
    time.sleep(0.5)
    assert runs_of(rprd, "deploy") == [], "deployOnCreate: false"

    p = rprd.ctl("trigger", "binding", "deploy")
    assert p.returncode == 0 and p.stdout.count("created for server") == 2, p.stdout + p.stderr
    rs = wait_runs(rprd, "deploy", lambda rs: len(rs) == 2 and all(map(finished, rs)), "both runs")
    by = {r["spec"]["server"]: r for r in rs}
    assert phase(by["a"]) == "Succeeded" and phase(by["b"]) == "Failed"
    assert all(r["spec"]["triggeredBy"] == "manual" and r["spec"]["commit"] == gitrepo.first for r in rs)

    p = rprd.ctl("trigger", "binding", "deploy", "--failed")
    assert p.returncode == 0 and "created for server b" in p.stdout and "server a" not in p.stdout, p.stdout
    wait_runs(rprd, "deploy", lambda rs: len(rs) == 3 and finished(rs[2]), "the --failed run")

    p = rprd.ctl("trigger", "binding", "deploy", "--server", "a")
    assert p.returncode == 0 and "created for server a" in p.stdout, p.stdout
    rs = wait_runs(rprd, "deploy", lambda rs: len(rs) == 4 and finished(rs[3]), "the --server run")
    assert rs[3]["spec"]["server"] == "a"

    r = rprd.request("POST", "/api/v1/namespaces/default/bindings/deploy/trigger", body={"server": "zz"})
    assert r.status == 422 and "zz is not one of the servers" in status_of(r)["message"], r
    r = rprd.request("POST", "/api/v1/namespaces/default/bindings/nope/trigger", body={})
    assert r.status == 404, r
    r = rprd.request("POST", "/api/v1/namespaces/default/bindings/deploy/trigger", body={"bogus": 1})
    assert r.status == 422 and "bogus" in status_of(r)["message"], r
    viewer = rprd.ctl("token", "create", "watcher", "--role", "viewer").stdout.strip()
    r = rprd.request("POST", "/api/v1/namespaces/default/bindings/deploy/trigger", body={}, token=viewer)
    assert r.status == 403, r

    rprd.apply([binding("deploy", "true", labels={"role": "web"}, active=False)])
    p = rprd.ctl("trigger", "binding", "deploy")
    assert p.returncode == 1 and "inactive" in p.stderr, p.stderr


def test_trigger_while_running_queues_one_run(rprd, gitrepo):
    rprd.apply([git_repo("site", gitrepo), local_server("a"), binding("deploy", "sleep 1", server="a")])
    wait_runs(rprd, "deploy", lambda rs: rs and phase(rs[0]) == "Running", "the first run")
    for _ in range(3):
        p = rprd.ctl("trigger", "binding", "deploy")
        assert p.returncode == 0 and "starts when it ends" in p.stdout, p.stdout
    rs = wait_runs(rprd, "deploy", lambda rs: len(rs) == 2 and finished(rs[1]), "the queued run")
    time.sleep(0.5)
    assert len(runs_of(rprd, "deploy")) == 2
    assert rs[1]["spec"]["triggeredBy"] == "manual"


def test_inactive_binding_ignores_commits(rprd, gitrepo):
    rprd.apply([git_repo("site", gitrepo), local_server("a"),
                binding("deploy", "true", server="a", active=False)])
    wait_for(lambda: [c for c in rprd.obj("bindings", "deploy").get("status", {}).get("conditions", [])
                      if c["reason"] == "Inactive"], "the Inactive condition")
    gitrepo.commit("two")
    check_repo(rprd)
    time.sleep(1)
    assert runs_of(rprd, "deploy") == []


# ---- output -----------------------------------------------------------------------------------------

def test_log_follow_streams_while_it_runs(rprd, gitrepo):
    rprd.apply([git_repo("site", gitrepo), local_server("a"),
                binding("deploy", "for i in 1 2 3 4 5 6 7 8; do echo line $i; sleep 0.5; done; echo bad >&2",
                        server="a")])
    run = wait_runs(rprd, "deploy", lambda rs: rs and phase(rs[0]) == "Running", "the run to start")[0]
    name = run["metadata"]["name"]
    p = subprocess.Popen([RPRCTL, "--server", "unix:" + rprd.sock, "logs", "run/" + name, "-f"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=dict(os.environ, RPR_TOKEN=rprd.token))
    first = p.stdout.readline()
    seen_at = time.time()
    rest = p.stdout.read()  # not communicate(): it would skip what readline() buffered
    ended_at = time.time()
    assert p.wait(timeout=20) == 0, p.stderr.read()
    lines = (first + rest).splitlines()
    # (a Run made before its Server's first check notes its wait first)
    assert any(" rpr run %s" % name in line for line in lines[:2]), lines[:2]
    assert out_lines("\n".join(lines)) == ["line %d" % i for i in range(1, 9)]
    assert any(" err bad" in line for line in lines)
    assert "Succeeded" in lines[-1]
    # The command runs 4 s; however late rprctl starts on a busy machine,
    # what it follows keeps coming for more than a second.
    assert ended_at - seen_at > 1, "output came while the command ran, not all at the end"
    r = rprd.get("/api/v1/namespaces/default/runs/%s/log" % name)
    assert r.status == 200 and r.text == "\n".join(lines) + "\n"
    assert rprd.get("/api/v1/namespaces/default/runs/nope/log").status == 404


def test_history_trimming_removes_runs_and_files(rprd, gitrepo):
    rprd.apply([git_repo("site", gitrepo), local_server("a"), binding("deploy", "echo hi", server="a", history=2)])
    wait_runs(rprd, "deploy", lambda rs: rs and finished(rs[-1]), "the first run")
    files = [runs_of(rprd, "deploy")[0]["status"]["logFile"]]
    inodes = [os.stat(files[0]).st_ino]
    for i in range(4):
        assert rprd.ctl("trigger", "binding", "deploy").returncode == 0
        rs = wait_runs(rprd, "deploy", lambda rs: finished(rs[-1]) and rs[-1]["spec"]["triggeredBy"] == "manual"
                       and int(rs[-1]["metadata"]["name"].rsplit("-", 1)[1]) == i + 2, "run %d" % (i + 2))
        files.append(rs[-1]["status"]["logFile"])
        inodes.append(os.stat(files[-1]).st_ino)
        text = rprd.ctl("logs", "run/deploy-%d" % (i + 2)).stdout
        assert text.count("rpr run deploy-") == 1 and "deploy-%d" % (i + 2) in text and "hi" in text, text
    rs = wait_runs(rprd, "deploy", lambda rs: len(rs) == 2, "the history to be trimmed to 2")
    assert [r["metadata"]["name"] for r in rs] == ["deploy-4", "deploy-5"]
    assert [os.path.exists(f) for f in files] == [False, False, False, True, True]
    # A trimmed Run's file was emptied and kept as a spare, and a later Run's
    # file is one of them (no file made and removed for every Run).
    assert len(set(inodes)) < len(inodes), inodes
    runs_dir = os.path.dirname(os.path.dirname(files[0]))
    spares = glob.glob(os.path.join(runs_dir, ".spare-*"))
    assert spares and all(os.path.getsize(f) == 0 for f in spares), spares


# ---- bad input -------------------------------------------------------------------------------------

def test_bad_bindings_are_refused_with_the_field(rprd):
    both = binding("deploy", "true", server="a")
    both["spec"]["servers"] = {"matchLabels": {"role": "web"}}
    r = rprd.request("POST", "/api/v1/apply", body=[both])
    assert r.status == 422, r
    assert "servers" in json.dumps(status_of(r)["details"]), status_of(r)
    r = rprd.request("POST", "/api/v1/apply", body=[binding("deploy", "", server="a")])
    assert r.status == 422 and "spec.command" in json.dumps(status_of(r)["details"]), r
    r = rprd.request("POST", "/api/v1/apply", body=[binding("deploy", "true", server="a", retries=-1)])
    assert r.status == 422 and "spec.retries" in json.dumps(status_of(r)["details"]), r
    assert rprd.get("/api/v1/namespaces/default/bindings/deploy").status == 404


def test_missing_references_are_conditions(rprd, gitrepo):
    rprd.apply([binding("deploy", "true", server="a")])
    cond = wait_for(lambda: rprd.obj("bindings", "deploy").get("status", {}).get("conditions"), "a condition")[0]
    assert cond["status"] == "False" and cond["reason"] == "MissingReference" and "repo site" in cond["message"]
    rprd.apply([git_repo("site", gitrepo)])
    wait_for(lambda: "server a does not exist" in rprd.obj("bindings", "deploy")["status"]["conditions"][0]["message"],
             "the server to be named missing")
    rprd.apply([local_server("a")])
    rs = wait_runs(rprd, "deploy", lambda rs: rs and finished(rs[0]), "the run once all exist")
    assert phase(rs[0]) == "Succeeded"
    assert rprd.obj("bindings", "deploy")["status"]["conditions"][0]["reason"] == "Bound"


# ---- shutdown ----------------------------------------------------------------------------------------

def test_sigterm_lets_a_running_run_finish(rprd_factory, gitrepo):
    d = rprd_factory(extra_args=["--stop-grace", "20s"])
    d.apply([git_repo("site", gitrepo), local_server("a"), binding("deploy", "sleep 1; echo done", server="a")])
    wait_runs(d, "deploy", lambda rs: rs and phase(rs[0]) == "Running", "the run to start")
    t0 = time.time()
    d.stop()  # SIGTERM: asserts exit 0 and no sanitizer report
    assert time.time() - t0 < 15
    d.start()
    run = runs_of(d, "deploy")[0]
    assert run["status"]["phase"] == "Succeeded", run["status"]
    assert out_lines(run_log(d, run["metadata"]["name"])) == ["done"]


def test_sigterm_beyond_the_grace_interrupts_and_the_run_is_retried(rprd_factory, gitrepo, tmp_path):
    marker = tmp_path / "first-attempt"
    d = rprd_factory(extra_args=["--stop-grace", "1s"])
    d.apply([git_repo("site", gitrepo), local_server("a"),
             binding("deploy", "test -e %s || { touch %s; sleep 6004; }; echo second" % (marker, marker),
                     server="a", retries=1, backoff={"base": "1s"})])
    wait_for(lambda: remote_processes("sleep 6004"), "the first attempt to run")
    d.stop()
    assert not remote_processes("sleep 6004"), "canceled at the end of the grace period"
    d.start()
    rs = wait_runs(d, "deploy", lambda rs: len(rs) == 2 and phase(rs[1]) == "Succeeded", "the retry after restart")
    assert rs[0]["status"]["phase"] == "Interrupted" and rs[0]["status"]["reason"] == "RprdStopped", rs[0]["status"]
    assert rs[1]["spec"]["attempt"] == 2 and out_lines(run_log(d, rs[1]["metadata"]["name"])) == ["second"]


# ---- the GitHub path -------------------------------------------------------------------------------

def test_github_push_webhook_runs_the_binding(rprd):
    from github_fake import FakeGitHub
    from test_webhooks import NEW, OLD, SECRET, deliver, payload
    gh = FakeGitHub()
    gh.start()
    try:
        gh.add_repo("Codertocat", "Hello-World", branches={"master": {"sha": OLD}})
        rprd.apply([
            {"apiVersion": "rpr/v1", "kind": "Token", "metadata": {"name": "hook"},
             "spec": {"type": "webhook", "value": SECRET}},
            {"apiVersion": "rpr/v1", "kind": "Repo", "metadata": {"name": "hello"},
             "spec": {"provider": "github", "url": "https://github.com/Codertocat/Hello-World",
                      "apiURL": gh.url, "branch": "master", "interval": "24h"}},
            local_server("a"),
            binding("deploy", "echo $RPR_REPO@$RPR_BRANCH $RPR_COMMIT", repo="hello", server="a"),
        ])
        first = wait_runs(rprd, "deploy", lambda rs: rs and finished(rs[0]), "the first deploy")[0]
        assert first["spec"]["commit"] == OLD
        gh.set_head("Codertocat", "Hello-World", "master", sha=NEW, message="Update README.md")
        r = deliver(rprd, payload("push.4.json"))
        assert r.status == 202 and r.json()["triggered"] == ["hello"], r
        rs = wait_runs(rprd, "deploy", lambda rs: len(rs) == 2 and finished(rs[1]), "the webhook's deploy", timeout=10)
        assert rs[1]["status"]["phase"] == "Succeeded" and rs[1]["spec"]["triggeredBy"] == "commit"
        assert out_lines(run_log(rprd, rs[1]["metadata"]["name"])) == ["hello@master " + NEW]
    finally:
        gh.stop()


def test_a_server_labelled_later_is_deployed_to(rprd, gitrepo):
    rprd.apply([git_repo("site", gitrepo), local_server("a", {"role": "web"}), local_server("b", {"role": "db"}),
                binding("deploy", "echo on $RPR_SERVER", labels={"role": "web"})])
    rs = wait_runs(rprd, "deploy", lambda rs: rs and all(map(finished, rs)), "the deploy to a")
    assert [r["spec"]["server"] for r in rs] == ["a"]
    rprd.apply([local_server("b", {"role": "web"})])
    rs = wait_runs(rprd, "deploy", lambda rs: len(rs) == 2 and finished(rs[1]), "the deploy to b once labelled")
    assert rs[1]["spec"]["server"] == "b" and phase(rs[1]) == "Succeeded"
    assert rs[1]["spec"]["commit"] == gitrepo.first


def test_activity_log_shows_the_last_ten_lines_by_default(rprd, gitrepo):
    rprd.apply([git_repo("site", gitrepo), local_server("a"), binding("deploy", "true", server="a")])
    wait_runs(rprd, "deploy", lambda rs: rs and finished(rs[0]), "the first run")
    for i in range(3):
        assert rprd.ctl("trigger", "binding", "deploy").returncode == 0
        wait_runs(rprd, "deploy", lambda rs: len(rs) == i + 2 and finished(rs[-1]), "run %d" % (i + 2))
    lines = rprd.ctl("logs", "activity").stdout.splitlines()
    assert len(lines) == 10, lines
    assert "Succeeded" in lines[-1]
    every = rprd.ctl("logs", "activity", "--tail", "100").stdout.splitlines()
    assert len(every) > 10 and every[-10:] == lines
    r = rprd.get("/api/v1/logs/activity?tail=3")
    assert r.status == 200 and r.text.splitlines() == every[-3:]
