/* api-agent-input.c: GET /api/v1/agents/jobs/{id}/input, a job's large
 * stdin for the agent that holds the job (a Runner's release).
 *
 * It is read from the unlinked file pkg/agent keeps, a chunk at a time as
 * the client takes it (never whole in memory). "Range: bytes=N-" answers
 * 206 from byte N, so that a cut download goes on where it stopped; any
 * other range is answered whole (200), as HTTP allows. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/agent.h"
#include "api/api-private.h"

#define INPUT_CHUNK (64 * 1024)

typedef struct InputSend {
        h2o_generator_t super;
        Agents *agents;
        char *ns, *server, *id;
        int fd;
        uint64_t offset, end;
        char buf[INPUT_CHUNK];
} InputSend;

static void input_send_dispose(void *p) {
        InputSend *s = p;

        if (s->fd >= 0)
                close(s->fd);
        agent_job_input_done(s->agents, s->ns, s->server, s->id);
        free(s->ns);
        free(s->server);
        free(s->id);
}

static void input_proceed(h2o_generator_t *g, h2o_req_t *req) {
        InputSend *s = (InputSend *) g;
        size_t want = (size_t) MIN((uint64_t) sizeof s->buf, s->end - s->offset);
        ssize_t n = want ? pread(s->fd, s->buf, want, (off_t) s->offset) : 0;

        if (want > 0 && n <= 0) {
                h2o_send(req, NULL, 0, H2O_SEND_STATE_ERROR);
                return;
        }
        s->offset += (uint64_t) n;
        h2o_iovec_t v = h2o_iovec_init(s->buf, (size_t) n);
        h2o_send(req, &v, n > 0 ? 1 : 0,
                 s->offset == s->end ? H2O_SEND_STATE_FINAL : H2O_SEND_STATE_IN_PROGRESS);
}

static void input_stop(h2o_generator_t *g, h2o_req_t *req) {
        (void) g;
        (void) req;
}

/* "bytes=N-" with N inside the file: N; anything else: 0 (all of it). */
static uint64_t range_start(h2o_req_t *req, uint64_t bytes) {
        ssize_t i = h2o_find_header(&req->headers, H2O_TOKEN_RANGE, -1);
        char text[64], *end = NULL;

        if (i < 0 || req->headers.entries[i].value.len >= sizeof text)
                return 0;
        memcpy(text, req->headers.entries[i].value.base, req->headers.entries[i].value.len);
        text[req->headers.entries[i].value.len] = 0;
        if (strncmp(text, "bytes=", 6) != 0 || text[6] < '0' || text[6] > '9')
                return 0;
        errno = 0;
        unsigned long long start = strtoull(text + 6, &end, 10);
        if (errno || !end || !STREQ(end, "-") || start >= bytes)
                return 0;
        return start;
}

void api_agent_input(ApiCall *c) {
        const char *ns =
                c->caller.namespaces && c->caller.namespaces[0] ? c->caller.namespaces[0] : "default";
        h2o_req_t *req = c->req;
        uint64_t bytes = 0;
        int fd = -1;
        int r = agent_job_input(c->api->agents, ns, c->caller.agent, c->route.name, &fd, &bytes);

        if (r == -ESTALE) {
                api_reply_status(c, 409, "job %.64s is no longer offered to this agent", c->route.name);
                return;
        }
        if (r < 0) {
                api_reply_status(c, 404, "no job %.64s with an input for this agent", c->route.name);
                return;
        }
        InputSend *s = h2o_mem_alloc_shared(&req->pool, sizeof *s, input_send_dispose);
        *s = (InputSend){.super = {input_proceed, input_stop},
                         .agents = c->api->agents,
                         .ns = xstrdup(ns),
                         .server = xstrdup(c->caller.agent),
                         .id = xstrdup(c->route.name),
                         .fd = fd,
                         .end = bytes};
        s->offset = range_start(req, bytes);
        req->res.content_length = bytes - s->offset;
        req->res.status = 200;
        req->res.reason = "OK";
        if (s->offset > 0) {
                char *cr = h2o_mem_alloc_pool(&req->pool, 80);
                int n = snprintf(cr, 80, "bytes %" PRIu64 "-%" PRIu64 "/%" PRIu64, s->offset, bytes - 1,
                                 bytes);
                h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_RANGE, NULL, cr, (size_t) n);
                req->res.status = 206;
                req->res.reason = "Partial Content";
        }
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL,
                       H2O_STRLIT("application/octet-stream"));
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL, H2O_STRLIT("no-store"));
        h2o_start_response(req, &s->super);
        input_proceed(&s->super, req);
}
