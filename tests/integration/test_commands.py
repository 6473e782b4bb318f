"""Commands for servers that are mostly offline (issue 19): one command,
a set of servers chosen once, one durable Run per server; the reachable
ones run it at once, the others as soon as they are back, each tracked
until it has run — across restarts, with its exit code and output. Real
sshd processes on loopback, stopped and started to play offline devices."""

import os
import pathlib
import shutil
import tempfile
import time

from conftest import metric_sum
from sshd import login_user
from test_bindings import out_lines, run_log, ssh_server, wait_for

CONTROLLERS = True
USER = login_user()


def command(name, cmd, names=None, labels=None, **spec):
    s = {"command": cmd}
    if names:
        s["serverNames"] = names
    if labels:
        s["servers"] = {"matchLabels": labels}
    s.update(spec)
    return {"apiVersion": "rpr/v1", "kind": "Command", "metadata": {"name": name}, "spec": s}


def status(d, name):
    return d.obj("commands", name).get("status", {})


def entry(d, name, server):
    return status(d, name).get("servers", {}).get(server, {})


def runs_of(d, name):
    r = d.get("/api/v1/namespaces/default/runs?labelSelector=command%3D" + name)
    assert r.status == 200, r
    return {run["spec"]["server"]: run for run in r.json()["items"]}


def devices(rprd, sshd_factory, ssh_keys, n, down=()):
    daemons = [sshd_factory() for _ in range(n)]
    for i in down:
        daemons[i].stop()
    rprd.apply([ssh_server("pi-%d" % i, s, ssh_keys, labels={"fleet": "north"}) for i, s in enumerate(daemons)])
    for i in down:
        wait_for(lambda: rprd.obj("servers", "pi-%d" % i).get("status", {}).get("phase") == "Unreachable",
                 "pi-%d unreachable" % i)
    return daemons


def test_offline_devices_get_the_command_when_they_are_back(rprd, sshd_factory, ssh_keys):
    daemons = devices(rprd, sshd_factory, ssh_keys, 3, down=(1, 2))
    p = rprd.ctl("run", "command", "upgrade", "--servers", "pi-0,pi-1,pi-2", "--wait-timeout", "7d", "--",
                 "echo", "upgraded", "$RPR_SERVER")
    assert p.returncode == 0, p.stderr
    assert "command/upgrade created" in p.stdout

    wait_for(lambda: entry(rprd, "upgrade", "pi-0").get("phase") == "Succeeded", "pi-0 to run it at once")
    st = status(rprd, "upgrade")
    assert st["phase"] == "Running" and st["targets"] == ["pi-0", "pi-1", "pi-2"]
    assert st["counts"] == {"total": 3, "succeeded": 1, "failed": 0, "running": 0, "waiting": 2}, st["counts"]
    assert st["servers"]["pi-0"]["exitCode"] == 0
    runs = runs_of(rprd, "upgrade")
    assert runs["pi-1"]["status"]["reason"] == "WaitingForServer"
    assert out_lines(run_log(rprd, runs["pi-0"]["metadata"]["name"])) == ["upgraded pi-0"]

    # One device comes back while rprd is down: the command survives the
    # restart and runs there; the last still waits.
    rprd.stop()
    daemons[1].start()
    rprd.start()
    wait_for(lambda: entry(rprd, "upgrade", "pi-1").get("phase") == "Succeeded", "pi-1 once it is back")
    assert entry(rprd, "upgrade", "pi-2").get("phase") == "Pending"
    assert status(rprd, "upgrade")["phase"] == "Running"

    daemons[2].start()
    wait_for(lambda: status(rprd, "upgrade").get("phase") == "Succeeded", "every device done")
    st = status(rprd, "upgrade")
    assert st["counts"]["succeeded"] == 3 and st["counts"]["waiting"] == 0 and "completionTime" in st
    runs = runs_of(rprd, "upgrade")
    assert len(runs) == 3, "one Run per device, never a second"
    for i in range(3):
        assert out_lines(run_log(rprd, runs["pi-%d" % i]["metadata"]["name"])) == ["upgraded pi-%d" % i]

    p = rprd.ctl("get", "commands")
    assert p.returncode == 0 and "upgrade" in p.stdout and "Succeeded" in p.stdout, p.stdout


def test_labels_choose_the_devices_once_and_failures_are_counted(rprd, sshd_factory, ssh_keys):
    devices(rprd, sshd_factory, ssh_keys, 2)
    rprd.apply([command("probe", 'test "$RPR_SERVER" = pi-0', labels={"fleet": "north"})])
    wait_for(lambda: status(rprd, "probe").get("phase") == "Failed", "both to finish")
    st = status(rprd, "probe")
    assert st["servers"]["pi-0"]["phase"] == "Succeeded"
    assert st["servers"]["pi-1"]["phase"] == "Failed" and st["servers"]["pi-1"]["exitCode"] == 1
    assert st["counts"] == {"total": 2, "succeeded": 1, "failed": 1, "running": 0, "waiting": 0}

    # A Server labelled later is not a target: the set was chosen once.
    rprd.apply([ssh_server("pi-9", sshd_factory(), ssh_keys, labels={"fleet": "north"})])
    time.sleep(1)
    assert sorted(runs_of(rprd, "probe")) == ["pi-0", "pi-1"]

    # An edit is not run again; the status says so.
    rprd.apply([command("probe", "echo changed", labels={"fleet": "north"})])
    wait_for(lambda: any(c["type"] == "SpecChanged" for c in status(rprd, "probe").get("conditions", [])),
             "the SpecChanged condition")
    assert len(runs_of(rprd, "probe")) == 2


def test_rprctl_run_command_waits_and_reports_each_server(rprd, sshd_factory, ssh_keys):
    devices(rprd, sshd_factory, ssh_keys, 2)
    p = rprd.ctl("run", "command", "-l", "fleet=north", "--wait", "--", "exit", "3")
    assert p.returncode == 1, p.stdout + p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].startswith("command/cmd-") and lines[0].endswith(" created")
    assert any(l.startswith("pi-0: Failed ExitCode (exit 3), run/cmd-") for l in lines), lines
    assert lines[-1].endswith(" Failed")

    name = lines[0].split()[0].split("/")[1]
    p = rprd.ctl("run", "command", name, "--servers", "pi-0", "--", "true")
    assert p.returncode == 1 and 'command "%s" exists' % name in p.stderr


def test_a_device_that_stays_away_fails_after_wait_timeout(rprd, sshd_factory, ssh_keys):
    devices(rprd, sshd_factory, ssh_keys, 1, down=(0,))
    rprd.apply([command("late", "true", names=["pi-0"], waitTimeout="2s")])
    wait_for(lambda: status(rprd, "late").get("phase") == "Failed", "the wait to time out")
    e = entry(rprd, "late", "pi-0")
    assert e["phase"] == "Failed" and e["reason"] == "ServerUnreachable", e
    assert status(rprd, "late")["counts"]["failed"] == 1


def test_deleting_a_command_cancels_what_waits_and_removes_its_runs(rprd, sshd_factory, ssh_keys):
    devices(rprd, sshd_factory, ssh_keys, 2, down=(1,))
    rprd.apply([command("gone", "echo hi", names=["pi-0", "pi-1"])])
    wait_for(lambda: entry(rprd, "gone", "pi-0").get("phase") == "Succeeded", "pi-0 done")
    assert len(runs_of(rprd, "gone")) == 2
    r = rprd.request("DELETE", "/api/v1/namespaces/default/commands/gone")
    assert r.status == 200, r
    wait_for(lambda: rprd.request("GET", "/api/v1/namespaces/default/commands/gone").status == 404,
             "the command to go")
    assert runs_of(rprd, "gone") == {}


def test_bad_commands_are_refused_naming_the_field(rprd):
    bad = [
        (command("x", "true"), "spec"),  # no servers at all
        (command("x", "", names=["a"]), "spec.command"),
        (command("x", "true", names=["a"], labels={"k": "v"}), "spec"),
        (command("x", "true", names=["Not_A_Name"]), "spec.serverNames[0]"),
        (command("x", "true", names=["a"], waitTimeout="soon"), "spec.waitTimeout"),
    ]
    for obj, field in bad:
        r = rprd.request("POST", "/api/v1/apply", body={"items": [obj]})
        assert r.status == 422, (obj, r)
        assert field in r.text, (field, r.text)
    assert rprd.get("/api/v1/namespaces/default/commands").json()["items"] == []

    p = rprd.ctl("run", "command", "--servers", "a", "-l", "k=v", "--", "true")
    assert p.returncode == 1 and "--servers a,b,c or -l k=v (one of them)" in p.stderr
    p = rprd.ctl("run", "command", "--servers", "a")
    assert p.returncode == 1 and "needs the command after --" in p.stderr
    p = rprd.ctl("run", "command", "-l", "k!=v", "--", "true")
    assert p.returncode == 1 and "k=v[,k=v] labels only" in p.stderr
    p = rprd.ctl("run", "pipeline", "p", "--servers", "a")
    assert p.returncode == 1 and "--servers is for run command" in p.stderr


def test_kill_9_right_after_the_apply_runs_each_server_once(rprd, sshd_factory, ssh_keys):
    """However the crash falls — before the Runs are made, between, or while
    they run — after the restart every server has run it exactly once
    (a Run interrupted mid-command ends Interrupted, and a Command does not
    retry: at most once)."""
    devices(rprd, sshd_factory, ssh_keys, 3)
    marks = pathlib.Path(tempfile.mkdtemp(prefix="rpr-marks-"))  # the ssh user writes here
    os.chmod(marks, 0o777)
    for delay in (0.0, 0.05, 0.2):
        name = "once-%d" % int(delay * 1000)
        rprd.apply([command(name, "echo x >> %s/%s-$RPR_SERVER" % (marks, name), labels={"fleet": "north"})])
        time.sleep(delay)
        rprd.kill()
        rprd.start()
        wait_for(lambda: status(rprd, name).get("phase") in ("Succeeded", "Failed"), name + " to finish")
        runs = runs_of(rprd, name)
        assert sorted(runs) == ["pi-0", "pi-1", "pi-2"], "one Run per server"
        for server, run in runs.items():
            f = marks / ("%s-%s" % (name, server))
            ran = f.read_text().count("x") if f.exists() else 0
            if run["status"]["phase"] == "Succeeded":
                assert ran == 1, (server, ran)
            else:
                assert run["status"]["phase"] == "Interrupted" and ran <= 1, run["status"]
    shutil.rmtree(marks)
