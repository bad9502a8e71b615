"""The kernel prefilter (SPEC §10): refused callers stopped before the
handshake — `refuse` (ECONNREFUSED), `drop` (connect times out) — with the
verdicts of the user-space judge, counted in /stats, metrics and the log,
swapped by reloads (modes included), gone when the process dies, and the
unprivileged fallback of `auto`."""

import errno
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import threading
import time

import pytest

from cgtest import HAVE_IPV6, event_re, make_socket, sanitizer_of

DROP_WAIT = 0.5  # Linux resends a SYN after 1 s: a shorter wait is one SYN


def outcome(port, src, host=None, timeout=DROP_WAIT):
    """What a caller from src meets: 'refused' (ECONNREFUSED at connect),
    'timeout' (no answer to the SYN), 'reset' (connected, then reset or closed
    without a byte) or 'served' (echoed)."""
    fam = socket.AF_INET6 if ":" in src else socket.AF_INET
    host = host or ("::1" if fam == socket.AF_INET6 else "127.0.0.1")
    s = make_socket(src, fam, timeout)
    try:
        try:
            s.connect((host, port))
        except ConnectionRefusedError:
            return "refused"
        except socket.timeout:
            return "timeout"
        except ConnectionResetError:
            return "reset"  # accepted and reset before connect() returned
        s.settimeout(5.0)
        try:
            s.sendall(b"ping\n")
            got = s.recv(16)
        except OSError as e:
            if e.errno in (errno.ECONNRESET, errno.EPIPE):
                return "reset"
            raise
        return "served" if got == b"ping\n" else "reset"
    finally:
        s.close()


def kernel_state(gate):
    """What `condgate -t` says this machine and build give a listener asking
    for auto: 'refuse', or the reason it is off."""
    gate.write("""
        [rules]
        default = allow

        [listener:probe]
        bind = 127.0.0.1:$probe
        backend = echo
        """, prefilter="auto")
    _, out, _ = gate.run(["-t", "-c", gate.ini_path])
    m = re.search(r"^prefilter probe mode=(\S+)(.*)$", out, re.M)
    assert m, out
    return m.group(1), m.group(2).strip()


@pytest.fixture
def kernel(make_gate):
    mode, why = kernel_state(make_gate("probe"))
    if mode != "refuse":
        pytest.skip("the kernel prefilter is not available here: %s" % why)
    return mode


def our_programs():
    """Ids of the loaded BPF programs named cg_pf*."""
    if shutil.which("bpftool") is None:
        pytest.skip("bpftool is not installed")
    out = subprocess.run(["bpftool", "-j", "prog", "show"], capture_output=True, text=True,
                         check=True).stdout
    ids = set()
    for p in json.loads(out or "[]"):
        if p.get("name", "").startswith("cg_pf"):
            ids.add(p["id"])
    return ids


RULES = """
    [rules]
    default = deny
    allow = 127.0.0.0/8, ::1
    deny = 127.0.0.66

    [listener:web]
    bind = 127.0.0.1:$web
    backend = echo
    prefilter = %s
    """


def test_refuse(gate, kernel):
    gate.write(RULES % "refuse", admin=True)
    gate.start()
    port = gate.port("web")
    assert gate.wait_log(event_re("listen"))["prefilter"] == "refuse"
    for _ in range(3):
        assert outcome(port, "127.0.0.66") == "refused"
    assert outcome(port, "127.0.0.2") == "served"
    st = gate.json("/stats")
    web = st["listeners"][0]
    assert web["prefilter"] == {"mode": "refuse", "refused": 3}
    assert web["accepted"] == 1  # the kernel's refusals never reached accept
    assert web["rejected"] == 3 and web["rejected_by"]["rule"] == 3
    assert st["connections"]["rejected"] == 3
    _, _, body = gate.http("GET", "/metrics")
    assert re.search(r'^condgate_prefilter_refused_total\{listener="web"\} 3$', body.decode(),
                     re.M)
    assert re.search(r'^condgate_connections_rejected_total\{listener="web",reason="rule"\} 3$',
                     body.decode(), re.M)
    ex = gate.json("/rules/explain?addr=127.0.0.66")
    assert ex["verdict"] == "deny" and ex["stage"] == "rule" and ex["prefilter"] is True
    ex = gate.json("/rules/explain?addr=127.0.0.2")
    assert ex["verdict"] == "allow" and ex["prefilter"] is False
    # one summary line a second instead of a line per caller
    deadline = time.monotonic() + 5
    while sum(int(h["count"]) for h in gate.events("prefilter_refused")) < 3:
        assert time.monotonic() < deadline, gate.log_tail()
        time.sleep(0.05)
    assert all(h["listener"] == "web" for h in gate.events("prefilter_refused"))
    assert gate.events("reject") == []


def test_drop(gate, kernel):
    gate.write(RULES % "drop", admin=True)
    gate.start()
    port = gate.port("web")
    assert outcome(port, "127.0.0.66") == "timeout"
    assert outcome(port, "127.0.0.66") == "timeout"
    # accepted sockets inherit the listener's filter: it must pass their data
    s = socket.create_connection(("127.0.0.1", port), timeout=5,
                                 source_address=("127.0.0.2", 0))
    payload = os.urandom(200000)
    s.sendall(payload)
    got = b""
    while len(got) < len(payload):
        chunk = s.recv(65536)
        assert chunk, "the echo ended early"
        got += chunk
    assert got == payload
    s.close()
    web = gate.json("/stats")["listeners"][0]
    assert web["prefilter"]["mode"] == "drop"
    assert web["prefilter"]["refused"] >= 2  # one per SYN the kernel dropped
    assert web["accepted"] == 1
    assert gate.events("reject") == []


def test_off_still_judges_after_accept(gate, kernel):
    gate.write(RULES % "off", admin=True)
    gate.start()
    assert outcome(gate.port("web"), "127.0.0.66") == "reset"
    web = gate.json("/stats")["listeners"][0]
    assert web["prefilter"] == {"mode": "off", "refused": 0}
    assert web["rejected_by"]["rule"] == 1
    assert gate.json("/rules/explain?addr=127.0.0.66")["prefilter"] is False


@pytest.mark.skipif(not HAVE_IPV6, reason="no IPv6 loopback")
def test_ipv6_and_dual_stack(gate, kernel):
    gate.write("""
        [rules]
        default = allow
        deny = 127.0.0.66

        [rules:v6]
        default = allow
        deny = ::1

        [listener:dual]
        bind = [::]:$dual
        backend = echo
        prefilter = refuse

        [listener:six]
        bind = [::1]:$six
        backend = echo
        rules = v6
        prefilter = refuse
        """)
    gate.start()
    assert outcome(gate.port("dual"), "127.0.0.66") == "refused"  # IPv4 on a [::] listener
    assert outcome(gate.port("dual"), "127.0.0.2") == "served"
    assert outcome(gate.port("dual"), "::1") == "served"
    assert outcome(gate.port("six"), "::1") == "refused"


def test_listeners_keep_their_own_sets_and_others_are_untouched(gate, kernel):
    gate.write("""
        [rules:a]
        default = allow
        deny = 127.0.0.66

        [rules:b]
        default = allow
        deny = 127.0.0.67

        [listener:a]
        bind = 127.0.0.1:$a
        backend = echo
        rules = a
        prefilter = refuse

        [listener:b]
        bind = 127.0.0.1:$b
        backend = echo
        rules = b
        prefilter = refuse
        """)
    other = socket.socket()
    other.bind(("127.0.0.1", 0))
    other.listen(8)
    gate.start()
    a, b = gate.port("a"), gate.port("b")
    assert outcome(a, "127.0.0.66") == "refused"
    assert outcome(b, "127.0.0.66") == "served"
    assert outcome(b, "127.0.0.67") == "refused"
    assert outcome(a, "127.0.0.67") == "served"
    # another service on the machine: a denied address still reaches it
    c = socket.create_connection(other.getsockname(), timeout=5,
                                 source_address=("127.0.0.66", 0))
    c.close()
    other.close()


def test_reload_changes_the_mode(gate, kernel):
    expected = {"refuse": "refused", "off": "reset", "drop": "timeout"}
    for i, mode in enumerate(("refuse", "off", "drop", "refuse")):
        gate.write(RULES % mode)
        if i == 0:
            gate.start()
        else:
            gate.reload()
        assert outcome(gate.port("web"), "127.0.0.66") == expected[mode], mode
        assert outcome(gate.port("web"), "127.0.0.2") == "served", mode


def test_reload_cannot_turn_it_on_when_nothing_was_loaded(gate, kernel):
    gate.write(RULES % "off", admin=True)
    gate.start()
    gate.write(RULES % "refuse", admin=True)
    status, _, body = gate.http("POST", "/reload")
    assert status == 422, body
    assert b"turning it on needs a restart" in body
    assert outcome(gate.port("web"), "127.0.0.66") == "reset"


def random_rules(rng, n):
    lines = []
    for _ in range(n):
        plen = rng.randint(8, 32)
        addr = (127 << 24) | rng.getrandbits(24)
        addr &= (0xFFFFFFFF << (32 - plen)) & 0xFFFFFFFF
        text = socket.inet_ntoa(addr.to_bytes(4, "big"))
        lines.append("%s %s/%d" % (rng.choice(("allow", "deny")), text, plen))
    return lines


def test_differential_kernel_equals_explain(gate, kernel):
    """3,000 random allow/deny prefixes in 127.0.0.0/8, 2,000 random callers:
    the kernel refuses exactly the callers explain denies."""
    seed = int(os.environ.get("CG_TEST_SEED", "20261202"))
    rng = random.Random(seed)
    rules = random_rules(rng, 3000)
    allow = "\n".join(r.split()[1] for r in rules if r.startswith("allow"))
    deny = "\n".join(r.split()[1] for r in rules if r.startswith("deny"))
    gate.write("""
        [rules]
        default = %s
        allow_file = allow.txt
        deny_file = deny.txt

        [listener:web]
        bind = 127.0.0.1:$web
        backend = echo
        prefilter = refuse
        """ % rng.choice(("allow", "deny")),
        files={"allow.txt": allow + "\n", "deny.txt": deny + "\n"}, admin=True)
    gate.start()
    port = gate.port("web")
    wrong = []
    for _ in range(2000):
        src = "127.%d.%d.%d" % (rng.randrange(256), rng.randrange(256), rng.randrange(1, 255))
        ex = gate.json("/rules/explain?addr=" + src)
        s = make_socket(src, socket.AF_INET, 2.0)
        try:
            s.connect(("127.0.0.1", port))
            kernel_refused = False
        except ConnectionRefusedError:
            kernel_refused = True
        finally:
            s.close()
        if kernel_refused != (ex["verdict"] == "deny") or ex["prefilter"] != kernel_refused:
            wrong.append((src, ex["verdict"], ex["prefilter"], kernel_refused))
    assert not wrong, "seed %d: %d callers judged differently, e.g. %r" % (
        seed, len(wrong), wrong[:5])


def test_sigkill_leaves_nothing(gate, kernel):
    gate.write(RULES % "refuse")
    before = our_programs()
    gate.start()
    mine = our_programs() - before  # (bpftool here cannot name their process)
    assert len(mine) == 2, mine  # cg_pf_lookup and cg_pf_filter
    port = gate.port("web")
    assert outcome(port, "127.0.0.66") == "refused"
    gate.signal(signal.SIGKILL)
    gate.wait_exit()
    deadline = time.monotonic() + 5
    while mine & our_programs():
        assert time.monotonic() < deadline, "programs left behind: %r" % (mine & our_programs())
        time.sleep(0.05)
    # nothing judges that port any more: a plain socket takes the caller
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", port))
    srv.listen(4)
    c = socket.create_connection(("127.0.0.1", port), timeout=5,
                                 source_address=("127.0.0.66", 0))
    c.close()
    srv.close()


SETPRIV = ["setpriv", "--inh-caps=-all", "--bounding-set=-bpf,-net_admin,-sys_admin,-perfmon",
           "--"]


@pytest.fixture
def unprivileged(kernel):
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is not installed")
    if sanitizer_of(os.environ.get("CONDGATE_BIN", "")) == "thread":
        pytest.skip("TSan's runtime re-executes itself, which setpriv's bounding set breaks")
    return SETPRIV


def test_unprivileged_falls_back_to_off(gate, unprivileged):
    gate.write(RULES % "auto")
    _, out, _ = gate.run(["-t", "-c", gate.ini_path], prefix=unprivileged)
    assert re.search(r"^prefilter web mode=off \(auto: .*CAP_BPF", out, re.M), out
    gate.start(prefix=unprivileged)
    warnings = gate.events("prefilter_off")
    assert len(warnings) == 1 and "judged after accept" in warnings[0]["message"]
    assert outcome(gate.port("web"), "127.0.0.66") == "reset"  # judged after accept
    assert outcome(gate.port("web"), "127.0.0.2") == "served"
    gate.stop()
    # asked for by name where it cannot be had: no start
    gate.write(RULES % "refuse")
    gate._spawn((), unprivileged, None)
    assert gate.wait_exit() == 1
    assert gate.grep(r"prefilter = refuse: .*CAP_BPF")


def test_reloads_under_load(gate, kernel):
    """100 reloads alternating two sets while callers keep coming: an
    always-allowed caller is never refused, an always-denied one is always
    refused by the kernel, and a caller whose verdict flips is served or
    refused — by the kernel, or at accept when the kernel let its SYN through
    under the old set and the new one was in force by the time it was
    accepted (a reset, no byte)."""
    ini = """
        [gateway]
        workers = 2

        [rules]
        default = deny
        allow = 127.0.0.0/8
        deny = 127.0.0.66, %s

        [listener:web]
        bind = 127.0.0.1:$web
        backend = echo
        prefilter = refuse
        """
    flip = {"a": "127.0.1.0/24", "b": "127.0.2.0/24"}
    gate.write(ini % flip["a"], admin=True)
    gate.start()
    port = gate.port("web")
    tally = {"allowed": {}, "denied": {}, "flip": {}}
    stop = []

    def caller():
        k = 0
        while not stop:
            k += 1
            for kind, src in (("allowed", "127.0.3.%d" % (1 + k % 250)),
                              ("denied", "127.0.0.66"),
                              ("flip", "127.0.%d.%d" % (1 + k % 2, 1 + k % 250))):
                o = outcome(port, src, timeout=2.0)
                tally[kind][o] = tally[kind].get(o, 0) + 1

    threads = [threading.Thread(target=caller) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        generation = 1
        for i in range(100):
            gate.write(ini % flip["b" if i % 2 == 0 else "a"], admin=True)
            answer = gate.json("/reload", method="POST")
            generation += 1
            assert answer == {"ok": True, "generation": generation}
    finally:
        stop.append(True)
        for t in threads:
            t.join()
    assert set(tally["allowed"]) == {"served"}, tally
    assert set(tally["denied"]) == {"refused"}, tally
    assert set(tally["flip"]) <= {"served", "refused", "reset"}, tally
    assert sum(tally["allowed"].values()) > 50, tally
