/* rprctl: the command line client of rprd, in kubectl's habits.
 *
 * One table lists every verb with its flags and help, as git's commands[]
 * does. Global flags (--server, --token, -n/--namespace, -A) may stand
 * anywhere on the line, before or after the verb; the verb's own flags are
 * parsed with them in one pass so that "-n x get servers" and
 * "get servers -n x" mean the same. */
#include <stdio.h>
#include <string.h>

#include "resource/resource.h"
#include "rprctl.h"

typedef struct Verb {
        const char *name;
        int (*fn)(Ctl *c);
        const CtlOpt *opts;
        const char *usage;
        const char *help;
} Verb;

static const CtlOpt global_opts[] = {
        {"server", 0, true},   {"token", 0, true}, {"namespace", 'n', true},
        {"all-namespaces", 'A', false}, {"help", 'h', false}, {"ca", 0, true},
        {"fingerprint", 0, true}, {NULL, 0, false},
};

static const CtlOpt apply_opts[] = {
        {"filename", 'f', true}, {"recursive", 'R', false}, {"dry-run", 0, false}, {"prune", 0, false},
        {"selector", 'l', true}, {"atomic", 0, false},      {"output", 'o', true},  {"force", 0, false},
        {NULL, 0, false},
};
static const CtlOpt get_opts[] = {
        {"output", 'o', true}, {"selector", 'l', true}, {"watch", 'w', false}, {NULL, 0, false},
};
static const CtlOpt file_opts[] = {
        {"filename", 'f', true}, {"recursive", 'R', false}, {NULL, 0, false},
};
static const CtlOpt token_opts[] = {
        {"role", 0, true}, {"expires", 0, true}, {"namespaces", 0, true}, {NULL, 0, false},
};
static const CtlOpt run_opts[] = {
        {"arg", 0, true},          {"wait", 0, false},    {"servers", 0, true}, {"selector", 'l', true},
        {"wait-timeout", 0, true}, {"timeout", 0, true},  {NULL, 0, false},
};
static const CtlOpt logs_opts[] = {
        {"follow", 'f', false}, {"tail", 0, true}, {"task", 0, true}, {NULL, 0, false},
};
static const CtlOpt exec_opts[] = {
        {"selector", 'l', true}, {"timeout", 0, true}, {"parallel", 0, true}, {NULL, 0, false},
};
/* After the verb, --server names the binding's server to run on; rprd's
 * address (the global --server) goes before the verb. */
static const CtlOpt trigger_opts[] = {{"server", 0, true}, {"failed", 0, false}, {NULL, 0, false}};
static const CtlOpt no_opts[] = {{NULL, 0, false}};
static const CtlOpt reconcile_opts[] = {{"due", 0, false}, {NULL, 0, false}};

static const Verb verbs[] = {
        {"apply", verb_apply, apply_opts, "apply -f FILE|DIR|- [-R] [--dry-run] [--atomic] [--force] [-o name|json|yaml]",
         "Create or update the objects in the manifests. Every document is checked first;\n"
         "nothing is sent if any is invalid. Up to 4 MiB of objects go in one request, all\n"
         "or nothing; more go in several such requests (with --atomic: in one, up to rprd's\n"
         "--max-body). -o json|yaml prints the objects as stored. --force changes objects a\n"
         "Sync manages (it puts them back at its next drift check)."},
        {"get", verb_get, get_opts, "get KIND [NAME...] [-o wide|yaml|json|name] [-l SEL] [-n NS|-A] [-w]",
         "List objects as a table, or print them as YAML or JSON."},
        {"describe", verb_describe, no_opts, "describe KIND NAME",
         "Show one object in detail, with its conditions and events."},
        {"delete", verb_delete, file_opts, "delete -f FILE|DIR [-R] | delete KIND NAME...",
         "Delete objects by name or as named in manifests."},
        {"diff", verb_diff, file_opts, "diff -f FILE|DIR [-R]",
         "Show what apply would change. Exit 0: no changes, 1: changes, 2: error."},
        {"explain", verb_explain, no_opts, "explain KIND[.field.path]", "Describe a kind or one of its fields."},
        {"logs", verb_logs, logs_opts, "logs run/NAME [--task T] [-f] | logs activity|connectivity [--tail N]",
         "Print the output of a run (of one task of a pipeline job with --task), or rprd's\n"
         "activity or connectivity log."},
        {"sync", verb_sync, no_opts, "sync NAME",
         "Apply a Sync's revision now (and correct drift), wait for rprd to answer and\n"
         "print the outcome; exit 1 if it was not applied (the errors are listed)."},
        {"check", verb_action, no_opts, "check server|repo NAME",
         "Check a server or a repository now. For a server: log in, run uptime, print\n"
         "its output and how long it took; exit 1 if it is not reachable."},
        {"exec", verb_exec, exec_opts,
         "exec server NAME...|-l SELECTOR [--timeout D] [--parallel N] -- COMMAND...",
         "Run a command on servers now. Output lines are prefixed with the server's\n"
         "name (stderr to stderr); servers that fail are listed at the end. Exit 1 if\n"
         "any failed."},
        {"trigger", verb_action, trigger_opts, "trigger binding NAME [--server S | --failed]",
         "Run a binding's command now for the current commit, on every one of its servers,\n"
         "on one (--server S) or on those whose last run failed (--failed), whether or\n"
         "not the repository changed. A server whose run is still going gets the new run\n"
         "when it ends. rprd's own --server goes before the verb."},
        {"run", verb_run, run_opts,
         "run pipeline NAME [--arg k=v]... [--wait] | run command [NAME] --servers a,b|-l k=v "
         "[--wait-timeout D] [--timeout D] [--wait] -- COMMAND...",
         "run command: run COMMAND once on each of the servers, now on those that are\n"
         "reachable and on the others as soon as they are back (within --wait-timeout,\n"
         "default 24h), tracked per server in a Command (NAME, or cmd-DATE-TIME-XXXX).\n"
         "With --wait, stay until every server has finished; exit 1 if one failed.\n"
         "run pipeline: start a job of a pipeline. With --wait, stay until it ends and exit with its result\n"
         "(0 Succeeded, 1 otherwise)."},
        {"cancel", verb_action, no_opts, "cancel run NAME", "Cancel a run."},
        {"token", verb_token, token_opts,
         "token create NAME --role viewer|operator|admin [--expires 30d|DATE] [--namespaces a,b]"
         " | token list | token revoke NAME",
         "Manage API tokens. create prints the secret once, on stdout."},
        {"version", verb_version, no_opts, "version", "Print the client's and the server's version."},
        {"admin", verb_admin, no_opts, "admin backup FILE",
         "Write a consistent copy of rprd's store to FILE while it serves (unrestricted admin token)."},
        {"reconcile", verb_reconcile, reconcile_opts, "reconcile --due",
         "Wake rprd (starting it through socket activation) so that what is due gets done;\n"
         "rpr-reconcile.timer runs this for an rprd that exits when idle. Prints what is\n"
         "queued and when the next thing falls due."},
};

static void usage(FILE *f) {
        fprintf(f, "Usage: rprctl [--server URL] [--token TOKEN] [-n NS|-A] VERB [ARGS...]\n\nVerbs:\n");
        for (size_t i = 0; i < ELEMENTSOF(verbs); i++)
                fprintf(f, "  %-10s %s\n", verbs[i].name, verbs[i].usage);
        fprintf(f, "\nrprd is found by --server (unix:PATH, http://HOST:PORT or https://HOST:PORT),\n"
                   "$RPR_SERVER, then unix:./.rpr/rpr.sock or unix:/run/rpr/rpr.sock. The token comes\n"
                   "from --token, $RPR_TOKEN, ~/.config/rpr/token, then rprd's admin.token.\n"
                   "Over https, --ca FILE ($RPR_CA) trusts a certificate authority, and\n"
                   "--fingerprint SHA256:... ($RPR_FINGERPRINT) pins the key rprd printed at start.\n"
                   "Run 'rprctl VERB --help' for a verb's help.\n");
}

static void verb_usage(const Verb *v) {
        printf("Usage: rprctl %s\n\n%s\n", v->usage, v->help);
        if (v->opts[0].name) {
                printf("\nFlags:\n");
                for (const CtlOpt *o = v->opts; o->name; o++) {
                        if (o->short_name)
                                printf("  -%c, --%s%s\n", o->short_name, o->name, o->has_arg ? " VALUE" : "");
                        else
                                printf("      --%s%s\n", o->name, o->has_arg ? " VALUE" : "");
                }
        }
        printf("\nGlobal flags: --server URL, --token TOKEN, -n/--namespace NS, -A/--all-namespaces,\n"
               "--ca FILE, --fingerprint SHA256:...\n");
}

/* ---- parsing ------------------------------------------------------------------ */

static const CtlOpt *find_opt(const CtlOpt *opts, const char *name, size_t len, char short_name) {
        for (const CtlOpt *o = opts; o && o->name; o++) {
                if (short_name ? o->short_name == short_name
                               : strlen(o->name) == len && strncmp(o->name, name, len) == 0)
                        return o;
        }
        return NULL;
}

static void record(Ctl *c, const CtlOpt *o, const char *value) {
        if (o == &global_opts[0])
                c->server = value;
        else if (STREQ(o->name, "token"))
                c->token = value;
        else if (STREQ(o->name, "ca"))
                c->ca = value;
        else if (STREQ(o->name, "fingerprint"))
                c->fingerprint = value;
        else if (STREQ(o->name, "namespace")) {
                c->ns = value;
                c->ns_given = true;
        } else if (STREQ(o->name, "all-namespaces"))
                c->all_namespaces = true;
        else {
                c->args = xrealloc(c->args, (c->n_args + 1) * sizeof(CtlArg));
                c->args[c->n_args++] = (CtlArg){o->name, value};
        }
}

/* One option at argv[*i]; verb_opts may be NULL before the verb is known.
 * A name both kinds have is the verb's after the verb, global before it. */
static int parse_one(Ctl *c, int argc, char **argv, int *i, const CtlOpt *verb_opts, bool after_verb) {
        const char *a = argv[*i], *value = NULL;
        const CtlOpt *o;

        if (a[1] == '-') {
                const char *name = a + 2, *eq = strchr(name, '=');
                size_t len = eq ? (size_t) (eq - name) : strlen(name);
                o = after_verb ? find_opt(verb_opts, name, len, 0) : NULL;
                o = o ?: find_opt(global_opts, name, len, 0) ?: find_opt(verb_opts, name, len, 0);
                if (!o)
                        return verb_opts ? ctl_error("unknown flag --%.*s", (int) len, name), -EINVAL : 0;
                if (eq && !o->has_arg)
                        return ctl_error("flag --%s takes no value", o->name), -EINVAL;
                value = eq ? eq + 1 : NULL;
        } else {
                o = find_opt(global_opts, NULL, 0, a[1]) ?: find_opt(verb_opts, NULL, 0, a[1]);
                if (!o)
                        return verb_opts ? ctl_error("unknown flag -%c", a[1]), -EINVAL : 0;
                if (a[2] && o->has_arg)
                        value = a[2] == '=' ? a + 3 : a + 2; /* -o=json as kubectl takes it */
                else if (a[2])
                        return ctl_error("flag -%c takes no value", a[1]), -EINVAL;
        }

        if (o->has_arg && !value) {
                if (*i + 1 >= argc)
                        return ctl_error("flag %s needs a value", a), -EINVAL;
                value = argv[++*i];
        }
        record(c, o, o->has_arg ? value : "true");
        return 1;
}

/* The first argument that is neither a flag nor a global flag's value. */
static const char *find_verb(int argc, char **argv, int *ret_index) {
        for (int i = 1; i < argc; i++) {
                const char *a = argv[i];
                if (a[0] != '-' || !a[1]) {
                        *ret_index = i;
                        return a;
                }
                if (STREQ(a, "--"))
                        break;
                const CtlOpt *o = a[1] == '-' ? find_opt(global_opts, a + 2, strcspn(a + 2, "="), 0)
                                              : find_opt(global_opts, NULL, 0, a[1]);
                if (o && o->has_arg && !strchr(a, '=') && (a[1] == '-' || !a[2]))
                        i++;
        }
        return NULL;
}

static int parse_all(Ctl *c, int argc, char **argv, int verb_index, const CtlOpt *opts) {
        bool dashdash = false;

        c->pos = xcalloc(argc, sizeof(char *));
        for (int i = 1; i < argc; i++) {
                const char *a = argv[i];
                if (i == verb_index)
                        continue;
                if (!dashdash && STREQ(a, "--")) {
                        dashdash = true;
                        c->dashdash = true;
                        c->n_pos_before_dashdash = c->n_pos;
                        continue;
                }
                if (dashdash || a[0] != '-' || !a[1]) {
                        c->pos[c->n_pos++] = argv[i];
                        continue;
                }
                int r = parse_one(c, argc, argv, &i, opts, i > verb_index);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int run(int argc, char **argv) {
        Ctl c = {.ns = "default"};
        int verb_index = 0, r;
        const char *name = find_verb(argc, argv, &verb_index);
        const Verb *v = NULL;

        for (size_t i = 0; name && i < ELEMENTSOF(verbs); i++)
                if (STREQ(verbs[i].name, name))
                        v = &verbs[i];

        if (!name || STREQ(name, "help")) {
                bool asked = name || (argc > 1 && (STREQ(argv[1], "-h") || STREQ(argv[1], "--help")));
                usage(asked ? stdout : stderr);
                return asked ? 0 : 1;
        }
        if (!v) {
                usage(stderr);
                return ctl_error("unknown verb \"%s\"", name);
        }

        c.verb = v->name;
        r = parse_all(&c, argc, argv, verb_index, v->opts);
        if (!c.dashdash)
                c.n_pos_before_dashdash = c.n_pos;
        if (r >= 0 && ctl_flag(&c, "help"))
                verb_usage(v);
        else if (r >= 0)
                r = v->fn(&c);
        else
                r = STREQ(v->name, "diff") ? 2 : 1;

        client_free(c.client);
        free(c.pos);
        free(c.args);
        return r;
}

int main(int argc, char **argv) {
        int r = resource_init();
        if (r < 0) {
                fprintf(stderr, "error: cannot load the kind schemas: %s\n", strerror(-r));
                return 1;
        }
        r = run(argc, argv);
        resource_shutdown();
        return r;
}

/* ---- flag access ------------------------------------------------------------- */

const char *ctl_opt(const Ctl *c, const char *name) {
        for (size_t i = c->n_args; i > 0; i--)
                if (STREQ(c->args[i - 1].name, name))
                        return c->args[i - 1].value;
        return NULL;
}

bool ctl_flag(const Ctl *c, const char *name) {
        for (size_t i = 0; i < c->n_args; i++)
                if (STREQ(c->args[i].name, name))
                        return true;
        return false;
}

size_t ctl_opt_all(const Ctl *c, const char *name, const char ***ret) {
        const char **v = xcalloc(c->n_args + 1, sizeof(char *));
        size_t n = 0;

        for (size_t i = 0; i < c->n_args; i++)
                if (STREQ(c->args[i].name, name))
                        v[n++] = c->args[i].value;
        *ret = v;
        return n;
}
