/* store-labels: each object's labels kept beside its text, and an index
 * from (kind, label, value) to the objects that carry it.
 *
 * A label selector is answered without parsing a single object: the index
 * gives the objects of its rarest k=v requirement, and the rest of the
 * selector is checked against the labels kept here. An object's labels are
 * read once, when it is written (or loaded), into one packed allocation.
 *
 * The spec fields a kind's schema marks x-rpr-index (a Binding's repo, a
 * Run's server) ride along as labels under a key no label can have
 * (STORE_FIELD_KEY + "spec.repo"), so that store_list_where finds the
 * objects that refer to a name the same way. */
#include <string.h>

#include "resource/resource.h"
#include "store/store-backend.h"

struct StoreLabels {
        size_t n;
        const char *kv[]; /* key, value, key, value, ... then the strings themselves */
};

/* Calls fn for each label and indexed field of obj (a field under its
 * STORE_FIELD_KEY name, written into buf). */
static void each_pair(const json_t *obj, void (*fn)(const char *key, const char *value, void *userdata),
                      void *userdata) {
        const json_t *labels = json_object_get(json_object_get(obj, "metadata"), "labels");
        const Kind *kind = kind_lookup(json_str_at(obj, "kind") ?: "");
        const char *key;
        json_t *value;

        json_object_foreach((json_t *) labels, key, value)
                if (json_is_string(value))
                        fn(key, json_string_value(value), userdata);
        for (const char *const *f = kind ? kind_indexed_fields(kind) : NULL; f && *f; f++) {
                const char *v = json_str_at(json_object_get(obj, "spec"), *f);
                if (v) {
                        _cleanup_free_ char *k = xasprintf(STORE_FIELD_KEY "spec.%s", *f);
                        fn(k, v, userdata);
                }
        }
}

typedef struct Packing {
        StoreLabels *l;
        size_t n, bytes;
        char *p;
} Packing;

static void count_pair(const char *key, const char *value, void *userdata) {
        Packing *k = userdata;

        k->n++;
        k->bytes += strlen(key) + strlen(value) + 2;
}

static void pack_pair(const char *key, const char *value, void *userdata) {
        Packing *k = userdata;
        size_t lk = strlen(key) + 1, lv = strlen(value) + 1;

        k->l->kv[2 * k->l->n] = memcpy(k->p, key, lk);
        k->l->kv[2 * k->l->n + 1] = memcpy(k->p + lk, value, lv);
        k->p += lk + lv;
        k->l->n++;
}

StoreLabels *store_labels_of(const json_t *obj) {
        Packing k = {0};

        each_pair(obj, count_pair, &k);
        if (k.n == 0)
                return NULL;
        k.l = xmalloc(sizeof *k.l + 2 * k.n * sizeof(char *) + k.bytes);
        k.l->n = 0;
        k.p = (char *) &k.l->kv[2 * k.n];
        each_pair(obj, pack_pair, &k);
        return k.l;
}

void store_labels_free(StoreLabels *l) {
        free(l);
}

const char *store_labels_get(const StoreLabels *l, const char *key) {
        for (size_t i = 0; l && i < l->n; i++)
                if (STREQ(l->kv[2 * i], key))
                        return l->kv[2 * i + 1];
        return NULL;
}

/* ---- the index ------------------------------------------------------------------ */

/* "kind\x1fkey\x1fvalue" -> Hashmap of "ns\x1fname" -> the caller's entry. */
struct LabelIndex {
        Hashmap *postings;
};

LabelIndex *label_index_new(void) {
        LabelIndex *x = xcalloc(1, sizeof *x);

        x->postings = hashmap_new();
        return x;
}

static void posting_free(const char *key, void *value, void *userdata) {
        (void) key, (void) userdata;
        hashmap_free(value);
}

void label_index_free(LabelIndex *x) {
        if (!x)
                return;
        hashmap_foreach(x->postings, posting_free, NULL);
        hashmap_free(x->postings);
        free(x);
}

static char *posting_key(const char *kind, const char *key, const char *value) {
        return xasprintf("%s\x1f%s\x1f%s", kind, key, value);
}

void label_index_add(LabelIndex *x, const char *kind, const char *ns, const char *name, const StoreLabels *l,
                     void *entry) {
        _cleanup_free_ char *member = xasprintf("%s\x1f%s", ns, name);

        for (size_t i = 0; l && i < l->n; i++) {
                _cleanup_free_ char *pk = posting_key(kind, l->kv[2 * i], l->kv[2 * i + 1]);
                Hashmap *m = hashmap_get(x->postings, pk);
                if (!m) {
                        m = hashmap_new();
                        hashmap_put(x->postings, pk, m);
                }
                hashmap_put(m, member, entry);
        }
}

void label_index_remove(LabelIndex *x, const char *kind, const char *ns, const char *name,
                        const StoreLabels *l) {
        _cleanup_free_ char *member = xasprintf("%s\x1f%s", ns, name);

        for (size_t i = 0; l && i < l->n; i++) {
                _cleanup_free_ char *pk = posting_key(kind, l->kv[2 * i], l->kv[2 * i + 1]);
                Hashmap *m = hashmap_get(x->postings, pk);
                if (!m)
                        continue;
                hashmap_remove(m, member);
                if (hashmap_size(m) == 0)
                        hashmap_free(hashmap_remove(x->postings, pk));
        }
}

const Hashmap *label_index_find(const LabelIndex *x, const char *kind, const char *key, const char *value) {
        _cleanup_free_ char *pk = posting_key(kind, key, value);

        return hashmap_get(x->postings, pk);
}
