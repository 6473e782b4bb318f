"""The agents' trust boundary (issue 19): who may join (valid, expired,
wrong, used-up and api tokens), what an agent's credential opens (its own
agent endpoints, nothing else), revocation, the agent's check of rprd's
certificate, and secrets kept out of logs and answers. Real rpr-agent
processes against a real rprd over TLS on 127.0.0.1 (test_agents.py has
the rest of the agents' tests and the helpers)."""

import json
import os
import subprocess
import time

from test_agents import (JOIN_SECRET, PollStream, agents, exec_api, exec_in_background, https,  # noqa: F401
                         join_token, raw_join, result_of, rprd, running_agent)
from test_runners import gh, idle_count, release, workdir  # noqa: F401 (fixtures)
from test_security_runners import assert_on_no_command_line
from test_runners import objects as runner_objects
from test_runners import wait_for as runner_wait

CONTROLLERS = True


def test_join_refuses_wrong_expired_used_up_and_api_tokens(rprd, agents):
    join_token(rprd, "once", value="Once7Qw2Lk9Xv4Rt8Zp3Mb6", singleUse=True)
    join_token(rprd, "old", value="Old7Qw2Lk9Xv4Rt8Zp3Mb6Hs", expires="2020-01-01")

    p = agents(rprd, "a1").join(token="NotTheRightTokenAtAll123")
    assert p.returncode == 1 and "invalid agent join token" in p.stderr, p.stderr
    p = agents(rprd, "a2").join(token="Old7Qw2Lk9Xv4Rt8Zp3Mb6Hs")
    assert p.returncode == 1 and "expired" in p.stderr, p.stderr
    p = agents(rprd, "a3").join(token="Once7Qw2Lk9Xv4Rt8Zp3Mb6")
    assert p.returncode == 0, p.stderr
    p = agents(rprd, "a4").join(token="Once7Qw2Lk9Xv4Rt8Zp3Mb6")
    assert p.returncode == 1 and "single-use and has been used" in p.stderr, p.stderr
    # rprd's admin token is no join token.
    p = agents(rprd, "a5").join(token=rprd.token)
    assert p.returncode == 1 and "invalid agent join token" in p.stderr, p.stderr

    names = [s["metadata"]["name"] for s in rprd.get("/api/v1/servers").json()["items"]]
    assert names == ["a3"], names


def test_agent_refuses_a_server_whose_certificate_is_not_the_pinned_one(rprd, agents, tmp_path):
    join_token(rprd)
    a = agents(rprd, "edge")
    p = a.join(fingerprint="SHA256:" + "A" * 43)
    assert p.returncode == 1, p.stderr
    assert "TLS certificate is not the one expected" in p.stderr, p.stderr
    assert JOIN_SECRET not in p.stderr
    # A CA file that did not sign rprd's certificate: refused too.
    other = tmp_path / "other.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", str(tmp_path / "k.pem"), "-out", str(other), "-subj", "/CN=127.0.0.1", "-days", "1"],
                   check=True, capture_output=True)
    p = a.join(fingerprint=None, ca=str(other))
    assert p.returncode == 1 and "TLS certificate is not the one expected" in p.stderr, p.stderr
    assert "rpr.dev/join-token" not in json.dumps(rprd.get("/api/v1/tokens").json())
    # With rprd's own certificate as the CA, it joins.
    p = a.join(fingerprint=None, ca=rprd.cert)
    assert p.returncode == 0, p.stderr


# ---- commands ---------------------------------------------------------------------------


def test_a_deactivated_or_deleted_server_revokes_its_agent(rprd, agents):
    a = running_agent(rprd, agents)
    rprd.apply([{"apiVersion": "rpr/v1", "kind": "Server", "metadata": {"name": "edge"},
                 "spec": {"transport": "agent", "active": False}}])
    assert a.proc.wait(30) == 3
    a.proc = None
    assert "server default/edge is inactive" in a.log(), a.log()

    cred = a.credential()
    assert rprd.request("DELETE", "/api/v1/namespaces/default/servers/edge").status == 200
    status, body = https(rprd, "POST", "/api/v1/agents/poll", {"version": "0.1.0", "wait": 0}, token=cred)
    assert status == 403 and b"no longer exists" in body, body


def test_an_agent_credential_opens_nothing_but_its_own_agent_endpoints(rprd, agents):
    join_token(rprd)
    cred_a = raw_join(rprd, "a")
    cred_b = raw_join(rprd, "b")

    for method, path, body in [("GET", "/api/v1/servers", None),
                               ("GET", "/api/v1/namespaces/default/servers/a", None),
                               ("GET", "/api/v1/tokens", None),
                               ("GET", "/api/v1/watch", None),
                               ("PUT", "/api/v1/namespaces/default/servers/a",
                                {"apiVersion": "rpr/v1", "kind": "Server", "metadata": {"name": "a"},
                                 "spec": {"transport": "local"}}),
                               ("POST", "/api/v1/apply", []),
                               ("POST", "/api/v1/exec", {"servers": ["a"], "command": "id"}),
                               ("POST", "/api/v1/login", {"token": cred_a})]:
        status, out = https(rprd, method, path, body, token=cred_a)
        assert status in (401, 403), (method, path, status, out)
    # Nor is a join token a bearer token, nor an api token an agent's.
    status, _ = https(rprd, "GET", "/api/v1/servers", token=JOIN_SECRET)
    assert status == 401
    status, _ = https(rprd, "POST", "/api/v1/agents/poll", {"version": "0.1.0", "wait": 0}, token=rprd.token)
    assert status == 401

    # A job offered to b is not a's to take, feed or finish.
    t, result = exec_in_background(rprd, {"servers": ["b"], "command": "true"})
    status, body = https(rprd, "POST", "/api/v1/agents/poll", {"version": "0.1.0", "wait": 10}, token=cred_b)
    assert status == 200, body
    job = json.loads(body)["offers"][0]["id"]
    for sub, body in [("accept", None), ("output?offset=0", b"forged"), ("output?offset=0&stream=stderr", b"forged"),
                      ("finish", {"exitCode": 0, "bytes": 0, "sha256": "0" * 64})]:
        status, out = https(rprd, "POST", "/api/v1/agents/jobs/%s/%s" % (job, sub), body, token=cred_a)
        assert status == 404, (sub, status, out)
    status, _ = https(rprd, "POST", "/api/v1/agents/jobs/%s/accept" % job, token=cred_b)
    assert status == 200
    empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    status, out = https(rprd, "POST", "/api/v1/agents/jobs/%s/finish" % job,
                        {"exitCode": 0, "bytes": 0, "sha256": empty}, token=cred_b)
    assert status == 200, out
    t.join(20)
    assert result_of(result["lines"], "b")["exitCode"] == 0


def test_no_secret_reaches_a_log_or_an_answer(rprd, agents):
    a = running_agent(rprd, agents)
    exec_api(rprd, {"servers": ["edge"], "command": "echo done"})
    a.stop()
    cred = a.credential()
    assert len(cred) == 32
    answers = (rprd.get("/api/v1/tokens").text + rprd.get("/api/v1/servers").text +
               rprd.ctl("get", "tokens", "-o", "yaml").stdout)
    for secret in (cred, JOIN_SECRET):
        for where, text in [("rprd's log", rprd.stderr()), ("the agent's log", a.log()), ("the API", answers)]:
            assert secret not in text, "a secret in " + where
    with open(os.path.join(a.state_dir, "agent.json")) as f:
        assert JOIN_SECRET not in f.read()


# ---- Runs: a Binding deploys through the agent --------------------------------------------------


# ---- secrets on a job's stdin -------------------------------------------------------------------

def test_a_runners_secret_reaches_the_agents_host_on_the_jobs_stdin_only(rprd, agents, gh, release,  # noqa: F811
                                                                          workdir):
    """The JIT configuration travels in the job's offer (TLS, to the agent
    holding the job) and reaches the command's stdin through a file only it
    holds open: not in a log, the agent's state dir, an answer or an argv."""
    a = running_agent(rprd, agents, "ci-box", labels="ci=true")
    rprd.apply([o for o in runner_objects(gh, [], workdir, replicas=1) if o["kind"] != "Server"])
    o = runner_wait(rprd, lambda o: idle_count(o) == 1, "1 idle")
    jits = gh.runner_attr("jits")
    assert len(jits) == 1
    texts = {"rprd's log": rprd.all_stderr(), "the agent's log": a.log(), "status": json.dumps(o),
             "api": rprd.get("/api/v1/namespaces/default/runners").text}
    for root, _, files in os.walk(a.state_dir):
        for name in files:
            with open(os.path.join(root, name), errors="replace") as f:
                texts[os.path.join(root, name)] = f.read()
    for what, text in texts.items():
        assert jits[0] not in text, "the JIT configuration in " + what
    assert_on_no_command_line(jits)


# ---- the poll stream ---------------------------------------------------------------------

HB = {"version": "0.1.0", "wait": 20}


def stream_ends_with(s, code, text):
    """rprd answered the last frame with a Status naming why and closed the stream."""
    answer = s.recv()
    assert answer and answer.get("kind") == "Status" and answer.get("code") == code, answer
    assert text in answer["message"], answer
    assert s.closed()
    s.close()


def test_a_poll_stream_closes_on_a_bad_frame_saying_why(rprd):
    join_token(rprd)
    cred = raw_join(rprd, "edge")
    cases = [
        (b"\0\0\0\0", 400, "an empty frame"),
        (b"\0\0\0\x05{oops", 400, "a frame is not JSON"),
        (b"\xff\xff\xff\xff", 413, "at most 65536 bytes"),
        ((65537).to_bytes(4, "big") + b"{" * 100, 413, "a frame of 65537 bytes"),
        (b"\0\0\0\x02[]", 400, "a JSON object listing at most 64 jobs"),
        (b"\0\0\0\x15" + b'{"version": "0.0.9"} ', 426, "0.1.0 or newer"),
    ]
    for frame, code, text in cases:
        s = PollStream(rprd, cred)
        assert s.status == 101, s.head
        s.send_raw(frame)
        stream_ends_with(s, code, text)
    # A frame that does not come whole in time.
    s = PollStream(rprd, cred)
    s.send_raw(b"\0\0\0\x40{\"version\"")
    start = time.time()
    stream_ends_with(s, 408, "did not arrive whole within 10 s")
    assert 8 < time.time() - start < 15
    log = rprd.stderr()
    assert "poll stream of the agent of server default/edge closed: an empty frame" in log, log
    assert cred not in log
    # rprd serves on, and the agent's next stream works.
    s = PollStream(rprd, cred)
    s.send({"version": "0.1.0", "wait": 0})
    assert "offers" in s.recv()
    s.close()


def test_a_poll_stream_is_closed_at_its_next_frame_once_revoked(rprd):
    join_token(rprd)
    cred = raw_join(rprd, "edge")
    s = PollStream(rprd, cred)
    s.send({"version": "0.1.0", "wait": 0})
    assert "offers" in s.recv()
    rprd.apply([{"apiVersion": "rpr/v1", "kind": "Server", "metadata": {"name": "edge"},
                 "spec": {"transport": "agent", "active": False}}])
    s.send(HB)
    stream_ends_with(s, 403, "server default/edge is inactive")

    rprd.apply([{"apiVersion": "rpr/v1", "kind": "Server", "metadata": {"name": "edge"},
                 "spec": {"transport": "agent", "active": True}}])
    s = PollStream(rprd, cred)
    s.send({"version": "0.1.0", "wait": 0})
    assert "offers" in s.recv()
    # The credential deleted while the stream is open (its poll held).
    s.send(dict(HB, wait=2))
    assert rprd.request("DELETE", "/api/v1/namespaces/default/tokens/agent-edge").status == 200
    assert s.recv().get("offers", []) == []  # the held poll ends at its window
    s.send(HB)
    stream_ends_with(s, 401, "the agent's credential is no longer known")
    assert PollStream(rprd, cred).status == 401


def test_only_an_agent_credential_over_http11_may_open_a_poll_stream(rprd):
    join_token(rprd)
    cred = raw_join(rprd, "edge")
    # An api token, a join token, none: refused, never upgraded.
    s = PollStream(rprd, rprd.token)
    assert s.status == 401 and b"invalid agent credential" in s.buf, (s.head, s.buf)
    assert PollStream(rprd, JOIN_SECRET).status == 401
    assert PollStream(rprd, None).status == 401
    # No Upgrade, or another protocol: a plain 400.
    for upgrade in (None, "websocket"):
        s = PollStream(rprd, cred, upgrade=upgrade)
        assert s.status == 400 and b"Upgrade: rpr-agent-poll/1" in s.buf, (s.head, s.buf)
    # HTTP/2 has no upgrade: refused with a clear answer, rprd serves on.
    p = subprocess.run(["curl", "-s", "--http2", "--cacert", rprd.cert, "-H", "Authorization: Bearer " + cred,
                        "-w", "\n%{http_version} %{http_code}", "https://localhost:%d/api/v1/agents/stream"
                        % rprd.tls_port], capture_output=True, text=True, timeout=30)
    assert p.stdout.endswith("\n2 400"), p.stdout
    assert "came over HTTP/2" in p.stdout, p.stdout
    # A second stream of one agent ends the first.
    first = PollStream(rprd, cred)
    first.send(HB)
    time.sleep(0.3)
    second = PollStream(rprd, cred)
    assert second.status == 101
    assert first.recv() is None
    assert "closed: the agent opened another one" in rprd.stderr()
    second.send({"version": "0.1.0", "wait": 0})
    assert "offers" in second.recv()
