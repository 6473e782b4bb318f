/* runner-spec: a Runner's spec, the GitHub scope it registers in, and the
 * runner release it installs.
 *
 * A repo Runner takes owner, name and apiURL from its Repo (provider
 * github); an org Runner has spec.org and spec.apiURL. The release is
 * fetched by rprd once per sha256, verified, and kept under
 * STATE/cache/runners, so that hosts need no internet. */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "github/github.h"
#include "runner/runner-private.h"
#include "store/store.h"

#define DEFAULT_REGISTRATION_TIMEOUT_USEC (5 * 60 * USEC_PER_SEC)
#define DEFAULT_COMMAND_TIMEOUT_USEC (2 * 60 * USEC_PER_SEC)
#define DEFAULT_SYNC_USEC (30 * USEC_PER_SEC)
#define DEFAULT_SCALE_DOWN_DELAY_USEC (5 * 60 * USEC_PER_SEC)
#define DEFAULT_POLL_USEC (60 * USEC_PER_SEC)
#define RELEASE_MAX (1024u * 1024 * 1024)
#define GITHUB_API "https://api.github.com"

void runner_spec_read(const json_t *obj, RunnerSpec *ret) {
        const json_t *meta = json_object_get(obj, "metadata");
        const json_t *spec = json_object_get(obj, "spec");
        const json_t *as = json_object_get(spec, "autoscale");

        *ret = (RunnerSpec){
                .ns = json_str_at(meta, "namespace"),
                .name = json_str_at(meta, "name"),
                .repo = json_str_at(spec, "repo"),
                .org = json_str_at(spec, "org"),
                .token_ref = json_str_at(spec, "tokenRef"),
                .server = json_str_at(spec, "server"),
                .match_labels = json_object_get(json_object_get(spec, "servers"), "matchLabels"),
                .replicas = json_int_at(spec, "replicas", 1),
                .labels = json_object_get(spec, "labels"),
                .ephemeral = !json_is_false(json_object_get(spec, "ephemeral")),
                .mode = json_str_at(spec, "mode") ?: "native",
                .version = json_str_at(spec, "version") ?: "latest",
                .package = json_object_get(spec, "package"),
                .api_url = json_str_at(spec, "apiURL"),
                .container = json_object_get(spec, "container"),
                .group = json_str_at(spec, "runnerGroup") ?: "Default",
                .install_dir = json_str_at(spec, "installDir") ?: "/opt/actions-runner",
                .registration_timeout_usec =
                        json_duration_at(spec, "registrationTimeout", DEFAULT_REGISTRATION_TIMEOUT_USEC),
                .sync_interval_usec = json_duration_at(spec, "syncInterval", DEFAULT_SYNC_USEC),
                .command_timeout_usec = json_duration_at(spec, "commandTimeout", DEFAULT_COMMAND_TIMEOUT_USEC),
                .autoscale = json_is_object(as),
                .as_min = json_int_at(as, "min", 0),
                .as_max = json_int_at(as, "max", 0),
                .as_idle = json_int_at(as, "idle", 0),
                .scale_down_delay_usec = json_duration_at(as, "scaleDownDelay", DEFAULT_SCALE_DOWN_DELAY_USEC),
                .poll_interval_usec = json_duration_at(as, "interval", DEFAULT_POLL_USEC),
                .webhook_token_ref = json_str_at(as, "webhookTokenRef"),
        };
}

const char *runner_spec_problem(const RunnerSpec *sp) {
        if (sp->autoscale && sp->as_min > sp->as_max)
                return "spec.autoscale.min is larger than spec.autoscale.max";
        if (STREQ(sp->mode, "container") && !json_str_at(sp->container, "image"))
                return "spec.container.image is required with mode: container";
        if (!STREQ(sp->version, "latest") && !json_str_at(sp->package, "url"))
                return "spec.version other than latest needs spec.package (url and sha256): GitHub's downloads list "
                       "offers only the latest release";
        return NULL;
}

void runner_scope_clear(RunnerScope *s) {
        free(s->api_url);
        free(s->owner);
        free(s->repo_name);
        free(s->html_url);
        free(s->key);
        free(s->token_name);
        token_secret_clear(&s->secret);
        *s = (RunnerScope){0};
}

/* What config.sh --url names: the web address of the repository or
 * organisation, on github.com or a GitHub Enterprise server
 * (https://HOST/api/v3 -> https://HOST); another API (a test's) is its own. */
static char *html_url(const char *api, const char *owner, const char *name) {
        size_t n = strlen(api);

        while (n > 0 && api[n - 1] == '/')
                n--;
        if (STREQ(api, GITHUB_API))
                return name ? xasprintf("https://github.com/%s/%s", owner, name)
                            : xasprintf("https://github.com/%s", owner);
        if (n > 7 && strncmp(api + n - 7, "/api/v3", 7) == 0)
                n -= 7;
        return name ? xasprintf("%.*s/%s/%s", (int) n, api, owner, name)
                    : xasprintf("%.*s/%s", (int) n, api, owner);
}

/* owner, name and apiURL of the Repo spec.repo names. */
int runner_scope_from_repo(RunnerController *rc, const RunnerSpec *sp, RunnerScope *s,
                           const char **ret_reason, char **ret_error) {
        _cleanup_json_ json_t *repo = NULL;
        int k = store_get_json(rc->store, "Repo", sp->ns, sp->repo, &repo);

        if (k < 0) {
                *ret_reason = "MissingReference";
                *ret_error = xasprintf("spec.repo: no Repo %s in namespace %s", sp->repo, sp->ns);
                return k == -ENOENT ? -ENOENT : k;
        }
        const json_t *rs = json_object_get(repo, "spec");
        const char *provider = json_str_at(rs, "provider");
        if (provider && !STREQ(provider, "github")) {
                *ret_reason = "InvalidSpec";
                *ret_error = xasprintf("spec.repo: Repo %s is provider %s; runners need a github Repo",
                                       sp->repo, provider);
                return -EINVAL;
        }
        if (json_str_at(rs, "owner") && json_str_at(rs, "name")) {
                s->owner = xstrdup(json_str_at(rs, "owner"));
                s->repo_name = xstrdup(json_str_at(rs, "name"));
        } else if (!json_str_at(rs, "url") ||
                   github_parse_url(json_str_at(rs, "url"), &s->owner, &s->repo_name) < 0) {
                *ret_reason = "InvalidSpec";
                *ret_error = xasprintf("spec.repo: Repo %s names no GitHub repository", sp->repo);
                return -EINVAL;
        }
        s->api_url = xstrdup(json_str_at(rs, "apiURL") ?: GITHUB_API);
        return 0;
}

int runner_scope_read(RunnerController *rc, const RunnerSpec *sp, RunnerScope *ret, const char **ret_reason,
                      char **ret_error) {
        static const char *const types[] = {"github", NULL};
        RunnerScope s = {0};
        int k;

        if (sp->repo) {
                k = runner_scope_from_repo(rc, sp, &s, ret_reason, ret_error);
                if (k < 0) {
                        runner_scope_clear(&s);
                        return k;
                }
        } else {
                s.owner = xstrdup(sp->org ?: "");
                s.api_url = xstrdup(sp->api_url ?: GITHUB_API);
        }
        s.html_url = html_url(s.api_url, s.owner, s.repo_name);
        s.key = xasprintf("%s %s/%s", s.api_url, s.owner, s.repo_name ?: "");
        s.token_ns = sp->ns;
        s.token_name = xstrdup(sp->token_ref ?: "");
        k = token_secret_read(rc->store, sp->ns, sp->token_ref, types, "spec.tokenRef", &s.secret,
                              ret_reason, ret_error);
        if (k < 0) {
                runner_scope_clear(&s);
                return k;
        }
        *ret = s;
        return 0;
}

/* ---- the release ------------------------------------------------------------- */

/* Whether the file at path has sha256 want. */
static bool file_sha256_is(const char *path, const char *want) {
        _cleanup_free_ char *data = NULL;
        size_t n;
        char got[65];

        if (read_file(path, RELEASE_MAX, &data, &n) < 0)
                return false;
        sha256_hex(data, n, got);
        return strcasecmp(got, want) == 0;
}

/* Where the release comes from: spec.package, else GitHub's downloads. */
static int release_source(RunnerController *rc, const RunnerSpec *sp, const RunnerScope *scope,
                          char **ret_url, char **ret_sha, char **ret_error) {
        const char *url = json_str_at(sp->package, "url"), *sha = json_str_at(sp->package, "sha256");
        GithubResult res;

        if (url) {
                if (!sha) {
                        *ret_error = xstrdup("spec.package.sha256 is required with spec.package.url");
                        return -EINVAL;
                }
                *ret_url = xstrdup(url);
                *ret_sha = xstrdup(sha);
                return 0;
        }
        if (!STREQ(sp->version, "latest")) {
                *ret_error =
                        xasprintf("spec.version %s needs spec.package (url and sha256): GitHub's downloads "
                                  "list offers only the latest release",
                                  sp->version);
                return -EINVAL;
        }
        GithubRepoRef ref = {scope->api_url, scope->owner, scope->repo_name, scope->secret.data, NULL};
        if (github_runner_download(rc->github, &ref, "linux", "x64", ret_url, ret_sha, &res) < 0) {
                *ret_error = xasprintf("cannot find the runner release: %s", res.message);
                return -EIO;
        }
        if (!*ret_sha) {
                free(*ret_url);
                *ret_error = xstrdup("GitHub gave no sha256 for the runner release; set spec.package");
                return -EINVAL;
        }
        return 0;
}

/* "actions-runner-linux-x64-2.321.0.tar.gz" -> "2.321.0". */
static char *version_of(const char *url) {
        const char *base = strrchr(url, '/') ? strrchr(url, '/') + 1 : url;
        const char *v = strstr(base, "-x64-");
        const char *end = strstr(base, ".tar.gz");

        if (!v || !end || end <= v + 5)
                return xstrdup("unknown");
        return xstrndup(v + 5, end - (v + 5));
}

static int release_fetch(RunnerController *rc, const char *url, const char *sha, const char *path,
                         char **ret_error) {
        _cleanup_free_ char *tmp = xasprintf("%s.part", path);
        GithubResult res;

        if (startswith(url, "file://")) {
                if (!file_sha256_is(url + 7, sha)) {
                        *ret_error = xasprintf(
                                "spec.package.url %s: cannot be read, or its sha256 is not %s", url, sha);
                        return -EINVAL;
                }
                _cleanup_free_ char *data = NULL;
                size_t n;
                int k = read_file(url + 7, RELEASE_MAX, &data, &n);
                if (k >= 0)
                        k = write_file_atomic(path, data, n, 0600);
                if (k < 0)
                        *ret_error =
                                xasprintf("cannot keep the runner release in %s: %s", path, strerror(-k));
                return k;
        }
        if (github_download(rc->github, url, tmp, RELEASE_MAX, &res) < 0) {
                *ret_error = xasprintf("cannot download the runner release: %s", res.message);
                return -EIO;
        }
        if (!file_sha256_is(tmp, sha)) {
                (void) unlink(tmp);
                *ret_error = xasprintf("the runner release %s does not have the sha256 %s", url, sha);
                return -EBADMSG;
        }
        if (rename(tmp, path) < 0) {
                int k = -errno;
                *ret_error = xasprintf("cannot keep the runner release in %s: %s", path, strerror(-k));
                return k;
        }
        return 0;
}

int runner_release_get(RunnerController *rc, const RunnerSpec *sp, const RunnerScope *scope, char **ret_path,
                       char **ret_sha256, char **ret_version, char **ret_error) {
        _cleanup_free_ char *url = NULL, *sha = NULL;
        int k;

        k = release_source(rc, sp, scope, &url, &sha, ret_error);
        if (k < 0)
                return k;
        for (char *p = sha; *p; p++)
                *p = (char) (*p >= 'A' && *p <= 'F' ? *p - 'A' + 'a' : *p);
        if (strspn(sha, "0123456789abcdef") != 64 || sha[64]) {
                *ret_error = xasprintf("the runner release's sha256 \"%.80s\" is not 64 hex digits", sha);
                return -EINVAL;
        }
        _cleanup_free_ char *path = xasprintf("%s/%s.tar.gz", rc->release_dir, sha);
        pthread_mutex_lock(&rc->release_lock);
        k = access(path, F_OK) == 0 ? 0 : release_fetch(rc, url, sha, path, ret_error);
        pthread_mutex_unlock(&rc->release_lock);
        if (k < 0)
                return k;
        *ret_version = version_of(url);
        *ret_path = TAKE_PTR(path);
        *ret_sha256 = TAKE_PTR(sha);
        return 0;
}
