/* base-time: clocks, the one duration parser and the one time formatter.
 *
 * Durations are written the Go way (90s, 1m, 1h30m) because that is what
 * people already write in manifests of this kind; "d" and "w" are accepted
 * too, since token expiry is naturally said in days. */
#include "base/base.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

uint64_t now_usec(void) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (uint64_t) ts.tv_sec * USEC_PER_SEC + (uint64_t) ts.tv_nsec / 1000;
}

uint64_t now_mono_usec(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * USEC_PER_SEC + (uint64_t) ts.tv_nsec / 1000;
}

static const struct {
        const char *suffix;
        uint64_t usec;
} duration_units[] = {
        /* Longest suffix first so that "ms" is not read as "m". */
        {"ms", USEC_PER_MSEC},
        {"us", 1},
        {"w", 7 * 24 * 3600 * USEC_PER_SEC},
        {"d", 24 * 3600 * USEC_PER_SEC},
        {"h", 3600 * USEC_PER_SEC},
        {"m", 60 * USEC_PER_SEC},
        {"s", USEC_PER_SEC},
};

int duration_parse(const char *s, uint64_t *ret_usec) {
        uint64_t total = 0;

        if (!s || !*s)
                return -EINVAL;
        if (STREQ(s, "0")) {
                *ret_usec = 0;
                return 0;
        }

        const char *p = s;
        while (*p) {
                if (*p < '0' || *p > '9')
                        return -EINVAL;
                uint64_t n = 0;
                while (*p >= '0' && *p <= '9') {
                        if (n > UINT64_MAX / 10 - 1)
                                return -ERANGE;
                        n = n * 10 + (uint64_t) (*p++ - '0');
                }

                size_t i;
                for (i = 0; i < ELEMENTSOF(duration_units); i++)
                        if (startswith(p, duration_units[i].suffix))
                                break;
                if (i == ELEMENTSOF(duration_units))
                        return -EINVAL;

                uint64_t unit = duration_units[i].usec;
                if (n > (UINT64_MAX - total) / unit)
                        return -ERANGE;
                total += n * unit;
                p += strlen(duration_units[i].suffix);
        }
        *ret_usec = total;
        return 0;
}

char *duration_format(uint64_t usec, char *buf, size_t size) {
        static const struct {
                const char *suffix;
                uint64_t usec;
        } parts[] = {
                {"h", 3600 * USEC_PER_SEC}, {"m", 60 * USEC_PER_SEC}, {"s", USEC_PER_SEC}, {"ms", USEC_PER_MSEC},
                {"us", 1},
        };
        size_t off = 0;

        if (size == 0)
                return buf;
        buf[0] = '\0';
        if (usec == 0) {
                snprintf(buf, size, "0s");
                return buf;
        }
        for (size_t i = 0; i < ELEMENTSOF(parts) && off < size; i++) {
                uint64_t n = usec / parts[i].usec;
                if (n == 0)
                        continue;
                usec -= n * parts[i].usec;
                off += (size_t) snprintf(buf + off, size - off, "%llu%s", (unsigned long long) n,
                                         parts[i].suffix);
        }
        return buf;
}

char *time_format_rfc3339(uint64_t usec, char buf[static RFC3339_MAX]) {
        time_t t = (time_t) (usec / USEC_PER_SEC);
        struct tm tm;

        gmtime_r(&t, &tm);
        strftime(buf, RFC3339_MAX, "%Y-%m-%dT%H:%M:%SZ", &tm);
        return buf;
}

char *time_format_rfc3339_ms(uint64_t usec, char buf[static RFC3339_MAX]) {
        time_t t = (time_t) (usec / USEC_PER_SEC);
        struct tm tm;
        char s[24];

        gmtime_r(&t, &tm);
        strftime(s, sizeof s, "%Y-%m-%dT%H:%M:%S", &tm);
        snprintf(buf, RFC3339_MAX, "%s.%03uZ", s, (unsigned) (usec / USEC_PER_MSEC % 1000));
        return buf;
}

static int parse_digits(const char **p, int n, int *ret) {
        int v = 0;
        for (int i = 0; i < n; i++) {
                char c = (*p)[i];
                if (c < '0' || c > '9')
                        return -EINVAL;
                v = v * 10 + (c - '0');
        }
        *p += n;
        *ret = v;
        return 0;
}

static int expect_char(const char **p, char c) {
        if (**p != c)
                return -EINVAL;
        (*p)++;
        return 0;
}

/* Seconds since the epoch of a UTC civil date (days_from_civil). */
static int64_t civil_to_epoch(int y, int mon, int d, int h, int mi, int s) {
        y -= mon <= 2;
        int64_t era = (y >= 0 ? y : y - 399) / 400;
        int64_t yoe = y - era * 400;
        int64_t doy = (153 * (mon + (mon > 2 ? -3 : 9)) + 2) / 5 + d - 1;
        int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        int64_t days = era * 146097 + doe - 719468;
        return days * 86400 + h * 3600 + mi * 60 + s;
}

static bool date_valid(int y, int mon, int d) {
        static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
        if (mon < 1 || mon > 12 || d < 1)
                return false;
        bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        return d <= mdays[mon - 1] + (mon == 2 && leap);
}

int time_parse_rfc3339(const char *s, uint64_t *ret_usec) {
        const char *p = s;
        int y, mon, d, h = 0, mi = 0, sec = 0;
        uint64_t frac = 0; /* microseconds */

        if (!s || parse_digits(&p, 4, &y) < 0 || expect_char(&p, '-') < 0 || parse_digits(&p, 2, &mon) < 0 ||
            expect_char(&p, '-') < 0 || parse_digits(&p, 2, &d) < 0)
                return -EINVAL;
        if (!date_valid(y, mon, d))
                return -EINVAL;

        int64_t offset = 0;
        if (*p) {
                if ((*p != 'T' && *p != 't' && *p != ' ') || (p++, parse_digits(&p, 2, &h)) < 0 ||
                    expect_char(&p, ':') < 0 || parse_digits(&p, 2, &mi) < 0 || expect_char(&p, ':') < 0 ||
                    parse_digits(&p, 2, &sec) < 0)
                        return -EINVAL;
                if (h > 23 || mi > 59 || sec > 60)
                        return -EINVAL;
                if (*p == '.') {
                        uint64_t scale = 100000; /* the first digit's microseconds */
                        p++;
                        if (*p < '0' || *p > '9')
                                return -EINVAL;
                        for (; *p >= '0' && *p <= '9'; p++, scale /= 10)
                                frac += (uint64_t) (*p - '0') * scale;
                }
                if (*p == 'Z' || *p == 'z')
                        p++;
                else if (*p == '+' || *p == '-') {
                        int sign = *p++ == '-' ? -1 : 1, oh, om;
                        if (parse_digits(&p, 2, &oh) < 0 || expect_char(&p, ':') < 0 ||
                            parse_digits(&p, 2, &om) < 0 || oh > 23 || om > 59)
                                return -EINVAL;
                        offset = sign * (oh * 3600 + om * 60);
                } else
                        return -EINVAL;
                if (*p)
                        return -EINVAL;
        }

        int64_t t = civil_to_epoch(y, mon, d, h, mi, sec) - offset;
        if (t < 0)
                return -ERANGE;
        *ret_usec = (uint64_t) t * USEC_PER_SEC + frac;
        return 0;
}
