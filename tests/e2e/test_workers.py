"""Worker threads: `workers = N` runs N worker threads beside the control
thread; each worker accepts callers itself (the kernel wakes one idle
worker per caller), judges them and relays them; connections spread over
all of them even when they come one at a time; and a stop resets what is
still open on every worker."""

import os
import signal

import pytest

from cgtest import Transfer, connect, echo_check, event_re, sha256

MB = 1024 * 1024


def config(workers, drain_ms=5000):
    return """
        [gateway]
        workers = %d
        drain_timeout_ms = %d

        [rules]
        default = deny
        allow = 127.0.0.0/8

        [listener:web]
        bind = 127.0.0.1:$web
        backend = echo
        """ % (workers, drain_ms)


def threads_of(pid):
    return len(os.listdir("/proc/%d/task" % pid))


def under_tsan(pid):
    """ThreadSanitizer starts a background thread of its own once a second
    thread exists, which would blur the count."""
    with open("/proc/%d/maps" % pid) as f:
        return "libtsan" in f.read()


def test_workers_and_the_control_thread_are_all_the_threads(make_gate):
    counts = {}
    for n in (1, 2, 4):
        g = make_gate("w%d" % n)
        g.write(config(n))
        g.start()
        if under_tsan(g.pid):
            g.stop()
            pytest.skip("ThreadSanitizer adds a thread of its own")
        conns = [connect(g.port("web"), "127.0.0.%d" % (2 + i)) for i in range(2 * n)]
        for c in conns:
            echo_check(c)
        counts[n] = threads_of(g.pid)
        for c in conns:
            c.close()
        g.stop()
    assert counts == {1: 2, 2: 3, 4: 5}, "threads per workers = N: %r" % counts


def test_every_worker_accepts_relays_and_stop_resets_them_all(gate):
    gate.write(config(2, drain_ms=300), admin=True)
    gate.start()
    conns = []
    # One at a time, so every worker is idle when each caller comes: the
    # kernel alone would wake the same worker every time; the one ahead
    # steps back so the others take their share.
    for i in range(40):
        c = connect(gate.port("web"), "127.0.%d.%d" % (1 + i // 200, 2 + i % 200))
        echo_check(c)
        conns.append(c)
    workers = gate.json("/stats")["workers"]
    assert [w["handled"] for w in workers] == [w["active"] for w in workers], workers
    assert sum(w["active"] for w in workers) == 40, workers
    assert all(w["active"] > 0 for w in workers), "a worker accepted nothing: %r" % workers
    loads = [w["active"] for w in workers]
    assert max(loads) - min(loads) <= 1 + max(loads) // 8, "unbalanced: %r" % workers
    # Bulk through every connection, so through both workers, byte for byte.
    data = os.urandom(MB)
    for c in conns[:8]:
        t = Transfer(c, data, shut_wr=False)
        got = b""
        while len(got) < len(data):
            chunk = c.recv(1 << 20)
            assert chunk, "EOF in the middle of the echo"
            got += chunk
        t.join(60)
        assert sha256(got) == sha256(data)
    s = gate.json("/stats")
    assert s["bytes"]["in"] == 40 * 15 + 8 * len(data), s["bytes"]
    assert s["bytes"]["out"] == s["bytes"]["in"], s["bytes"]

    gate.signal(signal.SIGTERM)
    assert gate.wait_exit(15) == 0
    for c in conns:
        c.settimeout(5)
        try:
            got = c.recv(1)
        except ConnectionResetError:
            got = None
        assert got in (None, b""), "a byte after the stop: %r" % got
        c.close()
    hit = gate.wait_log(event_re("stop"))
    assert (hit["closed"], hit["active"]) == ("40", "0"), hit.line

