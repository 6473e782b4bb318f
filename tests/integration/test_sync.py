"""Syncs end to end: a real rprd (the sanitizer build) applying the manifests
of a real git repository (file:// and a real `git daemon` on loopback).

A revision is validated whole and applied in one store commit or not at all:
first sync, a one-object change, prune (and not without it), an invalid file
among 50 (every error with file:line:col, nothing applied), unknown kinds,
an emptied directory, drift (edited and deleted objects put back), manual
apply of a managed object refused, two Syncs claiming one object, suspend,
dependsOn, kill -9 during a 2,000-object sync, a push webhook, inline Token
secrets refused, and the namespace a Sync may write into.
"""

import hashlib
import hmac
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid

import pytest

from conftest import free_port, metric_sum
from test_repos import GitRepo, git

CONTROLLERS = True
WAIT = 30


class ConfigRepo(GitRepo):
    """test_repos' bare repository and work tree, with files to write."""

    def __init__(self, root):
        super().__init__(root, "config")

    def write(self, path, text):
        full = os.path.join(self.work, path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "w") as f:
            f.write(text)

    def remove(self, path):
        git("rm", "-q", "-r", path, cwd=self.work)

    def push(self, message="change"):
        git("add", "-A", cwd=self.work)
        git("commit", "-q", "--allow-empty", "-m", message, cwd=self.work)
        git("push", "-q", "origin", "HEAD:refs/heads/main", cwd=self.work)
        return git("rev-parse", "HEAD", cwd=self.work)


@pytest.fixture
def cfg():
    root = tempfile.mkdtemp(prefix="rpr-sync-")
    yield ConfigRepo(root)
    shutil.rmtree(root, ignore_errors=True)


# ---- helpers ------------------------------------------------------------------------

def server_yaml(name, port=1, labels=None, ns=None):
    meta = {"name": name}
    if ns:
        meta["namespace"] = ns
    if labels:
        meta["labels"] = labels
    return json.dumps({"apiVersion": "rpr/v1", "kind": "Server", "metadata": meta,
                       "spec": {"host": "127.0.0.1", "port": port, "user": "deploy"}})


def repo_obj(url, name="config", ns="default"):
    return {"apiVersion": "rpr/v1", "kind": "Repo", "metadata": {"name": name, "namespace": ns},
            "spec": {"provider": "git", "url": url, "interval": "1h"}}


def sync_obj(name="fleet", ns="default", **spec):
    s = {"repo": "config", "path": "clusters/prod", "interval": "1h"}
    s.update(spec)
    return {"apiVersion": "rpr/v1", "kind": "Sync", "metadata": {"name": name, "namespace": ns}, "spec": s}


def ready(obj):
    for c in obj.get("status", {}).get("conditions", []):
        if c.get("type") == "Ready":
            return c
    return {}


def get(d, plural, name, ns="default"):
    r = d.get("/api/v1/namespaces/%s/%s/%s" % (ns, plural, name))
    return r.json() if r.status == 200 else None


def wait_for(d, what, pred, timeout=WAIT, name="fleet", ns="default"):
    deadline = time.time() + timeout
    obj = None
    while time.time() < deadline:
        obj = get(d, "syncs", name, ns)
        if obj and pred(obj):
            return obj
        time.sleep(0.05)
    raise AssertionError("sync %s: %s not seen within %ds; status: %s\nrprd stderr:\n%s"
                         % (name, what, timeout, json.dumps((obj or {}).get("status"), indent=1),
                            d.stderr()[-4000:]))


def wait_applied(d, sha, name="fleet", ns="default", timeout=WAIT):
    return wait_for(d, "applied at " + sha,
                    lambda o: o.get("status", {}).get("lastAppliedRevision") == "main@sha1:" + sha,
                    timeout, name, ns)


def wait_reason(d, reason, name="fleet", ns="default", timeout=WAIT):
    return wait_for(d, "Ready reason " + reason, lambda o: ready(o).get("reason") == reason, timeout, name, ns)


def check(d, name="config", ns="default"):
    r = d.request("POST", "/api/v1/namespaces/%s/repos/%s/check" % (ns, name))
    assert r.status == 200, r


def servers(d, ns="default"):
    r = d.get("/api/v1/namespaces/%s/servers" % ns)
    assert r.status == 200, r
    return {o["metadata"]["name"]: o for o in r.json()["items"]}


def start(d, cfg, **spec):
    d.apply([repo_obj(cfg.url), sync_obj(**spec)])


# ---- first sync, changes, prune --------------------------------------------------------

def test_first_sync_creates_everything_managed(rprd, cfg):
    for i in range(5):
        cfg.write("clusters/prod/s%d.yaml" % i, server_yaml("web-%d" % i, labels={"n": str(i)}))
    cfg.write("clusters/prod/sub/more.yml", server_yaml("deep"))
    cfg.write("clusters/prod/README.md", "not a manifest")
    cfg.write("elsewhere/other.yaml", server_yaml("not-synced"))
    sha = cfg.push("first")
    start(rprd, cfg)
    o = wait_applied(rprd, sha)
    st = o["status"]
    assert ready(o)["status"] == "True" and ready(o)["reason"] == "Applied"
    assert st["objects"] == 6
    assert sorted(e["name"] for e in st["inventory"]) == ["deep"] + ["web-%d" % i for i in range(5)]
    have = servers(rprd)
    assert "not-synced" not in have
    for name in ["deep"] + ["web-%d" % i for i in range(5)]:
        assert have[name]["metadata"]["managedBy"] == "sync/fleet"
    assert st["history"][0]["revision"] == "main@sha1:" + sha
    assert st["history"][0]["created"] == 6 and st["history"][0]["result"] == "Applied"
    assert "rpr/sync" in o["metadata"]["finalizers"]
    m = rprd.metrics()
    assert metric_sum(m, "rpr_syncs_total", result="applied") >= 1
    assert metric_sum(m, "rpr_sync_duration_seconds_count") >= 1


def test_one_changed_object_is_the_only_write(rprd, cfg):
    for i in range(10):
        cfg.write("clusters/prod/s%d.yaml" % i, server_yaml("web-%d" % i))
    sha = cfg.push("first")
    start(rprd, cfg)
    wait_applied(rprd, sha)
    # Generation moves only when a spec is written (status writes of the
    # Server controller move resourceVersion, not generation).
    before = {n: o["metadata"]["generation"] for n, o in servers(rprd).items()}
    cfg.write("clusters/prod/s3.yaml", server_yaml("web-3", port=2))
    sha2 = cfg.push("one change")
    check(rprd)
    o = wait_applied(rprd, sha2)
    after = servers(rprd)
    assert after["web-3"]["spec"]["port"] == 2
    changed = [n for n in before if after[n]["metadata"]["generation"] != before[n]]
    assert changed == ["web-3"]
    h = o["status"]["history"]
    assert h[0]["updated"] == 1 and h[0]["created"] == 0 and h[0]["deleted"] == 0
    assert h[1]["revision"] == "main@sha1:" + sha


def test_removed_file_is_pruned(rprd, cfg):
    cfg.write("clusters/prod/a.yaml", server_yaml("a"))
    cfg.write("clusters/prod/b.yaml", server_yaml("b"))
    cfg.write("clusters/prod/c.yaml", server_yaml("c"))
    sha = cfg.push()
    start(rprd, cfg)
    wait_applied(rprd, sha)
    cfg.remove("clusters/prod/b.yaml")
    sha2 = cfg.push("remove b")
    check(rprd)
    o = wait_applied(rprd, sha2)
    assert sorted(servers(rprd)) == ["a", "c"]
    assert o["status"]["history"][0]["deleted"] == 1
    assert sorted(e["name"] for e in o["status"]["inventory"]) == ["a", "c"]


def test_no_prune_keeps_objects_and_lets_them_go(rprd, cfg):
    cfg.write("clusters/prod/a.yaml", server_yaml("a"))
    cfg.write("clusters/prod/b.yaml", server_yaml("b"))
    sha = cfg.push()
    start(rprd, cfg, prune=False)
    wait_applied(rprd, sha)
    cfg.remove("clusters/prod/b.yaml")
    sha2 = cfg.push("remove b")
    check(rprd)
    wait_applied(rprd, sha2)
    have = servers(rprd)
    assert sorted(have) == ["a", "b"]
    assert "managedBy" not in have["b"]["metadata"]
    assert have["a"]["metadata"]["managedBy"] == "sync/fleet"


def test_prune_disabled_annotation_keeps_one(rprd, cfg):
    keep = json.loads(server_yaml("keep"))
    keep["metadata"]["annotations"] = {"rpr/prune": "disabled"}
    cfg.write("clusters/prod/keep.yaml", json.dumps(keep))
    cfg.write("clusters/prod/gone.yaml", server_yaml("gone"))
    cfg.write("clusters/prod/stay.yaml", server_yaml("stay"))
    sha = cfg.push()
    start(rprd, cfg)
    wait_applied(rprd, sha)
    cfg.remove("clusters/prod/keep.yaml")
    cfg.remove("clusters/prod/gone.yaml")
    sha2 = cfg.push()
    check(rprd)
    wait_applied(rprd, sha2)
    assert sorted(servers(rprd)) == ["keep", "stay"]


# ---- validation -----------------------------------------------------------------------

def test_invalid_file_among_50_applies_nothing_and_lists_every_error(rprd, cfg):
    cfg.write("clusters/prod/ok.yaml", server_yaml("first"))
    sha = cfg.push()
    start(rprd, cfg)
    wait_applied(rprd, sha)
    for i in range(50):
        cfg.write("clusters/prod/s%02d.yaml" % i, server_yaml("web-%d" % i))
    cfg.write("clusters/prod/s07.yaml",
              "apiVersion: rpr/v1\nkind: Server\nmetadata:\n  name: web-7\nspec:\n  host: 127.0.0.1\n"
              "  port: abc\n  colour: blue\n")
    cfg.write("clusters/prod/zz/broken.yaml", "kind: Server\nmetadata: {name: x\n")
    sha2 = cfg.push("bad")
    check(rprd)
    o = wait_for(rprd, "ValidationFailed at " + sha2,
                 lambda o: o.get("status", {}).get("lastAttemptedRevision") == "main@sha1:" + sha2)
    assert ready(o)["reason"] == "ValidationFailed", o["status"]
    assert o["status"]["lastAppliedRevision"] == "main@sha1:" + sha
    errors = o["status"]["errors"]
    where = "config@%s:clusters/prod/" % sha2[:12]
    port = [e for e in errors if e.startswith(where + "s07.yaml:7:9:")]
    assert port and "spec.port" in port[0], errors
    colour = [e for e in errors if e.startswith(where + "s07.yaml:8:3:")]
    assert colour and "unknown field" in colour[0], errors
    assert any(e.startswith(where + "zz/broken.yaml:") for e in errors), errors
    assert len(errors) == 3, errors
    assert sorted(servers(rprd)) == ["first"]


def test_unknown_kind_is_refused(rprd, cfg):
    cfg.write("clusters/prod/a.yaml", server_yaml("a"))
    cfg.write("clusters/prod/w.yaml", "apiVersion: rpr/v1\nkind: Widget\nmetadata: {name: w}\nspec: {}\n")
    sha = cfg.push()
    start(rprd, cfg)
    o = wait_reason(rprd, "ValidationFailed")
    assert any("w.yaml:2:7" in e and "unknown kind" in e for e in o["status"]["errors"]), o["status"]
    assert servers(rprd) == {}
    assert o["status"]["lastAttemptedRevision"] == "main@sha1:" + sha


def test_runs_and_status_are_refused(rprd, cfg):
    s = json.loads(server_yaml("a"))
    s["status"] = {"phase": "Reachable"}
    cfg.write("clusters/prod/a.yaml", json.dumps(s))
    cfg.write("clusters/prod/r.yaml", "apiVersion: rpr/v1\nkind: Run\nmetadata: {name: r}\nspec: {}\n")
    cfg.push()
    start(rprd, cfg)
    o = wait_reason(rprd, "ValidationFailed")
    errs = o["status"]["errors"]
    assert any("a.yaml" in e and "status is written by rprd" in e for e in errs), errs
    assert any("r.yaml" in e and "Run objects are made by rprd" in e for e in errs), errs


def test_emptied_directory_is_refused_without_allow_empty(rprd, cfg):
    cfg.write("clusters/prod/a.yaml", server_yaml("a"))
    cfg.write("other/keep.txt", "x")
    sha = cfg.push()
    start(rprd, cfg)
    wait_applied(rprd, sha)
    cfg.remove("clusters/prod")
    sha2 = cfg.push("wipe")
    check(rprd)
    o = wait_for(rprd, "attempt " + sha2, lambda o: o.get("status", {}).get("lastAttemptedRevision") == "main@sha1:" + sha2)
    assert ready(o)["reason"] == "ValidationFailed"
    assert "allowEmpty" in o["status"]["errors"][0]
    assert sorted(servers(rprd)) == ["a"]
    rprd.apply([sync_obj(allowEmpty=True)])
    wait_applied(rprd, sha2)
    assert servers(rprd) == {}


def test_inline_token_value_is_refused(rprd, cfg):
    cfg.write("clusters/prod/t.yaml",
              "apiVersion: rpr/v1\nkind: Token\nmetadata: {name: gh}\nspec:\n  type: github\n"
              "  value: ghp_NotInARepositoryPlease0123456789\n")
    cfg.push()
    start(rprd, cfg)
    o = wait_reason(rprd, "ValidationFailed")
    errs = o["status"]["errors"]
    assert any("t.yaml:6:10" in e and "valueFrom" in e for e in errs), errs
    assert "ghp_NotInARepositoryPlease" not in json.dumps(o)
    assert get(rprd, "tokens", "gh") is None


# ---- ownership and drift ------------------------------------------------------------------

def test_drift_is_corrected_and_deleted_objects_recreated(rprd, cfg):
    cfg.write("clusters/prod/a.yaml", server_yaml("a", labels={"role": "web"}))
    cfg.write("clusters/prod/b.yaml", server_yaml("b"))
    sha = cfg.push()
    start(rprd, cfg, interval="2s")
    wait_applied(rprd, sha)
    a = get(rprd, "servers", "a")
    a["spec"]["port"] = 2222
    a["metadata"]["labels"] = {"role": "db"}
    r = rprd.request("PUT", "/api/v1/namespaces/default/servers/a", body=a)
    assert r.status == 200, r
    r = rprd.request("DELETE", "/api/v1/namespaces/default/servers/b")
    assert r.status == 200, r
    o = wait_for(rprd, "drift corrected", lambda o: o["status"].get("drift", {}).get("corrected", 0) >= 2,
                 timeout=15)
    assert sorted(o["status"]["drift"]["lastCorrected"]["objects"]) == ["Server/default/a", "Server/default/b"]
    have = servers(rprd)
    assert have["a"]["spec"]["port"] == 1 and have["a"]["metadata"]["labels"] == {"role": "web"}
    assert have["b"]["metadata"]["managedBy"] == "sync/fleet"
    log = activity_log(rprd)
    assert "drift: Server/default/a" in log and "drift: Server/default/b" in log


def activity_log(d):
    text = ""
    for root, _, files in os.walk(d.state_dir):
        for f in files:
            if f.startswith("activity"):
                text += open(os.path.join(root, f), errors="replace").read()
    return text


def test_manual_apply_of_managed_object_is_refused(rprd, cfg):
    cfg.write("clusters/prod/a.yaml", server_yaml("a"))
    sha = cfg.push()
    start(rprd, cfg)
    wait_applied(rprd, sha)
    changed = json.loads(server_yaml("a", port=3))
    r = rprd.request("POST", "/api/v1/apply", body=[changed])
    assert r.status == 409, r
    assert "managed by sync/fleet; change it in the repository, or --force" in r.text
    assert get(rprd, "servers", "a")["spec"]["port"] == 1
    p = rprd.ctl("apply", "-f", "-", input=json.dumps(changed))
    assert p.returncode != 0 and "managed by sync/fleet" in p.stderr, p
    p = rprd.ctl("apply", "--force", "-f", "-", input=json.dumps(changed))
    assert p.returncode == 0, p.stderr
    assert get(rprd, "servers", "a")["spec"]["port"] == 3


def test_two_syncs_claiming_one_object_conflict(rprd, cfg):
    cfg.write("clusters/prod/a.yaml", server_yaml("a"))
    cfg.write("clusters/other/a.yaml", server_yaml("a", port=7))
    cfg.write("clusters/other/b.yaml", server_yaml("b"))
    sha = cfg.push()
    start(rprd, cfg)
    wait_applied(rprd, sha)
    rprd.apply([sync_obj("second", path="clusters/other")])
    o = wait_reason(rprd, "Conflict", name="second")
    assert "Server/default/a is managed by sync/fleet" in ready(o)["message"]
    have = servers(rprd)
    assert sorted(have) == ["a"] and have["a"]["spec"]["port"] == 1


def test_object_made_by_hand_is_a_conflict(rprd, cfg):
    rprd.apply([json.loads(server_yaml("a", port=5))])
    cfg.write("clusters/prod/a.yaml", server_yaml("a"))
    cfg.push()
    start(rprd, cfg)
    o = wait_reason(rprd, "Conflict")
    assert "Server/default/a exists and is not managed by a Sync" in o["status"]["errors"][0]
    assert get(rprd, "servers", "a")["spec"]["port"] == 5


def test_suspend_stops_applying(rprd, cfg):
    cfg.write("clusters/prod/a.yaml", server_yaml("a"))
    sha = cfg.push()
    start(rprd, cfg)
    wait_applied(rprd, sha)
    rprd.apply([sync_obj(suspend=True)])
    wait_reason(rprd, "Suspended")
    cfg.write("clusters/prod/b.yaml", server_yaml("b"))
    sha2 = cfg.push()
    check(rprd)
    time.sleep(2)
    assert sorted(servers(rprd)) == ["a"]
    rprd.apply([sync_obj(suspend=False)])
    wait_applied(rprd, sha2)
    assert sorted(servers(rprd)) == ["a", "b"]


def test_depends_on_waits_for_the_other(rprd, cfg):
    cfg.write("base/a.yaml", server_yaml("base-a"))
    cfg.write("clusters/prod/b.yaml", server_yaml("b"))
    sha = cfg.push()
    rprd.apply([repo_obj(cfg.url), sync_obj("app", dependsOn=["base"])])
    o = wait_reason(rprd, "DependencyNotReady", name="app")
    assert "base" in ready(o)["message"]
    assert servers(rprd) == {}
    rprd.apply([sync_obj("base", path="base")])
    base = wait_applied(rprd, sha, name="base")
    app = wait_applied(rprd, sha, name="app")
    t_base = base["status"]["history"][0]["time"]
    t_app = app["status"]["history"][0]["time"]
    assert t_base <= t_app
    assert sorted(servers(rprd)) == ["b", "base-a"]


def test_delete_with_prune_removes_objects(rprd, cfg):
    cfg.write("clusters/prod/a.yaml", server_yaml("a"))
    sha = cfg.push()
    start(rprd, cfg)
    wait_applied(rprd, sha)
    r = rprd.request("DELETE", "/api/v1/namespaces/default/syncs/fleet")
    assert r.status == 200, r
    deadline = time.time() + WAIT
    while time.time() < deadline and (get(rprd, "syncs", "fleet") or servers(rprd)):
        time.sleep(0.05)
    assert get(rprd, "syncs", "fleet") is None and servers(rprd) == {}


def test_delete_without_prune_lets_objects_go(rprd, cfg):
    cfg.write("clusters/prod/a.yaml", server_yaml("a"))
    sha = cfg.push()
    start(rprd, cfg, prune=False)
    wait_applied(rprd, sha)
    r = rprd.request("DELETE", "/api/v1/namespaces/default/syncs/fleet")
    assert r.status == 200, r
    deadline = time.time() + WAIT
    while time.time() < deadline and get(rprd, "syncs", "fleet"):
        time.sleep(0.05)
    have = servers(rprd)
    assert get(rprd, "syncs", "fleet") is None and list(have) == ["a"]
    assert "managedBy" not in have["a"]["metadata"]


# ---- triggers -----------------------------------------------------------------------------

def test_rprctl_sync_and_requested_at(rprd, cfg):
    cfg.write("clusters/prod/a.yaml", server_yaml("a"))
    sha = cfg.push()
    start(rprd, cfg)
    wait_applied(rprd, sha)
    r = rprd.request("DELETE", "/api/v1/namespaces/default/servers/a")
    assert r.status == 200
    p = rprd.ctl("sync", "fleet")
    assert p.returncode == 0, p.stderr
    assert "main@sha1:" + sha in p.stdout
    o = get(rprd, "syncs", "fleet")
    assert o["status"]["lastHandledRequestedAt"] == o["metadata"]["annotations"]["rpr/requestedAt"]
    assert "a" in servers(rprd)


def sign(body, secret):
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def test_push_webhook_syncs(rprd, cfg):
    secret = "webhook-secret-for-sync-tests"
    cfg.write("clusters/prod/a.yaml", server_yaml("a"))
    sha = cfg.push()
    rprd.apply([{"apiVersion": "rpr/v1", "kind": "Token", "metadata": {"name": "hook"},
                 "spec": {"type": "webhook", "value": secret}}])
    start(rprd, cfg)
    wait_applied(rprd, sha)
    cfg.write("clusters/prod/b.yaml", server_yaml("b"))
    sha2 = cfg.push("b")
    body = json.dumps({"ref": "refs/heads/main", "after": sha2,
                       "repository": {"full_name": "acme/config", "clone_url": cfg.url}}).encode()
    headers = {"X-GitHub-Delivery": str(uuid.uuid4()), "X-GitHub-Event": "push",
               "X-Hub-Signature-256": sign(body, secret)}
    t0 = time.time()
    r = rprd.request("POST", "/hooks/github", body=body, token=None, headers=headers)
    assert r.status == 202, r
    wait_applied(rprd, sha2, timeout=10)
    assert time.time() - t0 < 10
    assert sorted(servers(rprd)) == ["a", "b"]


def test_git_daemon_url(rprd, cfg):
    port = free_port()
    root = os.path.dirname(cfg.bare)
    p = subprocess.Popen(["git", "daemon", "--reuseaddr", "--base-path=" + root, "--export-all",
                          "--listen=127.0.0.1", "--port=%d" % port, root],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        cfg.write("clusters/prod/a.yaml", server_yaml("a"))
        sha = cfg.push()
        rprd.apply([repo_obj("git://127.0.0.1:%d/config.git" % port), sync_obj()])
        wait_applied(rprd, sha)
        assert get(rprd, "servers", "a")["metadata"]["managedBy"] == "sync/fleet"
    finally:
        p.terminate()
        p.wait(10)


# ---- security -----------------------------------------------------------------------------

def make_token(d, name, ns, role="admin"):
    r = d.request("POST", "/api/v1/tokens", body={"name": name, "namespace": ns, "role": role})
    assert r.status == 201, r
    return r.json()["token"]


# ---- crash safety ---------------------------------------------------------------------------

def write_revision(cfg, rev, n=2000, per_file=100):
    """n Servers labelled rev=REV, named from rev*100 on: each revision drops
    100 names, adds 100 and changes every other object."""
    first = rev * 100
    shutil.rmtree(os.path.join(cfg.work, "clusters"), ignore_errors=True)
    for f in range(n // per_file):
        docs = [server_yaml("s-%d" % j, labels={"rev": str(rev)})
                for j in range(first + f * per_file, first + (f + 1) * per_file)]
        cfg.write("clusters/prod/f%02d.yaml" % f, "\n---\n".join(docs) + "\n")
    return cfg.push("revision %d" % rev)


def assert_one_revision(d, shas):
    """Every Server belongs to the revision the Sync says it applied."""
    sync = get(d, "syncs", "fleet")
    applied = sync["status"]["lastAppliedRevision"]
    rev = shas.index(applied.split(":", 1)[1])
    have = servers(d)
    want = {"s-%d" % j for j in range(rev * 100, rev * 100 + 2000)}
    assert set(have) == want, "objects of another revision: %s" % sorted(set(have) ^ want)[:10]
    labels = {o["metadata"]["labels"]["rev"] for o in have.values()}
    assert labels == {str(rev)}, labels
    assert len(sync["status"]["inventory"]) == 2000
    return rev


def test_kill_9_during_a_2000_object_sync_leaves_one_revision(rprd, cfg):
    shas = [write_revision(cfg, 0)]
    start(rprd, cfg)
    wait_applied(rprd, shas[0], timeout=120)
    kept = []
    for i, delay in enumerate([0.3, 0.8, 1.5, 3.0], start=1):
        shas.append(write_revision(cfg, i))
        check(rprd)
        time.sleep(delay)
        rprd.kill()
        rprd.extra_args = ["--no-controllers"]
        rprd.start()
        kept.append(assert_one_revision(rprd, shas))
        rprd.stop()
        rprd.extra_args = []
        rprd.start()
        wait_applied(rprd, shas[i], timeout=120)
        assert assert_one_revision(rprd, shas) == i
    print("revisions found after each kill -9 (old = i-1, new = i):", kept)


# ---- rprctl ---------------------------------------------------------------------------------

def test_rprctl_get_wide_and_describe(rprd, cfg):
    cfg.write("clusters/prod/a.yaml", server_yaml("a"))
    sha = cfg.push()
    start(rprd, cfg)
    wait_applied(rprd, sha)
    p = rprd.ctl("get", "syncs", "-o", "wide")
    assert p.returncode == 0, p.stderr
    head, row = p.stdout.splitlines()[:2]
    for col in ["REPO", "PATH", "REVISION", "READY", "OBJECTS", "LAST-SYNC", "PRUNE", "SUSPEND"]:
        assert col in head.split(), head
    assert "config" in row and "clusters/prod" in row and "main@sha1:" + sha in row and "Applied" in row
    p = rprd.ctl("get", "sync")
    assert p.returncode == 0 and "fleet" in p.stdout, p.stderr
    p = rprd.ctl("describe", "sync", "fleet")
    assert p.returncode == 0, p.stderr
    inv = p.stdout.split("Inventory:")[1]
    assert "Server" in inv and "default" in inv and " a" in inv
    cfg.write("clusters/prod/b.yaml", "kind: Server\nmetadata: {name: b}\nspec: {port: 0}\n")
    sha2 = cfg.push()
    p = rprd.ctl("sync", "fleet")
    assert p.returncode == 1 and "ValidationFailed" in p.stdout, p
    assert "config@%s:clusters/prod/b.yaml:3:" % sha2[:12] in p.stderr, p.stderr
    p = rprd.ctl("describe", "sync", "fleet")
    errors = p.stdout.split("Errors:")[1]
    assert "clusters/prod/b.yaml:3:" in errors


def test_github_repo_is_read_from_the_clone_url_its_api_gives(rprd, cfg):
    from github_fake import FakeGitHub
    from test_repos import PAT, repo, token
    cfg.write("clusters/prod/a.yaml", server_yaml("a"))
    sha = cfg.push()
    gh = FakeGitHub()
    gh.start()
    try:
        gh.add_token(PAT)
        gh.add_repo("acme", "config", clone_url=cfg.url, branches={"main": {"sha": sha}})
        rprd.apply([token("gh"), repo("config", gh, repo_name="config", tokenRef="gh", interval="1h"), sync_obj()])
        wait_applied(rprd, sha)
        assert get(rprd, "servers", "a")["metadata"]["managedBy"] == "sync/fleet"
    finally:
        gh.stop()


def test_history_keeps_the_last_5_revisions(rprd, cfg):
    shas = []
    for i in range(7):
        cfg.write("clusters/prod/a.yaml", server_yaml("a", port=10 + i))
        shas.append(cfg.push("rev %d" % i))
        if i == 0:
            start(rprd, cfg)
        else:
            check(rprd)
        o = wait_applied(rprd, shas[-1])
    h = o["status"]["history"]
    assert [e["revision"] for e in h] == ["main@sha1:" + s for s in reversed(shas[-5:])]
    assert all(e["result"] == "Applied" and e["updated"] == 1 and "durationSeconds" in e for e in h), h


def test_deleting_a_suspended_sync_keeps_its_objects(rprd, cfg):
    cfg.write("clusters/prod/a.yaml", server_yaml("a"))
    sha = cfg.push()
    start(rprd, cfg)
    wait_applied(rprd, sha)
    rprd.apply([sync_obj(suspend=True)])
    wait_reason(rprd, "Suspended")
    p = rprd.ctl("sync", "fleet", timeout=20)
    assert p.returncode == 1 and "Suspended" in p.stdout, p
    r = rprd.request("DELETE", "/api/v1/namespaces/default/syncs/fleet")
    assert r.status == 200, r
    deadline = time.time() + WAIT
    while time.time() < deadline and get(rprd, "syncs", "fleet"):
        time.sleep(0.05)
    assert get(rprd, "syncs", "fleet") is None
    have = servers(rprd)
    assert list(have) == ["a"] and "managedBy" not in have["a"]["metadata"]
