/* rpr-agent.h: what the files of rpr-agent share.
 *
 * rpr-agent runs on a host rprd cannot reach: it calls rprd over HTTPS
 * (pkg/client), long-polls for jobs, runs each as its own process group
 * under /bin/sh -c, and sends the output in chunks by byte offset, keeping
 * every byte in a spool file until rprd has acknowledged it. */
#pragma once

#include <signal.h>
#include <sys/types.h>

#include "base/base.h"
#include "client/client.h"

#define AGENT_DEFAULT_STATE_DIR "/var/lib/rpr-agent"
#define AGENT_CHUNK_MAX (256u * 1024)
#define AGENT_CANCEL_GRACE_USEC (10 * USEC_PER_SEC)

/* What join keeps in the state dir (agent.json and credential). */
typedef struct AgentConfig {
        char *state_dir;
        char *server; /* https://HOST:PORT */
        char *ns, *name;
        char *ca, *fingerprint; /* NULL: not used */
        char *credential;
        unsigned poll_seconds;
        unsigned capacity;
} AgentConfig;

int config_load(const char *state_dir, AgentConfig *ret);
void config_clear(AgentConfig *c);
/* A client for c's server with its TLS settings and credential (token may be
 * NULL: none). */
int agent_client(const char *server, const char *ca, const char *fingerprint, const char *token,
                 Client **ret);

/* ---- job.c: one job's process and its output ---------------------------------- */

#define JOB_STREAMS 2 /* stdout, stderr: for a job offered with "streams": 2 */

/* One output stream of a job: its spool, what it holds, what rprd has. */
typedef struct JobStream {
        int spool;
        uint64_t written, acked;
} JobStream;

typedef struct Job {
        struct Job *next;
        char id[64];
        pid_t pid;            /* its process group too; 0 once it has ended */
        bool own_child;       /* started by this agent (else found after a restart) */
        uint64_t start_ticks; /* /proc start time, against pid reuse */
        unsigned streams;     /* 1 (stdout and stderr as one) or JOB_STREAMS */
        JobStream out[JOB_STREAMS]; /* kept until acknowledged */
        bool sized; /* ended and its size read: written is final */
        int exit_code;
        char signal[16];
        uint64_t started, timeout_usec; /* realtime */
        uint64_t kill_at;               /* monotonic; 0: none */
        bool canceled;
} Job;

/* Starts command as its own process group, its output into the spool and
 * what it is into the state dir (see job.c); stdin_fd (taken; -1: none,
 * /dev/null) is its stdin. */
int job_start(const char *state_dir, const char *id, const char *command, const json_t *env, int stdin_fd,
              unsigned streams, uint64_t timeout_usec, Job **ret);
/* input in a file only the job will hold (0600, removed at once): its fd. */
int job_input_write(const char *state_dir, const char *id, const void *input, size_t len);
/* The jobs an earlier agent left in the state dir, running or ended,
 * prepended to *list; how many. */
size_t job_load(const char *state_dir, Job **list);
/* Notes what the job wrote and whether it ended; TERM after the timeout,
 * KILL after the grace. */
void job_pump(const char *state_dir, Job *j);
/* TERM now, KILL after the grace. */
void job_cancel(Job *j);
/* Whether it has ended and all its output is counted. */
bool job_done(const Job *j);
/* Up to max bytes of stream s's spool from offset into buf; how many. */
ssize_t job_read(const Job *j, unsigned s, uint64_t offset, char *buf, size_t max);
/* SHA-256 (hex) of the whole of stream s. */
int job_checksum(const Job *j, unsigned s, char out[static 65]);
/* Kills what is left, removes its files, frees. */
void job_free(const char *state_dir, Job *j);

/* ---- stream.c: the poll stream ------------------------------------------------- */

typedef struct PollStream PollStream;
/* Connects to cfg's rprd (its TLS checks) and upgrades to the poll
 * stream: 0 and *ret; -EPROTONOSUPPORT when rprd answered anything but
 * 101 (*ret_status: what; poll with POSTs), -EKEYREJECTED when its
 * certificate is not the one trusted, other < 0 when it cannot be
 * reached. error: why, for the log. */
int poll_stream_open(const AgentConfig *cfg, PollStream **ret, long *ret_status, char *error, size_t size);
/* One poll: sends the heartbeat, waits up to timeout_usec for the answer
 * (*ret_answer, new reference: the poll's answer, or a Status that ends
 * the stream). < 0 when the stream broke (free it and open another),
 * -EINTR when *stop was set meanwhile. */
int poll_stream_poll(PollStream *s, const json_t *hb, uint64_t timeout_usec, volatile sig_atomic_t *stop,
                     json_t **ret_answer, char *error, size_t size);
void poll_stream_free(PollStream *s); /* NULL-safe */

/* ---- run.c ----------------------------------------------------------------------- */

/* Serves until SIGTERM/SIGINT, or until rprd refuses the agent (-EACCES).
 * poll_seconds and capacity 0: the defaults (25 s, 1 job at a time). */
int agent_run(const char *state_dir, unsigned poll_seconds, unsigned capacity);
