/* action: the verbs that ask rprd to do something now — check server|repo,
 * trigger binding, run pipeline, cancel run — and logs, which prints a run's
 * output or rprd's activity and connectivity logs (following with -f). */
#include <string.h>
#include <unistd.h>

#include "resource/resource.h"
#include "rprctl.h"

typedef struct Action {
        const char *verb, *kind, *sub;
} Action;

static const Action actions[] = {
        {"check", "Server", "check"},       {"check", "Repo", "check"}, {"trigger", "Binding", "trigger"},
        {"run", "Pipeline", "runs"},        {"cancel", "Run", "cancel"},
};

/* {"args":{"k":"v"}} from --arg k=v. */
static int run_body(Ctl *c, char **ret) {
        _cleanup_free_ const char **args = NULL;
        size_t n = ctl_opt_all(c, "arg", &args);
        _cleanup_json_ json_t *map = json_object();

        for (size_t i = 0; i < n; i++) {
                const char *eq = strchr(args[i], '=');
                if (!eq || eq == args[i])
                        return ctl_error("--arg needs KEY=VALUE, got \"%s\"", args[i]), -EINVAL;
                _cleanup_free_ char *key = xstrndup(args[i], eq - args[i]);
                json_object_set_new(map, key, json_string(eq + 1));
        }
        _cleanup_json_ json_t *body = json_pack("{s:O}", "args", map);
        *ret = json_dumps(body, JSON_COMPACT);
        return 0;
}

/* {"server": S} or {"failed": true} from --server S / --failed. */
static int trigger_body(Ctl *c, char **ret) {
        const char *server = ctl_opt(c, "server");
        bool failed = ctl_flag(c, "failed");

        if (server && failed)
                return ctl_error("give --server or --failed, not both"), -EINVAL;
        _cleanup_json_ json_t *body = server ? json_pack("{s:s}", "server", server)
                                             : failed ? json_pack("{s:b}", "failed", 1) : json_object();
        *ret = json_dumps(body, JSON_COMPACT);
        return 0;
}

/* A TriggerResult: the runs made, and the servers that get one when their
 * current run ends. */
static int print_trigger(const char *name, const ClientResponse *resp) {
        _cleanup_json_ json_t *j = json_loadb(resp->body, resp->len, 0, NULL);
        const json_t *runs = json_object_get(j, "runs"), *queued = json_object_get(j, "queued"), *v;
        size_t i;

        if (!j)
                return ctl_error("rprd answered the trigger with something that is not JSON");
        json_array_foreach(runs, i, v) printf("run/%s created for server %s\n", json_path_str(v, "name") ?: "?",
                                              json_path_str(v, "server") ?: "?");
        json_array_foreach(queued, i, v) printf("server %s: a run is still going; the new one starts when it ends\n",
                                                json_string_value(v));
        if (json_array_size(runs) + json_array_size(queued) == 0)
                printf("binding/%s: no server to run on (--failed: no last run failed)\n", name);
        return 0;
}

/* --wait: until the job ends; 0 when it Succeeded. */
static int wait_job(Ctl *c, const char *run) {
        _cleanup_free_ char *path = ctl_object_path(ctl_kind("run"), ctl_namespace(c), run);
        const char *last = NULL;
        _cleanup_free_ char *shown = NULL;

        for (;;) {
                _cleanup_json_ json_t *obj = NULL;
                if (ctl_get_json(c, path, &obj) < 0)
                        return 1;
                const char *phase = json_path_str(obj, "status.phase") ?: "Queued";
                if (!shown || !STREQ(shown, phase)) {
                        printf("run/%s %s\n", run, phase);
                        fflush(stdout);
                        free(shown);
                        shown = xstrdup(phase);
                }
                last = phase;
                if (STREQ(last, "Succeeded"))
                        return 0;
                if (STREQ(last, "Failed") || STREQ(last, "Canceled") || STREQ(last, "Interrupted")) {
                        const char *msg = json_path_str(obj, "status.message");
                        return ctl_error("run/%s %s%s%s", run, last, msg ? ": " : "", msg ?: ""), 1;
                }
                usleep(200 * 1000);
        }
}

/* A CheckResult: uptime's output and the time, or the reason on stderr. */
static int print_check(const char *name, const ClientResponse *resp) {
        _cleanup_json_ json_t *j = json_loadb(resp->body, resp->len, 0, NULL);
        const char *output = json_string_value(json_object_get(j, "output")) ?: "";
        const char *reason = json_string_value(json_object_get(j, "reason")) ?: "Unknown";
        const char *message = json_string_value(json_object_get(j, "message")) ?: "";
        double seconds = json_number_value(json_object_get(j, "durationSeconds"));

        if (!j)
                return ctl_error("rprd answered the check with something that is not JSON");
        if (!json_is_true(json_object_get(j, "reachable")))
                return ctl_error("server/%s: %s%s%s", name, reason, *message ? ": " : "", message);
        fputs(output, stdout);
        if (*output && output[strlen(output) - 1] != '\n')
                fputc('\n', stdout);
        printf("server/%s reachable in %.2fs\n", name, seconds);
        return 0;
}

/* A RepoCheckResult: the check's verdict, then what the temporary fetch
 * saw, as git would print it. */
static int print_repo_check(const char *name, const ClientResponse *resp) {
        _cleanup_json_ json_t *j = json_loadb(resp->body, resp->len, 0, NULL);
        const json_t *check = json_object_get(j, "check"), *fetch = json_object_get(j, "fetch");
        const json_t *commit = json_object_get(fetch, "commit");
        bool checked = json_is_true(json_object_get(check, "ok"));

        if (!j)
                return ctl_error("rprd answered the check with something that is not JSON");
        printf("repo/%s: %s: %s\n", name, json_path_str(check, "reason") ?: "?", json_path_str(check, "message") ?: "");
        if (!json_is_true(json_object_get(fetch, "ok"))) {
                ctl_error("repo/%s: cannot fetch: %s: %s", name, json_path_str(fetch, "reason") ?: "?",
                          json_path_str(fetch, "message") ?: "");
                return 1;
        }
        printf("fetched %s branch %s into a temporary cache (%" JSON_INTEGER_FORMAT " files, %" JSON_INTEGER_FORMAT
               " bytes, %.2fs)\n\n",
               json_path_str(fetch, "url") ?: "?", json_path_str(fetch, "branch") ?: "?",
               json_integer_value(json_object_get(fetch, "files")), json_integer_value(json_object_get(fetch, "bytes")),
               json_number_value(json_object_get(fetch, "durationSeconds")));
        fputs(json_path_str(fetch, "status") ?: "", stdout);
        printf("\ncommit %s\nAuthor: %s\nDate:   %s\n\n    %s\n\n(temporary cache removed)\n",
               json_path_str(commit, "sha") ?: "?", json_path_str(commit, "author") ?: "?",
               json_path_str(commit, "time") ?: "?", json_path_str(commit, "message") ?: "");
        return checked ? 0 : 1;
}

int verb_action(Ctl *c) {
        _cleanup_free_ char *kind_arg = NULL, *body = NULL;
        ClientResponse resp = {0};
        const Action *a = NULL;
        char singular[64];
        int ret;

        if (c->n_pos == 0)
                return ctl_error("%s needs KIND NAME", c->verb);
        kind_arg = xstrdup(c->pos[0]);
        char *slash = strchr(kind_arg, '/');
        if (slash)
                *slash++ = 0;
        const char *name = slash ? slash : c->n_pos > 1 ? c->pos[1] : NULL;
        const Kind *k = ctl_kind(kind_arg);
        if (!k)
                return 1;
        for (size_t i = 0; i < ELEMENTSOF(actions); i++)
                if (STREQ(actions[i].verb, c->verb) && STREQ(actions[i].kind, kind_name(k)))
                        a = &actions[i];
        if (!a)
                return ctl_error("cannot %s a %s", c->verb, ctl_kind_singular(k, singular, sizeof(singular)));
        if (!name)
                return ctl_error("%s %s needs a NAME", c->verb, ctl_kind_singular(k, singular, sizeof(singular)));
        if (STREQ(c->verb, "run") && run_body(c, &body) < 0)
                return 1;
        if (STREQ(c->verb, "trigger") && trigger_body(c, &body) < 0)
                return 1;

        _cleanup_free_ char *obj = ctl_object_path(k, ctl_namespace(c), name);
        _cleanup_free_ char *path = xasprintf("%s/%s", obj, a->sub);
        if (ctl_request(c, "POST", path, body ?: "{}", strlen(body ?: "{}"), &resp) < 0)
                return 1;
        ctl_kind_singular(k, singular, sizeof(singular));
        if (resp.status == 404)
                ret = ctl_error("%s \"%s\" not found", singular, name);
        else if (resp.status >= 300)
                ret = ctl_http_error(c, &resp);
        else if (STREQ(a->kind, "Server"))
                ret = print_check(name, &resp);
        else if (STREQ(a->kind, "Repo"))
                ret = print_repo_check(name, &resp);
        else if (STREQ(a->kind, "Binding"))
                ret = print_trigger(name, &resp);
        else {
                _cleanup_json_ json_t *j = json_loadb(resp.body, resp.len, 0, NULL);
                const char *run = json_path_str(j, "metadata.name");
                if (run && STREQ(json_string_value(json_object_get(j, "kind")) ?: "", "Run")) {
                        printf("run/%s created\n", run);
                        if (ctl_flag(c, "wait")) {
                                fflush(stdout);
                                client_response_clear(&resp);
                                return wait_job(c, run);
                        }
                }
                else
                        printf("%s/%s %s\n", singular, name, STREQ(c->verb, "cancel") ? "canceled" : "triggered");
                ret = 0;
        }
        client_response_clear(&resp);
        return ret;
}

/* ---- logs --------------------------------------------------------------------- */

static int on_line(const char *line, size_t len, void *userdata) {
        (void) userdata;
        fwrite(line, 1, len, stdout);
        fputc('\n', stdout);
        fflush(stdout);
        return 0;
}

int verb_logs(Ctl *c) {
        _cleanup_free_ char *path = NULL, *why = NULL;
        const char *tail = ctl_opt(c, "tail");
        long status = 0;

        if (c->n_pos != 1)
                return ctl_error("logs needs run/NAME, activity or connectivity");
        const char *what = c->pos[0];
        if (STREQ(what, "activity") || STREQ(what, "connectivity")) {
                uint64_t n;
                if (tail && parse_uint64(tail, &n) < 0)
                        return ctl_error("--tail needs a number, got \"%s\"", tail);
                path = xasprintf("/api/v1/logs/%s%s%s", what, tail ? "?tail=" : "", tail ?: "");
        } else {
                const char *slash = strchr(what, '/');
                _cleanup_free_ char *kind_arg = slash ? xstrndup(what, slash - what) : xstrdup("run");
                const Kind *k = ctl_kind(kind_arg);
                if (!k)
                        return 1;
                if (!STREQ(kind_name(k), "Run"))
                        return ctl_error("logs are kept for runs only (run/NAME)");
                _cleanup_free_ char *obj = ctl_object_path(k, ctl_namespace(c), slash ? slash + 1 : what);
                const char *task = ctl_opt(c, "task");
                _cleanup_free_ char *q = task ? client_escape(task) : NULL;
                path = xasprintf("%s/log%s%s%s%s", obj, ctl_flag(c, "follow") ? "?follow=1" : "",
                                 task ? (ctl_flag(c, "follow") ? "&" : "?") : "", task ? "task=" : "", q ?: "");
        }

        Client *cl = ctl_client(c);
        if (!cl)
                return 1;
        int r = client_stream_lines(cl, path, on_line, NULL, &status, &why);
        if (r < 0)
                return ctl_error("cannot reach rprd at %s: %s", client_server(cl), why ? why : strerror(-r));
        if (why)
                return ctl_error("%s", why);
        return 0;
}
