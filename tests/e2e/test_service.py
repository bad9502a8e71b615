"""condgate as a service (issue 17): systemd's notify protocol heard by a
NOTIFY_SOCKET listener of our own, socket activation with
systemd-socket-activate (Debian's systemd package; it runs without systemd
as PID 1), privileged ports without privileges, and the takeover restart:
a new condgate (-x) takes the listening sockets from the running one, which
drains, while callers keep coming.
"""

import os
import random
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

import pytest

from test_prefilter import kernel_state
from cgtest import (connect, echo_check, event_re, expect_rejected, free_port, is_served,
                    sanitizer_of, wait_for)

ECHO = """
    [gateway]
    workers = 2
    drain_timeout_ms = 3000
    %s

    [rules]
    default = deny
    allow = 127.0.1.0/24, 127.0.0.1, 127.0.0.2
    deny = 127.0.2.0/24

    [listener:web]
    bind = 127.0.0.1:$web
    backend = echo
    """


def require(ok, why):
    """Skip without the tool or feature, or fail when CI requires them."""
    if ok:
        return
    if os.environ.get("CG_REQUIRE_PEERS") == "1":
        pytest.fail("CG_REQUIRE_PEERS=1 but " + why, pytrace=False)
    pytest.skip(why)


def features(gate):
    _, out, _ = gate.run(["-V"])
    m = re.search(r"^features: (.*)$", out, re.M)
    return m.group(1).split() if m else []


# ---------------------------------------------------------------------------
# The notify protocol


class Notify:
    """A NOTIFY_SOCKET: a datagram socket that keeps every message, each as
    a dict of its KEY=VALUE lines, with the time it came."""

    def __init__(self, path):
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.2)
        self.msgs = []
        self._cond = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop:
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
            with self._cond:
                self.msgs.append((time.monotonic(), fields))
                self._cond.notify_all()

    def mark(self):
        with self._cond:
            return len(self.msgs)

    def wait(self, key, since=0, timeout=10.0):
        """The first message from index `since` on that has `key`: (index,
        fields)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for i in range(since, len(self.msgs)):
                    if key in self.msgs[i][1]:
                        return i, self.msgs[i][1]
                left = deadline - time.monotonic()
                if left <= 0:
                    pytest.fail("no %s message; got %r" % (key, [m for _, m in self.msgs]),
                                pytrace=False)
                self._cond.wait(left)

    def close(self):
        self._stop = True
        self._thread.join(2)
        self.sock.close()


@pytest.fixture
def notify(gate, tmp_path):
    require("systemd" in features(gate), "condgate was built without libsystemd")
    n = Notify(tmp_path / "notify.sock")
    yield n
    n.close()


def served_now(port):
    """A caller allowed by ECHO is relayed this very moment."""
    s = connect(port, "127.0.1.1", timeout=3)
    try:
        echo_check(s)
    finally:
        s.close()
    return True


def test_ready_status_and_watchdog(gate, notify):
    gate.write(ECHO % "")
    gate.start(env={"NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "300000"})
    i, ready = notify.wait("READY")
    assert ready["READY"] == "1"
    assert served_now(gate.port("web"))
    assert re.match(r"serving: 0 active, \d+ accepted, 0 refused, generation 1$",
                    ready["STATUS"]), ready
    expect_rejected(gate.port("web"), "127.0.2.7")
    # The tick: WATCHDOG=1 every 150 ms (half of WatchdogSec), with the
    # counters as they are when it is sent: the second tick after both
    # callers came counts both.
    j, _ = notify.wait("WATCHDOG", since=notify.mark())
    k, tick = notify.wait("WATCHDOG", since=j + 1)
    gap = notify.msgs[k][0] - notify.msgs[j][0]
    assert 0.05 < gap < 1.0, gap
    assert re.match(r"serving: 0 active, 1 accepted, 1 refused, generation 1$",
                    tick["STATUS"]), tick
    m = notify.mark()
    gate.signal(signal.SIGTERM)
    _, stopping = notify.wait("STOPPING", since=m)
    assert stopping["STATUS"].startswith("draining: ")
    assert gate.wait_exit() == 0


def test_no_watchdog_unless_asked(gate, notify):
    gate.write(ECHO % "")
    gate.start(env={"NOTIFY_SOCKET": notify.path})
    i, _ = notify.wait("READY")
    m = notify.mark()
    gate.stop()
    assert not any("WATCHDOG" in f for _, f in notify.msgs), notify.msgs
    assert m >= 1


def test_reload_says_reloading_then_ready(gate, notify):
    gate.write(ECHO % "", admin=True)
    gate.start(env={"NOTIFY_SOCKET": notify.path})
    i, _ = notify.wait("READY")
    before = time.clock_gettime(time.CLOCK_MONOTONIC) * 1e6
    gate.reload()
    after = time.clock_gettime(time.CLOCK_MONOTONIC) * 1e6
    j, reloading = notify.wait("RELOADING", since=i + 1)
    assert reloading["RELOADING"] == "1"
    assert before <= int(reloading["MONOTONIC_USEC"]) <= after, (before, reloading, after)
    _, done = notify.wait("READY", since=j + 1)
    assert done["STATUS"].startswith("serving (reloaded): "), done
    assert done["STATUS"].endswith("generation 2"), done
    # A reload that fails still ends the RELOADING state, and says so.
    gate.files["bad.json"] = '{"allow": ["10.1.2.3/8"]}'
    gate.write(ECHO % "" + "include = bad.json\n", admin=True)
    m = notify.mark()
    gate.reload(expect="failed")
    j, _ = notify.wait("RELOADING", since=m)
    _, done = notify.wait("READY", since=j + 1)
    assert done["STATUS"].startswith("serving (the last reload failed): "), done
    gate.stop()


# ---------------------------------------------------------------------------
# Socket activation


@pytest.fixture
def activate():
    tool = shutil.which("systemd-socket-activate")
    require(tool is not None, "systemd-socket-activate (package systemd) is not installed")
    return tool


def activation(tool, socks, env=()):
    """The command prefix that listens on socks [(name, addr)] and runs
    condgate with them (and the environment variables env, NAME=VALUE: the
    tool passes no others) once the first caller comes."""
    cmd = [tool]
    for _, addr in socks:
        cmd += ["-l", addr]
    for e in env:
        cmd += ["-E", e]
    return cmd + ["--fdname=" + ":".join(name for name, _ in socks)]


def first_caller(port, result):
    """systemd-socket-activate starts the command on the first connection:
    this caller waits in the kernel's queue until condgate serves it."""
    try:
        s = connect(port, "127.0.1.9", timeout=15)
        echo_check(s, b"queued before condgate ran\n", timeout=15)
        s.close()
        result.append("served")
    except Exception as e:  # reported by the test
        result.append(repr(e))


def spawn_activated(gate, prefix):
    """Run the prefix (and condgate); return once every socket listens."""
    gate._spawn((), prefix, None)
    gate.wait_count(r"^Listening on .* as \d+\.$", prefix.count("-l"))


def start_activated(gate, prefix, port):
    result = []
    spawn_activated(gate, prefix)
    t = threading.Thread(target=first_caller, args=(port, result), daemon=True)
    t.start()
    gate.wait_log(event_re("start"), timeout=20)
    t.join(20)
    gate.listeners = gate.listener_names(gate.ini_text)
    return result


def test_socket_activation_by_name(gate, notify, activate):
    gate.write(ECHO % "" + "\n[listener:other]\nbind = 127.0.0.1:$other\nbackend = echo\n",
               admin=True)
    web, admin = gate.port("web"), gate.port("admin")
    prefix = activation(activate, [("web", "127.0.0.1:%d" % web),
                                   ("admin", "127.0.0.1:%d" % admin)],
                        ["NOTIFY_SOCKET=" + notify.path])
    result = start_activated(gate, prefix, web)
    assert result == ["served"], result
    inherited = {e["listener"]: e["from"] for e in gate.events("listen_inherited")}
    assert inherited == {"web": "systemd", "admin": "systemd"}, inherited
    expect_rejected(web, "127.0.2.1")
    assert is_served(gate.port("other"), "127.0.1.2")  # bound by condgate itself
    assert gate.http("GET", "/healthz")[0] == 200
    notify.wait("READY")
    gate.stop()
    # The sockets were systemd's: condgate's stop left them listening.
    assert not gate.grep(r"socket_unused")


def test_socket_activation_by_address(gate, activate):
    """Without FileDescriptorName= systemd names every socket after its
    unit: the address decides."""
    gate.write(ECHO % "")
    web = gate.port("web")
    prefix = activation(activate, [("condgate.socket", "127.0.0.1:%d" % web)])
    assert start_activated(gate, prefix, web) == ["served"]
    assert [e["listener"] for e in gate.events("listen_inherited")] == ["web"]
    gate.stop()


def test_socket_for_another_address_is_an_error(gate, activate):
    gate.write(ECHO % "")
    other = free_port()
    prefix = activation(activate, [("web", "127.0.0.1:%d" % other)])
    spawn_activated(gate, prefix)
    try:
        connect(other, "127.0.1.1", timeout=5).close()  # starts condgate
    except OSError:
        pass
    assert gate.wait_exit(15) == 1
    assert gate.grep(r"listener 'web': the socket systemd passed as 'web' is not a TCP socket "
                     r"listening on 127\.0\.0\.1:%d" % gate.port("web"))


def privileged_port():
    """A free port below 1024."""
    for _ in range(200):
        p = random.randint(600, 1000)
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", p))
            return p
        except OSError:
            continue
        finally:
            s.close()
    pytest.skip("no free port below 1024")


NO_CAPS = ["setpriv", "--inh-caps=-all", "--bounding-set=-all", "--"]


def test_privileged_port_without_privileges(gate, activate):
    require(shutil.which("setpriv") is not None, "setpriv (util-linux) is not installed")
    if sanitizer_of(os.environ.get("CONDGATE_BIN", "")) == "thread":
        pytest.skip("TSan's runtime re-executes itself, which setpriv's bounding set breaks")
    port = privileged_port()
    gate.ports["web"] = port
    gate.write(ECHO % "")
    # Without capabilities condgate cannot bind the port itself ...
    gate._spawn((), NO_CAPS, None)
    assert gate.wait_exit(15) == 1
    assert gate.grep(r"cannot listen on 127\.0\.0\.1:%d: Permission denied" % port)
    # ... but serves it when a socket unit (here systemd-socket-activate) binds it.
    prefix = activation(activate, [("web", "127.0.0.1:%d" % port)]) + NO_CAPS
    assert start_activated(gate, prefix, port) == ["served"]
    expect_rejected(port, "127.0.2.2")
    gate.stop()


# ---------------------------------------------------------------------------
# Takeover


def takeover_pair(make_gate, prefilter="off", sock_dir=None):
    """Two gates on one configuration (same ports) with a takeover socket
    (in sock_dir, else the old gate's directory); the first is started."""
    old, new = make_gate("old"), make_gate("new")
    sock = os.path.join(sock_dir or str(old.dir), "takeover.sock")
    ini = ECHO % ("takeover_socket = %s" % sock)
    old.write(ini, admin=True, prefilter=prefilter)
    new.ports = old.ports
    new.write(ini, admin=True, prefilter=prefilter)
    old.start()
    return old, new, sock


def test_takeover_hands_over_and_old_drains(make_gate):
    old, new, sock = takeover_pair(make_gate)
    web = old.port("web")
    held = connect(web, "127.0.1.3")
    echo_check(held)  # open across the takeover, relayed by the old process
    new.start(args=["-x", sock])
    inherited = {e["listener"]: e["from"] for e in new.events("listen_inherited")}
    assert inherited == {"web": "takeover", "admin": "takeover"}, inherited
    old.wait_log(event_re("takeover") + r".*result=handed_over")
    old.wait_log(event_re("draining") + r".*signal=takeover")
    for src in ("127.0.1.4", "127.0.1.5"):
        assert is_served(web, src)
    expect_rejected(web, "127.0.2.3")
    echo_check(held, b"still relayed while the old one drains\n")
    assert new.http("GET", "/healthz")[0] == 200
    held.close()
    assert old.wait_exit(15) == 0
    assert is_served(web, "127.0.1.6")
    # The new process owns the takeover socket now: a third can take over.
    assert os.path.exists(sock)
    new.stop()
    assert not os.path.exists(sock)


def test_takeover_can_change_binds(make_gate):
    """A change a reload cannot make: the new process binds the new port
    itself and the old socket, not taken, goes with the old process."""
    old, new, sock = takeover_pair(make_gate)
    old_port = old.port("web")
    new.ports = dict(old.ports)
    new.ports["web"] = free_port()
    new._render()
    new.start(args=["-x", sock])
    assert [e["listener"] for e in new.events("listen_inherited")] == ["admin"]
    assert new.grep(r"event=socket_unused name=web from=takeover")
    assert old.wait_exit(15) == 0
    assert is_served(new.port("web"), "127.0.1.1")
    with pytest.raises(OSError):
        connect(old_port, "127.0.1.1", timeout=3).close()
    new.stop()


def test_takeover_that_fails_leaves_the_old_serving(make_gate):
    old, new, sock = takeover_pair(make_gate)
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen(1)
    new.ports = dict(old.ports)
    new.ports["web2"] = blocker.getsockname()[1]
    new.template += "\n[listener:web2]\nbind = 127.0.0.1:$web2\nbackend = echo\n"
    new._render()
    new._spawn(["-x", sock], (), None)
    assert new.wait_exit(15) == 1
    old.wait_log(event_re("takeover") + r".*result=\"aborted")
    assert old.alive()
    assert is_served(old.port("web"), "127.0.1.1")
    assert old.http("GET", "/healthz")[0] == 200
    blocker.close()
    old.stop()


def test_second_gate_on_a_live_takeover_socket_is_refused(make_gate):
    old, new, sock = takeover_pair(make_gate)
    new.ports = dict(old.ports)
    new.ports["web"], new.ports["admin"] = free_port(), free_port()
    new._render()
    new._spawn((), (), None)
    assert new.wait_exit(15) == 1
    assert new.grep(r"takeover_socket .*: a running condgate answers there; "
                    r"start this one with -x")
    assert is_served(old.port("web"), "127.0.1.1")
    old.stop()


# Ask for the sockets; print how many bytes came back (a reset is none).
ASK_AS_NOBODY = """
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
try:
    s.sendall(b"condgate-takeover 1\\n")
    print(len(s.recv(100)))
except OSError:
    print(0)
"""


def test_takeover_by_another_user_is_refused(make_gate):
    require(shutil.which("setpriv") is not None, "setpriv (util-linux) is not installed")
    # A directory and socket file anybody may reach: the peer check decides.
    sock_dir = tempfile.mkdtemp(prefix="condgate-takeover-")
    os.chmod(sock_dir, 0o755)
    old, _, sock = takeover_pair(make_gate, sock_dir=sock_dir)
    os.chmod(sock, 0o666)
    probe = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--", "/usr/bin/python3",
         "-c", ASK_AS_NOBODY, sock],
        capture_output=True, text=True, timeout=20)
    assert probe.stdout.strip() == "0", probe  # closed without a word
    old.wait_log(event_re("takeover") + r".*another user")
    assert is_served(old.port("web"), "127.0.1.1")
    old.stop()
    shutil.rmtree(sock_dir, ignore_errors=True)


@pytest.mark.parametrize("prefilter", ["off", "refuse"])
def test_takeover_under_load_loses_nothing(make_gate, cgload, prefilter):
    """Callers keep coming (over 2,000 a second, allowed and denied) while
    a new condgate takes over: no allowed caller fails, no denied one gets
    in, and the two processes' counters add up to what the clients saw.
    With the kernel prefilter both processes' programs judge for a moment,
    then the old one's goes."""
    if prefilter != "off":
        mode, why = kernel_state(make_gate("probe"))
        require(mode == "refuse", "the kernel prefilter is not available here: " + why)
    old, new, sock = takeover_pair(make_gate, prefilter)
    target = "127.0.0.1:%d" % old.port("web")
    allowed = cgload("conn", target, "-c", 4, "-d", 6, "--timeout", 10000,
                     "--src", "127.0.1.1-127.0.1.16")
    denied = cgload("reject", target, "-c", 1, "-d", 6, "--timeout", 10000,
                    "--src", "127.0.2.1-127.0.2.4")
    wait_for(lambda: old.stats()["accepted"] >= 2000, 10, "2,000 callers served by the old")
    new.start(args=["-x", sock])
    old_stop = old.wait_log(event_re("stop"), timeout=15)
    assert old.wait_exit(15) == 0
    a, d = allowed.result(30), denied.result(30)
    assert a["errors"]["total"] == 0, a["errors"]
    assert a["completed"] / a["elapsed_s"] >= 2000, a
    assert d["errors"]["total"] == 0 and d["rejected"]["total"] == d["completed"] > 0, d
    after = new.stats()
    # Exchanges cut by the end of the run (aborted) were accepted too.
    assert (int(old_stop.fields["accepted"]) + after["accepted"] ==
            a["completed"] + a["aborted"]), (old_stop.fields, after, a)
    assert after["accepted"] > 0
    if prefilter == "off":  # judged after accept, so counted by the processes
        assert (int(old_stop.fields["rejected"]) + after["rejected"] ==
                d["completed"] + d["aborted"]), (old_stop.fields, after, d)
    new.stop()


def test_old_prefilter_lets_go_at_takeover(make_gate):
    """The old process's kernel program stops judging when it hands over,
    though the process drains on: the new rules alone decide."""
    mode, why = kernel_state(make_gate("probe"))
    require(mode == "refuse", "the kernel prefilter is not available here: " + why)
    old, new, sock = takeover_pair(make_gate, "refuse")
    new.template = new.template.replace("deny = 127.0.2.0/24", "allow = 127.0.2.0/24")
    new._render()
    web = old.port("web")
    held = connect(web, "127.0.1.3")
    echo_check(held)  # keeps the old process draining
    expect_rejected(web, "127.0.2.5")
    new.start(args=["-x", sock])
    old.wait_log(event_re("draining") + r".*signal=takeover")
    assert old.alive()
    assert is_served(web, "127.0.2.5")
    echo_check(held)
    held.close()
    assert old.wait_exit(15) == 0
    new.stop()
