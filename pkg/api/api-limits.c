/* api-limits: what keeps a reader from hurting the daemon — the names a
 * browser may reach rprd by, how many streams a caller and everyone may
 * hold, how many exec threads run at once, and how many connections are
 * taken before accepting waits.
 *
 * The one idea: every long-lived thing a request can make (a connection,
 * a stream, a thread) is counted against a cap well below what the
 * process can have, so that past the cap a client gets a 429 (or waits in
 * the listen backlog), never a daemon without file descriptors. Everything
 * here runs on the loop. */
#include <arpa/inet.h>
#include <malloc.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include "api/api-private.h"

/* File descriptors kept for everything but connections: the store, logs,
 * run output files, ssh sessions, the pipes of local commands. */
#define FD_RESERVE_MIN 64
#define STREAMS_DEFAULT_MAX 1024
#define STREAMS_PER_CALLER_DEFAULT 64
#define EXEC_THREADS_DEFAULT 256
/* How soon accepting is tried again after it paused. */
#define ACCEPT_RETRY_MSEC 100

/* ---- the names a browser may use --------------------------------------------------- */

static bool is_ip_literal(const char *host) {
        unsigned char addr[16];

        if (host[0] == '[') {
                size_t n = strlen(host);
                _cleanup_free_ char *inner = n > 2 && host[n - 1] == ']' ? xstrndup(host + 1, n - 2) : NULL;
                return inner && inet_pton(AF_INET6, inner, addr) == 1;
        }
        return inet_pton(AF_INET, host, addr) == 1;
}

/* Host without its port, into the pool. */
static const char *host_name(h2o_req_t *req) {
        const char *h = req->authority.base, *end = h + req->authority.len, *colon;

        if (req->authority.len > 0 && h[0] == '[') {
                const char *close = memchr(h, ']', req->authority.len);
                end = close ? close + 1 : end;
        } else if ((colon = memchr(h, ':', req->authority.len)))
                end = colon;
        return api_pool_strdup(req, h, end - h);
}

static bool via_unix_socket(h2o_req_t *req) {
        struct sockaddr_storage ss;
        socklen_t n = req->conn->callbacks->get_peername
                              ? req->conn->callbacks->get_peername(req->conn, (struct sockaddr *) &ss)
                              : 0;

        return n > 0 && ss.ss_family == AF_UNIX;
}

/* A DNS-rebinding page reaches rprd under the attacker's name; an IP
 * literal is its own origin and cannot be rebound. */
static bool host_known(ApiServer *a, const char *host) {
        if (!*host || strcasecmp(host, "localhost") == 0 || is_ip_literal(host))
                return true;
        for (size_t i = 0; i < a->n_allowed_hosts; i++)
                if (strcasecmp(host, a->allowed_hosts[i]) == 0)
                        return true;
        return false;
}

bool api_host_allowed(ApiCall *c) {
        h2o_req_t *req = c->req;
        const char *host;

        if (via_unix_socket(req))
                return true;
        host = host_name(req);
        if (host_known(c->api, host))
                return true;
        api_reply_status(
                c, 421,
                "Host \"%s\" is not a name of this rprd (browsers may use localhost, an IP address, "
                "or a name given with --allowed-host)",
                host);
        return false;
}

/* The dashboard's files: a handler in front of h2o's file handler. */
static int on_page_req(h2o_handler_t *self, h2o_req_t *req) {
        ApiServer *a = ((ApiHandler *) self)->api;
        ApiCall *c = h2o_mem_alloc_pool(&req->pool, sizeof *c);

        *c = (ApiCall){.api = a, .req = req, .route = {.template = "/"}};
        if (via_unix_socket(req) || host_known(a, host_name(req)))
                return -1; /* on to the files */
        api_host_allowed(c);
        return 0;
}

void api_host_check_register(ApiServer *a, h2o_pathconf_t *pc) {
        ApiHandler *h = (ApiHandler *) h2o_create_handler(pc, sizeof *h);

        h->super.on_req = on_page_req;
        h->api = a;
}

/* ---- streams ------------------------------------------------------------------------ */

/* Whom a stream counts against: the token, or an anonymous reader's address. */
static char *caller_key(ApiCall *c) {
        struct sockaddr_storage ss;
        char addr[INET6_ADDRSTRLEN] = "?";
        socklen_t n;

        if (!c->caller.anonymous && c->caller.name)
                return xasprintf("token %s", c->caller.name);
        n = c->req->conn->callbacks->get_peername
                    ? c->req->conn->callbacks->get_peername(c->req->conn, (struct sockaddr *) &ss)
                    : 0;
        if (n > 0 && ss.ss_family == AF_INET)
                inet_ntop(AF_INET, &((struct sockaddr_in *) &ss)->sin_addr, addr, sizeof addr);
        else if (n > 0 && ss.ss_family == AF_INET6)
                inet_ntop(AF_INET6, &((struct sockaddr_in6 *) &ss)->sin6_addr, addr, sizeof addr);
        return xasprintf("anonymous reader at %s", addr);
}

bool api_stream_admit(ApiCall *c, ApiStream *s) {
        ApiServer *a = c->api;
        _cleanup_free_ char *key = caller_key(c);
        json_int_t held = json_integer_value(json_object_get(a->streams_by_caller, key));

        /* A refused caller's connection goes with the answer: a flood of
         * refused streams must not hold file descriptors either. */
        if (a->n_streams >= a->max_streams || held >= (json_int_t) a->max_streams_per_caller)
                c->req->http1_is_persistent = 0;

        if (a->n_streams >= a->max_streams) {
                api_reply_status(c, 429,
                                 "too many streams: rprd holds %zu watch, log and exec streams, its limit "
                                 "(--max-streams); try again later",
                                 a->n_streams);
                return false;
        }
        if (held >= (json_int_t) a->max_streams_per_caller) {
                api_reply_status(c, 429,
                                 "too many streams: %s holds %" JSON_INTEGER_FORMAT
                                 " watch, log and exec streams, its limit (--max-streams-per-caller); "
                                 "close one first",
                                 key, held);
                return false;
        }
        json_object_set_new(a->streams_by_caller, key, json_integer(held + 1));
        a->n_streams++;
        s->api = a;
        s->caller_key = TAKE_PTR(key);
        return true;
}

void api_stream_release(ApiStream *s) {
        ApiServer *a = s->api;

        if (!s->caller_key)
                return;
        json_int_t held = json_integer_value(json_object_get(a->streams_by_caller, s->caller_key));
        if (held > 1)
                json_object_set_new(a->streams_by_caller, s->caller_key, json_integer(held - 1));
        else
                json_object_del(a->streams_by_caller, s->caller_key);
        a->n_streams--;
        free(s->caller_key);
        s->caller_key = NULL;
}

/* ---- exec threads ------------------------------------------------------------------- */

unsigned api_exec_threads_take(ApiServer *a, unsigned want) {
        unsigned free_threads =
                a->exec_threads < a->max_exec_threads ? a->max_exec_threads - a->exec_threads : 0;
        unsigned got = want < free_threads ? want : free_threads;

        a->exec_threads += got;
        return got;
}

void api_exec_threads_give(ApiServer *a, unsigned n) {
        a->exec_threads -= n;
}

/* ---- connections and accepting ----------------------------------------------------- */

static void accept_resume(ApiServer *a) {
        if (!a->accept_paused || a->stopping)
                return;
        a->accept_paused = false;
        for (size_t i = 0; i < a->n_listeners; i++)
                if (a->listeners[i].sock)
                        h2o_socket_read_start(a->listeners[i].sock, a->listeners[i].on_accept);
}

static void on_accept_retry(h2o_timeout_entry_t *entry) {
        ApiServer *a = H2O_STRUCT_FROM_MEMBER(ApiServer, accept_retry_entry, entry);

        if (a->n_conns < a->max_conns)
                accept_resume(a);
        else
                h2o_timeout_link(a->ctx.loop, &a->accept_retry, &a->accept_retry_entry);
}

/* Stops reading the listeners and looks again on a timer: at the fd limit
 * a listener stays readable and the loop would spin on it. Clients wait
 * in the backlog meanwhile. */
void api_accept_pause(ApiServer *a, const char *why) {
        if (a->accept_paused)
                return;
        a->accept_paused = true;
        if (!a->accept_pause_logged) {
                log_warning("not accepting connections for now: %s", why);
                a->accept_pause_logged = true;
        }
        for (size_t i = 0; i < a->n_listeners; i++)
                if (a->listeners[i].sock)
                        h2o_socket_read_stop(a->listeners[i].sock);
        if (!h2o_timeout_is_linked(&a->accept_retry_entry))
                h2o_timeout_link(a->ctx.loop, &a->accept_retry, &a->accept_retry_entry);
}

/* A connection as accepted: h2o keeps its own lists, but an HTTP/2 one
 * with no stream open cannot be reached through them. */
typedef struct ApiConn {
        ApiServer *a;
        h2o_socket_t *sock;
        h2o_linklist_t link; /* in ApiServer.conns */
} ApiConn;

static void on_conn_close(void *data) {
        ApiConn *c = data;

        c->a->n_conns--;
        h2o_linklist_unlink(&c->link);
        free(c);
}

bool api_conn_admit(ApiServer *a) {
        if (a->n_conns < a->max_conns)
                return true;
        api_accept_pause(a, "the connection limit is reached (it follows RLIMIT_NOFILE)");
        return false;
}

void api_conn_accepted(ApiServer *a, h2o_socket_t *sock) {
        ApiConn *c = xcalloc(1, sizeof *c);

        c->a = a;
        c->sock = sock;
        h2o_linklist_insert(&a->conns, &c->link);
        a->n_conns++;
        sock->on_close.cb = on_conn_close;
        sock->on_close.data = c;
}

/* Thousands of long-lived connections (10,000 agents' poll streams) make
 * bursts: a poll window's answers come within seconds of each other, and
 * what they take for a moment grows the heap at its top, where one
 * allocation that stays pins the free space below it, beyond glibc's own
 * trimming. Looked at every second (api_run), trimmed when over 1 MiB is
 * free: a trim takes about a millisecond at 10,000 agents. (OpenSSL's
 * record buffers, taken and given back at every answer, are mappings of
 * their own: see rprd's malloc_setup.) */
#define TRIM_FREE_BYTES ((size_t) 1 << 20)

void api_limits_trim(void) {
        if (mallinfo2().fordblks > TRIM_FREE_BYTES)
                malloc_trim(0);
}

void api_conns_shutdown(ApiServer *a) {
        for (h2o_linklist_t *node = a->conns.next; node != &a->conns; node = node->next) {
                ApiConn *c = H2O_STRUCT_FROM_MEMBER(ApiConn, link, node);
                (void) shutdown(h2o_socket_get_fd(c->sock), SHUT_RDWR);
        }
}

void api_limits_metrics(ApiServer *a, Buf *b) {
        buf_printf(b,
                   "# HELP rpr_streams Watch, run log and exec streams held.\n# TYPE rpr_streams gauge\n"
                   "rpr_streams %zu\nrpr_streams_limit %zu\n",
                   a->n_streams, a->max_streams);
        buf_printf(b,
                   "# HELP rpr_connections Open client connections.\n# TYPE rpr_connections gauge\n"
                   "rpr_connections %zu\nrpr_connections_limit %zu\n",
                   a->n_conns, a->max_conns);
        buf_printf(b,
                   "# HELP rpr_exec_threads Threads running exec commands.\n# TYPE rpr_exec_threads gauge\n"
                   "rpr_exec_threads %u\nrpr_exec_threads_limit %u\n",
                   a->exec_threads, a->max_exec_threads);
}

/* ---- set-up --------------------------------------------------------------------------- */

static void allowed_host_add(ApiServer *a, const char *name, size_t len) {
        a->allowed_hosts = xrealloc(a->allowed_hosts, (a->n_allowed_hosts + 1) * sizeof *a->allowed_hosts);
        a->allowed_hosts[a->n_allowed_hosts++] = xstrndup(name, len);
}

void api_limits_init(ApiServer *a, const ApiOptions *o) {
        struct rlimit rl = {.rlim_cur = 1024};
        size_t nofile, reserve;

        (void) getrlimit(RLIMIT_NOFILE, &rl);
        nofile = rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > 1u << 20 ? 1u << 20 : (size_t) rl.rlim_cur;
        reserve = MAX((size_t) FD_RESERVE_MIN, nofile / 4);
        a->max_conns = nofile > reserve + 16 ? nofile - reserve : 16;

        a->max_streams =
                o->max_streams ? o->max_streams : MIN((size_t) STREAMS_DEFAULT_MAX, a->max_conns / 2);
        a->max_streams_per_caller =
                o->max_streams_per_caller ? o->max_streams_per_caller : STREAMS_PER_CALLER_DEFAULT;
        a->max_exec_threads = o->max_exec_threads ? o->max_exec_threads : EXEC_THREADS_DEFAULT;
        a->streams_by_caller = json_object();
        for (size_t i = 0; i < o->n_allowed_hosts; i++)
                allowed_host_add(a, o->allowed_hosts[i], strlen(o->allowed_hosts[i]));
        /* A listener bound by name answers to that name. */
        for (size_t i = 0; i < o->n_listen; i++) {
                const char *spec = o->listen[i], *colon = strrchr(spec, ':');
                if (startswith(spec, "tcp:") && colon > spec + 4 && spec[4] != '[')
                        allowed_host_add(a, spec + 4, colon - spec - 4);
        }
        h2o_linklist_init_anchor(&a->conns);
        h2o_timeout_init(a->ctx.loop, &a->accept_retry, ACCEPT_RETRY_MSEC);
        a->accept_retry_entry = (h2o_timeout_entry_t){.cb = on_accept_retry};
        a->limits_ready = true;
}

void api_limits_done(ApiServer *a) {
        if (a->limits_ready) {
                if (h2o_timeout_is_linked(&a->accept_retry_entry))
                        h2o_timeout_unlink(&a->accept_retry_entry);
                h2o_timeout_dispose(a->ctx.loop, &a->accept_retry);
        }
        json_decref(a->streams_by_caller);
        for (size_t i = 0; i < a->n_allowed_hosts; i++)
                free(a->allowed_hosts[i]);
        free(a->allowed_hosts);
}
