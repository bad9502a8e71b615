#!/usr/bin/env python3
"""e2e_wine.py — condgate.exe end to end under Wine (the windows preset).

Starts the cross-built binary under the emulator with a configuration
written here, and checks, over loopback only:
  * callers from allowed 127.0.0.x sources are relayed (built-in echo, and
    a real backend served by this script);
  * a denied caller gets a reset and not one byte;
  * /healthz, /stats counters (accepted, rejected by rule, bytes);
  * a dual-stack [::] listener judges IPv4 callers by their IPv4 address;
  * POST /reload: a good reload bumps the generation and takes effect, a
    bad one is refused with 422 and changes nothing;
  * stop: Ctrl+C (SIGINT to the Wine process) drains and exits 0;
  * same rules, same verdicts: condgate.exe and the Linux condgate
    (build/default/condgate, built with the default preset if missing) load
    the same INI [rules] text, JSON file and list file, and admit or reject
    the same 127.0.0.x callers (rule and default verdicts, longest prefix
    across the three files), and /rules/explain answers alike on both.

  e2e_wine.py --condgate build/windows/condgate.exe --workdir DIR
              [--source-dir DIR] [--linux-condgate PATH] -- EMULATOR...
Exit status 0 when every check passed; the failing check and condgate's
log otherwise.
"""
import argparse
import errno
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

START_TIMEOUT = 90  # Wine writes its prefix on the first start: slow
IO_TIMEOUT = 10


def free_port(dual=False):
    """A port nothing uses. For a dual-stack listener the port is picked by a
    dual-stack wildcard bind: a port picked on 127.0.0.1 may still be the
    local end of a loopback connection (or its TIME_WAIT), which a wildcard
    bind without SO_REUSEADDR (Windows semantics, under Wine too) refuses."""
    if dual:
        with socket.socket(socket.AF_INET6) as s:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            s.bind(("::", 0))
            return s.getsockname()[1]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Backend(threading.Thread):
    """A tiny TCP backend: answers each read with b"backend:" + data."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(16)

    def run(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(c,), daemon=True).start()

    @staticmethod
    def serve(c):
        with c:
            while True:
                data = c.recv(4096)
                if not data:
                    return
                c.sendall(b"backend:" + data)


def connect_from(src, port):
    s = socket.socket()
    s.settimeout(IO_TIMEOUT)
    s.bind((src, 0))
    s.connect(("127.0.0.1", port))
    return s


def exchange(src, port, payload):
    """Send payload from source address src, return what comes back."""
    with connect_from(src, port) as s:
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        out = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                return out
            out += chunk


def expect_reset(src, port):
    """A denied caller: the connection is refused or reset, no byte arrives.
    Returns how it ended."""
    try:
        s = connect_from(src, port)
    except ConnectionRefusedError:
        return "refused"  # conditional accept: no handshake at all
    except ConnectionResetError:
        return "reset"
    with s:
        try:
            s.sendall(b"let me in")
            data = s.recv(4096)
        except ConnectionResetError:
            return "reset"
        except BrokenPipeError:
            return "reset"
        if data:
            raise AssertionError(f"denied caller {src} received {data!r}")
        raise AssertionError(f"denied caller {src} got an orderly close, not a reset")


def http(port, path, method="GET", timeout=IO_TIMEOUT):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method,
                                 data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def write_config(path, ports, extra_deny=""):
    with open(path, "w", newline="\n") as f:
        f.write(f"""[gateway]
workers = 2
drain_timeout_ms = 2000
log_level = debug

[admin]
listen = 127.0.0.1:{ports['admin']}

[rules]
default = deny
allow = 127.0.0.0/8
deny = 127.0.0.66{extra_deny}

[listener:echo]
bind = 127.0.0.1:{ports['echo']}
backend = echo
rules = default

[listener:web]
bind = 127.0.0.1:{ports['web']}
backend = 127.0.0.1:{ports['backend']}
rules = default

[listener:dual]
bind = [::]:{ports['dual']}
backend = echo
rules = default

[listener:proxied]
bind = 127.0.0.1:{ports['proxied']}
backend = 127.0.0.1:{ports['backend']}
accept_proxy = any
trusted_proxies = 127.0.0.1
send_proxy = v1
""")


# ---------------------------------------------------------------------------
# Same rule files, same verdicts: Linux condgate against condgate.exe.

# The [rules] text both binaries load, byte for byte; the JSON and list
# files sit beside the two INI files' directories and are shared.
CMP_RULES = """[rules]
default = deny
allow = 127.0.0.0/24
deny = 127.0.0.64/26
allow = 127.0.0.80/28
include = ../cmp.json
deny_file = ../cmp.list

[rules:open]
default = allow
deny = 127.0.0.0/25
allow = 127.0.0.32/27, ::1
"""

CMP_JSON = """{
  "allow": ["127.0.0.100"],
  "deny": ["2001:db8::/32"],
  "rules": [
    {"action": "deny", "cidr": "127.0.0.90", "label": "inside-the-/28"},
    {"action": "allow", "cidr": "127.0.0.204/30", "label": "hole-in-list"}
  ]
}
"""

CMP_LIST = """# deny list for the comparison
127.0.0.9
127.0.0.200/29   ; 200-207, but 204-207 are allowed by the JSON /30
"""

# (listener, source, expected verdict): rule and default verdicts in both
# sets, and the longest prefix winning across the INI, JSON and list files.
CMP_CASES = [
    ("strict", "127.0.0.5", "allow"),    # INI allow /24
    ("strict", "127.0.0.9", "deny"),     # list /32 inside the /24
    ("strict", "127.0.0.70", "deny"),    # INI deny /26
    ("strict", "127.0.0.85", "allow"),   # INI allow /28 inside the /26
    ("strict", "127.0.0.90", "deny"),    # JSON /32 inside the /28
    ("strict", "127.0.0.100", "allow"),  # JSON /32 inside the /26
    ("strict", "127.0.0.201", "deny"),   # list /29
    ("strict", "127.0.0.205", "allow"),  # JSON /30 inside the list /29
    ("strict", "127.0.1.5", "deny"),     # nothing matches: default deny
    ("open", "127.0.0.5", "deny"),       # deny /25
    ("open", "127.0.0.40", "allow"),     # allow /27 inside the /25
    ("open", "127.0.0.200", "allow"),    # nothing matches: default allow
    ("open", "127.0.1.5", "allow"),      # default allow
]

# /rules/explain on both admin ports: every case above, a few addresses no
# caller used, IPv6 ones, and the two sets by name.
CMP_EXPLAIN = sorted({src for _, src, _ in CMP_CASES}) + [
    "127.0.0.64", "127.0.0.127", "127.0.0.128", "127.0.0.255", "127.0.0.207",
    "10.1.2.3", "::1", "2001:db8::1", "2001:db9::1", "::ffff:127.0.0.90"]


def cmp_write(workdir, name, ports):
    d = os.path.join(workdir, name)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "condgate.ini"), "w", newline="\n") as f:
        f.write(f"""[gateway]
workers = 2
drain_timeout_ms = 500

[admin]
listen = 127.0.0.1:{ports['admin']}

{CMP_RULES}
[listener:strict]
bind = 127.0.0.1:{ports['strict']}
backend = echo
rules = default
; both judge after accept, so that verdicts, hits and explain compare alike
; (Linux would refuse in the kernel, which Windows has no counterpart of)
prefilter = off

[listener:open]
bind = 127.0.0.1:{ports['open']}
backend = echo
rules = open
prefilter = off
""")
    return d


def probe(src, port):
    """allow: the echo came back; deny: refused or reset, not one byte."""
    try:
        with connect_from(src, port) as s:
            s.sendall(b"probe")
            s.shutdown(socket.SHUT_WR)
            out = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                out += chunk
    except (ConnectionResetError, ConnectionRefusedError, BrokenPipeError):
        return "deny"
    except OSError as e:
        # shutdown() of a socket the peer has already reset: ENOTCONN (an
        # orderly close would leave it half-open, and shutdown would work).
        if e.errno == errno.ENOTCONN:
            return "deny"
        raise
    if out == b"probe":
        return "allow"
    raise AssertionError(f"caller {src} on port {port}: got {out!r}, neither echo nor reset")


def wait_up(proc, port, what):
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"{what} exited early with {proc.returncode}")
        try:
            if http(port, "/healthz", timeout=2)[0] == 200:
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not come up")
        time.sleep(0.3)


def linux_condgate(args):
    """The Linux binary: --linux-condgate, else build/default/condgate of
    the source tree, configured with the default preset when missing and
    brought up to date (an incremental build of that one target), so that
    it is never compared stale."""
    if args.linux_condgate:
        return os.path.abspath(args.linux_condgate)
    src = os.path.abspath(args.source_dir)
    exe = os.path.join(src, "build", "default", "condgate")
    cmds = [["cmake", "--build", "--preset", "default", "--target", "condgate", "-j2"]]
    if not os.path.exists(os.path.join(src, "build", "default", "CMakeCache.txt")):
        print("configuring the Linux build (cmake --preset default)", flush=True)
        cmds.insert(0, ["cmake", "--preset", "default"])
    for cmd in cmds:
        r = subprocess.run(cmd, cwd=src, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if r.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} failed:\n{r.stdout.decode()[-3000:]}")
    return exe


def compare_with_linux(args, check):
    """Start both binaries on the same rule files and compare verdicts."""
    base = os.path.join(args.workdir, "cmp")
    os.makedirs(base, exist_ok=True)
    with open(os.path.join(base, "cmp.json"), "w", newline="\n") as f:
        f.write(CMP_JSON)
    with open(os.path.join(base, "cmp.list"), "w", newline="\n") as f:
        f.write(CMP_LIST)
    sides = {
        "linux": {"cmd": [linux_condgate(args)]},
        "windows": {"cmd": args.emulator + [args.condgate]},
    }
    procs = []
    try:
        for name, side in sides.items():
            side["ports"] = {k: free_port() for k in ("admin", "strict", "open")}
            d = cmp_write(base, name, side["ports"])
            side["log"] = open(os.path.join(d, "condgate.log"), "w+b")
            side["proc"] = subprocess.Popen(side["cmd"] + ["-c", "condgate.ini"], cwd=d,
                                            stdout=side["log"], stderr=subprocess.STDOUT)
            procs.append(side["proc"])
        for name, side in sides.items():
            wait_up(side["proc"], side["ports"]["admin"], f"{name} condgate")

        got = {name: [] for name in sides}
        for listener, src, want in CMP_CASES:
            for name, side in sides.items():
                got[name].append(probe(src, side["ports"][listener]))
        table = [(l, s, w, got["linux"][i], got["windows"][i])
                 for i, (l, s, w) in enumerate(CMP_CASES)]
        detail = "\n".join(f"  {l:6} {s:12} want {w:5} linux {a:5} windows {b}"
                           for l, s, w, a, b in table)
        check(f"same verdicts for {len(CMP_CASES)} callers",
              got["linux"] == got["windows"], "\n" + detail)
        check("verdicts as the rules say", all(w == a for _, _, w, a, _ in table), "\n" + detail)

        time.sleep(0.3)  # hits are counted as callers are judged; settle
        diffs = []
        for addr in CMP_EXPLAIN:
            for rs in ("", "&set=open"):
                q = f"/rules/explain?addr={urllib.request.quote(addr)}{rs}"
                ans = {name: http(side["ports"]["admin"], q) for name, side in sides.items()}
                a, b = ans["linux"], ans["windows"]
                if a[0] != 200 or b[0] != 200 or json.loads(a[1]) != json.loads(b[1]):
                    diffs.append(f"{q}\n  linux   {a[0]} {a[1].strip()}\n"
                                 f"  windows {b[0]} {b[1].strip()}")
        check(f"/rules/explain alike for {2 * len(CMP_EXPLAIN)} questions", not diffs,
              "\n" + "\n".join(diffs))
    except Exception:
        for name, side in sides.items():
            if "log" in side:
                side["log"].flush()
                side["log"].seek(0)
                print(f"--- {name} condgate log ---")
                print(side["log"].read().decode(errors="replace")[-3000:])
        raise
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        for side in sides.values():
            if "log" in side:
                side["log"].close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--condgate", required=True)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--source-dir", default=os.path.join(os.path.dirname(__file__), "..", ".."),
                    help="the source tree whose build/default/condgate is compared")
    ap.add_argument("--linux-condgate", help="Linux condgate to compare with (default: "
                    "SOURCE_DIR/build/default/condgate, built if missing)")
    ap.add_argument("emulator", nargs="*")
    args = ap.parse_args()

    # condgate runs in workdir: name the programs absolutely (ctest does).
    args.condgate = os.path.abspath(args.condgate)
    if args.emulator and os.path.exists(args.emulator[0]):
        args.emulator[0] = os.path.abspath(args.emulator[0])
    os.makedirs(args.workdir, exist_ok=True)
    ports = {k: free_port(k == "dual")
             for k in ("admin", "echo", "web", "backend", "dual", "proxied")}
    ini = os.path.join(args.workdir, "condgate.ini")
    write_config(ini, ports)
    Backend(ports["backend"]).start()

    log_path = os.path.join(args.workdir, "condgate.log")
    log = open(log_path, "w+b")
    t0 = time.monotonic()
    proc = subprocess.Popen(args.emulator + [args.condgate, "-c", "condgate.ini"],
                            cwd=args.workdir, stdout=log, stderr=subprocess.STDOUT)
    passed = []

    def check(name, cond, detail=""):
        if not cond:
            raise AssertionError(f"{name}: {detail}")
        passed.append(name)
        print(f"ok  {name}", flush=True)

    try:
        # Up when the admin port answers.
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"condgate.exe exited early with {proc.returncode}")
            try:
                st, body = http(ports["admin"], "/healthz", timeout=2)
                if st == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("condgate.exe did not come up")
            time.sleep(0.3)
        print(f"up after {time.monotonic() - t0:.1f} s", flush=True)
        check("healthz", body.strip() == "ok", body)

        out = exchange("127.0.0.5", ports["echo"], b"hello over echo")
        check("allowed caller, echo", out == b"hello over echo", repr(out))
        out = exchange("127.0.0.7", ports["web"], b"ping")
        check("allowed caller, real backend", out == b"backend:ping", repr(out))
        big = os.urandom(256 * 1024)
        out = exchange("127.0.0.8", ports["echo"], big)
        check("256 KiB through echo", out == big, f"{len(out)} bytes back")

        how = expect_reset("127.0.0.66", ports["echo"])
        check(f"denied caller: {how}, no byte", True)
        how = expect_reset("127.0.0.66", ports["web"])
        check(f"denied caller on backend listener: {how}, no byte", True)

        time.sleep(0.5)  # relays account their close on the worker threads
        st, body = http(ports["admin"], "/stats")
        stats = json.loads(body)
        c = stats["connections"]
        check("/stats accepted", c["accepted"] == 3, body)
        check("/stats rejected by rule", c["rejected"] == 2 and stats["rejected_by"]["rule"] == 2,
              body)
        check("/stats bytes", stats["bytes"]["in"] >= 4 + 15 + len(big)
              and stats["bytes"]["out"] >= 12 + 15 + len(big), body)
        check("/stats listeners",
              sorted(l["name"] for l in stats["listeners"]) == ["dual", "echo", "proxied", "web"],
              body)

        # A good reload: 127.0.0.5 is denied from now on.
        write_config(ini, ports, extra_deny=", 127.0.0.5")
        st, body = http(ports["admin"], "/reload", method="POST")
        check("POST /reload", st == 200 and json.loads(body) == {"ok": True, "generation": 2},
              f"{st} {body}")
        how = expect_reset("127.0.0.5", ports["echo"])
        check(f"reload took effect: 127.0.0.5 {how}", True)
        out = exchange("127.0.0.9", ports["echo"], b"still here")
        check("other callers still served", out == b"still here", repr(out))

        # A dual-stack listener: IPv4 callers arrive as mapped addresses
        # (and Wine's WSAAccept gives no caller address for them).
        out = exchange("127.0.0.10", ports["dual"], b"via [::]")
        check("dual-stack listener, allowed IPv4 caller", out == b"via [::]", repr(out))
        how = expect_reset("127.0.0.66", ports["dual"])
        check(f"dual-stack listener, denied IPv4 caller: {how}, no byte", True)

        # The PROXY protocol: a header from a trusted sender names the
        # client, which is judged, and named again to the backend.
        # (127.0.0.5 is denied since the reload above.)
        out = exchange("127.0.0.1", ports["proxied"],
                       b"PROXY TCP4 127.0.0.11 127.0.0.1 4000 80\r\nping")
        check("PROXY header in, client named to the backend",
              b"PROXY TCP4 127.0.0.11 127.0.0.1 " in out and out.endswith(b"ping"), repr(out))
        try:
            out = exchange("127.0.0.1", ports["proxied"],
                           b"PROXY TCP4 127.0.0.66 127.0.0.1 4000 80\r\nping")
        except (ConnectionResetError, BrokenPipeError):
            out = b""
        check("PROXY header naming a denied client: nothing relayed", out == b"", repr(out))
        how = expect_reset("127.0.0.7", ports["proxied"])
        check(f"untrusted sender: {how}, no byte", True)

        # A bad reload changes nothing.
        with open(ini, "a") as f:
            f.write("\n[nonsense]\n")
        st, body = http(ports["admin"], "/reload", method="POST")
        check("bad reload refused (422)", st == 422 and not json.loads(body)["ok"], f"{st} {body}")
        st, body = http(ports["admin"], "/stats")
        check("generation unchanged", json.loads(body)["generation"] == 2, body)

        # Ctrl+C: Wine turns SIGINT into CTRL_C_EVENT for console programs.
        proc.send_signal(signal.SIGINT)
        try:
            rc = proc.wait(timeout=20)
            check("Ctrl+C: drained and exited 0", rc == 0, f"exit {rc}")
        except subprocess.TimeoutExpired:
            print("note: SIGINT did not stop condgate.exe under Wine; killed", flush=True)
        log.seek(0)
        text = log.read().decode(errors="replace")
        check("reject logged", "event=reject" in text and "reason=rule" in text)

        compare_with_linux(args, check)
        print(f"all {len(passed)} checks passed in {time.monotonic() - t0:.1f} s")
        return 0
    except Exception as e:  # report, with the daemon's own account
        print(f"FAIL {e}", flush=True)
        log.flush()
        log.seek(0)
        print("--- condgate log ---")
        print(log.read().decode(errors="replace")[-6000:])
        return 1
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


if __name__ == "__main__":
    sys.exit(main())
