/* api-auth: the API's side of pkg/auth — who is calling and what it may
 * do, answered for a request. Bearer tokens are Token objects of type api
 * that hold only "sha256:<hex>" of the secret; pkg/auth's index finds the
 * one a presented secret belongs to, and its throttle backs off a source
 * that keeps failing (429). The secret comes in an Authorization header,
 * or from the dashboard's HttpOnly cookie, whose writes must come from the
 * page's own origin (a cross-site form or fetch carries the cookie too).
 * Without either, reads are anonymous when rprd allows it
 * (--anonymous-read). Every write is judged by pkg/auth's rules before it
 * goes to the store. Also the admin token that rprd makes on first start.
 *
 * No secret and no hash ever goes into a message or a log line. */
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "api/api-private.h"
#include "auth/auth.h"
#include "token/token.h"

#define ADMIN_TOKEN_LEN 32
#define HASH_TEXT_LEN (7 + 64) /* "sha256:" + hex */

_Static_assert((int) ROLE_VIEWER == (int) AUTH_ROLE_VIEWER &&
                       (int) ROLE_OPERATOR == (int) AUTH_ROLE_OPERATOR &&
                       (int) ROLE_ADMIN == (int) AUTH_ROLE_ADMIN,
               "ApiRole and AuthRole order the roles alike");

const char *api_role_name(ApiRole r) {
        return auth_role_to_string((AuthRole) r);
}

static void token_hash(const char *secret, size_t len, char out[static HASH_TEXT_LEN + 1]) {
        char hex[65];

        sha256_hex(secret, len, hex);
        memcpy(out, "sha256:", 7);
        memcpy(out + 7, hex, 65);
}

/* ---- who is calling ------------------------------------------------------------- */

struct ApiAuth {
        AuthTokens *tokens;
        AuthThrottle *throttle;
};

int api_auth_init(ApiServer *a) {
        a->auth = xcalloc(1, sizeof *a->auth);
        a->auth->throttle = auth_throttle_new();
        return auth_tokens_new(a->store, &a->auth->tokens);
}

void api_auth_done(ApiServer *a) {
        if (!a->auth)
                return;
        auth_tokens_free(a->auth->tokens);
        auth_throttle_free(a->auth->throttle);
        free(TAKE_PTR(a->auth));
}

AuthCaller api_auth_caller(const ApiCall *c) {
        return (AuthCaller){.role = (AuthRole) c->caller.role,
                            .name = c->caller.name,
                            .namespaces = c->caller.namespaces,
                            .agent = c->caller.agent};
}

static const char *bearer_of(const char *auth) {
        if (!auth || strncasecmp(auth, "Bearer ", 7) != 0)
                return NULL;
        auth += 7;
        while (*auth == ' ')
                auth++;
        return *auth ? auth : NULL;
}

static void caller_fill(ApiCall *c, const AuthIdentity *id) {
        h2o_req_t *req = c->req;
        const char *const *nss = id->caller.namespaces;

        c->caller.role = (ApiRole) id->caller.role;
        c->caller.name = api_pool_strdup(req, id->caller.name, strlen(id->caller.name));
        c->caller.agent = id->server ? api_pool_strdup(req, id->server, strlen(id->server)) : NULL;
        c->caller.namespaces = NULL;
        if (nss) {
                size_t n = 0;
                while (nss[n])
                        n++;
                const char **list = h2o_mem_alloc_pool(&req->pool, (n + 1) * sizeof *list);
                for (size_t i = 0; i < n; i++)
                        list[i] = api_pool_strdup(req, nss[i], strlen(nss[i]));
                list[n] = NULL;
                c->caller.namespaces = list;
        }
}

/* Who is at the other end, for the throttle and the log: the address (an
 * IPv6 address by its /64, which one holder has whole), or a unix peer's
 * uid. */
static void source_of(h2o_req_t *req, char *buf, size_t size) {
        struct sockaddr_storage ss = {0};
        socklen_t len = req->conn->callbacks->get_peername(req->conn, (struct sockaddr *) &ss);
        char addr[INET6_ADDRSTRLEN] = "?";

        if (len > 0 && ss.ss_family == AF_INET) {
                inet_ntop(AF_INET, &((struct sockaddr_in *) &ss)->sin_addr, addr, sizeof addr);
                snprintf(buf, size, "%s", addr);
                return;
        }
        if (len > 0 && ss.ss_family == AF_INET6) {
                struct in6_addr a6 = ((struct sockaddr_in6 *) &ss)->sin6_addr;
                memset(a6.s6_addr + 8, 0, 8);
                inet_ntop(AF_INET6, &a6, addr, sizeof addr);
                snprintf(buf, size, "%s/64", addr);
                return;
        }
        h2o_socket_t *sock =
                req->conn->callbacks->get_socket ? req->conn->callbacks->get_socket(req->conn) : NULL;
        struct ucred cred = {0};
        socklen_t n = sizeof cred;
        if (sock && getsockopt(h2o_socket_get_fd(sock), SOL_SOCKET, SO_PEERCRED, &cred, &n) == 0)
                snprintf(buf, size, "unix peer uid %u", (unsigned) cred.uid);
        else
                snprintf(buf, size, "unknown peer");
}

static void reply_throttled(ApiCall *c, unsigned wait) {
        char v[16];
        int n = snprintf(v, sizeof v, "%u", wait);

        h2o_add_header(&c->req->pool, &c->req->res.headers, H2O_TOKEN_RETRY_AFTER, NULL,
                       h2o_strdup(&c->req->pool, v, (size_t) n).base, (size_t) n);
        api_reply_status(c, 429, "too many failed authentications from here; try again in %u s", wait);
}

/* Counts a failure against source and says so in the log, never with
 * the secret. */
static void note_failure(ApiCall *c, const char *source, const char *why) {
        unsigned wait = auth_throttle_failed(c->api->auth->throttle, source, now_mono_usec());

        if (wait)
                log_warning("authentication failed from %s: %s; its credentials are refused for %u s",
                            source, why, wait);
        else
                log_info("authentication failed from %s: %s", source, why);
}

static const char *use_name(AuthUse use) {
        return use == AUTH_USE_AGENT        ? "agent credential"
               : use == AUTH_USE_AGENT_JOIN ? "agent join token"
                                            : "token";
}

int api_identify_as(ApiCall *c, const char *secret, AuthUse use, bool answer, AuthIdentity **ret) {
        AuthIdentity *id = NULL;
        char source[64];
        unsigned wait;
        int r;

        source_of(c->req, source, sizeof source);
        /* While backed off, no secret is even looked at: a right guess
         * must not answer differently from a wrong one. */
        wait = auth_throttle_wait(c->api->auth->throttle, source, now_mono_usec());
        if (wait > 0) {
                reply_throttled(c, wait);
                return -EAGAIN;
        }
        r = auth_tokens_identify(c->api->auth->tokens, secret, strlen(secret), &id);
        /* A secret made for another use is as unknown here as a wrong one:
         * an agent's credential opens no API route, an api token no agent's. */
        if (r >= 0 && id->use != use) {
                auth_identity_free(TAKE_PTR(id));
                r = -EACCES;
        }
        if (r == -EACCES) {
                _cleanup_free_ char *why = xasprintf("unknown %s", use_name(use));
                note_failure(c, source, why);
                if (answer)
                        api_reply_status(c, 401, "invalid %s", use_name(use));
                return -EACCES;
        }
        if (r == -EKEYEXPIRED) {
                _cleanup_free_ char *why = xasprintf("%s %s expired", use_name(use), id->caller.name);
                note_failure(c, source, why);
                if (answer)
                        api_reply_status(c, 401, "%s %s expired on %s", use_name(use), id->caller.name,
                                         id->expires);
                auth_identity_free(id);
                return -EACCES;
        }
        if (r < 0) {
                if (answer)
                        api_reply_status(c, 500, "cannot read tokens: %s", strerror(-r));
                return r;
        }
        token_note_used(c->api->tokens, id->ns, id->caller.name);
        *ret = id;
        return 0;
}

const char *api_agent_credential_problem(ApiServer *a, const char *secret, const char *ns, const char *server,
                                         bool note_use) {
        AuthIdentity *id = NULL;
        int r = auth_tokens_identify(a->auth->tokens, secret, strlen(secret), &id);
        const char *why = r == -EKEYEXPIRED                                       ? "has expired"
                          : r < 0                                                 ? "is no longer known"
                          : id->use != AUTH_USE_AGENT || !STREQ(id->ns, ns) ||
                                          !STREQ(id->server ?: "", server) ? "no longer belongs to this Server"
                                                                           : NULL;

        if (!why && note_use)
                token_note_used(a->tokens, id->ns, id->caller.name);
        auth_identity_free(id);
        return why;
}

/* The caller from a secret for use: an api token, or an agent's own
 * credential (its Server, with no role). */
static int caller_identify(ApiCall *c, const char *secret, AuthUse use, bool answer) {
        AuthIdentity *id = NULL;
        int r = api_identify_as(c, secret, use, answer, &id);

        if (r < 0)
                return r;
        caller_fill(c, id);
        auth_identity_free(id);
        return 0;
}

int api_token_identify(ApiCall *c, const char *secret, bool answer) {
        return caller_identify(c, secret, AUTH_USE_API, answer);
}

/* The value of the dashboard's cookie (pool string), or NULL. */
static const char *cookie_of(h2o_req_t *req) {
        const char *cookies = api_header(req, H2O_TOKEN_COOKIE);
        const size_t n = strlen(API_COOKIE "=");

        for (const char *p = cookies; p && *p; p += strcspn(p, ";"), p += *p == ';') {
                p += strspn(p, " ");
                if (strncmp(p, API_COOKIE "=", n) == 0) {
                        size_t len = strcspn(p + n, ";");
                        return len > 0 ? api_pool_strdup(req, p + n, len) : NULL;
                }
        }
        return NULL;
}

const char *api_secret_of(h2o_req_t *req, bool *ret_via_cookie) {
        const char *secret = bearer_of(api_header(req, H2O_TOKEN_AUTHORIZATION));

        *ret_via_cookie = false;
        if (!secret && (secret = cookie_of(req)))
                *ret_via_cookie = true;
        return secret;
}

/* A write carrying the cookie must come from a page of rprd's own origin. */
bool api_same_origin(ApiCall *c) {
        h2o_req_t *req = c->req;
        const char *origin = api_header_named(req, "origin");
        const char *scheme = req->scheme == &H2O_URL_SCHEME_HTTPS ? "https://" : "http://";
        size_t n = strlen(scheme);

        return origin && strncmp(origin, scheme, n) == 0 && strlen(origin + n) == req->authority.len &&
               memcmp(origin + n, req->authority.base, req->authority.len) == 0;
}

static bool is_read(h2o_req_t *req) {
        return api_method_is(req, "GET") || api_method_is(req, "HEAD");
}

int api_authenticate(ApiCall *c) {
        const char *secret = api_secret_of(c->req, &c->caller.via_cookie);

        if (c->caller.via_cookie) {
                if (!is_read(c->req) && !api_same_origin(c)) {
                        const char *origin = api_header_named(c->req, "origin");
                        api_reply_status(c, 403, "cross-site request refused: Origin %s is not this dashboard's",
                                         origin ?: "(none)");
                        return -EACCES;
                }
        }
        if (!secret && c->api->anonymous_read && is_read(c->req)) {
                c->caller = (ApiCaller){.role = ROLE_VIEWER, .name = "anonymous", .anonymous = true};
                return 0;
        }
        if (!secret) {
                api_reply_status(c, 401, "missing bearer token");
                return -EACCES;
        }
        if (c->route.type == ROUTE_AGENT && c->caller.via_cookie) {
                api_reply_status(c, 401, "an agent sends its credential as a bearer token");
                return -EACCES;
        }
        if (c->route.type == ROUTE_AGENT)
                return caller_identify(c, secret, AUTH_USE_AGENT, true);
        return api_token_identify(c, secret, true);
}

/* ---- the admin token -------------------------------------------------------------- */

static bool admin_token_valid(ApiServer *a, const char *path) {
        _cleanup_free_ char *secret = NULL;
        _cleanup_json_ json_t *obj = NULL;
        char want[HASH_TEXT_LEN + 1];
        size_t len;

        if (read_file(path, 4096, &secret, &len) < 0)
                return false;
        while (len > 0 && (secret[len - 1] == '\n' || secret[len - 1] == '\r' || secret[len - 1] == ' '))
                secret[--len] = '\0';
        if (len == 0 || store_get_json(a->store, "Token", "default", "admin", &obj) < 0)
                return false;

        json_t *spec = json_object_get(obj, "spec");
        const char *hash = json_string_value(json_object_get(spec, "valueHash"));
        const char *role = json_string_value(json_object_get(spec, "role"));
        token_hash(secret, len, want);
        return hash && role && STREQ(role, "admin") && strlen(hash) == HASH_TEXT_LEN &&
               memeq_consttime(hash, want, HASH_TEXT_LEN) &&
               !json_object_get(json_object_get(obj, "metadata"), "deletionTimestamp");
}

int api_admin_token_ensure(ApiServer *a) {
        _cleanup_free_ char *path = xasprintf("%s/admin.token", a->state_dir);
        char secret[ADMIN_TOKEN_LEN + 1], hash[HASH_TEXT_LEN + 1];
        Diags d = DIAGS_INIT;
        int r;

        if (admin_token_valid(a, path))
                return 0;

        r = random_token(secret, ADMIN_TOKEN_LEN);
        if (r < 0)
                return r;
        token_hash(secret, ADMIN_TOKEN_LEN, hash);

        _cleanup_json_ json_t *obj =
                json_pack("{s:s, s:s, s:{s:s, s:s}, s:{s:s, s:s, s:s, s:s}}", "apiVersion", RPR_API_VERSION,
                          "kind", "Token", "metadata", "name", "admin", "namespace", "default", "spec",
                          "type", "api", "role", "admin", "valueHash", hash, "description",
                          "The admin token rprd made; its secret is in the state dir's admin.token.");
        r = resource_prepare(obj, 0, &d);
        diags_free(&d);
        if (r < 0)
                return -EINVAL;

        StoreOp op = {.type = STORE_OP_APPLY, .object = obj};
        r = store_commit(a->store, &op, 1, false, NULL);
        store_ops_clear(&op, 1);
        if (r < 0)
                return r;

        r = write_file_atomic(path, secret, ADMIN_TOKEN_LEN, 0600);
        explicit_bzero(secret, sizeof secret);
        return r;
}

/* ---- what it may do ------------------------------------------------------------------ */

static AuthVerb verb_of(ApiRole needed) {
        return needed >= ROLE_ADMIN      ? AUTH_VERB_WRITE
               : needed == ROLE_OPERATOR ? AUTH_VERB_OPERATE
                                         : AUTH_VERB_READ;
}

bool api_may_role(ApiCall *c, ApiRole needed) {
        AuthCaller who = api_auth_caller(c);

        if (needed == ROLE_ANONYMOUS ||
            auth_may_verb(&who, verb_of(needed), c->route.kind ? kind_name(c->route.kind) : NULL))
                return true;
        api_reply_status(c, 403, "token %s has role %s; this needs %s", c->caller.name,
                         api_role_name(c->caller.role), api_role_name(needed));
        return false;
}

bool api_check_namespace(ApiCall *c, const char *ns) {
        AuthCaller who = api_auth_caller(c);

        if (auth_may_namespace(&who, ns))
                return true;
        _cleanup_free_ char *allowed = auth_scope_text(&who);
        if (ns)
                api_reply_status(c, 403, "token %s may not access namespace %s (allowed: %s)",
                                 c->caller.name, ns, allowed);
        else
                api_reply_status(c, 403, "token %s is limited to namespaces %s; ask for one of them",
                                 c->caller.name, allowed);
        return false;
}

void api_reply_forbidden(ApiCall *c, const Diags *d) {
        _cleanup_free_ char *first = d->n > 0 ? diag_format(&d->items[0]) : xstrdup("forbidden");
        _cleanup_free_ char *msg =
                d->n > 1 ? xasprintf("%s (and %zu more problems)", first, d->n - 1) : NULL;

        api_reply_diags(c, 403, msg ? msg : first, d);
}

/* A stored api Token may only be replaced or deleted by a caller who could
 * have granted it. */
static size_t may_replace(ApiCall *c, const char *kind, const char *ns, const char *name, int index,
                          Diags *d) {
        AuthCaller who = api_auth_caller(c);
        _cleanup_json_ json_t *old = NULL;
        Diags grant = DIAGS_INIT;

        if (!kind || !STREQ(kind, "Token") || auth_unrestricted(&who) ||
            store_get_json(c->api->store, "Token", ns, name, &old) < 0)
                return 0;
        const json_t *spec = json_object_get(old, "spec");
        const char *type = json_str_at(spec, "type");
        if (!type || !STREQ(type, "api") || auth_may_grant(&who, ns, spec, index, &grant) == 0)
                return 0;
        diags_free(&grant);
        _cleanup_free_ char *what = xasprintf("Token/%s", name);
        return diags_add(d, index, what, NULL,
                         "token %s may not replace or delete a Token that grants more than it holds",
                         c->caller.name) != 0;
}

bool api_prepare_write(ApiCall *c, json_t *obj, int index, Diags *invalid, Diags *forbidden) {
        AuthCaller who = api_auth_caller(c);
        size_t before = invalid->n, before_forbidden = forbidden->n;

        /* Before prepare: it replaces an api Token's value by its hash. */
        auth_check_secrets(obj, index, invalid);
        if (resource_prepare(obj, index, invalid) < 0 || invalid->n > before)
                return false;
        const json_t *meta = json_object_get(obj, "metadata");
        auth_check_write(&who, obj, index, forbidden);
        if (auth_may_namespace(&who, json_str_at(meta, "namespace")))
                may_replace(c, json_str_at(obj, "kind"), json_str_at(meta, "namespace"),
                            json_str_at(meta, "name"), index, forbidden);
        return forbidden->n == before_forbidden;
}

bool api_may_remove(ApiCall *c) {
        Diags d = DIAGS_INIT;

        if (may_replace(c, kind_name(c->route.kind), c->route.ns, c->route.name, 0, &d) == 0)
                return true;
        api_reply_forbidden(c, &d);
        diags_free(&d);
        return false;
}
