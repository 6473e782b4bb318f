"""A real container engine for the tests: Debian's podman with runc, serving
the Docker Engine API on a unix socket, as a plain process.

No registry is reachable, so images are built offline: a root filesystem
with /bin/busybox (busybox-static) and its applets, plus the files a test
adds, imported with `podman import`. The engine keeps its storage under
its own directory (--root, --runroot), so the tests never see or touch the
machine's containers, and is stopped by pid after removing what it ran.

`engine` is a `docker` wrapper script that sends every command to the
service named by DOCKER_HOST (`podman --remote --url "$DOCKER_HOST"`): a
command line that works with Docker's CLI works with it, and a test shows
that rprd passes DOCKER_HOST through.

    p = Podman(tmpdir); p.start()
    p.build_image("rpr-test/runner:1", {"/home/runner/run.sh": "/path/on/host"})
    DOCKER_HOST=p.docker_host p.engine run -d --network host rpr-test/runner:1 sh -c ...
    p.stop()

Where podman differs from Docker: `rm -f` first sends the stop signal and
waits the container's stop timeout (10 s) before SIGKILL, where Docker
kills at once. A container whose PID 1 ignores SIGTERM (a plain `sh -c`
does) therefore takes 10 s to remove: give PID 1 a TERM trap (sh waits
for a foreground command before running a trap: `sleep 1 & wait $!`), or
run it with `--stop-timeout 1`.
"""

import io
import os
import shutil
import signal
import subprocess
import tarfile
import time

PODMAN = "/usr/bin/podman"
BUSYBOX = "/bin/busybox"
START_TIMEOUT = 15
# runc, not crun (which fails on this cgroup layout); no ulimits podman
# cannot set inside an unprivileged build container; cgroupfs without
# systemd as PID 1.
CONTAINERS_CONF = """[containers]
default_ulimits = []
[engine]
cgroup_manager = "cgroupfs"
runtime = "runc"
events_logger = "file"
"""


def available():
    return os.path.exists(PODMAN) and os.path.exists(BUSYBOX) and shutil.which("runc") is not None


class Podman:
    def __init__(self, directory):
        self.dir = os.path.abspath(directory)
        os.makedirs(self.dir, exist_ok=True)
        # The socket is reached by the tests' plain ssh user too (as the
        # docker group would be): the directories on its path must be
        # searchable.
        os.chmod(self.dir, 0o755)
        self.conf = os.path.join(self.dir, "containers.conf")
        self.socket = os.path.join(self.dir, "podman.sock")
        self.docker_host = "unix://" + self.socket
        self.engine = os.path.join(self.dir, "docker")
        self.proc = None

    def env(self):
        e = dict(os.environ)
        e["CONTAINERS_CONF"] = self.conf
        return e

    def local(self, *args, check=True, input=None):
        """podman on this engine's storage, without the service."""
        cmd = [PODMAN, "--root", os.path.join(self.dir, "storage"),
               "--runroot", os.path.join(self.dir, "run"), *args]
        return subprocess.run(cmd, env=self.env(), input=input, capture_output=True, check=check,
                              timeout=120)

    def docker(self, *args, check=True):
        """The docker wrapper, as a user would run it: text out."""
        e = self.env()
        e["DOCKER_HOST"] = self.docker_host
        r = subprocess.run([self.engine, *args], env=e, capture_output=True, text=True, timeout=120)
        if check and r.returncode != 0:
            raise RuntimeError("docker %s: exit %d: %s" % (" ".join(args), r.returncode, r.stderr.strip()))
        return r

    def write_wrapper(self):
        with open(self.engine, "w") as f:
            f.write("#!/bin/sh\n"
                    "# docker -> podman: the command goes to the engine DOCKER_HOST names.\n"
                    ": \"${DOCKER_HOST:?DOCKER_HOST is not set}\"\n"
                    "exec %s --remote --url \"$DOCKER_HOST\" \"$@\"\n" % PODMAN)
        os.chmod(self.engine, 0o755)

    def start(self):
        with open(self.conf, "w") as f:
            f.write(CONTAINERS_CONF)
        os.chmod(self.conf, 0o644)
        self.write_wrapper()
        log = open(os.path.join(self.dir, "service.log"), "w")
        self.proc = subprocess.Popen(
            [PODMAN, "--root", os.path.join(self.dir, "storage"), "--runroot", os.path.join(self.dir, "run"),
             "system", "service", "--time", "0", self.docker_host],
            env=self.env(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)
        log.close()
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if os.path.exists(self.socket) and self.docker("version", check=False).returncode == 0:
                break
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("podman system service did not start: " + self.service_log())
            time.sleep(0.1)
        os.chmod(self.socket, 0o666)
        return self

    def service_log(self):
        try:
            with open(os.path.join(self.dir, "service.log")) as f:
                return f.read()[-2000:]
        except OSError:
            return ""

    def build_image(self, tag, files=None, applets=("sh", "wget", "cat", "sleep", "echo", "ls", "rm", "mkdir",
                                                    "kill", "sed", "grep", "tr", "date", "head", "env", "test",
                                                    "printf", "mv", "cp", "chmod", "sha256sum", "tar", "gzip")):
        """A busybox root filesystem plus files ({path in image: host path,
        or bytes}), imported as tag. Executables keep their mode."""
        tarpath = os.path.join(self.dir, "image-%s.tar" % tag.replace("/", "_").replace(":", "_"))
        with tarfile.open(tarpath, "w") as t:
            for d in ("bin", "tmp", "run", "home", "etc"):
                info = tarfile.TarInfo(d)
                info.type = tarfile.DIRTYPE
                info.mode = 0o1777 if d == "tmp" else 0o755
                t.addfile(info)
            t.add(BUSYBOX, "bin/busybox")
            for a in applets:
                info = tarfile.TarInfo("bin/" + a)
                info.type = tarfile.SYMTYPE
                info.linkname = "busybox"
                t.addfile(info)
            for path, src in (files or {}).items():
                name = path.lstrip("/")
                if isinstance(src, bytes):
                    info = tarfile.TarInfo(name)
                    info.size = len(src)
                    info.mode = 0o755
                    t.addfile(info, io.BytesIO(src))
                else:
                    t.add(src, name)
        with open(tarpath, "rb") as f:
            self.local("import", "-", tag, input=f.read())
        return tag

    def containers(self, label=None):
        """[{id, name, state, labels}] of every container (with label, as k=v)."""
        args = ["ps", "-a", "--format", "{{.ID}} {{.Names}} {{.State}}"]
        if label:
            args += ["--filter", "label=" + label]
        out = self.docker(*args).stdout
        rows = []
        for line in out.splitlines():
            parts = line.split()
            if len(parts) >= 3:
                rows.append({"id": parts[0], "name": parts[1], "state": parts[2]})
        return rows

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.local("rm", "-a", "-f", "-t", "0", check=False)
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None
        # The storage holds overlay mounts of stopped containers on some
        # drivers: podman removes them; what is left is plain files.
        self.local("system", "reset", "-f", check=False)

