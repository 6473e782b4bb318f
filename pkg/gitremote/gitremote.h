/* gitremote: what rpr asks of any git remote, on libgit2.
 *
 * Change detection lists the remote's refs without cloning (ls-remote):
 * the branch's head and the list of branches. A commit's time, author and
 * message are not in the refs, so when the head changes the branch alone is
 * fetched into a bare cache repository of rpr's own (incremental after the
 * first time) and the commit read from there. inspect fetches the branch
 * into a fresh temporary repository, checks it out, reports what `git
 * status` and `git log -1` would say, and removes it: the end-to-end proof
 * that rpr can reach and read the repository.
 *
 * Credentials: a token goes as HTTP basic auth (user x-access-token), an
 * ssh key (in memory, written to a 0600 temporary file when libgit2 needs a
 * path) for ssh:// and scp-like URLs. No message this module writes ever
 * contains a secret, and URLs are printed without any userinfo. Thread-safe;
 * gitremote_init() once before use. */
#pragma once

#include "base/base.h"

/* git_libgit2_init(), once; every operation calls it first, so calling it
 * is only needed to fail early. */
int gitremote_init(void);
void gitremote_shutdown(void);

typedef struct GitAuth {
        const char *token;   /* https basic auth password (user x-access-token); NULL: none */
        const char *ssh_key; /* private key text (OpenSSH/PEM); NULL: none */
        size_t ssh_key_len;
        const char *ssh_user;/* NULL: the URL's user, else "git" */
} GitAuth;

typedef enum GitError {
        GITREMOTE_OK,
        GITREMOTE_AUTH,             /* credentials refused or missing */
        GITREMOTE_NOT_FOUND,        /* no repository at the URL */
        GITREMOTE_BRANCH_NOT_FOUND, /* the repository has no such branch */
        GITREMOTE_NETWORK,          /* cannot connect, timeout */
        GITREMOTE_FAILED,           /* anything else libgit2 reports */
        GITREMOTE_NOT_ALLOWED,      /* the address is refused by --allow-networks; never contacted */
} GitError;

/* "AuthenticationFailed", "NotFound", "BranchNotFound", "NetworkError", "GitError",
 * "NetworkNotAllowed"; "OK". */
const char *gitremote_error_reason(GitError e);

typedef struct GitResult {
        GitError error;
        char message[512]; /* what and where, for a person; never a secret */
} GitResult;

/* ls-remote: the head of refs/heads/<branch> (*ret_sha, 40 hex, caller
 * frees) and every branch name (*ret_branches, new reference, array of
 * strings, sorted). Returns 0 or -EIO with ret set. */
int gitremote_ls(const char *url, const char *branch, const GitAuth *auth, char **ret_sha, json_t **ret_branches,
                 GitResult *ret);

/* {"sha","time","author","message"} of commit sha on branch, fetching the
 * branch into the bare cache repository cache_dir (created when absent)
 * first if it does not have the commit. time is the committer time, RFC
 * 3339 UTC; message the first line, at most 200 bytes. Returns 0 or -EIO. */
int gitremote_commit(const char *url, const char *branch, const GitAuth *auth, const char *cache_dir,
                     const char *sha, json_t **ret_commit, GitResult *ret);

/* Fetches branch into a new temporary directory under tmp_parent, checks
 * it out and reports, then removes the directory (also on failure):
 *   {"url": (without userinfo), "branch", "commit": {sha,time,author,message},
 *    "status": "On branch main\nnothing to commit, working tree clean\n",
 *    "files": N (in the checkout), "bytes": N (received),
 *    "durationSeconds": 0.123}
 * Returns 0 or -EIO with ret set. */
int gitremote_inspect(const char *url, const char *branch, const GitAuth *auth, const char *tmp_parent,
                      json_t **ret_report, GitResult *ret);

/* url with any user:password@ removed (caller frees), for messages. */
char *gitremote_url_display(const char *url);

/* One file of a tree: its path in the repository, its blob id (40 hex:
 * the same id is the same content) and its content. data is NULL (len the
 * blob's size) when the blob is larger than max_file_bytes: the caller
 * says so. Return < 0 to stop the walk (returned as is). */
typedef int (*GitFileFn)(void *userdata, const char *path, const char *blob_id, const char *data, size_t len);

/* Calls fn, in path order, for every blob under directory dir ("." or ""
 * for the root; walked recursively) of commit sha whose name ends in one
 * of exts (NULL-terminated), fetching branch into the bare cache
 * repository cache_dir first when the cache lacks the commit. Symbolic
 * links and submodules are skipped. -ENOENT with ret set when dir is not
 * a directory at that commit; -EIO with ret set on any git failure. */
int gitremote_read_tree(const char *url, const char *branch, const GitAuth *auth, const char *cache_dir,
                        const char *sha, const char *dir, const char *const *exts, size_t max_file_bytes,
                        GitFileFn fn, void *userdata, GitResult *ret);
