/* runner-create: one instance registered at GitHub and started on its
 * Server; and the way back, deregistered and stopped.
 *
 * The order is what makes a crash harmless: the instance is in status
 * (state registering) before GitHub is asked, its id is in status before
 * its process starts. A later pass that finds a registering instance with
 * nothing running deletes whatever registration its name has and starts
 * over; one with a process has its id already. JIT configurations are
 * used where GitHub offers them (ephemeral runners); otherwise, or where
 * the endpoint is refused, a registration token and config.sh. */
#include <stdio.h>
#include <string.h>

#include "github/github.h"
#include "runner/runner-private.h"

static GithubRepoRef ref_of(const Pass *p) {
        return (GithubRepoRef){p->scope.api_url, p->scope.owner, p->scope.repo_name, p->scope.secret.data,
                               NULL};
}

void runner_instance_set_state(json_t *inst, const char *state, const char *message) {
        json_object_set_new(inst, "state", json_string(state));
        if (message)
                json_object_set_new(inst, "message", json_string(message));
        else
                json_object_del(inst, "message");
}

/* The labels as config.sh wants them: "a,b". */
static char *labels_text(const json_t *labels) {
        Buf b = {0};
        const json_t *l;
        size_t i;

        json_array_foreach(labels, i, l) {
                if (i > 0)
                        buf_puts(&b, ",");
                buf_puts(&b, json_string_value(l) ?: "");
        }
        return b.data ? buf_steal(&b) : xstrdup("");
}

/* The release on the instance's server (fetched once a pass). */
static int ensure_release(Pass *p, const SshTarget *t, const char *server) {
        _cleanup_free_ char *error = NULL;
        SshResult res = {0};

        if (!p->release_tried) {
                p->release_tried = true;
                if (runner_release_get(p->rc, p->sp, &p->scope, &p->rel_path, &p->rel_sha, &p->rel_version,
                                       &error) < 0)
                        pass_problem(p, "ReleaseUnavailable", "%s", error);
        }
        if (!p->rel_path)
                return -EAGAIN;
        if (json_object_get(p->installed, server))
                return 0;
        if (runner_host_install(p->rc, p->sp, t, p->rel_path, p->rel_sha, &res) < 0) {
                pass_problem(p, "InstallFailed", "cannot copy the runner release to server %s: %s", server,
                             res.message);
                return -EIO;
        }
        json_object_set_new(p->installed, server, json_true());
        return 0;
}

/* A JIT configuration: 1 with *ret_jit and the id in inst; 0 when GitHub
 * offers none (fall back to a registration token); negative on failure. */
static int register_jit(Pass *p, json_t *inst, char **ret_jit) {
        GithubRepoRef ref = ref_of(p);
        GithubResult res;
        json_int_t id;

        if (!p->sp->ephemeral || json_is_true(json_object_get(p->st, "jitRefused")))
                return 0;
        if (!p->group_id &&
            github_runner_group_id(p->rc->github, &ref, p->sp->group, &p->group_id, &res) < 0) {
                pass_problem(p, github_error_reason(res.error), "%s", res.message);
                return -EIO;
        }
        if (github_runner_jitconfig(p->rc->github, &ref, json_str_at(inst, "name"), p->sp->labels,
                                    p->group_id, &id, ret_jit, &res) >= 0) {
                json_object_set_new(inst, "id", json_integer(id));
                return 1;
        }
        if (res.error == GITHUB_NOT_FOUND || (res.error == GITHUB_PROTOCOL && res.http_status == 422)) {
                log_info("runner %s/%s: GitHub offers no JIT configuration (%s); registering with config.sh",
                         p->sp->ns, p->sp->name, res.message);
                json_object_set_new(p->st, "jitRefused", json_true());
                return 0;
        }
        pass_problem(p, github_error_reason(res.error), "%s", res.message);
        return -EIO;
}

/* The instance could not be registered or started: failed, tried again
 * after the backoff (ended() in runner-pass.c cleans it first), the Ready
 * reason kept. */
static void start_failed(Pass *p, json_t *inst, const char *reason, const char *why) {
        json_int_t failures = json_int_at(inst, "failures", 0) + 1;

        json_object_set_new(inst, "failures", json_integer(failures));
        json_set_time(inst, "retryAt", p->now + runner_backoff(failures));
        json_object_set_new(inst, "reason", json_string(reason));
        runner_instance_set_state(inst, "failed", why);
        pass_problem(p, reason, "runner %s on server %s: %s", json_str_at(inst, "name"),
                     json_str_at(inst, "server"), why);
}

void runner_instance_create(Pass *p, json_t *inst) {
        const char *server = json_str_at(inst, "server");
        _cleanup_free_ char *jit = NULL, *reg = NULL, *labels = labels_text(p->sp->labels);
        SshResult res = {0};
        long pid = 0;
        int k;

        ServerTarget *t = pass_target(p, server);
        if (!t)
                return;
        k = STREQ(p->sp->mode, "container") ? 0 : ensure_release(p, server_target(t), server);
        if (k >= 0)
                k = register_jit(p, inst, &jit);
        if (k == 0) {
                GithubRepoRef ref = ref_of(p);
                GithubResult gr;
                k = github_runner_token(p->rc->github, &ref, "registration", &reg, &gr);
                if (k < 0)
                        pass_problem(p, github_error_reason(gr.error), "%s", gr.message);
        }
        if (k < 0) {
                _cleanup_free_ char *why = xstrdup(p->message);
                start_failed(p, inst, p->reason[0] ? p->reason : "StartFailed", why);
                server_target_free(t);
                return;
        }
        /* The id before the process: a crash now leaves a registration
         * that the next pass finds by it and deletes. */
        json_set_time(inst, "startTime", p->now);
        runner_instance_set_state(inst, "starting", NULL);
        if (pass_save(p) < 0) {
                server_target_free(t);
                return;
        }
        RunnerStart s = {.name = json_str_at(inst, "name"),
                         .sha256 = p->rel_sha,
                         .jit = jit,
                         .reg_token = reg,
                         .url = p->scope.html_url,
                         .labels = labels,
                         .ephemeral = p->sp->ephemeral,
                         .group = p->sp->group};
        _cleanup_free_ char *cid = NULL;
        if (STREQ(p->sp->mode, "container"))
                k = runner_container_start(p->rc, p->sp, server_target(t), &s, &cid, &res);
        else
                k = runner_host_start(p->rc, p->sp, server_target(t), &s, &pid, &res);
        if (jit)
                explicit_bzero(jit, strlen(jit));
        if (reg)
                explicit_bzero(reg, strlen(reg));
        server_target_free(t);
        if (k < 0) {
                start_failed(p, inst, "StartFailed", res.message);
                return;
        }
        if (cid)
                json_object_set_new(inst, "containerId", json_string(cid));
        else
                json_object_set_new(inst, "pid", json_integer(pid));
        const char *image = json_str_at(p->sp->container, "image");
        json_object_set_new(inst, "version", json_string(cid ? image ?: "" : p->rel_version ?: "unknown"));
        p->changed = true;
        char what[32];
        snprintf(what, sizeof what, "%ld", pid);
        log_info("runner %s/%s: started %s on server %s (%s %s)", p->sp->ns, p->sp->name, s.name, server,
                 cid ? "container" : "pid", cid ?: what);
}

int runner_instance_deregister(Pass *p, json_t *inst) {
        json_int_t id = json_int_at(inst, "id", 0);
        GithubRepoRef ref = ref_of(p);
        GithubResult res;

        if (!p->scope_ok)
                return -ENOKEY;
        if (!id) {
                const json_t *g = pass_gh_find(p, 0, json_str_at(inst, "name"));
                if (!g)
                        return p->gh ? 0 : -EAGAIN;
                id = json_int_at(g, "id", 0);
        }
        if (github_runner_delete(p->rc->github, &ref, id, &res) < 0) {
                if (res.error == GITHUB_BUSY)
                        return -EBUSY;
                pass_problem(p, github_error_reason(res.error), "%s", res.message);
                return -EIO;
        }
        json_object_set_new(p->deleted, json_str_at(inst, "name") ?: "", json_true());
        json_object_del(inst, "id");
        p->changed = true;
        return 0;
}

int runner_instance_stop(Pass *p, json_t *inst) {
        const char *server = json_str_at(inst, "server");
        SshResult res = {0};

        ServerTarget *t = pass_target(p, server);
        if (!t)
                return -EHOSTUNREACH;
        int k = runner_host_remove(p->rc, p->sp, server_target(t), json_str_at(inst, "name"), &res);
        server_target_free(t);
        if (k < 0) {
                pass_problem(p, "ServerUnreachable", "cannot stop runner %s on server %s: %s",
                             json_str_at(inst, "name"), server, res.message);
                return k;
        }
        p->changed = true;
        return 0;
}
