/* sync-private.h: what the files of pkg/sync share: the controller's
 * state, a Sync's spec, a rendered revision and the plan of its apply. */
#pragma once

#include <pthread.h>

#include "store/store.h"
#include "sync/sync.h"

struct SyncController {
        Store *store;
        Controller *controller;
        RepoController *repos;
        LogFile *activity;

        pthread_mutex_t lock; /* guards stats */
        SyncStats stats;
};

/* A Sync's spec with defaults; strings borrowed from the object. */
typedef struct SyncSpec {
        const char *ns, *name;
        const char *repo, *path;
        const char *target_ns; /* spec.namespace, else ns */
        bool prune, suspend, allow_empty, host_access;
        uint64_t interval_usec;
        const json_t *depends_on; /* array of names, may be NULL */
        char *owner;              /* "sync/NAME" */
} SyncSpec;

void sync_spec_read(const json_t *obj, SyncSpec *ret);
void sync_spec_clear(SyncSpec *s);

/* ---- sync-render.c -------------------------------------------------------- */

/* A revision's objects, read and checked. */
typedef struct SyncRender {
        json_t *objects; /* array of prepared objects, managedBy set */
        json_t *errors;  /* array of strings "REPO@SHA:PATH:LINE:COL: ..." */
        size_t files, bytes;
} SyncRender;

/* Reads and checks every manifest of spec at commit sha. 0 with ret set
 * (errors may be non-empty: nothing may be applied then); -EIO with
 * *ret_error (caller frees) when the tree cannot be read at all. */
int sync_render(SyncController *s, const SyncSpec *spec, const char *sha, SyncRender *ret, char **ret_error);
void sync_render_clear(SyncRender *r);

/* ---- sync-apply.c --------------------------------------------------------- */

/* What one apply will do. */
typedef struct SyncPlan {
        StoreOp *ops;
        size_t n_ops, cap;
        json_t *inputs;    /* the objects the ops point at (owned) */
        json_t *inventory; /* [{kind, namespace, name}] after it */
        json_t *changed;   /* "Kind/ns/name" of what is created or updated */
        json_t *conflicts; /* messages naming objects the Sync may not touch */
        size_t created, updated, deleted, released;
} SyncPlan;

/* Plans the apply of objects (a rendered revision) over what the Sync obj
 * applied before: only what differs is written. */
void sync_plan(SyncController *s, const SyncSpec *spec, const json_t *obj, const json_t *objects, SyncPlan *ret);
/* Plans the end of a Sync being deleted: its objects removed (prune, not
 * suspended) or let go, and the finalizer taken off obj. */
void sync_plan_finalize(SyncController *s, const SyncSpec *spec, const json_t *obj, SyncPlan *ret);
/* Commits the plan with status as the Sync obj's new status (NULL: no
 * status op), all in one transaction. -ESTALE when something changed under
 * it (try again), other store errors as store_commit's. */
int sync_plan_commit(SyncController *s, SyncPlan *p, const json_t *obj, json_t *status);
void sync_plan_clear(SyncPlan *p);

/* "Kind/ns/name" of an object. Caller frees. */
char *sync_key(const json_t *obj);
