/* api-private: what the files of the api module share.
 *
 * The server (ApiServer) owns one h2o event loop, its listeners, a work
 * queue for blocking store writes and the open watch streams. Each request
 * gets an ApiCall from its memory pool: the parsed route, the caller's
 * identity and the helpers that answer it. Everything here runs on the loop
 * thread unless it says otherwise. */
#pragma once

#include <h2o.h>
#include <h2o/http1.h>
#include <signal.h>
#include <stdatomic.h>

#include "api/api.h"
#include "auth/auth.h"
#include "resource/resource.h"
#include "store/store.h"

#define API_VERSION_STRING RPR_VERSION

typedef enum ApiRole {
        ROLE_ANONYMOUS = 0,
        ROLE_VIEWER,
        ROLE_OPERATOR,
        ROLE_ADMIN,
} ApiRole;

/* Requests counted per route template and status code for /metrics. */
typedef struct ApiCounter {
        const char *route;
        int code;
        uint64_t count;
} ApiCounter;

typedef struct ApiListener {
        h2o_socket_t *sock;
        char *spec;      /* "unix:PATH", "tcp:HOST:PORT" or "tls:HOST:PORT" */
        char *unix_path; /* removed again on free */
        h2o_socket_cb on_accept; /* plain or TLS */
} ApiListener;

typedef struct ApiWatch ApiWatch;
typedef struct ApiExec ApiExec;
typedef struct ApiRunLog ApiRunLog;

struct ApiServer {
        Store *store;
        /* From ApiOptions; any may be NULL. */
        Controller *controller;
        ServerController *servers;
        SshPool *ssh;
        LogFile *connectivity;
        LogFile *activity;
        RepoController *repos;
        TokenController *tokens;
        Webhook *webhook;
        BindingController *bindings;
        RunController *runs;
        PipelineController *pipelines;
        SyncController *syncs;
        char *run_dir;
        Agents *agents;
        struct ApiAgents *agent_state; /* api-agents.c: held polls, wake-ups, the tick */
        struct ApiAgentStreams *agent_streams; /* api-agent-stream.c: upgraded connections */
        bool anonymous_read;
        char *state_dir;
        char *web_dir;
        size_t max_body;
        uint64_t stop_grace_usec;

        h2o_globalconf_t config;
        h2o_context_t ctx;
        h2o_accept_ctx_t accept_ctx;
        bool ctx_ready;
        /* TLS listeners (api-tls.c): their own accept context, the
         * certificate's file and its public key's fingerprint. */
        h2o_accept_ctx_t tls_accept_ctx;
        char *tls_cert_path;
        char *tls_fingerprint;

        ApiListener *listeners;
        size_t n_listeners;

        /* Writes: jobs run on workq and come back through job_receiver. */
        WorkQueue *workq;
        h2o_multithread_receiver_t job_receiver;
        size_t jobs_pending;
        /* Actions that wait on remote machines (checks) run here, so that a
         * slow server never holds up a store write. */
        WorkQueue *actionq;

        /* Exec streams: their worker threads wake the loop through
         * exec_receiver. */
        h2o_multithread_receiver_t exec_receiver;
        ApiExec *execs;
        size_t n_execs;

        /* Watch streams: the store wakes the loop through watch_receiver. */
        h2o_multithread_receiver_t watch_receiver;
        h2o_multithread_message_t watch_msg;
        atomic_bool watch_wakeup_sent;
        ApiWatch *watches;
        size_t n_watches;

        /* Run output streams; followers at the end of the file look again
         * when log_poll fires. */
        ApiRunLog *run_logs;
        size_t n_run_logs;
        h2o_timeout_t log_poll;

        /* api_stop(): a byte down a pipe, read on the loop. */
        int stop_pipe[2];
        h2o_socket_t *stop_sock;
        volatile sig_atomic_t stop_requested;
        bool stopping;

        uint64_t last_tick_usec;
        /* Set on the loop, read by rprd's idle check: see api_quiet_since(). */
        _Atomic uint64_t quiet_since_usec;

        ApiCounter *counters;
        size_t n_counters;

        struct ApiAuth *auth; /* api-auth.c: the token index and the throttle */

        /* api-limits.c: what a reader may hold. */
        char **allowed_hosts;
        size_t n_allowed_hosts;
        size_t n_streams, max_streams, max_streams_per_caller;
        json_t *streams_by_caller; /* caller key -> streams held */
        unsigned exec_threads, max_exec_threads;
        size_t n_conns, max_conns;
        h2o_linklist_t conns; /* ApiConn: every accepted socket, to shut at a stop */
        bool accept_paused, accept_pause_logged, limits_ready;
        h2o_timeout_t accept_retry;
        h2o_timeout_entry_t accept_retry_entry;
};

typedef struct ApiHandler {
        h2o_handler_t super;
        ApiServer *api;
} ApiHandler;

/* What a request asks for, parsed from its path. */
typedef enum ApiRouteType {
        ROUTE_NOT_FOUND,
        ROUTE_HEALTHZ,
        ROUTE_METRICS,
        ROUTE_VERSION,
        ROUTE_HOOK,
        ROUTE_APPLY,
        ROUTE_EXEC,
        ROUTE_RECONCILE,
        ROUTE_TOKENS,
        ROUTE_LOGS,
        ROUTE_LOGIN,   /* POST /api/v1/login: the dashboard's cookie */
        ROUTE_LOGOUT,  /* POST /api/v1/logout */
        ROUTE_SESSION, /* GET /api/v1/session: who the caller is */
        ROUTE_WATCH,   /* GET /api/v1/watch: every kind in one stream */
        ROUTE_ADMIN_BACKUP, /* GET /api/v1/admin/backup: a copy of the store */
        ROUTE_LIST,   /* /api/v1/{plural} and /api/v1/namespaces/{ns}/{plural} */
        ROUTE_OBJECT, /* .../{plural}/{name} */
        ROUTE_STATUS, /* .../{plural}/{name}/status */
        ROUTE_ACTION, /* .../{plural}/{name}/{check|trigger|runs|cancel|log} */
        ROUTE_AGENT_JOIN, /* POST /api/v1/agents/join: a join token in the body */
        ROUTE_AGENT,      /* /api/v1/agents/poll, .../agents/jobs/{id}/{sub}: an agent's credential */
} ApiRouteType;

typedef struct ApiRoute {
        ApiRouteType type;
        const char *template; /* metrics label, e.g. "/api/v1/namespaces/{ns}/{plural}" */
        const Kind *kind;
        const char *plural, *ns, *name, *sub; /* pool strings; ns NULL = all namespaces */
} ApiRoute;

typedef struct ApiCaller {
        ApiRole role;
        const char *name;              /* the Token's name (pool); NULL when anonymous */
        const char *const *namespaces; /* NULL-terminated (pool); NULL = every namespace */
        const char *agent;             /* an agent's credential: its Server (pool); else NULL */
        bool via_cookie;               /* the token came in the dashboard's cookie */
        bool anonymous;                /* an anonymous read (--anonymous-read) */
} ApiCaller;

/* The dashboard's cookie: the API token itself, HttpOnly, SameSite=Strict. */
#define API_COOKIE "rpr_token"

typedef struct ApiCall {
        ApiServer *api;
        h2o_req_t *req;
        ApiRoute route;
        ApiCaller caller;
} ApiCall;

/* ---- api-http.c: answers, request parts ---------------------------------- */

/* Each answers the request once and counts it for /metrics. */
void api_reply_json(ApiCall *c, int status, json_t *body); /* steals body */
/* Answers JSON text built in b (a newline is added); takes b's data. */
void api_reply_buf(ApiCall *c, int status, Buf *b);
/* Takes body (malloc'd) and frees it once sent. */
void api_reply_owned(ApiCall *c, int status, const char *content_type, char *body, size_t len);
void api_reply_text(ApiCall *c, int status, const char *content_type, const char *body, size_t len);
/* A Status object. */
void api_reply_status(ApiCall *c, int code, const char *fmt, ...) _printf_(3, 4);
/* 422 Invalid (or code) with every diagnostic as a detail. */
void api_reply_diags(ApiCall *c, int code, const char *message, const Diags *d);
json_t *api_status_new(int code, const char *message);
const char *api_reason(int code);
json_t *api_diag_to_json(const Diag *d);
/* Appends v as compact JSON. */
int api_buf_json(Buf *b, const json_t *v);
/* Appends an object's stored text as it may leave rprd: verbatim, or
 * parsed and redacted when its kind (k) has secrets. */
void api_buf_object(Buf *b, const Kind *k, const char *text, size_t len);
/* Whether a stored object's labels match sel (NULL matches all); parses
 * only when there is a selector. */
bool api_text_selected(const Selector *sel, const char *text, size_t len);

/* What is wrong with a request target (path and query, as sent): a '%'
 * without two hex digits after it, a control character (NUL included),
 * or bytes that are not UTF-8 once decoded (overlong forms, surrogates).
 * NULL when nothing is. */
const char *api_target_problem(const char *target, size_t len);
/* The same for a header value, as sent (a tab is allowed, no decoding). */
const char *api_header_problem(const char *value, size_t len);

/* Decoded query parameter (pool string) or NULL if absent. */
const char *api_query(h2o_req_t *req, const char *name);
bool api_query_true(h2o_req_t *req, const char *name);
/* A request header's value (pool string) or NULL. */
const char *api_header(h2o_req_t *req, const h2o_token_t *token);
/* A header h2o has no token for, by its lower-case name ("origin"). */
const char *api_header_named(h2o_req_t *req, const char *name);
bool api_method_is(h2o_req_t *req, const char *method);
/* Copies a string into the request pool. */
char *api_pool_strdup(h2o_req_t *req, const char *s, size_t len);
/* Body as parsed JSON, or an answer of 400/413 and NULL. */
json_t *api_body_json(ApiCall *c);

void api_count(ApiServer *a, const char *route, int code);
void api_counters_free(ApiServer *a);

/* ---- api-routes.c --------------------------------------------------------- */

int api_on_req(h2o_handler_t *self, h2o_req_t *req);
/* Answers 400 to a request api_on_req() would refuse before routing (its
 * path, method or a header value); passes the rest on (-1). Runs before
 * the dashboard's files are looked up. */
int api_on_req_target(h2o_handler_t *self, h2o_req_t *req);

/* ---- api-auth.c ----------------------------------------------------------- */

/* Identifies the caller: the bearer token, or the dashboard's cookie (a
 * write with it must come from rprd's own origin: 403 if not), or an
 * anonymous reader when allowed. Returns 0 and fills c->caller, or
 * answers 401/403 and returns -EACCES. */
int api_authenticate(ApiCall *c);
/* The secret presented: the bearer token, else the dashboard's cookie
 * (*ret_via_cookie). Pool string or NULL. */
const char *api_secret_of(h2o_req_t *req, bool *ret_via_cookie);
/* Whether the request's Origin is rprd's own (scheme and Host). */
bool api_same_origin(ApiCall *c);
/* Fills c->caller from an api token's secret. answer: reply 401/500 when
 * it is not one. -EACCES unknown or expired (counted against the source);
 * -EAGAIN when the source is backed off, answered 429 whatever answer. */
int api_token_identify(ApiCall *c, const char *secret, bool answer);
/* The Token a secret belongs to, if it is one for use (AUTH_USE_API,
 * AUTH_USE_AGENT_JOIN or AUTH_USE_AGENT; any other is as unknown):
 * *ret (free with auth_identity_free). Throttled and answered as
 * api_token_identify. */
int api_identify_as(ApiCall *c, const char *secret, AuthUse use, bool answer, AuthIdentity **ret);
const char *api_role_name(ApiRole r);
/* For a poll stream, at each frame: NULL while secret is still the
 * credential of the agent of ns/server (its use noted when note_use),
 * else why not (static text). */
const char *api_agent_credential_problem(ApiServer *a, const char *secret, const char *ns, const char *server,
                                         bool note_use);
/* Makes sure Token default/admin and $STATE/admin.token exist and agree. */
int api_admin_token_ensure(ApiServer *a);
/* The token index and the throttle of failed authentications (a 429 with
 * Retry-After while a source is backed off). */
int api_auth_init(ApiServer *a);
void api_auth_done(ApiServer *a);

/* What the caller may do; every rule is pkg/auth's. Each answers 403 and
 * returns false when the caller may not. */
AuthCaller api_auth_caller(const ApiCall *c);
bool api_may_role(ApiCall *c, ApiRole needed);
bool api_check_namespace(ApiCall *c, const char *ns);
/* Checks a write of obj by the caller: its secrets, resource_prepare()
 * (problems into invalid), then what the caller may put there (into
 * forbidden): nothing reaching rprd's host unless unrestricted, a Token
 * granting no more than the caller holds, no replacing such a Token.
 * Answers nothing; true when both stayed empty. */
bool api_prepare_write(ApiCall *c, json_t *obj, int index, Diags *invalid, Diags *forbidden);
/* DELETE of the route's object: a Token granting more than the caller. */
bool api_may_remove(ApiCall *c);
/* 403 naming the first problem, every one in details. */
void api_reply_forbidden(ApiCall *c, const Diags *d);

/* ---- api-jobs.c: blocking work off the loop -------------------------------- */

typedef struct ApiJob ApiJob;
/* work runs on a worker thread; done on the loop, with c NULL when the
 * client has gone. done must free what it owns in job->data. */
typedef void (*ApiJobWork)(ApiJob *job);
typedef void (*ApiJobDone)(ApiJob *job, ApiCall *c);

struct ApiJob {
        h2o_multithread_message_t msg; /* first: the loop receives this */
        ApiServer *api;
        struct ApiJobRef *ref;
        ApiCall *call; /* NULL once the request is gone */
        ApiJobWork work;
        ApiJobDone done;
        WorkQueue *queue; /* NULL: the API's work queue */

        StoreOp *ops;
        size_t n_ops;
        bool dry_run;
        bool with_objects; /* apply: the objects as stored in the answer (?objects=1) */
        int r;
        size_t failed;
        /* Owned by the job, freed with it: what ops point into. */
        json_t *input;
        char *kind, *ns, *name;
        void *data;
        void (*data_free)(void *data);
};

/* New job for call (ops zeroed, n of them); submit with api_job_submit. */
ApiJob *api_job_new(ApiCall *c, size_t n_ops, ApiJobWork work, ApiJobDone done);
/* The default work: store_commit of the ops. */
void api_job_commit(ApiJob *job);
void api_job_submit(ApiJob *job);
void api_jobs_init(ApiServer *a);
void api_jobs_done(ApiServer *a);

/* ---- api-objects.c ------------------------------------------------------- */

void api_handle_list(ApiCall *c);
void api_handle_get(ApiCall *c);
void api_handle_put(ApiCall *c);
void api_handle_delete(ApiCall *c);
void api_handle_status(ApiCall *c);
void api_handle_action(ApiCall *c);
/* The text of the object the route names (caller frees); when there is
 * none, answers 404 (or 500) itself and returns a negative errno. */
int route_object_text(ApiCall *c, char **ret);
/* Answers 409/404/500 for a failed store_commit. */
void api_reply_store_error(ApiCall *c, int r, const StoreOp *op);
/* What api_reply_store_error and /healthz say of the store's faults. */
#define API_STORE_GONE                                                                                  \
        "the state database was deleted or replaced while rprd was running: writes are refused so that " \
        "none is acknowledged and then lost; restore state.db from a backup and restart rprd"
#define API_STORE_FULL "no space left on the state volume: nothing was written; free some space and write again"
#define API_STORE_CORRUPT "the state database is corrupt: stop rprd and restore state.db from a backup"

/* metadata.resourceVersion as a precondition: 0 if absent; -EINVAL if bad. */
int api_object_revision(const json_t *obj, uint64_t *ret);

/* ---- api-apply.c ---------------------------------------------------------- */

void api_handle_apply(ApiCall *c);
void api_handle_token_create(ApiCall *c);

/* ---- api-stream.c: chunked streaming answers -------------------------------- */

/* An answer sent in pieces as they come (watch, exec). The owner queues
 * bytes and calls api_stream_flush(); h2o takes one write at a time, and
 * when it is done refill() is called to queue and flush more. When the
 * client goes, h2o calls stop and req becomes NULL. */
typedef struct ApiStream ApiStream;
struct ApiStream {
        h2o_generator_t super; /* first: h2o calls back with it */
        h2o_req_t *req;        /* NULL once h2o stopped the stream */
        Buf queued;
        Buf sending;  /* handed to h2o, valid until proceed() */
        bool started; /* the first send, even if empty, puts the headers out */
        bool chunked; /* HTTP/1.1: we frame the chunks ourselves */
        bool in_flight, final, ended;
        char chunk_head[24];
        void (*refill)(ApiStream *s);
        /* Set by api_stream_admit(): whom the stream counts against. */
        ApiServer *api;
        char *caller_key;
};

/* Answers 200 with content_type and starts the stream; flushes once. */
void api_stream_start(ApiCall *c, ApiStream *s, const char *content_type);
/* Sends what is queued (and, when s->final, ends the answer), unless a
 * write is still in flight or the stream has ended. */
void api_stream_flush(ApiStream *s);
/* Whether the client of an idle stream has hung up (h2o reads nothing
 * while it answers, so it would only notice at the next write). */
bool api_stream_client_gone(const ApiStream *s);
void api_stream_clear(ApiStream *s); /* frees the buffers; releases the admission */

/* ---- api-limits.c: what a reader may hold ------------------------------------------- */

/* Whether the request's Host is one of rprd's names (or it came over the
 * unix socket); answers 421 and returns false if not. For browser-facing
 * requests only. */
bool api_host_allowed(ApiCall *c);
/* The same check in front of the dashboard's files on pc. */
void api_host_check_register(ApiServer *a, h2o_pathconf_t *pc);
/* Counts a new stream against its caller and the total; answers 429 and
 * returns false past a limit. api_stream_clear() gives it back. */
bool api_stream_admit(ApiCall *c, ApiStream *s);
void api_stream_release(ApiStream *s);
/* Up to want exec threads from the global budget: how many may start. */
unsigned api_exec_threads_take(ApiServer *a, unsigned want);
void api_exec_threads_give(ApiServer *a, unsigned n);
/* Whether another connection may be accepted; else accepting pauses. */
bool api_conn_admit(ApiServer *a);
/* Counts sock until it closes. */
void api_conn_accepted(ApiServer *a, h2o_socket_t *sock);
/* Once a second on the loop: gives free heap back. */
void api_limits_trim(void);
/* Shuts the socket of every connection, idle ones too: h2o then closes
 * each as on the client's EOF. */
void api_conns_shutdown(ApiServer *a);
/* Stops accepting for a while (fds ran out, or the cap is reached). */
void api_accept_pause(ApiServer *a, const char *why);
/* The limits and what is held against them, for /metrics. */
void api_limits_metrics(ApiServer *a, Buf *b);
void api_limits_init(ApiServer *a, const ApiOptions *o);

/* api-tls.c: the SSL context of the TLS listeners, from o->tls_cert and
 * o->tls_key or a self-signed certificate kept in the state dir. */
int api_tls_init(ApiServer *a, const ApiOptions *o, char **ret_error);
void api_tls_done(ApiServer *a);
void api_limits_done(ApiServer *a);

/* ---- api-actions.c: the requests that act on Servers -------------------------- */

/* POST /api/v1/exec: checks the body and the servers, then api_exec_start. */
void api_handle_exec(ApiCall *c);
/* POST .../servers/{name}/check. */
void api_handle_server_check(ApiCall *c);
/* GET /api/v1/logs/{log}. */
void api_handle_logs(ApiCall *c);

/* ---- api-hooks.c: webhooks and repo checks ------------------------------------ */

/* POST /hooks/github. */
void api_handle_hook(ApiCall *c);
/* POST .../repos/{name}/check. */
void api_handle_repo_check(ApiCall *c);

/* ---- api-session.c: the dashboard's login -------------------------------------------- */

void api_handle_login(ApiCall *c);
void api_handle_logout(ApiCall *c);
void api_handle_session(ApiCall *c);

/* ---- api-runs.c: Bindings and Runs ---------------------------------------------- */

/* POST .../bindings/{name}/trigger. */
void api_handle_binding_trigger(ApiCall *c);
/* POST .../pipelines/{name}/runs. */
void api_handle_pipeline_start(ApiCall *c);
/* POST .../runs/{name}/cancel. */
void api_handle_run_cancel(ApiCall *c);
/* GET .../runs/{name}/log[?follow=1]. */
void api_handle_run_log(ApiCall *c);
void api_run_logs_init(ApiServer *a);
/* Ends the streams whose clients have hung up. */
void api_run_logs_reap(ApiServer *a);
/* Ends every stream once what the file has is sent (at shutdown). */
void api_run_logs_end_all(ApiServer *a);
void api_run_logs_done(ApiServer *a);

/* ---- api-exec.c: exec streams ------------------------------------------------ */

#define EXEC_PARALLEL_DEFAULT 32
#define EXEC_PARALLEL_MAX 256

/* Answers c with the stream of cmd run on the servers names[0..n) of ns
 * (inactive[i]: answered as such without running). Takes names and each
 * string in it. */
void api_exec_start(ApiCall *c, const char *ns, const char *command, uint64_t timeout_usec,
                    unsigned parallel, char **names, const bool *inactive, size_t n);
void api_exec_init(ApiServer *a);
/* Cancels the commands of streams whose clients have hung up. */
void api_exec_reap(ApiServer *a);
/* Cancels every command (at shutdown). */
void api_exec_cancel_all(ApiServer *a);
/* At free: cancels every command as if its client had gone and waits,
 * until deadline (monotonic), for their threads to end. Whether they did. */
bool api_exec_wait_all(ApiServer *a, uint64_t deadline);
void api_exec_done(ApiServer *a);

/* ---- api-agents.c: the agents' protocol ----------------------------------------- */

/* ROUTE_AGENT_JOIN and ROUTE_AGENT. */
void api_handle_agent(ApiCall *c);
/* api-agent-input.c: GET jobs/{id}/input, streamed (Range: bytes=N-). */
void api_agent_input(ApiCall *c);
void api_agents_init(ApiServer *a);    /* nothing without a->agents */
void api_agents_end_all(ApiServer *a); /* answers every held poll (at shutdown) */
void api_agents_done(ApiServer *a);
/* What api-agents.c lends the poll stream. The caller's namespace (an
 * agent's credential has one). NULL when the agent of ns/server may still
 * come in, else why not (static text; the agent is forgotten). */
const char *api_agent_caller_ns(const ApiCall *c);
const char *api_agent_refusal(ApiServer *a, const char *ns, const char *server);
/* Checks and records a poll's heartbeat: 0 and *ret_answer to send now,
 * or *ret_answer NULL and *ret_wait_usec to hold the poll; else an HTTP
 * status (400, 426) with its message in msg. */
int api_agent_heartbeat(ApiServer *a, const char *ns, const char *server, const json_t *hb, json_t **ret_answer,
                        uint64_t *ret_wait_usec, char *msg, size_t size);
/* Holds a stream's poll (key, ns, server: the stream's strings, alive
 * while it is held): answered once, through api_agent_stream_answer(),
 * which the wait is gone by; or dropped first by the stream. */
typedef struct AgentWait AgentWait;
typedef struct ApiAgentStream ApiAgentStream;
AgentWait *api_agent_hold_stream(ApiServer *a, ApiAgentStream *s, const char *key, const char *ns,
                                 const char *server, uint64_t wait_usec);
void api_agent_wait_drop(AgentWait *w); /* NULL-safe */

/* ---- api-agent-stream.c: the poll stream ---------------------------------------- */

/* GET /api/v1/agents/stream with Upgrade: rpr-agent-poll/1 (the agent's
 * credential and Server already checked): 101, then frames. */
void api_agent_stream_upgrade(ApiCall *c);
/* A held poll's answer (steals it). */
void api_agent_stream_answer(ApiAgentStream *s, json_t *answer);
void api_agent_streams_init(ApiServer *a);
void api_agent_streams_tick(ApiServer *a);    /* frames too slow, streams idle too long */
void api_agent_streams_end_all(ApiServer *a); /* closes every stream (at shutdown) */
void api_agent_streams_done(ApiServer *a);

/* ---- api-watch.c ---------------------------------------------------------- */

/* Starts a ?watch=1 stream for c's route (every kind for ROUTE_WATCH, in
 * the caller's namespaces); selector_text already checked. */
void api_watch_start(ApiCall *c, const char *selector_text);
/* GET /api/v1/watch. */
void api_handle_watch_all(ApiCall *c);
void api_watch_init(ApiServer *a);
/* Ends the streams whose clients have hung up. */
void api_watch_reap(ApiServer *a);
/* Ends every stream (at shutdown). */
void api_watch_end_all(ApiServer *a);
/* Unhooks every stream left from the store's change feed (at free, for
 * clients that would not go): no wake-up reaches a freed server. */
void api_watch_detach_all(ApiServer *a);
void api_watch_done(ApiServer *a);

/* ---- api-misc.c ----------------------------------------------------------- */

void api_handle_healthz(ApiCall *c);
/* api-admin.c */
void api_handle_backup(ApiCall *c);
void api_handle_version(ApiCall *c);
void api_handle_metrics(ApiCall *c);
/* POST /api/v1/reconcile: the wake-up of rpr-reconcile.timer. */
void api_handle_reconcile(ApiCall *c);
