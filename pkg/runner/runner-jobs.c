/* runner-jobs: the job queue an autoscaled Runner follows — GitHub's
 * workflow_job deliveries and the poll of queued runs, in one table per
 * Runner.
 *
 * The table lives in memory under rc->lock: "NS/NAME" -> {"jobs": {ID:
 * {"status", "seen": [actions], "labels", "runner", "at"}}, "poll": {...}}.
 * A job is routed to the first Runner of the namespace, by name, whose
 * repository (or organisation) is the job's and that has every label of
 * the job (self-hosted, linux and x64 implicit, compared without case), so
 * that a job two Runners could take is counted once. An action already
 * seen for a job id is a duplicate and a job never moves back (queued ->
 * in_progress -> completed): a redelivery or a replay, whatever its
 * delivery id, counts once. The table is bounded (JOBS_MAX per Runner, the
 * oldest done jobs out first) and does not survive a restart, which it
 * needs not: a Runner's first pass polls, and the poll is what makes the
 * count right (webhooks get lost); the webhook is what makes it fast. */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "controller/controller.h"
#include "github/github.h"
#include "logfile/logfile.h"
#include "runner/runner-private.h"
#include "store/store.h"

#define JOBS_MAX 4096
#define UNMATCHED_MAX 4096
#define DONE_KEEP_USEC (60 * 60 * USEC_PER_SEC)
/* GitHub cancels a job that waited 24 hours for a runner. */
#define QUEUED_KEEP_USEC (24 * 60 * 60 * USEC_PER_SEC)
#define POLL_BACKOFF_MAX_USEC (10 * 60 * USEC_PER_SEC)
#define LIST_LAG_USEC (5 * USEC_PER_SEC)
/* A delivery wakes its Runner this much later: the rest of a burst
 * arrives meanwhile, and the burst is one decision. */
#define BURST_USEC (300 * USEC_PER_MSEC)

static const char *const implicit_labels[] = {"self-hosted", "linux", "x64"};

/* queued and waiting 1, in_progress 2, completed 3; 0 unknown. */
static int action_rank(const char *a) {
        if (STREQ(a, "queued") || STREQ(a, "waiting") || STREQ(a, "dropped"))
                return 1;
        if (STREQ(a, "in_progress"))
                return 2;
        return STREQ(a, "completed") ? 3 : 0;
}

static bool has_label(const json_t *labels, const char *l) {
        const json_t *x;
        size_t i;

        json_array_foreach(labels, i, x) if (strcasecmp(json_string_value(x) ?: "", l) == 0) return true;
        return false;
}

bool runner_labels_match(const json_t *job_labels, const json_t *runner_labels) {
        const json_t *l;
        size_t i;

        if (json_array_size(job_labels) == 0)
                return false;
        json_array_foreach(job_labels, i, l) {
                const char *s = json_string_value(l) ?: "";
                bool ok = has_label(runner_labels, s);
                for (size_t k = 0; k < ELEMENTSOF(implicit_labels); k++)
                        ok |= strcasecmp(s, implicit_labels[k]) == 0;
                if (!ok)
                        return false;
        }
        return true;
}

/* "a, b" of labels, flat and cut (for messages and the activity log). */
char *runner_labels_text(const json_t *labels) {
        Buf b = BUF_INIT;
        const json_t *l;
        size_t i;

        json_array_foreach(labels, i, l) {
                if (i >= 16)
                        break;
                buf_printf(&b, "%s%s", i ? ", " : "", json_string_value(l) ?: "");
        }
        char *text = text_flat_dup(b.data ?: "", 200);
        buf_free(&b);
        return text;
}

/* ---- which Runner a job is for ---------------------------------------------------- */

static void collect_autoscaled(const char *text, size_t len, void *userdata) {
        json_t *o = json_loadb(text, len, 0, NULL);

        if (json_is_object(json_object_get(json_object_get(o, "spec"), "autoscale")) &&
            !json_object_get(json_object_get(o, "metadata"), "deletionTimestamp"))
                json_array_append(userdata, o);
        json_decref(o);
}

/* The autoscaled Runners of ns, by name: [{name, token, owner, repo, org, labels}]. */
json_t *runner_candidates(RunnerController *rc, const char *ns) {
        _cleanup_json_ json_t *objs = json_array();
        json_t *out = json_array();
        const json_t *o;
        size_t i;

        (void) store_list(rc->store, "Runner", ns, collect_autoscaled, objs, NULL);
        json_array_foreach(objs, i, o) {
                RunnerSpec sp;
                RunnerScope s = {0};
                const char *reason;
                _cleanup_free_ char *error = NULL;

                runner_spec_read(o, &sp);
                if (sp.repo && runner_scope_from_repo(rc, &sp, &s, &reason, &error) < 0) {
                        runner_scope_clear(&s);
                        continue;
                }
                json_t *c = json_pack("{s:s, s:o}", "name", sp.name, "labels",
                                      sp.labels ? json_incref((json_t *) sp.labels) : json_array());
                if (sp.webhook_token_ref)
                        json_object_set_new(c, "token", json_string(sp.webhook_token_ref));
                if (sp.repo)
                        json_object_set_new(c, "repo", json_sprintf("%s/%s", s.owner, s.repo_name));
                else
                        json_object_set_new(c, "org", json_string(sp.org ?: ""));
                json_array_append_new(out, c);
                runner_scope_clear(&s);
        }
        return out;
}

/* The candidate a job of full_name ("owner/name", org may be NULL) with
 * labels is for, signed by token (NULL: any), or NULL. */
const char *runner_route(const json_t *candidates, const char *token, const char *full_name, const char *org,
                         const json_t *labels) {
        const json_t *c;
        size_t i;

        json_array_foreach(candidates, i, c) {
                const char *want = json_str_at(c, "token"), *repo = json_str_at(c, "repo");
                const char *corg = json_str_at(c, "org");
                size_t n = corg ? strlen(corg) : 0;
                if (token && want && !STREQ(want, token))
                        continue;
                if (repo ? strcasecmp(repo, full_name) != 0
                         : !((org && strcasecmp(corg, org) == 0) ||
                             (strncasecmp(full_name, corg, n) == 0 && full_name[n] == '/')))
                        continue;
                if (runner_labels_match(labels, json_object_get(c, "labels")))
                        return json_str_at(c, "name");
        }
        return NULL;
}

/* A queued job no Runner can take: one activity line per job id. */
void runner_note_unmatched(RunnerController *rc, const char *ns, json_int_t id, const char *full_name,
                           const json_t *labels) {
        char key[32];
        bool first;

        if (!has_label(labels, "self-hosted"))
                return; /* for GitHub's own runners */
        snprintf(key, sizeof key, "%lld", (long long) id);
        pthread_mutex_lock(&rc->lock);
        if (json_object_size(rc->unmatched) >= UNMATCHED_MAX)
                json_object_clear(rc->unmatched);
        first = !json_object_get(rc->unmatched, key);
        json_object_set_new(rc->unmatched, key, json_true());
        if (first)
                rc->unmatched_total++;
        pthread_mutex_unlock(&rc->lock);
        if (!first)
                return;
        _cleanup_free_ char *text = runner_labels_text(labels), *repo = text_flat_dup(full_name, 200);
        log_info("runner: queued job %lld of %s needs [%s]: no Runner in namespace %s has these labels", (long long) id,
                 repo, text, ns);
        if (rc->activity)
                (void) logfile_append(rc->activity, now_usec(),
                                      "runner: queued job %lld of %s needs [%s]: no autoscaled Runner in "
                                      "namespace %s has these labels",
                                      (long long) id, repo, text, ns);
}

/* ---- the table ---------------------------------------------------------------------- */

/* The table of ns/name (borrowed; made if missing). Under rc->lock. */
json_t *runner_table(RunnerController *rc, const char *ns, const char *name) {
        _cleanup_free_ char *key = xasprintf("%s/%s", ns, name);
        json_t *t = json_object_get(rc->tables, key);

        if (!t) {
                t = json_pack("{s:{}, s:{s:{}}}", "jobs", "poll", "cache");
                json_object_set_new(rc->tables, key, t);
        }
        return t;
}

void runner_table_forget(RunnerController *rc, const char *ns, const char *name) {
        _cleanup_free_ char *key = xasprintf("%s/%s", ns, name);

        pthread_mutex_lock(&rc->lock);
        json_object_del(rc->tables, key);
        pthread_mutex_unlock(&rc->lock);
}

/* Drops done jobs older than DONE_KEEP_USEC and queued ones older than
 * QUEUED_KEEP_USEC (a lost delivery, and no poll: an org), then the oldest done ones
 * until there is room for one more under JOBS_MAX. Under rc->lock. */
static void trim(json_t *jobs, uint64_t now) {
        const char *id;
        json_t *j, *tmp;

        json_object_foreach_safe(jobs, tmp, id, j) {
                uint64_t age = now - MIN(now, (uint64_t) json_int_at(j, "at", 0));
                if (age > (action_rank(json_str_at(j, "status") ?: "") > 1 ? DONE_KEEP_USEC : QUEUED_KEEP_USEC))
                        json_object_del(jobs, id);
        }
        while (json_object_size(jobs) >= JOBS_MAX) {
                const char *oldest = NULL;
                json_int_t at = INT64_MAX;
                json_object_foreach(jobs, id, j) {
                        if (action_rank(json_str_at(j, "status") ?: "") > 1 && json_int_at(j, "at", 0) < at) {
                                at = json_int_at(j, "at", 0);
                                oldest = id;
                        }
                }
                if (!oldest)
                        break;
                json_object_del(jobs, oldest);
        }
}

/* Records action for job id: 1 when it changed the table, 0 for a
 * duplicate (the action was seen, or the job is further on), -ENOSPC when
 * the table is full. Under rc->lock. */
int runner_table_note(json_t *table, json_int_t id, const char *action, const json_t *labels,
                      const char *runner_name, uint64_t at) {
        json_t *jobs = json_object_get(table, "jobs");
        char key[32];

        snprintf(key, sizeof key, "%lld", (long long) id);
        json_t *j = json_object_get(jobs, key);
        if (j && (has_label(json_object_get(j, "seen"), action) ||
                  action_rank(action) < action_rank(json_str_at(j, "status") ?: "")))
                return 0;
        if (!j) {
                trim(jobs, at);
                if (json_object_size(jobs) >= JOBS_MAX)
                        return -ENOSPC;
                j = json_pack("{s:[], s:O}", "seen", "labels", labels);
                json_object_set_new(jobs, key, j);
        }
        json_array_append_new(json_object_get(j, "seen"), json_string(action));
        json_object_set_new(j, "status", json_string(action));
        json_object_set_new(j, "at", json_integer((json_int_t) at));
        if (runner_name)
                json_object_set_new(j, "runner", json_string(runner_name));
        return 1;
}

/* ---- the webhook ------------------------------------------------------------------------ */

int runner_workflow_job(RunnerController *rc, const char *ns, const char *token, const json_t *payload,
                        char **ret_message) {
        const json_t *job = json_object_get(payload, "workflow_job");
        const json_t *labels = json_object_get(job, "labels");
        const char *action = json_str_at(payload, "action");
        const char *full_name = json_str_at(json_object_get(payload, "repository"), "full_name");
        const char *org = json_str_at(json_object_get(payload, "organization"), "login");
        json_int_t id = json_int_at(job, "id", 0);

        if (!action || id <= 0 || !json_is_array(labels) || !full_name) {
                *ret_message = xstrdup("workflow_job payload without action, workflow_job.id, "
                                       "workflow_job.labels or repository.full_name");
                return -EINVAL;
        }
        if (action_rank(action) == 0 || STREQ(action, "dropped")) {
                *ret_message = xasprintf("workflow_job action %s is not acted on", action);
                return RUNNER_JOB_IGNORED;
        }
        _cleanup_json_ json_t *cands = runner_candidates(rc, ns);
        const char *name = runner_route(cands, token, full_name, org, labels);
        if (!name) {
                if (STREQ(action, "queued"))
                        runner_note_unmatched(rc, ns, id, full_name, labels);
                _cleanup_free_ char *text = runner_labels_text(labels);
                *ret_message = xasprintf("no autoscaled Runner in namespace %s takes jobs of %s with labels [%s]",
                                         ns, full_name, text);
                return RUNNER_JOB_UNMATCHED;
        }
        pthread_mutex_lock(&rc->lock);
        int k = runner_table_note(runner_table(rc, ns, name), id, action, labels,
                                  json_str_at(job, "runner_name"), now_mono_usec());
        pthread_mutex_unlock(&rc->lock);
        if (k == 0) {
                *ret_message = xasprintf("job %lld %s was counted before", (long long) id, action);
                return RUNNER_JOB_DUPLICATE;
        }
        if (k < 0) {
                *ret_message = xasprintf("Runner %s follows %d jobs already: job %lld left to the poll", name,
                                         JOBS_MAX, (long long) id);
                return RUNNER_JOB_IGNORED;
        }
        controller_enqueue(rc->controller, "Runner", ns, name, BURST_USEC);
        *ret_message = xasprintf("job %lld %s counted for Runner %s", (long long) id, action, name);
        return RUNNER_JOB_COUNTED;
}

/* ---- the poll ----------------------------------------------------------------------------- */

/* The poll's answer into the table: jobs routed to this Runner are queued
 * unless further on (a dropped one listed again is queued again); queued
 * ones noted well before the poll began that it did not list are dropped
 * (taken or cancelled while a delivery got lost). */
static void merge(Pass *p, json_t *table, const json_t *mine, uint64_t started) {
        json_t *jobs = json_object_get(table, "jobs");
        _cleanup_json_ json_t *listed = json_object();
        const json_t *j;
        const char *id;
        json_t *e;
        size_t i;

        json_array_foreach(mine, i, j) {
                char key[32];
                snprintf(key, sizeof key, "%lld", (long long) json_int_at(j, "id", 0));
                json_object_set_new(listed, key, json_true());
                e = json_object_get(jobs, key);
                if (!e)
                        (void) runner_table_note(table, json_int_at(j, "id", 0), "queued",
                                                 json_object_get(j, "labels"), NULL, started);
                else if (STREQ(json_str_at(e, "status") ?: "", "dropped"))
                        json_object_set_new(e, "status", json_string("queued")); /* listed again */
        }
        json_object_foreach(jobs, id, e) {
                const char *s = json_str_at(e, "status") ?: "";
                /* GitHub's lists may lag its deliveries a little: a job
                 * told of just before the poll is left to the next one. */
                if ((STREQ(s, "queued") || STREQ(s, "waiting")) && !json_object_get(listed, id) &&
                    (uint64_t) json_int_at(e, "at", 0) + LIST_LAG_USEC < started) {
                        json_object_set_new(e, "status", json_string("dropped"));
                        log_debug("runner %s/%s: job %s is no longer queued at GitHub", p->sp->ns, p->sp->name,
                                  id);
                }
        }
}

/* When to poll again after failures failed polls in a row. */
static uint64_t poll_delay(const Pass *p, json_int_t failures) {
        uint64_t d = p->sp->poll_interval_usec;

        for (json_int_t n = 0; n < failures && d < POLL_BACKOFF_MAX_USEC; n++)
                d *= 2;
        return MIN(d, MAX(POLL_BACKOFF_MAX_USEC, p->sp->poll_interval_usec));
}

static void poll_done(Pass *p, json_t *poll, int k, const GithubResult *res, uint64_t mono) {
        json_int_t failures = k < 0 ? json_int_at(poll, "failures", 0) + 1 : 0;
        uint64_t delay = poll_delay(p, failures);

        if (k < 0 && res->error == GITHUB_RATE_LIMITED && res->retry_at_usec > p->now)
                delay = MAX(delay, res->retry_at_usec - p->now);
        json_object_set_new(poll, "failures", json_integer(failures));
        json_object_set_new(poll, "next", json_integer((json_int_t) (mono + delay)));
        json_object_set_new(poll, "requests",
                            json_integer(json_int_at(poll, "requests", 0) + (json_int_t) res->requests));
        if (k < 0) {
                json_object_set_new(poll, "reason", json_string(github_error_reason(res->error)));
                json_object_set_new(poll, "error", json_string(res->message));
        } else {
                json_object_del(poll, "reason");
                json_object_del(poll, "error");
                json_object_set_new(poll, "at", json_integer((json_int_t) p->now));
        }
}

void runner_poll(Pass *p) {
        RunnerController *rc = p->rc;
        uint64_t mono = now_mono_usec();
        _cleanup_json_ json_t *cache = NULL, *jobs = NULL, *mine = json_array(), *cands = NULL;
        GithubResult res = {.rate_remaining = -1};

        if (!p->sp->repo || !p->scope_ok)
                return;
        pthread_mutex_lock(&rc->lock);
        json_t *poll = json_object_get(runner_table(rc, p->sp->ns, p->sp->name), "poll");
        uint64_t next = (uint64_t) json_int_at(poll, "next", 0);
        cache = json_deep_copy(json_object_get(poll, "cache"));
        pthread_mutex_unlock(&rc->lock);
        if (mono < next) {
                p->poll_in = next - mono;
                return;
        }

        GithubRepoRef ref = {p->scope.api_url, p->scope.owner, p->scope.repo_name, p->scope.secret.data, NULL};
        int k = github_queued_jobs(rc->github, &ref, cache, &jobs, &res);
        if (k >= 0) {
                _cleanup_free_ char *full = xasprintf("%s/%s", p->scope.owner, p->scope.repo_name);
                const json_t *j;
                size_t i;
                token_note_used(rc->tokens, p->scope.token_ns, p->scope.token_name);
                cands = runner_candidates(rc, p->sp->ns);
                json_array_foreach(jobs, i, j) {
                        const char *to = runner_route(cands, NULL, full, NULL, json_object_get(j, "labels"));
                        if (to && STREQ(to, p->sp->name))
                                json_array_append(mine, (json_t *) j);
                        else if (!to)
                                runner_note_unmatched(rc, p->sp->ns, json_int_at(j, "id", 0), full,
                                                      json_object_get(j, "labels"));
                }
        }
        pthread_mutex_lock(&rc->lock);
        json_t *table = runner_table(rc, p->sp->ns, p->sp->name);
        poll = json_object_get(table, "poll");
        if (k >= 0) {
                json_object_set(poll, "cache", cache);
                merge(p, table, mine, mono);
        }
        poll_done(p, poll, k, &res, mono);
        p->poll_in = (uint64_t) json_int_at(poll, "next", 0) - mono;
        pthread_mutex_unlock(&rc->lock);
        if (k < 0)
                log_debug("runner %s/%s: cannot count queued jobs: %s", p->sp->ns, p->sp->name, res.message);
}
