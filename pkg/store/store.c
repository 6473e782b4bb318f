/* store: the generic part of the object store, in front of a backend.
 *
 * Every object's JSON text is kept in memory in an array sorted by (kind,
 * namespace, name), so a get is a binary search and a list is a contiguous
 * run, both under a read lock and never waiting on disk. Writes are
 * serialized by write_lock: store_commit() works out every op's new object
 * (store-object.c) against the index, writes all of them to the backend in
 * one transaction, and only once that is durable takes the index's write
 * lock to swap the new texts in and push the events to the feed
 * (store-feed.c). Writers that come while a commit is under way share the
 * next transaction (store-group.c). Each object's labels and indexed
 * fields are kept beside it and indexed (store-labels.c, which also
 * answers selectors). Watchers are woken after every lock is released. */
#include <pthread.h>
#include <string.h>

#include "resource/resource.h"
#include "store/store-backend.h"

static const StoreBackendOps *const backends[] = {&store_backend_sqlite};

const char *store_outcome_to_string(StoreOutcome o) {
        switch (o) {
        case STORE_UNCHANGED:
                return "unchanged";
        case STORE_CREATED:
                return "created";
        case STORE_CONFIGURED:
                return "configured";
        case STORE_DELETED:
                return "deleted";
        }
        return "unknown";
}

/* ---- shared texts ------------------------------------------------------ */

StoreText *store_text_new(const char *data, size_t len) {
        StoreText *t = xmalloc(sizeof *t + len + 1);

        t->refs = 1;
        t->len = len;
        memcpy(t->data, data, len);
        t->data[len] = '\0';
        return t;
}

StoreText *store_text_ref(StoreText *t) {
        __atomic_add_fetch(&t->refs, 1, __ATOMIC_RELAXED);
        return t;
}

void store_text_unref(StoreText *t) {
        if (t && __atomic_sub_fetch(&t->refs, 1, __ATOMIC_ACQ_REL) == 0)
                free(t);
}

/* ---- the index --------------------------------------------------------- */

static Entry *entry_new(const char *kind, const char *ns, const char *name) {
        size_t lk = strlen(kind) + 1, ln = strlen(ns) + 1, lm = strlen(name) + 1;
        Entry *e = xmalloc(sizeof *e + lk + ln + lm);
        char *p = (char *) (e + 1);

        e->kind = memcpy(p, kind, lk);
        e->ns = memcpy(p += lk, ns, ln);
        e->name = memcpy(p += ln, name, lm);
        e->text = NULL;
        e->revision = 0;
        e->labels = NULL;
        return e;
}

static void entry_free(Entry *e) {
        if (!e)
                return;
        store_text_unref(e->text);
        store_labels_free(e->labels);
        free(e);
}

/* Gives e its labels (taking l), in the index too. Under the write lock. */
static void entry_set_labels(Store *s, Entry *e, StoreLabels *l) {
        label_index_remove(s->labels, e->kind, e->ns, e->name, e->labels);
        store_labels_free(e->labels);
        e->labels = l;
        label_index_add(s->labels, e->kind, e->ns, e->name, l, e);
}

static int key_cmp(const char *k1, const char *n1, const char *m1, const char *k2, const char *n2,
                   const char *m2) {
        int c = strcmp(k1, k2);

        if (c == 0)
                c = strcmp(n1, n2);
        if (c == 0)
                c = strcmp(m1, m2);
        return c;
}

int store_entry_cmp(const void *a, const void *b) {
        const Entry *x = *(Entry *const *) a, *y = *(Entry *const *) b;

        return key_cmp(x->kind, x->ns, x->name, y->kind, y->ns, y->name);
}

size_t store_lower_bound(const Store *s, const char *kind, const char *ns, const char *name) {
        size_t lo = 0, hi = s->n;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                const Entry *e = s->entries[mid];

                if (key_cmp(e->kind, e->ns, e->name, kind, ns, name) < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return lo;
}

static Entry *lookup(const Store *s, const char *kind, const char *ns, const char *name) {
        size_t i = store_lower_bound(s, kind, ns, name);

        if (i < s->n &&
            key_cmp(s->entries[i]->kind, s->entries[i]->ns, s->entries[i]->name, kind, ns, name) == 0)
                return s->entries[i];
        return NULL;
}

static void index_reserve(Store *s, size_t n) {
        if (n <= s->cap)
                return;
        s->cap = n < 64 ? 64 : n + n / 2;
        s->entries = xrealloc(s->entries, s->cap * sizeof *s->entries);
}

/* Merges the sorted array add[0..k) into the sorted index in place, from
 * the back: O(n + k), whatever k is. */
static void index_merge(Store *s, Entry **add, size_t k) {
        size_t i = s->n, j = k, out = s->n + k;

        index_reserve(s, s->n + k);
        while (j > 0) {
                if (i > 0 && store_entry_cmp(&s->entries[i - 1], &add[j - 1]) > 0)
                        s->entries[--out] = s->entries[--i];
                else
                        s->entries[--out] = add[--j];
        }
        s->n += k;
}

/* Drops the entries whose text is NULL (removed in this commit). */
static void index_compact(Store *s) {
        size_t out = 0;

        for (size_t i = 0; i < s->n; i++) {
                if (s->entries[i]->text)
                        s->entries[out++] = s->entries[i];
                else
                        entry_free(s->entries[i]);
        }
        s->n = out;
}

/* ---- open, close ------------------------------------------------------- */

static int load_one(const char *kind, const char *ns, const char *name, uint64_t revision, const char *json,
                    size_t len, void *userdata) {
        Store *s = userdata;
        Entry *e = entry_new(kind, ns, name);

        e->text = store_text_new(json, len);
        e->revision = revision;
        /* most objects have no labels and no indexed or kept field: no parse */
        if (memmem(json, len, "\"labels\"", 8) || store_keeps_fields(kind)) {
                _cleanup_json_ json_t *obj = json_loadb(json, len, 0, NULL);
                entry_set_labels(s, e, store_labels_of(obj));
        }
        index_reserve(s, s->n + 1);
        s->entries[s->n++] = e;
        if (revision > s->revision)
                s->revision = revision;
        return 0;
}

int store_open(const char *url, Store **ret) {
        const StoreBackendOps *ops = NULL;
        const char *location = NULL;
        Store *s;
        int r;

        if (!url || !ret)
                return -EINVAL;
        for (size_t i = 0; i < ELEMENTSOF(backends); i++) {
                size_t l = strlen(backends[i]->scheme);

                if (strncmp(url, backends[i]->scheme, l) == 0 && url[l] == ':') {
                        ops = backends[i];
                        location = url + l + 1;
                }
        }
        if (!ops)
                return -EPROTONOSUPPORT;

        s = xcalloc(1, sizeof *s);
        s->ops = ops;
        pthread_mutex_init(&s->write_lock, NULL);
        pthread_rwlock_init(&s->lock, NULL);
        s->labels = label_index_new();
        commit_queue_init(&s->group);
        s->trees = tree_cache_new();
        r = ops->open(location, &s->backend, &s->revision);
        if (r >= 0)
                r = ops->load(s->backend, load_one, s);
        if (r < 0) {
                store_close(s);
                return r;
        }
        if (s->n > 0)
                qsort(s->entries, s->n, sizeof *s->entries, store_entry_cmp);
        s->feed = store_feed_new(s->revision);
        *ret = s;
        return 0;
}

void store_close(Store *s) {
        if (!s)
                return;
        store_feed_free(s->feed);
        if (s->backend)
                s->ops->close(s->backend);
        for (size_t i = 0; i < s->n; i++)
                entry_free(s->entries[i]);
        free(s->entries);
        label_index_free(s->labels);
        commit_queue_destroy(&s->group);
        tree_cache_free(s->trees);
        pthread_rwlock_destroy(&s->lock);
        pthread_mutex_destroy(&s->write_lock);
        free(s);
}

/* ---- reads ------------------------------------------------------------- */

uint64_t store_revision(Store *s) {
        uint64_t r;

        pthread_rwlock_rdlock(&s->lock);
        r = s->revision;
        pthread_rwlock_unlock(&s->lock);
        return r;
}

size_t store_count(Store *s, const char *kind) {
        size_t n;

        pthread_rwlock_rdlock(&s->lock);
        if (!kind)
                n = s->n;
        else {
                size_t i = store_lower_bound(s, kind, "", "");

                for (n = 0; i + n < s->n && STREQ(s->entries[i + n]->kind, kind); n++)
                        ;
        }
        pthread_rwlock_unlock(&s->lock);
        return n;
}

int store_get(Store *s, const char *kind, const char *ns, const char *name, char **ret_json) {
        char *json = NULL;

        if (!kind || !ns || !name)
                return -EINVAL;
        pthread_rwlock_rdlock(&s->lock);
        const Entry *e = lookup(s, kind, ns, name);
        if (e)
                json = xstrndup(e->text->data, e->text->len);
        pthread_rwlock_unlock(&s->lock);
        if (!json)
                return -ENOENT;
        *ret_json = json;
        return 0;
}

int store_get_revision(Store *s, const char *kind, const char *ns, const char *name, uint64_t *ret) {
        uint64_t revision = 0;

        if (!kind || !ns || !name)
                return -EINVAL;
        pthread_rwlock_rdlock(&s->lock);
        const Entry *e = lookup(s, kind, ns, name);
        if (e)
                revision = e->revision;
        pthread_rwlock_unlock(&s->lock);
        if (!revision)
                return -ENOENT;
        *ret = revision;
        return 0;
}

int store_get_field(Store *s, const char *kind, const char *ns, const char *name, const char *path,
                    char **ret) {
        char *value = NULL;
        int r = -ENOENT;

        if (!kind || !ns || !name || !path)
                return -EINVAL;
        pthread_rwlock_rdlock(&s->lock);
        const Entry *e = lookup(s, kind, ns, name);
        if (e) {
                const char *v = store_field(e->labels, path);
                value = v ? xstrdup(v) : NULL;
                r = v ? 0 : -ENODATA;
        }
        pthread_rwlock_unlock(&s->lock);
        if (r >= 0)
                *ret = value;
        return r;
}

int store_get_json(Store *s, const char *kind, const char *ns, const char *name, json_t **ret) {
        _cleanup_free_ char *text = NULL;
        json_t *obj;
        int r;

        r = store_get(s, kind, ns, name, &text);
        if (r < 0)
                return r;
        obj = json_loads(text, 0, NULL);
        if (!obj)
                return -EIO;
        *ret = obj;
        return 0;
}

typedef struct ListVisit {
        StoreListFn text_fn;
        StoreKeyFn key_fn;
        void *userdata;
} ListVisit;

static int list_entries(Store *s, const char *kind, const char *ns, const ListVisit *v, uint64_t *ret_revision) {
        size_t i = 0;

        pthread_rwlock_rdlock(&s->lock);
        if (kind)
                i = store_lower_bound(s, kind, ns ? ns : "", "");
        for (; i < s->n; i++) {
                const Entry *e = s->entries[i];

                if (kind && !STREQ(e->kind, kind))
                        break;
                if (ns && !STREQ(e->ns, ns)) {
                        if (kind)
                                break;
                        continue;
                }
                if (v->text_fn)
                        v->text_fn(e->text->data, e->text->len, v->userdata);
                else
                        v->key_fn(e->kind, e->ns, e->name, v->userdata);
        }
        if (ret_revision)
                *ret_revision = s->revision;
        pthread_rwlock_unlock(&s->lock);
        return 0;
}

int store_list(Store *s, const char *kind, const char *ns, StoreListFn fn, void *userdata,
               uint64_t *ret_revision) {
        if (!fn)
                return -EINVAL;
        return list_entries(s, kind, ns, &(ListVisit){.text_fn = fn, .userdata = userdata}, ret_revision);
}

int store_list_keys(Store *s, const char *kind, const char *ns, StoreKeyFn fn, void *userdata) {
        if (!fn)
                return -EINVAL;
        return list_entries(s, kind, ns, &(ListVisit){.key_fn = fn, .userdata = userdata}, NULL);
}

void store_stats(Store *s, uint64_t *ret_commits, double *ret_commit_seconds) {
        pthread_rwlock_rdlock(&s->lock);
        if (ret_commits)
                *ret_commits = s->commits;
        if (ret_commit_seconds)
                *ret_commit_seconds = s->commit_seconds;
        pthread_rwlock_unlock(&s->lock);
}

/* ---- the change feed --------------------------------------------------- */

int store_watch(Store *s, uint64_t from_revision, void (*notify)(void *userdata), void *userdata,
                StoreWatch **ret) {
        if (!s || !ret)
                return -EINVAL;
        return store_feed_watch(s->feed, from_revision, notify, userdata, ret);
}

void store_set_feed_limit(Store *s, size_t max_events) {
        store_feed_set_limit(s->feed, max_events);
}

/* ---- commit ------------------------------------------------------------ */

/* One op on its way: its key, the entry it replaces, what it does. */
typedef struct Pending {
        const char *kind, *ns, *name;
        size_t index; /* the op's position */
        Entry *old;
        StoreChange change;
        uint64_t revision; /* when written */
        StoreText *text;   /* the object written (or as it was, for a removal); the result */
        StoreLabels *labels; /* of the object written */
        json_t *tree;        /* the object written, to keep parsed (op.keep_tree) */
} Pending;

static int pending_key_cmp(const void *a, const void *b) {
        const Pending *x = *(Pending *const *) a, *y = *(Pending *const *) b;
        int c = key_cmp(x->kind, x->ns, x->name, y->kind, y->ns, y->name);

        if (c == 0)
                c = x->index < y->index ? -1 : x->index > y->index;
        return c;
}

static void pending_free_all(Pending *p, size_t n) {
        for (size_t i = 0; i < n; i++) {
                json_decref(p[i].change.result);
                json_decref(p[i].tree);
                store_text_unref(p[i].text);
                store_labels_free(p[i].labels);
        }
        free(p);
}

/* -EEXIST with *ret_failed the first op whose key came earlier too. */
static int check_duplicates(Pending *p, size_t n, size_t *ret_failed) {
        _cleanup_free_ Pending **sorted = xmalloc((n ? n : 1) * sizeof *sorted);
        size_t failed = SIZE_MAX;

        for (size_t i = 0; i < n; i++)
                sorted[i] = &p[i];
        qsort(sorted, n, sizeof *sorted, pending_key_cmp);
        for (size_t i = 1; i < n; i++)
                if (key_cmp(sorted[i - 1]->kind, sorted[i - 1]->ns, sorted[i - 1]->name, sorted[i]->kind,
                            sorted[i]->ns, sorted[i]->name) == 0 &&
                    sorted[i]->index < failed)
                        failed = sorted[i]->index;
        if (failed == SIZE_MAX)
                return 0;
        *ret_failed = failed;
        return -EEXIST;
}

static StoreText *text_of(const json_t *obj) {
        _cleanup_free_ char *json = json_dumps(obj, JSON_COMPACT);

        if (!json)
                abort(); /* out of memory */
        return store_text_new(json, strlen(json));
}

/* Works out every op against the index (stable under write_lock); the
 * writes get the revisions after base. */
static int plan(Store *s, StoreOp *ops, Pending *p, size_t n, uint64_t base, size_t *ret_failed) {
        uint64_t revision = base;
        int r;

        for (size_t i = 0; i < n; i++) {
                p[i].index = i;
                r = store_op_key(&ops[i], &p[i].kind, &p[i].ns, &p[i].name);
                if (r < 0) {
                        *ret_failed = i;
                        return r;
                }
        }
        r = check_duplicates(p, n, ret_failed);
        if (r < 0)
                return r;

        for (size_t i = 0; i < n; i++) {
                _cleanup_json_ json_t *old = NULL;

                p[i].old = lookup(s, p[i].kind, p[i].ns, p[i].name);
                bool keep = ops[i].keep_tree && ops[i].type == STORE_OP_STATUS;
                if (p[i].old && keep)
                        old = tree_cache_get(s->trees, p[i].kind, p[i].ns, p[i].name, p[i].old->revision);
                if (p[i].old && !old) {
                        old = json_loadb(p[i].old->text->data, p[i].old->text->len, 0, NULL);
                        if (!old) {
                                *ret_failed = i;
                                return -EIO;
                        }
                }
                r = store_object_change(&ops[i], old, p[i].old ? p[i].old->revision : 0, &p[i].change);
                if (r < 0) {
                        *ret_failed = i;
                        return r;
                }
                if (p[i].change.write) {
                        p[i].revision = ++revision;
                        store_object_stamp(p[i].change.result, p[i].revision);
                        p[i].text = text_of(p[i].change.result);
                        if (!p[i].change.remove)
                                p[i].labels = store_labels_of(p[i].change.result);
                } else
                        p[i].text = store_text_ref(p[i].old->text); /* unchanged: as stored */
                /* Only the text goes on: a 10,000-object commit must not
                 * hold 10,000 trees (but one a writer asked to keep). */
                if (keep && p[i].change.write && !p[i].change.remove)
                        p[i].tree = TAKE_PTR(p[i].change.result);
                json_decref(TAKE_PTR(p[i].change.result));
        }
        return 0;
}

/* One request of a batch, planned: its ops' pendings and the revision of
 * its last write (the running revision when it writes nothing). */
typedef struct Planned {
        CommitRequest *req;
        Pending *p;
        uint64_t revision;
} Planned;

/* The one backend transaction of a batch. Returns the time it took in
 * *ret_seconds. */
static int write_backend(Store *s, const Planned *pl, size_t m, uint64_t revision, double *ret_seconds) {
        uint64_t start = now_mono_usec();
        int r;

        r = s->ops->begin(s->backend);
        if (r < 0)
                return r;
        for (size_t k = 0; k < m && r >= 0; k++)
                for (size_t i = 0; i < pl[k].req->n && r >= 0; i++) {
                        const Pending *p = &pl[k].p[i];
                        if (!p->change.write)
                                continue;
                        if (p->change.remove)
                                r = s->ops->del(s->backend, p->kind, p->ns, p->name);
                        else
                                r = s->ops->put(s->backend, p->kind, p->ns, p->name, p->revision, p->text->data,
                                                p->text->len);
                }
        if (r >= 0)
                r = s->ops->commit(s->backend, revision);
        else
                s->ops->rollback(s->backend);
        *ret_seconds = (double) (now_mono_usec() - start) / 1e6;
        if (r >= 0)
                return 0;
        return r == -ENOSPC || r == -EIDRM || r == -EUCLEAN || r == -EROFS ? r : -EIO;
}

/* Swaps the written objects into the index and the feed. Under the index's
 * write lock. The feed gets its events before readers can see the new
 * revision, so a list at revision R followed by a watch from R misses
 * nothing. */
static void publish(Store *s, Pending *p, size_t n, uint64_t revision) {
        _cleanup_free_ Entry **added = NULL;
        size_t n_added = 0;
        bool removed = false;

        for (size_t i = 0; i < n; i++) {
                Pending *q = &p[i];
                Entry *e = q->old;

                if (!q->change.write)
                        continue;
                store_feed_push(s->feed, q->change.event, q->revision, q->kind, q->ns, q->name, q->text,
                                !e || !store_labels_same(e->labels, q->labels));
                if (q->change.remove) {
                        entry_set_labels(s, e, NULL);
                        store_text_unref(TAKE_PTR(e->text));
                        removed = true;
                        continue;
                }
                if (!e) {
                        if (!added)
                                added = xmalloc(n * sizeof *added);
                        e = added[n_added++] = entry_new(q->kind, q->ns, q->name);
                }
                store_text_unref(e->text);
                e->text = store_text_ref(q->text);
                e->revision = q->revision;
                entry_set_labels(s, e, TAKE_PTR(q->labels));
        }
        if (removed)
                index_compact(s);
        if (n_added > 0) {
                qsort(added, n_added, sizeof *added, store_entry_cmp);
                index_merge(s, added, n_added);
        }
        s->revision = revision;
}

/* An op's results, from its pending (which gives up its text). */
static void op_results(StoreOp *ops, Pending *p, size_t n) {
        for (size_t i = 0; i < n; i++) {
                ops[i].outcome = p[i].change.outcome;
                ops[i].revision = p[i].change.write ? p[i].revision : p[i].old->revision;
                ops[i].result_ref = TAKE_PTR(p[i].text);
                ops[i].result = ops[i].result_ref->data;
                ops[i].result_len = ops[i].result_ref->len;
        }
}

/* Calls fn with each key ("kind\x1fns\x1fname") req writes; stops at the
 * first true. Ops without a key are left to plan() to refuse. */
static bool each_key(const CommitRequest *req, bool (*fn)(Hashmap *touched, const char *key), Hashmap *touched) {
        for (size_t i = 0; i < req->n; i++) {
                const char *kind, *ns, *name;
                if (store_op_key(&req->ops[i], &kind, &ns, &name) < 0)
                        continue;
                _cleanup_free_ char *key = xasprintf("%s\x1f%s\x1f%s", kind, ns, name);
                if (fn(touched, key))
                        return true;
        }
        return false;
}

static bool key_touched(Hashmap *touched, const char *key) {
        return hashmap_get(touched, key) != NULL;
}

static bool key_touch(Hashmap *touched, const char *key) {
        hashmap_put(touched, key, (void *) 1);
        return false;
}

/* After a write: the trees its writers asked to keep are kept; any other
 * write of a kept object lets its tree go. Under write_lock. */
static void trees_keep(Store *s, Pending *p, size_t n) {
        for (size_t i = 0; i < n; i++) {
                if (!p[i].change.write)
                        continue;
                if (p[i].tree)
                        tree_cache_put(s->trees, p[i].kind, p[i].ns, p[i].name, p[i].revision,
                                       TAKE_PTR(p[i].tree));
                else
                        tree_cache_drop(s->trees, p[i].kind, p[i].ns, p[i].name);
        }
}

/* Plans the requests of batch in order, up to the first that touches what
 * an earlier one did, writes them in one transaction and publishes them.
 * A request that fails to plan fails alone. Returns the requests left.
 * Under write_lock. */
static CommitRequest *commit_some(Store *s, CommitRequest *batch) {
        _cleanup_free_ Planned *pl = NULL;
        Hashmap *touched = hashmap_new();
        uint64_t revision = s->revision;
        double seconds = 0;
        size_t m = 0;
        CommitRequest *req;
        int r = 0;

        for (req = batch; req; req = req->next) {
                /* A request that touches what one planned before it in this
                 * batch must see that one's result: the batch ends here. */
                if (each_key(req, key_touched, touched))
                        break;
                Pending *p = xcalloc(req->n ? req->n : 1, sizeof *p);
                req->r = plan(s, req->ops, p, req->n, revision, &req->failed);
                if (req->r < 0) {
                        pending_free_all(p, req->n);
                        continue;
                }
                for (size_t i = 0; i < req->n; i++)
                        if (p[i].change.write)
                                revision = p[i].revision;
                (void) each_key(req, key_touch, touched);
                pl = xrealloc(pl, (m + 1) * sizeof *pl);
                pl[m++] = (Planned){req, p, revision};
        }
        hashmap_free(touched);

        bool writes = revision != s->revision;
        if (writes)
                r = write_backend(s, pl, m, revision, &seconds);
        if (r >= 0 && writes) {
                pthread_rwlock_wrlock(&s->lock);
                for (size_t k = 0; k < m; k++) {
                        publish(s, pl[k].p, pl[k].req->n, pl[k].revision);
                        trees_keep(s, pl[k].p, pl[k].req->n);
                }
                s->commits++;
                s->commit_seconds += seconds;
                pthread_rwlock_unlock(&s->lock);
        }
        for (size_t k = 0; k < m; k++) {
                pl[k].req->r = r;
                pl[k].req->failed = 0;
                pl[k].req->wrote = r >= 0 && writes;
                if (r >= 0)
                        op_results(pl[k].req->ops, pl[k].p, pl[k].req->n);
                pending_free_all(pl[k].p, pl[k].req->n);
        }
        return req;
}

static void commit_batch(void *ctx, CommitRequest *batch) {
        Store *s = ctx;
        bool wrote = false;

        pthread_mutex_lock(&s->write_lock);
        for (CommitRequest *rest = batch; rest;)
                rest = commit_some(s, rest);
        pthread_mutex_unlock(&s->write_lock);
        for (CommitRequest *r = batch; r; r = r->next)
                wrote = wrote || r->wrote;
        if (wrote)
                store_feed_notify(s->feed);
}

/* A dry run plans against the index and writes nothing: no batch. */
static int commit_dry_run(Store *s, StoreOp *ops, size_t n, size_t *ret_failed) {
        Pending *p = xcalloc(n ? n : 1, sizeof *p);
        size_t failed = 0;

        pthread_mutex_lock(&s->write_lock);
        int r = plan(s, ops, p, n, s->revision, &failed);
        pthread_mutex_unlock(&s->write_lock);
        if (r >= 0)
                op_results(ops, p, n);
        else if (ret_failed)
                *ret_failed = failed;
        pending_free_all(p, n);
        return r;
}

int store_commit(Store *s, StoreOp *ops, size_t n, bool dry_run, size_t *ret_failed) {
        if (!s || (!ops && n > 0))
                return -EINVAL;
        if (dry_run)
                return commit_dry_run(s, ops, n, ret_failed);

        CommitRequest req = {.ops = ops, .n = n};
        commit_queue_run(&s->group, &req, commit_batch, s);
        if (req.r < 0 && ret_failed)
                *ret_failed = req.failed;
        return req.r;
}

void store_ops_clear(StoreOp *ops, size_t n) {
        for (size_t i = 0; ops && i < n; i++) {
                store_text_unref(ops[i].result_ref);
                ops[i].result_ref = NULL;
                ops[i].result = NULL;
                ops[i].result_len = 0;
        }
}

json_t *store_op_result_json(const StoreOp *op) {
        return op->result ? json_loadb(op->result, op->result_len, 0, NULL) : NULL;
}

int store_health(Store *s) {
        return s->ops->health ? s->ops->health(s->backend) : 0;
}

int store_backup(Store *s, const char *path) {
        if (!s->ops->backup)
                return -EOPNOTSUPP;
        return s->ops->backup(s->backend, path);
}
