/* Unit tests for pkg/repo: the Repo controller on a real store and
 * controller loop, with real git repositories (provider git over file://)
 * in a temporary directory. Cases: the first look records lastCommit and
 * announces it once; nothing new means no announcement and no new
 * lastChangeTime; a pushed commit is seen on repo_check_soon() (not before:
 * the interval is an hour) and announced once; a webhook-like burst of
 * check requests is one check; repo_match_push() finds Repos by GitHub name
 * and by clone URL, on their branch only. */
/* cmocka needs these three first. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "controller/controller.h"
#include "github/github.h"
#include "gitremote/gitremote.h"
#include "repo/repo.h"
#include "resource/resource.h"
#include "store/store.h"
#include "token/token.h"
#include "test-shell.h"

#define WAIT_USEC (10 * USEC_PER_SEC)

typedef struct Fixture {
        char dir[64];
        char *bare, *work, *url;
        Store *store;
        Controller *controller;
        TokenController *tokens;
        GithubClient *github;
        RepoController *repos;
        pthread_mutex_t lock;
        unsigned announced;
        char last_sha[64];
} Fixture;

static void on_commit(void *userdata, const char *ns, const char *name, const char *sha) {
        Fixture *f = userdata;
        (void) ns;
        (void) name;
        pthread_mutex_lock(&f->lock);
        f->announced++;
        snprintf(f->last_sha, sizeof f->last_sha, "%s", sha);
        pthread_mutex_unlock(&f->lock);
}

static unsigned announced(Fixture *f, char *sha) { /* sha: NULL or 64 bytes */
        pthread_mutex_lock(&f->lock);
        unsigned n = f->announced;
        if (sha)
                memcpy(sha, f->last_sha, 64);
        pthread_mutex_unlock(&f->lock);
        return n;
}

static char *push_commit(Fixture *f, const char *message) {
        char sha[64] = "";

        sh("cd '%s' && echo '%s' >> f && git add f && GIT_AUTHOR_NAME=Ada GIT_AUTHOR_EMAIL=a@x GIT_COMMITTER_NAME=Ada "
           "GIT_COMMITTER_EMAIL=a@x HOME=/tmp git commit -q -m '%s' && git push -q origin HEAD:refs/heads/main",
           f->work, message, message);
        _cleanup_free_ char *cmd = xasprintf("git -C '%s' rev-parse HEAD", f->work);
        FILE *p = popen(cmd, "r");
        assert_non_null(fgets(sha, sizeof sha, p));
        pclose(p);
        sha[strcspn(sha, "\n")] = '\0';
        return xstrdup(sha);
}

static int setup(void **state) {
        Fixture *f = xcalloc(1, sizeof *f);
        _cleanup_free_ char *db = NULL, *cache = NULL;

        snprintf(f->dir, sizeof f->dir, "/tmp/test-repo-XXXXXX");
        assert_non_null(mkdtemp(f->dir));
        f->bare = xasprintf("%s/site.git", f->dir);
        f->work = xasprintf("%s/work", f->dir);
        f->url = xasprintf("file://%s", f->bare);
        sh("git init -q --bare -b main '%s' && git init -q -b main '%s' && git -C '%s' remote add origin '%s'", f->bare,
           f->work, f->work, f->bare);
        db = xasprintf("sqlite:%s/state.db", f->dir);
        cache = xasprintf("%s/cache", f->dir);
        assert_int_equal(store_open(db, &f->store), 0);
        assert_int_equal(controller_new(f->store, 2, &f->controller), 0);
        assert_int_equal(token_controller_new(f->store, f->controller, &f->tokens), 0);
        assert_int_equal(github_client_new(NULL, &f->github), 0);
        RepoOptions o = {f->store, f->controller, f->tokens, f->github, cache, NULL};
        assert_int_equal(repo_controller_new(&o, &f->repos), 0);
        pthread_mutex_init(&f->lock, NULL);
        repo_on_commit(f->repos, on_commit, f);
        assert_int_equal(controller_start(f->controller), 0);
        *state = f;
        return 0;
}

static int teardown(void **state) {
        Fixture *f = *state;

        controller_free(f->controller);
        repo_controller_free(f->repos);
        github_client_free(f->github);
        token_controller_free(f->tokens);
        store_close(f->store);
        sh("rm -rf '%s'", f->dir);
        pthread_mutex_destroy(&f->lock);
        free(f->bare);
        free(f->work);
        free(f->url);
        free(f);
        return 0;
}

static int group_setup(void **state) {
        (void) state;
        return resource_init() < 0 || gitremote_init() < 0 ? -1 : 0;
}

static int group_teardown(void **state) {
        (void) state;
        resource_shutdown();
        return 0;
}

static void apply(Fixture *f, const char *json) {
        _cleanup_json_ json_t *o = json_loads(json, 0, NULL);
        Diags d = DIAGS_INIT;

        assert_non_null(o);
        if (resource_prepare(o, 0, &d) < 0) {
                _cleanup_free_ char *msg = diag_format(&d.items[0]);
                diags_free(&d);
                fail_msg("%s", msg);
        }
        StoreOp op = {.type = STORE_OP_APPLY, .object = o};
        assert_int_equal(store_commit(f->store, &op, 1, false, NULL), 0);
        store_ops_clear(&op, 1);
}

static void apply_git_repo(Fixture *f, const char *name) {
        _cleanup_free_ char *json = xasprintf("{\"apiVersion\":\"rpr/v1\",\"kind\":\"Repo\",\"metadata\":{\"name\":\"%s\"},"
                                              "\"spec\":{\"provider\":\"git\",\"url\":\"%s\",\"interval\":\"1h\"}}",
                                              name, f->url);
        apply(f, json);
}

static json_t *status_of(Fixture *f, const char *name) {
        json_t *o = NULL;

        if (store_get_json(f->store, "Repo", "default", name, &o) < 0)
                return NULL;
        json_t *st = json_incref(json_object_get(o, "status"));
        json_decref(o);
        return st;
}

static const char *sha_of(const json_t *st) {
        return json_str_at(json_object_get(st, "lastCommit"), "sha");
}

static json_t *wait_sha(Fixture *f, const char *name, const char *sha) {
        uint64_t end = now_mono_usec() + WAIT_USEC;

        for (;;) {
                json_t *st = status_of(f, name);
                if (sha_of(st) && STREQ(sha_of(st), sha))
                        return st;
                json_decref(st);
                if (now_mono_usec() > end)
                        fail_msg("repo %s never reached %s", name, sha);
                usleep(20 * 1000);
        }
}

/* ---- cases ------------------------------------------------------------------- */

static void test_first_look_and_announcements(void **state) {
        Fixture *f = *state;
        _cleanup_free_ char *a = push_commit(f, "one");
        char sha[64];

        apply_git_repo(f, "site");
        json_t *st = wait_sha(f, "site", a);
        assert_string_equal(json_str_at(json_object_get(st, "lastCommit"), "message"), "one");
        assert_string_equal(json_str_at(condition_get(st, "Ready"), "reason"), "Checked");
        _cleanup_free_ char *changed = xstrdup(json_str_at(st, "lastChangeTime"));
        json_decref(st);
        assert_int_equal(announced(f, sha), 1);
        assert_string_equal(sha, a);

        /* Asked again with nothing new: no announcement, same change time. */
        sleep(1);
        repo_check_soon(f->repos, "default", "site");
        usleep(500 * 1000);
        st = status_of(f, "site");
        assert_string_equal(json_str_at(st, "lastChangeTime"), changed);
        json_decref(st);
        assert_int_equal(announced(f, NULL), 1);

        /* A push is not seen before it is due (the interval is an hour)... */
        _cleanup_free_ char *b = push_commit(f, "two");
        usleep(300 * 1000);
        st = status_of(f, "site");
        assert_string_equal(sha_of(st), a);
        json_decref(st);
        /* ...but at once when asked, and announced once. */
        for (int i = 0; i < 5; i++)
                repo_check_soon(f->repos, "default", "site");
        json_decref(wait_sha(f, "site", b));
        usleep(300 * 1000);
        assert_int_equal(announced(f, sha), 2);
        assert_string_equal(sha, b);
}

static void test_match_push(void **state) {
        Fixture *f = *state;

        apply(f, "{\"apiVersion\":\"rpr/v1\",\"kind\":\"Repo\",\"metadata\":{\"name\":\"gh\"},\"spec\":{\"owner\":\"Acme\","
                 "\"name\":\"Site\",\"branch\":\"main\",\"apiURL\":\"http://127.0.0.1:1\",\"interval\":\"1h\"}}");
        apply(f, "{\"apiVersion\":\"rpr/v1\",\"kind\":\"Repo\",\"metadata\":{\"name\":\"byurl\"},\"spec\":{\"provider\":"
                 "\"git\",\"url\":\"https://github.com/acme/site.git\",\"branch\":\"main\",\"interval\":\"1h\"}}");
        apply(f, "{\"apiVersion\":\"rpr/v1\",\"kind\":\"Repo\",\"metadata\":{\"name\":\"dev\"},\"spec\":{\"owner\":\"acme\","
                 "\"name\":\"site\",\"branch\":\"dev\",\"apiURL\":\"http://127.0.0.1:1\",\"interval\":\"1h\"}}");
        apply(f, "{\"apiVersion\":\"rpr/v1\",\"kind\":\"Repo\",\"metadata\":{\"name\":\"off\"},\"spec\":{\"owner\":\"acme\","
                 "\"name\":\"site\",\"active\":false,\"interval\":\"1h\"}}");
        const char *urls[] = {"https://github.com/acme/site", NULL};

        json_t *names = repo_match_push(f->repos, "default", "acme/site", urls, "main");
        assert_int_equal(json_array_size(names), 2);
        assert_string_equal(json_string_value(json_array_get(names, 0)), "byurl");
        assert_string_equal(json_string_value(json_array_get(names, 1)), "gh");
        json_decref(names);

        names = repo_match_push(f->repos, "default", "acme/site", urls, "dev");
        assert_int_equal(json_array_size(names), 1);
        json_decref(names);
        names = repo_match_push(f->repos, "other", "acme/site", urls, "main");
        assert_int_equal(json_array_size(names), 0);
        json_decref(names);
        names = repo_match_push(f->repos, "default", "someone/else", NULL, "main");
        assert_int_equal(json_array_size(names), 0);
        json_decref(names);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_first_look_and_announcements, setup, teardown),
                cmocka_unit_test_setup_teardown(test_match_push, setup, teardown),
        };
        return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
