"""Runners: self-hosted GitHub Actions runners kept at N on real sshd hosts
against the fake GitHub (tests/github_fake.py with github_fake_runners.py),
running the stand-in runner release (runner_release.py).

Each test applies a Token, a github Repo on the fake, Servers for two real
sshd processes (same machine, same login user: "hosts" that share a
filesystem, told apart by the Server each instance is recorded on) and a
Runner, then watches the Runner's status, the fake's registrations and the
processes on the host.
"""

import json
import os
import shutil
import signal
import stat
import subprocess
import tempfile
import time

import pytest

from conftest import free_port
from github_fake import FakeGitHub
from runner_release import build
from sshd import login_user

CONTROLLERS = True
USER = login_user()
PAT = "ghp_RuNnErSeCrEt0123456789abcdefABCDEF01"
WAIT = 60


# ---- fixtures ------------------------------------------------------------------

@pytest.fixture
def gh():
    g = FakeGitHub()
    g.start()
    g.add_repo("acme", "site")
    g.add_token(PAT, scopes="repo")
    g.runner_control("runner_switches", offline_after=3)
    yield g
    g.stop()


@pytest.fixture
def workdir():
    d = tempfile.mkdtemp(prefix="rpr-runners-")
    os.chmod(d, 0o755)
    install = os.path.join(d, "install")
    os.mkdir(install)
    shutil.chown(install, user=USER)
    yield d
    kill_runners(install)
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def release(gh, workdir):
    path, sha = build(workdir)
    os.chmod(path, 0o644)
    gh.runner_control("runner_release", path=path, version="2.321.0")
    return path, sha


@pytest.fixture
def hosts(sshd_factory):
    return [sshd_factory(), sshd_factory()]


# ---- helpers -------------------------------------------------------------------

def runner_pids(install):
    """pid -> argv of the stand-in runners' processes under install."""
    out = {}
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % p, "rb") as f:
                argv = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
            cwd = os.readlink("/proc/%s/cwd" % p)
        except OSError:
            continue
        if cwd.startswith(install):
            out[int(p)] = argv
    return out


def kill_runners(install):
    for pid in runner_pids(install):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def objects(gh, sshds, workdir, replicas=3, name="ci", **spec):
    install = os.path.join(workdir, "install")
    out = [{"apiVersion": "rpr/v1", "kind": "Token", "metadata": {"name": "gh"},
            "spec": {"type": "github", "value": PAT}},
           {"apiVersion": "rpr/v1", "kind": "Repo", "metadata": {"name": "site"},
            "spec": {"provider": "github", "owner": "acme", "name": "site", "apiURL": gh.url,
                     "tokenRef": "gh", "interval": "1h"}}]
    for i, s in enumerate(sshds):
        out.append({"apiVersion": "rpr/v1", "kind": "Server",
                    "metadata": {"name": "host%d" % (i + 1), "labels": {"ci": "true"}},
                    "spec": {"transport": "ssh", "host": "127.0.0.1", "port": s.port, "user": USER,
                             "identityFile": s.client_key if hasattr(s, "client_key") else None,
                             "hostKey": s.pin("ed25519")}})
    r = {"repo": "site", "tokenRef": "gh", "servers": {"matchLabels": {"ci": "true"}}, "replicas": replicas,
         "labels": ["linux", "gpu"], "installDir": install, "syncInterval": "1s", "registrationTimeout": "20s"}
    r.update(spec)
    out.append({"apiVersion": "rpr/v1", "kind": "Runner", "metadata": {"name": name}, "spec": r})
    return out


def apply_all(d, gh, sshds, ssh_keys, workdir, **kw):
    objs = objects(gh, sshds, workdir, **kw)
    for o in objs:
        if o["kind"] == "Server":
            o["spec"]["identityFile"] = ssh_keys.client("ed25519")
    d.apply(objs)
    return objs


def runner_obj(d, name="ci"):
    return d.obj("runners", name)


def instances(o):
    return o.get("status", {}).get("instances", [])


def wait_for(d, pred, what, name="ci", timeout=WAIT):
    deadline = time.time() + timeout
    o = None
    while time.time() < deadline:
        o = runner_obj(d, name)
        if pred(o):
            return o
        time.sleep(0.2)
    raise AssertionError("runner %s: %s not seen within %ds; status: %s\nrprd stderr:\n%s"
                         % (name, what, timeout, json.dumps(o.get("status"), indent=1), d.stderr()[-5000:]))


def idle_count(o):
    return sum(1 for i in instances(o) if i.get("state") == "idle")


def ready_condition(o):
    for c in o.get("status", {}).get("conditions", []):
        if c.get("type") == "Ready":
            return c
    return {}


# ---- cases ---------------------------------------------------------------------

def test_three_replicas_over_two_hosts_come_up_idle(rprd, gh, release, hosts, ssh_keys, workdir):
    apply_all(rprd, gh, hosts, ssh_keys, workdir, replicas=3)
    o = wait_for(rprd, lambda o: idle_count(o) == 3 and o["status"].get("readyReplicas") == 3, "3 idle")
    insts = instances(o)
    assert {i["server"] for i in insts} == {"host1", "host2"}, insts
    regs = {r["name"]: r for r in gh.runners()}
    assert len(regs) == 3, regs
    for i in insts:
        assert i["name"].startswith("ci-") and len(i["name"].split("-")[-1]) == 6, i
        assert regs[i["name"]]["id"] == i["id"] and regs[i["name"]]["status"] == "online", (i, regs)
        assert i["pid"] > 1 and "lastHeartbeat" in i and "memBytes" in i, i
        assert set(regs[i["name"]]["labels"]) == {"linux", "gpu"}, regs[i["name"]]
    assert ready_condition(o).get("status") == "True", o["status"]
