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
 * an entry with no idle session, no command under way and no pid file to
 * hand on is removed, so a pool's size follows the Servers in use, not
 * every Server ever seen.
 *
 * A tracked command's pid file is garbage once its end was seen, but
 * removing it at once would cost a process on the host for each command.
 * Their names wait on the target instead, and once TIDY_BATCH have come,
 * the next tracked command there removes them all in one (ssh-track.c).
 * Every name carries a nonce, so none is ever a later command's. Names not
 * handed on when rprd stops are left (the reaper of that id clears them). */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "ssh/ssh-private.h"

#define MAX_OPENING 8 /* below sshd's default MaxStartups of 10 */
#define MAX_IDLE 32   /* sessions kept per target; more are closed */
#define TIDY_BATCH 8  /* ended commands' pid files removed together */

typedef struct Target {
        char *id;
        SshSession *idle; /* a stack */
        size_t n_idle;
        unsigned opening;    /* logins under way */
        unsigned users;      /* commands between take and give back (waiting ones too) */
        unsigned generation; /* bumped by ssh_pool_forget: older sessions are not kept */
        char **ended;        /* pid file names of ended tracked commands, to remove */
        size_t n_ended;
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

static void names_free(char **v, size_t n) {
        for (size_t i = 0; i < n; i++)
                free(v[i]);
        free(v);
}

static void target_free(const char *id, void *value, void *userdata) {
        Target *t = value;

        (void) id, (void) userdata;
        names_free(t->ended, t->n_ended);
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
        if (t->users > 0 || t->n_idle > 0 || t->n_ended > 0)
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
                names_free(TAKE_PTR(t->ended), t->n_ended);
                t->n_ended = 0;
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

/* ---- pid files handed on ----------------------------------------------------- */

/* For a tracked command on id: the ended commands' pid files it removes,
 * once there are TIDY_BATCH of them (at most SSH_TIDY_MAX). */
static void tidy_take(SshPool *p, const char *id, SshTidy *tidy) {
        pthread_mutex_lock(&p->lock);
        Target *t = target_get(p, id);
        if (t->n_ended >= TIDY_BATCH) {
                size_t n = MIN(t->n_ended, (size_t) SSH_TIDY_MAX);
                tidy->gone = xmalloc(n * sizeof *tidy->gone);
                tidy->n_gone = n;
                t->n_ended -= n;
                memcpy(tidy->gone, t->ended + t->n_ended, n * sizeof *tidy->gone);
        }
        pthread_mutex_unlock(&p->lock);
}

static void ended_add(Target *t, char *name) {
        t->ended = xrealloc(t->ended, (t->n_ended + 1) * sizeof *t->ended);
        t->ended[t->n_ended++] = name;
}

/* After the command (r its result; the target is still in use): its own
 * pid file waits for removal when its end was seen (a timeout or a cancel
 * removed it, a lost connection leaves it for the reaper). The names it
 * was given are done when it ran to its end; otherwise they wait again
 * (removing one twice is harmless). */
static void tidy_done(SshPool *p, const char *id, SshTidy *tidy, int r) {
        pthread_mutex_lock(&p->lock);
        Target *t = target_get(p, id);
        for (size_t i = 0; i < tidy->n_gone; i++)
                if (r >= 0)
                        free(tidy->gone[i]);
                else
                        ended_add(t, tidy->gone[i]);
        if (r >= 0 && tidy->file[0])
                ended_add(t, xstrdup(tidy->file));
        pthread_mutex_unlock(&p->lock);
        free(tidy->gone);
        *tidy = (SshTidy){0};
}

static int run_remote(SshPool *p, const SshTarget *t, const SshCommand *cmd, SshResult *result) {
        const char *id = t->id ? t->id : t->host;
        _cleanup_free_ char *config = ssh_target_config(t);
        int r = -EPIPE;

        for (int attempt = 0; attempt < 2 && r == -EPIPE; attempt++) {
                SshSession *s;
                unsigned generation;
                bool reusable = false;

                SshTidy tidy = {0};

                r = session_get(p, t, id, config, attempt > 0, &s, &generation, result);
                if (r < 0)
                        return r;
                if (cmd->track)
                        tidy_take(p, id, &tidy);
                r = ssh_session_exec(s, t, cmd, &tidy, result, &reusable);
                tidy_done(p, id, &tidy, r);
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
