/* resource-explain.c: `rprctl explain server.spec.check`, in the manner of
 * kubectl explain. The text comes straight from the kind schemas: the
 * descriptions, types, defaults, enums and bounds that the validator uses
 * are the documentation, so the two cannot drift apart. */
#include <string.h>

#include "resource/resource-private.h"

#define WRAP_WIDTH 80

/* Appends text word-wrapped at WRAP_WIDTH, each line indented. */
static void wrap(Buf *b, const char *text, int indent) {
        const char *p = text;
        int col = 0;

        while (*p) {
                while (*p == ' ' || *p == '\n')
                        p++;
                if (!*p)
                        break;
                size_t n = strcspn(p, " \n");
                if (col > 0 && col + 1 + (int) n > WRAP_WIDTH) {
                        buf_puts(b, "\n");
                        col = 0;
                }
                if (col == 0) {
                        buf_printf(b, "%*s", indent, "");
                        col = indent;
                } else {
                        buf_puts(b, " ");
                        col++;
                }
                buf_append(b, p, n);
                col += (int) n;
                p += n;
        }
        if (col > 0)
                buf_puts(b, "\n");
}

static void append_json_list(Buf *b, const json_t *arr, const char *sep) {
        size_t i;
        json_t *e;

        json_array_foreach(arr, i, e) {
                if (i > 0)
                        buf_puts(b, sep);
                if (json_is_string(e))
                        buf_puts(b, json_string_value(e));
                else if (json_is_array(e))
                        append_json_list(b, e, ", ");
                else {
                        _cleanup_free_ char *s = json_dumps(e, JSON_ENCODE_ANY | JSON_COMPACT);
                        buf_puts(b, s ?: "?");
                }
        }
}

static const char *format_name(const char *format) {
        static const struct {
                const char *format, *name;
        } names[] = {
                {"duration", "duration (90s, 5m, 1h30m, 24h)"},
                {"date", "date (2027-06-30) or date-time"},
                {"date-time", "date-time (2026-11-22T10:00:00Z)"},
                {"dns-label", "DNS-1123 label (an object name)"},
                {"path", "absolute path"},
                {"cron", "cron (minute hour day-of-month month day-of-week)"},
        };
        for (size_t i = 0; i < ELEMENTSOF(names); i++)
                if (STREQ(format, names[i].format))
                        return names[i].name;
        return format;
}

/* "One of: a, b. Default: x. Range: 1..10." for one field. Caller frees. */
static char *field_facts(const json_t *schema) {
        const json_t *en = json_object_get(schema, "enum"), *def = json_object_get(schema, "default");
        const json_t *min = json_object_get(schema, "minimum"), *max = json_object_get(schema, "maximum");
        const char *format = json_string_value(json_object_get(schema, "format"));
        Buf b = BUF_INIT;

        if (json_is_array(en)) {
                buf_puts(&b, "One of: ");
                append_json_list(&b, en, ", ");
                buf_puts(&b, ". ");
        }
        if (def) {
                _cleanup_free_ char *s = json_is_string(def)
                                                 ? xstrdup(json_string_value(def))
                                                 : json_dumps(def, JSON_ENCODE_ANY | JSON_COMPACT);
                buf_printf(&b, "Default: %s. ", s ?: "?");
        }
        if (format)
                buf_printf(&b, "Format: %s. ", format_name(format));
        if (min || max) {
                _cleanup_free_ char *lo = min ? json_dumps(min, JSON_ENCODE_ANY) : NULL;
                _cleanup_free_ char *hi = max ? json_dumps(max, JSON_ENCODE_ANY) : NULL;
                if (lo && hi)
                        buf_printf(&b, "Range: %s..%s. ", json_is_string(min) ? json_string_value(min) : lo,
                                   json_is_string(max) ? json_string_value(max) : hi);
                else if (lo)
                        buf_printf(&b, "At least %s. ", json_is_string(min) ? json_string_value(min) : lo);
                else
                        buf_printf(&b, "At most %s. ", json_is_string(max) ? json_string_value(max) : hi);
        }
        if (json_is_array(json_object_get(schema, "x-rpr-oneOf"))) {
                buf_puts(&b, "Set exactly one of: ");
                append_json_list(&b, json_object_get(schema, "x-rpr-oneOf"), "; one of: ");
                buf_puts(&b, ". ");
        }
        if (json_is_array(json_object_get(schema, "x-rpr-exclusive"))) {
                buf_puts(&b, "Set at most one of: ");
                append_json_list(&b, json_object_get(schema, "x-rpr-exclusive"), "; at most one of: ");
                buf_puts(&b, ". ");
        }
        if (json_is_true(json_object_get(schema, "x-rpr-secret")))
                buf_puts(&b, "Secret: never returned by the API. ");
        return buf_steal(&b);
}

static void describe(Buf *b, const json_t *schema, int indent) {
        const char *desc = json_string_value(json_object_get(schema, "description"));
        _cleanup_free_ char *facts = field_facts(schema);

        wrap(b, desc && *desc ? desc : "<no description>", indent);
        if (*facts)
                wrap(b, facts, indent);
}

/* The schema whose fields are listed: lists and maps show their elements. */
static const json_t *element_schema(const json_t *schema) {
        for (int i = 0; i < 4; i++) {
                const json_t *items = json_object_get(schema, "items");
                const json_t *extra = json_object_get(schema, "additionalProperties");
                if (json_object_get(schema, "properties"))
                        return schema;
                if (json_is_object(items))
                        schema = items;
                else if (json_is_object(extra))
                        schema = extra;
                else
                        return schema;
        }
        return schema;
}

static bool is_required(const json_t *parent, const char *name) {
        size_t i;
        json_t *e;

        json_array_foreach(json_object_get(parent, "required"), i,
                           e) if (json_is_string(e) && STREQ(json_string_value(e), name)) return true;
        return false;
}

static void list_fields(Buf *b, const json_t *schema) {
        const json_t *el = element_schema(schema), *props = json_object_get(el, "properties");
        const char *name;
        json_t *sub;

        if (!json_is_object(props) || json_object_size(props) == 0)
                return;
        buf_puts(b, "\nFIELDS:\n");
        json_object_foreach((json_t *) props, name, sub) {
                _cleanup_free_ char *type = schema_type_label(sub);
                buf_printf(b, "   %s\t<%s>%s\n", name, type, is_required(el, name) ? " -required-" : "");
                describe(b, sub, 5);
                buf_puts(b, "\n");
        }
}

/* Steps from schema into the field called name; NULL if there is none.
 * Lists and maps are stepped through ("pipeline.spec.tasks.script"), and a
 * map also takes any key ("pipeline.spec.tasks.build.script"). */
static const json_t *child_schema(const json_t *schema, const char *name) {
        const json_t *el = element_schema(schema);
        const json_t *sub = json_object_get(json_object_get(el, "properties"), name);
        const json_t *extra = json_object_get(schema, "additionalProperties");

        if (sub)
                return sub;
        if (json_is_object(extra))
                return extra;
        return NULL;
}

int resource_explain(const char *path, char **ret_text, char **ret_error) {
        _cleanup_free_ char *copy = xstrdup(path ? path : "");
        char *dot = strchr(copy, '.');
        const char *rest = dot ? dot + 1 : NULL;
        Buf b = BUF_INIT;

        if (dot)
                *dot = 0;
        const Kind *k = kind_lookup(copy);
        if (!k) {
                *ret_error = xasprintf("unknown kind \"%s\"", copy);
                return -ENOENT;
        }

        const json_t *schema = k->explain;
        const char *last = NULL;
        if (rest) {
                _cleanup_free_ char *parts = xstrdup(rest);
                for (char *p = parts, *next; p; p = next) {
                        next = strchr(p, '.');
                        if (next)
                                *next++ = 0;
                        schema = *p ? child_schema(schema, p) : NULL;
                        if (!schema) {
                                *ret_error =
                                        xasprintf("field \"%s\" does not exist in %s", rest, kind_name(k));
                                return -ENOENT;
                        }
                }
                last = strrchr(rest, '.') ? strrchr(rest, '.') + 1 : rest;
        }

        buf_printf(&b, "KIND:     %s\nVERSION:  %s\n\n", kind_name(k), RPR_API_VERSION);
        if (last) {
                _cleanup_free_ char *type = schema_type_label(schema);
                buf_printf(&b, "FIELD:    %s <%s>\n\n", last, type);
        }
        buf_puts(&b, "DESCRIPTION:\n");
        describe(&b, schema, 5);
        list_fields(&b, schema);
        *ret_text = buf_steal(&b);
        return 0;
}
