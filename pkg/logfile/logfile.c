/* logfile.c: rpr's line logs, $LOGS/NAME-YYYY.log (see logfile.h).
 *
 * The one idea: a line is formatted whole in memory and handed to one
 * write(2) on an O_APPEND descriptor, so lines from threads (and from other
 * processes) never interleave. The open file follows the year of the event
 * being logged, and an append notices when the file was renamed or removed
 * underneath it (logrotate) and opens a new one. Tail reads files backwards
 * in blocks, newest year first, so it costs what it returns, not the size of
 * the log. */
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "logfile/logfile.h"

#define LINE_MAX_BYTES (16 * 1024)
#define TAIL_BLOCK 65536

struct LogFile {
        char *dir, *name;
        pthread_mutex_t lock;
        int fd;   /* -1 when closed */
        int year; /* of the open file */
};

static int year_of(uint64_t usec) {
        time_t t = (time_t) (usec / USEC_PER_SEC);
        struct tm tm;

        if (!gmtime_r(&t, &tm))
                return 1970;
        return tm.tm_year + 1900;
}

static char *year_path(const LogFile *l, int year) {
        return xasprintf("%s/%s-%04d.log", l->dir, l->name, year);
}

int logfile_open(const char *dir, const char *name, LogFile **ret) {
        int r;

        if (!dir || !*dir || !name || !*name || strchr(name, '/'))
                return -EINVAL;
        r = mkdir_p(dir, 0750);
        if (r < 0)
                return r;

        LogFile *l = xcalloc(1, sizeof *l);
        l->dir = xstrdup(dir);
        l->name = xstrdup(name);
        l->fd = -1;
        pthread_mutex_init(&l->lock, NULL);
        *ret = l;
        return 0;
}

static void close_locked(LogFile *l) {
        if (l->fd >= 0)
                close(l->fd);
        l->fd = -1;
}

void logfile_free(LogFile *l) {
        if (!l)
                return;
        close_locked(l);
        pthread_mutex_destroy(&l->lock);
        free(l->dir);
        free(l->name);
        free(l);
}

void logfile_reopen(LogFile *l) {
        pthread_mutex_lock(&l->lock);
        close_locked(l);
        pthread_mutex_unlock(&l->lock);
}

/* Whether the open descriptor is still the file at its path. */
static bool still_there(const LogFile *l, const char *path) {
        struct stat a, b;

        if (fstat(l->fd, &a) < 0 || stat(path, &b) < 0)
                return false;
        return a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

static int open_locked(LogFile *l, int year) {
        _cleanup_free_ char *path = year_path(l, year);

        if (l->fd >= 0 && l->year == year && still_there(l, path))
                return 0;
        close_locked(l);
        int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0640);
        if (fd < 0)
                return -errno;
        l->fd = fd;
        l->year = year;
        return 0;
}

/* One line: control characters (newlines above all) become spaces. */
static void flatten(char *s) {
        for (; *s; s++)
                if ((unsigned char) *s < 0x20 || *s == 0x7f)
                        *s = ' ';
}

int logfile_append(LogFile *l, uint64_t when_usec, const char *fmt, ...) {
        char time[RFC3339_MAX];
        _cleanup_free_ char *fields = NULL;
        va_list ap;
        int r;

        va_start(ap, fmt);
        r = vasprintf(&fields, fmt, ap);
        va_end(ap);
        if (r < 0)
                return -ENOMEM;
        flatten(fields);
        if (strlen(fields) > LINE_MAX_BYTES)
                fields[LINE_MAX_BYTES] = '\0';

        _cleanup_free_ char *line = xasprintf("%s %s\n", time_format_rfc3339(when_usec, time), fields);
        size_t n = strlen(line);

        pthread_mutex_lock(&l->lock);
        r = open_locked(l, year_of(when_usec));
        if (r >= 0) {
                ssize_t w = write(l->fd, line, n);
                r = w < 0 ? -errno : (size_t) w != n ? -EIO : 0;
        }
        pthread_mutex_unlock(&l->lock);
        return r;
}

/* ---- tail -------------------------------------------------------------- */

/* The last n lines of one file, each ending in '\n'. */
static int tail_file(const char *path, size_t n, char **ret, size_t *ret_lines) {
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        struct stat st;
        _cleanup_free_ char *block = NULL;
        size_t seen = 0;
        off_t start = 0;

        if (fd < 0)
                return -errno;
        if (fstat(fd, &st) < 0) {
                int r = -errno;
                close(fd);
                return r;
        }

        /* Walk back counting newlines before the last byte; the n-th one
         * ends the line before the ones we want. */
        block = xmalloc(TAIL_BLOCK);
        off_t end = st.st_size > 0 ? st.st_size - 1 : 0;
        bool found = false;
        while (end > 0 && !found) {
                off_t from = end > TAIL_BLOCK ? end - TAIL_BLOCK : 0;
                ssize_t got = pread(fd, block, (size_t) (end - from), from);
                if (got < 0) {
                        int r = -errno;
                        close(fd);
                        return r;
                }
                for (ssize_t i = got - 1; i >= 0; i--)
                        if (block[i] == '\n' && ++seen == n) {
                                start = from + i + 1;
                                found = true;
                                break;
                        }
                end = from;
        }

        size_t len = (size_t) (st.st_size - start);
        char *text = xmalloc(len + 2);
        ssize_t got = pread(fd, text, len, start);
        close(fd);
        if (got < 0) {
                free(text);
                return -EIO;
        }
        len = (size_t) got;
        if (len > 0 && text[len - 1] != '\n')
                text[len++] = '\n';
        text[len] = '\0';

        size_t lines = 0;
        for (size_t i = 0; i < len; i++)
                lines += text[i] == '\n';
        *ret = text;
        *ret_lines = lines;
        return 0;
}

static int year_of_file(const LogFile *l, const char *file) {
        size_t k = strlen(l->name);
        uint64_t y;
        char digits[5];

        if (strncmp(file, l->name, k) != 0 || file[k] != '-' || strlen(file + k + 1) != 8 ||
            !STREQ(file + k + 5, ".log"))
                return -1;
        memcpy(digits, file + k + 1, 4);
        digits[4] = '\0';
        return parse_uint64(digits, &y) < 0 ? -1 : (int) y;
}

static int int_desc(const void *a, const void *b) {
        return *(const int *) b - *(const int *) a;
}

/* Years that have a file, newest first. */
static int list_years(const LogFile *l, int **ret, size_t *ret_n) {
        DIR *d = opendir(l->dir);
        _cleanup_free_ int *years = NULL;
        size_t n = 0;
        struct dirent *de;

        if (!d)
                return errno == ENOENT ? (*ret = NULL, *ret_n = 0, 0) : -errno;
        while ((de = readdir(d))) {
                int y = year_of_file(l, de->d_name);
                if (y < 0)
                        continue;
                years = xrealloc(years, (n + 1) * sizeof *years);
                years[n++] = y;
        }
        closedir(d);
        if (n > 0)
                qsort(years, n, sizeof *years, int_desc);
        *ret = TAKE_PTR(years);
        *ret_n = n;
        return 0;
}

int logfile_tail(LogFile *l, size_t n, char **ret) {
        _cleanup_free_ int *years = NULL;
        size_t n_years = 0, n_parts = 0, have = 0;
        char **parts = NULL;
        Buf out = BUF_INIT;
        int r;

        r = list_years(l, &years, &n_years);
        if (r < 0)
                return r;
        parts = xcalloc(n_years + 1, sizeof *parts);
        for (size_t i = 0; i < n_years && have < n; i++) {
                _cleanup_free_ char *path = year_path(l, years[i]);
                size_t lines = 0;
                r = tail_file(path, n - have, &parts[n_parts], &lines);
                if (r == -ENOENT) { /* removed since listed */
                        r = 0;
                        continue;
                }
                if (r < 0)
                        break;
                n_parts++;
                have += lines;
        }
        for (size_t i = n_parts; i > 0 && r >= 0; i--)
                r = buf_puts(&out, parts[i - 1]);
        for (size_t i = 0; i < n_parts; i++)
                free(parts[i]);
        free(parts);
        if (r < 0) {
                buf_free(&out);
                return r;
        }
        *ret = buf_steal(&out);
        return 0;
}
