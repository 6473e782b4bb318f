/* ssh-local: transport local, a command as a child process of rprd.
 *
 * The child gets its own session (setsid), so its process group holds
 * everything it starts: a timeout or a cancel kills that whole group, as
 * over SSH. stdout and stderr are read as they come, with poll(). It is
 * started with posix_spawn(), which does not copy rprd's address space as
 * fork() would: pipelines start many small commands.
 *
 * The child never sees rprd's environment (a Token's valueFrom.env secret
 * lives there): it gets PATH, HOME and LANG, and the command's own env is
 * exported by the script. A tracked command (ssh-track.c) runs under the
 * wrapper, which reports on fd 3 once its pid file is written and waits
 * for "go" on stdin. */
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ssh/ssh-private.h"

#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

/* The whole environment a child gets: rprd's PATH, HOME and LANG (or
 * defaults), nothing else of rprd's. */
static void clean_env(char *ret[static 4], char buf[static 3][1024]) {
        static const char *const names[] = {"PATH", "HOME", "LANG"};
        static const char *const defaults[] = {DEFAULT_PATH, "/", "C.UTF-8"};

        for (size_t i = 0; i < 3; i++) {
                const char *v = getenv(names[i]);
                snprintf(buf[i], 1024, "%s=%s", names[i], v && *v ? v : defaults[i]);
                ret[i] = buf[i];
        }
        ret[3] = NULL;
}

/* The child's standard fds: stdin from /dev/null (or the gate pipe of a
 * tracked command), stdout and stderr to the pipes, fd 3 the ready pipe. */
typedef struct ChildFds {
        int in, out, err, ready; /* -1: none */
} ChildFds;

/* /bin/sh -c script (or the wrapper around it) in a session of its own, no
 * signal blocked or ignored (rprd blocks some in its threads and ignores
 * SIGPIPE; the command must not inherit that). */
static int child_spawn(const char *script, const SshTrack *track, const ChildFds *fds, pid_t *ret) {
        char *plain[] = {"sh", "-c", (char *) script, NULL};
        char *wrapped[] = {"sh",
                           "-c",
                           (char *) ssh_track_wrapper(3),
                           "rpr-track",
                           (char *) script,
                           track ? (char *) track->local_dir : NULL,
                           track ? (char *) track->id : NULL,
                           "exec", /* rprd waits for it and removes the pid file */
                           NULL};
        char *envp[4], envbuf[3][1024];
        posix_spawn_file_actions_t fa;
        posix_spawnattr_t attr;
        sigset_t none, dflt;
        int r;

        clean_env(envp, envbuf);
        sigemptyset(&none);
        sigemptyset(&dflt);
        sigaddset(&dflt, SIGPIPE);
        posix_spawn_file_actions_init(&fa);
        if (fds->in >= 0)
                posix_spawn_file_actions_adddup2(&fa, fds->in, STDIN_FILENO);
        else
                posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
        posix_spawn_file_actions_adddup2(&fa, fds->out, STDOUT_FILENO);
        posix_spawn_file_actions_adddup2(&fa, fds->err, STDERR_FILENO);
        if (fds->ready >= 0)
                posix_spawn_file_actions_adddup2(&fa, fds->ready, 3);
        posix_spawnattr_init(&attr);
        posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
        posix_spawnattr_setsigmask(&attr, &none);
        posix_spawnattr_setsigdefault(&attr, &dflt);
        r = posix_spawn(ret, "/bin/sh", &fa, &attr, track ? wrapped : plain, envp);
        posix_spawnattr_destroy(&attr);
        posix_spawn_file_actions_destroy(&fa);
        return -r;
}

/* A tracked child: waits for the wrapper's "rpr-pid:" on the ready pipe
 * (its pid file is written then), and answers "go". When the wrapper gives
 * up instead (it could not write the file), nothing is sent: it exits 125
 * and says why on stderr. */
static void gate_open(int ready, int gate) {
        char buf[64];
        size_t len = 0;

        while (len < sizeof buf - 1) {
                ssize_t n = read(ready, buf + len, sizeof buf - 1 - len);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        return;
                len += (size_t) n;
                if (memchr(buf, '\n', len))
                        break;
        }
        buf[len] = '\0';
        if (startswith(buf, "rpr-pid:") && write(gate, "go\n", 3) != 3)
                log_debug("cannot release a tracked command: %s", strerror(errno));
}

static void kill_group(pid_t pid) {
        kill(-pid, SIGTERM);
        usleep(100 * 1000);
        kill(-pid, SIGKILL);
}

static int wait_exit(pid_t pid, SshResult *result) {
        int status;

        while (waitpid(pid, &status, 0) < 0)
                if (errno != EINTR)
                        return ssh_fail(result, SSH_FAIL_EXEC, errno, "waitpid: %s", strerror(errno));
        if (WIFEXITED(status))
                result->exit_code = WEXITSTATUS(status);
        else if (WIFSIGNALED(status)) {
                const char *name = sigabbrev_np(WTERMSIG(status));
                result->exit_code = -1;
                snprintf(result->signal, sizeof result->signal, "%s", name ? name : "UNKNOWN");
        }
        return 0;
}

/* Reads what is there on fd; false at end of file. */
static bool pump(int fd, SshStream stream, const SshCommand *cmd, bool *stop) {
        char buf[SSH_READ_CHUNK];
        ssize_t n = read(fd, buf, sizeof buf);

        if (n < 0)
                return errno == EINTR || errno == EAGAIN;
        if (n == 0)
                return false;
        if (cmd->output && cmd->output(cmd->userdata, stream, buf, (size_t) n) < 0)
                *stop = true;
        return true;
}

/* Writes what the pipe takes of the input; false when all is sent (or the
 * child stopped reading). */
static bool feed(int fd, const SshCommand *cmd, size_t *sent) {
        ssize_t n = write(fd, (const char *) cmd->input + *sent, cmd->input_len - *sent);

        if (n < 0)
                return errno == EINTR || errno == EAGAIN;
        *sent += (size_t) n;
        return *sent < cmd->input_len;
}

static void close_pair(int p[2]) {
        for (int i = 0; i < 2; i++)
                if (p[i] >= 0)
                        close(p[i]);
        p[0] = p[1] = -1;
}

/* Starts the child with its pipes: out and err are left with the read
 * ends. A tracked child is released once its pid file is written. */
static int start(const SshCommand *cmd, const char *script, int out[2], int err[2], int *ret_input,
                 pid_t *ret, SshResult *result) {
        int gate[2] = {-1, -1}, ready[2] = {-1, -1};
        const SshTrack *track = cmd->track;
        bool input = !track && cmd->input_len > 0;
        int k = 0;

        if (track && (!ssh_track_id_valid(track->id) || !track->local_dir))
                return ssh_fail(result, SSH_FAIL_EXEC, EINVAL, "invalid command id for tracking");
        if (pipe2(out, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0 ||
            ((track || input) && pipe2(gate, O_CLOEXEC) < 0) || (track && pipe2(ready, O_CLOEXEC) < 0))
                k = -errno;
        if (k >= 0) {
                ChildFds fds = {gate[0], out[1], err[1], ready[1]};
                k = child_spawn(script, track, &fds, ret);
        }
        close(out[1]);
        close(err[1]);
        out[1] = err[1] = -1;
        close(gate[0]);
        close(ready[1]);
        if (k >= 0 && track)
                gate_open(ready[0], gate[1]);
        if (k >= 0 && input) {
                *ret_input = gate[1]; /* written while the output is read */
                gate[1] = -1;
        }
        close(gate[1]);
        close(ready[0]);
        if (k < 0) {
                close_pair(out);
                close_pair(err);
                return ssh_fail(result, SSH_FAIL_EXEC, -k, "cannot start /bin/sh: %s", strerror(-k));
        }
        return 0;
}

int ssh_local_run(const SshCommand *cmd, SshResult *result) {
        _cleanup_free_ char *script = NULL;
        int out[2] = {-1, -1}, err[2] = {-1, -1};
        uint64_t deadline = cmd->timeout_usec ? now_mono_usec() + cmd->timeout_usec : 0;
        bool stop = false, timed_out = false;
        pid_t pid = 0;

        if (ssh_script_build(cmd, &script) < 0)
                return ssh_fail(result, SSH_FAIL_EXEC, EINVAL, "invalid environment variable name");
        int in = -1;
        int k = start(cmd, script, out, err, &in, &pid, result);
        if (k < 0)
                return k;
        result->logged_in = true;

        struct pollfd p[4] = {{out[0], POLLIN, 0},
                              {err[0], POLLIN, 0},
                              {cmd->cancel ? cmd->cancel->fd : -1, POLLIN, 0},
                              {in, POLLOUT, 0}};
        size_t sent = 0;
        if (in >= 0)
                (void) fcntl(in, F_SETFL, O_NONBLOCK);
        while ((p[0].fd >= 0 || p[1].fd >= 0) && !stop) {
                /* A cancel without an eventfd is only a flag: look at it. */
                int wait_ms = cmd->cancel && cmd->cancel->fd < 0 ? 1000 : -1;
                if (deadline) {
                        uint64_t now = now_mono_usec();
                        if (now >= deadline) {
                                timed_out = true;
                                break;
                        }
                        int left = (int) MIN((deadline - now) / 1000 + 1, (uint64_t) INT32_MAX);
                        wait_ms = wait_ms < 0 ? left : MIN(wait_ms, left);
                }
                if (poll(p, 4, wait_ms) < 0 && errno != EINTR)
                        break;
                if (p[3].fd >= 0 && p[3].revents && !feed(p[3].fd, cmd, &sent)) {
                        close(p[3].fd);
                        p[3].fd = -1;
                }
                if (ssh_cancel_fired(cmd->cancel))
                        stop = true;
                for (int i = 0; i < 2 && !stop; i++)
                        if (p[i].fd >= 0 && p[i].revents &&
                            !pump(p[i].fd, i == 0 ? SSH_STDOUT : SSH_STDERR, cmd, &stop)) {
                                close(p[i].fd);
                                p[i].fd = -1;
                        }
        }
        if (p[3].fd >= 0)
                close(p[3].fd);
        if (stop || timed_out)
                kill_group(pid);
        for (int i = 0; i < 2; i++)
                if (p[i].fd >= 0)
                        close(p[i].fd);
        int r = wait_exit(pid, result);
        if (cmd->track) {
                /* It ended (or was killed) here: nothing is left to find
                 * again. The script's shell replaced the wrapper, which
                 * cannot remove the file itself. */
                _cleanup_free_ char *f = xasprintf("%s/%s.pid", cmd->track->local_dir, cmd->track->id);
                (void) unlink(f);
        }
        if (r < 0)
                return r;
        if (timed_out)
                return ssh_fail(result, SSH_FAIL_TIMEOUT, ETIMEDOUT,
                                "the command did not finish within %.1f s and was killed",
                                (double) cmd->timeout_usec / 1e6);
        if (stop)
                return ssh_fail(result, SSH_FAIL_CANCELED, ECANCELED, "the command was canceled");
        return 0;
}
