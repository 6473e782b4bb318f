/* job.c: a job's process on the agent's host — /bin/sh -c COMMAND in its
 * own process group, with a clean environment (PATH, HOME, LANG and what
 * the job sets), stdout and stderr together into one pipe, everything it
 * prints appended to a spool file in the state dir. The spool is what makes
 * the output safe: the agent sends from it by offset and resends after a
 * failure, and removes it only once rprd has taken the job's end. */
#include <fcntl.h>
#include <openssl/evp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "rpr-agent.h"

static char *spool_path(const char *state_dir, const char *id) {
        return xasprintf("%s/jobs/%s.out", state_dir, id);
}

/* The child's environment: nothing of the agent's own but the basics. */
static char **child_env(const json_t *env) {
        static const char *const keep[] = {"PATH", "HOME", "LANG", "USER", "LOGNAME"};
        size_t n = 0, cap = ELEMENTSOF(keep) + json_object_size(env) + 2;
        char **l = xcalloc(cap, sizeof *l);
        const char *key;
        json_t *v;

        for (size_t i = 0; i < ELEMENTSOF(keep); i++) {
                const char *val = getenv(keep[i]);
                if (STREQ(keep[i], "PATH") && !val)
                        val = "/usr/local/bin:/usr/bin:/bin";
                if (val)
                        l[n++] = xasprintf("%s=%s", keep[i], val);
        }
        json_object_foreach((json_t *) env, key, v) if (json_is_string(v) && !strchr(key, '=')) l[n++] =
                xasprintf("%s=%s", key, json_string_value(v));
        return l;
}

static void strv_free(char **l) {
        for (size_t i = 0; l && l[i]; i++)
                free(l[i]);
        free(l);
}

int job_start(const char *state_dir, const char *id, const char *command, const json_t *env,
              uint64_t timeout_usec, Job **ret) {
        _cleanup_free_ char *dir = xasprintf("%s/jobs", state_dir), *path = spool_path(state_dir, id);
        int pipefd[2], spool;

        if (mkdir_p(dir, 0700) < 0)
                return -errno;
        spool = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (spool < 0)
                return -errno;
        if (pipe2(pipefd, O_CLOEXEC) < 0) {
                close(spool);
                return -errno;
        }
        char **envp = child_env(env);
        pid_t pid = fork();
        if (pid < 0) {
                int r = -errno;
                strv_free(envp);
                close(spool);
                close(pipefd[0]);
                close(pipefd[1]);
                return r;
        }
        if (pid == 0) {
                /* Its own process group, so that a cancel reaches all of it. */
                setpgid(0, 0);
                int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
                dup2(devnull, 0);
                dup2(pipefd[1], 1);
                dup2(pipefd[1], 2);
                signal(SIGPIPE, SIG_DFL);
                if (chdir(getenv("HOME") ? getenv("HOME") : "/") < 0 && chdir("/") < 0)
                        _exit(127);
                execle("/bin/sh", "sh", "-c", command, (char *) NULL, envp);
                _exit(127);
        }
        setpgid(pid, pid);
        strv_free(envp);
        close(pipefd[1]);
        fcntl(pipefd[0], F_SETFL, O_NONBLOCK);

        Job *j = xcalloc(1, sizeof *j);
        snprintf(j->id, sizeof j->id, "%s", id);
        j->pid = pid;
        j->fd = pipefd[0];
        j->spool = spool;
        j->started = now_mono_usec();
        j->timeout_usec = timeout_usec;
        *ret = j;
        return 0;
}

static void reap(Job *j) {
        int status;

        if (j->pid <= 0 || waitpid(j->pid, &status, WNOHANG) != j->pid)
                return;
        j->pid = 0;
        if (WIFEXITED(status))
                j->exit_code = WEXITSTATUS(status);
        else if (WIFSIGNALED(status)) {
                j->exit_code = -1;
                snprintf(j->signal, sizeof j->signal, "%s", sigabbrev_np(WTERMSIG(status)) ?: "UNKNOWN");
        }
}

void job_cancel(Job *j) {
        if (j->pid > 0 && !j->kill_at) {
                kill(-j->pid, SIGTERM);
                j->kill_at = now_mono_usec() + AGENT_CANCEL_GRACE_USEC;
        }
}

/* Moves what the pipe holds into the spool; at EOF (or, with
 * to_the_end, once it is empty) closes it. */
static void drain(Job *j, bool to_the_end) {
        char buf[65536];

        while (j->fd >= 0) {
                ssize_t n = read(j->fd, buf, sizeof buf);
                if (n > 0) {
                        if (pwrite(j->spool, buf, (size_t) n, (off_t) j->written) == n)
                                j->written += (uint64_t) n;
                        continue;
                }
                if (n < 0 && errno == EINTR)
                        continue;
                if (n == 0 || errno != EAGAIN || to_the_end) {
                        close(j->fd);
                        j->fd = -1;
                }
                break;
        }
}

void job_pump(Job *j, int timeout_ms) {
        if (j->fd >= 0) {
                struct pollfd p = {.fd = j->fd, .events = POLLIN};
                if (poll(&p, 1, timeout_ms) > 0)
                        drain(j, false);
        }
        reap(j);
        /* The shell is gone: what it printed is in the pipe; a background
         * child that keeps the pipe open does not hold the job. */
        if (j->pid == 0)
                drain(j, true);
        uint64_t now = now_mono_usec();
        if (j->pid > 0 && j->timeout_usec && now - j->started > j->timeout_usec)
                job_cancel(j);
        if (j->pid > 0 && j->kill_at && now >= j->kill_at)
                kill(-j->pid, SIGKILL);
}

bool job_done(const Job *j) {
        return j->pid == 0 && j->fd < 0;
}

ssize_t job_read(const Job *j, uint64_t offset, char *buf, size_t max) {
        return pread(j->spool, buf, max, (off_t) offset);
}

int job_checksum(const Job *j, char out[static 65]) {
        EVP_MD_CTX *ctx = EVP_MD_CTX_new();
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned md_len = 0;
        char buf[65536];
        uint64_t off = 0;
        ssize_t n;

        if (!ctx || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
                EVP_MD_CTX_free(ctx);
                return -ENOMEM;
        }
        while (off < j->written && (n = pread(j->spool, buf, sizeof buf, (off_t) off)) > 0) {
                EVP_DigestUpdate(ctx, buf, (size_t) n);
                off += (uint64_t) n;
        }
        EVP_DigestFinal_ex(ctx, md, &md_len);
        EVP_MD_CTX_free(ctx);
        for (unsigned i = 0; i < md_len; i++)
                snprintf(out + 2 * i, 3, "%02x", md[i]);
        return off == j->written ? 0 : -EIO;
}

void job_free(const char *state_dir, Job *j) {
        _cleanup_free_ char *path = spool_path(state_dir, j->id);

        if (j->pid > 0) {
                kill(-j->pid, SIGKILL);
                waitpid(j->pid, NULL, 0);
        }
        if (j->fd >= 0)
                close(j->fd);
        close(j->spool);
        unlink(path);
        free(j);
}
