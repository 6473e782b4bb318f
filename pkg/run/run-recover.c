/* run-recover: a Run that an rprd left Running when it died.
 *
 * Its command may still be running on its Server: commands run in a
 * session of their own (locally) or under sshd (remotely), and neither
 * dies with rprd. Before the Run may end, and so before its owner may
 * retry it, whatever is left of the command is stopped through its pid
 * file (ssh_reap: TERM to the group, a grace, KILL). The Run then ends
 * Interrupted, and status.leftover says what was found: None (no record:
 * it never started, or ended by itself and cleaned up), Ended (a record,
 * but the process group was gone), Terminated or Killed. While
 * the Server cannot be reached the Run stays Running, reason
 * StoppingLeftover, and tries again; after spec.waitTimeout it gives up
 * (leftover Unknown) and says so. */
#include <stdio.h>
#include <string.h>

#include "run/run-private.h"
#include "server/server.h"
#include "store/store.h"

#define REAP_GRACE_USEC (5 * USEC_PER_SEC)
#define REAP_RETRY_USEC (15 * USEC_PER_SEC)

/* For a lost connection: what was found, by its leftover name. */
static const char *leftover_what(const char *leftover) {
        if (STREQ(leftover, "Terminated"))
                return "the command was still running and was stopped (SIGTERM to its process group)";
        if (STREQ(leftover, "Killed"))
                return "the command was still running, ignored SIGTERM and was killed";
        if (STREQ(leftover, "Unknown"))
                return "the server could not be reached to stop what is left of it; it may still be running";
        return "nothing of it was left running: its outcome is unknown";
}

static const char *leftover_message(SshReap found) {
        switch (found) {
        case SSH_REAP_NONE:
        case SSH_REAP_ENDED:
                return "rprd stopped while the command ran; nothing of it was left running (it had ended by "
                       "itself, or never started): its outcome is unknown";
        case SSH_REAP_TERMINATED:
                return "rprd stopped while the command ran; the command was still running and was stopped "
                       "(SIGTERM to its process group)";
        default:
                return "rprd stopped while the command ran; the command was still running, ignored SIGTERM and "
                       "was killed (SIGKILL to its process group)";
        }
}

/* Ends the Run: Interrupted after a restart, Failed (Disconnected) after a
 * connection lost while the command ran (status.connectionLost). */
static int interrupted(RunController *rc, const RunSpec *sp, const char *leftover, const char *message) {
        _cleanup_json_ json_t *obj = NULL;
        bool lost = store_get_json(rc->store, "Run", sp->ns, sp->name, &obj) >= 0 &&
                    json_object_get(json_object_get(obj, "status"), "connectionLost");
        _cleanup_free_ char *why = lost ? xasprintf("the connection to server %s was lost while the command ran; %s",
                                                    sp->server, leftover_what(leftover))
                                        : NULL;
        RunUpdate u = {.expect_phase = "Running", .phase = lost ? "Failed" : "Interrupted",
                       .reason = lost ? "Disconnected" : "RprdRestarted", .message = why ?: message,
                       .set = json_object()};

        json_object_set_new(u.set, "leftover", json_string(leftover));
        json_object_set_new(u.set, "recoveringSince", json_null());
        return run_update_noted(rc, sp->ns, sp->name, &u);
}

/* The Server could not be reached: stay Running and try again, up to
 * spec.waitTimeout. */
static int unreachable(RunController *rc, const json_t *obj, const RunSpec *sp, const char *why,
                       uint64_t *ret_requeue) {
        const json_t *st = json_object_get(obj, "status");
        uint64_t now = now_usec(), since = json_time_at(st, "recoveringSince") ?: now;
        char wait[32];

        if (now - since >= sp->wait_timeout_usec) {
                _cleanup_free_ char *msg = xasprintf(
                        "rprd stopped while the command ran, and server %s could not be reached for %s "
                        "(spec.waitTimeout) to stop what is left of it: %s; it may still be running there",
                        sp->server, duration_format(sp->wait_timeout_usec, wait, sizeof wait), why);
                return interrupted(rc, sp, "Unknown", msg);
        }
        _cleanup_free_ char *msg = xasprintf(
                "rprd stopped while the command ran; waiting to reach server %s to stop what is left of it "
                "before anything else runs: %s",
                sp->server, why);
        RunUpdate u = {.expect_phase = "Running", .phase = "Running", .reason = "StoppingLeftover", .message = msg,
                       .set = json_object()};
        json_set_time(u.set, "recoveringSince", since);
        *ret_requeue = REAP_RETRY_USEC;
        return run_update_noted(rc, sp->ns, sp->name, &u);
}

/* Stops what is left of the Run's command: 0 with *ret_found, -ENODEV
 * (message in *ret_why) when its Server cannot be used at all, another
 * negative errno (message in res) when it cannot be reached now. */
static int reap(RunController *rc, const RunSpec *sp, SshReap *ret_found, SshResult *res, char **ret_why) {
        _cleanup_free_ char *id = run_track_id(sp->ns, sp->name);
        ServerTarget *t = NULL;
        int r;

        r = server_target_get(rc->servers, sp->ns, sp->server, &t, NULL, ret_why);
        if (r < 0)
                return -ENODEV;
        if (server_target_is_agent(t)) {
                /* Its agent drops the job rprd no longer knows, at its next
                 * poll: nothing to look for here. */
                *ret_why = xstrdup("its agent stops the command itself");
                server_target_free(t);
                return -ENODEV;
        }
        SshTrack track = {.id = id, .local_dir = rc->proc_dir};
        r = ssh_reap(rc->ssh, server_target(t), &track, REAP_GRACE_USEC, ret_found, res);
        server_target_free(t);
        if (r >= 0)
                log_info("run %s/%s: left Running by the last rprd; its command: %s", sp->ns, sp->name,
                         ssh_reap_name(*ret_found));
        return r;
}

int run_reap_leftover(RunController *rc, const json_t *obj, const char **ret_leftover) {
        _cleanup_free_ char *why = NULL;
        SshResult res = {0};
        SshReap found = SSH_REAP_NONE;
        RunSpec sp;

        run_spec_read(obj, &sp);
        int r = reap(rc, &sp, &found, &res, &why);
        if (r == -ENODEV) {
                *ret_leftover = "Unknown";
                return 0;
        }
        if (r < 0)
                return r;
        *ret_leftover = ssh_reap_name(found);
        return 0;
}

int run_recover(RunController *rc, const json_t *obj, uint64_t *ret_requeue_after) {
        _cleanup_free_ char *why = NULL;
        SshResult res = {0};
        SshReap found = SSH_REAP_NONE;
        RunSpec sp;
        int r;

        run_spec_read(obj, &sp);
        /* An agent's job may still be held: taken back, not stopped. */
        if (run_agent_adopt(rc, obj) != -ENOENT)
                return 0;
        r = reap(rc, &sp, &found, &res, &why);
        if (r == -ENODEV) {
                _cleanup_free_ char *msg = xasprintf(
                        "rprd stopped while the command ran, and server %s cannot be used to stop what is left "
                        "of it (%s); it may still be running there",
                        sp.server ?: "(none)", why ?: "unusable");
                return interrupted(rc, &sp, "Unknown", msg);
        }
        if (r < 0)
                return unreachable(rc, obj, &sp, res.message, ret_requeue_after);
        return interrupted(rc, &sp, ssh_reap_name(found), leftover_message(found));
}
