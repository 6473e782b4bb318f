/* egress-connect.c: the one checked TCP connect for rprd's own connections
 * (ssh sessions, libgit2's streams): resolve, refuse what the policy does
 * not allow, connect with a deadline.
 *
 * A name that resolves to several addresses is tried address by address, as
 * ssh and git do; a refused address is skipped without a packet sent, and
 * the refusal is the error only when no allowed address was there to try. */
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "egress/egress.h"

static int connect_one(const struct addrinfo *ai, uint64_t timeout_usec, int *ret_fd) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
        int err = 0;
        socklen_t len = sizeof err;

        if (fd < 0)
                return -errno;
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0 && errno != EINPROGRESS) {
                err = errno;
                close(fd);
                return -err;
        }
        struct pollfd p = {fd, POLLOUT, 0};
        int n;
        do
                n = poll(&p, 1, (int) (timeout_usec / 1000));
        while (n < 0 && errno == EINTR);
        if (n == 0) {
                close(fd);
                return -ETIMEDOUT;
        }
        if (n < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err != 0) {
                err = err ? err : errno;
                close(fd);
                return -err;
        }
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
        /* Requests are small and answered at once: without this, Nagle and
         * delayed ACKs add 40 ms to a command on a pooled session. */
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &(int){1}, sizeof(int));
        *ret_fd = fd;
        return 0;
}

int egress_connect(const char *host, const char *port, uint64_t timeout_usec, int *ret_fd, char *msg,
                   size_t msgsize) {
        struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ais = NULL;
        bool tried = false;
        int r = -EHOSTUNREACH;

        int e = getaddrinfo(host, port, &hints, &ais);
        if (e != 0) {
                snprintf(msg, msgsize, "cannot resolve host name %s: %s", host, gai_strerror(e));
                return -ENXIO;
        }
        for (const struct addrinfo *ai = ais; ai && r < 0; ai = ai->ai_next) {
                if (egress_check(host, ai->ai_addr, msg, msgsize) < 0) {
                        if (!tried)
                                r = -EACCES;
                        continue;
                }
                tried = true;
                r = connect_one(ai, timeout_usec, ret_fd);
        }
        freeaddrinfo(ais);
        if (r == -ECONNREFUSED)
                snprintf(msg, msgsize, "connection to %s port %s refused: is the service running and listening there?",
                         host, port);
        else if (r == -ETIMEDOUT)
                snprintf(msg, msgsize, "no answer from %s port %s within %.1f s", host, port,
                         (double) timeout_usec / 1e6);
        else if (r < 0 && r != -EACCES)
                snprintf(msg, msgsize, "cannot connect to %s port %s: %s", host, port, strerror(-r));
        return r;
}
