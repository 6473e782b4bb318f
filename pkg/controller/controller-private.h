/* controller-private.h: the key table and the timer heap behind the
 * controller, shared by controller.c and controller-keys.c.
 *
 * Every key the controller knows about (queued, running, or waiting on a
 * timer) has one KeyEntry, found by its "kind\0ns\0name" text in a hash
 * table; an entry that is none of the three is dropped, so deleted objects
 * do not pile up. None of this locks: the controller's mutex covers it. */
#pragma once

#include "controller/controller.h"

typedef struct KeyEntry KeyEntry;
struct KeyEntry {
        char *kind, *ns, *name;
        size_t registration; /* index into the controller's kinds */
        bool queued;         /* in the ready FIFO */
        bool running;        /* a worker has it */
        bool dirty;          /* enqueued while running: run once more */
        uint64_t due_usec;   /* monotonic; 0 = no timer */
        size_t heap_index;   /* valid when due_usec != 0 */
        unsigned failures;   /* consecutive errors, for backoff */
        KeyEntry *hash_next;
        KeyEntry *ready_next;
};

typedef struct KeyTable {
        KeyEntry **buckets;
        size_t n_buckets, n;
} KeyTable;

KeyEntry *keys_find(KeyTable *t, const char *kind, const char *ns, const char *name);
/* Finds or adds (registration set on add). */
KeyEntry *keys_get(KeyTable *t, const char *kind, const char *ns, const char *name, size_t registration);
void keys_remove(KeyTable *t, KeyEntry *e); /* frees e */
void keys_free(KeyTable *t);

/* A binary min-heap of entries by due_usec. */
typedef struct TimerHeap {
        KeyEntry **items;
        size_t n, cap;
} TimerHeap;

void heap_push(TimerHeap *h, KeyEntry *e);
void heap_remove(TimerHeap *h, KeyEntry *e);
/* After e->due_usec moved earlier. */
void heap_decreased(TimerHeap *h, KeyEntry *e);
KeyEntry *heap_top(const TimerHeap *h);
void heap_free(TimerHeap *h);
