"""Request paths no route or file may see: a '%' without two hex digits, a
NUL or other control character, bytes that are not UTF-8 once decoded
(overlong forms such as %c0%ae, surrogates). Each is answered 400 with a
JSON Status, the same whether it names an API route or a dashboard file,
and rprd keeps serving. Well-formed encodings still reach their route."""

import http.client
import json
import os

import pytest

from conftest import REPO, http_raw, server

WEB = os.path.join(REPO, "web")


@pytest.fixture
def web_rprd(rprd_factory):
    return rprd_factory(extra_args=["--web-dir", WEB])


def raw(d, method, path, token="admin"):
    """One request with the path sent exactly as given."""
    conn = http.client.HTTPConnection("127.0.0.1", d.port, timeout=30)
    try:
        headers = {"Authorization": "Bearer " + d.token} if token == "admin" else {}
        conn.putrequest(method, path, skip_accept_encoding=True)
        for k, v in headers.items():
            conn.putheader(k, v)
        conn.endheaders()
        r = conn.getresponse()
        return r.status, r.getheader("Content-Type"), r.read()
    finally:
        conn.close()


def assert_refused(d, method, path, token="admin"):
    status, ctype, body = raw(d, method, path, token)
    assert status == 400, (path, status, ctype, body)
    assert ctype == "application/json", (path, ctype)
    st = json.loads(body)
    assert st["kind"] == "Status" and st["code"] == 400 and "request path" in st["message"], st
    return st["message"]


def test_nul_in_an_api_path_is_400_not_500(web_rprd):
    web_rprd.apply([server("x")])
    msg = assert_refused(web_rprd, "DELETE", "/api/v1/namespaces/%00/servers/x")
    assert "control character" in msg, msg
    assert_refused(web_rprd, "GET", "/api/v1/namespaces/default/servers/x%00y")
    assert_refused(web_rprd, "GET", "/api/v1/namespaces/default/servers/x%0a")
    assert web_rprd.obj("servers", "x")["metadata"]["name"] == "x"


def test_nul_does_not_cut_a_file_name(web_rprd):
    status, ctype, body = raw(web_rprd, "GET", "/app.js", token=None)
    assert status == 200 and "javascript" in ctype, (status, ctype)
    msg = assert_refused(web_rprd, "GET", "/app.js%00.html", token=None)
    assert "control character" in msg, msg
    assert_refused(web_rprd, "GET", "/index.html%00", token=None)


def test_invalid_percent_encoding_is_400(web_rprd):
    for path in ("/app.js%zz", "/app.js%4", "/app.js%", "/api/v1/servers%g0", "/api/v1/servers?labelSelector=%"):
        msg = assert_refused(web_rprd, "GET", path)
        assert "two hex digits" in msg, (path, msg)


def test_overlong_and_broken_utf8_is_400_not_500(web_rprd):
    for path in ("/%c0%ae%c0%ae/admin.token", "/api/v1/namespaces/%c0%ae/servers",
                 "/api/v1/namespaces/default/servers/%ed%a0%80", "/api/v1/namespaces/default/servers/%ff",
                 "/api/v1/namespaces/default/servers/%e2%82", "/api/v1/servers?labelSelector=%c0%ae",
                 "/app.js%c0%ae"):
        msg = assert_refused(web_rprd, "GET", path)
        assert "UTF-8" in msg, (path, msg)


def test_well_formed_encodings_still_route(web_rprd):
    web_rprd.apply([server("web-1")])
    status, _, body = raw(web_rprd, "GET", "/api/v1/namespaces/default/servers/web%2D1")
    assert status == 200 and json.loads(body)["metadata"]["name"] == "web-1", (status, body)
    status, _, body = raw(web_rprd, "GET", "/api/v1/namespaces/default/servers/caf%C3%A9")
    assert status == 404, (status, body)
    status, _, body = raw(web_rprd, "GET", "/api/v1/servers?labelSelector=a%3Db")
    assert status == 200 and json.loads(body)["items"] == [], (status, body)
    status, ctype, _ = raw(web_rprd, "GET", "/app%2Ejs", token=None)
    assert status == 200 and "javascript" in ctype, (status, ctype)
    assert web_rprd.health()["status"] == "ok"


def test_method_and_headers_that_are_not_text_are_400_not_500(web_rprd):
    auth = b"Authorization: Bearer " + web_rprd.token.encode() + b"\r\n"
    status, body = http_raw(web_rprd, b"GET\xff\xff /api/v1/tokens HTTP/1.1\r\nHost: x\r\n" + auth +
                             b"Connection: close\r\n\r\n")
    assert status == 400 and b"method" in body, (status, body)
    status, body = http_raw(web_rprd, b"POST /api/v1/apply HTTP/1.1\r\nHost: x\r\n" + auth +
                             b"Content-Type: applicati\x91\x91\xd0\x8fson\r\nContent-Length: 2\r\n"
                             b"Connection: close\r\n\r\n[]")
    assert status == 400 and b"header content-type" in body, (status, body)
    assert web_rprd.health()["status"] == "ok"


def test_a_long_path_of_utf8_is_quoted_whole_characters_404_not_500(web_rprd):
    # 2 bytes a character, so that 1024 bytes of message end inside one.
    path = "/api/v1/x/" + "%c5%a0" * 700
    status, ctype, body = raw(web_rprd, "GET", path)
    assert status == 404 and ctype == "application/json", (status, body[:200])
    msg = json.loads(body)["message"]
    assert msg.endswith("...") and "\u0160" * 100 in msg, msg[:200]
