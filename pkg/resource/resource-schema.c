/* resource-schema.c: the one generic defaulter and strict validator.
 *
 * A schema is plain JSON read from manifests/kinds/<kind>.yaml (OpenAPI-style:
 * type, properties, required, enum, default, minimum/maximum,
 * minLength/maxLength, minItems/maxItems, minProperties, pattern, format,
 * additionalProperties, items) plus a few x-rpr- keywords: x-rpr-secret,
 * x-rpr-index (a spec field the store indexes, for store_list_where),
 * x-rpr-oneOf / x-rpr-exclusive (groups of properties of which exactly one /
 * at most one may be set), x-rpr-keyPattern (names of map keys) and
 * x-rpr-patternHint (what a pattern means, for messages). The validator never
 * stops at the first problem: every one found is reported with its field
 * path. Objects are strict: a key the schema does not name is an error. */
#include <regex.h>
#include <stdio.h>
#include <string.h>

#include "resource/resource-private.h"

static const char *const schema_keywords[] = {
        "type",
        "properties",
        "required",
        "enum",
        "default",
        "minimum",
        "maximum",
        "minLength",
        "maxLength",
        "minItems",
        "maxItems",
        "minProperties",
        "pattern",
        "format",
        "description",
        "additionalProperties",
        "items",
        "x-rpr-secret",
        "x-rpr-index",
        "x-rpr-oneOf",
        "x-rpr-exclusive",
        "x-rpr-keyPattern",
        "x-rpr-patternHint",
};

static const char *const schema_types[] = {"string", "integer", "number", "boolean", "object", "array"};
static const char *const schema_formats[] = {"duration", "date", "date-time", "dns-label", "path", "cron"};

/* ---- compiled patterns ------------------------------------------------- */

/* Filled by schema_check() at start (one thread), read-only afterwards. */
typedef struct Pattern {
        char *text;
        regex_t re;
} Pattern;

static Pattern *patterns;
static size_t n_patterns;

static int pattern_compile(const char *text, regex_t *ret) {
        _cleanup_free_ char *anchored = xasprintf("^(%s)$", text);
        return regcomp(ret, anchored, REG_EXTENDED | REG_NOSUB) == 0 ? 0 : -EINVAL;
}

static const Pattern *pattern_find(const char *text) {
        for (size_t i = 0; i < n_patterns; i++)
                if (STREQ(patterns[i].text, text))
                        return &patterns[i];
        return NULL;
}

static int pattern_add(const char *text) {
        regex_t re;

        if (pattern_find(text))
                return 0;
        if (pattern_compile(text, &re) < 0)
                return -EINVAL;
        patterns = xrealloc(patterns, (n_patterns + 1) * sizeof(Pattern));
        patterns[n_patterns++] = (Pattern){xstrdup(text), re};
        return 0;
}

static bool pattern_matches(const char *text, const char *s) {
        const Pattern *p = pattern_find(text);
        regex_t re;

        if (p)
                return regexec(&p->re, s, 0, NULL, 0) == 0;
        /* Not seen by schema_check (should not happen): compile once here. */
        if (pattern_compile(text, &re) < 0)
                return false;
        bool m = regexec(&re, s, 0, NULL, 0) == 0;
        regfree(&re);
        return m;
}

void schema_cache_free(void) {
        for (size_t i = 0; i < n_patterns; i++) {
                free(patterns[i].text);
                regfree(&patterns[i].re);
        }
        free(patterns);
        patterns = NULL;
        n_patterns = 0;
}

/* ---- small accessors --------------------------------------------------- */

static const char *schema_str(const json_t *schema, const char *key) {
        return json_string_value(json_object_get(schema, key));
}

static bool schema_secret(const json_t *schema) {
        return json_is_true(json_object_get(schema, "x-rpr-secret"));
}

static bool schema_has_type(const json_t *schema, const char *type) {
        const json_t *t = json_object_get(schema, "type");
        size_t i;
        json_t *e;

        if (json_is_string(t))
                return STREQ(json_string_value(t), type);
        json_array_foreach(t, i, e) if (json_is_string(e) && STREQ(json_string_value(e), type)) return true;
        return false;
}

static bool value_has_type(const json_t *v, const char *type) {
        if (STREQ(type, "string"))
                return json_is_string(v);
        if (STREQ(type, "integer"))
                return json_is_integer(v);
        if (STREQ(type, "number"))
                return json_is_number(v);
        if (STREQ(type, "boolean"))
                return json_is_boolean(v);
        if (STREQ(type, "object"))
                return json_is_object(v);
        if (STREQ(type, "array"))
                return json_is_array(v);
        return false;
}

static bool value_matches_type(const json_t *schema, const json_t *v) {
        const json_t *t = json_object_get(schema, "type");
        size_t i;
        json_t *e;

        if (!t)
                return true;
        if (json_is_string(t))
                return value_has_type(v, json_string_value(t));
        json_array_foreach(t, i, e) if (value_has_type(v, json_string_value(e))) return true;
        return false;
}

/* Characters, not bytes, so that "maxLength: 63" means what people think. */
static size_t utf8_length(const char *s) {
        size_t n = 0;
        for (; *s; s++)
                if (((unsigned char) *s & 0xC0) != 0x80)
                        n++;
        return n;
}

/* ---- messages ------------------------------------------------------------ */

void check_report(Check *c, const char *field, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        (void) diags_addv(c->diags, c->index, c->object, field, fmt, ap);
        va_end(ap);
}

/* " (got X)", or nothing for a secret: a secret is never echoed. */
static char *got_suffix(const json_t *schema, const json_t *v) {
        if (schema_secret(schema))
                return xstrdup("");
        _cleanup_free_ char *g = value_got(v);
        return xasprintf(" %s", g);
}

/* A bound as written in the schema, or NULL if it is no number. */
static char *number_text(const json_t *v) {
        if (json_is_integer(v))
                return xasprintf("%" JSON_INTEGER_FORMAT, json_integer_value(v));
        if (json_is_real(v))
                return xasprintf("%g", json_real_value(v));
        return NULL;
}

/* "an integer 1..65535", "a string", "a string or a list". */
static char *type_expectation(const json_t *schema) {
        const json_t *t = json_object_get(schema, "type");
        const json_t *min = json_object_get(schema, "minimum"), *max = json_object_get(schema, "maximum");
        Buf b = BUF_INIT;
        size_t n = json_is_array(t) ? json_array_size(t) : 1;

        for (size_t i = 0; i < n; i++) {
                const char *name =
                        json_is_array(t) ? json_string_value(json_array_get(t, i)) : json_string_value(t);
                if (i > 0)
                        buf_puts(&b, " or ");
                if (!name)
                        name = "value";
                if (STREQ(name, "integer") || STREQ(name, "number")) {
                        buf_puts(&b, STREQ(name, "integer") ? "an integer" : "a number");
                        _cleanup_free_ char *lo = number_text(min), *hi = number_text(max);
                        if (lo && hi)
                                buf_printf(&b, " %s..%s", lo, hi);
                        else if (lo)
                                buf_printf(&b, " >= %s", lo);
                        else if (hi)
                                buf_printf(&b, " <= %s", hi);
                } else if (STREQ(name, "object"))
                        buf_puts(&b, json_is_object(json_object_get(schema, "additionalProperties"))
                                             ? "a map"
                                             : "an object");
                else if (STREQ(name, "array"))
                        buf_puts(&b, "a list");
                else if (STREQ(name, "boolean"))
                        buf_puts(&b, "a boolean (true or false)");
                else
                        buf_printf(&b, "a %s", name);
        }
        return buf_steal(&b);
}

static char *enum_list(const json_t *en) {
        Buf b = BUF_INIT;
        size_t i;
        json_t *e;

        json_array_foreach(en, i, e) {
                if (i > 0)
                        buf_puts(&b, ", ");
                if (json_is_string(e))
                        buf_puts(&b, json_string_value(e));
                else {
                        _cleanup_free_ char *s = json_dumps(e, JSON_ENCODE_ANY);
                        buf_puts(&b, s ? s : "?");
                }
        }
        return buf_steal(&b);
}

/* What a string of this format looks like, for messages. */
static const char *format_expectation(const char *format) {
        if (STREQ(format, "duration"))
                return "a duration like 90s, 5m, 1h30m";
        if (STREQ(format, "date"))
                return "a date like 2027-06-30";
        if (STREQ(format, "date-time"))
                return "a date-time like 2026-11-22T10:00:00Z";
        if (STREQ(format, "dns-label"))
                return "a DNS-1123 label: lower-case letters, digits and '-', starting and ending with a "
                       "letter or digit, at most 63 characters";
        if (STREQ(format, "path"))
                return "an absolute path";
        if (STREQ(format, "cron"))
                return "a cron expression like \"0 3 * * *\" (minute hour day-of-month month day-of-week)";
        return "valid";
}

static void report_type(const json_t *schema, const json_t *v, const char *path, Check *c) {
        _cleanup_free_ char *got = got_suffix(schema, v);
        const json_t *en = json_object_get(schema, "enum");
        const char *format = schema_str(schema, "format");

        /* A string field with an enum or a format says what it wants. */
        if (json_is_array(en) && schema_has_type(schema, "string")) {
                _cleanup_free_ char *list = enum_list(en);
                return check_report(c, path, "must be one of: %s%s", list, got);
        }
        if (format && json_is_string(json_object_get(schema, "type")))
                return check_report(c, path, "must be %s%s", format_expectation(format), got);

        _cleanup_free_ char *want = type_expectation(schema);
        check_report(c, path, "must be %s%s", want, got);
}

/* ---- validation ------------------------------------------------------------ */

static size_t validate_format(const json_t *schema, const char *s, const json_t *v, const char *path,
                              Check *c) {
        const char *format = schema_str(schema, "format");
        _cleanup_free_ char *got = NULL, *why = NULL;
        uint64_t u;
        bool ok = true;

        if (!format)
                return 0;
        if (STREQ(format, "duration"))
                ok = duration_parse(s, &u) >= 0;
        else if (STREQ(format, "date") || STREQ(format, "date-time"))
                ok = time_parse_rfc3339(s, &u) >= 0;
        else if (STREQ(format, "dns-label"))
                ok = resource_name_valid(s);
        else if (STREQ(format, "path"))
                ok = s[0] == '/';
        else if (STREQ(format, "cron"))
                ok = cron_valid(s, &why);

        got = got_suffix(schema, v);
        if (!ok) {
                if (why)
                        check_report(c, path, "must be %s: %s%s", format_expectation(format), why, got);
                else
                        check_report(c, path, "must be %s%s", format_expectation(format), got);
                return 1;
        }

        /* Durations may carry bounds written as durations ("minimum: 1m"). */
        if (STREQ(format, "duration")) {
                const char *min = schema_str(schema, "minimum"), *max = schema_str(schema, "maximum");
                uint64_t bound;
                if (min && duration_parse(min, &bound) >= 0 && u < bound) {
                        check_report(c, path, "must be at least %s%s", min, got);
                        return 1;
                }
                if (max && duration_parse(max, &bound) >= 0 && u > bound) {
                        check_report(c, path, "must be at most %s%s", max, got);
                        return 1;
                }
        }
        return 0;
}

static size_t validate_string(const json_t *schema, const json_t *v, const char *path, Check *c) {
        const char *s = json_string_value(v), *pattern = schema_str(schema, "pattern");
        const json_t *min = json_object_get(schema, "minLength"),
                     *max = json_object_get(schema, "maxLength");
        _cleanup_free_ char *got = got_suffix(schema, v);
        size_t len = utf8_length(s);

        if (json_is_integer(min) && len < (size_t) json_integer_value(min)) {
                if (json_integer_value(min) == 1)
                        check_report(c, path, "must not be empty");
                else
                        check_report(c, path, "must be at least %" JSON_INTEGER_FORMAT " characters long%s",
                               json_integer_value(min), got);
                return 1;
        }
        if (json_is_integer(max) && len > (size_t) json_integer_value(max)) {
                check_report(c, path, "must be at most %" JSON_INTEGER_FORMAT " characters long (got %zu)",
                       json_integer_value(max), len);
                return 1;
        }
        if (pattern && !pattern_matches(pattern, s)) {
                const char *hint = schema_str(schema, "x-rpr-patternHint");
                if (hint)
                        check_report(c, path, "must be %s%s", hint, got);
                else
                        check_report(c, path, "must match %s%s", pattern, got);
                return 1;
        }
        return validate_format(schema, s, v, path, c);
}

static size_t validate_number(const json_t *schema, const json_t *v, const char *path, Check *c) {
        const json_t *min = json_object_get(schema, "minimum"), *max = json_object_get(schema, "maximum");
        double x = json_number_value(v);

        if ((json_is_number(min) && x < json_number_value(min)) ||
            (json_is_number(max) && x > json_number_value(max))) {
                report_type(schema, v, path, c);
                return 1;
        }
        return 0;
}

static const char *group_member_names(const json_t *group, Buf *b) {
        size_t i;
        json_t *e;

        json_array_foreach(group, i, e) {
                if (i > 0)
                        buf_puts(b, ", ");
                buf_puts(b, json_string_value(e) ?: "?");
        }
        return b->data ?: "";
}

/* x-rpr-oneOf (exactly one set) and x-rpr-exclusive (at most one set). */
static size_t validate_groups(const json_t *schema, const json_t *obj, const char *path, bool exactly_one,
                              Check *c) {
        const json_t *groups = json_object_get(schema, exactly_one ? "x-rpr-oneOf" : "x-rpr-exclusive");
        size_t gi, n_errors = 0;
        json_t *group;

        json_array_foreach(groups, gi, group) {
                const char *first = NULL;
                size_t i;
                json_t *e;

                json_array_foreach(group, i, e) {
                        const char *key = json_string_value(e);
                        if (!key || !json_object_get(obj, key))
                                continue;
                        if (!first) {
                                first = key;
                                continue;
                        }
                        _cleanup_free_ char *p = field_path_key(path, key);
                        check_report(c, p, "cannot be set together with %s", first);
                        n_errors++;
                }
                if (!first && exactly_one) {
                        Buf b = BUF_INIT;
                        check_report(c, path, "needs exactly one of: %s", group_member_names(group, &b));
                        buf_free(&b);
                        n_errors++;
                }
        }
        return n_errors;
}

static size_t validate_object(const json_t *schema, const json_t *obj, const char *path, Check *c) {
        const json_t *props = json_object_get(schema, "properties"),
                     *extra = json_object_get(schema, "additionalProperties");
        const json_t *required = json_object_get(schema, "required"),
                     *minp = json_object_get(schema, "minProperties");
        const char *key_pattern = schema_str(schema, "x-rpr-keyPattern");
        size_t n_errors = 0, i;
        const char *key;
        json_t *v, *e;

        json_object_foreach((json_t *) obj, key, v) {
                _cleanup_free_ char *p = field_path_key(path, key);
                const json_t *sub = json_object_get(props, key);

                if (sub) {
                        n_errors += schema_validate(sub, v, p, c);
                        continue;
                }
                if (!json_is_object(extra)) {
                        check_report(c, p, "unknown field \"%s\"", key);
                        n_errors++;
                        continue;
                }
                if (key_pattern && !pattern_matches(key_pattern, key)) {
                        check_report(c, p, "invalid name \"%s\" (must match %s)", key, key_pattern);
                        n_errors++;
                }
                n_errors += schema_validate(extra, v, p, c);
        }

        json_array_foreach(required, i, e) {
                const char *name = json_string_value(e);
                if (!name || json_object_get(obj, name))
                        continue;
                _cleanup_free_ char *p = field_path_key(path, name);
                check_report(c, p, "is required");
                n_errors++;
        }

        if (json_is_integer(minp) && json_object_size(obj) < (size_t) json_integer_value(minp)) {
                check_report(c, path, "must have at least %" JSON_INTEGER_FORMAT " %s", json_integer_value(minp),
                       json_integer_value(minp) == 1 ? "entry" : "entries");
                n_errors++;
        }

        n_errors += validate_groups(schema, obj, path, true, c);
        n_errors += validate_groups(schema, obj, path, false, c);
        return n_errors;
}

static size_t validate_array(const json_t *schema, const json_t *arr, const char *path, Check *c) {
        const json_t *items = json_object_get(schema, "items");
        const json_t *min = json_object_get(schema, "minItems"), *max = json_object_get(schema, "maxItems");
        size_t n_errors = 0, i;
        json_t *v;

        if (json_is_integer(min) && json_array_size(arr) < (size_t) json_integer_value(min)) {
                check_report(c, path, "must have at least %" JSON_INTEGER_FORMAT " item%s",
                       json_integer_value(min), json_integer_value(min) == 1 ? "" : "s");
                n_errors++;
        }
        if (json_is_integer(max) && json_array_size(arr) > (size_t) json_integer_value(max)) {
                check_report(c, path, "must have at most %" JSON_INTEGER_FORMAT " items (got %zu)",
                       json_integer_value(max), json_array_size(arr));
                n_errors++;
        }
        if (!json_is_object(items))
                return n_errors;
        json_array_foreach(arr, i, v) {
                _cleanup_free_ char *p = field_path_index(path, i);
                n_errors += schema_validate(items, v, p, c);
        }
        return n_errors;
}

size_t schema_validate(const json_t *schema, const json_t *value, const char *path, Check *c) {
        const json_t *en = json_object_get(schema, "enum");

        if (!value_matches_type(schema, value)) {
                report_type(schema, value, path, c);
                return 1;
        }
        if (json_is_array(en)) {
                size_t i;
                json_t *e;
                json_array_foreach(en, i, e) if (json_equal(e, (json_t *) value)) return 0;
                report_type(schema, value, path, c);
                return 1;
        }

        switch (json_typeof(value)) {
        case JSON_STRING:
                return validate_string(schema, value, path, c);
        case JSON_INTEGER:
        case JSON_REAL:
                return validate_number(schema, value, path, c);
        case JSON_OBJECT:
                return validate_object(schema, value, path, c);
        case JSON_ARRAY:
                return validate_array(schema, value, path, c);
        default:
                return 0;
        }
}

/* ---- defaults and redaction -------------------------------------------------- */

void schema_default(const json_t *schema, json_t *value) {
        const json_t *props = json_object_get(schema, "properties"),
                     *extra = json_object_get(schema, "additionalProperties");
        const char *key;
        json_t *sub, *v;
        size_t i;

        if (json_is_array(value)) {
                const json_t *items = json_object_get(schema, "items");
                if (json_is_object(items))
                        json_array_foreach(value, i, v) schema_default(items, v);
                return;
        }
        if (!json_is_object(value))
                return;

        json_object_foreach((json_t *) props, key, sub) {
                const json_t *def = json_object_get(sub, "default");
                if (def && !json_object_get(value, key))
                        json_object_set_new(value, key, json_deep_copy(def));
        }
        json_object_foreach(value, key, v) {
                sub = json_object_get(props, key);
                if (!sub && json_is_object(extra))
                        sub = (json_t *) extra;
                if (sub)
                        schema_default(sub, v);
        }
}

static bool schema_has_secret_in(const json_t *schema, const char *key) {
        const json_t *sub = json_object_get(schema, key);

        return json_is_object(sub) && schema_has_secret(sub);
}

void schema_redact(const json_t *schema, json_t *value) {
        const json_t *props = json_object_get(schema, "properties"),
                     *extra = json_object_get(schema, "additionalProperties");
        const char *key;
        json_t *sub, *v;
        void *tmp;
        size_t i;

        if (json_is_array(value)) {
                const json_t *items = json_object_get(schema, "items");
                if (json_is_object(items))
                        json_array_foreach(value, i, v) schema_redact(items, v);
                return;
        }
        if (!json_is_object(value))
                return;

        json_object_foreach_safe(value, tmp, key, v) {
                sub = json_object_get(props, key);
                if (!sub && json_is_object(extra))
                        sub = (json_t *) extra;
                if (!sub)
                        continue;
                if (schema_secret(sub))
                        json_object_del(value, key);
                else
                        schema_redact(sub, v);
        }
}

bool schema_has_secret(const json_t *schema) {
        const json_t *props = json_object_get(schema, "properties");
        const char *key;
        json_t *sub;

        if (schema_secret(schema))
                return true;
        json_object_foreach((json_t *) props, key, sub) if (schema_has_secret(sub)) return true;
        return schema_has_secret_in(schema, "additionalProperties") || schema_has_secret_in(schema, "items");
}

/* ---- type labels for explain ------------------------------------------------- */

static char *type_label_one(const json_t *schema, const char *type) {
        if (STREQ(type, "object")) {
                const json_t *extra = json_object_get(schema, "additionalProperties");
                if (json_is_object(extra)) {
                        _cleanup_free_ char *inner = schema_type_label(extra);
                        return xasprintf("map[string]%s", inner);
                }
                return xstrdup("Object");
        }
        if (STREQ(type, "array")) {
                const json_t *items = json_object_get(schema, "items");
                _cleanup_free_ char *inner =
                        json_is_object(items) ? schema_type_label(items) : xstrdup("Object");
                return xasprintf("[]%s", inner);
        }
        return xstrdup(type);
}

char *schema_type_label(const json_t *schema) {
        const json_t *t = json_object_get(schema, "type");
        Buf b = BUF_INIT;
        size_t i;
        json_t *e;

        if (json_is_string(t))
                return type_label_one(schema, json_string_value(t));
        json_array_foreach(t, i, e) {
                _cleanup_free_ char *one = type_label_one(schema, json_string_value(e) ?: "?");
                if (i > 0)
                        buf_puts(&b, " or ");
                buf_puts(&b, one);
        }
        return b.len ? buf_steal(&b) : xstrdup("Object");
}

/* ---- checking the schemas themselves ---------------------------------------- */

#define schema_bad(...) log_internal(LOG_LEVEL_DEBUG, EINVAL, __VA_ARGS__)

static bool in_list(const char *s, const char *const *list, size_t n) {
        for (size_t i = 0; i < n; i++)
                if (STREQ(s, list[i]))
                        return true;
        return false;
}

static int check_type(const json_t *schema, const char *where) {
        const json_t *t = json_object_get(schema, "type");
        size_t i;
        json_t *e;

        if (!t)
                return 0;
        if (json_is_string(t)) {
                if (in_list(json_string_value(t), schema_types, ELEMENTSOF(schema_types)))
                        return 0;
        } else if (json_is_array(t) && json_array_size(t) > 0) {
                json_array_foreach(t, i,
                                   e) if (!json_is_string(e) || !in_list(json_string_value(e), schema_types,
                                                                         ELEMENTSOF(schema_types))) goto bad;
                return 0;
        }
bad:
        return schema_bad("schema %s: bad type", where);
}

static int check_patterns_and_format(const json_t *schema, const char *where) {
        const char *format = schema_str(schema, "format");
        const char *names[] = {"pattern", "x-rpr-keyPattern"};

        for (size_t i = 0; i < ELEMENTSOF(names); i++) {
                const char *p = schema_str(schema, names[i]);
                if (json_object_get(schema, names[i]) && (!p || pattern_add(p) < 0)) {
                        return schema_bad("schema %s: %s does not compile", where, names[i]);
                }
        }
        if (json_object_get(schema, "format") &&
            (!format || !in_list(format, schema_formats, ELEMENTSOF(schema_formats)))) {
                return schema_bad("schema %s: unknown format", where);
        }
        return 0;
}

static int check_children(const json_t *schema, const char *where) {
        const json_t *props = json_object_get(schema, "properties"),
                     *extra = json_object_get(schema, "additionalProperties");
        const json_t *items = json_object_get(schema, "items"),
                     *required = json_object_get(schema, "required");
        const char *key;
        json_t *sub, *e;
        size_t i;
        int r;

        if (props && !json_is_object(props))
                return schema_bad("schema %s: properties must be an object", where);
        json_object_foreach((json_t *) props, key, sub) {
                _cleanup_free_ char *p = field_path_key(where, key);
                r = schema_check(sub, p);
                if (r < 0)
                        return r;
        }
        json_array_foreach(
                required, i,
                e) if (!json_is_string(e) ||
                       !json_object_get(props,
                                        json_string_value(e))) return schema_bad("schema %s: required names "
                                                                                 "an unknown property",
                                                                                 where);
        if (json_is_object(extra)) {
                _cleanup_free_ char *p = xasprintf("%s.*", where);
                r = schema_check(extra, p);
                if (r < 0)
                        return r;
        } else if (extra && !json_is_false(extra))
                return schema_bad("schema %s: additionalProperties must be false or a schema", where);
        if (items) {
                _cleanup_free_ char *p = xasprintf("%s[]", where);
                r = schema_check(items, p);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* A default must itself pass the schema (after its own defaults). */
static int check_default(const json_t *schema, const char *where) {
        const json_t *def = json_object_get(schema, "default");
        Diags d = DIAGS_INIT;
        Check c = {&d, -1, "schema"};

        if (!def)
                return 0;
        _cleanup_json_ json_t *copy = json_deep_copy(def);
        schema_default(schema, copy);
        size_t n = schema_validate(schema, copy, where, &c);
        if (n > 0)
                log_debug("schema %s: default is invalid: %s", where, d.items[0].message);
        diags_free(&d);
        return n > 0 ? -EINVAL : 0;
}

int schema_check(const json_t *schema, const char *where) {
        const char *key;
        json_t *v;
        int r;

        if (!json_is_object(schema))
                return schema_bad("schema %s: not an object", where);
        json_object_foreach(
                (json_t *) schema, key,
                v) if (!in_list(key, schema_keywords,
                                ELEMENTSOF(
                                        schema_keywords))) return schema_bad("schema %s: unknown keyword %s",
                                                                             where, key);

        r = check_type(schema, where);
        if (r < 0)
                return r;
        r = check_patterns_and_format(schema, where);
        if (r < 0)
                return r;
        r = check_children(schema, where);
        if (r < 0)
                return r;
        return check_default(schema, where);
}
