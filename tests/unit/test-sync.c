/* Unit tests for pkg/sync's render and plan, on a real SQLite store and a
 * real git repository made by the git command (file://), read through a
 * real Repo controller that is not started. Cases: every problem of a
 * revision collected with REPO@SHA:PATH:LINE:COL and nothing else lost;
 * the memo keeps an unchanged file's objects (not parsed again) and knows
 * objects in sync without comparing them; a plan writes only what
 * differs; an object made by hand is a conflict. */
/* cmocka needs these three first. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "controller/controller.h"
#include "github/github.h"
#include "repo/repo.h"
#include "resource/resource.h"
#include "sync/sync-private.h"
#include "test-shell.h"

typedef struct Fixture {
        char dir[64];
        char *work;
        Store *store;
        Controller *controller;
        GithubClient *github;
        RepoController *repos;
        SyncController *syncs;
        json_t *sync;
        SyncSpec spec;
} Fixture;

#define GIT_ENV                                                                                             \
        "GIT_AUTHOR_NAME=Ada GIT_AUTHOR_EMAIL=ada@example.com GIT_COMMITTER_NAME=Ada "                      \
        "GIT_COMMITTER_EMAIL=ada@example.com HOME=/tmp"

/* Writes path (relative to the work tree) and commits everything; the sha. */
static char *commit_file(Fixture *f, const char *path, const char *text) {
        char sha[64] = "";
        _cleanup_free_ char *full = xasprintf("%s/%s", f->work, path);

        assert_int_equal(write_file_atomic(full, text, strlen(text), 0644), 0);
        sh("cd '%s' && git add -A && " GIT_ENV
           " git commit -q -m change && git push -q origin HEAD:refs/heads/main",
           f->work);
        _cleanup_free_ char *cmd = xasprintf("git -C '%s' rev-parse HEAD", f->work);
        FILE *p = popen(cmd, "r");
        assert_non_null(fgets(sha, sizeof sha, p));
        pclose(p);
        sha[strcspn(sha, "\n")] = '\0';
        return xstrdup(sha);
}

static char *server_yaml(const char *name, int port) {
        return xasprintf("apiVersion: rpr/v1\nkind: Server\nmetadata: {name: %s}\nspec: {host: 127.0.0.1, "
                         "port: %d}\n",
                         name, port);
}

static void apply(Store *s, json_t *obj) {
        StoreOp op = {.type = STORE_OP_APPLY, .object = obj};

        assert_int_equal(store_commit(s, &op, 1, false, NULL), 0);
        store_ops_clear(&op, 1);
        json_decref(obj);
}

static int setup(void **state) {
        Fixture *f = xcalloc(1, sizeof *f);

        snprintf(f->dir, sizeof f->dir, "/tmp/test-sync-XXXXXX");
        assert_non_null(mkdtemp(f->dir));
        f->work = xasprintf("%s/work", f->dir);
        sh("cd '%s' && git init -q --bare -b main config.git && git init -q -b main work && "
           "git -C work remote add origin '%s/config.git' && mkdir -p work/fleet",
           f->dir, f->dir);
        _cleanup_free_ char *url = xasprintf("sqlite:%s/state.db", f->dir);
        _cleanup_free_ char *cache = xasprintf("%s/cache", f->dir);
        _cleanup_free_ char *repo_url = xasprintf("file://%s/config.git", f->dir);
        assert_int_equal(store_open(url, &f->store), 0);
        assert_int_equal(controller_new(f->store, 1, &f->controller), 0);
        assert_int_equal(github_client_new(NULL, &f->github), 0);
        RepoOptions ro = {f->store, f->controller, NULL, f->github, cache, NULL};
        assert_int_equal(repo_controller_new(&ro, &f->repos), 0);
        assert_int_equal(
                sync_controller_new(&(SyncOptions){f->store, f->controller, f->repos, NULL}, &f->syncs), 0);
        apply(f->store, json_pack("{s:s, s:s, s:{s:s, s:s}, s:{s:s, s:s}}", "apiVersion", "rpr/v1", "kind",
                                  "Repo", "metadata", "name", "config", "namespace", "default", "spec",
                                  "provider", "git", "url", repo_url));
        f->sync = json_pack("{s:s, s:s, s:{s:s, s:s}, s:{s:s, s:s}}", "apiVersion", "rpr/v1", "kind", "Sync",
                            "metadata", "name", "fleet", "namespace", "default", "spec", "repo", "config",
                            "path", "fleet");
        sync_spec_read(f->sync, &f->spec);
        *state = f;
        return 0;
}

static int teardown(void **state) {
        Fixture *f = *state;

        sync_spec_clear(&f->spec);
        json_decref(f->sync);
        sync_controller_free(f->syncs);
        repo_controller_free(f->repos);
        github_client_free(f->github);
        controller_free(f->controller);
        store_close(f->store);
        sh("rm -rf '%s'", f->dir);
        free(f->work);
        free(f);
        return 0;
}

static int group_setup(void **state) {
        (void) state;
        return resource_init();
}

static int group_teardown(void **state) {
        (void) state;
        resource_shutdown();
        return 0;
}

/* ---- cases ------------------------------------------------------------------- */

static bool has_error(const json_t *errors, const char *prefix, const char *part) {
        size_t i;
        const json_t *v;

        json_array_foreach(errors, i, v) {
                if (startswith(json_string_value(v), prefix) && strstr(json_string_value(v), part))
                        return true;
        }
        return false;
}

static void test_every_problem_is_named_with_its_place(void **state) {
        Fixture *f = *state;
        SyncMemo *memo = sync_memo(f->syncs, "default", "fleet");
        _cleanup_free_ char *ok = server_yaml("ok", 22), *bad = server_yaml("bad", 0);
        _cleanup_free_ char *both = xasprintf("%s---\n%s", ok, bad);
        _cleanup_free_ char *sha = NULL, *where = NULL, *error = NULL;
        SyncRender r;

        free(commit_file(f, "fleet/elsewhere.yaml",
                         "kind: Server\nmetadata: {name: x, namespace: other}\nspec: {host: h}\napiVersion: "
                         "rpr/v1\n"));
        free(commit_file(f, "fleet/t.yml",
                         "apiVersion: rpr/v1\nkind: Token\nmetadata: {name: t}\n"
                         "spec: {type: github, value: ghp_NeverFromARepo0123456789}\n"));
        sha = commit_file(f, "fleet/two.yaml", both);
        where = xasprintf("config@%.12s:fleet/", sha);

        assert_int_equal(sync_render(f->syncs, &f->spec, memo, sha, &r, &error), 0);
        assert_int_equal(json_array_size(r.objects), 1);
        assert_int_equal(json_array_size(r.errors), 3);
        _cleanup_free_ char *p1 = xasprintf("%stwo.yaml:9:", where), *p2 = xasprintf("%st.yml:4:", where),
                            *p3 = xasprintf("%selsewhere.yaml:2:", where);
        assert_true(has_error(r.errors, p1, "spec.port"));
        assert_true(has_error(r.errors, p2, "valueFrom"));
        assert_true(has_error(r.errors, p3, "writes only into namespace default"));
        _cleanup_free_ char *text = json_dumps(r.errors, 0);
        assert_null(strstr(text, "ghp_NeverFromARepo"));
        sync_render_clear(&r);
}

static void test_memo_keeps_unchanged_files_and_objects_in_sync(void **state) {
        Fixture *f = *state;
        SyncMemo *memo = sync_memo(f->syncs, "default", "fleet");
        _cleanup_free_ char *a = server_yaml("a", 22), *b = server_yaml("b", 22), *b2 = server_yaml("b", 23);
        _cleanup_free_ char *error = NULL;
        SyncRender r1, r2;
        SyncPlan p;

        free(commit_file(f, "fleet/a.yaml", a));
        _cleanup_free_ char *sha1 = commit_file(f, "fleet/b.yaml", b);
        assert_int_equal(sync_render(f->syncs, &f->spec, memo, sha1, &r1, &error), 0);
        assert_int_equal(json_array_size(r1.errors), 0);
        sync_plan(f->syncs, &f->spec, memo, f->sync, r1.objects, &p);
        assert_int_equal(p.created, 2);
        assert_int_equal(sync_plan_commit(f->syncs, &p, memo, f->sync, NULL), 0);
        sync_plan_clear(&p);

        /* Nothing changed: nothing to write, nothing compared. */
        sync_plan(f->syncs, &f->spec, memo, f->sync, r1.objects, &p);
        assert_int_equal(p.n_ops, 0);
        assert_int_equal(json_object_size(p.seen), 2);
        sync_plan_clear(&p);

        /* b changes: a's object is the one remembered, b's is new. */
        _cleanup_free_ char *sha2 = commit_file(f, "fleet/b.yaml", b2);
        assert_int_equal(sync_render(f->syncs, &f->spec, memo, sha2, &r2, &error), 0);
        assert_ptr_equal(json_array_get(r2.objects, 0), json_array_get(r1.objects, 0));
        assert_ptr_not_equal(json_array_get(r2.objects, 1), json_array_get(r1.objects, 1));
        sync_plan(f->syncs, &f->spec, memo, f->sync, r2.objects, &p);
        assert_int_equal(p.updated, 1);
        assert_int_equal(p.n_ops, 1);
        assert_string_equal(json_string_value(json_array_get(p.changed, 0)), "Server/default/b");
        sync_plan_clear(&p);
        sync_render_clear(&r1);
        sync_render_clear(&r2);
}

static void test_an_object_made_by_hand_is_a_conflict(void **state) {
        Fixture *f = *state;
        SyncMemo *memo = sync_memo(f->syncs, "default", "fleet");
        _cleanup_free_ char *a = server_yaml("a", 22), *error = NULL;
        SyncRender r;
        SyncPlan p;

        apply(f->store,
              json_pack("{s:s, s:s, s:{s:s, s:s}, s:{s:s}}", "apiVersion", "rpr/v1", "kind", "Server",
                        "metadata", "name", "a", "namespace", "default", "spec", "host", "h"));
        _cleanup_free_ char *sha = commit_file(f, "fleet/a.yaml", a);
        assert_int_equal(sync_render(f->syncs, &f->spec, memo, sha, &r, &error), 0);
        sync_plan(f->syncs, &f->spec, memo, f->sync, r.objects, &p);
        assert_int_equal(json_array_size(p.conflicts), 1);
        assert_non_null(
                strstr(json_string_value(json_array_get(p.conflicts, 0)), "Server/default/a exists"));
        assert_int_equal(p.n_ops, 0);
        sync_plan_clear(&p);
        sync_render_clear(&r);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_every_problem_is_named_with_its_place, setup, teardown),
                cmocka_unit_test_setup_teardown(test_memo_keeps_unchanged_files_and_objects_in_sync, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_an_object_made_by_hand_is_a_conflict, setup, teardown),
        };
        return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
