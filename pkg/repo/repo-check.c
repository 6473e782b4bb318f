/* repo-check: one look at a Repo's branch, through the GitHub API or
 * libgit2, turned into an outcome the status is written from.
 *
 * Failures keep the reason their source gave (github_error_reason,
 * gitremote_error_reason); what the Token says comes first, so an expired
 * token reads TokenExpired rather than the 401 it would cause. */
#include <stdio.h>
#include <string.h>

#include "github/github.h"
#include "repo/repo-private.h"
#include "store/store.h"

#define DEFAULT_INTERVAL_USEC (24 * 3600 * USEC_PER_SEC)

void repo_spec_clear(RepoSpec *s) {
        free(s->gh_owner);
        free(s->gh_name);
        *s = (RepoSpec){0};
}

int repo_spec_read(const json_t *obj, RepoSpec *ret, char **ret_error) {
        const json_t *meta = json_object_get(obj, "metadata");
        const json_t *spec = json_object_get(obj, "spec");
        const char *provider = json_str_at(spec, "provider");
        const char *interval = json_str_at(spec, "interval");
        RepoSpec s = {
                .ns = json_str_at(meta, "namespace"),
                .name = json_str_at(meta, "name"),
                .github = !provider || STREQ(provider, "github"),
                .url = json_str_at(spec, "url"),
                .api_url = json_str_at(spec, "apiURL"),
                .branch = json_str_at(spec, "branch") ?: "main",
                .token_ref = json_str_at(spec, "tokenRef"),
                .interval_usec = DEFAULT_INTERVAL_USEC,
                .active = !json_is_false(json_object_get(spec, "active")),
        };

        if (interval)
                (void) duration_parse(interval, &s.interval_usec);
        if (!s.github) {
                if (!s.url) {
                        *ret_error = xstrdup("spec.url is required for provider git");
                        return -EINVAL;
                }
        } else if (json_str_at(spec, "owner") && json_str_at(spec, "name")) {
                s.gh_owner = xstrdup(json_str_at(spec, "owner"));
                s.gh_name = xstrdup(json_str_at(spec, "name"));
        } else if (!s.url || github_parse_url(s.url, &s.gh_owner, &s.gh_name) < 0) {
                *ret_error = s.url ? xasprintf("spec.url %s is not a GitHub repository URL "
                                               "(https://github.com/OWNER/NAME)",
                                               s.url)
                                   : xstrdup("a github Repo needs spec.url or spec.owner and spec.name");
                return -EINVAL;
        }
        *ret = s;
        return 0;
}

void repo_outcome_clear(RepoOutcome *o) {
        json_decref(o->commit);
        json_decref(o->branches);
        *o = (RepoOutcome){0};
}

static void fail(RepoOutcome *o, const char *reason, const char *message) {
        o->ok = false;
        o->reason = reason;
        snprintf(o->message, sizeof o->message, "%s", message);
}

json_int_t repo_token_generation(RepoController *r, const char *ns, const char *name) {
        _cleanup_json_ json_t *tok = NULL;

        if (!name || store_get_json(r->store, "Token", ns, name, &tok) < 0)
                return 0;
        return json_int_at(json_object_get(tok, "metadata"), "generation", 0);
}

void repo_creds_clear(RepoCreds *c) {
        token_secret_clear(&c->secret);
        *c = (RepoCreds){0};
}

int repo_creds_read(RepoController *r, const RepoSpec *spec, RepoCreds *ret, RepoOutcome *o) {
        static const char *const github_types[] = {"github", NULL};
        static const char *const git_types[] = {"github", "ssh-key", NULL};
        _cleanup_free_ char *error = NULL;
        const char *reason;
        int k;

        *ret = (RepoCreds){0};
        if (!spec->token_ref)
                return 0;
        o->has_token = true;
        o->token_generation = repo_token_generation(r, spec->ns, spec->token_ref);
        k = token_secret_read(r->store, spec->ns, spec->token_ref, spec->github ? github_types : git_types,
                              "spec.tokenRef", &ret->secret, &reason, &error);
        if (k < 0) {
                fail(o, reason, error);
                return k;
        }
        _cleanup_json_ json_t *tok = NULL;
        const char *type = "github";
        if (store_get_json(r->store, "Token", spec->ns, spec->token_ref, &tok) >= 0)
                type = json_str_at(json_object_get(tok, "spec"), "type") ?: type;
        if (STREQ(type, "ssh-key"))
                ret->git = (GitAuth){.ssh_key = ret->secret.data, .ssh_key_len = ret->secret.len};
        else
                ret->git = (GitAuth){.token = ret->secret.data};
        return 0;
}

/* ---- github ---------------------------------------------------------------- */

static void github_failed(RepoOutcome *o, const GithubResult *res) {
        fail(o, github_error_reason(res->error), res->message);
        o->retry_at_usec = res->error == GITHUB_RATE_LIMITED ? res->retry_at_usec : 0;
        o->transient = res->error == GITHUB_NETWORK || res->error == GITHUB_PROTOCOL;
}

/* What the answers told about the token: GitHub's expiry date, and that it
 * was used. */
static void github_note_token(RepoController *r, const RepoSpec *spec, const GithubResult *res) {
        if (!spec->token_ref || !res->requests)
                return;
        token_note_used(r->tokens, spec->ns, spec->token_ref);
        if (res->token_expires_usec)
                token_note_expiry(r->tokens, spec->ns, spec->token_ref, res->token_expires_usec);
}

static void check_github(RepoController *r, const RepoSpec *spec, const RepoCreds *creds, RepoOutcome *o) {
        _cleanup_free_ char *key = xasprintf("%s/%s", spec->ns, spec->name);
        GithubRepoRef ref = {spec->api_url, spec->gh_owner, spec->gh_name, creds->secret.data, key};
        GithubResult res;

        if (github_branch_head(r->github, &ref, spec->branch, &o->commit, &res) < 0) {
                github_note_token(r, spec, &res);
                github_failed(o, &res);
                return;
        }
        github_note_token(r, spec, &res);
        /* The branch list is for people choosing a branch: when it cannot be
         * read now, the one recorded before stays. */
        if (github_list_branches(r->github, &ref, &o->branches, &res) < 0)
                o->branches = NULL;
        github_note_token(r, spec, &res);
        o->ok = true;
}

/* ---- git ------------------------------------------------------------------- */

static void check_git(RepoController *r, const RepoSpec *spec, const RepoCreds *creds, const json_t *old_commit,
                      RepoOutcome *o) {
        _cleanup_free_ char *sha = NULL, *cache = NULL;
        GitResult res;

        if (gitremote_ls(spec->url, spec->branch, &creds->git, &sha, &o->branches, &res) < 0) {
                fail(o, gitremote_error_reason(res.error), res.message);
                o->transient = res.error == GITREMOTE_NETWORK;
                return;
        }
        o->ok = true;
        const char *old_sha = json_str_at(old_commit, "sha");
        if (old_sha && STREQ(old_sha, sha)) {
                o->commit = json_deep_copy(old_commit);
                return;
        }
        cache = repo_cache_path(r, spec->ns, spec->name);
        if (gitremote_commit(spec->url, spec->branch, &creds->git, cache, sha, &o->commit, &res) < 0) {
                /* The sha alone is the change; time, author and message are
                 * for people and can wait for the next look. */
                log_warning("repo %s/%s: cannot read commit %s: %s", spec->ns, spec->name, sha, res.message);
                o->commit = json_pack("{s:s}", "sha", sha);
        }
}

void repo_check_run(RepoController *r, const RepoSpec *spec, const json_t *old_commit, RepoOutcome *o) {
        RepoCreds creds;

        *o = (RepoOutcome){.when_usec = now_usec()};
        if (repo_creds_read(r, spec, &creds, o) < 0)
                return;
        if (spec->github)
                check_github(r, spec, &creds, o);
        else
                check_git(r, spec, &creds, old_commit, o);
        repo_creds_clear(&creds);
        if (o->ok)
                snprintf(o->message, sizeof o->message, "%s is at %.12s", spec->branch,
                         json_str_at(o->commit, "sha") ?: "?");
        if (o->ok)
                o->reason = "Checked";
}
