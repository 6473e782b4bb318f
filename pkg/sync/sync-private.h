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

        pthread_mutex_t lock; /* guards stats and memos */
        SyncStats stats;
        Hashmap *memos; /* "ns/name" -> SyncMemo */
};

/* What a Sync remembers between syncs, in memory only (a restart reads
 * and compares everything once): it makes a one-object change cost one
 * file's parse and one object's comparison, whatever the revision holds.
 * Used only by the reconcile of its Sync (one at a time per key). */
typedef struct SyncMemo {
        char *config;  /* what rendering depends on besides the files */
        json_t *files; /* "BLOB:path" -> [{"object", "at"}] of files without problems */
        json_t *seen;  /* "Kind/ns/name" -> resourceVersion the live object had when in sync with
                        * the object of a file remembered in files */
} SyncMemo;

/* The memo of Sync ns/name (made when absent); sync_memo_drop forgets it. */
SyncMemo *sync_memo(SyncController *s, const char *ns, const char *name);
void sync_memo_drop(SyncController *s, const char *ns, const char *name);
void sync_memo_free(SyncMemo *m);

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
int sync_render(SyncController *s, const SyncSpec *spec, SyncMemo *memo, const char *sha, SyncRender *ret,
                char **ret_error);
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
        json_t *seen;    /* the memo's next seen, once committed */
        json_t *op_keys; /* per op: the key whose revision goes into seen, or null */
} SyncPlan;

/* Plans the apply of objects (a rendered revision) over what the Sync obj
 * applied before: only what differs is written. */
void sync_plan(SyncController *s, const SyncSpec *spec, SyncMemo *memo, const json_t *obj,
               const json_t *objects, SyncPlan *ret);
/* Plans the end of a Sync being deleted: its objects removed (prune, not
 * suspended) or let go, and the finalizer taken off obj. */
void sync_plan_finalize(SyncController *s, const SyncSpec *spec, const json_t *obj, SyncPlan *ret);
/* Commits the plan with status as the Sync obj's new status (NULL: no
 * status op), all in one transaction. -ESTALE when something changed under
 * it (try again), other store errors as store_commit's. */
int sync_plan_commit(SyncController *s, SyncPlan *p, SyncMemo *memo, const json_t *obj, json_t *status);
void sync_plan_clear(SyncPlan *p);

/* "Kind/ns/name" of an object. Caller frees. */
char *sync_key(const json_t *obj);
