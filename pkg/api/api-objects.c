/* api-objects: reading and writing single objects and lists.
 *
 * Reads answer straight from the store's in-memory index on the loop;
 * writes (PUT, DELETE, PUT status) go through a job. Every object that
 * leaves goes through resource_redact() first. */
#include <string.h>

#include "api/api-private.h"

/* ---- helpers ------------------------------------------------------------------- */

int api_object_revision(const json_t *obj, uint64_t *ret) {
        const json_t *v = json_object_get(json_object_get(obj, "metadata"), "resourceVersion");
        uint64_t rev = 0;

        if (!v || json_is_null(v)) {
                *ret = 0;
                return 0;
        }
        if (json_is_integer(v) && json_integer_value(v) >= 0)
                rev = (uint64_t) json_integer_value(v);
        else if (!json_is_string(v) ||
                 (*json_string_value(v) && parse_uint64(json_string_value(v), &rev) < 0))
                return -EINVAL;
        *ret = rev;
        return 0;
}

static void reply_object_not_found(ApiCall *c, const char *plural, const char *name) {
        api_reply_status(c, 404, "%s \"%s\" not found", plural, name);
}

void api_reply_store_error(ApiCall *c, int r, const StoreOp *op) {
        const char *kind = op && op->object ? json_string_value(json_object_get(op->object, "kind"))
                                            : (op ? op->kind : NULL);
        const Kind *k = kind ? kind_lookup(kind) : NULL;
        const char *name =
                op && op->object
                        ? json_string_value(json_object_get(json_object_get(op->object, "metadata"), "name"))
                        : (op ? op->name : NULL);

        switch (r) {
        case -ESTALE:
                api_reply_status(c, 409,
                                 "the object has been modified; please apply your changes to the latest "
                                 "version");
                break;
        case -ENOENT:
                reply_object_not_found(c, k ? kind_plural(k) : "object", name ? name : "?");
                break;
        case -EEXIST:
                api_reply_status(c, 409, "%s/%s appears twice in one write", kind ? kind : "?",
                                 name ? name : "?");
                break;
        case -ESHUTDOWN:
                api_reply_status(c, 503, "rprd is shutting down");
                break;
        case -EIDRM:
                api_reply_status(c, 503, "%s", API_STORE_GONE);
                break;
        case -ENOSPC:
                api_reply_status(c, 507, "%s", API_STORE_FULL);
                break;
        case -EUCLEAN:
                api_reply_status(c, 500, "%s", API_STORE_CORRUPT);
                break;
        case -EROFS:
                api_reply_status(c, 503, "the state directory has become read-only: nothing was written");
                break;
        default:
                api_reply_status(c, 500, "store write failed: %s", strerror(-r));
        }
}

/* ---- GET ----------------------------------------------------------------------- */

typedef struct ListCtx {
        const Kind *kind;
        Buf *out;
        size_t n;
} ListCtx;

/* Lists are written straight from the stored texts: no tree of every
 * object is ever built, and the store picks by label itself. */
static void list_one(const char *text, size_t len, void *userdata) {
        ListCtx *l = userdata;

        if (l->n++ > 0)
                buf_puts(l->out, ",");
        api_buf_object(l->out, l->kind, text, len);
}

void api_handle_list(ApiCall *c) {
        const char *sel_text = api_query(c->req, "labelSelector");
        Selector *sel = NULL;
        _cleanup_free_ char *error = NULL;
        Buf out = BUF_INIT;
        uint64_t rev = 0;
        int r;

        if (sel_text && *sel_text && selector_parse(sel_text, &sel, &error) < 0) {
                /* The parser's message names the selector and the bad part. */
                api_reply_status(c, 400, "%s", error ? error : "invalid label selector");
                return;
        }
        if (api_query_true(c->req, "watch")) {
                api_watch_start(c, sel_text);
                selector_free(sel);
                return;
        }

        ListCtx l = {.kind = c->route.kind, .out = &out};
        buf_printf(&out, "{\"apiVersion\":\"%s\",\"kind\":\"List\",\"items\":[", RPR_API_VERSION);
        r = store_list_selected(c->api->store, kind_name(c->route.kind), c->route.ns, sel, list_one, &l, &rev);
        selector_free(sel);
        if (r < 0) {
                buf_free(&out);
                api_reply_status(c, 500, "cannot list %s: %s", c->route.plural, strerror(-r));
                return;
        }
        buf_printf(&out, "],\"metadata\":{\"resourceVersion\":\"%" PRIu64 "\"}}", rev);
        api_reply_buf(c, 200, &out);
}

int route_object_text(ApiCall *c, char **ret) {
        int r = store_get(c->api->store, kind_name(c->route.kind), c->route.ns, c->route.name, ret);

        if (r == -ENOENT)
                reply_object_not_found(c, c->route.plural, c->route.name);
        else if (r < 0)
                api_reply_status(c, 500, "cannot read %s/%s: %s", c->route.plural, c->route.name,
                                 strerror(-r));
        return r;
}

void api_handle_get(ApiCall *c) {
        _cleanup_free_ char *text = NULL;
        Buf out = BUF_INIT;

        if (route_object_text(c, &text) < 0)
                return;
        api_buf_object(&out, c->route.kind, text, strlen(text));
        api_reply_buf(c, 200, &out);
}

/* ---- writes -------------------------------------------------------------------- */

static void write_done(ApiJob *job, ApiCall *c) {
        if (!c)
                return;
        if (job->r < 0) {
                api_reply_store_error(c, job->r, &job->ops[0]);
                return;
        }
        const StoreOp *op = &job->ops[0];
        Buf out = BUF_INIT;

        api_buf_object(&out, c->route.kind, op->result, op->result_len);
        api_reply_buf(c, op->outcome == STORE_CREATED ? 201 : 200, &out);
}

/* Fills in or checks a body's kind, name and namespace against the URL. */
static bool body_matches_url(ApiCall *c, json_t *obj) {
        const ApiRoute *rt = &c->route;
        const char *kind = json_string_value(json_object_get(obj, "kind"));
        json_t *meta = json_object_get(obj, "metadata");

        if (!json_object_get(obj, "kind"))
                json_object_set_new(obj, "kind", json_string(kind_name(rt->kind)));
        else if (!kind || !STREQ(kind, kind_name(rt->kind))) {
                api_reply_status(c, 400, "kind \"%s\" in the body does not match \"%s\" in the URL",
                                 kind ? kind : "?", rt->plural);
                return false;
        }
        if (!meta) {
                meta = json_object();
                json_object_set_new(obj, "metadata", meta);
        }
        if (!json_is_object(meta)) {
                api_reply_status(c, 400, "metadata must be an object");
                return false;
        }

        const struct { const char *field, *want; } fields[] = {{"name", rt->name}, {"namespace", rt->ns}};
        for (size_t i = 0; i < ELEMENTSOF(fields); i++) {
                json_t *v = json_object_get(meta, fields[i].field);
                if (!v)
                        json_object_set_new(meta, fields[i].field, json_string(fields[i].want));
                else if (!json_is_string(v) || !STREQ(json_string_value(v), fields[i].want)) {
                        api_reply_status(c, 400,
                                         "metadata.%s \"%s\" in the body does not match \"%s\" in the URL",
                                         fields[i].field, json_is_string(v) ? json_string_value(v) : "?",
                                         fields[i].want);
                        return false;
                }
        }
        return true;
}

void api_handle_put(ApiCall *c) {
        _cleanup_json_ json_t *obj = api_body_json(c);
        Diags d = DIAGS_INIT, forbidden = DIAGS_INIT;
        uint64_t rev;

        if (!obj)
                return;
        if (!json_is_object(obj)) {
                api_reply_status(c, 400, "the body must be a JSON object");
                return;
        }
        if (!body_matches_url(c, obj))
                return;
        if (api_object_revision(obj, &rev) < 0) {
                api_reply_status(c, 400, "metadata.resourceVersion must be a decimal string");
                return;
        }
        if (!kind_user_writable(c->route.kind)) {
                _cleanup_free_ char *what = resource_display_name(obj);
                diags_add(&d, 0, what, "kind", "%s objects are made by rprd and cannot be written",
                          kind_name(c->route.kind));
        } else if (!api_prepare_write(c, obj, 0, &d, &forbidden) && d.n == 0) {
                api_reply_forbidden(c, &forbidden);
                diags_free(&forbidden);
                return;
        }
        diags_free(&forbidden);
        if (d.n > 0) {
                _cleanup_free_ char *what = resource_display_name(obj);
                _cleanup_free_ char *msg = xasprintf("%s is invalid", what);
                api_reply_diags(c, 422, msg, &d);
                diags_free(&d);
                return;
        }

        ApiJob *job = api_job_new(c, 1, NULL, write_done);
        job->input = TAKE_PTR(obj);
        job->ops[0] = (StoreOp){.type = STORE_OP_UPDATE, .object = job->input, .expect_revision = rev};
        api_job_submit(job);
}

void api_handle_delete(ApiCall *c) {
        if (!api_may_remove(c))
                return;
        ApiJob *job = api_job_new(c, 1, NULL, write_done);

        job->kind = xstrdup(kind_name(c->route.kind));
        job->ns = xstrdup(c->route.ns);
        job->name = xstrdup(c->route.name);
        job->ops[0] =
                (StoreOp){.type = STORE_OP_DELETE, .kind = job->kind, .ns = job->ns, .name = job->name};
        api_job_submit(job);
}

void api_handle_status(ApiCall *c) {
        _cleanup_json_ json_t *body = api_body_json(c);
        uint64_t rev;

        if (!body)
                return;
        json_t *status = json_object_get(body, "status");
        if (!json_is_object(status)) {
                api_reply_status(c, 400, "the body needs a \"status\" object");
                return;
        }
        if (!body_matches_url(c, body))
                return;
        if (api_object_revision(body, &rev) < 0) {
                api_reply_status(c, 400, "metadata.resourceVersion must be a decimal string");
                return;
        }
        /* What controllers trust (a pinned host key) must have its shape. */
        Diags d = DIAGS_INIT;
        if (resource_status_validate(c->route.kind, c->route.name, status, &d) < 0) {
                api_reply_diags(c, 422, "invalid status", &d);
                diags_free(&d);
                return;
        }

        ApiJob *job = api_job_new(c, 1, NULL, write_done);
        job->input = json_pack("{s:s, s:s, s:{s:s, s:s}, s:O}", "apiVersion", RPR_API_VERSION, "kind",
                               kind_name(c->route.kind), "metadata", "name", c->route.name, "namespace",
                               c->route.ns, "status", status);
        job->ops[0] = (StoreOp){.type = STORE_OP_STATUS, .object = job->input, .expect_revision = rev};
        api_job_submit(job);
}

/* ---- actions --------------------------------------------------------------------- */

void api_handle_action(ApiCall *c) {
        _cleanup_free_ char *json = NULL;

        if (STREQ(kind_name(c->route.kind), "Server") && STREQ(c->route.sub, "check")) {
                api_handle_server_check(c);
                return;
        }
        if (STREQ(kind_name(c->route.kind), "Repo") && STREQ(c->route.sub, "check")) {
                api_handle_repo_check(c);
                return;
        }
        if (STREQ(kind_name(c->route.kind), "Binding") && STREQ(c->route.sub, "trigger")) {
                api_handle_binding_trigger(c);
                return;
        }
        if (STREQ(kind_name(c->route.kind), "Pipeline") && STREQ(c->route.sub, "runs")) {
                api_handle_pipeline_start(c);
                return;
        }
        if (STREQ(kind_name(c->route.kind), "Run") && STREQ(c->route.sub, "cancel")) {
                api_handle_run_cancel(c);
                return;
        }
        if (STREQ(kind_name(c->route.kind), "Run") && STREQ(c->route.sub, "log")) {
                api_handle_run_log(c);
                return;
        }
        if (route_object_text(c, &json) < 0)
                return;
        api_reply_status(c, 501, "%s of %s/%s is not implemented yet", c->route.sub, c->route.plural,
                         c->route.name);
}
