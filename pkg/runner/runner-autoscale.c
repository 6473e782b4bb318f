/* runner-autoscale: spec.autoscale — the Runner sets its own target.
 *
 * There is no second scaling loop: each pass computes one number, desired
 * = clamp(busy + queued + idle, min, max), and hands it to the keep-N pass
 * as p->want, where replicas would be. busy and idle come from GitHub's
 * runner list (an in_progress delivery naming one of ours counts it busy
 * before the list says so), queued from the job table (runner-jobs.c). A
 * burst of deliveries is one decision: they only wake the Runner, and a
 * pass counts what is there. Scale-up starts every missing runner in that
 * pass. Scale-down keeps issue 17's rules (never a busy runner; DELETE at
 * GitHub first) and removes an idle runner above the target only once it
 * has been idle scaleDownDelay; an ephemeral runner whose job is over is
 * not started again above the target (runner-pass.c, surplus()). Each
 * change of desired is a decision, kept in status.autoscale with why. */
#include <stdio.h>
#include <string.h>

#include "github/github.h"
#include "logfile/logfile.h"
#include "resource/resource.h"
#include "runner/runner-private.h"

#define HISTORY_MAX 10

typedef struct Count {
        json_int_t busy, idle, queued;
        json_t *needs; /* labels of the queued jobs (lower case, distinct) */
} Count;

static bool is_live(const json_t *inst) {
        return !json_is_true(json_object_get(inst, "removing")) &&
               !json_is_true(json_object_get(inst, "abandoned"));
}

/* What the job table says of the instance called name: "in_progress"
 * when a job runs on it, "completed" when its job ended, else NULL. */
static const char *job_on(const json_t *jobs, const char *name) {
        const char *id, *found = NULL;
        const json_t *j;

        json_object_foreach((json_t *) jobs, id, j) {
                const char *s = json_str_at(j, "status") ?: "";
                if (!STREQ(json_str_at(j, "runner") ?: "", name ?: ""))
                        continue;
                if (STREQ(s, "in_progress"))
                        return s;
                if (STREQ(s, "completed"))
                        found = s;
        }
        return found;
}

static void add_needs(json_t *needs, const json_t *labels) {
        const json_t *l, *n;
        size_t i, k;

        json_array_foreach(labels, i, l) {
                _cleanup_free_ char *low = xstrdup(json_string_value(l) ?: "");
                bool known = STREQ(low, "self-hosted");
                for (char *c = low; *c; c++)
                        *c = (char) (*c >= 'A' && *c <= 'Z' ? *c - 'A' + 'a' : *c);
                json_array_foreach(needs, k, n) known |= STREQ(json_string_value(n), low);
                if (!known && json_array_size(needs) < 16)
                        json_array_append_new(needs, json_string(low));
        }
}

/* busy and idle from GitHub's list and the table; queued from the table. */
static void count(Pass *p, const json_t *jobs, Count *c) {
        const json_t *inst, *j;
        const char *id;
        size_t i;

        json_array_foreach(p->instances, i, inst) {
                const char *name = json_str_at(inst, "name");
                const json_t *g = pass_gh_find(p, json_int_at(inst, "id", 0), name);
                const json_t *h = json_object_get(json_object_get(p->seen, json_str_at(inst, "server")), name);
                const char *job = job_on(jobs, name);
                /* A process that ended, or a job that is over, is not
                 * busy, whatever a cached list still says. */
                if (!is_live(inst) || (h && !STREQ(json_str_at(h, "state") ?: "", "running")))
                        continue;
                if ((job && STREQ(job, "in_progress")) || (!job && g && json_is_true(json_object_get(g, "busy"))))
                        c->busy++;
                else if (g && json_is_true(json_object_get(g, "online")) && !job)
                        c->idle++;
        }
        json_object_foreach((json_t *) jobs, id, j) {
                if (!STREQ(json_str_at(j, "status") ?: "", "queued"))
                        continue;
                c->queued++;
                add_needs(c->needs, json_object_get(j, "labels"));
        }
}

static char *reason_text(const RunnerSpec *sp, const Count *c, json_int_t from, json_int_t to) {
        _cleanup_free_ char *needs = runner_labels_text(c->needs);
        json_int_t raw = c->busy + c->queued + sp->as_idle;
        const char *bound = raw > sp->as_max ? " (held at max)" : raw < sp->as_min ? " (held at min)" : "";

        if (to > from && c->queued > 0)
                return xasprintf("scaled %lld → %lld: %lld queued job%s need%s [%s]%s", (long long) from,
                                 (long long) to, (long long) c->queued, c->queued == 1 ? "" : "s",
                                 c->queued == 1 ? "s" : "", needs, bound);
        return xasprintf("scaled %lld → %lld: %lld busy, %lld queued, %lld idle wanted%s", (long long) from,
                         (long long) to, (long long) c->busy, (long long) c->queued, (long long) sp->as_idle,
                         bound);
}

/* A change of desired: status.autoscale.lastDecision, history, the logs. */
static void decided(Pass *p, json_t *as, const Count *c, json_int_t from, json_int_t to) {
        _cleanup_free_ char *why = reason_text(p->sp, c, from, to);
        json_t *d = json_pack("{s:I, s:I, s:s}", "from", from, "to", to, "reason", why);
        json_t *history = json_object_get(as, "history");

        json_set_time(d, "time", p->now);
        if (!json_is_array(history)) {
                history = json_array();
                json_object_set_new(as, "history", history);
        }
        json_array_append(history, d);
        while (json_array_size(history) > HISTORY_MAX)
                json_array_remove(history, 0);
        json_object_set_new(as, "lastDecision", d);
        json_object_set_new(as, "decisions", json_integer(json_int_at(as, "decisions", 0) + 1));
        log_info("runner %s/%s: %s", p->sp->ns, p->sp->name, why);
        if (p->rc->activity)
                (void) logfile_append(p->rc->activity, p->now, "runner %s/%s: %s", p->sp->ns, p->sp->name, why);
}

/* The Autoscaling condition: how the poll fares. */
static void poll_condition(Pass *p, const json_t *poll) {
        const char *reason = json_str_at(poll, "reason");

        if (!p->sp->repo) {
                condition_set(p->st, &(Condition){"Autoscaling", true, "WebhooksOnly",
                                                  "an organisation's queued jobs are counted from workflow_job "
                                                  "deliveries alone (GitHub lists runs per repository)",
                                                  p->now});
                return;
        }
        if (reason) {
                _cleanup_free_ char *msg = xasprintf("cannot count queued jobs at GitHub (webhooks still count): %s",
                                                     json_str_at(poll, "error") ?: "");
                condition_set(p->st, &(Condition){"Autoscaling", false, reason, msg, p->now});
        } else if (json_object_get(poll, "at"))
                condition_set(p->st, &(Condition){"Autoscaling", true, "Polled",
                                                  "queued jobs counted from webhooks and GitHub's queued runs",
                                                  p->now});
}

/* Marks when each instance became idle (scaleDownDelay counts from it). */
static void mark_idle(Pass *p) {
        json_t *inst;
        size_t i;

        json_array_foreach(p->instances, i, inst) {
                if (!STREQ(json_str_at(inst, "state") ?: "", "idle"))
                        json_object_del(inst, "idleSince");
                else if (!json_object_get(inst, "idleSince"))
                        json_set_time(inst, "idleSince", p->now);
        }
}

bool runner_autoscale_may_remove(Pass *p, const json_t *inst) {
        uint64_t since = json_time_at(inst, "idleSince");

        if (!STREQ(json_str_at(inst, "state") ?: "", "idle") || !since)
                return false;
        if (p->now - since >= p->sp->scale_down_delay_usec)
                return true;
        /* Look again when it may go. */
        p->wake_in = MIN(p->wake_in ?: UINT64_MAX, since + p->sp->scale_down_delay_usec - p->now);
        return false;
}

void runner_autoscale_after(Pass *p) {
        if (p->sp->autoscale)
                mark_idle(p);
}

void runner_autoscale(Pass *p) {
        Count c = {.needs = json_array()};

        if (!p->sp->autoscale) {
                json_object_del(p->st, "autoscale");
                condition_remove(p->st, "Autoscaling");
                json_decref(c.needs);
                return;
        }
        runner_poll(p);
        pthread_mutex_lock(&p->rc->lock);
        json_t *table = runner_table(p->rc, p->sp->ns, p->sp->name);
        _cleanup_json_ json_t *poll = json_deep_copy(json_object_get(table, "poll"));
        count(p, json_object_get(table, "jobs"), &c);
        pthread_mutex_unlock(&p->rc->lock);

        json_t *as = json_object_get(p->st, "autoscale");
        if (!json_is_object(as)) {
                as = json_object();
                json_object_set_new(p->st, "autoscale", as);
        }
        /* Without GitHub's list (rate limited, say) busy and idle are as
         * last counted; the queue still counts. */
        if (!p->gh) {
                c.busy = json_int_at(as, "busy", 0);
                c.idle = json_int_at(as, "idle", 0);
        }
        json_int_t to = MIN(MAX(c.busy + c.queued + p->sp->as_idle, p->sp->as_min), p->sp->as_max);
        json_int_t from = json_int_at(as, "desired", 0);
        if (to != from)
                decided(p, as, &c, from, to);
        json_object_set_new(as, "desired", json_integer(to));
        json_object_set_new(as, "busy", json_integer(c.busy));
        json_object_set_new(as, "idle", json_integer(c.idle));
        json_object_set_new(as, "queued", json_integer(c.queued));
        json_object_set_new(as, "min", json_integer(p->sp->as_min));
        json_object_set_new(as, "max", json_integer(p->sp->as_max));
        if (json_object_get(poll, "at"))
                json_set_time(as, "lastPoll", (uint64_t) json_int_at(poll, "at", 0));
        json_object_set_new(as, "pollRequests", json_integer(json_int_at(poll, "requests", 0)));
        poll_condition(p, poll);
        p->want = to;
        json_decref(c.needs);
}
