"""Runners' secrets (issue 17): the JIT configuration, the registration token
and the GitHub token never reach a log, the Runner's status, an API answer,
an error message or a command line on the host; the JIT file is 0600. Real
sshd hosts and the fake GitHub (test_runners.py has the helpers)."""

import hashlib
import hmac
import json
import os
import stat
import time
import uuid

from conftest import metric_sum
from test_runners import (  # noqa: F401 (fixtures and helpers)
    PAT, gh, hosts, instances, objects, release, start_idle, workdir)

CONTROLLERS = True


def test_nothing_secret_in_logs_status_api_or_argv(rprd, gh, release, hosts, ssh_keys, workdir):
    o = start_idle(rprd, gh, hosts, ssh_keys, workdir, 2)
    jits = gh.runner_attr("jits")
    assert len(jits) == 2
    secrets = [PAT] + jits
    texts = {"stderr": rprd.all_stderr(), "status": json.dumps(o),
             "api": rprd.get("/api/v1/namespaces/default/runners").text,
             "describe": rprd.ctl("describe", "runner", "ci").stdout}
    for name in os.listdir(os.path.join(rprd.state_dir, "logs")) if os.path.isdir(
            os.path.join(rprd.state_dir, "logs")) else []:
        with open(os.path.join(rprd.state_dir, "logs", name), errors="replace") as f:
            texts["log " + name] = f.read()
    for what, text in texts.items():
        for s in secrets:
            assert s not in text, "a secret in " + what
    for inst in instances(o):
        f = os.path.join(workdir, "install", "default.ci", inst["name"], ".jitconfig")
        assert stat.S_IMODE(os.stat(f).st_mode) == 0o600, oct(os.stat(f).st_mode)
    assert_on_no_command_line(secrets)


def assert_on_no_command_line(secrets):
    """No process on this machine has one of secrets in its argv."""
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                with open("/proc/%s/cmdline" % p, "rb") as f:
                    argv = f.read().decode(errors="replace")
            except OSError:
                continue
            for s in secrets:
                assert s not in argv, "a secret on the command line of pid %s" % p


# ---- workflow_job deliveries (issue 26) ------------------------------------------

HOOKS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "github", "webhooks")
HOOK_SECRET = "whsec-runners-security-0123456789"


def hook_payload(name):
    with open(os.path.join(HOOKS, name), "rb") as f:
        return f.read()


def hook_sign(body, secret=HOOK_SECRET):
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def deliver_job(d, body, signature="sign", delivery=None):
    headers = {"X-GitHub-Event": "workflow_job", "X-GitHub-Delivery": delivery or str(uuid.uuid4())}
    if signature == "sign":
        signature = hook_sign(body)
    if signature is not None:
        headers["X-Hub-Signature-256"] = signature
    return d.request("POST", "/hooks/github", body=body, token=None, headers=headers)


def k8s_runner(d, gh, hosts, ssh_keys, workdir):
    """An autoscaled Runner of lineville/elastic-machines-testing with the
    label k8s: what the real payloads workflow_job.6.json (queued) and
    .7.json (waiting) ask for, sent byte for byte."""
    gh.add_repo("lineville", "elastic-machines-testing")
    objs = objects(gh, hosts, workdir)
    for o in objs:
        if o["kind"] == "Server":
            o["spec"]["identityFile"] = ssh_keys.client("ed25519")
        if o["kind"] == "Repo":
            o["spec"].update({"owner": "lineville", "name": "elastic-machines-testing"})
        if o["kind"] == "Runner":
            del o["spec"]["replicas"]
            o["spec"]["labels"] = ["k8s"]
            o["spec"]["autoscale"] = {"max": 5, "idle": 0, "interval": "1h", "webhookTokenRef": "hooks"}
    objs.insert(0, {"apiVersion": "rpr/v1", "kind": "Token", "metadata": {"name": "hooks"},
                    "spec": {"type": "webhook", "value": HOOK_SECRET}})
    d.apply(objs)
    deadline = time.time() + 30
    while time.time() < deadline:
        o = d.obj("runners", "ci")
        if "lastPoll" in o.get("status", {}).get("autoscale", {}):
            return o
        time.sleep(0.2)
    raise AssertionError("no first poll: %s" % o.get("status"))


def test_unsigned_or_wrongly_signed_workflow_job_is_401_and_scales_nothing(rprd, gh, release, hosts, ssh_keys,
                                                                          workdir):
    k8s_runner(rprd, gh, hosts, ssh_keys, workdir)
    body = hook_payload("workflow_job.6.json")
    for sig in (None, hook_sign(body, "not-the-secret"), hook_sign(body + b" ")):
        r = deliver_job(rprd, body, signature=sig)
        assert r.status == 401, (sig, r.text)
    time.sleep(3)
    o = rprd.obj("runners", "ci")
    a = o["status"]["autoscale"]
    assert a.get("desired", 0) == 0 and a.get("queued", 0) == 0 and not instances(o), o["status"]
    assert gh.runners() == []


def test_redelivered_workflow_job_is_counted_once(rprd, gh, release, hosts, ssh_keys, workdir):
    k8s_runner(rprd, gh, hosts, ssh_keys, workdir)
    body = hook_payload("workflow_job.6.json")
    delivery = str(uuid.uuid4())
    first = deliver_job(rprd, body, delivery=delivery)
    assert first.status == 202 and "counted for Runner ci" in first.text, first.text
    # GitHub's redelivery (a new delivery id), and a replay of the same id.
    again = deliver_job(rprd, body)
    assert again.status == 202 and "counted before" in again.text, again.text
    replay = deliver_job(rprd, body, delivery=delivery)
    assert replay.status == 200 and "received before" in replay.text, replay.text
    deadline = time.time() + 20
    while time.time() < deadline:
        o = rprd.obj("runners", "ci")
        if o["status"]["autoscale"].get("desired") == 1 and len(instances(o)) == 1:
            break
        time.sleep(0.2)
    time.sleep(2)
    o = rprd.obj("runners", "ci")
    assert o["status"]["autoscale"]["queued"] == 1 and o["status"]["autoscale"]["desired"] == 1, o["status"]
    assert len(instances(o)) == 1, instances(o)
    # The same job waiting (workflow_job.7.json): another action, no longer queued.
    w = deliver_job(rprd, hook_payload("workflow_job.7.json"))
    assert w.status == 202 and "counted for Runner ci" in w.text, w.text
    deadline = time.time() + 10
    while time.time() < deadline and rprd.obj("runners", "ci")["status"]["autoscale"]["queued"] != 0:
        time.sleep(0.2)
    assert rprd.obj("runners", "ci")["status"]["autoscale"]["queued"] == 0
    m = rprd.metrics()
    assert metric_sum(m, "rpr_workflow_job_deliveries_total", outcome="duplicate") >= 1
    assert metric_sum(m, "rpr_workflow_job_deliveries_total", outcome="counted") == 2
