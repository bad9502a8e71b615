/* takeover.c — both ends of a takeover over a unix socket (takeover.h).
 *
 * The old process serves the socket on its control loop: one connection at
 * a time, each step under CG_TAKEOVER_TIMEOUT_MS. The new process talks to
 * it with blocking calls and a receive timeout, before and after its start.
 */
#define _GNU_SOURCE /* accept4, struct ucred */
#include "takeover.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"

#define LINE_MAX_BYTES 64 /* "condgate-takeover 1\n", "ready\n" */

struct cg__takeover {
    cg__takeover_hooks hooks;
    char path[CG_UNIX_PATH_MAX];
    ino_t ino; /* the socket file as bound: removed at close only if still it */
    int fd;
    uv_poll_t listen_poll;
    int conn; /* the new process's connection, -1 when none */
    uv_poll_t conn_poll;
    uv_timer_t timer;
    bool listen_init, timer_init;
    bool conn_closing; /* conn_poll is closing: no new connection until it is closed */
    bool sent; /* the sockets went out: "ready" is what comes next */
    char in[LINE_MAX_BYTES];
    size_t inlen;
};

static void on_closed_noop(uv_handle_t *h)
{
    (void)h;
}

static void on_conn_closed(uv_handle_t *h)
{
    ((cg__takeover *)h->data)->conn_closing = false;
}

static int addr_of(const char *path, struct sockaddr_un *sun)
{
    memset(sun, 0, sizeof(*sun));
    sun->sun_family = AF_UNIX;
    if (strlen(path) >= sizeof(sun->sun_path))
        return CG_ERANGE;
    memcpy(sun->sun_path, path, strlen(path) + 1);
    return 0;
}

/* ------------------------------------------------------------------------
 * The old process
 */

static void end_conn(cg__takeover *t, const char *outcome)
{
    if (t->conn < 0)
        return;
    if (outcome != NULL)
        cg__log_event(CG_LOG_WARN, "takeover", "result", outcome, NULL);
    uv_poll_stop(&t->conn_poll);
    t->conn_closing = true;
    uv_close((uv_handle_t *)&t->conn_poll, on_conn_closed);
    uv_timer_stop(&t->timer);
    close(t->conn);
    t->conn = -1;
    t->inlen = 0;
    t->sent = false;
}

static int send_sockets(cg__takeover *t)
{
    cg_socket_t fds[CG_INHERIT_MAX];
    const char *names[CG_INHERIT_MAX];
    size_t n = t->hooks.sockets(t->hooks.arg, fds, names, CG_INHERIT_MAX);
    char msg[CG_TAKEOVER_MSG_MAX];
    size_t len = cg__takeover_format(names, n, msg);
    if (len == 0)
        return -1;
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(sizeof(int) * CG_INHERIT_MAX)];
    } ctl;
    memset(&ctl, 0, sizeof(ctl));
    struct iovec iov = {.iov_base = msg, .iov_len = len};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    if (n > 0) {
        mh.msg_control = ctl.buf;
        mh.msg_controllen = CMSG_SPACE(sizeof(int) * n);
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * n);
        memcpy(CMSG_DATA(c), fds, sizeof(int) * n);
    }
    /* One small message into an empty socket buffer: it goes whole. */
    ssize_t w = sendmsg(t->conn, &mh, MSG_NOSIGNAL);
    return w == (ssize_t)len ? 0 : -1;
}

/* A whole line from the new process: the hello, then "ready". */
static void on_line(cg__takeover *t, const char *line)
{
    if (!t->sent) {
        if (strcmp(line, CG_TAKEOVER_HELLO) != 0 || send_sockets(t) != 0) {
            end_conn(t, "refused: not a condgate takeover request, or the sockets could not go");
            return;
        }
        t->sent = true;
        cg__log_event(CG_LOG_INFO, "takeover", "result", "sockets_sent", NULL);
        return;
    }
    if (strcmp(line, CG_TAKEOVER_READY) != 0) {
        end_conn(t, "aborted: the new process did not say it serves");
        return;
    }
    (void)!send(t->conn, CG_TAKEOVER_DRAINING, strlen(CG_TAKEOVER_DRAINING), MSG_NOSIGNAL);
    cg__log_event(CG_LOG_INFO, "takeover", "result", "handed_over", "message",
                  "the new process serves the listening sockets: draining", NULL);
    end_conn(t, NULL);
    t->hooks.handed(t->hooks.arg); /* may close t */
}

static void on_conn(uv_poll_t *h, int status, int events)
{
    cg__takeover *t = h->data;
    (void)events;
    ssize_t r = status < 0 ? -1 : recv(t->conn, t->in + t->inlen, sizeof(t->in) - 1 - t->inlen, 0);
    if (r < 0 && status >= 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (r <= 0) {
        end_conn(t, t->sent ? "aborted: the new process went away before serving" : NULL);
        return;
    }
    t->inlen += (size_t)r;
    t->in[t->inlen] = '\0';
    char *nl = memchr(t->in, '\n', t->inlen);
    if (nl == NULL) {
        if (t->inlen == sizeof(t->in) - 1)
            end_conn(t, "refused: a line too long");
        return;
    }
    if ((size_t)(nl + 1 - t->in) != t->inlen) {
        end_conn(t, "refused: more than one line at once");
        return;
    }
    t->inlen = 0;
    on_line(t, t->in);
}

static void on_timeout(uv_timer_t *h)
{
    end_conn(h->data, "aborted: the new process took too long");
}

/* Only this user, or root, may take the sockets. */
static bool peer_allowed(int fd)
{
    struct ucred cred;
    socklen_t len = sizeof(cred);
    return getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0 &&
           (cred.uid == 0 || cred.uid == geteuid());
}

static void on_listen(uv_poll_t *h, int status, int events)
{
    cg__takeover *t = h->data;
    (void)events;
    if (status < 0)
        return;
    int c = accept4(t->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (c < 0)
        return;
    if (t->conn >= 0 || t->conn_closing || !peer_allowed(c)) {
        cg__log_event(CG_LOG_WARN, "takeover", "result",
                      t->conn >= 0 || t->conn_closing ? "refused: a takeover is in progress"
                                   : "refused: the caller is another user",
                      NULL);
        close(c);
        return;
    }
    t->conn = c;
    if (uv_poll_init(t->listen_poll.loop, &t->conn_poll, c) != 0) {
        close(c);
        t->conn = -1;
        return;
    }
    t->conn_poll.data = t;
    uv_poll_start(&t->conn_poll, UV_READABLE | UV_DISCONNECT, on_conn);
    uv_timer_start(&t->timer, on_timeout, CG_TAKEOVER_TIMEOUT_MS, 0);
}

/* Bind path, replacing a socket file nobody answers on. */
static int bind_path(cg__takeover *t, bool replacing, char *err, size_t errlen)
{
    struct sockaddr_un sun;
    addr_of(t->path, &sun);
    /* The process we took over from is still there, serving it until it
     * hears we serve: do not knock (it would count as a second taker). */
    int probe = replacing ? -1 : socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    bool live = probe >= 0 && connect(probe, (struct sockaddr *)&sun, sizeof(sun)) == 0;
    if (probe >= 0)
        close(probe);
    if (live) {
        snprintf(err, errlen,
                 "takeover_socket %s: a running condgate answers there; "
                 "start this one with -x %s to take over from it",
                 t->path, t->path);
        return CG_EADDRINUSE;
    }
    struct stat st;
    if (lstat(t->path, &st) == 0 && S_ISSOCK(st.st_mode))
        (void)unlink(t->path);
    mode_t old = umask(0177);
    int rc = bind(t->fd, (struct sockaddr *)&sun, sizeof(sun));
    umask(old);
    if (rc != 0 || listen(t->fd, 4) != 0 || stat(t->path, &st) != 0) {
        snprintf(err, errlen, "takeover_socket %s: %s", t->path, strerror(errno));
        return CG_ESYS;
    }
    t->ino = st.st_ino;
    return 0;
}

int cg__takeover_serve(uv_loop_t *loop, const char *path, bool replacing,
                       const cg__takeover_hooks *hooks, cg__takeover **out, char *err,
                       size_t errlen)
{
    struct sockaddr_un sun;
    *out = NULL;
    if (addr_of(path, &sun) != 0) {
        snprintf(err, errlen, "takeover_socket %s: path too long", path);
        return CG_ERANGE;
    }
    cg__takeover *t = calloc(1, sizeof(*t));
    if (t == NULL) {
        snprintf(err, errlen, "takeover_socket: out of memory");
        return CG_ENOMEM;
    }
    t->hooks = *hooks;
    t->conn = -1;
    memcpy(t->path, path, strlen(path) + 1);
    t->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int rc = t->fd < 0 ? CG_ESYS : bind_path(t, replacing, err, errlen);
    if (t->fd < 0)
        snprintf(err, errlen, "takeover_socket %s: %s", path, strerror(errno));
    if (rc == 0 && (uv_poll_init(loop, &t->listen_poll, t->fd) != 0 ||
                    uv_timer_init(loop, &t->timer) != 0)) {
        snprintf(err, errlen, "takeover_socket %s: cannot watch it", path);
        rc = CG_ESYS;
    }
    if (rc != 0) {
        if (t->fd >= 0)
            close(t->fd);
        free(t);
        return rc;
    }
    t->listen_init = t->timer_init = true;
    t->listen_poll.data = t->timer.data = t;
    uv_poll_start(&t->listen_poll, UV_READABLE, on_listen);
    *out = t;
    return 0;
}

void cg__takeover_close(cg__takeover *t)
{
    if (t == NULL || t->fd < 0)
        return;
    end_conn(t, NULL);
    struct stat st;
    if (stat(t->path, &st) == 0 && st.st_ino == t->ino)
        (void)unlink(t->path);
    uv_poll_stop(&t->listen_poll);
    uv_close((uv_handle_t *)&t->listen_poll, on_closed_noop);
    uv_close((uv_handle_t *)&t->timer, on_closed_noop);
    close(t->fd);
    t->fd = -1;
}

void cg__takeover_free(cg__takeover *t)
{
    free(t);
}

/* ------------------------------------------------------------------------
 * The new process
 */

static int fail_errno(char *err, size_t errlen, const char *path, const char *what)
{
    snprintf(err, errlen, "takeover from %s: %s: %s", path, what,
             errno == EAGAIN ? "no answer in time" : strerror(errno));
    return CG_ESYS;
}

/* Keep the descriptors of message mh, under the names in buf. */
static int hold_sockets(const char *buf, size_t len, int *fds, size_t nfds, int *done, char *err,
                        size_t errlen)
{
    static cg__takeover_names names; /* 8 KiB; main thread only */
    char why[128];
    int rc = cg__takeover_parse(buf, len, nfds, &names, why, sizeof(why));
    *done = rc == 1;
    if (rc < 0)
        snprintf(err, errlen, "%s", why);
    for (size_t i = 0; rc == 1 && i < nfds; i++) {
        if (cg__inherit_add(names.name[i], fds[i], CG__FROM_TAKEOVER) != 0)
            rc = CG_ENOMEM;
        fds[i] = -1;
    }
    return rc < 0 ? rc : 0;
}

/* The answer: the descriptors come with its first byte. */
static int receive_sockets(int s, const char *path, char *err, size_t errlen)
{
    static char buf[CG_TAKEOVER_MSG_MAX + 1];
    int fds[CG_INHERIT_MAX];
    size_t nfds = 0, len = 0;
    int done = 0, rc = 0;
    while (rc == 0 && !done) {
        union {
            struct cmsghdr h;
            char buf[CMSG_SPACE(sizeof(int) * CG_INHERIT_MAX)];
        } ctl;
        struct iovec iov = {.iov_base = buf + len, .iov_len = sizeof(buf) - 1 - len};
        struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
        mh.msg_control = ctl.buf;
        mh.msg_controllen = sizeof(ctl.buf);
        ssize_t r = recvmsg(s, &mh, MSG_CMSG_CLOEXEC);
        if (r <= 0) {
            rc = r == 0 ? CG_ESYS : fail_errno(err, errlen, path, "receiving the sockets");
            if (r == 0)
                snprintf(err, errlen, "takeover from %s: the old process closed the connection",
                         path);
            break;
        }
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c != NULL; c = CMSG_NXTHDR(&mh, c)) {
            if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
                continue;
            size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            for (size_t i = 0; i < k; i++) {
                int fd;
                memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
                if (nfds < CG_INHERIT_MAX)
                    fds[nfds++] = fd;
                else
                    close(fd);
            }
        }
        len += (size_t)r;
        rc = hold_sockets(buf, len, fds, nfds, &done, err, errlen);
    }
    for (size_t i = 0; !done && i < nfds; i++)
        close(fds[i]);
    return rc;
}

int cg__takeover_fetch(const char *path, cg_socket_t *conn, char *err, size_t errlen)
{
    struct sockaddr_un sun;
    *conn = CG_INVALID_SOCKET;
    if (addr_of(path, &sun) != 0) {
        snprintf(err, errlen, "takeover from %s: path too long", path);
        return CG_ERANGE;
    }
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct timeval tv = {.tv_sec = CG_TAKEOVER_TIMEOUT_MS / 1000};
    if (s < 0 || setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) != 0 ||
        connect(s, (struct sockaddr *)&sun, sizeof(sun)) != 0) {
        int rc = fail_errno(err, errlen, path, "cannot connect");
        if (s >= 0)
            close(s);
        return rc;
    }
    int rc = 0;
    if (send(s, CG_TAKEOVER_HELLO, strlen(CG_TAKEOVER_HELLO), MSG_NOSIGNAL) < 0)
        rc = fail_errno(err, errlen, path, "cannot ask");
    if (rc == 0)
        rc = receive_sockets(s, path, err, errlen);
    if (rc != 0) {
        close(s);
        return rc;
    }
    *conn = s;
    return 0;
}

int cg__takeover_finish(cg_socket_t conn, char *err, size_t errlen)
{
    char buf[LINE_MAX_BYTES];
    size_t len = 0;
    int rc = 0;
    if (send(conn, CG_TAKEOVER_READY, strlen(CG_TAKEOVER_READY), MSG_NOSIGNAL) < 0)
        rc = fail_errno(err, errlen, "the old process", "cannot say ready");
    while (rc == 0 && memchr(buf, '\n', len) == NULL && len < sizeof(buf) - 1) {
        ssize_t r = recv(conn, buf + len, sizeof(buf) - 1 - len, 0);
        if (r <= 0) {
            rc = fail_errno(err, errlen, "the old process", "no word that it drains");
            break;
        }
        len += (size_t)r;
    }
    buf[len] = '\0';
    if (rc == 0 && strcmp(buf, CG_TAKEOVER_DRAINING) != 0) {
        snprintf(err, errlen, "takeover: the old process answered something else than draining");
        rc = CG_EINVAL;
    }
    close(conn);
    return rc;
}

void cg__takeover_abort(cg_socket_t conn)
{
    if (conn != CG_INVALID_SOCKET)
        close(conn);
}
