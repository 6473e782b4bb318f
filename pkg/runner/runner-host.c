/* runner-host: what rprd runs on a Server for its runners (native mode).
 *
 * Layout on the host: INSTALLDIR/.releases/SHA256.tar.gz (the release,
 * copied once), INSTALLDIR/NS.RUNNER/INSTANCE/ (one unpacked copy per
 * instance: its .jitconfig, 0600; runner.log; .exit once it ended). Each
 * instance runs as its own session and process group, started detached
 * (setsid) so that neither the command that started it nor rprd holds it;
 * its group id and the leader's start time are in the pid file a tracked
 * command would have (ssh-track.c), so ssh_reap() stops it. Secrets (a JIT
 * configuration, a registration token) reach the host on the command's
 * stdin, never on a command line. */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runner/runner-private.h"

#define CLK_TCK_ASSUMED 100
#define PAGE_ASSUMED 4096
#define OUTPUT_MAX (256u * 1024)
#define REAP_GRACE_USEC (10 * USEC_PER_SEC)

/* Where the Runner's instances live on a host. */
static char *runner_dir(const RunnerSpec *sp) {
        return xasprintf("%s/%s.%s", sp->install_dir, sp->ns, sp->name);
}

/* The pid file's id, as ssh_reap() wants it. */
static char *track_id(const RunnerSpec *sp, const char *instance) {
        return xasprintf("rpr-runner.%s.%s.%s", sp->ns, sp->name, instance);
}

/* stdout into the caller's buffer (what scripts print for rprd), stderr
 * apart (for the message when the command fails): a line of one is never
 * cut by the other. */
typedef struct Output {
        Buf *out;
        Buf err;
} Output;

static int keep_output(void *userdata, SshStream stream, const char *data, size_t n) {
        Output *o = userdata;
        Buf *b = stream == SSH_STDOUT ? o->out : &o->err;

        if (b->len + n > OUTPUT_MAX)
                return 0;
        return buf_append(b, data, n) < 0 ? -ENOMEM : 0;
}

int runner_host_run(RunnerController *rc, const RunnerSpec *sp, const SshTarget *t, const char *script,
                    SshEnv *env, const void *input, size_t input_len, Buf *out, SshResult *res) {
        if (t->transport == SSH_TRANSPORT_LOCAL)
                ssh_env_add(env, "RPR_PID_DIR", rc->proc_dir);
        Output o = {.out = out, .err = {.max = OUTPUT_MAX}};
        SshCommand cmd = {.script = script,
                          .env = (const char *const *) env->v,
                          .timeout_usec = sp->command_timeout_usec,
                          .output = keep_output,
                          .userdata = &o,
                          .input = input,
                          .input_len = input_len};
        int k = ssh_run(rc->ssh, t, &cmd, res);
        ssh_env_clear(env);
        if (k >= 0 && res->exit_code != 0) {
                _cleanup_free_ char *text = text_flat_dup(o.err.len ? o.err.data : out->data ?: "", 300);
                const char *where = t->host ? t->host : t->run ? "its agent's host" : "local";
                snprintf(res->message, sizeof res->message, "exit %d on %s: %s", res->exit_code, where,
                         text);
                k = -EIO;
        }
        buf_free(&o.err);
        return k;
}

/* ---- observing ------------------------------------------------------------------ */

/* One line per instance directory; then, in one pass over /proc, the CPU
 * ticks and resident pages of every process in a live runner's group
 * (rprd adds them up): one scan for all of them, not one each. */
static const char observe_script[] =
        "b=$RPR_DIR; pd=${RPR_PID_DIR:-$HOME/.rpr/run}; pids=\n"
        "[ -d \"$b\" ] || exit 0\n"
        "for d in \"$b\"/*/; do\n"
        "  [ -d \"$d\" ] || continue\n"
        "  n=${d%/}; n=${n##*/}\n"
        "  if [ -f \"$d.exit\" ]; then c=; read -r c <\"$d.exit\"; echo \"rpr-runner $n exited ${c:-255}\"; "
        "continue; fi\n"
        "  f=\"$pd/$RPR_PREFIX$n.pid\"; pid=; st=\n"
        "  [ -f \"$f\" ] || f=\"/tmp/rpr-run-$(id -u)/$RPR_PREFIX$n.pid\"\n"
        "  [ -f \"$f\" ] && read -r pid st <\"$f\"\n"
        "  if [ -n \"$pid\" ] && [ -r /proc/$pid/stat ]; then\n"
        "    l=; read -r l 2>/dev/null </proc/$pid/stat; set -- $l\n"
        "    if [ \"${22}\" = \"$st\" ]; then echo \"rpr-runner $n running $pid\"; pids=\"$pids $pid \"; "
        "continue; fi\n"
        "  fi\n"
        "  echo \"rpr-runner $n dead ${pid:-0} ${st:-0} ${22:-0}\"\n"
        "done\n"
        "[ -n \"$pids\" ] || exit 0\n"
        "for p in /proc/[0-9]*; do l=; read -r l 2>/dev/null <$p/stat || continue; set -- $l\n"
        "  case $pids in *\" $5 \"*) echo \"rpr-proc $5 $((${14} + ${15})) ${24}\";; esac\n"
        "done\n";

/* One "rpr-runner NAME running PID [TICKS PAGES]", "... exited CODE" or
 * "... dead" line. */
static void observe_line(json_t *seen, const char *line) {
        char name[128], what[16];
        long long a = 0, b = 0, c = 0;
        int n = sscanf(line, "rpr-runner %127s %15s %lld %lld %lld", name, what, &a, &b, &c);

        if (n < 2)
                return;
        json_t *o = json_object();
        json_object_set_new(o, "state", json_string(what));
        if (STREQ(what, "dead") && n >= 5)
                log_debug("runner instance %s: pid file says %lld started at %lld, /proc says %lld", name, a,
                          b, c);
        if (STREQ(what, "exited") && n >= 3)
                json_object_set_new(o, "exitCode", json_integer(a));
        if (STREQ(what, "running") && n >= 3) {
                json_object_set_new(o, "pid", json_integer(a));
                json_object_set_new(o, "cpuSeconds", json_real((double) b / CLK_TCK_ASSUMED));
                json_object_set_new(o, "memBytes", json_integer(c * PAGE_ASSUMED));
        }
        json_object_set_new(seen, name, o);
}

/* One "rpr-proc PGID TICKS PAGES" line: added to the instance whose
 * process group it is. */
static void proc_line(json_t *seen, const char *line) {
        long long pgid, ticks, pages;
        const char *name;
        json_t *o;

        if (sscanf(line, "rpr-proc %lld %lld %lld", &pgid, &ticks, &pages) != 3)
                return;
        json_object_foreach(seen, name, o) {
                if (json_int_at(o, "pid", 0) != pgid)
                        continue;
                double cpu = json_real_value(json_object_get(o, "cpuSeconds"));
                json_object_set_new(o, "cpuSeconds", json_real(cpu + (double) ticks / CLK_TCK_ASSUMED));
                json_object_set_new(o, "memBytes",
                                    json_integer(json_int_at(o, "memBytes", 0) + pages * PAGE_ASSUMED));
                return;
        }
}

json_t *runner_observed_parse(const char *text) {
        json_t *seen = json_object();

        for (int round = 0; round < 2; round++) {
                const char *p = text ?: "";
                while (*p) {
                        size_t n = strcspn(p, "\n");
                        _cleanup_free_ char *line = xstrndup(p, n);
                        if (round == 0)
                                observe_line(seen, line);
                        else
                                proc_line(seen, line);
                        p += n + (p[n] == '\n');
                }
        }
        return seen;
}

int runner_host_observe(RunnerController *rc, const RunnerSpec *sp, const SshTarget *t, json_t **ret,
                        SshResult *res) {
        _cleanup_free_ char *dir = runner_dir(sp),
                            *prefix = xasprintf("rpr-runner.%s.%s.", sp->ns, sp->name);
        Buf out = {.max = OUTPUT_MAX};
        SshEnv env = {0};
        int k;

        if (STREQ(sp->mode, "container"))
                return runner_container_observe(rc, sp, t, ret, res);
        ssh_env_add(&env, "RPR_DIR", dir);
        ssh_env_add(&env, "RPR_PREFIX", prefix);
        k = runner_host_run(rc, sp, t, observe_script, &env, NULL, 0, &out, res);
        if (k < 0) {
                buf_free(&out);
                return k;
        }
        *ret = runner_observed_parse(out.data);
        buf_free(&out);
        return 0;
}

/* ---- installing --------------------------------------------------------------- */

static const char install_script[] = "r=$RPR_INSTALL/.releases; f=$r/$RPR_SHA.tar.gz\n"
                                     "if [ -f \"$f\" ]; then cat >/dev/null; echo present; exit 0; fi\n"
                                     "mkdir -p \"$r\" || exit 1\n"
                                     "cat >\"$f.part\" || exit 1\n"
                                     "if command -v sha256sum >/dev/null; then s=$(sha256sum <\"$f.part\"); "
                                     "else s=$(busybox sha256sum <\"$f.part\"); fi\n"
                                     "[ \"${s%% *}\" = \"$RPR_SHA\" ] || { rm -f \"$f.part\"; echo \"the "
                                     "copy's sha256 is ${s%% *}\"; exit 1; }\n"
                                     "mv \"$f.part\" \"$f\"\n";

static const char present_script[] =
        "[ -f \"$RPR_INSTALL/.releases/$RPR_SHA.tar.gz\" ] && echo present; exit 0\n";

int runner_host_install(RunnerController *rc, const RunnerSpec *sp, const SshTarget *t, const char *path,
                        const char *sha256, SshResult *res) {
        Buf out = {.max = OUTPUT_MAX};
        SshEnv env = {0};
        struct stat s;
        int k;

        ssh_env_add(&env, "RPR_INSTALL", sp->install_dir);
        ssh_env_add(&env, "RPR_SHA", sha256);
        k = runner_host_run(rc, sp, t, present_script, &env, NULL, 0, &out, res);
        bool present = k >= 0 && out.data && strstr(out.data, "present");
        buf_free(&out);
        if (k < 0 || present)
                return k;

        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || fstat(fd, &s) < 0 || s.st_size == 0) {
                k = -errno ?: -EINVAL;
                if (fd >= 0)
                        close(fd);
                snprintf(res->message, sizeof res->message, "cannot read the release %s: %s", path,
                         strerror(-k));
                return k;
        }
        void *data = mmap(NULL, (size_t) s.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        close(fd);
        if (data == MAP_FAILED)
                return -errno;
        ssh_env_add(&env, "RPR_INSTALL", sp->install_dir);
        ssh_env_add(&env, "RPR_SHA", sha256);
        out = (Buf){.max = OUTPUT_MAX};
        k = runner_host_run(rc, sp, t, install_script, &env, data, (size_t) s.st_size, &out, res);
        munmap(data, (size_t) s.st_size);
        buf_free(&out);
        return k;
}

/* ---- starting ------------------------------------------------------------------ */

/* $1 the instance's directory, $2 its pid file. The session leader records
 * itself as a tracked command's wrapper would, then runs the runner. */
#define LAUNCHED                                                                                            \
        "d=$1 f=$2; cd \"$d\" || exit 1\n"                                                                  \
        "st=; read -r st </proc/$$/stat; set -- $st; echo \"$$ ${22:-0}\" >\"$f\"\n"                        \
        "if [ -f .jitconfig ]; then ACTIONS_RUNNER_INPUT_JITCONFIG=$(cat .jitconfig); "                     \
        "export ACTIONS_RUNNER_INPUT_JITCONFIG; fi\n"                                                       \
        "./run.sh >>runner.log 2>&1\n"                                                                      \
        "echo $? >.exit\n"

static const char start_script[] =
        "umask 077\n"
        "d=$RPR_DIR/$RPR_NAME; pd=${RPR_PID_DIR:-$HOME/.rpr/run}\n"
        /* As ssh-track.c's wrapper: a home that cannot be written falls back to /tmp. */
        "mkdir -p \"$pd\" 2>/dev/null; if ! [ -w \"$pd\" ]; then pd=/tmp/rpr-run-$(id -u); mkdir -p -m 700 "
        "\"$pd\"; "
        "[ -O \"$pd\" ] || { echo \"no directory for the pid file\"; exit 1; }; fi\n"
        "f=$pd/$RPR_TRACK.pid\n"
        "IFS= read -r secret || [ -n \"$secret\" ] || { echo 'no secret on stdin'; exit 1; }\n"
        "rm -rf \"$d\" && mkdir -p \"$d\" && cd \"$d\" || exit 1\n"
        "tar xzf \"$RPR_INSTALL/.releases/$RPR_SHA.tar.gz\" || exit 1\n"
        "if [ \"$RPR_HOW\" = jit ]; then printf '%s\\n' \"$secret\" >.jitconfig || exit 1\n"
        "else\n"
        "  eph=; [ \"$RPR_EPHEMERAL\" = true ] && eph=--ephemeral\n"
        "  ACTIONS_RUNNER_INPUT_TOKEN=$secret ./config.sh --unattended --url \"$RPR_URL\" --name "
        "\"$RPR_NAME\" "
        "--labels \"$RPR_LABELS\" --work _work --replace $eph --disableupdate --runnergroup \"$RPR_GROUP\" "
        ">config.log 2>&1 </dev/null || { cat config.log; exit 3; }\n"
        "fi\n"
        "secret=\n"
        "[ \"$(id -u)\" = 0 ] && export RUNNER_ALLOW_RUNASROOT=1\n"
        "export ACTIONS_RUNNER_RETURN_VERSION_DEPRECATED_EXIT_CODE=1\n"
        "unset RPR_HOW RPR_URL RPR_LABELS RPR_GROUP RPR_EPHEMERAL RPR_SHA RPR_INSTALL RPR_TRACK "
        "RPR_PID_DIR\n"
        "rm -f \"$f\"\n"
        "s=setsid; command -v setsid >/dev/null || s='busybox setsid'\n"
        "$s /bin/sh -c '" LAUNCHED "' rpr-runner \"$d\" \"$f\" </dev/null >/dev/null 2>&1 &\n"
        "i=0; while [ ! -s \"$f\" ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done\n"
        "pid=; read -r pid st <\"$f\" || { echo 'the runner did not start'; exit 1; }\n"
        "echo \"rpr-runner-pid:$pid\"\n";

int runner_host_start(RunnerController *rc, const RunnerSpec *sp, const SshTarget *t, const RunnerStart *s,
                      long *ret_pid, SshResult *res) {
        _cleanup_free_ char *dir = runner_dir(sp), *track = track_id(sp, s->name);
        _cleanup_free_ char *input = xasprintf("%s\n", s->jit ?: s->reg_token);
        Buf out = {.max = OUTPUT_MAX};
        SshEnv env = {0};
        int k;

        ssh_env_add(&env, "RPR_DIR", dir);
        ssh_env_add(&env, "RPR_NAME", s->name);
        ssh_env_add(&env, "RPR_TRACK", track);
        ssh_env_add(&env, "RPR_INSTALL", sp->install_dir);
        ssh_env_add(&env, "RPR_SHA", s->sha256);
        ssh_env_add(&env, "RPR_HOW", s->jit ? "jit" : "token");
        ssh_env_add(&env, "RPR_URL", s->url);
        ssh_env_add(&env, "RPR_LABELS", s->labels);
        ssh_env_add(&env, "RPR_GROUP", s->group);
        ssh_env_add(&env, "RPR_EPHEMERAL", s->ephemeral ? "true" : "false");
        k = runner_host_run(rc, sp, t, start_script, &env, input, strlen(input), &out, res);
        explicit_bzero(input, strlen(input));
        const char *p = out.data ? strstr(out.data, "rpr-runner-pid:") : NULL;
        long pid = p ? strtol(p + 15, NULL, 10) : 0;
        buf_free(&out);
        if (k < 0)
                return k;
        if (pid <= 1) {
                snprintf(res->message, sizeof res->message, "the runner did not say its pid");
                return -EPROTO;
        }
        *ret_pid = pid;
        return 0;
}

/* ---- removing ------------------------------------------------------------------- */

int runner_host_remove(RunnerController *rc, const RunnerSpec *sp, const SshTarget *t, const char *name,
                       SshResult *res) {
        _cleanup_free_ char *dir = runner_dir(sp), *track = track_id(sp, name);
        SshTrack tr = {.id = track, .local_dir = rc->proc_dir};
        Buf out = {.max = OUTPUT_MAX};
        SshEnv env = {0};
        SshReap found;
        int k;

        if (STREQ(sp->mode, "container"))
                return runner_container_remove(rc, sp, t, name, res);
        k = ssh_reap(rc->ssh, t, &tr, REAP_GRACE_USEC, &found, res);
        if (k < 0)
                return k;
        ssh_env_add(&env, "RPR_DIR", dir);
        ssh_env_add(&env, "RPR_NAME", name);
        k = runner_host_run(rc, sp, t, "rm -rf \"$RPR_DIR/$RPR_NAME\"\n", &env, NULL, 0, &out, res);
        buf_free(&out);
        return k;
}
