/* fuzz-http: raw HTTP requests against rprd's API, in this process.
 *
 * The API server (h2o, the router, the handlers, the dashboard's files and
 * a SQLite store) runs on its own thread behind a unix socket, as rprd
 * runs it without controllers. Each input is written to the socket as it
 * is: request line, headers, body, even several requests; "@ADMIN@"
 * becomes the admin token, so that mutations of the seeds get past
 * authentication. The first answer must not be a server error: no 500
 * (or 502, 504...) for any request. 501 (not implemented) and the 503s that
 * say this rprd runs no controller are answers, not faults. Nothing can
 * run a command here: exec and actions need controllers. */
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "api/api.h"
#include "common.h"
#include "resource/resource.h"
#include "store/store.h"
#include "webhook/webhook.h"

/* An answer later than SLOW_MS is noted on stderr; none within
 * ANSWER_TIMEOUT_MS is a hang, and fails. */
#define SLOW_MS 5000
#define ANSWER_TIMEOUT_MS 60000

static ApiServer *api;
static pthread_t api_thread;
static Store *store;
static Webhook *webhook;
static char sock_path[108];
static char *admin_token;

static void *serve(void *userdata) {
        (void) userdata;
        api_run(api);
        return NULL;
}

/* At exit, before OpenSSL's own exit handler frees what the API thread
 * may still use: the server stops, then everything is freed. */
static void stop(void) {
        api_stop(api);
        pthread_join(api_thread, NULL);
        api_free(api);
        webhook_free(webhook);
        store_close(store);
        free(admin_token);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        const char *dir = fuzz_tmpdir(), *web = getenv("RPR_FUZZ_WEB_DIR");
        _cleanup_free_ char *url = xasprintf("sqlite:%s/state.db", dir), *listen = NULL, *tok = NULL;
        size_t len;

        (void) argc, (void) argv;
        fuzz_quiet();
        signal(SIGPIPE, SIG_IGN);
        snprintf(sock_path, sizeof sock_path, "%s/api.sock", dir);
        listen = xasprintf("unix:%s", sock_path);
        const char *listens[] = {listen};
        if (resource_init() < 0 || store_open(url, &store) < 0 || webhook_new(store, NULL, NULL, &webhook) < 0)
                fuzz_fail(__FILE__, __LINE__, "init", "cannot open %s", url);
        ApiOptions o = {.store = store,
                        .listen = listens,
                        .n_listen = 1,
                        .state_dir = dir,
                        .web_dir = web ? web : "web",
                        .max_body = 65536,
                        .webhook = webhook};
        if (api_new(&o, &api) < 0)
                fuzz_fail(__FILE__, __LINE__, "api_new", "cannot start the API on %s", listen);
        tok = xasprintf("%s/admin.token", dir);
        if (read_file(tok, 4096, &admin_token, &len) < 0)
                fuzz_fail(__FILE__, __LINE__, "admin.token", "cannot read %s", tok);
        admin_token[strcspn(admin_token, "\r\n")] = '\0';
        if (pthread_create(&api_thread, NULL, serve, NULL) != 0)
                fuzz_fail(__FILE__, __LINE__, "pthread_create", "cannot start the API thread");
        atexit(stop);
        return 0;
}

/* The input with every "@ADMIN@" replaced by the admin token. */
static Buf request_of(const uint8_t *data, size_t size) {
        static const char mark[] = "@ADMIN@";
        const char *p = (const char *) data, *end = p + size;
        Buf b = BUF_INIT;

        while (p < end) {
                const char *m = memmem(p, (size_t) (end - p), mark, sizeof mark - 1);
                if (!m) {
                        buf_append(&b, p, (size_t) (end - p));
                        break;
                }
                buf_append(&b, p, (size_t) (m - p));
                buf_puts(&b, admin_token);
                p = m + sizeof mark - 1;
        }
        return b;
}

/* Sends the request, closes our side, and reads until the first answer's
 * head is in (or the server closes): its status, or 0 for none. */
static int exchange(const Buf *req, char *head, size_t size) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), status = 0;
        size_t have = 0;

        memcpy(sa.sun_path, sock_path, strlen(sock_path) + 1);
        fuzz_check(fd >= 0 && connect(fd, (struct sockaddr *) &sa, sizeof sa) == 0, "cannot connect to %s",
                   sock_path);
        for (size_t off = 0; off < req->len;) {
                ssize_t n = send(fd, req->data + off, req->len - off, MSG_NOSIGNAL);
                if (n <= 0)
                        break; /* the server has answered and closed already */
                off += (size_t) n;
        }
        shutdown(fd, SHUT_WR);

        uint64_t start = now_mono_usec();
        while (have + 1 < size && !memmem(head, have, "\r\n\r\n", 4)) {
                struct pollfd p = {.fd = fd, .events = POLLIN};
                fuzz_check(poll(&p, 1, ANSWER_TIMEOUT_MS) == 1, "no answer in %d ms", ANSWER_TIMEOUT_MS);
                ssize_t n = read(fd, head + have, size - 1 - have);
                if (n <= 0)
                        break;
                have += (size_t) n;
        }
        head[have] = '\0';
        close(fd);
        uint64_t ms = (now_mono_usec() - start) / USEC_PER_MSEC;
        if (ms > SLOW_MS)
                fprintf(stderr, "fuzz-http: slow answer (%llu ms) to %zu bytes of request\n", (unsigned long long) ms,
                        req->len);
        if (have >= 12 && startswith(head, "HTTP/1.") && head[8] == ' ')
                for (int i = 9; i < 12 && head[i] >= '0' && head[i] <= '9'; i++)
                        status = status * 10 + (head[i] - '0');
        return status;
}

/* A 503 that says what this rprd does not run is its answer by design. */
static bool by_design(int status, const char *answer) {
        if (status == 501)
                return true;
        return status == 503 && (strstr(answer, "runs no ") || strstr(answer, "keeps no ") ||
                                 strstr(answer, "does not take webhooks"));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_(buf_free) Buf req = request_of(data, size);
        char answer[8192];
        int status = exchange(&req, answer, sizeof answer);

        if (getenv("RPR_FUZZ_VERBOSE"))
                fprintf(stderr, "-> %d\n%s\n", status, answer);
        fuzz_check(status < 500 || by_design(status, answer), "answered %d:\n%s", status, answer);
        return 0;
}
