/* sync.c: the Sync kind's reconciler (see sync.h).
 *
 * Whether to sync is decided from the stored objects alone: the Repo's
 * head commit against status.lastAttemptedRevision, the Sync's generation
 * against observedGeneration, the rpr/requestedAt annotation against
 * lastHandledRequestedAt, and lastSyncTime + interval for drift. A Repo's
 * change wakes the Syncs that read it (the store indexes spec.repo). */
#include <stdio.h>
#include <string.h>

#include "controller/controller.h"
#include "logfile/logfile.h"
#include "resource/resource.h"
#include "sync/sync-private.h"

#define DEFAULT_INTERVAL_USEC (5 * 60 * USEC_PER_SEC)
#define RETRY_USEC (30 * USEC_PER_SEC)
#define DEPENDENCY_POLL_USEC (1 * USEC_PER_SEC)
#define CORRECTED_NAMED 20

void sync_spec_read(const json_t *obj, SyncSpec *ret) {
        const json_t *meta = json_object_get(obj, "metadata"), *spec = json_object_get(obj, "spec");
        SyncSpec s = {
                .ns = json_str_at(meta, "namespace"),
                .name = json_str_at(meta, "name"),
                .repo = json_str_at(spec, "repo") ?: "",
                .path = json_str_at(spec, "path") ?: ".",
                .target_ns = json_str_at(spec, "namespace") ?: json_str_at(meta, "namespace"),
                .prune = !json_is_false(json_object_get(spec, "prune")),
                .suspend = json_is_true(json_object_get(spec, "suspend")),
                .allow_empty = json_is_true(json_object_get(spec, "allowEmpty")),
                .host_access = json_is_true(json_object_get(spec, "hostAccess")),
                .interval_usec = json_duration_at(spec, "interval", DEFAULT_INTERVAL_USEC),
                .depends_on = json_object_get(spec, "dependsOn"),
        };

        s.owner = xasprintf("sync/%s", s.name ?: "");
        *ret = s;
}

void sync_spec_clear(SyncSpec *s) {
        free(s->owner);
        *s = (SyncSpec){0};
}

static const char *annotation(const json_t *obj, const char *key) {
        return json_str_at(json_object_get(json_object_get(obj, "metadata"), "annotations"), key);
}

static json_int_t generation(const json_t *obj) {
        return json_int_at(json_object_get(obj, "metadata"), "generation", 0);
}

static void stats_add(SyncController *s, int result, uint64_t usec) {
        pthread_mutex_lock(&s->lock);
        if (result > 0)
                s->stats.applied++;
        else if (result == 0)
                s->stats.unchanged++;
        else
                s->stats.failed++;
        s->stats.last_seconds = (double) usec / USEC_PER_SEC;
        s->stats.seconds += s->stats.last_seconds;
        pthread_mutex_unlock(&s->lock);
}

void sync_stats(SyncController *s, SyncStats *ret) {
        pthread_mutex_lock(&s->lock);
        *ret = s->stats;
        pthread_mutex_unlock(&s->lock);
}

/* ---- status --------------------------------------------------------------------- */

/* What a sync found, for the status. */
typedef struct SyncOutcome {
        const char *revision; /* NULL: none tried */
        bool ok;
        const char *reason;
        char *message;
        const json_t *errors; /* NULL: clear them */
        bool attempted;       /* a revision was read: lastAttemptedRevision, lastSyncTime */
        bool answered;        /* a request (rpr/requestedAt) was answered without a sync */
        bool new_history;     /* add a history entry */
        const SyncPlan *plan; /* applied */
        uint64_t usec;
} SyncOutcome;

static void history_add(json_t *st, const SyncOutcome *o, uint64_t now) {
        json_t *h = json_object_get(st, "history");
        json_t *list = json_is_array(h) ? json_deep_copy(h) : json_array();
        json_t *e = json_pack("{s:s, s:f, s:s}", "revision", o->revision, "durationSeconds",
                              (double) o->usec / USEC_PER_SEC, "result", o->reason);

        json_set_time(e, "time", now);
        if (o->plan) {
                json_object_set_new(e, "created", json_integer((json_int_t) o->plan->created));
                json_object_set_new(e, "updated", json_integer((json_int_t) o->plan->updated));
                json_object_set_new(e, "deleted", json_integer((json_int_t) o->plan->deleted));
        }
        json_array_insert_new(list, 0, e);
        while (json_array_size(list) > SYNC_HISTORY)
                json_array_remove(list, SYNC_HISTORY);
        json_object_set_new(st, "history", list);
}

static void drift_add(json_t *st, const SyncPlan *p, uint64_t now) {
        json_t *d = json_object_get(st, "drift");
        json_int_t n = json_int_at(d, "corrected", 0) + (json_int_t) (p->created + p->updated);
        json_t *named = json_array();

        for (size_t i = 0; i < json_array_size(p->changed) && i < CORRECTED_NAMED; i++)
                json_array_append(named, json_array_get(p->changed, i));
        json_t *last = json_pack("{s:o}", "objects", named);
        json_set_time(last, "time", now);
        json_object_set_new(st, "drift",
                            json_pack("{s:I, s:o}", "corrected", (json_int_t) n, "lastCorrected", last));
}

/* The Sync's next status after a sync (or a wait) described by o. */
static json_t *status_next(const json_t *obj, const SyncOutcome *o, bool drift) {
        const json_t *old = json_object_get(obj, "status");
        /* Shallow: the inventory can be long. Members are replaced, never
         * changed in place, but the conditions, which condition_set edits. */
        json_t *st = json_is_object(old) ? json_copy((json_t *) old) : json_object();
        const char *requested = annotation(obj, "rpr/requestedAt");
        uint64_t now = now_usec();

        json_object_set_new(st, "observedGeneration", json_integer(generation(obj)));
        if (o->attempted) {
                json_object_set_new(st, "lastAttemptedRevision", json_string(o->revision));
                json_set_time(st, "lastSyncTime", now);
        }
        if ((o->attempted || o->answered) && requested)
                json_object_set_new(st, "lastHandledRequestedAt", json_string(requested));
        if (o->errors && json_array_size(o->errors) > 0)
                json_object_set(st, "errors", (json_t *) o->errors);
        else
                json_object_del(st, "errors");
        if (o->plan && o->ok) {
                json_object_set(st, "inventory", o->plan->inventory);
                json_object_set_new(st, "objects",
                                    json_integer((json_int_t) json_array_size(o->plan->inventory)));
                json_object_set_new(st, "lastAppliedRevision", json_string(o->revision));
                if (drift && o->plan->created + o->plan->updated > 0)
                        drift_add(st, o->plan, now);
        }
        if (o->new_history)
                history_add(st, o, now);
        if (json_object_get(st, "conditions"))
                json_object_set_new(st, "conditions", json_deep_copy(json_object_get(st, "conditions")));
        condition_set(st, &(Condition){"Ready", o->ok, o->reason, o->message, now});
        return st;
}

static json_t *status_fn(const json_t *obj, void *userdata) {
        const SyncOutcome *o = userdata;
        json_t *st = status_next(obj, o, false);

        if (json_equal(st, json_object_get(obj, "status"))) {
                json_decref(st);
                return NULL;
        }
        return st;
}

static int write_outcome(SyncController *s, const SyncSpec *spec, SyncOutcome *o) {
        int k = store_update_status(s->store, "Sync", spec->ns, spec->name, status_fn, o, NULL);

        free(o->message);
        o->message = NULL;
        return k == -ENOENT ? 0 : k;
}

/* Why nothing is synced now. A request waiting is answered with it, so that
 * `rprctl sync` says why rather than wait. */
static int write_condition(SyncController *s, const SyncSpec *spec, const char *reason, char *message) {
        SyncOutcome o = {.reason = reason, .message = message, .answered = true};

        return write_outcome(s, spec, &o);
}

/* ---- one sync ------------------------------------------------------------------- */

static char *errors_summary(const json_t *errors, const char *what) {
        size_t n = json_array_size(errors);

        return xasprintf("%zu problem%s%s; nothing was applied. First: %s", n, n == 1 ? "" : "s", what,
                         json_string_value(json_array_get(errors, 0)) ?: "");
}

static void log_applied(SyncController *s, const SyncSpec *spec, const SyncOutcome *o, bool drift) {
        _cleanup_free_ char *id = xasprintf("%s/%s", spec->ns, spec->name);
        const SyncPlan *p = o->plan;

        if (p->n_ops <= 1)
                return;
        log_object(LOG_LEVEL_INFO, "Sync", id, "sync %s: %s %s: %zu created, %zu updated, %zu deleted", id,
                   drift ? "corrected drift at" : "applied", o->revision, p->created, p->updated,
                   p->deleted);
        if (!s->activity)
                return;
        (void) logfile_append(s->activity, now_usec(),
                              "sync %s: %s %s: %zu created, %zu updated, %zu deleted, %zu let go", id,
                              drift ? "corrected drift at" : "applied", o->revision, p->created, p->updated,
                              p->deleted, p->released);
        for (size_t i = 0; drift && i < json_array_size(p->changed); i++)
                (void) logfile_append(s->activity, now_usec(), "sync %s: drift: %s put back as %s says", id,
                                      json_string_value(json_array_get(p->changed, i)), o->revision);
}

/* Applies the rendered objects; 1 applied something, 0 nothing to do. */
static int apply_rendered(SyncController *s, const SyncSpec *spec, SyncMemo *memo, const json_t *obj,
                          const json_t *objects, SyncOutcome *o, uint64_t start) {
        const json_t *st = json_object_get(obj, "status");
        const char *applied = json_str_at(st, "lastAppliedRevision");
        bool same = applied && STREQ(applied, o->revision) &&
                    json_int_at(st, "observedGeneration", -1) == generation(obj);
        _cleanup_json_ json_t *status = NULL;
        SyncPlan plan;
        int k;

        sync_plan(s, spec, memo, obj, objects, &plan);
        if (json_array_size(plan.conflicts) > 0) {
                o->reason = "Conflict";
                o->errors = plan.conflicts;
                o->message = errors_summary(plan.conflicts, ": objects this Sync does not manage");
                k = write_outcome(s, spec, o);
                sync_plan_clear(&plan);
                return k < 0 ? k : -EBUSY;
        }
        o->ok = true;
        o->reason = "Applied";
        o->plan = &plan;
        o->new_history = !same || (o->new_history && plan.n_ops > 0);
        o->usec = now_mono_usec() - start;
        o->message = xasprintf("%zu objects at %s", json_array_size(plan.inventory), o->revision);
        status = status_next(obj, o, same);
        k = sync_plan_commit(s, &plan, memo, obj, status);
        if (k >= 0)
                log_applied(s, spec, o, same);
        free(o->message);
        o->message = NULL;
        k = k < 0 ? k : plan.n_ops > 1;
        sync_plan_clear(&plan);
        return k;
}

static int sync_revision(SyncController *s, const SyncSpec *spec, const json_t *obj, const char *sha,
                         const char *revision, bool changed) {
        SyncMemo *memo = sync_memo(s, spec->ns, spec->name);
        uint64_t start = now_mono_usec();
        _cleanup_free_ char *error = NULL;
        SyncOutcome o = {.revision = revision, .attempted = true, .new_history = changed};
        SyncRender r;
        int k;

        k = sync_render(s, spec, memo, sha, &r, &error);
        if (k < 0) {
                /* Not an attempt of the revision: tried again soon, not at the interval. */
                o.reason = "FetchFailed";
                o.message = TAKE_PTR(error);
                o.attempted = false;
                o.answered = true;
                o.new_history = false;
                (void) write_outcome(s, spec, &o);
                stats_add(s, -1, now_mono_usec() - start);
                return k;
        }
        if (json_array_size(r.errors) > 0) {
                o.reason = "ValidationFailed";
                o.errors = r.errors;
                o.message = errors_summary(r.errors, "");
                o.usec = now_mono_usec() - start;
                k = write_outcome(s, spec, &o);
                stats_add(s, -1, now_mono_usec() - start);
                sync_render_clear(&r);
                return k;
        }
        k = apply_rendered(s, spec, memo, obj, r.objects, &o, start);
        stats_add(s, k, now_mono_usec() - start);
        sync_render_clear(&r);
        return k == -EBUSY ? 0 : k;
}

/* ---- waiting for others ----------------------------------------------------------- */

/* NULL when every Sync of dependsOn is Ready at the same commit (when it
 * reads the same Repo), else why not (caller frees). */
static char *dependency_wait(SyncController *s, const SyncSpec *spec, const char *revision) {
        size_t i;
        const json_t *v;

        json_array_foreach(spec->depends_on, i, v) {
                const char *dep = json_string_value(v);
                _cleanup_json_ json_t *d = NULL;
                if (!dep || store_get_json(s->store, "Sync", spec->ns, dep, &d) < 0)
                        return xasprintf("Sync %s does not exist", dep ?: "?");
                const json_t *st = json_object_get(d, "status");
                const json_t *ready = condition_get(st, "Ready");
                if (!ready || !STREQ(json_str_at(ready, "status") ?: "", "True"))
                        return xasprintf("Sync %s is not Ready", dep);
                const char *repo = json_str_at(json_object_get(d, "spec"), "repo");
                const char *at = json_str_at(st, "lastAppliedRevision");
                if (repo && STREQ(repo, spec->repo) && (!at || !STREQ(at, revision)))
                        return xasprintf("Sync %s is not at %s yet", dep, revision);
        }
        return NULL;
}

/* ---- the reconciler ------------------------------------------------------------------ */

static bool has_finalizer(const json_t *obj) {
        const json_t *fin = json_object_get(json_object_get(obj, "metadata"), "finalizers");
        size_t i;
        const json_t *v;

        json_array_foreach(fin, i, v) {
                if (json_is_string(v) && STREQ(json_string_value(v), SYNC_FINALIZER))
                        return true;
        }
        return false;
}

static int finalize(SyncController *s, const SyncSpec *spec, const json_t *obj) {
        SyncPlan plan;
        int k;

        if (!has_finalizer(obj))
                return 0;
        sync_plan_finalize(s, spec, obj, &plan);
        k = sync_plan_commit(s, &plan, NULL, obj, NULL);
        if (k >= 0 && s->activity)
                (void) logfile_append(s->activity, now_usec(),
                                      "sync %s/%s: deleted: %zu objects deleted, %zu let go", spec->ns,
                                      spec->name, plan.deleted, plan.released);
        sync_plan_clear(&plan);
        return k == -ENOENT ? 0 : k;
}

static int add_finalizer(SyncController *s, const json_t *obj) {
        _cleanup_json_ json_t *next = json_deep_copy(obj);
        json_t *meta = json_object_get(next, "metadata"), *fin = json_object_get(meta, "finalizers");
        StoreOp op = {
                .type = STORE_OP_UPDATE, .object = next, .expect_revision = store_object_revision(obj)};
        int k;

        if (!json_is_array(fin)) {
                fin = json_array();
                json_object_set_new(meta, "finalizers", fin);
        }
        json_array_append_new(fin, json_string(SYNC_FINALIZER));
        k = store_commit(s->store, &op, 1, false, NULL);
        store_ops_clear(&op, k >= 0 ? 1 : 0);
        return k == -ESTALE || k == -ENOENT ? 0 : k;
}

/* When the next drift check is due, 0 now. */
static uint64_t due_in(const SyncSpec *spec, const json_t *st) {
        uint64_t last = json_time_at(st, "lastSyncTime"), now = now_usec();

        if (!last || last + spec->interval_usec <= now)
                return 0;
        return last + spec->interval_usec - now;
}

static int reconcile_spec(SyncController *s, const SyncSpec *spec, const json_t *obj,
                          uint64_t *ret_requeue) {
        const json_t *st = json_object_get(obj, "status");
        _cleanup_json_ json_t *repo = NULL;
        _cleanup_free_ char *revision = NULL, *wait = NULL;

        if (spec->suspend)
                return write_condition(s, spec, "Suspended",
                                       xstrdup("spec.suspend is true: nothing is applied or corrected"));
        if (store_get_json(s->store, "Repo", spec->ns, spec->repo, &repo) < 0)
                return write_condition(s, spec, "RepoNotFound",
                                       xasprintf("Repo %s/%s does not exist", spec->ns, spec->repo));
        const char *sha = json_str_at(json_object_get(json_object_get(repo, "status"), "lastCommit"), "sha");
        if (!sha)
                return write_condition(s, spec, "RepoNotReady",
                                       xasprintf("Repo %s/%s has no commit yet", spec->ns, spec->repo));
        /* The branch and the sha come from people and remotes: one flat line. */
        _cleanup_free_ char *branch =
                text_flat_dup(json_str_at(json_object_get(repo, "spec"), "branch") ?: "main", 255);
        _cleanup_free_ char *flat_sha = text_flat_dup(sha, 64);
        revision = xasprintf("%s@sha1:%s", branch, flat_sha);
        wait = dependency_wait(s, spec, revision);
        if (wait) {
                *ret_requeue = DEPENDENCY_POLL_USEC;
                return write_condition(s, spec, "DependencyNotReady", TAKE_PTR(wait));
        }

        const char *attempted = json_str_at(st, "lastAttemptedRevision");
        const char *requested = annotation(obj, "rpr/requestedAt");
        const char *handled = json_str_at(st, "lastHandledRequestedAt");
        bool changed = !attempted || !STREQ(attempted, revision) ||
                       json_int_at(st, "observedGeneration", -1) != generation(obj);
        bool asked = requested && (!handled || !STREQ(requested, handled));
        uint64_t due = due_in(spec, st);
        if (!changed && !asked && due > 0) {
                *ret_requeue = due;
                return 0;
        }
        int k = sync_revision(s, spec, obj, sha, revision, changed);
        *ret_requeue = k == -EIO ? MIN(RETRY_USEC, spec->interval_usec) : spec->interval_usec;
        return k == -EIO ? 0 : k;
}

static int reconcile(void *userdata, const char *ns, const char *name, uint64_t *ret_requeue_after) {
        SyncController *s = userdata;
        _cleanup_json_ json_t *obj = NULL;
        SyncSpec spec;
        int k;

        k = store_get_json(s->store, "Sync", ns, name, &obj);
        if (k == -ENOENT) {
                sync_memo_drop(s, ns, name);
                return 0;
        }
        if (k < 0)
                return k;
        sync_spec_read(obj, &spec);
        if (json_object_get(json_object_get(obj, "metadata"), "deletionTimestamp"))
                k = finalize(s, &spec, obj);
        else if (!has_finalizer(obj))
                k = add_finalizer(s, obj);
        else
                k = reconcile_spec(s, &spec, obj, ret_requeue_after);
        sync_spec_clear(&spec);
        return k < 0 ? k : 0;
}

/* A Repo changed (a new commit, most often): the Syncs that read it look. */
static void on_repo_event(void *userdata, const StoreEvent *ev) {
        SyncController *s = userdata;

        controller_enqueue_where(s->controller, "Sync", ev->ns, "repo", ev->name, NULL);
}

/* ---- memos ------------------------------------------------------------------------- */

SyncMemo *sync_memo(SyncController *s, const char *ns, const char *name) {
        _cleanup_free_ char *id = xasprintf("%s/%s", ns, name);

        pthread_mutex_lock(&s->lock);
        SyncMemo *m = hashmap_get(s->memos, id);
        if (!m) {
                m = xcalloc(1, sizeof *m);
                m->files = json_object();
                m->seen = json_object();
                hashmap_put(s->memos, id, m);
        }
        pthread_mutex_unlock(&s->lock);
        return m;
}

void sync_memo_free(SyncMemo *m) {
        if (!m)
                return;
        free(m->config);
        json_decref(m->files);
        json_decref(m->seen);
        free(m);
}

void sync_memo_drop(SyncController *s, const char *ns, const char *name) {
        _cleanup_free_ char *id = xasprintf("%s/%s", ns, name);

        pthread_mutex_lock(&s->lock);
        SyncMemo *m = hashmap_remove(s->memos, id);
        pthread_mutex_unlock(&s->lock);
        sync_memo_free(m);
}

static void memo_free_one(const char *key, void *value, void *userdata) {
        (void) key;
        (void) userdata;
        sync_memo_free(value);
}

/* ---- life cycle ------------------------------------------------------------------- */

int sync_controller_new(const SyncOptions *o, SyncController **ret) {
        int k;

        if (!o->store || !o->controller || !o->repos)
                return -EINVAL;
        SyncController *s = xcalloc(1, sizeof *s);
        s->store = o->store;
        s->controller = o->controller;
        s->repos = o->repos;
        s->activity = o->activity;
        s->memos = hashmap_new();
        pthread_mutex_init(&s->lock, NULL);
        k = controller_add(o->controller, "Sync", reconcile, s);
        if (k >= 0)
                k = controller_on_event(o->controller, "Repo", on_repo_event, s);
        if (k < 0) {
                sync_controller_free(s);
                return k;
        }
        *ret = s;
        return 0;
}

void sync_controller_free(SyncController *s) {
        if (!s)
                return;
        hashmap_foreach(s->memos, memo_free_one, NULL);
        hashmap_free(s->memos);
        pthread_mutex_destroy(&s->lock);
        free(s);
}
