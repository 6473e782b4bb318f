/* ssh-local: transport local, a command as a child process of rprd.
 *
 * The child gets its own session (setsid), so its process group holds
 * everything it starts: a timeout or a cancel kills that whole group, as
 * over SSH. stdout and stderr are read as they come, with poll(). */
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ssh/ssh-private.h"

/* In the child after fork(): async-signal-safe calls only. */
static void child_exec(const char *script, int out, int err) {
        int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
        sigset_t none;

        /* rprd blocks signals in its threads; the command must not inherit that. */
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        setsid();
        if (devnull >= 0)
                dup2(devnull, STDIN_FILENO);
        dup2(out, STDOUT_FILENO);
        dup2(err, STDERR_FILENO);
        signal(SIGPIPE, SIG_DFL);
        execl("/bin/sh", "sh", "-c", script, (char *) NULL);
        _exit(127);
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
        pid_t pid = fork();
        if (pid == 0)
                child_exec(script, out[1], err[1]);
        close(out[1]);
        close(err[1]);
        if (pid < 0) {
                close(out[0]);
                close(err[0]);
                return ssh_fail(result, SSH_FAIL_EXEC, errno, "fork: %s", strerror(errno));
        }
        result->logged_in = true;

        struct pollfd p[3] = {
                {out[0], POLLIN, 0}, {err[0], POLLIN, 0}, {cmd->cancel ? cmd->cancel->fd : -1, POLLIN, 0}};
        while ((p[0].fd >= 0 || p[1].fd >= 0) && !stop) {
                int wait_ms = -1;
                if (deadline) {
                        uint64_t now = now_mono_usec();
                        if (now >= deadline) {
                                timed_out = true;
                                break;
                        }
                        wait_ms = (int) ((deadline - now) / 1000) + 1;
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
