/* base-hashmap: a string-keyed hash map with separate chaining.
 *
 * FNV-1a over the key, a power-of-two bucket array doubled when the map
 * holds as many entries as buckets, so a lookup walks about one entry.
 * Each entry is one allocation with its key after it. */
#include <string.h>

#include "base/base.h"

typedef struct HashEntry {
        struct HashEntry *next;
        uint64_t hash;
        void *value;
        char key[];
} HashEntry;

struct Hashmap {
        HashEntry **buckets;
        size_t n_buckets; /* a power of two */
        size_t size;
};

static uint64_t hash_of(const char *key) {
        uint64_t h = UINT64_C(14695981039346656037);

        for (const unsigned char *p = (const unsigned char *) key; *p; p++) {
                h ^= *p;
                h *= UINT64_C(1099511628211);
        }
        return h;
}

Hashmap *hashmap_new(void) {
        Hashmap *m = xcalloc(1, sizeof *m);

        m->n_buckets = 16;
        m->buckets = xcalloc(m->n_buckets, sizeof *m->buckets);
        return m;
}

void hashmap_free(Hashmap *m) {
        if (!m)
                return;
        for (size_t i = 0; i < m->n_buckets; i++)
                for (HashEntry *e = m->buckets[i], *next; e; e = next) {
                        next = e->next;
                        free(e);
                }
        free(m->buckets);
        free(m);
}

static HashEntry **slot_of(const Hashmap *m, const char *key, uint64_t hash) {
        HashEntry **p = &m->buckets[hash & (m->n_buckets - 1)];

        while (*p && ((*p)->hash != hash || !STREQ((*p)->key, key)))
                p = &(*p)->next;
        return p;
}

static void free_value(const char *key, void *value, void *userdata) {
        (void) key;
        (void) userdata;
        free(value);
}

void hashmap_free_all(Hashmap *m) {
        if (m)
                hashmap_foreach(m, free_value, NULL);
        hashmap_free(m);
}

void *hashmap_get(const Hashmap *m, const char *key) {
        HashEntry *e = *slot_of(m, key, hash_of(key));

        return e ? e->value : NULL;
}

static void grow(Hashmap *m) {
        size_t n = m->n_buckets * 2;
        HashEntry **buckets = xcalloc(n, sizeof *buckets);

        for (size_t i = 0; i < m->n_buckets; i++)
                for (HashEntry *e = m->buckets[i], *next; e; e = next) {
                        next = e->next;
                        e->next = buckets[e->hash & (n - 1)];
                        buckets[e->hash & (n - 1)] = e;
                }
        free(m->buckets);
        m->buckets = buckets;
        m->n_buckets = n;
}

void hashmap_put(Hashmap *m, const char *key, void *value) {
        uint64_t hash = hash_of(key);
        HashEntry **p = slot_of(m, key, hash);

        if (*p) {
                (*p)->value = value;
                return;
        }
        size_t len = strlen(key) + 1;
        HashEntry *e = xmalloc(sizeof *e + len);
        e->next = NULL;
        e->hash = hash;
        e->value = value;
        memcpy(e->key, key, len);
        *p = e;
        if (++m->size > m->n_buckets)
                grow(m);
}

void *hashmap_remove(Hashmap *m, const char *key) {
        HashEntry **p = slot_of(m, key, hash_of(key)), *e = *p;

        if (!e)
                return NULL;
        void *value = e->value;
        *p = e->next;
        free(e);
        m->size--;
        return value;
}

size_t hashmap_size(const Hashmap *m) {
        return m->size;
}

void hashmap_foreach(const Hashmap *m, void (*fn)(const char *key, void *value, void *userdata), void *userdata) {
        for (size_t i = 0; i < m->n_buckets; i++)
                for (HashEntry *e = m->buckets[i]; e; e = e->next)
                        fn(e->key, e->value, userdata);
}
