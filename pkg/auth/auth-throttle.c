/* auth-throttle.c: backoff for sources that keep presenting bad secrets.
 *
 * A source (an address, or a unix peer's uid) has AUTH_THROTTLE_FREE
 * failed authentications for free; each further one doubles its wait, from
 * one second up to AUTH_THROTTLE_MAX_WAIT_USEC. A source quiet for
 * AUTH_THROTTLE_FORGET_USEC starts afresh. A success does not wipe the
 * count, or a caller holding one weak token could interleave it with
 * guesses. At most AUTH_THROTTLE_SOURCES sources are remembered; a new one
 * takes the place of the one that failed longest ago. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "auth/auth.h"

#define SOURCE_MAX 64

typedef struct Source {
        char name[SOURCE_MAX];
        unsigned failures;
        uint64_t last_failure, until;
} Source;

struct AuthThrottle {
        pthread_mutex_t lock;
        Source *sources;
        size_t n;
};

AuthThrottle *auth_throttle_new(void) {
        AuthThrottle *t = xcalloc(1, sizeof *t);

        pthread_mutex_init(&t->lock, NULL);
        t->sources = xcalloc(AUTH_THROTTLE_SOURCES, sizeof *t->sources);
        return t;
}

void auth_throttle_free(AuthThrottle *t) {
        if (!t)
                return;
        pthread_mutex_destroy(&t->lock);
        free(t->sources);
        free(t);
}

static bool forgotten(const Source *s, uint64_t now) {
        return now >= s->last_failure + AUTH_THROTTLE_FORGET_USEC && now >= s->until;
}

/* The source's slot, or NULL. Under lock. */
static Source *find(AuthThrottle *t, const char *name, uint64_t now) {
        for (size_t i = 0; i < t->n; i++)
                if (strncmp(t->sources[i].name, name, SOURCE_MAX - 1) == 0)
                        return forgotten(&t->sources[i], now) ? NULL : &t->sources[i];
        return NULL;
}

/* A slot for a new source: a free one, a forgotten one, or the one that
 * failed longest ago. Under lock. */
static Source *claim(AuthThrottle *t, const char *name, uint64_t now) {
        Source *s = NULL;

        for (size_t i = 0; i < t->n && !s; i++)
                if (strncmp(t->sources[i].name, name, SOURCE_MAX - 1) == 0 || forgotten(&t->sources[i], now))
                        s = &t->sources[i];
        if (!s && t->n < AUTH_THROTTLE_SOURCES)
                s = &t->sources[t->n++];
        if (!s) {
                s = &t->sources[0];
                for (size_t i = 1; i < t->n; i++)
                        if (t->sources[i].last_failure < s->last_failure)
                                s = &t->sources[i];
        }
        *s = (Source){0};
        snprintf(s->name, sizeof s->name, "%s", name);
        return s;
}

static unsigned seconds_until(uint64_t until, uint64_t now) {
        return until > now ? (unsigned) ((until - now + USEC_PER_SEC - 1) / USEC_PER_SEC) : 0;
}

unsigned auth_throttle_wait(AuthThrottle *t, const char *source, uint64_t now) {
        pthread_mutex_lock(&t->lock);
        const Source *s = find(t, source, now);
        unsigned wait = s ? seconds_until(s->until, now) : 0;
        pthread_mutex_unlock(&t->lock);
        return wait;
}

unsigned auth_throttle_failed(AuthThrottle *t, const char *source, uint64_t now) {
        unsigned wait = 0;

        pthread_mutex_lock(&t->lock);
        Source *s = find(t, source, now) ?: claim(t, source, now);
        s->failures++;
        s->last_failure = now;
        if (s->failures > AUTH_THROTTLE_FREE) {
                unsigned over = MIN(s->failures - AUTH_THROTTLE_FREE - 1, 20u);
                uint64_t delay = MIN(USEC_PER_SEC << over, AUTH_THROTTLE_MAX_WAIT_USEC);
                s->until = now + delay;
                wait = seconds_until(s->until, now);
        }
        pthread_mutex_unlock(&t->lock);
        return wait;
}
