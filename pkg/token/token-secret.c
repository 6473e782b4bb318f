/* token-secret: reading a Token's secret for whoever refers to it.
 *
 * A reference is checked in the order a person would fix it: does the
 * Token exist, is it of a type this use accepts, has it expired, can its
 * secret be read. Every message names the Token and the referring field;
 * none ever holds the secret. */
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/store.h"
#include "token/token.h"

void token_secret_clear(TokenSecret *t) {
        if (t->data) {
                explicit_bzero(t->data, t->len);
                free(t->data);
        }
        *t = (TokenSecret){0};
}

uint64_t token_expires(const json_t *token) {
        const char *spec = json_str_at(json_object_get(token, "spec"), "expires");
        const char *seen = json_str_at(json_object_get(token, "status"), "expires");
        uint64_t usec;

        if (spec && time_parse_rfc3339(spec, &usec) >= 0)
                return usec;
        if (seen && time_parse_rfc3339(seen, &usec) >= 0)
                return usec;
        return 0;
}

static bool type_wanted(const char *type, const char *const *want_types) {
        if (!want_types)
                return true;
        for (size_t i = 0; want_types[i]; i++)
                if (type && STREQ(type, want_types[i]))
                        return true;
        return false;
}

static char *types_text(const char *const *want_types) {
        Buf b = BUF_INIT;

        for (size_t i = 0; want_types[i]; i++)
                buf_printf(&b, "%s%s", i == 0 ? "" : want_types[i + 1] ? ", " : " or ", want_types[i]);
        return buf_steal(&b);
}

const char *token_secret_problem(const char *type, const char *data, size_t len) {
        bool pem = type && STREQ(type, "ssh-key");

        for (size_t i = 0; i < len; i++) {
                unsigned char ch = (unsigned char) data[i];
                if ((ch < 0x20 || ch == 0x7f) && !(pem && (ch == '\n' || ch == '\r')))
                        return "holds a control character (NUL, CR, LF, ESC, ...); a secret must be "
                               "printable text";
        }
        return NULL;
}

static void fd_closep(int *fd) {
        if (*fd >= 0)
                close(*fd);
}

/* A secret file: a regular file only, opened without blocking (a FIFO
 * would hold the reading thread forever) and bounded. */
static int secret_file_read(const char *path, char **ret, size_t *ret_len) {
        _cleanup_(fd_closep) int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
        struct stat st;
        Buf b = BUF_INIT;
        char chunk[4096];

        if (fd < 0)
                return -errno;
        if (fstat(fd, &st) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode))
                return -EBADFD;
        if (st.st_size > TOKEN_SECRET_MAX)
                return -EFBIG;
        b.max = TOKEN_SECRET_MAX;
        for (;;) {
                ssize_t n = read(fd, chunk, sizeof chunk);
                if (n < 0 && errno == EINTR)
                        continue;
                int r = n < 0 ? -errno : n == 0 ? 0 : buf_append(&b, chunk, (size_t) n);
                if (r < 0) {
                        explicit_bzero(chunk, sizeof chunk);
                        if (b.data)
                                explicit_bzero(b.data, b.len);
                        buf_free(&b);
                        return r;
                }
                if (n == 0)
                        break;
        }
        explicit_bzero(chunk, sizeof chunk);
        *ret_len = b.len;
        *ret = buf_steal(&b);
        return 0;
}

static const char *file_error_text(int r) {
        return r == -EBADFD  ? "it is not a regular file"
               : r == -EFBIG ? "it is larger than 64 KiB"
                             : strerror(-r);
}

/* The secret itself: inline, from a file or from rprd's environment. */
static int secret_load(const char *name, const json_t *spec, TokenSecret *t, char **ret_error) {
        const json_t *from = json_object_get(spec, "valueFrom");
        const char *value = json_str_at(spec, "value");
        const char *file = json_str_at(from, "file"), *env = json_str_at(from, "env");

        if (value) {
                t->data = xstrdup(value);
                t->len = strlen(value);
                return 0;
        }
        if (file) {
                int r = secret_file_read(file, &t->data, &t->len);
                if (r < 0) {
                        *ret_error = xasprintf("cannot read the secret of Token \"%s\" from %s: %s", name,
                                               file, file_error_text(r));
                        return -EINVAL;
                }
                /* Files written by editors and `echo` end in a newline that
                 * is not part of the secret. */
                while (t->len > 0 && (t->data[t->len - 1] == '\n' || t->data[t->len - 1] == '\r'))
                        t->data[--t->len] = '\0';
                if (t->len == 0) {
                        *ret_error = xasprintf("the secret file of Token \"%s\", %s, is empty", name, file);
                        return -EINVAL;
                }
                return 0;
        }
        if (env) {
                const char *v = getenv(env);
                if (!v || !*v) {
                        *ret_error = xasprintf("the secret of Token \"%s\" is in $%s, which rprd's environment "
                                               "does not set",
                                               name, env);
                        return -EINVAL;
                }
                t->data = xstrdup(v);
                t->len = strlen(v);
                return 0;
        }
        *ret_error = xasprintf("Token \"%s\" has neither value nor valueFrom", name);
        return -EINVAL;
}

int token_secret_read(Store *store, const char *ns, const char *name, const char *const *want_types,
                      const char *field, TokenSecret *ret, const char **ret_reason, char **ret_error) {
        _cleanup_json_ json_t *tok = NULL;
        TokenSecret t = {0};
        char when[RFC3339_MAX];
        int r;

        r = store_get_json(store, "Token", ns, name, &tok);
        if (r < 0) {
                *ret_reason = "MissingReference";
                *ret_error = r == -ENOENT ? xasprintf("%s names Token \"%s\", which does not exist in namespace %s",
                                                      field, name, ns)
                                          : xasprintf("cannot read Token \"%s\": %s", name, strerror(-r));
                return -ENOENT;
        }

        const json_t *spec = json_object_get(tok, "spec");
        const char *type = json_str_at(spec, "type");
        if (!type_wanted(type, want_types)) {
                _cleanup_free_ char *types = types_text(want_types);
                *ret_reason = "TokenUnusable";
                *ret_error = xasprintf("%s names Token \"%s\" of type %s; it needs one of type %s", field, name,
                                       type ? type : "(none)", types);
                return -EINVAL;
        }
        t.expires_usec = token_expires(tok);
        t.generation = json_int_at(json_object_get(tok, "metadata"), "generation", 0);
        if (t.expires_usec && t.expires_usec <= now_usec()) {
                *ret_reason = "TokenExpired";
                *ret_error = xasprintf("Token \"%s\" expired at %s; create a new one and update the Token", name,
                                       time_format_rfc3339(t.expires_usec, when));
                return -EKEYEXPIRED;
        }
        r = secret_load(name, spec, &t, ret_error);
        const char *problem = r >= 0 ? token_secret_problem(type, t.data, t.len) : NULL;
        if (problem) {
                const char *where = json_str_at(json_object_get(spec, "valueFrom"), "file");
                *ret_error = xasprintf("the secret of Token \"%s\"%s%s %s", name, where ? " in " : "",
                                       where ? where : "", problem);
                r = -EINVAL;
        }
        if (r < 0) {
                token_secret_clear(&t);
                *ret_reason = "TokenUnusable";
                return r;
        }
        *ret = t;
        return 0;
}

char *token_format_left(uint64_t left_usec, char *buf, size_t size) {
        uint64_t s = left_usec / USEC_PER_SEC;

        if (s >= 86400)
                snprintf(buf, size, "%" PRIu64 "d", s / 86400);
        else if (s >= 3600)
                snprintf(buf, size, "%" PRIu64 "h", s / 3600);
        else
                snprintf(buf, size, "%" PRIu64 "m", s / 60);
        return buf;
}
