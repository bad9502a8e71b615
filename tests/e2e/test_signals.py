"""SIGTERM/SIGINT: stop accepting, drain open connections up to
drain_timeout_ms, exit 0."""

import os
import signal
import socket
import threading
import time

from cgtest import (Transfer, connect, echo_check, event_re, expect_reset,
                    recv_hash_until_eof, sha256)

MB = 1024 * 1024


def config(drain_ms):
    return """
        [gateway]
        workers = 2
        drain_timeout_ms = %d

        [rules]
        allow = 127.0.0.0/8

        [listener:web]
        bind = 127.0.0.1:$web
        backend = echo
        rules = default
        """ % drain_ms


class Receiver(threading.Thread):
    def __init__(self, sock):
        super().__init__(daemon=True)
        self.sock = sock
        self.count = 0
        self.result = None
        self.error = None
        self.start()

    def _progress(self, n):
        self.count = n

    def run(self):
        try:
            self.result = recv_hash_until_eof(self.sock, timeout=60, progress=self._progress)
        except Exception as e:  # reported by the test
            self.error = e


def turned_away(port, src):
    """True when a new caller is refused, reset or closed without data;
    False when it is still relayed. Accepted and left hanging fails."""
    try:
        s = connect(port, src, timeout=5)
    except (ConnectionRefusedError, ConnectionResetError):
        return True
    try:
        s.sendall(b"probe\n")
        data = s.recv(64)
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        raise AssertionError("a new caller during the drain was neither served nor refused")
    finally:
        s.close()
    return data == b""


def test_sigterm_drains_open_transfer(gate):
    gate.write(config(20000))
    gate.start()
    port = gate.port("web")
    size = 8 * MB
    data = os.urandom(size)
    c = connect(port, "127.0.0.2")
    # ~128 chunks of 64 KiB, 20 ms apart: the transfer lasts ~2.5 s or more
    sender = Transfer(c, data, shut_wr=True, chunk=64 * 1024, pace=0.02)
    rx = Receiver(c)
    deadline = time.monotonic() + 30
    while rx.count < MB:
        assert time.monotonic() < deadline and rx.is_alive(), "transfer stalled before SIGTERM"
        time.sleep(0.01)
    gate.signal(signal.SIGTERM)

    # New callers are turned away while the transfer is still running.
    deadline = time.monotonic() + 10
    while not turned_away(port, "127.0.0.3"):
        assert time.monotonic() < deadline, "still accepting new callers after SIGTERM"
        time.sleep(0.05)
    assert rx.is_alive() and rx.count < size, \
        "transfer was over before new callers were refused: not a mid-way SIGTERM"
    assert gate.alive(), "gate exited with a transfer open"

    rx.join(60)
    sender.join(60)
    assert rx.error is None, rx.error
    n, digest = rx.result
    assert n == size and digest == sha256(data), "transfer damaged by the drain (%d bytes)" % n
    c.close()
    t0 = time.monotonic()
    rc = gate.wait_exit(15)
    assert rc == 0, "exit status %s after SIGTERM" % rc
    assert time.monotonic() - t0 < 10, "gate waited for the drain timeout with nothing open"
    gate.wait_log(event_re("stop"))


def test_drain_timeout_cuts_stuck_connections(gate):
    gate.write(config(500))
    gate.start()
    c = connect(gate.port("web"), "127.0.0.2")
    echo_check(c)
    t0 = time.monotonic()
    gate.signal(signal.SIGTERM)
    rc = gate.wait_exit(15)
    dt = time.monotonic() - t0
    assert rc == 0
    assert 0.3 <= dt <= 8, "exit %.2fs after SIGTERM with drain_timeout_ms=500" % dt
    expect_reset(c, timeout=5)
    c.close()


def test_sigint_stops_like_sigterm(gate):
    gate.write(config(5000))
    gate.start()
    c = connect(gate.port("web"), "127.0.0.2")
    echo_check(c)
    c.close()
    gate.stop(signal.SIGINT)
    gate.wait_log(event_re("stop"))
