/* pipeline.c: the Pipeline kind's reconciler and the making of jobs (see
 * pipeline.h): admission from the queue, the schedule, the trigger, and
 * trimming the history. Carrying a job out is pipeline-job.c's. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "controller/controller.h"
#include "logfile/logfile.h"
#include "pipeline/pipeline-private.h"
#include "repo/repo.h"
#include "resource/resource.h"
#include "run/run.h"
#include "store/store.h"

#define COMMIT_TRIES 8

/* ---- a Pipeline's jobs ------------------------------------------------------------ */

static bool phase_is(const json_t *job, const char *phase) {
        return STREQ(json_str_at(job, "phase") ?: "", phase);
}

static size_t count_going(const json_t *jobs) {
        const json_t *j;
        size_t i, n = 0;

        json_array_foreach(jobs, i, j) n += phase_is(j, "Pending") || phase_is(j, "Running");
        return n;
}

static size_t count_queued(const json_t *jobs) {
        const json_t *j;
        size_t i, n = 0;

        json_array_foreach(jobs, i, j) n += phase_is(j, "Queued");
        return n;
}

/* ---- starting a job ----------------------------------------------------------------- */

/* The job's args: the given ones, then each declared one's default. */
static int args_resolve(const json_t *declared, const json_t *given, json_t **ret, char **ret_error) {
        _cleanup_json_ json_t *out = json_object();
        const char *k;
        json_t *v;

        json_object_foreach((json_t *) given, k, v) {
                if (!json_object_get(declared, k)) {
                        Buf names = BUF_INIT;
                        const char *d;
                        json_t *dv;
                        json_object_foreach((json_t *) declared, d, dv) buf_printf(&names, "%s%s", names.len ? ", " : "", d);
                        *ret_error = xasprintf("undeclared argument \"%s\" (spec.args declares: %s)", k,
                                               names.len ? names.data : "none");
                        buf_free(&names);
                        return -EINVAL;
                }
                if (!json_is_string(v))
                        return *ret_error = xasprintf("argument \"%s\" must be a string", k), -EINVAL;
                json_object_set(out, k, v);
        }
        json_object_foreach((json_t *) declared, k, v) {
                const char *def = json_str_at(v, "default");
                if (!json_object_get(out, k))
                        json_object_set_new(out, k, json_string(def ?: ""));
        }
        *ret = TAKE_PTR(out);
        return 0;
}

static json_t *job_new(const json_t *pl, const char *name, json_t *args, const char *triggered_by, const char *commit,
                       bool admit, uint64_t not_before) {
        const json_t *meta = json_object_get(pl, "metadata"), *spec = json_object_get(pl, "spec");
        const char *pipeline = json_str_at(meta, "name");
        json_t *js = json_pack("{s:{s:s, s:s, s:s?}, s:s, s:O, s:O, s:s, s:s, s:I}", "owner", "kind", "Pipeline", "name",
                               pipeline, "uid", json_str_at(meta, "uid"), "pipeline", pipeline, "args", args, "tasks",
                               json_object_get(spec, "tasks"), "triggeredBy", triggered_by, "onInterrupt",
                               json_str_at(spec, "onInterrupt") ?: "fail", "parallelism",
                               json_int_at(spec, "parallelism", 8));
        if (json_str_at(spec, "onError"))
                json_object_set(js, "onError", json_object_get(spec, "onError"));
        if (commit)
                json_object_set_new(js, "commit", json_string(commit));
        json_t *st = json_pack("{s:s, s:s}", "phase", admit ? "Pending" : "Queued", "reason", admit ? "Started" : "Waiting");
        char buf[RFC3339_MAX];
        if (not_before) /* to the millisecond: startDelay may be short */
                json_object_set_new(st, "notBefore", json_string(time_format_rfc3339_ms(not_before, buf)));
        return json_pack("{s:s, s:s, s:{s:s, s:s, s:{s:s}}, s:o, s:o}", "apiVersion", RPR_API_VERSION, "kind", "Run",
                         "metadata", "name", name, "namespace", json_str_at(meta, "namespace"), "labels", "pipeline",
                         pipeline, "spec", js, "status", st);
}

/* Cancels the waiting job (Replaced). */
static void replace(PipelineController *p, const char *ns, const json_t *job, const char *why) {
        (void) job_set_phase(p, ns, json_str_at(job, "name"), "Queued", "Canceled", "Replaced", why, NULL);
}

/* Makes room for one more waiting job, or says why there is none. */
static int queue_room(PipelineController *p, const char *ns, const json_t *spec, const json_t *jobs, char **ret_error) {
        json_int_t limit = json_int_at(spec, "queueLimit", 10);
        bool replacing = STREQ(json_str_at(spec, "queueStrategy") ?: "append", "replace");
        size_t queued = count_queued(jobs);
        const json_t *j;
        size_t i;

        if ((json_int_t) queued < limit)
                return 0;
        if (!replacing || queued == 0) {
                *ret_error = limit == 0 ? xstrdup("a job is running and queueLimit is 0: no job may wait")
                                        : xasprintf("the queue is full: %zu jobs wait (queueLimit %lld)", queued,
                                                    (long long) limit);
                return -EBUSY;
        }
        json_array_foreach(jobs, i, j) if (phase_is(j, "Queued")) {
                replace(p, ns, j, "a newer job replaced it (queueStrategy replace)");
                return 0;
        }
        return 0;
}

/* startDelay: a job still in its delay is replaced by the newer one. */
static void debounce(PipelineController *p, const char *ns, const json_t *jobs, uint64_t now) {
        const json_t *j;
        size_t i;

        json_array_foreach(jobs, i, j) if (phase_is(j, "Queued") && (uint64_t) json_int_at(j, "notBefore", 0) > now)
                replace(p, ns, j, "a newer job came within startDelay");
}

static int start_locked(PipelineController *p, const char *ns, const char *name, const json_t *given,
                        const char *triggered_by, const char *commit, char **ret_run, char **ret_error) {
        for (int tries = 0; tries < COMMIT_TRIES; tries++) {
                _cleanup_json_ json_t *pl = NULL, *args = NULL, *jobs = NULL;
                if (store_get_json(p->store, "Pipeline", ns, name, &pl) < 0)
                        return *ret_error = xasprintf("pipelines \"%s\" not found", name), -ENOENT;
                const json_t *spec = json_object_get(pl, "spec");
                int r = args_resolve(json_object_get(spec, "args"), given, &args, ret_error);
                if (r < 0)
                        return r;
                uint64_t now = now_usec(), delay = json_duration_at(spec, "startDelay", 0);
                jobs = run_list_owned(p->store, ns, "pipeline", name);
                if (delay) {
                        debounce(p, ns, jobs, now);
                        json_decref(jobs);
                        jobs = run_list_owned(p->store, ns, "pipeline", name);
                }
                bool admit = !delay && count_queued(jobs) == 0 &&
                             (json_int_t) count_going(jobs) < json_int_at(spec, "concurrency", 1);
                if (!admit && (r = queue_room(p, ns, spec, jobs, ret_error)) < 0)
                        return r;

                json_t *st = json_deep_copy(json_object_get(pl, "status")) ?: json_object();
                json_int_t n = json_int_at(st, "runCounter", 0) + 1;
                _cleanup_free_ char *run = run_name(name, n);
                _cleanup_json_ json_t *job = job_new(pl, run, args, triggered_by, commit, admit, delay ? now + delay : 0);
                json_object_set_new(st, "runCounter", json_integer(n));
                json_object_set_new(st, "lastRun", json_string(run));
                _cleanup_json_ json_t *w = json_pack("{s:s, s:s, s:O, s:o}", "apiVersion", RPR_API_VERSION, "kind",
                                                     "Pipeline", "metadata", json_object_get(pl, "metadata"), "status", st);
                StoreOp ops[2] = {{.type = STORE_OP_APPLY, .object = job},
                                  {.type = STORE_OP_STATUS, .object = w, .expect_revision = store_object_revision(pl)}};
                r = store_commit(p->store, ops, 2, false, NULL);
                store_ops_clear(ops, 2);
                if (r == -ESTALE)
                        continue;
                if (r < 0)
                        return *ret_error = xasprintf("cannot store the job: %s", strerror(-r)), r;
                if (p->activity)
                        (void) logfile_append(p->activity, now, "pipeline %s/%s: job %s %s (%s%s%.12s)", ns, name, run,
                                              admit ? "started" : "queued", triggered_by, commit ? " " : "", commit ?: "");
                *ret_run = TAKE_PTR(run);
                return 0;
        }
        return *ret_error = xstrdup("the pipeline kept changing; try again"), -EBUSY;
}

int pipeline_start(PipelineController *p, const char *ns, const char *name, const json_t *args,
                   const char *triggered_by, const char *commit, char **ret_run, char **ret_error) {
        pthread_mutex_lock(&p->admit);
        int r = start_locked(p, ns, name, args, triggered_by, commit, ret_run, ret_error);
        pthread_mutex_unlock(&p->admit);
        if (r >= 0)
                controller_enqueue(p->controller, "Pipeline", ns, name, 0);
        return r;
}

/* ---- the reconciler ------------------------------------------------------------------ */

/* Admits the oldest waiting jobs while there is room. *ret_wait: when a
 * delayed one may go (0: none waits so). */
static void admit(PipelineController *p, const char *ns, const char *name, const json_t *spec, uint64_t *ret_wait) {
        json_int_t room = json_int_at(spec, "concurrency", 1);
        uint64_t now = now_usec();
        const json_t *j;
        size_t i;

        pthread_mutex_lock(&p->admit);
        _cleanup_json_ json_t *jobs = run_list_owned(p->store, ns, "pipeline", name);
        room -= (json_int_t) count_going(jobs);
        json_array_foreach(jobs, i, j) {
                if (room <= 0 || !phase_is(j, "Queued"))
                        continue;
                uint64_t nb = (uint64_t) json_int_at(j, "notBefore", 0);
                if (nb > now) {
                        *ret_wait = nb - now;
                        break; /* first come, first served */
                }
                bool ok = false;
                (void) job_set_phase(p, ns, json_str_at(j, "name"), "Queued", "Pending", "Started", NULL, &ok);
                room -= ok;
        }
        pthread_mutex_unlock(&p->admit);
}

/* Finished jobs beyond history, or ended longer than retention ago, go
 * with their output. */
static void trim(PipelineController *p, const char *ns, const json_t *spec, const json_t *jobs) {
        json_int_t history = json_int_at(spec, "history", 50), kept = 0;
        uint64_t retention = json_duration_at(spec, "retention", 0), now = now_usec();
        _cleanup_json_ json_t *doomed = json_array();
        const json_t *j;

        for (size_t i = json_array_size(jobs); i-- > 0;) {
                j = json_array_get(jobs, i);
                if (!run_phase_finished(json_str_at(j, "phase")))
                        continue;
                uint64_t ended = (uint64_t) json_int_at(j, "endTime", 0);
                bool old = retention && ended && ended + retention < now;
                if (kept < history && !old) {
                        kept++;
                        continue;
                }
                json_array_append(doomed, json_object_get(j, "name"));
        }
        size_t n = json_array_size(doomed);
        if (n == 0)
                return;
        _cleanup_free_ StoreOp *ops = xcalloc(n, sizeof *ops);
        for (size_t i = 0; i < n; i++)
                ops[i] = (StoreOp){.type = STORE_OP_DELETE, .kind = "Run", .ns = ns,
                                   .name = json_string_value(json_array_get(doomed, i))};
        if (store_commit(p->store, ops, n, false, NULL) >= 0)
                for (size_t i = 0; i < n; i++)
                        job_output_remove(p, ns, json_string_value(json_array_get(doomed, i)));
        store_ops_clear(ops, n);
}

typedef struct PipelineStatus {
        json_int_t generation;
        size_t queued, running;
        uint64_t next_schedule;
        const char *reason, *message; /* Ready=False when reason */
} PipelineStatus;

static json_t *status_next(const json_t *obj, void *userdata) {
        const PipelineStatus *w = userdata;
        const json_t *old = json_object_get(obj, "status");
        json_t *st = json_is_object(old) ? json_deep_copy(old) : json_object();

        json_object_set_new(st, "observedGeneration", json_integer(w->generation));
        json_object_set_new(st, "queued", json_integer((json_int_t) w->queued));
        json_object_set_new(st, "running", json_integer((json_int_t) w->running));
        if (w->next_schedule)
                json_set_time(st, "nextScheduleTime", w->next_schedule);
        else
                json_object_del(st, "nextScheduleTime");
        condition_set(st, &(Condition){"Ready", !w->reason, w->reason ?: "Ready",
                                       w->message ?: "jobs start on request, schedule or trigger", now_usec()});
        if (json_equal(st, old)) {
                json_decref(st);
                return NULL;
        }
        return st;
}

/* The schedule: a job when it is due; *ws gets the next time. */
static void schedule(PipelineController *p, const json_t *obj, PipelineStatus *ws, uint64_t *ret_wait) {
        const json_t *meta = json_object_get(obj, "metadata"), *spec = json_object_get(obj, "spec");
        const char *expr = json_str_at(spec, "schedule"), *ns = json_str_at(meta, "namespace");
        const char *name = json_str_at(meta, "name");
        const json_t *st = json_object_get(obj, "status");
        uint64_t now = now_usec(), next = json_time_at(st, "nextScheduleTime");
        Cron c;

        if (!expr || json_is_false(json_object_get(spec, "active")))
                return;
        if (cron_parse(expr, &c) < 0) {
                ws->reason = "InvalidSchedule", ws->message = "spec.schedule is not a cron expression rprd can run";
                return;
        }
        /* A new schedule counts from now; the one stored survives restarts. */
        if (!next || json_int_at(st, "observedGeneration", -1) != ws->generation)
                next = cron_next(&c, now);
        if (next && next <= now) {
                _cleanup_free_ char *run = NULL, *error = NULL;
                if (pipeline_start(p, ns, name, NULL, "schedule", NULL, &run, &error) < 0)
                        log_object(LOG_LEVEL_WARNING, "Pipeline", name, "pipeline %s/%s: the scheduled job was not started: %s",
                                   ns, name, error ?: "?");
                next = cron_next(&c, now);
        }
        ws->next_schedule = next;
        if (next)
                *ret_wait = next - now;
}

static void cancel_all(PipelineController *p, const char *ns, const char *name) {
        _cleanup_json_ json_t *jobs = run_list_owned(p->store, ns, "pipeline", name);
        _cleanup_free_ char *why = xasprintf("pipeline %s was deleted", name);
        const json_t *j;
        size_t i;

        json_array_foreach(jobs, i, j) if (!run_phase_finished(json_str_at(j, "phase")))
                (void) run_cancel(p->runs, ns, json_str_at(j, "name"), "PipelineDeleted", why);
}

static uint64_t sooner(uint64_t a, uint64_t b) {
        return !a ? b : !b ? a : MIN(a, b);
}

static int reconcile(void *userdata, const char *ns, const char *name, uint64_t *ret_requeue_after) {
        PipelineController *p = userdata;
        _cleanup_json_ json_t *obj = NULL;
        uint64_t admit_wait = 0, schedule_wait = 0;
        int r;

        r = store_get_json(p->store, "Pipeline", ns, name, &obj);
        if (r == -ENOENT) {
                cancel_all(p, ns, name);
                return 0;
        }
        if (r < 0)
                return r;
        const json_t *spec = json_object_get(obj, "spec");
        PipelineStatus ws = {.generation = json_int_at(json_object_get(obj, "metadata"), "generation", 0)};

        schedule(p, obj, &ws, &schedule_wait);
        admit(p, ns, name, spec, &admit_wait);
        /* As admission left them; trimming takes finished jobs only, so the
         * counts below stand. */
        _cleanup_json_ json_t *jobs = run_list_owned(p->store, ns, "pipeline", name);
        trim(p, ns, spec, jobs);
        ws.queued = count_queued(jobs);
        ws.running = count_going(jobs);
        r = store_update_status(p->store, "Pipeline", ns, name, status_next, &ws, NULL);
        *ret_requeue_after = sooner(admit_wait, schedule_wait);
        return r == -ENOENT ? 0 : r;
}

/* ---- what wakes a Pipeline ------------------------------------------------------------ */

typedef struct Triggered {
        const char *repo;
        json_t *names;
} Triggered;

static void collect_triggered(const char *text, size_t len, void *userdata) {
        Triggered *t = userdata;

        if (!strstr(text, "\"trigger\""))
                return;
        _cleanup_json_ json_t *obj = json_loadb(text, len, 0, NULL);
        const json_t *spec = json_object_get(obj, "spec");
        const char *repo = json_str_at(json_object_get(spec, "trigger"), "repo");
        if (repo && STREQ(repo, t->repo) && !json_is_false(json_object_get(spec, "active")))
                json_array_append_new(t->names, json_string(json_str_at(json_object_get(obj, "metadata"), "name")));
}

/* A new commit of a Repo starts a job of every Pipeline it triggers. */
static void on_commit(void *userdata, const char *ns, const char *repo, const char *sha) {
        PipelineController *p = userdata;
        Triggered t = {repo, json_array()};
        const json_t *n;
        size_t i;

        (void) store_list(p->store, "Pipeline", ns, collect_triggered, &t, NULL);
        json_array_foreach(t.names, i, n) {
                _cleanup_free_ char *run = NULL, *error = NULL;
                if (pipeline_start(p, ns, json_string_value(n), NULL, "commit", sha, &run, &error) < 0)
                        log_object(LOG_LEVEL_WARNING, "Pipeline", json_string_value(n),
                                   "pipeline %s/%s: the job for commit %.12s was not started: %s", ns,
                                   json_string_value(n), sha, error ?: "?");
        }
        json_decref(t.names);
}

/* ---- life cycle --------------------------------------------------------------------------- */

int pipeline_controller_new(const PipelineOptions *o, PipelineController **ret) {
        int r;

        if (!o->store || !o->controller || !o->runs || !o->servers || !o->ssh || !o->run_dir)
                return -EINVAL;
        PipelineController *p = xcalloc(1, sizeof *p);
        p->store = o->store;
        p->controller = o->controller;
        p->runs = o->runs;
        p->servers = o->servers;
        p->ssh = o->ssh;
        p->activity = o->activity;
        p->run_dir = xstrdup(o->run_dir);
        pthread_mutex_init(&p->admit, NULL);
        pthread_mutex_init(&p->lock, NULL);
        pthread_cond_init(&p->changed, NULL);
        r = controller_add(o->controller, "Pipeline", reconcile, p);
        if (r < 0) {
                pipeline_controller_free(p);
                return r;
        }
        run_controller_delegate(o->runs, "Pipeline", &(RunDelegate){job_reconcile, job_cancel, job_busy, p});
        if (o->repos)
                repo_on_commit(o->repos, on_commit, p);
        *ret = p;
        return 0;
}

void pipeline_controller_free(PipelineController *p) {
        if (!p)
                return;
        pipeline_controller_drain(p, 0);
        free(p->jobs);
        free(p->run_dir);
        pthread_cond_destroy(&p->changed);
        pthread_mutex_destroy(&p->lock);
        pthread_mutex_destroy(&p->admit);
        free(p);
}
