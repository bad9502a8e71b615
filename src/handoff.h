/* handoff.h — what both worker pools (worker.c on libuv, unix/ep_pool.c on
 * Linux) share for the sockets the control thread hands to a worker: one
 * hand-off, the bounded ring a worker's queue is, and the least-loaded
 * choice. The ring is not locked here: its owner holds its own lock.
 */
#ifndef CG_HANDOFF_H
#define CG_HANDOFF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "relay.h"
#include "route.h"

/* Most connections waiting in one worker's hand-off queue. */
#define CG_WORKER_QUEUE_MAX 8192

/* One accepted socket on its way to a worker. */
typedef struct cg__handoff {
    cg__route *route;
    void *hold;
    cg_socket_t fd;
    cg__peer peer; /* sa_family 0: unknown */
} cg__handoff;

/* cg__handoff_make: a hand-off of fd along route with hold; the caller's
 * address is copied when it is IPv4 or IPv6 (else unknown). */
static inline cg__handoff cg__handoff_make(cg_socket_t fd, const struct sockaddr *peer,
                                           cg__route *route, void *hold)
{
    cg__handoff h = {.route = route, .hold = hold, .fd = fd};
    if (peer != NULL && peer->sa_family == AF_INET)
        memcpy(&h.peer, peer, sizeof(h.peer.in));
    else if (peer != NULL && peer->sa_family == AF_INET6)
        memcpy(&h.peer, peer, sizeof(h.peer.in6));
    return h;
}

/* A worker's queue: CG_WORKER_QUEUE_MAX slots (slots NULL: none). */
typedef struct cg__handoff_ring {
    cg__handoff *slots;
    size_t head, count;
} cg__handoff_ring;

/* cg__handoff_push: queue h; false when the ring is full. */
static inline bool cg__handoff_push(cg__handoff_ring *r, const cg__handoff *h)
{
    if (r->slots == NULL || r->count >= CG_WORKER_QUEUE_MAX)
        return false;
    r->slots[(r->head + r->count) % CG_WORKER_QUEUE_MAX] = *h;
    r->count++;
    return true;
}

/* cg__handoff_pop: the oldest hand-off into *out; false when empty. */
static inline bool cg__handoff_pop(cg__handoff_ring *r, cg__handoff *out)
{
    if (r->count == 0)
        return false;
    *out = r->slots[r->head];
    r->head = (r->head + 1) % CG_WORKER_QUEUE_MAX;
    r->count--;
    return true;
}

/* cg__handoff_pick: of n workers, the least loaded by load(arg, i), equal
 * loads going round robin from `start`. */
static inline unsigned cg__handoff_pick(unsigned n, unsigned start,
                                        uint64_t (*load)(void *arg, unsigned i), void *arg)
{
    unsigned best = start % n;
    uint64_t best_load = load(arg, best);
    for (unsigned k = 1; k < n; k++) {
        unsigned i = (start + k) % n;
        uint64_t l = load(arg, i);
        if (l < best_load) {
            best = i;
            best_load = l;
        }
    }
    return best;
}

#endif /* CG_HANDOFF_H */
