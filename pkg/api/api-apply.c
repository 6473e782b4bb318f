/* api-apply: POST /api/v1/apply and POST /api/v1/tokens.
 *
 * Apply is all or nothing: every object of the body is prepared (defaulted
 * and validated), every problem is collected, and only a body without any
 * goes to the store, as one commit. A YAML body's problems carry the line
 * and column of the field they are about. */
#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "api/api-private.h"
#include "yaml/yaml.h"

#define TOKEN_SECRET_LEN 32

/* ---- body ------------------------------------------------------------------------ */

typedef struct ApplyBody {
        json_t *items; /* array */
        YamlDoc **docs;
        size_t n_docs;
} ApplyBody;

static void apply_body_done(ApplyBody *b) {
        json_decref(b->items);
        yamldocs_free(b->docs, b->n_docs);
}

/* The media type of the body, lower case, without parameters (pool). */
static const char *media_type(ApiCall *c) {
        const char *ct = api_header(c->req, H2O_TOKEN_CONTENT_TYPE);
        char *t;

        if (!ct)
                return "";
        t = api_pool_strdup(c->req, ct, strcspn(ct, ";"));
        for (char *p = t; *p; p++)
                *p = (char) tolower((unsigned char) *p);
        while (*t == ' ')
                t++;
        for (size_t n = strlen(t); n > 0 && t[n - 1] == ' '; n--)
                t[n - 1] = '\0';
        return t;
}

static bool is_yaml(const char *t) {
        return STREQ(t, "application/yaml") || STREQ(t, "application/x-yaml") || STREQ(t, "text/yaml") ||
               STREQ(t, "text/x-yaml");
}

/* JSON; a body without a content type is taken as JSON too. */
static bool is_json(const char *t) {
        return !*t || STREQ(t, "application/json") || STREQ(t, "text/json") || endswith(t, "+json");
}

static int body_yaml(ApiCall *c, ApplyBody *b) {
        h2o_req_t *req = c->req;
        Diags d = DIAGS_INIT;

        if (yaml_parse(req->entity.base ? req->entity.base : "", req->entity.len, "request body", &b->docs,
                       &b->n_docs, &d) < 0) {
                const Diag *e = d.n > 0 ? &d.items[0] : NULL;
                const char *msg = e && e->message ? e->message : "syntax error";
                if (startswith(msg, "invalid YAML: "))
                        msg += strlen("invalid YAML: ");
                if (e)
                        api_reply_status(c, 400, "invalid YAML at line %u column %u: %s", e->line, e->col,
                                         msg);
                else
                        api_reply_status(c, 400, "invalid YAML");
                diags_free(&d);
                return -EINVAL;
        }
        diags_free(&d);
        b->items = json_array();
        for (size_t i = 0; i < b->n_docs; i++)
                json_array_append(b->items, yamldoc_root(b->docs[i]));
        return 0;
}

static int body_json(ApiCall *c, ApplyBody *b) {
        _cleanup_json_ json_t *list_kind = json_string("List");
        json_t *v = api_body_json(c);

        if (!v)
                return -EINVAL;
        if (json_is_array(v))
                b->items = v;
        else if (json_is_object(v) && json_is_array(json_object_get(v, "items")) &&
                 (!json_object_get(v, "kind") || json_equal(json_object_get(v, "kind"), list_kind))) {
                b->items = json_incref(json_object_get(v, "items"));
                json_decref(v);
        } else {
                b->items = json_array();
                json_array_append_new(b->items, v);
        }
        return 0;
}

static int body_parse(ApiCall *c, ApplyBody *b) {
        const char *t = media_type(c);

        if (c->req->entity.len > c->api->max_body) {
                api_reply_status(c, 413, "request body is larger than %zu bytes", c->api->max_body);
                return -EFBIG;
        }
        if (is_yaml(t))
                return body_yaml(c, b);
        if (is_json(t))
                return body_json(c, b);
        api_reply_status(c, 415,
                         "content type \"%s\" is not supported; send application/json or application/yaml",
                         t);
        return -EINVAL;
}

/* ---- checks ------------------------------------------------------------------------ */

/* Checks one object; false if it has problems (added to d, or to
 * forbidden when the caller may not write it). */
static bool item_prepare(ApiCall *c, json_t *obj, int i, Diags *d, Diags *forbidden) {
        if (!json_is_object(obj)) {
                diags_add(d, i, NULL, NULL, "must be an object");
                return false;
        }
        const char *kind = json_string_value(json_object_get(obj, "kind"));
        const Kind *k = kind ? kind_lookup(kind) : NULL;
        if (k && STREQ(kind_name(k), kind) && !kind_user_writable(k)) {
                _cleanup_free_ char *what = resource_display_name(obj);
                diags_add(d, i, what, "kind", "%s objects are made by rprd and cannot be applied", kind);
                return false;
        }
        return api_prepare_write(c, obj, i, d, forbidden);
}

static const char *meta_str(const json_t *obj, const char *field) {
        return json_string_value(json_object_get(json_object_get(obj, "metadata"), field));
}

/* Adds positions from the YAML documents to every diagnostic. */
static void diags_locate(Diags *d, const ApplyBody *b) {
        for (size_t i = 0; i < d->n && b->docs; i++) {
                Diag *e = &d->items[i];
                if (e->index < 0 || (size_t) e->index >= b->n_docs)
                        continue;
                bool key = e->message && startswith(e->message, "unknown field");
                yamldoc_pos(b->docs[e->index], e->field ? e->field : "", key, &e->line, &e->col);
        }
}

/* An object a Sync manages is changed in its repository: applying it by
 * hand would be undone at the next drift check. Refused unless ?force=1.
 * The stored text is only parsed when it names a Sync. */
static void check_managed(ApiCall *c, const json_t *obj, int i, Diags *managed) {
        _cleanup_free_ char *text = NULL;
        _cleanup_json_ json_t *live = NULL;

        if (api_query_true(c->req, "force") ||
            store_get(c->api->store, json_str_at(obj, "kind"), meta_str(obj, "namespace"), meta_str(obj, "name"),
                      &text) < 0 ||
            !strstr(text, "\"managedBy\":\"sync/"))
                return;
        live = json_loads(text, 0, NULL);
        const char *owner = json_str_at(json_object_get(live, "metadata"), "managedBy");
        if (!owner || !startswith(owner, "sync/"))
                return;
        _cleanup_free_ char *what = resource_display_name(obj);
        diags_add(managed, i, what, NULL, "managed by %s; change it in the repository, or --force", owner);
}

/* False (answered 409) when an object is managed by a Sync. */
static bool items_unmanaged(ApiCall *c, const ApplyBody *b) {
        Diags managed = DIAGS_INIT;
        size_t i;
        json_t *obj;

        json_array_foreach(b->items, i, obj) {
                check_managed(c, obj, (int) i, &managed);
        }
        if (managed.n == 0)
                return true;
        diags_locate(&managed, b);
        api_reply_diags(c, 409, "apply refused: objects managed by a Sync; nothing was written", &managed);
        diags_free(&managed);
        return false;
}

/* Every object prepared, duplicates found; false if anything was answered. */
static bool items_check(ApiCall *c, ApplyBody *b) {
        _cleanup_json_ json_t *seen = json_object();
        Diags d = DIAGS_INIT, forbidden = DIAGS_INIT;
        size_t i;
        json_t *obj;

        json_array_foreach(b->items, i, obj) {
                if (!item_prepare(c, obj, (int) i, &d, &forbidden))
                        continue;
                const char *kind = json_string_value(json_object_get(obj, "kind"));
                const char *ns = meta_str(obj, "namespace"), *name = meta_str(obj, "name");
                _cleanup_free_ char *key = xasprintf("%s/%s/%s", kind, ns, name);
                json_t *prev = json_object_get(seen, key);
                if (prev) {
                        _cleanup_free_ char *what = resource_display_name(obj);
                        diags_add(&d, (int) i, what, NULL,
                                  "duplicate object: %s also at index %" JSON_INTEGER_FORMAT, what,
                                  json_integer_value(prev));
                        continue;
                }
                json_object_set_new(seen, key, json_integer((json_int_t) i));
                if (!api_check_namespace(c, ns)) {
                        diags_free(&d);
                        diags_free(&forbidden);
                        return false;
                }
        }
        if (forbidden.n > 0) {
                diags_locate(&forbidden, b);
                api_reply_forbidden(c, &forbidden);
                diags_free(&forbidden);
                diags_free(&d);
                return false;
        }
        if (d.n > 0) {
                _cleanup_free_ char *msg = xasprintf("apply refused: %zu problem%s; nothing was written",
                                                     d.n, d.n == 1 ? "" : "s");
                diags_locate(&d, b);
                api_reply_diags(c, 422, msg, &d);
                diags_free(&d);
                return false;
        }
        return true;
}

/* ---- apply --------------------------------------------------------------------------- */

/* One item of the answer: the outcome, and the object as stored when the
 * caller asked for it (?objects=1). Written as text, the stored object
 * spliced in, so that the answer to a large apply costs one buffer and not
 * a second tree of every object. */
static void buf_apply_item(Buf *b, const StoreOp *op, bool with_object) {
        const char *kind = json_string_value(json_object_get(op->object, "kind"));
        char rev[24];

        snprintf(rev, sizeof rev, "%" PRIu64, op->revision);
        _cleanup_json_ json_t *head = json_pack(
                "{s:s?, s:s?, s:s?, s:s, s:s}", "kind", kind, "namespace", meta_str(op->object, "namespace"),
                "name", meta_str(op->object, "name"), "outcome", store_outcome_to_string(op->outcome),
                "resourceVersion", rev);

        if (api_buf_json(b, head) < 0)
                return (void) buf_puts(b, "null");
        if (!with_object)
                return;
        b->data[--b->len] = '\0'; /* reopen the object: drop its closing brace */
        buf_puts(b, ",\"object\":");
        api_buf_object(b, kind ? kind_lookup(kind) : NULL, op->result, op->result_len);
        buf_puts(b, "}");
}

static void apply_done(ApiJob *job, ApiCall *c) {
        Buf out = BUF_INIT;

        if (!c)
                return;
        if (job->r < 0) {
                api_reply_store_error(c, job->r, job->failed < job->n_ops ? &job->ops[job->failed] : NULL);
                return;
        }
        buf_printf(&out, "{\"apiVersion\":\"%s\",\"kind\":\"ApplyResult\",\"dryRun\":%s,\"items\":[",
                   RPR_API_VERSION, job->dry_run ? "true" : "false");
        for (size_t i = 0; i < job->n_ops; i++) {
                if (i > 0)
                        buf_puts(&out, ",");
                buf_apply_item(&out, &job->ops[i], job->with_objects);
        }
        buf_puts(&out, "]}");
        api_reply_buf(c, 200, &out);
}

static bool dry_run_wanted(h2o_req_t *req) {
        const char *v = api_query(req, "dryRun");

        /* kubectl sends dryRun=All. */
        return v && (STREQ(v, "") || STREQ(v, "1") || STREQ(v, "true") || STREQ(v, "All"));
}

void api_handle_apply(ApiCall *c) {
        ApplyBody b = {NULL, NULL, 0};

        if (body_parse(c, &b) < 0) {
                apply_body_done(&b);
                return;
        }
        if (json_array_size(b.items) == 0) {
                /* Nothing to do is no error, and writes nothing. */
                api_reply_json(c, 200,
                               json_pack("{s:s, s:s, s:b, s:[]}", "apiVersion", RPR_API_VERSION, "kind",
                                         "ApplyResult", "dryRun", dry_run_wanted(c->req), "items"));
                apply_body_done(&b);
                return;
        }
        if (!items_check(c, &b) || !items_unmanaged(c, &b)) {
                apply_body_done(&b);
                return;
        }

        ApiJob *job = api_job_new(c, json_array_size(b.items), NULL, apply_done);
        job->dry_run = dry_run_wanted(c->req);
        job->with_objects = api_query_true(c->req, "objects");
        job->input = TAKE_PTR(b.items);
        for (size_t i = 0; i < job->n_ops; i++)
                job->ops[i] = (StoreOp){.type = STORE_OP_APPLY, .object = json_array_get(job->input, i)};
        apply_body_done(&b);
        api_job_submit(job);
}

/* ---- tokens --------------------------------------------------------------------------- */

typedef struct TokenCreate {
        char secret[TOKEN_SECRET_LEN + 1];
        bool exists;
} TokenCreate;

static void token_create_free(void *p) {
        TokenCreate *t = p;

        if (t)
                explicit_bzero(t->secret, sizeof t->secret);
        free(t);
}

static void token_create_work(ApiJob *job) {
        TokenCreate *t = job->data;
        _cleanup_free_ char *json = NULL;

        if (store_get(job->api->store, "Token", meta_str(job->input, "namespace"),
                      meta_str(job->input, "name"), &json) >= 0) {
                t->exists = true;
                return;
        }
        api_job_commit(job);
}

static void token_create_done(ApiJob *job, ApiCall *c) {
        TokenCreate *t = job->data;

        if (!c)
                return;
        if (t->exists) {
                api_reply_status(c, 409, "tokens \"%s\" already exists", meta_str(job->input, "name"));
                return;
        }
        if (job->r < 0) {
                api_reply_store_error(c, job->r, &job->ops[0]);
                return;
        }
        json_t *spec = json_object_get(job->input, "spec");
        json_t *answer = json_pack("{s:s?, s:s?}", "name", meta_str(job->input, "name"), "namespace",
                                   meta_str(job->input, "namespace"));
        static const char *const fields[] = {"role", "expires"};
        for (size_t i = 0; i < ELEMENTSOF(fields); i++)
                if (json_object_get(spec, fields[i]))
                        json_object_set(answer, fields[i], json_object_get(spec, fields[i]));
        /* What it reaches, as rprd will read it (absent: every namespace). */
        char **scope =
                auth_token_scope(meta_str(job->input, "namespace"), json_object_get(spec, "namespaces"));
        if (scope) {
                json_t *nss = json_array();
                for (size_t i = 0; scope[i]; i++)
                        json_array_append_new(nss, json_string(scope[i]));
                json_object_set_new(answer, "namespaces", nss);
        }
        auth_strv_free(scope);
        /* The one time the secret is seen. */
        json_object_set_new(answer, "token", json_string(t->secret));
        api_reply_json(c, 201, answer);
}

/* "30d" from now, or a date / date-time; into RFC 3339. */
static int expires_parse(const char *s, char buf[static RFC3339_MAX]) {
        uint64_t u;

        if (duration_parse(s, &u) >= 0) {
                time_format_rfc3339(now_usec() + u, buf);
                return 0;
        }
        if (time_parse_rfc3339(s, &u) >= 0) {
                time_format_rfc3339(u, buf);
                return 0;
        }
        return -EINVAL;
}

/* The Token object a create request describes; problems into d. */
static json_t *token_object(const json_t *body, const char *hash, Diags *d) {
        static const char *const known[] = {"name",    "namespace",  "role",
                                            "expires", "namespaces", "description"};
        const char *name = json_string_value(json_object_get(body, "name"));
        const char *ns = json_string_value(json_object_get(body, "namespace"));
        const char *expires = json_string_value(json_object_get(body, "expires"));
        json_t *spec = json_pack("{s:s, s:s}", "type", "api", "valueHash", hash);
        const char *key;
        json_t *v;

        json_object_foreach((json_t *) body, key, v) {
                bool ok = false;
                for (size_t i = 0; i < ELEMENTSOF(known); i++)
                        ok = ok || STREQ(key, known[i]);
                if (!ok)
                        diags_add(d, 0, NULL, key, "unknown field");
        }
        if (!name)
                diags_add(d, 0, NULL, "name", "is required (a string)");
        if (json_object_get(body, "role"))
                json_object_set(spec, "role", json_object_get(body, "role"));
        else
                json_object_set_new(spec, "role", json_string("viewer"));
        if (json_object_get(body, "namespaces"))
                json_object_set(spec, "namespaces", json_object_get(body, "namespaces"));
        if (json_object_get(body, "description"))
                json_object_set(spec, "description", json_object_get(body, "description"));
        if (json_object_get(body, "expires")) {
                char buf[RFC3339_MAX];
                if (!expires || expires_parse(expires, buf) < 0)
                        diags_add(d, 0, NULL, "expires",
                                  "must be a duration like 30d or a date like 2027-06-30");
                else
                        json_object_set_new(spec, "expires", json_string(buf));
        }
        return json_pack("{s:s, s:s, s:{s:s, s:s}, s:o}", "apiVersion", RPR_API_VERSION, "kind", "Token",
                         "metadata", "name", name ? name : "", "namespace", ns ? ns : "default", "spec",
                         spec);
}

void api_handle_token_create(ApiCall *c) {
        _cleanup_json_ json_t *body = api_body_json(c);
        TokenCreate *t;
        Diags d = DIAGS_INIT, forbidden = DIAGS_INIT;
        char hex[65];

        if (!body)
                return;
        if (!json_is_object(body)) {
                api_reply_status(c, 400, "the body must be a JSON object");
                return;
        }
        t = xcalloc(1, sizeof *t);
        if (random_token(t->secret, TOKEN_SECRET_LEN) < 0) {
                token_create_free(t);
                api_reply_status(c, 500, "cannot make a random token");
                return;
        }
        sha256_hex(t->secret, TOKEN_SECRET_LEN, hex);
        _cleanup_free_ char *hash = xasprintf("sha256:%s", hex);
        _cleanup_json_ json_t *obj = token_object(body, hash, &d);
        if (d.n == 0 && !api_check_namespace(c, meta_str(obj, "namespace"))) {
                token_create_free(t);
                return;
        }
        if (d.n == 0)
                (void) api_prepare_write(c, obj, 0, &d, &forbidden);
        if (d.n > 0 || forbidden.n > 0) {
                if (d.n > 0)
                        api_reply_diags(c, 422, "invalid token request", &d);
                else
                        api_reply_forbidden(c, &forbidden);
                diags_free(&d);
                diags_free(&forbidden);
                token_create_free(t);
                return;
        }

        ApiJob *job = api_job_new(c, 1, token_create_work, token_create_done);
        job->data = t;
        job->data_free = token_create_free;
        job->input = TAKE_PTR(obj);
        job->ops[0] = (StoreOp){.type = STORE_OP_APPLY, .object = job->input};
        api_job_submit(job);
}
