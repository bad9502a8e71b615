#!/usr/bin/env python3
"""mkmmdb.py — write a tiny MaxMind DB (format 2.0) by hand, for the
fuzz_mmdb seed corpus: a few networks with a country and an ASN, in an
IPv4 or an IPv6 tree (the IPv6 one with ::ffff:0:0/96 aliased to the IPv4
subtree, as MaxMind's writer does).

    tests/fuzz/mkmmdb.py OUT.mmdb [4|6]
"""

import struct
import sys


def ctl(kind, size):
    """Control byte(s) of a field of `kind` and `size` (< 29)."""
    if kind <= 7:
        return bytes([kind << 5 | size])
    return bytes([size, kind - 7])


def enc(v):
    if isinstance(v, dict):
        out = ctl(7, len(v))
        for k, x in v.items():
            out += enc(k) + enc(x)
        return out
    if isinstance(v, list):
        return ctl(11, len(v)) + b"".join(enc(x) for x in v)
    if isinstance(v, str):
        b = v.encode()
        return ctl(2, len(b)) + b
    if isinstance(v, tuple):          # (kind, int): uint16 5, uint32 6, uint64 9
        kind, n = v
        b = n.to_bytes(8, "big").lstrip(b"\0")
        return ctl(kind, len(b)) + b
    raise TypeError(v)


def build(networks, bits, alias_v4=False):
    """networks: [(int address, prefix length, record dict)], none inside
    another, in a tree of
    `bits`. Returns the file's bytes."""
    data, offsets = b"", []
    for _, _, rec in networks:
        offsets.append(len(data))
        data += enc(rec)
    # The trie: node -> [left, right], each ("node", n) / ("data", i) / None.
    nodes = [[None, None]]
    for i, (addr, plen, _) in enumerate(networks):
        n = 0
        for d in range(plen):
            bit = addr >> (bits - 1 - d) & 1
            if d == plen - 1:
                nodes[n][bit] = ("data", i)
                break
            if nodes[n][bit] is None:
                nodes.append([None, None])
                nodes[n][bit] = ("node", len(nodes) - 1)
            n = nodes[n][bit][1]
    if alias_v4:
        # ::ffff:0:0/96 -> the node of ::/96 (80 zero bits, then 16 ones).
        v4 = 0
        for _ in range(96):
            v4 = nodes[v4][0][1]
        n = 0
        for d in range(95):
            bit = 1 if d >= 80 else 0
            if nodes[n][bit] is None:
                nodes.append([None, None])
                nodes[n][bit] = ("node", len(nodes) - 1)
            n = nodes[n][bit][1]
        nodes[n][1] = ("node", v4)
    count = len(nodes)

    def value(r):
        if r is None:
            return count
        if r[0] == "node":
            return r[1]
        return count + 16 + offsets[r[1]]

    tree = b"".join(value(l).to_bytes(3, "big") + value(r).to_bytes(3, "big")
                    for l, r in nodes)
    meta = {
        "binary_format_major_version": (5, 2),
        "binary_format_minor_version": (5, 0),
        "build_epoch": (9, 1700000000),
        "database_type": "condgate-fuzz-seed",
        "description": {"en": "hand-made seed"},
        "ip_version": (5, 6 if bits == 128 else 4),
        "languages": ["en"],
        "node_count": (6, count),
        "record_size": (5, 24),
    }
    return tree + b"\0" * 16 + data + b"\xab\xcd\xefMaxMind.com" + enc(meta)


def main():
    out = sys.argv[1]
    fam = int(sys.argv[2]) if len(sys.argv) > 2 else 4
    de = {"country": {"iso_code": "DE"}, "autonomous_system_number": (6, 64500)}
    cn = {"registered_country": {"iso_code": "CN"}}
    asn = {"autonomous_system_number": (6, 64501)}
    if fam == 4:
        nets = [(0x0A000000, 8, de), (0xC0A80000, 16, cn), (0x01020300, 24, asn)]
        blob = build(nets, 32)
    else:
        nets = [(0x0A000000, 96 + 8, de), (0xC0A80000, 96 + 16, cn),
                (0x20010DB8 << 96, 32, asn), (0x20010DB9_0001 << 80, 48, de)]
        blob = build(nets, 128, alias_v4=True)
    with open(out, "wb") as f:
        f.write(blob)


if __name__ == "__main__":
    main()
