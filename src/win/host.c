/* win/host.c — Windows side of sys.h's host section: processors online,
 * the syntax of paths, where '\' separates as well as '/' and "C:" names a
 * drive, and replacing a file durably. */
#include "sys.h"

#include <stdio.h>

#include <windows.h>

#include "condgate/common.h"

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

/* cg__sys_file_commit: see sys.h. FlushFileBuffers on tmp, then
 * MoveFileEx with MOVEFILE_REPLACE_EXISTING | MOVEFILE_WRITE_THROUGH, which
 * returns only once the rename is on the disk (NTFS has no directory to
 * flush). Paths in the ANSI code page, as fopen takes them. Any thread. */
int cg__sys_file_commit(const char *tmp, const char *path, char *err, size_t errlen)
{
    HANDLE h = CreateFileA(tmp, GENERIC_WRITE, FILE_SHARE_READ | FILE_SHARE_WRITE, NULL,
                           OPEN_EXISTING, FILE_ATTRIBUTE_NORMAL, NULL);
    if (h == INVALID_HANDLE_VALUE) {
        snprintf(err, errlen, "%s: open: Windows error %lu", tmp, (unsigned long)GetLastError());
        return CG_EIO;
    }
    BOOL ok = FlushFileBuffers(h);
    DWORD e = GetLastError();
    CloseHandle(h);
    if (!ok) {
        snprintf(err, errlen, "%s: FlushFileBuffers: Windows error %lu", tmp, (unsigned long)e);
        return CG_EIO;
    }
    if (!MoveFileExA(tmp, path, MOVEFILE_REPLACE_EXISTING | MOVEFILE_WRITE_THROUGH)) {
        snprintf(err, errlen, "%s: rename to %s: Windows error %lu", tmp, path,
                 (unsigned long)GetLastError());
        return CG_EIO;
    }
    return 0;
}
