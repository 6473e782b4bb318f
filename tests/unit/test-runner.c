/* Unit tests for pkg/runner's pure parts: the backoff (5 s doubling to
 * 80 s), what an observing script's lines become, and a Runner's spec with
 * its defaults. The controller itself runs against real sshd hosts and the
 * fake GitHub in tests/integration/test_runners.py. */
/* cmocka needs these three first. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <math.h>

#include "runner/runner-private.h"

static void test_backoff(void **state) {
        static const uint64_t want[] = {5, 10, 20, 40, 80, 80, 80};
        (void) state;

        for (size_t i = 0; i < ELEMENTSOF(want); i++)
                assert_int_equal(runner_backoff((json_int_t) i + 1), want[i] * USEC_PER_SEC);
        assert_int_equal(runner_backoff(0), 5 * USEC_PER_SEC);
}

static void test_observed_lines(void **state) {
        (void) state;
        _cleanup_json_ json_t *seen = runner_observed_parse("motd from a login script\n"
                                                            "rpr-runner ci-1-abcdef running 4242 250 1000\n"
                                                            "rpr-runner ci-2-ghijkl exited 7\n"
                                                            "rpr-runner ci-3-mnopqr dead 5 6 7\n"
                                                            "rpr-runner\n"
                                                            "rpr-runner ci-4-stuvwx running");

        assert_int_equal(json_object_size(seen), 4);
        const json_t *a = json_object_get(seen, "ci-1-abcdef");
        assert_string_equal(json_str_at(a, "state"), "running");
        assert_int_equal(json_int_at(a, "pid", 0), 4242);
        assert_true(fabs(json_real_value(json_object_get(a, "cpuSeconds")) - 2.5) < 1e-9);
        assert_int_equal(json_int_at(a, "memBytes", 0), 1000 * 4096);
        const json_t *b = json_object_get(seen, "ci-2-ghijkl");
        assert_string_equal(json_str_at(b, "state"), "exited");
        assert_int_equal(json_int_at(b, "exitCode", -1), 7);
        assert_string_equal(json_str_at(json_object_get(seen, "ci-3-mnopqr"), "state"), "dead");
        /* A line cut short keeps what it says, no more. */
        const json_t *d = json_object_get(seen, "ci-4-stuvwx");
        assert_string_equal(json_str_at(d, "state"), "running");
        assert_null(json_object_get(d, "pid"));

        /* The /proc pass: each process of a runner's group added to it. */
        _cleanup_json_ json_t *procs = runner_observed_parse("rpr-runner ci-5-aaaaaa running 77\n"
                                                             "rpr-proc 77 100 10\n"
                                                             "rpr-proc 78 999 999\n"
                                                             "rpr-proc 77 50 5\n");
        const json_t *e = json_object_get(procs, "ci-5-aaaaaa");
        assert_int_equal(json_int_at(e, "pid", 0), 77);
        assert_true(fabs(json_real_value(json_object_get(e, "cpuSeconds")) - 1.5) < 1e-9);
        assert_int_equal(json_int_at(e, "memBytes", 0), 15 * 4096);

        _cleanup_json_ json_t *none = runner_observed_parse(NULL);
        assert_int_equal(json_object_size(none), 0);
}

static void test_spec_defaults(void **state) {
        (void) state;
        _cleanup_json_ json_t *obj =
                json_pack("{s:{s:s, s:s}, s:{s:s, s:s}}", "metadata", "name", "ci", "namespace", "default",
                          "spec", "repo", "site", "tokenRef", "gh");
        RunnerSpec sp;

        runner_spec_read(obj, &sp);
        assert_string_equal(sp.name, "ci");
        assert_string_equal(sp.repo, "site");
        assert_null(sp.org);
        assert_int_equal(sp.replicas, 1);
        assert_true(sp.ephemeral);
        assert_string_equal(sp.mode, "native");
        assert_string_equal(sp.version, "latest");
        assert_string_equal(sp.group, "Default");
        assert_string_equal(sp.install_dir, "/opt/actions-runner");
        assert_int_equal(sp.registration_timeout_usec, 5 * 60 * USEC_PER_SEC);
        assert_int_equal(sp.sync_interval_usec, 30 * USEC_PER_SEC);

        json_t *spec = json_object_get(obj, "spec");
        json_object_set_new(spec, "ephemeral", json_false());
        json_object_set_new(spec, "replicas", json_integer(7));
        json_object_set_new(spec, "registrationTimeout", json_string("3s"));
        json_object_set_new(spec, "mode", json_string("container"));
        runner_spec_read(obj, &sp);
        assert_false(sp.ephemeral);
        assert_int_equal(sp.replicas, 7);
        assert_int_equal(sp.registration_timeout_usec, 3 * USEC_PER_SEC);
        assert_string_equal(sp.mode, "container");
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_backoff),
                cmocka_unit_test(test_observed_lines),
                cmocka_unit_test(test_spec_defaults),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
