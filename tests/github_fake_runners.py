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

The job queue (for autoscaling, tests/fixtures/github/workflow-*.json and
webhooks/workflow_job.*.json): /_fake/jobs_queue queues COUNT jobs with
LABELS in one workflow run of a repository; a stand-in runner that asks
for work takes the oldest queued job of its scope whose every label it
carries (self-hosted, linux and x64 implicit, without case); a job ends
after its duration (or /_fake/jobs_complete), and a queued one completed
that way is cancelled. Each change is delivered as a signed workflow_job
webhook to the hook set with /_fake/hook (a background thread; "drop"
loses the next N deliveries, as GitHub sometimes does). GET
.../actions/runs?status=queued and .../actions/runs/ID/jobs answer from
the same queue, with ETags.
"""

import base64
import copy
import hashlib
import hmac
import json
import os
import secrets
import threading
import time
import urllib.parse
import urllib.request

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "github")


def fixture(name):
    with open(os.path.join(FIXTURES, name)) as f:
        return json.load(f)

JIT_SHAPE = fixture("runners-generate-jitconfig.201.json")
LIST_ITEM_SHAPE = fixture("runners-list.200.json")["runners"][0]
TOKEN_SHAPE = fixture("runners-registration-token.201.json")
REMOVE_SHAPE = fixture("runners-remove-token.201.json")
RUN_SHAPE = fixture("workflow-runs-list.200.json")["workflow_runs"][0]
JOB_SHAPE = fixture("workflow-run-jobs-list.200.json")["jobs"][0]
HOOK_SHAPES = {"queued": fixture("webhooks/workflow_job.5.json"),
               "in_progress": fixture("webhooks/workflow_job.3.json"),
               "completed": fixture("webhooks/workflow_job.1.json")}
IMPLICIT = {"self-hosted", "linux", "x64"}


def labels_fit(job_labels, runner_labels):
    have = IMPLICIT | {l.lower() for l in runner_labels}
    return bool(job_labels) and all(l.lower() in have for l in job_labels)


class HookSender:
    """Delivers workflow_job webhooks in order, off the fake's lock."""

    def __init__(self):
        self.cond = threading.Condition()
        self.queue = []
        self.thread = None

    def send(self, hook, event, payload):
        data = json.dumps(payload).encode()
        with self.cond:
            self.queue.append((hook, event, data))
            if self.thread is None:
                self.thread = threading.Thread(target=self.run, daemon=True)
                self.thread.start()
            self.cond.notify()

    def run(self):
        while True:
            with self.cond:
                while not self.queue:
                    self.cond.wait()
                hook, event, data = self.queue.pop(0)
            sig = "sha256=" + hmac.new(hook["secret"].encode(), data, hashlib.sha256).hexdigest()
            req = urllib.request.Request(hook["url"], data=data, method="POST", headers={
                "Content-Type": "application/json", "X-GitHub-Event": event,
                "X-GitHub-Delivery": secrets.token_hex(16), "X-Hub-Signature-256": sig,
                "User-Agent": "GitHub-Hookshot/fake"})
            try:
                with urllib.request.urlopen(req, timeout=10) as r:
                    status = r.status
            except urllib.error.HTTPError as e:
                status = e.code
            except OSError:
                status = 0
            hook.setdefault("answers", []).append(status)


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
        self.queue = {}           # job id -> job (the Actions queue)
        self.next_job = 7000001
        self.next_run = 8000001
        self.hook = None          # {"url", "secret", "answers"}
        self.drop_hooks = 0       # deliveries still to lose
        self.delivered = []       # (time, action, job id) of each delivery sent
        self.hold = False         # runners take no job while set
        if not hasattr(self, "sender"):
            self.sender = HookSender()

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
        elif what == "hook":
            self.hook = {"url": body["url"], "secret": body["secret"], "answers": []} if body.get("url") else None
            self.drop_hooks = int(body.get("drop", 0))
        elif what == "jobs_queue":
            return self.queue_jobs(body)
        elif what == "jobs_complete":
            self.complete_jobs(body.get("ids"))
        elif what == "jobs_hold":
            self.hold = bool(body.get("hold", True))
        elif what == "runner_add":
            # A registration made behind rpr's back (an orphan, or another tool's).
            self.create(body.get("scope", ""), body["name"], body.get("labels", []), False, online=False)
        else:
            return False
        return True

    # ---- the job queue ----

    def queue_jobs(self, body):
        owner, name = body["repo"].split("/")
        run = self.next_run
        self.next_run += 1
        ids = []
        for _ in range(int(body.get("count", 1))):
            jid = self.next_job
            self.next_job += 1
            self.queue[jid] = {"id": jid, "run_id": run, "scope": "repo:%s/%s" % (owner, name), "owner": owner,
                               "name": name, "labels": list(body.get("labels", ["self-hosted"])),
                               "status": "queued", "runner": None, "runner_id": None,
                               "duration": body.get("duration"), "queued_at": time.time(), "taken_at": None,
                               "done_at": None, "hooked": bool(body.get("webhook", True))}
            ids.append(jid)
            self.deliver(self.queue[jid], "queued")
        return ids

    def complete_jobs(self, ids):
        for j in self.queue.values():
            if ids is not None and j["id"] not in ids:
                continue
            if j["status"] == "queued":
                self.finish(j)
            elif j["status"] == "in_progress":
                j["duration"] = 0

    def finish(self, j):
        j["status"] = "completed"
        j["done_at"] = time.time()
        self.deliver(j, "completed")

    def deliver(self, j, action):
        if not self.hook or not j["hooked"]:
            return
        if self.drop_hooks > 0:
            self.drop_hooks -= 1
            return
        p = copy.deepcopy(HOOK_SHAPES[action])
        w = p["workflow_job"]
        w.update({"id": j["id"], "run_id": j["run_id"], "labels": j["labels"], "status": action,
                  "runner_name": j["runner"], "runner_id": j["runner_id"]})
        if action != "completed":
            w["conclusion"] = None
        repo = p["repository"]
        repo.update({"name": j["name"], "full_name": "%s/%s" % (j["owner"], j["name"])})
        repo["owner"]["login"] = j["owner"]
        self.delivered.append((time.time(), action, j["id"]))
        self.sender.send(self.hook, "workflow_job", p)

    def take_job(self, r):
        """The oldest queued job r can take, now in progress on r; or None."""
        if self.hold:
            return None
        for j in sorted(self.queue.values(), key=lambda j: j["id"]):
            if j["status"] == "queued" and j["scope"] == r["scope"] and labels_fit(j["labels"], r["labels"]):
                j.update({"status": "in_progress", "runner": r["name"], "runner_id": r["id"],
                          "taken_at": time.time()})
                r["queue_job"] = j["id"]
                self.deliver(j, "in_progress")
                return j
        return None

    def jobs_view(self):
        return [{k: v for k, v in j.items()} for j in sorted(self.queue.values(), key=lambda j: j["id"])]

    def runs_route(self, handler, method, scope, rest, query):
        if method != "GET":
            return 404, _err("Not Found", 404)
        mine = [j for j in self.queue.values() if j["scope"] == scope]
        if not rest:
            want = query.get("status", [None])[0]
            runs = sorted({j["run_id"] for j in mine if want is None or j["status"] == want})
            items = []
            for rid in runs:
                it = copy.deepcopy(RUN_SHAPE)
                it.update({"id": rid, "status": want or "queued", "conclusion": None, "run_number": rid})
                items.append(it)
            return 200, {"total_count": len(items), "workflow_runs": items}
        if len(rest) == 2 and rest[0].isdigit() and rest[1] == "jobs":
            items = []
            for j in sorted((j for j in mine if j["run_id"] == int(rest[0])), key=lambda j: j["id"]):
                it = copy.deepcopy(JOB_SHAPE)
                it.update({"id": j["id"], "run_id": j["run_id"], "status": j["status"], "labels": j["labels"],
                           "runner_name": j["runner"], "runner_id": j["runner_id"],
                           "conclusion": "success" if j["status"] == "completed" else None})
                items.append(it)
            return 200, {"total_count": len(items), "jobs": items}
        return 404, _err("Not Found", 404)

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
        if parts[0] == "runs" and not scope.startswith("org:"):
            return self.runs_route(handler, method, scope, parts[1:], query)
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
            j = self.queue.get(r.get("queue_job"))
            if j is None or j["duration"] is None or time.time() - j["taken_at"] < j["duration"]:
                return "busy\n"
            self.finish(j)
            r["job"] = "done"
        if r.get("job") is None and self.take_job(r):
            r["job"] = "running"
            r["busy"] = True
            self.jobs += 1
            return "job\n"
        if r.get("job") == "done":
            r["job"] = None
            r["busy"] = False
            if r["ephemeral"]:
                # GitHub removes an ephemeral runner once its job is over.
                del self.by_id[r["id"]]
            return "done\n"
        return "idle\n"
