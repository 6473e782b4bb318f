/* fuzz-resource: validation and defaulting of objects as users write them.
 *
 * Each YAML document of the input goes through resource_prepare(). It is
 * accepted, or refused with diagnostics whose messages are readable
 * (UTF-8); an accepted object is a fixed point (preparing it again accepts
 * it unchanged), and redaction and display names never fail on it. */
#include <string.h>

#include "common.h"
#include "resource/resource.h"
#include "yaml/yaml.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        (void) argc, (void) argv;
        fuzz_quiet();
        if (resource_init() < 0)
                fuzz_fail(__FILE__, __LINE__, "resource_init", "the embedded schemas do not load");
        return 0;
}

static void check_diags(const Diags *d) {
        fuzz_check(d->n > 0, "refused without a diagnostic");
        for (size_t i = 0; i < d->n; i++) {
                const Diag *e = &d->items[i];
                fuzz_check(e->message && fuzz_utf8(e->message), "message not UTF-8");
                fuzz_check(!e->field || fuzz_utf8(e->field), "field not UTF-8: %s", e->message);
                fuzz_check(!e->object || fuzz_utf8(e->object), "object not UTF-8: %s", e->message);
        }
}

static void prepare(const json_t *doc, int index) {
        _cleanup_json_ json_t *obj = json_deep_copy(doc), *again = NULL;
        _cleanup_free_ char *name = NULL;
        Diags d = DIAGS_INIT;

        if (resource_prepare(obj, index, &d) < 0) {
                check_diags(&d);
                diags_free(&d);
                return;
        }
        fuzz_check(d.n == 0, "accepted with %zu diagnostics: %s", d.n, d.items[0].message);

        again = json_deep_copy(obj);
        if (resource_prepare(again, index, &d) < 0) {
                _cleanup_free_ char *text = json_dumps(obj, JSON_COMPACT);
                fuzz_fail(__FILE__, __LINE__, "fixed point", "prepared object refused: %s: %s", d.items[0].message,
                          text);
        }
        if (!json_equal(obj, again)) {
                _cleanup_free_ char *a = json_dumps(obj, JSON_COMPACT), *b = json_dumps(again, JSON_COMPACT);
                fuzz_fail(__FILE__, __LINE__, "fixed point", "prepared twice differs:\n%s\n%s", a, b);
        }
        name = resource_display_name(obj);
        fuzz_check(name && fuzz_utf8(name), "display name");
        resource_redact(again);
        diags_free(&d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        Diags d = DIAGS_INIT;
        YamlDoc **docs = NULL;
        size_t n = 0;

        if (yaml_parse((const char *) data, size, "fuzz.yaml", &docs, &n, &d) == 0)
                for (size_t i = 0; i < n; i++)
                        prepare(yamldoc_root(docs[i]), (int) i);
        yamldocs_free(docs, n);
        diags_free(&d);
        return 0;
}
