/* server.c: the Server kind's reconciler (see server.h).
 *
 * Level-triggered like every reconciler: it reads the Server as stored and
 * decides from its status alone (observedGeneration, lastCheckTime,
 * failures, phase) whether a check is due; if not, it asks to come back when
 * it will be. So a restart, a missed event or the MODIFIED event that its own
 * status write causes are all harmless. One idea keeps the retries simple:
 * status.failures counts consecutive failed attempts, a failure within
 * spec.check.retries leaves the phase as it was and comes back after
 * retryInterval, and only the attempt after that makes it Unreachable. */
#include <stdio.h>
#include <string.h>

#include "controller/controller.h"
#include "logfile/logfile.h"
#include "resource/resource.h"
#include "server/server-private.h"
#include "store/store.h"

/* A zero retryInterval must not spin. */
#define MIN_RETRY_USEC (1 * USEC_PER_SEC)

static char *server_id(const char *ns, const char *name) {
        return xasprintf("%s/%s", ns, name);
}

static uint64_t retry_delay(const ServerSpec *spec) {
        return spec->retry_interval_usec > MIN_RETRY_USEC ? spec->retry_interval_usec : MIN_RETRY_USEC;
}

/* ---- status ------------------------------------------------------------- */

static void set_condition(json_t *status, bool ok, const char *reason, const char *message, uint64_t now) {
        condition_set(status, &(Condition){"Reachable", ok, reason, message, now});
}

/* The status after a check, from the status as it is now. */
static json_t *status_after_check(const json_t *old, json_int_t generation, const ServerSpec *spec,
                                  const CheckOutcome *o) {
        json_t *st = json_is_object(old) ? json_deep_copy(old) : json_object();
        json_int_t failures = o->ok ? 0 : json_int_at(st, "failures", 0) + 1;
        const char *phase = json_str_at(st, "phase");

        if (o->ok)
                phase = "Reachable";
        else if (o->no_retry || failures > (json_int_t) spec->retries)
                phase = "Unreachable";
        else if (phase && STREQ(phase, "Inactive"))
                phase = NULL; /* re-activated and not decided yet */
        if (phase)
                json_object_set_new(st, "phase", json_string(phase));
        else
                json_object_del(st, "phase");

        json_object_set_new(st, "observedGeneration", json_integer(generation));
        json_object_set_new(st, "failures", json_integer(failures));
        json_set_time(st, "lastCheckTime", o->when_usec);
        if (o->logged_in)
                json_set_time(st, "lastLoginTime", o->when_usec);
        if (o->record_host_key)
                json_object_set_new(st, "hostKey", json_string(o->host_key));
        if (o->metrics)
                json_object_set(st, "metrics", o->metrics);
        set_condition(st, o->ok, o->reason, o->message, o->when_usec);
        return st;
}

static json_t *status_inactive(const json_t *old, json_int_t generation) {
        json_t *st = json_is_object(old) ? json_deep_copy(old) : json_object();

        json_object_set_new(st, "phase", json_string("Inactive"));
        json_object_set_new(st, "observedGeneration", json_integer(generation));
        json_object_set_new(st, "failures", json_integer(0));
        set_condition(st, false, "Inactive", "spec.active is false: rpr neither checks nor uses this server",
                      now_usec());
        return st;
}

/* The status a StatusFn computes from the object, and what the phase was and
 * became (caller frees both). */
typedef json_t *(*StatusFn)(const json_t *old, void *userdata);

typedef struct PhaseWrite {
        StatusFn fn;
        void *userdata;
        char *old_phase, *new_phase;
} PhaseWrite;

static json_t *phase_write_next(const json_t *obj, void *userdata) {
        PhaseWrite *w = userdata;
        const json_t *old = json_object_get(obj, "status");
        json_t *st = w->fn(old, w->userdata);

        free(w->old_phase);
        free(w->new_phase);
        w->old_phase = xstrdup(json_str_at(old, "phase") ?: "");
        w->new_phase = xstrdup(json_str_at(st, "phase") ?: "");
        return st;
}

/* Computes the Server's next status from its current one and writes it.
 * *ret_old_phase and *ret_new_phase (optional, caller frees) say what
 * changed. Not under s->lock: the store settles two writers of one status
 * (it reads again after a write slipped in), and the workers' status
 * writes must reach the store together to share its commits. */
static int status_write(ServerController *s, const char *ns, const char *name, StatusFn fn, void *userdata,
                        char **ret_old_phase, char **ret_new_phase) {
        PhaseWrite w = {fn, userdata, NULL, NULL};
        int r = store_update_status(s->store, "Server", ns, name, phase_write_next, &w, NULL);

        if (r >= 0 && ret_old_phase)
                *ret_old_phase = TAKE_PTR(w.old_phase);
        if (r >= 0 && ret_new_phase)
                *ret_new_phase = TAKE_PTR(w.new_phase);
        free(w.old_phase);
        free(w.new_phase);
        return r;
}

typedef struct CheckWrite {
        json_int_t generation;
        const ServerSpec *spec;
        const CheckOutcome *outcome;
} CheckWrite;

static json_t *check_status_fn(const json_t *old, void *userdata) {
        const CheckWrite *w = userdata;
        return status_after_check(old, w->generation, w->spec, w->outcome);
}

static json_t *inactive_status_fn(const json_t *old, void *userdata) {
        return status_inactive(old, *(const json_int_t *) userdata);
}

/* ---- checks ------------------------------------------------------------- */

static void log_attempt(ServerController *s, const char *id, const CheckOutcome *o) {
        double secs = (double) o->duration_usec / USEC_PER_SEC;

        if (!s->connectivity)
                return;
        if (o->ok)
                (void) logfile_append(s->connectivity, o->when_usec, "%s ok %s %.3fs", id, o->reason, secs);
        else
                (void) logfile_append(s->connectivity, o->when_usec, "%s fail %s %.3fs %s", id, o->reason, secs,
                                      o->message);
}

static void notify_reachable(ServerController *s, const char *ns, const char *name) {
        pthread_mutex_lock(&s->lock);
        size_t n = s->n_callbacks;
        ReachableCallback *cbs = n ? xmalloc(n * sizeof *cbs) : NULL;
        if (n)
                memcpy(cbs, s->callbacks, n * sizeof *cbs);
        pthread_mutex_unlock(&s->lock);

        for (size_t i = 0; i < n; i++)
                cbs[i].fn(cbs[i].userdata, ns, name);
        free(cbs);
}

/* One attempt on a stored Server: ssh (unless the target cannot be built),
 * a log line, the status written, the wake-ups. *ok says whether it was
 * reachable. */
static int check_object(ServerController *s, json_t *obj, SshResult *result, char **ret_uptime, bool *ok) {
        const json_t *meta = json_object_get(obj, "metadata");
        const char *ns = json_str_at(meta, "namespace"), *name = json_str_at(meta, "name");
        _cleanup_free_ char *id = server_id(ns, name), *error = NULL, *old_phase = NULL, *new_phase = NULL;
        ServerTarget *t = NULL;
        CheckOutcome o = {0};
        ServerSpec spec;
        const char *reason = NULL;
        int r;

        server_spec_read(obj, &spec);
        if (server_is_agent(obj)) {
                uint64_t settle = 0;
                r = server_agent_check(s, obj, &o, &settle);
                if (r == -EAGAIN)
                        return -EAGAIN; /* nothing known yet: no write */
                *result = (SshResult){.failure = SSH_OK, .exit_code = o.ok ? 0 : -1};
                snprintf(result->message, sizeof result->message, "%s", o.message);
        } else if ((r = server_target_build(s, obj, &t, &reason, &error)) < 0) {
                *result = (SshResult){.failure = SSH_OK, .exit_code = -1};
                snprintf(result->message, sizeof result->message, "%s", error ? error : strerror(-r));
                o = (CheckOutcome){.reason = reason ? reason : "ExecFailed", .no_retry = true, .when_usec = now_usec()};
                snprintf(o.message, sizeof o.message, "%s", result->message);
        } else {
                server_check_run(s, server_target(t), &o, result, ret_uptime);
                server_target_free(t);
        }

        pthread_mutex_lock(&s->lock);
        hashmap_put(s->last_attempt, id, (void *) (uintptr_t) now_mono_usec());
        pthread_mutex_unlock(&s->lock);
        CheckWrite w = {json_int_at(meta, "generation", 0), &spec, &o};
        int wr = status_write(s, ns, name, check_status_fn, &w, &old_phase, &new_phase);

        log_attempt(s, id, &o);
        if (wr >= 0 && !STREQ(new_phase, old_phase) && *new_phase)
                log_object(STREQ(new_phase, "Reachable") ? LOG_LEVEL_INFO : LOG_LEVEL_WARNING, "Server", id,
                           "server %s is %s: %s", id, new_phase, o.message);
        if (wr >= 0 && STREQ(new_phase, "Reachable") && !STREQ(old_phase, "Reachable"))
                notify_reachable(s, ns, name);
        *ok = o.ok;
        json_decref(o.metrics);
        if (wr < 0 && wr != -ENOENT)
                log_debug("server %s: cannot write status: %s", id, strerror(-wr));
        return r < 0 ? -EINVAL : wr == -ENOENT ? -ENOENT : 0;
}

int server_check_now(ServerController *s, const char *ns, const char *name, SshResult *result,
                     char **ret_uptime) {
        _cleanup_json_ json_t *obj = NULL;
        _cleanup_free_ char *uptime = NULL;
        bool ok;
        int r;

        *result = (SshResult){0};
        r = store_get_json(s->store, "Server", ns, name, &obj);
        if (r < 0)
                return r;
        if (json_is_false(json_object_get(json_object_get(obj, "spec"), "active"))) {
                result->exit_code = -1;
                snprintf(result->message, sizeof result->message,
                         "server %s is inactive (spec.active is false); activate it first", name);
                return -EPERM;
        }
        r = check_object(s, obj, result, &uptime, &ok);
        if (r == -ENOENT)
                return r;
        if (ret_uptime)
                *ret_uptime = TAKE_PTR(uptime);
        if (r < 0)
                return r;
        return result->failure == SSH_OK ? 0 : -EIO;
}

/* ---- the reconciler ----------------------------------------------------- */

static void forget(ServerController *s, const char *id) {
        ssh_pool_forget(s->ssh, id);
        pthread_mutex_lock(&s->lock);
        hashmap_remove(s->last_attempt, id);
        pthread_mutex_unlock(&s->lock);
}

/* How long until the next check is due (0 = now), from the last attempt:
 * remembered to the microsecond since rprd started, else status.lastCheckTime. */
static uint64_t due_in(ServerController *s, const char *id, const json_t *status, const ServerSpec *spec) {
        const char *phase = json_str_at(status, "phase");
        bool failing = json_int_at(status, "failures", 0) > 0 || (phase && STREQ(phase, "Unreachable"));
        uint64_t period = failing ? retry_delay(spec) : spec->interval_usec;
        const char *last_check = json_str_at(status, "lastCheckTime");
        uint64_t last, now;

        if (phase && STREQ(phase, "Inactive"))
                return 0;
        pthread_mutex_lock(&s->lock);
        uint64_t last_mono = (uint64_t) (uintptr_t) hashmap_get(s->last_attempt, id);
        pthread_mutex_unlock(&s->lock);
        if (last_mono) {
                now = now_mono_usec();
                return last_mono + period > now ? last_mono + period - now : 0;
        }
        if (!last_check || time_parse_rfc3339(last_check, &last) < 0)
                return 0;
        now = now_usec();
        return last + period > now ? last + period - now : 0;
}

static bool take_asked(ServerController *s, const char *id) {
        pthread_mutex_lock(&s->lock);
        bool asked = json_object_get(s->asked, id) != NULL;
        json_object_del(s->asked, id);
        pthread_mutex_unlock(&s->lock);
        return asked;
}

static int reconcile(void *userdata, const char *ns, const char *name, uint64_t *ret_requeue_after) {
        ServerController *s = userdata;
        _cleanup_free_ char *id = server_id(ns, name);
        _cleanup_json_ json_t *obj = NULL;
        SshResult result;
        ServerSpec spec;
        bool ok;
        int r;

        r = store_get_json(s->store, "Server", ns, name, &obj);
        if (r == -ENOENT) {
                forget(s, id);
                return 0;
        }
        if (r < 0)
                return r;
        if (json_object_get(json_object_get(obj, "metadata"), "deletionTimestamp"))
                return 0;

        server_spec_read(obj, &spec);
        json_int_t generation = json_int_at(json_object_get(obj, "metadata"), "generation", 0);
        const json_t *status = json_object_get(obj, "status");
        bool changed = json_int_at(status, "observedGeneration", -1) != generation;

        if (!spec.active) {
                forget(s, id);
                r = status_write(s, ns, name, inactive_status_fn, &generation, NULL, NULL);
                return r == -ENOENT ? 0 : r;
        }
        if (changed)
                ssh_pool_forget(s->ssh, id);
        else if (!take_asked(s, id)) {
                uint64_t wait = due_in(s, id, status, &spec);
                if (wait > 0) {
                        *ret_requeue_after = wait;
                        return 0;
                }
        }

        r = check_object(s, obj, &result, NULL, &ok);
        if (r == -ENOENT)
                return 0;
        if (r == -EAGAIN) {
                /* An agent not heard from since rprd started: ask again later. */
                *ret_requeue_after = 5 * USEC_PER_SEC;
                return 0;
        }
        *ret_requeue_after = ok ? spec.interval_usec : retry_delay(&spec);
        return 0;
}

/* ---- life cycle --------------------------------------------------------- */

int server_controller_new(const ServerOptions *o, ServerController **ret) {
        int r;

        if (!o->store || !o->controller || !o->ssh)
                return -EINVAL;
        ServerController *s = xcalloc(1, sizeof *s);
        s->store = o->store;
        s->controller = o->controller;
        s->ssh = o->ssh;
        s->connectivity = o->connectivity;
        s->agents = o->agents;
        s->last_attempt = hashmap_new();
        s->asked = json_object();
        pthread_mutex_init(&s->lock, NULL);
        r = controller_add(o->controller, "Server", reconcile, s);
        if (r < 0) {
                server_controller_free(s);
                return r;
        }
        *ret = s;
        return 0;
}

void server_controller_free(ServerController *s) {
        if (!s)
                return;
        hashmap_free(s->last_attempt);
        json_decref(s->asked);
        free(s->callbacks);
        pthread_mutex_destroy(&s->lock);
        free(s);
}

void server_on_reachable(ServerController *s, ServerReachableFn fn, void *userdata) {
        pthread_mutex_lock(&s->lock);
        s->callbacks = xrealloc(s->callbacks, (s->n_callbacks + 1) * sizeof *s->callbacks);
        s->callbacks[s->n_callbacks++] = (ReachableCallback){fn, userdata};
        pthread_mutex_unlock(&s->lock);
}

void server_check_soon(ServerController *s, const char *ns, const char *name) {
        _cleanup_free_ char *id = server_id(ns, name);

        pthread_mutex_lock(&s->lock);
        json_object_set_new(s->asked, id, json_true());
        pthread_mutex_unlock(&s->lock);
        controller_enqueue(s->controller, "Server", ns, name, 0);
}

/* ---- choosing Servers by labels --------------------------------------------------------- */

static void collect_matching(const char *text, size_t len, void *userdata) {
        _cleanup_json_ json_t *obj = json_loadb(text, len, 0, NULL);

        json_array_append_new(userdata, json_string(json_str_at(json_object_get(obj, "metadata"), "name")));
}

json_t *server_names_matching(Store *store, const char *ns, const json_t *match_labels) {
        json_t *names = json_array();
        Selector *sel = selector_from_labels(match_labels);

        /* The store's label index gives the matching Servers alone, in name
         * order: the result is sorted. */
        (void) store_list_selected(store, "Server", ns, sel, collect_matching, names, NULL);
        selector_free(sel);
        return names;
}
