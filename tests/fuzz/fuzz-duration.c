/* fuzz-duration: the one duration parser and its formatter agree.
 *
 * Any text that parses formats to a text that parses to the same value,
 * and any value (the input's first 8 bytes) survives format then parse. */
#include <string.h>

#include "common.h"

static void round_trip(uint64_t usec) {
        char buf[32], again[32];
        uint64_t back;

        duration_format(usec, buf, sizeof buf);
        fuzz_check(duration_parse(buf, &back) == 0, "\"%s\" (from %llu) does not parse", buf,
                   (unsigned long long) usec);
        fuzz_check(back == usec, "\"%s\" is %llu, not %llu", buf, (unsigned long long) back,
                   (unsigned long long) usec);
        fuzz_check(STREQ(duration_format(back, again, sizeof again), buf), "\"%s\" then \"%s\"", buf, again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_free_ char *text = fuzz_string(data, size);
        uint64_t usec, raw = 0;
        int r;

        r = duration_parse(text, &usec);
        fuzz_check(r == 0 || r == -EINVAL || r == -ERANGE, "\"%s\": %d", text, r);
        if (r == 0)
                round_trip(usec);

        memcpy(&raw, data, size < sizeof raw ? size : sizeof raw);
        round_trip(raw);
        return 0;
}
