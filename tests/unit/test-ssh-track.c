/* Unit tests of ssh-track: tracked local commands and the reaper, with
 * real processes (/bin/sh, sleep) and real pid files in a temporary
 * directory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sys/socket.h>

#include "ssh/ssh-private.h"

static char dir[] = "/tmp/rpr-track-test-XXXXXX";
static SshPool *pool;
static const SshTarget local = {.id = "local", .transport = SSH_TRANSPORT_LOCAL};

typedef struct Out {
        char text[4096];
        size_t len;
} Out;

static int collect(void *userdata, SshStream stream, const char *data, size_t n) {
        Out *o = userdata;

        (void) stream;
        n = n < sizeof o->text - 1 - o->len ? n : sizeof o->text - 1 - o->len;
        memcpy(o->text + o->len, data, n);
        o->len += n;
        o->text[o->len] = '\0';
        return 0;
}

static bool pid_file_exists(const char *id) {
        char path[512];
        struct stat st;

        snprintf(path, sizeof path, "%s/%s.pid", dir, id);
        return stat(path, &st) == 0;
}

static void test_tracked_command_runs_and_cleans_up(void **state) {
        (void) state;
        SshTrack track = {.id = "ns.run-1", .local_dir = dir};
        Out out = {0};
        SshCommand cmd = {.script = "cat /proc/$$/stat >/dev/null; echo hello; exit 7", .output = collect,
                          .userdata = &out, .track = &track};
        SshResult res;

        assert_int_equal(ssh_run(pool, &local, &cmd, &res), 0);
        assert_int_equal(res.exit_code, 7);
        assert_string_equal(out.text, "hello\n");
        assert_false(pid_file_exists("ns.run-1"));
}

static void test_tracked_command_keeps_its_signal(void **state) {
        (void) state;
        SshTrack track = {.id = "ns.run-2", .local_dir = dir};
        SshCommand cmd = {.script = "kill -TERM $$", .track = &track};
        SshResult res;

        assert_int_equal(ssh_run(pool, &local, &cmd, &res), 0);
        assert_string_equal(res.signal, "TERM");
}

static void test_child_environment_is_clean(void **state) {
        (void) state;
        const char *env[] = {"MINE=yes", NULL};
        Out out = {0};
        SshCommand cmd = {.script = "env", .env = env, .output = collect, .userdata = &out};
        SshResult res;

        setenv("RPR_TEST_SECRET_IN_RPRD", "do-not-pass", 1);
        assert_int_equal(ssh_run(pool, &local, &cmd, &res), 0);
        assert_null(strstr(out.text, "do-not-pass"));
        assert_non_null(strstr(out.text, "MINE=yes"));
        assert_non_null(strstr(out.text, "PATH="));
        assert_non_null(strstr(out.text, "HOME="));
        assert_non_null(strstr(out.text, "LANG="));
        unsetenv("RPR_TEST_SECRET_IN_RPRD");
}

/* A process group of our own, as a tracked command that outlived its rprd
 * would be: sh (the leader) with a sleep. */
static pid_t group_start(void) {
        pid_t pid = fork();

        assert_true(pid >= 0);
        if (pid == 0) {
                setsid();
                execl("/bin/sh", "sh", "-c", "sleep 60; true", (char *) NULL);
                _exit(127);
        }
        usleep(100 * 1000);
        return pid;
}

static void pid_file_write(const char *id, pid_t pid, bool right_start) {
        char path[512], stat_path[64], line[1024];
        unsigned long long start = 0;

        snprintf(stat_path, sizeof stat_path, "/proc/%d/stat", (int) pid);
        FILE *f = fopen(stat_path, "re");
        assert_non_null(f);
        assert_non_null(fgets(line, sizeof line, f));
        fclose(f);
        /* Field 22, after ") " and 19 more. */
        char *p = strrchr(line, ')') + 2;
        for (int i = 3; i < 22; i++)
                p = strchr(p, ' ') + 1;
        start = strtoull(p, NULL, 10);
        snprintf(path, sizeof path, "%s/%s.pid", dir, id);
        f = fopen(path, "we");
        assert_non_null(f);
        fprintf(f, "%d %llu\n", (int) pid, right_start ? start : start + 12345);
        fclose(f);
}

static void test_reap_stops_a_live_group(void **state) {
        (void) state;
        SshTrack track = {.id = "ns.run-3", .local_dir = dir};
        pid_t pid = group_start();
        SshReap found = SSH_REAP_NONE;
        SshResult res;
        int status;

        pid_file_write("ns.run-3", pid, true);
        assert_int_equal(ssh_reap(pool, &local, &track, 2 * USEC_PER_SEC, &found, &res), 0);
        assert_int_equal(found, SSH_REAP_TERMINATED);
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM);
        assert_false(pid_file_exists("ns.run-3"));
}

static void test_reap_spares_a_reused_pid(void **state) {
        (void) state;
        SshTrack track = {.id = "ns.run-4", .local_dir = dir};
        pid_t pid = group_start();
        SshReap found = SSH_REAP_NONE;
        SshResult res;

        /* The pid file names this pid with another start time: the pid was
         * reused by a process that is not the command. */
        pid_file_write("ns.run-4", pid, false);
        assert_int_equal(ssh_reap(pool, &local, &track, 2 * USEC_PER_SEC, &found, &res), 0);
        assert_int_equal(found, SSH_REAP_ENDED);
        assert_int_equal(kill(pid, 0), 0);
        kill(-pid, SIGKILL);
        waitpid(pid, NULL, 0);
}

static void test_reap_without_a_record(void **state) {
        (void) state;
        SshTrack track = {.id = "ns.never", .local_dir = dir};
        SshReap found = SSH_REAP_KILLED;
        SshResult res;

        assert_int_equal(ssh_reap(pool, &local, &track, USEC_PER_SEC, &found, &res), 0);
        assert_int_equal(found, SSH_REAP_NONE);
        assert_false(ssh_track_id_valid("../etc/passwd"));
        assert_false(ssh_track_id_valid("a b"));
        assert_true(ssh_track_id_valid("default.job-1.task@web-1"));
}

static ino_t inode_of(const char *name) {
        char path[512];
        struct stat st;

        snprintf(path, sizeof path, "%s/%s", dir, name);
        return stat(path, &st) == 0 ? st.st_ino : 0;
}

/* Local pid files are recycled: the file a command was recorded in is
 * the next one's, not removed and made anew (inode allocation after many
 * deletions is slow on a busy ext4). Between commands it is a blank
 * spare, which the reaper takes for "nothing started". */
static void test_pid_files_are_recycled(void **state) {
        (void) state;
        ino_t first = 0;

        for (int i = 0; i < 3; i++) {
                char id[32];
                snprintf(id, sizeof id, "ns.recycled-%d", i);
                SshTrack track = {.id = id, .local_dir = dir};
                SshCommand cmd = {.script = "true", .track = &track};
                SshResult res;
                assert_int_equal(ssh_run(pool, &local, &cmd, &res), 0);
                assert_int_equal(res.exit_code, 0);
                assert_false(pid_file_exists(id));
                ino_t spare = inode_of(".spare-0");
                assert_true(spare != 0);
                if (i == 0)
                        first = spare;
                assert_true(spare == first);
        }
        SshTrack track = {.id = "ns.recycled-0", .local_dir = dir};
        SshReap found = SSH_REAP_KILLED;
        SshResult res;
        char from[512], to[512];
        snprintf(from, sizeof from, "%s/.spare-0", dir);
        snprintf(to, sizeof to, "%s/ns.recycled-0.pid", dir);
        assert_int_equal(rename(from, to), 0); /* as a command's, before its wrapper wrote it */
        assert_int_equal(ssh_reap(pool, &local, &track, USEC_PER_SEC, &found, &res), 0);
        assert_int_equal(found, SSH_REAP_NONE);
}

/* The wrapper of a local command, by hand: fd 3 a socket whose other end
 * sent the start time and is then closed (rprd gone) or kept (rprd
 * there). Returns the exit status; *ran: whether the script ran. */
static int wrapper_with_rprd(bool rprd_there, bool *ran) {
        char marker[512], script[600];
        int sv[2], status;

        snprintf(marker, sizeof marker, "%s/ran", dir);
        unlink(marker);
        snprintf(script, sizeof script, "touch '%s'", marker);
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
        assert_int_equal(write(sv[0], "12345\n", 6), 6);
        if (!rprd_there)
                close(sv[0]);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                signal(SIGPIPE, SIG_DFL);
                dup2(sv[1], 3);
                execl("/bin/sh", "sh", "-c", ssh_track_wrapper(), "rpr-track", script, dir, "ns.gone",
                      "exec", "", (char *) NULL);
                _exit(127);
        }
        close(sv[1]);
        assert_int_equal(waitpid(pid, &status, 0), pid);
        if (rprd_there)
                close(sv[0]);
        *ran = access(marker, F_OK) == 0;
        return status;
}

/* A wrapper whose rprd died before it recorded the command never runs
 * the script (a later rprd may have looked for the record already);
 * with rprd there, it runs it, recorded first. */
static void test_wrapper_without_rprd_never_runs(void **state) {
        bool ran = true;
        (void) state;

        int status = wrapper_with_rprd(false, &ran);
        assert_false(ran);
        assert_true((WIFSIGNALED(status) && WTERMSIG(status) == SIGPIPE) ||
                    (WIFEXITED(status) && WEXITSTATUS(status) == 125));
        status = wrapper_with_rprd(true, &ran);
        assert_true(ran);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        assert_true(pid_file_exists("ns.gone"));
}

static int setup(void **state) {
        (void) state;
        if (!mkdtemp(dir))
                return -1;
        return ssh_pool_new(4, &pool);
}

static int teardown(void **state) {
        char cmd[128];

        (void) state;
        ssh_pool_free(pool);
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        (void) system(cmd);
        return 0;
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_tracked_command_runs_and_cleans_up),
                cmocka_unit_test(test_tracked_command_keeps_its_signal),
                cmocka_unit_test(test_child_environment_is_clean),
                cmocka_unit_test(test_reap_stops_a_live_group),
                cmocka_unit_test(test_reap_spares_a_reused_pid),
                cmocka_unit_test(test_reap_without_a_record),
                cmocka_unit_test(test_pid_files_are_recycled),
                cmocka_unit_test(test_wrapper_without_rprd_never_runs),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
