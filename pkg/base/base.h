/* base: the few things every rpr module needs and nothing of ours below it.
 *
 * Cleanup attributes in the systemd manner, logging that returns the error it
 * logged, one duration parser, one time formatter, random tokens, hashing and
 * constant-time comparison, a bounded growable buffer, files, a diagnostics
 * list that carries file:line:col and field paths to the person who reads it,
 * a string-keyed hash map and a small thread-pool work queue.
 *
 * Conventions: functions that can fail return a negative errno and write
 * their ret_ out-parameters only on success. */
#pragma once

#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

/* ---- cleanup ---------------------------------------------------------- */

#define _cleanup_(f) __attribute__((cleanup(f)))
#define _cleanup_free_ _cleanup_(freep)
/* json_decrefp() comes with jansson >= 2.11. */
#define _cleanup_json_ _cleanup_(json_decrefp)
#define _printf_(a, b) __attribute__((format(printf, a, b)))
#define _unused_ __attribute__((unused))

static inline void freep(void *p) {
        free(*(void **) p);
}

/* Hands ownership on: returns the pointer and leaves NULL behind. */
#define TAKE_PTR(p)                                                                                \
        ({                                                                                         \
                __typeof__(p) _ptr_ = (p);                                                         \
                (p) = NULL;                                                                        \
                _ptr_;                                                                             \
        })

#define ELEMENTSOF(x) (sizeof(x) / sizeof((x)[0]))
#define STREQ(a, b) (strcmp((a), (b)) == 0)
#ifndef MIN
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#endif
#ifndef MAX
#define MAX(a, b) ((a) > (b) ? (a) : (b))
#endif
#define USEC_PER_SEC UINT64_C(1000000)
#define USEC_PER_MSEC UINT64_C(1000)

/* Allocation that cannot fail: out of memory aborts (as systemd's xmalloc). */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
char *xasprintf(const char *fmt, ...) _printf_(1, 2);

/* ---- logging ----------------------------------------------------------- */

enum { LOG_LEVEL_ERR = 3, LOG_LEVEL_WARNING = 4, LOG_LEVEL_INFO = 6, LOG_LEVEL_DEBUG = 7 };

void log_set_max_level(int level);
/* Writes "LEVEL: message" to stderr; "%m" in fmt expands to strerror(-err).
 * Returns -abs(err) so a caller can `return log_error_errno(r, ...)`. */
int log_internal(int level, int err, const char *fmt, ...) _printf_(3, 4);

/* A record about one object: kind ("Repo") and name ("default/site") go
 * to the sink as fields (the journal's RPR_KIND and RPR_NAME). */
int log_object(int level, const char *kind, const char *name, const char *fmt, ...) _printf_(4, 5);

/* Where records go instead of stderr (the journal, under systemd). kind and
 * name may be NULL. Set once at start, before threads. */
typedef void (*LogSink)(void *userdata, int level, const char *kind, const char *name, const char *message);
void log_set_sink(LogSink sink, void *userdata);

#define log_error_errno(err, ...) log_internal(LOG_LEVEL_ERR, (err), __VA_ARGS__)
#define log_warning_errno(err, ...) log_internal(LOG_LEVEL_WARNING, (err), __VA_ARGS__)
#define log_error(...) (void) log_internal(LOG_LEVEL_ERR, 0, __VA_ARGS__)
#define log_warning(...) (void) log_internal(LOG_LEVEL_WARNING, 0, __VA_ARGS__)
#define log_info(...) (void) log_internal(LOG_LEVEL_INFO, 0, __VA_ARGS__)
#define log_debug(...) (void) log_internal(LOG_LEVEL_DEBUG, 0, __VA_ARGS__)

/* ---- time -------------------------------------------------------------- */

uint64_t now_usec(void);      /* CLOCK_REALTIME */
uint64_t now_mono_usec(void); /* CLOCK_MONOTONIC */

/* Go-style durations: "90s", "1m", "1h30m", "500ms", "24h", "0s", also "2d"
 * and "1w" for expiry periods. -EINVAL on anything else, -ERANGE on overflow. */
int duration_parse(const char *s, uint64_t *ret_usec);
/* Shortest Go-style form ("1h30m", "45s", "0s") into buf (>= 32 bytes). */
char *duration_format(uint64_t usec, char *buf, size_t size);

#define RFC3339_MAX 32
/* UTC, second precision: "2026-11-22T10:00:00Z". */
char *time_format_rfc3339(uint64_t usec, char buf[static RFC3339_MAX]);
/* The same to the millisecond: "2026-11-22T10:00:00.123Z". */
char *time_format_rfc3339_ms(uint64_t usec, char buf[static RFC3339_MAX]);
/* Accepts "2026-11-22T10:00:00Z", with fractional seconds and +hh:mm offsets,
 * and a bare date "2027-06-30" (midnight UTC). -EINVAL otherwise. */
int time_parse_rfc3339(const char *s, uint64_t *ret_usec);

/* ---- randomness, hashing, secrets -------------------------------------- */

int random_bytes(void *buf, size_t n); /* getrandom(2) */
/* len random characters of [A-Za-z0-9] plus NUL into buf (size len + 1). */
int random_token(char *buf, size_t len);
/* RFC 4122 version 4 uuid, 36 characters plus NUL. */
int uuid_v4(char buf[static 37]);
/* Lower-case hex SHA-256 of data: 64 characters plus NUL. */
void sha256_hex(const void *data, size_t n, char out[static 65]);
/* Lower-case hex HMAC-SHA256 of data under key (webhook signatures). */
void hmac_sha256_hex(const void *key, size_t key_len, const void *data, size_t n, char out[static 65]);
/* Compares n bytes in time independent of where they differ. */
bool memeq_consttime(const void *a, const void *b, size_t n);

/* ---- buffer ------------------------------------------------------------ */

/* A growable byte buffer, always NUL-terminated. max (0 = unlimited) bounds
 * its length: appends past it fail with -EFBIG and leave it unchanged. */
typedef struct Buf {
        char *data;
        size_t len, cap, max;
} Buf;

#define BUF_INIT {NULL, 0, 0, 0}
int buf_append(Buf *b, const void *data, size_t n);
int buf_puts(Buf *b, const char *s);
int buf_printf(Buf *b, const char *fmt, ...) _printf_(2, 3);
/* Returns the data (caller frees) and resets b. Never NULL. */
char *buf_steal(Buf *b);
void buf_free(Buf *b);

/* ---- files ------------------------------------------------------------- */

/* Reads a whole file ("-" = stdin). -EFBIG past max bytes. */
int read_file(const char *path, size_t max, char **ret_data, size_t *ret_len);
/* Writes via a temporary file, fsync and rename, with the given mode. */
int write_file_atomic(const char *path, const void *data, size_t n, unsigned mode);
int mkdir_p(const char *path, unsigned mode);

/* Files kept for reuse (base-spares.c): where many short-lived files come
 * and go, a file that had its use is renamed to one of n slots in dir
 * instead of removed, and a new one is a spare renamed to its name.
 * Emptying a spare is the caller's (the two users empty them differently).
 * spares_of() gives the process's one Spares of dir (NULL when too many
 * directories have some). Thread-safe; NULL-safe (take and give say false). */
typedef struct Spares Spares;
Spares *spares_of(const char *dir, size_t n);
/* A spare renamed to path, unless a file is there: true, or false. */
bool spares_take(Spares *s, const char *path);
/* path renamed to a free slot: true, or false when all are full (the
 * caller removes it then). */
bool spares_give(Spares *s, const char *path);

/* ---- strings ----------------------------------------------------------- */

bool startswith(const char *s, const char *prefix);
bool endswith(const char *s, const char *suffix);

/* ---- text across boundaries (base-text.c) ------------------------------- */

/* Length of the valid UTF-8 sequence at p (1..4), 0 if invalid, or -1 if
 * it may be valid but end cuts it off. */
int utf8_char_len(const unsigned char *p, const unsigned char *end);
/* The length, at most max, of the longest prefix of s (n bytes) that does
 * not end inside a UTF-8 character. */
size_t utf8_cut(const char *s, size_t n, size_t max);
/* snprintf that, when the text does not fit, cuts it at a character
 * boundary: the result stays valid UTF-8 (JSON can carry it). */
int snprintf_utf8(char *buf, size_t size, const char *fmt, ...) _printf_(3, 4);
int vsnprintf_utf8(char *buf, size_t size, const char *fmt, va_list ap) _printf_(3, 0);
/* Text from a remote made one safe line, in place: control characters
 * (C0, DEL, C1: newlines, ESC, CSI) become spaces, invalid UTF-8 bytes
 * '?'. Every message taken from a remote goes through it before it
 * reaches a status, a log line or an answer. Returns s. */
char *text_flatten(char *s);
/* A flattened copy of s (NULL: ""), cut to at most max bytes at a
 * character boundary. Caller frees. */
char *text_flat_dup(const char *s, size_t max);

/* Member key of object o: its string (NULL when absent or not a string),
 * its integer (fallback when absent or not an integer). o may be NULL. */
const char *json_str_at(const json_t *o, const char *key);
json_int_t json_int_at(const json_t *o, const char *key, json_int_t fallback);
/* Member key of o as a duration ("10m"): fallback when absent or not one. */
uint64_t json_duration_at(const json_t *o, const char *key, uint64_t fallback);
/* Member key of o as an RFC 3339 time in usec; 0 when absent or not one. */
uint64_t json_time_at(const json_t *o, const char *key);
/* Sets member key of o to usec as an RFC 3339 time (second precision). */
void json_set_time(json_t *o, const char *key, uint64_t usec);
/* Strict decimal parse of a whole string: no sign games, no trailing junk. */
int parse_uint64(const char *s, uint64_t *ret);

/* Dotted field paths as diagnostics name them and yamldoc_pos() reads them:
 * "spec.port", "spec.dependsOn[0]", "metadata.labels[\"app.kubernetes.io/name\"]"
 * (a key with a dot, bracket or quote takes the bracket form). parent may be
 * NULL or "" for the root. Caller frees. */
char *field_path_key(const char *parent, const char *key);
char *field_path_index(const char *parent, size_t i);

/* ---- diagnostics ------------------------------------------------------- */

/* One error a person will read:
 *   FILE:LINE:COL: Kind/name: field.path: message
 * Every part but message may be absent (NULL or 0) and is then left out. */
typedef struct Diag {
        char *file;
        unsigned line, col;
        char *object; /* "Server/web-1" */
        char *field;  /* "spec.port", "metadata.name" */
        char *message;
        int index; /* document index in an apply, -1 when not known */
} Diag;

typedef struct Diags {
        Diag *items;
        size_t n, cap;
} Diags;

#define DIAGS_INIT {NULL, 0, 0}
/* Appends one; strings are copied. Returns -EINVAL so that callers can
 * `return diags_add(...)` to mean "invalid". */
int diags_add(Diags *d, int index, const char *object, const char *field, const char *fmt, ...)
        _printf_(5, 6);
int diags_addv(Diags *d, int index, const char *object, const char *field, const char *fmt, va_list ap)
        _printf_(5, 0);
/* Formats one as above; caller frees. */
char *diag_format(const Diag *d);
void diags_free(Diags *d);

/* ---- hash map ---------------------------------------------------------- */

/* Strings to pointers: get, put and remove in constant time whatever the
 * size, for the indexes that must not cost more as objects are added. The
 * map copies its keys and owns nothing else; not thread-safe. */
typedef struct Hashmap Hashmap;
Hashmap *hashmap_new(void);
void hashmap_free(Hashmap *m); /* NULL-safe; the values are the caller's */
void hashmap_free_all(Hashmap *m); /* NULL-safe; free()s every value too */
void *hashmap_get(const Hashmap *m, const char *key);
/* Sets key to value (not NULL), replacing what was there. */
void hashmap_put(Hashmap *m, const char *key, void *value);
/* Takes key out; returns its value, NULL when absent. */
void *hashmap_remove(Hashmap *m, const char *key);
size_t hashmap_size(const Hashmap *m);
/* Calls fn for every entry, in no order; fn must not change the map. */
void hashmap_foreach(const Hashmap *m, void (*fn)(const char *key, void *value, void *userdata), void *userdata);

/* ---- work queue -------------------------------------------------------- */

/* A fixed pool of threads running submitted jobs in FIFO order. Used to keep
 * blocking work (store writes, remote I/O) off the HTTP event loop. */
typedef struct WorkQueue WorkQueue;
typedef void (*WorkFn)(void *userdata);

int workq_new(unsigned threads, WorkQueue **ret);
int workq_submit(WorkQueue *q, WorkFn fn, void *userdata);
/* Runs every job already submitted, then joins the threads. NULL-safe. */
void workq_free(WorkQueue *q);
