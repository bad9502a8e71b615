"""The relay: integrity, half-close, backends that are down or hang,
round robin, idle timeout, many clients at once, debug lines."""

import os
import re
import socket
import threading
import time

from cgtest import (Transfer, banner_then_read_handler, connect, echo_check,
                    echo_handler, event_re, expect_rejected, expect_reset, hash_handler,
                    local_port, recv_hash_until_eof, recv_until_eof,
                    reply_after_eof_handler, sha256, silent_handler)

MB = 1024 * 1024
BIG = 20 * MB


def one_listener(backend, extra="", gateway=""):
    return """
        [gateway]
        workers = 2
        %s

        [rules]
        default = deny
        allow = 127.0.0.0/8

        [listener:web]
        bind = 127.0.0.1:$web
        backend = %s
        rules = default
        %s
        """ % (gateway, backend, extra)


def test_relay_integrity_20mb_through_echo(gate):
    gate.write(one_listener("echo"))
    gate.start()
    data = os.urandom(BIG)
    c = connect(gate.port("web"), "127.0.0.2")
    t = Transfer(c, data, shut_wr=True)
    n, digest = recv_hash_until_eof(c, timeout=120)
    t.join(120)
    c.close()
    assert n == BIG, "echoed %d of %d bytes" % (n, BIG)
    assert digest == sha256(data), "echoed bytes differ from the bytes sent"
    s = gate.wait_stats(lambda s: s["closed"] == 1, what="closed=1")
    assert (s["bytes_in"], s["bytes_out"]) == (BIG, BIG)
    w = s["listeners"]["web"]
    assert (w["bytes_in"], w["bytes_out"], w["accepted"], w["closed"]) == (BIG, BIG, 1, 1)
    assert s["active"] == 0
    gate.stop()


def test_relay_integrity_20mb_each_way_through_backend(gate, server):
    """20 MB up and a different 20 MB down at the same time, both hashed."""
    up, down = os.urandom(BIG), os.urandom(BIG)
    be = server(hash_handler(down))
    gate.write(one_listener(be.addr))
    gate.start()
    c = connect(gate.port("web"), "127.0.0.2")
    t = Transfer(c, up, shut_wr=True)
    n, digest = recv_hash_until_eof(c, timeout=120)
    t.join(120)
    c.close()
    res = be.wait_results(1, timeout=60)[0]
    assert res == {"received": BIG, "sha": sha256(up)}, "backend got a damaged upload"
    assert n == BIG and digest == sha256(down), "client got a damaged download (%d bytes)" % n
    s = gate.wait_stats(lambda s: s["closed"] == 1, what="closed=1")
    assert (s["bytes_in"], s["bytes_out"]) == (BIG, BIG)
    gate.stop()


def test_half_close_client_first(gate, server):
    """Client SHUT_WR -> backend sees EOF; the backend's answer still reaches
    the client, followed by EOF."""
    be = server(reply_after_eof_handler)
    gate.write(one_listener(be.addr))
    gate.start()
    c = connect(gate.port("web"), "127.0.0.2")
    c.sendall(b"hello world")
    c.shutdown(socket.SHUT_WR)
    reply = recv_until_eof(c, timeout=10)
    c.close()
    assert be.wait_results(1)[0] == b"hello world"
    assert reply == b"got 11 bytes: hello world"
    gate.stop()


def test_half_close_backend_first(gate, server):
    """Backend sends a banner and SHUT_WR -> client reads banner then EOF,
    and can still send; the backend receives it."""
    be = server(banner_then_read_handler(b"220 ready\r\n"))
    gate.write(one_listener(be.addr))
    gate.start()
    c = connect(gate.port("web"), "127.0.0.2")
    assert recv_until_eof(c, timeout=10) == b"220 ready\r\n"
    c.sendall(b"late data after the backend's EOF")
    c.shutdown(socket.SHUT_WR)
    assert be.wait_results(1)[0] == b"late data after the backend's EOF"
    c.settimeout(10)
    try:
        assert c.recv(16) == b""
    except ConnectionResetError:
        pass
    c.close()
    gate.stop()


def test_backend_down_closes_client_and_counts(gate, closed_port):
    dead = closed_port()
    gate.write(one_listener(dead.addr, "connect_timeout_ms = 2000"))
    gate.start()
    for i in range(2):
        # connect() itself may already see the reset: the refusal is that fast
        lport = expect_rejected(gate.port("web"), "127.0.0.2", timeout=10,
                                probe=b"anyone there?")
        hit = gate.wait_log(event_re("backend_error") + r".*\bpeer=127\.0\.0\.2:%d\b" % lport)
        assert hit["level"] == "warn", hit.line
        assert hit["listener"] == "web", hit.line
        assert hit["backend"] == dead.addr, hit.line
        assert hit.get("error"), hit.line
    s = gate.wait_stats(lambda s: s["backend_errors"] >= 2, what="backend_errors>=2")
    assert s["backend_errors"] == 2
    assert s["listeners"]["web"]["backend_errors"] == 2
    s = gate.wait_stats(lambda s: s["active"] == 0, what="active=0")
    gate.stop()


def test_all_backends_down_counts_one_error_per_client(gate, closed_port):
    d1, d2 = closed_port(), closed_port()
    gate.write(one_listener("%s, %s" % (d1.addr, d2.addr), "connect_timeout_ms = 2000"))
    gate.start()
    expect_rejected(gate.port("web"), "127.0.0.2", timeout=10)
    s = gate.wait_stats(lambda s: s["backend_errors"] >= 1, what="backend_errors>=1")
    gate.wait_stats(lambda s: s["active"] == 0, what="active=0")
    s = gate.stats()
    assert s["backend_errors"] == 1, "one client whose backends all failed: %r" % s
    gate.stop()


def test_round_robin_with_one_dead_backend_serves_everyone(gate, closed_port, echo_backend):
    dead = closed_port()
    gate.write(one_listener("%s, %s" % (dead.addr, echo_backend.addr),
                            "connect_timeout_ms = 2000"))
    gate.start()
    for i in range(6):
        c = connect(gate.port("web"), "127.0.0.2")
        echo_check(c, b"request %d\n" % i)
        c.close()
    assert echo_backend.accepted == 6
    gate.stop()


def test_round_robin_alternates(gate, server):
    a, b = server(echo_handler), server(echo_handler)
    gate.write(one_listener("%s, %s" % (a.addr, b.addr)))
    gate.start()
    for i in range(8):
        c = connect(gate.port("web"), "127.0.0.2")
        echo_check(c, b"request %d\n" % i)
        c.close()
    assert (a.accepted, b.accepted) == (4, 4), "round robin over 2 backends"
    gate.stop()


def test_connect_timeout(gate, blackhole):
    gate.write(one_listener(blackhole.addr, "connect_timeout_ms = 600"))
    gate.start()
    c = connect(gate.port("web"), "127.0.0.2")
    lport = local_port(c)
    t0 = time.monotonic()
    expect_reset(c, timeout=15)
    dt = time.monotonic() - t0
    c.close()
    # 600 ms, perhaps twice (the retry of the only backend); never instant
    assert 0.4 <= dt <= 6.0, "client closed after %.2fs, connect_timeout_ms=600" % dt
    hit = gate.wait_log(event_re("backend_error") + r".*\bpeer=127\.0\.0\.2:%d\b" % lport)
    assert hit["backend"] == blackhole.addr
    gate.wait_stats(lambda s: s["backend_errors"] == 1, what="backend_errors=1")
    gate.stop()


def test_idle_timeout_closes_idle_connections(gate, server):
    silent = server(silent_handler)
    gate.write("""
        [gateway]
        workers = 2

        [rules]
        allow = 127.0.0.0/8

        [listener:echo]
        bind = 127.0.0.1:$echo
        backend = echo
        rules = default
        idle_timeout_ms = 300

        [listener:silent]
        bind = 127.0.0.1:$silent
        backend = %s
        rules = default
        idle_timeout_ms = 300
        """ % silent.addr)
    gate.start()

    c = connect(gate.port("echo"), "127.0.0.2")
    echo_check(c)
    t0 = time.monotonic()
    expect_reset(c, timeout=10)
    dt = time.monotonic() - t0
    c.close()
    assert 0.25 <= dt <= 5.0, "idle echo connection closed after %.2fs (idle 300 ms)" % dt

    # Nothing ever flows: the gate closes both sides.
    c = connect(gate.port("silent"), "127.0.0.2")
    t0 = time.monotonic()
    expect_reset(c, timeout=10)
    dt = time.monotonic() - t0
    c.close()
    assert 0.25 <= dt <= 5.0, "idle relayed connection closed after %.2fs" % dt
    how, _, _ = silent.wait_results(1)[0]
    assert how in ("eof", "reset")
    gate.wait_stats(lambda s: s["closed"] == 2 and s["active"] == 0, what="closed=2 active=0")
    gate.stop()


def test_idle_timeout_spares_busy_connections(gate, server):
    """Traffic every 100 ms keeps a connection with idle_timeout_ms = 300
    alive for 5x that long, both for an echo exchange and for one-way
    traffic to a backend that never answers."""
    sink = server(silent_handler)
    gate.write("""
        [gateway]
        workers = 2

        [rules]
        allow = 127.0.0.0/8

        [listener:echo]
        bind = 127.0.0.1:$echo
        backend = echo
        rules = default
        idle_timeout_ms = 300

        [listener:sink]
        bind = 127.0.0.1:$sink
        backend = %s
        rules = default
        idle_timeout_ms = 300
        """ % sink.addr)
    gate.start()
    e = connect(gate.port("echo"), "127.0.0.2")
    k = connect(gate.port("sink"), "127.0.0.3")
    sent = bytearray()
    end = time.monotonic() + 1.5
    i = 0
    while time.monotonic() < end:
        echo_check(e, b"tick %d\n" % i)
        k.sendall(b"%d," % i)
        sent += b"%d," % i
        i += 1
        time.sleep(0.1)  # the traffic pattern under test, not synchronisation
    echo_check(e, b"still here\n")
    k.shutdown(socket.SHUT_WR)
    how, _, data = sink.wait_results(1)[0]
    assert how == "eof" and data == bytes(sent), "one-way traffic was cut (%s)" % how
    e.close()
    k.close()
    gate.stop()


def test_many_concurrent_clients(gate):
    n, size = 40, 256 * 1024
    gate.write(one_listener("echo", gateway="").replace("workers = 2", "workers = 4"))
    gate.start()
    port = gate.port("web")
    errors = []
    barrier = threading.Barrier(n)

    def client(i):
        try:
            data = os.urandom(size)
            c = connect(port, "127.0.0.%d" % (10 + i), timeout=30)
            barrier.wait(30)
            t = Transfer(c, data, shut_wr=True)
            got, digest = recv_hash_until_eof(c, timeout=60)
            t.join(60)
            c.close()
            if got != size or digest != sha256(data):
                errors.append("client %d: %d bytes, hash %s" % (i, got, digest == sha256(data)))
        except Exception as e:  # collected below
            errors.append("client %d: %r" % (i, e))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    s = gate.wait_stats(lambda s: s["closed"] == n, what="closed=%d" % n)
    assert s["accepted"] == n and s["active"] == 0 and s["rejected"] == 0
    assert (s["bytes_in"], s["bytes_out"]) == (n * size, n * size)
    gate.stop()


def test_debug_accept_and_close_lines(gate):
    gate.write(one_listener("echo", gateway="log_level = debug"))
    gate.start()
    port = gate.port("web")
    conns = []
    # One at a time: the worker ahead in open connections steps back, so
    # the other takes the next ones.
    for i in range(16):
        c = connect(port, "127.0.0.%d" % (10 + i))
        echo_check(c, b"x" * (100 * (i + 1)))
        conns.append(c)
    accepts = []
    for i, c in enumerate(conns):
        peer = "127.0.0.%d:%d" % (10 + i, local_port(c))
        hit = gate.wait_log(event_re("accept") + r".*\bpeer=%s\b" % peer)
        assert hit["level"] == "debug" and hit["listener"] == "web", hit.line
        accepts.append(hit)
    for i, c in enumerate(conns):
        peer = "127.0.0.%d:%d" % (10 + i, local_port(c))
        c.shutdown(socket.SHUT_WR)
        assert recv_until_eof(c) == b""
        c.close()
        hit = gate.wait_log(event_re("close") + r".*\bpeer=%s\b" % peer)
        assert hit["level"] == "debug" and hit["listener"] == "web", hit.line
        assert int(hit["bytes_in"]) == 100 * (i + 1), hit.line
        assert int(hit["bytes_out"]) == 100 * (i + 1), hit.line
        assert int(hit["duration_ms"]) >= 0, hit.line
    gate.stop()
    for hit in accepts:
        assert re.fullmatch(r"\d+", hit.get("worker", "")), \
            "accept line without worker=N: " + hit.line
    workers = {hit["worker"] for hit in accepts}
    assert len(workers) >= 2, "16 open connections all on one of 2 workers: %r" % workers
