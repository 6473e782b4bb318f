/* stream.c: the agent's side of the poll stream (README "Agents"). One
 * connection of its own (libcurl, CURLOPT_CONNECT_ONLY, HTTP/1.1 so that
 * ALPN does not pick h2), the same TLS checks as every other request (the
 * --ca file or the pinned --fingerprint); then GET /api/v1/agents/stream
 * with Connection: Upgrade, and after rprd's 101 each poll is one frame
 * (4-byte big-endian length, the heartbeat) and each answer one frame.
 *
 * Why: an idle agent then costs rprd its TLS connection and little more,
 * where a held POST poll also holds an HTTP request and its buffers. An
 * rprd that answers the upgrade with anything but 101 (an older one) is
 * polled with POSTs as before: run.c decides. */
#include <curl/curl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>

#include "agent/agent.h"
#include "rpr-agent.h"

#define HEAD_MAX 8192
#define ANSWER_MAX (256u * 1024 * 1024)
#define CONNECT_TIMEOUT_MS 10000
#define UPGRADE_TIMEOUT_USEC (20 * USEC_PER_SEC)

struct PollStream {
        CURL *curl;
        curl_socket_t fd;
        Buf in; /* bytes received, not yet taken as a frame */
        char errbuf[CURL_ERROR_SIZE];
};

void poll_stream_free(PollStream *s) {
        if (!s)
                return;
        curl_easy_cleanup(s->curl);
        buf_free(&s->in);
        free(s);
}

/* Waits until the socket is readable (or writable) or the deadline
 * (monotonic) passes; -ETIMEDOUT, -EINTR when stop was set meanwhile. */
static int wait_socket(PollStream *s, bool for_write, uint64_t deadline, volatile sig_atomic_t *stop) {
        for (;;) {
                uint64_t now = now_mono_usec();
                if (now >= deadline)
                        return -ETIMEDOUT;
                struct pollfd p = {.fd = s->fd, .events = for_write ? POLLOUT : POLLIN};
                int r = poll(&p, 1, (int) MIN((deadline - now) / USEC_PER_MSEC + 1, 1000u));
                if (stop && *stop)
                        return -EINTR;
                if (r > 0)
                        return 0;
                if (r < 0 && errno != EINTR)
                        return -errno;
        }
}

static int send_all(PollStream *s, const void *data, size_t len, uint64_t deadline, volatile sig_atomic_t *stop) {
        const char *p = data;

        while (len > 0) {
                size_t n = 0;
                CURLcode code = curl_easy_send(s->curl, p, len, &n);
                if (code == CURLE_AGAIN) {
                        int r = wait_socket(s, true, deadline, stop);
                        if (r < 0)
                                return r;
                        continue;
                }
                if (code != CURLE_OK)
                        return -EIO;
                p += n;
                len -= n;
        }
        return 0;
}

/* Reads what is there into s->in (waiting for some until the deadline);
 * -ECONNRESET when rprd closed the stream. */
static int recv_some(PollStream *s, uint64_t deadline, volatile sig_atomic_t *stop) {
        char chunk[16384 + 512];

        for (;;) {
                size_t n = 0;
                CURLcode code = curl_easy_recv(s->curl, chunk, sizeof chunk, &n);
                if (code == CURLE_AGAIN) {
                        int r = wait_socket(s, false, deadline, stop);
                        if (r < 0)
                                return r;
                        continue;
                }
                if (code != CURLE_OK)
                        return -EIO;
                if (n == 0)
                        return -ECONNRESET;
                return buf_append(&s->in, chunk, n) < 0 ? -EFBIG : 0;
        }
}

static void take(Buf *b, size_t n) {
        memmove(b->data, b->data + n, b->len - n);
        b->len -= n;
        b->data[b->len] = 0;
}

/* The upgrade's answer: its status; what follows its head stays in s->in. */
static int read_head(PollStream *s, long *ret_status, uint64_t deadline) {
        char *end;

        s->in.max = HEAD_MAX;
        while (!s->in.data || !(end = strstr(s->in.data, "\r\n\r\n"))) {
                int r = recv_some(s, deadline, NULL);
                if (r < 0)
                        return r;
        }
        long status = 0;
        if (sscanf(s->in.data, "HTTP/1.%*d %ld", &status) != 1)
                return -EBADMSG;
        *ret_status = status;
        take(&s->in, (size_t) (end + 4 - s->in.data));
        s->in.max = ANSWER_MAX + AGENT_FRAME_HEAD;
        return 0;
}

static void setup(CURL *h, const AgentConfig *cfg, char *errbuf) {
        curl_easy_setopt(h, CURLOPT_URL, cfg->server);
        curl_easy_setopt(h, CURLOPT_CONNECT_ONLY, 1L);
        curl_easy_setopt(h, CURLOPT_HTTP_VERSION, (long) CURL_HTTP_VERSION_1_1);
        curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long) CONNECT_TIMEOUT_MS);
        curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
        /* The same checks as pkg/client's: the CA file, or the pinned key,
         * which is rprd's identity by any name. */
        if (cfg->ca)
                curl_easy_setopt(h, CURLOPT_CAINFO, cfg->ca);
        if (cfg->fingerprint) {
                _cleanup_free_ char *pin = xasprintf("sha256//%s=", cfg->fingerprint + strlen("SHA256:"));
                curl_easy_setopt(h, CURLOPT_PINNEDPUBLICKEY, pin);
                if (!cfg->ca) {
                        curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
                        curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
                }
        }
}

int poll_stream_open(const AgentConfig *cfg, PollStream **ret, long *ret_status, char *error, size_t size) {
        PollStream *s = xcalloc(1, sizeof *s);
        uint64_t deadline = now_mono_usec() + UPGRADE_TIMEOUT_USEC;
        long status = 0;
        int r;

        s->curl = curl_easy_init();
        if (!s->curl) {
                free(s);
                return -ENOMEM;
        }
        setup(s->curl, cfg, s->errbuf);
        CURLcode code = curl_easy_perform(s->curl);
        if (code != CURLE_OK) {
                snprintf_utf8(error, size, "%s", s->errbuf[0] ? s->errbuf : curl_easy_strerror(code));
                poll_stream_free(s);
                return code == CURLE_SSL_PINNEDPUBKEYNOTMATCH || code == CURLE_PEER_FAILED_VERIFICATION
                               ? -EKEYREJECTED
                               : -ECONNREFUSED;
        }
        curl_easy_getinfo(s->curl, CURLINFO_ACTIVESOCKET, &s->fd);

        const char *host = strstr(cfg->server, "://") ? strstr(cfg->server, "://") + 3 : cfg->server;
        _cleanup_free_ char *req = xasprintf("GET /api/v1/agents/stream HTTP/1.1\r\nHost: %.*s\r\n"
                                             "Authorization: Bearer %s\r\nUser-Agent: rpr-agent/" RPR_VERSION
                                             "\r\nConnection: Upgrade\r\nUpgrade: " AGENT_STREAM_PROTOCOL
                                             "\r\n\r\n",
                                             (int) strcspn(host, "/"), host, cfg->credential);
        r = send_all(s, req, strlen(req), deadline, NULL);
        explicit_bzero(req, strlen(req));
        if (r >= 0)
                r = read_head(s, &status, deadline);
        if (r < 0) {
                snprintf_utf8(error, size, "the poll stream's upgrade failed: %s", strerror(-r));
                poll_stream_free(s);
                return r;
        }
        *ret_status = status;
        if (status != 101) {
                snprintf_utf8(error, size, "rprd answered the poll stream's upgrade with %ld", status);
                poll_stream_free(s);
                return -EPROTONOSUPPORT;
        }
        *ret = s;
        return 0;
}

int poll_stream_poll(PollStream *s, const json_t *hb, uint64_t timeout_usec, volatile sig_atomic_t *stop,
                     json_t **ret_answer, char *error, size_t size) {
        _cleanup_free_ char *text = json_dumps(hb, JSON_COMPACT);
        uint64_t deadline = now_mono_usec() + timeout_usec;
        unsigned char head[AGENT_FRAME_HEAD];
        size_t n = 0;
        int r;

        agent_frame_head(strlen(text), head);
        r = send_all(s, head, sizeof head, deadline, stop);
        if (r >= 0)
                r = send_all(s, text, strlen(text), deadline, stop);
        while (r >= 0 && (r = agent_frame_parse(s->in.data ?: "", s->in.len, ANSWER_MAX, &n)) == 0)
                r = recv_some(s, deadline, stop);
        if (r < 0) {
                snprintf_utf8(error, size, "the poll stream broke: %s",
                              r == -ECONNRESET ? "rprd closed it" : strerror(-r));
                return r;
        }
        json_error_t jerr;
        json_t *answer = json_loadb(s->in.data + AGENT_FRAME_HEAD, n, 0, &jerr);
        take(&s->in, AGENT_FRAME_HEAD + n);
        if (!answer) {
                snprintf_utf8(error, size, "the poll stream's answer is not JSON: %s", jerr.text);
                return -EBADMSG;
        }
        *ret_answer = answer;
        return 0;
}
