/* Unit tests for pkg/run's output file: lines cut across chunks are joined,
 * stdout and stderr keep their own unfinished lines, CRLF loses the CR,
 * an over-long line is cut at RUN_LOG_LINE_MAX and goes on in the next,
 * what is left at close is written, every line is stamped with the time
 * (to the millisecond) and marked out, err or rpr; and the small helpers
 * (finished phases, the file's path); an owner's Runs, in number order,
 * from what the store keeps beside them. */
/* cmocka needs these three first. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "resource/resource.h"
#include "run/run.h"
#include "store/store.h"

/* 2026-11-23T10:00:00.000Z in usec */
#define T0 UINT64_C(1795428000000000)

typedef struct Fixture {
        char dir[64];
        char *path;
} Fixture;

static int setup(void **state) {
        Fixture *f = xcalloc(1, sizeof *f);

        snprintf(f->dir, sizeof f->dir, "/tmp/test-run-XXXXXX");
        assert_non_null(mkdtemp(f->dir));
        f->path = xasprintf("%s/ns/run-1.log", f->dir); /* the directory is made */
        *state = f;
        return 0;
}

static int teardown(void **state) {
        Fixture *f = *state;
        _cleanup_free_ char *cmd = xasprintf("rm -rf '%s'", f->dir);

        assert_int_equal(system(cmd), 0);
        free(f->path);
        free(f);
        return 0;
}

static char *contents(Fixture *f) {
        char *data = NULL;
        size_t len;

        assert_int_equal(read_file(f->path, 0, &data, &len), 0);
        return data;
}

/* The file without its time stamps: "MARK TEXT" lines. */
static char *unstamped(Fixture *f) {
        _cleanup_free_ char *text = contents(f);
        Buf b = BUF_INIT;

        for (char *line = text, *nl; line && *line; line = nl ? nl + 1 : NULL) {
                nl = strchr(line, '\n');
                assert_non_null(nl); /* every line is whole */
                assert_true(nl - line >= 25);
                assert_int_equal(line[24], ' ');
                buf_append(&b, line + 25, nl + 1 - (line + 25));
        }
        return buf_steal(&b);
}

static void test_lines_joined_across_chunks(void **state) {
        Fixture *f = *state;
        RunLog *l = NULL;

        assert_int_equal(run_log_open(f->path, &l), 0);
        run_log_write(l, RUN_LOG_OUT, "hel", 3, T0);
        run_log_write(l, RUN_LOG_ERR, "warn", 4, T0);
        run_log_write(l, RUN_LOG_OUT, "lo\nwor", 6, T0);
        run_log_write(l, RUN_LOG_ERR, "ing\r\n", 5, T0);
        run_log_write(l, RUN_LOG_OUT, "ld\n\nlast", 8, T0);
        run_log_close(l);
        _cleanup_free_ char *text = unstamped(f);
        assert_string_equal(text, "out hello\nerr warning\nout world\nout \nout last\n");
}

static void test_stamp_and_marks(void **state) {
        Fixture *f = *state;
        RunLog *l = NULL;

        assert_int_equal(run_log_open(f->path, &l), 0);
        run_log_write(l, RUN_LOG_OUT, "a\n", 2, T0 + 123456);
        run_log_write(l, RUN_LOG_RPR, "note", 4, T0 + 2 * USEC_PER_SEC);
        run_log_close(l);
        _cleanup_free_ char *text = contents(f);
        assert_string_equal(text, "2026-11-23T10:00:00.123Z out a\n2026-11-23T10:00:02.000Z rpr note\n");
}

static void test_notes_are_one_line_each(void **state) {
        Fixture *f = *state;
        RunLog *l = NULL;

        assert_int_equal(run_log_open(f->path, &l), 0);
        run_log_note(l, "run %s on %s", "r-1", "web-1");
        run_log_note(l, "two\nlines");
        run_log_close(l);
        _cleanup_free_ char *text = unstamped(f);
        assert_string_equal(text, "rpr run r-1 on web-1\nrpr two lines\n");
}

static void test_long_line_is_cut(void **state) {
        Fixture *f = *state;
        size_t n = RUN_LOG_LINE_MAX + 10;
        _cleanup_free_ char *big = xmalloc(n);
        RunLog *l = NULL;

        memset(big, 'x', n);
        assert_int_equal(run_log_open(f->path, &l), 0);
        run_log_write(l, RUN_LOG_OUT, big, n, T0);
        run_log_write(l, RUN_LOG_OUT, "\n", 1, T0);
        run_log_close(l);
        _cleanup_free_ char *text = unstamped(f);
        char *nl = strchr(text, '\n');
        assert_non_null(nl);
        assert_int_equal(nl - text, 4 + RUN_LOG_LINE_MAX);
        assert_string_equal(nl + 1, "out xxxxxxxxxx\n");
}

static void test_appends(void **state) {
        Fixture *f = *state;
        RunLog *l = NULL;

        for (int i = 0; i < 2; i++) {
                assert_int_equal(run_log_open(f->path, &l), 0);
                run_log_write(l, RUN_LOG_OUT, "again\n", 6, T0);
                run_log_close(l);
        }
        _cleanup_free_ char *text = unstamped(f);
        assert_string_equal(text, "out again\nout again\n");
}

static void test_helpers(void **state) {
        (void) state;
        const char *finished[] = {"Succeeded", "Failed", "Canceled", "Interrupted"};
        const char *going[] = {"Pending", "Queued", "Running", ""};

        for (size_t i = 0; i < ELEMENTSOF(finished); i++)
                assert_true(run_phase_finished(finished[i]));
        for (size_t i = 0; i < ELEMENTSOF(going); i++)
                assert_false(run_phase_finished(going[i]));
        assert_false(run_phase_finished(NULL));
        _cleanup_free_ char *p = run_log_path("/var/lib/rpr/runs", "default", "deploy-3");
        assert_string_equal(p, "/var/lib/rpr/runs/default/deploy-3.log");
}

static void test_open_fails_cleanly(void **state) {
        (void) state;
        RunLog *l = NULL;

        assert_int_equal(run_log_open("/proc/no/such/dir/x.log", &l), -ENOENT);
        assert_null(l);
        run_log_close(NULL);
}

/* ---- an owner's Runs -------------------------------------------------- */

static void add_run(Store *s, const char *name, const char *key, const char *owner, const char *label,
                    const char *phase) {
        _cleanup_json_ json_t *o = json_pack("{s:s, s:s, s:{s:s, s:s, s:{s:s}}, s:{s:s}}", "apiVersion",
                                             "rpr/v1", "kind", "Run", "metadata", "name", name, "namespace",
                                             "default", "labels", key, label, "spec", key, owner);
        StoreOp op = {.type = STORE_OP_APPLY, .object = o};

        assert_int_equal(store_commit(s, &op, 1, false, NULL), 0);
        store_ops_clear(&op, 1);
        if (!phase)
                return;
        json_object_set_new(o, "status",
                            json_pack("{s:s, s:s, s:s}", "phase", phase, "endTime", "2026-11-23T10:00:00Z",
                                      "notBefore", "2026-11-23T10:00:01.500Z"));
        op = (StoreOp){.type = STORE_OP_STATUS, .object = o};
        assert_int_equal(store_commit(s, &op, 1, false, NULL), 0);
        store_ops_clear(&op, 1);
}

static char *owned(Store *s, const char *key, const char *value) {
        _cleanup_json_ json_t *runs = run_list_owned(s, "default", key, value);
        const json_t *r;
        Buf b = BUF_INIT;
        size_t i;

        json_array_foreach(runs, i, r) buf_printf(
                &b, "%s%s:%s:%lld:%lld", b.len ? " " : "", json_str_at(r, "name"), json_str_at(r, "phase"),
                (long long) json_int_at(r, "endTime", 0), (long long) json_int_at(r, "notBefore", 0));
        return buf_steal(&b) ?: xstrdup("");
}

/* Runs by owner label, oldest first by number (site-10 after site-9),
 * with their phase and times; another kind of owner of the same name is
 * another owner; status writes and deletes show. */
static void test_runs_by_owner(void **state) {
        Fixture *f = *state;
        _cleanup_free_ char *url = xasprintf("sqlite:%s/state.db", f->dir);
        _cleanup_free_ char *a = NULL, *b = NULL, *c = NULL, *d = NULL;
        Store *s = NULL;

        assert_int_equal(store_open(url, &s), 0);
        add_run(s, "site-10", "binding", "site", "site", "Succeeded");
        add_run(s, "site-9", "binding", "site", "site", "Failed");
        add_run(s, "site-11", "binding", "site", "site", NULL);
        add_run(s, "api-1", "binding", "api", "api", "Succeeded");
        add_run(s, "site-3", "pipeline", "site", "site", "Running");

        a = owned(s, "binding", "site");
        assert_string_equal(a, "site-9:Failed:1795428000000000:1795428001500000 "
                               "site-10:Succeeded:1795428000000000:1795428001500000 site-11:Pending:0:0");
        b = owned(s, "pipeline", "site");
        assert_string_equal(b, "site-3:Running:1795428000000000:1795428001500000");

        StoreOp del = {.type = STORE_OP_DELETE, .kind = "Run", .ns = "default", .name = "site-9"};
        assert_int_equal(store_commit(s, &del, 1, false, NULL), 0);
        store_ops_clear(&del, 1);
        add_run(s, "site-11", "binding", "site", "site", "Canceled");
        c = owned(s, "binding", "site");
        assert_string_equal(c, "site-10:Succeeded:1795428000000000:1795428001500000 "
                               "site-11:Canceled:1795428000000000:1795428001500000");
        d = owned(s, "binding", "nobody");
        assert_string_equal(d, "");
        store_close(s);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_lines_joined_across_chunks, setup, teardown),
                cmocka_unit_test_setup_teardown(test_stamp_and_marks, setup, teardown),
                cmocka_unit_test_setup_teardown(test_notes_are_one_line_each, setup, teardown),
                cmocka_unit_test_setup_teardown(test_long_line_is_cut, setup, teardown),
                cmocka_unit_test_setup_teardown(test_appends, setup, teardown),
                cmocka_unit_test(test_helpers),
                cmocka_unit_test(test_open_fails_cleanly),
                cmocka_unit_test_setup_teardown(test_runs_by_owner, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
