/* pipeline-cron: when a schedule fires next.
 *
 * The grammar is resource-cron.c's (which validates at apply): five fields,
 * minute hour day-of-month month day-of-week, each a comma list of "*", "N",
 * "N-M", with "/STEP", names for months and days (7 is Sunday too), or a
 * macro. As in Vixie cron, when both day fields are restricted a day
 * matching either fires. Times are the daemon's local time (its TZ). */
#include <string.h>
#include <strings.h>
#include <time.h>

#include "pipeline/pipeline.h"

static const char *const month_names[] = {"jan", "feb", "mar", "apr", "may", "jun", "jul",
                                          "aug", "sep", "oct", "nov", "dec", NULL};
static const char *const day_names[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat", NULL};

static const struct {
        const char *name, *expr;
} macros[] = {
        {"@yearly", "0 0 1 1 *"}, {"@annually", "0 0 1 1 *"}, {"@monthly", "0 0 1 * *"}, {"@weekly", "0 0 * * 0"},
        {"@daily", "0 0 * * *"},  {"@midnight", "0 0 * * *"}, {"@hourly", "0 * * * *"},
};

static int value(const char *s, size_t len, int min, const char *const *names) {
        char buf[16];
        uint64_t v;

        if (len == 0 || len >= sizeof buf)
                return -1;
        memcpy(buf, s, len);
        buf[len] = 0;
        for (size_t i = 0; names && names[i]; i++)
                if (strcasecmp(buf, names[i]) == 0)
                        return min + (int) i;
        return parse_uint64(buf, &v) < 0 || v > 1000 ? -1 : (int) v;
}

/* One field into bits (bit i: value i); *ret_star when it is "*". */
static int field(const char *s, size_t len, int min, int max, const char *const *names, uint64_t *ret, bool *ret_star) {
        uint64_t bits = 0;

        *ret_star = len == 1 && s[0] == '*';
        for (const char *p = s, *end = s + len; p < end;) {
                const char *comma = memchr(p, ',', end - p), *e = comma ? comma : end;
                const char *slash = memchr(p, '/', e - p), *be = slash ? slash : e;
                const char *dash = memchr(p, '-', be - p);
                int lo = min, hi = max, step = 1;
                if (!(be - p == 1 && *p == '*')) {
                        lo = value(p, (dash ? dash : be) - p, min, names);
                        hi = dash ? value(dash + 1, be - dash - 1, min, names) : lo;
                        if (slash && !dash)
                                hi = max;
                }
                if (slash)
                        step = value(slash + 1, e - slash - 1, 0, NULL);
                if (lo < min || hi > max || lo > hi || step < 1)
                        return -EINVAL;
                for (int v = lo; v <= hi; v += step)
                        bits |= UINT64_C(1) << v;
                p = comma ? comma + 1 : end;
        }
        *ret = bits;
        return 0;
}

int cron_parse(const char *expr, Cron *ret) {
        char fields[5][64];
        uint64_t bits[5];
        bool star[5];

        for (size_t i = 0; i < ELEMENTSOF(macros); i++)
                if (strcasecmp(expr, macros[i].name) == 0)
                        expr = macros[i].expr;
        if (sscanf(expr, "%63s %63s %63s %63s %63s", fields[0], fields[1], fields[2], fields[3], fields[4]) != 5)
                return -EINVAL;
        static const struct {
                int min, max;
                const char *const *names;
        } f[5] = {{0, 59, NULL}, {0, 23, NULL}, {1, 31, NULL}, {1, 12, month_names}, {0, 7, day_names}};
        for (int i = 0; i < 5; i++)
                if (field(fields[i], strlen(fields[i]), f[i].min, f[i].max, f[i].names, &bits[i], &star[i]) < 0)
                        return -EINVAL;
        if (bits[4] & (1u << 7))
                bits[4] |= 1; /* 7 is Sunday too */
        *ret = (Cron){.minutes = bits[0], .hours = (uint32_t) bits[1], .days = (uint32_t) bits[2],
                      .months = (uint16_t) bits[3], .weekdays = (uint8_t) (bits[4] & 0x7f),
                      .any_day = star[2], .any_weekday = star[4]};
        return 0;
}

static bool day_matches(const Cron *c, const struct tm *t) {
        bool dom = c->days & (1u << t->tm_mday), dow = c->weekdays & (1u << t->tm_wday);

        if (c->any_day && c->any_weekday)
                return true;
        if (c->any_day)
                return dow;
        if (c->any_weekday)
                return dom;
        return dom || dow;
}

uint64_t cron_next(const Cron *c, uint64_t after_usec) {
        time_t t = (time_t) (after_usec / USEC_PER_SEC) / 60 * 60 + 60;
        time_t limit = t + 5 * 366 * 24 * 3600;
        struct tm tm;

        /* Skips whole days and hours that cannot match; at most a few
         * thousand steps for any schedule. */
        while (t < limit) {
                localtime_r(&t, &tm);
                if (!(c->months & (1u << (tm.tm_mon + 1))) || !day_matches(c, &tm)) {
                        tm.tm_mday++, tm.tm_hour = 0, tm.tm_min = 0, tm.tm_sec = 0, tm.tm_isdst = -1;
                        t = mktime(&tm);
                        continue;
                }
                if (!(c->hours & (1u << tm.tm_hour))) {
                        tm.tm_hour++, tm.tm_min = 0, tm.tm_sec = 0, tm.tm_isdst = -1;
                        t = mktime(&tm);
                        continue;
                }
                if (c->minutes & (UINT64_C(1) << tm.tm_min))
                        return (uint64_t) t * USEC_PER_SEC;
                t += 60;
        }
        return 0;
}
