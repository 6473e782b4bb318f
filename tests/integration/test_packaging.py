"""Packaging: every systemd unit passes `systemd-analyze verify` (with
ExecStart pointed at the built binaries, as the installed paths do not
exist here), `make install DESTDIR=...` lays out the expected files, and
`make deb` builds a package whose metadata and contents are as expected
and whose binaries run once extracted into a throwaway root.
"""

import glob
import os
import shutil
import stat
import subprocess
import tempfile

import pytest

from conftest import BIN_DIR, REPO

UNITS = sorted(glob.glob(os.path.join(REPO, "packaging", "systemd", "*.service")) +
               glob.glob(os.path.join(REPO, "packaging", "systemd", "*.socket")) +
               glob.glob(os.path.join(REPO, "packaging", "systemd", "*.timer")))

EXPECTED = {
    "usr/bin/rprd", "usr/bin/rprctl",
    "usr/lib/systemd/system/rprd.service", "usr/lib/systemd/system/rprd.socket",
    "usr/lib/systemd/system/rprd-web.socket", "usr/lib/systemd/system/rpr-reconcile.service",
    "usr/lib/systemd/system/rpr-reconcile.timer",
    "usr/lib/sysusers.d/rpr.conf", "usr/lib/tmpfiles.d/rpr.conf",
    "usr/share/man/man1/rprctl.1.gz", "usr/share/man/man8/rprd.8.gz",
    "usr/share/rpr/web/index.html",
}


def files_under(root):
    out = set()
    for d, _, names in os.walk(root):
        for n in names:
            out.add(os.path.relpath(os.path.join(d, n), root))
    return out


@pytest.fixture
def tmp():
    d = tempfile.mkdtemp(prefix="rpr-pkg-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_units_verify(tmp):
    assert len(UNITS) == 5, UNITS
    for u in UNITS:
        with open(u) as f:
            text = f.read()
        text = text.replace("/usr/bin/rprd", os.path.join(BIN_DIR, "rprd"))
        text = text.replace("/usr/bin/rprctl", os.path.join(BIN_DIR, "rprctl"))
        with open(os.path.join(tmp, os.path.basename(u)), "w") as f:
            f.write(text)
    names = [os.path.join(tmp, os.path.basename(u)) for u in UNITS]
    p = subprocess.run(["systemd-analyze", "verify", "--man=no", *names], capture_output=True, text=True,
                       cwd=tmp, timeout=60)
    assert p.returncode == 0 and not p.stderr.strip(), p.stderr


def test_units_say_what_the_issue_asks():
    svc = open(os.path.join(REPO, "packaging", "systemd", "rprd.service")).read()
    for line in ("Type=notify", "WatchdogSec=", "User=rpr", "StateDirectory=rpr", "LogsDirectory=rpr",
                 "RuntimeDirectory=rpr", "NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=read-only",
                 "PrivateTmp=yes", "PrivateDevices=yes", "ProtectKernelTunables=yes",
                 "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6", "SystemCallFilter=@system-service"):
        assert line in svc, line
    sock = open(os.path.join(REPO, "packaging", "systemd", "rprd.socket")).read()
    assert "ListenStream=/run/rpr/rpr.sock" in sock and "FileDescriptorName=api" in sock
    assert "SocketMode=0660" in sock and "SocketGroup=rpr" in sock
    web = open(os.path.join(REPO, "packaging", "systemd", "rprd-web.socket")).read()
    assert "ListenStream=127.0.0.1:8270" in web and "FileDescriptorName=web" in web


def test_make_install_layout(tmp):
    p = subprocess.run(["make", "-C", REPO, "--no-print-directory", "install", "DESTDIR=" + tmp],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    got = files_under(tmp)
    assert EXPECTED <= got, EXPECTED - got
    mode = os.stat(os.path.join(tmp, "usr/bin/rprd")).st_mode
    assert mode & stat.S_IXUSR and stat.S_IMODE(mode) == 0o755


def test_make_deb_contents_and_metadata(tmp):
    p = subprocess.run(["make", "-C", REPO, "--no-print-directory", "deb"], capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stderr
    (deb,) = glob.glob(os.path.join(REPO, "build", "deb", "rpr_*.deb"))
    listing = subprocess.run(["dpkg-deb", "-c", deb], capture_output=True, text=True, check=True).stdout
    paths = {line.split()[-1].lstrip("./") for line in listing.splitlines() if not line.endswith("/")}
    assert EXPECTED | {"usr/share/doc/rpr/copyright", "usr/share/doc/rpr/changelog.gz"} <= paths
    assert all("root/root" in line for line in listing.splitlines())
    info = subprocess.run(["dpkg-deb", "-f", deb, "Package", "Version", "Architecture", "Depends"],
                          capture_output=True, text=True, check=True).stdout
    version = open(os.path.join(REPO, "VERSION")).read().strip()
    assert "Package: rpr" in info and "Version: " + version in info
    assert "libgit2-1.5" in info and "libh2o-evloop0.13" in info

    root = os.path.join(tmp, "root")
    subprocess.run(["dpkg-deb", "-x", deb, root], check=True)
    out = subprocess.run([os.path.join(root, "usr/bin/rprd"), "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and version in out.stdout, out
    man = subprocess.run(["sh", "-c", "zcat %s | head -1" % os.path.join(root, "usr/share/man/man8/rprd.8.gz")],
                         capture_output=True, text=True)
    assert man.stdout.startswith(".TH RPRD 8"), man.stdout


def test_deb_is_lintian_clean():
    p = subprocess.run(["make", "-C", REPO, "--no-print-directory", "deb"], capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stderr
    (deb,) = glob.glob(os.path.join(REPO, "build", "deb", "rpr_*.deb"))
    out = subprocess.run(["lintian", deb], capture_output=True, text=True, timeout=300)
    tags = [l for l in (out.stdout + out.stderr).splitlines() if l[:2] in ("E:", "W:")]
    assert tags == [], tags
