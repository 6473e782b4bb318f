/* apply: read the manifests, check every object locally, send them all in
 * one POST /api/v1/apply (all-or-nothing on the server too) and print one
 * line per object: "server/web-1 created". */
#include <string.h>

#include "resource/resource.h"
#include "rprctl.h"

/* "server/web-1 created" for one ApplyResult item. */
static void print_outcome(const json_t *item, bool dry_run) {
        const char *kind = json_string_value(json_object_get(item, "kind"));
        const char *name = json_string_value(json_object_get(item, "name"));
        const char *outcome = json_string_value(json_object_get(item, "outcome"));
        const Kind *k = kind ? kind_lookup(kind) : NULL;
        char singular[64];

        printf("%s/%s %s%s\n", k ? ctl_kind_singular(k, singular, sizeof(singular)) : (kind ?: "object"),
               name ?: "?", outcome ?: "applied", dry_run ? " (dry run)" : "");
}

int verb_apply(Ctl *c) {
        _cleanup_(manifests_free) ManifestSet set = {0};
        _cleanup_free_ char *body = NULL;
        ClientResponse resp = {0};
        bool dry_run = ctl_flag(c, "dry-run");
        int ret = 1;

        if (ctl_flag(c, "prune"))
                return ctl_error("--prune is not implemented yet");
        if (c->n_pos > 0)
                return ctl_error("apply takes no arguments besides flags (got \"%s\"); use -f", c->pos[0]);
        if (manifests_load(c, &set) < 0 || manifests_prepare(c, &set) < 0)
                return 1;

        body = manifests_body(&set);
        if (!body)
                return ctl_error("cannot encode the objects as JSON");
        if (ctl_request(c, "POST", dry_run ? "/api/v1/apply?dryRun=1" : "/api/v1/apply", body, strlen(body),
                        &resp) < 0)
                return 1;

        if (resp.status == 422 || resp.status == 400)
                ret = manifests_print_status(&set, &resp);
        else if (resp.status != 200 && resp.status != 201)
                ret = ctl_http_error(c, &resp);
        else {
                _cleanup_json_ json_t *j = json_loadb(resp.body, resp.len, 0, NULL);
                json_t *items = json_object_get(j, "items"), *v;
                size_t i;
                if (!json_is_array(items))
                        ret = ctl_error("rprd answered something that is not an ApplyResult");
                else {
                        json_array_foreach(items, i, v)
                                print_outcome(v, dry_run);
                        ret = 0;
                }
        }
        client_response_clear(&resp);
        return ret;
}
