"""Hostile input: an alias bomb, 1000-deep nesting and a 100 MB body, sent
both to the API and through rprctl. Each is refused with a message that
names what and where, nothing is written, and rprd keeps serving."""

import json
import re
import socket
import time

from conftest import server, status_of

BOMB = ("apiVersion: rpr/v1\nkind: Server\nmetadata:\n  name: web-1\n  annotations:\n"
        "    a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n"
        + "".join("    a%d: &a%d [*a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d]\n"
                  % ((i, i) + (i - 1,) * 10) for i in range(1, 9))
        + "spec: {host: h}\n")

DEEP_YAML = ("apiVersion: rpr/v1\nkind: Server\nmetadata: {name: web-1}\nspec:\n  host: h\n"
             "  extra: " + "[" * 1000 + "]" * 1000 + "\n")


def deep_json(depth):
    """One Server with spec.extra nested depth arrays deep, as JSON text
    (Python's own json module cannot build it)."""
    text = json.dumps([server("web-1")])
    return text.replace('"spec": {', '"spec": {"extra": ' + "[" * depth + "]" * depth + ", ", 1)


def still_serving(d, rev):
    assert d.proc.poll() is None, "rprd died"
    assert d.health()["status"] == "ok"
    assert d.revision() == rev, "a refused request wrote something"
    assert d.get("/api/v1/servers").json()["items"] == []


def test_alias_bomb(rprd, tmp_path):
    rev = rprd.revision()
    t0 = time.time()
    r = rprd.request("POST", "/api/v1/apply", body=BOMB, content_type="application/yaml")
    assert time.time() - t0 < 10
    assert r.status == 400, r
    msg = status_of(r)["message"]
    assert re.search(r"line \d+ column \d+", msg) and "alias" in msg, msg
    f = tmp_path / "bomb.yaml"
    f.write_text(BOMB)
    p = rprd.ctl("apply", "-f", str(f))
    assert p.returncode == 1, p
    assert re.search("^" + re.escape(str(f)) + r":\d+:\d+: .*alias", p.stderr, re.M), p.stderr
    still_serving(rprd, rev)


def test_deep_nesting(rprd, tmp_path):
    rev = rprd.revision()
    r = rprd.request("POST", "/api/v1/apply", body=DEEP_YAML, content_type="application/yaml")
    assert r.status == 400, r
    msg = status_of(r)["message"]
    assert "line 6" in msg and "deep" in msg, msg
    f = tmp_path / "deep.yaml"
    f.write_text(DEEP_YAML)
    p = rprd.ctl("apply", "-f", str(f))
    assert p.returncode == 1, p
    assert re.search("^" + re.escape(str(f)) + r":6:\d+: .*deep", p.stderr, re.M), p.stderr
    # The same depth as JSON is parsed, then refused by the schema, by name.
    r = rprd.request("POST", "/api/v1/apply", body=deep_json(1000), content_type="application/json")
    assert r.status in (400, 422), r
    s = status_of(r)
    assert "extra" in json.dumps(s), s
    still_serving(rprd, rev)


def test_100mb_body(rprd, tmp_path):
    rev = rprd.revision()
    size = 100 * 1024 * 1024
    c = socket.create_connection(("127.0.0.1", rprd.port), timeout=30)
    c.sendall(b"POST /api/v1/apply HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " +
              rprd.token.encode() + b"\r\nContent-Type: application/json\r\n"
              b"Content-Length: %d\r\n\r\n[" % size)
    # rprd answers from the announced length, without reading 100 MB.
    sent, answer = 1, b""
    chunk = b" " * (1024 * 1024)
    try:
        while sent < size and b"\r\n\r\n" not in answer:
            c.settimeout(0.05)
            try:
                answer += c.recv(65536)
            except socket.timeout:
                pass
            c.settimeout(30)
            c.sendall(chunk)
            sent += len(chunk)
    except (BrokenPipeError, ConnectionResetError):
        pass
    c.settimeout(5)
    try:
        while b"\r\n\r\n" not in answer:
            data = c.recv(65536)
            if not data:
                break
            answer += data
    except (socket.timeout, ConnectionResetError):
        pass
    c.close()
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert sent < size, "rprd read the whole 100 MB before refusing it"
    # rprctl refuses such a file itself, naming it and the limit.
    f = tmp_path / "huge.yaml"
    with open(f, "wb") as out:
        out.write(b"# padding\n" * (size // 10))
    p = rprd.ctl("apply", "-f", str(f))
    assert p.returncode == 1, p
    assert str(f) in p.stderr and "too large" in p.stderr, p.stderr
    still_serving(rprd, rev)
