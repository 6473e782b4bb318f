"""rprd's TLS listener (issue 19's first step: what agents, remote rprctl
and remote dashboards connect to): --listen tls:HOST:PORT, a self-signed
certificate made on first start and kept, or --tls-cert/--tls-key; the key's
fingerprint printed at start and pinned by rprctl --fingerprint; h2 and
http/1.1 by ALPN; the same authentication as every other listener."""

import base64
import hashlib
import http.client
import json
import os
import re
import ssl
import subprocess

import pytest

from conftest import RPRCTL, Rprd, free_port, sanitizer_env, server

FINGERPRINT = re.compile(r"key fingerprint (SHA256:[A-Za-z0-9+/]{43})")


def tls_rprd(rprd_factory, *extra, state_dir=None):
    port = free_port()
    d = rprd_factory(state_dir=state_dir, extra_args=["--listen", "tls:127.0.0.1:%d" % port, *extra])
    d.tls_port = port
    return d


def fingerprint_printed(d):
    m = FINGERPRINT.search(d.stderr())
    assert m, "rprd did not print the key's fingerprint:\n" + d.stderr()
    return m.group(1)


def key_fingerprint(cert_pem_path):
    """SHA256:BASE64 of the certificate's SubjectPublicKeyInfo, by openssl."""
    pub = subprocess.run(["openssl", "x509", "-in", cert_pem_path, "-pubkey", "-noout"], check=True,
                         capture_output=True).stdout
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "der"], input=pub, check=True,
                         capture_output=True).stdout
    return "SHA256:" + base64.b64encode(hashlib.sha256(der).digest()).decode().rstrip("=")


def https_get(d, path, cafile, token=None):
    """HTTP/1.1 over TLS, the certificate checked against cafile by the
    name localhost."""
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.set_alpn_protocols(["http/1.1"])
    conn = http.client.HTTPSConnection("localhost", d.tls_port, context=ctx, timeout=10)
    headers = {"Authorization": "Bearer " + token} if token else {}
    conn.request("GET", path, headers=headers)
    r = conn.getresponse()
    body = r.read()
    conn.close()
    return r.status, body


def curl_version(d, cafile, *flags):
    """The HTTP version curl used for /healthz, and the status."""
    p = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_version} %{http_code}", "--cacert", cafile,
                        *flags, "https://localhost:%d/healthz" % d.tls_port], capture_output=True, text=True,
                       timeout=30)
    return p.stdout.split()


def ctl_tls(d, *args, fingerprint=None, ca=None, token="admin", env_extra=None):
    argv = [RPRCTL, "--server", "https://127.0.0.1:%d" % d.tls_port]
    if fingerprint:
        argv += ["--fingerprint", fingerprint]
    if ca:
        argv += ["--ca", ca]
    if token:
        argv += ["--token", d.token if token == "admin" else token]
    env = sanitizer_env()
    env.update(env_extra or {})
    return subprocess.run(argv + list(args), capture_output=True, text=True, timeout=30, env=env,
                          cwd=d.state_dir)


def test_a_self_signed_certificate_is_made_once_and_its_key_pinned(rprd_factory):
    d = tls_rprd(rprd_factory)
    cert = os.path.join(d.state_dir, "tls", "cert.pem")
    key = os.path.join(d.state_dir, "tls", "key.pem")
    assert os.stat(key).st_mode & 0o777 == 0o600
    fp = fingerprint_printed(d)
    assert fp == key_fingerprint(cert)

    status, body = https_get(d, "/healthz", cert)
    assert status == 200 and json.loads(body)["status"] == "ok"
    # h2 and http/1.1, chosen by ALPN.
    assert curl_version(d, cert, "--http2") == ["2", "200"]
    assert curl_version(d, cert, "--http1.1") == ["1.1", "200"]

    # The same certificate after a restart: what agents pinned stays true.
    d.restart()
    assert fingerprint_printed(d) == fp
    with open(cert) as f:
        first = f.read()
    d.restart()
    with open(cert) as f:
        assert f.read() == first


def test_rprctl_pins_the_fingerprint_or_trusts_a_ca(rprd_factory):
    d = tls_rprd(rprd_factory)
    fp = fingerprint_printed(d)
    d.apply([server("web-1")])

    p = ctl_tls(d, "get", "servers", fingerprint=fp)
    assert p.returncode == 0, p.stderr
    assert "web-1" in p.stdout
    p = ctl_tls(d, "get", "servers", env_extra={"RPR_FINGERPRINT": fp})
    assert p.returncode == 0 and "web-1" in p.stdout, p.stderr

    # --ca trusts the certificate by its name (localhost, 127.0.0.1).
    p = ctl_tls(d, "get", "servers", ca=os.path.join(d.state_dir, "tls", "cert.pem"))
    assert p.returncode == 0 and "web-1" in p.stdout, p.stderr

    # Neither: the system's CAs do not know it, and rprctl says what to do.
    p = ctl_tls(d, "get", "servers")
    assert p.returncode != 0
    assert "certificate" in p.stderr and "--fingerprint" in p.stderr, p.stderr

    # Another key's fingerprint: refused before any request is sent.
    other = "SHA256:" + base64.b64encode(hashlib.sha256(b"another key").digest()).decode().rstrip("=")
    p = ctl_tls(d, "get", "servers", fingerprint=other)
    assert p.returncode != 0
    assert "pinned public key" in p.stderr and "--fingerprint" in p.stderr, p.stderr

    p = ctl_tls(d, "get", "servers", fingerprint="SHA256:short")
    assert p.returncode != 0
    assert 'invalid fingerprint "SHA256:short"' in p.stderr


def test_tls_asks_for_a_token_as_every_listener_does(rprd_factory):
    d = tls_rprd(rprd_factory)
    cert = os.path.join(d.state_dir, "tls", "cert.pem")
    status, _ = https_get(d, "/api/v1/servers", cert)
    assert status == 401
    status, _ = https_get(d, "/api/v1/servers", cert, token="not-a-token")
    assert status == 401
    status, body = https_get(d, "/api/v1/servers", cert, token=d.token)
    assert status == 200 and json.loads(body)["kind"] == "List"


def test_plain_http_to_the_tls_port_gets_no_answer(rprd_factory):
    d = tls_rprd(rprd_factory)
    conn = http.client.HTTPConnection("127.0.0.1", d.tls_port, timeout=10)
    with pytest.raises((http.client.HTTPException, ConnectionError, OSError)):
        conn.request("GET", "/healthz")
        conn.getresponse().read()
    conn.close()
    assert d.health()["status"] == "ok"


def test_a_given_certificate_and_key_are_used(rprd_factory, tmp_path):
    cert, key = str(tmp_path / "c.pem"), str(tmp_path / "k.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "2", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"],
                   check=True, capture_output=True)
    d = tls_rprd(rprd_factory, "--tls-cert", cert, "--tls-key", key)
    assert fingerprint_printed(d) == key_fingerprint(cert)
    assert not os.path.exists(os.path.join(d.state_dir, "tls"))
    status, _ = https_get(d, "/healthz", cert)
    assert status == 200


def run_rprd(*args):
    d = Rprd()
    try:
        return subprocess.run([os.environ.get("RPR_BIN_DIR", "../../bin") + "/rprd", "--state-dir", d.state_dir,
                               *args], capture_output=True, text=True, timeout=30, env=sanitizer_env())
    finally:
        d.cleanup()


def test_bad_tls_options_stop_the_start_and_say_why(tmp_path):
    cert, key, other_key = str(tmp_path / "c.pem"), str(tmp_path / "k.pem"), str(tmp_path / "o.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=x"], check=True, capture_output=True)
    subprocess.run(["openssl", "genpkey", "-algorithm", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-out",
                    other_key], check=True, capture_output=True)
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    port = "tls:127.0.0.1:%d" % free_port()

    p = run_rprd("--listen", port, "--tls-cert", cert)
    assert p.returncode != 0 and "--tls-cert and --tls-key go together" in p.stderr
    p = run_rprd("--listen", port, "--tls-cert", str(tmp_path / "missing.pem"), "--tls-key", key)
    assert p.returncode != 0 and "missing.pem\" is not a readable file" in p.stderr
    p = run_rprd("--listen", port, "--tls-cert", str(garbage), "--tls-key", key)
    assert p.returncode != 0 and "cannot use the TLS certificate %s" % garbage in p.stderr, p.stderr
    p = run_rprd("--listen", port, "--tls-cert", cert, "--tls-key", other_key)
    assert p.returncode != 0 and "does not belong to the certificate" in p.stderr, p.stderr
    p = run_rprd("--listen", "tls:127.0.0.1:0")
    assert p.returncode != 0 and "must be tls:HOST:PORT with a port from 1 to 65535" in p.stderr
    for text in (p.stderr,):
        assert "PRIVATE KEY" not in text
