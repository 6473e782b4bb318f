/* delete: objects by KIND NAME... or as the manifests of -f name them;
 * "server/web-1 deleted" for each, an error for each one missing. */
#include <string.h>

#include "resource/resource.h"
#include "rprctl.h"

static int delete_one(Ctl *c, const Kind *k, const char *ns, const char *name) {
        _cleanup_free_ char *path = ctl_object_path(k, ns, name);
        ClientResponse resp = {0};
        char singular[64];
        int ret = 0;

        ctl_kind_singular(k, singular, sizeof(singular));
        if (ctl_request(c, "DELETE", path, NULL, 0, &resp) < 0)
                return -EIO;
        if (resp.status == 404)
                ret = ctl_error("%s \"%s\" not found", singular, name);
        else if (resp.status != 200 && resp.status != 202)
                ret = ctl_http_error(c, &resp);
        else
                printf("%s/%s deleted\n", singular, name);
        client_response_clear(&resp);
        return ret;
}

static int delete_files(Ctl *c) {
        _cleanup_(manifests_free) ManifestSet set = {0};
        int ret = 0;

        if (manifests_load(c, &set) < 0)
                return 1;
        for (size_t i = 0; i < set.n; i++) {
                const json_t *obj = set.items[i].obj;
                const char *kind = json_path_str(obj, "kind");
                const char *name = json_path_str(obj, "metadata.name");
                const char *ns = json_path_str(obj, "metadata.namespace") ?: ctl_namespace(c);
                const Kind *k = kind ? kind_lookup(kind) : NULL;

                if (!k || !name) {
                        ret = ctl_error("%s: object %zu has no known kind and metadata.name", set.items[i].file,
                                        i);
                        continue;
                }
                int r = delete_one(c, k, ns, name);
                if (r < 0)
                        return 1;
                ret |= r;
        }
        return ret;
}

int verb_delete(Ctl *c) {
        int ret = 0;

        if (ctl_opt(c, "filename")) {
                if (c->n_pos > 0)
                        return ctl_error("give either -f or KIND NAME..., not both");
                return delete_files(c);
        }
        if (c->n_pos == 0)
                return ctl_error("delete needs -f FILE or KIND NAME...");

        _cleanup_free_ char *kind_arg = xstrdup(c->pos[0]);
        char *slash = strchr(kind_arg, '/');
        if (slash)
                *slash++ = 0;
        const Kind *k = ctl_kind(kind_arg);
        if (!k)
                return 1;
        if (!slash && c->n_pos < 2)
                return ctl_error("delete needs a NAME after the kind");

        if (slash) {
                int r = delete_one(c, k, ctl_namespace(c), slash);
                if (r < 0)
                        return 1;
                ret |= r;
        }
        for (size_t i = 1; i < c->n_pos; i++) {
                /* "delete server/a server/b" names kinds per argument. */
                const char *name = c->pos[i];
                const Kind *ki = k;
                _cleanup_free_ char *arg = NULL;
                if (slash) {
                        arg = xstrdup(c->pos[i]);
                        char *s = strchr(arg, '/');
                        if (!s)
                                return ctl_error("\"%s\": use KIND/NAME like the first argument", c->pos[i]);
                        *s = 0;
                        name = s + 1;
                        ki = ctl_kind(arg);
                        if (!ki)
                                return 1;
                }
                int r = delete_one(c, ki, ctl_namespace(c), name);
                if (r < 0)
                        return 1;
                ret |= r;
        }
        return ret;
}
