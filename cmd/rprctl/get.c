/* get: objects as kubectl prints them — an aligned table (NAMESPACE with -A,
 * NAME, the kind's printer columns, AGE), or YAML, JSON or kind/name lines;
 * with -w the rows keep coming as rprd's watch stream reports changes.
 *
 * A watch is a list followed by a watch from the list's resourceVersion,
 * so the first screen is aligned like a plain get and nothing is missed
 * between the two. */
#include <string.h>

#include "resource/resource.h"
#include "rprctl.h"

typedef enum Output { OUT_TABLE, OUT_WIDE, OUT_YAML, OUT_JSON, OUT_NAME } Output;

typedef struct Get {
        Ctl *ctl;
        const Kind *kind;
        Output out;
        char **names;
        size_t n_names;
        Table table; /* header and widths for watch rows */
        bool header_printed;
        bool fell_behind; /* the watch ended with 410: list again */
} Get;

static int output_parse(const char *s, Output *ret) {
        static const char *const names[] = {"", "wide", "yaml", "json", "name"};

        if (!s) {
                *ret = OUT_TABLE;
                return 0;
        }
        for (size_t i = 1; i < ELEMENTSOF(names); i++)
                if (STREQ(s, names[i])) {
                        *ret = (Output) i;
                        return 0;
                }
        return -EINVAL;
}

/* ---- rows ------------------------------------------------------------------- */

static size_t column_count(const Get *g) {
        const json_t *cols = kind_columns(g->kind), *col;
        size_t i, n = 2 + (g->ctl->all_namespaces ? 1 : 0);

        json_array_foreach(cols, i, col)
                if (g->out == OUT_WIDE || !json_is_true(json_object_get(col, "wide")))
                        n++;
        return n;
}

/* A column's cell as a person reads it: times as ages ("5m"), fractions
 * with two decimals ("0.42"), percentages as "37%". The kind's columns
 * carry no format, so the field's name says which. */
static char *column_cell(const char *path, const json_t *v) {
        const char *leaf = path ? strrchr(path, '.') : NULL;
        uint64_t t;

        leaf = leaf ? leaf + 1 : path ? path : "";
        if (json_is_string(v) && (endswith(leaf, "Time") || endswith(leaf, "Timestamp")) &&
            time_parse_rfc3339(json_string_value(v), &t) >= 0) {
                char age[32];
                format_age(json_string_value(v), age, sizeof(age));
                return xstrdup(age);
        }
        if (json_is_number(v) && endswith(leaf, "Percent"))
                return xasprintf("%.0f%%", json_number_value(v));
        if (json_is_real(v))
                return xasprintf("%.2f", json_real_value(v));
        return json_cell(v);
}

/* The cells of one object (or of the header when obj is NULL). */
static char **row_cells(const Get *g, const json_t *obj) {
        const json_t *cols = kind_columns(g->kind), *col;
        char **cells = xcalloc(column_count(g), sizeof(char *));
        size_t i, n = 0;

        if (g->ctl->all_namespaces)
                cells[n++] = obj ? json_cell(json_path_get(obj, "metadata.namespace")) : xstrdup("NAMESPACE");
        cells[n++] = obj ? json_cell(json_path_get(obj, "metadata.name")) : xstrdup("NAME");
        json_array_foreach(cols, i, col) {
                if (g->out != OUT_WIDE && json_is_true(json_object_get(col, "wide")))
                        continue;
                const char *title = json_string_value(json_object_get(col, "name"));
                const char *path = json_string_value(json_object_get(col, "path"));
                cells[n++] = obj ? column_cell(path, path ? json_path_get(obj, path) : NULL) : xstrdup(title ?: "?");
        }
        if (obj) {
                char age[32];
                format_age(json_path_str(obj, "metadata.creationTimestamp"), age, sizeof(age));
                cells[n++] = xstrdup(age);
        } else
                cells[n++] = xstrdup("AGE");
        return cells;
}

static void add_object_row(Get *g, const json_t *obj) {
        _cleanup_free_ char **cells = row_cells(g, obj);
        table_add_row(&g->table, cells);
}

/* ---- printing -------------------------------------------------------------------- */

static void print_name(const Get *g, const json_t *obj) {
        char singular[64];
        printf("%s/%s\n", ctl_kind_singular(g->kind, singular, sizeof(singular)),
               json_path_str(obj, "metadata.name") ?: "?");
}

/* items: the objects; whole: what -o json|yaml prints for them. */
static int print_items(Get *g, const json_t *items, const json_t *whole) {
        const json_t *obj;
        size_t i;

        if (g->out == OUT_JSON)
                ctl_print_json(whole);
        else if (g->out == OUT_YAML)
                ctl_print_yaml(whole);
        else if (g->out == OUT_NAME)
                json_array_foreach(items, i, obj)
                        print_name(g, obj);
        else {
                json_array_foreach(items, i, obj)
                        add_object_row(g, obj);
                if (json_array_size(items) > 0)
                        table_print(&g->table, stdout, NULL);
                g->header_printed = json_array_size(items) > 0;
        }
        return 0;
}

/* One row while watching, padded to the first screen's widths. */
static void print_watch_row(Get *g, const json_t *obj) {
        _cleanup_free_ char **cells = row_cells(g, obj);
        size_t n = g->table.n_cols;

        if (!g->header_printed) {
                table_print(&g->table, stdout, NULL); /* the header alone */
                g->header_printed = true;
        }
        for (size_t i = 0; i < n; i++) {
                if (i + 1 == n)
                        printf("%s\n", cells[i]);
                else
                        printf("%-*s   ", (int) g->table.widths[i], cells[i]);
                free(cells[i]);
        }
}

/* ---- fetching ------------------------------------------------------------------------ */

static char *list_path(Get *g, bool watch, const char *rv) {
        const char *sel = ctl_opt(g->ctl, "selector");
        _cleanup_free_ char *base = g->ctl->all_namespaces ? xasprintf("/api/v1/%s", kind_plural(g->kind))
                                                           : ctl_object_path(g->kind, ctl_namespace(g->ctl), NULL);
        _cleanup_free_ char *esel = sel ? client_escape(sel) : NULL;
        Buf b = BUF_INIT;

        buf_puts(&b, base);
        if (esel)
                buf_printf(&b, "?labelSelector=%s", esel);
        if (watch)
                buf_printf(&b, "%swatch=1&resourceVersion=%s", esel ? "&" : "?", rv ? rv : "0");
        return buf_steal(&b);
}

static bool name_wanted(const Get *g, const json_t *obj) {
        const char *name = json_path_str(obj, "metadata.name");

        if (g->n_names == 0)
                return true;
        for (size_t i = 0; name && i < g->n_names; i++)
                if (STREQ(g->names[i], name))
                        return true;
        return false;
}

static int get_by_names(Get *g) {
        _cleanup_json_ json_t *items = json_array();
        char singular[64];
        int ret = 0;

        ctl_kind_singular(g->kind, singular, sizeof(singular));
        for (size_t i = 0; i < g->n_names; i++) {
                _cleanup_free_ char *path = ctl_object_path(g->kind, ctl_namespace(g->ctl), g->names[i]);
                json_t *obj = NULL;
                int r = ctl_get_json(g->ctl, path, &obj);
                if (r == -ENOENT)
                        ret = ctl_error("%s \"%s\" not found", singular, g->names[i]);
                else if (r < 0)
                        return 1;
                else
                        json_array_append_new(items, obj);
        }
        if (json_array_size(items) == 0)
                return ret;

        _cleanup_json_ json_t *list = json_pack("{s:s,s:s,s:O}", "apiVersion", RPR_API_VERSION, "kind", "List",
                                                "items", items);
        print_items(g, items, json_array_size(items) == 1 && g->n_names == 1 ? json_array_get(items, 0) : list);
        return ret;
}

static int get_list(Get *g, json_t **ret_list) {
        _cleanup_free_ char *path = list_path(g, false, NULL);
        json_t *list = NULL;

        int r = ctl_get_json(g->ctl, path, &list);
        if (r == -ENOENT)
                return ctl_error("rprd does not know %s", kind_plural(g->kind));
        if (r < 0)
                return 1;

        json_t *items = json_object_get(list, "items");
        if (g->n_names > 0) {
                /* -w with names: only those. */
                json_t *keep = json_array(), *obj;
                size_t i;
                json_array_foreach(items, i, obj)
                        if (name_wanted(g, obj))
                                json_array_append(keep, obj);
                json_object_set_new(list, "items", keep);
                items = keep;
        }
        if (json_array_size(items) == 0 && g->out != OUT_JSON && g->out != OUT_YAML) {
                if (g->ctl->all_namespaces)
                        fprintf(stderr, "No resources found.\n");
                else
                        fprintf(stderr, "No resources found in %s namespace.\n", ctl_namespace(g->ctl));
        } else
                print_items(g, items, list);
        fflush(stdout);
        *ret_list = list;
        return 0;
}

/* ---- watch ----------------------------------------------------------------------------------- */

static int on_event(const char *line, size_t len, void *userdata) {
        Get *g = userdata;
        json_error_t jerr;
        _cleanup_json_ json_t *ev = json_loadb(line, len, 0, &jerr);
        const char *type = json_string_value(json_object_get(ev, "type"));
        json_t *obj = json_object_get(ev, "object");

        if (len == 0)
                return 0;
        if (!type || !json_is_object(obj)) {
                ctl_error("rprd sent a watch event that is not {\"type\",\"object\"}");
                return -EBADMSG;
        }
        if (STREQ(type, "ERROR")) {
                if (json_integer_value(json_object_get(obj, "code")) == 410) {
                        g->fell_behind = true;
                        return -ESTALE;
                }
                ctl_error("watch ended: %s", json_string_value(json_object_get(obj, "message")) ?: "error");
                return -EIO;
        }
        if (!name_wanted(g, obj))
                return 0;
        if (g->out == OUT_JSON)
                ctl_print_json(ev);
        else if (g->out == OUT_YAML) {
                printf("---\n");
                ctl_print_yaml(ev);
        } else if (g->out == OUT_NAME)
                print_name(g, obj);
        else
                print_watch_row(g, obj);
        fflush(stdout);
        return 0;
}

/* One list, then its changes. 1 when the watch fell behind (410 Gone,
 * at once or later in the stream): the caller lists again. */
static int watch_once(Get *g) {
        _cleanup_json_ json_t *list = NULL;
        _cleanup_free_ char *why = NULL;
        long status = 0;

        if (get_list(g, &list) != 0)
                return -EIO;
        const char *rv = json_path_str(list, "metadata.resourceVersion");
        _cleanup_free_ char *path = list_path(g, true, rv ? rv : "0");
        Client *cl = ctl_client(g->ctl);

        g->fell_behind = false;
        int r = client_stream_lines(cl, path, on_event, g, &status, &why);
        if (r < 0) {
                ctl_error("cannot reach rprd at %s: %s", client_server(cl), why ? why : strerror(-r));
                return -EIO;
        }
        if (g->fell_behind || status == 410)
                return 1;
        if (why) {
                ctl_error("%s", why);
                return -EIO;
        }
        return 0;
}

/* A watch that falls behind the changes (rprd keeps a bounded backlog for
 * each watcher) lists everything again and goes on, as kubectl does. */
static int get_watch(Get *g) {
        int r;

        while ((r = watch_once(g)) == 1)
                fprintf(stderr, "rprctl: the watch fell behind rprd's changes; listing again\n");
        return r < 0 ? 1 : 0;
}

int verb_get(Ctl *c) {
        Get g = {.ctl = c};
        _cleanup_free_ char *kind_arg = NULL;
        char *slash_name = NULL;
        int ret;

        if (c->n_pos == 0)
                return ctl_error("get needs a KIND (e.g. rprctl get servers)");
        if (output_parse(ctl_opt(c, "output"), &g.out) < 0)
                return ctl_error("unknown output format \"%s\" (wide, yaml, json or name)", ctl_opt(c, "output"));

        kind_arg = xstrdup(c->pos[0]);
        slash_name = strchr(kind_arg, '/');
        if (slash_name)
                *slash_name++ = 0;
        g.kind = ctl_kind(kind_arg);
        if (!g.kind)
                return 1;
        if (slash_name && c->n_pos > 1)
                return ctl_error("give either KIND/NAME or KIND NAME..., not both");
        g.names = slash_name ? &slash_name : c->pos + 1;
        g.n_names = slash_name ? 1 : c->n_pos - 1;
        if (g.n_names > 0 && c->all_namespaces && !ctl_flag(c, "watch"))
                return ctl_error("a name cannot be combined with -A");

        table_init(&g.table, column_count(&g));
        _cleanup_free_ char **header = row_cells(&g, NULL);
        table_add_row(&g.table, header);

        if (ctl_flag(c, "watch"))
                ret = get_watch(&g);
        else if (g.n_names > 0)
                ret = get_by_names(&g);
        else {
                _cleanup_json_ json_t *list = NULL;
                ret = get_list(&g, &list);
        }
        table_free(&g.table);
        return ret;
}
