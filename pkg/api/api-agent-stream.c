/* api-agent-stream: an agent's poll stream (README "Agents"). GET
 * /api/v1/agents/stream with the agent's credential, Connection: Upgrade
 * and Upgrade: rpr-agent-poll/1 is answered 101 Switching Protocols, and
 * the connection leaves HTTP: each poll is then one frame (a 4-byte
 * big-endian length and the heartbeat a POST /api/v1/agents/poll carries),
 * each answer one frame (what that poll answers), sent when rprd has work
 * for the agent or the poll's window ends. The long poll is the same
 * (api-agents.c holds it); only the transport differs.
 *
 * The one idea: an idle agent should cost rprd its TLS connection and
 * little more. h2o's upgrade frees the request, its pool and the HTTP
 * connection; the socket's input buffer is given back whenever no byte of
 * a frame is pending; a stream is a small struct and a hashmap entry.
 * (What is left, ~14 KB a connection, is OpenSSL's.)
 *
 * Every frame is checked as a POST poll is: the credential is looked up
 * again (deleted, expired or replaced closes the stream), the Server too
 * (deleted or deactivated closes it), the heartbeat as the POST's body. A
 * bad length, bad JSON, a frame longer than AGENT_POLL_MAX or not whole
 * within FRAME_TIMEOUT_SEC closes it with a Status frame saying why and a
 * line in the log. */
#include <string.h>

#include "agent/agent.h"
#include "api/api-private.h"

#define FRAME_TIMEOUT_SEC 10
/* A stream that holds no poll and sends none for this long is closed:
 * the agent polls again as soon as it has acted on an answer (a large
 * input's download may take a while). */
#define STREAM_IDLE_SEC 600
/* The credential's status.lastUsed is written (by the Token controller)
 * at most once a minute per Token: at 10,000 agents polling every 25 s
 * that was ~170 store writes a second, a third of rprd's steady CPU. A
 * stream notes its use when it opens and then at most this often. */
#define NOTE_USE_SEC 600

struct ApiAgentStream {
        ApiServer *api;
        h2o_socket_t *sock; /* NULL until the 101 is written */
        char *key, *ns, *server;
        char *secret;          /* the credential, checked again at each frame */
        AgentWait *wait;       /* the poll held, or NULL */
        uint64_t partial_since; /* monotonic: the pending frame's first byte; 0: none pending */
        uint64_t last_frame;    /* monotonic */
        uint64_t use_noted;     /* monotonic: the credential's use last noted */
        Buf queued, sending;    /* frames to write; the one h2o writes */
        bool in_flight;
        bool closing; /* close once what is queued is written */
        h2o_linklist_t link; /* in ApiAgentStreams.all, once upgraded */
        char text[]; /* key, ns, server and secret point in here: one allocation an agent */
};

struct ApiAgentStreams {
        h2o_linklist_t all;
        Hashmap *by_key; /* "ns/server" -> its stream: one per agent */
};

/* ---- closing ---------------------------------------------------------------------- */

static void stream_free(ApiAgentStream *s) {
        buf_free(&s->queued);
        buf_free(&s->sending);
        explicit_bzero(s->secret, strlen(s->secret));
        free(s);
}

/* Closes the stream now (why, when given, goes to the log). */
static void stream_close(ApiAgentStream *s, const char *why) {
        struct ApiAgentStreams *st = s->api->agent_streams;

        if (why)
                log_info("poll stream of the agent of server %s closed: %s", s->key, why);
        api_agent_wait_drop(TAKE_PTR(s->wait));
        if (hashmap_get(st->by_key, s->key) == s)
                hashmap_remove(st->by_key, s->key);
        h2o_linklist_unlink(&s->link);
        h2o_socket_close(s->sock);
        stream_free(s);
}

/* ---- writing ---------------------------------------------------------------------- */

static void stream_flush(ApiAgentStream *s);

static void on_written(h2o_socket_t *sock, const char *err) {
        ApiAgentStream *s = sock->data;

        s->in_flight = false;
        buf_free(&s->sending);
        if (err) {
                stream_close(s, s->closing ? NULL : "the agent went away while an answer was sent");
                return;
        }
        if (s->closing && s->queued.len == 0) {
                stream_close(s, NULL);
                return;
        }
        stream_flush(s);
}

static void stream_flush(ApiAgentStream *s) {
        if (s->in_flight || s->queued.len == 0)
                return;
        s->sending = s->queued;
        s->queued = (Buf) BUF_INIT;
        s->in_flight = true;
        h2o_iovec_t iov = h2o_iovec_init(s->sending.data, s->sending.len);
        h2o_socket_write(s->sock, &iov, 1, on_written);
}

/* Queues one frame of JSON (steals v). */
static void stream_send(ApiAgentStream *s, json_t *v) {
        _cleanup_free_ char *text = json_dumps(v, JSON_COMPACT);
        unsigned char head[AGENT_FRAME_HEAD];

        json_decref(v);
        if (!text) {
                /* Out of memory: end the stream (after what is queued). */
                text = xstrdup("{\"kind\":\"Status\",\"code\":500}");
                s->closing = true;
        }
        agent_frame_head(strlen(text), head);
        (void) buf_append(&s->queued, head, sizeof head);
        (void) buf_append(&s->queued, text, strlen(text));
        stream_flush(s);
}

/* Ends the stream with a Status frame saying why (and the log). */
static void stream_fail(ApiAgentStream *s, int code, const char *fmt, ...) _printf_(3, 4);
static void stream_fail(ApiAgentStream *s, int code, const char *fmt, ...) {
        char msg[320];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        log_warning("poll stream of the agent of server %s closed: %s", s->key, msg);
        api_agent_wait_drop(TAKE_PTR(s->wait));
        h2o_socket_read_stop(s->sock);
        s->closing = true;
        stream_send(s, api_status_new(code, msg));
}

void api_agent_stream_answer(ApiAgentStream *s, json_t *answer) {
        s->wait = NULL; /* api-agents.c has let it go */
        if (s->closing) {
                json_decref(answer);
                return;
        }
        s->last_frame = now_mono_usec();
        stream_send(s, answer);
}

/* ---- reading ---------------------------------------------------------------------- */

/* One poll: the same checks and answer as a POST poll's. */
static void stream_poll(ApiAgentStream *s, const char *data, size_t n) {
        ApiServer *a = s->api;
        json_t *answer = NULL;
        json_error_t jerr;
        uint64_t wait_usec = 0;
        char msg[256];
        const char *why;
        uint64_t now = now_mono_usec();
        bool note = now - s->use_noted >= NOTE_USE_SEC * USEC_PER_SEC;

        if ((why = api_agent_credential_problem(a, s->secret, s->ns, s->server, note))) {
                stream_fail(s, 401, "the agent's credential %s", why);
                return;
        }
        if (note)
                s->use_noted = now;
        if ((why = api_agent_refusal(a, s->ns, s->server))) {
                stream_fail(s, 403, "server %s %s: its agent is refused", s->key, why);
                return;
        }
        _cleanup_json_ json_t *hb = json_loadb(data, n, 0, &jerr);
        if (!hb) {
                stream_fail(s, 400, "a frame is not JSON: %.160s (line %d, column %d)", jerr.text, jerr.line,
                            jerr.column);
                return;
        }
        int code = api_agent_heartbeat(a, s->ns, s->server, hb, &answer, &wait_usec, msg, sizeof msg);
        if (code > 0)
                stream_fail(s, code, "%s", msg);
        else if (answer)
                stream_send(s, answer);
        else
                s->wait = api_agent_hold_stream(a, s, s->key, s->ns, s->server, wait_usec);
}

/* Takes every whole frame from the socket's input; gives the buffer
 * back when nothing is left in it. */
static void stream_take_frames(ApiAgentStream *s) {
        h2o_buffer_t **in = &s->sock->input;
        size_t n = 0;

        while (!s->closing && (*in)->size > 0) {
                int r = agent_frame_parse((*in)->bytes, (*in)->size, AGENT_POLL_MAX, &n);
                if (r == -EMSGSIZE) {
                        stream_fail(s, 413, "a frame of %zu bytes: a poll's heartbeat is at most %d bytes", n,
                                    AGENT_POLL_MAX);
                        return;
                }
                if (r < 0) {
                        stream_fail(s, 400, "an empty frame (length 0)");
                        return;
                }
                if (r == 0) {
                        if (!s->partial_since)
                                s->partial_since = now_mono_usec();
                        return;
                }
                s->partial_since = 0;
                s->last_frame = now_mono_usec();
                stream_poll(s, (*in)->bytes + AGENT_FRAME_HEAD, n);
                h2o_buffer_consume(in, AGENT_FRAME_HEAD + n);
        }
        /* An idle stream keeps no input buffer (4 KiB an agent): h2o gives
         * one consumed to its end back, but a read that brought no byte
         * (a TLS record carrying none) leaves an empty one allocated. */
        if ((*in)->size == 0) {
                h2o_buffer_dispose(in);
                h2o_buffer_init(in, &h2o_socket_buffer_prototype);
        }
}

static void on_read(h2o_socket_t *sock, const char *err) {
        ApiAgentStream *s = sock->data;

        if (err) {
                stream_close(s, s->partial_since ? "the agent went away in the middle of a frame" : NULL);
                return;
        }
        stream_take_frames(s);
}

/* ---- the upgrade -------------------------------------------------------------------- */

static void on_upgraded(void *data, h2o_socket_t *sock, size_t reqsize) {
        ApiAgentStream *s = data, *old;
        struct ApiAgentStreams *st = s->api->agent_streams;

        if (!sock || !st || s->api->stopping) {
                if (sock)
                        h2o_socket_close(sock);
                stream_free(s);
                return;
        }
        s->sock = sock;
        sock->data = s;
        h2o_buffer_consume(&sock->input, reqsize);
        /* A second stream of one agent ends the first: it has moved on. */
        if ((old = hashmap_get(st->by_key, s->key)))
                stream_close(old, "the agent opened another one");
        hashmap_put(st->by_key, s->key, s);
        h2o_linklist_insert(&st->all, &s->link);
        s->last_frame = s->use_noted = now_mono_usec(); /* the upgrade noted the use */
        log_debug("poll stream of the agent of server %s open", s->key);
        h2o_socket_read_start(sock, on_read);
        stream_take_frames(s); /* a frame sent with the upgrade */
}

static bool upgrade_asked(h2o_req_t *req) {
        return req->upgrade.base &&
               h2o_lcstris(req->upgrade.base, req->upgrade.len, H2O_STRLIT(AGENT_STREAM_PROTOCOL));
}

void api_agent_stream_upgrade(ApiCall *c) {
        h2o_req_t *req = c->req;
        bool via_cookie = false;
        const char *secret = api_secret_of(req, &via_cookie);

        /* h2o upgrades HTTP/1 connections only; HTTP/2 has no Upgrade. */
        if (req->version >= 0x200) {
                api_reply_status(c, 400,
                                 "the poll stream is an HTTP/1.1 upgrade and this request came over HTTP/2: "
                                 "connect with HTTP/1.1, or POST /api/v1/agents/poll");
                return;
        }
        if (!upgrade_asked(req)) {
                api_reply_status(c, 400, "this route upgrades the connection: send Connection: Upgrade and "
                                         "Upgrade: " AGENT_STREAM_PROTOCOL);
                return;
        }
        if (req->entity.base || !secret || via_cookie) {
                api_reply_status(c, 400, "the upgrade carries the agent's credential as a bearer token and no "
                                         "body");
                return;
        }
        const char *ns = api_agent_caller_ns(c), *server = c->caller.agent;
        size_t lns = strlen(ns), lserver = strlen(server), lsecret = strlen(secret);
        ApiAgentStream *s = xcalloc(1, sizeof *s + 2 * (lns + lserver + 2) + lsecret + 1);
        s->api = c->api;
        s->key = s->text;
        sprintf(s->key, "%s/%s", ns, server);
        s->ns = memcpy(s->key + lns + lserver + 2, ns, lns + 1);
        s->server = memcpy(s->ns + lns + 1, server, lserver + 1);
        s->secret = memcpy(s->server + lserver + 1, secret, lsecret + 1);

        req->res.status = 101;
        req->res.reason = "Switching Protocols";
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_UPGRADE, NULL,
                       H2O_STRLIT(AGENT_STREAM_PROTOCOL));
        api_count(c->api, c->route.template, 101);
        h2o_http1_upgrade(req, NULL, 0, on_upgraded, s);
}

/* ---- the loop's side ------------------------------------------------------------------- */

void api_agent_streams_init(ApiServer *a) {
        struct ApiAgentStreams *st = xcalloc(1, sizeof *st);

        h2o_linklist_init_anchor(&st->all);
        st->by_key = hashmap_new();
        a->agent_streams = st;
}

void api_agent_streams_tick(ApiServer *a) {
        struct ApiAgentStreams *st = a->agent_streams;
        uint64_t now = now_mono_usec();
        h2o_linklist_t *node, *next;

        for (node = st->all.next; node != &st->all; node = next) {
                ApiAgentStream *s = H2O_STRUCT_FROM_MEMBER(ApiAgentStream, link, node);
                next = node->next;
                if (s->closing)
                        continue;
                if (s->partial_since && now - s->partial_since > FRAME_TIMEOUT_SEC * USEC_PER_SEC)
                        stream_fail(s, 408, "a frame did not arrive whole within %d s", FRAME_TIMEOUT_SEC);
                else if (!s->wait && now - s->last_frame > STREAM_IDLE_SEC * USEC_PER_SEC)
                        stream_close(s, "no poll for ten minutes");
        }
}

static size_t streams_close(struct ApiAgentStreams *st, size_t max) {
        size_t n = 0;

        while (n < max && !h2o_linklist_is_empty(&st->all)) {
                stream_close(H2O_STRUCT_FROM_MEMBER(ApiAgentStream, link, st->all.next), NULL);
                n++;
        }
        return n;
}

/* The agents reconnect (with backoff) to the next rprd. A few hundred a
 * turn of the loop: each close writes a TLS close_notify through
 * OpenSSL's and h2o's buffers, held until the write is done (10,000
 * streams closed at once took ~60 MiB more for a moment). */
#define STREAMS_CLOSED_A_TURN 64

void api_agent_streams_end_all(ApiServer *a) {
        struct ApiAgentStreams *st = a->agent_streams;
        size_t n = 0;

        if (!st)
                return;
        for (;;) {
                n += streams_close(st, STREAMS_CLOSED_A_TURN);
                if (h2o_linklist_is_empty(&st->all))
                        break;
                h2o_evloop_run(a->ctx.loop, 0); /* the closes' writes go, their buffers with them */
        }
        if (n > 0)
                log_info("closed %zu agent poll stream(s)", n);
}

void api_agent_streams_done(ApiServer *a) {
        struct ApiAgentStreams *st = a->agent_streams;

        if (!st)
                return;
        (void) streams_close(st, SIZE_MAX); /* api_agents_end_all has, unless the loop never ran */
        hashmap_free(st->by_key);
        free(st);
        a->agent_streams = NULL;
}
