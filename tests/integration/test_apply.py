"""POST /api/v1/apply: body forms, outcomes, revisions, generation, dry run."""

import json

from conftest import server, status_of

YAML_TWO = """\
# two objects in one stream
apiVersion: rpr/v1
kind: Server
metadata:
  name: web-1
  labels: {role: web}
spec:
  host: 127.0.0.5
  port: 2222
---
apiVersion: rpr/v1
kind: Repo
metadata:
  name: site
  namespace: team-a
spec:
  owner: acme
  name: site
"""


def outcomes(res):
    return [(i["kind"], i["namespace"], i["name"], i["outcome"]) for i in res["items"]]


def test_apply_single_object(rprd):
    rev0 = rprd.revision()
    res = rprd.apply(server("web-1"))
    assert res["dryRun"] is False
    assert outcomes(res) == [("Server", "default", "web-1", "created")]
    item = res["items"][0]
    rv = int(item["resourceVersion"])
    assert rv == rev0 + 1
    obj = item["object"]
    assert obj["apiVersion"] == "rpr/v1" and obj["kind"] == "Server"
    md = obj["metadata"]
    assert md["name"] == "web-1" and md["namespace"] == "default"
    assert md["resourceVersion"] == str(rv)
    assert md["generation"] == 1
    assert md["uid"] and md["creationTimestamp"].endswith("Z"), md
    # defaults applied and stored
    assert obj["spec"] == {"transport": "ssh", "host": "127.0.0.1", "port": 1,
                           "hostKeyPolicy": "strict", "active": True,
                           "check": {"interval": "12h", "retries": 3, "retryInterval": "5m"}}, obj
    got = rprd.obj("servers", "web-1")
    assert got == obj
    assert rprd.revision() == rv


def test_apply_outcomes_revisions_generation(rprd):
    r1 = rprd.apply([server("web-1"), server("web-2")])
    assert [i["outcome"] for i in r1["items"]] == ["created", "created"]
    rv1, rv2 = (int(i["resourceVersion"]) for i in r1["items"])
    # one transaction: both objects may share a revision or be consecutive,
    # but the revision moved by at most 2 and healthz agrees
    assert rv2 >= rv1 and rprd.revision() == rv2
    uid = r1["items"][0]["object"]["metadata"]["uid"]

    # same again: unchanged, nothing written
    rev = rprd.revision()
    r2 = rprd.apply([server("web-1"), server("web-2")])
    assert [i["outcome"] for i in r2["items"]] == ["unchanged", "unchanged"]
    assert [i["resourceVersion"] for i in r2["items"]] == [str(rv1), str(rv2)]
    assert rprd.revision() == rev

    # spec change on one: configured, new resourceVersion, generation 2
    r3 = rprd.apply([server("web-1", port=2222), server("web-2")])
    assert [i["outcome"] for i in r3["items"]] == ["configured", "unchanged"]
    o = r3["items"][0]["object"]
    assert int(o["metadata"]["resourceVersion"]) > rev
    assert o["metadata"]["generation"] == 2
    assert o["metadata"]["uid"] == uid
    assert o["spec"]["port"] == 2222
    assert o["metadata"]["creationTimestamp"] == r1["items"][0]["object"]["metadata"]["creationTimestamp"]

    # label-only change: configured, resourceVersion up, generation stays
    rv_before = int(o["metadata"]["resourceVersion"])
    r4 = rprd.apply([server("web-1", port=2222, labels={"role": "web"})])
    o4 = r4["items"][0]["object"]
    assert r4["items"][0]["outcome"] == "configured"
    assert int(o4["metadata"]["resourceVersion"]) > rv_before
    assert o4["metadata"]["generation"] == 2
    assert o4["metadata"]["labels"] == {"role": "web"}
    assert rprd.obj("servers", "web-1")["metadata"]["generation"] == 2

    # system fields in the input are ignored, not trusted
    fake = server("web-1", port=2222, labels={"role": "web"})
    fake["metadata"].update({"resourceVersion": "1", "generation": 99, "uid": "forged",
                             "creationTimestamp": "2000-01-01T00:00:00Z"})
    r5 = rprd.apply(fake)
    assert r5["items"][0]["outcome"] == "unchanged"
    o5 = rprd.obj("servers", "web-1")
    assert o5["metadata"]["uid"] == uid and o5["metadata"]["generation"] == 2


def test_apply_body_forms(rprd):
    # {"items": [...]}
    res = rprd.apply({"items": [server("a1"), server("a2")]})
    assert outcomes(res) == [("Server", "default", "a1", "created"),
                             ("Server", "default", "a2", "created")]
    # a JSON array
    res = rprd.apply([server("a3")])
    assert outcomes(res) == [("Server", "default", "a3", "created")]
    # YAML multi-document, both content types
    r = rprd.request("POST", "/api/v1/apply?objects=1", body=YAML_TWO, content_type="application/yaml")
    assert r.status == 200, r
    res = r.json()
    assert outcomes(res) == [("Server", "default", "web-1", "created"),
                             ("Repo", "team-a", "site", "created")]
    assert res["items"][0]["object"]["spec"]["port"] == 2222
    assert res["items"][1]["object"]["spec"]["branch"] == "main"
    r = rprd.request("POST", "/api/v1/apply", body=YAML_TWO, content_type="application/x-yaml")
    assert r.status == 200, r
    assert [i["outcome"] for i in r.json()["items"]] == ["unchanged", "unchanged"]
    # without ?objects=1 the answer names each object and says what happened, nothing more
    assert all("object" not in i and i["resourceVersion"] for i in r.json()["items"]), r.json()
    # JSON with a charset parameter is still JSON
    r = rprd.request("POST", "/api/v1/apply", body=json.dumps(server("a4")),
                     content_type="application/json; charset=utf-8")
    assert r.status == 200, r
    # all of them are there, sorted by namespace then name
    lst = rprd.get("/api/v1/servers").json()
    assert lst["kind"] == "List" and lst["apiVersion"] == "rpr/v1"
    assert [(i["metadata"]["namespace"], i["metadata"]["name"]) for i in lst["items"]] == \
        [("default", n) for n in ("a1", "a2", "a3", "a4", "web-1")]
    assert int(lst["metadata"]["resourceVersion"]) == rprd.revision()
    assert rprd.obj("repos", "site", ns="team-a")["spec"]["owner"] == "acme"
    assert rprd.get("/api/v1/namespaces/team-a/servers").json()["items"] == []


def test_apply_empty_list(rprd):
    rev = rprd.revision()
    r = rprd.request("POST", "/api/v1/apply", body={"items": []})
    # nothing to do is not an error, and writes nothing
    assert r.status in (200, 422), r
    if r.status == 200:
        assert r.json()["items"] == []
    assert rprd.revision() == rev


def test_dry_run_writes_nothing(rprd):
    rprd.apply([server("web-1")])
    rev = rprd.revision()
    before = rprd.obj("servers", "web-1")
    res = rprd.apply([server("web-1", port=2200), server("web-2")], dry_run=True)
    assert res["dryRun"] is True
    assert [i["outcome"] for i in res["items"]] == ["configured", "created"]
    assert res["items"][0]["object"]["spec"]["port"] == 2200
    assert res["items"][1]["object"]["spec"]["port"] == 1
    assert rprd.revision() == rev
    assert rprd.obj("servers", "web-1") == before
    assert rprd.get("/api/v1/namespaces/default/servers/web-2").status == 404
    # a dry run of a bad object fails the same way as a real one
    bad = server("web-3", port=70000)
    r = rprd.request("POST", "/api/v1/apply?dryRun=1", body=[bad])
    assert r.status == 422, r
    assert status_of(r)["details"][0]["field"] == "spec.port"
    assert rprd.revision() == rev


def test_label_selector(rprd):
    rprd.apply([server("w1", labels={"role": "web", "env": "prod"}),
                server("w2", labels={"role": "web", "env": "dev"}),
                server("d1", labels={"role": "db"}),
                server("x1", ns="other", labels={"role": "web"})])

    def names(path):
        r = rprd.get(path)
        assert r.status == 200, r
        return [i["metadata"]["name"] for i in r.json()["items"]]

    assert names("/api/v1/namespaces/default/servers?labelSelector=role%3Dweb") == ["w1", "w2"]
    assert names("/api/v1/servers?labelSelector=role%3Dweb") == ["w1", "w2", "x1"]
    assert names("/api/v1/namespaces/default/servers?labelSelector=role%3Dweb,env!%3Dprod") == ["w2"]
    assert names("/api/v1/namespaces/default/servers?labelSelector=!env") == ["d1"]
    assert names("/api/v1/namespaces/default/servers?labelSelector=env%20in%20(dev,prod)") == \
        ["w1", "w2"]
    r = rprd.get("/api/v1/servers?labelSelector=role%20in%20(web")
    assert r.status == 400, r
    msg = status_of(r)["message"]
    assert msg.startswith('invalid label selector "role in (web":'), msg
    assert msg.count("invalid label selector") == 1, msg
