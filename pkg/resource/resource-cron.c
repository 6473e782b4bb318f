/* resource-cron.c: is this a cron schedule we can run?
 *
 * Five fields, minute hour day-of-month month day-of-week, each a comma list
 * of "*", "N", "N-M", with an optional "/STEP" after "*" or a range; months
 * and week days may be written as names (jan..dec, sun..sat; day of week 7 is
 * Sunday too). The usual macros (@hourly, @daily, @midnight, @weekly,
 * @monthly, @yearly, @annually) are accepted. Only validation lives here;
 * the pipeline scheduler computes the times. */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "resource/resource-private.h"

typedef struct CronField {
        const char *name;
        int min, max;
        const char *const *names; /* names[i] means min + i, or NULL */
} CronField;

static const char *const month_names[] = {"jan", "feb", "mar", "apr", "may", "jun", "jul",
                                          "aug", "sep", "oct", "nov", "dec", NULL};
static const char *const day_names[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat", NULL};

static const CronField cron_fields[5] = {
        {"minute", 0, 59, NULL},          {"hour", 0, 23, NULL},
        {"day of month", 1, 31, NULL},    {"month", 1, 12, month_names},
        {"day of week", 0, 7, day_names},
};

static const char *const cron_macros[] = {"@yearly", "@annually", "@monthly", "@weekly",
                                          "@daily",  "@midnight", "@hourly"};

/* One number or name of field f; -1 if it is neither. */
static int cron_value(const CronField *f, const char *s, size_t len) {
        uint64_t v;
        char buf[16];

        if (len == 0 || len >= sizeof(buf))
                return -1;
        memcpy(buf, s, len);
        buf[len] = 0;
        for (size_t i = 0; f->names && f->names[i]; i++)
                if (strcasecmp(buf, f->names[i]) == 0)
                        return f->min + (int) i;
        if (parse_uint64(buf, &v) < 0 || v > 1000)
                return -1;
        return (int) v;
}

/* One comma-separated item of field f: "*", "*\/n", "a", "a-b", "a-b/n". */
static bool cron_item(const CronField *f, const char *s, size_t len, char **ret_why) {
        const char *slash = memchr(s, '/', len);
        size_t base_len = slash ? (size_t) (slash - s) : len;
        int lo = f->min, hi = f->max;

        if (slash) {
                int step = cron_value(&(CronField){f->name, 1, 0, NULL}, slash + 1, len - base_len - 1);
                if (step < 1 || step > f->max) {
                        *ret_why = xasprintf("bad step \"%.*s\" in %s field", (int) len, s, f->name);
                        return false;
                }
        }

        if (base_len == 1 && s[0] == '*')
                return true;

        const char *dash = memchr(s, '-', base_len);
        if (dash) {
                lo = cron_value(f, s, (size_t) (dash - s));
                hi = cron_value(f, dash + 1, base_len - (size_t) (dash - s) - 1);
        } else {
                lo = hi = cron_value(f, s, base_len);
                if (slash) {
                        *ret_why = xasprintf("a step needs \"*\" or a range in %s field (got \"%.*s\")",
                                             f->name, (int) len, s);
                        return false;
                }
        }
        if (lo < f->min || lo > f->max || hi < f->min || hi > f->max || lo > hi) {
                *ret_why = xasprintf("%s field \"%.*s\" is out of range %d-%d", f->name, (int) len, s,
                                     f->min, f->max);
                return false;
        }
        return true;
}

static bool cron_field(const CronField *f, const char *s, size_t len, char **ret_why) {
        const char *end = s + len;

        while (s <= end) {
                const char *comma = memchr(s, ',', (size_t) (end - s));
                const char *item_end = comma ? comma : end;
                if (item_end == s) {
                        *ret_why = xasprintf("empty item in %s field", f->name);
                        return false;
                }
                if (!cron_item(f, s, (size_t) (item_end - s), ret_why))
                        return false;
                if (!comma)
                        break;
                s = comma + 1;
        }
        return true;
}

bool cron_valid(const char *text, char **ret_why) {
        const char *p = text;
        size_t n = 0;

        *ret_why = NULL;
        for (size_t i = 0; i < ELEMENTSOF(cron_macros); i++)
                if (STREQ(text, cron_macros[i]))
                        return true;

        while (*p) {
                while (*p == ' ' || *p == '\t')
                        p++;
                if (!*p)
                        break;
                const char *start = p;
                while (*p && *p != ' ' && *p != '\t')
                        p++;
                if (n >= ELEMENTSOF(cron_fields)) {
                        *ret_why = xstrdup("more than five fields");
                        return false;
                }
                if (!cron_field(&cron_fields[n], start, (size_t) (p - start), ret_why))
                        return false;
                n++;
        }
        if (n < ELEMENTSOF(cron_fields)) {
                *ret_why = xasprintf("%zu field%s, expected five", n, n == 1 ? "" : "s");
                return false;
        }
        return true;
}
