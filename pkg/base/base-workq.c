/* base-workq: a fixed pool of threads draining one FIFO of jobs.
 *
 * The one way work crosses threads in rprd: the HTTP loop submits blocking
 * jobs here, and they answer back through h2o's own message queue. */
#include "base/base.h"

#include <pthread.h>

typedef struct Job {
        WorkFn fn;
        void *userdata;
        struct Job *next;
} Job;

struct WorkQueue {
        pthread_mutex_t lock;
        pthread_cond_t cond;
        Job *head, *tail;
        bool stopping;
        unsigned n_threads;
        pthread_t *threads;
};

static void *workq_thread(void *arg) {
        WorkQueue *q = arg;

        pthread_mutex_lock(&q->lock);
        for (;;) {
                while (!q->head && !q->stopping)
                        pthread_cond_wait(&q->cond, &q->lock);
                if (!q->head)
                        break;

                Job *j = q->head;
                q->head = j->next;
                if (!q->head)
                        q->tail = NULL;

                pthread_mutex_unlock(&q->lock);
                j->fn(j->userdata);
                free(j);
                pthread_mutex_lock(&q->lock);
        }
        pthread_mutex_unlock(&q->lock);
        return NULL;
}

int workq_new(unsigned threads, WorkQueue **ret) {
        WorkQueue *q = xcalloc(1, sizeof *q);

        pthread_mutex_init(&q->lock, NULL);
        pthread_cond_init(&q->cond, NULL);
        q->threads = xcalloc(threads ? threads : 1, sizeof(pthread_t));
        for (unsigned i = 0; i < (threads ? threads : 1); i++) {
                int r = pthread_create(&q->threads[i], NULL, workq_thread, q);
                if (r != 0) {
                        workq_free(q);
                        return -r;
                }
                q->n_threads++;
        }
        *ret = q;
        return 0;
}

int workq_submit(WorkQueue *q, WorkFn fn, void *userdata) {
        Job *j = xmalloc(sizeof *j);
        *j = (Job){.fn = fn, .userdata = userdata};

        pthread_mutex_lock(&q->lock);
        if (q->stopping) {
                pthread_mutex_unlock(&q->lock);
                free(j);
                return -ESHUTDOWN;
        }
        if (q->tail)
                q->tail->next = j;
        else
                q->head = j;
        q->tail = j;
        pthread_cond_signal(&q->cond);
        pthread_mutex_unlock(&q->lock);
        return 0;
}

void workq_free(WorkQueue *q) {
        if (!q)
                return;

        pthread_mutex_lock(&q->lock);
        q->stopping = true;
        pthread_cond_broadcast(&q->cond);
        pthread_mutex_unlock(&q->lock);

        for (unsigned i = 0; i < q->n_threads; i++)
                pthread_join(q->threads[i], NULL);
        free(q->threads);
        pthread_mutex_destroy(&q->lock);
        pthread_cond_destroy(&q->cond);
        free(q);
}
