/* repo.c: the Repo kind's reconciler (see repo.h).
 *
 * Whether a check is due is decided from the stored object alone: a new
 * generation, a Token whose generation differs from the one the last check
 * used, a check asked for, or status.nextCheckTime reached. Everything else
 * waits for nextCheckTime, which the last check wrote: the interval after a
 * success or a lasting failure, a short backoff after a transient one, the
 * rate limit's reset when GitHub said to wait. */
#include <stdio.h>
#include <string.h>

#include "controller/controller.h"
#include "github/github.h"
#include "logfile/logfile.h"
#include "repo/repo-private.h"
#include "resource/resource.h"
#include "store/store.h"

#define BACKOFF_BASE_USEC (15 * USEC_PER_SEC)
#define BACKOFF_MAX_SHIFT 6
#define MIN_RETRY_USEC (1 * USEC_PER_SEC)

static char *repo_id(const char *ns, const char *name) {
        return xasprintf("%s/%s", ns, name);
}

/* ---- status -------------------------------------------------------------------- */

typedef struct StatusWrite {
        json_int_t generation;
        const RepoSpec *spec;
        const RepoOutcome *o; /* NULL: inactive or invalid */
        const char *reason, *message;
        char *old_sha, *new_sha; /* out */
} StatusWrite;

static uint64_t next_check(const RepoSpec *spec, const RepoOutcome *o, json_int_t failures) {
        if (o->retry_at_usec)
                return MAX(o->retry_at_usec, o->when_usec + MIN_RETRY_USEC);
        if (o->transient && failures > 0) {
                uint64_t backoff = BACKOFF_BASE_USEC << MIN(failures - 1, BACKOFF_MAX_SHIFT);
                return o->when_usec + MIN(backoff, spec->interval_usec);
        }
        return o->when_usec + spec->interval_usec;
}

static void status_after_check(json_t *st, StatusWrite *w) {
        const RepoOutcome *o = w->o;
        json_int_t failures = o->ok ? 0 : json_int_at(st, "failures", 0) + 1;
        const char *old_sha = json_str_at(json_object_get(st, "lastCommit"), "sha");

        w->old_sha = old_sha ? xstrdup(old_sha) : NULL;
        json_object_set_new(st, "failures", json_integer(failures));
        json_set_time(st, "lastCheckTime", o->when_usec);
        json_set_time(st, "nextCheckTime", next_check(w->spec, o, failures));
        if (o->has_token)
                json_object_set_new(st, "tokenGeneration", json_integer(o->token_generation));
        else
                json_object_del(st, "tokenGeneration");
        if (o->commit) {
                const char *sha = json_str_at(o->commit, "sha");
                if (!old_sha || !STREQ(old_sha, sha))
                        json_set_time(st, "lastChangeTime", o->when_usec);
                w->new_sha = xstrdup(sha);
                json_object_set(st, "lastCommit", o->commit);
        }
        if (o->branches)
                json_object_set(st, "branches", o->branches);
        condition_set(st, &(Condition){"Ready", o->ok, o->reason, o->message, o->when_usec});
}

static json_t *next_status(const json_t *obj, void *userdata) {
        StatusWrite *w = userdata;
        const json_t *old = json_object_get(obj, "status");
        json_t *st = json_is_object(old) ? json_deep_copy(old) : json_object();

        json_object_set_new(st, "observedGeneration", json_integer(w->generation));
        free(w->old_sha);
        free(w->new_sha);
        w->old_sha = w->new_sha = NULL;
        if (w->o)
                status_after_check(st, w);
        else {
                json_object_del(st, "nextCheckTime");
                condition_set(st, &(Condition){"Ready", false, w->reason, w->message, now_usec()});
        }
        if (json_equal(st, old)) {
                json_decref(st);
                return NULL;
        }
        return st;
}

/* ---- announcing a commit ------------------------------------------------------- */

static void announce(RepoController *r, const RepoSpec *spec, const RepoOutcome *o, const char *old_sha,
                     const char *new_sha) {
        const char *msg = json_str_at(o->commit, "message") ?: "";

        _cleanup_free_ char *id = repo_id(spec->ns, spec->name);

        if (r->activity)
                (void) logfile_append(r->activity, o->when_usec, "repo %s: %s at %.12s%s%.12s: %s", id, spec->branch,
                                      new_sha, old_sha ? " (was " : "", old_sha ? old_sha : "", msg);
        log_object(LOG_LEVEL_INFO, "Repo", id, "repo %s: new commit %.12s on %s: %s", id, new_sha, spec->branch, msg);
        pthread_mutex_lock(&r->lock);
        size_t n = r->n_callbacks;
        RepoCallback *cbs = n ? xmalloc(n * sizeof *cbs) : NULL;
        if (n)
                memcpy(cbs, r->callbacks, n * sizeof *cbs);
        pthread_mutex_unlock(&r->lock);

        for (size_t i = 0; i < n; i++)
                cbs[i].fn(cbs[i].userdata, spec->ns, spec->name, new_sha);
        free(cbs);
}

/* A check of a stored Repo, its status written and a new commit announced.
 * *ret_next (optional) is when the next one is due. */
static int check_object(RepoController *r, const json_t *obj, const RepoSpec *spec, uint64_t *ret_next) {
        const json_t *old_commit = json_object_get(json_object_get(obj, "status"), "lastCommit");
        StatusWrite w = {json_int_at(json_object_get(obj, "metadata"), "generation", 0), spec, NULL};
        _cleanup_json_ json_t *written = NULL;
        RepoOutcome o;
        int k;

        repo_check_run(r, spec, old_commit, &o);
        w.o = &o;
        k = store_update_status(r->store, "Repo", spec->ns, spec->name, next_status, &w, &written);
        if (k >= 0 && w.new_sha && (!w.old_sha || !STREQ(w.old_sha, w.new_sha)))
                announce(r, spec, &o, w.old_sha, w.new_sha);
        if (ret_next) {
                uint64_t next;
                const char *t = json_str_at(json_object_get(written, "status"), "nextCheckTime");
                *ret_next = t && time_parse_rfc3339(t, &next) >= 0 ? next : o.when_usec + spec->interval_usec;
        }
        free(w.old_sha);
        free(w.new_sha);
        repo_outcome_clear(&o);
        return k;
}

/* ---- the reconciler ------------------------------------------------------------ */

static bool take_forced(RepoController *r, const char *id) {
        pthread_mutex_lock(&r->lock);
        bool forced = json_object_get(r->forced, id) != NULL;
        json_object_del(r->forced, id);
        pthread_mutex_unlock(&r->lock);
        return forced;
}

static void forget(RepoController *r, const char *id) {
        github_forget(r->github, id);
        (void) take_forced(r, id);
}

/* How long until a check is due: 0 now. */
static uint64_t due_in(RepoController *r, const json_t *obj, const RepoSpec *spec) {
        const json_t *st = json_object_get(obj, "status");
        json_int_t generation = json_int_at(json_object_get(obj, "metadata"), "generation", 0);
        const char *next = json_str_at(st, "nextCheckTime");
        uint64_t next_usec, now = now_usec();

        if (json_int_at(st, "observedGeneration", -1) != generation)
                return 0;
        if (spec->token_ref &&
            json_int_at(st, "tokenGeneration", -1) != repo_token_generation(r, spec->ns, spec->token_ref))
                return 0;
        if (!next || time_parse_rfc3339(next, &next_usec) < 0)
                return 0;
        return next_usec > now ? next_usec - now : 0;
}

static int write_not_checked(RepoController *r, const json_t *obj, const char *reason, const char *message) {
        StatusWrite w = {.generation = json_int_at(json_object_get(obj, "metadata"), "generation", 0),
                         .reason = reason,
                         .message = message};
        const json_t *meta = json_object_get(obj, "metadata");
        int k = store_update_status(r->store, "Repo", json_str_at(meta, "namespace"), json_str_at(meta, "name"),
                                    next_status, &w, NULL);
        free(w.old_sha);
        free(w.new_sha);
        return k == -ENOENT ? 0 : k;
}

static int reconcile(void *userdata, const char *ns, const char *name, uint64_t *ret_requeue_after) {
        RepoController *r = userdata;
        _cleanup_free_ char *id = repo_id(ns, name), *error = NULL;
        _cleanup_json_ json_t *obj = NULL;
        RepoSpec spec;
        uint64_t next, wait;
        int k;

        k = store_get_json(r->store, "Repo", ns, name, &obj);
        if (k == -ENOENT) {
                forget(r, id);
                return 0;
        }
        if (k < 0)
                return k;
        if (json_object_get(json_object_get(obj, "metadata"), "deletionTimestamp"))
                return 0;
        if (repo_spec_read(obj, &spec, &error) < 0)
                return write_not_checked(r, obj, "InvalidSpec", error);
        if (!spec.active) {
                repo_spec_clear(&spec);
                forget(r, id);
                return write_not_checked(r, obj, "Inactive", "spec.active is false: rpr does not watch it");
        }

        wait = take_forced(r, id) ? 0 : due_in(r, obj, &spec);
        if (wait > 0) {
                *ret_requeue_after = wait;
                repo_spec_clear(&spec);
                return 0;
        }
        k = check_object(r, obj, &spec, &next);
        repo_spec_clear(&spec);
        if (k == -ENOENT)
                return 0;
        if (k < 0)
                return k;
        uint64_t now = now_usec();
        *ret_requeue_after = next > now ? next - now : MIN_RETRY_USEC;
        return 0;
}

/* ---- what others ask -------------------------------------------------------------- */

void repo_check_soon(RepoController *r, const char *ns, const char *name) {
        _cleanup_free_ char *id = repo_id(ns, name);

        pthread_mutex_lock(&r->lock);
        json_object_set_new(r->forced, id, json_true());
        pthread_mutex_unlock(&r->lock);
        controller_enqueue(r->controller, "Repo", ns, name, 0);
}

int repo_check_object_now(RepoController *r, const json_t *obj, const RepoSpec *spec) {
        return check_object(r, obj, spec, NULL);
}

void repo_on_commit(RepoController *r, RepoCommitFn fn, void *userdata) {
        pthread_mutex_lock(&r->lock);
        r->callbacks = xrealloc(r->callbacks, (r->n_callbacks + 1) * sizeof *r->callbacks);
        r->callbacks[r->n_callbacks++] = (RepoCallback){fn, userdata};
        pthread_mutex_unlock(&r->lock);
}

/* A Token changed: the Repos that use it look again (due_in sees the new
 * generation). */
static void on_token_changed(void *userdata, const char *ns, const char *name) {
        RepoController *r = userdata;

        controller_enqueue_where(r->controller, "Repo", ns, "tokenRef", name, NULL);
}

/* ---- life cycle ------------------------------------------------------------------- */

int repo_controller_new(const RepoOptions *o, RepoController **ret) {
        int k;

        if (!o->store || !o->controller || !o->github || !o->cache_dir)
                return -EINVAL;
        RepoController *r = xcalloc(1, sizeof *r);
        r->store = o->store;
        r->controller = o->controller;
        r->tokens = o->tokens;
        r->github = o->github;
        r->cache_dir = xstrdup(o->cache_dir);
        r->activity = o->activity;
        r->forced = json_object();
        pthread_mutex_init(&r->lock, NULL);
        k = controller_add(o->controller, "Repo", reconcile, r);
        if (k < 0) {
                repo_controller_free(r);
                return k;
        }
        if (o->tokens)
                token_on_changed(o->tokens, on_token_changed, r);
        *ret = r;
        return 0;
}

void repo_controller_free(RepoController *r) {
        if (!r)
                return;
        json_decref(r->forced);
        free(r->callbacks);
        free(r->cache_dir);
        pthread_mutex_destroy(&r->lock);
        free(r);
}
