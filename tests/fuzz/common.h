/* tests/fuzz/common.h: what the libFuzzer targets share.
 *
 * Each target is one file, fuzz-NAME.c, with LLVMFuzzerTestOneInput()
 * asserting its invariant through fuzz_check(): a broken invariant aborts,
 * which libFuzzer reports as a crash and saves the input. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "base/base.h"

/* Aborts with the message when cond is false. */
#define fuzz_check(cond, ...)                                                                                  \
        do {                                                                                                   \
                if (!(cond))                                                                                   \
                        fuzz_fail(__FILE__, __LINE__, #cond, __VA_ARGS__);                                     \
        } while (0)
_Noreturn void fuzz_fail(const char *file, int line, const char *cond, const char *fmt, ...) _printf_(4, 5);

/* The input as a C string (caller frees), cut at a NUL byte if it has one. */
char *fuzz_string(const uint8_t *data, size_t size);
/* Whether s is UTF-8 that jansson takes as a string. */
bool fuzz_utf8(const char *s);
/* A private temporary directory for this process (on tmpfs when there
 * is one), removed at exit. */
const char *fuzz_tmpdir(void);
/* Quiets rprd's log (stderr) so that the fuzzer's own output stays readable. */
void fuzz_quiet(void);
