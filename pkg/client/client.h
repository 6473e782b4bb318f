/* client: rprctl's way to rprd's API, over the unix socket or TCP (libcurl).
 *
 * Finding rprd: --server URL (http://HOST:PORT or unix:PATH), then
 * $RPR_SERVER, then unix:./.rpr/rpr.sock, then unix:/run/rpr/rpr.sock.
 * (unix:./.rpr/rpr.sock is the answer when neither socket exists, so that
 * errors name the place a hand-started rprd would use.) A server may also be
 * written tcp:HOST:PORT, HOST:PORT or a bare /path (a unix socket).
 * Finding the token: --token, $RPR_TOKEN, ~/.config/rpr/token (or
 * $XDG_CONFIG_HOME/rpr/token), then a readable admin.token beside the socket
 * that was found ($STATE/admin.token); for a TCP server ./.rpr/admin.token,
 * then /var/lib/rpr/admin.token. A token file's first word is the token.
 *
 * Timeouts: 5 s to connect, 120 s for a whole request, none for streams.
 * Answers are bounded to 256 MiB. The token never appears in any message. */
#pragma once

#include "base/base.h"

typedef struct Client Client;

/* server and token may be NULL to use the lookup above. */
int client_new(const char *server, const char *token, Client **ret); /* -EINVAL: bad server */
void client_free(Client *c); /* NULL-safe */
/* For an https:// server: trust ca_file (PEM) instead of the system's
 * certificate authorities, and/or pin the server's public key by its
 * fingerprint ("SHA256:BASE64", as rprd prints it at start) — with a pin
 * the certificate's issuer and name are not checked, its key is. NULL
 * leaves each as $RPR_CA and $RPR_FINGERPRINT say (or unset). -EINVAL for
 * a fingerprint that is not SHA256: and 43 base64 characters. */
int client_set_tls(Client *c, const char *ca_file, const char *fingerprint);
/* Replaces the token found by the lookup: token, or none at all (NULL),
 * for callers with their own credential (rpr-agent). */
void client_set_token(Client *c, const char *token);
/* The User-Agent sent ("rprctl/VERSION" by default); copied. */
void client_set_user_agent(Client *c, const char *user_agent);
/* The URL or unix:PATH in use, for messages. */
const char *client_server(const Client *c);
/* Whether a token was given or found (for a hint on 401). */
bool client_has_token(const Client *c);

typedef struct ClientResponse {
        long status;
        char *body; /* NUL-terminated */
        size_t len;
} ClientResponse;

void client_response_clear(ClientResponse *r);

/* One request; body may be NULL. path starts with "/" and is already
 * escaped. Negative errno only when rprd could not be reached at all (with
 * an explanation through *ret_error, caller frees): -EKEYREJECTED when
 * its TLS certificate was not trusted or its key not the pinned one. Any
 * HTTP status is 0. */
int client_request(Client *c, const char *method, const char *path, const char *content_type,
                   const char *body, size_t len, ClientResponse *ret, char **ret_error);

/* A streaming GET (watch, log follow): calls fn for each complete line
 * (without the newline) until the server ends the stream or fn returns
 * non-zero. ret_status gets the HTTP status. An answer that is not 2xx is
 * not passed to fn: it returns 0 with *ret_error set to its Status message
 * (caller frees); a negative errno as client_request. */
typedef int (*ClientLineFn)(const char *line, size_t len, void *userdata);
int client_stream_lines(Client *c, const char *path, ClientLineFn fn, void *userdata,
                        long *ret_status, char **ret_error);

/* As client_stream_lines() for any method, with a body (may be NULL;
 * content_type NULL = application/json): POST /api/v1/exec. */
int client_stream_request(Client *c, const char *method, const char *path, const char *content_type,
                          const char *body, size_t len, ClientLineFn fn, void *userdata, long *ret_status,
                          char **ret_error);

/* GET path into fd from *offset on (Range: bytes=OFFSET-; an answer of the
 * whole restarts the file), *offset then where it ends. ret_status gets the
 * HTTP status; an answer not 200/206 writes nothing and sets *ret_error to
 * its message (caller frees); a negative errno as client_request, also for
 * a cut transfer (*offset says how far it got). */
int client_download(Client *c, const char *path, int fd, uint64_t *offset, long *ret_status,
                    char **ret_error);

/* For an error answer: the Status message, or a fallback naming the code.
 * Caller frees. */
char *client_error_message(const ClientResponse *r);

/* Percent-escapes a path segment or query value; caller frees. */
char *client_escape(const char *s);
