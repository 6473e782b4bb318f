/* gitremote-tree: the files of one directory of a commit, read from the
 * bare cache without a checkout (see gitremote_read_tree in gitremote.h).
 *
 * A blob's size is read from the object database's header before the blob
 * itself, so that a file larger than the caller's bound is never loaded. */
#include <stdio.h>
#include <string.h>

#include "gitremote/gitremote-private.h"

typedef struct TreeWalk {
        git_repository *repo;
        git_odb *odb;
        const char *dir; /* prefix of the paths handed out, "" for the root */
        const char *const *exts;
        size_t max_file_bytes;
        GitFileFn fn;
        void *userdata;
        int r; /* the first failure, or fn's stop */
} TreeWalk;

static bool wanted(const char *name, const char *const *exts) {
        for (size_t i = 0; exts && exts[i]; i++)
                if (endswith(name, exts[i]))
                        return true;
        return false;
}

static int visit(TreeWalk *w, const char *root, const git_tree_entry *e) {
        const char *name = git_tree_entry_name(e);
        const git_oid *oid = git_tree_entry_id(e);
        _cleanup_free_ char *path = xasprintf("%s%s%s", w->dir, root, name);
        char id[GIT_OID_HEXSZ + 1];
        git_object_t type;
        git_blob *blob = NULL;
        size_t size;
        int k;

        if (git_tree_entry_filemode(e) != GIT_FILEMODE_BLOB &&
            git_tree_entry_filemode(e) != GIT_FILEMODE_BLOB_EXECUTABLE)
                return 0;
        if (!wanted(name, w->exts))
                return 0;
        git_oid_tostr(id, sizeof id, oid);
        if (git_odb_read_header(&size, &type, w->odb, oid) < 0)
                return -EIO;
        if (size > w->max_file_bytes)
                return w->fn(w->userdata, path, id, NULL, size);
        if (git_blob_lookup(&blob, w->repo, oid) < 0)
                return -EIO;
        k = w->fn(w->userdata, path, id, git_blob_rawcontent(blob), (size_t) git_blob_rawsize(blob));
        git_blob_free(blob);
        return k;
}

static int walk_cb(const char *root, const git_tree_entry *e, void *payload) {
        TreeWalk *w = payload;
        int k = visit(w, root, e);

        if (k < 0) {
                w->r = k;
                return -1; /* stops git_tree_walk */
        }
        return 0;
}

/* The tree at dir ("." or "" for the root) of commit c. */
static int subtree(git_repository *repo, git_commit *c, const char *dir, git_tree **ret) {
        _cleanup_free_ char *clean = xstrdup(dir);
        git_tree *root = NULL;
        git_tree_entry *e = NULL;
        size_t n = strlen(clean);
        int k;

        while (n > 0 && clean[n - 1] == '/')
                clean[--n] = '\0';
        k = git_commit_tree(&root, c);
        if (k < 0)
                return -EIO;
        if (n == 0 || STREQ(clean, ".")) {
                *ret = root;
                return 0;
        }
        k = git_tree_entry_bypath(&e, root, startswith(clean, "./") ? clean + 2 : clean);
        git_tree_free(root);
        if (k < 0)
                return -ENOENT;
        if (git_tree_entry_type(e) != GIT_OBJECT_TREE) {
                git_tree_entry_free(e);
                return -ENOENT;
        }
        k = git_tree_lookup(ret, repo, git_tree_entry_id(e));
        git_tree_entry_free(e);
        return k < 0 ? -EIO : 0;
}

int gitremote_read_tree(const char *url, const char *branch, const GitAuth *auth, const char *cache_dir,
                        const char *sha, const char *dir, const char *const *exts, size_t max_file_bytes,
                        GitFileFn fn, void *userdata, GitResult *ret) {
        git_repository *repo = NULL;
        git_commit *c = NULL;
        git_tree *tree = NULL;
        git_odb *odb = NULL;
        int k;

        if (gitremote_cache_commit(url, branch, auth, cache_dir, sha, &repo, &c, ret) < 0)
                return -EIO;
        k = subtree(repo, c, dir, &tree);
        if (k == -ENOENT) {
                ret->error = GITREMOTE_FAILED;
                snprintf_utf8(ret->message, sizeof ret->message, "%s is not a directory at commit %.12s",
                              dir, sha);
        }
        if (k >= 0)
                k = git_repository_odb(&odb, repo) < 0 ? -EIO : 0;
        if (k >= 0) {
                size_t n = strlen(dir);
                while (n > 0 && dir[n - 1] == '/')
                        n--;
                bool root = n == 0 || (n == 1 && dir[0] == '.');
                _cleanup_free_ char *prefix = root ? xstrdup("") : xasprintf("%.*s/", (int) n, dir);
                TreeWalk w = {repo, odb, prefix, exts, max_file_bytes, fn, userdata, 0};
                if (git_tree_walk(tree, GIT_TREEWALK_PRE, walk_cb, &w) < 0 && w.r == 0)
                        w.r = -EIO;
                k = w.r;
                if (k == -EIO)
                        gitremote_fail(ret, "cannot read the tree of", url, k, &(GitCreds){0});
        }
        git_odb_free(odb);
        git_tree_free(tree);
        git_commit_free(c);
        git_repository_free(repo);
        return k;
}
