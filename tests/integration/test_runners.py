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

from conftest import metric_sum
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
        assert i["pid"] > 1 and "lastHeartbeat" in i and i["memBytes"] > 0, i
        assert set(regs[i["name"]]["labels"]) == {"linux", "gpu"}, regs[i["name"]]
    assert ready_condition(o).get("status") == "True", o["status"]

    wide = rprd.ctl("get", "runners", "-o", "wide")
    assert wide.returncode == 0, wide.stderr
    head, row = wide.stdout.splitlines()[:2]
    for col in ("READY", "BUSY", "SERVERS", "MODE", "VERSION"):
        assert col in head.split(), head
    cells = dict(zip(head.split(), row.split()))
    assert cells["READY"] == "3" and cells["BUSY"] == "0" and cells["MODE"] == "native", wide.stdout
    assert cells["VERSION"] == "2.321.0" and "host1" in cells["SERVERS"], wide.stdout
    desc = rprd.ctl("describe", "runner", "ci")
    assert desc.returncode == 0 and all(i["name"] in desc.stdout for i in insts), desc.stdout
    m = rprd.metrics()
    assert metric_sum(m, "rpr_runner_instances", state="idle") == 3, [k for k in m if k[0].startswith("rpr_runner")]
    assert metric_sum(m, "rpr_runner_instances", state="busy") == 0


def by_state(o, state):
    return [i for i in instances(o) if i.get("state") == state]


def wait_fake(gh, pred, what, timeout=WAIT):
    deadline = time.time() + timeout
    regs = None
    while time.time() < deadline:
        regs = gh.runners()
        if pred(regs):
            return regs
        time.sleep(0.2)
    raise AssertionError("fake GitHub: %s not seen within %ds; registrations: %s" % (what, timeout, regs))


def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(") ")[1].split()[0] != "Z"
    except OSError:
        return False


def start_idle(d, gh, hosts, ssh_keys, workdir, replicas, **spec):
    apply_all(d, gh, hosts, ssh_keys, workdir, replicas=replicas, **spec)
    return wait_for(d, lambda o: idle_count(o) == replicas, "%d idle" % replicas)


def test_job_makes_one_busy_and_scale_to_zero_waits_for_it(rprd, gh, release, hosts, ssh_keys, workdir):
    o = start_idle(rprd, gh, hosts, ssh_keys, workdir, 2)
    busy_name = instances(o)[0]["name"]
    busy_pid = instances(o)[0]["pid"]
    gh.runner_control("runner_job", name=busy_name)
    o = wait_for(rprd, lambda o: [i["name"] for i in by_state(o, "busy")] == [busy_name] and
                 o["status"].get("busyReplicas") == 1, "one busy")

    apply_all(rprd, gh, hosts, ssh_keys, workdir, replicas=0)
    o = wait_for(rprd, lambda o: [i["name"] for i in instances(o)] == [busy_name], "the idle one gone")
    time.sleep(3)  # several passes: the busy one must stay
    o = runner_obj(rprd)
    assert [i["name"] for i in instances(o)] == [busy_name], instances(o)
    assert alive(busy_pid), "the runner with a job was stopped"
    assert busy_name in [r["name"] for r in gh.runners()], "the busy runner was deregistered"
    assert busy_name not in gh.runner_attr("gone")

    gh.runner_control("runner_job_done", name=busy_name)
    o = wait_for(rprd, lambda o: not instances(o), "no instance left after the job")
    wait_fake(gh, lambda regs: not regs, "no registration left")
    assert o["status"]["readyReplicas"] == 0 and o["status"]["busyReplicas"] == 0, o["status"]
    assert not runner_pids(os.path.join(workdir, "install")), "a runner process is left"


def test_ephemeral_runner_is_replaced_after_its_job(rprd, gh, release, hosts, ssh_keys, workdir):
    o = start_idle(rprd, gh, hosts, ssh_keys, workdir, 1)
    first = instances(o)[0]
    gh.runner_control("runner_job", name=first["name"])
    wait_for(rprd, lambda o: by_state(o, "busy"), "busy")
    gh.runner_control("runner_job_done", name=first["name"])
    o = wait_for(rprd, lambda o: idle_count(o) == 1 and instances(o)[0]["name"] != first["name"],
                 "a fresh idle runner")
    fresh = instances(o)[0]
    assert fresh["id"] != first["id"] and fresh["name"].startswith("ci-1-"), (first, fresh)
    assert not alive(first["pid"])
    regs = gh.runners()
    assert [r["name"] for r in regs] == [fresh["name"]], regs
    assert gh.runner_attr("jobs") == 1


def test_killed_runner_process_is_replaced_after_backoff(rprd, gh, release, hosts, ssh_keys, workdir):
    o = start_idle(rprd, gh, hosts, ssh_keys, workdir, 1)
    inst = instances(o)[0]
    os.killpg(inst["pid"], signal.SIGKILL)
    o = wait_for(rprd, lambda o: by_state(o, "failed"), "failed")
    failed = by_state(o, "failed")[0]
    assert failed["failures"] == 1 and "gone" in failed["message"], failed
    o = wait_for(rprd, lambda o: idle_count(o) == 1 and instances(o)[0]["pid"] != inst["pid"], "replaced")
    again = instances(o)[0]
    assert again["name"] == inst["name"], "the first failures keep the name"
    assert again["id"] != inst["id"]
    assert [r["name"] for r in gh.runners()] == [inst["name"]]


def test_host_down_replaced_on_the_other_and_cleaned_on_return(rprd, gh, release, hosts, ssh_keys, workdir):
    o = start_idle(rprd, gh, hosts, ssh_keys, workdir, 2)
    on1 = [i for i in instances(o) if i["server"] == "host1"]
    assert len(on1) == 1, instances(o)
    lost = on1[0]
    hosts[0].stop()
    o = wait_for(rprd, lambda o: ready_condition(o).get("reason") == "ServerUnreachable" or
                 any(i.get("abandoned") for i in instances(o)), "host1 unreachable")
    o = wait_for(rprd, lambda o: sum(1 for i in instances(o) if i["server"] == "host2" and
                                     i["state"] == "idle") == 2, "two idle on host2")
    assert lost["name"] not in [r["name"] for r in gh.runners() if r["status"] == "online"]
    lost_dir = os.path.join(workdir, "install", "default.ci", lost["name"])
    hosts[0].start()
    o = wait_for(rprd, lambda o: len(instances(o)) == 2 and all(i["server"] == "host2" for i in instances(o)),
                 "the abandoned one cleaned")
    assert not os.path.exists(lost_dir), "its directory was not removed"
    assert not alive(lost["pid"])
    assert sorted(r["name"] for r in gh.runners()) == sorted(i["name"] for i in instances(o))


def test_registration_that_never_arrives_is_killed_and_replaced(rprd, gh, release, hosts, ssh_keys, workdir):
    gh.runner_control("runner_switches", blackhole=True)
    apply_all(rprd, gh, hosts, ssh_keys, workdir, replicas=1, registrationTimeout="3s")
    o = wait_for(rprd, lambda o: ready_condition(o).get("reason") == "RegistrationTimeout", "RegistrationTimeout")
    assert "registrationTimeout" in ready_condition(o)["message"], ready_condition(o)
    first = instances(o)[0]
    assert first["failures"] == 1 and first["state"] == "failed", first
    gh.runner_control("runner_switches", blackhole=False)
    o = wait_for(rprd, lambda o: idle_count(o) == 1, "idle once heard")
    assert not alive(first["pid"]), "the runner that timed out was not killed"
    assert instances(o)[0]["name"] == first["name"] and instances(o)[0]["id"] != first.get("id")
    assert [r["id"] for r in gh.runners()] == [instances(o)[0]["id"]]


def test_orphan_registration_is_deleted(rprd, gh, release, hosts, ssh_keys, workdir):
    gh.runner_control("runner_add", scope="repo:acme/site", name="ci-7-orphan")
    gh.runner_control("runner_add", scope="repo:acme/site", name="someone-elses")
    start_idle(rprd, gh, hosts, ssh_keys, workdir, 1)
    wait_fake(gh, lambda regs: "ci-7-orphan" not in [r["name"] for r in regs], "the orphan deleted")
    assert "someone-elses" in [r["name"] for r in gh.runners()], "a registration not named as ours was deleted"
    assert "ci-7-orphan" in gh.runner_attr("gone")
    assert "orphan registration ci-7-orphan" in rprd.stderr()


def test_exit_7_is_outdated(rprd, gh, release, hosts, ssh_keys, workdir):
    start_idle(rprd, gh, hosts, ssh_keys, workdir, 1)
    gh.runner_control("runner_switches", deprecated=True)
    o = wait_for(rprd, lambda o: any(c.get("type") == "Outdated" for c in o["status"].get("conditions", [])),
                 "the Outdated condition")
    assert by_state(o, "outdated") or any(i.get("exitCode") == 7 for i in instances(o)), instances(o)
    assert ready_condition(o)["reason"] == "Outdated", ready_condition(o)


def test_delete_removes_every_registration_and_process(rprd, gh, release, hosts, ssh_keys, workdir):
    start_idle(rprd, gh, hosts, ssh_keys, workdir, 3)
    assert len(runner_pids(os.path.join(workdir, "install"))) >= 3
    r = rprd.request("DELETE", "/api/v1/namespaces/default/runners/ci")
    assert r.status in (200, 202), r
    deadline = time.time() + WAIT
    while time.time() < deadline and rprd.get("/api/v1/namespaces/default/runners/ci").status != 404:
        time.sleep(0.2)
    assert rprd.get("/api/v1/namespaces/default/runners/ci").status == 404, rprd.stderr()[-3000:]
    assert gh.runners() == []
    assert not runner_pids(os.path.join(workdir, "install"))
    assert os.listdir(os.path.join(workdir, "install", "default.ci")) == []


def test_token_without_rights_is_token_forbidden(rprd, gh, release, hosts, ssh_keys, workdir):
    gh.add_token(PAT, scopes="read:org")
    apply_all(rprd, gh, hosts, ssh_keys, workdir, replicas=1)
    o = wait_for(rprd, lambda o: ready_condition(o).get("reason") == "TokenForbidden", "TokenForbidden")
    assert "Administration: write" in ready_condition(o)["message"], ready_condition(o)
    assert gh.runners() == [] and not instances(o), instances(o)


def test_registration_token_and_config_sh_where_jit_is_refused(rprd, gh, release, hosts, ssh_keys, workdir):
    gh.runner_control("runner_switches", refuse_jit=True)
    o = start_idle(rprd, gh, hosts, ssh_keys, workdir, 1)
    inst = instances(o)[0]
    d = os.path.join(workdir, "install", "default.ci", inst["name"])
    assert os.path.exists(os.path.join(d, ".runner")) and not os.path.exists(os.path.join(d, ".jitconfig"))
    assert o["status"].get("jitRefused") is True
    assert [r["name"] for r in gh.runners()] == [inst["name"]]


def test_rprd_killed_mid_registration_leaves_no_orphan(rprd_factory, gh, release, hosts, ssh_keys, workdir):
    d = rprd_factory()
    gh.runner_control("runner_switches", jit_delay=3)
    apply_all(d, gh, hosts, ssh_keys, workdir, replicas=1)
    deadline = time.time() + WAIT
    while time.time() < deadline and gh.runner_attr("jit_waiting") < 1:
        time.sleep(0.05)
    assert gh.runner_attr("jit_waiting") >= 1, d.stderr()[-3000:]
    d.kill()
    wait_fake(gh, lambda regs: len(regs) == 1, "the registration made for the killed rprd")
    orphan = gh.runners()[0]["name"]
    gh.runner_control("runner_switches", jit_delay=0)
    d.start()
    o = wait_for(d, lambda o: idle_count(o) == 1, "idle after the restart")
    regs = gh.runners()
    assert [r["name"] for r in regs] == [instances(o)[0]["name"]], regs
    assert [r["id"] for r in regs] == [instances(o)[0]["id"]]
    assert orphan in gh.runner_attr("gone"), "the registration the killed rprd asked for is left"


# ---- container mode ---------------------------------------------------------------

def runner_image(podman, workdir):
    """A busybox image with the stand-in runner in /home/runner."""
    rel = os.path.join(workdir, "image-release")
    os.mkdir(rel)
    path, _ = build(rel)
    subprocess.run(["tar", "-xzf", path, "-C", rel], check=True)
    files = {"/home/runner/config.sh": os.path.join(rel, "config.sh"),
             "/home/runner/run.sh": os.path.join(rel, "run.sh"),
             "/home/runner/bin/Runner.Listener": os.path.join(rel, "bin", "Runner.Listener")}
    applets = ("sh", "wget", "cat", "sleep", "echo", "ls", "rm", "mkdir", "kill", "sed", "grep", "tr", "date",
               "head", "env", "test", "printf", "mv", "cp", "chmod", "dirname", "base64")
    return podman.build_image("rpr-test/runner:1", files, applets=applets)


def test_container_mode_on_podman(rprd, gh, hosts, ssh_keys, workdir, podman):
    image = runner_image(podman, workdir)
    container = {"image": image, "engine": podman.engine, "host": podman.docker_host,
                 "args": ["--network", "host"]}
    apply_all(rprd, gh, hosts[:1], ssh_keys, workdir, replicas=1, mode="container", container=container)
    o = wait_for(rprd, lambda o: idle_count(o) == 1, "a container runner idle")
    inst = instances(o)[0]
    rows = podman.containers(label="rpr.runner=default.ci")
    assert len(rows) == 1 and rows[0]["state"].lower() in ("up", "running"), rows
    assert inst.get("containerId") and rows[0]["id"].startswith(inst["containerId"][:12]), (inst, rows)
    inspect = podman.docker("inspect", rows[0]["id"]).stdout
    for s in gh.runner_attr("jits") + [PAT]:
        assert s not in inspect, "a secret in docker inspect"
    # Its CPU and memory, from the engine's stats.
    o = wait_for(rprd, lambda o: instances(o) and instances(o)[0].get("memBytes", 0) > 0, "the container's stats")
    assert isinstance(instances(o)[0].get("cpuPercent"), (int, float)), instances(o)[0]

    gh.runner_control("runner_job", name=inst["name"])
    wait_for(rprd, lambda o: by_state(o, "busy"), "busy in its container")
    gh.runner_control("runner_job_done", name=inst["name"])
    o = wait_for(rprd, lambda o: idle_count(o) == 1 and instances(o)[0]["name"] != inst["name"],
                 "replaced by a fresh container")
    fresh = instances(o)[0]
    rows = podman.containers(label="rpr.runner=default.ci")
    assert [r["id"][:12] for r in rows] == [fresh["containerId"][:12]], (rows, fresh)

    apply_all(rprd, gh, hosts[:1], ssh_keys, workdir, replicas=0, mode="container", container=container)
    wait_for(rprd, lambda o: not instances(o), "scaled to 0")
    assert podman.containers(label="rpr.runner=default.ci") == []
    assert gh.runners() == []


def test_rate_limit_is_a_condition_not_a_loop(rprd, gh, release, hosts, ssh_keys, workdir):
    gh.set_rate_limit(PAT, limit=5000, remaining=0, reset=int(time.time()) + 3600)
    apply_all(rprd, gh, hosts, ssh_keys, workdir, replicas=2)
    o = wait_for(rprd, lambda o: ready_condition(o).get("reason") == "RateLimited", "RateLimited")
    assert "waiting" in ready_condition(o)["message"], ready_condition(o)
    gh.clear_requests()
    time.sleep(6)
    asked = [r for r in gh.requests() if "/actions/" in r["path"]]
    assert len(asked) == 0, "GitHub asked again while the limit was spent: %s" % asked
    assert gh.runners() == [] and not instances(runner_obj(rprd))


def test_deleting_waits_for_a_busy_runner_and_says_so(rprd, gh, release, hosts, ssh_keys, workdir):
    o = start_idle(rprd, gh, hosts, ssh_keys, workdir, 2)
    busy = instances(o)[0]
    gh.runner_control("runner_job", name=busy["name"])
    wait_for(rprd, lambda o: by_state(o, "busy"), "busy")
    assert rprd.request("DELETE", "/api/v1/namespaces/default/runners/ci").status in (200, 202)
    o = wait_for(rprd, lambda o: [i["name"] for i in instances(o)] == [busy["name"]] and
                 ready_condition(o).get("reason") == "Deleting", "only the busy one left, Deleting")
    assert "running a job" in json.dumps(instances(o)), instances(o)
    assert alive(busy["pid"])
    gh.runner_control("runner_job_done", name=busy["name"])
    deadline = time.time() + WAIT
    while time.time() < deadline and rprd.get("/api/v1/namespaces/default/runners/ci").status != 404:
        time.sleep(0.2)
    assert rprd.get("/api/v1/namespaces/default/runners/ci").status == 404
    assert gh.runners() == []


def test_rprd_restart_keeps_the_runners_it_started(rprd_factory, gh, release, hosts, ssh_keys, workdir):
    d = rprd_factory()
    o = start_idle(d, gh, hosts, ssh_keys, workdir, 2)
    before = sorted((i["name"], i["pid"], i["id"]) for i in instances(o))
    jits = len(gh.runner_attr("jits"))
    d.restart()
    time.sleep(4)  # a few passes of the new rprd
    o = wait_for(d, lambda o: idle_count(o) == 2, "still 2 idle")
    assert sorted((i["name"], i["pid"], i["id"]) for i in instances(o)) == before
    assert len(gh.runner_attr("jits")) == jits, "the restarted rprd registered runners again"
    assert all(alive(pid) for _, pid, _ in before)


def test_container_mode_without_image_is_invalid_spec(rprd, gh, release, hosts, ssh_keys, workdir):
    apply_all(rprd, gh, hosts, ssh_keys, workdir, replicas=1, mode="container", container={"engine": "docker"})
    o = wait_for(rprd, lambda o: ready_condition(o).get("reason") == "InvalidSpec", "InvalidSpec")
    assert "spec.container.image" in ready_condition(o)["message"], ready_condition(o)
    time.sleep(2)
    assert gh.runners() == [] and not instances(runner_obj(rprd))


def test_org_runner_registers_in_the_default_group(rprd, gh, release, hosts, ssh_keys, workdir):
    objs = objects(gh, hosts, workdir, replicas=1)
    for o in objs:
        if o["kind"] == "Server":
            o["spec"]["identityFile"] = ssh_keys.client("ed25519")
        if o["kind"] == "Runner":
            del o["spec"]["repo"]
            o["spec"].update({"org": "acme", "apiURL": gh.url})
    rprd.apply(objs)
    o = wait_for(rprd, lambda o: idle_count(o) == 1, "an org runner idle")
    regs = gh.runners()
    assert [(r["name"], r["scope"]) for r in regs] == [(instances(o)[0]["name"], "org:acme")], regs
    paths = [r["path"] for r in gh.requests()]
    assert any(p.startswith("/orgs/acme/actions/runner-groups") for p in paths), paths
    assert any(p.startswith("/orgs/acme/actions/runners/generate-jitconfig") for p in paths), paths
