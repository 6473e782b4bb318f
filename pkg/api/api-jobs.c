/* api-jobs: blocking work (store commits, which fsync) off the event loop.
 *
 * A job is submitted to the work queue, runs on a worker thread, and comes
 * back to the loop as an h2o multithread message, where its done callback
 * answers the request. If the client goes away meanwhile, the request's
 * pool dies; a small object in that pool clears the job's pointer to the
 * call so that done learns there is no one left to answer. */
#include <malloc.h>

#include "api/api-private.h"

/* Ops from which a finished job gives its freed memory back. */
#define JOB_LARGE_OPS 256

struct ApiJobRef {
        ApiJob *job;
};

static void job_ref_dispose(void *p) {
        struct ApiJobRef *ref = p;

        if (ref->job) {
                ref->job->call = NULL;
                ref->job->ref = NULL;
        }
}

ApiJob *api_job_new(ApiCall *c, size_t n_ops, ApiJobWork work, ApiJobDone done) {
        ApiJob *job = xcalloc(1, sizeof *job);

        job->api = c->api;
        job->call = c;
        job->work = work ? work : api_job_commit;
        job->done = done;
        job->n_ops = n_ops;
        job->ops = xcalloc(n_ops ? n_ops : 1, sizeof *job->ops);
        job->ref = h2o_mem_alloc_shared(&c->req->pool, sizeof *job->ref, job_ref_dispose);
        job->ref->job = job;
        return job;
}

void api_job_commit(ApiJob *job) {
        job->r = store_commit(job->api->store, job->ops, job->n_ops, job->dry_run, &job->failed);
}

/* On a worker thread. */
static void job_run(void *userdata) {
        ApiJob *job = userdata;

        job->work(job);
        h2o_multithread_send_message(&job->api->job_receiver, &job->msg);
}

static void job_free(ApiJob *job) {
        if (job->ref)
                job->ref->job = NULL;
        store_ops_clear(job->ops, job->n_ops);
        free(job->ops);
        json_decref(job->input);
        free(job->kind);
        free(job->ns);
        free(job->name);
        if (job->data_free)
                job->data_free(job->data);
        free(job);
}

static void job_finish(ApiJob *job) {
        ApiServer *a = job->api;
        bool large = job->n_ops >= JOB_LARGE_OPS;

        job->done(job, job->call);
        job_free(job);
        a->jobs_pending--;
        /* A large apply leaves its parsed body behind as free heap that
         * glibc would otherwise keep; the daemon's footprint should be what
         * it holds, not what it once parsed. */
        if (large)
                malloc_trim(0);
}

void api_job_submit(ApiJob *job) {
        ApiServer *a = job->api;

        a->jobs_pending++;
        WorkQueue *q = job->queue ? job->queue : a->workq;

        if (!q || workq_submit(q, job_run, job) < 0) {
                /* Shutting down: nothing runs any more. */
                job->r = -ESHUTDOWN;
                job_finish(job);
        }
}

static void on_job_messages(h2o_multithread_receiver_t *receiver, h2o_linklist_t *messages) {
        (void) receiver;

        while (!h2o_linklist_is_empty(messages)) {
                ApiJob *job = H2O_STRUCT_FROM_MEMBER(ApiJob, msg.link, messages->next);

                h2o_linklist_unlink(&job->msg.link);
                job_finish(job);
        }
}

void api_jobs_init(ApiServer *a) {
        h2o_multithread_register_receiver(a->ctx.queue, &a->job_receiver, on_job_messages);
}

void api_jobs_done(ApiServer *a) {
        uint64_t deadline = now_mono_usec() + 5 * USEC_PER_SEC;

        /* The work queue is gone, so every job has sent its message. */
        while (a->jobs_pending > 0 && now_mono_usec() < deadline)
                h2o_evloop_run(a->ctx.loop, 10);
        h2o_multithread_unregister_receiver(a->ctx.queue, &a->job_receiver);
}
