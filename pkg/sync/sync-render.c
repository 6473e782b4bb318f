/* sync-render: a revision's manifests, read, parsed and checked whole.
 *
 * Every file under the Sync's path is parsed with pkg/yaml and every
 * document defaulted and validated with pkg/resource as an apply would,
 * and then held to what a repository may say: objects of user-writable
 * kinds only, no status, no inline Token secret, only the Sync's target
 * namespace, and no more than the Sync's own rights (auth_check_write with
 * a caller that is an admin of that namespace, or an unrestricted one with
 * spec.hostAccess). Nothing stops at the first problem: a person gets all
 * of them, each as REPO@SHA:PATH:LINE:COL. */
#include <stdio.h>
#include <string.h>

#include "auth/auth.h"
#include "repo/repo.h"
#include "resource/resource.h"
#include "sync/sync-private.h"
#include "yaml/yaml.h"

typedef struct RenderCtx {
        const SyncSpec *spec;
        char *where; /* "REPO@SHA12" */
        AuthCaller caller;
        const char *scope[2];
        json_t *seen; /* "Kind/ns/name" -> "path:line:col" */
        SyncMemo *memo;
        json_t *files; /* the memo's next files */
        SyncRender *out;
} RenderCtx;

static void error_add(RenderCtx *c, const char *fmt, ...) _printf_(2, 3);
static void error_add(RenderCtx *c, const char *fmt, ...) {
        char buf[1024];
        va_list ap;

        if (json_array_size(c->out->errors) >= SYNC_MAX_ERRORS)
                return;
        va_start(ap, fmt);
        vsnprintf_utf8(buf, sizeof buf, fmt, ap);
        va_end(ap);
        json_array_append_new(c->out->errors, json_string(text_flatten(buf)));
}

/* Every diagnostic of d, placed in doc and prefixed with the file. */
static void errors_from_diags(RenderCtx *c, const char *path, const YamlDoc *doc, Diags *d) {
        for (size_t i = 0; i < d->n; i++) {
                Diag *e = &d->items[i];
                if (doc) {
                        bool key = e->message && startswith(e->message, "unknown field");
                        yamldoc_pos(doc, e->field ? e->field : "", key, &e->line, &e->col);
                }
                free(e->file);
                e->file = xasprintf("%s:%s", c->where, path);
                _cleanup_free_ char *text = diag_format(e);
                error_add(c, "%s", text);
        }
}

/* What a repository may not say, before the schema is asked. */
static void check_raw(RenderCtx *c, json_t *obj, Diags *d) {
        const char *kind = json_str_at(obj, "kind");
        const Kind *k = kind ? kind_lookup(kind) : NULL;
        json_t *meta = json_object_get(obj, "metadata");
        const char *ns = json_str_at(meta, "namespace");
        _cleanup_free_ char *what = resource_display_name(obj);

        if (k && !kind_user_writable(k))
                diags_add(d, 0, what, "kind",
                          "%s objects are made by rprd and cannot come from a repository", kind_name(k));
        if (json_object_get(obj, "status"))
                diags_add(d, 0, what, "status", "status is written by rprd, never by a repository");
        if (k && STREQ(kind_name(k), "Token") && json_object_get(json_object_get(obj, "spec"), "value"))
                diags_add(d, 0, what, "spec.value",
                          "a Token in a repository must not carry its secret: use spec.valueFrom (file or "
                          "env)");
        if (json_is_object(meta) && json_object_get(meta, "managedBy"))
                diags_add(d, 0, what, "metadata.managedBy", "is set by rprd");
        if (ns && !STREQ(ns, c->spec->target_ns))
                diags_add(d, 0, what, "metadata.namespace",
                          "Sync %s/%s writes only into namespace %s (not %s)", c->spec->ns, c->spec->name,
                          c->spec->target_ns, ns);
        else if (json_is_object(meta) && !ns)
                json_object_set_new(meta, "namespace", json_string(c->spec->target_ns));
        if (k && STREQ(kind_name(k), "Sync") && json_str_at(meta, "name") &&
            STREQ(json_str_at(meta, "name"), c->spec->name) && (!ns || STREQ(ns, c->spec->ns)))
                diags_add(d, 0, what, "metadata.name", "a Sync cannot manage itself");
}

/* Checks one object; false with d filled when it has problems. */
static bool object_check(RenderCtx *c, json_t *obj, Diags *d) {
        if (!json_is_object(obj)) {
                diags_add(d, 0, NULL, NULL, "a manifest must be an object");
                return false;
        }
        check_raw(c, obj, d);
        if (d->n > 0 || resource_prepare(obj, 0, d) < 0 || d->n > 0)
                return false;
        auth_check_write(&c->caller, obj, 0, d);
        return d->n == 0;
}

/* Adds obj (prepared, managedBy set), found at at ("path:line:col"), to
 * what the revision holds, unless another document has it. */
static bool object_add(RenderCtx *c, const char *at, json_t *obj, Diags *d) {
        _cleanup_free_ char *key = sync_key(obj);
        const char *prev = json_str_at(c->seen, key);

        if (prev) {
                _cleanup_free_ char *what = resource_display_name(obj);
                diags_add(d, 0, what, NULL, "duplicate object: %s is also at %s", what, prev);
                return false;
        }
        json_object_set_new(c->seen, key, json_string(at));
        json_array_append(c->out->objects, obj);
        return true;
}

/* One document; a good one also goes to entries (for the memo). */
static void render_doc(RenderCtx *c, const char *path, const YamlDoc *doc, json_t *entries) {
        _cleanup_json_ json_t *obj = json_deep_copy(yamldoc_root(doc));
        Diags d = DIAGS_INIT;
        unsigned line, col;

        if (object_check(c, obj, &d)) {
                _cleanup_free_ char *key = sync_key(obj);
                yamldoc_pos(doc, "", false, &line, &col);
                json_t *at = json_sprintf("%s:%u:%u", path, line, col);
                json_object_set_new(json_object_get(obj, "metadata"), "managedBy",
                                    json_string(c->spec->owner));
                /* Parsed anew: what was known in sync with the old one is not. */
                json_object_del(c->memo->seen, key);
                if (object_add(c, json_string_value(at), obj, &d))
                        json_array_append_new(entries, json_pack("{s:O, s:o}", "object", obj, "at", at));
                else
                        json_decref(at);
        }
        errors_from_diags(c, path, doc, &d);
        diags_free(&d);
}

/* A file seen before with the same content: its objects as they were. */
static void render_remembered(RenderCtx *c, const char *path, const json_t *entries) {
        Diags d = DIAGS_INIT;
        size_t i;
        const json_t *e;

        json_array_foreach(entries, i, e)(void)
                object_add(c, json_str_at(e, "at"), json_object_get(e, "object"), &d);
        errors_from_diags(c, path, NULL, &d);
        diags_free(&d);
}

static int on_file(void *userdata, const char *path, const char *blob_id, const char *data, size_t len) {
        RenderCtx *c = userdata;
        _cleanup_free_ char *memo_key = xasprintf("%s:%s", blob_id, path);
        const json_t *remembered = json_object_get(c->memo->files, memo_key);
        size_t errors = json_array_size(c->out->errors);
        YamlDoc **docs = NULL;
        size_t n = 0;
        Diags d = DIAGS_INIT;

        if (++c->out->files > SYNC_MAX_FILES) {
                error_add(c, "%s:%s: more than %d manifest files under %s; nothing was read past it",
                          c->where, path, SYNC_MAX_FILES, c->spec->path);
                return -E2BIG;
        }
        if (!data) {
                error_add(c, "%s:%s: file of %zu bytes is larger than the %zu bytes a manifest may have",
                          c->where, path, len, SYNC_MAX_FILE_BYTES);
                return 0;
        }
        c->out->bytes += len;
        if (c->out->bytes > SYNC_MAX_TOTAL_BYTES) {
                error_add(c, "%s:%s: the manifests under %s are larger than %zu bytes in all", c->where,
                          path, c->spec->path, SYNC_MAX_TOTAL_BYTES);
                return -E2BIG;
        }
        if (remembered) {
                render_remembered(c, path, remembered);
                json_object_set(c->files, memo_key, (json_t *) remembered);
                return 0;
        }
        if (yaml_parse(data, len, path, &docs, &n, &d) < 0) {
                errors_from_diags(c, path, NULL, &d);
                diags_free(&d);
                return 0;
        }
        diags_free(&d);
        json_t *entries = json_array();
        for (size_t i = 0; i < n; i++)
                render_doc(c, path, docs[i], entries);
        yamldocs_free(docs, n);
        /* Only a file without problems is remembered: an error names the commit. */
        if (json_array_size(c->out->errors) == errors)
                json_object_set_new(c->files, memo_key, entries);
        else
                json_decref(entries);
        return 0;
}

/* What rendering depends on besides the files: when it changes, nothing
 * remembered holds. */
static void memo_check(SyncMemo *m, const SyncSpec *spec) {
        _cleanup_free_ char *config = xasprintf("%s|%s|%d", spec->owner, spec->target_ns, spec->host_access);

        if (m->config && STREQ(m->config, config))
                return;
        free(m->config);
        m->config = TAKE_PTR(config);
        json_object_clear(m->files);
        json_object_clear(m->seen);
}

int sync_render(SyncController *s, const SyncSpec *spec, SyncMemo *memo, const char *sha, SyncRender *ret,
                char **ret_error) {
        SyncRender out = {json_array(), json_array(), 0, 0};
        RenderCtx c = {
                .spec = spec, .seen = json_object(), .memo = memo, .files = json_object(), .out = &out};
        _cleanup_free_ char *error = NULL;
        int k;

        memo_check(memo, spec);
        c.where = xasprintf("%s@%.12s", spec->repo, sha);
        c.scope[0] = spec->target_ns;
        c.caller = (AuthCaller){AUTH_ROLE_ADMIN, spec->owner, spec->host_access ? NULL : c.scope};
        k = repo_read_tree(s->repos, spec->ns, spec->repo, sha, spec->path, SYNC_MAX_FILE_BYTES, on_file, &c,
                           &error);
        /* A directory that is gone holds no objects: allowEmpty decides. */
        if (k == -ENOENT)
                k = 0;
        if (k == -E2BIG)
                k = 0; /* said in errors */
        free(c.where);
        json_decref(c.seen);
        if (k >= 0) {
                json_decref(memo->files);
                memo->files = c.files;
        } else
                json_decref(c.files);
        if (k < 0) {
                sync_render_clear(&out);
                *ret_error =
                        error ? TAKE_PTR(error) : xasprintf("cannot read the repository: %s", strerror(-k));
                return k;
        }
        if (json_array_size(out.objects) == 0 && json_array_size(out.errors) == 0 && !spec->allow_empty)
                json_array_append_new(
                        out.errors,
                        json_sprintf("%s@%.12s:%s: no objects: refused, as a wiped directory would "
                                     "delete everything (set spec.allowEmpty to accept it)",
                                     spec->repo, sha, spec->path));
        *ret = out;
        return 0;
}

void sync_render_clear(SyncRender *r) {
        json_decref(r->objects);
        json_decref(r->errors);
        *r = (SyncRender){0};
}
