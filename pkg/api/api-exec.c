/* api-exec: POST /api/v1/exec, one command on many Servers, its output
 * streamed back as newline-delimited JSON while it runs.
 *
 * The one idea: output crosses from the worker threads to the loop through
 * one bounded buffer per request. Each exec request gets its own threads
 * (as many as it may run at once), which take the next server, run the
 * command with ssh_run() and append output lines to `pending`; a thread
 * whose output would grow `pending` past EXEC_PENDING_MAX waits until the
 * loop has handed it to h2o, and h2o only takes the next piece once the
 * client has read the last. So a slow reader slows the commands down, and
 * rprd's memory stays flat whatever they print. A client that goes away
 * cancels every command.
 *
 * A Server of transport agent takes no thread while its command runs: the
 * thread hands the command to pkg/agent and moves on, and the agent's
 * output and end arrive on the loop through the job's sink; a chunk that
 * would grow `pending` past its bound is refused for now, and the agent
 * sends it again.
 *
 * Lifetime: the ApiExec is freed on the loop once the request is gone, no
 * thread runs, no agent job is held and no wake-up is on its way; `lock`
 * guards what the threads and the loop share. */
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include "agent/agent.h"
#include "api/api-private.h"
#include "server/server.h"
#include "ssh/ssh.h"

#define EXEC_PENDING_MAX (1024u * 1024)
#define EXEC_THREAD_STACK (1024u * 1024)

typedef struct ExecTarget {
        ApiExec *exec;
        char *name;
        bool inactive;
        SshCancel *cancel;
        Buf line; /* the thread's scratch buffer for one output line */
        char agent_job[AGENT_JOB_ID_LEN + 1]; /* transport agent: its job, until it ends */
        uint64_t agent_start;
        /* The start of a UTF-8 sequence cut at the end of a chunk, per stream. */
        unsigned char partial[2][4];
        size_t n_partial[2];
} ExecTarget;

struct ExecRef {
        ApiExec *exec;
};

struct ApiExec {
        ApiStream stream; /* first: h2o calls back with it */
        h2o_multithread_message_t msg;
        ApiServer *api;
        ApiExec *prev, *next;
        struct ExecRef *ref; /* in the request's pool; NULL once the request is gone */

        char *ns, *command;
        uint64_t timeout_usec;
        ExecTarget *targets;
        size_t n_targets;

        pthread_mutex_t lock;
        pthread_cond_t drained;
        Buf pending;        /* lines for the loop to send */
        size_t next_target; /* the next server a thread takes */
        unsigned running;   /* threads not finished */
        unsigned agent_jobs; /* agent jobs not ended */
        size_t n_failed;
        unsigned threads; /* taken from the global budget, given back on free */
        bool gone;        /* the client went: stop */
        bool stopping;    /* canceled: start no more servers */
        bool wakeup_sent; /* msg is on its way to the loop */
        bool complete;    /* the last line is in pending */
};

/* ---- JSON lines ------------------------------------------------------------------ */

/* Appends data as the inside of a JSON string: valid UTF-8 as is, every
 * invalid byte as U+FFFD. Returns how many bytes at the end were left
 * because they may start a sequence that the next chunk completes. */
static size_t json_escape_utf8(Buf *b, const unsigned char *p, size_t n, bool last) {
        static const char hex[] = "0123456789abcdef";
        const unsigned char *end = p + n, *run = p;

        while (p < end) {
                unsigned char c = *p;
                if (c >= 0x20 && c != '"' && c != '\\' && c < 0x80) {
                        p++;
                        continue;
                }
                buf_append(b, run, p - run);
                if (c < 0x80) {
                        char esc[7] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15], 0};
                        if (c == '"' || c == '\\')
                                esc[1] = (char) c, esc[2] = 0;
                        else if (c == '\n')
                                esc[1] = 'n', esc[2] = 0;
                        else if (c == '\t')
                                esc[1] = 't', esc[2] = 0;
                        else if (c == '\r')
                                esc[1] = 'r', esc[2] = 0;
                        buf_puts(b, esc);
                        p++;
                } else {
                        int len = utf8_char_len(p, end);
                        if (len < 0 && !last) {
                                run = p;
                                return end - p;
                        }
                        if (len <= 0) {
                                buf_puts(b, "\\ufffd");
                                p++;
                        } else {
                                buf_append(b, p, len);
                                p += len;
                        }
                }
                run = p;
        }
        buf_append(b, run, p - run);
        return 0;
}

/* {"server":NAME,"stream":S,"data":...}\n into t->line, with what was
 * cut off last time in front. */
static void output_line(ExecTarget *t, SshStream stream, const char *data, size_t n, bool last) {
        size_t s = stream == SSH_STDERR ? 1 : 0;
        _cleanup_free_ unsigned char *joined = NULL;
        const unsigned char *p = (const unsigned char *) data;

        if (t->n_partial[s] > 0) {
                joined = xmalloc(t->n_partial[s] + n);
                memcpy(joined, t->partial[s], t->n_partial[s]);
                memcpy(joined + t->n_partial[s], data, n);
                n += t->n_partial[s];
                p = joined;
                t->n_partial[s] = 0;
        }

        t->line.len = 0;
        buf_puts(&t->line, "{\"server\":\"");
        json_escape_utf8(&t->line, (const unsigned char *) t->name, strlen(t->name), true);
        buf_printf(&t->line, "\",\"stream\":\"%s\",\"data\":\"", s ? "stderr" : "stdout");
        size_t left = json_escape_utf8(&t->line, p, n, last);
        buf_puts(&t->line, "\"}\n");
        memcpy(t->partial[s], p + n - left, left);
        t->n_partial[s] = left;
}

/* ---- the threads' side -------------------------------------------------------------- */

/* Under lock: whether the caller must send the wake-up (after unlocking). */
static bool wakeup_needed_locked(ApiExec *e) {
        if (e->wakeup_sent)
                return false;
        e->wakeup_sent = true;
        return true;
}

static void wakeup_send(ApiExec *e) {
        h2o_multithread_send_message(&e->api->exec_receiver, &e->msg);
}

/* Appends text to pending, waiting while the client is behind. -ECANCELED
 * when the client has gone. */
static int pending_append(ApiExec *e, const char *text, size_t len) {
        bool send;

        pthread_mutex_lock(&e->lock);
        while (e->pending.len > EXEC_PENDING_MAX && !e->gone)
                pthread_cond_wait(&e->drained, &e->lock);
        if (e->gone) {
                pthread_mutex_unlock(&e->lock);
                return -ECANCELED;
        }
        buf_append(&e->pending, text, len);
        send = wakeup_needed_locked(e);
        pthread_mutex_unlock(&e->lock);
        if (send)
                wakeup_send(e);
        return 0;
}

/* From the loop: appends without waiting (the lines are small, or were
 * bounded by the caller). */
static void pending_push(ApiExec *e, const char *text, size_t len) {
        pthread_mutex_lock(&e->lock);
        buf_append(&e->pending, text, len);
        bool send = wakeup_needed_locked(e);
        pthread_mutex_unlock(&e->lock);
        if (send)
                wakeup_send(e);
}

/* Under lock: the last line once no thread runs and no agent job is held. */
static void complete_if_last_locked(ApiExec *e) {
        if (e->running > 0 || e->agent_jobs > 0 || e->complete)
                return;
        buf_printf(&e->pending, "{\"kind\":\"ExecResult\",\"servers\":%zu,\"failed\":%zu}\n", e->n_targets,
                   e->n_failed);
        e->complete = true;
}

static int on_output(void *userdata, SshStream stream, const char *data, size_t n) {
        ExecTarget *t = userdata;

        output_line(t, stream, data, n, false);
        return pending_append(t->exec, t->line.data, t->line.len);
}

/* What is still cut off at the end of the output becomes U+FFFD. */
static void output_finish(ExecTarget *t) {
        for (SshStream s = SSH_STDOUT; s <= SSH_STDERR; s++)
                if (t->n_partial[s == SSH_STDERR ? 1 : 0] > 0) {
                        output_line(t, s, "", 0, true);
                        (void) pending_append(t->exec, t->line.data, t->line.len);
                }
}

/* The result line of t into t->line; counts a failure. */
static void result_format(ExecTarget *t, int exit_code, const char *signal, const char *reason,
                          const char *message, uint64_t usec) {
        _cleanup_json_ json_t *j = json_pack("{s:s, s:i, s:s, s:s, s:s, s:f}", "server", t->name, "exitCode",
                                             exit_code, "signal", signal, "reason", reason, "message",
                                             message, "durationSeconds", (double) usec / USEC_PER_SEC);
        bool failed = exit_code != 0 || *signal || *reason;

        _cleanup_free_ char *text = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(6));
        t->line.len = 0;
        buf_printf(&t->line, "%s\n", text ? text : "{}");
        if (failed) {
                pthread_mutex_lock(&t->exec->lock);
                t->exec->n_failed++;
                pthread_mutex_unlock(&t->exec->lock);
        }
}

static void result_line(ExecTarget *t, int exit_code, const char *signal, const char *reason,
                        const char *message, uint64_t usec) {
        result_format(t, exit_code, signal, reason, message, usec);
        (void) pending_append(t->exec, t->line.data, t->line.len);
}

/* ---- transport agent: no thread while it runs ------------------------------------------ */

/* On the loop: output of the agent's job. */
static int agent_output(void *userdata, AgentStream stream, const char *data, size_t n) {
        ExecTarget *t = userdata;
        ApiExec *e = t->exec;

        pthread_mutex_lock(&e->lock);
        bool full = e->pending.len > EXEC_PENDING_MAX, gone = e->gone;
        pthread_mutex_unlock(&e->lock);
        if (gone)
                return 0; /* taken and dropped: no one reads it */
        if (full)
                return -EAGAIN;
        output_line(t, stream == AGENT_STDERR ? SSH_STDERR : SSH_STDOUT, data, n, false);
        pending_push(e, t->line.data, t->line.len);
        return 0;
}

/* On the loop (or the canceling thread, for a job not yet offered): its end. */
static void agent_done(void *userdata, const AgentJobResult *r) {
        ExecTarget *t = userdata;
        ApiExec *e = t->exec;

        for (int s = 0; s < 2; s++)
                if (t->n_partial[s] > 0) {
                        output_line(t, s ? SSH_STDERR : SSH_STDOUT, "", 0, true);
                        pending_push(e, t->line.data, t->line.len);
                }
        result_format(t, r->exit_code, r->signal, r->reason ? r->reason : "", r->message,
                      r->duration_usec ? r->duration_usec : now_mono_usec() - t->agent_start);
        pthread_mutex_lock(&e->lock);
        buf_append(&e->pending, t->line.data, t->line.len);
        t->agent_job[0] = '\0';
        e->agent_jobs--;
        complete_if_last_locked(e);
        bool send = wakeup_needed_locked(e);
        pthread_mutex_unlock(&e->lock);
        if (send)
                wakeup_send(e);
}

/* Hands the command to the agent and returns at once. */
static void agent_start(ExecTarget *t) {
        ApiExec *e = t->exec;
        SshCommand cmd = {.script = e->command, .timeout_usec = e->timeout_usec};
        AgentJobSink sink = {.output = agent_output, .done = agent_done, .userdata = t};
        char id[AGENT_JOB_ID_LEN + 1];

        if (!e->api->agents) {
                result_line(t, -1, "", "ExecFailed", "this rprd serves no agents", 0);
                return;
        }
        t->agent_start = now_mono_usec();
        pthread_mutex_lock(&e->lock);
        e->agent_jobs++; /* before: its end may come before submit returns */
        pthread_mutex_unlock(&e->lock);
        int r = server_agent_submit(e->api->agents, e->ns, t->name, &cmd, 0, &sink, id);
        pthread_mutex_lock(&e->lock);
        if (r < 0)
                e->agent_jobs--;
        else if (!e->stopping)
                memcpy(t->agent_job, id, sizeof id);
        bool cancel = r >= 0 && e->stopping;
        pthread_mutex_unlock(&e->lock);
        if (r < 0)
                result_line(t, -1, "", "ExecFailed", strerror(-r), 0);
        if (cancel)
                agent_job_cancel(e->api->agents, id);
}

static void run_target(ExecTarget *t) {
        ApiExec *e = t->exec;
        uint64_t start = now_mono_usec();
        _cleanup_free_ char *error = NULL;
        ServerTarget *st = NULL;
        SshResult res = {0};
        int r;

        if (t->inactive) {
                result_line(t, -1, "", "Inactive", "the server is inactive (spec.active is false)", 0);
                return;
        }
        if (server_uses_agent(e->api->store, e->ns, t->name)) {
                agent_start(t);
                return;
        }
        const char *reason = NULL;
        r = server_target_get(e->api->servers, e->ns, t->name, &st, &reason, &error);
        if (r < 0) {
                result_line(t, -1, "", r == -ENOENT ? "NotFound" : reason ? reason : "ExecFailed",
                            error ? error : strerror(-r),
                            now_mono_usec() - start);
                return;
        }

        SshCommand cmd = {.script = e->command,
                          .timeout_usec = e->timeout_usec,
                          .output = on_output,
                          .userdata = t,
                          .cancel = t->cancel};
        (void) ssh_run(e->api->ssh, server_target(st), &cmd, &res);
        server_target_free(st);
        output_finish(t);
        result_line(t, res.failure == SSH_OK ? res.exit_code : -1, res.signal,
                    res.failure == SSH_OK ? "" : ssh_failure_reason(res.failure), res.message,
                    res.duration_usec ? res.duration_usec : now_mono_usec() - start);
}

static void *exec_thread(void *userdata) {
        ApiExec *e = userdata;
        bool send;

        for (;;) {
                pthread_mutex_lock(&e->lock);
                bool stop = e->next_target >= e->n_targets, canceled = e->stopping;
                size_t i = e->next_target++;
                pthread_mutex_unlock(&e->lock);
                if (stop)
                        break;
                if (canceled)
                        result_line(&e->targets[i], -1, "", "Canceled", "canceled before it started", 0);
                else
                        run_target(&e->targets[i]);
        }

        /* The last thread writes the last line. After the unlock this
         * thread may touch e only to send the wake-up it claimed. */
        pthread_mutex_lock(&e->lock);
        e->running--;
        complete_if_last_locked(e);
        send = wakeup_needed_locked(e);
        pthread_mutex_unlock(&e->lock);
        if (send)
                wakeup_send(e);
        return NULL;
}

/* ---- the loop's side ------------------------------------------------------------------- */

static void exec_free(ApiExec *e) {
        ApiServer *a = e->api;

        if (e->prev)
                e->prev->next = e->next;
        else
                a->execs = e->next;
        if (e->next)
                e->next->prev = e->prev;
        a->n_execs--;

        for (size_t i = 0; i < e->n_targets; i++) {
                free(e->targets[i].name);
                ssh_cancel_free(e->targets[i].cancel);
                buf_free(&e->targets[i].line);
        }
        free(e->targets);
        api_exec_threads_give(a, e->threads);
        api_stream_clear(&e->stream);
        buf_free(&e->pending);
        pthread_mutex_destroy(&e->lock);
        pthread_cond_destroy(&e->drained);
        free(e->ns);
        free(e->command);
        free(e);
}

static void exec_maybe_free(ApiExec *e) {
        pthread_mutex_lock(&e->lock);
        bool idle = e->running == 0 && e->agent_jobs == 0 && !e->wakeup_sent;
        pthread_mutex_unlock(&e->lock);
        if (idle && !e->ref)
                exec_free(e);
}

/* Stops the commands. With gone (the client went) nothing more is
 * queued; else (rprd stops) the results still go out, as Canceled. */
static void exec_cancel(ApiExec *e, bool gone) {
        pthread_mutex_lock(&e->lock);
        e->gone = e->gone || gone;
        e->stopping = true;
        pthread_cond_broadcast(&e->drained);
        pthread_mutex_unlock(&e->lock);
        for (size_t i = 0; i < e->n_targets; i++) {
                ssh_cancel_fire(e->targets[i].cancel);
                pthread_mutex_lock(&e->lock);
                char id[AGENT_JOB_ID_LEN + 1];
                memcpy(id, e->targets[i].agent_job, sizeof id);
                pthread_mutex_unlock(&e->lock);
                if (*id)
                        agent_job_cancel(e->api->agents, id);
        }
}

static void exec_pump(ApiExec *e) {
        ApiStream *s = &e->stream;

        if (!s->req || s->in_flight || s->ended)
                return;
        pthread_mutex_lock(&e->lock);
        if (s->queued.len == 0) {
                Buf t = s->queued;
                s->queued = e->pending;
                e->pending = t;
                if (e->complete && e->pending.len == 0)
                        s->final = true;
                pthread_cond_broadcast(&e->drained);
        }
        pthread_mutex_unlock(&e->lock);
        api_stream_flush(s);
}

static void on_refill(ApiStream *s) {
        exec_pump((ApiExec *) s);
}

static void exec_ref_dispose(void *p) {
        struct ExecRef *ref = p;
        ApiExec *e = ref->exec;

        e->ref = NULL;
        e->stream.req = NULL;
        exec_cancel(e, true);
        exec_maybe_free(e);
}

static void on_exec_messages(h2o_multithread_receiver_t *receiver, h2o_linklist_t *messages) {
        (void) receiver;

        while (!h2o_linklist_is_empty(messages)) {
                ApiExec *e = H2O_STRUCT_FROM_MEMBER(ApiExec, msg.link, messages->next);

                h2o_linklist_unlink(&e->msg.link);
                pthread_mutex_lock(&e->lock);
                e->wakeup_sent = false;
                pthread_mutex_unlock(&e->lock);
                exec_pump(e);
                exec_maybe_free(e);
        }
}

void api_exec_init(ApiServer *a) {
        h2o_multithread_register_receiver(a->ctx.queue, &a->exec_receiver, on_exec_messages);
}

void api_exec_reap(ApiServer *a) {
        for (ApiExec *e = a->execs; e; e = e->next)
                if (api_stream_client_gone(&e->stream))
                        exec_cancel(e, true);
}

void api_exec_cancel_all(ApiServer *a) {
        for (ApiExec *e = a->execs; e; e = e->next)
                exec_cancel(e, false);
}

bool api_exec_wait_all(ApiServer *a, uint64_t deadline) {
        bool running = true;

        for (ApiExec *e = a->execs; e; e = e->next) {
                exec_cancel(e, true);
                /* The loop has stopped: no agent will report. Its jobs are
                 * canceled on the agent and no longer call back. */
                for (size_t i = 0; i < e->n_targets && a->agents; i++)
                        if (e->targets[i].agent_job[0])
                                agent_job_abandon(a->agents, e->targets[i].agent_job);
                pthread_mutex_lock(&e->lock);
                e->agent_jobs = 0;
                pthread_mutex_unlock(&e->lock);
        }
        while (running) {
                running = false;
                for (ApiExec *e = a->execs; e && !running; e = e->next) {
                        pthread_mutex_lock(&e->lock);
                        running = e->running > 0;
                        pthread_mutex_unlock(&e->lock);
                }
                if (!running || now_mono_usec() >= deadline)
                        break;
                usleep(10 * 1000);
        }
        return !running;
}

void api_exec_done(ApiServer *a) {
        h2o_multithread_unregister_receiver(a->ctx.queue, &a->exec_receiver);
}

/* ---- start ------------------------------------------------------------------------------ */

/* Starts n threads; returns how many started. running counts all n from
 * the start, so that a quick first thread cannot mistake itself for the
 * last one; the threads that could not start are taken back out. */
static unsigned threads_start(ApiExec *e, unsigned n) {
        pthread_attr_t attr;
        unsigned i;

        pthread_mutex_lock(&e->lock);
        e->running = n;
        pthread_mutex_unlock(&e->lock);

        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        pthread_attr_setstacksize(&attr, EXEC_THREAD_STACK);
        for (i = 0; i < n; i++) {
                pthread_t t;

                if (pthread_create(&t, &attr, exec_thread, e) != 0)
                        break;
        }
        pthread_attr_destroy(&attr);
        return i;
}

static void names_free(char **names, size_t n) {
        for (size_t i = 0; i < n; i++)
                free(names[i]);
}

void api_exec_start(ApiCall *c, const char *ns, const char *command, uint64_t timeout_usec,
                    unsigned parallel, char **names, const bool *inactive, size_t n) {
        ApiServer *a = c->api;
        ApiStream admitted = {.queued = BUF_INIT};
        unsigned want = parallel < n ? parallel : (unsigned) n;

        if (!api_stream_admit(c, &admitted)) {
                names_free(names, n);
                return;
        }
        /* Threads come from one budget for all of rprd: a request gets
         * fewer when others hold many, and none is a 429. */
        unsigned threads = api_exec_threads_take(a, want);
        if (threads == 0) {
                api_stream_clear(&admitted);
                names_free(names, n);
                api_reply_status(c, 429,
                                 "too many commands running: all %u exec threads (--max-exec-threads) "
                                 "are busy; try again later",
                                 a->max_exec_threads);
                return;
        }

        ApiExec *e = xcalloc(1, sizeof *e);

        e->api = a;
        e->stream = (ApiStream){.queued = BUF_INIT,
                                .sending = BUF_INIT,
                                .refill = on_refill,
                                .api = admitted.api,
                                .caller_key = admitted.caller_key};
        e->ns = xstrdup(ns);
        e->command = xstrdup(command);
        e->timeout_usec = timeout_usec;
        e->n_targets = n;
        e->targets = xcalloc(n, sizeof *e->targets);
        for (size_t i = 0; i < n; i++)
                e->targets[i] = (ExecTarget){.exec = e,
                                             .name = names[i],
                                             .inactive = inactive[i],
                                             .cancel = ssh_cancel_new(),
                                             .line = BUF_INIT};
        pthread_mutex_init(&e->lock, NULL);
        pthread_cond_init(&e->drained, NULL);

        e->next = a->execs;
        if (a->execs)
                a->execs->prev = e;
        a->execs = e;
        a->n_execs++;

        e->ref = h2o_mem_alloc_shared(&c->req->pool, sizeof *e->ref, exec_ref_dispose);
        e->ref->exec = e;

        /* Headers first, so that a client sees the answer start at once. */
        api_stream_start(c, &e->stream, "application/x-ndjson");

        unsigned started = threads_start(e, threads);
        e->threads = started;
        api_exec_threads_give(a, threads - started);
        if (started == threads)
                return;

        /* Fewer threads than asked: those that run take every server. If
         * none could start, or all have finished already, end it here. */
        pthread_mutex_lock(&e->lock);
        e->running -= threads - started;
        bool last = e->running == 0;
        if (last && started == 0) {
                for (size_t i = 0; i < n; i++)
                        buf_printf(&e->pending,
                                   "{\"server\":\"%s\",\"exitCode\":-1,\"signal\":\"\",\"reason\":"
                                   "\"ExecFailed\",\"message\":\"rprd cannot start a thread\","
                                   "\"durationSeconds\":0}\n",
                                   e->targets[i].name);
                e->n_failed = n;
        }
        if (last) {
                buf_printf(&e->pending, "{\"kind\":\"ExecResult\",\"servers\":%zu,\"failed\":%zu}\n", n,
                           e->n_failed);
                e->complete = true;
        }
        pthread_mutex_unlock(&e->lock);
        if (last)
                exec_pump(e);
}
