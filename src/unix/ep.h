/* unix/ep.h — the smallest event loop a Linux worker needs: one epoll
 * instance with edge-triggered watches, a monotonic clock read once per
 * turn, and a min-heap of one-shot timers.
 *
 * libuv's loop keeps every watch level-triggered and registers it lazily,
 * which costs a relayed exchange six epoll_ctl calls; this one registers
 * each socket once, for every event, and lets close(2) take it out again.
 * Everything here belongs to the one thread that runs the loop.
 */
#ifndef CG_EP_H
#define CG_EP_H

#include <stddef.h>
#include <stdint.h>

/* Something epoll watches: the epoll_event's data points at it. */
typedef struct cg__ep_watch cg__ep_watch;
struct cg__ep_watch {
    void (*fn)(cg__ep_watch *w, uint32_t events);
};

/* A one-shot timer, embedded in its owner. index is its heap place, or
 * CG_EP_IDLE while it is not armed. */
#define CG_EP_IDLE SIZE_MAX
typedef struct cg__ep_timer cg__ep_timer;
struct cg__ep_timer {
    uint64_t due_ms;
    size_t index;
    void (*fn)(cg__ep_timer *t);
};

typedef struct cg__ep {
    int epfd;
    uint64_t now_ms; /* CLOCK_MONOTONIC, read at the start of each turn */
    cg__ep_timer **heap;
    size_t nheap, cap;
} cg__ep;

/* cg__ep_init: an epoll instance and an empty timer heap. Returns 0, or
 * CG_ESYS / CG_EMFILE / CG_ENOMEM. */
int cg__ep_init(cg__ep *ep);

/* cg__ep_cleanup: close the epoll instance and free the heap (the timers
 * themselves belong to their owners). Accepts a zeroed or half-built ep. */
void cg__ep_cleanup(cg__ep *ep);

/* cg__ep_add: watch fd for `events` (EPOLL* bits) on behalf of w. Returns 0
 * or a negative errno. close(2) of fd ends the watch. */
int cg__ep_add(cg__ep *ep, int fd, uint32_t events, cg__ep_watch *w);

/* cg__ep_del: stop watching fd (for a descriptor that stays open). */
void cg__ep_del(cg__ep *ep, int fd);

/* cg__ep_update_time: read the clock into ep->now_ms. */
void cg__ep_update_time(cg__ep *ep);

/* cg__timer_init: an unarmed timer calling fn. */
static inline void cg__timer_init(cg__ep_timer *t, void (*fn)(cg__ep_timer *t))
{
    t->index = CG_EP_IDLE;
    t->fn = fn;
    t->due_ms = 0;
}

/* cg__timer_start: (re)arm t to fire after_ms from ep->now_ms. Returns 0
 * or CG_ENOMEM (the heap could not grow; t stays unarmed). */
int cg__timer_start(cg__ep *ep, cg__ep_timer *t, uint64_t after_ms);

/* cg__timer_stop: disarm t; nothing when it is not armed. */
void cg__timer_stop(cg__ep *ep, cg__ep_timer *t);

/* cg__ep_timeout: milliseconds epoll_wait may sleep before the first timer
 * is due (-1: no timer), capped at cap_ms when cap_ms >= 0. */
int cg__ep_timeout(const cg__ep *ep, int cap_ms);

/* cg__ep_run_timers: fire every timer due at ep->now_ms (each one is
 * disarmed before its function runs, which may arm it again). */
void cg__ep_run_timers(cg__ep *ep);

#endif /* CG_EP_H */
