/* api-hooks: POST /hooks/github, and POST .../repos/{name}/check.
 *
 * Both run their work on a queue off the loop: a webhook reads Token
 * secrets (files) to verify the signature, a check talks to GitHub and
 * fetches. The delivery is copied out of the request first, because the
 * request's memory goes with the client. */
#include <string.h>

#include "api/api-private.h"
#include "repo/repo.h"
#include "webhook/webhook.h"

/* ---- the webhook ----------------------------------------------------------------- */

typedef struct HookData {
        char *event, *delivery, *signature, *content_type;
        char *body;
        size_t len;
        json_t *answer;
        int status;
} HookData;

static void hook_data_free(void *p) {
        HookData *d = p;

        free(d->event);
        free(d->delivery);
        free(d->signature);
        free(d->content_type);
        free(d->body);
        json_decref(d->answer);
        free(d);
}

static char *header_dup(h2o_req_t *req, const char *name) {
        ssize_t i = h2o_find_header_by_str(&req->headers, name, strlen(name), -1);

        return i < 0 ? NULL : xstrndup(req->headers.entries[i].value.base, req->headers.entries[i].value.len);
}

static void hook_work(ApiJob *job) {
        HookData *d = job->data;
        WebhookRequest r = {d->event, d->delivery, d->signature, d->content_type, d->body, d->len};

        d->status = webhook_handle(job->api->webhook, &r, &d->answer);
}

static void hook_done(ApiJob *job, ApiCall *c) {
        HookData *d = job->data;

        if (c)
                api_reply_json(c, d->status, TAKE_PTR(d->answer));
}

void api_handle_hook(ApiCall *c) {
        h2o_req_t *req = c->req;

        if (!c->api->webhook) {
                api_reply_status(c, 503, "this rprd does not take webhooks");
                return;
        }
        if (req->entity.len > c->api->max_body) {
                api_reply_status(c, 413, "request body is larger than %zu bytes", c->api->max_body);
                return;
        }
        HookData *d = xcalloc(1, sizeof *d);
        d->event = header_dup(req, "x-github-event");
        d->delivery = header_dup(req, "x-github-delivery");
        d->signature = header_dup(req, "x-hub-signature-256");
        d->content_type = header_dup(req, "content-type");
        d->len = req->entity.len;
        d->body = xmalloc(d->len + 1);
        if (d->len)
                memcpy(d->body, req->entity.base, d->len);
        d->body[d->len] = '\0';

        ApiJob *job = api_job_new(c, 0, hook_work, hook_done);
        job->data = d;
        job->data_free = hook_data_free;
        /* Reading secrets is no store write: a slow one must not hold up applies. */
        job->queue = c->api->actionq;
        api_job_submit(job);
}

/* ---- repos/{name}/check ------------------------------------------------------------ */

typedef struct RepoCheckData {
        json_t *report;
        int r;
} RepoCheckData;

static void repo_check_data_free(void *p) {
        RepoCheckData *d = p;

        json_decref(d->report);
        free(d);
}

static void repo_check_work(ApiJob *job) {
        RepoCheckData *d = job->data;

        d->r = repo_inspect(job->api->repos, job->ns, job->name, &d->report);
}

static void repo_check_done(ApiJob *job, ApiCall *c) {
        RepoCheckData *d = job->data;

        if (!c)
                return;
        if (d->r == -ENOENT)
                api_reply_status(c, 404, "repos \"%s\" not found", job->name);
        else if (d->r == -EPERM)
                api_reply_status(c, 409, "repo %s is inactive (spec.active is false); activate it first", job->name);
        else if (d->r < 0)
                api_reply_status(c, 500, "cannot check repos/%s: %s", job->name, strerror(-d->r));
        else {
                json_object_set_new(d->report, "apiVersion", json_string(RPR_API_VERSION));
                json_object_set_new(d->report, "kind", json_string("RepoCheckResult"));
                api_reply_json(c, 200, TAKE_PTR(d->report));
        }
}

void api_handle_repo_check(ApiCall *c) {
        _cleanup_free_ char *json = NULL;

        if (!c->api->repos) {
                api_reply_status(c, 503, "this rprd runs no repo controller");
                return;
        }
        if (route_object_text(c, &json) < 0)
                return;
        ApiJob *job = api_job_new(c, 0, repo_check_work, repo_check_done);
        job->queue = c->api->actionq;
        job->ns = xstrdup(c->route.ns);
        job->name = xstrdup(c->route.name);
        job->data = xcalloc(1, sizeof(RepoCheckData));
        job->data_free = repo_check_data_free;
        api_job_submit(job);
}
