/* repo-private.h: what the files of pkg/repo share: the controller's state,
 * a Repo's spec as the checks read it, and one check's outcome. */
#pragma once

#include <pthread.h>

#include "gitremote/gitremote.h"
#include "repo/repo.h"
#include "token/token.h"

typedef struct RepoCallback {
        RepoCommitFn fn;
        void *userdata;
} RepoCallback;

struct RepoController {
        Store *store;
        Controller *controller;
        TokenController *tokens;
        GithubClient *github;
        char *cache_dir;
        LogFile *activity;

        pthread_mutex_t lock; /* guards below */
        json_t *forced;       /* "ns/name" -> true: check at the next reconcile */
        RepoCallback *callbacks;
        size_t n_callbacks;
};

/* A Repo's spec with defaults; strings borrowed from the object except
 * owner and name, which may come from parsing url. */
typedef struct RepoSpec {
        const char *ns, *name;
        bool github; /* provider github, else git */
        char *gh_owner, *gh_name;
        const char *url, *api_url, *branch, *token_ref;
        uint64_t interval_usec;
        bool active;
} RepoSpec;

/* Reads obj's spec; -EINVAL with *ret_error (caller frees) when a github
 * Repo names no repository. */
int repo_spec_read(const json_t *obj, RepoSpec *ret, char **ret_error);
void repo_spec_clear(RepoSpec *s);

/* What one check found. */
typedef struct RepoOutcome {
        bool ok;
        const char *reason; /* "Checked" or a failure reason */
        char message[512];
        json_t *commit;   /* owned: {sha, time, author, message}; NULL on failure */
        json_t *branches; /* owned; NULL: keep the ones recorded */
        uint64_t when_usec;
        uint64_t retry_at_usec; /* rate limited: not before then */
        bool transient;         /* worth retrying soon (network, server errors) */
        bool has_token;
        json_int_t token_generation;
} RepoOutcome;

/* Looks at the branch. old_commit (may be NULL) is the lastCommit recorded,
 * which a git Repo reuses when the head did not move. */
void repo_check_run(RepoController *r, const RepoSpec *spec, const json_t *old_commit, RepoOutcome *o);
void repo_outcome_clear(RepoOutcome *o);

/* The generation of Token ns/name, 0 when there is none. */
json_int_t repo_token_generation(RepoController *r, const char *ns, const char *name);

/* The secret of spec.tokenRef, as gitremote wants it too. */
typedef struct RepoCreds {
        TokenSecret secret; /* data NULL when there is no tokenRef */
        GitAuth git;
} RepoCreds;

/* Reads the Token spec.tokenRef names (if any). When it cannot be used,
 * fills o's reason and message and returns a negative errno. */
int repo_creds_read(RepoController *r, const RepoSpec *spec, RepoCreds *ret, RepoOutcome *o);
void repo_creds_clear(RepoCreds *c);

/* A check of the stored Repo obj now, as the controller does it: status
 * written, a new commit announced. */
int repo_check_object_now(RepoController *r, const json_t *obj, const RepoSpec *spec);

/* Where to fetch from: a git Repo's url; a GitHub repository's clone_url,
 * as its API says (Enterprise hosts, renames). Caller frees; NULL with
 * *res set when GitHub cannot say. */
typedef struct GithubResult GithubResult;
char *repo_clone_url(RepoController *r, const RepoSpec *spec, const RepoCreds *creds, GithubResult *res);

/* The bare cache of Repo ns/name (caller frees). */
char *repo_cache_path(RepoController *r, const char *ns, const char *name);
