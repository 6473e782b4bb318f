"""Runners' secrets (issue 17): the JIT configuration, the registration token
and the GitHub token never reach a log, the Runner's status, an API answer,
an error message or a command line on the host; the JIT file is 0600. Real
sshd hosts and the fake GitHub (test_runners.py has the helpers)."""

import json
import os
import stat

from test_runners import (  # noqa: F401 (fixtures and helpers)
    PAT, gh, hosts, instances, release, start_idle, workdir)

CONTROLLERS = True


def test_nothing_secret_in_logs_status_api_or_argv(rprd, gh, release, hosts, ssh_keys, workdir):
    o = start_idle(rprd, gh, hosts, ssh_keys, workdir, 2)
    jits = gh.runner_attr("jits")
    assert len(jits) == 2
    secrets = [PAT] + jits
    texts = {"stderr": rprd.all_stderr(), "status": json.dumps(o),
             "api": rprd.get("/api/v1/namespaces/default/runners").text,
             "describe": rprd.ctl("describe", "runner", "ci").stdout}
    for name in os.listdir(os.path.join(rprd.state_dir, "logs")) if os.path.isdir(
            os.path.join(rprd.state_dir, "logs")) else []:
        with open(os.path.join(rprd.state_dir, "logs", name), errors="replace") as f:
            texts["log " + name] = f.read()
    for what, text in texts.items():
        for s in secrets:
            assert s not in text, "a secret in " + what
    for inst in instances(o):
        f = os.path.join(workdir, "install", "default.ci", inst["name"], ".jitconfig")
        assert stat.S_IMODE(os.stat(f).st_mode) == 0o600, oct(os.stat(f).st_mode)
    assert_on_no_command_line(secrets)


def assert_on_no_command_line(secrets):
    """No process on this machine has one of secrets in its argv."""
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                with open("/proc/%s/cmdline" % p, "rb") as f:
                    argv = f.read().decode(errors="replace")
            except OSError:
                continue
            for s in secrets:
                assert s not in argv, "a secret on the command line of pid %s" % p
