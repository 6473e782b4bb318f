"""Runner autoscaling (issue 26): spec.autoscale follows the job queue.

Real sshd hosts, the fake GitHub's job queue (github_fake_runners.py: it
delivers signed workflow_job webhooks to rprd and answers the queued-runs
and run-jobs endpoints with ETags) and the stand-in runners, which take
queued jobs whose labels they carry. Helpers and fixtures are
test_runners.py's.
"""

import calendar
import json
import re
import time

from conftest import metric_sum
from test_runners import (  # noqa: F401 (fixtures and helpers)
    PAT, gh, hosts, instances, objects, release, runner_obj, wait_for, workdir)

CONTROLLERS = True
HOOK_SECRET = "whsec-autoscale-0123456789abcdef"
LABELS = ["self-hosted", "Linux", "GPU"]


def apply_autoscale(d, gh, sshds, ssh_keys, workdir, name="ci", hook=True, syncInterval="1s", **autoscale):
    spec = {"min": 0, "max": 10, "idle": 1, "scaleDownDelay": "5m", "interval": "1h",
            "webhookTokenRef": "hooks"}
    spec.update(autoscale)
    objs = objects(gh, sshds, workdir, name=name, syncInterval=syncInterval)
    for o in objs:
        if o["kind"] == "Server":
            o["spec"]["identityFile"] = ssh_keys.client("ed25519")
        if o["kind"] == "Runner":
            del o["spec"]["replicas"]
            o["spec"]["autoscale"] = spec
    objs.insert(0, {"apiVersion": "rpr/v1", "kind": "Token", "metadata": {"name": "hooks"},
                    "spec": {"type": "webhook", "value": HOOK_SECRET}})
    d.apply(objs)
    if hook:
        gh.runner_control("hook", url=d.url + "/hooks/github", secret=HOOK_SECRET)
    return objs


def autoscale(o):
    return o.get("status", {}).get("autoscale", {})


def live(o):
    return [i for i in instances(o) if not i.get("removing")]


def states(o):
    return sorted(i.get("state") for i in instances(o))


def taken(gh):
    return [j for j in gh.jobs() if j["status"] in ("in_progress", "completed") and j["runner"]]


def start_one_idle(d, gh, hosts, ssh_keys, workdir, **autoscale):
    apply_autoscale(d, gh, hosts, ssh_keys, workdir, **autoscale)
    return wait_for(d, lambda o: states(o) == ["idle"] and autoscale_of(o, "desired") == 1, "one idle")


def autoscale_of(o, key):
    return autoscale(o).get(key)


# ---- cases ---------------------------------------------------------------------

def test_min_zero_idle_one_keeps_one_idle_runner(rprd, gh, release, hosts, ssh_keys, workdir):
    o = start_one_idle(rprd, gh, hosts, ssh_keys, workdir, max=5)
    a = autoscale(o)
    assert a["busy"] == 0 and a["queued"] == 0 and a["idle"] in (0, 1), a
    assert a["lastDecision"]["from"] == 0 and a["lastDecision"]["to"] == 1, a
    assert "0 → 1" in a["lastDecision"]["reason"], a
    time.sleep(4)  # several passes: still exactly one
    o = runner_obj(rprd)
    assert states(o) == ["idle"] and autoscale(o)["desired"] == 1 and autoscale(o)["decisions"] == 1, o["status"]
    assert len(gh.runners()) == 1

    wide = rprd.ctl("get", "runners", "-o", "wide")
    head, row = wide.stdout.splitlines()[:2]
    cells = dict(zip(head.split(), row.split()))
    assert cells.get("MIN") == "0" and cells.get("MAX") == "5", wide.stdout
    assert cells.get("DESIRED") == "1" and cells.get("BUSY") == "0", wide.stdout
    m = rprd.metrics()
    assert metric_sum(m, "rpr_runner_autoscale_desired", runner="ci") == 1


def test_replicas_and_autoscale_together_is_an_error_naming_both(rprd, gh, hosts, ssh_keys, workdir):
    objs = objects(gh, hosts, workdir)
    r = objs[-1]
    r["spec"]["autoscale"] = {"max": 3}
    resp = rprd.request("POST", "/api/v1/apply", body=objs)
    text = resp.text
    assert resp.status >= 400, text
    assert "spec.autoscale" in text and "replicas" in text, text


def test_five_queued_jobs_start_five_more_and_each_takes_one(rprd, gh, release, hosts, ssh_keys, workdir):
    start_one_idle(rprd, gh, hosts, ssh_keys, workdir)
    before = autoscale(runner_obj(rprd))["decisions"]
    ids = gh.queue_jobs(repo="acme/site", count=5, labels=LABELS)
    o = wait_for(rprd, lambda o: len(taken(gh)) == 5, "5 jobs taken")
    jobs = gh.jobs()
    runners = {j["runner"] for j in jobs if j["id"] in ids}
    assert len(runners) == 5, jobs  # each took one
    o = wait_for(rprd, lambda o: autoscale(o)["busy"] == 5 and autoscale(o)["desired"] == 6 and
                 len(live(o)) == 6, "5 busy + 1 idle")
    a = autoscale(o)
    ups = [h for h in a["history"] if h["to"] > h["from"]][-(a["decisions"] - before):]
    # One burst, one decision (two at most if the deliveries straddle a pass).
    assert 1 <= a["decisions"] - before <= 2, a
    assert ups[-1]["to"] == 6, a
    # The idle one may take a job before the decision: 4 or 5 queued then.
    if len(ups) == 1:
        assert re.search(r"^scaled 1 → 6: [45] queued jobs need \[linux, gpu\]$", ups[0]["reason"]), a
    else:  # deliveries straddling a pass under load: 1 → k, then k → 6
        assert ups[0]["from"] == 1 and ups[0]["to"] == ups[1]["from"], a
        for h in ups:
            assert re.search(r"^scaled \d → \d: [1-5] queued jobs? needs? \[linux, gpu\]$", h["reason"]), a
    assert {i["name"] for i in instances(o)} >= runners


def test_completed_ephemeral_ones_go_and_the_count_returns_after_the_delay(rprd, gh, release, hosts, ssh_keys,
                                                                         workdir):
    first = {i["name"] for i in instances(start_one_idle(rprd, gh, hosts, ssh_keys, workdir, scaleDownDelay="8s"))}
    gh.runner_control("jobs_hold", hold=True)
    ids = gh.queue_jobs(repo="acme/site", count=3, labels=LABELS)
    o4 = wait_for(rprd, lambda o: states(o) == ["idle"] * 4, "4 idle (jobs held)")
    fresh = {i["name"] for i in instances(o4)} - first
    gh.runner_control("jobs_complete", ids=ids)  # cancelled while queued
    # No runner goes before it has been idle 8 s (idleSince has whole
    # seconds). Under load the first one, or all, may be that old already.
    def seen_idle(o):
        for i in live(o):
            at = i.get("idleSince")
            idle_since[i["name"]] = calendar.timegm(time.strptime(at, "%Y-%m-%dT%H:%M:%SZ")) if at else time.time()
    idle_since = {}
    seen_idle(o4)
    o = wait_for(rprd, lambda o: autoscale(o)["desired"] == 1, "desired back to 1")
    t0 = time.time()
    while time.time() - t0 < 4:
        o = runner_obj(rprd)
        seen_idle(o)
        for name in fresh | first:
            if name not in {i["name"] for i in live(o)}:
                assert time.time() - idle_since[name] >= 7, "%s went before scaleDownDelay: %s" % (name, instances(o))
        time.sleep(0.3)
    o = wait_for(rprd, lambda o: len(instances(o)) == 1 and states(o) == ["idle"], "back to 1 after the delay",
                 timeout=30)
    assert len(gh.runners()) == 1

    # Jobs that run and end: the ephemeral runners go and are not replaced.
    gh.runner_control("jobs_hold", hold=False)
    started = len(gh.runner_attr("jits"))
    ids = gh.queue_jobs(repo="acme/site", count=2, labels=LABELS, duration=2)
    wait_for(rprd, lambda o: all(j["status"] == "completed" for j in gh.jobs() if j["id"] in ids), "2 done")
    o = wait_for(rprd, lambda o: len(instances(o)) == 1 and autoscale(o)["desired"] == 1 and
                 states(o) == ["idle"], "busy+idle = 1 again")
    # 2 started for the 2 jobs (1 idle + 2 queued = 3), none killed after.
    assert len(gh.runner_attr("jits")) - started == 2, gh.runner_attr("jits")


def test_max_is_respected_under_fifty_queued(rprd, gh, release, hosts, ssh_keys, workdir):
    start_one_idle(rprd, gh, hosts, ssh_keys, workdir, max=3)
    gh.runner_control("jobs_hold", hold=True)
    gh.queue_jobs(repo="acme/site", count=50, labels=LABELS)
    o = wait_for(rprd, lambda o: autoscale(o)["queued"] == 50 and autoscale(o)["desired"] == 3, "desired 3")
    assert "held at max" in autoscale(o)["lastDecision"]["reason"], autoscale(o)
    t0 = time.time()
    while time.time() - t0 < 6:
        o = runner_obj(rprd)
        assert len(instances(o)) <= 3, instances(o)
        assert len(gh.runners()) <= 3
        time.sleep(0.3)
    wait_for(rprd, lambda o: states(o) == ["idle"] * 3, "3 idle")
    assert autoscale(runner_obj(rprd))["decisions"] <= 3


def test_a_lost_webhook_is_caught_up_by_the_poll_within_one_interval(rprd, gh, release, hosts, ssh_keys,
                                                                    workdir):
    start_one_idle(rprd, gh, hosts, ssh_keys, workdir, interval="4s")
    gh.runner_control("hook", url=rprd.url + "/hooks/github", secret=HOOK_SECRET, drop=3)
    gh.runner_control("jobs_hold", hold=True)
    gh.clear_requests()
    t0 = time.time()
    gh.queue_jobs(repo="acme/site", count=3, labels=LABELS)
    o = wait_for(rprd, lambda o: autoscale(o)["queued"] == 3, "the poll counts 3", timeout=20)
    assert time.time() - t0 <= 4 + 2.5, time.time() - t0  # one interval, and a pass
    assert autoscale(o)["desired"] == 4, autoscale(o)
    answers = json.loads(rprd_fake_jobs(gh))["answers"]
    assert answers == [], answers  # the 3 queued deliveries were lost
    gh.runner_control("jobs_hold", hold=False)
    wait_for(rprd, lambda o: len(taken(gh)) == 3, "3 taken")


def test_unchanged_queue_costs_only_304s(rprd, gh, release, hosts, ssh_keys, workdir):
    start_one_idle(rprd, gh, hosts, ssh_keys, workdir, interval="1s")
    gh.runner_control("jobs_hold", hold=True)
    gh.queue_jobs(repo="acme/site", count=2, labels=LABELS)
    wait_for(rprd, lambda o: autoscale(o)["queued"] == 2, "2 queued")
    time.sleep(2)
    gh.clear_requests()
    time.sleep(4)
    polls = [r for r in gh.requests() if "/actions/runs" in r["path"]]
    assert len(polls) >= 4, polls
    assert all(r["status"] == 304 for r in polls), polls


def test_a_job_no_runner_can_take_scales_nothing_and_is_logged_once(rprd, gh, release, hosts, ssh_keys, workdir):
    start_one_idle(rprd, gh, hosts, ssh_keys, workdir, interval="1s")
    ids = gh.queue_jobs(repo="acme/site", count=1, labels=["self-hosted", "k8s"])
    deadline = time.time() + 10
    while time.time() < deadline:
        answers = json.loads(rprd_fake_jobs(gh))["answers"]
        if answers:
            break
        time.sleep(0.2)
    time.sleep(4)  # several polls see it too
    o = runner_obj(rprd)
    assert autoscale(o)["desired"] == 1 and autoscale(o)["queued"] == 0 and len(instances(o)) == 1, o["status"]
    activity = rprd.ctl("logs", "activity", "--tail", "200").stdout
    lines = [line for line in activity.splitlines() if "job %d" % ids[0] in line]
    assert len(lines) == 1, activity
    assert "self-hosted, k8s" in lines[0] and "acme/site" in lines[0], lines
    m = rprd.metrics()
    assert metric_sum(m, "rpr_workflow_job_deliveries_total", outcome="unmatched") == 1


def rprd_fake_jobs(gh):
    import urllib.request
    with urllib.request.urlopen(gh.url + "/_fake/jobs", timeout=10) as r:
        return r.read().decode()


def test_rprd_killed_during_scale_up_leaves_no_orphan_and_meets_the_target(rprd, gh, release, hosts, ssh_keys,
                                                                           workdir):
    start_one_idle(rprd, gh, hosts, ssh_keys, workdir, interval="2s")
    gh.runner_control("jobs_hold", hold=True)
    gh.runner_control("runner_switches", jit_delay=1.0)
    gh.queue_jobs(repo="acme/site", count=4, labels=LABELS)
    deadline = time.time() + 30
    while time.time() < deadline and gh.runner_attr("jit_waiting") < 2:
        time.sleep(0.05)
    assert gh.runner_attr("jit_waiting") >= 2
    rprd.kill()
    gh.runner_control("runner_switches", jit_delay=0)
    rprd.start()
    o = wait_for(rprd, lambda o: states(o) == ["idle"] * 5 and autoscale(o)["desired"] == 5, "5 idle after restart")
    names = {i["name"] for i in instances(o)}
    regs = {r["name"] for r in gh.runners()}
    deadline = time.time() + 20
    while regs != names and time.time() < deadline:
        time.sleep(0.5)
        regs = {r["name"] for r in gh.runners()}
    assert regs == names, (regs, names)
    gh.runner_control("jobs_hold", hold=False)
    wait_for(rprd, lambda o: len(taken(gh)) == 4, "4 taken")


def test_webhook_and_poll_disagreeing_do_not_flap(rprd, gh, release, hosts, ssh_keys, workdir):
    start_one_idle(rprd, gh, hosts, ssh_keys, workdir, interval="1s", scaleDownDelay="2s")
    gh.queue_jobs(repo="acme/site", count=3, labels=LABELS)
    o = wait_for(rprd, lambda o: len(taken(gh)) == 3 and autoscale(o)["busy"] == 3 and
                 autoscale(o)["desired"] == 4 and len(live(o)) == 4, "3 busy")
    decisions = autoscale(o)["decisions"]
    names = {i["name"] for i in instances(o)}
    t0 = time.time()
    while time.time() - t0 < 6:  # six polls saying 0 queued
        o = runner_obj(rprd)
        assert autoscale(o)["desired"] == 4 and autoscale(o)["decisions"] == decisions, autoscale(o)
        assert {i["name"] for i in instances(o)} == names, instances(o)
        time.sleep(0.3)
    assert autoscale(o)["queued"] == 0


def test_the_poll_backs_off_when_rate_limited_and_webhooks_still_count(rprd, gh, release, hosts, ssh_keys,
                                                                       workdir):
    start_one_idle(rprd, gh, hosts, ssh_keys, workdir, interval="1s")
    gh.runner_control("jobs_hold", hold=True)
    gh.set_rate_limit(PAT, limit=5000, remaining=0, reset=int(time.time()) + 40)
    gh.clear_requests()
    o = wait_for(rprd, lambda o: any(c.get("type") == "Autoscaling" and c.get("reason") == "RateLimited"
                                     for c in o["status"].get("conditions", [])), "RateLimited")
    time.sleep(5)
    polls = [r for r in gh.requests() if "/actions/runs" in r["path"]]
    assert len(polls) <= 1, polls  # not every second: it waits for the reset
    gh.queue_jobs(repo="acme/site", count=2, labels=LABELS)
    o = wait_for(rprd, lambda o: autoscale(o)["queued"] == 2 and autoscale(o)["desired"] == 3,
                 "the webhook counted")


def test_deleting_an_autoscaled_runner_does_not_wait_for_scale_down_delay(rprd, gh, release, hosts, ssh_keys,
                                                                         workdir):
    apply_autoscale(rprd, gh, hosts, ssh_keys, workdir, idle=2, scaleDownDelay="1h")
    wait_for(rprd, lambda o: states(o) == ["idle"] * 2, "2 idle")
    r = rprd.request("DELETE", "/api/v1/namespaces/default/runners/ci")
    assert r.status in (200, 202), r.text
    deadline = time.time() + 30
    while time.time() < deadline and rprd.get("/api/v1/namespaces/default/runners/ci").status != 404:
        time.sleep(0.3)
    assert rprd.get("/api/v1/namespaces/default/runners/ci").status == 404, rprd.stderr()[-3000:]
    assert gh.runners() == []


def test_a_finished_ephemeral_runner_is_not_restarted_while_the_cached_list_says_busy(rprd, gh, release, hosts,
                                                                                      ssh_keys, workdir):
    # syncInterval 30s: GitHub's runner list is cached, and says busy for a while after the job.
    apply_autoscale(rprd, gh, hosts, ssh_keys, workdir, idle=0, syncInterval="30s")
    wait_for(rprd, lambda o: "autoscale" in o.get("status", {}), "the first pass")
    ids = gh.queue_jobs(repo="acme/site", count=1, labels=LABELS, duration=1)
    wait_for(rprd, lambda o: all(j["status"] == "completed" for j in gh.jobs() if j["id"] in ids), "the job done")
    o = wait_for(rprd, lambda o: not instances(o), "no runner left", timeout=15)
    time.sleep(3)
    assert len(gh.runner_attr("jits")) == 1, gh.runner_attr("jits")  # none started again for nothing
    assert autoscale(runner_obj(rprd))["desired"] == 0
