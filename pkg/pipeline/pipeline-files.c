/* pipeline-files: a job's files — its output directory, DIR/NS/JOB, with
 * a file per task instance, and the journal of the ends that something
 * waits for.
 *
 * An instance's end is durable before its dependents (or, for a failure,
 * the onError task) start: a resumed job must never run again what they
 * were started on. That used to be a write of the job's whole status to
 * the store (tens of kilobytes for 200 tasks) at every layer of a graph,
 * on the path from one layer to the next. Now it is one line appended to
 * the job's journal, "ends.journal" in its output directory (a few hundred
 * bytes and an fdatasync), and the store gets the ends with the flusher's
 * next batch. An rprd that finds the job left Running reads the journal
 * (job_recover) and takes every end in it that the store does not have yet
 * (a later attempt wins); a line cut by a crash is skipped, and so is its
 * end (the task runs again on resume, which a task whose end was never
 * recorded may). The journal goes once the job's end is in the store, or
 * with the job's output. When the journal cannot be written the caller
 * writes the store instead (job_flush_wait). */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "pipeline/pipeline-private.h"
#include "run/run.h"

/* A journal is one line per ended instance with dependents: a few hundred
 * bytes each; what would be larger is not ours. */
#define JOURNAL_MAX (64u * 1024 * 1024)

char *job_dir(PipelineController *p, const char *ns, const char *name) {
        return xasprintf("%s/%s/%s", p->run_dir, ns, name);
}

void job_output_remove(PipelineController *p, const char *ns, const char *name) {
        _cleanup_free_ char *dir = job_dir(p, ns, name), *file = run_log_path(p->run_dir, ns, name);
        DIR *d = opendir(dir);

        (void) unlink(file);
        if (!d)
                return;
        for (struct dirent *e; (e = readdir(d));) {
                if (e->d_name[0] == '.')
                        continue;
                _cleanup_free_ char *f = xasprintf("%s/%s", dir, e->d_name);
                (void) unlink(f);
        }
        closedir(d);
        (void) rmdir(dir);
}

/* ---- the journal of ends ---------------------------------------------------------------- */

static char *journal_path(PipelineController *p, const char *ns, const char *name) {
        _cleanup_free_ char *dir = job_dir(p, ns, name);

        return xasprintf("%s/ends.journal", dir);
}

static int journal_open(Job *j) {
        if (j->ends_fd >= 0)
                return 0;
        _cleanup_free_ char *dir = job_dir(j->p, j->ns, j->name);
        _cleanup_free_ char *path = journal_path(j->p, j->ns, j->name);
        int r = mkdir_p(dir, 0750);
        if (r < 0)
                return r;
        j->ends_fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
        return j->ends_fd < 0 ? -errno : 0;
}

/* Under ends_lock: waits until line seq is on disk. The instances of a
 * layer end together: one fdatasync covers every line written before it
 * started (a group commit), the others wait for it. */
static int journal_sync(Job *j, uint64_t seq) {
        while (j->ends_synced < seq && j->ends_error == 0) {
                if (j->ends_syncing) {
                        pthread_cond_wait(&j->ends_synced_cond, &j->ends_lock);
                        continue;
                }
                uint64_t upto = j->ends_written;
                j->ends_syncing = true;
                pthread_mutex_unlock(&j->ends_lock);
                int r = fdatasync(j->ends_fd) < 0 ? -errno : 0;
                pthread_mutex_lock(&j->ends_lock);
                j->ends_syncing = false;
                if (r < 0)
                        j->ends_error = r;
                else
                        j->ends_synced = upto;
                pthread_cond_broadcast(&j->ends_synced_cond);
        }
        return j->ends_error;
}

int job_end_record(Job *j, const char *key, const json_t *task) {
        _cleanup_json_ json_t *line = json_pack("{s:s, s:O}", "key", key, "status", task);
        _cleanup_free_ char *text = json_dumps(line, JSON_COMPACT);
        int r;

        if (!text)
                return -ENOMEM;
        size_t n = strlen(text);
        text[n] = '\n'; /* over the NUL: one write, one line */
        pthread_mutex_lock(&j->ends_lock);
        r = j->ends_error ?: journal_open(j);
        if (r >= 0) {
                ssize_t k = write(j->ends_fd, text, n + 1);
                r = k == (ssize_t) (n + 1) ? 0 : k < 0 ? -errno : -EIO;
        }
        if (r >= 0)
                r = journal_sync(j, ++j->ends_written);
        else
                j->ends_error = r; /* a line cut short: nothing after it counts */
        pthread_mutex_unlock(&j->ends_lock);
        if (r < 0)
                log_warning("job %s/%s: cannot record the end of task %s in its journal: %s", j->ns, j->name, key,
                            strerror(-r));
        return r;
}

void job_ends_close(Job *j, bool remove) {
        if (j->ends_fd >= 0)
                close(j->ends_fd);
        j->ends_fd = -1;
        if (remove)
                job_ends_remove(j->p, j->ns, j->name);
}

void job_ends_remove(PipelineController *p, const char *ns, const char *name) {
        _cleanup_free_ char *path = journal_path(p, ns, name);

        (void) unlink(path);
}

json_t *job_ends_read(PipelineController *p, const char *ns, const char *name) {
        _cleanup_free_ char *path = journal_path(p, ns, name), *text = NULL;
        json_t *ends = json_object();
        size_t len;

        if (read_file(path, JOURNAL_MAX, &text, &len) < 0)
                return ends;
        for (char *line = text, *nl; line < text + len; line = nl + 1) {
                nl = memchr(line, '\n', (size_t) (text + len - line));
                if (!nl)
                        break; /* cut by a crash: never acknowledged */
                _cleanup_json_ json_t *v = json_loadb(line, (size_t) (nl - line), 0, NULL);
                const char *key = json_str_at(v, "key");
                json_t *st = json_object_get(v, "status");
                if (key && json_is_object(st))
                        json_object_set(ends, key, st); /* a later line wins */
        }
        return ends;
}
