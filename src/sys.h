/* sys.h — the few operating-system services that differ between POSIX
 * (src/unix/) and Windows (src/win/): process set-up, listening sockets,
 * closing a socket, the descriptor limit and the relay's fast paths
 * (sys.c, in the daemon library); and the number of processors and the
 * syntax of paths, which the configuration loader needs (host.c, in the
 * core library, which links neither libuv nor the logger that sys.c uses).
 *
 * Errors come back as negative CG_E* codes, with the system's own text in a
 * caller-supplied buffer where a person will read it.
 */
#ifndef CG_SYS_H
#define CG_SYS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "condgate/accept.h"

/* cg__sys_init: once per process, before any socket or thread: POSIX ignores
 * SIGPIPE (a write to a reset peer fails with EPIPE instead of killing the
 * process); Windows starts Winsock (WSAStartup 2.2). Returns 0 or CG_ESYS.
 * Pair every success with cg__sys_cleanup. Main thread. */
int cg__sys_init(void);

/* cg__sys_cleanup: undo cg__sys_init (WSACleanup on Windows). Main thread,
 * after every socket is closed. */
void cg__sys_cleanup(void);

/* cg__sys_thread_init: per-thread set-up for a thread that does socket I/O
 * (POSIX blocks SIGPIPE in it). Call at the top of the thread. */
void cg__sys_thread_init(void);

/* cg__sys_listen: a non-blocking, non-inheritable TCP socket bound to sa and
 * listening. IPv6 [::] is dual-stack, a specific IPv6 address v6-only. With
 * `conditional`, on Windows the socket asks for conditional accept
 * (SO_CONDITIONAL_ACCEPT) before listen, so that the condition callback runs
 * before the handshake completes (the listener's `prefilter` is not off);
 * elsewhere it changes nothing (Linux judges in the kernel with the
 * prefilter instead). Returns 0 and *out (close with cg__sys_close_socket),
 * or a CG_E* code with the system's message in why. Any thread. */
int cg__sys_listen(const struct sockaddr *sa, socklen_t salen, bool conditional, cg_socket_t *out,
                   char *why, size_t whylen);

/* cg__sys_stop_listening: make listening socket fd stop taking callers at
 * once, while other threads may still hold it in accept; it stays open
 * (close it with cg__sys_close_socket once they are done). Any thread. */
void cg__sys_stop_listening(cg_socket_t fd);

/* cg__sys_close_socket: close a socket gracefully. Ignores
 * CG_INVALID_SOCKET. The thread that owns fd. */
void cg__sys_close_socket(cg_socket_t fd);

/* cg__sys_raise_fd_limit: raise the process's descriptor limit as far as
 * it may go and return the limit in force (on Windows, which has no such
 * limit for sockets, a fixed large figure). Main thread, at start. */
uint64_t cg__sys_raise_fd_limit(void);

/* cg__sys_fd_usage: the descriptors the process has open now and the limit
 * on them (the soft RLIMIT_NOFILE), for the admin port's gauges. Returns
 * false, leaving both alone, where they cannot be told (no /proc/self/fd;
 * Windows, which has no such limit). Any thread. */
bool cg__sys_fd_usage(uint64_t *open, uint64_t *limit);

/* cg__sys_nodelay_inherited: true when sockets accepted from a listener
 * made by cg__sys_listen already have TCP_NODELAY (Linux copies it from the
 * listener, which cg__sys_listen sets), so the relay need not set it again. */
bool cg__sys_nodelay_inherited(void);

/* cg__sys_memory_setup: once per process, before any thread: make large
 * blocks (rule-set tables) their own mappings, so that freeing a rule set
 * gives its memory back to the system (glibc: a fixed mmap threshold instead
 * of one that grows with each large free). Nothing elsewhere. Main thread. */
void cg__sys_memory_setup(void);

/* cg__sys_release_memory: give freed heap pages back to the system now
 * (glibc malloc_trim), after something large was freed. Any thread. */
void cg__sys_release_memory(void);

/* ------------------------------------------------------------------------
 * Relay fast paths. The caller owns the socket and must have nothing queued
 * on it in libuv.
 */

/* cg__sys_shutdown_send: shut down the sending side of connected socket fd
 * at once (shutdown(2) SHUT_WR). Returns 0; CG_ENOTSUP on Windows, where
 * libuv's uv_shutdown does it; CG_ESYS when the socket is no longer
 * connected (the peer reset it). The thread that owns fd. */
int cg__sys_shutdown_send(cg_socket_t fd);

/* cg__sys_recv: read at most len bytes from non-blocking socket fd into buf,
 * or with peek only look at them (they stay queued). Returns the count (> 0),
 * 0 at end of stream, CG_EAGAIN when nothing is there yet, or CG_ESYS. The
 * thread that owns fd. */
int cg__sys_recv(cg_socket_t fd, void *buf, size_t len, bool peek);

/* ------------------------------------------------------------------------
 * This host (host.c). Any thread.
 */

/* cg__sys_cpu_count: the number of processors online, at least 1. */
unsigned cg__sys_cpu_count(void);

/* cg__sys_path_is_absolute: whether `path` is taken from the root rather
 * than from the current directory: it starts with '/' (on Windows also
 * with '\' or a drive, "C:"). */
bool cg__sys_path_is_absolute(const char *path);

/* cg__sys_prefilter_can_drop: whether `prefilter = drop` exists here
 * (Linux: a socket filter discards the SYN; Windows' conditional accept can
 * only refuse). */
bool cg__sys_prefilter_can_drop(void);

/* cg__sys_dir_len: the bytes of `path` that name its directory, up to and
 * including the last separator ('/', on Windows also '\'); 0 when path is
 * a bare file name. */
size_t cg__sys_dir_len(const char *path);

/* cg__sys_file_commit: make the written and closed file `tmp` durable and
 * put it in the place of `path` in one step: flush tmp to the disk, rename
 * it over path (replacing it) and, where the system has it, flush path's
 * directory so that the rename survives a crash. A crash at any instant
 * leaves the old path or the new one. Returns 0, or CG_EIO with
 * "what: system message" in err (tmp may then still exist). Any thread. */
int cg__sys_file_commit(const char *tmp, const char *path, char *err, size_t errlen);

#endif /* CG_SYS_H */
