/* egress: which networks rprd may open connections to (--allow-networks).
 *
 * One allow-list of IPv4 and IPv6 networks (CIDR) for the whole process,
 * set once at start-up. Every outbound connection rprd makes is checked
 * against it after name resolution and before connect(): ssh to Servers
 * (pkg/ssh), HTTP through libcurl (GitHub's API, and whatever else speaks
 * HTTP: egress_curl_setup) and git through libgit2 (egress_git_install
 * replaces libgit2's socket stream, which its http, https, git:// and ssh://
 * transports all use). A refused connection is never attempted; it fails
 * with a message that names the address and the list, e.g.
 *
 *     127.0.0.1/32 only: 10.0.0.5 refused by --allow-networks
 *
 * Checking the resolved address, not the name, is what makes it a security
 * control: a name that resolves to an internal address (DNS rebinding) is
 * refused like the address itself, and an IPv4-mapped IPv6 address
 * (::ffff:10.0.0.5) counts as the IPv4 address it maps.
 *
 * Without a list (the default) everything is allowed. Thread-safe once set. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "base/base.h"

/* The words every refusal message ends with, so that a caller that only
 * gets a library's error text back can still tell a refusal apart. */
#define EGRESS_REFUSED "refused by --allow-networks"
/* The condition reason for a refused connection, the same for every kind. */
#define EGRESS_REASON "NetworkNotAllowed"

typedef struct EgressList EgressList;

/* Parses "CIDR[,CIDR...]" ("127.0.0.0/8,::1/128"; an address alone is a
 * /32 or /128; host bits below the prefix are ignored, as in 127.0.0.1/8).
 * On a bad entry returns -EINVAL and writes a message naming it into err. */
int egress_list_parse(const char *text, EgressList **ret, char *err, size_t errsize);
EgressList *egress_list_free(EgressList *l);
bool egress_list_allows(const EgressList *l, const struct sockaddr *sa);
/* The list as it reads after parsing: "127.0.0.0/8, ::1/128". */
const char *egress_list_text(const EgressList *l);

/* The process-wide list; takes ownership (NULL allows everything). Call
 * before any thread connects anywhere; egress_policy_reset() frees it. */
void egress_policy_set(EgressList *l);
void egress_policy_reset(void);

/* 0 when the policy allows connecting to sa; -EACCES when it does not, with
 * "LIST only: HOST (ADDRESS) refused by --allow-networks" in msg (host may
 * be NULL or the address itself). */
int egress_check(const char *host, const struct sockaddr *sa, char *msg, size_t msgsize);

/* ---- connecting ---------------------------------------------------------------- */

/* Resolves host, checks every address against the policy and connects a
 * TCP socket (O_CLOEXEC, blocking once connected, TCP_NODELAY) to the first
 * allowed one that answers within timeout_usec. Errors, each with a message
 * naming host and port in msg: -EACCES (every address refused by the
 * policy), -ENXIO (the name does not resolve), -ECONNREFUSED,
 * -ETIMEDOUT, or another negative errno of connect(). */
int egress_connect(const char *host, const char *port, uint64_t timeout_usec, int *ret_fd, char *msg,
                   size_t msgsize);

/* ---- libcurl ---------------------------------------------------------------- */

typedef struct EgressCurl {
        bool refused;
        char message[256]; /* the first refusal, when refused */
} EgressCurl;

/* Makes the easy handle check every socket it opens (redirects and proxies
 * included) and note a refusal in *state, which must outlive the transfer.
 * c is a CURL *; void here so that this header does not pull in curl.h. */
void egress_curl_setup(void *c, EgressCurl *state);

/* ---- libgit2 ------------------------------------------------------------------ */

/* Registers the checked socket stream with libgit2 (after git_libgit2_init);
 * negative errno when libgit2 refuses it. */
int egress_git_install(void);
