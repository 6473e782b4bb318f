/* ssh-private: what the files of pkg/ssh share. */
#pragma once

#include <libssh2.h>

#include "ssh/ssh.h"

#define SSH_DEFAULT_TIMEOUT_USEC (10 * USEC_PER_SEC)
#define SSH_READ_CHUNK (32 * 1024)

struct SshCancel {
        int fd; /* eventfd: readable once fired, so that poll() wakes up */
        bool fired;
};

/* Fills result's failure and message (printf-style); returns -err. */
int ssh_fail(SshResult *result, SshFailure f, int err, const char *fmt, ...) _printf_(4, 5);

/* ---- ssh-session.c: one authenticated connection ----------------------- */

typedef struct SshSession {
        LIBSSH2_SESSION *session;
        int fd;
        char *config; /* the target's fields, to know a pooled session still fits */
        char host_key[128];
        struct SshSession *next;
} SshSession;

/* Connects, verifies the host key and authenticates. */
int ssh_session_open(const SshTarget *t, SshSession **ret, SshResult *result);
void ssh_session_close(SshSession *s); /* NULL-safe */
/* The fields of t that a session depends on, as one string (caller frees). */
char *ssh_target_config(const SshTarget *t);

/* ---- ssh-exec.c: one command on an open session -------------------------- */

/* Most pid files of ended commands one command removes before it starts. */
#define SSH_TIDY_MAX 64

/* A tracked command's pid file on its host, and those of ended commands
 * there that its wrapper removes first (ssh-pool.c keeps them per target). */
typedef struct SshTidy {
        char file[256]; /* out: "ID+NONCE.pid", the name this command's got ("" when untracked) */
        char **gone;    /* names to remove (borrowed) */
        size_t n_gone;
} SshTidy;

/* Returns 0 when the command exited; -EPIPE when the session was found dead
 * before anything was sent (the caller may reconnect and retry), other
 * negative errno with result filled. *ret_reusable says whether the session
 * may go back to the pool. tidy is used for tracked commands only. */
int ssh_session_exec(SshSession *s, const SshTarget *t, const SshCommand *cmd, SshTidy *tidy,
                     SshResult *result, bool *ret_reusable);

/* ---- ssh-track.c: the wrapper of tracked commands ------------------------- */

/* The /bin/sh program that removes the pid files named after its fifth
 * argument, records the command's process group in "$2/$3.pid" (or
 * "$2/$3+$5.pid"; under /tmp/rpr-run-UID when $2 cannot be written), makes
 * sure rprd is still there (mode "exec": a byte over the socket on fd 3,
 * which first gave it its start time; mode "eval": "rpr-pid:PID" on
 * stderr, then "go" on stdin), then runs "$1" (the script) in its own
 * shell with stdin from /dev/null and ends as the script did. Static
 * text. */
const char *ssh_track_wrapper(void);

/* ---- ssh-local.c ------------------------------------------------------------ */

int ssh_local_run(const SshCommand *cmd, SshResult *result);
