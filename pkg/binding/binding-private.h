/* binding-private: what the files of the binding module share. */
#pragma once

#include <pthread.h>

#include "binding/binding.h"

struct BindingController {
        Store *store;
        Controller *controller;
        RunController *runs;
        char *run_dir;
        LogFile *activity;
};

/* A Binding's spec, borrowed from its object, defaults filled in. */
typedef struct BindingSpec {
        const char *ns, *name, *uid;
        json_int_t generation;
        const char *repo, *server, *command, *workdir, *timeout, *wait_timeout;
        const json_t *match_labels, *env;
        json_int_t retries, history;
        uint64_t backoff_base_usec, backoff_max_usec;
        bool active, deploy_on_create;
} BindingSpec;

void binding_spec_read(const json_t *obj, BindingSpec *ret);

/* What one pass over a Binding decided: its next status and the Runs to
 * make with it. */
typedef struct Plan {
        json_t *status;      /* the Binding's next status */
        json_t *runs;        /* new Run objects */
        json_t *report;      /* for a trigger: {"runs": [...], "queued": [...]} */
        uint64_t requeue;    /* come back after (a retry's backoff); 0: no need */
        char *error;         /* a trigger that cannot be done: why */
} Plan;

/* Decides, from the stored Binding obj and what the store says of its Repo,
 * Servers and Runs. t: a manual trigger, or NULL. Negative errno (with
 * p->error) only for a trigger that cannot be done. */
int binding_plan(BindingController *b, const json_t *obj, const BindingTrigger *t, Plan *p);
void plan_clear(Plan *p);
