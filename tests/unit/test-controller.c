/* Unit tests for pkg/controller against a real store (SQLite in a fresh
 * temporary directory): objects present at start and every change of the
 * feed are reconciled; keys are deduplicated; one key never runs twice at
 * once and a key enqueued while running runs once more; requeue-after
 * fires on time; errors back off; stop is prompt while busy; a write a
 * reconciler declared its own wakes nothing. */
/* cmocka needs these three first. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "controller/controller.h"
#include "store/store.h"

#define MAX_CALLS 16384

/* What the reconciler saw, and knobs for what it does. */
typedef struct Recorder {
        pthread_mutex_t lock;
        pthread_cond_t cond;
        size_t n;
        char *names[MAX_CALLS];
        uint64_t when[MAX_CALLS]; /* monotonic */
        int result;               /* returned by every call */
        uint64_t requeue_after;   /* first call of each test only, when set */
        uint64_t sleep_usec;
        bool gate_closed; /* calls wait while closed */
        atomic_int in_flight[4];
        atomic_int max_in_flight;
} Recorder;

typedef struct Fixture {
        char dir[64];
        char *path;
        Store *store;
        Controller *c;
        Recorder rec;
} Fixture;

static int key_slot(const char *name) {
        return name[0] >= 'a' && name[0] <= 'c' && !name[1] ? name[0] - 'a' : 3;
}

static int reconcile(void *userdata, const char *ns, const char *name, uint64_t *ret_requeue_after) {
        Recorder *r = userdata;
        int slot = key_slot(name);
        int now = atomic_fetch_add(&r->in_flight[slot], 1) + 1;
        int max = atomic_load(&r->max_in_flight);

        while (now > max && !atomic_compare_exchange_weak(&r->max_in_flight, &max, now))
                ;
        pthread_mutex_lock(&r->lock);
        while (r->gate_closed)
                pthread_cond_wait(&r->cond, &r->lock);
        size_t i = r->n;
        if (i < MAX_CALLS) {
                r->names[i] = xasprintf("%s/%s", ns, name);
                r->when[i] = now_mono_usec();
                r->n++;
        }
        int result = r->result;
        if (i == 0 && r->requeue_after)
                *ret_requeue_after = r->requeue_after;
        pthread_cond_broadcast(&r->cond);
        uint64_t sleep_usec = r->sleep_usec;
        pthread_mutex_unlock(&r->lock);

        if (sleep_usec)
                usleep((useconds_t) sleep_usec);
        atomic_fetch_sub(&r->in_flight[slot], 1);
        return result;
}

/* Waits until at least n calls were recorded; false after timeout. */
static bool wait_calls(Recorder *r, size_t n, uint64_t timeout_usec) {
        uint64_t end = now_mono_usec() + timeout_usec;
        bool ok;

        pthread_mutex_lock(&r->lock);
        while (r->n < n && now_mono_usec() < end) {
                pthread_mutex_unlock(&r->lock);
                usleep(2000);
                pthread_mutex_lock(&r->lock);
        }
        ok = r->n >= n;
        pthread_mutex_unlock(&r->lock);
        return ok;
}

static size_t calls_of(Recorder *r, const char *key) {
        size_t n = 0;

        pthread_mutex_lock(&r->lock);
        for (size_t i = 0; i < r->n; i++)
                n += STREQ(r->names[i], key);
        pthread_mutex_unlock(&r->lock);
        return n;
}

static void gate(Recorder *r, bool closed) {
        pthread_mutex_lock(&r->lock);
        r->gate_closed = closed;
        pthread_cond_broadcast(&r->cond);
        pthread_mutex_unlock(&r->lock);
}

static int setup(void **state) {
        Fixture *f = xcalloc(1, sizeof *f);
        _cleanup_free_ char *url = NULL;

        snprintf(f->dir, sizeof f->dir, "/tmp/test-controller-XXXXXX");
        assert_non_null(mkdtemp(f->dir));
        f->path = xasprintf("%s/state.db", f->dir);
        url = xasprintf("sqlite:%s", f->path);
        assert_int_equal(store_open(url, &f->store), 0);
        pthread_mutex_init(&f->rec.lock, NULL);
        pthread_cond_init(&f->rec.cond, NULL);
        *state = f;
        return 0;
}

static int teardown(void **state) {
        Fixture *f = *state;
        _cleanup_free_ char *cmd = xasprintf("rm -rf '%s'", f->dir);

        controller_free(f->c);
        store_close(f->store);
        assert_int_equal(system(cmd), 0);
        for (size_t i = 0; i < f->rec.n; i++)
                free(f->rec.names[i]);
        pthread_mutex_destroy(&f->rec.lock);
        pthread_cond_destroy(&f->rec.cond);
        free(f->path);
        free(f);
        return 0;
}

static void put(Fixture *f, const char *kind, const char *name, const char *host) {
        json_t *o = json_pack("{s:s, s:s, s:{s:s, s:s}, s:{s:s}}", "apiVersion", "rpr/v1", "kind", kind,
                              "metadata", "name", name, "namespace", "default", "spec", "host", host);
        StoreOp op = {.type = STORE_OP_APPLY, .object = o};

        assert_int_equal(store_commit(f->store, &op, 1, false, NULL), 0);
        store_ops_clear(&op, 1);
        json_decref(o);
}

static void delete(Fixture *f, const char *kind, const char *name) {
        StoreOp op = {.type = STORE_OP_DELETE, .kind = kind, .ns = "default", .name = name};

        assert_int_equal(store_commit(f->store, &op, 1, false, NULL), 0);
        store_ops_clear(&op, 1);
}

static void start(Fixture *f, unsigned workers) {
        assert_int_equal(controller_new(f->store, workers, &f->c), 0);
        assert_int_equal(controller_add(f->c, "Server", reconcile, &f->rec), 0);
        assert_int_equal(controller_add(f->c, "Server", reconcile, &f->rec), -EEXIST);
        assert_int_equal(controller_start(f->c), 0);
}

/* ---- tests ------------------------------------------------------------- */

static void test_existing_objects_and_feed_events_are_reconciled(void **state) {
        Fixture *f = *state;

        put(f, "Server", "old", "h1");
        put(f, "Repo", "other-kind", "h1");
        start(f, 2);
        assert_true(wait_calls(&f->rec, 1, 5 * USEC_PER_SEC));

        put(f, "Server", "new", "h2");
        assert_true(wait_calls(&f->rec, 2, 5 * USEC_PER_SEC));
        put(f, "Server", "new", "h3"); /* modified */
        assert_true(wait_calls(&f->rec, 3, 5 * USEC_PER_SEC));
        delete(f, "Server", "new");
        assert_true(wait_calls(&f->rec, 4, 5 * USEC_PER_SEC));
        put(f, "Repo", "other-kind", "h2"); /* a kind nobody registered */

        usleep(100 * 1000);
        assert_int_equal(calls_of(&f->rec, "default/old"), 1);
        assert_int_equal(calls_of(&f->rec, "default/new"), 3);
        assert_int_equal(calls_of(&f->rec, "default/other-kind"), 0);
        assert_int_equal(f->rec.n, 4);
        assert_true(controller_last_tick(f->c) > now_usec() - 5 * USEC_PER_SEC);
}

/* More events in one commit than the feed may keep (its limit made as
 * small as it goes): the watcher falls behind, lists everything again, and
 * no object is missed. */
static void test_falling_behind_the_feed_relists_everything(void **state) {
        Fixture *f = *state;
        size_t n = STORE_RING_SIZE + 500;
        StoreOp *ops = xcalloc(n, sizeof *ops);
        json_t **objs = xcalloc(n, sizeof *objs);

        store_set_feed_limit(f->store, STORE_RING_SIZE);
        start(f, 4);
        for (size_t i = 0; i < n; i++) {
                char name[32];
                snprintf(name, sizeof name, "s%zu", i);
                objs[i] = json_pack("{s:s, s:s, s:{s:s, s:s}, s:{}}", "apiVersion", "rpr/v1", "kind", "Server",
                                    "metadata", "name", name, "namespace", "default", "spec");
                ops[i] = (StoreOp){.type = STORE_OP_APPLY, .object = objs[i]};
        }
        assert_int_equal(store_commit(f->store, ops, n, false, NULL), 0);
        store_ops_clear(ops, n);
        for (size_t i = 0; i < n; i++)
                json_decref(objs[i]);
        free(objs);
        free(ops);

        assert_true(wait_calls(&f->rec, n, 20 * USEC_PER_SEC));
        usleep(100 * 1000);
        assert_int_equal(calls_of(&f->rec, "default/s0"), 1);
        assert_int_equal(calls_of(&f->rec, "default/s8691"), 1);
        assert_int_equal(f->rec.n, n);
}

/* put(), returning the revision the write got. */
static uint64_t put_rev(Fixture *f, const char *name, const char *host) {
        json_t *o = json_pack("{s:s, s:s, s:{s:s, s:s}, s:{s:s}}", "apiVersion", "rpr/v1", "kind", "Server",
                              "metadata", "name", name, "namespace", "default", "spec", "host", host);
        StoreOp op = {.type = STORE_OP_APPLY, .object = o};

        assert_int_equal(store_commit(f->store, &op, 1, false, NULL), 0);
        store_ops_clear(&op, 1);
        json_decref(o);
        return op.revision;
}

/* A write the reconciler declared its own wakes nothing; the next write
 * of the same object, and any enqueue, still do. (The declaration comes
 * before the write here, with the revision it will get, so that the
 * dispatcher cannot see the event first.) */
static void test_own_write_wakes_no_reconcile(void **state) {
        Fixture *f = *state;

        start(f, 2);
        uint64_t rev = put_rev(f, "a", "h1");
        assert_true(wait_calls(&f->rec, 1, 5 * USEC_PER_SEC));
        usleep(100 * 1000);

        controller_own_write(f->c, "Server", "default", "a", rev + 1);
        assert_int_equal(put_rev(f, "a", "h2"), rev + 1);
        usleep(300 * 1000);
        assert_int_equal(calls_of(&f->rec, "default/a"), 1);

        put(f, "Server", "a", "h3"); /* another writer's */
        assert_true(wait_calls(&f->rec, 2, 5 * USEC_PER_SEC));
        controller_own_write(f->c, "Server", "default", "a", rev + 3);
        controller_enqueue(f->c, "Server", "default", "a", 0);
        assert_true(wait_calls(&f->rec, 3, 5 * USEC_PER_SEC));
        put(f, "Server", "a", "h4");
        usleep(300 * 1000);
        assert_int_equal(calls_of(&f->rec, "default/a"), 3);
        /* Declared, but its event was another write (or came already):
         * the next event wakes as always. */
        controller_own_write(f->c, "Server", "default", "a", rev + 2);
        put(f, "Server", "a", "h5");
        assert_true(wait_calls(&f->rec, 4, 5 * USEC_PER_SEC));
}

static void test_keys_are_deduplicated(void **state) {
        Fixture *f = *state;

        gate(&f->rec, true);
        start(f, 1);
        controller_enqueue(f->c, "Server", "default", "a", 0); /* the one worker waits in it */
        usleep(50 * 1000);
        for (int i = 0; i < 50; i++) {
                controller_enqueue(f->c, "Server", "default", "b", 0);
                controller_enqueue(f->c, "Server", "default", "b", 1000); /* a later timer loses */
        }
        assert_int_equal(controller_pending(f->c), 2); /* a running, b queued once */
        controller_enqueue(f->c, "Nope", "default", "x", 0);
        assert_int_equal(controller_pending(f->c), 2);

        gate(&f->rec, false);
        assert_true(wait_calls(&f->rec, 2, 5 * USEC_PER_SEC));
        usleep(200 * 1000);
        assert_int_equal(calls_of(&f->rec, "default/a"), 1);
        assert_int_equal(calls_of(&f->rec, "default/b"), 1);
        assert_int_equal(controller_pending(f->c), 0);
}

static void test_key_enqueued_while_running_runs_once_more(void **state) {
        Fixture *f = *state;

        gate(&f->rec, true);
        start(f, 4);
        controller_enqueue(f->c, "Server", "default", "a", 0);
        usleep(50 * 1000);
        for (int i = 0; i < 5; i++)
                controller_enqueue(f->c, "Server", "default", "a", 0);
        usleep(50 * 1000);
        assert_int_equal(atomic_load(&f->rec.in_flight[0]), 1); /* the other 3 workers did not take it */
        gate(&f->rec, false);
        assert_true(wait_calls(&f->rec, 2, 5 * USEC_PER_SEC));
        usleep(200 * 1000);
        assert_int_equal(calls_of(&f->rec, "default/a"), 2);
}

typedef struct Hammer {
        Controller *c;
        atomic_bool stop;
} Hammer;

static void *hammer(void *arg) {
        Hammer *h = arg;
        const char *names[] = {"a", "b", "c"};

        for (unsigned i = 0; !atomic_load(&h->stop); i++) {
                controller_enqueue(h->c, "Server", "default", names[i % 3], 0);
                usleep(100);
        }
        return NULL;
}

static void test_one_key_never_reconciled_twice_at_once(void **state) {
        Fixture *f = *state;
        pthread_t t[4];
        Hammer h = {0};

        f->rec.sleep_usec = 2000;
        start(f, 8);
        h.c = f->c;
        for (int i = 0; i < 4; i++)
                assert_int_equal(pthread_create(&t[i], NULL, hammer, &h), 0);
        usleep(400 * 1000);
        atomic_store(&h.stop, true);
        for (int i = 0; i < 4; i++)
                pthread_join(t[i], NULL);

        assert_true(wait_calls(&f->rec, 30, 5 * USEC_PER_SEC));
        assert_int_equal(atomic_load(&f->rec.max_in_flight), 1);
        assert_true(calls_of(&f->rec, "default/a") > 5);
        assert_true(calls_of(&f->rec, "default/c") > 5);
}

static void test_requeue_after_fires_on_time(void **state) {
        Fixture *f = *state;

        f->rec.requeue_after = 300 * USEC_PER_MSEC;
        start(f, 2);
        controller_enqueue(f->c, "Server", "default", "a", 0);
        assert_true(wait_calls(&f->rec, 2, 5 * USEC_PER_SEC));
        uint64_t gap = f->rec.when[1] - f->rec.when[0];
        assert_true(gap >= 290 * USEC_PER_MSEC);
        assert_true(gap < 800 * USEC_PER_MSEC);

        /* A delayed enqueue likewise, and an earlier one wins over it. */
        uint64_t t0 = now_mono_usec();
        controller_enqueue(f->c, "Server", "default", "b", 5 * USEC_PER_SEC);
        controller_enqueue(f->c, "Server", "default", "b", 200 * USEC_PER_MSEC);
        assert_true(wait_calls(&f->rec, 3, 5 * USEC_PER_SEC));
        assert_string_equal(f->rec.names[2], "default/b");
        assert_true(f->rec.when[2] - t0 >= 190 * USEC_PER_MSEC);
        assert_true(f->rec.when[2] - t0 < 700 * USEC_PER_MSEC);
}

static void test_errors_back_off(void **state) {
        Fixture *f = *state;

        f->rec.result = -EIO;
        start(f, 2);
        controller_enqueue(f->c, "Server", "default", "a", 0);
        assert_true(wait_calls(&f->rec, 3, 6 * USEC_PER_SEC));
        uint64_t first = f->rec.when[1] - f->rec.when[0], second = f->rec.when[2] - f->rec.when[1];
        assert_true(first >= 950 * USEC_PER_MSEC && first < 1600 * USEC_PER_MSEC);
        assert_true(second >= 1950 * USEC_PER_MSEC && second < 2600 * USEC_PER_MSEC);
        assert_int_equal(f->rec.n, 3); /* nothing in between */
}

static void test_stop_while_busy_is_prompt(void **state) {
        Fixture *f = *state;

        f->rec.sleep_usec = 300 * 1000;
        start(f, 1);
        controller_enqueue(f->c, "Server", "default", "a", 0);
        controller_enqueue(f->c, "Server", "default", "b", 0);
        controller_enqueue(f->c, "Server", "default", "c", 0);
        controller_enqueue(f->c, "Server", "default", "d", 60 * USEC_PER_SEC);
        assert_true(wait_calls(&f->rec, 1, 5 * USEC_PER_SEC));

        uint64_t t0 = now_mono_usec();
        controller_stop(f->c);
        uint64_t took = now_mono_usec() - t0;
        assert_true(took < 600 * USEC_PER_MSEC); /* the running one finishes, nothing else starts */
        assert_int_equal(atomic_load(&f->rec.in_flight[0]), 0);
        assert_int_equal(f->rec.n, 1);

        controller_enqueue(f->c, "Server", "default", "a", 0); /* ignored after stop */
        usleep(50 * 1000);
        assert_int_equal(f->rec.n, 1);
        controller_stop(f->c); /* twice is harmless */
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_existing_objects_and_feed_events_are_reconciled, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_falling_behind_the_feed_relists_everything, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_own_write_wakes_no_reconcile, setup, teardown),
                cmocka_unit_test_setup_teardown(test_keys_are_deduplicated, setup, teardown),
                cmocka_unit_test_setup_teardown(test_key_enqueued_while_running_runs_once_more, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_one_key_never_reconciled_twice_at_once, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_requeue_after_fires_on_time, setup, teardown),
                cmocka_unit_test_setup_teardown(test_errors_back_off, setup, teardown),
                cmocka_unit_test_setup_teardown(test_stop_while_busy_is_prompt, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
