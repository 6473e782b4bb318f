/* ssh-pool: sessions kept per target and reused, and ssh_run().
 *
 * Logging in costs a TCP connect, a key exchange and a signature (about a
 * quarter of a second on loopback, mostly sshd's work); a channel on an open
 * session costs a round trip. So a session that ran a command cleanly goes
 * back to its target's idle list, and the next command there takes it. A
 * session serves one command at a time: concurrent commands on one target
 * take idle sessions or open more, at most MAX_OPENING at once per target,
 * because sshd drops unauthenticated connections beyond MaxStartups (10 by
 * default); the others wait for whichever comes first, an idle session or a
 * free opening slot. A counting gate bounds the commands running at once.
 *
 * Targets are found by id in a hash map and live only while they are used:
 * an entry with no idle session and no command under way is removed, so a
 * pool's size follows the Servers in use, not every Server ever seen. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "ssh/ssh-private.h"

#define MAX_OPENING 8 /* below sshd's default MaxStartups of 10 */
#define MAX_IDLE 32   /* sessions kept per target; more are closed */

typedef struct Target {
        char *id;
        SshSession *idle; /* a stack */
        size_t n_idle;
        unsigned opening;    /* logins under way */
        unsigned users;      /* commands between take and give back (waiting ones too) */
        unsigned generation; /* bumped by ssh_pool_forget: older sessions are not kept */
} Target;

struct SshPool {
        pthread_mutex_t lock;
        pthread_cond_t changed; /* a gate slot, an idle session or an opening slot freed */
        unsigned max_running, running;
        size_t open; /* sessions alive, idle or busy */
        Hashmap *targets; /* id -> Target */
};

int ssh_pool_new(unsigned max_running, SshPool **ret) {
        SshPool *p = xcalloc(1, sizeof *p);

        pthread_mutex_init(&p->lock, NULL);
        pthread_cond_init(&p->changed, NULL);
        p->max_running = max_running ? max_running : 64;
        p->targets = hashmap_new();
        *ret = p;
        return 0;
}

static void sessions_close(SshSession *s) {
        while (s) {
                SshSession *next = s->next;
                ssh_session_close(s);
                s = next;
        }
}

static void target_free(const char *id, void *value, void *userdata) {
        Target *t = value;

        (void) id, (void) userdata;
        sessions_close(t->idle);
        free(t->id);
        free(t);
}

void ssh_pool_free(SshPool *p) {
        if (!p)
                return;
        hashmap_foreach(p->targets, target_free, NULL);
        hashmap_free(p->targets);
        pthread_cond_destroy(&p->changed);
        pthread_mutex_destroy(&p->lock);
        free(p);
}

/* The entry of id, made on first use; called with the lock held. */
static Target *target_get(SshPool *p, const char *id) {
        Target *t = hashmap_get(p->targets, id);

        if (!t) {
                t = xcalloc(1, sizeof *t);
                t->id = xstrdup(id);
                hashmap_put(p->targets, id, t);
        }
        return t;
}

/* Removes t once nothing needs it: no idle session, no command under way
 * (whose session or counters it holds). Called with the lock held. */
static void target_release(SshPool *p, Target *t) {
        if (t->users > 0 || t->n_idle > 0)
                return;
        hashmap_remove(p->targets, t->id);
        target_free(t->id, t, NULL);
}

void ssh_pool_forget(SshPool *p, const char *id) {
        SshSession *gone = NULL;

        pthread_mutex_lock(&p->lock);
        Target *t = hashmap_get(p->targets, id);
        if (t) {
                gone = TAKE_PTR(t->idle);
                p->open -= t->n_idle;
                t->n_idle = 0;
                t->generation++;
                target_release(p, t);
        }
        pthread_mutex_unlock(&p->lock);
        sessions_close(gone);
}

size_t ssh_pool_targets(SshPool *p) {
        size_t n;

        pthread_mutex_lock(&p->lock);
        n = hashmap_size(p->targets);
        pthread_mutex_unlock(&p->lock);
        return n;
}

size_t ssh_pool_sessions(SshPool *p) {
        size_t n;

        pthread_mutex_lock(&p->lock);
        n = p->open;
        pthread_mutex_unlock(&p->lock);
        return n;
}

/* ---- taking and giving back ------------------------------------------------ */

/* An idle session of id that still fits config; or NULL and an opening slot
 * (call opened() afterwards). Sessions for another config are closed. */
static SshSession *take(SshPool *p, const char *id, const char *config, unsigned *ret_generation) {
        SshSession *s = NULL, *stale = NULL;

        pthread_mutex_lock(&p->lock);
        Target *t = target_get(p, id);
        t->users++;
        for (;;) {
                while (t->idle && !s) {
                        SshSession *i = t->idle;
                        t->idle = i->next;
                        t->n_idle--;
                        if (STREQ(i->config, config)) {
                                s = i;
                                break;
                        }
                        i->next = stale;
                        stale = i;
                        p->open--;
                }
                if (s || t->opening < MAX_OPENING)
                        break;
                pthread_cond_wait(&p->changed, &p->lock);
        }
        if (!s)
                t->opening++;
        *ret_generation = t->generation;
        pthread_mutex_unlock(&p->lock);
        sessions_close(stale);
        return s;
}

/* A login ended; when it failed the command is done with the target (no
 * session to give back). */
static void opened(SshPool *p, const char *id, bool ok) {
        pthread_mutex_lock(&p->lock);
        Target *t = target_get(p, id);
        t->opening--;
        if (ok)
                p->open++;
        else {
                t->users--;
                target_release(p, t);
        }
        pthread_cond_broadcast(&p->changed);
        pthread_mutex_unlock(&p->lock);
}

/* Keeps s for the next command on id, or closes it (closed: false). */
static void give_back(SshPool *p, const char *id, SshSession *s, bool keep, unsigned generation) {
        pthread_mutex_lock(&p->lock);
        Target *t = target_get(p, id);
        keep = keep && t->generation == generation && t->n_idle < MAX_IDLE;
        if (keep) {
                s->next = t->idle;
                t->idle = s;
                t->n_idle++;
        } else
                p->open--;
        t->users--;
        target_release(p, t);
        pthread_cond_broadcast(&p->changed);
        pthread_mutex_unlock(&p->lock);
        if (!keep)
                ssh_session_close(s);
}

static void gate_enter(SshPool *p) {
        pthread_mutex_lock(&p->lock);
        while (p->running >= p->max_running)
                pthread_cond_wait(&p->changed, &p->lock);
        p->running++;
        pthread_mutex_unlock(&p->lock);
}

static void gate_leave(SshPool *p) {
        pthread_mutex_lock(&p->lock);
        p->running--;
        pthread_cond_broadcast(&p->changed);
        pthread_mutex_unlock(&p->lock);
}

/* ---- running ------------------------------------------------------------------ */

/* A session for t: pooled (reused) or newly opened. */
static int session_get(SshPool *p, const SshTarget *t, const char *id, const char *config, bool fresh,
                       SshSession **ret, unsigned *ret_generation, SshResult *result) {
        SshSession *s = fresh ? NULL : take(p, id, config, ret_generation);
        int r;

        if (fresh) {
                /* The retry after a dead pooled session: an opening slot all
                 * the same, and what the dead one said about the host is void. */
                result->logged_in = false;
                result->host_key[0] = '\0';
                pthread_mutex_lock(&p->lock);
                Target *target = target_get(p, id);
                target->opening++;
                target->users++;
                *ret_generation = target->generation;
                pthread_mutex_unlock(&p->lock);
        }
        if (s) {
                result->logged_in = true;
                snprintf(result->host_key, sizeof result->host_key, "%s", s->host_key);
                *ret = s;
                return 0;
        }
        r = ssh_session_open(t, &s, result);
        opened(p, id, r >= 0);
        if (r < 0)
                return r;
        *ret = s;
        return 0;
}

static int run_remote(SshPool *p, const SshTarget *t, const SshCommand *cmd, SshResult *result) {
        const char *id = t->id ? t->id : t->host;
        _cleanup_free_ char *config = ssh_target_config(t);
        int r = -EPIPE;

        for (int attempt = 0; attempt < 2 && r == -EPIPE; attempt++) {
                SshSession *s;
                unsigned generation;
                bool reusable = false;

                r = session_get(p, t, id, config, attempt > 0, &s, &generation, result);
                if (r < 0)
                        return r;
                r = ssh_session_exec(s, t, cmd, result, &reusable);
                give_back(p, id, s, r >= 0 && reusable, generation);
        }
        if (r == -EPIPE)
                return ssh_fail(result, SSH_FAIL_DISCONNECTED, EPIPE,
                                "%s closed the session before the command could start", t->host);
        return r;
}

int ssh_run(SshPool *p, const SshTarget *target, const SshCommand *cmd, SshResult *result) {
        uint64_t start = now_mono_usec();
        int r;

        *result = (SshResult){.exit_code = -1};
        if (target->run)
                return target->run(target->run_userdata, cmd, result);
        if (target->transport == SSH_TRANSPORT_SSH && (!target->host || !*target->host))
                return ssh_fail(result, SSH_FAIL_NAME_RESOLUTION, EINVAL, "no host: set spec.host");
        gate_enter(p);
        if (target->transport == SSH_TRANSPORT_LOCAL)
                r = ssh_local_run(cmd, result);
        else
                r = run_remote(p, target, cmd, result);
        gate_leave(p);
        result->duration_usec = now_mono_usec() - start;
        if (r >= 0) {
                result->failure = SSH_OK;
                result->message[0] = '\0';
        }
        return r;
}
