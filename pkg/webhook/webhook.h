/* webhook: GitHub's push and workflow_job webhooks, received.
 *
 * A delivery is believed only when its X-Hub-Signature-256 is the
 * HMAC-SHA256 of the exact body under the secret of a webhook Token
 * (compared in constant time); that Token's namespace is where the Repos
 * it may trigger live. A verified push to a branch that active Repos watch
 * queues an immediate check of each and returns at once: the check runs
 * after the answer, well inside GitHub's 10 s delivery window. Every
 * delivery must carry X-GitHub-Delivery; an id seen before is ignored
 * (GitHub's redeliveries). GitHub does not sign that id, so a replay may
 * bring a new one: what the signed payload proves is its head commit, and
 * a push whose head commit a Repo already has (status.lastCommit) is a
 * no-op, answered as such. Text quoted from a payload is flattened. Tag pushes,
 * branch deletions, other branches and other events are acknowledged and
 * ignored. The body may be JSON or a form with a payload field, as GitHub's
 * content type setting chooses. Blocking (reads Token secrets): run it off
 * the HTTP loop. A verified workflow_job delivery goes to the function
 * set with webhook_on_workflow_job() (the Runner controller's), with the
 * namespace and name of the Token that signed it. */
#pragma once

#include "base/base.h"

typedef struct Store Store;
typedef struct RepoController RepoController;
typedef struct TokenController TokenController;
typedef struct Webhook Webhook;

#define WEBHOOK_DELIVERIES_REMEMBERED 4096

/* repos and tokens may be NULL (an API-only rprd): pushes are then
 * verified and answered but trigger nothing. */
int webhook_new(Store *store, RepoController *repos, TokenController *tokens, Webhook **ret);
void webhook_free(Webhook *w); /* NULL-safe */

typedef struct WebhookRequest {
        const char *event;        /* X-GitHub-Event */
        const char *delivery;     /* X-GitHub-Delivery */
        const char *signature;    /* X-Hub-Signature-256 */
        const char *content_type; /* may be NULL */
        const char *body;
        size_t len;
} WebhookRequest;

/* The answer: an HTTP status and a JSON body (new reference) with
 * "message", and "triggered" (Repo names) or "ignored" (why). Never
 * mentions a secret. */
int webhook_handle(Webhook *w, const WebhookRequest *req, json_t **ret_body);

/* fn takes each verified workflow_job delivery: ns and token name the
 * webhook Token that signed it, payload is the parsed body. It returns an
 * outcome 0..WEBHOOK_JOB_OUTCOMES-1 (0: acted on; else ignored, counted by
 * outcome) or a negative errno for a payload it cannot read, and sets
 * *ret_message (caller frees) for the answer. Set before deliveries come. */
#define WEBHOOK_JOB_OUTCOMES 4
typedef int (*WebhookJobFn)(void *userdata, const char *ns, const char *token, const json_t *payload,
                            char **ret_message);
void webhook_on_workflow_job(Webhook *w, WebhookJobFn fn, void *userdata);

/* workflow_job deliveries since start, by the outcome fn returned. */
typedef struct WebhookStats {
        uint64_t workflow_jobs[WEBHOOK_JOB_OUTCOMES];
} WebhookStats;
void webhook_stats(Webhook *w, WebhookStats *ret);
