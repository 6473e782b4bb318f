"""The container engine the Runner tests drive (podman.py) works as a
Docker host: an image built offline runs through the `docker` wrapper with
DOCKER_HOST, answers inspect, and is removed. If this fails, the container
tests after it say nothing about rpr."""

import getpass
import os
import subprocess
import time


def test_engine_runs_inspects_and_removes_a_container(podman, tmp_path):
    script = tmp_path / "hello.sh"
    script.write_text("#!/bin/sh\ntrap 'exit 0' TERM\necho \"hello from $(cat /run/input)\"\n"
                      "while :; do sleep 1 & wait $!; done\n")
    os.chmod(script, 0o755)
    podman.build_image("rpr-test/hello:1", {"/usr/local/bin/hello": str(script)})
    data = tmp_path / "input"
    data.write_text("the host")
    os.chmod(data, 0o600)

    cid = podman.docker("run", "-d", "--name", "hello-1", "--label", "rpr.test=hello", "--network", "host",
                        "-v", "%s:/run/input:ro" % data, "rpr-test/hello:1", "/usr/local/bin/hello").stdout.strip()
    assert len(cid) == 64, cid
    state = podman.docker("inspect", "--format", "{{.State.Status}} {{.State.Pid}}", "hello-1").stdout.split()
    assert state[0] == "running" and int(state[1]) > 0, state
    assert [c["name"] for c in podman.containers("rpr.test=hello")] == ["hello-1"]

    for _ in range(50):
        if "hello from the host" in podman.docker("logs", "hello-1").stdout:
            break
        time.sleep(0.1)
    assert "hello from the host" in podman.docker("logs", "hello-1").stdout

    podman.docker("rm", "-f", "hello-1")
    assert podman.containers("rpr.test=hello") == []
    assert podman.docker("inspect", "hello-1", check=False).returncode != 0


def test_the_plain_ssh_user_reaches_the_engine(podman):
    """Runner hosts log in as a plain user (sshd.py): the wrapper and the
    socket must be theirs to use, as the docker group makes them."""
    from sshd import login_user
    user = login_user()
    cmd = "DOCKER_HOST=%s %s ps -a" % (podman.docker_host, podman.engine)
    as_user = ["su", "-s", "/bin/sh", user, "-c", cmd] if user != getpass.getuser() else ["/bin/sh", "-c", cmd]
    r = subprocess.run(as_user, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "CONTAINER ID" in r.stdout
