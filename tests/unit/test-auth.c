/* Unit tests for pkg/auth: roles and scopes, what reaches rprd's host,
 * what a Token may grant and where it lives, the secret rules, the
 * throttle on a fake clock, and the token index on a real store (found,
 * expired, unknown, marked for deletion, following writes, rebuilt after
 * falling behind the feed). */
/* cmocka needs these three first. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "auth/auth.h"
#include "resource/resource.h"
#include "store/store.h"

static const char *const ns_a[] = {"a", NULL};
static const AuthCaller root = {AUTH_ROLE_ADMIN, "admin", NULL};
static const AuthCaller team = {AUTH_ROLE_ADMIN, "team", ns_a};
static const AuthCaller op = {AUTH_ROLE_OPERATOR, "op", NULL};
static const AuthCaller viewer = {AUTH_ROLE_VIEWER, "ci", ns_a};

static json_t *obj_of(const char *text) {
        json_error_t err;
        json_t *o = json_loads(text, 0, &err);

        if (!o)
                fail_msg("bad test JSON: %s", err.text);
        return o;
}

static bool has_field(const Diags *d, const char *field, const char *needle) {
        for (size_t i = 0; i < d->n; i++)
                if (d->items[i].field && STREQ(d->items[i].field, field) &&
                    (!needle || strstr(d->items[i].message, needle)))
                        return true;
        return false;
}

/* ---- roles and scopes ------------------------------------------------------------ */

static void test_roles_and_verbs(void **state) {
        (void) state;
        assert_int_equal(auth_role_from_string("viewer"), AUTH_ROLE_VIEWER);
        assert_int_equal(auth_role_from_string("admin"), AUTH_ROLE_ADMIN);
        assert_int_equal(auth_role_from_string("root"), _AUTH_ROLE_INVALID);
        assert_int_equal(auth_role_from_string(NULL), _AUTH_ROLE_INVALID);
        assert_string_equal(auth_role_to_string(AUTH_ROLE_OPERATOR), "operator");
        assert_string_equal(auth_role_to_string(AUTH_ROLE_NONE), "none");

        assert_true(auth_may(&viewer, AUTH_VERB_READ, "Server", "a"));
        assert_false(auth_may(&viewer, AUTH_VERB_READ, "Server", "b"));
        assert_false(auth_may(&viewer, AUTH_VERB_READ, "Server", NULL));
        assert_false(auth_may(&viewer, AUTH_VERB_OPERATE, "Server", "a"));
        assert_true(auth_may(&op, AUTH_VERB_OPERATE, "Binding", "anything"));
        assert_false(auth_may(&op, AUTH_VERB_WRITE, "Binding", "a"));
        assert_true(auth_may(&team, AUTH_VERB_WRITE, "Server", "a"));
        assert_false(auth_may(&team, AUTH_VERB_WRITE, "Server", "default"));

        assert_true(auth_unrestricted(&root));
        assert_false(auth_unrestricted(&team));
        assert_false(auth_unrestricted(&op));

        _cleanup_free_ char *s1 = auth_scope_text(&team), *s2 = auth_scope_text(&root);
        assert_string_equal(s1, "a");
        assert_string_equal(s2, "every namespace");
}

static void assert_scope(const char *ns, const char *nss_json, const char *want) {
        _cleanup_json_ json_t *nss = nss_json ? obj_of(nss_json) : NULL;
        char **scope = auth_token_scope(ns, nss);
        Buf b = BUF_INIT;

        if (!scope) {
                assert_null(want);
                return;
        }
        for (size_t i = 0; scope[i]; i++)
                buf_printf(&b, "%s%s", i ? "," : "", scope[i]);
        assert_non_null(want);
        assert_string_equal(b.data ? b.data : "", want);
        buf_free(&b);
        auth_strv_free(scope);
}

static void test_token_scope_is_bounded_by_its_namespace(void **state) {
        (void) state;
        assert_scope("default", NULL, NULL);
        assert_scope("default", "[\"a\", \"b\"]", "a,b");
        assert_scope("a", NULL, "a");
        assert_scope("a", "[\"a\", \"default\"]", "a");
        assert_scope("a", "[\"default\"]", "");
        assert_scope("a", "[]", "");
}

/* ---- what reaches rprd's host ------------------------------------------------------- */

static size_t host_fields(const char *text, Diags *d) {
        _cleanup_json_ json_t *o = obj_of(text);
        return auth_host_fields(o, 0, d);
}

static void test_host_fields(void **state) {
        Diags d = DIAGS_INIT;
        (void) state;

        assert_int_equal(
                host_fields("{\"kind\":\"Server\",\"metadata\":{\"name\":\"s\"},\"spec\":{\"transport\":"
                            "\"local\",\"identityFile\":\"/k\",\"knownHostsFile\":\"/h\"}}",
                            &d),
                3);
        assert_true(has_field(&d, "spec.transport",
                              "local execution on rprd's host needs an unrestricted admin"));
        assert_true(has_field(&d, "spec.identityFile", "unrestricted admin"));
        assert_true(has_field(&d, "spec.knownHostsFile", "unrestricted admin"));
        assert_string_equal(d.items[0].object, "Server/s");
        diags_free(&d);

        assert_int_equal(
                host_fields("{\"kind\":\"Server\",\"metadata\":{\"name\":\"s\"},\"spec\":{\"host\":\"h\","
                            "\"keyRef\":\"k\",\"hostKey\":\"x\"}}",
                            &d),
                0);
        assert_int_equal(
                host_fields("{\"kind\":\"Pipeline\",\"metadata\":{\"name\":\"p\"},\"spec\":{\"tasks\":{"
                            "\"build\":{\"script\":\"make\"},\"ship\":{\"script\":\"x\",\"server\":\"w\"},"
                            "\"all\":{\"script\":\"x\",\"servers\":{\"matchLabels\":{}}}}}}",
                            &d),
                1);
        assert_true(has_field(&d, "spec.tasks.build", "runs on rprd's host"));
        diags_free(&d);

        assert_int_equal(
                host_fields(
                        "{\"kind\":\"Token\",\"metadata\":{\"name\":\"t\"},\"spec\":{\"type\":\"github\","
                        "\"valueFrom\":{\"file\":\"/f\",\"env\":\"E\"}}}",
                        &d),
                2);
        assert_true(has_field(&d, "spec.valueFrom.file", NULL));
        assert_true(has_field(&d, "spec.valueFrom.env", NULL));
        diags_free(&d);

        assert_int_equal(
                host_fields(
                        "{\"kind\":\"Repo\",\"metadata\":{\"name\":\"r\"},\"spec\":{\"provider\":\"git\","
                        "\"url\":\"FILE:///srv/git/x\"}}",
                        &d),
                1);
        assert_int_equal(
                host_fields(
                        "{\"kind\":\"Repo\",\"metadata\":{\"name\":\"r\"},\"spec\":{\"provider\":\"git\","
                        "\"url\":\"/srv/git/x\"}}",
                        &d),
                1);
        assert_int_equal(
                host_fields(
                        "{\"kind\":\"Repo\",\"metadata\":{\"name\":\"r\"},\"spec\":{\"provider\":\"git\","
                        "\"url\":\"https://example.com/x.git\"}}",
                        &d),
                0);
        assert_int_equal(
                host_fields(
                        "{\"kind\":\"Binding\",\"metadata\":{\"name\":\"b\"},\"spec\":{\"server\":\"s\"}}",
                        &d),
                0);
        diags_free(&d);
}

static void test_check_write_needs_unrestricted_for_the_host(void **state) {
        _cleanup_json_ json_t *local =
                obj_of("{\"kind\":\"Server\",\"metadata\":{\"name\":\"s\",\"namespace\":\"a\"},"
                       "\"spec\":{\"transport\":\"local\"}}");
        Diags d = DIAGS_INIT;
        (void) state;

        assert_int_equal(auth_check_write(&root, local, 0, &d), 0);
        assert_int_equal(auth_check_write(&team, local, 3, &d), 1);
        assert_int_equal(d.items[0].index, 3);
        assert_true(has_field(&d, "spec.transport", NULL));
        diags_free(&d);
}

/* ---- what a token may grant ------------------------------------------------------------ */

static size_t grant(const AuthCaller *c, const char *ns, const char *spec_json, Diags *d) {
        _cleanup_json_ json_t *spec = obj_of(spec_json);
        return auth_may_grant(c, ns, spec, 0, d);
}

static void test_may_grant(void **state) {
        Diags d = DIAGS_INIT;
        (void) state;

        /* The unrestricted admin: anything in default, its own namespace elsewhere. */
        assert_int_equal(grant(&root, "default", "{\"role\":\"admin\"}", &d), 0);
        assert_int_equal(grant(&root, "default", "{\"role\":\"admin\",\"namespaces\":[\"a\",\"b\"]}", &d),
                         0);
        assert_int_equal(grant(&root, "a", "{\"role\":\"admin\"}", &d), 0);
        assert_int_equal(grant(&root, "a", "{\"namespaces\":[\"a\",\"default\"]}", &d), 1);
        assert_true(has_field(&d, "spec.namespaces", "can only grant namespace a"));
        diags_free(&d);

        /* A scoped admin: its namespaces, never every namespace. */
        assert_int_equal(grant(&team, "a", "{\"role\":\"admin\"}", &d), 0);
        assert_int_equal(grant(&team, "default", "{\"role\":\"viewer\",\"namespaces\":[\"a\"]}", &d), 0);
        assert_int_equal(grant(&team, "default", "{\"role\":\"viewer\"}", &d), 1);
        assert_true(has_field(&d, "spec.namespaces", "cannot create a token for every namespace"));
        diags_free(&d);
        assert_int_equal(grant(&team, "default", "{\"namespaces\":[\"a\",\"b\"]}", &d), 1);
        assert_true(has_field(&d, "spec.namespaces", "may not grant namespace b"));
        diags_free(&d);

        /* No higher role. */
        assert_int_equal(grant(&op, "default", "{\"role\":\"admin\"}", &d), 1);
        assert_true(has_field(&d, "spec.role", "cannot grant role admin"));
        diags_free(&d);
        assert_int_equal(grant(&op, "default", "{}", &d), 0);
}

/* ---- secrets ------------------------------------------------------------------------------ */

static size_t secrets_of(const char *type, const char *value, Diags *d) {
        _cleanup_json_ json_t *o = json_pack("{s:s, s:{s:s}, s:{s:s, s:s}}", "kind", "Token", "metadata",
                                             "name", "t", "spec", "type", type, "value", value);
        return auth_check_secrets(o, 0, d);
}

static void test_secret_rules(void **state) {
        Diags d = DIAGS_INIT;
        (void) state;

        assert_non_null(auth_secret_weakness("a", 1));
        assert_non_null(auth_secret_weakness("abcabcabcabcabcabc", 18));
        assert_non_null(auth_secret_weakness("abcdefghijklmnopqrstuvwxyz", 26));
        assert_non_null(auth_secret_weakness("9876543210987654", 16));
        assert_null(auth_secret_weakness("Xq3vT9pLm2ZrK8wB", 16));

        assert_int_equal(secrets_of("api", "short", &d), 1);
        assert_true(has_field(&d, "spec.value", "too weak for an api token"));
        diags_free(&d);
        assert_int_equal(secrets_of("api", "Xq3vT9pLm2ZrK8wB", &d), 0);
        /* Only api tokens are rprd's to judge; a webhook secret is GitHub's. */
        assert_int_equal(secrets_of("webhook", "short", &d), 0);
        assert_int_equal(secrets_of("github", "ghp_abc\r\nX-Evil: 1", &d), 1);
        assert_true(has_field(&d, "spec.value", "control character"));
        diags_free(&d);
        assert_int_equal(secrets_of("ssh-key", "-----BEGIN KEY-----\nAAAA\n-----END KEY-----\n", &d), 0);
}

/* ---- the throttle --------------------------------------------------------------------------- */

static void test_throttle_backs_off_and_forgets(void **state) {
        AuthThrottle *t = auth_throttle_new();
        uint64_t now = 1000 * USEC_PER_SEC;
        (void) state;

        for (unsigned i = 0; i < AUTH_THROTTLE_FREE; i++)
                assert_int_equal(auth_throttle_failed(t, "127.0.0.1", now), 0);
        assert_int_equal(auth_throttle_wait(t, "127.0.0.1", now), 0);
        assert_int_equal(auth_throttle_failed(t, "127.0.0.1", now), 1);
        assert_int_equal(auth_throttle_wait(t, "127.0.0.1", now), 1);
        assert_int_equal(auth_throttle_wait(t, "127.0.0.2", now), 0);
        now += USEC_PER_SEC;
        assert_int_equal(auth_throttle_wait(t, "127.0.0.1", now), 0);
        assert_int_equal(auth_throttle_failed(t, "127.0.0.1", now), 2);
        for (unsigned i = 0; i < 30; i++)
                (void) auth_throttle_failed(t, "127.0.0.1", now);
        assert_int_equal(auth_throttle_wait(t, "127.0.0.1", now),
                         AUTH_THROTTLE_MAX_WAIT_USEC / USEC_PER_SEC);

        /* Quiet long enough: a fresh start. */
        now += AUTH_THROTTLE_FORGET_USEC + AUTH_THROTTLE_MAX_WAIT_USEC;
        assert_int_equal(auth_throttle_wait(t, "127.0.0.1", now), 0);
        assert_int_equal(auth_throttle_failed(t, "127.0.0.1", now), 0);

        /* More sources than it remembers: the oldest makes room. */
        for (unsigned i = 0; i < AUTH_THROTTLE_SOURCES + 10; i++) {
                char name[32];
                snprintf(name, sizeof name, "peer-%u", i);
                (void) auth_throttle_failed(t, name, now + i);
        }
        auth_throttle_free(t);
}

/* ---- the token index on a real store ------------------------------------------------------------ */

typedef struct Fixture {
        char dir[64];
        Store *store;
} Fixture;

static int setup(void **state) {
        Fixture *f = xcalloc(1, sizeof *f);
        _cleanup_free_ char *url = NULL;

        snprintf(f->dir, sizeof f->dir, "/tmp/test-auth-XXXXXX");
        assert_non_null(mkdtemp(f->dir));
        url = xasprintf("sqlite:%s/state.db", f->dir);
        assert_int_equal(store_open(url, &f->store), 0);
        *state = f;
        return 0;
}

static int teardown(void **state) {
        Fixture *f = *state;
        _cleanup_free_ char *db = xasprintf("%s/state.db", f->dir);

        store_close(f->store);
        for (const char *ext = ""; ext; ext = STREQ(ext, "") ? "-wal" : STREQ(ext, "-wal") ? "-shm" : NULL) {
                _cleanup_free_ char *p = xasprintf("%s%s", db, ext);
                (void) unlink(p);
        }
        assert_int_equal(rmdir(f->dir), 0);
        free(f);
        return 0;
}

static void commit(Fixture *f, StoreOpType type, const char *text) {
        _cleanup_json_ json_t *o = obj_of(text);
        Diags d = DIAGS_INIT;

        if (resource_prepare(o, 0, &d) < 0)
                fail_msg("%s", d.items[0].message);
        StoreOp op = {.type = type, .object = o};
        assert_int_equal(store_commit(f->store, &op, 1, false, NULL), 0);
        store_ops_clear(&op, 1);
}

static void put_token(Fixture *f, const char *ns, const char *name, const char *spec_extra) {
        _cleanup_free_ char *text =
                xasprintf("{\"apiVersion\":\"rpr/"
                          "v1\",\"kind\":\"Token\",\"metadata\":{\"name\":\"%s\",\"namespace\":\"%s\","
                          "\"finalizers\":[\"example.com/hold\"]},\"spec\":{\"type\":\"api\"%s}}",
                          name, ns, spec_extra);
        commit(f, STORE_OP_UPDATE, text);
}

static int identify(AuthTokens *t, const char *secret, AuthIdentity **ret) {
        *ret = NULL;
        return auth_tokens_identify(t, secret, strlen(secret), ret);
}

static void test_index_finds_and_follows(void **state) {
        Fixture *f = *state;
        AuthTokens *t = NULL;
        AuthIdentity *id = NULL;

        put_token(f, "default", "ci", ",\"role\":\"operator\",\"value\":\"Xq3vT9pLm2ZrK8wB\"");
        assert_int_equal(auth_tokens_new(f->store, &t), 0);
        assert_int_equal(auth_tokens_count(t), 1);

        assert_int_equal(identify(t, "Xq3vT9pLm2ZrK8wB", &id), 0);
        assert_string_equal(id->caller.name, "ci");
        assert_int_equal(id->caller.role, AUTH_ROLE_OPERATOR);
        assert_null(id->caller.namespaces);
        auth_identity_free(id);
        assert_int_equal(identify(t, "nope-nope-nope-nope", &id), -EACCES);
        assert_null(id);

        /* Written after the index was made: followed from the feed. */
        put_token(f, "a", "team",
                  ",\"role\":\"admin\",\"value\":\"Pw7Rk2Lx9QzT4mVb\",\"namespaces\":[\"a\",\"default\"]");
        assert_int_equal(identify(t, "Pw7Rk2Lx9QzT4mVb", &id), 0);
        assert_string_equal(id->ns, "a");
        assert_non_null(id->caller.namespaces);
        assert_string_equal(id->caller.namespaces[0], "a");
        assert_null(id->caller.namespaces[1]); /* never default, from namespace a */
        auth_identity_free(id);

        put_token(f, "default", "old", ",\"value\":\"Hn3Jq8Ws5Ke2Zr7D\",\"expires\":\"2020-01-01\"");
        assert_int_equal(identify(t, "Hn3Jq8Ws5Ke2Zr7D", &id), -EKEYEXPIRED);
        assert_string_equal(id->expires, "2020-01-01");
        auth_identity_free(id);

        /* A new secret replaces the old one; a Token held by its finalizer
         * after a delete is dead. */
        put_token(f, "default", "ci", ",\"value\":\"Bv6Nc1Xm4Lq9Wt3S\"");
        assert_int_equal(identify(t, "Xq3vT9pLm2ZrK8wB", &id), -EACCES);
        assert_int_equal(identify(t, "Bv6Nc1Xm4Lq9Wt3S", &id), 0);
        auth_identity_free(id);
        StoreOp del = {.type = STORE_OP_DELETE, .kind = "Token", .ns = "default", .name = "ci"};
        assert_int_equal(store_commit(f->store, &del, 1, false, NULL), 0);
        store_ops_clear(&del, 1);
        assert_int_equal(identify(t, "Bv6Nc1Xm4Lq9Wt3S", &id), -EACCES);
        assert_int_equal(auth_tokens_count(t), 2);
        auth_tokens_free(t);
}

/* Agent Tokens are in the index too, each with its use: a join token and
 * an agent's credential, which speaks for its Server alone and has no role. */
static void test_index_knows_agent_tokens_by_use(void **state) {
        Fixture *f = *state;
        AuthTokens *t = NULL;
        AuthIdentity *id = NULL;

        commit(f, STORE_OP_APPLY,
               "{\"apiVersion\":\"rpr/v1\",\"kind\":\"Token\",\"metadata\":{\"name\":\"join\"},"
               "\"spec\":{\"type\":\"agent\",\"value\":\"Jn7Qw2Lk9Xv4Rt8Zp3Mb\",\"singleUse\":true}}");
        commit(f, STORE_OP_APPLY,
               "{\"apiVersion\":\"rpr/v1\",\"kind\":\"Token\",\"metadata\":{\"name\":\"agent-edge\","
               "\"namespace\":\"fleet\"},\"spec\":{\"type\":\"agent\",\"server\":\"edge\","
               "\"value\":\"Cr4Vb8Nm2Qw6Er1Ty5Ui\"}}");
        assert_int_equal(auth_tokens_new(f->store, &t), 0);

        assert_int_equal(identify(t, "Jn7Qw2Lk9Xv4Rt8Zp3Mb", &id), 0);
        assert_int_equal(id->use, AUTH_USE_AGENT_JOIN);
        assert_true(id->single_use);
        assert_int_equal(id->caller.role, AUTH_ROLE_NONE);
        assert_null(id->caller.agent);
        auth_identity_free(id);

        assert_int_equal(identify(t, "Cr4Vb8Nm2Qw6Er1Ty5Ui", &id), 0);
        assert_int_equal(id->use, AUTH_USE_AGENT);
        assert_int_equal(id->caller.role, AUTH_ROLE_NONE);
        assert_string_equal(id->caller.agent, "edge");
        assert_string_equal(id->caller.namespaces[0], "fleet");
        assert_true(auth_may_agent(&id->caller, "fleet", "edge"));
        assert_false(auth_may_agent(&id->caller, "fleet", "other"));
        assert_false(auth_may_agent(&id->caller, "default", "edge"));
        /* No role: it may read or do nothing else. */
        assert_false(auth_may(&id->caller, AUTH_VERB_READ, "Server", "fleet"));
        auth_identity_free(id);

        /* An api token is no agent. */
        AuthCaller admin = {.role = AUTH_ROLE_ADMIN, .name = "admin"};
        assert_false(auth_may_agent(&admin, "fleet", "edge"));
        auth_tokens_free(t);
}

static void test_index_rebuilds_after_falling_behind(void **state) {
        Fixture *f = *state;
        AuthTokens *t = NULL;
        AuthIdentity *id = NULL;
        size_t n = STORE_RING_SIZE + 100;
        StoreOp *ops = xcalloc(n, sizeof *ops);
        json_t **objs = xcalloc(n, sizeof *objs);

        assert_int_equal(auth_tokens_new(f->store, &t), 0);
        put_token(f, "default", "ci", ",\"value\":\"Xq3vT9pLm2ZrK8wB\"");
        /* More writes than the feed keeps, in one commit. */
        for (size_t i = 0; i < n; i++) {
                _cleanup_free_ char *text =
                        xasprintf("{\"apiVersion\":\"rpr/v1\",\"kind\":\"Server\",\"metadata\":{"
                                  "\"name\":\"s%zu\"},\"spec\":{\"host\":\"127.0.0.1\"}}",
                                  i);
                Diags d = DIAGS_INIT;
                objs[i] = obj_of(text);
                assert_int_equal(resource_prepare(objs[i], 0, &d), 0);
                ops[i] = (StoreOp){.type = STORE_OP_APPLY, .object = objs[i]};
        }
        assert_int_equal(store_commit(f->store, ops, n, false, NULL), 0);
        store_ops_clear(ops, n);
        for (size_t i = 0; i < n; i++)
                json_decref(objs[i]);
        free(objs);
        free(ops);

        assert_int_equal(identify(t, "Xq3vT9pLm2ZrK8wB", &id), 0);
        assert_string_equal(id->caller.name, "ci");
        auth_identity_free(id);
        auth_tokens_free(t);
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

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_roles_and_verbs),
                cmocka_unit_test(test_token_scope_is_bounded_by_its_namespace),
                cmocka_unit_test(test_host_fields),
                cmocka_unit_test(test_check_write_needs_unrestricted_for_the_host),
                cmocka_unit_test(test_may_grant),
                cmocka_unit_test(test_secret_rules),
                cmocka_unit_test(test_throttle_backs_off_and_forgets),
                cmocka_unit_test_setup_teardown(test_index_finds_and_follows, setup, teardown),
                cmocka_unit_test_setup_teardown(test_index_knows_agent_tokens_by_use, setup, teardown),
                cmocka_unit_test_setup_teardown(test_index_rebuilds_after_falling_behind, setup, teardown),
        };
        return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
