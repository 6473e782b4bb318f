/* rprctl: what the verb files share — the parsed command line, the
 * connection to rprd, manifests read from files, and table printing.
 *
 * Each verb family lives in its own file and exports one int verb_X(Ctl *)
 * returning the process exit code; main.c holds the table of verbs with
 * their flags and help. */
#pragma once

#include <stdio.h>

#include "base/base.h"
#include "client/client.h"

/* ---- command line --------------------------------------------------------- */

typedef struct CtlOpt {
        const char *name; /* long name without "--" */
        char short_name;  /* 0 if none */
        bool has_arg;
} CtlOpt;

typedef struct CtlArg {
        const char *name; /* the CtlOpt's long name */
        const char *value;
} CtlArg;

typedef struct Ctl {
        /* global flags */
        const char *server, *token, *ns;
        const char *ca, *fingerprint; /* --ca, --fingerprint: for https:// servers */
        bool all_namespaces, ns_given;
        /* the verb's own */
        const char *verb;
        char **pos;
        size_t n_pos;
        /* Positional arguments before "--" (n_pos when there is none). */
        size_t n_pos_before_dashdash;
        bool dashdash;
        CtlArg *args;
        size_t n_args;
        Client *client; /* made on first use */
} Ctl;

/* The last value of a flag, or NULL. */
const char *ctl_opt(const Ctl *c, const char *name);
bool ctl_flag(const Ctl *c, const char *name);
/* Every value of a repeatable flag in order; returns the count, caller frees the array. */
size_t ctl_opt_all(const Ctl *c, const char *name, const char ***ret);

/* ---- talking to rprd ------------------------------------------------------------- */

/* Prints "error: ..." to stderr and returns 1 (the exit code). */
int ctl_error(const char *fmt, ...) _printf_(1, 2);
/* One request; on failure to reach rprd prints the error with a hint and
 * returns a negative errno. */
int ctl_request(Ctl *c, const char *method, const char *path, const char *body, size_t len,
                ClientResponse *ret);
/* Prints the Status message of an error answer as "error: ...", returns 1. */
int ctl_http_error(Ctl *c, const ClientResponse *r);
/* GET path and parse the JSON answer. Errors are printed; 404 returns
 * -ENOENT without printing. */
int ctl_get_json(Ctl *c, const char *path, json_t **ret);
/* The client, made on first use; NULL (error printed) when the server is bad. */
Client *ctl_client(Ctl *c);
/* The namespace to use: -n, else "default". */
const char *ctl_namespace(const Ctl *c);
/* -o json and -o yaml of a value, to stdout. */
void ctl_print_json(const json_t *v);
void ctl_print_yaml(const json_t *v);

/* ---- kinds and objects ---------------------------------------------------------- */

typedef struct Kind Kind;
/* Finds the kind named by arg (singular, plural, short, any case); prints an
 * error and returns NULL if unknown. */
const Kind *ctl_kind(const char *arg);
/* "server" for Server; into buf. */
const char *ctl_kind_singular(const Kind *k, char *buf, size_t size);
/* "/api/v1/namespaces/NS/PLURAL[/NAME]" with escaping; caller frees. */
char *ctl_object_path(const Kind *k, const char *ns, const char *name);
/* A string at a dotted path ("metadata.name"); NULL if absent or not a string. */
const char *json_path_str(const json_t *obj, const char *path);
const json_t *json_path_get(const json_t *obj, const char *path);
/* A value as a table cell: strings as-is, numbers, booleans, "<none>"; caller frees. */
char *json_cell(const json_t *v);
/* Age of an RFC 3339 timestamp: "5s", "3m", "2h", "4d"; "<unknown>" if absent. */
void format_age(const char *timestamp, char *buf, size_t size);

/* ---- tables ---------------------------------------------------------------- */

typedef struct Table {
        size_t n_cols, n_rows;
        char **cells; /* n_rows * n_cols, row 0 is the header */
        size_t *widths;
} Table;

void table_init(Table *t, size_t n_cols);
/* Adds a row of n_cols cells; takes ownership of every cell. */
void table_add_row(Table *t, char **cells);
/* Adds a row from string literals or borrowed strings (copied). */
void table_add(Table *t, ...);
/* kubectl's layout: columns left-aligned, three spaces apart. */
void table_print(const Table *t, FILE *f, const char *indent);
void table_free(Table *t);

/* ---- manifests --------------------------------------------------------------- */

typedef struct YamlDoc YamlDoc;

typedef struct Manifest {
        const char *file;   /* borrowed from the set */
        const YamlDoc *doc; /* NULL when the positions are not known */
        char *prefix;       /* field path of the object inside its document: "" or "items[2]" */
        json_t *obj;        /* owned */
} Manifest;

typedef struct ManifestSet {
        Manifest *items;
        size_t n;
        char **files;
        size_t n_files;
        YamlDoc **docs;
        size_t n_docs;
} ManifestSet;

/* Reads every -f of the command line (FILE, a DIR of .yaml, .yml and .json files, -R
 * recursive, "-" stdin) into set. Errors are printed; returns -EINVAL then. */
int manifests_load(Ctl *c, ManifestSet *set);
/* resource_prepare on every object (namespace from -n when absent); prints
 * every problem as FILE:LINE:COL: Kind/name: field: message. -EINVAL if any. */
int manifests_prepare(Ctl *c, ManifestSet *set);
/* Prints a Status answer's details mapped back to file positions (the
 * answer's indexes count from object first of the set); returns 1. */
int manifests_print_status(ManifestSet *set, const ClientResponse *r, size_t first);
/* {"items":[...]} of the objects from first on, as many as fit in max_bytes
 * (at least one), appended to out; returns how many. */
size_t manifests_body_range(const ManifestSet *set, size_t first, size_t max_bytes, Buf *out);
/* All of them. */
char *manifests_body(const ManifestSet *set);
void manifests_free(ManifestSet *set);

/* ---- verbs ------------------------------------------------------------------ */

int verb_apply(Ctl *c);
int verb_get(Ctl *c);
int verb_describe(Ctl *c);
int verb_delete(Ctl *c);
int verb_diff(Ctl *c);
int verb_explain(Ctl *c);
int verb_version(Ctl *c);
int verb_reconcile(Ctl *c);
int verb_token(Ctl *c);
int verb_run(Ctl *c);
int verb_action(Ctl *c);
int verb_logs(Ctl *c);
int verb_exec(Ctl *c);
int verb_admin(Ctl *c);
int verb_sync(Ctl *c);

/* ---- diff ------------------------------------------------------------------- */

/* Unified diff of two texts (by line, 3 lines of context) with the given
 * labels; NULL when they are equal. Caller frees. */
char *text_diff(const char *a, const char *b, const char *label_a, const char *label_b);
