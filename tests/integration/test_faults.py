"""Faults of the state volume, injected into a real rprd on a real SQLite
file: the database deleted under it, a full disk (a small tmpfs), a
read-only state directory, a corrupt database; and a backup taken under
load restores to a consistent store."""

import glob
import os
import shutil
import sqlite3
import subprocess
import tempfile
import threading
import time

import pytest

from conftest import RPRCTL, RPRD, Rprd, free_port, sanitizer_env, server
from sshd import login_user


def run_rprd_expecting_refusal(state_dir, user=None):
    """Starts rprd and expects it to refuse: its exit code and stderr."""
    args = [RPRD, "--state-dir", state_dir, "--listen", "tcp:127.0.0.1:%d" % free_port(), "--no-controllers"]
    if user:
        args = ["setpriv", "--reuid", user, "--regid", user, "--clear-groups"] + args
    try:
        p = subprocess.run(args, capture_output=True, text=True, timeout=15, env=sanitizer_env(), cwd="/")
    except subprocess.TimeoutExpired as e:
        raise AssertionError("rprd did not refuse to start; it was still running after 15 s: %s" % e.stderr)
    return p.returncode, p.stderr


@pytest.fixture
def tmpfs():
    """A small filesystem of its own (tmpfs, as root), unmounted after."""
    d = tempfile.mkdtemp(prefix="rpr-tmpfs-")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m,mode=0755", "tmpfs", d], check=True)
    yield d
    subprocess.run(["umount", "-l", d], capture_output=True)
    os.rmdir(d)


# ---- the database deleted under rprd --------------------------------------------------------

def test_deleted_state_db_refuses_writes_and_fails_healthz(rprd):
    assert rprd.apply([server("before")])["items"][0]["outcome"] == "created"
    for f in glob.glob(os.path.join(rprd.state_dir, "state.db*")):
        os.unlink(f)
    r = rprd.request("POST", "/api/v1/apply", body={"apiVersion": "rpr/v1", "kind": "List",
                                                    "items": [server("after")]})
    assert r.status == 503, r
    assert "deleted or replaced" in r.json()["message"], r.json()
    h = rprd.request("GET", "/healthz", token=None)
    assert h.status == 503 and h.json()["status"] == "failing", h
    assert "deleted" in h.json()["message"]
    # reads still answer from memory
    assert rprd.get("/api/v1/namespaces/default/servers/before").status == 200


def test_replaced_state_db_is_noticed_too(rprd):
    db = os.path.join(rprd.state_dir, "state.db")
    shutil.copy(db, db + ".copy")
    os.rename(db + ".copy", db)  # same path, another file
    r = rprd.request("PUT", "/api/v1/namespaces/default/servers/x", body=server("x"))
    assert r.status == 503, r


# ---- a full disk ----------------------------------------------------------------------------

def fill(path):
    """Fills the filesystem of path; returns the filler's name."""
    filler = os.path.join(path, "filler")
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(b"\0" * (1 << 16))
                f.flush()
        except OSError:
            pass
    return filler


def big_servers(prefix, n=40):
    """Objects big enough that the write needs new pages on disk."""
    return [dict(server("%s-%d" % (prefix, i)), metadata={"name": "%s-%d" % (prefix, i),
                 "annotations": {"note": "x" * 20000}}) for i in range(n)]


def test_full_disk_answers_507_degrades_healthz_and_recovers(rprd_factory, tmpfs):
    state = os.path.join(tmpfs, "state")
    os.mkdir(state, 0o700)
    d = Rprd(state_dir=state, extra_args=["--no-controllers"])
    d.start()
    try:
        assert d.apply([server("before")])["items"][0]["outcome"] == "created"
        filler = fill(tmpfs)
        r = d.request("POST", "/api/v1/apply", body={"apiVersion": "rpr/v1", "kind": "List",
                                                     "items": big_servers("full")})
        assert r.status == 507, r
        assert r.json()["message"].startswith("no space left on the state volume"), r.json()
        h = d.request("GET", "/healthz", token=None)
        assert h.status == 200 and h.json()["status"] == "degraded" and h.json()["store"] == "full", h.json()
        assert d.get("/api/v1/namespaces/default/servers/full-0").status == 404, "nothing was written"

        os.unlink(filler)  # space comes back: no restart needed
        h = d.request("GET", "/healthz", token=None)
        assert h.status == 200 and h.json()["status"] == "ok", h.json()
        items = d.apply(big_servers("full"))["items"]
        assert all(i["outcome"] == "created" for i in items)
        assert d.get("/api/v1/namespaces/default/servers/before").status == 200
    finally:
        d.stop()


# ---- a read-only state directory --------------------------------------------------------------

def test_read_only_state_directory_refuses_to_start(tmpfs):
    state = os.path.join(tmpfs, "state")
    os.mkdir(state, 0o700)
    subprocess.run(["mount", "-o", "remount,ro", tmpfs], check=True)
    code, err = run_rprd_expecting_refusal(state)
    assert code != 0
    assert "state directory %s is read-only" % state in err, err


def test_state_directory_without_write_permission_refuses_to_start():
    """Not root: a directory the operator made read-only is not made writable behind their back."""
    user = login_user()
    parent = tempfile.mkdtemp(prefix="rpr-ro-")
    os.chmod(parent, 0o755)
    state = os.path.join(parent, "state")
    os.mkdir(state)
    shutil.chown(state, user, user)
    os.chmod(state, 0o500)
    try:
        code, err = run_rprd_expecting_refusal(state, user=user)
        assert code != 0
        assert "state directory %s is read-only" % state in err, err
        assert os.stat(state).st_mode & 0o777 == 0o500, "rprd changed the directory's mode"
    finally:
        shutil.rmtree(parent, ignore_errors=True)


# ---- a corrupt database -------------------------------------------------------------------------

def test_corrupt_state_db_refusal_says_what_to_do(tmp_path):
    state = str(tmp_path / "state")
    os.mkdir(state, 0o700)
    with open(os.path.join(state, "state.db"), "wb") as f:
        f.write(b"this is not a database, it was damaged " * 200)
    code, err = run_rprd_expecting_refusal(state)
    assert code != 0
    assert "is corrupt" in err and "rprctl admin backup" in err and "Restore it from a backup" in err, err


# ---- backup under load, restored ---------------------------------------------------------------

def test_backup_under_load_restores_to_a_consistent_store(rprd_factory, tmp_path):
    d = rprd_factory()
    acked = []  # (name, resourceVersion) of every acknowledged write
    stop = threading.Event()

    def load(worker):
        i = 0
        while not stop.is_set():
            name = "w%d-%d" % (worker, i)
            r = d.apply([server(name)])["items"][0]
            acked.append((name, int(r["resourceVersion"])))
            i += 1
    threads = [threading.Thread(target=load, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    try:
        time.sleep(1)
        before = len(acked)
        backup = str(tmp_path / "backup.db")
        p = d.ctl("admin", "backup", backup)
        assert p.returncode == 0, p.stderr
        time.sleep(0.5)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert len(acked) > before, "writes went on during the backup"
    assert oct(os.stat(backup).st_mode & 0o777) == oct(0o600)
    con = sqlite3.connect(backup)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    con.close()

    # restore: a new state directory with the backup as its state.db
    state = str(tmp_path / "restored")
    os.mkdir(state, 0o700)
    shutil.copy(backup, os.path.join(state, "state.db"))
    shutil.copy(os.path.join(d.state_dir, "admin.token"), os.path.join(state, "admin.token"))
    r2 = rprd_factory(state_dir=state)
    rev = r2.revision()
    have = {o["metadata"]["name"]: int(o["metadata"]["resourceVersion"])
            for o in r2.get("/api/v1/servers").json()["items"]}
    # a snapshot at revision rev: every write up to it, none after
    for name, rv in acked:
        if rv <= rev:
            assert have.get(name) == rv, "write %s (revision %d) missing from a backup at %d" % (name, rv, rev)
        else:
            assert name not in have, "write %s (revision %d) in a backup at %d" % (name, rv, rev)
    assert sum(1 for _, rv in acked if rv <= rev) >= before


def test_backup_needs_an_unrestricted_admin(rprd):
    r = rprd.request("POST", "/api/v1/tokens", body={"name": "ns-admin", "role": "admin", "namespaces": ["a"]})
    assert r.status in (200, 201), r
    scoped = r.json()["token"]
    r = rprd.request("GET", "/api/v1/admin/backup", token=scoped)
    assert r.status == 403, r
    r = rprd.request("GET", "/api/v1/admin/backup")
    assert r.status == 200 and r.body[:16] == b"SQLite format 3\0"
