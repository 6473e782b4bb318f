/* ssh-track: finding a command again after the rprd that started it died.
 *
 * A tracked command runs under a small /bin/sh wrapper (the same text for
 * both transports) that writes "PGID STARTTIME" to a pid file before the
 * script starts, tells rprd so, and runs the script only when rprd answers
 * "go": so whenever a script runs, its pid file exists, and a script whose
 * rprd died before the answer never runs. A pid file outlives its command
 * (it is garbage once rprd saw the end): rprd removes local ones itself,
 * and hands a host's on to a later command there, many at a time. The reaper is /bin/sh too, run
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

/* $1 script, $2 directory, $3 id, $4 mode, $5 a nonce, and after them
 * the pid file names of ended commands to remove first (in one rm for
 * many: a command's own pid file is not removed when it ends, see
 * ssh-pool.c). The record is "PGID STARTTIME", padded to a fixed width
 * and written over whatever the file held (1<>, no truncation: on ext4 a
 * truncated file that is written again is flushed to disk when closed).
 *
 * Mode "exec", for a local command whose parent (rprd) waits for the
 * process itself and removes or recycles its pid file "$2/$3.pid": fd 3
 * is a socket to rprd, which sends the start time (it reads /proc in C;
 * dash would read it a byte per system call). Once the file is written,
 * a byte sent back proves rprd still there (if it died, its end is closed
 * and the write kills the wrapper with SIGPIPE): no round trip, and a
 * wrapper whose rprd died before its file was written never runs the
 * script. Mode "eval", for a command over a channel: the pid file is
 * "$2/$3+$5.pid" ($5 a nonce, so that a name handed on for removal is
 * never that of a later command with the same id); the wrapper says
 * "rpr-pid:PID" on stderr and runs the script only when rprd answers
 * "go" on stdin; a script that ends as a signal would (128+N) ends the
 * shell by that signal, as sh -c SCRIPT reports it.
 *
 * Either way the script runs in the wrapper's own shell, its variables
 * and arguments cleared (same pid, same start time, no second shell,
 * nothing forked for it). Exit 125: the command did not start. Only shell
 * builtins run before the script when the directory is there. */
#define WRAPPER                                                                                             \
        "s=$1 d=$2 id=$3 mode=$4 tag=$5\n"                                                                  \
        "[ -d \"$d\" ] && [ -w \"$d\" ] || mkdir -p \"$d\" 2>/dev/null\n"                                   \
        "if ! [ -w \"$d\" ]; then d=" FALLBACK_DIR "; "                                                     \
        "mkdir -p -m 700 \"$d\" 2>/dev/null; [ -O \"$d\" ] || d=/nonexistent; fi\n"                         \
        "if [ $# -gt 5 ]; then shift 5; (cd \"$d\" 2>/dev/null && exec rm -f -- \"$@\"); fi\n"              \
        "st=\n"                                                                                             \
        "if [ \"$mode\" = exec ]; then f=\"$d/$id.pid\"; read -r st <&3 || exit 125\n"                      \
        "else f=\"$d/$id+$tag.pid\"; read -r st </proc/$$/stat 2>/dev/null; set -- $st; st=${22:-0}; fi\n"  \
        "if ! printf '%-40s\\n' \"$$ $st\" 1<>\"$f\"; then echo \"rpr: cannot record the command in $d\" "  \
        ">&2; "                                                                                             \
        "exit 125; fi\n"                                                                                    \
        "if [ \"$mode\" = exec ]; then echo >&3 || exit 125; exec 3>&-\n"                                   \
        "else echo rpr-pid:$$ >&2; read -r go && [ \"$go\" = go ] || exit 125; fi\n"                        \
        "exec </dev/null\n"                                                                                 \
        "unset d id f st go tag; set --\n"                                                                  \
        "if [ \"$mode\" = exec ]; then unset mode; eval \"unset s; $s\"; exit; fi\n"                        \
        "unset mode; eval \"unset s; $s\"\n"                                                                \
        "rc=$?\n"                                                                                           \
        "if [ $rc -gt 128 ] && [ $rc -lt 160 ]; then command kill -$((rc - 128)) $$; fi\n"                  \
        "exit $rc\n"

const char *ssh_track_wrapper(void) {
        return WRAPPER;
}

/* RPR_REAP_DIR (empty: ~/.rpr/run), RPR_REAP_ID, RPR_REAP_GRACE (tenths of
 * a second). Every pid file of the id (with or without a nonce, there or
 * in the fallback directory) is looked at; prints the strongest finding,
 * rpr-reap:none|ended|terminated|killed. */
static const char reaper[] =
        "d=\"${RPR_REAP_DIR:-$HOME/.rpr/run}\" best=none\n"
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
        "reap() {\n"
        "  pid=; st=; read -r pid st <\"$1\"\n"
        "  case $pid in ''|*[!0-9]*|0|1) rm -f \"$1\"; return;; esac\n"
        "  if ! ours; then rm -f \"$1\"; [ $best = none ] && best=ended; return; fi\n"
        "  kill -TERM -$pid 2>/dev/null\n"
        "  n=0\n"
        "  while [ $n -lt \"$RPR_REAP_GRACE\" ] && ours; do sleep 0.1; n=$((n + 1)); done\n"
        "  if ours; then kill -KILL -$pid 2>/dev/null; best=killed\n"
        "  elif [ $best != killed ]; then best=terminated; fi\n"
        "  rm -f \"$1\"\n"
        "}\n"
        "for f in \"$d/$RPR_REAP_ID.pid\" \"$d/$RPR_REAP_ID+\"*.pid \"" FALLBACK_DIR "/$RPR_REAP_ID.pid\" "
        "\"" FALLBACK_DIR "/$RPR_REAP_ID+\"*.pid; do\n"
        "  [ -f \"$f\" ] && reap \"$f\"\n"
        "done\n"
        "echo rpr-reap:$best\n";

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
