"""rprd under systemd, without PID 1: socket activation through
systemd-socket-activate (two named sockets) and through a small activator
of our own that keeps the sockets across rprd's lives (as systemd does), the
notify protocol on a test NOTIFY_SOCKET (READY, STATUS, WATCHDOG at the
rate asked, STOPPING), --idle-exit and re-activation by `rprctl reconcile
--due` with no interval missed, SIGHUP reopening the log files, and
journal entries with structured fields when JOURNAL_STREAM names stderr.
"""

import glob
import json
import os
import signal
import ssl
import socket
import subprocess
import tempfile
import time
import urllib.request

import pytest

from conftest import LOOPBACK_ONLY, RPRCTL, RPRD, assert_no_sanitizer_report, free_port, sanitizer_env

WAIT = 20


class Notify:
    """A NOTIFY_SOCKET (or journal socket): a datagram socket we read."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(0.2)
        self.got = []  # (monotonic time, text)

    def drain(self, seconds):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                self.got.append((time.monotonic(), self.sock.recv(65536).decode()))
            except socket.timeout:
                pass
        return self.got

    def wait_for(self, pred, seconds=WAIT):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            for _, m in self.got:
                if pred(m):
                    return m
            self.drain(0.2)
        raise AssertionError("no message matched; got %r" % [m for _, m in self.got][-20:])

    def close(self):
        self.sock.close()


class Activator:
    """Listens on a TCP and a unix socket and hands them to each rprd it
    starts, named web and api, as systemd's socket units do; the sockets
    outlive rprd, so a request while rprd is gone waits in the backlog."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.port = free_port()
        self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.tcp.bind(("127.0.0.1", self.port))
        self.tcp.listen(64)
        self.sock_path = os.path.join(tmp, "rpr.sock")
        self.unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.unix.bind(self.sock_path)
        self.unix.listen(64)
        self.proc = None
        self.err = os.path.join(tmp, "rprd.err")

    def launch(self, args, env=None):
        fds = (self.tcp.fileno(), self.unix.fileno())

        def hand_over():
            hi = [os.dup(fd) for fd in fds]
            for i, fd in enumerate(hi):
                os.dup2(fd, 3 + i)
        e = dict(env or sanitizer_env(), LISTEN_FDS="2", LISTEN_FDNAMES="web:api")
        with open(self.err, "ab") as err:
            self.proc = subprocess.Popen(["/bin/sh", "-c", 'LISTEN_PID=$$ exec "$0" "$@"', RPRD, *LOOPBACK_ONLY, *args],
                                         env=e, stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                                         preexec_fn=hand_over, close_fds=False)
        return self.proc

    def stderr(self):
        with open(self.err, errors="replace") as f:
            return f.read()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(30)
        assert_no_sanitizer_report(self.stderr(), "rprd")

    def close(self):
        self.tcp.close()
        self.unix.close()


@pytest.fixture
def tmp():
    d = tempfile.mkdtemp(prefix="rpr-sd-")
    yield d
    subprocess.run(["rm", "-rf", d])


def admin_token(state):
    """The admin token, once the rprd just started has written it."""
    path = os.path.join(state, "admin.token")
    deadline = time.time() + WAIT
    while time.time() < deadline:
        if os.path.exists(path):
            with open(path) as f:
                token = f.read().strip()
            if token:
                return token
        time.sleep(0.02)
    raise AssertionError("rprd wrote no admin token in %ds" % WAIT)


def http(url, path, token=None, method="GET", body=None, timeout=WAIT):
    headers = {"Authorization": "Bearer " + token} if token else {}
    if body is not None:
        headers["Content-Type"] = "application/json"
    req = urllib.request.Request(url + path, method=method, data=body, headers=headers)
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status, r.read()


def test_systemd_socket_activate_with_named_sockets(tmp):
    port = free_port()
    sock = os.path.join(tmp, "api.sock")
    notify = Notify(os.path.join(tmp, "notify"))
    env = dict(sanitizer_env(), NOTIFY_SOCKET=notify.path)
    err = open(os.path.join(tmp, "err"), "wb")
    p = subprocess.Popen(["systemd-socket-activate", "-l", "127.0.0.1:%d" % port, "-l", sock, "--fdname=web:api",
                          "-E", "NOTIFY_SOCKET", "-E", "ASAN_OPTIONS", "-E", "LSAN_OPTIONS", "-E", "UBSAN_OPTIONS",
                          RPRD, "--state-dir", os.path.join(tmp, "state"), *LOOPBACK_ONLY],
                         env=env, stdout=err, stderr=err)
    try:
        deadline = time.time() + WAIT
        while not os.path.exists(sock) and time.time() < deadline:
            time.sleep(0.02)
        status, body = http("http://127.0.0.1:%d" % port, "/healthz")  # this connection starts rprd
        assert status == 200 and json.loads(body)["status"] == "ok", body
        ready = notify.wait_for(lambda m: "READY=1" in m)
        assert "STATUS=" in ready
        out = subprocess.run([RPRCTL, "--server", "unix:" + sock, "--token",
                              open(os.path.join(tmp, "state", "admin.token")).read().strip(), "version"],
                             capture_output=True, text=True, env=sanitizer_env(), timeout=WAIT)
        assert out.returncode == 0 and "rprd " in out.stdout, out
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(30)
        err.close()
    notify.wait_for(lambda m: "STOPPING=1" in m)
    text = open(os.path.join(tmp, "err"), errors="replace").read()
    assert "(web), from socket activation" in text and "(api), from socket activation" in text, text
    assert_no_sanitizer_report(text, "rprd")
    assert p.returncode == 0, text
    notify.close()


def test_notify_status_and_watchdog_rate(tmp):
    act = Activator(tmp)
    notify = Notify(os.path.join(tmp, "notify"))
    env = dict(sanitizer_env(), NOTIFY_SOCKET=notify.path, WATCHDOG_USEC="1000000")
    act.launch(["--state-dir", os.path.join(tmp, "state")], env)
    try:
        notify.wait_for(lambda m: m.startswith("READY=1"))
        start = time.monotonic()
        notify.drain(3)
        dogs = [t for t, m in notify.got if m == "WATCHDOG=1" and t >= start]
        # asked for every 1 s: rprd pings at least twice a second, not a flood
        assert 5 <= len(dogs) <= 16, len(dogs)
        status = [m for _, m in notify.got if m.startswith("STATUS=") and "objects" in m]
        assert status and "servers unreachable" in status[-1], status
    finally:
        act.stop()
    notify.wait_for(lambda m: m == "STOPPING=1")
    act.close()
    notify.close()


def server(name, **check):
    # ssh to a port nothing listens on: every check fails, retried often
    return {"apiVersion": "rpr/v1", "kind": "Server", "metadata": {"name": name},
            "spec": {"transport": "ssh", "host": "127.0.0.1", "port": 1, "user": "nobody",
                     "identityFile": "/nonexistent", "check": check}}


def test_idle_exit_and_reactivation_miss_no_interval(tmp):
    act = Activator(tmp)
    state = os.path.join(tmp, "state")
    url = "http://127.0.0.1:%d" % act.port
    args = ["--state-dir", state, "--idle-exit", "1s"]
    act.launch(args)
    token = admin_token(state)
    body = json.dumps([server("s1", retries=100, retryInterval="3s")]).encode()
    assert http(url, "/api/v1/apply", token, "POST", body)[0] == 200

    # Nothing due within 1 s after the first attempt: rprd goes.
    act.proc.wait(WAIT)
    assert act.proc.returncode == 0, act.stderr()
    assert "idle for 1s with nothing due" in act.stderr()
    before = json.loads(subprocess.run(["sqlite3", os.path.join(state, "state.db"),
                                        "select json from objects where kind='Server'"],
                                       capture_output=True, text=True).stdout or "{}")
    assert before["status"]["failures"] == 1, before  # one attempt before it went
    time.sleep(3.5)  # the retry falls due while rprd is gone

    # The timer's command connects; the activator starts rprd for it.
    ctl = subprocess.Popen([RPRCTL, "--server", url, "--token", token, "reconcile", "--due"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=sanitizer_env())
    time.sleep(0.1)
    act.launch(args)
    out, err = ctl.communicate(timeout=WAIT)
    assert ctl.returncode == 0, err
    assert "rprd is up" in out, out
    deadline = time.time() + WAIT
    failures = 0
    while time.time() < deadline:
        obj = json.loads(http(url, "/api/v1/namespaces/default/servers/s1", token)[1])
        failures = obj.get("status", {}).get("failures", 0)
        if failures >= 2:
            break
        time.sleep(0.2)
    assert failures >= 2, obj
    act.stop()
    act.close()


def test_sighup_reopens_logs(tmp):
    act = Activator(tmp)
    state = os.path.join(tmp, "state")
    url = "http://127.0.0.1:%d" % act.port
    act.launch(["--state-dir", state])
    token = admin_token(state)
    body = json.dumps([server("s1", retries=100, retryInterval="1s")]).encode()
    assert http(url, "/api/v1/apply", token, "POST", body)[0] == 200
    logs = os.path.join(state, "logs")
    deadline = time.time() + WAIT
    while not glob.glob(os.path.join(logs, "connectivity-*.log")) and time.time() < deadline:
        time.sleep(0.1)
    (path,) = glob.glob(os.path.join(logs, "connectivity-*.log"))
    os.rename(path, path + ".1")
    act.proc.send_signal(signal.SIGHUP)
    deadline = time.time() + WAIT
    while not os.path.exists(path) and time.time() < deadline:
        time.sleep(0.1)
    assert os.path.exists(path), os.listdir(logs)
    with open(path) as f:
        assert "default/s1 fail" in f.read()
    assert act.proc.poll() is None
    act.stop()
    act.close()
    assert "log files reopened" in act.stderr()


def test_journal_fields(tmp):
    act = Activator(tmp)
    journal = Notify(os.path.join(tmp, "journal"))
    state = os.path.join(tmp, "state")
    # JOURNAL_STREAM names rprd's stderr (dev:inode), as systemd sets it.
    open(act.err, "ab").close()
    st = os.stat(act.err)
    env = dict(sanitizer_env(), JOURNAL_STREAM="%d:%d" % (st.st_dev, st.st_ino),
               RPR_JOURNAL_SOCKET=journal.path)
    act.launch(["--state-dir", state], env)
    token = admin_token(state)
    body = json.dumps([server("web-1", retries=0, retryInterval="1h")]).encode()
    assert http("http://127.0.0.1:%d" % act.port, "/api/v1/apply", token, "POST", body)[0] == 200
    entry = journal.wait_for(lambda m: "RPR_KIND=Server" in m)
    fields = dict(line.split("=", 1) for line in entry.strip().split("\n"))
    assert fields["RPR_NAME"] == "default/web-1", fields
    assert fields["PRIORITY"] == "4", fields
    assert fields["SYSLOG_IDENTIFIER"] == "rprd"
    assert "Unreachable" in fields["MESSAGE"], fields
    act.stop()
    act.close()
    journal.close()


def test_a_socket_named_tls_is_served_with_tls(tmp):
    """FileDescriptorName=tls in a .socket unit: the agents' listener."""
    port, tls_port = free_port(), free_port()
    state = os.path.join(tmp, "state")
    err = open(os.path.join(tmp, "err"), "wb")
    p = subprocess.Popen(["systemd-socket-activate", "-l", "127.0.0.1:%d" % port, "-l", "127.0.0.1:%d" % tls_port,
                          "--fdname=web:tls", "-E", "ASAN_OPTIONS", "-E", "LSAN_OPTIONS", "-E", "UBSAN_OPTIONS",
                          RPRD, "--state-dir", state, *LOOPBACK_ONLY],
                         env=sanitizer_env(), stdout=err, stderr=err)
    try:
        deadline = time.time() + WAIT
        while time.time() < deadline:  # until systemd-socket-activate listens
            try:
                socket.create_connection(("127.0.0.1", tls_port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.02)
        status, _ = http("http://127.0.0.1:%d" % port, "/healthz")  # starts rprd
        assert status == 200
        ctx = ssl.create_default_context(cafile=os.path.join(state, "tls", "cert.pem"))
        with urllib.request.urlopen("https://localhost:%d/healthz" % tls_port, context=ctx, timeout=WAIT) as r:
            assert r.status == 200 and json.loads(r.read())["status"] == "ok"
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(30)
        err.close()
    text = open(os.path.join(tmp, "err"), errors="replace").read()
    assert "(tls), from socket activation" in text and "key fingerprint SHA256:" in text, text
    assert_no_sanitizer_report(text, "rprd")
    assert p.returncode == 0, text
