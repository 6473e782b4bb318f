"""The dashboard's side of the API: login as a cookie (HttpOnly,
SameSite=Strict), writes with the cookie only from rprd's own Origin,
logout, /api/v1/session, --anonymous-read, and GET /api/v1/watch (every
kind in one stream, secrets redacted, a token's namespaces respected).
The page itself is tested in a real browser (tests/browser)."""

import json
import socket
import time

from conftest import status_of


def login(d, token, origin=None):
    headers = {"Origin": origin} if origin else {}
    return d.request("POST", "/api/v1/login", body={"token": token}, token=None, headers=headers)


def cookie_of(r):
    sc = r.headers.get("set-cookie", "")
    return sc.split(";", 1)[0].split("=", 1)[1], sc


def with_cookie(d, method, path, value, origin=None, body=None):
    headers = {"Cookie": "rpr_token=" + value}
    if origin:
        headers["Origin"] = origin
    return d.request(method, path, body=body, token=None, headers=headers)


def test_login_sets_an_httponly_strict_cookie(rprd):
    r = login(rprd, rprd.token)
    assert r.status == 200, r
    value, line = cookie_of(r)
    assert value == rprd.token
    assert "HttpOnly" in line and "SameSite=Strict" in line and "Path=/" in line
    assert "Secure" not in line  # plain http on loopback
    s = r.json()
    assert s["kind"] == "Session" and s["authenticated"] and s["role"] == "admin" and s["name"] == "admin"
    assert rprd.token not in r.text


def test_a_bad_token_does_not_log_in(rprd):
    r = login(rprd, "not-a-token")
    assert r.status == 401 and "set-cookie" not in r.headers
    assert "not-a-token" not in r.text
    r = rprd.request("POST", "/api/v1/login", body={"token": "a;b"}, token=None)
    assert r.status == 400
    r = rprd.request("POST", "/api/v1/login", body={}, token=None)
    assert r.status == 400


def test_cookie_reads_and_same_origin_writes(rprd):
    own = rprd.url
    assert with_cookie(rprd, "GET", "/api/v1/servers", rprd.token).status == 200
    srv = [{"apiVersion": "rpr/v1", "kind": "Server", "metadata": {"name": "a"}, "spec": {"transport": "local"}}]
    r = with_cookie(rprd, "POST", "/api/v1/apply", rprd.token, body=srv)
    assert r.status == 403 and "cross-site" in status_of(r)["message"], r
    r = with_cookie(rprd, "POST", "/api/v1/apply", rprd.token, origin="http://evil.example", body=srv)
    assert r.status == 403 and "evil.example" in status_of(r)["message"], r
    r = with_cookie(rprd, "DELETE", "/api/v1/namespaces/default/servers/a", rprd.token, origin="null")
    assert r.status == 403
    assert rprd.get("/api/v1/namespaces/default/servers/a").status == 404, "nothing was written"
    r = with_cookie(rprd, "POST", "/api/v1/apply", rprd.token, origin=own, body=srv)
    assert r.status == 200, r
    # A bearer token needs no Origin: CSRF is a cookie's problem.
    assert rprd.request("DELETE", "/api/v1/namespaces/default/servers/a").status == 200


def test_login_from_another_site_is_refused(rprd):
    r = login(rprd, rprd.token, origin="http://evil.example")
    assert r.status == 403 and "set-cookie" not in r.headers


def test_logout_clears_the_cookie(rprd):
    r = rprd.request("POST", "/api/v1/logout", token=None, headers={"Origin": rprd.url})
    assert r.status == 200
    value, line = cookie_of(r)
    assert value == "" and "Max-Age=0" in line
    assert r.json()["authenticated"] is False


def test_session_says_who_calls(rprd):
    s = rprd.get("/api/v1/session", token=None).json()
    assert s["authenticated"] is False and s["role"] == "anonymous" and s["anonymousRead"] is False
    s = with_cookie(rprd, "GET", "/api/v1/session", rprd.token).json()
    assert s["authenticated"] and s["role"] == "admin"
    viewer = rprd.ctl("token", "create", "v", "--role", "viewer", "--namespaces", "team").stdout.strip()
    s = rprd.get("/api/v1/session", token=viewer).json()
    assert s["role"] == "viewer" and s["namespaces"] == ["team"]
    s = with_cookie(rprd, "GET", "/api/v1/session", "wrong").json()
    assert s["authenticated"] is False


def test_reads_need_a_token_unless_anonymous_read(rprd_factory):
    closed = rprd_factory()
    assert closed.get("/api/v1/servers", token=None).status == 401
    open_ = rprd_factory(extra_args=["--anonymous-read"])
    assert open_.get("/api/v1/servers", token=None).status == 200
    assert open_.get("/api/v1/session", token=None).json()["anonymousRead"] is True
    r = open_.request("POST", "/api/v1/apply", body=[], token=None)
    assert r.status == 401, "writes always need a token"
    r = open_.request("POST", "/api/v1/namespaces/default/servers/x/check", token=None)
    assert r.status == 401
    tokens = open_.get("/api/v1/tokens", token=None)
    assert tokens.status == 200 and "valueHash" not in tokens.text


def read_lines(d, path, n, token="admin", timeout=10):
    """The first n lines of a stream."""
    s = socket.create_connection(("127.0.0.1", d.port), timeout=timeout)
    auth = "Authorization: Bearer %s\r\n" % (d.token if token == "admin" else token) if token else ""
    s.sendall(("GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%s\r\n" % (path, auth)).encode())
    data = b""
    deadline = time.time() + timeout
    while time.time() < deadline:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
        body = data.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in data else b""
        lines = [ln for ln in body.split(b"\r\n") if ln.startswith(b"{")]
        objs = []
        for ln in lines:
            objs.extend(json.loads(x) for x in ln.split(b"\n") if x.strip())
        if len(objs) >= n:
            s.close()
            return objs
    s.close()
    raise AssertionError("stream gave %r" % data[-500:])


def test_watch_streams_every_kind_without_secrets(rprd):
    secret = "inline-secret-value-12345"
    rprd.apply([
        {"apiVersion": "rpr/v1", "kind": "Server", "metadata": {"name": "a"}, "spec": {"transport": "local"}},
        {"apiVersion": "rpr/v1", "kind": "Token", "metadata": {"name": "gh"},
         "spec": {"type": "github", "value": secret}},
        {"apiVersion": "rpr/v1", "kind": "Server", "metadata": {"name": "b", "namespace": "team"},
         "spec": {"transport": "local"}},
    ])
    evs = read_lines(rprd, "/api/v1/watch", 4)  # the admin token, two Servers and the github Token
    kinds = sorted((e["object"]["kind"], e["object"]["metadata"]["name"]) for e in evs)
    assert ("Server", "a") in kinds and ("Server", "b") in kinds and ("Token", "gh") in kinds, kinds
    assert all(e["type"] == "ADDED" for e in evs)
    assert secret not in json.dumps(evs)

    team = rprd.ctl("token", "create", "t", "--role", "viewer", "--namespaces", "team").stdout.strip()
    evs = read_lines(rprd, "/api/v1/watch", 1, token=team)
    assert {e["object"]["metadata"]["namespace"] for e in evs} == {"team"}, evs
    assert rprd.get("/api/v1/watch", token=None).status == 401
