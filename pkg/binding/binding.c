/* binding.c: the Binding kind's reconciler (see binding.h): its finalizer,
 * committing each pass's plan, trimming the history, and deletion. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "binding/binding-private.h"
#include "controller/controller.h"
#include "logfile/logfile.h"
#include "repo/repo.h"
#include "resource/resource.h"
#include "run/run.h"
#include "server/server.h"
#include "store/store.h"

#define COMMIT_TRIES 8
/* While its Runs are being canceled, a deleted Binding looks again this often. */
#define FINALIZE_POLL_USEC (1 * USEC_PER_SEC)

static bool finished(const json_t *run) {
        return run_phase_finished(json_str_at(run, "phase"));
}

/* Finished Runs beyond spec.history go, oldest first; the last Run of each
 * Server stays whatever its age. */
static void trim_history(BindingController *b, const json_t *obj) {
        BindingSpec sp;
        binding_spec_read(obj, &sp);
        _cleanup_json_ json_t *runs = run_list_owned(b->store, sp.ns, "binding", sp.name), *doomed = json_array();
        const json_t *servers = json_object_get(json_object_get(obj, "status"), "servers");
        json_int_t kept = 0;

        if ((json_int_t) json_array_size(runs) <= sp.history)
                return;
        for (size_t i = json_array_size(runs); i-- > 0;) { /* newest first */
                const json_t *run = json_array_get(runs, i);
                const char *name = json_str_at(run, "name"), *key;
                bool last = false;
                json_t *e;
                json_object_foreach((json_t *) servers, key, e) last = last || STREQ(json_str_at(e, "lastRun") ?: "", name);
                if (!finished(run) || last || kept < sp.history) {
                        kept += finished(run);
                        continue;
                }
                json_array_append_new(doomed, json_string(name));
        }
        int r = run_delete_many(b->store, sp.ns, doomed, NULL);
        if (r < 0)
                log_warning("binding %s/%s: cannot remove old runs: %s", sp.ns, sp.name, strerror(-r));
}

/* ---- a pass ------------------------------------------------------------------------------ */

static void announce(BindingController *b, const char *ns, const char *name, const Plan *p) {
        const json_t *run;
        size_t i;

        json_array_foreach(p->runs, i, run) {
                const json_t *spec = json_object_get(run, "spec");
                const char *run_name = json_str_at(json_object_get(run, "metadata"), "name");
                _cleanup_free_ char *id = xasprintf("%s/%s", ns, name);
                if (b->activity)
                        (void) logfile_append(b->activity, now_usec(),
                                              "binding %s: run %s for server %s: commit %.12s (%s, attempt %lld)", id,
                                              run_name, json_str_at(spec, "server"), json_str_at(spec, "commit"),
                                              json_str_at(spec, "triggeredBy"),
                                              (long long) json_int_at(spec, "attempt", 1));
                log_object(LOG_LEVEL_INFO, "Binding", id, "binding %s: run %s for server %s (%s)", id, run_name,
                           json_str_at(spec, "server"), json_str_at(spec, "triggeredBy"));
        }
}

/* Plans and commits the Runs with the status, against the Binding's
 * resourceVersion, again if another write came first. known (optional) is
 * the Binding as just read: the first try need not read it again. The
 * write's own event wakes no one: this pass has seen what it wrote. */
static int pass(BindingController *b, const char *ns, const char *name, const json_t *known,
                const BindingTrigger *t, json_t **ret_report, char **ret_error, uint64_t *ret_requeue) {
        for (int tries = 0; tries < COMMIT_TRIES; tries++) {
                _cleanup_json_ json_t *obj = tries == 0 && known ? json_incref((json_t *) known) : NULL;
                Plan p;
                int r = obj ? 0 : store_get_json(b->store, "Binding", ns, name, &obj);
                if (r < 0)
                        return r;
                if (t && json_object_get(json_object_get(obj, "metadata"), "deletionTimestamp")) {
                        *ret_error = xasprintf("binding %s is being deleted", name);
                        return -EPERM;
                }
                r = binding_plan(b, obj, t, &p);
                if (r < 0) {
                        *ret_error = TAKE_PTR(p.error);
                        plan_clear(&p);
                        return r;
                }
                size_t n = json_array_size(p.runs);
                _cleanup_free_ StoreOp *ops = xcalloc(n + 1, sizeof *ops);
                json_t *w = json_pack("{s:s, s:s, s:O, s:O}", "apiVersion", RPR_API_VERSION, "kind", "Binding", "metadata",
                                      json_object_get(obj, "metadata"), "status", p.status);
                for (size_t i = 0; i < n; i++)
                        ops[i] = (StoreOp){.type = STORE_OP_APPLY, .object = json_array_get(p.runs, i)};
                ops[n] = (StoreOp){.type = STORE_OP_STATUS, .object = w, .expect_revision = store_object_revision(obj)};
                r = store_commit(b->store, ops, n + 1, false, NULL);
                store_ops_clear(ops, n + 1);
                json_decref(w);
                if (r >= 0 && ops[n].outcome != STORE_UNCHANGED)
                        controller_own_write(b->controller, "Binding", ns, name, ops[n].revision);
                if (r >= 0) {
                        announce(b, ns, name, &p);
                        trim_history(b, obj);
                        if (ret_report)
                                *ret_report = json_incref(p.report);
                        if (ret_requeue)
                                *ret_requeue = p.requeue;
                }
                plan_clear(&p);
                if (r != -ESTALE)
                        return r;
        }
        return -EBUSY;
}

/* ---- deletion ---------------------------------------------------------------------------- */

/* Cancels the unfinished Runs, and once none is left removes them all and
 * lets the Binding go. */
static int finalize(BindingController *b, const json_t *obj, uint64_t *ret_requeue) {
        BindingSpec sp;
        binding_spec_read(obj, &sp);
        _cleanup_json_ json_t *runs = run_list_owned(b->store, sp.ns, "binding", sp.name), *names = json_array();
        _cleanup_free_ char *why = xasprintf("binding %s was deleted", sp.name);
        size_t unfinished = 0, i;
        const json_t *r;

        if (!store_has_finalizer(obj, BINDING_FINALIZER))
                return 0;
        json_array_foreach(runs, i, r) {
                const char *name = json_str_at(r, "name");
                json_array_append_new(names, json_string(name));
                if (!finished(r)) {
                        unfinished++;
                        (void) run_cancel(b->runs, sp.ns, name, "BindingDeleted", why);
                }
        }
        if (unfinished > 0) {
                *ret_requeue = FINALIZE_POLL_USEC;
                return 0;
        }
        _cleanup_json_ json_t *gone = store_without_finalizer(obj, BINDING_FINALIZER);
        StoreOp let_go = {.type = STORE_OP_UPDATE, .object = gone, .expect_revision = store_object_revision(obj)};
        int k = run_delete_many(b->store, sp.ns, names, &let_go);
        if (k == -ESTALE)
                return 0;
        if (k >= 0 && b->activity)
                (void) logfile_append(b->activity, now_usec(), "binding %s/%s: deleted with its %zu runs", sp.ns, sp.name,
                                      json_array_size(names));
        return k;
}

/* ---- the reconciler --------------------------------------------------------------------------- */

static int reconcile(void *userdata, const char *ns, const char *name, uint64_t *ret_requeue_after) {
        BindingController *b = userdata;
        _cleanup_json_ json_t *obj = NULL;
        _cleanup_free_ char *error = NULL;
        int r;

        r = store_get_json(b->store, "Binding", ns, name, &obj);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return r;
        if (json_object_get(json_object_get(obj, "metadata"), "deletionTimestamp"))
                return finalize(b, obj, ret_requeue_after);
        if (!store_has_finalizer(obj, BINDING_FINALIZER))
                return store_add_finalizer(b->store, obj, BINDING_FINALIZER); /* its write brings us back */
        r = pass(b, ns, name, obj, NULL, NULL, &error, ret_requeue_after);
        return r == -ENOENT ? 0 : r;
}

int binding_trigger(BindingController *b, const char *ns, const char *name, const BindingTrigger *t,
                    json_t **ret_report, char **ret_error) {
        int r = pass(b, ns, name, NULL, t, ret_report, ret_error, NULL);

        if (r == -ENOENT && !*ret_error)
                *ret_error = xasprintf("bindings \"%s\" not found", name);
        return r;
}

/* ---- what wakes a Binding ------------------------------------------------------------------------ */

static void on_commit(void *userdata, const char *ns, const char *name, const char *sha) {
        BindingController *b = userdata;

        (void) sha;
        controller_enqueue_where(b->controller, "Binding", ns, "repo", name, NULL);
}

/* A Server became Reachable: Runs may be due for it (a new Server is
 * deployed to once it is seen). */
static void on_server_reachable(void *userdata, const char *ns, const char *name) {
        BindingController *b = userdata;

        (void) name;
        controller_enqueue_where(b->controller, "Binding", ns, NULL, NULL, NULL);
}

/* A Server was labelled anew, added or deleted: the Bindings that choose
 * Servers by labels (or name it) look again. The store says whether its
 * labels changed: a status write (every check of every Server) costs
 * nothing here, and nothing is kept per Server. */
static void on_server_event(void *userdata, const StoreEvent *ev) {
        BindingController *b = userdata;

        if (ev->labels_changed)
                controller_enqueue_where(b->controller, "Binding", ev->ns, NULL, NULL, NULL);
}

/* ---- life cycle ------------------------------------------------------------------------------------- */

int binding_controller_new(const BindingOptions *o, BindingController **ret) {
        int r;

        if (!o->store || !o->controller || !o->runs || !o->run_dir)
                return -EINVAL;
        BindingController *b = xcalloc(1, sizeof *b);
        b->store = o->store;
        b->controller = o->controller;
        b->runs = o->runs;
        b->run_dir = xstrdup(o->run_dir);
        b->activity = o->activity;
        r = controller_add(o->controller, "Binding", reconcile, b);
        if (r >= 0)
                r = controller_on_event(o->controller, "Server", on_server_event, b);
        if (r < 0) {
                binding_controller_free(b);
                return r;
        }
        if (o->repos)
                repo_on_commit(o->repos, on_commit, b);
        if (o->servers)
                server_on_reachable(o->servers, on_server_reachable, b);
        *ret = b;
        return 0;
}

void binding_controller_free(BindingController *b) {
        if (!b)
                return;
        free(b->run_dir);
        free(b);
}
