/* token.c: the Token controller (see token.h).
 *
 * The status is a function of the stored Token, the clock and two things
 * seen in memory (when it was last used, the expiry GitHub reported), so the
 * reconciler computes the whole status, writes it only when it differs, and
 * comes back when the clock will change it: the next whole unit of
 * expiresIn, the start of the 14-day window, the expiry itself. */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "controller/controller.h"
#include "resource/resource.h"
#include "store/store.h"
#include "token/token.h"

#define LAST_USED_PERIOD_USEC (60 * USEC_PER_SEC)
#define MAX_REQUEUE_USEC (24 * 3600 * USEC_PER_SEC)

typedef struct ChangedCallback {
        TokenChangedFn fn;
        void *userdata;
} ChangedCallback;

struct TokenController {
        Store *store;
        Controller *controller;
        pthread_mutex_t lock;
        Hashmap *seen; /* "ns/name" -> Seen */
        ChangedCallback *callbacks;
        size_t n_callbacks;
};

/* ---- what others noted --------------------------------------------------- */

/* What was noted of a Token since its status was last written, and the
 * generation callbacks were last told about. Small: every agent has a
 * Token, and is used all the time. */
typedef struct Seen {
        uint64_t used, expiry; /* usec; 0: nothing noted */
        json_int_t generation;
} Seen;

/* Under lock. */
static Seen *seen_entry(TokenController *t, const char *ns, const char *name) {
        _cleanup_free_ char *id = xasprintf("%s/%s", ns, name);
        Seen *e = hashmap_get(t->seen, id);

        if (!e) {
                e = xcalloc(1, sizeof *e);
                hashmap_put(t->seen, id, e);
        }
        return e;
}

static Seen seen_get(TokenController *t, const char *ns, const char *name) {
        pthread_mutex_lock(&t->lock);
        Seen v = *seen_entry(t, ns, name);
        pthread_mutex_unlock(&t->lock);
        return v;
}

void token_note_used(TokenController *t, const char *ns, const char *name) {
        uint64_t now = now_usec();
        bool enqueue;

        if (!t)
                return;
        pthread_mutex_lock(&t->lock);
        Seen *e = seen_entry(t, ns, name);
        enqueue = now >= e->used + LAST_USED_PERIOD_USEC;
        if (enqueue)
                e->used = now;
        pthread_mutex_unlock(&t->lock);
        if (enqueue)
                controller_enqueue(t->controller, "Token", ns, name, 0);
}

void token_note_expiry(TokenController *t, const char *ns, const char *name, uint64_t expires_usec) {
        bool changed;

        if (!t || !expires_usec)
                return;
        pthread_mutex_lock(&t->lock);
        Seen *e = seen_entry(t, ns, name);
        changed = e->expiry != expires_usec;
        if (changed)
                e->expiry = expires_usec;
        pthread_mutex_unlock(&t->lock);
        if (changed)
                controller_enqueue(t->controller, "Token", ns, name, 0);
}

/* ---- the status ---------------------------------------------------------- */

typedef struct TokenView {
        json_int_t generation;
        uint64_t used_usec, reported_expiry_usec, now;
        uint64_t requeue_usec; /* out: when the clock changes the status next */
} TokenView;

/* How long until expiresIn reads differently: the rest of its unit. */
static uint64_t unit_left(uint64_t left) {
        uint64_t unit = left >= 86400 * USEC_PER_SEC ? 86400 * USEC_PER_SEC
                        : left >= 3600 * USEC_PER_SEC ? 3600 * USEC_PER_SEC
                                                      : 60 * USEC_PER_SEC;
        return left % unit + 1;
}

static void set_expiry(json_t *st, uint64_t expires, TokenView *v) {
        char when[RFC3339_MAX], left_text[32], *msg;
        bool expired = expires <= v->now;
        uint64_t left = expired ? 0 : expires - v->now;
        bool soon = !expired && left < TOKEN_EXPIRING_SOON_USEC;

        json_set_time(st, "expires", expires);
        time_format_rfc3339(expires, when);
        if (expired) {
                json_object_set_new(st, "expiresIn", json_string("expired"));
                msg = xasprintf("expired at %s; create a new one and update this Token", when);
                condition_set(st, &(Condition){"Expired", true, "Expired", msg, v->now});
                condition_set(st, &(Condition){"ExpiringSoon", false, "Expired", msg, v->now});
                free(msg);
                return;
        }
        token_format_left(left, left_text, sizeof left_text);
        json_object_set_new(st, "expiresIn", json_string(left_text));
        msg = xasprintf("expires in %s, at %s", left_text, when);
        condition_set(st, &(Condition){"Expired", false, "Valid", msg, v->now});
        condition_set(st, &(Condition){"ExpiringSoon", soon, soon ? "ExpiresWithin14Days" : "Valid", msg, v->now});
        free(msg);

        v->requeue_usec = MIN(unit_left(left), left + 1);
        if (!soon)
                v->requeue_usec = MIN(v->requeue_usec, left - TOKEN_EXPIRING_SOON_USEC + 1);
}

/* The effective expiry: spec.expires, else what GitHub reported (noted now
 * or recorded before), with where it came from in status.expiresFrom. */
static uint64_t resolve_expiry(const json_t *obj, json_t *st, const TokenView *v) {
        const char *spec = json_str_at(json_object_get(obj, "spec"), "expires");
        const char *from = json_str_at(st, "expiresFrom");
        const char *seen = json_str_at(st, "expires");
        uint64_t usec = 0;

        if (spec && time_parse_rfc3339(spec, &usec) >= 0) {
                json_object_set_new(st, "expiresFrom", json_string("spec"));
                return usec;
        }
        if (v->reported_expiry_usec)
                usec = v->reported_expiry_usec;
        else if (!(from && STREQ(from, "github") && seen && time_parse_rfc3339(seen, &usec) >= 0))
                usec = 0;
        if (usec)
                json_object_set_new(st, "expiresFrom", json_string("github"));
        return usec;
}

static json_t *token_status(const json_t *obj, void *userdata) {
        TokenView *v = userdata;
        const json_t *old = json_object_get(obj, "status");
        json_t *st = json_is_object(old) ? json_deep_copy(old) : json_object();
        const char *last = json_str_at(st, "lastUsed");
        uint64_t last_usec = 0, expires;

        json_object_set_new(st, "observedGeneration", json_integer(v->generation));
        expires = resolve_expiry(obj, st, v);
        if (expires)
                set_expiry(st, expires, v);
        else {
                json_object_del(st, "expires");
                json_object_del(st, "expiresFrom");
                json_object_del(st, "expiresIn");
                condition_remove(st, "Expired");
                condition_remove(st, "ExpiringSoon");
        }
        if (v->used_usec && (!last || time_parse_rfc3339(last, &last_usec) < 0 || v->used_usec > last_usec))
                json_set_time(st, "lastUsed", v->used_usec);

        if (json_equal(st, old)) {
                json_decref(st);
                return NULL;
        }
        return st;
}

/* ---- the reconciler ------------------------------------------------------ */

static void notify_changed(TokenController *t, const char *ns, const char *name) {
        pthread_mutex_lock(&t->lock);
        size_t n = t->n_callbacks;
        ChangedCallback *cbs = n ? xmalloc(n * sizeof *cbs) : NULL;
        if (n)
                memcpy(cbs, t->callbacks, n * sizeof *cbs);
        pthread_mutex_unlock(&t->lock);

        for (size_t i = 0; i < n; i++)
                cbs[i].fn(cbs[i].userdata, ns, name);
        free(cbs);
}

/* Whether the generation differs from the one last told about (and
 * remember it); -1 means deleted. */
static bool generation_moved(TokenController *t, const char *ns, const char *name, json_int_t generation) {
        pthread_mutex_lock(&t->lock);
        Seen *e = seen_entry(t, ns, name);
        bool moved = e->generation != generation;
        e->generation = generation;
        if (generation < 0) {
                _cleanup_free_ char *id = xasprintf("%s/%s", ns, name);
                free(hashmap_remove(t->seen, id));
        }
        pthread_mutex_unlock(&t->lock);
        return moved;
}

static int reconcile(void *userdata, const char *ns, const char *name, uint64_t *ret_requeue_after) {
        TokenController *t = userdata;
        _cleanup_json_ json_t *obj = NULL;
        int r;

        r = store_get_json(t->store, "Token", ns, name, &obj);
        if (r == -ENOENT) {
                if (generation_moved(t, ns, name, -1))
                        notify_changed(t, ns, name);
                return 0;
        }
        if (r < 0)
                return r;

        json_int_t generation = json_int_at(json_object_get(obj, "metadata"), "generation", 0);
        Seen seen = seen_get(t, ns, name);
        TokenView v = {
                .generation = generation,
                .used_usec = seen.used,
                .reported_expiry_usec = seen.expiry,
                .now = now_usec(),
        };
        r = store_update_status(t->store, "Token", ns, name, token_status, &v, NULL);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return r;
        if (generation_moved(t, ns, name, generation))
                notify_changed(t, ns, name);
        *ret_requeue_after = v.requeue_usec ? MIN(v.requeue_usec, MAX_REQUEUE_USEC) : 0;
        return 0;
}

/* ---- life cycle ---------------------------------------------------------- */

int token_controller_new(Store *store, Controller *controller, TokenController **ret) {
        TokenController *t = xcalloc(1, sizeof *t);
        int r;

        t->store = store;
        t->controller = controller;
        t->seen = hashmap_new();
        pthread_mutex_init(&t->lock, NULL);
        r = controller_add(controller, "Token", reconcile, t);
        if (r < 0) {
                token_controller_free(t);
                return r;
        }
        *ret = t;
        return 0;
}

void token_controller_free(TokenController *t) {
        if (!t)
                return;
        hashmap_free_all(t->seen);
        free(t->callbacks);
        pthread_mutex_destroy(&t->lock);
        free(t);
}

void token_on_changed(TokenController *t, TokenChangedFn fn, void *userdata) {
        pthread_mutex_lock(&t->lock);
        t->callbacks = xrealloc(t->callbacks, (t->n_callbacks + 1) * sizeof *t->callbacks);
        t->callbacks[t->n_callbacks++] = (ChangedCallback){fn, userdata};
        pthread_mutex_unlock(&t->lock);
}
