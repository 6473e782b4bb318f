/* api-watch: ?watch=1 streams, newline-delimited {"type","object"} lines.
 *
 * Each stream holds a StoreWatch. The store wakes the loop (one shared
 * message, sent at most once until the loop has seen it) and the loop then
 * drains every stream that is not waiting for its last write to finish.
 * A stream's state lives in its request's pool: when the client goes, h2o
 * stops the generator and disposes the pool, which frees the StoreWatch. */
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>

#include "api/api-private.h"

#define WATCH_CHUNK_MAX (256u * 1024)

struct ApiWatch {
        h2o_generator_t super; /* first: h2o calls back with it */
        ApiServer *api;
        ApiWatch *prev, *next;
        h2o_req_t *req; /* NULL once h2o stopped the stream */
        StoreWatch *sw;
        char *kind, *ns; /* ns NULL = all namespaces */
        Selector *sel;
        Buf sending; /* handed to h2o, valid until proceed() */
        Buf queued;
        bool started; /* the first send, even if empty, puts the headers out */
        bool chunked; /* HTTP/1.1: we frame the chunks ourselves */
        char chunk_head[24];
        bool in_flight, final, ended;
};

bool api_object_matches(const json_t *obj, const char *kind, const char *ns, const Selector *sel) {
        const json_t *meta = json_object_get(obj, "metadata");
        const char *k = json_string_value(json_object_get(obj, "kind"));
        const char *n = json_string_value(json_object_get(meta, "namespace"));

        if (kind && (!k || !STREQ(k, kind)))
                return false;
        if (ns && (!n || !STREQ(n, ns)))
                return false;
        return !sel || selector_matches(sel, json_object_get(meta, "labels"));
}

/* Appends one line; takes obj. */
static void queue_line(ApiWatch *w, const char *type, json_t *obj) {
        _cleanup_json_ json_t *line = json_pack("{s:s, s:o}", "type", type, "object", obj);
        _cleanup_free_ char *text = json_dumps(line, JSON_COMPACT);

        if (text) {
                buf_puts(&w->queued, text);
                buf_puts(&w->queued, "\n");
        }
}

static void queue_gone(ApiWatch *w) {
        queue_line(w, "ERROR",
                   api_status_new(410, "the watch fell too far behind the change feed; list again and watch "
                                       "from the list's resourceVersion"));
        w->final = true;
}

static void queue_object(ApiWatch *w, const char *type, const char *text, size_t len) {
        json_t *obj = json_loadb(text, len, 0, NULL);

        if (!obj)
                return;
        if (!api_object_matches(obj, w->kind, w->ns, w->sel)) {
                json_decref(obj);
                return;
        }
        resource_redact(obj);
        queue_line(w, type, obj);
}

static void queue_events(ApiWatch *w) {
        while (!w->final && w->queued.len < WATCH_CHUNK_MAX) {
                StoreEvent *ev = NULL;
                int r = store_watch_next(w->sw, &ev);

                if (r == 0)
                        break;
                if (r < 0) {
                        queue_gone(w);
                        break;
                }
                if (STREQ(ev->kind, w->kind) && (!w->ns || STREQ(ev->ns, w->ns)))
                        queue_object(w, store_event_type_to_string(ev->type), ev->json, ev->len);
                store_event_free(ev);
        }
}

/* Sends what is queued, unless a write is still in flight. The stream
 * frames its own chunks: with h2o's chunked encoder an empty first send
 * would not put the headers out, and a client would wait for them until
 * the first event. */
static void watch_pump(ApiWatch *w) {
        h2o_iovec_t iov[3];
        size_t n = 0;

        if (!w->req || w->in_flight || w->ended)
                return;
        queue_events(w);
        if (w->queued.len == 0 && !w->final && w->started)
                return;
        w->started = true;

        buf_free(&w->sending);
        w->sending = w->queued;
        w->queued = (Buf) BUF_INIT;
        if (w->sending.len > 0) {
                if (w->chunked)
                        iov[n++] =
                                h2o_iovec_init(w->chunk_head, snprintf(w->chunk_head, sizeof w->chunk_head,
                                                                       "%zx\r\n", w->sending.len));
                iov[n++] = h2o_iovec_init(w->sending.data, w->sending.len);
                if (w->chunked)
                        iov[n++] = h2o_iovec_init(H2O_STRLIT("\r\n"));
        }
        if (w->final && w->chunked)
                iov[n++] = h2o_iovec_init(H2O_STRLIT("0\r\n\r\n"));
        if (w->final)
                w->ended = true;
        w->in_flight = true;
        h2o_send(w->req, iov, n, w->final ? H2O_SEND_STATE_FINAL : H2O_SEND_STATE_IN_PROGRESS);
}

static void on_proceed(h2o_generator_t *g, h2o_req_t *req) {
        ApiWatch *w = (ApiWatch *) g;

        (void) req;
        w->in_flight = false;
        watch_pump(w);
}

static void on_stop(h2o_generator_t *g, h2o_req_t *req) {
        ApiWatch *w = (ApiWatch *) g;

        (void) req;
        w->req = NULL;
}

static void watch_dispose(void *p) {
        ApiWatch *w = p;
        ApiServer *a = w->api;

        if (w->prev)
                w->prev->next = w->next;
        else
                a->watches = w->next;
        if (w->next)
                w->next->prev = w->prev;
        a->n_watches--;

        store_watch_free(w->sw);
        selector_free(w->sel);
        buf_free(&w->sending);
        buf_free(&w->queued);
        free(w->kind);
        free(w->ns);
}

/* ---- wake-ups -------------------------------------------------------------------- */

/* On a writing thread: only wakes the loop up. */
static void watch_notify(void *userdata) {
        ApiServer *a = userdata;

        if (!atomic_exchange(&a->watch_wakeup_sent, true))
                h2o_multithread_send_message(&a->watch_receiver, &a->watch_msg);
}

static void on_watch_messages(h2o_multithread_receiver_t *receiver, h2o_linklist_t *messages) {
        ApiServer *a = H2O_STRUCT_FROM_MEMBER(ApiServer, watch_receiver, receiver);

        while (!h2o_linklist_is_empty(messages))
                h2o_linklist_unlink(messages->next);
        atomic_store(&a->watch_wakeup_sent, false);

        for (ApiWatch *w = a->watches, *next; w; w = next) {
                next = w->next;
                watch_pump(w);
        }
}

void api_watch_init(ApiServer *a) {
        atomic_init(&a->watch_wakeup_sent, false);
        h2o_multithread_register_receiver(a->ctx.queue, &a->watch_receiver, on_watch_messages);
}

/* h2o reads nothing while it answers a request, so a client that hung
 * up on an idle stream would only be noticed at the next event. */
static bool client_gone(h2o_req_t *req) {
        h2o_socket_t *sock =
                req->conn->callbacks->get_socket ? req->conn->callbacks->get_socket(req->conn) : NULL;
        struct pollfd p = {.fd = sock ? h2o_socket_get_fd(sock) : -1, .events = POLLRDHUP};

        return p.fd >= 0 && poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

void api_watch_reap(ApiServer *a) {
        for (ApiWatch *w = a->watches, *next; w; w = next) {
                next = w->next;
                if (w->req && !w->in_flight && !w->ended && client_gone(w->req)) {
                        w->final = true;
                        watch_pump(w);
                }
        }
}

void api_watch_end_all(ApiServer *a) {
        for (ApiWatch *w = a->watches, *next; w; w = next) {
                next = w->next;
                w->final = true;
                watch_pump(w);
        }
}

void api_watch_done(ApiServer *a) {
        uint64_t deadline = now_mono_usec() + USEC_PER_SEC;

        /* A wake-up may still be on its way; it must arrive before the
         * receiver goes. */
        while (atomic_load(&a->watch_wakeup_sent) && now_mono_usec() < deadline)
                h2o_evloop_run(a->ctx.loop, 10);
        h2o_multithread_unregister_receiver(a->ctx.queue, &a->watch_receiver);
}

/* ---- start -------------------------------------------------------------------------- */

static void list_added(const char *text, size_t len, void *userdata) {
        queue_object(userdata, "ADDED", text, len);
}

void api_watch_start(ApiCall *c, const char *selector_text) {
        ApiServer *a = c->api;
        h2o_req_t *req = c->req;
        const char *rv = api_query(req, "resourceVersion");
        uint64_t from = 0;
        int r;

        if (rv && *rv && parse_uint64(rv, &from) < 0) {
                api_reply_status(c, 400, "resourceVersion must be a decimal number, not \"%s\"", rv);
                return;
        }

        ApiWatch tmp = {.super = {on_proceed, on_stop},
                        .api = a,
                        .req = req,
                        .kind = xstrdup(kind_name(c->route.kind)),
                        .ns = c->route.ns ? xstrdup(c->route.ns) : NULL,
                        .queued = BUF_INIT,
                        .sending = BUF_INIT};
        if (selector_text && *selector_text) {
                _cleanup_free_ char *error = NULL;
                (void) selector_parse(selector_text, &tmp.sel, &error);
        }

        if (from == 0)
                r = store_list(a->store, tmp.kind, tmp.ns, list_added, &tmp, &from);
        else
                r = 0;
        if (r >= 0)
                r = store_watch(a->store, from, watch_notify, a, &tmp.sw);
        if (r < 0) {
                if (r == -ERANGE)
                        api_reply_status(c, 410,
                                         "resourceVersion %s is too old; list again and watch from the "
                                         "list's resourceVersion",
                                         rv ? rv : "0");
                else
                        api_reply_status(c, 500, "cannot watch %s: %s", c->route.plural, strerror(-r));
                selector_free(tmp.sel);
                buf_free(&tmp.queued);
                free(tmp.kind);
                free(tmp.ns);
                return;
        }

        /* From here the request's pool owns the stream and its clean-up. */
        ApiWatch *w = h2o_mem_alloc_shared(&req->pool, sizeof *w, watch_dispose);
        *w = tmp;
        w->next = a->watches;
        if (a->watches)
                a->watches->prev = w;
        a->watches = w;
        a->n_watches++;

        api_count(a, c->route.template, 200);
        req->res.status = 200;
        req->res.reason = "OK";
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL,
                       H2O_STRLIT("application/json"));
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL, H2O_STRLIT("no-store"));
        w->chunked = req->version >= 0x101;
        if (w->chunked)
                h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_TRANSFER_ENCODING, NULL,
                               H2O_STRLIT("chunked"));
        else
                req->http1_is_persistent = 0; /* HTTP/1.0: the body ends when the connection does */
        h2o_start_response(req, &w->super);
        watch_pump(w);
}
