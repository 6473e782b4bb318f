/* rprd.h: what the files of cmd/rprd share. */
#pragma once

#include <pthread.h>
#include <stdatomic.h>

#include "base/base.h"

typedef struct ApiServer ApiServer;
typedef struct Controller Controller;
typedef struct LogFile LogFile;
typedef struct RunController RunController;
typedef struct PipelineController PipelineController;
typedef struct Store Store;

/* supervise.c: the watchdog, STATUS, SIGHUP and --idle-exit. */
typedef struct Supervisor {
        Store *store;
        ApiServer *api;
        Controller *controller; /* NULL: no controllers run */
        RunController *runs;    /* NULL: no controllers run */
        PipelineController *pipelines;
        LogFile *logs[2];       /* reopened on SIGHUP; NULL-terminated if fewer */
        uint64_t idle_exit_usec;
        /* set by supervise_start() */
        uint64_t watchdog_usec;
        _Atomic uint64_t last_watchdog; /* monotonic */
        char idle_text[32];
        atomic_bool stopping;
        pthread_t thread;
} Supervisor;

void supervise_signals(void);
/* Before the controller starts: its loop sends WATCHDOG=1 when systemd asks. */
void supervise_watchdog_setup(Supervisor *s);
int supervise_start(Supervisor *s);
void supervise_stop(Supervisor *s);

/* statedir.c: the state directory takes writes (a probe file), then is
 * made private (0700); a negative errno after telling the operator why. */
int state_dir_check(const char *dir);
/* Tells the operator why store_open(url) failed with r, and what to do. */
void store_open_failed(const char *url, int r);
