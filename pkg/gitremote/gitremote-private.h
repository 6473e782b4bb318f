/* gitremote-private.h: what the files of pkg/gitremote share: credentials
 * for one operation and the translation of libgit2's errors. */
#pragma once

#include <git2.h>

#include "gitremote/gitremote.h"

/* The credentials of one operation (the callbacks' payload). */
typedef struct GitCreds {
        const GitAuth *auth; /* may be NULL */
        unsigned tried; /* GIT_CREDENTIAL_* kinds answered already */
        bool refused;
        char *key_dir, *key_path; /* the ssh key's temporary file */
} GitCreds;

void gitremote_callbacks(git_remote_callbacks *cb, GitCreds *creds);
/* Removes the key file. */
void gitremote_creds_clear(GitCreds *c);

/* Fills ret from libgit2's last error: "<what> <url>: <libgit2's text>",
 * the url without userinfo. Returns -EIO. */
int gitremote_fail(GitResult *ret, const char *what, const char *url, int code, const GitCreds *creds);

/* Commit sha in the bare cache repository cache_dir (created when absent),
 * fetching branch from url first when the cache lacks it. Both results are
 * the caller's to free. -EIO with ret set. */
int gitremote_cache_commit(const char *url, const char *branch, const GitAuth *auth, const char *cache_dir,
                           const char *sha, git_repository **ret_repo, git_commit **ret_commit, GitResult *ret);
