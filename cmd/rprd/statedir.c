/* statedir: rprd's start-up checks of its state directory and database,
 * and what it tells the operator when they fail: a read-only directory or
 * a corrupt database stops the start with a message that names the path
 * and says what to do. */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rprd.h"

/* The state directory must take writes: a read-only one would start a
 * daemon that looks healthy and loses everything. Probed with a file, since
 * access() says nothing of a read-only mount to root. Then made private. */
int state_dir_check(const char *dir) {
        _cleanup_free_ char *probe = xasprintf("%s/.rprd-write-test", dir);
        int fd = open(probe, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
        int r = fd < 0 ? -errno : 0;

        if (fd >= 0) {
                close(fd);
                (void) unlink(probe);
        }
        if (r >= 0 && chmod(dir, 0700) < 0)
                r = -errno;
        if (r == -EROFS || r == -EACCES || r == -EPERM) {
                fprintf(stderr,
                        "rprd: the state directory %s is read-only (%s): rprd keeps its database, admin token and "
                        "run output there; make it writable for the user rprd runs as, or choose another with "
                        "--state-dir\n",
                        dir, strerror(-r));
                return r;
        }
        if (r < 0)
                fprintf(stderr, "rprd: cannot use state directory %s: %s\n", dir, strerror(-r));
        return r;
}

void store_open_failed(const char *url, int r) {
        const char *path = startswith(url, "sqlite:") ? url + 7 : url;

        if (r == -EUCLEAN)
                fprintf(stderr,
                        "rprd: the state database %s is corrupt (not a SQLite database, or damaged); rprd will "
                        "not start on it. Restore it from a backup (made with `rprctl admin backup FILE`): with "
                        "rprd stopped, move %s aside, remove %s-wal and %s-shm if present, copy the backup to %s, "
                        "then start rprd. Without a backup, move the file aside and rprd starts empty.\n",
                        path, path, path, path, path);
        else if (r == -EROFS)
                fprintf(stderr, "rprd: the state database %s is read-only: rprd must be able to write it\n", path);
        else if (r == -ENOSPC)
                fprintf(stderr, "rprd: no space left on the volume of the state database %s\n", path);
        else
                fprintf(stderr, "rprd: cannot open store %s: %s\n", url, strerror(-r));
}
