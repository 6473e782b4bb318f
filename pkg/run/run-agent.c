/* run-agent: a Run on a Server of transport agent, without a thread.
 *
 * The command goes to pkg/agent as a job (the spec's env and the RPR_
 * variables with it, the workdir as a cd in front) and this returns; the
 * output arrives on the API's loop through the job's sink and goes to the
 * Run's file, and the end is handed to a one-thread queue that writes the
 * outcome (a store write must not block the loop). A cancel cancels the job
 * on the agent; at shutdown the job is interrupted at once, since no agent
 * will report any more. stdout and stderr are apart (one stream for an
 * agent older than that). */
#include <stdio.h>
#include <string.h>

#include "agent/agent.h"
#include "controller/controller.h"
#include "run/run-private.h"
#include "store/store.h"

typedef struct AgentRun {
        RunController *rc;
        Active *a;
        json_t *obj;
        RunSpec sp;
        RunLog *log;
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

/* The command, in the workdir when there is one ('...' quoted). */
static char *command_of(const RunSpec *sp) {
        Buf b = BUF_INIT;

        if (sp->workdir) {
                _cleanup_free_ char *dir = ssh_shell_quote(sp->workdir);
                buf_printf(&b, "cd %s || exit 1\n", dir);
        }
        buf_puts(&b, sp->command ?: "");
        return buf_steal(&b);
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

static int on_output(void *userdata, AgentStream stream, const char *data, size_t n) {
        AgentRun *x = userdata;

        run_log_write(x->log, stream == AGENT_STDERR ? RUN_LOG_ERR : RUN_LOG_OUT, data, n, now_usec());
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
        _cleanup_json_ json_t *srv = NULL;

        if (!rc->agents || !sp->server || store_get_json(rc->store, "Server", sp->ns, sp->server, &srv) < 0)
                return false;
        const char *t = json_str_at(json_object_get(srv, "spec"), "transport");
        return t && STREQ(t, "agent");
}

int run_agent_start(RunController *rc, Active *a, json_t *obj) {
        AgentRun *x = xcalloc(1, sizeof *x);
        char id[AGENT_JOB_ID_LEN + 1];
        int r;

        x->rc = rc;
        x->a = a;
        x->obj = json_incref(obj);
        run_spec_read(x->obj, &x->sp);
        _cleanup_free_ char *path = run_log_path(rc->dir, x->sp.ns, x->sp.name);
        r = run_log_open(path, &x->log);
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
                return 0;
        }
        run_log_note(x->log,
                     "run %s (attempt %" JSON_INTEGER_FORMAT
                     ") on server %s through its agent: %s %.12s (%s)",
                     x->sp.name, x->sp.attempt, x->sp.server, x->sp.repo ?: "commit", x->sp.commit ?: "-",
                     x->sp.triggered_by ?: "manual");

        _cleanup_json_ json_t *env = run_env(&x->sp);
        _cleanup_free_ char *command = command_of(&x->sp);
        AgentJobSpec spec = {.command = command,
                             .env = env,
                             .timeout_usec = x->sp.timeout_usec,
                             .wait_usec = x->sp.wait_timeout_usec};
        AgentJobSink sink = {.output = on_output, .done = on_done, .userdata = x};
        pthread_mutex_lock(&rc->lock);
        x->starting = true;
        pthread_mutex_unlock(&rc->lock);
        r = agent_job_submit(rc->agents, x->sp.ns, x->sp.server, &spec, &sink, id);
        if (r < 0) {
                x->result = (AgentJobResult){
                        .state = AGENT_JOB_FAILED, .exit_code = -1, .reason = "AgentFailed"};
                snprintf(x->result.message, sizeof x->result.message, "cannot queue the job: %s",
                         strerror(-r));
                finish_work(x);
                return 0;
        }
        pthread_mutex_lock(&rc->lock);
        x->starting = false;
        bool early = x->ended_early;
        if (!early)
                memcpy(a->agent_job, id, sizeof id);
        bool canceled = !early && ssh_cancel_fired(a->cancel);
        pthread_mutex_unlock(&rc->lock);
        if (early)
                finish_submit(x);
        else if (canceled)
                agent_job_cancel(rc->agents, id);
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
