/* Unit tests for pkg/server: the Server controller on a real store, a real
 * controller loop, the real ssh pool and a real connectivity log, all in a
 * fresh temporary directory. Servers use transport local (no sshd needed)
 * or ssh to a closed loopback port; sshd end to end is for the integration
 * tests. Cases: a local server becomes Reachable with plausible metrics and
 * one log line; inactive means no check; a refused connection is retried
 * retries times retryInterval apart, then Unreachable, and Reachable again
 * (one wake-up) after a fix; a missing key Token is MissingKey without an
 * attempt; a spec change re-checks; check-now; targets from stored objects;
 * the parser of the check command's output. */
/* cmocka needs these three first. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <arpa/inet.h>
#include <cmocka.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent/agent.h"
#include "controller/controller.h"
#include "logfile/logfile.h"
#include "resource/resource.h"
#include "server/server-private.h"
#include "server/server.h"
#include "ssh/ssh.h"
#include "store/store.h"

typedef struct Fixture {
        char dir[64];
        char *logs, *key;
        Store *store;
        Controller *controller;
        SshPool *ssh;
        LogFile *log;
        ServerController *servers;
        pthread_mutex_t lock;
        unsigned reachable_calls;
        char last_reachable[128];
        pid_t sshd;
} Fixture;

static void on_reachable(void *userdata, const char *ns, const char *name) {
        Fixture *f = userdata;

        pthread_mutex_lock(&f->lock);
        f->reachable_calls++;
        snprintf(f->last_reachable, sizeof f->last_reachable, "%s/%s", ns, name);
        pthread_mutex_unlock(&f->lock);
}

static unsigned reachable_calls(Fixture *f) {
        pthread_mutex_lock(&f->lock);
        unsigned n = f->reachable_calls;
        pthread_mutex_unlock(&f->lock);
        return n;
}

static int setup(void **state) {
        Fixture *f = xcalloc(1, sizeof *f);
        _cleanup_free_ char *url = NULL, *keygen = NULL;

        snprintf(f->dir, sizeof f->dir, "/tmp/test-server-XXXXXX");
        assert_non_null(mkdtemp(f->dir));
        f->logs = xasprintf("%s/logs", f->dir);
        f->key = xasprintf("%s/id_ed25519", f->dir);
        keygen = xasprintf("ssh-keygen -q -t ed25519 -N '' -f '%s' >/dev/null", f->key);
        assert_int_equal(system(keygen), 0);
        url = xasprintf("sqlite:%s/state.db", f->dir);
        assert_int_equal(store_open(url, &f->store), 0);
        assert_int_equal(controller_new(f->store, 4, &f->controller), 0);
        assert_int_equal(ssh_pool_new(16, &f->ssh), 0);
        assert_int_equal(logfile_open(f->logs, "connectivity", &f->log), 0);
        ServerOptions o = {f->store, f->controller, f->ssh, f->log};
        assert_int_equal(server_controller_new(&o, &f->servers), 0);
        pthread_mutex_init(&f->lock, NULL);
        server_on_reachable(f->servers, on_reachable, f);
        *state = f;
        return 0;
}

static int teardown(void **state) {
        Fixture *f = *state;
        _cleanup_free_ char *cmd = xasprintf("rm -rf '%s'", f->dir);

        if (f->sshd > 0) {
                kill(f->sshd, SIGTERM);
                waitpid(f->sshd, NULL, 0);
        }
        controller_free(f->controller);
        server_controller_free(f->servers);
        ssh_pool_free(f->ssh);
        logfile_free(f->log);
        store_close(f->store);
        assert_int_equal(system(cmd), 0);
        pthread_mutex_destroy(&f->lock);
        free(f->logs);
        free(f->key);
        free(f);
        return 0;
}

static int group_setup(void **state) {
        (void) state;
        return resource_init();
}

static int group_teardown(void **state) {
        (void) state;
        resource_shutdown();
        return 0;
}

/* ---- helpers ------------------------------------------------------------- */

/* Defaults and validates like apply does, then stores it. */
static void apply(Fixture *f, const char *json) {
        json_error_t err;
        _cleanup_json_ json_t *o = json_loads(json, 0, &err);
        Diags d = DIAGS_INIT;

        assert_non_null(o);
        if (resource_prepare(o, 0, &d) < 0) {
                _cleanup_free_ char *msg = diag_format(&d.items[0]);
                print_error("%s\n", msg);
                diags_free(&d);
                fail();
        }
        StoreOp op = {.type = STORE_OP_APPLY, .object = o};
        assert_int_equal(store_commit(f->store, &op, 1, false, NULL), 0);
        store_ops_clear(&op, 1);
}

static void delete(Fixture *f, const char *kind, const char *name) {
        StoreOp op = {.type = STORE_OP_DELETE, .kind = kind, .ns = "default", .name = name};

        assert_int_equal(store_commit(f->store, &op, 1, false, NULL), 0);
        store_ops_clear(&op, 1);
}

static json_t *status_of(Fixture *f, const char *name) {
        json_t *o = NULL;

        if (store_get_json(f->store, "Server", "default", name, &o) < 0)
                return NULL;
        json_t *st = json_incref(json_object_get(o, "status"));
        json_decref(o);
        return st;
}

static const char *str_at(const json_t *o, const char *key) {
        return json_string_value(json_object_get(o, key));
}

static const char *condition(const json_t *st, const char *key) {
        return str_at(json_array_get(json_object_get(st, "conditions"), 0), key);
}

/* Waits until status.key is value; the status then (caller decrefs) or NULL. */
static json_t *wait_status(Fixture *f, const char *name, const char *key, const char *value,
                           uint64_t timeout_usec) {
        uint64_t end = now_mono_usec() + timeout_usec;

        for (;;) {
                json_t *st = status_of(f, name);
                const char *v = str_at(st, key);
                if (v && STREQ(v, value))
                        return st;
                if (now_mono_usec() > end) {
                        _cleanup_free_ char *text = st ? json_dumps(st, JSON_COMPACT) : xstrdup("none");
                        print_error("server %s: waited for status.%s %s; status is %s\n", name, key, value, text);
                        json_decref(st);
                        return NULL;
                }
                json_decref(st);
                usleep(20 * 1000);
        }
}

static size_t log_lines_with(Fixture *f, const char *needle) {
        _cleanup_free_ char *all = NULL;
        size_t n = 0;

        assert_int_equal(logfile_tail(f->log, 1000, &all), 0);
        for (const char *p = all; (p = strstr(p, needle)); p++)
                n++;
        return n;
}

static bool wait_log_lines(Fixture *f, const char *needle, size_t n, uint64_t timeout_usec) {
        uint64_t end = now_mono_usec() + timeout_usec;

        while (log_lines_with(f, needle) < n)
                if (now_mono_usec() > end)
                        return false;
                else
                        usleep(20 * 1000);
        return true;
}

static unsigned closed_port(void) {
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t len = sizeof sa;
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

        assert_true(fd >= 0);
        assert_int_equal(bind(fd, (struct sockaddr *) &sa, sizeof sa), 0);
        assert_int_equal(getsockname(fd, (struct sockaddr *) &sa, &len), 0);
        close(fd); /* nothing listens there now */
        return ntohs(sa.sin_port);
}

static bool port_open(unsigned port) {
        struct sockaddr_in sa = {.sin_family = AF_INET,
                                 .sin_port = htons((uint16_t) port),
                                 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        bool ok = connect(fd, (struct sockaddr *) &sa, sizeof sa) == 0;

        close(fd);
        return ok;
}

/* A real sshd on a free loopback port that lets f->key in as root; its
 * host key's pin ("ssh-ed25519 SHA256:...") into pin. Root's bash start-up
 * files on these machines run `pyenv rehash`, which waits up to a minute for
 * a lock when other logins run at once: SetEnv makes it give up at once. */
static unsigned sshd_start(Fixture *f, char pin[static 128]) {
        _cleanup_free_ char *host = xasprintf("%s/host_ed25519", f->dir);
        _cleanup_free_ char *cfg = xasprintf("%s/sshd_config", f->dir);
        _cleanup_free_ char *log = xasprintf("%s/sshd.log", f->dir);
        _cleanup_free_ char *keygen = xasprintf("ssh-keygen -q -t ed25519 -N '' -f '%s' >/dev/null", host);
        _cleanup_free_ char *lf = xasprintf("ssh-keygen -lf '%s.pub'", host);
        unsigned port = closed_port();
        char line[512], fp[100];

        assert_int_equal(system(keygen), 0);
        _cleanup_free_ char *conf = xasprintf("Port %u\nListenAddress 127.0.0.1\nHostKey %s\n"
                                              "AuthorizedKeysFile %s.pub\nUsePAM no\nPasswordAuthentication no\n"
                                              "StrictModes no\nPermitRootLogin prohibit-password\n"
                                              "PidFile none\nSetEnv PYENV_REHASH_TIMEOUT=0\n",
                                              port, host, f->key);
        assert_int_equal(write_file_atomic(cfg, conf, strlen(conf), 0600), 0);
        assert_int_equal(mkdir_p("/run/sshd", 0755), 0);

        FILE *p = popen(lf, "r");
        assert_non_null(p);
        assert_non_null(fgets(line, sizeof line, p));
        pclose(p);
        assert_int_equal(sscanf(line, "%*u %99s", fp), 1);
        snprintf(pin, 128, "ssh-ed25519 %s", fp);

        f->sshd = fork();
        assert_true(f->sshd >= 0);
        if (f->sshd == 0) {
                freopen(log, "w", stderr);
                execl("/usr/sbin/sshd", "/usr/sbin/sshd", "-D", "-e", "-f", cfg, (char *) NULL);
                _exit(127);
        }
        for (int i = 0; i < 500 && !port_open(port); i++)
                usleep(10 * 1000);
        assert_true(port_open(port));
        return port;
}

#define LOCAL_SERVER(name, extra)                                                                        \
        "{\"apiVersion\":\"rpr/v1\",\"kind\":\"Server\",\"metadata\":{\"name\":\"" name "\"},"            \
        "\"spec\":{\"transport\":\"local\"" extra "}}"

/* ---- the controller -------------------------------------------------------- */

static void test_local_server_becomes_reachable_with_metrics(void **state) {
        Fixture *f = *state;

        assert_int_equal(controller_start(f->controller), 0);
        apply(f, LOCAL_SERVER("web-1", ""));
        _cleanup_json_ json_t *st = wait_status(f, "web-1", "phase", "Reachable", 10 * USEC_PER_SEC);
        assert_non_null(st);

        const json_t *m = json_object_get(st, "metrics");
        double load = json_number_value(json_object_get(m, "load1"));
        double mem = json_number_value(json_object_get(m, "memUsedPercent"));
        double disk = json_number_value(json_object_get(m, "diskUsedPercent"));
        assert_true(json_is_number(json_object_get(m, "load1")) && load >= 0 && load < 1000);
        assert_true(mem > 0 && mem <= 100);
        assert_true(json_is_number(json_object_get(m, "diskUsedPercent")) && disk >= 0 && disk <= 100);
        assert_true(json_integer_value(json_object_get(m, "uptimeSeconds")) > 0);
        assert_non_null(str_at(st, "lastLoginTime"));
        assert_non_null(str_at(st, "lastCheckTime"));
        assert_int_equal(json_integer_value(json_object_get(st, "observedGeneration")), 1);
        assert_int_equal(json_integer_value(json_object_get(st, "failures")), 0);
        assert_string_equal(condition(st, "type"), "Reachable");
        assert_string_equal(condition(st, "status"), "True");
        assert_string_equal(condition(st, "reason"), "Reachable");

        assert_true(wait_log_lines(f, "default/web-1 ok Reachable ", 1, 2 * USEC_PER_SEC));
        usleep(300 * 1000); /* its own status write must not cause another check */
        assert_int_equal(log_lines_with(f, "default/web-1 "), 1);
        assert_int_equal(reachable_calls(f), 1);
        assert_string_equal(f->last_reachable, "default/web-1");
}

static void test_inactive_server_is_not_checked(void **state) {
        Fixture *f = *state;
        _cleanup_free_ char *all = NULL;

        assert_int_equal(controller_start(f->controller), 0);
        apply(f, LOCAL_SERVER("off", ", \"active\": false"));
        _cleanup_json_ json_t *st = wait_status(f, "off", "phase", "Inactive", 10 * USEC_PER_SEC);
        assert_non_null(st);
        assert_string_equal(condition(st, "reason"), "Inactive");
        assert_string_equal(condition(st, "status"), "False");
        assert_null(str_at(st, "lastCheckTime"));
        usleep(200 * 1000);
        assert_int_equal(logfile_tail(f->log, 10, &all), 0);
        assert_string_equal(all, "");
        assert_int_equal(reachable_calls(f), 0);
}

static void test_refused_connection_retries_then_unreachable_then_back(void **state) {
        Fixture *f = *state;
        _cleanup_free_ char *json = xasprintf(
                "{\"apiVersion\":\"rpr/v1\",\"kind\":\"Server\",\"metadata\":{\"name\":\"down\"},"
                "\"spec\":{\"host\":\"127.0.0.1\",\"port\":%u,\"identityFile\":\"%s\","
                "\"hostKey\":\"ssh-ed25519 SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\","
                "\"check\":{\"retries\":2,\"retryInterval\":\"1s\"}}}",
                closed_port(), f->key);

        assert_int_equal(controller_start(f->controller), 0);
        uint64_t t0 = now_mono_usec();
        apply(f, json);

        /* The first failure decides nothing yet. */
        assert_true(wait_log_lines(f, "default/down fail ConnectionRefused ", 1, 10 * USEC_PER_SEC));
        _cleanup_json_ json_t *first = status_of(f, "down");
        assert_null(str_at(first, "phase"));
        assert_string_equal(condition(first, "reason"), "ConnectionRefused");

        _cleanup_json_ json_t *st = wait_status(f, "down", "phase", "Unreachable", 15 * USEC_PER_SEC);
        assert_non_null(st);
        uint64_t took = now_mono_usec() - t0;
        assert_true(took >= 1900 * USEC_PER_MSEC); /* two retries, 1s apart */
        assert_int_equal(log_lines_with(f, "default/down fail ConnectionRefused "), 3);
        assert_int_equal(json_integer_value(json_object_get(st, "failures")), 3);
        assert_string_equal(condition(st, "reason"), "ConnectionRefused");
        assert_null(str_at(st, "lastLoginTime"));
        assert_int_equal(reachable_calls(f), 0);

        /* Unreachable is re-checked every retryInterval. */
        assert_true(wait_log_lines(f, "default/down fail ConnectionRefused ", 4, 5 * USEC_PER_SEC));

        apply(f, "{\"apiVersion\":\"rpr/v1\",\"kind\":\"Server\",\"metadata\":{\"name\":\"down\"},"
                 "\"spec\":{\"transport\":\"local\",\"check\":{\"retries\":2,\"retryInterval\":\"1s\"}}}");
        _cleanup_json_ json_t *back = wait_status(f, "down", "phase", "Reachable", 10 * USEC_PER_SEC);
        assert_non_null(back);
        assert_int_equal(json_integer_value(json_object_get(back, "failures")), 0);
        assert_int_equal(json_integer_value(json_object_get(back, "observedGeneration")), 2);
        assert_true(wait_log_lines(f, "default/down ok Reachable ", 1, 2 * USEC_PER_SEC));
        usleep(1500 * 1000); /* well past retryInterval: no more checks, no second wake-up */
        assert_int_equal(reachable_calls(f), 1);
        assert_int_equal(log_lines_with(f, "default/down ok "), 1);
}

/* Over real ssh: accept-new takes the host key and records it, and from
 * then on the target pins it; strict without a pin refuses to connect. */
static void test_accept_new_records_host_key_over_real_sshd(void **state) {
        Fixture *f = *state;
        char pin[128];
        unsigned port = sshd_start(f, pin);
        _cleanup_free_ char *json = xasprintf(
                "{\"apiVersion\":\"rpr/v1\",\"kind\":\"Server\",\"metadata\":{\"name\":\"real\"},"
                "\"spec\":{\"host\":\"127.0.0.1\",\"port\":%u,\"identityFile\":\"%s\","
                "\"hostKeyPolicy\":\"accept-new\",\"check\":{\"retries\":0,\"retryInterval\":\"1s\"}}}",
                port, f->key);
        _cleanup_free_ char *strict = xasprintf(
                "{\"apiVersion\":\"rpr/v1\",\"kind\":\"Server\",\"metadata\":{\"name\":\"strict\"},"
                "\"spec\":{\"host\":\"127.0.0.1\",\"port\":%u,\"identityFile\":\"%s\","
                "\"check\":{\"retries\":0,\"retryInterval\":\"1s\"}}}",
                port, f->key);

        assert_int_equal(controller_start(f->controller), 0);
        apply(f, json);
        apply(f, strict);
        _cleanup_json_ json_t *st = wait_status(f, "real", "phase", "Reachable", 20 * USEC_PER_SEC);
        assert_non_null(st);
        assert_string_equal(str_at(st, "hostKey"), pin);
        assert_non_null(str_at(st, "lastLoginTime"));
        assert_true(json_integer_value(json_object_get(json_object_get(st, "metrics"), "uptimeSeconds")) > 0);

        ServerTarget *t = NULL;
        assert_int_equal(server_target_get(f->servers, "default", "real", &t, NULL, NULL), 0);
        assert_string_equal(server_target(t)->accepted_key, pin);
        server_target_free(t);

        _cleanup_json_ json_t *refused = wait_status(f, "strict", "phase", "Unreachable", 20 * USEC_PER_SEC);
        assert_non_null(refused);
        assert_string_equal(condition(refused, "reason"), "HostKeyUnknown");
        assert_null(str_at(refused, "hostKey"));
        assert_null(str_at(refused, "lastLoginTime"));
}

/* Sets a Server's status.hostKey as PUT .../status would. */
static void set_accepted_key(Fixture *f, const char *name, const char *key) {
        json_t *o = NULL;

        assert_int_equal(store_get_json(f->store, "Server", "default", name, &o), 0);
        json_object_set_new(o, "status", json_pack("{s:s}", "hostKey", key));
        StoreOp op = {.type = STORE_OP_STATUS, .object = o};
        assert_int_equal(store_commit(f->store, &op, 1, false, NULL), 0);
        store_ops_clear(&op, 1);
        json_decref(o);
}

/* Runs true on Server name as exec and Runs do: no check first. */
static int run_true(Fixture *f, const char *name, SshResult *res) {
        ServerTarget *t = NULL;
        SshCommand cmd = {.script = "true"};
        int r = server_target_get(f->servers, "default", name, &t, NULL, NULL);

        assert_int_equal(r, 0);
        r = ssh_run(f->ssh, server_target(t), &cmd, res);
        server_target_free(t);
        return r;
}

static void test_accept_new_pins_on_first_use_of_any_path_and_fails_closed(void **state) {
        Fixture *f = *state;
        char pin[128];
        unsigned port = sshd_start(f, pin);
        SshResult res;

        for (const char *const *n = (const char *const[]){"first", "garbled", "other", NULL}; *n; n++) {
                _cleanup_free_ char *json = xasprintf(
                        "{\"apiVersion\":\"rpr/v1\",\"kind\":\"Server\",\"metadata\":{\"name\":\"%s\"},"
                        "\"spec\":{\"host\":\"127.0.0.1\",\"port\":%u,\"identityFile\":\"%s\","
                        "\"hostKeyPolicy\":\"accept-new\"}}",
                        *n, port, f->key);
                apply(f, json);
        }

        /* A command before any check pins the key it met. */
        assert_int_equal(run_true(f, "first", &res), 0);
        assert_true(res.host_key_new);
        _cleanup_json_ json_t *st = status_of(f, "first");
        assert_string_equal(str_at(st, "hostKey"), pin);

        /* A recorded key that cannot be read accepts nothing. */
        set_accepted_key(f, "garbled", "ssh-ed25519 not-a-fingerprint");
        assert_true(run_true(f, "garbled", &res) < 0);
        assert_int_equal(res.failure, SSH_FAIL_HOST_KEY_MISMATCH);
        assert_non_null(strstr(res.message, "cannot be parsed"));

        /* Another key recorded first: this one is refused. */
        set_accepted_key(f, "other", "ssh-ed25519 SHA256:BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB");
        assert_true(run_true(f, "other", &res) < 0);
        assert_int_equal(res.failure, SSH_FAIL_HOST_KEY_MISMATCH);
        _cleanup_json_ json_t *other = status_of(f, "other");
        assert_string_equal(str_at(other, "hostKey"),
                            "ssh-ed25519 SHA256:BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB");
}

static void test_missing_key_token_is_missing_key_without_attempt(void **state) {
        Fixture *f = *state;

        assert_int_equal(controller_start(f->controller), 0);
        apply(f, "{\"apiVersion\":\"rpr/v1\",\"kind\":\"Server\",\"metadata\":{\"name\":\"nokey\"},"
                 "\"spec\":{\"host\":\"127.0.0.1\",\"keyRef\":\"deploy-key\"}}");
        _cleanup_json_ json_t *st = wait_status(f, "nokey", "phase", "Unreachable", 10 * USEC_PER_SEC);
        assert_non_null(st);
        assert_string_equal(condition(st, "reason"), "MissingKey");
        assert_non_null(strstr(condition(st, "message"), "deploy-key"));
        assert_int_equal(json_integer_value(json_object_get(st, "failures")), 1);
        assert_null(str_at(st, "lastLoginTime"));
        assert_int_equal(log_lines_with(f, "default/nokey fail MissingKey "), 1);
}

static void test_spec_change_causes_a_recheck(void **state) {
        Fixture *f = *state;

        assert_int_equal(controller_start(f->controller), 0);
        apply(f, LOCAL_SERVER("web-2", ""));
        json_decref(wait_status(f, "web-2", "phase", "Reachable", 10 * USEC_PER_SEC));
        assert_true(wait_log_lines(f, "default/web-2 ok ", 1, 2 * USEC_PER_SEC));

        /* Labels are not spec: no new generation, no check. */
        apply(f, "{\"apiVersion\":\"rpr/v1\",\"kind\":\"Server\",\"metadata\":{\"name\":\"web-2\","
                 "\"labels\":{\"role\":\"web\"}},\"spec\":{\"transport\":\"local\"}}");
        usleep(300 * 1000);
        assert_int_equal(log_lines_with(f, "default/web-2 ok "), 1);

        apply(f, LOCAL_SERVER("web-2", ", \"check\": {\"interval\": \"2h\"}"));
        assert_true(wait_log_lines(f, "default/web-2 ok ", 2, 10 * USEC_PER_SEC));
        _cleanup_json_ json_t *st = status_of(f, "web-2");
        assert_int_equal(json_integer_value(json_object_get(st, "observedGeneration")), 2);
        assert_int_equal(reachable_calls(f), 1); /* Reachable all along */

        /* Deleted: nothing more happens. */
        delete(f, "Server", "web-2");
        usleep(200 * 1000);
        assert_int_equal(log_lines_with(f, "default/web-2 "), 2);
}

static void test_check_now(void **state) {
        Fixture *f = *state;
        _cleanup_free_ char *uptime = NULL, *none = NULL;
        SshResult res;

        /* Without the controller running: only the check itself. */
        apply(f, LOCAL_SERVER("now", ""));
        assert_int_equal(server_check_now(f->servers, "default", "now", &res, &uptime), 0);
        assert_int_equal(res.failure, SSH_OK);
        assert_int_equal(res.exit_code, 0);
        assert_non_null(uptime);
        assert_non_null(strstr(uptime, "load average"));
        assert_null(strstr(uptime, "@rpr:"));
        assert_int_equal(log_lines_with(f, "default/now ok Reachable "), 1);
        _cleanup_json_ json_t *st = status_of(f, "now");
        assert_string_equal(str_at(st, "phase"), "Reachable");
        assert_int_equal(reachable_calls(f), 1);

        assert_int_equal(server_check_now(f->servers, "default", "absent", &res, &none), -ENOENT);
        assert_null(none);
        apply(f, LOCAL_SERVER("off", ", \"active\": false"));
        assert_int_equal(server_check_now(f->servers, "default", "off", &res, &none), -EPERM);
        assert_non_null(strstr(res.message, "inactive"));
        assert_int_equal(log_lines_with(f, "default/off "), 0);
}

/* ---- targets --------------------------------------------------------------- */

static void test_target_from_token_and_pinned_accepted_key(void **state) {
        Fixture *f = *state;
        _cleanup_free_ char *error = NULL;
        ServerTarget *t = NULL;

        apply(f, "{\"apiVersion\":\"rpr/v1\",\"kind\":\"Token\",\"metadata\":{\"name\":\"k\"},"
                 "\"spec\":{\"type\":\"ssh-key\",\"value\":\"SECRET-KEY-TEXT\"}}");
        apply(f, "{\"apiVersion\":\"rpr/v1\",\"kind\":\"Server\",\"metadata\":{\"name\":\"s\"},"
                 "\"spec\":{\"host\":\"h.example\",\"port\":2222,\"user\":\"deploy\",\"keyRef\":\"k\","
                 "\"hostKeyPolicy\":\"accept-new\"}}");
        assert_int_equal(server_target_get(f->servers, "default", "s", &t, NULL, &error), 0);
        const SshTarget *st = server_target(t);
        assert_string_equal(st->id, "default/s");
        assert_int_equal(st->transport, SSH_TRANSPORT_SSH);
        assert_string_equal(st->host, "h.example");
        assert_int_equal(st->port, 2222);
        assert_string_equal(st->user, "deploy");
        assert_int_equal(st->key_len, 15);
        assert_memory_equal(st->key_data, "SECRET-KEY-TEXT", 15);
        assert_true(st->accept_new);
        assert_null(st->host_key);
        server_target_free(t);

        /* A key accepted earlier is pinned. */
        const char *seen = "ssh-ed25519 SHA256:BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB";
        json_t *o = NULL;
        assert_int_equal(store_get_json(f->store, "Server", "default", "s", &o), 0);
        json_object_set_new(o, "status", json_pack("{s:s}", "hostKey", seen));
        StoreOp op = {.type = STORE_OP_STATUS, .object = o};
        assert_int_equal(store_commit(f->store, &op, 1, false, NULL), 0);
        store_ops_clear(&op, 1);
        json_decref(o);
        assert_int_equal(server_target_get(f->servers, "default", "s", &t, NULL, &error), 0);
        assert_null(server_target(t)->host_key);
        assert_string_equal(server_target(t)->accepted_key, seen);
        assert_non_null(server_target(t)->pin_host_key);
        server_target_free(t);

        /* From the environment. */
        setenv("RPR_TEST_KEY", "ENV-KEY", 1);
        apply(f, "{\"apiVersion\":\"rpr/v1\",\"kind\":\"Token\",\"metadata\":{\"name\":\"k\"},"
                 "\"spec\":{\"type\":\"ssh-key\",\"valueFrom\":{\"env\":\"RPR_TEST_KEY\"}}}");
        assert_int_equal(server_target_get(f->servers, "default", "s", &t, NULL, &error), 0);
        assert_int_equal(server_target(t)->key_len, 7);
        assert_memory_equal(server_target(t)->key_data, "ENV-KEY", 7);
        server_target_free(t);
}

static void test_target_errors_name_the_cause_not_the_secret(void **state) {
        Fixture *f = *state;
        ServerTarget *t = NULL;
        char *error = NULL;

        assert_int_equal(server_target_get(f->servers, "default", "absent", &t, NULL, &error), -ENOENT);

        apply(f, "{\"apiVersion\":\"rpr/v1\",\"kind\":\"Server\",\"metadata\":{\"name\":\"s\"},"
                 "\"spec\":{\"host\":\"h\",\"keyRef\":\"gone\"}}");
        assert_int_equal(server_target_get(f->servers, "default", "s", &t, NULL, &error), -EINVAL);
        assert_non_null(strstr(error, "\"gone\""));
        free(error);
        error = NULL;

        apply(f, "{\"apiVersion\":\"rpr/v1\",\"kind\":\"Token\",\"metadata\":{\"name\":\"gone\"},"
                 "\"spec\":{\"type\":\"github\",\"value\":\"ghp_TOPSECRET\"}}");
        assert_int_equal(server_target_get(f->servers, "default", "s", &t, NULL, &error), -EINVAL);
        assert_non_null(strstr(error, "ssh-key"));
        assert_null(strstr(error, "TOPSECRET"));
        free(error);
        error = NULL;

        apply(f, "{\"apiVersion\":\"rpr/v1\",\"kind\":\"Token\",\"metadata\":{\"name\":\"gone\"},"
                 "\"spec\":{\"type\":\"ssh-key\",\"valueFrom\":{\"file\":\"/nonexistent/key\"}}}");
        const char *why = NULL;
        assert_int_equal(server_target_get(f->servers, "default", "s", &t, &why, &error), -EINVAL);
        assert_non_null(strstr(error, "/nonexistent/key"));
        assert_string_equal(why, "KeyUnusable");
        free(error);
        error = NULL;

        apply(f, LOCAL_SERVER("off", ", \"active\": false"));
        const char *reason = NULL;
        assert_int_equal(server_target_get(f->servers, "default", "off", &t, &reason, &error), -EINVAL);
        assert_non_null(strstr(error, "inactive"));
        assert_string_equal(reason, "Inactive");
        free(error);
        assert_null(t);
}

/* ---- transport agent: commands through the agent ---------------------------------------- */

typedef struct AgentCallTest {
        const SshTarget *target;
        Buf out, err;
        SshResult res;
        int r;
} AgentCallTest;

static int keep(void *userdata, SshStream stream, const char *data, size_t n) {
        AgentCallTest *t = userdata;

        return buf_append(stream == SSH_STDERR ? &t->err : &t->out, data, n);
}

static void *agent_call(void *userdata) {
        AgentCallTest *t = userdata;
        const char *env[] = {"GREETING=hi there", NULL};
        SshCommand cmd = {.script = "echo \"$GREETING\"",
                          .env = env,
                          .output = keep,
                          .userdata = t,
                          .input = "secret\n",
                          .input_len = 7,
                          .timeout_usec = 30 * USEC_PER_SEC};

        t->r = ssh_run(NULL, t->target, &cmd, &t->res);
        return NULL;
}

/* The agent's side: polls until the job is offered. */
static json_t *offer_wait(Agents *agents) {
        for (int i = 0; i < 500; i++) {
                json_t *hb = json_pack("{s:s, s:i, s:i, s:[]}", "version", "0.2.0", "streams", 2, "wait", 0,
                                       "jobs");
                json_t *ans = NULL;
                uint64_t wait;
                (void) agent_poll(agents, "default", "pi", hb, &ans, &wait);
                json_decref(hb);
                json_t *offer = json_incref(json_array_get(json_object_get(ans, "offers"), 0));
                json_decref(ans);
                if (offer)
                        return offer;
                usleep(10000);
        }
        return NULL;
}

static void test_an_agent_servers_commands_go_to_its_agent(void **state) {
        Fixture *f = *state;
        ServerTarget *t = NULL;
        SshResult res;

        apply(f, "{\"apiVersion\":\"rpr/v1\",\"kind\":\"Server\",\"metadata\":{\"name\":\"pi\"},"
                 "\"spec\":{\"transport\":\"agent\"}}");
        /* A controller without agents: a clear failure, nothing over ssh. */
        assert_int_equal(server_target_get(f->servers, "default", "pi", &t, NULL, NULL), 0);
        assert_true(server_target_is_agent(t));
        SshCommand cmd = {.script = "true"};
        assert_true(ssh_run(f->ssh, server_target(t), &cmd, &res) < 0);
        assert_non_null(strstr(res.message, "serves no agents"));
        server_target_free(t);

        Agents *agents = agents_new();
        Controller *c = NULL;
        ServerController *servers = NULL;
        assert_int_equal(controller_new(f->store, 1, &c), 0);
        ServerOptions o = {f->store, c, f->ssh, NULL, agents};
        assert_int_equal(server_controller_new(&o, &servers), 0);
        assert_int_equal(server_target_get(servers, "default", "pi", &t, NULL, NULL), 0);
        AgentCallTest call = {.target = server_target(t)};
        pthread_t th;
        assert_int_equal(pthread_create(&th, NULL, agent_call, &call), 0);

        json_t *offer = offer_wait(agents);
        assert_non_null(offer);
        const char *id = json_str_at(offer, "id");
        assert_non_null(strstr(json_str_at(offer, "command"), "export GREETING='hi there'"));
        assert_string_equal(json_str_at(offer, "input"), "c2VjcmV0Cg==");
        assert_int_equal(json_int_at(offer, "streams", 0), 2);
        uint64_t lease, off, offsets[AGENT_STREAMS];
        assert_int_equal(agent_job_accept(agents, "default", "pi", id, &lease), 0);
        assert_int_equal(
                agent_job_output(agents, "default", "pi", id, AGENT_STDOUT, 0, "hi there\n", 9, &off), 0);
        assert_int_equal(agent_job_output(agents, "default", "pi", id, AGENT_STDERR, 0, "warn\n", 5, &off),
                         0);
        char out_hex[65], err_hex[65];
        sha256_hex("hi there\n", 9, out_hex);
        sha256_hex("warn\n", 5, err_hex);
        AgentFinish fin = {.exit_code = 3, .signal = "", .bytes = {9, 5}, .sha256 = {out_hex, err_hex}};
        assert_int_equal(agent_job_finish(agents, "default", "pi", id, &fin, offsets), 0);
        json_decref(offer);
        pthread_join(th, NULL);

        assert_int_equal(call.r, 0);
        assert_int_equal(call.res.failure, SSH_OK);
        assert_int_equal(call.res.exit_code, 3);
        assert_string_equal(call.out.data, "hi there\n");
        assert_string_equal(call.err.data, "warn\n");
        buf_free(&call.out);
        buf_free(&call.err);

        /* An agent seen, then silent for three windows (of 1 s): a command
         * queued while it still counted as online fails as it goes
         * offline, not after its own timeout (30 s); one for an agent
         * already offline fails at once, as for a host that is down. */
        json_t *hb =
                json_pack("{s:s, s:i, s:i, s:[]}", "version", "0.2.0", "pollSeconds", 1, "wait", 0, "jobs");
        json_t *ans = NULL;
        uint64_t wait;
        (void) agent_poll(agents, "default", "pi", hb, &ans, &wait);
        json_decref(hb);
        json_decref(ans);
        AgentCallTest queued = {.target = server_target(t)};
        uint64_t t0 = now_mono_usec();
        assert_int_equal(pthread_create(&th, NULL, agent_call, &queued), 0);
        sleep(6);
        agents_tick(agents);
        pthread_join(th, NULL);
        assert_true(queued.r < 0);
        assert_int_equal(queued.res.failure, SSH_FAIL_TIMEOUT);
        assert_non_null(strstr(queued.res.message, "stopped polling before it took the command"));
        assert_true(now_mono_usec() - t0 < 20 * USEC_PER_SEC);
        buf_free(&queued.out);
        buf_free(&queued.err);

        t0 = now_mono_usec();
        SshCommand quick = {.script = "true"};
        assert_true(ssh_run(NULL, server_target(t), &quick, &res) < 0);
        assert_int_equal(res.failure, SSH_FAIL_TIMEOUT);
        assert_non_null(strstr(res.message, "does not poll"));
        assert_true(now_mono_usec() - t0 < 2 * USEC_PER_SEC);
        server_target_free(t);
        controller_free(c);
        server_controller_free(servers);
        agents_free(agents);
}

/* ---- the check command's output ----------------------------------------------- */

static void test_check_output_is_parsed(void **state) {
        (void) state;
        _cleanup_free_ char *uptime = NULL;
        const char *out = "@rpr:uptime\n 10:00:00 up 3 days,  2:01,  1 user,  load average: 0.45, 0.30, 0.20\n"
                          "@rpr:loadavg\n0.45 0.30 0.20 1/123 4567\n"
                          "@rpr:meminfo\nMemTotal:        8000000 kB\nMemAvailable:    6000000 kB\n"
                          "@rpr:df\n/dev/sda1 100000 42000 58000 42% /\n"
                          "@rpr:procuptime\n266460.55 500000.00\n@rpr:end\n";
        _cleanup_json_ json_t *m = server_check_parse(out, &uptime);

        assert_non_null(m);
        assert_string_equal(uptime, " 10:00:00 up 3 days,  2:01,  1 user,  load average: 0.45, 0.30, 0.20\n");
        assert_true(json_number_value(json_object_get(m, "load1")) > 0.449 &&
                    json_number_value(json_object_get(m, "load1")) < 0.451);
        assert_true(json_number_value(json_object_get(m, "memUsedPercent")) > 24.99 &&
                    json_number_value(json_object_get(m, "memUsedPercent")) < 25.01);
        assert_true(json_number_value(json_object_get(m, "diskUsedPercent")) > 41.99 &&
                    json_number_value(json_object_get(m, "diskUsedPercent")) < 42.01);
        assert_int_equal(json_integer_value(json_object_get(m, "uptimeSeconds")), 266460);

        /* Missing or garbled sections are left out, not guessed. */
        _cleanup_json_ json_t *partial = server_check_parse("@rpr:loadavg\nnonsense\n@rpr:procuptime\n12.5 1\n",
                                                            NULL);
        assert_non_null(partial);
        assert_null(json_object_get(partial, "load1"));
        assert_null(json_object_get(partial, "memUsedPercent"));
        assert_int_equal(json_integer_value(json_object_get(partial, "uptimeSeconds")), 12);
        assert_null(server_check_parse("", NULL));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_local_server_becomes_reachable_with_metrics, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_inactive_server_is_not_checked, setup, teardown),
                cmocka_unit_test_setup_teardown(test_refused_connection_retries_then_unreachable_then_back,
                                                setup, teardown),
                cmocka_unit_test_setup_teardown(test_accept_new_records_host_key_over_real_sshd, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_missing_key_token_is_missing_key_without_attempt, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_spec_change_causes_a_recheck, setup, teardown),
                cmocka_unit_test_setup_teardown(test_check_now, setup, teardown),
                cmocka_unit_test_setup_teardown(test_target_from_token_and_pinned_accepted_key, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(
                        test_accept_new_pins_on_first_use_of_any_path_and_fails_closed, setup, teardown),
                cmocka_unit_test_setup_teardown(test_target_errors_name_the_cause_not_the_secret, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_an_agent_servers_commands_go_to_its_agent, setup,
                                                teardown),
                cmocka_unit_test(test_check_output_is_parsed),
        };
        return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
