/* server-private.h: what the files of pkg/server share: the controller's
 * state, a Server's spec as the checks need it, and the check itself. */
#pragma once

#include <pthread.h>

#include "server/server.h"

typedef struct ReachableCallback {
        ServerReachableFn fn;
        void *userdata;
} ReachableCallback;

struct ServerController {
        Store *store;
        Controller *controller;
        SshPool *ssh;
        LogFile *connectivity;
        Agents *agents;

        /* Serializes status writes (read, merge, commit) and guards below. */
        pthread_mutex_t lock;
        ReachableCallback *callbacks;
        size_t n_callbacks;
        /* "ns/name" -> monotonic time of the last attempt, which is finer
         * than status.lastCheckTime's seconds. */
        Hashmap *last_attempt; /* id -> the last check's now_mono_usec(), as a pointer */
        json_t *asked; /* ids whose check was asked for (server_check_soon) */
};

/* What a Server's spec says about checking it, with defaults filled in. */
typedef struct ServerSpec {
        bool active;
        uint64_t interval_usec;
        uint64_t retry_interval_usec;
        unsigned retries;
} ServerSpec;

void server_spec_read(const json_t *obj, ServerSpec *ret);

/* Builds a target from a stored Server (obj borrowed; the target keeps a
 * reference). When it cannot be used, returns -EINVAL and sets *ret_reason
 * (static: "MissingKey", "KeyUnusable", "Inactive", "ExecFailed") and
 * *ret_error (caller frees; never holds a secret). */
int server_target_build(ServerController *s, json_t *obj, ServerTarget **ret, const char **ret_reason,
                        char **ret_error);

/* The Server a target was built from (borrowed from its object), and the
 * controller it was built by (agent targets only). */
const char *server_target_name(const ServerTarget *t, const char **ret_ns);
ServerController *server_target_controller(const ServerTarget *t);

/* server-run.c: SshTarget.run of a Server of transport agent (userdata:
 * its ServerTarget): the command as a job of its agent, waited for. */
int server_agent_run(void *userdata, const SshCommand *cmd, SshResult *result);

/* What one check found. */
typedef struct CheckOutcome {
        bool ok;
        const char *reason; /* "Reachable", a failure reason, "MissingKey", "CheckFailed" */
        char message[512];
        bool no_retry;  /* a problem on our side that retrying cannot fix */
        bool logged_in; /* set lastLoginTime */
        char host_key[128];
        bool record_host_key; /* host_key was verified or newly accepted: status.hostKey */
        json_t *metrics;      /* owned; NULL when none were read */
        uint64_t when_usec;   /* realtime, when the attempt started */
        uint64_t duration_usec;
} CheckOutcome;

/* Runs the check command on target and fills *o and *result; *ret_uptime
 * (optional, caller frees) gets uptime's output when it ran. */
void server_check_run(ServerController *s, const SshTarget *target, CheckOutcome *o, SshResult *result,
                      char **ret_uptime);
/* server-agent.c: transport agent, whose polls are its check. */
bool server_is_agent(const json_t *obj);
/* The outcome from the agent's presence; -EAGAIN (and *ret_settle_usec)
 * while rprd has just started and has not heard from it yet. */
int server_agent_check(ServerController *s, const json_t *obj, CheckOutcome *o, uint64_t *ret_settle_usec);

/* Parses the check command's output into a metrics object (new reference;
 * NULL when nothing could be read) and uptime's text (caller frees). */
json_t *server_check_parse(const char *out, char **ret_uptime);
