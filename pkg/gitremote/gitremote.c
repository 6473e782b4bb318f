/* gitremote.c: listing a remote's refs, and what every operation shares —
 * credentials, errors as a person should read them (see gitremote.h).
 *
 * libgit2 asks the credentials callback again and again while a remote
 * refuses; rpr answers once per operation, so a wrong token fails at once
 * as "refused" instead of looping. An ssh key lives in a 0600 file in a
 * private directory only while the operation runs. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "egress/egress.h"
#include "gitremote/gitremote-private.h"

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static int init_result = -EAGAIN; /* not yet */

/* Every TCP connection libgit2 opens goes through egress's stream, so the
 * allow-list holds for git remotes as for everything else. */
static void init_libgit2(void) {
        init_result = git_libgit2_init() < 0 ? -EIO : 0;
        if (init_result == 0)
                init_result = egress_git_install();
}

int gitremote_init(void) {
        pthread_once(&init_once, init_libgit2);
        return init_result;
}

void gitremote_shutdown(void) {
        if (init_result == 0)
                (void) git_libgit2_shutdown();
        init_result = -ESHUTDOWN;
}

const char *gitremote_error_reason(GitError e) {
        switch (e) {
        case GITREMOTE_OK:
                return "OK";
        case GITREMOTE_AUTH:
                return "AuthenticationFailed";
        case GITREMOTE_NOT_FOUND:
                return "NotFound";
        case GITREMOTE_BRANCH_NOT_FOUND:
                return "BranchNotFound";
        case GITREMOTE_NETWORK:
                return "NetworkError";
        case GITREMOTE_FAILED:
                return "GitError";
        case GITREMOTE_NOT_ALLOWED:
                return EGRESS_REASON;
        }
        return "Unknown";
}

char *gitremote_url_display(const char *url) {
        const char *scheme = strstr(url, "://");
        if (!scheme)
                return xstrdup(url);
        const char *host = scheme + 3;
        const char *at = strchr(host, '@'), *slash = strchr(host, '/');
        if (!at || (slash && at > slash))
                return xstrdup(url);
        return xasprintf("%.*s%s", (int) (host - url), url, at + 1);
}

/* ---- credentials -------------------------------------------------------------- */

void gitremote_creds_clear(GitCreds *c) {
        if (c->key_path) {
                (void) unlink(c->key_path);
                free(c->key_path);
        }
        if (c->key_dir) {
                (void) rmdir(c->key_dir);
                free(c->key_dir);
        }
        *c = (GitCreds){0};
}

static int key_file(GitCreds *c) {
        char dir[] = "/tmp/rpr-gitkey-XXXXXX";

        if (c->key_path)
                return 0;
        if (!mkdtemp(dir))
                return -errno;
        c->key_dir = xstrdup(dir);
        c->key_path = xasprintf("%s/key", dir);
        return write_file_atomic(c->key_path, c->auth->ssh_key, c->auth->ssh_key_len, 0600);
}

static int on_credentials(git_credential **out, const char *url, const char *user_from_url, unsigned allowed,
                          void *payload) {
        GitCreds *c = payload;
        const GitAuth *a = c->auth;
        const char *user = a && a->ssh_user ? a->ssh_user : user_from_url ? user_from_url : "git";
        (void) url;

        /* ssh asks for the user name first, then for a key: one answer of
         * each kind; asked again, the remote refused it. */
        unsigned kind = a && a->ssh_key && (allowed & GIT_CREDENTIAL_SSH_KEY)               ? GIT_CREDENTIAL_SSH_KEY
                        : a && a->token && (allowed & GIT_CREDENTIAL_USERPASS_PLAINTEXT) ? GIT_CREDENTIAL_USERPASS_PLAINTEXT
                        : (allowed & GIT_CREDENTIAL_USERNAME)                           ? GIT_CREDENTIAL_USERNAME
                                                                                        : 0;
        if (kind && (c->tried & kind)) {
                c->refused = true;
                git_error_set_str(GIT_ERROR_NET, "the remote refused the credentials of spec.tokenRef");
                return GIT_EAUTH;
        }
        c->tried |= kind;
        if (kind == GIT_CREDENTIAL_SSH_KEY) {
                if (key_file(c) < 0) {
                        git_error_set_str(GIT_ERROR_OS, "cannot write the ssh key to a temporary file");
                        return -1;
                }
                return git_credential_ssh_key_new(out, user, NULL, c->key_path, NULL);
        }
        if (kind == GIT_CREDENTIAL_USERPASS_PLAINTEXT)
                return git_credential_userpass_plaintext_new(out, "x-access-token", a->token);
        if (kind == GIT_CREDENTIAL_USERNAME)
                return git_credential_username_new(out, user);
        c->refused = true;
        git_error_set_str(GIT_ERROR_NET, a && (a->token || a->ssh_key)
                                                 ? "the remote wants another kind of credentials than spec.tokenRef holds"
                                                 : "the remote wants credentials: set spec.tokenRef");
        return GIT_EAUTH;
}

void gitremote_callbacks(git_remote_callbacks *cb, GitCreds *creds) {
        git_remote_init_callbacks(cb, GIT_REMOTE_CALLBACKS_VERSION);
        cb->credentials = on_credentials;
        cb->payload = creds;
}

/* ---- errors ------------------------------------------------------------------- */

static bool has(const char *m, const char *needle) {
        return strcasestr(m, needle) != NULL;
}

static GitError classify(int code, const git_error *e, const GitCreds *creds) {
        const char *m = e && e->message ? e->message : "";

        if (has(m, EGRESS_REFUSED))
                return GITREMOTE_NOT_ALLOWED;
        if (code == GIT_EAUTH || creds->refused || has(m, "authentication") || has(m, "credentials") ||
            has(m, " 401") || has(m, " 403") || has(m, "permission denied"))
                return GITREMOTE_AUTH;
        if (has(m, "not found") || has(m, " 404") || has(m, "does not appear to be a git repository") ||
            has(m, "failed to resolve path") || has(m, "could not find repository") || has(m, "no such file"))
                return GITREMOTE_NOT_FOUND;
        if (e && (e->klass == GIT_ERROR_NET || e->klass == GIT_ERROR_OS || e->klass == GIT_ERROR_SSL ||
                  e->klass == GIT_ERROR_SSH || e->klass == GIT_ERROR_HTTP))
                return GITREMOTE_NETWORK;
        return GITREMOTE_FAILED;
}

int gitremote_fail(GitResult *ret, const char *what, const char *url, int code, const GitCreds *creds) {
        const git_error *e = git_error_last();
        _cleanup_free_ char *shown = gitremote_url_display(url);
        const char *scheme = strstr(url, "://"), *at = scheme ? strchr(scheme + 3, '@') : NULL;
        char msg[384];

        snprintf(msg, sizeof msg, "%s", e && e->message ? e->message : "unknown error");
        /* A URL with a password in it must not come back through libgit2's
         * own message. */
        if (at) {
                _cleanup_free_ char *userinfo = xstrndup(scheme + 3, at - scheme - 3);
                char *p;
                while (*userinfo && (p = strstr(msg, userinfo)))
                        memset(p, '*', strlen(userinfo));
        }
        ret->error = classify(code, e, creds);
        snprintf(ret->message, sizeof ret->message, "%s %s: %s", what, shown, msg);
        return -EIO;
}

/* ---- ls-remote ----------------------------------------------------------------- */

static int name_cmp(const void *a, const void *b) {
        return strcmp(*(const char *const *) a, *(const char *const *) b);
}

int gitremote_ls(const char *url, const char *branch, const GitAuth *auth, char **ret_sha, json_t **ret_branches,
                 GitResult *ret) {
        _cleanup_free_ char *want = xasprintf("refs/heads/%s", branch);
        GitCreds creds = {.auth = auth};
        git_remote_callbacks cb;
        const git_remote_head **heads;
        git_remote *remote = NULL;
        char sha[GIT_OID_HEXSZ + 1] = "";
        size_t n;
        int k;

        *ret = (GitResult){0};
        if (gitremote_init() < 0) {
                ret->error = GITREMOTE_FAILED;
                snprintf(ret->message, sizeof ret->message, "libgit2 cannot be initialized");
                return -EIO;
        }
        gitremote_callbacks(&cb, &creds);
        k = git_remote_create_detached(&remote, url);
        if (k >= 0)
                k = git_remote_connect(remote, GIT_DIRECTION_FETCH, &cb, NULL, NULL);
        if (k >= 0)
                k = git_remote_ls(&heads, &n, remote);
        if (k < 0) {
                gitremote_fail(ret, "cannot list the refs of", url, k, &creds);
                git_remote_free(remote);
                gitremote_creds_clear(&creds);
                return -EIO;
        }

        const char **names = xcalloc(n + 1, sizeof *names);
        size_t m = 0;
        for (size_t i = 0; i < n; i++) {
                if (!startswith(heads[i]->name, "refs/heads/"))
                        continue;
                names[m++] = heads[i]->name + strlen("refs/heads/");
                if (STREQ(heads[i]->name, want))
                        git_oid_tostr(sha, sizeof sha, &heads[i]->oid);
        }
        qsort(names, m, sizeof *names, name_cmp);
        json_t *branches = json_array();
        for (size_t i = 0; i < m; i++)
                json_array_append_new(branches, json_string(names[i]));
        free(names);
        git_remote_free(remote);
        gitremote_creds_clear(&creds);

        if (!*sha) {
                _cleanup_free_ char *shown = gitremote_url_display(url);
                json_decref(branches);
                ret->error = GITREMOTE_BRANCH_NOT_FOUND;
                snprintf(ret->message, sizeof ret->message, "%s has no branch %s", shown, branch);
                return -EIO;
        }
        *ret_sha = xstrdup(sha);
        *ret_branches = branches;
        return 0;
}
