/* pipeline-private: what the files of the pipeline module share. */
#pragma once

#include <pthread.h>

#include "pipeline/pipeline.h"

typedef struct Job Job;
typedef struct SshCancel SshCancel;
typedef struct RunLog RunLog;

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
/* Whether the job ns/name is carried out by this rprd. */
bool job_busy(void *userdata, const char *ns, const char *name);
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
/* A task instance on server whose connection was lost while its command
 * ran: stops what is left of it, trying a few times while the server is
 * out of reach, so that no retry runs beside it. Returns the leftover's
 * name ("Unknown" when it could not be reached, or canceled meanwhile). */
const char *job_reap_lost(PipelineController *p, const char *ns, const char *job, const char *key, const char *server,
                          const SshCancel *cancel);

/* The job's output directory for its tasks; caller frees. */
char *job_dir(PipelineController *p, const char *ns, const char *name);
/* Removes a job's output, the file and the directory. */
void job_output_remove(PipelineController *p, const char *ns, const char *name);

/* ---- a job's insides (pipeline-job.c; pipeline-status.c writes them) ---- */

/* A task of the job's graph, its dependencies resolved to indices once. */
typedef struct Task {
        const char *name;
        bool allow_failure;
        bool has_dependents; /* some task lists it in dependsOn */
        size_t *deps, n_deps;
} Task;

typedef struct Inst {
        Job *job;
        size_t task_index;
        char *task, *server, *key; /* server NULL: rprd's host */
        const json_t *def;
        const char *phase, *reason;
        char *message;
        json_int_t attempt;
        int exit_code;
        bool has_exit_code, on_error;
        uint64_t start, end;
        bool ending; /* ended, not yet durable: its dependents wait */
        /* What the last rprd left of it, when it was running then (in
         * j->obj): kept in its status through the attempts that follow. */
        const char *leftover;
        SshCancel *cancel;
} Inst;

struct Job {
        PipelineController *p;
        char *ns, *name;
        json_t *obj;
        const json_t *spec, *tasks;
        pthread_mutex_t lock;
        pthread_cond_t changed;
        Task *graph;
        size_t n_graph;
        Inst **insts;
        size_t n_insts, running;
        json_int_t parallelism;
        bool canceled, interrupted, dirty;
        char *cancel_reason, *cancel_message;
        RunLog *log;
        pthread_t flusher;
        pthread_cond_t flush_wanted;
        bool flusher_stop;
        /* job_flush_wait(): snapshots of the tasks taken and written (numbered),
         * the last that failed, and how many wait for one. */
        pthread_mutex_t flush_lock; /* one write at a time, in snapshot order */
        pthread_cond_t flushed_cond;
        uint64_t snapshots, flushed, flush_failed;
        /* Under flush_lock: the status this rprd last wrote and the job's
         * revision then (pipeline-status.c); NULL: read it first. */
        json_t *written;
        uint64_t written_revision;
        unsigned urgent;
        uint64_t last_flush_usec;
        /* The journal of ends (pipeline-files.c): its fd (-1 until the
         * first end), lines written and on disk, the first error (after
         * which the store is written instead). */
        pthread_mutex_t ends_lock;
        pthread_cond_t ends_synced_cond;
        int ends_fd, ends_error;
        uint64_t ends_written, ends_synced;
        bool ends_syncing;
        /* Started instances waiting for a worker (a ring, first in first
         * out; an instance is in it once at most), and the workers. */
        Inst **ready;
        size_t ready_head, n_ready;
        pthread_cond_t work;
        pthread_t *workers;
        size_t n_workers;
        bool workers_stop;
        bool on_error_phase; /* which instances run_all() is running */
};

/* Under j->lock: starts what may start (pipeline-job.c); true while
 * anything can still happen. */
bool job_step(Job *j, bool on_error_phase);

/* pipeline-status.c: the job's tasks in the store. */
/* Under j->lock: status.tasks as the instances are now (new reference). */
json_t *job_tasks_json(Job *j);
/* Writes the tasks (and a phase, when not NULL) unless the job is no
 * longer Running; serialized, in snapshot order. */
int job_flush(Job *j, const char *phase, const char *reason, const char *message);
/* Returns once the tasks as they are now are in the store (0), or a write
 * of them failed (negative errno). Called without j->lock. */
int job_flush_wait(Job *j);
/* Under j->lock: the instance's entry of status.tasks (new reference). */
json_t *job_inst_json(const Inst *i);
/* The flusher thread: writes the tasks when they changed (j->dirty), in
 * batches, sooner when someone waits in job_flush_wait(). */
void job_flusher_start(Job *j);
void job_flusher_stop(Job *j);

/* pipeline-files.c: the journal of the ends that dependents wait for. */
/* Appends task (the instance's status entry) under key and waits for the
 * disk; negative errno (logged) when it cannot. Without j->lock. */
int job_end_record(Job *j, const char *key, const json_t *task);
/* Closes the journal; remove: the job's end is in the store, drop it. */
void job_ends_close(Job *j, bool remove);
/* Drops a job's journal: its ends are in the store. */
void job_ends_remove(PipelineController *p, const char *ns, const char *name);
/* The ends a job's journal holds, {KEY: task status} (empty when none). */
json_t *job_ends_read(PipelineController *p, const char *ns, const char *name);
