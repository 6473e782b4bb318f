/* server-target.c: from a stored Server to an SshTarget.
 *
 * Everything ssh_run() needs is read here from the Server object as it is
 * stored: transport, address, user, the private key (a file, or the secret
 * of the Token named by keyRef), and the host key to verify (pinned,
 * known_hosts, or the key accepted earlier under accept-new and recorded in
 * status.hostKey). The target borrows its strings from the object, so a
 * ServerTarget keeps a reference to it; a key read from a Token is wiped
 * when the target is freed. Error messages name the Token and where its
 * secret should be, never the secret. */
#include <string.h>

#include "server/server-private.h"
#include "store/store.h"
#include "token/token.h"

#define DEFAULT_INTERVAL_USEC (12 * 3600 * USEC_PER_SEC)
#define DEFAULT_RETRY_INTERVAL_USEC (5 * 60 * USEC_PER_SEC)
#define DEFAULT_RETRIES 3

struct ServerTarget {
        SshTarget target;
        ServerController *servers;
        json_t *object;
        char *id;
        char *key_data;
        size_t key_len;
};

void server_spec_read(const json_t *obj, ServerSpec *ret) {
        const json_t *spec = json_object_get(obj, "spec");
        const json_t *check = json_object_get(spec, "check");
        const json_t *retries = json_object_get(check, "retries");

        *ret = (ServerSpec){
                .active = !json_is_false(json_object_get(spec, "active")),
                .interval_usec = json_duration_at(check, "interval", DEFAULT_INTERVAL_USEC),
                .retry_interval_usec = json_duration_at(check, "retryInterval", DEFAULT_RETRY_INTERVAL_USEC),
                .retries = json_is_integer(retries) && json_integer_value(retries) >= 0
                                   ? (unsigned) json_integer_value(retries)
                                   : DEFAULT_RETRIES,
        };
}

void server_target_free(ServerTarget *t) {
        if (!t)
                return;
        if (t->key_data) {
                explicit_bzero(t->key_data, t->key_len);
                free(t->key_data);
        }
        json_decref(t->object);
        free(t->id);
        free(t);
}

static void server_target_freep(ServerTarget **t) {
        server_target_free(*t);
}

const SshTarget *server_target(const ServerTarget *t) {
        return &t->target;
}

bool server_target_is_agent(const ServerTarget *t) {
        return t->target.run != NULL;
}

ServerController *server_target_controller(const ServerTarget *t) {
        return t->servers;
}

const char *server_target_name(const ServerTarget *t, const char **ret_ns) {
        const json_t *meta = json_object_get(t->object, "metadata");

        *ret_ns = json_str_at(meta, "namespace");
        return json_str_at(meta, "name");
}

/* The key of the ssh-key Token that spec.keyRef names. Token reasons read
 * as the Server's own: MissingKey, KeyUnusable, KeyExpired. */
static int key_from_token(ServerController *s, ServerTarget *t, const char *ns, const char *token,
                          const char **ret_reason, char **ret_error) {
        static const char *const types[] = {"ssh-key", NULL};
        TokenSecret secret;
        const char *reason;
        int r;

        r = token_secret_read(s->store, ns, token, types, "spec.keyRef", &secret, &reason, ret_error);
        if (r < 0) {
                *ret_reason = r == -ENOENT ? "MissingKey" : r == -EKEYEXPIRED ? "KeyExpired" : "KeyUnusable";
                return -EINVAL;
        }
        t->key_data = TAKE_PTR(secret.data);
        t->key_len = secret.len;
        t->target.key_data = t->key_data;
        t->target.key_len = t->key_len;
        return 0;
}

static int transport_of(const json_t *spec, SshTransport *ret, char **ret_error) {
        const char *tr = json_str_at(spec, "transport");

        if (!tr || STREQ(tr, "ssh")) {
                *ret = SSH_TRANSPORT_SSH;
                return 0;
        }
        if (STREQ(tr, "local")) {
                *ret = SSH_TRANSPORT_LOCAL;
                return 0;
        }
        if (STREQ(tr, "agent")) {
                /* A remote host like an ssh one; its commands go to its
                 * agent (SshTarget.run, set by the caller). */
                *ret = SSH_TRANSPORT_SSH;
                return 0;
        }
        *ret_error = xasprintf("transport %s is not supported yet; use ssh or local", tr);
        return -EINVAL;
}

/* ---- accept-new: the first key seen is the Server's --------------------------------- */

typedef struct Pin {
        const char *key;
        bool conflict;
} Pin;

static json_t *pin_next(const json_t *obj, void *userdata) {
        Pin *p = userdata;
        const json_t *st = json_object_get(obj, "status");
        const char *have = json_str_at(st, "hostKey");

        if (have) {
                p->conflict = !STREQ(have, p->key);
                return NULL;
        }
        p->conflict = false;
        json_t *next = json_is_object(st) ? json_deep_copy(st) : json_object();
        json_object_set_new(next, "hostKey", json_string(p->key));
        return next;
}

/* Writes the key into status.hostKey unless one is there: the write
 * compares the revision, so of two first sessions one pins and the other
 * finds that key. -EPERM when another key was pinned first. */
static int pin_host_key(void *userdata, const char *host_key) {
        ServerTarget *t = userdata;
        const json_t *meta = json_object_get(t->object, "metadata");
        Pin p = {.key = host_key};
        int r;

        r = store_update_status(t->servers->store, "Server", json_str_at(meta, "namespace"),
                                json_str_at(meta, "name"), pin_next, &p, NULL);
        if (r < 0)
                return r;
        return p.conflict ? -EPERM : 0;
}

int server_target_build(ServerController *s, json_t *obj, ServerTarget **ret, const char **ret_reason,
                        char **ret_error) {
        const json_t *meta = json_object_get(obj, "metadata");
        const json_t *spec = json_object_get(obj, "spec");
        const char *ns = json_str_at(meta, "namespace"), *name = json_str_at(meta, "name");
        _cleanup_(server_target_freep) ServerTarget *t = xcalloc(1, sizeof *t);
        int r;

        if (!ns || !name)
                return -EINVAL;
        t->object = json_incref(obj);
        t->id = xasprintf("%s/%s", ns, name);
        if (json_is_false(json_object_get(spec, "active"))) {
                *ret_reason = "Inactive";
                *ret_error = xasprintf("server %s is inactive (spec.active is false)", name);
                return -EINVAL;
        }
        r = transport_of(spec, &t->target.transport, ret_error);
        if (r < 0) {
                *ret_reason = "ExecFailed";
                return r;
        }

        const json_t *port = json_object_get(spec, "port");
        t->target.id = t->id;
        if (server_is_agent(obj)) {
                t->servers = s;
                t->target.run = server_agent_run;
                t->target.run_userdata = t;
                *ret = TAKE_PTR(t);
                return 0;
        }
        t->target.host = json_str_at(spec, "host");
        t->target.port = json_is_integer(port) ? (unsigned) json_integer_value(port) : 22;
        t->target.user = json_str_at(spec, "user");
        t->target.key_file = json_str_at(spec, "identityFile");
        t->target.host_key = json_str_at(spec, "hostKey");
        t->target.known_hosts_file = json_str_at(spec, "knownHostsFile");
        const char *policy = json_str_at(spec, "hostKeyPolicy");
        t->target.accept_new = policy && STREQ(policy, "accept-new");
        /* accept-new pins what it accepted the first time, on whichever
         * path (check, exec, Run, task) met the host first. */
        if (t->target.accept_new && !t->target.host_key) {
                t->target.accepted_key = json_str_at(json_object_get(obj, "status"), "hostKey");
                t->target.pin_host_key = pin_host_key;
                t->target.pin_userdata = t;
                t->servers = s;
        }

        const char *key_ref = json_str_at(spec, "keyRef");
        if (key_ref && t->target.transport == SSH_TRANSPORT_SSH) {
                r = key_from_token(s, t, ns, key_ref, ret_reason, ret_error);
                if (r < 0)
                        return r;
        }
        *ret = TAKE_PTR(t);
        return 0;
}

int server_target_get(ServerController *s, const char *ns, const char *name, ServerTarget **ret,
                      const char **ret_reason, char **ret_error) {
        _cleanup_json_ json_t *obj = NULL;
        const char *reason = NULL;
        char *error = NULL;
        int r;

        r = store_get_json(s->store, "Server", ns, name, &obj);
        if (r < 0)
                return r;
        r = server_target_build(s, obj, ret, &reason, &error);
        if (r < 0) {
                if (ret_reason)
                        *ret_reason = reason;
                if (ret_error)
                        *ret_error = error;
                else
                        free(error);
        }
        return r;
}
