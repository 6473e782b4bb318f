/* agent.c: the registry of agents — presence, the poll (heartbeat in,
 * offers and cancels out) and the clock that expires leases (see agent.h).
 *
 * A host is made the first time its agent polls, or when a job is queued
 * for it, and lives as long as rprd (or until agent_forget): a few hundred
 * bytes, its jobs aside. */
#include <stdio.h>
#include <string.h>

#include "agent/agent-private.h"

#define OFFLINE_SLACK_USEC (2 * USEC_PER_SEC)
#define LEASE_SLACK_USEC (5 * USEC_PER_SEC)
#define WINDOW_MAX_SEC AGENT_POLL_DEFAULT_SEC

Agents *agents_new(void) {
        Agents *a = xcalloc(1, sizeof *a);

        pthread_mutex_init(&a->lock, NULL);
        a->hosts = hashmap_new();
        a->jobs = hashmap_new();
        a->created = now_mono_usec();
        return a;
}

static const char *const metric_keys[_AGENT_METRIC_MAX] = {
        [AGENT_METRIC_LOAD1] = "load1",
        [AGENT_METRIC_MEM_USED_PERCENT] = "memUsedPercent",
        [AGENT_METRIC_DISK_USED_PERCENT] = "diskUsedPercent",
        [AGENT_METRIC_UPTIME_SECONDS] = "uptimeSeconds",
};

static void host_free(AgentHost *h) {
        free(h->key);
        free(h);
}

static void end_host_jobs(Agents *a, AgentHost *h, const char *why, JobEnds *ends) {
        while (h->jobs) {
                AgentJobResult r = agent_result(AGENT_JOB_INTERRUPTED, "Interrupted", "%s", why);
                agent_job_end(a, h->jobs, &r, ends);
        }
}

void agents_free(Agents *a) {
        JobEnds ends = {0};

        if (!a)
                return;
        pthread_mutex_lock(&a->lock);
        while (a->list) {
                AgentHost *h = a->list;
                a->list = h->next;
                end_host_jobs(a, h, "rprd stopped while the job was held", &ends);
                hashmap_remove(a->hosts, h->key);
                host_free(h);
        }
        pthread_mutex_unlock(&a->lock);
        job_ends_report(&ends);
        hashmap_free(a->hosts);
        hashmap_free(a->jobs);
        pthread_mutex_destroy(&a->lock);
        free(a);
}

void agents_set_wake(Agents *a, AgentWakeFn fn, void *userdata) {
        pthread_mutex_lock(&a->lock);
        a->wake = fn;
        a->wake_userdata = userdata;
        pthread_mutex_unlock(&a->lock);
}

void agents_set_presence(Agents *a, AgentPresenceFn fn, void *userdata) {
        pthread_mutex_lock(&a->lock);
        a->presence = fn;
        a->presence_userdata = userdata;
        pthread_mutex_unlock(&a->lock);
}

void agents_stop(Agents *a) {
        pthread_mutex_lock(&a->lock);
        a->stopped = true;
        pthread_mutex_unlock(&a->lock);
}

bool agents_serving(Agents *a) {
        pthread_mutex_lock(&a->lock);
        bool serving = !a->stopped;
        pthread_mutex_unlock(&a->lock);
        return serving;
}

AgentHost *agent_host_get(Agents *a, const char *ns, const char *server, bool create) {
        _cleanup_free_ char *key = xasprintf("%s/%s", ns, server);
        AgentHost *h = hashmap_get(a->hosts, key);

        if (h || !create)
                return h;
        size_t n_key = strlen(key) + 1, n_ns = strlen(ns) + 1, n_server = strlen(server) + 1;
        h = xcalloc(1, sizeof *h);
        h->key = xmalloc(n_key + n_ns + n_server);
        memcpy(h->key, key, n_key);
        memcpy(h->key + n_key, ns, n_ns);
        memcpy(h->key + n_key + n_ns, server, n_server);
        h->ns = h->key + n_key;
        h->server = h->key + n_key + n_ns;
        h->window_usec = AGENT_POLL_DEFAULT_SEC * USEC_PER_SEC;
        h->capacity = 1;
        h->streams = 1;
        hashmap_put(a->hosts, h->key, h);
        h->next = a->list;
        a->list = h;
        return h;
}

bool agents_recovering(const Agents *a) {
        return now_mono_usec() - a->created < AGENT_RECOVER_GRACE_SEC * USEC_PER_SEC;
}

uint64_t agent_lease_usec(const AgentHost *h) {
        return 2 * h->window_usec + LEASE_SLACK_USEC;
}

/* ---- presence ---------------------------------------------------------------------- */

/* "1.2.3" into three numbers; -EINVAL when it is not that. */
static int version_parse(const char *v, unsigned out[3]) {
        for (int i = 0; i < 3; i++) {
                char *end;
                if (!v || *v < '0' || *v > '9')
                        return -EINVAL;
                unsigned long n = strtoul(v, &end, 10);
                if (n > 100000 || (i < 2 && *end != '.'))
                        return -EINVAL;
                out[i] = (unsigned) n;
                v = i < 2 ? end + 1 : end;
        }
        return 0;
}

bool agent_version_ok(const char *version) {
        unsigned have[3], min[3];

        if (version_parse(version, have) < 0 || version_parse(AGENT_VERSION_MIN, min) < 0)
                return false;
        for (int i = 0; i < 3; i++)
                if (have[i] != min[i])
                        return have[i] > min[i];
        return true;
}

static bool host_online(const AgentHost *h, uint64_t now) {
        return h->last_seen && now - h->last_seen <= 3 * h->window_usec + OFFLINE_SLACK_USEC;
}

/* The metrics as the Server's status has them (uptime a whole number). */
static json_t *metrics_json(const AgentHost *h) {
        json_t *m = json_object();

        for (size_t i = 0; i < _AGENT_METRIC_MAX; i++) {
                if (!(h->metrics_set & (1u << i)))
                        continue;
                json_object_set_new(m, metric_keys[i],
                                    i == AGENT_METRIC_UPTIME_SECONDS ? json_integer((json_int_t) h->metrics[i])
                                                                     : json_real(h->metrics[i]));
        }
        return m;
}

void agent_presence(Agents *a, const char *ns, const char *server, AgentPresence *ret) {
        uint64_t now = now_mono_usec();

        pthread_mutex_lock(&a->lock);
        const AgentHost *h = agent_host_get(a, ns, server, false);
        *ret = (AgentPresence){.since_start_usec = now - a->created};
        if (h) {
                ret->online = host_online(h, now);
                ret->last_seen_usec = h->last_seen_real;
                snprintf(ret->version, sizeof ret->version, "%s", h->version);
                ret->capacity = h->capacity;
                for (const AgentJob *j = h->jobs; j; j = j->next)
                        ret->running += j->phase == JOB_RUNNING;
                ret->metrics = h->has_metrics ? metrics_json(h) : NULL;
                ret->version_refused = h->refused;
        }
        pthread_mutex_unlock(&a->lock);
}

void agent_note_refused(Agents *a, const char *ns, const char *server, const char *version) {
        pthread_mutex_lock(&a->lock);
        AgentHost *h = agent_host_get(a, ns, server, true);
        h->refused = true;
        snprintf(h->version, sizeof h->version, "%s", version ? version : "");
        pthread_mutex_unlock(&a->lock);
}

void agent_forget(Agents *a, const char *ns, const char *server) {
        JobEnds ends = {0};

        pthread_mutex_lock(&a->lock);
        AgentHost *h = agent_host_get(a, ns, server, false);
        if (h) {
                end_host_jobs(a, h, "its Server was deleted or deactivated", &ends);
                hashmap_remove(a->hosts, h->key);
                for (AgentHost **p = &a->list; *p; p = &(*p)->next)
                        if (*p == h) {
                                *p = h->next;
                                break;
                        }
                host_free(h);
        }
        pthread_mutex_unlock(&a->lock);
        job_ends_report(&ends);
}

/* ---- the poll --------------------------------------------------------------------------- */

/* Records what the heartbeat says of the agent. */
static void heartbeat_read(AgentHost *h, const json_t *hb, uint64_t now) {
        const char *version = json_str_at(hb, "version");
        json_int_t cap = json_int_at(hb, "capacity", 1);
        json_int_t window = json_int_at(hb, "pollSeconds", AGENT_POLL_DEFAULT_SEC);
        const json_t *metrics = json_object_get(hb, "metrics");

        h->last_seen = now;
        h->last_seen_real = now_usec();
        h->refused = false;
        snprintf(h->version, sizeof h->version, "%s", version ? version : "");
        h->capacity = (unsigned) (cap < 1 ? 1 : cap > AGENT_CAPACITY_MAX ? AGENT_CAPACITY_MAX : cap);
        h->streams = json_int_at(hb, "streams", 1) == AGENT_STREAMS ? AGENT_STREAMS : 1;
        window = window < 1 ? 1 : window > WINDOW_MAX_SEC ? WINDOW_MAX_SEC : window;
        h->window_usec = (uint64_t) window * USEC_PER_SEC;
        /* Only the figures the Server's status has, as numbers. */
        h->has_metrics = json_is_object(metrics);
        h->metrics_set = 0;
        for (size_t i = 0; h->has_metrics && i < _AGENT_METRIC_MAX; i++) {
                const json_t *v = json_object_get(metrics, metric_keys[i]);
                if (json_is_number(v)) {
                        h->metrics[i] = json_number_value(v);
                        h->metrics_set |= 1u << i;
                }
        }
}

/* The jobs the agent says it holds: leases renewed, offsets acknowledged,
 * unknown ones dropped; a running job it no longer lists was lost. */
static void held_jobs_read(Agents *a, AgentHost *h, const json_t *held, json_t *answer, uint64_t now,
                           JobEnds *ends) {
        json_t *ack = json_object_get(answer, "ack"), *drop = json_object_get(answer, "drop");
        json_t *ack_err = json_object_get(answer, "ackErr");
        const json_t *v;
        size_t i;

        json_array_foreach(held, i, v) {
                const char *id = json_str_at(v, "id");
                AgentJob *j = id ? agent_job_of(a, h, id) : NULL;
                if (!id)
                        continue;
                /* Right after a restart its holder may yet take it back. */
                if (!j && !hashmap_get(a->jobs, id) && agents_recovering(a))
                        continue;
                if (!j || j->phase == JOB_QUEUED) {
                        json_array_append_new(drop, json_string(id));
                        continue;
                }
                if (j->phase == JOB_ADOPTED) {
                        /* Back: all its output again, from 0, in the format
                         * it was offered in. */
                        j->streams = json_int_at(v, "streams", 1) == AGENT_STREAMS ? AGENT_STREAMS : 1;
                        j->started = now;
                }
                j->phase = JOB_RUNNING;
                j->lease_until = now + agent_lease_usec(h);
                json_object_set_new(ack, id, json_integer((json_int_t) j->offset[AGENT_STDOUT]));
                if (j->streams == AGENT_STREAMS)
                        json_object_set_new(ack_err, id, json_integer((json_int_t) j->offset[AGENT_STDERR]));
        }
        for (AgentJob *j = h->jobs, *next; j; j = next) {
                bool listed = false;
                next = j->next;
                json_array_foreach(held, i, v) {
                        const char *id = json_str_at(v, "id");
                        listed = listed || (id && STREQ(id, j->id));
                }
                if ((j->phase == JOB_RUNNING || j->phase == JOB_ADOPTED) && !listed) {
                        AgentJobResult r = agent_result(AGENT_JOB_INTERRUPTED, "Interrupted",
                                                        "the agent no longer holds the job (it restarted?)");
                        agent_job_end(a, j, &r, ends);
                }
        }
}

static json_t *offer_json(const AgentJob *j, uint64_t lease) {
        json_t *o = json_pack("{s:s, s:s, s:I, s:I}", "id", j->id, "command", j->command, "timeoutSeconds",
                              (json_int_t) (j->timeout_usec / USEC_PER_SEC), "leaseSeconds",
                              (json_int_t) (lease / USEC_PER_SEC));
        if (j->env)
                json_object_set(o, "env", j->env);
        if (j->input)
                json_object_set_new(o, "input", json_string(j->input));
        else if (j->input_fd > 0) {
                json_object_set_new(o, "inputBytes", json_integer((json_int_t) j->input_bytes));
                json_object_set_new(o, "inputSha256", json_string(j->input_sha256));
        }
        if (j->streams == AGENT_STREAMS)
                json_object_set_new(o, "streams", json_integer(AGENT_STREAMS));
        return o;
}

/* Offers (new ones, and those whose offer lapsed) and cancels. Returns
 * whether there is anything the agent has not been told yet. */
static bool answer_fill(AgentHost *h, json_t *answer, uint64_t now) {
        json_t *offers = json_object_get(answer, "offers"), *cancel = json_object_get(answer, "cancel");
        unsigned busy = 0;
        bool news = false;

        for (const AgentJob *j = h->jobs; j; j = j->next)
                busy += j->phase != JOB_QUEUED && !(j->phase == JOB_OFFERED && j->lease_until <= now);
        for (AgentJob *j = h->jobs; j; j = j->next) {
                if (j->cancel && j->phase != JOB_QUEUED) {
                        json_array_append_new(cancel, json_string(j->id));
                        news = news || !j->cancel_sent;
                        j->cancel_sent = true;
                        continue;
                }
                bool lapsed = j->phase == JOB_OFFERED && j->lease_until <= now;
                if (j->phase == JOB_ADOPTED)
                        continue; /* the agent has it, or has lost it: never offered again */
                if ((j->phase == JOB_QUEUED && busy < h->capacity) || lapsed) {
                        busy += j->phase == JOB_QUEUED;
                        j->phase = JOB_OFFERED;
                        j->streams = h->streams;
                        j->lease_until = now + agent_lease_usec(h);
                        json_array_append_new(offers, offer_json(j, agent_lease_usec(h)));
                        news = true;
                }
        }
        return news;
}

static json_t *answer_new(const AgentHost *h) {
        return json_pack("{s:I, s:[], s:[], s:{}, s:{}, s:[]}", "pollSeconds",
                         (json_int_t) (h->window_usec / USEC_PER_SEC), "offers", "cancel", "ack", "ackErr",
                         "drop");
}

int agent_poll(Agents *a, const char *ns, const char *server, const json_t *heartbeat, json_t **ret_answer,
               uint64_t *ret_wait_usec) {
        uint64_t now = now_mono_usec();
        JobEnds ends = {0};
        AgentPresenceFn presence = NULL;
        void *userdata = NULL;
        json_int_t wait = json_int_at(heartbeat, "wait", AGENT_POLL_DEFAULT_SEC);

        pthread_mutex_lock(&a->lock);
        AgentHost *h = agent_host_get(a, ns, server, true);
        bool was_online = h->online;
        heartbeat_read(h, heartbeat, now);
        h->online = true;
        if (!was_online) {
                presence = a->presence;
                userdata = a->presence_userdata;
        }
        json_t *answer = answer_new(h);
        held_jobs_read(a, h, json_object_get(heartbeat, "jobs"), answer, now, &ends);
        bool news = answer_fill(h, answer, now);
        bool acks = json_array_size(json_object_get(answer, "drop")) > 0;
        pthread_mutex_unlock(&a->lock);

        job_ends_report(&ends);
        if (presence)
                presence(userdata, ns, server, true);
        wait = wait < 0 ? 0 : wait > WINDOW_MAX_SEC ? WINDOW_MAX_SEC : wait;
        *ret_wait_usec = (uint64_t) wait * USEC_PER_SEC;
        *ret_answer = answer;
        return news || acks;
}

int agent_poll_again(Agents *a, const char *ns, const char *server, json_t **ret_answer) {
        uint64_t now = now_mono_usec();

        pthread_mutex_lock(&a->lock);
        AgentHost *h = agent_host_get(a, ns, server, true);
        json_t *answer = answer_new(h);
        bool news = answer_fill(h, answer, now);
        pthread_mutex_unlock(&a->lock);
        *ret_answer = answer;
        return news;
}

/* ---- the clock ------------------------------------------------------------------------------ */

/* Expiries of one host's jobs. Under lock. */
static void host_tick(Agents *a, AgentHost *h, uint64_t now, JobEnds *ends) {
        for (AgentJob *j = h->jobs, *next; j; j = next) {
                next = j->next;
                if (j->phase == JOB_QUEUED && j->wait_deadline && now >= j->wait_deadline) {
                        AgentJobResult r = agent_result(
                                AGENT_JOB_EXPIRED, "WaitingForServer",
                                "the agent of %s did not poll within the wait timeout", h->server);
                        agent_job_end(a, j, &r, ends);
                } else if (j->phase == JOB_QUEUED && j->online_only && h->last_seen &&
                           !host_online(h, now)) {
                        AgentJobResult r = agent_result(
                                AGENT_JOB_EXPIRED, "WaitingForServer",
                                "the agent of %s stopped polling before it took the command", h->server);
                        agent_job_end(a, j, &r, ends);
                } else if (j->phase == JOB_ADOPTED && now >= j->lease_until) {
                        AgentJobResult r = agent_result(
                                AGENT_JOB_INTERRUPTED, "Interrupted",
                                "the agent of %s did not report the job again after rprd restarted",
                                h->server);
                        agent_job_end(a, j, &r, ends);
                } else if (j->phase == JOB_RUNNING && now >= j->lease_until && !j->input_readers) {
                        AgentJobResult r =
                                agent_result(AGENT_JOB_INTERRUPTED, "Interrupted",
                                             "the agent of %s stopped renewing the job's lease", h->server);
                        agent_job_end(a, j, &r, ends);
                } else if (j->phase == JOB_OFFERED && now >= j->lease_until) {
                        /* Not accepted in time: offered again at the next poll. */
                        j->phase = JOB_QUEUED;
                        if (j->cancel) {
                                AgentJobResult r = agent_result(AGENT_JOB_CANCELED, "Canceled",
                                                                "canceled before the agent took it");
                                agent_job_end(a, j, &r, ends);
                        }
                }
        }
}

typedef struct PresenceChange {
        char *ns, *server;
} PresenceChange;

void agents_tick(Agents *a) {
        uint64_t now = now_mono_usec();
        JobEnds ends = {0};
        PresenceChange *gone = NULL;
        size_t n_gone = 0;

        pthread_mutex_lock(&a->lock);
        for (AgentHost *h = a->list; h; h = h->next) {
                host_tick(a, h, now, &ends);
                if (h->online && !host_online(h, now)) {
                        h->online = false;
                        gone = xrealloc(gone, (n_gone + 1) * sizeof *gone);
                        gone[n_gone++] = (PresenceChange){xstrdup(h->ns), xstrdup(h->server)};
                }
        }
        AgentPresenceFn presence = a->presence;
        void *userdata = a->presence_userdata;
        pthread_mutex_unlock(&a->lock);

        job_ends_report(&ends);
        for (size_t i = 0; i < n_gone; i++) {
                if (presence)
                        presence(userdata, gone[i].ns, gone[i].server, false);
                free(gone[i].ns);
                free(gone[i].server);
        }
        free(gone);
}
