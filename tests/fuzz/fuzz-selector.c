/* fuzz-selector: label selectors from ?labelSelector= and Binding specs.
 *
 * The first line of the input is the selector, the lines after it labels
 * ("key=value" each). A selector parses, or fails with a readable message
 * (UTF-8 in, UTF-8 out: the API quotes it); a parsed one answers the same
 * for the same labels every time, and no labels are no labels whether the
 * object has an empty labels map or none. Requirements are checked against
 * their meaning: an object that matches "k=v" has label k set to v. */
#include <string.h>

#include "common.h"
#include "resource/resource.h"

static json_t *labels_from(const char *text) {
        json_t *labels = json_object();

        for (const char *p = text; *p;) {
                const char *nl = strchr(p, '\n'), *end = nl ? nl : p + strlen(p);
                const char *eq = memchr(p, '=', (size_t) (end - p));
                if (eq) {
                        _cleanup_free_ char *k = xstrndup(p, (size_t) (eq - p));
                        json_t *v = json_stringn(eq + 1, (size_t) (end - eq - 1));
                        if (v)
                                json_object_set_new(labels, k, v);
                }
                p = nl ? nl + 1 : end;
        }
        return labels;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_free_ char *text = fuzz_string(data, size), *error = NULL;
        _cleanup_json_ json_t *labels = NULL, *empty = json_object();
        char *nl = strchr(text, '\n');
        Selector *s = NULL;

        if (nl)
                *nl = '\0';
        labels = labels_from(nl ? nl + 1 : "");

        if (selector_parse(text, &s, &error) < 0) {
                fuzz_check(error, "\"%s\" refused without a reason", text);
                fuzz_check(!fuzz_utf8(text) || fuzz_utf8(error), "\"%s\": reason not UTF-8", text);
                return 0;
        }
        fuzz_check(!error, "\"%s\" parsed with an error: %s", text, error);

        bool m = selector_matches(s, labels);
        fuzz_check(selector_matches(s, labels) == m, "\"%s\" answers twice differently", text);
        fuzz_check(selector_matches(s, NULL) == selector_matches(s, empty), "\"%s\": no labels vs {}", text);

        /* "k=v" alone: matches exactly when label k is v. */
        const char *eq = strchr(text, '=');
        if (eq && !strpbrk(text, ",!() \t") && eq[1] != '=' && eq > text) {
                _cleanup_free_ char *k = xstrndup(text, (size_t) (eq - text));
                const char *want = eq + 1, *have = json_string_value(json_object_get(labels, k));
                fuzz_check(m == (have && STREQ(have, want)), "\"%s\" on %s=%s: %d", text, k, have ?: "(none)", m);
        }
        selector_free(s);
        return 0;
}
