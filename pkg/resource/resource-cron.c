/* resource-cron.c: the one cron parser.
 *
 * Five fields, minute hour day-of-month month day-of-week, separated by
 * spaces or tabs, each a comma list of "*", "N" or "N-M", each optionally
 * followed by "/STEP" ("N/STEP" means N to the field's end); months and
 * week days may be written as names (jan..dec, sun..sat, any case; day of
 * week 7 is Sunday too). The usual macros (@hourly, @daily, @midnight,
 * @weekly, @monthly, @yearly, @annually) are accepted.
 *
 * Validation at apply (the schema's "cron" format) and the pipeline
 * scheduler both call this parser, so a schedule that validates is exactly
 * the schedule that runs. When it fires is pipeline-cron.c's business. */
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

static const struct {
        const char *name, *expr;
} cron_macros[] = {
        {"@yearly", "0 0 1 1 *"}, {"@annually", "0 0 1 1 *"}, {"@monthly", "0 0 1 * *"}, {"@weekly", "0 0 * * 0"},
        {"@daily", "0 0 * * *"},  {"@midnight", "0 0 * * *"}, {"@hourly", "0 * * * *"},
};

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

/* One comma-separated item of field f ("*", "a", "a-b", each with an
 * optional "/n") into *bits (bit i: value i). */
static int cron_item(const CronField *f, const char *s, size_t len, uint64_t *bits, char **ret_why) {
        const char *slash = memchr(s, '/', len);
        size_t base_len = slash ? (size_t) (slash - s) : len;
        const char *dash = memchr(s, '-', base_len);
        int lo = f->min, hi = f->max, step = 1;

        if (slash) {
                step = cron_value(&(CronField){f->name, 1, 0, NULL}, slash + 1, len - base_len - 1);
                if (step < 1 || step > f->max) {
                        *ret_why = xasprintf("bad step \"%.*s\" in %s field", (int) len, s, f->name);
                        return -EINVAL;
                }
        }
        if (!(base_len == 1 && s[0] == '*')) {
                if (dash) {
                        lo = cron_value(f, s, (size_t) (dash - s));
                        hi = cron_value(f, dash + 1, base_len - (size_t) (dash - s) - 1);
                } else {
                        lo = cron_value(f, s, base_len);
                        hi = slash ? f->max : lo;
                }
        }
        if (lo < f->min || lo > f->max || hi < f->min || hi > f->max || lo > hi) {
                *ret_why = xasprintf("%s field \"%.*s\" is out of range %d-%d", f->name, (int) len, s,
                                     f->min, f->max);
                return -EINVAL;
        }
        for (int v = lo; v <= hi; v += step)
                *bits |= UINT64_C(1) << v;
        return 0;
}

static int cron_field(const CronField *f, const char *s, size_t len, uint64_t *ret_bits, char **ret_why) {
        const char *end = s + len;
        uint64_t bits = 0;

        for (;;) {
                const char *comma = memchr(s, ',', (size_t) (end - s));
                const char *item_end = comma ? comma : end;
                if (item_end == s) {
                        *ret_why = xasprintf("empty item in %s field", f->name);
                        return -EINVAL;
                }
                if (cron_item(f, s, (size_t) (item_end - s), &bits, ret_why) < 0)
                        return -EINVAL;
                if (!comma)
                        break;
                s = comma + 1;
        }
        *ret_bits = bits;
        return 0;
}

/* The parser behind cron_parse() and cron_valid(); *ret_why is set on
 * failure only. */
static int cron_scan(const char *text, Cron *ret, char **ret_why) {
        uint64_t bits[ELEMENTSOF(cron_fields)];
        bool star[ELEMENTSOF(cron_fields)];
        const char *p = text;
        size_t n = 0;

        for (size_t i = 0; i < ELEMENTSOF(cron_macros); i++)
                if (STREQ(text, cron_macros[i].name))
                        p = cron_macros[i].expr;

        for (;;) {
                while (*p == ' ' || *p == '\t')
                        p++;
                if (!*p)
                        break;
                const char *start = p;
                while (*p && *p != ' ' && *p != '\t')
                        p++;
                if (n == ELEMENTSOF(cron_fields)) {
                        *ret_why = xstrdup("more than five fields");
                        return -EINVAL;
                }
                if (cron_field(&cron_fields[n], start, (size_t) (p - start), &bits[n], ret_why) < 0)
                        return -EINVAL;
                star[n] = p - start == 1 && *start == '*';
                n++;
        }
        if (n < ELEMENTSOF(cron_fields)) {
                *ret_why = xasprintf("%zu field%s, expected five", n, n == 1 ? "" : "s");
                return -EINVAL;
        }

        /* As in Vixie cron, a day matching either day field fires unless
         * one of them is "*". */
        *ret = (Cron){.minutes = bits[0],
                      .hours = (uint32_t) bits[1],
                      .days = (uint32_t) bits[2],
                      .months = (uint16_t) bits[3],
                      /* 7 is Sunday too */
                      .weekdays = (uint8_t) ((bits[4] | (bits[4] >> 7)) & 0x7f),
                      .any_day = star[2],
                      .any_weekday = star[4]};
        return 0;
}

int cron_parse(const char *expr, Cron *ret) {
        _cleanup_free_ char *why = NULL;

        return cron_scan(expr, ret, &why);
}

bool cron_valid(const char *text, char **ret_why) {
        Cron c;

        *ret_why = NULL;
        return cron_scan(text, &c, ret_why) >= 0;
}
