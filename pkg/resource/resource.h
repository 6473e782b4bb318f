/* resource: the rpr object model.
 *
 * Kinds (Token, Repo, Server, Binding, Command, Pipeline, Runner, Run, Event) are
 * described as data in manifests/kinds/<kind>.yaml, an OpenAPI-style
 * structural schema embedded at build time. One generic defaulter and strict
 * validator serves every kind: type, required, enum, default, minimum and
 * maximum, minLength/maxLength, pattern, format (duration, date-time, date),
 * additionalProperties (false, or a schema for maps). Object metadata is
 * checked here too: name (DNS-1123 label), namespace, labels, annotations.
 *
 * Field paths in diagnostics are dotted: "spec.check.interval",
 * "spec.tasks.build.dependsOn[0]", keys with dots as a["x.y"]. */
#pragma once

#include "base/base.h"

#define RPR_API_VERSION "rpr/v1"

typedef struct Kind Kind;

/* Loads the embedded schemas. Call once at start before anything else here.
 * Returns a negative errno if an embedded schema is itself broken. */
int resource_init(void);
void resource_shutdown(void);

/* Finds a kind by its name ("Server"), singular ("server"), plural
 * ("servers") or short name ("srv"), case-insensitively. NULL if none. */
const Kind *kind_lookup(const char *name);
/* All kinds in a stable order; *ret_n set to the count. */
const Kind *const *kind_all(size_t *ret_n);
const char *kind_name(const Kind *k);   /* "Server" */
const char *kind_plural(const Kind *k); /* "servers" */
const char *kind_short(const Kind *k);  /* "srv", or NULL */
/* Whether users may create it with apply (Run and Event are made by rprd). */
bool kind_user_writable(const Kind *k);
/* Printer columns for `rprctl get`: the extra columns the kind's schema lists
 * under columns, each {name, path (JSONPath-like "status.phase"),
 * wide (bool)}. Borrowed array. */
const json_t *kind_columns(const Kind *k);

/* Checks and completes an object as a user wrote it: apiVersion, kind,
 * metadata (name, namespace defaulted to "default", labels, annotations; the
 * fields rprd sets are dropped), spec defaulted and validated strictly
 * against the kind's schema. status is dropped. Defaults are applied
 * recursively, also inside objects the user gave partly; an absent object is
 * only created when its schema has a default (Server check and Binding
 * backoff have default {}, so they always come back complete). An api
 * Token's inline value is replaced by valueHash here. index is the document index
 * put into every diagnostic. Returns 0, or -EINVAL with every problem found
 * added to d (each with object "Kind/name" and field). obj is modified in
 * place; on error it is left partly defaulted. */
int resource_prepare(json_t *obj, int index, Diags *d);

/* Checks a status as written through the API (PUT .../status) against the
 * kind's status schema, strictly: -EINVAL with every problem in d (object
 * "Kind/name"). Controllers' own writes are not checked here. */
int resource_status_validate(const Kind *k, const char *name, const json_t *status, Diags *d);

/* "Kind/name" of an object for messages, best effort; caller frees. */
char *resource_display_name(const json_t *obj);

/* DNS-1123 label: [a-z0-9]([-a-z0-9]*[a-z0-9])?, at most 63 characters. */
bool resource_name_valid(const char *name);

/* Label selector "k=v,k!=v,k,!k,k in (a,b),k notin (a)". */
typedef struct Selector Selector;
int selector_parse(const char *text, Selector **ret, char **ret_error);
/* Whether an object's metadata.labels match. NULL selector matches all. */
bool selector_matches(const Selector *s, const json_t *labels);
/* The same, asking label(key, userdata) for each label's value (NULL when
 * the object has none): for labels kept in another form than JSON. */
bool selector_matches_with(const Selector *s, const char *(*label)(const char *key, void *userdata),
                           void *userdata);
/* The i-th requirement that asks for one value (k=v, k in (v)), for an
 * index to start from; false when there are not that many. */
bool selector_equality(const Selector *s, size_t i, const char **ret_key, const char **ret_value);
/* A selector of matchLabels ({key: value, ...}: every one equal). */
Selector *selector_from_labels(const json_t *match_labels);
void selector_free(Selector *s);

/* A cron schedule: five fields or an @macro (grammar in resource-cron.c).
 * The one parser: the schema's "cron" format accepts exactly what
 * cron_parse() parses, and the pipeline scheduler runs what it returns. */
typedef struct Cron {
        uint64_t minutes;     /* bit m: minute m */
        uint32_t hours, days; /* bit h; bit d (1..31) */
        uint16_t months;      /* bit m (1..12) */
        uint8_t weekdays;     /* bit w (0 = Sunday) */
        bool any_day, any_weekday; /* the day field is "*" */
} Cron;
/* -EINVAL if expr is not a schedule. */
int cron_parse(const char *expr, Cron *ret);

/* Removes secrets from an object before it leaves rprd (Token spec.value,
 * spec.valueHash, and any field the schema marks x-rpr-secret). Every route
 * that returns an object calls this. */
void resource_redact(json_t *obj);
/* Whether resource_redact() can change an object of this kind; objects of
 * the other kinds may leave as stored, text and all. */
bool kind_has_secrets(const Kind *k);
/* The spec fields (string values) the store indexes, marked x-rpr-index in
 * the schema: "repo" for Binding. NULL-terminated, never NULL. */
const char *const *kind_indexed_fields(const Kind *k);

/* Sets the condition of this type in status.conditions (created when
 * absent), keeping its lastTransitionTime while its status stays the same
 * and the other conditions as they are. */
typedef struct Condition {
        const char *type;
        bool ok; /* status "True" or "False" */
        const char *reason, *message;
        uint64_t now_usec; /* realtime; the transition time when it changes */
} Condition;
void condition_set(json_t *status, const Condition *c);
/* Removes the condition of this type, if there is one. */
void condition_remove(json_t *status, const char *type);
/* The condition of this type (borrowed), or NULL. */
const json_t *condition_get(const json_t *status, const char *type);

/* Text for `rprctl explain`: path is "server", "server.spec",
 * "server.spec.check.interval". Caller frees. -ENOENT with *ret_error set
 * (caller frees) naming the unknown part. */
int resource_explain(const char *path, char **ret_text, char **ret_error);
