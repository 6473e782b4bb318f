"""PUT with optimistic concurrency, the status subresource, DELETE and
finalizers."""

from conftest import server, status_of

PATH = "/api/v1/namespaces/default/servers/web-1"


def test_put_create_update_conflict(rprd):
    r = rprd.request("PUT", PATH, body=server("web-1"))
    assert r.status == 201, r
    o = r.json()
    assert o["metadata"]["generation"] == 1 and o["spec"]["port"] == 1
    rv1 = o["metadata"]["resourceVersion"]

    # update with the right resourceVersion
    upd = server("web-1", port=2222)
    upd["metadata"]["resourceVersion"] = rv1
    r = rprd.request("PUT", PATH, body=upd)
    assert r.status == 200, r
    o2 = r.json()
    assert int(o2["metadata"]["resourceVersion"]) > int(rv1)
    assert o2["metadata"]["generation"] == 2 and o2["spec"]["port"] == 2222
    assert o2["metadata"]["uid"] == o["metadata"]["uid"]

    # stale resourceVersion: 409, nothing written
    rev = rprd.revision()
    stale = server("web-1", port=3333)
    stale["metadata"]["resourceVersion"] = rv1
    r = rprd.request("PUT", PATH, body=stale)
    assert r.status == 409, r
    s = status_of(r)
    assert s["reason"] == "Conflict"
    assert s["message"] == ("the object has been modified; please apply your changes to the "
                            "latest version"), s
    assert rprd.revision() == rev
    assert rprd.obj("servers", "web-1")["spec"]["port"] == 2222

    # no resourceVersion: unconditional
    r = rprd.request("PUT", PATH, body=server("web-1", port=4444))
    assert r.status == 200, r
    assert r.json()["metadata"]["generation"] == 3

    # a precondition on an absent object cannot hold
    ghost = server("ghost")
    ghost["metadata"]["resourceVersion"] = rv1
    r = rprd.request("PUT", "/api/v1/namespaces/default/servers/ghost", body=ghost)
    assert r.status in (404, 409), r
    assert rprd.get("/api/v1/namespaces/default/servers/ghost").status == 404

    # over the unix socket, too
    r = rprd.request("PUT", PATH, body=server("web-1", port=5555), via="unix")
    assert r.status == 200 and r.json()["spec"]["port"] == 5555, r


def test_status_subresource(rprd):
    o = rprd.apply(server("web-1"))["items"][0]["object"]
    rv, gen = int(o["metadata"]["resourceVersion"]), o["metadata"]["generation"]
    st = {"phase": "Reachable", "lastCheckTime": "2026-11-22T10:00:00Z",
          "conditions": [{"type": "Ready", "status": "True", "reason": "Reachable"}]}
    r = rprd.request("PUT", PATH + "/status", body={"status": st})
    assert r.status == 200, r
    o2 = r.json()
    assert o2["status"]["phase"] == "Reachable"
    assert int(o2["metadata"]["resourceVersion"]) > rv
    assert o2["metadata"]["generation"] == gen
    assert o2["spec"] == o["spec"]
    got = rprd.obj("servers", "web-1")
    assert got["status"]["phase"] == "Reachable" and got["metadata"]["generation"] == gen

    # a status write cannot change the spec
    full = dict(got, spec=dict(got["spec"], port=9999), status={"phase": "Unreachable"})
    r = rprd.request("PUT", PATH + "/status", body=full)
    assert r.status == 200, r
    got = rprd.obj("servers", "web-1")
    assert got["spec"]["port"] == 1 and got["status"]["phase"] == "Unreachable"
    assert got["metadata"]["generation"] == gen

    # apply writes spec only: status survives, and an unchanged apply is unchanged
    res = rprd.apply(server("web-1"))
    assert res["items"][0]["outcome"] == "unchanged"
    res = rprd.apply(server("web-1", port=2222))
    assert res["items"][0]["outcome"] == "configured"
    got = rprd.obj("servers", "web-1")
    assert got["status"]["phase"] == "Unreachable" and got["metadata"]["generation"] == gen + 1

    # precondition on status too
    stale = {"metadata": {"resourceVersion": str(rv)}, "status": {"phase": "Reachable"}}
    r = rprd.request("PUT", PATH + "/status", body=stale)
    assert r.status == 409, r
    assert status_of(r)["reason"] == "Conflict"
    # absent object
    r = rprd.request("PUT", "/api/v1/namespaces/default/servers/nope/status",
                     body={"status": {"phase": "Reachable"}})
    assert r.status == 404, r
    # viewers may not write status
    t = rprd.request("POST", "/api/v1/tokens", body={"name": "v", "role": "viewer"}).json()["token"]
    r = rprd.request("PUT", PATH + "/status", body={"status": {"phase": "Reachable"}}, token=t)
    assert r.status == 403, r
    assert rprd.obj("servers", "web-1")["status"]["phase"] == "Unreachable"


def test_delete(rprd):
    rprd.apply(server("web-1"))
    r = rprd.request("DELETE", PATH)
    assert r.status == 200, r
    assert r.json()["metadata"]["name"] == "web-1" and r.json()["kind"] == "Server"
    assert rprd.get(PATH).status == 404
    r = rprd.request("DELETE", PATH)
    assert r.status == 404, r
    assert status_of(r)["reason"] == "NotFound" and "web-1" in status_of(r)["message"]
    # re-created: a new uid, generation 1
    o = rprd.apply(server("web-1"))["items"][0]
    assert o["outcome"] == "created" and o["object"]["metadata"]["generation"] == 1


def test_finalizers(rprd):
    body = server("web-1")
    body["metadata"]["finalizers"] = ["rpr.dev/test"]
    r = rprd.request("PUT", PATH, body=body)
    assert r.status == 201, r
    assert r.json()["metadata"]["finalizers"] == ["rpr.dev/test"]

    # DELETE only marks it
    r = rprd.request("DELETE", PATH)
    assert r.status == 200, r
    o = r.json()
    assert o["metadata"].get("deletionTimestamp", "").endswith("Z"), o
    got = rprd.obj("servers", "web-1")
    assert got["metadata"]["deletionTimestamp"] == o["metadata"]["deletionTimestamp"]
    assert got["metadata"]["finalizers"] == ["rpr.dev/test"]
    # a second DELETE does not move the timestamp
    r = rprd.request("DELETE", PATH)
    assert r.status == 200, r
    assert rprd.obj("servers", "web-1")["metadata"]["deletionTimestamp"] == \
        o["metadata"]["deletionTimestamp"]

    # removing the finalizer deletes it
    got = rprd.obj("servers", "web-1")
    got["metadata"]["finalizers"] = []
    r = rprd.request("PUT", PATH, body=got)
    assert r.status in (200, 201), r
    assert rprd.get(PATH).status == 404
    assert rprd.get("/api/v1/servers").json()["items"] == []
