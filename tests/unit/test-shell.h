/* test-shell: a shell command from a unit test (git repositories as
 * fixtures); a command that fails fails the test, naming it. Include after
 * cmocka.h. */
#pragma once

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "base/base.h"

static void sh(const char *fmt, ...) _printf_(1, 2);
static void sh(const char *fmt, ...) {
        va_list ap;
        char *cmd;

        va_start(ap, fmt);
        assert_true(vasprintf(&cmd, fmt, ap) >= 0);
        va_end(ap);
        int r = system(cmd);
        if (r != 0)
                fail_msg("%s: exit %d", cmd, r);
        free(cmd);
}
