/* sync: the Sync kind's controller — GitOps, a directory of a config
 * repository applied whole.
 *
 * At each new commit of the Sync's Repo, on demand (the annotation
 * rpr/requestedAt, echoed as status.lastHandledRequestedAt) and every
 * spec.interval, the manifests under spec.path at the Repo's commit are
 * read from the Repo's bare cache, parsed, defaulted and validated, every
 * problem collected as REPO@SHA:PATH:LINE:COL. A revision with any problem
 * applies nothing. Otherwise one store commit creates and updates what
 * changed, prunes what left the repository, and writes the Sync's status
 * (inventory, lastAppliedRevision, history): a crash leaves the old
 * revision or the new, never a mix. Objects carry metadata.managedBy
 * sync/NAME; a Sync never writes an object it does not manage (Conflict).
 * The finalizer rpr/sync removes (prune) or lets go of (no prune, suspend)
 * the objects when the Sync is deleted. */
#pragma once

#include "base/base.h"

typedef struct Store Store;
typedef struct Controller Controller;
typedef struct LogFile LogFile;
typedef struct RepoController RepoController;
typedef struct SyncController SyncController;

typedef struct SyncOptions {
        Store *store;
        Controller *controller; /* the Sync kind is registered on it */
        RepoController *repos;
        LogFile *activity; /* may be NULL */
} SyncOptions;

int sync_controller_new(const SyncOptions *o, SyncController **ret);
void sync_controller_free(SyncController *s); /* NULL-safe */

/* For /metrics: syncs that ended in each result since start, and their
 * total and last duration. */
typedef struct SyncStats {
        uint64_t applied, unchanged, failed;
        double seconds, last_seconds;
} SyncStats;
void sync_stats(SyncController *s, SyncStats *ret);

/* Bounds on what one revision may hold. */
#define SYNC_MAX_FILES 10000
#define SYNC_MAX_FILE_BYTES ((size_t) 1 << 20)
#define SYNC_MAX_TOTAL_BYTES ((size_t) 64 << 20)
#define SYNC_MAX_ERRORS 1000
#define SYNC_HISTORY 5
#define SYNC_FINALIZER "rpr/sync"
