"""rprd keeps serving: parallel writers, slow and broken clients, watchers
that go away, the default body limit, SIGINT."""

import signal
import socket
import threading
import time

from conftest import assert_no_sanitizer_report, metric_sum, server, status_of


def test_parallel_writers(rprd):
    rev0 = rprd.revision()
    errors = []

    def writer(t):
        try:
            for i in range(15):
                via = "unix" if i % 2 else "tcp"
                r = rprd.request("POST", "/api/v1/apply", body=[server("t%d-%d" % (t, i))], via=via)
                if r.status != 200:
                    errors.append(r)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors[:3]
    items = rprd.get("/api/v1/servers").json()["items"]
    assert len(items) == 120
    rvs = sorted(int(o["metadata"]["resourceVersion"]) for o in items)
    assert rvs == list(range(rev0 + 1, rev0 + 121)), "every write has its own revision"
    assert rprd.revision() == rev0 + 120


def test_slow_and_broken_clients(rprd):
    # a client that sends half a request and waits
    slow = socket.create_connection(("127.0.0.1", rprd.port))
    slow.sendall(b"GET /api/v1/version HTTP/1.1\r\nHost: x\r\n")
    # a client that sends garbage
    junk = socket.socket(socket.AF_UNIX)
    junk.connect(rprd.sock)
    junk.sendall(b"\x00\xff\x16\x03\x01 not http at all\r\n\r\n")
    # a client that announces a body and hangs up early
    early = socket.create_connection(("127.0.0.1", rprd.port))
    early.sendall(b"POST /api/v1/apply HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " +
                  rprd.token.encode() + b"\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 100000\r\n\r\n[{\"apiVersion\":")
    early.close()
    try:
        t0 = time.time()
        for _ in range(20):
            assert rprd.get("/api/v1/version", token=None).status == 200
        assert time.time() - t0 < 10
        rprd.apply([server("web-1")])
        junk.settimeout(5)
        try:
            data = junk.recv(4096)
            assert data == b"" or data.startswith(b"HTTP/1.1 400"), data
        except (socket.timeout, ConnectionResetError):
            pass
    finally:
        slow.close()
        junk.close()
    assert rprd.get("/api/v1/namespaces/default/servers/web-1").status == 200
    assert rprd.revision() == int(rprd.obj("servers", "web-1")["metadata"]["resourceVersion"])


def test_watchers_go_away(rprd):
    rprd.apply([server("web-1")])
    ws = [rprd.watch("/api/v1/namespaces/default/servers?watch=1") for _ in range(5)]
    for w in ws:
        assert w.next()["type"] == "ADDED"
    assert metric_sum(rprd.metrics(), "rpr_watchers") == 5
    for w in ws[:4]:
        w.close()
    rprd.apply([server("web-1", port=2)])  # writing to a closed watcher must be harmless
    e = ws[4].next()
    assert e["type"] == "MODIFIED"
    deadline = time.time() + 5
    while time.time() < deadline and metric_sum(rprd.metrics(), "rpr_watchers") != 1:
        time.sleep(0.05)
    assert metric_sum(rprd.metrics(), "rpr_watchers") == 1
    # rprd stops cleanly with a watcher still open (teardown checks exit 0)


def test_default_body_limit(rprd):
    big = b'{"items": [' + b" " * (16 * 1024 * 1024 + 10) + b"]}"
    rev = rprd.revision()
    try:
        r = rprd.request("POST", "/api/v1/apply", body=big, timeout=60)
    except (ConnectionResetError, BrokenPipeError):
        raise AssertionError("rprd hung up on an oversized body instead of answering 413")
    assert r.status == 413, r
    assert status_of(r)["reason"] == "RequestEntityTooLarge"
    assert rprd.revision() == rev
    # just under the limit is parsed (and found empty, not too large)
    ok = b'{"items": [' + b" " * (1024 * 1024) + b"]}"
    r = rprd.request("POST", "/api/v1/apply", body=ok, timeout=60)
    assert r.status != 413, r


def test_sigint_stops_cleanly(rprd_factory):
    d = rprd_factory()
    d.apply([server("web-1")])
    proc = d.proc
    proc.send_signal(signal.SIGINT)
    proc.wait(30)
    assert proc.returncode == 0, d.stderr()
    assert_no_sanitizer_report(d.stderr(), "rprd")
    d.proc = None
    d.start()
    assert d.obj("servers", "web-1")["spec"]["host"] == "127.0.0.1"
