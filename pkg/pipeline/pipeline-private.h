/* pipeline-private: what the files of the pipeline module share. */
#pragma once

#include <pthread.h>

#include "pipeline/pipeline.h"

typedef struct Job Job;

struct PipelineController {
        Store *store;
        Controller *controller;
        RunController *runs;
        ServerController *servers;
        SshPool *ssh;
        LogFile *activity;
        char *run_dir;

        /* Starting and admitting jobs, one at a time: the counts they
         * decide by must not change under them. */
        pthread_mutex_t admit;

        pthread_mutex_t lock; /* the jobs below */
        pthread_cond_t changed;
        Job **jobs;
        size_t n_jobs;
        bool draining;
};

/* pipeline-job.c: carrying out jobs (the Run controller's delegate). */
int job_reconcile(void *userdata, json_t *obj, uint64_t *ret_requeue_after_usec);
int job_cancel(void *userdata, const json_t *obj, const char *reason, const char *message);
/* Writes a job's phase (and reason, message) when it is in expect_phase
 * (NULL: any unfinished); *ret_applied says whether it was. */
int job_set_phase(PipelineController *p, const char *ns, const char *name, const char *expect_phase,
                  const char *phase, const char *reason, const char *message, bool *ret_applied);

/* pipeline-recover.c: a job left Running by an rprd that died. What is
 * left of its Running tasks' commands is stopped first; then its
 * unfinished tasks are Interrupted (status.tasks.KEY.leftover says what
 * was found of each) and the job resumes or ends, as spec.onInterrupt
 * says. While a task's server cannot be reached, the job stays Running
 * (reason StoppingLeftover) and *ret_requeue_after_usec says when to try
 * again. */
int job_recover(PipelineController *p, const json_t *obj, uint64_t *ret_requeue_after_usec);

/* The job's output directory for its tasks; caller frees. */
char *job_dir(PipelineController *p, const char *ns, const char *name);
/* Removes a job's output, the file and the directory. */
void job_output_remove(PipelineController *p, const char *ns, const char *name);
