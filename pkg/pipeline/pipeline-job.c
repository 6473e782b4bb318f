/* pipeline-job: carrying out one job — a DAG of task instances.
 *
 * A task runs on rprd's host, on its server, or on each server matching its
 * labels: one instance each, keyed "task" or "task@server" in
 * status.tasks. The job's thread starts every instance whose dependencies
 * are done (all instances Succeeded, or finished at all for an allowFailure
 * task) while fewer than spec.parallelism run; an instance behind a failure
 * is Skipped; a failed instance with retries left runs again. The job has
 * parallelism worker threads that take the started instances in turn (no
 * thread made per task); each instance's output has its own file,
 * DIR/NS/JOB/KEY.log; the job's notes go to DIR/NS/JOB.log. The tasks'
 * states reach the store in batches (pipeline-status.c), except that an
 * instance's Running on a server is durable before its command starts and
 * its end before its dependents start (in the job's journal,
 * pipeline-files.c): a crash never makes a job run a task twice. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "controller/controller.h"
#include "logfile/logfile.h"
#include "pipeline/pipeline-private.h"
#include "resource/resource.h"
#include "run/run.h"
#include "server/server.h"
#include "ssh/ssh.h"
#include "store/store.h"

#define SERVER_POLL_USEC (1 * USEC_PER_SEC)
#define THREAD_STACK (256u * 1024)

/* ---- one instance --------------------------------------------------------------------- */

static bool finished(const char *phase) {
        return run_phase_finished(phase) || STREQ(phase, "Skipped");
}

/* The args, the task's env, then the RPR_ variables (they win). */
static void env_build(const Inst *i, SshEnv *env) {
        const json_t *spec = i->job->spec;
        char attempt[24];

        snprintf(attempt, sizeof attempt, "%" JSON_INTEGER_FORMAT, i->attempt);
        ssh_env_add_all(env, json_object_get(spec, "args"));
        ssh_env_add_all(env, json_object_get(i->def, "env"));
        ssh_env_add(env, "RPR_PIPELINE", json_str_at(spec, "pipeline"));
        ssh_env_add(env, "RPR_RUN", i->job->name);
        ssh_env_add(env, "RPR_TASK", i->task);
        ssh_env_add(env, "RPR_ATTEMPT", attempt);
        ssh_env_add(env, "RPR_SERVER", i->server);
        ssh_env_add(env, "RPR_COMMIT", json_str_at(spec, "commit"));
}

/* A list of commands runs one after another and stops at the first failure. */
static char *script_of(const json_t *def) {
        const json_t *s = json_object_get(def, "script"), *v;
        Buf b = BUF_INIT;
        size_t i;

        if (json_is_string(s))
                return xstrdup(json_string_value(s));
        buf_puts(&b, "set -e\n");
        json_array_foreach(s, i, v) buf_printf(&b, "%s\n", json_string_value(v) ?: "");
        return buf_steal(&b);
}

static bool server_reachable(Job *j, const char *server) {
        _cleanup_json_ json_t *obj = NULL;

        if (store_get_json(j->p->store, "Server", j->ns, server, &obj) < 0)
                return false;
        return STREQ(json_str_at(json_object_get(obj, "status"), "phase") ?: "", "Reachable");
}

/* Waits (phase Waiting) until the instance's server is Reachable; false if canceled first. */
static bool wait_for_server(Inst *i) {
        Job *j = i->job;

        while (!server_reachable(j, i->server)) {
                pthread_mutex_lock(&j->lock);
                if (!STREQ(i->phase, "Waiting"))
                        i->phase = "Waiting", i->reason = "WaitingForServer", j->dirty = true;
                bool stop = ssh_cancel_fired(i->cancel);
                pthread_mutex_unlock(&j->lock);
                if (stop)
                        return false;
                usleep(SERVER_POLL_USEC);
        }
        pthread_mutex_lock(&j->lock);
        i->phase = "Running", i->reason = NULL, j->dirty = true;
        pthread_mutex_unlock(&j->lock);
        return true;
}

/* A task's output file, made when the first output comes: a task that
 * prints nothing costs no file (its start and end are in the job's log). */
typedef struct Output {
        const char *path;
        RunLog *log;
        bool failed;
} Output;

static int on_output(void *userdata, SshStream stream, const char *data, size_t n) {
        Output *o = userdata;

        if (!o->log && !o->failed && run_log_open(o->path, &o->log) < 0) {
                o->failed = true;
                log_warning("cannot open %s: the task's output is lost", o->path);
        }
        if (o->log)
                run_log_write(o->log, stream == SSH_STDERR ? RUN_LOG_ERR : RUN_LOG_OUT, data, n, now_usec());
        return 0;
}

/* Runs the instance once; returns its outcome in r and res. */
static int run_once(Inst *i, Output *log, SshResult *res) {
        Job *j = i->job;
        ServerTarget *t = NULL;
        _cleanup_free_ char *error = NULL, *script = script_of(i->def);
        SshTarget local = {.id = "local", .transport = SSH_TRANSPORT_LOCAL};
        const SshTarget *target = &local;
        int r;

        if (i->server) {
                if (!wait_for_server(i))
                        return -ECANCELED;
                r = server_target_get(j->p->servers, j->ns, i->server, &t, NULL, &error);
                if (r < 0) {
                        snprintf(res->message, sizeof res->message, "%s", error ?: "the server cannot be used");
                        res->failure = SSH_FAIL_EXEC;
                        return r;
                }
                target = server_target(t);
        }
        /* On a server, Running is durable before the command starts: the
         * next rprd must know where to look for what is left of it. On
         * rprd's host it looks at every unfinished task's pid file anyway
         * (job_recover), so the start need not wait for the store. */
        r = i->server ? job_flush_wait(j) : 0;
        if (r < 0) {
                server_target_free(t);
                snprintf(res->message, sizeof res->message,
                         "the task was not started: its start could not be written to the store (%s)", strerror(-r));
                res->failure = SSH_FAIL_EXEC;
                return r;
        }
        _cleanup_free_ char *id = xasprintf("%s.%s.%s", j->ns, j->name, i->key);
        _cleanup_free_ char *proc_dir = xasprintf("%s/.proc", j->p->run_dir);
        SshTrack track = {.id = id, .local_dir = proc_dir};
        SshEnv env = {0};
        env_build(i, &env);
        SshCommand cmd = {.track = &track,
                          .script = script,
                          .env = (const char *const *) env.v,
                          .workdir = json_str_at(i->def, "workdir"),
                          .timeout_usec = json_duration_at(i->def, "timeout", 3600 * USEC_PER_SEC),
                          .output = on_output,
                          .userdata = log,
                          .cancel = i->cancel};
        r = ssh_run(j->p->ssh, target, &cmd, res);
        ssh_env_clear(&env);
        server_target_free(t);
        return r;
}

/* Under j->lock: the instance's outcome, or another attempt. */
static void settle(Inst *i, int r, const SshResult *res) {
        Job *j = i->job;
        json_int_t retries = json_int_at(i->def, "retries", 0);

        i->end = now_usec();
        i->has_exit_code = r >= 0 && !res->signal[0];
        i->exit_code = res->exit_code;
        free(i->message);
        i->message = NULL;
        if (ssh_cancel_fired(i->cancel) || r == -ECANCELED) {
                i->phase = j->interrupted ? "Interrupted" : "Canceled";
                i->reason = j->interrupted ? "RprdStopped" : "Canceled";
        } else if (r >= 0 && !res->signal[0] && res->exit_code == 0) {
                i->phase = "Succeeded", i->reason = "ExitCode";
        } else {
                i->phase = "Failed";
                i->reason = r >= 0 ? (res->signal[0] ? "Signal" : "ExitCode") : ssh_failure_reason(res->failure);
                i->message = r >= 0 ? (res->signal[0] ? xasprintf("killed by SIG%s", res->signal)
                                                      : xasprintf("exited with %d", res->exit_code))
                                    : xstrdup(res->message);
                if (i->attempt <= retries && !j->canceled) {
                        i->attempt++;
                        i->phase = "Pending", i->reason = "Retrying";
                }
        }
}

/* Runs one started instance to its outcome. */
static void inst_run(Inst *i) {
        Job *j = i->job;
        _cleanup_free_ char *dir = job_dir(j->p, j->ns, j->name);
        _cleanup_free_ char *path = xasprintf("%s/%s.log", dir, i->key);
        SshResult res = {0};
        Output out = {path, NULL, false};

        int r = run_once(i, &out, &res);
        run_log_close(out.log);
        const char *lost = NULL;
        if (r < 0 && res.failure == SSH_FAIL_DISCONNECTED && res.logged_in && i->server)
                lost = job_reap_lost(j->p, j->ns, j->name, i->key, i->server, i->cancel);

        pthread_mutex_lock(&j->lock);
        json_int_t attempt = i->attempt;
        settle(i, r, &res);
        if (lost) {
                i->leftover = lost;
                if (STREQ(lost, "Unknown") && STREQ(i->phase, "Pending")) {
                        /* No retry beside a command that may still run. */
                        i->phase = "Failed", i->reason = "Disconnected";
                        i->attempt--;
                }
        }
        run_log_note(j->log, "task %s (attempt %" JSON_INTEGER_FORMAT ", %s): %s%s%s (%.3f s)", i->key,
                     attempt, i->server ?: "rprd's host", i->phase, i->message ? ": " : "", i->message ?: "",
                     (double) res.duration_usec / USEC_PER_SEC);
        j->running--;
        j->dirty = true;
        /* Its end is durable before anything that depends on it starts (a
         * failure before onError does): in the job's journal, or else in the
         * store. The end of a task nothing waits for goes with the next
         * batch: a crash before it re-runs the task on resume, which is
         * allowed, its end never having been recorded. */
        i->ending = finished(i->phase) &&
                    (j->graph[i->task_index].has_dependents || !STREQ(i->phase, "Succeeded"));
        if (i->ending) {
                _cleanup_json_ json_t *end = job_inst_json(i);
                pthread_mutex_unlock(&j->lock);
                int k = job_end_record(j, i->key, end);
                if (k < 0)
                        k = job_flush_wait(j);
                if (k < 0)
                        log_warning("job %s/%s: the end of task %s could not be written: %s", j->ns, j->name, i->key,
                                    strerror(-k));
                pthread_mutex_lock(&j->lock);
                i->ending = false;
        }
        /* What this one held back may start now, from here: no round trip
         * through the job's thread between a task and its dependents. */
        (void) job_step(j, j->on_error_phase);
        pthread_cond_broadcast(&j->changed);
        pthread_mutex_unlock(&j->lock);
}

static void *worker_thread(void *arg) {
        Job *j = arg;

        pthread_mutex_lock(&j->lock);
        for (;;) {
                while (j->n_ready == 0 && !j->workers_stop)
                        pthread_cond_wait(&j->work, &j->lock);
                if (j->n_ready == 0)
                        break;
                Inst *i = j->ready[j->ready_head];
                j->ready_head = (j->ready_head + 1) % j->n_insts;
                j->n_ready--;
                pthread_mutex_unlock(&j->lock);
                inst_run(i);
                pthread_mutex_lock(&j->lock);
        }
        pthread_mutex_unlock(&j->lock);
        return NULL;
}

static void workers_start(Job *j) {
        pthread_attr_t attr;

        j->ready = xcalloc(j->n_insts + 1, sizeof *j->ready);
        j->workers = xcalloc((size_t) j->parallelism, sizeof *j->workers);
        pthread_cond_init(&j->work, NULL);
        pthread_attr_init(&attr);
        pthread_attr_setstacksize(&attr, THREAD_STACK);
        for (json_int_t k = 0; k < j->parallelism && (size_t) k < j->n_insts; k++)
                if (pthread_create(&j->workers[j->n_workers], &attr, worker_thread, j) == 0)
                        j->n_workers++;
        pthread_attr_destroy(&attr);
}

/* Once nothing runs any more. */
static void workers_stop(Job *j) {
        pthread_mutex_lock(&j->lock);
        j->workers_stop = true;
        pthread_cond_broadcast(&j->work);
        pthread_mutex_unlock(&j->lock);
        for (size_t k = 0; k < j->n_workers; k++)
                pthread_join(j->workers[k], NULL);
        pthread_cond_destroy(&j->work);
        free(j->workers);
        free(j->ready);
}

/* Under j->lock: hands the instance to a worker. */
static void inst_start(Inst *i) {
        Job *j = i->job;

        ssh_cancel_free(i->cancel);
        i->cancel = ssh_cancel_new();
        i->phase = "Running", i->reason = NULL;
        i->start = now_usec(), i->end = 0;
        j->running++;
        j->dirty = true;
        if (j->n_workers == 0) {
                j->running--;
                i->phase = "Failed", i->reason = "ThreadFailed";
                return;
        }
        j->ready[(j->ready_head + j->n_ready++) % j->n_insts] = i;
        pthread_cond_signal(&j->work);
}

/* ---- the DAG ------------------------------------------------------------------------------- */

typedef enum DepState { DEP_WAIT, DEP_READY, DEP_BLOCKED } DepState;

/* Under j->lock: for each task of the graph, whether it lets its
 * dependents go (states[task_index]); an end not yet durable does not.
 * One pass over the instances: a step costs the size of the graph, not
 * its square. */
static DepState *task_states(Job *j) {
        bool *done = xcalloc(j->n_graph + 1, sizeof *done), *ok = xcalloc(j->n_graph + 1, sizeof *ok);
        bool *bad = xcalloc(j->n_graph + 1, sizeof *bad), *any = xcalloc(j->n_graph + 1, sizeof *any);
        DepState *states = xcalloc(j->n_graph + 1, sizeof *states);

        for (size_t t = 0; t < j->n_graph; t++)
                done[t] = ok[t] = true;
        for (size_t k = 0; k < j->n_insts; k++) {
                const Inst *i = j->insts[k];
                bool d = finished(i->phase) && !i->ending,
                     s = d && STREQ(i->phase, "Succeeded");
                any[i->task_index] = true;
                done[i->task_index] &= d;
                ok[i->task_index] &= s;
                bad[i->task_index] |= d && !s;
        }
        states[j->n_graph] = DEP_BLOCKED; /* a dependency that is no task */
        for (size_t t = 0; t < j->n_graph; t++) {
                if (!any[t])
                        states[t] = DEP_BLOCKED; /* its servers matched nothing */
                else if (j->graph[t].allow_failure)
                        states[t] = done[t] ? DEP_READY : DEP_WAIT;
                else
                        states[t] = bad[t] ? DEP_BLOCKED : ok[t] ? DEP_READY : DEP_WAIT;
        }
        free(done), free(ok), free(bad), free(any);
        return states;
}

/* *states is made on first need: an instance without dependencies (all of
 * them in a flat graph of a thousand) costs no pass over the job. */
static DepState deps_state(Job *j, DepState **states, const Inst *i) {
        const Task *t = &j->graph[i->task_index];
        DepState s = DEP_READY;

        if (t->n_deps > 0 && !*states)
                *states = task_states(j);
        for (size_t k = 0; k < t->n_deps; k++) {
                if ((*states)[t->deps[k]] == DEP_BLOCKED)
                        return DEP_BLOCKED;
                if ((*states)[t->deps[k]] == DEP_WAIT)
                        s = DEP_WAIT;
        }
        return s;
}

/* Under j->lock: starts what may start; true while anything can still happen. */
bool job_step(Job *j, bool on_error_phase) {
        _cleanup_free_ DepState *states = NULL;
        bool pending = false;

        for (size_t k = 0; k < j->n_insts; k++) {
                Inst *i = j->insts[k];
                if (i->on_error != on_error_phase || !STREQ(i->phase, "Pending"))
                        continue;
                if (j->canceled) {
                        i->phase = j->interrupted ? "Interrupted" : "Canceled";
                        i->reason = j->interrupted ? "RprdStopped" : "Canceled";
                        j->dirty = true;
                        continue;
                }
                DepState s = on_error_phase ? DEP_READY : deps_state(j, &states, i);
                if (s == DEP_BLOCKED) {
                        i->phase = "Skipped", i->reason = "DependencyFailed";
                        j->dirty = true;
                        continue;
                }
                pending = true;
                if (s == DEP_READY && (json_int_t) j->running < j->parallelism)
                        inst_start(i);
        }
        return pending || j->running > 0;
}

static void wait_changed(Job *j, uint64_t usec) {
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t ns = (uint64_t) ts.tv_nsec + (usec % USEC_PER_SEC) * 1000;
        ts.tv_sec += (time_t) (usec / USEC_PER_SEC + ns / 1000000000);
        ts.tv_nsec = (long) (ns % 1000000000);
        pthread_cond_timedwait(&j->changed, &j->lock, &ts);
}

/* Runs the instances of one phase (the DAG, or the onError task) to the end. */
static void run_all(Job *j, bool on_error_phase) {
        pthread_mutex_lock(&j->lock);
        j->on_error_phase = on_error_phase;
        while (job_step(j, on_error_phase)) {
                if (j->dirty)
                        pthread_cond_signal(&j->flush_wanted);
                wait_changed(j, SERVER_POLL_USEC);
        }
        pthread_mutex_unlock(&j->lock);
}

static bool any_failed(Job *j) {
        bool failed = false;

        pthread_mutex_lock(&j->lock);
        for (size_t k = 0; k < j->n_insts; k++) {
                Inst *i = j->insts[k];
                bool allow = json_is_true(json_object_get(i->def, "allowFailure"));
                failed = failed || (!i->on_error && !allow && finished(i->phase) && !STREQ(i->phase, "Succeeded"));
        }
        pthread_mutex_unlock(&j->lock);
        return failed;
}

/* ---- making a job's instances ----------------------------------------------------------- */

/* The servers of a task: its server, those its labels match, or NULL (rprd's host). */
static json_t *task_servers(Job *j, const json_t *def) {
        const json_t *labels = json_object_get(json_object_get(def, "servers"), "matchLabels");
        const char *server = json_str_at(def, "server");

        if (labels)
                return server_names_matching(j->p->store, j->ns, labels);
        return server ? json_pack("[s]", server) : json_array();
}

static void inst_add(Job *j, size_t task_index, const char *task, const json_t *def, const char *server,
                     bool fan_out) {
        const json_t *old = json_object_get(json_object_get(json_object_get(j->obj, "status"), "tasks"),
                                            fan_out ? NULL : task);
        Inst *i = xcalloc(1, sizeof *i);

        i->job = j;
        i->task_index = task_index;
        i->task = xstrdup(task);
        i->server = server ? xstrdup(server) : NULL;
        i->key = fan_out ? xasprintf("%s@%s", task, server) : xstrdup(task);
        if (fan_out)
                old = json_object_get(json_object_get(json_object_get(j->obj, "status"), "tasks"), i->key);
        i->def = def;
        i->on_error = STREQ(json_str_at(j->spec, "onError") ?: "", task);
        i->attempt = json_int_at(old, "attempt", 1);
        i->leftover = json_str_at(old, "leftover");
        i->phase = "Pending";
        /* Resumed after a restart: what finished stays as it ended. */
        const char *was = json_str_at(old, "phase");
        static const char *const kept[] = {"Succeeded", "Failed", "Skipped", "Canceled"};
        for (size_t k = 0; was && k < ELEMENTSOF(kept); k++)
                if (STREQ(was, kept[k])) {
                        i->phase = kept[k];
                        i->has_exit_code = json_object_get(old, "exitCode") != NULL;
                        i->exit_code = (int) json_int_at(old, "exitCode", 0);
                        i->reason = "Kept";
                }
        j->insts = xrealloc(j->insts, (j->n_insts + 1) * sizeof *j->insts);
        j->insts[j->n_insts++] = i;
}

/* The graph: tasks by index, dependencies by index (apply checked that
 * they exist and make no cycle; one that does not exist blocks). */
static void graph_build(Job *j) {
        _cleanup_json_ json_t *index = json_object();
        const char *task;
        json_t *def;
        size_t t = 0;

        j->n_graph = json_object_size(j->tasks);
        j->graph = xcalloc(j->n_graph + 1, sizeof *j->graph);
        json_object_foreach((json_t *) j->tasks, task, def) json_object_set_new(index, task, json_integer((json_int_t) t++));
        t = 0;
        json_object_foreach((json_t *) j->tasks, task, def) {
                const json_t *deps = json_object_get(def, "dependsOn"), *d;
                Task *g = &j->graph[t++];
                size_t k;
                g->name = task;
                g->allow_failure = json_is_true(json_object_get(def, "allowFailure"));
                g->deps = xcalloc(json_array_size(deps) + 1, sizeof *g->deps);
                json_array_foreach(deps, k, d) {
                        const json_t *at = json_object_get(index, json_string_value(d) ?: "");
                        g->deps[g->n_deps++] = at ? (size_t) json_integer_value(at) : j->n_graph;
                }
        }
        for (size_t i = 0; i < j->n_graph; i++)
                for (size_t k = 0; k < j->graph[i].n_deps; k++)
                        if (j->graph[i].deps[k] < j->n_graph)
                                j->graph[j->graph[i].deps[k]].has_dependents = true;
}

static void insts_build(Job *j) {
        const char *task;
        json_t *def;
        size_t t = 0;

        graph_build(j);
        json_object_foreach((json_t *) j->tasks, task, def) {
                _cleanup_json_ json_t *servers = task_servers(j, def);
                bool fan_out = json_object_get(def, "servers") != NULL;
                const json_t *s;
                size_t k;
                if (json_array_size(servers) == 0 && !fan_out)
                        inst_add(j, t, task, def, NULL, false);
                json_array_foreach(servers, k, s) inst_add(j, t, task, def, json_string_value(s), fan_out);
                t++;
        }
}

static void job_free(Job *j) {
        for (size_t k = 0; k < j->n_insts; k++) {
                Inst *i = j->insts[k];
                ssh_cancel_free(i->cancel);
                free(i->task);
                free(i->server);
                free(i->key);
                free(i->message);
                free(i);
        }
        free(j->insts);
        for (size_t t = 0; t < j->n_graph; t++)
                free(j->graph[t].deps);
        free(j->graph);
        json_decref(j->written);
        json_decref(j->obj);
        pthread_cond_destroy(&j->changed);
        pthread_mutex_destroy(&j->lock);
        pthread_cond_destroy(&j->flushed_cond);
        pthread_mutex_destroy(&j->flush_lock);
        pthread_mutex_destroy(&j->ends_lock);
        pthread_cond_destroy(&j->ends_synced_cond);
        free(j->ns);
        free(j->name);
        free(j->cancel_reason);
        free(j->cancel_message);
        free(j);
}

/* ---- the job's thread -------------------------------------------------------------------- */

static Job *job_find_locked(PipelineController *p, const char *ns, const char *name) {
        for (size_t k = 0; k < p->n_jobs; k++)
                if (STREQ(p->jobs[k]->ns, ns) && STREQ(p->jobs[k]->name, name))
                        return p->jobs[k];
        return NULL;
}

bool job_busy(void *userdata, const char *ns, const char *name) {
        PipelineController *p = userdata;

        pthread_mutex_lock(&p->lock);
        bool ours = job_find_locked(p, ns, name) != NULL;
        pthread_mutex_unlock(&p->lock);
        return ours;
}

static void job_unregister(Job *j) {
        PipelineController *p = j->p;

        pthread_mutex_lock(&p->lock);
        for (size_t k = 0; k < p->n_jobs; k++)
                if (p->jobs[k] == j) {
                        p->jobs[k] = p->jobs[--p->n_jobs];
                        break;
                }
        pthread_cond_broadcast(&p->changed);
        pthread_mutex_unlock(&p->lock);
}

/* The job's outcome: phase, reason and (caller frees) message. */
static const char *outcome(Job *j, const char **ret_reason, char **ret_message) {
        if (j->canceled && !j->interrupted) {
                *ret_reason = j->cancel_reason ?: "Canceled";
                *ret_message = xstrdup(j->cancel_message ?: "canceled");
                return "Canceled";
        }
        for (size_t k = 0; k < j->n_insts; k++) {
                Inst *i = j->insts[k];
                bool allow = json_is_true(json_object_get(i->def, "allowFailure"));
                if (!i->on_error && !allow && (STREQ(i->phase, "Failed") || STREQ(i->phase, "Canceled"))) {
                        *ret_reason = "TaskFailed";
                        *ret_message = xasprintf("task %s %s%s%s", i->key, i->phase, i->message ? ": " : "",
                                                 i->message ?: "");
                        return "Failed";
                }
        }
        *ret_reason = "Completed";
        *ret_message = xasprintf("%zu tasks", j->n_insts);
        return "Succeeded";
}

static void *job_thread(void *arg) {
        Job *j = arg;
        _cleanup_free_ char *path = run_log_path(j->p->run_dir, j->ns, j->name), *message = NULL;
        const char *reason = NULL, *phase;

        if (run_log_open(path, &j->log) < 0)
                log_warning("job %s/%s: cannot open %s", j->ns, j->name, path);
        run_log_note(j->log, "job %s: %zu task instances, %lld at once", j->name, j->n_insts, (long long) j->parallelism);
        job_flusher_start(j);
        workers_start(j);
        run_all(j, false);
        if (any_failed(j) && !j->canceled) {
                run_log_note(j->log, "a task failed: the onError task runs");
                run_all(j, true);
        }
        workers_stop(j);
        job_flusher_stop(j);
        pthread_mutex_lock(&j->lock);
        phase = outcome(j, &reason, &message);
        bool interrupted = j->interrupted;
        pthread_mutex_unlock(&j->lock);
        /* Stopped with rprd: left Running, for the next rprd to resume or
         * fail, its journal with it. */
        if (interrupted) {
                job_flush(j, NULL, NULL, NULL);
                job_ends_close(j, false);
        } else {
                job_ends_close(j, job_flush(j, phase, reason, message) >= 0);
                if (j->p->activity)
                        (void) logfile_append(j->p->activity, now_usec(), "job %s/%s: %s %s: %s", j->ns, j->name, phase,
                                              reason, message);
        }
        run_log_note(j->log, "job %s", interrupted ? "stopped with rprd" : phase);
        run_log_close(j->log);
        controller_enqueue(j->p->controller, "Pipeline", j->ns, json_str_at(j->spec, "pipeline") ?: "", 0);
        job_unregister(j);
        job_free(j);
        return NULL;
}

/* Registers and starts a job that was claimed (written Running). */
static Job *job_new(PipelineController *p, json_t *obj) {
        const json_t *meta = json_object_get(obj, "metadata");
        Job *j = xcalloc(1, sizeof *j);

        j->p = p;
        j->ns = xstrdup(json_str_at(meta, "namespace"));
        j->name = xstrdup(json_str_at(meta, "name"));
        j->obj = json_incref(obj);
        j->spec = json_object_get(obj, "spec");
        j->tasks = json_object_get(j->spec, "tasks");
        j->parallelism = MAX(json_int_at(j->spec, "parallelism", 8), 1);
        pthread_mutex_init(&j->lock, NULL);
        pthread_cond_init(&j->changed, NULL);
        pthread_mutex_init(&j->flush_lock, NULL);
        pthread_cond_init(&j->flushed_cond, NULL);
        pthread_mutex_init(&j->ends_lock, NULL);
        pthread_cond_init(&j->ends_synced_cond, NULL);
        j->ends_fd = -1;
        insts_build(j);
        return j;
}

/* ---- the Run controller's delegate -------------------------------------------------------- */

int job_reconcile(void *userdata, json_t *obj, uint64_t *ret_requeue_after_usec) {
        PipelineController *p = userdata;
        const json_t *meta = json_object_get(obj, "metadata"), *spec = json_object_get(obj, "spec");
        const char *ns = json_str_at(meta, "namespace"), *name = json_str_at(meta, "name");
        const char *phase = json_str_at(json_object_get(obj, "status"), "phase") ?: "Queued";
        pthread_attr_t attr;
        pthread_t t;

        if (run_phase_finished(phase) || STREQ(phase, "Queued")) {
                /* A slot may be free, or the queue wants looking at. */
                controller_enqueue(p->controller, "Pipeline", ns, json_str_at(spec, "pipeline") ?: "", 0);
                return 0;
        }
        pthread_mutex_lock(&p->lock);
        bool ours = job_find_locked(p, ns, name) != NULL, draining = p->draining;
        pthread_mutex_unlock(&p->lock);
        if (ours)
                return 0;
        if (STREQ(phase, "Running")) {
                int k = job_recover(p, obj, ret_requeue_after_usec);
                return k == -ENOENT ? 0 : k;
        }
        if (draining)
                return 0;

        /* Pending: claim it. */
        Job *j = job_new(p, obj);
        pthread_mutex_lock(&p->lock);
        p->jobs = xrealloc(p->jobs, (p->n_jobs + 1) * sizeof *p->jobs);
        p->jobs[p->n_jobs++] = j;
        pthread_mutex_unlock(&p->lock);
        bool claimed = false;
        int r = job_set_phase(p, ns, name, "Pending", "Running", "Started", NULL, &claimed);
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        if (!claimed || pthread_create(&t, &attr, job_thread, j) != 0) {
                job_unregister(j);
                job_free(j);
                if (claimed)
                        (void) job_set_phase(p, ns, name, "Running", "Failed", "ThreadFailed", NULL, NULL);
        }
        pthread_attr_destroy(&attr);
        return r == -ENOENT ? 0 : r;
}

int job_cancel(void *userdata, const json_t *obj, const char *reason, const char *message) {
        PipelineController *p = userdata;
        const json_t *meta = json_object_get(obj, "metadata");
        const char *ns = json_str_at(meta, "namespace"), *name = json_str_at(meta, "name");

        pthread_mutex_lock(&p->lock);
        Job *j = job_find_locked(p, ns, name);
        if (j) {
                pthread_mutex_lock(&j->lock);
                if (!j->canceled) {
                        j->canceled = true;
                        j->cancel_reason = xstrdup(reason);
                        j->cancel_message = message ? xstrdup(message) : NULL;
                }
                for (size_t k = 0; k < j->n_insts; k++)
                        if (j->insts[k]->cancel && STREQ(j->insts[k]->phase, "Running"))
                                ssh_cancel_fire(j->insts[k]->cancel);
                for (size_t k = 0; k < j->n_insts; k++)
                        if (j->insts[k]->cancel && STREQ(j->insts[k]->phase, "Waiting"))
                                ssh_cancel_fire(j->insts[k]->cancel);
                pthread_cond_broadcast(&j->changed);
                pthread_mutex_unlock(&j->lock);
        }
        pthread_mutex_unlock(&p->lock);
        if (j)
                return 0;
        const char *phase = json_str_at(json_object_get(obj, "status"), "phase") ?: "Queued";
        _cleanup_json_ json_t *now = NULL;
        uint64_t later = 0;
        if (STREQ(phase, "Running")) {
                /* Left Running by an rprd that died: what is left of its
                 * tasks goes first. */
                if (job_recover(p, obj, &later) < 0 || later > 0)
                        return -EBUSY;
                if (store_get_json(p->store, "Run", ns, name, &now) < 0)
                        return -ENOENT;
                phase = json_str_at(json_object_get(now, "status"), "phase") ?: "Queued";
        }
        if (run_phase_finished(phase))
                return -EALREADY;
        bool applied = false;
        int r = job_set_phase(p, ns, name, phase, "Canceled", reason, message, &applied);
        return r < 0 ? r : applied ? 0 : -EBUSY;
}

/* ---- life cycle ------------------------------------------------------------------------------ */

size_t pipeline_controller_running(PipelineController *p) {
        pthread_mutex_lock(&p->lock);
        size_t n = p->n_jobs;
        pthread_mutex_unlock(&p->lock);
        return n;
}

void pipeline_controller_drain(PipelineController *p, uint64_t grace_usec) {
        struct timespec ts;

        pthread_mutex_lock(&p->lock);
        p->draining = true;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += (time_t) (grace_usec / USEC_PER_SEC);
        uint64_t deadline = now_mono_usec() + grace_usec;
        while (p->n_jobs > 0 && now_mono_usec() < deadline)
                pthread_cond_timedwait(&p->changed, &p->lock, &ts);
        for (size_t k = 0; k < p->n_jobs; k++) {
                Job *j = p->jobs[k];
                pthread_mutex_lock(&j->lock);
                j->canceled = j->interrupted = true;
                for (size_t m = 0; m < j->n_insts; m++)
                        if (j->insts[m]->cancel)
                                ssh_cancel_fire(j->insts[m]->cancel);
                pthread_cond_broadcast(&j->changed);
                pthread_mutex_unlock(&j->lock);
        }
        while (p->n_jobs > 0)
                pthread_cond_wait(&p->changed, &p->lock);
        pthread_mutex_unlock(&p->lock);
}
