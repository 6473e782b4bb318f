/* egress-git.c: libgit2's socket stream, replaced by one that connects
 * through egress_connect, so that every git transport that opens a TCP
 * connection (http, git://, ssh://, and https, whose TLS stream is built on
 * the socket stream) is held to the allow-list.
 *
 * libgit2 1.5's ssh transport takes the socket out of the stream it is given
 * by casting it to its own git_socket_stream {parent, host, port, s}: this
 * stream keeps that layout so that ssh:// remotes keep working. */
#include <git2.h>
#include <git2/sys/stream.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "egress/egress.h"

#define GIT_CONNECT_TIMEOUT_USEC (30 * USEC_PER_SEC)

typedef struct EgressStream {
        git_stream parent;
        char *host;
        char *port;
        int fd; /* read by libgit2's ssh transport: keep it after host and port */
} EgressStream;

static int stream_connect(git_stream *s) {
        EgressStream *st = (EgressStream *) s;
        char msg[384];

        int r = egress_connect(st->host, st->port, GIT_CONNECT_TIMEOUT_USEC, &st->fd, msg, sizeof msg);
        if (r < 0) {
                git_error_set_str(GIT_ERROR_NET, msg);
                return -1;
        }
        return 0;
}

static ssize_t stream_read(git_stream *s, void *data, size_t len) {
        EgressStream *st = (EgressStream *) s;
        ssize_t n;

        do
                n = recv(st->fd, data, len, 0);
        while (n < 0 && errno == EINTR);
        if (n < 0)
                git_error_set_str(GIT_ERROR_NET, "cannot read from the connection");
        return n;
}

static ssize_t stream_write(git_stream *s, const char *data, size_t len, int flags) {
        EgressStream *st = (EgressStream *) s;
        ssize_t n;

        (void) flags;
        do
                n = send(st->fd, data, len, MSG_NOSIGNAL);
        while (n < 0 && errno == EINTR);
        if (n < 0)
                git_error_set_str(GIT_ERROR_NET, "cannot write to the connection");
        return n;
}

static int stream_close(git_stream *s) {
        EgressStream *st = (EgressStream *) s;

        if (st->fd >= 0)
                close(st->fd);
        st->fd = -1;
        return 0;
}

static void stream_free(git_stream *s) {
        EgressStream *st = (EgressStream *) s;

        stream_close(s);
        free(st->host);
        free(st->port);
        free(st);
}

static int stream_new(git_stream **out, const char *host, const char *port) {
        EgressStream *st = xcalloc(1, sizeof *st);

        st->parent = (git_stream){
                .version = GIT_STREAM_VERSION,
                .connect = stream_connect,
                .read = stream_read,
                .write = stream_write,
                .close = stream_close,
                .free = stream_free,
        };
        st->host = xstrdup(host);
        st->port = xstrdup(port);
        st->fd = -1;
        *out = &st->parent;
        return 0;
}

int egress_git_install(void) {
        git_stream_registration reg = {.version = GIT_STREAM_VERSION, .init = stream_new};

        return git_stream_register(GIT_STREAM_STANDARD, &reg) < 0 ? -EIO : 0;
}
