/* store-feed: the change feed, a ring of the most recent events.
 *
 * Every write bumps the global revision by one, so revisions in the ring
 * are consecutive and the event of revision r sits in slot r % size: a
 * watcher is just "the next revision I want". It fell behind when that
 * revision has been overwritten, and asked too much when it wants events
 * from before the store was opened (those were never in the ring); both
 * are -ERANGE, which the API turns into 410 Gone.
 *
 * Two locks: ring_lock guards the ring and every watcher's position;
 * list_lock guards the watcher list and is held while notify callbacks
 * run, so that a watcher cannot be freed under its own notify. */
#include <pthread.h>
#include <string.h>

#include "store/store-backend.h"

struct StoreWatch {
        StoreFeed *feed; /* NULL once the store closed */
        uint64_t next;   /* the revision store_watch_next() returns next */
        void (*notify)(void *userdata);
        void *userdata;
        StoreWatch *prev, *next_watch;
};

/* An event as the ring keeps it: the object's text is shared with the
 * index (and with whoever else holds it), not copied. */
typedef struct RingEvent {
        StoreEventType type;
        uint64_t revision;
        char *kind, *ns, *name; /* in the same allocation */
        StoreText *text;
} RingEvent;

struct StoreFeed {
        pthread_mutex_t ring_lock, list_lock;
        RingEvent **ring; /* STORE_RING_SIZE slots */
        uint64_t first;   /* the oldest revision that can be in the ring */
        uint64_t last;    /* the newest pushed (first - 1 when none) */
        StoreWatch *watchers;
};

const char *store_event_type_to_string(StoreEventType t) {
        switch (t) {
        case STORE_EVENT_ADDED:
                return "ADDED";
        case STORE_EVENT_MODIFIED:
                return "MODIFIED";
        case STORE_EVENT_DELETED:
                return "DELETED";
        }
        return "UNKNOWN";
}

static RingEvent *ring_event_new(StoreEventType type, uint64_t revision, const char *kind, const char *ns,
                                 const char *name, StoreText *text) {
        size_t lk = strlen(kind) + 1, ln = strlen(ns) + 1, lm = strlen(name) + 1;
        RingEvent *e = xmalloc(sizeof *e + lk + ln + lm);
        char *p = (char *) (e + 1);

        e->type = type;
        e->revision = revision;
        e->kind = memcpy(p, kind, lk);
        e->ns = memcpy(p += lk, ns, ln);
        e->name = memcpy(p + ln, name, lm);
        e->text = store_text_ref(text);
        return e;
}

static void ring_event_free(RingEvent *e) {
        if (e)
                store_text_unref(e->text);
        free(e);
}

/* The copy a watcher gets: one allocation holds the event and its strings,
 * so store_event_free() is a plain free(). */
static StoreEvent *event_copy(const RingEvent *r) {
        size_t lk = strlen(r->kind) + 1, ln = strlen(r->ns) + 1, lm = strlen(r->name) + 1;
        size_t len = r->text->len;
        StoreEvent *e = xmalloc(sizeof *e + lk + ln + lm + len + 1);
        char *p = (char *) (e + 1);

        e->type = r->type;
        e->revision = r->revision;
        e->kind = memcpy(p, r->kind, lk);
        e->ns = memcpy(p += lk, r->ns, ln);
        e->name = memcpy(p += ln, r->name, lm);
        e->json = memcpy(p + lm, r->text->data, len + 1);
        e->len = len;
        return e;
}

void store_event_free(StoreEvent *e) {
        free(e);
}

StoreFeed *store_feed_new(uint64_t revision) {
        StoreFeed *f = xcalloc(1, sizeof *f);

        pthread_mutex_init(&f->ring_lock, NULL);
        pthread_mutex_init(&f->list_lock, NULL);
        f->ring = xcalloc(STORE_RING_SIZE, sizeof *f->ring);
        f->first = revision + 1;
        f->last = revision;
        return f;
}

void store_feed_free(StoreFeed *f) {
        if (!f)
                return;
        pthread_mutex_lock(&f->list_lock);
        for (StoreWatch *w = f->watchers; w; w = w->next_watch)
                w->feed = NULL;
        pthread_mutex_unlock(&f->list_lock);
        for (size_t i = 0; i < STORE_RING_SIZE; i++)
                ring_event_free(f->ring[i]);
        free(f->ring);
        pthread_mutex_destroy(&f->ring_lock);
        pthread_mutex_destroy(&f->list_lock);
        free(f);
}

/* The oldest revision still in the ring. Under ring_lock. */
static uint64_t oldest(const StoreFeed *f) {
        uint64_t o = f->last >= STORE_RING_SIZE ? f->last - STORE_RING_SIZE + 1 : 1;

        return o > f->first ? o : f->first;
}

void store_feed_push(StoreFeed *f, StoreEventType type, uint64_t revision, const char *kind, const char *ns,
                     const char *name, StoreText *text) {
        RingEvent *e = ring_event_new(type, revision, kind, ns, name, text), *old;
        size_t slot = revision % STORE_RING_SIZE;

        pthread_mutex_lock(&f->ring_lock);
        old = f->ring[slot];
        f->ring[slot] = e;
        f->last = revision;
        pthread_mutex_unlock(&f->ring_lock);
        ring_event_free(old);
}

void store_feed_notify(StoreFeed *f) {
        pthread_mutex_lock(&f->list_lock);
        for (StoreWatch *w = f->watchers; w; w = w->next_watch)
                if (w->notify)
                        w->notify(w->userdata);
        pthread_mutex_unlock(&f->list_lock);
}

int store_feed_watch(StoreFeed *f, uint64_t from_revision, void (*notify)(void *userdata), void *userdata,
                     StoreWatch **ret) {
        StoreWatch *w;

        pthread_mutex_lock(&f->ring_lock);
        bool too_old = from_revision + 1 < oldest(f);
        pthread_mutex_unlock(&f->ring_lock);
        if (too_old)
                return -ERANGE;

        w = xcalloc(1, sizeof *w);
        w->feed = f;
        w->next = from_revision + 1;
        w->notify = notify;
        w->userdata = userdata;

        pthread_mutex_lock(&f->list_lock);
        w->next_watch = f->watchers;
        if (f->watchers)
                f->watchers->prev = w;
        f->watchers = w;
        pthread_mutex_unlock(&f->list_lock);

        *ret = w;
        return 0;
}

int store_watch_next(StoreWatch *w, StoreEvent **ret) {
        StoreFeed *f = w->feed;
        int r = 0;

        if (!f)
                return -ERANGE;
        pthread_mutex_lock(&f->ring_lock);
        if (w->next <= f->last) {
                if (w->next < oldest(f))
                        r = -ERANGE;
                else {
                        *ret = event_copy(f->ring[w->next % STORE_RING_SIZE]);
                        w->next++;
                        r = 1;
                }
        }
        pthread_mutex_unlock(&f->ring_lock);
        return r;
}

void store_watch_free(StoreWatch *w) {
        StoreFeed *f;

        if (!w)
                return;
        f = w->feed;
        if (f) {
                pthread_mutex_lock(&f->list_lock);
                if (w->prev)
                        w->prev->next_watch = w->next_watch;
                else
                        f->watchers = w->next_watch;
                if (w->next_watch)
                        w->next_watch->prev = w->prev;
                pthread_mutex_unlock(&f->list_lock);
        }
        free(w);
}
