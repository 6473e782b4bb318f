/* agent-private.h: what the files of pkg/agent share: the registry of
 * agents (hosts) and their jobs, and the list of job ends that are
 * reported once the lock is let go. */
#pragma once

#include <openssl/evp.h>
#include <pthread.h>

#include "agent/agent.h"

typedef enum JobPhase {
        JOB_QUEUED,  /* waiting for the agent's next poll */
        JOB_OFFERED, /* in a poll's answer, not accepted yet */
        JOB_RUNNING, /* accepted */
        JOB_ADOPTED, /* accepted before rprd restarted: waits for its agent to list it */
} JobPhase;

typedef struct AgentHost AgentHost;
typedef struct AgentJob AgentJob;

struct AgentJob {
        AgentJob *next; /* in its host's list */
        AgentHost *host;
        char id[AGENT_JOB_ID_LEN + 1];
        char *command;
        json_t *env;
        char *input; /* base64, or NULL */
        int input_fd; /* > 0: a larger input, in an unlinked file */
        uint64_t input_bytes;
        unsigned input_readers; /* downloads under way: the lease holds meanwhile */
        char input_sha256[65];
        uint64_t timeout_usec;
        uint64_t wait_deadline; /* monotonic; 0: wait forever */
        bool online_only;       /* AgentJobSpec.online_only */
        uint64_t lease_until;   /* monotonic, while offered or running */
        uint64_t submitted, started;
        JobPhase phase;
        bool cancel, cancel_sent;
        unsigned streams;               /* 1, or AGENT_STREAMS: as offered */
        uint64_t offset[AGENT_STREAMS]; /* output bytes held, per stream */
        EVP_MD_CTX *sha[AGENT_STREAMS];
        AgentJobSink sink;
};

/* The figures of a heartbeat's metrics that a Server's status shows. */
typedef enum AgentMetric {
        AGENT_METRIC_LOAD1,
        AGENT_METRIC_MEM_USED_PERCENT,
        AGENT_METRIC_DISK_USED_PERCENT,
        AGENT_METRIC_UPTIME_SECONDS,
        _AGENT_METRIC_MAX,
} AgentMetric;

/* One per agent, kept as long as rprd runs: small, and no JSON (a fleet of
 * 10,000 holds 10,000 of them). */
struct AgentHost {
        AgentHost *next; /* in Agents.list */
        char *key;       /* "ns/server", then ns and server: one allocation */
        const char *ns, *server;
        uint64_t last_seen, last_seen_real; /* monotonic, realtime; 0: never */
        uint64_t window_usec;               /* the agent's poll window */
        char version[32];
        unsigned capacity;
        unsigned streams; /* the output format its heartbeat offers: 1 or AGENT_STREAMS */
        double metrics[_AGENT_METRIC_MAX];
        unsigned metrics_set; /* bit per AgentMetric given */
        bool has_metrics;     /* its last heartbeat carried metrics */
        bool online, refused;
        AgentJob *jobs;
};

/* Job ends collected under the lock, reported after it. */
typedef struct JobEnd {
        AgentJobSink sink;
        AgentJobResult result;
} JobEnd;

typedef struct JobEnds {
        JobEnd *items;
        size_t n;
} JobEnds;

struct Agents {
        pthread_mutex_t lock;
        Hashmap *hosts;  /* key -> AgentHost */
        AgentHost *list; /* the same hosts, to go through them */
        Hashmap *jobs;   /* id -> AgentJob */
        uint64_t created;
        AgentWakeFn wake;
        void *wake_userdata;
        AgentPresenceFn presence;
        void *presence_userdata;
        bool stopped; /* agents_stop() */
};

/* A running job's lease: two poll windows and some slack. */
uint64_t agent_lease_usec(const AgentHost *h);
/* The host of ns/server, made when absent. Under lock. */
AgentHost *agent_host_get(Agents *a, const char *ns, const char *server, bool create);

/* Ends job with result: out of every list, freed; its sink is called by
 * job_ends_report(). Under lock. */
void agent_job_end(Agents *a, AgentJob *job, const AgentJobResult *r, JobEnds *ends);
/* Calls each sink's done and empties ends. Without the lock. */
void job_ends_report(JobEnds *ends);
/* A result of state with a reason and a message. */
AgentJobResult agent_result(AgentJobState state, const char *reason, const char *fmt, ...) _printf_(3, 4);
/* Whether the registry is young enough that a job an agent reports may
 * still be taken back by its holder (agent_job_adopt). Under lock. */
bool agents_recovering(const Agents *a);
/* The job id of this host, or NULL. Under lock. */
AgentJob *agent_job_of(Agents *a, const AgentHost *h, const char *id);
