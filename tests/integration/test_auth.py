"""Bearer tokens: 401s, roles, namespaces, the admin token, token creation,
and that secrets never leave rprd."""

import datetime
import hashlib
import os
import stat

from conftest import server, status_of


def make_token(d, name, role, **kw):
    body = dict({"name": name, "namespace": "default", "role": role, "expires": "30d"}, **kw)
    r = d.request("POST", "/api/v1/tokens", body=body)
    assert r.status == 201, r
    t = r.json()
    assert t["name"] == name and t["role"] == role and t["namespace"] == "default", t
    assert isinstance(t["token"], str) and len(t["token"]) >= 32, t
    return t


def test_admin_token_file(rprd):
    p = os.path.join(rprd.state_dir, "admin.token")
    st = os.stat(p)
    assert stat.S_IMODE(st.st_mode) == 0o600, oct(st.st_mode)
    assert len(rprd.token) == 32, rprd.token
    assert rprd.token.isalnum() or all(c.isalnum() or c in "-_" for c in rprd.token)
    # Token/admin is stored, as an api admin token, hash redacted
    tok = rprd.obj("tokens", "admin")
    assert tok["kind"] == "Token"
    assert tok["spec"]["type"] == "api" and tok["spec"]["role"] == "admin", tok
    assert "valueHash" not in tok["spec"] and "value" not in tok["spec"], tok
    # The secret does not show up in rprd's own log.
    assert rprd.token not in rprd.stderr()


def test_missing_invalid_token_401(rprd):
    r = rprd.get("/api/v1/servers", token=None)
    assert r.status == 401, r
    s = status_of(r)
    assert s["reason"] == "Unauthorized" and s["message"] == "missing bearer token", s
    r = rprd.get("/api/v1/servers", token="not-a-real-token-0123456789abcdef")
    assert r.status == 401, r
    s = status_of(r)
    assert s["reason"] == "Unauthorized" and s["message"] == "invalid token", s
    assert "not-a-real-token" not in r.text
    # A malformed Authorization header counts as missing/invalid, never 200.
    r = rprd.get("/api/v1/servers", token=None, headers={"Authorization": "Basic Zm9vOmJhcg=="})
    assert r.status == 401, r
    # The same over the unix socket: no free pass for local clients.
    r = rprd.get("/api/v1/servers", token=None, via="unix")
    assert r.status == 401, r
    # Every protected route refuses without a token, writes included.
    rev = rprd.revision()
    r = rprd.request("POST", "/api/v1/apply", body=[server("web-1")], token=None)
    assert r.status == 401, r
    r = rprd.request("DELETE", "/api/v1/namespaces/default/tokens/admin", token=None)
    assert r.status == 401, r
    assert rprd.revision() == rev
    assert rprd.get("/api/v1/namespaces/default/servers/web-1").status == 404


def test_expired_token_401(rprd):
    secret = "expiredsecret-0123456789abcdefXYZ"
    res = rprd.apply([{"apiVersion": "rpr/v1", "kind": "Token", "metadata": {"name": "old"},
                       "spec": {"type": "api", "role": "admin", "value": secret,
                                "expires": "2020-01-01"}}])
    assert res["items"][0]["outcome"] == "created"
    assert secret not in str(res)
    r = rprd.get("/api/v1/servers", token=secret)
    assert r.status == 401, r
    s = status_of(r)
    assert s["reason"] == "Unauthorized"
    assert s["message"].startswith("token old expired on 2020-01-01"), s
    assert secret not in r.text


def test_roles(rprd):
    rprd.apply([server("web-1")])
    viewer = make_token(rprd, "ci", "viewer")["token"]
    operator = make_token(rprd, "op", "operator")["token"]
    rev = rprd.revision()

    # viewer reads
    r = rprd.get("/api/v1/namespaces/default/servers/web-1", token=viewer)
    assert r.status == 200 and r.json()["metadata"]["name"] == "web-1", r
    assert rprd.get("/api/v1/servers", token=viewer).status == 200
    # ...and may not write
    for method, path, body in (
            ("POST", "/api/v1/apply", [server("web-2")]),
            ("PUT", "/api/v1/namespaces/default/servers/web-2", server("web-2")),
            ("DELETE", "/api/v1/namespaces/default/servers/web-1", None),
            ("POST", "/api/v1/tokens", {"name": "x", "role": "admin"})):
        r = rprd.request(method, path, body=body, token=viewer)
        assert r.status == 403, (method, path, r)
        s = status_of(r)
        assert s["reason"] == "Forbidden"
        assert s["message"] == "token ci has role viewer; this needs admin", s
    # actions need operator
    r = rprd.request("POST", "/api/v1/namespaces/default/servers/web-1/check", token=viewer)
    assert r.status == 403, r
    assert status_of(r)["message"] == "token ci has role viewer; this needs operator"
    # operator may act (a check of a local server runs; absent: 404), not apply
    rprd.apply([server("here", transport="local")])
    r = rprd.request("POST", "/api/v1/namespaces/default/servers/here/check", token=operator)
    assert r.status == 200 and r.json()["reachable"] is True, r
    r = rprd.request("POST", "/api/v1/namespaces/default/servers/absent/check", token=operator)
    assert r.status == 404, r
    rev = rprd.revision()
    r = rprd.request("POST", "/api/v1/apply", body=[server("web-2")], token=operator)
    assert r.status == 403, r
    assert status_of(r)["message"] == "token op has role operator; this needs admin"
    assert rprd.revision() == rev
    assert rprd.get("/api/v1/namespaces/default/servers/web-2").status == 404


def test_namespace_restriction(rprd):
    t = make_token(rprd, "team", "admin", namespaces=["team-a"])["token"]
    r = rprd.request("POST", "/api/v1/apply", body=[server("s1", ns="team-a")], token=t)
    assert r.status == 200, r
    rev = rprd.revision()
    r = rprd.request("POST", "/api/v1/apply", body=[server("s1", ns="team-b")], token=t)
    assert r.status == 403, r
    s = status_of(r)
    assert s["reason"] == "Forbidden" and "team-b" in s["message"], s
    # a mixed apply is refused as a whole
    r = rprd.request("POST", "/api/v1/apply",
                     body=[server("s2", ns="team-a"), server("s2", ns="team-b")], token=t)
    assert r.status == 403, r
    assert rprd.revision() == rev
    assert rprd.get("/api/v1/namespaces/team-a/servers", token=t).status == 200
    r = rprd.get("/api/v1/namespaces/team-b/servers", token=t)
    assert r.status == 403, r
    assert "team-b" in status_of(r)["message"]
    r = rprd.get("/api/v1/namespaces/team-a/servers/s1", token=t)
    assert r.status == 200, r
    r = rprd.request("DELETE", "/api/v1/namespaces/default/tokens/admin", token=t)
    assert r.status == 403, r
    assert rprd.obj("tokens", "admin")["metadata"]["name"] == "admin"


def test_token_create_api_secret_shown_once(rprd):
    t = make_token(rprd, "ci", "viewer", expires="30d")
    secret = t["token"]
    exp = datetime.datetime.strptime(t["expires"], "%Y-%m-%dT%H:%M:%SZ")
    days = (exp - datetime.datetime.utcnow()).total_seconds() / 86400
    assert 29.9 < days < 30.1, t
    # the secret works
    assert rprd.get("/api/v1/servers", token=secret).status == 200
    # 409 on a second create with the same name, no new secret
    r = rprd.request("POST", "/api/v1/tokens", body={"name": "ci", "role": "admin"})
    assert r.status == 409, r
    s = status_of(r)
    assert s["reason"] == "Conflict" and "ci" in s["message"], s
    assert "token" not in r.json()
    # a date as expiry
    t2 = make_token(rprd, "dated", "operator", expires="2099-01-01")
    assert t2["expires"].startswith("2099-01-01"), t2
    # bad input to the token route
    r = rprd.request("POST", "/api/v1/tokens", body={"name": "Bad_Name", "role": "viewer"})
    assert r.status in (400, 422), r
    assert "Bad_Name" in r.text
    r = rprd.request("POST", "/api/v1/tokens", body={"name": "r", "role": "superuser"})
    assert r.status in (400, 422), r
    assert "role" in r.text

    # never again: not in any GET, list or watch answer, not as a hash either
    digest = hashlib.sha256(secret.encode()).hexdigest()
    answers = [
        rprd.get("/api/v1/tokens"),
        rprd.get("/api/v1/namespaces/default/tokens"),
        rprd.get("/api/v1/namespaces/default/tokens/ci"),
        rprd.get("/api/v1/namespaces/default/tokens/admin"),
    ]
    for r in answers:
        assert r.status == 200, r
        assert secret not in r.text and digest not in r.text, r.text
        assert "valueHash" not in r.text and "sha256:" not in r.text, r.text
    w = rprd.watch("/api/v1/namespaces/default/tokens?watch=1", timeout=10)
    try:
        assert w.status == 200
        evs = w.events(3)
        names = sorted(e["object"]["metadata"]["name"] for e in evs)
        assert names == ["admin", "ci", "dated"], names
        for e in evs:
            assert "valueHash" not in e["object"]["spec"], e
    finally:
        w.close()
    lst = answers[0].json()
    assert lst["kind"] == "List"
    assert [i["metadata"]["name"] for i in lst["items"]] == ["admin", "ci", "dated"]
    assert secret not in rprd.all_stderr() and digest not in rprd.all_stderr()
    assert rprd.token not in rprd.all_stderr()

    # revoke: the secret stops working
    r = rprd.request("DELETE", "/api/v1/namespaces/default/tokens/ci")
    assert r.status == 200, r
    assert secret not in r.text
    r = rprd.get("/api/v1/servers", token=secret)
    assert r.status == 401 and status_of(r)["message"] == "invalid token", r


def test_token_rprctl(rprd):
    p = rprd.ctl("token", "create", "deploy", "--role", "viewer", "--expires", "30d")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert len(lines) == 1, p.stdout
    secret = lines[0].strip()
    assert len(secret) >= 32
    assert secret not in p.stderr
    assert rprd.get("/api/v1/servers", token=secret).status == 200
    # the new viewer token can read through rprctl, and not write
    p2 = rprd.ctl("get", "tokens", token=secret)
    assert p2.returncode == 0, p2.stderr
    p2 = rprd.ctl("token", "create", "x", "--role", "admin", token=secret)
    assert p2.returncode == 1
    assert "this needs admin" in p2.stderr, p2.stderr
    # list: table NAME ROLE EXPIRES AGE, no secret
    p = rprd.ctl("token", "list")
    assert p.returncode == 0, p.stderr
    header = p.stdout.splitlines()[0].split()
    assert header == ["NAME", "ROLE", "EXPIRES", "AGE"], p.stdout
    rows = {l.split()[0]: l.split() for l in p.stdout.splitlines()[1:]}
    assert set(rows) == {"admin", "deploy"}, p.stdout
    assert rows["deploy"][1] == "viewer" and rows["admin"][1] == "admin"
    assert secret not in p.stdout + p.stderr
    for args in (("get", "tokens", "-o", "json"), ("get", "token", "deploy", "-o", "yaml"),
                 ("describe", "token", "deploy")):
        q = rprd.ctl(*args)
        assert q.returncode == 0, (args, q.stderr)
        assert secret not in q.stdout and "valueHash" not in q.stdout, q.stdout
    # again → error, exit 1
    p = rprd.ctl("token", "create", "deploy", "--role", "viewer")
    assert p.returncode == 1 and p.stderr.startswith("error: "), p
    assert p.stdout == ""
    # revoke
    p = rprd.ctl("token", "revoke", "deploy")
    assert p.returncode == 0, p.stderr
    assert rprd.get("/api/v1/servers", token=secret).status == 401
    p = rprd.ctl("token", "revoke", "deploy")
    assert p.returncode == 1
    assert secret not in rprd.all_stderr()
