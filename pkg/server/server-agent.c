/* server-agent.c: the check of a Server of transport agent, which rprd
 * cannot log into: its agent's polls are the check. Reachable while the
 * agent has polled within three poll windows, with the metrics of its last
 * heartbeat; Unreachable (AgentOffline) once it has not, or (AgentTooOld)
 * when its last poll was refused for its version. Right after rprd starts
 * nothing is known yet: the status stays as it was until the agents have
 * had three windows to poll again. */
#include <stdio.h>
#include <string.h>

#include "agent/agent.h"
#include "server/server-private.h"

#define AGENT_SETTLE_USEC ((3 * AGENT_POLL_DEFAULT_SEC + 5) * USEC_PER_SEC)

bool server_is_agent(const json_t *obj) {
        const char *t = json_str_at(json_object_get(obj, "spec"), "transport");

        return t && STREQ(t, "agent");
}

int server_agent_check(ServerController *s, const json_t *obj, CheckOutcome *o, uint64_t *ret_settle_usec) {
        const char *name = json_str_at(json_object_get(obj, "metadata"), "name");
        const char *ns = json_str_at(json_object_get(obj, "metadata"), "namespace");
        AgentPresence p = {0};
        char when[RFC3339_MAX];

        *o = (CheckOutcome){.when_usec = now_usec(), .no_retry = true};
        if (!s->agents) {
                o->reason = "AgentOffline";
                snprintf(o->message, sizeof o->message, "this rprd serves no agents");
                return 0;
        }
        agent_presence(s->agents, ns, name, &p);
        if (!p.last_seen_usec && !p.version_refused && p.since_start_usec < AGENT_SETTLE_USEC) {
                *ret_settle_usec = AGENT_SETTLE_USEC - p.since_start_usec;
                return -EAGAIN;
        }
        if (p.version_refused) {
                o->reason = "AgentTooOld";
                snprintf_utf8(o->message, sizeof o->message,
                              "its rpr-agent %s is older than %s, the oldest this rprd accepts: upgrade it",
                              *p.version ? p.version : "(no version)", AGENT_VERSION_MIN);
        } else if (!p.online) {
                o->reason = "AgentOffline";
                if (p.last_seen_usec)
                        snprintf(o->message, sizeof o->message, "its agent last polled at %s",
                                 time_format_rfc3339(p.last_seen_usec, when));
                else
                        snprintf(o->message, sizeof o->message,
                                 "its agent has not polled since rprd started; run rpr-agent on the host");
        } else {
                o->ok = true;
                o->logged_in = true;
                o->when_usec = p.last_seen_usec;
                o->reason = "Reachable";
                snprintf_utf8(o->message, sizeof o->message, "rpr-agent %s polls; %u of %u job slots busy",
                              p.version, p.running, p.capacity);
                o->metrics = TAKE_PTR(p.metrics);
        }
        json_decref(p.metrics);
        return 0;
}
