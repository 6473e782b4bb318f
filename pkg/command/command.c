/* command.c: the Command kind's reconciler (see command.h): choosing the
 * Servers and making the Runs once, gathering their results, deletion. */
#include <string.h>

#include "command/command.h"
#include "controller/controller.h"
#include "logfile/logfile.h"
#include "resource/resource.h"
#include "run/run.h"
#include "store/store.h"

/* While its Runs are being canceled, a deleted Command looks again this often. */
#define FINALIZE_POLL_USEC (1 * USEC_PER_SEC)
#define COMMIT_TRIES 8

struct CommandController {
        Store *store;
        Controller *controller;
        RunController *runs;
        char *run_dir;
        LogFile *activity;
};

static const char *name_of(const json_t *obj) {
        return json_str_at(json_object_get(obj, "metadata"), "name");
}

static const char *ns_of(const json_t *obj) {
        return json_str_at(json_object_get(obj, "metadata"), "namespace");
}

/* ---- choosing the Servers, once ---------------------------------------------------------- */

/* Names only: the store hands them without the objects' text. */
static void add_name(const char *ns, const char *name, const StoreFields *f, void *userdata) {
        (void) ns, (void) f;
        json_array_append_new(userdata, json_string(name));
}

/* The Servers spec names, or those its labels match now, in name order. */
static json_t *targets_of(CommandController *c, const json_t *obj) {
        const json_t *spec = json_object_get(obj, "spec");
        const json_t *names = json_object_get(spec, "serverNames"), *v;
        json_t *out = json_array();
        size_t i;

        if (json_str_at(spec, "server"))
                json_array_append_new(out, json_string(json_str_at(spec, "server")));
        json_array_foreach(names, i, v) json_array_append(out, (json_t *) v);
        const json_t *labels = json_object_get(json_object_get(spec, "servers"), "matchLabels");
        if (labels) {
                Selector *sel = selector_from_labels(labels);
                (void) store_list_fields(c->store, "Server", ns_of(obj), sel, add_name, out);
                selector_free(sel);
        }
        return out;
}

static json_t *run_for(const json_t *cmd, const char *server, json_int_t n) {
        const json_t *meta = json_object_get(cmd, "metadata"), *spec = json_object_get(cmd, "spec");
        _cleanup_free_ char *name = run_name(name_of(cmd), n);
        json_t *rs = json_pack("{s:{s:s, s:s, s:O*}, s:s, s:s, s:O*, s:O*, s:O*, s:O*, s:s, s:I}", "owner", "kind",
                               "Command", "name", name_of(cmd), "uid", json_object_get(meta, "uid"), "server", server,
                               "command", json_str_at(spec, "command"), "workdir", json_object_get(spec, "workdir"),
                               "env", json_object_get(spec, "env"), "timeout", json_object_get(spec, "timeout"),
                               "waitTimeout", json_object_get(spec, "waitTimeout"), "triggeredBy", "create",
                               "attempt", (json_int_t) 1);

        return json_pack("{s:s, s:s, s:{s:s, s:s, s:{s:s}}, s:o, s:{s:s, s:s}}", "apiVersion", RPR_API_VERSION, "kind",
                         "Run", "metadata", "name", name, "namespace", ns_of(cmd), "labels", "command",
                         name_of(cmd), "spec", rs, "status", "phase", "Pending", "reason", "Created");
}

/* The Runs and the status that lists them, in one commit against the
 * Command's revision: made exactly once. */
static int start(CommandController *c, const json_t *obj) {
        _cleanup_json_ json_t *targets = targets_of(c, obj), *runs = json_array(), *st = json_object();
        json_t *servers = json_object();
        const json_t *t;
        char when[RFC3339_MAX];
        size_t i, n;

        json_array_foreach(targets, i, t) {
                const char *server = json_string_value(t);
                if (json_object_get(servers, server))
                        continue; /* named twice */
                json_t *run = run_for(obj, server, (json_int_t) json_array_size(runs) + 1);
                json_object_set_new(servers, server, json_pack("{s:s, s:s}", "run", name_of(run), "phase", "Pending"));
                json_array_append_new(runs, run);
        }
        n = json_array_size(runs);
        json_object_set_new(st, "targets", json_deep_copy(targets));
        json_object_set_new(st, "servers", servers);
        json_object_set_new(st, "startTime", json_string(time_format_rfc3339(now_usec(), when)));
        json_object_set_new(st, "counts", json_pack("{s:I, s:i, s:i, s:i, s:I}", "total", (json_int_t) n, "succeeded",
                                                     0, "failed", 0, "running", 0, "waiting", (json_int_t) n));
        json_object_set_new(st, "phase", json_string(n ? "Running" : "Failed"));
        json_object_set(st, "observedGeneration", json_object_get(json_object_get(obj, "metadata"), "generation"));
        condition_set(st, &(Condition){"Ready", n > 0, n ? "RunsMade" : "NoServers",
                                       n ? "one Run per server" : "no Server matched when the Command was made",
                                       now_usec()});

        _cleanup_free_ StoreOp *ops = xcalloc(n + 1, sizeof *ops);
        _cleanup_json_ json_t *w = json_pack("{s:s, s:s, s:O, s:O}", "apiVersion", RPR_API_VERSION, "kind", "Command",
                                             "metadata", json_object_get(obj, "metadata"), "status", st);
        for (i = 0; i < n; i++)
                ops[i] = (StoreOp){.type = STORE_OP_APPLY, .object = json_array_get(runs, i)};
        ops[n] = (StoreOp){.type = STORE_OP_STATUS, .object = w, .expect_revision = store_object_revision(obj)};
        int r = store_commit(c->store, ops, n + 1, false, NULL);
        store_ops_clear(ops, n + 1);
        if (r >= 0 && c->activity)
                (void) logfile_append(c->activity, now_usec(), "command %s/%s: %zu runs made", ns_of(obj),
                                      name_of(obj), n);
        return r == -ESTALE ? 0 : r; /* changed meanwhile: its event brings us back */
}

/* ---- gathering the results ---------------------------------------------------------------- */

/* The entry of one Server from its Run as stored now. */
static void entry_refresh(CommandController *c, const char *ns, json_t *entry) {
        _cleanup_json_ json_t *run = NULL;

        if (store_get_json(c->store, "Run", ns, json_str_at(entry, "run"), &run) < 0) {
                json_object_set_new(entry, "phase", json_string("Failed"));
                json_object_set_new(entry, "reason", json_string("RunDeleted"));
                return;
        }
        const json_t *st = json_object_get(run, "status");
        static const char *const keys[] = {"phase", "reason", "exitCode", "endTime"};
        for (size_t i = 0; i < ELEMENTSOF(keys); i++) {
                const json_t *x = json_object_get(st, keys[i]);
                if (x)
                        json_object_set(entry, keys[i], (json_t *) x);
                else
                        json_object_del(entry, keys[i]);
        }
}

typedef struct Gather {
        CommandController *c;
        json_t *phases; /* run name -> phase, from the cheap listing */
} Gather;

/* The next status: entries whose Run changed phase are read again (only
 * those: a Run's change costs one read, not one per Server), then the
 * counts and the phase. NULL when nothing changed. */
static json_t *gather_next(const json_t *obj, void *userdata) {
        Gather *g = userdata;
        json_t *st = json_deep_copy(json_object_get(obj, "status"));
        json_t *servers = json_object_get(st, "servers"), *e;
        json_int_t succeeded = 0, failed = 0, running = 0, waiting = 0;
        bool changed = false;
        const char *server;

        json_object_foreach(servers, server, e) {
                const char *now = json_str_at(g->phases, json_str_at(e, "run") ?: "");
                const char *had = json_str_at(e, "phase");
                if (!now || !had || !STREQ(now, had)) {
                        entry_refresh(g->c, ns_of(obj), e);
                        changed = true;
                }
                const char *phase = json_str_at(e, "phase") ?: "Pending";
                if (STREQ(phase, "Succeeded"))
                        succeeded++;
                else if (run_phase_finished(phase))
                        failed++;
                else if (STREQ(phase, "Running"))
                        running++;
                else
                        waiting++;
        }
        /* The Runs were made from the spec as it was: a later change is
         * not run again, and the status says so. */
        json_int_t gen = json_int_at(json_object_get(obj, "metadata"), "generation", 0);
        bool edited = gen != json_int_at(st, "observedGeneration", gen);
        if (edited != (condition_get(st, "SpecChanged") != NULL)) {
                if (edited)
                        condition_set(st, &(Condition){"SpecChanged", true, "RunsAlreadyMade",
                                                       "a Command runs once, as it was when made: make a new "
                                                       "Command to run a changed one",
                                                       now_usec()});
                else
                        condition_remove(st, "SpecChanged");
                changed = true;
        }
        if (!changed) {
                json_decref(st);
                return NULL;
        }
        json_object_set_new(st, "counts", json_pack("{s:I, s:I, s:I, s:I, s:I}", "total",
                                                     (json_int_t) json_object_size(servers), "succeeded", succeeded,
                                                     "failed", failed, "running", running, "waiting", waiting));
        bool done = running == 0 && waiting == 0;
        json_object_set_new(st, "phase", json_string(!done ? "Running" : failed ? "Failed" : "Succeeded"));
        if (done && !json_object_get(st, "completionTime"))
                json_set_time(st, "completionTime", now_usec());
        return st;
}

static int gather(CommandController *c, const json_t *obj) {
        _cleanup_json_ json_t *runs = run_list_owned(c->store, ns_of(obj), "command", name_of(obj));
        Gather g = {c, json_object()};
        const json_t *r;
        size_t i;

        json_array_foreach(runs, i, r) json_object_set_new(g.phases, json_str_at(r, "name"),
                                                            json_string(json_str_at(r, "phase") ?: "Pending"));
        int k = store_update_status(c->store, "Command", ns_of(obj), name_of(obj), gather_next, &g, NULL);
        json_decref(g.phases);
        return k;
}

/* ---- deletion ------------------------------------------------------------------------------ */

/* Cancels the unfinished Runs, and once none is left removes them all and
 * lets the Command go. */
static int finalize(CommandController *c, const json_t *obj, uint64_t *ret_requeue) {
        const char *ns = ns_of(obj), *name = name_of(obj);
        _cleanup_json_ json_t *runs = run_list_owned(c->store, ns, "command", name), *names = json_array();
        _cleanup_free_ char *why = xasprintf("command %s was deleted", name);
        size_t unfinished = 0, i;
        const json_t *r;

        if (!store_has_finalizer(obj, COMMAND_FINALIZER))
                return 0;
        json_array_foreach(runs, i, r) {
                json_array_append_new(names, json_string(json_str_at(r, "name")));
                if (!run_phase_finished(json_str_at(r, "phase"))) {
                        unfinished++;
                        (void) run_cancel(c->runs, ns, json_str_at(r, "name"), "CommandDeleted", why);
                }
        }
        if (unfinished > 0) {
                *ret_requeue = FINALIZE_POLL_USEC;
                return 0;
        }
        _cleanup_json_ json_t *gone = store_without_finalizer(obj, COMMAND_FINALIZER);
        StoreOp let_go = {.type = STORE_OP_UPDATE, .object = gone, .expect_revision = store_object_revision(obj)};
        int k = run_delete_many(c->store, ns, names, &let_go);
        if (k == -ESTALE)
                return 0;
        if (k >= 0 && c->activity)
                (void) logfile_append(c->activity, now_usec(), "command %s/%s: deleted with its %zu runs", ns, name,
                                      json_array_size(names));
        return k;
}

/* ---- the reconciler ------------------------------------------------------------------------- */

static int reconcile(void *userdata, const char *ns, const char *name, uint64_t *ret_requeue_after) {
        CommandController *c = userdata;
        _cleanup_json_ json_t *obj = NULL;
        int r = store_get_json(c->store, "Command", ns, name, &obj);

        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return r;
        if (json_object_get(json_object_get(obj, "metadata"), "deletionTimestamp"))
                return finalize(c, obj, ret_requeue_after);
        if (!store_has_finalizer(obj, COMMAND_FINALIZER))
                return store_add_finalizer(c->store, obj, COMMAND_FINALIZER); /* its write brings us back */
        if (!json_object_get(json_object_get(obj, "status"), "targets"))
                return start(c, obj);
        r = gather(c, obj);
        return r == -ENOENT ? 0 : r;
}

int command_controller_new(const CommandOptions *o, CommandController **ret) {
        if (!o->store || !o->controller || !o->runs || !o->run_dir)
                return -EINVAL;
        CommandController *c = xcalloc(1, sizeof *c);
        *c = (CommandController){o->store, o->controller, o->runs, xstrdup(o->run_dir), o->activity};
        int r = controller_add(o->controller, "Command", reconcile, c);
        if (r < 0) {
                command_controller_free(c);
                return r;
        }
        *ret = c;
        return 0;
}

void command_controller_free(CommandController *c) {
        if (!c)
                return;
        free(c->run_dir);
        free(c);
}
