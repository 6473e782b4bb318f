/* resource-meta.c: the envelope every object shares — apiVersion, kind,
 * metadata — and resource_prepare(), which checks it, then defaults and
 * validates the spec against the kind's schema and runs the kind's own
 * checks. Also names, labels, display names and redaction.
 *
 * The idea: a person gets every problem of a manifest in one go, each naming
 * the object and the field, so prepare never stops at the first error. */
#include <string.h>
#include <strings.h>

#include "resource/resource-private.h"

static const char meta_schema_text[] =
        "{\"type\":\"object\",\"required\":[\"name\"],"
        "\"description\":\"Standard object metadata: name, namespace, labels, annotations; the rest is set "
        "by "
        "rprd.\",\"properties\":{"
        "\"name\":{\"type\":\"string\",\"format\":\"dns-label\",\"description\":\"Unique per kind and "
        "namespace. A DNS-1123 label: lower-case letters, digits and '-', at most 63 characters.\"},"
        "\"namespace\":{\"type\":\"string\",\"format\":\"dns-label\",\"default\":\"default\","
        "\"description\":\"The namespace the object lives in.\"},"
        "\"labels\":{\"type\":\"object\",\"additionalProperties\":{\"type\":\"string\"},"
        "\"description\":\"Key/value pairs that selectors (-l, servers.matchLabels) match.\"},"
        "\"annotations\":{\"type\":\"object\",\"additionalProperties\":{\"type\":\"string\"},"
        "\"description\":\"Key/value pairs for people and tools; not used for selection.\"},"
        "\"finalizers\":{\"type\":\"array\",\"items\":{\"type\":\"string\"},"
        "\"description\":\"Work that must finish before the object goes away; set by controllers.\"},"
        "\"uid\":{\"type\":\"string\",\"description\":\"Set by rprd: unique id of this incarnation.\"},"
        "\"resourceVersion\":{\"type\":\"string\",\"description\":\"Set by rprd: the store revision of the "
        "last write; a precondition for updates.\"},"
        "\"generation\":{\"type\":\"integer\",\"description\":\"Set by rprd: bumped on every spec "
        "change.\"},"
        "\"creationTimestamp\":{\"type\":\"string\",\"format\":\"date-time\",\"description\":\"Set by "
        "rprd.\"},"
        "\"deletionTimestamp\":{\"type\":\"string\",\"format\":\"date-time\",\"description\":\"Set by rprd "
        "when a delete waits for finalizers.\"},"
        "\"managedBy\":{\"type\":\"string\",\"description\":\"Set by rprd: who applied it (e.g. a GitOps "
        "Repo).\"}}}";

/* Written by rprd, dropped from what a user sends (finalizers are kept). */
static const char *const meta_system_fields[] = {
        "uid", "resourceVersion", "generation", "creationTimestamp", "deletionTimestamp", "managedBy"};

static const char *const top_level_fields[] = {"apiVersion", "kind", "metadata", "spec", "status"};

static json_t *meta;

int meta_init(void) {
        json_error_t e;

        if (meta)
                return 0;
        meta = json_loads(meta_schema_text, 0, &e);
        if (!meta)
                return log_internal(LOG_LEVEL_DEBUG, EINVAL, "metadata schema: %s", e.text);
        return schema_check(meta, "metadata");
}

void meta_shutdown(void) {
        json_decref(meta);
        meta = NULL;
}

const json_t *meta_schema(void) {
        return meta;
}

/* ---- names and labels ------------------------------------------------------ */

static bool is_alnum(char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static bool dns_label_valid(const char *s, size_t len) {
        if (len == 0 || len > 63)
                return false;
        for (size_t i = 0; i < len; i++) {
                char c = s[i];
                bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                          (c == '-' && i > 0 && i < len - 1);
                if (!ok)
                        return false;
        }
        return true;
}

bool resource_name_valid(const char *name) {
        return name && dns_label_valid(name, strlen(name));
}

/* The name part of a label key, and label values: [A-Za-z0-9._-], at most
 * 63, starting and ending with a letter or digit. */
static bool label_name_valid(const char *s, size_t len) {
        if (len == 0 || len > 63 || !is_alnum(s[0]) || !is_alnum(s[len - 1]))
                return false;
        for (size_t i = 0; i < len; i++)
                if (!is_alnum(s[i]) && s[i] != '-' && s[i] != '_' && s[i] != '.')
                        return false;
        return true;
}

static bool dns_subdomain_valid(const char *s, size_t len) {
        if (len == 0 || len > 253)
                return false;
        while (len > 0) {
                const char *dot = memchr(s, '.', len);
                size_t part = dot ? (size_t) (dot - s) : len;
                if (!dns_label_valid(s, part))
                        return false;
                if (!dot)
                        break;
                len -= part + 1;
                s = dot + 1;
                if (len == 0)
                        return false;
        }
        return true;
}

static bool label_key_valid(const char *key) {
        const char *slash = strchr(key, '/');

        if (!slash)
                return label_name_valid(key, strlen(key));
        return dns_subdomain_valid(key, (size_t) (slash - key)) &&
               label_name_valid(slash + 1, strlen(slash + 1));
}

static void map_check(const json_t *map, const char *path, bool check_values, Check *c) {
        const char *key;
        json_t *v;

        json_object_foreach((json_t *) map, key, v) {
                _cleanup_free_ char *p = field_path_key(path, key);
                if (!label_key_valid(key))
                        diags_add(
                                c->diags, c->index, c->object, p,
                                "invalid key \"%s\": must be a name of at most 63 letters, digits, '-', '_' "
                                "or "
                                "'.', starting and ending with a letter or digit, optionally prefixed by a "
                                "DNS subdomain and '/'",
                                key);
                const char *s = json_string_value(v);
                if (check_values && s && *s && !label_name_valid(s, strlen(s))) {
                        _cleanup_free_ char *got = value_got(v);
                        diags_add(c->diags, c->index, c->object, p,
                                  "must be at most 63 letters, digits, '-', '_' or '.', starting and ending "
                                  "with a letter or digit %s",
                                  got);
                }
        }
}

/* ---- prepare --------------------------------------------------------------- */

static void meta_prepare(json_t *obj, Check *c) {
        json_t *m = json_object_get(obj, "metadata");

        if (!m) {
                m = json_object();
                json_object_set_new(obj, "metadata", m);
        }
        if (!json_is_object(m)) {
                _cleanup_free_ char *got = value_got(m);
                diags_add(c->diags, c->index, c->object, "metadata", "must be an object %s", got);
                return;
        }

        for (size_t i = 0; i < ELEMENTSOF(meta_system_fields); i++)
                json_object_del(m, meta_system_fields[i]);

        schema_default(meta, m);
        schema_validate(meta, m, "metadata", c);
        map_check(json_object_get(m, "labels"), "metadata.labels", true, c);
        map_check(json_object_get(m, "annotations"), "metadata.annotations", false, c);
}

static void api_version_prepare(const json_t *obj, Check *c) {
        const json_t *v = json_object_get(obj, "apiVersion");

        if (!v)
                diags_add(c->diags, c->index, c->object, "apiVersion", "is required");
        else if (!json_is_string(v)) {
                _cleanup_free_ char *got = value_got(v);
                diags_add(c->diags, c->index, c->object, "apiVersion", "must be a string %s", got);
        } else if (!STREQ(json_string_value(v), RPR_API_VERSION))
                diags_add(c->diags, c->index, c->object, "apiVersion",
                          "unknown apiVersion \"%s\" (expected " RPR_API_VERSION ")", json_string_value(v));
}

static const Kind *kind_prepare(const json_t *obj, Check *c) {
        const json_t *v = json_object_get(obj, "kind");
        const Kind *k;

        if (!v) {
                diags_add(c->diags, c->index, c->object, "kind", "is required");
                return NULL;
        }
        if (!json_is_string(v)) {
                _cleanup_free_ char *got = value_got(v);
                diags_add(c->diags, c->index, c->object, "kind", "must be a string %s", got);
                return NULL;
        }

        k = kind_lookup(json_string_value(v));
        if (k && STREQ(kind_name(k), json_string_value(v)))
                return k;

        size_t n;
        const Kind *const *all = kind_all(&n);
        Buf b = BUF_INIT;
        for (size_t i = 0; i < n; i++)
                buf_printf(&b, "%s%s", i ? ", " : "", kind_name(all[i]));
        diags_add(c->diags, c->index, c->object, "kind", "unknown kind \"%s\" (known kinds: %s)",
                  json_string_value(v), b.data ?: "none");
        buf_free(&b);
        return NULL;
}

static void spec_prepare(json_t *obj, const Kind *k, Check *c) {
        json_t *spec = json_object_get(obj, "spec");

        if (!spec) {
                spec = json_object();
                json_object_set_new(obj, "spec", spec);
        }
        if (!json_is_object(spec)) {
                _cleanup_free_ char *got = value_got(spec);
                diags_add(c->diags, c->index, c->object, "spec", "must be an object %s", got);
                return;
        }
        schema_default(k->spec, spec);
        schema_validate(k->spec, spec, "spec", c);
        kind_checks(k, spec, c);
}

int resource_prepare(json_t *obj, int index, Diags *d) {
        _cleanup_free_ char *name = resource_display_name(obj);
        Check c = {d, index, name};
        size_t before = d->n;
        const char *key;
        json_t *v;

        if (!json_is_object(obj))
                return diags_add(d, index, NULL, NULL,
                                 "an object must be a mapping with apiVersion, kind, "
                                 "metadata and spec");

        json_object_foreach(obj, key, v) {
                bool known = false;
                for (size_t i = 0; i < ELEMENTSOF(top_level_fields); i++)
                        known = known || STREQ(key, top_level_fields[i]);
                if (!known) {
                        _cleanup_free_ char *p = field_path_key(NULL, key);
                        diags_add(d, index, name, p, "unknown field \"%s\"", key);
                }
        }
        json_object_del(obj, "status");

        api_version_prepare(obj, &c);
        const Kind *k = kind_prepare(obj, &c);
        meta_prepare(obj, &c);
        if (k)
                spec_prepare(obj, k, &c);

        return d->n > before ? -EINVAL : 0;
}

int resource_status_validate(const Kind *k, const char *name, const json_t *status, Diags *d) {
        _cleanup_free_ char *object = xasprintf("%s/%s", k->name, name ? name : "<unnamed>");
        const json_t *schema = json_object_get(k->doc, "status");
        Check c = {d, -1, object};
        size_t before = d->n;

        if (!schema)
                return diags_add(d, -1, object, "status", "%s has no status", k->name);
        schema_validate(schema, status, "status", &c);
        return d->n > before ? -EINVAL : 0;
}

char *resource_display_name(const json_t *obj) {
        const char *kind = json_string_value(json_object_get(obj, "kind"));
        const char *name = json_string_value(json_object_get(json_object_get(obj, "metadata"), "name"));

        return xasprintf("%s/%s", kind && *kind ? kind : "<unknown>", name && *name ? name : "<unnamed>");
}

void resource_redact(json_t *obj) {
        const char *kind = json_string_value(json_object_get(obj, "kind"));
        json_t *spec = json_object_get(obj, "spec");
        const Kind *k = kind_lookup(kind);

        if (!json_is_object(spec))
                return;
        if (k)
                schema_redact(k->spec, spec);
        /* Whatever the schemas say, these never leave rprd. */
        if (kind && strcasecmp(kind, "Token") == 0) {
                json_object_del(spec, "value");
                json_object_del(spec, "valueHash");
        }
}
