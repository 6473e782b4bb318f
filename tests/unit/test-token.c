/* Unit tests for pkg/token on a real store and a real controller loop in a
 * temporary directory. token_secret_read: inline, file (newline dropped),
 * environment, and each refusal (absent, wrong type, expired, unreadable
 * file, a FIFO, a directory, a file too large, a control character,
 * unset variable) with a message that names the Token and never holds
 * the secret. The controller: expiresIn and the Expired / ExpiringSoon
 * conditions from spec.expires, none without an expiry, GitHub's reported
 * expiry recorded (spec.expires wins), lastUsed, and the changed callback on
 * create, spec change and delete. */
/* cmocka needs these three first. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "controller/controller.h"
#include "resource/resource.h"
#include "store/store.h"
#include "token/token.h"

#define SECRET "s3cr3t-value-never-printed"
#define WAIT_USEC (10 * USEC_PER_SEC)
#define DAY_USEC (86400 * USEC_PER_SEC)

typedef struct Fixture {
        char dir[64];
        Store *store;
        Controller *controller;
        TokenController *tokens;
        pthread_mutex_t lock;
        unsigned changed;
} Fixture;

static void on_changed(void *userdata, const char *ns, const char *name) {
        Fixture *f = userdata;
        (void) ns;
        (void) name;
        pthread_mutex_lock(&f->lock);
        f->changed++;
        pthread_mutex_unlock(&f->lock);
}

static unsigned changed_calls(Fixture *f) {
        pthread_mutex_lock(&f->lock);
        unsigned n = f->changed;
        pthread_mutex_unlock(&f->lock);
        return n;
}

static int setup(void **state) {
        Fixture *f = xcalloc(1, sizeof *f);
        _cleanup_free_ char *url = NULL;

        snprintf(f->dir, sizeof f->dir, "/tmp/test-token-XXXXXX");
        assert_non_null(mkdtemp(f->dir));
        url = xasprintf("sqlite:%s/state.db", f->dir);
        assert_int_equal(store_open(url, &f->store), 0);
        assert_int_equal(controller_new(f->store, 2, &f->controller), 0);
        assert_int_equal(token_controller_new(f->store, f->controller, &f->tokens), 0);
        pthread_mutex_init(&f->lock, NULL);
        token_on_changed(f->tokens, on_changed, f);
        assert_int_equal(controller_start(f->controller), 0);
        *state = f;
        return 0;
}

static int teardown(void **state) {
        Fixture *f = *state;
        _cleanup_free_ char *cmd = xasprintf("rm -rf '%s'", f->dir);

        controller_free(f->controller);
        token_controller_free(f->tokens);
        store_close(f->store);
        assert_int_equal(system(cmd), 0);
        pthread_mutex_destroy(&f->lock);
        free(f);
        return 0;
}

static int group_setup(void **state) {
        (void) state;
        return resource_init();
}

static int group_teardown(void **state) {
        (void) state;
        resource_shutdown();
        return 0;
}

/* ---- helpers ------------------------------------------------------------- */

static void apply_token(Fixture *f, const char *name, const char *spec_json) {
        _cleanup_free_ char *text =
                xasprintf("{\"apiVersion\":\"rpr/v1\",\"kind\":\"Token\",\"metadata\":{\"name\":\"%s\"},\"spec\":%s}",
                          name, spec_json);
        _cleanup_json_ json_t *o = json_loads(text, 0, NULL);
        Diags d = DIAGS_INIT;

        assert_non_null(o);
        if (resource_prepare(o, 0, &d) < 0) {
                _cleanup_free_ char *msg = diag_format(&d.items[0]);
                print_error("%s\n", msg);
                diags_free(&d);
                fail();
        }
        StoreOp op = {.type = STORE_OP_APPLY, .object = o};
        assert_int_equal(store_commit(f->store, &op, 1, false, NULL), 0);
        store_ops_clear(&op, 1);
}

static char *date_in(uint64_t delta_usec, bool past) {
        char buf[RFC3339_MAX];
        uint64_t now = now_usec();
        return xstrdup(time_format_rfc3339(past ? now - delta_usec : now + delta_usec, buf));
}

static json_t *status_of(Fixture *f, const char *name) {
        json_t *o = NULL;

        if (store_get_json(f->store, "Token", "default", name, &o) < 0)
                return NULL;
        json_t *st = json_incref(json_object_get(o, "status"));
        json_decref(o);
        return st;
}

static const char *cond(const json_t *st, const char *type, const char *key) {
        return json_str_at(condition_get(st, type), key);
}

/* Waits until pred(status) holds; returns the status (caller decrefs). */
static json_t *wait_status(Fixture *f, const char *name, bool (*pred)(const json_t *st)) {
        uint64_t end = now_mono_usec() + WAIT_USEC;

        for (;;) {
                json_t *st = status_of(f, name);
                if (st && pred(st))
                        return st;
                json_decref(st);
                if (now_mono_usec() > end)
                        return NULL;
                usleep(20 * 1000);
        }
}

static bool has_expires_in(const json_t *st) {
        return json_str_at(st, "expiresIn") != NULL;
}

static bool observed(const json_t *st) {
        return json_object_get(st, "observedGeneration") != NULL;
}

static bool has_last_used(const json_t *st) {
        return json_str_at(st, "lastUsed") != NULL;
}

static bool from_github(const json_t *st) {
        const char *from = json_str_at(st, "expiresFrom");
        return from && STREQ(from, "github");
}

static void assert_no_secret(const char *text) {
        assert_non_null(text);
        assert_null(strstr(text, SECRET));
}

/* ---- secrets ----------------------------------------------------------------- */

static void test_secret_inline_file_env(void **state) {
        Fixture *f = *state;
        static const char *const gh[] = {"github", NULL};
        _cleanup_free_ char *file = xasprintf("%s/pat", f->dir), *spec = NULL, *error = NULL;
        const char *reason = NULL;
        TokenSecret s;

        apply_token(f, "inline", "{\"type\":\"github\",\"value\":\"" SECRET "\"}");
        assert_int_equal(token_secret_read(f->store, "default", "inline", gh, "spec.tokenRef", &s, &reason, &error), 0);
        assert_string_equal(s.data, SECRET);
        assert_int_equal(s.len, strlen(SECRET));
        token_secret_clear(&s);

        assert_int_equal(write_file_atomic(file, SECRET "\n", strlen(SECRET) + 1, 0600), 0);
        spec = xasprintf("{\"type\":\"github\",\"valueFrom\":{\"file\":\"%s\"}}", file);
        apply_token(f, "file", spec);
        assert_int_equal(token_secret_read(f->store, "default", "file", gh, "spec.tokenRef", &s, &reason, &error), 0);
        assert_string_equal(s.data, SECRET); /* the newline is not part of it */
        token_secret_clear(&s);

        setenv("RPR_TEST_TOKEN", SECRET, 1);
        apply_token(f, "env", "{\"type\":\"github\",\"valueFrom\":{\"env\":\"RPR_TEST_TOKEN\"}}");
        assert_int_equal(token_secret_read(f->store, "default", "env", NULL, "x", &s, &reason, &error), 0);
        assert_string_equal(s.data, SECRET);
        token_secret_clear(&s);
        assert_null(s.data);
}

static void expect_refusal(Fixture *f, const char *name, const char *const *types, int want, const char *reason_want,
                           const char *mention) {
        _cleanup_free_ char *error = NULL;
        const char *reason = NULL;
        TokenSecret s = {0};

        assert_int_equal(token_secret_read(f->store, "default", name, types, "spec.tokenRef", &s, &reason, &error),
                         want);
        assert_null(s.data);
        assert_string_equal(reason, reason_want);
        assert_no_secret(error);
        assert_non_null(strstr(error, name));
        if (mention && !strstr(error, mention))
                fail_msg("\"%s\" does not mention \"%s\"", error, mention);
}

static void test_secret_refusals_name_the_cause(void **state) {
        Fixture *f = *state;
        static const char *const gh[] = {"github", NULL};
        static const char *const key[] = {"ssh-key", NULL};
        _cleanup_free_ char *past = date_in(DAY_USEC, true), *spec = NULL;

        expect_refusal(f, "absent", gh, -ENOENT, "MissingReference", "does not exist");

        apply_token(f, "hook", "{\"type\":\"webhook\",\"value\":\"" SECRET "\"}");
        expect_refusal(f, "hook", gh, -EINVAL, "TokenUnusable", "type github");
        expect_refusal(f, "hook", key, -EINVAL, "TokenUnusable", "type ssh-key");

        spec = xasprintf("{\"type\":\"github\",\"value\":\"" SECRET "\",\"expires\":\"%s\"}", past);
        apply_token(f, "old", spec);
        expect_refusal(f, "old", gh, -EKEYEXPIRED, "TokenExpired", "expired");

        apply_token(f, "nofile", "{\"type\":\"github\",\"valueFrom\":{\"file\":\"/nonexistent/pat\"}}");
        expect_refusal(f, "nofile", gh, -EINVAL, "TokenUnusable", "/nonexistent/pat");

        unsetenv("RPR_TEST_UNSET");
        apply_token(f, "noenv", "{\"type\":\"github\",\"valueFrom\":{\"env\":\"RPR_TEST_UNSET\"}}");
        expect_refusal(f, "noenv", gh, -EINVAL, "TokenUnusable", "$RPR_TEST_UNSET");
}

/* A secret file is read without blocking and only when it is a regular
 * file of bounded size; a secret with a control character is refused
 * wherever it came from (an ssh key's line breaks excepted). */
static void test_secret_file_kinds_and_control_characters(void **state) {
        Fixture *f = *state;
        static const char *const gh[] = {"github", NULL};
        static const char *const key[] = {"ssh-key", NULL};
        _cleanup_free_ char *fifo = xasprintf("%s/fifo", f->dir), *big = xasprintf("%s/big", f->dir);
        _cleanup_free_ char *crlf = xasprintf("%s/crlf", f->dir), *pem = xasprintf("%s/pem", f->dir);
        _cleanup_free_ char *spec = NULL, *error = NULL;
        _cleanup_free_ char *huge = xmalloc(TOKEN_SECRET_MAX + 2);
        const char *reason = NULL;
        TokenSecret s;

        /* A FIFO with no writer: a blocking open would never return. */
        assert_int_equal(mkfifo(fifo, 0600), 0);
        spec = xasprintf("{\"type\":\"github\",\"valueFrom\":{\"file\":\"%s\"}}", fifo);
        apply_token(f, "fifo", spec);
        expect_refusal(f, "fifo", gh, -EINVAL, "TokenUnusable", "not a regular file");
        free(spec);
        spec = xasprintf("{\"type\":\"github\",\"valueFrom\":{\"file\":\"%s\"}}", f->dir);
        apply_token(f, "dir", spec);
        expect_refusal(f, "dir", gh, -EINVAL, "TokenUnusable", "not a regular file");

        memset(huge, 'x', TOKEN_SECRET_MAX + 1);
        assert_int_equal(write_file_atomic(big, huge, TOKEN_SECRET_MAX + 1, 0600), 0);
        free(spec);
        spec = xasprintf("{\"type\":\"github\",\"valueFrom\":{\"file\":\"%s\"}}", big);
        apply_token(f, "big", spec);
        expect_refusal(f, "big", gh, -EINVAL, "TokenUnusable", "larger than 64 KiB");

        /* A CR/LF inside would become a header line of its own. */
        assert_int_equal(write_file_atomic(crlf, SECRET "\r\nX-Evil: 1\n", strlen(SECRET) + 13, 0600), 0);
        free(spec);
        spec = xasprintf("{\"type\":\"github\",\"valueFrom\":{\"file\":\"%s\"}}", crlf);
        apply_token(f, "crlf", spec);
        expect_refusal(f, "crlf", gh, -EINVAL, "TokenUnusable", "control character");
        setenv("RPR_TEST_ESC", SECRET "\033[2J", 1);
        apply_token(f, "esc", "{\"type\":\"github\",\"valueFrom\":{\"env\":\"RPR_TEST_ESC\"}}");
        expect_refusal(f, "esc", gh, -EINVAL, "TokenUnusable", "control character");

        /* An ssh key is PEM text: its line breaks are part of it. */
        const char *key_text =
                "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n";
        assert_int_equal(write_file_atomic(pem, key_text, strlen(key_text), 0600), 0);
        free(spec);
        spec = xasprintf("{\"type\":\"ssh-key\",\"valueFrom\":{\"file\":\"%s\"}}", pem);
        apply_token(f, "pem", spec);
        assert_int_equal(
                token_secret_read(f->store, "default", "pem", key, "spec.keyRef", &s, &reason, &error), 0);
        assert_int_equal(s.len, strlen(key_text) - 1);
        token_secret_clear(&s);

        assert_null(token_secret_problem("webhook", SECRET, strlen(SECRET)));
        assert_non_null(token_secret_problem("webhook", "a\0b", 3));
        assert_non_null(token_secret_problem("github", "ab\x7f", 3));
        assert_non_null(token_secret_problem("ssh-key", "a\033b", 3));
        assert_null(token_secret_problem("ssh-key", "a\r\nb", 4));
}

/* ---- the controller -------------------------------------------------------------- */

static void test_expiring_soon_and_valid(void **state) {
        Fixture *f = *state;
        _cleanup_free_ char *soon = date_in(5 * DAY_USEC + 3600 * USEC_PER_SEC, false);
        _cleanup_free_ char *later = date_in(60 * DAY_USEC + 3600 * USEC_PER_SEC, false);
        _cleanup_free_ char *s1 = xasprintf("{\"type\":\"github\",\"value\":\"x\",\"expires\":\"%s\"}", soon);
        _cleanup_free_ char *s2 = xasprintf("{\"type\":\"github\",\"value\":\"x\",\"expires\":\"%s\"}", later);

        apply_token(f, "soon", s1);
        apply_token(f, "later", s2);
        _cleanup_json_ json_t *a = wait_status(f, "soon", has_expires_in);
        _cleanup_json_ json_t *b = wait_status(f, "later", has_expires_in);
        assert_non_null(a);
        assert_non_null(b);
        assert_string_equal(json_str_at(a, "expiresIn"), "5d");
        assert_string_equal(cond(a, "ExpiringSoon", "status"), "True");
        assert_string_equal(cond(a, "Expired", "status"), "False");
        assert_string_equal(json_str_at(a, "expiresFrom"), "spec");
        assert_string_equal(json_str_at(b, "expiresIn"), "60d");
        assert_string_equal(cond(b, "ExpiringSoon", "status"), "False");
        assert_string_equal(cond(b, "Expired", "status"), "False");
}

static void test_expired_and_no_expiry(void **state) {
        Fixture *f = *state;
        _cleanup_free_ char *past = date_in(2 * DAY_USEC, true);
        _cleanup_free_ char *s1 = xasprintf("{\"type\":\"github\",\"value\":\"x\",\"expires\":\"%s\"}", past);

        apply_token(f, "gone", s1);
        apply_token(f, "forever", "{\"type\":\"github\",\"value\":\"x\"}");
        _cleanup_json_ json_t *a = wait_status(f, "gone", has_expires_in);
        _cleanup_json_ json_t *b = wait_status(f, "forever", observed);
        assert_non_null(a);
        assert_non_null(b);
        assert_string_equal(json_str_at(a, "expiresIn"), "expired");
        assert_string_equal(cond(a, "Expired", "status"), "True");
        assert_string_equal(cond(a, "ExpiringSoon", "status"), "False");
        assert_null(json_object_get(b, "expiresIn"));
        assert_null(condition_get(b, "Expired"));
}

static void test_github_reported_expiry_and_last_used(void **state) {
        Fixture *f = *state;
        uint64_t in_3d = now_usec() + 3 * DAY_USEC + 3600 * USEC_PER_SEC;

        apply_token(f, "pat", "{\"type\":\"github\",\"value\":\"x\"}");
        json_decref(wait_status(f, "pat", observed));
        token_note_expiry(f->tokens, "default", "pat", in_3d);
        token_note_used(f->tokens, "default", "pat");
        _cleanup_json_ json_t *st = wait_status(f, "pat", from_github);
        assert_non_null(st);
        assert_string_equal(json_str_at(st, "expiresIn"), "3d");
        assert_string_equal(cond(st, "ExpiringSoon", "status"), "True");
        json_t *used = wait_status(f, "pat", has_last_used);
        assert_non_null(used);
        json_decref(used);

        /* The reported date makes the token unusable once it has passed,
         * like spec.expires would. */
        static const char *const gh[] = {"github", NULL};
        _cleanup_free_ char *error = NULL;
        const char *reason;
        TokenSecret s;
        assert_int_equal(token_secret_read(f->store, "default", "pat", gh, "spec.tokenRef", &s, &reason, &error), 0);
        assert_true(s.expires_usec / USEC_PER_SEC == in_3d / USEC_PER_SEC);
        token_secret_clear(&s);
}

static void test_changed_callback_on_create_change_delete(void **state) {
        Fixture *f = *state;

        apply_token(f, "cb", "{\"type\":\"github\",\"value\":\"one\"}");
        uint64_t end = now_mono_usec() + WAIT_USEC;
        while (changed_calls(f) < 1 && now_mono_usec() < end)
                usleep(10 * 1000);
        assert_int_equal(changed_calls(f), 1);
        apply_token(f, "cb", "{\"type\":\"github\",\"value\":\"two\"}");
        while (changed_calls(f) < 2 && now_mono_usec() < end)
                usleep(10 * 1000);
        assert_int_equal(changed_calls(f), 2);

        /* A status write alone (lastUsed) is no change of the Token. */
        token_note_used(f->tokens, "default", "cb");
        json_decref(wait_status(f, "cb", has_last_used));
        usleep(200 * 1000);
        assert_int_equal(changed_calls(f), 2);

        StoreOp op = {.type = STORE_OP_DELETE, .kind = "Token", .ns = "default", .name = "cb"};
        assert_int_equal(store_commit(f->store, &op, 1, false, NULL), 0);
        store_ops_clear(&op, 1);
        while (changed_calls(f) < 3 && now_mono_usec() < end)
                usleep(10 * 1000);
        assert_int_equal(changed_calls(f), 3);
}

static void test_format_left(void **state) {
        char buf[32];
        (void) state;

        assert_string_equal(token_format_left(13 * DAY_USEC + 5, buf, sizeof buf), "13d");
        assert_string_equal(token_format_left(5 * 3600 * USEC_PER_SEC, buf, sizeof buf), "5h");
        assert_string_equal(token_format_left(42 * 60 * USEC_PER_SEC + 7, buf, sizeof buf), "42m");
        assert_string_equal(token_format_left(10 * USEC_PER_SEC, buf, sizeof buf), "0m");
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_secret_inline_file_env, setup, teardown),
                cmocka_unit_test_setup_teardown(test_secret_refusals_name_the_cause, setup, teardown),
                cmocka_unit_test_setup_teardown(test_secret_file_kinds_and_control_characters, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_expiring_soon_and_valid, setup, teardown),
                cmocka_unit_test_setup_teardown(test_expired_and_no_expiry, setup, teardown),
                cmocka_unit_test_setup_teardown(test_github_reported_expiry_and_last_used, setup, teardown),
                cmocka_unit_test_setup_teardown(test_changed_callback_on_create_change_delete, setup,
                                                teardown),
                cmocka_unit_test(test_format_left),
        };
        return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
