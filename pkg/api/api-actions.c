/* api-actions: the requests that act on Servers now — check one, run a
 * command on many (the stream itself is api-exec's) — and the line logs.
 *
 * Everything that waits on a remote machine runs off the loop: a check on
 * the action work queue, exec on its own threads. What can be decided from
 * the store's index (does the server exist, is it active, which servers
 * match a selector) is decided here, on the loop, before anything runs. */
#include <string.h>

#include "api/api-private.h"
#include "logfile/logfile.h"
#include "server/server.h"
#include "ssh/ssh.h"

#define LOG_TAIL_DEFAULT 10
#define LOG_TAIL_MAX 100000

/* The stored Server, parsed, or an answer (404/500) and NULL. */
static json_t *server_get(ApiCall *c, const char *ns, const char *name) {
        json_t *obj = NULL;
        int r = store_get_json(c->api->store, "Server", ns, name, &obj);

        if (r == -ENOENT)
                api_reply_status(c, 404, "servers \"%s\" not found", name);
        else if (r < 0)
                api_reply_status(c, 500, "cannot read servers/%s: %s", name, strerror(-r));
        return r < 0 ? NULL : obj;
}

static bool server_inactive(const json_t *obj) {
        return json_is_false(json_object_get(json_object_get(obj, "spec"), "active"));
}

/* ---- check -------------------------------------------------------------------------- */

/* As api_reply_json(), with durations as 0.213 rather than 0.21299999999999999. */
static void api_reply_json_short_reals(ApiCall *c, int status, json_t *body) {
        char *text = json_dumps(body, JSON_COMPACT | JSON_REAL_PRECISION(6));

        json_decref(body);
        if (!text) {
                api_reply_status(c, 500, "cannot encode the answer");
                return;
        }
        size_t len = strlen(text);
        text = xrealloc(text, len + 2);
        memcpy(text + len, "\n", 2);
        api_reply_owned(c, status, "application/json", text, len + 1);
}

typedef struct CheckData {
        SshResult result;
        char *uptime;
        int r;
} CheckData;

static void check_data_free(void *p) {
        CheckData *d = p;

        free(d->uptime);
        free(d);
}

static void check_work(ApiJob *job) {
        CheckData *d = job->data;

        d->r = server_check_now(job->api->servers, job->ns, job->name, &d->result, &d->uptime);
}

/* The reason of a failed check. When the server could not even be
 * tried (its key is missing or unusable), the check wrote that reason to
 * the Reachable condition: stored is the server as it is now. */
static const char *check_reason(const CheckData *d, bool reachable, const json_t *stored) {
        const json_t *conds = json_object_get(json_object_get(stored, "status"), "conditions"), *cond;
        size_t i;

        if (reachable)
                return "Reachable";
        if (d->result.failure != SSH_OK)
                return ssh_failure_reason(d->result.failure);
        if (d->r != -EINVAL)
                return "CheckFailed";
        json_array_foreach(conds, i, cond) {
                const char *type = json_string_value(json_object_get(cond, "type"));
                const char *reason = json_string_value(json_object_get(cond, "reason"));
                if (type && reason && STREQ(type, "Reachable"))
                        return reason;
        }
        return d->r == -EINVAL ? "KeyUnusable" : "CheckFailed";
}

static void check_done(ApiJob *job, ApiCall *c) {
        CheckData *d = job->data;
        const SshResult *res = &d->result;

        if (!c)
                return;
        if (d->r == -ENOENT) {
                api_reply_status(c, 404, "servers \"%s\" not found", job->name);
                return;
        }
        if (d->r == -ESHUTDOWN) {
                api_reply_status(c, 503, "rprd is shutting down");
                return;
        }
        if (d->r == -EPERM) {
                api_reply_status(c, 409, "%s", res->message);
                return;
        }
        _cleanup_json_ json_t *stored = NULL;
        (void) store_get_json(c->api->store, "Server", job->ns, job->name, &stored);

        bool reachable = d->r >= 0 && res->failure == SSH_OK && res->exit_code == 0 && !res->signal[0];
        const char *message = res->message;
        _cleanup_free_ char *why = NULL;
        if (!reachable && !*message) {
                why = res->exit_code > 0 ? xasprintf("the check command exited with %d", res->exit_code)
                                         : xstrdup(strerror(d->r < 0 ? -d->r : EIO));
                message = why;
        }
        api_reply_json_short_reals(
                c, 200,
                json_pack("{s:s, s:s, s:s, s:s, s:b, s:s, s:s, s:s, s:f, s:s}", "apiVersion",
                          RPR_API_VERSION, "kind", "CheckResult", "server", job->name, "namespace", job->ns,
                          "reachable", reachable, "reason", check_reason(d, reachable, stored), "message",
                          message, "output", d->uptime ? d->uptime : "", "durationSeconds",
                          (double) res->duration_usec / USEC_PER_SEC, "hostKey", res->host_key));
}

void api_handle_server_check(ApiCall *c) {
        ApiServer *a = c->api;

        if (!a->servers) {
                api_reply_status(c, 503, "this rprd runs no server controller");
                return;
        }
        _cleanup_json_ json_t *obj = server_get(c, c->route.ns, c->route.name);
        if (!obj)
                return;
        if (server_inactive(obj)) {
                api_reply_status(c, 409, "server %s is inactive (spec.active is false); activate it first",
                                 c->route.name);
                return;
        }

        ApiJob *job = api_job_new(c, 0, check_work, check_done);
        job->queue = a->actionq;
        job->ns = xstrdup(c->route.ns);
        job->name = xstrdup(c->route.name);
        job->data = xcalloc(1, sizeof(CheckData));
        job->data_free = check_data_free;
        api_job_submit(job);
}

/* ---- exec ------------------------------------------------------------------------------ */

typedef struct ExecRequest {
        const char *ns, *command, *selector;
        const json_t *servers;
        uint64_t timeout_usec;
        unsigned parallel;
} ExecRequest;

static int exec_parse(const json_t *body, ExecRequest *x, Diags *d) {
        static const char *const known[] = {"namespace", "servers", "selector",
                                            "command",   "timeout", "parallel"};
        const char *key;
        json_t *v;

        json_object_foreach((json_t *) body, key, v) {
                bool ok = false;
                for (size_t i = 0; i < ELEMENTSOF(known); i++)
                        ok = ok || STREQ(known[i], key);
                if (!ok)
                        diags_add(d, -1, NULL, key, "unknown field");
        }

        *x = (ExecRequest){.ns = "default", .parallel = EXEC_PARALLEL_DEFAULT};
        if ((v = json_object_get(body, "namespace")) && !json_is_null(v)) {
                x->ns = json_string_value(v);
                if (!x->ns || !resource_name_valid(x->ns))
                        diags_add(d, -1, NULL, "namespace", "must be a namespace name");
        }
        x->command = json_string_value(json_object_get(body, "command"));
        if (!x->command || !*x->command)
                diags_add(d, -1, NULL, "command", "is required: the command (or script) to run");

        x->servers = json_object_get(body, "servers");
        v = json_object_get(body, "selector");
        x->selector = json_string_value(v);
        if (v && !x->selector)
                diags_add(d, -1, NULL, "selector", "must be a label selector string");
        if (x->servers && x->selector)
                diags_add(d, -1, NULL, "servers", "give either servers or selector, not both");
        else if (!x->servers && !x->selector)
                diags_add(d, -1, NULL, "servers", "is required (or selector)");
        if (x->servers) {
                size_t i;
                json_t *s;
                if (!json_is_array(x->servers) || json_array_size(x->servers) == 0)
                        diags_add(d, -1, NULL, "servers", "must be a non-empty list of server names");
                else
                        json_array_foreach(x->servers, i, s) {
                                if (!json_is_string(s) || !resource_name_valid(json_string_value(s)))
                                        diags_add(d, -1, NULL, "servers", "item %zu is not a server name",
                                                  i);
                        }
        }

        const char *timeout = json_string_value(v = json_object_get(body, "timeout"));
        if (v && (!timeout || duration_parse(timeout, &x->timeout_usec) < 0))
                diags_add(d, -1, NULL, "timeout", "must be a duration like \"30s\" or \"5m\"");
        if ((v = json_object_get(body, "parallel"))) {
                json_int_t p = json_integer_value(v);
                if (!json_is_integer(v) || p < 1 || p > EXEC_PARALLEL_MAX)
                        diags_add(d, -1, NULL, "parallel", "must be a whole number from 1 to %d",
                                  EXEC_PARALLEL_MAX);
                else
                        x->parallel = (unsigned) p;
        }
        return d->n > 0 ? -EINVAL : 0;
}

typedef struct Targets {
        char **names;
        bool *inactive;
        size_t n;
} Targets;

static void targets_add(Targets *t, const char *name, bool inactive) {
        t->names = xrealloc(t->names, (t->n + 1) * sizeof *t->names);
        t->inactive = xrealloc(t->inactive, (t->n + 1) * sizeof *t->inactive);
        t->names[t->n] = xstrdup(name);
        t->inactive[t->n++] = inactive;
}

static void targets_clear(Targets *t) {
        for (size_t i = 0; i < t->n; i++)
                free(t->names[i]);
        free(t->names);
        free(t->inactive);
}

static void select_one(const char *text, size_t len, void *userdata) {
        Targets *t = userdata;
        _cleanup_json_ json_t *obj = json_loadb(text, len, 0, NULL);
        const json_t *meta = json_object_get(obj, "metadata");
        const char *name = json_string_value(json_object_get(meta, "name"));

        if (name)
                targets_add(t, name, server_inactive(obj));
}

/* The servers to run on, or an answer (404, 422, 500) and -errno. */
static int exec_targets(ApiCall *c, const ExecRequest *x, Targets *t) {
        size_t i;
        json_t *s;

        if (x->selector) {
                _cleanup_free_ char *error = NULL;
                Selector *sel = NULL;
                int r = selector_parse(x->selector, &sel, &error);
                if (r < 0) {
                        Diags d = DIAGS_INIT;
                        diags_add(&d, -1, NULL, "selector", "%s", error ? error : "invalid label selector");
                        api_reply_diags(c, 422, "invalid exec request", &d);
                        diags_free(&d);
                        return r;
                }
                r = store_list_selected(c->api->store, "Server", x->ns, sel, select_one, t, NULL);
                selector_free(sel);
                if (r < 0)
                        return api_reply_status(c, 500, "cannot list servers: %s", strerror(-r)), r;
                if (t->n == 0)
                        return api_reply_status(c, 404, "no servers match \"%s\" in namespace %s",
                                                x->selector, x->ns),
                               -ENOENT;
                return 0;
        }

        json_array_foreach(x->servers, i, s) {
                const char *name = json_string_value(s);
                for (size_t j = 0; j < t->n; j++)
                        if (STREQ(t->names[j], name))
                                return api_reply_status(c, 422, "server %s is named twice", name), -EINVAL;
                _cleanup_json_ json_t *obj = server_get(c, x->ns, name);
                if (!obj)
                        return -ENOENT;
                targets_add(t, name, server_inactive(obj));
        }
        return 0;
}

void api_handle_exec(ApiCall *c) {
        ApiServer *a = c->api;
        Diags d = DIAGS_INIT;
        ExecRequest x;
        Targets t = {0};

        if (!a->servers || !a->ssh) {
                api_reply_status(c, 503, "this rprd runs no server controller");
                return;
        }
        _cleanup_json_ json_t *body = api_body_json(c);
        if (!body)
                return;
        if (!json_is_object(body)) {
                api_reply_status(
                        c, 400, "the body must be a JSON object {\"servers\" or \"selector\", \"command\"}");
                return;
        }
        if (exec_parse(body, &x, &d) < 0) {
                api_reply_diags(c, 422, "invalid exec request", &d);
                diags_free(&d);
                return;
        }
        if (!api_check_namespace(c, x.ns))
                return;
        if (exec_targets(c, &x, &t) < 0) {
                targets_clear(&t);
                return;
        }

        api_exec_start(c, x.ns, x.command, x.timeout_usec, x.parallel, t.names, t.inactive, t.n);
        free(t.names); /* the strings went with the call */
        free(t.inactive);
}

/* ---- logs ------------------------------------------------------------------------------- */

/* A scoped caller's lines are looked for among this many times as many. */
#define LOG_SCOPED_FACTOR 20

/* The namespace a log line is about: the "ns/" of its object, which is the
 * first word after the time (connectivity: "ns/name ok ...") or the second
 * (activity: "repo ns/name: ..."). NULL-terminated list; NULL ns = unknown. */
static bool line_visible(const char *line, size_t len, const char *const *allowed) {
        const char *p = memchr(line, ' ', len), *end = line + len;

        for (int word = 0; p && word < 2; word++) {
                const char *w = p + 1, *we = memchr(w, ' ', end - w);
                const char *slash = memchr(w, '/', (we ? we : end) - w);
                if (slash) {
                        for (size_t i = 0; allowed[i]; i++)
                                if (strlen(allowed[i]) == (size_t) (slash - w) &&
                                    memcmp(allowed[i], w, slash - w) == 0)
                                        return true;
                        return false;
                }
                p = we;
        }
        return false; /* about no namespace: for unrestricted callers only */
}

/* The last n lines of text that the caller's namespaces cover. */
static char *lines_of_namespaces(const char *text, size_t n, const char *const *allowed) {
        const char **starts = NULL;
        size_t *lens = NULL, count = 0;
        Buf b = BUF_INIT;

        for (const char *p = text; *p;) {
                size_t len = strcspn(p, "\n");
                if (line_visible(p, len, allowed)) {
                        starts = xrealloc(starts, (count + 1) * sizeof *starts);
                        lens = xrealloc(lens, (count + 1) * sizeof *lens);
                        starts[count] = p;
                        lens[count++] = len;
                }
                p += len + (p[len] == '\n');
        }
        for (size_t i = count > n ? count - n : 0; i < count; i++) {
                buf_append(&b, starts[i], lens[i]);
                buf_puts(&b, "\n");
        }
        free(starts);
        free(lens);
        return buf_steal(&b);
}

void api_handle_logs(ApiCall *c) {
        const char *tail = api_query(c->req, "tail");
        _cleanup_free_ char *text = NULL;
        uint64_t n = LOG_TAIL_DEFAULT;
        int r;

        LogFile *log = STREQ(c->route.sub, "connectivity") ? c->api->connectivity : c->api->activity;
        if (!log) {
                api_reply_status(c, 503, "this rprd keeps no %s log", c->route.sub);
                return;
        }
        if (tail && (parse_uint64(tail, &n) < 0 || n > LOG_TAIL_MAX)) {
                api_reply_status(c, 400, "tail must be a number of lines up to %d, not \"%s\"", LOG_TAIL_MAX,
                                 tail);
                return;
        }
        /* A caller limited to namespaces sees only lines about them. */
        const char *const *allowed = c->caller.namespaces;
        r = logfile_tail(log, allowed ? MIN(n * LOG_SCOPED_FACTOR, (uint64_t) LOG_TAIL_MAX) : n, &text);
        if (r < 0) {
                api_reply_status(c, 500, "cannot read the %s log: %s", c->route.sub, strerror(-r));
                return;
        }
        if (allowed) {
                char *mine = lines_of_namespaces(text, n, allowed);
                free(text);
                text = mine;
        }
        size_t len = strlen(text);
        api_reply_owned(c, 200, "text/plain; charset=utf-8", TAKE_PTR(text), len);
}
