/* job.c: a job's process on the agent's host — /bin/sh -c COMMAND in its
 * own process group, with a clean environment (PATH, HOME, LANG and what
 * the job sets), stdout and stderr appended to spool files in the state
 * dir (ID.out and ID.err; one file for both when rprd offered the job as
 * one stream), its exit code written to a file beside them.
 *
 * The one idea: the job does not depend on the agent. Its output goes to
 * the spool itself, not through a pipe, and a small shell wrapper records
 * its exit code; with its pid and start time in a third file, an agent
 * that restarts finds the job again (job_load), goes on sending its output
 * from the offset rprd acknowledges and learns how it ended. The spool is
 * also what makes the output safe: sent by offset, resent after a failure,
 * removed only once rprd has taken the job's end. */
#include <dirent.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "rpr-agent.h"

/* $1 the command, $2 where its exit code goes. */
static const char wrapper[] = "/bin/sh -c \"$1\"; rc=$?; echo $rc > \"$2\"; exit $rc";

static char *job_file(const char *state_dir, const char *id, const char *ext) {
        return xasprintf("%s/jobs/%s.%s", state_dir, id, ext);
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
        json_object_foreach((json_t *) env, key, v) {
                if (json_is_string(v) && !strchr(key, '='))
                        l[n++] = xasprintf("%s=%s", key, json_string_value(v));
        }
        return l;
}

static void strv_free(char **l) {
        for (size_t i = 0; l && l[i]; i++)
                free(l[i]);
        free(l);
}

/* Field 22 of /proc/PID/stat: when the process started, to tell it from
 * a later one with the same pid. 0 when it is gone. */
static uint64_t start_ticks(pid_t pid) {
        _cleanup_free_ char *path = xasprintf("/proc/%d/stat", (int) pid), *text = NULL;
        unsigned long long ticks = 0;
        size_t len;

        if (read_file(path, 4096, &text, &len) < 0 || !strrchr(text, ')'))
                return 0;
        const char *p = strrchr(text, ')') + 2;
        for (int field = 3; field < 22 && p; field++)
                p = strchr(p, ' '), p = p ? p + 1 : NULL;
        return p && sscanf(p, "%llu", &ticks) == 1 ? ticks : 0;
}

static int meta_save(const char *state_dir, const Job *j) {
        _cleanup_free_ char *path = job_file(state_dir, j->id, "json");
        _cleanup_json_ json_t *m =
                json_pack("{s:s, s:i, s:I, s:I, s:I, s:i}", "id", j->id, "pid", (int) j->pid, "startTicks",
                          (json_int_t) j->start_ticks, "started", (json_int_t) j->started, "timeoutUsec",
                          (json_int_t) j->timeout_usec, "streams", (int) j->streams);
        _cleanup_free_ char *text = json_dumps(m, JSON_COMPACT);

        return write_file_atomic(path, text, strlen(text), 0600);
}

static pid_t spawn(const char *command, const char *exit_path, int in, int out, int err, char **envp) {
        pid_t pid = fork();

        if (pid != 0)
                return pid;
        /* Its own process group, so that a cancel reaches all of it. */
        setpgid(0, 0);
        dup2(in >= 0 ? in : open("/dev/null", O_RDONLY | O_CLOEXEC), 0);
        dup2(out, 1);
        dup2(err, 2);
        /* libcurl's sockets are not O_CLOEXEC: the job must not hold the
         * agent's connection to rprd (nor keep it open after the agent). */
        (void) close_range(3, ~0u, 0);
        signal(SIGPIPE, SIG_DFL);
        if (chdir(getenv("HOME") ? getenv("HOME") : "/") < 0 && chdir("/") < 0)
                _exit(127);
        execle("/bin/sh", "sh", "-c", wrapper, "sh", command, exit_path, (char *) NULL, envp);
        _exit(127);
}

/* The job's stdin: a file only it holds open (0600, removed at once), so
 * that the job needs the agent no more for its input than for its output. */
int job_input_write(const char *state_dir, const char *id, const void *input, size_t len) {
        _cleanup_free_ char *path = job_file(state_dir, id, "in");
        int r, fd;

        r = write_file_atomic(path, input, len, 0600);
        if (r < 0)
                return r;
        fd = open(path, O_RDONLY | O_CLOEXEC);
        r = fd < 0 ? -errno : fd;
        (void) unlink(path);
        return r;
}

static const char *const spool_ext[JOB_STREAMS] = {"out", "err"};

/* Opens stream s's spool, for the job to write (*ret_w) and the agent to
 * read (*ret_r). */
static int spool_open(const char *state_dir, const char *id, unsigned s, int *ret_w, int *ret_r) {
        _cleanup_free_ char *path = job_file(state_dir, id, spool_ext[s]);
        int w = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
        int r = w < 0 ? -1 : open(path, O_RDONLY | O_CLOEXEC);

        if (r < 0) {
                int e = -errno;
                if (w >= 0)
                        close(w);
                return e;
        }
        *ret_w = w;
        *ret_r = r;
        return 0;
}

static void fds_close(int *fds, size_t n) {
        for (size_t i = 0; i < n; i++)
                if (fds[i] >= 0)
                        close(fds[i]);
}

int job_start(const char *state_dir, const char *id, const char *command, const json_t *env, int stdin_fd,
              unsigned streams, uint64_t timeout_usec, Job **ret) {
        _cleanup_free_ char *dir = xasprintf("%s/jobs", state_dir);
        _cleanup_free_ char *exit_path = job_file(state_dir, id, "exit");
        int w[JOB_STREAMS] = {-1, -1}, rd[JOB_STREAMS] = {-1, -1};
        int r;

        streams = streams == JOB_STREAMS ? JOB_STREAMS : 1;
        r = mkdir_p(dir, 0700);
        if (r < 0) {
                fds_close(&stdin_fd, 1);
                return r;
        }
        (void) unlink(exit_path);
        for (unsigned s = 0; s < streams && r >= 0; s++)
                r = spool_open(state_dir, id, s, &w[s], &rd[s]);
        if (r < 0) {
                fds_close(w, JOB_STREAMS);
                fds_close(rd, JOB_STREAMS);
                fds_close(&stdin_fd, 1);
                return r;
        }
        char **envp = child_env(env);
        pid_t pid = spawn(command, exit_path, stdin_fd, w[0], streams == JOB_STREAMS ? w[1] : w[0], envp);
        r = -errno;
        strv_free(envp);
        fds_close(w, JOB_STREAMS);
        fds_close(&stdin_fd, 1);
        if (pid < 0) {
                fds_close(rd, JOB_STREAMS);
                return r;
        }
        setpgid(pid, pid);

        Job *j = xcalloc(1, sizeof *j);
        snprintf(j->id, sizeof j->id, "%s", id);
        j->pid = pid;
        j->own_child = true;
        j->start_ticks = start_ticks(pid);
        j->streams = streams;
        for (unsigned s = 0; s < JOB_STREAMS; s++)
                j->out[s].spool = rd[s];
        j->started = now_usec();
        j->timeout_usec = timeout_usec;
        (void) meta_save(state_dir, j);
        *ret = j;
        return 0;
}

/* ---- what became of it ------------------------------------------------------------- */

static bool still_there(const Job *j) {
        return kill(j->pid, 0) == 0 && start_ticks(j->pid) == j->start_ticks;
}

/* A job this agent did not start: its wrapper's exit file says how it
 * ended; none means it was killed before it could write one. */
static void ended_adopted(const char *state_dir, Job *j) {
        _cleanup_free_ char *path = job_file(state_dir, j->id, "exit"), *text = NULL;
        size_t len;
        int code;

        j->pid = 0;
        if (read_file(path, 64, &text, &len) >= 0 && sscanf(text, "%d", &code) == 1)
                j->exit_code = code;
        else {
                j->exit_code = -1;
                snprintf(j->signal, sizeof j->signal, "KILL");
        }
}

static void reap(const char *state_dir, Job *j) {
        int status;

        if (j->pid <= 0)
                return;
        if (!j->own_child) {
                if (!still_there(j))
                        ended_adopted(state_dir, j);
                return;
        }
        if (waitpid(j->pid, &status, WNOHANG) != j->pid)
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

void job_pump(const char *state_dir, Job *j) {
        struct stat st;

        /* Gone first, then the size: all it wrote is in by then. What a
         * background child adds later is not the job's. */
        reap(state_dir, j);
        for (unsigned s = 0; s < j->streams; s++)
                if (!j->sized && fstat(j->out[s].spool, &st) == 0 &&
                    (uint64_t) st.st_size > j->out[s].written)
                        j->out[s].written = (uint64_t) st.st_size;
        if (j->pid == 0)
                j->sized = true;
        uint64_t now = now_usec();
        if (j->pid > 0 && j->timeout_usec && now - j->started > j->timeout_usec)
                job_cancel(j);
        if (j->pid > 0 && j->kill_at && now_mono_usec() >= j->kill_at)
                kill(-j->pid, SIGKILL);
}

bool job_done(const Job *j) {
        return j->pid == 0 && j->sized;
}

ssize_t job_read(const Job *j, unsigned s, uint64_t offset, char *buf, size_t max) {
        if (s >= j->streams || offset >= j->out[s].written)
                return 0;
        return pread(j->out[s].spool, buf, MIN(max, (size_t) (j->out[s].written - offset)), (off_t) offset);
}

int job_checksum(const Job *j, unsigned s, char out[static 65]) {
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
        while (off < j->out[s].written && (n = job_read(j, s, off, buf, sizeof buf)) > 0) {
                EVP_DigestUpdate(ctx, buf, (size_t) n);
                off += (uint64_t) n;
        }
        EVP_DigestFinal_ex(ctx, md, &md_len);
        EVP_MD_CTX_free(ctx);
        for (unsigned i = 0; i < md_len; i++)
                snprintf(out + 2 * i, 3, "%02x", md[i]);
        return off == j->out[s].written ? 0 : -EIO;
}

void job_free(const char *state_dir, Job *j) {
        static const char *const exts[] = {"out", "err", "exit", "json"};

        if (j->pid > 0 && (j->own_child || still_there(j))) {
                kill(-j->pid, SIGKILL);
                if (j->own_child)
                        waitpid(j->pid, NULL, 0);
        }
        for (unsigned s = 0; s < JOB_STREAMS; s++)
                if (j->out[s].spool >= 0)
                        close(j->out[s].spool);
        for (size_t i = 0; i < ELEMENTSOF(exts); i++) {
                _cleanup_free_ char *path = job_file(state_dir, j->id, exts[i]);
                (void) unlink(path);
        }
        free(j);
}

/* ---- after a restart --------------------------------------------------------------------- */

static Job *job_load_one(const char *state_dir, const char *meta_path) {
        _cleanup_free_ char *text = NULL;
        size_t len;

        if (read_file(meta_path, 4096, &text, &len) < 0)
                return NULL;
        _cleanup_json_ json_t *m = json_loads(text, 0, NULL);
        const char *id = json_str_at(m, "id");
        if (!id || strlen(id) > 48 ||
            strspn(id, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789") != strlen(id))
                return NULL;
        unsigned streams = json_int_at(m, "streams", 1) == JOB_STREAMS ? JOB_STREAMS : 1;
        int fds[JOB_STREAMS] = {-1, -1};
        for (unsigned s = 0; s < streams; s++) {
                _cleanup_free_ char *spool = job_file(state_dir, id, spool_ext[s]);
                fds[s] = open(spool, O_RDONLY | O_CLOEXEC);
                if (fds[s] < 0) {
                        fds_close(fds, JOB_STREAMS);
                        return NULL;
                }
        }
        Job *j = xcalloc(1, sizeof *j);
        j->streams = streams;
        for (unsigned s = 0; s < JOB_STREAMS; s++)
                j->out[s].spool = fds[s];
        snprintf(j->id, sizeof j->id, "%s", id);
        j->pid = (pid_t) json_int_at(m, "pid", 0);
        j->start_ticks = (uint64_t) json_int_at(m, "startTicks", 0);
        j->started = (uint64_t) json_int_at(m, "started", 0);
        j->timeout_usec = (uint64_t) json_int_at(m, "timeoutUsec", 0);
        if (j->pid <= 0 || !still_there(j))
                ended_adopted(state_dir, j);
        return j;
}

size_t job_load(const char *state_dir, Job **list) {
        _cleanup_free_ char *dir = xasprintf("%s/jobs", state_dir);
        DIR *d = opendir(dir);
        struct dirent *de;
        size_t n = 0;

        if (!d)
                return 0;
        while ((de = readdir(d))) {
                if (!endswith(de->d_name, ".json"))
                        continue;
                _cleanup_free_ char *path = xasprintf("%s/%s", dir, de->d_name);
                Job *j = job_load_one(state_dir, path);
                if (!j)
                        continue;
                j->next = *list;
                *list = j;
                n++;
        }
        closedir(d);
        return n;
}
