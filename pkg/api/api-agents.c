/* api-agents: the agents' protocol over HTTPS (see README "Agents"):
 * POST /api/v1/agents/join trades a join token for the agent's own
 * secret; POST /api/v1/agents/poll is the heartbeat and the long poll;
 * POST /api/v1/agents/jobs/{id}/{accept|output|finish} move a job on.
 * pkg/agent holds the state; this file speaks HTTP for it.
 *
 * The one idea: a held poll is a request parked in a table on h2o's loop,
 * not a thread. It is answered when pkg/agent has something for its agent
 * (a wake-up, from any thread, crosses to the loop as a message) or when
 * its wait ends (a one-second tick, which also runs pkg/agent's clock).
 *
 * Who may call: the join needs a join token in its body; everything else
 * an agent's own credential (api-auth.c: an api token opens none of these
 * routes, an agent's credential none other), and its Server must still
 * exist, use transport agent and be active: deleting or deactivating the
 * Server revokes its agent. */
#include <pthread.h>
#include <string.h>

#include "agent/agent.h"
#include "api/api-private.h"
#include "server/server.h"

#define AGENT_SECRET_LEN 32
#define JOIN_BODY_MAX 8192
/* Held polls are answered at their deadline to the tick: a tenth of a
 * second, so that a fleet's poll window ends in small batches (each
 * answer's write holds a 4 KiB buffer of h2o's until the loop turns: a
 * whole second's, 400 answers at 10,000 agents, was 4 MB at once). */
#define TICK_MSEC 100
#define SECOND_TICKS (1000 / TICK_MSEC)
/* A poll is held a whole number of seconds, at most the poll window:
 * one list per length, each in the order of its deadlines, so that a
 * tick looks at the due ones only, never at every agent. */
#define WAIT_LISTS (AGENT_POLL_DEFAULT_SEC + 1)
#define CREDENTIAL_PREFIX "agent-"
#define JOIN_LABEL "rpr.dev/join-token"

typedef struct AgentWait AgentWait;

struct ApiAgents {
        Hashmap *waits; /* "ns/server" -> AgentWait, one held poll per agent */
        /* "ns/server" -> the Server's revision (as the pointer) when it last
         * let its agent in: a poll whose Server is unchanged is not parsed. */
        Hashmap *admitted;
        h2o_timeout_t tick;
        h2o_timeout_entry_t tick_entry;
        h2o_multithread_receiver_t wake_receiver;
        pthread_mutex_t join_lock; /* joins check, then write: one at a time */
        Agents *agents;
        ApiServer *api;
        h2o_loop_t *loop;
        unsigned ticks;
        h2o_linklist_t due[WAIT_LISTS]; /* AgentWait.due_link, by how long they are held */
};

/* A held poll: a request's (in its pool) or a poll stream's (malloc'd,
 * freed once answered or dropped). */
struct AgentWait {
        ApiCall *c;             /* NULL once answered or gone */
        ApiAgentStream *stream; /* or the stream that polls */
        ApiServer *api;
        char *key, *ns, *server; /* the request's pool strings, or the stream's */
        uint64_t deadline;       /* monotonic */
        h2o_linklist_t due_link; /* in ApiAgents.due while parked */
};

typedef struct WakeMsg {
        h2o_multithread_message_t super; /* first: the loop receives this */
        char key[];
} WakeMsg;

/* ---- the caller's Server ------------------------------------------------------------ */

const char *api_agent_caller_ns(const ApiCall *c) {
        return c->caller.namespaces && c->caller.namespaces[0] ? c->caller.namespaces[0] : "default";
}

/* Whether the Server's revision is the one that last let its agent in;
 * otherwise forgets that. The map's value is the revision itself: nothing
 * allocated an agent. */
static bool admitted_before(struct ApiAgents *st, const char *key, uint64_t revision) {
        if ((uintptr_t) hashmap_get(st->admitted, key) == (uintptr_t) revision)
                return true;
        hashmap_remove(st->admitted, key);
        return false;
}

const char *api_agent_refusal(ApiServer *a, const char *ns, const char *server) {
        _cleanup_json_ json_t *obj = NULL;
        _cleanup_free_ char *key = xasprintf("%s/%s", ns, server);
        uint64_t revision = 0;

        int r = store_get_revision(a->store, "Server", ns, server, &revision);
        if (r >= 0 && admitted_before(a->agent_state, key, revision))
                return NULL;
        if (r >= 0)
                r = store_get_json(a->store, "Server", ns, server, &obj);
        const json_t *spec = json_object_get(obj, "spec");
        const char *why =
                r == -ENOENT                                                             ? "no longer exists"
                : r < 0                                                                  ? "cannot be read"
                : json_object_get(json_object_get(obj, "metadata"), "deletionTimestamp") ? "is being deleted"
                : !STREQ(json_str_at(spec, "transport") ?: "ssh", "agent") ? "no longer uses transport agent"
                : json_is_false(json_object_get(spec, "active")) ? "is inactive (spec.active is false)"
                                                                 : NULL;
        if (!why) {
                uint64_t seen = store_object_revision(obj); /* >= 1 for a stored object */
                if (seen)
                        hashmap_put(a->agent_state->admitted, key, (void *) (uintptr_t) seen);
                return NULL;
        }
        if (a->agents)
                agent_forget(a->agents, ns, server);
        return why;
}

/* Whether the agent's Server still lets it in; answers 403 if not. Every
 * request reads the Server (deleting or deactivating it revokes the agent
 * at once); only a changed one is parsed. */
static bool agent_server_ok(ApiCall *c) {
        AuthCaller who = api_auth_caller(c);
        const char *ns = api_agent_caller_ns(c), *server = c->caller.agent, *why;

        if (!server || !auth_may_agent(&who, ns, server)) {
                api_reply_status(c, 403, "only an agent's own credential may call this");
                return false;
        }
        why = api_agent_refusal(c->api, ns, server);
        if (!why)
                return true;
        api_reply_status(c, 403, "server %s/%s %s: its agent is refused", ns, server, why);
        return false;
}

static bool agents_ready(ApiCall *c) {
        if (c->api->agents && c->api->agent_state)
                return true;
        api_reply_status(c, 503, "this rprd serves no agents");
        return false;
}

/* ---- join ------------------------------------------------------------------------------ */

typedef struct Join {
        char *ns, *name, *token_name;
        bool single_use;
        json_t *server, *credential;
        char secret[AGENT_SECRET_LEN + 1];
        int code; /* an answer decided on the worker; 0: the commit's */
        char message[256];
} Join;

static void join_free(void *p) {
        Join *j = p;

        free(j->ns);
        free(j->name);
        free(j->token_name);
        json_decref(j->server);
        json_decref(j->credential);
        explicit_bzero(j->secret, sizeof j->secret);
        free(j);
}

static void count_one(const char *text, size_t len, void *userdata) {
        (void) text;
        (void) len;
        (*(size_t *) userdata)++;
}

/* Whether a single-use join token has been used: an agent credential
 * carries the name of the token it was joined with. */
static bool join_token_used(Store *store, const char *ns, const char *token) {
        _cleanup_free_ char *text = xasprintf(JOIN_LABEL "=%s", token);
        _cleanup_free_ char *error = NULL;
        Selector *sel = NULL;
        size_t n = 0;

        if (selector_parse(text, &sel, &error) < 0)
                return true;
        (void) store_list_selected(store, "Token", ns, sel, count_one, &n, NULL);
        selector_free(sel);
        return n > 0;
}

/* On a worker: may this agent have the Server, then both writes at once. */
static void join_work(ApiJob *job) {
        Join *j = job->data;
        ApiServer *a = job->api;
        _cleanup_json_ json_t *server = NULL, *cred = NULL;
        _cleanup_free_ char *cred_name = xasprintf(CREDENTIAL_PREFIX "%s", j->name);

        pthread_mutex_lock(&a->agent_state->join_lock);
        bool exists = store_get_json(a->store, "Server", j->ns, j->name, &server) >= 0;
        const char *transport = json_str_at(json_object_get(server, "spec"), "transport") ?: "ssh";
        if (j->single_use && join_token_used(a->store, j->ns, j->token_name)) {
                j->code = 403;
                snprintf(j->message, sizeof j->message,
                         "join token %s is single-use and has been used; make a new one", j->token_name);
        } else if (exists && !STREQ(transport, "agent")) {
                j->code = 409;
                snprintf(j->message, sizeof j->message,
                         "server %s/%s exists with transport %s; an agent may only claim a Server of "
                         "transport agent",
                         j->ns, j->name, transport);
        } else if (store_get_json(a->store, "Token", j->ns, cred_name, &cred) >= 0) {
                j->code = 409;
                snprintf(j->message, sizeof j->message,
                         "server %s/%s already has an agent; delete Token %s to let another one join", j->ns,
                         j->name, cred_name);
        } else {
                size_t n = 0;
                /* A Server declared beforehand is claimed as it is: its own
                 * labels stay. */
                if (!exists)
                        job->ops[n++] = (StoreOp){.type = STORE_OP_APPLY, .object = j->server};
                job->ops[n++] = (StoreOp){.type = STORE_OP_APPLY, .object = j->credential};
                job->n_ops = n;
                api_job_commit(job);
        }
        pthread_mutex_unlock(&a->agent_state->join_lock);
}

static void join_done(ApiJob *job, ApiCall *c) {
        Join *j = job->data;

        if (!c)
                return;
        if (j->code) {
                api_reply_status(c, j->code, "%s", j->message);
                return;
        }
        if (job->r < 0) {
                api_reply_store_error(c, job->r, &job->ops[job->failed < job->n_ops ? job->failed : 0]);
                return;
        }
        log_info("agent joined as server %s/%s with join token %s", j->ns, j->name, j->token_name);
        /* The one time the agent's secret is seen. */
        api_reply_json(c, 201,
                       json_pack("{s:s, s:s, s:s, s:s, s:i}", "kind", "AgentCredential", "server", j->name,
                                 "namespace", j->ns, "credential", j->secret, "pollSeconds",
                                 AGENT_POLL_DEFAULT_SEC));
}

/* The Server and the credential Token a join writes; problems into d. */
static void join_objects(Join *j, const json_t *labels, Diags *d) {
        char hex[65];

        j->server = json_pack("{s:s, s:s, s:{s:s, s:s}, s:{s:s}}", "apiVersion", RPR_API_VERSION, "kind",
                              "Server", "metadata", "name", j->name, "namespace", j->ns, "spec", "transport",
                              "agent");
        if (labels)
                json_object_set(json_object_get(j->server, "metadata"), "labels", (json_t *) labels);
        (void) resource_prepare(j->server, 0, d);

        sha256_hex(j->secret, AGENT_SECRET_LEN, hex);
        _cleanup_free_ char *hash = xasprintf("sha256:%s", hex);
        _cleanup_free_ char *cred_name = xasprintf(CREDENTIAL_PREFIX "%s", j->name);
        /* No description: spec.server and the join token's label say it
         * all, and a fleet keeps this text in memory once per agent. */
        j->credential = json_pack("{s:s, s:s, s:{s:s, s:s, s:{s:s}}, s:{s:s, s:s, s:s}}", "apiVersion",
                                  RPR_API_VERSION, "kind", "Token", "metadata", "name", cred_name,
                                  "namespace", j->ns, "labels", JOIN_LABEL, j->token_name, "spec", "type",
                                  "agent", "server", j->name, "valueHash", hash);
        if (d->n == 0)
                (void) resource_prepare(j->credential, 0, d);
}

static bool join_body_ok(ApiCall *c, const json_t *body) {
        static const char *const known[] = {"token", "name", "labels", "version"};
        const char *key;
        json_t *v;

        if (!json_is_object(body) || !json_is_string(json_object_get(body, "token"))) {
                api_reply_status(c, 400, "the body must be {\"token\": JOIN_TOKEN, \"name\": SERVER, ...}");
                return false;
        }
        json_object_foreach((json_t *) body, key, v) {
                bool ok = false;
                for (size_t i = 0; i < ELEMENTSOF(known); i++)
                        ok = ok || STREQ(key, known[i]);
                if (!ok) {
                        api_reply_status(c, 400, "unknown field \"%.64s\" in the join request", key);
                        return false;
                }
        }
        if (!json_is_string(json_object_get(body, "name"))) {
                api_reply_status(c, 422, "name is required: the name of the agent's Server");
                return false;
        }
        return true;
}

static bool version_ok(ApiCall *c, const char *version) {
        if (agent_version_ok(version))
                return true;
        api_reply_status(c, 426, "rpr-agent %.32s is too old: this rprd needs rpr-agent %s or newer",
                         version ? version : "(no version)", AGENT_VERSION_MIN);
        return false;
}

static void handle_join(ApiCall *c) {
        AuthIdentity *id = NULL;
        Diags d = DIAGS_INIT;

        if (c->req->entity.len > JOIN_BODY_MAX) {
                api_reply_status(c, 413, "a join request is at most %d bytes", JOIN_BODY_MAX);
                return;
        }
        _cleanup_json_ json_t *body = api_body_json(c);
        if (!body || !join_body_ok(c, body))
                return;
        if (api_identify_as(c, json_str_at(body, "token"), AUTH_USE_AGENT_JOIN, true, &id) < 0)
                return;
        if (!version_ok(c, json_str_at(body, "version"))) {
                auth_identity_free(id);
                return;
        }

        Join *j = xcalloc(1, sizeof *j);
        j->ns = xstrdup(id->ns);
        j->token_name = xstrdup(id->caller.name);
        j->single_use = id->single_use;
        j->name = xstrdup(json_str_at(body, "name"));
        auth_identity_free(id);
        if (random_token(j->secret, AGENT_SECRET_LEN) < 0) {
                join_free(j);
                api_reply_status(c, 500, "cannot make a random secret");
                return;
        }
        if (strlen(j->name) + strlen(CREDENTIAL_PREFIX) > 63)
                diags_add(&d, 0, NULL, "name", "is at most %zu characters (a DNS label less \"%s\")",
                          63 - strlen(CREDENTIAL_PREFIX), CREDENTIAL_PREFIX);
        else
                join_objects(j, json_object_get(body, "labels"), &d);
        if (d.n > 0) {
                api_reply_diags(c, 422, "invalid join request", &d);
                diags_free(&d);
                join_free(j);
                return;
        }
        ApiJob *job = api_job_new(c, 2, join_work, join_done);
        job->data = j;
        job->data_free = join_free;
        api_job_submit(job);
}

/* ---- the poll ---------------------------------------------------------------------------- */

/* Takes w out of the held polls, if it is there. */
static void wait_unpark(AgentWait *w) {
        if (!w->api->agent_state) /* after api_agents_done: the lists are gone */
                return;
        if (h2o_linklist_is_linked(&w->due_link))
                h2o_linklist_unlink(&w->due_link);
        if (hashmap_get(w->api->agent_state->waits, w->key) == w)
                hashmap_remove(w->api->agent_state->waits, w->key);
}

/* Answers a held poll (once) with what pkg/agent has for it now. */
static void wait_answer(AgentWait *w) {
        ApiCall *c = TAKE_PTR(w->c);
        ApiAgentStream *s = TAKE_PTR(w->stream);
        json_t *answer = NULL;

        wait_unpark(w);
        if (!c && !s)
                return;
        (void) agent_poll_again(w->api->agents, w->ns, w->server, &answer);
        if (c) {
                api_reply_json(c, 200, answer);
                return;
        }
        free(w);
        api_agent_stream_answer(s, answer);
}

static void wait_dispose(void *p) {
        AgentWait *w = p;

        /* The client left (h2): nothing to answer any more. */
        if (w->c)
                wait_unpark(w);
        w->c = NULL;
}

/* Parks w. Its agent holds no other poll: api_agent_heartbeat() answered
 * any held before this one. */
static void wait_park(struct ApiAgents *st, AgentWait *w, uint64_t wait_usec) {
        uint64_t secs = wait_usec / USEC_PER_SEC;

        hashmap_put(st->waits, w->key, w);
        h2o_linklist_insert(&st->due[secs < WAIT_LISTS ? secs : WAIT_LISTS - 1], &w->due_link);
}

static void wait_hold(ApiCall *c, const char *ns, const char *server, uint64_t wait_usec) {
        AgentWait *w = h2o_mem_alloc_shared(&c->req->pool, sizeof *w, wait_dispose);
        size_t n = strlen(ns) + strlen(server) + 2;
        char *key = h2o_mem_alloc_pool(&c->req->pool, n);

        snprintf(key, n, "%s/%s", ns, server);
        *w = (AgentWait){.c = c,
                         .api = c->api,
                         .key = key,
                         .ns = api_pool_strdup(c->req, ns, strlen(ns)),
                         .server = api_pool_strdup(c->req, server, strlen(server)),
                         .deadline = now_mono_usec() + wait_usec};
        wait_park(c->api->agent_state, w, wait_usec);
}

AgentWait *api_agent_hold_stream(ApiServer *a, ApiAgentStream *s, const char *key, const char *ns,
                                 const char *server, uint64_t wait_usec) {
        AgentWait *w = xcalloc(1, sizeof *w);

        *w = (AgentWait){.stream = s,
                         .api = a,
                         .key = (char *) key,
                         .ns = (char *) ns,
                         .server = (char *) server,
                         .deadline = now_mono_usec() + wait_usec};
        wait_park(a->agent_state, w, wait_usec);
        return w;
}

void api_agent_wait_drop(AgentWait *w) {
        if (!w)
                return;
        wait_unpark(w);
        free(w);
}

int api_agent_heartbeat(ApiServer *a, const char *ns, const char *server, const json_t *hb, json_t **ret_answer,
                        uint64_t *ret_wait_usec, char *msg, size_t size) {
        json_t *answer = NULL;
        uint64_t wait_usec;

        if (!json_is_object(hb) || json_array_size(json_object_get(hb, "jobs")) > AGENT_CAPACITY_MAX) {
                snprintf(msg, size, "a poll's body is the heartbeat, a JSON object listing at most %d jobs",
                         AGENT_CAPACITY_MAX);
                return 400;
        }
        const char *version = json_str_at(hb, "version");
        if (!agent_version_ok(version)) {
                agent_note_refused(a->agents, ns, server, version);
                if (a->servers)
                        server_check_soon(a->servers, ns, server);
                snprintf(msg, size, "rpr-agent %.32s is too old: this rprd needs rpr-agent %s or newer",
                         version ? version : "(no version)", AGENT_VERSION_MIN);
                return 426;
        }
        /* A poll ends the agent's poll held before it (answered first, so
         * that answers come in the order of the polls): it has moved on. */
        _cleanup_free_ char *key = xasprintf("%s/%s", ns, server);
        AgentWait *held = hashmap_get(a->agent_state->waits, key);
        if (held)
                wait_answer(held);
        int r = agent_poll(a->agents, ns, server, hb, &answer, &wait_usec);
        if (r > 0 || wait_usec == 0) {
                *ret_answer = answer;
                return 0;
        }
        json_decref(answer);
        *ret_answer = NULL;
        *ret_wait_usec = wait_usec;
        return 0;
}

static void handle_poll(ApiCall *c) {
        const char *ns = api_agent_caller_ns(c), *server = c->caller.agent;
        json_t *answer = NULL;
        uint64_t wait_usec = 0;
        char msg[256];

        if (c->req->entity.len > AGENT_POLL_MAX) {
                api_reply_status(c, 413, "a poll's heartbeat is at most %d bytes", AGENT_POLL_MAX);
                return;
        }
        _cleanup_json_ json_t *hb = api_body_json(c);
        if (!hb)
                return;
        int code = api_agent_heartbeat(c->api, ns, server, hb, &answer, &wait_usec, msg, sizeof msg);
        if (code > 0)
                api_reply_status(c, code, "%s", msg);
        else if (answer)
                api_reply_json(c, 200, answer);
        else
                wait_hold(c, ns, server, wait_usec);
}

/* ---- jobs ----------------------------------------------------------------------------- */

static void handle_accept(ApiCall *c) {
        uint64_t lease;
        int r = agent_job_accept(c->api->agents, api_agent_caller_ns(c), c->caller.agent, c->route.name, &lease);

        if (r == -ENOENT)
                api_reply_status(c, 404, "no job %.64s for this agent", c->route.name);
        else if (r < 0)
                api_reply_status(c, 409,
                                 "job %.64s is no longer offered to this agent (its offer lapsed or it "
                                 "was canceled)",
                                 c->route.name);
        else
                api_reply_json(c, 200,
                               json_pack("{s:s, s:I}", "id", c->route.name, "leaseSeconds",
                                         (json_int_t) (lease / USEC_PER_SEC)));
}

static void handle_output(ApiCall *c) {
        const char *off = api_query(c->req, "offset"), *stream = api_query(c->req, "stream");
        uint64_t offset, have = 0;

        if (!off || parse_uint64(off, &offset) < 0) {
                api_reply_status(c, 400,
                                 "?offset=N (the byte offset of the chunk's first byte) is required");
                return;
        }
        if (stream && !STREQ(stream, "stdout") && !STREQ(stream, "stderr")) {
                api_reply_status(c, 400, "?stream= is stdout or stderr");
                return;
        }
        AgentStream s = stream && STREQ(stream, "stderr") ? AGENT_STDERR : AGENT_STDOUT;
        if (c->req->entity.len > AGENT_OUTPUT_CHUNK_MAX) {
                api_reply_status(c, 413, "an output chunk is at most %u bytes", AGENT_OUTPUT_CHUNK_MAX);
                return;
        }
        int r = agent_job_output(c->api->agents, api_agent_caller_ns(c), c->caller.agent, c->route.name, s, offset,
                                 c->req->entity.base, c->req->entity.len, &have);
        if (r == -ENOENT) {
                api_reply_status(c, 404, "no running job %.64s for this agent", c->route.name);
                return;
        }
        if (r == -EINVAL) {
                api_reply_status(c, 400, "job %.64s was offered with one output stream: no ?stream=stderr",
                                 c->route.name);
                return;
        }
        json_t *answer = json_pack("{s:I}", "offset", (json_int_t) have);
        if (r == -ERANGE)
                json_object_set_new(answer, "message", json_string("a gap: send from offset"));
        if (r == -EAGAIN)
                json_object_set_new(answer, "message", json_string("not taken now: send it again later"));
        api_reply_json(c, r == -ERANGE ? 416 : r == -EAGAIN ? 503 : 200, answer);
}

static void handle_finish(ApiCall *c) {
        _cleanup_json_ json_t *body = api_body_json(c);
        json_int_t bytes, err_bytes;
        uint64_t have[AGENT_STREAMS] = {0};

        if (!body)
                return;
        bytes = json_int_at(body, "bytes", -1);
        err_bytes = json_int_at(body, "errBytes", 0);
        if (!json_is_object(body) || !json_is_integer(json_object_get(body, "exitCode")) || bytes < 0 ||
            err_bytes < 0 || !json_str_at(body, "sha256")) {
                api_reply_status(c, 400,
                                 "the body must be {\"exitCode\": N, \"signal\": \"\", \"bytes\": N, "
                                 "\"sha256\": HEX[, \"errBytes\": N, \"errSha256\": HEX]}");
                return;
        }
        AgentFinish f = {.exit_code = (int) json_int_at(body, "exitCode", -1),
                         .signal = json_str_at(body, "signal"),
                         .bytes = {(uint64_t) bytes, (uint64_t) err_bytes},
                         .sha256 = {json_str_at(body, "sha256"), json_str_at(body, "errSha256")}};
        int r = agent_job_finish(c->api->agents, api_agent_caller_ns(c), c->caller.agent, c->route.name, &f, have);
        if (r == -ENOENT)
                api_reply_status(c, 404, "no running job %.64s for this agent", c->route.name);
        else if (r == -EBUSY)
                api_reply_status(c, 503,
                                 "rprd has just started and does not know job %.64s yet: send it again",
                                 c->route.name);
        else if (r == -EAGAIN)
                api_reply_json(c, 409,
                               json_pack("{s:I, s:I, s:s}", "offset", (json_int_t) have[AGENT_STDOUT],
                                         "errOffset", (json_int_t) have[AGENT_STDERR], "message",
                                         "rprd holds less output: send from offset (and errOffset) first"));
        else if (r == -EBADMSG)
                api_reply_status(c, 422, "the byte count or checksum differs from the output rprd received");
        else
                api_reply_json(c, 200, json_pack("{s:s}", "id", c->route.name));
}

void api_handle_agent(ApiCall *c) {
        if (!agents_ready(c))
                return;
        if (c->route.type == ROUTE_AGENT_JOIN) {
                handle_join(c);
                return;
        }
        if (!agent_server_ok(c))
                return;
        bool get = STREQ(c->route.sub, "input") || STREQ(c->route.sub, "stream");
        if (get != api_method_is(c->req, "GET"))
                api_reply_status(c, 405, "method %.*s is not allowed here", (int) c->req->method.len,
                                 c->req->method.base);
        else if (STREQ(c->route.sub, "input"))
                api_agent_input(c);
        else if (STREQ(c->route.sub, "poll"))
                handle_poll(c);
        else if (STREQ(c->route.sub, "stream"))
                api_agent_stream_upgrade(c);
        else if (STREQ(c->route.sub, "accept"))
                handle_accept(c);
        else if (STREQ(c->route.sub, "output"))
                handle_output(c);
        else if (STREQ(c->route.sub, "finish"))
                handle_finish(c);
        else
                api_reply_status(c, 404, "no agent action %.32s", c->route.sub);
}

/* ---- the loop's side: wake-ups and the tick ------------------------------------------------ */

static void on_wake(void *userdata, const char *ns, const char *server) {
        ApiServer *a = userdata;
        size_t n = strlen(ns) + strlen(server) + 2;
        WakeMsg *m = xcalloc(1, sizeof *m + n);

        snprintf(m->key, n, "%s/%s", ns, server);
        h2o_multithread_send_message(&a->agent_state->wake_receiver, &m->super);
}

static void on_wake_messages(h2o_multithread_receiver_t *receiver, h2o_linklist_t *messages) {
        struct ApiAgents *st = H2O_STRUCT_FROM_MEMBER(struct ApiAgents, wake_receiver, receiver);

        while (!h2o_linklist_is_empty(messages)) {
                WakeMsg *m = H2O_STRUCT_FROM_MEMBER(WakeMsg, super.link, messages->next);
                h2o_linklist_unlink(&m->super.link);
                AgentWait *w = hashmap_get(st->waits, m->key);
                if (w)
                        wait_answer(w);
                free(m);
        }
}

/* Answers every held poll whose deadline is not after until. */
static void answer_due(struct ApiAgents *st, uint64_t until) {
        for (size_t i = 0; i < WAIT_LISTS; i++)
                while (!h2o_linklist_is_empty(&st->due[i])) {
                        AgentWait *w = H2O_STRUCT_FROM_MEMBER(AgentWait, due_link, st->due[i].next);
                        if (w->deadline > until)
                                break;
                        wait_answer(w); /* takes it off the list */
                }
}

static void on_tick(h2o_timeout_entry_t *entry) {
        struct ApiAgents *st = H2O_STRUCT_FROM_MEMBER(struct ApiAgents, tick_entry, entry);

        answer_due(st, now_mono_usec());
        if (++st->ticks % SECOND_TICKS == 0) {
                api_agent_streams_tick(st->api);
                agents_tick(st->agents);
        }
        h2o_timeout_link(st->loop, &st->tick, &st->tick_entry);
}

void api_agents_init(ApiServer *a) {
        struct ApiAgents *st;

        if (!a->agents)
                return;
        st = xcalloc(1, sizeof *st);
        st->waits = hashmap_new();
        for (size_t i = 0; i < WAIT_LISTS; i++)
                h2o_linklist_init_anchor(&st->due[i]);
        st->admitted = hashmap_new();
        st->agents = a->agents;
        st->api = a;
        st->loop = a->ctx.loop;
        pthread_mutex_init(&st->join_lock, NULL);
        h2o_multithread_register_receiver(a->ctx.queue, &st->wake_receiver, on_wake_messages);
        h2o_timeout_init(a->ctx.loop, &st->tick, TICK_MSEC);
        st->tick_entry = (h2o_timeout_entry_t){.cb = on_tick};
        h2o_timeout_link(a->ctx.loop, &st->tick, &st->tick_entry);
        a->agent_state = st;
        agents_set_wake(a->agents, on_wake, a);
        api_agent_streams_init(a);
}

void api_agents_end_all(ApiServer *a) {
        if (!a->agent_state)
                return;
        /* No wake-up from now: the loop turns only a few more times. */
        agents_set_wake(a->agents, NULL, NULL);
        agents_stop(a->agents);
        api_agent_streams_end_all(a);
        answer_due(a->agent_state, UINT64_MAX); /* every held poll is on a list */
}

void api_agents_done(ApiServer *a) {
        struct ApiAgents *st = a->agent_state;

        if (!st)
                return;
        agents_set_wake(a->agents, NULL, NULL);
        api_agent_streams_done(a);
        if (h2o_timeout_is_linked(&st->tick_entry))
                h2o_timeout_unlink(&st->tick_entry);
        h2o_timeout_dispose(a->ctx.loop, &st->tick);
        h2o_multithread_unregister_receiver(a->ctx.queue, &st->wake_receiver);
        hashmap_free(st->waits);
        hashmap_free(st->admitted);
        pthread_mutex_destroy(&st->join_lock);
        free(st);
        a->agent_state = NULL;
}
