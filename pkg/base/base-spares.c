/* base-spares: files kept for reuse instead of removed and made again.
 *
 * On ext4 without a journal, making a file soon after many were removed
 * scans every recently removed inode of its group: with a thousand Runs'
 * outputs trimmed as a thousand new ones are made, each new file cost
 * more the more Runs there were. A spare is a file that had its use
 * (emptied by the caller) renamed to "DIR/.spare-N"; the next file wanted
 * is a spare renamed to its name: no inode made or freed. The slots start
 * empty in each process: a spare left by the last one is written over when
 * its slot is next given (rename replaces), so nothing piles up. A
 * directory's spares are its n slots; up to DIRS_MAX directories have
 * spares (others none: their files are made and removed as usual). */
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"

typedef enum { SPARE_NONE, SPARE_HERE, SPARE_MOVING } SpareState;

struct Spares {
        pthread_mutex_t lock;
        char *dir;
        size_t n;
        SpareState state[];
};

/* One Spares per directory for the whole process, made on first use and
 * kept: a process recycles files in one or two directories. */
#define DIRS_MAX 8

static struct {
        pthread_mutex_t lock;
        Spares *dirs[DIRS_MAX];
} registry = {.lock = PTHREAD_MUTEX_INITIALIZER};

Spares *spares_of(const char *dir, size_t n) {
        Spares *s = NULL;

        pthread_mutex_lock(&registry.lock);
        for (size_t i = 0; !s && i < DIRS_MAX && registry.dirs[i]; i++)
                if (STREQ(registry.dirs[i]->dir, dir))
                        s = registry.dirs[i];
        for (size_t i = 0; !s && i < DIRS_MAX; i++)
                if (!registry.dirs[i]) {
                        s = xcalloc(1, sizeof *s + n * sizeof s->state[0]);
                        pthread_mutex_init(&s->lock, NULL);
                        s->dir = xstrdup(dir);
                        s->n = n;
                        registry.dirs[i] = s;
                }
        pthread_mutex_unlock(&registry.lock);
        return s;
}

/* A slot in state from, now moving; -1 when none. */
static long claim(Spares *s, SpareState from) {
        long k = -1;

        pthread_mutex_lock(&s->lock);
        for (size_t i = 0; k < 0 && i < s->n; i++)
                if (s->state[i] == from)
                        k = (long) i;
        if (k >= 0)
                s->state[k] = SPARE_MOVING;
        pthread_mutex_unlock(&s->lock);
        return k;
}

static void settle(Spares *s, long k, SpareState state) {
        pthread_mutex_lock(&s->lock);
        s->state[k] = state;
        pthread_mutex_unlock(&s->lock);
}

bool spares_take(Spares *s, const char *path) {
        long k = s ? claim(s, SPARE_HERE) : -1;

        if (k < 0)
                return false;
        char spare[PATH_MAX];
        snprintf(spare, sizeof spare, "%s/.spare-%ld", s->dir, k);
        /* Never over a file that is there: its writer keeps it. */
        bool taken = renameat2(AT_FDCWD, spare, AT_FDCWD, path, RENAME_NOREPLACE) == 0;
        settle(s, k, taken || errno != EEXIST ? SPARE_NONE : SPARE_HERE);
        return taken;
}

bool spares_give(Spares *s, const char *path) {
        long k = s ? claim(s, SPARE_NONE) : -1;

        if (k < 0)
                return false;
        char spare[PATH_MAX];
        snprintf(spare, sizeof spare, "%s/.spare-%ld", s->dir, k);
        bool kept = rename(path, spare) == 0;
        settle(s, k, kept ? SPARE_HERE : SPARE_NONE);
        return kept;
}
