/* ssh-local: transport local, a command as a child process of rprd.
 *
 * The child gets its own session (setsid), so its process group holds
 * everything it starts: a timeout or a cancel kills that whole group, as
 * over SSH. stdout and stderr are read as they come, with poll(). It is
 * started with posix_spawn(), which does not copy rprd's address space as
 * fork() would: pipelines start many small commands. */
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ssh/ssh-private.h"

extern char **environ;

/* /bin/sh -c script in a session of its own, stdin from /dev/null, stdout
 * and stderr to the pipes, no signal blocked or ignored (rprd blocks some in
 * its threads and ignores SIGPIPE; the command must not inherit that). */
static int child_spawn(const char *script, int out, int err, pid_t *ret) {
        char *argv[] = {"sh", "-c", (char *) script, NULL};
        posix_spawn_file_actions_t fa;
        posix_spawnattr_t attr;
        sigset_t none, dflt;
        int r;

        sigemptyset(&none);
        sigemptyset(&dflt);
        sigaddset(&dflt, SIGPIPE);
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
        posix_spawn_file_actions_adddup2(&fa, out, STDOUT_FILENO);
        posix_spawn_file_actions_adddup2(&fa, err, STDERR_FILENO);
        posix_spawnattr_init(&attr);
        posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
        posix_spawnattr_setsigmask(&attr, &none);
        posix_spawnattr_setsigdefault(&attr, &dflt);
        r = posix_spawn(ret, "/bin/sh", &fa, &attr, argv, environ);
        posix_spawnattr_destroy(&attr);
        posix_spawn_file_actions_destroy(&fa);
        return -r;
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

int ssh_local_run(const SshCommand *cmd, SshResult *result) {
        _cleanup_free_ char *script = NULL;
        int out[2], err[2];
        uint64_t deadline = cmd->timeout_usec ? now_mono_usec() + cmd->timeout_usec : 0;
        bool stop = false, timed_out = false;

        if (ssh_script_build(cmd, &script) < 0)
                return ssh_fail(result, SSH_FAIL_EXEC, EINVAL, "invalid environment variable name");
        if (pipe2(out, O_CLOEXEC) < 0)
                return ssh_fail(result, SSH_FAIL_EXEC, errno, "pipe: %s", strerror(errno));
        if (pipe2(err, O_CLOEXEC) < 0) {
                close(out[0]);
                close(out[1]);
                return ssh_fail(result, SSH_FAIL_EXEC, errno, "pipe: %s", strerror(errno));
        }
        pid_t pid = 0;
        int k = child_spawn(script, out[1], err[1], &pid);
        close(out[1]);
        close(err[1]);
        if (k < 0) {
                close(out[0]);
                close(err[0]);
                return ssh_fail(result, SSH_FAIL_EXEC, -k, "cannot start /bin/sh: %s", strerror(-k));
        }
        result->logged_in = true;

        struct pollfd p[3] = {
                {out[0], POLLIN, 0}, {err[0], POLLIN, 0}, {cmd->cancel ? cmd->cancel->fd : -1, POLLIN, 0}};
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
                if (poll(p, 3, wait_ms) < 0 && errno != EINTR)
                        break;
                if (ssh_cancel_fired(cmd->cancel))
                        stop = true;
                for (int i = 0; i < 2 && !stop; i++)
                        if (p[i].fd >= 0 && p[i].revents &&
                            !pump(p[i].fd, i == 0 ? SSH_STDOUT : SSH_STDERR, cmd, &stop)) {
                                close(p[i].fd);
                                p[i].fd = -1;
                        }
        }
        if (stop || timed_out)
                kill_group(pid);
        for (int i = 0; i < 2; i++)
                if (p[i].fd >= 0)
                        close(p[i].fd);
        int r = wait_exit(pid, result);
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
