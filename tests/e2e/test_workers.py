"""Worker threads: `workers = N` runs N threads in all (the control thread
relays as worker 0, without a queue or wake-up), connections spread over
all of them, and a stop resets what is still open on every worker, the
control thread's own included."""

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


def test_workers_are_all_the_threads(make_gate):
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
    assert counts == {1: 1, 2: 2, 4: 4}, "threads per workers = N: %r" % counts


def test_every_worker_relays_and_stop_resets_them_all(gate):
    gate.write(config(2, drain_ms=300), admin=True)
    gate.start()
    conns = []
    for i in range(6):
        c = connect(gate.port("web"), "127.0.0.%d" % (2 + i))
        echo_check(c)
        conns.append(c)
    # Least loaded with round-robin ties: three on each worker, worker 0
    # being the control thread itself.
    workers = gate.json("/stats")["workers"]
    assert [w["active"] for w in workers] == [3, 3], workers
    # Bulk on both workers too, byte for byte.
    data = os.urandom(4 * MB)
    for c in conns[:2]:
        t = Transfer(c, data, shut_wr=False)
        got = b""
        while len(got) < len(data):
            chunk = c.recv(1 << 20)
            assert chunk, "EOF in the middle of the echo"
            got += chunk
        t.join(60)
        assert sha256(got) == sha256(data)
    s = gate.json("/stats")
    assert s["bytes"]["in"] == 6 * 15 + 2 * len(data), s["bytes"]
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
    assert (hit["closed"], hit["active"]) == ("6", "0"), hit.line
