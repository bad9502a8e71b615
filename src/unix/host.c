/* unix/host.c — POSIX side of sys.h's host section: processors online and
 * the syntax of paths. */
#include "sys.h"

#include <unistd.h>

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
