/* admin: operator verbs that act on rprd itself.
 *
 *   rprctl admin backup FILE
 *
 * asks rprd for a consistent copy of its store (GET /api/v1/admin/backup,
 * made with SQLite's online backup while rprd serves) and writes it to FILE
 * atomically (a temporary file, synced, renamed), mode 0600: it holds the
 * token hashes and any secret stored inline. Restoring is copying it back
 * as state.db while rprd is stopped (README, "Backup and restore"). */
#include <string.h>

#include "rprctl.h"

#define SQLITE_MAGIC "SQLite format 3"

static int backup(Ctl *c, const char *file) {
        ClientResponse r = {0};
        int k;

        if (ctl_request(c, "GET", "/api/v1/admin/backup", NULL, 0, &r) < 0)
                return 1;
        if (r.status != 200) {
                k = ctl_http_error(c, &r);
                client_response_clear(&r);
                return k;
        }
        if (r.len < 100 || memcmp(r.body, SQLITE_MAGIC, sizeof SQLITE_MAGIC) != 0) {
                client_response_clear(&r);
                return ctl_error("rprd's answer is not a SQLite database; nothing was written to %s", file);
        }
        k = write_file_atomic(file, r.body, r.len, 0600);
        if (k < 0) {
                client_response_clear(&r);
                return ctl_error("cannot write %s: %s", file, strerror(-k));
        }
        printf("backup of rprd's store written to %s (%zu bytes)\n", file, r.len);
        client_response_clear(&r);
        return 0;
}

int verb_admin(Ctl *c) {
        if (c->n_pos == 2 && STREQ(c->pos[0], "backup"))
                return backup(c, c->pos[1]);
        return ctl_error("usage: rprctl admin backup FILE");
}
