/* util: the pieces every verb uses — errors in one format, the request
 * wrapper that turns "cannot connect" into an actionable message, kind
 * names, JSON paths, ages and aligned tables. */
#include <ctype.h>
#include <inttypes.h>
#include <stdarg.h>
#include <string.h>

#include "resource/resource.h"
#include "rprctl.h"
#include "yaml/yaml.h"

/* ---- errors and requests ------------------------------------------------------ */

int ctl_error(const char *fmt, ...) {
        va_list ap;

        fputs("error: ", stderr);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
        return 1;
}

Client *ctl_client(Ctl *c) {
        if (c->client)
                return c->client;
        int r = client_new(c->server, c->token, &c->client);
        if (r < 0) {
                ctl_error("invalid server address \"%s\": use unix:PATH, http://HOST:PORT or https://HOST:PORT",
                          c->server ? c->server : getenv("RPR_SERVER"));
                return NULL;
        }
        r = client_set_tls(c->client, c->ca, c->fingerprint);
        if (r < 0) {
                ctl_error("invalid fingerprint \"%s\": use SHA256:BASE64 as rprd prints it at start",
                          c->fingerprint ? c->fingerprint : getenv("RPR_FINGERPRINT"));
                client_free(c->client);
                c->client = NULL;
                return NULL;
        }
        return c->client;
}

void ctl_print_json(const json_t *v) {
        _cleanup_free_ char *s = json_dumps(v, JSON_INDENT(4));
        printf("%s\n", s ? s : "null");
}

void ctl_print_yaml(const json_t *v) {
        _cleanup_free_ char *s = yaml_emit(v);
        fputs(s ? s : "", stdout);
}

const char *ctl_namespace(const Ctl *c) {
        return c->ns && *c->ns ? c->ns : "default";
}

int ctl_request(Ctl *c, const char *method, const char *path, const char *body, size_t len,
                ClientResponse *ret) {
        _cleanup_free_ char *why = NULL;
        Client *cl = ctl_client(c);

        if (!cl)
                return -EINVAL;
        int r = client_request(cl, method, path, NULL, body, len, ret, &why);
        if (r < 0) {
                ctl_error("cannot reach rprd at %s: %s", client_server(cl), why ? why : strerror(-r));
                if (r == -EKEYREJECTED)
                        fprintf(stderr, "hint: pin the key rprd printed at start with --fingerprint SHA256:... "
                                        "(or $RPR_FINGERPRINT), or trust its certificate with --ca FILE\n");
                else
                        fprintf(stderr, "hint: is rprd running? Start it with 'rprd' (state in ./.rpr), "
                                        "or point --server or $RPR_SERVER at it\n");
        }
        return r;
}

int ctl_http_error(Ctl *c, const ClientResponse *r) {
        _cleanup_free_ char *msg = client_error_message(r);

        ctl_error("%s", msg);
        if (r->status == 401 && c->client && !client_has_token(c->client))
                fprintf(stderr, "hint: pass --token, set $RPR_TOKEN, or write the token to "
                                "~/.config/rpr/token\n");
        return 1;
}

int ctl_get_json(Ctl *c, const char *path, json_t **ret) {
        ClientResponse resp = {0};
        json_error_t jerr;

        int r = ctl_request(c, "GET", path, NULL, 0, &resp);
        if (r < 0)
                return r;
        if (resp.status == 404) {
                client_response_clear(&resp);
                return -ENOENT;
        }
        if (resp.status != 200) {
                ctl_http_error(c, &resp);
                client_response_clear(&resp);
                return -EIO;
        }
        json_t *j = json_loadb(resp.body, resp.len, 0, &jerr);
        client_response_clear(&resp);
        if (!j) {
                ctl_error("rprd answered invalid JSON: %s", jerr.text);
                return -EBADMSG;
        }
        *ret = j;
        return 0;
}

/* ---- kinds -------------------------------------------------------------------- */

const Kind *ctl_kind(const char *arg) {
        const Kind *k = kind_lookup(arg);

        if (!k) {
                size_t n;
                const Kind *const *all = kind_all(&n);
                Buf b = BUF_INIT;
                for (size_t i = 0; i < n; i++)
                        buf_printf(&b, "%s%s", i ? ", " : "", kind_plural(all[i]));
                ctl_error("unknown kind \"%s\" (known: %s)", arg, b.data ? b.data : "");
                buf_free(&b);
        }
        return k;
}

const char *ctl_kind_singular(const Kind *k, char *buf, size_t size) {
        const char *n = kind_name(k);
        size_t i = 0;

        for (; n[i] && i + 1 < size; i++)
                buf[i] = (char) tolower((unsigned char) n[i]);
        buf[i] = 0;
        return buf;
}

char *ctl_object_path(const Kind *k, const char *ns, const char *name) {
        _cleanup_free_ char *ens = client_escape(ns);

        if (!name)
                return xasprintf("/api/v1/namespaces/%s/%s", ens, kind_plural(k));
        _cleanup_free_ char *ename = client_escape(name);
        return xasprintf("/api/v1/namespaces/%s/%s/%s", ens, kind_plural(k), ename);
}

/* ---- JSON ------------------------------------------------------------------- */

/* "status.lastCommit.sha"; a key may end in an index, "conditions[0]". */
const json_t *json_path_get(const json_t *obj, const char *path) {
        const char *p = path;

        while (obj && *p) {
                size_t n = strcspn(p, ".");
                _cleanup_free_ char *key = xstrndup(p, n);
                char *bracket = strchr(key, '[');
                unsigned long index = 0;
                if (bracket) {
                        *bracket = '\0';
                        index = strtoul(bracket + 1, NULL, 10);
                }
                obj = json_object_get(obj, key);
                if (bracket)
                        obj = json_array_get(obj, index);
                p += n;
                if (*p == '.')
                        p++;
        }
        return obj;
}

const char *json_path_str(const json_t *obj, const char *path) {
        return json_string_value(json_path_get(obj, path));
}

char *json_cell(const json_t *v) {
        if (!v || json_is_null(v))
                return xstrdup("<none>");
        if (json_is_string(v))
                return xstrdup(*json_string_value(v) ? json_string_value(v) : "<none>");
        if (json_is_integer(v))
                return xasprintf("%" JSON_INTEGER_FORMAT, json_integer_value(v));
        if (json_is_real(v))
                return xasprintf("%g", json_real_value(v));
        if (json_is_boolean(v))
                return xstrdup(json_is_true(v) ? "true" : "false");
        char *s = json_dumps(v, JSON_COMPACT);
        char *r = xstrdup(s ? s : "<none>");
        free(s);
        return r;
}

void format_age(const char *timestamp, char *buf, size_t size) {
        uint64_t t;

        if (!timestamp || time_parse_rfc3339(timestamp, &t) < 0) {
                snprintf(buf, size, "<unknown>");
                return;
        }
        /* A time to come (a next check) reads "in 5m". */
        uint64_t now = now_usec();
        bool future = t > now + USEC_PER_SEC;
        uint64_t s = (future ? t - now : now > t ? now - t : 0) / USEC_PER_SEC;
        const char *in = future ? "in " : "";
        if (s < 120)
                snprintf(buf, size, "%s%" PRIu64 "s", in, s);
        else if (s < 120 * 60)
                snprintf(buf, size, "%s%" PRIu64 "m", in, s / 60);
        else if (s < 48 * 3600)
                snprintf(buf, size, "%s%" PRIu64 "h", in, s / 3600);
        else
                snprintf(buf, size, "%s%" PRIu64 "d", in, s / 86400);
}

/* ---- tables ----------------------------------------------------------------- */

void table_init(Table *t, size_t n_cols) {
        *t = (Table){.n_cols = n_cols, .widths = xcalloc(n_cols, sizeof(size_t))};
}

void table_add_row(Table *t, char **cells) {
        t->cells = xrealloc(t->cells, (t->n_rows + 1) * t->n_cols * sizeof(char *));
        for (size_t i = 0; i < t->n_cols; i++) {
                t->cells[t->n_rows * t->n_cols + i] = cells[i];
                size_t w = strlen(cells[i]);
                if (w > t->widths[i])
                        t->widths[i] = w;
        }
        t->n_rows++;
}

void table_add(Table *t, ...) {
        _cleanup_free_ char **cells = xcalloc(t->n_cols, sizeof(char *));
        va_list ap;

        va_start(ap, t);
        for (size_t i = 0; i < t->n_cols; i++) {
                const char *s = va_arg(ap, const char *);
                cells[i] = xstrdup(s ? s : "<none>");
        }
        va_end(ap);
        table_add_row(t, cells);
}

void table_print(const Table *t, FILE *f, const char *indent) {
        for (size_t r = 0; r < t->n_rows; r++) {
                fputs(indent ? indent : "", f);
                for (size_t i = 0; i < t->n_cols; i++) {
                        const char *s = t->cells[r * t->n_cols + i];
                        if (i + 1 == t->n_cols)
                                fprintf(f, "%s\n", s);
                        else
                                fprintf(f, "%-*s   ", (int) t->widths[i], s);
                }
        }
}

void table_free(Table *t) {
        for (size_t i = 0; i < t->n_rows * t->n_cols; i++)
                free(t->cells[i]);
        free(t->cells);
        free(t->widths);
        *t = (Table){0};
}
