/* github.c: the questions rpr asks GitHub (see github.h), on top of
 * github_request().
 *
 * The ETag cache keeps, per Repo, the last answer parsed down to what rpr
 * uses (the commit, the branch names), so a 304 is answered from it without
 * parsing anything. A cached branch head belongs to one branch name: a Repo
 * that switches branch asks unconditionally. */
#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "github/github-private.h"

#define MESSAGE_MAX 200

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void curl_init_once(void) {
        curl_global_init(CURL_GLOBAL_DEFAULT);
}

static void share_lock(CURL *c, curl_lock_data data, curl_lock_access access, void *userdata) {
        (void) c;
        (void) access;
        pthread_mutex_lock(&((GithubClient *) userdata)->share_locks[data]);
}

static void share_unlock(CURL *c, curl_lock_data data, void *userdata) {
        (void) c;
        pthread_mutex_unlock(&((GithubClient *) userdata)->share_locks[data]);
}

/* The curl share, made at the first request: rprd starts faster without
 * initializing TLS for Repos it may not have. */
CURLSH *github_share(GithubClient *g) {
        pthread_once(&curl_once, curl_init_once);
        pthread_mutex_lock(&g->lock);
        if (!g->share) {
                g->share = curl_share_init();
                if (g->share) {
                        curl_share_setopt(g->share, CURLSHOPT_LOCKFUNC, share_lock);
                        curl_share_setopt(g->share, CURLSHOPT_UNLOCKFUNC, share_unlock);
                        curl_share_setopt(g->share, CURLSHOPT_USERDATA, g);
                        curl_share_setopt(g->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT);
                        curl_share_setopt(g->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
                }
        }
        pthread_mutex_unlock(&g->lock);
        return g->share;
}

int github_client_new(const GithubOptions *o, GithubClient **ret) {
        GithubClient *g = xcalloc(1, sizeof *g);

        g->user_agent = xstrdup(o && o->user_agent ? o->user_agent : "rpr/" RPR_VERSION);
        g->connect_timeout_usec = o && o->connect_timeout_usec ? o->connect_timeout_usec : 10 * USEC_PER_SEC;
        g->timeout_usec = o && o->timeout_usec ? o->timeout_usec : 30 * USEC_PER_SEC;
        g->cache = json_object();
        g->gates = json_object();
        pthread_mutex_init(&g->lock, NULL);
        for (size_t i = 0; i < ELEMENTSOF(g->share_locks); i++)
                pthread_mutex_init(&g->share_locks[i], NULL);
        *ret = g;
        return 0;
}

void github_client_free(GithubClient *g) {
        if (!g)
                return;
        if (g->share)
                curl_share_cleanup(g->share);
        json_decref(g->cache);
        json_decref(g->gates);
        pthread_mutex_destroy(&g->lock);
        for (size_t i = 0; i < ELEMENTSOF(g->share_locks); i++)
                pthread_mutex_destroy(&g->share_locks[i]);
        free(g->user_agent);
        free(g);
}

/* ---- rate-limit gates ---------------------------------------------------------------- */

static char *gate_key(const GithubRepoRef *repo) {
        char hash[65];
        const char *t = repo->token ?: "";

        sha256_hex(t, strlen(t), hash);
        return xasprintf("%s %s", repo->api_url ?: GITHUB_DEFAULT_API, hash);
}

bool github_gate_closed(GithubClient *g, const GithubRepoRef *repo, uint64_t *ret_until) {
        _cleanup_free_ char *key = gate_key(repo);
        uint64_t now = now_usec();

        pthread_mutex_lock(&g->lock);
        uint64_t until = (uint64_t) json_int_at(g->gates, key, 0);
        if (until && until <= now)
                json_object_del(g->gates, key);
        pthread_mutex_unlock(&g->lock);
        *ret_until = until;
        return until > now;
}

void github_gate_close(GithubClient *g, const GithubRepoRef *repo, uint64_t until_usec) {
        _cleanup_free_ char *key = gate_key(repo);

        pthread_mutex_lock(&g->lock);
        if ((uint64_t) json_int_at(g->gates, key, 0) < until_usec)
                json_object_set_new(g->gates, key, json_integer((json_int_t) until_usec));
        pthread_mutex_unlock(&g->lock);
}

/* ---- the ETag cache --------------------------------------------------------------------- */

/* A copy of field of the cache entry of key (new reference), or NULL. */
static json_t *cache_get(GithubClient *g, const char *key, const char *field) {
        json_t *v = NULL;

        if (!key)
                return NULL;
        pthread_mutex_lock(&g->lock);
        v = json_deep_copy(json_object_get(json_object_get(g->cache, key), field));
        pthread_mutex_unlock(&g->lock);
        return v;
}

static void cache_put(GithubClient *g, const char *key, const char *field, json_t *v) {
        if (!key) {
                json_decref(v);
                return;
        }
        pthread_mutex_lock(&g->lock);
        json_t *e = json_object_get(g->cache, key);
        if (!e) {
                e = json_object();
                json_object_set_new(g->cache, key, e);
        }
        json_object_set_new(e, field, v);
        pthread_mutex_unlock(&g->lock);
}

void github_forget(GithubClient *g, const char *cache_key) {
        pthread_mutex_lock(&g->lock);
        json_object_del(g->cache, cache_key);
        pthread_mutex_unlock(&g->lock);
}

/* ---- URLs ------------------------------------------------------------------------------- */

static char *repo_url(const GithubRepoRef *repo, const char *tail) {
        const char *api = repo->api_url ?: GITHUB_DEFAULT_API;
        size_t n = strlen(api);

        while (n > 0 && api[n - 1] == '/')
                n--;
        char *owner = curl_easy_escape(NULL, repo->owner, 0), *name = curl_easy_escape(NULL, repo->name, 0);
        char *url = xasprintf("%.*s/repos/%s/%s%s", (int) n, api, owner, name, tail);
        curl_free(owner);
        curl_free(name);
        return url;
}

int github_parse_url(const char *url, char **ret_owner, char **ret_name) {
        const char *p;

        if (startswith(url, "https://"))
                p = url + 8;
        else if (startswith(url, "http://"))
                p = url + 7;
        else
                return -EINVAL;
        p = strchr(p, '/'); /* past the host */
        if (!p)
                return -EINVAL;
        p++;
        const char *slash = strchr(p, '/');
        if (!slash || slash == p)
                return -EINVAL;
        const char *name = slash + 1;
        size_t n = strcspn(name, "/");
        /* Nothing but a trailing slash may follow the name. */
        if (name[n] == '/' && name[n + 1] != '\0')
                return -EINVAL;
        if (n > 4 && strncmp(name + n - 4, ".git", 4) == 0)
                n -= 4;
        if (n == 0)
                return -EINVAL;
        *ret_owner = xstrndup(p, slash - p);
        *ret_name = xstrndup(name, n);
        return 0;
}

/* ---- answers ------------------------------------------------------------------------------ */

/* {sha, time, author, message} from a branch answer's "commit". */
static json_t *commit_from(const json_t *branch) {
        const json_t *c = json_object_get(branch, "commit");
        const json_t *inner = json_object_get(c, "commit");
        const json_t *committer = json_object_get(inner, "committer");
        const json_t *author = json_object_get(inner, "author");
        const char *sha = json_str_at(c, "sha");
        const char *date = json_str_at(committer, "date") ?: json_str_at(author, "date");
        const char *msg = json_str_at(inner, "message") ?: "";
        char when[RFC3339_MAX] = "";
        uint64_t t;

        if (!sha)
                return NULL;
        if (date && time_parse_rfc3339(date, &t) >= 0)
                time_format_rfc3339(t, when);
        /* The subject line only, flat and cut between characters: the
         * repository's author wrote it. */
        _cleanup_free_ char *subject = text_flat_dup(msg, MIN(strcspn(msg, "\r\n"), (size_t) MESSAGE_MAX));
        _cleanup_free_ char *who =
                json_str_at(author, "name") ? text_flat_dup(json_str_at(author, "name"), 256) : NULL;
        json_t *commit = json_pack("{s:s, s:s}", "sha", sha, "message", subject);
        if (!commit)
                return NULL;
        if (*when)
                json_object_set_new(commit, "time", json_string(when));
        if (who)
                json_object_set_new(commit, "author", json_string(who));
        return commit;
}

json_t *github_parse_body(const GithubResponse *r, const char *url, GithubResult *res) {
        json_error_t err;
        json_t *j = json_loadb(r->body.data ?: "", r->body.len, 0, &err);

        if (!j) {
                res->error = GITHUB_PROTOCOL;
                snprintf_utf8(res->message, sizeof res->message, "GET %s: the answer is not JSON: %s", url,
                              err.text);
                text_flatten(res->message);
        }
        return j;
}

/* After a 404 for a branch: is it the branch or the repository? */
static void explain_not_found(GithubClient *g, const GithubRepoRef *repo, const char *branch, GithubResult *res) {
        _cleanup_free_ char *url = repo_url(repo, "");
        GithubResponse r;
        GithubResult probe = {0};

        if (github_request(g, repo, url, NULL, &r, &probe) >= 0) {
                res->error = GITHUB_BRANCH_NOT_FOUND;
                snprintf(res->message, sizeof res->message, "%s/%s has no branch %s", repo->owner, repo->name,
                         branch);
        } else if (probe.error == GITHUB_NOT_FOUND) {
                res->error = GITHUB_NOT_FOUND;
                snprintf(res->message, sizeof res->message, "%s: no repository %s/%s%s", url, repo->owner,
                         repo->name,
                         repo->token ? " that the token can see"
                                     : "; a private repository needs spec.tokenRef naming a github Token");
        } else {
                res->error = probe.error;
                memcpy(res->message, probe.message, sizeof res->message);
                res->retry_at_usec = probe.retry_at_usec;
        }
        res->requests += probe.requests;
        github_response_clear(&r);
}

int github_branch_head(GithubClient *g, const GithubRepoRef *repo, const char *branch, json_t **ret_commit,
                       GithubResult *ret) {
        char *esc = curl_easy_escape(NULL, branch, 0);
        _cleanup_free_ char *tail = xasprintf("/branches/%s", esc), *url = repo_url(repo, tail);
        _cleanup_json_ json_t *cached_branch = cache_get(g, repo->cache_key, "branch");
        _cleanup_json_ json_t *cached = NULL, *etag_json = NULL;
        GithubResponse r;
        int k;

        curl_free(esc);
        *ret = (GithubResult){.rate_remaining = -1};
        if (cached_branch && STREQ(json_string_value(cached_branch) ?: "", branch)) {
                cached = cache_get(g, repo->cache_key, "commit");
                etag_json = cache_get(g, repo->cache_key, "headEtag");
        }
        k = github_request(g, repo, url, cached ? json_string_value(etag_json) : NULL, &r, ret);
        if (k < 0) {
                if (ret->error == GITHUB_NOT_FOUND && ret->http_status == 404)
                        explain_not_found(g, repo, branch, ret);
                github_response_clear(&r);
                return -EIO;
        }
        if (r.status == 304 && cached) {
                ret->not_modified = true;
                *ret_commit = TAKE_PTR(cached);
                github_response_clear(&r);
                return 0;
        }
        _cleanup_json_ json_t *body = github_parse_body(&r, url, ret);
        json_t *commit = body ? commit_from(body) : NULL;
        if (!commit) {
                if (body) {
                        ret->error = GITHUB_PROTOCOL;
                        snprintf(ret->message, sizeof ret->message, "GET %s: the answer has no commit.sha", url);
                }
                github_response_clear(&r);
                return -EIO;
        }
        cache_put(g, repo->cache_key, "branch", json_string(branch));
        cache_put(g, repo->cache_key, "commit", json_deep_copy(commit));
        cache_put(g, repo->cache_key, "headEtag", json_string(r.etag));
        *ret_commit = commit;
        github_response_clear(&r);
        return 0;
}

/* Appends the names of one page of branches. */
static int add_names(const json_t *page, void *userdata) {
        const json_t *b;
        size_t i;

        if (!json_is_array(page))
                return -EINVAL;
        json_array_foreach(page, i, b) {
                const char *name = json_str_at(b, "name");
                if (name)
                        json_array_append_new(userdata, json_string(name));
        }
        return 0;
}

int github_list_branches(GithubClient *g, const GithubRepoRef *repo, json_t **ret_branches, GithubResult *ret) {
        _cleanup_free_ char *url = repo_url(repo, "/branches?per_page=100");
        _cleanup_json_ json_t *cached = cache_get(g, repo->cache_key, "branches");
        _cleanup_json_ json_t *etag = cache_get(g, repo->cache_key, "listEtag");
        _cleanup_json_ json_t *names = json_array();
        char first_etag[256] = "";

        *ret = (GithubResult){.rate_remaining = -1};
        int k = github_get_pages(g, repo, url, cached ? json_string_value(etag) : NULL, "a list", add_names, names,
                                 first_etag, ret);
        if (k < 0)
                return -EIO;
        if (k == 1) {
                ret->not_modified = true;
                *ret_branches = TAKE_PTR(cached);
                return 0;
        }
        cache_put(g, repo->cache_key, "branches", json_deep_copy(names));
        cache_put(g, repo->cache_key, "listEtag", json_string(first_etag));
        *ret_branches = TAKE_PTR(names);
        return 0;
}

int github_clone_url(GithubClient *g, const GithubRepoRef *repo, char **ret_url, GithubResult *ret) {
        _cleanup_free_ char *url = repo_url(repo, "");
        GithubResponse r;

        *ret = (GithubResult){.rate_remaining = -1};
        if (github_request(g, repo, url, NULL, &r, ret) < 0) {
                if (ret->error == GITHUB_NOT_FOUND && !repo->token)
                        snprintf(ret->message, sizeof ret->message,
                                 "%s: no repository %s/%s; a private repository needs spec.tokenRef naming a "
                                 "github Token",
                                 url, repo->owner, repo->name);
                github_response_clear(&r);
                return -EIO;
        }
        _cleanup_json_ json_t *body = github_parse_body(&r, url, ret);
        github_response_clear(&r);
        const char *clone = json_str_at(body, "clone_url");
        if (!clone) {
                if (body) {
                        ret->error = GITHUB_PROTOCOL;
                        snprintf(ret->message, sizeof ret->message, "GET %s: the answer has no clone_url", url);
                }
                return -EIO;
        }
        *ret_url = xstrdup(clone);
        return 0;
}
