/* describe: one object for a person — its identity, spec and status as
 * YAML, its conditions as a table and the Events that name it. */
#include <string.h>

#include "resource/resource.h"
#include "rprctl.h"
#include "yaml/yaml.h"

static void field(const char *label, const char *value) {
        printf("%-19s%s\n", label, value && *value ? value : "<none>");
}

/* "a=b, c=d" for labels and annotations. */
static char *pairs(const json_t *map) {
        const char *k;
        json_t *v;
        Buf b = BUF_INIT;

        json_object_foreach((json_t *) map, k, v) {
                _cleanup_free_ char *cell = json_cell(v);
                buf_printf(&b, "%s%s=%s", b.len ? "\n                   " : "", k, cell);
        }
        return buf_steal(&b);
}

/* Prints a value as YAML indented by two spaces under a heading. */
static void section(const char *title, const json_t *v) {
        printf("%s:\n", title);
        if (!v || (json_is_object(v) && json_object_size(v) == 0)) {
                printf("  <none>\n");
                return;
        }
        _cleanup_free_ char *text = yaml_emit(v);
        for (char *line = text, *nl; line && *line; line = nl ? nl + 1 : NULL) {
                nl = strchr(line, '\n');
                if (nl)
                        *nl = 0;
                if (STREQ(line, "---") || STREQ(line, "..."))
                        continue;
                printf("  %s\n", line);
        }
}

/* A table with rows under its header, else "<none>"; then frees it. */
static void table_print_or_none(Table *t) {
        if (t->n_rows > 1)
                table_print(t, stdout, "  ");
        else
                printf("  <none>\n");
        table_free(t);
}

static void conditions(const json_t *conds) {
        const json_t *cond;
        size_t i;
        Table t;

        printf("Conditions:\n");
        if (json_array_size(conds) == 0) {
                printf("  <none>\n");
                return;
        }
        table_init(&t, 5);
        table_add(&t, "TYPE", "STATUS", "REASON", "LAST-TRANSITION", "MESSAGE");
        json_array_foreach(conds, i, cond) {
                char *cells[5] = {
                        json_cell(json_object_get(cond, "type")),
                        json_cell(json_object_get(cond, "status")),
                        json_cell(json_object_get(cond, "reason")),
                        json_cell(json_object_get(cond, "lastTransitionTime")),
                        json_cell(json_object_get(cond, "message")),
                };
                table_add_row(&t, cells);
        }
        table_print(&t, stdout, "  ");
        table_free(&t);
}

static bool event_about(const json_t *ev, const char *kind, const char *name) {
        const char *k = json_path_str(ev, "spec.involvedObject.kind");
        const char *n = json_path_str(ev, "spec.involvedObject.name");
        return k && n && STREQ(k, kind) && STREQ(n, name);
}

static int events(Ctl *c, const char *ns, const char *kind, const char *name) {
        const Kind *ek = kind_lookup("Event");
        _cleanup_json_ json_t *list = NULL;
        const json_t *ev;
        size_t i;
        Table t;

        printf("Events:\n");
        if (!ek) {
                printf("  <none>\n");
                return 0;
        }
        _cleanup_free_ char *path = ctl_object_path(ek, ns, NULL);
        int r = ctl_get_json(c, path, &list);
        if (r < 0 && r != -ENOENT)
                return r;

        table_init(&t, 5);
        table_add(&t, "TYPE", "REASON", "AGE", "COUNT", "MESSAGE");
        json_array_foreach(json_object_get(list, "items"), i, ev) {
                if (!event_about(ev, kind, name))
                        continue;
                char age[32];
                const char *when = json_path_str(ev, "spec.lastTimestamp")
                                           ?: json_path_str(ev, "metadata.creationTimestamp");
                format_age(when, age, sizeof(age));
                char *cells[5] = {json_cell(json_path_get(ev, "spec.type")),
                                  json_cell(json_path_get(ev, "spec.reason")), xstrdup(age),
                                  json_cell(json_path_get(ev, "spec.count")),
                                  json_cell(json_path_get(ev, "spec.message"))};
                table_add_row(&t, cells);
        }
        table_print_or_none(&t);
        return 0;
}

/* A Sync's inventory as a table and its errors one a line: both can be
 * long, and read better so than as YAML. */
static void sync_lists(const json_t *inventory, const json_t *errors) {
        const json_t *v;
        size_t i;
        Table t;

        printf("Inventory:\n");
        table_init(&t, 3);
        table_add(&t, "KIND", "NAMESPACE", "NAME");
        json_array_foreach(inventory, i, v) {
                char *cells[3] = {json_cell(json_object_get(v, "kind")), json_cell(json_object_get(v, "namespace")),
                                  json_cell(json_object_get(v, "name"))};
                table_add_row(&t, cells);
        }
        table_print_or_none(&t);
        printf("Errors:\n");
        if (json_array_size(errors) == 0)
                printf("  <none>\n");
        json_array_foreach(errors, i, v) {
                printf("  %s\n", json_string_value(v) ?: "");
        }
}

static void describe(const json_t *obj) {
        const json_t *meta = json_object_get(obj, "metadata");
        _cleanup_free_ char *labels = pairs(json_object_get(meta, "labels"));
        _cleanup_free_ char *annotations = pairs(json_object_get(meta, "annotations"));
        _cleanup_free_ char *generation = json_cell(json_object_get(meta, "generation"));
        const char *created = json_string_value(json_object_get(meta, "creationTimestamp"));
        _cleanup_free_ char *created_text = NULL;
        char age[32];

        format_age(created, age, sizeof(age));
        if (created)
                created_text = xasprintf("%s (%s ago)", created, age);

        field("Name:", json_string_value(json_object_get(meta, "name")));
        field("Namespace:", json_string_value(json_object_get(meta, "namespace")));
        field("Kind:", json_string_value(json_object_get(obj, "kind")));
        field("Labels:", labels);
        field("Annotations:", annotations);
        field("UID:", json_string_value(json_object_get(meta, "uid")));
        field("Resource Version:", json_string_value(json_object_get(meta, "resourceVersion")));
        field("Generation:", generation);
        field("Created:", created_text);
        if (json_object_get(meta, "deletionTimestamp"))
                field("Deleting since:", json_string_value(json_object_get(meta, "deletionTimestamp")));
        section("Spec", json_object_get(obj, "spec"));

        /* Conditions get their own table below. */
        _cleanup_json_ json_t *status = json_deep_copy(json_object_get(obj, "status"));
        json_t *conds = json_incref(json_object_get(status, "conditions"));
        json_object_del(status, "conditions");
        bool sync = STREQ(json_string_value(json_object_get(obj, "kind")) ?: "", "Sync");
        _cleanup_json_ json_t *inventory = sync ? json_incref(json_object_get(status, "inventory")) : NULL;
        _cleanup_json_ json_t *errors = sync ? json_incref(json_object_get(status, "errors")) : NULL;
        if (sync) {
                json_object_del(status, "inventory");
                json_object_del(status, "errors");
        }
        section("Status", status);
        if (sync)
                sync_lists(inventory, errors);
        conditions(conds);
        json_decref(conds);
}

int verb_describe(Ctl *c) {
        _cleanup_free_ char *kind_arg = NULL;
        _cleanup_json_ json_t *obj = NULL;
        char singular[64];
        const char *name;

        if (c->n_pos == 0)
                return ctl_error("describe needs KIND NAME");
        kind_arg = xstrdup(c->pos[0]);
        char *slash = strchr(kind_arg, '/');
        if (slash)
                *slash++ = 0;
        name = slash ? slash : c->n_pos > 1 ? c->pos[1] : NULL;
        if (!name || c->n_pos > (slash ? 1u : 2u))
                return ctl_error("describe needs exactly KIND NAME");

        const Kind *k = ctl_kind(kind_arg);
        if (!k)
                return 1;
        _cleanup_free_ char *path = ctl_object_path(k, ctl_namespace(c), name);
        int r = ctl_get_json(c, path, &obj);
        if (r == -ENOENT)
                return ctl_error("%s \"%s\" not found", ctl_kind_singular(k, singular, sizeof(singular)), name);
        if (r < 0)
                return 1;

        describe(obj);
        r = events(c, ctl_namespace(c), kind_name(k), name);
        return r < 0 ? 1 : 0;
}
