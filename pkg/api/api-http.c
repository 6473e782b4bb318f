/* api-http: the one way this module answers a request (JSON, text, Status
 * errors with details), reads its parts (query, headers, JSON body), and
 * counts what it answered for /metrics. */
#include <stdio.h>
#include <string.h>

#include "api/api-private.h"

static const struct {
        int code;
        const char *reason, *phrase;
} reasons[] = {
        {200, "OK", "OK"},
        {201, "Created", "Created"},
        {400, "BadRequest", "Bad Request"},
        {401, "Unauthorized", "Unauthorized"},
        {403, "Forbidden", "Forbidden"},
        {404, "NotFound", "Not Found"},
        {405, "MethodNotAllowed", "Method Not Allowed"},
        {409, "Conflict", "Conflict"},
        {410, "Gone", "Gone"},
        {413, "RequestEntityTooLarge", "Request Entity Too Large"},
        {415, "UnsupportedMediaType", "Unsupported Media Type"},
        {421, "MisdirectedRequest", "Misdirected Request"},
        {422, "Invalid", "Unprocessable Entity"},
        {429, "TooManyRequests", "Too Many Requests"},
        {500, "InternalError", "Internal Server Error"},
        {501, "NotImplemented", "Not Implemented"},
        {503, "ServiceUnavailable", "Service Unavailable"},
        {507, "InsufficientStorage", "Insufficient Storage"},
};

const char *api_reason(int code) {
        for (size_t i = 0; i < ELEMENTSOF(reasons); i++)
                if (reasons[i].code == code)
                        return reasons[i].reason;
        return "InternalError";
}

static const char *http_phrase(int code) {
        for (size_t i = 0; i < ELEMENTSOF(reasons); i++)
                if (reasons[i].code == code)
                        return reasons[i].phrase;
        return "Status";
}

/* ---- metrics counters ------------------------------------------------------ */

void api_count(ApiServer *a, const char *route, int code) {
        for (size_t i = 0; i < a->n_counters; i++)
                if (a->counters[i].code == code && STREQ(a->counters[i].route, route)) {
                        a->counters[i].count++;
                        return;
                }
        a->counters = xrealloc(a->counters, (a->n_counters + 1) * sizeof *a->counters);
        a->counters[a->n_counters++] = (ApiCounter){.route = route, .code = code, .count = 1};
}

void api_counters_free(ApiServer *a) {
        free(a->counters);
        a->counters = NULL;
        a->n_counters = 0;
}

/* ---- answers ----------------------------------------------------------------- */

/* Status line and headers of every answer, counted for /metrics. */
static void reply_head(ApiCall *c, int status, const char *content_type, size_t len) {
        h2o_req_t *req = c->req;

        api_count(c->api, c->route.template ? c->route.template : "other", status);
        req->res.status = status;
        req->res.reason = http_phrase(status);
        req->res.content_length = len;
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, content_type,
                       strlen(content_type));
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL, H2O_STRLIT("no-store"));
}

void api_reply_text(ApiCall *c, int status, const char *content_type, const char *body, size_t len) {
        reply_head(c, status, content_type, len);
        h2o_send_inline(c->req, body, len);
}

static void free_owned(void *p) {
        free(*(char **) p);
}

void api_reply_owned(ApiCall *c, int status, const char *content_type, char *body, size_t len) {
        static h2o_generator_t generator = {NULL, NULL};
        char **owner = h2o_mem_alloc_shared(&c->req->pool, sizeof *owner, free_owned);
        h2o_iovec_t iov = h2o_iovec_init(body, len);

        /* Freed with the request, once h2o has sent it: no copy into the
         * pool, which matters for a 10,000-object answer. */
        *owner = body;
        reply_head(c, status, content_type, len);
        h2o_start_response(c->req, &generator);
        h2o_send(c->req, &iov, 1, H2O_SEND_STATE_FINAL);
}

void api_reply_buf(ApiCall *c, int status, Buf *b) {
        size_t len;

        buf_puts(b, "\n");
        len = b->len;
        api_reply_owned(c, status, "application/json", buf_steal(b), len);
}

static int dump_to_buf(const char *data, size_t n, void *userdata) {
        return buf_append(userdata, data, n);
}

int api_buf_json(Buf *b, const json_t *v) {
        return json_dump_callback(v, dump_to_buf, b, JSON_COMPACT) < 0 ? -ENOMEM : 0;
}

void api_reply_json(ApiCall *c, int status, json_t *body) {
        Buf b = BUF_INIT;
        int r = api_buf_json(&b, body);

        json_decref(body);
        if (r < 0) {
                static const char oom[] =
                        "{\"apiVersion\":\"rpr/v1\",\"kind\":\"Status\",\"code\":500,"
                        "\"reason\":\"InternalError\",\"message\":\"cannot encode answer\"}\n";
                buf_free(&b);
                api_reply_text(c, 500, "application/json", oom, sizeof oom - 1);
                return;
        }
        api_reply_buf(c, status, &b);
}

bool api_text_selected(const Selector *sel, const char *text, size_t len) {
        _cleanup_json_ json_t *obj = NULL;

        if (!sel)
                return true;
        obj = json_loadb(text, len, 0, NULL);
        return obj && selector_matches(sel, json_object_get(json_object_get(obj, "metadata"), "labels"));
}

void api_buf_object(Buf *b, const Kind *k, const char *text, size_t len) {
        if (!k || !kind_has_secrets(k)) {
                buf_append(b, text, len);
                return;
        }
        _cleanup_json_ json_t *obj = json_loadb(text, len, 0, NULL);
        if (!obj) {
                buf_puts(b, "null"); /* the store holds only valid JSON */
                return;
        }
        resource_redact(obj);
        api_buf_json(b, obj);
}

json_t *api_status_new(int code, const char *message) {
        return json_pack("{s:s, s:s, s:i, s:s, s:s}", "apiVersion", RPR_API_VERSION, "kind", "Status",
                         "code", code, "reason", api_reason(code), "message", message);
}

void api_reply_status(ApiCall *c, int code, const char *fmt, ...) {
        char msg[1024];
        va_list ap;

        /* Cut at a character boundary: half a character would make the
         * Status unencodable, and the answer a 500. */
        va_start(ap, fmt);
        vsnprintf_utf8(msg, sizeof msg, fmt, ap);
        va_end(ap);
        api_reply_json(c, code, api_status_new(code, msg));
}

json_t *api_diag_to_json(const Diag *d) {
        json_t *o = json_object();

        if (d->index >= 0)
                json_object_set_new(o, "index", json_integer(d->index));
        if (d->object)
                json_object_set_new(o, "object", json_string(d->object));
        if (d->field)
                json_object_set_new(o, "field", json_string(d->field));
        if (d->line > 0) {
                json_object_set_new(o, "line", json_integer(d->line));
                json_object_set_new(o, "column", json_integer(d->col));
        }
        json_object_set_new(o, "message", json_string(d->message ? d->message : ""));
        return o;
}

void api_reply_diags(ApiCall *c, int code, const char *message, const Diags *d) {
        json_t *status = api_status_new(code, message);
        json_t *details = json_array();

        for (size_t i = 0; i < d->n; i++)
                json_array_append_new(details, api_diag_to_json(&d->items[i]));
        json_object_set_new(status, "details", details);
        api_reply_json(c, code, status);
}

/* ---- request parts ------------------------------------------------------------ */

char *api_pool_strdup(h2o_req_t *req, const char *s, size_t len) {
        char *p = h2o_mem_alloc_pool(&req->pool, len + 1);

        memcpy(p, s, len);
        p[len] = '\0';
        return p;
}

static int hexval(char ch) {
        if (ch >= '0' && ch <= '9')
                return ch - '0';
        if (ch >= 'a' && ch <= 'f')
                return ch - 'a' + 10;
        if (ch >= 'A' && ch <= 'F')
                return ch - 'A' + 10;
        return -1;
}

/* Percent-decodes (and '+' as space) into the pool. */
static char *url_decode(h2o_req_t *req, const char *s, size_t len) {
        char *out = h2o_mem_alloc_pool(&req->pool, len + 1);
        size_t o = 0;

        for (size_t i = 0; i < len; i++) {
                if (s[i] == '+')
                        out[o++] = ' ';
                else if (s[i] == '%' && i + 2 < len && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0) {
                        out[o++] = (char) (hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
                        i += 2;
                } else
                        out[o++] = s[i];
        }
        out[o] = '\0';
        return out;
}

/* The byte at s[*i], percent-decoded when decode is set, and *i moved
 * past it; -1 for a '%' without two hex digits after it. */
static int text_byte(const char *s, size_t len, size_t *i, bool decode) {
        int hi, lo;

        if (!decode || s[*i] != '%') {
                (*i)++;
                return (unsigned char) s[*i - 1];
        }
        if (*i + 2 >= len || (hi = hexval(s[*i + 1])) < 0 || (lo = hexval(s[*i + 2])) < 0)
                return -1;
        *i += 3;
        return hi * 16 + lo;
}

/* What keeps s from being UTF-8 text without control characters (a tab
 * allowed where tab_ok), or NULL. */
static const char *text_problem(const char *s, size_t len, bool decode, bool tab_ok) {
        static const char bad_percent[] = "a '%' not followed by two hex digits";
        static const char bad_utf8[] = "bytes that are not UTF-8 text";
        size_t i = 0;

        while (i < len) {
                int c = text_byte(s, len, &i, decode);
                if (c < 0)
                        return bad_percent;
                if ((c < 0x20 && !(c == '\t' && tab_ok)) || c == 0x7f)
                        return "a control character";
                if (c < 0x80)
                        continue;

                /* A UTF-8 sequence: how many bytes follow, and the smallest
                 * code point its length may carry (no overlong forms). */
                int more = (c & 0xe0) == 0xc0 ? 1 : (c & 0xf0) == 0xe0 ? 2 : (c & 0xf8) == 0xf0 ? 3 : -1;
                uint32_t cp = (uint32_t) c & (0x7fu >> (more + 1));
                static const uint32_t smallest[] = {0, 0x80, 0x800, 0x10000};
                if (more < 0)
                        return bad_utf8;
                for (int k = 0; k < more; k++) {
                        int b = i < len ? text_byte(s, len, &i, decode) : -2;
                        if (b == -1)
                                return bad_percent;
                        if (b < 0 || (b & 0xc0) != 0x80)
                                return bad_utf8;
                        cp = cp << 6 | ((uint32_t) b & 0x3f);
                }
                if (cp < smallest[more] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
                        return bad_utf8;
        }
        return NULL;
}

const char *api_target_problem(const char *target, size_t len) {
        return text_problem(target, len, true, false);
}

const char *api_header_problem(const char *value, size_t len) {
        return text_problem(value, len, false, true);
}

const char *api_query(h2o_req_t *req, const char *name) {
        size_t nlen = strlen(name);

        if (req->query_at == SIZE_MAX)
                return NULL;

        const char *p = req->path.base + req->query_at + 1, *end = req->path.base + req->path.len;
        while (p < end) {
                const char *amp = memchr(p, '&', end - p);
                const char *pe = amp ? amp : end;
                const char *eq = memchr(p, '=', pe - p);
                const char *ke = eq ? eq : pe;

                if ((size_t) (ke - p) == nlen && memcmp(p, name, nlen) == 0)
                        return eq ? url_decode(req, eq + 1, pe - eq - 1) : "";
                p = pe + 1;
        }
        return NULL;
}

bool api_query_true(h2o_req_t *req, const char *name) {
        const char *v = api_query(req, name);

        return v && (STREQ(v, "") || STREQ(v, "1") || STREQ(v, "true"));
}

const char *api_header(h2o_req_t *req, const h2o_token_t *token) {
        ssize_t i = h2o_find_header(&req->headers, token, -1);

        if (i < 0)
                return NULL;
        return api_pool_strdup(req, req->headers.entries[i].value.base, req->headers.entries[i].value.len);
}

const char *api_header_named(h2o_req_t *req, const char *name) {
        ssize_t i = h2o_find_header_by_str(&req->headers, name, strlen(name), -1);

        if (i < 0)
                return NULL;
        return api_pool_strdup(req, req->headers.entries[i].value.base, req->headers.entries[i].value.len);
}

bool api_method_is(h2o_req_t *req, const char *method) {
        return h2o_memis(req->method.base, req->method.len, method, strlen(method));
}

json_t *api_body_json(ApiCall *c) {
        h2o_req_t *req = c->req;
        json_error_t err;

        if (req->entity.len > c->api->max_body) {
                api_reply_status(c, 413, "request body is larger than %zu bytes", c->api->max_body);
                return NULL;
        }
        if (req->entity.len == 0) {
                api_reply_status(c, 400, "the request body is empty; send a JSON object");
                return NULL;
        }
        json_t *v = json_loadb(req->entity.base, req->entity.len, JSON_REJECT_DUPLICATES, &err);
        if (!v) {
                api_reply_status(c, 400, "invalid JSON at line %d column %d: %s", err.line, err.column,
                                 err.text);
                return NULL;
        }
        return v;
}
