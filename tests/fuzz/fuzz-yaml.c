/* fuzz-yaml: YAML manifests in, jansson values out.
 *
 * Any input either parses, or fails with a diagnostic that has a position
 * and a readable (UTF-8) message, as the API quotes it in a JSON answer.
 * Every document parsed, emitted again by yaml_emit(), parses back to an
 * equal value; every field path has a position. */
#include <string.h>

#include "common.h"
#include "yaml/yaml.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        (void) argc, (void) argv;
        fuzz_quiet();
        return 0;
}

/* Every node has a position under the path the validator would name it
 * by; any other text as a path (a key as it is) falls back to one. */
static void check_positions(const YamlDoc *doc, const json_t *v, const char *path) {
        unsigned line = 0, col = 0;
        const char *key;
        json_t *child;
        size_t i;

        yamldoc_pos(doc, path, false, &line, &col);
        fuzz_check(line > 0 && col > 0, "no position for \"%s\"", path);
        if (json_is_object(v))
                json_object_foreach((json_t *) v, key, child) {
                        _cleanup_free_ char *p = field_path_key(path, key);
                        yamldoc_pos(doc, key, true, &line, &col);
                        check_positions(doc, child, p);
                }
        else if (json_is_array(v))
                json_array_foreach(v, i, child) {
                        _cleanup_free_ char *p = field_path_index(path, i);
                        check_positions(doc, child, p);
                }
}

static void round_trip(const json_t *root) {
        _cleanup_free_ char *text = yaml_emit(root);
        Diags d = DIAGS_INIT;
        YamlDoc **docs = NULL;
        size_t n = 0;

        fuzz_check(text, "yaml_emit failed");
        int r = yaml_parse(text, strlen(text), "emitted", &docs, &n, &d);
        fuzz_check(r == 0 && n == 1, "emitted YAML does not parse (%d, %zu docs, %s):\n%s", r, n,
                   d.n ? d.items[0].message : "", text);
        fuzz_check(json_equal(root, yamldoc_root(docs[0])), "emitted YAML reads back different:\n%s", text);
        yamldocs_free(docs, n);
        diags_free(&d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        Diags d = DIAGS_INIT;
        YamlDoc **docs = NULL;
        size_t n = 0;

        if (yaml_parse((const char *) data, size, "fuzz.yaml", &docs, &n, &d) < 0) {
                fuzz_check(d.n > 0, "failed without a diagnostic");
                for (size_t i = 0; i < d.n; i++) {
                        fuzz_check(d.items[i].line > 0, "diagnostic without a line: %s", d.items[i].message);
                        fuzz_check(d.items[i].message && fuzz_utf8(d.items[i].message), "message not UTF-8");
                }
                diags_free(&d);
                return 0;
        }
        for (size_t i = 0; i < n; i++) {
                const json_t *root = yamldoc_root(docs[i]);
                fuzz_check(root, "document %zu has no value", i);
                round_trip(root);
                check_positions(docs[i], root, "");
        }
        yamldocs_free(docs, n);
        diags_free(&d);
        return 0;
}
