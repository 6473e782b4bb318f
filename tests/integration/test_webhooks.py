"""POST /hooks/github end to end, with GitHub's real push and ping payloads
(tests/fixtures/github/webhooks, from @octokit/webhooks-examples) signed as
GitHub signs them: "sha256=" + hex HMAC-SHA256(secret, exact body bytes).

A branch push for a watched repo and branch triggers a check at once (well
before the Repo's 24h interval); a tag push, a branch deletion, another
branch or an unknown repository is acknowledged and ignored; a bad or
missing signature is 401 and changes nothing; a replayed delivery id is
ignored; ping is 200; an oversized body is 413; the form-encoded content
type works too; a webhook Token only triggers Repos of its own namespace.
"""

import copy
import hashlib
import hmac
import json
import os
import time
import uuid

import pytest

from github_fake import FakeGitHub

CONTROLLERS = True
HERE = os.path.dirname(os.path.abspath(__file__))
HOOKS = os.path.join(HERE, "..", "fixtures", "github", "webhooks")
SECRET = "It's a Secret to Everybody"
NEW = "6113728f27ae82c7b1a177c8d03f9e96e0adf246"  # the "after" of push.4.json
OLD = "%040x" % 0xBEEF
WAIT = 20


def payload(name):
    with open(os.path.join(HOOKS, name), "rb") as f:
        return f.read()


def sign(body, secret=SECRET):
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@pytest.fixture
def gh():
    g = FakeGitHub()
    g.start()
    yield g
    g.stop()


@pytest.fixture
def hooked(rprd, gh):
    """rprd with a webhook Token and a Repo watching Codertocat/Hello-World
    master (the repository of the fixtures' pushes), checked once."""
    gh.add_repo("Codertocat", "Hello-World", branches={"master": {"sha": OLD}})
    rprd.apply([
        {"apiVersion": "rpr/v1", "kind": "Token", "metadata": {"name": "hook"},
         "spec": {"type": "webhook", "value": SECRET}},
        {"apiVersion": "rpr/v1", "kind": "Repo", "metadata": {"name": "hello"},
         "spec": {"provider": "github", "url": "https://github.com/Codertocat/Hello-World",
                  "apiURL": gh.url, "branch": "master", "interval": "24h"}},
    ])
    wait_sha(rprd, "hello", OLD)
    return rprd


def deliver(d, body, event="push", signature="sign", delivery=None, content_type="application/json"):
    headers = {"X-GitHub-Delivery": delivery or str(uuid.uuid4()), "User-Agent": "GitHub-Hookshot/123abc"}
    if event is not None:
        headers["X-GitHub-Event"] = event
    if signature == "sign":
        signature = sign(body)
    if signature is not None:
        headers["X-Hub-Signature-256"] = signature
    return d.request("POST", "/hooks/github", body=body, token=None, content_type=content_type,
                     headers=headers)


def sha_of(d, name="hello"):
    return d.obj("repos", name).get("status", {}).get("lastCommit", {}).get("sha")


def wait_sha(d, name, sha, timeout=WAIT):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if sha_of(d, name) == sha:
            return
        time.sleep(0.02)
    raise AssertionError("repo %s never reached %s: %s" % (name, sha, d.obj("repos", name).get("status")))


def test_branch_push_triggers_an_immediate_check(hooked, gh):
    gh.set_head("Codertocat", "Hello-World", "master", sha=NEW, message="Update README.md")
    t0 = time.time()
    r = deliver(hooked, payload("push.4.json"))
    assert r.status == 202, r
    assert r.json()["triggered"] == ["hello"], r.json()
    wait_sha(hooked, "hello", NEW, timeout=5)
    assert time.time() - t0 < 5


def test_signed_push_5_also_triggers(hooked, gh):
    gh.set_head("Codertocat", "Hello-World", "master", sha=NEW)
    r = deliver(hooked, payload("push.5.json"))
    assert r.status == 202 and r.json()["triggered"] == ["hello"], r


@pytest.mark.parametrize("name", ["push.0.json", "push.1.json", "push.6.json"])
def test_tag_pushes_are_ignored(hooked, gh, name):
    gh.clear_requests()
    r = deliver(hooked, payload(name))
    assert r.status == 202, r
    assert "ignored" in r.json(), r.json()
    time.sleep(0.3)
    assert gh.requests() == []


def test_branch_deletion_is_ignored(hooked, gh):
    # Constructed from push.4.json: the same push, as a deletion of master.
    p = json.loads(payload("push.4.json"))
    p["deleted"] = True
    p["after"] = "0" * 40
    body = json.dumps(p).encode()
    gh.clear_requests()
    r = deliver(hooked, body)
    assert r.status == 202 and "deleted" in r.json()["ignored"], r
    time.sleep(0.3)
    assert gh.requests() == []


def test_other_branch_and_unknown_repo_are_ignored(hooked, gh):
    p = json.loads(payload("push.4.json"))
    p["ref"] = "refs/heads/other"
    r = deliver(hooked, json.dumps(p).encode())
    assert r.status == 202 and "ignored" in r.json(), r
    p = json.loads(payload("push.4.json"))
    p["repository"]["full_name"] = "someone/else"
    for k in ("clone_url", "html_url", "ssh_url", "git_url", "url", "svn_url"):
        p["repository"].pop(k, None)
    gh.clear_requests()
    r = deliver(hooked, json.dumps(p).encode())
    assert r.status == 202 and "ignored" in r.json(), r
    time.sleep(0.3)
    assert gh.requests() == []


def test_bad_or_missing_signature_is_401_and_changes_nothing(hooked, gh):
    gh.set_head("Codertocat", "Hello-World", "master", sha=NEW)
    body = payload("push.4.json")
    rev = hooked.revision()
    for sig in (None, "", "sha256=" + "0" * 64, sign(body, "wrong secret"), "sha1=abc",
                sign(body)[:-2], sign(body + b" ")):
        r = deliver(hooked, body, signature=sig)
        assert r.status == 401, (sig, r)
        assert SECRET not in r.text
    time.sleep(0.5)
    assert hooked.revision() == rev
    assert sha_of(hooked) == OLD


def test_replayed_delivery_is_ignored(hooked, gh):
    gh.set_head("Codertocat", "Hello-World", "master", sha=NEW)
    body = payload("push.4.json")
    r = deliver(hooked, body, delivery="72d3162e-cc78-11e3-81ab-4c9367dc0958")
    assert r.status == 202 and r.json().get("triggered") == ["hello"], r
    wait_sha(hooked, "hello", NEW)
    gh.set_head("Codertocat", "Hello-World", "master", sha=OLD)
    gh.clear_requests()
    r = deliver(hooked, body, delivery="72d3162e-cc78-11e3-81ab-4c9367dc0958")
    assert r.status == 200 and "received before" in r.json()["ignored"], r
    time.sleep(0.5)
    assert gh.requests() == []
    assert sha_of(hooked) == NEW


def test_ping_is_200(hooked):
    r = deliver(hooked, payload("ping.0.json"), event="ping")
    assert r.status == 200, r
    assert r.json()["message"] == "pong"


def test_oversized_body_is_413(rprd_factory):
    d = rprd_factory(extra_args=["--max-body", "65536"])
    body = b'{"zen":"' + b"x" * 70000 + b'"}'
    r = deliver(d, body, event="ping")
    assert r.status == 413, r


def test_form_encoded_payload(hooked, gh):
    import urllib.parse
    gh.set_head("Codertocat", "Hello-World", "master", sha=NEW)
    body = ("payload=" + urllib.parse.quote_plus(payload("push.4.json").decode())).encode()
    r = deliver(hooked, body, content_type="application/x-www-form-urlencoded")
    assert r.status == 202 and r.json().get("triggered") == ["hello"], r
    wait_sha(hooked, "hello", NEW)


def test_bad_json_and_missing_event(hooked):
    r = deliver(hooked, b"{not json")
    assert r.status == 400 and "line 1" in r.json()["message"], r
    r = deliver(hooked, payload("push.4.json"), event=None)
    assert r.status in (400, 401), r


def test_a_token_triggers_only_its_namespace(rprd, gh):
    gh.add_repo("Codertocat", "Hello-World", branches={"master": {"sha": OLD}})
    rprd.apply([
        {"apiVersion": "rpr/v1", "kind": "Token", "metadata": {"name": "hook", "namespace": "team-a"},
         "spec": {"type": "webhook", "value": SECRET}},
        {"apiVersion": "rpr/v1", "kind": "Repo", "metadata": {"name": "hello", "namespace": "team-b"},
         "spec": {"provider": "github", "owner": "Codertocat", "name": "Hello-World",
                  "apiURL": gh.url, "branch": "master", "interval": "24h"}},
    ])
    r = deliver(rprd, payload("push.4.json"))
    assert r.status == 202 and "ignored" in r.json() and "team-a" in r.json()["ignored"], r


def test_no_webhook_token_is_401(rprd):
    r = deliver(rprd, payload("push.4.json"))
    assert r.status == 401 and "webhook" in r.json()["message"], r


def test_api_only_rprd_says_where_to_send(rprd_factory):
    d = rprd_factory(extra_args=["--no-controllers"])
    d.apply([{"apiVersion": "rpr/v1", "kind": "Token", "metadata": {"name": "hook"},
              "spec": {"type": "webhook", "value": SECRET}}])
    r = deliver(d, payload("push.4.json"))
    assert r.status == 503 and "--no-controllers" in r.json()["message"], r
    r = deliver(d, payload("ping.0.json"), event="ping")
    assert r.status == 200, r
