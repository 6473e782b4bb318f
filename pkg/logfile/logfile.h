/* logfile: rpr's line logs under $LOGS, one file per year of the events
 * ("connectivity-2026.log"), one line per event, RFC 3339 time first.
 *
 * These are for people (tail, grep) and for the API's "last N lines". Lines
 * are appended with O_APPEND in one write(2) each, so concurrent writers
 * never interleave within a line; newlines inside a field are replaced. */
#pragma once

#include "base/base.h"

typedef struct LogFile LogFile;

/* name: "activity" or "connectivity". dir is created (0750) if missing. */
int logfile_open(const char *dir, const char *name, LogFile **ret);
void logfile_free(LogFile *l); /* NULL-safe */

/* Appends "TIME FIELDS\n" to the file of when_usec's year; fields is one
 * line (formatted like printf). Thread-safe. */
int logfile_append(LogFile *l, uint64_t when_usec, const char *fmt, ...) _printf_(3, 4);
/* Closes open files so that the next append reopens them (SIGHUP, after
 * logrotate). */
void logfile_reopen(LogFile *l);
/* The last n lines (over year files, newest last), as one string; caller
 * frees. "" when there are none. */
int logfile_tail(LogFile *l, size_t n, char **ret);
