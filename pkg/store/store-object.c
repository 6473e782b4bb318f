/* store-object: what a write does to one object, as pure JSON work.
 *
 * Given an op and the object as stored, works out the object to store, the
 * outcome and the event, following the rules in store.h: rprd owns uid,
 * resourceVersion, generation, creationTimestamp and deletionTimestamp;
 * APPLY replaces spec, labels and annotations and keeps status and
 * finalizers; UPDATE takes finalizers too; STATUS replaces status only;
 * generation bumps only when spec changes; a DELETE of an object with
 * finalizers only marks it, and the UPDATE that empties the finalizers of a
 * marked object removes it. A write that changes nothing is UNCHANGED and
 * is not written at all, so the revision does not move. Nothing here
 * touches the index or the backend; the read-modify-write of a status at
 * the end (store_update_status) goes through the public interface. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "store/store-backend.h"

static json_t *meta_of(const json_t *obj) {
        return json_object_get(obj, "metadata");
}

static const char *meta_str(const json_t *obj, const char *key) {
        return json_string_value(json_object_get(meta_of(obj), key));
}

int store_op_key(const StoreOp *op, const char **ret_kind, const char **ret_ns, const char **ret_name) {
        const char *kind = op->kind, *ns = op->ns, *name = op->name;

        if (op->type != STORE_OP_DELETE || op->object) {
                if (!op->object)
                        return -EINVAL;
                kind = json_string_value(json_object_get(op->object, "kind"));
                ns = meta_str(op->object, "namespace");
                name = meta_str(op->object, "name");
        }
        if (!kind || !*kind || !ns || !*ns || !name || !*name)
                return -EINVAL;
        *ret_kind = kind;
        *ret_ns = ns;
        *ret_name = name;
        return 0;
}

void store_object_stamp(json_t *obj, uint64_t revision) {
        char buf[24];

        snprintf(buf, sizeof buf, "%" PRIu64, revision);
        json_object_set_new(meta_of(obj), "resourceVersion", json_string(buf));
}

static bool has_finalizers(const json_t *obj) {
        return json_array_size(json_object_get(meta_of(obj), "finalizers")) > 0;
}

/* Copies key from src into dst (deeply), if src has it. */
static void copy_key(json_t *dst, const json_t *src, const char *key) {
        const json_t *v = json_object_get(src, key);

        if (v)
                json_object_set_new(dst, key, json_deep_copy(v));
}

static bool equal_or_both_absent(const json_t *a, const json_t *b) {
        if (!a || !b)
                return a == b;
        return json_equal(a, b);
}

static void set_now(json_t *meta, const char *key) {
        char buf[RFC3339_MAX];

        json_object_set_new(meta, key, json_string(time_format_rfc3339(now_usec(), buf)));
}

/* The metadata of an APPLY or UPDATE: identity and history from old (or
 * new ones), the user's part from input. */
static json_t *merged_meta(const StoreOp *op, const json_t *old) {
        const json_t *in = meta_of(op->object), *om = meta_of(old);
        json_t *m = json_object();

        copy_key(m, in, "name");
        copy_key(m, in, "namespace");
        if (om) {
                copy_key(m, om, "uid");
                copy_key(m, om, "resourceVersion");
                copy_key(m, om, "generation");
                copy_key(m, om, "creationTimestamp");
                copy_key(m, om, "deletionTimestamp");
        } else {
                char uid[37];

                if (uuid_v4(uid) < 0)
                        abort(); /* getrandom(2) does not fail once the pool is up */
                json_object_set_new(m, "uid", json_string(uid));
                json_object_set_new(m, "resourceVersion", json_string("0"));
                json_object_set_new(m, "generation", json_integer(1));
                set_now(m, "creationTimestamp");
        }
        copy_key(m, in, "labels");
        copy_key(m, in, "annotations");
        /* APPLY keeps the stored finalizers (a new object brings its own);
         * UPDATE takes them as given. Kept only when there are some, so
         * that [] and no key compare equal. */
        const json_t *fin = json_object_get(op->type == STORE_OP_UPDATE || !om ? in : om, "finalizers");
        if (json_array_size(fin) > 0)
                json_object_set_new(m, "finalizers", json_deep_copy(fin));
        /* managedBy: kept unless given; JSON null clears it (a Sync letting
         * an object go). */
        const json_t *managed = json_object_get(in, "managedBy");
        if (!managed)
                copy_key(m, om, "managedBy");
        else if (!json_is_null(managed))
                copy_key(m, in, "managedBy");
        return m;
}

static json_t *applied(const StoreOp *op, const json_t *old) {
        json_t *obj = json_object();

        copy_key(obj, op->object, "apiVersion");
        copy_key(obj, op->object, "kind");
        json_object_set_new(obj, "metadata", merged_meta(op, old));
        copy_key(obj, op->object, "spec");
        /* Status belongs to the controller: kept from the stored object; a
         * new object may bring its first one (a Run made by rprd). */
        copy_key(obj, old ? old : op->object, "status");
        return obj;
}

static int change_apply(const StoreOp *op, const json_t *old, StoreChange *c) {
        json_t *obj = applied(op, old);

        if (!old) {
                *c = (StoreChange){
                        .outcome = STORE_CREATED, .write = true, .event = STORE_EVENT_ADDED, .result = obj};
                return 0;
        }
        if (json_equal(obj, old)) {
                json_decref(obj);
                *c = (StoreChange){.outcome = STORE_UNCHANGED};
                return 0;
        }
        if (!equal_or_both_absent(json_object_get(obj, "spec"), json_object_get(old, "spec"))) {
                json_int_t gen = json_integer_value(json_object_get(meta_of(old), "generation"));

                json_object_set_new(meta_of(obj), "generation", json_integer(gen + 1));
        }
        bool gone = json_object_get(meta_of(obj), "deletionTimestamp") && !has_finalizers(obj);
        *c = (StoreChange){.outcome = gone ? STORE_DELETED : STORE_CONFIGURED,
                           .write = true,
                           .remove = gone,
                           .event = gone ? STORE_EVENT_DELETED : STORE_EVENT_MODIFIED,
                           .result = obj};
        return 0;
}

/* The result shares old's spec and the op's status instead of copying
 * them (a job's are as large as its tasks): it lives only until its text
 * is made, and only its metadata is written to (the stamp). */
static int change_status(const StoreOp *op, const json_t *old, StoreChange *c) {
        const json_t *status = json_object_get(op->object, "status");

        if (json_equal(status, json_object_get(old, "status")) ||
            (!status && !json_object_get(old, "status"))) {
                *c = (StoreChange){.outcome = STORE_UNCHANGED};
                return 0;
        }
        json_t *obj = json_copy((json_t *) old);
        json_object_set_new(obj, "metadata", json_copy(meta_of(old)));
        if (status)
                json_object_set(obj, "status", (json_t *) status);
        else
                json_object_del(obj, "status");
        *c = (StoreChange){
                .outcome = STORE_CONFIGURED, .write = true, .event = STORE_EVENT_MODIFIED, .result = obj};
        return 0;
}

static int change_delete(const json_t *old, StoreChange *c) {
        json_t *obj;

        if (json_object_get(meta_of(old), "deletionTimestamp") && has_finalizers(old)) {
                /* Already marked: nothing more to do until the finalizers go. */
                *c = (StoreChange){.outcome = STORE_DELETED};
                return 0;
        }
        obj = json_deep_copy(old);
        if (!has_finalizers(old)) {
                *c = (StoreChange){.outcome = STORE_DELETED,
                                   .write = true,
                                   .remove = true,
                                   .event = STORE_EVENT_DELETED,
                                   .result = obj};
                return 0;
        }
        set_now(meta_of(obj), "deletionTimestamp");
        *c = (StoreChange){
                .outcome = STORE_DELETED, .write = true, .event = STORE_EVENT_MODIFIED, .result = obj};
        return 0;
}

int store_object_change(const StoreOp *op, const json_t *old, uint64_t old_revision, StoreChange *ret) {
        bool needs_old = op->type == STORE_OP_STATUS || op->type == STORE_OP_DELETE;

        if (!old && needs_old)
                return -ENOENT;
        if (op->expect_revision != 0 && (!old || old_revision != op->expect_revision))
                return -ESTALE;
        if (op->type != STORE_OP_DELETE && !json_is_object(op->object))
                return -EINVAL;

        switch (op->type) {
        case STORE_OP_APPLY:
        case STORE_OP_UPDATE:
                return change_apply(op, old, ret);
        case STORE_OP_STATUS:
                return change_status(op, old, ret);
        case STORE_OP_DELETE:
                return change_delete(old, ret);
        }
        return -EINVAL;
}

/* ---- helpers on the public interface ---------------------------------------- */

#define STATUS_UPDATE_TRIES 5

int store_update_status(Store *s, const char *kind, const char *ns, const char *name, StoreStatusFn next,
                        void *userdata, json_t **ret_object) {
        int r = -ESTALE;

        for (int i = 0; i < STATUS_UPDATE_TRIES && r == -ESTALE; i++) {
                _cleanup_json_ json_t *obj = NULL, *status = NULL;

                r = store_get_json(s, kind, ns, name, &obj);
                if (r < 0)
                        return r;
                status = next(obj, userdata);
                if (!status) {
                        if (ret_object)
                                *ret_object = TAKE_PTR(obj);
                        return 0;
                }
                json_object_set(obj, "status", status);
                StoreOp op = {.type = STORE_OP_STATUS, .object = obj, .expect_revision = store_object_revision(obj)};
                r = store_commit(s, &op, 1, false, NULL);
                if (r >= 0 && ret_object)
                        *ret_object = store_op_result_json(&op);
                store_ops_clear(&op, 1);
        }
        return r;
}

int store_update_status_of(Store *s, const json_t *obj, StoreStatusFn next, void *userdata,
                           json_t **ret_object) {
        const json_t *meta = meta_of(obj);
        const char *kind = json_str_at(obj, "kind"), *ns = json_str_at(meta, "namespace"),
                   *name = json_str_at(meta, "name");
        _cleanup_json_ json_t *status = next(obj, userdata);
        char rv[24];

        if (!kind || !ns || !name)
                return -EINVAL;
        if (!status) {
                if (ret_object)
                        *ret_object = json_incref((json_t *) obj);
                return 0;
        }
        _cleanup_json_ json_t *copy = json_copy((json_t *) obj);
        json_object_set(copy, "status", status);
        StoreOp op = {
                .type = STORE_OP_STATUS, .object = copy, .expect_revision = store_object_revision(obj)};
        int r = store_commit(s, &op, 1, false, NULL);
        store_ops_clear(&op, 1);
        if (r == -ESTALE) /* another write came first: read it, and ask again */
                return store_update_status(s, kind, ns, name, next, userdata, ret_object);
        if (r < 0)
                return r;
        if (ret_object) {
                json_t *m = json_copy((json_t *) meta);
                snprintf(rv, sizeof rv, "%" PRIu64, op.revision);
                json_object_set_new(m, "resourceVersion", json_string(rv));
                json_object_set_new(copy, "metadata", m);
                *ret_object = TAKE_PTR(copy);
        }
        return 0;
}

uint64_t store_object_revision(const json_t *obj) {
        uint64_t rv = 0;

        (void) parse_uint64(json_str_at(json_object_get(obj, "metadata"), "resourceVersion") ?: "", &rv);
        return rv;
}

/* ---- finalizers --------------------------------------------------------------- */

bool store_has_finalizer(const json_t *obj, const char *finalizer) {
        const json_t *fin = json_object_get(meta_of(obj), "finalizers"), *v;
        size_t i;

        json_array_foreach(fin, i, v) if (STREQ(json_string_value(v) ?: "", finalizer)) return true;
        return false;
}

int store_add_finalizer(Store *s, const json_t *obj, const char *finalizer) {
        _cleanup_json_ json_t *copy = json_deep_copy(obj);
        json_t *meta = meta_of(copy);

        if (store_has_finalizer(obj, finalizer))
                return 0;
        if (!json_is_array(json_object_get(meta, "finalizers")))
                json_object_set_new(meta, "finalizers", json_array());
        json_array_append_new(json_object_get(meta, "finalizers"), json_string(finalizer));
        StoreOp op = {.type = STORE_OP_UPDATE, .object = copy, .expect_revision = store_object_revision(obj)};
        int r = store_commit(s, &op, 1, false, NULL);
        store_ops_clear(&op, 1);
        return r == -ESTALE ? 0 : r;
}

int store_remove_finalizer(Store *s, const json_t *obj, const char *finalizer) {
        _cleanup_json_ json_t *copy = store_without_finalizer(obj, finalizer);
        StoreOp op = {.type = STORE_OP_UPDATE, .object = copy, .expect_revision = store_object_revision(obj)};
        int r = store_commit(s, &op, 1, false, NULL);

        store_ops_clear(&op, 1);
        return r == -ESTALE ? 0 : r;
}

json_t *store_without_finalizer(const json_t *obj, const char *finalizer) {
        json_t *copy = json_deep_copy(obj);
        json_t *fin = json_object_get(meta_of(copy), "finalizers");

        for (size_t i = 0; i < json_array_size(fin); i++)
                if (STREQ(json_string_value(json_array_get(fin, i)) ?: "", finalizer))
                        json_array_remove(fin, i--);
        return copy;
}
