/* server: the Server kind's controller.
 *
 * Checks every Server that is active: on apply (a new generation), every
 * spec.check.interval, and on demand. A check logs in and runs one command
 * that prints uptime, load, memory and root-disk use; on failure it is
 * tried spec.check.retries more times, retryInterval apart, and only then
 * is the Server Unreachable (and re-checked every retryInterval, so that it
 * is seen back soon). Status: phase Reachable|Unreachable|Inactive,
 * lastCheckTime, lastLoginTime, metrics, hostKey (the key seen), and a
 * Reachable condition whose reason names the cause. Every attempt is a line
 * in the connectivity log. A Server that becomes Reachable wakes whoever
 * waits for it. */
#pragma once

#include "agent/agent.h"
#include "base/base.h"
#include "ssh/ssh.h"

typedef struct Store Store;
typedef struct Controller Controller;
typedef struct LogFile LogFile;
typedef struct ServerController ServerController;

typedef struct ServerOptions {
        Store *store;
        Controller *controller; /* the Server kind is registered on it */
        SshPool *ssh;
        LogFile *connectivity; /* may be NULL */
        Agents *agents;        /* transport agent: presence and metrics; may be NULL */
} ServerOptions;

int server_controller_new(const ServerOptions *o, ServerController **ret);
void server_controller_free(ServerController *s); /* NULL-safe */

/* Called (on a worker thread) when a Server's phase becomes Reachable. */
typedef void (*ServerReachableFn)(void *userdata, const char *ns, const char *name);
void server_on_reachable(ServerController *s, ServerReachableFn fn, void *userdata);

/* The names of the Servers of namespace ns whose labels include every one
 * of match_labels (an object of strings), sorted; a new array. */
json_t *server_names_matching(Store *store, const char *ns, const json_t *match_labels);

/* Check ns/name soon, due or not (a Run could not reach it): queued,
 * returns at once. Thread-safe. */
void server_check_soon(ServerController *s, const char *ns, const char *name);

/* The Server's target for ssh_run(), from the stored object: keyRef read
 * from its Token, a host key accepted earlier (status.hostKey) pinned.
 * -ENOENT if the Server is absent; -EINVAL when it cannot be used, with
 * *ret_reason (optional; static: "Inactive", "MissingKey", "KeyUnusable",
 * "ExecFailed") and *ret_error (optional; caller frees) saying why. Free
 * with server_target_free(). */
typedef struct ServerTarget ServerTarget;
int server_target_get(ServerController *s, const char *ns, const char *name, ServerTarget **ret,
                      const char **ret_reason, char **ret_error);
const SshTarget *server_target(const ServerTarget *t);
void server_target_free(ServerTarget *t); /* NULL-safe */
/* Whether the Server is of transport agent. Its target's commands, given
 * to ssh_run() or ssh_reap() like any others, go to its agent as jobs
 * (server-run.c): the caller's thread waits for the end, output comes to
 * cmd->output on that thread, cmd->input reaches the command's stdin,
 * cmd->track is the agent's business (it finds its jobs again itself).
 * A busy agent gets the command when a slot is free, within the command's
 * timeout (none: until canceled); an agent seen offline fails it at once,
 * and one that goes offline before it took the command fails it then
 * (SSH_FAIL_TIMEOUT), as a host that is down. */
bool server_target_is_agent(const ServerTarget *t);

/* Whether ns/name is a Server of transport agent (false when it is absent
 * or unreadable), from the stored object. */
bool server_uses_agent(Store *store, const char *ns, const char *name);

/* The one way a command becomes a job of the agent of Server ns/name, for
 * the callers that hold no thread while it runs (Runs, rprctl exec; the
 * blocking ssh_run() of an agent's target uses it too): queued, and this
 * returns. The job runs the script ssh_run() would send (cmd->env
 * exported, cd cmd->workdir: ssh_script_build) with cmd->timeout_usec and
 * cmd->input on its stdin; cmd->output, cancel and track are not used: the
 * output and the end go to sink, as agent.h says, and may come before this
 * returns. wait_usec bounds the wait for an offline or busy agent (0:
 * forever). ret_id gets the job's id. -ESHUTDOWN when agents is NULL (this
 * rprd serves none), -EFBIG for more input than a job takes, -EINVAL for a
 * bad env entry, or agent_job_submit()'s error. */
int server_agent_submit(Agents *agents, const char *ns, const char *name, const SshCommand *cmd,
                        uint64_t wait_usec, const AgentJobSink *sink,
                        char ret_id[static AGENT_JOB_ID_LEN + 1]);

/* A check now, as the periodic one (status written, log line, retries
 * not waited for): runs `uptime` and the metrics command. Blocks.
 * *ret_uptime (caller frees) gets uptime's output when it ran. */
int server_check_now(ServerController *s, const char *ns, const char *name, SshResult *result,
                     char **ret_uptime);
