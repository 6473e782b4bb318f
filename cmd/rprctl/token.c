/* token: API tokens. create prints the secret exactly once, alone on
 * stdout so that scripts can capture it; everything else goes to stderr.
 * list and revoke work on Token objects of type api. */
#include <string.h>

#include "resource/resource.h"
#include "rprctl.h"

static json_t *split_list(const char *s) {
        json_t *a = json_array();

        for (const char *p = s; p && *p;) {
                size_t n = strcspn(p, ",");
                if (n > 0)
                        json_array_append_new(a, json_stringn(p, n));
                p += n;
                if (*p == ',')
                        p++;
        }
        return a;
}

static int token_create(Ctl *c) {
        const char *role = ctl_opt(c, "role"), *expires = ctl_opt(c, "expires");
        const char *namespaces = ctl_opt(c, "namespaces");
        ClientResponse resp = {0};
        int ret;

        if (c->n_pos != 2)
                return ctl_error("token create needs one NAME");
        if (!role)
                return ctl_error("token create needs --role viewer|operator|admin");
        if (!resource_name_valid(c->pos[1]))
                return ctl_error("invalid token name \"%s\": use lower case letters, digits and '-'", c->pos[1]);

        _cleanup_json_ json_t *req = json_pack("{s:s,s:s,s:s}", "name", c->pos[1], "namespace", ctl_namespace(c),
                                               "role", role);
        if (expires)
                json_object_set_new(req, "expires", json_string(expires));
        if (namespaces)
                json_object_set_new(req, "namespaces", split_list(namespaces));
        _cleanup_free_ char *body = json_dumps(req, JSON_COMPACT);

        if (ctl_request(c, "POST", "/api/v1/tokens", body, strlen(body), &resp) < 0)
                return 1;
        if (resp.status != 201 && resp.status != 200)
                ret = ctl_http_error(c, &resp);
        else {
                _cleanup_json_ json_t *j = json_loadb(resp.body, resp.len, 0, NULL);
                const char *secret = json_string_value(json_object_get(j, "token"));
                if (!secret)
                        ret = ctl_error("rprd did not send the token");
                else {
                        fprintf(stderr, "token %s/%s created (role %s, expires %s); it is shown only once:\n",
                                ctl_namespace(c), c->pos[1], role,
                                json_string_value(json_object_get(j, "expires")) ?: "never");
                        printf("%s\n", secret);
                        ret = 0;
                }
        }
        if (resp.body)
                explicit_bzero(resp.body, resp.len);
        client_response_clear(&resp);
        return ret;
}

static int token_list(Ctl *c) {
        _cleanup_json_ json_t *list = NULL;
        const json_t *obj;
        size_t i;
        Table t;

        if (c->n_pos != 1)
                return ctl_error("token list takes no arguments");
        if (ctl_get_json(c, "/api/v1/tokens", &list) < 0)
                return 1;

        table_init(&t, c->all_namespaces ? 5 : 4);
        if (c->all_namespaces)
                table_add(&t, "NAMESPACE", "NAME", "ROLE", "EXPIRES", "AGE");
        else
                table_add(&t, "NAME", "ROLE", "EXPIRES", "AGE");
        json_array_foreach(json_object_get(list, "items"), i, obj) {
                const char *ns = json_path_str(obj, "metadata.namespace") ?: "default";
                if (!STREQ(json_path_str(obj, "spec.type") ?: "api", "api"))
                        continue;
                if (!c->all_namespaces && !STREQ(ns, ctl_namespace(c)))
                        continue;
                char age[32];
                format_age(json_path_str(obj, "metadata.creationTimestamp"), age, sizeof(age));
                const char *expires = json_path_str(obj, "spec.expires") ?: "never";
                if (c->all_namespaces)
                        table_add(&t, ns, json_path_str(obj, "metadata.name"), json_path_str(obj, "spec.role"),
                                  expires, age);
                else
                        table_add(&t, json_path_str(obj, "metadata.name"), json_path_str(obj, "spec.role"), expires,
                                  age);
        }
        if (t.n_rows > 1)
                table_print(&t, stdout, NULL);
        else
                fprintf(stderr, "No tokens found.\n");
        table_free(&t);
        return 0;
}

static int token_revoke(Ctl *c) {
        ClientResponse resp = {0};
        int ret = 0;

        if (c->n_pos < 2)
                return ctl_error("token revoke needs a NAME");
        for (size_t i = 1; i < c->n_pos; i++) {
                const Kind *k = kind_lookup("Token");
                _cleanup_free_ char *path = ctl_object_path(k, ctl_namespace(c), c->pos[i]);
                if (ctl_request(c, "DELETE", path, NULL, 0, &resp) < 0)
                        return 1;
                if (resp.status == 404)
                        ret = ctl_error("token \"%s\" not found", c->pos[i]);
                else if (resp.status != 200)
                        ret = ctl_http_error(c, &resp);
                else
                        printf("token/%s revoked\n", c->pos[i]);
                client_response_clear(&resp);
        }
        return ret;
}

int verb_token(Ctl *c) {
        const char *sub = c->n_pos > 0 ? c->pos[0] : NULL;

        if (sub && STREQ(sub, "create"))
                return token_create(c);
        if (sub && (STREQ(sub, "list") || STREQ(sub, "ls")))
                return token_list(c);
        if (sub && (STREQ(sub, "revoke") || STREQ(sub, "delete")))
                return token_revoke(c);
        return ctl_error("token needs create, list or revoke");
}
