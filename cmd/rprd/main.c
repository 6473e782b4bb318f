/* rprd: the rpr daemon. Parses its flags, prepares the state and log
 * directories, opens the store, starts the controllers (Tokens, Repos,
 * Servers) and
 * serves the HTTP API until SIGINT or SIGTERM.
 *
 * Exit status: 0 after a clean stop, 1 when start-up fails or the command
 * line is wrong (the message names what failed, or the flag). */
#include <getopt.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/agent.h"
#include "api/api.h"
#include "binding/binding.h"
#include "command/command.h"
#include "pipeline/pipeline.h"
#include "controller/controller.h"
#include "egress/egress.h"
#include "github/github.h"
#include "gitremote/gitremote.h"
#include "logfile/logfile.h"
#include "repo/repo.h"
#include "sync/sync.h"
#include "rprd.h"
#include "run/run.h"
#include "resource/resource.h"
#include "server/server.h"
#include "runner/runner.h"
#include "ssh/ssh.h"
#include "store/store.h"
#include "systemd/systemd.h"
#include "token/token.h"
#include "webhook/webhook.h"

#define MAX_LISTEN 16
#define MAX_WORKERS 256
#define MAX_BODY_LIMIT (1024u * 1024 * 1024)
#define CONTROLLER_WORKERS 8
#define SSH_MAX_RUNNING 64

typedef struct Options {
        const char *state_dir;
        const char *log_dir;
        const char *listen[MAX_LISTEN];
        size_t n_listen;
        const char *store;
        unsigned workers;
        uint64_t idle_exit_usec;
        uint64_t stop_grace_usec;
        const char *web_dir;
        size_t max_body;
        int log_level;
        bool no_controllers;
        bool anonymous_read;
        const char *allow_networks; /* --allow-networks as given; NULL: everywhere */
        size_t watch_backlog;       /* 0: the store's default */
        /* Limits (0: defaults) and the names browsers may use. */
        unsigned max_streams, max_streams_per_caller, max_exec_threads;
        const char *allowed_hosts[MAX_LISTEN];
        size_t n_allowed_hosts;
        const char *tls_cert, *tls_key; /* NULL: self-signed, kept in STATE/tls */
        /* From socket activation: used instead of listen. */
        int *fds;
        char **fd_names;
        size_t n_fds;
} Options;

static ApiServer *volatile the_server;
static volatile sig_atomic_t stop_early;

/* When SIGTERM came (monotonic): Runs get what is left of --stop-grace. */
static _Atomic uint64_t stop_requested_mono;

static void on_signal(int sig) {
        (void) sig;
        stop_early = 1;
        if (!atomic_load(&stop_requested_mono))
                atomic_store(&stop_requested_mono, now_mono_usec());
        if (the_server)
                api_stop(the_server);
}

static void usage(FILE *f) {
        fputs("Usage: rprd [OPTION]...\n"
              "The rpr daemon: stores manifests and serves the rpr HTTP API.\n\n"
              "  --state-dir DIR        state directory (default ./.rpr, created 0700)\n"
              "  --log-dir DIR          activity and connectivity logs (default STATE/logs)\n"
              "  --listen unix:PATH     listen on a unix socket (repeatable)\n"
              "  --listen tcp:HOST:PORT listen on TCP (repeatable)\n"
              "  --listen tls:HOST:PORT listen on TCP with TLS (repeatable): agents, remote\n"
              "                         rprctl and dashboards\n"
              "                         default: unix:STATE/rpr.sock and tcp:127.0.0.1:8270\n"
              "  --tls-cert FILE, --tls-key FILE\n"
              "                         the TLS listeners' certificate (PEM, chain) and key;\n"
              "                         default: a self-signed one made on first start in\n"
              "                         STATE/tls (its key's fingerprint is printed at start)\n"
              "  --store sqlite:PATH    the store (default sqlite:STATE/state.db)\n"
              "  --workers N            threads for blocking work (default 2)\n"
              "  --idle-exit DURATION   exit after being idle this long (e.g. 10m)\n"
              "  --stop-grace DURATION  on SIGTERM, how long running commands may finish\n"
              "                         before they are canceled (default 30s)\n"
              "  --web-dir DIR          dashboard files (default ./web, else /usr/share/rpr/web)\n"
              "  --max-body BYTES       largest request body accepted (default 16777216)\n"
              "  --log-level LEVEL      error, warning, info or debug (default info)\n"
              "  --anonymous-read       let reads without a token through (as viewer): the\n"
              "                         dashboard's read-only view; writes always need one\n"
              "  --allow-networks CIDR[,CIDR...]\n"
              "                         the only networks rprd connects to (ssh, git, GitHub,\n"
              "                         everything); others are refused before any packet is\n"
              "                         sent (default: everywhere)\n"
              "  --watch-backlog EVENTS the most changes kept for a watcher that lags\n"
              "                         (default 1048576, at least 8192); one further\n"
              "                         behind gets 410 Gone and lists again\n"
              "  --allowed-host NAME    a name browsers may reach rprd by, besides localhost and\n"
              "                         IP addresses (repeatable; against DNS rebinding)\n"
              "  --max-streams N        watch, run log and exec streams held at once, in all\n"
              "                         (default: 1024, or half the connections the fd limit allows)\n"
              "  --max-streams-per-caller N\n"
              "                         streams one token (or anonymous address) may hold (default 64)\n"
              "  --max-exec-threads N   threads running exec commands at once, in all (default 256)\n"
              "  --no-controllers       serve the API only, reconcile nothing (an API replica;\n"
              "                         tests of the API alone)\n"
              "  -h, --help             show this help\n"
              "  --version              show the version\n",
              f);
}

static int bad(const char *flag, const char *value, const char *why) {
        fprintf(stderr, "rprd: %s: \"%s\" %s\n", flag, value, why);
        return -EINVAL;
}

static bool is_dir(const char *path) {
        struct stat st;

        return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int check_listen(const char *v) {
        uint64_t port;

        if (startswith(v, "unix:"))
                return v[5] ? 0 : bad("--listen", v, "needs a path after unix:");
        if (!startswith(v, "tcp:") && !startswith(v, "tls:"))
                return bad("--listen", v, "must be unix:PATH, tcp:HOST:PORT or tls:HOST:PORT");
        const char *colon = strrchr(v + 4, ':');
        if (!colon || colon == v + 4 || parse_uint64(colon + 1, &port) < 0 || port == 0 || port > 65535)
                return bad("--listen", v, startswith(v, "tls:") ? "must be tls:HOST:PORT with a port from 1 to 65535"
                                                                : "must be tcp:HOST:PORT with a port from 1 to 65535");
        return 0;
}

static int check_networks(const char *v) {
        EgressList *l = NULL;
        char err[256];

        if (egress_list_parse(v, &l, err, sizeof err) < 0) {
                fprintf(stderr, "rprd: %s\n", err);
                return -EINVAL;
        }
        egress_list_free(l);
        return 0;
}

/* The allow-list is in force before any thread could connect anywhere. */
static void egress_setup(const Options *o) {
        EgressList *l = NULL;
        char err[256];

        if (!o->allow_networks || egress_list_parse(o->allow_networks, &l, err, sizeof err) < 0)
                return; /* checked with the other flags */
        log_info("outbound connections only to %s (--allow-networks)", egress_list_text(l));
        egress_policy_set(l);
}

static int parse_level(const char *v, int *ret) {
        static const struct {
                const char *name;
                int level;
        } levels[] = {{"error", LOG_LEVEL_ERR},
                      {"warning", LOG_LEVEL_WARNING},
                      {"info", LOG_LEVEL_INFO},
                      {"debug", LOG_LEVEL_DEBUG}};

        for (size_t i = 0; i < ELEMENTSOF(levels); i++)
                if (STREQ(v, levels[i].name)) {
                        *ret = levels[i].level;
                        return 0;
                }
        return bad("--log-level", v, "must be error, warning, info or debug");
}

enum {
        ARG_STATE_DIR = 0x100,
        ARG_LOG_DIR,
        ARG_LISTEN,
        ARG_STORE,
        ARG_WORKERS,
        ARG_IDLE_EXIT,
        ARG_WEB_DIR,
        ARG_MAX_BODY,
        ARG_LOG_LEVEL,
        ARG_NO_CONTROLLERS,
        ARG_ANONYMOUS_READ,
        ARG_STOP_GRACE,
        ARG_ALLOW_NETWORKS,
        ARG_WATCH_BACKLOG,
        ARG_ALLOWED_HOST,
        ARG_MAX_STREAMS,
        ARG_MAX_STREAMS_PER_CALLER,
        ARG_MAX_EXEC_THREADS,
        ARG_TLS_CERT,
        ARG_TLS_KEY,
        ARG_VERSION
};

/* A limit flag: a whole number from 1 to 1,000,000. */
static int parse_limit(const char *flag, const char *v, unsigned *ret) {
        uint64_t n;

        if (parse_uint64(v, &n) < 0 || n == 0 || n > 1000000)
                return bad(flag, v, "must be a number from 1 to 1000000");
        *ret = (unsigned) n;
        return 0;
}

static int parse_one(Options *o, int c, const char *v) {
        uint64_t n;

        switch (c) {
        case ARG_STATE_DIR:
                o->state_dir = *v ? v : NULL;
                return *v ? 0 : bad("--state-dir", v, "must not be empty");
        case ARG_LOG_DIR:
                o->log_dir = v;
                return *v ? 0 : bad("--log-dir", v, "must not be empty");
        case ARG_LISTEN:
                if (o->n_listen == MAX_LISTEN)
                        return bad("--listen", v, "is one too many (at most 16 listeners)");
                o->listen[o->n_listen++] = v;
                return check_listen(v);
        case ARG_STORE:
                o->store = v;
                if (!startswith(v, "sqlite:") || !v[7])
                        return bad("--store", v, "must be sqlite:PATH (the only store so far)");
                return 0;
        case ARG_WORKERS:
                if (parse_uint64(v, &n) < 0 || n == 0 || n > MAX_WORKERS)
                        return bad("--workers", v, "must be a number from 1 to 256");
                o->workers = (unsigned) n;
                return 0;
        case ARG_IDLE_EXIT:
                if (duration_parse(v, &o->idle_exit_usec) < 0)
                        return bad("--idle-exit", v, "must be a duration like 90s, 10m or 1h30m");
                return 0;
        case ARG_WEB_DIR:
                o->web_dir = v;
                return is_dir(v) ? 0 : bad("--web-dir", v, "is not a directory");
        case ARG_MAX_BODY:
                if (parse_uint64(v, &n) < 0 || n == 0 || n > MAX_BODY_LIMIT)
                        return bad("--max-body", v, "must be a number of bytes from 1 to 1073741824");
                o->max_body = (size_t) n;
                return 0;
        case ARG_ANONYMOUS_READ:
                o->anonymous_read = true;
                return 0;
        case ARG_NO_CONTROLLERS:
                o->no_controllers = true;
                return 0;
        case ARG_STOP_GRACE:
                if (duration_parse(v, &o->stop_grace_usec) < 0)
                        return bad("--stop-grace", v, "must be a duration like 30s or 2m");
                return 0;
        case ARG_LOG_LEVEL:
                return parse_level(v, &o->log_level);
        case ARG_WATCH_BACKLOG:
                if (parse_uint64(v, &n) < 0 || n < STORE_RING_SIZE || n > 64 * (uint64_t) STORE_FEED_LIMIT)
                        return bad("--watch-backlog", v, "must be a number of events from 8192 to 67108864");
                o->watch_backlog = (size_t) n;
                return 0;
        case ARG_ALLOW_NETWORKS:
                if (o->allow_networks)
                        return bad("--allow-networks", v, "comes a second time: give every network in one, separated by commas");
                o->allow_networks = v;
                return check_networks(v);
        case ARG_ALLOWED_HOST:
                if (o->n_allowed_hosts == MAX_LISTEN)
                        return bad("--allowed-host", v, "is one too many (at most 16 names)");
                if (!*v || strpbrk(v, ":/ \t[]"))
                        return bad("--allowed-host", v, "must be a host name without a port");
                o->allowed_hosts[o->n_allowed_hosts++] = v;
                return 0;
        case ARG_MAX_STREAMS:
                return parse_limit("--max-streams", v, &o->max_streams);
        case ARG_MAX_STREAMS_PER_CALLER:
                return parse_limit("--max-streams-per-caller", v, &o->max_streams_per_caller);
        case ARG_MAX_EXEC_THREADS:
                return parse_limit("--max-exec-threads", v, &o->max_exec_threads);
        case ARG_TLS_CERT:
                o->tls_cert = v;
                return access(v, R_OK) == 0 ? 0 : bad("--tls-cert", v, "is not a readable file");
        case ARG_TLS_KEY:
                o->tls_key = v;
                return access(v, R_OK) == 0 ? 0 : bad("--tls-key", v, "is not a readable file");
        }
        return -EINVAL;
}

/* 0 to run, 1 to exit 0 (help, version), negative for a bad command line. */
static int parse_argv(int argc, char **argv, Options *o) {
        static const struct option longopts[] = {
                {"state-dir", required_argument, NULL, ARG_STATE_DIR},
                {"log-dir", required_argument, NULL, ARG_LOG_DIR},
                {"listen", required_argument, NULL, ARG_LISTEN},
                {"store", required_argument, NULL, ARG_STORE},
                {"workers", required_argument, NULL, ARG_WORKERS},
                {"idle-exit", required_argument, NULL, ARG_IDLE_EXIT},
                {"web-dir", required_argument, NULL, ARG_WEB_DIR},
                {"max-body", required_argument, NULL, ARG_MAX_BODY},
                {"log-level", required_argument, NULL, ARG_LOG_LEVEL},
                {"no-controllers", no_argument, NULL, ARG_NO_CONTROLLERS},
                {"anonymous-read", no_argument, NULL, ARG_ANONYMOUS_READ},
                {"stop-grace", required_argument, NULL, ARG_STOP_GRACE},
                {"allow-networks", required_argument, NULL, ARG_ALLOW_NETWORKS},
                {"watch-backlog", required_argument, NULL, ARG_WATCH_BACKLOG},
                {"allowed-host", required_argument, NULL, ARG_ALLOWED_HOST},
                {"max-streams", required_argument, NULL, ARG_MAX_STREAMS},
                {"max-streams-per-caller", required_argument, NULL, ARG_MAX_STREAMS_PER_CALLER},
                {"max-exec-threads", required_argument, NULL, ARG_MAX_EXEC_THREADS},
                {"tls-cert", required_argument, NULL, ARG_TLS_CERT},
                {"tls-key", required_argument, NULL, ARG_TLS_KEY},
                {"help", no_argument, NULL, 'h'},
                {"version", no_argument, NULL, ARG_VERSION},
                {NULL, 0, NULL, 0},
        };
        int c;

        opterr = 0;
        while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) >= 0) {
                if (c == 'h') {
                        usage(stdout);
                        return 1;
                }
                if (c == ARG_VERSION) {
                        printf("rprd %s (%s)\n", RPR_VERSION, RPR_API_VERSION);
                        return 1;
                }
                if (c == ':') {
                        fprintf(stderr, "rprd: %s needs a value\n", argv[optind - 1]);
                        return -EINVAL;
                }
                if (c == '?') {
                        fprintf(stderr, "rprd: unknown option %s (see rprd --help)\n", argv[optind - 1]);
                        return -EINVAL;
                }
                if (parse_one(o, c, optarg) < 0)
                        return -EINVAL;
        }
        if (optind < argc) {
                fprintf(stderr, "rprd: unexpected argument \"%s\" (see rprd --help)\n", argv[optind]);
                return -EINVAL;
        }
        if (!o->tls_cert != !o->tls_key) {
                fprintf(stderr, "rprd: --tls-cert and --tls-key go together: give both, or neither for a "
                                "self-signed certificate\n");
                return -EINVAL;
        }
        return 0;
}

static const char *default_web_dir(void) {
        if (is_dir("web"))
                return "web";
        if (is_dir("/usr/share/rpr/web"))
                return "/usr/share/rpr/web";
        return NULL;
}

/* What runs behind the API: the controller loop and what it drives. */
typedef struct Daemon {
        Store *store;
        SshPool *ssh;
        LogFile *connectivity;
        LogFile *activity;
        Controller *controller;
        ServerController *servers;
        TokenController *tokens;
        GithubClient *github;
        RepoController *repos;
        SyncController *syncs;
        RunController *runs;
        BindingController *bindings;
        CommandController *commands;
        PipelineController *pipelines;
        RunnerController *runners;
        Webhook *webhook;
        Agents *agents;
        char *run_dir;
} Daemon;

/* An agent came or went: its Server's status says so at once. */
static void on_agent_presence(void *userdata, const char *ns, const char *server, bool online) {
        (void) online;
        server_check_soon(userdata, ns, server);
}

static int logs_open(const Options *o, Daemon *d) {
        int r = logfile_open(o->log_dir, "connectivity", &d->connectivity);

        if (r >= 0)
                r = logfile_open(o->log_dir, "activity", &d->activity);
        if (r < 0)
                fprintf(stderr, "rprd: cannot open the logs in %s: %s\n", o->log_dir, strerror(-r));
        return r;
}

static int controllers_setup(const Options *o, Daemon *d) {
        _cleanup_free_ char *cache = xasprintf("%s/cache/repos", o->state_dir);
        int r;

        r = controller_new(d->store, CONTROLLER_WORKERS, &d->controller);
        if (r < 0)
                return r;
        r = server_controller_new(
                &(ServerOptions){d->store, d->controller, d->ssh, d->connectivity, d->agents}, &d->servers);
        if (r < 0)
                return r;
        agents_set_presence(d->agents, on_agent_presence, d->servers);
        r = token_controller_new(d->store, d->controller, &d->tokens);
        if (r < 0)
                return r;
        r = github_client_new(NULL, &d->github);
        if (r < 0)
                return r;
        RepoOptions ro = {d->store, d->controller, d->tokens, d->github, cache, d->activity};
        r = repo_controller_new(&ro, &d->repos);
        if (r < 0)
                return r;
        r = sync_controller_new(&(SyncOptions){d->store, d->controller, d->repos, d->activity}, &d->syncs);
        if (r < 0)
                return r;
        d->run_dir = xasprintf("%s/runs", o->state_dir);
        r = run_controller_new(
                &(RunOptions){d->store, d->controller, d->servers, d->ssh, d->run_dir, d->activity, d->agents},
                &d->runs);
        if (r < 0)
                return r;
        RunnerOptions rno = {d->store, d->controller, d->tokens, d->github, d->servers, d->ssh, o->state_dir, d->activity};
        r = runner_controller_new(&rno, &d->runners);
        if (r < 0)
                return r;
        BindingOptions bo = {d->store, d->controller, d->repos, d->servers, d->runs, d->run_dir, d->activity};
        r = binding_controller_new(&bo, &d->bindings);
        if (r < 0)
                return r;
        r = command_controller_new(&(CommandOptions){d->store, d->controller, d->runs, d->run_dir, d->activity},
                                   &d->commands);
        if (r < 0)
                return r;
        PipelineOptions po = {d->store, d->controller, d->runs, d->repos, d->servers, d->ssh, d->run_dir, d->activity};
        return pipeline_controller_new(&po, &d->pipelines);
}

/* workflow_job deliveries go to the Runner controller (autoscaling). */
static int workflow_job(void *userdata, const char *ns, const char *token, const json_t *payload, char **ret_message) {
        return runner_workflow_job(userdata, ns, token, payload, ret_message);
}

static int daemon_setup(const Options *o, Daemon *d) {
        int r;

        r = ssh_pool_new(SSH_MAX_RUNNING, &d->ssh);
        if (r < 0) {
                fprintf(stderr, "rprd: cannot set up ssh: %s\n", strerror(-r));
                return r;
        }
        d->agents = agents_new();
        r = logs_open(o, d);
        if (r < 0)
                return r;
        r = controllers_setup(o, d);
        if (r >= 0)
                r = webhook_new(d->store, o->no_controllers ? NULL : d->repos, d->tokens, &d->webhook);
        if (r >= 0 && !o->no_controllers)
                webhook_on_workflow_job(d->webhook, workflow_job, d->runners);
        if (r < 0)
                fprintf(stderr, "rprd: cannot set up the controllers: %s\n", strerror(-r));
        return r;
}

/* Stops the loop first: nothing may touch the store once it is closed. */
static void daemon_free(Daemon *d) {
        if (d->pipelines)
                pipeline_controller_drain(d->pipelines, 0);
        if (d->runs)
                run_controller_drain(d->runs, 0);
        controller_free(d->controller);
        binding_controller_free(d->bindings);
        command_controller_free(d->commands);
        runner_controller_free(d->runners);
        pipeline_controller_free(d->pipelines);
        run_controller_free(d->runs);
        free(d->run_dir);
        webhook_free(d->webhook);
        sync_controller_free(d->syncs);
        repo_controller_free(d->repos);
        github_client_free(d->github);
        token_controller_free(d->tokens);
        server_controller_free(d->servers);
        agents_free(d->agents);
        ssh_pool_free(d->ssh);
        logfile_free(d->connectivity);
        logfile_free(d->activity);
        gitremote_shutdown();
}

/* What is left of --stop-grace since SIGTERM came. */
static uint64_t grace_left(const Options *o) {
        uint64_t since = atomic_load(&stop_requested_mono), now = now_mono_usec();

        if (!since)
                return o->stop_grace_usec;
        return since + o->stop_grace_usec > now ? since + o->stop_grace_usec - now : 0;
}

static int serve(const Options *o, Daemon *d) {
        _cleanup_free_ char *error = NULL;
        ApiServer *a = NULL;
        ApiOptions ao = {
                .store = d->store,
                .listen = o->listen,
                .n_listen = o->n_listen,
                .state_dir = o->state_dir,
                .web_dir = o->web_dir,
                .max_body = o->max_body,
                .workers = o->workers,
                .stop_grace_usec = o->stop_grace_usec,
                /* Not running: /healthz must not report a loop that never ticks. */
                .controller = o->no_controllers ? NULL : d->controller,
                .servers = d->servers,
                .ssh = d->ssh,
                .connectivity = d->connectivity,
                .activity = d->activity,
                .repos = d->repos,
                .syncs = d->syncs,
                .tokens = o->no_controllers ? NULL : d->tokens,
                .webhook = d->webhook,
                .bindings = o->no_controllers ? NULL : d->bindings,
                .pipelines = o->no_controllers ? NULL : d->pipelines,
                .runs = o->no_controllers ? NULL : d->runs,
                .run_dir = d->run_dir,
                .agents = d->agents,
                .anonymous_read = o->anonymous_read,
                .max_streams = o->max_streams,
                .max_streams_per_caller = o->max_streams_per_caller,
                .max_exec_threads = o->max_exec_threads,
                .allowed_hosts = o->allowed_hosts,
                .n_allowed_hosts = o->n_allowed_hosts,
                .tls_cert = o->tls_cert,
                .tls_key = o->tls_key,
        };
        if (o->n_fds > 0) {
                ao.fds = o->fds;
                ao.fd_names = (const char *const *) o->fd_names;
                ao.n_fds = o->n_fds;
        }
        int r = api_new_verbose(&ao, &a, &error);

        if (r < 0) {
                fprintf(stderr, "rprd: %s\n", error ? error : strerror(-r));
                return r;
        }
        Supervisor sv = {.store = d->store,
                         .api = a,
                         .controller = o->no_controllers ? NULL : d->controller,
                         .runs = o->no_controllers ? NULL : d->runs,
                         .pipelines = o->no_controllers ? NULL : d->pipelines,
                         .logs = {d->connectivity, d->activity},
                         .idle_exit_usec = o->idle_exit_usec};
        supervise_watchdog_setup(&sv);
        /* Only once the listeners are bound: a bad address fails start-up
         * before any check runs. */
        r = o->no_controllers ? 0 : controller_start(d->controller);
        if (r < 0) {
                fprintf(stderr, "rprd: cannot start the controllers: %s\n", strerror(-r));
                api_free(a);
                return r;
        }
        for (size_t i = 0; i < o->n_fds; i++)
                fprintf(stderr, "rprd: listening on fd %d (%s), from socket activation\n", o->fds[i], o->fd_names[i]);
        for (size_t i = 0; o->n_fds == 0 && i < o->n_listen; i++)
                fprintf(stderr, "rprd: listening on %s\n", o->listen[i]);
        if (api_tls_fingerprint(a))
                fprintf(stderr, "rprd: TLS certificate %s, key fingerprint %s\n", api_tls_cert_path(a),
                        api_tls_fingerprint(a));
        fprintf(stderr, "rprd: admin token in %s/admin.token\n", o->state_dir);

        r = supervise_start(&sv);
        if (r < 0) {
                fprintf(stderr, "rprd: cannot start the supervisor thread: %s\n", strerror(-r));
                controller_stop(d->controller);
                api_free(a);
                return r;
        }
        the_server = a;
        if (stop_early)
                api_stop(a);
        systemd_notifyf("READY=1\nSTATUS=serving %zu objects", store_count(d->store, NULL));
        r = api_run(a);
        systemd_notify("STOPPING=1");
        the_server = NULL;
        supervise_stop(&sv);
        pipeline_controller_drain(d->pipelines, grace_left(o));
        run_controller_drain(d->runs, grace_left(o));
        controller_stop(d->controller);
        api_free(a);
        if (r >= 0)
                fprintf(stderr, "rprd: stopped\n");
        return r;
}

static void signals_setup(void) {
        struct sigaction sa = {.sa_handler = on_signal};

        sigemptyset(&sa.sa_mask);
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
        signal(SIGPIPE, SIG_IGN);
        supervise_signals();
}

/* A fixed mmap threshold: glibc's default one rises after the first large
 * buffer is freed, and from then on every large answer (a list of 10,000
 * objects) is carved from the heap and stays in rprd's footprint. 16 KiB,
 * not more: OpenSSL takes a ~17 KB record buffer for every read and write
 * of a TLS connection and gives it back (SSL_MODE_RELEASE_BUFFERS); from
 * the heap, 10,000 agents' answers carved those out of every free hole in
 * turn and 7 MB of freed pages crept back into RSS within seconds of a
 * trim. As mappings they come and go, at no CPU cost measurable. And an
 * arena per core, not glibc's eight: each worker thread that ever parsed a
 * large revision (a Sync of 5,000 objects) kept its own arena's peak, 143
 * MiB after ten syncs against 78 MiB with two arenas, at the same speed. */
static void malloc_setup(void) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);

        mallopt(M_MMAP_THRESHOLD, 16 * 1024);
        mallopt(M_ARENA_MAX, (int) (cores < 2 ? 2 : cores > 16 ? 16 : cores));
}

/* Every connection, stream, run log and ssh session is a file descriptor:
 * take all the kernel allows (the API caps connections below it). */
static void nofile_raise(void) {
        struct rlimit rl;

        if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
                rl.rlim_cur = rl.rlim_max;
                if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
                        log_warning("cannot raise the open file limit: %s", strerror(errno));
        }
}

int main(int argc, char **argv) {
        Options o = {.state_dir = ".rpr", .log_level = LOG_LEVEL_INFO, .stop_grace_usec = 30 * USEC_PER_SEC};
        _cleanup_free_ char *log_dir = NULL, *store_url = NULL, *sock = NULL;
        Store *store = NULL;
        int r;

        r = parse_argv(argc, argv, &o);
        if (r != 0)
                return r > 0 ? 0 : 1;
        log_set_max_level(o.log_level);

        if (!o.log_dir)
                o.log_dir = log_dir = xasprintf("%s/logs", o.state_dir);
        if (!o.store)
                o.store = store_url = xasprintf("sqlite:%s/state.db", o.state_dir);
        if (systemd_journal_wanted())
                log_set_sink(systemd_journal_sink, getenv("RPR_JOURNAL_SOCKET"));
        if (o.n_listen == 0) {
                o.listen[o.n_listen++] = sock = xasprintf("unix:%s/rpr.sock", o.state_dir);
                o.listen[o.n_listen++] = "tcp:127.0.0.1:8270";
        }
        if (!o.web_dir)
                o.web_dir = default_web_dir();

        signals_setup();
        malloc_setup();
        egress_setup(&o);
        nofile_raise();

        r = resource_init();
        if (r < 0) {
                fprintf(stderr, "rprd: the embedded kind schemas are broken: %s\n", strerror(-r));
                return 1;
        }
        r = mkdir_p(o.state_dir, 0700);
        if (r < 0) {
                fprintf(stderr, "rprd: cannot create state directory %s: %s\n", o.state_dir, strerror(-r));
                resource_shutdown();
                return 1;
        }
        r = state_dir_check(o.state_dir);
        if (r < 0) {
                resource_shutdown();
                return 1;
        }
        r = mkdir_p(o.log_dir, 0750);
        if (r < 0) {
                fprintf(stderr, "rprd: cannot create log directory %s: %s\n", o.log_dir, strerror(-r));
                resource_shutdown();
                return 1;
        }
        r = store_open(o.store, &store);
        if (r < 0) {
                store_open_failed(o.store, r);
                resource_shutdown();
                return 1;
        }
        if (o.watch_backlog)
                store_set_feed_limit(store, o.watch_backlog);

        r = systemd_listeners(&o.fds, &o.fd_names);
        if (r < 0)
                fprintf(stderr, "rprd: cannot take the sockets of socket activation: %s\n", strerror(-r));
        o.n_fds = r > 0 ? (size_t) r : 0;

        Daemon d = {.store = store};
        if (r >= 0)
                r = daemon_setup(&o, &d);
        if (r >= 0)
                r = serve(&o, &d);
        daemon_free(&d);
        store_close(store);
        resource_shutdown();
        free(o.fds);
        systemd_names_free(o.fd_names);
        egress_policy_reset();
        return r < 0 ? 1 : 0;
}
