/* runner.c: the Runner kind's reconciler (see runner.h): its finalizer,
 * the cache of GitHub's runner lists, and what wakes a Runner. Each
 * pass itself is in runner-pass.c. */
#include <stdio.h>
#include <string.h>

#include "controller/controller.h"
#include "github/github.h"
#include "runner/runner-private.h"
#include "server/server.h"
#include "store/store.h"
#include "token/token.h"

/* ---- GitHub's lists, cached ---------------------------------------------------------- */

void runner_list_forget(RunnerController *rc, const RunnerScope *scope) {
        pthread_mutex_lock(&rc->lock);
        json_object_del(rc->lists, scope->key);
        pthread_mutex_unlock(&rc->lock);
}

static json_t *list_json(const GithubRunner *r, size_t n) {
        json_t *a = json_array();

        for (size_t i = 0; i < n; i++)
                json_array_append_new(a, json_pack("{s:I, s:s, s:b, s:b}", "id", r[i].id, "name", r[i].name,
                                                   "online", r[i].online, "busy", r[i].busy));
        return a;
}

int runner_list_cached(RunnerController *rc, const RunnerScope *scope, uint64_t max_age_usec, json_t **ret,
                       char *error, size_t size, const char **ret_reason, uint64_t *ret_retry_at) {
        uint64_t now = now_mono_usec();
        GithubRunner *list = NULL;
        GithubResult res;
        size_t n = 0;

        pthread_mutex_lock(&rc->lock);
        const json_t *c = json_object_get(rc->lists, scope->key);
        if (c && now - (uint64_t) json_int_at(c, "at", 0) < max_age_usec) {
                *ret = json_deep_copy(json_object_get(c, "runners"));
                pthread_mutex_unlock(&rc->lock);
                return 0;
        }
        pthread_mutex_unlock(&rc->lock);

        GithubRepoRef ref = {scope->api_url, scope->owner, scope->repo_name, scope->secret.data, NULL};
        if (github_runner_list(rc->github, &ref, &list, &n, &res) < 0) {
                snprintf(error, size, "%s", res.message);
                *ret_reason = github_error_reason(res.error);
                *ret_retry_at = res.error == GITHUB_RATE_LIMITED ? res.retry_at_usec : 0;
                return -EIO;
        }
        token_note_used(rc->tokens, scope->token_ns, scope->token_name);
        json_t *a = list_json(list, n);
        github_runners_free(list, n);
        pthread_mutex_lock(&rc->lock);
        json_object_set_new(rc->lists, scope->key,
                            json_pack("{s:I, s:O}", "at", (json_int_t) now_mono_usec(), "runners", a));
        pthread_mutex_unlock(&rc->lock);
        *ret = a;
        return 0;
}

/* ---- the reconciler ------------------------------------------------------------------- */

static int reconcile(void *userdata, const char *ns, const char *name, uint64_t *ret_requeue_after) {
        RunnerController *rc = userdata;
        _cleanup_json_ json_t *obj = NULL;
        bool done = false;
        int r;

        r = store_get_json(rc->store, "Runner", ns, name, &obj);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return r;
        bool deleting = json_object_get(json_object_get(obj, "metadata"), "deletionTimestamp") != NULL;
        if (deleting && !store_has_finalizer(obj, RUNNER_FINALIZER))
                return 0;
        if (!deleting && !store_has_finalizer(obj, RUNNER_FINALIZER))
                return store_add_finalizer(rc->store, obj, RUNNER_FINALIZER); /* its write brings us back */
        r = runner_pass(rc, obj, deleting, ret_requeue_after, &done);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return r;
        if (deleting && done) {
                log_info("runner %s/%s: every runner deregistered and stopped; deleted", ns, name);
                runner_table_forget(rc, ns, name);
                return store_remove_finalizer(rc->store, obj, RUNNER_FINALIZER);
        }
        return 0;
}

/* A Server or a Token changed: Runners look again soon. */
static void on_server_reachable(void *userdata, const char *ns, const char *name) {
        RunnerController *rc = userdata;

        (void) name;
        controller_enqueue_where(rc->controller, "Runner", ns, NULL, NULL, NULL);
}

/* A Server was added, deleted or labelled anew: the Runners that choose
 * Servers by labels look again (a Runner waiting to remove what is left on
 * an offline agent's host gives up as its Server goes). */
static void on_server_event(void *userdata, const StoreEvent *ev) {
        RunnerController *rc = userdata;

        if (ev->labels_changed)
                controller_enqueue_where(rc->controller, "Runner", ev->ns, NULL, NULL, NULL);
}

static void on_token_changed(void *userdata, const char *ns, const char *name) {
        RunnerController *rc = userdata;

        controller_enqueue_where(rc->controller, "Runner", ns, "tokenRef", name, NULL);
}

uint64_t runner_unmatched_jobs(RunnerController *rc) {
        pthread_mutex_lock(&rc->lock);
        uint64_t n = rc->unmatched_total;
        pthread_mutex_unlock(&rc->lock);
        return n;
}

/* ---- life cycle ------------------------------------------------------------------------ */

int runner_controller_new(const RunnerOptions *o, RunnerController **ret) {
        int k;

        if (!o->store || !o->controller || !o->github || !o->servers || !o->ssh || !o->state_dir)
                return -EINVAL;
        RunnerController *rc = xcalloc(1, sizeof *rc);
        rc->store = o->store;
        rc->controller = o->controller;
        rc->tokens = o->tokens;
        rc->github = o->github;
        rc->servers = o->servers;
        rc->ssh = o->ssh;
        rc->activity = o->activity;
        rc->release_dir = xasprintf("%s/cache/runners", o->state_dir);
        rc->proc_dir = xasprintf("%s/runners/.proc", o->state_dir);
        rc->lists = json_object();
        rc->tables = json_object();
        rc->unmatched = json_object();
        pthread_mutex_init(&rc->lock, NULL);
        pthread_mutex_init(&rc->release_lock, NULL);
        k = mkdir_p(rc->release_dir, 0700);
        if (k >= 0)
                k = mkdir_p(rc->proc_dir, 0700);
        if (k >= 0)
                k = controller_add(o->controller, "Runner", reconcile, rc);
        if (k >= 0)
                k = controller_on_event(o->controller, "Server", on_server_event, rc);
        if (k < 0) {
                runner_controller_free(rc);
                return k;
        }
        server_on_reachable(o->servers, on_server_reachable, rc);
        if (o->tokens)
                token_on_changed(o->tokens, on_token_changed, rc);
        *ret = rc;
        return 0;
}

void runner_controller_free(RunnerController *rc) {
        if (!rc)
                return;
        json_decref(rc->lists);
        json_decref(rc->tables);
        json_decref(rc->unmatched);
        pthread_mutex_destroy(&rc->lock);
        pthread_mutex_destroy(&rc->release_lock);
        free(rc->release_dir);
        free(rc->proc_dir);
        free(rc);
}
