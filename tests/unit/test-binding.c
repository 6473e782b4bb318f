/* Unit tests for pkg/binding's decisions: binding_plan() over objects in a
 * real store (no controller loop), and its arithmetic. Cases: a missing
 * Repo is a MissingReference and makes nothing; a new Binding deploys the
 * head once (deployOnCreate false records it instead); a Run still going
 * holds back a newer commit; a failed Run is retried after its backoff,
 * with the same commit and the next attempt, and not beyond spec.retries;
 * a newer commit wins over a retry; label selectors choose the Servers;
 * triggers: their errors, and a trigger while a Run goes is queued; the
 * backoff doubles up to its max; Run names stay DNS labels. */
/* cmocka needs these three first. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "binding/binding-private.h"
#include "resource/resource.h"
#include "run/run.h"
#include "store/store.h"

#define SHA1 "1111111111111111111111111111111111111111"
#define SHA2 "2222222222222222222222222222222222222222"

typedef struct Fixture {
        char dir[64];
        Store *store;
        BindingController b;
} Fixture;

static int setup(void **state) {
        Fixture *f = xcalloc(1, sizeof *f);
        _cleanup_free_ char *db = NULL;

        snprintf(f->dir, sizeof f->dir, "/tmp/test-binding-XXXXXX");
        assert_non_null(mkdtemp(f->dir));
        db = xasprintf("sqlite:%s/state.db", f->dir);
        assert_int_equal(store_open(db, &f->store), 0);
        f->b.store = f->store;
        *state = f;
        return 0;
}

static int teardown(void **state) {
        Fixture *f = *state;
        _cleanup_free_ char *cmd = xasprintf("rm -rf '%s'", f->dir);

        store_close(f->store);
        assert_int_equal(system(cmd), 0);
        free(f);
        return 0;
}

/* Stores an object given as JSON text, with its status (an APPLY keeps
 * the stored one: the status is written as the controllers write it). */
static void put(Fixture *f, const char *text) {
        json_error_t e;
        _cleanup_json_ json_t *obj = json_loads(text, 0, &e);

        if (!obj)
                fail_msg("bad JSON in the test: %s: %s", e.text, text);
        StoreOp ops[] = {{.type = STORE_OP_APPLY, .object = obj}, {.type = STORE_OP_STATUS, .object = obj}};
        size_t n = json_object_get(obj, "status") ? 2 : 1;
        for (size_t i = 0; i < n; i++) {
                assert_int_equal(store_commit(f->store, &ops[i], 1, false, NULL), 0);
                store_ops_clear(&ops[i], 1);
        }
}

static void put_repo(Fixture *f, const char *sha) {
        _cleanup_free_ char *t = xasprintf(
                "{\"kind\":\"Repo\",\"metadata\":{\"name\":\"site\",\"namespace\":\"default\"},"
                "\"spec\":{\"provider\":\"git\",\"url\":\"file:///x\",\"branch\":\"main\"},"
                "\"status\":{\"lastCommit\":{\"sha\":\"%s\",\"time\":\"2026-11-20T10:00:00Z\"}}}",
                sha);
        put(f, t);
}

static void put_server(Fixture *f, const char *name, const char *role) {
        _cleanup_free_ char *t = xasprintf("{\"kind\":\"Server\",\"metadata\":{\"name\":\"%s\",\"namespace\":\"default\","
                                           "\"labels\":{\"role\":\"%s\"}},\"spec\":{\"transport\":\"local\"}}",
                                           name, role);
        put(f, t);
}

/* A Binding on web-1 (or on role=web when selector), with spec extras
 * (",\"retries\":2" ...) and a status (or "{}"). */
static void put_binding(Fixture *f, bool selector, const char *extra, const char *status) {
        _cleanup_free_ char *t = xasprintf(
                "{\"kind\":\"Binding\",\"metadata\":{\"name\":\"deploy\",\"namespace\":\"default\",\"uid\":\"u-1\"},"
                "\"spec\":{\"repo\":\"site\",%s,\"command\":\"make deploy\",\"env\":{\"A\":\"b\"}%s},"
                "\"status\":%s}",
                selector ? "\"servers\":{\"matchLabels\":{\"role\":\"web\"}}" : "\"server\":\"web-1\"", extra, status);
        put(f, t);
}

static void put_run(Fixture *f, const char *name, const char *sha, int attempt, const char *phase,
                    const char *end) {
        _cleanup_free_ char *t = xasprintf(
                "{\"kind\":\"Run\",\"metadata\":{\"name\":\"%s\",\"namespace\":\"default\"},"
                "\"spec\":{\"owner\":{\"kind\":\"Binding\",\"name\":\"deploy\"},\"binding\":\"deploy\","
                "\"server\":\"web-1\",\"commit\":\"%s\",\"attempt\":%d},"
                "\"status\":{\"phase\":\"%s\"%s%s%s}}",
                name, sha, attempt, phase, end ? ",\"endTime\":\"" : "", end ?: "", end ? "\"" : "");
        put(f, t);
}

static json_t *binding(Fixture *f) {
        json_t *obj = NULL;
        assert_int_equal(store_get_json(f->store, "Binding", "default", "deploy", &obj), 0);
        return obj;
}

static int plan(Fixture *f, const BindingTrigger *t, Plan *p) {
        _cleanup_json_ json_t *obj = binding(f);
        return binding_plan(&f->b, obj, t, p);
}

static const char *ready_reason(const Plan *p) {
        return json_str_at(condition_get(p->status, "Ready"), "reason");
}

static const char *run_at(const Plan *p, size_t i, const char *field) {
        return json_str_at(json_object_get(json_array_get(p->runs, i), "spec"), field);
}

static const char *entry(const Plan *p, const char *server, const char *field) {
        return json_str_at(json_object_get(json_object_get(p->status, "servers"), server), field);
}

static char *time_ago(uint64_t usec) {
        char buf[RFC3339_MAX];
        return xstrdup(time_format_rfc3339(now_usec() - usec, buf));
}

/* ---- cases --------------------------------------------------------------------------- */

static void test_missing_repo(void **state) {
        Fixture *f = *state;
        Plan p;

        put_server(f, "web-1", "web");
        put_binding(f, false, "", "{}");
        assert_int_equal(plan(f, NULL, &p), 0);
        assert_int_equal(json_array_size(p.runs), 0);
        assert_string_equal(ready_reason(&p), "MissingReference");
        plan_clear(&p);
}

static void test_first_deploy_once(void **state) {
        Fixture *f = *state;
        Plan p;

        put_repo(f, SHA1);
        put_server(f, "web-1", "web");
        put_binding(f, false, ",\"workdir\":\"/srv\"", "{}");
        assert_int_equal(plan(f, NULL, &p), 0);
        assert_int_equal(json_array_size(p.runs), 1);
        const json_t *run = json_array_get(p.runs, 0);
        assert_string_equal(json_str_at(json_object_get(run, "metadata"), "name"), "deploy-1");
        assert_string_equal(run_at(&p, 0, "triggeredBy"), "create");
        assert_string_equal(run_at(&p, 0, "commit"), SHA1);
        assert_string_equal(run_at(&p, 0, "command"), "make deploy");
        assert_string_equal(run_at(&p, 0, "workdir"), "/srv");
        assert_string_equal(run_at(&p, 0, "branch"), "main");
        assert_string_equal(run_at(&p, 0, "commitTime"), "2026-11-20T10:00:00Z");
        assert_string_equal(json_str_at(json_object_get(json_object_get(run, "spec"), "env"), "A"), "b");
        assert_string_equal(json_str_at(json_object_get(run, "status"), "phase"), "Pending");
        assert_int_equal(json_int_at(p.status, "runCounter", 0), 1);
        assert_string_equal(entry(&p, "web-1", "lastRun"), "deploy-1");
        assert_string_equal(entry(&p, "web-1", "lastCommit"), SHA1);
        assert_string_equal(ready_reason(&p), "Bound");

        /* As committed, with its Run still going: nothing more. */
        _cleanup_free_ char *st = json_dumps(p.status, JSON_COMPACT);
        put_binding(f, false, ",\"workdir\":\"/srv\"", st);
        put_run(f, "deploy-1", SHA1, 1, "Running", NULL);
        plan_clear(&p);
        assert_int_equal(plan(f, NULL, &p), 0);
        assert_int_equal(json_array_size(p.runs), 0);
        plan_clear(&p);
}

static void test_deploy_on_create_false_records_the_head(void **state) {
        Fixture *f = *state;
        Plan p;

        put_repo(f, SHA1);
        put_server(f, "web-1", "web");
        put_binding(f, false, ",\"deployOnCreate\":false", "{}");
        assert_int_equal(plan(f, NULL, &p), 0);
        assert_int_equal(json_array_size(p.runs), 0);
        assert_string_equal(entry(&p, "web-1", "lastCommit"), SHA1);

        /* The next commit deploys. */
        _cleanup_free_ char *st = json_dumps(p.status, JSON_COMPACT);
        put_binding(f, false, ",\"deployOnCreate\":false", st);
        put_repo(f, SHA2);
        plan_clear(&p);
        assert_int_equal(plan(f, NULL, &p), 0);
        assert_int_equal(json_array_size(p.runs), 1);
        assert_string_equal(run_at(&p, 0, "triggeredBy"), "commit");
        assert_string_equal(run_at(&p, 0, "commit"), SHA2);
        plan_clear(&p);
}

static void test_busy_holds_back_a_newer_commit(void **state) {
        Fixture *f = *state;
        Plan p;

        put_repo(f, SHA2);
        put_server(f, "web-1", "web");
        put_run(f, "deploy-1", SHA1, 1, "Running", NULL);
        put_binding(f, false, "",
                    "{\"runCounter\":1,\"servers\":{\"web-1\":{\"lastRun\":\"deploy-1\",\"lastCommit\":\"" SHA1 "\"}}}");
        assert_int_equal(plan(f, NULL, &p), 0);
        assert_int_equal(json_array_size(p.runs), 0);
        assert_string_equal(entry(&p, "web-1", "lastRunPhase"), "Running");
        plan_clear(&p);

        /* Done: one Run of the newest. */
        put_run(f, "deploy-1", SHA1, 1, "Succeeded", "2026-11-20T10:00:00Z");
        assert_int_equal(plan(f, NULL, &p), 0);
        assert_int_equal(json_array_size(p.runs), 1);
        assert_string_equal(run_at(&p, 0, "commit"), SHA2);
        assert_string_equal(entry(&p, "web-1", "deployedCommit"), SHA1);
        assert_string_equal(json_str_at(json_object_get(json_array_get(p.runs, 0), "metadata"), "name"), "deploy-2");
        plan_clear(&p);
}

static void test_retry_after_backoff(void **state) {
        Fixture *f = *state;
        _cleanup_free_ char *just_now = time_ago(0), *long_ago = time_ago(60 * USEC_PER_SEC);
        const char *st = "{\"runCounter\":1,\"servers\":{\"web-1\":{\"lastRun\":\"deploy-1\",\"lastCommit\":\"" SHA1 "\"}}}";
        Plan p;

        put_repo(f, SHA1);
        put_server(f, "web-1", "web");
        put_binding(f, false, ",\"retries\":1,\"backoff\":{\"base\":\"10s\",\"max\":\"1m\"}", st);

        put_run(f, "deploy-1", SHA1, 1, "Failed", just_now);
        assert_int_equal(plan(f, NULL, &p), 0);
        assert_int_equal(json_array_size(p.runs), 0);
        assert_true(p.requeue > 8 * USEC_PER_SEC && p.requeue <= 10 * USEC_PER_SEC);
        plan_clear(&p);

        put_run(f, "deploy-1", SHA1, 1, "Interrupted", long_ago);
        assert_int_equal(plan(f, NULL, &p), 0);
        assert_int_equal(json_array_size(p.runs), 1);
        assert_string_equal(run_at(&p, 0, "triggeredBy"), "retry");
        assert_string_equal(run_at(&p, 0, "commit"), SHA1);
        assert_int_equal(json_int_at(json_object_get(json_array_get(p.runs, 0), "spec"), "attempt", 0), 2);
        plan_clear(&p);

        /* Attempt 2 failed too: retries (1) are used up. */
        put_run(f, "deploy-1", SHA1, 2, "Failed", long_ago);
        assert_int_equal(plan(f, NULL, &p), 0);
        assert_int_equal(json_array_size(p.runs), 0);
        assert_int_equal(p.requeue, 0);
        plan_clear(&p);

        /* A newer commit is worth a first attempt. */
        put_repo(f, SHA2);
        assert_int_equal(plan(f, NULL, &p), 0);
        assert_int_equal(json_array_size(p.runs), 1);
        assert_string_equal(run_at(&p, 0, "triggeredBy"), "commit");
        assert_int_equal(json_int_at(json_object_get(json_array_get(p.runs, 0), "spec"), "attempt", 0), 1);
        plan_clear(&p);
}

static void test_selector_chooses_servers(void **state) {
        Fixture *f = *state;
        Plan p;

        put_repo(f, SHA1);
        put_server(f, "web-1", "web");
        put_server(f, "web-2", "web");
        put_server(f, "db-1", "db");
        put_binding(f, true, "", "{}");
        assert_int_equal(plan(f, NULL, &p), 0);
        assert_int_equal(json_array_size(p.runs), 2);
        assert_string_equal(run_at(&p, 0, "server"), "web-1");
        assert_string_equal(run_at(&p, 1, "server"), "web-2");
        assert_null(entry(&p, "db-1", "lastRun"));
        plan_clear(&p);
}

static void test_trigger(void **state) {
        Fixture *f = *state;
        BindingTrigger all = {0}, other = {.server = "web-9"}, failed = {.failed_only = true};
        Plan p;

        put_server(f, "web-1", "web");
        put_binding(f, false, "", "{}");
        assert_int_equal(plan(f, &all, &p), -ENODATA); /* no Repo */
        assert_non_null(strstr(p.error, "repo site does not exist"));
        plan_clear(&p);

        put_repo(f, SHA1);
        assert_int_equal(plan(f, &other, &p), -ESRCH);
        assert_non_null(strstr(p.error, "web-9 is not one of the servers"));
        plan_clear(&p);

        assert_int_equal(plan(f, &failed, &p), 0); /* nothing failed: only the first deploy */
        assert_string_equal(run_at(&p, 0, "triggeredBy"), "create");
        plan_clear(&p);

        put_run(f, "deploy-1", SHA1, 1, "Running", NULL);
        put_binding(f, false, "",
                    "{\"runCounter\":1,\"servers\":{\"web-1\":{\"lastRun\":\"deploy-1\",\"lastCommit\":\"" SHA1 "\"}}}");
        assert_int_equal(plan(f, &all, &p), 0);
        assert_int_equal(json_array_size(p.runs), 0);
        assert_string_equal(json_string_value(json_array_get(json_object_get(p.report, "queued"), 0)), "web-1");
        assert_true(json_is_true(json_object_get(json_object_get(json_object_get(p.status, "servers"), "web-1"),
                                                 "triggered")));
        plan_clear(&p);

        put_binding(f, false, ",\"active\":false", "{}");
        assert_int_equal(plan(f, &all, &p), -EPERM);
        assert_non_null(strstr(p.error, "inactive"));
        plan_clear(&p);
}

static void test_backoff(void **state) {
        (void) state;
        uint64_t s = USEC_PER_SEC;

        assert_int_equal(binding_backoff(1 * s, 5 * s, 1), 1 * s);
        assert_int_equal(binding_backoff(1 * s, 5 * s, 2), 2 * s);
        assert_int_equal(binding_backoff(1 * s, 5 * s, 3), 4 * s);
        assert_int_equal(binding_backoff(1 * s, 5 * s, 4), 5 * s);
        assert_int_equal(binding_backoff(1 * s, 5 * s, 100), 5 * s);
        assert_int_equal(binding_backoff(10 * s, 5 * s, 1), 5 * s);
}

static void test_run_names(void **state) {
        (void) state;
        char long_name[64];

        memset(long_name, 'a', 63);
        long_name[63] = 0;
        long_name[58] = '-';
        _cleanup_free_ char *a = run_name("deploy", 7), *b = run_name(long_name, 12345);
        assert_string_equal(a, "deploy-7");
        assert_true(strlen(b) <= 63);
        assert_true(resource_name_valid(b));
        assert_true(endswith(b, "-12345"));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_missing_repo, setup, teardown),
                cmocka_unit_test_setup_teardown(test_first_deploy_once, setup, teardown),
                cmocka_unit_test_setup_teardown(test_deploy_on_create_false_records_the_head, setup, teardown),
                cmocka_unit_test_setup_teardown(test_busy_holds_back_a_newer_commit, setup, teardown),
                cmocka_unit_test_setup_teardown(test_retry_after_backoff, setup, teardown),
                cmocka_unit_test_setup_teardown(test_selector_chooses_servers, setup, teardown),
                cmocka_unit_test_setup_teardown(test_trigger, setup, teardown),
                cmocka_unit_test(test_backoff),
                cmocka_unit_test(test_run_names),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
