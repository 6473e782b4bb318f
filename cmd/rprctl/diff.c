/* diff: what apply would change, as a unified diff of the live object and
 * the object rprd would store (apply?dryRun=1&objects=1), both as YAML without the
 * fields rprd alone manages. Exit 0: no difference, 1: some, 2: error. */
#include <string.h>

#include "resource/resource.h"
#include "rprctl.h"
#include "yaml/yaml.h"

/* YAML of an object without what rprd manages alone; "" for none. */
static char *comparable_yaml(const json_t *obj) {
        static const char *const drop[] = {"resourceVersion", "generation", "managedFields", "creationTimestamp",
                                           "uid"};

        if (!obj)
                return xstrdup("");
        _cleanup_json_ json_t *copy = json_deep_copy(obj);
        json_t *meta = json_object_get(copy, "metadata");
        for (size_t i = 0; i < ELEMENTSOF(drop); i++)
                json_object_del(meta, drop[i]);
        json_object_del(copy, "status");
        return yaml_emit(copy);
}

static int diff_one(Ctl *c, const json_t *item) {
        const char *kind = json_string_value(json_object_get(item, "kind"));
        const char *ns = json_string_value(json_object_get(item, "namespace"));
        const char *name = json_string_value(json_object_get(item, "name"));
        const Kind *k = kind ? kind_lookup(kind) : NULL;
        _cleanup_json_ json_t *live = NULL;
        char singular[64];

        if (!k || !ns || !name)
                return ctl_error("rprd answered an apply item without kind, namespace and name"), -EBADMSG;
        _cleanup_free_ char *path = ctl_object_path(k, ns, name);
        int r = ctl_get_json(c, path, &live);
        if (r < 0 && r != -ENOENT)
                return r;

        _cleanup_free_ char *a = comparable_yaml(live);
        _cleanup_free_ char *b = comparable_yaml(json_object_get(item, "object"));
        ctl_kind_singular(k, singular, sizeof(singular));
        _cleanup_free_ char *la = xasprintf("%s/%s (live)", singular, name);
        _cleanup_free_ char *lb = xasprintf("%s/%s (applied)", singular, name);
        _cleanup_free_ char *d = text_diff(a, b, live ? la : "/dev/null", lb);
        if (!d)
                return 0;
        fputs(d, stdout);
        return 1;
}

int verb_diff(Ctl *c) {
        _cleanup_(manifests_free) ManifestSet set = {0};
        ClientResponse resp = {0};
        int ret = 0;

        if (c->n_pos > 0)
                return ctl_error("diff takes no arguments besides flags; use -f"), 2;
        if (manifests_load(c, &set) < 0 || manifests_prepare(c, &set) < 0)
                return 2;

        _cleanup_free_ char *body = manifests_body(&set);
        if (ctl_request(c, "POST", "/api/v1/apply?dryRun=1&objects=1", body, strlen(body), &resp) < 0)
                return 2;
        if (resp.status == 422 || resp.status == 400) {
                manifests_print_status(&set, &resp, 0);
                client_response_clear(&resp);
                return 2;
        }
        if (resp.status != 200) {
                ctl_http_error(c, &resp);
                client_response_clear(&resp);
                return 2;
        }

        _cleanup_json_ json_t *j = json_loadb(resp.body, resp.len, 0, NULL);
        client_response_clear(&resp);
        json_t *items = json_object_get(j, "items"), *item;
        size_t i;
        if (!json_is_array(items))
                return ctl_error("rprd answered something that is not an ApplyResult"), 2;
        json_array_foreach(items, i, item) {
                int r = diff_one(c, item);
                if (r < 0)
                        return 2;
                ret |= r;
        }
        return ret;
}
