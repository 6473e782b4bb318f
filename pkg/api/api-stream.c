/* api-stream: answers sent in pieces as they come (watch events, exec
 * output), with one write in flight at a time.
 *
 * The stream frames its own chunks on HTTP/1.1: with h2o's chunked encoder
 * an empty first send would not put the headers out, and a client would
 * wait for them until the first piece. Because only one write is ever in
 * flight, what waits in `queued` is what the producer must bound: that is
 * where backpressure comes from. */
#include <poll.h>
#include <stdio.h>
#include <string.h>

#include "api/api-private.h"

void api_stream_flush(ApiStream *s) {
        h2o_iovec_t iov[4];
        size_t n = 0;

        if (!s->req || s->in_flight || s->ended)
                return;
        if (s->queued.len == 0 && !s->final && s->started)
                return;
        s->started = true;

        /* The two buffers trade places, so that a long stream reuses its
         * memory instead of allocating a new buffer for every write. */
        Buf sent = s->sending;
        s->sending = s->queued;
        s->queued = sent;
        s->queued.len = 0;
        if (s->queued.data)
                s->queued.data[0] = 0;
        if (s->sending.len > 0) {
                if (s->chunked)
                        iov[n++] =
                                h2o_iovec_init(s->chunk_head, snprintf(s->chunk_head, sizeof s->chunk_head,
                                                                       "%zx\r\n", s->sending.len));
                iov[n++] = h2o_iovec_init(s->sending.data, s->sending.len);
                if (s->chunked)
                        iov[n++] = h2o_iovec_init(H2O_STRLIT("\r\n"));
        }
        if (s->final && s->chunked)
                iov[n++] = h2o_iovec_init(H2O_STRLIT("0\r\n\r\n"));
        if (s->final)
                s->ended = true;
        s->in_flight = true;
        h2o_send(s->req, iov, n, s->final ? H2O_SEND_STATE_FINAL : H2O_SEND_STATE_IN_PROGRESS);
}

static void on_proceed(h2o_generator_t *g, h2o_req_t *req) {
        ApiStream *s = (ApiStream *) g;

        (void) req;
        s->in_flight = false;
        if (s->refill)
                s->refill(s);
        else
                api_stream_flush(s);
}

static void on_stop(h2o_generator_t *g, h2o_req_t *req) {
        ApiStream *s = (ApiStream *) g;

        (void) req;
        s->req = NULL;
}

bool api_stream_client_gone(const ApiStream *s) {
        h2o_req_t *req = s->req;
        h2o_socket_t *sock;

        if (!req || s->in_flight || s->ended)
                return false;
        sock = req->conn->callbacks->get_socket ? req->conn->callbacks->get_socket(req->conn) : NULL;
        struct pollfd p = {.fd = sock ? h2o_socket_get_fd(sock) : -1, .events = POLLRDHUP};

        return p.fd >= 0 && poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

void api_stream_start(ApiCall *c, ApiStream *s, const char *content_type) {
        h2o_req_t *req = c->req;

        s->super = (h2o_generator_t){on_proceed, on_stop};
        s->req = req;
        api_count(c->api, c->route.template, 200);
        req->res.status = 200;
        req->res.reason = "OK";
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, content_type,
                       strlen(content_type));
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL, H2O_STRLIT("no-store"));
        s->chunked = req->version >= 0x101;
        if (s->chunked)
                h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_TRANSFER_ENCODING, NULL,
                               H2O_STRLIT("chunked"));
        else
                req->http1_is_persistent = 0; /* HTTP/1.0: the body ends when the connection does */
        h2o_start_response(req, &s->super);
        api_stream_flush(s);
}

void api_stream_clear(ApiStream *s) {
        api_stream_release(s);
        buf_free(&s->sending);
        buf_free(&s->queued);
}
