/* run.c: `rpr-agent run`, the agent's loop.
 *
 * One thread. Idle, it long-polls: rprd holds the poll until it has work
 * or the poll window (25 s) ends. Polls go over the poll stream (stream.c,
 * a connection of their own) when rprd offers it, else as POST requests;
 * everything else is an HTTPS request on the connection libcurl keeps. While jobs run it polls every second without waiting, which
 * is what renews their leases and brings cancels quickly, and between polls
 * it moves the jobs' output into their spools and from there to rprd.
 *
 * Output is never lost: a chunk is sent from the offset rprd last
 * acknowledged, and the spool keeps every byte until the job's end has
 * been taken. A failed request changes nothing but the time of the next
 * try: backoff from 1 s doubling to 60 s, each wait jittered by ±50% so
 * that agents cut off together do not come back together. */
#include <fcntl.h>
#include <openssl/evp.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "rpr-agent.h"

#define BACKOFF_MIN_USEC (1 * USEC_PER_SEC)
#define BACKOFF_MAX_USEC (60 * USEC_PER_SEC)
#define BUSY_POLL_USEC (1 * USEC_PER_SEC)
#define EXIT_REFUSED 3 /* revoked, or too old: restarting will not help */
#define INPUT_TRIES 5  /* downloads of a large input, each from where the last stopped */

typedef struct Agent {
        AgentConfig cfg;
        Client *client;
        PollStream *stream;      /* the poll stream, when open */
        bool stream_unsupported; /* rprd answered the upgrade otherwise: POST polls */
        Job *jobs;
        unsigned n_jobs;
        uint64_t backoff, next_poll; /* monotonic */
        bool connected, refused;
        uint64_t last_poll; /* realtime */
        char error[512];
} Agent;

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig) {
        (void) sig;
        stop_requested = 1;
}

/* ---- talking to rprd ---------------------------------------------------------------- */

static uint64_t jittered(uint64_t usec) {
        uint32_t r = 0;

        (void) random_bytes(&r, sizeof r);
        return usec / 2 + (uint64_t) ((double) usec * ((double) r / UINT32_MAX));
}

/* A request failed to get through: wait longer before the next poll. */
static void failed(Agent *a, const char *fmt, ...) _printf_(2, 3);
static void failed(Agent *a, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        vsnprintf_utf8(a->error, sizeof a->error, fmt, ap);
        va_end(ap);
        a->backoff = a->backoff ? MIN(a->backoff * 2, BACKOFF_MAX_USEC) : BACKOFF_MIN_USEC;
        a->next_poll = now_mono_usec() + jittered(a->backoff);
        if (a->connected || a->backoff == BACKOFF_MIN_USEC)
                log_warning("%s; trying again in about %.0f s", a->error,
                            (double) a->backoff / USEC_PER_SEC);
        a->connected = false;
}

/* POST path with body; 0 and *ret, or < 0 (already counted as a failure). */
static int post(Agent *a, const char *path, const char *content_type, const char *body, size_t len,
                ClientResponse *ret) {
        _cleanup_free_ char *error = NULL;
        int r = client_request(a->client, "POST", path, content_type, body, len, ret, &error);

        if (r == -EKEYREJECTED)
                failed(a,
                       "rprd at %s does not present the certificate this agent trusts (--fingerprint / "
                       "--ca): %s",
                       a->cfg.server, error);
        else if (r < 0)
                failed(a, "cannot reach rprd at %s: %s", a->cfg.server, error);
        return r;
}

static int post_json(Agent *a, const char *path, json_t *body, ClientResponse *ret) {
        _cleanup_free_ char *text = json_dumps(body, JSON_COMPACT);

        return post(a, path, "application/json", text, strlen(text), ret);
}

/* A refusal that waiting will not cure: the agent stops. */
static bool refused(Agent *a, const ClientResponse *res) {
        if (res->status != 401 && res->status != 403 && res->status != 426)
                return false;
        _cleanup_free_ char *msg = client_error_message(res);
        snprintf_utf8(a->error, sizeof a->error, "rprd refuses this agent (%ld): %s", res->status, msg);
        log_error("%s", a->error);
        a->refused = true;
        return true;
}

/* ---- what the agent tells ------------------------------------------------------------------ */

static void metrics_add(json_t *m) {
        _cleanup_free_ char *load = NULL, *mem = NULL, *up = NULL;
        size_t len;
        double v, total, avail;
        struct statvfs fs;

        if (read_file("/proc/loadavg", 4096, &load, &len) >= 0 && sscanf(load, "%lf", &v) == 1)
                json_object_set_new(m, "load1", json_real(v));
        if (read_file("/proc/meminfo", 65536, &mem, &len) >= 0 && strstr(mem, "MemTotal:") &&
            strstr(mem, "MemAvailable:") && sscanf(strstr(mem, "MemTotal:") + 9, "%lf", &total) == 1 &&
            sscanf(strstr(mem, "MemAvailable:") + 13, "%lf", &avail) == 1 && total > 0)
                json_object_set_new(m, "memUsedPercent", json_real((total - avail) * 100 / total));
        if (statvfs("/", &fs) == 0 && fs.f_blocks > 0)
                json_object_set_new(m, "diskUsedPercent",
                                    json_real((double) (fs.f_blocks - fs.f_bfree) * 100 /
                                              (double) (fs.f_blocks - fs.f_bfree + fs.f_bavail)));
        if (read_file("/proc/uptime", 4096, &up, &len) >= 0 && sscanf(up, "%lf", &v) == 1)
                json_object_set_new(m, "uptimeSeconds", json_integer((json_int_t) v));
}

static json_t *heartbeat(const Agent *a) {
        json_t *jobs = json_array(), *metrics = json_object();

        for (const Job *j = a->jobs; j; j = j->next)
                json_array_append_new(jobs,
                                      json_pack("{s:s, s:I, s:I, s:i}", "id", j->id, "offset",
                                                (json_int_t) j->out[0].acked, "errOffset",
                                                (json_int_t) j->out[1].acked, "streams", (int) j->streams));
        metrics_add(metrics);
        /* Not connected yet: a quick first answer, so that the agent (and
         * rpr-agent status) knows it is in before it waits. "streams": it
         * can keep stderr apart, for the jobs offered so. */
        return json_pack("{s:s, s:i, s:i, s:i, s:i, s:o, s:o}", "version", RPR_VERSION, "capacity",
                         a->cfg.capacity, "pollSeconds", a->cfg.poll_seconds, "wait",
                         a->jobs || !a->connected ? 0 : a->cfg.poll_seconds, "streams", JOB_STREAMS,
                         "metrics", metrics, "jobs", jobs);
}

static void status_write(const Agent *a) {
        _cleanup_free_ char *path = xasprintf("%s/status.json", a->cfg.state_dir);
        char when[RFC3339_MAX];
        json_t *jobs = json_array();

        for (const Job *j = a->jobs; j; j = j->next)
                json_array_append_new(jobs, json_pack("{s:s, s:I, s:I}", "id", j->id, "pid",
                                                      (json_int_t) j->pid, "bytes",
                                                      (json_int_t) (j->out[0].written + j->out[1].written)));
        _cleanup_json_ json_t *st =
                json_pack("{s:b, s:s?, s:s?, s:o}", "connected", a->connected, "lastPoll",
                          a->last_poll ? time_format_rfc3339(a->last_poll, when) : NULL, "error",
                          a->connected ? NULL : a->error, "jobs", jobs);
        _cleanup_free_ char *text = json_dumps(st, JSON_INDENT(2));
        (void) write_file_atomic(path, text, strlen(text), 0644);
}

/* ---- jobs ------------------------------------------------------------------------------------ */

static Job *job_find(Agent *a, const char *id) {
        for (Job *j = a->jobs; j; j = j->next)
                if (STREQ(j->id, id))
                        return j;
        return NULL;
}

static void job_remove(Agent *a, Job *job) {
        for (Job **p = &a->jobs; *p; p = &(*p)->next)
                if (*p == job) {
                        *p = job->next;
                        break;
                }
        a->n_jobs--;
        job_free(a->cfg.state_dir, job);
        /* Idle again: back to the long poll at once, unless backing off. */
        if (!a->jobs && a->connected)
                a->next_poll = now_mono_usec();
}

static void job_path(const char *id, const char *what, char *buf, size_t size) {
        _cleanup_free_ char *esc = client_escape(id);
        snprintf(buf, size, "/api/v1/agents/jobs/%s/%s", esc, what);
}

/* The offer's "input" (base64; absent: none) into bytes. */
static int input_decode(const char *b64, unsigned char **ret, size_t *ret_len) {
        size_t n = b64 ? strlen(b64) : 0;

        if (!b64)
                return 0;
        if (n % 4 != 0)
                return -EINVAL;
        unsigned char *data = xmalloc(n / 4 * 3 + 1);
        int got = n ? EVP_DecodeBlock(data, (const unsigned char *) b64, (int) n) : 0;
        if (got < 0) {
                free(data);
                return -EINVAL;
        }
        /* EVP_DecodeBlock counts the padding as data. */
        for (size_t k = n; k > 0 && b64[k - 1] == '='; k--)
                got--;
        *ret = data;
        *ret_len = (size_t) got;
        return 0;
}

/* The SHA-256 (hex) of all of fd. */
static int fd_sha256(int fd, char out[static 65]) {
        _cleanup_free_ char *buf = xmalloc(65536);
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned len = 0;
        EVP_MD_CTX *ctx = EVP_MD_CTX_new();
        ssize_t n;
        off_t at = 0;

        if (!ctx || !EVP_DigestInit_ex(ctx, EVP_sha256(), NULL)) {
                EVP_MD_CTX_free(ctx);
                return -ENOMEM;
        }
        while ((n = pread(fd, buf, 65536, at)) > 0) {
                EVP_DigestUpdate(ctx, buf, (size_t) n);
                at += n;
        }
        EVP_DigestFinal_ex(ctx, md, &len);
        EVP_MD_CTX_free(ctx);
        for (unsigned i = 0; i < len; i++)
                snprintf(out + 2 * i, 3, "%02x", md[i]);
        return n < 0 ? -errno : 0;
}

/* Downloads into fd (which holds *at bytes of an earlier, cut try) until
 * it has bytes, or the tries run out. 0, or < 0 with why. */
static int input_download(Agent *a, const char *id, int fd, uint64_t bytes, uint64_t *at, char *why,
                          size_t why_size) {
        char path[256];

        job_path(id, "input", path, sizeof path);
        for (int t = 0; t < INPUT_TRIES && *at < bytes; t++) {
                _cleanup_free_ char *error = NULL;
                long status = 0;
                if (*at > 0)
                        log_info("job %s: its input goes on from byte %llu of %llu", id,
                                 (unsigned long long) *at, (unsigned long long) bytes);
                int r = client_download(a->client, path, fd, at, &status, &error);
                if (r == 0 && status != 200 && status != 206) {
                        snprintf_utf8(why, why_size, "rprd answered %ld for its input: %s", status, error);
                        return -EIO;
                }
                if (r < 0)
                        log_warning("job %s: the download of its input stopped at byte %llu of %llu: %s", id,
                                    (unsigned long long) *at, (unsigned long long) bytes, error);
        }
        if (*at != bytes) {
                snprintf(why, why_size, "its input came to %llu bytes, not the %llu the offer says",
                         (unsigned long long) *at, (unsigned long long) bytes);
                return -EIO;
        }
        return 0;
}

/* A large input (the offer's inputBytes and inputSha256): downloaded into
 * a file of the job's (0600, removed at once), checked, then the job's.
 * Its fd, or < 0 with why (for the job's stderr). */
static int input_fetch(Agent *a, const json_t *offer, const char *id, char *why, size_t why_size) {
        _cleanup_free_ char *dir = xasprintf("%s/jobs", a->cfg.state_dir);
        _cleanup_free_ char *path = xasprintf("%s/%s.download", dir, id);
        json_int_t bytes = json_int_at(offer, "inputBytes", -1);
        const char *want = json_str_at(offer, "inputSha256");
        char got[65];
        uint64_t at = 0;
        int fd, r;

        if (bytes < 0 || !want) {
                snprintf(why, why_size, "the offer gives no size or checksum for its input");
                return -EINVAL;
        }
        (void) mkdir_p(dir, 0700);
        fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0) {
                r = -errno;
                snprintf(why, why_size, "cannot write its input to %s: %s", path, strerror(-r));
                return r;
        }
        /* Only the job will hold it. */
        (void) unlink(path);
        r = input_download(a, id, fd, (uint64_t) bytes, &at, why, why_size);
        if (r == 0)
                r = fd_sha256(fd, got);
        if (r == 0 && !STREQ(got, want)) {
                snprintf_utf8(why, why_size, "its input's sha256 is %s, not the %.64s the offer says", got,
                              want);
                r = -EBADMSG;
        }
        if (r < 0) {
                close(fd);
                return r;
        }
        return fd;
}

/* The job's stdin: inline (base64 "input"), downloaded, or none (-1).
 * < 0 other than -1 with why when it cannot be had. */
static int input_of(Agent *a, const json_t *offer, const char *id, int *ret_fd, char *why, size_t why_size) {
        _cleanup_free_ unsigned char *input = NULL;
        size_t input_len = 0;

        *ret_fd = -1;
        if (json_object_get(offer, "inputBytes")) {
                int fd = input_fetch(a, offer, id, why, why_size);
                if (fd < 0)
                        return fd;
                *ret_fd = fd;
                return 0;
        }
        if (input_decode(json_str_at(offer, "input"), &input, &input_len) < 0) {
                snprintf(why, why_size, "its input is not base64");
                return -EINVAL;
        }
        if (!input)
                return 0;
        int fd = job_input_write(a->cfg.state_dir, id, input, input_len);
        explicit_bzero(input, input_len);
        if (fd < 0) {
                snprintf(why, why_size, "cannot write its input: %s", strerror(-fd));
                return fd;
        }
        *ret_fd = fd;
        return 0;
}

/* A job whose input could not be had still runs, as a command that says
 * why on its stderr and exits 125: rprd and its caller see a clear failure,
 * not a lost job. The reason goes through the environment, not the
 * command line. */
static const char input_failed_command[] = "printf 'rpr-agent: %s\n' \"$RPR_AGENT_ERROR\" >&2; exit 125";

/* Takes an offer: accepted first, started only then. */
static void offer_take(Agent *a, const json_t *offer) {
        const char *id = json_str_at(offer, "id"), *command = json_str_at(offer, "command");
        ClientResponse res = {0};
        char path[256];
        Job *j = NULL;

        if (!id || !command || strlen(id) > 48 || job_find(a, id) || a->n_jobs >= a->cfg.capacity)
                return;
        job_path(id, "accept", path, sizeof path);
        if (post(a, path, NULL, NULL, 0, &res) < 0)
                return;
        long status = res.status;
        client_response_clear(&res);
        if (status != 200)
                return; /* the offer lapsed: it comes again */
        char why[400] = "";
        int stdin_fd = -1;
        _cleanup_json_ json_t *error_env = NULL;
        const json_t *env = json_object_get(offer, "env");
        if (input_of(a, offer, id, &stdin_fd, why, sizeof why) < 0) {
                log_error("job %s: %s", id, why);
                error_env = json_pack("{s:s}", "RPR_AGENT_ERROR", why);
                command = input_failed_command;
                env = error_env;
        }
        int r = job_start(a->cfg.state_dir, id, command, env, stdin_fd,
                          (unsigned) json_int_at(offer, "streams", 1),
                          (uint64_t) json_int_at(offer, "timeoutSeconds", 0) * USEC_PER_SEC, &j);
        if (r < 0) {
                log_error_errno(r, "cannot start job %s: %m", id);
                /* rprd learns it through the lease: the job is not listed. */
                return;
        }
        log_info("job %s started (pid %d)", id, (int) j->pid);
        j->next = a->jobs;
        a->jobs = j;
        a->n_jobs++;
}

static void answer_read(Agent *a, const json_t *ans) {
        const json_t *v;
        const char *key;
        size_t i;

        json_array_foreach(json_object_get(ans, "drop"), i, v) {
                Job *j = json_string_value(v) ? job_find(a, json_string_value(v)) : NULL;
                if (j)
                        job_remove(a, j);
        }
        for (unsigned s = 0; s < JOB_STREAMS; s++)
                json_object_foreach((json_t *) json_object_get(ans, s ? "ackErr" : "ack"), key, v) {
                        Job *j = job_find(a, key);
                        json_int_t off = json_integer_value(v);
                        if (j && off >= 0 && (uint64_t) off <= j->out[s].written)
                                j->out[s].acked = (uint64_t) off;
                }
        json_array_foreach(json_object_get(ans, "cancel"), i, v) {
                Job *j = json_string_value(v) ? job_find(a, json_string_value(v)) : NULL;
                if (j && !j->canceled) {
                        log_info("job %s canceled by rprd", j->id);
                        j->canceled = true;
                        job_cancel(j);
                }
        }
        json_array_foreach(json_object_get(ans, "offers"), i, v) {
                offer_take(a, v);
        }
}

/* A poll answered (ans: its JSON, or NULL when it was not JSON). */
static void poll_answered(Agent *a, const json_t *ans) {
        if (!a->connected)
                log_info("connected to %s as server %s/%s%s", a->cfg.server, a->cfg.ns, a->cfg.name,
                         a->stream ? " (poll stream)" : "");
        a->connected = true;
        a->backoff = 0;
        a->last_poll = now_usec();
        a->next_poll = now_mono_usec() + (a->jobs ? BUSY_POLL_USEC : 0);
        answer_read(a, ans);
        if (a->jobs)
                a->next_poll = now_mono_usec() + BUSY_POLL_USEC;
}

static void poll_post(Agent *a, const json_t *hb) {
        ClientResponse res = {0};

        if (post_json(a, "/api/v1/agents/poll", (json_t *) hb, &res) < 0) {
                a->stream_unsupported = false; /* the next rprd may have it */
                return;
        }
        if (refused(a, &res) || res.status != 200) {
                if (!a->refused)
                        failed(a, "rprd answered the poll with %ld", res.status);
                client_response_clear(&res);
                return;
        }
        _cleanup_json_ json_t *ans = json_loads(res.body, 0, NULL);
        client_response_clear(&res);
        poll_answered(a, ans);
}

/* Opens the poll stream if there is none; false when this poll cannot go
 * out (counted as a failure) or goes as a POST (stream_unsupported). */
static bool stream_ready(Agent *a) {
        char error[256];
        long status = 0;
        int r;

        if (a->stream)
                return true;
        r = poll_stream_open(&a->cfg, &a->stream, &status, error, sizeof error);
        if (r == -EPROTONOSUPPORT) {
                log_info("%s: polling with POST requests", error);
                a->stream_unsupported = true;
        } else if (r == -EKEYREJECTED)
                failed(a, "rprd at %s does not present the certificate this agent trusts (--fingerprint / --ca): %s",
                       a->cfg.server, error);
        else if (r < 0)
                failed(a, "cannot reach rprd at %s: %s", a->cfg.server, error);
        return r >= 0;
}

static void poll_stream(Agent *a, const json_t *hb) {
        uint64_t timeout = (a->cfg.poll_seconds + 15) * USEC_PER_SEC;
        json_t *ans = NULL;
        char error[256];
        int r = poll_stream_poll(a->stream, hb, timeout, &stop_requested, &ans, error, sizeof error);

        if (r < 0) {
                poll_stream_free(TAKE_PTR(a->stream));
                if (r != -EINTR)
                        failed(a, "%s", error);
                return;
        }
        if (STREQ(json_str_at(ans, "kind") ?: "", "Status")) {
                /* rprd ended the stream saying why: the same as a POST's answer. */
                ClientResponse res = {.status = (long) json_int_at(ans, "code", 500)};
                poll_stream_free(TAKE_PTR(a->stream));
                res.body = json_dumps(ans, JSON_COMPACT);
                res.len = strlen(res.body);
                if (!refused(a, &res))
                        failed(a, "rprd ended the poll stream with %ld: %s", res.status,
                               json_str_at(ans, "message") ?: "");
                client_response_clear(&res);
        } else
                poll_answered(a, ans);
        json_decref(ans);
}

static void poll_once(Agent *a) {
        _cleanup_json_ json_t *hb = heartbeat(a);

        if (!a->stream_unsupported && !stream_ready(a) && !a->stream_unsupported)
                return;
        if (a->stream)
                poll_stream(a, hb);
        else
                poll_post(a, hb);
}

/* Sends what rprd has not acknowledged yet of stream s, chunk by chunk.
 * false when a request failed (try again later). */
static bool stream_send(Agent *a, Job *j, unsigned s) {
        static char chunk[AGENT_CHUNK_MAX];
        char path[256], url[340];
        JobStream *st = &j->out[s];

        job_path(j->id, "output", path, sizeof path);
        while (st->acked < st->written) {
                ssize_t n = job_read(j, s, st->acked, chunk, sizeof chunk);
                ClientResponse res = {0};
                if (n <= 0)
                        return false;
                snprintf(url, sizeof url, "%s?offset=%llu%s", path, (unsigned long long) st->acked,
                         s ? "&stream=stderr" : "");
                if (post(a, url, "application/octet-stream", chunk, (size_t) n, &res) < 0)
                        return false;
                _cleanup_json_ json_t *ans = json_loads(res.body ? res.body : "", 0, NULL);
                long status = res.status;
                client_response_clear(&res);
                json_int_t off = json_int_at(ans, "offset", -1);
                if (status == 404) {
                        log_warning("rprd no longer knows job %s; dropping it", j->id);
                        job_remove(a, j);
                        return false;
                }
                if ((status != 200 && status != 416) || off < 0 || (uint64_t) off > st->written)
                        return false; /* 503: not now */
                st->acked = (uint64_t) off;
        }
        return true;
}

static bool output_send(Agent *a, Job *j) {
        for (unsigned s = 0; s < j->streams; s++)
                if (!stream_send(a, j, s))
                        return false;
        return true;
}

/* The end, once the process is gone and rprd has all of its output. */
static void finish_send(Agent *a, Job *j) {
        char path[256], sha[JOB_STREAMS][65];
        ClientResponse res = {0};

        if (!job_done(j))
                return;
        for (unsigned s = 0; s < j->streams; s++)
                if (j->out[s].acked < j->out[s].written || job_checksum(j, s, sha[s]) < 0)
                        return;
        job_path(j->id, "finish", path, sizeof path);
        _cleanup_json_ json_t *body =
                json_pack("{s:i, s:s, s:I, s:s}", "exitCode", j->exit_code, "signal", j->signal, "bytes",
                          (json_int_t) j->out[0].written, "sha256", sha[0]);
        if (j->streams == JOB_STREAMS) {
                json_object_set_new(body, "errBytes", json_integer((json_int_t) j->out[1].written));
                json_object_set_new(body, "errSha256", json_string(sha[1]));
        }
        if (post_json(a, path, body, &res) < 0)
                return;
        _cleanup_json_ json_t *ans = json_loads(res.body ? res.body : "", 0, NULL);
        long status = res.status;
        client_response_clear(&res);
        if (status == 409) {
                for (unsigned s = 0; s < j->streams; s++) {
                        json_int_t off = json_int_at(ans, s ? "errOffset" : "offset", -1);
                        if (off >= 0 && (uint64_t) off <= j->out[s].written)
                                j->out[s].acked = (uint64_t) off;
                }
                return;
        }
        if (status >= 500)
                return;
        log_info("job %s finished: exit %d%s%s, %llu bytes", j->id, j->exit_code,
                 *j->signal ? ", signal " : "", j->signal,
                 (unsigned long long) (j->out[0].written + j->out[1].written));
        job_remove(a, j);
}

static void jobs_service(Agent *a) {
        usleep(50 * USEC_PER_MSEC);
        for (Job *j = a->jobs, *next; j; j = next) {
                next = j->next;
                job_pump(a->cfg.state_dir, j);
        }
        for (Job *j = a->jobs, *next; j && a->connected; j = next) {
                next = j->next;
                if (output_send(a, j))
                        finish_send(a, j);
        }
}

static void loop(Agent *a) {
        while (!stop_requested && !a->refused) {
                uint64_t now = now_mono_usec();

                if (now >= a->next_poll) {
                        poll_once(a);
                        status_write(a);
                }
                if (a->refused)
                        break;
                if (a->jobs)
                        jobs_service(a);
                else if (now_mono_usec() < a->next_poll)
                        usleep((useconds_t) MIN(a->next_poll - now_mono_usec(), 200 * USEC_PER_MSEC));
        }
}

int agent_run(const char *state_dir, unsigned poll_seconds, unsigned capacity) {
        Agent a = {0};
        struct sigaction sa = {.sa_handler = on_signal};
        int r;

        r = config_load(state_dir, &a.cfg);
        if (r < 0)
                return r;
        if (poll_seconds)
                a.cfg.poll_seconds = poll_seconds;
        if (capacity)
                a.cfg.capacity = capacity;
        r = agent_client(a.cfg.server, a.cfg.ca, a.cfg.fingerprint, a.cfg.credential, &a.client);
        if (r < 0) {
                config_clear(&a.cfg);
                return r;
        }
        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGINT, &sa, NULL);
        log_info("rpr-agent %s serving server %s/%s of %s", RPR_VERSION, a.cfg.ns, a.cfg.name, a.cfg.server);
        a.n_jobs = (unsigned) job_load(a.cfg.state_dir, &a.jobs);
        if (a.n_jobs > 0)
                log_info("%u job(s) left by the last agent: rprd says which go on", a.n_jobs);

        loop(&a);

        while (a.jobs)
                job_remove(&a, a.jobs);
        a.connected = false;
        status_write(&a);
        poll_stream_free(a.stream);
        client_free(a.client);
        config_clear(&a.cfg);
        return a.refused ? -EACCES : 0;
}
