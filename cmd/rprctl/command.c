/* command: rprctl run command — one command for a set of servers, kept
 * until each has run it (a Command object; see pkg/command/command.h).
 *
 *   rprctl run command [NAME] --servers a,b,c | -l k=v[,k=v] [--wait-timeout 7d]
 *                      [--timeout 10m] [--wait] -- COMMAND...
 *
 * It applies the Command and prints where to follow it; with --wait it
 * stays until every server has finished and prints one line per server. */
#include <string.h>
#include <unistd.h>

#include "resource/resource.h"
#include "rprctl.h"

/* "cmd-YYYYMMDD-HHMMSS-xxxx": unique enough to never meet an old one. */
static char *generated_name(void) {
        char when[RFC3339_MAX], stamp[32] = "";
        uint8_t rnd[2] = {0};
        size_t n = 0;

        time_format_rfc3339(now_usec(), when);
        for (const char *p = when; *p && n < sizeof stamp - 1; p++)
                if (*p >= '0' && *p <= '9')
                        stamp[n++] = *p;
        stamp[n] = 0;
        (void) random_bytes(rnd, sizeof rnd);
        return xasprintf("cmd-%.8s-%.6s-%02x%02x", stamp, stamp + 8, rnd[0], rnd[1]);
}

/* "a,b,,c" -> ["a","b","c"]. */
static json_t *split_commas(const char *list) {
        json_t *out = json_array();

        for (const char *p = list; *p;) {
                const char *end = strchr(p, ',') ?: p + strlen(p);
                if (end > p)
                        json_array_append_new(out, json_stringn(p, end - p));
                p = *end ? end + 1 : end;
        }
        return out;
}

/* "k=v,k2=v2" -> {"k":"v","k2":"v2"}; NULL (error printed) for anything
 * a Command cannot keep as matchLabels. */
static json_t *match_labels(const char *sel) {
        _cleanup_json_ json_t *parts = split_commas(sel);
        json_t *labels = json_object(), *v;
        size_t i;

        json_array_foreach(parts, i, v) {
                const char *kv = json_string_value(v), *eq = strchr(kv, '=');
                if (!eq || eq == kv || eq[1] == '=' || eq[-1] == '!' || strpbrk(kv, " ()")) {
                        ctl_error("-l \"%s\": a command's servers are chosen by k=v[,k=v] labels only", sel);
                        json_decref(labels);
                        return NULL;
                }
                _cleanup_free_ char *key = xstrndup(kv, eq - kv);
                json_object_set_new(labels, key, json_string(eq + 1));
        }
        return labels;
}

/* The Command to apply, from the flags and the words after --. */
static json_t *command_object(Ctl *c, const char *name) {
        const char *servers = ctl_opt(c, "servers"), *sel = ctl_opt(c, "selector");
        const char *wait = ctl_opt(c, "wait-timeout"), *timeout = ctl_opt(c, "timeout");
        Buf cmd = BUF_INIT;

        if (!!servers == !!sel)
                return ctl_error("run command needs --servers a,b,c or -l k=v (one of them)"), NULL;
        if (!c->dashdash || c->n_pos == c->n_pos_before_dashdash)
                return ctl_error("run command needs the command after --, e.g. run command --servers pi-1 -- uptime"),
                       NULL;
        json_t *spec = json_object();
        if (servers)
                json_object_set_new(spec, "serverNames", split_commas(servers));
        else {
                json_t *labels = match_labels(sel);
                if (!labels) {
                        json_decref(spec);
                        return NULL;
                }
                json_object_set_new(spec, "servers", json_pack("{s:o}", "matchLabels", labels));
        }
        for (size_t i = c->n_pos_before_dashdash; i < c->n_pos; i++)
                buf_printf(&cmd, "%s%s", i > c->n_pos_before_dashdash ? " " : "", c->pos[i]);
        json_object_set_new(spec, "command", json_string(cmd.data));
        buf_free(&cmd);
        if (wait)
                json_object_set_new(spec, "waitTimeout", json_string(wait));
        if (timeout)
                json_object_set_new(spec, "timeout", json_string(timeout));
        return json_pack("{s:s, s:s, s:{s:s, s:s}, s:o}", "apiVersion", RPR_API_VERSION, "kind", "Command",
                         "metadata", "name", name, "namespace", ctl_namespace(c), "spec", spec);
}

static int apply_new(Ctl *c, const json_t *obj, const char *name) {
        _cleanup_free_ char *path = ctl_object_path(ctl_kind("command"), ctl_namespace(c), name);
        _cleanup_json_ json_t *existing = NULL, *body = json_pack("{s:[O]}", "items", obj);
        _cleanup_free_ char *text = json_dumps(body, JSON_COMPACT);
        ClientResponse resp = {0};
        int ret = 0;

        /* A Command runs once: a name in use is an error, not an update. */
        int r = ctl_get_json(c, path, &existing);
        if (r == 0)
                return ctl_error("command \"%s\" exists; its runs were made when it was created (delete it, or "
                                 "give another NAME)", name);
        if (r != -ENOENT)
                return 1;
        if (ctl_request(c, "POST", "/api/v1/apply", text, strlen(text), &resp) < 0)
                return 1;
        if (resp.status != 200)
                ret = ctl_http_error(c, &resp);
        client_response_clear(&resp);
        return ret;
}

/* --wait: until status.phase is Succeeded or Failed, then one line per
 * server. */
static int wait_done(Ctl *c, const char *name) {
        _cleanup_free_ char *path = ctl_object_path(ctl_kind("command"), ctl_namespace(c), name);

        for (;;) {
                _cleanup_json_ json_t *obj = NULL;
                if (ctl_get_json(c, path, &obj) < 0)
                        return 1;
                const char *phase = json_path_str(obj, "status.phase");
                if (phase && !STREQ(phase, "Running")) {
                        const json_t *servers = json_object_get(json_object_get(obj, "status"), "servers"), *e;
                        const char *server;
                        json_object_foreach((json_t *) servers, server, e) {
                                json_t *code = json_object_get(e, "exitCode");
                                printf("%s: %s%s%s", server, json_str_at(e, "phase") ?: "?",
                                       json_str_at(e, "reason") ? " " : "", json_str_at(e, "reason") ?: "");
                                if (json_is_integer(code))
                                        printf(" (exit %" JSON_INTEGER_FORMAT ")", json_integer_value(code));
                                printf(", run/%s\n", json_str_at(e, "run") ?: "?");
                        }
                        printf("command/%s %s\n", name, phase);
                        return STREQ(phase, "Succeeded") ? 0 : 1;
                }
                usleep(200 * 1000);
        }
}

static int verb_run_command(Ctl *c) {
        _cleanup_free_ char *name = c->n_pos_before_dashdash > 1 ? xstrdup(c->pos[1]) : generated_name();
        _cleanup_json_ json_t *obj = NULL;

        if (c->n_pos_before_dashdash > 2)
                return ctl_error("run command takes one NAME before --, got \"%s\" too", c->pos[2]);
        obj = command_object(c, name);
        if (!obj)
                return 1;
        int r = apply_new(c, obj, name);
        if (r != 0)
                return r;
        printf("command/%s created\n", name);
        if (ctl_flag(c, "wait"))
                return wait_done(c, name);
        printf("follow it: rprctl get command %s -w; each server's run: rprctl get runs -l command=%s\n", name, name);
        return 0;
}

/* run command ... | run pipeline NAME: the Pipeline's flags and the
 * Command's are apart. */
int verb_run(Ctl *c) {
        static const char *const command_only[] = {"servers", "selector", "wait-timeout", "timeout"};
        const Kind *k = c->n_pos > 0 ? kind_lookup(c->pos[0]) : NULL;

        if (k && STREQ(kind_name(k), "Command"))
                return verb_run_command(c);
        for (size_t i = 0; i < ELEMENTSOF(command_only); i++)
                if (ctl_opt(c, command_only[i]))
                        return ctl_error("--%s is for run command", command_only[i]);
        return verb_action(c);
}
