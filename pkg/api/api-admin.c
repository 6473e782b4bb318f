/* api-admin: GET /api/v1/admin/backup, a consistent copy of the store.
 *
 * The copy is made while rprd serves (SQLite's online backup, on the
 * actions queue so that store writes do not wait behind it) into a file
 * of the state directory, streamed to the caller and removed. rprd
 * streams it rather than writing it where the caller says: rprctl may run
 * on another machine, and an API that writes files at a path a caller
 * names would hand rprd's host to anyone holding a token. Only an
 * unrestricted admin may take it: it holds every namespace, and the
 * secrets stored inline. */
#include <stdio.h>
#include <unistd.h>

#include "api/api-private.h"

static void backup_work(ApiJob *job) {
        const char *path = job->data;

        (void) unlink(path);
        job->r = store_backup(job->api->store, path);
        if (job->r < 0)
                (void) unlink(path);
}

static void backup_done(ApiJob *job, ApiCall *c) {
        const char *path = job->data;

        if (!c) {
                (void) unlink(path);
                return;
        }
        if (job->r == -EOPNOTSUPP)
                api_reply_status(c, 501, "this store cannot make a backup (only the SQLite store can)");
        else if (job->r == -ENOSPC)
                api_reply_status(c, 507, "no space left on the state volume for the backup's temporary copy");
        else if (job->r < 0)
                api_reply_status(c, 500, "the backup failed: %s", strerror(-job->r));
        else if (h2o_file_send(c->req, 200, "OK", path, h2o_iovec_init(H2O_STRLIT("application/vnd.sqlite3")), 0) != 0)
                api_reply_status(c, 500, "the backup was made but cannot be read back");
        else
                api_count(c->api, c->route.template, 200);
        /* h2o holds the file open while it streams it. */
        (void) unlink(path);
}

void api_handle_backup(ApiCall *c) {
        static unsigned long counter;

        if (c->caller.namespaces) {
                api_reply_status(c, 403, "a backup holds every namespace: it needs an admin token without namespaces");
                return;
        }
        ApiJob *job = api_job_new(c, 0, backup_work, backup_done);
        job->queue = c->api->actionq;
        job->data = xasprintf("%s/.backup-%d-%lu.db", c->api->state_dir, (int) getpid(), ++counter);
        job->data_free = free;
        api_job_submit(job);
}
