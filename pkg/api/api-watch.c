/* api-watch: ?watch=1 streams, newline-delimited {"type","object"} lines,
 * of one kind, or of every kind (GET /api/v1/watch, the dashboard's one
 * stream: browsers keep few connections to a host).
 *
 * Each stream holds a StoreWatch. The store wakes the loop (one shared
 * message, sent at most once until the loop has seen it) and the loop then
 * drains every stream that is not waiting for its last write to finish.
 * A stream's state lives in its request's pool: when the client goes, h2o
 * stops the generator and disposes the pool, which frees the StoreWatch.
 * The sending itself is api-stream's.
 *
 * The initial listing is not built whole: the stream keeps only the keys
 * of what it will list and reads the objects a piece at a time as the
 * client takes them, so that a watcher that does not read holds a few
 * bytes per object, not the store's whole text. */
#include <inttypes.h>
#include <string.h>

#include "api/api-private.h"

#define WATCH_CHUNK_MAX (256u * 1024)
/* The listing goes out in pieces of about this much. */
#define LIST_CHUNK (32u * 1024)

struct ApiWatch {
        ApiStream stream; /* first: h2o calls back with it */
        ApiServer *api;
        ApiWatch *prev, *next;
        StoreWatch *sw;
        const Kind *kind; /* NULL = every kind */
        char *ns;         /* NULL = all namespaces */
        char **allowed;   /* the caller's namespaces (NULL-terminated), or NULL: all */
        Selector *sel;
        /* The listing still to send: "kind\0ns\0name\0" after each other. */
        Buf keys;
        size_t keys_at;
};

static bool namespace_allowed(const ApiWatch *w, const char *ns) {
        if (w->ns && !STREQ(w->ns, ns))
                return false;
        for (char **a = w->allowed; a && *a; a++)
                if (STREQ(*a, ns))
                        return true;
        return !w->allowed;
}

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

/* One event line, the object (of kind k) written from its stored text as
 * a list writes it. Kind and namespace are matched by the caller. */
static void queue_object(ApiWatch *w, const Kind *k, const char *type, const char *text, size_t len) {
        Buf *q = &w->stream.queued;

        if (!api_text_selected(w->sel, text, len))
                return;
        buf_printf(q, "{\"type\":\"%s\",\"object\":", type);
        api_buf_object(q, k, text, len);
        buf_puts(q, "}\n");
}

/* The next piece of the listing, read from the store by key. An object
 * gone since the keys were taken is left out: its DELETED event follows. */
static void queue_listing(ApiWatch *w) {
        while (w->keys_at < w->keys.len && w->stream.queued.len < LIST_CHUNK) {
                const char *kind = w->keys.data + w->keys_at;
                const char *ns = kind + strlen(kind) + 1;
                const char *name = ns + strlen(ns) + 1;
                _cleanup_free_ char *text = NULL;

                w->keys_at = name + strlen(name) + 1 - w->keys.data;
                if (store_get(w->api->store, kind, ns, name, &text) >= 0)
                        queue_object(w, kind_lookup(kind), "ADDED", text, strlen(text));
        }
        if (w->keys_at >= w->keys.len && w->keys.data) {
                buf_free(&w->keys);
                w->keys_at = 0;
        }
}

static void queue_events(ApiWatch *w) {
        if (!w->sw)
                return; /* detached at shutdown */
        if (w->keys.len > 0) {
                queue_listing(w);
                if (w->keys.len > 0)
                        return; /* events after the whole listing */
        }
        while (!w->stream.final && w->stream.queued.len < WATCH_CHUNK_MAX) {
                StoreEvent *ev = NULL;
                int r = store_watch_next(w->sw, &ev);

                if (r == 0)
                        break;
                if (r < 0) {
                        queue_gone(w);
                        break;
                }
                const Kind *k = w->kind ? w->kind : kind_lookup(ev->kind);
                if (k && STREQ(ev->kind, kind_name(k)) && namespace_allowed(w, ev->ns))
                        queue_object(w, k, store_event_type_to_string(ev->type), ev->json, ev->len);
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
        buf_free(&w->keys);
        selector_free(w->sel);
        for (char **a = w->allowed; a && *a; a++)
                free(*a);
        free(w->allowed);
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

void api_watch_detach_all(ApiServer *a) {
        for (ApiWatch *w = a->watches; w; w = w->next) {
                store_watch_free(w->sw);
                w->sw = NULL;
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

static void list_key(const char *kind, const char *ns, const char *name, void *userdata) {
        Buf *keys = userdata;

        buf_append(keys, kind, strlen(kind) + 1);
        buf_append(keys, ns, strlen(ns) + 1);
        buf_append(keys, name, strlen(name) + 1);
}

/* The keys of every object the stream covers, to be listed as ADDED. */
static int list_all(ApiServer *a, ApiWatch *w, uint64_t *ret_revision) {
        size_t n = 1;
        const Kind *one[] = {w->kind};
        const Kind *const *kinds = w->kind ? one : kind_all(&n);
        uint64_t rev = store_revision(a->store);

        /* Events after rev come through the feed; an object listed and also
         * changed after rev is sent twice, which a watcher takes in stride. */
        for (size_t i = 0; i < n; i++) {
                if (!w->allowed) {
                        int r = store_list_keys(a->store, kind_name(kinds[i]), w->ns, list_key, &w->keys);
                        if (r < 0)
                                return r;
                        continue;
                }
                for (char **ns = w->allowed; *ns; ns++) {
                        if (w->ns && !STREQ(w->ns, *ns))
                                continue;
                        int r = store_list_keys(a->store, kind_name(kinds[i]), *ns, list_key, &w->keys);
                        if (r < 0)
                                return r;
                }
        }
        *ret_revision = rev;
        return 0;
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
        ApiStream admitted = {.queued = BUF_INIT};
        if (!api_stream_admit(c, &admitted))
                return;

        ApiWatch tmp = {.stream = {.queued = BUF_INIT, .sending = BUF_INIT, .refill = on_refill},
                        .api = a,
                        .keys = BUF_INIT,
                        .kind = c->route.type == ROUTE_WATCH ? NULL : c->route.kind,
                        .ns = c->route.ns ? xstrdup(c->route.ns) : NULL};
        if (c->route.type == ROUTE_WATCH && c->caller.namespaces) {
                size_t n = 0;
                while (c->caller.namespaces[n])
                        n++;
                tmp.allowed = xcalloc(n + 1, sizeof *tmp.allowed);
                for (size_t i = 0; i < n; i++)
                        tmp.allowed[i] = xstrdup(c->caller.namespaces[i]);
        }
        if (selector_text && *selector_text) {
                _cleanup_free_ char *error = NULL;
                (void) selector_parse(selector_text, &tmp.sel, &error);
        }

        r = from == 0 ? list_all(a, &tmp, &from) : 0;
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
                api_stream_clear(&admitted);
                buf_free(&tmp.keys);
                free(tmp.ns);
                for (char **ns = tmp.allowed; ns && *ns; ns++)
                        free(*ns);
                free(tmp.allowed);
                return;
        }

        /* From here the request's pool owns the stream and its clean-up. */
        ApiWatch *w = h2o_mem_alloc_shared(&req->pool, sizeof *w, watch_dispose);
        *w = tmp;
        w->stream.api = admitted.api;
        w->stream.caller_key = TAKE_PTR(admitted.caller_key);
        w->next = a->watches;
        if (a->watches)
                a->watches->prev = w;
        a->watches = w;
        a->n_watches++;

        /* Headers first; the listing follows in pieces as the client reads. */
        api_stream_start(c, &w->stream, "application/json");
        watch_pump(w);
}

void api_handle_watch_all(ApiCall *c) {
        const char *sel = api_query(c->req, "labelSelector");
        _cleanup_free_ char *error = NULL;
        Selector *s = NULL;

        if (sel && *sel && selector_parse(sel, &s, &error) < 0) {
                api_reply_status(c, 400, "invalid labelSelector: %s", error ?: sel);
                return;
        }
        selector_free(s);
        api_watch_start(c, sel);
}
