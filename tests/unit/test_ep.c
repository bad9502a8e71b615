/* test_ep.c — the Linux worker loop's pieces: the timer heap (src/unix/ep.c)
 * and workers that accept, judge through the gate's hook and relay
 * (src/unix/ep_pool.c), over loopback sockets. Linux only. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "admission.h"
#include "condgate/config.h"
#include "ep.h"
#include "gen.h"
#include "log.h"
#include "stats.h"
#include "worker.h"

/* ------------------------------------------------------------------------
 * The timer heap
 */

#define NTIMERS 2000

typedef struct ttimer {
    cg__ep_timer t;
    unsigned fired;
    uint64_t fired_at;
    bool stopped;
} ttimer;

static cg__ep *fire_ep;
static uint64_t last_fire_due;

static void on_fire(cg__ep_timer *t)
{
    ttimer *x = (ttimer *)t;
    x->fired++;
    x->fired_at = fire_ep->now_ms;
    assert_true(t->due_ms <= fire_ep->now_ms); /* never before it is due */
    assert_true(t->due_ms >= last_fire_due);   /* in order of due time */
    last_fire_due = t->due_ms;
    assert_int_equal(t->index, CG_EP_IDLE); /* disarmed before it runs */
}

static void timer_heap_random(void **state)
{
    (void)state;
    static ttimer tt[NTIMERS];
    cg__ep ep;
    assert_int_equal(cg__ep_init(&ep), 0);
    fire_ep = &ep;
    ep.now_ms = 1000;
    srand(16);
    for (size_t i = 0; i < NTIMERS; i++) {
        cg__timer_init(&tt[i].t, on_fire);
        assert_int_equal(cg__timer_start(&ep, &tt[i].t, (uint64_t)(rand() % 5000)), 0);
    }
    /* Re-arm a third, stop a sixth (some twice), as connections do. */
    for (size_t i = 0; i < NTIMERS; i += 3)
        assert_int_equal(cg__timer_start(&ep, &tt[i].t, (uint64_t)(rand() % 5000)), 0);
    for (size_t i = 1; i < NTIMERS; i += 6) {
        cg__timer_stop(&ep, &tt[i].t);
        cg__timer_stop(&ep, &tt[i].t);
        tt[i].stopped = true;
    }
    assert_true(cg__ep_timeout(&ep, -1) >= 0);
    assert_true(cg__ep_timeout(&ep, 3) <= 3);
    last_fire_due = 0;
    while (ep.nheap > 0) {
        int wait = cg__ep_timeout(&ep, -1);
        assert_true(wait >= 0 && wait <= 5000);
        ep.now_ms += (uint64_t)wait + (uint64_t)(rand() % 3);
        cg__ep_run_timers(&ep);
    }
    assert_int_equal(cg__ep_timeout(&ep, -1), -1);
    for (size_t i = 0; i < NTIMERS; i++) {
        assert_int_equal(tt[i].fired, tt[i].stopped ? 0 : 1);
        if (!tt[i].stopped)
            assert_true(tt[i].fired_at >= tt[i].t.due_ms && tt[i].fired_at <= tt[i].t.due_ms + 2);
    }
    cg__ep_cleanup(&ep);
}

/* ------------------------------------------------------------------------
 * Workers that accept: a pool of two on one listening socket, the gate's
 * hooks played by the test (127.0.0.3 refused, everyone else admitted to
 * the built-in echo).
 */

#define NWORKERS 2

typedef struct afx {
    cg__stats *stats;
    cg__admission admission;
    char *names[1];
    cg__gen *gen;
    cg__pool *pool;
    int lfd;
    struct sockaddr_in laddr;
    _Atomic unsigned judged, refused, shed;
} afx;

static bool admit(void *arg, size_t slot, size_t l, const struct sockaddr *caller,
                  cg__route **route, void **hold)
{
    afx *fx = arg;
    const struct sockaddr_in *sin = (const struct sockaddr_in *)caller;
    assert_true(slot >= 1 && slot <= NWORKERS);
    assert_int_equal(l, 0);
    atomic_fetch_add(&fx->judged, 1);
    if (sin->sin_addr.s_addr == htonl(0x7f000003) || !cg__admission_try_take(&fx->admission)) {
        atomic_fetch_add(&fx->refused, 1);
        return false;
    }
    *route = cg__route_ref(cg__gen_route(fx->gen, 0));
    *hold = NULL;
    return true;
}

static void shed(void *arg, size_t slot, size_t l)
{
    (void)slot, (void)l;
    atomic_fetch_add(&((afx *)arg)->shed, 1);
}

static int afx_setup(void **state)
{
    afx *fx = calloc(1, sizeof(*fx));
    assert_non_null(fx);
    fx->stats = cg__stats_new(1, NWORKERS);
    cg__admission_init(&fx->admission, 1000);
    fx->names[0] = "echo";
    cg_config *cfg = calloc(1, sizeof(*cfg));
    cfg->path = strdup("test_ep.ini");
    cfg->workers = NWORKERS;
    cfg->listeners = calloc(1, sizeof(*cfg->listeners));
    cfg->nlisteners = 1;
    cfg->listeners[0].name = strdup("echo");
    cfg->listeners[0].echo = true;
    cfg->listeners[0].idle_timeout_ms = 300000;
    size_t lmap[1] = {0};
    fx->gen = cg__gen_new(cfg, 1, lmap, 1);
    assert_non_null(fx->gen);

    fx->lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    fx->laddr = (struct sockaddr_in){.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001)};
    socklen_t len = sizeof(fx->laddr);
    assert_int_equal(bind(fx->lfd, (struct sockaddr *)&fx->laddr, len), 0);
    assert_int_equal(listen(fx->lfd, 128), 0);
    assert_int_equal(getsockname(fx->lfd, (struct sockaddr *)&fx->laddr, &len), 0);

    cg_socket_t fds[1] = {fx->lfd};
    cg__pool_env env = {
        .relay = {.stats = fx->stats,
                  .admission = &fx->admission,
                  .listener_names = fx->names,
                  .nlisteners = 1},
        .listen_fds = fds,
        .gate = {.admit = admit, .shed = shed, .arg = fx},
    };
    assert_true(cg__pool_accepts());
    assert_int_equal(cg__pool_start(NWORKERS, &env, &fx->pool), 0);
    cg__log_setup(CG_LOG_WARN, CG_LOG_TEXT);
    *state = fx;
    return 0;
}

static int afx_teardown(void **state)
{
    afx *fx = *state;
    cg__pool_stop(fx->pool);
    assert_int_equal(cg__admission_active(&fx->admission), 0);
    close(fx->lfd);
    cg__gen_unref(fx->gen);
    cg__stats_free(fx->stats);
    free(fx);
    return 0;
}

/* A blocking client from source address 127.0.0.src. */
static int client(const afx *fx, unsigned src)
{
    int c = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in from = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000000 | src)};
    assert_int_equal(bind(c, (struct sockaddr *)&from, sizeof(from)), 0);
    struct timeval tv = {.tv_sec = 5};
    setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    assert_int_equal(connect(c, (const struct sockaddr *)&fx->laddr, sizeof(fx->laddr)), 0);
    return c;
}

static uint64_t open_on(const afx *fx, size_t worker)
{
    uint64_t handled, active;
    cg__stats_worker(fx->stats, worker, &handled, &active);
    return active;
}

static void workers_accept_judge_and_spread(void **state)
{
    afx *fx = *state;
    int c[20];
    for (unsigned i = 0; i < 20; i++) {
        c[i] = client(fx, 2);
        char buf[5];
        assert_int_equal(send(c[i], "hello", 5, 0), 5);
        assert_int_equal(recv(c[i], buf, sizeof(buf), MSG_WAITALL), 5);
        assert_memory_equal(buf, "hello", 5);
    }
    /* One at a time, every worker idle: the one ahead steps back. */
    uint64_t a0 = open_on(fx, 0), a1 = open_on(fx, 1);
    assert_int_equal(a0 + a1, 20);
    assert_true(a0 >= 8 && a1 >= 8);
    assert_int_equal(atomic_load(&fx->judged), 20);

    /* Refused by the hook: reset, never a byte. */
    int r = client(fx, 3);
    char b;
    ssize_t n = recv(r, &b, 1, 0);
    assert_true(n == 0 || (n < 0 && errno == ECONNRESET));
    close(r);
    assert_int_equal(atomic_load(&fx->refused), 1);

    for (unsigned i = 0; i < 20; i++)
        close(c[i]);
}

static void unlisten_stops_accepting(void **state)
{
    afx *fx = *state;
    int c = client(fx, 2);
    char buf[5];
    assert_int_equal(send(c, "hello", 5, 0), 5);
    assert_int_equal(recv(c, buf, sizeof(buf), MSG_WAITALL), 5);
    cg__pool_unlisten(fx->pool);
    assert_int_equal(shutdown(fx->lfd, SHUT_RDWR), 0); /* as the drain does */
    int d = socket(AF_INET, SOCK_STREAM, 0);
    assert_int_not_equal(connect(d, (const struct sockaddr *)&fx->laddr, sizeof(fx->laddr)), 0);
    assert_int_equal(errno, ECONNREFUSED);
    close(d);
    /* The open connection still relays. */
    assert_int_equal(send(c, "again", 5, 0), 5);
    assert_int_equal(recv(c, buf, sizeof(buf), MSG_WAITALL), 5);
    assert_memory_equal(buf, "again", 5);
    close(c);
    assert_int_equal(atomic_load(&fx->judged), 1);
}

/* Hand-offs from the control thread (PROXY-header listeners): batches
 * submitted while the workers drain their queues. A wake-up lost between a
 * worker's read of its eventfd and clearing its flag left every later
 * hand-off to it queued for good; here that is a client waiting in vain. */
static void handoffs_are_never_lost(void **state)
{
    afx *fx = *state;
    enum { BATCHES = 150, BATCH = 256 };
    for (unsigned b = 0; b < BATCHES; b++) {
        int cl[BATCH];
        for (unsigned i = 0; i < BATCH; i++) {
            int sv[2];
            assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
            assert_int_equal(fcntl(sv[0], F_SETFL, O_NONBLOCK), 0);
            struct timeval tv = {.tv_sec = 5};
            assert_int_equal(setsockopt(sv[1], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
            assert_true(cg__admission_try_take(&fx->admission));
            assert_int_equal(cg__pool_submit(fx->pool, sv[0], NULL,
                                             cg__route_ref(cg__gen_route(fx->gen, 0)), NULL, NULL),
                             0);
            cl[i] = sv[1];
            assert_int_equal(send(cl[i], "ping!", 5, 0), 5);
        }
        for (unsigned i = 0; i < BATCH; i++) {
            char buf[5];
            /* Waits 5 s at most: a timeout means the hand-off never started. */
            assert_int_equal(recv(cl[i], buf, sizeof(buf), MSG_WAITALL), 5);
            close(cl[i]);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(timer_heap_random),
        cmocka_unit_test_setup_teardown(workers_accept_judge_and_spread, afx_setup, afx_teardown),
        cmocka_unit_test_setup_teardown(unlisten_stops_accepting, afx_setup, afx_teardown),
        cmocka_unit_test_setup_teardown(handoffs_are_never_lost, afx_setup, afx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
