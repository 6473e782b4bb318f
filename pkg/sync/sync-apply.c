/* sync-apply: from a rendered revision to one store commit.
 *
 * The plan compares each object of the revision with the live one and
 * writes only what differs (spec, labels, annotations, managedBy), so a
 * commit that changes one manifest writes one object, and a drift check
 * that finds nothing writes nothing. Every write of an existing object
 * carries its resourceVersion: a hand edit or another Sync slipping in
 * between fails the whole commit, which is then planned again. Objects the
 * Sync does not manage are never written: they are Conflicts.
 *
 * The memo makes the comparison cheap: an object whose manifest did not
 * change and whose live resourceVersion is the one it had when last found
 * in sync is still in sync, without being parsed. */
#include <string.h>

#include "resource/resource.h"
#include "sync/sync-private.h"

char *sync_key(const json_t *obj) {
        const json_t *meta = json_object_get(obj, "metadata");

        return xasprintf("%s/%s/%s", json_str_at(obj, "kind") ?: "?", json_str_at(meta, "namespace") ?: "?",
                         json_str_at(meta, "name") ?: "?");
}

/* key (may be NULL): the object whose written revision the memo keeps. */
static void plan_add(SyncPlan *p, StoreOp op, const char *key) {
        if (p->n_ops == p->cap) {
                p->cap = p->cap ? p->cap * 2 : 64;
                p->ops = xrealloc(p->ops, p->cap * sizeof *p->ops);
        }
        p->ops[p->n_ops++] = op;
        json_array_append_new(p->op_keys, key ? json_string(key) : json_null());
}

/* An op on obj, which the plan keeps. */
static void plan_write(SyncPlan *p, StoreOpType type, json_t *obj, uint64_t expect, const char *key) {
        json_array_append_new(p->inputs, obj);
        plan_add(p, (StoreOp){.type = type, .object = obj, .expect_revision = expect}, key);
}

static void plan_init(SyncPlan *p) {
        *p = (SyncPlan){.inputs = json_array(),
                        .inventory = json_array(),
                        .changed = json_array(),
                        .conflicts = json_array(),
                        .seen = json_object(),
                        .op_keys = json_array()};
}

/* The resourceVersion in a stored object's text, without parsing it. */
static uint64_t text_revision(const char *text) {
        static const char field[] = "\"resourceVersion\":\"";
        const char *p = strstr(text, field);
        uint64_t v = 0;

        if (!p)
                return 0;
        for (p += strlen(field); *p >= '0' && *p <= '9'; p++)
                v = v * 10 + (uint64_t) (*p - '0');
        return v;
}

static bool same_field(const json_t *a, const json_t *b, const char *key) {
        const json_t *x = json_object_get(a, key), *y = json_object_get(b, key);

        if (!x || !y)
                return x == y || json_object_size(x ?: y) == 0;
        return json_equal(x, y);
}

/* Whether live already is what want says (status is never compared). */
static bool in_sync(const json_t *want, const json_t *live) {
        const json_t *wm = json_object_get(want, "metadata"), *lm = json_object_get(live, "metadata");

        return same_field(want, live, "spec") && same_field(wm, lm, "labels") &&
               same_field(wm, lm, "annotations") && same_field(wm, lm, "managedBy");
}

static json_t *inventory_entry(const json_t *obj) {
        const json_t *meta = json_object_get(obj, "metadata");

        return json_pack("{s:s?, s:s?, s:s?}", "kind", json_str_at(obj, "kind"), "namespace",
                         json_str_at(meta, "namespace"), "name", json_str_at(meta, "name"));
}

static const char *managed_by(const json_t *obj) {
        return json_str_at(json_object_get(obj, "metadata"), "managedBy");
}

static void plan_object(SyncController *s, const SyncSpec *spec, SyncMemo *memo, const json_t *want,
                        SyncPlan *p) {
        const json_t *meta = json_object_get(want, "metadata");
        _cleanup_json_ json_t *live = NULL;
        _cleanup_free_ char *key = sync_key(want), *text = NULL;

        json_array_append_new(p->inventory, inventory_entry(want));
        if (store_get(s->store, json_str_at(want, "kind"), json_str_at(meta, "namespace"),
                      json_str_at(meta, "name"), &text) < 0) {
                p->created++;
                json_array_append_new(p->changed, json_string(key));
                plan_write(p, STORE_OP_APPLY, json_deep_copy(want), 0, key);
                return;
        }
        uint64_t rv = text_revision(text);
        if (rv != 0 && (uint64_t) json_integer_value(json_object_get(memo->seen, key)) == rv) {
                json_object_set_new(p->seen, key, json_integer((json_int_t) rv));
                return;
        }
        live = json_loads(text, 0, NULL);
        const char *owner = managed_by(live);
        if (!owner || !STREQ(owner, spec->owner)) {
                json_array_append_new(
                        p->conflicts,
                        owner ? json_sprintf("%s is managed by %s", key, owner)
                              : json_sprintf("%s exists and is not managed by a Sync (made by "
                                             "hand); delete it or remove it from the repository",
                                             key));
                return;
        }
        if (in_sync(want, live)) {
                json_object_set_new(p->seen, key, json_integer((json_int_t) rv));
                return;
        }
        p->updated++;
        json_array_append_new(p->changed, json_string(key));
        plan_write(p, STORE_OP_APPLY, json_deep_copy(want), store_object_revision(live), key);
}

/* An object of the old inventory that left the repository: deleted, or
 * let go (managedBy cleared) when pruning is off or the object asks to
 * stay. Objects no longer ours are left alone. */
static void plan_leave(SyncController *s, const SyncSpec *spec, const json_t *entry, bool prune,
                       SyncPlan *p) {
        _cleanup_json_ json_t *live = NULL;
        const char *kind = json_str_at(entry, "kind"), *ns = json_str_at(entry, "namespace"),
                   *name = json_str_at(entry, "name");

        if (!kind || !ns || !name || store_get_json(s->store, kind, ns, name, &live) < 0)
                return;
        if (!managed_by(live) || !STREQ(managed_by(live), spec->owner))
                return;
        const char *keep =
                json_str_at(json_object_get(json_object_get(live, "metadata"), "annotations"), "rpr/prune");
        if (prune && !(keep && STREQ(keep, "disabled"))) {
                p->deleted++;
                plan_add(p,
                         (StoreOp){.type = STORE_OP_DELETE,
                                   .kind = kind,
                                   .ns = ns,
                                   .name = name,
                                   .expect_revision = store_object_revision(live)},
                         NULL);
                return;
        }
        json_t *let_go = json_deep_copy(live);
        json_object_set_new(json_object_get(let_go, "metadata"), "managedBy", json_null());
        p->released++;
        plan_write(p, STORE_OP_APPLY, let_go, store_object_revision(live), NULL);
}

/* The DELETE ops point into the old inventory: the caller keeps obj alive
 * as long as the plan. */
void sync_plan(SyncController *s, const SyncSpec *spec, SyncMemo *memo, const json_t *obj,
               const json_t *objects, SyncPlan *ret) {
        const json_t *old = json_object_get(json_object_get(obj, "status"), "inventory");
        _cleanup_json_ json_t *wanted = json_object();
        size_t i;
        json_t *v;

        plan_init(ret);
        json_array_foreach(objects, i, v) {
                _cleanup_free_ char *key = sync_key(v);
                plan_object(s, spec, memo, v, ret);
                json_object_set_new(wanted, key, json_true());
        }
        json_array_foreach(old, i, v) {
                _cleanup_free_ char *key =
                        xasprintf("%s/%s/%s", json_str_at(v, "kind") ?: "?",
                                  json_str_at(v, "namespace") ?: "?", json_str_at(v, "name") ?: "?");
                if (!json_object_get(wanted, key))
                        plan_leave(s, spec, v, spec->prune, ret);
        }
}

void sync_plan_finalize(SyncController *s, const SyncSpec *spec, const json_t *obj, SyncPlan *ret) {
        const json_t *old = json_object_get(json_object_get(obj, "status"), "inventory");
        const json_t *fin = json_object_get(json_object_get(obj, "metadata"), "finalizers");
        json_t *done = json_deep_copy(obj), *left = json_array();
        size_t i;
        json_t *v;

        plan_init(ret);
        json_array_foreach(old, i, v) {
                plan_leave(s, spec, v, spec->prune && !spec->suspend, ret);
        }
        json_array_foreach(fin, i, v) {
                if (!json_is_string(v) || !STREQ(json_string_value(v), SYNC_FINALIZER))
                        json_array_append(left, v);
        }
        json_object_set_new(json_object_get(done, "metadata"), "finalizers", left);
        plan_write(ret, STORE_OP_UPDATE, done, store_object_revision(obj), NULL);
}

/* After a commit: the revisions written are what the memo now knows in
 * sync; after a failure it knows nothing. */
static void memo_update(SyncMemo *memo, SyncPlan *p, int k) {
        if (!memo)
                return;
        if (k < 0) {
                json_object_clear(memo->seen);
                return;
        }
        for (size_t i = 0; i < p->n_ops; i++) {
                const char *key = json_string_value(json_array_get(p->op_keys, i));
                if (key)
                        json_object_set_new(p->seen, key, json_integer((json_int_t) p->ops[i].revision));
        }
        json_decref(memo->seen);
        memo->seen = json_incref(p->seen);
}

int sync_plan_commit(SyncController *s, SyncPlan *p, SyncMemo *memo, const json_t *obj, json_t *status) {
        size_t failed = 0;
        int k = 0;

        if (status) {
                json_t *next = json_copy((json_t *) obj);
                json_object_set(next, "status", status);
                plan_write(p, STORE_OP_STATUS, next, store_object_revision(obj), NULL);
        }
        if (p->n_ops > 0)
                k = store_commit(s->store, p->ops, p->n_ops, false, &failed);
        if (k < 0)
                log_debug("sync: commit of %zu writes failed at %zu: %s", p->n_ops, failed, strerror(-k));
        memo_update(memo, p, k);
        store_ops_clear(p->ops, k >= 0 ? p->n_ops : 0);
        return k;
}

void sync_plan_clear(SyncPlan *p) {
        free(p->ops);
        json_decref(p->inputs);
        json_decref(p->inventory);
        json_decref(p->changed);
        json_decref(p->conflicts);
        json_decref(p->seen);
        json_decref(p->op_keys);
        *p = (SyncPlan){0};
}
