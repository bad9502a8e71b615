/* geoip.h — country and ASN databases as networks (SPEC §16; geoip.c).
 *
 * Two readers hand every network of a database, with its country and ASN,
 * to a callback: `from,to,CC` CSV files as Debian's tor-geoipdb ships them
 * (always built) and MaxMind DB files read with libmaxminddb (when the
 * build has it: CG_HAVE_GEOIP). config_geoip.c picks the selected networks
 * and adds them to a rule set.
 */
#ifndef CG_GEOIP_H
#define CG_GEOIP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "condgate/rules.h"
#include "diag.h"

/* Bounds of a MaxMind DB walk: the deepest search tree (IPv6, 128 bits) and
 * the most search-tree nodes a database may have. */
#define CG_GEOIP_MAX_DEPTH 128
#define CG_GEOIP_MAX_NODES (1u << 28)
/* The largest MaxMind DB file read (GeoLite2-City is about 70 MiB). */
#define CG_GEOIP_MAX_DB_BYTES (1ull << 30)

/* One network of a database: its country ("" when it has none, else two
 * upper-case letters) and ASN (0 when it has none). Returns 0 to go on, or
 * a negative code that stops the reader: CG_ERANGE (too many networks) and
 * CG_ENOMEM are reported by the reader at the place it stopped. */
typedef int (*cg__geo_fn)(void *arg, const cg_cidr *net, const char *cc, uint32_t asn);

/* cg__geo_country: whether s[0..len) is a country code (two ASCII letters,
 * either case); writes it in upper case to out[0..3). */
bool cg__geo_country(const char *s, size_t len, char out[3]);

/* cg__geoip_csv: every range of the CSV text[0..len) (NUL-terminated),
 * read from `path`, as the smallest set of prefixes, in file order, with
 * its country ("??" ranges are passed with cc ""). Lines `from,to,CC`:
 * from and to as decimal IPv4 integers, dotted IPv4 or IPv6 text; '#'
 * comments, blank lines and CRLF line ends. Returns 0 or a negative code
 * with "PATH:LINE: ..." in d. One thread per call. */
int cg__geoip_csv(const char *path, const char *text, size_t len, cg__geo_fn fn, void *arg,
                  cg__diag *d);

/* cg__geoip_db: walk the search tree of the MaxMind DB at `path` once and
 * call fn for each network that has data, with the record's country
 * (country.iso_code, else registered_country.iso_code) and
 * autonomous_system_number. IPv4 networks of an IPv6 database (under
 * ::/96) come as IPv4; the reader's aliases of that subtree
 * (::ffff:0:0/96, 2001::/32, 2002::/16) are not walked again. Returns 0,
 * CG_ENOTSUP when the build has no libmaxminddb, fn's code (why left
 * untouched), or CG_EINVAL (not a valid database), CG_EIO (not a readable
 * regular file), CG_ERANGE (larger than CG_GEOIP_MAX_DB_BYTES) or
 * CG_ENOMEM with the reason (no file, no line) in why. One thread
 * per call. */
int cg__geoip_db(const char *path, cg__geo_fn fn, void *arg, char *why, size_t whylen);

#endif /* CG_GEOIP_H */
