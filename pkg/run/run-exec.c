/* run-exec: carrying out one claimed Run on a thread of its own.
 *
 * The command gets the RPR_ variables (after the spec's env, so that they
 * win), runs through the ssh pool (pooled sessions, bounded concurrency),
 * and its output goes to the Run's file as it arrives. How it ended decides
 * the phase: exit 0 Succeeded; another code, a signal or the timeout
 * Failed; canceled Canceled (Interrupted when rprd is shutting down). A
 * Server that cannot be reached at all sends the Run back to Pending, to
 * wait for it like any Run whose Server is down. */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "controller/controller.h"
#include "run/run-private.h"
#include "server/server.h"

/* A Run whose Server could not be reached tries again after this long at
 * the earliest (sooner when the Server check sees it back). */
#define RECONNECT_USEC (15 * USEC_PER_SEC)
#define EXEC_THREAD_STACK (512u * 1024)

typedef struct Exec {
        RunController *rc;
        Active *a;
        json_t *obj;
        RunSpec sp;
        RunLog *log;
        bool recover; /* the connection was lost: left to run-recover.c */
} Exec;

/* ---- the command ------------------------------------------------------------------ */

json_t *run_env(const RunSpec *sp) {
        json_t *env = json_is_object(sp->env) ? json_deep_copy(sp->env) : json_object();
        char attempt[24];
        const struct {
                const char *key, *value;
        } vars[] = {
                {"RPR_REPO", sp->repo},       {"RPR_BRANCH", sp->branch},
                {"RPR_COMMIT", sp->commit},   {"RPR_COMMIT_TIME", sp->commit_time},
                {"RPR_BINDING", sp->binding}, {"RPR_SERVER", sp->server},
                {"RPR_RUN", sp->name},        {"RPR_ATTEMPT", attempt},
        };

        snprintf(attempt, sizeof attempt, "%" JSON_INTEGER_FORMAT, sp->attempt);
        for (size_t i = 0; i < ELEMENTSOF(vars); i++)
                json_object_set_new(env, vars[i].key, json_string(vars[i].value ?: ""));
        return env;
}

static int on_output(void *userdata, SshStream stream, const char *data, size_t n) {
        Exec *x = userdata;

        run_log_write(x->log, stream == SSH_STDERR ? RUN_LOG_ERR : RUN_LOG_OUT, data, n, now_usec());
        return 0;
}

/* ---- how it ended ---------------------------------------------------------------------- */

/* Failures that mean the Server was not there at all: nothing ran. */
static bool not_reached(const SshResult *res) {
        if (res->logged_in)
                return false;
        switch (res->failure) {
        case SSH_FAIL_NAME_RESOLUTION:
        case SSH_FAIL_CONNECTION_REFUSED:
        case SSH_FAIL_TIMEOUT:
        case SSH_FAIL_NETWORK:
        case SSH_FAIL_DISCONNECTED:
                return true;
        default:
                return false;
        }
}

/* The Run's next status from the result; message (caller frees) for a person. */
static void outcome(Exec *x, int r, const SshResult *res, RunUpdate *u, char **ret_message) {
        char timeout[32];

        if (ssh_cancel_fired(x->a->cancel)) {
                bool interrupted = x->a->interrupted;
                u->phase = interrupted ? "Interrupted" : "Canceled";
                u->reason = interrupted ? "RprdStopped" : x->a->cancel_reason ?: "Canceled";
                *ret_message = xstrdup(interrupted ? "rprd was stopped while the command ran; it was canceled"
                                                   : x->a->cancel_message ?: "canceled; the command was stopped");
        } else if (r >= 0 && res->signal[0]) {
                u->phase = "Failed", u->reason = "Signal";
                *ret_message = xasprintf("the command was killed by SIG%s", res->signal);
        } else if (r >= 0 && res->exit_code == 0) {
                u->phase = "Succeeded", u->reason = "ExitCode";
                *ret_message = xstrdup("the command exited with 0");
        } else if (r >= 0) {
                u->phase = "Failed", u->reason = "ExitCode";
                *ret_message = xasprintf("the command exited with %d", res->exit_code);
        } else if (res->failure == SSH_FAIL_TIMEOUT && res->logged_in) {
                u->phase = "Failed", u->reason = "Timeout";
                *ret_message = xasprintf("the command ran longer than %s (spec.timeout) and was killed",
                                         duration_format(x->sp.timeout_usec, timeout, sizeof timeout));
        } else if (not_reached(res)) {
                u->phase = "Pending", u->reason = "WaitingForServer";
                *ret_message = xasprintf("server %s could not be reached: %s", x->sp.server, res->message);
        } else if (res->failure == SSH_FAIL_DISCONNECTED) {
                /* The command may run on without its channel: it stays
                 * Running until what is left of it is stopped (run-recover.c),
                 * so that no retry starts beside it. */
                u->phase = "Running", u->reason = "StoppingLeftover";
                *ret_message = xasprintf("%s; what is left of it is stopped before anything else runs",
                                         res->message);
                json_set_time(u->set, "connectionLost", now_usec());
                x->recover = true;
        } else {
                u->phase = "Failed", u->reason = ssh_failure_reason(res->failure);
                *ret_message = xstrdup(res->message[0] ? res->message : "the command could not run");
        }
}

static void finish(Exec *x, int r, const SshResult *res) {
        _cleanup_free_ char *message = NULL;
        RunUpdate u = {.expect_phase = "Running", .set = json_object()};
        uint64_t now = now_usec();
        char t[RFC3339_MAX];

        outcome(x, r, res, &u, &message);
        u.message = message;
        json_object_set_new(u.set, "durationSeconds", json_real((double) res->duration_usec / USEC_PER_SEC));
        if (r >= 0 && !res->signal[0])
                json_object_set_new(u.set, "exitCode", json_integer(res->exit_code));
        if (r >= 0 && res->signal[0])
                json_object_set_new(u.set, "signal", json_string(res->signal));
        if (STREQ(u.phase, "Pending")) {
                /* Back to waiting: from now, and not again before RECONNECT_USEC. */
                const json_t *st = json_object_get(x->obj, "status");
                json_object_set_new(u.set, "waitingSince",
                                    json_string(json_str_at(st, "waitingSince") ?: time_format_rfc3339(now, t)));
                json_object_set_new(u.set, "nextAttemptTime", json_string(time_format_rfc3339(now + RECONNECT_USEC, t)));
                json_object_set_new(u.set, "startTime", json_null());
                server_check_soon(x->rc->servers, x->sp.ns, x->sp.server);
                controller_enqueue(x->rc->controller, "Run", x->sp.ns, x->sp.name, RECONNECT_USEC);
        }
        run_log_note(x->log, "%s: %s: %s (%.3f s)", u.phase, u.reason, message,
                     (double) res->duration_usec / USEC_PER_SEC);
        run_log_close(TAKE_PTR(x->log));
        int k = run_update_of(x->rc, x->obj, &u);
        if (k < 0)
                log_error("run %s/%s: cannot write its outcome (%s): %s", x->sp.ns, x->sp.name, u.phase, strerror(-k));
}

/* ---- the thread --------------------------------------------------------------------------- */

static void run_command(Exec *x) {
        _cleanup_free_ char *error = NULL;
        const char *reason = NULL;
        ServerTarget *t = NULL;
        SshResult res = {0};
        int r;

        r = server_target_get(x->rc->servers, x->sp.ns, x->sp.server, &t, &reason, &error);
        if (r < 0) {
                res.failure = SSH_FAIL_EXEC;
                snprintf(res.message, sizeof res.message, "%s", error ?: "the server cannot be used");
                run_log_note(x->log, "cannot use server %s: %s: %s", x->sp.server, reason ?: "Error", res.message);
                RunUpdate u = {.expect_phase = "Running", .phase = "Failed", .reason = reason ?: "ServerUnusable",
                               .message = res.message};
                run_log_close(TAKE_PTR(x->log));
                (void) run_update(x->rc, x->sp.ns, x->sp.name, &u);
                return;
        }
        SshEnv env = {0};
        _cleanup_json_ json_t *vars = run_env(&x->sp);
        ssh_env_add_all(&env, vars);
        _cleanup_free_ char *id = run_track_id(x->sp.ns, x->sp.name);
        SshTrack track = {.id = id, .local_dir = x->rc->proc_dir};
        SshCommand cmd = {.track = &track,
                          .script = x->sp.command,
                          .env = (const char *const *) env.v,
                          .workdir = x->sp.workdir,
                          .timeout_usec = x->sp.timeout_usec,
                          .output = on_output,
                          .userdata = x,
                          .cancel = x->a->cancel};
        r = ssh_run(x->rc->ssh, server_target(t), &cmd, &res);
        server_target_free(t);
        ssh_env_clear(&env);
        finish(x, r, &res);
}

static void *exec_thread(void *arg) {
        Exec *x = arg;
        _cleanup_free_ char *path = run_log_path(x->rc->dir, x->sp.ns, x->sp.name);
        int r = run_output_open(x->rc->dir, x->sp.ns, x->sp.name, &x->log);

        if (r < 0) {
                _cleanup_free_ char *msg = xasprintf("cannot open the output file %s: %s", path, strerror(-r));
                RunUpdate u = {.expect_phase = "Running", .phase = "Failed", .reason = "OutputUnwritable", .message = msg};
                (void) run_update(x->rc, x->sp.ns, x->sp.name, &u);
        } else {
                run_log_note(x->log, "run %s (attempt %" JSON_INTEGER_FORMAT ") on server %s: %s %.12s (%s)", x->sp.name,
                             x->sp.attempt, x->sp.server, x->sp.repo ?: "commit", x->sp.commit ?: "-",
                             x->sp.triggered_by ?: "manual");
                run_command(x);
        }
        run_log_close(x->log);
        run_active_remove(x->rc, x->a);
        if (x->recover)
                controller_enqueue(x->rc->controller, "Run", x->sp.ns, x->sp.name, 0);
        json_decref(x->obj);
        free(x);
        return NULL;
}

int run_exec_start(RunController *rc, Active *a, json_t *obj) {
        pthread_attr_t attr;
        pthread_t thread;
        RunSpec sp;
        int r;

        /* The transport switch: an agent's Run holds no thread. */
        run_spec_read(obj, &sp);
        if (run_uses_agent(rc, &sp))
                return run_agent_start(rc, a, obj);

        Exec *x = xcalloc(1, sizeof *x);

        x->rc = rc;
        x->a = a;
        x->obj = json_incref(obj);
        run_spec_read(x->obj, &x->sp);
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        pthread_attr_setstacksize(&attr, EXEC_THREAD_STACK);
        r = -pthread_create(&thread, &attr, exec_thread, x);
        pthread_attr_destroy(&attr);
        if (r < 0) {
                RunUpdate u = {.expect_phase = "Running", .phase = "Pending", .reason = "WaitingForServer",
                               .message = "rprd could not start a thread for it; it will try again"};
                (void) run_update(rc, x->sp.ns, x->sp.name, &u);
                controller_enqueue(rc->controller, "Run", x->sp.ns, x->sp.name, RECONNECT_USEC);
                json_decref(x->obj);
                free(x);
                run_active_remove(rc, a);
        }
        return r;
}
