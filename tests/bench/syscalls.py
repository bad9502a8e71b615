#!/usr/bin/python3
"""System calls per relayed exchange: condgate, HAProxy and nginx (issue 16).

Uses compare.py's set-up (the same build, rules, backends, configurations
and thread count): for each proxy in turn it starts it fresh, warms it up,
attaches `strace -c -f` to every process of the proxy (all their threads),
runs a fixed number of short exchanges through the conn listener with
cgload (connect, 64-byte request, 64-byte reply, the backend closes), waits
until the proxy has closed every descriptor of them, detaches and prints
one table: system call -> calls per exchange, per proxy, and the total. See
tests/bench/README.md ("syscalls.py").

Python 3 standard library only, Linux only; needs strace (Debian package
strace) and the right to trace the proxies (root, or ptrace_scope 0 and the
same user).
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import compare  # noqa: E402  (tests/bench/compare.py, next to this file)
from compare import BenchError, log  # noqa: E402

PROXIES = ("condgate", "condgate-off", "haproxy", "nginx")
SETTLE_S = 10.0  # how long the proxy may take to close the last exchanges' sockets


def parse_strace_c(text):
    """strace -c's summary table as {syscall: [calls, errors]}, the total
    row left out."""
    rows = {}
    for line in text.splitlines():
        f = line.split()
        # % time, seconds, usecs/call, calls, [errors], syscall; the header
        # and the rules have no number in the fourth column
        if len(f) not in (5, 6) or not f[3].isdigit():
            continue
        rows[f[-1]] = [int(f[3]), int(f[4]) if len(f) == 6 else 0]
    rows.pop("total", None)
    return rows


def open_fds(pids):
    """Descriptors open in the processes (vanished ones count none)."""
    n = 0
    for pid in pids:
        try:
            n += len(os.listdir(f"/proc/{pid}/fd"))
        except OSError:
            pass
    return n


def steady_fds(pids, limit_s=5.0):
    """The processes' descriptor count once five reads 20 ms apart agree
    (the warm-up's last sockets closed), or the last read after limit_s."""
    end = time.monotonic() + limit_s
    last, same = open_fds(pids), 0
    while same < 4 and time.monotonic() < end:
        time.sleep(0.02)
        cur = open_fds(pids)
        same = same + 1 if cur == last else 0
        last = cur
    return last


def wait_for(cond, limit_s, what):
    """Polls cond() every 10 ms until it is true; BenchError after limit_s."""
    end = time.monotonic() + limit_s
    while not cond():
        if time.monotonic() > end:
            raise BenchError(f"{what} not within {limit_s:g} s")
        time.sleep(0.01)


class Counter:
    """Runs the measurement on a compare.Bench that is set up."""

    def __init__(self, args):
        self.args = args
        self.results = {}  # contender -> {"calls": {...}, "exchanges": n, ...}

    def attach(self, b, name, pids, out=None):
        """strace -c -f on every pid, its summary to a file (with out: the
        full trace, -tt, to out); returns the process and the file once
        strace says each pid is attached."""
        argv = [self.args.strace, "-c", "-f"] if out is None else [self.args.strace, "-f", "-tt"]
        out = out or b.tmp / f"strace-{name}.txt"
        argv += ["-o", out]
        for pid in pids:
            argv += ["-p", pid]
        st = b.procs.spawn(f"strace-{name}", argv)

        def attached():
            if st.poll() is not None:
                raise BenchError(f"strace exited with status {st.returncode}; log "
                                 f"{st.cg_log}:\n{compare.log_tail(st)}")
            text = Path(st.cg_log).read_text(errors="replace")
            return all(f"Process {pid} attached" in text for pid in pids)
        wait_for(attached, 30, f"strace attached to {name} ({pids})")
        return st, out

    def detach(self, b, st):
        """SIGINT to strace: it detaches and finishes its output file."""
        os.killpg(st.pid, signal.SIGINT)
        try:
            st.wait(60)
        except subprocess.TimeoutExpired:
            raise BenchError(f"strace did not stop on SIGINT; log {st.cg_log}")
        finally:
            b.procs.stop(st)

    def measure(self, b, name):
        a = self.args
        run = b.start(name)
        port = b.proxies[name].conn_port
        try:
            b.warmup(port)
            pids = run.pids()
            base = steady_fds(pids)
            st, out = self.attach(b, name, pids)
            t0 = time.monotonic()
            j = b.cgload("conn", port, ["-n", a.count, "-c", a.concurrency, "--size",
                                        compare.REQ_SIZE, "--resp", 0, "--src",
                                        compare.ALLOWED_SRC, "--timeout", 10000],
                         120 + a.count / 100)
            # the proxy closes its side of the last exchanges after cgload
            # has read their EOF: count those calls too
            wait_for(lambda: open_fds(pids) <= base, SETTLE_S,
                     f"{name} back to its {base} descriptors")
            took = time.monotonic() - t0
            self.detach(b, st)
            calls = parse_strace_c(out.read_text(errors="replace"))
            if a.trace:
                self.trace(b, name, port, pids, base)
        finally:
            b.stop(run)
        n = j["completed"]
        errs = j["errors"]["total"]
        if not n:
            raise BenchError(f"{name}: no exchange completed under strace")
        total = sum(c for c, _ in calls.values())
        self.results[name] = {"exchanges": n, "errors": errs, "processes": len(pids),
                              "seconds": took, "calls": calls, "total": total}
        log(f"  {name:<12} {n:,} exchanges ({errs} failed) in {took:.1f} s under strace, "
            f"{total / n:.1f} system calls each, {len(pids)} process(es) traced")
        if errs:
            b.notes.append(f"{name}: {errs} exchanges failed under strace")

    def trace(self, b, name, port, pids, base):
        """Every system call of the proxy during --trace-count exchanges
        one after the other (cgload -c 1), with times, to --trace/NAME.trace."""
        a = self.args
        out = Path(a.trace) / f"{name}.trace"
        st, _ = self.attach(b, name, pids, out=out)
        b.cgload("conn", port, ["-n", a.trace_count, "-c", 1, "--size", compare.REQ_SIZE,
                                "--resp", 0, "--src", compare.ALLOWED_SRC], 60, name="trace")
        wait_for(lambda: open_fds(pids) <= base, SETTLE_S,
                 f"{name} back to its {base} descriptors")
        self.detach(b, st)
        log(f"  {name:<12} {a.trace_count} exchanges traced to {out}")

    def run(self, b):
        log("system calls:")
        for name in [c for c in PROXIES if c in b.proxies]:
            self.measure(b, name)

    def table(self):
        """The table: a row per system call (calls per exchange, failed in
        parentheses), most frequent first, the rare ones summed."""
        cols = list(self.results)
        per = {}
        for c, r in self.results.items():
            for name, (calls, errs) in r["calls"].items():
                per.setdefault(name, {})[c] = (calls / r["exchanges"], errs / r["exchanges"])
        rare = {n for n, v in per.items() if max(x for x, _ in v.values()) < self.args.min}
        rows = sorted((n for n in per if n not in rare),
                      key=lambda n: (-max(x for x, _ in per[n].values()), n))

        def cell(v):
            if v is None:
                return "-"
            calls, errs = v
            return f"{calls:.2f}" + (f" ({errs:.2f})" if errs >= 0.005 else "")
        lines = [["system call"] + cols]
        for n in rows:
            lines.append([n] + [cell(per[n].get(c)) for c in cols])
        if rare:
            lines.append([f"({len(rare)} others < {self.args.min:g})"]
                         + [cell((sum(per[n].get(c, (0, 0))[0] for n in rare),
                                  sum(per[n].get(c, (0, 0))[1] for n in rare))) for c in cols])
        lines.append(["total"] + [f"{self.results[c]['total'] / self.results[c]['exchanges']:.2f}"
                                  for c in cols])
        w = [max(len(r[i]) for r in lines) for i in range(len(cols) + 1)]
        out = []
        for k, r in enumerate(lines):
            if k == 1 or k == len(lines) - 1:
                out.append("  ".join("-" * x for x in w))
            out.append("  ".join([r[0].ljust(w[0])] + [r[i].rjust(w[i])
                                                       for i in range(1, len(r))]))
        return "\n".join(out)

    def report(self, b, la):
        a = self.args
        print()
        print(f"system calls per relayed exchange: {a.count:,} exchanges through each proxy's "
              f"conn listener (cgload conn -c {a.concurrency}, 64-byte request, 64-byte reply, "
              f"the backend closes), {b.args.threads} threads each; strace -c -f attached to "
              "every process of the proxy after a warm-up")
        print("  " + "; ".join(b.vers[k] for k in ("condgate", "haproxy", "nginx")
                               if k in b.vers)
              + f"; condgate build {b.build_type}; Linux {b.vers['kernel']}, "
              f"{b.vers['cpus']} CPUs")
        if "condgate" in self.results:
            print("  condgate: prefilter = " + b.proxies["condgate"].prefilter
                  + (f" ({b.pf_why})" if b.pf_why else "")
                  + ("; condgate-off: prefilter = off" if "condgate-off" in self.results
                     else ""))
        print()
        print(self.table())
        print()
        print("calls per completed exchange; (n) = of which failed (EAGAIN, EINPROGRESS, "
              "ENOENT...); counted from the first call after the attach to the close of the "
              "last exchange's sockets, so the proxy's timers and idle wake-ups in that "
              "window count too")
        for n in b.notes:
            print(f"note: {n}")
        print(f"note: load average at start {la}, at end {compare.loadavg()}")
        if a.json:
            with open(a.json, "w", encoding="utf-8") as f:
                json.dump({"args": vars(a), "versions": b.vers, "loadavg_start": la,
                           "results": self.results}, f, indent=1)
                f.write("\n")
            print(f"note: raw counts written to {a.json}")


def parse_args(argv):
    ap = argparse.ArgumentParser(
        prog="syscalls.py",
        description="System calls per relayed exchange of condgate, HAProxy and nginx "
                    "(strace -c -f), with compare.py's configurations and backends.",
        epilog="example: tests/bench/syscalls.py --no-build -n 4000 --json /tmp/sys.json")
    ap.add_argument("-n", "--count", type=int, default=4000,
                    help="exchanges counted per proxy (4000)")
    ap.add_argument("-c", "--concurrency", type=int, default=16,
                    help="exchanges in flight (16)")
    ap.add_argument("--contenders", type=compare.list_arg(PROXIES), default=list(PROXIES),
                    help="proxies, comma-separated (" + ",".join(PROXIES) + ")")
    ap.add_argument("--threads", type=int, default=2,
                    help="condgate workers, haproxy nbthread, nginx worker_processes (2)")
    ap.add_argument("--prefilter", choices=compare.PREFILTER_CHOICES, default="both",
                    help="as in compare.py: both = condgate (refuse) and condgate-off (both)")
    ap.add_argument("--min", type=float, default=0.01,
                    help="calls per exchange below which a system call is summed into "
                         "'others' (0.01)")
    ap.add_argument("--trace", metavar="DIR",
                    help="also write every system call (strace -f -tt) of each proxy during "
                         "--trace-count exchanges made one at a time to DIR/PROXY.trace")
    ap.add_argument("--trace-count", type=int, default=2,
                    help="exchanges traced with --trace (2)")
    ap.add_argument("--strace", default="strace", help="strace binary (strace)")
    ap.add_argument("--build-dir", help="as in compare.py (build/bench)")
    ap.add_argument("--no-build", action="store_true", help="do not run cmake")
    ap.add_argument("--port-base", type=int, default=21000, help="first port tried (21000)")
    ap.add_argument("--json", metavar="FILE", help="write the raw counts")
    ap.add_argument("--keep-tmp", action="store_true",
                    help="keep the temporary directory (configurations, logs, strace output)")
    a = ap.parse_args(argv)
    if a.count < 1 or a.concurrency < 1 or a.trace_count < 1:
        ap.error("--count, --concurrency and --trace-count must be positive")
    if a.trace:
        os.makedirs(a.trace, exist_ok=True)
    a.strace = shutil.which(a.strace)
    if not a.strace:
        ap.error("strace not found (sudo apt-get install -y strace)")
    # compare.py's own arguments: its conn set-up, these proxies
    cargs = ["--only", "conn", "--contenders", ",".join(a.contenders), "--threads",
             str(a.threads), "--prefilter", a.prefilter, "--port-base", str(a.port_base)]
    cargs += ["--build-dir", a.build_dir] if a.build_dir else []
    cargs += ["--no-build"] if a.no_build else []
    cargs += ["--keep-tmp"] if a.keep_tmp else []
    return a, compare.parse_args(cargs)


def main(argv):
    args, cargs = parse_args(argv)
    if not sys.platform.startswith("linux"):
        print("syscalls.py: Linux only", file=sys.stderr)
        return 2
    b = compare.Bench(cargs)
    counter = Counter(args)
    rc, la = compare.run_bench(b, counter.run, prog="syscalls.py")
    if rc == 0:
        counter.report(b, la)
    compare.remove_tmp(b, rc == 0, prog="syscalls.py")
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
