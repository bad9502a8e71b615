"""Reload under load (issue 7, part 4): 100 reloads, alternating two rule
files, while allowed and denied callers keep coming from several 127.0.0.x
sources. Every connection is judged by the old set or the new one, never a
mix; open connections survive; the counters add up; nothing leaks.

The two rule files (a.json, b.json) are designed so that

- 127.0.1.1-4 and 127.0.6.6 are allowed by both,
- 127.0.2.1-4 and 127.0.5.5 are denied by both (127.0.2.x by a rule in A,
  by the default in B),
- 127.0.3.1-4 flip: allowed by A, denied by a rule in B,

and a mix of the two (A's /24 entries without its /32 exceptions, or B's
set plus A's exceptions) would admit 127.0.5.5 or deny 127.0.6.6.

Allowed and denied callers come from cgload (conn and reject modes, counted
exactly: each run has a fixed --count, runs follow each other until the
reloads are done); the flip callers from Python threads, which classify
every connection: the full echo back, or a reset without a byte.
"""

import errno
import re
import signal
import socket
import threading
import time

import pytest

from cgtest import (connect, echo_check, event_re, expect_rejected, gate_fds, run_cgload,
                    wait_fds, wait_for)

RELOADS = 100

A_JSON = """
    {
      "allow": ["127.0.1.0/24", "127.0.3.0/24", "127.0.5.0/24", "127.0.6.6"],
      "deny": ["127.0.2.0/24", "127.0.5.5", "127.0.6.0/24"]
    }
    """
B_JSON = """
    {
      "allow": ["127.0.1.0/24", "127.0.6.0/24"],
      "deny": ["127.0.3.0/24", "127.0.5.0/24"]
    }
    """
ALLOWED = ["127.0.1.1", "127.0.1.2", "127.0.1.3", "127.0.1.4", "127.0.6.6"]
DENIED = ["127.0.2.1", "127.0.2.2", "127.0.2.3", "127.0.2.4", "127.0.5.5"]
FLIP = ["127.0.3.1", "127.0.3.2", "127.0.3.3", "127.0.3.4"]

CONFIG = """
    [gateway]
    workers = 2

    [rules]
    default = deny
    include = %s

    [listener:web]
    bind = 127.0.0.1:$web
    backend = echo

    [listener:flip]
    bind = 127.0.0.1:$flip
    backend = echo
    """

RUN_COUNT = 2000  # exchanges per cgload run
RUN_CONCURRENCY = 8
SIZE = 64  # cgload's request (and echo) size


class Runner(threading.Thread):
    """cgload runs of RUN_COUNT exchanges, one after the other, until
    stop() (the run under way is finished, so every count is exact)."""

    def __init__(self, binary, mode, port, srcs):
        super().__init__(daemon=True)
        self.args = (binary, mode, "127.0.0.1:%d" % port, "-n", RUN_COUNT,
                     "-c", RUN_CONCURRENCY, "--timeout", 20000, "--src", ",".join(srcs))
        self.results = []
        self.error = None
        self._stop = threading.Event()
        self.start()

    def run(self):
        try:
            while not self._stop.is_set():
                self.results.append(run_cgload(*self.args, timeout=300))
        except BaseException as e:  # pytest.fail raises a BaseException
            self.error = e

    def stop(self):
        self._stop.set()
        self.join(300)
        assert not self.is_alive(), "a cgload run did not finish"
        if self.error is not None:
            raise self.error

    def total(self, *path):
        n = 0
        for r in self.results:
            v = r
            for k in path:
                v = v[k]
            n += v
        return n


_RESETS = (errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED)


def flip_call(port, src, payload):
    """One flip caller: 'admitted' (the whole payload echoed), 'refused' (a
    reset before any byte), or a description of anything else."""
    try:
        s = connect(port, src, timeout=10)
    except OSError as e:
        if e.errno in _RESETS + (errno.ECONNREFUSED,):
            return "refused"
        raise
    got = b""
    try:
        try:
            s.sendall(payload)
            while len(got) < len(payload):
                chunk = s.recv(len(payload) - len(got))
                if not chunk:
                    return "EOF after %d bytes" % len(got)
                got += chunk
        except socket.timeout:
            return "timeout after %d bytes" % len(got)
        except OSError as e:
            if e.errno in _RESETS:
                return "refused" if not got else "reset after %d bytes" % len(got)
            raise
        return "admitted" if got == payload else "wrong echo %r" % got[:32]
    finally:
        s.close()


class FlipCallers(threading.Thread):
    def __init__(self, port, srcs, tag):
        super().__init__(daemon=True)
        self.port, self.srcs, self.tag = port, srcs, tag
        self.counts = {"admitted": 0, "refused": 0}
        self.bad = []
        self.error = None
        self._stop = threading.Event()
        self.start()

    def run(self):
        i = 0
        try:
            while not self._stop.is_set():
                src = self.srcs[i % len(self.srcs)]
                out = flip_call(self.port, src, b"flip %s %d\n" % (self.tag, i))
                if out in self.counts:
                    self.counts[out] += 1
                else:
                    self.bad.append("%s: %s" % (src, out))
                i += 1
        except BaseException as e:
            self.error = e

    def stop(self):
        self._stop.set()
        self.join(60)
        assert not self.is_alive(), "a flip caller hangs"
        if self.error is not None:
            raise self.error


def explain(gate, addr):
    return gate.json("/rules/explain?addr=%s" % addr)["verdict"]


def check_premise(gate, allowed_flip):
    for a in ALLOWED:
        assert explain(gate, a) == "allow", a
    for a in DENIED:
        assert explain(gate, a) == "deny", a
    for a in FLIP:
        assert explain(gate, a) == ("allow" if allowed_flip else "deny"), a


def test_100_reloads_under_load(gate, cgload_bin):
    gate.write(CONFIG % "a.json", files={"a.json": A_JSON, "b.json": B_JSON}, admin=True)
    gate.start()
    web, flip = gate.port("web"), gate.port("flip")
    check_premise(gate, allowed_flip=True)

    # Baseline: both workers have had a connection (each worker loop keeps
    # one descriptor of its own from its first one), nothing open.
    warm = [connect(web, "127.0.1.1") for _ in range(2)]
    for c in warm:
        echo_check(c, b"warm up\n")
        c.close()
    wait_for(lambda: gate.json("/stats")["connections"]["active"] == 0, 10, "active=0")
    base_fds = gate_fds(gate)
    s0 = gate.json("/stats")
    assert s0["generation"] == 1

    # Open connections that must survive every reload: one allowed by both
    # sets, one allowed by A only (it stays open under B).
    p_web = connect(web, "127.0.1.9")
    p_flip = connect(flip, "127.0.3.9")
    p_bytes = {"web": 0, "flip": 0}

    def persistent_ok(tag):
        for name, c in (("web", p_web), ("flip", p_flip)):
            msg = b"still here %s %s\n" % (name.encode(), tag.encode())
            echo_check(c, msg)
            p_bytes[name] += len(msg)

    persistent_ok("start")

    allowed = Runner(cgload_bin, "conn", web, ALLOWED)
    denied = Runner(cgload_bin, "reject", web, DENIED)
    flippers = [FlipCallers(flip, FLIP, b"%d" % k) for k in range(2)]
    workers = [allowed, denied] + flippers
    try:
        def flowing():
            w = {l["name"]: l for l in gate.json("/stats")["listeners"]}
            w0 = {l["name"]: l for l in s0["listeners"]}
            return (w["web"]["accepted"] - w0["web"]["accepted"] >= 100 and
                    w["web"]["rejected"] >= 100 and
                    w["flip"]["accepted"] - w0["flip"]["accepted"] >= 10)
        wait_for(flowing, 60, "allowed, denied and flip callers to flow")

        t_first = time.monotonic()
        gen = 1
        for i in range(1, RELOADS + 1):
            fname = "b.json" if i % 2 else "a.json"
            gate.write(CONFIG % fname, admin=True)
            m = gate.mark()
            if i % 2:
                r = gate.json("/reload", method="POST", timeout=30)
                assert r == {"ok": True, "generation": gen + 1}, (i, r)
            else:
                gate.signal(signal.SIGHUP)
            # Its log line (the previous one is before the mark: we waited
            # for it, so the reader thread had it).
            hit = gate.wait_log(event_re("reload") + r".*\bgeneration=%d(?=\s|$)" % (gen + 1),
                                since=m, timeout=30)
            assert hit["result"] == "ok", hit.line
            assert not gate.grep(event_re("reload") + r".*\bresult=failed", since=m), i
            gen += 1
            if i in (1, 2):
                check_premise(gate, allowed_flip=(fname == "a.json"))
            if i % 10 == 0:
                persistent_ok("after reload %d" % i)
            for w in workers:
                assert w.error is None and w.is_alive(), "a load thread stopped: %r" % w.error
        t_last = time.monotonic()
    finally:
        for w in workers:
            try:
                w.stop()
            except BaseException:
                pass
    for w in workers:
        if w.error is not None:
            raise w.error
    reload_s = t_last - t_first

    # Every connection judged by one set: allowed callers always served ...
    a_done = allowed.total("completed")
    assert allowed.total("errors", "total") == 0, (
        "allowed callers refused or cut: %r" % [r["errors"] for r in allowed.results])
    assert allowed.total("aborted") == 0
    # ... denied callers always reset, without a byte ...
    d_done = denied.total("completed")
    assert denied.total("errors", "total") == 0, (
        "denied callers admitted or not refused: %r" % [r["errors"] for r in denied.results])
    assert denied.total("rejected", "reset") == d_done
    # ... flip callers either way, never anything else.
    bad = [b for f in flippers for b in f.bad]
    assert not bad, "flip callers neither admitted nor refused: %r" % bad[:10]
    f_adm = sum(f.counts["admitted"] for f in flippers)
    f_ref = sum(f.counts["refused"] for f in flippers)
    assert f_adm > 0 and f_ref > 0, "flip callers saw only one verdict: %d admitted, %d refused" % (
        f_adm, f_ref)

    # The load went on throughout the reloads: the runs follow each other
    # with no gap of a second, from before the first reload to after the
    # last one.
    for name, r in (("allowed", allowed), ("denied", denied)):
        runs = r.results
        assert runs[0]["_t_start"] < t_first and runs[-1]["_t_end"] > t_last, name
        gaps = [b["_t_start"] - a["_t_end"] for a, b in zip(runs, runs[1:])]
        assert not gaps or max(gaps) < 1.0, "%s: a %.2f s pause in the load" % (name, max(gaps))

    persistent_ok("end")
    p_web.close()
    p_flip.close()

    # The counters add up with the traffic.
    wait_for(lambda: gate.json("/stats")["connections"]["active"] == 0, 30, "active=0")
    s1 = gate.json("/stats")
    assert (s1["generation"], s1["reloads"], s1["reload_failures"]) == (1 + RELOADS, RELOADS, 0), (
        s1["generation"], s1["reloads"], s1["reload_failures"])
    before = {l["name"]: l for l in s0["listeners"]}
    after = {l["name"]: l for l in s1["listeners"]}

    def delta(name, *path):
        a, b = before[name], after[name]
        for k in path:
            a, b = a[k], b[k]
        return b - a

    assert delta("web", "accepted") == a_done + 1, (delta("web", "accepted"), a_done)
    assert delta("web", "rejected") == d_done, (delta("web", "rejected"), d_done)
    assert delta("web", "rejected_by", "limit") == 0
    assert delta("web", "rejected_by", "rule") > 0 and delta("web", "rejected_by", "default") > 0, (
        "denied callers were not judged by both sets: %r" % after["web"]["rejected_by"])
    assert delta("web", "bytes_in") == SIZE * a_done + p_bytes["web"]
    assert delta("web", "bytes_out") == SIZE * a_done + p_bytes["web"]
    assert delta("flip", "accepted") == f_adm + 1, (delta("flip", "accepted"), f_adm)
    assert delta("flip", "rejected") == f_ref, (delta("flip", "rejected"), f_ref)
    assert delta("flip", "rejected_by", "rule") == f_ref, after["flip"]["rejected_by"]
    assert delta("flip", "closed") == f_adm + 1
    assert s1["backend_errors"] == 0

    # The reject lines that were printed name a rule of the right file.
    for h in gate.events("reject"):
        peer = h["peer"].rsplit(":", 1)[0]
        why = (h["reason"], h["rule"], re.sub(r":\d+$", "", h["source"]).rsplit("/", 1)[-1])
        if peer.startswith("127.0.3."):
            assert why == ("rule", "127.0.3.0/24", "b.json"), h.line
        elif peer.startswith("127.0.2."):
            assert why in (("rule", "127.0.2.0/24", "a.json"), ("default", "", "")), h.line
        elif peer == "127.0.5.5":
            assert why in (("rule", "127.0.5.5/32", "a.json"),
                           ("rule", "127.0.5.0/24", "b.json")), h.line
        else:
            pytest.fail("a caller allowed by both sets was rejected: " + h.line)

    # Nothing leaked, and the gate still serves under the last set (A).
    wait_fds(gate, base_fds, what="after %d reloads under load" % RELOADS)
    c = connect(web, "127.0.6.6")
    echo_check(c)
    c.close()
    c = connect(flip, "127.0.3.1")
    echo_check(c)
    c.close()
    expect_rejected(web, "127.0.5.5")
    print("%d reloads in %.2f s under load: %d allowed exchanges, %d denied callers reset, "
          "flip callers %d admitted / %d refused; descriptors %d before and after"
          % (RELOADS, reload_s, a_done, d_done, f_adm, f_ref, base_fds))
    gate.stop()
