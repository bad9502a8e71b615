/* unix/ep.c — the worker's epoll instance, clock and timer heap (see ep.h). */
#include "ep.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include "condgate/common.h"

int cg__ep_init(cg__ep *ep)
{
    *ep = (cg__ep){.epfd = epoll_create1(EPOLL_CLOEXEC)};
    if (ep->epfd < 0)
        return errno == EMFILE || errno == ENFILE ? CG_EMFILE : CG_ESYS;
    cg__ep_update_time(ep);
    return 0;
}

void cg__ep_cleanup(cg__ep *ep)
{
    if (ep->epfd >= 0)
        close(ep->epfd);
    ep->epfd = -1;
    free(ep->heap);
    ep->heap = NULL;
    ep->nheap = ep->cap = 0;
}

int cg__ep_add(cg__ep *ep, int fd, uint32_t events, cg__ep_watch *w)
{
    struct epoll_event ev = {.events = events, .data.ptr = w};
    return epoll_ctl(ep->epfd, EPOLL_CTL_ADD, fd, &ev) == 0 ? 0 : -errno;
}

void cg__ep_del(cg__ep *ep, int fd)
{
    struct epoll_event ev = {0}; /* kernels before 2.6.9 wanted one */
    (void)epoll_ctl(ep->epfd, EPOLL_CTL_DEL, fd, &ev);
}

void cg__ep_update_time(cg__ep *ep)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ep->now_ms = (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ------------------------------------------------------------------------
 * The timer heap: heap[0] is due first; each timer knows its place.
 */

static void place(cg__ep *ep, size_t i, cg__ep_timer *t)
{
    ep->heap[i] = t;
    t->index = i;
}

static void sift_up(cg__ep *ep, size_t i)
{
    cg__ep_timer *t = ep->heap[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (ep->heap[parent]->due_ms <= t->due_ms)
            break;
        place(ep, i, ep->heap[parent]);
        i = parent;
    }
    place(ep, i, t);
}

static void sift_down(cg__ep *ep, size_t i)
{
    cg__ep_timer *t = ep->heap[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= ep->nheap)
            break;
        if (c + 1 < ep->nheap && ep->heap[c + 1]->due_ms < ep->heap[c]->due_ms)
            c++;
        if (t->due_ms <= ep->heap[c]->due_ms)
            break;
        place(ep, i, ep->heap[c]);
        i = c;
    }
    place(ep, i, t);
}

void cg__timer_stop(cg__ep *ep, cg__ep_timer *t)
{
    size_t i = t->index;
    if (i == CG_EP_IDLE)
        return;
    t->index = CG_EP_IDLE;
    cg__ep_timer *last = ep->heap[--ep->nheap];
    if (last == t)
        return;
    place(ep, i, last);
    if (i > 0 && ep->heap[(i - 1) / 2]->due_ms > last->due_ms)
        sift_up(ep, i);
    else
        sift_down(ep, i);
}

int cg__timer_start(cg__ep *ep, cg__ep_timer *t, uint64_t after_ms)
{
    cg__timer_stop(ep, t);
    if (ep->nheap == ep->cap) {
        size_t cap = ep->cap ? 2 * ep->cap : 64;
        cg__ep_timer **h = realloc(ep->heap, cap * sizeof(*h));
        if (h == NULL)
            return CG_ENOMEM;
        ep->heap = h;
        ep->cap = cap;
    }
    t->due_ms = ep->now_ms + after_ms;
    place(ep, ep->nheap++, t);
    sift_up(ep, t->index);
    return 0;
}

int cg__ep_timeout(const cg__ep *ep, int cap_ms)
{
    if (ep->nheap == 0)
        return cap_ms;
    uint64_t due = ep->heap[0]->due_ms;
    uint64_t wait = due > ep->now_ms ? due - ep->now_ms : 0;
    if (cap_ms >= 0 && wait > (uint64_t)cap_ms)
        return cap_ms;
    return wait > (uint64_t)INT32_MAX ? INT32_MAX : (int)wait;
}

void cg__ep_run_timers(cg__ep *ep)
{
    while (ep->nheap > 0 && ep->heap[0]->due_ms <= ep->now_ms) {
        cg__ep_timer *t = ep->heap[0];
        cg__timer_stop(ep, t);
        t->fn(t);
    }
}
