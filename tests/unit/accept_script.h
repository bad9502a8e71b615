/* accept_script.h — helpers shared by the accept tests of both platforms
 * (test_accept.c, test_accept_win.c): a scripted condition callback that
 * records what it saw, and socket-address helpers. Test code only; include
 * it after cmocka.h and the platform's socket headers.
 */
#ifndef CG_TEST_ACCEPT_SCRIPT_H
#define CG_TEST_ACCEPT_SCRIPT_H

#include <stdint.h>
#include <string.h>

#include "condgate/accept.h"

#define MAX_CALLS 16

/* What the condition callback saw, and what it answers. */
struct cb {
    int calls;
    const cg_verdict *script; /* answer i for call i ... */
    int nscript;
    cg_verdict then; /* ... and this one afterwards */
    struct sockaddr_storage caller[MAX_CALLS];
    struct sockaddr_storage callee[MAX_CALLS];
    socklen_t caller_len[MAX_CALLS];
    socklen_t callee_len[MAX_CALLS];
};

static cg_verdict cond(const struct sockaddr *caller, socklen_t caller_len,
                       const struct sockaddr *callee, socklen_t callee_len, void *arg)
{
    struct cb *cb = arg;
    int i = cb->calls++;

    if (i < MAX_CALLS) {
        assert_true((size_t)caller_len <= sizeof cb->caller[i]);
        assert_true((size_t)callee_len <= sizeof cb->callee[i]);
        memcpy(&cb->caller[i], caller, (size_t)caller_len);
        memcpy(&cb->callee[i], callee, (size_t)callee_len);
        cb->caller_len[i] = caller_len;
        cb->callee_len[i] = callee_len;
    }
    return i < cb->nscript ? cb->script[i] : cb->then;
}

static struct cb cb_always(cg_verdict v)
{
    struct cb cb;

    memset(&cb, 0, sizeof cb);
    cb.then = v;
    return cb;
}

static socklen_t make_addr(int family, const char *ip, uint16_t port, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof *ss);
    if (family == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)ss;
        in->sin_family = AF_INET;
        in->sin_port = htons(port);
        assert_int_equal(inet_pton(AF_INET, ip, &in->sin_addr), 1);
        return (socklen_t)sizeof *in;
    }
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons(port);
    assert_int_equal(inet_pton(AF_INET6, ip, &in6->sin6_addr), 1);
    return (socklen_t)sizeof *in6;
}

static uint16_t port_of(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)ss)->sin_port);
    return ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
}

#endif /* CG_TEST_ACCEPT_SCRIPT_H */
