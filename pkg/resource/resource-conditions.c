/* resource-conditions: status.conditions, the one way every kind reports
 * what it saw, as Kubernetes does: a list keyed by type, each with a
 * status, a machine-readable reason, a message for people and the time the
 * status last flipped (not the time it was last written, so that "False
 * since 10:02" stays true across re-checks). */
#include <string.h>
#include <sys/types.h>

#include "resource/resource.h"

static ssize_t condition_index(const json_t *conds, const char *type) {
        const json_t *c;
        size_t i;

        json_array_foreach(conds, i, c) {
                const char *t = json_str_at(c, "type");
                if (t && STREQ(t, type))
                        return (ssize_t) i;
        }
        return -1;
}

const json_t *condition_get(const json_t *status, const char *type) {
        const json_t *conds = json_object_get(status, "conditions");
        ssize_t i = condition_index(conds, type);

        return i < 0 ? NULL : json_array_get(conds, (size_t) i);
}

void condition_set(json_t *status, const Condition *c) {
        json_t *conds = json_object_get(status, "conditions");
        const char *state = c->ok ? "True" : "False";
        char buf[RFC3339_MAX];

        if (!json_is_array(conds)) {
                conds = json_array();
                json_object_set_new(status, "conditions", conds);
        }
        ssize_t i = condition_index(conds, c->type);
        const json_t *old = i < 0 ? NULL : json_array_get(conds, (size_t) i);
        const char *since = json_str_at(old, "lastTransitionTime");
        const char *old_state = json_str_at(old, "status");

        if (!since || !old_state || !STREQ(old_state, state))
                since = time_format_rfc3339(c->now_usec, buf);
        json_t *cond = json_pack("{s:s, s:s, s:s, s:s, s:s}", "type", c->type, "status", state, "reason", c->reason,
                                 "message", c->message ? c->message : "", "lastTransitionTime", since);
        if (i < 0)
                json_array_append_new(conds, cond);
        else
                json_array_set_new(conds, (size_t) i, cond);
}

void condition_remove(json_t *status, const char *type) {
        json_t *conds = json_object_get(status, "conditions");
        ssize_t i = condition_index(conds, type);

        if (i >= 0)
                json_array_remove(conds, (size_t) i);
}
