"""Limits: max_connections, a low descriptor limit, and a reject flood that
must not flood the log."""

import math
import re
import select
import socket
import sys
import time

from cgtest import (connect, echo_check, event_re, expect_rejected, is_served)


def reject_hit(gate, src, lport, since=0):
    return gate.wait_log(event_re("reject") + r".*\bpeer=%s:%d(?=\s|$)" % (re.escape(src), lport),
                         since=since)


def test_max_connections_counts_all_listeners_together(gate):
    gate.write("""
        [gateway]
        workers = 2
        max_connections = 2

        [rules]
        allow = 127.0.0.0/8

        [listener:a]
        bind = 127.0.0.1:$a
        backend = echo
        rules = default

        [listener:b]
        bind = 127.0.0.1:$b
        backend = echo
        rules = default
        """)
    gate.start()
    a, b = gate.port("a"), gate.port("b")
    c1 = connect(a, "127.0.0.2")
    echo_check(c1)
    c2 = connect(b, "127.0.0.2")
    echo_check(c2)

    lport = expect_rejected(a, "127.0.0.2")  # the third caller
    hit = reject_hit(gate, "127.0.0.2", lport)
    assert hit["listener"] == "a" and hit["reason"] == "limit", hit.line
    assert hit.get("rule", "") == "" and hit.get("source", "") == "", hit.line
    s = gate.stats()
    assert s["active"] == 2 and s["rejected_limit"] == 1 and s["rejected"] == 1, s
    assert s["listeners"]["a"]["rejected_limit"] == 1
    assert s["listeners"]["b"]["rejected_limit"] == 0

    c1.close()
    gate.wait_stats(lambda s: s["active"] == 1, what="active=1 after one client left")
    c3 = connect(a, "127.0.0.2")
    echo_check(c3, b"admitted again\n")

    lport = expect_rejected(b, "127.0.0.3")
    assert reject_hit(gate, "127.0.0.3", lport)["reason"] == "limit"
    echo_check(c2, b"the old ones still work\n")
    c2.close()
    c3.close()
    s = gate.wait_stats(lambda s: s["active"] == 0, what="active=0")
    assert (s["accepted"], s["rejected_limit"], s["closed"]) == (3, 2, 3)
    gate.stop()


RLIMIT_WRAPPER = [sys.executable, "-c",
                  "import os, resource, sys\n"
                  "resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))\n"
                  "os.execv(sys.argv[1], sys.argv[1:])\n"]


def flood_and_measure(gate, port, n, settled=None):
    """Open n concurrent connections and hold them; once the gate's counters
    stop moving (or settled() says so), measure its CPU time over 1 s of
    idling. Then close them all. Returns (cpu seconds used, last stats)."""
    flood = []
    try:
        for i in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            s.bind(("127.0.0.%d" % (2 + i % 8), 0))
            s.connect_ex(("127.0.0.1", port))
            flood.append(s)
        # Let the handshakes resolve (some SYNs may be dropped: fine).
        pending = set(flood)
        deadline = time.monotonic() + 5
        while pending and time.monotonic() < deadline:
            _, w, _ = select.select([], list(pending)[:500], [], 0.2)
            pending.difference_update(w)
        # Wait until the gate has dealt with the flood: counters stop moving.
        prev = None
        deadline = time.monotonic() + 10
        if settled is not None:
            settled()
        while True:
            st = gate.stats()
            cur = (st["accepted"], st["rejected"])
            if settled is not None or cur == prev or time.monotonic() > deadline:
                break
            prev = cur
            time.sleep(0.3)  # sampling interval for "stopped moving"
        assert gate.alive(), "gate died under the flood"
        cpu0 = gate.cpu_seconds()
        time.sleep(1.0)  # the measurement window itself
        used = gate.cpu_seconds() - cpu0
        assert gate.alive(), "gate died under the flood"
        return used, st
    finally:
        for s in flood:
            s.close()


def recovers(gate, port, base_fds):
    """After a flood: serves again, every slot and descriptor comes back."""
    deadline = time.monotonic() + 15
    while not is_served(port, "127.0.0.2"):
        assert time.monotonic() < deadline, "gate never served again after the flood"
        time.sleep(0.1)
    gate.wait_stats(lambda s: s["active"] == 0, timeout=15, what="active=0 after the flood")
    deadline = time.monotonic() + 10
    while gate.fd_count() > base_fds + 1:
        assert time.monotonic() < deadline, "descriptors: %d before the flood, %d after" % (
            base_fds, gate.fd_count())
        time.sleep(0.1)
    c = connect(port, "127.0.0.2")
    echo_check(c, b"x" * 100000)
    c.close()


ECHO_GATE = """
    [gateway]
    workers = 2
    max_connections = 10000

    [rules]
    allow = 127.0.0.0/8

    [listener:web]
    bind = 127.0.0.1:$web
    backend = echo
    rules = default
    """


def test_low_descriptor_limit_flood_no_spin(gate):
    """Started under RLIMIT_NOFILE=64, flooded by 500 concurrent callers: the
    gate lowers its effective max_connections (warning), sheds the excess
    as reason=limit, does not spin, leaks no descriptor and serves normally
    afterwards."""
    gate.write(ECHO_GATE)
    gate.start(prefix=RLIMIT_WRAPPER)
    with open("/proc/%d/limits" % gate.pid) as f:
        assert re.search(r"Max open files\s+64\s+64", f.read()), "rlimit not applied"
    gate.wait_log(r"level=warn\b.*max_connections")
    port = gate.port("web")
    c = connect(port, "127.0.0.2")
    echo_check(c)
    c.close()
    gate.wait_stats(lambda s: s["active"] == 0, what="active=0")
    base_fds = gate.fd_count()

    used, st = flood_and_measure(gate, port, 500)
    assert used < 0.25, "gate used %.2fs CPU in 1s of idling with a flood pending" % used
    assert st["active"] <= 32, st
    assert st["rejected_limit"] > 0, "500 callers under 64 descriptors and none shed: %r" % st
    recovers(gate, port, base_fds)
    gate.stop()


def test_emfile_at_runtime_sheds_without_spinning(gate):
    """The descriptor limit drops under a running gate (it sized
    max_connections for the old one): accept() hits EMFILE. The gate must
    shed or pause, not spin on the readable listener, and recover."""
    import resource
    gate.write(ECHO_GATE)
    gate.start()
    port = gate.port("web")
    c = connect(port, "127.0.0.2")
    echo_check(c)
    c.close()
    gate.wait_stats(lambda s: s["active"] == 0, what="active=0")
    base_fds = gate.fd_count()
    limit = base_fds + 6
    resource.prlimit(gate.pid, resource.RLIMIT_NOFILE, (limit, limit))

    # While the flood is held the gate keeps shedding the backlog (its
    # counters keep moving): measure as soon as it has hit EMFILE.
    def at_emfile():
        gate.wait_log(r"level=warn\b.*(fd_exhausted|EMFILE|descriptors)", timeout=5, fail=False)

    used, st = flood_and_measure(gate, port, 200, settled=at_emfile)
    assert used < 0.25, "gate used %.2fs CPU in 1s at EMFILE with a flood pending" % used
    assert st["active"] <= 6, st
    recovers(gate, port, base_fds)
    gate.stop()


def test_reject_flood_is_summarised(gate):
    gate.write("""
        [gateway]
        workers = 2

        [rules]
        default = deny
        allow = 127.0.0.2
        deny = 127.0.0.3

        [listener:web]
        bind = 127.0.0.1:$web
        backend = echo
        rules = default
        """)
    gate.start()
    port = gate.port("web")
    n = 300
    t0 = time.monotonic()
    for i in range(n):
        expect_rejected(port, "127.0.0.3", probe=None)
    elapsed = time.monotonic() - t0

    # The summary arrives on its own (a window closes), not only at exit.
    gate.wait_log(event_re("reject_suppressed"), timeout=5)
    s = gate.wait_stats(lambda s: s["rejected"] == n, what="rejected=%d" % n)
    assert s["rejected_rule"] == n
    c = connect(port, "127.0.0.2")  # the gate still works
    echo_check(c)
    c.close()
    gate.stop()

    lines = gate.events("reject")
    summaries = gate.events("reject_suppressed")
    suppressed = 0
    for h in summaries:
        k = int(h["suppressed"])
        assert k > 0, h.line
        assert h["message"] == "suppressed %d reject lines" % k, h.line
        suppressed += k
    assert len(lines) + suppressed == n, "%d lines + %d suppressed != %d" % (
        len(lines), suppressed, n)
    windows = math.floor(elapsed) + 2
    assert 20 <= len(lines) <= 20 * windows, "%d reject lines for %d rejects in %.2fs" % (
        len(lines), n, elapsed)
    for h in lines:
        assert h["level"] == "info" and h["reason"] == "rule", h.line
