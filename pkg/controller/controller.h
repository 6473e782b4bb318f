/* controller: the reconcile loop every kind shares.
 *
 * Level-triggered: a reconciler gets a key (kind, namespace, name), reads
 * the object as it is now, acts, writes status, and says when to come back.
 * Keys are queued and deduplicated; one reconcile per key runs at a time,
 * on a pool of worker threads; a key that changes while it is being
 * reconciled is run once more afterwards. Keys come from the store's change
 * feed (every event of a registered kind), from start-up (every existing
 * object), from requeue-after timers, and from controller_enqueue(). A
 * reconcile that fails is retried with backoff (1 s doubling to 5 min). */
#pragma once

#include "base/base.h"

typedef struct Store Store;
typedef struct StoreEvent StoreEvent;
typedef struct Controller Controller;

/* Reconciles kind/ns/name (the object may be gone: then clean up). Returns
 * >= 0 when done; sets *ret_requeue_after_usec (0 = not again unless
 * something changes) to come back then. A negative errno is an error, and
 * the key is retried with backoff. Runs on a worker thread. */
typedef int (*ReconcileFn)(void *userdata, const char *ns, const char *name,
                           uint64_t *ret_requeue_after_usec);

/* workers: reconciles at once (0 = 4). */
int controller_new(Store *store, unsigned workers, Controller **ret);
/* Before controller_start(): fn reconciles objects of kind ("Server"). */
int controller_add(Controller *c, const char *kind, ReconcileFn fn, void *userdata);
/* Before controller_start(): fn also sees every change-feed event of kind
 * (on the dispatcher thread, outside the controller's lock: it must be
 * quick), for a controller that cares about objects of another kind. */
typedef void (*ControllerEventFn)(void *userdata, const StoreEvent *ev);
int controller_on_event(Controller *c, const char *kind, ControllerEventFn fn, void *userdata);
/* Enqueues every existing object of the registered kinds and starts the
 * workers, the timers and the feed watcher. */
int controller_start(Controller *c);
/* Reconcile kind/ns/name after delay_usec (0 = now). An earlier pending
 * time wins over a later one. Thread-safe, callable from reconcilers. */
void controller_enqueue(Controller *c, const char *kind, const char *ns, const char *name,
                        uint64_t delay_usec);
/* Enqueues (now) the objects of kind in namespace ns whose spec.key is
 * value — every one when key is NULL — and, if also is not NULL, whose
 * stored text contains it (a cheap filter, e.g. "\"WaitingForServer\"").
 * spec.key must be indexed (x-rpr-index in the kind's schema): the store
 * finds them without reading the others. For one kind's controller waking
 * another's objects. Thread-safe. */
void controller_enqueue_where(Controller *c, const char *kind, const char *ns, const char *key, const char *value,
                              const char *also);
/* A reconciler's own write of kind/ns/name at revision, whose outcome it
 * has already taken into account: its event in the change feed enqueues
 * nothing (other wakes of the key still do). For a kind whose every
 * reconcile writes its status, so that each write does not cost one more
 * reconcile that finds nothing to do. Thread-safe. */
void controller_own_write(Controller *c, const char *kind, const char *ns, const char *name,
                          uint64_t revision);
/* Stops taking keys and waits for running reconciles. */
void controller_stop(Controller *c);
void controller_free(Controller *c); /* stops first; NULL-safe */

/* Called by the dispatcher thread on every turn, at least every every_usec
 * (and once a second), outside the controller's lock: the watchdog's
 * keep-alive comes from the loop itself. Set before controller_start(). */
void controller_on_tick(Controller *c, uint64_t every_usec, void (*fn)(void *userdata), void *userdata);

/* When the loop last did something (or idled), for /healthz. */
uint64_t controller_last_tick(Controller *c);
/* How long until the soonest requeue timer fires: 0 when one is due,
 * UINT64_MAX when none is set. */
uint64_t controller_next_due_usec(Controller *c);
/* Keys queued or running, for /metrics and tests. */
size_t controller_pending(Controller *c);
