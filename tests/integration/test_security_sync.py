"""What a Sync may write (issue 18): only into its target namespace, which its
writer must hold; nothing that reaches rprd's host unless spec.hostAccess,
which needs an unrestricted admin. Real git repositories (test_sync.py has
the helpers)."""

import json

from test_sync import (  # noqa: F401 (fixtures and helpers)
    cfg, check, get, make_token, ready, repo_obj, server_yaml, servers, start, sync_obj,
    wait_applied, wait_for, wait_reason)

CONTROLLERS = True


def test_sync_writes_only_into_its_namespace(rprd, cfg):
    cfg.write("clusters/prod/a.yaml", server_yaml("a"))
    cfg.write("clusters/prod/evil.yaml", server_yaml("evil", ns="default"))
    cfg.write("clusters/prod/local.yaml",
              json.dumps({"apiVersion": "rpr/v1", "kind": "Server", "metadata": {"name": "root"},
                          "spec": {"transport": "local"}}))
    sha = cfg.push()
    # The Repo's file:// URL reaches rprd's host: the admin makes it.
    rprd.apply([repo_obj(cfg.url, ns="team-a")])
    tok = make_token(rprd, "team-a-admin", "team-a")
    # A namespace-scoped admin cannot aim a Sync at another namespace...
    r = rprd.request("POST", "/api/v1/apply", body=[sync_obj(ns="team-a", namespace="default")], token=tok)
    assert r.status == 403, r
    assert "outside your scope" in r.text
    # ...nor give it rprd's host.
    r = rprd.request("POST", "/api/v1/apply", body=[sync_obj(ns="team-a", hostAccess=True)], token=tok)
    assert r.status == 403, r
    # Its own Sync writes into team-a only, and never reaches the host.
    r = rprd.request("POST", "/api/v1/apply", body=[sync_obj(ns="team-a")], token=tok)
    assert r.status == 200, r
    o = wait_for(rprd, "attempted", lambda o: o.get("status", {}).get("lastAttemptedRevision") == "main@sha1:" + sha,
                 ns="team-a")
    errs = o["status"]["errors"]
    assert ready(o)["reason"] == "ValidationFailed"
    assert any("evil.yaml" in e and "writes only into namespace team-a" in e for e in errs), errs
    assert any("local.yaml" in e and "spec.transport" in e for e in errs), errs
    assert servers(rprd, "default") == {} and servers(rprd, "team-a") == {}
    cfg.remove("clusters/prod/evil.yaml")
    cfg.remove("clusters/prod/local.yaml")
    sha2 = cfg.push()
    check(rprd, ns="team-a")
    wait_applied(rprd, sha2, ns="team-a")
    assert list(servers(rprd, "team-a")) == ["a"] and servers(rprd, "default") == {}


def test_host_access_lets_a_token_read_its_secret_from_a_file(rprd, cfg, tmp_path):
    secret = tmp_path / "gh.token"
    secret.write_text("ghp_FromAFileNotTheRepository0123456789\n")
    cfg.write("clusters/prod/t.yaml",
              "apiVersion: rpr/v1\nkind: Token\nmetadata: {name: gh}\nspec:\n  type: github\n"
              "  valueFrom: {file: %s}\n" % secret)
    sha = cfg.push()
    start(rprd, cfg)
    o = wait_reason(rprd, "ValidationFailed")
    assert any("t.yaml:6:" in e and "spec.valueFrom.file" in e for e in o["status"]["errors"]), o["status"]
    rprd.apply([sync_obj(hostAccess=True)])
    wait_applied(rprd, sha)
    tok = get(rprd, "tokens", "gh")
    assert tok["metadata"]["managedBy"] == "sync/fleet"
    assert "ghp_FromAFile" not in json.dumps(tok)
