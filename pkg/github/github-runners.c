/* github-runners: the self-hosted runner endpoints (see github.h), on top
 * of github_send().
 *
 * A scope is a repository (/repos/OWNER/NAME/actions/runners) or an
 * organisation (/orgs/ORG/actions/runners). The answers that carry a secret
 * (a JIT configuration, a registration token) are read into memory that is
 * wiped before it is freed; they never reach a message. */
#include <curl/curl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "egress/egress.h"
#include "github/github-private.h"

#define FORBIDDEN_HINT                                                                                      \
        "the token may not administer self-hosted runners: a classic token needs the repo scope "           \
        "(admin:org "                                                                                       \
        "for an organisation), a fine-grained one Administration: write (Self-hosted runners: write for "   \
        "an "                                                                                               \
        "organisation)"

/* ".../repos/OWNER/NAME/actions/runners" + tail, or ".../orgs/ORG/...". */
static char *scope_url(const GithubRepoRef *scope, const char *tail) {
        const char *api = scope->api_url ?: GITHUB_DEFAULT_API;
        size_t n = strlen(api);
        char *url;

        while (n > 0 && api[n - 1] == '/')
                n--;
        char *owner = curl_easy_escape(NULL, scope->owner, 0);
        if (scope->name) {
                char *name = curl_easy_escape(NULL, scope->name, 0);
                url = xasprintf("%.*s/repos/%s/%s/actions/%s", (int) n, api, owner, name, tail);
                curl_free(name);
        } else
                url = xasprintf("%.*s/orgs/%s/actions/%s", (int) n, api, owner, tail);
        curl_free(owner);
        return url;
}

/* A 403 that is not a rate limit, and a 422, get their runner meaning. */
static void runner_error(const char *method, const char *url, GithubResult *res) {
        if (res->http_status == 403 && res->error != GITHUB_RATE_LIMITED) {
                res->error = GITHUB_FORBIDDEN;
                snprintf(res->message, sizeof res->message, "%s %s: 403: %s", method, url, FORBIDDEN_HINT);
        } else if (res->http_status == 422 && STREQ(method, "DELETE")) {
                res->error = GITHUB_BUSY;
                snprintf(res->message, sizeof res->message, "%s %s: 422: the runner is still running a job",
                         method, url);
        }
}

/* One request whose answer is JSON: *ret_body (new reference; NULL for an
 * empty answer). */
static int call(GithubClient *g, const GithubRepoRef *scope, const char *method, const char *url,
                const char *body, json_t **ret_body, GithubResult *res) {
        GithubResponse r;

        if (github_send(g, scope, method, url, body, NULL, &r, res) < 0) {
                runner_error(method, url, res);
                github_response_clear(&r);
                return -EIO;
        }
        size_t len = r.body.len;
        json_t *j = len ? github_parse_body(&r, url, res) : NULL;
        if (r.body.data)
                explicit_bzero(r.body.data, len);
        github_response_clear(&r);
        if (len && !j)
                return -EIO;
        *ret_body = j;
        return 0;
}

static int missing(GithubResult *res, const char *method, const char *url, const char *what) {
        res->error = GITHUB_PROTOCOL;
        snprintf(res->message, sizeof res->message, "%s %s: the answer has no %s", method, url, what);
        return -EIO;
}

/* Wipes a secret-bearing JSON string before it goes. */
static void json_wipe_string(json_t *s) {
        if (json_is_string(s))
                explicit_bzero((char *) json_string_value(s), json_string_length(s));
}

int github_runner_jitconfig(GithubClient *g, const GithubRepoRef *scope, const char *name,
                            const json_t *labels, json_int_t group_id, json_int_t *ret_id, char **ret_jit,
                            GithubResult *ret) {
        _cleanup_free_ char *url = scope_url(scope, "runners/generate-jitconfig");
        _cleanup_json_ json_t *req = json_pack("{s:s, s:I, s:s}", "name", name, "runner_group_id", group_id,
                                               "work_folder", "_work");
        _cleanup_json_ json_t *body = NULL;

        *ret = (GithubResult){.rate_remaining = -1};
        json_object_set_new(req, "labels", labels ? json_deep_copy(labels) : json_array());
        _cleanup_free_ char *text = json_dumps(req, JSON_COMPACT);
        if (call(g, scope, "POST", url, text, &body, ret) < 0)
                return -EIO;
        json_t *jit = json_object_get(body, "encoded_jit_config");
        json_int_t id = json_int_at(json_object_get(body, "runner"), "id", 0);
        if (!json_is_string(jit) || id <= 0) {
                json_wipe_string(jit);
                return missing(ret, "POST", url, "runner.id and encoded_jit_config");
        }
        *ret_id = id;
        *ret_jit = xstrdup(json_string_value(jit));
        json_wipe_string(jit);
        return 0;
}

int github_runner_token(GithubClient *g, const GithubRepoRef *scope, const char *what, char **ret_token,
                        GithubResult *ret) {
        _cleanup_free_ char *tail = xasprintf("runners/%s-token", what), *url = scope_url(scope, tail);
        _cleanup_json_ json_t *body = NULL;

        *ret = (GithubResult){.rate_remaining = -1};
        if (call(g, scope, "POST", url, NULL, &body, ret) < 0)
                return -EIO;
        json_t *t = json_object_get(body, "token");
        if (!json_is_string(t))
                return missing(ret, "POST", url, "token");
        *ret_token = xstrdup(json_string_value(t));
        json_wipe_string(t);
        return 0;
}

static void runner_read(const json_t *j, GithubRunner *ret) {
        *ret = (GithubRunner){
                .id = json_int_at(j, "id", 0),
                .name = xstrdup(json_str_at(j, "name") ?: ""),
                .online = STREQ(json_str_at(j, "status") ?: "", "online"),
                .busy = json_is_true(json_object_get(j, "busy")),
        };
}

void github_runners_free(GithubRunner *r, size_t n) {
        for (size_t i = 0; i < n; i++)
                free(r[i].name);
        free(r);
}

typedef struct RunnerPages {
        GithubRunner *list;
        size_t n;
} RunnerPages;

/* Appends one page's runners. */
static int add_page(const json_t *body, void *userdata) {
        RunnerPages *p = userdata;
        const json_t *runners = json_object_get(body, "runners"), *j;
        size_t i;

        if (!json_is_array(runners))
                return -EINVAL;
        p->list = xrealloc(p->list, (p->n + json_array_size(runners) + 1) * sizeof *p->list);
        json_array_foreach(runners, i, j) runner_read(j, &p->list[p->n++]);
        return 0;
}

int github_runner_list(GithubClient *g, const GithubRepoRef *scope, GithubRunner **ret, size_t *ret_n,
                       GithubResult *res) {
        _cleanup_free_ char *url = scope_url(scope, "runners?per_page=100");
        RunnerPages p = {0};

        *res = (GithubResult){.rate_remaining = -1};
        if (github_get_pages(g, scope, url, NULL, "a runners list", add_page, &p, NULL, res) < 0) {
                runner_error("GET", url, res);
                github_runners_free(p.list, p.n);
                return -EIO;
        }
        *ret = p.list;
        *ret_n = p.n;
        return 0;
}

int github_runner_get(GithubClient *g, const GithubRepoRef *scope, json_int_t id, GithubRunner *ret,
                      GithubResult *res) {
        _cleanup_free_ char *tail = xasprintf("runners/%lld", (long long) id), *url = scope_url(scope, tail);
        _cleanup_json_ json_t *body = NULL;

        *res = (GithubResult){.rate_remaining = -1};
        if (call(g, scope, "GET", url, NULL, &body, res) < 0)
                return -EIO;
        if (json_int_at(body, "id", 0) != id)
                return missing(res, "GET", url, "id");
        runner_read(body, ret);
        return 0;
}

int github_runner_delete(GithubClient *g, const GithubRepoRef *scope, json_int_t id, GithubResult *ret) {
        _cleanup_free_ char *tail = xasprintf("runners/%lld", (long long) id), *url = scope_url(scope, tail);
        _cleanup_json_ json_t *body = NULL;

        *ret = (GithubResult){.rate_remaining = -1};
        if (call(g, scope, "DELETE", url, NULL, &body, ret) < 0) {
                if (ret->error == GITHUB_NOT_FOUND) {
                        ret->error = GITHUB_OK;
                        ret->message[0] = '\0';
                        return 0;
                }
                return -EIO;
        }
        return 0;
}

int github_runner_download(GithubClient *g, const GithubRepoRef *scope, const char *os, const char *arch,
                           char **ret_url, char **ret_sha256, GithubResult *ret) {
        _cleanup_free_ char *url = scope_url(scope, "runners/downloads");
        _cleanup_json_ json_t *body = NULL;
        const json_t *d;
        size_t i;

        *ret = (GithubResult){.rate_remaining = -1};
        if (call(g, scope, "GET", url, NULL, &body, ret) < 0)
                return -EIO;
        json_array_foreach(body, i, d) {
                if (!STREQ(json_str_at(d, "os") ?: "", os) ||
                    !STREQ(json_str_at(d, "architecture") ?: "", arch))
                        continue;
                const char *u = json_str_at(d, "download_url"), *sum = json_str_at(d, "sha256_checksum");
                if (!u)
                        break;
                *ret_url = xstrdup(u);
                *ret_sha256 = sum ? xstrdup(sum) : NULL;
                return 0;
        }
        ret->error = GITHUB_NOT_FOUND;
        snprintf(ret->message, sizeof ret->message, "GET %s: no runner release for %s-%s", url, os, arch);
        return -EIO;
}

int github_runner_group_id(GithubClient *g, const GithubRepoRef *scope, const char *name, json_int_t *ret_id,
                           GithubResult *ret) {
        _cleanup_free_ char *url = scope_url(scope, "runner-groups?per_page=100");
        _cleanup_json_ json_t *body = NULL;
        const json_t *grp;
        size_t i;

        *ret = (GithubResult){.rate_remaining = -1};
        if (scope->name) {
                *ret_id = 1;
                return 0;
        }
        if (call(g, scope, "GET", url, NULL, &body, ret) < 0)
                return -EIO;
        json_array_foreach(json_object_get(body, "runner_groups"), i, grp) {
                if (STREQ(json_str_at(grp, "name") ?: "", name)) {
                        *ret_id = json_int_at(grp, "id", 0);
                        return 0;
                }
        }
        ret->error = GITHUB_NOT_FOUND;
        snprintf(ret->message, sizeof ret->message, "GET %s: the organisation %s has no runner group %s",
                 url, scope->owner, name);
        return -EIO;
}

/* ---- the job queue ----------------------------------------------------------------------- */

#define QUEUED_RUNS_MAX 100

/* Appends the ids of one page of runs (at most QUEUED_RUNS_MAX in all). */
static int add_run_ids(const json_t *body, void *userdata) {
        const json_t *runs = json_object_get(body, "workflow_runs"), *r;
        size_t i;

        if (!json_is_array(runs))
                return -EINVAL;
        json_array_foreach(runs, i, r) {
                if (json_array_size(userdata) >= QUEUED_RUNS_MAX)
                        break;
                if (json_int_at(r, "id", 0) > 0)
                        json_array_append_new(userdata, json_integer(json_int_at(r, "id", 0)));
        }
        return 0;
}

/* Appends the queued jobs of one page: {id, run_id, labels}. */
static int add_queued_jobs(const json_t *body, void *userdata) {
        const json_t *jobs = json_object_get(body, "jobs"), *j;
        size_t i;

        if (!json_is_array(jobs))
                return -EINVAL;
        json_array_foreach(jobs, i, j) {
                const json_t *labels = json_object_get(j, "labels");
                if (!STREQ(json_str_at(j, "status") ?: "", "queued") || json_int_at(j, "id", 0) <= 0 ||
                    !json_is_array(labels))
                        continue;
                json_array_append_new(userdata, json_pack("{s:I, s:I, s:O}", "id", json_int_at(j, "id", 0),
                                                          "run_id", json_int_at(j, "run_id", 0), "labels",
                                                          labels));
        }
        return 0;
}

/* GETs url's pages into a fresh array by page(), conditional on what cache
 * (url -> {"etag", "items"}) holds; a 304 answers the cached items. */
static int get_cached(GithubClient *g, const GithubRepoRef *repo, const char *url, const char *what,
                      GithubPageFn page, json_t *cache, json_t *keep, json_t **ret, GithubResult *res) {
        const json_t *c = json_object_get(cache, url);
        _cleanup_json_ json_t *items = json_array();
        char etag[256] = "";

        int k = github_get_pages(g, repo, url, json_str_at(c, "etag"), what, page, items, etag, res);
        if (k < 0)
                return -EIO;
        if (k == 1) {
                json_decref(items);
                items = json_deep_copy(json_object_get(c, "items"));
        } else
                json_object_set_new(cache, url, json_pack("{s:s, s:O}", "etag", etag, "items", items));
        json_object_set(keep, url, json_object_get(cache, url));
        *ret = TAKE_PTR(items);
        return 0;
}

int github_queued_jobs(GithubClient *g, const GithubRepoRef *repo, json_t *cache, json_t **ret_jobs,
                       GithubResult *res) {
        _cleanup_free_ char *url = scope_url(repo, "runs?status=queued&per_page=100");
        _cleanup_json_ json_t *runs = NULL, *jobs = json_array(), *keep = json_object();
        const json_t *id;
        size_t i;

        *res = (GithubResult){.rate_remaining = -1};
        if (!repo->name) {
                res->error = GITHUB_PROTOCOL;
                snprintf(res->message, sizeof res->message, "queued jobs are listed per repository only");
                return -EINVAL;
        }
        if (get_cached(g, repo, url, "a list of workflow runs", add_run_ids, cache, keep, &runs, res) < 0)
                return -EIO;
        json_array_foreach(runs, i, id) {
                _cleanup_free_ char *tail = xasprintf("runs/%lld/jobs?per_page=100",
                                                      (long long) json_integer_value(id));
                _cleanup_free_ char *u = scope_url(repo, tail);
                _cleanup_json_ json_t *some = NULL;
                if (get_cached(g, repo, u, "a list of jobs", add_queued_jobs, cache, keep, &some, res) < 0)
                        return -EIO;
                json_array_extend(jobs, some);
        }
        /* Runs no longer queued leave the cache: it holds what the last poll saw. */
        json_object_clear(cache);
        json_object_update(cache, keep);
        res->not_modified = res->requests == res->requests_304;
        *ret_jobs = TAKE_PTR(jobs);
        return 0;
}

/* ---- the release tarball ---------------------------------------------------------------- */

typedef struct Download {
        FILE *f;
        size_t n, max;
} Download;

static size_t on_file(char *data, size_t size, size_t n, void *userdata) {
        Download *d = userdata;

        if (d->n + size * n > d->max)
                return 0;
        d->n += size * n;
        return fwrite(data, size, n, d->f) == n ? size * n : 0;
}

int github_download(GithubClient *g, const char *url, const char *path, size_t max, GithubResult *ret) {
        char errbuf[CURL_ERROR_SIZE] = "";
        EgressCurl egress;
        long status = 0;

        *ret = (GithubResult){.rate_remaining = -1};
        CURL *c = github_easy(g, url, errbuf);
        if (!c)
                return -ENOMEM;
        Download d = {.f = fopen(path, "we"), .max = max};
        if (!d.f) {
                int k = -errno;
                curl_easy_cleanup(c);
                return k;
        }
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_file);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, &d);
        egress_curl_setup(c, &egress);
        CURLcode code = curl_easy_perform(c);
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        curl_easy_cleanup(c);
        bool written = fclose(d.f) == 0;
        ret->requests = 1;
        ret->http_status = (int) status;
        if (code == CURLE_OK && status == 200 && written)
                return 0;
        (void) unlink(path);
        ret->error = code == CURLE_OK ? GITHUB_PROTOCOL
                     : egress.refused ? GITHUB_NOT_ALLOWED
                                      : GITHUB_NETWORK;
        if (code == CURLE_WRITE_ERROR && d.n + CURL_MAX_WRITE_SIZE > max)
                snprintf(ret->message, sizeof ret->message, "GET %s: larger than %zu bytes", url, max);
        else if (code != CURLE_OK)
                snprintf(ret->message, sizeof ret->message, "GET %s: %s", url,
                         egress.refused ? egress.message
                         : *errbuf      ? errbuf
                                        : curl_easy_strerror(code));
        else
                snprintf(ret->message, sizeof ret->message, "GET %s: %ld", url, status);
        return -EIO;
}
