/* service.c — systemd's notify protocol and socket activation (service.h),
 * through libsystemd's sd_notify and sd_listen_fds_with_names. */
#include "service.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "condgate/common.h"
#include "inherit.h"

#if defined(CG_HAVE_SYSTEMD)
#include <systemd/sd-daemon.h>

int cg__service_sockets(char *why, size_t whylen)
{
    char **names = NULL;
    int n = sd_listen_fds_with_names(1, &names);
    if (n < 0) {
        snprintf(why, whylen, "socket activation: %s", strerror(-n));
        return CG_ESYS;
    }
    int rc = 0;
    for (int i = 0; i < n; i++) {
        const char *name = names != NULL && names[i] != NULL ? names[i] : "unknown";
        if (rc == 0) {
            rc = cg__inherit_add(name, SD_LISTEN_FDS_START + i, CG__FROM_SYSTEMD);
            if (rc != 0)
                snprintf(why, whylen, "socket activation: more than %d sockets passed",
                         CG_INHERIT_MAX);
        } else {
            close(SD_LISTEN_FDS_START + i);
        }
    }
    for (int i = 0; names != NULL && i < n; i++)
        free(names[i]);
    free(names);
    return rc;
}

static void notify(const char *state, const char *status)
{
    if (status != NULL)
        (void)sd_notifyf(0, "%s%sSTATUS=%s", state, state[0] != '\0' ? "\n" : "", status);
    else
        (void)sd_notify(0, state);
}

void cg__service_reloading(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    unsigned long long us = (unsigned long long)ts.tv_sec * 1000000ull + (unsigned long long)ts.tv_nsec / 1000u;
    (void)sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=reloading", us);
}

static uint64_t watchdog_ms(void)
{
    uint64_t usec = 0;
    if (sd_watchdog_enabled(0, &usec) <= 0)
        return 0;
    return usec / 2000u > 0 ? usec / 2000u : 1;
}

uint64_t cg__service_tick_ms(void)
{
    if (getenv("NOTIFY_SOCKET") == NULL)
        return 0;
    uint64_t w = watchdog_ms();
    return w != 0 && w < CG_SERVICE_STATUS_MS ? w : CG_SERVICE_STATUS_MS;
}

void cg__service_tick(const char *status)
{
    notify(watchdog_ms() != 0 ? "WATCHDOG=1" : "", status);
}

#else /* without libsystemd */

int cg__service_sockets(char *why, size_t whylen)
{
    if (getenv("LISTEN_FDS") == NULL)
        return 0;
    snprintf(why, whylen, "socket activation: LISTEN_FDS is set, but this condgate was built "
                          "without libsystemd (condgate -V lists no \"systemd\")");
    return CG_ENOTSUP;
}

static void notify(const char *state, const char *status)
{
    (void)state;
    (void)status;
}

void cg__service_reloading(void)
{
}

uint64_t cg__service_tick_ms(void)
{
    return 0;
}

void cg__service_tick(const char *status)
{
    (void)status;
}

#endif

void cg__service_ready(const char *status)
{
    notify("READY=1", status);
}

void cg__service_stopping(const char *status)
{
    notify("STOPPING=1", status);
}

