"""Children of rprd get a clean environment, never rprd's own.

A Token's valueFrom.env secret lives in rprd's environment: it must not
reach a command. A command run on rprd's host (a pipeline task without a
server, a Binding on a `transport: local` Server) gets PATH, HOME and LANG,
the spec's env and the RPR_ variables, and nothing else.
"""

import time

from test_bindings import binding, git_repo, gitrepo, local_server, phase, run_log, wait_runs  # noqa: F401

CONTROLLERS = True
SECRET = "s3cret-from-rprds-env-0123456789"


def env_of(output):
    """NAME=VALUE lines of `env` as a dict (the command's own stdout)."""
    out = {}
    for line in output.splitlines():
        parts = line.split(" ", 2)
        if len(parts) == 3 and parts[1] == "out" and "=" in parts[2]:
            k, v = parts[2].split("=", 1)
            out[k] = v
    return out


def start_with_secret(rprd_factory, monkeypatch):
    monkeypatch.setenv("RPR_TEST_GH_PAT", SECRET)
    monkeypatch.setenv("LANG", "C.UTF-8")
    d = rprd_factory()
    d.apply([{"apiVersion": "rpr/v1", "kind": "Token", "metadata": {"name": "gh"},
              "spec": {"type": "github", "valueFrom": {"env": "RPR_TEST_GH_PAT"}}}])
    return d


def check_clean(env, output):
    assert SECRET not in output, "a valueFrom.env secret reached a command"
    assert "RPR_TEST_GH_PAT" not in env and "ASAN_OPTIONS" not in env and "LSAN_OPTIONS" not in env, \
        sorted(env)
    assert env.get("PATH") and env.get("HOME") and env.get("LANG") == "C.UTF-8", env
    assert env.get("APP_ENV") == "production"


def test_pipeline_task_on_rprds_host_gets_a_clean_environment(rprd_factory, monkeypatch):
    d = start_with_secret(rprd_factory, monkeypatch)
    d.apply([{"apiVersion": "rpr/v1", "kind": "Pipeline", "metadata": {"name": "p"},
              "spec": {"tasks": {"show": {"script": "env", "env": {"APP_ENV": "production"}}}}}])
    assert d.request("POST", "/api/v1/namespaces/default/pipelines/p/runs", body={}).status == 201
    deadline = time.time() + 30
    while time.time() < deadline:
        j = d.get("/api/v1/namespaces/default/runs/p-1").json()
        if j.get("status", {}).get("phase") in ("Succeeded", "Failed"):
            break
        time.sleep(0.1)
    assert j["status"]["phase"] == "Succeeded", j["status"]
    p = d.ctl("logs", "run/p-1", "--task", "show")
    assert p.returncode == 0, p.stderr
    env = env_of(p.stdout)
    check_clean(env, p.stdout)
    assert env.get("RPR_TASK") == "show" and env.get("RPR_RUN") == "p-1"


def test_binding_on_a_local_server_gets_a_clean_environment(rprd_factory, monkeypatch, gitrepo):  # noqa: F811
    d = start_with_secret(rprd_factory, monkeypatch)
    d.apply([git_repo("site", gitrepo), local_server("a"),
             binding("show", "env", server="a", env={"APP_ENV": "production"})])
    rs = wait_runs(d, "show", lambda rs: rs and phase(rs[0]) in ("Succeeded", "Failed"), "the run")
    assert phase(rs[0]) == "Succeeded", rs[0]["status"]
    log = run_log(d, rs[0]["metadata"]["name"])
    env = env_of(log)
    check_clean(env, log)
    assert env.get("RPR_BINDING") == "show" and env.get("RPR_SERVER") == "a"
