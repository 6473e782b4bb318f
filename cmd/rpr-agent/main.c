/* rpr-agent: the agent that lets rprd run commands on a host it cannot
 * reach. Three verbs:
 *
 *   rpr-agent join --server https://HOST:PORT --token JOIN_TOKEN [--name NAME]
 *             [--labels k=v,...] [--ca FILE | --fingerprint SHA256:...] [--state-dir DIR]
 *   rpr-agent run [--state-dir DIR]
 *   rpr-agent status [--state-dir DIR]
 *
 * join trades the join token for the agent's own secret and keeps it, with
 * where rprd is and how to trust it, in the state dir (default
 * /var/lib/rpr-agent; the credential is mode 0600). The join token itself
 * is not kept. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rpr-agent.h"

static void usage(FILE *f) {
        fputs("usage: rpr-agent join --server https://HOST:PORT --token JOIN_TOKEN [--name NAME]\n"
              "                      [--labels k=v,...] [--ca FILE | --fingerprint SHA256:...] [--state-dir "
              "DIR]\n"
              "       rpr-agent run [--state-dir DIR] [--poll-seconds N] [--capacity N]\n"
              "       rpr-agent status [--state-dir DIR]\n",
              f);
}

/* ---- state ------------------------------------------------------------------------- */

void config_clear(AgentConfig *c) {
        free(c->state_dir);
        free(c->server);
        free(c->ns);
        free(c->name);
        free(c->ca);
        free(c->fingerprint);
        if (c->credential)
                explicit_bzero(c->credential, strlen(c->credential));
        free(c->credential);
        *c = (AgentConfig){0};
}

int config_load(const char *state_dir, AgentConfig *ret) {
        _cleanup_free_ char *path = xasprintf("%s/agent.json", state_dir);
        _cleanup_free_ char *cred_path = xasprintf("%s/credential", state_dir);
        _cleanup_free_ char *text = NULL, *cred = NULL;
        size_t len;
        int r;

        r = read_file(path, 65536, &text, &len);
        if (r < 0)
                return log_error_errno(r, "cannot read %s (has this host joined? rpr-agent join ...): %m",
                                       path);
        r = read_file(cred_path, 4096, &cred, &len);
        if (r < 0)
                return log_error_errno(r, "cannot read the agent's credential %s: %m", cred_path);
        while (len > 0 && (cred[len - 1] == '\n' || cred[len - 1] == ' '))
                cred[--len] = '\0';
        _cleanup_json_ json_t *j = json_loads(text, 0, NULL);
        if (!json_str_at(j, "server") || !json_str_at(j, "name") || !json_str_at(j, "namespace"))
                return log_error_errno(-EINVAL, "%s is not an rpr-agent state file", path);

        *ret = (AgentConfig){
                .state_dir = xstrdup(state_dir),
                .server = xstrdup(json_str_at(j, "server")),
                .ns = xstrdup(json_str_at(j, "namespace")),
                .name = xstrdup(json_str_at(j, "name")),
                .ca = json_str_at(j, "ca") ? xstrdup(json_str_at(j, "ca")) : NULL,
                .fingerprint = json_str_at(j, "fingerprint") ? xstrdup(json_str_at(j, "fingerprint")) : NULL,
                .credential = TAKE_PTR(cred),
                .poll_seconds = 25,
                .capacity = 1,
        };
        return 0;
}

int agent_client(const char *server, const char *ca, const char *fingerprint, const char *token,
                 Client **ret) {
        Client *c = NULL;
        int r;

        if (!startswith(server, "https://"))
                return log_error_errno(
                        -EINVAL, "--server must be an https:// URL (rprd --listen tls:...): %s", server);
        r = client_new(server, NULL, &c);
        if (r < 0)
                return log_error_errno(r, "bad --server %s", server);
        /* Only what the agent was given: never a token found lying around. */
        client_set_token(c, token);
        client_set_user_agent(c, "rpr-agent/" RPR_VERSION);
        r = client_set_tls(c, ca ? ca : "", fingerprint ? fingerprint : "");
        if (r < 0) {
                client_free(c);
                return log_error_errno(
                        r, "--fingerprint must be SHA256: and 43 base64 characters, as rprd prints it");
        }
        *ret = c;
        return 0;
}

/* ---- join --------------------------------------------------------------------------- */

typedef struct JoinArgs {
        const char *server, *token, *name, *labels, *ca, *fingerprint, *state_dir;
} JoinArgs;

/* "k=v,k2=v2" into an object; -EINVAL when a pair has no '='. */
static int labels_parse(const char *text, json_t **ret) {
        _cleanup_json_ json_t *o = json_object();
        _cleanup_free_ char *copy = xstrdup(text ? text : "");
        char *save = NULL;

        for (char *p = strtok_r(copy, ",", &save); p; p = strtok_r(NULL, ",", &save)) {
                char *eq = strchr(p, '=');
                if (!eq || eq == p)
                        return -EINVAL;
                *eq = '\0';
                json_object_set_new(o, p, json_string(eq + 1));
        }
        *ret = TAKE_PTR(o);
        return 0;
}

static char *default_name(void) {
        char host[256] = "";

        if (gethostname(host, sizeof host - 1) < 0 || !*host)
                return xstrdup("agent");
        host[strcspn(host, ".")] = '\0';
        for (char *p = host; *p; p++)
                *p = (*p >= 'A' && *p <= 'Z')                              ? (char) (*p - 'A' + 'a')
                     : strchr("abcdefghijklmnopqrstuvwxyz0123456789-", *p) ? *p
                                                                           : '-';
        return xstrdup(host);
}

static int join_save(const JoinArgs *a, const json_t *answer) {
        _cleanup_free_ char *cred_path = xasprintf("%s/credential", a->state_dir);
        _cleanup_free_ char *path = xasprintf("%s/agent.json", a->state_dir);
        const char *cred = json_str_at(answer, "credential");
        _cleanup_json_ json_t *state = json_pack("{s:s, s:s, s:s, s:s?, s:s?}", "server", a->server,
                                                 "namespace", json_str_at(answer, "namespace") ?: "default",
                                                 "name", json_str_at(answer, "server") ?: a->name, "ca",
                                                 a->ca, "fingerprint", a->fingerprint);
        int r;

        if (!cred)
                return log_error_errno(-EBADMSG, "rprd's answer to the join has no credential");
        r = write_file_atomic(cred_path, cred, strlen(cred), 0600);
        if (r < 0)
                return log_error_errno(r, "cannot write %s: %m", cred_path);
        _cleanup_free_ char *text = json_dumps(state, JSON_INDENT(2));
        r = write_file_atomic(path, text, strlen(text), 0600);
        if (r < 0)
                return log_error_errno(r, "cannot write %s: %m", path);
        return 0;
}

static int cmd_join(const JoinArgs *a) {
        _cleanup_json_ json_t *labels = NULL, *answer = NULL;
        _cleanup_free_ char *error = NULL, *name = a->name ? xstrdup(a->name) : default_name();
        ClientResponse res = {0};
        Client *c = NULL;
        int r;

        if (!a->server || !a->token) {
                usage(stderr);
                return log_error_errno(-EINVAL, "join needs --server and --token");
        }
        if (labels_parse(a->labels, &labels) < 0)
                return log_error_errno(-EINVAL, "--labels must be k=v pairs separated by commas");
        r = mkdir_p(a->state_dir, 0700);
        if (r < 0)
                return log_error_errno(r, "cannot create the state dir %s: %m", a->state_dir);
        r = agent_client(a->server, a->ca, a->fingerprint, NULL, &c);
        if (r < 0)
                return r;

        _cleanup_json_ json_t *body = json_pack("{s:s, s:s, s:O, s:s}", "token", a->token, "name", name,
                                                "labels", labels, "version", RPR_VERSION);
        _cleanup_free_ char *text = json_dumps(body, JSON_COMPACT);
        r = client_request(c, "POST", "/api/v1/agents/join", NULL, text, strlen(text), &res, &error);
        explicit_bzero(text, strlen(text));
        client_free(c);
        if (r == -EKEYREJECTED)
                return log_error_errno(r,
                                       "refusing to join %s: its TLS certificate is not the one expected "
                                       "(--fingerprint / --ca): %s",
                                       a->server, error);
        if (r < 0)
                return log_error_errno(r, "cannot reach %s: %s", a->server, error);
        if (res.status != 201) {
                _cleanup_free_ char *msg = client_error_message(&res);
                client_response_clear(&res);
                return log_error_errno(-EACCES, "rprd refused the join (%ld): %s", res.status, msg);
        }
        answer = json_loads(res.body, 0, NULL);
        client_response_clear(&res);
        r = join_save(a, answer);
        if (r < 0)
                return r;
        printf("joined %s as server %s/%s; start the agent with: rpr-agent run --state-dir %s\n", a->server,
               json_str_at(answer, "namespace"), json_str_at(answer, "server"), a->state_dir);
        return 0;
}

/* ---- status ------------------------------------------------------------------------------ */

static int cmd_status(const char *state_dir) {
        _cleanup_free_ char *path = xasprintf("%s/status.json", state_dir), *text = NULL;
        AgentConfig cfg = {0};
        size_t len;
        int r;

        r = config_load(state_dir, &cfg);
        if (r < 0)
                return r;
        printf("server:    %s/%s at %s\n", cfg.ns, cfg.name, cfg.server);
        config_clear(&cfg);
        if (read_file(path, 1 << 20, &text, &len) < 0) {
                printf("state:     not running (no %s)\n", path);
                return 0;
        }
        _cleanup_json_ json_t *st = json_loads(text, 0, NULL);
        printf("state:     %s\n",
               json_is_true(json_object_get(st, "connected")) ? "connected" : "disconnected");
        printf("last poll: %s\n", json_str_at(st, "lastPoll") ?: "never");
        if (json_str_at(st, "error"))
                printf("error:     %s\n", json_str_at(st, "error"));
        size_t i;
        json_t *v;
        printf("jobs:      %zu\n", json_array_size(json_object_get(st, "jobs")));
        json_array_foreach(json_object_get(st, "jobs"), i, v)
                printf("  %s  pid %lld  %lld bytes\n", json_str_at(v, "id"),
                       (long long) json_int_at(v, "pid", 0), (long long) json_int_at(v, "bytes", 0));
        return 0;
}

/* ---- main ---------------------------------------------------------------------------------- */

int main(int argc, char **argv) {
        static const struct option opts[] = {
                {"server", required_argument, NULL, 's'},    {"token", required_argument, NULL, 't'},
                {"name", required_argument, NULL, 'n'},      {"labels", required_argument, NULL, 'l'},
                {"ca", required_argument, NULL, 'c'},        {"fingerprint", required_argument, NULL, 'f'},
                {"state-dir", required_argument, NULL, 'd'}, {"help", no_argument, NULL, 'h'},
                {"version", no_argument, NULL, 'V'},         {"poll-seconds", required_argument, NULL, 'p'},
                {"capacity", required_argument, NULL, 'k'},  {NULL, 0, NULL, 0},
        };
        JoinArgs a = {.state_dir = AGENT_DEFAULT_STATE_DIR};
        uint64_t poll_seconds = 0, capacity = 0;
        int o;

        signal(SIGPIPE, SIG_IGN);
        while ((o = getopt_long(argc, argv, "s:t:n:l:c:f:d:p:k:hV", opts, NULL)) != -1)
                switch (o) {
                case 's':
                        a.server = optarg;
                        break;
                case 't':
                        a.token = optarg;
                        break;
                case 'n':
                        a.name = optarg;
                        break;
                case 'l':
                        a.labels = optarg;
                        break;
                case 'c':
                        a.ca = optarg;
                        break;
                case 'f':
                        a.fingerprint = optarg;
                        break;
                case 'd':
                        a.state_dir = optarg;
                        break;
                case 'h':
                        usage(stdout);
                        return 0;
                case 'V':
                        printf("rpr-agent %s\n", RPR_VERSION);
                        return 0;
                case 'p':
                        if (parse_uint64(optarg, &poll_seconds) < 0 || poll_seconds < 1 ||
                            poll_seconds > 25) {
                                fprintf(stderr, "rpr-agent: --poll-seconds is 1 to 25\n");
                                return 2;
                        }
                        break;
                case 'k':
                        if (parse_uint64(optarg, &capacity) < 0 || capacity < 1 || capacity > 64) {
                                fprintf(stderr, "rpr-agent: --capacity is 1 to 64\n");
                                return 2;
                        }
                        break;
                default:
                        usage(stderr);
                        return 2;
                }
        if (optind >= argc) {
                usage(stderr);
                return 2;
        }
        const char *verb = argv[optind];
        if (STREQ(verb, "join"))
                return cmd_join(&a) < 0 ? 1 : 0;
        if (STREQ(verb, "run")) {
                /* 3: refused by rprd (revoked, too old), which restarting will not cure. */
                int r = agent_run(a.state_dir, (unsigned) poll_seconds, (unsigned) capacity);
                return r == -EACCES ? 3 : r < 0 ? 1 : 0;
        }
        if (STREQ(verb, "status"))
                return cmd_status(a.state_dir) < 0 ? 1 : 0;
        usage(stderr);
        return 2;
}
