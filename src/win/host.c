/* win/host.c — Windows side of sys.h's host section: processors online and
 * the syntax of paths, where '\' separates as well as '/' and "C:" names a
 * drive. */
#include "sys.h"

#include <windows.h>

/* cg__sys_cpu_count: see sys.h. Any thread. */
unsigned cg__sys_cpu_count(void)
{
    SYSTEM_INFO si;
    GetSystemInfo(&si);
    return si.dwNumberOfProcessors < 1 ? 1 : (unsigned)si.dwNumberOfProcessors;
}

/* cg__sys_path_is_absolute: see sys.h. "C:name", relative to the drive's
 * current directory, counts as absolute too: it must not be put after the
 * directory of the configuration file. Any thread. */
bool cg__sys_path_is_absolute(const char *path)
{
    return path[0] == '/' || path[0] == '\\' || (path[0] && path[1] == ':');
}

/* cg__sys_dir_len: see sys.h. Any thread. */
size_t cg__sys_dir_len(const char *path)
{
    size_t len = 0;
    for (size_t i = 0; path[i]; i++)
        if (path[i] == '/' || path[i] == '\\')
            len = i + 1;
    return len;
}

/* cg__sys_prefilter_can_drop: see sys.h; conditional accept refuses or accepts, never discards. */
bool cg__sys_prefilter_can_drop(void)
{
    return false;
}
