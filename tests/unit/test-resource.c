/* Unit tests for pkg/resource: the kind table, defaulting and strict
 * validation of every kind, the kind-specific checks, token hashing,
 * redaction, label selectors and explain. Manifests are written as YAML, as
 * people write them. */
/* cmocka needs these three first. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <glob.h>
#include <stdio.h>
#include <string.h>

#include "resource/resource.h"
#include "yaml/yaml.h"

/* ---- helpers ------------------------------------------------------------ */

static json_t *parse(const char *text) {
        YamlDoc **docs = NULL;
        Diags d = DIAGS_INIT;
        size_t n = 0;

        if (yaml_parse(text, strlen(text), "test.yaml", &docs, &n, &d) < 0) {
                for (size_t i = 0; i < d.n; i++) {
                        char *s = diag_format(&d.items[i]);
                        print_error("yaml: %s\n", s);
                        free(s);
                }
                fail();
        }
        assert_int_equal(n, 1);
        json_t *root = json_incref(yamldoc_root(docs[0]));
        yamldocs_free(docs, n);
        diags_free(&d);
        return root;
}

static void dump_diags(const Diags *d) {
        for (size_t i = 0; i < d->n; i++) {
                char *s = diag_format(&d->items[i]);
                print_message("  diag: %s\n", s);
                free(s);
        }
}

/* Prepares text, expects success, returns the prepared object. */
static json_t *prepare_ok(const char *text) {
        json_t *obj = parse(text);
        Diags d = DIAGS_INIT;

        int r = resource_prepare(obj, 0, &d);
        if (r < 0)
                dump_diags(&d);
        assert_int_equal(r, 0);
        assert_int_equal(d.n, 0);
        diags_free(&d);
        return obj;
}

/* Prepares text, expects failure; d gets the diagnostics. */
static void prepare_fails(const char *text, Diags *d) {
        json_t *obj = parse(text);

        assert_int_equal(resource_prepare(obj, 3, d), -EINVAL);
        assert_true(d->n > 0);
        json_decref(obj);
}

/* Whether d holds a diagnostic for field whose message contains msg. */
static bool has_diag(const Diags *d, const char *field, const char *msg) {
        for (size_t i = 0; i < d->n; i++) {
                const Diag *x = &d->items[i];
                if ((field ? x->field && STREQ(x->field, field) : !x->field) && strstr(x->message, msg))
                        return true;
        }
        dump_diags(d);
        print_error("expected %s: ...%s...\n", field ? field : "(no field)", msg);
        return false;
}

static void expect_error(const char *text, const char *field, const char *msg) {
        Diags d = DIAGS_INIT;

        prepare_fails(text, &d);
        assert_true(has_diag(&d, field, msg));
        diags_free(&d);
}

static const char *str_at(const json_t *obj, const char *path) {
        const json_t *v = obj;
        char buf[256];

        snprintf(buf, sizeof buf, "%s", path);
        for (char *p = strtok(buf, "."); p && v; p = strtok(NULL, "."))
                v = json_object_get(v, p);
        return json_string_value(v);
}

static json_t *at(json_t *obj, const char *path) {
        json_t *v = obj;
        char buf[256];

        snprintf(buf, sizeof buf, "%s", path);
        for (char *p = strtok(buf, "."); p && v; p = strtok(NULL, "."))
                v = json_object_get(v, p);
        return v;
}

static int setup(void **state) {
        (void) state;
        if (getenv("RPR_TEST_DEBUG"))
                log_set_max_level(LOG_LEVEL_DEBUG);
        return resource_init();
}

static int teardown(void **state) {
        (void) state;
        resource_shutdown();
        return 0;
}

/* ---- kinds ---------------------------------------------------------------- */

static void test_kind_all_in_stable_order(void **state) {
        (void) state;
        static const char *const want[] = {"Token",    "Repo",   "Server", "Binding", "Command",
                                           "Pipeline", "Runner", "Sync",   "Run",     "Event"};
        size_t n;
        const Kind *const *all = kind_all(&n);

        assert_int_equal(n, ELEMENTSOF(want));
        for (size_t i = 0; i < n; i++)
                assert_string_equal(kind_name(all[i]), want[i]);
}

static void test_kind_lookup_accepts_every_alias(void **state) {
        (void) state;
        const Kind *srv = kind_lookup("Server");

        assert_non_null(srv);
        assert_ptr_equal(kind_lookup("server"), srv);
        assert_ptr_equal(kind_lookup("servers"), srv);
        assert_ptr_equal(kind_lookup("SRV"), srv);
        assert_ptr_equal(kind_lookup("Servers"), srv);
        assert_string_equal(kind_plural(srv), "servers");
        assert_string_equal(kind_short(srv), "srv");
        assert_ptr_equal(kind_lookup("pl"), kind_lookup("Pipeline"));
        assert_ptr_equal(kind_lookup("runs"), kind_lookup("Run"));
        assert_ptr_equal(kind_lookup("runner"), kind_lookup("Runner"));
        assert_null(kind_lookup("serverz"));
        assert_null(kind_lookup(NULL));
}

static void test_kind_user_writable_and_columns(void **state) {
        (void) state;

        assert_true(kind_user_writable(kind_lookup("server")));
        assert_false(kind_user_writable(kind_lookup("run")));
        assert_false(kind_user_writable(kind_lookup("event")));

        const json_t *cols = kind_columns(kind_lookup("server"));
        assert_true(json_is_array(cols));
        assert_true(json_array_size(cols) >= 3);
        bool phase = false, wide = false;
        size_t i;
        json_t *c;
        json_array_foreach(cols, i, c) {
                assert_non_null(json_string_value(json_object_get(c, "name")));
                assert_non_null(json_string_value(json_object_get(c, "path")));
                assert_true(json_is_boolean(json_object_get(c, "wide")));
                phase = phase || STREQ(json_string_value(json_object_get(c, "path")), "status.phase");
                wide = wide || json_is_true(json_object_get(c, "wide"));
        }
        assert_true(phase);
        assert_true(wide);
}

/* ---- every kind: minimal and full ------------------------------------------ */

static void test_token_minimal_and_full(void **state) {
        (void) state;
        json_t *o = prepare_ok("apiVersion: rpr/v1\nkind: Token\nmetadata: {name: gh}\n"
                               "spec: {type: github, valueFrom: {env: GH_PAT}}\n");
        assert_string_equal(str_at(o, "metadata.namespace"), "default");
        assert_null(at(o, "spec.role"));
        json_decref(o);

        o = prepare_ok("apiVersion: rpr/v1\nkind: Token\n"
                       "metadata: {name: ci, namespace: team-a, labels: {team: a}}\n"
                       "spec:\n  type: api\n  valueHash: sha256:" /* 64 hex */
                       "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n"
                       "  expires: \"2027-06-30\"\n  role: operator\n  namespaces: [team-a, team-b]\n"
                       "  description: CI pipeline token\n");
        assert_string_equal(str_at(o, "spec.role"), "operator");
        assert_string_equal(str_at(o, "metadata.namespace"), "team-a");
        json_decref(o);
}

static void test_repo_minimal_and_full(void **state) {
        (void) state;
        json_t *o = prepare_ok("apiVersion: rpr/v1\nkind: Repo\nmetadata: {name: site}\n"
                               "spec: {owner: acme, name: site}\n");
        assert_string_equal(str_at(o, "spec.provider"), "github");
        assert_string_equal(str_at(o, "spec.branch"), "main");
        assert_string_equal(str_at(o, "spec.interval"), "24h");
        assert_true(json_is_true(at(o, "spec.active")));
        json_decref(o);

        o = prepare_ok("apiVersion: rpr/v1\nkind: Repo\nmetadata: {name: config}\n"
                       "spec:\n  provider: git\n  url: file:///srv/git/config.git\n  branch: prod\n"
                       "  tokenRef: gh\n  interval: 1m\n  active: false\n");
        assert_string_equal(str_at(o, "spec.branch"), "prod");
        json_decref(o);
        /* GitOps is the Sync kind, not a field of the Repo. */
        expect_error("apiVersion: rpr/v1\nkind: Repo\nmetadata: {name: c}\nspec: {owner: a, name: b, sync: {}}\n",
                     "spec.sync", "unknown field \"sync\"");

        o = prepare_ok("apiVersion: rpr/v1\nkind: Repo\nmetadata: {name: site}\n"
                       "spec: {url: https://github.com/acme/site, apiURL: http://127.0.0.1:9000}\n");
        json_decref(o);
}

static void test_server_minimal_and_full(void **state) {
        (void) state;
        json_t *o = prepare_ok(
                "apiVersion: rpr/v1\nkind: Server\nmetadata: {name: web-1}\nspec: {host: 127.0.0.5}\n");
        assert_string_equal(str_at(o, "spec.transport"), "ssh");
        assert_int_equal(json_integer_value(at(o, "spec.port")), 22);
        assert_string_equal(str_at(o, "spec.hostKeyPolicy"), "strict");
        assert_string_equal(str_at(o, "spec.check.interval"), "12h");
        assert_int_equal(json_integer_value(at(o, "spec.check.retries")), 3);
        assert_string_equal(str_at(o, "spec.check.retryInterval"), "5m");
        json_decref(o);

        /* A check that is present but partial gets the rest of its defaults. */
        o = prepare_ok("apiVersion: rpr/v1\nkind: Server\nmetadata:\n  name: web-2\n  labels: {role: web}\n"
                       "  annotations: {note: \"anything at all\"}\n"
                       "spec:\n  transport: ssh\n  host: web-2.example.com\n  port: 2222\n  user: deploy\n"
                       "  identityFile: /etc/rpr/keys/deploy_ed25519\n"
                       "  hostKey: \"ssh-ed25519 SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s\"\n"
                       "  hostKeyPolicy: accept-new\n  active: true\n  check: {interval: 1h}\n");
        assert_string_equal(str_at(o, "spec.check.interval"), "1h");
        assert_int_equal(json_integer_value(at(o, "spec.check.retries")), 3);
        json_decref(o);

        o = prepare_ok(
                "apiVersion: rpr/v1\nkind: Server\nmetadata: {name: localhost}\nspec: {transport: local}\n");
        json_decref(o);
}

static void test_binding_minimal_and_full(void **state) {
        (void) state;
        json_t *o = prepare_ok("apiVersion: rpr/v1\nkind: Binding\nmetadata: {name: deploy}\n"
                               "spec: {repo: site, server: web-1, command: make deploy}\n");
        assert_string_equal(str_at(o, "spec.backoff.base"), "10s");
        assert_string_equal(str_at(o, "spec.backoff.max"), "5m");
        assert_true(json_is_true(at(o, "spec.deployOnCreate")));
        assert_int_equal(json_integer_value(at(o, "spec.history")), 20);
        assert_int_equal(json_integer_value(at(o, "spec.retries")), 0);
        json_decref(o);

        o = prepare_ok("apiVersion: rpr/v1\nkind: Binding\nmetadata: {name: deploy}\nspec:\n  repo: site\n"
                       "  servers: {matchLabels: {role: web}}\n  command: |\n    cd /srv/site && git pull "
                       "--ff-only\n"
                       "    systemctl restart site\n  workdir: /srv/site\n  env: {APP_ENV: production}\n"
                       "  timeout: 10m\n  retries: 2\n  backoff: {base: 30s}\n  waitTimeout: 24h\n"
                       "  deployOnCreate: false\n  active: true\n  history: 100\n");
        assert_string_equal(str_at(o, "spec.backoff.base"), "30s");
        assert_string_equal(str_at(o, "spec.backoff.max"), "5m");
        json_decref(o);
}

static const char pipeline_full[] =
        "apiVersion: rpr/v1\nkind: Pipeline\nmetadata: {name: release}\nspec:\n"
        "  args: {target: {default: staging, description: \"where to deploy\"}}\n"
        "  concurrency: 1\n  queueLimit: 10\n  queueStrategy: append\n  startDelay: 0s\n"
        "  schedule: \"0 3 * * *\"\n  trigger: {repo: site}\n  onError: notify\n  onInterrupt: resume\n"
        "  history: 50\n  retention: 720h\n"
        "  tasks:\n"
        "    build:  {script: \"make\"}\n"
        "    test:   {script: [\"make test\", \"make lint\"], dependsOn: [build], timeout: 5m, retries: 1}\n"
        "    deploy: {script: \"./deploy $target\", dependsOn: [test], servers: {matchLabels: {role: "
        "web}}}\n"
        "    notify: {script: \"echo failed\", allowFailure: true, env: {LEVEL: high}}\n";

static void test_pipeline_minimal_and_full(void **state) {
        (void) state;
        json_t *o = prepare_ok("apiVersion: rpr/v1\nkind: Pipeline\nmetadata: {name: p}\n"
                               "spec: {tasks: {only: {script: \"true\"}}}\n");
        assert_int_equal(json_integer_value(at(o, "spec.concurrency")), 1);
        assert_string_equal(str_at(o, "spec.queueStrategy"), "append");
        assert_string_equal(str_at(o, "spec.onInterrupt"), "fail");
        assert_string_equal(str_at(o, "spec.tasks.only.timeout"), "1h");
        assert_true(json_is_false(at(o, "spec.tasks.only.allowFailure")));
        json_decref(o);

        o = prepare_ok(pipeline_full);
        assert_string_equal(str_at(o, "spec.tasks.deploy.timeout"), "1h");
        assert_string_equal(str_at(o, "spec.tasks.test.timeout"), "5m");
        json_decref(o);
}

static void test_runner_minimal_and_full(void **state) {
        (void) state;
        json_t *o = prepare_ok("apiVersion: rpr/v1\nkind: Runner\nmetadata: {name: ci}\n"
                               "spec: {org: acme, tokenRef: gh, server: build-1}\n");
        /* No default: replicas and autoscale exclude each other (the controller reads 1). */
        assert_null(at(o, "spec.replicas"));
        assert_true(json_is_true(at(o, "spec.ephemeral")));
        assert_string_equal(str_at(o, "spec.installDir"), "/opt/actions-runner");
        json_decref(o);

        o = prepare_ok("apiVersion: rpr/v1\nkind: Runner\nmetadata: {name: ci}\nspec:\n  repo: site\n  "
                       "tokenRef: gh\n"
                       "  servers: {matchLabels: {ci: \"true\"}}\n  replicas: 2\n  labels: [linux, x64]\n"
                       "  ephemeral: false\n  installDir: /srv/runner\n");
        json_decref(o);

        o = prepare_ok("apiVersion: rpr/v1\nkind: Runner\nmetadata: {name: ci}\n"
                       "spec: {repo: site, tokenRef: gh, server: b, autoscale: {max: 20, idle: 2}}\n");
        assert_int_equal(json_integer_value(at(o, "spec.autoscale.min")), 0);
        assert_string_equal(str_at(o, "spec.autoscale.scaleDownDelay"), "5m");
        assert_string_equal(str_at(o, "spec.autoscale.interval"), "1m");
        json_decref(o);
        expect_error("apiVersion: rpr/v1\nkind: Runner\nmetadata: {name: ci}\n"
                     "spec: {repo: site, tokenRef: gh, server: b, replicas: 2, autoscale: {max: 3}}\n",
                     "spec.autoscale", "cannot be set together with replicas");
}

static void test_run_and_event_minimal_and_full(void **state) {
        (void) state;
        json_t *o = prepare_ok("apiVersion: rpr/v1\nkind: Run\nmetadata: {name: deploy-1}\n"
                               "spec: {owner: {kind: Binding, name: deploy}}\n");
        assert_int_equal(json_integer_value(at(o, "spec.attempt")), 1);
        json_decref(o);
        o = prepare_ok(
                "apiVersion: rpr/v1\nkind: Run\nmetadata: {name: release-7}\nspec:\n"
                "  owner: {kind: Pipeline, name: release, uid: abc}\n  pipeline: release\n  commit: "
                "deadbeef\n"
                "  args: {target: prod}\n  servers: [web-1, web-2]\n  attempt: 2\n  triggeredBy: schedule\n"
                "status: {phase: Running}\n");
        assert_null(at(o, "status"));
        json_decref(o);

        o = prepare_ok(
                "apiVersion: rpr/v1\nkind: Event\nmetadata: {name: web-1-check-1}\n"
                "spec: {involvedObject: {kind: Server, name: web-1}, type: Warning, reason: CheckFailed}\n");
        assert_int_equal(json_integer_value(at(o, "spec.count")), 1);
        json_decref(o);
}

/* ---- error classes ------------------------------------------------------------ */

#define SRV "apiVersion: rpr/v1\nkind: Server\nmetadata: {name: web-1}\n"

static void test_wrong_type_integer(void **state) {
        (void) state;
        expect_error(SRV "spec: {host: h, port: abc}\n", "spec.port",
                     "must be an integer 1..65535 (got \"abc\")");
        expect_error(SRV "spec: {host: h, port: \"22\"}\n", "spec.port",
                     "must be an integer 1..65535 (got \"22\")");
        expect_error(SRV "spec: {host: h, port: 70000}\n", "spec.port",
                     "must be an integer 1..65535 (got 70000)");
        expect_error(SRV "spec: {host: h, port: 0}\n", "spec.port", "must be an integer 1..65535 (got 0)");
        expect_error(SRV "spec: {host: h, port: 22.5}\n", "spec.port",
                     "must be an integer 1..65535 (got 22.5)");
}

static void test_wrong_type_string_and_boolean(void **state) {
        (void) state;
        expect_error(SRV "spec: {host: 12}\n", "spec.host", "must be a string (got 12)");
        expect_error(SRV "spec: {host: h, active: \"yes\"}\n", "spec.active", "must be a boolean");
        expect_error(SRV "spec: {host: h, active: \"true\"}\n", "spec.active", "(got \"true\")");
        expect_error(SRV "spec: {host: h, check: 5}\n", "spec.check", "must be an object (got 5)");
        expect_error(SRV "spec: [a]\n", "spec", "must be an object");
}

static void test_enum(void **state) {
        (void) state;
        expect_error(SRV "spec: {transport: sssh, host: h}\n", "spec.transport",
                     "must be one of: ssh, local, agent (got \"sssh\")");
        expect_error(SRV "spec: {transport: 1, host: h}\n", "spec.transport",
                     "must be one of: ssh, local, agent (got 1)");
}

static void test_pattern_and_lengths(void **state) {
        (void) state;
        expect_error(SRV "spec: {host: h, hostKey: \"md5:aa\"}\n", "spec.hostKey",
                     "must be a pinned host key");
        expect_error(SRV "spec: {host: \"\"}\n", "spec.host", "must not be empty");
        expect_error(SRV "spec: {host: \"has space\"}\n", "spec.host", "must be a host name or IP address");
        expect_error("apiVersion: rpr/v1\nkind: Token\nmetadata: {name: t}\nspec: {type: api, valueHash: "
                     "md5:x}\n",
                     "spec.valueHash", "must be \"sha256:\" followed by 64 lower-case hex digits");
}

static void test_minimum_maximum(void **state) {
        (void) state;
        expect_error(SRV "spec: {host: h, check: {retries: -1}}\n", "spec.check.retries",
                     "must be an integer 0..100 (got -1)");
        expect_error("apiVersion: rpr/v1\nkind: Runner\nmetadata: {name: r}\n"
                     "spec: {org: acme, tokenRef: gh, server: s, replicas: 101}\n",
                     "spec.replicas", "must be an integer 0..100 (got 101)");
        expect_error("apiVersion: rpr/v1\nkind: Binding\nmetadata: {name: b}\n"
                     "spec: {repo: r, server: s, command: x, history: 0}\n",
                     "spec.history", "must be an integer 1..1000 (got 0)");
        expect_error("apiVersion: rpr/v1\nkind: Repo\nmetadata: {name: r}\nspec: {owner: a, name: b, "
                     "interval: 30s}\n",
                     "spec.interval", "must be at least 1m (got \"30s\")");
}

static void test_unknown_field(void **state) {
        (void) state;
        expect_error(SRV "spec: {hots: h}\n", "spec.hots", "unknown field \"hots\"");
        expect_error(SRV "spec: {host: h, check: {intervall: 1h}}\n", "spec.check.intervall",
                     "unknown field \"intervall\"");
        expect_error(SRV "spec: {host: h}\nextra: 1\n", "extra", "unknown field \"extra\"");
        expect_error("apiVersion: rpr/v1\nkind: Server\nmetadata: {name: a, colour: red}\nspec: {host: h}\n",
                     "metadata.colour", "unknown field \"colour\"");
}

static void test_missing_required(void **state) {
        (void) state;
        expect_error("apiVersion: rpr/v1\nkind: Token\nmetadata: {name: t}\nspec: {value: x}\n", "spec.type",
                     "is required");
        expect_error("apiVersion: rpr/v1\nkind: Server\nmetadata: {}\nspec: {host: h}\n", "metadata.name",
                     "is required");
        expect_error("apiVersion: rpr/v1\nkind: Server\nspec: {host: h}\n", "metadata.name", "is required");
        expect_error("kind: Server\nmetadata: {name: a}\nspec: {host: h}\n", "apiVersion", "is required");
        expect_error("apiVersion: rpr/v1\nmetadata: {name: a}\n", "kind", "is required");
        expect_error(SRV "spec: {}\n", "spec.host", "is required for transport ssh");
}

static void test_bad_duration_and_date(void **state) {
        (void) state;
        expect_error(SRV "spec: {host: h, check: {retryInterval: 5 minutes}}\n", "spec.check.retryInterval",
                     "must be a duration like 90s, 5m, 1h30m (got \"5 minutes\")");
        expect_error(SRV "spec: {host: h, check: {interval: 5}}\n", "spec.check.interval",
                     "must be a duration like 90s, 5m, 1h30m (got 5)");
        expect_error("apiVersion: rpr/v1\nkind: Token\nmetadata: {name: t}\n"
                     "spec: {type: github, value: x, expires: 30/06/2027}\n",
                     "spec.expires", "must be a date like 2027-06-30 (got \"30/06/2027\")");
        expect_error("apiVersion: rpr/v1\nkind: Token\nmetadata: {name: t}\n"
                     "spec: {type: github, value: x, expires: 2027-02-30}\n",
                     "spec.expires", "must be a date like 2027-06-30");
        json_decref(prepare_ok("apiVersion: rpr/v1\nkind: Token\nmetadata: {name: t}\n"
                               "spec: {type: github, value: x, expires: \"2027-06-30T12:00:00Z\"}\n"));
}

static void test_bad_names_and_labels(void **state) {
        (void) state;
        expect_error("apiVersion: rpr/v1\nkind: Server\nmetadata: {name: Web_1}\nspec: {host: h}\n",
                     "metadata.name",
                     "must be a DNS-1123 label: lower-case letters, digits and '-', starting and ending "
                     "with a letter "
                     "or digit, at most 63 characters (got \"Web_1\")");
        expect_error("apiVersion: rpr/v1\nkind: Server\nmetadata: {name: web-}\nspec: {host: h}\n",
                     "metadata.name", "DNS-1123");
        expect_error(
                "apiVersion: rpr/v1\nkind: Server\nmetadata: {name: a, namespace: Prod}\nspec: {host: h}\n",
                "metadata.namespace", "DNS-1123");
        expect_error("apiVersion: rpr/v1\nkind: Server\nmetadata: {name: a, labels: {\"bad key\": "
                     "x}}\nspec: {host: h}\n",
                     "metadata.labels.bad key", "invalid key \"bad key\"");
        expect_error("apiVersion: rpr/v1\nkind: Server\nmetadata: {name: a, labels: {role: \"a b\"}}\nspec: "
                     "{host: h}\n",
                     "metadata.labels.role", "must be at most 63 letters");
        expect_error("apiVersion: rpr/v1\nkind: Server\nmetadata: {name: a, labels: {port: 80}}\nspec: "
                     "{host: h}\n",
                     "metadata.labels.port", "must be a string (got 80)");
        expect_error(
                "apiVersion: rpr/v1\nkind: Server\nmetadata: {name: a, labels: {\"Example.com/x\": y}}\n"
                "spec: {host: h}\n",
                "metadata.labels[\"Example.com/x\"]", "invalid key");

        json_t *o = prepare_ok("apiVersion: rpr/v1\nkind: Server\nmetadata:\n  name: a\n"
                               "  labels: {app.kubernetes.io/name: site, role: \"\"}\nspec: {host: h}\n");
        json_decref(o);
        assert_true(resource_name_valid("web-1"));
        assert_true(resource_name_valid("a"));
        assert_false(resource_name_valid("-a"));
        assert_false(resource_name_valid(""));
        assert_false(resource_name_valid("a.b"));
        assert_false(resource_name_valid(
                "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")); /* 64 */
}

static void test_unknown_kind_and_api_version(void **state) {
        (void) state;
        expect_error("apiVersion: rpr/v2\nkind: Server\nmetadata: {name: a}\nspec: {host: h}\n",
                     "apiVersion", "unknown apiVersion \"rpr/v2\" (expected rpr/v1)");
        expect_error("apiVersion: rpr/v1\nkind: Srv\nmetadata: {name: a}\nspec: {host: h}\n", "kind",
                     "unknown kind \"Srv\" (known kinds: Token, Repo, Server, Binding, Command, Pipeline, "
                     "Runner, Sync, Run, Event)");
        expect_error("apiVersion: rpr/v1\nkind: server\nmetadata: {name: a}\n", "kind",
                     "unknown kind \"server\"");
}

static void test_system_fields_dropped_and_status_dropped(void **state) {
        (void) state;
        json_t *o = prepare_ok(
                "apiVersion: rpr/v1\nkind: Server\nmetadata:\n  name: a\n  uid: x\n"
                "  resourceVersion: \"7\"\n  generation: 3\n  creationTimestamp: \"2026-01-01T00:00:00Z\"\n"
                "  deletionTimestamp: \"2026-01-01T00:00:00Z\"\n  managedBy: gitops\n"
                "  finalizers: [rpr/runner]\nspec: {host: h}\nstatus: {phase: Reachable}\n");
        const json_t *m = at(o, "metadata");
        assert_null(json_object_get(m, "uid"));
        assert_null(json_object_get(m, "resourceVersion"));
        assert_null(json_object_get(m, "generation"));
        assert_null(json_object_get(m, "creationTimestamp"));
        assert_null(json_object_get(m, "deletionTimestamp"));
        assert_null(json_object_get(m, "managedBy"));
        assert_int_equal(json_array_size(json_object_get(m, "finalizers")), 1);
        assert_null(at(o, "status"));
        json_decref(o);

        expect_error(
                "apiVersion: rpr/v1\nkind: Server\nmetadata: {name: a, finalizers: [1]}\nspec: {host: h}\n",
                "metadata.finalizers[0]", "must be a string (got 1)");
}

static void test_several_errors_reported_at_once(void **state) {
        (void) state;
        Diags d = DIAGS_INIT;

        prepare_fails("apiVersion: rpr/v1\nkind: Server\nmetadata: {name: Web_1}\n"
                      "spec: {transport: sssh, hots: h, port: abc, check: {interval: soon}}\n",
                      &d);
        assert_true(d.n >= 5);
        assert_true(has_diag(&d, "metadata.name", "DNS-1123"));
        assert_true(has_diag(&d, "spec.transport", "must be one of"));
        assert_true(has_diag(&d, "spec.hots", "unknown field"));
        assert_true(has_diag(&d, "spec.port", "must be an integer"));
        assert_true(has_diag(&d, "spec.check.interval", "must be a duration"));
        for (size_t i = 0; i < d.n; i++) {
                assert_int_equal(d.items[i].index, 3);
                assert_string_equal(d.items[i].object, "Server/Web_1");
        }
        diags_free(&d);

        prepare_fails("apiVersion: rpr/v1\nkind: Server\nmetadata: {}\nspec: {port: x}\n", &d);
        assert_string_equal(d.items[0].object, "Server/<unnamed>");
        diags_free(&d);
}

/* ---- kind-specific checks ----------------------------------------------------- */

#define PL "apiVersion: rpr/v1\nkind: Pipeline\nmetadata: {name: p}\nspec:\n"

static void test_pipeline_cycle(void **state) {
        (void) state;
        expect_error(PL "  tasks:\n    a: {script: x, dependsOn: [c]}\n    b: {script: x, dependsOn: [a]}\n"
                        "    c: {script: x, dependsOn: [b]}\n    d: {script: x, dependsOn: [a]}\n",
                     "spec.tasks.a.dependsOn", "dependency cycle: a -> c -> b -> a");
        expect_error(PL "  tasks:\n    a: {script: x, dependsOn: [a]}\n", "spec.tasks.a.dependsOn",
                     "dependency cycle: a -> a");
}

static void test_pipeline_missing_dependency_and_on_error(void **state) {
        (void) state;
        Diags d = DIAGS_INIT;

        prepare_fails(PL "  onError: notfy\n  tasks:\n    build: {script: make}\n"
                         "    test: {script: make test, dependsOn: [build, biuld]}\n",
                      &d);
        assert_true(has_diag(&d, "spec.tasks.test.dependsOn[1]", "unknown task \"biuld\""));
        assert_true(has_diag(&d, "spec.onError", "unknown task \"notfy\""));
        diags_free(&d);
}

static void test_pipeline_schedule_and_script(void **state) {
        (void) state;
        static const char *const good[] = {"0 3 * * *",         "*/15 * * * *",         "0 0 1,15 * mon-fri",
                                           "5 4 * jan,jul sun", "0-30/10 8-18 * * 1-5", "@daily",
                                           "0 0 * * 7",         "5/20 * * * *"};
        static const char *const bad[] = {"0 3 * *",     "60 * * * *",  "* 24 * * *", "* * 0 * *",
                                          "* * * 13 *",  "*/0 * * * *", "a * * * *",  "1,,2 * * * *",
                                          "* * * * * *", "5-1 * * * *"};

        for (size_t i = 0; i < ELEMENTSOF(good); i++) {
                char text[512];
                snprintf(text, sizeof text, PL "  schedule: \"%s\"\n  tasks: {a: {script: x}}\n", good[i]);
                json_decref(prepare_ok(text));
        }
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                char text[512];
                snprintf(text, sizeof text, PL "  schedule: \"%s\"\n  tasks: {a: {script: x}}\n", bad[i]);
                expect_error(text, "spec.schedule", "must be a cron expression");
        }
        expect_error(PL "  tasks: {a: {script: 12}}\n", "spec.tasks.a.script", "must be a string or a list");
        expect_error(PL "  tasks: {a: {script: [x, 1]}}\n", "spec.tasks.a.script[1]",
                     "must be a string (got 1)");
        expect_error(PL "  tasks: {a: {script: []}}\n", "spec.tasks.a.script", "must have at least 1 item");
        expect_error(PL "  tasks: {}\n", "spec.tasks", "must have at least 1 entry");
        expect_error(PL "  tasks: {\"bad name\": {script: x}}\n", "spec.tasks.bad name", "invalid name");
        expect_error(PL "  queueStrategy: prepend\n  tasks: {a: {script: x}}\n", "spec.queueStrategy",
                     "must be one of: append, replace");
        expect_error(PL "  tasks: {a: {script: x, server: s, servers: {matchLabels: {a: b}}}}\n",
                     "spec.tasks.a.servers", "cannot be set together with server");
}

static void test_binding_server_servers_exclusive(void **state) {
        (void) state;
        expect_error("apiVersion: rpr/v1\nkind: Binding\nmetadata: {name: b}\n"
                     "spec: {repo: r, command: x, server: s, servers: {matchLabels: {role: web}}}\n",
                     "spec.servers", "cannot be set together with server");
        expect_error("apiVersion: rpr/v1\nkind: Binding\nmetadata: {name: b}\nspec: {repo: r, command: x}\n",
                     "spec", "needs exactly one of: server, servers");
        expect_error("apiVersion: rpr/v1\nkind: Binding\nmetadata: {name: b}\n"
                     "spec: {repo: r, command: x, servers: {}}\n",
                     "spec.servers.matchLabels", "is required");
}

static void test_other_cross_field_checks(void **state) {
        (void) state;
        expect_error(SRV "spec: {host: h, identityFile: /k, keyRef: k}\n", "spec.keyRef",
                     "cannot be set together with identityFile");
        expect_error(SRV "spec: {host: h, identityFile: keys/k}\n", "spec.identityFile",
                     "must be an absolute path");
        expect_error("apiVersion: rpr/v1\nkind: Repo\nmetadata: {name: r}\nspec: {provider: github}\n",
                     "spec.owner", "is required (or url)");
        expect_error("apiVersion: rpr/v1\nkind: Repo\nmetadata: {name: r}\nspec: {url: "
                     "https://github.com/acme}\n",
                     "spec.url", "must be a GitHub repository URL");
        expect_error("apiVersion: rpr/v1\nkind: Repo\nmetadata: {name: r}\nspec: {provider: git}\n",
                     "spec.url", "is required for provider git");
        expect_error("apiVersion: rpr/v1\nkind: Repo\nmetadata: {name: r}\nspec: {provider: git, url: x, "
                     "owner: a}\n",
                     "spec.owner", "is only allowed for provider github");
        expect_error(
                "apiVersion: rpr/v1\nkind: Runner\nmetadata: {name: r}\nspec: {tokenRef: gh, server: s}\n",
                "spec", "needs exactly one of: repo, org");
        expect_error("apiVersion: rpr/v1\nkind: Runner\nmetadata: {name: r}\nspec: {tokenRef: gh, org: a}\n",
                     "spec", "needs exactly one of: server, servers");
        expect_error("apiVersion: rpr/v1\nkind: Token\nmetadata: {name: t}\nspec: {type: github, value: x, "
                     "role: admin}\n",
                     "spec.role", "is only allowed for type api");
        expect_error("apiVersion: rpr/v1\nkind: Token\nmetadata: {name: t}\nspec: {type: github}\n", "spec",
                     "needs one of: value, valueFrom, valueHash");
        expect_error("apiVersion: rpr/v1\nkind: Token\nmetadata: {name: t}\n"
                     "spec: {type: github, valueFrom: {file: /a, env: B}}\n",
                     "spec.valueFrom.env", "cannot be set together with file");
}

/* ---- tokens and redaction ---------------------------------------------------- */

static void test_api_token_value_is_hashed(void **state) {
        (void) state;
        char hex[65], want[80];
        json_t *o = prepare_ok("apiVersion: rpr/v1\nkind: Token\nmetadata: {name: ci}\n"
                               "spec: {type: api, value: s3cret-value}\n");

        sha256_hex("s3cret-value", strlen("s3cret-value"), hex);
        snprintf(want, sizeof want, "sha256:%s", hex);
        assert_null(at(o, "spec.value"));
        assert_string_equal(str_at(o, "spec.valueHash"), want);
        assert_string_equal(str_at(o, "spec.role"), "viewer");
        json_decref(o);

        /* Other token types keep their value (rpr needs to use it). */
        o = prepare_ok("apiVersion: rpr/v1\nkind: Token\nmetadata: {name: gh}\nspec: {type: github, value: "
                       "ghp_x}\n");
        assert_string_equal(str_at(o, "spec.value"), "ghp_x");
        json_decref(o);

        /* Agent tokens (join tokens, agents' credentials) are hashes too. */
        o = prepare_ok("apiVersion: rpr/v1\nkind: Token\nmetadata: {name: join}\n"
                       "spec: {type: agent, value: s3cret-value, singleUse: true}\n");
        assert_null(at(o, "spec.value"));
        assert_string_equal(str_at(o, "spec.valueHash"), want);
        assert_null(at(o, "spec.role"));
        json_decref(o);
}

static void test_agent_token_fields(void **state) {
        (void) state;
        expect_error("apiVersion: rpr/v1\nkind: Token\nmetadata: {name: t}\nspec: {type: api, value: x, "
                     "server: web}\n",
                     "spec.server", "is only allowed for type agent");
        expect_error("apiVersion: rpr/v1\nkind: Token\nmetadata: {name: t}\nspec: {type: github, value: x, "
                     "singleUse: true}\n",
                     "spec.singleUse", "is only allowed for type agent");
        expect_error("apiVersion: rpr/v1\nkind: Token\nmetadata: {name: t}\nspec: {type: agent, "
                     "valueFrom: {env: JOIN}}\n",
                     "spec.valueFrom", "is not allowed for type agent");
        expect_error("apiVersion: rpr/v1\nkind: Token\nmetadata: {name: t}\nspec: {type: agent, value: x, "
                     "server: web, singleUse: true}\n",
                     "spec.singleUse", "is for join tokens");
        expect_error("apiVersion: rpr/v1\nkind: Token\nmetadata: {name: t}\nspec: {type: agent, value: x, "
                     "role: admin}\n",
                     "spec.role", "is only allowed for type api");
}

static void test_secrets_never_in_messages(void **state) {
        (void) state;
        Diags d = DIAGS_INIT;

        prepare_fails("apiVersion: rpr/v1\nkind: Token\nmetadata: {name: t}\n"
                      "spec: {type: api, valueHash: sha256:TOPSECRET}\n",
                      &d);
        for (size_t i = 0; i < d.n; i++)
                assert_null(strstr(d.items[i].message, "TOPSECRET"));
        diags_free(&d);
}

static void test_redact_removes_secrets(void **state) {
        (void) state;
        json_t *o = prepare_ok("apiVersion: rpr/v1\nkind: Token\nmetadata: {name: gh}\nspec: {type: github, "
                               "value: ghp_x}\n");
        resource_redact(o);
        assert_null(at(o, "spec.value"));
        assert_string_equal(str_at(o, "spec.type"), "github");
        json_decref(o);

        o = prepare_ok(
                "apiVersion: rpr/v1\nkind: Token\nmetadata: {name: ci}\nspec: {type: api, value: abc}\n");
        resource_redact(o);
        assert_null(at(o, "spec.valueHash"));
        assert_null(at(o, "spec.value"));
        json_decref(o);

        o = prepare_ok(SRV "spec: {host: h}\n");
        resource_redact(o);
        assert_string_equal(str_at(o, "spec.host"), "h");
        json_decref(o);
}

/* Objects of kinds without secrets leave rprd as stored, text and all. */
static void test_kinds_with_secrets(void **state) {
        size_t n;
        const Kind *const *all = kind_all(&n);

        (void) state;
        assert_true(kind_has_secrets(kind_lookup("Token")));
        for (size_t i = 0; i < n; i++) {
                const char *name = kind_name(all[i]);
                /* Today only Token has fields marked x-rpr-secret. */
                assert_int_equal(kind_has_secrets(all[i]), STREQ(name, "Token"));
        }
}

static void test_display_name(void **state) {
        (void) state;
        json_t *o = parse("kind: Server\nmetadata: {name: web-1}\n");
        char *s = resource_display_name(o);
        assert_string_equal(s, "Server/web-1");
        free(s);
        json_decref(o);
        o = parse("kind: Server\n");
        s = resource_display_name(o);
        assert_string_equal(s, "Server/<unnamed>");
        free(s);
        json_decref(o);
}

/* ---- selectors ------------------------------------------------------------------ */

static bool sel(const char *text, const char *labels_json) {
        Selector *s = NULL;
        char *err = NULL;
        json_t *labels = json_loads(labels_json, 0, NULL);

        assert_int_equal(selector_parse(text, &s, &err), 0);
        assert_null(err);
        bool m = selector_matches(s, labels);
        selector_free(s);
        json_decref(labels);
        return m;
}

static void test_selector_matches(void **state) {
        (void) state;
        const char *web = "{\"role\":\"web\",\"env\":\"prod\"}";

        assert_true(sel("role=web", web));
        assert_true(sel("role==web", web));
        assert_false(sel("role=db", web));
        assert_true(sel("role!=db", web));
        assert_true(sel("zone!=a", web));
        assert_true(sel("role", web));
        assert_false(sel("zone", web));
        assert_true(sel("!zone", web));
        assert_false(sel("!role", web));
        assert_true(sel("role in (db, web)", web));
        assert_false(sel("role in (db)", web));
        assert_true(sel("role notin (db)", web));
        assert_true(sel("zone notin (a)", web));
        assert_true(sel("role=web,env=prod", web));
        assert_false(sel("role=web, env=dev", web));
        assert_true(sel("", web));
        assert_true(selector_matches(NULL, NULL));
}

static void test_selector_errors_name_the_bad_part(void **state) {
        (void) state;
        static const struct {
                const char *text, *part;
        } bad[] = {
                {"role in (a", "missing \")\""}, {"role in a", "expected \"(\""},
                {"=x", "expected a label key"},  {"role=web,", "nothing after"},
                {"role>3", "unexpected \">3\""}, {"!", "expected a label key"},
                {"a=b c=d", "expected \",\""},
        };

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                Selector *s = NULL;
                char *err = NULL;
                assert_int_equal(selector_parse(bad[i].text, &s, &err), -EINVAL);
                assert_null(s);
                assert_non_null(err);
                if (!strstr(err, bad[i].part))
                        print_error("selector %s: %s\n", bad[i].text, err);
                assert_non_null(strstr(err, bad[i].part));
                assert_non_null(strstr(err, "invalid label selector"));
                free(err);
        }
}

/* ---- explain -------------------------------------------------------------------- */

static void explain_has(const char *path, const char *const *want, size_t n) {
        char *text = NULL, *err = NULL;

        assert_int_equal(resource_explain(path, &text, &err), 0);
        for (size_t i = 0; i < n; i++) {
                if (!strstr(text, want[i]))
                        print_error("explain %s lacks \"%s\":\n%s\n", path, want[i], text);
                assert_non_null(strstr(text, want[i]));
        }
        free(text);
}

static void test_explain(void **state) {
        (void) state;
        const char *kind[] = {
                "KIND:     Server",   "VERSION:  rpr/v1", "DESCRIPTION:",    "apiVersion\t<string>",
                "metadata\t<Object>", "spec\t<Object>",   "status\t<Object>"};
        const char *spec[] = {"FIELD:    spec <Object>", "transport\t<string>", "One of: ssh, local, agent.",
                              "Default: ssh.",           "port\t<integer>",     "Range: 1..65535.",
                              "check\t<Object>"};
        const char *leaf[] = {"FIELD:    interval <string>", "Default: 12h.", "Format: duration"};
        const char *tasks[] = {"map[string]Object", "script\t<string or []string> -required-",
                               "dependsOn\t<[]string>"};
        const char *task[] = {"FIELD:    script <string or []string>"};
        const char *token[] = {"value\t<string>", "Secret: never returned by the API."};
        const char *meta[] = {"name\t<string> -required-", "labels\t<map[string]string>"};

        explain_has("server", kind, ELEMENTSOF(kind));
        explain_has("srv.spec", spec, ELEMENTSOF(spec));
        explain_has("servers.spec.check.interval", leaf, ELEMENTSOF(leaf));
        explain_has("pipeline.spec.tasks", tasks, ELEMENTSOF(tasks));
        explain_has("pipeline.spec.tasks.build.script", task, ELEMENTSOF(task));
        explain_has("token.spec", token, ELEMENTSOF(token));
        explain_has("binding.metadata", meta, ELEMENTSOF(meta));

        char *text = NULL, *err = NULL;
        assert_int_equal(resource_explain("server.spec.foo", &text, &err), -ENOENT);
        assert_null(text);
        assert_string_equal(err, "field \"spec.foo\" does not exist in Server");
        free(err);
        err = NULL;
        assert_int_equal(resource_explain("gizmo", &text, &err), -ENOENT);
        assert_non_null(strstr(err, "gizmo"));
        free(err);
}

/* ---- odd input ------------------------------------------------------------------ */

static void test_prepare_rejects_non_objects(void **state) {
        (void) state;
        Diags d = DIAGS_INIT;
        json_t *v = json_string("x");

        assert_int_equal(resource_prepare(v, 0, &d), -EINVAL);
        assert_int_equal(d.n, 1);
        json_decref(v);
        diags_free(&d);
        expect_error("apiVersion: rpr/v1\nkind: Server\nmetadata: [a]\n", "metadata", "must be an object");
}

/* The manifests `make run` applies must pass as they are. */
static void test_quickstart_examples_validate(void **state) {
        (void) state;
        glob_t g;

        assert_int_equal(glob("examples/quickstart/*.yaml", 0, NULL, &g), 0);
        assert_true(g.gl_pathc >= 4);
        for (size_t i = 0; i < g.gl_pathc; i++) {
                char *data = NULL;
                size_t len = 0;
                YamlDoc **docs = NULL;
                size_t n = 0;
                Diags d = DIAGS_INIT;

                assert_int_equal(read_file(g.gl_pathv[i], 1 << 20, &data, &len), 0);
                assert_int_equal(yaml_parse(data, len, g.gl_pathv[i], &docs, &n, &d), 0);
                for (size_t j = 0; j < n; j++) {
                        if (resource_prepare(yamldoc_root(docs[j]), (int) j, &d) < 0)
                                print_error("%s\n", g.gl_pathv[i]);
                }
                dump_diags(&d);
                assert_int_equal(d.n, 0);
                yamldocs_free(docs, n);
                diags_free(&d);
                free(data);
        }
        globfree(&g);
}

/* The fields the store indexes come from the schemas' x-rpr-index. */
static void test_indexed_fields_from_the_schemas(void **state) {
        const char *const *f;
        (void) state;

        f = kind_indexed_fields(kind_lookup("Binding"));
        assert_string_equal(f[0], "repo");
        assert_null(f[1]);
        f = kind_indexed_fields(kind_lookup("Repo"));
        assert_string_equal(f[0], "tokenRef");
        assert_null(f[1]);
        f = kind_indexed_fields(kind_lookup("Run"));
        assert_string_equal(f[0], "server");
        assert_null(f[1]);
        f = kind_indexed_fields(kind_lookup("Token"));
        assert_string_equal(f[0], "type");
        assert_null(f[1]);
        assert_null(kind_indexed_fields(kind_lookup("Server"))[0]);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_indexed_fields_from_the_schemas),
                cmocka_unit_test(test_kind_all_in_stable_order),
                cmocka_unit_test(test_kind_lookup_accepts_every_alias),
                cmocka_unit_test(test_kind_user_writable_and_columns),
                cmocka_unit_test(test_token_minimal_and_full),
                cmocka_unit_test(test_repo_minimal_and_full),
                cmocka_unit_test(test_server_minimal_and_full),
                cmocka_unit_test(test_binding_minimal_and_full),
                cmocka_unit_test(test_pipeline_minimal_and_full),
                cmocka_unit_test(test_runner_minimal_and_full),
                cmocka_unit_test(test_run_and_event_minimal_and_full),
                cmocka_unit_test(test_wrong_type_integer),
                cmocka_unit_test(test_wrong_type_string_and_boolean),
                cmocka_unit_test(test_enum),
                cmocka_unit_test(test_pattern_and_lengths),
                cmocka_unit_test(test_minimum_maximum),
                cmocka_unit_test(test_unknown_field),
                cmocka_unit_test(test_missing_required),
                cmocka_unit_test(test_bad_duration_and_date),
                cmocka_unit_test(test_bad_names_and_labels),
                cmocka_unit_test(test_unknown_kind_and_api_version),
                cmocka_unit_test(test_system_fields_dropped_and_status_dropped),
                cmocka_unit_test(test_several_errors_reported_at_once),
                cmocka_unit_test(test_pipeline_cycle),
                cmocka_unit_test(test_pipeline_missing_dependency_and_on_error),
                cmocka_unit_test(test_pipeline_schedule_and_script),
                cmocka_unit_test(test_binding_server_servers_exclusive),
                cmocka_unit_test(test_other_cross_field_checks),
                cmocka_unit_test(test_api_token_value_is_hashed),
                cmocka_unit_test(test_agent_token_fields),
                cmocka_unit_test(test_secrets_never_in_messages),
                cmocka_unit_test(test_redact_removes_secrets),
                cmocka_unit_test(test_kinds_with_secrets),
                cmocka_unit_test(test_display_name),
                cmocka_unit_test(test_selector_matches),
                cmocka_unit_test(test_selector_errors_name_the_bad_part),
                cmocka_unit_test(test_explain),
                cmocka_unit_test(test_prepare_rejects_non_objects),
                cmocka_unit_test(test_quickstart_examples_validate),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
