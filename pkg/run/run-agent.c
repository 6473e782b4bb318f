/* run-agent: a Run on a Server of transport agent, without a thread.
 *
 * The command goes to its agent as a job (server_agent_submit: the spec's
 * env and the RPR_ variables exported, a cd to the workdir in front, as
 * over ssh) and this returns; the output arrives on the API's loop through
 * the job's sink and goes to the Run's file, and the end is handed to a
 * one-thread queue that writes the outcome (a store write must not block
 * the loop). A cancel cancels the job
 * on the agent; at shutdown the job is interrupted at once, since no agent
 * will report any more.
 *
 * The job's id is kept with the Run (status.agentJob). An rprd that starts
 * and finds the Run left Running takes the job back (run_agent_adopt):
 * when the agent lists it again it sends all of its output again, and the
 * lines the output file already holds are skipped, so the file ends whole
 * and once (a line longer than RUN_LOG_LINE_MAX may be cut elsewhere than
 * the first time). stdout and stderr are apart (one stream for an
 * agent older than that). */
#include <stdio.h>
#include <string.h>

#include "agent/agent.h"
#include "controller/controller.h"
#include "run/run-private.h"
#include "server/server.h"
#include "store/store.h"

typedef struct AgentRun {
        RunController *rc;
        Active *a;
        json_t *obj;
        RunSpec sp;
        RunLog *log;
        /* Taken back after a restart: per stream, the lines the output file
         * holds already (skipped as they come again), and the length of the
         * line being skipped. */
        uint64_t skip[2];
        size_t skip_len[2];
        AgentJobResult result;
        /* Under rc->lock: its end came while run_agent_start was still
         * handing the job over; the end is then written from there. */
        bool starting, ended_early;
} AgentRun;

static void agent_run_free(AgentRun *x) {
        run_log_close(x->log);
        json_decref(x->obj);
        free(x);
}

/* ---- the end, on the queue's thread ----------------------------------------------------- */

static void finish_work(void *userdata) {
        AgentRun *x = userdata;
        const AgentJobResult *r = &x->result;
        RunUpdate u = {.expect_phase = "Running", .set = json_object()};
        _cleanup_free_ char *message = NULL;
        bool interrupted = x->a->interrupted;

        if (r->state == AGENT_JOB_CANCELED ||
            (ssh_cancel_fired(x->a->cancel) && r->state != AGENT_JOB_SUCCEEDED)) {
                u.phase = interrupted ? "Interrupted" : "Canceled";
                u.reason = interrupted ? "RprdStopped" : x->a->cancel_reason ?: "Canceled";
                message = xstrdup(interrupted ? "rprd was stopped while the command ran; it was canceled"
                                              : x->a->cancel_message ?: "canceled; the command was stopped");
        } else if (r->state == AGENT_JOB_SUCCEEDED) {
                u.phase = "Succeeded", u.reason = "ExitCode";
                message = xstrdup("the command exited with 0");
        } else if (r->state == AGENT_JOB_FAILED && r->signal[0] && x->sp.timeout_usec > 0 &&
                   r->duration_usec >= x->sp.timeout_usec) {
                /* The agent enforces spec.timeout by the signal. */
                char d[32];
                u.phase = "Failed", u.reason = "Timeout";
                message = xasprintf("the command ran longer than %s (spec.timeout) and was killed",
                                    duration_format(x->sp.timeout_usec, d, sizeof d));
        } else if (r->state == AGENT_JOB_FAILED && r->signal[0]) {
                u.phase = "Failed", u.reason = "Signal";
                message = xasprintf("the command was killed by SIG%s", r->signal);
        } else if (r->state == AGENT_JOB_FAILED && r->exit_code >= 0 && !*r->reason) {
                u.phase = "Failed", u.reason = "ExitCode";
                message = xasprintf("the command exited with %d", r->exit_code);
        } else {
                u.phase = r->state == AGENT_JOB_INTERRUPTED ? "Interrupted" : "Failed";
                u.reason = *r->reason ? r->reason : "AgentFailed";
                message = xstrdup(r->message);
        }
        u.message = message;
        json_object_set_new(u.set, "durationSeconds", json_real((double) r->duration_usec / USEC_PER_SEC));
        if (!r->signal[0] && r->exit_code >= 0)
                json_object_set_new(u.set, "exitCode", json_integer(r->exit_code));
        if (r->signal[0])
                json_object_set_new(u.set, "signal", json_string(r->signal));
        run_log_note(x->log, "%s: %s: %s (%.3f s)", u.phase, u.reason, message,
                     (double) r->duration_usec / USEC_PER_SEC);
        run_log_close(TAKE_PTR(x->log));
        int k = run_update(x->rc, x->sp.ns, x->sp.name, &u);
        if (k < 0)
                log_error("run %s/%s: cannot write its outcome (%s): %s", x->sp.ns, x->sp.name, u.phase,
                          strerror(-k));
        run_active_remove(x->rc, x->a);
        agent_run_free(x);
}

/* ---- the sink, on the API's loop ---------------------------------------------------------- */

/* How many bytes at the start of data belong to lines the output file
 * holds already; cut as run-log.c cuts them. */
static size_t skipped(AgentRun *x, int s, const char *data, size_t n) {
        size_t i = 0;

        while (i < n && x->skip[s] > 0) {
                x->skip_len[s]++;
                if (data[i++] == '\n' || x->skip_len[s] >= RUN_LOG_LINE_MAX) {
                        x->skip[s]--;
                        x->skip_len[s] = 0;
                }
        }
        return i;
}

static int on_output(void *userdata, AgentStream stream, const char *data, size_t n) {
        AgentRun *x = userdata;
        int s = stream == AGENT_STDERR ? RUN_LOG_ERR : RUN_LOG_OUT;
        size_t k = skipped(x, s, data, n);

        if (k < n)
                run_log_write(x->log, (RunLogStream) s, data + k, n - k, now_usec());
        return 0;
}

static void finish_submit(AgentRun *x) {
        if (workq_submit(x->rc->agent_finish, finish_work, x) < 0)
                finish_work(x);
}

static void on_done(void *userdata, const AgentJobResult *r) {
        AgentRun *x = userdata;

        x->result = *r;
        pthread_mutex_lock(&x->rc->lock);
        x->a->agent_job[0] = '\0';
        bool early = x->starting;
        x->ended_early = early;
        pthread_mutex_unlock(&x->rc->lock);
        if (!early)
                finish_submit(x);
}

/* ---- start and cancel ------------------------------------------------------------------------ */

bool run_uses_agent(RunController *rc, const RunSpec *sp) {
        return rc->agents && server_uses_agent(rc->store, sp->ns, sp->server);
}

/* The Run's state for its agent job, its output file open; NULL (the Run
 * written Failed, a removed) when the file cannot be opened. */
static AgentRun *agent_run_new(RunController *rc, Active *a, const json_t *obj) {
        AgentRun *x = xcalloc(1, sizeof *x);

        x->rc = rc;
        x->a = a;
        x->obj = json_incref((json_t *) obj);
        run_spec_read(x->obj, &x->sp);
        _cleanup_free_ char *path = run_log_path(rc->dir, x->sp.ns, x->sp.name);
        int r = run_output_open(rc->dir, x->sp.ns, x->sp.name, &x->log);
        if (r < 0) {
                _cleanup_free_ char *msg =
                        xasprintf("cannot open the output file %s: %s", path, strerror(-r));
                RunUpdate u = {.expect_phase = "Running",
                               .phase = "Failed",
                               .reason = "OutputUnwritable",
                               .message = msg};
                (void) run_update(rc, x->sp.ns, x->sp.name, &u);
                run_active_remove(rc, a);
                agent_run_free(x);
                return NULL;
        }
        return x;
}

/* Hands the job over: go() submits or adopts it (its end may come before
 * go returns), then the Active holds its id. */
static int hand_over(AgentRun *x, int (*go)(AgentRun *x, char id[static AGENT_JOB_ID_LEN + 1])) {
        RunController *rc = x->rc;
        char id[AGENT_JOB_ID_LEN + 1];

        pthread_mutex_lock(&rc->lock);
        x->starting = true;
        pthread_mutex_unlock(&rc->lock);
        int r = go(x, id);
        if (r < 0)
                return r;
        pthread_mutex_lock(&rc->lock);
        x->starting = false;
        bool early = x->ended_early;
        if (!early)
                memcpy(x->a->agent_job, id, sizeof id);
        bool canceled = !early && ssh_cancel_fired(x->a->cancel);
        pthread_mutex_unlock(&rc->lock);
        if (early)
                finish_submit(x);
        else if (canceled)
                agent_job_cancel(rc->agents, id);
        return 0;
}

static int submit(AgentRun *x, char id[static AGENT_JOB_ID_LEN + 1]) {
        _cleanup_json_ json_t *vars = run_env(&x->sp);
        SshEnv env = {0};

        /* The command as run-exec.c gives it to ssh_run(). */
        ssh_env_add_all(&env, vars);
        SshCommand cmd = {.script = x->sp.command ?: "",
                          .env = (const char *const *) env.v,
                          .workdir = x->sp.workdir,
                          .timeout_usec = x->sp.timeout_usec};
        AgentJobSink sink = {.output = on_output, .done = on_done, .userdata = x};
        int r = server_agent_submit(x->rc->agents, x->sp.ns, x->sp.server, &cmd, x->sp.wait_timeout_usec,
                                    &sink, id);
        ssh_env_clear(&env);
        if (r < 0)
                return r;
        /* Durable with the Run: a later rprd takes the job back. */
        RunUpdate u = {.expect_phase = "Running",
                       .phase = "Running",
                       .reason = "Started",
                       .set = json_pack("{s:s}", "agentJob", id)};
        r = run_update(x->rc, x->sp.ns, x->sp.name, &u);
        if (r < 0)
                log_warning("run %s/%s: cannot record its agent job %s: %s", x->sp.ns, x->sp.name, id,
                            strerror(-r));
        return 0;
}

int run_agent_start(RunController *rc, Active *a, json_t *obj) {
        AgentRun *x = agent_run_new(rc, a, obj);

        if (!x)
                return 0;
        run_log_note(x->log,
                     "run %s (attempt %" JSON_INTEGER_FORMAT
                     ") on server %s through its agent: %s %.12s (%s)",
                     x->sp.name, x->sp.attempt, x->sp.server, x->sp.repo ?: "commit", x->sp.commit ?: "-",
                     x->sp.triggered_by ?: "manual");
        int r = hand_over(x, submit);
        if (r < 0) {
                x->result = (AgentJobResult){
                        .state = AGENT_JOB_FAILED, .exit_code = -1, .reason = "AgentFailed"};
                snprintf(x->result.message, sizeof x->result.message, "cannot queue the job: %s",
                         strerror(-r));
                finish_work(x);
        }
        return 0;
}

/* ---- taken back after a restart ------------------------------------------------------------ */

/* How long a job taken back waits for its agent: a lease of the longest
 * poll window, and the agent's backoff after losing rprd (up to 60 s). */
#define ADOPT_WAIT_USEC ((2 * AGENT_POLL_DEFAULT_SEC + 10) * USEC_PER_SEC)

static const char *adopted_id(const json_t *obj) {
        return json_str_at(json_object_get(obj, "status"), "agentJob");
}

static int adopt(AgentRun *x, char id[static AGENT_JOB_ID_LEN + 1]) {
        AgentJobSink sink = {.output = on_output, .done = on_done, .userdata = x};
        const char *job = adopted_id(x->obj);
        int r = agent_job_adopt(x->rc->agents, x->sp.ns, x->sp.server, job, ADOPT_WAIT_USEC, &sink);

        if (r >= 0)
                snprintf(id, AGENT_JOB_ID_LEN + 1, "%s", job);
        return r;
}

int run_agent_adopt(RunController *rc, const json_t *obj) {
        _cleanup_free_ char *path = NULL;
        uint64_t lines[2] = {0, 0};
        char wait[32];
        RunSpec sp;

        run_spec_read(obj, &sp);
        if (!rc->agents || !adopted_id(obj) || !agents_serving(rc->agents) || !run_uses_agent(rc, &sp))
                return -ENOENT;
        Active *a = run_active_add(rc, sp.ns, sp.name);
        if (!a)
                return 0; /* draining, or already taken back */
        path = run_log_path(rc->dir, sp.ns, sp.name);
        (void) run_log_count_lines(path, lines);
        AgentRun *x = agent_run_new(rc, a, obj);
        if (!x)
                return 0;
        memcpy(x->skip, lines, sizeof lines);
        _cleanup_free_ char *msg =
                xasprintf("rprd restarted while the command ran; waiting up to %s for the agent of %s to "
                          "report job %s again",
                          duration_format(ADOPT_WAIT_USEC, wait, sizeof wait), sp.server, adopted_id(obj));
        run_log_note(x->log, "%s; its output goes on after the %llu lines of stdout and %llu of stderr here",
                     msg, (unsigned long long) lines[0], (unsigned long long) lines[1]);
        RunUpdate u = {.expect_phase = "Running", .phase = "Running", .reason = "Resuming", .message = msg};
        (void) run_update(rc, sp.ns, sp.name, &u);
        if (hand_over(x, adopt) < 0) {
                run_active_remove(rc, a);
                agent_run_free(x);
                return -ENOENT;
        }
        return 0;
}

void run_agent_cancel(RunController *rc, const char *id) {
        if (rc->agents && id && *id)
                agent_job_cancel(rc->agents, id);
}

void run_agent_interrupt_all(RunController *rc) {
        if (!rc->agents)
                return;
        for (;;) {
                char id[AGENT_JOB_ID_LEN + 1] = "";
                pthread_mutex_lock(&rc->lock);
                for (size_t i = 0; i < rc->n_active && !*id; i++)
                        if (rc->active[i]->agent_job[0]) {
                                memcpy(id, rc->active[i]->agent_job, sizeof id);
                                rc->active[i]->agent_job[0] = '\0';
                        }
                pthread_mutex_unlock(&rc->lock);
                if (!*id)
                        return;
                agent_job_interrupt(rc->agents, id, "rprd stopped while the command ran on the agent");
        }
}
