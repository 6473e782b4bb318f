/* client: one libcurl easy handle per Client, reused between requests so
 * that a series of calls (diff, delete of many objects) shares one
 * connection.
 *
 * rprd is either a unix socket (curl connects to the path and the URL is
 * http://localhost/...) or a TCP base URL. Where to find it and which token
 * to send follow the lookup order documented in client.h; nothing here ever
 * prints or returns the token. */
#include <curl/curl.h>
#include <string.h>
#include <unistd.h>

#include "client/client.h"

#define CLIENT_CONNECT_TIMEOUT_MS 5000L
#define CLIENT_REQUEST_TIMEOUT_S 120L
#define CLIENT_MAX_RESPONSE (256u * 1024 * 1024)
#define CLIENT_MAX_LINE (64u * 1024 * 1024)
#define CLIENT_MAX_TOKEN_FILE 4096

struct Client {
        char *server;    /* as shown to people: unix:PATH or http://HOST:PORT */
        char *unix_path; /* NULL for TCP */
        char *base_url;  /* "http://localhost" for unix sockets */
        char *token;     /* NULL when none was found */
        char *ca_file;   /* https: trusted instead of the system's CAs */
        char *pin;       /* https: "sha256//BASE64=" for CURLOPT_PINNEDPUBLICKEY */
        char *user_agent; /* NULL: rprctl/VERSION */
        CURL *curl;
};

static unsigned curl_users;

/* ---- lookup ---------------------------------------------------------------- */

static bool path_exists(const char *p) {
        return access(p, F_OK) >= 0;
}

/* Reads a token file: its first line without surrounding white space. */
static char *token_from_file(const char *path) {
        _cleanup_free_ char *data = NULL;
        size_t len;

        if (read_file(path, CLIENT_MAX_TOKEN_FILE, &data, &len) < 0)
                return NULL;
        char *s = data + strspn(data, " \t\r\n");
        size_t n = strcspn(s, " \t\r\n");
        return n > 0 ? xstrndup(s, n) : NULL;
}

static char *token_lookup(const char *unix_path) {
        const char *env = getenv("RPR_TOKEN");
        if (env && *env)
                return xstrdup(env);

        _cleanup_free_ char *cfg = NULL;
        const char *xdg = getenv("XDG_CONFIG_HOME"), *home = getenv("HOME");
        if (xdg && *xdg)
                cfg = xasprintf("%s/rpr/token", xdg);
        else if (home && *home)
                cfg = xasprintf("%s/.config/rpr/token", home);
        char *t = cfg ? token_from_file(cfg) : NULL;
        if (t)
                return t;

        /* The admin token rprd wrote beside its socket (run by hand, state
         * and socket share a directory); else the state directories rprd
         * uses by default — under systemd the socket is in /run/rpr and the
         * token in /var/lib/rpr. */
        if (unix_path) {
                const char *slash = strrchr(unix_path, '/');
                _cleanup_free_ char *f = slash ? xasprintf("%.*s/admin.token", (int) (slash - unix_path), unix_path)
                                               : xstrdup("admin.token");
                t = token_from_file(f);
                return t ? t : token_from_file("/var/lib/rpr/admin.token");
        }
        t = token_from_file("./.rpr/admin.token");
        return t ? t : token_from_file("/var/lib/rpr/admin.token");
}

/* Splits a server address into what curl needs. */
static int server_parse(const char *server, Client *c) {
        if (startswith(server, "unix:")) {
                if (!server[5])
                        return -EINVAL;
                c->unix_path = xstrdup(server + 5);
        } else if (server[0] == '/' || startswith(server, "./")) {
                c->unix_path = xstrdup(server);
        } else if (startswith(server, "http://") || startswith(server, "https://")) {
                size_t n = strlen(server);
                while (n > 0 && server[n - 1] == '/')
                        n--;
                c->base_url = xstrndup(server, n);
        } else if (startswith(server, "tcp:")) {
                c->base_url = xasprintf("http://%s", server + 4);
        } else if (*server && !strchr(server, '/') && strrchr(server, ':') &&
                   strrchr(server, ':')[1] && strspn(strrchr(server, ':') + 1, "0123456789") ==
                                                      strlen(strrchr(server, ':') + 1)) {
                /* HOST:PORT */
                c->base_url = xasprintf("http://%s", server);
        } else
                return -EINVAL;

        if (c->unix_path) {
                c->base_url = xstrdup("http://localhost");
                c->server = xasprintf("unix:%s", c->unix_path);
        } else
                c->server = xstrdup(c->base_url);
        return 0;
}

static const char *server_lookup(const char *server) {
        const char *env = getenv("RPR_SERVER");

        if (server && *server)
                return server;
        if (env && *env)
                return env;
        if (!path_exists("./.rpr/rpr.sock") && path_exists("/run/rpr/rpr.sock"))
                return "unix:/run/rpr/rpr.sock";
        return "unix:./.rpr/rpr.sock";
}

int client_new(const char *server, const char *token, Client **ret) {
        Client *c = xcalloc(1, sizeof(Client));
        int r = server_parse(server_lookup(server), c);

        if (r < 0) {
                client_free(c);
                return r;
        }
        c->token = token && *token ? xstrdup(token) : token_lookup(c->unix_path);

        if (curl_users++ == 0)
                curl_global_init(CURL_GLOBAL_DEFAULT);
        c->curl = curl_easy_init();
        if (!c->curl) {
                client_free(c);
                return -ENOMEM;
        }
        *ret = c;
        return 0;
}

void client_free(Client *c) {
        if (!c)
                return;
        if (c->curl) {
                curl_easy_cleanup(c->curl);
                if (--curl_users == 0)
                        curl_global_cleanup();
        }
        free(c->server);
        free(c->unix_path);
        free(c->base_url);
        free(c->ca_file);
        free(c->pin);
        free(c->user_agent);
        if (c->token)
                explicit_bzero(c->token, strlen(c->token));
        free(c->token);
        free(c);
}

void client_set_token(Client *c, const char *token) {
        if (c->token)
                explicit_bzero(c->token, strlen(c->token));
        free(c->token);
        c->token = token ? xstrdup(token) : NULL;
}

void client_set_user_agent(Client *c, const char *user_agent) {
        free(c->user_agent);
        c->user_agent = user_agent ? xstrdup(user_agent) : NULL;
}

const char *client_server(const Client *c) {
        return c->server;
}

bool client_has_token(const Client *c) {
        return c->token != NULL;
}

void client_response_clear(ClientResponse *r) {
        if (!r)
                return;
        free(r->body);
        *r = (ClientResponse){0};
}

/* ---- requests ------------------------------------------------------------- */

static size_t on_body(char *data, size_t size, size_t n, void *userdata) {
        Buf *b = userdata;

        return buf_append(b, data, size * n) < 0 ? 0 : size * n;
}

static int curl_to_errno(CURLcode code) {
        switch (code) {
        case CURLE_COULDNT_CONNECT:
                return -ECONNREFUSED;
        case CURLE_COULDNT_RESOLVE_HOST:
                return -EHOSTUNREACH;
        case CURLE_OPERATION_TIMEDOUT:
                return -ETIMEDOUT;
        case CURLE_WRITE_ERROR:
                return -EFBIG;
        case CURLE_OUT_OF_MEMORY:
                return -ENOMEM;
        case CURLE_PEER_FAILED_VERIFICATION:
        case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
        case CURLE_SSL_CACERT_BADFILE:
                return -EKEYREJECTED;
        default:
                return -EIO;
        }
}

/* A reason a person understands: the socket error for a failed connect
 * ("No such file or directory", "Connection refused"), else curl's text. */
static char *transfer_error(Client *c, CURLcode code, const char *errbuf) {
        long os_errno = 0;

        if (code == CURLE_COULDNT_CONNECT &&
            curl_easy_getinfo(c->curl, CURLINFO_OS_ERRNO, &os_errno) == CURLE_OK && os_errno > 0)
                return xstrdup(strerror((int) os_errno));
        if (code == CURLE_WRITE_ERROR)
                return xstrdup("the answer is too large");
        return xstrdup(errbuf[0] ? errbuf : curl_easy_strerror(code));
}

static bool is_fingerprint(const char *f) {
        const char *b64 = f + strlen("SHA256:");

        return startswith(f, "SHA256:") && strlen(b64) == 43 &&
               strspn(b64, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/") == 43;
}

int client_set_tls(Client *c, const char *ca_file, const char *fingerprint) {
        if (!ca_file)
                ca_file = getenv("RPR_CA");
        if (!fingerprint)
                fingerprint = getenv("RPR_FINGERPRINT");
        if (fingerprint && *fingerprint && !is_fingerprint(fingerprint))
                return -EINVAL;
        free(c->ca_file);
        free(c->pin);
        c->ca_file = ca_file && *ca_file ? xstrdup(ca_file) : NULL;
        c->pin = fingerprint && *fingerprint ? xasprintf("sha256//%s=", fingerprint + strlen("SHA256:")) : NULL;
        return 0;
}

static void setup_tls(Client *c, CURL *h) {
        if (c->ca_file)
                curl_easy_setopt(h, CURLOPT_CAINFO, c->ca_file);
        if (c->pin) {
                /* The pinned key is the server's identity: a self-signed
                 * certificate, reached by any name. */
                curl_easy_setopt(h, CURLOPT_PINNEDPUBLICKEY, c->pin);
                if (!c->ca_file) {
                        curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
                        curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
                }
        }
}

/* Options common to every transfer; headers is filled for the caller to free. */
static int setup(Client *c, const char *method, const char *path, const char *content_type,
                 struct curl_slist **headers, char *errbuf) {
        _cleanup_free_ char *url = xasprintf("%s%s", c->base_url, path);
        CURL *h = c->curl;

        curl_easy_reset(h);
        curl_easy_setopt(h, CURLOPT_URL, url);
        if (c->unix_path)
                curl_easy_setopt(h, CURLOPT_UNIX_SOCKET_PATH, c->unix_path);
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
        curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, CLIENT_CONNECT_TIMEOUT_MS);
        curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
        curl_easy_setopt(h, CURLOPT_USERAGENT, c->user_agent ? c->user_agent : "rprctl/" RPR_VERSION);
        setup_tls(c, h);
        errbuf[0] = 0;

        if (c->token) {
                _cleanup_free_ char *auth = xasprintf("Authorization: Bearer %s", c->token);
                *headers = curl_slist_append(*headers, auth);
                explicit_bzero(auth, strlen(auth));
        }
        if (content_type) {
                _cleanup_free_ char *ct = xasprintf("Content-Type: %s", content_type);
                *headers = curl_slist_append(*headers, ct);
        }
        /* No "Expect: 100-continue" round trip for large apply bodies. */
        *headers = curl_slist_append(*headers, "Expect:");
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, *headers);
        return 0;
}

int client_request(Client *c, const char *method, const char *path, const char *content_type,
                   const char *body, size_t len, ClientResponse *ret, char **ret_error) {
        char errbuf[CURL_ERROR_SIZE];
        struct curl_slist *headers = NULL;
        Buf b = {.max = CLIENT_MAX_RESPONSE};

        setup(c, method, path, body ? (content_type ? content_type : "application/json") : NULL, &headers,
              errbuf);
        curl_easy_setopt(c->curl, CURLOPT_TIMEOUT, CLIENT_REQUEST_TIMEOUT_S);
        curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, &b);
        if (body) {
                curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS, body);
                curl_easy_setopt(c->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) len);
        }

        CURLcode code = curl_easy_perform(c->curl);
        curl_slist_free_all(headers);
        if (code != CURLE_OK) {
                buf_free(&b);
                if (ret_error)
                        *ret_error = transfer_error(c, code, errbuf);
                return curl_to_errno(code);
        }

        long status = 0;
        curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &status);
        ret->status = status;
        ret->len = b.len;
        ret->body = buf_steal(&b);
        return 0;
}

/* ---- downloads ----------------------------------------------------------------- */

typedef struct Download {
        CURL *curl;
        int fd;
        uint64_t at; /* where the next byte goes in fd */
        bool started, error_answer;
        Buf error; /* the body of an answer that is not 200/206 */
} Download;

static size_t on_download(char *data, size_t size, size_t n, void *userdata) {
        Download *d = userdata;
        size_t len = size * n;

        if (!d->started) {
                long status = 0;
                curl_easy_getinfo(d->curl, CURLINFO_RESPONSE_CODE, &status);
                d->started = true;
                d->error_answer = status != 200 && status != 206;
                /* The whole of it after all: start the file again. */
                if (status == 200 && d->at > 0) {
                        if (ftruncate(d->fd, 0) < 0)
                                return 0;
                        d->at = 0;
                }
        }
        if (d->error_answer)
                return buf_append(&d->error, data, len) < 0 ? 0 : len;
        for (size_t done = 0; done < len;) {
                ssize_t k = pwrite(d->fd, data + done, len - done, (off_t) d->at);
                if (k <= 0)
                        return 0;
                done += (size_t) k;
                d->at += (uint64_t) k;
        }
        return len;
}

int client_download(Client *c, const char *path, int fd, uint64_t *offset, long *ret_status,
                    char **ret_error) {
        char errbuf[CURL_ERROR_SIZE];
        struct curl_slist *headers = NULL;
        Download d = {.curl = c->curl, .fd = fd, .at = *offset, .error = {.max = 4096}};

        setup(c, "GET", path, NULL, &headers, errbuf);
        if (*offset > 0) {
                char range[64];
                snprintf(range, sizeof range, "%llu-", (unsigned long long) *offset);
                curl_easy_setopt(c->curl, CURLOPT_RANGE, range);
        }
        curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, on_download);
        curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, &d);
        /* No overall timeout (a release is large); a stalled one ends. */
        curl_easy_setopt(c->curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(c->curl, CURLOPT_LOW_SPEED_TIME, (long) CLIENT_REQUEST_TIMEOUT_S);

        CURLcode code = curl_easy_perform(c->curl);
        curl_slist_free_all(headers);
        *offset = d.at;
        long status = 0;
        curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &status);
        if (ret_status)
                *ret_status = status;
        if (code != CURLE_OK) {
                buf_free(&d.error);
                if (ret_error)
                        *ret_error = transfer_error(c, code, errbuf);
                return curl_to_errno(code);
        }
        if (d.error_answer && ret_error) {
                ClientResponse r = {.status = status, .body = d.error.data, .len = d.error.len};
                *ret_error = client_error_message(&r);
        }
        buf_free(&d.error);
        return 0;
}

/* ---- streams ------------------------------------------------------------------- */

typedef struct Stream {
        Client *client;
        ClientLineFn fn;
        void *userdata;
        Buf pending; /* a partial line, or the whole body of an error answer */
        bool stopped, error_answer, checked;
} Stream;

static size_t on_stream(char *data, size_t size, size_t n, void *userdata) {
        Stream *s = userdata;
        size_t total = size * n;

        if (!s->checked) {
                long status = 0;
                curl_easy_getinfo(s->client->curl, CURLINFO_RESPONSE_CODE, &status);
                s->error_answer = status < 200 || status >= 300;
                s->checked = true;
        }
        if (buf_append(&s->pending, data, total) < 0)
                return 0;
        if (s->error_answer)
                return total;

        /* Hand on every complete line; keep the rest for the next chunk. */
        char *start = s->pending.data, *end = s->pending.data + s->pending.len;
        for (;;) {
                char *nl = memchr(start, '\n', end - start);
                if (!nl)
                        break;
                size_t len = nl - start;
                if (len > 0 && start[len - 1] == '\r')
                        len--;
                start[len] = 0;
                if (s->fn(start, len, s->userdata) != 0) {
                        s->stopped = true;
                        return 0;
                }
                start = nl + 1;
        }
        size_t rest = end - start;
        memmove(s->pending.data, start, rest);
        s->pending.len = rest;
        s->pending.data[rest] = 0;
        return total;
}

int client_stream_lines(Client *c, const char *path, ClientLineFn fn, void *userdata, long *ret_status,
                        char **ret_error) {
        return client_stream_request(c, "GET", path, NULL, NULL, 0, fn, userdata, ret_status, ret_error);
}

int client_stream_request(Client *c, const char *method, const char *path, const char *content_type,
                          const char *body, size_t len, ClientLineFn fn, void *userdata, long *ret_status,
                          char **ret_error) {
        char errbuf[CURL_ERROR_SIZE];
        struct curl_slist *headers = NULL;
        Stream s = {.client = c, .fn = fn, .userdata = userdata, .pending = {.max = CLIENT_MAX_LINE}};

        setup(c, method, path, body ? (content_type ? content_type : "application/json") : NULL, &headers,
              errbuf);
        curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, on_stream);
        curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, &s);
        if (body) {
                curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS, body);
                curl_easy_setopt(c->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) len);
        }

        CURLcode code = curl_easy_perform(c->curl);
        curl_slist_free_all(headers);
        if (code != CURLE_OK && !s.stopped) {
                buf_free(&s.pending);
                if (ret_error)
                        *ret_error = transfer_error(c, code, errbuf);
                return curl_to_errno(code);
        }

        long status = 0;
        curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &status);
        if (!s.stopped && !s.error_answer && s.pending.len > 0)
                (void) fn(s.pending.data, s.pending.len, userdata);
        if (s.error_answer && ret_error) {
                ClientResponse r = {.status = status, .body = s.pending.data, .len = s.pending.len};
                *ret_error = client_error_message(&r);
        }
        buf_free(&s.pending);
        if (ret_status)
                *ret_status = status;
        return 0;
}

/* ---- helpers ----------------------------------------------------------------- */

char *client_error_message(const ClientResponse *r) {
        _cleanup_json_ json_t *j = r->body ? json_loadb(r->body, r->len, 0, NULL) : NULL;
        const char *msg = json_string_value(json_object_get(j, "message"));

        if (msg && *msg)
                return xstrdup(msg);
        if (r->body && r->len > 0 && r->len < 200 && !j) {
                size_t n = strcspn(r->body, "\r\n");
                return xasprintf("HTTP %ld: %.*s", r->status, (int) n, r->body);
        }
        return xasprintf("the server answered HTTP %ld", r->status);
}

char *client_escape(const char *s) {
        static const char hex[] = "0123456789ABCDEF";
        Buf b = BUF_INIT;

        for (const unsigned char *p = (const unsigned char *) s; *p; p++) {
                if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
                    strchr("-._~", *p)) {
                        char ch = (char) *p;
                        (void) buf_append(&b, &ch, 1);
                } else {
                        char esc[3] = {'%', hex[*p >> 4], hex[*p & 15]};
                        (void) buf_append(&b, esc, 3);
                }
        }
        return buf_steal(&b);
}
