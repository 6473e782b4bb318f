/* resource-util.c: the small string helpers the validator's messages need —
 * dotted field paths as the yaml module reads them back (spec.tasks.build,
 * metadata.labels["app.kubernetes.io/name"], spec.dependsOn[0]) and the
 * "(got ...)" part that shows a person what they wrote. */
#include <stdio.h>
#include <string.h>

#include "resource/resource-private.h"

#define GOT_MAX 64

char *value_got(const json_t *v) {
        if (!v)
                return xstrdup("(got nothing)");

        switch (json_typeof(v)) {
        case JSON_OBJECT:
                return xstrdup("(got an object)");
        case JSON_ARRAY:
                return xstrdup("(got a list)");
        case JSON_STRING: {
                _cleanup_free_ char *s = json_dumps(v, JSON_ENCODE_ANY);
                if (!s)
                        return xstrdup("(got a string)");
                if (strlen(s) > GOT_MAX)
                        return xasprintf("(got %.*s...\")", GOT_MAX - 4, s);
                return xasprintf("(got %s)", s);
        }
        case JSON_INTEGER:
                return xasprintf("(got %" JSON_INTEGER_FORMAT ")", json_integer_value(v));
        case JSON_REAL:
                return xasprintf("(got %g)", json_real_value(v));
        case JSON_TRUE:
                return xstrdup("(got true)");
        case JSON_FALSE:
                return xstrdup("(got false)");
        case JSON_NULL:
                return xstrdup("(got null)");
        }
        return xstrdup("(got something else)");
}
