/* ssh: running commands on Servers.
 *
 * Over SSH with libssh2 (transport ssh), or as a child process of rprd
 * (transport local), behind one interface so that callers never care which.
 * Host keys are always verified: against a pinned fingerprint, a
 * known_hosts file, or, only when the target asks for accept-new, taken on
 * first sight and reported back so that the caller can pin it. Keys only,
 * never passwords.
 *
 * A pool keeps one authenticated session per target (keyed by the caller's
 * name for it) and reuses it across commands; it bounds how many commands
 * run at once. Output is handed to a callback as it arrives, stdout and
 * stderr apart, never buffered whole. Every function may block: call them
 * from worker threads, never from the HTTP loop. */
#pragma once

#include "base/base.h"

typedef enum SshTransport {
        SSH_TRANSPORT_SSH,
        SSH_TRANSPORT_LOCAL,
} SshTransport;

/* Why a command could not run or finish. The names (ssh_failure_reason)
 * are the reasons of a Server's Reachable condition. */
typedef enum SshFailure {
        SSH_OK = 0,
        SSH_FAIL_NAME_RESOLUTION, /* "NameResolution" */
        SSH_FAIL_CONNECTION_REFUSED, /* "ConnectionRefused" */
        SSH_FAIL_TIMEOUT,            /* "Timeout": connect, handshake, auth or the command's own */
        SSH_FAIL_NETWORK,            /* "NetworkError": unreachable, reset */
        SSH_FAIL_HANDSHAKE,          /* "HandshakeFailed": no common algorithm, protocol error */
        SSH_FAIL_HOST_KEY_MISMATCH,  /* "HostKeyMismatch" */
        SSH_FAIL_HOST_KEY_UNKNOWN,   /* "HostKeyUnknown": not pinned, not known, no accept-new */
        SSH_FAIL_AUTH,               /* "AuthFailed" (incl. RSA refused for SHA-1, said so) */
        SSH_FAIL_KEY,                /* "KeyUnusable": key file missing, unreadable, bad format */
        SSH_FAIL_DISCONNECTED,       /* "Disconnected": the connection died mid-command */
        SSH_FAIL_CANCELED,           /* "Canceled" */
        SSH_FAIL_EXEC,               /* "ExecFailed": channel refused, fork failed, ... */
        SSH_FAIL_NOT_ALLOWED,        /* "NetworkNotAllowed": refused by --allow-networks, never tried */
        _SSH_FAIL_MAX,
} SshFailure;

const char *ssh_failure_reason(SshFailure f);

struct SshCommand;
struct SshResult;

/* Where to run. Strings are borrowed for the duration of each call. */
typedef struct SshTarget {
        const char *id; /* pool key, e.g. "default/web-1"; sessions are reused per id */
        SshTransport transport;
        const char *host;
        unsigned port;    /* 0 = 22 */
        const char *user; /* NULL = "root" */
        /* The private key: a file, or the key itself (PEM/OpenSSH text, from
         * a Token of type ssh-key). */
        const char *key_file;
        const char *key_data;
        size_t key_len;
        /* Host key: a pin "SHA256:b64" or "TYPE SHA256:b64" (TYPE then is
         * preferred in the handshake), or a known_hosts file. */
        const char *host_key;
        const char *known_hosts_file;
        bool accept_new; /* with neither pinned nor known: take the key seen */
        /* accept-new: the key taken the first time ("TYPE SHA256:b64"), from
         * then on the only one accepted; NULL before the first. */
        const char *accepted_key;
        /* accept-new before the first: called with the key seen, before
         * anything is sent, to record it; 0 to go on, negative to refuse
         * (-EPERM: another key was recorded first). NULL: not recorded. */
        int (*pin_host_key)(void *userdata, const char *host_key);
        void *pin_userdata;
        uint64_t connect_timeout_usec; /* 0 = 10 s; TCP connect and handshake */
        uint64_t auth_timeout_usec;    /* 0 = 10 s */
        /* A host rprd does not log into (a Server of transport agent): when
         * set, ssh_run() hands each command to run, which fills result as
         * ssh_run() would. The pool's sessions and limits are not used. */
        int (*run)(void *userdata, const struct SshCommand *cmd, struct SshResult *result);
        void *run_userdata;
} SshTarget;

typedef enum SshStream { SSH_STDOUT = 1, SSH_STDERR = 2 } SshStream;

/* Cancels a running command from any thread: the channel is closed and the
 * remote process group killed (locally: the child's process group). */
typedef struct SshCancel SshCancel;
SshCancel *ssh_cancel_new(void);
void ssh_cancel_fire(SshCancel *c);
bool ssh_cancel_fired(const SshCancel *c);
void ssh_cancel_free(SshCancel *c); /* NULL-safe */

/* An SshCommand's env, built up: "NAME=VALUE" strings, NULL-terminated in
 * v (NULL while empty). */
typedef struct SshEnv {
        char **v;
        size_t n;
} SshEnv;
void ssh_env_add(SshEnv *e, const char *name, const char *value); /* value NULL: "" */
/* Each string member of vars (an object; NULL adds nothing). */
void ssh_env_add_all(SshEnv *e, const json_t *vars);
void ssh_env_clear(SshEnv *e);

/* A command that a later rprd can find again, after this one died (kill -9,
 * a crash, a power cut of rprd's host but not the target's). Before its
 * script starts, the command's process group id and the group leader's
 * start time (from /proc, so that a reused pid is never taken for it) are
 * in a pid file on the host it runs on: ID.pid under local_dir for the
 * local transport, under ~/.rpr/run on an ssh host. A small /bin/sh
 * wrapper writes that file, says so, and waits for a go before it runs the
 * script: a command whose rprd died before the go never starts. */
typedef struct SshTrack {
        const char *id;        /* unique per command; [A-Za-z0-9._@-], at most 200 bytes */
        const char *local_dir; /* transport local: the pid files' directory */
} SshTrack;

/* What ssh_reap() found of a tracked command. */
typedef enum SshReap {
        SSH_REAP_NONE,       /* no pid file: it never started, or ended by itself and removed it */
        SSH_REAP_ENDED,      /* a pid file, but its process group was gone */
        SSH_REAP_TERMINATED, /* it was still running and stopped on SIGTERM */
        SSH_REAP_KILLED,     /* it was still running and ignored SIGTERM for the grace: SIGKILL */
        _SSH_REAP_MAX,
} SshReap;

/* "None", "Ended", "Terminated", "Killed". */
const char *ssh_reap_name(SshReap r);

typedef struct SshCommand {
        /* Run by /bin/sh; may be one command or a multi-line script, sent as
         * is (never re-quoted). */
        const char *script;
        /* "NAME=VALUE" strings, NULL-terminated (or NULL): exported before the
         * script runs, correctly quoted, whether or not sshd accepts setenv. */
        const char *const *env;
        const char *workdir;   /* cd here first (NULL: the login directory) */
        uint64_t timeout_usec; /* 0 = none; on expiry: killed, SSH_FAIL_TIMEOUT */
        /* Called on the calling thread as output arrives; data is not NUL-
         * terminated. May be NULL (output discarded). Returning a negative
         * value cancels the command. */
        int (*output)(void *userdata, SshStream stream, const char *data, size_t n);
        void *userdata;
        SshCancel *cancel; /* optional */
        const SshTrack *track; /* optional: record it so that ssh_reap() finds it again */
        /* Sent on stdin, then its end (untracked commands only: a tracked
         * command's stdin is its gate). For what must never be on a
         * command line (a secret) and for files copied to the host; the
         * script should read it all before it writes much output. */
        const void *input;
        size_t input_len;
} SshCommand;

typedef struct SshResult {
        SshFailure failure;  /* SSH_OK: the command ran and exited (or was signalled) */
        int exit_code;       /* -1 when it did not exit normally */
        char signal[32];     /* "TERM" when killed by a signal, else "" */
        char message[512];   /* for a person: what failed and what to do; "" when OK */
        char host_key[128];  /* "ssh-ed25519 SHA256:..." of the host, when seen */
        bool host_key_new;   /* accepted under accept-new on this call: pin it */
        bool logged_in;      /* authentication succeeded (fresh or pooled session) */
        uint64_t duration_usec;
} SshResult;

typedef struct SshPool SshPool;

/* max_running: commands at once over all targets (0 = 64). Further calls
 * wait their turn. */
int ssh_pool_new(unsigned max_running, SshPool **ret);
/* Closes every session. No command may be running. NULL-safe. */
void ssh_pool_free(SshPool *p);
/* Drops the pooled session of id (after a spec change). */
void ssh_pool_forget(SshPool *p, const char *id);
/* Sessions currently open (for /metrics and tests). */
size_t ssh_pool_sessions(SshPool *p);
/* Targets the pool holds (those with idle sessions or commands under way). */
size_t ssh_pool_targets(SshPool *p);

/* Runs cmd on target. Returns 0 when the command ran to an exit (whatever
 * its code: see result->exit_code), or a negative errno with
 * result->failure and result->message saying why. result is always filled.
 * A pooled session that turns out dead is reconnected once, transparently,
 * before anything was sent. */
int ssh_run(SshPool *p, const SshTarget *target, const SshCommand *cmd, SshResult *result);

/* Stops whatever is left of the tracked command track on target: SIGTERM to
 * its whole process group, up to grace_usec for it to go, then SIGKILL;
 * its pid file is removed. 0 and *ret says what was found; a negative
 * errno with result filled when target could not be reached (nothing is
 * known then: try again later). Blocks for up to grace_usec plus a login. */
int ssh_reap(SshPool *p, const SshTarget *target, const SshTrack *track, uint64_t grace_usec, SshReap *ret,
             SshResult *result);
/* Whether s may be an SshTrack id. */
bool ssh_track_id_valid(const char *s);

/* Quotes s for /bin/sh ('...' with ' as '\''); caller frees. */
char *ssh_shell_quote(const char *s);
/* The script actually sent: exports, cd, then cmd->script, unchanged.
 * Caller frees. -EINVAL for an env entry without '=' or a bad name. */
int ssh_script_build(const SshCommand *cmd, char **ret);
/* Parses a pin "SHA256:b64" or "TYPE SHA256:b64"; type may be NULL. */
int ssh_host_key_parse(const char *pin, char ret_type[static 32], char ret_fp[static 64]);
