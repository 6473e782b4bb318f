/* resource-private.h: what the files of pkg/resource share and nobody else
 * sees — the Kind record, the generic schema walker, field paths, the kind
 * specific checks and the cron validator. */
#pragma once

#include "resource/resource.h"

struct Kind {
        char *name;       /* "Server" */
        char *plural;     /* "servers" */
        char *short_name; /* "srv", or NULL */
        char *singular;   /* "server" */
        bool user_writable;
        bool has_secrets; /* some field is redacted before leaving rprd */
        char **indexed;   /* spec fields marked x-rpr-index, NULL-terminated */
        json_t *doc;     /* the whole schema document (owns the parts below) */
        json_t *columns; /* normalized [{name, path, wide}] */
        json_t *spec;    /* borrowed from doc */
        json_t *explain; /* synthetic whole-object schema for explain (owned) */
};

/* Where diagnostics of one object go. */
typedef struct Check {
        Diags *diags;
        int index;
        const char *object; /* "Server/web-1" */
} Check;

/* Adds a problem at field (a dotted path) of the object being checked. */
void check_report(Check *c, const char *field, const char *fmt, ...) _printf_(3, 4);

/* ---- resource-util.c: message parts (field paths are in base.h) ------- */

/* ---- resource-schema.c ------------------------------------------------ */

/* Checks a schema from a kind file: known keywords, types, compilable
 * patterns, defaults that satisfy their own schema. -EINVAL (logged at debug
 * level) if broken. Compiled patterns are cached for schema_validate. */
int schema_check(const json_t *schema, const char *where);
/* Fills in defaults, recursively, into value (an object of schema's shape).
 * Absent properties get a copy of their default; absent objects are only
 * created when their schema has a default (usually {}). */
void schema_default(const json_t *schema, json_t *value);
/* Validates value at path against schema strictly, adding every problem to
 * c. Returns the number of problems added. */
size_t schema_validate(const json_t *schema, const json_t *value, const char *path, Check *c);
/* Deletes every property marked x-rpr-secret, recursively. */
void schema_redact(const json_t *schema, json_t *value);
/* Whether any property at any depth is marked x-rpr-secret. */
bool schema_has_secret(const json_t *schema);
/* The schema's type as a word for messages and explain: "string", "integer",
 * "Object", "map[string]string", "[]string", "string or []string". Caller
 * frees. */
char *schema_type_label(const json_t *schema);
/* Frees the compiled patterns. */
void schema_cache_free(void);

/* "(got 12)", "(got \"abc\")", "(got {...})" for messages. Caller frees. */
char *value_got(const json_t *v);

/* ---- resource-meta.c -------------------------------------------------- */

/* The schema of metadata, for validation of its plain parts and explain. */
const json_t *meta_schema(void);
int meta_init(void);
void meta_shutdown(void);

/* ---- resource-checks.c ------------------------------------------------ */

/* Cross-field checks of kind k that the schema cannot express, on a
 * defaulted spec. May complete spec (e.g. hash an api token's value). */
void kind_checks(const Kind *k, json_t *spec, Check *c);

/* ---- resource-cron.c -------------------------------------------------- */

/* Whether text is a five-field cron expression or an @macro; on false,
 * *ret_why (caller frees) says what is wrong. */
bool cron_valid(const char *text, char **ret_why);
