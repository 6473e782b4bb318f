/* api-misc: the anonymous read-only routes: /healthz, /api/v1/version and
 * /metrics (Prometheus text format 0.0.4). */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "api/api-private.h"
#include "controller/controller.h"
#include "run/run.h"
#include "ssh/ssh.h"
#include "sync/sync.h"
#include "webhook/webhook.h"

void api_handle_healthz(ApiCall *c) {
        ApiServer *a = c->api;
        char tick[RFC3339_MAX];
        json_t *loops;

        time_format_rfc3339(a->last_tick_usec, tick);
        loops = json_pack("{s:s}", "api", tick);
        if (a->controller) {
                time_format_rfc3339(controller_last_tick(a->controller), tick);
                json_object_set_new(loops, "controller", json_string(tick));
        }
        /* A store that takes no writes fails the check; a full volume only
         * degrades it (reads go on, and it clears by itself). */
        int health = store_health(a->store);
        const char *status = health == 0 ? "ok" : health == -ENOSPC ? "degraded" : "failing";
        json_t *body = json_pack("{s:s, s:I, s:s, s:o}", "status", status, "revision",
                                 (json_int_t) store_revision(a->store), "store",
                                 health == 0 ? "ok" : health == -ENOSPC ? "full" : "unwritable", "loops", loops);
        if (health < 0)
                json_object_set_new(body, "message",
                                    json_string(health == -ENOSPC  ? API_STORE_FULL
                                                : health == -EIDRM ? API_STORE_GONE
                                                                   : strerror(-health)));
        api_reply_json(c, health < 0 && health != -ENOSPC ? 503 : 200, body);
}

void api_handle_version(ApiCall *c) {
        api_reply_json(
                c, 200,
                json_pack("{s:s, s:s}", "version", API_VERSION_STRING, "apiVersion", RPR_API_VERSION));
}

static void metrics_http(ApiServer *a, Buf *b) {
        buf_puts(b, "# HELP rpr_http_requests_total HTTP requests answered, by route and status code.\n"
                    "# TYPE rpr_http_requests_total counter\n");
        for (size_t i = 0; i < a->n_counters; i++)
                buf_printf(b, "rpr_http_requests_total{route=\"%s\",code=\"%d\"} %" PRIu64 "\n",
                           a->counters[i].route, a->counters[i].code, a->counters[i].count);
}

static void metrics_store(ApiServer *a, Buf *b) {
        size_t n;
        const Kind *const *kinds = kind_all(&n);
        uint64_t commits = 0;
        double seconds = 0;

        buf_puts(b, "# HELP rpr_objects Objects in the store, by kind.\n# TYPE rpr_objects gauge\n");
        for (size_t i = 0; i < n; i++)
                buf_printf(b, "rpr_objects{kind=\"%s\"} %zu\n", kind_name(kinds[i]),
                           store_count(a->store, kind_name(kinds[i])));

        store_stats(a->store, &commits, &seconds);
        buf_printf(
                b,
                "# HELP rpr_store_revision The store's current revision.\n# TYPE rpr_store_revision gauge\n"
                "rpr_store_revision %" PRIu64 "\n",
                store_revision(a->store));
        buf_printf(b,
                   "# HELP rpr_store_commit_seconds Time spent committing writes to the store.\n"
                   "# TYPE rpr_store_commit_seconds summary\n"
                   "rpr_store_commit_seconds_sum %.6f\nrpr_store_commit_seconds_count %" PRIu64 "\n",
                   seconds, commits);
}

/* Runs by phase, from their stored text (no parsing). */
static const char *const run_phases[] = {"Pending", "Running", "Succeeded", "Failed", "Canceled", "Interrupted"};

static void count_phase(const char *text, size_t len, void *userdata) {
        size_t *n = userdata;
        char needle[40];

        (void) len;
        for (size_t i = 0; i < ELEMENTSOF(run_phases); i++) {
                snprintf(needle, sizeof needle, "\"phase\":\"%s\"", run_phases[i]);
                if (strstr(text, needle)) {
                        n[i]++;
                        return;
                }
        }
}

static void metrics_runs(ApiServer *a, Buf *b) {
        size_t n[ELEMENTSOF(run_phases)] = {0};

        (void) store_list(a->store, "Run", NULL, count_phase, n, NULL);
        buf_puts(b, "# HELP rpr_runs Run objects, by phase.\n# TYPE rpr_runs gauge\n");
        for (size_t i = 0; i < ELEMENTSOF(run_phases); i++)
                buf_printf(b, "rpr_runs{phase=\"%s\"} %zu\n", run_phases[i], n[i]);
        if (a->runs)
                buf_printf(b,
                           "# HELP rpr_runs_executing Runs whose command is under way in this rprd.\n"
                           "# TYPE rpr_runs_executing gauge\nrpr_runs_executing %zu\n",
                           run_controller_running(a->runs));
}

/* Runner instances by state, summed over the stored Runners' status. */
static const char *const runner_states[] = {"starting", "idle", "busy", "offline", "outdated", "failed"};

static void count_runner_states(const char *text, size_t len, void *userdata) {
        size_t *n = userdata;
        _cleanup_json_ json_t *o = json_loadb(text, len, 0, NULL);
        const json_t *inst;
        size_t i;

        json_array_foreach(json_object_get(json_object_get(o, "status"), "instances"), i, inst) {
                const char *s = json_str_at(inst, "state") ?: "";
                for (size_t k = 0; k < ELEMENTSOF(runner_states); k++)
                        if (STREQ(s, runner_states[k]) || (k == 0 && STREQ(s, "registering")))
                                n[k]++;
        }
}

static void metrics_runners(ApiServer *a, Buf *b) {
        size_t n[ELEMENTSOF(runner_states)] = {0};

        (void) store_list(a->store, "Runner", NULL, count_runner_states, n, NULL);
        buf_puts(b, "# HELP rpr_runner_instances Self-hosted runner instances, by state.\n"
                    "# TYPE rpr_runner_instances gauge\n");
        for (size_t i = 0; i < ELEMENTSOF(runner_states); i++)
                buf_printf(b, "rpr_runner_instances{state=\"%s\"} %zu\n", runner_states[i], n[i]);
}

/* Autoscaled Runners: one series each (labels namespace and runner only,
 * so as many as there are Runners, at most AUTOSCALE_SERIES_MAX). */
#define AUTOSCALE_SERIES_MAX 1000

typedef struct AutoscaleRows {
        Buf desired, queued, decisions;
        size_t n;
} AutoscaleRows;

static void autoscale_row(const char *text, size_t len, void *userdata) {
        AutoscaleRows *r = userdata;
        _cleanup_json_ json_t *o = json_loadb(text, len, 0, NULL);
        const json_t *as = json_object_get(json_object_get(o, "status"), "autoscale");
        const json_t *meta = json_object_get(o, "metadata");

        if (!json_is_object(as) || r->n >= AUTOSCALE_SERIES_MAX)
                return;
        r->n++;
        const char *ns = json_str_at(meta, "namespace") ?: "", *name = json_str_at(meta, "name") ?: "";
        buf_printf(&r->desired, "rpr_runner_autoscale_desired{namespace=\"%s\",runner=\"%s\"} %lld\n", ns, name,
                   (long long) json_int_at(as, "desired", 0));
        buf_printf(&r->queued, "rpr_runner_autoscale_queued_jobs{namespace=\"%s\",runner=\"%s\"} %lld\n", ns,
                   name, (long long) json_int_at(as, "queued", 0));
        buf_printf(&r->decisions, "rpr_runner_autoscale_decisions_total{namespace=\"%s\",runner=\"%s\"} %lld\n",
                   ns, name, (long long) json_int_at(as, "decisions", 0));
}

static void metrics_autoscale(ApiServer *a, Buf *b) {
        static const char *const outcomes[] = {"counted", "duplicate", "unmatched", "ignored"};
        AutoscaleRows r = {BUF_INIT, BUF_INIT, BUF_INIT, 0};
        WebhookStats st = {0};

        (void) store_list(a->store, "Runner", NULL, autoscale_row, &r, NULL);
        buf_printf(b, "# HELP rpr_runner_autoscale_desired Runners an autoscaled Runner wants now.\n"
                      "# TYPE rpr_runner_autoscale_desired gauge\n%s"
                      "# HELP rpr_runner_autoscale_queued_jobs Queued jobs an autoscaled Runner counts.\n"
                      "# TYPE rpr_runner_autoscale_queued_jobs gauge\n%s"
                      "# HELP rpr_runner_autoscale_decisions_total Changes of desired since the Runner was made.\n"
                      "# TYPE rpr_runner_autoscale_decisions_total counter\n%s",
                   r.desired.data ?: "", r.queued.data ?: "", r.decisions.data ?: "");
        buf_free(&r.desired);
        buf_free(&r.queued);
        buf_free(&r.decisions);
        if (a->webhook)
                webhook_stats(a->webhook, &st);
        buf_puts(b, "# HELP rpr_workflow_job_deliveries_total workflow_job deliveries since start, by outcome "
                    "(unmatched: a job no Runner takes).\n# TYPE rpr_workflow_job_deliveries_total counter\n");
        for (size_t i = 0; i < ELEMENTSOF(outcomes); i++)
                buf_printf(b, "rpr_workflow_job_deliveries_total{outcome=\"%s\"} %" PRIu64 "\n", outcomes[i],
                           st.workflow_jobs[i]);
}

static void metrics_syncs(ApiServer *a, Buf *b) {
        SyncStats st;

        if (!a->syncs)
                return;
        sync_stats(a->syncs, &st);
        buf_printf(b,
                   "# HELP rpr_syncs_total Syncs of a revision (or drift checks) since start, by result.\n"
                   "# TYPE rpr_syncs_total counter\n"
                   "rpr_syncs_total{result=\"applied\"} %" PRIu64 "\nrpr_syncs_total{result=\"unchanged\"} %" PRIu64
                   "\nrpr_syncs_total{result=\"failed\"} %" PRIu64 "\n"
                   "# HELP rpr_sync_duration_seconds Time from reading a revision to its commit.\n"
                   "# TYPE rpr_sync_duration_seconds summary\n"
                   "rpr_sync_duration_seconds_sum %.6f\nrpr_sync_duration_seconds_count %" PRIu64 "\n"
                   "# HELP rpr_sync_last_duration_seconds The last sync's duration.\n"
                   "# TYPE rpr_sync_last_duration_seconds gauge\nrpr_sync_last_duration_seconds %.6f\n",
                   st.applied, st.unchanged, st.failed, st.seconds, st.applied + st.unchanged + st.failed,
                   st.last_seconds);
}

void api_handle_metrics(ApiCall *c) {
        ApiServer *a = c->api;
        Buf b = BUF_INIT;

        metrics_http(a, &b);
        metrics_store(a, &b);
        metrics_runs(a, &b);
        metrics_syncs(a, &b);
        metrics_runners(a, &b);
        metrics_autoscale(a, &b);
        buf_printf(&b,
                   "# HELP rpr_watchers Open watch streams.\n# TYPE rpr_watchers gauge\nrpr_watchers %zu\n",
                   a->n_watches);
        buf_printf(&b,
                   "# HELP rpr_ssh_sessions Open pooled SSH sessions.\n# TYPE rpr_ssh_sessions gauge\n"
                   "rpr_ssh_sessions %zu\n",
                   a->ssh ? ssh_pool_sessions(a->ssh) : 0);
        buf_printf(&b,
                   "# HELP rpr_exec_streams Running exec requests.\n# TYPE rpr_exec_streams gauge\n"
                   "rpr_exec_streams %zu\n",
                   a->n_execs);
        api_limits_metrics(a, &b);
        if (a->controller)
                buf_printf(&b,
                           "# HELP rpr_controller_pending Keys queued or being reconciled.\n"
                           "# TYPE rpr_controller_pending gauge\nrpr_controller_pending %zu\n",
                           controller_pending(a->controller));

        char *body = api_pool_strdup(c->req, b.data ? b.data : "", b.len);
        size_t len = b.len;
        buf_free(&b);
        api_reply_text(c, 200, "text/plain; version=0.0.4; charset=utf-8", body, len);
}

void api_handle_reconcile(ApiCall *c) {
        Controller *ctl = c->api->controller;

        if (!ctl) {
                api_reply_status(c, 503, "this rprd runs no controllers");
                return;
        }
        /* Starting was the point: rprd reconciles every object when it
         * starts and keeps its own timers while it runs. */
        uint64_t next = controller_next_due_usec(ctl);
        json_t *body = json_pack("{s:s, s:s, s:I, s:I}", "apiVersion", RPR_API_VERSION, "kind", "ReconcileResult",
                                 "objects", (json_int_t) store_count(c->api->store, NULL), "pending",
                                 (json_int_t) controller_pending(ctl));
        json_object_set_new(body, "nextDueSeconds",
                            next == UINT64_MAX ? json_null() : json_integer((json_int_t) (next / USEC_PER_SEC)));
        api_reply_json(c, 200, body);
}
