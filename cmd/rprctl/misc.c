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

int verb_reconcile(Ctl *c) {
        ClientResponse resp = {0};
        int ret = 0;

        if (!ctl_flag(c, "due"))
                return ctl_error("reconcile needs --due (what is due is all it does)");
        if (ctl_request(c, "POST", "/api/v1/reconcile?due=1", "{}", 2, &resp) < 0)
                return 1;
        if (resp.status >= 300)
                ret = ctl_http_error(c, &resp);
        else {
                _cleanup_json_ json_t *j = json_loadb(resp.body, resp.len, 0, NULL);
                const json_t *next = json_object_get(j, "nextDueSeconds");
                printf("rprd is up: %" JSON_INTEGER_FORMAT " objects, %" JSON_INTEGER_FORMAT " reconciles queued",
                       json_int_at(j, "objects", 0), json_int_at(j, "pending", 0));
                if (json_is_integer(next))
                        printf(", next due in %" JSON_INTEGER_FORMAT "s", json_integer_value(next));
                printf("\n");
        }
        client_response_clear(&resp);
        return ret;
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
