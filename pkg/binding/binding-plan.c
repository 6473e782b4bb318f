/* binding-plan: one pass over a Binding — for each of its Servers, is a
 * Run due? (The rules are in binding.h.) Reads the store, writes nothing:
 * the caller commits the plan's Runs together with its status. */
#include <stdio.h>
#include <string.h>

#include "binding/binding-private.h"
#include "resource/resource.h"
#include "run/run.h"
#include "server/server.h"
#include "store/store.h"

uint64_t binding_backoff(uint64_t base_usec, uint64_t max_usec, json_int_t attempt) {
        uint64_t d = base_usec;

        for (json_int_t i = 1; i < attempt && d < max_usec; i++)
                d *= 2;
        return MIN(d, max_usec);
}

void binding_spec_read(const json_t *obj, BindingSpec *ret) {
        const json_t *meta = json_object_get(obj, "metadata"), *spec = json_object_get(obj, "spec");
        const json_t *backoff = json_object_get(spec, "backoff");

        *ret = (BindingSpec){
                .ns = json_str_at(meta, "namespace"),
                .name = json_str_at(meta, "name"),
                .uid = json_str_at(meta, "uid"),
                .generation = json_int_at(meta, "generation", 0),
                .repo = json_str_at(spec, "repo"),
                .server = json_str_at(spec, "server"),
                .command = json_str_at(spec, "command"),
                .workdir = json_str_at(spec, "workdir"),
                .timeout = json_str_at(spec, "timeout") ?: "10m",
                .wait_timeout = json_str_at(spec, "waitTimeout") ?: "24h",
                .match_labels = json_object_get(json_object_get(spec, "servers"), "matchLabels"),
                .env = json_object_get(spec, "env"),
                .retries = json_int_at(spec, "retries", 0),
                .history = json_int_at(spec, "history", 20),
                .backoff_base_usec = json_duration_at(backoff, "base", 10 * USEC_PER_SEC),
                .backoff_max_usec = json_duration_at(backoff, "max", 300 * USEC_PER_SEC),
                .active = !json_is_false(json_object_get(spec, "active")),
                .deploy_on_create = !json_is_false(json_object_get(spec, "deployOnCreate")),
        };
}

/* ---- what the Binding refers to ----------------------------------------------------- */

typedef struct Head {
        const char *sha, *time, *branch;
        json_t *repo; /* owns the strings above */
} Head;

/* The Binding's Servers, by name (new reference), and whether a named one
 * is missing (*ret_missing). */
static json_t *targets(BindingController *b, const BindingSpec *sp, bool *ret_missing) {
        *ret_missing = false;
        if (!sp->server)
                return server_names_matching(b->store, sp->ns, sp->match_labels);
        _cleanup_free_ char *text = NULL;
        json_t *names = json_array();
        if (store_get(b->store, "Server", sp->ns, sp->server, &text) < 0)
                *ret_missing = true;
        else
                json_array_append_new(names, json_string(sp->server));
        return names;
}

/* ---- one Server ---------------------------------------------------------------------- */

typedef enum Want { WANT_NONE, WANT_COMMIT, WANT_CREATE, WANT_RETRY, WANT_MANUAL } Want;

static const char *const want_names[] = {
        [WANT_COMMIT] = "commit", [WANT_CREATE] = "create", [WANT_RETRY] = "retry", [WANT_MANUAL] = "manual"};

typedef struct PassState {
        BindingController *b;
        const BindingSpec *sp;
        const BindingTrigger *t;
        const Head *head;
        Plan *p;
        json_int_t counter;
        uint64_t now;
} PassState;

static bool failed_phase(const char *phase) {
        return phase && (STREQ(phase, "Failed") || STREQ(phase, "Interrupted"));
}

static json_t *run_new(PassState *ps, const char *server, Want want, const json_t *last) {
        const BindingSpec *sp = ps->sp;
        const json_t *last_spec = json_object_get(last, "spec");
        bool retry = want == WANT_RETRY;
        _cleanup_free_ char *name = run_name(sp->name, ++ps->counter);

        json_t *spec = json_pack("{s:{s:s, s:s, s:s?}, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:s}",
                                 "owner", "kind", "Binding", "name", sp->name, "uid", sp->uid, "binding", sp->name,
                                 "repo", sp->repo, "branch", ps->head->branch ?: "", "commit",
                                 retry ? json_str_at(last_spec, "commit") : ps->head->sha, "commitTime",
                                 retry ? json_str_at(last_spec, "commitTime") ?: "" : ps->head->time ?: "", "server",
                                 server, "command", sp->command, "timeout", sp->timeout, "waitTimeout",
                                 sp->wait_timeout, "retries", (json_int_t) sp->retries, "attempt",
                                 retry ? json_int_at(last_spec, "attempt", 1) + 1 : (json_int_t) 1, "triggeredBy",
                                 want_names[want]);
        if (sp->workdir)
                json_object_set_new(spec, "workdir", json_string(sp->workdir));
        if (sp->env)
                json_object_set_new(spec, "env", json_deep_copy(sp->env));
        return json_pack("{s:s, s:s, s:{s:s, s:s, s:{s:s, s:s}}, s:o, s:{s:s, s:s}}", "apiVersion", RPR_API_VERSION,
                         "kind", "Run", "metadata", "name", name, "namespace", sp->ns, "labels", "binding", sp->name,
                         "server", server, "spec", spec, "status", "phase", "Pending", "reason", "Created");
}

static bool trigger_selects(const BindingTrigger *t, const char *server, const json_t *entry) {
        if (!t)
                return false;
        if (t->server)
                return STREQ(t->server, server);
        if (t->failed_only)
                return failed_phase(json_str_at(entry, "lastRunPhase"));
        return true;
}

/* What is due for one Server, from its entry (updated in place) and its
 * last Run. */
static Want decide(PassState *ps, const char *server, json_t *entry, bool first, const json_t *last) {
        const BindingSpec *sp = ps->sp;
        const char *phase = last ? json_str_at(json_object_get(last, "status"), "phase") ?: "Pending" : NULL;
        bool busy = last && !run_phase_finished(phase);
        const char *made_for = json_str_at(entry, "lastCommit");

        if (trigger_selects(ps->t, server, entry)) {
                if (!busy)
                        return WANT_MANUAL;
                json_object_set_new(entry, "triggered", json_true());
                json_array_append_new(json_object_get(ps->p->report, "queued"), json_string(server));
                return WANT_NONE;
        }
        if (busy)
                return WANT_NONE;
        if (json_is_true(json_object_get(entry, "triggered")))
                return WANT_MANUAL;
        if (!sp->active || !ps->head->sha)
                return WANT_NONE;
        if (first) {
                if (sp->deploy_on_create)
                        return WANT_CREATE;
                json_object_set_new(entry, "lastCommit", json_string(ps->head->sha));
                return WANT_NONE;
        }
        if (!made_for || !STREQ(made_for, ps->head->sha))
                return WANT_COMMIT;
        const json_t *last_spec = json_object_get(last, "spec");
        json_int_t attempt = json_int_at(last_spec, "attempt", 1);
        if (!failed_phase(phase) || attempt > sp->retries)
                return WANT_NONE;
        uint64_t due = json_time_at(json_object_get(last, "status"), "endTime") + binding_backoff(sp->backoff_base_usec, sp->backoff_max_usec, attempt);
        if (due <= ps->now)
                return WANT_RETRY;
        uint64_t wait = due - ps->now;
        ps->p->requeue = ps->p->requeue ? MIN(ps->p->requeue, wait) : wait;
        return WANT_NONE;
}

static void pass_server(PassState *ps, const char *server, json_t *servers) {
        const json_t *old = json_object_get(servers, server);
        json_t *entry = json_is_object(old) ? json_deep_copy(old) : json_object();
        const char *last_name = json_str_at(entry, "lastRun");
        _cleanup_json_ json_t *last = NULL;

        if (last_name)
                (void) store_get_json(ps->b->store, "Run", ps->sp->ns, last_name, &last);
        if (last) {
                const char *phase = json_str_at(json_object_get(last, "status"), "phase") ?: "Pending";
                json_object_set_new(entry, "lastRunPhase", json_string(phase));
                if (STREQ(phase, "Succeeded"))
                        json_object_set(entry, "deployedCommit", json_object_get(json_object_get(last, "spec"), "commit"));
        }

        /* First: nothing was ever decided for this Server (no Run made, no
         * commit recorded), whether or not the Repo had a commit before. */
        bool first = !json_object_get(entry, "lastCommit") && !last_name;
        Want want = decide(ps, server, entry, first, last);
        if (want != WANT_NONE) {
                json_t *run = run_new(ps, server, want, last);
                const char *name = json_str_at(json_object_get(run, "metadata"), "name");
                json_object_set_new(entry, "lastRun", json_string(name));
                json_object_set_new(entry, "lastRunPhase", json_string("Pending"));
                json_object_set(entry, "lastCommit", json_object_get(json_object_get(run, "spec"), "commit"));
                json_object_del(entry, "triggered");
                json_array_append_new(json_object_get(ps->p->report, "runs"),
                                      json_pack("{s:s, s:s}", "name", name, "server", server));
                json_array_append_new(ps->p->runs, run);
        }
        json_object_set_new(servers, server, entry);
}

/* ---- the whole Binding ---------------------------------------------------------------------- */

static void set_ready(json_t *st, bool ok, const char *reason, const char *message) {
        condition_set(st, &(Condition){"Ready", ok, reason, message, now_usec()});
}

/* Deployed: whether every Server runs the head, and if not, why. */
static void set_deployed(json_t *st, const json_t *names, const Head *head) {
        const json_t *servers = json_object_get(st, "servers"), *n;
        size_t i, done = 0, failed = 0;

        json_array_foreach(names, i, n) {
                const json_t *e = json_object_get(servers, json_string_value(n));
                const char *deployed = json_str_at(e, "deployedCommit");
                done += deployed && head->sha && STREQ(deployed, head->sha);
                failed += failed_phase(json_str_at(e, "lastRunPhase"));
        }
        _cleanup_free_ char *msg = xasprintf("%zu of %zu servers run %.12s", done, json_array_size(names),
                                             head->sha ?: "(no commit yet)");
        const char *reason = done == json_array_size(names) ? "UpToDate" : failed ? "RunFailed" : "Deploying";
        condition_set(st, &(Condition){"Deployed", done == json_array_size(names), reason, msg, now_usec()});
}

/* The Repo's head, or a Ready=False reason in st and false. */
static bool head_read(BindingController *b, const BindingSpec *sp, json_t *st, Head *h) {
        if (store_get_json(b->store, "Repo", sp->ns, sp->repo, &h->repo) < 0) {
                _cleanup_free_ char *msg = xasprintf("repo %s does not exist (spec.repo)", sp->repo);
                set_ready(st, false, "MissingReference", msg);
                return false;
        }
        const json_t *commit = json_object_get(json_object_get(h->repo, "status"), "lastCommit");
        h->sha = json_str_at(commit, "sha");
        h->time = json_str_at(commit, "time");
        h->branch = json_str_at(json_object_get(h->repo, "spec"), "branch") ?: "main";
        return true;
}

/* Entries of Servers no longer targeted go, unless a Run is still theirs. */
static void drop_untargeted(json_t *servers, const json_t *names) {
        const char *key;
        json_t *v, *n;
        void *tmp;
        size_t i;

        json_object_foreach_safe(servers, tmp, key, v) {
                bool targeted = false;
                json_array_foreach(names, i, n) targeted = targeted || STREQ(json_string_value(n), key);
                if (!targeted && run_phase_finished(json_str_at(v, "lastRunPhase") ?: "Succeeded"))
                        json_object_del(servers, key);
        }
}

static int trigger_check(const BindingSpec *sp, const BindingTrigger *t, const Head *h, const json_t *names, Plan *p) {
        const json_t *n;
        size_t i;

        if (!sp->active)
                return p->error = xasprintf("binding %s is inactive (spec.active is false)", sp->name), -EPERM;
        if (!h->repo)
                return p->error = xasprintf("repo %s does not exist (spec.repo)", sp->repo), -ENODATA;
        if (!h->sha)
                return p->error = xasprintf("repo %s has no commit yet: it has not been checked", sp->repo), -ENODATA;
        if (json_array_size(names) == 0)
                return p->error = xasprintf("binding %s has no servers to run on", sp->name), -ESRCH;
        if (!t->server)
                return 0;
        json_array_foreach(names, i, n) if (STREQ(json_string_value(n), t->server)) return 0;
        p->error = xasprintf("server %s is not one of the servers of binding %s", t->server, sp->name);
        return -ESRCH;
}

int binding_plan(BindingController *b, const json_t *obj, const BindingTrigger *t, Plan *p) {
        const json_t *old = json_object_get(obj, "status");
        json_t *st = json_is_object(old) ? json_deep_copy(old) : json_object();
        BindingSpec sp;
        Head head = {0};
        bool missing;
        int r = 0;

        binding_spec_read(obj, &sp);
        *p = (Plan){.status = st, .runs = json_array(), .report = json_pack("{s:[], s:[]}", "runs", "queued")};
        json_object_set_new(st, "observedGeneration", json_integer(sp.generation));
        _cleanup_json_ json_t *names = targets(b, &sp, &missing);
        bool resolved = head_read(b, &sp, st, &head);
        if (t && (r = trigger_check(&sp, t, &head, names, p)) < 0)
                goto out;

        if (!json_is_object(json_object_get(st, "servers")))
                json_object_set_new(st, "servers", json_object());
        json_t *servers = json_object_get(st, "servers");
        PassState ps = {b, &sp, t, &head, p, json_int_at(st, "runCounter", 0), now_usec()};
        const json_t *n;
        size_t i;
        if (resolved)
                json_array_foreach(names, i, n) pass_server(&ps, json_string_value(n), servers);
        drop_untargeted(servers, names);
        json_object_set_new(st, "runCounter", json_integer(ps.counter));
        if (head.sha)
                json_object_set_new(st, "lastCommit", json_string(head.sha));
        if (json_array_size(p->runs) > 0) {
                const json_t *newest = json_array_get(p->runs, json_array_size(p->runs) - 1);
                json_object_set(st, "lastRun", json_object_get(json_object_get(newest, "metadata"), "name"));
        }

        if (!resolved)
                ; /* head_read said why */
        else if (missing) {
                _cleanup_free_ char *msg = xasprintf("server %s does not exist (spec.server)", sp.server);
                set_ready(st, false, "MissingReference", msg);
        } else if (json_array_size(names) == 0)
                set_ready(st, false, "NoServers", "no server matches spec.servers.matchLabels");
        else if (!sp.active)
                set_ready(st, false, "Inactive", "spec.active is false: new commits start no runs");
        else if (!head.sha)
                set_ready(st, false, "WaitingForCommit", "the repo has not been checked yet");
        else {
                _cleanup_free_ char *msg = xasprintf("%zu servers, repo %s at %.12s", json_array_size(names), sp.repo, head.sha);
                set_ready(st, true, "Bound", msg);
        }
        if (resolved && json_array_size(names) > 0)
                set_deployed(st, names, &head);
        else
                condition_remove(st, "Deployed");
out:
        json_decref(head.repo);
        return r;
}

void plan_clear(Plan *p) {
        json_decref(p->status);
        json_decref(p->runs);
        json_decref(p->report);
        free(p->error);
        *p = (Plan){0};
}
