/* repo-inspect: the two questions others ask about Repos by content rather
 * than by name — which Repos does this GitHub push concern, and can rpr
 * really fetch this one (`rprctl check repo`). */
#include <string.h>
#include <strings.h>

#include "github/github.h"
#include "repo/repo-private.h"
#include "resource/resource.h"
#include "store/store.h"

/* ---- push matching ------------------------------------------------------------- */

/* URLs compare without a trailing ".git" or "/", case-insensitively (hosts
 * and GitHub names are). */
static bool url_same(const char *a, const char *b) {
        size_t la = strlen(a), lb = strlen(b);

        while (la > 0 && a[la - 1] == '/')
                la--;
        while (lb > 0 && b[lb - 1] == '/')
                lb--;
        if (la >= 4 && strncasecmp(a + la - 4, ".git", 4) == 0)
                la -= 4;
        if (lb >= 4 && strncasecmp(b + lb - 4, ".git", 4) == 0)
                lb -= 4;
        return la == lb && strncasecmp(a, b, la) == 0;
}

typedef struct PushMatch {
        const char *full_name, *branch;
        const char *const *urls;
        json_t *names;
} PushMatch;

static bool spec_watches(const RepoSpec *s, const PushMatch *m) {
        if (!STREQ(s->branch, m->branch))
                return false;
        if (s->github && m->full_name) {
                _cleanup_free_ char *full = xasprintf("%s/%s", s->gh_owner, s->gh_name);
                if (strcasecmp(full, m->full_name) == 0)
                        return true;
        }
        for (size_t i = 0; s->url && m->urls && m->urls[i]; i++)
                if (url_same(s->url, m->urls[i]))
                        return true;
        return false;
}

/* Whether text can be a Repo that watches m: its stored text must name
 * the repository. A cheap look that saves parsing a thousand Repos for a
 * push that concerns one. */
static bool may_match(const char *text, const PushMatch *m) {
        const char *slash = m->full_name ? strchr(m->full_name, '/') : NULL;

        if (slash && strcasestr(text, slash + 1))
                return true;
        for (size_t i = 0; m->urls && m->urls[i]; i++) {
                const char *tail = strrchr(m->urls[i], '/');
                _cleanup_free_ char *name = xstrdup(tail ? tail + 1 : m->urls[i]);
                if (endswith(name, ".git"))
                        name[strlen(name) - 4] = '\0';
                if (*name && strcasestr(text, name))
                        return true;
        }
        return false;
}

static void collect_push_match(const char *text, size_t len, void *userdata) {
        PushMatch *m = userdata;
        _cleanup_json_ json_t *obj = NULL;
        _cleanup_free_ char *error = NULL;
        RepoSpec s;

        if (!may_match(text, m))
                return;
        obj = json_loadb(text, len, 0, NULL);
        if (!obj || repo_spec_read(obj, &s, &error) < 0)
                return;
        if (s.active && spec_watches(&s, m))
                json_array_append_new(m->names, json_string(s.name));
        repo_spec_clear(&s);
}

json_t *repo_match_push(RepoController *r, const char *ns, const char *full_name, const char *const *urls,
                        const char *branch) {
        PushMatch m = {full_name, branch, urls, json_array()};

        (void) store_list(r->store, "Repo", ns, collect_push_match, &m, NULL);
        return m.names;
}

/* ---- inspect --------------------------------------------------------------------- */

char *repo_clone_url(RepoController *r, const RepoSpec *spec, const RepoCreds *creds, GithubResult *res) {
        GithubRepoRef ref = {spec->api_url, spec->gh_owner, spec->gh_name, creds->secret.data, NULL};
        char *url = NULL;

        if (!spec->github)
                return xstrdup(spec->url);
        if (github_clone_url(r->github, &ref, &url, res) < 0)
                return NULL;
        return url;
}

static char *clone_url(RepoController *r, const RepoSpec *spec, const RepoCreds *creds, json_t *report) {
        GithubResult res;
        char *url = repo_clone_url(r, spec, creds, &res);

        if (!url)
                json_object_set_new(report, "fetch", json_pack("{s:b, s:s, s:s}", "ok", 0, "reason",
                                                                github_error_reason(res.error), "message",
                                                                res.message));
        return url;
}

static void fetch_report(RepoController *r, const RepoSpec *spec, json_t *report) {
        _cleanup_free_ char *url = NULL, *tmp = xasprintf("%s/tmp", r->cache_dir);
        _cleanup_json_ json_t *fetched = NULL;
        RepoOutcome o = {0};
        RepoCreds creds;
        GitResult res;

        if (repo_creds_read(r, spec, &creds, &o) < 0) {
                json_object_set_new(report, "fetch",
                                    json_pack("{s:b, s:s, s:s}", "ok", 0, "reason", o.reason, "message", o.message));
                return;
        }
        url = clone_url(r, spec, &creds, report);
        if (url && mkdir_p(tmp, 0700) >= 0) {
                if (gitremote_inspect(url, spec->branch, &creds.git, tmp, &fetched, &res) < 0)
                        json_object_set_new(report, "fetch",
                                            json_pack("{s:b, s:s, s:s}", "ok", 0, "reason",
                                                      gitremote_error_reason(res.error), "message", res.message));
                else {
                        json_object_set_new(fetched, "ok", json_true());
                        json_object_set(report, "fetch", fetched);
                }
        }
        repo_creds_clear(&creds);
}

int repo_inspect(RepoController *r, const char *ns, const char *name, json_t **ret_report) {
        _cleanup_json_ json_t *obj = NULL, *after = NULL;
        _cleanup_free_ char *error = NULL;
        RepoSpec spec;
        int k;

        k = store_get_json(r->store, "Repo", ns, name, &obj);
        if (k < 0)
                return k;
        if (json_is_false(json_object_get(json_object_get(obj, "spec"), "active")))
                return -EPERM;

        json_t *report = json_pack("{s:s, s:s}", "namespace", ns, "name", name);
        if (repo_spec_read(obj, &spec, &error) < 0) {
                json_object_set_new(report, "check", json_pack("{s:b, s:s, s:s}", "ok", 0, "reason",
                                                                "InvalidSpec", "message", error));
                *ret_report = report;
                return 0;
        }
        json_object_set_new(report, "branch", json_string(spec.branch));
        (void) repo_check_object_now(r, obj, &spec);
        if (store_get_json(r->store, "Repo", ns, name, &after) >= 0) {
                const json_t *st = json_object_get(after, "status");
                const json_t *ready = condition_get(st, "Ready");
                json_object_set_new(report, "check",
                                    json_pack("{s:b, s:s?, s:s?}", "ok",
                                              STREQ(json_str_at(ready, "status") ?: "", "True"), "reason",
                                              json_str_at(ready, "reason"), "message", json_str_at(ready, "message")));
                if (json_object_get(st, "lastCommit"))
                        json_object_set(report, "lastCommit", json_object_get(st, "lastCommit"));
        }
        fetch_report(r, &spec, report);
        repo_spec_clear(&spec);
        *ret_report = report;
        return 0;
}
