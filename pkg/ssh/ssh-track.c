/* ssh-track: finding a command again after the rprd that started it died.
 *
 * A tracked command runs under a small /bin/sh wrapper (the same text for
 * both transports) that writes "PGID STARTTIME" to a pid file before the
 * script starts, tells rprd so, and runs the script only when rprd answers
 * "go": so whenever a script runs, its pid file exists, and a script whose
 * rprd died before the answer never runs. The reaper is /bin/sh too, run
 * on the same host as any command: it checks that the process group is
 * still the one recorded (the leader's start time; a gone leader whose
 * group lives on is still ours, since Linux does not reuse a pid that is a
 * live group's id), sends TERM to the whole group, waits, then KILL. */
#include <stdio.h>
#include <string.h>

#include "ssh/ssh-private.h"

#define TRACK_ID_MAX 200

/* Where pid files go when the directory asked for cannot be written (a
 * HOME that does not exist or is not the user's): a directory of the
 * user's own under /tmp. */
#define FALLBACK_DIR "/tmp/rpr-run-$(id -u)"

/* $1 script, $2 directory, $3 id, $4 "exec" when the caller waits for the
 * process itself and removes the pid file (local commands: the wrapper's
 * shell then runs the script itself, as sh -c would, its own variables
 * and arguments cleared — same pid and start time, and no second shell).
 * Exit 125: the command did not start. Only shell builtins run before the
 * script when the directory is there: a task is one process, not four. */
#define WRAPPER(FD)                                                                                \
        "s=$1 d=$2 id=$3 mode=$4\n"                                                                   \
        "[ -d \"$d\" ] && [ -w \"$d\" ] || mkdir -p \"$d\" 2>/dev/null\n"                                \
        "if ! [ -w \"$d\" ]; then d=" FALLBACK_DIR "; "                                                  \
        "mkdir -p -m 700 \"$d\" 2>/dev/null; [ -O \"$d\" ] || d=/nonexistent; fi\n"                                                \
        "f=\"$d/$id.pid\"\n"                                                                          \
        "st=; read -r st </proc/$$/stat 2>/dev/null\n"                                                 \
        "set -- $st\n"                                                                                 \
        "if ! echo \"$$ ${22:-0}\" >\"$f\"; then echo \"rpr: cannot record the command in $d\" >&2; " \
        "exit 125; fi\n"                                                                               \
        "echo rpr-pid:$$ >&" #FD "\n"                                                                  \
        "read -r go && [ \"$go\" = go ] || exit 125\n"                                                 \
        "exec </dev/null\n"                                                                            \
        "if [ \"$mode\" = exec ]; then unset d id mode f st go; set --; eval \"$s\"; exit; fi\n"        \
        "/bin/sh -c \"$s\"\n"                                                                          \
        "rc=$?\n"                                                                                      \
        "rm -f \"$f\"\n"                                                                               \
        "if [ $rc -gt 128 ] && [ $rc -lt 160 ]; then kill -$((rc - 128)) $$; fi\n"                     \
        "exit $rc\n"

const char *ssh_track_wrapper(int ready_fd) {
        return ready_fd == 3 ? WRAPPER(3) : WRAPPER(2);
}

/* RPR_REAP_DIR (empty: ~/.rpr/run), RPR_REAP_ID, RPR_REAP_GRACE (tenths of
 * a second). Prints rpr-reap:none|ended|terminated|killed. */
static const char reaper[] =
        "f=\"${RPR_REAP_DIR:-$HOME/.rpr/run}/$RPR_REAP_ID.pid\"\n"
        "[ -f \"$f\" ] || f=\"" FALLBACK_DIR "/$RPR_REAP_ID.pid\"\n"
        "[ -f \"$f\" ] || { echo rpr-reap:none; exit 0; }\n"
        "pid=; st=; read -r pid st <\"$f\"\n"
        "case $pid in ''|*[!0-9]*|0|1) rm -f \"$f\"; echo rpr-reap:none; exit 0;; esac\n"
        "ours() {\n"
        "  if [ -r /proc/$pid/stat ]; then\n"
        "    l=; read -r l </proc/$pid/stat 2>/dev/null; set -- $l\n"
        "    [ \"$st\" = 0 ] || [ \"${22}\" = \"$st\" ] || return 1\n"
        "  fi\n"
        "  [ -d /proc/self ] || { kill -0 -$pid 2>/dev/null; return; }\n"
        "  for p in /proc/[0-9]*; do\n"
        "    l=; read -r l <$p/stat 2>/dev/null || continue; set -- $l\n"
        "    [ \"$5\" = \"$pid\" ] && [ \"$3\" != Z ] && return 0\n"
        "  done\n"
        "  return 1\n"
        "}\n"
        "ours || { rm -f \"$f\"; echo rpr-reap:ended; exit 0; }\n"
        "kill -TERM -$pid 2>/dev/null\n"
        "n=0\n"
        "while [ $n -lt \"$RPR_REAP_GRACE\" ] && ours; do sleep 0.1; n=$((n + 1)); done\n"
        "if ours; then kill -KILL -$pid 2>/dev/null; rm -f \"$f\"; echo rpr-reap:killed; "
        "else rm -f \"$f\"; echo rpr-reap:terminated; fi\n";

static const char *const reap_names[_SSH_REAP_MAX] = {
        [SSH_REAP_NONE] = "None",
        [SSH_REAP_ENDED] = "Ended",
        [SSH_REAP_TERMINATED] = "Terminated",
        [SSH_REAP_KILLED] = "Killed",
};

const char *ssh_reap_name(SshReap r) {
        return (unsigned) r < _SSH_REAP_MAX ? reap_names[r] : "Unknown";
}

bool ssh_track_id_valid(const char *s) {
        size_t n = s ? strlen(s) : 0;

        if (n == 0 || n > TRACK_ID_MAX || s[0] == '.')
                return false;
        return strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._@-") == n;
}

/* The reaper's stdout, kept (it is one short line). */
typedef struct ReapOut {
        char text[128];
        size_t len;
} ReapOut;

static int reap_output(void *userdata, SshStream stream, const char *data, size_t n) {
        ReapOut *o = userdata;

        if (stream != SSH_STDOUT)
                return 0;
        n = MIN(n, sizeof o->text - 1 - o->len);
        memcpy(o->text + o->len, data, n);
        o->len += n;
        o->text[o->len] = '\0';
        return 0;
}

int ssh_reap(SshPool *p, const SshTarget *target, const SshTrack *track, uint64_t grace_usec, SshReap *ret,
             SshResult *result) {
        char grace[24];
        ReapOut out = {0};
        SshEnv env = {0};
        int r;

        if (!track || !ssh_track_id_valid(track->id)) {
                *result = (SshResult){.exit_code = -1};
                return ssh_fail(result, SSH_FAIL_EXEC, EINVAL, "invalid command id");
        }
        snprintf(grace, sizeof grace, "%llu", (unsigned long long) (grace_usec / (USEC_PER_SEC / 10)));
        ssh_env_add(&env, "RPR_REAP_DIR", target->transport == SSH_TRANSPORT_LOCAL ? track->local_dir : "");
        ssh_env_add(&env, "RPR_REAP_ID", track->id);
        ssh_env_add(&env, "RPR_REAP_GRACE", grace);
        SshCommand cmd = {.script = reaper,
                          .env = (const char *const *) env.v,
                          .timeout_usec = grace_usec + 30 * USEC_PER_SEC,
                          .output = reap_output,
                          .userdata = &out};
        r = ssh_run(p, target, &cmd, result);
        ssh_env_clear(&env);
        if (r < 0)
                return r;
        for (int k = 0; k < _SSH_REAP_MAX; k++) {
                char line[48];
                snprintf(line, sizeof line, "rpr-reap:%s", reap_names[k]);
                line[9] = (char) (line[9] - 'A' + 'a');
                if (strstr(out.text, line)) {
                        *ret = (SshReap) k;
                        return 0;
                }
        }
        return ssh_fail(result, SSH_FAIL_EXEC, EPROTO, "the reaper said nothing usable (exit %d)", result->exit_code);
}
