/* runcmd: `rprctl run command --servers a,b | -l SEL [--wait-timeout D]
 * [--timeout D] -- COMMAND...`: a command as one durable Run per server.
 * Unlike exec, nothing waits here: each Run waits for its server (ssh or
 * agent) up to --wait-timeout (default 7d), survives restarts, and
 * `rprctl get runs -l rpr.dev/command=ID` shows which servers have run it. */
#include <string.h>

#include "rprctl.h"

/* {"servers"|"selector","command","timeout","waitTimeout"}; caller frees. */
static int command_body(Ctl *c, char **ret) {
        const char *servers = ctl_opt(c, "servers"), *sel = ctl_opt(c, "selector");
        const char *timeout = ctl_opt(c, "timeout"), *wait = ctl_opt(c, "wait-timeout");
        _cleanup_json_ json_t *body = json_object();
        Buf cmd = BUF_INIT;

        if (!!servers == !!sel)
                return ctl_error("run command needs --servers a,b or -l SELECTOR (one of them)"), -EINVAL;
        if (!c->dashdash || c->n_pos <= c->n_pos_before_dashdash)
                return ctl_error("run command needs the command after --, e.g. run command -l role=web -- "
                                 "uptime"),
                       -EINVAL;
        if (c->n_pos_before_dashdash != 1)
                return ctl_error("run command takes no names before --; give them with --servers"), -EINVAL;
        if (servers) {
                json_t *names = json_array();
                _cleanup_free_ char *copy = xstrdup(servers);
                char *save = NULL;
                for (char *p = strtok_r(copy, ",", &save); p; p = strtok_r(NULL, ",", &save))
                        json_array_append_new(names, json_string(p));
                json_object_set_new(body, "servers", names);
        } else
                json_object_set_new(body, "selector", json_string(sel));
        for (size_t i = c->n_pos_before_dashdash; i < c->n_pos; i++)
                buf_printf(&cmd, "%s%s", i > c->n_pos_before_dashdash ? " " : "", c->pos[i]);
        json_object_set_new(body, "command", json_string(cmd.data));
        buf_free(&cmd);
        if (timeout)
                json_object_set_new(body, "timeout", json_string(timeout));
        if (wait)
                json_object_set_new(body, "waitTimeout", json_string(wait));
        *ret = json_dumps(body, JSON_COMPACT);
        return 0;
}

int run_command(Ctl *c) {
        _cleanup_free_ char *body = NULL, *path = NULL;
        ClientResponse resp = {0};
        const json_t *v;
        size_t i;

        if (command_body(c, &body) < 0)
                return 1;
        path = xasprintf("/api/v1/namespaces/%s/runs", ctl_namespace(c));
        if (ctl_request(c, "POST", path, body, strlen(body), &resp) < 0)
                return 1;
        if (resp.status != 201) {
                int r = ctl_http_error(c, &resp);
                client_response_clear(&resp);
                return r;
        }
        _cleanup_json_ json_t *j = json_loadb(resp.body, resp.len, 0, NULL);
        client_response_clear(&resp);
        const char *id = json_path_str(j, "command");
        json_array_foreach(json_object_get(j, "runs"), i, v)
                printf("run/%s created for server %s\n", json_path_str(v, "name") ?: "?",
                       json_path_str(v, "server") ?: "?");
        printf("command %s: rprctl get runs -l rpr.dev/command=%s\n", id ?: "?", id ?: "?");
        return 0;
}
