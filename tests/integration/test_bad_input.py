"""Bad input, case by case: the exact code, the Status reason, a message or
detail that names the field and the object; afterwards nothing was written
and rprd still serves.

These share one daemon (started with --max-body 65536)."""

import copy
import json
import re

import pytest

from conftest import server, status_of


def srv(**over):
    o = server("web-1")
    for path, v in over.items():
        cur = o
        keys = path.split("__")
        for k in keys[:-1]:
            cur = cur.setdefault(k, {})
        if v is DEL:
            cur.pop(keys[-1], None)
        else:
            cur[keys[-1]] = v
    return o


DEL = object()

RUN = {"apiVersion": "rpr/v1", "kind": "Run", "metadata": {"name": "r1"},
       "spec": {"owner": {"kind": "Binding", "name": "b"}}}
EVENT = {"apiVersion": "rpr/v1", "kind": "Event", "metadata": {"name": "e1"},
         "spec": {"involvedObject": {"kind": "Server", "name": "web-1"}, "type": "Normal",
                  "reason": "Checked"}}
TOKEN_BAD_DATE = {"apiVersion": "rpr/v1", "kind": "Token", "metadata": {"name": "gh"},
                  "spec": {"type": "github", "value": "x", "expires": "2027-13-45"}}

# (id, body, index, object, field, message part)
INVALID = [
    ("wrong-apiVersion", srv(apiVersion="rpr/v2"), 0, "Server/web-1", "apiVersion",
     'unknown apiVersion "rpr/v2" (expected rpr/v1)'),
    ("missing-apiVersion", srv(apiVersion=DEL), 0, "Server/web-1", "apiVersion", "is required"),
    ("unknown-kind", srv(kind="Gizmo"), 0, "Gizmo/web-1", "kind", 'unknown kind "Gizmo"'),
    ("kind-lowercase", srv(kind="server"), 0, "server/web-1", "kind", 'unknown kind "server"'),
    ("missing-name", srv(metadata={}), 0, "Server/<unnamed>", "metadata.name", "is required"),
    ("bad-dns-name", srv(metadata={"name": "Web_1"}), 0, "Server/Web_1", "metadata.name",
     "DNS-1123"),
    ("long-name", srv(metadata={"name": "a" * 64}), 0, "Server/" + "a" * 64, "metadata.name",
     "DNS-1123"),
    ("bad-namespace", srv(metadata={"name": "web-1", "namespace": "Team A"}), 0, "Server/web-1",
     "metadata.namespace", "DNS-1123"),
    ("bad-label", srv(metadata={"name": "web-1", "labels": {"role": "has space"}}), 0,
     "Server/web-1", "metadata.labels.role", "must be at most 63"),
    ("unknown-field", srv(spec__hots="x"), 0, "Server/web-1", "spec.hots", 'unknown field "hots"'),
    ("unknown-top-field", srv(extra=1), 0, "Server/web-1", "extra", 'unknown field "extra"'),
    ("unknown-nested-field", srv(spec__check={"intervall": "1h"}), 0, "Server/web-1",
     "spec.check.intervall", 'unknown field "intervall"'),
    ("wrong-type", srv(spec__port="abc"), 0, "Server/web-1", "spec.port", '"abc"'),
    ("wrong-type-bool", srv(spec__active="yes"), 0, "Server/web-1", "spec.active", "boolean"),
    ("port-out-of-range", srv(spec__port=70000), 0, "Server/web-1", "spec.port", "70000"),
    ("port-zero", srv(spec__port=0), 0, "Server/web-1", "spec.port", "1..65535 (got 0)"),
    ("bad-enum", srv(spec__transport="telnet"), 0, "Server/web-1", "spec.transport",
     "must be one of: ssh, local, agent"),
    ("bad-duration", srv(spec__check={"interval": "5 minutes"}), 0, "Server/web-1",
     "spec.check.interval", "must be a duration"),
    ("duration-too-short", srv(spec__check={"interval": "10s"}), 0, "Server/web-1",
     "spec.check.interval", "at least 1m"),
    ("bad-date", TOKEN_BAD_DATE, 0, "Token/gh", "spec.expires", "must be a date"),
    ("spec-not-object", srv(spec=[1]), 0, "Server/web-1", "spec", "must be an object"),
    ("run-refused", RUN, 0, "Run/r1", None, "Run"),
    ("event-refused", EVENT, 0, "Event/e1", None, "Event"),
]


@pytest.fixture
def d(shared_rprd):
    """The shared daemon, with a check afterwards that nothing was written."""
    rev = shared_rprd.revision()
    servers = shared_rprd.get("/api/v1/servers").json()["items"]
    yield shared_rprd
    h = shared_rprd.health()
    assert h["status"] == "ok"
    assert h["revision"] == rev, "a refused request wrote something"
    assert shared_rprd.get("/api/v1/servers").json()["items"] == servers
    assert shared_rprd.proc.poll() is None, "rprd died"


def find_detail(s, field, index=None):
    for det in s.get("details") or []:
        if det.get("field") == field and (index is None or det.get("index") == index):
            return det
    raise AssertionError("no detail for field %r in %s" % (field, json.dumps(s, indent=1)))


@pytest.mark.parametrize("case", INVALID, ids=[c[0] for c in INVALID])
def test_invalid_object_422(d, case):
    _, body, index, obj, field, msg = case
    for dry in ("", "?dryRun=1"):
        r = d.request("POST", "/api/v1/apply" + dry, body=[copy.deepcopy(body)])
        assert r.status == 422, r
        s = status_of(r)
        assert s["reason"] == "Invalid", s
        assert s["details"], s
        if field is None:
            det = s["details"][0]
            assert det["field"] in ("kind", None, ""), det
        else:
            det = find_detail(s, field)
        assert det["index"] == index, det
        assert det["object"] == obj, det
        assert msg in det["message"], det
        # the summary message says something useful too
        assert s["message"], s


def test_every_problem_reported_with_index(d):
    body = {"items": [server("ok-1"),
                      srv(spec__port=70000, spec__transport="telnet"),
                      server("ok-2"),
                      srv(metadata={"name": "web-3"}, spec__bogus=1)]}
    r = d.request("POST", "/api/v1/apply", body=body)
    assert r.status == 422, r
    s = status_of(r)
    got = sorted((x["index"], x["object"], x["field"]) for x in s["details"])
    assert got == [(1, "Server/web-1", "spec.port"), (1, "Server/web-1", "spec.transport"),
                   (3, "Server/web-3", "spec.bogus")], s
    assert d.get("/api/v1/namespaces/default/servers/ok-1").status == 404


def test_duplicate_objects(d):
    body = [server("web-1"), server("web-2"), server("web-1", port=2222)]
    r = d.request("POST", "/api/v1/apply", body=body)
    assert r.status == 422, r
    s = status_of(r)
    assert s["reason"] == "Invalid"
    dups = [x for x in s["details"] if "duplicate" in x["message"]]
    assert len(dups) == 1, s
    assert dups[0]["index"] == 2 and dups[0]["object"] == "Server/web-1"
    assert dups[0]["message"] == "duplicate object: Server/web-1 also at index 0", dups
    # same name in another namespace or kind is no duplicate
    r = d.request("POST", "/api/v1/apply?dryRun=1",
                  body=[server("web-1"), server("web-1", ns="other"),
                        {"apiVersion": "rpr/v1", "kind": "Repo", "metadata": {"name": "web-1"},
                         "spec": {"owner": "a", "name": "b"}}])
    assert r.status == 200, r


def test_invalid_json_400(d):
    body = '{"items": [\n  {"apiVersion": "rpr/v1",\n   "kind": }\n]}'
    r = d.request("POST", "/api/v1/apply", body=body, content_type="application/json")
    assert r.status == 400, r
    s = status_of(r)
    assert s["reason"] == "BadRequest"
    assert re.match(r"invalid JSON at line 3 column \d+: ", s["message"]), s
    # not an object, array or items
    for bad in ('"just a string"', "42", '{"items": 5}'):
        r = d.request("POST", "/api/v1/apply", body=bad)
        assert r.status in (400, 422), (bad, r)
        assert status_of(r)["reason"] in ("BadRequest", "Invalid")
    # empty body
    r = d.request("POST", "/api/v1/apply", body=b"", content_type="application/json")
    assert r.status == 400, r
    assert status_of(r)["reason"] == "BadRequest"


def test_invalid_yaml_400(d):
    body = "apiVersion: rpr/v1\nkind: Server\nmetadata:\n  name: web-1\n spec: [\n"
    r = d.request("POST", "/api/v1/apply", body=body, content_type="application/yaml")
    assert r.status == 400, r
    s = status_of(r)
    assert s["reason"] == "BadRequest", s
    assert re.search(r"\b5\b", s["message"]) or re.search(r"line 5", json.dumps(s)), s
    # duplicate keys are an error too
    body = "apiVersion: rpr/v1\nkind: Server\nkind: Repo\nmetadata: {name: web-1}\n"
    r = d.request("POST", "/api/v1/apply", body=body, content_type="application/yaml")
    assert r.status in (400, 422), r
    assert "kind" in r.text and "3" in r.text, r.text


def test_yaml_invalid_object_details(d):
    body = ("apiVersion: rpr/v1\nkind: Server\nmetadata: {name: web-1}\nspec: {port: 1}\n---\n"
            "apiVersion: rpr/v1\nkind: Server\nmetadata: {name: web-2}\nspec: {port: 99999}\n")
    r = d.request("POST", "/api/v1/apply", body=body, content_type="application/yaml")
    assert r.status == 422, r
    det = find_detail(status_of(r), "spec.port")
    assert det["index"] == 1 and det["object"] == "Server/web-2", det


def test_oversized_body_413(d):
    pad = "x" * 70000
    body = json.dumps([dict(server("web-1"), metadata={"name": "web-1",
                                                       "annotations": {"pad": pad}})])
    r = d.request("POST", "/api/v1/apply", body=body)
    assert r.status == 413, r
    s = status_of(r)
    assert s["reason"] == "RequestEntityTooLarge", s
    assert "65536" in s["message"], s


def test_wrong_content_type_415(d):
    body = json.dumps([server("web-1")])
    for ct in ("text/plain", "application/x-www-form-urlencoded", "application/xml"):
        r = d.request("POST", "/api/v1/apply", body=body, content_type=ct)
        assert r.status == 415, (ct, r)
        s = status_of(r)
        assert s["reason"] == "UnsupportedMediaType", s
        assert ct.split(";")[0] in s["message"], s


def test_unknown_route_and_method(d):
    r = d.get("/api/v1/namespaces/default/gizmos")
    assert r.status == 404 and status_of(r)["reason"] == "NotFound"
    assert "gizmos" in status_of(r)["message"]
    r = d.request("PATCH", "/api/v1/namespaces/default/servers/web-1",
                  body={"spec": {"port": 1}})
    assert r.status == 405 and status_of(r)["reason"] == "MethodNotAllowed", r
    r = d.request("DELETE", "/api/v1/apply")
    assert r.status == 405 and status_of(r)["reason"] == "MethodNotAllowed", r


def test_put_mismatch_400(d):
    r = d.request("PUT", "/api/v1/namespaces/default/servers/web-1", body=server("web-2"))
    assert r.status == 400, r
    s = status_of(r)
    assert s["reason"] == "BadRequest"
    assert "web-2" in s["message"] and "web-1" in s["message"], s
    r = d.request("PUT", "/api/v1/namespaces/default/servers/web-1",
                  body=server("web-1", ns="other"))
    assert r.status == 400, r
    s = status_of(r)
    assert "other" in s["message"] and "default" in s["message"], s
    # kind must match the URL's plural too
    repo = {"apiVersion": "rpr/v1", "kind": "Repo", "metadata": {"name": "web-1"},
            "spec": {"owner": "a", "name": "b"}}
    r = d.request("PUT", "/api/v1/namespaces/default/servers/web-1", body=repo)
    assert r.status == 400, r
    assert "Repo" in status_of(r)["message"]
    # invalid object by PUT → 422 like apply
    r = d.request("PUT", "/api/v1/namespaces/default/servers/web-1",
                  body=server("web-1", port=70000))
    assert r.status == 422, r
    assert find_detail(status_of(r), "spec.port")["object"] == "Server/web-1"
    # Run objects cannot be PUT by users either
    r = d.request("PUT", "/api/v1/namespaces/default/runs/r1", body=RUN)
    assert r.status in (403, 422), r
    assert d.get("/api/v1/namespaces/default/runs/r1").status == 404
