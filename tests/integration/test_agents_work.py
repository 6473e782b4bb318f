"""Work on agent Servers beyond Runs and exec (issue 19): pipeline tasks and
large inputs (a Runner's release) on `transport: agent` Servers, through
real rpr-agent processes against a real rprd over TLS on 127.0.0.1. A task's
output goes to its log, its timeout, retries and cancel act on the agent's
process, a task waits for an offline agent and runs when it polls again,
and an agent killed mid-task fails the task by its lease. Runners on agent
Servers are in test_agents_runners.py."""

import asyncio
import hashlib
import http.client
import json
import os
import signal
import socket
import ssl
import threading
import time

from conftest import free_port
from test_agents import FINGERPRINT, agents, rprd, running_agent, wait_phase  # noqa: F401 (fixtures)
from test_agents import JOIN_SECRET, CuttingProxy, command_entry, exec_api, exec_in_background, https, join_token, output_of, raw_join
from test_agents import result_of, wait_entries
from test_pipelines import job, out_lines, pipeline, procs, start, task_log, wait_job
from runner_release import build
from test_runners import gh, idle_count, workdir  # noqa: F401 (fixtures)
from test_runners import objects as runner_objects
from test_runners import wait_for as runner_wait

CONTROLLERS = True


def test_a_pipeline_task_runs_on_an_agent_server_its_output_in_the_tasks_log(rprd, agents):  # noqa: F811
    running_agent(rprd, agents, "edge")
    rprd.apply([pipeline("p", {
        "hello": {"script": "echo on $RPR_SERVER task $RPR_TASK; echo arg=$GREETING", "server": "edge",
                  "env": {"GREETING": "hi there"}},
        "after": {"script": ["cd /", "pwd", "exit 4"], "server": "edge", "dependsOn": ["hello"]},
    })])
    assert start(rprd, "p").status == 201
    j = wait_job(rprd, "p-1")
    t = j["status"]["tasks"]
    assert t["hello"]["phase"] == "Succeeded" and t["hello"]["exitCode"] == 0, t
    assert out_lines(task_log(rprd, "p-1", "hello")) == ["on edge task hello", "arg=hi there"]
    assert t["after"]["phase"] == "Failed" and t["after"]["exitCode"] == 4, t["after"]
    assert out_lines(task_log(rprd, "p-1", "after")) == ["/"]
    assert j["status"]["phase"] == "Failed"


def test_a_job_holds_no_fd_of_its_agent_but_its_three_streams(rprd, agents):  # noqa: F811
    running_agent(rprd, agents, "edge")
    rprd.apply([pipeline("fds", {"ls": {"script": "ls -l /proc/self/fd/", "server": "edge"}})])
    assert start(rprd, "fds").status == 201
    j = wait_job(rprd, "fds-1")
    assert j["status"]["tasks"]["ls"]["phase"] == "Succeeded", j
    log = "\n".join(out_lines(task_log(rprd, "fds-1", "ls")))
    assert "/dev/null" in log, log
    assert "socket:" not in log, "the agent's connection to rprd leaked into its job:\n" + log


def test_a_task_with_servers_runs_on_each_selected_agent(rprd, agents):  # noqa: F811
    running_agent(rprd, agents, "pi-1", labels="fleet=home")
    a2 = agents(rprd, "pi-2")
    assert a2.join(labels="fleet=home").returncode == 0
    a2.start()
    wait_phase(rprd, "pi-2", "Reachable")
    rprd.apply([pipeline("fan", {"who": {"script": "echo I am $RPR_SERVER", "servers": {"matchLabels": {"fleet": "home"}}}})])
    assert start(rprd, "fan").status == 201
    j = wait_job(rprd, "fan-1")
    assert j["status"]["phase"] == "Succeeded", j["status"]
    assert set(j["status"]["tasks"]) == {"who@pi-1", "who@pi-2"}
    for s in ("pi-1", "pi-2"):
        assert out_lines(task_log(rprd, "fan-1", "who@" + s)) == ["I am " + s]


def test_a_task_waits_for_its_stopped_agent_and_runs_when_it_starts(rprd, agents):  # noqa: F811
    a = running_agent(rprd, agents, "laptop")
    a.stop()
    wait_phase(rprd, "laptop", "Unreachable", timeout=30)
    rprd.apply([pipeline("later", {"t": {"script": "echo finally", "server": "laptop"}})])
    assert start(rprd, "later").status == 201
    wait_job(rprd, "later-1", lambda j: j["status"].get("tasks", {}).get("t", {}).get("phase") == "Waiting",
             "the task to wait")
    time.sleep(1)
    assert job(rprd, "later-1")["status"]["tasks"]["t"]["phase"] == "Waiting"
    a.start()
    j = wait_job(rprd, "later-1")
    assert j["status"]["phase"] == "Succeeded", j["status"]
    assert out_lines(task_log(rprd, "later-1", "t")) == ["finally"]


def test_a_task_on_an_agent_times_out_retries_and_is_canceled(rprd, agents, tmp_path):  # noqa: F811
    running_agent(rprd, agents, "edge")
    marker = tmp_path / "tried"
    rprd.apply([pipeline("t", {
        "slow": {"script": "sleep 6301", "timeout": "1s", "server": "edge"},
        "second-time": {"script": "test -e %s || { touch %s; exit 9; }" % (marker, marker), "retries": 2,
                        "server": "edge"},
    }), pipeline("k", {"tree": {"script": "sh -c 'sleep 6302' & sleep 6303; wait", "server": "edge"}})])
    assert start(rprd, "t").status == 201
    j = wait_job(rprd, "t-1")
    t = j["status"]["tasks"]
    assert t["slow"]["phase"] == "Failed" and t["slow"]["reason"] == "Timeout", t["slow"]
    assert t["second-time"]["phase"] == "Succeeded" and t["second-time"]["attempt"] == 2, t["second-time"]
    assert not procs("sleep 6301")

    assert start(rprd, "k").status == 201
    deadline = time.time() + 30
    while not (procs("sleep 6302") and procs("sleep 6303")) and time.time() < deadline:
        time.sleep(0.05)
    assert procs("sleep 6302") and procs("sleep 6303")
    assert rprd.ctl("cancel", "run", "k-1").returncode == 0
    j = wait_job(rprd, "k-1")
    assert j["status"]["phase"] == "Canceled" and j["status"]["tasks"]["tree"]["phase"] == "Canceled", j["status"]
    deadline = time.time() + 15
    while (procs("sleep 6302") or procs("sleep 6303")) and time.time() < deadline:
        time.sleep(0.1)
    assert not procs("sleep 6302") and not procs("sleep 6303"), "the agent killed the whole process group"


def test_an_agent_killed_mid_task_fails_the_task_by_its_lease(rprd, agents):  # noqa: F811
    a = running_agent(rprd, agents, "edge")
    rprd.apply([pipeline("lost", {"long": {"script": "echo started; sleep 6401", "server": "edge"},
                                  "next": {"script": "echo never", "server": "edge", "dependsOn": ["long"]}})])
    assert start(rprd, "lost").status == 201
    wait_job(rprd, "lost-1", lambda j: j["status"].get("tasks", {}).get("long", {}).get("phase") == "Running", "long")
    deadline = time.time() + 20
    while "started" not in rprd.ctl("logs", "run/lost-1", "--task", "long").stdout and time.time() < deadline:
        time.sleep(0.1)
    a.kill()
    t0 = time.time()
    j = wait_job(rprd, "lost-1", timeout=40)
    long = j["status"]["tasks"]["long"]
    assert long["phase"] == "Failed" and long["reason"] == "Disconnected", long
    assert "stopped renewing the job's lease" in long["message"], long
    assert j["status"]["tasks"]["next"]["phase"] == "Skipped"
    assert time.time() - t0 > 3, "judged by the lease, not at once"
    assert out_lines(task_log(rprd, "lost-1", "long")) == ["started"]
    subprocess_kill("sleep 6401")


def subprocess_kill(marker):
    """The job a killed agent left behind (its own process group)."""
    for pid in procs(marker):
        try:
            os.kill(int(pid), signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_rprd_killed_mid_task_on_an_agent_resumes_the_task_and_the_agent_stops_the_old_one(rprd, agents,  # noqa: F811
                                                                                          tmp_path):
    running_agent(rprd, agents, "edge")
    counter, mark = tmp_path / "runs", tmp_path / "mark"
    rprd.apply([pipeline("r", {"long": {"script": "echo run >> %s; if [ ! -e %s ]; then touch %s; sleep 6501; fi; "
                                                  "echo long done" % (counter, mark, mark), "server": "edge"}},
                         onInterrupt="resume")])
    assert start(rprd, "r").status == 201
    deadline = time.time() + 30
    while not procs("sleep 6501") and time.time() < deadline:
        time.sleep(0.05)
    assert procs("sleep 6501")
    time.sleep(0.2)  # the tasks' states reach the store every 50 ms
    rprd.kill()
    rprd.start()
    j = wait_job(rprd, "r-1", timeout=60)
    assert j["status"]["phase"] == "Succeeded" and j["status"]["resumes"] == 1, j["status"]
    assert out_lines(task_log(rprd, "r-1", "long"))[-1] == "long done"
    assert counter.read_text().count("run") == 2
    deadline = time.time() + 20
    while procs("sleep 6501") and time.time() < deadline:
        time.sleep(0.1)
    assert not procs("sleep 6501"), "the agent stopped the job the new rprd does not know"


# ---- large inputs (a Runner's release) ----------------------------------------------

def big_release(gh, workdir, mib=3):
    """A release over the 1 MiB an offer carries inline (random data does not
    compress)."""
    path, sha = build(workdir, pad=mib << 20)
    os.chmod(path, 0o644)
    assert os.path.getsize(path) > mib << 20
    gh.runner_control("runner_release", path=path, version="2.321.0")
    return path, sha


def test_a_cut_download_of_a_large_input_goes_on_where_it_stopped(rprd, agents, gh, workdir):  # noqa: F811
    path, sha = big_release(gh, workdir, mib=4)
    proxy = CuttingProxy(rprd.tls_port, cuts=1, after=2 << 20, toward_agent=True)
    try:
        join_token(rprd)
        a = agents(rprd, "ci-box")
        p = a.join(labels="ci=true", server="https://127.0.0.1:%d" % proxy.port)
        assert p.returncode == 0, p.stderr
        a.start()
        wait_phase(rprd, "ci-box", "Reachable")
        rprd.apply([o for o in runner_objects(gh, [], workdir, replicas=1) if o["kind"] != "Server"])
        runner_wait(rprd, lambda o: idle_count(o) == 1, "1 idle", timeout=90)
        assert proxy.cut == 1, "the proxy cut a connection"
        a.wait_log("its input goes on from byte")
        kept = os.path.join(workdir, "install", ".releases", sha + ".tar.gz")
        with open(kept, "rb") as f:
            assert hashlib.sha256(f.read()).hexdigest() == sha
    finally:
        proxy.close()


class FlippingRelay:
    """Speaks TLS to the agent with rprd's own key (the agent pins it) and
    to rprd, both HTTP/1.1, and flips one byte, once, of what goes to the
    agent past flip_at bytes: into a large input's body. An asyncio loop of
    its own: a TLS connection is read and written at once (a poll stream),
    which one loop does safely and two threads on one socket do not."""

    def __init__(self, d, flip_at):
        self.d, self.flip_at, self.flipped = d, flip_at, False
        tls = os.path.join(d.state_dir, "tls")
        self.server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.server_ctx.load_cert_chain(os.path.join(tls, "cert.pem"), os.path.join(tls, "key.pem"))
        self.server_ctx.set_alpn_protocols(["http/1.1"])
        self.client_ctx = ssl.create_default_context(cafile=d.cert)
        self.client_ctx.check_hostname = False
        self.client_ctx.set_alpn_protocols(["http/1.1"])
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        threading.Thread(target=self.run, args=(ready,), daemon=True).start()
        assert ready.wait(10), "the relay did not start"

    def run(self, ready):
        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(
            asyncio.start_server(self.handle, "127.0.0.1", 0, ssl=self.server_ctx))
        self.url = "https://127.0.0.1:%d" % self.server.sockets[0].getsockname()[1]
        ready.set()
        self.loop.run_forever()

    async def handle(self, agent_r, agent_w):
        try:
            rprd_r, rprd_w = await asyncio.open_connection("127.0.0.1", self.d.tls_port, ssl=self.client_ctx)
        except OSError:
            agent_w.close()
            return
        await asyncio.gather(self.pump(agent_r, rprd_w, False), self.pump(rprd_r, agent_w, True))

    async def pump(self, r, w, down):
        sent = 0
        try:
            while True:
                data = await r.read(65536)
                if not data:
                    break
                if down and not self.flipped and sent + len(data) > self.flip_at:
                    k = max(0, self.flip_at - sent)
                    data = data[:k] + bytes([data[k] ^ 0x55]) + data[k + 1:]
                    self.flipped = True
                w.write(data)
                await w.drain()
                sent += len(data)
        except (OSError, ssl.SSLError):
            pass
        w.close()

    def close(self):
        async def stop():
            self.server.close()
            for t in asyncio.all_tasks():
                if t is not asyncio.current_task():
                    t.cancel()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)


def test_a_large_input_with_a_wrong_checksum_fails_its_job_with_the_reason(rprd, agents, gh, workdir):  # noqa: F811
    path, sha = big_release(gh, workdir, mib=3)
    relay = FlippingRelay(rprd, flip_at=2 << 20)
    try:
        join_token(rprd)
        a = agents(rprd, "ci-box")
        p = a.join(labels="ci=true", server=relay.url)
        assert p.returncode == 0, p.stderr
        a.start()
        wait_phase(rprd, "ci-box", "Reachable")
        rprd.apply([o for o in runner_objects(gh, [], workdir, replicas=1) if o["kind"] != "Server"])
        a.wait_log("its input's sha256 is", timeout=60)
        assert relay.flipped
        assert "not the %s the offer says" % sha in a.log(), a.log()
        # The install failed with that reason; the Runner's next pass
        # (nothing flipped) installs it.
        o = runner_wait(rprd, lambda o: "sha256 is" in json.dumps(o), "the reason in the Runner", timeout=60)
        assert "InstallFailed" in json.dumps(o) and "exit 125 on its agent's host" in json.dumps(o), o["status"]
        runner_wait(rprd, lambda o: idle_count(o) == 1, "1 idle", timeout=90)
        kept = os.path.join(workdir, "install", ".releases", sha + ".tar.gz")
        with open(kept, "rb") as f:
            assert hashlib.sha256(f.read()).hexdigest() == sha
    finally:
        relay.close()


def raw_poll(d, cred):
    st, body = https(d, "POST", "/api/v1/agents/poll", {"version": "0.1.0", "capacity": 1, "pollSeconds": 2,
                                                         "wait": 0, "jobs": []}, token=cred)
    assert st == 200, body
    return json.loads(body)


def input_get(d, path, cred, rng=None):
    ctx = ssl.create_default_context(cafile=d.cert)
    conn = http.client.HTTPSConnection("localhost", d.tls_port, context=ctx, timeout=40)
    headers = {"Authorization": "Bearer " + cred}
    if rng:
        headers["Range"] = rng
    conn.request("GET", path, headers=headers)
    r = conn.getresponse()
    out = r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    conn.close()
    return out


def stand_in_install_offer(rprd, gh, workdir, mib):
    """A stand-in agent speaking the protocol, for a Runner's install job:
    (its credential, the offer with a large input, the release's bytes, its
    sha256). Jobs before it end at once, saying nothing."""
    path, sha = big_release(gh, workdir, mib=mib)
    with open(path, "rb") as f:
        data = f.read()
    join_token(rprd)
    st, body = https(rprd, "POST", "/api/v1/agents/join",
                     {"token": JOIN_SECRET, "name": "ci-box", "version": "0.1.0", "labels": {"ci": "true"}})
    assert st == 201, body
    cred = json.loads(body)["credential"]
    other = raw_join(rprd, "other")
    rprd.apply([o for o in runner_objects(gh, [], workdir, replicas=1) if o["kind"] != "Server"])
    offer, deadline = None, time.time() + 60
    while not offer and time.time() < deadline:
        for o in raw_poll(rprd, cred).get("offers", []):
            if "inputBytes" in o:
                offer = o
                break
            jp = "/api/v1/agents/jobs/%s/" % o["id"]
            assert https(rprd, "POST", jp + "accept", token=cred)[0] == 200
            end = {"exitCode": 0, "signal": "", "bytes": 0, "sha256": hashlib.sha256(b"").hexdigest()}
            assert https(rprd, "POST", jp + "finish", end, token=cred)[0] == 200
        time.sleep(0.1)
    assert offer, "no offer with a large input"
    return cred, other, offer, data, sha


def test_a_large_input_is_read_by_its_agent_only_whole_or_from_a_byte_on(rprd, gh, workdir):  # noqa: F811
    # Read as rprd serves it: the offer carries its size and checksum, not
    # the bytes.
    cred, other, offer, data, sha = stand_in_install_offer(rprd, gh, workdir, mib=2)
    assert "input" not in offer and offer["inputBytes"] == len(data) and offer["inputSha256"] == sha, offer
    url = "/api/v1/agents/jobs/%s/input" % offer["id"]

    st, _, body = input_get(rprd, url, other)
    assert st == 404, "another agent's credential reads nothing: %r" % body[:200]
    st, headers, body = input_get(rprd, url, cred)
    assert st == 200 and body == data and headers["content-length"] == str(len(data)), (st, headers)
    cut = len(data) - 123457
    st, headers, body = input_get(rprd, url, cred, rng="bytes=%d-" % cut)
    assert st == 206 and body == data[cut:], (st, headers)
    assert headers["content-range"] == "bytes %d-%d/%d" % (cut, len(data) - 1, len(data)), headers
    assert https(rprd, "POST", url, token=cred)[0] == 405


def test_a_slow_download_of_a_large_input_outlasts_the_lease_and_the_job_goes_on(rprd, gh, workdir):  # noqa: F811
    # The agent polls again only once it has the input: on a slow link the
    # download takes longer than the lease (2 windows of 2 s + 5 s here).
    cred, _, offer, data, _ = stand_in_install_offer(rprd, gh, workdir, mib=8)
    jp = "/api/v1/agents/jobs/%s/" % offer["id"]
    assert https(rprd, "POST", jp + "accept", token=cred)[0] == 200
    ctx = ssl.create_default_context(cafile=rprd.cert)
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
    raw.settimeout(40)
    raw.connect(("127.0.0.1", rprd.tls_port))
    conn = http.client.HTTPSConnection("localhost", rprd.tls_port, context=ctx, timeout=40)
    conn.sock = ctx.wrap_socket(raw, server_hostname="localhost")
    conn.request("GET", jp + "input", headers={"Authorization": "Bearer " + cred})
    r = conn.getresponse()
    assert r.status == 200
    got, t0 = b"", time.time()
    while True:
        chunk = r.read(64 * 1024)
        if not chunk:
            break
        got += chunk
        time.sleep(0.1)
    conn.close()
    assert time.time() - t0 > 10 and got == data, (time.time() - t0, len(got))
    end = {"exitCode": 0, "signal": "", "bytes": 0, "sha256": hashlib.sha256(b"").hexdigest()}
    st, body = https(rprd, "POST", jp + "finish", end, token=cred)
    assert st == 200, "the job outlived its lease while its input was read: %r" % body


# ---- stderr apart ---------------------------------------------------------------------------

def err_lines(log):
    return [line.split(" ", 2)[2] for line in log.splitlines() if line.split(" ", 2)[1:2] == ["err"]]


def test_stderr_is_apart_in_a_runs_log_a_tasks_log_and_exec(rprd, agents):  # noqa: F811
    running_agent(rprd, agents, "edge")
    script = "echo to-out; echo to-err >&2; echo more-out; echo more-err >&2"
    rprd.apply([pipeline("both", {"t": {"script": script, "server": "edge"}})])
    assert start(rprd, "both").status == 201
    assert wait_job(rprd, "both-1")["status"]["phase"] == "Succeeded"
    log = task_log(rprd, "both-1", "t")
    assert out_lines(log) == ["to-out", "more-out"], log
    assert err_lines(log) == ["to-err", "more-err"], log

    rprd.apply([{"apiVersion": "rpr/v1", "kind": "Command", "metadata": {"name": "c"},
                 "spec": {"command": script, "serverNames": ["edge"]}}])
    wait_entries(rprd, "c", {"edge": "Succeeded"})
    log = rprd.ctl("logs", "run/" + command_entry(rprd, "c", "edge")["run"]).stdout
    assert out_lines(log) == ["to-out", "more-out"], log
    assert err_lines(log) == ["to-err", "more-err"], log

    lines = exec_api(rprd, {"servers": ["edge"], "command": script})
    by = {s: "".join(l["data"] for l in lines if l.get("stream") == s) for s in ("stdout", "stderr")}
    assert by == {"stdout": "to-out\nmore-out\n", "stderr": "to-err\nmore-err\n"}, lines


def test_an_agent_of_one_stream_still_works_its_output_as_one(rprd):  # noqa: F811
    """An agent older than the two streams (no "streams" in its heartbeat)
    gets offers of one stream and its stderr request is refused by name."""
    join_token(rprd)
    cred = raw_join(rprd, "old")
    t, result = exec_in_background(rprd, {"servers": ["old"], "command": "x"})
    status, body = https(rprd, "POST", "/api/v1/agents/poll", {"version": "0.1.0", "wait": 10}, token=cred)
    offer = json.loads(body)["offers"][0]
    assert "streams" not in offer
    job = offer["id"]
    assert https(rprd, "POST", "/api/v1/agents/jobs/%s/accept" % job, token=cred)[0] == 200
    status, body = https(rprd, "POST", "/api/v1/agents/jobs/%s/output?offset=0&stream=stderr" % job, b"e",
                         token=cred)
    assert status == 400 and b"one output stream" in body, body
    data = b"out and err\n"
    assert https(rprd, "POST", "/api/v1/agents/jobs/%s/output?offset=0" % job, data, token=cred)[0] == 200
    status, body = https(rprd, "POST", "/api/v1/agents/jobs/%s/finish" % job,
                         {"exitCode": 0, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}, token=cred)
    assert status == 200, body
    t.join(20)
    assert output_of(result["lines"], "old") == "out and err\n"
    assert result_of(result["lines"], "old")["exitCode"] == 0


# ---- an agent Run across an rprd restart -------------------------------------------------------

def test_rprd_killed_mid_run_the_agent_job_is_taken_back_and_the_run_ends_with_its_whole_output(  # noqa: F811
        rprd, agents):
    running_agent(rprd, agents, "edge")
    script = "i=0; while [ $i -lt 40 ]; do i=$((i+1)); echo line $i; echo err $i >&2; sleep 0.1; done"
    rprd.apply([{"apiVersion": "rpr/v1", "kind": "Command", "metadata": {"name": "long"},
                 "spec": {"command": script, "serverNames": ["edge"]}}])
    deadline = time.time() + 30
    run = None
    while time.time() < deadline:
        run = command_entry(rprd, "long", "edge").get("run")
        if run and "line 10" in rprd.ctl("logs", "run/" + run).stdout:
            break
        time.sleep(0.1)
    assert run, "the Command made no Run"
    assert rprd.get("/api/v1/namespaces/default/runs/" + run).json()["status"].get("agentJob")
    rprd.kill()
    rprd.start()
    wait_entries(rprd, "long", {"edge": "Succeeded"}, timeout=60)
    st = rprd.get("/api/v1/namespaces/default/runs/" + run).json()["status"]
    assert st["phase"] == "Succeeded" and st["reason"] == "ExitCode" and st["exitCode"] == 0, st
    log = rprd.ctl("logs", "run/" + run).stdout
    assert out_lines(log) == ["line %d" % i for i in range(1, 41)], log
    assert err_lines(log) == ["err %d" % i for i in range(1, 41)], log
    assert "report job" in log and "again" in log, log


def test_rprd_stopped_mid_task_on_an_agent_stops_after_its_grace_and_the_task_follows_on_interrupt(
        rprd_factory, agents):  # noqa: F811
    # No agent reports once rprd stops serving: the task waits out the
    # grace, as one over ssh would, and is then interrupted, not hung.
    port = free_port()
    rprd = rprd_factory(extra_args=["--listen", "tls:127.0.0.1:%d" % port, "--stop-grace", "2s"])
    rprd.tls_port, rprd.https = port, "https://127.0.0.1:%d" % port
    rprd.fingerprint = FINGERPRINT.search(rprd.stderr()).group(1)
    a = running_agent(rprd, agents, "edge")
    rprd.apply([pipeline("s", {"long": {"script": "sleep 6601", "server": "edge"}}, onInterrupt="fail")])
    assert start(rprd, "s").status == 201
    deadline = time.time() + 30
    while not procs("sleep 6601") and time.time() < deadline:
        time.sleep(0.05)
    assert procs("sleep 6601")
    # The agent keeps polling through the stop: its connection is closed
    # with the others (a harness's LSan check fails the test otherwise).
    t0 = time.time()
    rprd.stop()
    assert time.time() - t0 < 10, "rprd took %.1f s to stop" % (time.time() - t0)
    rprd.start()
    j = wait_job(rprd, "s-1", timeout=60)
    assert j["status"]["phase"] == "Interrupted" and j["status"]["tasks"]["long"]["phase"] == "Interrupted", j
    # The task is not taken back: its job, which the agent still reports,
    # is dropped after the restart's grace and the agent kills it.
    deadline = time.time() + 40
    while procs("sleep 6601") and time.time() < deadline:
        time.sleep(0.2)
    assert not procs("sleep 6601"), "the agent stops the job rprd dropped"
    a.stop()


def h2_idle(d):
    """A TLS connection that speaks HTTP/2 (ALPN h2, preface, SETTINGS) and
    then sends nothing: no stream open."""
    ctx = ssl.create_default_context(cafile=d.cert)
    ctx.check_hostname = False
    ctx.set_alpn_protocols(["h2"])
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", d.tls_port), timeout=10))
    assert s.selected_alpn_protocol() == "h2"
    s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0]))
    assert s.recv(9)[3] == 4, "rprd answers with its SETTINGS"
    return s


def http1_idle(d):
    """A keep-alive HTTP/1.1 connection between two requests."""
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(10)
    s.connect(d.sock)
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
    assert s.recv(4096).startswith(b"HTTP/1.1 200")
    return s


def until_eof(s, timeout=10):
    s.settimeout(timeout)
    try:
        while s.recv(4096):
            pass
    except (ssl.SSLError, ConnectionResetError):
        pass


def test_a_stop_closes_idle_http2_and_http1_connections_and_exits_clean(rprd):  # noqa: F811
    # An HTTP/2 connection without a stream has no request h2o could reach
    # it by: rprd used to leave it open, skip the context's disposal and
    # exit with an LSan report (rprd.stop() asserts there is none).
    h2, h1 = h2_idle(rprd), http1_idle(rprd)
    t0 = time.time()
    rprd.stop()
    assert time.time() - t0 < 8, "rprd took %.1f s to stop" % (time.time() - t0)
    for s in (h2, h1):
        until_eof(s, timeout=1)
        s.close()


def test_a_stop_after_an_agent_was_killed_mid_job_exits_clean(rprd_factory, agents):  # noqa: F811
    port = free_port()
    rprd = rprd_factory(extra_args=["--listen", "tls:127.0.0.1:%d" % port, "--stop-grace", "2s"])
    rprd.tls_port, rprd.https = port, "https://127.0.0.1:%d" % port
    rprd.fingerprint = FINGERPRINT.search(rprd.stderr()).group(1)
    a = running_agent(rprd, agents, "edge")
    rprd.apply([{"apiVersion": "rpr/v1", "kind": "Command", "metadata": {"name": "c"},
                 "spec": {"command": "sleep 6804", "serverNames": ["edge"]}}])
    deadline = time.time() + 30
    while not procs("sleep 6804") and time.time() < deadline:
        time.sleep(0.05)
    assert procs("sleep 6804")
    a.kill()
    try:
        rprd.stop()
    finally:
        subprocess_kill("sleep 6804")
