/* store-feed: the change feed, the recent events in revision order.
 *
 * Every write bumps the global revision by one, so the events kept are
 * consecutive revisions lo..last and the event of revision r sits in slot
 * r % cap of a ring: a watcher is just "the next revision I want".
 *
 * What is kept: always the last STORE_RING_SIZE events (so that a watcher
 * can resume from a recent revision; only as many as STORE_RING_BYTES of
 * texts hold, but at least STORE_RING_MIN: 10,000 agents' Servers written
 * in turn would keep 8,192 old texts of ~700 bytes for nobody), and beyond
 * that every event a watcher
 * has not read yet, up to the feed's limit (STORE_FEED_LIMIT events by
 * default, and STORE_FEED_BYTES of their texts, so that a watcher that
 * stops reading cannot make rprd hold every write).
 * The ring grows for a large commit and shrinks again once every watcher
 * has read it, so a watcher that keeps reading never falls behind, however
 * many objects one apply writes — one transaction is bounded by the request
 * body limit, far below the limit here. A watcher further behind than the
 * limit has fallen behind (its events are gone), and so has one that asks
 * for events from before the store was opened: both are -ERANGE, which the
 * API turns into 410 Gone and clients answer by listing again.
 *
 * Two locks: ring_lock guards the ring and every watcher's position;
 * list_lock guards the watcher list and is held while notify callbacks
 * run, so that a watcher cannot be freed under its own notify. Where both
 * are held, list_lock comes first. */
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
        bool labels_changed;
        uint64_t revision;
        char *kind, *ns, *name; /* in the same allocation */
        StoreText *text;
} RingEvent;

struct StoreFeed {
        pthread_mutex_t ring_lock, list_lock;
        RingEvent **ring; /* cap slots, a power of two */
        size_t cap;
        size_t limit;     /* the most events kept for watchers that lag */
        size_t bytes;     /* of the texts of the events kept */
        uint64_t lo;      /* the oldest revision kept (last + 1 when none) */
        uint64_t last;    /* the newest pushed */
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
        e->labels_changed = r->labels_changed;
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
        f->cap = STORE_RING_SIZE;
        f->ring = xcalloc(f->cap, sizeof *f->ring);
        f->limit = STORE_FEED_LIMIT;
        f->lo = revision + 1;
        f->last = revision;
        return f;
}

void store_feed_set_limit(StoreFeed *f, size_t max_events) {
        pthread_mutex_lock(&f->ring_lock);
        f->limit = max_events > STORE_RING_SIZE ? max_events : STORE_RING_SIZE;
        pthread_mutex_unlock(&f->ring_lock);
}

void store_feed_free(StoreFeed *f) {
        if (!f)
                return;
        pthread_mutex_lock(&f->list_lock);
        for (StoreWatch *w = f->watchers; w; w = w->next_watch)
                w->feed = NULL;
        pthread_mutex_unlock(&f->list_lock);
        for (uint64_t r = f->lo; r <= f->last; r++)
                ring_event_free(f->ring[r & (f->cap - 1)]);
        free(f->ring);
        pthread_mutex_destroy(&f->ring_lock);
        pthread_mutex_destroy(&f->list_lock);
        free(f);
}

/* Moves the events to a ring of new_cap slots. Under ring_lock. */
static void ring_resize(StoreFeed *f, size_t new_cap) {
        RingEvent **ring = xcalloc(new_cap, sizeof *ring);

        for (uint64_t r = f->lo; r <= f->last; r++)
                ring[r & (new_cap - 1)] = f->ring[r & (f->cap - 1)];
        free(f->ring);
        f->ring = ring;
        f->cap = new_cap;
}

/* Forgets the oldest event. Under ring_lock. */
static void drop_oldest(StoreFeed *f) {
        RingEvent **slot = &f->ring[f->lo & (f->cap - 1)];

        f->bytes -= (*slot)->text->len;
        ring_event_free(*slot);
        *slot = NULL;
        f->lo++;
}

void store_feed_push(StoreFeed *f, StoreEventType type, uint64_t revision, const char *kind, const char *ns,
                     const char *name, StoreText *text, bool labels_changed) {
        RingEvent *e = ring_event_new(type, revision, kind, ns, name, text);

        e->labels_changed = labels_changed || type != STORE_EVENT_MODIFIED;
        pthread_mutex_lock(&f->ring_lock);
        if (f->last - f->lo + 1 == f->cap) {
                if (f->cap < f->limit && f->bytes < STORE_FEED_BYTES)
                        ring_resize(f, f->cap * 2);
                else
                        drop_oldest(f); /* whoever still wanted it fell behind */
        }
        f->ring[revision & (f->cap - 1)] = e;
        f->bytes += text->len;
        f->last = revision;
        pthread_mutex_unlock(&f->ring_lock);
}

/* Forgets what no watcher needs beyond the last STORE_RING_SIZE (or
 * STORE_RING_BYTES), and gives back the room a burst took. Under list_lock
 * and ring_lock. */
static void trim(StoreFeed *f) {
        uint64_t needed = f->last + 1; /* the oldest event a watcher has not read */

        for (StoreWatch *w = f->watchers; w; w = w->next_watch)
                if (w->next < needed)
                        needed = w->next;
        while (f->lo < needed && f->lo <= f->last &&
               (f->last + 1 - f->lo > STORE_RING_SIZE ||
                (f->bytes > STORE_RING_BYTES && f->last + 1 - f->lo > STORE_RING_MIN)))
                drop_oldest(f);
        size_t count = (size_t) (f->last + 1 - f->lo);
        while (f->cap > STORE_RING_SIZE && count <= f->cap / 4)
                ring_resize(f, f->cap / 2);
}

void store_feed_notify(StoreFeed *f) {
        pthread_mutex_lock(&f->list_lock);
        pthread_mutex_lock(&f->ring_lock);
        if (f->cap > STORE_RING_SIZE || f->bytes > STORE_RING_BYTES)
                trim(f);
        pthread_mutex_unlock(&f->ring_lock);
        for (StoreWatch *w = f->watchers; w; w = w->next_watch)
                if (w->notify)
                        w->notify(w->userdata);
        pthread_mutex_unlock(&f->list_lock);
}

int store_feed_watch(StoreFeed *f, uint64_t from_revision, void (*notify)(void *userdata), void *userdata,
                     StoreWatch **ret) {
        StoreWatch *w;

        pthread_mutex_lock(&f->ring_lock);
        bool too_old = from_revision + 1 < f->lo;
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
        bool burst = false;
        int r = 0;

        if (!f)
                return -ERANGE;
        pthread_mutex_lock(&f->ring_lock);
        if (w->next <= f->last) {
                if (w->next < f->lo)
                        r = -ERANGE;
                else {
                        *ret = event_copy(f->ring[w->next & (f->cap - 1)]);
                        w->next++;
                        r = 1;
                }
        } else
                burst = f->last + 1 - f->lo > STORE_RING_SIZE;
        pthread_mutex_unlock(&f->ring_lock);
        /* This watcher read the end of a burst after the last commit's
         * trim: what only it held goes now, not at the next write (which
         * may never come). Not when list_lock is busy (a notify running,
         * maybe this very caller's): the next commit trims then. */
        if (burst && pthread_mutex_trylock(&f->list_lock) == 0) {
                pthread_mutex_lock(&f->ring_lock);
                trim(f);
                pthread_mutex_unlock(&f->ring_lock);
                pthread_mutex_unlock(&f->list_lock);
        }
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
