/* run: carrying out Run objects — one command on one Server.
 *
 * A Run is made by its owner (a Binding) with everything it needs in its
 * spec: server, command, env, workdir, timeout, waitTimeout, commit. The
 * Run controller takes it from there:
 *
 *   Pending ──server Reachable──▶ Running ──▶ Succeeded | Failed | Canceled
 *      │  (WaitingForServer while it is not, up to waitTimeout: then Failed)
 *      └─ rprd found it Running at start-up ──▶ Interrupted
 *
 * Running is written to the store before the command starts, so a run that
 * rprd was carrying out when it died is found Running on the next start and
 * marked Interrupted (its owner decides whether to retry); nothing is
 * forgotten and nothing runs twice behind anyone's back. Each Run runs on a
 * thread of its own, its output written to $STATE/runs/NS/NAME.log line by
 * line as it arrives, each line stamped with the time and marked out, err or
 * rpr (rprd's own notes). A finished Run wakes its owner. */
#pragma once

#include "base/base.h"

typedef struct Store Store;
typedef struct Controller Controller;
typedef struct ServerController ServerController;
typedef struct SshPool SshPool;
typedef struct LogFile LogFile;
typedef struct RunController RunController;
typedef struct StoreOp StoreOp;
typedef struct Agents Agents;

typedef struct RunOptions {
        Store *store;
        Controller *controller; /* the Run kind is registered on it */
        ServerController *servers;
        SshPool *ssh;
        const char *dir;   /* output files: DIR/NS/NAME.log */
        LogFile *activity; /* may be NULL */
        Agents *agents;    /* Servers of transport agent (may be NULL) */
} RunOptions;

int run_controller_new(const RunOptions *o, RunController **ret);
/* Cancels what still runs (marked Interrupted) and waits for it. NULL-safe. */
void run_controller_free(RunController *rc);

/* At shutdown: starts no more runs, lets the running ones go on for up to
 * grace_usec, then cancels them; they are marked Interrupted, so that
 * their owners retry them after the restart. Returns when none runs. */
void run_controller_drain(RunController *rc, uint64_t grace_usec);
/* Runs whose command is under way now. */
size_t run_controller_running(RunController *rc);

/* Cancels ns/name: a running command is stopped (its remote process group
 * killed) and the Run marked Canceled with reason (e.g. "Canceled",
 * "BindingDeleted"); a Pending one is marked Canceled at once. Blocks for a
 * store write at most. -ENOENT if absent, -EALREADY if it had finished. */
int run_cancel(RunController *rc, const char *ns, const char *name, const char *reason, const char *message);

/* Runs whose owner is of another kind with its own way to run them (a
 * Pipeline's jobs): reconciled and canceled by that kind's module. */
typedef struct RunDelegate {
        /* Instead of the Run controller's reconcile, for a Run that exists. */
        int (*reconcile)(void *userdata, json_t *obj, uint64_t *ret_requeue_after_usec);
        /* As run_cancel(). */
        int (*cancel)(void *userdata, const json_t *obj, const char *reason, const char *message);
        /* Optional: whether the Run is being carried out here, so that
         * the events of its own writes need no look while it is
         * unfinished. */
        bool (*busy)(void *userdata, const char *ns, const char *name);
        void *userdata;
} RunDelegate;
void run_controller_delegate(RunController *rc, const char *owner_kind, const RunDelegate *d);

/* The name of an owner's Run number n: "OWNER-n", the owner's part
 * shortened so that the whole is a DNS label. Caller frees. */
char *run_name(const char *owner, json_int_t n);
/* The Runs of namespace ns whose label key is value: rprd labels each Run
 * with its owner ("binding", "pipeline" or "command" = the owner's name;
 * Runs are not user-writable, so no one else sets them). Oldest first, as
 * a new array of {name, number, phase, notBefore, endTime} (times in
 * usec, 0 when unset). Read from what the store keeps beside each Run,
 * without parsing one: the cost follows the number of Runs, not their
 * size. */
json_t *run_list_owned(Store *store, const char *ns, const char *key, const char *value);

/* Removes the Runs of ns named in names (a JSON array of strings) in one
 * commit, with extra (optional: the owner let go at the same time). Their
 * output files go as the Run controller sees each one gone. */
int run_delete_many(Store *store, const char *ns, const json_t *names, StoreOp *extra);

/* The output file of ns/name (it may not exist yet); caller frees. */
char *run_log_path(const char *dir, const char *ns, const char *name);

/* Whether a phase is one a Run does not leave. */
bool run_phase_finished(const char *phase);

/* ---- the output file (run-log.c) ---------------------------------------- */

/* Writes a run's output file: every complete line stamped with the time
 * and marked with its stream; a line longer than RUN_LOG_LINE_MAX is cut
 * there and goes on in the next line. */
#define RUN_LOG_LINE_MAX (64u * 1024)

typedef enum RunLogStream { RUN_LOG_OUT, RUN_LOG_ERR, RUN_LOG_RPR } RunLogStream;
typedef struct RunLog RunLog;

/* Opens path for appending (created 0640, its directory too). */
int run_log_open(const char *path, RunLog **ret);
/* The output file of ns/name under run_dir, as run_log_open; one that is
 * not there yet is a spare of run_dir's, not a new file. */
int run_output_open(const char *run_dir, const char *ns, const char *name, RunLog **ret);
/* The output file of a Run that is gone and that no one writes any more:
 * emptied and kept as a spare (or removed). */
void run_output_discard(const char *run_dir, const char *ns, const char *name);
/* Output as it came: data need not end with a newline, nor be one line. */
void run_log_write(RunLog *l, RunLogStream s, const char *data, size_t n, uint64_t when_usec);
/* One line of rprd's own ("rpr"). */
void run_log_note(RunLog *l, const char *fmt, ...) _printf_(2, 3);
/* Writes what is left of unfinished lines and closes. NULL-safe. */
void run_log_close(RunLog *l);
