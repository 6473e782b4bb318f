/* fuzz-cron: what validates is what runs.
 *
 * cron_valid() (the apply-time check) accepts exactly what cron_parse()
 * (the scheduler's) parses; a parsed schedule written back as five plain
 * lists parses to the same schedule; and cron_next() gives a later minute
 * that the schedule matches, or 0. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common.h"
#include "pipeline/pipeline.h"
#include "resource/resource-private.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        (void) argc, (void) argv;
        setenv("TZ", "UTC", 1);
        tzset();
        return 0;
}

/* bits as "a,b,c" (or "*" when empty, which a parsed field never is). */
static void put_list(Buf *b, uint64_t bits, int min, int max) {
        bool first = true;

        for (int v = min; v <= max; v++)
                if (bits & (UINT64_C(1) << v)) {
                        buf_printf(b, "%s%d", first ? "" : ",", v);
                        first = false;
                }
        buf_puts(b, " ");
}

/* The same schedule in plain lists; "*" kept where the day fields were
 * "*", since that changes which days fire. */
static char *cron_write(const Cron *c) {
        Buf b = BUF_INIT;

        put_list(&b, c->minutes, 0, 59);
        put_list(&b, c->hours, 0, 23);
        if (c->any_day)
                buf_puts(&b, "* ");
        else
                put_list(&b, c->days, 1, 31);
        put_list(&b, c->months, 1, 12);
        if (c->any_weekday)
                buf_puts(&b, "*");
        else
                put_list(&b, c->weekdays, 0, 6);
        return buf_steal(&b);
}

static bool fires_at(const Cron *c, uint64_t usec) {
        time_t t = (time_t) (usec / USEC_PER_SEC);
        struct tm tm;
        bool dom, dow;

        gmtime_r(&t, &tm);
        dom = c->days & (1u << tm.tm_mday);
        dow = c->weekdays & (1u << tm.tm_wday);
        if (!(c->minutes & (UINT64_C(1) << tm.tm_min)) || !(c->hours & (1u << tm.tm_hour)) ||
            !(c->months & (1u << (tm.tm_mon + 1))) || tm.tm_sec != 0)
                return false;
        if (c->any_day && c->any_weekday)
                return true;
        return c->any_day ? dow : c->any_weekday ? dom : dom || dow;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_free_ char *text = fuzz_string(data, size), *why = NULL, *again = NULL;
        Cron c, c2;
        bool valid = cron_valid(text, &why);
        int r = cron_parse(text, &c);

        fuzz_check(valid == (r >= 0), "\"%s\": cron_valid %d, cron_parse %d (%s)", text, valid, r, why ?: "");
        fuzz_check(valid || (why && fuzz_utf8(why)) || !fuzz_utf8(text), "\"%s\": no readable reason", text);
        if (!valid)
                return 0;

        again = cron_write(&c);
        fuzz_check(cron_parse(again, &c2) == 0, "\"%s\" written back as \"%s\" does not parse", text, again);
        fuzz_check(memcmp(&c, &c2, sizeof c) == 0 || (c.minutes == c2.minutes && c.hours == c2.hours &&
                                                       c.days == c2.days && c.months == c2.months &&
                                                       c.weekdays == c2.weekdays && c.any_day == c2.any_day &&
                                                       c.any_weekday == c2.any_weekday),
                   "\"%s\" and \"%s\" differ", text, again);

        /* A fixed start keeps the input's outcome reproducible. */
        uint64_t after = UINT64_C(1795000000) * USEC_PER_SEC, next = cron_next(&c, after);
        fuzz_check(next == 0 || (next > after && fires_at(&c, next)), "\"%s\" after %llu: %llu", text,
                   (unsigned long long) after, (unsigned long long) next);
        return 0;
}
