/* Unit tests for pkg/ssh against real OpenSSH: the test starts /usr/sbin/sshd
 * as plain child processes on 127.0.0.1 with keys generated for the run
 * (host keys ed25519 and ECDSA, client keys ed25519, ECDSA and RSA), and
 * stops them by pid. Cases: which keys log in and how refusals read, host
 * key pins, known_hosts and accept-new, every way of not connecting,
 * streams and exit codes, 100 MB of output in flat memory, scripts and
 * environment arriving exactly as written, pooling and concurrency,
 * timeouts and cancels that kill the remote command, and the local
 * transport. */
/* cmocka needs these three first. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <arpa/inet.h>
#include <cmocka.h>
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ssh/ssh.h"

/* ASan keeps freed memory in quarantine (256 MB by default), which would
 * hide whether streaming keeps memory flat: keep the quarantine small. */
const char *__asan_default_options(void);
const char *__asan_default_options(void) {
        return "quarantine_size_mb=4";
}

/* ---- the sshd fixture ------------------------------------------------------ */

typedef struct Sshd {
        pid_t pid;
        unsigned port;
        char name[32];
} Sshd;

static char tmp[64];          /* keys, configs, logs of this run */
static Sshd sshd;             /* the server most tests talk to */
static char pin_ed25519[128]; /* "ssh-ed25519 SHA256:..." of its host keys */
static char pin_ecdsa[128];
static char pin_other[128]; /* a host key it does not have */
static SshPool *pool;

static char *path_in_tmp(const char *name) {
        return xasprintf("%s/%s", tmp, name);
}

static void shell_ok(const char *cmd) {
        int r = system(cmd);
        if (r != 0)
                fail_msg("'%s' failed: %d", cmd, r);
}

/* "SHA256:..." of a public key file, as ssh-keygen -lf prints it. */
static void fingerprint(const char *key_name, const char *type, char ret[static 128]) {
        _cleanup_free_ char *cmd = xasprintf("ssh-keygen -lf %s/%s.pub", tmp, key_name);
        char line[512] = "";
        FILE *f = popen(cmd, "r");

        assert_non_null(f);
        assert_non_null(fgets(line, sizeof line, f));
        pclose(f);
        char *fp = strstr(line, "SHA256:");
        assert_non_null(fp);
        fp[strcspn(fp, " \n")] = '\0';
        snprintf(ret, 128, "%s %s", type, fp);
}

static unsigned free_port(void) {
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t len = sizeof a;
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

        assert_true(fd >= 0);
        assert_int_equal(bind(fd, (struct sockaddr *) &a, sizeof a), 0);
        assert_int_equal(getsockname(fd, (struct sockaddr *) &a, &len), 0);
        close(fd);
        return ntohs(a.sin_port);
}

static bool port_accepts(unsigned port) {
        struct sockaddr_in a = {.sin_family = AF_INET,
                                .sin_port = htons((uint16_t) port),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        bool ok = connect(fd, (struct sockaddr *) &a, sizeof a) == 0;

        close(fd);
        return ok;
}

/* Starts sshd NAME on port (0: a free one) with the given HostKey lines.
 * HOME points into the test's directory so that root's own shell start-up
 * files (slow, and left locked when a test kills a session inside them)
 * stay out of the measurements. */
static void sshd_start(Sshd *d, const char *name, unsigned port, const char *host_keys) {
        _cleanup_free_ char *conf = xasprintf("%s/%s.conf", tmp, name);
        _cleanup_free_ char *log = xasprintf("%s/%s.log", tmp, name);
        FILE *f;

        snprintf(d->name, sizeof d->name, "%s", name);
        d->port = port ? port : free_port();
        f = fopen(conf, "w");
        assert_non_null(f);
        fprintf(f,
                "Port %u\nListenAddress 127.0.0.1\n%sAuthorizedKeysFile %s/authorized_keys\nUsePAM no\n"
                "PasswordAuthentication no\nKbdInteractiveAuthentication no\nStrictModes no\n"
                "PidFile %s/%s.pid\nLogLevel VERBOSE\nSetEnv HOME=%s/home\n",
                d->port, host_keys, tmp, tmp, name, tmp);
        fclose(f);
        mkdir("/run/sshd", 0755);

        d->pid = fork();
        assert_true(d->pid >= 0);
        if (d->pid == 0) {
                int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
                setsid();
                dup2(fd, STDOUT_FILENO);
                dup2(fd, STDERR_FILENO);
                execl("/usr/sbin/sshd", "/usr/sbin/sshd", "-D", "-e", "-f", conf, (char *) NULL);
                _exit(127);
        }
        for (int i = 0; i < 200; i++) {
                if (port_accepts(d->port))
                        return;
                if (waitpid(d->pid, NULL, WNOHANG) != 0) {
                        _cleanup_free_ char *text = NULL;
                        size_t len;
                        read_file(log, 1 << 16, &text, &len);
                        fail_msg("sshd %s exited at start:\n%s", name, text ? text : "");
                }
                usleep(50 * 1000);
        }
        fail_msg("sshd %s did not listen on port %u within 10 s (log: %s)", name, d->port, log);
}

/* Every process below pid, found by parentage in /proc. */
static size_t descendants(pid_t pid, pid_t *ret, size_t max) {
        pid_t parent[4096][2];
        size_t n = 0, found = 0;
        DIR *dir = opendir("/proc");
        struct dirent *e;

        while (dir && (e = readdir(dir)) && n < ELEMENTSOF(parent)) {
                char path[300], stat[512];
                pid_t p, pp;
                if (sscanf(e->d_name, "%d", &p) != 1)
                        continue;
                snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
                FILE *f = fopen(path, "r");
                if (!f)
                        continue;
                size_t len = fread(stat, 1, sizeof stat - 1, f);
                fclose(f);
                stat[len] = '\0';
                char *close_paren = strrchr(stat, ')');
                if (close_paren && sscanf(close_paren + 2, "%*c %d", &pp) == 1) {
                        parent[n][0] = p;
                        parent[n++][1] = pp;
                }
        }
        if (dir)
                closedir(dir);
        ret[found++] = pid;
        for (size_t i = 0; i < found; i++)
                for (size_t j = 0; j < n; j++)
                        if (parent[j][1] == ret[i] && found < max)
                                ret[found++] = parent[j][0];
        memmove(ret, ret + 1, (found - 1) * sizeof *ret);
        return found - 1;
}

/* Kills the connections' processes (and the commands under them), leaving
 * the listener: as if the machine dropped them. */
static void sshd_kill_sessions(Sshd *d) {
        pid_t pids[512];
        size_t n = descendants(d->pid, pids, ELEMENTSOF(pids));

        for (size_t i = 0; i < n; i++)
                kill(pids[i], SIGKILL);
}

static void sshd_stop(Sshd *d) {
        pid_t pids[512];
        size_t n;

        if (d->pid <= 0)
                return;
        n = descendants(d->pid, pids, ELEMENTSOF(pids));
        kill(d->pid, SIGTERM);
        waitpid(d->pid, NULL, 0);
        for (size_t i = 0; i < n; i++)
                kill(pids[i], SIGKILL);
        d->pid = 0;
}

static int group_setup(void **state) {
        (void) state;
        snprintf(tmp, sizeof tmp, "/tmp/test-ssh-XXXXXX");
        assert_non_null(mkdtemp(tmp));
        _cleanup_free_ char *keygen = xasprintf(
                "cd %s && for k in host_ed25519:ed25519 host_ecdsa:ecdsa host_other:ed25519 "
                "client_ed25519:ed25519 client_ecdsa:ecdsa client_rsa:rsa client_unknown:ed25519; do "
                "ssh-keygen -q -t ${k#*:} -b $([ ${k#*:} = rsa ] && echo 2048 || echo 256) -N '' -C "
                "rpr-test "
                "-f ${k%%:*} & done; wait && cat client_ed25519.pub client_ecdsa.pub client_rsa.pub "
                "> authorized_keys && mkdir home",
                tmp);
        shell_ok(keygen);
        fingerprint("host_ed25519", "ssh-ed25519", pin_ed25519);
        fingerprint("host_ecdsa", "ecdsa-sha2-nistp256", pin_ecdsa);
        fingerprint("host_other", "ssh-ed25519", pin_other);

        _cleanup_free_ char *keys = xasprintf("HostKey %s/host_ed25519\nHostKey %s/host_ecdsa\n", tmp, tmp);
        sshd_start(&sshd, "main", 0, keys);
        assert_int_equal(ssh_pool_new(0, &pool), 0);
        return 0;
}

static int group_teardown(void **state) {
        (void) state;
        ssh_pool_free(pool);
        sshd_stop(&sshd);
        _cleanup_free_ char *cmd = xasprintf("rm -rf '%s'", tmp);
        shell_ok(cmd);
        return 0;
}

/* ---- helpers ------------------------------------------------------------------- */

/* A target on the main sshd; the key and the id name the case. */
static SshTarget target_for(const char *id, const char *client_key, char key_path[static 128]) {
        snprintf(key_path, 128, "%s/%s", tmp, client_key);
        return (SshTarget){.id = id,
                           .host = "127.0.0.1",
                           .port = sshd.port,
                           .key_file = key_path,
                           .host_key = pin_ed25519};
}

typedef struct Out {
        pthread_mutex_t lock;
        Buf out, err; /* kept up to 1 MiB each */
        size_t n_out, n_err;
        SshCancel *fire_on_output; /* fired when output first arrives */
        bool seen;
} Out;

#define OUT_INIT                                                                                            \
        {                                                                                                   \
                .lock = PTHREAD_MUTEX_INITIALIZER, .out = {.max = 1 << 20}, .err = {.max = 1 << 20 }        \
        }

static int collect(void *userdata, SshStream stream, const char *data, size_t n) {
        Out *o = userdata;

        pthread_mutex_lock(&o->lock);
        if (stream == SSH_STDOUT) {
                o->n_out += n;
                buf_append(&o->out, data, n);
        } else {
                o->n_err += n;
                buf_append(&o->err, data, n);
        }
        if (o->fire_on_output && !o->seen)
                ssh_cancel_fire(o->fire_on_output);
        o->seen = true;
        pthread_mutex_unlock(&o->lock);
        return 0;
}

static void out_free(Out *o) {
        buf_free(&o->out);
        buf_free(&o->err);
}

static const char *str(const Buf *b) {
        return b->data ? b->data : "";
}

static int run(const SshTarget *t, const char *script, Out *o, SshResult *res) {
        SshCommand cmd = {
                .script = script, .output = collect, .userdata = o, .timeout_usec = 20 * USEC_PER_SEC};
        return ssh_run(pool, t, &cmd, res);
}

static void assert_contains(const char *haystack, const char *needle) {
        if (!strstr(haystack, needle))
                fail_msg("'%s' does not contain '%s'", haystack, needle);
}

static bool process_alive(long pid) {
        char path[64];
        snprintf(path, sizeof path, "/proc/%ld", pid);
        return access(path, F_OK) == 0;
}

/* Waits up to 5 s for the pids in file to be gone; false if one lives on. */
static bool pids_gone(const char *file) {
        _cleanup_free_ char *data = NULL;
        size_t len;

        assert_int_equal(read_file(file, 4096, &data, &len), 0);
        for (int i = 0; i < 100; i++) {
                bool alive = false;
                for (char *p = data; *p;) {
                        char *end;
                        long pid = strtol(p, &end, 10);
                        if (end == p)
                                break;
                        alive = alive || process_alive(pid);
                        p = end + strspn(end, " \n");
                }
                if (!alive)
                        return true;
                usleep(50 * 1000);
        }
        return false;
}

/* ---- pure functions --------------------------------------------------------- */

static void test_shell_quote_and_script_build(void **state) {
        (void) state;
        _cleanup_free_ char *q = ssh_shell_quote("it's $HOME");
        assert_string_equal(q, "'it'\\''s $HOME'");

        const char *env[] = {"A=x y", "B=it's", NULL};
        SshCommand cmd = {.script = "echo hi\n", .env = env, .workdir = "/tmp/a b"};
        _cleanup_free_ char *s = NULL;
        assert_int_equal(ssh_script_build(&cmd, &s), 0);
        assert_string_equal(s, "export A='x y'\nexport B='it'\\''s'\ncd '/tmp/a b' || exit 1\necho hi\n");

        const char *bad[] = {"1A=x", NULL}, *noeq[] = {"A", NULL};
        char *none = NULL;
        cmd.env = bad;
        assert_int_equal(ssh_script_build(&cmd, &none), -EINVAL);
        cmd.env = noeq;
        assert_int_equal(ssh_script_build(&cmd, &none), -EINVAL);
        assert_null(none);
}

static void test_host_key_parse(void **state) {
        char type[32], fp[64];
        (void) state;

        assert_int_equal(ssh_host_key_parse("ssh-ed25519 SHA256:abcdEFGH", type, fp), 0);
        assert_string_equal(type, "ssh-ed25519");
        assert_string_equal(fp, "SHA256:abcdEFGH");
        assert_int_equal(ssh_host_key_parse("SHA256:abcdEFGH=", type, fp), 0);
        assert_string_equal(type, "");
        assert_string_equal(fp, "SHA256:abcdEFGH");
        assert_int_equal(ssh_host_key_parse("MD5:aa:bb", type, fp), -EINVAL);
        assert_string_equal(ssh_failure_reason(SSH_FAIL_HOST_KEY_MISMATCH), "HostKeyMismatch");
        assert_string_equal(ssh_failure_reason(SSH_FAIL_AUTH), "AuthFailed");
}

/* ---- keys and host keys ------------------------------------------------------- */

static void test_ed25519_and_ecdsa_keys_log_in(void **state) {
        const char *keys[] = {"client_ed25519", "client_ecdsa"};
        (void) state;

        for (size_t i = 0; i < ELEMENTSOF(keys); i++) {
                char kp[128];
                SshTarget t = target_for(keys[i], keys[i], kp);
                Out o = OUT_INIT;
                SshResult res;

                assert_int_equal(run(&t, "echo hello from $(id -un)", &o, &res), 0);
                assert_int_equal(res.failure, SSH_OK);
                assert_int_equal(res.exit_code, 0);
                assert_string_equal(str(&o.out), "hello from root\n");
                assert_string_equal(str(&o.err), "");
                assert_string_equal(res.host_key, pin_ed25519);
                assert_true(res.logged_in);
                assert_false(res.host_key_new);
                out_free(&o);
        }
}

static void test_rsa_key_refused_names_sha1_and_fix(void **state) {
        char kp[128];
        SshTarget t = target_for("rsa", "client_rsa", kp);
        Out o = OUT_INIT;
        SshResult res;
        (void) state;

        assert_true(run(&t, "true", &o, &res) < 0);
        assert_int_equal(res.failure, SSH_FAIL_AUTH);
        assert_false(res.logged_in);
        assert_contains(res.message, "SHA-1");
        assert_contains(res.message, "OpenSSH 8.8");
        assert_contains(res.message, "ed25519");
        assert_contains(res.message, "PubkeyAcceptedAlgorithms");
        assert_null(strstr(res.message, "PRIVATE")); /* never the key itself */
}

static void test_unauthorized_key_auth_failed(void **state) {
        char kp[128];
        SshTarget t = target_for("unknown-key", "client_unknown", kp);
        Out o = OUT_INIT;
        SshResult res;
        (void) state;

        assert_true(run(&t, "true", &o, &res) < 0);
        assert_int_equal(res.failure, SSH_FAIL_AUTH);
        assert_contains(res.message, "authorized_keys");
        assert_null(strstr(res.message, "SHA-1"));

        snprintf(kp, 128, "%s/no-such-key", tmp);
        assert_true(run(&t, "true", &o, &res) < 0);
        assert_int_equal(res.failure, SSH_FAIL_KEY);

        t.key_file = NULL;
        t.key_data =
                "-----BEGIN OPENSSH PRIVATE KEY-----\nbm90IGEga2V5\n-----END OPENSSH PRIVATE KEY-----\n";
        t.key_len = strlen(t.key_data);
        assert_true(run(&t, "true", &o, &res) < 0);
        assert_int_equal(res.failure, SSH_FAIL_KEY);
        assert_null(strstr(res.message, "bm90IGEga2V5"));
}

static void test_key_from_memory(void **state) {
        char kp[128];
        SshTarget t = target_for("memory-key", "client_ed25519", kp);
        _cleanup_free_ char *key = NULL;
        size_t len;
        Out o = OUT_INIT;
        SshResult res;
        (void) state;

        assert_int_equal(read_file(kp, 1 << 16, &key, &len), 0);
        t.key_file = NULL;
        t.key_data = key;
        t.key_len = len;
        assert_int_equal(run(&t, "echo ok", &o, &res), 0);
        assert_string_equal(str(&o.out), "ok\n");
        out_free(&o);
}

static void test_host_key_mismatch_names_both(void **state) {
        char kp[128];
        SshTarget t = target_for("mismatch", "client_ed25519", kp);
        Out o = OUT_INIT;
        SshResult res;
        (void) state;

        t.host_key = pin_other;
        assert_true(run(&t, "touch /tmp/should-not-run", &o, &res) < 0);
        assert_int_equal(res.failure, SSH_FAIL_HOST_KEY_MISMATCH);
        assert_false(res.logged_in);
        assert_contains(res.message, strchr(pin_other, ' ') + 1);
        assert_contains(res.message, strchr(pin_ed25519, ' ') + 1);
}

static void test_pinned_type_is_preferred(void **state) {
        char kp[128];
        SshTarget t = target_for("pin-type", "client_ed25519", kp);
        Out o = OUT_INIT;
        SshResult res;
        (void) state;

        /* The server has both; each pin is checked against its own type. */
        t.host_key = pin_ecdsa;
        assert_int_equal(run(&t, "true", &o, &res), 0);
        assert_string_equal(res.host_key, pin_ecdsa);
        t.host_key = pin_ed25519;
        assert_int_equal(run(&t, "true", &o, &res), 0);
        assert_string_equal(res.host_key, pin_ed25519);
        /* Without a type, ed25519 is asked for first, as OpenSSH does. */
        t.host_key = strchr(pin_ed25519, ' ') + 1;
        assert_int_equal(run(&t, "true", &o, &res), 0);
        assert_string_equal(res.host_key, pin_ed25519);
}

static void test_unknown_host_key_and_accept_new(void **state) {
        char kp[128];
        SshTarget t = target_for("accept-new", "client_ed25519", kp);
        Out o = OUT_INIT;
        SshResult res;
        (void) state;

        t.host_key = NULL;
        assert_true(run(&t, "true", &o, &res) < 0);
        assert_int_equal(res.failure, SSH_FAIL_HOST_KEY_UNKNOWN);
        assert_contains(res.message, "accept-new");
        assert_string_equal(res.host_key, pin_ed25519); /* what a person would pin */

        t.accept_new = true;
        assert_int_equal(run(&t, "echo in", &o, &res), 0);
        assert_true(res.host_key_new);
        assert_string_equal(res.host_key, pin_ed25519);
        assert_string_equal(str(&o.out), "in\n");
        out_free(&o);
}

/* One line for the main sshd with the key of pub_name; hashed as
 * HashKnownHosts would write it. */
static void write_known_hosts(const char *path, const char *pub_name, bool hashed) {
        _cleanup_free_ char *cmd =
                xasprintf("printf '[127.0.0.1]:%u %%s\\n' \"$(cut -d' ' -f1,2 %s/%s.pub)\" > %s", sshd.port,
                          tmp, pub_name, path);
        _cleanup_free_ char *hash =
                xasprintf("ssh-keygen -q -H -f %s >/dev/null 2>&1 && rm -f %s.old", path, path);

        shell_ok(cmd);
        if (hashed)
                shell_ok(hash);
}

static void test_known_hosts_file(void **state) {
        char kp[128];
        SshTarget t = target_for("known-hosts", "client_ed25519", kp);
        _cleanup_free_ char *kh = path_in_tmp("known_hosts");
        Out o = OUT_INIT;
        SshResult res;
        (void) state;

        t.host_key = NULL;
        t.known_hosts_file = kh;
        write_known_hosts(kh, "host_ed25519", false);
        assert_int_equal(run(&t, "true", &o, &res), 0);
        assert_string_equal(res.host_key, pin_ed25519);
        assert_false(res.host_key_new);

        /* Only the ECDSA key known, and hashed: that type is asked for. */
        write_known_hosts(kh, "host_ecdsa", true);
        ssh_pool_forget(pool, "known-hosts");
        assert_int_equal(run(&t, "true", &o, &res), 0);
        assert_string_equal(res.host_key, pin_ecdsa);

        write_known_hosts(kh, "host_other", false);
        ssh_pool_forget(pool, "known-hosts");
        assert_true(run(&t, "true", &o, &res) < 0);
        assert_int_equal(res.failure, SSH_FAIL_HOST_KEY_MISMATCH);
        assert_contains(res.message, strchr(pin_ed25519, ' ') + 1);
        assert_contains(res.message, strchr(pin_other, ' ') + 1);
}

/* ---- not connecting ------------------------------------------------------------------ */

static void test_connection_refused_quickly(void **state) {
        SshTarget t = {
                .id = "refused", .host = "127.0.0.1", .port = free_port(), .key_file = "/nonexistent"};
        Out o = OUT_INIT;
        SshResult res;
        (void) state;

        assert_true(run(&t, "true", &o, &res) < 0);
        assert_int_equal(res.failure, SSH_FAIL_CONNECTION_REFUSED);
        assert_true(res.duration_usec < USEC_PER_SEC);
        assert_contains(res.message, "refused");
}

static void test_bad_host_name(void **state) {
        SshTarget t = {.id = "no-name", .host = "no-such-host.invalid", .key_file = "/nonexistent"};
        Out o = OUT_INIT;
        SshResult res;
        (void) state;

        assert_true(run(&t, "true", &o, &res) < 0);
        assert_int_equal(res.failure, SSH_FAIL_NAME_RESOLUTION);
        assert_contains(res.message, "no-such-host.invalid");
}

/* A listener whose backlog is full drops further SYNs: a local black hole. */
static void test_connect_timeout(void **state) {
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t len = sizeof a;
        int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), filler = socket(AF_INET, SOCK_STREAM, 0);
        Out o = OUT_INIT;
        SshResult res;
        (void) state;

        assert_int_equal(bind(l, (struct sockaddr *) &a, sizeof a), 0);
        assert_int_equal(listen(l, 0), 0);
        assert_int_equal(getsockname(l, (struct sockaddr *) &a, &len), 0);
        assert_int_equal(connect(filler, (struct sockaddr *) &a, sizeof a), 0);

        SshTarget t = {.id = "blackhole",
                       .host = "127.0.0.1",
                       .port = ntohs(a.sin_port),
                       .key_file = "/x",
                       .connect_timeout_usec = 300 * USEC_PER_MSEC};
        assert_true(run(&t, "true", &o, &res) < 0);
        assert_int_equal(res.failure, SSH_FAIL_TIMEOUT);
        assert_true(res.duration_usec >= 250 * USEC_PER_MSEC && res.duration_usec < 2 * USEC_PER_SEC);

        /* Accepted but silent: the handshake times out. */
        int silent = accept4(l, NULL, NULL, SOCK_CLOEXEC);
        close(filler);
        assert_int_equal(run(&t, "true", &o, &res) < 0, 1);
        assert_int_equal(res.failure, SSH_FAIL_TIMEOUT);
        assert_contains(res.message, "handshake");
        assert_true(res.duration_usec < 2 * USEC_PER_SEC);
        close(silent);
        close(l);
}

/* ---- commands ---------------------------------------------------------------------- */

static void test_exit_codes_and_stderr_apart(void **state) {
        char kp[128];
        SshTarget t = target_for("exit", "client_ed25519", kp);
        Out o = OUT_INIT, o2 = OUT_INIT;
        SshResult res;
        (void) state;

        assert_int_equal(run(&t, "echo out; echo err >&2; echo more; exit 3", &o, &res), 0);
        assert_int_equal(res.exit_code, 3);
        assert_string_equal(res.signal, "");
        assert_string_equal(str(&o.out), "out\nmore\n");
        assert_string_equal(str(&o.err), "err\n");

        assert_int_equal(run(&t, "kill -TERM $$", &o2, &res), 0);
        assert_int_equal(res.exit_code, -1);
        assert_string_equal(res.signal, "TERM");

        /* The exit status counts, not the end of the output. */
        assert_int_equal(run(&t, "exec >/dev/null 2>&1; sleep 0.3; exit 7", &o2, &res), 0);
        assert_int_equal(res.exit_code, 7);
        assert_true(res.duration_usec >= 300 * USEC_PER_MSEC);
        out_free(&o);
        out_free(&o2);
}

static long vm_rss_kb(void) {
        _cleanup_free_ char *status = NULL;
        size_t len;

        assert_int_equal(read_file("/proc/self/status", 1 << 16, &status, &len), 0);
        char *p = strstr(status, "VmRSS:");
        assert_non_null(p);
        return strtol(p + 6, NULL, 10);
}

typedef struct Count {
        size_t out, err;
} Count;

static int count(void *userdata, SshStream stream, const char *data, size_t n) {
        Count *c = userdata;
        (void) data;
        if (stream == SSH_STDOUT)
                c->out += n;
        else
                c->err += n;
        return 0;
}

static void test_100mb_streamed_in_flat_memory(void **state) {
        char kp[128];
        SshTarget t = target_for("big", "client_ed25519", kp);
        Count c = {};
        SshCommand cmd = {
                .script = "head -c 104857600 /dev/zero; echo done >&2", .output = count, .userdata = &c};
        SshResult res;
        (void) state;

        long before = vm_rss_kb();
        assert_int_equal(ssh_run(pool, &t, &cmd, &res), 0);
        long grown = vm_rss_kb() - before;
        assert_int_equal(res.exit_code, 0);
        assert_int_equal(c.out, 104857600);
        assert_int_equal(c.err, 5);
        if (grown > 20 * 1024)
                fail_msg("memory grew by %ld KiB while streaming 100 MB", grown);
}

static const char exact_script[] = "X='it'\"'\"'s \"quoted\"'\n"
                                   "echo \"$X\"\n"
                                   "printf '%s\\n' 'single \"double\" \\back $NOT'\n"
                                   "printf '%s\\n' \"a\\\\b\" \"c\\$d\"\n"
                                   "Y=$((2 + 3)); echo \"sum=$Y ${Y}0\"\n"
                                   "cat <<'EOF'\n"
                                   "$HOME stays, `so does this`, and \\n\n"
                                   "EOF\n"
                                   "for w in a 'b c'; do echo \"[$w]\"; done\n"
                                   "echo \"tab\there\" # a comment with 'quote\n";
static const char exact_output[] = "it's \"quoted\"\n"
                                   "single \"double\" \\back $NOT\n"
                                   "a\\b\n"
                                   "c$d\n"
                                   "sum=5 50\n"
                                   "$HOME stays, `so does this`, and \\n\n"
                                   "[a]\n"
                                   "[b c]\n"
                                   "tab\there\n";

static void test_script_runs_exactly_as_written(void **state) {
        char kp[128];
        SshTarget t = target_for("script", "client_ed25519", kp);
        SshTarget local = {.id = "local", .transport = SSH_TRANSPORT_LOCAL};
        Out o = OUT_INIT, lo = OUT_INIT;
        SshResult res;
        (void) state;

        assert_int_equal(run(&t, exact_script, &o, &res), 0);
        assert_string_equal(str(&o.err), "");
        assert_string_equal(str(&o.out), exact_output);
        assert_int_equal(run(&local, exact_script, &lo, &res), 0);
        assert_string_equal(str(&lo.out), exact_output);
        out_free(&o);
        out_free(&lo);
}

static void test_env_arrives_exactly(void **state) {
        const char *env[] = {"A=it's", "B=line1\nline2", "C=$HOME \"q\" \\ `x`", "D=", "E=a=b", NULL};
        const char *want = "it's|line1\nline2|$HOME \"q\" \\ `x`||a=b|/tmp\n";
        char kp[128];
        SshTarget t = target_for("env", "client_ed25519", kp);
        SshTarget local = {.id = "local", .transport = SSH_TRANSPORT_LOCAL};
        (void) state;

        for (int i = 0; i < 2; i++) {
                Out o = OUT_INIT;
                SshCommand cmd = {.script = "printf '%s|' \"$A\" \"$B\" \"$C\" \"$D\" \"$E\"; pwd",
                                  .env = env,
                                  .workdir = "/tmp",
                                  .output = collect,
                                  .userdata = &o};
                SshResult res;
                assert_int_equal(ssh_run(pool, i == 0 ? &t : &local, &cmd, &res), 0);
                assert_string_equal(str(&o.out), want);
                out_free(&o);
        }
}

/* ---- pooling and concurrency ------------------------------------------------------ */

typedef struct Job {
        const SshTarget *t;
        int n, r, exit_code;
        char out[32];
        char message[512];
} Job;

static void *job_run(void *userdata) {
        Job *j = userdata;
        Out o = OUT_INIT;
        SshResult res;
        _cleanup_free_ char *script = xasprintf("echo job-%d", j->n);

        j->r = run(j->t, script, &o, &res);
        j->exit_code = res.exit_code;
        snprintf(j->message, sizeof j->message, "%s", res.message);
        snprintf(j->out, sizeof j->out, "%s", str(&o.out));
        out_free(&o);
        return NULL;
}

static void test_100_concurrent_commands(void **state) {
        char kp[128];
        SshTarget t = target_for("concurrent", "client_ed25519", kp);
        Job jobs[100];
        pthread_t th[100];
        (void) state;

        for (int i = 0; i < 100; i++) {
                jobs[i] = (Job){.t = &t, .n = i};
                assert_int_equal(pthread_create(&th[i], NULL, job_run, &jobs[i]), 0);
        }
        uint64_t start = now_mono_usec();
        for (int i = 0; i < 100; i++)
                pthread_join(th[i], NULL);
        print_message("100 commands in %.3f s over %zu sessions\n", (now_mono_usec() - start) / 1e6,
                      ssh_pool_sessions(pool));
        for (int i = 0; i < 100; i++) {
                char want[32];
                snprintf(want, sizeof want, "job-%d\n", i);
                if (jobs[i].r < 0)
                        fail_msg("job %d: %s", i, jobs[i].message);
                assert_int_equal(jobs[i].exit_code, 0);
                assert_string_equal(jobs[i].out, want);
        }
        ssh_pool_forget(pool, "concurrent");
}

static void test_second_command_reuses_session(void **state) {
        char kp[128];
        SshTarget t = target_for("reuse", "client_ed25519", kp);
        SshPool *p;
        SshResult first, second;
        Out o = OUT_INIT;
        SshCommand cmd = {.script = "echo x", .output = collect, .userdata = &o};
        (void) state;

        assert_int_equal(ssh_pool_new(4, &p), 0);
        assert_int_equal(ssh_run(p, &t, &cmd, &first), 0);
        assert_int_equal(ssh_pool_sessions(p), 1);
        assert_int_equal(ssh_run(p, &t, &cmd, &second), 0);
        assert_int_equal(ssh_pool_sessions(p), 1);
        assert_true(second.logged_in);
        assert_string_equal(second.host_key, pin_ed25519);
        print_message("fresh %.3f s, pooled %.3f s\n", first.duration_usec / 1e6,
                      second.duration_usec / 1e6);
        if (second.duration_usec * 2 > first.duration_usec)
                fail_msg("pooled run took %.3f s, the first %.3f s", second.duration_usec / 1e6,
                         first.duration_usec / 1e6);
        ssh_pool_forget(p, "reuse");
        assert_int_equal(ssh_pool_sessions(p), 0);
        ssh_pool_free(p);
        out_free(&o);
}

/* The pool holds what is in use, not every target ever seen: a target
 * goes with its last idle session, a failed login leaves nothing, and
 * forgetting a target never seen adds nothing. */
static void test_pool_keeps_only_targets_in_use(void **state) {
        char kp[128];
        SshTarget a = target_for("keep-a", "client_ed25519", kp), b = target_for("keep-b", "client_ed25519", kp);
        SshTarget refused = {.id = "keep-refused", .host = "127.0.0.1", .port = free_port(), .key_file = "/nonexistent"};
        SshCommand cmd = {.script = "true"};
        SshResult res;
        SshPool *p;
        (void) state;

        assert_int_equal(ssh_pool_new(4, &p), 0);
        assert_int_equal(ssh_run(p, &a, &cmd, &res), 0);
        assert_int_equal(ssh_run(p, &b, &cmd, &res), 0);
        assert_int_equal(ssh_pool_targets(p), 2);
        assert_true(ssh_run(p, &refused, &cmd, &res) < 0);
        assert_int_equal(ssh_pool_targets(p), 2);
        for (int i = 0; i < 1000; i++) {
                char id[32];
                snprintf(id, sizeof id, "never-seen-%d", i);
                ssh_pool_forget(p, id);
        }
        assert_int_equal(ssh_pool_targets(p), 2);
        ssh_pool_forget(p, "keep-a");
        assert_int_equal(ssh_pool_targets(p), 1);
        assert_int_equal(ssh_pool_sessions(p), 1);
        ssh_pool_forget(p, "keep-b");
        assert_int_equal(ssh_pool_targets(p), 0);
        assert_int_equal(ssh_pool_sessions(p), 0);
        ssh_pool_free(p);
}

/* Files in the remote ~/.rpr/run whose name starts with prefix. */
static size_t pid_files(const char *prefix) {
        _cleanup_free_ char *dir = path_in_tmp("home/.rpr/run");
        DIR *d = opendir(dir);
        size_t n = 0;

        for (struct dirent *e; d && (e = readdir(d));)
                n += strncmp(e->d_name, prefix, strlen(prefix)) == 0;
        if (d)
                closedir(d);
        return n;
}

/* A tracked command's pid file is there while it runs, stays once it
 * ended (removing it would cost a process on the host per command), and
 * goes with the next batch: the eighth ended one is followed by a command
 * that removes all eight before its own starts. */
static void test_ended_pid_files_go_in_batches(void **state) {
        char kp[128];
        SshTarget t = target_for("tidy", "client_ed25519", kp);
        SshPool *p;
        (void) state;

        assert_int_equal(ssh_pool_new(4, &p), 0);
        for (int i = 1; i <= 9; i++) {
                char id[32];
                Out o = OUT_INIT;
                snprintf(id, sizeof id, "default.tidy-%d", i);
                SshTrack track = {.id = id};
                SshCommand cmd = {.script = "ls \"$HOME/.rpr/run\" | grep -c '^default[.]tidy-'",
                                  .track = &track,
                                  .output = collect,
                                  .userdata = &o};
                SshResult res;
                assert_int_equal(ssh_run(p, &t, &cmd, &res), 0);
                assert_int_equal(res.exit_code, 0);
                /* what it saw while it ran: the ended ones and its own, or
                 * (after eight) only its own */
                _cleanup_free_ char *want = xasprintf("%d\n", i <= 8 ? i : 1);
                assert_string_equal(str(&o.out), want);
                assert_int_equal(pid_files("default.tidy-"), (size_t) (i <= 8 ? i : 1));
                out_free(&o);
        }
        ssh_pool_forget(p, "tidy");
        assert_int_equal(ssh_pool_targets(p), 0);
        ssh_pool_free(p);
}

/* ---- timeouts, cancels, disconnects ------------------------------------------------------ */

static void test_timeout_kills_remote_command(void **state) {
        char kp[128];
        SshTarget t = target_for("timeout", "client_ed25519", kp);
        _cleanup_free_ char *pids = path_in_tmp("timeout.pids");
        _cleanup_free_ char *script = xasprintf("sleep 60 & echo $$ $! > %s; wait", pids);
        Out o = OUT_INIT;
        SshCommand cmd = {
                .script = script, .output = collect, .userdata = &o, .timeout_usec = 500 * USEC_PER_MSEC};
        SshResult res;
        (void) state;

        assert_true(ssh_run(pool, &t, &cmd, &res) < 0);
        assert_int_equal(res.failure, SSH_FAIL_TIMEOUT);
        assert_true(res.duration_usec < 4 * USEC_PER_SEC);
        assert_true(pids_gone(pids));
        out_free(&o);
}

typedef struct Canceler {
        SshCancel *c;
        Out *o;
} Canceler;

/* Fires the cancel once output was seen, from its own thread. */
static void *cancel_when_started(void *userdata) {
        Canceler *x = userdata;

        for (int i = 0; i < 250; i++) {
                pthread_mutex_lock(&x->o->lock);
                bool seen = x->o->seen;
                pthread_mutex_unlock(&x->o->lock);
                if (seen)
                        break;
                usleep(20 * 1000);
        }
        ssh_cancel_fire(x->c);
        return NULL;
}

static void test_cancel_from_another_thread(void **state) {
        char kp[128];
        SshTarget t = target_for("cancel", "client_ed25519", kp);
        _cleanup_free_ char *pids = path_in_tmp("cancel.pids");
        _cleanup_free_ char *script = xasprintf("sleep 60 & echo $$ $! > %s; echo started; wait", pids);
        Out o = OUT_INIT;
        SshCommand cmd = {.script = script, .output = collect, .userdata = &o, .cancel = ssh_cancel_new()};
        Canceler x = {cmd.cancel, &o};
        SshResult res;
        pthread_t th;
        (void) state;

        assert_int_equal(pthread_create(&th, NULL, cancel_when_started, &x), 0);
        assert_true(ssh_run(pool, &t, &cmd, &res) < 0);
        pthread_join(th, NULL);
        assert_int_equal(res.failure, SSH_FAIL_CANCELED);
        assert_true(o.seen);
        if (res.duration_usec > 4 * USEC_PER_SEC)
                fail_msg("the cancel took %.3f s", res.duration_usec / 1e6);
        assert_true(pids_gone(pids));
        ssh_cancel_free(cmd.cancel);
        out_free(&o);
}

/* Login scripts that print on stderr before the command starts: their
 * lines reach the caller, and a timeout still finds the process group. */
static void test_login_noise_passes_through(void **state) {
        char kp[128];
        SshTarget t = target_for("noise", "client_ed25519", kp);
        _cleanup_free_ char *bashrc = path_in_tmp("home/.bashrc");
        _cleanup_free_ char *pids = path_in_tmp("noise.pids");
        _cleanup_free_ char *script = xasprintf("echo err >&2; sleep 60 & echo $$ $! > %s; wait", pids);
        static const char noise[] = "echo 'noise from .bashrc, a line longer than forty characters' >&2\n"
                                    "echo 'rpr-pid:1 is not ours, only the line after is' >&2\n";
        Out o = OUT_INIT;
        SshCommand cmd = {
                .script = script, .output = collect, .userdata = &o, .timeout_usec = 500 * USEC_PER_MSEC};
        SshResult res;
        (void) state;

        assert_int_equal(write_file_atomic(bashrc, noise, strlen(noise), 0644), 0);
        assert_true(ssh_run(pool, &t, &cmd, &res) < 0);
        unlink(bashrc);
        assert_int_equal(res.failure, SSH_FAIL_TIMEOUT);
        assert_string_equal(str(&o.err), "noise from .bashrc, a line longer than forty characters\n"
                                         "rpr-pid:1 is not ours, only the line after is\n"
                                         "err\n");
        assert_true(pids_gone(pids));
        out_free(&o);
}

typedef struct Midway {
        SshTarget t;
        SshResult res;
        int r;
        Out o;
} Midway;

static void *midway_run(void *userdata) {
        Midway *m = userdata;
        SshCommand cmd = {.script = "echo started; sleep 30", .output = collect, .userdata = &m->o};

        m->r = ssh_run(pool, &m->t, &cmd, &m->res);
        return NULL;
}

static void test_sshd_killed_mid_command_then_reconnect(void **state) {
        char kp[128];
        Midway m = {.t = target_for("midway", "client_ed25519", kp), .o = OUT_INIT};
        pthread_t th;
        (void) state;

        assert_int_equal(pthread_create(&th, NULL, midway_run, &m), 0);
        for (int i = 0; i < 500 && !__atomic_load_n(&m.o.seen, __ATOMIC_ACQUIRE); i++)
                usleep(10 * 1000);
        assert_true(m.o.seen);
        uint64_t killed = now_mono_usec();
        sshd_kill_sessions(&sshd); /* every pooled session of this test run dies too */
        pthread_join(th, NULL);
        assert_true(m.r < 0);
        assert_int_equal(m.res.failure, SSH_FAIL_DISCONNECTED);
        assert_contains(m.res.message, "lost");
        assert_true(now_mono_usec() - killed < 3 * USEC_PER_SEC);

        /* The pooled sessions on that server are dead now: reconnected once, unseen. */
        Out o = OUT_INIT;
        SshTarget t = target_for("client_ed25519", "client_ed25519", kp);
        SshResult res;
        size_t before = ssh_pool_sessions(pool);
        assert_true(before >= 1);
        assert_int_equal(run(&t, "echo back", &o, &res), 0);
        assert_string_equal(str(&o.out), "back\n");
        assert_int_equal(ssh_pool_sessions(pool), before); /* the dead one replaced */
        out_free(&o);
        out_free(&m.o);
}

/* ---- local transport -------------------------------------------------------------------- */

static void test_local_transport(void **state) {
        SshTarget t = {.id = "local", .transport = SSH_TRANSPORT_LOCAL};
        _cleanup_free_ char *pids = path_in_tmp("local.pids");
        _cleanup_free_ char *script = xasprintf("sleep 60 & echo $$ $! > %s; echo started; wait", pids);
        Out o = OUT_INIT, o2 = OUT_INIT, o3 = OUT_INIT;
        SshResult res;
        (void) state;

        assert_int_equal(run(&t, "echo out; echo err >&2; exit 4", &o, &res), 0);
        assert_int_equal(res.exit_code, 4);
        assert_string_equal(str(&o.out), "out\n");
        assert_string_equal(str(&o.err), "err\n");
        assert_int_equal(run(&t, "kill -KILL $$", &o, &res), 0);
        assert_string_equal(res.signal, "KILL");

        SshCommand cmd = {
                .script = script, .output = collect, .userdata = &o2, .timeout_usec = 300 * USEC_PER_MSEC};
        assert_true(ssh_run(pool, &t, &cmd, &res) < 0);
        assert_int_equal(res.failure, SSH_FAIL_TIMEOUT);
        assert_true(pids_gone(pids));

        /* Canceled as soon as output arrives. */
        cmd = (SshCommand){.script = script, .output = collect, .userdata = &o3, .cancel = ssh_cancel_new()};
        o3.fire_on_output = cmd.cancel;
        assert_true(ssh_run(pool, &t, &cmd, &res) < 0);
        assert_int_equal(res.failure, SSH_FAIL_CANCELED);
        assert_true(pids_gone(pids));
        ssh_cancel_free(cmd.cancel);
        out_free(&o);
        out_free(&o2);
        out_free(&o3);
}

/* A command's input reaches its stdin whole, over ssh and locally, and
 * never its command line: 300 KiB, more than a pipe or a window holds. */
static void test_input_on_stdin(void **state) {
        char kp[128];
        SshTarget targets[] = {target_for("input", "client_ed25519", kp),
                               {.id = "local-input", .transport = SSH_TRANSPORT_LOCAL}};
        size_t n = 300 * 1024;
        _cleanup_free_ char *data = xmalloc(n);
        char want[65];
        (void) state;

        for (size_t i = 0; i < n; i++)
                data[i] = (char) ('a' + i % 26);
        sha256_hex(data, n, want);
        for (size_t i = 0; i < ELEMENTSOF(targets); i++) {
                Out o = OUT_INIT;
                SshResult res;
                SshCommand cmd = {.script = "sha256sum | cut -d' ' -f1",
                                  .output = collect,
                                  .userdata = &o,
                                  .input = data,
                                  .input_len = n};
                assert_int_equal(ssh_run(pool, &targets[i], &cmd, &res), 0);
                assert_int_equal(res.exit_code, 0);
                _cleanup_free_ char *line = xasprintf("%s\n", want);
                assert_string_equal(str(&o.out), line);
                out_free(&o);
        }
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_input_on_stdin),
                cmocka_unit_test(test_shell_quote_and_script_build),
                cmocka_unit_test(test_host_key_parse),
                cmocka_unit_test(test_ed25519_and_ecdsa_keys_log_in),
                cmocka_unit_test(test_rsa_key_refused_names_sha1_and_fix),
                cmocka_unit_test(test_unauthorized_key_auth_failed),
                cmocka_unit_test(test_key_from_memory),
                cmocka_unit_test(test_host_key_mismatch_names_both),
                cmocka_unit_test(test_pinned_type_is_preferred),
                cmocka_unit_test(test_unknown_host_key_and_accept_new),
                cmocka_unit_test(test_known_hosts_file),
                cmocka_unit_test(test_connection_refused_quickly),
                cmocka_unit_test(test_bad_host_name),
                cmocka_unit_test(test_connect_timeout),
                cmocka_unit_test(test_exit_codes_and_stderr_apart),
                cmocka_unit_test(test_100mb_streamed_in_flat_memory),
                cmocka_unit_test(test_script_runs_exactly_as_written),
                cmocka_unit_test(test_env_arrives_exactly),
                cmocka_unit_test(test_100_concurrent_commands),
                cmocka_unit_test(test_second_command_reuses_session),
                cmocka_unit_test(test_pool_keeps_only_targets_in_use),
                cmocka_unit_test(test_ended_pid_files_go_in_batches),
                cmocka_unit_test(test_timeout_kills_remote_command),
                cmocka_unit_test(test_cancel_from_another_thread),
                cmocka_unit_test(test_login_noise_passes_through),
                cmocka_unit_test(test_sshd_killed_mid_command_then_reconnect),
                cmocka_unit_test(test_local_transport),
        };
        signal(SIGPIPE, SIG_IGN);
        if (getenv("TEST_FILTER")) /* e.g. TEST_FILTER='*cancel*' */
                cmocka_set_test_filter(getenv("TEST_FILTER"));
        return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
