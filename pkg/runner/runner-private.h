/* runner-private.h: what the files of pkg/runner share: the controller,
 * a Runner's spec, its GitHub scope, and the host commands. */
#pragma once

#include <pthread.h>

#include "runner/runner.h"
#include "server/server.h"
#include "ssh/ssh.h"
#include "token/token.h"

#define RUNNER_FINALIZER "rpr/runners"

struct RunnerController {
        Store *store;
        Controller *controller;
        TokenController *tokens;
        GithubClient *github;
        ServerController *servers;
        SshPool *ssh;
        LogFile *activity;
        char *release_dir; /* verified release tarballs, by sha256 */
        char *proc_dir;    /* pid files of runners on transport local */

        pthread_mutex_t lock; /* guards below */
        json_t *lists;        /* scope key -> {"at": mono usec, "runners": [{id, name, online, busy}]} */
        json_t *tables;       /* "ns/name" -> the job table of an autoscaled Runner (runner-jobs.c) */
        json_t *unmatched;    /* job id -> true: logged as taken by no Runner */
        uint64_t unmatched_total;
        pthread_mutex_t release_lock; /* one download at a time */
};

/* A Runner's spec with defaults, borrowed from its object. */
typedef struct RunnerSpec {
        const char *ns, *name;
        const char *repo, *org, *token_ref, *server, *mode, *version, *api_url, *group, *install_dir;
        const json_t *match_labels, *labels, *package, *container;
        json_int_t replicas;
        bool ephemeral;
        uint64_t registration_timeout_usec, sync_interval_usec, command_timeout_usec;
        /* spec.autoscale (autoscale false: replicas) */
        bool autoscale;
        json_int_t as_min, as_max, as_idle;
        uint64_t scale_down_delay_usec, poll_interval_usec;
        const char *webhook_token_ref;
} RunnerSpec;

void runner_spec_read(const json_t *obj, RunnerSpec *ret);
/* What in sp keeps runners from being started (static text), or NULL. */
const char *runner_spec_problem(const RunnerSpec *sp);

/* The GitHub side: the scope, its token, what config.sh --url says. */
typedef struct RunnerScope {
        char *api_url, *owner, *repo_name; /* repo_name NULL: the organisation owner */
        char *html_url;                    /* https://github.com/OWNER[/NAME] */
        char *key;                         /* the list cache's key */
        TokenSecret secret;
        const char *token_ns; /* the Token, for token_note_used() */
        char *token_name;
} RunnerScope;

/* Reads the Repo (or org) and the Token. On failure: a negative errno,
 * *ret_reason (static) and *ret_error (caller frees). */
/* Owner and name of the Repo sp->repo names into ret (api_url too). */
int runner_scope_from_repo(RunnerController *rc, const RunnerSpec *sp, RunnerScope *ret, const char **ret_reason,
                           char **ret_error);
int runner_scope_read(RunnerController *rc, const RunnerSpec *sp, RunnerScope *ret, const char **ret_reason,
                      char **ret_error);
void runner_scope_clear(RunnerScope *s);

/* The release to install: a tarball in rc->release_dir whose sha256 was
 * checked, from spec.package or GitHub's downloads. *ret_path and
 * *ret_version (caller frees). On failure a negative errno and *ret_error. */
int runner_release_get(RunnerController *rc, const RunnerSpec *sp, const RunnerScope *scope, char **ret_path,
                       char **ret_sha256, char **ret_version, char **ret_error);

/* ---- the hosts (runner-host.c) ------------------------------------------------ */

/* Runs script with env (cleared after) on t, input on its stdin; output
 * (both streams, up to 256 KiB) kept in *out, within sp->commandTimeout.
 * A command that exits non-zero is -EIO with its output in res->message. */
int runner_host_run(RunnerController *rc, const RunnerSpec *sp, const SshTarget *t, const char *script,
                    SshEnv *env, const void *input, size_t input_len, Buf *out, SshResult *res);
/* The lines an observing script prints, as runner_host_observe() returns them. */
json_t *runner_observed_parse(const char *text);

/* What a Server says of the instances of a Runner: an object name ->
 * {"state": "running"|"exited", "exitCode", "pid", "cpuSeconds", "memBytes"}.
 * An instance without a directory there is absent. */
int runner_host_observe(RunnerController *rc, const RunnerSpec *sp, const SshTarget *t, json_t **ret,
                        SshResult *res);

/* Copies the release (path, sha256) to the host unless it is there. */
int runner_host_install(RunnerController *rc, const RunnerSpec *sp, const SshTarget *t, const char *path,
                        const char *sha256, SshResult *res);

/* How an instance registers: a JIT configuration, or config.sh with a
 * registration token. The secret goes on the command's stdin, and to a 0600
 * file (JIT) or config.sh's environment (token), never on a command line. */
typedef struct RunnerStart {
        const char *name;
        const char *sha256; /* the release */
        const char *jit;    /* or */
        const char *reg_token, *url;
        const char *labels; /* "a,b" */
        bool ephemeral;
        const char *group;
} RunnerStart;

/* Unpacks the release into the instance's directory and starts it as its
 * own process group; *ret_pid. */
int runner_host_start(RunnerController *rc, const RunnerSpec *sp, const SshTarget *t, const RunnerStart *s,
                      long *ret_pid, SshResult *res);

/* Stops the instance's processes (TERM, a grace, KILL) and removes its
 * directory. */
int runner_host_remove(RunnerController *rc, const RunnerSpec *sp, const SshTarget *t, const char *name,
                       SshResult *res);

/* ---- mode container (runner-container.c) ------------------------------------------ */

/* As runner_host_observe, runner_host_start and runner_host_remove, through
 * the engine's CLI; an observed instance has "containerId", and *ret_id
 * (caller frees) is the new container's short id. */
int runner_container_observe(RunnerController *rc, const RunnerSpec *sp, const SshTarget *t, json_t **ret,
                             SshResult *res);
int runner_container_start(RunnerController *rc, const RunnerSpec *sp, const SshTarget *t,
                           const RunnerStart *s, char **ret_id, SshResult *res);
int runner_container_remove(RunnerController *rc, const RunnerSpec *sp, const SshTarget *t, const char *name,
                            SshResult *res);

/* ---- one pass (runner-pass.c, runner-create.c) ------------------------------------ */

/* What one pass knows and has done. */
typedef struct Pass {
        RunnerController *rc;
        const RunnerSpec *sp;
        const json_t *obj;
        RunnerScope scope;
        bool scope_ok;
        json_t *st;        /* the status being built (owned); st.instances is the array below */
        json_t *instances; /* borrowed from st */
        json_t *gh;        /* GitHub's runners (owned), NULL when they could not be listed */
        uint64_t gh_at;    /* realtime when asked (about) */
        json_t *seen;      /* server -> what it runs (runner_host_observe), or null: unreachable */
        json_t *why;       /* server -> why it could not be used */
        json_t *agents;    /* server -> true: of transport agent */
        json_t *busy;      /* server -> true: its agent polls, our command waited in vain */
        size_t for_agent;  /* deleting: instances left only for an offline agent */
        json_t *servers;   /* the selected servers (owned) */
        json_t *installed; /* server -> true once the release is there this pass */
        json_t *deleted;   /* names deregistered this pass (GitHub's list may still have them) */
        json_int_t want;   /* replicas wanted, or the autoscale target (0 while deleting) */
        uint64_t poll_in;  /* autoscale: the next poll is due in this long */
        uint64_t wake_in;  /* autoscale: an idle runner may go in this long (0: none) */
        char *rel_path, *rel_sha, *rel_version;
        bool release_tried;
        json_int_t group_id; /* 0 until asked */
        /* The first problem seen, for the Ready condition. */
        char reason[64]; /* "" while there is none */
        char message[512];
        bool outdated;
        bool changed;      /* something happened: look again soon */
        uint64_t retry_at; /* GitHub could not be asked: not before then */
        bool invalid;      /* the spec cannot start runners (no new ones) */
        bool deleting;     /* towards nothing: every runner goes, autoscaled or not */
        uint64_t now;
} Pass;

/* How long a slot waits after its failures-th failure in a row: 5 s
 * doubling to 80 s. */
uint64_t runner_backoff(json_int_t failures);
/* Notes a problem (the first one wins the Ready condition). */
void pass_problem(Pass *p, const char *reason, const char *fmt, ...) _printf_(3, 4);
/* Writes p->st as the Runner's status now. */
int pass_save(Pass *p);
/* The target of server (NULL when it cannot be used; why in p->why). Free
 * with server_target_free(). */
ServerTarget *pass_target(Pass *p, const char *server);
/* GitHub's runner by id or, without one, by name (borrowed), or NULL. */
const json_t *pass_gh_find(Pass *p, json_int_t id, const char *name);

/* Sets inst's state and message (NULL: none). */
void runner_instance_set_state(json_t *inst, const char *state, const char *message);
/* Registers the instance inst (state "registering": its name, server and
 * slot set, written to status) and starts it. Its id is written to status
 * before its process starts. On failure its state and message say why. */
void runner_instance_create(Pass *p, json_t *inst);
/* Deletes inst's registration at GitHub: 0 (gone), -EBUSY (running a job),
 * another negative errno (could not ask). */
int runner_instance_deregister(Pass *p, json_t *inst);
/* Stops inst's process and removes its directory on its server. */
int runner_instance_stop(Pass *p, json_t *inst);

/* Brings the Runner obj towards its spec (deleting: towards nothing).
 * *ret_requeue when to look again; *ret_done (deleting) when nothing is
 * left. */
int runner_pass(RunnerController *rc, const json_t *obj, bool deleting, uint64_t *ret_requeue,
                bool *ret_done);

/* GitHub's runners of scope, from the cache when younger than max_age. */
int runner_list_cached(RunnerController *rc, const RunnerScope *scope, uint64_t max_age_usec, json_t **ret,
                       char *error, size_t size, const char **ret_reason, uint64_t *ret_retry_at);
void runner_list_forget(RunnerController *rc, const RunnerScope *scope);

/* ---- autoscale (runner-autoscale.c, runner-jobs.c) -------------------------------- */

/* Whether a runner with runner_labels (and self-hosted, linux, x64) can
 * take a job with job_labels: every one of them, without case. */
bool runner_labels_match(const json_t *job_labels, const json_t *runner_labels);
/* "a, b" (caller frees), flat, at most 16 labels and 200 bytes. */
char *runner_labels_text(const json_t *labels);
/* The autoscaled Runners of ns by name, as runner_route() wants them. */
json_t *runner_candidates(RunnerController *rc, const char *ns);
/* The name (borrowed from candidates) of the Runner that takes a job of
 * full_name (org may be NULL) with labels, signed by webhook Token token
 * (NULL: by any, as for polled jobs), or NULL. */
const char *runner_route(const json_t *candidates, const char *token, const char *full_name, const char *org,
                         const json_t *labels);
/* One activity line per job id for a queued job no Runner takes. */
void runner_note_unmatched(RunnerController *rc, const char *ns, json_int_t id, const char *full_name,
                           const json_t *labels);
/* The job table of ns/name (borrowed, made when missing), under rc->lock. */
json_t *runner_table(RunnerController *rc, const char *ns, const char *name);
void runner_table_forget(RunnerController *rc, const char *ns, const char *name);
/* Records action of job id in table: 1 changed, 0 duplicate, -ENOSPC full. */
int runner_table_note(json_t *table, json_int_t id, const char *action, const json_t *labels,
                      const char *runner_name, uint64_t at);
/* Counts the queued jobs at GitHub when spec.autoscale.interval is due. */
void runner_poll(Pass *p);
/* Sets p->want for an autoscaled Runner (polls when due, counts, decides;
 * status.autoscale); removes status.autoscale from another. */
void runner_autoscale(Pass *p);
/* After the instances' steps: when each became idle. */
void runner_autoscale_after(Pass *p);
/* Whether inst (idle) has been idle scaleDownDelay; else when to look again. */
bool runner_autoscale_may_remove(Pass *p, const json_t *inst);
