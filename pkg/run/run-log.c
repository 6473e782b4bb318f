/* run-log: a Run's output file, "TIME MARK TEXT" per line.
 *
 *   2026-11-23T10:00:00.123Z rpr run site-deploy-3 (attempt 1) on web-1: commit 3f2a...
 *   2026-11-23T10:00:00.201Z out Already up to date.
 *   2026-11-23T10:00:00.340Z err warning: ...
 *
 * Output comes in chunks that cut lines anywhere; the start of a line
 * waits (per stream) for its end. Each batch of complete lines goes out in
 * one write(2), so a follower reading the file sees whole lines. */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "run/run.h"

static const char *const marks[] = {[RUN_LOG_OUT] = "out", [RUN_LOG_ERR] = "err", [RUN_LOG_RPR] = "rpr"};

struct RunLog {
        int fd;
        Buf partial[2]; /* out, err: the start of a line without its end yet */
        Buf batch;
};

int run_log_open(const char *path, RunLog **ret) {
        _cleanup_free_ char *dir = xstrdup(path);
        char *slash = strrchr(dir, '/');
        int fd;

        if (slash) {
                *slash = 0;
                int r = mkdir_p(dir, 0750);
                if (r < 0)
                        return r;
        }
        fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
        if (fd < 0)
                return -errno;
        RunLog *l = xcalloc(1, sizeof *l);
        l->fd = fd;
        *ret = l;
        return 0;
}

/* Output files are recycled (base-spares.c): with history trimmed, as many
 * Runs' files are removed as new ones are made, and on ext4 without a
 * journal each new file then cost more the more Runs there were. */
#define OUTPUT_SPARES 1024

int run_output_open(const char *run_dir, const char *ns, const char *name, RunLog **ret) {
        _cleanup_free_ char *path = run_log_path(run_dir, ns, name);

        /* Into the namespace's directory once it is there (run_log_open
         * makes it for the first Run). */
        (void) spares_take(spares_of(run_dir, OUTPUT_SPARES), path);
        return run_log_open(path, ret);
}

void run_output_discard(const char *run_dir, const char *ns, const char *name) {
        _cleanup_free_ char *path = run_log_path(run_dir, ns, name);

        if (truncate(path, 0) < 0 || !spares_give(spares_of(run_dir, OUTPUT_SPARES), path))
                (void) unlink(path);
}

static void stamp(Buf *b, uint64_t usec) {
        char t[RFC3339_MAX];

        buf_puts(b, time_format_rfc3339_ms(usec, t));
}

static void batch_line(RunLog *l, RunLogStream s, const char *p, size_t n, uint64_t when) {
        stamp(&l->batch, when);
        buf_printf(&l->batch, " %s ", marks[s]);
        size_t at = l->batch.len;
        buf_append(&l->batch, p, n);
        /* rprd's own notes may quote a message of several lines: one line each. */
        for (size_t i = at; s == RUN_LOG_RPR && i < l->batch.len; i++)
                if (l->batch.data[i] == '\n' || l->batch.data[i] == '\r')
                        l->batch.data[i] = ' ';
        buf_puts(&l->batch, "\n");
}

static void batch_flush(RunLog *l) {
        const char *p = l->batch.data;
        size_t left = l->batch.len;

        while (left > 0) {
                ssize_t k = write(l->fd, p, left);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0) {
                        log_warning("cannot write a run's output file: %s", k < 0 ? strerror(errno) : "short write");
                        break;
                }
                p += k;
                left -= (size_t) k;
        }
        l->batch.len = 0;
}

/* Moves the complete lines (and over-long starts) of partial into the batch. */
static void take_lines(RunLog *l, RunLogStream s, Buf *partial, uint64_t when) {
        size_t start = 0;

        for (;;) {
                const char *nl = memchr(partial->data + start, '\n', partial->len - start);
                size_t end = nl ? (size_t) (nl - partial->data) : partial->len;
                if (!nl && end - start < RUN_LOG_LINE_MAX)
                        break;
                if (!nl)
                        end = start + RUN_LOG_LINE_MAX;
                size_t n = end - start;
                if (n > 0 && partial->data[start + n - 1] == '\r')
                        n--;
                batch_line(l, s, partial->data + start, n, when);
                start = nl ? end + 1 : end;
        }
        memmove(partial->data, partial->data + start, partial->len - start);
        partial->len -= start;
        if (partial->data)
                partial->data[partial->len] = 0;
}

void run_log_write(RunLog *l, RunLogStream s, const char *data, size_t n, uint64_t when_usec) {
        /* A log that could not be opened (no fds left, disk full) loses
         * its lines; the work it records goes on. */
        if (!l)
                return;
        if (s == RUN_LOG_RPR) {
                batch_line(l, s, data, n, when_usec);
        } else {
                Buf *partial = &l->partial[s];
                buf_append(partial, data, n);
                take_lines(l, s, partial, when_usec);
        }
        batch_flush(l);
}

void run_log_note(RunLog *l, const char *fmt, ...) {
        _cleanup_free_ char *text = NULL;
        va_list ap;

        if (!l)
                return;
        va_start(ap, fmt);
        if (vasprintf(&text, fmt, ap) < 0)
                abort();
        va_end(ap);
        run_log_write(l, RUN_LOG_RPR, text, strlen(text), now_usec());
}

int run_log_count_lines(const char *path, uint64_t ret[static 2]) {
        FILE *f = fopen(path, "re");
        char *line = NULL;
        size_t cap = 0;

        if (!f)
                return -errno;
        ret[0] = ret[1] = 0;
        while (getline(&line, &cap, f) > 0) {
                /* "TIME MARK TEXT": the mark is the second field. */
                const char *mark = strchr(line, ' ');
                if (mark && startswith(mark + 1, "out "))
                        ret[RUN_LOG_OUT]++;
                else if (mark && startswith(mark + 1, "err "))
                        ret[RUN_LOG_ERR]++;
        }
        free(line);
        fclose(f);
        return 0;
}

void run_log_close(RunLog *l) {
        if (!l)
                return;
        for (int s = RUN_LOG_OUT; s <= RUN_LOG_ERR; s++)
                if (l->partial[s].len > 0)
                        batch_line(l, s, l->partial[s].data, l->partial[s].len, now_usec());
        batch_flush(l);
        close(l->fd);
        buf_free(&l->partial[0]);
        buf_free(&l->partial[1]);
        buf_free(&l->batch);
        free(l);
}
