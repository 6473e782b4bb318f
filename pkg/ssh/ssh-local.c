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
 * wrapper, which writes its pid file first and runs the script only if
 * rprd is still there: over a socket on its fd 3 it gets its start time
 * and sends a byte back once the file is written. */
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
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

/* ---- recycled pid files ------------------------------------------------------ */

/* Local pid files are recycled (base-spares.c), not created and removed
 * for each command: a pipeline's tasks paid milliseconds each for making
 * files on a busy host. An empty pid file means "never started" to the
 * reaper. */
#define SPARES 64

/* Before the command starts: a spare becomes its (empty) pid file. */
static void pid_file_take(const char *dir, const char *path) {
        (void) spares_take(spares_of(dir, SPARES), path); /* else the wrapper makes the file */
}

/* A pid file's record blanked, written over as the wrapper writes it (not
 * truncated: see ssh-track.c): to the reaper, a command that never
 * started. */
static bool pid_file_blank(const char *path) {
        static const char blank[] = "                                        \n";
        int fd = open(path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);

        if (fd < 0)
                return false;
        bool ok = pwrite(fd, blank, sizeof blank - 1, 0) == (ssize_t) sizeof blank - 1;
        close(fd);
        return ok;
}

/* Once the command ended: its pid file, blanked, becomes a spare (or goes). */
static void pid_file_give(const char *dir, const char *path) {
        if (!pid_file_blank(path) || !spares_give(spares_of(dir, SPARES), path))
                (void) unlink(path);
}

/* The start time of process pid (field 22 of /proc/PID/stat), as the
 * reaper compares it; 0 when it cannot be read. */
static unsigned long long start_time_of(pid_t pid) {
        char path[64], buf[1024];
        unsigned long long t = 0;

        snprintf(path, sizeof path, "/proc/%d/stat", (int) pid);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return 0;
        ssize_t n = read(fd, buf, sizeof buf - 1);
        close(fd);
        if (n <= 0)
                return 0;
        buf[n] = '\0';
        /* After "PID (COMM)" (COMM may hold spaces): field 3 on, one space apart. */
        char *p = strrchr(buf, ')');
        for (int field = 2; p && field < 22; field++)
                p = strchr(p + 1, ' ');
        if (p)
                t = strtoull(p + 1, NULL, 10);
        return t;
}

/* A tracked child's socket: its start time goes first; the byte it sends
 * back is never read (it only shows that this end is still open). */
static void link_send_start(int link, pid_t pid) {
        char line[32];
        int n = snprintf(line, sizeof line, "%llu\n", start_time_of(pid));

        (void) send(link, line, (size_t) n, MSG_NOSIGNAL);
}

/* The child's standard fds: stdin from /dev/null (or the pipe of its
 * input), stdout and stderr to the pipes; fd 3 a tracked child's socket. */
typedef struct ChildFds {
        int in, out, err, link; /* -1: none */
} ChildFds;

/* /bin/sh -c script (or the wrapper around it) in a session of its own, no
 * signal blocked or ignored (rprd blocks some in its threads and ignores
 * SIGPIPE; the command must not inherit that). */
static int child_spawn(const char *script, const SshTrack *track, const ChildFds *fds, pid_t *ret) {
        char *plain[] = {"sh", "-c", (char *) script, NULL};
        char *wrapped[] = {"sh",
                           "-c",
                           (char *) ssh_track_wrapper(),
                           "rpr-track",
                           (char *) script,
                           track ? (char *) track->local_dir : NULL,
                           track ? (char *) track->id : NULL,
                           "exec", /* rprd waits for it and removes the pid file */
                           "",
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
        if (fds->link >= 0)
                posix_spawn_file_actions_adddup2(&fa, fds->link, 3);
        posix_spawnattr_init(&attr);
        posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
        posix_spawnattr_setsigmask(&attr, &none);
        posix_spawnattr_setsigdefault(&attr, &dflt);
        r = posix_spawn(ret, "/bin/sh", &fa, &attr, track ? wrapped : plain, envp);
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
 * ends. A tracked child gets its socket (*ret_link: keep it open until the
 * child has ended) and, over it, its start time. */
static int start(const SshCommand *cmd, const char *script, int out[2], int err[2], int *ret_input,
                 int *ret_link, pid_t *ret, SshResult *result) {
        int in[2] = {-1, -1}, link[2] = {-1, -1};
        const SshTrack *track = cmd->track;
        bool input = !track && cmd->input_len > 0;
        int k = 0;

        if (track && (!ssh_track_id_valid(track->id) || !track->local_dir))
                return ssh_fail(result, SSH_FAIL_EXEC, EINVAL, "invalid command id for tracking");
        if (pipe2(out, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0 || (input && pipe2(in, O_CLOEXEC) < 0) ||
            (track && socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, link) < 0))
                k = -errno;
        if (k >= 0) {
                ChildFds fds = {in[0], out[1], err[1], link[1]};
                if (track) {
                        _cleanup_free_ char *f = xasprintf("%s/%s.pid", track->local_dir, track->id);
                        pid_file_take(track->local_dir, f);
                }
                k = child_spawn(script, track, &fds, ret);
        }
        close(out[1]);
        close(err[1]);
        out[1] = err[1] = -1;
        close(in[0]);
        close(link[1]);
        if (k >= 0 && track)
                link_send_start(link[0], *ret);
        if (k >= 0 && input) {
                *ret_input = in[1]; /* written while the output is read */
                in[1] = -1;
        }
        close(in[1]);
        if (k >= 0) {
                *ret_link = link[0];
                link[0] = -1;
        }
        close(link[0]);
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
        int in = -1, link = -1;
        int k = start(cmd, script, out, err, &in, &link, &pid, result);
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
        if (link >= 0)
                close(link);
        if (cmd->track) {
                /* It ended (or was killed) here: nothing is left to find
                 * again. The script's shell replaced the wrapper, which
                 * cannot remove the file itself. */
                _cleanup_free_ char *f = xasprintf("%s/%s.pid", cmd->track->local_dir, cmd->track->id);
                pid_file_give(cmd->track->local_dir, f);
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
