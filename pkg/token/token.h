/* token: Tokens, the secrets rpr uses (github, webhook, ssh-key) or
 * accepts (api).
 *
 * Two things live here. token_secret_read() is the one place a Token's
 * secret is read (inline value, valueFrom.file or valueFrom.env) and the
 * one place its type and expiry are enforced for whoever refers to it, with
 * errors that name the Token and where its secret should be, never the
 * secret. And the Token controller, the only writer of a Token's status:
 * expires (the effective expiry: spec.expires, else the date GitHub
 * reported for a github token), expiresIn, the Expired and ExpiringSoon
 * (< 14 days) conditions and lastUsed, re-evaluated when the next of those
 * would change. What other modules observe (a token used, GitHub's reported
 * expiry) they hand over with token_note_*(), which only records it in
 * memory and queues the Token: the write happens on the controller. */
#pragma once

#include "base/base.h"

typedef struct Store Store;
typedef struct Controller Controller;
typedef struct TokenController TokenController;

#define TOKEN_EXPIRING_SOON_USEC (14 * 24 * 3600 * USEC_PER_SEC)
#define TOKEN_SECRET_MAX (64 * 1024) /* bytes of a secret file, at most */

/* ---- secrets ------------------------------------------------------------ */

typedef struct TokenSecret {
        char *data; /* NUL-terminated; a trailing newline of a file is dropped */
        size_t len;
        uint64_t expires_usec; /* the effective expiry, 0 = none */
        json_int_t generation; /* of the Token, to notice it changed */
} TokenSecret;

/* Reads the secret of Token ns/name for a user that needs one of the types
 * in want_types (NULL-terminated; NULL = any). field names the referring
 * field in messages ("spec.tokenRef"). On failure returns -ENOENT (absent),
 * -EKEYEXPIRED (expired), -EINVAL (wrong type, unreadable secret) and sets
 * *ret_reason (static: "MissingReference", "TokenExpired", "TokenUnusable")
 * and *ret_error (caller frees). Free with token_secret_clear(). */
int token_secret_read(Store *store, const char *ns, const char *name, const char *const *want_types,
                      const char *field, TokenSecret *ret, const char **ret_reason, char **ret_error);
/* Wipes and frees the secret. */
void token_secret_clear(TokenSecret *t);

/* Why data (len bytes) cannot be the secret of a Token of type (static
 * text), or NULL when it can: a control character (NUL, CR, LF, ESC, DEL,
 * ...) would end up as extra HTTP headers; only an ssh-key's PEM text may
 * hold line breaks. Never names the secret. */
const char *token_secret_problem(const char *type, const char *data, size_t len);

/* A Token's effective expiry (spec.expires, else status.expires), 0 = none. */
uint64_t token_expires(const json_t *token);

/* ---- the controller ------------------------------------------------------ */

int token_controller_new(Store *store, Controller *controller, TokenController **ret);
void token_controller_free(TokenController *t); /* NULL-safe */

/* The token was used now (status.lastUsed, written at most once a minute
 * per Token). Cheap, thread-safe, never blocks on the store: callable from
 * the HTTP loop. */
void token_note_used(TokenController *t, const char *ns, const char *name);
/* GitHub said this github token expires at expires_usec (realtime). */
void token_note_expiry(TokenController *t, const char *ns, const char *name, uint64_t expires_usec);

/* "13d", "5h", "42m": the time left as status.expiresIn reads. */
char *token_format_left(uint64_t left_usec, char *buf, size_t size);

/* Called (on a worker thread) after a Token's spec changed or it was
 * created or deleted, so that who uses it can look again. */
typedef void (*TokenChangedFn)(void *userdata, const char *ns, const char *name);
void token_on_changed(TokenController *t, TokenChangedFn fn, void *userdata);
