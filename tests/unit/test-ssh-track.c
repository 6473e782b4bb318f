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

#include "ssh/ssh.h"

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
        snprintf(cmd, sizeof cmd, "%s", dir);
        (void) rmdir(cmd);
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
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
