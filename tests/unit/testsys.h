/* testsys.h — the few system services the unit tests need that differ
 * between POSIX (testsys_unix.c) and Windows (testsys_win.c): sockets with
 * errno-style errors, poll, a monotonic clock, stderr capture and scratch
 * directories. Tests include this instead of <unistd.h>, <poll.h> and the
 * socket headers, so that one test file builds on both.
 */
#ifndef CG_TESTSYS_H
#define CG_TESTSYS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "condgate/accept.h" /* cg_socket_t, CG_INVALID_SOCKET */
#include "net.h"             /* the platform's socket headers */

#if defined(_WIN32)
/* struct pollfd, POLLIN, POLLOUT... come with winsock2.h (Vista+). */
#define TS_SHUT_WR SD_SEND
#else
#include <poll.h>
#define TS_SHUT_WR SHUT_WR
#endif

/* ts_init: once, first thing in main: ignore SIGPIPE (POSIX), start
 * Winsock (Windows). */
void ts_init(void);

/* Clock and sleep. */
uint64_t ts_now_ms(void);
uint64_t ts_now_us(void);
void ts_sleep_ms(int ms);

/* Sockets. Errors: -1 (or CG_INVALID_SOCKET) and the error, as an errno
 * value (EAGAIN, ECONNRESET, ETIMEDOUT...), in ts_errno(). */
cg_socket_t ts_socket(int family, int type); /* not inherited by children */
void ts_close(cg_socket_t s);
int ts_errno(void);
void ts_set_nonblock(cg_socket_t s, bool on);
long ts_send(cg_socket_t s, const void *buf, size_t n); /* never raises SIGPIPE */
long ts_recv(cg_socket_t s, void *buf, size_t n);
int ts_poll(struct pollfd *p, unsigned n, int timeout_ms); /* retries EINTR */

/* Capture what is written to descriptor 2 (stderr, the log) between
 * ts_capture_begin and ts_capture_end, which returns it (free it). */
typedef struct ts_capture {
    FILE *f;
    int saved;
} ts_capture;
void ts_capture_begin(ts_capture *c);
char *ts_capture_end(ts_capture *c);

/* Scratch directories: ts_mkdtemp makes a new empty directory named
 * STEM-XXXXXX under $TMPDIR (POSIX, default /tmp) or the user's temporary
 * folder (Windows), with '/' as separator, into buf; 0 or -1. */
int ts_mkdtemp(char *buf, size_t len, const char *stem);
int ts_mkdir(const char *path); /* owner only where it means anything */
int ts_rmtree(const char *path);

#endif /* CG_TESTSYS_H */
