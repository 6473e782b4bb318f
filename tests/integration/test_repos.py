"""Repos and Tokens end to end: a real rprd (the sanitizer build) watching
branches through the fake GitHub API (tests/github_fake.py, serving GitHub's
published response shapes) and real git repositories (file:// and a real
`git daemon` on loopback).

Change detection (new commit, 304 when nothing changed, force-push to an
older commit), failures as conditions (private repo without a token, bad
and expired tokens, rate limit waited out, missing branch, network), the
interval (no request before it is due, also across a restart; 1m minimum),
GitHub's reported token expiry, a Token fixed -> the Repo looks again,
`rprctl check repo`, and that no secret reaches an answer, a log or an error.
"""

import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time

import pytest

from conftest import free_port, load_yaml, status_of
from github_fake import FakeGitHub

CONTROLLERS = True
WAIT = 20
PAT = "ghp_SeCrEtPaT0123456789abcdefABCDEF0123"
SHA = ["%040x" % (0xA1 + i) for i in range(8)]


# ---- fixtures ---------------------------------------------------------------------

@pytest.fixture
def gh():
    g = FakeGitHub()
    g.start()
    yield g
    g.stop()


def git(*args, cwd=None, date=None):
    env = dict(os.environ, GIT_AUTHOR_NAME="Ada Lovelace", GIT_AUTHOR_EMAIL="ada@example.com",
               GIT_COMMITTER_NAME="Ada Lovelace", GIT_COMMITTER_EMAIL="ada@example.com",
               HOME=tempfile.gettempdir())
    if date:
        env["GIT_AUTHOR_DATE"] = env["GIT_COMMITTER_DATE"] = date
    p = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, "git %s: %s" % (" ".join(args), p.stderr)
    return p.stdout.strip()


class GitRepo:
    """A bare repository and a work tree that pushes to it."""

    def __init__(self, root, name="site"):
        self.bare = os.path.join(root, name + ".git")
        self.work = os.path.join(root, name + "-work")
        git("init", "-q", "--bare", "-b", "main", self.bare)
        git("init", "-q", "-b", "main", self.work)
        git("remote", "add", "origin", self.bare, cwd=self.work)

    @property
    def url(self):
        return "file://" + self.bare

    def commit(self, message, date="2026-11-20T10:00:00Z", branch="main", force=False):
        with open(os.path.join(self.work, "file.txt"), "a") as f:
            f.write(message + "\n")
        git("add", "file.txt", cwd=self.work)
        git("commit", "-q", "-m", message, cwd=self.work, date=date)
        git("push", "-q", *(["-f"] if force else []), "origin", "HEAD:refs/heads/" + branch, cwd=self.work)
        return git("rev-parse", "HEAD", cwd=self.work)


@pytest.fixture
def gitrepo():
    root = tempfile.mkdtemp(prefix="rpr-git-")
    yield GitRepo(root)
    shutil.rmtree(root, ignore_errors=True)


# ---- helpers ----------------------------------------------------------------------

def token(name, value=PAT, type_="github", **spec):
    s = {"type": type_, "value": value}
    s.update(spec)
    return {"apiVersion": "rpr/v1", "kind": "Token", "metadata": {"name": name}, "spec": s}


def repo(name, gh=None, owner="acme", repo_name="site", **spec):
    """A Repo; with gh, a github one on the fake API (owner/repo_name)."""
    s = {"provider": "github", "owner": owner, "name": repo_name, "apiURL": gh.url} if gh else {}
    s.update(spec)
    return {"apiVersion": "rpr/v1", "kind": "Repo", "metadata": {"name": name}, "spec": s}


def ready(obj):
    for c in obj.get("status", {}).get("conditions", []):
        if c.get("type") == "Ready":
            return c
    return {}


def wait_repo(d, name, pred, what, timeout=WAIT):
    deadline = time.time() + timeout
    obj = None
    while time.time() < deadline:
        obj = d.obj("repos", name)
        if pred(obj):
            return obj
        time.sleep(0.05)
    raise AssertionError("repo %s: %s not seen within %ds; status: %s\nrprd stderr:\n%s"
                         % (name, what, timeout, json.dumps(obj.get("status"), indent=1), d.stderr()[-3000:]))


def wait_sha(d, name, sha, timeout=WAIT):
    return wait_repo(d, name, lambda o: o.get("status", {}).get("lastCommit", {}).get("sha") == sha,
                     "lastCommit %s" % sha[:12], timeout)


def wait_reason(d, name, reason, timeout=WAIT):
    return wait_repo(d, name, lambda o: ready(o).get("reason") == reason, "Ready reason " + reason, timeout)


def branch_gets(gh, owner="acme", name="site", branch="main"):
    path = "/repos/%s/%s/branches/%s" % (owner, name, branch)
    return [r for r in gh.requests() if r["path"].split("?")[0] == path]


def check(d, name):
    r = d.request("POST", "/api/v1/namespaces/default/repos/%s/check" % name)
    assert r.status == 200, r
    return r.json()


def assert_no_secret(d, *texts):
    for t in texts:
        assert PAT not in t
    assert PAT not in d.all_stderr()
    logs = os.path.join(d.state_dir, "logs")
    for root, _, files in os.walk(logs):
        for f in files:
            with open(os.path.join(root, f), errors="replace") as fh:
                assert PAT not in fh.read(), f


# ---- github: change detection -------------------------------------------------------------

def test_new_commit_detected_and_logged(rprd, gh):
    gh.add_token(PAT)
    gh.add_repo("acme", "site", branches={"main": {"sha": SHA[0], "message": "first\n\nbody",
                                                    "author": "Ada", "date": "2026-11-20T10:00:00Z"},
                                           "dev": {"sha": SHA[1]}})
    rprd.apply([token("gh"), repo("site", gh, tokenRef="gh", interval="1h")])
    o = wait_sha(rprd, "site", SHA[0])
    st = o["status"]
    assert st["lastCommit"] == {"sha": SHA[0], "time": "2026-11-20T10:00:00Z", "author": "Ada",
                                "message": "first"}
    assert sorted(st["branches"]) == ["dev", "main"]
    assert ready(o)["status"] == "True" and ready(o)["reason"] == "Checked"
    assert st["lastCheckTime"] and st["nextCheckTime"] > st["lastCheckTime"]

    gh.set_head("acme", "site", "main", sha=SHA[2], message="second", date="2026-11-21T10:00:00Z")
    rep = check(rprd, "site")
    assert rep["check"]["ok"] is True, rep
    o = wait_sha(rprd, "site", SHA[2])
    assert o["status"]["lastCommit"]["message"] == "second"
    log = rprd.get("/api/v1/logs/activity?tail=10").text
    assert "repo default/site: main at %s" % SHA[2][:12] in log, log
    assert "(was %s" % SHA[0][:12] in log, log
    # every request carried the token and a User-Agent-worthy shape
    assert all(r["auth"] for r in gh.requests())


def test_no_change_is_a_304(rprd, gh):
    gh.add_repo("acme", "site", branches={"main": {"sha": SHA[0]}})
    rprd.apply([repo("site", gh, interval="1h")])
    first = wait_sha(rprd, "site", SHA[0])
    before = len(branch_gets(gh))
    check(rprd, "site")
    gets = branch_gets(gh)
    assert len(gets) == before + 1
    assert gets[-1]["if_none_match"] and gets[-1]["status"] == 304, gets[-1]
    o = rprd.obj("repos", "site")
    assert o["status"]["lastCommit"]["sha"] == SHA[0]
    assert o["status"]["lastChangeTime"] == first["status"]["lastChangeTime"]
    assert ready(o)["reason"] == "Checked"


def test_force_push_to_an_older_commit_is_a_change(rprd, gh):
    gh.add_repo("acme", "site", branches={"main": {"sha": SHA[3], "date": "2026-11-21T10:00:00Z"}})
    rprd.apply([repo("site", gh, interval="1h")])
    wait_sha(rprd, "site", SHA[3])
    gh.set_head("acme", "site", "main", sha=SHA[4], message="rewritten", date="2020-01-01T00:00:00Z")
    check(rprd, "site")
    o = wait_sha(rprd, "site", SHA[4])
    assert o["status"]["lastCommit"]["time"] == "2020-01-01T00:00:00Z"


def test_scripted_heads_are_each_seen(rprd, gh):
    gh.add_repo("acme", "site", branches={"main": {"sha": SHA[0]}})
    gh.script_heads("acme", "site", "main", [{"sha": SHA[1]}, {"sha": SHA[2]}, {"sha": SHA[3]}])
    rprd.apply([repo("site", gh, interval="1h")])
    wait_sha(rprd, "site", SHA[1])
    for sha in SHA[2:4]:
        check(rprd, "site")
        wait_sha(rprd, "site", sha)


def test_branches_are_paginated(rprd, gh):
    branches = {"main": {"sha": SHA[0]}}
    branches.update({"b%03d" % i: {"sha": SHA[1]} for i in range(249)})
    gh.add_repo("acme", "big", branches=branches)
    rprd.apply([repo("big", gh, repo_name="big", interval="1h")])
    o = wait_sha(rprd, "big", SHA[0])
    assert len(o["status"]["branches"]) == 250
    pages = [r for r in gh.requests() if r["path"].startswith("/repos/acme/big/branches?")]
    assert len(pages) >= 3, pages


# ---- github: failures as conditions ---------------------------------------------------------

def test_private_repo_without_token_is_not_found_with_hint(rprd, gh):
    gh.add_repo("acme", "secret", private=True, branches={"main": {"sha": SHA[0]}})
    rprd.apply([repo("secret", gh, repo_name="secret", interval="1h")])
    o = wait_reason(rprd, "secret", "NotFound")
    assert ready(o)["status"] == "False"
    assert "tokenRef" in ready(o)["message"], ready(o)
    assert "lastCommit" not in o["status"]


def test_private_repo_with_token_works(rprd, gh):
    gh.add_token(PAT)
    gh.add_repo("acme", "secret", private=True, branches={"main": {"sha": SHA[0]}})
    rprd.apply([token("gh"), repo("secret", gh, repo_name="secret", tokenRef="gh", interval="1h")])
    wait_sha(rprd, "secret", SHA[0])
    assert_no_secret(rprd, json.dumps(rprd.obj("repos", "secret")))


def test_bad_credentials(rprd, gh):
    gh.add_repo("acme", "site", branches={"main": {"sha": SHA[0]}})
    gh.add_token(PAT, valid=False)
    rprd.apply([token("gh"), repo("site", gh, tokenRef="gh", interval="1h")])
    o = wait_reason(rprd, "site", "BadCredentials")
    assert "401" in ready(o)["message"]
    assert_no_secret(rprd, json.dumps(o), rprd.ctl("describe", "repo", "site").stdout)


def test_expired_token_says_so_without_asking_github(rprd, gh):
    gh.add_repo("acme", "site", branches={"main": {"sha": SHA[0]}})
    rprd.apply([token("gh", expires="2020-01-01"), repo("site", gh, tokenRef="gh", interval="1h")])
    o = wait_reason(rprd, "site", "TokenExpired")
    assert "gh" in ready(o)["message"] and "2020-01-01" in ready(o)["message"], ready(o)
    assert gh.requests() == []
    tok = rprd.obj("tokens", "gh")
    conds = {c["type"]: c for c in tok["status"]["conditions"]}
    assert conds["Expired"]["status"] == "True"
    assert tok["status"]["expiresIn"] == "expired"


def test_github_reported_token_expiry_is_recorded(rprd, gh):
    soon = time.gmtime(time.time() + 5 * 86400 + 3600)
    gh.add_token(PAT, expires=time.strftime("%Y-%m-%d %H:%M:%S UTC", soon))
    gh.add_repo("acme", "site", branches={"main": {"sha": SHA[0]}})
    rprd.apply([token("gh"), repo("site", gh, tokenRef="gh", interval="1h")])
    wait_sha(rprd, "site", SHA[0])
    deadline = time.time() + WAIT
    while time.time() < deadline:
        st = rprd.obj("tokens", "gh").get("status", {})
        if st.get("expiresFrom") == "github" and st.get("lastUsed"):
            break
        time.sleep(0.05)
    assert st.get("expiresFrom") == "github", st
    assert st["expires"] == time.strftime("%Y-%m-%dT%H:%M:%SZ", soon)
    assert st["expiresIn"] == "5d"
    conds = {c["type"]: c for c in st["conditions"]}
    assert conds["ExpiringSoon"]["status"] == "True"
    out = rprd.ctl("get", "tokens", "-o", "wide").stdout
    assert "5d" in out, out


def test_rate_limit_is_waited_out(rprd, gh):
    gh.add_token(PAT)
    gh.add_repo("acme", "site", branches={"main": {"sha": SHA[0]}})
    reset = int(time.time()) + 4
    gh.set_rate_limit(token=PAT, limit=5000, remaining=0, reset=reset)
    rprd.apply([token("gh"), repo("site", gh, tokenRef="gh", interval="1h")])
    o = wait_reason(rprd, "site", "RateLimited")
    assert time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(reset)) in ready(o)["message"], ready(o)
    n = len(gh.requests())
    assert n == 1, gh.requests()  # the one 403 that told
    # asking again while the limit holds makes no request
    check(rprd, "site")
    assert len(gh.requests()) == n
    o = wait_sha(rprd, "site", SHA[0], timeout=15)
    first_after = min(r["time"] for r in gh.requests()[n:])
    assert first_after >= reset - 0.5, (first_after, reset)
    assert ready(o)["reason"] == "Checked"


def test_retry_after_is_honoured(rprd, gh):
    gh.add_repo("acme", "site", branches={"main": {"sha": SHA[0]}})
    gh.set_retry_after(seconds=3, count=1)
    t0 = time.time()
    rprd.apply([repo("site", gh, interval="1h")])
    wait_reason(rprd, "site", "RateLimited")
    wait_sha(rprd, "site", SHA[0], timeout=15)
    reqs = gh.requests()
    assert reqs[1]["time"] - reqs[0]["time"] >= 2.5, reqs[:2]
    assert time.time() - t0 >= 2.5


def test_branch_missing(rprd, gh):
    gh.add_repo("acme", "site", branches={"main": {"sha": SHA[0]}})
    rprd.apply([repo("site", gh, branch="release", interval="1h")])
    o = wait_reason(rprd, "site", "BranchNotFound")
    assert "release" in ready(o)["message"]


def test_network_error(rprd, gh):
    port = free_port()
    rprd.apply([{"apiVersion": "rpr/v1", "kind": "Repo", "metadata": {"name": "site"},
                 "spec": {"owner": "acme", "name": "site", "apiURL": "http://127.0.0.1:%d" % port,
                          "interval": "1h"}}])
    o = wait_reason(rprd, "site", "NetworkError")
    assert "127.0.0.1:%d" % port in ready(o)["message"]
    assert o["status"]["failures"] >= 1


def test_server_errors_are_network_errors_and_retried(rprd, gh):
    gh.add_repo("acme", "site", branches={"main": {"sha": SHA[0]}})
    gh.fail_next(status=502, count=1)
    rprd.apply([repo("site", gh, interval="1h")])
    wait_reason(rprd, "site", "NetworkError")
    # a transient failure is retried after a short backoff, not after 1h
    wait_sha(rprd, "site", SHA[0], timeout=25)


# ---- interval -------------------------------------------------------------------------------

def test_interval_respected_across_restart(rprd, gh):
    gh.add_repo("acme", "site", branches={"main": {"sha": SHA[0]}})
    rprd.apply([repo("site", gh, interval="1m")])
    o = wait_sha(rprd, "site", SHA[0])
    n = len(gh.requests())
    assert n == 2, gh.requests()  # the branch and the branch list
    time.sleep(2)
    assert len(gh.requests()) == n
    rprd.restart()
    time.sleep(2)
    assert len(gh.requests()) == n, gh.requests()[n:]
    assert rprd.obj("repos", "site")["status"]["nextCheckTime"] == o["status"]["nextCheckTime"]


def test_interval_minimum_is_validated(rprd, gh):
    r = rprd.request("POST", "/api/v1/apply", body=[repo("site", gh, interval="30s")])
    assert r.status == 422, r
    s = status_of(r)
    assert any(d["field"] == "spec.interval" for d in s["details"]), s
    assert rprd.get("/api/v1/namespaces/default/repos/site").status == 404


def test_spec_change_checks_at_once(rprd, gh):
    gh.add_repo("acme", "site", branches={"main": {"sha": SHA[0]}, "dev": {"sha": SHA[5]}})
    rprd.apply([repo("site", gh, interval="1h")])
    wait_sha(rprd, "site", SHA[0])
    rprd.apply([repo("site", gh, interval="1h", branch="dev")])
    wait_sha(rprd, "site", SHA[5])


def test_token_fixed_makes_the_repo_look_again(rprd, gh):
    gh.add_token(PAT)
    gh.add_repo("acme", "secret", private=True, branches={"main": {"sha": SHA[0]}})
    rprd.apply([repo("secret", gh, repo_name="secret", tokenRef="gh", interval="24h")])
    o = wait_reason(rprd, "secret", "MissingReference")
    assert "gh" in ready(o)["message"]
    rprd.apply([token("gh", value="wrong-token")])
    wait_reason(rprd, "secret", "BadCredentials")
    rprd.apply([token("gh")])
    wait_sha(rprd, "secret", SHA[0])


def test_inactive_repo_is_not_polled(rprd, gh):
    gh.add_repo("acme", "site", branches={"main": {"sha": SHA[0]}})
    rprd.apply([repo("site", gh, active=False)])
    wait_reason(rprd, "site", "Inactive")
    time.sleep(0.5)
    assert gh.requests() == []
    r = rprd.request("POST", "/api/v1/namespaces/default/repos/site/check")
    assert r.status == 409, r


def test_url_form_and_bad_url(rprd, gh):
    gh.add_repo("acme", "site", branches={"main": {"sha": SHA[0]}})
    rprd.apply([repo("byurl", url="https://github.com/acme/site.git", apiURL=gh.url, interval="1h")])
    wait_sha(rprd, "byurl", SHA[0])
    r = rprd.request("POST", "/api/v1/apply",
                     body=[repo("badurl", url="https://github.com/just-an-owner", apiURL=gh.url)])
    assert r.status == 422, r
    assert any(d["field"] == "spec.url" and "OWNER/NAME" in d["message"] for d in status_of(r)["details"]), r


# ---- provider git ---------------------------------------------------------------------------

def test_git_file_url_new_commit_and_force_push(rprd, gitrepo):
    a = gitrepo.commit("one", date="2026-11-20T10:00:00Z")
    gitrepo.commit("side", branch="feature/x")
    rprd.apply([repo("g", provider="git", url=gitrepo.url, interval="1h")])
    o = wait_sha(rprd, "g", a)
    assert o["status"]["lastCommit"] == {"sha": a, "time": "2026-11-20T10:00:00Z",
                                         "author": "Ada Lovelace", "message": "one"}
    assert sorted(o["status"]["branches"]) == ["feature/x", "main"]
    b = gitrepo.commit("two", date="2026-11-21T10:00:00Z")
    check(rprd, "g")
    assert wait_sha(rprd, "g", b)["status"]["lastCommit"]["message"] == "two"
    git("reset", "-q", "--hard", a, cwd=gitrepo.work)
    c = gitrepo.commit("older", date="2019-05-05T05:05:05Z", force=True)
    check(rprd, "g")
    assert wait_sha(rprd, "g", c)["status"]["lastCommit"]["time"] == "2019-05-05T05:05:05Z"


def test_git_branch_and_repo_missing(rprd, gitrepo):
    gitrepo.commit("one")
    rprd.apply([repo("nobranch", provider="git", url=gitrepo.url, branch="nope", interval="1h"),
                repo("norepo", provider="git", url="file:///nonexistent/repo.git", interval="1h")])
    wait_reason(rprd, "nobranch", "BranchNotFound")
    o = wait_reason(rprd, "norepo", "NotFound")
    assert "/nonexistent/repo.git" in ready(o)["message"]


@pytest.fixture
def git_daemon(gitrepo):
    port = free_port()
    root = os.path.dirname(gitrepo.bare)
    p = subprocess.Popen(["git", "daemon", "--reuseaddr", "--base-path=" + root, "--export-all",
                          "--listen=127.0.0.1", "--port=%d" % port, root],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    yield "git://127.0.0.1:%d/%s" % (port, os.path.basename(gitrepo.bare))
    p.terminate()
    p.wait(10)


def test_git_daemon_url(rprd, gitrepo, git_daemon):
    a = gitrepo.commit("over git://")
    rprd.apply([repo("gd", provider="git", url=git_daemon, interval="1h")])
    o = wait_sha(rprd, "gd", a)
    assert o["status"]["lastCommit"]["message"] == "over git://"
    b = gitrepo.commit("again")
    check(rprd, "gd")
    wait_sha(rprd, "gd", b)


# ---- rprctl check repo ------------------------------------------------------------------------

def test_rprctl_check_repo_git(rprd, gitrepo):
    a = gitrepo.commit("checked out")
    rprd.apply([repo("g", provider="git", url=gitrepo.url, interval="1h")])
    wait_sha(rprd, "g", a)
    p = rprd.ctl("check", "repo", "g")
    assert p.returncode == 0, p.stderr
    assert "On branch main" in p.stdout, p.stdout
    assert "nothing to commit, working tree clean" in p.stdout
    assert "commit " + a in p.stdout and "checked out" in p.stdout
    tmp = os.path.join(rprd.state_dir, "cache", "repos", "tmp")
    assert not os.path.isdir(tmp) or os.listdir(tmp) == [], os.listdir(tmp)


def test_rprctl_check_repo_github_uses_clone_url(rprd, gh, gitrepo):
    a = gitrepo.commit("on github")
    gh.add_token(PAT)
    gh.add_repo("acme", "site", clone_url=gitrepo.url, branches={"main": {"sha": a}})
    rprd.apply([token("gh"), repo("site", gh, tokenRef="gh", interval="1h")])
    wait_sha(rprd, "site", a)
    p = rprd.ctl("check", "repo", "site")
    assert p.returncode == 0, p.stderr
    assert "commit " + a in p.stdout and "On branch main" in p.stdout, p.stdout
    assert_no_secret(rprd, p.stdout, p.stderr)


def test_rprctl_check_repo_failure_exits_1(rprd, gh):
    gh.add_repo("acme", "site", branches={"main": {"sha": SHA[0]}})
    rprd.apply([repo("site", gh, branch="gone", interval="1h")])
    p = rprd.ctl("check", "repo", "site")
    assert p.returncode == 1
    assert "BranchNotFound" in p.stdout + p.stderr
    p = rprd.ctl("check", "repo", "absent")
    assert p.returncode == 1 and "not found" in p.stderr


# ---- secrets --------------------------------------------------------------------------------

def test_token_secrets_never_leave(rprd, gh):
    gh.add_token(PAT)
    gh.add_repo("acme", "site", branches={"main": {"sha": SHA[0]}})
    rprd.apply([token("gh"), repo("site", gh, tokenRef="gh", interval="1h")])
    wait_sha(rprd, "site", SHA[0])
    outs = [rprd.ctl("get", "token", "gh", "-o", "yaml").stdout,
            rprd.ctl("get", "token", "gh", "-o", "json").stdout,
            rprd.ctl("describe", "token", "gh").stdout,
            rprd.get("/api/v1/tokens").text,
            rprd.get("/api/v1/namespaces/default/tokens/gh").text,
            rprd.get("/api/v1/logs/activity?tail=100").text]
    y = load_yaml(outs[0])
    assert "value" not in y["spec"]
    assert_no_secret(rprd, *outs)


def test_token_secret_from_file_and_env(rprd_factory, gh, monkeypatch, tmp_path):
    monkeypatch.setenv("RPR_TEST_GH_PAT", PAT)
    d = rprd_factory()
    pat_file = tmp_path / "pat"
    pat_file.write_text(PAT + "\n")
    gh.add_token(PAT)
    gh.add_repo("acme", "secret", private=True, branches={"main": {"sha": SHA[0]}})
    d.apply([{"apiVersion": "rpr/v1", "kind": "Token", "metadata": {"name": "fromfile"},
              "spec": {"type": "github", "valueFrom": {"file": str(pat_file)}}},
             {"apiVersion": "rpr/v1", "kind": "Token", "metadata": {"name": "fromenv"},
              "spec": {"type": "github", "valueFrom": {"env": "RPR_TEST_GH_PAT"}}},
             {"apiVersion": "rpr/v1", "kind": "Token", "metadata": {"name": "unset"},
              "spec": {"type": "github", "valueFrom": {"env": "RPR_TEST_UNSET_VAR"}}},
             repo("a", gh, repo_name="secret", tokenRef="fromfile", interval="1h"),
             repo("b", gh, repo_name="secret", tokenRef="fromenv", interval="1h"),
             repo("c", gh, repo_name="secret", tokenRef="unset", interval="1h")])
    wait_sha(d, "a", SHA[0])
    wait_sha(d, "b", SHA[0])
    o = wait_reason(d, "c", "TokenUnusable")
    assert "$RPR_TEST_UNSET_VAR" in ready(o)["message"], ready(o)
    assert_no_secret(d, json.dumps(d.get("/api/v1/repos").json()))


def test_wrong_token_type_is_named(rprd, gh):
    gh.add_repo("acme", "site", branches={"main": {"sha": SHA[0]}})
    rprd.apply([token("hook", type_="webhook"), repo("site", gh, tokenRef="hook", interval="1h")])
    o = wait_reason(rprd, "site", "TokenUnusable")
    assert "type webhook" in ready(o)["message"] and "github" in ready(o)["message"], ready(o)


def test_api_token_last_used(rprd):
    p = rprd.ctl("token", "create", "ci", "--role", "viewer")
    assert p.returncode == 0, p.stderr
    secret = p.stdout.strip().split()[-1]
    r = rprd.get("/api/v1/servers", token=secret)
    assert r.status == 200, r
    deadline = time.time() + WAIT
    st = {}
    while time.time() < deadline:
        st = rprd.obj("tokens", "ci").get("status", {})
        if st.get("lastUsed"):
            break
        time.sleep(0.05)
    assert st.get("lastUsed"), st
    assert secret not in json.dumps(rprd.obj("tokens", "ci"))


# ---- git over ssh ------------------------------------------------------------------------------

def test_git_over_ssh_with_a_key_token(rprd_factory, monkeypatch, tmp_path):
    from sshd import Keys, Sshd, login_user
    keys = Keys.generate(str(tmp_path / "keys"))
    where = tempfile.mkdtemp(prefix="rpr-gitsshd-")  # the login user must reach authorized_keys
    os.chmod(where, 0o755)
    sshd = Sshd(where, host_keys=[keys.host("ed25519")], authorized=[keys.client_pub("ed25519")])
    sshd.start()
    try:
        root = tempfile.mkdtemp(prefix="rpr-gitssh-")
        os.chmod(root, 0o755)
        g = GitRepo(root)
        a = g.commit("over ssh")
        user = login_user()
        subprocess.run(["chown", "-R", user, g.bare], check=True)
        url = "ssh://%s@127.0.0.1:%d%s" % (user, sshd.port, g.bare)

        # libgit2 checks the host key against $HOME/.ssh/known_hosts of rprd.
        home = tmp_path / "home"
        (home / ".ssh").mkdir(parents=True)
        with open(keys.host("ed25519") + ".pub") as f:
            kind, blob = f.read().split()[:2]
        (home / ".ssh" / "known_hosts").write_text("[127.0.0.1]:%d %s %s\n" % (sshd.port, kind, blob))
        monkeypatch.setenv("HOME", str(home))
        # libgit2's ssh transport leaves a few bytes of libssh2's behind per
        # connection; whole stacks let tests/lsan.supp see it is libgit2's.
        monkeypatch.setenv("ASAN_OPTIONS", "detect_leaks=1:fast_unwind_on_malloc=0")
        d = rprd_factory()
        d.apply([{"apiVersion": "rpr/v1", "kind": "Token", "metadata": {"name": "deploy-key"},
                  "spec": {"type": "ssh-key", "valueFrom": {"file": keys.client("ed25519")}}},
                 repo("g", provider="git", url=url, tokenRef="deploy-key", interval="1h"),
                 repo("nokey", provider="git", url=url, interval="1h")])
        o = wait_sha(d, "g", a)
        assert o["status"]["lastCommit"]["message"] == "over ssh"
        o = wait_repo(d, "nokey", lambda o: ready(o).get("status") == "False", "a failure")
        assert ready(o)["reason"] in ("AuthenticationFailed", "GitError"), ready(o)
        with open(keys.client("ed25519")) as f:
            key_text = f.read()
        assert key_text.strip().splitlines()[1] not in d.all_stderr()
        shutil.rmtree(root, ignore_errors=True)
    finally:
        sshd.stop()
        shutil.rmtree(where, ignore_errors=True)
