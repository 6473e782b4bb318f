/* resource-kinds.c: the table of kinds, read from the schemas embedded at
 * build time (manifests/kinds/<kind>.yaml, as rpr_embedded_kinds).
 *
 * Each document names the kind, its plural and short name, whether users may
 * apply it, a description, the printer columns and the spec (and, for
 * explain only, status) schema. Everything is checked once at start, so a
 * broken schema is a start-up failure rather than a surprise at apply time. */
#include <string.h>
#include <strings.h>

#include "resource/resource-private.h"
#include "yaml/yaml.h"

extern const char *const rpr_embedded_kinds[];

/* kind_all() order; kinds not named here follow in file order. */
static const char *const kind_order[] = {"Token",    "Repo",   "Server", "Binding", "Command",
                                         "Pipeline", "Runner", "Sync",   "Run",     "Event"};

static const char *const kind_doc_keys[] = {"kind",        "plural",  "short", "userWritable",
                                            "description", "columns", "spec",  "status"};

static bool doc_key_known(const char *key) {
        for (size_t i = 0; i < ELEMENTSOF(kind_doc_keys); i++)
                if (STREQ(key, kind_doc_keys[i]))
                        return true;
        return false;
}

static Kind **kinds;
static size_t n_kinds;

static Kind *kind_free(Kind *k) {
        if (!k)
                return NULL;
        free(k->name);
        free(k->plural);
        free(k->short_name);
        free(k->singular);
        for (char **f = k->indexed; f && *f; f++)
                free(*f);
        free(k->indexed);
        json_decref(k->doc);
        json_decref(k->columns);
        json_decref(k->explain);
        free(k);
        return NULL;
}

static void kind_freep(Kind **k) {
        kind_free(*k);
}

/* The names of spec's properties marked x-rpr-index, NULL-terminated. */
static char **indexed_fields(const json_t *spec) {
        const json_t *props = json_object_get(spec, "properties"), *v;
        char **out = xcalloc(json_object_size(props) + 1, sizeof *out);
        const char *name;
        size_t n = 0;

        json_object_foreach((json_t *) props, name, v)
                if (json_is_true(json_object_get(v, "x-rpr-index")))
                        out[n++] = xstrdup(name);
        return out;
}

static char *lowercase(const char *s) {
        char *r = xstrdup(s);
        for (char *p = r; *p; p++)
                if (*p >= 'A' && *p <= 'Z')
                        *p = (char) (*p - 'A' + 'a');
        return r;
}

/* [{name, path, wide?}] → [{name, path, wide}], checked. */
static int columns_normalize(const json_t *in, json_t **ret) {
        _cleanup_json_ json_t *out = json_array();
        size_t i;
        json_t *c;

        if (in && !json_is_array(in))
                return -EINVAL;
        json_array_foreach(in, i, c) {
                const char *name = json_string_value(json_object_get(c, "name"));
                const char *path = json_string_value(json_object_get(c, "path"));
                const json_t *wide = json_object_get(c, "wide");
                if (!name || !path || (wide && !json_is_boolean(wide)))
                        return -EINVAL;
                json_array_append_new(out, json_pack("{s:s, s:s, s:b}", "name", name, "path", path, "wide",
                                                     json_is_true(wide)));
        }
        *ret = TAKE_PTR(out);
        return 0;
}

/* The whole object as one schema, so explain walks a single tree. */
static json_t *explain_schema(const Kind *k) {
        const char *desc = json_string_value(json_object_get(k->doc, "description"));
        json_t *status = json_object_get(k->doc, "status");

        json_t *props = json_pack(
                "{s:{s:s, s:s}, s:{s:s, s:s}, s:O, s:O}", "apiVersion", "type", "string", "description",
                "The version of the object schema; always " RPR_API_VERSION ".", "kind", "type", "string",
                "description",
                "The kind of object, e.g. Server. Also accepted by rprctl as plural or short name.",
                "metadata", meta_schema(), "spec", k->spec);
        if (status)
                json_object_set(props, "status", status);
        else
                json_object_set_new(props, "status",
                                    json_pack("{s:s, s:s}", "type", "object", "description",
                                              "What rprd observed; written by the controller only."));
        return json_pack("{s:s, s:s, s:o}", "type", "object", "description", desc ? desc : "", "properties",
                         props);
}

static int kind_from_doc(json_t *doc, Kind **ret) {
        _cleanup_(kind_freep) Kind *k = xcalloc(1, sizeof(Kind));
        const char *name = json_string_value(json_object_get(doc, "kind"));
        const char *plural = json_string_value(json_object_get(doc, "plural"));
        const json_t *shrt = json_object_get(doc, "short"), *uw = json_object_get(doc, "userWritable");
        const char *key;
        json_t *v;
        int r;

        k->doc = json_incref(doc);
        json_object_foreach(doc, key, v) if (!doc_key_known(key)) return log_internal(
                LOG_LEVEL_DEBUG, EINVAL, "kind schema: unknown key %s", key);
        if (!name || !plural || !json_is_boolean(uw) || (shrt && !json_is_string(shrt)))
                return log_internal(LOG_LEVEL_DEBUG, EINVAL,
                                    "kind schema %s: kind, plural, userWritable needed", name ?: "?");

        k->name = xstrdup(name);
        k->plural = xstrdup(plural);
        k->short_name = shrt ? xstrdup(json_string_value(shrt)) : NULL;
        k->singular = lowercase(name);
        k->user_writable = json_is_true(uw);
        k->spec = json_object_get(doc, "spec");
        /* Token's value and valueHash are redacted whatever its schema says. */
        k->has_secrets = schema_has_secret(k->spec) || STREQ(name, "Token");
        k->indexed = indexed_fields(k->spec);

        r = columns_normalize(json_object_get(doc, "columns"), &k->columns);
        if (r < 0)
                return log_internal(LOG_LEVEL_DEBUG, r, "kind schema %s: bad columns", name);
        r = schema_check(k->spec, "spec");
        if (r < 0)
                return log_internal(LOG_LEVEL_DEBUG, r, "kind schema %s: bad spec schema", name);
        if (json_object_get(doc, "status")) {
                r = schema_check(json_object_get(doc, "status"), "status");
                if (r < 0)
                        return log_internal(LOG_LEVEL_DEBUG, r, "kind schema %s: bad status schema", name);
        }
        k->explain = explain_schema(k);
        *ret = TAKE_PTR(k);
        return 0;
}

static int kinds_load_one(const char *text) {
        YamlDoc **docs = NULL;
        Diags d = DIAGS_INIT;
        size_t n = 0;
        Kind *k = NULL;
        int r;

        r = yaml_parse(text, strlen(text), "kinds", &docs, &n, &d);
        if (r < 0) {
                log_debug("embedded kind schema does not parse: %s", d.n ? d.items[0].message : "?");
                diags_free(&d);
                return r;
        }
        r = n == 1 ? kind_from_doc(yamldoc_root(docs[0]), &k) : -EINVAL;
        yamldocs_free(docs, n);
        if (r < 0)
                return r;
        if (kind_lookup(k->name) || kind_lookup(k->plural) ||
            (k->short_name && kind_lookup(k->short_name))) {
                log_debug("kind schema %s: name clashes with another kind", k->name);
                kind_free(k);
                return -EINVAL;
        }
        kinds = xrealloc(kinds, (n_kinds + 1) * sizeof(Kind *));
        kinds[n_kinds++] = k;
        return 0;
}

static int kind_rank(const Kind *k) {
        for (size_t i = 0; i < ELEMENTSOF(kind_order); i++)
                if (STREQ(k->name, kind_order[i]))
                        return (int) i;
        return (int) ELEMENTSOF(kind_order);
}

static int kind_compare(const void *a, const void *b) {
        return kind_rank(*(Kind *const *) a) - kind_rank(*(Kind *const *) b);
}

int resource_init(void) {
        int r;

        if (n_kinds > 0)
                return 0;
        r = meta_init();
        if (r < 0)
                return r;
        for (size_t i = 0; rpr_embedded_kinds[i]; i++) {
                r = kinds_load_one(rpr_embedded_kinds[i]);
                if (r < 0) {
                        resource_shutdown();
                        return r;
                }
        }
        /* Stable: equal ranks keep file order (qsort is not stable, ranks are distinct for known kinds). */
        qsort(kinds, n_kinds, sizeof(Kind *), kind_compare);
        return 0;
}

void resource_shutdown(void) {
        for (size_t i = 0; i < n_kinds; i++)
                kind_free(kinds[i]);
        free(kinds);
        kinds = NULL;
        n_kinds = 0;
        meta_shutdown();
        schema_cache_free();
}

const Kind *kind_lookup(const char *name) {
        if (!name)
                return NULL;
        for (size_t i = 0; i < n_kinds; i++) {
                const Kind *k = kinds[i];
                if (strcasecmp(name, k->name) == 0 || strcasecmp(name, k->plural) == 0 ||
                    (k->short_name && strcasecmp(name, k->short_name) == 0))
                        return k;
        }
        return NULL;
}

const Kind *const *kind_all(size_t *ret_n) {
        *ret_n = n_kinds;
        return (const Kind *const *) kinds;
}

const char *kind_name(const Kind *k) {
        return k->name;
}

const char *kind_plural(const Kind *k) {
        return k->plural;
}

const char *kind_short(const Kind *k) {
        return k->short_name;
}

const char *const *kind_indexed_fields(const Kind *k) {
        return (const char *const *) k->indexed;
}

bool kind_has_secrets(const Kind *k) {
        return k->has_secrets;
}

bool kind_user_writable(const Kind *k) {
        return k->user_writable;
}

const json_t *kind_columns(const Kind *k) {
        return k->columns;
}
