/* github-private.h: what the files of pkg/github share: the client (its
 * curl share, its ETag cache and rate-limit gates) and one request. */
#pragma once

#include <curl/curl.h>
#include <pthread.h>

#include "github/github.h"

#define GITHUB_DEFAULT_API "https://api.github.com"

struct GithubClient {
        char *user_agent;
        uint64_t connect_timeout_usec, timeout_usec;
        CURLSH *share;
        /* One per kind of shared data: libcurl may hold one while taking another. */
        pthread_mutex_t share_locks[CURL_LOCK_DATA_LAST];

        pthread_mutex_t lock; /* guards below */
        /* cache key -> {"branch", "headEtag", "commit", "listEtag", "branches"} */
        json_t *cache;
        /* api URL + sha256(token) -> realtime usec until which to wait */
        json_t *gates;
};

/* One answer, as far as rpr reads it. */
typedef struct GithubResponse {
        long status;
        Buf body;
        char etag[256];
        long rate_remaining; /* -1 when absent */
        uint64_t rate_reset_usec;
        uint64_t retry_at_usec;
        uint64_t token_expires_usec;
        char *next; /* Link rel="next" */
} GithubResponse;

/* GET url as repo's token, conditional on etag (may be NULL). 0 for a 2xx
 * or 304 (r->status says which); -EIO with res->error and res->message set
 * otherwise (404 included: callers tell what was not found). Counts the
 * request in res. Free r with github_response_clear(). */
int github_request(GithubClient *g, const GithubRepoRef *repo, const char *url, const char *etag,
                   GithubResponse *r, GithubResult *res);
/* As github_request, with a method ("POST", "DELETE") and a JSON body (may
 * be NULL; with one, POST unless method says otherwise). */
int github_send(GithubClient *g, const GithubRepoRef *repo, const char *method, const char *url, const char *body,
                const char *etag, GithubResponse *r, GithubResult *res);
void github_response_clear(GithubResponse *r);

/* The answer's body as JSON (new reference), or NULL with res set to
 * GITHUB_PROTOCOL naming url. */
json_t *github_parse_body(const GithubResponse *r, const char *url, GithubResult *res);

/* GETs url and the pages after it (Link rel="next", at most 50), handing
 * each page's JSON body to page(), which returns < 0 when the body is not
 * the list it wants (then res says "GET URL: the answer is not WHAT").
 * With etag (of an earlier first page; may be NULL) a 304 on the first
 * page ends it at once: 1, and page() never ran. Otherwise 0, with the
 * first page's ETag in ret_etag (optional, 256 bytes); -EIO with res set, for a
 * failed request, a body that is not JSON, or a page() refusal. */
typedef int (*GithubPageFn)(const json_t *body, void *userdata);
int github_get_pages(GithubClient *g, const GithubRepoRef *ref, const char *url, const char *etag, const char *what,
                     GithubPageFn page, void *userdata, char *ret_etag, GithubResult *res);

/* An easy handle for url with what every request of the client has: the
 * User-Agent, the connect timeout, redirects over http(s) only, the shared
 * connections, errbuf (CURL_ERROR_SIZE) for curl's message. NULL when none
 * can be made. */
CURL *github_easy(GithubClient *g, const char *url, char *errbuf);

/* The shared connection and DNS cache, made (and curl initialized) at the
 * first call; NULL if it cannot be made. */
CURLSH *github_share(GithubClient *g);

/* The rate-limit gate of repo's API and token. */
bool github_gate_closed(GithubClient *g, const GithubRepoRef *repo, uint64_t *ret_until);
void github_gate_close(GithubClient *g, const GithubRepoRef *repo, uint64_t until_usec);
