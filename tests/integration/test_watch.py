"""Watch streams: initial ADDED list, live MODIFIED/DELETED, resume from a
resourceVersion, 410 Gone when the revision is older than what the feed
keeps, and an open watch that sees every event of one apply larger than
that (20,000 objects)."""

import subprocess
import time

from conftest import RPRCTL, RPRD, metric_sum, sanitizer_env, server, status_of

WATCH = "/api/v1/namespaces/default/servers?watch=1"


def test_watch_initial_then_changes(rprd):
    rprd.apply([server("web-1"), server("web-2"), server("other", ns="team-a")])
    w = rprd.watch(WATCH)
    try:
        assert w.status == 200
        assert w.resp.getheader("Content-Type", "").startswith("application/json")
        first = w.events(2)
        assert [(e["type"], e["object"]["metadata"]["name"]) for e in first] == \
            [("ADDED", "web-1"), ("ADDED", "web-2")]
        assert first[0]["object"]["kind"] == "Server"
        assert metric_sum(rprd.metrics(), "rpr_watchers") == 1

        res = rprd.apply([server("web-1", port=2222)])
        rv = res["items"][0]["resourceVersion"]
        e = w.next()
        assert e["type"] == "MODIFIED" and e["object"]["metadata"]["name"] == "web-1", e
        assert e["object"]["spec"]["port"] == 2222
        assert e["object"]["metadata"]["resourceVersion"] == rv

        # other namespaces and kinds do not show up in this watch
        rprd.apply([server("x", ns="team-a"),
                    {"apiVersion": "rpr/v1", "kind": "Repo", "metadata": {"name": "r"},
                     "spec": {"owner": "a", "name": "b"}}])
        rprd.apply([server("web-3")])
        e = w.next()
        assert (e["type"], e["object"]["metadata"]["name"]) == ("ADDED", "web-3"), e

        assert rprd.request("DELETE", "/api/v1/namespaces/default/servers/web-2").status == 200
        e = w.next()
        assert (e["type"], e["object"]["metadata"]["name"]) == ("DELETED", "web-2"), e

        # status writes are changes too
        r = rprd.request("PUT", "/api/v1/namespaces/default/servers/web-1/status",
                         body={"status": {"phase": "Reachable"}})
        assert r.status == 200
        e = w.next()
        assert e["type"] == "MODIFIED" and e["object"]["status"]["phase"] == "Reachable", e
    finally:
        w.close()


def test_watch_all_namespaces_and_selector(rprd):
    rprd.apply([server("a", labels={"role": "web"}), server("b"),
                server("c", ns="team-a", labels={"role": "web"})])
    w = rprd.watch("/api/v1/servers?watch=1&labelSelector=role%3Dweb")
    try:
        evs = w.events(2)
        assert sorted((e["object"]["metadata"]["namespace"], e["object"]["metadata"]["name"])
                      for e in evs) == [("default", "a"), ("team-a", "c")]
        rprd.apply([server("b", port=1)])  # no label: not seen
        rprd.apply([server("d", ns="team-b", labels={"role": "web"})])
        e = w.next()
        assert (e["type"], e["object"]["metadata"]["name"]) == ("ADDED", "d"), e
    finally:
        w.close()


def test_watch_resume_from_revision(rprd):
    r1 = rprd.apply([server("web-1")])
    rv1 = int(r1["items"][0]["resourceVersion"])
    rprd.apply([server("web-1", port=2)])
    rprd.apply([server("web-2")])
    rprd.request("DELETE", "/api/v1/namespaces/default/servers/web-1")
    w = rprd.watch(WATCH + "&resourceVersion=%d" % rv1)
    try:
        assert w.status == 200
        evs = w.events(3)
        assert [(e["type"], e["object"]["metadata"]["name"]) for e in evs] == \
            [("MODIFIED", "web-1"), ("ADDED", "web-2"), ("DELETED", "web-1")], evs
        # (a DELETED event carries the object as it was before the delete)
        revs = [int(e["object"]["metadata"]["resourceVersion"]) for e in evs[:2]]
        assert revs[0] > rv1 and revs[1] > revs[0], revs
        # then live
        rprd.apply([server("web-3")])
        e = w.next()
        assert (e["type"], e["object"]["metadata"]["name"]) == ("ADDED", "web-3")
    finally:
        w.close()
    # from the current revision: nothing old, only new
    now = rprd.revision()
    w = rprd.watch(WATCH + "&resourceVersion=%d" % now)
    try:
        rprd.apply([server("web-4")])
        e = w.next()
        assert (e["type"], e["object"]["metadata"]["name"]) == ("ADDED", "web-4"), e
    finally:
        w.close()
    # viewer tokens may watch; no token may not
    w = rprd.watch(WATCH, token=None)
    try:
        assert w.status == 401
    finally:
        w.close()
    r = rprd.get(WATCH + "&resourceVersion=abc")
    assert r.status == 400, r


def test_watch_too_old_410(rprd):
    # > 8192 changes (the ring) in three big applies, then watch from 1.
    n = 3000
    for gen in range(3):
        objs = [server("s-%d" % i, port=1 + gen) for i in range(n)]
        r = rprd.request("POST", "/api/v1/apply", body={"items": objs}, timeout=120)
        assert r.status == 200, r
    assert rprd.revision() > 9000
    w = rprd.watch("/api/v1/namespaces/default/servers?watch=1&resourceVersion=1")
    try:
        if w.status == 410:
            s = w.body_json()
            assert s["kind"] == "Status" and s["reason"] == "Gone" and s["code"] == 410, s
        else:
            # the contract's other form: an ERROR line, then the stream ends
            assert w.status == 200
            e = w.next()
            assert e["type"] == "ERROR" and e["object"]["code"] == 410, e
            assert e["object"]["reason"] == "Gone"
    finally:
        w.close()
    # a recent revision still resumes
    rev = rprd.revision()
    w = rprd.watch(WATCH + "&resourceVersion=%d" % (rev - 5))
    try:
        evs = w.events(5)
        assert all(e["type"] == "MODIFIED" for e in evs), evs
    finally:
        w.close()
    assert len(rprd.get("/api/v1/servers", timeout=60).json()["items"]) == n


def test_an_open_watch_sees_every_event_of_a_large_apply(rprd):
    # 20,000 objects in one transaction: more than twice what the feed keeps
    # for resuming (8,192), which used to cut every open watch off with 410.
    n = 20000
    w = rprd.watch(WATCH, timeout=60)
    try:
        assert w.status == 200
        objs = [server("bulk-%05d" % i) for i in range(n)]
        r = rprd.request("POST", "/api/v1/apply", body={"items": objs}, timeout=120)
        assert r.status == 200, r
        seen = set()
        for _ in range(n):
            e = w.next()
            assert e["type"] == "ADDED", e
            seen.add(e["object"]["metadata"]["name"])
        assert seen == {o["metadata"]["name"] for o in objs}
        rprd.apply([server("after")])
        e = w.next()
        assert (e["type"], e["object"]["metadata"]["name"]) == ("ADDED", "after"), e
    finally:
        w.close()


def test_rprctl_watch_that_falls_behind_lists_again(rprd_factory):
    # A backlog as small as it goes, and one apply of more than it: the
    # watch falls behind (410), and rprctl lists again and goes on.
    d = rprd_factory(extra_args=["--watch-backlog", "8192"])
    argv = [RPRCTL, "--server", d.url, "--token", d.token, "get", "servers", "-w", "-o", "name"]
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=sanitizer_env())
    try:
        time.sleep(1)
        objs = [server("bulk-%05d" % i) for i in range(20000)]
        r = d.request("POST", "/api/v1/apply", body={"items": objs}, timeout=120)
        assert r.status == 200, r
        d.apply([server("after")])
        deadline = time.time() + 60
        names = set()
        for line in p.stdout:
            names.add(line.strip())
            if "server/after" in names and len(names) >= 20001 or time.time() > deadline:
                break
        assert "server/after" in names and "server/bulk-00000" in names and "server/bulk-19999" in names, \
            len(names)
        assert p.poll() is None, "rprctl get -w stopped"
    finally:
        p.terminate()
        _, err = p.communicate(timeout=30)
    assert "the watch fell behind rprd's changes; listing again" in err, err


def test_rprd_refuses_a_backlog_too_small():
    p = subprocess.run([RPRD, "--watch-backlog", "100", "--version"], capture_output=True, text=True,
                       timeout=30, env=sanitizer_env())
    assert p.returncode == 1 and "--watch-backlog" in p.stderr and "8192" in p.stderr, p.stderr
