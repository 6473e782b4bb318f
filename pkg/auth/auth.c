/* auth.c: roles, scopes and what an object may hold for its writer (see
 * auth.h).
 *
 * Every rule is a pure function of the caller and the object, so that the
 * API can apply them at every write — apply, dry run, PUT, token creation —
 * and the tests can try them without a server. */
#include <string.h>
#include <strings.h>

#include "auth/auth.h"
#include "resource/resource.h"
#include "token/token.h"

static const char *const role_names[_AUTH_ROLE_MAX] = {
        [AUTH_ROLE_NONE] = "none",
        [AUTH_ROLE_VIEWER] = "viewer",
        [AUTH_ROLE_OPERATOR] = "operator",
        [AUTH_ROLE_ADMIN] = "admin",
};

AuthRole auth_role_from_string(const char *s) {
        for (int r = AUTH_ROLE_VIEWER; s && r < _AUTH_ROLE_MAX; r++)
                if (STREQ(s, role_names[r]))
                        return (AuthRole) r;
        return _AUTH_ROLE_INVALID;
}

const char *auth_role_to_string(AuthRole r) {
        return r >= 0 && r < _AUTH_ROLE_MAX ? role_names[r] : "none";
}

AuthRole auth_verb_role(AuthVerb verb) {
        switch (verb) {
        case AUTH_VERB_READ:
                return AUTH_ROLE_VIEWER;
        case AUTH_VERB_OPERATE:
                return AUTH_ROLE_OPERATOR;
        case AUTH_VERB_WRITE:
        case _AUTH_VERB_MAX:
                break;
        }
        return AUTH_ROLE_ADMIN;
}

/* ---- scope ------------------------------------------------------------------ */

bool auth_may_agent(const AuthCaller *c, const char *ns, const char *server) {
        return c && c->agent && c->role == AUTH_ROLE_NONE && c->namespaces && c->namespaces[0] &&
               !c->namespaces[1] && ns && server && STREQ(c->namespaces[0], ns) && STREQ(c->agent, server);
}

bool auth_unrestricted(const AuthCaller *c) {
        return c && c->role == AUTH_ROLE_ADMIN && !c->namespaces;
}

static bool strv_contains(const char *const *l, const char *s) {
        for (size_t i = 0; l && l[i]; i++)
                if (STREQ(l[i], s))
                        return true;
        return false;
}

bool auth_may_namespace(const AuthCaller *c, const char *ns) {
        if (!c->namespaces)
                return true;
        return ns && strv_contains(c->namespaces, ns);
}

bool auth_may_verb(const AuthCaller *c, AuthVerb verb, const char *kind) {
        /* kind is where per-kind permissions (Org members) will plug in;
         * a token's role covers every kind alike. */
        (void) kind;
        return c->role >= auth_verb_role(verb);
}

bool auth_may(const AuthCaller *c, AuthVerb verb, const char *kind, const char *ns) {
        return auth_may_verb(c, verb, kind) && auth_may_namespace(c, ns);
}

char *auth_scope_text(const AuthCaller *c) {
        Buf b = BUF_INIT;

        if (!c->namespaces)
                return xstrdup("every namespace");
        for (size_t i = 0; c->namespaces[i]; i++)
                buf_printf(&b, "%s%s", i ? ", " : "", c->namespaces[i]);
        return b.len ? buf_steal(&b) : (buf_free(&b), xstrdup("no namespace"));
}

void auth_strv_free(char **l) {
        for (size_t i = 0; l && l[i]; i++)
                free(l[i]);
        free(l);
}

char **auth_token_scope(const char *ns, const json_t *namespaces) {
        bool home = !ns || STREQ(ns, AUTH_HOME_NAMESPACE);
        size_t n = 0, i;
        const json_t *v;
        char **l;

        if (!json_is_array(namespaces) && home)
                return NULL;
        l = xcalloc(json_array_size(namespaces) + 2, sizeof *l);
        if (!json_is_array(namespaces)) {
                l[0] = xstrdup(ns);
                return l;
        }
        /* Outside the home namespace a Token reaches its own namespace at
         * most, whatever it lists: rprd cannot know who wrote it, only that
         * its writer could write there. */
        json_array_foreach(namespaces, i, v) {
                const char *s = json_string_value(v);
                if (s && (home || STREQ(s, ns)) && !strv_contains((const char *const *) l, s))
                        l[n++] = xstrdup(s);
        }
        return l;
}

/* ---- what reaches rprd's host -------------------------------------------------- */

#define NEEDS_UNRESTRICTED "needs an unrestricted admin token"

static const char *spec_str(const json_t *spec, const char *key) {
        return json_string_value(json_object_get(spec, key));
}

static size_t server_host_fields(const json_t *spec, const char *what, int index, Diags *d) {
        const char *transport = spec_str(spec, "transport");
        size_t n = 0;

        if (transport && STREQ(transport, "local"))
                n += diags_add(d, index, what, "spec.transport",
                               "local execution on rprd's host " NEEDS_UNRESTRICTED) != 0;
        if (json_object_get(spec, "identityFile"))
                n += diags_add(d, index, what, "spec.identityFile",
                               "a key file on rprd's host " NEEDS_UNRESTRICTED "; use keyRef") != 0;
        if (json_object_get(spec, "knownHostsFile"))
                n += diags_add(d, index, what, "spec.knownHostsFile",
                               "a file on rprd's host " NEEDS_UNRESTRICTED "; use hostKey") != 0;
        return n;
}

static size_t pipeline_host_fields(const json_t *spec, const char *what, int index, Diags *d) {
        const json_t *tasks = json_object_get(spec, "tasks"), *task;
        const char *name;
        size_t n = 0;

        json_object_foreach((json_t *) tasks, name, task) {
                if (!json_is_object(task) || json_object_get(task, "server") ||
                    json_object_get(task, "servers"))
                        continue;
                _cleanup_free_ char *field = field_path_key("spec.tasks", name);
                n += diags_add(d, index, what, field,
                               "a task without server or servers runs on rprd's host; "
                               "that " NEEDS_UNRESTRICTED) != 0;
        }
        return n;
}

static size_t token_host_fields(const json_t *spec, const char *what, int index, Diags *d) {
        const json_t *from = json_object_get(spec, "valueFrom");
        size_t n = 0;

        if (json_object_get(from, "file"))
                n += diags_add(d, index, what, "spec.valueFrom.file",
                               "a secret read from a file on rprd's host " NEEDS_UNRESTRICTED) != 0;
        if (json_object_get(from, "env"))
                n += diags_add(d, index, what, "spec.valueFrom.env",
                               "a secret read from rprd's environment " NEEDS_UNRESTRICTED) != 0;
        return n;
}

static size_t repo_host_fields(const json_t *spec, const char *what, int index, Diags *d) {
        const char *provider = spec_str(spec, "provider"), *url = spec_str(spec, "url");

        if (!provider || !STREQ(provider, "git") || !url)
                return 0;
        if (url[0] != '/' && strncasecmp(url, "file:", 5) != 0)
                return 0;
        return diags_add(d, index, what, "spec.url",
                         "a repository in rprd's own file system " NEEDS_UNRESTRICTED) != 0;
}

/* A Sync that may write what reaches the host is as strong as what it
 * writes. */
static size_t sync_host_fields(const json_t *spec, const char *what, int index, Diags *d) {
        if (!json_is_true(json_object_get(spec, "hostAccess")))
                return 0;
        return diags_add(d, index, what, "spec.hostAccess",
                         "a Sync whose manifests may reach rprd's host " NEEDS_UNRESTRICTED) != 0;
}

size_t auth_host_fields(const json_t *obj, int index, Diags *d) {
        const char *kind = json_string_value(json_object_get(obj, "kind"));
        const json_t *spec = json_object_get(obj, "spec");

        if (!kind || !json_is_object(spec))
                return 0;
        _cleanup_free_ char *what = resource_display_name(obj);
        if (STREQ(kind, "Server"))
                return server_host_fields(spec, what, index, d);
        if (STREQ(kind, "Pipeline"))
                return pipeline_host_fields(spec, what, index, d);
        if (STREQ(kind, "Token"))
                return token_host_fields(spec, what, index, d);
        if (STREQ(kind, "Repo"))
                return repo_host_fields(spec, what, index, d);
        if (STREQ(kind, "Sync"))
                return sync_host_fields(spec, what, index, d);
        return 0;
}

/* ---- what a token may grant ------------------------------------------------------- */

static size_t grant_scope(const AuthCaller *c, const char *ns, const json_t *spec, const char *what,
                          int index, Diags *d) {
        const json_t *nss = json_object_get(spec, "namespaces");
        bool home = STREQ(ns, AUTH_HOME_NAMESPACE);
        size_t n = 0, i;
        const json_t *v;

        json_array_foreach(nss, i, v) if (!home && json_is_string(v) &&
                                          !STREQ(json_string_value(v),
                                                 ns)) return diags_add(d, index, what, "spec.namespaces",
                                                                       "a Token in namespace %s can only "
                                                                       "grant namespace %s, not %s; tokens "
                                                                       "that span namespaces live in "
                                                                       "namespace " AUTH_HOME_NAMESPACE,
                                                                       ns, ns, json_string_value(v)) != 0;
        if (!c->namespaces)
                return 0;

        char **scope = auth_token_scope(ns, nss);
        _cleanup_free_ char *mine = auth_scope_text(c);
        if (!scope)
                n += diags_add(d, index, what, "spec.namespaces",
                               "token %s is limited to %s and cannot create a token for every namespace; "
                               "list namespaces within its own",
                               c->name, mine) != 0;
        for (size_t j = 0; scope && scope[j]; j++)
                if (!strv_contains(c->namespaces, scope[j]))
                        n += diags_add(d, index, what, "spec.namespaces",
                                       "token %s may not grant namespace %s (it is limited to %s)", c->name,
                                       scope[j], mine) != 0;
        auth_strv_free(scope);
        return n;
}

size_t auth_may_grant(const AuthCaller *c, const char *ns, const json_t *spec, int index, Diags *d) {
        const char *role_text = spec_str(spec, "role");
        AuthRole role = role_text ? auth_role_from_string(role_text) : AUTH_ROLE_VIEWER;
        size_t n = 0;

        ns = ns ? ns : AUTH_HOME_NAMESPACE;
        if (role > c->role)
                n += diags_add(d, index, NULL, "spec.role", "token %s has role %s and cannot grant role %s",
                               c->name, auth_role_to_string(c->role), auth_role_to_string(role)) != 0;
        return n + grant_scope(c, ns, spec, NULL, index, d);
}

size_t auth_check_write(const AuthCaller *c, const json_t *obj, int index, Diags *d) {
        const char *kind = json_string_value(json_object_get(obj, "kind"));
        const json_t *meta = json_object_get(obj, "metadata"), *spec = json_object_get(obj, "spec");
        size_t n = 0, first = d->n;

        if (!auth_unrestricted(c))
                n += auth_host_fields(obj, index, d);
        if (kind && STREQ(kind, "Token") && json_is_object(spec) && spec_str(spec, "type") &&
            STREQ(spec_str(spec, "type"), "api"))
                n += auth_may_grant(c, json_str_at(meta, "namespace"), spec, index, d);
        /* A Sync writes into spec.namespace: its writer must hold it. */
        if (kind && STREQ(kind, "Sync") && spec_str(spec, "namespace") &&
            !auth_may_namespace(c, spec_str(spec, "namespace")))
                n += diags_add(d, index, NULL, "spec.namespace",
                               "a Sync writes objects into namespace %s, which is outside your scope",
                               spec_str(spec, "namespace")) != 0;

        /* Name the object in the grant problems too. */
        _cleanup_free_ char *what = resource_display_name(obj);
        for (size_t i = first; i < d->n; i++)
                if (!d->items[i].object)
                        d->items[i].object = xstrdup(what);
        return n;
}

/* ---- secrets -------------------------------------------------------------------- */

const char *auth_secret_weakness(const char *secret, size_t len) {
        bool seen[256] = {false};
        size_t distinct = 0, steps = 0;

        if (len < AUTH_SECRET_MIN_LEN)
                return "it is shorter than 16 characters";
        for (size_t i = 0; i < len; i++) {
                unsigned char ch = (unsigned char) secret[i];
                distinct += !seen[ch];
                seen[ch] = true;
                if (i > 0) {
                        int delta = ch - (unsigned char) secret[i - 1];
                        steps += delta >= -1 && delta <= 1;
                }
        }
        if (distinct < 8)
                return "it has fewer than 8 different characters";
        /* "abcdefghijklmnop", "1234567890123456", "aabbccdd...": steps of
         * at most one between neighbours. */
        if (steps * 4 >= (len - 1) * 3)
                return "it is mostly a run of neighbouring characters";
        return NULL;
}

size_t auth_check_secrets(const json_t *obj, int index, Diags *d) {
        const char *kind = json_string_value(json_object_get(obj, "kind"));
        const json_t *spec = json_object_get(obj, "spec");
        const char *value = spec_str(spec, "value"), *type = spec_str(spec, "type"), *weak, *problem;

        if (!kind || !STREQ(kind, "Token") || !value)
                return 0;
        _cleanup_free_ char *what = resource_display_name(obj);
        size_t len = json_string_length(json_object_get(spec, "value"));
        problem = token_secret_problem(type, value, len);
        if (problem)
                return diags_add(d, index, what, "spec.value", "%s", problem) != 0;
        if (type && (STREQ(type, "api") || STREQ(type, "agent")) &&
            (weak = auth_secret_weakness(value, len)))
                return diags_add(d, index, what, "spec.value",
                                 "is too weak for an %s token: %s; use at least 16 random characters "
                                 "(rprctl token create makes one)",
                                 type, weak) != 0;
        return 0;
}
