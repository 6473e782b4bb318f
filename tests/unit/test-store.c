/* Unit tests for pkg/store: outcomes and the metadata rules (uid,
 * generation, resourceVersion, status, finalizers and deletionTimestamp),
 * optimistic concurrency, all-or-nothing commits and dry runs, durability
 * across a reopen, the change feed, schema migrations and a large commit.
 * Every test works on its own SQLite file in a fresh temporary directory. */
/* cmocka needs these three first. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "store/store-backend.h"
#include "resource/resource.h"
#include "store/store.h"

/* ---- fixture ----------------------------------------------------------- */

typedef struct Fixture {
        char dir[64];
        char *path, *url;
        Store *store;
} Fixture;

static int setup(void **state) {
        Fixture *f = xcalloc(1, sizeof *f);

        snprintf(f->dir, sizeof f->dir, "/tmp/test-store-XXXXXX");
        assert_non_null(mkdtemp(f->dir));
        f->path = xasprintf("%s/state.db", f->dir);
        f->url = xasprintf("sqlite:%s", f->path);
        assert_int_equal(store_open(f->url, &f->store), 0);
        *state = f;
        return 0;
}

static int teardown(void **state) {
        Fixture *f = *state;
        const char *suffixes[] = {"", "-wal", "-shm"};

        store_close(f->store);
        for (size_t i = 0; i < ELEMENTSOF(suffixes); i++) {
                char *p = xasprintf("%s%s", f->path, suffixes[i]);
                (void) unlink(p);
                free(p);
        }
        assert_int_equal(rmdir(f->dir), 0);
        free(f->path);
        free(f->url);
        free(f);
        return 0;
}

static void reopen(Fixture *f) {
        store_close(f->store);
        f->store = NULL;
        assert_int_equal(store_open(f->url, &f->store), 0);
}

/* ---- helpers ----------------------------------------------------------- */

static json_t *server(const char *name, const char *host, const char *role) {
        return json_pack("{s:s, s:s, s:{s:s, s:s, s:{s:s}}, s:{s:s, s:s, s:i}}", "apiVersion", "rpr/v1",
                         "kind", "Server", "metadata", "name", name, "namespace", "default", "labels",
                         "role", role, "spec", "transport", "ssh", "host", host, "port", 22);
}

/* Commits one op and returns its outcome; the result goes to *ret (optional). */
static int commit1(Store *s, StoreOpType type, json_t *obj, uint64_t expect, StoreOutcome *ret_outcome,
                   json_t **ret) {
        StoreOp op = {.type = type, .object = obj, .expect_revision = expect};
        int r = store_commit(s, &op, 1, false, NULL);

        if (r >= 0 && ret_outcome)
                *ret_outcome = op.outcome;
        if (r >= 0 && ret)
                *ret = store_op_result_json(&op);
        store_ops_clear(&op, 1);
        return r;
}

static StoreOutcome apply_ok(Store *s, json_t *obj) {
        StoreOutcome o;

        assert_int_equal(commit1(s, STORE_OP_APPLY, obj, 0, &o, NULL), 0);
        return o;
}

static int delete_op(Store *s, const char *kind, const char *name, StoreOutcome *ret_outcome) {
        StoreOp op = {.type = STORE_OP_DELETE, .kind = kind, .ns = "default", .name = name};
        int r = store_commit(s, &op, 1, false, NULL);

        if (r >= 0 && ret_outcome)
                *ret_outcome = op.outcome;
        store_ops_clear(&op, 1);
        return r;
}

static json_t *get(Store *s, const char *name) {
        json_t *obj = NULL;

        assert_int_equal(store_get_json(s, "Server", "default", name, &obj), 0);
        return obj;
}

static const char *meta_s(const json_t *obj, const char *key) {
        return json_string_value(json_object_get(json_object_get(obj, "metadata"), key));
}

static json_int_t generation(const json_t *obj) {
        return json_integer_value(json_object_get(json_object_get(obj, "metadata"), "generation"));
}

static uint64_t rv(const json_t *obj) {
        uint64_t v = 0;

        assert_int_equal(parse_uint64(meta_s(obj, "resourceVersion"), &v), 0);
        return v;
}

/* ---- outcomes and metadata --------------------------------------------- */

static void test_apply_creates_configures_and_leaves_unchanged(void **state) {
        Fixture *f = *state;
        json_t *a = server("web-1", "127.0.0.11", "web"), *b = server("web-1", "127.0.0.12", "web");
        json_t *obj;

        assert_int_equal(apply_ok(f->store, a), STORE_CREATED);
        assert_int_equal(store_revision(f->store), 1);
        obj = get(f->store, "web-1");
        assert_int_equal(strlen(meta_s(obj, "uid")), 36);
        assert_string_equal(meta_s(obj, "resourceVersion"), "1");
        assert_non_null(meta_s(obj, "creationTimestamp"));
        assert_int_equal(generation(obj), 1);
        json_decref(obj);

        assert_int_equal(apply_ok(f->store, a), STORE_UNCHANGED);
        assert_int_equal(store_revision(f->store), 1);
        assert_int_equal(apply_ok(f->store, b), STORE_CONFIGURED);
        assert_int_equal(store_revision(f->store), 2);
        assert_int_equal(store_count(f->store, "Server"), 1);
        assert_int_equal(store_count(f->store, NULL), 1);
        assert_string_equal(store_outcome_to_string(STORE_CONFIGURED), "configured");
        json_decref(a);
        json_decref(b);
}

/* A result is the stored text with its revision: for an unchanged object
 * exactly what a get returns. */
static void test_results_are_the_stored_text(void **state) {
        Fixture *f = *state;
        json_t *a = server("web-1", "127.0.0.11", "web");
        StoreOp op = {.type = STORE_OP_APPLY, .object = a};
        _cleanup_free_ char *stored = NULL;

        assert_int_equal(store_commit(f->store, &op, 1, false, NULL), 0);
        assert_int_equal(op.revision, 1);
        store_ops_clear(&op, 1);
        assert_null(op.result);

        assert_int_equal(store_commit(f->store, &op, 1, false, NULL), 0);
        assert_int_equal(op.outcome, STORE_UNCHANGED);
        assert_int_equal(op.revision, 1);
        assert_int_equal(store_get(f->store, "Server", "default", "web-1", &stored), 0);
        assert_int_equal(op.result_len, strlen(stored));
        assert_string_equal(op.result, stored);
        store_ops_clear(&op, 1);

        op = (StoreOp){.type = STORE_OP_DELETE, .kind = "Server", .ns = "default", .name = "web-1"};
        assert_int_equal(store_commit(f->store, &op, 1, false, NULL), 0);
        assert_int_equal(op.revision, 2); /* the delete's own revision */
        assert_non_null(strstr(op.result, "\"127.0.0.11\""));
        store_ops_clear(&op, 1);
        json_decref(a);
}

/* managedBy is kept by a write that does not name it (a person's apply),
 * set by one that does (a Sync) and cleared by JSON null (a Sync letting
 * the object go). */
static void test_managed_by_kept_set_and_cleared(void **state) {
        Fixture *f = *state;
        json_t *a = server("web-1", "h1", "web"), *obj;

        json_object_set_new(json_object_get(a, "metadata"), "managedBy", json_string("sync/fleet"));
        apply_ok(f->store, a);
        json_object_del(json_object_get(a, "metadata"), "managedBy");
        assert_int_equal(apply_ok(f->store, a), STORE_UNCHANGED);
        obj = get(f->store, "web-1");
        assert_string_equal(meta_s(obj, "managedBy"), "sync/fleet");
        json_decref(obj);

        json_object_set_new(json_object_get(a, "metadata"), "managedBy", json_null());
        assert_int_equal(apply_ok(f->store, a), STORE_CONFIGURED);
        obj = get(f->store, "web-1");
        assert_null(json_object_get(json_object_get(obj, "metadata"), "managedBy"));
        json_decref(obj);
        json_decref(a);
}

static void test_generation_bumps_only_on_spec_change(void **state) {
        Fixture *f = *state;
        json_t *a = server("web-1", "h1", "web"), *relabeled = server("web-1", "h1", "db"),
               *respec = server("web-1", "h2", "db");
        json_t *obj;

        apply_ok(f->store, a);
        assert_int_equal(apply_ok(f->store, relabeled), STORE_CONFIGURED);
        obj = get(f->store, "web-1");
        assert_int_equal(generation(obj), 1);
        assert_int_equal(rv(obj), 2);
        json_decref(obj);

        assert_int_equal(apply_ok(f->store, respec), STORE_CONFIGURED);
        obj = get(f->store, "web-1");
        assert_int_equal(generation(obj), 2);
        assert_int_equal(rv(obj), 3);
        json_decref(obj);
        json_decref(a);
        json_decref(relabeled);
        json_decref(respec);
}

static void test_status_does_not_bump_generation_and_survives_apply(void **state) {
        Fixture *f = *state;
        json_t *a = server("web-1", "h1", "web"), *b = server("web-1", "h2", "web");
        json_t *st = json_pack("{s:s, s:{s:s, s:s}, s:{s:s}}", "kind", "Server", "metadata", "name", "web-1",
                               "namespace", "default", "status", "phase", "Reachable");
        StoreOutcome o;
        json_t *obj;

        apply_ok(f->store, a);
        assert_int_equal(commit1(f->store, STORE_OP_STATUS, st, 0, &o, NULL), 0);
        assert_int_equal(o, STORE_CONFIGURED);
        assert_int_equal(commit1(f->store, STORE_OP_STATUS, st, 0, &o, NULL), 0);
        assert_int_equal(o, STORE_UNCHANGED);
        assert_int_equal(store_revision(f->store), 2);

        obj = get(f->store, "web-1");
        assert_int_equal(generation(obj), 1);
        assert_string_equal(json_string_value(json_object_get(json_object_get(obj, "status"), "phase")),
                            "Reachable");
        json_decref(obj);

        assert_int_equal(apply_ok(f->store, b), STORE_CONFIGURED);
        obj = get(f->store, "web-1");
        assert_int_equal(generation(obj), 2);
        assert_non_null(json_object_get(obj, "status"));
        json_decref(obj);
        json_decref(a);
        json_decref(b);
        json_decref(st);
}

static void test_expect_revision_mismatch_is_estale(void **state) {
        Fixture *f = *state;
        json_t *a = server("web-1", "h1", "web"), *b = server("web-1", "h2", "web");
        size_t failed = 99;
        StoreOp op = {.type = STORE_OP_UPDATE, .object = b, .expect_revision = 7};

        apply_ok(f->store, a);
        assert_int_equal(store_commit(f->store, &op, 1, false, &failed), -ESTALE);
        assert_int_equal(failed, 0);
        assert_null(op.result);
        op.expect_revision = 1;
        assert_int_equal(store_commit(f->store, &op, 1, false, NULL), 0);
        assert_int_equal(op.outcome, STORE_CONFIGURED);
        store_ops_clear(&op, 1);
        json_decref(a);
        json_decref(b);
}

static void test_delete_with_finalizers_marks_then_update_removes(void **state) {
        Fixture *f = *state;
        json_t *a = server("web-1", "h1", "web");
        StoreOutcome o;
        json_t *obj, *res;

        json_object_set_new(json_object_get(a, "metadata"), "finalizers", json_pack("[s]", "rpr/cleanup"));
        assert_int_equal(commit1(f->store, STORE_OP_UPDATE, a, 0, &o, NULL), 0);
        assert_int_equal(o, STORE_CREATED);

        assert_int_equal(delete_op(f->store, "Server", "web-1", &o), 0);
        assert_int_equal(o, STORE_DELETED);
        obj = get(f->store, "web-1");
        assert_non_null(meta_s(obj, "deletionTimestamp"));
        assert_int_equal(rv(obj), 2);
        json_decref(obj);
        /* Deleting again changes nothing more. */
        assert_int_equal(delete_op(f->store, "Server", "web-1", &o), 0);
        assert_int_equal(store_revision(f->store), 2);
        /* APPLY keeps finalizers: still there. */
        assert_int_equal(apply_ok(f->store, a), STORE_UNCHANGED);

        json_object_del(json_object_get(a, "metadata"), "finalizers");
        assert_int_equal(commit1(f->store, STORE_OP_UPDATE, a, 0, &o, &res), 0);
        assert_int_equal(o, STORE_DELETED);
        assert_int_equal(rv(res), 3);
        json_decref(res);
        assert_int_equal(store_get_json(f->store, "Server", "default", "web-1", &obj), -ENOENT);
        assert_int_equal(store_count(f->store, NULL), 0);
        json_decref(a);
}

static void test_delete_and_status_of_absent_are_enoent(void **state) {
        Fixture *f = *state;
        json_t *st = json_pack("{s:s, s:{s:s, s:s}, s:{}}", "kind", "Server", "metadata", "name", "nope",
                               "namespace", "default", "status");
        json_t *a = server("web-1", "h1", "web");
        StoreOutcome o;

        assert_int_equal(delete_op(f->store, "Server", "nope", NULL), -ENOENT);
        assert_int_equal(commit1(f->store, STORE_OP_STATUS, st, 0, NULL, NULL), -ENOENT);
        apply_ok(f->store, a);
        assert_int_equal(delete_op(f->store, "Server", "web-1", &o), 0);
        assert_int_equal(o, STORE_DELETED);
        assert_int_equal(store_revision(f->store), 2);
        assert_int_equal(store_count(f->store, "Server"), 0);
        json_decref(st);
        json_decref(a);
}

/* ---- all or nothing, dry run ------------------------------------------- */

static void test_failing_op_leaves_nothing_written(void **state) {
        Fixture *f = *state;
        json_t *a = server("a", "h", "web"), *b = server("b", "h", "web");
        json_t *st = json_pack("{s:s, s:{s:s, s:s}, s:{}}", "kind", "Server", "metadata", "name", "c",
                               "namespace", "default", "status");
        StoreOp ops[3] = {{.type = STORE_OP_APPLY, .object = a},
                          {.type = STORE_OP_APPLY, .object = b},
                          {.type = STORE_OP_STATUS, .object = st}};
        size_t failed = 99;

        assert_int_equal(store_commit(f->store, ops, 3, false, &failed), -ENOENT);
        assert_int_equal(failed, 2);
        assert_int_equal(store_revision(f->store), 0);
        assert_int_equal(store_count(f->store, NULL), 0);
        for (size_t i = 0; i < 3; i++)
                assert_null(ops[i].result);

        /* The same object twice: the later one is named. */
        ops[2] = (StoreOp){.type = STORE_OP_APPLY, .object = a};
        assert_int_equal(store_commit(f->store, ops, 3, false, &failed), -EEXIST);
        assert_int_equal(failed, 2);
        assert_int_equal(store_count(f->store, NULL), 0);

        reopen(f);
        assert_int_equal(store_revision(f->store), 0);
        assert_int_equal(store_count(f->store, NULL), 0);
        json_decref(a);
        json_decref(b);
        json_decref(st);
}

static void test_dry_run_writes_nothing(void **state) {
        Fixture *f = *state;
        json_t *a = server("a", "h", "web"), *b = server("b", "h", "web");
        StoreOp ops[2] = {{.type = STORE_OP_APPLY, .object = a}, {.type = STORE_OP_APPLY, .object = b}};
        StoreWatch *w = NULL;
        StoreEvent *ev = NULL;

        assert_int_equal(store_watch(f->store, 0, NULL, NULL, &w), 0);
        assert_int_equal(store_commit(f->store, ops, 2, true, NULL), 0);
        assert_int_equal(ops[0].outcome, STORE_CREATED);
        assert_int_equal(ops[1].outcome, STORE_CREATED);
        json_t *res = store_op_result_json(&ops[1]);
        assert_int_equal(strlen(ops[1].result), ops[1].result_len);
        assert_string_equal(meta_s(res, "resourceVersion"), "2");
        assert_string_equal(json_string_value(json_object_get(json_object_get(res, "spec"), "host")), "h");
        json_decref(res);
        store_ops_clear(ops, 2);
        assert_int_equal(store_revision(f->store), 0);
        assert_int_equal(store_count(f->store, NULL), 0);
        assert_int_equal(store_watch_next(w, &ev), 0);
        store_watch_free(w);

        reopen(f);
        assert_int_equal(store_count(f->store, NULL), 0);
        json_decref(a);
        json_decref(b);
}

/* ---- durability and listing -------------------------------------------- */

typedef struct Collected {
        char names[16][64];
        size_t n;
} Collected;

static void collect(const char *json, size_t len, void *userdata) {
        Collected *c = userdata;
        json_t *obj = json_loadb(json, len, 0, NULL);

        assert_non_null(obj);
        assert_true(c->n < 16);
        snprintf(c->names[c->n++], 64, "%s/%s/%s", json_string_value(json_object_get(obj, "kind")),
                 meta_s(obj, "namespace"), meta_s(obj, "name"));
        json_decref(obj);
}

static json_t *object(const char *kind, const char *ns, const char *name) {
        return json_pack("{s:s, s:{s:s, s:s}, s:{}}", "kind", kind, "metadata", "name", name, "namespace",
                         ns, "spec");
}

static void test_reopen_finds_everything_in_order(void **state) {
        Fixture *f = *state;
        json_t *objs[] = {object("Server", "prod", "b"), object("Repo", "default", "site"),
                          object("Server", "default", "z"), object("Server", "default", "a"),
                          object("Server", "prod", "gone")};
        StoreOp ops[ELEMENTSOF(objs)] = {};
        Collected c = {};
        uint64_t rev = 0;

        for (size_t i = 0; i < ELEMENTSOF(objs); i++)
                ops[i] = (StoreOp){.type = STORE_OP_APPLY, .object = objs[i]};
        assert_int_equal(store_commit(f->store, ops, ELEMENTSOF(ops), false, NULL), 0);
        store_ops_clear(ops, ELEMENTSOF(ops));
        assert_int_equal(delete_op(f->store, "Server", "gone", NULL), -ENOENT); /* it is in prod */
        StoreOp del = {.type = STORE_OP_DELETE, .kind = "Server", .ns = "prod", .name = "gone"};
        assert_int_equal(store_commit(f->store, &del, 1, false, NULL), 0);
        store_ops_clear(&del, 1);
        assert_int_equal(store_revision(f->store), 6);

        reopen(f);
        assert_int_equal(store_revision(f->store), 6);
        assert_int_equal(store_count(f->store, NULL), 4);
        assert_int_equal(store_list(f->store, NULL, NULL, collect, &c, &rev), 0);
        assert_int_equal(rev, 6);
        assert_int_equal(c.n, 4);
        assert_string_equal(c.names[0], "Repo/default/site");
        assert_string_equal(c.names[1], "Server/default/a");
        assert_string_equal(c.names[2], "Server/default/z");
        assert_string_equal(c.names[3], "Server/prod/b");

        c.n = 0;
        assert_int_equal(store_list(f->store, "Server", "prod", collect, &c, NULL), 0);
        assert_int_equal(c.n, 1);
        c.n = 0;
        assert_int_equal(store_list(f->store, NULL, "default", collect, &c, NULL), 0);
        assert_int_equal(c.n, 3);
        c.n = 0;
        assert_int_equal(store_list(f->store, "Token", NULL, collect, &c, NULL), 0);
        assert_int_equal(c.n, 0);

        /* The revision keeps counting after a restart. */
        json_t *x = object("Server", "default", "x");
        assert_int_equal(apply_ok(f->store, x), STORE_CREATED);
        assert_int_equal(store_revision(f->store), 7);
        json_decref(x);
        for (size_t i = 0; i < ELEMENTSOF(objs); i++)
                json_decref(objs[i]);
}

static void test_unknown_scheme_is_refused(void **state) {
        Store *s = NULL;

        (void) state;
        assert_int_equal(store_open("etcd:http://127.0.0.1:2379", &s), -EPROTONOSUPPORT);
        assert_int_equal(store_open("/tmp/x.db", &s), -EPROTONOSUPPORT);
        assert_null(s);
}

/* ---- change feed ------------------------------------------------------- */

static void count_notify(void *userdata) {
        (*(int *) userdata)++;
}

static void test_watch_from_zero_and_from_n(void **state) {
        Fixture *f = *state;
        json_t *a = server("a", "h", "web"), *a2 = server("a", "h2", "web"), *b = server("b", "h", "web");
        StoreWatch *w0 = NULL, *w2 = NULL;
        StoreEvent *ev = NULL;
        int notified = 0;

        assert_int_equal(store_watch(f->store, 0, count_notify, &notified, &w0), 0);
        apply_ok(f->store, a);
        apply_ok(f->store, a2);
        apply_ok(f->store, b);
        assert_int_equal(delete_op(f->store, "Server", "a", NULL), 0);
        assert_int_equal(notified, 4);

        const StoreEventType want[] = {STORE_EVENT_ADDED, STORE_EVENT_MODIFIED, STORE_EVENT_ADDED,
                                       STORE_EVENT_DELETED};
        for (size_t i = 0; i < ELEMENTSOF(want); i++) {
                assert_int_equal(store_watch_next(w0, &ev), 1);
                assert_int_equal(ev->type, want[i]);
                assert_int_equal(ev->revision, i + 1);
                assert_string_equal(ev->kind, "Server");
                assert_string_equal(ev->ns, "default");
                assert_int_equal(strlen(ev->json), ev->len);
                store_event_free(ev);
        }
        assert_int_equal(store_watch_next(w0, &ev), 0);
        assert_string_equal(store_event_type_to_string(STORE_EVENT_DELETED), "DELETED");

        assert_int_equal(store_watch(f->store, 2, NULL, NULL, &w2), 0);
        assert_int_equal(store_watch_next(w2, &ev), 1);
        assert_int_equal(ev->revision, 3);
        assert_string_equal(ev->name, "b");
        store_event_free(ev);
        store_watch_free(w2);
        store_watch_free(w0);

        /* After a restart the ring starts empty: older revisions are gone. */
        reopen(f);
        assert_int_equal(store_watch(f->store, 0, NULL, NULL, &w0), -ERANGE);
        assert_int_equal(store_watch(f->store, 3, NULL, NULL, &w0), -ERANGE);
        assert_int_equal(store_watch(f->store, 4, NULL, NULL, &w0), 0);
        assert_int_equal(store_watch_next(w0, &ev), 0);
        apply_ok(f->store, a);
        assert_int_equal(store_watch_next(w0, &ev), 1);
        assert_int_equal(ev->revision, 5);
        assert_int_equal(ev->type, STORE_EVENT_ADDED);
        store_event_free(ev);
        store_watch_free(w0);
        json_decref(a);
        json_decref(a2);
        json_decref(b);
}

static void commit_many(Store *s, size_t n, const char *prefix) {
        StoreOp *ops = xcalloc(n, sizeof *ops);
        json_t **objs = xcalloc(n, sizeof *objs);

        for (size_t i = 0; i < n; i++) {
                char name[64];

                snprintf(name, sizeof name, "%s-%05zu", prefix, i);
                objs[i] = server(name, "127.0.0.11", i % 2 ? "web" : "db");
                ops[i] = (StoreOp){.type = STORE_OP_APPLY, .object = objs[i]};
        }
        assert_int_equal(store_commit(s, ops, n, false, NULL), 0);
        for (size_t i = 0; i < n; i++) {
                assert_int_equal(ops[i].outcome, STORE_CREATED);
                json_decref(objs[i]);
        }
        store_ops_clear(ops, n);
        free(ops);
        free(objs);
}

/* Reads every pending event; checks they come in revision order from
 * want; returns how many. */
static size_t drain(StoreWatch *w, uint64_t want) {
        StoreEvent *ev = NULL;
        size_t n = 0;
        int r;

        while ((r = store_watch_next(w, &ev)) == 1) {
                assert_int_equal(ev->revision, want + n);
                store_event_free(ev);
                n++;
        }
        assert_int_equal(r, 0);
        return n;
}

/* One commit of three times what the feed always keeps: a watcher that
 * reads after it still gets every event, in order. */
static void test_a_watcher_never_misses_a_large_commit(void **state) {
        Fixture *f = *state;
        StoreWatch *w = NULL;
        size_t n = 3 * STORE_RING_SIZE + 7;

        assert_int_equal(store_watch(f->store, 0, NULL, NULL, &w), 0);
        commit_many(f->store, n, "big");
        assert_int_equal(drain(w, 1), n);
        commit_many(f->store, 5, "more");
        assert_int_equal(drain(w, n + 1), 5);
        store_watch_free(w);

        /* Once read, what is beyond the last STORE_RING_SIZE is let go: a
         * resume from the start is refused, a recent one is served. */
        commit_many(f->store, 1, "tick");
        StoreWatch *late = NULL;
        assert_int_equal(store_watch(f->store, 5, NULL, NULL, &late), -ERANGE);
        uint64_t rev = store_revision(f->store);
        assert_int_equal(store_watch(f->store, rev - 100, NULL, NULL, &late), 0);
        assert_int_equal(drain(late, rev - 99), 100);
        store_watch_free(late);
}

/* Beyond the limit the slowest watcher falls behind (and only it). */
/* A burst beyond STORE_RING_SIZE is let go once its last watcher has
 * read it, without waiting for another write (which may never come). */
static void test_a_burst_is_let_go_once_read(void **state) {
        Fixture *f = *state;
        StoreWatch *w = NULL, *late = NULL;
        size_t n = STORE_RING_SIZE + 100;

        assert_int_equal(store_watch(f->store, 0, NULL, NULL, &w), 0);
        commit_many(f->store, n, "burst");
        assert_int_equal(store_watch(f->store, 5, NULL, NULL, &late), 0); /* kept for w */
        store_watch_free(late);
        late = NULL;
        assert_int_equal(drain(w, 1), n);
        assert_int_equal(store_watch(f->store, 5, NULL, NULL, &late), -ERANGE);
        uint64_t rev = store_revision(f->store);
        assert_int_equal(store_watch(f->store, rev - STORE_RING_MIN, NULL, NULL, &late), 0);
        assert_int_equal(drain(late, rev - STORE_RING_MIN + 1), STORE_RING_MIN);
        store_watch_free(late);
        store_watch_free(w);
}

/* The events kept for resuming are the last STORE_RING_SIZE, or fewer when
 * their texts pass STORE_RING_BYTES (but never fewer than STORE_RING_MIN);
 * an open watcher still gets all it has not read. */
static void test_the_resume_window_is_bounded_by_bytes_too(void **state) {
        Fixture *f = *state;
        StoreWatch *open = NULL, *late = NULL;
        size_t n = 3000, size = 2048; /* 6 MB of texts: beyond the bytes */
        _cleanup_free_ char *pad = xmalloc(size + 1);

        memset(pad, 'x', size);
        pad[size] = '\0';
        assert_int_equal(store_watch(f->store, 0, NULL, NULL, &open), 0);
        for (size_t i = 0; i < n; i++) {
                char name[32];
                snprintf(name, sizeof name, "big-%04zu", i);
                json_t *o = server(name, "127.0.0.11", "web");
                json_object_set_new(json_object_get(o, "spec"), "description", json_string(pad));
                StoreOp op = {.type = STORE_OP_APPLY, .object = o};
                assert_int_equal(store_commit(f->store, &op, 1, false, NULL), 0);
                store_ops_clear(&op, 1);
                json_decref(o);
        }
        assert_int_equal(drain(open, 1), n); /* kept for it until read */
        store_watch_free(open);
        commit_many(f->store, 1, "tick"); /* a commit trims */
        uint64_t rev = store_revision(f->store);
        assert_int_equal(store_watch(f->store, rev - 2500, NULL, NULL, &late), -ERANGE);
        assert_int_equal(store_watch(f->store, rev - STORE_RING_MIN, NULL, NULL, &late), 0);
        assert_int_equal(drain(late, rev - STORE_RING_MIN + 1), STORE_RING_MIN);
        store_watch_free(late);
}

static void test_watcher_behind_the_limit_gets_erange(void **state) {
        Fixture *f = *state;
        StoreWatch *slow = NULL, *fast = NULL;
        StoreEvent *ev = NULL;

        store_set_feed_limit(f->store, STORE_RING_SIZE);
        assert_int_equal(store_watch(f->store, 0, NULL, NULL, &slow), 0);
        assert_int_equal(store_watch(f->store, 0, NULL, NULL, &fast), 0);
        for (int i = 0; i < 4; i++) {
                char prefix[16];
                snprintf(prefix, sizeof prefix, "s%d", i);
                commit_many(f->store, STORE_RING_SIZE / 2, prefix);
                assert_int_equal(drain(fast, 1 + (uint64_t) i * STORE_RING_SIZE / 2), STORE_RING_SIZE / 2);
        }
        assert_int_equal(store_watch_next(slow, &ev), -ERANGE);
        store_watch_free(slow);
        store_watch_free(fast);

        StoreWatch *late = NULL;
        assert_int_equal(store_watch(f->store, 5, NULL, NULL, &late), -ERANGE);
        assert_int_equal(store_watch(f->store, store_revision(f->store) - 10, NULL, NULL, &late), 0);
        assert_int_equal(store_watch_next(late, &ev), 1);
        assert_int_equal(ev->revision, store_revision(f->store) - 9);
        store_event_free(ev);
        store_watch_free(late);
}

/* ---- label selectors -------------------------------------------------- */

static json_t *labelled(const char *ns, const char *name, const char *role, const char *env) {
        json_t *o = json_pack("{s:s, s:s, s:{s:s, s:s, s:{}}, s:{}}", "apiVersion", "rpr/v1", "kind", "Server",
                              "metadata", "name", name, "namespace", ns, "labels", "spec");
        json_t *labels = json_object_get(json_object_get(o, "metadata"), "labels");
        if (role)
                json_object_set_new(labels, "role", json_string(role));
        if (env)
                json_object_set_new(labels, "env", json_string(env));
        return o;
}

static void collect_name(const char *json, size_t len, void *userdata) {
        _cleanup_json_ json_t *o = json_loadb(json, len, 0, NULL);
        const json_t *meta = json_object_get(o, "metadata");
        Buf *b = userdata;

        buf_printf(b, "%s%s/%s", b->len ? " " : "", json_str_at(meta, "namespace"), json_str_at(meta, "name"));
}

/* What a plain scan parsing every object finds: the answer the index must give. */
typedef struct Naive {
        const Selector *sel;
        Buf *b;
} Naive;

static void naive_one(const char *json, size_t len, void *userdata) {
        Naive *n = userdata;
        _cleanup_json_ json_t *o = json_loadb(json, len, 0, NULL);

        if (selector_matches(n->sel, json_object_get(json_object_get(o, "metadata"), "labels")))
                collect_name(json, len, n->b);
}

static char *selected(Store *s, const char *ns, const char *text, bool naive) {
        _cleanup_free_ char *error = NULL;
        Selector *sel = NULL;
        Buf b = BUF_INIT;

        assert_int_equal(selector_parse(text, &sel, &error), 0);
        if (naive)
                assert_int_equal(store_list(s, "Server", ns, naive_one, &(Naive){sel, &b}, NULL), 0);
        else
                assert_int_equal(store_list_selected(s, "Server", ns, sel, collect_name, &b, NULL), 0);
        selector_free(sel);
        return buf_steal(&b);
}

static void expect_selected(Store *s, const char *ns, const char *text, const char *want) {
        _cleanup_free_ char *got = selected(s, ns, text, false);

        if (!STREQ(got, want))
                fail_msg("selector \"%s\" in %s: got \"%s\", want \"%s\"", text, ns ? ns : "all", got, want);
}

static void test_label_selectors_through_the_index(void **state) {
        Fixture *f = *state;
        const char *objs[][4] = {{"default", "w1", "web", "prod"}, {"default", "w2", "web", "dev"},
                                 {"default", "d1", "db", "prod"},  {"default", "x", NULL, NULL},
                                 {"team-a", "w3", "web", "prod"},  {"team-a", "y", NULL, "prod"}};

        for (size_t i = 0; i < ELEMENTSOF(objs); i++) {
                _cleanup_json_ json_t *o = labelled(objs[i][0], objs[i][1], objs[i][2], objs[i][3]);
                assert_int_equal(commit1(f->store, STORE_OP_APPLY, o, 0, NULL, NULL), 0);
        }
        for (int round = 0; round < 2; round++) {
                expect_selected(f->store, "default", "role=web", "default/w1 default/w2");
                expect_selected(f->store, NULL, "role=web", "default/w1 default/w2 team-a/w3");
                expect_selected(f->store, NULL, "role=web,env=prod", "default/w1 team-a/w3");
                expect_selected(f->store, NULL, "role in (web)", "default/w1 default/w2 team-a/w3");
                expect_selected(f->store, NULL, "role in (web,db),env!=dev", "default/d1 default/w1 team-a/w3");
                expect_selected(f->store, NULL, "!role", "default/x team-a/y");
                expect_selected(f->store, "default", "role!=web", "default/d1 default/x");
                expect_selected(f->store, NULL, "role=cache", "");
                expect_selected(f->store, NULL, "role=web,env=staging", "");
                reopen(f); /* the second round: the index as loaded from disk */
        }

        /* a relabel moves the object, a delete takes it out */
        _cleanup_json_ json_t *w2 = labelled("default", "w2", "db", "dev");
        assert_int_equal(commit1(f->store, STORE_OP_APPLY, w2, 0, NULL, NULL), 0);
        expect_selected(f->store, "default", "role=web", "default/w1");
        expect_selected(f->store, "default", "role=db", "default/d1 default/w2");
        StoreOp del = {.type = STORE_OP_DELETE, .kind = "Server", .ns = "default", .name = "w1"};
        assert_int_equal(store_commit(f->store, &del, 1, false, NULL), 0);
        store_ops_clear(&del, 1);
        expect_selected(f->store, NULL, "role=web", "team-a/w3");
        expect_selected(f->store, NULL, "env=prod", "default/d1 team-a/w3 team-a/y");
}

static void expect_scan_agrees(Store *s, const char *const *selectors, size_t n) {
        for (size_t i = 0; i < n; i++)
                for (int scoped = 0; scoped < 2; scoped++) {
                        const char *ns = scoped ? "other" : NULL;
                        _cleanup_free_ char *want = selected(s, ns, selectors[i], true);
                        expect_selected(s, ns, selectors[i], want);
                }
}

/* Random labels and selectors: the index answers what a scan of every
 * object answers, in the same order, and goes on doing so as objects are
 * relabelled, lose their labels, are deleted and made again, and after a
 * reopen (the index as loaded). */
static void test_label_index_agrees_with_a_scan(void **state) {
        Fixture *f = *state;
        const char *roles[] = {"web", "db", "cache", NULL}, *envs[] = {"prod", "dev", NULL};
        const char *selectors[] = {"role=web", "role=db,env=prod", "env=dev", "role in (web,cache)",
                                   "!env", "role,env!=prod", "role=web,!env", "env notin (prod)", "role=none"};
        unsigned seed = 7;

        for (int i = 0; i < 400; i++) {
                char name[16];
                snprintf(name, sizeof name, "s%03d", i);
                _cleanup_json_ json_t *o = labelled(i % 3 ? "default" : "other", name, roles[rand_r(&seed) % 4],
                                                    envs[rand_r(&seed) % 3]);
                assert_int_equal(commit1(f->store, STORE_OP_APPLY, o, 0, NULL, NULL), 0);
        }
        expect_scan_agrees(f->store, selectors, ELEMENTSOF(selectors));
        for (int round = 0; round < 5; round++) {
                for (int k = 0; k < 80; k++) {
                        int i = (int) (rand_r(&seed) % 400);
                        char name[16];
                        snprintf(name, sizeof name, "s%03d", i);
                        if (rand_r(&seed) % 4 == 0) {
                                StoreOp del = {.type = STORE_OP_DELETE,
                                               .kind = "Server",
                                               .ns = i % 3 ? "default" : "other",
                                               .name = name};
                                int r = store_commit(f->store, &del, 1, false, NULL);
                                assert_true(r == 0 || r == -ENOENT);
                                store_ops_clear(&del, 1);
                                continue;
                        }
                        _cleanup_json_ json_t *o =
                                labelled(i % 3 ? "default" : "other", name, roles[rand_r(&seed) % 4],
                                         envs[rand_r(&seed) % 3]);
                        assert_int_equal(commit1(f->store, STORE_OP_APPLY, o, 0, NULL, NULL), 0);
                }
                expect_scan_agrees(f->store, selectors, ELEMENTSOF(selectors));
                if (round == 2)
                        reopen(f);
        }
}

/* An event says whether the object's labels changed: a status write or a
 * spec change does not, a relabel, a creation and a deletion do. */
static void test_events_say_whether_labels_changed(void **state) {
        Fixture *f = *state;
        StoreWatch *w = NULL;
        StoreEvent *ev = NULL;
        int notified = 0;

        assert_int_equal(store_watch(f->store, store_revision(f->store), count_notify, &notified, &w), 0);
        _cleanup_json_ json_t *a = labelled("default", "a", "web", "prod");
        assert_int_equal(commit1(f->store, STORE_OP_APPLY, a, 0, NULL, NULL), 0);
        json_object_set_new(a, "status", json_pack("{s:s}", "phase", "Reachable"));
        assert_int_equal(commit1(f->store, STORE_OP_STATUS, a, 0, NULL, NULL), 0);
        json_object_set_new(json_object_get(a, "spec"), "host", json_string("127.0.0.2"));
        assert_int_equal(commit1(f->store, STORE_OP_APPLY, a, 0, NULL, NULL), 0);
        _cleanup_json_ json_t *a2 = labelled("default", "a", "web", "dev");
        assert_int_equal(commit1(f->store, STORE_OP_APPLY, a2, 0, NULL, NULL), 0);
        _cleanup_json_ json_t *a3 = labelled("default", "a", NULL, NULL);
        assert_int_equal(commit1(f->store, STORE_OP_APPLY, a3, 0, NULL, NULL), 0);
        assert_int_equal(delete_op(f->store, "Server", "a", NULL), 0);

        const bool want[] = {true, false, false, true, true, true};
        for (size_t i = 0; i < ELEMENTSOF(want); i++) {
                assert_int_equal(store_watch_next(w, &ev), 1);
                if (ev->labels_changed != want[i])
                        fail_msg("event %zu (%s): labels_changed %d, want %d", i,
                                 store_event_type_to_string(ev->type), ev->labels_changed, want[i]);
                store_event_free(ev);
        }
        assert_int_equal(store_watch_next(w, &ev), 0);
        store_watch_free(w);
}

/* ---- fields kept beside an object ------------------------------------- */

static json_t *run_of(const char *name, const char *owner_key, const char *owner, const char *phase) {
        json_t *o = json_pack("{s:s, s:s, s:{s:s, s:s, s:{s:s}}, s:{s:s, s:s}}", "apiVersion", "rpr/v1",
                              "kind", "Run", "metadata", "name", name, "namespace", "default", "labels",
                              owner_key, owner, "spec", owner_key, owner, "server", "web-1");
        if (phase)
                json_object_set_new(
                        o, "status",
                        json_pack("{s:s, s:s}", "phase", phase, "endTime", "2026-11-23T10:00:00Z"));
        return o;
}

static void collect_fields(const char *ns, const char *name, const StoreFields *fl, void *userdata) {
        Buf *b = userdata;
        const char *phase = store_field(fl, "status.phase");

        buf_printf(b, "%s%s/%s:%s:%s", b->len ? " " : "", ns, name, phase ?: "-",
                   store_field(fl, "status.endTime") ? "ended" : "-");
        assert_string_equal(store_field(fl, "spec.server") ?: "", "web-1"); /* an indexed field too */
        assert_null(store_field(fl, "status.nothing"));
}

static void expect_fields(Store *s, const char *selector, const char *want) {
        _cleanup_free_ char *error = NULL, *got = NULL;
        Selector *sel = NULL;
        Buf b = BUF_INIT;

        assert_int_equal(selector_parse(selector, &sel, &error), 0);
        assert_int_equal(store_list_fields(s, "Run", "default", sel, collect_fields, &b), 0);
        selector_free(sel);
        got = buf_steal(&b);
        if (!STREQ(got ?: "", want))
                fail_msg("fields of %s: got \"%s\", want \"%s\"", selector, got ?: "", want);
}

static json_t *set_phase(const json_t *obj, void *userdata) {
        json_t *st = json_deep_copy(json_object_get(obj, "status")) ?: json_object();

        json_object_set_new(st, "phase", json_string(userdata));
        return st;
}

/* A Run's phase and times are read from beside it, not from its text: they
 * follow status writes, deletes and a reopen, and no label index is made
 * of them. */
static void test_kept_fields_follow_status_writes(void **state) {
        Fixture *f = *state;
        const char *runs[][4] = {{"site-1", "binding", "site", "Succeeded"},
                                 {"site-2", "binding", "site", NULL},
                                 {"api-1", "binding", "api", "Failed"},
                                 {"p-1", "pipeline", "p", "Running"}};

        for (size_t i = 0; i < ELEMENTSOF(runs); i++) {
                _cleanup_json_ json_t *o = run_of(runs[i][0], runs[i][1], runs[i][2], NULL);
                assert_int_equal(commit1(f->store, STORE_OP_APPLY, o, 0, NULL, NULL), 0);
                if (runs[i][3]) {
                        _cleanup_json_ json_t *st = run_of(runs[i][0], runs[i][1], runs[i][2], runs[i][3]);
                        assert_int_equal(commit1(f->store, STORE_OP_STATUS, st, 0, NULL, NULL), 0);
                }
        }
        expect_fields(f->store, "binding=site", "default/site-1:Succeeded:ended default/site-2:-:-");
        expect_fields(f->store, "binding",
                      "default/api-1:Failed:ended default/site-1:Succeeded:ended "
                      "default/site-2:-:-");
        expect_fields(f->store, "pipeline=p", "default/p-1:Running:ended");

        assert_int_equal(
                store_update_status(f->store, "Run", "default", "site-2", set_phase, "Running", NULL), 0);
        assert_int_equal(
                store_update_status(f->store, "Run", "default", "p-1", set_phase, "Succeeded", NULL), 0);
        expect_fields(f->store, "binding=site", "default/site-1:Succeeded:ended default/site-2:Running:-");
        expect_fields(f->store, "pipeline=p", "default/p-1:Succeeded:ended");
        assert_int_equal(delete_op(f->store, "Run", "site-1", NULL), 0);
        expect_fields(f->store, "binding=site", "default/site-2:Running:-");
        _cleanup_free_ char *phase = NULL, *none_here = NULL;
        assert_int_equal(store_get_field(f->store, "Run", "default", "site-2", "status.phase", &phase), 0);
        assert_string_equal(phase, "Running");
        assert_int_equal(store_get_field(f->store, "Run", "default", "site-2", "status.endTime", &none_here),
                         -ENODATA);
        assert_int_equal(store_get_field(f->store, "Run", "default", "site-1", "status.phase", &none_here),
                         -ENOENT);
        reopen(f);
        expect_fields(f->store, "binding=site", "default/site-2:Running:-");
        expect_fields(f->store, "pipeline=p", "default/p-1:Succeeded:ended");

        /* kept, not indexed: no selector finds an object by them */
        _cleanup_free_ char *none = NULL;
        Buf b = BUF_INIT;
        assert_int_equal(
                store_list_where(f->store, "Run", "default", "status.phase", "Running", collect_name, &b),
                0);
        none = buf_steal(&b);
        assert_true(!none || !*none);
}

static json_t *set_note(const json_t *obj, void *userdata) {
        json_t *st = json_deep_copy(json_object_get(obj, "status")) ?: json_object();

        json_object_set_new(st, "note", json_string(userdata));
        return st;
}

/* A status written from the object as its writer holds it: nothing read
 * when it is current, the object as written handed back (the next write
 * starts from it), and when another write came in between, that one is
 * read and kept, not overwritten. */
static void test_status_written_from_the_object_held(void **state) {
        Fixture *f = *state;
        _cleanup_json_ json_t *o = run_of("site-1", "binding", "site", NULL), *held = NULL, *written = NULL,
                              *again = NULL, *now = NULL;

        assert_int_equal(commit1(f->store, STORE_OP_APPLY, o, 0, NULL, &held), 0);
        assert_int_equal(store_update_status_of(f->store, held, set_phase, "Running", &written), 0);
        assert_string_equal(json_str_at(json_object_get(written, "status"), "phase"), "Running");
        assert_int_equal(store_object_revision(written), store_revision(f->store));
        assert_true(store_object_revision(written) > store_object_revision(held));
        _cleanup_free_ char *phase = NULL;
        assert_int_equal(store_get_field(f->store, "Run", "default", "site-1", "status.phase", &phase), 0);
        assert_string_equal(phase, "Running");

        /* another writer; then a write from the object held before it */
        assert_int_equal(store_update_status(f->store, "Run", "default", "site-1", set_note, "theirs", NULL),
                         0);
        assert_int_equal(store_update_status_of(f->store, written, set_phase, "Succeeded", &again), 0);
        assert_int_equal(store_get_json(f->store, "Run", "default", "site-1", &now), 0);
        assert_string_equal(json_str_at(json_object_get(now, "status"), "phase"), "Succeeded");
        assert_string_equal(json_str_at(json_object_get(now, "status"), "note"), "theirs");
        assert_int_equal(store_object_revision(again), store_object_revision(now));
}

/* A status written with keep_tree, again and again: each write builds on
 * the object kept parsed from the last, and the stored text is what a
 * write without it would have made; a write by anyone else in between
 * is seen, not written over with what was kept. */
static void test_kept_tree_writes_match_the_stored_object(void **state) {
        Fixture *f = *state;
        _cleanup_json_ json_t *o = run_of("job-1", "pipeline", "p", NULL), *held = NULL;
        uint64_t rev;

        assert_int_equal(commit1(f->store, STORE_OP_APPLY, o, 0, NULL, &held), 0);
        rev = store_object_revision(held);
        for (int i = 0; i < 5; i++) {
                char note[16];
                snprintf(note, sizeof note, "n%d", i);
                json_t *st = json_pack("{s:s, s:s}", "phase", "Running", "note", note);
                _cleanup_json_ json_t *w =
                        json_pack("{s:s, s:s, s:{s:s, s:s}, s:o}", "apiVersion", "rpr/v1", "kind", "Run",
                                  "metadata", "name", "job-1", "namespace", "default", "status", st);
                StoreOp op = {
                        .type = STORE_OP_STATUS, .object = w, .expect_revision = rev, .keep_tree = true};
                assert_int_equal(store_commit(f->store, &op, 1, false, NULL), 0);
                rev = op.revision;
                store_ops_clear(&op, 1);
                if (i == 2) { /* another writer changes its labels and spec */
                        _cleanup_json_ json_t *other = run_of("job-1", "pipeline", "q", NULL);
                        assert_int_equal(commit1(f->store, STORE_OP_APPLY, other, 0, NULL, NULL), 0);
                        rev = store_revision(f->store);
                }
                const char *owner = i >= 2 ? "q" : "p";
                _cleanup_json_ json_t *now = NULL;
                assert_int_equal(store_get_json(f->store, "Run", "default", "job-1", &now), 0);
                assert_int_equal(store_object_revision(now), rev);
                assert_string_equal(json_str_at(json_object_get(now, "spec"), "pipeline"), owner);
                assert_string_equal(
                        json_str_at(json_object_get(json_object_get(now, "metadata"), "labels"), "pipeline"),
                        owner);
                assert_string_equal(json_str_at(json_object_get(now, "status"), "note"), note);
        }
        /* a stale expectation is refused, kept tree or not */
        _cleanup_json_ json_t *w =
                json_pack("{s:s, s:s, s:{s:s, s:s}, s:{s:s}}", "apiVersion", "rpr/v1", "kind", "Run",
                          "metadata", "name", "job-1", "namespace", "default", "status", "phase", "Late");
        StoreOp op = {.type = STORE_OP_STATUS, .object = w, .expect_revision = rev - 1, .keep_tree = true};
        assert_int_equal(store_commit(f->store, &op, 1, false, NULL), -ESTALE);
        reopen(f);
        _cleanup_json_ json_t *after = NULL;
        assert_int_equal(store_get_json(f->store, "Run", "default", "job-1", &after), 0);
        assert_string_equal(json_str_at(json_object_get(after, "status"), "note"), "n4");
}

/* ---- schema ------------------------------------------------------------ */

static int64_t user_version(const char *path) {
        sqlite3 *db = NULL;
        sqlite3_stmt *st = NULL;
        int64_t v;

        assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
        assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL), SQLITE_OK);
        assert_int_equal(sqlite3_step(st), SQLITE_ROW);
        v = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
        sqlite3_close(db);
        return v;
}

static void test_schema_is_migrated_and_newer_is_refused(void **state) {
        Fixture *f = *state;
        sqlite3 *db = NULL;
        Store *s = NULL;
        char sql[64];

        assert_true(store_sqlite_schema_version >= 1);
        assert_int_equal(user_version(f->path), store_sqlite_schema_version);
        store_close(f->store);
        f->store = NULL;

        assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
        snprintf(sql, sizeof sql, "PRAGMA user_version = %u", store_sqlite_schema_version + 1);
        assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
        sqlite3_close(db);

        log_set_max_level(0); /* the refusal is logged; keep the test output quiet */
        assert_int_equal(store_open(f->url, &s), -EPROTONOSUPPORT);
        log_set_max_level(LOG_LEVEL_INFO);
        assert_null(s);
        assert_int_equal(user_version(f->path), store_sqlite_schema_version + 1);

        /* Put it back so that teardown's store can be reopened. */
        assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
        snprintf(sql, sizeof sql, "PRAGMA user_version = %u", store_sqlite_schema_version);
        assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
        sqlite3_close(db);
        reopen(f);
}

/* ---- scale ------------------------------------------------------------- */

static void test_ten_thousand_objects_in_one_commit(void **state) {
        Fixture *f = *state;
        uint64_t start = now_mono_usec(), commits = 0;
        double seconds = 0;
        char *json = NULL;

        commit_many(f->store, 10000, "srv");
        double took = (double) (now_mono_usec() - start) / 1e6;
        print_message("  10000 objects in one commit: %.3f s\n", took);
        assert_true(took < 5.0);
        assert_int_equal(store_count(f->store, "Server"), 10000);
        assert_int_equal(store_revision(f->store), 10000);
        store_stats(f->store, &commits, &seconds);
        assert_int_equal(commits, 1);
        assert_true(seconds > 0);

        start = now_mono_usec();
        for (int i = 0; i < 100000; i++) {
                char name[64];

                snprintf(name, sizeof name, "srv-%05d", i % 10000);
                assert_int_equal(store_get(f->store, "Server", "default", name, &json), 0);
                free(json);
        }
        print_message("  100000 gets: %.3f s\n", (double) (now_mono_usec() - start) / 1e6);

        reopen(f);
        assert_int_equal(store_count(f->store, NULL), 10000);
        assert_int_equal(store_get(f->store, "Server", "default", "srv-09999", &json), 0);
        free(json);
}

/* ---- threads ----------------------------------------------------------- */

typedef struct Reader {
        Store *store;
        _Atomic bool stop;
} Reader;

static void count_one(const char *json, size_t len, void *userdata) {
        (void) json;
        (void) len;
        (*(size_t *) userdata)++;
}

static void *reader_main(void *userdata) {
        Reader *r = userdata;

        while (!r->stop) {
                size_t n = 0;
                char *json = NULL;

                assert_int_equal(store_list(r->store, "Server", NULL, count_one, &n, NULL), 0);
                if (store_get(r->store, "Server", "default", "w-00", &json) == 0) {
                        json_t *obj = json_loads(json, 0, NULL);

                        assert_non_null(obj);
                        json_decref(obj);
                        free(json);
                }
        }
        return NULL;
}

/* Drains the watcher from inside notify, as a single-threaded caller may. */
static void drain_notify(void *userdata) {
        StoreWatch *w = *(StoreWatch **) userdata;
        StoreEvent *ev = NULL;

        while (store_watch_next(w, &ev) == 1)
                store_event_free(ev);
}

static void test_readers_run_alongside_writers(void **state) {
        Fixture *f = *state;
        Reader r = {.store = f->store};
        pthread_t threads[2];
        StoreWatch *w = NULL;
        StoreEvent *ev = NULL;

        assert_int_equal(store_watch(f->store, 0, drain_notify, &w, &w), 0);
        for (size_t i = 0; i < ELEMENTSOF(threads); i++)
                assert_int_equal(pthread_create(&threads[i], NULL, reader_main, &r), 0);
        for (int i = 0; i < 200; i++) {
                char name[16], host[16];

                snprintf(name, sizeof name, "w-%02d", i % 20);
                snprintf(host, sizeof host, "h%d", i);
                json_t *obj = server(name, host, "web");
                apply_ok(f->store, obj);
                json_decref(obj);
        }
        r.stop = true;
        for (size_t i = 0; i < ELEMENTSOF(threads); i++)
                assert_int_equal(pthread_join(threads[i], NULL), 0);
        assert_int_equal(store_revision(f->store), 200);
        assert_int_equal(store_count(f->store, "Server"), 20);
        assert_int_equal(store_watch_next(w, &ev), 0);
        store_watch_free(w);
}

/* ---- indexed fields ---------------------------------------------------- */

static json_t *binding_of(const char *ns, const char *name, const char *repo) {
        return json_pack("{s:s, s:s, s:{s:s, s:s}, s:{s:s, s:s, s:s}}", "apiVersion", "rpr/v1", "kind", "Binding",
                         "metadata", "name", name, "namespace", ns, "spec", "repo", repo, "server", "s",
                         "command", "true");
}

static char *where(Store *s, const char *kind, const char *ns, const char *field, const char *value) {
        Buf b = BUF_INIT;

        assert_int_equal(store_list_where(s, kind, ns, field, value, collect_name, &b), 0);
        return buf_steal(&b);
}

static void expect_where(Store *s, const char *ns, const char *value, const char *want) {
        _cleanup_free_ char *got = where(s, "Binding", ns, "spec.repo", value);

        if (!STREQ(got, want))
                fail_msg("Bindings of repo %s in %s: got \"%s\", want \"%s\"", value, ns ? ns : "all", got, want);
}

/* The objects that name another (a Binding its Repo) are found through the
 * store's index of the fields the schema marks x-rpr-index. */
static void test_indexed_fields_find_who_refers(void **state) {
        Fixture *f = *state;
        const char *objs[][3] = {{"default", "b1", "site"}, {"default", "b2", "site"}, {"default", "b3", "blog"},
                                 {"team-a", "b1", "site"}};

        for (size_t i = 0; i < ELEMENTSOF(objs); i++) {
                _cleanup_json_ json_t *o = binding_of(objs[i][0], objs[i][1], objs[i][2]);
                apply_ok(f->store, o);
        }
        for (int round = 0; round < 2; round++) {
                expect_where(f->store, "default", "site", "default/b1 default/b2");
                expect_where(f->store, NULL, "site", "default/b1 default/b2 team-a/b1");
                expect_where(f->store, "default", "blog", "default/b3");
                expect_where(f->store, NULL, "shop", "");
                reopen(f); /* the second round: as loaded from disk */
        }
        _cleanup_json_ json_t *moved = binding_of("default", "b2", "blog");
        apply_ok(f->store, moved);
        expect_where(f->store, "default", "site", "default/b1");
        expect_where(f->store, "default", "blog", "default/b2 default/b3");
        assert_int_equal(delete_op(f->store, "Binding", "b3", NULL), 0);
        expect_where(f->store, "default", "blog", "default/b2");

        /* a field the schema does not index finds nothing */
        _cleanup_free_ char *none = where(f->store, "Binding", NULL, "spec.command", "true");
        assert_string_equal(none, "");
        /* an indexed field is no label */
        _cleanup_free_ char *error = NULL;
        Selector *sel = NULL;
        Buf b = BUF_INIT;
        assert_int_equal(selector_parse("spec.repo=site", &sel, &error), 0);
        assert_int_equal(store_list_selected(f->store, "Binding", NULL, sel, collect_name, &b, NULL), 0);
        assert_int_equal(b.len, 0);
        selector_free(sel);
        buf_free(&b);
}

/* ---- group commit --------------------------------------------------------- */

typedef struct Writer {
        Store *store;
        int id;
        int errors; /* cmocka's asserts belong to the main thread */
} Writer;

#define WRITERS 8
#define WRITES_EACH 150

static json_t *count_up(const json_t *obj, void *userdata) {
        (void) userdata;
        json_int_t n = json_int_at(json_object_get(obj, "status"), "count", 0);
        return json_pack("{s:I}", "count", n + 1);
}

/* Creates its own objects one commit each, and counts up a shared one
 * (read, add one, write if nobody wrote in between: else again). */
static void *writer_main(void *userdata) {
        Writer *w = userdata;

        for (int i = 0; i < WRITES_EACH; i++) {
                char name[32];
                snprintf(name, sizeof name, "g%d-%03d", w->id, i);
                json_t *obj = server(name, "127.0.0.11", "web");
                StoreOp op = {.type = STORE_OP_APPLY, .object = obj};
                if (store_commit(w->store, &op, 1, false, NULL) < 0 || op.outcome != STORE_CREATED)
                        w->errors++;
                store_ops_clear(&op, 1);
                json_decref(obj);
                int r;
                do
                        r = store_update_status(w->store, "Server", "default", "shared", count_up, NULL, NULL);
                while (r == -ESTALE);
                if (r < 0)
                        w->errors++;
        }
        return NULL;
}

/* Writers at once share transactions, and still each write is its own:
 * every object is there, the shared counter lost no increment (a batch
 * never holds two writes of one object), and the feed has every event in
 * revision order. */
static void test_concurrent_writers_commit_together(void **state) {
        Fixture *f = *state;
        Writer w[WRITERS];
        pthread_t threads[WRITERS];
        StoreWatch *watch = NULL;
        StoreEvent *ev = NULL;
        uint64_t commits0, commits;
        json_t *shared = server("shared", "127.0.0.11", "web"), *got = NULL;

        apply_ok(f->store, shared);
        json_decref(shared);
        store_stats(f->store, &commits0, NULL);
        assert_int_equal(store_watch(f->store, store_revision(f->store), NULL, NULL, &watch), 0);
        for (int i = 0; i < WRITERS; i++) {
                w[i] = (Writer){f->store, i, 0};
                assert_int_equal(pthread_create(&threads[i], NULL, writer_main, &w[i]), 0);
        }
        for (int i = 0; i < WRITERS; i++) {
                assert_int_equal(pthread_join(threads[i], NULL), 0);
                assert_int_equal(w[i].errors, 0);
        }

        size_t writes = 2 * WRITERS * WRITES_EACH;
        assert_int_equal(store_count(f->store, "Server"), WRITERS * WRITES_EACH + 1);
        assert_int_equal(store_get_json(f->store, "Server", "default", "shared", &got), 0);
        assert_int_equal(json_int_at(json_object_get(got, "status"), "count", 0), WRITERS * WRITES_EACH);
        json_decref(got);
        store_stats(f->store, &commits, NULL);
        print_message("%zu writes in %lu transactions\n", writes, (unsigned long) (commits - commits0));
        assert_true(commits - commits0 < writes);

        uint64_t want = 2;
        while (store_watch_next(watch, &ev) == 1) {
                assert_int_equal(ev->revision, want++);
                store_event_free(ev);
        }
        assert_int_equal(want - 2, writes);
        store_watch_free(watch);
}

int main(void) {
        const struct CMUnitTest tests[] = {
#define T(t) cmocka_unit_test_setup_teardown(t, setup, teardown)
                T(test_apply_creates_configures_and_leaves_unchanged),
                T(test_results_are_the_stored_text),
                T(test_generation_bumps_only_on_spec_change),
                T(test_managed_by_kept_set_and_cleared),
                T(test_status_does_not_bump_generation_and_survives_apply),
                T(test_expect_revision_mismatch_is_estale),
                T(test_delete_with_finalizers_marks_then_update_removes),
                T(test_delete_and_status_of_absent_are_enoent),
                T(test_failing_op_leaves_nothing_written),
                T(test_dry_run_writes_nothing),
                T(test_reopen_finds_everything_in_order),
                cmocka_unit_test(test_unknown_scheme_is_refused),
                T(test_watch_from_zero_and_from_n),
                T(test_a_watcher_never_misses_a_large_commit),
                T(test_label_selectors_through_the_index),
                T(test_label_index_agrees_with_a_scan),
                T(test_kept_fields_follow_status_writes),
                T(test_status_written_from_the_object_held),
                T(test_kept_tree_writes_match_the_stored_object),
                T(test_events_say_whether_labels_changed),
                T(test_a_burst_is_let_go_once_read),
                T(test_the_resume_window_is_bounded_by_bytes_too),
                T(test_watcher_behind_the_limit_gets_erange),
                T(test_schema_is_migrated_and_newer_is_refused),
                T(test_readers_run_alongside_writers),
                T(test_concurrent_writers_commit_together),
                T(test_indexed_fields_find_who_refers),
                T(test_ten_thousand_objects_in_one_commit),
#undef T
        };

        /* the kinds' schemas say which spec fields the store indexes */
        assert_int_equal(resource_init(), 0);
        int r = cmocka_run_group_tests(tests, NULL, NULL);
        resource_shutdown();
        return r;
}
