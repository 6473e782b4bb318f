/* api-runs: the requests about Bindings and Runs — trigger a Binding,
 * cancel a Run, and a Run's output, whole or followed while it runs.
 *
 * Trigger and cancel write to the store, so they run on the action work
 * queue. The output is read from the Run's file on the loop, in pieces of
 * at most LOG_CHUNK (h2o asks for the next piece once the client took the
 * last); a follower at the end of the file looks again every
 * LOG_POLL_MSEC until the Run has finished and the file has nothing more. */
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "api/api-private.h"
#include "binding/binding.h"
#include "pipeline/pipeline.h"
#include "run/run.h"

#define LOG_CHUNK (256u * 1024)
#define LOG_POLL_MSEC 100

/* ---- trigger ------------------------------------------------------------------------ */

typedef struct TriggerData {
        char *server;
        bool failed_only;
        json_t *report;
        char *error;
        int r;
} TriggerData;

static void trigger_data_free(void *p) {
        TriggerData *d = p;

        free(d->server);
        json_decref(d->report);
        free(d->error);
        free(d);
}

static void trigger_work(ApiJob *job) {
        TriggerData *d = job->data;
        BindingTrigger t = {d->server, d->failed_only};

        d->r = binding_trigger(job->api->bindings, job->ns, job->name, &t, &d->report, &d->error);
}

static void trigger_done(ApiJob *job, ApiCall *c) {
        TriggerData *d = job->data;
        int code = d->r == -ENOENT ? 404 : d->r == -ESRCH ? 422 : d->r == -EPERM || d->r == -ENODATA ? 409 : 500;

        if (!c)
                return;
        if (d->r < 0) {
                api_reply_status(c, code, "%s", d->error ?: strerror(-d->r));
                return;
        }
        json_object_set_new(d->report, "apiVersion", json_string(RPR_API_VERSION));
        json_object_set_new(d->report, "kind", json_string("TriggerResult"));
        json_object_set_new(d->report, "binding", json_string(job->name));
        api_reply_json(c, 200, json_incref(d->report));
}

void api_handle_binding_trigger(ApiCall *c) {
        _cleanup_json_ json_t *body = NULL;
        _cleanup_free_ char *json = NULL;
        const char *key;
        json_t *v;

        if (!c->api->bindings) {
                api_reply_status(c, 503, "this rprd runs no binding controller");
                return;
        }
        if (route_object_text(c, &json) < 0)
                return;
        if (!(body = api_body_json(c)))
                return;
        if (!json_is_object(body)) {
                api_reply_status(c, 400, "the body must be a JSON object {\"server\": NAME} or {\"failed\": true}");
                return;
        }
        json_object_foreach(body, key, v) {
                if (!STREQ(key, "server") && !STREQ(key, "failed")) {
                        api_reply_status(c, 422, "%s: unknown field (server or failed)", key);
                        return;
                }
        }
        const char *server = json_str_at(body, "server");
        v = json_object_get(body, "failed");
        if ((json_object_get(body, "server") && !server) || (v && !json_is_boolean(v))) {
                api_reply_status(c, 422, "server must be a server name and failed true or false");
                return;
        }
        if (server && json_is_true(v)) {
                api_reply_status(c, 422, "give server or failed, not both");
                return;
        }
        TriggerData *d = xcalloc(1, sizeof *d);
        d->server = server ? xstrdup(server) : NULL;
        d->failed_only = json_is_true(v);
        ApiJob *job = api_job_new(c, 0, trigger_work, trigger_done);
        job->queue = c->api->actionq;
        job->ns = xstrdup(c->route.ns);
        job->name = xstrdup(c->route.name);
        job->data = d;
        job->data_free = trigger_data_free;
        api_job_submit(job);
}

/* ---- starting a pipeline's job ---------------------------------------------------------- */

typedef struct StartData {
        json_t *args;
        char *run, *error;
        int r;
} StartData;

static void start_data_free(void *p) {
        StartData *d = p;

        json_decref(d->args);
        free(d->run);
        free(d->error);
        free(d);
}

static void start_work(ApiJob *job) {
        StartData *d = job->data;

        d->r = pipeline_start(job->api->pipelines, job->ns, job->name, d->args, "api", NULL, &d->run, &d->error);
}

static void start_done(ApiJob *job, ApiCall *c) {
        StartData *d = job->data;

        if (!c)
                return;
        if (d->r < 0) {
                int code = d->r == -ENOENT ? 404 : d->r == -EINVAL ? 422 : d->r == -EBUSY ? 409 : 500;
                api_reply_status(c, code, "%s", d->error ?: strerror(-d->r));
                return;
        }
        _cleanup_free_ char *text = NULL;
        if (store_get(c->api->store, "Run", job->ns, d->run, &text) < 0) {
                api_reply_status(c, 500, "job %s was made but cannot be read", d->run);
                return;
        }
        Buf b = BUF_INIT;
        api_buf_object(&b, kind_lookup("Run"), text, strlen(text));
        api_reply_buf(c, 201, &b);
}

void api_handle_pipeline_start(ApiCall *c) {
        _cleanup_json_ json_t *body = NULL;
        _cleanup_free_ char *json = NULL;
        const char *key;
        json_t *v;

        if (!c->api->pipelines) {
                api_reply_status(c, 503, "this rprd runs no pipeline controller");
                return;
        }
        if (route_object_text(c, &json) < 0)
                return;
        if (!(body = api_body_json(c)))
                return;
        json_object_foreach(json_is_object(body) ? body : NULL, key, v) {
                if (!STREQ(key, "args")) {
                        api_reply_status(c, 422, "%s: unknown field (the body is {\"args\": {\"name\": \"value\"}})", key);
                        return;
                }
        }
        const json_t *args = json_object_get(body, "args");
        if (!json_is_object(body) || (args && !json_is_object(args))) {
                api_reply_status(c, 400, "the body must be {\"args\": {\"name\": \"value\"}}");
                return;
        }
        StartData *d = xcalloc(1, sizeof *d);
        d->args = args ? json_incref((json_t *) args) : NULL;
        ApiJob *job = api_job_new(c, 0, start_work, start_done);
        job->queue = c->api->actionq;
        job->ns = xstrdup(c->route.ns);
        job->name = xstrdup(c->route.name);
        job->data = d;
        job->data_free = start_data_free;
        api_job_submit(job);
}

/* ---- cancel -------------------------------------------------------------------------- */

static void cancel_work(ApiJob *job) {
        job->r = run_cancel(job->api->runs, job->ns, job->name, "Canceled", "canceled by request");
}

static void cancel_done(ApiJob *job, ApiCall *c) {
        if (!c)
                return;
        if (job->r == -ENOENT)
                api_reply_status(c, 404, "runs \"%s\" not found", job->name);
        else if (job->r == -EALREADY)
                api_reply_status(c, 409, "run %s has already finished", job->name);
        else if (job->r < 0)
                api_reply_status(c, 500, "cannot cancel run %s: %s", job->name, strerror(-job->r));
        else
                api_reply_json(c, 202,
                               json_pack("{s:s, s:s, s:i, s:s, s:s}", "apiVersion", RPR_API_VERSION, "kind", "Status",
                                         "code", 202, "reason", "Accepted", "message", "canceling"));
}

void api_handle_run_cancel(ApiCall *c) {
        _cleanup_free_ char *json = NULL;

        if (!c->api->runs) {
                api_reply_status(c, 503, "this rprd runs no run controller");
                return;
        }
        if (route_object_text(c, &json) < 0)
                return;
        ApiJob *job = api_job_new(c, 0, cancel_work, cancel_done);
        job->queue = c->api->actionq;
        job->ns = xstrdup(c->route.ns);
        job->name = xstrdup(c->route.name);
        api_job_submit(job);
}

/* ---- the output ---------------------------------------------------------------------- */

struct ApiRunLog {
        ApiStream stream; /* first: h2o calls back with it */
        ApiServer *api;
        ApiRunLog *prev, *next;
        char *ns, *name, *path;
        int fd;
        bool follow;
        h2o_timeout_entry_t poll;
};

static bool run_finished(ApiRunLog *l) {
        _cleanup_json_ json_t *obj = NULL;

        if (store_get_json(l->api->store, "Run", l->ns, l->name, &obj) < 0)
                return true; /* gone: nothing more will come */
        return run_phase_finished(json_str_at(json_object_get(obj, "status"), "phase"));
}

/* Queues what the file has beyond what was read; 0 at its end. */
static ssize_t read_more(ApiRunLog *l) {
        char chunk[16384];
        ssize_t total = 0;

        if (l->fd < 0 && (l->fd = open(l->path, O_RDONLY | O_CLOEXEC)) < 0)
                return 0; /* not started yet */
        while (l->stream.queued.len < LOG_CHUNK) {
                ssize_t k = read(l->fd, chunk, sizeof chunk);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0)
                        break;
                buf_append(&l->stream.queued, chunk, (size_t) k);
                total += k;
        }
        return total;
}

static void log_pump(ApiRunLog *l) {
        if (!l->stream.req || l->stream.in_flight || l->stream.ended)
                return;
        if (h2o_timeout_is_linked(&l->poll))
                h2o_timeout_unlink(&l->poll);
        if (read_more(l) == 0 && !l->stream.final) {
                /* The Run writes its last line before it is marked finished:
                 * finished, then nothing more to read, is the end. */
                if (!l->follow || (run_finished(l) && read_more(l) == 0))
                        l->stream.final = true;
                else if (l->stream.queued.len == 0) {
                        h2o_timeout_link(l->api->ctx.loop, &l->api->log_poll, &l->poll);
                        return;
                }
        }
        api_stream_flush(&l->stream);
}

static void on_refill(ApiStream *s) {
        log_pump((ApiRunLog *) s);
}

static void on_poll(h2o_timeout_entry_t *entry) {
        log_pump(H2O_STRUCT_FROM_MEMBER(ApiRunLog, poll, entry));
}

static void log_dispose(void *p) {
        ApiRunLog *l = p;
        ApiServer *a = l->api;

        if (h2o_timeout_is_linked(&l->poll))
                h2o_timeout_unlink(&l->poll);
        if (l->prev)
                l->prev->next = l->next;
        else
                a->run_logs = l->next;
        if (l->next)
                l->next->prev = l->prev;
        a->n_run_logs--;
        if (l->fd >= 0)
                close(l->fd);
        api_stream_clear(&l->stream);
        free(l->ns);
        free(l->name);
        free(l->path);
}

void api_handle_run_log(ApiCall *c) {
        ApiServer *a = c->api;
        _cleanup_free_ char *json = NULL;

        if (!a->run_dir) {
                api_reply_status(c, 503, "this rprd keeps no run output");
                return;
        }
        if (route_object_text(c, &json) < 0)
                return;
        /* A pipeline job's task has its own file: ?task=KEY. */
        const char *task = api_query(c->req, "task");
        if (task && (!*task || strspn(task, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-@.") != strlen(task) ||
                     strstr(task, ".."))) {
                api_reply_status(c, 400, "task must be a task name (or TASK@SERVER), not \"%s\"", task);
                return;
        }
        ApiStream admitted = {.queued = BUF_INIT};
        if (!api_stream_admit(c, &admitted))
                return;
        ApiRunLog *l = h2o_mem_alloc_shared(&c->req->pool, sizeof *l, log_dispose);
        *l = (ApiRunLog){.stream = {.queued = BUF_INIT, .sending = BUF_INIT, .refill = on_refill},
                         .api = a,
                         .ns = xstrdup(c->route.ns),
                         .name = xstrdup(c->route.name),
                         .path = task ? xasprintf("%s/%s/%s/%s.log", a->run_dir, c->route.ns, c->route.name, task)
                                      : run_log_path(a->run_dir, c->route.ns, c->route.name),
                         .fd = -1,
                         .follow = api_query_true(c->req, "follow"),
                         .poll = {.cb = on_poll}};
        l->stream.api = admitted.api;
        l->stream.caller_key = admitted.caller_key;
        l->next = a->run_logs;
        if (a->run_logs)
                a->run_logs->prev = l;
        a->run_logs = l;
        a->n_run_logs++;
        api_stream_start(c, &l->stream, "text/plain; charset=utf-8");
        log_pump(l);
}

void api_run_logs_init(ApiServer *a) {
        h2o_timeout_init(a->ctx.loop, &a->log_poll, LOG_POLL_MSEC);
}

void api_run_logs_reap(ApiServer *a) {
        for (ApiRunLog *l = a->run_logs, *next; l; l = next) {
                next = l->next;
                if (api_stream_client_gone(&l->stream)) {
                        l->stream.final = true;
                        log_pump(l);
                }
        }
}

void api_run_logs_end_all(ApiServer *a) {
        for (ApiRunLog *l = a->run_logs, *next; l; l = next) {
                next = l->next;
                l->follow = false;
                log_pump(l);
        }
}

void api_run_logs_done(ApiServer *a) {
        h2o_timeout_dispose(a->ctx.loop, &a->log_poll);
}
