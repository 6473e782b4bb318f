/* run.c: the Run kind's reconciler (see run.h).
 *
 * A Run's phase is the whole of its state. The reconciler looks at a Run
 * this rprd is not carrying out: Pending waits for its Server or starts;
 * Running means the rprd that started it died, so it is Interrupted;
 * finished wakes its owner. Starting is a claim: the Run is registered as
 * active here, then written Running only if it is still Pending, and only
 * then does its thread start. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "controller/controller.h"
#include "logfile/logfile.h"
#include "resource/resource.h"
#include "run/run-private.h"
#include "server/server.h"
#include "store/store.h"

/* A waiting Run looks at its Server this often, besides being woken when
 * the Server becomes Reachable. */
#define WAIT_POLL_USEC (30 * USEC_PER_SEC)

bool run_phase_finished(const char *phase) {
        return phase && (STREQ(phase, "Succeeded") || STREQ(phase, "Failed") || STREQ(phase, "Canceled") ||
                         STREQ(phase, "Interrupted"));
}

#define NAME_MAX_LEN 63

char *run_name(const char *owner, json_int_t n) {
        char suffix[24];
        int len = snprintf(suffix, sizeof suffix, "-%lld", (long long) n);
        int keep = MIN((int) strlen(owner), NAME_MAX_LEN - len);

        /* A label may not end with '-' where the cut falls. */
        while (keep > 1 && owner[keep - 1] == '-')
                keep--;
        return xasprintf("%.*s%s", keep, owner, suffix);
}

typedef struct Owned {
        json_t *runs;
} Owned;

static uint64_t time_at(const StoreFields *f, const char *path) {
        const char *s = store_field(f, path);
        uint64_t usec;

        return s && time_parse_rfc3339(s, &usec) >= 0 ? usec : 0;
}

/* From the fields the store keeps beside each Run: a Pipeline with fifty
 * jobs of hundreds of tasks is not fifty large texts to parse. */
static void collect_owned(const char *ns, const char *name, const StoreFields *f, void *userdata) {
        Owned *o = userdata;
        const char *dash = strrchr(name, '-');

        (void) ns;
        json_array_append_new(o->runs, json_pack("{s:s, s:I, s:s, s:I, s:I}", "name", name, "number",
                                                 (json_int_t) (dash ? strtoll(dash + 1, NULL, 10) : 0),
                                                 "phase", store_field(f, "status.phase") ?: "Pending",
                                                 "notBefore", (json_int_t) time_at(f, "status.notBefore"),
                                                 "endTime", (json_int_t) time_at(f, "status.endTime")));
}

static int by_number(const void *a, const void *b) {
        json_int_t x = json_int_at(*(json_t *const *) a, "number", 0), y = json_int_at(*(json_t *const *) b, "number", 0);
        return x < y ? -1 : x > y;
}

json_t *run_list_owned(Store *store, const char *ns, const char *key, const char *value) {
        Owned o = {json_array()};
        _cleanup_json_ json_t *want = json_pack("{s:s}", key, value);
        Selector *sel = selector_from_labels(want);

        /* Runs carry their owner as a label too: the store's label index
         * finds them without reading the namespace's other Runs. */
        (void) store_list_fields(store, "Run", ns, sel, collect_owned, &o);
        selector_free(sel);
        size_t n = json_array_size(o.runs);
        json_t **v = xmalloc((n + 1) * sizeof *v);
        for (size_t i = 0; i < n; i++)
                v[i] = json_incref(json_array_get(o.runs, i));
        qsort(v, n, sizeof *v, by_number);
        json_array_clear(o.runs);
        for (size_t i = 0; i < n; i++)
                json_array_append_new(o.runs, v[i]);
        free(v);
        return o.runs;
}

int run_delete_many(Store *store, const char *ns, const json_t *names, StoreOp *extra) {
        size_t n = json_array_size(names), k = n + (extra ? 1 : 0);
        _cleanup_free_ StoreOp *ops = xcalloc(k ? k : 1, sizeof *ops);
        const json_t *v;
        size_t i;

        if (k == 0)
                return 0;
        json_array_foreach(names, i, v) ops[i] = (StoreOp){
                .type = STORE_OP_DELETE, .kind = "Run", .ns = ns, .name = json_string_value(v)};
        if (extra)
                ops[n] = *extra;
        int r = store_commit(store, ops, k, false, NULL);
        store_ops_clear(ops, k);
        if (r < 0)
                return r;
        return 0;
}

char *run_track_id(const char *ns, const char *name) {
        return xasprintf("%s.%s", ns, name);
}

char *run_log_path(const char *dir, const char *ns, const char *name) {
        return xasprintf("%s/%s/%s.log", dir, ns, name);
}

void run_spec_read(const json_t *obj, RunSpec *ret) {
        const json_t *meta = json_object_get(obj, "metadata"), *spec = json_object_get(obj, "spec");
        const json_t *owner = json_object_get(spec, "owner");

        *ret = (RunSpec){
                .ns = json_str_at(meta, "namespace"),
                .name = json_str_at(meta, "name"),
                .owner_kind = json_str_at(owner, "kind"),
                .owner_name = json_str_at(owner, "name"),
                .server = json_str_at(spec, "server"),
                .command = json_str_at(spec, "command"),
                .workdir = json_str_at(spec, "workdir"),
                .repo = json_str_at(spec, "repo"),
                .branch = json_str_at(spec, "branch"),
                .commit = json_str_at(spec, "commit"),
                .commit_time = json_str_at(spec, "commitTime"),
                .binding = json_str_at(spec, "binding"),
                .triggered_by = json_str_at(spec, "triggeredBy"),
                .env = json_object_get(spec, "env"),
                .timeout_usec = json_duration_at(spec, "timeout", 0),
                .wait_timeout_usec = json_duration_at(spec, "waitTimeout", 24 * 3600 * USEC_PER_SEC),
                .attempt = json_int_at(spec, "attempt", 1),
        };
}

/* ---- status ------------------------------------------------------------------ */

static json_t *update_next(const json_t *obj, void *userdata) {
        RunUpdate *u = userdata;
        const json_t *old = json_object_get(obj, "status");
        const char *phase = json_str_at(old, "phase") ?: "Pending";
        const char *key;
        json_t *v;

        u->applied = u->news = false;
        if (run_phase_finished(phase) || (u->expect_phase && !STREQ(phase, u->expect_phase)))
                return NULL;
        u->applied = true;
        u->news = !STREQ(phase, u->phase) || !STREQ(json_str_at(old, "reason") ?: "", u->reason);
        json_t *st = json_is_object(old) ? json_deep_copy(old) : json_object();
        json_object_set_new(st, "phase", json_string(u->phase));
        json_object_set_new(st, "reason", json_string(u->reason));
        if (u->message)
                json_object_set_new(st, "message", json_string(u->message));
        else
                json_object_del(st, "message");
        json_object_foreach(u->set, key, v) {
                if (json_is_null(v))
                        json_object_del(st, key);
                else
                        json_object_set(st, key, v);
        }
        if (run_phase_finished(u->phase)) {
                json_set_time(st, "endTime", now_usec());
                json_object_del(st, "waitingSince");
                json_object_del(st, "nextAttemptTime");
        }
        if (json_equal(st, old)) {
                json_decref(st);
                return NULL;
        }
        return st;
}

static void note_outcome(RunController *rc, const char *ns, const char *name, const RunUpdate *u,
                         bool carried_out_here) {
        _cleanup_free_ char *id = xasprintf("%s/%s", ns, name);

        if (rc->activity)
                (void) logfile_append(rc->activity, now_usec(), "run %s: %s %s%s%s", id, u->phase, u->reason,
                                      u->message ? ": " : "", u->message ?: "");
        log_object(STREQ(u->phase, "Failed") ? LOG_LEVEL_WARNING : LOG_LEVEL_INFO, "Run", id, "run %s: %s (%s)%s%s",
                   id, u->phase, u->reason, u->message ? ": " : "", u->message ?: "");
        if (carried_out_here)
                return;
        /* Decided without running anything: the output file says why. */
        RunLog *l = NULL;
        if (run_output_open(rc->dir, ns, name, &l) >= 0) {
                run_log_note(l, "%s: %s%s%s", u->phase, u->reason, u->message ? ": " : "", u->message ?: "");
                run_log_close(l);
        }
}

/* Writes u, from known (the Run as last read or written; NULL: read it);
 * a change of phase or reason (not waiting, again and again) is also a
 * line in the logs. *ret_object (optional): the Run as written. */
static int update_from(RunController *rc, const json_t *known, const char *ns, const char *name,
                       RunUpdate *u, bool carried_out_here, json_t **ret_object) {
        int r = known ? store_update_status_of(rc->store, known, update_next, u, ret_object)
                      : store_update_status(rc->store, "Run", ns, name, update_next, u, ret_object);

        if (r >= 0 && u->applied && u->news)
                note_outcome(rc, ns, name, u, carried_out_here);
        json_decref(TAKE_PTR(u->set));
        return r;
}

static int update(RunController *rc, const char *ns, const char *name, RunUpdate *u, bool carried_out_here) {
        return update_from(rc, NULL, ns, name, u, carried_out_here, NULL);
}

int run_update(RunController *rc, const char *ns, const char *name, RunUpdate *u) {
        return update(rc, ns, name, u, true);
}

int run_update_of(RunController *rc, const json_t *known, RunUpdate *u) {
        const json_t *meta = json_object_get(known, "metadata");

        return update_from(rc, known, json_str_at(meta, "namespace"), json_str_at(meta, "name"), u, true,
                           NULL);
}

int run_update_noted(RunController *rc, const char *ns, const char *name, RunUpdate *u) {
        return update(rc, ns, name, u, false);
}

/* ---- the active table ---------------------------------------------------------- */

static Active *active_find_locked(RunController *rc, const char *ns, const char *name) {
        for (size_t i = 0; i < rc->n_active; i++)
                if (STREQ(rc->active[i]->ns, ns) && STREQ(rc->active[i]->name, name))
                        return rc->active[i];
        return NULL;
}

static bool is_active(RunController *rc, const char *ns, const char *name) {
        pthread_mutex_lock(&rc->lock);
        bool found = active_find_locked(rc, ns, name) != NULL;
        pthread_mutex_unlock(&rc->lock);
        return found;
}

/* NULL while draining: nothing new starts. */
Active *run_active_add(RunController *rc, const char *ns, const char *name) {
        Active *a = NULL;

        pthread_mutex_lock(&rc->lock);
        if (!rc->draining && !active_find_locked(rc, ns, name)) {
                a = xcalloc(1, sizeof *a);
                a->ns = xstrdup(ns);
                a->name = xstrdup(name);
                a->cancel = ssh_cancel_new();
                rc->active = xrealloc(rc->active, (rc->n_active + 1) * sizeof *rc->active);
                rc->active[rc->n_active++] = a;
        }
        pthread_mutex_unlock(&rc->lock);
        return a;
}

void run_active_remove(RunController *rc, Active *a) {
        pthread_mutex_lock(&rc->lock);
        for (size_t i = 0; i < rc->n_active; i++)
                if (rc->active[i] == a) {
                        rc->active[i] = rc->active[--rc->n_active];
                        break;
                }
        pthread_cond_broadcast(&rc->changed);
        pthread_mutex_unlock(&rc->lock);
        ssh_cancel_free(a->cancel);
        free(a->ns);
        free(a->name);
        free(a->cancel_reason);
        free(a->cancel_message);
        free(a);
}

size_t run_controller_running(RunController *rc) {
        pthread_mutex_lock(&rc->lock);
        size_t n = rc->n_active;
        pthread_mutex_unlock(&rc->lock);
        return n;
}

/* ---- Pending: wait for the server, or start ---------------------------------------- */

typedef enum ServerState { SERVER_READY, SERVER_WAIT, SERVER_GONE } ServerState;

/* Whether the Run's Server can take it now; *ret_why says why not. */
static ServerState server_state(RunController *rc, const RunSpec *sp, char **ret_why) {
        _cleanup_json_ json_t *srv = NULL;

        if (!sp->server || store_get_json(rc->store, "Server", sp->ns, sp->server, &srv) < 0) {
                *ret_why = xasprintf("server %s does not exist", sp->server ?: "(none)");
                return SERVER_GONE;
        }
        const json_t *st = json_object_get(srv, "status");
        const char *phase = json_str_at(st, "phase");
        if (phase && STREQ(phase, "Reachable"))
                return SERVER_READY;
        if (!phase)
                *ret_why = xasprintf("server %s has not been checked yet", sp->server);
        else if (STREQ(phase, "Inactive"))
                *ret_why = xasprintf("server %s is inactive (spec.active is false)", sp->server);
        else {
                const char *msg = json_str_at(condition_get(st, "Reachable"), "message");
                *ret_why = xasprintf("server %s is unreachable%s%s", sp->server, msg ? ": " : "", msg ?: "");
        }
        return SERVER_WAIT;
}

static int wait_for_server(RunController *rc, const json_t *obj, const RunSpec *sp, const char *why,
                           uint64_t *ret_requeue) {
        const json_t *st = json_object_get(obj, "status");
        uint64_t now = now_usec(), since = json_time_at(st, "waitingSince") ?: now;
        uint64_t deadline = since + sp->wait_timeout_usec;
        char wait[32];

        if (now >= deadline) {
                _cleanup_free_ char *msg = xasprintf("%s; waited %s (spec.waitTimeout)", why,
                                                     duration_format(sp->wait_timeout_usec, wait, sizeof wait));
                RunUpdate u = {.expect_phase = "Pending", .phase = "Failed", .reason = "ServerUnreachable", .message = msg};
                return update(rc, sp->ns, sp->name, &u, false);
        }
        RunUpdate u = {.expect_phase = "Pending", .phase = "Pending", .reason = "WaitingForServer", .message = why,
                       .set = json_object()};
        json_set_time(u.set, "waitingSince", since);
        *ret_requeue = MIN(deadline - now, WAIT_POLL_USEC);
        return update(rc, sp->ns, sp->name, &u, false);
}

/* Claims the Run (Pending → Running) and starts its thread. */
static int start(RunController *rc, json_t *obj, const RunSpec *sp) {
        Active *a = run_active_add(rc, sp->ns, sp->name);
        _cleanup_free_ char *path = run_log_path(rc->dir, sp->ns, sp->name);
        _cleanup_json_ json_t *running = NULL;
        int r;

        if (!a)
                return 0; /* draining, or already ours */
        RunUpdate u = {.expect_phase = "Pending", .phase = "Running", .reason = "Started", .set = json_object()};
        json_set_time(u.set, "startTime", now_usec());
        json_object_set_new(u.set, "logFile", json_string(path));
        json_object_set_new(u.set, "waitingSince", json_null());
        json_object_set_new(u.set, "nextAttemptTime", json_null());
        r = update_from(rc, obj, sp->ns, sp->name, &u, true, &running);
        if (r < 0 || !u.applied) {
                run_active_remove(rc, a);
                return r == -ENOENT ? 0 : r;
        }
        return run_exec_start(rc, a, running);
}

static int pending(RunController *rc, json_t *obj, uint64_t *ret_requeue) {
        const json_t *st = json_object_get(obj, "status");
        _cleanup_free_ char *why = NULL;
        uint64_t now = now_usec(), retry_at = json_time_at(st, "nextAttemptTime");
        RunSpec sp;

        run_spec_read(obj, &sp);
        if (retry_at > now) {
                *ret_requeue = retry_at - now;
                return 0;
        }
        switch (server_state(rc, &sp, &why)) {
        case SERVER_GONE: {
                RunUpdate u = {.expect_phase = "Pending", .phase = "Failed", .reason = "ServerNotFound", .message = why};
                return update(rc, sp.ns, sp.name, &u, false);
        }
        case SERVER_WAIT:
                return wait_for_server(rc, obj, &sp, why, ret_requeue);
        case SERVER_READY:
                break;
        }
        return start(rc, obj, &sp);
}

/* ---- the reconciler ------------------------------------------------------------------ */

static void wake_owner(RunController *rc, const json_t *obj) {
        RunSpec sp;

        run_spec_read(obj, &sp);
        if (sp.owner_kind && sp.owner_name)
                controller_enqueue(rc->controller, sp.owner_kind, sp.ns, sp.owner_name, 0);
}

static bool delegated(RunController *rc, const json_t *obj) {
        const char *kind = json_str_at(json_object_get(json_object_get(obj, "spec"), "owner"), "kind");

        return rc->delegate_kind && kind && STREQ(kind, rc->delegate_kind);
}

void run_controller_delegate(RunController *rc, const char *owner_kind, const RunDelegate *d) {
        free(rc->delegate_kind);
        rc->delegate_kind = xstrdup(owner_kind);
        rc->delegate = *d;
}

/* A delegate's Run carried out here and not finished: a job writes its
 * tasks' states as they go, and each write wakes this reconcile; its text
 * (as large as its tasks) is not parsed for nothing each time. */
static bool busy_here(RunController *rc, const char *ns, const char *name) {
        _cleanup_free_ char *phase = NULL;

        if (!rc->delegate.busy || store_get_field(rc->store, "Run", ns, name, "status.phase", &phase) < 0)
                return false;
        return !run_phase_finished(phase) && rc->delegate.busy(rc->delegate.userdata, ns, name);
}

/* The output file of a Run that is gone. One still written to (its command
 * runs on until canceled) is removed, its writer left with a file no one
 * sees; any other is kept as a spare for a later Run (run_output_discard). */
static void output_gone(RunController *rc, const char *ns, const char *name, bool written) {
        _cleanup_free_ char *path = run_log_path(rc->dir, ns, name);

        if (written)
                (void) unlink(path);
        else
                run_output_discard(rc->dir, ns, name);
}

static int reconcile(void *userdata, const char *ns, const char *name, uint64_t *ret_requeue_after) {
        RunController *rc = userdata;
        _cleanup_json_ json_t *obj = NULL;
        int r;

        if (busy_here(rc, ns, name))
                return 0;
        r = store_get_json(rc->store, "Run", ns, name, &obj);
        if (r == -ENOENT) {
                /* Gone (history trimmed, its Binding deleted, or deleted by
                 * hand while it ran): so are its command and its output. */
                char job[AGENT_JOB_ID_LEN + 1] = "";
                pthread_mutex_lock(&rc->lock);
                Active *a = active_find_locked(rc, ns, name);
                if (a) {
                        ssh_cancel_fire(a->cancel);
                        memcpy(job, a->agent_job, sizeof job);
                }
                pthread_mutex_unlock(&rc->lock);
                run_agent_cancel(rc, job);
                output_gone(rc, ns, name,
                            a || (rc->delegate.busy && rc->delegate.busy(rc->delegate.userdata, ns, name)));
                return 0;
        }
        if (r < 0)
                return r;
        if (delegated(rc, obj))
                return rc->delegate.reconcile(rc->delegate.userdata, obj, ret_requeue_after);
        const char *phase = json_str_at(json_object_get(obj, "status"), "phase") ?: "Pending";
        if (run_phase_finished(phase)) {
                wake_owner(rc, obj);
                return 0;
        }
        if (is_active(rc, ns, name))
                return 0;
        if (STREQ(phase, "Running"))
                return run_recover(rc, obj, ret_requeue_after);
        return pending(rc, obj, ret_requeue_after);
}

/* ---- what others ask ------------------------------------------------------------------- */

/* A Server came back: the Runs waiting for it start now. */
static void on_server_reachable(void *userdata, const char *ns, const char *name) {
        RunController *rc = userdata;

        controller_enqueue_where(rc->controller, "Run", ns, "server", name, "\"WaitingForServer\"");
}

int run_cancel(RunController *rc, const char *ns, const char *name, const char *reason, const char *message) {
        _cleanup_json_ json_t *obj = NULL;

        if (store_get_json(rc->store, "Run", ns, name, &obj) < 0)
                return -ENOENT;
        if (delegated(rc, obj))
                return rc->delegate.cancel(rc->delegate.userdata, obj, reason, message);
        for (int tries = 0; tries < 5; tries++) {
                pthread_mutex_lock(&rc->lock);
                Active *a = active_find_locked(rc, ns, name);
                if (a && !a->cancel_reason) {
                        a->cancel_reason = xstrdup(reason);
                        a->cancel_message = message ? xstrdup(message) : NULL;
                }
                char job[AGENT_JOB_ID_LEN + 1] = "";
                if (a) {
                        ssh_cancel_fire(a->cancel);
                        memcpy(job, a->agent_job, sizeof job);
                }
                pthread_mutex_unlock(&rc->lock);
                run_agent_cancel(rc, job);
                if (a)
                        return 0;

                RunUpdate u = {.expect_phase = "Pending", .phase = "Canceled", .reason = reason, .message = message};
                int r = update(rc, ns, name, &u, false);
                if (r < 0)
                        return r;
                if (u.applied)
                        return 0;
                _cleanup_json_ json_t *obj = NULL;
                if (store_get_json(rc->store, "Run", ns, name, &obj) < 0)
                        return -ENOENT;
                const char *phase = json_str_at(json_object_get(obj, "status"), "phase");
                if (run_phase_finished(phase))
                        return -EALREADY;
                if (phase && STREQ(phase, "Running") && !is_active(rc, ns, name)) {
                        /* Left Running by an rprd that died, not yet marked:
                         * what is left of its command goes first. */
                        const char *leftover = NULL;
                        if (run_reap_leftover(rc, obj, &leftover) < 0)
                                return -EBUSY;
                        RunUpdate v = {.expect_phase = "Running", .phase = "Canceled", .reason = reason, .message = message,
                                       .set = json_pack("{s:s}", "leftover", leftover)};
                        r = update(rc, ns, name, &v, false);
                        if (r < 0 || v.applied)
                                return r;
                }
                /* Else it became Running in between: its thread is registered now. */
        }
        return -EBUSY;
}

/* ---- life cycle ---------------------------------------------------------------------------- */

int run_controller_new(const RunOptions *o, RunController **ret) {
        pthread_condattr_t attr;
        int r;

        if (!o->store || !o->controller || !o->servers || !o->ssh || !o->dir)
                return -EINVAL;
        RunController *rc = xcalloc(1, sizeof *rc);
        rc->store = o->store;
        rc->controller = o->controller;
        rc->servers = o->servers;
        rc->ssh = o->ssh;
        rc->activity = o->activity;
        rc->agents = o->agents;
        rc->dir = xstrdup(o->dir);
        rc->proc_dir = xasprintf("%s/.proc", o->dir);
        pthread_mutex_init(&rc->lock, NULL);
        pthread_condattr_init(&attr);
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
        pthread_cond_init(&rc->changed, &attr);
        pthread_condattr_destroy(&attr);
        r = workq_new(1, &rc->agent_finish);
        if (r < 0) {
                run_controller_free(rc);
                return r;
        }
        r = controller_add(o->controller, "Run", reconcile, rc);
        if (r < 0) {
                run_controller_free(rc);
                return r;
        }
        server_on_reachable(o->servers, on_server_reachable, rc);
        *ret = rc;
        return 0;
}

static void wait_until(RunController *rc, uint64_t deadline_mono) {
        struct timespec ts = {(time_t) (deadline_mono / USEC_PER_SEC), (long) (deadline_mono % USEC_PER_SEC) * 1000};

        while (rc->n_active > 0 && now_mono_usec() < deadline_mono)
                pthread_cond_timedwait(&rc->changed, &rc->lock, &ts);
}

void run_controller_drain(RunController *rc, uint64_t grace_usec) {
        pthread_mutex_lock(&rc->lock);
        rc->draining = true;
        if (rc->n_active > 0 && grace_usec > 0) {
                log_info("waiting up to %.0f s for %zu running runs to finish", (double) grace_usec / USEC_PER_SEC,
                         rc->n_active);
                wait_until(rc, now_mono_usec() + grace_usec);
        }
        for (size_t i = 0; i < rc->n_active; i++) {
                rc->active[i]->interrupted = true;
                ssh_cancel_fire(rc->active[i]->cancel);
        }
        pthread_mutex_unlock(&rc->lock);
        run_agent_interrupt_all(rc);
        pthread_mutex_lock(&rc->lock);
        while (rc->n_active > 0)
                pthread_cond_wait(&rc->changed, &rc->lock);
        pthread_mutex_unlock(&rc->lock);
}

void run_controller_free(RunController *rc) {
        if (!rc)
                return;
        run_controller_drain(rc, 0);
        workq_free(rc->agent_finish);
        free(rc->active);
        free(rc->delegate_kind);
        free(rc->dir);
        free(rc->proc_dir);
        pthread_cond_destroy(&rc->changed);
        pthread_mutex_destroy(&rc->lock);
        free(rc);
}
