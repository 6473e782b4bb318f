/* store-backend: the private interface between the generic store (store.c)
 * and the place objects are kept durably.
 *
 * The generic part owns the in-memory index, the metadata rules and the
 * change feed; a backend only has to load everything once at open and then
 * write batches of puts and deletes atomically, each batch stamped with the
 * global revision it ends at. SQLite implements it now (store-sqlite.c); an
 * etcd backend can be added later as another StoreBackendOps. Calls are
 * serialized by the store's write mutex, so a backend needs no locking of
 * its own. */
#pragma once

#include <pthread.h>

#include "store/store.h"

typedef struct StoreBackend StoreBackend;

/* Called once per stored object by load(); json is valid during the call.
 * A negative return stops the load and is passed on. */
typedef int (*StoreLoadFn)(const char *kind, const char *ns, const char *name, uint64_t revision,
                           const char *json, size_t len, void *userdata);

typedef struct StoreBackendOps {
        const char *scheme; /* "sqlite" in "sqlite:PATH" */
        /* Opens (creating and migrating as needed) the backend at location
         * (the URL without the scheme) and reads the global revision. */
        int (*open)(const char *location, StoreBackend **ret, uint64_t *ret_revision);
        /* Every stored object, in any order. */
        int (*load)(StoreBackend *b, StoreLoadFn fn, void *userdata);
        /* One transaction: begin, any number of put/del, then commit with the
         * revision the batch ends at (durable when commit returns 0) or
         * rollback. Errors are -EIO, or -ENOSPC, -EIDRM, -EUCLEAN, -EROFS
         * as store_commit() says. */
        int (*begin)(StoreBackend *b);
        int (*put)(StoreBackend *b, const char *kind, const char *ns, const char *name, uint64_t revision,
                   const char *json, size_t len);
        int (*del)(StoreBackend *b, const char *kind, const char *ns, const char *name);
        int (*commit)(StoreBackend *b, uint64_t revision);
        void (*rollback)(StoreBackend *b);
        /* NULL-safe. */
        void (*close)(StoreBackend *b);
        /* As store_health(); may be called from any thread, even while a
         * write is under way. */
        int (*health)(StoreBackend *b);
        /* As store_backup(); NULL when the backend cannot. */
        int (*backup)(StoreBackend *b, const char *path);
} StoreBackendOps;

extern const StoreBackendOps store_backend_sqlite;

/* The schema version store-sqlite.c migrates to (PRAGMA user_version);
 * exposed for the unit tests. */
extern const unsigned store_sqlite_schema_version;

/* ---- shared by the generic part's files (store.c, store-object.c,
 * store-feed.c); nothing outside pkg/store uses these ---------------------- */

/* An object's JSON text, immutable once made and shared by reference
 * between the index, the feed's ring and commit results: a write keeps one
 * copy of the object however many places hold it. */
struct StoreText {
        unsigned refs; /* changed atomically */
        size_t len;
        char data[]; /* NUL-terminated */
};
/* Takes a copy of data. */
StoreText *store_text_new(const char *data, size_t len);
StoreText *store_text_ref(StoreText *t);
void store_text_unref(StoreText *t); /* NULL-safe */

/* What one op does, worked out by store_object_change() from the op and the
 * object as stored (old, NULL if absent). */
typedef struct StoreChange {
        StoreOutcome outcome;
        bool write;  /* the backend and index change */
        bool remove; /* ... by removing the object (outcome DELETED) */
        StoreEventType event;
        /* Owned: the object after (or as it was, for a removal); NULL when
         * nothing is written: the stored text is the result then. */
        json_t *result;
} StoreChange;

/* Applies the metadata rules of store.h to one op: old is the stored object
 * (borrowed, NULL if absent) with revision old_revision; the result carries
 * resourceVersion "0" when it is written: the caller stamps the revision
 * with store_object_stamp(). Returns 0, -ENOENT, -ESTALE or -EINVAL (an
 * object without kind or metadata.name/namespace). */
int store_object_change(const StoreOp *op, const json_t *old, uint64_t old_revision, StoreChange *ret);
void store_object_stamp(json_t *obj, uint64_t revision);
/* An op's key; -EINVAL unless all three are non-empty strings. */
int store_op_key(const StoreOp *op, const char **ret_kind, const char **ret_ns, const char **ret_name);

/* Group commit (store-group.c): concurrent store_commit() calls share one
 * backend transaction. A request is one store_commit()'s ops. */
typedef struct CommitRequest {
        StoreOp *ops;
        size_t n;
        int r;         /* set by the batch function: 0 or a negative errno */
        size_t failed; /* the op that failed, when r < 0 */
        bool wrote;    /* something of it reached the backend */
        bool done;
        struct CommitRequest *next;
} CommitRequest;

typedef struct CommitQueue {
        pthread_mutex_t lock;
        pthread_cond_t done;
        CommitRequest *head, **tail;
        bool leading; /* a batch is being committed */
} CommitQueue;

/* Commits the requests of batch (a list through next), each all or nothing. */
typedef void (*CommitBatchFn)(void *ctx, CommitRequest *batch);
void commit_queue_init(CommitQueue *q);
void commit_queue_destroy(CommitQueue *q);
/* Returns once req is committed (or failed): as the leader of a batch of
 * whatever waits, or after the leader that took it. */
void commit_queue_run(CommitQueue *q, CommitRequest *req, CommitBatchFn run, void *ctx);

/* Labels (store-labels.c): an object's labels, read once when it is
 * written, and the index from (kind, key, value) to the objects with it. */
typedef struct StoreLabels StoreLabels;
typedef struct LabelIndex LabelIndex;
/* Indexed spec fields are kept as labels under this prefix, which no
 * label key can carry. */
#define STORE_FIELD_KEY "\x01"
/* Kept fields (not indexed; see store-labels.c) under this prefix. */
#define STORE_KEPT_KEY "\x02"
/* Whether objects of kind carry indexed or kept fields (then each is
 * parsed at load, even without labels). */
bool store_keeps_fields(const char *kind);
StoreLabels *store_labels_of(const json_t *obj); /* NULL when it has none */
void store_labels_free(StoreLabels *l);         /* NULL-safe */
const char *store_labels_get(const StoreLabels *l, const char *key);
/* Whether a and b (either NULL) hold the same labels and indexed fields
 * (kept fields aside). */
bool store_labels_same(const StoreLabels *a, const StoreLabels *b);
LabelIndex *label_index_new(void);
void label_index_free(LabelIndex *x);
/* entry is the caller's (what label_index_find's maps hold); l may be NULL. */
void label_index_add(LabelIndex *x, const char *kind, const char *ns, const char *name, const StoreLabels *l,
                     void *entry);
void label_index_remove(LabelIndex *x, const char *kind, const char *ns, const char *name,
                        const StoreLabels *l);
/* "ns\x1fname" -> entry for the objects of kind with label key=value; NULL: none. */
const Hashmap *label_index_find(const LabelIndex *x, const char *kind, const char *key, const char *value);

/* The change feed (store-feed.c; see store.h for what it keeps). Pushes come
 * from the committing thread in revision order; watchers read under the
 * feed's own lock. revision is the store's revision at open: events up to
 * it are not in the ring. */
typedef struct StoreFeed StoreFeed;
StoreFeed *store_feed_new(uint64_t revision);
/* Frees the ring and detaches (does not free) remaining watchers. */
void store_feed_free(StoreFeed *f);
/* Takes a copy of the key and a reference to the text. */
void store_feed_push(StoreFeed *f, StoreEventType type, uint64_t revision, const char *kind, const char *ns,
                     const char *name, StoreText *text, bool labels_changed);
/* Calls every watcher's notify, holding only the watcher-list lock: notify
 * must not call store_watch() or store_watch_free(). */
void store_feed_notify(StoreFeed *f);
void store_feed_set_limit(StoreFeed *f, size_t max_events);
int store_feed_watch(StoreFeed *f, uint64_t from_revision, void (*notify)(void *userdata), void *userdata,
                     StoreWatch **ret);

/* ---- the store itself (store.c), for the module's other files ---------------- */

typedef struct Entry {
        char *kind, *ns, *name; /* in the same allocation as the entry */
        StoreText *text;        /* NULL once removed in a commit */
        uint64_t revision;
        StoreLabels *labels;    /* metadata.labels, for selectors; NULL: none */
} Entry;

/* store-trees.c: a few objects kept parsed as last written, for writers
 * that opt in (StoreOp.keep_tree). Under write_lock. */
typedef struct TreeCache TreeCache;
TreeCache *tree_cache_new(void);
void tree_cache_free(TreeCache *c); /* NULL-safe */
/* The tree of kind/ns/name if it is kept at revision (new reference), or NULL. */
json_t *tree_cache_get(TreeCache *c, const char *kind, const char *ns, const char *name, uint64_t revision);
/* Keeps tree (taken) as kind/ns/name at revision. */
void tree_cache_put(TreeCache *c, const char *kind, const char *ns, const char *name, uint64_t revision,
                    json_t *tree);
void tree_cache_drop(TreeCache *c, const char *kind, const char *ns, const char *name);

struct Store {
        const StoreBackendOps *ops;
        StoreBackend *backend;
        pthread_mutex_t write_lock; /* one committer at a time */
        pthread_rwlock_t lock;      /* the index, revision and stats */
        Entry **entries;            /* sorted by kind, ns, name */
        size_t n, cap;
        LabelIndex *labels;         /* (kind, label, value) -> entries */
        CommitQueue group;          /* writers waiting to commit together */
        uint64_t revision;
        uint64_t commits;
        double commit_seconds;
        StoreFeed *feed;
        TreeCache *trees; /* under write_lock */
};

/* Orders Entry pointers by kind, namespace, name (for qsort). */
int store_entry_cmp(const void *a, const void *b);
/* The first index of s->entries whose key is >= the given one. Under s->lock. */
size_t store_lower_bound(const Store *s, const char *kind, const char *ns, const char *name);
