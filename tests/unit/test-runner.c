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
#include <string.h>

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
        assert_int_equal(sp.command_timeout_usec, 2 * 60 * USEC_PER_SEC);

        json_t *spec = json_object_get(obj, "spec");
        json_object_set_new(spec, "ephemeral", json_false());
        json_object_set_new(spec, "replicas", json_integer(7));
        json_object_set_new(spec, "registrationTimeout", json_string("3s"));
        json_object_set_new(spec, "commandTimeout", json_string("15s"));
        json_object_set_new(spec, "mode", json_string("container"));
        runner_spec_read(obj, &sp);
        assert_false(sp.ephemeral);
        assert_int_equal(sp.replicas, 7);
        assert_int_equal(sp.registration_timeout_usec, 3 * USEC_PER_SEC);
        assert_int_equal(sp.command_timeout_usec, 15 * USEC_PER_SEC);
        assert_string_equal(sp.mode, "container");
}

static void test_autoscale_spec(void **state) {
        (void) state;
        _cleanup_json_ json_t *obj = json_pack("{s:{s:s}, s:{s:s, s:{s:i, s:i, s:s}}}", "metadata", "name", "ci", "spec",
                                               "repo", "site", "autoscale", "max", 20, "idle", 2,
                                               "scaleDownDelay", "90s");
        RunnerSpec sp;

        runner_spec_read(obj, &sp);
        assert_true(sp.autoscale);
        assert_int_equal(sp.as_min, 0);
        assert_int_equal(sp.as_max, 20);
        assert_int_equal(sp.as_idle, 2);
        assert_int_equal(sp.scale_down_delay_usec, 90 * USEC_PER_SEC);
        assert_int_equal(sp.poll_interval_usec, 60 * USEC_PER_SEC);
        assert_null(runner_spec_problem(&sp));
        json_object_set_new(json_object_get(json_object_get(obj, "spec"), "autoscale"), "min", json_integer(30));
        runner_spec_read(obj, &sp);
        assert_non_null(strstr(runner_spec_problem(&sp), "min is larger than"));
}

static void test_labels_match(void **state) {
        (void) state;
        _cleanup_json_ json_t *mine = json_pack("[s,s]", "linux", "GPU");
        _cleanup_json_ json_t *ok = json_pack("[s,s,s,s]", "Self-Hosted", "Linux", "X64", "gpu");
        _cleanup_json_ json_t *k8s = json_pack("[s,s]", "self-hosted", "k8s");
        _cleanup_json_ json_t *none = json_array();

        assert_true(runner_labels_match(ok, mine));
        assert_false(runner_labels_match(k8s, mine));
        assert_false(runner_labels_match(none, mine));
}

static void test_route_first_by_name(void **state) {
        (void) state;
        _cleanup_json_ json_t *cands = json_pack(
                "[{s:s, s:s, s:[s]}, {s:s, s:s, s:[s,s], s:s}, {s:s, s:s, s:[s]}]", "name", "a", "repo",
                "acme/site", "labels", "cpu", "name", "b", "repo", "Acme/Site", "labels", "gpu", "big", "token",
                "hooks", "name", "c", "org", "acme", "labels", "gpu");
        _cleanup_json_ json_t *gpu = json_pack("[s,s]", "self-hosted", "gpu");

        assert_string_equal(runner_route(cands, "hooks", "acme/site", NULL, gpu), "b");
        assert_string_equal(runner_route(cands, NULL, "acme/site", NULL, gpu), "b");
        /* b wants its own webhook Token; c (the org) takes it. */
        assert_string_equal(runner_route(cands, "other", "acme/site", NULL, gpu), "c");
        assert_string_equal(runner_route(cands, "other", "ACME/tools", "acme", gpu), "c");
        assert_null(runner_route(cands, NULL, "other/site", NULL, gpu));
}

static void test_table_counts_each_job_and_action_once(void **state) {
        (void) state;
        _cleanup_json_ json_t *t = json_pack("{s:{}}", "jobs");
        _cleanup_json_ json_t *labels = json_pack("[s]", "self-hosted");

        assert_int_equal(runner_table_note(t, 7, "queued", labels, NULL, 1), 1);
        assert_int_equal(runner_table_note(t, 7, "queued", labels, NULL, 2), 0);
        assert_int_equal(runner_table_note(t, 7, "in_progress", labels, "ci-1-abcdef", 3), 1);
        /* Late or replayed: never back to queued. */
        assert_int_equal(runner_table_note(t, 7, "queued", labels, NULL, 4), 0);
        assert_int_equal(runner_table_note(t, 7, "completed", labels, NULL, 5), 1);
        assert_int_equal(runner_table_note(t, 7, "in_progress", labels, NULL, 6), 0);
        assert_string_equal(json_str_at(json_object_get(json_object_get(t, "jobs"), "7"), "status"), "completed");
        /* Bounded: done jobs make room; queued ones are never dropped. */
        for (json_int_t id = 100; id < 100 + 5000; id++) {
                assert_true(runner_table_note(t, id, "queued", labels, NULL, 10) >= 0);
                assert_true(runner_table_note(t, id, "completed", labels, NULL, 10) >= 0);
        }
        assert_true(json_object_size(json_object_get(t, "jobs")) <= 4096);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_backoff),
                cmocka_unit_test(test_observed_lines),
                cmocka_unit_test(test_spec_defaults),
                cmocka_unit_test(test_autoscale_spec),
                cmocka_unit_test(test_labels_match),
                cmocka_unit_test(test_route_first_by_name),
                cmocka_unit_test(test_table_counts_each_job_and_action_once),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
