/* run-private: what the files of the run module share. */
#pragma once

#include <pthread.h>

#include "agent/agent.h"
#include "run/run.h"
#include "ssh/ssh.h"

/* A Run whose command this rprd is carrying out. */
typedef struct Active {
        char *ns, *name;
        SshCancel *cancel;
        /* Set when canceled: what the Run is marked. */
        char *cancel_reason, *cancel_message;
        bool interrupted; /* canceled by the shutdown: marked Interrupted */
        char agent_job[AGENT_JOB_ID_LEN + 1]; /* transport agent: its job while it is held */
} Active;

struct RunController {
        Store *store;
        Controller *controller;
        ServerController *servers;
        SshPool *ssh;
        LogFile *activity;
        char *dir;
        char *proc_dir; /* pid files of the local commands: DIR/.proc */

        pthread_mutex_t lock;
        pthread_cond_t changed; /* an Active went */
        Active **active;
        size_t n_active;
        bool draining;

        Agents *agents;          /* transport agent (may be NULL) */
        WorkQueue *agent_finish; /* writes the end of agent Runs, off the API's loop */

        char *delegate_kind; /* one other kind runs its own Runs */
        RunDelegate delegate;
};

/* A Run's spec, borrowed from its object. */
typedef struct RunSpec {
        const char *ns, *name;
        const char *owner_kind, *owner_name;
        const char *server, *command, *workdir;
        const char *repo, *branch, *commit, *commit_time, *binding, *triggered_by;
        const json_t *env;
        uint64_t timeout_usec, wait_timeout_usec;
        json_int_t attempt;
} RunSpec;

void run_spec_read(const json_t *obj, RunSpec *ret);

/* A Run's environment, the same over every transport: the spec's env,
 * then the RPR_ variables (after it, so that they win; an unset one is
 * empty). New reference. */
json_t *run_env(const RunSpec *sp);

/* What a Run's status becomes: phase, reason, message, and the other keys
 * of set (a JSON null removes a key). */
typedef struct RunUpdate {
        const char *expect_phase; /* write only from this phase (NULL: any unfinished one) */
        const char *phase, *reason, *message;
        json_t *set;  /* optional, owned */
        bool applied; /* out: the write was made (or was already so) */
        bool news;    /* out: the phase or the reason changed (worth a log line) */
} RunUpdate;

/* Writes u to ns/name's status; never leaves a finished phase. A finished
 * phase gets endTime; the change is a line in the activity log and, for
 * runs not carried out here, a note in the output file. */
int run_update(RunController *rc, const char *ns, const char *name, RunUpdate *u);
/* As run_update, from known, the Run as this rprd last wrote it: nothing
 * is read or parsed unless another write came in between. */
int run_update_of(RunController *rc, const json_t *known, RunUpdate *u);
/* As run_update, for a Run not carried out here: the change is also a note
 * in its output file. */
int run_update_noted(RunController *rc, const char *ns, const char *name, RunUpdate *u);

/* The tracking id of ns/name's command: "NS.NAME" (both DNS labels, so
 * unique). Caller frees. */
char *run_track_id(const char *ns, const char *name);

/* run-recover.c: a Run left Running by an rprd that died. Stops what is
 * left of its command (or learns that nothing is), then marks it
 * Interrupted saying which; while its Server cannot be reached it stays
 * Running (reason StoppingLeftover), so that no retry starts beside it. */
int run_recover(RunController *rc, const json_t *obj, uint64_t *ret_requeue_after);
/* Only the stopping, for a cancel of such a Run: *ret_leftover (static)
 * says what was found; a negative errno when its Server cannot be reached
 * now. */
int run_reap_leftover(RunController *rc, const json_t *obj, const char **ret_leftover);

/* run-agent.c: a Run on a Server of transport agent, without a thread. */
bool run_uses_agent(RunController *rc, const RunSpec *sp);
int run_agent_start(RunController *rc, Active *a, json_t *obj);
/* Cancels the agent job id (copied from an Active under rc->lock; "" or
 * NULL: none). Call without rc->lock. */
void run_agent_cancel(RunController *rc, const char *id);
/* At shutdown, no agent will report: every agent Run ends Interrupted now. */
void run_agent_interrupt_all(RunController *rc);

/* Registers ns/name as carried out here; NULL while draining or when it
 * already is. */
Active *run_active_add(RunController *rc, const char *ns, const char *name);

/* run-agent.c: a Run an rprd before this one handed to an agent, whose job
 * (status.agentJob) the agent may still hold: taken back, its output
 * resumed. -ENOENT when it is no such Run (recover it the usual way). */
int run_agent_adopt(RunController *rc, const json_t *obj);

/* run-log.c: how many lines of stdout (ret[0]) and stderr (ret[1]) the
 * output file at path holds. */
int run_log_count_lines(const char *path, uint64_t ret[static 2]);

/* run-exec.c: the thread that carries out one claimed Run. */
int run_exec_start(RunController *rc, Active *a, json_t *obj);
void run_active_remove(RunController *rc, Active *a);
