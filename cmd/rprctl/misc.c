/* misc: the verbs that need little — explain (from the embedded schemas,
 * no server needed) and version (client and server). */
#include <string.h>

#include "resource/resource.h"
#include "rprctl.h"

int verb_explain(Ctl *c) {
        _cleanup_free_ char *text = NULL, *why = NULL;

        if (c->n_pos != 1)
                return ctl_error("explain needs one KIND[.field.path] (e.g. rprctl explain server.spec.check)");
        /* "servers/..." or "srv.spec": resource_explain knows every kind name. */
        int r = resource_explain(c->pos[0], &text, &why);
        if (r < 0)
                return ctl_error("%s", why ? why : strerror(-r));
        fputs(text, stdout);
        if (*text && !endswith(text, "\n"))
                fputc('\n', stdout);
        return 0;
}

int verb_version(Ctl *c) {
        _cleanup_json_ json_t *v = NULL;

        printf("rprctl %s\n", RPR_VERSION);
        fflush(stdout);
        if (ctl_get_json(c, "/api/v1/version", &v) < 0)
                return 1;
        printf("rprd %s (%s)\n", json_string_value(json_object_get(v, "version")) ?: "unknown",
               json_string_value(json_object_get(v, "apiVersion")) ?: "unknown");
        return 0;
}
