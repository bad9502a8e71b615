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
  * stop: Ctrl+C (SIGINT to the Wine process) drains and exits 0.

  e2e_wine.py --condgate build/windows/condgate.exe --workdir DIR -- EMULATOR...
Exit status 0 when every check passed; the failing check and condgate's
log otherwise.
"""
import argparse
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


def free_port():
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
""")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--condgate", required=True)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("emulator", nargs="*")
    args = ap.parse_args()

    # condgate runs in workdir: name the programs absolutely (ctest does).
    args.condgate = os.path.abspath(args.condgate)
    if args.emulator and os.path.exists(args.emulator[0]):
        args.emulator[0] = os.path.abspath(args.emulator[0])
    os.makedirs(args.workdir, exist_ok=True)
    ports = {k: free_port() for k in ("admin", "echo", "web", "backend", "dual")}
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
              sorted(l["name"] for l in stats["listeners"]) == ["dual", "echo", "web"], body)

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
