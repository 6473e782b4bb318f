/* store: the durable home of every object, and its change feed.
 *
 * One global revision counts every write; an object's
 * metadata.resourceVersion is the revision of its last write (a decimal
 * string, as Kubernetes has it). The store owns the metadata rprd sets:
 * uid, resourceVersion, generation (bumped only when spec changes),
 * creationTimestamp, deletionTimestamp; finalizers are kept as written.
 *
 * Reads are served from an in-memory index of every object's JSON text, so
 * they never wait on disk; writes go to the backend (SQLite now, etcd later:
 * see store-backend.h) in one transaction per store_commit() and are in the
 * index and the feed only once durable. Every function here is thread-safe;
 * writes are serialized.
 *
 * The change feed keeps the last STORE_RING_SIZE events (fewer when their
 * texts pass STORE_RING_BYTES, but at least STORE_RING_MIN), so that a
 * watcher can resume from a recent revision, and every event a watcher has not read
 * yet, up to STORE_FEED_LIMIT events (and STORE_FEED_BYTES of their texts):
 * a watcher that keeps reading never falls behind, however large a commit.
 * One that does (or asks for what is older) gets -ERANGE (the API answers
 * 410 Gone, and clients list again). */
#pragma once

#include "base/base.h"

#define STORE_RING_SIZE 8192
#define STORE_RING_BYTES ((size_t) 2 << 20)
#define STORE_RING_MIN 1024
#define STORE_FEED_LIMIT (1u << 20)
#define STORE_FEED_BYTES ((size_t) 128 << 20)

typedef struct Store Store;
typedef struct StoreText StoreText;

/* url: "sqlite:PATH" (created if missing, schema migrated to the current
 * version). Other schemes: -EPROTONOSUPPORT. */
int store_open(const char *url, Store **ret);
/* NULL-safe. Waits for no one: callers stop their writers first. */
void store_close(Store *s);

uint64_t store_revision(Store *s);
/* Objects by kind name ("Server"); kind NULL counts all. */
size_t store_count(Store *s, const char *kind);

/* One object's JSON text (caller frees). -ENOENT if absent. */
int store_get(Store *s, const char *kind, const char *ns, const char *name, char **ret_json);
/* Same, parsed. */
int store_get_json(Store *s, const char *kind, const char *ns, const char *name, json_t **ret);
/* The object's revision (its last write) alone, for a caller that acts
 * only when it changed: no copy, no parse. -ENOENT if absent. */
int store_get_revision(Store *s, const char *kind, const char *ns, const char *name, uint64_t *ret);

/* Calls fn for every object of kind (NULL: all kinds) in namespace ns (NULL:
 * all), ordered by kind, namespace, name, under a read lock: fn must not call
 * back into the store. json is the object's text, valid during the call.
 * Returns the revision the listing reflects through ret_revision (optional). */
typedef void (*StoreListFn)(const char *json, size_t len, void *userdata);
int store_list(Store *s, const char *kind, const char *ns, StoreListFn fn, void *userdata,
               uint64_t *ret_revision);

/* As store_list (kind required), only the objects whose metadata.labels
 * match sel (NULL: all). Found through the label index from sel's rarest
 * k=v requirement, and checked against labels kept beside each object: the
 * cost follows the objects that match, not the objects of the kind, and
 * nothing is parsed. */
typedef struct Selector Selector;
int store_list_selected(Store *s, const char *kind, const char *ns, const Selector *sel, StoreListFn fn,
                        void *userdata, uint64_t *ret_revision);

/* As store_list_selected (sel required), handing fn only each object's
 * namespace, name and the few fields the store keeps beside it, without
 * its text: for listings that need a phase or a time of many objects,
 * such as a Pipeline's jobs or a Binding's Runs. Kept for a Run:
 * status.phase, status.notBefore, status.endTime; and every kind's
 * x-rpr-index fields. Nothing is parsed. */
typedef struct StoreLabels StoreFields;
typedef void (*StoreFieldsFn)(const char *ns, const char *name, const StoreFields *f, void *userdata);
int store_list_fields(Store *s, const char *kind, const char *ns, const Selector *sel, StoreFieldsFn fn,
                      void *userdata);
/* One object's kept (or indexed) field by path ("status.phase"), copied
 * (caller frees), without its text: -ENOENT when the object is absent,
 * -ENODATA when it has no such field. */
int store_get_field(Store *s, const char *kind, const char *ns, const char *name, const char *path,
                    char **ret);
/* A kept (or indexed) field of an object listed by store_list_fields, by
 * path ("status.phase"); NULL when the object has no such string. Valid
 * during fn only. */
const char *store_field(const StoreFields *f, const char *path);

/* As store_list, only the objects of kind whose spec.FIELD (field is
 * "spec.repo") equals value: the objects that refer to a name. field must
 * be one the kind's schema marks x-rpr-index (kind_indexed_fields); for
 * any other nothing is found. Costs what is found, nothing is parsed. */
int store_list_where(Store *s, const char *kind, const char *ns, const char *field, const char *value,
                     StoreListFn fn, void *userdata);

/* As store_list, with only each object's kind, namespace and name: no
 * text to parse when the key is all that is needed. */
typedef void (*StoreKeyFn)(const char *kind, const char *ns, const char *name, void *userdata);
int store_list_keys(Store *s, const char *kind, const char *ns, StoreKeyFn fn, void *userdata);

typedef enum StoreOpType {
        STORE_OP_APPLY,  /* create or replace spec/labels/annotations; status kept */
        STORE_OP_UPDATE, /* as APPLY, and finalizers too (PUT) */
        STORE_OP_STATUS, /* replace status only */
        STORE_OP_DELETE, /* remove, or mark deletionTimestamp while finalizers remain */
} StoreOpType;

typedef enum StoreOutcome {
        STORE_UNCHANGED,
        STORE_CREATED,
        STORE_CONFIGURED,
        STORE_DELETED, /* gone, or marked for deletion when finalizers remain */
} StoreOutcome;

const char *store_outcome_to_string(StoreOutcome o); /* "created", ... */

typedef struct StoreOp {
        StoreOpType type;
        /* APPLY/UPDATE/STATUS: the object (borrowed; must carry kind,
         * metadata.name, metadata.namespace). DELETE: kind, ns, name below. */
        const json_t *object;
        const char *kind, *ns, *name;
        /* If non-zero, the write fails with -ESTALE unless the stored
         * object's resourceVersion equals it (409 Conflict). */
        uint64_t expect_revision;
        /* STATUS: keep the object as written parsed for its next write
         * (which then parses nothing): for one large object rewritten
         * often. The caller must not change op->object's status after the
         * commit; the store keeps it. */
        bool keep_tree;

        /* Results, set by store_commit on success: the outcome, and the
         * object as stored (or as it was, for a delete) as JSON text, valid
         * until store_ops_clear(). The text is the one the index and the
         * feed hold, not a copy: result_ref is the store's reference to it. */
        StoreOutcome outcome;
        uint64_t revision; /* the result's resourceVersion */
        const char *result;
        size_t result_len;
        StoreText *result_ref;
} StoreOp;

/* Applies ops in order in one transaction: all or nothing. dry_run computes
 * the outcomes and results without writing. On failure returns a negative
 * errno and sets *ret_failed (optional) to the index of the op that failed:
 * -ENOENT (STATUS/DELETE of an absent object), -ESTALE (expect_revision
 * mismatch), -EEXIST (same object twice in one commit), -EIO (backend),
 * -ENOSPC (the state volume is full: nothing was written), -EIDRM (the
 * database file was deleted or replaced under rprd: every write is refused
 * from then on), -EUCLEAN (the database is corrupt), -EROFS (read-only).
 * Results are set only on success. */
int store_commit(Store *s, StoreOp *ops, size_t n, bool dry_run, size_t *ret_failed);
void store_ops_clear(StoreOp *ops, size_t n); /* releases the results */
/* An op's result parsed (new reference), NULL before a successful commit. */
json_t *store_op_result_json(const StoreOp *op);

/* An object's metadata.resourceVersion as a number (0 when it has none):
 * the expect_revision of a write that must not race another. */
uint64_t store_object_revision(const json_t *obj);

/* Rewrites one object's status, as controllers do: reads the object, asks
 * next(object, userdata) for its next status (a new reference; NULL: leave
 * it, write nothing) and commits it. When a write slipped in between
 * (-ESTALE) it reads and asks again, a few times. *ret_object (optional,
 * new reference) gets the object as written (as read, when nothing was).
 * -ENOENT when the object is absent. */
typedef json_t *(*StoreStatusFn)(const json_t *object, void *userdata);
int store_update_status(Store *s, const char *kind, const char *ns, const char *name, StoreStatusFn next,
                        void *userdata, json_t **ret_object);

/* As store_update_status, from obj, the object as its caller last read or
 * wrote it (with its resourceVersion): the first try reads and parses
 * nothing. *ret_object (optional) gets obj with the new status and
 * resourceVersion, as written (obj itself when nothing was). */
int store_update_status_of(Store *s, const json_t *obj, StoreStatusFn next, void *userdata,
                           json_t **ret_object);

/* Finalizers, as controllers use them: a controller adds its own to an
 * object it must clean up after; deleting the object then only marks it
 * (deletionTimestamp) until the controller, done, writes it back without
 * (store_remove_finalizer, or an UPDATE of store_without_finalizer() in
 * one commit with other writes, expecting its revision) and it goes.
 * store_add_finalizer and store_remove_finalizer write against obj's
 * resourceVersion and return 0 when another write came first: its event
 * brings the caller back. */
bool store_has_finalizer(const json_t *obj, const char *finalizer);
int store_add_finalizer(Store *s, const json_t *obj, const char *finalizer);
int store_remove_finalizer(Store *s, const json_t *obj, const char *finalizer);
json_t *store_without_finalizer(const json_t *obj, const char *finalizer); /* a new copy */

/* ---- change feed ------------------------------------------------------- */

typedef enum StoreEventType { STORE_EVENT_ADDED, STORE_EVENT_MODIFIED, STORE_EVENT_DELETED } StoreEventType;
const char *store_event_type_to_string(StoreEventType t); /* "ADDED", ... */

typedef struct StoreEvent {
        StoreEventType type;
        uint64_t revision;
        char *kind, *ns, *name;
        char *json; /* the object after the change (before it, for DELETED) */
        size_t len;
        /* Its labels (or x-rpr-index fields) differ from before; always
         * for ADDED and DELETED: who follows labels need not parse it. */
        bool labels_changed;
} StoreEvent;

void store_event_free(StoreEvent *e);

typedef struct StoreWatch StoreWatch;
/* notify runs on the writing thread after each commit that adds events,
 * outside every store lock; it must only wake the watcher up (e.g. send a
 * message to an event loop). Events after revision from_revision are
 * delivered; -ERANGE if from_revision is older than the ring keeps. */
int store_watch(Store *s, uint64_t from_revision, void (*notify)(void *userdata), void *userdata,
                StoreWatch **ret);
/* Next event, without blocking: 1 and *ret set (caller frees), 0 when none
 * is pending, -ERANGE when this watcher fell behind the ring. */
int store_watch_next(StoreWatch *w, StoreEvent **ret);
void store_watch_free(StoreWatch *w); /* NULL-safe */
/* The most events kept for watchers that lag (at least STORE_RING_SIZE;
 * STORE_FEED_LIMIT by default): beyond it the slowest fall behind. */
void store_set_feed_limit(Store *s, size_t max_events);

/* 0 when writes can go on; -EIDRM when the database file was deleted or
 * replaced under rprd (no write will be accepted again); -ENOSPC when the
 * last write found the volume full and it still is (it clears when a
 * write succeeds or a few MiB are free again). Thread-safe, does not
 * wait for writes: fit for /healthz. */
int store_health(Store *s);

/* Writes a consistent copy of the whole store to path (a new file), while
 * writes go on: SQLite's online backup. -EOPNOTSUPP for a backend that
 * cannot; -ENOSPC, -EIO. Blocks for as long as the copy takes. */
int store_backup(Store *s, const char *path);

/* Backend latency figures for /metrics: commits and their total seconds. */
void store_stats(Store *s, uint64_t *ret_commits, double *ret_commit_seconds);
