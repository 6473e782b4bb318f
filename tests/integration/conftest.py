"""Integration test harness: a real rprd on a fresh state dir.

Every test that asks for the `rprd` fixture gets its own daemon, started on a
new temporary state directory with a free loopback TCP port and its unix
socket, and stopped with SIGTERM afterwards. Teardown asserts that rprd
exited 0 and that neither it nor any rprctl run printed a sanitizer report
(the suite runs against the ASan+UBSan build, so memory errors and leaks fail
the test that caused them).

The helpers:
  d.request(method, path, body=..., token=..., via="tcp"|"unix") -> Resp
  d.ctl(*args, input=..., token=..., via=...) -> CompletedProcess (rprctl)
  d.apply(objs) -> ApplyResult JSON (asserts 200)
  d.revision() -> the store revision from /healthz
"""

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import pytest
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
# tests/github_fake.py, the fake GitHub API, is shared with the benchmarks.
sys.path.insert(0, os.path.join(REPO, "tests"))
BIN_DIR = os.environ.get("RPR_BIN_DIR", os.path.join(REPO, "build", "asan", "bin"))
RPRD = os.path.join(BIN_DIR, "rprd")
RPRCTL = os.path.join(BIN_DIR, "rprctl")

# Every rprd a test starts may connect to loopback only: a stray address in a
# test fails loudly (NetworkNotAllowed) instead of reaching a network.
LOOPBACK_ONLY = ["--allow-networks", "127.0.0.0/8,::1/128"]

SANITIZER_MARKS = ("ERROR: AddressSanitizer", "LeakSanitizer", "runtime error:")

# The whole suite talks to the daemon with short timeouts: a hung daemon
# must fail a test, not the CI job.
HTTP_TIMEOUT = 30
START_TIMEOUT = 20
STOP_TIMEOUT = 30


def sanitizer_env():
    env = dict(os.environ)
    env.setdefault("LSAN_OPTIONS", "suppressions=" + os.path.join(REPO, "tests", "lsan.supp"))
    asan = env.get("ASAN_OPTIONS", "")
    if "detect_leaks" not in asan:
        asan = (asan + ":" if asan else "") + "detect_leaks=1"
    env["ASAN_OPTIONS"] = asan
    env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
    # rprctl must not pick up a token or server from the developer's setup.
    for k in ("RPR_TOKEN", "RPR_SERVER"):
        env.pop(k, None)
    return env


def assert_no_sanitizer_report(text, what):
    for mark in SANITIZER_MARKS:
        assert mark not in text, "%s printed a sanitizer report:\n%s" % (what, text[-6000:])


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class UnixHTTPConnection(http.client.HTTPConnection):
    """http.client over a unix socket."""

    def __init__(self, path, timeout=HTTP_TIMEOUT):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.unix_path)
        self.sock = s


class Resp:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers  # dict, lower-case names
        self.body = body

    @property
    def text(self):
        return self.body.decode("utf-8", "replace")

    def json(self):
        try:
            return json.loads(self.body)
        except ValueError as e:
            raise AssertionError("answer is not JSON (%s): %r" % (e, self.body[:500]))

    def __repr__(self):
        return "<Resp %d %s>" % (self.status, self.body[:300])


class Rprd:
    """One rprd process on a state dir (which may outlive it for restarts)."""

    def __init__(self, state_dir=None, extra_args=(), port=None):
        self.own_dir = state_dir is None
        self.state_dir = state_dir or tempfile.mkdtemp(prefix="rpr-it-")
        self.port = port or free_port()
        self.sock = os.path.join(self.state_dir, "rpr.sock")
        self.url = "http://127.0.0.1:%d" % self.port
        self.extra_args = list(extra_args)
        self.proc = None
        self.stderr_path = None
        self.stderr_logs = []  # stderr of every incarnation
        self.ctl_outputs = []
        self.runs = 0

    # ---- process ---------------------------------------------------------

    def start(self):
        self.runs += 1
        self.stderr_path = os.path.join(
            tempfile.gettempdir(), "rprd-stderr-%d-%d-%d.log" % (os.getpid(), self.port, self.runs))
        self.stderr_logs.append(self.stderr_path)
        args = [RPRD, "--state-dir", self.state_dir,
                "--listen", "unix:" + self.sock,
                "--listen", "tcp:127.0.0.1:%d" % self.port] + self.extra_args
        if "--allow-networks" not in self.extra_args:
            args += LOOPBACK_ONLY
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                                         env=sanitizer_env(), cwd=self.state_dir)
        deadline = time.time() + START_TIMEOUT
        last = None
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("rprd exited with %d at start:\n%s"
                                     % (self.proc.returncode, self.stderr()))
            try:
                r = self.request("GET", "/healthz", token=None)
                if r.status == 200:
                    break
                last = r
            except OSError as e:
                last = e
            time.sleep(0.05)
        else:
            self.kill()
            raise AssertionError("rprd did not answer /healthz in %ds (last: %r):\n%s"
                                 % (START_TIMEOUT, last, self.stderr()))
        assert os.path.exists(self.sock), "no unix socket at " + self.sock
        with open(os.path.join(self.state_dir, "admin.token")) as f:
            self.token = f.read().strip()
        return self

    def stop(self):
        """SIGTERM; asserts a clean exit 0 and no sanitizer report."""
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                raise AssertionError("rprd did not stop within %ds of SIGTERM:\n%s"
                                     % (STOP_TIMEOUT, self.stderr()))
        text = self.stderr()
        assert_no_sanitizer_report(text, "rprd")
        assert proc.returncode == 0, "rprd exited with %d:\n%s" % (proc.returncode, text[-6000:])

    def kill(self):
        """SIGKILL, as a crash would; no checks."""
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        proc.kill()
        proc.wait()

    def restart(self):
        self.stop()
        return self.start()

    def cleanup(self):
        if self.own_dir:
            shutil.rmtree(self.state_dir, ignore_errors=True)
        for p in self.stderr_logs:
            try:
                os.unlink(p)
            except OSError:
                pass

    def stderr(self):
        """stderr of the current (or last) incarnation."""
        try:
            with open(self.stderr_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except (OSError, TypeError):
            return ""

    def all_stderr(self):
        out = []
        for p in self.stderr_logs:
            try:
                with open(p, "rb") as f:
                    out.append(f.read().decode("utf-8", "replace"))
            except OSError:
                pass
        return "".join(out)

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    # ---- HTTP ------------------------------------------------------------

    def request(self, method, path, body=None, token="admin", content_type=None, via="tcp",
                headers=None, timeout=HTTP_TIMEOUT):
        """One request. token="admin" uses the admin token, None sends none.
        body may be bytes, str, or a JSON-able value (sent as JSON)."""
        hdrs = dict(headers or {})
        if token == "admin":
            token = self.token
        if token is not None:
            hdrs["Authorization"] = "Bearer " + token
        data = None
        if body is not None:
            if isinstance(body, (dict, list)):
                data = json.dumps(body).encode()
                content_type = content_type or "application/json"
            elif isinstance(body, str):
                data = body.encode()
            else:
                data = body
            hdrs["Content-Type"] = content_type or "application/json"
        elif method in ("POST", "PUT"):
            data = b""
            if content_type:
                hdrs["Content-Type"] = content_type
        if via == "unix":
            conn = UnixHTTPConnection(self.sock, timeout=timeout)
            try:
                conn.request(method, path, body=data, headers=hdrs)
                r = conn.getresponse()
                return Resp(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
            finally:
                conn.close()
        req = urllib.request.Request(self.url + path, data=data, headers=hdrs, method=method)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return Resp(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
        except urllib.error.HTTPError as e:
            return Resp(e.code, {k.lower(): v for k, v in e.headers.items()}, e.read())

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def apply(self, objs, dry_run=False, token="admin"):
        # ?objects=1: the answer carries each object as stored, which the
        # tests read (rprctl asks for it only with -o yaml|json).
        r = self.request("POST", "/api/v1/apply?objects=1" + ("&dryRun=1" if dry_run else ""), body=objs,
                         token=token)
        assert r.status == 200, r
        res = r.json()
        assert res["kind"] == "ApplyResult", res
        return res

    def obj(self, plural, name, ns="default"):
        r = self.get("/api/v1/namespaces/%s/%s/%s" % (ns, plural, name))
        assert r.status == 200, r
        return r.json()

    def health(self):
        r = self.get("/healthz", token=None)
        assert r.status == 200, r
        return r.json()

    def revision(self):
        return int(self.health()["revision"])

    def metrics(self):
        r = self.get("/metrics", token=None)
        assert r.status == 200, r
        return parse_metrics(r.text)

    def watch(self, path, timeout=15, token="admin"):
        """Opens a watch stream over the unix socket; returns a Watch."""
        return Watch(self, path, timeout, self.token if token == "admin" else token)

    # ---- rprctl ----------------------------------------------------------

    def ctl(self, *args, input=None, token="admin", via="tcp", server=True, timeout=60, cwd=None):
        argv = [RPRCTL]
        if server:
            argv += ["--server", self.url if via == "tcp" else "unix:" + self.sock]
        if token == "admin":
            token = self.token
        if token is not None:
            argv += ["--token", token]
        argv += [str(a) for a in args]
        p = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout,
                           env=sanitizer_env(), cwd=cwd or self.state_dir)
        self.ctl_outputs.append((argv, p))
        assert_no_sanitizer_report(p.stderr, "rprctl " + " ".join(argv[1:]))
        return p


class Watch:
    """A watch stream read line by line with a timeout."""

    def __init__(self, d, path, timeout, token):
        self.conn = UnixHTTPConnection(d.sock, timeout=timeout)
        hdrs = {"Authorization": "Bearer " + token} if token else {}
        self.conn.request("GET", path, headers=hdrs)
        self.resp = self.conn.getresponse()
        self.status = self.resp.status

    def body_json(self):
        return json.loads(self.resp.read())

    def next(self):
        while True:
            try:
                line = self.resp.readline()
            except (socket.timeout, TimeoutError):
                raise AssertionError("no watch event within the timeout")
            if not line:
                raise AssertionError("watch stream ended")
            line = line.strip()
            if line:
                return json.loads(line)

    def events(self, n):
        return [self.next() for _ in range(n)]

    def close(self):
        try:
            self.conn.close()
        except OSError:
            pass


def parse_metrics(text):
    """{(name, frozenset(labels.items())): value}"""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name_labels, _, value = line.rpartition(" ")
        labels = {}
        if "{" in name_labels:
            name, _, rest = name_labels.partition("{")
            rest = rest.rstrip("}")
            for part in split_labels(rest):
                k, _, v = part.partition("=")
                labels[k] = v.strip('"')
        else:
            name = name_labels
        out[(name, frozenset(labels.items()))] = float(value)
    return out


def split_labels(s):
    parts, cur, q = [], "", False
    for ch in s:
        if ch == '"':
            q = not q
        if ch == "," and not q:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    if cur:
        parts.append(cur)
    return parts


def metric_sum(m, name, **labels):
    total = 0.0
    for (n, ls), v in m.items():
        if n == name and all((k, val) in ls for k, val in labels.items()):
            total += v
    return total


class _Loader(yaml.SafeLoader):
    """YAML 1.2-ish: no timestamps (rpr keeps date-times as strings)."""


_Loader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:timestamp"]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}


def load_yaml(text):
    return yaml.load(text, Loader=_Loader)


# ---- objects ------------------------------------------------------------------

def server(name, ns=None, port=1, host="127.0.0.1", labels=None, **spec):
    o = {"apiVersion": "rpr/v1", "kind": "Server",
         "metadata": {"name": name},
         "spec": dict({"host": host, "port": port}, **spec)}
    if ns:
        o["metadata"]["namespace"] = ns
    if labels:
        o["metadata"]["labels"] = labels
    return o


def http_raw(d, data, timeout=30):
    """Sends data to rprd's TCP listener exactly as given (no client to
    tidy it up); returns the answer's status code and body."""
    with socket.create_connection(("127.0.0.1", d.port), timeout=timeout) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        answer = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body


def status_of(r):
    """Checks that an error answer is a Status object; returns it."""
    s = r.json()
    assert s.get("kind") == "Status", s
    assert s.get("apiVersion") == "rpr/v1", s
    assert s.get("code") == r.status, s
    return s


# ---- fixtures -----------------------------------------------------------------

@pytest.fixture(scope="session", autouse=True)
def binaries():
    for b in (RPRD, RPRCTL):
        if not os.access(b, os.X_OK):
            pytest.exit("missing %s (build with make SAN=1, or set RPR_BIN_DIR)" % b, returncode=2)


@pytest.fixture
def rprd_factory(request):
    """Starts daemons on demand (extra args, shared state dirs); stops all.
    The API's own tests run rprd with --no-controllers, so that nothing but
    the test writes to the store; a module that sets CONTROLLERS = True gets
    the controllers running."""
    made = []
    controllers = getattr(request.module, "CONTROLLERS", False)

    def make(state_dir=None, extra_args=(), start=True):
        if not controllers:
            extra_args = ["--no-controllers", *extra_args]
        d = Rprd(state_dir=state_dir, extra_args=extra_args)
        made.append(d)
        return d.start() if start else d

    yield make
    errors = []
    for d in made:
        try:
            d.stop()
        except AssertionError as e:
            errors.append(str(e))
    for d in made:
        d.cleanup()
    assert not errors, "\n".join(errors)


@pytest.fixture
def rprd(rprd_factory):
    return rprd_factory()


@pytest.fixture(scope="module")
def shared_rprd():
    """One daemon for a module of read-mostly tests (bad input etc.)."""
    d = Rprd(extra_args=["--no-controllers", "--max-body", "65536"]).start()
    yield d
    try:
        d.stop()
    finally:
        d.cleanup()


# ---- sshd (issue 3) ---------------------------------------------------------------

@pytest.fixture(scope="session")
def ssh_keys(tmp_path_factory):
    """Host and client keys of each type (ed25519, ecdsa, rsa), made once."""
    from sshd import Keys
    return Keys.generate(str(tmp_path_factory.mktemp("ssh-keys")))


@pytest.fixture
def sshd_factory(ssh_keys):
    """Starts real sshd processes: make(host="ed25519", client=["ed25519"],
    start=True, extra=()) -> Sshd. Stops every one (by pid) afterwards."""
    from sshd import Sshd
    made = []

    def make(host=("ed25519",), client=("ed25519", "ecdsa", "rsa"), start=True, extra=(), port=None):
        hosts = [host] if isinstance(host, str) else list(host)
        clients = [client] if isinstance(client, str) else list(client)
        d = Sshd(None, host_keys=[ssh_keys.host(t) for t in hosts],
                 authorized=[ssh_keys.client_pub(t) for t in clients], port=port, extra=extra)
        made.append(d)
        return d.start() if start else d

    yield make
    for d in made:
        d.cleanup()


@pytest.fixture
def sshd(sshd_factory):
    """One sshd with an ed25519 host key accepting every client key."""
    return sshd_factory()


# ---- a container engine (issue 17) -------------------------------------------------

@pytest.fixture(scope="session")
def podman():
    """A real podman serving the Docker API (podman.py): .docker_host,
    .engine (a `docker` wrapper), .build_image(tag, files), .containers().
    Its directory is outside pytest's private tree, so that the tests'
    plain ssh user reaches the socket and the wrapper."""
    from podman import Podman, available
    if not available():
        pytest.fail("podman, runc and busybox-static are needed: make deps installs them")
    p = Podman(tempfile.mkdtemp(prefix="rpr-podman-")).start()
    yield p
    p.stop()
    shutil.rmtree(p.dir, ignore_errors=True)
