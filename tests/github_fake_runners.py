"""The self-hosted runner part of the fake GitHub (see github_fake.py).

GitHub's side, with its published payloads (tests/fixtures/github/
*runners*.json): generate-jitconfig, registration-token, remove-token, the
runner list (per_page up to 100, Link pagination), get, delete (204; 422
while the runner runs a job), downloads and, for organisations, runner
groups; repository and organisation scopes. A token whose scopes hold
neither "repo" nor "admin:org" gets 403, as a token without the right does.

The runners' side, which GitHub keeps to itself and the stand-in runner
release (tests/integration/runner_release.py) speaks instead, plain text
over /_runner/...: register (what config.sh does with a registration
token), heartbeat (online; the answer hands out a job, says the job ended,
that the version is deprecated, or that the registration is gone).

Switches for the tests: refuse JIT (404, as a server without it), answer
403 to every runner request, the version deprecated, how long without a
heartbeat makes a runner offline, and jobs given to runners by name.
"""

import base64
import copy
import hashlib
import json
import os
import secrets
import time
import urllib.parse

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "github")


def fixture(name):
    with open(os.path.join(FIXTURES, name)) as f:
        return json.load(f)

JIT_SHAPE = fixture("runners-generate-jitconfig.201.json")
LIST_ITEM_SHAPE = fixture("runners-list.200.json")["runners"][0]
TOKEN_SHAPE = fixture("runners-registration-token.201.json")
REMOVE_SHAPE = fixture("runners-remove-token.201.json")


def _err(message, status):
    return {"message": message, "documentation_url": "https://docs.github.com/rest/actions/self-hosted-runners",
            "status": str(status)}


class Runners:
    """The runner state of the fake; callers hold the State's lock."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.by_id = {}           # id -> runner dict
        self.next_id = 1000
        self.reg_tokens = {}      # token -> (scope, expires)
        self.refuse_jit = False
        self.forbid = False
        self.deprecated = False
        self.offline_after = 5.0  # seconds without a heartbeat
        self.jobs = 0
        self.release = None       # {"path", "sha256", "version"}
        self.gone = []            # names deleted, in order
        self.blackhole = False    # heartbeats are not heard: runners never come online
        self.jit_delay = 0.0      # seconds generate-jitconfig takes (before it registers)
        self.jit_waiting = 0      # generate-jitconfig requests that entered that delay
        self.jits = []            # every encoded_jit_config handed out (for the secrecy tests)

    # ---- control ----

    def control(self, what, body):
        if what == "runner_switches":
            for k in ("refuse_jit", "forbid", "deprecated", "blackhole"):
                if k in body:
                    setattr(self, k, bool(body[k]))
            if "jit_delay" in body:
                self.jit_delay = float(body["jit_delay"])
            if "offline_after" in body:
                self.offline_after = float(body["offline_after"])
        elif what == "runner_job":
            r = self.find(body["name"])
            r["job"] = "assigned"
        elif what == "runner_job_done":
            r = self.find(body["name"])
            if r.get("job") in ("assigned", "running"):
                r["job"] = "done"
        elif what == "runner_busy":
            self.find(body["name"])["busy"] = bool(body.get("busy", True))
        elif what == "runner_release":
            with open(body["path"], "rb") as f:
                data = f.read()
            self.release = {"path": body["path"], "sha256": hashlib.sha256(data).hexdigest(),
                            "version": body.get("version", "2.321.0")}
        elif what == "runner_add":
            # A registration made behind rpr's back (an orphan, or another tool's).
            self.create(body.get("scope", ""), body["name"], body.get("labels", []), False, online=False)
        else:
            return False
        return True

    def find(self, name):
        for r in self.by_id.values():
            if r["name"] == name:
                return r
        raise ValueError("no runner %s" % name)

    def view(self):
        now = time.time()
        return [{"id": r["id"], "name": r["name"], "scope": r["scope"], "status": self.status(r, now),
                 "busy": r["busy"], "ephemeral": r["ephemeral"], "labels": r["labels"], "job": r.get("job")}
                for r in sorted(self.by_id.values(), key=lambda r: r["id"])]

    # ---- runners ----

    def status(self, r, now):
        return "online" if r["seen"] and now - r["seen"] < self.offline_after else "offline"

    def create(self, scope, name, labels, ephemeral, online=False):
        for r in self.by_id.values():
            if r["scope"] == scope and r["name"] == name:
                raise KeyError(name)
        rid = self.next_id
        self.next_id += 1
        r = {"id": rid, "name": name, "scope": scope, "labels": list(labels), "ephemeral": bool(ephemeral),
             "busy": False, "seen": time.time() if online else 0, "secret": secrets.token_hex(16), "job": None}
        self.by_id[rid] = r
        return r

    def item(self, r, now):
        it = copy.deepcopy(LIST_ITEM_SHAPE)
        ro = [l for l in it["labels"] if l["type"] == "read-only"]
        labels = ro + [{"id": 100 + i, "name": n, "type": "custom"} for i, n in enumerate(r["labels"])]
        it.update({"id": r["id"], "name": r["name"], "os": "linux", "status": self.status(r, now),
                   "busy": r["busy"], "ephemeral": r["ephemeral"], "labels": labels})
        return it

    # ---- GitHub's routes ----

    def route(self, handler, method, scope, parts, query, token_scopes, body):
        """parts: what follows .../actions/; returns (status, body)."""
        if self.forbid or not ({"repo", "admin:org"} & set(s.strip() for s in (token_scopes or "").split(","))):
            return 403, _err("Resource not accessible by personal access token", 403)
        now = time.time()
        if parts == ["runner-groups"] and method == "GET":
            return 200, {"total_count": 1, "runner_groups": [
                {"id": 1, "name": "Default", "visibility": "all", "default": True, "inherited": False,
                 "allows_public_repositories": False, "restricted_to_workflows": False,
                 "selected_workflows": [], "workflow_restrictions_read_only": False}]}
        if parts[0] != "runners":
            return 404, _err("Not Found", 404)
        rest = parts[1:]
        if not rest and method == "GET":
            return self.list(handler, scope, query, now)
        if rest == ["generate-jitconfig"] and method == "POST":
            return self.jit(handler, scope, body)
        if rest in (["registration-token"], ["remove-token"]) and method == "POST":
            tok = copy.deepcopy(TOKEN_SHAPE if rest[0] == "registration-token" else REMOVE_SHAPE)
            tok["token"] = secrets.token_hex(15).upper()
            exp = now + 3600
            tok["expires_at"] = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(exp))
            if rest[0] == "registration-token":
                self.reg_tokens[tok["token"]] = (scope, exp)
            return 201, tok
        if rest == ["downloads"] and method == "GET":
            return 200, self.downloads(handler)
        if len(rest) == 1 and rest[0].isdigit():
            r = self.by_id.get(int(rest[0]))
            if r is None or r["scope"] != scope:
                return 404, _err("Not Found", 404)
            if method == "GET":
                return 200, self.item(r, now)
            if method == "DELETE":
                if r["busy"]:
                    return 422, _err("Bad request - Runner \"%s\" is still running a job\"" % r["name"], 422)
                del self.by_id[r["id"]]
                self.gone.append(r["name"])
                return 204, None
        return 404, _err("Not Found", 404)

    def list(self, handler, scope, query, now):
        try:
            per_page = min(100, max(1, int(query.get("per_page", ["30"])[0])))
            page = max(1, int(query.get("page", ["1"])[0]))
        except ValueError:
            return 422, _err("Invalid request", 422)
        mine = sorted((r for r in self.by_id.values() if r["scope"] == scope), key=lambda r: r["id"])
        last = max(1, (len(mine) + per_page - 1) // per_page)
        if page < last:
            u = urllib.parse.urlsplit(handler.path)
            link = "%s%s?per_page=%d&page=%%d" % (handler.base(), u.path, per_page)
            handler.extra_headers["Link"] = '<%s>; rel="next", <%s>; rel="last"' % (link % (page + 1), link % last)
        items = [self.item(r, now) for r in mine[(page - 1) * per_page:page * per_page]]
        return 200, {"total_count": len(mine), "runners": items}

    def jit(self, handler, scope, body):
        if self.refuse_jit:
            return 404, _err("Not Found", 404)
        name = (body or {}).get("name")
        if not isinstance(name, str) or not name or not isinstance((body or {}).get("runner_group_id"), int):
            return 422, _err("Invalid request.\n\nname and runner_group_id are required", 422)
        try:
            r = self.create(scope, name, body.get("labels") or [], True)
        except KeyError:
            return 409, _err("Already exists - A runner with the name %s already exists." % name, 409)
        b = copy.deepcopy(JIT_SHAPE)
        b["runner"].update({"id": r["id"], "name": name, "os": "unknown", "status": "offline", "busy": False})
        b["runner"]["labels"] = [l for l in b["runner"]["labels"] if l["type"] == "read-only"] + [
            {"id": 100 + i, "name": n, "type": "custom"} for i, n in enumerate(r["labels"])]
        creds = "url=%s\nid=%d\nsecret=%s\n" % (handler.base(), r["id"], r["secret"])
        b["encoded_jit_config"] = base64.b64encode(creds.encode()).decode()
        self.jits.append(b["encoded_jit_config"])
        return 201, b

    def downloads(self, handler):
        if not self.release:
            return []
        v = self.release["version"]
        name = "actions-runner-linux-x64-%s.tar.gz" % v
        return [{"os": "linux", "architecture": "x64", "download_url": handler.base() + "/_runner/" + name,
                 "filename": name, "temp_download_token": None, "sha256_checksum": self.release["sha256"]}]

    # ---- the runners' own side ----

    def runner_route(self, handler, method, path, form):
        """/_runner/...: returns (status, content type, bytes)."""
        if method == "GET" and path.startswith("/_runner/actions-runner-") and self.release:
            with open(self.release["path"], "rb") as f:
                return 200, "application/octet-stream", f.read()
        if method != "POST":
            return 404, "text/plain", b"not found\n"
        if path == "/_runner/register":
            tok = self.reg_tokens.get(form.get("token", ""))
            if tok is None or tok[1] < time.time():
                return 401, "text/plain", b"invalid registration token\n"
            labels = [l for l in form.get("labels", "").split(",") if l]
            try:
                r = self.create(tok[0], form.get("name", ""), labels, form.get("ephemeral") == "true")
            except KeyError:
                if form.get("replace") != "true":
                    return 409, "text/plain", b"a runner with this name exists\n"
                old = self.find(form.get("name", ""))
                del self.by_id[old["id"]]
                r = self.create(tok[0], form.get("name", ""), labels, form.get("ephemeral") == "true")
            return 200, "text/plain", ("id=%d\nsecret=%s\n" % (r["id"], r["secret"])).encode()
        if path == "/_runner/heartbeat":
            return 200, "text/plain", self.heartbeat(form).encode()
        return 404, "text/plain", b"not found\n"

    def heartbeat(self, form):
        try:
            r = self.by_id.get(int(form.get("id", "0")))
        except ValueError:
            r = None
        if r is None or r["secret"] != form.get("secret"):
            return "gone\n"
        if self.blackhole:
            return "idle\n"
        if self.deprecated:
            return "deprecated\n"
        r["seen"] = time.time()
        if r.get("job") == "assigned":
            r["job"] = "running"
            r["busy"] = True
            self.jobs += 1
            return "job\n"
        if r.get("job") == "running":
            return "busy\n"
        if r.get("job") == "done":
            r["job"] = None
            r["busy"] = False
            if r["ephemeral"]:
                # GitHub removes an ephemeral runner once its job is over.
                del self.by_id[r["id"]]
            return "done\n"
        return "idle\n"
