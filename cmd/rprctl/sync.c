/* sync.c: `rprctl sync NAME` — apply a Sync's revision now.
 *
 * As `flux reconcile` does, it asks through the object itself: the
 * annotation rpr/requestedAt gets a new value, and rprd answers by syncing
 * and echoing it as status.lastHandledRequestedAt. rprctl first has the
 * Repo look at its branch, then waits for that echo and prints the
 * outcome. Nothing but the annotation changes,
 * so the request needs no route of its own and survives a restart. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "resource/resource.h"
#include "rprctl.h"

#define SYNC_WAIT_USEC (120 * USEC_PER_SEC)
#define SYNC_POLL_USEC (100 * USEC_PER_MSEC)

/* The Repo looks at its branch first, so that the sync is of the newest
 * commit (the check answers once the Repo's status is written). */
static int look_at_repo(Ctl *c, const char *repo) {
        const Kind *k = kind_lookup("Repo");
        ClientResponse resp = {0};
        int r = 0;

        if (!repo)
                return 0;
        _cleanup_free_ char *obj = ctl_object_path(k, ctl_namespace(c), repo);
        _cleanup_free_ char *path = xasprintf("%s/check", obj);
        if (ctl_request(c, "POST", path, "{}", 2, &resp) < 0)
                return 1;
        if (resp.status >= 300)
                r = ctl_http_error(c, &resp);
        client_response_clear(&resp);
        return r;
}

/* Sets the annotation; -ESTALE when the Sync changed between read and
 * write (rprd writes its status often). first: have the Repo look first. */
static int put_request(Ctl *c, const char *path, const char *token, bool first) {
        _cleanup_json_ json_t *obj = NULL;
        _cleanup_free_ char *body = NULL;
        ClientResponse resp = {0};
        int r;

        r = ctl_get_json(c, path, &obj);
        if (r == -ENOENT)
                return ctl_error("sync \"%s\" not found", c->pos[0]);
        if (r < 0)
                return 1;
        if (first && look_at_repo(c, json_str_at(json_object_get(obj, "spec"), "repo")) != 0)
                return 1;
        if (first)
                return put_request(c, path, token, false);
        json_t *meta = json_object_get(obj, "metadata");
        json_t *ann = json_object_get(meta, "annotations");
        if (!json_is_object(ann)) {
                ann = json_object();
                json_object_set_new(meta, "annotations", ann);
        }
        json_object_set_new(ann, "rpr/requestedAt", json_string(token));
        json_object_del(obj, "status");
        body = json_dumps(obj, JSON_COMPACT);
        if (ctl_request(c, "PUT", path, body, strlen(body), &resp) < 0)
                return 1;
        r = resp.status == 409 ? -ESTALE : resp.status >= 300 ? ctl_http_error(c, &resp) : 0;
        client_response_clear(&resp);
        return r;
}

static int request_sync(Ctl *c, const char *path, const char *token) {
        int r = put_request(c, path, token, true);

        for (int i = 0; r == -ESTALE && i < 10; i++)
                r = put_request(c, path, token, false);
        return r == -ESTALE ? ctl_error("sync/%s keeps changing; try again", c->pos[0]) : r;
}

static int print_outcome(const char *name, const json_t *obj) {
        const json_t *st = json_object_get(obj, "status");
        const json_t *ready = NULL, *errors = json_object_get(st, "errors"), *v;
        size_t i;

        ready = condition_get(st, "Ready");
        bool ok = ready && STREQ(json_str_at(ready, "status") ?: "", "True");
        printf("sync/%s: %s: %s\n", name, json_str_at(ready, "reason") ?: "Unknown",
               json_str_at(ready, "message") ?: "");
        json_array_foreach(errors, i, v) {
                fprintf(stderr, "  %s\n", json_string_value(v) ?: "");
        }
        return ok ? 0 : 1;
}

int verb_sync(Ctl *c) {
        char token[RFC3339_MAX];
        const Kind *k = kind_lookup("Sync");
        uint64_t deadline = now_mono_usec() + SYNC_WAIT_USEC;

        if (c->n_pos != 1)
                return ctl_error("sync needs one NAME (a Sync)");
        _cleanup_free_ char *path = ctl_object_path(k, ctl_namespace(c), c->pos[0]);
        time_format_rfc3339_ms(now_usec(), token);
        if (request_sync(c, path, token) != 0)
                return 1;
        while (now_mono_usec() < deadline) {
                _cleanup_json_ json_t *obj = NULL;
                if (ctl_get_json(c, path, &obj) < 0)
                        return 1;
                const char *handled = json_str_at(json_object_get(obj, "status"), "lastHandledRequestedAt");
                if (handled && STREQ(handled, token))
                        return print_outcome(c->pos[0], obj);
                usleep(SYNC_POLL_USEC);
        }
        return ctl_error("sync/%s: rprd did not answer the request within %d s (is it suspended, or waiting "
                         "for its Repo or dependencies? see rprctl describe sync %s)",
                         c->pos[0], (int) (SYNC_WAIT_USEC / USEC_PER_SEC), c->pos[0]);
}
