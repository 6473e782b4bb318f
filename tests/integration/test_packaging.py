"""Packaging (issue 6): the systemd units, sysusers/tmpfiles entries, man
pages, `make install` and `make deb`.

- every unit passes `systemd-analyze verify` (ExecStart pointed at the built
  binaries, as /usr/bin/rprd does not exist here) and uses only options that
  rprd and rprctl have;
- the sysusers.d/tmpfiles.d entries make the rpr user and its directories in
  a throwaway root;
- `make install DESTDIR=...` lays out exactly the expected files and modes,
  also for PREFIX=/usr/local;
- `make deb` builds a package whose `dpkg-deb -I` fields, `dpkg-deb -c`
  listing and md5sums are right, whose Depends name the package of every
  shared library the binaries need, whose maintainer scripts are sane and
  whose binaries run once extracted; it is lintian-clean (no E: or W:).

No rprd fixture is needed. The binaries come from $RPR_BIN_DIR, else bin/,
else build/asan/bin; with the ASan ones `make` is run with SAN=1 so that it
installs what is already built.
"""

import glob
import gzip
import hashlib
import os
import re
import shutil
import stat
import subprocess
import tempfile

import pytest

from conftest import REPO


def _bin_dir():
    env = os.environ.get("RPR_BIN_DIR")
    if env:
        return env
    for d in (os.path.join(REPO, "bin"), os.path.join(REPO, "build", "asan", "bin")):
        if os.access(os.path.join(d, "rprd"), os.X_OK):
            return d
    return os.path.join(REPO, "bin")


BIN = _bin_dir()
MAKE = ["make", "-C", REPO, "--no-print-directory"]
if os.path.realpath(BIN) == os.path.realpath(os.path.join(REPO, "build", "asan", "bin")):
    MAKE.append("SAN=1")

SYSTEMD = os.path.join(REPO, "packaging", "systemd")
UNIT_NAMES = ["rpr-agent.service", "rpr-reconcile.service", "rpr-reconcile.timer", "rprd-web.socket", "rprd.service",
              "rprd.socket"]
VERSION = open(os.path.join(REPO, "VERSION")).read().strip()
ARCH = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True, check=True).stdout.strip()

INSTALLED = {
    "usr/bin/rprd": 0o755, "usr/bin/rprctl": 0o755, "usr/bin/rpr-agent": 0o755,
    **{"usr/lib/systemd/system/" + u: 0o644 for u in UNIT_NAMES},
    "usr/lib/sysusers.d/rpr.conf": 0o644, "usr/lib/tmpfiles.d/rpr.conf": 0o644,
    "usr/share/man/man1/rprctl.1.gz": 0o644, "usr/share/man/man8/rprd.8.gz": 0o644,
    "usr/share/man/man8/rpr-agent.8.gz": 0o644,
    "usr/share/doc/rpr/README.md": 0o644, "etc/default/rpr": 0o644,
    **{"usr/share/rpr/web/" + os.path.relpath(f, os.path.join(REPO, "web")): 0o644
       for f in glob.glob(os.path.join(REPO, "web", "**"), recursive=True) if os.path.isfile(f)},
}
IN_DEB = {**INSTALLED, "usr/share/doc/rpr/copyright": 0o644, "usr/share/doc/rpr/changelog.gz": 0o644,
          "usr/share/lintian/overrides/rpr": 0o644}


def run(cmd, **kw):
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    kw.setdefault("timeout", 300)
    return subprocess.run(cmd, **kw)


def files_under(root):
    out = {}
    for d, _, names in os.walk(root):
        for n in names:
            p = os.path.join(d, n)
            out[os.path.relpath(p, root)] = stat.S_IMODE(os.lstat(p).st_mode)
    return out


def unit(name):
    with open(os.path.join(SYSTEMD, name)) as f:
        return f.read()


def unit_values(name, key):
    return [l.split("=", 1)[1] for l in unit(name).splitlines() if l.startswith(key + "=")]


@pytest.fixture
def tmp():
    d = tempfile.mkdtemp(prefix="rpr-pkg-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def deb():
    """`make deb` once for the module; the path of the .deb."""
    for old in glob.glob(os.path.join(REPO, "build", "deb", "rpr_*.deb")):
        os.unlink(old)
    p = run(MAKE + ["deb"])
    assert p.returncode == 0, p.stdout + p.stderr
    path = os.path.join(REPO, "build", "deb", "rpr_%s_%s.deb" % (VERSION, ARCH))
    assert os.path.isfile(path), glob.glob(os.path.join(REPO, "build", "deb", "*"))
    return path


# ---- units ----------------------------------------------------------------

def test_makefile_includes_install_mk():
    mk = open(os.path.join(REPO, "Makefile")).read()
    assert re.search(r"^include packaging/install\.mk$", mk, re.M), "Makefile lacks: include packaging/install.mk"
    # and no second definition of the targets it provides
    assert not re.search(r"^(install|deb):", mk, re.M)


def test_units_verify(tmp):
    assert sorted(os.listdir(SYSTEMD)) == UNIT_NAMES
    for u in UNIT_NAMES:
        text = unit(u).replace("/usr/bin/", BIN + "/")
        with open(os.path.join(tmp, u), "w") as f:
            f.write(text)
    p = run(["systemd-analyze", "verify", "--man=no", *[os.path.join(tmp, u) for u in UNIT_NAMES]], cwd=tmp,
            timeout=60)
    assert p.returncode == 0 and not p.stderr.strip(), p.stderr


def test_a_broken_unit_fails_verify(tmp):
    """The check above can fail: a typo is reported."""
    with open(os.path.join(tmp, "rprd.service"), "w") as f:
        f.write(unit("rprd.service").replace("/usr/bin/", BIN + "/").replace("Type=notify", "Type=notfy"))
    p = run(["systemd-analyze", "verify", "--man=no", os.path.join(tmp, "rprd.service")], cwd=tmp, timeout=60)
    assert "notfy" in p.stderr, p.stderr


def test_units_use_options_the_binaries_have():
    rprd_help = run([os.path.join(BIN, "rprd"), "--help"]).stdout
    (exec_rprd,) = unit_values("rprd.service", "ExecStart")
    argv = exec_rprd.split()
    assert argv[0] == "/usr/bin/rprd"
    assert argv[1:] == ["--state-dir", "/var/lib/rpr", "--log-dir", "/var/log/rpr", "--idle-exit", "15min",
                        "$RPRD_OPTS"]
    assert unit_values("rprd.service", "EnvironmentFile") == ["-/etc/default/rpr"]
    for opt in argv[1:-1:2]:
        assert re.search(r"^\s+%s\b" % re.escape(opt), rprd_help, re.M), opt
    (exec_ctl,) = unit_values("rpr-reconcile.service", "ExecStart")
    assert exec_ctl == "/usr/bin/rprctl --server unix:/run/rpr/rpr.sock reconcile --due"
    assert "reconcile --due" in run([os.path.join(BIN, "rprctl"), "--help"]).stdout
    # rprctl knows the verb and the flag (an unknown one would say so)
    p = run([os.path.join(BIN, "rprctl"), "--server", "unix:/nonexistent/rpr.sock", "reconcile", "--due"],
            timeout=10)
    assert p.returncode != 0 and "unknown" not in p.stderr.lower() and "usage" not in p.stderr.lower(), p.stderr


def test_default_file_shows_a_flag_rprd_takes():
    """/etc/default/rpr is empty by default, and the example it shows is a
    list rprd accepts."""
    text = open(os.path.join(REPO, "packaging", "default", "rpr")).read()
    assert re.search(r'^RPRD_OPTS=""$', text, re.M), text
    (example,) = re.findall(r'^#RPRD_OPTS="--allow-networks (\S+)"$', text, re.M)
    p = run([os.path.join(BIN, "rprd"), "--allow-networks", example, "--version"], timeout=10)
    assert p.returncode == 0, p.stderr
    p = run([os.path.join(BIN, "rprd"), "--allow-networks", example + ",x", "--version"], timeout=10)
    assert p.returncode == 1 and '"x" is not a network' in p.stderr, p.stderr


def test_service_unit_says_what_the_issue_asks():
    svc = unit("rprd.service").splitlines()
    for line in ("Type=notify", "NotifyAccess=main", "WatchdogSec=30s", "Restart=on-failure", "User=rpr",
                 "Group=rpr", "StateDirectory=rpr", "StateDirectoryMode=0750", "LogsDirectory=rpr",
                 "RuntimeDirectory=rpr", "RuntimeDirectoryPreserve=yes", "Requires=rprd.socket",
                 "Sockets=rprd.socket rprd-web.socket", "TimeoutStopSec=90s", "KillMode=mixed", "UMask=0027",
                 "NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=read-only", "PrivateTmp=yes",
                 "PrivateDevices=yes", "ProtectKernelTunables=yes", "ProtectKernelModules=yes",
                 "ProtectKernelLogs=yes", "ProtectControlGroups=yes", "ProtectClock=yes", "ProtectHostname=yes",
                 "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6", "RestrictNamespaces=yes",
                 "RestrictRealtime=yes", "RestrictSUIDSGID=yes", "LockPersonality=yes",
                 "MemoryDenyWriteExecute=yes", "SystemCallArchitectures=native",
                 "SystemCallFilter=@system-service", "SystemCallFilter=~@privileged", "CapabilityBoundingSet="):
        assert line in svc, line
    assert any(l.startswith("After=") and "rprd.socket" in l for l in svc)
    # local Servers run `sh -c`: nice/ulimit (@resources) must stay allowed
    denied = " ".join(v[1:] for v in unit_values("rprd.service", "SystemCallFilter") if v.startswith("~"))
    assert "@resources" not in denied


def test_socket_and_timer_units():
    assert unit_values("rprd.socket", "ListenStream") == ["/run/rpr/rpr.sock"]
    assert unit_values("rprd.socket", "FileDescriptorName") == ["api"]
    assert unit_values("rprd.socket", "SocketMode") == ["0660"]
    assert unit_values("rprd.socket", "SocketGroup") == ["rpr"]
    # FileDescriptorName= names every socket of a unit, hence a second unit
    assert unit_values("rprd-web.socket", "ListenStream") == ["127.0.0.1:8270"]
    assert unit_values("rprd-web.socket", "FileDescriptorName") == ["web"]
    for s in ("rprd.socket", "rprd-web.socket"):
        assert unit_values(s, "Service") == ["rprd.service"]
        assert unit_values(s, "WantedBy") == ["sockets.target"]
    assert unit_values("rpr-reconcile.service", "Type") == ["oneshot"]
    assert unit_values("rpr-reconcile.service", "User") == ["rpr"]
    for k, v in (("OnBootSec", "2min"), ("OnUnitActiveSec", "1min"), ("AccuracySec", "10s"),
                 ("Persistent", "true"), ("WantedBy", "timers.target")):
        assert unit_values("rpr-reconcile.timer", k) == [v], k


def test_sysusers_and_tmpfiles_in_a_throwaway_root(tmp):
    for kind in ("sysusers.d", "tmpfiles.d"):
        os.makedirs(os.path.join(tmp, "usr/lib", kind))
        shutil.copy(os.path.join(REPO, "packaging", kind, "rpr.conf"), os.path.join(tmp, "usr/lib", kind))
    os.makedirs(os.path.join(tmp, "etc"))
    p = run(["systemd-sysusers", "--root=" + tmp, "rpr.conf"], timeout=30)
    assert p.returncode == 0, p.stderr
    (pw,) = [l.split(":") for l in open(os.path.join(tmp, "etc/passwd")) if l.startswith("rpr:")]
    assert pw[5] == "/var/lib/rpr" and pw[6].strip().endswith("nologin") and int(pw[2]) < 1000, pw
    assert any(l.startswith("rpr:") for l in open(os.path.join(tmp, "etc/group")))
    p = run(["systemd-tmpfiles", "--root=" + tmp, "--create", "rpr.conf"], timeout=30)
    assert p.returncode == 0, p.stderr
    for d, mode in (("var/lib/rpr", 0o750), ("var/log/rpr", 0o750), ("run/rpr", 0o755)):
        st = os.stat(os.path.join(tmp, d))
        assert stat.S_IMODE(st.st_mode) == mode, d
        if os.geteuid() == 0:
            assert (st.st_uid, st.st_gid) == (int(pw[2]), int(pw[3])), d


def test_man_pages_are_clean_roff():
    for page, first in (("rprd.8", ".TH RPRD 8"), ("rprctl.1", ".TH RPRCTL 1"), ("rpr-agent.8", ".TH RPR-AGENT 8")):
        path = os.path.join(REPO, "packaging", "man", page)
        assert open(path).read().startswith(first), page
        p = run(["groff", "-man", "-Tutf8", "-ww", "-z", path], timeout=30)
        assert p.returncode == 0 and not p.stderr.strip(), (page, p.stderr)
    # every option rprd --help lists is in its man page
    rprd_help = run([os.path.join(BIN, "rprd"), "--help"]).stdout
    man = open(os.path.join(REPO, "packaging", "man", "rprd.8")).read().replace("\\-", "-")
    for opt in set(re.findall(r"^\s+(--[a-z-]+)", rprd_help, re.M)):
        assert opt in man, opt


# ---- make install ---------------------------------------------------------

def test_make_install_layout(tmp):
    p = run(MAKE + ["install", "DESTDIR=" + tmp])
    assert p.returncode == 0, p.stdout + p.stderr
    got = files_under(tmp)
    assert got == INSTALLED, {"missing": set(INSTALLED) - set(got), "extra": set(got) - set(INSTALLED),
                              "modes": {k: oct(v) for k, v in got.items() if INSTALLED.get(k, v) != v}}
    for b in ("rprd", "rprctl", "rpr-agent"):
        sections = run(["readelf", "-S", os.path.join(tmp, "usr/bin", b)]).stdout
        assert ".symtab" not in sections and ".debug_info" not in sections, b + " is not stripped"
    assert unit_values("rprd.service", "ExecStart")[0] in open(
        os.path.join(tmp, "usr/lib/systemd/system/rprd.service")).read()
    with gzip.open(os.path.join(tmp, "usr/share/man/man8/rprd.8.gz"), "rt") as f:
        assert f.read() == open(os.path.join(REPO, "packaging", "man", "rprd.8")).read()


def test_make_install_other_prefix(tmp):
    p = run(MAKE + ["install", "DESTDIR=" + tmp, "PREFIX=/usr/local"])
    assert p.returncode == 0, p.stdout + p.stderr
    assert os.path.isfile(os.path.join(tmp, "usr/local/bin/rprd"))
    svc = open(os.path.join(tmp, "usr/local/lib/systemd/system/rprd.service")).read()
    assert "ExecStart=/usr/local/bin/rprd " in svc and "--web-dir /usr/local/share/rpr/web" in svc
    assert "/usr/bin/" not in svc
    rec = open(os.path.join(tmp, "usr/local/lib/systemd/system/rpr-reconcile.service")).read()
    assert "ExecStart=/usr/local/bin/rprctl " in rec
    assert os.path.isfile(os.path.join(tmp, "usr/local/share/rpr/web/index.html"))


# ---- make deb -------------------------------------------------------------

def test_deb_fields(deb):
    info = run(["dpkg-deb", "-I", deb]).stdout
    fields = dict(re.findall(r"^ ([A-Z][\w-]*): (.*)$", info, re.M))
    assert fields["Package"] == "rpr"
    assert fields["Version"] == VERSION
    assert fields["Architecture"] == ARCH
    assert fields["Section"] == "admin" and fields["Priority"] == "optional"
    assert re.match(r".+ <[^@ ]+@[^@ ]+>$", fields["Maintainer"]), fields["Maintainer"]
    assert int(fields["Installed-Size"]) > 0
    long_desc = run(["dpkg-deb", "-f", deb, "Description"]).stdout.splitlines()[1:]
    assert len(long_desc) >= 3 and all(l.startswith(" ") for l in long_desc), long_desc
    depends = {d.strip().split()[0] for d in fields["Depends"].split(",")}
    assert {"libh2o-evloop0.13", "libssh2-1", "libyaml-0-2", "libjansson4", "libsystemd0", "libcurl4",
            "libsqlite3-0", "libgit2-1.5", "libssl3"} <= depends
    # every shared library the binaries load comes from a package in Depends
    needed = set()
    for b in ("rprd", "rprctl", "rpr-agent"):
        needed |= set(re.findall(r"NEEDED\s+(\S+)", run(["objdump", "-p", os.path.join(BIN, b)]).stdout))
    for lib in needed:
        if lib.startswith(("libasan", "libubsan", "libstdc++", "libgcc_s")):
            continue  # the sanitizer build's own
        owners = run(["dpkg", "-S", "*/" + lib]).stdout
        pkgs = {o.split(":")[0] for o in owners.splitlines()}
        assert pkgs & (depends | {"libc6"}), (lib, pkgs)
    for script in ("postinst", "prerm", "postrm"):
        assert re.search(r"^\s+\d+ bytes,\s+\d+ lines\s+\*\s+%s\s" % script, info, re.M), script


def test_deb_contents(deb, tmp):
    listing = run(["dpkg-deb", "-c", deb]).stdout.splitlines()
    assert listing and all(" root/root " in l for l in listing), listing
    files = {}
    for l in listing:
        perms, path = l.split()[0], l.split()[-1]
        if perms.startswith("-"):
            files[path[2:]] = perms
    want = {p: "-" + "".join("rwx"[i % 3] if m & (1 << (8 - i)) else "-" for i in range(9))
            for p, m in IN_DEB.items()}
    assert files == want, {"missing": set(want) - set(files), "extra": set(files) - set(want)}
    dirs = [l for l in listing if l.startswith("d")]
    assert all(l.startswith("drwxr-xr-x") for l in dirs), dirs

    root = os.path.join(tmp, "root")
    assert run(["dpkg-deb", "-x", deb, root]).returncode == 0
    assert files_under(root) == IN_DEB
    ctl = os.path.join(tmp, "ctl")
    assert run(["dpkg-deb", "-e", deb, ctl]).returncode == 0
    for line in open(os.path.join(ctl, "md5sums")):
        digest, path = line.split()
        assert hashlib.md5(open(os.path.join(root, path), "rb").read()).hexdigest() == digest, path
    # every file but the conffile, which dpkg tracks by itself
    assert len(open(os.path.join(ctl, "md5sums")).readlines()) == len(IN_DEB) - 1
    assert open(os.path.join(ctl, "conffiles")).read() == "/etc/default/rpr\n"
    out = run([os.path.join(root, "usr/bin/rprd"), "--version"], timeout=10)
    assert out.returncode == 0 and VERSION in out.stdout, out
    with gzip.open(os.path.join(root, "usr/share/doc/rpr/changelog.gz"), "rt") as f:
        assert f.readline().startswith("rpr (%s) " % VERSION), "debian changelog is not for " + VERSION
    assert "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/" in open(
        os.path.join(root, "usr/share/doc/rpr/copyright")).read()


def test_maintainer_scripts_with_stubbed_systemd(deb, tmp):
    """postinst configure creates the user and the directories and enables
    the sockets and the timer; prerm/postrm remove undo it. The system
    tools are stubs that log their arguments."""
    ctl = os.path.join(tmp, "ctl")
    assert run(["dpkg-deb", "-e", deb, ctl]).returncode == 0
    stubs = os.path.join(tmp, "stubs")
    os.makedirs(stubs)
    log = os.path.join(tmp, "log")
    for tool in ("systemd-sysusers", "systemd-tmpfiles", "deb-systemd-helper", "deb-systemd-invoke", "systemctl"):
        with open(os.path.join(stubs, tool), "w") as f:
            f.write('#!/bin/sh\necho "%s $*" >> %s\n' % (tool, log))
        os.chmod(os.path.join(stubs, tool), 0o755)
    env = {"PATH": stubs + ":/usr/bin:/bin"}
    for script in ("postinst", "prerm", "postrm"):
        p = run(["sh", "-n", os.path.join(ctl, script)])
        assert p.returncode == 0, (script, p.stderr)
    p = run([os.path.join(ctl, "postinst"), "configure"], env=env, timeout=10)
    assert p.returncode == 0, p.stderr
    calls = open(log).read().splitlines()
    assert "systemd-sysusers rpr.conf" in calls and "systemd-tmpfiles --create rpr.conf" in calls, calls
    assert calls.index("systemd-sysusers rpr.conf") < calls.index("systemd-tmpfiles --create rpr.conf")
    enabled = {c.split()[-1] for c in calls if c.startswith("deb-systemd-helper enable")}
    assert enabled == {"rprd.socket", "rprd-web.socket", "rpr-reconcile.timer"}, calls
    os.unlink(log)
    # (not postrm purge: it removes the host's /var/lib/rpr)
    for script, arg in (("prerm", "remove"), ("postrm", "remove")):
        p = run([os.path.join(ctl, script), arg], env=env, timeout=10)
        assert p.returncode == 0, (script, arg, p.stderr)
    assert "deb-systemd-helper mask rprd.socket" in open(log).read()
    postrm = open(os.path.join(ctl, "postrm")).read()
    assert "deb-systemd-helper purge" in postrm and "rm -rf /var/lib/rpr /var/log/rpr" in postrm


def test_deb_is_lintian_clean(deb):
    if not shutil.which("lintian"):
        pytest.fail("lintian is not installed (make deps installs it)")
    out = run(["lintian", "--fail-on", "none", deb])
    tags = [l for l in (out.stdout + out.stderr).splitlines() if l[:2] in ("E:", "W:")]
    assert tags == [], tags
