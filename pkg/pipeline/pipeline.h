/* pipeline: the Pipeline kind — DAGs of script tasks, run as jobs.
 *
 * A job is a Run owned by its Pipeline, with the tasks, args and policies
 * copied into its spec when it is made, so that an edit of the Pipeline
 * changes the jobs to come, not the ones made. Jobs are made by
 * pipeline_start() (the API, rprctl run), by the cron schedule and by a new
 * commit of trigger.repo. At most spec.concurrency jobs go at once; the
 * others wait, Queued, in the order they came (queueLimit of them; beyond
 * that a start is refused, or with queueStrategy replace the oldest waiting
 * job is Canceled with reason Replaced). startDelay debounces: a job waits
 * that long, and a newer one replaces it.
 *
 * In a job, a task starts the moment every task it dependsOn has succeeded
 * (or failed with allowFailure), at most spec.parallelism at once; the
 * tasks behind a failure are Skipped; the onError task runs when any task
 * failed. Each task's output has its own file. A job that rprd was running
 * when it died is Interrupted, its finished tasks kept, and is resumed or
 * failed per onInterrupt. Finished jobs beyond history, or older than
 * retention, are removed with their output. */
#pragma once

#include "base/base.h"
#include "resource/resource.h" /* Cron */

typedef struct Store Store;
typedef struct Controller Controller;
typedef struct LogFile LogFile;
typedef struct RepoController RepoController;
typedef struct ServerController ServerController;
typedef struct RunController RunController;
typedef struct SshPool SshPool;
typedef struct PipelineController PipelineController;

typedef struct PipelineOptions {
        Store *store;
        Controller *controller; /* the Pipeline kind is registered on it */
        RunController *runs;    /* the Run kind's controller hands Pipeline jobs over */
        RepoController *repos;  /* trigger.repo */
        ServerController *servers;
        SshPool *ssh;
        const char *run_dir; /* output: DIR/NS/JOB.log and DIR/NS/JOB/TASK.log */
        LogFile *activity;   /* may be NULL */
} PipelineOptions;

int pipeline_controller_new(const PipelineOptions *o, PipelineController **ret);
void pipeline_controller_free(PipelineController *p); /* NULL-safe */

/* At shutdown: starts nothing more, lets running tasks go on for up to
 * grace_usec, then cancels them; their jobs are found Running at the next
 * start and handled per onInterrupt. */
void pipeline_controller_drain(PipelineController *p, uint64_t grace_usec);
/* Jobs whose tasks are under way now. */
size_t pipeline_controller_running(PipelineController *p);

/* Starts a job of ns/name with args (an object of strings; may be NULL):
 * Queued, or refused. triggered_by: "api", "schedule", "commit"; commit
 * may be NULL. *ret_run (caller frees) names the job. Errors with
 * *ret_error (caller frees): -ENOENT no such Pipeline, -EINVAL an
 * undeclared or non-string arg, -EBUSY the queue is full. */
int pipeline_start(PipelineController *p, const char *ns, const char *name, const json_t *args,
                   const char *triggered_by, const char *commit, char **ret_run, char **ret_error);

/* ---- cron (pipeline-cron.c) ------------------------------------------------ */

/* The first time strictly after after_usec when c fires, in the local time
 * zone (the daemon's TZ); 0 if none within five years. */
uint64_t cron_next(const Cron *c, uint64_t after_usec);
