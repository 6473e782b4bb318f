/* store-group: group commit. Writers that arrive while a commit is under
 * way wait in a queue; the next one to go takes everyone waiting and
 * commits them together, in one backend transaction and so one fsync.
 *
 * With SQLite's synchronous=FULL a transaction costs an fsync whatever it
 * holds, and controllers write statuses one object at a time from several
 * workers: without this, 100,000 status writes are 100,000 fsyncs. Each
 * request keeps its own all-or-nothing (see store.c's commit_batch); only
 * the durable write is shared, and no request is answered before it. */
#include "store/store-backend.h"

void commit_queue_init(CommitQueue *q) {
        pthread_mutex_init(&q->lock, NULL);
        pthread_cond_init(&q->done, NULL);
        q->head = NULL;
        q->tail = &q->head;
        q->leading = false;
}

void commit_queue_destroy(CommitQueue *q) {
        pthread_cond_destroy(&q->done);
        pthread_mutex_destroy(&q->lock);
}

void commit_queue_run(CommitQueue *q, CommitRequest *req, CommitBatchFn run, void *ctx) {
        req->next = NULL;
        req->done = false;
        pthread_mutex_lock(&q->lock);
        *q->tail = req;
        q->tail = &req->next;
        while (!req->done) {
                if (q->leading) {
                        pthread_cond_wait(&q->done, &q->lock);
                        continue;
                }
                /* lead: everyone waiting, this request among them */
                CommitRequest *batch = q->head;
                q->head = NULL;
                q->tail = &q->head;
                q->leading = true;
                pthread_mutex_unlock(&q->lock);
                run(ctx, batch);
                pthread_mutex_lock(&q->lock);
                for (CommitRequest *r = batch, *next; r; r = next) {
                        next = r->next; /* r may be gone once done is seen */
                        r->done = true;
                }
                q->leading = false;
                pthread_cond_broadcast(&q->done);
        }
        pthread_mutex_unlock(&q->lock);
}
