/* runner: the Runner kind's controller — self-hosted GitHub Actions
 * runners kept at spec.replicas on Servers.
 *
 * Each reconcile joins three views: what the Runner's status says rpr
 * made (status.instances: name, server, GitHub id, ...), what GitHub lists
 * for the scope (one paginated list, cached), and what each Server says
 * runs there (one command per Server). From that it decides, per
 * instance, its state (starting, idle, busy, offline, outdated, failed),
 * and what to do: register and start new ones (JIT configuration, or a
 * registration token and config.sh where JIT is refused), replace those
 * that ended or died (with backoff), delete registrations nobody runs, and
 * scale down without ever killing a job (DELETE at GitHub first; only
 * after its 204 is the process stopped). An instance is written to status
 * before it is registered, and its GitHub id before its process starts, so
 * an rprd killed at any point leaves nothing it cannot find again. The
 * finalizer rpr/runners holds a deleted Runner until every registration
 * and process is gone. */
#pragma once

#include "base/base.h"

typedef struct Store Store;
typedef struct Controller Controller;
typedef struct TokenController TokenController;
typedef struct GithubClient GithubClient;
typedef struct ServerController ServerController;
typedef struct SshPool SshPool;
typedef struct LogFile LogFile;
typedef struct RunnerController RunnerController;

typedef struct RunnerOptions {
        Store *store;
        Controller *controller; /* the Runner kind is registered on it */
        TokenController *tokens;
        GithubClient *github;
        ServerController *servers;
        SshPool *ssh;
        const char *state_dir; /* releases are kept in STATE/cache/runners */
        LogFile *activity;     /* may be NULL */
} RunnerOptions;

int runner_controller_new(const RunnerOptions *o, RunnerController **ret);
void runner_controller_free(RunnerController *r); /* NULL-safe */

/* What became of a workflow_job delivery. */
typedef enum RunnerJobOutcome {
        RUNNER_JOB_COUNTED,   /* the job's Runner counts it and looks again now */
        RUNNER_JOB_DUPLICATE, /* this job id and action were counted before */
        RUNNER_JOB_UNMATCHED, /* no autoscaled Runner of the namespace takes it */
        RUNNER_JOB_IGNORED,   /* an action that changes nothing */
} RunnerJobOutcome;

/* A verified workflow_job delivery (payload), signed by the webhook Token
 * ns/token: routed to the autoscaled Runner of ns that takes it (its
 * repository or organisation, every label of the job; spec.autoscale.
 * webhookTokenRef, when set, must be token). A RunnerJobOutcome, or
 * -EINVAL for a payload without the fields it needs; *ret_message (caller
 * frees) says what was done, for the delivery's answer. Thread-safe. */
int runner_workflow_job(RunnerController *rc, const char *ns, const char *token, const json_t *payload,
                        char **ret_message);
/* Queued jobs that no Runner takes, seen since start (one per job id). */
uint64_t runner_unmatched_jobs(RunnerController *rc);
