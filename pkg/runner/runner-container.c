/* runner-container: the host commands of mode container — the runner in a
 * container of the Server's docker-compatible engine.
 *
 * Everything goes through the engine's CLI on the Server (spec.container
 * .engine, "docker" unless a path or another name is given), with
 * DOCKER_HOST from spec.container.host: a local socket, a remote engine,
 * or a socket at another path. Containers are named rpr-NS-INSTANCE and
 * labelled rpr.runner=NS.RUNNER and rpr.instance=INSTANCE, so one `ps
 * --filter label=` finds a Runner's. The secret (a JIT configuration or a
 * registration token) reaches the host on stdin, is kept in a 0600 file in
 * the instance's directory and mounted read-only into the container: it is
 * never on a command line, in the container's environment as the engine
 * records it, or in `inspect`. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runner/runner-private.h"

#define OUTPUT_MAX (256u * 1024)

/* What runs in the container (its working directory holds the runner). */
#define INNER                                                                                               \
        "if [ \"$RPR_HOW\" = jit ]; then ACTIONS_RUNNER_INPUT_JITCONFIG=$(cat /run/rpr/secret); "           \
        "export ACTIONS_RUNNER_INPUT_JITCONFIG; else eph=; [ \"$RPR_EPHEMERAL\" = true ] && "               \
        "eph=--ephemeral; "                                                                                 \
        "ACTIONS_RUNNER_INPUT_TOKEN=$(cat /run/rpr/secret) ./config.sh --unattended --url \"$RPR_URL\" "    \
        "--name \"$RPR_NAME\" --labels \"$RPR_LABELS\" --work _work --replace $eph --disableupdate "        \
        "--runnergroup \"$RPR_GROUP\" || exit 3; fi; exec ./run.sh"

#define ENGINE_ENV "[ -n \"$RPR_DOCKER_HOST\" ] && export DOCKER_HOST=\"$RPR_DOCKER_HOST\"\n"

static const char start_script[] =
        "umask 077\n"
        "d=$RPR_DIR/$RPR_NAME\n"
        "IFS= read -r secret || [ -n \"$secret\" ] || { echo 'no secret on stdin'; exit 1; }\n"
        "rm -rf \"$d\" && mkdir -p \"$d\" && printf '%s\\n' \"$secret\" >\"$d/.secret\" || exit 1\n"
        "secret=\n" ENGINE_ENV "\"$RPR_ENGINE\" rm -f \"$RPR_CNAME\" >/dev/null 2>&1\n"
        "eval \"set -- $RPR_ARGS\"\n"
        "\"$RPR_ENGINE\" run -d --name \"$RPR_CNAME\" --label \"rpr.runner=$RPR_RUNNER\" "
        "--label \"rpr.instance=$RPR_NAME\" -v \"$d/.secret:/run/rpr/secret:ro\" -w \"$RPR_WORKDIR\" "
        "-e RPR_HOW -e RPR_URL -e RPR_NAME -e RPR_LABELS -e RPR_GROUP -e RPR_EPHEMERAL "
        "-e ACTIONS_RUNNER_RETURN_VERSION_DEPRECATED_EXIT_CODE=1 \"$@\" \"$RPR_IMAGE\" sh -c '" INNER "'\n";

/* inspect for each container's state, then `stats` for the running ones'
 * CPU and memory (the engine's word: it works for a remote engine too). */
static const char observe_script[] =
        ENGINE_ENV "ids=$(\"$RPR_ENGINE\" ps -aq --filter \"label=rpr.runner=$RPR_RUNNER\") || exit 1\n"
                   "[ -n \"$ids\" ] || exit 0\n"
                   "\"$RPR_ENGINE\" inspect -f '{{index .Config.Labels \"rpr.instance\"}} {{.State.Status}} "
                   "{{.State.ExitCode}} {{.State.Pid}} {{.Id}}' $ids\n"
                   "up=$(\"$RPR_ENGINE\" ps -q --filter \"label=rpr.runner=$RPR_RUNNER\" --filter status=running)\n"
                   "[ -z \"$up\" ] || \"$RPR_ENGINE\" stats --no-stream --format "
                   "'S {{.Name}} {{.CPUPerc}} {{.MemUsage}}' $up 2>/dev/null || true\n";

static const char remove_script[] = ENGINE_ENV "\"$RPR_ENGINE\" stop -t 2 \"$RPR_CNAME\" >/dev/null 2>&1\n"
                                               "\"$RPR_ENGINE\" rm -f \"$RPR_CNAME\" >/dev/null 2>&1\n"
                                               "if \"$RPR_ENGINE\" inspect \"$RPR_CNAME\" >/dev/null 2>&1; "
                                               "then echo \"container $RPR_CNAME is still "
                                               "there\"; exit 1; fi\n"
                                               "rm -rf \"$RPR_DIR/$RPR_NAME\"\n";

/* The variables every container command needs. */
static void engine_env(const RunnerSpec *sp, const char *instance, SshEnv *env) {
        const json_t *c = sp->container;
        _cleanup_free_ char *dir = xasprintf("%s/%s.%s", sp->install_dir, sp->ns, sp->name);
        _cleanup_free_ char *runner = xasprintf("%s.%s", sp->ns, sp->name);

        ssh_env_add(env, "RPR_ENGINE", json_str_at(c, "engine") ?: "docker");
        ssh_env_add(env, "RPR_DOCKER_HOST", json_str_at(c, "host") ?: "");
        ssh_env_add(env, "RPR_RUNNER", runner);
        ssh_env_add(env, "RPR_DIR", dir);
        if (instance) {
                _cleanup_free_ char *cname = xasprintf("rpr-%s-%s", sp->ns, instance);
                ssh_env_add(env, "RPR_NAME", instance);
                ssh_env_add(env, "RPR_CNAME", cname);
        }
}

/* "450.6kB", "1.5MiB", "2GB" as bytes; -1 when it is none of these. */
static long long mem_bytes(const char *v) {
        static const struct {
                const char *unit;
                double factor;
        } units[] = {{"B", 1},          {"kB", 1e3},  {"KB", 1e3},   {"KiB", 1024.0}, {"MB", 1e6},
                     {"MiB", 1048576.0}, {"GB", 1e9}, {"GiB", 1073741824.0}};
        char *end = NULL;
        double x = strtod(v, &end);

        for (size_t i = 0; end != v && i < ELEMENTSOF(units); i++)
                if (STREQ(end, units[i].unit))
                        return (long long) (x * units[i].factor);
        return -1;
}

/* "S CONTAINER CPU% MEMUSED / MEMLIMIT" of stats: the instance's cpuPercent
 * and memBytes (the container is named rpr-NS-INSTANCE). */
static void parse_stats(const char *line, const char *ns, json_t *seen) {
        char cname[160], cpu[32], mem[32];
        _cleanup_free_ char *prefix = xasprintf("rpr-%s-", ns);

        if (sscanf(line, "S %159s %31s %31s", cname, cpu, mem) != 3 || !startswith(cname, prefix))
                return;
        json_t *o = json_object_get(seen, cname + strlen(prefix));
        long long bytes = mem_bytes(mem);
        char *end = NULL;
        double percent = strtod(cpu, &end);
        if (!o)
                return;
        if (end != cpu && STREQ(end, "%"))
                json_object_set_new(o, "cpuPercent", json_real(percent));
        if (bytes >= 0)
                json_object_set_new(o, "memBytes", json_integer(bytes));
}

/* "NAME STATUS EXITCODE PID ID" lines of inspect, then stats lines. */
static json_t *parse_inspect(const char *text, const char *ns) {
        json_t *seen = json_object();
        const char *p = text ?: "";

        while (*p) {
                size_t n = strcspn(p, "\n");
                _cleanup_free_ char *line = xstrndup(p, n);
                char name[128], status[32], id[80];
                long long code, pid;
                p += n + (p[n] == '\n');
                if (startswith(line, "S ")) {
                        parse_stats(line, ns, seen);
                        continue;
                }
                if (sscanf(line, "%127s %31s %lld %lld %79s", name, status, &code, &pid, id) != 5)
                        continue;
                json_t *o = json_object();
                bool ended = STREQ(status, "exited") || STREQ(status, "dead") || STREQ(status, "stopped");
                json_object_set_new(o, "state", json_string(ended ? "exited" : "running"));
                json_object_set_new(o, ended ? "exitCode" : "pid", json_integer(ended ? code : pid));
                json_object_set_new(o, "containerId", json_stringn(id, MIN(strlen(id), (size_t) 12)));
                json_object_set_new(seen, name, o);
        }
        return seen;
}

int runner_container_observe(RunnerController *rc, const RunnerSpec *sp, const SshTarget *t, json_t **ret,
                             SshResult *res) {
        Buf out = {.max = OUTPUT_MAX};
        SshEnv env = {0};

        engine_env(sp, NULL, &env);
        int k = runner_host_run(rc, sp, t, observe_script, &env, NULL, 0, &out, res);
        if (k >= 0)
                *ret = parse_inspect(out.data, sp->ns);
        buf_free(&out);
        return k;
}

/* spec.container.args, each quoted for the shell's eval. */
static char *args_text(const json_t *args) {
        Buf b = {0};
        const json_t *a;
        size_t i;

        json_array_foreach(args, i, a) {
                _cleanup_free_ char *q = ssh_shell_quote(json_string_value(a) ?: "");
                buf_printf(&b, "%s%s", i ? " " : "", q);
        }
        return b.data ? buf_steal(&b) : xstrdup("");
}

int runner_container_start(RunnerController *rc, const RunnerSpec *sp, const SshTarget *t,
                           const RunnerStart *s, char **ret_id, SshResult *res) {
        const json_t *c = sp->container;
        _cleanup_free_ char *input = xasprintf("%s\n", s->jit ?: s->reg_token);
        _cleanup_free_ char *args = args_text(json_object_get(c, "args"));
        Buf out = {.max = OUTPUT_MAX};
        SshEnv env = {0};

        engine_env(sp, s->name, &env);
        ssh_env_add(&env, "RPR_IMAGE", json_str_at(c, "image") ?: "");
        ssh_env_add(&env, "RPR_WORKDIR", json_str_at(c, "workdir") ?: "/home/runner");
        ssh_env_add(&env, "RPR_ARGS", args);
        ssh_env_add(&env, "RPR_HOW", s->jit ? "jit" : "token");
        ssh_env_add(&env, "RPR_URL", s->url);
        ssh_env_add(&env, "RPR_LABELS", s->labels);
        ssh_env_add(&env, "RPR_GROUP", s->group);
        ssh_env_add(&env, "RPR_EPHEMERAL", s->ephemeral ? "true" : "false");
        int k = runner_host_run(rc, sp, t, start_script, &env, input, strlen(input), &out, res);
        explicit_bzero(input, strlen(input));
        if (k >= 0) {
                /* The last line is the container's id. */
                const char *text = out.data ?: "";
                size_t n = strlen(text);
                while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == '\r'))
                        n--;
                const char *start = text + n;
                while (start > text && start[-1] != '\n')
                        start--;
                *ret_id = xstrndup(start, MIN((size_t) (text + n - start), (size_t) 12));
        }
        buf_free(&out);
        return k;
}

int runner_container_remove(RunnerController *rc, const RunnerSpec *sp, const SshTarget *t, const char *name,
                            SshResult *res) {
        Buf out = {.max = OUTPUT_MAX};
        SshEnv env = {0};

        engine_env(sp, name, &env);
        int k = runner_host_run(rc, sp, t, remove_script, &env, NULL, 0, &out, res);
        buf_free(&out);
        return k;
}
