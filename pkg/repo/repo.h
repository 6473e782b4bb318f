/* repo: the Repo kind's controller — is there a new commit on the branch?
 *
 * A Repo is checked on apply (a new generation), every spec.interval, when
 * its Token changes, and on demand (webhook, API). provider github reads
 * the branch head through the GitHub API (conditional requests: an
 * unchanged branch is a 304 that costs no rate limit); provider git lists
 * the remote's refs with libgit2 and, only when the head moved, fetches the
 * branch into a bare cache to read the commit. The change identity is the
 * commit sha, so a force-push to an older commit is a change too. Status:
 * lastCommit {sha, time, author, message}, lastCheckTime, nextCheckTime
 * (durable, so a restart keeps the interval), lastChangeTime, branches,
 * and a Ready condition whose reason names the cause of a failure
 * (BadCredentials, NotFound, RateLimited, BranchNotFound, NetworkError,
 * TokenExpired, MissingReference, ...). A new commit is a line in the
 * activity log and is announced to whoever listens. */
#pragma once

#include "base/base.h"

typedef struct Store Store;
typedef struct Controller Controller;
typedef struct LogFile LogFile;
typedef struct TokenController TokenController;
typedef struct GithubClient GithubClient;
typedef struct RepoController RepoController;

typedef struct RepoOptions {
        Store *store;
        Controller *controller; /* the Repo kind is registered on it */
        TokenController *tokens;
        GithubClient *github;
        const char *cache_dir; /* bare caches of provider git, and temporary checkouts */
        LogFile *activity;     /* may be NULL */
} RepoOptions;

int repo_controller_new(const RepoOptions *o, RepoController **ret);
void repo_controller_free(RepoController *r); /* NULL-safe */

/* Called (on a worker thread) after a Repo's lastCommit.sha changed. */
typedef void (*RepoCommitFn)(void *userdata, const char *ns, const char *name, const char *sha);
void repo_on_commit(RepoController *r, RepoCommitFn fn, void *userdata);

/* Check ns/name now, due or not (a webhook, the API): queued, returns at
 * once. Thread-safe. */
void repo_check_soon(RepoController *r, const char *ns, const char *name);

/* The active Repos of namespace ns that watch branch of the GitHub
 * repository full_name ("acme/site") or of one of its clone urls
 * (NULL-terminated), as a new array of names. */
json_t *repo_match_push(RepoController *r, const char *ns, const char *full_name, const char *const *urls,
                        const char *branch);

/* `rprctl check repo`: checks now (status written as by the controller),
 * then fetches the branch into a temporary directory, reports what `git
 * status` and the head commit say there, and removes it. Blocks. 0 with
 * *ret_report (new reference) even when the check or the fetch failed (the
 * report says so and why); -ENOENT if absent, -EPERM if inactive. */
int repo_inspect(RepoController *r, const char *ns, const char *name, json_t **ret_report);

/* One manifest file of a commit (path in the repository, blob id,
 * content); data NULL when it is larger than the bound (len is its size).
 * Return < 0 to stop the walk. */
typedef int (*RepoFileFn)(void *userdata, const char *path, const char *blob_id, const char *data, size_t len);

/* Reads the .yaml, .yml and .json files under dir (recursively) at commit
 * sha of Repo ns/name, from the Repo's bare cache, fetching the branch
 * there (with the Repo's credentials and, for GitHub, the clone URL its
 * API gives) when the cache lacks the commit. Blocks. -ENXIO when the Repo
 * is absent, -ENOENT when dir is, -EIO when git fails: each with
 * *ret_error (caller frees; never a secret); fn's own negative return as
 * is. */
int repo_read_tree(RepoController *r, const char *ns, const char *name, const char *sha, const char *dir,
                   size_t max_file_bytes, RepoFileFn fn, void *userdata, char **ret_error);
