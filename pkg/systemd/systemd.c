/* systemd.c: socket activation, notify and the journal (see systemd.h).
 *
 * The journal is written in its native protocol (KEY=value lines in one
 * datagram) rather than through sd_journal_send(), so that the socket can
 * be pointed elsewhere: tests read the entries rprd writes from a socket of
 * their own, byte for byte what journald would get. */
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "systemd/systemd.h"

#define JOURNAL_SOCKET "/run/systemd/journal/socket"

int systemd_listeners(int **ret_fds, char ***ret_names) {
        char **names = NULL;
        int n = sd_listen_fds_with_names(1, &names);

        if (n <= 0) {
                free(names);
                return n;
        }
        int *fds = xcalloc((size_t) n, sizeof *fds);
        char **out = xcalloc((size_t) n + 1, sizeof *out);
        for (int i = 0; i < n; i++) {
                fds[i] = SD_LISTEN_FDS_START + i;
                out[i] = names && names[i] ? names[i] : xstrdup("unknown");
        }
        free(names);
        *ret_fds = fds;
        *ret_names = out;
        return n;
}

void systemd_names_free(char **names) {
        for (size_t i = 0; names && names[i]; i++)
                free(names[i]);
        free(names);
}

int systemd_notify(const char *state) {
        int r = sd_notify(0, state);
        return r < 0 ? r : 0;
}

int systemd_notifyf(const char *fmt, ...) {
        va_list ap;
        char *text;

        va_start(ap, fmt);
        int n = vasprintf(&text, fmt, ap);
        va_end(ap);
        if (n < 0)
                return -ENOMEM;
        int r = systemd_notify(text);
        free(text);
        return r;
}

uint64_t systemd_watchdog_usec(void) {
        uint64_t usec = 0;

        return sd_watchdog_enabled(0, &usec) > 0 ? usec : 0;
}

bool systemd_journal_wanted(void) {
        const char *e = getenv("JOURNAL_STREAM");
        unsigned long long dev, ino;
        struct stat st;

        if (!e || sscanf(e, "%llu:%llu", &dev, &ino) != 2 || fstat(STDERR_FILENO, &st) < 0)
                return false;
        return (unsigned long long) st.st_dev == dev && (unsigned long long) st.st_ino == ino;
}

/* KEY=value, with the value's newlines flattened: the native protocol's
 * binary form is not needed for one-line messages. */
static void field(Buf *b, const char *key, const char *value) {
        buf_printf(b, "%s=", key);
        for (const char *p = value; *p; p++)
                buf_append(b, *p == '\n' ? " " : p, 1);
        buf_puts(b, "\n");
}

void systemd_journal_sink(void *userdata, int level, const char *kind, const char *name, const char *message) {
        const char *path = userdata ? userdata : JOURNAL_SOCKET;
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        char prio[4];
        Buf b = BUF_INIT;

        snprintf(prio, sizeof prio, "%d", level);
        field(&b, "MESSAGE", message);
        field(&b, "PRIORITY", prio);
        field(&b, "SYSLOG_IDENTIFIER", "rprd");
        if (kind)
                field(&b, "RPR_KIND", kind);
        if (name)
                field(&b, "RPR_NAME", name);

        snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
        int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || sendto(fd, b.data, b.len, MSG_NOSIGNAL, (struct sockaddr *) &sa, sizeof sa) < 0)
                fprintf(stderr, "rpr: %s\n", message);
        if (fd >= 0)
                close(fd);
        buf_free(&b);
}
