/* ssh: the parts every transport shares: failure names, cancellation, and
 * the script that is actually run.
 *
 * The one idea: a command reaches /bin/sh exactly as written. Environment
 * goes in as `export NAME='value'` lines in front of it (sshd's setenv is
 * usually refused), the script itself is never re-quoted by us beyond one
 * level of single quotes that the remote shell removes again. */
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "egress/egress.h"
#include "ssh/ssh-private.h"

static const char *const failure_reasons[_SSH_FAIL_MAX] = {
        [SSH_OK] = "Reachable",
        [SSH_FAIL_NAME_RESOLUTION] = "NameResolution",
        [SSH_FAIL_CONNECTION_REFUSED] = "ConnectionRefused",
        [SSH_FAIL_TIMEOUT] = "Timeout",
        [SSH_FAIL_NETWORK] = "NetworkError",
        [SSH_FAIL_HANDSHAKE] = "HandshakeFailed",
        [SSH_FAIL_HOST_KEY_MISMATCH] = "HostKeyMismatch",
        [SSH_FAIL_HOST_KEY_UNKNOWN] = "HostKeyUnknown",
        [SSH_FAIL_AUTH] = "AuthFailed",
        [SSH_FAIL_KEY] = "KeyUnusable",
        [SSH_FAIL_DISCONNECTED] = "Disconnected",
        [SSH_FAIL_CANCELED] = "Canceled",
        [SSH_FAIL_EXEC] = "ExecFailed",
        [SSH_FAIL_NOT_ALLOWED] = EGRESS_REASON,
};

const char *ssh_failure_reason(SshFailure f) {
        if ((unsigned) f >= _SSH_FAIL_MAX)
                return "ExecFailed";
        return failure_reasons[f];
}

int ssh_fail(SshResult *result, SshFailure f, int err, const char *fmt, ...) {
        va_list ap;

        result->failure = f;
        result->exit_code = -1;
        va_start(ap, fmt);
        vsnprintf(result->message, sizeof result->message, fmt, ap);
        va_end(ap);
        return -err;
}

/* ---- cancellation -------------------------------------------------------- */

SshCancel *ssh_cancel_new(void) {
        SshCancel *c = xcalloc(1, sizeof *c);

        c->fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (c->fd < 0)
                abort(); /* out of file descriptors at start-up of a command */
        return c;
}

void ssh_cancel_fire(SshCancel *c) {
        uint64_t one = 1;

        __atomic_store_n(&c->fired, true, __ATOMIC_RELEASE);
        if (write(c->fd, &one, sizeof one) < 0) {
                /* The counter is already non-zero: poll wakes anyway. */
        }
}

bool ssh_cancel_fired(const SshCancel *c) {
        return c && __atomic_load_n(&c->fired, __ATOMIC_ACQUIRE);
}

void ssh_cancel_free(SshCancel *c) {
        if (!c)
                return;
        close(c->fd);
        free(c);
}

/* ---- the script --------------------------------------------------------- */

char *ssh_shell_quote(const char *s) {
        Buf b = BUF_INIT;

        buf_puts(&b, "'");
        for (const char *p = s; *p; p++) {
                if (*p == '\'')
                        buf_puts(&b, "'\\''");
                else
                        buf_append(&b, p, 1);
        }
        buf_puts(&b, "'");
        return buf_steal(&b);
}

static bool env_name_valid(const char *s, size_t n) {
        if (n == 0 || isdigit((unsigned char) s[0]))
                return false;
        for (size_t i = 0; i < n; i++)
                if (!isalnum((unsigned char) s[i]) && s[i] != '_')
                        return false;
        return true;
}

int ssh_script_build(const SshCommand *cmd, char **ret) {
        Buf b = BUF_INIT;

        for (const char *const *e = cmd->env; e && *e; e++) {
                const char *eq = strchr(*e, '=');
                if (!eq || !env_name_valid(*e, (size_t) (eq - *e))) {
                        buf_free(&b);
                        return -EINVAL;
                }
                _cleanup_free_ char *value = ssh_shell_quote(eq + 1);
                buf_printf(&b, "export %.*s=%s\n", (int) (eq - *e), *e, value);
        }
        if (cmd->workdir && *cmd->workdir) {
                _cleanup_free_ char *dir = ssh_shell_quote(cmd->workdir);
                buf_printf(&b, "cd %s || exit 1\n", dir);
        }
        buf_puts(&b, cmd->script ? cmd->script : "");
        *ret = buf_steal(&b);
        return 0;
}

/* ---- host key pins -------------------------------------------------------- */

int ssh_host_key_parse(const char *pin, char ret_type[static 32], char ret_fp[static 64]) {
        const char *sp = strchr(pin, ' ');
        const char *fp = sp ? sp + 1 : pin;
        size_t tl = sp ? (size_t) (sp - pin) : 0;

        if (tl >= 32 || !startswith(fp, "SHA256:") || strlen(fp) >= 64 || strlen(fp) < 8)
                return -EINVAL;
        memcpy(ret_type, pin, tl);
        ret_type[tl] = '\0';
        strcpy(ret_fp, fp);
        /* ssh-keygen prints no padding; a pasted "=" is forgiven. */
        size_t l = strlen(ret_fp);
        while (l > 0 && ret_fp[l - 1] == '=')
                ret_fp[--l] = '\0';
        return 0;
}

/* ---- environments ------------------------------------------------------------------ */

void ssh_env_add(SshEnv *e, const char *name, const char *value) {
        e->v = xrealloc(e->v, (e->n + 2) * sizeof *e->v);
        e->v[e->n++] = xasprintf("%s=%s", name, value ?: "");
        e->v[e->n] = NULL;
}

void ssh_env_add_all(SshEnv *e, const json_t *vars) {
        const char *key;
        const json_t *v;

        json_object_foreach((json_t *) vars, key, v) ssh_env_add(e, key, json_string_value(v));
}

void ssh_env_clear(SshEnv *e) {
        for (size_t i = 0; i < e->n; i++)
                free(e->v[i]);
        free(e->v);
        *e = (SshEnv){0};
}
