/* runner-pass: one reconcile of a Runner — the join of status, GitHub and
 * the hosts, each instance's next step, scaling, and the status written.
 *
 * An instance record (status.instances[]) goes registering -> starting ->
 * idle/busy; a process that ended or died goes failed (or outdated), is
 * cleaned (deregistered, stopped, its directory removed) and after a
 * backoff starts over as registering, under the same name for its first
 * five failures. A record marked removing is deregistered at GitHub first
 * and stopped only after GitHub said 204: a runner with a job (422) is
 * never stopped. A record on a Server that cannot be reached for a while is
 * abandoned: replaced elsewhere, deregistered, and cleaned when the Server
 * is back (while the Runner is deleted, only an agent's Server is waited
 * for). */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "resource/resource.h"
#include "runner/runner-private.h"
#include "store/store.h"

#define FAST_USEC (2 * USEC_PER_SEC)
#define LIST_MAX_AGE_USEC (60 * USEC_PER_SEC)
#define BACKOFF_BASE_USEC (5 * USEC_PER_SEC)
#define BACKOFF_MAX_USEC (80 * USEC_PER_SEC)
#define RENAME_AFTER 5
#define ABANDON_USEC (10 * USEC_PER_SEC)
#define LIST_RETRY_USEC (15 * USEC_PER_SEC)
#define OFFLINE_BUSY_USEC (10 * 60 * USEC_PER_SEC)
#define AGENT_WAIT_USEC (60 * USEC_PER_SEC)

uint64_t runner_backoff(json_int_t failures) {
        return MIN(BACKOFF_BASE_USEC << MIN(MAX(failures, 1) - 1, 5), BACKOFF_MAX_USEC);
}

void pass_problem(Pass *p, const char *reason, const char *fmt, ...) {
        va_list ap;

        if (p->reason[0])
                return;
        snprintf(p->reason, sizeof p->reason, "%s", reason ?: "Unknown");
        va_start(ap, fmt);
        vsnprintf_utf8(p->message, sizeof p->message, fmt, ap);
        va_end(ap);
        text_flatten(p->message);
}

static json_t *status_of(const json_t *obj, void *userdata) {
        const Pass *p = userdata;

        (void) obj;
        if (json_equal(p->st, json_object_get(obj, "status")))
                return NULL;
        return json_deep_copy(p->st);
}

int pass_save(Pass *p) {
        json_object_set_new(p->st, "observedGeneration",
                            json_integer(json_int_at(json_object_get(p->obj, "metadata"), "generation", 0)));
        return store_update_status(p->rc->store, "Runner", p->sp->ns, p->sp->name, status_of, p, NULL);
}

ServerTarget *pass_target(Pass *p, const char *server) {
        _cleanup_free_ char *error = NULL;
        const char *reason = NULL;
        ServerTarget *t = NULL;

        if (server_target_get(p->rc->servers, p->sp->ns, server, &t, &reason, &error) < 0) {
                json_object_set_new(p->why, server, json_string(error ?: "no such Server"));
                return NULL;
        }
        return t;
}

const json_t *pass_gh_find(Pass *p, json_int_t id, const char *name) {
        const json_t *g;
        size_t i;

        json_array_foreach(p->gh, i, g) {
                if (id ? json_int_at(g, "id", 0) == id : STREQ(json_str_at(g, "name") ?: "", name ?: ""))
                        return g;
        }
        return NULL;
}

/* ---- names and places ----------------------------------------------------------------- */

/* RUNNER-N-RAND6. */
static char *instance_name(const RunnerSpec *sp, json_int_t slot) {
        static const char chars[] = "abcdefghijklmnopqrstuvwxyz0123456789";
        unsigned char r[6];
        char s[7];

        (void) random_bytes(r, sizeof r);
        for (size_t i = 0; i < 6; i++)
                s[i] = chars[r[i] % (sizeof chars - 1)];
        s[6] = '\0';
        return xasprintf("%s-%lld-%s", sp->name, (long long) slot, s);
}

/* Whether a registration's name is one this Runner would give. */
static bool name_is_ours(const RunnerSpec *sp, const char *name) {
        size_t n = strlen(sp->name), digits;

        if (strncmp(name, sp->name, n) != 0 || name[n] != '-')
                return false;
        name += n + 1;
        digits = strspn(name, "0123456789");
        if (digits == 0 || name[digits] != '-')
                return false;
        name += digits + 1;
        return strlen(name) == 6 && strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789") == 6;
}

static bool is_live(const json_t *inst) {
        return !json_is_true(json_object_get(inst, "removing")) &&
               !json_is_true(json_object_get(inst, "abandoned"));
}

static bool is_selected(const Pass *p, const char *server) {
        const json_t *s;
        size_t i;

        json_array_foreach(p->servers, i, s) if (STREQ(json_string_value(s), server)) return true;
        return false;
}

/* The reachable selected server with the fewest live instances, or NULL. */
static const char *choose_server(Pass *p) {
        const char *best = NULL;
        size_t best_n = SIZE_MAX, i, j;
        const json_t *s, *inst;

        json_array_foreach(p->servers, i, s) {
                if (!json_is_object(json_object_get(p->seen, json_string_value(s))))
                        continue;
                size_t n = 0;
                json_array_foreach(p->instances, j,
                                   inst) if (is_live(inst) && STREQ(json_str_at(inst, "server") ?: "",
                                                                    json_string_value(s))) n++;
                if (n < best_n) {
                        best = json_string_value(s);
                        best_n = n;
                }
        }
        return best;
}

/* ---- what the hosts say ---------------------------------------------------------------- */

/* Whether the agent of server polls (its Server is Reachable): a command
 * that timed out there waited behind the agent's other jobs (it takes
 * --capacity at a time), which says nothing of the runners. */
static bool agent_polls(Pass *p, const char *server) {
        _cleanup_json_ json_t *obj = NULL;

        if (store_get_json(p->rc->store, "Server", p->sp->ns, server, &obj) < 0)
                return false;
        return STREQ(json_str_at(json_object_get(obj, "status"), "phase") ?: "", "Reachable");
}

static void observe_one(Pass *p, const char *server) {
        json_t *seen = NULL;
        SshResult res = {0};

        if (json_object_get(p->seen, server))
                return;
        ServerTarget *t = pass_target(p, server);
        if (t && server_target_is_agent(t))
                json_object_set_new(p->agents, server, json_true());
        if (t && runner_host_observe(p->rc, p->sp, server_target(t), &seen, &res) >= 0) {
                json_object_set_new(p->seen, server, seen);
        } else {
                json_object_set_new(p->seen, server, json_null());
                if (t)
                        json_object_set_new(p->why, server, json_string(res.message));
                if (t && server_target_is_agent(t) && res.failure == SSH_FAIL_TIMEOUT &&
                    agent_polls(p, server))
                        json_object_set_new(p->busy, server, json_true());
        }
        server_target_free(t);
}

static void observe(Pass *p) {
        const json_t *s, *inst;
        size_t i;

        json_array_foreach(p->servers, i, s) observe_one(p, json_string_value(s));
        json_array_foreach(p->instances, i, inst) observe_one(p, json_str_at(inst, "server"));
}

/* ---- one instance ------------------------------------------------------------------- */

/* Deregisters and stops inst: true once both are done. One that GitHub
 * lists as busy is not asked to go (that would be a 422 each round). */
static bool clean(Pass *p, json_t *inst) {
        const json_t *g = pass_gh_find(p, json_int_at(inst, "id", 0), json_str_at(inst, "name"));
        int k = g && json_is_true(json_object_get(g, "busy")) ? -EBUSY : runner_instance_deregister(p, inst);

        if (k == -EBUSY) {
                runner_instance_set_state(inst, "busy", "running a job: it is stopped once the job is over");
                return false;
        }
        if (k < 0 && k != -ENOKEY)
                return false;
        return runner_instance_stop(p, inst) >= 0;
}

/* Whether more instances live than are wanted. */
static bool surplus(const Pass *p) {
        json_int_t live = 0;
        const json_t *inst;
        size_t i;

        json_array_foreach(p->instances, i, inst) live += is_live(inst);
        return live > p->want;
}

/* Back to registering (same name for the first failures), then created. */
static void restart(Pass *p, json_t *inst, bool fresh_name) {
        json_int_t failures = json_int_at(inst, "failures", 0);
        const char *server = choose_server(p);

        if (!server) {
                pass_problem(p, "ServerUnreachable",
                             "no selected server can be reached to start runners on");
                return;
        }
        if (fresh_name || (failures > 0 && failures % RENAME_AFTER == 0)) {
                _cleanup_free_ char *name = instance_name(p->sp, json_int_at(inst, "slot", 1));
                json_object_set_new(inst, "name", json_string(name));
        }
        const char *drop[] = {"id",         "pid",     "cpuSeconds", "cpuPercent", "memBytes", "startTime",
                              "retryAt",    "cleaned", "exitCode",   "offlineBusySince", "lastHeartbeat",
                              "lastOnline", "reason",  "containerId"};
        for (size_t i = 0; i < ELEMENTSOF(drop); i++)
                json_object_del(inst, drop[i]);
        json_object_set_new(inst, "server", json_string(server));
        runner_instance_set_state(inst, "registering", NULL);
        if (pass_save(p) >= 0)
                runner_instance_create(p, inst);
}

/* The process ended (code, or -1: it vanished): cleaned now, started again
 * after the backoff (at once after a clean exit 0). */
static void ended(Pass *p, json_t *inst, int code, const char *why) {
        const char *name = json_str_at(inst, "name");

        if (!json_object_get(inst, "retryAt")) {
                json_int_t failures = code == 0 ? 0 : json_int_at(inst, "failures", 0) + 1;
                uint64_t backoff = code == 0 ? 0 : runner_backoff(failures);
                _cleanup_free_ char *msg =
                        why         ? xstrdup(why)
                        : code == 0 ? xasprintf("finished its job")
                        : code == 7
                                ? xasprintf("exit 7: this runner version is deprecated; a newer release is "
                                            "installed next (with version: latest)")
                        : code < 0 ? xasprintf("its processes are gone (killed, or the host restarted)")
                                   : xasprintf("exited with code %d", code);
                json_object_set_new(inst, "failures", json_integer(failures));
                json_set_time(inst, "retryAt", p->now + backoff);
                if (code >= 0)
                        json_object_set_new(inst, "exitCode", json_integer(code));
                runner_instance_set_state(inst,
                                          code == 0   ? "starting"
                                          : code == 7 ? "outdated"
                                                      : "failed",
                                          msg);
                log_info("runner %s/%s: %s %s", p->sp->ns, p->sp->name, name, msg);
                p->changed = true;
        }
        if (code == 7 || json_int_at(inst, "exitCode", 0) == 7) {
                p->outdated = true;
                pass_problem(p, "Outdated", "runner %s: the runner version is deprecated (exit 7)", name);
        } else if (code != 0)
                pass_problem(p, json_str_at(inst, "reason") ?: "RunnerFailed", "runner %s on server %s: %s",
                             name, json_str_at(inst, "server"), json_str_at(inst, "message"));
        if (!json_is_true(json_object_get(inst, "cleaned"))) {
                if (!clean(p, inst))
                        return;
                json_object_set_new(inst, "cleaned", json_true());
        }
        if (surplus(p)) {
                /* Scaling down: not started again. */
                json_object_set_new(inst, "removing", json_true());
                return;
        }
        if (p->now >= json_time_at(inst, "retryAt") && p->scope_ok && p->gh)
                restart(p, inst, code == 0);
}

/* Killed and replaced: never registered in time, or gone at GitHub. */
static void timed_out(Pass *p, json_t *inst, const char *why) {
        char d[32];
        _cleanup_free_ char *msg = xasprintf("%s within %s (registrationTimeout): killed and replaced", why,
                                             duration_format(p->sp->registration_timeout_usec, d, sizeof d));

        json_object_set_new(inst, "reason", json_string("RegistrationTimeout"));
        ended(p, inst, -2, msg);
}

/* Its process runs: what GitHub says decides the state. */
static void running(Pass *p, json_t *inst, const json_t *h, const json_t *g) {
        const char *state = json_str_at(inst, "state") ?: "starting";

        json_object_set(inst, "pid", json_object_get(h, "pid"));
        json_object_set(inst, "cpuSeconds", json_object_get(h, "cpuSeconds"));
        json_object_set(inst, "memBytes", json_object_get(h, "memBytes"));
        json_object_set(inst, "cpuPercent", json_object_get(h, "cpuPercent"));
        json_object_set(inst, "containerId", json_object_get(h, "containerId"));
        /* The host says it runs; lastOnline is GitHub's word alone. */
        json_set_time(inst, "lastHeartbeat", p->now);
        if (!p->gh)
                return; /* GitHub could not be asked: as it was */
        if (g && json_is_true(json_object_get(g, "online"))) {
                json_set_time(inst, "lastOnline", p->now);
                json_object_del(inst, "offlineBusySince");
                runner_instance_set_state(inst, json_is_true(json_object_get(g, "busy")) ? "busy" : "idle",
                                          NULL);
                json_object_set_new(inst, "failures", json_integer(0));
                return;
        }
        if (g && json_is_true(json_object_get(g, "busy"))) {
                uint64_t since = json_time_at(inst, "offlineBusySince") ?: p->now;
                json_set_time(inst, "offlineBusySince", since);
                runner_instance_set_state(inst, "offline", "offline while GitHub says it runs a job");
                if (p->now - since > OFFLINE_BUSY_USEC) {
                        log_warning("runner %s/%s: %s offline and busy for over 10 minutes: deleted",
                                    p->sp->ns, p->sp->name, json_str_at(inst, "name"));
                        ended(p, inst, -2, "offline and busy at GitHub for over 10 minutes: deleted");
                }
                return;
        }
        uint64_t since = json_time_at(inst, "lastOnline") ?: json_time_at(inst, "startTime") ?: p->now;
        if (p->now - since > p->sp->registration_timeout_usec) {
                timed_out(p, inst, STREQ(state, "starting") ? "not online at GitHub" : "offline at GitHub");
                return;
        }
        runner_instance_set_state(
                inst, STREQ(state, "idle") || STREQ(state, "busy") ? "offline" : "starting", NULL);
}

static bool step_unreachable(Pass *p, json_t *inst) {
        const char *server = json_str_at(inst, "server");
        uint64_t since = json_time_at(inst, "unreachableSince") ?: p->now;

        json_set_time(inst, "unreachableSince", since);
        _cleanup_free_ char *msg = xasprintf("server %s cannot be reached: %s", server,
                                             json_str_at(p->why, server) ?: "unknown");
        runner_instance_set_state(inst, "offline", msg);
        pass_problem(p, "ServerUnreachable", "%s", msg);
        if (!json_is_true(json_object_get(inst, "abandoned")) && p->now - since >= ABANDON_USEC) {
                json_object_set_new(inst, "abandoned", json_true());
                log_warning("runner %s/%s: %s: replaced on another server", p->sp->ns, p->sp->name, msg);
                p->changed = true;
        }
        /* Deleting: GitHub forgets it now, not ABANDON_USEC later. */
        if (p->deleting || json_is_true(json_object_get(inst, "abandoned")))
                (void) runner_instance_deregister(p, inst);
        if (!p->deleting || json_object_get(inst, "id"))
                return true;
        /* Deleting, GitHub done: what is left on an ssh host that never
         * comes back stays. An agent's host is offline by habit (a laptop,
         * a device): its runner waits for the agent's next poll, or for
         * its Server to go. */
        if (!json_object_get(p->agents, server))
                return false;
        _cleanup_free_ char *wait = xasprintf("deregistered; removed from server %s when its agent polls "
                                              "again (or delete Server %s to leave it there)",
                                              server, server);
        runner_instance_set_state(inst, "offline", wait);
        p->for_agent++;
        return true;
}

/* One instance's step; false when its record goes. */
static bool step(Pass *p, json_t *inst) {
        const char *name = json_str_at(inst, "name"), *server = json_str_at(inst, "server");
        const json_t *seen = json_object_get(p->seen, server);
        const json_t *h = json_object_get(seen, name);
        const json_t *g = pass_gh_find(p, json_int_at(inst, "id", 0), name);

        if (!json_object_get(inst, "id") && g && json_object_get(g, "id"))
                json_object_set(inst, "id", json_object_get(g, "id"));
        if (json_object_get(p->busy, server)) {
                runner_instance_set_state(inst, json_str_at(inst, "state") ?: "starting",
                                          "its agent is busy with other jobs: not looked at this round");
                return true;
        }
        if (!json_is_object(seen))
                return step_unreachable(p, inst);
        json_object_del(inst, "unreachableSince");
        if (json_is_true(json_object_get(inst, "abandoned")) ||
            json_is_true(json_object_get(inst, "removing"))) {
                if (!clean(p, inst))
                        return true;
                log_info("runner %s/%s: %s deregistered and removed from server %s", p->sp->ns, p->sp->name,
                         name, server);
                return false;
        }
        const char *hs = json_str_at(h, "state");
        const char *state = json_str_at(inst, "state") ?: "registering";
        if (json_object_get(inst, "retryAt"))
                ended(p, inst, (int) json_int_at(inst, "exitCode", -1), NULL);
        else if (!hs && STREQ(state, "registering")) {
                /* Never started (or rprd died before it did): whatever
                 * registration its name has goes first. */
                if (p->scope_ok && p->gh && runner_instance_deregister(p, inst) >= 0)
                        runner_instance_create(p, inst);
        } else if (!hs || STREQ(hs, "dead"))
                ended(p, inst, -1, NULL);
        else if (STREQ(hs, "exited"))
                ended(p, inst, (int) json_int_at(h, "exitCode", 255), NULL);
        else
                running(p, inst, h, g);
        return true;
}

/* ---- scaling ------------------------------------------------------------------------ */

/* How willingly an instance goes on scale down; busy ones never. An
 * autoscaled Runner lets only idle ones go, once idle scaleDownDelay: one
 * that starts or fails is left to become idle, or to ended(). */
static int victim_rank(Pass *p, const json_t *inst) {
        const char *s = json_str_at(inst, "state") ?: "";

        if (STREQ(s, "busy"))
                return -1;
        if (p && p->sp->autoscale && !p->deleting)
                return runner_autoscale_may_remove(p, inst) ? 1 : 0;
        if (STREQ(s, "idle"))
                return 1;
        return STREQ(s, "offline") ? 2 : 3;
}

static void scale_down(Pass *p, json_int_t excess) {
        const json_t *inst;
        size_t i;

        for (int rank = 3; rank >= 1 && excess > 0; rank--) {
                json_array_foreach(p->instances, i, inst) {
                        if (excess <= 0)
                                break;
                        if (!is_live(inst) || victim_rank(p, inst) != rank)
                                continue;
                        json_object_set_new((json_t *) inst, "removing", json_true());
                        excess--;
                        p->changed = true;
                }
        }
        /* What is left to go runs a job: it goes when the job is over. */
        json_array_foreach(p->instances, i, inst) {
                if (excess <= 0)
                        break;
                if (is_live(inst) && victim_rank(p, inst) < 0) {
                        runner_instance_set_state(
                                (json_t *) inst, "busy",
                                "running a job: it goes once the job is over (scale down)");
                        excess--;
                }
        }
}

static json_int_t free_slot(const Pass *p) {
        for (json_int_t slot = 1;; slot++) {
                const json_t *inst;
                size_t i;
                bool used = false;
                json_array_foreach(p->instances, i, inst) used |= json_int_at(inst, "slot", 0) == slot;
                if (!used)
                        return slot;
        }
}

static void scale_up(Pass *p, json_int_t missing) {
        for (; missing > 0; missing--) {
                const char *server = choose_server(p);
                if (!server) {
                        pass_problem(p, "ServerUnreachable",
                                     "no selected server can be reached to start runners on");
                        return;
                }
                json_int_t slot = free_slot(p);
                _cleanup_free_ char *name = instance_name(p->sp, slot);
                json_t *inst = json_pack("{s:s, s:I, s:s, s:s}", "name", name, "slot", slot, "server",
                                         server, "state", "registering");
                json_set_time(inst, "createTime", p->now);
                json_array_append_new(p->instances, inst);
                if (pass_save(p) < 0)
                        return;
                runner_instance_create(p, inst);
                p->changed = true;
        }
}

static void scale(Pass *p) {
        json_int_t want = p->want, live = 0;
        const json_t *inst;
        size_t i;

        json_array_foreach(p->instances, i, inst) {
                if (is_live(inst) && !is_selected(p, json_str_at(inst, "server")) &&
                    victim_rank(NULL, inst) >= 0) {
                        json_object_set_new((json_t *) inst, "removing", json_true());
                        p->changed = true;
                }
                live += is_live(inst);
        }
        if (live > want)
                scale_down(p, live - want);
        else if (live < want && p->scope_ok && p->gh && !p->invalid)
                scale_up(p, want - live);
}

/* Registrations named as ours that no instance has: deleted, unless busy. */
static void orphans(Pass *p) {
        const json_t *g, *inst;
        size_t i, j;

        json_array_foreach(p->gh, i, g) {
                const char *name = json_str_at(g, "name") ?: "";
                bool known = false;
                if (!name_is_ours(p->sp, name))
                        continue;
                json_array_foreach(p->instances, j, inst) known |=
                        STREQ(json_str_at(inst, "name") ?: "", name) ||
                        json_int_at(inst, "id", -1) == json_int_at(g, "id", 0);
                known |= json_object_get(p->deleted, name) != NULL;
                if (known || json_is_true(json_object_get(g, "busy")))
                        continue;
                _cleanup_json_ json_t *tmp =
                        json_pack("{s:s, s:O}", "name", name, "id", json_object_get(g, "id"));
                if (runner_instance_deregister(p, tmp) >= 0)
                        log_info("runner %s/%s: orphan registration %s (id %lld) deleted", p->sp->ns,
                                 p->sp->name, name, (long long) json_int_at(g, "id", 0));
        }
}

/* ---- the pass ------------------------------------------------------------------------ */

/* readyReplicas, busyReplicas, the conditions. */
static void summarize(Pass *p, bool deleting) {
        json_int_t ready = 0, busy = 0, want = p->want;
        const json_t *inst;
        size_t i;

        json_array_foreach(p->instances, i, inst) {
                const char *s = json_str_at(inst, "state") ?: "starting";
                ready += STREQ(s, "idle") || STREQ(s, "busy");
                busy += STREQ(s, "busy");
        }
        json_object_set_new(p->st, "replicas", json_integer(json_array_size(p->instances)));
        json_object_set_new(p->st, "readyReplicas", json_integer(ready));
        json_object_set_new(p->st, "busyReplicas", json_integer(busy));
        json_object_set_new(p->st, "servers", json_deep_copy(p->servers));
        if (p->rel_version)
                json_object_set_new(p->st, "version", json_string(p->rel_version));

        _cleanup_free_ char *msg = NULL;
        bool problem = p->reason[0] != '\0';
        bool ok = ready == want && !problem;
        if (deleting && json_array_size(p->instances) > 0)
                msg = xasprintf("deleting: waiting for %zu runners to be deregistered and stopped%s%s",
                                json_array_size(p->instances), problem ? "; " : "",
                                problem ? p->message : "");
        else if (problem)
                msg = xstrdup(p->message);
        else
                msg = xasprintf("%lld of %lld runners online (%lld busy)", (long long) ready,
                                (long long) want, (long long) busy);
        const char *reason = ok ? "Ready" : deleting ? "Deleting" : problem ? p->reason : "Starting";
        condition_set(p->st, &(Condition){"Ready", ok, reason, msg, p->now});
        if (p->outdated)
                condition_set(p->st, &(Condition){"Outdated", true, "Outdated",
                                                  "a runner exited with code 7: its version is deprecated",
                                                  p->now});
        else
                condition_remove(p->st, "Outdated");
}

static bool transitional(const Pass *p) {
        const json_t *inst;
        size_t i;

        json_array_foreach(p->instances, i, inst) {
                const char *s = json_str_at(inst, "state") ?: "";
                if (!STREQ(s, "idle") && !STREQ(s, "busy"))
                        return true;
                if (!is_live(inst))
                        return true;
        }
        return (json_int_t) json_array_size(p->instances) != p->want;
}

static void servers_selected(Pass *p) {
        if (p->sp->server)
                p->servers = json_pack("[s]", p->sp->server);
        else if (p->sp->match_labels)
                p->servers = server_names_matching(p->rc->store, p->sp->ns, p->sp->match_labels);
        else
                p->servers = json_array();
}

/* GitHub's list: fresh while something changes, else the cached one. */
static void list_runners(Pass *p, bool deleting) {
        uint64_t retry_at = 0, age = MIN(p->sp->sync_interval_usec, LIST_MAX_AGE_USEC);
        const char *reason = NULL;
        char error[512];

        if (!p->scope_ok)
                return;
        if (deleting || transitional(p))
                age = MIN(age, FAST_USEC);
        if (runner_list_cached(p->rc, &p->scope, age, &p->gh, error, sizeof error, &reason, &retry_at) < 0) {
                pass_problem(p, reason, "%s", error);
                /* Not again before GitHub said, nor in a loop. */
                p->retry_at = MAX(retry_at, p->now + MAX(p->sp->sync_interval_usec, LIST_RETRY_USEC));
        }
}

static void pass_clear(Pass *p) {
        runner_scope_clear(&p->scope);
        json_decref(p->st);
        json_decref(p->gh);
        json_decref(p->seen);
        json_decref(p->why);
        json_decref(p->agents);
        json_decref(p->busy);
        json_decref(p->servers);
        json_decref(p->installed);
        json_decref(p->deleted);
        free(p->rel_path);
        free(p->rel_sha);
        free(p->rel_version);
}

int runner_pass(RunnerController *rc, const json_t *obj, bool deleting, uint64_t *ret_requeue,
                bool *ret_done) {
        _cleanup_free_ char *error = NULL;
        const char *reason = NULL;
        const json_t *old = json_object_get(obj, "status");
        RunnerSpec sp;
        Pass p = {.rc = rc, .sp = &sp, .obj = obj, .now = now_usec(), .deleting = deleting};
        int k;

        runner_spec_read(obj, &sp);
        p.want = deleting ? 0 : sp.replicas;
        p.st = json_is_object(old) ? json_deep_copy(old) : json_object();
        if (!json_is_array(json_object_get(p.st, "instances")))
                json_object_set_new(p.st, "instances", json_array());
        p.instances = json_object_get(p.st, "instances");
        p.seen = json_object();
        p.why = json_object();
        p.agents = json_object();
        p.busy = json_object();
        p.installed = json_object();
        p.deleted = json_object();
        servers_selected(&p);
        const char *bad = runner_spec_problem(&sp);
        if (bad) {
                p.invalid = true;
                pass_problem(&p, "InvalidSpec", "%s", bad);
        }
        p.scope_ok = runner_scope_read(rc, &sp, &p.scope, &reason, &error) >= 0;
        if (!p.scope_ok)
                pass_problem(&p, reason, "%s", error);
        list_runners(&p, deleting);
        observe(&p);
        if (!deleting)
                runner_autoscale(&p);

        for (size_t i = 0; i < json_array_size(p.instances); i++)
                if (!step(&p, json_array_get(p.instances, i))) {
                        json_array_remove(p.instances, i--);
                        p.changed = true;
                }
        if (!deleting)
                runner_autoscale_after(&p);
        scale(&p);
        if (p.gh)
                orphans(&p);
        summarize(&p, deleting);
        k = pass_save(&p);
        *ret_done = deleting && json_array_size(p.instances) == 0;
        *ret_requeue = p.retry_at                                  ? p.retry_at - p.now
                       : deleting || p.changed || transitional(&p) ? FAST_USEC
                                                                   : sp.sync_interval_usec;
        /* Only offline agents are waited for: a look at them finds nothing
         * new but costs the pass its GitHub calls, and the Server's becoming
         * Reachable (or being deleted) wakes us sooner. */
        if (deleting && !p.changed && p.for_agent > 0 && p.for_agent == json_array_size(p.instances))
                *ret_requeue = MAX(*ret_requeue, AGENT_WAIT_USEC);
        if (p.poll_in)
                *ret_requeue = MIN(*ret_requeue, MAX(p.poll_in, FAST_USEC / 4));
        if (p.wake_in)
                *ret_requeue = MIN(*ret_requeue, MAX(p.wake_in, FAST_USEC / 4));
        pass_clear(&p);
        return k;
}
