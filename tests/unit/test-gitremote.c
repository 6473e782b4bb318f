/* Unit tests for pkg/gitremote with real git repositories made by the git
 * command in a temporary directory, over file:// and through a real `git
 * daemon` on a free loopback port. Cases: heads and branches listed without
 * a clone; a new commit and a force-push to an older commit seen; a missing
 * branch and a missing repository told apart; a commit read through the
 * bare cache, and again from the cache alone when the remote is gone; a
 * temporary checkout reported as git status would and removed; a closed
 * port; URLs shown without their userinfo; the manifests of a directory at
 * a commit read from the cache (recursively, by extension, a file over the
 * bound given by size only, a missing directory told). */
/* cmocka needs these three first. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "gitremote/gitremote.h"
#include "test-shell.h"

typedef struct Fixture {
        char dir[64];
        char *bare, *work, *url, *cache, *tmp;
} Fixture;

#define GIT_ENV                                                                                                \
        "GIT_AUTHOR_NAME='Ada Lovelace' GIT_AUTHOR_EMAIL=ada@example.com GIT_COMMITTER_NAME='Ada Lovelace' " \
        "GIT_COMMITTER_EMAIL=ada@example.com HOME=/tmp"

/* Commits message on branch with both dates set; returns the sha. */
static char *commit(Fixture *f, const char *branch, const char *message, const char *date, bool force) {
        char sha[64] = "";

        sh("cd '%s' && echo '%s' >> file && git add file && " GIT_ENV " GIT_AUTHOR_DATE=%s GIT_COMMITTER_DATE=%s "
           "git commit -q -m '%s' && git push -q %s origin HEAD:refs/heads/%s",
           f->work, message, date, date, message, force ? "-f" : "", branch);
        _cleanup_free_ char *cmd = xasprintf("git -C '%s' rev-parse HEAD", f->work);
        FILE *p = popen(cmd, "r");
        assert_non_null(fgets(sha, sizeof sha, p));
        pclose(p);
        sha[strcspn(sha, "\n")] = '\0';
        return xstrdup(sha);
}

static int setup(void **state) {
        Fixture *f = xcalloc(1, sizeof *f);

        snprintf(f->dir, sizeof f->dir, "/tmp/test-gitremote-XXXXXX");
        assert_non_null(mkdtemp(f->dir));
        f->bare = xasprintf("%s/site.git", f->dir);
        f->work = xasprintf("%s/work", f->dir);
        f->url = xasprintf("file://%s", f->bare);
        f->cache = xasprintf("%s/cache/site.git", f->dir);
        f->tmp = xasprintf("%s/tmp", f->dir);
        sh("git init -q --bare -b main '%s' && git init -q -b main '%s' && git -C '%s' remote add origin '%s' && "
           "mkdir '%s'",
           f->bare, f->work, f->work, f->bare, f->tmp);
        *state = f;
        return 0;
}

static int teardown(void **state) {
        Fixture *f = *state;

        sh("rm -rf '%s'", f->dir);
        free(f->bare);
        free(f->work);
        free(f->url);
        free(f->cache);
        free(f->tmp);
        free(f);
        return 0;
}

static int group_setup(void **state) {
        (void) state;
        return gitremote_init();
}

static int group_teardown(void **state) {
        (void) state;
        gitremote_shutdown();
        return 0;
}

/* ---- cases ------------------------------------------------------------------- */

static void test_ls_new_commit_and_force_push(void **state) {
        Fixture *f = *state;
        _cleanup_free_ char *a = commit(f, "main", "one", "2026-11-20T10:00:00Z", false);
        _cleanup_free_ char *side = commit(f, "feature/x", "side", "2026-11-20T11:00:00Z", false);
        char *sha = NULL;
        json_t *branches = NULL;
        GitResult res;

        assert_int_equal(gitremote_ls(f->url, "main", NULL, &sha, &branches, &res), 0);
        assert_string_equal(sha, a); /* side went to feature/x only */
        free(sha);
        assert_int_equal(json_array_size(branches), 2);
        assert_string_equal(json_string_value(json_array_get(branches, 0)), "feature/x");
        assert_string_equal(json_string_value(json_array_get(branches, 1)), "main");
        json_decref(branches);

        _cleanup_free_ char *b = commit(f, "main", "two", "2026-11-21T10:00:00Z", false);
        assert_int_equal(gitremote_ls(f->url, "main", NULL, &sha, &branches, &res), 0);
        assert_string_equal(sha, b);
        free(sha);
        json_decref(branches);

        sh("git -C '%s' reset -q --hard %s", f->work, a);
        _cleanup_free_ char *older = commit(f, "main", "older", "2019-01-01T00:00:00Z", true);
        assert_int_equal(gitremote_ls(f->url, "main", NULL, &sha, &branches, &res), 0);
        assert_string_equal(sha, older);
        free(sha);
        json_decref(branches);
}

static void test_missing_branch_and_repository(void **state) {
        Fixture *f = *state;
        _cleanup_free_ char *a = commit(f, "main", "one", "2026-11-20T10:00:00Z", false);
        char *sha = NULL;
        json_t *branches = NULL;
        GitResult res;

        assert_int_equal(gitremote_ls(f->url, "nope", NULL, &sha, &branches, &res), -EIO);
        assert_int_equal(res.error, GITREMOTE_BRANCH_NOT_FOUND);
        assert_non_null(strstr(res.message, "nope"));

        assert_int_equal(gitremote_ls("file:///nonexistent/x.git", "main", NULL, &sha, &branches, &res), -EIO);
        assert_int_equal(res.error, GITREMOTE_NOT_FOUND);
        assert_non_null(strstr(res.message, "/nonexistent/x.git"));
        assert_string_equal(gitremote_error_reason(res.error), "NotFound");
}

static void test_commit_through_the_cache(void **state) {
        Fixture *f = *state;
        _cleanup_free_ char *a = commit(f, "main", "first line", "2026-11-20T10:00:00Z", false);
        json_t *c = NULL;
        GitResult res;

        assert_int_equal(gitremote_commit(f->url, "main", NULL, f->cache, a, &c, &res), 0);
        assert_string_equal(json_str_at(c, "sha"), a);
        assert_string_equal(json_str_at(c, "time"), "2026-11-20T10:00:00Z");
        assert_string_equal(json_str_at(c, "author"), "Ada Lovelace");
        assert_string_equal(json_str_at(c, "message"), "first line");
        json_decref(c);

        /* The cache has it: no need of the remote any more. */
        sh("mv '%s' '%s.moved'", f->bare, f->bare);
        assert_int_equal(gitremote_commit(f->url, "main", NULL, f->cache, a, &c, &res), 0);
        assert_string_equal(json_str_at(c, "sha"), a);
        json_decref(c);
        sh("mv '%s.moved' '%s'", f->bare, f->bare);

        _cleanup_free_ char *b = commit(f, "main", "second", "2026-11-21T10:00:00Z", false);
        assert_int_equal(gitremote_commit(f->url, "main", NULL, f->cache, b, &c, &res), 0);
        assert_string_equal(json_str_at(c, "message"), "second");
        json_decref(c);
}

static size_t entries(const char *dir) {
        DIR *d = opendir(dir);
        size_t n = 0;

        assert_non_null(d);
        for (struct dirent *e; (e = readdir(d));)
                n += e->d_name[0] != '.';
        closedir(d);
        return n;
}

static void test_inspect_reports_and_cleans_up(void **state) {
        Fixture *f = *state;
        _cleanup_free_ char *a = commit(f, "main", "checked out", "2026-11-20T10:00:00Z", false);
        json_t *report = NULL;
        GitResult res;

        assert_int_equal(gitremote_inspect(f->url, "main", NULL, f->tmp, &report, &res), 0);
        assert_non_null(strstr(json_str_at(report, "status"), "On branch main"));
        assert_non_null(strstr(json_str_at(report, "status"), "nothing to commit, working tree clean"));
        assert_string_equal(json_str_at(json_object_get(report, "commit"), "sha"), a);
        assert_int_equal(json_int_at(report, "files", 0), 1);
        assert_true(json_is_real(json_object_get(report, "durationSeconds")));
        json_decref(report);
        assert_int_equal(entries(f->tmp), 0);

        assert_int_equal(gitremote_inspect(f->url, "gone", NULL, f->tmp, &report, &res), -EIO);
        assert_int_equal(entries(f->tmp), 0);
}

static unsigned free_port(void) {
        int s = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t len = sizeof a;

        assert_int_equal(bind(s, (struct sockaddr *) &a, sizeof a), 0);
        getsockname(s, (struct sockaddr *) &a, &len);
        close(s);
        return ntohs(a.sin_port);
}

static bool port_open(unsigned port) {
        int s = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        bool ok = connect(s, (struct sockaddr *) &a, sizeof a) == 0;
        close(s);
        return ok;
}

static void test_git_daemon_and_closed_port(void **state) {
        Fixture *f = *state;
        _cleanup_free_ char *a = commit(f, "main", "over git", "2026-11-20T10:00:00Z", false);
        unsigned port = free_port();
        _cleanup_free_ char *base = xasprintf("--base-path=%s", f->dir), *p = xasprintf("--port=%u", port);
        char *sha = NULL;
        json_t *branches = NULL, *c = NULL;
        GitResult res;

        pid_t pid = fork();
        if (pid == 0) {
                int null = open("/dev/null", O_WRONLY);
                dup2(null, STDERR_FILENO);
                execlp("git", "git", "daemon", "--reuseaddr", base, "--export-all", "--listen=127.0.0.1", p, f->dir,
                       (char *) NULL);
                _exit(127);
        }
        for (int i = 0; i < 200 && !port_open(port); i++)
                usleep(25 * 1000);
        _cleanup_free_ char *url = xasprintf("git://127.0.0.1:%u/site.git", port);
        assert_int_equal(gitremote_ls(url, "main", NULL, &sha, &branches, &res), 0);
        assert_string_equal(sha, a);
        assert_int_equal(gitremote_commit(url, "main", NULL, f->cache, sha, &c, &res), 0);
        assert_string_equal(json_str_at(c, "message"), "over git");
        free(sha);
        json_decref(branches);
        json_decref(c);
        kill(pid, SIGTERM);
        waitpid(pid, NULL, 0);

        uint64_t t0 = now_mono_usec();
        assert_int_equal(gitremote_ls(url, "main", NULL, &sha, &branches, &res), -EIO);
        assert_int_equal(res.error, GITREMOTE_NETWORK);
        assert_true(now_mono_usec() - t0 < 3 * USEC_PER_SEC);
}

static void test_secrets_stay_out(void **state) {
        Fixture *f = *state;
        _cleanup_free_ char *a = commit(f, "main", "one", "2026-11-20T10:00:00Z", false);
        GitAuth auth = {.token = "ghp_doNotPrintMe012345"};
        char *sha = NULL, *shown;
        json_t *branches = NULL;
        GitResult res;

        assert_int_equal(gitremote_ls(f->url, "missing", &auth, &sha, &branches, &res), -EIO);
        assert_null(strstr(res.message, auth.token));
        assert_int_equal(gitremote_ls("https://user:hunter2@127.0.0.1:1/x.git", "main", &auth, &sha, &branches, &res),
                         -EIO);
        assert_null(strstr(res.message, "hunter2"));
        assert_null(strstr(res.message, auth.token));

        shown = gitremote_url_display("https://user:secret@host.example/x.git");
        assert_string_equal(shown, "https://host.example/x.git");
        free(shown);
        shown = gitremote_url_display("ssh://git@host/x.git");
        assert_string_equal(shown, "ssh://host/x.git");
        free(shown);
        shown = gitremote_url_display("file:///srv/x.git");
        assert_string_equal(shown, "file:///srv/x.git");
        free(shown);
}

/* ---- reading a tree ------------------------------------------------------------ */

typedef struct TreeSeen {
        json_t *files; /* path -> {"id", "len", "data" or null} */
} TreeSeen;

static int tree_file(void *userdata, const char *path, const char *blob_id, const char *data, size_t len) {
        TreeSeen *t = userdata;

        json_object_set_new(t->files, path,
                            json_pack("{s:s, s:I, s:s?}", "id", blob_id, "len", (json_int_t) len, "data",
                                      data ? xstrndup(data, len) : NULL));
        return 0;
}

static void test_read_tree_walks_a_directory_at_a_commit(void **state) {
        Fixture *f = *state;
        static const char *const exts[] = {".yaml", ".yml", ".json", NULL};
        TreeSeen t = {json_object()};
        GitResult res;

        sh("cd '%s' && mkdir -p d/sub other && echo 'a: 1' > d/a.yaml && echo 'b: 2' > d/sub/b.yml && "
           "echo '{}' > d/c.json && echo x > d/readme.md && head -c 5000 /dev/zero | tr '\\0' x > d/big.yaml && "
           "echo 'o: 1' > other/o.yaml && git add -A",
           f->work);
        _cleanup_free_ char *a = commit(f, "main", "tree", "2026-11-20T10:00:00Z", false);
        assert_int_equal(gitremote_read_tree(f->url, "main", NULL, f->cache, a, "d", exts, 1000, tree_file, &t, &res),
                         0);
        assert_int_equal(json_object_size(t.files), 4);
        assert_string_equal(json_str_at(json_object_get(t.files, "d/a.yaml"), "data"), "a: 1\n");
        assert_string_equal(json_str_at(json_object_get(t.files, "d/sub/b.yml"), "data"), "b: 2\n");
        assert_non_null(json_object_get(t.files, "d/c.json"));
        /* Larger than the bound: its size, not its content. */
        const json_t *big = json_object_get(t.files, "d/big.yaml");
        assert_null(json_str_at(big, "data"));
        assert_int_equal(json_int_at(big, "len", 0), 5000);
        assert_int_equal(strlen(json_str_at(big, "id")), 40);

        /* The root, and a directory that is not there. */
        json_object_clear(t.files);
        assert_int_equal(gitremote_read_tree(f->url, "main", NULL, f->cache, a, ".", exts, 1 << 20, tree_file, &t, &res),
                         0);
        assert_int_equal(json_object_size(t.files), 5);
        assert_int_equal(gitremote_read_tree(f->url, "main", NULL, f->cache, a, "nowhere", exts, 1000, tree_file, &t,
                                             &res),
                         -ENOENT);
        assert_non_null(strstr(res.message, "nowhere is not a directory"));
        json_decref(t.files);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_ls_new_commit_and_force_push, setup, teardown),
                cmocka_unit_test_setup_teardown(test_missing_branch_and_repository, setup, teardown),
                cmocka_unit_test_setup_teardown(test_commit_through_the_cache, setup, teardown),
                cmocka_unit_test_setup_teardown(test_inspect_reports_and_cleans_up, setup, teardown),
                cmocka_unit_test_setup_teardown(test_git_daemon_and_closed_port, setup, teardown),
                cmocka_unit_test_setup_teardown(test_secrets_stay_out, setup, teardown),
                cmocka_unit_test_setup_teardown(test_read_tree_walks_a_directory_at_a_commit, setup, teardown),
        };
        return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
