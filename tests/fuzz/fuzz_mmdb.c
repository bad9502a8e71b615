/* fuzz_mmdb.c — the MaxMind DB walk (cg__geoip_db) over arbitrary files.
 *
 * The input is written to a file in a private directory (libmaxminddb
 * opens files by name), opened and walked. Beyond not crashing or hanging
 * (the walk's depth and node visits are bounded): an error comes with a
 * reason, and every network handed on is canonical, of a known family, and
 * carries a country of two upper-case letters or none. Seeds: the
 * hand-made databases of corpus/mmdb (tests/fuzz/mkmmdb.py) and, when
 * fetched, MaxMind's test databases (run.sh copies them in).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cidr.h"
#include "condgate/rules.h"
#include "fuzz_common.h"
#include "geoip.h"

static char dir[512], db[600];

/* libmaxminddb 1.7.1 (Debian 12) frees a failed MMDB_open's metadata only
 * in part (the description and languages arrays of some malformed
 * metadata); that leak is the library's, not the walk's, so LeakSanitizer
 * is told to ignore allocations made inside it. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void)
{
    return "leak:libmaxminddb.so\n";
}

static void cleanup(void)
{
    unlink(db);
    rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_make_tmpdir(dir, sizeof dir, "condgate-fuzz-mmdb");
    snprintf(db, sizeof db, "%s/f.mmdb", dir);
    atexit(cleanup);
    return 0;
}

static int on_net(void *arg, const cg_cidr *net, const char *cc, uint32_t asn)
{
    size_t *n = arg;
    char text[CG_CIDR_STRLEN];
    cg_cidr c = *net;
    (void)asn;
    FUZZ_CHECK(net->family == 4 || net->family == 6, "family %u", net->family);
    FUZZ_CHECK(net->len <= (net->family == 4 ? 32 : 128), "length %u", net->len);
    FUZZ_CHECK(!cg__cidr_mask(&c), "%s has host bits", cg_cidr_format(net, text, sizeof text));
    FUZZ_CHECK(cc[0] == '\0' ||
                   (cc[0] >= 'A' && cc[0] <= 'Z' && cc[1] >= 'A' && cc[1] <= 'Z' && cc[2] == '\0'),
               "country '%s'", cc);
    (*n)++;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    FILE *f = fopen(db, "wb");
    FUZZ_CHECK(f != NULL, "%s: %s", db, strerror(errno));
    FUZZ_CHECK(fwrite(data, 1, size, f) == size && fclose(f) == 0, "write %s", db);
    char why[256];
    memset(why, 0xa5, sizeof why);
    why[0] = '\0';
    size_t n = 0;
    int rc = cg__geoip_db(db, on_net, &n, why, sizeof why);
    if (rc) {
        FUZZ_CHECK(rc == CG_EINVAL || rc == CG_EIO || rc == CG_ENOMEM, "code %d", rc);
        FUZZ_CHECK(why[0] != '\0' && memchr(why, '\0', sizeof why), "no reason for %d", rc);
    }
    return 0;
}
