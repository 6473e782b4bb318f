/* agent: rpr agents, the transport for Servers rprd cannot reach (NAT,
 * laptops, edge boxes): the agent calls rprd, never the other way.
 *
 * This module holds, in memory, what rprd knows of the agents that poll it
 * (when each was last heard from, its version, capacity and metrics) and
 * the jobs waiting for, offered to or run by each one, with their leases
 * and the output received so far. It knows nothing of HTTP: pkg/api speaks
 * the protocol (see README "Agents") and calls in here; whoever wants a
 * command run (exec, Runs) submits a job with a sink and is called back
 * with its output, in order and exactly once, and with its end.
 *
 * The one idea: a job's fate is decided by its lease, not by the agent's
 * presence. An offer not accepted within its lease is offered again; a
 * running job whose lease is not renewed (by a poll that lists it, or by
 * output) is Interrupted. Presence only says whether the Server is
 * Reachable.
 *
 * Thread-safe: one lock guards everything. The sinks of a job that was
 * offered are called only from the thread that speaks the protocol (h2o's
 * loop) and from agents_tick(); a queued job canceled from elsewhere gets
 * its end on the canceling thread. No callback is made under the lock. */
#pragma once

#include "base/base.h"

typedef struct Agents Agents;

#define AGENT_VERSION_MIN "0.1.0" /* older agents are refused, by name */
#define AGENT_POLL_DEFAULT_SEC 25 /* how long a poll is held at most */
#define AGENT_OUTPUT_CHUNK_MAX (256u * 1024)
#define AGENT_JOB_ID_LEN 24
#define AGENT_CAPACITY_MAX 64
#define AGENT_POLL_MAX 65536 /* a poll's heartbeat (a frame of the poll stream) at most */
#define AGENT_INPUT_MAX (1024u * 1024) /* a job's stdin up to this travels in its offer */
/* Larger stdin (a Runner's release) is a download: the offer says
 * inputBytes and inputSha256, and the agent GETs jobs/{id}/input. */
#define AGENT_INPUT_FILE_MAX (4ull << 30)
/* The output format: an agent whose heartbeat says "streams": 2 gets
 * offers saying so, and sends those jobs' stdout and stderr apart, each
 * with its own offsets and checksum. Jobs of older agents (and jobs
 * offered before) have one stream, stdout and stderr in the order written. */
#define AGENT_STREAMS 2

typedef enum AgentStream { AGENT_STDOUT, AGENT_STDERR } AgentStream;

/* Called when something waits for the agent of ns/server (an offer, a
 * cancel): answer its held poll. Any thread, no lock held. */
typedef void (*AgentWakeFn)(void *userdata, const char *ns, const char *server);
/* Called when the agent of ns/server comes online or goes offline. */
typedef void (*AgentPresenceFn)(void *userdata, const char *ns, const char *server, bool online);

Agents *agents_new(void);
void agents_free(Agents *a); /* NULL-safe; ends every job as Interrupted */
void agents_set_wake(Agents *a, AgentWakeFn fn, void *userdata);
void agents_set_presence(Agents *a, AgentPresenceFn fn, void *userdata);
/* The protocol side has stopped (rprd is shutting down): no agent will
 * report any more, so whoever waits for a job must not wait for it. */
void agents_stop(Agents *a);
/* Whether agents may still report (agents_stop not called). */
bool agents_serving(Agents *a);

/* ---- presence -------------------------------------------------------------------- */

/* Whether version ("1.2.3") is at least AGENT_VERSION_MIN. */
bool agent_version_ok(const char *version);

typedef struct AgentPresence {
        bool online;               /* heard from within three poll windows */
        uint64_t last_seen_usec;   /* realtime; 0: not since rprd started */
        uint64_t since_start_usec; /* how long this registry has existed */
        char version[32];
        unsigned capacity, running;
        json_t *metrics;      /* new reference or NULL */
        bool version_refused; /* its last poll was refused as too old */
} AgentPresence;

/* What is known of the agent of ns/server; fills *ret (free metrics with
 * json_decref). */
void agent_presence(Agents *a, const char *ns, const char *server, AgentPresence *ret);
/* Records a poll refused for its version (shown on the Server). */
void agent_note_refused(Agents *a, const char *ns, const char *server, const char *version);
/* Forgets the agent (its Server was deleted or deactivated): its jobs end
 * Interrupted. */
void agent_forget(Agents *a, const char *ns, const char *server);

/* ---- the protocol side ----------------------------------------------------------- */

/* A poll from the agent of ns/server carrying heartbeat (see README:
 * version, capacity, metrics, jobs [{id, offset}], wait). Records its
 * presence and renews the leases of the jobs it lists. *ret_answer gets
 * {offers, cancel, ack, drop} (new reference); returns 1 when it holds
 * something to act on, 0 when the poll may be held. *ret_wait_usec: how
 * long to hold it. */
int agent_poll(Agents *a, const char *ns, const char *server, const json_t *heartbeat, json_t **ret_answer,
               uint64_t *ret_wait_usec);
/* What a held poll answers when woken or at its end (the same form). */
int agent_poll_again(Agents *a, const char *ns, const char *server, json_t **ret_answer);

/* The agent takes an offered job: 0, -ENOENT (not a job of this agent),
 * -ESTALE (its lease ran out and it was offered again, or canceled). */
int agent_job_accept(Agents *a, const char *ns, const char *server, const char *id,
                     uint64_t *ret_lease_usec);
/* Output bytes [offset, offset + n) of one stream (AGENT_STDERR only for
 * a job offered with two). Only the bytes past what rprd holds are taken;
 * *ret_offset is what it holds of that stream afterwards. -ERANGE for a
 * gap (*ret_offset set), -ENOENT, -EINVAL (no such stream for this job),
 * -EAGAIN when the sink cannot take them now, or the job is not known
 * yet right after a restart (send them again later). */
int agent_job_output(Agents *a, const char *ns, const char *server, const char *id, AgentStream stream,
                     uint64_t offset, const char *data, size_t n, uint64_t *ret_offset);

/* How a job ended, as its agent reports it: the exit code (or signal, e.g.
 * "TERM"), and per stream the byte count and the SHA-256 (hex) of all of
 * it (stderr: 0 and NULL for a job of one stream). */
typedef struct AgentFinish {
        int exit_code;
        const char *signal;
        uint64_t bytes[AGENT_STREAMS];
        const char *sha256[AGENT_STREAMS];
} AgentFinish;

/* The job's end. -ENOENT (-EBUSY right after a restart: not known yet,
 * send it again later); -EAGAIN when a count is more than rprd holds
 * (ret_offsets: what it holds of each stream: send from there); -EBADMSG
 * when a count or checksum differs from what rprd holds (the job ends
 * Failed). */
int agent_job_finish(Agents *a, const char *ns, const char *server, const char *id, const AgentFinish *f,
                     uint64_t ret_offsets[static AGENT_STREAMS]);

/* A job's large input, for its agent to download: a descriptor of its own
 * (caller closes) and the size. Until agent_job_input_done(), the job's
 * lease does not run out (the agent polls again only once it has the
 * input, however slow its link); then it is renewed. -ENOENT when the job is not this agent's
 * or has no input to download, -ESTALE when it is no longer offered or
 * running. */
int agent_job_input(Agents *a, const char *ns, const char *server, const char *id, int *ret_fd,
                    uint64_t *ret_bytes);
void agent_job_input_done(Agents *a, const char *ns, const char *server, const char *id);

/* The poll stream (README "Agents"): after an upgrade of its connection
 * out of HTTP, each poll and each answer is a frame: a 4-byte big-endian
 * length, then that many bytes of JSON (the heartbeat, the answer). */
#define AGENT_STREAM_PROTOCOL "rpr-agent-poll/1"
#define AGENT_FRAME_HEAD 4
/* Whether data (len bytes received) starts with a whole frame: 1 and
 * *ret_len (its payload's length, after the head); 0 when more bytes are
 * needed; -EBADMSG for an empty frame, -EMSGSIZE for one longer than
 * max. *ret_len is set whenever the head is in. */
int agent_frame_parse(const void *data, size_t len, size_t max, size_t *ret_len);
/* The head of a frame of len bytes. */
void agent_frame_head(size_t len, unsigned char ret[static AGENT_FRAME_HEAD]);

/* Lease and wait expiries, offline agents: call about once a second. */
void agents_tick(Agents *a);

/* ---- jobs --------------------------------------------------------------------------- */

typedef enum AgentJobState {
        AGENT_JOB_SUCCEEDED,
        AGENT_JOB_FAILED, /* exit code not 0, or a signal */
        AGENT_JOB_CANCELED,
        AGENT_JOB_INTERRUPTED, /* its lease ran out, or the agent lost it */
        AGENT_JOB_EXPIRED,     /* the agent did not come within the wait timeout */
} AgentJobState;

typedef struct AgentJobResult {
        AgentJobState state;
        int exit_code;      /* -1 when it did not exit */
        char signal[16];    /* "TERM", "KILL" or "" */
        const char *reason; /* static: "", "Canceled", "Interrupted", "WaitingForServer", "OutputCorrupt" */
        char message[256];
        uint64_t bytes; /* of both streams */
        uint64_t duration_usec;
} AgentJobResult;

typedef struct AgentJobSink {
        /* Output in order, each byte once (in order per stream; stdout and
         * stderr of one job may come in any order to each other). Return
         * < 0 to refuse it for now (the agent sends it again). */
        int (*output)(void *userdata, AgentStream stream, const char *data, size_t n);
        /* The end, exactly once; nothing is called after it. */
        void (*done)(void *userdata, const AgentJobResult *r);
        void *userdata;
} AgentJobSink;

typedef struct AgentJobSpec {
        const char *command;   /* for /bin/sh -c */
        const json_t *env;     /* object of strings, or NULL */
        uint64_t timeout_usec; /* 0: none */
        uint64_t wait_usec;    /* how long to wait for an offline agent; 0: forever */
        /* For callers that, as over ssh, want a host that is down to fail
         * the command rather than wait for it: a job not yet offered ends
         * Expired once its agent has gone offline (three poll windows
         * unheard). An agent not heard from since rprd started is waited
         * for up to wait_usec, as it may be on its way back. */
        bool online_only;
        /* Optional: the command's stdin (then its end); for what must not
         * be on a command line. Up to AGENT_INPUT_MAX bytes it travels
         * base64 in the offer; more (up to AGENT_INPUT_FILE_MAX) is copied
         * to an unlinked file rprd holds and the agent downloads it
         * (agent_job_input). Over TLS, and never logged. */
        const void *input;
        size_t input_len;
} AgentJobSpec;

/* Queues a job for the agent of ns/server; offered at its next poll (at
 * once when one is held). ret_id (optional) gets its id. */
int agent_job_submit(Agents *a, const char *ns, const char *server, const AgentJobSpec *spec,
                     const AgentJobSink *sink, char ret_id[static AGENT_JOB_ID_LEN + 1]);
/* Takes back a job that an rprd before this one had offered and that was
 * accepted (its id kept with its holder, e.g. a Run), after a restart: it
 * waits up to wait_usec for its agent to list it in a poll, is then
 * running again from offset 0 (the agent sends all its output again:
 * the checksum covers all of it; the sink skips what it already has), or
 * ends Interrupted when the agent does not come back in time or no longer
 * holds it. -EEXIST when the id is known. For the first
 * AGENT_RECOVER_GRACE_SEC of the registry, a job an agent reports that
 * rprd does not know is left alone (not dropped), so that its holder can
 * take it back first. */
#define AGENT_RECOVER_GRACE_SEC 10
int agent_job_adopt(Agents *a, const char *ns, const char *server, const char *id, uint64_t wait_usec,
                    const AgentJobSink *sink);
/* Cancels a job whose holder has gone: it is canceled on the agent (or
 * dropped while queued) and its sink is never called again. */
void agent_job_abandon(Agents *a, const char *id);
/* Ends the job now as Interrupted (why), its sink called on this thread:
 * for holders that cannot wait for the agent (rprd stopping). The agent
 * drops it at its next poll. */
void agent_job_interrupt(Agents *a, const char *id, const char *why);
/* Cancels a job: a queued one ends Canceled now; an offered or running
 * one is canceled on the agent (TERM, grace, KILL) and ends when it says
 * so or its lease runs out. Unknown ids are ignored. */
void agent_job_cancel(Agents *a, const char *id);
