/* tests/fuzz/common.c: helpers of the libFuzzer targets (see common.h). */
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"

void fuzz_fail(const char *file, int line, const char *cond, const char *fmt, ...) {
        va_list ap;

        fprintf(stderr, "%s:%d: invariant broken: %s: ", file, line, cond);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
        abort();
}

char *fuzz_string(const uint8_t *data, size_t size) {
        const uint8_t *nul = memchr(data, 0, size);

        return xstrndup((const char *) data, nul ? (size_t) (nul - data) : size);
}

bool fuzz_utf8(const char *s) {
        json_t *j = json_string(s);

        json_decref(j);
        return j != NULL;
}

static char tmpdir[64];

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        (void) st, (void) flag, (void) ftw;
        return remove(path);
}

static void tmpdir_remove(void) {
        if (tmpdir[0])
                nftw(tmpdir, remove_one, 16, FTW_DEPTH | FTW_PHYS);
}

const char *fuzz_tmpdir(void) {
        if (!tmpdir[0]) {
                /* tmpfs when there is one: a store's fsync on a busy disk
                 * can stall the API for seconds, which is not a finding. */
                snprintf(tmpdir, sizeof tmpdir, "%s/rpr-fuzz-XXXXXX",
                         access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
                if (!mkdtemp(tmpdir))
                        fuzz_fail(__FILE__, __LINE__, "mkdtemp", "cannot make %s", tmpdir);
                atexit(tmpdir_remove);
        }
        return tmpdir;
}

void fuzz_quiet(void) {
        log_set_max_level(LOG_LEVEL_ERR - 1);
}
