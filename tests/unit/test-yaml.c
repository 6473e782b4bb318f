/* test-yaml: the manifest parser and emitter — values, positions, bounds
 * and every way a document can be refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "yaml/yaml.h"

typedef struct Parsed {
        YamlDoc **docs;
        size_t n;
        Diags d;
        int r;
} Parsed;

static Parsed parse(const char *text) {
        Parsed p = {.d = DIAGS_INIT};
        p.r = yaml_parse(text, strlen(text), "t.yaml", &p.docs, &p.n, &p.d);
        return p;
}

static void parsed_clear(Parsed *p) {
        yamldocs_free(p->docs, p->n);
        diags_free(&p->d);
}

/* The first diagnostic, formatted. */
static char *first_error(Parsed *p) {
        assert_int_equal(p->r, -EINVAL);
        assert_true(p->d.n >= 1);
        return diag_format(&p->d.items[0]);
}

static void test_scalars_core_schema(void **state) {
        (void) state;
        Parsed p = parse("a: 1\nb: -7\nc: 0x1f\nd: 1.5\ne: true\nf: ~\ng: \"1\"\nh: yes\ni: !!str 42\n"
                         "j: '' \nk: 0o17\nl: 1e3\nm: web-1\n");
        assert_int_equal(p.r, 0);
        assert_int_equal(p.n, 1);
        json_t *r = yamldoc_root(p.docs[0]);
        assert_int_equal(json_integer_value(json_object_get(r, "a")), 1);
        assert_int_equal(json_integer_value(json_object_get(r, "b")), -7);
        assert_int_equal(json_integer_value(json_object_get(r, "c")), 31);
        assert_true(json_real_value(json_object_get(r, "d")) == 1.5);
        assert_true(json_is_true(json_object_get(r, "e")));
        assert_true(json_is_null(json_object_get(r, "f")));
        assert_string_equal(json_string_value(json_object_get(r, "g")), "1");
        /* YAML 1.2: "yes" is a string, not a boolean. */
        assert_string_equal(json_string_value(json_object_get(r, "h")), "yes");
        assert_string_equal(json_string_value(json_object_get(r, "i")), "42");
        assert_string_equal(json_string_value(json_object_get(r, "j")), "");
        assert_int_equal(json_integer_value(json_object_get(r, "k")), 15);
        assert_true(json_real_value(json_object_get(r, "l")) == 1000.0);
        assert_string_equal(json_string_value(json_object_get(r, "m")), "web-1");
        parsed_clear(&p);
}

static void test_multi_document_skips_empty(void **state) {
        (void) state;
        Parsed p = parse("# only a comment\n---\nkind: A\n---\n---\n# nothing\n---\nkind: B\n...\n");
        assert_int_equal(p.r, 0);
        assert_int_equal(p.n, 2);
        assert_string_equal(json_string_value(json_object_get(yamldoc_root(p.docs[1]), "kind")), "B");
        assert_string_equal(yamldoc_file(p.docs[0]), "t.yaml");
        parsed_clear(&p);
}

static void test_positions(void **state) {
        (void) state;
        unsigned line, col;
        Parsed p = parse("kind: Server\n"
                         "spec:\n"
                         "  port: abc\n"
                         "  tags:\n"
                         "    - one\n"
                         "    - two\n"
                         "metadata:\n"
                         "  labels:\n"
                         "    app.kubernetes.io/name: x\n"
                         "---\n"
                         "kind: B\n");
        assert_int_equal(p.r, 0);
        yamldoc_pos(p.docs[0], "spec.port", false, &line, &col);
        assert_int_equal(line, 3);
        assert_int_equal(col, 9);
        yamldoc_pos(p.docs[0], "spec.port", true, &line, &col);
        assert_int_equal(line, 3);
        assert_int_equal(col, 3);
        yamldoc_pos(p.docs[0], "spec.tags[1]", false, &line, &col);
        assert_int_equal(line, 6);
        assert_int_equal(col, 7);
        yamldoc_pos(p.docs[0], "metadata.labels[\"app.kubernetes.io/name\"]", false, &line, &col);
        assert_int_equal(line, 9);
        assert_int_equal(col, 29);
        /* Unknown: the nearest known ancestor's key. */
        yamldoc_pos(p.docs[0], "spec.host", false, &line, &col);
        assert_int_equal(line, 2);
        assert_int_equal(col, 1);
        yamldoc_pos(p.docs[0], "spec.tags[7].x", false, &line, &col);
        assert_int_equal(line, 4);
        yamldoc_pos(p.docs[1], "kind", false, &line, &col);
        assert_int_equal(line, 11);
        assert_int_equal(col, 7);
        yamldoc_pos(p.docs[1], "nothing.here", false, &line, &col);
        assert_int_equal(line, 11);
        assert_int_equal(col, 1);
        parsed_clear(&p);
}

static void test_syntax_error_has_position(void **state) {
        (void) state;
        Parsed p = parse("a: 1\nb: [1, 2\nc: 3\n");
        _cleanup_free_ char *msg = first_error(&p);
        assert_non_null(strstr(msg, "t.yaml:"));
        assert_non_null(strstr(msg, "invalid YAML"));
        assert_int_equal(p.n, 0);
        assert_null(p.docs);
        parsed_clear(&p);

        p = parse("a:\n\tb: 1\n");
        _cleanup_free_ char *tab = first_error(&p);
        assert_non_null(strstr(tab, "t.yaml:2:"));
        parsed_clear(&p);
}

static void test_duplicate_key(void **state) {
        (void) state;
        Parsed p = parse("spec:\n  port: 1\n  port: 2\n");
        _cleanup_free_ char *msg = first_error(&p);
        assert_string_equal(msg, "t.yaml:3:3: duplicate key \"port\"");
        parsed_clear(&p);
}

/* "\0" (a NUL) in a quoted value or key would end the C strings it
 * becomes (names, commands, paths): refused with its place, never cut. */
static void test_a_nul_in_a_string_is_refused(void **state) {
        (void) state;
        Parsed p = parse("spec:\n  command: \"echo a\\0rm -rf /\"\n");
        _cleanup_free_ char *msg = first_error(&p);
        assert_string_equal(msg, "t.yaml:2:12: a string holds a NUL character (\\0), which is not allowed");
        assert_int_equal(p.n, 0);
        parsed_clear(&p);

        p = parse("\"a\\0b\": 1\n");
        _cleanup_free_ char *key = first_error(&p);
        assert_non_null(strstr(key, "NUL character"));
        parsed_clear(&p);
}

static void test_aliases_and_merge(void **state) {
        (void) state;
        Parsed p = parse("base: &b {user: deploy, port: 22}\n"
                         "one:\n  <<: *b\n  port: 2222\n"
                         "list: &l [1, 2]\n"
                         "copy: *l\n");
        assert_int_equal(p.r, 0);
        json_t *r = yamldoc_root(p.docs[0]);
        json_t *one = json_object_get(r, "one");
        assert_string_equal(json_string_value(json_object_get(one, "user")), "deploy");
        assert_int_equal(json_integer_value(json_object_get(one, "port")), 2222);
        assert_null(json_object_get(one, "<<"));
        assert_int_equal(json_array_size(json_object_get(r, "copy")), 2);
        parsed_clear(&p);

        p = parse("a: *nope\n");
        _cleanup_free_ char *msg = first_error(&p);
        assert_non_null(strstr(msg, "unknown anchor *nope"));
        parsed_clear(&p);
}

static void test_billion_laughs_refused(void **state) {
        (void) state;
        Buf b = BUF_INIT;
        buf_puts(&b, "a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for (char c = 'b'; c <= 'j'; c++)
                buf_printf(&b, "%c: &%c [*%c, *%c, *%c, *%c, *%c, *%c, *%c, *%c, *%c, *%c]\n", c, c, c - 1,
                           c - 1, c - 1, c - 1, c - 1, c - 1, c - 1, c - 1, c - 1, c - 1);
        _cleanup_free_ char *text = buf_steal(&b);
        Parsed p = parse(text);
        _cleanup_free_ char *msg = first_error(&p);
        assert_non_null(strstr(msg, "aliases expand to more than 10000 nodes"));
        parsed_clear(&p);
}

static void test_depth_bounded(void **state) {
        (void) state;
        Buf b = BUF_INIT;
        for (int i = 0; i < 100; i++)
                buf_puts(&b, "[");
        for (int i = 0; i < 100; i++)
                buf_puts(&b, "]");
        _cleanup_free_ char *text = buf_steal(&b);
        Parsed p = parse(text);
        _cleanup_free_ char *msg = first_error(&p);
        assert_non_null(strstr(msg, "nesting deeper than 64 levels"));
        parsed_clear(&p);
}

static void test_bad_keys_and_tags(void **state) {
        (void) state;
        Parsed p = parse("? [a, b]\n: 1\n");
        _cleanup_free_ char *msg = first_error(&p);
        assert_non_null(strstr(msg, "mapping key must be a plain value"));
        parsed_clear(&p);

        p = parse("a: !custom 1\n");
        _cleanup_free_ char *tag = first_error(&p);
        assert_non_null(strstr(tag, "t.yaml:1:4: unsupported tag !custom"));
        parsed_clear(&p);

        p = parse("a: 99999999999999999999\n");
        _cleanup_free_ char *big = first_error(&p);
        assert_non_null(strstr(big, "integer out of range"));
        parsed_clear(&p);
}

static void test_emit_round_trip(void **state) {
        (void) state;
        _cleanup_json_ json_t *v = json_pack(
                "{s:s, s:{s:s, s:s, s:s, s:s, s:i, s:f, s:b, s:n, s:[], s:{}, s:[s,i]}}", "kind", "Server",
                "spec", "a", "true", "b", "123", "c", "", "script", "set -e\necho hi\n", "port", 22, "ratio",
                0.5, "on", 1, "none", "empty", "obj", "list", "x", 1);
        _cleanup_free_ char *text = yaml_emit(v);
        assert_non_null(strstr(text, "kind: Server\n"));
        assert_non_null(strstr(text, "  script: |\n    set -e\n    echo hi\n"));
        Parsed p = parse(text);
        assert_int_equal(p.r, 0);
        assert_true(json_equal(yamldoc_root(p.docs[0]), v));
        parsed_clear(&p);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_scalars_core_schema),
                cmocka_unit_test(test_multi_document_skips_empty),
                cmocka_unit_test(test_positions),
                cmocka_unit_test(test_syntax_error_has_position),
                cmocka_unit_test(test_duplicate_key),
                cmocka_unit_test(test_a_nul_in_a_string_is_refused),
                cmocka_unit_test(test_aliases_and_merge),
                cmocka_unit_test(test_billion_laughs_refused),
                cmocka_unit_test(test_depth_bounded),
                cmocka_unit_test(test_bad_keys_and_tags),
                cmocka_unit_test(test_emit_round_trip),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
