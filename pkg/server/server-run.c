/* server-run: a command on a Server of transport agent, for the callers
 * that run commands through ssh_run() and ssh_reap() (pipeline tasks,
 * Runners): the one adapter from "run this on that Server and tell me how
 * it ended" to an agent job, so that those callers need not know agents.
 *
 * The command (exports, cd, script: ssh_script_build) is queued for the
 * agent with the caller's stdin and timeout; the caller's thread waits on
 * a condition variable until the job's sink reports its end. Output comes
 * from the protocol's thread (h2o's loop) into a bounded buffer and is
 * handed to cmd->output on the caller's thread, as ssh_run() does: a
 * buffer that is full refuses a chunk for now and the agent sends it again,
 * so a slow caller slows the agent and never grows rprd's memory.
 *
 * Why the caller's thread waits rather than a completion callback: these
 * callers are already a bounded pool of worker threads that wait for ssh
 * commands (a pipeline job's `parallelism` workers, the Runner pass);
 * no thread is made for an agent or for a job. Runs and rprctl exec, which
 * hold no thread, call the async entry below it, server_agent_submit(),
 * with their own sinks (run-agent.c, api-exec.c): one way for all three
 * from an SshCommand to an agent job.
 *
 * A cancel (cmd->cancel) cancels the job on the agent, which stops it and
 * reports its end. Once rprd stops serving agents (agents_stop) nothing
 * will report any more: a canceled job, or one whose caller cannot be
 * canceled, is then interrupted at once. */
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "agent/agent.h"
#include "server/server-private.h"
#include "store/store.h"

#define CALL_OUTPUT_MAX (1024u * 1024)
#define CALL_WAKE_USEC (200 * 1000)

typedef struct AgentCall {
        pthread_mutex_t lock;
        pthread_cond_t changed;
        Buf out[AGENT_STREAMS]; /* output not yet handed to the caller: stdout, stderr */
        bool done;
        AgentJobResult result;
} AgentCall;

/* ---- the sink, on the protocol's thread ------------------------------------------------------ */

static int on_output(void *userdata, AgentStream stream, const char *data, size_t n) {
        AgentCall *c = userdata;
        int r = 0;

        pthread_mutex_lock(&c->lock);
        if (c->out[AGENT_STDOUT].len + c->out[AGENT_STDERR].len + n > CALL_OUTPUT_MAX)
                r = -EAGAIN; /* the caller is behind: the agent sends it again */
        else
                r = buf_append(&c->out[stream], data, n);
        pthread_cond_signal(&c->changed);
        pthread_mutex_unlock(&c->lock);
        return r;
}

static void on_done(void *userdata, const AgentJobResult *r) {
        AgentCall *c = userdata;

        pthread_mutex_lock(&c->lock);
        c->result = *r;
        c->done = true;
        pthread_cond_signal(&c->changed);
        pthread_mutex_unlock(&c->lock);
}

/* ---- the caller's thread ------------------------------------------------------------------------- */

static void wait_a_little(AgentCall *c) {
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t ns = (uint64_t) ts.tv_nsec + CALL_WAKE_USEC * 1000;
        ts.tv_sec += (time_t) (ns / 1000000000);
        ts.tv_nsec = (long) (ns % 1000000000);
        pthread_cond_timedwait(&c->changed, &c->lock, &ts);
}

/* Waits for the job's end, handing its output to cmd->output meanwhile. */
static void call_wait(Agents *agents, AgentCall *c, const char *id, const SshCommand *cmd) {
        bool canceled = false, interrupted = false;

        pthread_mutex_lock(&c->lock);
        for (;;) {
                int s = c->out[AGENT_STDOUT].len > 0 ? AGENT_STDOUT : AGENT_STDERR;
                if (c->out[s].len > 0) {
                        Buf chunk = c->out[s];
                        c->out[s] = (Buf){0};
                        pthread_mutex_unlock(&c->lock);
                        SshStream stream = s == AGENT_STDERR ? SSH_STDERR : SSH_STDOUT;
                        bool stop =
                                cmd->output && cmd->output(cmd->userdata, stream, chunk.data, chunk.len) < 0;
                        buf_free(&chunk);
                        if (stop && !canceled) {
                                canceled = true;
                                agent_job_cancel(agents, id);
                        }
                        pthread_mutex_lock(&c->lock);
                        continue;
                }
                if (c->done)
                        break;
                bool fired = cmd->cancel && ssh_cancel_fired(cmd->cancel);
                if (fired && !canceled) {
                        canceled = true;
                        pthread_mutex_unlock(&c->lock);
                        agent_job_cancel(agents, id);
                        pthread_mutex_lock(&c->lock);
                        continue;
                }
                /* rprd is stopping: no agent reports any more. A caller that
                 * can be canceled is, first (it says how the task ends). */
                if ((fired || !cmd->cancel) && !interrupted && !agents_serving(agents)) {
                        interrupted = true;
                        pthread_mutex_unlock(&c->lock);
                        agent_job_interrupt(agents, id, "rprd stopped while the command ran on the agent");
                        pthread_mutex_lock(&c->lock);
                        continue;
                }
                wait_a_little(c);
        }
        pthread_mutex_unlock(&c->lock);
}

static int fail(SshResult *res, SshFailure f, int error, const char *message) {
        res->failure = f;
        snprintf(res->message, sizeof res->message, "%s", message);
        return -error;
}

/* Whether the agent of ns/name polls, or may soon: one not heard from
 * since rprd started may be coming back from its backoff, and its job
 * waits (up to the command's timeout). An agent seen offline has been
 * silent for three poll windows already: the command fails at once, as
 * for a host that cannot be reached, rather than hold the caller (a
 * Runner pass looks at its hosts one after another). */
static bool agent_reachable(Agents *agents, const char *ns, const char *name) {
        AgentPresence p;

        agent_presence(agents, ns, name, &p);
        json_decref(p.metrics);
        return p.online || !p.last_seen_usec;
}

/* The job's end as ssh_run() says it. */
static int result_of(const AgentJobResult *r, const SshCommand *cmd, SshResult *res) {
        res->duration_usec = r->duration_usec;
        res->exit_code = r->exit_code;
        snprintf(res->signal, sizeof res->signal, "%s", r->signal);
        switch (r->state) {
        case AGENT_JOB_SUCCEEDED:
        case AGENT_JOB_FAILED:
                if (*r->reason)
                        return fail(res, SSH_FAIL_EXEC, EBADMSG, r->message); /* OutputCorrupt */
                if (r->signal[0] && cmd->timeout_usec && r->duration_usec >= cmd->timeout_usec) {
                        char d[32];
                        snprintf(res->message, sizeof res->message,
                                 "the command ran longer than %s and was killed",
                                 duration_format(cmd->timeout_usec, d, sizeof d));
                        res->failure = SSH_FAIL_TIMEOUT;
                        return -ETIME;
                }
                res->failure = SSH_OK;
                res->logged_in = true;
                return 0;
        case AGENT_JOB_CANCELED:
                return fail(res, SSH_FAIL_CANCELED, ECANCELED, "canceled; the agent stopped the command");
        case AGENT_JOB_INTERRUPTED:
                /* Never "logged in": nothing is left to look for over ssh. */
                return fail(res, SSH_FAIL_DISCONNECTED, ECONNRESET, r->message);
        case AGENT_JOB_EXPIRED:
                return fail(res, SSH_FAIL_TIMEOUT, ETIME, r->message);
        }
        return fail(res, SSH_FAIL_EXEC, EIO, r->message);
}

bool server_uses_agent(Store *store, const char *ns, const char *name) {
        _cleanup_json_ json_t *obj = NULL;

        return name && store_get_json(store, "Server", ns, name, &obj) >= 0 && server_is_agent(obj);
}

static int submit(Agents *agents, const char *ns, const char *name, const SshCommand *cmd, uint64_t wait_usec,
                  bool online_only, const AgentJobSink *sink, char ret_id[static AGENT_JOB_ID_LEN + 1]) {
        _cleanup_free_ char *script = NULL;
        int r;

        if (!agents)
                return -ESHUTDOWN;
        if (cmd->input && cmd->input_len > AGENT_INPUT_FILE_MAX)
                return -EFBIG;
        r = ssh_script_build(cmd, &script);
        if (r < 0)
                return r;
        AgentJobSpec spec = {.command = script,
                             .timeout_usec = cmd->timeout_usec,
                             .wait_usec = wait_usec,
                             .online_only = online_only,
                             .input = cmd->input,
                             .input_len = cmd->input ? cmd->input_len : 0};
        return agent_job_submit(agents, ns, name, &spec, sink, ret_id);
}

int server_agent_submit(Agents *agents, const char *ns, const char *name, const SshCommand *cmd,
                        uint64_t wait_usec, const AgentJobSink *sink,
                        char ret_id[static AGENT_JOB_ID_LEN + 1]) {
        return submit(agents, ns, name, cmd, wait_usec, false, sink, ret_id);
}

/* Why server_agent_submit() refused, as ssh_run() says it. */
static int submit_failed(int r, const SshCommand *cmd, SshResult *res) {
        char text[160];

        if (r == -ESHUTDOWN)
                return fail(res, SSH_FAIL_EXEC, ESHUTDOWN, "this rprd serves no agents");
        if (r == -EINVAL)
                return fail(res, SSH_FAIL_EXEC, EINVAL, "invalid environment variable");
        if (r == -EFBIG) {
                snprintf(text, sizeof text, "%zu bytes of input are more than an agent job takes (%llu)",
                         cmd->input_len, (unsigned long long) AGENT_INPUT_FILE_MAX);
                return fail(res, SSH_FAIL_EXEC, EFBIG, text);
        }
        return fail(res, SSH_FAIL_EXEC, -r, "cannot queue the command for the agent");
}

int server_agent_run(void *userdata, const SshCommand *cmd, SshResult *res) {
        const ServerTarget *t = userdata;
        Agents *agents = server_target_controller(t)->agents;
        const char *ns, *name = server_target_name(t, &ns);
        char id[AGENT_JOB_ID_LEN + 1];
        int r;

        *res = (SshResult){.exit_code = -1};
        if (agents && !agent_reachable(agents, ns, name)) {
                snprintf(res->message, sizeof res->message,
                         "the agent of server %s does not poll (is rpr-agent running there?)", name);
                res->failure = SSH_FAIL_TIMEOUT;
                return -ETIMEDOUT;
        }

        AgentCall c = {0};
        pthread_mutex_init(&c.lock, NULL);
        pthread_cond_init(&c.changed, NULL);
        /* The timeout bounds the wait for a busy agent too; an agent that
         * goes offline before it took the command fails it at once, as a
         * host that is down does over ssh. While rprd stops (agents_stop)
         * the job is queued all the same: call_wait ends it as the
         * caller's cancel says (or at once). */
        AgentJobSink sink = {.output = on_output, .done = on_done, .userdata = &c};
        r = submit(agents, ns, name, cmd, cmd->timeout_usec, true, &sink, id);
        if (r < 0)
                (void) submit_failed(r, cmd, res);
        else {
                call_wait(agents, &c, id, cmd);
                r = result_of(&c.result, cmd, res);
        }
        buf_free(&c.out[AGENT_STDOUT]);
        buf_free(&c.out[AGENT_STDERR]);
        pthread_cond_destroy(&c.changed);
        pthread_mutex_destroy(&c.lock);
        return r;
}
