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
 * objects that refer to a name the same way.
 *
 * A few fields that listings of many objects read are kept beside the
 * object too, under STORE_KEPT_KEY, without an index of their own: a
 * Pipeline's reconcile, a Binding's trimming read the phase and times of
 * their Runs from here (store_list_fields), never parsing a Run whose
 * status holds hundreds of task states. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "resource/resource.h"
#include "store/store-backend.h"

struct StoreLabels {
        size_t n;
        const char *kv[]; /* key, value, key, value, ... then the strings themselves */
};

/* The fields kept (not indexed) beside each object of a kind, as paths
 * "spec.F" or "status.F" to string values. */
static const struct {
        const char *kind;
        const char *const paths[4];
} kept_fields[] = {
        {"Run", {"status.phase", "status.notBefore", "status.endTime", NULL}},
};

static const char *const *kept_of(const char *kind) {
        for (size_t i = 0; kind && i < ELEMENTSOF(kept_fields); i++)
                if (STREQ(kept_fields[i].kind, kind))
                        return kept_fields[i].paths;
        return NULL;
}

bool store_keeps_fields(const char *kind) {
        const Kind *k = kind_lookup(kind);

        return kept_of(kind) || (k && *kind_indexed_fields(k));
}

/* obj's string at "spec.F" or "status.F"; NULL when absent. */
static const char *value_at(const json_t *obj, const char *path) {
        const char *dot = strchr(path, '.');
        char part[16];

        if (!dot || (size_t) (dot - path) >= sizeof part)
                return NULL;
        memcpy(part, path, (size_t) (dot - path));
        part[dot - path] = '\0';
        return json_str_at(json_object_get(obj, part), dot + 1);
}

/* Calls fn for each label, indexed and kept field of obj (a field under
 * its STORE_FIELD_KEY or STORE_KEPT_KEY name). */
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
        for (const char *const *f = kept_of(json_str_at(obj, "kind")); f && *f; f++) {
                const char *v = value_at(obj, *f);
                if (v) {
                        _cleanup_free_ char *k = xasprintf(STORE_KEPT_KEY "%s", *f);
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

const char *store_field(const StoreFields *f, const char *path) {
        char key[64];

        if (snprintf(key, sizeof key, STORE_KEPT_KEY "%s", path) >= (int) sizeof key)
                return NULL;
        const char *v = store_labels_get(f, key);
        if (v)
                return v;
        key[0] = STORE_FIELD_KEY[0];
        return store_labels_get(f, key);
}

static size_t n_indexed(const StoreLabels *l) {
        size_t n = 0;

        for (size_t i = 0; l && i < l->n; i++)
                n += l->kv[2 * i][0] != STORE_KEPT_KEY[0];
        return n;
}

bool store_labels_same(const StoreLabels *a, const StoreLabels *b) {
        if (n_indexed(a) != n_indexed(b))
                return false;
        for (size_t i = 0; a && i < a->n; i++) {
                if (a->kv[2 * i][0] == STORE_KEPT_KEY[0])
                        continue;
                const char *v = store_labels_get(b, a->kv[2 * i]);
                if (!v || !STREQ(v, a->kv[2 * i + 1]))
                        return false;
        }
        return true;
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
                if (l->kv[2 * i][0] == STORE_KEPT_KEY[0])
                        continue; /* kept, not indexed */
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
                if (l->kv[2 * i][0] == STORE_KEPT_KEY[0])
                        continue;
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

/* ---- choosing by label or indexed field (the store's side) ---------------- */

typedef struct Selected {
        const char *ns;
        const Selector *sel;
        Entry **found;
        size_t n, cap;
} Selected;

static const char *entry_label(const char *key, void *userdata) {
        return store_labels_get(((const Entry *) userdata)->labels, key);
}

static void select_entry(Selected *c, Entry *e) {
        if (c->ns && !STREQ(e->ns, c->ns))
                return;
        if (!selector_matches_with(c->sel, entry_label, e))
                return;
        if (c->n == c->cap) {
                c->cap = c->cap ? 2 * c->cap : 16;
                c->found = xrealloc(c->found, c->cap * sizeof *c->found);
        }
        c->found[c->n++] = e;
}

static void select_posting(const char *member, void *value, void *userdata) {
        (void) member;
        select_entry(userdata, value);
}

/* Hands what was found to fn (the texts) or ffn (the kept fields), in key
 * order (as store_list does), and lets it go. Under s->lock. */
static void selected_emit(Selected *c, StoreListFn fn, StoreFieldsFn ffn, void *userdata) {
        if (c->n > 1)
                qsort(c->found, c->n, sizeof *c->found, store_entry_cmp);
        for (size_t i = 0; i < c->n; i++)
                if (fn)
                        fn(c->found[i]->text->data, c->found[i]->text->len, userdata);
                else
                        ffn(c->found[i]->ns, c->found[i]->name, c->found[i]->labels, userdata);
        free(c->found);
        c->found = NULL;
}

/* The smallest posting of sel's k=v requirements; *ret_none when one of
 * them has no object at all. NULL: sel has no such requirement. */
static const Hashmap *best_posting(const Store *s, const char *kind, const Selector *sel, bool *ret_none) {
        const Hashmap *best = NULL;
        const char *key, *value;

        *ret_none = false;
        for (size_t i = 0; selector_equality(sel, i, &key, &value); i++) {
                const Hashmap *m = label_index_find(s->labels, kind, key, value);
                if (!m) {
                        *ret_none = true;
                        return NULL;
                }
                if (!best || hashmap_size(m) < hashmap_size(best))
                        best = m;
        }
        return best;
}

/* The objects of kind in ns matching sel, into c. Under s->lock. */
static void select_all(Store *s, const char *kind, const char *ns, const Selector *sel, Selected *c) {
        bool none;
        const Hashmap *posting = best_posting(s, kind, sel, &none);

        if (posting)
                hashmap_foreach(posting, select_posting, c);
        else if (!none)
                /* no k=v to start from (only !k, k notin (...)): every
                 * object of the kind, but by its kept labels, not parsed */
                for (size_t i = store_lower_bound(s, kind, ns ? ns : "", ""); i < s->n; i++) {
                        if (!STREQ(s->entries[i]->kind, kind) || (ns && !STREQ(s->entries[i]->ns, ns)))
                                break;
                        select_entry(c, s->entries[i]);
                }
}

int store_list_selected(Store *s, const char *kind, const char *ns, const Selector *sel, StoreListFn fn,
                        void *userdata, uint64_t *ret_revision) {
        Selected c = {.ns = ns, .sel = sel};

        if (!sel)
                return store_list(s, kind, ns, fn, userdata, ret_revision);
        if (!kind || !fn)
                return -EINVAL;
        pthread_rwlock_rdlock(&s->lock);
        select_all(s, kind, ns, sel, &c);
        selected_emit(&c, fn, NULL, userdata);
        if (ret_revision)
                *ret_revision = s->revision;
        pthread_rwlock_unlock(&s->lock);
        return 0;
}

int store_list_fields(Store *s, const char *kind, const char *ns, const Selector *sel, StoreFieldsFn fn,
                      void *userdata) {
        Selected c = {.ns = ns, .sel = sel};

        if (!kind || !sel || !fn)
                return -EINVAL;
        pthread_rwlock_rdlock(&s->lock);
        select_all(s, kind, ns, sel, &c);
        selected_emit(&c, NULL, fn, userdata);
        pthread_rwlock_unlock(&s->lock);
        return 0;
}

int store_list_where(Store *s, const char *kind, const char *ns, const char *field, const char *value,
                     StoreListFn fn, void *userdata) {
        _cleanup_free_ char *key = xasprintf(STORE_FIELD_KEY "%s", field ? field : "");
        Selected c = {.ns = ns};

        if (!kind || !field || !value || !fn)
                return -EINVAL;
        pthread_rwlock_rdlock(&s->lock);
        const Hashmap *posting = label_index_find(s->labels, kind, key, value);
        if (posting)
                hashmap_foreach(posting, select_posting, &c);
        selected_emit(&c, fn, NULL, userdata);
        pthread_rwlock_unlock(&s->lock);
        return 0;
}
