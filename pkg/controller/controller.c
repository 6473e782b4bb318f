/* controller.c: the level-triggered reconcile loop (see controller.h).
 *
 * One dispatcher thread turns the store's change feed and due timers into
 * ready keys; a fixed set of worker threads takes ready keys in FIFO order
 * and calls the kind's reconciler. The one idea: a key lives in exactly one
 * KeyEntry, whose flags (queued, running, dirty) make deduplication and "one
 * reconcile per key at a time" fall out of a few lines under one mutex.
 * Condition variables wake every thread at once on stop, so stopping waits
 * only for reconciles already running. */
#include <malloc.h>
#include <pthread.h>
#include <sys/types.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include "controller/controller-private.h"
#include "store/store.h"

#define BACKOFF_FIRST_USEC (1 * USEC_PER_SEC)
#define BACKOFF_MAX_USEC (300 * USEC_PER_SEC)
/* The dispatcher ticks at least this often, so /healthz sees it alive. */
#define IDLE_TICK_USEC (1 * USEC_PER_SEC)
#define TRIM_AFTER_RECONCILES 256

typedef struct Registration {
        char *kind;
        ReconcileFn fn;
        void *userdata;
} Registration;

typedef struct EventWatcher {
        char *kind;
        ControllerEventFn fn;
        void *userdata;
} EventWatcher;

struct Controller {
        Store *store;
        unsigned n_workers;
        Registration *regs;
        size_t n_regs;
        EventWatcher *event_watchers;
        size_t n_event_watchers;

        pthread_mutex_t lock;
        pthread_cond_t work_cond; /* workers: a key is ready, or stop */
        pthread_cond_t tick_cond; /* dispatcher: feed, new timer, or stop */
        KeyTable keys;
        TimerHeap timers;
        KeyEntry *ready_head, *ready_tail;
        size_t n_ready, n_running;
        bool feed_pending;
        bool started, stopping;

        StoreWatch *watch; /* the dispatcher's alone once started */
        pthread_t dispatcher;
        pthread_t *workers;
        unsigned n_started;
        _Atomic uint64_t last_tick_usec;
        void (*tick_fn)(void *userdata);
        uint64_t tick_every_usec;
        void *tick_userdata;
        unsigned since_trim; /* reconciles since the heap was last trimmed */
        /* "kind/ns/name" -> revision of a reconciler's own write whose
         * event is not to enqueue the key (controller_own_write). An entry
         * goes with the first event of its key at or after that revision. */
        Hashmap *own_writes;
};

static ssize_t registration_find(Controller *c, const char *kind) {
        for (size_t i = 0; i < c->n_regs; i++)
                if (STREQ(c->regs[i].kind, kind))
                        return (ssize_t) i;
        return -1;
}

static void tick(Controller *c) {
        atomic_store(&c->last_tick_usec, now_usec());
}

/* ---- key state (lock held) ---------------------------------------------- */

static void make_ready(Controller *c, KeyEntry *e) {
        if (e->running) {
                e->dirty = true;
                return;
        }
        if (e->due_usec != 0)
                heap_remove(&c->timers, e);
        if (e->queued)
                return;
        e->queued = true;
        e->ready_next = NULL;
        if (c->ready_tail)
                c->ready_tail->ready_next = e;
        else
                c->ready_head = e;
        c->ready_tail = e;
        c->n_ready++;
        pthread_cond_signal(&c->work_cond);
}

/* Earlier wins; a key about to run anyway needs no timer. */
static void schedule(Controller *c, KeyEntry *e, uint64_t delay_usec) {
        uint64_t due = now_mono_usec() + delay_usec;

        if (e->queued)
                return;
        if (e->due_usec == 0) {
                e->due_usec = due;
                heap_push(&c->timers, e);
        } else if (due < e->due_usec) {
                e->due_usec = due;
                heap_decreased(&c->timers, e);
        } else
                return;
        pthread_cond_signal(&c->tick_cond);
}

static void drop_if_idle(Controller *c, KeyEntry *e) {
        if (!e->queued && !e->running && e->due_usec == 0 && e->failures == 0)
                keys_remove(&c->keys, e);
}

static KeyEntry *ready_pop(Controller *c) {
        KeyEntry *e = c->ready_head;

        c->ready_head = e->ready_next;
        if (!c->ready_head)
                c->ready_tail = NULL;
        e->ready_next = NULL;
        e->queued = false;
        c->n_ready--;
        return e;
}

static uint64_t backoff_usec(unsigned failures) {
        unsigned shift = failures > 1 ? failures - 1 : 0;

        if (shift > 16)
                return BACKOFF_MAX_USEC;
        uint64_t d = BACKOFF_FIRST_USEC << shift;
        return d < BACKOFF_MAX_USEC ? d : BACKOFF_MAX_USEC;
}

void controller_enqueue(Controller *c, const char *kind, const char *ns, const char *name,
                        uint64_t delay_usec) {
        pthread_mutex_lock(&c->lock);
        ssize_t reg = registration_find(c, kind);
        if (reg >= 0 && !c->stopping) {
                KeyEntry *e = keys_get(&c->keys, kind, ns, name, (size_t) reg);
                if (delay_usec == 0)
                        make_ready(c, e);
                else
                        schedule(c, e, delay_usec);
        }
        pthread_mutex_unlock(&c->lock);
}

/* ---- workers ------------------------------------------------------------ */

static void finish(Controller *c, KeyEntry *e, int r, uint64_t requeue_after) {
        e->running = false;
        c->n_running--;
        if (r < 0) {
                e->failures++;
                schedule(c, e, backoff_usec(e->failures));
        } else {
                e->failures = 0;
                if (requeue_after > 0)
                        schedule(c, e, requeue_after);
        }
        if (e->dirty) {
                e->dirty = false;
                make_ready(c, e);
        }
        drop_if_idle(c, e);
}

static void *worker_thread(void *arg) {
        Controller *c = arg;

        pthread_mutex_lock(&c->lock);
        for (;;) {
                if (!c->ready_head && c->n_running == 0 && c->since_trim >= TRIM_AFTER_RECONCILES) {
                        /* A burst of work is over (10,000 objects applied at
                         * once): its garbage goes back to the system rather
                         * than staying in rprd's footprint. */
                        c->since_trim = 0;
                        pthread_mutex_unlock(&c->lock);
                        malloc_trim(0);
                        pthread_mutex_lock(&c->lock);
                        continue;
                }
                while (!c->ready_head && !c->stopping)
                        pthread_cond_wait(&c->work_cond, &c->lock);
                if (c->stopping)
                        break;

                KeyEntry *e = ready_pop(c);
                const Registration *reg = &c->regs[e->registration];
                e->running = true;
                c->n_running++;
                pthread_mutex_unlock(&c->lock);

                /* The entry stays alive while running; its strings never change. */
                uint64_t after = 0;
                int r = reg->fn(reg->userdata, e->ns, e->name, &after);
                if (r < 0)
                        log_debug("controller: reconciling %s %s/%s failed: %s", e->kind, e->ns, e->name,
                                  strerror(-r));

                pthread_mutex_lock(&c->lock);
                tick(c);
                c->since_trim++;
                finish(c, e, r, r < 0 ? 0 : after);
        }
        pthread_mutex_unlock(&c->lock);
        return NULL;
}

/* ---- the feed and the dispatcher ---------------------------------------- */

static char *own_key(const char *kind, const char *ns, const char *name) {
        return xasprintf("%s/%s/%s", kind, ns, name);
}

void controller_own_write(Controller *c, const char *kind, const char *ns, const char *name,
                          uint64_t revision) {
        _cleanup_free_ char *key = own_key(kind, ns, name);

        pthread_mutex_lock(&c->lock);
        hashmap_put(c->own_writes, key, (void *) (uintptr_t) revision);
        pthread_mutex_unlock(&c->lock);
}

/* Whether ev is the echo of a write its reconciler said was its own. */
static bool own_echo(Controller *c, const StoreEvent *ev) {
        bool echo = false;

        pthread_mutex_lock(&c->lock);
        if (hashmap_size(c->own_writes) > 0) {
                _cleanup_free_ char *key = own_key(ev->kind, ev->ns, ev->name);
                uintptr_t rev = (uintptr_t) hashmap_get(c->own_writes, key);
                if (rev && ev->revision >= rev) {
                        echo = ev->revision == rev && ev->type == STORE_EVENT_MODIFIED;
                        hashmap_remove(c->own_writes, key);
                }
        }
        pthread_mutex_unlock(&c->lock);
        return echo;
}

static void on_feed(void *userdata) {
        Controller *c = userdata;

        pthread_mutex_lock(&c->lock);
        c->feed_pending = true;
        pthread_cond_signal(&c->tick_cond);
        pthread_mutex_unlock(&c->lock);
}

static void enqueue_listed(const char *kind, const char *ns, const char *name, void *userdata) {
        controller_enqueue(userdata, kind, ns, name, 0);
}

typedef struct Where {
        Controller *c;
        const char *also;
} Where;

static void enqueue_if(const char *text, size_t len, void *userdata) {
        Where *w = userdata;

        if (w->also && !strstr(text, w->also))
                return;
        _cleanup_json_ json_t *obj = json_loadb(text, len, 0, NULL);
        const json_t *meta = json_object_get(obj, "metadata");
        controller_enqueue(w->c, json_str_at(obj, "kind"), json_str_at(meta, "namespace"), json_str_at(meta, "name"),
                           0);
}

void controller_enqueue_where(Controller *c, const char *kind, const char *ns, const char *key, const char *value,
                              const char *also) {
        if (!key) {
                (void) store_list_keys(c->store, kind, ns, enqueue_listed, c);
                return;
        }
        /* spec.KEY is indexed by the store (x-rpr-index in the kind's
         * schema): only the objects that name value are read. */
        _cleanup_free_ char *field = xasprintf("spec.%s", key);
        Where w = {c, also};
        (void) store_list_where(c->store, kind, ns, field, value, enqueue_if, &w);
}

/* Watches from now, then enqueues every object: whatever changes after the
 * listing began comes through the feed as well. */
static int relist(Controller *c) {
        StoreWatch *w = NULL;
        int r;

        store_watch_free(TAKE_PTR(c->watch));
        r = store_watch(c->store, store_revision(c->store), on_feed, c, &w);
        if (r < 0)
                return r;
        c->watch = w;
        for (size_t i = 0; i < c->n_regs; i++) {
                r = store_list_keys(c->store, c->regs[i].kind, NULL, enqueue_listed, c);
                if (r < 0)
                        return r;
        }
        return 0;
}

static void drain_feed(Controller *c) {
        for (;;) {
                StoreEvent *ev = NULL;
                int r = store_watch_next(c->watch, &ev);
                if (r == -ERANGE) {
                        log_debug("controller: fell behind the change feed, listing everything again");
                        r = relist(c);
                        if (r < 0)
                                log_warning_errno(r, "controller: cannot list the store again: %m");
                        return;
                }
                if (r <= 0)
                        return;
                if (!own_echo(c, ev))
                        controller_enqueue(c, ev->kind, ev->ns, ev->name, 0);
                for (size_t i = 0; i < c->n_event_watchers; i++)
                        if (STREQ(c->event_watchers[i].kind, ev->kind))
                                c->event_watchers[i].fn(c->event_watchers[i].userdata, ev);
                store_event_free(ev);
        }
}

static void fire_timers(Controller *c) {
        uint64_t now = now_mono_usec();
        KeyEntry *e;

        while ((e = heap_top(&c->timers)) && e->due_usec <= now) {
                heap_remove(&c->timers, e);
                make_ready(c, e);
        }
}

static void wait_until(Controller *c, uint64_t mono_usec) {
        struct timespec ts = {.tv_sec = (time_t) (mono_usec / USEC_PER_SEC),
                              .tv_nsec = (long) (mono_usec % USEC_PER_SEC) * 1000};

        pthread_cond_timedwait(&c->tick_cond, &c->lock, &ts);
}

static void *dispatcher_thread(void *arg) {
        Controller *c = arg;

        pthread_mutex_lock(&c->lock);
        while (!c->stopping) {
                tick(c);
                if (c->feed_pending) {
                        c->feed_pending = false;
                        pthread_mutex_unlock(&c->lock);
                        drain_feed(c);
                        pthread_mutex_lock(&c->lock);
                        continue;
                }
                fire_timers(c);
                if (c->tick_fn) {
                        pthread_mutex_unlock(&c->lock);
                        c->tick_fn(c->tick_userdata);
                        pthread_mutex_lock(&c->lock);
                }

                uint64_t idle = c->tick_every_usec && c->tick_every_usec < IDLE_TICK_USEC ? c->tick_every_usec
                                                                                          : IDLE_TICK_USEC;
                uint64_t until = now_mono_usec() + idle;
                KeyEntry *top = heap_top(&c->timers);
                if (top && top->due_usec < until)
                        until = top->due_usec;
                if (!c->feed_pending && !c->stopping)
                        wait_until(c, until);
        }
        pthread_mutex_unlock(&c->lock);
        return NULL;
}

/* ---- life cycle --------------------------------------------------------- */

int controller_new(Store *store, unsigned workers, Controller **ret) {
        Controller *c = xcalloc(1, sizeof *c);
        pthread_condattr_t attr;

        c->store = store;
        c->n_workers = workers ? workers : 4;
        pthread_mutex_init(&c->lock, NULL);
        pthread_cond_init(&c->work_cond, NULL);
        pthread_condattr_init(&attr);
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
        pthread_cond_init(&c->tick_cond, &attr);
        pthread_condattr_destroy(&attr);
        c->workers = xcalloc(c->n_workers, sizeof(pthread_t));
        c->own_writes = hashmap_new();
        tick(c);
        *ret = c;
        return 0;
}

int controller_add(Controller *c, const char *kind, ReconcileFn fn, void *userdata) {
        if (c->started)
                return -EBUSY;
        if (registration_find(c, kind) >= 0)
                return -EEXIST;
        c->regs = xrealloc(c->regs, (c->n_regs + 1) * sizeof *c->regs);
        c->regs[c->n_regs++] = (Registration){xstrdup(kind), fn, userdata};
        return 0;
}

int controller_on_event(Controller *c, const char *kind, ControllerEventFn fn, void *userdata) {
        if (c->started)
                return -EBUSY;
        c->event_watchers = xrealloc(c->event_watchers, (c->n_event_watchers + 1) * sizeof *c->event_watchers);
        c->event_watchers[c->n_event_watchers++] = (EventWatcher){xstrdup(kind), fn, userdata};
        return 0;
}

int controller_start(Controller *c) {
        int r;

        if (c->started)
                return -EALREADY;
        r = relist(c);
        if (r < 0)
                return r;
        c->started = true;
        r = -pthread_create(&c->dispatcher, NULL, dispatcher_thread, c);
        if (r < 0) {
                c->started = false;
                return r;
        }
        for (; c->n_started < c->n_workers; c->n_started++) {
                r = -pthread_create(&c->workers[c->n_started], NULL, worker_thread, c);
                if (r < 0) {
                        controller_stop(c);
                        return r;
                }
        }
        return 0;
}

void controller_stop(Controller *c) {
        pthread_mutex_lock(&c->lock);
        bool was_running = c->started && !c->stopping;
        c->stopping = true;
        pthread_cond_broadcast(&c->work_cond);
        pthread_cond_broadcast(&c->tick_cond);
        pthread_mutex_unlock(&c->lock);
        if (!was_running)
                return;

        pthread_join(c->dispatcher, NULL);
        for (unsigned i = 0; i < c->n_started; i++)
                pthread_join(c->workers[i], NULL);
        store_watch_free(TAKE_PTR(c->watch));
}

void controller_free(Controller *c) {
        if (!c)
                return;
        controller_stop(c);
        store_watch_free(c->watch);
        keys_free(&c->keys);
        heap_free(&c->timers);
        hashmap_free(c->own_writes);
        for (size_t i = 0; i < c->n_regs; i++)
                free(c->regs[i].kind);
        free(c->regs);
        for (size_t i = 0; i < c->n_event_watchers; i++)
                free(c->event_watchers[i].kind);
        free(c->event_watchers);
        free(c->workers);
        pthread_cond_destroy(&c->work_cond);
        pthread_cond_destroy(&c->tick_cond);
        pthread_mutex_destroy(&c->lock);
        free(c);
}

void controller_on_tick(Controller *c, uint64_t every_usec, void (*fn)(void *userdata), void *userdata) {
        c->tick_every_usec = every_usec;
        c->tick_fn = fn;
        c->tick_userdata = userdata;
}

uint64_t controller_last_tick(Controller *c) {
        return atomic_load(&c->last_tick_usec);
}

uint64_t controller_next_due_usec(Controller *c) {
        pthread_mutex_lock(&c->lock);
        KeyEntry *top = heap_top(&c->timers);
        uint64_t due = top ? top->due_usec : UINT64_MAX;
        pthread_mutex_unlock(&c->lock);
        uint64_t now = now_mono_usec();
        return due == UINT64_MAX ? due : due > now ? due - now : 0;
}

size_t controller_pending(Controller *c) {
        pthread_mutex_lock(&c->lock);
        size_t n = c->n_ready + c->n_running;
        pthread_mutex_unlock(&c->lock);
        return n;
}
