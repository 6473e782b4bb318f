"""Crash safety: a command never outlives rprd to run beside its retry.

A Run's command runs in a session of its own (locally) or under sshd
(remotely): neither dies with rprd. Its process group is recorded in a pid
file before the script starts; the next rprd stops what is left of it
(TERM, grace, KILL) before the Run ends Interrupted and its retry starts,
and status.leftover says what it found. The commands here hold a lock on
the host (flock -n): a second copy running at the same time fails to take
it and leaves a mark. Also the pipeline side: a task's end is durable
before its dependents start, so a resumed job never runs it again.
"""

import os
import random
import signal
import subprocess
import tempfile
import time

import pytest

from test_bindings import (binding, git_repo, gitrepo, local_server, phase, runs_of, ssh_server,  # noqa: F401
                           wait_for, wait_runs)

CONTROLLERS = True


def locked_command(d, name, seconds):
    """Takes the lock or marks an overlap; notes its start and end."""
    return ("exec 9>>%(d)s/%(n)s.lock; if ! flock -n 9; then echo overlap >> %(d)s/%(n)s.overlaps; exit 3; fi; "
            "echo start $RPR_RUN >> %(d)s/%(n)s.log; sleep %(s)s; echo end $RPR_RUN >> %(d)s/%(n)s.log"
            % {"d": d, "n": name, "s": seconds})


def marker_processes(marker):
    p = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True)
    return [int(x) for x in p.stdout.split()]


@pytest.fixture
def host_dir():
    d = tempfile.mkdtemp(prefix="rpr-crash-")
    os.chmod(d, 0o777)
    yield d
    subprocess.run(["pkill", "-KILL", "-f", d], capture_output=True)


def test_local_leftover_is_stopped_before_the_retry(rprd, gitrepo, host_dir):  # noqa: F811
    rprd.apply([git_repo("site", gitrepo), local_server("a"),
                binding("deploy", locked_command(host_dir, "deploy", 30), server="a", retries=1,
                        backoff={"base": "1s"})])
    wait_runs(rprd, "deploy", lambda rs: rs and phase(rs[0]) == "Running", "the run to start")
    wait_for(lambda: os.path.exists(os.path.join(host_dir, "deploy.log")), "the command to start")
    assert marker_processes(host_dir), "the command runs"
    rprd.kill()
    assert marker_processes(host_dir), "the command outlives rprd (what the next rprd must deal with)"
    rprd.start()
    rs = wait_runs(rprd, "deploy", lambda rs: len(rs) >= 2 and phase(rs[1]) not in (None, "Pending"), "the retry")
    time.sleep(1)
    assert not os.path.exists(os.path.join(host_dir, "deploy.overlaps")), "the retry ran beside the leftover"
    st = rs[0]["status"]
    assert st["phase"] == "Interrupted" and st["reason"] == "RprdRestarted", st
    assert st.get("leftover") == "Terminated" and "stopped" in st["message"], st
    starts = [l for l in open(os.path.join(host_dir, "deploy.log")).read().splitlines() if l.startswith("start")]
    assert len(starts) == 2
    # The retry sleeps 30 s: canceled, rprd need not wait for it to stop.
    assert rprd.ctl("cancel", "run", rs[1]["metadata"]["name"]).returncode == 0
    wait_runs(rprd, "deploy", lambda rs: phase(rs[1]) == "Canceled", "the retry canceled")


def test_ssh_leftover_is_stopped_before_the_retry(rprd, gitrepo, sshd, ssh_keys, host_dir):  # noqa: F811
    rprd.apply([git_repo("site", gitrepo), ssh_server("web-1", sshd, ssh_keys)])
    wait_for(lambda: rprd.obj("servers", "web-1").get("status", {}).get("phase") == "Reachable", "web-1")
    rprd.apply([binding("deploy", locked_command(host_dir, "deploy", 30), server="web-1", retries=1,
                        backoff={"base": "1s"})])
    wait_for(lambda: os.path.exists(os.path.join(host_dir, "deploy.log")), "the command to start")
    rprd.kill()
    time.sleep(0.5)
    assert marker_processes(host_dir), "the command outlives its channel (no pty: nothing signals it)"
    rprd.start()
    rs = wait_runs(rprd, "deploy", lambda rs: len(rs) >= 2 and phase(rs[1]) not in (None, "Pending"), "the retry")
    time.sleep(1)
    assert not os.path.exists(os.path.join(host_dir, "deploy.overlaps")), "the retry ran beside the leftover"
    assert rs[0]["status"].get("leftover") == "Terminated", rs[0]["status"]


def test_a_finished_command_is_found_ended(rprd, gitrepo, host_dir):  # noqa: F811
    """The command ended by itself while rprd was down: nothing is killed."""
    rprd.apply([git_repo("site", gitrepo), local_server("a"),
                binding("deploy", locked_command(host_dir, "deploy", 1), server="a")])
    wait_for(lambda: os.path.exists(os.path.join(host_dir, "deploy.log")), "the command to start")
    rprd.kill()
    time.sleep(2)
    assert not marker_processes(host_dir)
    rprd.start()
    rs = wait_runs(rprd, "deploy", lambda rs: rs and phase(rs[0]) == "Interrupted", "the run to end")
    st = rs[0]["status"]
    assert st.get("leftover") in ("None", "Ended") and "nothing of it was left running" in st["message"], st


# ---- pipelines: a resumed job never re-runs a task whose end was recorded -------------------

def chain_pipeline(name, host, n):
    """t00 → t01 → ... : never two tasks at once, unless something ran twice."""
    tasks = {}
    for k in range(n):
        script = ("exec 9>>%(h)s/chain.lock; if ! flock -n 9; then echo overlap $RPR_TASK >> %(h)s/overlaps; "
                  "exit 3; fi; echo start $RPR_TASK >> %(h)s/order; sleep 0.0%(s)d; echo end $RPR_TASK >> %(h)s/order"
                  % {"h": host, "s": random.randint(2, 9)})
        tasks["t%02d" % k] = {"script": script}
        if k:
            tasks["t%02d" % k]["dependsOn"] = ["t%02d" % (k - 1)]
    return {"apiVersion": "rpr/v1", "kind": "Pipeline", "metadata": {"name": name},
            "spec": {"tasks": tasks, "onInterrupt": "resume"}}


def job_of(d, name):
    r = d.get("/api/v1/namespaces/default/runs/" + name)
    return r.json() if r.status == 200 else None


def test_pipeline_resume_soak_never_reruns_a_recorded_task(rprd, host_dir):
    n = 40
    rprd.apply([chain_pipeline("chain", host_dir, n)])
    r = rprd.request("POST", "/api/v1/namespaces/default/pipelines/chain/runs", body={})
    assert r.status == 201, r
    rng = random.Random(16)
    kills = 0
    while kills < 8:
        time.sleep(rng.uniform(0.2, 0.7))
        j = job_of(rprd, "chain-1")
        if j["status"].get("phase") in ("Succeeded", "Failed", "Interrupted"):
            break
        rprd.kill()
        kills += 1
        rprd.start()
    j = wait_for(lambda: (lambda j: j if j["status"].get("phase") in ("Succeeded", "Failed", "Interrupted")
                          else None)(job_of(rprd, "chain-1")), "the job to end", timeout=120)
    assert kills >= 3, "the job ended before the soak got going"
    st = j["status"]
    assert st["phase"] == "Succeeded", st
    assert all(t["phase"] == "Succeeded" for t in st["tasks"].values()), st["tasks"]
    assert not os.path.exists(os.path.join(host_dir, "overlaps")), open(os.path.join(host_dir, "overlaps")).read()
    order = [l.split() for l in open(os.path.join(host_dir, "order")).read().splitlines()]
    starts = [t for what, t in order if what == "start"]
    for k in range(1, n):
        dep, task = "t%02d" % (k - 1), "t%02d" % k
        first_start = starts.index(task)
        assert dep not in starts[first_start + 1:], \
            "%s ran again after %s had started: its end had been recorded" % (dep, task)
    time.sleep(0.5)
    assert not marker_processes(host_dir), "nothing is left running"


# ---- the soak: kill -9 at random points while Bindings run ---------------------------------

STATED = ("Succeeded", "Failed", "Canceled", "Interrupted")
LEFTOVERS = ("None", "Ended", "Terminated", "Killed")


def trigger(d, name):
    return d.request("POST", "/api/v1/namespaces/default/bindings/%s/trigger" % name, body={})


def test_kill_9_soak_no_overlap_every_run_stated_nothing_left(rprd, gitrepo, sshd, ssh_keys, host_dir):  # noqa: F811
    rprd.apply([git_repo("site", gitrepo), local_server("a"), ssh_server("web-1", sshd, ssh_keys)])
    wait_for(lambda: rprd.obj("servers", "web-1").get("status", {}).get("phase") == "Reachable", "web-1")
    rprd.apply([binding("loc", locked_command(host_dir, "loc", "0.$(($$ % 9 + 1))"), server="a", retries=20,
                        backoff={"base": "1s", "max": "1s"}),
                binding("rem", locked_command(host_dir, "rem", "0.$(($$ % 9 + 1))"), server="web-1", retries=20,
                        backoff={"base": "1s", "max": "1s"})])
    rng = random.Random(15)
    for kill in range(15):
        for name in ("loc", "rem"):
            trigger(rprd, name)
        time.sleep(rng.uniform(0.1, 1.2))
        rprd.kill()
        rprd.start()

    def settled():
        """Every Run ended, and no retry came for longer than the backoff."""
        rs = runs_of(rprd, "loc") + runs_of(rprd, "rem")
        if not rs or any(phase(r) not in STATED for r in rs):
            return None
        time.sleep(3)
        again = runs_of(rprd, "loc") + runs_of(rprd, "rem")
        return rs if [r["metadata"]["name"] for r in again] == [r["metadata"]["name"] for r in rs] else None
    rs = wait_for(settled, "every run to end", timeout=180, interval=0.5)
    for name in ("loc", "rem"):
        path = os.path.join(host_dir, name + ".overlaps")
        assert not os.path.exists(path), "%s: a command ran beside another copy %d times" % (
            name, len(open(path).read().split()))
    for r in rs:
        st = r["status"]
        assert st.get("reason") and st.get("message"), st
        if st["phase"] == "Interrupted":
            assert st.get("leftover") in LEFTOVERS, (r["metadata"]["name"], st)
    assert any(r["status"]["phase"] == "Interrupted" for r in rs), "no kill hit a running command"
    time.sleep(0.5)
    left = marker_processes(host_dir)
    assert not left, "left running after the last restart: %s\n%s" % (
        subprocess.run(["ps", "-o", "pid,ppid,pgid,etimes,args", "-p", ",".join(map(str, left))],
                       capture_output=True, text=True).stdout,
        [(r["metadata"]["name"], r["status"]) for r in rs])


# ---- what held: keep it so -------------------------------------------------------------------

def test_acknowledged_writes_survive_kill_9_during_concurrent_applies(rprd_factory):
    """kill -9 while three clients apply: every acknowledged write is there
    after the restart, and the database passes integrity_check."""
    import sqlite3
    import threading
    from conftest import server

    d = rprd_factory()
    acked = {}
    rng = random.Random(150)
    for round_ in range(8):
        stop = threading.Event()

        def load(worker):
            i = 0
            while not stop.is_set():
                name = "r%d-w%d-%d" % (round_, worker, i)
                try:
                    r = d.apply([server(name)])["items"][0]
                except Exception:  # the daemon died under the request: not acknowledged
                    return
                acked[name] = r["resourceVersion"]
                i += 1
        threads = [threading.Thread(target=load, args=(k,)) for k in range(3)]
        for t in threads:
            t.start()
        time.sleep(rng.uniform(0.2, 0.6))
        d.kill()
        stop.set()
        for t in threads:
            t.join()
        d.start()
    have = {o["metadata"]["name"]: o["metadata"]["resourceVersion"]
            for o in d.get("/api/v1/servers").json()["items"]}
    # (the Server controller writes their status too: a later revision is fine)
    lost = [n for n, rv in acked.items() if int(have.get(n, 0)) < int(rv)]
    assert len(acked) > 50 and not lost, "%d of %d acknowledged writes lost: %s (have %d, e.g. %s)" % (
        len(lost), len(acked), [(n, acked[n], have.get(n)) for n in lost[:5]], len(have), list(have.items())[:3])
    con = sqlite3.connect("file:%s?mode=ro" % os.path.join(d.state_dir, "state.db"), uri=True)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    con.close()


def test_sigstop_then_sigcont_resumes_cleanly(rprd_factory):
    from conftest import server

    d = rprd_factory()
    d.apply([server("before")])
    os.kill(d.proc.pid, signal.SIGSTOP)
    time.sleep(3)
    os.kill(d.proc.pid, signal.SIGCONT)
    assert d.request("GET", "/healthz", token=None).status == 200
    assert d.apply([server("after")])["items"][0]["outcome"] == "created"
    assert d.get("/api/v1/namespaces/default/servers/before").status == 200


def test_pipeline_task_leftovers_are_stopped_before_the_job_resumes(rprd, sshd, ssh_keys, host_dir):
    """A local and an ssh task running when rprd dies: both are stopped,
    each says so in status.tasks, and the resumed job runs them alone."""
    rprd.apply([ssh_server("web-1", sshd, ssh_keys)])
    wait_for(lambda: rprd.obj("servers", "web-1").get("status", {}).get("phase") == "Reachable", "web-1")
    rprd.apply([{"apiVersion": "rpr/v1", "kind": "Pipeline", "metadata": {"name": "p"},
                 "spec": {"onInterrupt": "resume", "tasks": {
                     "here": {"script": locked_command(host_dir, "here", 4)},
                     "there": {"script": locked_command(host_dir, "there", 4), "server": "web-1"}}}}])
    assert rprd.request("POST", "/api/v1/namespaces/default/pipelines/p/runs", body={}).status == 201
    wait_for(lambda: all(os.path.exists(os.path.join(host_dir, n + ".log")) for n in ("here", "there")),
             "both tasks to start")
    time.sleep(0.3)
    rprd.kill()
    rprd.start()
    j = wait_for(lambda: (lambda j: j if j["status"].get("phase") in ("Succeeded", "Failed") else None)(
        job_of(rprd, "p-1")), "the job to end", timeout=60)
    for n in ("here", "there"):
        assert not os.path.exists(os.path.join(host_dir, n + ".overlaps")), "%s ran beside its leftover" % n
    assert j["status"]["phase"] == "Succeeded" and j["status"]["resumes"] == 1, j["status"]
    for n in ("here", "there"):
        assert j["status"]["tasks"][n]["leftover"] == "Terminated", j["status"]["tasks"][n]
    log = rprd.ctl("logs", "run/p-1").stdout
    assert "task there was running when rprd stopped; what was left of it: Terminated" in log, log
    for n in ("here", "there"):
        starts = [l for l in open(os.path.join(host_dir, n + ".log")).read().splitlines() if l.startswith("start")]
        assert len(starts) == 2, (n, starts)
    assert not marker_processes(host_dir)


def test_lost_connection_stops_the_leftover_before_the_retry(rprd, gitrepo, sshd, ssh_keys, host_dir):  # noqa: F811
    """The connection dies while the command runs (rprd does not): without a
    pty nothing stops the command, so it is stopped before the retry."""
    rprd.apply([git_repo("site", gitrepo), ssh_server("web-1", sshd, ssh_keys)])
    wait_for(lambda: rprd.obj("servers", "web-1").get("status", {}).get("phase") == "Reachable", "web-1")
    rprd.apply([binding("deploy", locked_command(host_dir, "deploy", 20), server="web-1", retries=1,
                        backoff={"base": "1s"})])
    wait_for(lambda: os.path.exists(os.path.join(host_dir, "deploy.log")), "the command to start")
    kill_ssh_connections(sshd)
    rs = wait_runs(rprd, "deploy", lambda rs: len(rs) >= 2 and phase(rs[1]) not in (None, "Pending"), "the retry")
    time.sleep(1)
    assert not os.path.exists(os.path.join(host_dir, "deploy.overlaps")), "the retry ran beside the leftover"
    st = rs[0]["status"]
    assert st["phase"] == "Failed" and st["reason"] == "Disconnected" and st.get("leftover") == "Terminated", st


def kill_ssh_connections(sshd):
    """Kills the connections' sshd processes, not the commands under them."""
    from sshd import descendants
    for pid in descendants(sshd.proc.pid):
        try:
            if open("/proc/%d/comm" % pid).read().strip().startswith("sshd"):
                os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def test_pipeline_task_retry_waits_for_its_lost_leftover(rprd, sshd, ssh_keys, host_dir):
    rprd.apply([ssh_server("web-1", sshd, ssh_keys)])
    wait_for(lambda: rprd.obj("servers", "web-1").get("status", {}).get("phase") == "Reachable", "web-1")
    rprd.apply([{"apiVersion": "rpr/v1", "kind": "Pipeline", "metadata": {"name": "p"},
                 "spec": {"tasks": {"there": {"script": locked_command(host_dir, "there", 3), "server": "web-1",
                                              "retries": 1}}}}])
    assert rprd.request("POST", "/api/v1/namespaces/default/pipelines/p/runs", body={}).status == 201
    wait_for(lambda: os.path.exists(os.path.join(host_dir, "there.log")), "the task to start")
    kill_ssh_connections(sshd)
    j = wait_for(lambda: (lambda j: j if j["status"].get("phase") in ("Succeeded", "Failed") else None)(
        job_of(rprd, "p-1")), "the job to end", timeout=60)
    assert not os.path.exists(os.path.join(host_dir, "there.overlaps")), "the retry ran beside the leftover"
    t = j["status"]["tasks"]["there"]
    assert j["status"]["phase"] == "Succeeded" and t["attempt"] == 2 and t["leftover"] == "Terminated", t
