/* ssh-exec: one command over an open session.
 *
 * The remote login shell runs `echo rpr-pid:$$ >&2; exec /bin/sh -c SCRIPT`:
 * sshd made that shell a session leader, so its pid is the process group
 * of everything the script starts, and the first stderr line tells us
 * which group to kill on cancel or timeout (over a second channel). Output
 * is read in non-blocking mode from both streams as it arrives, so neither
 * can fill up and stall the other, and none of it is kept.
 *
 * A tracked command (ssh-track.c) runs under the wrapper instead, which
 * prints the pid line only once its pid file (under ~/.rpr/run, named with
 * a nonce; ended commands' files handed on by the pool are removed first)
 * is written, and waits for "go" on stdin: it is sent, with the end of stdin,
 * when the pid line comes. A channel that dies before that (rprd killed)
 * ends stdin, and the wrapper exits without running the script. Without a
 * pty sshd signals nothing when a channel dies: a command that had started
 * runs on, and only its pid file finds it again. */
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>

#include "ssh/ssh-private.h"

/* sshd hands the command to the login shell as one argument, and Linux
 * limits one argument to 128 KiB (MAX_ARG_STRLEN). */
#define MAX_COMMAND_LINE (120 * 1024)

/* The "rpr-pid:N" line on stderr. Login scripts may print lines before
 * it: those are passed on. Scanning stops at the pid line or after 16
 * other lines. */
typedef struct PidScan {
        char buf[40];
        size_t len;
        unsigned lines;
        bool long_line; /* passing on the rest of a line too long to be ours */
        bool done;
        long pid;
} PidScan;

typedef struct Exec {
        SshSession *s;
        LIBSSH2_CHANNEL *ch;
        const SshCommand *cmd;
        SshTidy *tidy;
        PidScan pid;
        bool stop;  /* canceled, or the output callback asked to stop */
        bool gated; /* tracked: "go" not sent yet */
} Exec;

static const char *last_error(SshSession *s) {
        char *msg = NULL;

        libssh2_session_last_error(s->session, &msg, NULL, 0);
        return msg ? msg : "unknown error";
}

static void pass_on(Exec *e, SshStream stream, const char *data, size_t n) {
        if (n > 0 && !e->stop && e->cmd->output && e->cmd->output(e->cmd->userdata, stream, data, n) < 0)
                e->stop = true;
}

static bool is_pid_line(PidScan *p) {
        char *end;

        p->buf[p->len] = '\0';
        if (!startswith(p->buf, "rpr-pid:"))
                return false;
        p->pid = strtol(p->buf + 8, &end, 10);
        return *end == '\0' && p->pid > 1;
}

/* Takes stderr bytes while looking for the pid line; returns how many. */
static size_t pid_scan(Exec *e, const char *data, size_t n) {
        PidScan *p = &e->pid;
        size_t used = 0;

        while (!p->done && used < n) {
                if (p->long_line) {
                        /* The rest of the line, up to and with its newline, in one piece. */
                        const char *nl = memchr(data + used, '\n', n - used);
                        size_t span = nl ? (size_t) (nl - (data + used)) + 1 : n - used;
                        pass_on(e, SSH_STDERR, data + used, span);
                        used += span;
                        p->long_line = !nl;
                        p->done = nl && ++p->lines >= 16;
                        continue;
                }
                char ch = data[used++];
                if (ch != '\n' && p->len == sizeof p->buf - 1) {
                        pass_on(e, SSH_STDERR, p->buf, p->len);
                        pass_on(e, SSH_STDERR, &ch, 1);
                        p->len = 0;
                        p->long_line = true;
                } else if (ch != '\n')
                        p->buf[p->len++] = ch;
                else if (is_pid_line(p))
                        p->done = true;
                else {
                        pass_on(e, SSH_STDERR, p->buf, p->len);
                        pass_on(e, SSH_STDERR, "\n", 1);
                        p->len = 0;
                        p->pid = 0;
                        p->done = ++p->lines >= 16;
                }
        }
        return used;
}

static void deliver(Exec *e, SshStream stream, const char *data, size_t n) {
        if (stream == SSH_STDERR && !e->pid.done) {
                size_t used = pid_scan(e, data, n);
                data += used;
                n -= used;
        }
        pass_on(e, stream, data, n);
}

/* Reads what is there; returns bytes read, LIBSSH2_ERROR_EAGAIN, or an error. */
static ssize_t read_stream(Exec *e, SshStream stream) {
        char buf[SSH_READ_CHUNK];
        ssize_t n = libssh2_channel_read_ex(e->ch, stream == SSH_STDERR ? SSH_EXTENDED_DATA_STDERR : 0, buf,
                                            sizeof buf);

        if (n > 0)
                deliver(e, stream, buf, (size_t) n);
        return n;
}

/* Sleeps until the socket is ready the way libssh2 wants it, the deadline,
 * a cancel (when watched) or five seconds, whichever comes first. */
static void wait_socket(Exec *e, uint64_t deadline, bool watch_cancel) {
        int dir = libssh2_session_block_directions(e->s->session);
        short events = (short) (((dir & LIBSSH2_SESSION_BLOCK_INBOUND) ? POLLIN : 0) |
                                ((dir & LIBSSH2_SESSION_BLOCK_OUTBOUND) ? POLLOUT : 0));
        struct pollfd p[2] = {{e->s->fd, events ? events : POLLIN, 0},
                              {watch_cancel && e->cmd->cancel ? e->cmd->cancel->fd : -1, POLLIN, 0}};
        int ms = 5000; /* keepalives go out at least this often */

        if (deadline) {
                uint64_t now = now_mono_usec();
                ms = now >= deadline ? 0 : (int) MIN((deadline - now) / 1000 + 1, (uint64_t) ms);
        }
        poll(p, 2, ms);
}

/* Waits up to two seconds for the pid line, when cancel came before it. */
static void await_pid(Exec *e) {
        uint64_t deadline = now_mono_usec() + 2 * USEC_PER_SEC;

        e->stop = true; /* output from now on is dropped */
        while (!e->pid.done && now_mono_usec() < deadline) {
                ssize_t n = read_stream(e, SSH_STDERR);
                if (n < 0 && n != LIBSSH2_ERROR_EAGAIN)
                        return;
                if (n == LIBSSH2_ERROR_EAGAIN) {
                        read_stream(e, SSH_STDOUT); /* a full window would hold stderr back */
                        wait_socket(e, deadline, false);
                }
        }
}

/* Kills the remote process group over a second channel, best effort: TERM
 * now, KILL a second later for whatever ignored it. */
static void kill_remote(Exec *e) {
        char cmd[1024];
        LIBSSH2_CHANNEL *ch;
        long pid;

        await_pid(e);
        pid = e->pid.pid;
        if (pid <= 1)
                return;
        libssh2_session_set_blocking(e->s->session, 1);
        libssh2_session_set_timeout(e->s->session, 3000);
        ch = libssh2_channel_open_session(e->s->session);
        if (!ch)
                return;
        _cleanup_free_ char *cleanup = NULL;
        if (e->cmd->track) {
                /* Killed here, so nothing is left to find again. */
                _cleanup_free_ char *file = ssh_shell_quote(e->tidy->file);
                cleanup = xasprintf(" rm -f \"$HOME/.rpr/run/\"%s /tmp/rpr-run-$(id -u)/%s;", file, file);
        }
        snprintf(cmd, sizeof cmd,
                 "kill -TERM -%ld 2>/dev/null;%s (sleep 1; kill -KILL -%ld) >/dev/null 2>&1 </dev/null &", pid,
                 cleanup ?: "", pid);
        if (libssh2_channel_exec(ch, cmd) == 0) {
                libssh2_channel_send_eof(ch);
                libssh2_channel_wait_eof(ch);
        }
        libssh2_channel_free(ch);
}

/* The command's input, whole, in blocking mode: the scripts that take
 * input read it before they write anything much, so the window opens. */
static int send_input(Exec *e) {
        const char *p = e->cmd->input;
        size_t left = e->cmd->track ? 0 : e->cmd->input_len;

        libssh2_session_set_timeout(e->s->session, 60000);
        while (left > 0) {
                ssize_t n = libssh2_channel_write(e->ch, p, MIN(left, (size_t) 32768));
                if (n < 0)
                        return -EIO;
                p += n;
                left -= (size_t) n;
        }
        return 0;
}

/* The wrapper's command line: its pid file gets a nonce (a name handed on
 * for removal is never a later command's), and it removes the ended
 * commands' files it is given before its own is written. */
static char *tracked_line(Exec *e, const char *quoted_script) {
        _cleanup_free_ char *wrapper = ssh_shell_quote(ssh_track_wrapper());
        _cleanup_free_ char *id = ssh_shell_quote(e->cmd->track->id);
        uint64_t nonce = 0;
        Buf gone = BUF_INIT;

        (void) random_bytes(&nonce, sizeof nonce);
        snprintf(e->tidy->file, sizeof e->tidy->file, "%s+%016" PRIx64 ".pid", e->cmd->track->id, nonce);
        for (size_t i = 0; i < e->tidy->n_gone; i++) {
                _cleanup_free_ char *q = ssh_shell_quote(e->tidy->gone[i]);
                buf_printf(&gone, " %s", q);
        }
        char *line = xasprintf("exec /bin/sh -c %s rpr-track %s \"$HOME/.rpr/run\" %s eval %016" PRIx64 "%s",
                               wrapper, quoted_script, id, nonce, gone.data ?: "");
        buf_free(&gone);
        return line;
}

static int start(Exec *e, const SshTarget *t, SshResult *result) {
        _cleanup_free_ char *script = NULL, *quoted = NULL, *line = NULL;

        if (ssh_script_build(e->cmd, &script) < 0)
                return ssh_fail(result, SSH_FAIL_EXEC, EINVAL, "invalid environment variable name");
        quoted = ssh_shell_quote(script);
        if (e->cmd->track) {
                if (!ssh_track_id_valid(e->cmd->track->id))
                        return ssh_fail(result, SSH_FAIL_EXEC, EINVAL, "invalid command id for tracking");
                line = tracked_line(e, quoted);
                e->gated = true;
        } else
                line = xasprintf("echo rpr-pid:$$ >&2; exec /bin/sh -c %s", quoted);
        if (strlen(line) > MAX_COMMAND_LINE)
                return ssh_fail(
                        result, SSH_FAIL_EXEC, E2BIG,
                        "the script is too long (%zu bytes with its environment; at most %d): the remote "
                        "shell gets it as one argument",
                        strlen(line), MAX_COMMAND_LINE);

        libssh2_session_set_blocking(e->s->session, 1);
        libssh2_session_set_timeout(e->s->session, 10000);
        e->ch = libssh2_channel_open_session(e->s->session);
        if (!e->ch)
                return -EPIPE; /* a pooled session that died meanwhile: nothing sent yet */
        if (libssh2_channel_exec(e->ch, line) != 0)
                return ssh_fail(result, SSH_FAIL_EXEC, EIO, "%s refused to run the command: %s", t->host,
                                last_error(e->s));
        if (!e->gated && send_input(e) < 0)
                return ssh_fail(result, SSH_FAIL_DISCONNECTED, EIO, "cannot send the command's input to %s: %s",
                                t->host, last_error(e->s));
        if (!e->gated)
                libssh2_channel_send_eof(e->ch);
        libssh2_session_set_blocking(e->s->session, 0);
        return 0;
}

/* A tracked command: "go" once its pid file is written (the pid line came).
 * Three bytes fit any window; EAGAIN only delays it to the next round. */
static int release(Exec *e) {
        if (!e->gated || !e->pid.done || e->pid.pid <= 1)
                return 0;
        ssize_t n = libssh2_channel_write(e->ch, "go\n", 3);
        if (n == LIBSSH2_ERROR_EAGAIN)
                return 0;
        if (n != 3)
                return -ECONNRESET;
        e->gated = false;
        (void) libssh2_channel_send_eof(e->ch);
        return 1;
}

/* One round of reading: 1 when output came, 0 when there is nothing to do
 * but wait, 2 when the remote closed the channel (after EOF; the exit
 * status comes just before the close), -ECONNRESET when the connection
 * broke. */
static int step(Exec *e) {
        ssize_t a = read_stream(e, SSH_STDOUT);
        ssize_t b = read_stream(e, SSH_STDERR);
        int r;

        if ((a < 0 && a != LIBSSH2_ERROR_EAGAIN) || (b < 0 && b != LIBSSH2_ERROR_EAGAIN))
                return -ECONNRESET;
        r = release(e);
        if (r < 0)
                return r;
        if (a > 0 || b > 0 || r > 0)
                return 1;
        if (!libssh2_channel_eof(e->ch))
                return 0;
        r = libssh2_channel_wait_closed(e->ch);
        if (r == 0)
                return 2;
        return r == LIBSSH2_ERROR_EAGAIN ? 0 : -ECONNRESET;
}

/* Runs the command to its close: 0, or -ETIMEDOUT, -ECANCELED, -ECONNRESET. */
static int pump(Exec *e, uint64_t deadline) {
        for (;;) {
                int r = step(e), next;

                if (e->stop || ssh_cancel_fired(e->cmd->cancel))
                        return -ECANCELED;
                if (r < 0 || r == 2)
                        return r == 2 ? 0 : r;
                if (r == 1)
                        continue;
                if (deadline && now_mono_usec() >= deadline)
                        return -ETIMEDOUT;
                if (libssh2_keepalive_send(e->s->session, &next) < 0 &&
                    libssh2_session_last_errno(e->s->session) != LIBSSH2_ERROR_EAGAIN)
                        return -ECONNRESET;
                wait_socket(e, deadline, true);
        }
}

/* The remote closed the channel: close our side, read how it ended. */
static void read_exit(Exec *e, SshResult *result) {
        uint64_t deadline = now_mono_usec() + 5 * USEC_PER_SEC;
        char *sig = NULL;
        size_t sig_len = 0;

        while (libssh2_channel_close(e->ch) == LIBSSH2_ERROR_EAGAIN && now_mono_usec() < deadline)
                wait_socket(e, deadline, false);
        result->exit_code = libssh2_channel_get_exit_status(e->ch);
        libssh2_channel_get_exit_signal(e->ch, &sig, &sig_len, NULL, NULL, NULL, NULL);
        if (sig) {
                snprintf(result->signal, sizeof result->signal, "%.*s", (int) sig_len, sig);
                result->exit_code = -1;
                libssh2_free(e->s->session, sig);
        }
}

int ssh_session_exec(SshSession *s, const SshTarget *t, const SshCommand *cmd, SshTidy *tidy,
                     SshResult *result, bool *ret_reusable) {
        Exec e = {.s = s, .cmd = cmd, .tidy = tidy};
        uint64_t deadline = cmd->timeout_usec ? now_mono_usec() + cmd->timeout_usec : 0;
        int r;

        *ret_reusable = false;
        r = start(&e, t, result);
        if (r >= 0) {
                r = pump(&e, deadline);
                if (r == 0) {
                        read_exit(&e, result);
                        *ret_reusable = true;
                } else if (r == -ECONNRESET)
                        r = ssh_fail(result, SSH_FAIL_DISCONNECTED, ECONNRESET,
                                     "the connection to %s was lost while the command ran (sshd or the host "
                                     "went away); whether the command finished is unknown",
                                     t->host);
                else {
                        kill_remote(&e);
                        if (r == -ETIMEDOUT)
                                ssh_fail(result, SSH_FAIL_TIMEOUT, ETIMEDOUT,
                                         "the command did not finish within %.1f s and was killed on %s",
                                         (double) cmd->timeout_usec / 1e6, t->host);
                        else
                                ssh_fail(result, SSH_FAIL_CANCELED, ECANCELED, "the command was canceled");
                }
        }
        if (e.ch) {
                libssh2_session_set_blocking(s->session, 1);
                libssh2_session_set_timeout(s->session, 2000);
                libssh2_channel_free(e.ch);
        }
        return r;
}
