/* Unit tests for pkg/client and rprctl's pure helpers: server and token
 * lookup, requests and line streams against a tiny HTTP server on a unix
 * socket run by a thread of the test, the unified diff, tables and ages.
 *
 * rprctl's helper files are compiled in here directly (they are not a
 * library); their talking-to-rprd parts link against libclient. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "../../cmd/rprctl/textdiff.c"
#include "../../cmd/rprctl/util.c"
#include "client/client.h"

/* ---- a one-shot HTTP server ---------------------------------------------------- */

typedef struct FakeServer {
        char dir[64], sock[96];
        int fd;
        const char *answer; /* the whole HTTP answer */
        char request[8192];
        pthread_t thread;
} FakeServer;

static void *serve(void *userdata) {
        FakeServer *s = userdata;
        int c = accept4(s->fd, NULL, NULL, SOCK_CLOEXEC);
        size_t len = 0;

        if (c < 0)
                return NULL;
        /* Read the head (and a small body) until the client has sent it. */
        while (len + 1 < sizeof(s->request)) {
                ssize_t n = read(c, s->request + len, sizeof(s->request) - 1 - len);
                if (n <= 0)
                        break;
                len += n;
                s->request[len] = 0;
                char *end = strstr(s->request, "\r\n\r\n");
                char *cl = strcasestr(s->request, "content-length:");
                if (end && (!cl || strlen(end + 4) >= strtoul(cl + 15, NULL, 10)))
                        break;
        }
        (void) !write(c, s->answer, strlen(s->answer));
        close(c);
        return NULL;
}

static void fake_start(FakeServer *s, const char *answer) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};

        memset(s, 0, sizeof(*s));
        strcpy(s->dir, "/tmp/test-client-XXXXXX");
        assert_non_null(mkdtemp(s->dir));
        snprintf(s->sock, sizeof(s->sock), "%s/rpr.sock", s->dir);
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", s->sock);
        s->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(s->fd >= 0);
        assert_int_equal(bind(s->fd, (struct sockaddr *) &sa, sizeof(sa)), 0);
        assert_int_equal(listen(s->fd, 4), 0);
        s->answer = answer;
        assert_int_equal(pthread_create(&s->thread, NULL, serve, s), 0);
}

static void fake_stop(FakeServer *s) {
        pthread_join(s->thread, NULL);
        close(s->fd);
        unlink(s->sock);
        char tok[160];
        snprintf(tok, sizeof(tok), "%s/admin.token", s->dir);
        unlink(tok);
        rmdir(s->dir);
}

/* ---- lookup ---------------------------------------------------------------------- */

static void test_server_forms(void **state) {
        (void) state;
        Client *c = NULL;

        assert_int_equal(client_new("unix:/run/x.sock", "t", &c), 0);
        assert_string_equal(client_server(c), "unix:/run/x.sock");
        client_free(c);
        assert_int_equal(client_new("http://127.0.0.1:8270/", "t", &c), 0);
        assert_string_equal(client_server(c), "http://127.0.0.1:8270");
        client_free(c);
        assert_int_equal(client_new("localhost:8270", "t", &c), 0);
        assert_string_equal(client_server(c), "http://localhost:8270");
        client_free(c);
        assert_int_equal(client_new("tcp:127.0.0.1:1", "t", &c), 0);
        assert_string_equal(client_server(c), "http://127.0.0.1:1");
        client_free(c);
        assert_int_equal(client_new("ftp:x", "t", &c), -EINVAL);
        assert_int_equal(client_new("unix:", "t", &c), -EINVAL);
}

static void test_server_from_env_then_default(void **state) {
        (void) state;
        Client *c = NULL;

        setenv("RPR_SERVER", "unix:/tmp/elsewhere.sock", 1);
        assert_int_equal(client_new(NULL, "t", &c), 0);
        assert_string_equal(client_server(c), "unix:/tmp/elsewhere.sock");
        client_free(c);
        /* --server wins over the environment. */
        assert_int_equal(client_new("http://h:1", "t", &c), 0);
        assert_string_equal(client_server(c), "http://h:1");
        client_free(c);
        unsetenv("RPR_SERVER");
}

static void test_token_from_admin_token_beside_socket(void **state) {
        (void) state;
        char dir[] = "/tmp/test-client-tok-XXXXXX";
        Client *c = NULL;

        assert_non_null(mkdtemp(dir));
        _cleanup_free_ char *tok = xasprintf("%s/admin.token", dir);
        _cleanup_free_ char *server = xasprintf("unix:%s/rpr.sock", dir);
        assert_int_equal(write_file_atomic(tok, "abc123\n", 7, 0600), 0);
        unsetenv("RPR_TOKEN");
        setenv("XDG_CONFIG_HOME", dir, 1); /* no rpr/token inside */

        assert_int_equal(client_new(server, NULL, &c), 0);
        assert_true(client_has_token(c));
        client_free(c);

        unlink(tok);
        assert_int_equal(client_new(server, NULL, &c), 0);
        assert_false(client_has_token(c));
        client_free(c);
        rmdir(dir);
        unsetenv("XDG_CONFIG_HOME");
}

/* ---- requests ----------------------------------------------------------------------- */

static void test_request_over_unix_socket_sends_token_and_body(void **state) {
        (void) state;
        FakeServer s;
        Client *c = NULL;
        ClientResponse r = {0};
        _cleanup_free_ char *why = NULL;

        fake_start(&s, "HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: 11\r\n"
                       "Connection: close\r\n\r\n{\"ok\":true}");
        _cleanup_free_ char *server = xasprintf("unix:%s", s.sock);
        assert_int_equal(client_new(server, "sekrit", &c), 0);
        assert_int_equal(client_request(c, "POST", "/api/v1/apply?dryRun=1", NULL, "{\"items\":[]}", 12, &r, &why),
                         0);
        fake_stop(&s);

        assert_int_equal(r.status, 201);
        assert_string_equal(r.body, "{\"ok\":true}");
        assert_non_null(strstr(s.request, "POST /api/v1/apply?dryRun=1 HTTP/1.1\r\n"));
        assert_non_null(strstr(s.request, "Authorization: Bearer sekrit\r\n"));
        assert_non_null(strstr(s.request, "Content-Type: application/json\r\n"));
        assert_non_null(strstr(s.request, "{\"items\":[]}"));
        client_response_clear(&r);
        client_free(c);
}

static void test_request_unreachable_names_cause(void **state) {
        (void) state;
        Client *c = NULL;
        ClientResponse r = {0};
        char *why = NULL;

        assert_int_equal(client_new("unix:/nonexistent/rpr.sock", "t", &c), 0);
        assert_true(client_request(c, "GET", "/healthz", NULL, NULL, 0, &r, &why) < 0);
        assert_non_null(why);
        assert_string_equal(why, "No such file or directory");
        assert_null(strstr(why, "t\n"));
        free(why);
        client_free(c);
}

static int collect(const char *line, size_t len, void *userdata) {
        Buf *b = userdata;
        buf_append(b, line, len);
        buf_puts(b, "|");
        return 0;
}

static void test_stream_lines_splits_chunks(void **state) {
        (void) state;
        FakeServer s;
        Client *c = NULL;
        Buf got = BUF_INIT;
        long status = 0;
        char *why = NULL;

        fake_start(&s, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                       "5\r\n{\"a\":\r\n7\r\n1}\n{\"b\"\r\n5\r\n:2}\n\n\r\n3\r\nend\r\n0\r\n\r\n");
        _cleanup_free_ char *server = xasprintf("unix:%s", s.sock);
        assert_int_equal(client_new(server, "t", &c), 0);
        assert_int_equal(client_stream_lines(c, "/api/v1/servers?watch=1", collect, &got, &status, &why), 0);
        fake_stop(&s);

        assert_int_equal(status, 200);
        assert_null(why);
        assert_string_equal(got.data, "{\"a\":1}|{\"b\":2}||end|");
        buf_free(&got);
        client_free(c);
}

static void test_stream_error_answer_is_message(void **state) {
        (void) state;
        FakeServer s;
        Client *c = NULL;
        Buf got = BUF_INIT;
        long status = 0;
        char *why = NULL;

        fake_start(&s, "HTTP/1.1 410 Gone\r\nContent-Length: 52\r\nConnection: close\r\n\r\n"
                       "{\"kind\":\"Status\",\"code\":410,\"message\":\"too old...\"}\n");
        _cleanup_free_ char *server = xasprintf("unix:%s", s.sock);
        assert_int_equal(client_new(server, "t", &c), 0);
        assert_int_equal(client_stream_lines(c, "/w", collect, &got, &status, &why), 0);
        fake_stop(&s);

        assert_int_equal(status, 410);
        assert_null(got.data);
        assert_string_equal(why, "too old...");
        free(why);
        client_free(c);
}

static void test_error_message_and_escape(void **state) {
        (void) state;
        ClientResponse r = {.status = 404, .body = (char *) "{\"message\":\"servers \\\"x\\\" not found\"}"};
        r.len = strlen(r.body);

        _cleanup_free_ char *m = client_error_message(&r);
        assert_string_equal(m, "servers \"x\" not found");
        r = (ClientResponse){.status = 502, .body = NULL};
        _cleanup_free_ char *m2 = client_error_message(&r);
        assert_string_equal(m2, "the server answered HTTP 502");
        _cleanup_free_ char *e = client_escape("role in (a,b)&x=ü");
        assert_string_equal(e, "role%20in%20%28a%2Cb%29%26x%3D%C3%BC");
}

/* ---- rprctl helpers ------------------------------------------------------------------- */

static void test_diff_equal_is_null(void **state) {
        (void) state;
        assert_null(text_diff("a\nb\n", "a\nb\n", "x", "y"));
        assert_null(text_diff("", "", "x", "y"));
}

static void test_diff_change_in_middle_has_context(void **state) {
        (void) state;
        const char *a = "1\n2\n3\n4\n5\n6\n7\n8\n9\n";
        const char *b = "1\n2\n3\n4\nFIVE\n6\n7\n8\n9\n";
        _cleanup_free_ char *d = text_diff(a, b, "live", "applied");

        assert_string_equal(d, "--- live\n+++ applied\n@@ -2,7 +2,7 @@\n 2\n 3\n 4\n-5\n+FIVE\n 6\n 7\n 8\n");
}

static void test_diff_from_empty_and_separate_hunks(void **state) {
        (void) state;
        _cleanup_free_ char *d = text_diff("", "a\nb\n", "/dev/null", "new");
        assert_string_equal(d, "--- /dev/null\n+++ new\n@@ -0,0 +1,2 @@\n+a\n+b\n");

        const char *a = "a\n1\n2\n3\n4\n5\n6\n7\n8\nz\n";
        const char *b = "A\n1\n2\n3\n4\n5\n6\n7\n8\nZ\n";
        _cleanup_free_ char *d2 = text_diff(a, b, "l", "r");
        assert_string_equal(d2, "--- l\n+++ r\n@@ -1,4 +1,4 @@\n-a\n+A\n 1\n 2\n 3\n"
                                "@@ -7,4 +7,4 @@\n 6\n 7\n 8\n-z\n+Z\n");
}

static void test_diff_insert_and_delete(void **state) {
        (void) state;
        _cleanup_free_ char *d = text_diff("a\nb\nc\n", "a\nx\nc\nd\n", "l", "r");
        assert_string_equal(d, "--- l\n+++ r\n@@ -1,3 +1,4 @@\n a\n-b\n+x\n c\n+d\n");
}

static void test_table_alignment(void **state) {
        (void) state;
        Table t;
        char *out = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&out, &len);

        table_init(&t, 3);
        table_add(&t, "NAME", "PHASE", "AGE");
        table_add(&t, "web-1", NULL, "5s");
        table_add(&t, "a", "Reachable", "3m");
        table_print(&t, f, NULL);
        table_free(&t);
        fclose(f);
        assert_string_equal(out, "NAME    PHASE       AGE\n"
                                 "web-1   <none>      5s\n"
                                 "a       Reachable   3m\n");
        free(out);
}

static void test_age_and_cells(void **state) {
        (void) state;
        char buf[32], ts[RFC3339_MAX];

        format_age(time_format_rfc3339(now_usec() - 5 * USEC_PER_SEC, ts), buf, sizeof(buf));
        assert_string_equal(buf, "5s");
        format_age(time_format_rfc3339(now_usec() - 180 * USEC_PER_SEC, ts), buf, sizeof(buf));
        assert_string_equal(buf, "3m");
        format_age(time_format_rfc3339(now_usec() - 3 * 3600 * USEC_PER_SEC, ts), buf, sizeof(buf));
        assert_string_equal(buf, "3h");
        format_age(time_format_rfc3339(now_usec() - 4 * 86400 * USEC_PER_SEC, ts), buf, sizeof(buf));
        assert_string_equal(buf, "4d");
        format_age(NULL, buf, sizeof(buf));
        assert_string_equal(buf, "<unknown>");

        _cleanup_json_ json_t *o = json_pack("{s:{s:f,s:b,s:i}}", "status", "load", 0.5, "ok", 1, "n", 3);
        _cleanup_free_ char *c1 = json_cell(json_path_get(o, "status.load"));
        _cleanup_free_ char *c2 = json_cell(json_path_get(o, "status.ok"));
        _cleanup_free_ char *c3 = json_cell(json_path_get(o, "status.n"));
        _cleanup_free_ char *c4 = json_cell(json_path_get(o, "status.missing.deeper"));
        assert_string_equal(c1, "0.5");
        assert_string_equal(c2, "true");
        assert_string_equal(c3, "3");
        assert_string_equal(c4, "<none>");
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_server_forms),
                cmocka_unit_test(test_server_from_env_then_default),
                cmocka_unit_test(test_token_from_admin_token_beside_socket),
                cmocka_unit_test(test_request_over_unix_socket_sends_token_and_body),
                cmocka_unit_test(test_request_unreachable_names_cause),
                cmocka_unit_test(test_stream_lines_splits_chunks),
                cmocka_unit_test(test_stream_error_answer_is_message),
                cmocka_unit_test(test_error_message_and_escape),
                cmocka_unit_test(test_diff_equal_is_null),
                cmocka_unit_test(test_diff_change_in_middle_has_context),
                cmocka_unit_test(test_diff_from_empty_and_separate_hunks),
                cmocka_unit_test(test_diff_insert_and_delete),
                cmocka_unit_test(test_table_alignment),
                cmocka_unit_test(test_age_and_cells),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
