/* github: the GitHub REST client rpr needs to watch a branch, on libcurl.
 *
 * One GithubClient serves every Repo. It remembers, per cache key (a Repo's
 * "ns/name"), the ETag and parsed answer of its last branch and branch-list
 * requests and asks again with If-None-Match, so an unchanged branch costs
 * a 304 and no rate limit. It remembers, per API URL and token, what the
 * rate-limit headers said: once X-RateLimit-Remaining is 0 (or a 403/429
 * carried Retry-After) it makes no request to that API with that token
 * until the reset time and answers GITHUB_RATE_LIMITED at once, so that
 * callers wait rather than hammer. Lists follow Link rel="next". Every
 * request has a User-Agent, the GitHub media type, connect and total
 * timeouts. Tokens go only into the Authorization header; no message this
 * module writes ever contains one. Thread-safe: calls may run on many
 * worker threads at once. */
#pragma once

#include "base/base.h"

typedef struct GithubClient GithubClient;

typedef struct GithubOptions {
        const char *user_agent;  /* NULL: "rpr/VERSION" */
        uint64_t connect_timeout_usec; /* 0: 10 s */
        uint64_t timeout_usec;         /* whole request; 0: 30 s */
} GithubOptions;

int github_client_new(const GithubOptions *o, GithubClient **ret); /* o may be NULL */
void github_client_free(GithubClient *g);                           /* NULL-safe */

/* Which repository, and as whom. */
typedef struct GithubRepoRef {
        const char *api_url;   /* NULL: https://api.github.com; no trailing slash needed */
        const char *owner;
        const char *name;
        const char *token;     /* NULL: anonymous */
        const char *cache_key; /* ETag cache key, e.g. "default/site"; NULL: no cache */
} GithubRepoRef;

typedef enum GithubError {
        GITHUB_OK,
        GITHUB_BAD_CREDENTIALS, /* 401 */
        GITHUB_NOT_FOUND,       /* 404 on the repository (private without a token, or absent) */
        GITHUB_BRANCH_NOT_FOUND,/* the repository exists, the branch does not */
        GITHUB_RATE_LIMITED,    /* 403/429 with the limit spent, or still waiting for its reset */
        GITHUB_NETWORK,         /* DNS, connect, TLS, timeout, 5xx */
        GITHUB_PROTOCOL,        /* an answer we cannot read (bad JSON, missing fields, other status) */
        GITHUB_NOT_ALLOWED,     /* the address is refused by --allow-networks; nothing was sent */
        GITHUB_FORBIDDEN,       /* runner endpoints: 403, the token may not administer runners */
        GITHUB_BUSY,            /* runner delete: 422, the runner is still running a job */
} GithubError;

/* The condition reason for a failure: "BadCredentials", "NotFound",
 * "BranchNotFound", "RateLimited", "NetworkError", "ProtocolError",
 * "NetworkNotAllowed", "TokenForbidden", "RunnerBusy"; "OK". */
const char *github_error_reason(GithubError e);

typedef struct GithubResult {
        GithubError error;
        char message[512];       /* for a person; says what and where (no token) */
        int http_status;         /* of the last request; 0 when none was made */
        bool not_modified;       /* the answer came from the cache after a 304 */
        uint64_t retry_at_usec;  /* realtime; RATE_LIMITED: when to ask again */
        uint64_t token_expires_usec; /* realtime; from GitHub-Authentication-Token-Expiration, 0 if absent */
        long rate_remaining;     /* X-RateLimit-Remaining of the last answer; -1 if absent */
        uint64_t rate_reset_usec;/* X-RateLimit-Reset (realtime); 0 if absent */
        unsigned requests;       /* HTTP requests this call made */
        unsigned requests_304;   /* of which answered 304 */
} GithubResult;

/* The head commit of branch: GET /repos/{owner}/{name}/branches/{branch}.
 * On success *ret_commit (new reference) is {"sha","time","author","message"}
 * (time RFC 3339 UTC as GitHub gives the committer date; author the commit
 * author's name; message the first line, at most 200 bytes). A 404 is told
 * apart by asking for the repository: GITHUB_BRANCH_NOT_FOUND when it
 * exists, GITHUB_NOT_FOUND (with a hint that a private repository needs
 * tokenRef when there is no token) when not. Returns 0, or -EIO with
 * ret->error and ret->message set. */
int github_branch_head(GithubClient *g, const GithubRepoRef *repo, const char *branch, json_t **ret_commit,
                       GithubResult *ret);

/* Every branch name: GET /repos/{owner}/{name}/branches?per_page=100,
 * following Link rel="next" (at most 50 pages). *ret_branches (new
 * reference) is an array of strings. Conditional on the first page's
 * ETag. Returns 0 or -EIO as above. */
int github_list_branches(GithubClient *g, const GithubRepoRef *repo, json_t **ret_branches, GithubResult *ret);

/* The repository's clone_url: GET /repos/{owner}/{name}. *ret_url caller
 * frees. Returns 0 or -EIO as above. */
int github_clone_url(GithubClient *g, const GithubRepoRef *repo, char **ret_url, GithubResult *ret);

/* Forget the cached answers of cache_key (a Repo deleted or changed). */
void github_forget(GithubClient *g, const char *cache_key);

/* "https://github.com/OWNER/NAME[.git][/]" -> owner and name (caller
 * frees). Any host is accepted (GitHub Enterprise). -EINVAL otherwise. */
int github_parse_url(const char *url, char **ret_owner, char **ret_name);

/* ---- self-hosted runners (github-runners.c) ----------------------------------
 *
 * The scope is a GithubRepoRef: a repository (owner and name), or an
 * organisation when name is NULL (owner is the organisation). A 403 that is
 * not a rate limit is GITHUB_FORBIDDEN with a message saying which rights
 * the token lacks. Returns 0, or -EIO with ret->error and ret->message. */

/* One runner as GitHub lists it. */
typedef struct GithubRunner {
        json_int_t id;
        char *name;
        bool online; /* status "online" */
        bool busy;
} GithubRunner;

/* A JIT configuration for a new runner: POST .../actions/runners/generate-jitconfig
 * with name, labels (array of strings, may be NULL), runner_group_id and
 * work_folder "_work". *ret_id the new runner's id, *ret_jit (caller
 * frees, a secret: wipe it) encoded_jit_config. GitHub Enterprise servers
 * that do not know the endpoint answer 404: GITHUB_NOT_FOUND. */
int github_runner_jitconfig(GithubClient *g, const GithubRepoRef *scope, const char *name, const json_t *labels,
                            json_int_t group_id, json_int_t *ret_id, char **ret_jit, GithubResult *ret);
/* POST .../actions/runners/registration-token (what is "registration") or
 * .../remove-token ("remove"): *ret_token caller frees, a secret. */
int github_runner_token(GithubClient *g, const GithubRepoRef *scope, const char *what, char **ret_token,
                        GithubResult *ret);
/* Every runner of the scope: GET .../actions/runners?per_page=100, following
 * Link rel="next" (at most 50 pages). *ret (caller frees with
 * github_runners_free) and *ret_n. */
int github_runner_list(GithubClient *g, const GithubRepoRef *scope, GithubRunner **ret, size_t *ret_n,
                       GithubResult *res);
void github_runners_free(GithubRunner *r, size_t n);
/* GET .../actions/runners/{id}: GITHUB_NOT_FOUND when it is not registered. */
int github_runner_get(GithubClient *g, const GithubRepoRef *scope, json_int_t id, GithubRunner *ret,
                      GithubResult *res);
/* DELETE .../actions/runners/{id}: 0 on 204 and on 404 (already gone);
 * GITHUB_BUSY on 422 (it is running a job: try again later). */
int github_runner_delete(GithubClient *g, const GithubRepoRef *scope, json_int_t id, GithubResult *ret);
/* The runner release for os and arch ("linux", "x64"): GET
 * .../actions/runners/downloads. *ret_url and *ret_sha256 caller frees
 * (sha256 may be NULL when GitHub gave none). */
int github_runner_download(GithubClient *g, const GithubRepoRef *scope, const char *os, const char *arch,
                           char **ret_url, char **ret_sha256, GithubResult *ret);
/* The id of the organisation's runner group called name: GET
 * /orgs/{org}/actions/runner-groups?per_page=100. GITHUB_NOT_FOUND when
 * there is none. A repository scope has group 1. */
int github_runner_group_id(GithubClient *g, const GithubRepoRef *scope, const char *name, json_int_t *ret_id,
                           GithubResult *ret);
/* The queued jobs of a repository, for autoscaling: GET
 * .../actions/runs?status=queued&per_page=100 (at most 100 runs), then each
 * run's .../actions/runs/{id}/jobs?per_page=100, every request conditional
 * on the ETag that cache (a JSON object the caller keeps between calls,
 * url -> {"etag", "items"}) holds, so an unchanged queue costs only 304s.
 * *ret_jobs (new reference): [{"id", "run_id", "labels"}] of the jobs
 * whose status is queued. res counts the requests and 304s. An
 * organisation scope is -EINVAL (GitHub lists runs per repository). */
int github_queued_jobs(GithubClient *g, const GithubRepoRef *repo, json_t *cache, json_t **ret_jobs,
                       GithubResult *res);
/* Downloads url (a runner release; no token is sent) into path, at most
 * max bytes; the file is removed on failure. 0, or -EIO with ret set. */
int github_download(GithubClient *g, const char *url, const char *path, size_t max, GithubResult *ret);
