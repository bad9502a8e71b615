"""Exhaustion and abuse, end to end (issue 7, part 3), at the issue's figures:

- a flood of 5,000 callers at a low descriptor limit (sized limit, then
  accept(2) failing with EMFILE): alive, not spinning, serving again, no
  descriptor lost;
- 10,000 idle connections held and released, twice: descriptors back to the
  baseline exactly, RSS back within a stated bound;
- callers that connect and send nothing are closed by idle_timeout_ms, not
  before it and not long after;
- a backend that accepts and never answers does not pin the (single) worker;
- 20,000 rejects do not flood the log.

The callers come from cgload (tests/bench/cgload, the `cgload` fixture) where
there are thousands of them, and from Python sockets where each one's outcome
is timed. test_limits.py keeps the small versions (500 callers under 64
descriptors, EMFILE at runtime with 200, 300 rejects); test_relay.py the
single-connection idle timeout.
"""

import os
import re
import resource
import select
import socket
import sys
import threading
import time

from cgtest import (connect, cpu_used, echo_check, event_re, expect_rejected, gate_fds,
                    half_open, listen_queue, rss_bytes, sanitizer_of, settled_fds,
                    silent_handler, wait_fds, wait_for)

MiB = 1024 * 1024

# CPU the gate may use while it should be idle: 5 % of the measured interval
# (one 100 Hz clock tick is 10 ms, so a 1 s window resolves it).
IDLE_CPU_SHARE = 0.05


def rlimit_prefix(n):
    """Run the gate with RLIMIT_NOFILE (n, n): it raises its soft limit to
    the hard one at start, so both must be low."""
    return [sys.executable, "-c",
            "import os, resource, sys\n"
            "resource.setrlimit(resource.RLIMIT_NOFILE, (%d, %d))\n"
            "os.execv(sys.argv[1], sys.argv[1:])\n" % (n, n)]


def echo_gate(workers=2, gateway=""):
    return """
        [gateway]
        workers = %d
        %s

        [rules]
        default = deny
        allow = 127.0.0.0/8

        [listener:web]
        bind = 127.0.0.1:$web
        backend = echo
        rules = default
        """ % (workers, gateway)


def warm_up(gate, port, workers):
    """One connection on every worker at once (the least-loaded hand-off
    spreads simultaneous connections over distinct workers), then close
    them: each worker loop opens a descriptor of its own on its first
    connection (libuv's spare for EMFILE) and keeps it, so descriptor
    baselines are taken after this."""
    conns = [connect(port, "127.0.0.2") for _ in range(workers)]
    for c in conns:
        echo_check(c, b"warm up\n")
    for c in conns:
        c.close()


def lowest_free_fd(pid):
    used = {int(n) for n in os.listdir("/proc/%d/fd" % pid)}
    n = 0
    while n in used:
        n += 1
    return n


def assert_idle(gate, what):
    used, dt = cpu_used(gate, 1.0)
    assert used <= IDLE_CPU_SHARE * dt, (
        "%s: the gate used %.2f s CPU in %.2f s (bound %.0f %%)" % (
            what, used, dt, 100 * IDLE_CPU_SHARE))
    return used


# ---------------------------------------------------------------------------
# 5,000 callers at a low descriptor limit

FLOOD = 5000
FLOOD_FD_LIMIT = 64


def test_flood_5000_callers_at_low_descriptor_limit(gate, cgload):
    """Under RLIMIT_NOFILE=64 the gate sizes max_connections to its
    descriptors. 5,000 callers at once (all held open by cgload):

    1. exactly `effective` are admitted, every other one is reset (counted as
       limit), none is left hanging; the gate idles while they are held;
    2. then the limit drops below what the gate holds (accept fails with
       EMFILE) and 5,000 more arrive: the gate sheds callers with resets,
       pauses instead of spinning, logs one fd_exhausted line, admits none;
    3. afterwards the backlog drains, the gate idles (CPU), every descriptor
       comes back (exactly the baseline) and it serves normally again."""
    gate.write(echo_gate(workers=2))
    gate.start(prefix=rlimit_prefix(FLOOD_FD_LIMIT))
    with open("/proc/%d/limits" % gate.pid) as f:
        assert re.search(r"Max open files\s+%d\s+%d" % (FLOOD_FD_LIMIT, FLOOD_FD_LIMIT),
                         f.read()), "rlimit not applied"
    cap = int(gate.wait_log(event_re("limit"))["effective"])
    # (one descriptor per echo connection, less a reserve for the gate itself)
    assert 1 <= cap < FLOOD_FD_LIMIT, "max_connections %d under %d descriptors" % (
        cap, FLOOD_FD_LIMIT)
    port = gate.port("web")
    target = "127.0.0.1:%d" % port
    warm_up(gate, port, 2)
    s0 = gate.wait_stats(lambda s: s["active"] == 0, what="active=0 after the warm-up")
    base_fds = gate.fd_count()

    # 1. 5,000 callers at once; each is held open once admitted.
    flood = cgload("hold", target, "-n", FLOOD, "-c", FLOOD, "--timeout", 30000,
                   "--src", "127.0.0.2-127.0.0.9", "-d", 3600)
    held = flood.wait_held(timeout=120)
    assert gate.alive(), "the gate died under the flood"
    assert held == cap, "%d of %d callers held, max_connections is %d" % (held, FLOOD, cap)
    s1 = gate.wait_stats(lambda s: s["accepted"] + s["rejected"] - s0["accepted"] == FLOOD,
                         timeout=30, what="all %d callers judged" % FLOOD)
    assert s1["accepted"] - s0["accepted"] == cap, s1
    assert s1["rejected_limit"] == FLOOD - cap and s1["rejected"] == FLOOD - cap, s1
    assert s1["active"] == cap, s1
    cpu1 = assert_idle(gate, "holding %d callers after a flood of %d" % (cap, FLOOD))

    # 2. No descriptor left at all: the next accept(2) fails with EMFILE.
    m = gate.mark()
    limit = lowest_free_fd(gate.pid)  # the soft limit only: the hard one cannot go back up
    resource.prlimit(gate.pid, resource.RLIMIT_NOFILE, (limit, FLOOD_FD_LIMIT))
    wave = cgload("hold", target, "-n", FLOOD, "-c", FLOOD, "--timeout", 2500,
                  "--src", "127.0.0.10-127.0.0.17", "-d", 3600)
    t_wave = time.monotonic()
    gate.wait_log(event_re("fd_exhausted"), since=m, timeout=30)
    wait_for(lambda: listen_queue(port) > FLOOD // 2, 30, "the flood to wait in the backlog")
    cpu2 = assert_idle(gate, "out of descriptors with %d callers waiting" % FLOOD)
    held2 = wave.wait_held(timeout=120)
    r2 = wave.stop()
    wave_s = time.monotonic() - t_wave
    assert gate.alive(), "the gate died at EMFILE"
    assert held2 == 0, "%d callers admitted without a descriptor to spare" % held2
    assert r2["errors"]["reset"] >= 1, "no caller shed while out of descriptors: %r" % r2
    assert r2["errors"]["total"] == FLOOD, r2
    exhausted = gate.events("fd_exhausted", since=m)
    assert len(exhausted) <= 1 + int(wave_s // 10), (
        "%d fd_exhausted lines in %.1f s (one per 10 s)" % (len(exhausted), wave_s))
    assert exhausted[0]["level"] == "warn", exhausted[0].line
    s2 = gate.stats()
    assert s2["accepted"] == s1["accepted"], "admitted while out of descriptors: %r" % s2

    # 3. Descriptors back: the callers left in the backlog are taken and
    # reset (the gate is still full), then the held ones are let go.
    resource.prlimit(gate.pid, resource.RLIMIT_NOFILE, (FLOOD_FD_LIMIT, FLOOD_FD_LIMIT))
    # Callers of the second wave whose handshakes were held back while the
    # accept queue was full may still complete them (their cgload has
    # closed them by now): wait until none is left in either queue.
    wait_for(lambda: listen_queue(port) == 0 and half_open(port) == 0, 60,
             "the backlog (accept queue and half-open handshakes) to drain")
    r1 = flood.stop()
    assert r1["held"] == cap and r1["dropped"] == 0, r1
    e = r1["errors"]
    assert e["reset"] == FLOOD - cap and e["total"] == FLOOD - cap, (
        "every caller beyond the limit must be reset, none left to time out: %r" % e)
    s3 = gate.wait_stats(lambda s: s["active"] == 0, timeout=30, what="active=0")
    assert s3["accepted"] == s1["accepted"], s3
    assert s3["rejected"] == s3["rejected_limit"], s3
    assert gate.alive()
    cpu3 = assert_idle(gate, "after the flood")
    wait_fds(gate, base_fds, what="after the flood")
    # Every slot is free again: `cap` callers at once, all served.
    conns = [connect(port, "127.0.0.%d" % (20 + i % 8)) for i in range(cap)]
    for i, c in enumerate(conns):
        echo_check(c, b"after the flood %d\n" % i)
    for c in conns:
        c.close()
    c = connect(port, "127.0.0.2")
    echo_check(c, b"x" * 100000)
    c.close()
    s4 = gate.wait_stats(lambda s: s["active"] == 0, what="active=0")
    assert s4["accepted"] == s3["accepted"] + cap + 1, s4
    print("flood of %d under %d descriptors: %d held, %d reset; at EMFILE %d shed of %d, "
          "%d fd_exhausted line(s); CPU over 1 s: %.2f / %.2f / %.2f s"
          % (FLOOD, FLOOD_FD_LIMIT, cap, FLOOD - cap, r2["errors"]["reset"], FLOOD,
             len(exhausted), cpu1, cpu2, cpu3))
    gate.stop()


# ---------------------------------------------------------------------------
# 10,000 idle connections

HOLD = 10000


def settled_rss(pid, timeout=15.0):
    """RSS once the teardown is over: a worker closes the descriptors of
    10,000 connections at once but frees their memory in the close
    callbacks that follow, so poll until three readings 100 ms apart
    agree (or the timeout: then the last one)."""
    seen = [rss_bytes(pid)]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(seen) >= 3 and seen[-1] == seen[-2] == seen[-3]:
            break
        time.sleep(0.1)  # polling interval
        seen.append(rss_bytes(pid))
    return seen[-1]


def test_10000_idle_connections_held_and_released(gate, cgload):
    """cgload holds 10,000 idle connections to an echo listener (one
    descriptor each in the gate), then lets go; twice.

    While held: exactly 10,000 more descriptors, RSS per connection within
    a bound (an idle connection holds no buffer). After each release:
    descriptors exactly back to the baseline.

    Memory (without a sanitizer): the second cycle's peak at most 512 KiB
    above the first one's (measured +0.2 MiB, steady: the memory is reused;
    a leak of 52 bytes per connection from the first cycle would still be
    held), and RSS after each release at most 8 MiB above the baseline,
    i.e. at least a fifth of the ~10 MiB the connections took is given
    back: glibc cannot trim a worker's arena below memory still in use, and
    the workers keep up to 256 freed connection objects each for reuse,
    wherever the first connections to close happened to be (measured +1.3
    to +6.0 MiB, stable from cycle to cycle once settled). Leaking whole
    connections breaks that bound in one cycle, small leaks the first one."""
    san = sanitizer_of(gate.binary)
    env = None
    if san == "address":
        # ASan parks freed memory in a 256 MiB quarantine, so the second
        # cycle could not reuse the first one's: shrink it for this test
        # (use-after-free is still caught for recently freed blocks, and
        # LeakSanitizer still checks at exit).
        opts = os.environ.get("ASAN_OPTIONS", "")
        env = {"ASAN_OPTIONS": (opts + ":" if opts else "") + "quarantine_size_mb=1"}
    gate.write(echo_gate(workers=2, gateway="max_connections = %d" % HOLD), admin=True)
    gate.start(env=env)
    st = gate.json("/stats")
    assert st["max_connections"] == HOLD, (
        "the gate cannot hold %d echo connections under this descriptor limit: %r" % (
            HOLD, {k: st[k] for k in ("max_connections", "max_connections_configured")}))
    port = gate.port("web")
    target = "127.0.0.1:%d" % port
    warm_up(gate, port, 2)

    def active(n):
        return lambda: gate.json("/stats")["connections"]["active"] == n

    wait_for(active(0), 10, "/stats active=0 after the warm-up")
    base_fds = settled_fds(gate)
    base_rss = rss_bytes(gate.pid)
    figures = []
    peak = []
    after = []
    for cycle in (1, 2):
        t0 = time.monotonic()
        h = cgload("hold", target, "-n", HOLD, "-c", 64, "--timeout", 30000,
                   "--src", "127.0.0.2-127.0.0.9", "-d", 3600)
        held = h.wait_held(timeout=240)
        up_s = time.monotonic() - t0
        assert held == HOLD, "cycle %d: %d of %d connections held" % (cycle, held, HOLD)
        wait_for(active(HOLD), 30, "/stats active=%d" % HOLD)
        wait_fds(gate, base_fds + HOLD, timeout=10, what="cycle %d, %d held" % (cycle, HOLD))
        held_rss = rss_bytes(gate.pid)
        peak.append(held_rss)
        per_conn = (held_rss - base_rss) / HOLD
        # 1.0-1.6 KB measured (README: 1.6); a 64 KiB buffer per idle connection
        # would be 40 times the bound. Sanitizers add redzones and shadow.
        bound = 4096 if san is None else 16384
        assert per_conn <= bound, "cycle %d: %.0f bytes of RSS per idle connection" % (
            cycle, per_conn)
        assert gate.alive()
        r = h.stop()
        assert r["held"] == HOLD and r["dropped"] == 0 and r["errors"]["total"] == 0, r
        t1 = time.monotonic()
        wait_for(active(0), 60, "/stats active=0 after the release")
        wait_fds(gate, base_fds, timeout=30, what="cycle %d, released" % cycle)
        down_s = time.monotonic() - t1
        after.append(settled_rss(gate.pid))
        figures.append("cycle %d: fds %d -> %d -> %d, RSS %.1f -> %.1f -> %.1f MiB "
                       "(%.0f B/connection), up %.1f s, down %.1f s" % (
                           cycle, base_fds, base_fds + HOLD, gate_fds(gate),
                           base_rss / MiB, held_rss / MiB, after[-1] / MiB, per_conn, up_s,
                           down_s))
    print("\n".join(figures))
    if san is None:
        assert peak[1] - peak[0] <= 512 * 1024, "the second cycle needed more memory: " + (
            "; ".join(figures))
        for k, a in enumerate(after, 1):
            assert a - base_rss <= 8 * MiB, "RSS after release %d: %s" % (k, "; ".join(figures))
    else:
        # The sanitizers' allocators keep what was freed (RSS after a
        # release stays near the peak: 15 MiB up under ASan, 60 MiB under
        # TSan, shadow memory included) and settle during the second cycle:
        # its peak measured +1.8 to +2.8 MiB above the first (ASan with the
        # small quarantine; flat over five cycles) and +1.5 MiB (TSan),
        # where leaking the connections would add the first cycle's growth
        # again.
        assert peak[1] - peak[0] <= 6 * MiB, "the second cycle needed more memory: " + (
            "; ".join(figures))
    s = gate.json("/stats")
    assert s["connections"]["accepted"] == 2 * HOLD + 2, s["connections"]
    assert s["rejected_by"] == {"rule": 0, "default": 0, "limit": 0, "ban": 0, "source_limit": 0,
                                "source_rate": 0, "untrusted_proxy": 0, "proxy_header": 0},\
        s["rejected_by"]
    c = connect(port, "127.0.0.2")
    echo_check(c)
    c.close()
    gate.stop()


# ---------------------------------------------------------------------------
# Silent callers and the idle timeout

IDLE_MS = 1000
# Never before idle_timeout_ms after the caller's connect() (the gate cannot
# have started the connection's clock earlier; it reads the loop's clock
# afresh for a new connection, as libuv caches it per loop iteration), and
# within 2 s after it (a timer fires at idle + 2 ms).
IDLE_LATE_BOUND = 2.0


def watch_closes(socks, timeout):
    """Wait until every socket is closed by the peer; return per socket
    (how, when, data): how is 'eof' or 'reset', when time.monotonic()."""
    out = {}
    pending = {s.fileno(): s for s in socks}
    poller = select.poll()
    for fd in pending:
        poller.register(fd, select.POLLIN | select.POLLERR | select.POLLHUP)
    deadline = time.monotonic() + timeout
    while pending:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        for fd, ev in poller.poll(remaining * 1000):
            s = pending.get(fd)
            if s is None:
                continue
            now = time.monotonic()
            try:
                data = s.recv(65536)
                how = "eof" if not data else "data"
            except ConnectionResetError:
                data, how = b"", "reset"
            except BlockingIOError:
                continue
            out[s] = (how, now, data)
            poller.unregister(fd)
            del pending[fd]
    return out, list(pending.values())


def open_silent(port, n, srcs):
    """n callers that connect and never send; returns [(sock, t_before_connect)]."""
    res = []
    for i in range(n):
        t0 = time.monotonic()
        s = connect(port, srcs[i % len(srcs)])
        s.setblocking(False)
        res.append((s, t0))
    return res


def test_silent_callers_closed_by_idle_timeout(gate, server):
    """300 callers to an echo listener and 100 to a relayed listener connect
    and send nothing. Each one is closed by the gate (EOF, no byte) no
    earlier than idle_timeout_ms = 1000 after its connect and within 2 s
    after that; the backend's side is closed too. Meanwhile the gate idles."""
    be = server(silent_handler, backlog=256)
    gate.write("""
        [gateway]
        workers = 2

        [rules]
        allow = 127.0.0.0/8

        [listener:echo]
        bind = 127.0.0.1:$echo
        backend = echo
        idle_timeout_ms = %d

        [listener:relay]
        bind = 127.0.0.1:$relay
        backend = %s
        idle_timeout_ms = %d
        """ % (IDLE_MS, be.addr, IDLE_MS))
    gate.start()
    srcs = ["127.0.0.%d" % (2 + i) for i in range(8)]
    silent = open_silent(gate.port("echo"), 300, srcs) + open_silent(gate.port("relay"), 100, srcs)
    be.wait_accepted(100, timeout=30)
    gate.wait_stats(lambda s: s["active"] == 400, timeout=30, what="400 silent callers active")
    closes, left = watch_closes([s for s, _ in silent], timeout=IDLE_MS / 1000 + 30)
    assert not left, "%d silent callers never closed" % len(left)
    idle = IDLE_MS / 1000
    dts = []
    for s, t0 in silent:
        how, when, data = closes[s]
        assert how in ("eof", "reset") and data == b"", (how, data[:32])
        dts.append(when - t0)
        s.close()
    early = [d for d in dts if d < idle]
    late = [d for d in dts if d > idle + IDLE_LATE_BOUND]
    print("silent callers closed after %.3f .. %.3f s (idle_timeout_ms = %d)"
          % (min(dts), max(dts), IDLE_MS))
    assert not early, "%d callers closed before idle_timeout_ms: %.3f s" % (len(early), min(early))
    assert not late, "%d callers closed late: up to %.3f s" % (len(late), max(late))
    # The backend's side of each is closed too (its handler thread starts
    # whenever Python gets to it, so only the client side is timed).
    for how, _, data in be.wait_results(100, timeout=30):
        assert how in ("eof", "reset") and data == b"", (how, data[:32])
    s = gate.wait_stats(lambda s: s["active"] == 0, what="active=0")
    assert s["closed"] == 400 and s["backend_errors"] == 0, s
    assert (s["bytes_in"], s["bytes_out"]) == (0, 0), s
    gate.stop()


# ---------------------------------------------------------------------------
# A backend that accepts and never answers

class Parker:
    """A backend that accepts every connection and never reads or writes
    (small receive buffers, so data sent to it backs up into the gate)."""

    def __init__(self, rcvbuf=4096):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1024)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.addr = "127.0.0.1:%d" % self.port
        self.conns = []
        self._stop = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop:
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                break
            with self._cond:
                self.conns.append(c)
                self._cond.notify_all()

    def wait_accepted(self, n, timeout):
        with self._cond:
            ok = self._cond.wait_for(lambda: len(self.conns) >= n, timeout)
        assert ok, "the backend accepted %d connections, wanted %d" % (len(self.conns), n)

    def drain_closed(self, timeout):
        """Read every accepted connection to its end (EOF or reset); returns
        the ones still open after `timeout`."""
        with self._cond:
            conns = list(self.conns)
        for c in conns:
            c.setblocking(False)
        pending = set(conns)
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            r, _, _ = select.select(list(pending)[:512], [], [], 0.5)
            for c in r:
                try:
                    while True:
                        if not c.recv(1 << 20):
                            pending.discard(c)
                            break
                except BlockingIOError:
                    pass
                except ConnectionResetError:
                    pending.discard(c)
        return pending

    def close(self):
        self._stop = True
        self._thread.join(2)
        self.sock.close()
        for c in self.conns:
            c.close()


PARKED = 200
PARK_IDLE_MS = 5000
PUSHERS = 4
PUSH_CAP = 256 * MiB


def push_until_stalled(s, cap, stall=0.5):
    """Send zeros on non-blocking socket s until it takes nothing for
    `stall` seconds (or `cap` bytes went); returns the bytes sent."""
    blob = b"\0" * (1 << 20)
    sent = 0
    while sent < cap:
        _, w, _ = select.select([], [s], [], stall)
        if not w:
            break
        try:
            sent += s.send(blob)
        except BlockingIOError:
            pass
    return sent


def test_unanswering_backend_does_not_pin_the_worker(gate):
    """workers = 1. 200 callers are relayed to a backend that accepts and
    never reads or writes; four of them push data at it until the gate stops
    taking more (backpressure: it must stall them well below 256 MiB). The
    one worker must stay free: callers of an echo listener on the same gate
    are answered promptly, and a new caller of the parked listener still
    gets its backend connection. The parked ones are closed by
    idle_timeout_ms, both sides."""
    parker = Parker()
    try:
        gate.write("""
            [gateway]
            workers = 1

            [rules]
            allow = 127.0.0.0/8

            [listener:park]
            bind = 127.0.0.1:$park
            backend = %s
            idle_timeout_ms = %d

            [listener:echo]
            bind = 127.0.0.1:$echo
            backend = echo
            """ % (parker.addr, PARK_IDLE_MS))
        gate.start()
        park, echo = gate.port("park"), gate.port("echo")
        parked = []
        for i in range(PARKED):
            t0 = time.monotonic()
            s = connect(park, "127.0.0.%d" % (2 + i % 8))
            s.setblocking(False)
            parked.append((s, t0))
        parker.wait_accepted(PARKED, timeout=30)
        gate.wait_stats(lambda s: s["active"] == PARKED, what="%d parked" % PARKED)
        # Some of them push data the backend never reads, until the gate
        # stops taking more (backpressure: it holds at most one chunk per
        # direction, the rest stays in the kernel's socket buffers).
        pushed = []
        for s, _ in parked[:PUSHERS]:
            pushed.append(push_until_stalled(s, PUSH_CAP))
        assert max(pushed) < PUSH_CAP, (
            "a caller pushed %d MiB at a backend that reads nothing: no backpressure"
            % (max(pushed) // MiB))
        t_pushed = time.monotonic()

        # The worker is free: 50 echo callers, each answered promptly.
        worst = 0.0
        for i in range(50):
            t = time.monotonic()
            c = connect(echo, "127.0.0.%d" % (20 + i % 8), timeout=5)
            echo_check(c, b"are you there %d\n" % i, timeout=5)
            c.close()
            worst = max(worst, time.monotonic() - t)
        assert worst < 1.0, "an echo caller waited %.2f s with the worker's connections parked" % (
            worst)
        # ... and a new caller of the parked listener reaches the backend.
        late = connect(park, "127.0.0.30")
        parker.wait_accepted(PARKED + 1, timeout=5)
        late.close()
        print("pushed %s MiB at the parked backend before it stalled; worst echo round "
              "trip %.3f s" % ("/".join("%.1f" % (p / MiB) for p in pushed), worst))

        # The parked callers are closed by the idle timeout (and the
        # backend's side of each).
        closes, left = watch_closes([s for s, _ in parked], timeout=PARK_IDLE_MS / 1000 + 30)
        assert not left, "%d parked callers never closed" % len(left)
        idle = PARK_IDLE_MS / 1000
        for s, t0 in parked:
            how, when, data = closes[s]
            assert how in ("eof", "reset") and data == b"", (how, data[:32])
            assert when - t0 >= idle, "closed after %.3f s" % (when - t0)
            assert when - t_pushed <= idle + IDLE_LATE_BOUND + 5, "closed after %.2f s" % (
                when - t0)
            s.close()
        still = parker.drain_closed(timeout=30)
        assert not still, "%d backend connections left open by the gate" % len(still)
        s = gate.wait_stats(lambda s: s["active"] == 0, timeout=30, what="active=0")
        assert s["listeners"]["park"]["closed"] == PARKED + 1, s
        assert s["backend_errors"] == 0, s
        gate.stop()
    finally:
        parker.close()


# ---------------------------------------------------------------------------
# 20,000 rejects

REJECTS = 20000
RATE = 20  # reject lines per second (README: Limits)


def test_reject_flood_20000_is_summarised(gate, cgload_bin):
    """20,000 denied callers (8 sources) as fast as cgload can send them:
    every one is reset without a byte and counted; the log gets at most 20
    reject lines per one-second window plus one summary per window, and
    printed lines + the summaries' suppressed counts == 20,000."""
    from cgtest import run_cgload
    gate.write("""
        [gateway]
        workers = 2

        [rules]
        default = deny
        allow = 127.0.0.2
        deny = 127.0.66.0/24

        [listener:web]
        bind = 127.0.0.1:$web
        backend = echo
        """)
    gate.start()
    port = gate.port("web")
    m = gate.mark()
    t0 = time.monotonic()
    r = run_cgload(cgload_bin, "reject", "127.0.0.1:%d" % port, "-n", REJECTS, "-c", 32,
                   "--src", "127.0.66.1-127.0.66.8", timeout=300)
    elapsed = time.monotonic() - t0
    assert r["completed"] == REJECTS and r["errors"]["total"] == 0, r
    assert r["rejected"] == {"total": REJECTS, "reset": REJECTS, "eof": 0, "refused": 0}, r
    s = gate.wait_stats(lambda s: s["rejected"] == REJECTS, timeout=30,
                        what="rejected=%d" % REJECTS)
    assert s["rejected_rule"] == REJECTS and s["accepted"] == 0, s

    def accounted():
        lines = gate.events("reject", since=m)
        sup = gate.events("reject_suppressed", since=m)
        return len(lines) + sum(int(h["suppressed"]) for h in sup) >= REJECTS
    # The last window's summary comes from the gate's 1 s timer.
    wait_for(accounted, 10, "the summary of the last window")
    lines = gate.events("reject", since=m)
    summaries = gate.events("reject_suppressed", since=m)
    suppressed = 0
    for h in summaries:
        k = int(h["suppressed"])
        assert k > 0 and h["level"] == "warn", h.line
        assert h["message"] == "suppressed %d reject lines" % k, h.line
        suppressed += k
    assert len(lines) + suppressed == REJECTS, "%d lines + %d suppressed != %d" % (
        len(lines), suppressed, REJECTS)
    # Windows are >= 1 s long: a flood of `elapsed` seconds spans at most
    # floor(elapsed) + 2 of them (plus the one its last summary closes).
    windows = int(elapsed) + 2
    assert RATE <= len(lines) <= RATE * windows, "%d reject lines for %d rejects in %.2f s" % (
        len(lines), REJECTS, elapsed)
    assert len(summaries) <= windows + 1, "%d summary lines in %.2f s" % (len(summaries), elapsed)
    others = [l for l in gate.lines[m:]
              if not re.search(event_re("reject") + "|" + event_re("reject_suppressed") + "|" +
                               event_re("stats") + "|" + event_re("listener_stats"), l)]
    assert not others, "unexpected log lines during the flood: %r" % others[:5]
    for h in lines:
        assert h["reason"] == "rule" and h["rule"] == "127.0.66.0/24", h.line
    print("%d rejects in %.2f s: %d reject lines, %d summaries (%d suppressed)"
          % (REJECTS, elapsed, len(lines), len(summaries), suppressed))

    c = connect(port, "127.0.0.2")  # the gate still serves
    echo_check(c)
    c.close()
    expect_rejected(port, "127.0.66.9")
    gate.stop()
