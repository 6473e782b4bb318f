/* manifest: the objects named by -f, read, checked locally and mapped back
 * to where they were written.
 *
 * Every object remembers its file, its YAML document and its field path
 * inside that document ("" for a plain document, "items[2]" inside a List),
 * so that any diagnostic — ours from resource_prepare or the server's 422
 * details, which carry the object's index — is printed as
 * FILE:LINE:COL: Kind/name: field: message. */
#include <dirent.h>
#include <string.h>
#include <sys/stat.h>

#include "resource/resource.h"
#include "rprctl.h"
#include "yaml/yaml.h"

#define MANIFEST_MAX_BYTES YAML_MAX_BYTES

static int cmp_str(const void *a, const void *b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

static void add_file(ManifestSet *set, char *path) {
        set->files = xrealloc(set->files, (set->n_files + 1) * sizeof(char *));
        set->files[set->n_files++] = path;
}

static bool manifest_name(const char *name) {
        return endswith(name, ".yaml") || endswith(name, ".yml") || endswith(name, ".json");
}

/* Collects a directory's manifests in sorted order, recursing with -R. */
static int collect_dir(ManifestSet *set, const char *dir, bool recursive) {
        DIR *d = opendir(dir);
        char **names = NULL;
        size_t n = 0;

        if (!d) {
                int r = -errno;
                ctl_error("cannot read directory %s: %s", dir, strerror(-r));
                return r;
        }
        for (;;) {
                struct dirent *de = readdir(d);
                if (!de)
                        break;
                if (de->d_name[0] == '.')
                        continue;
                names = xrealloc(names, (n + 1) * sizeof(char *));
                names[n++] = xstrdup(de->d_name);
        }
        closedir(d);
        if (n > 0)
                qsort(names, n, sizeof(char *), cmp_str);

        int r = 0;
        for (size_t i = 0; i < n; i++) {
                char *p = xasprintf("%s%s%s", dir, endswith(dir, "/") ? "" : "/", names[i]);
                struct stat st;
                if (stat(p, &st) >= 0 && S_ISDIR(st.st_mode)) {
                        if (recursive && r >= 0)
                                r = collect_dir(set, p, recursive);
                        free(p);
                } else if (manifest_name(names[i]))
                        add_file(set, p);
                else
                        free(p);
                free(names[i]);
        }
        free(names);
        return r;
}

static void add_manifest(ManifestSet *set, const char *file, const YamlDoc *doc, char *prefix, json_t *obj) {
        set->items = xrealloc(set->items, (set->n + 1) * sizeof(Manifest));
        set->items[set->n++] = (Manifest){.file = file, .doc = doc, .prefix = prefix, .obj = obj};
}

/* One document's objects: itself, or the elements of an array or a List. */
static void add_root(ManifestSet *set, const char *file, const YamlDoc *doc, json_t *root) {
        json_t *items = NULL, *v;
        size_t i;

        if (json_is_array(root))
                items = root;
        else if (STREQ(json_string_value(json_object_get(root, "kind")) ?: "", "List"))
                items = json_object_get(root, "items");
        if (!json_is_array(items)) {
                add_manifest(set, file, doc, xstrdup(""), json_deep_copy(root));
                return;
        }
        json_array_foreach(items, i, v) {
                _cleanup_free_ char *idx = field_path_index(NULL, i);
                char *prefix = items == root ? xstrdup(idx) : xasprintf("items%s", idx);
                add_manifest(set, file, doc, prefix, json_deep_copy(v));
        }
}

static void add_docs(ManifestSet *set, YamlDoc **docs, size_t n) {
        set->docs = xrealloc(set->docs, (set->n_docs + n) * sizeof(YamlDoc *));
        memcpy(set->docs + set->n_docs, docs, n * sizeof(YamlDoc *));
        set->n_docs += n;
        free(docs);
}

/* JSON is read by jansson (the values are exactly JSON's); libyaml parses it
 * a second time only to learn the positions. */
static int load_json(ManifestSet *set, const char *file, const char *data, size_t len) {
        json_error_t jerr;
        _cleanup_json_ json_t *root = json_loadb(data, len, 0, &jerr);
        YamlDoc **docs = NULL;
        size_t n = 0;
        Diags scratch = DIAGS_INIT;

        if (!root) {
                fprintf(stderr, "%s:%d:%d: invalid JSON: %s\n", file, jerr.line, jerr.column, jerr.text);
                return -EINVAL;
        }
        if (yaml_parse(data, len, file, &docs, &n, &scratch) < 0 || n != 1) {
                yamldocs_free(docs, n);
                docs = NULL;
                n = 0;
        }
        diags_free(&scratch);
        add_root(set, file, n == 1 ? docs[0] : NULL, root);
        if (n == 1)
                add_docs(set, docs, n);
        return 0;
}

static int load_yaml(ManifestSet *set, const char *file, const char *data, size_t len) {
        YamlDoc **docs = NULL;
        size_t n = 0;
        Diags d = DIAGS_INIT;

        if (yaml_parse(data, len, file, &docs, &n, &d) < 0) {
                for (size_t i = 0; i < d.n; i++) {
                        _cleanup_free_ char *s = diag_format(&d.items[i]);
                        fprintf(stderr, "%s\n", s);
                }
                diags_free(&d);
                return -EINVAL;
        }
        diags_free(&d);
        for (size_t i = 0; i < n; i++)
                add_root(set, file, docs[i], yamldoc_root(docs[i]));
        add_docs(set, docs, n);
        return 0;
}

static int load_file(ManifestSet *set, const char *file) {
        _cleanup_free_ char *data = NULL;
        size_t len;
        int r = read_file(STREQ(file, "<stdin>") ? "-" : file, MANIFEST_MAX_BYTES, &data, &len);

        if (r == -EFBIG)
                return ctl_error("%s: file too large (more than %u MiB)", file, MANIFEST_MAX_BYTES >> 20), r;
        if (r < 0)
                return ctl_error("cannot read %s: %s", file, strerror(-r)), r;
        if (endswith(file, ".json"))
                return load_json(set, file, data, len);
        /* A stream that starts like JSON is read as JSON, whatever its name. */
        const char *s = data + strspn(data, " \t\r\n");
        if ((*s == '{' || *s == '[') && !endswith(file, ".yaml") && !endswith(file, ".yml"))
                return load_json(set, file, data, len);
        return load_yaml(set, file, data, len);
}

int manifests_load(Ctl *c, ManifestSet *set) {
        _cleanup_free_ const char **paths = NULL;
        size_t n = ctl_opt_all(c, "filename", &paths);
        bool recursive = ctl_flag(c, "recursive");
        int r = 0;

        if (n == 0)
                return ctl_error("%s needs -f FILE|DIR|-", c->verb), -EINVAL;
        for (size_t i = 0; i < n && r >= 0; i++) {
                struct stat st;
                if (STREQ(paths[i], "-"))
                        add_file(set, xstrdup("<stdin>"));
                else if (stat(paths[i], &st) < 0) {
                        r = -errno;
                        ctl_error("cannot read %s: %s", paths[i], strerror(-r));
                }
                else if (S_ISDIR(st.st_mode))
                        r = collect_dir(set, paths[i], recursive);
                else
                        add_file(set, xstrdup(paths[i]));
        }
        if (r < 0)
                return r;

        /* Read every file, reporting every broken one before giving up. */
        for (size_t i = 0; i < set->n_files; i++)
                if (load_file(set, set->files[i]) < 0)
                        r = -EINVAL;
        if (r >= 0 && set->n == 0)
                return ctl_error("no objects found in the given files"), -EINVAL;
        return r;
}

/* ---- diagnostics --------------------------------------------------------------- */

static void print_diag(const ManifestSet *set, const Diag *in) {
        Diag d = *in;
        _cleanup_free_ char *path = NULL;

        if (in->index >= 0 && (size_t) in->index < set->n) {
                const Manifest *m = &set->items[in->index];
                const char *f = in->field ? in->field : "";
                if (!*m->prefix)
                        path = xstrdup(f);
                else if (!*f || f[0] == '[')
                        path = xasprintf("%s%s", m->prefix, f);
                else
                        path = xasprintf("%s.%s", m->prefix, f);
                d.file = (char *) m->file;
                d.line = d.col = 1;
                if (m->doc)
                        yamldoc_pos(m->doc, path,
                                    in->message && startswith(in->message, "unknown field"), &d.line,
                                    &d.col);
        }
        _cleanup_free_ char *s = diag_format(&d);
        fprintf(stderr, "%s\n", s);
}

int manifests_prepare(Ctl *c, ManifestSet *set) {
        Diags d = DIAGS_INIT;

        for (size_t i = 0; i < set->n; i++) {
                json_t *obj = set->items[i].obj;
                json_t *meta = json_object_get(obj, "metadata");
                if (c->ns_given && json_is_object(meta) && !json_object_get(meta, "namespace"))
                        json_object_set_new(meta, "namespace", json_string(ctl_namespace(c)));
                const Kind *k = kind_lookup(json_string_value(json_object_get(obj, "kind")) ?: "");
                if (k && !kind_user_writable(k)) {
                        _cleanup_free_ char *who = resource_display_name(obj);
                        diags_add(&d, (int) i, who, "kind", "%s objects are made by rprd; they cannot be applied",
                                  kind_name(k));
                        continue;
                }
                (void) resource_prepare(obj, (int) i, &d);
        }
        for (size_t i = 0; i < d.n; i++)
                print_diag(set, &d.items[i]);

        size_t n = d.n;
        diags_free(&d);
        if (n > 0) {
                ctl_error("%zu problem%s found; nothing was sent to rprd", n, n == 1 ? "" : "s");
                return -EINVAL;
        }
        return 0;
}

int manifests_print_status(ManifestSet *set, const ClientResponse *r, size_t first) {
        _cleanup_json_ json_t *j = json_loadb(r->body, r->len, 0, NULL);
        json_t *details = json_object_get(j, "details"), *v;
        size_t i;

        json_array_foreach(details, i, v) {
                json_t *idx = json_object_get(v, "index");
                Diag d = {
                        .index = json_is_integer(idx) ? (int) (json_integer_value(idx) + (json_int_t) first) : -1,
                        .object = (char *) json_string_value(json_object_get(v, "object")),
                        .field = (char *) json_string_value(json_object_get(v, "field")),
                        .message = (char *) (json_string_value(json_object_get(v, "message")) ?: "invalid"),
                };
                print_diag(set, &d);
        }
        _cleanup_free_ char *msg = client_error_message(r);
        return ctl_error("%s", msg);
}

size_t manifests_body_range(const ManifestSet *set, size_t first, size_t max_bytes, Buf *out) {
        size_t i = first;

        buf_puts(out, "{\"items\":[");
        for (; i < set->n; i++) {
                _cleanup_free_ char *obj = json_dumps(set->items[i].obj, JSON_COMPACT);
                size_t len = obj ? strlen(obj) : 0;
                /* one object always goes, however large: rprd judges it */
                if (i > first && out->len + len + 2 > max_bytes)
                        break;
                if (i > first)
                        buf_puts(out, ",");
                buf_append(out, obj, len);
        }
        buf_puts(out, "]}");
        return i - first;
}

char *manifests_body(const ManifestSet *set) {
        Buf b = BUF_INIT;

        manifests_body_range(set, 0, SIZE_MAX, &b);
        return buf_steal(&b);
}

void manifests_free(ManifestSet *set) {
        for (size_t i = 0; i < set->n; i++) {
                free(set->items[i].prefix);
                json_decref(set->items[i].obj);
        }
        free(set->items);
        for (size_t i = 0; i < set->n_files; i++)
                free(set->files[i]);
        free(set->files);
        yamldocs_free(set->docs, set->n_docs);
        *set = (ManifestSet){0};
}
