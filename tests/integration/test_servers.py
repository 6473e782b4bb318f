"""Servers end to end: a real rprd (the sanitizer build) against real OpenSSH
sshd processes on loopback, with keys made by ssh-keygen.

Connectivity checks (keys, host keys, retries, the connectivity log),
`rprctl check`, POST .../check, and `rprctl exec` / POST /api/v1/exec
(prefixed output, exit codes, stderr, a dropped connection, 100 MB of
output with flat memory, scripts sent as written, 100 at once), the local
transport, roles, and that no secret leaves rprd.
"""

import glob
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time

import pytest

from conftest import RPRCTL, load_yaml, sanitizer_env, status_of
from sshd import keygen, login_user

# These tests drive the Server controller: rprd runs with its controllers.
CONTROLLERS = True

USER = login_user()
WAIT = 30
CONTROLLERS = True  # conftest: run rprd with its controllers (Server checks)


# ---- helpers --------------------------------------------------------------------

def srv(name, sshd, keys, key="ed25519", pin="ed25519", labels=None, **spec):
    """A Server for sshd, logging in with the client key of type key and
    pinning its host key of type pin (None: nothing pinned)."""
    s = {"transport": "ssh", "host": "127.0.0.1", "port": sshd.port, "user": USER,
         "identityFile": keys.client(key)}
    if pin:
        s["hostKey"] = sshd.pin(pin)
    s.update(spec)
    o = {"apiVersion": "rpr/v1", "kind": "Server", "metadata": {"name": name}, "spec": s}
    if labels:
        o["metadata"]["labels"] = labels
    return o


def local(name, labels=None):
    o = {"apiVersion": "rpr/v1", "kind": "Server", "metadata": {"name": name},
         "spec": {"transport": "local"}}
    if labels:
        o["metadata"]["labels"] = labels
    return o


def condition(obj):
    for c in obj.get("status", {}).get("conditions", []):
        if c.get("type") == "Reachable":
            return c
    return {}


def wait_for(rprd, name, pred, what, timeout=WAIT):
    """Polls the Server until pred(obj); returns it."""
    deadline = time.time() + timeout
    obj = None
    while time.time() < deadline:
        obj = rprd.obj("servers", name)
        if pred(obj):
            return obj
        time.sleep(0.1)
    raise AssertionError("server %s: %s not seen within %ds; last: %s\nrprd stderr:\n%s"
                         % (name, what, timeout, json.dumps(obj.get("status"), indent=1),
                            rprd.stderr()[-3000:]))


def wait_phase(rprd, name, phase, reason=None, timeout=WAIT):
    def ok(o):
        st = o.get("status", {})
        return st.get("phase") == phase and (reason is None or condition(o).get("reason") == reason)
    return wait_for(rprd, name, ok, "phase %s%s" % (phase, " / " + reason if reason else ""), timeout)


def check(rprd, name, token="admin"):
    return rprd.request("POST", "/api/v1/namespaces/default/servers/%s/check" % name, token=token,
                        timeout=60)


def exec_api(rprd, body, token="admin"):
    """POST /api/v1/exec; returns (status, [lines as JSON])."""
    r = rprd.request("POST", "/api/v1/exec", body=body, token=token, timeout=120)
    if r.status != 200:
        return r.status, r
    assert r.headers.get("content-type", "").startswith("application/x-ndjson"), r.headers
    return 200, [json.loads(line) for line in r.body.splitlines() if line.strip()]


def output_of(lines, server, stream="stdout"):
    return "".join(l["data"] for l in lines if l.get("server") == server and l.get("stream") == stream)


def result_of(lines, server):
    return next(l for l in lines if l.get("server") == server and "exitCode" in l)


def vm_rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for %d" % pid)


def connectivity_log(rprd):
    text = ""
    for p in sorted(glob.glob(os.path.join(rprd.state_dir, "logs", "connectivity-*.log"))):
        with open(p) as f:
            text += f.read()
    return text


# ---- connectivity checks -----------------------------------------------------------

def test_ed25519_and_ecdsa_keys_reach_reachable_with_metrics(rprd, sshd, ssh_keys):
    rprd.apply([srv("ed", sshd, ssh_keys, key="ed25519"), srv("ec", sshd, ssh_keys, key="ecdsa")])
    for name in ("ed", "ec"):
        o = wait_phase(rprd, name, "Reachable")
        st = o["status"]
        c = condition(o)
        assert c["status"] == "True" and c["reason"] == "Reachable", c
        m = st["metrics"]
        assert 0 <= m["load1"] < 1000 and 0 < m["memUsedPercent"] <= 100, m
        assert 0 < m["diskUsedPercent"] <= 100 and m["uptimeSeconds"] > 0, m
        assert st["lastLoginTime"] and st["lastCheckTime"], st
        assert st.get("failures", 0) == 0, st

    p = rprd.ctl("get", "servers", "-o", "wide")
    assert p.returncode == 0, p.stderr
    header = p.stdout.splitlines()[0].split()
    for col in ("PHASE", "LOAD", "LAST-CHECK"):
        assert col in header, p.stdout
    row = next(l.split() for l in p.stdout.splitlines() if l.startswith("ed "))
    assert row[header.index("PHASE")] == "Reachable", p.stdout
    assert re.fullmatch(r"\d+\.\d\d", row[header.index("LOAD")]), p.stdout
    assert re.fullmatch(r"\d+[smhd]", row[header.index("LAST-CHECK")]), p.stdout
    if "MEM" in header:
        assert re.fullmatch(r"\d+%", row[header.index("MEM")]), p.stdout


def test_rsa_key_fails_naming_sha1_and_the_fix(rprd, sshd, ssh_keys):
    rprd.apply([srv("rsa", sshd, ssh_keys, key="rsa", check={"retries": 0, "retryInterval": "1s"})])
    o = wait_phase(rprd, "rsa", "Unreachable", "AuthFailed")
    msg = condition(o)["message"]
    assert re.search(r"sha-?1", msg, re.I), msg
    assert "ed25519" in msg, msg


def test_wrong_key_is_auth_failed(rprd, sshd_factory, ssh_keys):
    d = sshd_factory(client=["ed25519"])
    rprd.apply([srv("wrong", d, ssh_keys, key="ecdsa", check={"retries": 0, "retryInterval": "1s"})])
    o = wait_phase(rprd, "wrong", "Unreachable", "AuthFailed")
    assert condition(o)["status"] == "False"


def test_host_key_mismatch_is_refused_with_both_fingerprints(rprd, sshd, ssh_keys):
    wrong = ssh_keys.host_fingerprint("ecdsa")  # not this sshd's ed25519 key
    o = srv("mm", sshd, ssh_keys, pin=None, check={"retries": 0, "retryInterval": "1s"})
    o["spec"]["hostKey"] = "ssh-ed25519 " + wrong
    rprd.apply([o])
    o = wait_phase(rprd, "mm", "Unreachable", "HostKeyMismatch")
    msg = condition(o)["message"]
    assert wrong in msg and sshd.fingerprint("ed25519") in msg, msg
    assert not o["status"].get("lastLoginTime"), o["status"]


def test_unknown_host_key_strict_is_refused(rprd, sshd, ssh_keys):
    rprd.apply([srv("strict", sshd, ssh_keys, pin=None, check={"retries": 0, "retryInterval": "1s"})])
    wait_phase(rprd, "strict", "Unreachable", "HostKeyUnknown")


def test_accept_new_pins_the_key_then_refuses_a_changed_one(rprd, sshd_factory, ssh_keys, tmp_path):
    own = keygen(str(tmp_path / "host_ed25519"), "ed25519")
    d = sshd_factory(host=[], start=False)
    d.host_keys = [own]
    d.start()
    rprd.apply([srv("an", d, ssh_keys, pin=None, hostKeyPolicy="accept-new",
                    check={"retries": 0, "retryInterval": "1s"})])
    o = wait_phase(rprd, "an", "Reachable")
    assert o["status"]["hostKey"] == d.pin("ed25519"), o["status"]

    keygen(own, "ed25519")  # the machine was reinstalled: a new host key
    d.restart()
    r = check(rprd, "an")
    assert r.status == 200, r
    res = r.json()
    assert res["reachable"] is False and res["reason"] == "HostKeyMismatch", res
    o = wait_phase(rprd, "an", "Unreachable", "HostKeyMismatch")
    assert o["status"]["hostKey"] != d.pin("ed25519"), "the new key must not replace the pinned one"


def test_sshd_down_retries_then_unreachable_then_back(rprd, sshd_factory, ssh_keys):
    d = sshd_factory(start=False)
    rprd.apply([srv("flaky", d, ssh_keys, check={"retries": 2, "retryInterval": "1s"})])
    o = wait_phase(rprd, "flaky", "Unreachable", "ConnectionRefused")
    assert o["status"]["failures"] >= 3, o["status"]
    log = [l for l in connectivity_log(rprd).splitlines() if " default/flaky " in l]
    fails = [l for l in log if " fail ConnectionRefused " in l]
    assert len(fails) >= 3, "expected the first attempt and 2 retries:\n" + "\n".join(log)
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ default/flaky fail ConnectionRefused \d+\.\d+s",
                    fails[0]), fails[0]

    d.start()
    started = time.time()
    o = wait_phase(rprd, "flaky", "Reachable", timeout=10)
    assert time.time() - started < 8
    assert o["status"].get("failures", 0) == 0, o["status"]
    assert " default/flaky ok Reachable " in connectivity_log(rprd)


def test_inactive_server_is_not_checked(rprd, sshd, ssh_keys):
    rprd.apply([srv("off", sshd, ssh_keys, active=False)])
    wait_phase(rprd, "off", "Inactive")
    r = check(rprd, "off")
    assert r.status == 409, r
    status_of(r)


# ---- check -------------------------------------------------------------------------

def test_rprctl_check_prints_uptime_and_time(rprd, sshd, ssh_keys):
    rprd.apply([srv("web", sshd, ssh_keys)])
    p = rprd.ctl("check", "server", "web")
    assert p.returncode == 0, p.stderr
    assert "load average" in p.stdout, p.stdout
    assert re.search(r"^server/web reachable in \d+\.\d\ds$", p.stdout, re.M), p.stdout


def test_rprctl_check_of_an_unreachable_server_says_why(rprd, sshd_factory, ssh_keys):
    d = sshd_factory(start=False)
    rprd.apply([srv("gone", d, ssh_keys, check={"retries": 0, "retryInterval": "1m"})])
    p = rprd.ctl("check", "server", "gone")
    assert p.returncode == 1
    assert p.stderr.startswith("error: server/gone: ConnectionRefused: "), p.stderr
    p = rprd.ctl("check", "server", "nosuch")
    assert p.returncode == 1 and "not found" in p.stderr, p.stderr


def test_post_check_answers_check_result(rprd, sshd, ssh_keys):
    rprd.apply([srv("web", sshd, ssh_keys)])
    r = check(rprd, "web")
    assert r.status == 200, r
    res = r.json()
    assert res["apiVersion"] == "rpr/v1" and res["kind"] == "CheckResult", res
    assert res["server"] == "web" and res["namespace"] == "default", res
    assert res["reachable"] is True and res["reason"] == "Reachable", res
    assert "load average" in res["output"], res
    assert 0 < res["durationSeconds"] < 30, res
    assert res["hostKey"] == sshd.pin("ed25519"), res
    r = check(rprd, "absent")
    assert r.status == 404, r
    status_of(r)


# ---- exec --------------------------------------------------------------------------

def test_exec_by_label_prefixes_output_and_reports_each_exit(rprd, sshd_factory, ssh_keys):
    d1, d2 = sshd_factory(), sshd_factory()
    rprd.apply([srv("a", d1, ssh_keys, labels={"role": "web"}), srv("b", d1, ssh_keys, labels={"role": "web"}),
                srv("c", d2, ssh_keys, labels={"role": "web"}), srv("x", d2, ssh_keys, labels={"role": "db"})])
    cmd = 'echo hello; echo oops >&2; case "$SSH_CONNECTION" in *" %d") exit 3;; esac' % d2.port
    p = rprd.ctl("exec", "server", "-l", "role=web", "--", cmd)
    out, err = p.stdout.splitlines(), p.stderr.splitlines()
    assert sorted(out) == ["a: hello", "b: hello", "c: hello"], p.stdout
    assert {"a: oops", "b: oops", "c: oops"} <= set(err), p.stderr
    assert "c: exit 3" in err and "a: exit 3" not in err, p.stderr
    assert p.returncode == 1

    p = rprd.ctl("exec", "server", "a", "b", "--", "echo", "fine")
    assert p.returncode == 0, p.stderr
    assert sorted(p.stdout.splitlines()) == ["a: fine", "b: fine"]

    status, lines = exec_api(rprd, {"selector": "role=web", "command": cmd})
    assert status == 200
    assert result_of(lines, "c")["exitCode"] == 3 and result_of(lines, "a")["exitCode"] == 0
    assert output_of(lines, "b", "stderr") == "oops\n"
    assert lines[-1] == {"kind": "ExecResult", "servers": 3, "failed": 1}, lines[-1]


def test_exec_rejects_bad_requests(rprd, sshd, ssh_keys):
    rprd.apply([srv("a", sshd, ssh_keys)])
    r = rprd.request("POST", "/api/v1/exec", body={"servers": ["a"], "command": "true", "parallel": 0})
    assert r.status == 422 and "parallel" in r.text, r
    r = rprd.request("POST", "/api/v1/exec", body={"servers": ["a"]})
    assert r.status == 422 and "command" in r.text, r
    r = rprd.request("POST", "/api/v1/exec", body={"servers": ["a", "nope"], "command": "true"})
    assert r.status == 404 and "nope" in r.text, r
    r = rprd.request("POST", "/api/v1/exec", body={"selector": "role=none", "command": "true"})
    assert r.status == 404, r
    r = rprd.request("POST", "/api/v1/exec", body="{", content_type="application/json")
    assert r.status == 400, r


def test_exec_fails_clearly_when_sshd_dies_mid_command(rprd, sshd, ssh_keys):
    rprd.apply([srv("dying", sshd, ssh_keys)])
    wait_phase(rprd, "dying", "Reachable")
    argv = [RPRCTL, "--server", rprd.url, "--token", rprd.token, "exec", "server", "dying", "--",
            "echo started; sleep 60; echo never"]
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=sanitizer_env())
    assert p.stdout.readline() == "dying: started\n"
    sshd.kill_sessions()
    out, err = p.communicate(timeout=30)
    assert p.returncode == 1, (out, err)
    assert "never" not in out
    assert re.search(r"^dying: (Disconnected|NetworkError): \S", err, re.M), err


def test_exec_streams_100mb_with_flat_memory(rprd_factory, sshd, ssh_keys, monkeypatch, tmp_path):
    # ASan's quarantine of freed memory would look like growth: keep it small.
    monkeypatch.setenv("ASAN_OPTIONS", "detect_leaks=1:quarantine_size_mb=1")
    rprd = rprd_factory()
    rprd.apply([srv("big", sshd, ssh_keys)])
    wait_phase(rprd, "big", "Reachable")
    before = vm_rss_kb(rprd.pid)
    peak = [before]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], vm_rss_kb(rprd.pid))
            time.sleep(0.05)

    t = threading.Thread(target=sample)
    t.start()
    out_path = tmp_path / "out"
    try:
        with open(out_path, "wb") as out:
            p = subprocess.run([RPRCTL, "--server", rprd.url, "--token", rprd.token, "exec", "server", "big",
                                "--", "head -c 100000000 /dev/zero | tr '\\0' x | fold -w 99"],
                               stdout=out, stderr=subprocess.PIPE, text=True, env=sanitizer_env(),
                               timeout=300)
    finally:
        done.set()
        t.join()
    assert p.returncode == 0, p.stderr
    # Every line: "big: " + 99 x + "\n".
    assert os.path.getsize(out_path) == (100000000 // 99) * 105 + (5 + 100000000 % 99 + 1)
    grown_mb = (peak[0] - before) / 1024
    assert grown_mb < 30, "rprd grew by %.1f MB while streaming 100 MB" % grown_mb


def test_exec_slow_reader_holds_the_command_back(rprd_factory, sshd, ssh_keys, monkeypatch):
    monkeypatch.setenv("ASAN_OPTIONS", "detect_leaks=1:quarantine_size_mb=1")
    rprd = rprd_factory()
    rprd.apply([srv("slow", sshd, ssh_keys)])
    wait_phase(rprd, "slow", "Reachable")
    before = vm_rss_kb(rprd.pid)
    body = json.dumps({"servers": ["slow"], "command": "head -c 200000000 /dev/zero"}).encode()
    s = socket.create_connection(("127.0.0.1", rprd.port))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    s.sendall(b"POST /api/v1/exec HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
              b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
              % (rprd.token.encode(), len(body), body))
    got = 0
    for _ in range(20):  # a trickle: 20 small reads over 2 s
        got += len(s.recv(4096))
        time.sleep(0.1)
    grown_mb = (vm_rss_kb(rprd.pid) - before) / 1024
    s.close()
    assert got > 0
    assert grown_mb < 30, "rprd grew by %.1f MB behind a slow reader" % grown_mb
    # The reader went away: the command is canceled and the stream freed.
    deadline = time.time() + 15
    while time.time() < deadline:
        m = rprd.get("/metrics", token=None).text
        if re.search(r"^rpr_exec_streams 0$", m, re.M):
            break
        time.sleep(0.2)
    else:
        raise AssertionError("the exec stream outlived its client")


def test_exec_runs_a_multiline_script_exactly_as_written(rprd, sshd, ssh_keys):
    rprd.apply([srv("sh", sshd, ssh_keys)])
    script = ("X='it'\"'\"'s'\n"
              "Y=\"a  b\tc\"\n"
              "echo \"$X|$Y|\\$HOME|`echo tick`\"\n"
              "printf '%s\\n' \"with 'single' and \\\"double\\\" quotes\"\n"
              "for i in 1 2; do\n  echo \"n=$i\"\ndone\n"
              "cat <<'EOF'\n$NOT_EXPANDED \\n\nEOF\n")
    status, lines = exec_api(rprd, {"servers": ["sh"], "command": script})
    assert status == 200
    assert output_of(lines, "sh") == ("it's|a  b\tc|$HOME|tick\n"
                                      "with 'single' and \"double\" quotes\n"
                                      "n=1\nn=2\n"
                                      "$NOT_EXPANDED \\n\n"), lines
    assert result_of(lines, "sh")["exitCode"] == 0


def test_exec_output_that_is_not_utf8_stays_valid_json(rprd, sshd, ssh_keys):
    rprd.apply([srv("bin", sshd, ssh_keys)])
    status, lines = exec_api(rprd, {"servers": ["bin"], "command": "printf 'a\\377b\\342\\202\\254\\n'"})
    assert status == 200
    assert output_of(lines, "bin") == "a\ufffdb\u20ac\n"


def test_100_concurrent_commands(rprd, sshd_factory, ssh_keys):
    ds = [sshd_factory() for _ in range(4)]
    rprd.apply([srv("n%03d" % i, ds[i % 4], ssh_keys, labels={"fleet": "big"},
                    check={"interval": "12h"}) for i in range(100)])
    started = time.time()
    status, lines = exec_api(rprd, {"selector": "fleet=big", "command": "sleep 3; echo done",
                                    "parallel": 100})
    elapsed = time.time() - started
    assert status == 200
    assert lines[-1] == {"kind": "ExecResult", "servers": 100, "failed": 0}, \
        [l for l in lines if l.get("reason")][:5]
    assert all(output_of(lines, "n%03d" % i) == "done\n" for i in range(100))
    assert elapsed < 60, "100 commands of 3 s took %.1fs: not concurrent" % elapsed


def test_local_transport_checks_and_runs(rprd):
    rprd.apply([local("here", labels={"where": "local"})])
    o = wait_phase(rprd, "here", "Reachable")
    assert "metrics" in o["status"], o["status"]
    p = rprd.ctl("exec", "server", "-l", "where=local", "--", "echo $((6*7)); exit 2")
    assert p.stdout == "here: 42\n", p.stdout
    assert "here: exit 2" in p.stderr and p.returncode == 1
    p = rprd.ctl("check", "server", "here")
    assert p.returncode == 0 and "load average" in p.stdout, p.stderr


# ---- roles and secrets ----------------------------------------------------------------

def make_token(rprd, name, role):
    r = rprd.request("POST", "/api/v1/tokens", body={"name": name, "role": role})
    assert r.status == 201, r
    return r.json()["token"]


def test_roles_viewer_cannot_check_operator_cannot_exec(rprd, sshd, ssh_keys):
    rprd.apply([srv("web", sshd, ssh_keys)])
    viewer, operator = make_token(rprd, "v", "viewer"), make_token(rprd, "o", "operator")
    r = check(rprd, "web", token=viewer)
    assert r.status == 403, r
    assert check(rprd, "web", token=operator).status == 200
    r = rprd.request("POST", "/api/v1/exec", body={"servers": ["web"], "command": "true"}, token=operator)
    assert r.status == 403, r
    p = rprd.ctl("exec", "server", "web", "--", "true", token=operator)
    assert p.returncode == 1 and "needs admin" in p.stderr, p.stderr


def test_no_key_or_token_leaves_rprd(rprd, sshd, ssh_keys):
    with open(ssh_keys.client("ed25519")) as f:
        key_text = f.read()
    key_lines = [l for l in key_text.splitlines() if l and "PRIVATE KEY" not in l]
    token = {"apiVersion": "rpr/v1", "kind": "Token", "metadata": {"name": "deploy-key"},
             "spec": {"type": "ssh-key", "value": key_text}}
    via_ref = srv("byref", sshd, ssh_keys)
    del via_ref["spec"]["identityFile"]
    via_ref["spec"]["keyRef"] = "deploy-key"
    answers = [json.dumps(rprd.apply([token, via_ref, srv("byfile", sshd, ssh_keys)]))]
    wait_phase(rprd, "byref", "Reachable")
    wait_phase(rprd, "byfile", "Reachable")
    answers.append(check(rprd, "byref").text)
    answers.append(rprd.request("POST", "/api/v1/exec",
                                body={"servers": ["byref", "byfile"], "command": "echo ok"}).text)
    answers.append(rprd.get("/api/v1/namespaces/default/servers").text)
    answers.append(rprd.get("/api/v1/namespaces/default/tokens/deploy-key").text)
    answers.append(rprd.ctl("describe", "server", "byref").stdout)
    answers.append(rprd.ctl("get", "tokens", "-o", "yaml").stdout)
    answers.append(rprd.get("/metrics", token=None).text)
    rprd.stop()
    answers.append(rprd.all_stderr())
    text = "\n".join(answers)
    assert "PRIVATE KEY" not in text
    for line in key_lines:
        assert line not in text, "a line of the private key left rprd"
    assert rprd.token not in text


def test_rprd_stopping_mid_exec_cancels_and_reports_it(rprd_factory):
    # The command outlives rprd's --stop-grace: it is canceled and says so.
    rprd = rprd_factory(extra_args=["--stop-grace", "1s"])
    rprd.apply([local("here")])
    argv = [RPRCTL, "--server", rprd.url, "--token", rprd.token, "exec", "server", "here", "--",
            "echo started; sleep 60"]
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=sanitizer_env())
    assert p.stdout.readline() == "here: started\n"
    started = time.time()
    rprd.stop()
    out, err = p.communicate(timeout=20)
    assert time.time() - started < 10
    assert p.returncode == 1, (out, err)
    assert "here: Canceled" in err, err


def test_sigterm_lets_a_running_command_finish(rprd):
    # Within the grace period (default 30s) a command under way finishes
    # and reports its exit code; rprd takes no new work meanwhile.
    rprd.apply([local("here")])
    argv = [RPRCTL, "--server", rprd.url, "--token", rprd.token, "exec", "server", "here", "--",
            "echo started; sleep 2; echo finished"]
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=sanitizer_env())
    assert p.stdout.readline() == "here: started\n"
    rprd.proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    assert not _answers(rprd), "rprd still takes connections after SIGTERM"
    out, err = p.communicate(timeout=30)
    assert p.returncode == 0, (out, err)
    assert "here: finished" in out, out
    rprd.stop()


def _answers(rprd):
    """Whether rprd still accepts connections (its listeners close at SIGTERM)."""
    try:
        socket.create_connection(("127.0.0.1", rprd.port), timeout=1).close()
        return True
    except OSError:
        return False
