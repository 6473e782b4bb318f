"""What a reader, a browser page or a remote can do to rprd, and what it
cannot (issue 15): one test per finding, each failing on the code before
the fix.

- Streams (watch, run log, exec) are capped per caller and in all (429 past
  the cap, the connection closed); accepting pauses when fds run out
  instead of spinning; a flood under a low RLIMIT_NOFILE leaves /healthz
  answering and pipeline jobs running; idle watchers do not each hold the
  whole listing; RLIMIT_NOFILE is raised to the hard limit at start.
- A namespace-scoped viewer reads only its namespaces' log lines.
- Browser-facing requests (dashboard, cookie, anonymous reads) must name
  rprd in Host (DNS rebinding); bearer tokens and the unix socket need not.
- /api/v1/login refuses big bodies before parsing them.
- Webhooks need X-GitHub-Delivery; a push whose head commit the Repo
  already has is a no-op, whatever its delivery id.
- PUT .../status is checked against the kind's status schema.
- Text from remotes reaches statuses and answers flattened.
- A message cut at 1,024 bytes inside a UTF-8 character is no 500.
- Exec threads have a global cap; shutdown with streams open is clean.
"""

import json
import os
import re
import resource
import socket
import threading
import time
import urllib.parse
import uuid

import pytest

from conftest import REPO, http_raw, metric_sum, server, status_of
from test_webhooks import NEW, OLD, SECRET, deliver, gh, hooked, payload, sign, wait_sha  # noqa: F401

CONTROLLERS = True
WAIT = 30
CONTROL = re.compile(r"[\x00-\x1f\x7f\x80-\x9f]")


def local(name, ns="default", **spec):
    s = {"transport": "local"}
    s.update(spec)
    return {"apiVersion": "rpr/v1", "kind": "Server", "metadata": {"name": name, "namespace": ns}, "spec": s}


def token_for(d, name, role, namespaces=None):
    body = {"name": name, "role": role}
    if namespaces is not None:
        body["namespaces"] = namespaces
    r = d.request("POST", "/api/v1/tokens", body=body)
    assert r.status in (200, 201), r
    return r.json()["token"]


def raw_request(d, request, timeout=10):
    """Sends request bytes on a new TCP connection; returns the socket."""
    s = socket.create_connection(("127.0.0.1", d.port), timeout=timeout)
    s.sendall(request)
    return s


def read_head(s, timeout=10):
    """The status code and what came of the answer up to the first chunk."""
    s.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        k = s.recv(65536)
        if not k:
            break
        data += k
    return int(data.split(b" ", 2)[1]), data


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def wait_for(pred, what, timeout=WAIT):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError("timed out waiting for " + what)


# ---- item 3: streams, file descriptors, memory ---------------------------------------------


def test_watch_flood_under_a_low_fd_limit_keeps_rprd_serving(rprd_factory):
    d = rprd_factory(extra_args=["--anonymous-read"])
    resource.prlimit(d.pid, resource.RLIMIT_NOFILE, (256, 256))
    d.apply([{"apiVersion": "rpr/v1", "kind": "Pipeline", "metadata": {"name": "after-flood"},
              "spec": {"tasks": {"hello": {"script": "echo flood-survived"}}}}])

    # More connections than rprd has file descriptors: first all of them
    # (rprd runs out while they are idle), then a watch on each, none read.
    flood, codes, refusal = [], [], b""
    for _ in range(300):
        s = socket.socket()
        s.settimeout(2)  # a loaded machine accepts slowly; a full backlog times out
        try:
            s.connect(("127.0.0.1", d.port))
            flood.append(s)
        except OSError:
            s.close()  # the backlog is full
    # rprd takes the backlog at its own pace (slowly on a loaded machine).
    wait_for(lambda: "not accepting connections for now" in d.stderr(), "rprd to run out of descriptors",
             timeout=20)
    for s in flood:
        try:
            s.sendall(b"GET /api/v1/watch HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        except OSError:
            pass
    try:
        for s in flood:
            try:
                code, head = read_head(s, timeout=2)
                codes.append(code)
                refusal = head if code == 429 else refusal
            except (OSError, ValueError, IndexError):
                pass
        assert "not accepting connections for now" in d.stderr(), d.stderr()
        assert 429 in codes, "no watcher was refused: %s" % sorted(set(codes))
        assert b"too many streams" in refusal, refusal
        assert codes.count(200) <= 64, "more streams than one caller may hold: %d" % codes.count(200)

        # The daemon answers, and does not spin on its listener.
        r = wait_for(lambda: _health(d), "/healthz during the flood", timeout=15)
        assert r.status == 200, r
        before = cpu_seconds(d.pid)
        time.sleep(2)
        assert cpu_seconds(d.pid) - before < 1.0, "rprd burns CPU while idle watchers are held"

        # And work still runs: a pipeline job opens its log and runs its task.
        r = d.request("POST", "/api/v1/namespaces/default/pipelines/after-flood/runs", body={})
        assert r.status == 201, r
        j = wait_for(lambda: _finished(d, "after-flood-1"), "the job to end")
        assert j["status"]["phase"] == "Succeeded", j["status"]
        log = d.get("/api/v1/namespaces/default/runs/after-flood-1/log?task=hello").text
        assert "flood-survived" in log, log
    finally:
        for s in flood:
            s.close()
    assert d.proc.poll() is None, "rprd died:\n" + d.stderr()


def _health(d):
    try:
        r = d.request("GET", "/healthz", token=None, timeout=2)
        return r if r.status == 200 else None
    except OSError:
        return None


def _finished(d, name):
    r = d.get("/api/v1/namespaces/default/runs/" + name)
    if r.status != 200:
        return None
    j = r.json()
    return j if j.get("status", {}).get("phase") in ("Succeeded", "Failed", "Canceled") else None


def test_stream_caps_per_caller_and_in_all_answer_429(rprd_factory):
    d = rprd_factory(extra_args=["--max-streams", "5", "--max-streams-per-caller", "3"])
    a, b = token_for(d, "a", "viewer"), token_for(d, "b", "viewer")
    held = []

    def watch(tok):
        s = raw_request(d, ("GET /api/v1/namespaces/default/servers?watch=1 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                            "Authorization: Bearer %s\r\n\r\n" % tok).encode())
        code, head = read_head(s)
        held.append(s)
        return code, head

    try:
        assert [watch(a)[0] for _ in range(3)] == [200, 200, 200]
        code, head = watch(a)
        assert code == 429, head
        assert b"--max-streams-per-caller" in head and b"TooManyRequests" in head, head

        # b has its own three, but only two are left in all.
        assert [watch(b)[0] for _ in range(2)] == [200, 200]
        code, head = watch(b)
        assert code == 429 and b"--max-streams)" in head, head
        m = d.metrics()
        assert (metric_sum(m, "rpr_streams"), metric_sum(m, "rpr_streams_limit")) == (5, 5), m

        # A stream given back (its client gone) is free again.
        held[0].close()
        wait_for(lambda: watch(b)[0] == 200, "the closed stream to be given back", timeout=10)
    finally:
        for s in held:
            s.close()


def test_idle_watchers_do_not_each_hold_the_listing(rprd_factory, monkeypatch):
    # Freed memory goes back at once, so that RSS shows what is held.
    monkeypatch.setenv("ASAN_OPTIONS", "quarantine_size_mb=0:thread_local_quarantine_size_kb=0")
    d = rprd_factory(extra_args=["--no-controllers"])
    big = "x" * 1000
    d.apply([{"apiVersion": "rpr/v1", "kind": "Server", "metadata": {"name": "s%d" % i, "annotations": {"pad": big}},
              "spec": {"host": "127.0.0.1", "port": 1}} for i in range(1000)])
    time.sleep(0.5)
    before = rss_mb(d.pid)
    watchers = []
    try:
        for _ in range(100):
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.connect(("127.0.0.1", d.port))
            s.sendall(("GET /api/v1/watch HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer %s\r\n\r\n"
                       % d.token).encode())
            watchers.append(s)
        time.sleep(3)
        grown = rss_mb(d.pid) - before
        # Buffered whole, 100 listings of ~1.1 MB each would be over 100 MB.
        assert grown < 40, "100 idle watchers took %.0f MB" % grown
        d.health()
    finally:
        for s in watchers:
            s.close()


def test_rlimit_nofile_is_raised_to_the_hard_limit(rprd_factory):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    low = min(512, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (low, hard))
    try:
        d = rprd_factory()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert resource.prlimit(d.pid, resource.RLIMIT_NOFILE) == (hard, hard)


def test_limits_are_documented_and_the_unit_raises_nofile():
    unit = open(os.path.join(REPO, "packaging", "systemd", "rprd.service")).read()
    assert re.search(r"^LimitNOFILE=\d+", unit, re.M), unit
    man = open(os.path.join(REPO, "packaging", "man", "rprd.8")).read().replace("\\-", "-")
    for flag in ("max-streams", "max-streams-per-caller", "max-exec-threads", "allowed-host"):
        assert flag in man, "rprd(8) does not document --" + flag


# ---- item 4: log lines by namespace --------------------------------------------------------


def test_scoped_viewer_sees_only_its_namespaces_log_lines(rprd):
    rprd.apply([local("here", ns="team-a"), local("there", ns="team-b")])
    wait_for(lambda: all(rprd.obj("servers", n, ns=ns).get("status", {}).get("phase") == "Reachable"
                         for n, ns in (("here", "team-a"), ("there", "team-b"))), "both checks")
    whole = rprd.get("/api/v1/logs/connectivity?tail=100").text
    assert "team-a/here" in whole and "team-b/there" in whole, whole

    tok = token_for(rprd, "a-viewer", "viewer", ["team-a"])
    mine = rprd.get("/api/v1/logs/connectivity?tail=100", token=tok)
    assert mine.status == 200, mine
    assert "team-a/here" in mine.text, mine.text
    assert "team-b" not in mine.text, mine.text
    act = rprd.get("/api/v1/logs/activity?tail=100", token=tok)
    assert act.status == 200 and "team-b" not in act.text, act.text


# ---- item 5: Host ------------------------------------------------------------------------


def test_host_header_is_checked_for_browser_facing_requests(rprd_factory):
    d = rprd_factory(extra_args=["--anonymous-read", "--allowed-host", "rpr.example.com",
                                 "--web-dir", os.path.join(REPO, "web")])
    evil = {"Host": "rebind.attacker.example:%d" % d.port}

    # Anonymous reads, the dashboard and the cookie: only rprd's own names.
    r = d.get("/api/v1/namespaces/default/servers", token=None, headers=evil)
    assert r.status == 421, r
    assert "rebind.attacker.example" in status_of(r)["message"] and "--allowed-host" in status_of(r)["message"]
    assert d.get("/", token=None, headers=evil).status == 421
    assert d.get("/app.js", token=None, headers=evil).status == 421
    cookie = dict(evil, Cookie="rpr_token=" + d.token)
    assert d.get("/api/v1/namespaces/default/servers", token=None, headers=cookie).status == 421
    assert d.request("POST", "/api/v1/login", body={"token": d.token}, token=None, headers=evil).status == 421

    for host in ("127.0.0.1:%d" % d.port, "localhost:%d" % d.port, "[::1]:%d" % d.port, "rpr.example.com",
                 "RPR.example.com:8270"):
        assert d.get("/api/v1/namespaces/default/servers", token=None, headers={"Host": host}).status == 200, host
    assert d.get("/", token=None, headers={"Host": "localhost"}).status == 200

    # Not browser-facing: a bearer token, the unix socket, /healthz.
    assert d.get("/api/v1/namespaces/default/servers", headers=evil).status == 200
    assert d.get("/api/v1/namespaces/default/servers", token=None, headers=evil, via="unix").status == 200
    assert d.get("/healthz", token=None, headers=evil).status == 200


# ---- item 6: login bodies ---------------------------------------------------------------


def test_login_refuses_big_bodies_without_stalling_healthz(rprd):
    big = json.dumps({"token": "a" * (8 * 1024 * 1024)}).encode()
    r = rprd.request("POST", "/api/v1/login", body=big, token=None)
    assert r.status == 413, r
    assert "4096" in status_of(r)["message"]

    stop, slowest = threading.Event(), []

    def poster():
        while not stop.is_set():
            rprd.request("POST", "/api/v1/login", body=big, token=None)

    threads = [threading.Thread(target=poster) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.5)
        for _ in range(20):
            t0 = time.time()
            assert rprd.request("GET", "/healthz", token=None).status == 200
            slowest.append(time.time() - t0)
            time.sleep(0.05)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert max(slowest) < 0.5, "healthz took %.2f s while logins were posted" % max(slowest)
    # A login of the right size still works.
    assert rprd.request("POST", "/api/v1/login", body={"token": rprd.token}, token=None).status == 200


# ---- item 11: webhook replays ----------------------------------------------------------------


def test_webhook_needs_a_delivery_id_and_a_known_head_is_a_no_op(hooked, gh):
    body = payload("push.4.json")
    headers = {"X-GitHub-Event": "push", "X-Hub-Signature-256": sign(body)}
    r = hooked.request("POST", "/hooks/github", body=body, token=None, headers=headers)
    assert r.status == 400 and "X-GitHub-Delivery" in r.json()["message"], r

    gh.set_head("Codertocat", "Hello-World", "master", sha=NEW)
    r = deliver(hooked, body)
    assert r.status == 202 and r.json()["triggered"] == ["hello"], r
    wait_sha(hooked, "hello", NEW)

    # The same signed push again, with a new delivery id: nothing to do.
    time.sleep(0.3)
    gh.clear_requests()
    r = deliver(hooked, body, delivery=str(uuid.uuid4()))
    assert r.status == 202, r
    assert "triggered" not in r.json() and "nothing to do" in r.json()["ignored"], r.json()
    assert NEW[:12] in r.json()["ignored"]
    time.sleep(0.5)
    assert gh.requests() == []


# ---- item 12: status writes ----------------------------------------------------------------


def test_put_status_is_checked_against_the_status_schema(rprd_factory):
    d = rprd_factory(extra_args=["--no-controllers"])
    d.apply([server("web-1", hostKeyPolicy="accept-new")])
    path = "/api/v1/namespaces/default/servers/web-1/status"
    r = d.request("PUT", path, body={"status": {"hostKey": "ssh-ed25519 not-a-fingerprint"}})
    assert r.status == 422, r
    assert any(x.get("field") == "status.hostKey" for x in status_of(r)["details"]), r.json()
    r = d.request("PUT", path, body={"status": {"phase": "Sleeping", "extra": 1}})
    assert r.status == 422, r
    fields = sorted(x.get("field") for x in status_of(r)["details"])
    assert fields == ["status.extra", "status.phase"], r.json()
    assert "hostKey" not in d.obj("servers", "web-1").get("status", {})

    good = "ssh-ed25519 SHA256:" + "B" * 43
    r = d.request("PUT", path, body={"status": {"phase": "Reachable", "hostKey": good}})
    assert r.status == 200, r
    assert d.obj("servers", "web-1")["status"]["hostKey"] == good


# ---- item 13: text from remotes -------------------------------------------------------------


def test_remote_text_is_flattened_before_a_status_or_an_answer(hooked, gh):
    # GitHub's commit message with ESC, CSI and BEL: the status gets one flat line.
    gh.set_head("Codertocat", "Hello-World", "master", sha=NEW,
                message="Update \x1b[2J\x1b]0;owned\x07 README \u009b31m done")
    assert deliver(hooked, payload("push.4.json")).status == 202
    wait_sha(hooked, "hello", NEW)
    msg = hooked.obj("repos", "hello")["status"]["lastCommit"]["message"]
    assert not CONTROL.search(msg), repr(msg)
    assert msg.startswith("Update ") and msg.endswith(" done"), repr(msg)

    # A signed payload's own fields, quoted in the answer.
    p = json.loads(payload("push.4.json"))
    p["ref"] = "refs/heads/evil\r\n\x1b[31mINJECTED"
    body = json.dumps(p).encode()
    r = deliver(hooked, body)
    assert r.status == 202, r
    assert not CONTROL.search(r.json()["ignored"]), repr(r.json())
    assert "INJECTED" in r.json()["ignored"]


# ---- item 15: a cut inside a character -----------------------------------------------------------


def test_a_message_cut_inside_a_character_is_not_a_500(rprd):
    # A label selector's error quotes the selector: a long one makes the
    # message longer than the 1,024 bytes an answer keeps, and with one
    # byte more or less in front the cut falls inside an "é".
    for pad in ("", "a"):
        sel = urllib.parse.quote(pad + "\u00e9" * 600)
        status, body = http_raw(rprd, b"GET /api/v1/servers?labelSelector=" + sel.encode() + b" HTTP/1.1\r\n"
                                b"Host: 127.0.0.1\r\nAuthorization: Bearer " + rprd.token.encode() +
                                b"\r\nConnection: close\r\n\r\n")
        assert status == 400, body[:600]
        message = json.loads(body)["message"]
        assert message.startswith("invalid label selector") and message.endswith("\u00e9"), message[-20:]
        assert len(message.encode()) <= 1024, len(message.encode())


# ---- item 16: exec threads, shutdown ----------------------------------------------------------


def test_exec_threads_have_a_global_cap_and_shutdown_with_streams_is_clean(rprd_factory):
    d = rprd_factory(extra_args=["--max-exec-threads", "2", "--stop-grace", "0s"])
    d.apply([local("e1"), local("e2"), local("e3")])
    body = {"servers": ["e1", "e2"], "command": "sleep 2; echo done", "parallel": 2}
    first = raw_request(d, ("POST /api/v1/exec HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer %s\r\n"
                            "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                            % (d.token, len(json.dumps(body)), json.dumps(body))).encode())
    assert read_head(first)[0] == 200
    r = d.request("POST", "/api/v1/exec", body={"servers": ["e3"], "command": "true"})
    assert r.status == 429, r
    assert "--max-exec-threads" in status_of(r)["message"]

    # Threads come back when the commands end.
    first.settimeout(20)
    data = b""
    while b"ExecResult" not in data:
        k = first.recv(65536)
        assert k, data
        data += k
    first.close()
    r = wait_for(lambda: (lambda x: x if x.status == 200 else None)(
        d.request("POST", "/api/v1/exec", body={"servers": ["e3"], "command": "true"})), "a free thread")
    assert b'"failed":0' in r.body, r

    # Shutdown while watchers that never read and a running command hold streams.
    held = [raw_request(d, ("GET /api/v1/watch HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer %s\r\n\r\n"
                            % d.token).encode()) for _ in range(5)]
    running = raw_request(d, ("POST /api/v1/exec HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer %s\r\n"
                              "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                              % (d.token, len(json.dumps(body)), json.dumps(body))).encode())
    time.sleep(0.5)
    try:
        d.stop()  # asserts exit 0 and no sanitizer report
    finally:
        for s in held + [running]:
            s.close()
