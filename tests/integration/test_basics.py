"""Anonymous routes: /healthz, /api/v1/version, /metrics, and both listeners."""

import re

from conftest import metric_sum, server, status_of


def test_version(rprd):
    for via in ("tcp", "unix"):
        r = rprd.get("/api/v1/version", token=None, via=via)
        assert r.status == 200, r
        assert r.headers.get("content-type", "").startswith("application/json")
        assert r.json() == {"version": "0.1.0", "apiVersion": "rpr/v1"}


def test_healthz(rprd):
    h = rprd.health()
    assert h["status"] == "ok"
    assert h["store"] == "ok"
    assert isinstance(h["revision"], int)
    assert isinstance(h["loops"], dict) and "api" in h["loops"], h
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", h["loops"]["api"]), h
    # The admin Token is the first object written: the revision is > 0.
    rev = h["revision"]
    assert rev >= 1
    rprd.apply([server("web-1")])
    assert rprd.revision() == rev + 1
    # Over the unix socket, the same answer.
    r = rprd.get("/healthz", token=None, via="unix")
    assert r.status == 200 and r.json()["revision"] == rev + 1


def test_metrics_counters_increase(rprd):
    r = rprd.get("/metrics", token=None)
    assert r.status == 200
    assert r.headers.get("content-type", "").startswith("text/plain"), r.headers
    assert "version=0.0.4" in r.headers.get("content-type", ""), r.headers
    before = rprd.metrics()
    total0 = metric_sum(before, "rpr_http_requests_total")
    ok0 = metric_sum(before, "rpr_http_requests_total", code="200")
    nf0 = metric_sum(before, "rpr_http_requests_total", code="404")
    for _ in range(5):
        assert rprd.get("/api/v1/version", token=None).status == 200
    assert rprd.get("/api/v1/namespaces/default/servers/absent").status == 404
    rprd.apply([server("web-1"), server("web-2")])
    after = rprd.metrics()
    # 5 versions + one 404 + apply + the first /metrics itself
    assert metric_sum(after, "rpr_http_requests_total") >= total0 + 7
    assert metric_sum(after, "rpr_http_requests_total", code="200") >= ok0 + 6
    assert metric_sum(after, "rpr_http_requests_total", code="404") == nf0 + 1
    # every counter line names a route and a code
    for (name, labels), _ in after.items():
        if name == "rpr_http_requests_total":
            keys = dict(labels)
            assert "route" in keys and "code" in keys, labels
    # objects per kind, the revision, commits and watchers
    assert metric_sum(after, "rpr_objects", kind="Server") == 2
    assert metric_sum(after, "rpr_objects", kind="Token") == 1
    assert metric_sum(after, "rpr_store_revision") == rprd.revision()
    assert metric_sum(after, "rpr_store_commit_seconds_count") > \
        metric_sum(before, "rpr_store_commit_seconds_count")
    assert ("rpr_watchers", frozenset()) in after
    assert after[("rpr_watchers", frozenset())] == 0


def test_unknown_route_404(rprd):
    for path, token in (("/nope", None), ("/api/v1/gizmos", "admin"),
                        ("/api/v1/namespaces/default/gizmos/x", "admin"),
                        ("/api/v2/servers", "admin")):
        r = rprd.get(path, token=token)
        assert r.status == 404, (path, r)
        s = status_of(r)
        assert s["reason"] == "NotFound", s
    assert rprd.health()["status"] == "ok"


def test_not_found_object_names_it(rprd):
    r = rprd.get("/api/v1/namespaces/default/servers/web-9")
    assert r.status == 404
    s = status_of(r)
    assert s["reason"] == "NotFound"
    assert "web-9" in s["message"], s


def test_wrong_method_405(rprd):
    for method, path in (("DELETE", "/api/v1/apply"), ("GET", "/api/v1/apply"),
                         ("POST", "/api/v1/version"), ("DELETE", "/healthz")):
        r = rprd.request(method, path)
        assert r.status == 405, (method, path, r)
        s = status_of(r)
        assert s["reason"] == "MethodNotAllowed", s
    assert rprd.health()["status"] == "ok"


def test_startup_messages_and_port_in_use(rprd):
    err = rprd.stderr()
    assert "rprd: listening on" in err, err
    assert "rprd: admin token in %s/admin.token" % rprd.state_dir in err, err
    # A second daemon on the same TCP port fails to start: exit 1 naming it.
    import shutil
    import subprocess
    import tempfile
    from conftest import LOOPBACK_ONLY, RPRD, sanitizer_env
    other = tempfile.mkdtemp(prefix="rpr-it-")
    p = subprocess.run([RPRD, "--state-dir", other, "--listen", "unix:%s/rpr.sock" % other,
                        "--listen", "tcp:127.0.0.1:%d" % rprd.port] + LOOPBACK_ONLY,
                       capture_output=True, text=True, timeout=30, env=sanitizer_env())
    shutil.rmtree(other, ignore_errors=True)
    assert p.returncode == 1, p
    assert str(rprd.port) in p.stderr, p.stderr
    assert "ERROR: AddressSanitizer" not in p.stderr and "LeakSanitizer" not in p.stderr, p.stderr
    # the first one still serves
    assert rprd.health()["status"] == "ok"
