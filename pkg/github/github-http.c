/* github-http: one GitHub API request on libcurl, and what its answer says.
 *
 * Every request goes through github_request(): it refuses at once while the
 * rate-limit gate of its API and token is closed, sends the headers GitHub
 * wants (media type, API version, User-Agent, the token, If-None-Match),
 * reads the headers that matter as they arrive, bounds the body, and turns
 * a failed answer into a GithubError with a message that names the request.
 * Easy handles share one connection and DNS cache, so the thousand polls of
 * a minute ride a few kept-alive connections. */
#include <curl/curl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "egress/egress.h"
#include "github/github-private.h"

#define MAX_BODY (8u * 1024 * 1024)
#define RATE_LIMIT_FALLBACK_USEC (60 * USEC_PER_SEC)

const char *github_error_reason(GithubError e) {
        switch (e) {
        case GITHUB_OK:
                return "OK";
        case GITHUB_BAD_CREDENTIALS:
                return "BadCredentials";
        case GITHUB_NOT_FOUND:
                return "NotFound";
        case GITHUB_BRANCH_NOT_FOUND:
                return "BranchNotFound";
        case GITHUB_RATE_LIMITED:
                return "RateLimited";
        case GITHUB_NETWORK:
                return "NetworkError";
        case GITHUB_NOT_ALLOWED:
                return EGRESS_REASON;
        case GITHUB_PROTOCOL:
                return "ProtocolError";
        case GITHUB_FORBIDDEN:
                return "TokenForbidden";
        case GITHUB_BUSY:
                return "RunnerBusy";
        }
        return "Unknown";
}

void github_response_clear(GithubResponse *r) {
        buf_free(&r->body);
        free(r->next);
        *r = (GithubResponse){0};
}

/* ---- headers ------------------------------------------------------------------ */

static char *header_value(const char *line, size_t len, const char *name) {
        size_t n = strlen(name);

        if (len <= n + 1 || strncasecmp(line, name, n) != 0 || line[n] != ':')
                return NULL;
        const char *v = line + n + 1, *end = line + len;
        while (v < end && (*v == ' ' || *v == '\t'))
                v++;
        while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
                end--;
        return xstrndup(v, end - v);
}

/* "2026-12-01 00:00:00 UTC", or with a numeric offset "+0000", "-0800". */
static uint64_t parse_token_expiration(const char *v) {
        int y, mo, d, h, mi, s, n = 0;
        char zone[16] = "";
        struct tm tm = {0};

        if (sscanf(v, "%d-%d-%d %d:%d:%d %15s%n", &y, &mo, &d, &h, &mi, &s, zone, &n) < 6)
                return 0;
        tm = (struct tm){.tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h, .tm_min = mi, .tm_sec = s};
        time_t t = timegm(&tm);
        if (t == (time_t) -1)
                return 0;
        if ((zone[0] == '+' || zone[0] == '-') && strlen(zone) == 5) {
                long off = ((zone[1] - '0') * 10 + (zone[2] - '0')) * 3600 + ((zone[3] - '0') * 10 + (zone[4] - '0')) * 60;
                t -= zone[0] == '+' ? off : -off;
        }
        return t > 0 ? (uint64_t) t * USEC_PER_SEC : 0;
}

/* Retry-After: seconds, or an HTTP date. */
static uint64_t parse_retry_after(const char *v) {
        uint64_t secs;

        if (parse_uint64(v, &secs) >= 0)
                return now_usec() + secs * USEC_PER_SEC;
        time_t t = curl_getdate(v, NULL);
        return t > 0 ? (uint64_t) t * USEC_PER_SEC : 0;
}

/* The URL of Link's rel="next", or NULL. */
static char *link_next(const char *v) {
        const char *p = v;

        while ((p = strchr(p, '<'))) {
                const char *end = strchr(p, '>');
                if (!end)
                        return NULL;
                const char *comma = strchr(end, ',');
                const char *rel = strstr(end, "rel=\"next\"");
                if (rel && (!comma || rel < comma))
                        return xstrndup(p + 1, end - p - 1);
                p = end;
        }
        return NULL;
}

static size_t on_header(char *line, size_t size, size_t n, void *userdata) {
        GithubResponse *r = userdata;
        size_t len = size * n;
        char *v;

        if (len >= 5 && strncmp(line, "HTTP/", 5) == 0) {
                /* A new answer (after a redirect): forget the last one's. */
                free(r->next);
                r->next = NULL;
                r->etag[0] = '\0';
                r->rate_remaining = -1;
                r->retry_at_usec = 0;
                return len;
        }
        if ((v = header_value(line, len, "ETag"))) {
                snprintf(r->etag, sizeof r->etag, "%s", v);
        } else if ((v = header_value(line, len, "X-RateLimit-Remaining"))) {
                uint64_t x;
                r->rate_remaining = parse_uint64(v, &x) >= 0 ? (long) x : -1;
        } else if ((v = header_value(line, len, "X-RateLimit-Reset"))) {
                uint64_t x;
                r->rate_reset_usec = parse_uint64(v, &x) >= 0 ? x * USEC_PER_SEC : 0;
        } else if ((v = header_value(line, len, "Retry-After"))) {
                r->retry_at_usec = parse_retry_after(v);
        } else if ((v = header_value(line, len, "GitHub-Authentication-Token-Expiration"))) {
                r->token_expires_usec = parse_token_expiration(v);
        } else if ((v = header_value(line, len, "Link"))) {
                free(r->next);
                r->next = link_next(v);
        }
        free(v);
        return len;
}

static size_t on_body(char *data, size_t size, size_t n, void *userdata) {
        GithubResponse *r = userdata;

        return buf_append(&r->body, data, size * n) < 0 ? 0 : size * n;
}

/* ---- the request ---------------------------------------------------------------- */

static struct curl_slist *request_headers(const GithubRepoRef *repo, const char *etag) {
        struct curl_slist *h = NULL;

        h = curl_slist_append(h, "Accept: application/vnd.github+json");
        h = curl_slist_append(h, "X-GitHub-Api-Version: 2022-11-28");
        if (repo->token) {
                _cleanup_free_ char *auth = xasprintf("Authorization: Bearer %s", repo->token);
                h = curl_slist_append(h, auth);
                explicit_bzero(auth, strlen(auth));
        }
        if (etag && *etag) {
                _cleanup_free_ char *inm = xasprintf("If-None-Match: %s", etag);
                h = curl_slist_append(h, inm);
        }
        return h;
}

/* GitHub's "message", quoted into ours (it never holds the token): one
 * flat line of at most 200 bytes, cut between characters. */
static void github_message(const GithubResponse *r, char *buf, size_t size) {
        _cleanup_json_ json_t *j = json_loadb(r->body.data ?: "", r->body.len, 0, NULL);
        _cleanup_free_ char *m = text_flat_dup(json_str_at(j, "message"), 200);

        snprintf_utf8(buf, size, "%s", m);
}

static void set_error(GithubResult *res, GithubError e, const char *fmt, ...) _printf_(3, 4);
static void set_error(GithubResult *res, GithubError e, const char *fmt, ...) {
        va_list ap;

        res->error = e;
        va_start(ap, fmt);
        vsnprintf_utf8(res->message, sizeof res->message, fmt, ap);
        va_end(ap);
        text_flatten(res->message);
}

/* Turns an answer that is neither 2xx nor 304 into res->error; closes the
 * gate when GitHub said to wait. */
static void classify(GithubClient *g, const GithubRepoRef *repo, const char *method, const char *url,
                     const GithubResponse *r, GithubResult *res) {
        char msg[256], when[RFC3339_MAX];
        long st = r->status;

        github_message(r, msg, sizeof msg);
        bool limit_spent = r->rate_remaining == 0 && r->rate_reset_usec > 0;
        if ((st == 403 || st == 429) && (limit_spent || r->retry_at_usec || strcasestr(msg, "rate limit"))) {
                uint64_t until = r->retry_at_usec ? r->retry_at_usec
                                 : limit_spent    ? r->rate_reset_usec
                                                  : now_usec() + RATE_LIMIT_FALLBACK_USEC;
                github_gate_close(g, repo, until);
                res->retry_at_usec = until;
                set_error(res, GITHUB_RATE_LIMITED, "%s %s: %ld %s; waiting until %s", method, url, st, msg,
                          time_format_rfc3339(until, when));
        } else if (st == 401)
                set_error(res, GITHUB_BAD_CREDENTIALS, "%s %s: 401 %s (%s)", method, url, msg,
                          repo->token ? "the token of the Repo is not accepted" : "this API wants a token");
        else if (st == 404)
                set_error(res, GITHUB_NOT_FOUND, "%s %s: 404 %s", method, url, msg);
        else if (st >= 500)
                set_error(res, GITHUB_NETWORK, "%s %s: %ld %s", method, url, st, *msg ? msg : "server error");
        else
                set_error(res, GITHUB_PROTOCOL, "%s %s: unexpected %ld %s", method, url, st, msg);
}

CURL *github_easy(GithubClient *g, const char *url, char *errbuf) {
        CURLSH *share = github_share(g);
        CURL *c = share ? curl_easy_init() : NULL;

        if (!c)
                return NULL;
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_USERAGENT, g->user_agent);
        curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long) (g->connect_timeout_usec / USEC_PER_MSEC));
        curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
        curl_easy_setopt(c, CURLOPT_MAXREDIRS, 5L);
        curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(c, CURLOPT_SHARE, share);
        curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
        return c;
}

int github_request(GithubClient *g, const GithubRepoRef *repo, const char *url, const char *etag,
                   GithubResponse *r, GithubResult *res) {
        return github_send(g, repo, "GET", url, NULL, etag, r, res);
}

int github_send(GithubClient *g, const GithubRepoRef *repo, const char *method, const char *url, const char *body,
                const char *etag, GithubResponse *r, GithubResult *res) {
        char errbuf[CURL_ERROR_SIZE] = "", when[RFC3339_MAX];
        uint64_t until;
        CURLcode code;

        *r = (GithubResponse){.rate_remaining = -1, .body = {.max = MAX_BODY}};
        if (github_gate_closed(g, repo, &until)) {
                res->retry_at_usec = until;
                set_error(res, GITHUB_RATE_LIMITED, "the rate limit of %s for this token is spent until %s; waiting",
                          repo->api_url ?: GITHUB_DEFAULT_API, time_format_rfc3339(until, when));
                return -EIO;
        }

        CURL *c = github_easy(g, url, errbuf);
        if (!c)
                return -ENOMEM;
        struct curl_slist *h = request_headers(repo, etag);
        if (body)
                h = curl_slist_append(h, "Content-Type: application/json");
        if (STREQ(method, "POST"))
                curl_easy_setopt(c, CURLOPT_POSTFIELDS, body ?: "");
        else if (!STREQ(method, "GET"))
                curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
        curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long) (g->timeout_usec / USEC_PER_MSEC));
        curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
        curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
        EgressCurl egress;
        egress_curl_setup(c, &egress);
        code = curl_easy_perform(c);
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
        curl_easy_cleanup(c);
        curl_slist_free_all(h);

        res->requests++;
        res->http_status = (int) r->status;
        res->rate_remaining = r->rate_remaining;
        res->rate_reset_usec = r->rate_reset_usec;
        if (r->token_expires_usec)
                res->token_expires_usec = r->token_expires_usec;
        if (code != CURLE_OK && egress.refused) {
                set_error(res, GITHUB_NOT_ALLOWED, "%s %s: %s", method, url, egress.message);
                return -EIO;
        }
        if (code != CURLE_OK) {
                set_error(res, GITHUB_NETWORK, "%s %s: %s", method, url, *errbuf ? errbuf : curl_easy_strerror(code));
                return -EIO;
        }
        if (r->status == 304)
                res->requests_304++;
        /* The last request of the limit succeeds; the next would not. */
        if (r->rate_remaining == 0 && r->rate_reset_usec > now_usec())
                github_gate_close(g, repo, r->rate_reset_usec);
        if ((r->status >= 200 && r->status < 300) || r->status == 304)
                return 0;
        classify(g, repo, method, url, r, res);
        return -EIO;
}

#define GITHUB_MAX_PAGES 50

int github_get_pages(GithubClient *g, const GithubRepoRef *ref, const char *url, const char *etag, const char *what,
                     GithubPageFn page, void *userdata, char *ret_etag, GithubResult *res) {
        _cleanup_free_ char *next = NULL;

        for (int n = 0; n < GITHUB_MAX_PAGES; n++) {
                GithubResponse r;
                const char *u = next ?: url;
                if (github_request(g, ref, u, n == 0 ? etag : NULL, &r, res) < 0) {
                        github_response_clear(&r);
                        return -EIO;
                }
                if (n == 0 && etag && r.status == 304) {
                        github_response_clear(&r);
                        return 1;
                }
                if (n == 0 && ret_etag)
                        snprintf(ret_etag, 256, "%s", r.etag);
                _cleanup_json_ json_t *body = github_parse_body(&r, u, res);
                if (body && page(body, userdata) < 0) {
                        res->error = GITHUB_PROTOCOL;
                        snprintf(res->message, sizeof res->message, "GET %s: the answer is not %s", u, what);
                        json_decref(TAKE_PTR(body));
                }
                if (!body) {
                        github_response_clear(&r);
                        return -EIO;
                }
                free(next);
                next = TAKE_PTR(r.next);
                github_response_clear(&r);
                if (!next)
                        break;
        }
        return 0;
}
