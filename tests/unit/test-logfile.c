/* Unit tests for pkg/logfile: lines land in the file of their event's year,
 * tail reads across years (newest last), an append after the file was
 * renamed away opens a new one, threads appending at once never interleave
 * within a line, and newlines inside fields are flattened. Every test works
 * in a fresh temporary directory. */
/* cmocka needs these three first. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "logfile/logfile.h"

/* 2025-06-01T12:00:00Z and 2026-01-02T03:04:05Z */
#define T2025 (UINT64_C(1748779200) * USEC_PER_SEC)
#define T2026 (UINT64_C(1767323045) * USEC_PER_SEC)

typedef struct Fixture {
        char dir[64];
        char *logs;
        LogFile *log;
} Fixture;

static int setup(void **state) {
        Fixture *f = xcalloc(1, sizeof *f);

        snprintf(f->dir, sizeof f->dir, "/tmp/test-logfile-XXXXXX");
        assert_non_null(mkdtemp(f->dir));
        f->logs = xasprintf("%s/logs", f->dir); /* made by logfile_open */
        assert_int_equal(logfile_open(f->logs, "connectivity", &f->log), 0);
        *state = f;
        return 0;
}

static int teardown(void **state) {
        Fixture *f = *state;
        _cleanup_free_ char *cmd = xasprintf("rm -rf '%s'", f->dir);

        logfile_free(f->log);
        assert_int_equal(system(cmd), 0);
        free(f->logs);
        free(f);
        return 0;
}

static char *read_log(Fixture *f, const char *file) {
        _cleanup_free_ char *path = xasprintf("%s/%s", f->logs, file);
        char *data = NULL;
        size_t len;

        if (read_file(path, 64 * 1024 * 1024, &data, &len) < 0)
                return NULL;
        return data;
}

static size_t count_lines(const char *s) {
        size_t n = 0;
        for (; *s; s++)
                n += *s == '\n';
        return n;
}

static void test_lines_land_in_file_of_event_year(void **state) {
        Fixture *f = *state;

        assert_int_equal(logfile_append(f->log, T2025, "default/web-1 ok Reachable %.3fs", 0.213), 0);
        assert_int_equal(logfile_append(f->log, T2026, "default/web-1 fail AuthFailed 0.105s %s", "denied"), 0);
        assert_int_equal(logfile_append(f->log, T2025, "default/web-2 ok Reachable 0.001s"), 0);

        _cleanup_free_ char *y25 = read_log(f, "connectivity-2025.log");
        _cleanup_free_ char *y26 = read_log(f, "connectivity-2026.log");
        assert_non_null(y25);
        assert_non_null(y26);
        assert_string_equal(y25, "2025-06-01T12:00:00Z default/web-1 ok Reachable 0.213s\n"
                                 "2025-06-01T12:00:00Z default/web-2 ok Reachable 0.001s\n");
        assert_string_equal(y26, "2026-01-02T03:04:05Z default/web-1 fail AuthFailed 0.105s denied\n");
}

static void test_tail_spans_years_newest_last(void **state) {
        Fixture *f = *state;
        _cleanup_free_ char *none = NULL, *two = NULL, *all = NULL, *many = NULL;

        assert_int_equal(logfile_tail(f->log, 10, &none), 0);
        assert_string_equal(none, "");

        for (int i = 0; i < 3; i++)
                assert_int_equal(logfile_append(f->log, T2025 + (uint64_t) i * USEC_PER_SEC, "old %d", i), 0);
        for (int i = 0; i < 2; i++)
                assert_int_equal(logfile_append(f->log, T2026 + (uint64_t) i * USEC_PER_SEC, "new %d", i), 0);

        assert_int_equal(logfile_tail(f->log, 2, &two), 0);
        assert_string_equal(two, "2026-01-02T03:04:05Z new 0\n2026-01-02T03:04:06Z new 1\n");
        assert_int_equal(logfile_tail(f->log, 3, &all), 0);
        assert_string_equal(all, "2025-06-01T12:00:02Z old 2\n2026-01-02T03:04:05Z new 0\n"
                                 "2026-01-02T03:04:06Z new 1\n");
        assert_int_equal(logfile_tail(f->log, 100, &many), 0);
        assert_int_equal(count_lines(many), 5);
        assert_true(startswith(many, "2025-06-01T12:00:00Z old 0\n"));
}

static void test_tail_of_a_large_file_reads_back_in_blocks(void **state) {
        Fixture *f = *state;
        _cleanup_free_ char *t = NULL;

        for (int i = 0; i < 5000; i++)
                assert_int_equal(logfile_append(f->log, T2026, "line %05d %s", i,
                                                 "padding padding padding padding"), 0);
        assert_int_equal(logfile_tail(f->log, 3, &t), 0);
        assert_int_equal(count_lines(t), 3);
        assert_non_null(strstr(t, "line 04997 "));
        assert_non_null(strstr(t, "line 04999 "));
        assert_null(strstr(t, "line 04996 "));

        /* Across several blocks. */
        _cleanup_free_ char *big = NULL;
        assert_int_equal(logfile_tail(f->log, 2000, &big), 0);
        assert_int_equal(count_lines(big), 2000);
        assert_true(startswith(big, "2026-01-02T03:04:05Z line 03000 "));
}

static void test_append_after_rename_opens_a_new_file(void **state) {
        Fixture *f = *state;
        _cleanup_free_ char *from = xasprintf("%s/connectivity-2026.log", f->logs);
        _cleanup_free_ char *to = xasprintf("%s/rotated.1", f->logs);

        assert_int_equal(logfile_append(f->log, T2026, "before"), 0);
        assert_int_equal(rename(from, to), 0);
        assert_int_equal(logfile_append(f->log, T2026, "after"), 0);

        _cleanup_free_ char *old = read_log(f, "rotated.1");
        _cleanup_free_ char *cur = read_log(f, "connectivity-2026.log");
        assert_string_equal(old, "2026-01-02T03:04:05Z before\n");
        assert_string_equal(cur, "2026-01-02T03:04:05Z after\n");

        /* And explicitly, as SIGHUP does. */
        logfile_reopen(f->log);
        assert_int_equal(logfile_append(f->log, T2026, "again"), 0);
        _cleanup_free_ char *cur2 = read_log(f, "connectivity-2026.log");
        assert_string_equal(cur2, "2026-01-02T03:04:05Z after\n2026-01-02T03:04:05Z again\n");
}

#define THREADS 8
#define LINES_PER_THREAD 500

typedef struct Writer {
        LogFile *log;
        int id;
} Writer;

static void *writer(void *arg) {
        Writer *w = arg;
        char payload[300];

        memset(payload, 'a' + w->id, sizeof payload - 1);
        payload[sizeof payload - 1] = '\0';
        for (int i = 0; i < LINES_PER_THREAD; i++)
                if (logfile_append(w->log, T2026, "w%d %s", w->id, payload) < 0)
                        return (void *) 1;
        return NULL;
}

static void test_concurrent_appends_never_interleave(void **state) {
        Fixture *f = *state;
        pthread_t t[THREADS];
        Writer w[THREADS];

        for (int i = 0; i < THREADS; i++) {
                w[i] = (Writer){f->log, i};
                assert_int_equal(pthread_create(&t[i], NULL, writer, &w[i]), 0);
        }
        for (int i = 0; i < THREADS; i++) {
                void *r;
                assert_int_equal(pthread_join(t[i], &r), 0);
                assert_null(r);
        }

        _cleanup_free_ char *all = read_log(f, "connectivity-2026.log");
        assert_int_equal(count_lines(all), THREADS * LINES_PER_THREAD);
        char *save = NULL;
        for (char *line = strtok_r(all, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                int id;
                assert_int_equal(sscanf(line, "2026-01-02T03:04:05Z w%d ", &id), 1);
                const char *p = strchr(line + 21, ' ') + 1;
                assert_int_equal(strlen(p), 299);
                for (; *p; p++)
                        assert_int_equal(*p, 'a' + id);
        }
}

static void test_newlines_in_fields_are_replaced(void **state) {
        Fixture *f = *state;

        assert_int_equal(logfile_append(f->log, T2026, "default/web-1 fail %s %s", "AuthFailed",
                                        "line one\nline two\r\nthree"), 0);
        _cleanup_free_ char *cur = read_log(f, "connectivity-2026.log");
        assert_string_equal(cur, "2026-01-02T03:04:05Z default/web-1 fail AuthFailed line one line two  three\n");
        assert_int_equal(count_lines(cur), 1);
}

static void test_open_rejects_bad_names(void **state) {
        Fixture *f = *state;
        LogFile *l = NULL;

        assert_int_equal(logfile_open(f->logs, "a/b", &l), -EINVAL);
        assert_int_equal(logfile_open(f->logs, "", &l), -EINVAL);
        assert_null(l);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_lines_land_in_file_of_event_year, setup, teardown),
                cmocka_unit_test_setup_teardown(test_tail_spans_years_newest_last, setup, teardown),
                cmocka_unit_test_setup_teardown(test_tail_of_a_large_file_reads_back_in_blocks, setup, teardown),
                cmocka_unit_test_setup_teardown(test_append_after_rename_opens_a_new_file, setup, teardown),
                cmocka_unit_test_setup_teardown(test_concurrent_appends_never_interleave, setup, teardown),
                cmocka_unit_test_setup_teardown(test_newlines_in_fields_are_replaced, setup, teardown),
                cmocka_unit_test_setup_teardown(test_open_rejects_bad_names, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
