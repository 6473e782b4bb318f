/* repo-tree: the manifests of a commit, for those that apply them (Sync).
 *
 * The Repo owns where its commits come from: the same credentials, clone
 * URL and bare cache as its checks, so a Sync never fetches on its own. */
#include <string.h>

#include "github/github.h"
#include "repo/repo-private.h"
#include "store/store.h"

char *repo_cache_path(RepoController *r, const char *ns, const char *name) {
        return xasprintf("%s/%s/%s.git", r->cache_dir, ns, name);
}

int repo_read_tree(RepoController *r, const char *ns, const char *name, const char *sha, const char *dir,
                   size_t max_file_bytes, RepoFileFn fn, void *userdata, char **ret_error) {
        static const char *const exts[] = {".yaml", ".yml", ".json", NULL};
        _cleanup_json_ json_t *obj = NULL;
        _cleanup_free_ char *error = NULL, *url = NULL, *cache = NULL;
        RepoOutcome o = {0};
        RepoCreds creds;
        RepoSpec spec;
        GithubResult gres;
        GitResult res;
        int k;

        if (store_get_json(r->store, "Repo", ns, name, &obj) < 0) {
                *ret_error = xasprintf("Repo %s/%s does not exist", ns, name);
                return -ENXIO;
        }
        if (repo_spec_read(obj, &spec, &error) < 0) {
                *ret_error = TAKE_PTR(error);
                return -EIO;
        }
        if (repo_creds_read(r, &spec, &creds, &o) < 0) {
                *ret_error = xstrdup(o.message);
                repo_spec_clear(&spec);
                return -EIO;
        }
        url = repo_clone_url(r, &spec, &creds, &gres);
        if (!url) {
                *ret_error = xasprintf("cannot find the clone URL: %s", gres.message);
                k = -EIO;
        } else {
                cache = repo_cache_path(r, ns, name);
                k = gitremote_read_tree(url, spec.branch, &creds.git, cache, sha, dir, exts, max_file_bytes,
                                        fn, userdata, &res);
                if (k == -ENOENT || k == -EIO)
                        *ret_error = xstrdup(res.message);
        }
        repo_creds_clear(&creds);
        repo_spec_clear(&spec);
        return k;
}
