#!/usr/bin/python3
"""Ban figures of condgate (SPEC section 11): run by hand, not by ctest.

Starts the built condgate (--condgate, default build/bench/condgate, the
Release build compare.py makes) with a state_file in a temporary directory,
one listener with `prefilter = refuse` (the kernel refuses banned callers
before the handshake; needs root or CAP_BPF) and the admin port, and prints:

- bulk add: the time to add --bans (1,000,000) /32 bans through POST /bans
  in arrays of --batch (10,000), and bans per second. Each POST answers
  once the state file holds its bans (group commit), so this includes the
  state file writes;
- the RSS growth of the process per ban, and the state file's size;
- restart: SIGTERM, then a new start with the bans in the state file, timed
  from the spawn until the listener serves (a 64-byte echo exchange) and the
  admin port answers, i.e. the time to load them (--restarts times,
  against a start with an empty state file);
- ban -> kernel latency: from just before POST /bans {"cidr":
  "127.0.0.50/32"} until a connect from 127.0.0.50 fails with ECONNREFUSED
  (connects polled back to back), median of --rounds (20), with an empty
  table and with the bulk bans loaded; and the other way round, DELETE until
  a connect succeeds again.

Python 3 standard library only; Linux only (RSS from /proc). The condgate
process runs in its own process group and is stopped on exit, error or
Ctrl+C; the temporary directory is removed unless --keep-tmp or a failure.
"""

import argparse
import errno
import http.client
import json
import os
import queue
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent

PROBE = "127.0.0.50"  # the banned caller of the latency rounds
CLIENT = "127.0.0.1"  # readiness probes (never_ban by default)
BULK_TTL = 86400  # the bulk bans outlive the run
PROBE_TTL = 3600


class BenchError(Exception):
    """A failure with a message meant for the user."""


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def rss_stable(pid, limit_s=5.0):
    """VmRSS once two reads 200 ms apart agree within 64 KiB."""
    end = time.monotonic() + limit_s
    last = rss_kib(pid)
    while time.monotonic() < end:
        time.sleep(0.2)
        cur = rss_kib(pid)
        if cur is not None and last is not None and abs(cur - last) <= 64:
            return cur
        last = cur
    return last


def loadavg():
    try:
        with open("/proc/loadavg", encoding="ascii") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


def port_free(port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def take_ports(base, n):
    out = []
    p = base
    while len(out) < n:
        if p >= 65535:
            raise BenchError("no free TCP port above --port-base")
        if port_free(p):
            out.append(p)
        p += 1
    return out


def random_hosts(n, seed):
    """n distinct random IPv4 hosts outside 0/8, 10/8, 127/8 and 224/3."""
    rng = random.Random(seed)
    seen = set()
    while len(seen) < n:
        a = rng.getrandbits(32)
        if a >> 24 in (0, 10, 127) or a >> 24 >= 224:
            continue
        seen.add(a)
    out = list(seen)
    rng.shuffle(out)
    return out


def fmt_ip(a):
    return f"{a >> 24}.{(a >> 16) & 255}.{(a >> 8) & 255}.{a & 255}"


class Gate:
    """One condgate process in its own process group."""

    def __init__(self, bench):
        self.b = bench
        self.proc = None

    def start(self):
        b = self.b
        b.seq += 1
        logpath = b.tmp / f"condgate-{b.seq}.log"
        with open(logpath, "ab") as logf:
            self.proc = subprocess.Popen([str(b.condgate), "-c", str(b.cfg)],
                                         stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                                         start_new_session=True)
        self.log = logpath
        b.gates.append(self)
        return self.proc.pid

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def tail(self, n=12):
        try:
            lines = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join("    " + ln for ln in lines[-n:])

    def stop(self, grace=60.0):
        """SIGTERM, wait (the store writes what changed), SIGKILL if needed.
        Returns the seconds it took to exit."""
        if self.proc is None:
            return 0.0
        t0 = time.monotonic()
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait()
        took = time.monotonic() - t0
        if self in self.b.gates:
            self.b.gates.remove(self)
        return took


class Bench:
    def __init__(self, args):
        self.a = args
        self.tmp = None
        self.gates = []
        self.seq = 0
        self.out = {}  # figures for --json

    # -- set-up ---------------------------------------------------------------

    def setup(self):
        a = self.a
        self.condgate = Path(a.condgate).resolve()
        if not os.access(self.condgate, os.X_OK):
            raise BenchError(f"{self.condgate} is not an executable; build it with: cmake -S . "
                             "-B build/bench -DCMAKE_BUILD_TYPE=Release -DCG_BUILD_TESTS=ON && "
                             "cmake --build build/bench --target condgate (or run "
                             "tests/bench/compare.py once)")
        self.tmp = Path(tempfile.mkdtemp(prefix="cgbans."))
        self.state = self.tmp / "state.json"
        self.port, self.admin = take_ports(a.port_base, 2)
        self.cfg = self.tmp / "condgate.ini"
        self.cfg.write_text(f"""; generated by tests/bench/bans.py
[gateway]
workers = 2
log_level = warn
state_file = {self.state}
max_bans = {max(1000000, a.bans + 1000)}

[admin]
listen = 127.0.0.1:{self.admin}

[rules]
default = deny
allow = 127.0.0.0/8

[listener:pf]
bind = 127.0.0.1:{self.port}
backend = echo
prefilter = {a.prefilter}
""")
        r = subprocess.run([str(self.condgate), "-t", "-c", str(self.cfg)],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           timeout=60)
        if r.returncode != 0:
            raise BenchError(f"condgate -t refuses {self.cfg}:\n{r.stdout}")
        self.pf_line = next((ln.strip() for ln in r.stdout.splitlines()
                             if ln.startswith("prefilter ")), "")
        self.pf_ok = " mode=refuse" in self.pf_line
        log(f"condgate -t: {self.pf_line or '(no prefilter line)'}")

    # -- HTTP -------------------------------------------------------------------

    def http(self, method, path, body=None, timeout=600, conn=None):
        """(status, parsed JSON or text) of one admin request."""
        own = conn is None
        c = conn or http.client.HTTPConnection("127.0.0.1", self.admin, timeout=timeout)
        try:
            hdrs = {"Content-Type": "application/json"} if body is not None else {}
            c.request(method, path, body=body, headers=hdrs)
            r = c.getresponse()
            data = r.read()
        finally:
            if own:
                c.close()
        try:
            return r.status, json.loads(data)
        except ValueError:
            return r.status, data.decode(errors="replace")

    def stats(self):
        st, body = self.http("GET", "/stats", timeout=30)
        if st != 200:
            raise BenchError(f"GET /stats: {st} {body}")
        return body

    # -- starting ----------------------------------------------------------------

    def serves(self):
        """One 64-byte echo exchange through the listener from CLIENT."""
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.settimeout(2.0)
                s.bind((CLIENT, 0))
                s.connect(("127.0.0.1", self.port))
                s.sendall(b"x" * 64)
                got = b""
                while len(got) < 64:
                    chunk = s.recv(64 - len(got))
                    if not chunk:
                        return False
                    got += chunk
                return True
        except OSError:
            return False

    def admin_answers(self):
        try:
            st, _ = self.http("GET", "/healthz", timeout=2)
            return st == 200
        except (OSError, http.client.HTTPException):
            return False

    def start(self, timeout):
        """Start condgate; returns (gate, s until the listener serves, s until
        the admin port answers), both from the spawn."""
        g = Gate(self)
        t0 = time.monotonic()
        g.start()
        t_serve = t_admin = None
        while t_serve is None or t_admin is None:
            if not g.alive():
                raise BenchError(f"condgate exited with status {g.proc.returncode} while "
                                 f"starting; its log ({g.log}):\n{g.tail()}")
            if time.monotonic() - t0 > timeout:
                g.stop(5)
                raise BenchError(f"condgate not serving after {timeout:.0f} s; its log:\n"
                                 f"{g.tail()}")
            if t_serve is None and self.serves():
                t_serve = time.monotonic() - t0
            if t_admin is None and self.admin_answers():
                t_admin = time.monotonic() - t0
            if t_serve is None or t_admin is None:
                time.sleep(0.002)
        return g, t_serve, t_admin

    # -- ban -> kernel latency ---------------------------------------------------

    def connect_result(self):
        """errno of one connect from PROBE to the listener (0: connected)."""
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.settimeout(1.0)
            s.bind((PROBE, 0))
            s.connect(("127.0.0.1", self.port))
            return 0
        except socket.timeout:
            return errno.ETIMEDOUT
        except OSError as e:
            return e.errno or -1
        finally:
            s.close()

    def poll_until(self, want_refused, t0, limit_s):
        """Connect from PROBE back to back until the connect is refused
        (want_refused) or succeeds; seconds from t0, and the attempts."""
        n = 0
        while True:
            n += 1
            e = self.connect_result()
            now = time.monotonic()
            if (e == errno.ECONNREFUSED) if want_refused else (e == 0):
                return now - t0, n
            if now - t0 > limit_s:
                return None, n

    def request_async(self, method, path, body=None):
        """One admin request on a thread of its own; .result(t0) joins it and
        gives (status, body, seconds from t0 to the answer)."""
        box = {}

        def run():
            try:
                box["r"] = self.http(method, path, body=body, timeout=120)
            except (OSError, http.client.HTTPException) as e:
                box["e"] = e
            box["t"] = time.monotonic()

        th = threading.Thread(target=run, daemon=True)
        th.start()

        class Pending:
            @staticmethod
            def result(t0):
                th.join(180)
                if th.is_alive():
                    raise BenchError(f"{method} {path}: no answer in 180 s")
                if "e" in box:
                    raise BenchError(f"{method} {path}: {box['e']!r}")
                return box["r"][0], box["r"][1], box["t"] - t0
        return Pending()

    def latency_rounds(self, label):
        """--rounds of: POST a ban on PROBE, poll until refused; DELETE it,
        poll until admitted. Returns the figures."""
        a = self.a
        cidr = f"{PROBE}/32"
        body = json.dumps({"cidr": cidr, "ttl_s": PROBE_TTL, "reason": "bans.py latency"})
        if self.connect_result() != 0:
            raise BenchError(f"a connect from {PROBE} fails before any ban of it")
        ban, post, unban, unpost, tries = [], [], [], [], []
        for i in range(a.rounds):
            # the request runs on a thread while this one polls: the ban may
            # reach the kernel before the POST answers (which waits for the
            # state file)
            t0 = time.monotonic()
            req = self.request_async("POST", "/bans", body)
            took, n = self.poll_until(True, t0, a.poll_timeout)
            st, resp, t_post = req.result(t0)
            if st != 201:
                raise BenchError(f"POST /bans {cidr}: {st} {resp}")
            if took is None:
                raise BenchError(f"{label}: a connect from {PROBE} still not refused "
                                 f"{a.poll_timeout:g} s after its ban (round {i + 1}); is "
                                 "the ban in the kernel's table? /stats bans: "
                                 f"{self.stats().get('bans')}")
            ban.append(took)
            post.append(t_post)
            tries.append(n)
            t0 = time.monotonic()
            req = self.request_async("DELETE", f"/bans?cidr={cidr}")
            took, _ = self.poll_until(False, t0, a.poll_timeout)
            st, resp, t_del = req.result(t0)
            if st != 200:
                raise BenchError(f"DELETE /bans?cidr={cidr}: {st} {resp}")
            if took is None:
                raise BenchError(f"{label}: a connect from {PROBE} still refused "
                                 f"{a.poll_timeout:g} s after DELETE (round {i + 1})")
            unban.append(took)
            unpost.append(t_del)
            time.sleep(0.02)
        res = {"ban_to_refused_s": ban, "post_answer_s": post, "unban_to_admitted_s": unban,
               "delete_answer_s": unpost, "connects_polled": tries}
        log(f"  {label}: ban -> refused median {1e3 * statistics.median(ban):.2f} ms "
            f"(POST answered {1e3 * statistics.median(post):.2f} ms), unban -> admitted "
            f"{1e3 * statistics.median(unban):.2f} ms")
        return res

    # -- bulk --------------------------------------------------------------------

    def bodies(self):
        a = self.a
        t0 = time.monotonic()
        hosts = random_hosts(a.bans, a.seed)
        out = []
        for i in range(0, a.bans, a.batch):
            part = hosts[i:i + a.batch]
            out.append(("[" + ",".join(f'{{"cidr":"{fmt_ip(h)}/32","ttl_s":{BULK_TTL}}}'
                                       for h in part) + "]").encode())
        log(f"  {a.bans:,} random /32 bans in {len(out)} bodies of up to {a.batch:,} "
            f"({max(len(b) for b in out) / 1048576:.2f} MiB at most), made in "
            f"{time.monotonic() - t0:.1f} s")
        return out

    def bulk_add(self, bodies):
        """POST every body, --parallel connections at once; seconds, and the
        slowest POST."""
        a = self.a
        q = queue.Queue()
        for b in bodies:
            q.put(b)
        errors = []
        slowest = [0.0]
        lock = threading.Lock()

        def worker():
            c = http.client.HTTPConnection("127.0.0.1", self.admin, timeout=a.post_timeout)
            try:
                while not errors:
                    try:
                        body = q.get_nowait()
                    except queue.Empty:
                        return
                    t0 = time.monotonic()
                    try:
                        st, resp = self.http("POST", "/bans", body=body, conn=c)
                    except (OSError, http.client.HTTPException) as e:
                        errors.append(f"POST /bans: {e!r}")
                        return
                    took = time.monotonic() - t0
                    with lock:
                        slowest[0] = max(slowest[0], took)
                    if st != 201:
                        errors.append(f"POST /bans: {st} {str(resp)[:300]}")
                        return
            finally:
                c.close()

        threads = [threading.Thread(target=worker, daemon=True) for _ in range(a.parallel)]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        took = time.monotonic() - t0
        if errors:
            raise BenchError(errors[0])
        return took, slowest[0]

    # -- the run -------------------------------------------------------------------

    def run(self):
        a = self.a
        f = self.out
        f["loadavg_start"] = loadavg()
        log(f"load average {f['loadavg_start']}; temporary directory {self.tmp}")
        bodies = self.bodies()

        log("start with an empty state file")
        g, serve_s, admin_s = self.start(a.start_timeout)
        f["empty_start"] = {"serves_s": serve_s, "admin_s": admin_s}
        if self.pf_ok:
            f["latency_empty"] = self.latency_rounds("empty table")
        rss0 = rss_stable(g.proc.pid)

        log(f"bulk add: {a.bans:,} bans, {len(bodies)} POSTs, {a.parallel} at a time")
        la = loadavg()
        took, slowest = self.bulk_add(bodies)
        rss1 = rss_stable(g.proc.pid)
        st = self.stats()
        count = st.get("bans", {}).get("count")
        size = self.state.stat().st_size if self.state.exists() else None
        f["bulk"] = {"bans": a.bans, "batch": a.batch, "parallel": a.parallel, "seconds": took,
                     "bans_per_s": a.bans / took, "slowest_post_s": slowest,
                     "count_after": count, "rss_before_kib": rss0, "rss_after_kib": rss1,
                     "rss_bytes_per_ban": (rss1 - rss0) * 1024 / a.bans,
                     "state_file_bytes": size, "kernel_full": st.get("bans", {}).get(
                         "kernel_full"), "loadavg": la}
        log(f"  {took:.2f} s = {a.bans / took:,.0f} bans/s (slowest POST {slowest:.2f} s); "
            f"/stats bans.count {count}; RSS {rss0 / 1024:.1f} -> {rss1 / 1024:.1f} MiB; "
            f"state file {size / 1048576 if size else 0:.1f} MiB")
        if count != a.bans:
            raise BenchError(f"/stats bans.count is {count} after adding {a.bans:,}")
        if self.pf_ok:
            f["latency_loaded"] = self.latency_rounds(f"{a.bans:,} bans")

        log(f"restart with {a.bans:,} bans in the state file ({a.restarts}x)")
        restarts = []
        for i in range(a.restarts):
            stop_s = g.stop()
            la = loadavg()
            g, serve_s, admin_s = self.start(a.start_timeout)
            cnt = self.stats().get("bans", {}).get("count")
            rss = rss_stable(g.proc.pid)
            restarts.append({"stop_s": stop_s, "serves_s": serve_s, "admin_s": admin_s,
                             "count": cnt, "rss_kib": rss, "loadavg": la})
            log(f"  stop {stop_s:.2f} s; start -> serving {serve_s:.2f} s, -> admin answers "
                f"{admin_s:.2f} s; bans.count {cnt}; RSS {rss / 1024:.1f} MiB")
            if cnt != a.bans:
                raise BenchError(f"after the restart /stats bans.count is {cnt}, not "
                                 f"{a.bans:,}")
        f["restarts"] = restarts
        g.stop()
        f["loadavg_end"] = loadavg()

    def report(self):
        a = self.a
        f = self.out
        b = f["bulk"]
        ms = lambda v: f"{1e3 * v:.2f} ms"  # noqa: E731
        rows = []
        rows.append((f"bulk add {a.bans:,} /32 bans (POST arrays of {a.batch:,}, "
                     f"{a.parallel} at a time)", f"{b['seconds']:.2f} s"))
        rows.append(("  bans per second", f"{b['bans_per_s']:,.0f}"))
        rows.append(("  slowest POST", f"{b['slowest_post_s']:.2f} s"))
        rows.append(("RSS growth per ban", f"{b['rss_bytes_per_ban']:.1f} B  "
                     f"({b['rss_before_kib'] / 1024:.1f} -> {b['rss_after_kib'] / 1024:.1f} MiB)"))
        if b["state_file_bytes"] is not None:
            rows.append(("state file size", f"{b['state_file_bytes'] / 1048576:.1f} MiB  "
                         f"({b['state_file_bytes'] / a.bans:.0f} B per ban)"))
        e = f["empty_start"]
        rows.append(("start, empty state file: -> serving / admin",
                     f"{e['serves_s']:.3f} s / {e['admin_s']:.3f} s"))
        rs = f["restarts"]
        sv = [r["serves_s"] for r in rs]
        ad = [r["admin_s"] for r in rs]
        rng = (lambda v: f" ({min(v):.2f}-{max(v):.2f} over {len(v)})" if len(v) > 1 else "")
        rows.append((f"restart with {a.bans:,} bans: -> serving",
                     f"{statistics.median(sv):.2f} s{rng(sv)}"))
        rows.append(("  -> admin answers", f"{statistics.median(ad):.2f} s{rng(ad)}"))
        rows.append(("  load time (serving, minus the empty start)",
                     f"{statistics.median(sv) - e['serves_s']:.2f} s"))
        st = [r["stop_s"] for r in rs]
        rows.append(("  stop (SIGTERM -> exit)", f"{statistics.median(st):.2f} s{rng(st)}"))
        rows.append(("  RSS after the restart",
                     f"{statistics.median(r['rss_kib'] for r in rs) / 1024:.1f} MiB"))
        for key, label in (("latency_empty", "empty table"),
                           ("latency_loaded", f"{a.bans:,} bans")):
            if key not in f:
                continue
            lat = f[key]
            v = lat["ban_to_refused_s"]
            rows.append((f"ban -> ECONNREFUSED, {label}",
                         f"median {ms(statistics.median(v))}  (min {ms(min(v))}, max "
                         f"{ms(max(v))}, {len(v)} rounds)"))
            rows.append(("  POST answered after", f"median {ms(statistics.median(lat['post_answer_s']))}"))
            u = lat["unban_to_admitted_s"]
            rows.append(("  DELETE -> connect admitted", f"median {ms(statistics.median(u))}"
                         f"  (max {ms(max(u))})"))
            rows.append(("  DELETE answered after",
                         f"median {ms(statistics.median(lat['delete_answer_s']))}"))
        w = max(len(r[0]) for r in rows)
        print()
        print(f"condgate bans: {self.condgate}; {os.cpu_count()} CPUs; prefilter: "
              f"{self.pf_line or '-'}")
        print()
        for k, v in rows:
            print(f"{k.ljust(w)}  {v}")
        print()
        if not self.pf_ok:
            print(f"note: ban -> kernel latency not measured: the listener's prefilter is not "
                  f"refuse ({self.pf_line or 'condgate -t printed no prefilter line'}); it "
                  "needs root or CAP_BPF and a build with BPF")
        print("note: a POST answers once the state file holds its bans (fsync + rename, "
              "group commit), so the bulk time includes the state file writes; RSS = VmRSS "
              "once steady (user memory; the kernel's prefilter maps are not in it); "
              "kernel_full (bans the kernel's table could not take) = "
              f"{b['kernel_full']}")
        print(f"note: load average at start {f['loadavg_start']}, during the bulk add "
              f"{b['loadavg']}, at the first restart {rs[0]['loadavg']}, at end "
              f"{f['loadavg_end']}")
        if a.json:
            with open(a.json, "w", encoding="utf-8") as fh:
                json.dump({"args": vars(a), "prefilter": self.pf_line, **f}, fh, indent=1)
                fh.write("\n")
            print(f"note: raw figures written to {a.json}")

    def cleanup(self, keep):
        for g in list(self.gates):
            g.stop(5)
        if self.tmp and self.tmp.exists():
            if keep:
                print(f"bans.py: configuration, state file and logs kept in {self.tmp}",
                      file=sys.stderr)
            else:
                shutil.rmtree(self.tmp, ignore_errors=True)


def parse_args(argv):
    ap = argparse.ArgumentParser(
        prog="bans.py", description="condgate ban figures: bulk add through POST /bans, RSS "
        "per ban, state file size, restart (load) time, ban -> kernel latency.",
        epilog="example: tests/bench/bans.py --json /tmp/bans.json")
    ap.add_argument("--condgate", default=str(REPO / "build" / "bench" / "condgate"),
                    help="the condgate binary (build/bench/condgate)")
    ap.add_argument("--bans", type=int, default=1000000, help="bans added in bulk (1000000)")
    ap.add_argument("--batch", type=int, default=10000,
                    help="bans per POST (10000, the most one request may hold)")
    ap.add_argument("--parallel", type=int, default=1,
                    help="POSTs in flight at once, on as many connections (1)")
    ap.add_argument("--rounds", type=int, default=20, help="latency rounds (20)")
    ap.add_argument("--restarts", type=int, default=3, help="restarts with the bans (3)")
    ap.add_argument("--prefilter", default="refuse", choices=("refuse", "auto", "off"),
                    help="the listener's prefilter (refuse)")
    ap.add_argument("--seed", type=int, default=11, help="seed of the random addresses (11)")
    ap.add_argument("--port-base", type=int, default=22000,
                    help="first port tried for the listener and admin (22000)")
    ap.add_argument("--start-timeout", type=float, default=300.0,
                    help="seconds a start may take (300)")
    ap.add_argument("--post-timeout", type=float, default=600.0,
                    help="seconds one POST may take (600)")
    ap.add_argument("--poll-timeout", type=float, default=5.0,
                    help="seconds a latency round polls before it fails (5)")
    ap.add_argument("--json", metavar="FILE", help="write the raw figures")
    ap.add_argument("--keep-tmp", action="store_true", help="keep the temporary directory")
    a = ap.parse_args(argv)
    if not 1 <= a.batch <= 10000:
        ap.error("--batch must be 1..10000")
    if not 1 <= a.bans <= 16000000:
        ap.error("--bans must be 1..16000000")
    if a.parallel < 1 or a.rounds < 1 or a.restarts < 1:
        ap.error("--parallel, --rounds and --restarts must be positive")
    return a


def main(argv):
    a = parse_args(argv)
    if not sys.platform.startswith("linux"):
        print("bans.py: Linux only", file=sys.stderr)
        return 2

    def on_signal(sig, _frame):
        raise SystemExit(128 + sig)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, on_signal)
    if signal.getsignal(signal.SIGHUP) != signal.SIG_IGN:
        signal.signal(signal.SIGHUP, on_signal)
    b = Bench(a)
    ok, rc = False, 1
    try:
        b.setup()
        b.run()
        ok = True
    except BenchError as e:
        print(f"bans.py: {e}", file=sys.stderr)
    except KeyboardInterrupt:
        print("bans.py: interrupted", file=sys.stderr)
        rc = 130
    except SystemExit as e:
        print("bans.py: stopped by a signal", file=sys.stderr)
        rc = e.code if isinstance(e.code, int) else 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        b.cleanup(keep=a.keep_tmp or not ok)
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if ok:
        b.report()
        return 0
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
