/* store-sqlite: the embedded backend, one SQLite file in the state dir.
 *
 * WAL journal with synchronous=FULL, so a commit that returned is on disk
 * and survives kill -9 or power loss. Objects live in one table keyed by
 * (kind, ns, name) with their JSON text and the revision of their last
 * write; the global revision lives in a meta table, so it keeps counting
 * across restarts even when the newest objects were deleted.
 *
 * The schema is versioned with PRAGMA user_version: migrations[] holds one
 * SQL step per version, applied in order inside one transaction. A file
 * written by a newer rprd (a higher user_version) is refused rather than
 * guessed at. Statements are prepared once and reused.
 *
 * Faults an operator must hear about come back as their own errnos:
 * -ENOSPC (the volume is full; the write is rolled back and nothing is
 * lost), -EUCLEAN (the file is corrupt or not a database), -EROFS
 * (read-only), -EIDRM (the file was deleted or replaced while rprd had it
 * open: later writes would go to a file no one will ever open again, so
 * every write is refused from then on). */
#include <libgen.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>
#include <inttypes.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>

#include "store/store-backend.h"

/* migrations[i] takes the schema from version i to version i + 1. Append
 * only: never edit a step that has shipped. */
static const char *const migrations[] = {
        "CREATE TABLE objects ("
        "  kind TEXT NOT NULL,"
        "  ns TEXT NOT NULL,"
        "  name TEXT NOT NULL,"
        "  revision INTEGER NOT NULL,"
        "  json TEXT NOT NULL,"
        "  PRIMARY KEY (kind, ns, name)"
        ") WITHOUT ROWID;"
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);"
        "INSERT INTO meta (key, value) VALUES ('revision', 0);",
};

const unsigned store_sqlite_schema_version = ELEMENTSOF(migrations);

/* Free space that makes a full volume count as usable again. */
#define SPACE_BACK_BYTES (4u * 1024 * 1024)

struct StoreBackend {
        sqlite3 *db;
        char *path;
        sqlite3_stmt *put, *del, *set_revision, *begin, *commit, *rollback;
        dev_t dev; /* what path named when it was opened */
        ino_t ino;
        atomic_bool gone, full;
};

static void stmt_freep(sqlite3_stmt **p) {
        sqlite3_finalize(*p);
}
#define _cleanup_stmt_ _cleanup_(stmt_freep)

/* SQLite's last error as an errno; a full volume is remembered. */
static int sql_errno(StoreBackend *b) {
        int sys = sqlite3_system_errno(b->db);

        switch (sqlite3_errcode(b->db) & 0xff) {
        case SQLITE_FULL:
                atomic_store(&b->full, true);
                return -ENOSPC;
        case SQLITE_CORRUPT:
        case SQLITE_NOTADB:
                return -EUCLEAN;
        case SQLITE_READONLY:
                return -EROFS;
        case SQLITE_IOERR:
                if (sys == ENOSPC || sys == EDQUOT || sys == EFBIG) {
                        atomic_store(&b->full, true);
                        return -ENOSPC;
                }
                return sys == EROFS ? -EROFS : -EIO;
        default:
                return -EIO;
        }
}

static int sql_error(StoreBackend *b, const char *what) {
        log_debug("store %s: %s: %s", b->path, what, sqlite3_errmsg(b->db));
        return sql_errno(b);
}

static int exec_sql(StoreBackend *b, const char *sql) {
        char *err = NULL;

        if (sqlite3_exec(b->db, sql, NULL, NULL, &err) != SQLITE_OK) {
                log_debug("store %s: %s: %s", b->path, sql, err ? err : "?");
                sqlite3_free(err);
                return sql_errno(b);
        }
        return 0;
}

static int query_int(StoreBackend *b, const char *sql, int64_t *ret) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;

        if (sqlite3_prepare_v2(b->db, sql, -1, &st, NULL) != SQLITE_OK)
                return sql_error(b, sql);
        if (sqlite3_step(st) != SQLITE_ROW)
                return sql_error(b, sql);
        *ret = sqlite3_column_int64(st, 0);
        return 0;
}

/* Brings the schema to store_sqlite_schema_version in one transaction. */
static int migrate(StoreBackend *b) {
        int64_t version;
        int r;

        r = exec_sql(b, "BEGIN IMMEDIATE");
        if (r < 0)
                return r;
        r = query_int(b, "PRAGMA user_version", &version);
        if (r < 0)
                goto fail;
        if (version > (int64_t) store_sqlite_schema_version) {
                log_error("store %s has schema version %" PRId64 ", newer than this rprd knows (%u); "
                          "refusing to open it (use the newer rprd, or restore a backup)",
                          b->path, version, store_sqlite_schema_version);
                r = -EPROTONOSUPPORT;
                goto fail;
        }
        for (int64_t v = version; v < (int64_t) store_sqlite_schema_version; v++) {
                r = exec_sql(b, migrations[v]);
                if (r < 0)
                        goto fail;
        }
        if (version < (int64_t) store_sqlite_schema_version) {
                char sql[64];

                snprintf(sql, sizeof sql, "PRAGMA user_version = %u", store_sqlite_schema_version);
                r = exec_sql(b, sql);
                if (r < 0)
                        goto fail;
        }
        return exec_sql(b, "COMMIT");
fail:
        (void) exec_sql(b, "ROLLBACK");
        return r;
}

static int prepare(StoreBackend *b, const char *sql, sqlite3_stmt **ret) {
        if (sqlite3_prepare_v3(b->db, sql, -1, SQLITE_PREPARE_PERSISTENT, ret, NULL) != SQLITE_OK)
                return sql_error(b, sql);
        return 0;
}

static int prepare_all(StoreBackend *b) {
        int r;

        r = prepare(b,
                    "INSERT OR REPLACE INTO objects (kind, ns, name, revision, json) VALUES (?, ?, ?, ?, ?)",
                    &b->put);
        if (r >= 0)
                r = prepare(b, "DELETE FROM objects WHERE kind = ? AND ns = ? AND name = ?", &b->del);
        if (r >= 0)
                r = prepare(b, "UPDATE meta SET value = ? WHERE key = 'revision'", &b->set_revision);
        if (r >= 0)
                r = prepare(b, "BEGIN IMMEDIATE", &b->begin);
        if (r >= 0)
                r = prepare(b, "COMMIT", &b->commit);
        if (r >= 0)
                r = prepare(b, "ROLLBACK", &b->rollback);
        return r;
}

static void sqlite_close(StoreBackend *b) {
        if (!b)
                return;
        sqlite3_finalize(b->put);
        sqlite3_finalize(b->del);
        sqlite3_finalize(b->set_revision);
        sqlite3_finalize(b->begin);
        sqlite3_finalize(b->commit);
        sqlite3_finalize(b->rollback);
        sqlite3_close(b->db);
        free(b->path);
        free(b);
}

static void sqlite_closep(StoreBackend **b) {
        sqlite_close(*b);
}

static int sqlite_open(const char *location, StoreBackend **ret, uint64_t *ret_revision) {
        _cleanup_(sqlite_closep) StoreBackend *b = NULL;
        int64_t revision;
        int r;

        if (!location || !*location)
                return -EINVAL;
        b = xcalloc(1, sizeof *b);
        b->path = xstrdup(location);
        r = sqlite3_open_v2(location, &b->db,
                            SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, NULL);
        if (r != SQLITE_OK) {
                log_debug("store %s: cannot open: %s", location, b->db ? sqlite3_errmsg(b->db) : "?");
                return r == SQLITE_CANTOPEN ? -ENOENT : -EIO;
        }
        sqlite3_extended_result_codes(b->db, 1);
        /* Reads come from the store's own index, never from here: the
         * page cache serves writes only, and 512 KiB of it (not 2 MiB)
         * is as fast for them. */
        r = exec_sql(b, "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 5000; "
                        "PRAGMA cache_size = -512;");
        if (r < 0)
                return r;
        r = exec_sql(b, "PRAGMA quick_check");
        if (r < 0)
                return r;
        struct stat st;
        if (stat(location, &st) < 0)
                return -errno;
        b->dev = st.st_dev;
        b->ino = st.st_ino;
        r = migrate(b);
        if (r < 0)
                return r;
        r = query_int(b, "SELECT value FROM meta WHERE key = 'revision'", &revision);
        if (r < 0)
                return r;
        r = prepare_all(b);
        if (r < 0)
                return r;

        *ret_revision = revision < 0 ? 0 : (uint64_t) revision;
        *ret = TAKE_PTR(b);
        return 0;
}

static int sqlite_load(StoreBackend *b, StoreLoadFn fn, void *userdata) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int r;

        if (sqlite3_prepare_v2(b->db, "SELECT kind, ns, name, revision, json FROM objects", -1, &st, NULL) !=
            SQLITE_OK)
                return sql_error(b, "load");
        while ((r = sqlite3_step(st)) == SQLITE_ROW) {
                const char *json = (const char *) sqlite3_column_text(st, 4);
                int len = sqlite3_column_bytes(st, 4);
                int k = fn((const char *) sqlite3_column_text(st, 0),
                           (const char *) sqlite3_column_text(st, 1),
                           (const char *) sqlite3_column_text(st, 2), (uint64_t) sqlite3_column_int64(st, 3),
                           json ? json : "", (size_t) len, userdata);
                if (k < 0)
                        return k;
        }
        if (r != SQLITE_DONE)
                return sql_error(b, "load");
        return 0;
}

/* Runs a reset statement to its end. */
static int step_done(StoreBackend *b, sqlite3_stmt *st, const char *what) {
        int r = sqlite3_step(st);

        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
        if (r != SQLITE_DONE)
                return sql_error(b, what);
        return 0;
}

/* Whether the path still names the file that is open. */
static bool file_gone(StoreBackend *b) {
        struct stat st;

        if (atomic_load(&b->gone))
                return true;
        if (stat(b->path, &st) < 0 ? errno == ENOENT || errno == ENOTDIR
                                   : st.st_dev != b->dev || st.st_ino != b->ino || st.st_nlink == 0) {
                log_error("store %s: the database file was deleted or replaced while rprd had it open; "
                          "refusing every write from now on", b->path);
                atomic_store(&b->gone, true);
        }
        return atomic_load(&b->gone);
}

static int sqlite_begin(StoreBackend *b) {
        if (file_gone(b))
                return -EIDRM;
        return step_done(b, b->begin, "begin");
}

static int sqlite_put(StoreBackend *b, const char *kind, const char *ns, const char *name, uint64_t revision,
                      const char *json, size_t len) {
        sqlite3_bind_text(b->put, 1, kind, -1, SQLITE_STATIC);
        sqlite3_bind_text(b->put, 2, ns, -1, SQLITE_STATIC);
        sqlite3_bind_text(b->put, 3, name, -1, SQLITE_STATIC);
        sqlite3_bind_int64(b->put, 4, (sqlite3_int64) revision);
        sqlite3_bind_text64(b->put, 5, json, len, SQLITE_STATIC, SQLITE_UTF8);
        return step_done(b, b->put, "put");
}

static int sqlite_del(StoreBackend *b, const char *kind, const char *ns, const char *name) {
        sqlite3_bind_text(b->del, 1, kind, -1, SQLITE_STATIC);
        sqlite3_bind_text(b->del, 2, ns, -1, SQLITE_STATIC);
        sqlite3_bind_text(b->del, 3, name, -1, SQLITE_STATIC);
        return step_done(b, b->del, "delete");
}

static void sqlite_rollback(StoreBackend *b) {
        if (!sqlite3_get_autocommit(b->db))
                (void) step_done(b, b->rollback, "rollback");
}

static int sqlite_commit(StoreBackend *b, uint64_t revision) {
        int r;

        sqlite3_bind_int64(b->set_revision, 1, (sqlite3_int64) revision);
        r = step_done(b, b->set_revision, "set revision");
        if (r >= 0)
                r = step_done(b, b->commit, "commit");
        if (r < 0)
                sqlite_rollback(b);
        else
                atomic_store(&b->full, false);
        return r;
}

static int sqlite_health(StoreBackend *b) {
        if (file_gone(b))
                return -EIDRM;
        if (!atomic_load(&b->full))
                return 0;
        /* Full at the last write: usable again once space came back. */
        _cleanup_free_ char *copy = xstrdup(b->path);
        struct statvfs vfs;
        if (statvfs(dirname(copy), &vfs) == 0 && (uint64_t) vfs.f_bavail * vfs.f_frsize >= SPACE_BACK_BYTES) {
                atomic_store(&b->full, false);
                return 0;
        }
        return -ENOSPC;
}

/* A consistent copy while writes go on: one backup step of every page,
 * read in one read transaction of a connection of its own (WAL: readers
 * and the writer do not block each other). The copy is written to path
 * and synced. */
static int sqlite_backup(StoreBackend *b, const char *path) {
        sqlite3 *src = NULL, *dst = NULL;
        int r = -EIO;

        if (sqlite3_open_v2(b->path, &src, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK ||
            sqlite3_open_v2(path, &dst, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) != SQLITE_OK)
                goto out;
        sqlite3_busy_timeout(src, 5000);
        sqlite3_exec(dst, "PRAGMA synchronous = FULL", NULL, NULL, NULL);
        sqlite3_backup *bk = sqlite3_backup_init(dst, "main", src, "main");
        if (!bk)
                goto out;
        int k = sqlite3_backup_step(bk, -1);
        int f = sqlite3_backup_finish(bk);
        if (k != SQLITE_DONE || f != SQLITE_OK) {
                log_debug("store %s: backup to %s: %s", b->path, path, sqlite3_errmsg(dst));
                r = (f & 0xff) == SQLITE_FULL || (k & 0xff) == SQLITE_FULL ? -ENOSPC : -EIO;
                goto out;
        }
        r = 0;
out:
        sqlite3_close(src);
        sqlite3_close(dst);
        return r;
}

const StoreBackendOps store_backend_sqlite = {
        .scheme = "sqlite",
        .open = sqlite_open,
        .load = sqlite_load,
        .begin = sqlite_begin,
        .put = sqlite_put,
        .del = sqlite_del,
        .commit = sqlite_commit,
        .rollback = sqlite_rollback,
        .close = sqlite_close,
        .health = sqlite_health,
        .backup = sqlite_backup,
};
