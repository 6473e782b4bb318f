/* controller-keys.c: the controller's key table (a chained hash table) and
 * its timer heap (a binary min-heap ordered by due time).
 *
 * Both are plain data structures: the caller holds the controller's lock.
 * Each entry remembers its heap slot so that a timer can be moved earlier or
 * dropped in O(log n) when the key runs for another reason. */
#include <string.h>

#include "controller/controller-private.h"

/* ---- key table --------------------------------------------------------- */

static uint64_t hash_part(uint64_t h, const char *s) {
        /* FNV-1a, with the NUL so that ("ab","c") and ("a","bc") differ. */
        for (const unsigned char *p = (const unsigned char *) s;; p++) {
                h ^= *p;
                h *= UINT64_C(1099511628211);
                if (!*p)
                        return h;
        }
}

static size_t key_hash(const char *kind, const char *ns, const char *name) {
        uint64_t h = UINT64_C(14695981039346656037);

        h = hash_part(h, kind);
        h = hash_part(h, ns);
        h = hash_part(h, name);
        return (size_t) h;
}

static bool key_equal(const KeyEntry *e, const char *kind, const char *ns, const char *name) {
        return STREQ(e->kind, kind) && STREQ(e->ns, ns) && STREQ(e->name, name);
}

static void keys_grow(KeyTable *t) {
        size_t n = t->n_buckets ? t->n_buckets * 2 : 64;
        KeyEntry **b = xcalloc(n, sizeof *b);

        for (size_t i = 0; i < t->n_buckets; i++)
                while (t->buckets[i]) {
                        KeyEntry *e = t->buckets[i];
                        t->buckets[i] = e->hash_next;
                        size_t j = key_hash(e->kind, e->ns, e->name) & (n - 1);
                        e->hash_next = b[j];
                        b[j] = e;
                }
        free(t->buckets);
        t->buckets = b;
        t->n_buckets = n;
}

KeyEntry *keys_find(KeyTable *t, const char *kind, const char *ns, const char *name) {
        if (t->n_buckets == 0)
                return NULL;
        for (KeyEntry *e = t->buckets[key_hash(kind, ns, name) & (t->n_buckets - 1)]; e; e = e->hash_next)
                if (key_equal(e, kind, ns, name))
                        return e;
        return NULL;
}

KeyEntry *keys_get(KeyTable *t, const char *kind, const char *ns, const char *name, size_t registration) {
        KeyEntry *e = keys_find(t, kind, ns, name);

        if (e)
                return e;
        if (t->n >= t->n_buckets)
                keys_grow(t);
        e = xcalloc(1, sizeof *e);
        e->kind = xstrdup(kind);
        e->ns = xstrdup(ns);
        e->name = xstrdup(name);
        e->registration = registration;
        size_t i = key_hash(kind, ns, name) & (t->n_buckets - 1);
        e->hash_next = t->buckets[i];
        t->buckets[i] = e;
        t->n++;
        return e;
}

static void entry_free(KeyEntry *e) {
        free(e->kind);
        free(e->ns);
        free(e->name);
        free(e);
}

void keys_remove(KeyTable *t, KeyEntry *e) {
        KeyEntry **p = &t->buckets[key_hash(e->kind, e->ns, e->name) & (t->n_buckets - 1)];

        while (*p != e)
                p = &(*p)->hash_next;
        *p = e->hash_next;
        t->n--;
        entry_free(e);
}

void keys_free(KeyTable *t) {
        for (size_t i = 0; i < t->n_buckets; i++)
                while (t->buckets[i]) {
                        KeyEntry *e = t->buckets[i];
                        t->buckets[i] = e->hash_next;
                        entry_free(e);
                }
        free(t->buckets);
        *t = (KeyTable){0};
}

/* ---- timer heap -------------------------------------------------------- */

static void heap_set(TimerHeap *h, size_t i, KeyEntry *e) {
        h->items[i] = e;
        e->heap_index = i;
}

static void sift_up(TimerHeap *h, size_t i) {
        KeyEntry *e = h->items[i];

        while (i > 0) {
                size_t parent = (i - 1) / 2;
                if (h->items[parent]->due_usec <= e->due_usec)
                        break;
                heap_set(h, i, h->items[parent]);
                i = parent;
        }
        heap_set(h, i, e);
}

static void sift_down(TimerHeap *h, size_t i) {
        KeyEntry *e = h->items[i];

        for (;;) {
                size_t child = 2 * i + 1;
                if (child >= h->n)
                        break;
                if (child + 1 < h->n && h->items[child + 1]->due_usec < h->items[child]->due_usec)
                        child++;
                if (e->due_usec <= h->items[child]->due_usec)
                        break;
                heap_set(h, i, h->items[child]);
                i = child;
        }
        heap_set(h, i, e);
}

void heap_push(TimerHeap *h, KeyEntry *e) {
        if (h->n == h->cap) {
                h->cap = h->cap ? h->cap * 2 : 64;
                h->items = xrealloc(h->items, h->cap * sizeof *h->items);
        }
        heap_set(h, h->n++, e);
        sift_up(h, e->heap_index);
}

void heap_remove(TimerHeap *h, KeyEntry *e) {
        size_t i = e->heap_index;
        KeyEntry *last = h->items[--h->n];

        e->due_usec = 0;
        if (last == e)
                return;
        heap_set(h, i, last);
        sift_down(h, i);
        sift_up(h, last->heap_index);
}

void heap_decreased(TimerHeap *h, KeyEntry *e) {
        sift_up(h, e->heap_index);
}

KeyEntry *heap_top(const TimerHeap *h) {
        return h->n ? h->items[0] : NULL;
}

void heap_free(TimerHeap *h) {
        free(h->items);
        *h = (TimerHeap){0};
}
