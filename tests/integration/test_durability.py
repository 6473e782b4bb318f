"""Crash safety: an acknowledged write survives kill -9; the revision keeps
going up after a restart; the admin token survives; a missing token file is
made anew."""

import os

from conftest import server


def snapshot(d):
    out = {}
    for plural in ("servers", "repos", "tokens"):
        r = d.get("/api/v1/" + plural)
        assert r.status == 200, r
        for o in r.json()["items"]:
            md = o["metadata"]
            out[(o["kind"], md["namespace"], md["name"])] = o
    return out


def test_kill9_keeps_acknowledged_writes(rprd_factory):
    d = rprd_factory()
    token = d.token
    d.apply([server("web-%d" % i) for i in range(20)])
    d.apply([server("web-3", port=2222), server("web-4", ns="team-a"),
             {"apiVersion": "rpr/v1", "kind": "Repo", "metadata": {"name": "site"},
              "spec": {"owner": "acme", "name": "site"}}])
    d.request("DELETE", "/api/v1/namespaces/default/servers/web-7")
    r = d.request("PUT", "/api/v1/namespaces/default/servers/web-1/status",
                  body={"status": {"phase": "Reachable"}})
    assert r.status == 200
    # the last write, acknowledged just before the crash
    last = d.apply([server("web-last")])["items"][0]
    rev = d.revision()
    assert int(last["resourceVersion"]) == rev
    before = snapshot(d)
    d.kill()

    d.start()
    assert d.token == token, "admin token changed across a restart"
    assert d.revision() == rev
    after = snapshot(d)
    assert after == before
    assert ("Server", "default", "web-7") not in after
    assert after[("Server", "default", "web-1")]["status"]["phase"] == "Reachable"
    assert after[("Server", "default", "web-3")]["metadata"]["generation"] == 2
    # the old token still works, and the revision continues upward
    r = d.apply([server("web-new")])["items"][0]
    assert int(r["resourceVersion"]) == rev + 1
    assert d.apply([server("web-last")])["items"][0]["outcome"] == "unchanged"

    # and once more with a clean stop
    rev2 = d.revision()
    d.restart()
    assert d.revision() == rev2 and d.token == token
    assert d.obj("servers", "web-new")["metadata"]["resourceVersion"] == str(rev + 1)


def test_kill9_during_writes(rprd_factory):
    """Every write acknowledged before the crash is there afterwards."""
    d = rprd_factory()
    acked = {}
    for i in range(40):
        res = d.apply([server("w-%d" % i, port=100 + i)])
        acked["w-%d" % i] = res["items"][0]["resourceVersion"]
    d.kill()
    d.start()
    for name, rv in acked.items():
        o = d.obj("servers", name)
        assert o["metadata"]["resourceVersion"] == rv, (name, o)


def test_admin_token_file_missing_is_made_anew(rprd_factory):
    d = rprd_factory()
    old = d.token
    p = os.path.join(d.state_dir, "admin.token")
    d.stop()
    os.unlink(p)
    d.start()
    assert os.path.exists(p)
    assert os.stat(p).st_mode & 0o777 == 0o600
    assert d.token != old and len(d.token) == 32
    assert d.get("/api/v1/servers").status == 200
    r = d.get("/api/v1/servers", token=old)
    assert r.status == 401, r
