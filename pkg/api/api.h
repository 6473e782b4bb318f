/* api: rprd's HTTP API on h2o (evloop), on a unix socket and loopback TCP.
 *
 * One event-loop thread serves every request. Reads come from the store's
 * in-memory index; anything that blocks (store writes, which fsync) runs on
 * a work queue and answers back through h2o's multithread queue. Watch
 * streams follow the store's change feed. Bearer-token auth with roles
 * viewer < operator < admin on every route. */
#pragma once

#include "base/base.h"

typedef struct Store Store;
typedef struct Controller Controller;
typedef struct ServerController ServerController;
typedef struct SshPool SshPool;
typedef struct LogFile LogFile;
typedef struct RepoController RepoController;
typedef struct TokenController TokenController;
typedef struct Webhook Webhook;
typedef struct BindingController BindingController;
typedef struct RunController RunController;
typedef struct PipelineController PipelineController;
typedef struct SyncController SyncController;
typedef struct Agents Agents;
typedef struct ApiServer ApiServer;

typedef struct ApiOptions {
        Store *store;
        /* "unix:PATH", "tcp:HOST:PORT" or "tls:HOST:PORT" each. */
        const char *const *listen;
        size_t n_listen;
        /* Listening sockets handed over already bound (socket activation);
         * when n_fds > 0 these are used instead of listen. */
        const int *fds;
        const char *const *fd_names; /* FileDescriptorName of each, or NULL; "tls...": TLS */
        size_t n_fds;
        /* For the TLS listeners: a PEM certificate (chain) and its key. Both
         * NULL: a self-signed certificate made on first start and kept in
         * $STATE/tls/. */
        const char *tls_cert, *tls_key;
        const char *state_dir;
        const char *web_dir; /* NULL: no dashboard */
        size_t max_body;     /* bytes; 0 = API_DEFAULT_MAX_BODY */
        unsigned workers;    /* threads for blocking work; 0 = 2 */
        /* At shutdown, how long running exec streams may go on before they
         * are canceled; 0: cancel at once. */
        uint64_t stop_grace_usec;
        /* The controllers, for actions, /healthz and /metrics; any may be
         * NULL (then the actions that need them answer 503). */
        Controller *controller;
        ServerController *servers;
        SshPool *ssh;
        LogFile *connectivity;
        LogFile *activity;
        RepoController *repos;
        TokenController *tokens; /* notes when api tokens are used */
        Webhook *webhook;        /* NULL: /hooks/github answers 503 */
        BindingController *bindings;
        RunController *runs;
        PipelineController *pipelines;
        SyncController *syncs; /* for /metrics */
        const char *run_dir; /* Runs' output files (NULL: none are served) */
        Agents *agents;      /* the agents' protocol (NULL: /api/v1/agents answers 503) */
        /* Reads without a token are allowed (as viewer): the dashboard's
         * read-only view. Writes always need one. */
        bool anonymous_read;
        /* Limits that keep a reader from hurting the daemon; 0: defaults.
         * Streams (watch, run log, exec) in all and per caller; exec
         * threads in all. */
        unsigned max_streams, max_streams_per_caller, max_exec_threads;
        /* Names browsers may reach rprd by, besides localhost and IP
         * addresses (DNS rebinding): the dashboard, cookies, anonymous reads. */
        const char *const *allowed_hosts;
        size_t n_allowed_hosts;
} ApiOptions;

#define API_DEFAULT_MAX_BODY (16u * 1024 * 1024)

/* Creates the server, binds its listeners and makes sure the admin token
 * exists (generating $STATE/admin.token, mode 0600, on first start). */
int api_new(const ApiOptions *o, ApiServer **ret);
/* As api_new(); on failure also sets *ret_error (optional; caller frees) to
 * what failed, for a person: "cannot listen on tcp:127.0.0.1:8270: Address
 * already in use". */
int api_new_verbose(const ApiOptions *o, ApiServer **ret, char **ret_error);
/* Runs the event loop until api_stop(). */
int api_run(ApiServer *a);
/* Since when nothing has been asked of the API: no request, no watch or
 * exec stream, no job in flight (realtime usec); 0 while something is.
 * Callable from any thread. */
uint64_t api_quiet_since(ApiServer *a);
/* The fingerprint clients pin ("SHA256:BASE64" of the certificate's
 * public key) and the certificate's file; NULL without a TLS listener. */
const char *api_tls_fingerprint(ApiServer *a);
const char *api_tls_cert_path(ApiServer *a);
/* Async-signal-safe: asks api_run() to return. */
void api_stop(ApiServer *a);
void api_free(ApiServer *a); /* NULL-safe */
