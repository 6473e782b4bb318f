"""A real OpenSSH server for the tests: /usr/sbin/sshd as a plain process.

Keys are generated once per test session with ssh-keygen (no passphrase):
host keys and client keys of each type (ed25519, ecdsa, rsa), so that a
test can pin, swap and refuse them. An Sshd listens on 127.0.0.1 at a free
port, accepts the client public keys it is given (for login_user(): a
plain /bin/sh user when we run as root), and is stopped by pid, with its
children (the sessions).

    keys = Keys.generate(tmpdir)
    d = Sshd(tmpdir, host_keys=[keys.host("ed25519")], authorized=[keys.client_pub("ed25519")])
    d.start(); d.fingerprint("ed25519") -> "SHA256:..."; d.stop()
"""

import getpass
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

SSHD = "/usr/sbin/sshd"
# When we run as root, the tests log in as this plain user whose shell is
# /bin/sh: root's start-up files here run slow tools (pyenv rehash, which
# serializes concurrent logins on a lock and hangs for a minute when a
# killed session left the lock behind). RPR_TEST_SSH_USER overrides.
PLAIN_USER = "rprtest"
KEY_TYPES = ("ed25519", "ecdsa", "rsa")
START_TIMEOUT = 10


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def keygen(path, key_type, comment="rpr-test"):
    """A new key pair at path (and path.pub)."""
    for p in (path, path + ".pub"):
        if os.path.exists(p):
            os.unlink(p)
    args = ["ssh-keygen", "-q", "-t", key_type, "-N", "", "-C", comment, "-f", path]
    if key_type == "rsa":
        args[4:4] = ["-b", "2048"]
    subprocess.run(args, check=True, stdin=subprocess.DEVNULL, capture_output=True)
    os.chmod(path, 0o600)
    return path


def fingerprint_of(pub_path):
    """"SHA256:..." as `ssh-keygen -lf` prints it."""
    out = subprocess.run(["ssh-keygen", "-lf", pub_path], check=True, capture_output=True,
                         text=True).stdout
    return next(w for w in out.split() if w.startswith("SHA256:"))


def descendants(pid):
    """Every process below pid, from /proc."""
    parent = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        parent[int(entry)] = int(fields[1])
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        kids = [c for c, pp in parent.items() if pp == p]
        out += kids
        todo += kids
    return out


def kill_pids(pids, sig):
    for p in pids:
        try:
            os.kill(p, sig)
        except ProcessLookupError:
            pass


def login_user():
    """The user the tests log in as: see PLAIN_USER."""
    user = os.environ.get("RPR_TEST_SSH_USER")
    if user:
        return user
    if os.geteuid() != 0:
        return getpass.getuser()
    if subprocess.run(["id", PLAIN_USER], capture_output=True).returncode != 0:
        subprocess.run(["useradd", "-m", "-s", "/bin/sh", PLAIN_USER], check=True, capture_output=True)
    # With UsePAM no, sshd refuses an account whose password is locked ("!").
    subprocess.run(["usermod", "-p", "*", PLAIN_USER], check=True, capture_output=True)
    return PLAIN_USER


class Keys:
    """Host and client keys of every type, made once."""

    def __init__(self, directory):
        self.dir = directory

    @classmethod
    def generate(cls, directory):
        k = cls(directory)
        os.makedirs(directory, exist_ok=True)
        for t in KEY_TYPES:
            keygen(k.host(t), t, "rpr-test-host")
            keygen(k.client(t), t, "rpr-test-client")
        return k

    def host(self, key_type):
        return os.path.join(self.dir, "host_%s" % key_type)

    def client(self, key_type):
        return os.path.join(self.dir, "client_%s" % key_type)

    def client_pub(self, key_type):
        return self.client(key_type) + ".pub"

    def host_fingerprint(self, key_type):
        return fingerprint_of(self.host(key_type) + ".pub")


SSH_KEY_NAMES = {"ed25519": "ssh-ed25519", "ecdsa": "ecdsa-sha2-nistp256", "rsa": "ssh-rsa"}


class Sshd:
    """One sshd on 127.0.0.1:port. host_keys: private key paths;
    authorized: public key paths; extra: more sshd_config lines."""

    def __init__(self, directory, host_keys, authorized, port=None, extra=()):
        # sshd reads authorized_keys as the login user: the files live in a
        # directory of their own that every user can traverse (directory,
        # when given, must be one too).
        self.dir = tempfile.mkdtemp(prefix="rpr-sshd-", dir=directory)
        os.chmod(self.dir, 0o755)
        self.port = port or free_port()
        self.host_keys = list(host_keys)
        self.authorized = list(authorized)
        self.extra = list(extra)
        self.user = login_user()
        self.proc = None
        self.log_path = os.path.join(self.dir, "sshd.log")
        self.config = os.path.join(self.dir, "sshd_config")
        self.pidfile = os.path.join(self.dir, "sshd.pid")

    def write_config(self):
        auth = os.path.join(self.dir, "authorized_keys")
        with open(auth, "w") as out:
            for p in self.authorized:
                with open(p) as f:
                    out.write(f.read().strip() + "\n")
        os.chmod(auth, 0o644)
        lines = ["Port %d" % self.port, "ListenAddress 127.0.0.1"]
        lines += ["HostKey %s" % k for k in self.host_keys]
        lines += ["AuthorizedKeysFile %s" % auth, "UsePAM no", "PasswordAuthentication no",
                  "KbdInteractiveAuthentication no", "StrictModes no", "PidFile %s" % self.pidfile,
                  "LogLevel VERBOSE", "MaxStartups 200:30:400", "MaxSessions 100"]
        # The login user's own start-up files (root's .bashrc may run slow
        # tools, or hang on their stale locks) stay out of the tests.
        home = os.path.join(self.dir, "home")
        os.makedirs(home, exist_ok=True)
        lines += ["SetEnv HOME=%s" % home]
        lines += self.extra
        with open(self.config, "w") as f:
            f.write("\n".join(lines) + "\n")

    def start(self):
        os.makedirs("/run/sshd", exist_ok=True)
        self.write_config()
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", self.config], stdin=subprocess.DEVNULL,
                                     stdout=log, stderr=log, start_new_session=True)
        log.close()
        deadline = time.time() + START_TIMEOUT
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("sshd exited with %d at start:\n%s" % (self.proc.returncode, self.log()))
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise AssertionError("sshd did not listen on port %d in %ds:\n%s" % (self.port, START_TIMEOUT,
                                                                             self.log()))

    def stop(self):
        """SIGTERM to sshd, then SIGKILL to the per-connection processes it
        started (they setsid(), so they are found by parentage first)."""
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        children = descendants(proc.pid)
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        kill_pids(children, signal.SIGKILL)

    def kill_sessions(self, sig=signal.SIGKILL):
        """Kills the connections' processes (and the commands under them),
        leaving the listener: as if the machine dropped them."""
        if self.proc is not None:
            kill_pids(descendants(self.proc.pid), sig)

    def cleanup(self):
        """Stops it and removes its files."""
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def restart(self):
        self.stop()
        return self.start()

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def fingerprint(self, key_type="ed25519"):
        """SHA256 fingerprint of this sshd's host key of key_type."""
        for k in self.host_keys:
            if os.path.basename(k).endswith(key_type):
                return fingerprint_of(k + ".pub")
        raise KeyError(key_type)

    def pin(self, key_type="ed25519"):
        """The hostKey spec value: "ssh-ed25519 SHA256:..."."""
        return "%s %s" % (SSH_KEY_NAMES[key_type], self.fingerprint(key_type))

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")[-6000:]
        except OSError:
            return ""
