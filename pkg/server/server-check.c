/* server-check.c: the check command and what its output means.
 *
 * One ssh_run of a small POSIX sh script prints, each after a marker line
 * "@rpr:SECTION", uptime's own output, /proc/loadavg, the MemTotal and
 * MemAvailable lines of /proc/meminfo, the last line of `df -Pk /` and
 * /proc/uptime. The script exits non-zero when any of them failed, which is
 * a CheckFailed. Output is kept to a bound (the script prints well under
 * it); figures that do not parse are left out rather than guessed. */
#include <stdio.h>
#include <string.h>

#include "server/server-private.h"

#define OUTPUT_MAX (64 * 1024)
#define STDERR_MAX 1024
#define CHECK_TIMEOUT_USEC (60 * USEC_PER_SEC)

static const char check_script[] =
        "rc=0\n"
        "echo @rpr:uptime; uptime || rc=1\n"
        "echo @rpr:loadavg; cat /proc/loadavg || rc=1\n"
        "echo @rpr:meminfo; grep -E '^(MemTotal|MemAvailable):' /proc/meminfo || rc=1\n"
        "echo @rpr:df; df -Pk / | tail -n 1 || rc=1\n"
        "echo @rpr:procuptime; cat /proc/uptime || rc=1\n"
        "echo @rpr:end\n"
        "exit $rc\n";

typedef struct Capture {
        Buf out, err;
} Capture;

static int capture(void *userdata, SshStream stream, const char *data, size_t n) {
        Capture *c = userdata;

        /* Past the bound the rest is dropped: the check needs only the start. */
        (void) buf_append(stream == SSH_STDOUT ? &c->out : &c->err, data, n);
        return 0;
}

/* The lines after the marker line "@rpr:name" up to the next marker; NULL
 * when the marker is absent. */
static char *section(const char *out, const char *name) {
        _cleanup_free_ char *marker = xasprintf("@rpr:%s", name);
        size_t marker_len = strlen(marker);
        Buf b = BUF_INIT;
        bool in = false, found = false;

        for (const char *p = out; *p;) {
                size_t len = strcspn(p, "\n"), next = len + (p[len] == '\n');
                if (startswith(p, "@rpr:")) {
                        in = len == marker_len && strncmp(p, marker, len) == 0;
                        found = found || in;
                } else if (in)
                        (void) buf_append(&b, p, next);
                p += next;
        }
        if (!found) {
                buf_free(&b);
                return NULL;
        }
        return buf_steal(&b);
}

static double round_to(double v, double unit) {
        return (double) (long long) (v / unit + 0.5) * unit;
}

static bool meminfo_value(const char *text, const char *key, double *ret) {
        const char *p = strstr(text, key);
        double v;

        if (!p || sscanf(p + strlen(key), " %lf", &v) != 1)
                return false;
        *ret = v;
        return true;
}

static void parse_memory(const char *text, json_t *m) {
        double total, avail;

        if (text && meminfo_value(text, "MemTotal:", &total) && meminfo_value(text, "MemAvailable:", &avail) &&
            total > 0 && avail <= total)
                json_object_set_new(m, "memUsedPercent", json_real(round_to((total - avail) * 100 / total, 0.1)));
}

static void parse_disk(const char *text, json_t *m) {
        char fs[256];
        unsigned long long blocks, used, avail;

        /* "Filesystem 1024-blocks Used Available Capacity Mounted-on": df's
         * own percentage is used / (used + available), rounded up. */
        if (text && sscanf(text, "%255s %llu %llu %llu", fs, &blocks, &used, &avail) == 4 && used + avail > 0)
                json_object_set_new(m, "diskUsedPercent",
                                    json_real(round_to((double) used * 100 / (double) (used + avail), 0.1)));
}

json_t *server_check_parse(const char *out, char **ret_uptime) {
        _cleanup_free_ char *load = section(out, "loadavg"), *mem = section(out, "meminfo");
        _cleanup_free_ char *df = section(out, "df"), *up = section(out, "procuptime");
        json_t *m = json_object();
        double v;

        if (load && sscanf(load, "%lf", &v) == 1 && v >= 0)
                json_object_set_new(m, "load1", json_real(round_to(v, 0.01)));
        parse_memory(mem, m);
        parse_disk(df, m);
        if (up && sscanf(up, "%lf", &v) == 1 && v >= 0)
                json_object_set_new(m, "uptimeSeconds", json_integer((json_int_t) v));
        if (ret_uptime)
                *ret_uptime = section(out, "uptime");
        if (json_object_size(m) == 0) {
                json_decref(m);
                return NULL;
        }
        return m;
}

/* The first line of stderr, for a message. */
static char *first_line(const char *s) {
        while (*s == '\n')
                s++;
        return xstrndup(s, strcspn(s, "\n"));
}

void server_check_run(ServerController *s, const SshTarget *target, CheckOutcome *o, SshResult *result,
                      char **ret_uptime) {
        Capture cap = {.out = {.max = OUTPUT_MAX}, .err = {.max = STDERR_MAX}};
        SshCommand cmd = {
                .script = check_script, .timeout_usec = CHECK_TIMEOUT_USEC, .output = capture, .userdata = &cap};
        int r;

        *result = (SshResult){0};
        o->when_usec = now_usec();
        r = ssh_run(s->ssh, target, &cmd, result);
        o->duration_usec = result->duration_usec;
        o->logged_in = result->logged_in;
        if (result->host_key[0] && (result->host_key_new || result->logged_in)) {
                snprintf(o->host_key, sizeof o->host_key, "%s", result->host_key);
                o->record_host_key = true;
        }

        if (r < 0 || result->failure != SSH_OK) {
                o->reason = ssh_failure_reason(result->failure != SSH_OK ? result->failure : SSH_FAIL_EXEC);
                snprintf(o->message, sizeof o->message, "%s",
                         result->message[0] ? result->message : strerror(r < 0 ? -r : EIO));
        } else {
                o->metrics = server_check_parse(cap.out.data ? cap.out.data : "", ret_uptime);
                if (result->exit_code != 0 || result->signal[0]) {
                        _cleanup_free_ char *err = first_line(cap.err.data ? cap.err.data : "");
                        o->reason = "CheckFailed";
                        if (result->signal[0])
                                snprintf(o->message, sizeof o->message, "the check command was killed by SIG%s",
                                         result->signal);
                        else {
                                /* The host's own words: flat, and cut between characters. */
                                err[utf8_cut(err, strlen(err), 400)] = '\0';
                                snprintf_utf8(o->message, sizeof o->message,
                                              "the check command exited with %d%s%s", result->exit_code,
                                              *err ? ": " : "", text_flatten(err));
                        }
                        snprintf(result->message, sizeof result->message, "%s", o->message);
                } else {
                        o->ok = true;
                        o->reason = "Reachable";
                        snprintf(o->message, sizeof o->message, "logged in and ran the check in %.3fs",
                                 (double) o->duration_usec / USEC_PER_SEC);
                }
        }
        buf_free(&cap.out);
        buf_free(&cap.err);
}
