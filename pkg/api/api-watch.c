/* api-watch: ?watch=1 streams, newline-delimited {"type","object"} lines.
 *
 * Each stream holds a StoreWatch. The store wakes the loop (one shared
 * message, sent at most once until the loop has seen it) and the loop then
 * drains every stream that is not waiting for its last write to finish.
 * A stream's state lives in its request's pool: when the client goes, h2o
 * stops the generator and disposes the pool, which frees the StoreWatch.
 * The sending itself is api-stream's. */
#include <inttypes.h>
#include <string.h>

#include "api/api-private.h"

#define WATCH_CHUNK_MAX (256u * 1024)

struct ApiWatch {
        ApiStream stream; /* first: h2o calls back with it */
        ApiServer *api;
        ApiWatch *prev, *next;
        StoreWatch *sw;
        const Kind *kind;
        char *ns; /* NULL = all namespaces */
        Selector *sel;
};

/* Appends one line; takes obj. */
static void queue_line(ApiWatch *w, const char *type, json_t *obj) {
        _cleanup_json_ json_t *line = json_pack("{s:s, s:o}", "type", type, "object", obj);
        _cleanup_free_ char *text = json_dumps(line, JSON_COMPACT);

        if (text) {
                buf_puts(&w->stream.queued, text);
                buf_puts(&w->stream.queued, "\n");
        }
}

static void queue_gone(ApiWatch *w) {
        queue_line(w, "ERROR",
                   api_status_new(410, "the watch fell too far behind the change feed; list again and watch "
                                       "from the list's resourceVersion"));
        w->stream.final = true;
}

/* One event line, the object written from its stored text as a list
 * writes it. Kind and namespace are matched by the caller. */
static void queue_object(ApiWatch *w, const char *type, const char *text, size_t len) {
        Buf *q = &w->stream.queued;

        if (!api_text_selected(w->sel, text, len))
                return;
        buf_printf(q, "{\"type\":\"%s\",\"object\":", type);
        api_buf_object(q, w->kind, text, len);
        buf_puts(q, "}\n");
}

static void queue_events(ApiWatch *w) {
        while (!w->stream.final && w->stream.queued.len < WATCH_CHUNK_MAX) {
                StoreEvent *ev = NULL;
                int r = store_watch_next(w->sw, &ev);

                if (r == 0)
                        break;
                if (r < 0) {
                        queue_gone(w);
                        break;
                }
                if (STREQ(ev->kind, kind_name(w->kind)) && (!w->ns || STREQ(ev->ns, w->ns)))
                        queue_object(w, store_event_type_to_string(ev->type), ev->json, ev->len);
                store_event_free(ev);
        }
}

static void watch_pump(ApiWatch *w) {
        if (!w->stream.req || w->stream.in_flight || w->stream.ended)
                return;
        queue_events(w);
        api_stream_flush(&w->stream);
}

static void on_refill(ApiStream *s) {
        watch_pump((ApiWatch *) s);
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
        api_stream_clear(&w->stream);
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

void api_watch_reap(ApiServer *a) {
        for (ApiWatch *w = a->watches, *next; w; w = next) {
                next = w->next;
                if (api_stream_client_gone(&w->stream)) {
                        w->stream.final = true;
                        watch_pump(w);
                }
        }
}

void api_watch_end_all(ApiServer *a) {
        for (ApiWatch *w = a->watches, *next; w; w = next) {
                next = w->next;
                w->stream.final = true;
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

        ApiWatch tmp = {.stream = {.queued = BUF_INIT, .sending = BUF_INIT, .refill = on_refill},
                        .api = a,
                        .kind = c->route.kind,
                        .ns = c->route.ns ? xstrdup(c->route.ns) : NULL};
        if (selector_text && *selector_text) {
                _cleanup_free_ char *error = NULL;
                (void) selector_parse(selector_text, &tmp.sel, &error);
        }

        if (from == 0)
                r = store_list(a->store, kind_name(tmp.kind), tmp.ns, list_added, &tmp, &from);
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
                api_stream_clear(&tmp.stream);
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

        /* The first flush sends the ADDED lines queued by the list. */
        api_stream_start(c, &w->stream, "application/json");
        watch_pump(w);
}
