"""Agents (issue 19): real rpr-agent processes on this machine against a
real rprd over TLS on 127.0.0.1. A join token (Token type agent) is traded
for the agent's own secret; the agent long-polls, runs what it is offered as
its own process group and sends the output by byte offset until rprd has it;
its Server is Reachable while it polls. An agent's credential opens the
agents' endpoints for its own Server and nothing else."""

import http.client
import json
import os
import re
import select
import signal
import socket
import ssl
import stat
import subprocess
import tempfile
import threading
import time

import pytest

from conftest import BIN_DIR, RPRCTL, assert_no_sanitizer_report, free_port, sanitizer_env
from test_bindings import gitrepo  # noqa: F401 (a fixture)

CONTROLLERS = True
RPR_AGENT = os.path.join(BIN_DIR, "rpr-agent")
FINGERPRINT = re.compile(r"key fingerprint (SHA256:[A-Za-z0-9+/]{43})")
JOIN_SECRET = "Jn7Qw2Lk9Xv4Rt8Zp3Mb6Hs1"
POLL = 2  # the agents' poll window in these tests: offline after 3 of them


# ---- helpers -------------------------------------------------------------------------

@pytest.fixture
def rprd(rprd_factory):
    port = free_port()
    d = rprd_factory(extra_args=["--listen", "tls:127.0.0.1:%d" % port])
    d.tls_port = port
    d.https = "https://127.0.0.1:%d" % port
    d.fingerprint = FINGERPRINT.search(d.stderr()).group(1)
    d.cert = os.path.join(d.state_dir, "tls", "cert.pem")
    return d


def join_token(d, name="join", value=JOIN_SECRET, **spec):
    d.apply([{"apiVersion": "rpr/v1", "kind": "Token", "metadata": {"name": name},
              "spec": {"type": "agent", "value": value, **spec}}])


class Agent:
    """One rpr-agent on its own state dir."""

    def __init__(self, d, name):
        self.d = d
        self.name = name
        self.state_dir = tempfile.mkdtemp(prefix="rpr-agent-")
        self.proc = None
        self.log_path = os.path.join(self.state_dir, "agent.log")

    def run(self, *args, timeout=30):
        p = subprocess.run([RPR_AGENT, *args, "--state-dir", self.state_dir], capture_output=True, text=True,
                           timeout=timeout, env=sanitizer_env())
        assert_no_sanitizer_report(p.stderr, "rpr-agent " + " ".join(args))
        return p

    def join(self, token=JOIN_SECRET, labels=None, server=None, fingerprint="rprd", ca=None):
        args = ["join", "--server", server or self.d.https, "--token", token, "--name", self.name]
        if labels:
            args += ["--labels", labels]
        if fingerprint:
            args += ["--fingerprint", self.d.fingerprint if fingerprint == "rprd" else fingerprint]
        if ca:
            args += ["--ca", ca]
        return self.run(*args)

    def start(self, poll=POLL):
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([RPR_AGENT, "run", "--state-dir", self.state_dir, "--poll-seconds", str(poll)],
                                     stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=sanitizer_env())
        log.close()
        return self

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def wait_log(self, text, timeout=20):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if text in self.log():
                return
            time.sleep(0.05)
        raise AssertionError("rpr-agent did not log %r:\n%s" % (text, self.log()))

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(40)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        assert_no_sanitizer_report(self.log(), "rpr-agent")

    def kill(self):
        self.proc.kill()
        self.proc.wait()
        self.proc = None

    def credential(self):
        with open(os.path.join(self.state_dir, "credential")) as f:
            return f.read().strip()


@pytest.fixture
def agents():
    made = []

    def make(d, name):
        a = Agent(d, name)
        made.append(a)
        return a

    yield make
    for a in made:
        if a.proc:
            a.stop()


def running_agent(d, agents, name="edge", labels=None):
    """A join token, an agent joined with it and running, its Server Reachable."""
    join_token(d)
    a = agents(d, name)
    p = a.join(labels=labels)
    assert p.returncode == 0, p.stderr
    a.start()
    wait_phase(d, name, "Reachable")
    return a


def wait_phase(d, name, phase, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        s = d.obj("servers", name).get("status", {})
        if s.get("phase") == phase:
            return s
        time.sleep(0.1)
    raise AssertionError("server %s never became %s: %s" % (name, phase, d.obj("servers", name).get("status")))


def exec_api(d, body, timeout=120):
    r = d.request("POST", "/api/v1/exec", body=body, timeout=timeout)
    assert r.status == 200, r
    return [json.loads(line) for line in r.body.splitlines() if line.strip()]


def exec_in_background(d, body):
    """POST /api/v1/exec on a thread: (thread, dict that gets "lines")."""
    result = {}
    t = threading.Thread(target=lambda: result.update(lines=exec_api(d, body)))
    t.start()
    return t, result


def output_of(lines, server):
    return "".join(l["data"] for l in lines if l.get("server") == server and "data" in l)


def result_of(lines, server):
    return next(l for l in lines if l.get("server") == server and "exitCode" in l)


def https(d, method, path, body=None, token=None, timeout=40):
    """One request over TLS, the certificate checked as the agents do."""
    ctx = ssl.create_default_context(cafile=d.cert)
    conn = http.client.HTTPSConnection("localhost", d.tls_port, context=ctx, timeout=timeout)
    headers = {"Authorization": "Bearer " + token} if token else {}
    data = json.dumps(body).encode() if isinstance(body, (dict, list)) else body
    if data is not None and isinstance(body, (dict, list)):
        headers["Content-Type"] = "application/json"
    conn.request(method, path, body=data, headers=headers)
    r = conn.getresponse()
    out = r.status, r.read()
    conn.close()
    return out


def raw_join(d, name, token=JOIN_SECRET, version="0.1.0"):
    status, body = https(d, "POST", "/api/v1/agents/join", {"token": token, "name": name, "version": version})
    assert status == 201, body
    return json.loads(body)["credential"]


STREAM_PROTOCOL = "rpr-agent-poll/1"


class PollStream:
    """An agent's poll stream spoken by hand: the upgrade, then frames (a
    4-byte big-endian length and JSON) each way."""

    def __init__(self, d, token, upgrade=STREAM_PROTOCOL, path="/api/v1/agents/stream", alpn="http/1.1",
                 timeout=40):
        ctx = ssl.create_default_context(cafile=d.cert)
        ctx.set_alpn_protocols([alpn])
        self.sock = ctx.wrap_socket(socket.create_connection(("127.0.0.1", d.tls_port), timeout=timeout),
                                    server_hostname="localhost")
        head = "GET %s HTTP/1.1\r\nHost: localhost\r\n" % path
        if token:
            head += "Authorization: Bearer %s\r\n" % token
        if upgrade:
            head += "Connection: Upgrade\r\nUpgrade: %s\r\n" % upgrade
        self.sock.sendall((head + "\r\n").encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                break
            self.buf += chunk
        self.head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        self.status = int(self.head.split(b" ")[1]) if self.head.startswith(b"HTTP/1.1 ") else 0
        length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", self.head)
        if self.status != 101 and length:
            self._need(int(length.group(1)))

    def send_raw(self, data):
        self.sock.sendall(data)

    def send(self, obj):
        data = json.dumps(obj).encode()
        self.sock.sendall(len(data).to_bytes(4, "big") + data)

    def _need(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                return False
            self.buf += chunk
        return True

    def recv(self):
        """The next frame's JSON, or None when rprd closed the stream."""
        if not self._need(4):
            return None
        n = int.from_bytes(self.buf[:4], "big")
        if not self._need(4 + n):
            return None
        data, self.buf = self.buf[4:4 + n], self.buf[4 + n:]
        return json.loads(data)

    def closed(self):
        """Whether rprd has closed it (after any frame left to read)."""
        try:
            return not self.sock.recv(1)
        except (ConnectionResetError, ssl.SSLError):
            return True

    def close(self):
        self.sock.close()


class OldRprd:
    """A TLS front of rprd that answers the poll stream's upgrade as an
    rprd before the stream did (404) and passes every other connection
    through, over HTTP/1.1."""

    def __init__(self, d):
        self.d, self.upgrades = d, 0
        self.server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.server_ctx.load_cert_chain(d.cert, os.path.join(d.state_dir, "tls", "key.pem"))
        self.server_ctx.set_alpn_protocols(["http/1.1"])
        self.client_ctx = ssl.create_default_context(cafile=d.cert)
        self.client_ctx.set_alpn_protocols(["http/1.1"])
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(16)
        self.url = "https://127.0.0.1:%d" % self.lsock.getsockname()[1]
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            threading.Thread(target=self.one, args=(c,), daemon=True).start()

    def one(self, raw):
        try:
            c = self.server_ctx.wrap_socket(raw, server_side=True)
            first = b""
            while b"\r\n\r\n" not in first:
                chunk = c.recv(65536)
                if not chunk:
                    return
                first += chunk
            if first.startswith(b"GET /api/v1/agents/stream "):
                self.upgrades += 1
                body = b'{"kind":"Status","code":404,"message":"no route /api/v1/agents/stream"}'
                c.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                          % len(body) + body)
                c.close()
                return
            up = self.client_ctx.wrap_socket(socket.create_connection(("127.0.0.1", self.d.tls_port)),
                                             server_hostname="localhost")
            up.sendall(first)
            other = {c: up, up: c}
            while True:
                for s in select.select([c, up], [], [], 120)[0]:
                    data = s.recv(65536)
                    while data and s.pending():
                        data += s.recv(s.pending())
                    if not data:
                        c.close()
                        up.close()
                        return
                    other[s].sendall(data)
        except (OSError, ssl.SSLError):
            raw.close()

    def close(self):
        self.lsock.close()


# ---- joining ---------------------------------------------------------------------------

def test_join_makes_a_server_with_the_labels_and_its_polls_make_it_reachable(rprd, agents):
    join_token(rprd)
    a = agents(rprd, "edge-1")
    p = a.join(labels="role=edge,site=home")
    assert p.returncode == 0, p.stderr
    assert "joined" in p.stdout and "default/edge-1" in p.stdout

    mode = os.stat(os.path.join(a.state_dir, "credential")).st_mode
    assert stat.S_IMODE(mode) == 0o600
    srv = rprd.obj("servers", "edge-1")
    assert srv["spec"]["transport"] == "agent"
    assert srv["metadata"]["labels"] == {"role": "edge", "site": "home"}
    cred = rprd.obj("tokens", "agent-edge-1")
    assert cred["spec"]["type"] == "agent" and cred["spec"]["server"] == "edge-1"
    assert "valueHash" not in cred["spec"] and "value" not in cred["spec"]

    a.start()
    s = wait_phase(rprd, "edge-1", "Reachable")
    assert s["conditions"][0]["reason"] == "Reachable"
    assert "load1" in s["metrics"] and "memUsedPercent" in s["metrics"]
    p = a.run("status")
    assert "connected" in p.stdout and "default/edge-1" in p.stdout, p.stdout

    # A selector picks agent Servers as any other.
    p = rprd.ctl("get", "servers", "-l", "role=edge", "-o", "name")
    assert p.stdout.split() == ["server/edge-1"], p.stdout


def test_join_claims_a_declared_agent_server_but_not_an_ssh_one_or_a_joined_one(rprd, agents):
    join_token(rprd)
    rprd.apply([{"apiVersion": "rpr/v1", "kind": "Server", "metadata": {"name": "pi", "labels": {"declared": "yes"}},
                 "spec": {"transport": "agent"}},
                {"apiVersion": "rpr/v1", "kind": "Server", "metadata": {"name": "web"},
                 "spec": {"host": "127.0.0.1", "port": 1}}])
    p = agents(rprd, "pi").join(labels="role=x")
    assert p.returncode == 0, p.stderr
    assert rprd.obj("servers", "pi")["metadata"]["labels"] == {"declared": "yes"}
    p = agents(rprd, "pi").join()
    assert p.returncode == 1 and "already has an agent" in p.stderr, p.stderr
    p = agents(rprd, "web").join()
    assert p.returncode == 1 and "transport ssh" in p.stderr, p.stderr


def test_exec_on_an_agent_server_streams_output_and_exit_code(rprd, agents):
    running_agent(rprd, agents, labels="role=edge")

    # stdout and stderr apart, as over ssh.
    p = rprd.ctl("exec", "server", "-l", "role=edge", "--", "echo hello; echo oops >&2; exit 3")
    assert p.stdout.splitlines() == ["edge: hello"], (p.stdout, p.stderr)
    assert p.stderr.splitlines()[0] == "edge: oops", p.stderr
    assert "edge: exit 3" in p.stderr, p.stderr
    assert p.returncode == 1

    t = time.time()
    lines = exec_api(rprd, {"servers": ["edge"], "command": "printf 'x=%s' \"$RPR_X\"; pwd"})
    assert time.time() - t < 5
    assert result_of(lines, "edge")["exitCode"] == 0
    assert output_of(lines, "edge").startswith("x=")
    assert lines[-1] == {"kind": "ExecResult", "servers": 1, "failed": 0}


def test_agents_come_back_after_rprd_restarts(rprd, agents):
    a = running_agent(rprd, agents)
    rprd.stop()  # a clean exit with a poll held
    time.sleep(1.5)
    rprd.start()
    a.wait_log("trying again in about")
    deadline = time.time() + 30
    while a.log().count("connected to") < 2 and time.time() < deadline:
        time.sleep(0.1)
    assert a.log().count("connected to") == 2, a.log()
    lines = exec_api(rprd, {"servers": ["edge"], "command": "echo back"})
    assert output_of(lines, "edge") == "back\n"
    assert rprd.obj("servers", "edge")["status"]["phase"] == "Reachable"


class CuttingProxy:
    """A TCP proxy that cuts each of its first `cuts` connections once it has
    passed `after` bytes from the agent to rprd (toward_agent: from rprd to
    the agent)."""

    def __init__(self, target_port, cuts, after, toward_agent=False):
        self.target = target_port
        self.toward_agent = toward_agent
        self.cuts = cuts
        self.after = after
        self.cut = 0
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.stopped = False
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while not self.stopped:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            u = socket.create_connection(("127.0.0.1", self.target))
            limit = self.after if self.cut < self.cuts else None
            up, down = (None, limit) if self.toward_agent else (limit, None)
            threading.Thread(target=self.pipe, args=(c, u, up), daemon=True).start()
            threading.Thread(target=self.pipe, args=(u, c, down), daemon=True).start()

    def pipe(self, src, dst, limit):
        n = 0
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
                n += len(data)
                if limit is not None and n >= limit:
                    self.cut += 1
                    break
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def close(self):
        self.stopped = True
        self.sock.close()


def test_1mb_of_output_arrives_complete_and_in_order_through_three_cut_connections(rprd, agents):
    join_token(rprd)
    proxy = CuttingProxy(rprd.tls_port, cuts=3, after=400 * 1024)
    try:
        a = agents(rprd, "edge")
        assert a.join(server="https://127.0.0.1:%d" % proxy.port).returncode == 0
        wait_cut = proxy.cut
        proxy.cut = 0  # the join's connection did not count
        assert wait_cut == 0
        a.start()
        wait_phase(rprd, "edge", "Reachable")
        lines = exec_api(rprd, {"servers": ["edge"], "command": "seq 1 170000"}, timeout=120)
        out = output_of(lines, "edge")
        assert len(out) > 1024 * 1024
        assert out == "".join("%d\n" % i for i in range(1, 170001))
        assert result_of(lines, "edge")["exitCode"] == 0
        assert proxy.cut == 3, "the proxy cut %d connections" % proxy.cut
        assert "cannot reach rprd" in a.log()
    finally:
        proxy.close()


def test_agent_killed_mid_job_is_interrupted_when_its_lease_runs_out(rprd, agents):
    a = running_agent(rprd, agents)
    t, result = exec_in_background(rprd, {"servers": ["edge"], "command": "echo started; sleep 60"})
    a.wait_log("started (pid")
    time.sleep(0.5)
    a.kill()
    t.join(40)
    assert not t.is_alive(), "the exec did not end after the agent was killed"
    r = result_of(result["lines"], "edge")
    assert r["reason"] == "Interrupted", r
    assert "lease" in r["message"], r
    assert output_of(result["lines"], "edge") == "started\n"
    wait_phase(rprd, "edge", "Unreachable")
    assert rprd.obj("servers", "edge")["status"]["conditions"][0]["reason"] == "AgentOffline"
    # The job outlived its agent (it does not depend on it): stop it by its
    # own process group, as recorded in the agent's state dir.
    for f in os.listdir(os.path.join(a.state_dir, "jobs")):
        if f.endswith(".json"):
            with open(os.path.join(a.state_dir, "jobs", f)) as meta:
                pid = json.load(meta)["pid"]
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_an_agent_restarted_mid_job_goes_on_with_the_job_and_its_output(rprd, agents):
    a = running_agent(rprd, agents)
    t, result = exec_in_background(rprd, {"servers": ["edge"],
                                          "command": "for i in 1 2 3 4 5 6 7 8; do echo line $i; sleep 0.4; done"})
    a.wait_log("started (pid")
    time.sleep(1)
    a.kill()  # the job runs on without it
    time.sleep(0.5)
    a.start()
    a.wait_log("1 job(s) left by the last agent")
    t.join(40)
    assert not t.is_alive()
    assert output_of(result["lines"], "edge") == "".join("line %d\n" % i for i in range(1, 9))
    assert result_of(result["lines"], "edge")["exitCode"] == 0
    deadline = time.time() + 10  # removed once rprd has answered the finish
    while os.listdir(os.path.join(a.state_dir, "jobs")) and time.time() < deadline:
        time.sleep(0.05)
    assert os.listdir(os.path.join(a.state_dir, "jobs")) == []


def test_a_client_that_leaves_cancels_the_job_on_the_agent(rprd, agents):
    a = running_agent(rprd, agents)
    marker = "rpr-cancel-%d" % os.getpid()
    p = subprocess.Popen([RPRCTL, "--server", rprd.url, "--token", rprd.token, "exec", "server", "edge", "--",
                          "exec sleep 300 # %s" % marker], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env=sanitizer_env())
    a.wait_log("started (pid")
    assert subprocess.run(["pgrep", "-f", marker], capture_output=True).returncode == 0
    p.kill()
    p.wait()
    a.wait_log("canceled by rprd", timeout=20)
    a.wait_log("signal TERM", timeout=20)
    assert subprocess.run(["pgrep", "-f", marker], capture_output=True).returncode == 1


def test_a_command_for_a_stopped_agent_runs_when_it_starts(rprd, agents):
    join_token(rprd)
    a = agents(rprd, "late")
    assert a.join().returncode == 0
    t, result = exec_in_background(rprd, {"servers": ["late"], "command": "echo finally"})
    time.sleep(2)
    assert t.is_alive(), "the command did not wait for the agent"
    a.start()
    t.join(30)
    assert not t.is_alive()
    assert output_of(result["lines"], "late") == "finally\n"
    assert result_of(result["lines"], "late")["exitCode"] == 0


def test_held_polls_are_answered_each_at_its_own_deadline(rprd):
    """Polls held for different lengths (rprd keeps them by length, each
    in deadline order): a short one parked after a long one still ends
    first, and a POST poll beside the streams ends at its own."""
    join_token(rprd)
    long_ = PollStream(rprd, raw_join(rprd, "edge-long"))
    short = PollStream(rprd, raw_join(rprd, "edge-short"))
    start = time.time()
    long_.send({"version": "0.1.0", "wait": 4})
    short.send({"version": "0.1.0", "wait": 1})
    posted = {}

    def post_poll():
        status, body = https(rprd, "POST", "/api/v1/agents/poll", {"version": "0.1.0", "wait": 2},
                             token=raw_join(rprd, "edge-post"))
        posted["at"], posted["status"] = time.time() - start, status

    t = threading.Thread(target=post_poll)
    t.start()
    short.recv()
    short_at = time.time() - start
    long_.recv()
    long_at = time.time() - start
    t.join(30)
    assert 0.8 <= short_at < long_at, (short_at, long_at)
    assert posted["status"] == 200 and 1.8 <= posted["at"] < long_at, (posted, long_at)
    assert 3.8 <= long_at < 8, long_at


# ---- the trust boundary ---------------------------------------------------------------------


def test_output_is_taken_once_by_offset_and_the_checksum_is_checked(rprd):
    join_token(rprd)
    cred = raw_join(rprd, "edge")
    t, result = exec_in_background(rprd, {"servers": ["edge"], "command": "x"})
    status, body = https(rprd, "POST", "/api/v1/agents/poll", {"version": "0.1.0", "wait": 10}, token=cred)
    job = json.loads(body)["offers"][0]["id"]
    assert https(rprd, "POST", "/api/v1/agents/jobs/%s/accept" % job, token=cred)[0] == 200
    out = "/api/v1/agents/jobs/%s/output?offset=" % job
    assert https(rprd, "POST", out + "0", b"hello ", token=cred) == (200, b'{"offset":6}\n')
    # The same chunk again (its answer was lost): taken once.
    assert https(rprd, "POST", out + "0", b"hello ", token=cred) == (200, b'{"offset":6}\n')
    # Overlapping: only the new bytes count.
    assert https(rprd, "POST", out + "3", b"lo world", token=cred)[0] == 200
    # A gap is refused with the offset rprd holds.
    status, body = https(rprd, "POST", out + "100", b"later", token=cred)
    assert status == 416 and json.loads(body)["offset"] == 11
    # A wrong checksum: the job fails as OutputCorrupt.
    status, body = https(rprd, "POST", "/api/v1/agents/jobs/%s/finish" % job,
                         {"exitCode": 0, "bytes": 11, "sha256": "0" * 64}, token=cred)
    assert status == 422, body
    t.join(20)
    assert output_of(result["lines"], "edge") == "hello world"
    assert result_of(result["lines"], "edge")["reason"] == "OutputCorrupt"


def test_an_agent_too_old_is_refused_naming_the_minimum_and_its_server_says_so(rprd):
    join_token(rprd)
    status, body = https(rprd, "POST", "/api/v1/agents/join", {"token": JOIN_SECRET, "name": "x", "version": "0.0.9"})
    assert status == 426 and b"0.1.0 or newer" in body, body
    cred = raw_join(rprd, "edge")
    status, body = https(rprd, "POST", "/api/v1/agents/poll", {"version": "0.0.9", "wait": 0}, token=cred)
    assert status == 426 and b"rpr-agent 0.0.9 is too old" in body and b"0.1.0" in body, body
    deadline = time.time() + 20
    while time.time() < deadline:
        cond = rprd.obj("servers", "edge").get("status", {}).get("conditions", [{}])[0]
        if cond.get("reason") == "AgentTooOld":
            break
        time.sleep(0.1)
    assert cond.get("reason") == "AgentTooOld" and "0.1.0" in cond["message"], cond


def runs_of(d, binding):
    items = d.get("/api/v1/namespaces/default/runs").json()["items"]
    mine = [r for r in items if r["spec"].get("binding") == binding]
    return sorted(mine, key=lambda r: int(r["metadata"]["name"].rsplit("-", 1)[1]))


def wait_runs(d, binding, pred, what, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        rs = runs_of(d, binding)
        if pred(rs):
            return rs
        time.sleep(0.1)
    raise AssertionError("timed out waiting for %s: %s" % (what, [r.get("status") for r in runs_of(d, binding)]))


def test_a_binding_deploys_through_the_agent_and_waits_for_it_when_it_is_stopped(rprd, agents, gitrepo):  # noqa: F811
    a = running_agent(rprd, agents, labels="role=edge")
    workdir = tempfile.mkdtemp(prefix="rpr-agent-wd-")
    rprd.apply([{"apiVersion": "rpr/v1", "kind": "Repo", "metadata": {"name": "site"},
                 "spec": {"provider": "git", "url": gitrepo.url, "branch": "main", "interval": "1h"}},
                {"apiVersion": "rpr/v1", "kind": "Binding", "metadata": {"name": "deploy"},
                 "spec": {"repo": "site", "servers": {"matchLabels": {"role": "edge"}}, "workdir": workdir,
                          "env": {"APP_ENV": "production"},
                          "command": "env | grep -E '^(RPR_(BINDING|COMMIT|SERVER)|APP_ENV)=' | sort; pwd"}}])
    rs = wait_runs(rprd, "deploy", lambda rs: rs and rs[-1].get("status", {}).get("phase") == "Succeeded",
                   "the first deploy")
    run = rs[-1]
    assert run["status"]["exitCode"] == 0 and run["spec"]["server"] == "edge"
    log = rprd.ctl("logs", "run/" + run["metadata"]["name"]).stdout
    out = [line.split(" ", 2)[2] for line in log.splitlines() if line.split(" ", 2)[1:2] == ["out"]]
    assert out == ["APP_ENV=production", "RPR_BINDING=deploy", "RPR_COMMIT=" + gitrepo.first, "RPR_SERVER=edge",
                   workdir], log
    assert "through its agent" in log

    # The agent stops: the next commit's Run waits for it, and runs when it is back.
    a.stop()
    wait_phase(rprd, "edge", "Unreachable")
    sha = gitrepo.commit("second")
    assert rprd.request("POST", "/api/v1/namespaces/default/repos/site/check").status == 200
    rs = wait_runs(rprd, "deploy", lambda rs: len(rs) == 2 and rs[1].get("status", {}).get("reason") == "WaitingForServer",
                   "the second run to wait")
    a.start()
    rs = wait_runs(rprd, "deploy", lambda rs: len(rs) == 2 and rs[1].get("status", {}).get("phase") == "Succeeded",
                   "the second run")
    assert rs[1]["spec"]["commit"] == sha
    deadline = time.time() + 20  # the Binding learns of its Run's end after it
    while time.time() < deadline:
        st = rprd.obj("bindings", "deploy").get("status", {})
        if st.get("servers", {}).get("edge", {}).get("deployedCommit") == sha:
            break
        time.sleep(0.1)
    assert st["servers"]["edge"]["deployedCommit"] == sha, st
    subprocess.run(["rm", "-rf", workdir], check=False)


# ---- a Command for devices behind NAT ----------------------------------------------------------

def command_entry(d, name, server):
    return d.obj("commands", name).get("status", {}).get("servers", {}).get(server, {})


def wait_entries(d, name, want, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        got = {s: command_entry(d, name, s).get("phase") for s in want}
        if got == want:
            return
        time.sleep(0.1)
    raise AssertionError("command %s: %s, wanted %s" % (name, d.obj("commands", name).get("status"), want))


def test_a_command_for_three_agents_runs_on_each_when_it_is_there_and_survives_a_restart(rprd, agents):
    join_token(rprd)
    fleet = {n: agents(rprd, n) for n in ("pi-a", "pi-b", "pi-c")}
    for a in fleet.values():
        assert a.join(labels="fleet=home").returncode == 0
    fleet["pi-c"].start()
    wait_phase(rprd, "pi-c", "Reachable")

    p = rprd.ctl("run", "command", "upgrade", "-l", "fleet=home", "--wait-timeout", "1h", "--",
                 "echo", "ran", "on", "$RPR_SERVER")
    assert p.returncode == 0, p.stderr
    wait_entries(rprd, "upgrade", {"pi-c": "Succeeded", "pi-a": "Pending", "pi-b": "Pending"})

    fleet["pi-a"].start()
    wait_entries(rprd, "upgrade", {"pi-a": "Succeeded", "pi-b": "Pending"})
    # Durable: still waiting after a restart, and run when its agent comes.
    rprd.restart()
    fleet["pi-b"].start()
    wait_entries(rprd, "upgrade", {"pi-a": "Succeeded", "pi-b": "Succeeded", "pi-c": "Succeeded"}, timeout=40)
    st = rprd.obj("commands", "upgrade")["status"]
    assert st["counts"]["succeeded"] == 3 and st["counts"]["waiting"] == 0, st
    for server in ("pi-a", "pi-b", "pi-c"):
        runs = [r for r in rprd.get("/api/v1/namespaces/default/runs").json()["items"]
                if r["spec"].get("server") == server]
        assert len(runs) == 1, "one Run per device"
        log = rprd.ctl("logs", "run/" + runs[0]["metadata"]["name"]).stdout
        assert " out ran on %s" % server in log, log


def test_a_run_longer_than_its_timeout_fails_with_reason_timeout(rprd, agents):
    join_token(rprd)
    edge = agents(rprd, "edge")
    assert edge.join().returncode == 0
    edge.start()
    wait_phase(rprd, "edge", "Reachable")
    rprd.apply([{"apiVersion": "rpr/v1", "kind": "Command", "metadata": {"name": "slow"},
                 "spec": {"command": "echo started; sleep 30", "serverNames": ["edge"], "timeout": "1s"}}])
    wait_entries(rprd, "slow", {"edge": "Failed"})
    run = rprd.get("/api/v1/namespaces/default/runs/%s" % command_entry(rprd, "slow", "edge")["run"]).json()
    assert run["status"]["reason"] == "Timeout", run["status"]
    assert "longer than 1s (spec.timeout)" in run["status"]["message"], run["status"]


# ---- the poll stream ---------------------------------------------------------------------


def test_a_poll_stream_holds_each_poll_until_there_is_work_or_its_window_ends(rprd):
    join_token(rprd)
    cred = raw_join(rprd, "edge")
    s = PollStream(rprd, cred)
    assert s.status == 101 and b"upgrade: rpr-agent-poll/1" in s.head.lower(), s.head
    # Nothing to do: answered when the window ends, as a POST poll.
    start = time.time()
    s.send({"version": "0.1.0", "wait": 2})
    answer = s.recv()
    assert 1.5 <= time.time() - start < 5, time.time() - start
    assert answer.get("offers", []) == [], answer
    wait_phase(rprd, "edge", "Reachable")
    # Work comes: the held poll is answered with the offer at once.
    s.send({"version": "0.1.0", "wait": 25})
    time.sleep(0.5)
    start = time.time()
    t, result = exec_in_background(rprd, {"servers": ["edge"], "command": "echo hi"})
    answer = s.recv()
    assert time.time() - start < 3
    job = answer["offers"][0]
    assert job["command"] == "echo hi", answer
    # The job moves on over plain HTTPS, beside the stream.
    assert https(rprd, "POST", "/api/v1/agents/jobs/%s/accept" % job["id"], token=cred)[0] == 200
    out = "/api/v1/agents/jobs/%s/output?offset=0" % job["id"]
    assert https(rprd, "POST", out, b"hi\n", token=cred)[0] == 200
    digest = __import__("hashlib").sha256(b"hi\n").hexdigest()
    status, body = https(rprd, "POST", "/api/v1/agents/jobs/%s/finish" % job["id"],
                         {"exitCode": 0, "bytes": 3, "sha256": digest}, token=cred)
    assert status == 200, body
    t.join(20)
    assert output_of(result["lines"], "edge") == "hi\n"
    # Two polls in one write: the second ends the first, whose answer
    # comes first, at once.
    start = time.time()
    s.send_raw(b"".join(len(f).to_bytes(4, "big") + f for f in
                        [json.dumps({"version": "0.1.0", "wait": 20}).encode(),
                         json.dumps({"version": "0.1.0", "wait": 0}).encode()]))
    assert "offers" in s.recv() and "offers" in s.recv()
    assert time.time() - start < 10, "the first poll was held for its window"
    s.close()


def test_a_stop_closes_the_poll_streams_and_exits_clean(rprd):
    join_token(rprd)
    cred = raw_join(rprd, "edge")
    s = PollStream(rprd, cred)
    assert s.status == 101
    s.send({"version": "0.1.0", "wait": 25})
    time.sleep(0.5)
    start = time.time()
    rprd.stop()
    assert s.recv() is None
    assert time.time() - start < 10
    assert "closed 1 agent poll stream(s)" in rprd.stderr()


def test_a_stop_closes_a_fleets_poll_streams_a_batch_at_a_time(rprd):
    """More streams than rprd closes in one turn of its loop (64): every
    one ends, each after its held poll, and rprd exits clean."""
    join_token(rprd)
    streams = []
    for i in range(150):
        s = PollStream(rprd, raw_join(rprd, "fleet-%03d" % i))
        assert s.status == 101
        s.send({"version": "0.1.0", "wait": 25})
        streams.append(s)
    time.sleep(1)
    start = time.time()
    rprd.stop()
    assert all(s.recv() is None for s in streams)
    assert time.time() - start < 15
    assert "closed 150 agent poll stream(s)" in rprd.stderr()


def test_rpr_agent_polls_over_its_stream_and_falls_back_to_posts_on_an_older_rprd(rprd, agents):
    a = running_agent(rprd, agents)
    a.wait_log("(poll stream)")
    t, result = exec_in_background(rprd, {"servers": ["edge"], "command": "echo streamed"})
    t.join(30)
    assert output_of(result["lines"], "edge") == "streamed\n"

    # An rprd that answers the upgrade with 404: POST polls, all else the same.
    old = OldRprd(rprd)
    b = agents(rprd, "older")
    assert b.join(server=old.url).returncode == 0
    b.start()
    wait_phase(rprd, "older", "Reachable")
    b.wait_log("polling with POST requests")
    assert "(poll stream)" not in b.log()
    t, result = exec_in_background(rprd, {"servers": ["older"], "command": "echo posted"})
    t.join(30)
    assert output_of(result["lines"], "older") == "posted\n"
    assert old.upgrades == 1, old.upgrades
    b.stop()
    old.close()
