/* pipeline-status: a job's task states on their way to the store.
 *
 * The tasks' states reach the store from a flusher thread, at most every
 * FLUSH_USEC (or four times as long as the last write took), and at the
 * end: a thousand tasks are not a thousand fsyncs. An instance's Running
 * on a server may not wait for the batch: it is durable before its command
 * starts, so that the next rprd knows where to look for what is left of it
 * (on rprd's host it looks at the pid files). That start calls
 * job_flush_wait(), which asks the flusher to write now and waits for a
 * write of a snapshot taken after the call: instances that start together
 * share one write (a group commit). An end that dependents wait for goes
 * to the job's journal instead (pipeline-files.c), and here with the batch. */
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "logfile/logfile.h"
#include "pipeline/pipeline-private.h"
#include "run/run.h"
#include "store/store.h"

#define FLUSH_USEC (50 * USEC_PER_MSEC)

/* ---- status ------------------------------------------------------------------------- */

typedef struct PhaseWrite {
        const char *expect, *phase, *reason, *message;
        json_t *tasks; /* optional: status.tasks to write */
        bool applied;
} PhaseWrite;

static json_t *phase_next(const json_t *obj, void *userdata) {
        PhaseWrite *w = userdata;
        const json_t *old = json_object_get(obj, "status");
        const char *phase = json_str_at(old, "phase") ?: "Queued";

        w->applied = false;
        if (run_phase_finished(phase) || (w->expect && !STREQ(phase, w->expect)))
                return NULL;
        w->applied = true;
        /* Only keys of the status itself change: its members are shared. */
        json_t *st = json_is_object(old) ? json_copy((json_t *) old) : json_object();
        if (w->phase) {
                json_object_set_new(st, "phase", json_string(w->phase));
                json_object_set_new(st, "reason", json_string(w->reason ?: w->phase));
                if (w->message)
                        json_object_set_new(st, "message", json_string(w->message));
                else
                        json_object_del(st, "message");
                if (STREQ(w->phase, "Running") && !json_object_get(st, "startTime"))
                        json_set_time(st, "startTime", now_usec());
                if (run_phase_finished(w->phase))
                        json_set_time(st, "endTime", now_usec());
        }
        if (w->tasks)
                json_object_set(st, "tasks", w->tasks);
        if (json_equal(st, old)) {
                json_decref(st);
                return NULL;
        }
        return st;
}

int job_set_phase(PipelineController *p, const char *ns, const char *name, const char *expect_phase,
                  const char *phase, const char *reason, const char *message, bool *ret_applied) {
        PhaseWrite w = {expect_phase, phase, reason, message, NULL, false};
        int r = store_update_status(p->store, "Run", ns, name, phase_next, &w, NULL);

        if (ret_applied)
                *ret_applied = r >= 0 && w.applied;
        if (r >= 0 && w.applied && run_phase_finished(phase) && p->activity)
                (void) logfile_append(p->activity, now_usec(), "job %s/%s: %s %s%s%s", ns, name, phase, reason ?: "",
                                      message ? ": " : "", message ?: "");
        return r;
}

json_t *job_inst_json(const Inst *i) {
        json_t *o = json_pack("{s:s, s:s, s:I}", "task", i->task, "phase", i->phase, "attempt", (json_int_t) i->attempt);

        if (i->server)
                json_object_set_new(o, "server", json_string(i->server));
        if (i->reason)
                json_object_set_new(o, "reason", json_string(i->reason));
        if (i->message)
                json_object_set_new(o, "message", json_string(i->message));
        if (i->has_exit_code)
                json_object_set_new(o, "exitCode", json_integer(i->exit_code));
        if (i->leftover)
                json_object_set_new(o, "leftover", json_string(i->leftover));
        char buf[RFC3339_MAX];
        /* To the millisecond: which tasks overlapped is worth knowing. */
        if (i->start)
                json_object_set_new(o, "startTime", json_string(time_format_rfc3339_ms(i->start, buf)));
        if (i->end)
                json_object_set_new(o, "endTime", json_string(time_format_rfc3339_ms(i->end, buf)));
        return o;
}

/* Under j->lock: status.tasks as the instances are now. */
json_t *job_tasks_json(Job *j) {
        json_t *o = json_object();

        for (size_t i = 0; i < j->n_insts; i++)
                json_object_set_new(o, j->insts[i]->key, job_inst_json(j->insts[i]));
        return o;
}

/* Under flush_lock: what the last write left, so that the next one needs
 * no read of the job (as large as its tasks) when nothing else wrote it
 * since. Kept only while the job is Running as this rprd wrote it. */
static void written_set(Job *j, json_t *obj) {
        const json_t *st = json_object_get(obj, "status");

        json_decref(TAKE_PTR(j->written));
        j->written_revision = 0;
        if (!obj || !STREQ(json_str_at(st, "phase") ?: "", "Running"))
                return;
        j->written = json_copy((json_t *) st);
        j->written_revision = store_object_revision(obj);
}

/* Writes st as the job's status, expecting the job as last written. The
 * job stays parsed in the store for the next of these writes: st must not
 * change after (the next write copies it). */
static int commit_over(Job *j, json_t *st, uint64_t *ret_revision) {
        _cleanup_json_ json_t *obj =
                json_pack("{s:s, s:s, s:{s:s, s:s}, s:O}", "apiVersion", RPR_API_VERSION, "kind", "Run",
                          "metadata", "name", j->name, "namespace", j->ns, "status", st);
        StoreOp op = {.type = STORE_OP_STATUS,
                      .object = obj,
                      .expect_revision = j->written_revision,
                      .keep_tree = true};
        int r = store_commit(j->p->store, &op, 1, false, NULL);
        if (r >= 0 && ret_revision)
                *ret_revision = op.revision;
        store_ops_clear(&op, 1);
        return r;
}

/* The tasks over the status last written, expecting the job unchanged
 * since: -ESTALE when someone else wrote it (or nothing is known). */
static int write_tasks_over(Job *j, json_t *tasks) {
        if (!j->written)
                return -ESTALE;
        _cleanup_json_ json_t *st = json_copy(j->written);
        json_object_set(st, "tasks", tasks);
        uint64_t revision;
        int r = commit_over(j, st, &revision);
        if (r >= 0) {
                json_decref(j->written);
                j->written = json_incref(st);
                j->written_revision = revision;
        }
        return r;
}

/* The tasks with a phase (the end of the job) over the status last
 * written, as write_tasks_over: -ESTALE when that cannot be (the caller
 * reads the job then). */
static int write_phase_over(Job *j, PhaseWrite *w) {
        if (!j->written)
                return -ESTALE;
        _cleanup_json_ json_t *held = json_pack("{s:O}", "status", j->written);
        json_t *st = phase_next(held, w);
        if (!w->applied || !st) {
                json_decref(st);
                return -ESTALE;
        }
        int r = commit_over(j, st, NULL);
        json_decref(st);
        if (r >= 0 && !STREQ(w->phase, "Running"))
                written_set(j, NULL); /* kept only while Running */
        return r;
}

/* Writes the tasks (and a phase) unless the job is no longer Running. */
int job_flush(Job *j, const char *phase, const char *reason, const char *message) {
        pthread_mutex_lock(&j->flush_lock);
        pthread_mutex_lock(&j->lock);
        _cleanup_json_ json_t *tasks = job_tasks_json(j);
        uint64_t snapshot = ++j->snapshots;
        j->dirty = false;
        pthread_mutex_unlock(&j->lock);
        PhaseWrite w = {"Running", phase, reason, message, tasks, false};
        int r = phase ? write_phase_over(j, &w) : write_tasks_over(j, tasks);
        if (r == -ESTALE) {
                _cleanup_json_ json_t *obj = NULL;
                r = store_update_status(j->p->store, "Run", j->ns, j->name, phase_next, &w, &obj);
                written_set(j, r >= 0 && w.applied ? obj : NULL);
        }
        if (r < 0)
                log_warning("job %s/%s: cannot write its state: %s", j->ns, j->name, strerror(-r));
        pthread_mutex_lock(&j->lock);
        if (r >= 0)
                j->flushed = snapshot;
        else {
                j->flush_failed = snapshot;
                j->dirty = true; /* written again by the next round */
        }
        pthread_cond_broadcast(&j->flushed_cond);
        pthread_mutex_unlock(&j->lock);
        pthread_mutex_unlock(&j->flush_lock);
        return r;
}

/* Returns once the tasks as they are now are in the store (0), or a write
 * of them failed (negative errno). Called without j->lock. */
int job_flush_wait(Job *j) {
        pthread_mutex_lock(&j->lock);
        uint64_t want = j->snapshots + 1; /* the next snapshot sees what is now */
        j->dirty = true;
        j->urgent++;
        pthread_cond_signal(&j->flush_wanted);
        while (j->flusher && j->flushed < want && j->flush_failed < want)
                pthread_cond_wait(&j->flushed_cond, &j->lock);
        j->urgent--;
        bool done = j->flushed >= want, failed = j->flush_failed >= want;
        pthread_mutex_unlock(&j->lock);
        if (done)
                return 0;
        return failed ? -EIO : job_flush(j, NULL, NULL, NULL); /* no flusher thread: write it here */
}

/* Under j->lock: waits out the batching delay, or less when someone waits
 * for the write (or the flusher stops). */
static void batch_delay(Job *j) {
        uint64_t until = now_mono_usec() + MAX(FLUSH_USEC, 4 * j->last_flush_usec);
        struct timespec ts;

        while (!j->urgent && !j->flusher_stop) {
                uint64_t now = now_mono_usec();
                if (now >= until)
                        break;
                clock_gettime(CLOCK_REALTIME, &ts);
                uint64_t ns = (uint64_t) ts.tv_nsec + (until - now) * 1000;
                ts.tv_sec += (time_t) (ns / 1000000000);
                ts.tv_nsec = (long) (ns % 1000000000);
                pthread_cond_timedwait(&j->flush_wanted, &j->lock, &ts);
        }
}

/* The flusher: writes the tasks when they changed, not more often than the
 * writes can keep up with unless someone waits for the write. */
static void *flusher_thread(void *arg) {
        Job *j = arg;

        pthread_mutex_lock(&j->lock);
        for (;;) {
                while (!j->dirty && !j->flusher_stop)
                        pthread_cond_wait(&j->flush_wanted, &j->lock);
                if (j->flusher_stop)
                        break;
                pthread_mutex_unlock(&j->lock);
                uint64_t t0 = now_mono_usec();
                (void) job_flush(j, NULL, NULL, NULL);
                pthread_mutex_lock(&j->lock);
                j->last_flush_usec = now_mono_usec() - t0;
                batch_delay(j);
        }
        pthread_mutex_unlock(&j->lock);
        return NULL;
}

void job_flusher_start(Job *j) {
        pthread_cond_init(&j->flush_wanted, NULL);
        if (pthread_create(&j->flusher, NULL, flusher_thread, j) != 0)
                j->flusher = 0;
}

void job_flusher_stop(Job *j) {
        pthread_mutex_lock(&j->lock);
        j->flusher_stop = true;
        pthread_cond_signal(&j->flush_wanted);
        pthread_mutex_unlock(&j->lock);
        if (j->flusher)
                pthread_join(j->flusher, NULL);
        j->flusher = 0;
        pthread_cond_destroy(&j->flush_wanted);
}
