"""Countries, ASNs and ranges (SPEC §16): geoip_db, geoip_csv, the
country and ASN selectors, and 'a-b' ranges in list files.

The MaxMind DB checks use MaxMind's own test databases from Debian's
libmaxminddb source package (tests/data/fetch-maxmind.sh fetches them into
build/maxmind, never committed) and cross-check every network of their
source data against mmdblookup (Debian's mmdb-bin). Without them the tests
skip with the reason, except under CI (CI=true), where they fail.
"""

import bisect
import http.client
import ipaddress
import json
import os
import random
import shutil
import subprocess
import urllib.parse

import pytest

from cgtest import connect, echo_check, expect_rejected, is_served

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
FETCH = os.path.join(ROOT, "tests", "data", "fetch-maxmind.sh")
DBS = ("GeoIP2-Country-Test", "GeoLite2-Country-Test", "GeoLite2-ASN-Test")


def _unavailable(why):
    if os.environ.get("CI"):
        pytest.fail("CI: %s" % why, pytrace=False)
    pytest.skip(why)


@pytest.fixture(scope="module")
def maxmind():
    """The t/maxmind-db directory of the libmaxminddb source package."""
    if not shutil.which("mmdblookup"):
        _unavailable("mmdblookup is missing (apt install mmdb-bin)")
    p = subprocess.run([FETCH], capture_output=True, text=True, timeout=300)
    if p.returncode != 0:
        _unavailable("tests/data/fetch-maxmind.sh failed: %s" % p.stderr.strip()[-500:])
    d = os.path.join(p.stdout.strip(), "t", "maxmind-db")
    for name in DBS:
        if not os.path.isfile(os.path.join(d, "test-data", name + ".mmdb")):
            _unavailable("%s.mmdb is not in %s" % (name, d))
    return d


class Explainer:
    """GET /rules/explain on one kept-alive connection."""

    def __init__(self, gate):
        self.gate = gate
        self.conn = None

    def __call__(self, addr, set_):
        q = urllib.parse.urlencode({"addr": addr, "set": set_})
        for attempt in range(2):
            if self.conn is None:
                host, port = self.gate.admin_endpoint
                self.conn = http.client.HTTPConnection(host, port, timeout=10)
            try:
                self.conn.request("GET", "/rules/explain?" + q)
                r = self.conn.getresponse()
                body = r.read()
                assert r.status == 200, (addr, r.status, body)
                return json.loads(body)
            except (http.client.HTTPException, OSError):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")


def net_ends(net):
    n = ipaddress.ip_network(net, strict=False)
    return str(n.network_address), str(n[-1])


def mmdb_value(db, ip, *path):
    """What mmdblookup says at path for ip: a string, an int, or None."""
    p = subprocess.run(["mmdblookup", "--file", db, "--ip", ip] + list(path),
                       capture_output=True, text=True, timeout=10)
    if p.returncode != 0:
        return None
    for line in p.stdout.splitlines():
        line = line.strip()
        if not line:
            continue
        value, _, kind = line.rpartition(" ")
        if kind == "<utf8_string>":
            return json.loads(value)
        if kind.startswith("<uint"):
            return int(value)
    return None


def mmdb_country(db, ip):
    return mmdb_value(db, ip, "country", "iso_code") or \
        mmdb_value(db, ip, "registered_country", "iso_code")


V4_IN_V6 = ipaddress.ip_network("::/96")


def source_networks(maxmind, name):
    """The networks of a database's source data; those written under ::/96
    (the IPv4 subtree of an IPv6 database) as the IPv4 networks they are."""
    with open(os.path.join(maxmind, "source-data", name + ".json"), encoding="utf-8") as f:
        nets = [ipaddress.ip_network(k, strict=False) for rec in json.load(f) for k in rec]
    out = []
    for n in nets:
        if n.version == 6 and n.subnet_of(V4_IN_V6):
            n = ipaddress.ip_network((int(n.network_address), n.prefixlen - 96))
        out.append(str(n))
    return out


def codes_in(maxmind, name):
    """Every country code and ASN the source data of a database names."""
    ccs, asns = set(), set()
    with open(os.path.join(maxmind, "source-data", name + ".json"), encoding="utf-8") as f:
        for rec in json.load(f):
            for v in rec.values():
                for k in ("country", "registered_country"):
                    if "iso_code" in v.get(k, {}):
                        ccs.add(v[k]["iso_code"])
                if "autonomous_system_number" in v:
                    asns.add(v["autonomous_system_number"])
    return sorted(ccs), sorted(asns)


def test_mmdb_networks_agree_with_mmdblookup(gate, maxmind):
    """Every network of the three test databases, first and last address:
    the verdict and source follow what mmdblookup finds there."""
    sets, want_action = [], {}
    for i, name in enumerate(DBS):
        ccs, asns = codes_in(maxmind, name)
        # Alternate allow and deny over the sorted codes, so both occur.
        allow_cc, deny_cc = ccs[0::2], ccs[1::2]
        allow_as, deny_as = asns[0::2], asns[1::2]
        for c in allow_cc + ["AS%d" % a for a in allow_as]:
            want_action[(name, c)] = "allow"
        for c in deny_cc + ["AS%d" % a for a in deny_as]:
            want_action[(name, c)] = "deny"
        keys = ["geoip_db = %s" % os.path.join(maxmind, "test-data", name + ".mmdb")]
        # The INI reader's lines are short: the keys repeat, ten items each.
        for key, items in (("allow_country", allow_cc), ("deny_country", deny_cc),
                           ("allow_asn", [str(a) for a in allow_as]),
                           ("deny_asn", ["AS%d" % a for a in deny_as])):
            keys += ["%s = %s" % (key, ", ".join(items[k:k + 10]))
                     for k in range(0, len(items), 10)]
        sets.append("[rules:s%d]\ndefault = deny\n%s\n" % (i, "\n".join(keys)))
    gate.write("\n".join(sets) + """
        [listener:web]
        bind = 127.0.0.1:$web
        backend = echo
        rules = s0
        """, admin=True)
    gate.start()
    explain = Explainer(gate)
    checked = 0
    for i, name in enumerate(DBS):
        db = os.path.join(maxmind, "test-data", name + ".mmdb")
        is_asn = "ASN" in name
        for net in source_networks(maxmind, name):
            for ip in net_ends(net):
                if is_asn:
                    v = mmdb_value(db, ip, "autonomous_system_number")
                    code = "AS%d" % v if v else None
                else:
                    code = mmdb_country(db, ip)
                d = explain(ip, "s%d" % i)
                what = "%s %s (%s): mmdblookup says %s, condgate %r" % (name, ip, net, code, d)
                if code is None:
                    assert d["reason"] == "default", what
                    continue
                assert d["reason"] == "rule", what
                assert d["verdict"] == want_action[(name, code)], what
                assert d["rule"]["source"] == "%s:%s" % (db, code), what
                assert ipaddress.ip_address(ip) in ipaddress.ip_network(d["rule"]["cidr"]), what
                checked += 1
    assert checked > 2000, checked


def test_mmdb_aliases_and_mapped(gate, maxmind):
    """IPv4-mapped callers are judged as IPv4; 6to4 and Teredo callers as
    the IPv6 addresses they are (the reader's aliases are not expanded),
    while mmdblookup follows the aliases."""
    db = os.path.join(maxmind, "test-data", "GeoLite2-Country-Test.mmdb")
    gate.write("""
        [rules]
        default = allow
        geoip_db = %s
        deny_country = GB
        [listener:web]
        bind = 127.0.0.1:$web
        backend = echo
        """ % db, admin=True)
    gate.start()
    explain = Explainer(gate)
    v4 = "2.125.160.216"   # GB in the test data
    assert mmdb_country(db, v4) == "GB"
    d = explain(v4, "default")
    assert (d["verdict"], d["rule"]["source"]) == ("deny", db + ":GB"), d
    d = explain("::ffff:" + v4, "default")
    assert (d["verdict"], d["rule"]["cidr"]) == ("deny", "2.125.160.216/29"), d
    six_to_four = "2002:27d:a0d8::1"
    assert mmdb_country(db, six_to_four) == "GB"   # the reader follows the alias
    d = explain(six_to_four, "default")
    assert (d["verdict"], d["reason"]) == ("allow", "default"), d
    teredo = "2001:0:27d:a0d8::1"
    assert mmdb_country(db, teredo) == "GB"
    d = explain(teredo, "default")
    assert (d["verdict"], d["reason"]) == ("allow", "default"), d
    # ::/96 itself: IPv4-compatible addresses are IPv4 networks in the tree,
    # entered as IPv4, so '::2.125.160.216' is an IPv6 caller with no match.
    d = explain("::2.125.160.216", "default")
    assert d["reason"] == "default", d


# ---------------------------------------------------------------------------
# CSV against a Python oracle

COUNTRIES = ["DE", "AT", "CN", "RU", "US", "FR", "JP", "BR", "??"]
DENIED = {"CN", "RU", "US"}
ALLOWED = {"DE", "AT"}


def random_ranges(rng, family, n):
    """n disjoint ranges [(first, last, cc)] of one family, sorted."""
    bits = 32 if family == 4 else 128
    top = (1 << bits) - 1
    points = sorted(set(rng.randrange(1, top) for _ in range(2 * n)))
    out = []
    for a, b in zip(points[0::2], points[1::2]):
        # Some ranges are whole aligned blocks, most are ragged.
        if rng.random() < 0.2:
            size = 1 << rng.randrange(0, bits // 2)
            a -= a % size
            b = a + size - 1
            if out and a <= out[-1][1]:
                continue
        out.append((a, b, rng.choice(COUNTRIES)))
    return out


def write_csv(path, ranges, family, rng):
    with open(path, "w", newline="") as f:
        f.write("# generated by test_geoip.py\n\n")
        for a, b, cc in ranges:
            if family == 4:
                form = rng.random()
                if form < 0.7:
                    fa, fb = str(a), str(b)
                else:
                    fa, fb = str(ipaddress.IPv4Address(a)), str(ipaddress.IPv4Address(b))
            else:
                fa, fb = str(ipaddress.IPv6Address(a)), str(ipaddress.IPv6Address(b))
            end = "\r\n" if rng.random() < 0.1 else "\n"
            f.write("%s,%s,%s%s" % (fa, fb, cc, end))


class Oracle:
    def __init__(self, ranges):
        self.ranges = ranges
        self.starts = [r[0] for r in ranges]

    def __call__(self, x):
        i = bisect.bisect_right(self.starts, x) - 1
        if i >= 0 and self.ranges[i][0] <= x <= self.ranges[i][1]:
            cc = self.ranges[i][2]
            if cc in DENIED:
                return "deny", cc
            if cc in ALLOWED:
                return "allow", cc
        return "default", None


def test_csv_against_oracle(gate):
    rng = random.Random(15)
    r4 = random_ranges(rng, 4, 300)
    r6 = random_ranges(rng, 6, 300)
    write_csv(os.path.join(gate.dir, "geoip"), r4, 4, rng)
    write_csv(os.path.join(gate.dir, "geoip6"), r6, 6, rng)
    gate.write("""
        [rules:geo]
        default = allow
        geoip_csv = geoip
        geoip_csv = geoip6
        deny_country = %s
        allow_country = %s
        [listener:web]
        bind = 127.0.0.1:$web
        backend = echo
        rules = geo
        """ % (", ".join(sorted(DENIED)), ", ".join(sorted(ALLOWED))), admin=True)
    gate.start()
    explain = Explainer(gate)
    probes = []
    for fam, ranges in ((4, r4), (6, r6)):
        top = (1 << (32 if fam == 4 else 128)) - 1
        for a, b, _ in ranges:
            probes += [(fam, x) for x in (a - 1, a, b, b + 1) if 0 <= x <= top]
    for _ in range(10000):
        fam = rng.choice((4, 6))
        probes.append((fam, rng.getrandbits(32 if fam == 4 else 128)))
    oracles = {4: Oracle(r4), 6: Oracle(r6)}
    files = {4: os.path.join(gate.dir, "geoip"), 6: os.path.join(gate.dir, "geoip6")}
    seen = {"deny": 0, "allow": 0, "default": 0}
    for fam, x in probes:
        ip = ipaddress.ip_address(x) if fam == 4 else ipaddress.IPv6Address(x)
        if fam == 6 and (ip.ipv4_mapped is not None):
            continue  # judged as IPv4 (SPEC §4), not as the IPv6 CSV says
        want, cc = oracles[fam](x)
        d = explain(str(ip), "geo")
        seen[want] += 1
        what = "%s: oracle %s %s, condgate %r" % (ip, want, cc, d)
        if want == "default":
            assert d["reason"] == "default", what
            continue
        assert d["reason"] == "rule" and d["verdict"] == want, what
        assert d["rule"]["source"] == "%s:%s" % (files[fam], cc), what
    assert min(seen.values()) > 100, seen


def test_csv_real_connections(gate):
    """A CSV that maps 127.0.0.0/8 ranges to countries: refused vs
    admitted on real connections."""
    gate.write("""
        [rules]
        default = allow
        geoip_csv = loop.csv
        deny_country = cn
        [listener:web]
        bind = 127.0.0.1:$web
        backend = echo
        """, files={"loop.csv": """
        # from,to,country
        2130706432,2130706441,DE
        127.0.0.10,127.0.0.20,CN
        2130706453,2130706453,??
        """})
    rc, out, err = gate.run(["-t", "-c", gate.ini_path])
    assert rc == 0, err
    assert "loop.csv: deny CN (4 networks)" in out, out   # .10/31 .12/30 .16/30 .20/32
    gate.start()
    port = gate.port("web")
    for src in ("127.0.0.2", "127.0.0.9", "127.0.0.21"):
        assert is_served(port, src), src
    for src in ("127.0.0.10", "127.0.0.15", "127.0.0.20"):
        expect_rejected(port, src)


def test_list_file_ranges(gate):
    gate.write("""
        [rules]
        default = deny
        allow_file = ranges.txt
        [listener:web]
        bind = 127.0.0.1:$web
        backend = echo
        """, files={"ranges.txt": """
        127.0.0.2-127.0.0.6   # the first five
        2001:db8::1-2001:db8::ff
        """}, admin=True)
    gate.start()
    port = gate.port("web")
    for src in ("127.0.0.2", "127.0.0.5", "127.0.0.6"):
        c = connect(port, src)
        echo_check(c)
        c.close()
    for src in ("127.0.0.7", "127.0.0.1", "127.0.0.8"):
        expect_rejected(port, src)
    explain = Explainer(gate)
    for ip, want in (("2001:db8::", "deny"), ("2001:db8::1", "allow"), ("2001:db8::ff", "allow"),
                     ("2001:db8::100", "deny")):
        assert explain(ip, "default")["verdict"] == want, ip


# ---------------------------------------------------------------------------
# Errors and warnings

def test_corrupt_db_refused_and_reload_keeps_rules(gate, maxmind):
    good = os.path.join(maxmind, "test-data", "GeoLite2-Country-Test.mmdb")
    with open(good, "rb") as f:
        data = f.read()
    db = os.path.join(gate.dir, "country.mmdb")
    with open(db, "wb") as f:
        f.write(data[: len(data) // 2])
    gate.write("""
        [rules]
        default = allow
        geoip_db = country.mmdb
        deny_country = GB
        [listener:web]
        bind = 127.0.0.1:$web
        backend = echo
        """, admin=True)
    line = gate.line_of("geoip_db")
    rc, out, err = gate.run(["-t", "-c", gate.ini_path])
    assert rc == 2, (rc, err)
    assert ("condgate.ini:%d: geoip_db: '%s': not a valid MaxMind DB" % (line, db)) in err, err

    with open(db, "wb") as f:
        f.write(data)
    gate.start()
    explain = Explainer(gate)
    assert explain("2.125.160.216", "default")["verdict"] == "deny"
    with open(db, "wb") as f:
        f.write(data[: len(data) // 2])
    hit = gate.reload("failed")
    assert "country.mmdb" in hit.line, hit.line
    explain = Explainer(gate)
    d = explain("2.125.160.216", "default")
    assert d["verdict"] == "deny" and d["rule"]["source"] == db + ":GB", d
    # a fixed database: the reload reads it again, with the new selectors
    with open(db, "wb") as f:
        f.write(data)
    gate.write(gate.template.replace("deny_country = GB", "deny_country = SE"), admin=True)
    gate.reload("ok")
    explain = Explainer(gate)
    assert explain("2.125.160.216", "default")["reason"] == "default"
    gate.stop()


def test_unknown_country_warns(gate):
    gate.write("""
        [rules]
        default = allow
        geoip_csv = w.csv
        deny_country = ZZ, DE
        deny_asn = 64501
        [listener:web]
        bind = 127.0.0.1:$web
        backend = echo
        """, files={"w.csv": "1.0.0.0,1.0.0.255,DE\n"})
    rc, out, err = gate.run(["-t", "-c", gate.ini_path])
    assert rc == 0, err
    line = gate.line_of("deny_country")
    assert ("condgate.ini:%d: warning: deny_country ZZ matches no network" % line) in err, err
    assert ("condgate.ini:%d: warning: deny_asn AS64501 matches no network"
            % gate.line_of("deny_asn")) in err, err
    assert "DE matches" not in err, err
    assert "w.csv: deny DE (1 network)" in out, out
