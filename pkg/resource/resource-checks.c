/* resource-checks.c: what a kind needs beyond its schema — rules that tie
 * fields together (an ssh Server needs a host, a github Repo needs a url or
 * owner and name, a Pipeline's tasks form a DAG) and the one completion
 * prepare does (an api Token's inline value becomes its hash).
 *
 * One small function per kind, found through a table; each runs on a
 * defaulted spec that may still hold type errors the schema reported, so
 * every check reads values defensively and reports only its own problems. */
#include <regex.h>
#include <string.h>

#include "resource/resource-private.h"

static const char *spec_str(const json_t *spec, const char *key) {
        return json_string_value(json_object_get(spec, key));
}

static bool regex_matches(const char *pattern, const char *s) {
        regex_t re;

        if (regcomp(&re, pattern, REG_EXTENDED | REG_NOSUB) != 0)
                return false;
        bool m = regexec(&re, s, 0, NULL, 0) == 0;
        regfree(&re);
        return m;
}

/* ---- Token ------------------------------------------------------------------ */

static void token_checks(json_t *spec, Check *c) {
        const char *type = spec_str(spec, "type");
        bool api = type && STREQ(type, "api"), agent = type && STREQ(type, "agent");

        if (!json_object_get(spec, "value") && !json_object_get(spec, "valueFrom") &&
            !json_object_get(spec, "valueHash"))
                check_report(c, "spec", "needs one of: value, valueFrom, valueHash");

        if (type && !api) {
                if (json_object_get(spec, "role"))
                        check_report(c, "spec.role", "is only allowed for type api");
                if (json_object_get(spec, "namespaces"))
                        check_report(c, "spec.namespaces", "is only allowed for type api");
        }
        if (type && !agent) {
                if (json_object_get(spec, "server"))
                        check_report(c, "spec.server", "is only allowed for type agent");
                if (json_object_get(spec, "singleUse"))
                        check_report(c, "spec.singleUse", "is only allowed for type agent");
        }
        if (type && !api && !agent) {
                if (json_object_get(spec, "valueHash"))
                        check_report(c, "spec.valueHash", "is only allowed for types api and agent");
                return;
        }
        if (!api && !agent)
                return;
        if (agent && json_object_get(spec, "valueFrom"))
                check_report(c, "spec.valueFrom",
                             "is not allowed for type agent: rprd keeps only the hash of an inline value");
        if (agent && json_object_get(spec, "server") && json_object_get(spec, "singleUse"))
                check_report(c, "spec.singleUse",
                             "is for join tokens, not for an agent's credential (server)");

        if (api && !json_object_get(spec, "role"))
                json_object_set_new(spec, "role", json_string("viewer"));

        /* API and agent tokens are stored as hashes: the inline secret goes now. */
        const char *value = spec_str(spec, "value");
        if (value && !json_object_get(spec, "valueHash")) {
                char hex[65];
                sha256_hex(value, strlen(value), hex);
                _cleanup_free_ char *hash = xasprintf("sha256:%s", hex);
                json_object_set_new(spec, "valueHash", json_string(hash));
                json_object_del(spec, "value");
        }
}

/* ---- Repo ------------------------------------------------------------------- */

static void repo_checks(json_t *spec, Check *c) {
        const char *provider = spec_str(spec, "provider"), *url = spec_str(spec, "url");

        if (!provider)
                return;
        if (STREQ(provider, "git")) {
                const char *github_only[] = {"owner", "name", "apiURL"};
                for (size_t i = 0; i < ELEMENTSOF(github_only); i++)
                        if (json_object_get(spec, github_only[i])) {
                                _cleanup_free_ char *p = xasprintf("spec.%s", github_only[i]);
                                check_report(c, p, "is only allowed for provider github");
                        }
                if (!json_object_get(spec, "url"))
                        check_report(c, "spec.url", "is required for provider git");
                else if (url && !regex_matches("^([a-z][a-z0-9+.-]*://[^[:space:]]+|[^@/[:space:]]+@[^:/"
                                               "[:space:]]+:[^[:space:]]+|/[^[:space:]]*)$",
                                               url))
                        check_report(c, "spec.url",
                            "must be a git URL like https://host/repo.git, ssh://git@host/repo.git or "
                            "file:///srv/git/site.git (got \"%s\")",
                            url);
                return;
        }

        /* github: url, or owner and name. */
        if (json_object_get(spec, "url")) {
                if (url && !regex_matches("^https://[^/[:space:]]+/[^/[:space:]]+/[^/[:space:]]+/?$", url))
                        check_report(c, "spec.url",
                            "must be a GitHub repository URL like https://github.com/OWNER/NAME (got "
                            "\"%s\")",
                            url);
                return;
        }
        if (!json_object_get(spec, "owner"))
                check_report(c, "spec.owner", "is required (or url)");
        if (!json_object_get(spec, "name"))
                check_report(c, "spec.name", "is required (or url)");
}

/* ---- Server ----------------------------------------------------------------- */

static void server_checks(json_t *spec, Check *c) {
        const char *transport = spec_str(spec, "transport");

        if (transport && STREQ(transport, "ssh") && !json_object_get(spec, "host"))
                check_report(c, "spec.host", "is required for transport ssh");
}

/* ---- Pipeline --------------------------------------------------------------- */

/* The tasks as a graph of indices: deps[i] are the tasks i depends on. */
typedef struct Dag {
        size_t n;
        const char **names;
        size_t **deps;
        size_t *n_deps;
} Dag;

static void dag_done(Dag *g) {
        for (size_t i = 0; i < g->n; i++)
                free(g->deps[i]);
        free(g->deps);
        free(g->n_deps);
        free(g->names);
}

/* Builds the graph and reports dependencies on tasks that do not exist. */
static void dag_build(const json_t *tasks, Dag *g, Check *c) {
        _cleanup_json_ json_t *index = json_object();
        const char *name;
        json_t *task;
        size_t i = 0;

        g->n = json_object_size(tasks);
        g->names = xcalloc(g->n + 1, sizeof(char *));
        g->deps = xcalloc(g->n + 1, sizeof(size_t *));
        g->n_deps = xcalloc(g->n + 1, sizeof(size_t));
        json_object_foreach((json_t *) tasks, name, task) {
                g->names[i] = name;
                json_object_set_new(index, name, json_integer((json_int_t) i));
                i++;
        }

        i = 0;
        json_object_foreach((json_t *) tasks, name, task) {
                const json_t *deps = json_object_get(task, "dependsOn");
                size_t j;
                json_t *d;

                g->deps[i] = xcalloc(json_array_size(deps) + 1, sizeof(size_t));
                json_array_foreach(deps, j, d) {
                        const char *dep = json_string_value(d);
                        const json_t *at = dep ? json_object_get(index, dep) : NULL;
                        if (!dep)
                                continue; /* the schema said so already */
                        if (!at) {
                                _cleanup_free_ char *tp = field_path_key("spec.tasks", name);
                                _cleanup_free_ char *p = xasprintf("%s.dependsOn[%zu]", tp, j);
                                check_report(c, p, "unknown task \"%s\"", dep);
                                continue;
                        }
                        g->deps[i][g->n_deps[i]++] = (size_t) json_integer_value(at);
                }
                i++;
        }
}

/* Kahn's algorithm, iterative so that a huge pipeline cannot exhaust the
 * stack. Returns true if every task could be ordered. left[i] counts the
 * unfinished dependencies of i afterwards (non-zero for tasks on or behind a
 * cycle). */
static bool dag_sort(const Dag *g, size_t *left) {
        _cleanup_free_ size_t *queue = xcalloc(g->n + 1, sizeof(size_t));
        _cleanup_free_ size_t *n_users = xcalloc(g->n + 1, sizeof(size_t));
        _cleanup_free_ size_t *start = xcalloc(g->n + 2, sizeof(size_t));
        size_t head = 0, tail = 0, total = 0;

        for (size_t i = 0; i < g->n; i++) {
                left[i] = g->n_deps[i];
                for (size_t j = 0; j < g->n_deps[i]; j++)
                        n_users[g->deps[i][j]]++;
        }
        /* Users of each task, in one flat array (CSR). */
        for (size_t i = 0; i < g->n; i++) {
                start[i + 1] = start[i] + n_users[i];
                total += n_users[i];
        }
        _cleanup_free_ size_t *users = xcalloc(total + 1, sizeof(size_t));
        _cleanup_free_ size_t *fill = xcalloc(g->n + 1, sizeof(size_t));
        for (size_t i = 0; i < g->n; i++)
                for (size_t j = 0; j < g->n_deps[i]; j++) {
                        size_t d = g->deps[i][j];
                        users[start[d] + fill[d]++] = i;
                }

        for (size_t i = 0; i < g->n; i++)
                if (left[i] == 0)
                        queue[tail++] = i;
        while (head < tail) {
                size_t t = queue[head++];
                for (size_t k = start[t]; k < start[t + 1]; k++)
                        if (--left[users[k]] == 0)
                                queue[tail++] = users[k];
        }
        return tail == g->n;
}

/* Every unsorted task still waits on another unsorted one, so following
 * those edges must come back to a task already seen: that loop is a cycle. */
static void dag_report_cycle(const Dag *g, const size_t *left, Check *c) {
        _cleanup_free_ size_t *path = xcalloc(g->n + 1, sizeof(size_t));
        _cleanup_free_ size_t *pos = xcalloc(g->n + 1, sizeof(size_t)); /* 1-based position in path */
        size_t len = 0, cur = 0;

        while (cur < g->n && left[cur] == 0)
                cur++;
        while (cur < g->n && pos[cur] == 0) {
                pos[cur] = ++len;
                path[len - 1] = cur;
                size_t next = g->n;
                for (size_t j = 0; j < g->n_deps[cur] && next == g->n; j++)
                        if (left[g->deps[cur][j]] > 0)
                                next = g->deps[cur][j];
                cur = next;
        }
        if (cur >= g->n)
                return;

        Buf b = BUF_INIT;
        for (size_t i = pos[cur] - 1; i < len; i++)
                buf_printf(&b, "%s -> ", g->names[path[i]]);
        buf_puts(&b, g->names[cur]);
        _cleanup_free_ char *tp = field_path_key("spec.tasks", g->names[cur]);
        _cleanup_free_ char *p = xasprintf("%s.dependsOn", tp);
        check_report(c, p, "dependency cycle: %s (each task depends on the next)", b.data);
        buf_free(&b);
}

static void pipeline_checks(json_t *spec, Check *c) {
        const json_t *tasks = json_object_get(spec, "tasks");
        const char *on_error = spec_str(spec, "onError");
        Dag g = {0};

        if (!json_is_object(tasks))
                return;
        if (on_error && !json_object_get(tasks, on_error))
                check_report(c, "spec.onError", "unknown task \"%s\"", on_error);

        dag_build(tasks, &g, c);
        _cleanup_free_ size_t *left = xcalloc(g.n + 1, sizeof(size_t));
        if (!dag_sort(&g, left))
                dag_report_cycle(&g, left, c);
        dag_done(&g);
}

/* ---- the table -------------------------------------------------------------- */

static const struct {
        const char *kind;
        void (*check)(json_t *spec, Check *c);
} kind_check_table[] = {
        {"Token", token_checks},
        {"Repo", repo_checks},
        {"Server", server_checks},
        {"Pipeline", pipeline_checks},
};

void kind_checks(const Kind *k, json_t *spec, Check *c) {
        for (size_t i = 0; i < ELEMENTSOF(kind_check_table); i++)
                if (STREQ(kind_check_table[i].kind, k->name))
                        kind_check_table[i].check(spec, c);
}
