/* supervise: rprd's own housekeeping thread, once a second.
 *
 * It tells systemd what rprd is doing (STATUS=), sets the controller loop
 * up to send WATCHDOG=1 itself on every turn (so a wedged loop gets rprd
 * restarted), reopens the log files after SIGHUP, and with
 * --idle-exit stops rprd once nothing has happened and nothing is due for
 * that long: socket activation starts it again on the next request, and
 * rpr-reconcile.timer makes that request before anything falls due. */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "api/api.h"
#include "controller/controller.h"
#include "logfile/logfile.h"
#include "rprd.h"
#include "pipeline/pipeline.h"
#include "run/run.h"
#include "store/store.h"
#include "systemd/systemd.h"

#define PERIOD_USEC (250 * USEC_PER_MSEC)
#define STATUS_EVERY_USEC (5 * USEC_PER_SEC)

static atomic_bool hangup_seen;

static void on_hangup(int sig) {
        (void) sig;
        atomic_store(&hangup_seen, true);
}

void supervise_signals(void) {
        struct sigaction sa = {.sa_handler = on_hangup};

        sigemptyset(&sa.sa_mask);
        sigaction(SIGHUP, &sa, NULL);
}

typedef struct Counts {
        size_t unreachable, failing;
} Counts;

static void count_unreachable(const char *json, size_t len, void *userdata) {
        (void) len;
        ((Counts *) userdata)->unreachable += strstr(json, "\"phase\":\"Unreachable\"") != NULL;
}

static void count_failing(const char *json, size_t len, void *userdata) {
        (void) len;
        ((Counts *) userdata)->failing += strstr(json, "\"type\":\"Ready\",\"status\":\"False\"") != NULL;
}

static void send_status(Supervisor *s) {
        Counts n = {0};

        (void) store_list(s->store, "Server", NULL, count_unreachable, &n, NULL);
        (void) store_list(s->store, "Repo", NULL, count_failing, &n, NULL);
        systemd_notifyf("STATUS=%zu objects; %zu servers unreachable; %zu repos not ready; %zu runs in progress; "
                        "%zu reconciles queued",
                        store_count(s->store, NULL), n.unreachable, n.failing,
                        (s->runs ? run_controller_running(s->runs) : 0) +
                                (s->pipelines ? pipeline_controller_running(s->pipelines) : 0),
                        s->controller ? controller_pending(s->controller) : 0);
}

/* On the controller's dispatcher thread, every turn of its loop: a wedged
 * loop stops the keep-alives and systemd restarts rprd. */
static void watchdog_from_loop(void *userdata) {
        Supervisor *s = userdata;
        uint64_t now = now_mono_usec();

        if (now >= atomic_load(&s->last_watchdog) + s->watchdog_usec / 4) {
                systemd_notify("WATCHDOG=1");
                atomic_store(&s->last_watchdog, now);
        }
}

void supervise_watchdog_setup(Supervisor *s) {
        s->watchdog_usec = systemd_watchdog_usec();
        if (s->watchdog_usec && s->controller)
                controller_on_tick(s->controller, s->watchdog_usec / 4, watchdog_from_loop, s);
}

static bool idle_long_enough(Supervisor *s, uint64_t now) {
        uint64_t quiet = api_quiet_since(s->api);

        if (!s->idle_exit_usec || !quiet || now < quiet + s->idle_exit_usec)
                return false;
        if (!s->controller)
                return true;
        return controller_pending(s->controller) == 0 && (!s->runs || run_controller_running(s->runs) == 0) &&
               (!s->pipelines || pipeline_controller_running(s->pipelines) == 0) &&
               controller_next_due_usec(s->controller) > s->idle_exit_usec;
}

static void *supervise_thread(void *arg) {
        Supervisor *s = arg;
        uint64_t last_status = 0;

        while (!atomic_load(&s->stopping)) {
                uint64_t now = now_usec();

                /* Without controllers, the API alone is what there is to watch. */
                if (s->watchdog_usec && !s->controller)
                        watchdog_from_loop(s);
                if (now >= last_status + STATUS_EVERY_USEC) {
                        send_status(s);
                        last_status = now;
                }
                if (atomic_exchange(&hangup_seen, false)) {
                        for (size_t i = 0; i < ELEMENTSOF(s->logs) && s->logs[i]; i++)
                                logfile_reopen(s->logs[i]);
                        log_info("log files reopened (SIGHUP)");
                }
                if (idle_long_enough(s, now)) {
                        log_info("idle for %s with nothing due: exiting until the next request", s->idle_text);
                        api_stop(s->api);
                        break;
                }
                usleep(PERIOD_USEC);
        }
        return NULL;
}

int supervise_start(Supervisor *s) {
        if (s->idle_exit_usec)
                duration_format(s->idle_exit_usec, s->idle_text, sizeof s->idle_text);
        atomic_store(&s->stopping, false);
        return -pthread_create(&s->thread, NULL, supervise_thread, s);
}

void supervise_stop(Supervisor *s) {
        atomic_store(&s->stopping, true);
        pthread_join(s->thread, NULL);
}
