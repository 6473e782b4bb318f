"""rprctl against a real rprd: apply (and its FILE:LINE:COL errors), get,
describe, delete, diff, explain, version."""

import json
import os
import re
import select
import signal
import subprocess
import time

from conftest import RPRCTL, assert_no_sanitizer_report, load_yaml, sanitizer_env

SERVERS = """\
apiVersion: rpr/v1
kind: Server
metadata:
  name: web-1
  labels:
    role: web
spec:
  host: 127.0.0.5
---
apiVersion: rpr/v1
kind: Server
metadata:
  name: web-2
spec:
  transport: local
"""

# Line numbers matter: the errors below name them.
BAD = """\
# web servers
apiVersion: rpr/v1
kind: Server
metadata:
  name: web-1
spec:
  host: 127.0.0.5
  port: 70000
---
apiVersion: rpr/v1
kind: Server
metadata:
  name: web-2
spec:
  transport: telnet
  hots: x
"""


def write(tmp_path, name, text):
    p = tmp_path / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    return str(p)


def apply_requests(d):
    m = d.metrics()
    return sum(v for (n, ls), v in m.items()
               if n == "rpr_http_requests_total" and "apply" in dict(ls).get("route", ""))


def columns(out):
    """Parses a kubectl-style table into a list of dicts by header offsets."""
    lines = [l for l in out.splitlines() if l.strip()]
    header = lines[0]
    tokens = list(re.finditer(r"\S+", header))
    names = [t.group() for t in tokens]
    starts = [t.start() for t in tokens]
    rows = []
    for l in lines[1:]:
        row = {}
        for i, n in enumerate(names):
            end = starts[i + 1] if i + 1 < len(names) else None
            row[n] = l[starts[i]:end].strip()
        rows.append(row)
    return names, rows


# ---- apply ---------------------------------------------------------------------

def test_apply_outcomes(rprd, tmp_path):
    f = write(tmp_path, "servers.yaml", SERVERS)
    p = rprd.ctl("apply", "-f", f)
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == ["server/web-1 created", "server/web-2 created"], p.stdout
    assert rprd.obj("servers", "web-2")["spec"]["transport"] == "local"
    p = rprd.ctl("apply", "-f", f, via="unix")
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == ["server/web-1 unchanged", "server/web-2 unchanged"]
    rev = rprd.revision()
    f2 = write(tmp_path, "changed.yaml", SERVERS.replace("host: 127.0.0.5", "host: 127.0.0.6")
               + "---\napiVersion: rpr/v1\nkind: Server\nmetadata:\n  name: web-3\nspec: {transport: local}\n")
    p = rprd.ctl("apply", "-f", f2, "--dry-run")
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == ["server/web-1 configured (dry run)",
                                     "server/web-2 unchanged (dry run)",
                                     "server/web-3 created (dry run)"], p.stdout
    assert rprd.revision() == rev
    p = rprd.ctl("apply", "-f", f2)
    assert p.stdout.splitlines() == ["server/web-1 configured", "server/web-2 unchanged",
                                     "server/web-3 created"], p.stdout
    assert rprd.obj("servers", "web-1")["spec"]["host"] == "127.0.0.6"
    # from stdin
    p = rprd.ctl("apply", "-f", "-", input=SERVERS.replace("web-1", "web-9"))
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines()[0] == "server/web-9 created"


def test_apply_dir_recursive(rprd, tmp_path):
    write(tmp_path, "m/b.yaml", SERVERS.split("---\n")[1])
    write(tmp_path, "m/a.yml", SERVERS.split("---\n")[0])
    write(tmp_path, "m/c.json", json.dumps({"apiVersion": "rpr/v1", "kind": "Repo",
                                            "metadata": {"name": "site"},
                                            "spec": {"owner": "acme", "name": "site"}}))
    write(tmp_path, "m/README.md", "not a manifest: ignored\n")
    write(tmp_path, "m/sub/d.yaml", SERVERS.split("---\n")[0].replace("web-1", "web-4"))
    p = rprd.ctl("apply", "-f", str(tmp_path / "m"))
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == ["server/web-1 created", "server/web-2 created",
                                     "repo/site created"], p.stdout
    assert rprd.get("/api/v1/namespaces/default/servers/web-4").status == 404
    p = rprd.ctl("apply", "-R", "-f", str(tmp_path / "m"))
    assert p.returncode == 0, p.stderr
    assert "server/web-4 created" in p.stdout.splitlines(), p.stdout


def test_apply_errors_name_file_line_col(rprd, tmp_path):
    f = write(tmp_path, "bad.yaml", BAD)
    rev, sent = rprd.revision(), apply_requests(rprd)
    p = rprd.ctl("apply", "-f", f)
    assert p.returncode == 1, p
    assert p.stdout == ""
    lines = p.stderr.splitlines()
    want = [
        f + ":8:9: Server/web-1: spec.port: must be",
        f + ":15:14: Server/web-2: spec.transport: must be one of: ssh, local, agent",
        f + ":16:3: Server/web-2: spec.hots: unknown field \"hots\"",
    ]
    for w in want:
        assert any(l.startswith(w) for l in lines), (w, p.stderr)
    assert any("70000" in l for l in lines if ":8:9:" in l), p.stderr
    # nothing was sent
    assert rprd.revision() == rev
    assert apply_requests(rprd) == sent
    assert rprd.get("/api/v1/namespaces/default/servers/web-1").status == 404


def test_apply_errors_in_several_files(rprd, tmp_path):
    ok = write(tmp_path, "d/a.yaml", SERVERS)
    bad = write(tmp_path, "d/b.yaml", "apiVersion: rpr/v1\nkind: Repo\nmetadata:\n  name: Site\n"
                                      "spec:\n  interval: 1 day\n")
    sent = apply_requests(rprd)
    p = rprd.ctl("apply", "-f", str(tmp_path / "d"))
    assert p.returncode == 1
    assert any(l.startswith(bad + ":4:9: Repo/Site: metadata.name: ") for l in
               p.stderr.splitlines()), p.stderr
    assert any(l.startswith(bad + ":6:13: Repo/Site: spec.interval: must be a duration") for l in
               p.stderr.splitlines()), p.stderr
    assert ok not in p.stderr
    assert apply_requests(rprd) == sent
    assert rprd.get("/api/v1/servers").json()["items"] == []


def test_apply_yaml_syntax_error(rprd, tmp_path):
    f = write(tmp_path, "broken.yaml", "apiVersion: rpr/v1\nkind: Server\nmetadata:\n"
                                       "  name: web-1\n  labels: a: b\nspec: {}\n")
    sent = apply_requests(rprd)
    p = rprd.ctl("apply", "-f", f)
    assert p.returncode == 1
    assert re.search("^" + re.escape(f) + r":5:\d+: ", p.stderr, re.M), p.stderr
    assert apply_requests(rprd) == sent
    p = rprd.ctl("apply", "-f", str(tmp_path / "missing.yaml"))
    assert p.returncode == 1
    assert "missing.yaml" in p.stderr and p.stderr.startswith("error: "), p.stderr


def test_apply_server_side_errors_mapped(rprd, tmp_path):
    # Each file is fine alone; together they hold a duplicate, which only
    # rprd sees. Its detail (index 2) maps back to b.yaml's second document.
    write(tmp_path, "d/a.yaml", SERVERS.split("---\n")[0])
    b = write(tmp_path, "d/b.yaml", "apiVersion: rpr/v1\nkind: Repo\nmetadata:\n  name: r\n"
                                    "spec: {owner: a, name: b}\n---\n"
                                    "apiVersion: rpr/v1\nkind: Server\nmetadata:\n"
                                    "  name: web-1\nspec:\n  host: h\n  port: 2222\n")
    rev = rprd.revision()
    p = rprd.ctl("apply", "-f", str(tmp_path / "d"))
    assert p.returncode == 1, p
    m = re.search("^" + re.escape(b) + r":(\d+):(\d+): Server/web-1: (.*)$", p.stderr, re.M)
    assert m, p.stderr
    assert int(m.group(1)) in (7, 10), p.stderr  # document start or metadata.name
    assert "duplicate object: Server/web-1" in m.group(3), p.stderr
    assert rprd.revision() == rev
    # Run is refused by rprd, mapped to its file and line
    r = write(tmp_path, "run.yaml", "apiVersion: rpr/v1\nkind: Server\nmetadata: {name: s}\nspec: {transport: local}\n---\n"
                                    "apiVersion: rpr/v1\nkind: Run\nmetadata:\n  name: r1\n"
                                    "spec:\n  owner: {kind: Binding, name: b}\n")
    p = rprd.ctl("apply", "-f", r)
    assert p.returncode == 1, p
    m = re.search("^" + re.escape(r) + r":(\d+):(\d+): Run/r1: ", p.stderr, re.M)
    assert m and int(m.group(1)) in (6, 7), p.stderr
    assert rprd.revision() == rev


def test_apply_bad_token(rprd, tmp_path):
    f = write(tmp_path, "s.yaml", SERVERS)
    p = rprd.ctl("apply", "-f", f, token="wrong-token-0123456789abcdef012345")
    assert p.returncode == 1
    assert p.stderr.startswith("error: ") and "invalid token" in p.stderr, p.stderr
    assert "wrong-token" not in p.stderr
    p = rprd.ctl("--server", "http://127.0.0.1:1", "get", "servers", server=False)
    assert p.returncode == 1
    assert p.stderr.startswith("error: "), p.stderr


# ---- get -----------------------------------------------------------------------

def test_get(rprd, tmp_path):
    p = rprd.ctl("get", "servers")
    assert p.returncode == 0, p.stderr
    assert p.stdout == ""
    assert p.stderr.strip() == "No resources found in default namespace."
    p = rprd.ctl("get", "servers", "-n", "team-a")
    assert p.stderr.strip() == "No resources found in team-a namespace."

    f = write(tmp_path, "s.yaml", SERVERS + "---\napiVersion: rpr/v1\nkind: Server\nmetadata:\n"
                                            "  name: db-1\n  namespace: team-a\n  labels: {role: db}\n"
                                            "spec: {host: db.local, port: 2222}\n")
    assert rprd.ctl("apply", "-f", f).returncode == 0

    p = rprd.ctl("get", "servers")
    assert p.returncode == 0, p.stderr
    names, rows = columns(p.stdout)
    assert names == ["NAME", "TRANSPORT", "HOST", "PHASE", "AGE"], p.stdout
    assert [r["NAME"] for r in rows] == ["web-1", "web-2"]
    assert rows[0]["TRANSPORT"] == "ssh" and rows[0]["HOST"] == "127.0.0.5"
    assert rows[1]["TRANSPORT"] == "local"
    for r in rows:
        assert re.match(r"^\d+[smhd]$", r["AGE"]), r

    p = rprd.ctl("get", "servers", "-o", "wide")
    names, _ = columns(p.stdout)
    assert names == ["NAME", "TRANSPORT", "HOST", "PHASE", "LAST-CHECK", "LAST-LOGIN", "LOAD", "MEM", "DISK",
                     "AGE"], p.stdout

    p = rprd.ctl("get", "servers", "-A")
    names, rows = columns(p.stdout)
    assert names[:2] == ["NAMESPACE", "NAME"], p.stdout
    assert [(r["NAMESPACE"], r["NAME"]) for r in rows] == \
        [("default", "web-1"), ("default", "web-2"), ("team-a", "db-1")]

    p = rprd.ctl("get", "servers", "-l", "role=web")
    _, rows = columns(p.stdout)
    assert [r["NAME"] for r in rows] == ["web-1"]
    p = rprd.ctl("-A", "get", "servers", "-l", "role in (web,db)", "-o", "name")
    assert p.stdout.splitlines() == ["server/web-1", "server/db-1"], p.stdout

    # KIND forms
    for kind in ("server", "servers", "srv", "Server"):
        p = rprd.ctl("get", kind, "web-1", "-o", "name")
        assert p.returncode == 0 and p.stdout == "server/web-1\n", (kind, p)
    p = rprd.ctl("get", "server/web-2", "-o", "name")
    assert p.stdout == "server/web-2\n", p

    # -o json: one = the object, many = the List
    one = json.loads(rprd.ctl("get", "server", "web-1", "-o", "json").stdout)
    assert one == rprd.obj("servers", "web-1")
    many = json.loads(rprd.ctl("get", "servers", "-o", "json").stdout)
    assert many["kind"] == "List" and [i["metadata"]["name"] for i in many["items"]] == \
        ["web-1", "web-2"]
    # -o yaml likewise
    y = load_yaml(rprd.ctl("get", "server", "db-1", "-n", "team-a", "-o", "yaml").stdout)
    assert y == rprd.obj("servers", "db-1", ns="team-a")
    y = load_yaml(rprd.ctl("get", "servers", "-o", "yaml").stdout)
    assert y["kind"] == "List" and len(y["items"]) == 2

    # not found, unknown kind
    p = rprd.ctl("get", "server", "nope")
    assert p.returncode == 1
    assert p.stderr.strip() == 'error: server "nope" not found', p.stderr
    p = rprd.ctl("get", "gizmos")
    assert p.returncode == 1 and p.stderr.startswith("error: ") and "gizmos" in p.stderr


def test_get_watch(rprd, tmp_path):
    rprd.apply([{"apiVersion": "rpr/v1", "kind": "Server", "metadata": {"name": "web-1"},
                 "spec": {"host": "h1"}}])
    argv = [RPRCTL, "--server", rprd.url, "--token", rprd.token, "get", "servers", "-w"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=sanitizer_env())
    try:
        got = read_until(proc, lambda s: "web-1" in s, 15)
        assert "web-1" in got and "h1" in got, got
        rprd.apply([{"apiVersion": "rpr/v1", "kind": "Server", "metadata": {"name": "web-2"},
                     "spec": {"host": "h2"}}])
        got = read_until(proc, lambda s: "web-2" in s, 15)
        assert "h2" in got, got
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
            raise AssertionError("rprctl get -w ignored SIGINT")
    assert_no_sanitizer_report(err, "rprctl get -w")


def read_until(proc, pred, timeout):
    buf = ""
    deadline = time.time() + timeout
    fd = proc.stdout.fileno()
    while time.time() < deadline:
        r, _, _ = select.select([fd], [], [], 0.2)
        if r:
            chunk = os.read(fd, 65536).decode()
            if not chunk:
                break
            buf += chunk
            if pred(buf):
                return buf
    raise AssertionError("rprctl get -w printed only %r" % buf)


# ---- describe / delete / diff / explain / version --------------------------------

def test_describe(rprd, tmp_path):
    rprd.ctl("apply", "-f", write(tmp_path, "s.yaml", SERVERS))
    o = rprd.obj("servers", "web-1")
    p = rprd.ctl("describe", "server", "web-1")
    assert p.returncode == 0, p.stderr
    out = p.stdout

    def field(name):
        m = re.search("^" + re.escape(name) + r":\s*(.*)$", out, re.M)
        assert m, (name, out)
        return m.group(1).strip()

    assert field("Name") == "web-1"
    assert field("Namespace") == "default"
    assert field("Kind") == "Server"
    assert "role=web" in field("Labels") or "role=web" in out
    assert field("UID") == o["metadata"]["uid"]
    assert field("Resource Version") == o["metadata"]["resourceVersion"]
    assert field("Generation") == "1"
    assert field("Created").startswith(o["metadata"]["creationTimestamp"][:10])
    assert re.search(r"^Spec:", out, re.M) and re.search(r"^\s+host: 127\.0\.0\.5$", out, re.M), out
    assert re.search(r"^\s+port: 22$", out, re.M), out
    assert re.search(r"^Status:", out, re.M) and re.search(r"^Events:", out, re.M), out
    p = rprd.ctl("describe", "server", "nope")
    assert p.returncode == 1 and 'server "nope" not found' in p.stderr


def test_delete(rprd, tmp_path):
    f = write(tmp_path, "s.yaml", SERVERS)
    rprd.ctl("apply", "-f", f)
    rprd.apply([{"apiVersion": "rpr/v1", "kind": "Server", "metadata": {"name": n},
                 "spec": {"transport": "local"}}
                for n in ("a", "b", "c")])
    p = rprd.ctl("delete", "server", "web-1")
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "server/web-1 deleted"
    assert rprd.get("/api/v1/namespaces/default/servers/web-1").status == 404
    p = rprd.ctl("delete", "server", "web-1")
    assert p.returncode == 1 and p.stderr.startswith("error: ") and "web-1" in p.stderr
    p = rprd.ctl("delete", "srv", "a", "b")
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == ["server/a deleted", "server/b deleted"]
    # -f: every object of the file
    rprd.ctl("apply", "-f", f)
    p = rprd.ctl("delete", "-f", f)
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == ["server/web-1 deleted", "server/web-2 deleted"], p.stdout
    assert [i["metadata"]["name"] for i in rprd.get("/api/v1/servers").json()["items"]] == ["c"]
    # again: they are missing, an error
    p = rprd.ctl("delete", "-f", f)
    assert p.returncode == 1 and p.stderr.startswith("error: "), p


def test_diff(rprd, tmp_path):
    f = write(tmp_path, "s.yaml", SERVERS)
    rprd.ctl("apply", "-f", f)
    rev = rprd.revision()
    p = rprd.ctl("diff", "-f", f)
    assert p.returncode == 0, (p.stdout, p.stderr)
    assert p.stdout == ""
    f2 = write(tmp_path, "s2.yaml", SERVERS.replace("host: 127.0.0.5", "host: 127.0.0.5\n  port: 2222")
               + "---\napiVersion: rpr/v1\nkind: Repo\nmetadata:\n  name: site\n"
                 "spec: {owner: acme, name: site}\n")
    p = rprd.ctl("diff", "-f", f2)
    assert p.returncode == 1, (p.stdout, p.stderr)
    out = p.stdout
    heads = [l for l in out.splitlines() if l.startswith("---") or l.startswith("+++")]
    assert any("web-1" in l for l in heads) and any("site" in l for l in heads), out
    assert not any("web-2" in l for l in heads), out
    assert re.search(r"^-\s+port: 22$", out, re.M), out
    assert re.search(r"^\+\s+port: 2222$", out, re.M), out
    assert re.search(r"^\+\s+owner: acme$", out, re.M), out
    for noise in ("resourceVersion", "generation", "creationTimestamp", "uid:", "managedFields"):
        assert noise not in out, (noise, out)
    assert rprd.revision() == rev
    p = rprd.ctl("diff", "-f", write(tmp_path, "bad.yaml", BAD))
    assert p.returncode == 2, p
    assert ":8:9:" in p.stderr


def test_explain(rprd):
    p = rprd.ctl("explain", "server.spec.check")
    assert p.returncode == 0, p.stderr
    for w in ("interval", "retries", "retryInterval"):
        assert w in p.stdout, p.stdout
    p = rprd.ctl("explain", "server")
    assert p.returncode == 0 and "Server" in p.stdout and "spec" in p.stdout
    p = rprd.ctl("explain", "gizmo")
    assert p.returncode == 1 and p.stderr.startswith("error: ") and "gizmo" in p.stderr
    p = rprd.ctl("explain", "server.spec.foo")
    assert p.returncode == 1 and "spec.foo" in p.stderr, p.stderr


def test_version(rprd):
    p = rprd.ctl("version")
    assert p.returncode == 0, p.stderr
    assert "rprctl 0.1.0" in p.stdout and "rprd 0.1.0 (rpr/v1)" in p.stdout, p.stdout
    p = rprd.ctl("version", via="unix")
    assert "rprd 0.1.0 (rpr/v1)" in p.stdout, p.stdout
    p = rprd.ctl("--server", "http://127.0.0.1:1", "version", server=False)
    assert p.returncode == 1
    assert "rprctl 0.1.0" in p.stdout and "rprd" not in p.stdout, p.stdout


# ---- large applies ----------------------------------------------------------------

def many_servers(n, ns=None, prefix="bulk"):
    meta_ns = "  namespace: %s\n" % ns if ns else ""
    return "---\n".join("apiVersion: rpr/v1\nkind: Server\nmetadata:\n  name: %s-%05d\n%s"
                        "spec:\n  host: 127.0.0.1\n  port: 1\n  active: false\n" % (prefix, i, meta_ns)
                        for i in range(n))


def test_apply_large_input_goes_in_requests_that_fit(rprd_factory, tmp_path):
    # rprd takes 64 KiB bodies here: rprctl's 1 MiB requests are refused
    # (413, nothing written) and sent again in halves until they fit.
    d = rprd_factory(extra_args=["--max-body", "65536"])
    f = write(tmp_path, "many.yaml", many_servers(1500))
    p = d.ctl("apply", "-f", f)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert len(lines) == 1500 and all(line.endswith(" created") for line in lines), lines[:3]
    m = re.search(r"^rprctl: 1500 objects went in (\d+) requests, each all or nothing", p.stderr, re.M)
    assert m and int(m.group(1)) >= 3, p.stderr
    assert len(d.get("/api/v1/servers").json()["items"]) == 1500


def test_apply_sends_at_most_a_mebibyte_a_request(rprd, tmp_path):
    # rprd parses a request whole: 1 MiB requests keep its peak memory
    # during a large apply low (10,000 Servers: 67 MB -> 43 MB).
    f = write(tmp_path, "many.yaml", many_servers(12000))
    p = rprd.ctl("apply", "-f", f)
    assert p.returncode == 0, p.stderr
    assert len(p.stdout.splitlines()) == 12000
    m = re.search(r"^rprctl: 12000 objects went in (\d+) requests, each all or nothing", p.stderr, re.M)
    assert m and int(m.group(1)) >= 2, p.stderr
    assert len(rprd.get("/api/v1/servers").json()["items"]) == 12000


def test_apply_atomic_sends_one_request(rprd_factory, tmp_path):
    d = rprd_factory(extra_args=["--max-body", "65536"])
    rev = d.revision()
    p = d.ctl("apply", "--atomic", "-f", write(tmp_path, "many.yaml", many_servers(1500)))
    assert p.returncode == 1 and "request body is larger than 65536 bytes" in p.stderr, p.stderr
    assert d.revision() == rev, "an --atomic apply that failed wrote something"
    p = d.ctl("apply", "--atomic", "-f", write(tmp_path, "few.yaml", many_servers(20)))
    assert p.returncode == 0 and len(p.stdout.splitlines()) == 20, p
    assert "requests" not in p.stderr, p.stderr


def test_apply_stops_at_a_failing_request_and_says_what_it_applied(rprd_factory, tmp_path):
    d = rprd_factory(extra_args=["--max-body", "65536"])
    r = d.request("POST", "/api/v1/tokens", body={"name": "team-a", "role": "admin", "namespaces": ["team-a"]})
    assert r.status == 201, r
    scoped = r.json()["token"]
    # 1,000 objects it may write, then one in a namespace it may not: the
    # last request is refused, the ones before it stay applied.
    text = many_servers(1000, ns="team-a") + "---\n" + many_servers(1, ns="team-b", prefix="other")
    p = d.ctl("apply", "-f", write(tmp_path, "mixed.yaml", text), token=scoped)
    assert p.returncode == 1, p
    m = re.search(r"(\d+) of 1001 objects were applied before this; the rest were not sent", p.stderr)
    assert m, p.stderr
    applied = int(m.group(1))
    assert 0 < applied < 1001
    assert len(p.stdout.splitlines()) == applied
    assert len(d.get("/api/v1/namespaces/team-a/servers").json()["items"]) == applied


def test_apply_output_name_json_yaml(rprd, tmp_path):
    f = write(tmp_path, "s.yaml", SERVERS)
    p = rprd.ctl("apply", "-f", f, "-o", "json")
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout)
    assert res["kind"] == "ApplyResult" and res["dryRun"] is False
    assert [i["outcome"] for i in res["items"]] == ["created", "created"]
    assert all(i["object"]["metadata"]["uid"] for i in res["items"]), res
    p = rprd.ctl("apply", "-f", f, "-o", "name")
    assert p.stdout.splitlines() == ["server/web-1", "server/web-2"], p.stdout
    p = rprd.ctl("apply", "-f", f, "-o", "yaml")
    assert "kind: ApplyResult" in p.stdout and "uid:" in p.stdout, p.stdout
    p = rprd.ctl("apply", "-f", f, "-o", "wide")
    assert p.returncode == 1 and "unknown output format" in p.stderr, p.stderr
