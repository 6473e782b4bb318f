"""Runners on agent Servers (issues 17 and 19): a `transport: agent` Server
serves Runners as an ssh one does, in both modes. Real rpr-agent processes
on this machine against a real rprd over TLS on 127.0.0.1, the fake GitHub
with the stand-in runner release (runner_release.py), and, for mode
container, the real podman that podman.py starts: the agent's jobs reach it
through DOCKER_HOST (spec.container.host), as commands over ssh do.

Every command a Runner sends to such a Server is an agent job
(pkg/server/server-run.c): its environment, its stdin (the runner's
registration secret), its exit code and its output are what the Runner
acts on. The secrets reach the job on its stdin only: never its
environment, its command line, a log of rprd or of the agent, or a file
the agent keeps."""

import hashlib
import os
import stat
import threading
import time

import pytest

from test_agents import agents, rprd, running_agent, wait_phase  # noqa: F401 (fixtures)
from test_agents import JOIN_SECRET, exec_api, output_of
from test_agents_work import big_release
from test_runners import gh, idle_count, release, runner_image, runner_pids, workdir  # noqa: F401 (fixtures)
from test_runners import PAT, instances, objects

CONTROLLERS = True
WAIT = 90
LABEL = "rpr.runner=default.ci"
COMMAND_TIMEOUT = 30  # seconds: the Runners' spec.commandTimeout here


# ---- helpers -------------------------------------------------------------------------

def runner_objects(gh, workdir, **kw):
    """The Token, Repo and Runner of test_runners.py, without its ssh Servers:
    the Runner selects ci=true, the agent's label. Its commands on the host
    time out after COMMAND_TIMEOUT (spec.commandTimeout, 2 minutes by
    default): what waits for a busy agent waits that long (for a stopped
    one, only until it is seen offline)."""
    kw.setdefault("commandTimeout", "%ds" % COMMAND_TIMEOUT)
    return [o for o in objects(gh, [], workdir, **kw) if o["kind"] != "Server"]


def wait_runner(d, pred, what, timeout=WAIT):
    deadline = time.time() + timeout
    o = None
    while time.time() < deadline:
        r = d.get("/api/v1/namespaces/default/runners/ci")
        assert r.status == 200, "runner ci: gone before %s: %s" % (what, r)
        o = r.json()
        if pred(o):
            return o
        time.sleep(0.2)
    raise AssertionError("runner ci: %s not seen within %ds; status: %s\nrprd stderr:\n%s"
                         % (what, timeout, o.get("status"), d.stderr()[-5000:]))


def wait_gone(d, timeout=WAIT):
    deadline = time.time() + timeout
    while time.time() < deadline and d.get("/api/v1/namespaces/default/runners/ci").status != 404:
        time.sleep(0.2)
    assert d.get("/api/v1/namespaces/default/runners/ci").status == 404, d.stderr()[-3000:]


def recording_engine(podman, workdir):
    """An engine (spec.container.engine) that appends the environment and
    the arguments of each call to a file, then runs podman's docker wrapper:
    what the agent's job gave the engine, seen from inside the job."""
    record = os.path.join(workdir, "engine-calls")
    path = os.path.join(workdir, "docker")
    with open(path, "w") as f:
        f.write("#!/bin/sh\n"
                "{ echo '--- call'; env; echo \"args: $*\"; } >>%s\n"
                "exec %s \"$@\"\n" % (record, podman.engine))
    os.chmod(path, 0o755)
    return path, record


def container_spec(podman, engine=None):
    return {"image": "rpr-test/runner:1", "engine": engine or podman.engine, "host": podman.docker_host,
            "args": ["--network", "host"]}


@pytest.fixture
def no_container_left(podman):
    """No runner container of a test is left for the next on the session's
    podman (the rprd that started them is gone when it ends)."""
    def remove():
        left = [r["id"] for r in podman.containers(label=LABEL)]
        if left:
            podman.docker("rm", "-f", "-t", "0", *left, check=False)
    remove()
    yield
    remove()


def container_runner(d, agents, gh, workdir, podman, replicas, engine=None):  # noqa: F811
    """An agent ci-box running, the runner image built, a container-mode
    Runner of `replicas` applied and all of them idle: (agent, status)."""
    a = running_agent(d, agents, "ci-box", labels="ci=true")
    runner_image(podman, workdir)
    d.apply(runner_objects(gh, workdir, replicas=replicas, mode="container",
                           container=container_spec(podman, engine)))
    o = wait_runner(d, lambda o: idle_count(o) == replicas and o["status"].get("readyReplicas") == replicas,
                    "%d idle containers" % replicas)
    return a, o


def container_ids(podman):
    return sorted(r["id"][:12] for r in podman.containers(label=LABEL))


def assert_no_secret_in_logs_or_agent_files(d, a, registration, more=None):
    """None of the runners' registration secrets, the GitHub token, the
    join token or the agent's credential is in rprd's log, the agent's log,
    a file of the agent's state dir (its credential file aside) or the
    texts of more ({what: text})."""
    secrets = list(registration) + [PAT, JOIN_SECRET, a.credential()]
    texts = {"rprd's log": d.all_stderr(), "the agent's log": a.log(), **(more or {})}
    for p in files_under(a.state_dir):
        if os.path.basename(p) != "credential":
            with open(p, errors="replace") as f:
                texts["the agent's file " + p] = f.read()
    for what, text in texts.items():
        for s in secrets:
            assert s not in text, "a secret in " + what


def delete_while_the_agent_is_stopped(d, a, gh, o):
    """Stops the agent, deletes the Runner of one runner (o: its status),
    and checks that it is deregistered and waits for the agent: its name."""
    name = instances(o)[0]["name"]
    stopped = time.time()
    a.stop()
    wait_phase(d, "ci-box", "Unreachable", timeout=30)
    # A command the agent had not taken when it stopped fails as its agent
    # goes offline: the Runner does not wait out the command's timeout.
    wait_runner(d, lambda o: "cannot be reached" in str(instances(o)), "ci-box unreachable",
                timeout=COMMAND_TIMEOUT)
    assert time.time() - stopped < COMMAND_TIMEOUT, "the Runner waited out its command's timeout"
    assert d.request("DELETE", "/api/v1/namespaces/default/runners/ci").status in (200, 202)
    # Deregistered at GitHub; what runs on the host waits for its agent.
    o = wait_runner(d, lambda o: "when its agent polls again" in str(instances(o)),
                    "the runner waiting for its agent")
    assert gh.runners() == []
    assert [i["name"] for i in instances(o)] == [name], instances(o)
    assert "Deleting" in str(o["status"]["conditions"]), o["status"]
    time.sleep(4)
    assert [i["name"] for i in instances(d.obj("runners", "ci"))] == [name], "the Runner went, its runner left"
    return name


def files_under(top):
    for root, _, names in os.walk(top):
        for n in names:
            p = os.path.join(root, n)
            if os.path.isfile(p) and not os.path.islink(p):
                yield p


# ---- mode native ---------------------------------------------------------------------

def test_a_runner_on_an_agent_server_comes_up_and_is_removed_through_the_agent(rprd, agents, gh,  # noqa: F811
                                                                               release, workdir):
    a = running_agent(rprd, agents, "ci-box", labels="ci=true")
    rprd.apply(runner_objects(gh, workdir, replicas=2))
    o = wait_runner(rprd, lambda o: idle_count(o) == 2 and o["status"].get("readyReplicas") == 2, "2 idle")
    insts = instances(o)
    assert {i["server"] for i in insts} == {"ci-box"}, insts
    regs = {r["name"]: r for r in gh.runners()}
    assert len(regs) == 2 and all(regs[i["name"]]["status"] == "online" for i in insts), (insts, regs)
    assert all(i["pid"] > 1 and i["memBytes"] > 0 for i in insts), insts
    install = os.path.join(workdir, "install")
    assert len(runner_pids(install)) >= 2
    # The JIT configuration went on the job's stdin: in no rprd or agent
    # log, nor in a file the agent keeps.
    assert "jitconfig" not in rprd.stderr().lower()
    assert_no_secret_in_logs_or_agent_files(rprd, a, gh.runner_attr("jits"))

    r = rprd.request("DELETE", "/api/v1/namespaces/default/runners/ci")
    assert r.status in (200, 202), r
    wait_gone(rprd, 60)
    assert gh.runners() == []
    assert not runner_pids(install), "the agent's host has no runner left"


def test_a_runner_on_an_agent_server_installs_a_release_over_1_mib_by_download(rprd, agents, gh,  # noqa: F811
                                                                                workdir):
    path, sha = big_release(gh, workdir)
    a = running_agent(rprd, agents, "ci-box", labels="ci=true")
    rprd.apply(runner_objects(gh, workdir, replicas=1))
    wait_runner(rprd, lambda o: idle_count(o) == 1 and o["status"].get("readyReplicas") == 1, "1 idle")
    kept = os.path.join(workdir, "install", ".releases", sha + ".tar.gz")
    assert os.path.getsize(kept) == os.path.getsize(path), "the whole release reached the host"
    with open(kept, "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == sha
    assert "input goes on" not in a.log(), "one download, not resumed"


# ---- mode container ------------------------------------------------------------------

@pytest.mark.usefixtures("no_container_left")
@pytest.mark.parametrize("how", ["jit", "registration-token"])
def test_a_container_runner_on_an_agent_server_comes_up_with_docker_host_and_no_secret_in_the_job(
        rprd, agents, gh, workdir, podman, how):  # noqa: F811
    if how == "registration-token":
        gh.runner_control("runner_switches", refuse_jit=True)
    engine, record = recording_engine(podman, workdir)
    a, o = container_runner(rprd, agents, gh, workdir, podman, 2, engine=engine)
    insts = instances(o)
    assert {i["server"] for i in insts} == {"ci-box"}, insts
    regs = {r["name"]: r for r in gh.runners()}
    assert sorted(regs) == sorted(i["name"] for i in insts), (regs, insts)
    assert all(regs[i["name"]]["status"] == "online" for i in insts), regs
    # The containers are the engine's that DOCKER_HOST names, one per instance.
    rows = podman.containers(label=LABEL)
    assert len(rows) == 2 and all(r["state"].lower() in ("up", "running") for r in rows), rows
    assert sorted(i["containerId"][:12] for i in insts) == container_ids(podman), (insts, rows)
    for i in insts:
        secret = os.path.join(workdir, "install", "default.ci", i["name"], ".secret")
        assert stat.S_IMODE(os.stat(secret).st_mode) == 0o600
    # CPU and memory, from the engine's stats through the agent.
    o = wait_runner(rprd, lambda o: all(i.get("memBytes", 0) > 0 for i in instances(o)), "the containers' stats")

    with open(record) as f:
        calls = f.read()
    assert "DOCKER_HOST=" + podman.docker_host in calls, calls[:3000]
    assert "args: run -d --name rpr-default-" in calls, calls[:3000]
    registration = gh.runner_attr("jits") if how == "jit" else list(gh.runner_attr("reg_tokens"))
    assert len(registration) >= 1 and all(len(x) >= 20 for x in registration), registration
    assert (o["status"].get("jitRefused") is True) == (how != "jit"), o["status"]
    assert_no_secret_in_logs_or_agent_files(rprd, a, registration, {
        "the engine's environment and arguments": calls, "the Runner's status": str(o),
        "docker inspect": podman.docker("inspect", *container_ids(podman)).stdout})


@pytest.mark.usefixtures("no_container_left")
def test_a_container_runner_on_an_agent_server_is_replaced_when_its_container_is_killed(
        rprd, agents, gh, workdir, podman):  # noqa: F811
    _, o = container_runner(rprd, agents, gh, workdir, podman, 2)
    before = {i["name"]: i["containerId"][:12] for i in instances(o)}
    victim = sorted(before)[0]
    podman.docker("kill", "rpr-default-" + victim)
    o = wait_runner(rprd, lambda o: any(i["name"] == victim and i["state"] == "failed" for i in instances(o)),
                    "the killed one failed")
    failed = [i for i in instances(o) if i["name"] == victim][0]
    assert failed["failures"] == 1 and failed.get("exitCode") == 137, failed
    o = wait_runner(rprd, lambda o: idle_count(o) == 2 and
                    {i["name"]: i["containerId"][:12] for i in instances(o)}[victim] != before[victim],
                    "replaced by a fresh container")
    after = {i["name"]: i["containerId"][:12] for i in instances(o)}
    assert sorted(after) == sorted(before), "the first failure keeps the name"
    assert [n for n in before if after[n] != before[n]] == [victim], (before, after)
    assert container_ids(podman) == sorted(after.values())
    assert sorted(r["name"] for r in gh.runners()) == sorted(after)


@pytest.mark.usefixtures("no_container_left")
def test_a_container_runner_on_an_agent_server_is_scaled_down_and_its_containers_removed(
        rprd, agents, gh, workdir, podman):  # noqa: F811
    _, o = container_runner(rprd, agents, gh, workdir, podman, 2)
    spec = dict(replicas=1, mode="container", container=container_spec(podman))
    rprd.apply(runner_objects(gh, workdir, **spec))
    o = wait_runner(rprd, lambda o: len(instances(o)) == 1 and idle_count(o) == 1, "scaled to 1")
    kept = instances(o)[0]
    assert container_ids(podman) == [kept["containerId"][:12]]
    assert [r["name"] for r in gh.runners()] == [kept["name"]]

    spec["replicas"] = 0
    rprd.apply(runner_objects(gh, workdir, **spec))
    wait_runner(rprd, lambda o: not instances(o), "scaled to 0")
    assert podman.containers(label=LABEL) == []
    assert gh.runners() == []
    assert os.listdir(os.path.join(workdir, "install", "default.ci")) == []


@pytest.mark.usefixtures("no_container_left")
def test_a_container_runner_deleted_while_its_agent_is_stopped_is_removed_when_it_is_back(
        rprd, agents, gh, workdir, podman):  # noqa: F811
    a, o = container_runner(rprd, agents, gh, workdir, podman, 1)
    delete_while_the_agent_is_stopped(rprd, a, gh, o)
    assert len(podman.containers(label=LABEL)) == 1

    a.start()
    wait_gone(rprd)
    assert podman.containers(label=LABEL) == []
    assert os.listdir(os.path.join(workdir, "install", "default.ci")) == []


def test_a_runner_waiting_for_its_stopped_agent_to_be_removed_goes_when_its_server_is_deleted(
        rprd, agents, gh, release, workdir):  # noqa: F811
    a = running_agent(rprd, agents, "ci-box", labels="ci=true")
    rprd.apply(runner_objects(gh, workdir, replicas=1))
    o = wait_runner(rprd, lambda o: idle_count(o) == 1, "1 idle")
    name = delete_while_the_agent_is_stopped(rprd, a, gh, o)
    assert rprd.request("DELETE", "/api/v1/namespaces/default/servers/ci-box").status in (200, 202)
    # Given up on: the Runner goes, what it left on that host stays.
    wait_gone(rprd)
    assert os.path.isdir(os.path.join(workdir, "install", "default.ci", name))


def test_a_runner_is_kept_while_its_agent_is_busy_with_a_long_command(rprd, agents, gh, release,  # noqa: F811
                                                                      workdir):
    # The agent takes one job at a time (--capacity 1, its default): the
    # Runner's commands wait behind a long one, up to their timeout, and
    # fail, twice over. An agent that polls is no host that is down: its
    # runner is neither replaced nor deregistered.
    running_agent(rprd, agents, "ci-box", labels="ci=true")
    timeout = 10  # the Runner's commands' here, short: they are waited out
    rprd.apply(runner_objects(gh, workdir, replicas=1, commandTimeout="%ds" % timeout))
    before = instances(wait_runner(rprd, lambda o: idle_count(o) == 1, "1 idle"))[0]
    result = {}
    t = threading.Thread(target=lambda: result.update(
        lines=exec_api(rprd, {"servers": ["ci-box"], "command": "sleep %d; echo done" % (3 * timeout)},
                       timeout=6 * timeout)))
    t.start()
    t.join(6 * timeout)
    assert output_of(result["lines"], "ci-box") == "done\n", result
    o = wait_runner(rprd, lambda o: idle_count(o) == 1, "1 idle after the long command")
    after = instances(o)[0]
    assert (after["name"], after.get("id"), after["pid"]) == (before["name"], before["id"], before["pid"]), after
    assert not after.get("abandoned") and gh.runner_attr("gone") == [], (after, gh.runner_attr("gone"))
    assert [r["name"] for r in gh.runners()] == [before["name"]]
