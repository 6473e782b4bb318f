/* api: the server's life: h2o set-up, listeners, the loop, and a shutdown
 * that lets in-flight writes answer, ends watch streams and closes every
 * connection before the loop goes away.
 *
 * api_stop() may run in a signal handler, so it only writes a byte down a
 * pipe whose read end sits in the loop. */
#include <fcntl.h>
#include <netdb.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "api/api-private.h"
#include <h2o/http2.h>

#define API_SHUTDOWN_WAIT_USEC (5 * USEC_PER_SEC)
/* How long a client has to go after its GOAWAY before its socket is shut. */
#define API_GOAWAY_GRACE_USEC (USEC_PER_SEC / 2)
/* Checks at once; each waits on a remote machine, not on the CPU. */
#define API_ACTION_THREADS 8

/* ---- listeners ------------------------------------------------------------ */

/* Up to 16 connections a turn of the loop, as h2o's own server does: a
 * fleet of agents reconnecting at once must not wait one turn each. */
#define ACCEPTS_PER_TURN 16

static void accept_on(h2o_socket_t *listener, const char *err, h2o_accept_ctx_t *accept_ctx) {
        ApiServer *a = listener->data;
        h2o_socket_t *sock;

        if (err)
                return;
        for (int i = 0; i < ACCEPTS_PER_TURN && api_conn_admit(a); i++) {
                errno = 0;
                sock = h2o_evloop_socket_accept(listener);
                if (!sock) {
                        /* Out of fds the listener stays readable: wait, don't spin. */
                        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
                                api_accept_pause(a, strerror(errno));
                        return;
                }
                api_conn_accepted(a, sock);
                h2o_accept(accept_ctx, sock);
        }
}

static void on_accept(h2o_socket_t *listener, const char *err) {
        ApiServer *a = listener->data;

        accept_on(listener, err, &a->accept_ctx);
}

/* h2o runs the handshake, then serves h2 or http/1.1 by ALPN. */
static void on_accept_tls(h2o_socket_t *listener, const char *err) {
        ApiServer *a = listener->data;

        accept_on(listener, err, &a->tls_accept_ctx);
}

static bool unix_socket_alive(const struct sockaddr_un *sa) {
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        bool alive;

        if (fd < 0)
                return false;
        alive = connect(fd, (const struct sockaddr *) sa, sizeof *sa) == 0;
        close(fd);
        return alive;
}

static int listen_unix(const char *path, int *ret_fd) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        struct stat st;

        if (strlen(path) >= sizeof sa.sun_path)
                return -ENAMETOOLONG;
        memcpy(sa.sun_path, path, strlen(path) + 1);

        /* A socket file left behind by an earlier run is stale and goes;
         * one that still answers belongs to a running rprd. */
        if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode)) {
                if (unix_socket_alive(&sa))
                        return -EADDRINUSE;
                (void) unlink(path);
        }

        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return -errno;
        if (bind(fd, (struct sockaddr *) &sa, sizeof sa) < 0 || chmod(path, 0660) < 0 ||
            listen(fd, 128) < 0) {
                int r = -errno;
                close(fd);
                return r;
        }
        *ret_fd = fd;
        return 0;
}

static int listen_tcp(const char *hostport, int *ret_fd) {
        _cleanup_free_ char *host = NULL;
        const char *colon = strrchr(hostport, ':');
        struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
        struct addrinfo *res = NULL;
        int one = 1, r;

        if (!colon || colon == hostport || !colon[1])
                return -EINVAL;
        if (hostport[0] == '[' && colon[-1] == ']')
                host = xstrndup(hostport + 1, colon - hostport - 2);
        else
                host = xstrndup(hostport, colon - hostport);

        r = getaddrinfo(host, colon + 1, &hints, &res);
        if (r != 0)
                return r == EAI_SYSTEM ? -errno : -EADDRNOTAVAIL;

        int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0) {
                r = -errno;
                freeaddrinfo(res);
                return r;
        }
        (void) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        /* SOMAXCONN, not 128: agents come back together after a restart. */
        if (bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, SOMAXCONN) < 0) {
                r = -errno;
                close(fd);
                freeaddrinfo(res);
                return r;
        }
        freeaddrinfo(res);
        *ret_fd = fd;
        return 0;
}

static void listener_add(ApiServer *a, int fd, const char *spec, const char *unix_path, bool tls) {
        ApiListener *l;

        a->listeners = xrealloc(a->listeners, (a->n_listeners + 1) * sizeof *a->listeners);
        l = &a->listeners[a->n_listeners++];
        *l = (ApiListener){
                .sock = h2o_evloop_socket_create(a->ctx.loop, fd, H2O_SOCKET_FLAG_DONT_READ),
                .spec = xstrdup(spec),
                .unix_path = unix_path ? xstrdup(unix_path) : NULL,
                .on_accept = tls ? on_accept_tls : on_accept,
        };
        l->sock->data = a;
        h2o_socket_read_start(l->sock, l->on_accept);
}

/* A listener handed over by socket activation is TLS when its
 * FileDescriptorName starts with "tls" (FileDescriptorName=tls in the
 * .socket unit). */
static bool fd_is_tls(const ApiOptions *o, size_t i) {
        return o->fd_names && o->fd_names[i] && startswith(o->fd_names[i], "tls");
}

static bool wants_tls(const ApiOptions *o) {
        for (size_t i = 0; i < o->n_fds; i++)
                if (fd_is_tls(o, i))
                        return true;
        for (size_t i = 0; o->n_fds == 0 && i < o->n_listen; i++)
                if (startswith(o->listen[i], "tls:"))
                        return true;
        return false;
}

static int listeners_open(ApiServer *a, const ApiOptions *o, char **ret_error) {
        int r, fd;

        if (wants_tls(o)) {
                r = api_tls_init(a, o, ret_error);
                if (r < 0)
                        return r;
        }
        for (size_t i = 0; i < o->n_fds; i++) {
                fd = o->fds[i];
                (void) fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
                _cleanup_free_ char *spec = o->fd_names && o->fd_names[i]
                                                    ? xasprintf("fd:%d (%s)", fd, o->fd_names[i])
                                                    : xasprintf("fd:%d", fd);
                listener_add(a, fd, spec, NULL, fd_is_tls(o, i));
        }
        if (o->n_fds > 0)
                return 0;

        for (size_t i = 0; i < o->n_listen; i++) {
                const char *spec = o->listen[i];

                if (startswith(spec, "unix:"))
                        r = listen_unix(spec + 5, &fd);
                else if (startswith(spec, "tcp:") || startswith(spec, "tls:"))
                        r = listen_tcp(spec + 4, &fd);
                else
                        r = -EPROTONOSUPPORT;
                if (r < 0) {
                        *ret_error = xasprintf("cannot listen on %s: %s", spec, strerror(-r));
                        return r;
                }
                listener_add(a, fd, spec, startswith(spec, "unix:") ? spec + 5 : NULL, startswith(spec, "tls:"));
        }
        return 0;
}

static void listeners_close(ApiServer *a) {
        for (size_t i = 0; i < a->n_listeners; i++) {
                ApiListener *l = &a->listeners[i];

                if (l->sock) {
                        h2o_socket_read_stop(l->sock);
                        h2o_socket_close(l->sock);
                        l->sock = NULL;
                }
                if (l->unix_path) {
                        (void) unlink(l->unix_path);
                        free(l->unix_path);
                        l->unix_path = NULL;
                }
        }
}

/* ---- stop pipe ------------------------------------------------------------ */

static void on_stop_read(h2o_socket_t *sock, const char *err) {
        ApiServer *a = sock->data;

        (void) err;
        h2o_buffer_consume(&sock->input, sock->input->size);
        a->stop_requested = 1;
}

void api_stop(ApiServer *a) {
        char c = 1;

        if (!a)
                return;
        a->stop_requested = 1;
        /* Async-signal-safe: the byte only wakes the loop up. */
        (void) !write(a->stop_pipe[1], &c, 1);
}

/* ---- set-up --------------------------------------------------------------- */

static void handler_add(ApiServer *a, h2o_pathconf_t *pc) {
        ApiHandler *h = (ApiHandler *) h2o_create_handler(pc, sizeof *h);

        h->super.on_req = api_on_req;
        h->api = a;
}

static void handler_register(ApiServer *a, h2o_hostconf_t *host, const char *path) {
        handler_add(a, h2o_config_register_path(host, path, 0));
}

/* The dashboard's files: its own scripts and styles only, never inside
 * another site's frame, no guessing of types, no referrer to elsewhere. */
static void page_headers(h2o_pathconf_t *root) {
        static h2o_iovec_t csp = {H2O_STRLIT("content-security-policy")};
        static h2o_iovec_t nosniff = {H2O_STRLIT("x-content-type-options")};
        static h2o_iovec_t referrer = {H2O_STRLIT("referrer-policy")};
        static h2o_headers_command_t cmds[] = {
                {H2O_HEADERS_CMD_SETIFEMPTY, &csp,
                 {H2O_STRLIT("default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; "
                             "form-action 'self'")}},
                {H2O_HEADERS_CMD_SETIFEMPTY, &nosniff, {H2O_STRLIT("nosniff")}},
                {H2O_HEADERS_CMD_SETIFEMPTY, &referrer, {H2O_STRLIT("same-origin")}},
                {H2O_HEADERS_CMD_NULL, NULL, {NULL, 0}},
        };

        h2o_headers_register(root, cmds);
}

static void config_setup(ApiServer *a) {
        static const char *index_files[] = {"index.html", NULL};
        h2o_hostconf_t *host;

        h2o_config_init(&a->config);
        /* Bodies just over the limit still reach us, to be answered with a
         * JSON 413; h2o's own plain 413 covers only the absurd ones. */
        a->config.max_request_entity_size = a->max_body * 2 + 1024 * 1024;
        a->config.http1.upgrade_to_http2 = 0;
        host = h2o_config_register_host(&a->config, h2o_iovec_init(H2O_STRLIT("default")), 65535);

        handler_register(a, host, "/api");
        handler_register(a, host, "/healthz");
        handler_register(a, host, "/metrics");
        handler_register(a, host, "/hooks");
        /* "/": the dashboard's files, and our JSON 404 for what is not one. */
        h2o_pathconf_t *root = h2o_config_register_path(host, "/", 0);
        if (a->web_dir) {
                /* First, a path no file may be looked up by: 400; then a
                 * Host that is not rprd's (a DNS-rebinding page): 421. */
                ApiHandler *guard = (ApiHandler *) h2o_create_handler(root, sizeof *guard);
                guard->super.on_req = api_on_req_target;
                guard->api = a;
                api_host_check_register(a, root);
                h2o_file_register(root, a->web_dir, index_files, NULL, 0);
                page_headers(root);
        }
        handler_add(a, root);
}

static void api_freep(ApiServer **a) {
        api_free(*a);
}

int api_new_verbose(const ApiOptions *o, ApiServer **ret, char **ret_error) {
        _cleanup_(api_freep) ApiServer *a = xcalloc(1, sizeof *a);
        _cleanup_free_ char *error = NULL;
        int r;

        a->store = o->store;
        a->controller = o->controller;
        a->servers = o->servers;
        a->ssh = o->ssh;
        a->connectivity = o->connectivity;
        a->activity = o->activity;
        a->stop_grace_usec = o->stop_grace_usec;
        a->repos = o->repos;
        a->syncs = o->syncs;
        a->tokens = o->tokens;
        a->webhook = o->webhook;
        a->bindings = o->bindings;
        a->runs = o->runs;
        a->pipelines = o->pipelines;
        a->run_dir = o->run_dir ? xstrdup(o->run_dir) : NULL;
        a->agents = o->agents;
        a->anonymous_read = o->anonymous_read;
        a->state_dir = xstrdup(o->state_dir ? o->state_dir : ".");
        a->web_dir = o->web_dir ? xstrdup(o->web_dir) : NULL;
        a->max_body = o->max_body ? o->max_body : API_DEFAULT_MAX_BODY;
        a->stop_pipe[0] = a->stop_pipe[1] = -1;
        a->last_tick_usec = now_usec();

        config_setup(a);
        /* A socket's input buffer starts at 4 KiB, not h2o's 8: an agent's
         * held poll keeps its request in it for 25 s, and every read asks
         * for 4 KiB anyway (larger bodies grow it). Before any socket. */
        h2o_socket_buffer_prototype._initial_buf.capacity = H2O_SOCKET_INITIAL_INPUT_BUFFER_SIZE;
        h2o_context_init(&a->ctx, h2o_evloop_create(), &a->config);
        a->ctx_ready = true;
        a->accept_ctx = (h2o_accept_ctx_t){.ctx = &a->ctx, .hosts = a->config.hosts};
        api_limits_init(a, o);
        api_jobs_init(a);
        api_watch_init(a);
        api_exec_init(a);
        api_run_logs_init(a);
        api_agents_init(a);

        if (pipe2(a->stop_pipe, O_CLOEXEC | O_NONBLOCK) < 0) {
                r = -errno;
                error = xasprintf("cannot create a pipe: %s", strerror(errno));
                goto fail;
        }
        a->stop_sock = h2o_evloop_socket_create(a->ctx.loop, a->stop_pipe[0], 0);
        a->stop_sock->data = a;
        h2o_socket_read_start(a->stop_sock, on_stop_read);

        r = workq_new(o->workers ? o->workers : 2, &a->workq);
        if (r < 0) {
                error = xasprintf("cannot start worker threads: %s", strerror(-r));
                goto fail;
        }

        r = workq_new(API_ACTION_THREADS, &a->actionq);
        if (r < 0) {
                error = xasprintf("cannot start worker threads: %s", strerror(-r));
                goto fail;
        }

        r = listeners_open(a, o, &error);
        if (r < 0)
                goto fail;

        r = api_auth_init(a);
        if (r < 0) {
                error = xasprintf("cannot index the api tokens: %s", strerror(-r));
                goto fail;
        }

        r = api_admin_token_ensure(a);
        if (r < 0) {
                error = xasprintf("cannot create the admin token in %s: %s", a->state_dir, strerror(-r));
                goto fail;
        }

        *ret = TAKE_PTR(a);
        return 0;

fail:
        if (ret_error)
                *ret_error = TAKE_PTR(error);
        return r;
}

int api_new(const ApiOptions *o, ApiServer **ret) {
        return api_new_verbose(o, ret, NULL);
}

/* ---- running and stopping ---------------------------------------------- */

static int shutdown_socket(h2o_req_t *req, void *userdata) {
        h2o_socket_t *sock =
                req->conn->callbacks->get_socket ? req->conn->callbacks->get_socket(req->conn) : NULL;

        (void) userdata;
        if (sock)
                (void) shutdown(h2o_socket_get_fd(sock), SHUT_RDWR);
        return 0;
}

static bool connections_open(ApiServer *a) {
        return !h2o_linklist_is_empty(&a->ctx.http1._conns) || !h2o_linklist_is_empty(&a->ctx.http2._conns);
}

/* Runs the loop until done(a) or the deadline. */
static void loop_until(ApiServer *a, bool (*done)(ApiServer *a), uint64_t deadline) {
        while (!done(a) && now_mono_usec() < deadline)
                h2o_evloop_run(a->ctx.loop, 10);
}

/* Writes have answered and exec streams, canceled, have sent their last
 * line. */
static bool no_jobs(ApiServer *a) {
        return a->jobs_pending == 0 && a->n_execs == 0;
}

static bool all_closed(ApiServer *a) {
        return a->jobs_pending == 0 && a->n_watches == 0 && a->n_execs == 0 && a->n_run_logs == 0 &&
               !connections_open(a);
}

static bool no_execs(ApiServer *a) {
        return a->n_execs == 0;
}

static void api_shutdown(ApiServer *a) {
        a->stopping = true;
        listeners_close(a);

        /* Commands under way get the grace period to finish; then they are
         * canceled, and their streams end with that result. Writes in
         * flight still answer. */
        if (a->n_execs > 0 && a->stop_grace_usec > 0) {
                log_info("waiting up to %.0f s for %zu running command stream(s)",
                         (double) a->stop_grace_usec / USEC_PER_SEC, a->n_execs);
                loop_until(a, no_execs, now_mono_usec() + a->stop_grace_usec);
        }
        uint64_t deadline = now_mono_usec() + API_SHUTDOWN_WAIT_USEC;
        api_exec_cancel_all(a);
        loop_until(a, no_jobs, deadline);

        api_watch_end_all(a);
        api_run_logs_end_all(a);
        api_agents_end_all(a);
        H2O_HTTP1_CALLBACKS.foreach_request(&a->ctx, shutdown_socket, NULL);
        H2O_HTTP2_CALLBACKS.foreach_request(&a->ctx, shutdown_socket, NULL);

        /* Idle connections (a client between requests, an agent between
         * polls, one whose socket a child of the client still holds) would
         * keep the context from being disposed: as h2o's own server does,
         * HTTP/2 ones get a GOAWAY and HTTP/1 ones no more keep-alive; what
         * is left after a short grace is shut. */
        h2o_context_request_shutdown(&a->ctx);
        loop_until(a, all_closed, MIN(deadline, now_mono_usec() + API_GOAWAY_GRACE_USEC));
        api_conns_shutdown(a);
        loop_until(a, all_closed, deadline);
        /* h2o's GOAWAY resend timer must not outlive the context. */
        if (h2o_timeout_is_linked(&a->ctx.http2._graceful_shutdown_timeout))
                h2o_timeout_unlink(&a->ctx.http2._graceful_shutdown_timeout);
}

/* After each turn of the loop: is anything still going on? */
static void note_quiet(ApiServer *a, uint64_t now) {
        bool busy = a->n_watches > 0 || a->n_execs > 0 || a->n_run_logs > 0 || a->jobs_pending > 0;
        uint64_t since = atomic_load(&a->quiet_since_usec);

        if (busy)
                atomic_store(&a->quiet_since_usec, 0);
        else if (since == 0)
                atomic_store(&a->quiet_since_usec, now);
}

uint64_t api_quiet_since(ApiServer *a) {
        return atomic_load(&a->quiet_since_usec);
}

int api_run(ApiServer *a) {
        while (!a->stop_requested) {
                h2o_evloop_run(a->ctx.loop, 1000);
                uint64_t now = now_usec();
                note_quiet(a, now);
                if (now - a->last_tick_usec >= USEC_PER_SEC) {
                        a->last_tick_usec = now;
                        api_watch_reap(a);
                        api_exec_reap(a);
                        api_run_logs_reap(a);
                        api_limits_trim();
                }
        }
        api_shutdown(a);
        return 0;
}

void api_free(ApiServer *a) {
        if (!a)
                return;

        /* Streams whose clients would not go live on in h2o's memory; what
         * could still call into a from elsewhere is cut off first: the
         * store's wake-ups, and exec threads (waited for). A thread that
         * will not end keeps a alive: it is left to the process's exit. */
        if (a->ctx_ready) {
                api_watch_detach_all(a);
                if (!api_exec_wait_all(a, now_mono_usec() + API_SHUTDOWN_WAIT_USEC)) {
                        log_warning(
                                "exec threads still running at exit; leaving the API's memory to the exit");
                        listeners_close(a);
                        return;
                }
        }
        listeners_close(a);
        workq_free(a->actionq);
        workq_free(a->workq);
        if (a->ctx_ready) {
                h2o_evloop_t *loop = a->ctx.loop;

                api_limits_done(a);
                api_watch_done(a);
                api_run_logs_done(a);
                api_agents_done(a);
                api_jobs_done(a);
                api_exec_done(a);
                if (a->stop_sock)
                        h2o_socket_close(a->stop_sock);
                else if (a->stop_pipe[0] >= 0)
                        close(a->stop_pipe[0]);
                /* h2o asserts that no connection is left; if a client would
                 * not go, leave the loop to the process's exit. */
                if (!connections_open(a)) {
                        h2o_evloop_run(loop, 0);
                        h2o_context_dispose(&a->ctx);
                        h2o_evloop_destroy(loop);
                }
        } else {
                api_limits_done(a);
                if (a->stop_pipe[0] >= 0)
                        close(a->stop_pipe[0]);
        }
        if (a->stop_pipe[1] >= 0)
                close(a->stop_pipe[1]);
        h2o_config_dispose(&a->config);

        for (size_t i = 0; i < a->n_listeners; i++) {
                free(a->listeners[i].spec);
                free(a->listeners[i].unix_path);
        }
        free(a->listeners);
        api_tls_done(a);
        api_counters_free(a);
        api_auth_done(a);
        free(a->run_dir);
        free(a->state_dir);
        free(a->web_dir);
        free(a);
}
