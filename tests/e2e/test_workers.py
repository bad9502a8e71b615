"""Worker threads: `workers = N` runs N worker threads beside the control
thread; each worker accepts from a listening socket of its own (a
SO_REUSEPORT group per listener), judges its callers and relays them, so
connections spread over all of them; a stop resets what is still open on
every worker; and the group never joins another process's sockets."""

import os
import signal
import socket

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
    # The kernel spreads callers over the workers' sockets by a hash of
    # address and port: with 40 callers, one worker taking them all has a
    # chance of 2**-39.
    for i in range(40):
        c = connect(gate.port("web"), "127.0.%d.%d" % (1 + i // 200, 2 + i % 200))
        echo_check(c)
        conns.append(c)
    workers = gate.json("/stats")["workers"]
    assert [w["handled"] for w in workers] == [w["active"] for w in workers], workers
    assert sum(w["active"] for w in workers) == 40, workers
    assert all(w["active"] > 0 for w in workers), "a worker accepted nothing: %r" % workers
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


def test_the_group_never_joins_another_processs_sockets(gate):
    """SO_REUSEPORT lets any socket of the same user join a group on the
    address: the gate checks the address is free first, so a second process
    there (here one that set SO_REUSEPORT itself) is a bind failure, not a
    silent share of its callers."""
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    taken = holder.getsockname()[1]
    try:
        gate.write(config(2).replace("$web", str(taken)))
        rc, out, err = gate.run(["-c", gate.ini_path], timeout=20)
        assert rc == 1, "exit %s with the address taken\n%s" % (rc, err)
        assert "in use" in err and str(taken) in err, err
    finally:
        holder.close()
