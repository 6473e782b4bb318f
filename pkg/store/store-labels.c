/* store-labels: each object's labels kept beside its text, and an index
 * from (kind, label, value) to the objects that carry it.
 *
 * A label selector is answered without parsing a single object: the index
 * gives the objects of its rarest k=v requirement, and the rest of the
 * selector is checked against the labels kept here. An object's labels are
 * read once, when it is written (or loaded), into one packed allocation. */
#include <string.h>

#include "store/store-backend.h"

struct StoreLabels {
        size_t n;
        const char *kv[]; /* key, value, key, value, ... then the strings themselves */
};

StoreLabels *store_labels_of(const json_t *obj) {
        const json_t *labels = json_object_get(json_object_get(obj, "metadata"), "labels");
        size_t n = 0, bytes = 0;
        const char *key;
        json_t *value;

        json_object_foreach((json_t *) labels, key, value)
                if (json_is_string(value)) {
                        n++;
                        bytes += strlen(key) + json_string_length(value) + 2;
                }
        if (n == 0)
                return NULL;
        StoreLabels *l = xmalloc(sizeof *l + 2 * n * sizeof(char *) + bytes);
        char *p = (char *) &l->kv[2 * n];
        l->n = 0;
        json_object_foreach((json_t *) labels, key, value) {
                if (!json_is_string(value))
                        continue;
                size_t lk = strlen(key) + 1, lv = json_string_length(value) + 1;
                l->kv[2 * l->n] = memcpy(p, key, lk);
                l->kv[2 * l->n + 1] = memcpy(p + lk, json_string_value(value), lv);
                p += lk + lv;
                l->n++;
        }
        return l;
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
