/* systemd: rprd under systemd, and nothing without it.
 *
 * The sockets systemd listens on and hands over (socket activation, told
 * apart by FileDescriptorName), the notify protocol (READY, STATUS,
 * WATCHDOG, STOPPING, to $NOTIFY_SOCKET), the watchdog interval systemd
 * asks for, and the journal: when stderr is the journal ($JOURNAL_STREAM
 * names it) records go there with structured fields instead. Every call is
 * harmless when rprd was started by hand. */
#pragma once

#include "base/base.h"

/* The listening sockets of socket activation: *ret_fds (caller frees) and
 * their names (*ret_names, NULL-terminated, caller frees each and the
 * array; "unknown" when unnamed). Returns how many (0 without activation)
 * or a negative errno. The environment variables are unset. */
int systemd_listeners(int **ret_fds, char ***ret_names);
void systemd_names_free(char **names);

/* Sends state ("READY=1", "STATUS=...", "WATCHDOG=1", "STOPPING=1") to the
 * service manager; 0 when there is none to tell. */
int systemd_notify(const char *state);
int systemd_notifyf(const char *fmt, ...) _printf_(1, 2);

/* How often systemd wants WATCHDOG=1 (WatchdogSec), 0 when it does not. */
uint64_t systemd_watchdog_usec(void);

/* Whether stderr is connected to the journal ($JOURNAL_STREAM). */
bool systemd_journal_wanted(void);
/* A LogSink (base.h) writing journal entries with MESSAGE, PRIORITY,
 * SYSLOG_IDENTIFIER=rprd and RPR_KIND / RPR_NAME, in the journal's native
 * protocol to userdata (a socket path; NULL: /run/systemd/journal/socket).
 * Falls back to stderr when the journal cannot be reached. */
void systemd_journal_sink(void *userdata, int level, const char *kind, const char *name, const char *message);
