/* fuzz_takeover.c — the "condgate-sockets" message a new condgate reads
 * from the old one in a takeover (src/takeover_msg.c).
 *
 * The first byte is the count of descriptors that came with the message;
 * the rest is the message. Every prefix is parsed too, each from a heap
 * block that ends where the prefix ends, and the answers must agree: 0
 * (more needed) until the message is whole, 1 at exactly one length, an
 * error for every length after that or after the first error. A message
 * parsed whole names as many sockets as descriptors, each a valid name once,
 * and writing those names back gives the very same bytes.
 */
#include <stdlib.h>
#include <string.h>

#include "condgate/common.h"
#include "fuzz_common.h"
#include "takeover.h"

static cg__takeover_names names;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    return 0;
}

/* Parse data[0..k) from a block of exactly k bytes. */
static int parse_prefix(const uint8_t *data, size_t k, size_t nfds)
{
    char why[128] = "";
    char *buf = malloc(k ? k : 1);
    FUZZ_CHECK(buf != NULL, "out of memory");
    memcpy(buf, data, k);
    int rc = cg__takeover_parse(buf, k, nfds, &names, why, sizeof why);
    free(buf);
    FUZZ_CHECK(rc == 0 || rc == 1 || rc == CG_EINVAL, "rc %d", rc);
    FUZZ_CHECK(rc != CG_EINVAL || strncmp(why, "takeover: ", 10) == 0, "reason '%s'", why);
    return rc;
}

/* A whole message: the names read give back the same bytes. */
static void check_whole(const uint8_t *data, size_t k, size_t nfds)
{
    static char out[CG_TAKEOVER_MSG_MAX];
    const char *list[CG_INHERIT_MAX];
    FUZZ_CHECK(names.n == nfds, "%zu names for %zu descriptors", names.n, nfds);
    for (size_t i = 0; i < names.n; i++)
        list[i] = names.name[i];
    size_t len = cg__takeover_format(list, names.n, out);
    FUZZ_CHECK(len == k && memcmp(out, data, k) == 0, "written back as %zu bytes, read %zu", len,
               k);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    size_t nfds = data[0] % (CG_INHERIT_MAX + 2);
    data++;
    size--;
    int seen = 0; /* 0: still wanting more; 1: whole; 2: refused */
    for (size_t k = 0; k <= size; k++) {
        int rc = parse_prefix(data, k, nfds);
        if (seen == 0 && rc == 1) {
            check_whole(data, k, nfds);
            seen = 1;
        } else if (seen == 0 && rc == CG_EINVAL) {
            seen = 2;
        } else {
            FUZZ_CHECK(seen == 0 ? rc == 0 : rc == CG_EINVAL, "prefix %zu: %d after %d", k, rc,
                       seen);
        }
    }
    return 0;
}
