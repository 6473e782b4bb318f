"""`make run`'s script, tests/run-quickstart.sh, end to end: from a copy of
the examples in a fresh directory, with no network, it makes the local git
repository, starts rprd, applies examples/quickstart/, and the first commit
is deployed; a pushed change is deployed once rpr looks; Ctrl-C (SIGTERM)
stops it with exit 0.

The quickstart's repository lives at /tmp/rpr-quickstart (the examples name
that path); one that is there already is moved aside and put back.
"""

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time

import pytest

from conftest import BIN_DIR, LOOPBACK_ONLY, REPO, assert_no_sanitizer_report, free_port, sanitizer_env

QS = "/tmp/rpr-quickstart"
WAIT = 30


@pytest.fixture
def quickstart_dir():
    aside = None
    if os.path.exists(QS):
        aside = tempfile.mkdtemp(prefix="rpr-quickstart-aside-")
        os.rmdir(aside)
        shutil.move(QS, aside)
    top = tempfile.mkdtemp(prefix="rpr-qs-")
    shutil.copytree(os.path.join(REPO, "examples"), os.path.join(top, "examples"))
    yield top
    shutil.rmtree(top, ignore_errors=True)
    shutil.rmtree(QS, ignore_errors=True)
    if aside:
        shutil.move(aside, QS)


def ctl(top, *args):
    p = subprocess.run([os.path.join(BIN_DIR, "rprctl"), *args], cwd=top, capture_output=True, text=True,
                       timeout=60, env=sanitizer_env())
    assert_no_sanitizer_report(p.stderr, "rprctl")
    return p


def git(*args):
    subprocess.run(["git", "-C", os.path.join(QS, "work"), *args], check=True, capture_output=True, timeout=30)


def wait_for(pred, what):
    deadline = time.time() + WAIT
    while time.time() < deadline:
        if pred():
            return
        time.sleep(0.1)
    raise AssertionError("timed out waiting for " + what)


def succeeded(top, run):
    p = ctl(top, "get", "run", run, "-o", "json")
    return p.returncode == 0 and json.loads(p.stdout).get("status", {}).get("phase") == "Succeeded"


def test_quickstart_deploys_a_pushed_commit(quickstart_dir):
    top = quickstart_dir
    out = open(os.path.join(top, "script.log"), "w+")
    # A port of its own, so that an rprd on the default 8270 cannot get in the way.
    env = dict(sanitizer_env(), RPR_QUICKSTART_PORT=str(free_port()),
               RPR_QUICKSTART_RPRD_ARGS=" ".join(LOOPBACK_ONLY))
    p = subprocess.Popen([os.path.join(REPO, "tests", "run-quickstart.sh"), BIN_DIR], cwd=top, stdout=out,
                         stderr=subprocess.STDOUT, env=env)
    try:
        wait_for(lambda: "Ctrl-C stops rprd" in open(out.name).read(), "the script to be ready")
        wait_for(lambda: succeeded(top, "site-deploy-1"), "the first commit to be deployed")
        with open(os.path.join(QS, "www", "index.html")) as f:
            assert "Hello from rpr" in f.read()

        with open(os.path.join(QS, "work", "index.html"), "a") as f:
            f.write("<p>changed</p>\n")
        git("commit", "-qam", "A change")
        git("push", "-q")
        assert ctl(top, "check", "repo", "site").returncode == 0
        wait_for(lambda: succeeded(top, "site-deploy-2"), "the change to be deployed")
        with open(os.path.join(QS, "www", "index.html")) as f:
            assert "<p>changed</p>" in f.read()
        log = ctl(top, "logs", "run/site-deploy-2").stdout
        assert " out deployed " in log and " of site to localhost" in log
    finally:
        p.send_signal(signal.SIGTERM)
        rc = p.wait(60)
        text = open(out.name).read()
        assert_no_sanitizer_report(text, "rprd")
    assert rc == 0, text[-3000:]
