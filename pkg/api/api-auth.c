/* api-auth: who is calling. Bearer tokens are Token objects of type api
 * that hold only "sha256:<hex>" of the secret; a presented token is hashed
 * and compared in constant time with every api Token. The secret comes in
 * an Authorization header, or from the dashboard's HttpOnly cookie, whose
 * writes must come from the page's own origin (a cross-site form or fetch
 * carries the cookie too). Without either, reads are anonymous when rprd
 * allows it (--anonymous-read). Also the admin token that rprd makes on
 * first start.
 *
 * No secret and no hash ever goes into a message or a log line. */
#include <string.h>
#include <strings.h>

#include "api/api-private.h"
#include "token/token.h"

#define ADMIN_TOKEN_LEN 32
#define HASH_TEXT_LEN (7 + 64) /* "sha256:" + hex */

const char *api_role_name(ApiRole r) {
        switch (r) {
        case ROLE_VIEWER:
                return "viewer";
        case ROLE_OPERATOR:
                return "operator";
        case ROLE_ADMIN:
                return "admin";
        case ROLE_ANONYMOUS:
                break;
        }
        return "none";
}

static ApiRole role_parse(const char *s) {
        if (s && STREQ(s, "admin"))
                return ROLE_ADMIN;
        if (s && STREQ(s, "operator"))
                return ROLE_OPERATOR;
        return ROLE_VIEWER;
}

static void token_hash(const char *secret, size_t len, char out[static HASH_TEXT_LEN + 1]) {
        char hex[65];

        sha256_hex(secret, len, hex);
        memcpy(out, "sha256:", 7);
        memcpy(out + 7, hex, 65);
}

/* ---- lookup --------------------------------------------------------------------- */

typedef struct TokenScan {
        char want[HASH_TEXT_LEN + 1];
        json_t *found;
} TokenScan;

static void token_scan_one(const char *text, size_t len, void *userdata) {
        TokenScan *s = userdata;
        json_t *obj = json_loadb(text, len, 0, NULL);
        json_t *spec = json_object_get(obj, "spec");
        const char *type = json_string_value(json_object_get(spec, "type"));
        const char *hash = json_string_value(json_object_get(spec, "valueHash"));

        /* Every api token is compared, found or not, so that timing says
         * nothing about which one matched. */
        if (type && STREQ(type, "api") && hash && strlen(hash) == HASH_TEXT_LEN &&
            memeq_consttime(hash, s->want, HASH_TEXT_LEN) && !s->found) {
                s->found = obj;
                return;
        }
        json_decref(obj);
}

static const char *bearer_of(const char *auth) {
        if (!auth || strncasecmp(auth, "Bearer ", 7) != 0)
                return NULL;
        auth += 7;
        while (*auth == ' ')
                auth++;
        return *auth ? auth : NULL;
}

static void caller_fill(ApiCall *c, const json_t *token) {
        h2o_req_t *req = c->req;
        const json_t *spec = json_object_get(token, "spec");
        const json_t *nss = json_object_get(spec, "namespaces");
        const char *name = json_string_value(json_object_get(json_object_get(token, "metadata"), "name"));

        c->caller.role = role_parse(json_string_value(json_object_get(spec, "role")));
        c->caller.name = api_pool_strdup(req, name ? name : "?", strlen(name ? name : "?"));
        if (json_is_array(nss)) {
                size_t n = json_array_size(nss), i;
                const char **list = h2o_mem_alloc_pool(&req->pool, (n + 1) * sizeof *list);
                json_t *v;

                json_array_foreach(nss, i, v) {
                        const char *ns = json_string_value(v) ? json_string_value(v) : "";
                        list[i] = api_pool_strdup(req, ns, strlen(ns));
                }
                list[n] = NULL;
                c->caller.namespaces = list;
        }
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

int api_token_identify(ApiCall *c, const char *secret, bool answer) {
        TokenScan scan = {.found = NULL};
        uint64_t expires;
        int r;

        token_hash(secret, strlen(secret), scan.want);
        r = store_list(c->api->store, "Token", NULL, token_scan_one, &scan, NULL);
        if (r < 0) {
                json_decref(scan.found);
                if (answer)
                        api_reply_status(c, 500, "cannot read tokens: %s", strerror(-r));
                return r;
        }
        _cleanup_json_ json_t *token = scan.found;
        if (!token) {
                if (answer)
                        api_reply_status(c, 401, "invalid token");
                return -EACCES;
        }

        caller_fill(c, token);
        const char *exp = json_string_value(json_object_get(json_object_get(token, "spec"), "expires"));
        if (exp && time_parse_rfc3339(exp, &expires) >= 0 && now_usec() >= expires) {
                if (answer)
                        api_reply_status(c, 401, "token %s expired on %s", c->caller.name, exp);
                c->caller = (ApiCaller){0};
                return -EACCES;
        }
        token_note_used(c->api->tokens, json_str_at(json_object_get(token, "metadata"), "namespace") ?: "default",
                        c->caller.name);
        return 0;
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
