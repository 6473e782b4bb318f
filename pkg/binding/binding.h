/* binding: the Binding kind's controller — which Runs to make, and when.
 *
 * A Binding ties a Repo to one Server or to the Servers matching labels. For
 * each of those Servers its status remembers the last Run made, its phase,
 * the commit it was for and the commit last deployed. A Run is made for a
 * Server when:
 *   - the Repo's lastCommit.sha differs from the commit of the last Run made
 *     for it (a Binding seen for the first time deploys the current head
 *     once, unless spec.deployOnCreate is false);
 *   - its last Run Failed or was Interrupted and attempts remain
 *     (spec.retries), after spec.backoff (base doubling to max) — a retry is
 *     a new Run of the same commit with the next attempt number;
 *   - someone asked (binding_trigger).
 * Never two Runs of one Binding on one Server at once: while one is
 * unfinished nothing is made for that Server, so the commits that arrive
 * meanwhile become one Run of the newest when it ends. A Run and the status
 * that counts it are written in one transaction, against the Binding's
 * resourceVersion: a Run is never made twice. Finished Runs beyond
 * spec.history are removed with their output. Deleting a Binding cancels
 * its unfinished Runs first (finalizer "rpr/runs"), then removes them. */
#pragma once

#include "base/base.h"

typedef struct Store Store;
typedef struct Controller Controller;
typedef struct LogFile LogFile;
typedef struct RepoController RepoController;
typedef struct ServerController ServerController;
typedef struct RunController RunController;
typedef struct BindingController BindingController;

#define BINDING_FINALIZER "rpr/runs"

typedef struct BindingOptions {
        Store *store;
        Controller *controller; /* the Binding kind is registered on it */
        RepoController *repos;  /* new commits wake the Bindings of a Repo */
        ServerController *servers;
        RunController *runs;
        const char *run_dir; /* where Runs' output files are, to remove them */
        LogFile *activity;   /* may be NULL */
} BindingOptions;

int binding_controller_new(const BindingOptions *o, BindingController **ret);
void binding_controller_free(BindingController *b); /* NULL-safe */

/* What a manual trigger asks for: every Server of the Binding, only server,
 * or only those whose last Run failed. */
typedef struct BindingTrigger {
        const char *server;
        bool failed_only;
} BindingTrigger;

/* Makes a Run of the current commit now for the Servers t selects, whether
 * or not the Repo changed; a Server whose Run is still going gets one as
 * soon as it ends. *ret_report (new reference): {"runs": [{"name",
 * "server"}], "queued": [server]}. Errors, with *ret_error (caller frees)
 * saying why: -ENOENT no such Binding, -EPERM inactive or being deleted,
 * -ENODATA the Repo has no commit yet, -ESRCH server is not one of its
 * Servers (or it has none). Blocks for store writes. */
int binding_trigger(BindingController *b, const char *ns, const char *name, const BindingTrigger *t,
                    json_t **ret_report, char **ret_error);

/* The delay before retry attempt+1 of a Run that failed on attempt
 * (1-based): base doubling per attempt, at most max. */
uint64_t binding_backoff(uint64_t base_usec, uint64_t max_usec, json_int_t attempt);
