/* command: the Command kind's controller — one command for a set of
 * Servers, tracked until each has run it.
 *
 * For devices that are offline most of the time: the Servers are chosen
 * once, when the Command is first seen (by name, or by labels then), and
 * one Run per Server is made in the same transaction as the status that
 * lists them, so a crash can neither lose nor double one. The Run
 * controller does the rest as for any Run: a Server that is reachable runs
 * it at once, one that is not gets it as soon as it is back, or the Run
 * fails ServerUnreachable after spec.waitTimeout; every Run survives
 * restarts. As Runs change, the Command's status gathers, per Server, the
 * Run's phase, reason, exit code and end, and counts them; its phase is
 * Running until every Server has finished, then Succeeded or Failed.
 * Deleting a Command cancels its unfinished Runs, then removes them with
 * their output (finalizer "rpr/runs"). */
#pragma once

#include "base/base.h"

typedef struct Store Store;
typedef struct Controller Controller;
typedef struct LogFile LogFile;
typedef struct RunController RunController;
typedef struct CommandController CommandController;

#define COMMAND_FINALIZER "rpr/runs"

typedef struct CommandOptions {
        Store *store;
        Controller *controller; /* the Command kind is registered on it */
        RunController *runs;
        const char *run_dir; /* where Runs' output files are, to remove them */
        LogFile *activity;   /* may be NULL */
} CommandOptions;

int command_controller_new(const CommandOptions *o, CommandController **ret);
void command_controller_free(CommandController *c); /* NULL-safe */
