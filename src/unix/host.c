/* unix/host.c — POSIX side of sys.h's host section: processors online, the
 * syntax of paths and replacing a file durably. */
#include "sys.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "condgate/common.h"

/* cg__sys_cpu_count: see sys.h. Any thread. */
unsigned cg__sys_cpu_count(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : (unsigned)n;
}

/* cg__sys_path_is_absolute: see sys.h. Any thread. */
bool cg__sys_path_is_absolute(const char *path)
{
    return path[0] == '/';
}

/* cg__sys_dir_len: see sys.h. Any thread. */
size_t cg__sys_dir_len(const char *path)
{
    size_t len = 0;
    for (size_t i = 0; path[i]; i++)
        if (path[i] == '/')
            len = i + 1;
    return len;
}

/* cg__sys_prefilter_can_drop: see sys.h; a socket filter on the listening socket. */
bool cg__sys_prefilter_can_drop(void)
{
    return true;
}

/* sync_path: open path (flags) and fsync it. Returns 0 or errno. */
static int sync_path(const char *path, int flags)
{
    int fd = open(path, flags | O_CLOEXEC);
    if (fd < 0)
        return errno;
    int rc = fsync(fd) == 0 ? 0 : errno;
    if (close(fd) != 0 && rc == 0)
        rc = errno;
    return rc;
}

/* cg__sys_file_commit: see sys.h; fsync, rename(2), fsync of the
 * directory. Any thread. */
int cg__sys_file_commit(const char *tmp, const char *path, char *err, size_t errlen)
{
    int e = sync_path(tmp, O_WRONLY);
    if (e != 0) {
        snprintf(err, errlen, "%s: fsync: %s", tmp, strerror(e));
        return CG_EIO;
    }
    if (rename(tmp, path) != 0) {
        snprintf(err, errlen, "%s: rename to %s: %s", tmp, path, strerror(errno));
        return CG_EIO;
    }
    size_t dl = cg__sys_dir_len(path);
    char dir[4096];
    if (dl == 0)
        snprintf(dir, sizeof dir, ".");
    else if (dl >= sizeof dir)
        return 0; /* no room to name it; the rename itself is done */
    else
        snprintf(dir, sizeof dir, "%.*s", (int)dl, path);
    e = sync_path(dir, O_RDONLY | O_DIRECTORY);
    if (e != 0) {
        snprintf(err, errlen, "%s: fsync of the directory: %s", dir, strerror(e));
        return CG_EIO;
    }
    return 0;
}
