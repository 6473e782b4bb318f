/* pipeline-recover: a job that an rprd left Running when it died.
 *
 * Its Running task instances may still be running (on rprd's host in a
 * session of their own, or under sshd), under the tracking id NS.JOB.KEY.
 * One on a server was recorded Running in the store before its command
 * started; one on rprd's host may not have been (its start does not wait
 * for the store), so every unfinished task of rprd's host is looked for by
 * its pid file too. The next rprd stops what is left of each (ssh_reap)
 * before anything of the job runs again. Then the unfinished instances are Interrupted, each
 * with its leftover (None, Ended, Terminated, Killed or Unknown), and the
 * job resumes (onInterrupt: resume, the interrupted ones run again) or
 * ends Interrupted. Finished instances keep their results: their ends were
 * durable before their dependents started, in the store or in the job's
 * journal (pipeline-files.c), whose ends are taken first. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "pipeline/pipeline-private.h"
#include "run/run.h"
#include "server/server.h"
#include "ssh/ssh.h"
#include "store/store.h"

#define REAP_GRACE_USEC (5 * USEC_PER_SEC)
#define REAP_RETRY_USEC (15 * USEC_PER_SEC)

static bool task_finished(const char *phase) {
        static const char *const done[] = {"Succeeded", "Failed", "Skipped", "Canceled", "Interrupted"};

        for (size_t i = 0; phase && i < ELEMENTSOF(done); i++)
                if (STREQ(phase, done[i]))
                        return true;
        return false;
}

/* Whether an end of the journal is news to the store's entry t. */
static bool end_is_news(const json_t *t, const json_t *end) {
        return !t || !task_finished(json_str_at(t, "phase")) ||
               json_int_at(end, "attempt", 0) > json_int_at(t, "attempt", 0);
}

typedef struct Found {
        json_t *ends;     /* {KEY: status} from the journal */
        json_t *leftover; /* {KEY: what was left of it} */
} Found;

/* The journal's ends go in; then the unfinished instances become
 * Interrupted with what was found of them; the job resumes or ends. */
static json_t *interrupted_next(const json_t *obj, void *userdata) {
        const Found *f = userdata;
        const json_t *old = json_object_get(obj, "status"), *found = f->leftover;
        bool resume = STREQ(json_str_at(json_object_get(obj, "spec"), "onInterrupt") ?: "fail", "resume");
        const char *key;
        json_t *t;

        if (!STREQ(json_str_at(old, "phase") ?: "", "Running"))
                return NULL;
        json_t *st = json_deep_copy(old);
        if (!json_is_object(json_object_get(st, "tasks")))
                json_object_set_new(st, "tasks", json_object());
        json_t *tasks = json_object_get(st, "tasks");
        json_object_foreach(f->ends, key, t) if (end_is_news(json_object_get(tasks, key), t))
                json_object_set_new(tasks, key, json_deep_copy(t));
        json_object_foreach(tasks, key, t) {
                const char *ph = json_str_at(t, "phase") ?: "";
                if (!STREQ(ph, "Running") && !STREQ(ph, "Waiting"))
                        continue;
                json_object_set_new(t, "phase", json_string("Interrupted"));
                json_object_set_new(t, "reason", json_string("RprdRestarted"));
                json_object_set_new(t, "leftover", json_string(json_str_at(found, key) ?: "None"));
        }
        json_object_set_new(st, "phase", json_string(resume ? "Pending" : "Interrupted"));
        json_object_set_new(st, "reason", json_string(resume ? "Resumed" : "RprdRestarted"));
        json_object_set_new(st, "message", json_string(resume ? "rprd restarted during the job: its unfinished tasks run again"
                                                              : "rprd restarted during the job (onInterrupt: fail)"));
        json_object_set_new(st, "resumes", json_integer(json_int_at(old, "resumes", 0) + resume));
        if (!resume)
                json_set_time(st, "endTime", now_usec());
        return st;
}

/* The job stays Running while a server is out of reach: says why. */
static json_t *waiting_next(const json_t *obj, void *userdata) {
        const json_t *old = json_object_get(obj, "status");

        if (!STREQ(json_str_at(old, "phase") ?: "", "Running"))
                return NULL;
        json_t *st = json_deep_copy(old);
        json_object_set_new(st, "reason", json_string("StoppingLeftover"));
        json_object_set_new(st, "message", json_string(userdata));
        if (json_equal(st, old)) {
                json_decref(st);
                return NULL;
        }
        return st;
}

/* Stops what is left of one instance; 0 with *ret set, or negative errno
 * (message in res) when its server cannot be reached now. */
static int reap_one(PipelineController *p, const char *ns, const char *job, const char *key, const json_t *t,
                    const char **ret, SshResult *res) {
        const char *server = json_str_at(t, "server");
        SshTarget local = {.id = "local", .transport = SSH_TRANSPORT_LOCAL};
        _cleanup_free_ char *id = xasprintf("%s.%s.%s", ns, job, key);
        _cleanup_free_ char *proc_dir = xasprintf("%s/.proc", p->run_dir);
        _cleanup_free_ char *error = NULL;
        ServerTarget *st = NULL;
        SshReap found = SSH_REAP_NONE;
        int r;

        if (server && server_target_get(p->servers, ns, server, &st, NULL, &error) < 0) {
                log_warning("job %s/%s: task %s: server %s cannot be used to stop what is left of it (%s)", ns,
                            job, key, server, error ?: "?");
                *ret = "Unknown";
                return 0;
        }
        if (st && server_target_is_agent(st)) {
                /* Its agent drops the job rprd no longer knows, at its next
                 * poll, and stops it: nothing to look for from here. */
                server_target_free(st);
                *ret = "Unknown";
                return 0;
        }
        SshTrack track = {.id = id, .local_dir = proc_dir};
        r = ssh_reap(p->ssh, st ? server_target(st) : &local, &track, REAP_GRACE_USEC, &found, res);
        server_target_free(st);
        if (r < 0)
                return r;
        log_info("job %s/%s: task %s was running when the last rprd stopped; its command: %s", ns, job, key,
                 ssh_reap_name(found));
        *ret = ssh_reap_name(found);
        return 0;
}

/* The job's own log says what was found, task by task. */
static void note_leftovers(PipelineController *p, const char *ns, const char *name, const json_t *found) {
        _cleanup_free_ char *path = run_log_path(p->run_dir, ns, name);
        const char *key;
        json_t *v;
        RunLog *l = NULL;

        if (run_log_open(path, &l) < 0)
                return;
        json_object_foreach((json_t *) found, key, v)
                run_log_note(l, "task %s was running when rprd stopped; what was left of it: %s", key,
                             json_string_value(v));
        run_log_close(l);
}

#define LOST_REAP_TRIES 10
#define LOST_REAP_PAUSE_USEC (3 * USEC_PER_SEC)

const char *job_reap_lost(PipelineController *p, const char *ns, const char *job, const char *key, const char *server,
                          const SshCancel *cancel) {
        _cleanup_json_ json_t *t = json_pack("{s:s}", "server", server);

        for (int k = 0; k < LOST_REAP_TRIES && !ssh_cancel_fired(cancel); k++) {
                const char *what = NULL;
                SshResult res = {0};
                if (reap_one(p, ns, job, key, t, &what, &res) >= 0)
                        return what;
                usleep(LOST_REAP_PAUSE_USEC);
        }
        return "Unknown";
}

/* Tasks on rprd's host that are not recorded Running or finished: what is
 * left of one that started before its Running reached the store. */
static void reap_local_unrecorded(PipelineController *p, const json_t *obj, const json_t *ends, json_t *found) {
        const json_t *meta = json_object_get(obj, "metadata");
        const json_t *tasks = json_object_get(json_object_get(obj, "status"), "tasks");
        const char *ns = json_str_at(meta, "namespace"), *name = json_str_at(meta, "name"), *key;
        json_t *def;

        json_object_foreach(json_object_get(json_object_get(obj, "spec"), "tasks"), key, def) {
                const char *phase = json_str_at(json_object_get(tasks, key), "phase");
                const char *what = NULL;
                SshResult res = {0};
                if (json_object_get(def, "server") || json_object_get(def, "servers") || task_finished(phase) ||
                    (phase && STREQ(phase, "Running")) || json_object_get(ends, key))
                        continue;
                if (reap_one(p, ns, name, key, NULL, &what, &res) >= 0 && !STREQ(what, "None"))
                        json_object_set_new(found, key, json_string(what));
        }
}

int job_recover(PipelineController *p, const json_t *obj, uint64_t *ret_requeue_after_usec) {
        const json_t *meta = json_object_get(obj, "metadata");
        const char *ns = json_str_at(meta, "namespace"), *name = json_str_at(meta, "name");
        _cleanup_json_ json_t *ends = job_ends_read(p, ns, name), *found = json_object();
        const char *key;
        json_t *t;

        json_object_foreach(json_object_get(json_object_get(obj, "status"), "tasks"), key, t) {
                const char *what = NULL;
                SshResult res = {0};
                const json_t *end = json_object_get(ends, key);
                if (!STREQ(json_str_at(t, "phase") ?: "", "Running") || (end && end_is_news(t, end)))
                        continue; /* not running, or its end is in the journal */
                if (reap_one(p, ns, name, key, t, &what, &res) < 0) {
                        _cleanup_free_ char *msg = xasprintf(
                                "rprd restarted during the job; waiting to reach server %s to stop what is left of "
                                "task %s before anything else runs: %s",
                                json_str_at(t, "server") ?: "?", key, res.message);
                        *ret_requeue_after_usec = REAP_RETRY_USEC;
                        return store_update_status(p->store, "Run", ns, name, waiting_next, msg, NULL);
                }
                json_object_set_new(found, key, json_string(what));
        }
        reap_local_unrecorded(p, obj, ends, found);
        Found f = {ends, found};
        int r = store_update_status(p->store, "Run", ns, name, interrupted_next, &f, NULL);
        if (r >= 0)
                job_ends_remove(p, ns, name); /* its ends are in the store now */
        if (r >= 0 && json_object_size(found) > 0)
                note_leftovers(p, ns, name, found);
        return r;
}
