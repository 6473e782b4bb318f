/* api-session: the dashboard's login. POST /api/v1/login takes an API
 * token and sets it as a cookie the page's script cannot read (HttpOnly),
 * that no other site's page sends (SameSite=Strict; writes with it are also
 * checked for rprd's own Origin), and that only goes over TLS when the page
 * came over TLS (Secure). POST /api/v1/logout clears it. GET
 * /api/v1/session says who the caller is, so that the page shows the
 * controls that caller may use. */
#include <string.h>

#include "api/api-private.h"

/* Characters a token may have to travel in a cookie unquoted. */
static bool cookie_safe(const char *s) {
        if (!*s)
                return false;
        for (; *s; s++)
                if (*s <= 0x20 || *s >= 0x7f || strchr("\";,\\", *s))
                        return false;
        return true;
}

static void set_cookie(ApiCall *c, const char *value, bool clear) {
        h2o_req_t *req = c->req;
        char *line = xasprintf("%s=%s; Path=/; HttpOnly; SameSite=Strict%s%s", API_COOKIE, value,
                               req->scheme == &H2O_URL_SCHEME_HTTPS ? "; Secure" : "", clear ? "; Max-Age=0" : "");
        h2o_iovec_t v = h2o_strdup(&req->pool, line, SIZE_MAX);

        free(line);
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_SET_COOKIE, NULL, v.base, v.len);
}

static json_t *session_json(ApiCall *c, bool authenticated) {
        json_t *nss = json_null();

        if (authenticated && c->caller.namespaces) {
                nss = json_array();
                for (const char *const *ns = c->caller.namespaces; *ns; ns++)
                        json_array_append_new(nss, json_string(*ns));
        }
        return json_pack("{s:s, s:s, s:b, s:s?, s:s, s:o, s:b}", "apiVersion", RPR_API_VERSION, "kind", "Session",
                         "authenticated", authenticated, "name", authenticated ? c->caller.name : NULL, "role",
                         authenticated ? api_role_name(c->caller.role) : "anonymous", "namespaces", nss,
                         "anonymousRead", c->api->anonymous_read);
}

/* A login from another site's page would sign the browser in as someone
 * else: the Origin, when sent, must be ours. */
static bool origin_acceptable(ApiCall *c) {
        if (!api_header_named(c->req, "origin") || api_same_origin(c))
                return true;
        api_reply_status(c, 403, "cross-site request refused: Origin %s is not this dashboard's",
                         api_header_named(c->req, "origin"));
        return false;
}

void api_handle_login(ApiCall *c) {
        if (!origin_acceptable(c))
                return;
        _cleanup_json_ json_t *body = api_body_json(c);
        if (!body)
                return;
        const char *secret = json_str_at(body, "token");
        if (!secret || !cookie_safe(secret)) {
                api_reply_status(c, 400, "the body must be {\"token\": \"<an API token>\"}");
                return;
        }
        int r = api_token_identify(c, secret, false);
        if (r == -EAGAIN) /* throttled: answered 429 */
                return;
        if (r < 0) {
                api_reply_status(c, 401, "invalid or expired token");
                return;
        }
        set_cookie(c, secret, false);
        api_reply_json(c, 200, session_json(c, true));
}

void api_handle_logout(ApiCall *c) {
        if (!origin_acceptable(c))
                return;
        set_cookie(c, "", true);
        c->caller = (ApiCaller){0};
        api_reply_json(c, 200, session_json(c, false));
}

void api_handle_session(ApiCall *c) {
        bool via_cookie;
        const char *secret = api_secret_of(c->req, &via_cookie);
        int r = secret ? api_token_identify(c, secret, false) : -EACCES;

        if (r == -EAGAIN) /* throttled: answered 429 */
                return;
        bool ok = r >= 0;
        api_reply_json(c, 200, session_json(c, ok));
}
