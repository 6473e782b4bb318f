/* fuzz-webhook: GitHub push deliveries, signed and not.
 *
 * The input is four lines, X-GitHub-Event, X-GitHub-Delivery, Content-Type
 * and X-Hub-Signature-256, then the body. A signature line "sign" is
 * replaced by the body's true HMAC under the webhook Token's secret, so
 * that the payload parser behind the signature check is reached. Every
 * delivery is answered with a status webhooks use (200, 202, 400, 401; 503
 * only because this rprd has no repo controller) and a JSON object whose
 * message is a string, as the API sends it. */
#include <stdio.h>
#include <string.h>

#include "common.h"
#include "resource/resource.h"
#include "store/store.h"
#include "webhook/webhook.h"

#define SECRET "fuzz-webhook-secret-0123456789abcdef"

static Store *store;
static Webhook *webhook;

static void put_token(void) {
        _cleanup_json_ json_t *o = json_pack("{s:s, s:s, s:{s:s}, s:{s:s, s:s}}", "apiVersion", "rpr/v1", "kind",
                                             "Token", "metadata", "name", "hook", "spec", "type", "webhook",
                                             "value", SECRET);
        Diags d = DIAGS_INIT;
        StoreOp op = {.type = STORE_OP_APPLY, .object = o};

        if (resource_prepare(o, 0, &d) < 0 || store_commit(store, &op, 1, false, NULL) < 0)
                fuzz_fail(__FILE__, __LINE__, "put_token", "cannot store the webhook Token");
        store_ops_clear(&op, 1);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        _cleanup_free_ char *url = xasprintf("sqlite:%s/state.db", fuzz_tmpdir());

        (void) argc, (void) argv;
        fuzz_quiet();
        if (resource_init() < 0 || store_open(url, &store) < 0 || webhook_new(store, NULL, NULL, &webhook) < 0)
                fuzz_fail(__FILE__, __LINE__, "init", "cannot open %s", url);
        put_token();
        return 0;
}

/* The next line of [*p, end) as a C string (caller frees). */
static char *line(const char **p, const char *end) {
        const char *nl = memchr(*p, '\n', (size_t) (end - *p)), *le = nl ? nl : end;
        char *s = xstrndup(*p, (size_t) (le - *p));

        *p = nl ? nl + 1 : end;
        return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        const char *p = (const char *) data, *end = p + size;
        _cleanup_free_ char *event = line(&p, end), *delivery = line(&p, end), *ctype = line(&p, end);
        _cleanup_free_ char *sig = line(&p, end);
        _cleanup_json_ json_t *body = NULL;
        char mac[65];

        if (STREQ(sig, "sign")) {
                hmac_sha256_hex(SECRET, strlen(SECRET), p, (size_t) (end - p), mac);
                free(sig);
                sig = xasprintf("sha256=%s", mac);
        }
        WebhookRequest req = {.event = event, .delivery = delivery, .signature = sig,
                              .content_type = *ctype ? ctype : NULL, .body = p, .len = (size_t) (end - p)};
        int status = webhook_handle(webhook, &req, &body);
        const char *msg = json_string_value(json_object_get(body, "message"));

        fuzz_check(json_is_object(body) && msg, "status %d without a message", status);
        fuzz_check(status == 200 || status == 202 || status == 400 || status == 401 ||
                           (status == 503 && strstr(msg, "no controllers")),
                   "status %d: %s", status, msg);
        return 0;
}
