/* gitremote-fetch: fetching one branch — into rpr's bare cache, to read a
 * commit, or into a throwaway checkout, to prove the repository can be
 * fetched and show it as git would (see gitremote.h). */
#define _XOPEN_SOURCE 700
#include <ftw.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gitremote/gitremote-private.h"

#define MESSAGE_MAX 200

static int fetch_branch(git_repository *repo, const char *url, const char *branch, const char *dest_prefix,
                        const GitAuth *auth, size_t *ret_bytes, GitResult *ret) {
        _cleanup_free_ char *spec = xasprintf("+refs/heads/%s:%s%s", branch, dest_prefix, branch);
        char *specs[] = {spec};
        git_strarray refspecs = {specs, 1};
        GitCreds creds = {.auth = auth};
        git_fetch_options opts;
        git_remote *remote = NULL;
        int k;

        git_fetch_options_init(&opts, GIT_FETCH_OPTIONS_VERSION);
        gitremote_callbacks(&opts.callbacks, &creds);
        opts.download_tags = GIT_REMOTE_DOWNLOAD_TAGS_NONE;
        opts.update_fetchhead = 0;
        k = git_remote_create_anonymous(&remote, repo, url);
        if (k >= 0)
                k = git_remote_fetch(remote, &refspecs, &opts, NULL);
        if (k < 0)
                gitremote_fail(ret, "cannot fetch from", url, k, &creds);
        else if (ret_bytes)
                *ret_bytes = git_remote_stats(remote)->received_bytes;
        git_remote_free(remote);
        gitremote_creds_clear(&creds);
        return k < 0 ? -EIO : 0;
}

/* {sha, time, author, message} of a commit. */
static json_t *commit_json(const git_commit *c) {
        char sha[GIT_OID_HEXSZ + 1], when[RFC3339_MAX];
        const git_signature *author = git_commit_author(c), *committer = git_commit_committer(c);
        const char *msg = git_commit_message(c) ?: "";
        /* The repository's author wrote these: flat, cut between characters. */
        _cleanup_free_ char *subject = text_flat_dup(msg, MIN(strcspn(msg, "\r\n"), (size_t) MESSAGE_MAX));
        _cleanup_free_ char *who = text_flat_dup(author->name, 256);

        git_oid_tostr(sha, sizeof sha, git_commit_id(c));
        time_format_rfc3339((uint64_t) committer->when.time * USEC_PER_SEC, when);
        return json_pack("{s:s, s:s, s:s, s:s}", "sha", sha, "time", when, "author", who, "message",
                         subject);
}

static int open_cache(const char *cache_dir, git_repository **ret, GitResult *res) {
        _cleanup_free_ char *parent = xstrdup(cache_dir);
        char *slash = strrchr(parent, '/');

        if (git_repository_open_bare(ret, cache_dir) >= 0)
                return 0;
        if (slash) {
                *slash = '\0';
                (void) mkdir_p(parent, 0700);
        }
        if (git_repository_init(ret, cache_dir, 1) >= 0)
                return 0;
        res->error = GITREMOTE_FAILED;
        snprintf(res->message, sizeof res->message, "cannot create the cache repository %s: %s", cache_dir,
                 git_error_last() ? git_error_last()->message : "unknown error");
        return -EIO;
}

int gitremote_cache_commit(const char *url, const char *branch, const GitAuth *auth, const char *cache_dir,
                           const char *sha, git_repository **ret_repo, git_commit **ret_commit, GitResult *ret) {
        git_repository *repo = NULL;
        git_commit *c = NULL;
        git_oid oid;

        *ret = (GitResult){0};
        if (gitremote_init() < 0 || git_oid_fromstr(&oid, sha) < 0) {
                ret->error = GITREMOTE_FAILED;
                snprintf(ret->message, sizeof ret->message, "\"%s\" is not a commit id", sha);
                return -EIO;
        }
        if (open_cache(cache_dir, &repo, ret) < 0)
                return -EIO;
        if (git_commit_lookup(&c, repo, &oid) < 0) {
                if (fetch_branch(repo, url, branch, "refs/heads/", auth, NULL, ret) < 0) {
                        git_repository_free(repo);
                        return -EIO;
                }
                if (git_commit_lookup(&c, repo, &oid) < 0) {
                        _cleanup_free_ char *shown = gitremote_url_display(url);
                        ret->error = GITREMOTE_FAILED;
                        snprintf(ret->message, sizeof ret->message,
                                 "commit %s is not on branch %s of %s (any more)", sha, branch, shown);
                        git_repository_free(repo);
                        return -EIO;
                }
        }
        *ret_repo = repo;
        *ret_commit = c;
        return 0;
}

int gitremote_commit(const char *url, const char *branch, const GitAuth *auth, const char *cache_dir,
                     const char *sha, json_t **ret_commit, GitResult *ret) {
        git_repository *repo = NULL;
        git_commit *c = NULL;

        if (gitremote_cache_commit(url, branch, auth, cache_dir, sha, &repo, &c, ret) < 0)
                return -EIO;
        *ret_commit = commit_json(c);
        git_commit_free(c);
        git_repository_free(repo);
        return 0;
}

/* ---- inspect ------------------------------------------------------------------------ */

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        (void) st;
        (void) flag;
        (void) ftw;
        return remove(path) < 0 ? -1 : 0;
}

static void remove_tree(const char *dir) {
        (void) nftw(dir, remove_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* Checks out the fetched branch as a local one tracking origin and says
 * what `git status` would. */
static int checkout(git_repository *repo, const char *branch, const char *url, json_t *report, GitResult *ret) {
        _cleanup_free_ char *remote_ref = xasprintf("refs/remotes/origin/%s", branch);
        _cleanup_free_ char *local_ref = xasprintf("refs/heads/%s", branch);
        git_checkout_options co;
        git_status_options so;
        git_status_list *list = NULL;
        git_commit *c = NULL;
        git_index *index = NULL;
        git_oid oid;
        int k;

        git_checkout_options_init(&co, GIT_CHECKOUT_OPTIONS_VERSION);
        co.checkout_strategy = GIT_CHECKOUT_FORCE;
        git_status_options_init(&so, GIT_STATUS_OPTIONS_VERSION);
        so.flags = GIT_STATUS_OPT_INCLUDE_UNTRACKED;
        k = git_reference_name_to_id(&oid, repo, remote_ref);
        if (k >= 0)
                k = git_commit_lookup(&c, repo, &oid);
        if (k >= 0)
                k = git_reference_create(&(git_reference *){NULL}, repo, local_ref, &oid, 1, "rpr check");
        if (k >= 0)
                k = git_repository_set_head(repo, local_ref);
        if (k >= 0)
                k = git_checkout_head(repo, &co);
        if (k >= 0)
                k = git_status_list_new(&list, repo, &so);
        if (k >= 0)
                k = git_repository_index(&index, repo);
        if (k < 0) {
                gitremote_fail(ret, "cannot check out what was fetched from", url, k, &(GitCreds){0});
                ret->error = GITREMOTE_FAILED;
        } else {
                size_t changes = git_status_list_entrycount(list);
                _cleanup_free_ char *status =
                        changes == 0 ? xasprintf("On branch %s\nYour branch is up to date with 'origin/%s'.\n\n"
                                                 "nothing to commit, working tree clean\n",
                                                 branch, branch)
                                     : xasprintf("On branch %s\n%zu changes after checkout\n", branch, changes);
                json_object_set_new(report, "commit", commit_json(c));
                json_object_set_new(report, "status", json_string(status));
                json_object_set_new(report, "files", json_integer((json_int_t) git_index_entrycount(index)));
        }
        git_index_free(index);
        git_status_list_free(list);
        git_commit_free(c);
        return k < 0 ? -EIO : 0;
}

int gitremote_inspect(const char *url, const char *branch, const GitAuth *auth, const char *tmp_parent,
                      json_t **ret_report, GitResult *ret) {
        _cleanup_free_ char *dir = xasprintf("%s/rpr-check-XXXXXX", tmp_parent), *shown = gitremote_url_display(url);
        git_repository *repo = NULL;
        uint64_t start = now_mono_usec();
        size_t bytes = 0;
        int k;

        *ret = (GitResult){0};
        if (gitremote_init() < 0 || !mkdtemp(dir)) {
                ret->error = GITREMOTE_FAILED;
                snprintf(ret->message, sizeof ret->message, "cannot make a temporary directory in %s: %s",
                         tmp_parent, strerror(errno));
                return -EIO;
        }
        json_t *report = json_pack("{s:s, s:s}", "url", shown, "branch", branch);
        k = git_repository_init(&repo, dir, 0);
        if (k < 0)
                k = gitremote_fail(ret, "cannot create a temporary repository for", url, k, &(GitCreds){0});
        if (k >= 0)
                k = fetch_branch(repo, url, branch, "refs/remotes/origin/", auth, &bytes, ret);
        if (k >= 0)
                k = checkout(repo, branch, url, report, ret);
        git_repository_free(repo);
        remove_tree(dir);
        if (k < 0) {
                json_decref(report);
                return -EIO;
        }
        json_object_set_new(report, "bytes", json_integer((json_int_t) bytes));
        json_object_set_new(report, "durationSeconds",
                            json_real((double) (now_mono_usec() - start) / USEC_PER_SEC));
        *ret_report = report;
        return 0;
}
