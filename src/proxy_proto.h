/* proxy_proto.h — the PROXY protocol (HAProxy's, versions 1 and 2): the
 * header a trusted load balancer puts before a client's bytes, parsed with
 * hard bounds; and the header condgate puts before its own bytes to a
 * backend (SPEC §13).
 *
 * The parser takes what has arrived so far and says whether it holds a
 * whole header, how long that header is, or that it can never be one. It
 * never looks past the header, so the caller can read exactly that many
 * bytes off the socket (after peeking) and leave the client's payload for
 * the relay.
 *
 * Bounds: a v1 header is one line of at most CG_PROXY_V1_MAX bytes with its
 * CRLF; a v2 header is the 16-byte fixed part and at most CG_PROXY_V2_MAX
 * bytes in all (addresses and TLVs; TLVs are skipped).
 */
#ifndef CG_PROXY_PROTO_H
#define CG_PROXY_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "condgate/common.h"
#include "net.h"

/* Longest v1 header, "PROXY ... \r\n" included (the specification's 107). */
#define CG_PROXY_V1_MAX 107
/* Longest v2 header this parser accepts: 16 fixed bytes + 520 of addresses
 * and TLVs. */
#define CG_PROXY_V2_MAX 536
/* Bytes a caller must be able to peek to hold any header. */
#define CG_PROXY_MAX CG_PROXY_V2_MAX
/* The v2 signature's length, and the fixed part's. */
#define CG_PROXY_V2_SIG_LEN 12
#define CG_PROXY_V2_FIXED 16

/* Which versions a listener accepts (accept_proxy), as bits. */
#define CG_PROXY_ACCEPT_V1 1u
#define CG_PROXY_ACCEPT_V2 2u

/* What a parse found. */
typedef enum cg__proxy_status {
    CG__PROXY_DONE = 0,  /* a whole, valid header of out->len bytes */
    CG__PROXY_MORE = 1,  /* valid so far: wait for more bytes */
    CG__PROXY_BAD = 2,   /* never a valid header: refuse (out->why says why) */
} cg__proxy_status;

/* A parsed header. */
typedef struct cg__proxy_hdr {
    size_t len;      /* bytes of the header on the wire */
    unsigned version; /* 1 or 2 */
    bool local;      /* v2 LOCAL, or v1 UNKNOWN: no addresses; judge the sender */
    /* When !local: the client (src) and the address it connected to (dst),
     * AF_INET or AF_INET6; an IPv4-mapped IPv6 address is AF_INET. */
    struct sockaddr_storage src, dst;
    const char *why; /* CG__PROXY_BAD: a short reason (static text) */
} cg__proxy_hdr;

/* cg__proxy_parse: look at buf[0..n), the first bytes a trusted sender sent,
 * for a header of one of the versions in `accept` (CG_PROXY_ACCEPT_* bits).
 * Fills *out. Returns CG__PROXY_DONE (out->len bytes are the header; what
 * follows is the client's), CG__PROXY_MORE (n bytes are a valid beginning;
 * never once n >= CG_PROXY_MAX), or CG__PROXY_BAD. Any thread; reads no
 * byte past buf[n - 1] nor past the header. */
cg__proxy_status cg__proxy_parse(const uint8_t *buf, size_t n, unsigned accept,
                                 cg__proxy_hdr *out);

/* cg__proxy_write: the header naming client src and destination dst
 * (AF_INET or AF_INET6; an IPv4-mapped IPv6 address of either is written as
 * IPv4, and when the two families still differ both are written as IPv6 —
 * v1 "TCP6", v2 AF_INET6) in version 1 or 2 into buf (at least
 * CG_PROXY_WRITE_MAX bytes). Returns its length, or 0 for an address of
 * another family, a version other than 1 or 2, or a buffer too small. Any
 * thread. */
#define CG_PROXY_WRITE_MAX 108
size_t cg__proxy_write(unsigned version, const struct sockaddr *src, const struct sockaddr *dst,
                       uint8_t *buf, size_t len);

#endif /* CG_PROXY_PROTO_H */
