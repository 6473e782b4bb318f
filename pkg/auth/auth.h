/* auth: who a caller is and what it may do — the one place that decides.
 *
 * A caller (AuthCaller) is a role and a namespace scope: a list of
 * namespaces, or every namespace (unrestricted). Today callers are api
 * Tokens; Users, Org members with per-kind permissions and JWT callers are
 * meant to become AuthCallers too and be judged by the same functions.
 *
 * Three rules live here:
 * - auth_may(): what a role may do (viewer reads, operator also acts,
 *   admin also writes) and where (its namespaces).
 * - auth_check_write(): what an object may hold for the caller who writes
 *   it. Whatever reaches rprd's own host (local execution, host files,
 *   rprd's environment) needs an unrestricted admin; an api Token grants
 *   at most what its writer holds.
 * - auth_token_scope(): what a stored api Token confers, bounded by where
 *   it lives: a Token outside namespace "default" reaches only its own
 *   namespace, whoever wrote it. Only "default" holds tokens that span
 *   namespaces, and writing one there needs a writer that holds that span.
 *
 * auth-tokens.c finds the Token a secret belongs to through an index of
 * hashes; auth-throttle.c backs off sources that keep failing. */
#pragma once

#include "base/base.h"

typedef struct Store Store;

typedef enum AuthRole {
        AUTH_ROLE_NONE = 0,
        AUTH_ROLE_VIEWER,
        AUTH_ROLE_OPERATOR,
        AUTH_ROLE_ADMIN,
        _AUTH_ROLE_MAX,
        _AUTH_ROLE_INVALID = -EINVAL,
} AuthRole;

/* What a request does to the objects of a kind. */
typedef enum AuthVerb {
        AUTH_VERB_READ,    /* get, list, watch, logs */
        AUTH_VERB_OPERATE, /* check, trigger, run, cancel */
        AUTH_VERB_WRITE,   /* apply, put, delete, status, exec, tokens */
        _AUTH_VERB_MAX,
} AuthVerb;

typedef struct AuthCaller {
        AuthRole role;
        const char *name;              /* for messages: the Token's name */
        const char *const *namespaces; /* NULL-terminated; NULL = every namespace */
        /* An rpr agent's credential: the Server (in namespaces[0]) it
         * speaks for, and nothing else (role NONE); NULL for other callers. */
        const char *agent;
} AuthCaller;

/* The namespace whose api Tokens may span namespaces (rprd's admin token
 * lives there). */
#define AUTH_HOME_NAMESPACE "default"

/* "viewer" | "operator" | "admin"; _AUTH_ROLE_INVALID otherwise. */
AuthRole auth_role_from_string(const char *s);
const char *auth_role_to_string(AuthRole r); /* "none" for AUTH_ROLE_NONE */
/* The role a token caller needs for verb. */
AuthRole auth_verb_role(AuthVerb verb);

/* Whether c is the agent of Server ns/server: an agent's credential
 * speaks for its own Server and for nothing else. */
bool auth_may_agent(const AuthCaller *c, const char *ns, const char *server);

/* An admin of every namespace: the only caller that may reach rprd's host. */
bool auth_unrestricted(const AuthCaller *c);
/* Whether ns is in c's scope; ns NULL (every namespace) only when c is
 * unrestricted in scope. */
bool auth_may_namespace(const AuthCaller *c, const char *ns);
/* Whether c's role allows verb on objects of kind (may be NULL), anywhere. */
bool auth_may_verb(const AuthCaller *c, AuthVerb verb, const char *kind);
/* Whether c may do verb to objects of kind (may be NULL) in ns (NULL =
 * every namespace): auth_may_verb and auth_may_namespace. */
bool auth_may(const AuthCaller *c, AuthVerb verb, const char *kind, const char *ns);
/* c's namespaces as "a, b" for messages (caller frees); "every namespace"
 * when unrestricted. */
char *auth_scope_text(const AuthCaller *c);

/* Adds to d (index, field and a message naming why) every field of obj
 * (a whole object, defaulted or not) that makes rprd act on its own host:
 * Server transport local, identityFile, knownHostsFile; Pipeline tasks
 * without server or servers; Token valueFrom (a file or rprd's
 * environment); a git Repo whose url is a path on rprd's host; a Sync with
 * spec.hostAccess. Returns how
 * many. */
size_t auth_host_fields(const json_t *obj, int index, Diags *d);

/* The namespaces an api Token living in ns with spec.namespaces
 * (may be NULL) confers, as a NULL-terminated list (caller frees with
 * auth_strv_free), or NULL for every namespace: see the rules at the top. */
char **auth_token_scope(const char *ns, const json_t *namespaces);
void auth_strv_free(char **l); /* NULL-safe */

/* Whether c may write an api Token in namespace ns with spec: its role no
 * higher than c's, its scope within c's and within what its namespace
 * allows. Problems into d (index, field). Returns how many. */
size_t auth_may_grant(const AuthCaller *c, const char *ns, const json_t *spec, int index, Diags *d);

/* Everything auth says about c writing obj (prepared): the host fields
 * unless c is unrestricted, and auth_may_grant for an api Token. The
 * namespace itself is auth_may()'s. Returns how many problems. */
size_t auth_check_write(const AuthCaller *c, const json_t *obj, int index, Diags *d);

/* The secret rules, on an object before it is prepared (an api Token's
 * value is hashed then): an inline secret has no control characters
 * (token_secret_problem), and
 * an api Token's is at least AUTH_SECRET_MIN_LEN characters and not
 * obviously weak. Returns how many problems were added to d. */
#define AUTH_SECRET_MIN_LEN 16
size_t auth_check_secrets(const json_t *obj, int index, Diags *d);
/* NULL when secret (len bytes) is usable as an api token, else why not
 * (static text). */
const char *auth_secret_weakness(const char *secret, size_t len);

/* ---- auth-tokens.c: from a secret to its Token ----------------------------- */

typedef struct AuthTokens AuthTokens;

/* An index of the api Tokens of store by hash, kept current from the
 * store's change feed (rebuilt when it falls behind). */
int auth_tokens_new(Store *store, AuthTokens **ret);
void auth_tokens_free(AuthTokens *t); /* NULL-safe */

/* What a hashed Token is for. */
typedef enum AuthUse {
        AUTH_USE_API,        /* type api: a bearer token with a role */
        AUTH_USE_AGENT_JOIN, /* type agent without server: trades for an agent's own secret */
        AUTH_USE_AGENT,      /* type agent with server: one agent's credential */
} AuthUse;

typedef struct AuthIdentity {
        AuthCaller caller; /* points into the strings below */
        char *ns;          /* where the Token lives */
        char *expires;     /* spec.expires as written, or NULL */
        uint64_t expires_usec;
        AuthUse use;
        char *server;    /* AUTH_USE_AGENT: spec.server */
        bool single_use; /* AUTH_USE_AGENT_JOIN: spec.singleUse */
} AuthIdentity;

/* The Token secret (len bytes) belongs to: 0 and *ret (free with
 * auth_identity_free); -EKEYEXPIRED and *ret when it has expired; -EACCES
 * when no live api or agent Token has it (unknown, or marked for
 * deletion). Callers check id->use: a join token is no caller of anything
 * but the join. Thread-safe; compares hashes in constant time. */
int auth_tokens_identify(AuthTokens *t, const char *secret, size_t len, AuthIdentity **ret);
void auth_identity_free(AuthIdentity *id); /* NULL-safe */
/* How many api Tokens the index holds (tests, metrics). */
size_t auth_tokens_count(AuthTokens *t);

/* ---- auth-throttle.c: backoff on failed authentications ---------------------- */

typedef struct AuthThrottle AuthThrottle;

#define AUTH_THROTTLE_FREE 10                            /* failures before any wait */
#define AUTH_THROTTLE_MAX_WAIT_USEC (300 * USEC_PER_SEC) /* the longest wait */
#define AUTH_THROTTLE_FORGET_USEC (900 * USEC_PER_SEC)   /* quiet this long: forgotten */
#define AUTH_THROTTLE_SOURCES 4096                       /* sources remembered at once */

AuthThrottle *auth_throttle_new(void);
void auth_throttle_free(AuthThrottle *t); /* NULL-safe */
/* 0 when source may present a credential at now, else the seconds until
 * it may (rounded up). */
unsigned auth_throttle_wait(AuthThrottle *t, const char *source, uint64_t now);
/* Records a failed authentication from source at now; returns the seconds
 * it must now wait (0 while it has free attempts left). */
unsigned auth_throttle_failed(AuthThrottle *t, const char *source, uint64_t now);
