/* webhook.c: GitHub push deliveries (see webhook.h).
 *
 * Order matters for safety: nothing in a delivery is believed, parsed or
 * remembered before its signature checks out, so a forged request can
 * neither trigger a check nor poison the list of delivery ids seen. */
#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "repo/repo.h"
#include "store/store.h"
#include "token/token.h"
#include "webhook/webhook.h"

#define ZERO_SHA "0000000000000000000000000000000000000000"

struct Webhook {
        Store *store;
        RepoController *repos;
        TokenController *tokens;
        pthread_mutex_t lock;
        WebhookJobFn on_job; /* workflow_job deliveries go there (NULL: ignored) */
        void *job_userdata;
        WebhookStats stats;
        /* The last WEBHOOK_DELIVERIES_REMEMBERED delivery ids, a ring. */
        char *deliveries[WEBHOOK_DELIVERIES_REMEMBERED];
        size_t next_delivery;
};

int webhook_new(Store *store, RepoController *repos, TokenController *tokens, Webhook **ret) {
        Webhook *w = xcalloc(1, sizeof *w);

        w->store = store;
        w->repos = repos;
        w->tokens = tokens;
        pthread_mutex_init(&w->lock, NULL);
        *ret = w;
        return 0;
}

void webhook_on_workflow_job(Webhook *w, WebhookJobFn fn, void *userdata) {
        w->on_job = fn;
        w->job_userdata = userdata;
}

void webhook_stats(Webhook *w, WebhookStats *ret) {
        pthread_mutex_lock(&w->lock);
        *ret = w->stats;
        pthread_mutex_unlock(&w->lock);
}

void webhook_free(Webhook *w) {
        if (!w)
                return;
        for (size_t i = 0; i < WEBHOOK_DELIVERIES_REMEMBERED; i++)
                free(w->deliveries[i]);
        pthread_mutex_destroy(&w->lock);
        free(w);
}

static int answer(json_t **ret_body, int status, const char *key, const char *fmt, ...) _printf_(4, 5);
static int answer(json_t **ret_body, int status, const char *key, const char *fmt, ...) {
        va_list ap;
        char *text;

        va_start(ap, fmt);
        if (vasprintf(&text, fmt, ap) < 0)
                abort();
        va_end(ap);
        /* Answers quote the payload's own fields (ref, repository name,
         * event, delivery id): one flat line, whatever the sender put in. */
        text[utf8_cut(text, strlen(text), 1024)] = '\0';
        text_flatten(text);
        *ret_body = json_pack("{s:s}", "message", text);
        if (key)
                json_object_set_new(*ret_body, key, json_string(text));
        free(text);
        return status;
}

/* ---- signature ---------------------------------------------------------------- */

typedef struct TokenRef {
        char *ns, *name;
} TokenRef;

static void collect_webhook_token(const char *text, size_t len, void *userdata) {
        json_t *list = userdata;
        _cleanup_json_ json_t *obj = json_loadb(text, len, 0, NULL);
        const char *type = json_str_at(json_object_get(obj, "spec"), "type");
        const json_t *meta = json_object_get(obj, "metadata");

        if (type && STREQ(type, "webhook"))
                json_array_append_new(list, json_pack("[s,s]", json_str_at(meta, "namespace"),
                                                      json_str_at(meta, "name")));
}

/* Whether the body's HMAC under token ns/name is hex (64 lower-case). */
static bool signed_by(Webhook *w, const char *ns, const char *name, const WebhookRequest *req, const char *hex) {
        static const char *const types[] = {"webhook", NULL};
        _cleanup_free_ char *error = NULL;
        const char *reason;
        TokenSecret secret;
        char mac[65];

        if (token_secret_read(w->store, ns, name, types, "webhook", &secret, &reason, &error) < 0) {
                log_debug("webhook: Token %s/%s cannot be used: %s", ns, name, error);
                return false;
        }
        hmac_sha256_hex(secret.data, secret.len, req->body, req->len, mac);
        token_secret_clear(&secret);
        return memeq_consttime(mac, hex, 64);
}

/* The namespace of the webhook Token that signed the delivery (caller
 * frees; its name in *ret_token), or NULL with the answer to give. */
static char *verify(Webhook *w, const WebhookRequest *req, char **ret_token, json_t **ret_body, int *ret_status) {
        _cleanup_json_ json_t *tokens = json_array();
        char hex[65];
        const json_t *t;
        size_t i;

        if (!req->signature || !*req->signature) {
                *ret_status = answer(ret_body, 401, NULL,
                                     "missing X-Hub-Signature-256: give the GitHub webhook a secret and put the "
                                     "same secret in a Token of type webhook");
                return NULL;
        }
        if (!startswith(req->signature, "sha256=") || strlen(req->signature) != 7 + 64) {
                *ret_status = answer(ret_body, 401, NULL,
                                     "X-Hub-Signature-256 is not \"sha256=\" followed by 64 hex digits");
                return NULL;
        }
        for (i = 0; i < 64; i++)
                hex[i] = (char) tolower((unsigned char) req->signature[7 + i]);
        hex[64] = '\0';

        /* Tokens are indexed by type: the other Tokens are not read. */
        (void) store_list_where(w->store, "Token", NULL, "spec.type", "webhook", collect_webhook_token, tokens);
        if (json_array_size(tokens) == 0) {
                *ret_status = answer(ret_body, 401, NULL, "no Token of type webhook exists to verify deliveries with");
                return NULL;
        }
        json_array_foreach(tokens, i, t) {
                const char *ns = json_string_value(json_array_get(t, 0));
                const char *name = json_string_value(json_array_get(t, 1));
                if (signed_by(w, ns, name, req, hex)) {
                        token_note_used(w->tokens, ns, name);
                        *ret_token = xstrdup(name);
                        return xstrdup(ns);
                }
        }
        *ret_status = answer(ret_body, 401, NULL, "X-Hub-Signature-256 does not match any webhook Token's secret");
        return NULL;
}

/* ---- deliveries ---------------------------------------------------------------- */

/* Whether id was seen before; remembers it. */
static bool delivery_seen(Webhook *w, const char *id) {
        bool seen = false;

        pthread_mutex_lock(&w->lock);
        for (size_t i = 0; i < WEBHOOK_DELIVERIES_REMEMBERED && !seen; i++)
                seen = w->deliveries[i] && STREQ(w->deliveries[i], id);
        if (!seen) {
                free(w->deliveries[w->next_delivery]);
                w->deliveries[w->next_delivery] = xstrdup(id);
                w->next_delivery = (w->next_delivery + 1) % WEBHOOK_DELIVERIES_REMEMBERED;
        }
        pthread_mutex_unlock(&w->lock);
        return seen;
}

/* ---- payload --------------------------------------------------------------------- */

static int hexval(int c) {
        return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* The payload field of an application/x-www-form-urlencoded body, decoded
 * (caller frees), or NULL. */
static char *form_payload(const char *body, size_t len, size_t *ret_len) {
        const char *p = body, *end = body + len;

        while (p < end) {
                const char *amp = memchr(p, '&', end - p), *fe = amp ? amp : end;
                if (fe - p >= 8 && memcmp(p, "payload=", 8) == 0) {
                        char *out = xmalloc(fe - p), *o = out;
                        for (const char *q = p + 8; q < fe; q++) {
                                if (*q == '+')
                                        *o++ = ' ';
                                else if (*q == '%' && q + 2 < fe && hexval(q[1]) >= 0 && hexval(q[2]) >= 0) {
                                        *o++ = (char) (hexval(q[1]) * 16 + hexval(q[2]));
                                        q += 2;
                                } else
                                        *o++ = *q;
                        }
                        *ret_len = o - out;
                        return out;
                }
                p = fe + 1;
        }
        return NULL;
}

static json_t *parse_payload(const WebhookRequest *req, json_t **ret_body, int *ret_status) {
        _cleanup_free_ char *form = NULL;
        const char *text = req->body;
        size_t len = req->len;
        json_error_t err;

        if (req->content_type && startswith(req->content_type, "application/x-www-form-urlencoded")) {
                form = form_payload(req->body, req->len, &len);
                if (!form) {
                        *ret_status = answer(ret_body, 400, NULL, "form body without a payload field");
                        return NULL;
                }
                text = form;
        }
        json_t *payload = json_loadb(text, len, JSON_REJECT_DUPLICATES, &err);
        if (!json_is_object(payload)) {
                json_decref(payload);
                *ret_status = answer(ret_body, 400, NULL, "payload is not a JSON object: line %d column %d: %s",
                                     err.line, err.column, err.text);
                return NULL;
        }
        return payload;
}

/* ---- push ------------------------------------------------------------------------ */

/* The Repos of names (ns) whose status.lastCommit is not the push's head
 * commit. GitHub signs the body but not the delivery id, so a replay can
 * come with any id: what the signed payload proves is its head commit, and
 * a push whose head a Repo already has is a no-op however often it comes. */
static json_t *repos_behind(Webhook *w, const char *ns, const json_t *names, const char *after) {
        json_t *behind = json_array();
        const json_t *name;
        size_t i;

        json_array_foreach(names, i, name) {
                _cleanup_json_ json_t *repo = NULL;
                const char *n = json_string_value(name);
                const char *sha = NULL;

                if (n && store_get_json(w->store, "Repo", ns, n, &repo) >= 0)
                        sha = json_str_at(json_object_get(json_object_get(repo, "status"), "lastCommit"),
                                          "sha");
                if (n && (!sha || strcasecmp(sha, after) != 0))
                        json_array_append_new(behind, json_string(n));
        }
        return behind;
}

static int handle_push(Webhook *w, const char *ns, const json_t *p, json_t **ret_body) {
        const char *ref = json_str_at(p, "ref"), *after = json_str_at(p, "after");
        const json_t *repo = json_object_get(p, "repository");
        const char *full_name = json_str_at(repo, "full_name");
        const char *urls[] = {json_str_at(repo, "clone_url"), json_str_at(repo, "html_url"),
                              json_str_at(repo, "ssh_url"),   json_str_at(repo, "git_url"),
                              json_str_at(repo, "url"),       NULL};

        if (!ref || !full_name)
                return answer(ret_body, 400, NULL, "push payload without ref or repository.full_name");
        if (!startswith(ref, "refs/heads/"))
                return answer(ret_body, 202, "ignored", "%s is not a branch", ref);
        if (json_is_true(json_object_get(p, "deleted")) || (after && STREQ(after, ZERO_SHA)))
                return answer(ret_body, 202, "ignored", "%s of %s was deleted", ref + 11, full_name);

        /* Leave out the NULLs of absent urls. */
        const char *present[ELEMENTSOF(urls)];
        size_t n = 0;
        for (size_t i = 0; i + 1 < ELEMENTSOF(urls); i++)
                if (urls[i])
                        present[n++] = urls[i];
        present[n] = NULL;

        const char *branch = ref + 11;
        if (!after || (strlen(after) != 40 && strlen(after) != 64))
                return answer(ret_body, 400, NULL, "push payload without an \"after\" commit id");
        if (!w->repos)
                return answer(ret_body, 503, NULL, "this rprd runs no controllers (--no-controllers); send webhooks "
                                                   "to the one that does");
        _cleanup_json_ json_t *matched = repo_match_push(w->repos, ns, full_name, present, branch);
        if (json_array_size(matched) == 0)
                return answer(ret_body, 202, "ignored", "no active Repo in namespace %s watches %s branch %s", ns,
                              full_name, branch);
        _cleanup_json_ json_t *names = repos_behind(w, ns, matched, after);
        if (json_array_size(names) == 0)
                return answer(
                        ret_body, 202, "ignored",
                        "nothing to do: %.12s, the head commit of this push, is already the last commit "
                        "of every Repo in namespace %s that watches %s branch %s",
                        after, ns, full_name, branch);
        const json_t *name;
        size_t i;
        json_array_foreach(names, i, name) repo_check_soon(w->repos, ns, json_string_value(name));
        answer(ret_body, 202, NULL, "checking %zu Repo(s) in namespace %s for %s branch %s",
               json_array_size(names), ns, full_name, branch);
        json_object_set(*ret_body, "triggered", names);
        return 202;
}

/* ---- workflow_job ------------------------------------------------------------------- */

static int handle_workflow_job(Webhook *w, const char *ns, const char *token, const json_t *p, json_t **ret_body) {
        _cleanup_free_ char *msg = NULL;
        int k;

        if (!w->on_job)
                return answer(ret_body, 202, "ignored", "this rprd runs no Runner controller");
        k = w->on_job(w->job_userdata, ns, token, p, &msg);
        pthread_mutex_lock(&w->lock);
        if (k >= 0 && k < WEBHOOK_JOB_OUTCOMES)
                w->stats.workflow_jobs[k]++;
        pthread_mutex_unlock(&w->lock);
        if (k < 0)
                return answer(ret_body, 400, NULL, "%s", msg ?: "bad workflow_job payload");
        return answer(ret_body, 202, k == 0 ? NULL : "ignored", "%s", msg ?: "");
}

/* Event names and delivery ids are short printable ASCII (a GitHub GUID):
 * anything else is refused before it is remembered or quoted back. */
static bool header_token(const char *s) {
        size_t n = 0;

        for (; s[n]; n++)
                if (s[n] <= ' ' || s[n] > '~')
                        return false;
        return n <= 128;
}

int webhook_handle(Webhook *w, const WebhookRequest *req, json_t **ret_body) {
        _cleanup_free_ char *ns = NULL, *token = NULL;
        _cleanup_json_ json_t *payload = NULL;
        int status = 0;

        ns = verify(w, req, &token, ret_body, &status);
        if (!ns)
                return status;
        if (!req->event || !*req->event)
                return answer(ret_body, 400, NULL, "missing X-GitHub-Event");
        if (!header_token(req->event))
                return answer(ret_body, 400, NULL, "X-GitHub-Event is not a GitHub event name");
        if (!req->delivery || !*req->delivery)
                return answer(ret_body, 400, NULL,
                              "missing X-GitHub-Delivery: GitHub sends one with every delivery");
        if (strlen(req->delivery) > 128)
                return answer(ret_body, 400, NULL, "X-GitHub-Delivery is longer than 128 characters");
        if (!header_token(req->delivery))
                return answer(ret_body, 400, NULL, "X-GitHub-Delivery is not a GitHub delivery id");
        if (delivery_seen(w, req->delivery))
                return answer(ret_body, 200, "ignored", "delivery %s was received before", req->delivery);
        if (STREQ(req->event, "ping"))
                return answer(ret_body, 200, NULL, "pong");
        if (!STREQ(req->event, "push") && !STREQ(req->event, "workflow_job"))
                return answer(ret_body, 202, "ignored", "event %s is not acted on", req->event);
        payload = parse_payload(req, ret_body, &status);
        if (!payload)
                return status;
        if (STREQ(req->event, "workflow_job"))
                return handle_workflow_job(w, ns, token, payload, ret_body);
        return handle_push(w, ns, payload, ret_body);
}
