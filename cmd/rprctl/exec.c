/* exec: `rprctl exec server NAME|-l SEL -- COMMAND...`, a command on many
 * servers, printed as it runs.
 *
 * rprd streams newline-delimited JSON: output chunks per server and stream,
 * one result per server, and a last ExecResult line. Chunks are not whole
 * lines, so each server and stream keeps its partial line until the newline
 * comes (or the server's result does); every printed line is prefixed with
 * the server's name, stdout to stdout and stderr to stderr. The failures are
 * listed on stderr at the end, after all the output. */
#include <string.h>

#include "resource/resource.h"
#include "rprctl.h"

typedef struct ExecServer {
        char *name;
        Buf partial[2]; /* stdout, stderr */
} ExecServer;

typedef struct Exec {
        ExecServer *servers;
        size_t n_servers;
        Buf failures; /* lines for stderr at the end */
        bool got_result;
        json_int_t failed;
} Exec;

static ExecServer *server_find(Exec *x, const char *name) {
        for (size_t i = 0; i < x->n_servers; i++)
                if (STREQ(x->servers[i].name, name))
                        return &x->servers[i];
        x->servers = xrealloc(x->servers, (x->n_servers + 1) * sizeof *x->servers);
        x->servers[x->n_servers] = (ExecServer){.name = xstrdup(name)};
        return &x->servers[x->n_servers++];
}

static void print_line(const char *name, int stream, const char *line, size_t len) {
        FILE *f = stream ? stderr : stdout;

        fputs(name, f);
        fputs(": ", f);
        fwrite(line, 1, len, f);
        fputc('\n', f);
}

/* Prints every complete line of data, keeps the rest. */
static void server_output(ExecServer *s, int stream, const char *data, size_t len) {
        Buf *p = &s->partial[stream];

        buf_append(p, data, len);
        char *start = p->data, *end = p->data + p->len;
        for (char *nl; (nl = memchr(start, '\n', end - start)); start = nl + 1)
                print_line(s->name, stream, start, nl - start);
        size_t rest = end - start;
        memmove(p->data, start, rest);
        p->len = rest;
        p->data[rest] = 0;
}

static void server_flush(ExecServer *s) {
        for (int i = 0; i < 2; i++)
                if (s->partial[i].len > 0) {
                        print_line(s->name, i, s->partial[i].data, s->partial[i].len);
                        s->partial[i].len = 0;
                }
        fflush(stdout);
}

static void server_result(Exec *x, ExecServer *s, const json_t *line) {
        const char *sig = json_string_value(json_object_get(line, "signal"));
        const char *reason = json_string_value(json_object_get(line, "reason"));
        const char *message = json_string_value(json_object_get(line, "message"));
        json_int_t code = json_integer_value(json_object_get(line, "exitCode"));

        server_flush(s);
        if (reason && *reason)
                buf_printf(&x->failures, "%s: %s%s%s\n", s->name, reason, message && *message ? ": " : "",
                           message ? message : "");
        else if (sig && *sig)
                buf_printf(&x->failures, "%s: signal %s\n", s->name, sig);
        else if (code != 0)
                buf_printf(&x->failures, "%s: exit %" JSON_INTEGER_FORMAT "\n", s->name, code);
}

static int on_line(const char *text, size_t len, void *userdata) {
        Exec *x = userdata;
        json_error_t err;
        _cleanup_json_ json_t *line = json_loadb(text, len, JSON_ALLOW_NUL, &err);
        const char *name = json_string_value(json_object_get(line, "server"));
        const json_t *stream = json_object_get(line, "stream");

        if (len == 0)
                return 0;
        if (!line)
                return ctl_error("rprd sent a line that is not JSON: %s", err.text), -EBADMSG;
        if (json_is_string(json_object_get(line, "kind"))) {
                x->got_result = true;
                x->failed = json_integer_value(json_object_get(line, "failed"));
                return 0;
        }
        if (!name)
                return ctl_error("rprd sent an exec line without a server"), -EBADMSG;

        ExecServer *s = server_find(x, name);
        if (stream) {
                const json_t *data = json_object_get(line, "data");
                int i = STREQ(json_string_value(stream) ?: "", "stderr") ? 1 : 0;
                server_output(s, i, json_string_value(data) ?: "", json_string_length(data));
                /* As it comes, also into a pipe: a person may be watching
                 * a long command through tee or grep. */
                fflush(i ? stderr : stdout);
        } else
                server_result(x, s, line);
        return 0;
}

/* {"namespace","servers"|"selector","command","timeout","parallel"}; caller frees. */
static int exec_body(Ctl *c, char **ret) {
        _cleanup_json_ json_t *body = json_pack("{s:s}", "namespace", ctl_namespace(c));
        const char *sel = ctl_opt(c, "selector"), *timeout = ctl_opt(c, "timeout");
        const char *parallel = ctl_opt(c, "parallel");
        size_t n_names = c->n_pos_before_dashdash;
        Buf cmd = BUF_INIT;

        if (n_names == 0)
                return ctl_error("exec needs: exec server NAME|-l SELECTOR -- COMMAND..."), -EINVAL;
        _cleanup_free_ char *kind_arg = xstrdup(c->pos[0]);
        char *slash = strchr(kind_arg, '/');
        if (slash)
                *slash++ = 0;
        const Kind *k = ctl_kind(kind_arg);
        if (!k)
                return -EINVAL;
        if (!STREQ(kind_name(k), "Server"))
                return ctl_error("exec runs commands on servers only (exec server NAME ...)"), -EINVAL;
        if (!c->dashdash || c->n_pos == n_names)
                return ctl_error("exec needs the command after --, e.g. exec server web-1 -- uptime"),
                       -EINVAL;

        json_t *names = json_array();
        if (slash && *slash)
                json_array_append_new(names, json_string(slash));
        for (size_t i = 1; i < n_names; i++)
                json_array_append_new(names, json_string(c->pos[i]));
        if (sel && json_array_size(names) > 0) {
                json_decref(names);
                return ctl_error("give either server names or -l SELECTOR, not both"), -EINVAL;
        }
        if (sel) {
                json_decref(names);
                json_object_set_new(body, "selector", json_string(sel));
        } else if (json_array_size(names) == 0) {
                json_decref(names);
                return ctl_error("exec needs a server NAME or -l SELECTOR"), -EINVAL;
        } else
                json_object_set_new(body, "servers", names);

        for (size_t i = n_names; i < c->n_pos; i++)
                buf_printf(&cmd, "%s%s", i > n_names ? " " : "", c->pos[i]);
        json_object_set_new(body, "command", json_string(cmd.data));
        buf_free(&cmd);
        if (timeout)
                json_object_set_new(body, "timeout", json_string(timeout));
        if (parallel) {
                uint64_t p;
                if (parse_uint64(parallel, &p) < 0 || p < 1 || p > 256)
                        return ctl_error("--parallel needs a number from 1 to 256, got \"%s\"", parallel),
                               -EINVAL;
                json_object_set_new(body, "parallel", json_integer((json_int_t) p));
        }
        *ret = json_dumps(body, JSON_COMPACT);
        return 0;
}

int verb_exec(Ctl *c) {
        _cleanup_free_ char *body = NULL, *why = NULL;
        Exec x = {.failures = BUF_INIT};
        long status = 0;
        int ret = 0;

        if (exec_body(c, &body) < 0)
                return 1;
        Client *cl = ctl_client(c);
        if (!cl)
                return 1;

        int r = client_stream_request(cl, "POST", "/api/v1/exec", NULL, body, strlen(body), on_line, &x,
                                      &status, &why);
        for (size_t i = 0; i < x.n_servers; i++)
                server_flush(&x.servers[i]);
        fflush(stdout);
        if (x.failures.len > 0)
                fputs(x.failures.data, stderr);

        if (r < 0)
                ret = ctl_error("cannot reach rprd at %s: %s", client_server(cl), why ? why : strerror(-r));
        else if (why)
                ret = ctl_error("%s", why);
        else if (!x.got_result)
                ret = ctl_error("the exec stream from rprd ended before its result");
        else if (x.failed > 0)
                ret = 1;

        for (size_t i = 0; i < x.n_servers; i++) {
                free(x.servers[i].name);
                buf_free(&x.servers[i].partial[0]);
                buf_free(&x.servers[i].partial[1]);
        }
        free(x.servers);
        buf_free(&x.failures);
        return ret;
}
