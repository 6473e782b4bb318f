/* Unit tests for pkg/pipeline's cron: when a schedule fires next, in the
 * local time zone (TZ is set to UTC here, and to a zone with summer time for
 * one case): every minute, steps, lists and ranges, names, macros, the
 * day-of-month / day-of-week either-or rule, a year's end, no such day
 * within five years; and what does not parse. */
/* cmocka needs these three first. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pipeline/pipeline.h"

static uint64_t at(const char *s) {
        uint64_t usec;

        assert_int_equal(time_parse_rfc3339(s, &usec), 0);
        return usec;
}

static void expect_next(const char *expr, const char *after, const char *want) {
        Cron c;
        char buf[RFC3339_MAX];

        if (cron_parse(expr, &c) < 0)
                fail_msg("cannot parse \"%s\"", expr);
        uint64_t next = cron_next(&c, at(after));
        if (!want) {
                assert_int_equal(next, 0);
                return;
        }
        time_format_rfc3339(next, buf);
        if (strcmp(buf, want) != 0)
                fail_msg("\"%s\" after %s: %s, not %s", expr, after, buf, want);
}

static int utc(void **state) {
        (void) state;
        setenv("TZ", "UTC", 1);
        tzset();
        return 0;
}

static void test_every_minute_and_steps(void **state) {
        (void) state;
        expect_next("* * * * *", "2026-11-23T10:00:00Z", "2026-11-23T10:01:00Z");
        expect_next("* * * * *", "2026-11-23T10:00:59.9Z", "2026-11-23T10:01:00Z");
        expect_next("*/15 * * * *", "2026-11-23T10:01:00Z", "2026-11-23T10:15:00Z");
        expect_next("5/20 * * * *", "2026-11-23T10:30:00Z", "2026-11-23T10:45:00Z");
        expect_next("0,30 9-17 * * *", "2026-11-23T17:30:00Z", "2026-11-24T09:00:00Z");
        expect_next("0 3 * * *", "2026-11-23T03:00:00Z", "2026-11-24T03:00:00Z");
}

static void test_names_macros_and_days(void **state) {
        (void) state;
        expect_next("@hourly", "2026-11-23T10:20:00Z", "2026-11-23T11:00:00Z");
        expect_next("@daily", "2026-11-23T10:20:00Z", "2026-11-24T00:00:00Z");
        expect_next("@yearly", "2026-11-23T10:20:00Z", "2027-01-01T00:00:00Z");
        expect_next("0 12 * * mon", "2026-11-23T12:00:00Z", "2026-11-30T12:00:00Z"); /* the 23rd is a Monday */
        expect_next("0 0 * * 7", "2026-11-23T00:00:00Z", "2026-11-29T00:00:00Z");   /* 7 is Sunday */
        expect_next("0 0 1 jan *", "2026-11-23T00:00:00Z", "2027-01-01T00:00:00Z");
        /* Both day fields: either one. */
        expect_next("0 0 13 * fri", "2026-11-23T00:00:00Z", "2026-11-27T00:00:00Z");
        expect_next("0 0 31 12 *", "2026-12-31T00:00:00Z", "2027-12-31T00:00:00Z");
        expect_next("0 0 30 2 *", "2026-01-01T00:00:00Z", NULL); /* never: February 30th */
}

static void test_local_time(void **state) {
        (void) state;
        setenv("TZ", "Europe/Berlin", 1);
        tzset();
        /* 03:00 in Berlin is 02:00 UTC in winter. */
        expect_next("0 3 * * *", "2026-11-23T10:00:00Z", "2026-11-24T02:00:00Z");
        setenv("TZ", "UTC", 1);
        tzset();
}

/* A field longer than 63 characters is read whole (it used to be cut,
 * and the rest read as the next field). */
static void test_long_fields(void **state) {
        (void) state;
        Buf minutes = BUF_INIT;

        for (int m = 0; m < 60; m += 2)
                buf_printf(&minutes, "%s%d", m ? "," : "", m);
        buf_puts(&minutes, " 10 * * *");
        expect_next(minutes.data, "2026-11-23T10:01:00Z", "2026-11-23T10:02:00Z");
        expect_next(minutes.data, "2026-11-23T10:58:00Z", "2026-11-24T10:00:00Z");
        buf_free(&minutes);
        expect_next("0 0 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31 "
                    "jan,feb,mar,apr,may,jun,jul,aug,sep,oct,nov,dec *",
                    "2026-11-23T10:00:00Z", "2026-11-24T00:00:00Z");
}

static void test_refused(void **state) {
        (void) state;
        const char *bad[] = {"", "* * * *", "* * * * * *", "1,,2 * * * *", "* * * * *\n", "*/60 * * * *",
                             "@DAILY", "60 * * * *", "* 24 * * *", "* * 0 * *", "* * * 13 *", "* * * * 8",
                             "*/0 * * * *", "5-1 * * * *", "a * * * *", "@sometimes"};
        Cron c;

        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                if (cron_parse(bad[i], &c) >= 0)
                        fail_msg("\"%s\" parsed", bad[i]);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup(test_every_minute_and_steps, utc),
                cmocka_unit_test_setup(test_names_macros_and_days, utc),
                cmocka_unit_test_setup(test_local_time, utc),
                cmocka_unit_test_setup(test_long_fields, utc),
                cmocka_unit_test_setup(test_refused, utc),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
