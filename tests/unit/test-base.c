/* Unit tests for pkg/base: durations, times, buffers, diagnostics, tokens,
 * the work queue. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/base.h"

static void test_duration_parse_go_forms(void **state) {
        (void) state;
        uint64_t u;

        assert_int_equal(duration_parse("90s", &u), 0);
        assert_int_equal(u, 90 * USEC_PER_SEC);
        assert_int_equal(duration_parse("1h30m", &u), 0);
        assert_int_equal(u, 5400 * USEC_PER_SEC);
        assert_int_equal(duration_parse("500ms", &u), 0);
        assert_int_equal(u, 500 * USEC_PER_MSEC);
        assert_int_equal(duration_parse("30d", &u), 0);
        assert_int_equal(u, 30 * 86400 * USEC_PER_SEC);
        assert_int_equal(duration_parse("0", &u), 0);
        assert_int_equal(u, 0);
}

static void test_duration_parse_rejects_junk(void **state) {
        (void) state;
        uint64_t u = 7;

        assert_int_equal(duration_parse("", &u), -EINVAL);
        assert_int_equal(duration_parse("5 minutes", &u), -EINVAL);
        assert_int_equal(duration_parse("5", &u), -EINVAL);
        assert_int_equal(duration_parse("m5", &u), -EINVAL);
        assert_int_equal(duration_parse("-5s", &u), -EINVAL);
        assert_int_equal(duration_parse("99999999999999999999h", &u), -ERANGE);
        assert_int_equal(u, 7);
}

static void test_duration_format_shortest(void **state) {
        (void) state;
        char buf[32];

        assert_string_equal(duration_format(5400 * USEC_PER_SEC, buf, sizeof buf), "1h30m");
        assert_string_equal(duration_format(45 * USEC_PER_SEC, buf, sizeof buf), "45s");
        assert_string_equal(duration_format(0, buf, sizeof buf), "0s");
        /* Nothing below a millisecond is dropped. */
        assert_string_equal(duration_format(1500, buf, sizeof buf), "1ms500us");
        assert_string_equal(duration_format(USEC_PER_SEC + 7, buf, sizeof buf), "1s7us");
        assert_string_equal(duration_format(UINT64_MAX, buf, sizeof buf), "5124095576h1m49s551ms615us");
}

static void test_duration_format_parse_round_trip(void **state) {
        (void) state;
        static const uint64_t cases[] = {1, 999, 1001, 1500, 61 * USEC_PER_SEC + 1, 3600 * USEC_PER_SEC + 999999,
                                         UINT64_MAX};
        char buf[32];
        uint64_t u;

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                assert_int_equal(duration_parse(duration_format(cases[i], buf, sizeof buf), &u), 0);
                assert_int_equal(u, cases[i]);
        }
}

static void test_time_rfc3339_round_trip(void **state) {
        (void) state;
        char buf[RFC3339_MAX];
        uint64_t u;

        assert_int_equal(time_parse_rfc3339("2026-11-22T10:00:00Z", &u), 0);
        assert_string_equal(time_format_rfc3339(u, buf), "2026-11-22T10:00:00Z");
        assert_int_equal(time_parse_rfc3339("2026-11-22T12:00:00.5+02:00", &u), 0);
        assert_string_equal(time_format_rfc3339(u, buf), "2026-11-22T10:00:00Z");
        assert_int_equal(time_parse_rfc3339("2027-06-30", &u), 0);
        assert_string_equal(time_format_rfc3339(u, buf), "2027-06-30T00:00:00Z");
        assert_int_equal(time_parse_rfc3339("2024-02-29", &u), 0);
}

static void test_time_rfc3339_rejects_invalid(void **state) {
        (void) state;
        uint64_t u;

        assert_int_equal(time_parse_rfc3339("2027-02-30", &u), -EINVAL);
        assert_int_equal(time_parse_rfc3339("2023-02-29", &u), -EINVAL);
        assert_int_equal(time_parse_rfc3339("2027-06-30T25:00:00Z", &u), -EINVAL);
        assert_int_equal(time_parse_rfc3339("2027-06-30T10:00:00", &u), -EINVAL);
        assert_int_equal(time_parse_rfc3339("next week", &u), -EINVAL);
}

static void test_buf_respects_max(void **state) {
        (void) state;
        Buf b = BUF_INIT;
        b.max = 8;

        assert_int_equal(buf_puts(&b, "12345"), 0);
        assert_int_equal(buf_printf(&b, "%d", 6789), -EFBIG);
        assert_int_equal(b.len, 5);
        assert_string_equal(b.data, "12345");
        assert_int_equal(buf_puts(&b, "678"), 0);
        _cleanup_free_ char *s = buf_steal(&b);
        assert_string_equal(s, "12345678");
        assert_null(b.data);
}

static void test_diag_format_full_and_partial(void **state) {
        (void) state;
        Diags d = DIAGS_INIT;

        assert_int_equal(diags_add(&d, 0, "Server/web-1", "spec.port", "must be an integer 1..65535 (got \"%s\")", "abc"),
                         -EINVAL);
        d.items[0].file = xstrdup("a.yaml");
        d.items[0].line = 7;
        d.items[0].col = 9;
        diags_add(&d, 1, NULL, NULL, "plain");

        _cleanup_free_ char *one = diag_format(&d.items[0]);
        _cleanup_free_ char *two = diag_format(&d.items[1]);
        assert_string_equal(one, "a.yaml:7:9: Server/web-1: spec.port: must be an integer 1..65535 (got \"abc\")");
        assert_string_equal(two, "plain");
        diags_free(&d);
}

static void test_random_token_alphabet_and_uniqueness(void **state) {
        (void) state;
        char a[33], b[33];

        assert_int_equal(random_token(a, 32), 0);
        assert_int_equal(random_token(b, 32), 0);
        assert_int_equal(strlen(a), 32);
        assert_true(strspn(a, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789") == 32);
        assert_string_not_equal(a, b);
}

static void test_sha256_and_consttime(void **state) {
        (void) state;
        char h[65];

        sha256_hex("abc", 3, h);
        assert_string_equal(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_true(memeq_consttime("abcd", "abcd", 4));
        assert_false(memeq_consttime("abcd", "abce", 4));
}

static void test_uuid_v4_shape(void **state) {
        (void) state;
        char u[37];

        assert_int_equal(uuid_v4(u), 0);
        assert_int_equal(strlen(u), 36);
        assert_int_equal(u[14], '4');
        assert_true(strchr("89ab", u[19]) != NULL);
}

static void test_write_file_atomic_mode(void **state) {
        (void) state;
        char dir[] = "/tmp/rpr-test-base-XXXXXX";
        assert_non_null(mkdtemp(dir));
        _cleanup_free_ char *path = xasprintf("%s/x/y/secret", dir);
        _cleanup_free_ char *parent = xasprintf("%s/x/y", dir);

        assert_int_equal(mkdir_p(parent, 0700), 0);
        assert_int_equal(write_file_atomic(path, "hello", 5, 0600), 0);

        _cleanup_free_ char *data = NULL;
        size_t len;
        assert_int_equal(read_file(path, 0, &data, &len), 0);
        assert_int_equal(len, 5);
        assert_string_equal(data, "hello");
        struct stat st;
        assert_int_equal(stat(path, &st), 0);
        assert_int_equal(st.st_mode & 0777, 0600);

        _cleanup_free_ char *small = NULL;
        assert_int_equal(read_file(path, 3, &small, &len), -EFBIG);
        assert_int_equal(read_file("/nonexistent/rpr", 0, &small, &len), -ENOENT);

        _cleanup_free_ char *cmd = xasprintf("rm -rf %s", dir);
        assert_int_equal(system(cmd), 0);
}

static void count_job(void *userdata) {
        __atomic_add_fetch((int *) userdata, 1, __ATOMIC_SEQ_CST);
}

static void test_workq_runs_every_job(void **state) {
        (void) state;
        WorkQueue *q = NULL;
        int counter = 0;

        assert_int_equal(workq_new(3, &q), 0);
        for (int i = 0; i < 1000; i++)
                assert_int_equal(workq_submit(q, count_job, &counter), 0);
        workq_free(q);
        assert_int_equal(counter, 1000);
}

static void test_utf8_cut_and_snprintf_keep_characters_whole(void **state) {
        char buf[8];
        (void) state;

        /* "aaaaé€": é is 2 bytes, € 3; 7 bytes fit, € would be split. */
        assert_int_equal(utf8_cut("aaaa\xc3\xa9\xe2\x82\xac", 9, 7), 6);
        assert_int_equal(utf8_cut("aaaa\xc3\xa9", 6, 5), 4);
        assert_int_equal(utf8_cut("abc", 3, 10), 3);
        snprintf_utf8(buf, sizeof buf, "%s", "aaaa\xc3\xa9\xe2\x82\xac");
        assert_string_equal(buf, "aaaa\xc3\xa9");
        snprintf_utf8(buf, sizeof buf, "%s", "aaaaaa\xc3\xa9");
        assert_string_equal(buf, "aaaaaa");
        _cleanup_json_ json_t *j = json_string(buf);
        assert_non_null(j);
}

static void test_text_flatten_makes_one_safe_line(void **state) {
        char s[] = "line one\r\nline two\x1b[31mred\x07\x7f \xc2\x9b"
                   "2J ok \xc3\xa9 \xff end";
        (void) state;

        text_flatten(s);
        assert_string_equal(s, "line one  line two [31mred    2J ok \xc3\xa9 ? end");
        _cleanup_free_ char *d = text_flat_dup("a\nb\xe2\x82\xac", 4);
        assert_string_equal(d, "a b");
        _cleanup_free_ char *n = text_flat_dup(NULL, 10);
        assert_string_equal(n, "");
}

static void count_entry(const char *key, void *value, void *userdata) {
        size_t *n = userdata;

        assert_int_equal(strtoul(key + 1, NULL, 10), (uintptr_t) value);
        (*n)++;
}

static void test_hashmap(void **state) {
        Hashmap *m = hashmap_new();
        char key[32];
        size_t n = 0;
        (void) state;

        assert_null(hashmap_get(m, "absent"));
        assert_null(hashmap_remove(m, "absent"));
        for (uintptr_t i = 1; i <= 100000; i++) {
                snprintf(key, sizeof key, "k%lu", (unsigned long) i);
                hashmap_put(m, key, (void *) i);
        }
        assert_int_equal(hashmap_size(m), 100000);
        assert_ptr_equal(hashmap_get(m, "k77777"), (void *) 77777);
        hashmap_put(m, "k5", (void *) 5); /* the same again: replaced, not added */
        assert_int_equal(hashmap_size(m), 100000);
        hashmap_foreach(m, count_entry, &n);
        assert_int_equal(n, 100000);
        for (uintptr_t i = 1; i <= 100000; i += 2) {
                snprintf(key, sizeof key, "k%lu", (unsigned long) i);
                assert_ptr_equal(hashmap_remove(m, key), (void *) i);
        }
        assert_int_equal(hashmap_size(m), 50000);
        assert_null(hashmap_get(m, "k1"));
        assert_ptr_equal(hashmap_get(m, "k2"), (void *) 2);
        hashmap_free(m);
        hashmap_free(NULL);
}

static ino_t inode_of(const char *path) {
        struct stat st;
        return stat(path, &st) == 0 ? st.st_ino : 0;
}

static void test_spares_reuse_files_and_never_replace_one(void **state) {
        (void) state;
        char dir[] = "/tmp/rpr-test-spares-XXXXXX";
        assert_non_null(mkdtemp(dir));
        _cleanup_free_ char *a = xasprintf("%s/a", dir), *b = xasprintf("%s/b", dir), *c = xasprintf("%s/c", dir);
        Spares *s = spares_of(dir, 1);

        assert_ptr_equal(spares_of(dir, 1), s); /* one per directory */
        assert_false(spares_take(s, a));        /* none yet */
        assert_int_equal(write_file_atomic(a, "", 0, 0600), 0);
        assert_int_equal(write_file_atomic(b, "", 0, 0600), 0);
        ino_t kept = inode_of(a);
        assert_true(spares_give(s, a));
        assert_int_equal(access(a, F_OK), -1);
        assert_false(spares_give(s, b)); /* its one slot is full: the caller removes b */

        /* Never over a file that is there: the spare stays. */
        assert_int_equal(write_file_atomic(c, "mine", 4, 0600), 0);
        assert_false(spares_take(s, c));
        _cleanup_free_ char *data = NULL;
        size_t len;
        assert_int_equal(read_file(c, 0, &data, &len), 0);
        assert_string_equal(data, "mine");

        /* Taken: the same file under the new name, no new inode. */
        assert_int_equal(unlink(c), 0);
        assert_true(spares_take(s, c));
        assert_int_equal(inode_of(c), kept);
        assert_false(spares_take(s, a));
        assert_false(spares_take(NULL, a));

        _cleanup_free_ char *cmd = xasprintf("rm -rf %s", dir);
        assert_int_equal(system(cmd), 0);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_hashmap),
                cmocka_unit_test(test_duration_parse_go_forms),
                cmocka_unit_test(test_duration_parse_rejects_junk),
                cmocka_unit_test(test_duration_format_parse_round_trip),
                cmocka_unit_test(test_duration_format_shortest),
                cmocka_unit_test(test_time_rfc3339_round_trip),
                cmocka_unit_test(test_time_rfc3339_rejects_invalid),
                cmocka_unit_test(test_buf_respects_max),
                cmocka_unit_test(test_diag_format_full_and_partial),
                cmocka_unit_test(test_random_token_alphabet_and_uniqueness),
                cmocka_unit_test(test_sha256_and_consttime),
                cmocka_unit_test(test_uuid_v4_shape),
                cmocka_unit_test(test_write_file_atomic_mode),
                cmocka_unit_test(test_spares_reuse_files_and_never_replace_one),
                cmocka_unit_test(test_workq_runs_every_job),
                cmocka_unit_test(test_utf8_cut_and_snprintf_keep_characters_whole),
                cmocka_unit_test(test_text_flatten_makes_one_safe_line),
        };
        return cmocka_run_group_tests_name("base", tests, NULL, NULL);
}
