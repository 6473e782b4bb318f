/* base: allocation, logging, strings and files.
 *
 * The few primitives every module shares. Allocation failures abort: a
 * daemon that cannot allocate a few bytes cannot report anything useful, and
 * every caller stays free of impossible error paths. */
#include "base/base.h"

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void *xmalloc(size_t n) {
        void *p = malloc(n ? n : 1);
        if (!p)
                abort();
        return p;
}

void *xcalloc(size_t n, size_t size) {
        void *p = calloc(n ? n : 1, size ? size : 1);
        if (!p)
                abort();
        return p;
}

void *xrealloc(void *p, size_t n) {
        void *q = realloc(p, n ? n : 1);
        if (!q)
                abort();
        return q;
}

char *xstrdup(const char *s) {
        char *p = strdup(s);
        if (!p)
                abort();
        return p;
}

char *xstrndup(const char *s, size_t n) {
        char *p = strndup(s, n);
        if (!p)
                abort();
        return p;
}

char *xasprintf(const char *fmt, ...) {
        va_list ap;
        char *p;

        va_start(ap, fmt);
        int r = vasprintf(&p, fmt, ap);
        va_end(ap);
        if (r < 0)
                abort();
        return p;
}

/* ---- logging ----------------------------------------------------------- */

static int log_max_level = LOG_LEVEL_INFO;

void log_set_max_level(int level) {
        log_max_level = level;
}

static LogSink log_sink;
static void *log_sink_userdata;

void log_set_sink(LogSink sink, void *userdata) {
        log_sink = sink;
        log_sink_userdata = userdata;
}

static const char *level_name(int level) {
        static const char *const names[] = {
                [LOG_LEVEL_ERR] = "error",   [LOG_LEVEL_WARNING] = "warning",
                [LOG_LEVEL_INFO] = "info",   [LOG_LEVEL_DEBUG] = "debug",
        };
        return level >= 0 && level < (int) ELEMENTSOF(names) && names[level] ? names[level] : "log";
}

static int log_emit(int level, int err, const char *kind, const char *name, const char *fmt, va_list ap) {
        int saved = errno;
        int ret = err < 0 ? err : -err;
        char msg[4096];

        if (level > log_max_level)
                return ret;
        /* "%m" must name the error we were given, not whatever errno is. */
        errno = err < 0 ? -err : err;
        vsnprintf(msg, sizeof msg, fmt, ap);
        if (log_sink)
                log_sink(log_sink_userdata, level, kind, name, msg);
        else
                fprintf(stderr, "rpr: %s: %s\n", level_name(level), msg);
        errno = saved;
        return ret;
}

int log_internal(int level, int err, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        int r = log_emit(level, err, NULL, NULL, fmt, ap);
        va_end(ap);
        return r;
}

int log_object(int level, const char *kind, const char *name, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        int r = log_emit(level, 0, kind, name, fmt, ap);
        va_end(ap);
        return r;
}

/* ---- buffer ------------------------------------------------------------ */

static int buf_reserve(Buf *b, size_t extra) {
        if (b->max && b->len + extra > b->max)
                return -EFBIG;
        if (b->len + extra + 1 <= b->cap)
                return 0;

        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + extra + 1)
                cap *= 2;
        b->data = xrealloc(b->data, cap);
        b->cap = cap;
        return 0;
}

int buf_append(Buf *b, const void *data, size_t n) {
        int r = buf_reserve(b, n);
        if (r < 0)
                return r;
        if (n)
                memcpy(b->data + b->len, data, n);
        b->len += n;
        b->data[b->len] = '\0';
        return 0;
}

int buf_puts(Buf *b, const char *s) {
        return buf_append(b, s, strlen(s));
}

int buf_printf(Buf *b, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        int n = vsnprintf(NULL, 0, fmt, ap);
        va_end(ap);
        if (n < 0)
                return -EINVAL;

        int r = buf_reserve(b, (size_t) n);
        if (r < 0)
                return r;

        va_start(ap, fmt);
        vsnprintf(b->data + b->len, (size_t) n + 1, fmt, ap);
        va_end(ap);
        b->len += (size_t) n;
        return 0;
}

char *buf_steal(Buf *b) {
        char *p = b->data ? b->data : xstrdup("");
        b->data = NULL;
        b->len = b->cap = 0;
        return p;
}

void buf_free(Buf *b) {
        free(b->data);
        b->data = NULL;
        b->len = b->cap = 0;
}

/* ---- files ------------------------------------------------------------- */

int read_file(const char *path, size_t max, char **ret_data, size_t *ret_len) {
        int fd = STREQ(path, "-") ? STDIN_FILENO : open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;

        Buf b = BUF_INIT;
        b.max = max;
        char chunk[65536];
        int r = 0;
        for (;;) {
                ssize_t n = read(fd, chunk, sizeof chunk);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0) {
                        r = -errno;
                        break;
                }
                if (n == 0)
                        break;
                r = buf_append(&b, chunk, (size_t) n);
                if (r < 0)
                        break;
        }
        if (fd != STDIN_FILENO)
                close(fd);
        if (r < 0) {
                buf_free(&b);
                return r;
        }
        *ret_len = b.len;
        *ret_data = buf_steal(&b);
        return 0;
}

int write_file_atomic(const char *path, const void *data, size_t n, unsigned mode) {
        _cleanup_free_ char *tmp = xasprintf("%s.tmp.%d", path, (int) getpid());

        int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
        if (fd < 0)
                return -errno;
        /* umask must not widen or narrow what the caller asked for. */
        (void) fchmod(fd, mode);

        const char *p = data;
        while (n > 0) {
                ssize_t w = write(fd, p, n);
                if (w < 0 && errno == EINTR)
                        continue;
                if (w < 0) {
                        int r = -errno;
                        close(fd);
                        unlink(tmp);
                        return r;
                }
                p += w;
                n -= (size_t) w;
        }
        if (fsync(fd) < 0 || close(fd) < 0) {
                int r = -errno;
                unlink(tmp);
                return r;
        }
        if (rename(tmp, path) < 0) {
                int r = -errno;
                unlink(tmp);
                return r;
        }
        return 0;
}

int mkdir_p(const char *path, unsigned mode) {
        _cleanup_free_ char *p = xstrdup(path);

        for (char *s = p + 1; *s; s++) {
                if (*s != '/')
                        continue;
                *s = '\0';
                if (mkdir(p, mode) < 0 && errno != EEXIST)
                        return -errno;
                *s = '/';
        }
        if (mkdir(p, mode) < 0 && errno != EEXIST)
                return -errno;
        return 0;
}

/* ---- strings ----------------------------------------------------------- */

bool startswith(const char *s, const char *prefix) {
        return strncmp(s, prefix, strlen(prefix)) == 0;
}

bool endswith(const char *s, const char *suffix) {
        size_t ls = strlen(s), lx = strlen(suffix);
        return ls >= lx && memcmp(s + ls - lx, suffix, lx) == 0;
}

const char *json_str_at(const json_t *o, const char *key) {
        return json_string_value(json_object_get(o, key));
}

json_int_t json_int_at(const json_t *o, const char *key, json_int_t fallback) {
        const json_t *v = json_object_get(o, key);
        return json_is_integer(v) ? json_integer_value(v) : fallback;
}

uint64_t json_duration_at(const json_t *o, const char *key, uint64_t fallback) {
        const char *s = json_str_at(o, key);
        uint64_t usec;

        return s && duration_parse(s, &usec) >= 0 ? usec : fallback;
}

uint64_t json_time_at(const json_t *o, const char *key) {
        const char *s = json_str_at(o, key);
        uint64_t usec;

        return s && time_parse_rfc3339(s, &usec) >= 0 ? usec : 0;
}

void json_set_time(json_t *o, const char *key, uint64_t usec) {
        char buf[RFC3339_MAX];

        json_object_set_new(o, key, json_string(time_format_rfc3339(usec, buf)));
}

int parse_uint64(const char *s, uint64_t *ret) {
        uint64_t v = 0;

        if (!s || !*s)
                return -EINVAL;
        for (const char *p = s; *p; p++) {
                if (*p < '0' || *p > '9')
                        return -EINVAL;
                unsigned d = (unsigned) (*p - '0');
                if (v > (UINT64_MAX - d) / 10)
                        return -ERANGE;
                v = v * 10 + d;
        }
        *ret = v;
        return 0;
}

/* ---- diagnostics ------------------------------------------------------- */

int diags_addv(Diags *d, int index, const char *object, const char *field, const char *fmt, va_list ap) {
        char *msg;

        if (vasprintf(&msg, fmt, ap) < 0)
                abort(); /* out of memory */
        if (d->n == d->cap) {
                d->cap = d->cap ? d->cap * 2 : 8;
                d->items = xrealloc(d->items, d->cap * sizeof(Diag));
        }
        d->items[d->n++] = (Diag){
                .object = object ? xstrdup(object) : NULL,
                .field = field && *field ? xstrdup(field) : NULL,
                .message = msg,
                .index = index,
        };
        return -EINVAL;
}

int diags_add(Diags *d, int index, const char *object, const char *field, const char *fmt, ...) {
        va_list ap;
        int r;

        va_start(ap, fmt);
        r = diags_addv(d, index, object, field, fmt, ap);
        va_end(ap);
        return r;
}

char *diag_format(const Diag *d) {
        Buf b = BUF_INIT;

        if (d->file) {
                buf_puts(&b, d->file);
                if (d->line > 0)
                        buf_printf(&b, ":%u:%u", d->line, d->col);
                buf_puts(&b, ": ");
        }
        if (d->object)
                buf_printf(&b, "%s: ", d->object);
        if (d->field)
                buf_printf(&b, "%s: ", d->field);
        buf_puts(&b, d->message ? d->message : "error");
        return buf_steal(&b);
}

void diags_free(Diags *d) {
        for (size_t i = 0; i < d->n; i++) {
                free(d->items[i].file);
                free(d->items[i].object);
                free(d->items[i].field);
                free(d->items[i].message);
        }
        free(d->items);
        *d = (Diags) DIAGS_INIT;
}

/* ---- field paths ---- */

/* A key needs the bracket form when a dot or bracket inside it would make
 * the path ambiguous. */
static bool key_needs_quoting(const char *key) {
        return !*key || strpbrk(key, ".[]\"\\");
}

char *field_path_key(const char *parent, const char *key) {
        Buf b = BUF_INIT;

        if (parent && *parent)
                buf_puts(&b, parent);
        if (!key_needs_quoting(key)) {
                if (parent && *parent)
                        buf_puts(&b, ".");
                buf_puts(&b, key);
                return buf_steal(&b);
        }

        buf_puts(&b, "[\"");
        for (const char *p = key; *p; p++) {
                if (*p == '"' || *p == '\\')
                        buf_puts(&b, "\\");
                buf_append(&b, p, 1);
        }
        buf_puts(&b, "\"]");
        return buf_steal(&b);
}

char *field_path_index(const char *parent, size_t i) {
        return xasprintf("%s[%zu]", parent ? parent : "", i);
}
