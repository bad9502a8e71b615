/* testsys_unix.c — POSIX side of testsys.h. */
#include "testsys.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

void ts_init(void)
{
    signal(SIGPIPE, SIG_IGN);
}

uint64_t ts_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

uint64_t ts_now_ms(void)
{
    return ts_now_us() / 1000u;
}

void ts_sleep_ms(int ms)
{
    poll(NULL, 0, ms);
}

cg_socket_t ts_socket(int family, int type)
{
    return socket(family, type | SOCK_CLOEXEC, 0);
}

void ts_close(cg_socket_t s)
{
    if (s >= 0)
        close(s);
}

int ts_errno(void)
{
    return errno;
}

void ts_set_nonblock(cg_socket_t s, bool on)
{
    int fl = fcntl(s, F_GETFL);
    if (fl >= 0)
        (void)fcntl(s, F_SETFL, on ? fl | O_NONBLOCK : fl & ~O_NONBLOCK);
}

long ts_send(cg_socket_t s, const void *buf, size_t n)
{
    return (long)send(s, buf, n, MSG_NOSIGNAL);
}

long ts_recv(cg_socket_t s, void *buf, size_t n)
{
    return (long)recv(s, buf, n, 0);
}

int ts_poll(struct pollfd *p, unsigned n, int timeout_ms)
{
    int r;
    do
        r = poll(p, (nfds_t)n, timeout_ms);
    while (r < 0 && errno == EINTR);
    return r;
}

void ts_capture_begin(ts_capture *c)
{
    fflush(stderr);
    c->f = tmpfile();
    c->saved = c->f ? dup(2) : -1;
    if (c->saved >= 0)
        dup2(fileno(c->f), 2);
}

char *ts_capture_end(ts_capture *c)
{
    char *text;
    long n;
    size_t got;

    if (!c->f || c->saved < 0)
        return NULL;
    dup2(c->saved, 2);
    close(c->saved);
    n = ftell(c->f);
    text = calloc(1, n > 0 ? (size_t)n + 1 : 1);
    if (text) {
        rewind(c->f);
        got = n > 0 ? fread(text, 1, (size_t)n, c->f) : 0;
        text[got] = '\0';
    }
    fclose(c->f);
    return text;
}

int ts_mkdtemp(char *buf, size_t len, const char *stem)
{
    const char *base = getenv("TMPDIR");
    int n = snprintf(buf, len, "%s/%s-XXXXXX", base && *base ? base : "/tmp", stem);
    if (n < 0 || (size_t)n >= len)
        return -1;
    return mkdtemp(buf) ? 0 : -1;
}

int ts_mkdir(const char *path)
{
    return mkdir(path, 0700);
}

int ts_rmtree(const char *path)
{
    struct stat st;
    DIR *d;
    struct dirent *de;
    char sub[PATH_MAX];
    int rc = 0;

    if (lstat(path, &st) != 0)
        return -1;
    if (!S_ISDIR(st.st_mode))
        return unlink(path);
    d = opendir(path);
    if (!d)
        return -1;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        snprintf(sub, sizeof sub, "%s/%s", path, de->d_name);
        if (ts_rmtree(sub) != 0)
            rc = -1;
    }
    closedir(d);
    return rmdir(path) == 0 ? rc : -1;
}
