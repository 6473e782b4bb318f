/* api-routes: from a request's method and path to the function that
 * answers it, with authentication, the role each route needs and the
 * namespaces a token is limited to checked on the way.
 *
 * URLs name kinds by their plural only ("servers"), as Kubernetes does. */
#include <string.h>

#include "api/api-private.h"

#define MAX_SEGMENTS 8

typedef void (*ApiHandlerFn)(ApiCall *c);

/* One method a route accepts, the role it needs and who answers. */
typedef struct ApiMethod {
        const char *method;
        ApiRole role;
        ApiHandlerFn fn;
} ApiMethod;

/* ---- parsing ------------------------------------------------------------------- */

static size_t split_path(h2o_req_t *req, const char **segs) {
        const char *p = req->path_normalized.base, *end = p + req->path_normalized.len;
        size_t n = 0;

        while (p < end) {
                while (p < end && *p == '/')
                        p++;
                if (p >= end)
                        break;
                const char *s = memchr(p, '/', end - p);
                const char *se = s ? s : end;
                if (n == MAX_SEGMENTS)
                        return MAX_SEGMENTS + 1;
                segs[n++] = api_pool_strdup(req, p, se - p);
                p = se;
        }
        return n;
}

/* The kind whose plural is segment, or NULL. */
static const Kind *plural_kind(const char *plural) {
        const Kind *k = kind_lookup(plural);

        return k && STREQ(kind_plural(k), plural) ? k : NULL;
}

static void route_resource(ApiRoute *r, const char **segs, size_t n) {
        /* segs: api v1 namespaces NS PLURAL [NAME [SUB]] */
        r->ns = segs[3];
        r->plural = segs[4];
        r->kind = plural_kind(r->plural);
        if (!r->kind)
                return;
        if (n == 5) {
                r->type = ROUTE_LIST;
                r->template = "/api/v1/namespaces/{ns}/{plural}";
        } else if (n == 6) {
                r->type = ROUTE_OBJECT;
                r->name = segs[5];
                r->template = "/api/v1/namespaces/{ns}/{plural}/{name}";
        } else if (n == 7) {
                r->name = segs[5];
                r->sub = segs[6];
                r->type = STREQ(r->sub, "status") ? ROUTE_STATUS : ROUTE_ACTION;
                r->template = r->type == ROUTE_STATUS ? "/api/v1/namespaces/{ns}/{plural}/{name}/status"
                                                      : "/api/v1/namespaces/{ns}/{plural}/{name}/{action}";
        }
}

/* segs: api v1 agents (join | poll | stream | jobs ID SUB) */
static void route_agent(ApiRoute *r, const char **segs, size_t n) {
        if (n == 4 && STREQ(segs[3], "join"))
                *r = (ApiRoute){.type = ROUTE_AGENT_JOIN, .template = "/api/v1/agents/join"};
        else if (n == 4 && STREQ(segs[3], "poll"))
                *r = (ApiRoute){.type = ROUTE_AGENT, .template = "/api/v1/agents/poll", .sub = segs[3]};
        else if (n == 4 && STREQ(segs[3], "stream"))
                *r = (ApiRoute){.type = ROUTE_AGENT, .template = "/api/v1/agents/stream", .sub = segs[3]};
        else if (n == 6 && STREQ(segs[3], "jobs"))
                *r = (ApiRoute){.type = ROUTE_AGENT,
                                .template = "/api/v1/agents/jobs/{id}/{action}",
                                .name = segs[4],
                                .sub = segs[5]};
}

static void route_parse(h2o_req_t *req, ApiRoute *r) {
        const char *segs[MAX_SEGMENTS];
        size_t n = split_path(req, segs);

        *r = (ApiRoute){.type = ROUTE_NOT_FOUND, .template = "other"};
        if (n == 1 && STREQ(segs[0], "healthz"))
                *r = (ApiRoute){.type = ROUTE_HEALTHZ, .template = "/healthz"};
        else if (n == 1 && STREQ(segs[0], "metrics"))
                *r = (ApiRoute){.type = ROUTE_METRICS, .template = "/metrics"};
        else if (n == 2 && STREQ(segs[0], "hooks") && STREQ(segs[1], "github"))
                *r = (ApiRoute){.type = ROUTE_HOOK, .template = "/hooks/github"};
        if (n < 3 || n > 7 || !STREQ(segs[0], "api") || !STREQ(segs[1], "v1"))
                return;

        if (n == 3 && STREQ(segs[2], "version"))
                *r = (ApiRoute){.type = ROUTE_VERSION, .template = "/api/v1/version"};
        else if (n == 3 && STREQ(segs[2], "apply"))
                *r = (ApiRoute){.type = ROUTE_APPLY, .template = "/api/v1/apply"};
        else if (n == 3 && STREQ(segs[2], "exec"))
                *r = (ApiRoute){.type = ROUTE_EXEC, .template = "/api/v1/exec"};
        else if (n == 3 && STREQ(segs[2], "reconcile"))
                *r = (ApiRoute){.type = ROUTE_RECONCILE, .template = "/api/v1/reconcile"};
        else if (n == 3 && STREQ(segs[2], "login"))
                *r = (ApiRoute){.type = ROUTE_LOGIN, .template = "/api/v1/login"};
        else if (n == 3 && STREQ(segs[2], "logout"))
                *r = (ApiRoute){.type = ROUTE_LOGOUT, .template = "/api/v1/logout"};
        else if (n == 3 && STREQ(segs[2], "session"))
                *r = (ApiRoute){.type = ROUTE_SESSION, .template = "/api/v1/session"};
        else if (n == 3 && STREQ(segs[2], "watch"))
                *r = (ApiRoute){.type = ROUTE_WATCH, .template = "/api/v1/watch"};
        else if (n == 3 && STREQ(segs[2], "tokens"))
                *r = (ApiRoute){.type = ROUTE_TOKENS,
                                .template = "/api/v1/tokens",
                                .plural = "tokens",
                                .kind = kind_lookup("Token")};
        else if (n == 3 && plural_kind(segs[2]))
                *r = (ApiRoute){.type = ROUTE_LIST,
                                .template = "/api/v1/{plural}",
                                .plural = segs[2],
                                .kind = plural_kind(segs[2])};
        else if (n == 3)
                r->plural = segs[2];
        else if (n == 4 && STREQ(segs[2], "admin") && STREQ(segs[3], "backup"))
                *r = (ApiRoute){.type = ROUTE_ADMIN_BACKUP, .template = "/api/v1/admin/backup"};
        else if (n == 4 && STREQ(segs[2], "logs") &&
                 (STREQ(segs[3], "activity") || STREQ(segs[3], "connectivity")))
                *r = (ApiRoute){.type = ROUTE_LOGS, .template = "/api/v1/logs/{log}", .sub = segs[3]};
        else if (n >= 5 && STREQ(segs[2], "namespaces"))
                route_resource(r, segs, n);
        if (n >= 4 && STREQ(segs[2], "agents"))
                route_agent(r, segs, n);
}

/* ---- methods per route ---------------------------------------------------------- */

static const ApiMethod m_healthz[] = {{"GET", ROLE_ANONYMOUS, api_handle_healthz}, {NULL, 0, NULL}};
static const ApiMethod m_metrics[] = {{"GET", ROLE_ANONYMOUS, api_handle_metrics}, {NULL, 0, NULL}};
static const ApiMethod m_version[] = {{"GET", ROLE_ANONYMOUS, api_handle_version}, {NULL, 0, NULL}};
static const ApiMethod m_hook[] = {{"POST", ROLE_ANONYMOUS, api_handle_hook}, {NULL, 0, NULL}};
static const ApiMethod m_apply[] = {{"POST", ROLE_ADMIN, api_handle_apply}, {NULL, 0, NULL}};
static const ApiMethod m_tokens[] = {{"GET", ROLE_VIEWER, api_handle_list},
                                     {"POST", ROLE_ADMIN, api_handle_token_create},
                                     {NULL, 0, NULL}};
static const ApiMethod m_exec[] = {{"POST", ROLE_ADMIN, api_handle_exec}, {NULL, 0, NULL}};
static const ApiMethod m_reconcile[] = {{"POST", ROLE_OPERATOR, api_handle_reconcile}, {NULL, 0, NULL}};
static const ApiMethod m_login[] = {{"POST", ROLE_ANONYMOUS, api_handle_login}, {NULL, 0, NULL}};
static const ApiMethod m_logout[] = {{"POST", ROLE_ANONYMOUS, api_handle_logout}, {NULL, 0, NULL}};
static const ApiMethod m_session[] = {{"GET", ROLE_ANONYMOUS, api_handle_session}, {NULL, 0, NULL}};
static const ApiMethod m_watch[] = {{"GET", ROLE_VIEWER, api_handle_watch_all}, {NULL, 0, NULL}};
static const ApiMethod m_backup[] = {{"GET", ROLE_ADMIN, api_handle_backup}, {NULL, 0, NULL}};
static const ApiMethod m_logs[] = {{"GET", ROLE_VIEWER, api_handle_logs}, {NULL, 0, NULL}};
static const ApiMethod m_list[] = {{"GET", ROLE_VIEWER, api_handle_list}, {NULL, 0, NULL}};
static const ApiMethod m_object[] = {{"GET", ROLE_VIEWER, api_handle_get},
                                     {"PUT", ROLE_ADMIN, api_handle_put},
                                     {"DELETE", ROLE_ADMIN, api_handle_delete},
                                     {NULL, 0, NULL}};
static const ApiMethod m_status[] = {
        {"GET", ROLE_VIEWER, api_handle_get}, {"PUT", ROLE_ADMIN, api_handle_status}, {NULL, 0, NULL}};
static const ApiMethod m_action[] = {{"POST", ROLE_OPERATOR, api_handle_action}, {NULL, 0, NULL}};
static const ApiMethod m_action_log[] = {{"GET", ROLE_VIEWER, api_handle_action}, {NULL, 0, NULL}};
/* The join's token is in its body; every other agent route takes an
 * agent's credential, which has no role: see api_on_req. */
static const ApiMethod m_agent_join[] = {{"POST", ROLE_ANONYMOUS, api_handle_agent}, {NULL, 0, NULL}};
static const ApiMethod m_agent[] = {
        {"POST", ROLE_VIEWER, api_handle_agent}, {"GET", ROLE_VIEWER, api_handle_agent}, {NULL, 0, NULL}};

/* The actions each kind has: POST .../{plural}/{name}/{action}. */
static const struct {
        const char *plural, *action;
} actions[] = {
        {"servers", "check"},  {"repos", "check"}, {"bindings", "trigger"},
        {"pipelines", "runs"}, {"runs", "cancel"}, {"runs", "log"},
};

static const ApiMethod *route_methods(const ApiRoute *r) {
        switch (r->type) {
        case ROUTE_HEALTHZ:
                return m_healthz;
        case ROUTE_METRICS:
                return m_metrics;
        case ROUTE_VERSION:
                return m_version;
        case ROUTE_HOOK:
                return m_hook;
        case ROUTE_APPLY:
                return m_apply;
        case ROUTE_TOKENS:
                return m_tokens;
        case ROUTE_EXEC:
                return m_exec;
        case ROUTE_RECONCILE:
                return m_reconcile;
        case ROUTE_LOGS:
                return m_logs;
        case ROUTE_ADMIN_BACKUP:
                return m_backup;
        case ROUTE_LOGIN:
                return m_login;
        case ROUTE_LOGOUT:
                return m_logout;
        case ROUTE_SESSION:
                return m_session;
        case ROUTE_WATCH:
                return m_watch;
        case ROUTE_LIST:
                return m_list;
        case ROUTE_OBJECT:
                return m_object;
        case ROUTE_STATUS:
                return m_status;
        case ROUTE_ACTION:
                for (size_t i = 0; i < ELEMENTSOF(actions); i++)
                        if (STREQ(actions[i].plural, r->plural) && STREQ(actions[i].action, r->sub))
                                return STREQ(r->sub, "log") ? m_action_log : m_action;
                return NULL;
        case ROUTE_AGENT_JOIN:
                return m_agent_join;
        case ROUTE_AGENT:
                return m_agent;
        case ROUTE_NOT_FOUND:
                break;
        }
        return NULL;
}

/* ---- checks ------------------------------------------------------------------- */

static const ApiMethod *method_find(const ApiMethod *ms, h2o_req_t *req) {
        for (size_t i = 0; ms[i].method; i++)
                if (api_method_is(req, ms[i].method) ||
                    (STREQ(ms[i].method, "GET") && api_method_is(req, "HEAD")))
                        return &ms[i];
        return NULL;
}

/* How much of a path to quote in a message: at most max bytes, cut
 * between two UTF-8 characters (the path is UTF-8: request_refused()). */
static int quoted_len(h2o_iovec_t path, size_t max) {
        size_t n = path.len;

        if (n > max)
                for (n = max; n > 0 && ((unsigned char) path.base[n] & 0xc0) == 0x80; n--)
                        ;
        return (int) n;
}

static void reply_not_found(ApiCall *c) {
        const ApiRoute *r = &c->route;
        h2o_iovec_t path = c->req->path_normalized;
        int n = quoted_len(path, 256);

        if (r->plural && !r->kind)
                api_reply_status(c, 404,
                                 "unknown resource type \"%.*s\" (URLs use the plural, e.g. \"servers\")",
                                 quoted_len(h2o_iovec_init(r->plural, strlen(r->plural)), 256), r->plural);
        else
                api_reply_status(c, 404, "the server could not find the requested resource %.*s%s", n, path.base,
                                 (size_t) n < path.len ? "..." : "");
}

/* The method is quoted back in a 405: letters only (RFC 9110 allows more,
 * but no method anyone uses has more). */
static bool method_is_word(const h2o_iovec_t *m) {
        for (size_t i = 0; i < m->len; i++)
                if (!((m->base[i] >= 'A' && m->base[i] <= 'Z') || (m->base[i] >= 'a' && m->base[i] <= 'z')))
                        return false;
        return true;
}

/* h2o decodes every %XX into path_normalized, NUL and broken UTF-8
 * included: what a route or a file name must never see is refused here,
 * from the target as it was sent; and what would be quoted back in a
 * message (method, header values: a content type, an event name) must be
 * text that JSON can carry. */
static bool request_refused(ApiCall *c) {
        const char *why = api_target_problem(c->req->path.base, c->req->path.len);

        c->route = (ApiRoute){.type = ROUTE_NOT_FOUND, .template = "other"};
        if (!method_is_word(&c->req->method)) {
                api_reply_status(c, 400, "the request method is not a word of letters");
                return true;
        }
        if (why) {
                api_reply_status(c, 400, "the request path has %s; percent-encode UTF-8 text only", why);
                return true;
        }
        for (size_t i = 0; i < c->req->headers.size; i++) {
                const h2o_header_t *h = &c->req->headers.entries[i];
                why = api_header_problem(h->value.base, h->value.len);
                if (why) {
                        /* h2o takes only token characters in names. */
                        api_reply_status(c, 400, "header %.*s has %s", (int) h->name->len, h->name->base, why);
                        return true;
                }
        }
        return false;
}

int api_on_req_target(h2o_handler_t *self, h2o_req_t *req) {
        ApiCall *c = h2o_mem_alloc_pool(&req->pool, sizeof *c);

        *c = (ApiCall){.api = ((ApiHandler *) self)->api, .req = req};
        return request_refused(c) ? 0 : -1;
}

int api_on_req(h2o_handler_t *self, h2o_req_t *req) {
        ApiServer *a = ((ApiHandler *) self)->api;
        ApiCall *c = h2o_mem_alloc_pool(&req->pool, sizeof *c);

        *c = (ApiCall){.api = a, .req = req};
        atomic_store(&a->quiet_since_usec, 0); /* a request: not quiet */
        if (request_refused(c))
                return 0;
        route_parse(req, &c->route);

        if (a->stopping) {
                api_reply_status(c, 503, "rprd is shutting down");
                return 0;
        }

        const ApiMethod *ms = route_methods(&c->route);
        if (!ms) {
                reply_not_found(c);
                return 0;
        }
        if (ms[0].role != ROLE_ANONYMOUS && api_authenticate(c) < 0)
                return 0;
        /* What a browser can be made to send (DNS rebinding) must name rprd. */
        bool browser = c->caller.via_cookie || c->caller.anonymous || c->route.type == ROUTE_LOGIN ||
                       c->route.type == ROUTE_LOGOUT || c->route.type == ROUTE_SESSION;
        if (browser && !api_host_allowed(c))
                return 0;

        const ApiMethod *m = method_find(ms, req);
        if (!m) {
                api_reply_status(c, 405, "method %.*s is not allowed here", (int) req->method.len,
                                 req->method.base);
                return 0;
        }
        /* An agent's credential was checked for these routes alone, and it
         * has no role: what it may touch is api-agents.c's (auth_may_agent). */
        if (c->route.type == ROUTE_AGENT) {
                m->fn(c);
                return 0;
        }
        if (!api_may_role(c, m->role))
                return 0;
        /* apply and exec check the namespaces named in their bodies. */
        if (m->role != ROLE_ANONYMOUS && c->route.type != ROUTE_APPLY && c->route.type != ROUTE_LOGS &&
            c->route.type != ROUTE_EXEC && c->route.type != ROUTE_RECONCILE && c->route.type != ROUTE_WATCH &&
            !(c->route.type == ROUTE_TOKENS && api_method_is(req, "POST")) &&
            !api_check_namespace(c, c->route.ns))
                return 0;

        m->fn(c);
        return 0;
}
