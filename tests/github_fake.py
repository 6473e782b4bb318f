#!/usr/bin/env python3
"""A fake GitHub REST API for rpr's tests and benchmarks (standard library).

It answers the few requests rpr makes, with GitHub's own published response
shapes (tests/fixtures/github/*.json, see its README): only the fields that
matter are replaced (sha, commit author, date and message, names, urls,
privacy). It behaves as GitHub does where rpr must cope: ETags and 304s
that cost no rate limit, 401 for a bad token, 404 for a private repository
asked for without one, a rate limit per token with X-RateLimit-* headers
and a 403 once spent, Retry-After, Link pagination, the
GitHub-Authentication-Token-Expiration header, and scripted sequences of
branch heads.

Run as a process:  python3 tests/github_fake.py [--port N]   (prints the port)
Or in-process:     g = FakeGitHub(); g.start(); g.url ...; g.stop()
Tests drive it through /_fake/... (JSON) or the methods of the same names.
"""

import argparse
import copy
import hashlib
import json
import os
import signal
import socket
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from github_fake_runners import Runners

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "github")
DOCS = "https://docs.github.com/rest"
MAX_LOG = 200000


def _fixture(name):
    with open(os.path.join(FIXTURES, name)) as f:
        return json.load(f)


REPO_SHAPE = _fixture("repos-get.200.json")
BRANCH_SHAPE = _fixture("branches-get.200.json")
BRANCH_ITEM_SHAPE = _fixture("branches-list.200.json")[0]


class Head:
    def __init__(self, sha, message="commit", author="The Octocat", date="2026-11-20T10:00:00Z"):
        self.sha, self.message, self.author, self.date = sha, message, author, date

    @staticmethod
    def of(d):
        if not isinstance(d, dict) or not isinstance(d.get("sha"), str) or len(d["sha"]) != 40:
            raise ValueError("a head needs sha (40 hex digits)")
        return Head(d["sha"], d.get("message") or "commit", d.get("author") or "The Octocat",
                    d.get("date") or "2026-11-20T10:00:00Z")


class State:
    """Everything the fake knows, under one lock."""

    def __init__(self):
        self.lock = threading.Lock()
        self.runners = Runners()
        self.reset()

    def reset(self):
        self.repos = {}        # "owner/name" -> {"private", "default_branch", "clone_url", "branches": {b: Head}}
        self.scripts = {}      # ("owner/name", branch) -> [Head, ...] still to come
        self.tokens = {}       # token -> {"valid", "expires"}
        self.limits = {}       # token ("" anonymous) -> {"limit", "remaining", "reset"}
        self.retry_after = None  # (seconds, count)
        self.fail = None       # (status, count)
        self.log = []
        self.not_modified = 0
        self.runners.reset()

    # ---- control ----

    def add_repo(self, owner, name, private=False, default_branch="main", clone_url=None, branches=None):
        self.repos["%s/%s" % (owner, name)] = {
            "owner": owner, "name": name, "private": bool(private), "default_branch": default_branch,
            "clone_url": clone_url,
            "branches": {b: Head.of(h) for b, h in (branches or {}).items()}}

    def repo(self, owner, name):
        r = self.repos.get("%s/%s" % (owner, name))
        if r is None:
            raise ValueError("no repository %s/%s (add it first)" % (owner, name))
        return r

    def set_head(self, owner, name, branch, **head):
        self.repo(owner, name)["branches"][branch] = Head.of(head)

    def script_heads(self, owner, name, branch, heads):
        self.repo(owner, name)
        self.scripts[("%s/%s" % (owner, name), branch)] = [Head.of(h) for h in heads]

    def delete_branch(self, owner, name, branch):
        self.repo(owner, name)["branches"].pop(branch, None)

    def add_token(self, token, valid=True, expires=None, scopes="repo"):
        self.tokens[token] = {"valid": bool(valid), "expires": expires, "scopes": scopes}

    def set_rate_limit(self, token="", limit=5000, remaining=5000, reset=None):
        self.limits[token] = {"limit": int(limit), "remaining": int(remaining),
                              "reset": int(reset if reset is not None else time.time() + 3600)}

    def set_retry_after(self, seconds, count=1):
        self.retry_after = (int(seconds), int(count))

    def fail_next(self, status, count=1):
        self.fail = (int(status), int(count))

    def clear_requests(self):
        self.log = []
        self.not_modified = 0

    def requests(self):
        return {"requests": list(self.log), "total": len(self.log), "not_modified": self.not_modified}

    # ---- the rate limit ----

    def limit_of(self, token):
        lim = self.limits.get(token)
        now = time.time()
        if lim is None or now >= lim["reset"]:
            base = lim["limit"] if lim else (60 if token == "" else 5000)
            lim = {"limit": base, "remaining": base, "reset": int(now) + 3600}
            self.limits[token] = lim
        return lim


def _basic_error(message, status, doc=DOCS):
    return {"message": message, "documentation_url": doc, "status": str(status)}


def _etag(body):
    return '"%s"' % hashlib.sha256(body).hexdigest()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "GitHub.com"
    sys_version = ""

    def log_message(self, fmt, *args):
        pass

    def setup(self):
        super().setup()
        # Headers and body leave in separate writes: without this, Nagle and
        # the client's delayed ACK add 40 ms to every kept-alive request,
        # which GitHub does not.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    @property
    def state(self):
        return self.server.state

    # ---- answering ----

    def send(self, status, body=None, headers=None):
        data = b"" if body is None else json.dumps(body, indent=2).encode()
        self.send_response(status)
        if body is not None:
            self.send_header("Content-Type", "application/json; charset=utf-8")
        for k, v in (headers or {}).items():
            self.send_header(k, str(v))
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if data and self.command != "HEAD":
            self.wfile.write(data)
        return status

    # ---- control routes ----

    def read_body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def do_DELETE(self):
        self.body = None
        with self.state.lock:
            return self.github(time.time())

    def do_POST(self):
        if self.path.startswith("/_runner/"):
            return self.runner_side()
        if not self.path.startswith("/_fake/"):
            try:
                self.body = json.loads(self.read_body() or b"null")
            except ValueError:
                return self.send(400, _basic_error("Problems parsing JSON", 400))
            if self.path.endswith("/generate-jitconfig"):
                with self.state.lock:
                    delay = self.state.runners.jit_delay
                    self.state.runners.jit_waiting += 1 if delay else 0
                time.sleep(delay)
            with self.state.lock:
                return self.github(time.time())
        try:
            raw = self.read_body()
            body = json.loads(raw or b"{}") if raw else {}
            if not isinstance(body, dict):
                raise ValueError("the body must be a JSON object")
            what = self.path[len("/_fake/"):]
            s = self.state
            with s.lock:
                if what == "jobs_queue":
                    return self.send(200, {"ids": s.runners.queue_jobs(body)})
                if s.runners.control(what, body):
                    pass
                elif what == "reset":
                    s.reset()
                elif what == "repos":
                    s.add_repo(body["owner"], body["name"], body.get("private", False),
                               body.get("default_branch", "main"), body.get("clone_url"), body.get("branches"))
                elif what == "head":
                    b = dict(body)
                    s.set_head(b.pop("owner"), b.pop("name"), b.pop("branch"), **b)
                elif what == "script":
                    s.script_heads(body["owner"], body["name"], body["branch"], body["heads"])
                elif what == "delete_branch":
                    s.delete_branch(body["owner"], body["name"], body["branch"])
                elif what == "tokens":
                    s.add_token(body["token"], body.get("valid", True), body.get("expires"),
                                body.get("scopes", "repo"))
                elif what == "ratelimit":
                    s.set_rate_limit(body.get("token", ""), body.get("limit", 5000), body.get("remaining", 5000),
                                     body.get("reset"))
                elif what == "retry_after":
                    s.set_retry_after(body["seconds"], body.get("count", 1))
                elif what == "fail":
                    s.fail_next(body["status"], body.get("count", 1))
                elif what == "clear_requests":
                    s.clear_requests()
                else:
                    return self.send(404, {"message": "unknown control route " + self.path})
        except (ValueError, KeyError, TypeError) as e:
            return self.send(400, {"message": "bad control request: %s" % (e,)})
        return self.send(200, {"ok": True})

    # ---- GitHub routes ----

    def do_GET(self):
        if self.path == "/_fake/requests":
            with self.state.lock:
                return self.send(200, self.state.requests())
        if self.path == "/_fake/runners":
            with self.state.lock:
                rs = self.state.runners
                return self.send(200, {"runners": rs.view(), "jobs": rs.jobs, "deleted": list(rs.gone),
                                       "jit_waiting": rs.jit_waiting, "jits": list(rs.jits)})
        if self.path == "/_fake/jobs":
            with self.state.lock:
                rs = self.state.runners
                return self.send(200, {"jobs": rs.jobs_view(), "delivered": list(rs.delivered),
                                       "answers": list((rs.hook or {}).get("answers", []))})
        if self.path.startswith("/_runner/"):
            return self.runner_side()
        self.body = None
        started = time.time()
        with self.state.lock:
            status = self.github(started)
        return status

    def token(self):
        auth = self.headers.get("Authorization") or ""
        for prefix in ("Bearer ", "bearer ", "token "):
            if auth.startswith(prefix):
                return auth[len(prefix):].strip()
        return ""

    def record(self, started, status, token):
        s = self.state
        if len(s.log) < MAX_LOG:
            s.log.append({"method": self.command, "path": self.path, "status": status, "time": started,
                          "auth": bool(token), "if_none_match": bool(self.headers.get("If-None-Match"))})
        if status == 304:
            s.not_modified += 1

    def github(self, started):
        token = self.token()
        status = self.github_answer(token)
        self.record(started, status, token)
        return status

    def github_answer(self, token):
        s = self.state
        headers = {}
        self.extra_headers = {}  # the handler lives as long as the connection
        if token:
            t = s.tokens.get(token)
            if t is None or not t["valid"]:
                return self.send(401, _basic_error("Bad credentials", 401))
            if t["expires"]:
                headers["GitHub-Authentication-Token-Expiration"] = t["expires"]
            headers["X-OAuth-Scopes"] = t["scopes"]
        if s.fail:
            st, count = s.fail
            s.fail = (st, count - 1) if count > 1 else None
            return self.send(st, _basic_error("Server Error", st), headers)
        if s.retry_after:
            secs, count = s.retry_after
            s.retry_after = (secs, count - 1) if count > 1 else None
            headers["Retry-After"] = secs
            return self.send(403, _basic_error(
                "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
                403, DOCS + "/overview/rate-limits-for-the-rest-api"), headers)

        lim = s.limit_of(token)
        headers.update({"X-RateLimit-Limit": lim["limit"], "X-RateLimit-Reset": lim["reset"],
                        "X-RateLimit-Resource": "core"})
        if lim["remaining"] <= 0:
            headers.update({"X-RateLimit-Remaining": 0, "X-RateLimit-Used": lim["limit"]})
            who = "user" if token else "127.0.0.1"
            return self.send(403, _basic_error(
                "API rate limit exceeded for %s. (But here's the good news: Authenticated requests get a "
                "higher rate limit. Check out the documentation for more details.)" % who, 403,
                DOCS + "/overview/resources-in-the-rest-api#rate-limiting"), headers)

        status, body = self.route(token)
        data = json.dumps(body, indent=2).encode() if body is not None else b""
        etag = _etag(data)
        if status == 200 and self.command == "GET" and self.headers.get("If-None-Match") == etag:
            # GitHub does not count a 304 against the rate limit.
            headers.update({"X-RateLimit-Remaining": lim["remaining"],
                            "X-RateLimit-Used": lim["limit"] - lim["remaining"], "ETag": etag})
            return self.send(304, None, headers)
        lim["remaining"] -= 1
        headers.update({"X-RateLimit-Remaining": lim["remaining"],
                        "X-RateLimit-Used": lim["limit"] - lim["remaining"]})
        if status == 200:
            headers["ETag"] = etag
            headers.update(getattr(self, "extra_headers", {}))
        return self.send(status, body, headers)

    def runner_side(self):
        """What the stand-in runner says (form-encoded), answered in plain text."""
        form = {k: v[0] for k, v in urllib.parse.parse_qs(self.read_body().decode()).items()}
        with self.state.lock:
            status, ctype, data = self.state.runners.runner_route(self, self.command, self.path, form)
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def route(self, token):
        url = urllib.parse.urlsplit(self.path)
        parts = [urllib.parse.unquote(p) for p in url.path.split("/")[1:]]
        query = urllib.parse.parse_qs(url.query)
        scopes = self.state.tokens[token]["scopes"] if token in self.state.tokens else None
        if len(parts) >= 4 and parts[0] == "orgs" and parts[2] == "actions":
            return self.state.runners.route(self, self.command, "org:" + parts[1], parts[3:], query, scopes,
                                            self.body)
        if len(parts) < 3 or parts[0] != "repos":
            return 404, _basic_error("Not Found", 404)
        repo = self.state.repos.get("%s/%s" % (parts[1], parts[2]))
        if repo is None or (repo["private"] and not token):
            return 404, _basic_error("Not Found", 404, DOCS + "/repos/repos#get-a-repository")
        if len(parts) >= 5 and parts[3] == "actions":
            return self.state.runners.route(self, self.command, "repo:%s/%s" % (parts[1], parts[2]), parts[4:],
                                            query, scopes, self.body)
        if self.command != "GET":
            return 404, _basic_error("Not Found", 404)
        if len(parts) == 3:
            return 200, self.repo_body(repo)
        if parts[3] != "branches":
            return 404, _basic_error("Not Found", 404)
        if len(parts) == 4:
            return self.branch_list(repo, query)
        branch = "/".join(parts[4:])
        script = self.state.scripts.get(("%s/%s" % (parts[1], parts[2]), branch))
        if script:
            repo["branches"][branch] = script.pop(0)
        head = repo["branches"].get(branch)
        if head is None:
            return 404, _basic_error("Branch not found", 404, DOCS + "/branches/branches#get-a-branch")
        return 200, self.branch_body(repo, branch, head)

    # ---- bodies, from GitHub's published examples ----

    def base(self):
        return "http://%s" % (self.headers.get("Host") or "127.0.0.1")

    def repo_body(self, repo):
        b = copy.deepcopy(REPO_SHAPE)
        full = "%s/%s" % (repo["owner"], repo["name"])
        b.update({"name": repo["name"], "full_name": full, "private": repo["private"],
                  "visibility": "private" if repo["private"] else "public",
                  "html_url": "https://github.com/" + full, "url": self.base() + "/repos/" + full,
                  "clone_url": repo["clone_url"] or "https://github.com/%s.git" % full,
                  "git_url": "git://github.com/%s.git" % full, "ssh_url": "git@github.com:%s.git" % full,
                  "default_branch": repo["default_branch"]})
        b["owner"]["login"] = repo["owner"]
        return b

    def branch_body(self, repo, branch, head):
        b = copy.deepcopy(BRANCH_SHAPE)
        full = "%s/%s" % (repo["owner"], repo["name"])
        b["name"] = branch
        c = b["commit"]
        c["sha"] = head.sha
        c["url"] = "%s/repos/%s/commits/%s" % (self.base(), full, head.sha)
        for who in ("author", "committer"):
            c["commit"][who]["name"] = head.author
            c["commit"][who]["date"] = head.date
        c["commit"]["message"] = head.message
        b["_links"] = {"self": "%s/repos/%s/branches/%s" % (self.base(), full, branch),
                       "html": "https://github.com/%s/tree/%s" % (full, branch)}
        return b

    def branch_list(self, repo, query):
        try:
            per_page = min(100, max(1, int(query.get("per_page", ["30"])[0])))
            page = max(1, int(query.get("page", ["1"])[0]))
        except ValueError:
            return 422, _basic_error("Invalid request", 422)
        names = sorted(repo["branches"])
        last = max(1, (len(names) + per_page - 1) // per_page)
        items = []
        for name in names[(page - 1) * per_page:page * per_page]:
            it = copy.deepcopy(BRANCH_ITEM_SHAPE)
            it.update({"name": name, "protected": False})
            it.pop("protection", None)
            it.pop("protection_url", None)
            it["commit"] = {"sha": repo["branches"][name].sha,
                            "url": "%s/repos/%s/%s/commits/%s" % (self.base(), repo["owner"], repo["name"],
                                                                   repo["branches"][name].sha)}
            items.append(it)
        if page < last:
            link = "%s/repos/%s/%s/branches?per_page=%d&page=%%d" % (self.base(), repo["owner"], repo["name"],
                                                                    per_page)
            self.extra_headers["Link"] = '<%s>; rel="next", <%s>; rel="last"' % (link % (page + 1), link % last)
        return 200, items


class FakeGitHub:
    """The fake in a thread of this process."""

    def __init__(self, host="127.0.0.1", port=0):
        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self.httpd.state = State()
        self.thread = None

    @property
    def port(self):
        return self.httpd.server_address[1]

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    def start(self):
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    def _call(self, fn, *args, **kw):
        s = self.httpd.state
        with s.lock:
            return getattr(s, fn)(*args, **kw)

    def add_repo(self, *a, **kw): return self._call("add_repo", *a, **kw)
    def set_head(self, *a, **kw): return self._call("set_head", *a, **kw)
    def script_heads(self, *a, **kw): return self._call("script_heads", *a, **kw)
    def delete_branch(self, *a, **kw): return self._call("delete_branch", *a, **kw)
    def add_token(self, *a, **kw): return self._call("add_token", *a, **kw)
    def set_rate_limit(self, *a, **kw): return self._call("set_rate_limit", *a, **kw)
    def set_retry_after(self, *a, **kw): return self._call("set_retry_after", *a, **kw)
    def fail_next(self, *a, **kw): return self._call("fail_next", *a, **kw)
    def clear_requests(self): return self._call("clear_requests")
    def reset(self): return self._call("reset")

    def requests(self):
        return self._call("requests")["requests"]

    def runner_control(self, what, **body):
        s = self.httpd.state
        with s.lock:
            if not s.runners.control(what, body):
                raise ValueError("unknown runner control " + what)

    def jobs(self):
        s = self.httpd.state
        with s.lock:
            return copy.deepcopy(s.runners.jobs_view())

    def queue_jobs(self, **body):
        s = self.httpd.state
        with s.lock:
            return s.runners.queue_jobs(body)

    def runners(self):
        s = self.httpd.state
        with s.lock:
            return s.runners.view()

    def runner_attr(self, name):
        s = self.httpd.state
        with s.lock:
            return copy.deepcopy(getattr(s.runners, name))


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main():
    ap = argparse.ArgumentParser(description="a fake GitHub REST API for rpr's tests")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()
    g = FakeGitHub(args.host, args.port)
    signal.signal(signal.SIGTERM, _interrupt)
    print(g.port, flush=True)
    try:
        g.httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    g.httpd.server_close()


if __name__ == "__main__":
    main()
