/* yaml-parse.c: libyaml's event stream into jansson values, remembering
 * where every node was written.
 *
 * The builder keeps a stack of open containers. Each completed node is
 * attached to its parent and its position recorded under its field path
 * (the same dotted path the validator reports), so that a diagnostic about
 * "spec.port" can be turned back into FILE:LINE:COL. Aliases are expanded by
 * deep copy; the copies are counted against YAML_MAX_ALIAS_NODES so a small
 * document cannot expand into a huge one. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "yaml/yaml.h"


typedef struct NodePos {
        char *path;
        unsigned key_line, key_col;
        unsigned line, col;
} NodePos;

struct YamlDoc {
        char *file;
        json_t *root;
        NodePos *pos;
        size_t n_pos, cap_pos;
};

typedef struct Anchor {
        char *name;
        json_t *value;
        size_t nodes;
} Anchor;

/* An open mapping or sequence. */
typedef struct Frame {
        json_t *value;
        char *path;
        char *anchor;
        size_t first_node; /* node counter when it opened, for anchor sizes */
        /* Mappings alternate key and value: the pending key, if any. */
        char *key;
        unsigned key_line, key_col;
        /* Keys that came from a merge (<<): written keys override them. */
        json_t *merged;
} Frame;

typedef struct Builder {
        const char *file;
        Diags *diags;
        YamlDoc *doc;
        Frame stack[YAML_MAX_DEPTH];
        size_t depth;
        Anchor *anchors;
        size_t n_anchors;
        size_t nodes;       /* nodes built in this document */
        size_t alias_nodes; /* nodes copied by aliases in the whole stream */
} Builder;

_printf_(3, 4) static int fail(Builder *b, const yaml_mark_t *m, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        diags_addv(b->diags, -1, NULL, NULL, fmt, ap);
        va_end(ap);
        Diag *d = &b->diags->items[b->diags->n - 1];
        d->file = xstrdup(b->file);
        d->line = m ? (unsigned) m->line + 1 : 0;
        d->col = m ? (unsigned) m->column + 1 : 0;
        return -EINVAL;
}

static void doc_add_pos(YamlDoc *doc, char *path, const Frame *parent, const yaml_mark_t *m) {
        if (doc->n_pos == doc->cap_pos) {
                doc->cap_pos = doc->cap_pos ? doc->cap_pos * 2 : 16;
                doc->pos = xrealloc(doc->pos, doc->cap_pos * sizeof(NodePos));
        }
        bool keyed = parent && json_is_object(parent->value);
        doc->pos[doc->n_pos++] = (NodePos){
                .path = path,
                .key_line = keyed ? parent->key_line : (unsigned) m->line + 1,
                .key_col = keyed ? parent->key_col : (unsigned) m->column + 1,
                .line = (unsigned) m->line + 1,
                .col = (unsigned) m->column + 1,
        };
}

/* ---- scalars ----------------------------------------------------------- */

static bool is_null_word(const char *s) {
        return !*s || STREQ(s, "~") || STREQ(s, "null") || STREQ(s, "Null") || STREQ(s, "NULL");
}

static int bool_word(const char *s) {
        if (STREQ(s, "true") || STREQ(s, "True") || STREQ(s, "TRUE"))
                return 1;
        if (STREQ(s, "false") || STREQ(s, "False") || STREQ(s, "FALSE"))
                return 0;
        return -1;
}

/* YAML 1.2 core schema integers: decimal, 0o octal, 0x hex. */
static int int_word(const char *s, json_int_t *ret) {
        int base = 10;
        const char *digits = s;

        if (startswith(s, "0o"))
                base = 8, digits = s + 2;
        else if (startswith(s, "0x"))
                base = 16, digits = s + 2;
        else if (*s == '-' || *s == '+')
                digits = s + 1;
        if (!*digits || strspn(digits, base == 16 ? "0123456789abcdefABCDEF" : "0123456789") != strlen(digits))
                return -EINVAL;
        if (base == 8 && strspn(digits, "01234567") != strlen(digits))
                return -EINVAL;

        errno = 0;
        long long v = strtoll(base == 10 ? s : digits, NULL, base);
        if (errno == ERANGE)
                return -ERANGE;
        *ret = v;
        return 0;
}

static bool float_word(const char *s, double *ret) {
        const char *p = s + (*s == '-' || *s == '+');
        size_t n = strspn(p, "0123456789");
        bool digits = n > 0;

        p += n;
        if (*p == '.') {
                size_t m = strspn(p + 1, "0123456789");
                digits = digits || m > 0;
                p += 1 + m;
        }
        if (!digits)
                return false;
        if (*p == 'e' || *p == 'E') {
                p++;
                p += (*p == '-' || *p == '+');
                size_t m = strspn(p, "0123456789");
                if (m == 0)
                        return false;
                p += m;
        }
        if (*p)
                return false;
        *ret = strtod(s, NULL);
        return isfinite(*ret);
}

static json_t *scalar_value(Builder *b, const yaml_event_t *e) {
        const char *s = (const char *) e->data.scalar.value;
        const char *tag = (const char *) e->data.scalar.tag;
        bool plain = e->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
        json_int_t i;
        double f;
        int r;

        if (tag && !STREQ(tag, "!") && !startswith(tag, "tag:yaml.org,2002:")) {
                fail(b, &e->start_mark, "unsupported tag %s", tag);
                return NULL;
        }
        if (tag && STREQ(tag, YAML_STR_TAG))
                return json_stringn(s, e->data.scalar.length);
        if (!plain && !(tag && !STREQ(tag, "!")))
                return json_stringn(s, e->data.scalar.length);

        if (is_null_word(s))
                return json_null();
        if ((r = bool_word(s)) >= 0)
                return json_boolean(r);
        r = int_word(s, &i);
        if (r == -ERANGE) {
                fail(b, &e->start_mark, "integer out of range: %s", s);
                return NULL;
        }
        if (r == 0)
                return json_integer(i);
        if (float_word(s, &f))
                return json_real(f);
        if (tag && !STREQ(tag, "!")) {
                fail(b, &e->start_mark, "value does not match its tag %s", tag);
                return NULL;
        }
        return json_stringn(s, e->data.scalar.length);
}

/* ---- the container stack ----------------------------------------------- */

static Frame *top(Builder *b) {
        return b->depth > 0 ? &b->stack[b->depth - 1] : NULL;
}

static void remember_anchor(Builder *b, const char *name, json_t *value, size_t nodes) {
        for (size_t i = 0; i < b->n_anchors; i++)
                if (STREQ(b->anchors[i].name, name)) {
                        json_decref(b->anchors[i].value);
                        b->anchors[i].value = json_incref(value);
                        b->anchors[i].nodes = nodes;
                        return;
                }
        b->anchors = xrealloc(b->anchors, (b->n_anchors + 1) * sizeof(Anchor));
        b->anchors[b->n_anchors++] = (Anchor){xstrdup(name), json_incref(value), nodes};
}

/* "<<: *base" merges the mapping(s) it names into the one being built,
 * without overriding keys written there. */
static int merge_into(Builder *b, Frame *target, json_t *value, const yaml_mark_t *m) {
        if (json_is_array(value)) {
                size_t i;
                json_t *item;
                json_array_foreach(value, i, item) {
                        if (merge_into(b, target, item, m) < 0)
                                return -EINVAL;
                }
                return 0;
        }
        if (!json_is_object(value))
                return fail(b, m, "%s", "a merge key (<<) needs a mapping or a list of mappings");
        const char *k;
        json_t *v;
        if (!target->merged)
                target->merged = json_object();
        json_object_foreach(value, k, v) {
                if (json_object_get(target->value, k))
                        continue;
                json_object_set(target->value, k, v);
                json_object_set_new(target->merged, k, json_true());
        }
        return 0;
}

/* Records where the node about to be built starts, under its field path;
 * returns that path (borrowed from the document). */
static const char *record_pos(Builder *b, const yaml_mark_t *m) {
        Frame *parent = top(b);
        char *path;

        if (!parent)
                path = xstrdup("");
        else if (json_is_object(parent->value))
                path = field_path_key(parent->path, parent->key);
        else
                path = field_path_index(parent->path, json_array_size(parent->value));
        doc_add_pos(b->doc, path, parent, m);
        return path;
}

/* Attaches a finished node (reference taken) to the open container, or
 * makes it the document root. */
static int attach(Builder *b, json_t *value) {
        Frame *parent = top(b);

        if (!parent) {
                b->doc->root = value;
                return 0;
        }
        if (json_is_array(parent->value)) {
                json_array_append_new(parent->value, value);
                return 0;
        }

        _cleanup_free_ char *key = TAKE_PTR(parent->key);
        yaml_mark_t km = {.line = parent->key_line - 1, .column = parent->key_col - 1};
        if (STREQ(key, "<<")) {
                int r = merge_into(b, parent, value, &km);
                json_decref(value);
                return r;
        }
        if (json_object_get(parent->value, key) && json_object_del(parent->merged, key) < 0) {
                json_decref(value);
                return fail(b, &km, "duplicate key \"%s\"", key);
        }
        json_object_set_new(parent->value, key, value);
        return 0;
}

/* A scalar in key position of a mapping only names the key. */
static bool wants_key(Builder *b) {
        Frame *f = top(b);
        return f && json_is_object(f->value) && !f->key;
}

static int on_scalar(Builder *b, const yaml_event_t *e) {
        Frame *f = top(b);

        b->nodes++;
        /* "\0" in a quoted scalar: every name, command and path is a C
         * string further on, which would end there; refused, not cut. */
        if (memchr(e->data.scalar.value, '\0', e->data.scalar.length))
                return fail(b, &e->start_mark, "%s",
                            "a string holds a NUL character (\\0), which is not allowed");
        if (wants_key(b)) {
                f->key = xstrndup((const char *) e->data.scalar.value, e->data.scalar.length);
                f->key_line = e->start_mark.line + 1;
                f->key_col = e->start_mark.column + 1;
                return 0;
        }
        json_t *v = scalar_value(b, e);
        if (!v)
                return -EINVAL;
        if (e->data.scalar.anchor)
                remember_anchor(b, (const char *) e->data.scalar.anchor, v, 1);
        record_pos(b, &e->start_mark);
        return attach(b, v);
}

static int on_alias(Builder *b, const yaml_event_t *e) {
        const char *name = (const char *) e->data.alias.anchor;
        Anchor *a = NULL;

        for (size_t i = 0; i < b->n_anchors; i++)
                if (STREQ(b->anchors[i].name, name))
                        a = &b->anchors[i];
        if (!a)
                return fail(b, &e->start_mark, "unknown anchor *%s", name);
        /* Copies count as nodes too, so nested aliases are sized truly. */
        b->nodes += a->nodes;
        b->alias_nodes += a->nodes;
        if (b->alias_nodes > YAML_MAX_ALIAS_NODES)
                return fail(b, &e->start_mark, "aliases expand to more than %d nodes; refusing",
                            YAML_MAX_ALIAS_NODES);
        if (wants_key(b))
                return fail(b, &e->start_mark, "%s", "an alias cannot be a mapping key");
        record_pos(b, &e->start_mark);
        return attach(b, json_deep_copy(a->value));
}

static int on_start(Builder *b, const yaml_event_t *e, json_t *value, const char *anchor) {
        if (wants_key(b)) {
                json_decref(value);
                return fail(b, &e->start_mark, "%s",
                            "a mapping key must be a plain value, not a mapping or list");
        }
        if (b->depth == YAML_MAX_DEPTH) {
                json_decref(value);
                return fail(b, &e->start_mark, "nesting deeper than %d levels; refusing", YAML_MAX_DEPTH);
        }
        b->nodes++;
        const char *path = record_pos(b, &e->start_mark);
        b->stack[b->depth++] = (Frame){
                .value = value,
                .path = xstrdup(path),
                .anchor = anchor ? xstrdup(anchor) : NULL,
                .first_node = b->nodes,
        };
        return 0;
}

static void frame_clear(Frame *f) {
        json_decref(f->value);
        free(f->path);
        free(f->anchor);
        free(f->key);
        json_decref(f->merged);
}

static int on_end(Builder *b) {
        Frame f = b->stack[--b->depth];

        if (f.anchor)
                remember_anchor(b, f.anchor, f.value, b->nodes - f.first_node + 1);
        json_t *value = TAKE_PTR(f.value);
        frame_clear(&f);
        return attach(b, value);
}

/* ---- documents --------------------------------------------------------- */

void yamldoc_free(YamlDoc *doc) {
        if (!doc)
                return;
        for (size_t i = 0; i < doc->n_pos; i++)
                free(doc->pos[i].path);
        free(doc->pos);
        json_decref(doc->root);
        free(doc->file);
        free(doc);
}

void yamldocs_free(YamlDoc **docs, size_t n) {
        for (size_t i = 0; i < n; i++)
                yamldoc_free(docs[i]);
        free(docs);
}

json_t *yamldoc_root(const YamlDoc *doc) {
        return doc->root;
}

const char *yamldoc_file(const YamlDoc *doc) {
        return doc->file;
}

static const NodePos *find_pos(const YamlDoc *doc, const char *path) {
        for (size_t i = 0; i < doc->n_pos; i++)
                if (STREQ(doc->pos[i].path, path))
                        return &doc->pos[i];
        return NULL;
}

/* The parent of a path: "a.b[2]" → "a.b", "a.b" → "a", "a[\"x.y\"]" → "a". */
static void path_up(char *path) {
        size_t n = strlen(path);

        if (n >= 2 && path[n - 1] == ']') {
                char *open = path[n - 2] == '"' ? NULL : strrchr(path, '[');
                if (!open) {
                        /* Bracket-quoted key: find the '["' that opens it. */
                        for (char *p = path + n - 2; p > path; p--)
                                if (p[-1] == '[' && p[0] == '"' && (p - 1 == path || p[-2] != '\\')) {
                                        open = p - 1;
                                        break;
                                }
                }
                if (open) {
                        *open = 0;
                        return;
                }
        }
        char *dot = strrchr(path, '.');
        if (dot)
                *dot = 0;
        else
                *path = 0;
}

void yamldoc_pos(const YamlDoc *doc, const char *path, bool key, unsigned *ret_line, unsigned *ret_col) {
        _cleanup_free_ char *p = xstrdup(path ? path : "");

        for (;;) {
                const NodePos *np = find_pos(doc, p);
                if (np) {
                        *ret_line = key ? np->key_line : np->line;
                        *ret_col = key ? np->key_col : np->col;
                        return;
                }
                if (!*p)
                        break;
                path_up(p);
                key = true; /* the ancestor's key is where the missing field belongs */
        }
        *ret_line = 1;
        *ret_col = 1;
}

/* ---- the stream -------------------------------------------------------- */

static void builder_reset(Builder *b) {
        while (b->depth > 0)
                frame_clear(&b->stack[--b->depth]);
        yamldoc_free(b->doc);
        b->doc = NULL;
}

static void builder_clear(Builder *b) {
        builder_reset(b);
        for (size_t i = 0; i < b->n_anchors; i++) {
                free(b->anchors[i].name);
                json_decref(b->anchors[i].value);
        }
        free(b->anchors);
}

static int on_event(Builder *b, const yaml_event_t *e, YamlDoc ***docs, size_t *n) {
        switch (e->type) {
        case YAML_DOCUMENT_START_EVENT:
                b->doc = xcalloc(1, sizeof(YamlDoc));
                b->doc->file = xstrdup(b->file);
                b->nodes = 0;
                return 0;
        case YAML_DOCUMENT_END_EVENT:
                if (!b->doc->root || json_is_null(b->doc->root)) {
                        yamldoc_free(TAKE_PTR(b->doc));
                        return 0;
                }
                *docs = xrealloc(*docs, (*n + 1) * sizeof(YamlDoc *));
                (*docs)[(*n)++] = TAKE_PTR(b->doc);
                return 0;
        case YAML_MAPPING_START_EVENT:
                return on_start(b, e, json_object(), (const char *) e->data.mapping_start.anchor);
        case YAML_SEQUENCE_START_EVENT:
                return on_start(b, e, json_array(), (const char *) e->data.sequence_start.anchor);
        case YAML_MAPPING_END_EVENT:
        case YAML_SEQUENCE_END_EVENT:
                return on_end(b);
        case YAML_SCALAR_EVENT:
                return on_scalar(b, e);
        case YAML_ALIAS_EVENT:
                return on_alias(b, e);
        default:
                return 0;
        }
}

static int parser_error(Builder *b, const yaml_parser_t *p) {
        const yaml_mark_t *m = p->problem ? &p->problem_mark : &p->context_mark;
        _cleanup_free_ char *msg = xasprintf("%s%s%s", p->problem ? p->problem : "syntax error",
                                             p->context ? " " : "", p->context ? p->context : "");
        return fail(b, m, "invalid YAML: %s", msg);
}

int yaml_parse(const char *data, size_t len, const char *filename, YamlDoc ***ret_docs, size_t *ret_n,
               Diags *d) {
        Builder b = {.file = filename ? filename : "-", .diags = d};
        YamlDoc **docs = NULL;
        size_t n = 0;
        yaml_parser_t parser;
        int r = 0;

        if (len > YAML_MAX_BYTES)
                return fail(&b, NULL, "%s", "larger than 64 MiB; refusing");
        if (!yaml_parser_initialize(&parser))
                return -ENOMEM;
        yaml_parser_set_input_string(&parser, (const unsigned char *) data, len);

        for (bool done = false; !done && r == 0;) {
                yaml_event_t e;
                if (!yaml_parser_parse(&parser, &e)) {
                        r = parser_error(&b, &parser);
                        break;
                }
                done = e.type == YAML_STREAM_END_EVENT;
                r = on_event(&b, &e, &docs, &n);
                yaml_event_delete(&e);
        }
        yaml_parser_delete(&parser);
        builder_clear(&b);
        if (r < 0) {
                yamldocs_free(docs, n);
                return r;
        }
        *ret_docs = docs;
        *ret_n = n;
        return 0;
}
