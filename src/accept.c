/* accept.c — the platform-independent part of the accept layer: names of
 * verdicts, default options and address formatting. The acceptors
 * themselves live in unix/accept.c and win/accept.c.
 */
#include "condgate/accept.h"

#include <stdio.h>
#include <string.h>

#include "net.h"

/* cg_verdict_name: "accept", "reject", "defer", or "unknown" for a value
 * outside the enum. Static storage; any thread. */
const char *cg_verdict_name(cg_verdict v)
{
    switch (v) {
    case CG_ACCEPT:
        return "accept";
    case CG_REJECT:
        return "reject";
    case CG_DEFER:
        return "defer";
    }
    return "unknown";
}

/* cg_accept_opts_default: fill *o (not NULL) with the documented defaults.
 * Any thread. */
void cg_accept_opts_default(cg_accept_opts *o)
{
    o->max_deferred = 64;
    o->max_defers = 8;
    o->defer_retry_ms = 50;
    o->defer_timeout_ms = 2000;
    o->keep_reserve_fd = true;
}

/* cg_sockaddr_format: see accept.h. A scoped IPv6 address keeps its zone as
 * a number ("[fe80::1%2]:80"), NULL is "-", another family "(family N)". The
 * text is cut short, still terminated, when buf is too small. Returns buf.
 * Any thread. */
char *cg_sockaddr_format(const struct sockaddr *sa, char *buf, size_t buflen)
{
    char host[INET6_ADDRSTRLEN];
    struct sockaddr_in in4;
    struct sockaddr_in6 in6;

    if (!buf || buflen == 0)
        return buf;
    if (!sa) {
        snprintf(buf, buflen, "-");
        return buf;
    }
    switch (sa->sa_family) {
    case AF_INET:
        memcpy(&in4, sa, sizeof in4);
        if (!inet_ntop(AF_INET, &in4.sin_addr, host, sizeof host))
            break;
        snprintf(buf, buflen, "%s:%u", host, (unsigned)ntohs(in4.sin_port));
        return buf;
    case AF_INET6:
        memcpy(&in6, sa, sizeof in6);
        if (IN6_IS_ADDR_V4MAPPED(&in6.sin6_addr)) {
            if (!inet_ntop(AF_INET, &in6.sin6_addr.s6_addr[12], host, sizeof host))
                break;
            snprintf(buf, buflen, "%s:%u", host, (unsigned)ntohs(in6.sin6_port));
            return buf;
        }
        if (!inet_ntop(AF_INET6, &in6.sin6_addr, host, sizeof host))
            break;
        if (in6.sin6_scope_id != 0)
            snprintf(buf, buflen, "[%s%%%lu]:%u", host, (unsigned long)in6.sin6_scope_id,
                     (unsigned)ntohs(in6.sin6_port));
        else
            snprintf(buf, buflen, "[%s]:%u", host, (unsigned)ntohs(in6.sin6_port));
        return buf;
    default:
        snprintf(buf, buflen, "(family %d)", (int)sa->sa_family);
        return buf;
    }
    snprintf(buf, buflen, "?");
    return buf;
}
