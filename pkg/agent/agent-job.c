/* agent-job.c: one job's life on rprd's side — queued, offered under a
 * lease, accepted, its output taken by offset (each byte once, in order,
 * whatever the agent resends), finished with a byte count and a checksum
 * that must agree with what arrived; or canceled, expired, interrupted.
 * Every end goes to the job's sink exactly once. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "agent/agent-private.h"

AgentJobResult agent_result(AgentJobState state, const char *reason, const char *fmt, ...) {
        AgentJobResult r = {.state = state, .exit_code = -1, .reason = reason};
        va_list ap;

        va_start(ap, fmt);
        (void) vsnprintf_utf8(r.message, sizeof r.message, fmt, ap);
        va_end(ap);
        return r;
}

AgentJob *agent_job_of(Agents *a, const AgentHost *h, const char *id) {
        AgentJob *j = hashmap_get(a->jobs, id);

        /* Another agent's job is as unknown as one that never was. */
        return j && j->host == h ? j : NULL;
}

static void job_free(AgentJob *j) {
        free(j->command);
        json_decref(j->env);
        if (j->input) {
                explicit_bzero(j->input, strlen(j->input));
                free(j->input);
        }
        if (j->input_fd > 0)
                close(j->input_fd);
        for (int k = 0; k < AGENT_STREAMS; k++)
                EVP_MD_CTX_free(j->sha[k]);
        free(j);
}

/* A SHA-256 per stream, of all the output the job sends. */
static int job_digests_init(AgentJob *j) {
        for (int k = 0; k < AGENT_STREAMS; k++) {
                j->sha[k] = EVP_MD_CTX_new();
                if (!j->sha[k] || EVP_DigestInit_ex(j->sha[k], EVP_sha256(), NULL) != 1)
                        return -ENOMEM;
        }
        return 0;
}

void agent_job_end(Agents *a, AgentJob *job, const AgentJobResult *r, JobEnds *ends) {
        AgentHost *h = job->host;

        for (AgentJob **p = &h->jobs; *p; p = &(*p)->next)
                if (*p == job) {
                        *p = job->next;
                        break;
                }
        hashmap_remove(a->jobs, job->id);
        ends->items = xrealloc(ends->items, (ends->n + 1) * sizeof *ends->items);
        JobEnd *e = &ends->items[ends->n++];
        e->sink = job->sink;
        e->result = *r;
        e->result.bytes = job->offset[AGENT_STDOUT] + job->offset[AGENT_STDERR];
        e->result.duration_usec = job->started ? now_mono_usec() - job->started : 0;
        job_free(job);
}

void job_ends_report(JobEnds *ends) {
        for (size_t i = 0; i < ends->n; i++)
                if (ends->items[i].sink.done)
                        ends->items[i].sink.done(ends->items[i].sink.userdata, &ends->items[i].result);
        free(ends->items);
        *ends = (JobEnds){0};
}

static void wake(Agents *a, const char *ns, const char *server) {
        pthread_mutex_lock(&a->lock);
        AgentWakeFn fn = a->wake;
        void *userdata = a->wake_userdata;
        pthread_mutex_unlock(&a->lock);
        if (fn)
                fn(userdata, ns, server);
}

/* Copies a large input to a file only rprd holds (unlinked at once) and
 * takes its SHA-256, on the caller's thread. */
static int input_file(AgentJob *j, const void *data, size_t len) {
        const char *dir = getenv("TMPDIR") && *getenv("TMPDIR") ? getenv("TMPDIR") : "/var/tmp";
        _cleanup_free_ char *path = xasprintf("%s/rpr-agent-input-XXXXXX", dir);
        int fd = mkostemp(path, O_CLOEXEC);

        if (fd < 0)
                return -errno;
        (void) unlink(path);
        for (size_t done = 0; done < len;) {
                ssize_t n = write(fd, (const char *) data + done, len - done);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0) {
                        int e = n < 0 ? -errno : -EIO;
                        close(fd);
                        return e;
                }
                done += (size_t) n;
        }
        j->input_fd = fd;
        j->input_bytes = len;
        sha256_hex(data, len, j->input_sha256);
        return 0;
}

int agent_job_submit(Agents *a, const char *ns, const char *server, const AgentJobSpec *spec,
                     const AgentJobSink *sink, char ret_id[static AGENT_JOB_ID_LEN + 1]) {
        AgentJob *j = xcalloc(1, sizeof *j);
        int r;

        if (!spec->command || (spec->env && !json_is_object(spec->env)) ||
            spec->input_len > AGENT_INPUT_FILE_MAX) {
                free(j);
                return -EINVAL;
        }
        r = random_token(j->id, AGENT_JOB_ID_LEN);
        if (r < 0) {
                free(j);
                return r;
        }
        j->command = xstrdup(spec->command);
        j->env = spec->env ? json_deep_copy(spec->env) : NULL;
        if (spec->input && spec->input_len > AGENT_INPUT_MAX) {
                r = input_file(j, spec->input, spec->input_len);
                if (r < 0) {
                        job_free(j);
                        return r;
                }
        } else if (spec->input) {
                /* 4 characters for every 3 bytes, and the NUL. */
                j->input = xmalloc(4 * ((spec->input_len + 2) / 3) + 1);
                EVP_EncodeBlock((unsigned char *) j->input, spec->input, (int) spec->input_len);
        }
        j->timeout_usec = spec->timeout_usec;
        j->submitted = now_mono_usec();
        j->wait_deadline = spec->wait_usec ? j->submitted + spec->wait_usec : 0;
        j->online_only = spec->online_only;
        j->sink = *sink;
        j->streams = 1;
        if (job_digests_init(j) < 0) {
                job_free(j);
                return -ENOMEM;
        }

        pthread_mutex_lock(&a->lock);
        AgentHost *h = agent_host_get(a, ns, server, true);
        j->host = h;
        /* At the end of the host's list: offered in submission order. */
        AgentJob **p = &h->jobs;
        while (*p)
                p = &(*p)->next;
        *p = j;
        hashmap_put(a->jobs, j->id, j);
        if (ret_id)
                memcpy(ret_id, j->id, AGENT_JOB_ID_LEN + 1);
        pthread_mutex_unlock(&a->lock);

        wake(a, ns, server);
        return 0;
}

int agent_job_adopt(Agents *a, const char *ns, const char *server, const char *id, uint64_t wait_usec,
                    const AgentJobSink *sink) {
        AgentJob *j;

        if (!id || strlen(id) != AGENT_JOB_ID_LEN)
                return -EINVAL;
        j = xcalloc(1, sizeof *j);
        memcpy(j->id, id, AGENT_JOB_ID_LEN + 1);
        j->command = xstrdup("");
        j->submitted = now_mono_usec();
        j->lease_until = j->submitted + wait_usec;
        j->phase = JOB_ADOPTED;
        j->streams = 1;
        j->sink = *sink;
        if (job_digests_init(j) < 0) {
                job_free(j);
                return -ENOMEM;
        }

        pthread_mutex_lock(&a->lock);
        if (hashmap_get(a->jobs, id)) {
                pthread_mutex_unlock(&a->lock);
                job_free(j);
                return -EEXIST;
        }
        AgentHost *h = agent_host_get(a, ns, server, true);
        j->host = h;
        j->next = h->jobs;
        h->jobs = j;
        hashmap_put(a->jobs, j->id, j);
        pthread_mutex_unlock(&a->lock);
        return 0;
}

void agent_job_cancel(Agents *a, const char *id) {
        JobEnds ends = {0};
        _cleanup_free_ char *ns = NULL, *server = NULL;

        pthread_mutex_lock(&a->lock);
        AgentJob *j = hashmap_get(a->jobs, id);
        if (j && j->phase == JOB_QUEUED) {
                AgentJobResult r =
                        agent_result(AGENT_JOB_CANCELED, "Canceled", "canceled before the agent took it");
                agent_job_end(a, j, &r, &ends);
        } else if (j && !j->cancel) {
                j->cancel = true;
                ns = xstrdup(j->host->ns);
                server = xstrdup(j->host->server);
        }
        pthread_mutex_unlock(&a->lock);

        job_ends_report(&ends);
        if (ns)
                wake(a, ns, server);
}

void agent_job_interrupt(Agents *a, const char *id, const char *why) {
        JobEnds ends = {0};

        pthread_mutex_lock(&a->lock);
        AgentJob *j = hashmap_get(a->jobs, id);
        if (j) {
                AgentJobResult r = agent_result(AGENT_JOB_INTERRUPTED, "Interrupted", "%s", why);
                agent_job_end(a, j, &r, &ends);
        }
        pthread_mutex_unlock(&a->lock);
        job_ends_report(&ends);
}

void agent_job_abandon(Agents *a, const char *id) {
        pthread_mutex_lock(&a->lock);
        AgentJob *j = hashmap_get(a->jobs, id);
        if (j)
                j->sink = (AgentJobSink){0};
        pthread_mutex_unlock(&a->lock);
        agent_job_cancel(a, id);
}

/* ---- the agent's side ---------------------------------------------------------------- */

int agent_job_accept(Agents *a, const char *ns, const char *server, const char *id,
                     uint64_t *ret_lease_usec) {
        uint64_t now = now_mono_usec();
        int r = 0;

        pthread_mutex_lock(&a->lock);
        AgentHost *h = agent_host_get(a, ns, server, false);
        AgentJob *j = h ? agent_job_of(a, h, id) : NULL;
        if (!j)
                r = -ENOENT;
        else if (j->phase == JOB_RUNNING)
                r = 0; /* an accept sent again after its answer was lost */
        else if (j->phase != JOB_OFFERED || j->lease_until <= now || j->cancel)
                r = -ESTALE;
        if (r == 0 && j->phase != JOB_RUNNING) {
                j->phase = JOB_RUNNING;
                j->started = now;
        }
        if (r == 0) {
                j->lease_until = now + agent_lease_usec(h);
                *ret_lease_usec = agent_lease_usec(h);
        }
        pthread_mutex_unlock(&a->lock);
        return r;
}

int agent_job_input(Agents *a, const char *ns, const char *server, const char *id, int *ret_fd,
                    uint64_t *ret_bytes) {
        int r = 0;

        pthread_mutex_lock(&a->lock);
        AgentHost *h = agent_host_get(a, ns, server, false);
        AgentJob *j = h ? agent_job_of(a, h, id) : NULL;
        if (!j || j->input_fd <= 0)
                r = -ENOENT;
        else if ((j->phase != JOB_OFFERED && j->phase != JOB_RUNNING) || j->cancel)
                r = -ESTALE;
        else {
                r = fcntl(j->input_fd, F_DUPFD_CLOEXEC, 3);
                r = r < 0 ? -errno : r;
                *ret_bytes = j->input_bytes;
                if (r >= 0)
                        j->input_readers++;
        }
        pthread_mutex_unlock(&a->lock);
        if (r >= 0)
                *ret_fd = r;
        return r < 0 ? r : 0;
}

void agent_job_input_done(Agents *a, const char *ns, const char *server, const char *id) {
        pthread_mutex_lock(&a->lock);
        AgentHost *h = agent_host_get(a, ns, server, false);
        AgentJob *j = h ? agent_job_of(a, h, id) : NULL;
        if (j && j->input_readers > 0) {
                j->input_readers--;
                /* The agent polls again only once it has the input. */
                if (j->phase == JOB_RUNNING)
                        j->lease_until = MAX(j->lease_until, now_mono_usec() + agent_lease_usec(h));
        }
        pthread_mutex_unlock(&a->lock);
}

/* Output or an end for a job that is not running here: unknown right after a
 * restart, or taken back and not yet listed again by its agent's poll. Its
 * holder is told "not now" rather than "unknown", which would make it drop
 * the job. Another agent's job stays unknown. Under lock. */
static bool known_later(Agents *a, const AgentJob *j, const char *id) {
        if (j)
                return j->phase == JOB_ADOPTED;
        return !hashmap_get(a->jobs, id) && agents_recovering(a);
}

int agent_job_output(Agents *a, const char *ns, const char *server, const char *id, AgentStream stream,
                     uint64_t offset, const char *data, size_t n, uint64_t *ret_offset) {
        int r = 0;

        pthread_mutex_lock(&a->lock);
        AgentHost *h = agent_host_get(a, ns, server, false);
        AgentJob *j = h ? agent_job_of(a, h, id) : NULL;
        if (!j || j->phase != JOB_RUNNING) {
                bool later = known_later(a, j, id);
                pthread_mutex_unlock(&a->lock);
                return later ? -EAGAIN : -ENOENT;
        }
        if ((unsigned) stream >= j->streams) {
                pthread_mutex_unlock(&a->lock);
                return -EINVAL;
        }
        j->lease_until = now_mono_usec() + agent_lease_usec(h);
        uint64_t have = j->offset[stream];
        AgentJobSink sink = j->sink;
        pthread_mutex_unlock(&a->lock);

        *ret_offset = have;
        if (offset > have)
                return -ERANGE;
        if (offset + n <= have)
                return 0; /* all of it arrived before */

        /* Only the protocol's thread moves a job's offset: no other chunk
         * of this job can slip in between. The sink runs unlocked. */
        const char *fresh = data + (have - offset);
        size_t n_fresh = n - (size_t) (have - offset);
        if (sink.output && sink.output(sink.userdata, stream, fresh, n_fresh) < 0)
                return -EAGAIN;

        pthread_mutex_lock(&a->lock);
        j = agent_job_of(a, h, id);
        if (j) {
                EVP_DigestUpdate(j->sha[stream], fresh, n_fresh);
                j->offset[stream] += n_fresh;
                have = j->offset[stream];
        } else
                r = -ENOENT;
        pthread_mutex_unlock(&a->lock);
        *ret_offset = have;
        return r;
}

/* Whether the agent's count and checksum of one stream are what arrived. */
static bool stream_agrees(AgentJob *j, AgentStream s, uint64_t bytes, const char *sha256) {
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned md_len = 0;
        char hex[2 * EVP_MAX_MD_SIZE + 1] = "";

        EVP_DigestFinal_ex(j->sha[s], md, &md_len);
        for (unsigned i = 0; i < md_len; i++)
                snprintf(hex + 2 * i, 3, "%02x", md[i]);
        /* A stream the job does not have: nothing, and no checksum. */
        if ((unsigned) s >= j->streams)
                return bytes == 0 && !sha256;
        return bytes == j->offset[s] && sha256 && strlen(sha256) == 2 * md_len &&
               strcasecmp(sha256, hex) == 0;
}

static AgentJobResult finish_result(AgentJob *j, const AgentFinish *f) {
        const char *signal = f->signal ? f->signal : "";
        int exit_code = f->exit_code;

        for (int s = 0; s < AGENT_STREAMS; s++)
                if (!stream_agrees(j, (AgentStream) s, f->bytes[s], f->sha256[s]))
                        return agent_result(AGENT_JOB_FAILED, "OutputCorrupt",
                                            "the agent reported %llu bytes of %s with another checksum than "
                                            "the %llu bytes rprd received",
                                            (unsigned long long) f->bytes[s], s ? "stderr" : "output",
                                            (unsigned long long) j->offset[s]);
        if (j->cancel)
                return (AgentJobResult){.state = AGENT_JOB_CANCELED,
                                        .exit_code = exit_code,
                                        .reason = "Canceled",
                                        .message = "canceled"};
        AgentJobResult r = {.state = exit_code == 0 && !*signal ? AGENT_JOB_SUCCEEDED : AGENT_JOB_FAILED,
                            .exit_code = exit_code,
                            .reason = ""};
        snprintf(r.signal, sizeof r.signal, "%s", signal);
        if (*signal)
                snprintf(r.message, sizeof r.message, "killed by signal %s", signal);
        else if (exit_code != 0)
                snprintf(r.message, sizeof r.message, "exit code %d", exit_code);
        return r;
}

int agent_job_finish(Agents *a, const char *ns, const char *server, const char *id, const AgentFinish *f,
                     uint64_t ret_offsets[static AGENT_STREAMS]) {
        JobEnds ends = {0};
        int r = 0;

        pthread_mutex_lock(&a->lock);
        AgentHost *h = agent_host_get(a, ns, server, false);
        AgentJob *j = h ? agent_job_of(a, h, id) : NULL;
        if (!j || j->phase != JOB_RUNNING)
                r = known_later(a, j, id) ? -EBUSY : -ENOENT;
        else if (f->bytes[AGENT_STDOUT] > j->offset[AGENT_STDOUT] ||
                 f->bytes[AGENT_STDERR] > j->offset[AGENT_STDERR]) {
                memcpy(ret_offsets, j->offset, sizeof j->offset);
                r = -EAGAIN;
        } else {
                AgentJobResult res = finish_result(j, f);
                r = STREQ(res.reason, "OutputCorrupt") ? -EBADMSG : 0;
                agent_job_end(a, j, &res, &ends);
        }
        pthread_mutex_unlock(&a->lock);
        job_ends_report(&ends);
        return r;
}
