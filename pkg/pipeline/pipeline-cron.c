/* pipeline-cron: when a schedule fires next.
 *
 * The schedule comes from cron_parse() (resource-cron.c), the same parser
 * that validates it at apply. As in Vixie cron, when both day fields are
 * restricted a day matching either fires. Times are the daemon's local time
 * (its TZ). */
#include <time.h>

#include "pipeline/pipeline.h"

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
