/* base-text: text that crosses a boundary — cut to a size without breaking
 * a UTF-8 character, and text from a remote (GitHub's error messages, git's
 * and ssh's errors, webhook fields) flattened to one safe line before it
 * reaches a status, a log line or an answer.
 *
 * The one idea: a remote decides what bytes it sends, so nothing it sends
 * may move a terminal's cursor (ESC), forge a log line (CR, LF) or make
 * JSON encoding fail (invalid UTF-8) further down. */
#include <stdio.h>
#include <string.h>

#include "base/base.h"

int utf8_char_len(const unsigned char *p, const unsigned char *end) {
        unsigned char c = p[0];
        int n;

        if (c < 0x80)
                return 1;
        if (c >= 0xc2 && c <= 0xdf)
                n = 2;
        else if (c >= 0xe0 && c <= 0xef)
                n = 3;
        else if (c >= 0xf0 && c <= 0xf4)
                n = 4;
        else
                return 0;
        for (int i = 1; i < n; i++) {
                if (p + i >= end)
                        return -1;
                if ((p[i] & 0xc0) != 0x80)
                        return 0;
                /* Overlong forms, surrogates and code points past U+10FFFF. */
                if (i == 1 && ((c == 0xe0 && p[1] < 0xa0) || (c == 0xed && p[1] > 0x9f) ||
                               (c == 0xf0 && p[1] < 0x90) || (c == 0xf4 && p[1] > 0x8f)))
                        return 0;
        }
        return n;
}

size_t utf8_cut(const char *s, size_t n, size_t max) {
        const unsigned char *u = (const unsigned char *) s;
        size_t start = max, need;

        if (n <= max)
                return n;
        /* Only the bytes before max are looked at (snprintf has already put
         * its NUL at max): find where the last character in them starts,
         * and keep it only if it ends before max. */
        while (start > 0 && max - start < 4 && (u[start - 1] & 0xc0) == 0x80)
                start--;
        if (start == 0)
                return 0;
        start--;
        need = u[start] >= 0xf0 ? 4 : u[start] >= 0xe0 ? 3 : u[start] >= 0xc0 ? 2 : 1;
        return start + need <= max ? max : start;
}

int vsnprintf_utf8(char *buf, size_t size, const char *fmt, va_list ap) {
        int r = vsnprintf(buf, size, fmt, ap);

        if (r >= 0 && size > 0 && (size_t) r >= size)
                buf[utf8_cut(buf, (size_t) r, size - 1)] = '\0';
        return r;
}

int snprintf_utf8(char *buf, size_t size, const char *fmt, ...) {
        va_list ap;
        int r;

        va_start(ap, fmt);
        r = vsnprintf_utf8(buf, size, fmt, ap);
        va_end(ap);
        return r;
}

char *text_flatten(char *s) {
        const unsigned char *p = (const unsigned char *) s, *end = p + strlen(s);
        char *o = s;

        while (p < end) {
                int n = utf8_char_len(p, end);

                if (n <= 0) {
                        *o++ = '?';
                        p++;
                } else if (n == 1) {
                        *o++ = *p < 0x20 || *p == 0x7f ? ' ' : (char) *p;
                        p++;
                } else if (n == 2 && p[0] == 0xc2 && p[1] < 0xa0) {
                        /* C1 controls (U+0080..U+009F): CSI among them. */
                        *o++ = ' ';
                        p += 2;
                } else {
                        memmove(o, p, (size_t) n);
                        o += n;
                        p += n;
                }
        }
        *o = '\0';
        return s;
}

char *text_flat_dup(const char *s, size_t max) {
        size_t n = s ? strlen(s) : 0;

        return text_flatten(xstrndup(s ? s : "", utf8_cut(s ? s : "", n, max)));
}
