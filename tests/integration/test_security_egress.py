"""--allow-networks, the egress allow-list, end to end, without leaving the
machine: rprd runs with `--allow-networks 127.0.0.1/32` and a listener on
127.0.0.2 (Linux answers on all of 127.0.0.0/8) records every connection
it gets. A Server there (ssh), git Repos there (git://, https://, ssh://)
and a github Repo whose apiURL is there are each refused with a condition
that names the address and the list, and the listener sees nothing: the
refusal comes before any packet. A GitHub API on 127.0.0.1 that redirects
to 127.0.0.2 (the SSRF shape) is refused the same way, and a name is
checked by what it resolves to (localhost under a list without 127.0.0.1).
Bad lists stop rprd at start with a message naming the entry.

The rest of the suite runs every rprd with 127.0.0.0/8,::1/128 (conftest's
LOOPBACK_ONLY), so that any address off this machine in a test fails.
"""

import http.server
import json
import socket
import subprocess
import threading
import time

import pytest

from conftest import RPRD, sanitizer_env

CONTROLLERS = True
WAIT = 20
ONLY_ONE = ["--allow-networks", "127.0.0.1/32"]
REFUSED = "127.0.0.1/32 only: 127.0.0.2 refused by --allow-networks"


class Listener:
    """A TCP listener on 127.0.0.2 that counts the connections it gets."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.2", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.seen = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while True:
            try:
                c, peer = self.sock.accept()
            except OSError:
                return
            self.seen.append(peer)
            c.close()

    def close(self):
        self.sock.close()


@pytest.fixture
def listener():
    lst = Listener()
    yield lst
    lst.close()


@pytest.fixture
def guarded(rprd_factory):
    return rprd_factory(extra_args=ONLY_ONE)


def cond(obj, type_):
    for c in obj.get("status", {}).get("conditions", []):
        if c.get("type") == type_:
            return c
    return {}


def wait_reason(d, plural, name, type_, reason):
    deadline = time.time() + WAIT
    o = None
    while time.time() < deadline:
        o = d.obj(plural, name)
        if cond(o, type_).get("reason") == reason:
            return cond(o, type_)
        time.sleep(0.1)
    raise AssertionError("%s/%s: %s=%s not seen; last status %s\n%s"
                         % (plural, name, type_, reason, json.dumps(o.get("status"), indent=1),
                            d.stderr()[-3000:]))


def apply_repo(d, obj_name, **spec):
    d.apply([{"apiVersion": "rpr/v1", "kind": "Repo", "metadata": {"name": obj_name},
              "spec": dict({"interval": "1h"}, **spec)}])


# ---- ssh ----------------------------------------------------------------------------

def test_server_at_a_refused_address_is_never_contacted(guarded, listener):
    guarded.apply([{"apiVersion": "rpr/v1", "kind": "Server", "metadata": {"name": "web-1"},
                    "spec": {"host": "127.0.0.2", "port": listener.port, "user": "deploy",
                             "identityFile": "/nonexistent/key", "check": {"retries": 0}}}])
    c = wait_reason(guarded, "servers", "web-1", "Reachable", "NetworkNotAllowed")
    assert c["status"] == "False" and c["message"] == REFUSED, c
    assert guarded.obj("servers", "web-1")["status"]["phase"] == "Unreachable"

    # asked for at once: the answer says the same, nothing is sent either
    r = guarded.request("POST", "/api/v1/namespaces/default/servers/web-1/check", timeout=60)
    assert r.status == 200, r
    assert r.json()["reason"] == "NetworkNotAllowed" and REFUSED in r.json()["message"], r.json()
    p = guarded.ctl("exec", "server", "web-1", "--", "uptime")
    assert p.returncode == 1 and REFUSED in p.stdout + p.stderr, (p.stdout, p.stderr)
    time.sleep(0.3)
    assert listener.seen == [], listener.seen


def test_a_name_is_checked_by_the_address_it_resolves_to(rprd_factory, listener):
    # localhost is 127.0.0.1 (and ::1): refused under a list without them.
    d = rprd_factory(extra_args=["--allow-networks", "127.0.0.2/32"])
    d.apply([{"apiVersion": "rpr/v1", "kind": "Server", "metadata": {"name": "named"},
              "spec": {"host": "localhost", "port": 1, "user": "deploy", "identityFile": "/nonexistent/key",
                       "check": {"retries": 0}}}])
    c = wait_reason(d, "servers", "named", "Reachable", "NetworkNotAllowed")
    assert c["message"].startswith("127.0.0.2/32 only: localhost (") and \
        c["message"].endswith(") refused by --allow-networks"), c


# ---- git --------------------------------------------------------------------------------

@pytest.mark.parametrize("scheme", ["git", "https", "ssh"])
def test_git_repo_at_a_refused_address_is_never_contacted(guarded, listener, scheme):
    user = "git@" if scheme == "ssh" else ""
    apply_repo(guarded, "r-" + scheme, provider="git", branch="main",
               url="%s://%s127.0.0.2:%d/site.git" % (scheme, user, listener.port))
    c = wait_reason(guarded, "repos", "r-" + scheme, "Ready", "NetworkNotAllowed")
    assert c["status"] == "False" and REFUSED in c["message"], c
    time.sleep(0.3)
    assert listener.seen == [], listener.seen


# ---- GitHub API (libcurl) ----------------------------------------------------------------

def test_github_api_at_a_refused_address_is_never_contacted(guarded, listener):
    apply_repo(guarded, "gh", provider="github", owner="acme", name="site",
               apiURL="http://127.0.0.2:%d" % listener.port)
    c = wait_reason(guarded, "repos", "gh", "Ready", "NetworkNotAllowed")
    assert c["status"] == "False" and REFUSED in c["message"], c
    time.sleep(0.3)
    assert listener.seen == [], listener.seen


class Redirect(http.server.BaseHTTPRequestHandler):
    target = None

    def do_GET(self):
        self.send_response(302)
        self.send_header("Location", self.target + self.path)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def test_a_redirect_to_a_refused_address_is_refused(guarded, listener):
    handler = type("R", (Redirect,), {"target": "http://127.0.0.2:%d" % listener.port})
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        apply_repo(guarded, "redirected", provider="github", owner="acme", name="site",
                   apiURL="http://127.0.0.1:%d" % srv.server_address[1])
        c = wait_reason(guarded, "repos", "redirected", "Ready", "NetworkNotAllowed")
        assert REFUSED in c["message"], c
    finally:
        srv.shutdown()
        srv.server_close()
    assert listener.seen == [], listener.seen


# ---- the flag --------------------------------------------------------------------------------

@pytest.mark.parametrize("value,message", [
    ("127.0.0.0/33", "the prefix length must be 0..32 for an IPv4 network"),
    ("127.0.0.0/8,localhost", '"localhost" is not a network'),
    ("", "names no network"),
])
def test_a_bad_list_stops_rprd_at_start(tmp_path, value, message):
    p = subprocess.run([RPRD, "--state-dir", str(tmp_path / "s"), "--listen", "unix:%s/s.sock" % tmp_path,
                        "--allow-networks", value], capture_output=True, text=True, timeout=30,
                       env=sanitizer_env())
    assert p.returncode == 1, p
    assert "--allow-networks" in p.stderr and message in p.stderr, p.stderr
    assert not (tmp_path / "s").exists(), "rprd went on after a bad flag"


def test_the_list_is_given_once(tmp_path):
    p = subprocess.run([RPRD, "--state-dir", str(tmp_path / "s"), "--allow-networks", "127.0.0.0/8",
                        "--allow-networks", "::1/128"], capture_output=True, text=True, timeout=30,
                       env=sanitizer_env())
    assert p.returncode == 1 and "comes a second time" in p.stderr, p.stderr


def test_rprd_says_what_it_allows(guarded):
    assert "outbound connections only to 127.0.0.1/32 (--allow-networks)" in guarded.stderr()
