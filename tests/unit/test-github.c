/* Unit tests for pkg/github against the fake GitHub API (tests/github_fake.py,
 * started as a child process on a free loopback port, driven through its
 * /_fake/ control routes). Cases: a branch head read from GitHub's shapes;
 * the second ask is a 304 answered from the cache; a moved head and a
 * force-push to an older commit are seen; private without a token is
 * NotFound with the hint; a bad token; a missing branch; a spent rate
 * limit closes the gate (no request until the reset); Retry-After;
 * pagination over three pages; GitHub's token expiry header; a closed port;
 * URL parsing; and that no message ever holds the token. The runner
 * endpoints: JIT configuration, registration token, a list past 100 over
 * Link pages, get, delete (422 while busy, 404 taken as gone), downloads,
 * an org's runner group, and 403 as TokenForbidden with the rights needed. */
/* cmocka needs these three first. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <arpa/inet.h>
#include <inttypes.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "github/github.h"

#define PAT "ghp_unitTestSecret0123456789abcdefghijkl"
#define SHA_A "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define SHA_B "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
#define SHA_C "cccccccccccccccccccccccccccccccccccccccc"

typedef struct Fixture {
        pid_t fake;
        char url[64];
        GithubClient *g;
} Fixture;

/* ---- the fake ---------------------------------------------------------------- */

static pid_t fake_start(char url[static 64]) {
        int out[2];
        char line[32] = "";

        assert_int_equal(pipe(out), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                dup2(out[1], STDOUT_FILENO);
                close(out[0]);
                execlp("python3", "python3", "tests/github_fake.py", "--port", "0", (char *) NULL);
                _exit(127);
        }
        close(out[1]);
        FILE *f = fdopen(out[0], "r");
        assert_non_null(fgets(line, sizeof line, f));
        fclose(f);
        snprintf(url, 64, "http://127.0.0.1:%d", atoi(line));
        return pid;
}

static size_t discard(char *p, size_t s, size_t n, void *u) {
        (void) p;
        (void) u;
        return s * n;
}

/* POST /_fake/<what> with a JSON body; asserts 200. */
static void fake(Fixture *f, const char *what, const char *json) {
        _cleanup_free_ char *url = xasprintf("%s/_fake/%s", f->url, what);
        CURL *c = curl_easy_init();
        long status = 0;

        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, json);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
        assert_int_equal(curl_easy_perform(c), CURLE_OK);
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        curl_easy_cleanup(c);
        assert_int_equal(status, 200);
}

static size_t collect(char *p, size_t s, size_t n, void *u) {
        return buf_append(u, p, s * n) < 0 ? 0 : s * n;
}

/* How many GitHub requests the fake has answered. */
static json_int_t fake_requests(Fixture *f) {
        _cleanup_free_ char *url = xasprintf("%s/_fake/requests", f->url);
        CURL *c = curl_easy_init();
        Buf b = BUF_INIT;

        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
        assert_int_equal(curl_easy_perform(c), CURLE_OK);
        curl_easy_cleanup(c);
        json_t *j = json_loads(b.data, 0, NULL);
        json_int_t n = json_int_at(j, "total", -1);
        json_decref(j);
        buf_free(&b);
        return n;
}

static int setup(void **state) {
        Fixture *f = xcalloc(1, sizeof *f);

        f->fake = fake_start(f->url);
        assert_int_equal(github_client_new(&(GithubOptions){.timeout_usec = 5 * USEC_PER_SEC}, &f->g), 0);
        fake(f, "tokens", "{\"token\":\"" PAT "\"}");
        fake(f, "repos",
             "{\"owner\":\"acme\",\"name\":\"site\",\"branches\":{\"main\":{\"sha\":\"" SHA_A
             "\",\"message\":\"first line\\n\\nmore\",\"author\":\"Ada\",\"date\":\"2026-11-20T10:00:00Z\"}}}");
        *state = f;
        return 0;
}

static int teardown(void **state) {
        Fixture *f = *state;

        github_client_free(f->g);
        kill(f->fake, SIGTERM);
        waitpid(f->fake, NULL, 0);
        free(f);
        return 0;
}

static GithubRepoRef ref(Fixture *f, const char *name, const char *token) {
        return (GithubRepoRef){f->url, "acme", name, token, name};
}

static void assert_clean(const GithubResult *r) {
        assert_null(strstr(r->message, PAT));
}

/* ---- cases --------------------------------------------------------------------- */

static void test_head_then_304_then_moved(void **state) {
        Fixture *f = *state;
        GithubRepoRef r = ref(f, "site", PAT);
        json_t *c = NULL;
        GithubResult res;

        assert_int_equal(github_branch_head(f->g, &r, "main", &c, &res), 0);
        assert_string_equal(json_str_at(c, "sha"), SHA_A);
        assert_string_equal(json_str_at(c, "message"), "first line");
        assert_string_equal(json_str_at(c, "author"), "Ada");
        assert_string_equal(json_str_at(c, "time"), "2026-11-20T10:00:00Z");
        assert_false(res.not_modified);
        assert_int_equal(res.requests, 1);
        assert_true(res.rate_remaining > 0);
        json_decref(c);

        assert_int_equal(github_branch_head(f->g, &r, "main", &c, &res), 0);
        assert_true(res.not_modified);
        assert_int_equal(res.requests_304, 1);
        assert_string_equal(json_str_at(c, "sha"), SHA_A);
        json_decref(c);

        fake(f, "head", "{\"owner\":\"acme\",\"name\":\"site\",\"branch\":\"main\",\"sha\":\"" SHA_B "\"}");
        assert_int_equal(github_branch_head(f->g, &r, "main", &c, &res), 0);
        assert_false(res.not_modified);
        assert_string_equal(json_str_at(c, "sha"), SHA_B);
        json_decref(c);

        /* A force-push to an older commit is a different sha all the same. */
        fake(f, "head",
             "{\"owner\":\"acme\",\"name\":\"site\",\"branch\":\"main\",\"sha\":\"" SHA_C
             "\",\"date\":\"2001-01-01T00:00:00Z\"}");
        assert_int_equal(github_branch_head(f->g, &r, "main", &c, &res), 0);
        assert_string_equal(json_str_at(c, "sha"), SHA_C);
        assert_string_equal(json_str_at(c, "time"), "2001-01-01T00:00:00Z");
        json_decref(c);
}

static void test_not_found_bad_credentials_branch_missing(void **state) {
        Fixture *f = *state;
        json_t *c = NULL;
        GithubResult res;

        fake(f, "repos", "{\"owner\":\"acme\",\"name\":\"private\",\"private\":true,\"branches\":{\"main\":{\"sha\":\"" SHA_A "\"}}}");
        GithubRepoRef anon = ref(f, "private", NULL);
        assert_int_equal(github_branch_head(f->g, &anon, "main", &c, &res), -EIO);
        assert_int_equal(res.error, GITHUB_NOT_FOUND);
        assert_non_null(strstr(res.message, "tokenRef"));
        assert_string_equal(github_error_reason(res.error), "NotFound");

        fake(f, "tokens", "{\"token\":\"" PAT "\",\"valid\":false}");
        GithubRepoRef bad = ref(f, "site", PAT);
        assert_int_equal(github_branch_head(f->g, &bad, "main", &c, &res), -EIO);
        assert_int_equal(res.error, GITHUB_BAD_CREDENTIALS);
        assert_non_null(strstr(res.message, "401"));
        assert_clean(&res);
        fake(f, "tokens", "{\"token\":\"" PAT "\"}");

        GithubRepoRef ok = ref(f, "site", PAT);
        assert_int_equal(github_branch_head(f->g, &ok, "nope", &c, &res), -EIO);
        assert_int_equal(res.error, GITHUB_BRANCH_NOT_FOUND);
        assert_non_null(strstr(res.message, "nope"));
        assert_clean(&res);
}

static void test_rate_limit_gate(void **state) {
        Fixture *f = *state;
        GithubRepoRef r = ref(f, "site", PAT);
        _cleanup_free_ char *limit = NULL;
        json_t *c = NULL;
        GithubResult res;
        uint64_t reset = now_usec() / USEC_PER_SEC + 3;

        limit = xasprintf("{\"token\":\"" PAT "\",\"limit\":5000,\"remaining\":0,\"reset\":%" PRIu64 "}", reset);
        fake(f, "ratelimit", limit);
        assert_int_equal(github_branch_head(f->g, &r, "main", &c, &res), -EIO);
        assert_int_equal(res.error, GITHUB_RATE_LIMITED);
        assert_int_equal(res.retry_at_usec, reset * USEC_PER_SEC);
        json_int_t made = fake_requests(f);

        /* While the gate is closed nothing is asked. */
        assert_int_equal(github_list_branches(f->g, &r, &c, &res), -EIO);
        assert_int_equal(res.error, GITHUB_RATE_LIMITED);
        assert_int_equal(res.requests, 0);
        assert_int_equal(fake_requests(f), made);
        assert_clean(&res);

        /* Another token is another gate. */
        GithubRepoRef anon = ref(f, "site", NULL);
        assert_int_equal(github_branch_head(f->g, &anon, "main", &c, &res), 0);
        json_decref(c);

        while (now_usec() < reset * USEC_PER_SEC + 100 * USEC_PER_MSEC)
                usleep(50 * 1000);
        assert_int_equal(github_branch_head(f->g, &r, "main", &c, &res), 0);
        json_decref(c);
}

static void test_retry_after(void **state) {
        Fixture *f = *state;
        GithubRepoRef r = ref(f, "site", NULL);
        json_t *c = NULL;
        GithubResult res;
        uint64_t before = now_usec();

        fake(f, "retry_after", "{\"seconds\":7,\"count\":1}");
        assert_int_equal(github_branch_head(f->g, &r, "main", &c, &res), -EIO);
        assert_int_equal(res.error, GITHUB_RATE_LIMITED);
        assert_true(res.retry_at_usec >= before + 6 * USEC_PER_SEC);
        assert_true(res.retry_at_usec <= now_usec() + 8 * USEC_PER_SEC);
}

static void test_pagination_and_token_expiry(void **state) {
        Fixture *f = *state;
        Buf b = BUF_INIT;
        json_t *names = NULL;
        GithubResult res;

        buf_puts(&b, "{\"owner\":\"acme\",\"name\":\"big\",\"branches\":{");
        for (int i = 0; i < 250; i++)
                buf_printf(&b, "%s\"b%03d\":{\"sha\":\"" SHA_A "\"}", i ? "," : "", i);
        buf_puts(&b, "}}");
        fake(f, "repos", b.data);
        buf_free(&b);
        fake(f, "tokens", "{\"token\":\"" PAT "\",\"expires\":\"2026-12-01 08:30:00 UTC\"}");

        GithubRepoRef r = ref(f, "big", PAT);
        assert_int_equal(github_list_branches(f->g, &r, &names, &res), 0);
        assert_int_equal(json_array_size(names), 250);
        assert_int_equal(res.requests, 3);
        assert_string_equal(json_string_value(json_array_get(names, 249)), "b249");
        uint64_t want;
        assert_int_equal(time_parse_rfc3339("2026-12-01T08:30:00Z", &want), 0);
        assert_int_equal(res.token_expires_usec, want);
        json_decref(names);

        /* Unchanged: the first page's 304 answers for all of them. */
        assert_int_equal(github_list_branches(f->g, &r, &names, &res), 0);
        assert_true(res.not_modified);
        assert_int_equal(res.requests, 1);
        assert_int_equal(json_array_size(names), 250);
        json_decref(names);
}

static void test_clone_url_and_closed_port(void **state) {
        Fixture *f = *state;
        GithubRepoRef r = ref(f, "site", PAT);
        char *url = NULL;
        json_t *c = NULL;
        GithubResult res;

        assert_int_equal(github_clone_url(f->g, &r, &url, &res), 0);
        assert_string_equal(url, "https://github.com/acme/site.git");
        free(url);

        int s = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t len = sizeof a;
        assert_int_equal(bind(s, (struct sockaddr *) &a, sizeof a), 0);
        getsockname(s, (struct sockaddr *) &a, &len);
        _cleanup_free_ char *closed = xasprintf("http://127.0.0.1:%d", ntohs(a.sin_port));
        close(s);
        GithubRepoRef gone = {closed, "acme", "site", PAT, NULL};
        uint64_t t0 = now_mono_usec();
        assert_int_equal(github_branch_head(f->g, &gone, "main", &c, &res), -EIO);
        assert_int_equal(res.error, GITHUB_NETWORK);
        assert_true(now_mono_usec() - t0 < 3 * USEC_PER_SEC);
        assert_non_null(strstr(res.message, closed));
        assert_clean(&res);
}

static void test_runner_endpoints(void **state) {
        Fixture *f = *state;
        GithubRepoRef r = {f->url, "acme", "site", PAT, NULL};
        _cleanup_json_ json_t *labels = json_pack("[s]", "gpu");
        GithubRunner *list = NULL, one = {0};
        GithubResult res;
        json_int_t id = 0;
        char *jit = NULL, *tok = NULL, *url = NULL, *sha = NULL;
        size_t n = 0;

        assert_int_equal(github_runner_jitconfig(f->g, &r, "ci-1-abcdef", labels, 1, &id, &jit, &res), 0);
        assert_true(id > 0);
        assert_true(strlen(jit) > 10);
        free(jit);
        /* The same name again: GitHub refuses (409). */
        assert_int_equal(github_runner_jitconfig(f->g, &r, "ci-1-abcdef", labels, 1, &id, &jit, &res), -EIO);
        assert_int_equal(res.http_status, 409);
        assert_int_equal(github_runner_token(f->g, &r, "registration", &tok, &res), 0);
        assert_true(strlen(tok) > 10);
        free(tok);

        for (int i = 0; i < 120; i++) {
                _cleanup_free_ char *b = xasprintf("{\"scope\":\"repo:acme/site\",\"name\":\"other-%d\"}", i);
                fake(f, "runner_add", b);
        }
        assert_int_equal(github_runner_list(f->g, &r, &list, &n, &res), 0);
        assert_int_equal(n, 121);
        assert_int_equal(res.requests, 2);
        assert_string_equal(list[0].name, "ci-1-abcdef");
        assert_false(list[0].online);
        github_runners_free(list, n);

        assert_int_equal(github_runner_get(f->g, &r, id, &one, &res), 0);
        assert_string_equal(one.name, "ci-1-abcdef");
        free(one.name);

        fake(f, "runner_busy", "{\"name\":\"ci-1-abcdef\"}");
        assert_int_equal(github_runner_delete(f->g, &r, id, &res), -EIO);
        assert_int_equal(res.error, GITHUB_BUSY);
        assert_string_equal(github_error_reason(res.error), "RunnerBusy");
        fake(f, "runner_busy", "{\"name\":\"ci-1-abcdef\",\"busy\":false}");
        assert_int_equal(github_runner_delete(f->g, &r, id, &res), 0);
        assert_int_equal(res.http_status, 204);
        assert_int_equal(github_runner_delete(f->g, &r, id, &res), 0); /* 404: already gone */
        assert_int_equal(github_runner_get(f->g, &r, id, &one, &res), -EIO);
        assert_int_equal(res.error, GITHUB_NOT_FOUND);

        fake(f, "runner_release", "{\"path\":\"tests/github_fake.py\",\"version\":\"2.321.0\"}");
        assert_int_equal(github_runner_download(f->g, &r, "linux", "x64", &url, &sha, &res), 0);
        assert_non_null(strstr(url, "actions-runner-linux-x64-2.321.0.tar.gz"));
        assert_int_equal(strlen(sha), 64);
        free(url);
        free(sha);

        GithubRepoRef org = {f->url, "acme", NULL, PAT, NULL};
        assert_int_equal(github_runner_group_id(f->g, &org, "Default", &id, &res), 0);
        assert_int_equal(id, 1);
        assert_int_equal(github_runner_group_id(f->g, &org, "Other", &id, &res), -EIO);
        assert_int_equal(res.error, GITHUB_NOT_FOUND);
}

static void test_runner_forbidden(void **state) {
        Fixture *f = *state;
        GithubRepoRef r = {f->url, "acme", "site", PAT, NULL};
        GithubRunner *list = NULL;
        GithubResult res;
        size_t n = 0;

        fake(f, "tokens", "{\"token\":\"" PAT "\",\"scopes\":\"read:org\"}");
        assert_int_equal(github_runner_list(f->g, &r, &list, &n, &res), -EIO);
        assert_int_equal(res.error, GITHUB_FORBIDDEN);
        assert_string_equal(github_error_reason(res.error), "TokenForbidden");
        assert_non_null(strstr(res.message, "Administration: write"));
        assert_clean(&res);
}

static void test_parse_url(void **state) {
        char *o = NULL, *n = NULL;
        (void) state;

        static const struct {
                const char *url, *owner, *name;
        } good[] = {
                {"https://github.com/acme/site", "acme", "site"},
                {"https://github.com/acme/site.git", "acme", "site"},
                {"https://github.com/acme/site/", "acme", "site"},
                {"https://ghe.example.com/team/tool.js", "team", "tool.js"},
        };
        for (size_t i = 0; i < ELEMENTSOF(good); i++) {
                assert_int_equal(github_parse_url(good[i].url, &o, &n), 0);
                assert_string_equal(o, good[i].owner);
                assert_string_equal(n, good[i].name);
                free(o);
                free(n);
        }
        static const char *const bad[] = {"github.com/acme/site", "https://github.com/acme",
                                          "https://github.com/acme/site/tree/main", "ssh://git@github.com:acme",
                                          "https://github.com//site"};
        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                assert_int_equal(github_parse_url(bad[i], &o, &n), -EINVAL);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_head_then_304_then_moved, setup, teardown),
                cmocka_unit_test_setup_teardown(test_not_found_bad_credentials_branch_missing, setup, teardown),
                cmocka_unit_test_setup_teardown(test_rate_limit_gate, setup, teardown),
                cmocka_unit_test_setup_teardown(test_retry_after, setup, teardown),
                cmocka_unit_test_setup_teardown(test_pagination_and_token_expiry, setup, teardown),
                cmocka_unit_test_setup_teardown(test_clone_url_and_closed_port, setup, teardown),
                cmocka_unit_test_setup_teardown(test_runner_endpoints, setup, teardown),
                cmocka_unit_test_setup_teardown(test_runner_forbidden, setup, teardown),
                cmocka_unit_test(test_parse_url),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
