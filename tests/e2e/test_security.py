"""Security checks (issue 7, part 6), end to end.

- No bypass through IPv6 spellings of IPv4: only IPv4-mapped callers
  (::ffff:a.b.c.d, what a dual-stack [::] socket reports for an IPv4
  caller) are judged as IPv4. IPv4-compatible ::a.b.c.d, 6to4
  2002:AABB:CCDD::/48, NAT64 64:ff9b::/96 and ::ffff:0:a.b.c.d callers are
  IPv6 hosts and are judged as such: checked through /rules/explain, and
  with real connections from those addresses in a private network
  namespace (root only: the addresses are put on the namespace's own
  loopback, never on the host's).
- The admin port refuses callers outside its allow list before any HTTP:
  a refused caller gets no byte even when it sends a whole, authorised
  POST /reload, nothing is reloaded, and the refusals are counted.

The constant-time token comparison is unit-tested (tests/unit/test_ct.c).
"""

import ctypes
import errno
import fcntl
import json
import re
import socket
import struct
import threading
import time

import pytest

from cgtest import (connect, echo_check, event_re, expect_rejected, expect_reset, is_served,
                    make_socket, recv_until_eof)

# callers that spell 127.0.0.2 in IPv6 without being it
V4_SPELLINGS = ("::127.0.0.2", "2002:7f00:2::", "2002:7f00:2::1", "64:ff9b::7f00:2",
                "::ffff:0:7f00:2", "::7f00:2")

EXPLAIN_GATE = """
    [gateway]
    workers = 1

    [rules]
    default = deny
    allow = 127.0.0.0/8

    [rules:nov6]
    default = deny
    allow = 127.0.0.0/8
    deny = ::/0

    [rules:denyv4]
    default = allow
    deny = 127.0.0.0/8

    [listener:web]
    bind = 127.0.0.1:$web
    backend = echo
    """


def explain(gate, addr, set_=None):
    path = "/rules/explain?addr=%s%s" % (addr, "&set=" + set_ if set_ else "")
    return gate.json(path)


def test_ipv4_spellings_are_judged_as_ipv6_in_explain(gate):
    gate.write(EXPLAIN_GATE, admin=True)
    gate.start()
    # the mapped form is the IPv4 caller, in every set
    d = explain(gate, "::ffff:127.0.0.2")
    assert (d["verdict"], d["family"], d["rule"]["cidr"]) == ("allow", "ipv4", "127.0.0.0/8"), d
    d = explain(gate, "::ffff:127.0.0.2", "denyv4")
    assert (d["verdict"], d["rule"]["cidr"]) == ("deny", "127.0.0.0/8"), d
    for addr in V4_SPELLINGS:
        # allow 127.0.0.0/8 does not admit them: nothing matches, the default denies
        d = explain(gate, addr)
        assert (d["verdict"], d["reason"], d["rule"], d["family"]) == (
            "deny", "default", None, "ipv6"), (addr, d)
        # deny ::/0 is what catches them
        d = explain(gate, addr, "nov6")
        assert (d["verdict"], d["reason"], d["rule"]["cidr"]) == ("deny", "rule", "::/0"), (
            addr, d)
        # and deny 127.0.0.0/8 does not: they are other hosts
        d = explain(gate, addr, "denyv4")
        assert (d["verdict"], d["reason"], d["family"]) == ("allow", "default", "ipv6"), (addr, d)
    gate.stop()


# ---------------------------------------------------------------------------
# Real callers from those addresses, in a private network namespace

CLONE_NEWNET = 0x40000000
SIOCGIFFLAGS, SIOCSIFFLAGS, SIOCSIFADDR = 0x8913, 0x8914, 0x8916
IFF_UP = 0x1


def _enter_private_netns(addrs):
    """Move the calling thread (and every process it starts) into a new
    network namespace, bring its loopback up and put `addrs` (IPv6, /128)
    on it. Raises OSError where namespaces are not allowed."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNET) != 0:
        e = ctypes.get_errno()
        raise OSError(e, "unshare(CLONE_NEWNET): %s" % errno.errorcode.get(e, e))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        ifr = fcntl.ioctl(s, SIOCGIFFLAGS, struct.pack("16sh22x", b"lo", 0))
        flags = struct.unpack("16sh", ifr[:18])[1]
        fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sh22x", b"lo", flags | IFF_UP))
    index = socket.if_nametoindex("lo")
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s6:
        for a in addrs:
            # struct in6_ifreq: address, prefix length, interface index
            fcntl.ioctl(s6, SIOCSIFADDR,
                        socket.inet_pton(socket.AF_INET6, a) + struct.pack("Ii", 128, index))
    # An added address is "tentative" until the kernel's address work has
    # run (duplicate address detection, instant on a loopback): wait until
    # each one can be bound.
    deadline = time.monotonic() + 10.0
    for a in addrs:
        while True:
            with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
                try:
                    probe.bind((a, 0))
                    break
                except OSError as e:
                    if e.errno != errno.EADDRNOTAVAIL or time.monotonic() > deadline:
                        raise
            time.sleep(0.01)  # polling interval while the address becomes usable


def in_private_netns(addrs, fn):
    """Run fn() on a thread of its own inside a private network namespace
    (network namespaces are per thread on Linux; processes started from
    that thread inherit it). Skips where that is not allowed."""
    out = {}

    def body():
        try:
            _enter_private_netns(addrs)
        except OSError as e:
            out["skip"] = str(e)
            return
        try:
            fn()
        except BaseException as e:  # re-raised on the test's thread
            out["error"] = e

    t = threading.Thread(target=body, name="netns")
    t.start()
    t.join(180)
    assert not t.is_alive(), "the namespaced part of the test hung"
    if "skip" in out:
        pytest.skip("no private network namespace here (needs root or CAP_SYS_ADMIN): %s"
                    % out["skip"])
    if "error" in out:
        raise out["error"]


DUAL_STACK_GATE = """
    [gateway]
    workers = 1

    [rules]
    default = deny
    allow = 127.0.0.0/8

    [rules:denyv4]
    default = allow
    deny = 127.0.0.0/8

    [listener:strict]
    bind = [::]:$strict
    backend = echo
    rules = default

    [listener:open]
    bind = [::]:$open
    backend = echo
    rules = denyv4

    [admin]
    listen = [::]:$admin
    allow = 127.0.0.0/8
    """


def _peer_of(sock):
    host, port = sock.getsockname()[:2]
    return "[%s]:%d" % (host, port) if ":" in host else "%s:%d" % (host, port)


def refused_without_a_byte(port, src, host, probe):
    """Connect from src and assert the caller is closed or reset without
    receiving a byte (on loopback the reset may already end connect()).
    Returns the caller's address as the gate logs it."""
    s = make_socket(src, socket.AF_INET6 if ":" in host else socket.AF_INET)
    peer = _peer_of(s)
    try:
        try:
            s.connect((host, port))
        except OSError as e:
            if e.errno in (errno.ECONNRESET, errno.ECONNREFUSED):
                return peer
            raise
        expect_reset(s, probe=probe)
    finally:
        s.close()
    return peer


def test_ipv4_spellings_real_callers_on_dual_stack(make_gate):
    """Through [::] listeners and a [::] admin port: 127.0.0.2 arrives as
    ::ffff:127.0.0.2 and is judged as 127.0.0.2; ::127.0.0.2 and
    2002:7f00:2::1 arrive as themselves and are judged as IPv6."""
    callers = ("::127.0.0.2", "2002:7f00:2::1")
    gate = make_gate("dual")

    def scenario():
        gate.write(DUAL_STACK_GATE)
        gate.start()
        strict, open_, admin = gate.port("strict"), gate.port("open"), gate.port("admin")

        # allow 127.0.0.0/8, default deny: the IPv4 caller is served, the
        # IPv6 spellings are reset by the default
        c = connect(strict, "127.0.0.2", host="127.0.0.1")
        echo_check(c)
        c.close()
        for src in callers:
            m = gate.mark()
            peer = refused_without_a_byte(strict, src, "::1", b"hello\n")
            hit = gate.wait_log(event_re("reject") + r".*\bpeer=%s\b" % re.escape(peer), since=m)
            assert hit["reason"] == "default" and hit["listener"] == "strict", hit.line

        # default allow, deny 127.0.0.0/8: the IPv4 caller cannot slip
        # past the deny through the mapped form; the IPv6 spellings are
        # other hosts and the default lets them in
        m = gate.mark()
        expect_rejected(open_, "127.0.0.2", host="127.0.0.1")
        hit = gate.wait_log(event_re("reject") + r".*\blistener=open\b", since=m)
        assert hit["rule"] == "127.0.0.0/8" and re.match(r"127\.0\.0\.2:\d+$", hit["peer"]), (
            hit.line)
        for src in callers:
            assert is_served(open_, src, host="::1"), src

        # the admin port: allow = 127.0.0.0/8 admits the mapped caller only
        s = connect(admin, "127.0.0.2", host="127.0.0.1")
        try:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert recv_until_eof(s).startswith(b"HTTP/1.1 200 "), "mapped admin caller refused"
        finally:
            s.close()
        for src in callers:
            refused_without_a_byte(admin, src, "::1", b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        s = connect(admin, "127.0.0.2", host="127.0.0.1")
        try:
            s.sendall(b"GET /stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            head, _, body = recv_until_eof(s).partition(b"\r\n\r\n")
        finally:
            s.close()
        assert head.startswith(b"HTTP/1.1 200 "), head
        stats = json.loads(body)
        assert stats["admin"]["refused"] == len(callers), stats["admin"]
        by = {l["name"]: l for l in stats["listeners"]}
        assert (by["strict"]["accepted"], by["strict"]["rejected"]) == (1, len(callers)), by
        assert (by["open"]["accepted"], by["open"]["rejected"]) == (len(callers), 1), by
        gate.stop()

    in_private_netns(callers, scenario)


# ---------------------------------------------------------------------------
# The admin port refuses before any HTTP


ADMIN_GATE = """
    [gateway]
    workers = 1

    [rules]
    allow = 127.0.0.2

    [listener:web]
    bind = 127.0.0.1:$web
    backend = echo
    """

TOKEN = "s3cret-T0k3n"


def _connect_maybe_reset(sock, host, port):
    """connect(); a reset that already ends it (the caller was refused very
    fast) is fine: reading then reports the reset."""
    try:
        sock.connect((host, port))
    except OSError as e:
        if e.errno != errno.ECONNRESET:
            raise


def _read_all(sock, timeout=5.0):
    """Bytes until EOF or a reset: (data, how)."""
    sock.settimeout(timeout)
    data = bytearray()
    while True:
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            return bytes(data), "timeout"
        except OSError as e:
            if e.errno in (errno.ECONNRESET, errno.EPIPE, errno.ENOTCONN):
                return bytes(data), "reset"
            raise
        if not chunk:
            return bytes(data), "eof"
        data += chunk


def test_admin_refuses_outside_allow_list_before_any_http(gate):
    gate.write(ADMIN_GATE, admin=True, admin_allow="127.0.0.1", token=TOKEN)
    gate.start()
    host, port = gate.admin_host, gate.admin_port
    before = gate.json("/stats", src="127.0.0.1")
    m = gate.mark()

    # 1. a complete, correctly authorised POST /reload: not one byte back,
    # and it is not carried out
    s = make_socket("127.0.0.9")
    _connect_maybe_reset(s, host, port)
    try:
        try:
            s.sendall(b"POST /reload HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                      + TOKEN.encode() + b"\r\nContent-Length: 0\r\n\r\n")
        except OSError as e:
            assert e.errno in (errno.ECONNRESET, errno.EPIPE, errno.ENOTCONN), e
        data, how = _read_all(s)
    finally:
        s.close()
    assert data == b"" and how in ("eof", "reset"), (data[:200], how)

    # 2. a caller that sends nothing is closed at once, without a byte
    t0 = time.monotonic()
    s = make_socket("127.0.0.10")
    _connect_maybe_reset(s, host, port)
    try:
        data, how = _read_all(s)
    finally:
        s.close()
    assert data == b"" and how in ("eof", "reset"), (data[:200], how)
    assert time.monotonic() - t0 < 2.0, "a refused caller was held %.1fs" % (time.monotonic() - t0)

    # 3. a burst of refused callers, each sending a request: all closed
    # without a byte, the admin port keeps serving the allowed caller
    burst = []
    for i in range(40):
        c = make_socket("127.0.1.%d" % (i + 1))
        _connect_maybe_reset(c, host, port)
        try:
            c.sendall(b"GET /stats HTTP/1.1\r\nHost: x\r\n\r\n")
        except OSError as e:
            assert e.errno in (errno.ECONNRESET, errno.EPIPE, errno.ENOTCONN), e
        burst.append(c)
    for c in burst:
        data, how = _read_all(c)
        c.close()
        assert data == b"" and how in ("eof", "reset"), (data[:200], how)

    after = gate.json("/stats", src="127.0.0.1")
    assert (after["generation"], after["reloads"]) == (before["generation"], before["reloads"]), (
        "a refused caller's POST /reload was carried out")
    assert after["admin"]["refused"] == before["admin"]["refused"] + 42, after["admin"]
    assert after["admin"]["unauthorized"] == before["admin"]["unauthorized"], after["admin"]
    hit = gate.wait_log(event_re("admin_reject") + r".*\bpeer=127\.0\.0\.9:\d+", since=m)
    assert hit.get("reason") == "default", hit.line
    # the listener is not affected either
    assert is_served(gate.port("web"), "127.0.0.2")
    gate.stop()
