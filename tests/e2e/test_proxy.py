"""The PROXY protocol (SPEC §13): headers from trusted senders only, the
client they name judged by every later stage, bad and late headers reset,
the client's bytes untouched; and headers sent on to backends. Real peers:
HAProxy 2.6 in front (send-proxy, send-proxy-v2) and nginx 1.22's stream
module behind (listen ... proxy_protocol)."""

import re
import os
import shutil
import socket
import struct
import subprocess
import time

import pytest

from cgtest import HAVE_IPV6, connect, event_re, expect_rejected, free_port, recv_until_eof

from test_bans import poll_stats
from test_prefilter import kernel, outcome  # noqa: F401  (the fixture)

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
NGINX_MODULE = "/usr/lib/nginx/modules/ngx_stream_module.so"


def wait_port(port, host="127.0.0.1", timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((host, port), timeout=1).close()
            return
        except OSError:
            assert time.monotonic() < deadline, "nothing listens on %s:%d" % (host, port)
            time.sleep(0.02)


class Peer:
    """A peer process started for one test and killed after it."""

    def __init__(self, argv, port):
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT)
        try:
            wait_port(port)
        except AssertionError:
            self.stop()
            raise AssertionError("%s did not start: %s" % (argv[0], self.proc.stdout.read()))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


@pytest.fixture
def peers(tmp_path):
    started = []

    def haproxy(listen, to_port, version):
        if not os.path.exists(HAPROXY):
            pytest.skip("haproxy is not installed")
        cfg = tmp_path / ("haproxy-%d.cfg" % listen)
        cfg.write_text("""
global
    maxconn 1000
defaults
    mode tcp
    timeout connect 2s
    timeout client 10s
    timeout server 10s
frontend fe
    bind 127.0.0.1:%d
    default_backend be
backend be
    server cg 127.0.0.1:%d %s
""" % (listen, to_port, "send-proxy-v2" if version == 2 else "send-proxy"))
        p = Peer([HAPROXY, "-db", "-f", str(cfg)], listen)
        started.append(p)
        return p

    def nginx(listen):
        if not os.path.exists(NGINX) or not os.path.exists(NGINX_MODULE):
            pytest.skip("nginx with libnginx-mod-stream is not installed")
        d = tmp_path / ("nginx-%d" % listen)
        d.mkdir()
        conf = d / "nginx.conf"
        conf.write_text("""
load_module %s;
daemon off;
master_process off;
pid %s/nginx.pid;
error_log %s/error.log;
events {}
stream {
    server {
        listen 127.0.0.1:%d proxy_protocol;
        return "$proxy_protocol_addr\\n";
    }
}
""" % (NGINX_MODULE, d, d, listen))
        p = Peer([NGINX, "-p", str(d), "-c", str(conf)], listen)
        started.append(p)
        return p

    yield haproxy, nginx
    for p in started:
        p.stop()


CHAIN = """
    [rules]
    default = deny
    allow = 127.0.0.0/8
    deny = 127.0.0.66

    [listener:front]
    bind = %s:$front
    backend = 127.0.0.1:%d
    accept_proxy = any
    trusted_proxies = 127.0.0.1
    send_proxy = %s
    """


def ask(port, src):
    """What a client from src reads back through the chain (b'' when it is
    refused or reset)."""
    s = connect(port, src)
    try:
        return recv_until_eof(s)
    except ConnectionResetError:
        return b""
    finally:
        s.close()


@pytest.mark.parametrize("version", [1, 2])
def test_haproxy_condgate_nginx_carry_the_client(gate, peers, version):
    haproxy, nginx = peers
    ng, ha = free_port(), free_port()
    nginx(ng)
    gate.write(CHAIN % ("127.0.0.1", ng, "v%d" % version), admin=True)
    gate.start()
    haproxy(ha, gate.port("front"), version)
    assert ask(ha, "127.0.0.5") == b"127.0.0.5\n"
    assert ask(ha, "127.0.0.66") == b""                 # denied by rule, behind HAProxy
    st = poll_stats(gate, lambda s: s["listeners"][0]["rejected_by"]["rule"] == 1,
                    "the refusal counted")
    lst = st["listeners"][0]
    # 127.0.0.5, and the readiness probe's connection through HAProxy.
    assert lst["proxied"] >= 1 and lst["rejected_by"]["untrusted_proxy"] == 0
    line = gate.wait_log(event_re("reject"))
    assert line["client"].startswith("127.0.0.66:") and line["via"].startswith("127.0.0.1:")
    ex = gate.json("/rules/explain?addr=127.0.0.66&listener=front")
    assert ex["verdict"] == "deny" and ex["trusted_proxy"] is False
    assert gate.json("/rules/explain?addr=127.0.0.1&listener=front")["trusted_proxy"] is True


@pytest.mark.skipif(not HAVE_IPV6, reason="no IPv6 loopback")
def test_ipv4_through_a_dual_stack_listener_goes_on_as_tcp4(gate, peers):
    haproxy, nginx = peers
    ng, ha = free_port(), free_port()
    nginx(ng)
    gate.write(CHAIN.replace("trusted_proxies = 127.0.0.1", "trusted_proxies = 127.0.0.1, ::1")
               % ("[::]", ng, "v1"), admin=True)
    gate.start()
    haproxy(ha, gate.port("front"), 2)
    assert ask(ha, "127.0.0.9") == b"127.0.0.9\n"


RAW = """
    [rules]
    default = deny
    allow = 127.0.0.0/8
    deny = 127.0.0.66

    [listener:raw]
    bind = 127.0.0.1:$raw
    backend = echo
    accept_proxy = %s
    trusted_proxies = 127.0.0.1
    proxy_timeout_ms = 300
    """

V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def v2(src, dst, sport=1234, dport=80, cmd=0x21, fam=0x11, extra=b""):
    addrs = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", sport, dport)
    body = addrs + extra
    return V2_SIG + bytes([cmd, fam]) + struct.pack("!H", len(body)) + body


def sent_and_answer(port, data, src="127.0.0.1", pause=None, more=b""):
    """Send data (then, after pause, more) from src and read what comes back
    until EOF or reset: (bytes, 'eof'|'reset')."""
    s = connect(port, src)
    try:
        s.sendall(data)
    except OSError:
        pass
    if pause:
        time.sleep(pause)
        try:
            s.sendall(more)
        except OSError:
            pass
    if not pause:
        try:
            s.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # reset already: the gate refused what it read
    got = b""
    try:
        got = recv_until_eof(s)
        how = "eof"
    except ConnectionResetError:
        how = "reset"
    s.close()
    return got, how


def test_header_then_payload_in_one_segment(gate):
    gate.write(RAW % "any", admin=True)
    gate.start()
    port = gate.port("raw")
    got, how = sent_and_answer(port, b"PROXY TCP4 127.0.0.5 127.0.0.1 4000 80\r\nhello\n")
    assert got == b"hello\n"                      # the client's bytes, intact
    got, how = sent_and_answer(port, v2("127.0.0.6", "127.0.0.1") + b"world\n")
    assert got == b"world\n"
    got, how = sent_and_answer(port, b"PROXY TCP4 127.0.0.66 127.0.0.1 4000 80\r\nhello\n")
    assert got == b"" and how == "reset"          # the named client is denied
    st = poll_stats(gate, lambda s: s["listeners"][0]["rejected_by"]["rule"] == 1, "counted")
    assert st["listeners"][0]["proxied"] == 2


BAD = [
    ("no CRLF", b"PROXY TCP4 127.0.0.5 127.0.0.1 4000 80\n" + b"x" * 80),
    ("108 bytes", b"PROXY UNKNOWN " + b"x" * 92 + b"\r\n"),
    ("bad v2 signature", b"\r\n\r\n\x00\r\nQUIX\n\x21\x11\x00\x0c" + b"\x00" * 12),
    ("v2 length past the bound", V2_SIG + b"\x21\x11\x02\x10" + b"\x00" * 600),
    ("unknown family", V2_SIG + b"\x21\x51\x00\x0c" + b"\x00" * 12),
    ("not a header", b"GET / HTTP/1.1\r\n\r\n"),
]


def test_bad_headers_are_reset_and_counted(gate):
    gate.write(RAW % "any", admin=True)
    gate.start()
    port = gate.port("raw")
    for what, data in BAD:
        got, how = sent_and_answer(port, data)
        assert got == b"", (what, got)
    # No header at all, and a header too slow: reset after proxy_timeout_ms.
    t0 = time.monotonic()
    got, how = sent_and_answer(port, b"", pause=1.0, more=b"PROXY TCP4 127.0.0.5 127.0.0.1 1 2\r\n")
    assert got == b"" and 0.25 <= time.monotonic() - t0 < 2.0
    want = len(BAD) + 1
    st = poll_stats(gate, lambda s: s["listeners"][0]["rejected_by"]["proxy_header"] == want,
                    "every bad header counted")
    assert st["listeners"][0]["accepted"] == 0
    line = gate.wait_log(r"event=reject .*reason=proxy_header")
    assert line["via"].startswith("127.0.0.1:")
    # And a good header still gets through.
    got, _ = sent_and_answer(port, b"PROXY TCP4 127.0.0.5 127.0.0.1 4000 80\r\nok\n")
    assert got == b"ok\n"


def test_untrusted_sender_refused_and_versions_enforced(gate):
    gate.write(RAW % "v2", admin=True)
    gate.start()
    port = gate.port("raw")
    expect_rejected(port, "127.0.0.7")                       # not in trusted_proxies
    got, _ = sent_and_answer(port, b"PROXY TCP4 127.0.0.5 127.0.0.1 4000 80\r\nhello\n")
    assert got == b""                                        # v1 on a v2 listener
    got, _ = sent_and_answer(port, v2("127.0.0.5", "127.0.0.1") + b"ok\n")
    assert got == b"ok\n"
    st = poll_stats(gate, lambda s: s["listeners"][0]["rejected_by"]["proxy_header"] == 1,
                    "counted")
    assert st["listeners"][0]["rejected_by"]["untrusted_proxy"] == 1
    # LOCAL (a health check) is judged as the sender itself: trusted, allowed.
    got, _ = sent_and_answer(port, V2_SIG + b"\x20\x00\x00\x00" + b"ping\n")
    assert got == b"ping\n"


def test_untrusted_senders_refused_by_the_kernel(gate, kernel):  # noqa: F811
    """With the prefilter on, the kernel holds the proxy stage: a sender
    outside trusted_proxies is refused before the handshake, and bans (about
    clients, not load balancers) never refuse the sender there."""
    gate.write((RAW % "any").replace("backend = echo", "backend = echo\nprefilter = refuse"),
               admin=True, prefilter=None)
    gate.start()
    port = gate.port("raw")
    assert outcome(port, "127.0.0.7") == "refused"
    gate.json("/bans", method="POST", expect=201,
              body='{"cidr": "127.0.0.5/32", "ttl_s": 600}')
    # The trusted sender 127.0.0.1 still gets in; the client its header names
    # is judged in user space, where the ban refuses it.
    got, _ = sent_and_answer(port, b"PROXY TCP4 127.0.0.6 127.0.0.1 4000 80\r\nok\n")
    assert got == b"ok\n"
    got, how = sent_and_answer(port, b"PROXY TCP4 127.0.0.5 127.0.0.1 4000 80\r\nok\n")
    assert got == b"" and how == "reset"
    st = poll_stats(gate, lambda s: s["listeners"][0]["rejected_by"]["ban"] == 1, "counted")
    lst = st["listeners"][0]
    assert lst["prefilter"] == {"mode": "refuse", "refused": 1}
    assert lst["rejected_by"]["untrusted_proxy"] == 1


PLAIN = RAW.replace("accept_proxy = %s\n", "").replace("trusted_proxies = 127.0.0.1\n", "")


def test_reload_cannot_give_accept_proxy_to_a_listener_the_workers_accept(gate):
    """On Linux the workers accept a listener started without accept_proxy,
    and its headers would never be read: such a reload is refused at the
    listener's line, and the listener keeps serving as before. The other
    way round (off on a reload) is fine."""
    gate.write(PLAIN, admin=True)
    gate.start()
    port = gate.port("raw")
    gate.write(RAW % "v1", admin=True)
    hit = gate.reload("failed")
    assert re.search(r"condgate\.ini:\d+: listener 'raw': accept_proxy on a listener started "
                     r"without it needs a restart", hit["error"]), hit.line
    got, how = sent_and_answer(port, b"hello\n")
    assert got == b"hello\n"  # still plain: no header expected


def test_reload_may_turn_accept_proxy_off(gate):
    gate.write(RAW % "v1", admin=True)
    gate.start()
    port = gate.port("raw")
    gate.write(PLAIN, admin=True)
    gate.reload("ok")
    got, how = sent_and_answer(port, b"hello\n")
    assert got == b"hello\n"
