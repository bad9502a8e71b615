#!/usr/bin/python3
"""geo.py — a whole-world country database loaded by condgate and HAProxy
(issue 15, SPEC §16).

condgate reads Debian's tor-geoipdb CSV files (/usr/share/tor/geoip and
geoip6: from,to,CC ranges) with `deny_country` = every country in them but
one (KEEP, default DE); HAProxy 2.6 reads the very same prefixes, which this
script computes from the same files, from a `-f` file in
`acl geo src -f FILE` + `tcp-request connection reject if geo`.

Measured, each the median of --rounds runs:
  check: wall time and max RSS (/usr/bin/time -v) of `condgate -t` and
         `haproxy -c` on that configuration;
  run:   RSS (/proc/PID/status VmRSS) of a running condgate and a running
         haproxy (-db, one process), read once each accepts connections.

    tests/bench/geo.py [--condgate build/default/condgate] [--keep DE]
                       [--rounds 3] [--geoip /usr/share/tor/geoip]

Prints one small table and the ratios condgate / HAProxy. Standard library
only; Linux (/proc). condgate runs with the admin port and the kernel
prefilter off (the prefilter's map is not part of this figure).
"""

import argparse
import ipaddress
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def read_ranges(path):
    """(first, last, cc) of a tor-geoipdb file, as ipaddress objects."""
    out = []
    with open(path, encoding="ascii") as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            a, b, cc = line.split(",")
            if a.isdigit():
                a, b = ipaddress.IPv4Address(int(a)), ipaddress.IPv4Address(int(b))
            else:
                a, b = ipaddress.ip_address(a), ipaddress.ip_address(b)
            out.append((a, b, cc))
    return out


def timed(cmd):
    """(wall seconds, max RSS KiB, stdout) of cmd under /usr/bin/time -v."""
    t0 = time.monotonic()
    p = subprocess.run(["/usr/bin/time", "-v"] + cmd, capture_output=True, text=True)
    wall = time.monotonic() - t0
    if p.returncode != 0:
        sys.exit("failed (%d): %s\n%s" % (p.returncode, " ".join(cmd), p.stderr[-2000:]))
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr)
    return wall, int(m.group(1)), p.stdout


def running_rss(cmd, port, timeout=120):
    """Start cmd, wait until 127.0.0.1:port accepts, return (seconds to
    ready, VmRSS KiB), then stop it."""
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            if p.poll() is not None:
                sys.exit("exited early (%d): %s" % (p.returncode, " ".join(cmd)))
            if time.monotonic() - t0 > timeout:
                sys.exit("not ready within %ds: %s" % (timeout, " ".join(cmd)))
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        ready = time.monotonic() - t0
        with open("/proc/%d/status" % p.pid) as f:
            rss = int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))
        return ready, rss
    finally:
        p.terminate()
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--condgate", default=str(REPO / "build" / "default" / "condgate"))
    ap.add_argument("--haproxy", default=shutil.which("haproxy") or "/usr/sbin/haproxy")
    ap.add_argument("--geoip", default="/usr/share/tor/geoip")
    ap.add_argument("--geoip6", default="/usr/share/tor/geoip6")
    ap.add_argument("--keep", default="DE", help="the one country not denied")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()

    ranges = read_ranges(args.geoip) + read_ranges(args.geoip6)
    countries = sorted({cc for _, _, cc in ranges if cc != "??" and cc != args.keep})
    work = Path(tempfile.mkdtemp(prefix="condgate-geo-"))
    try:
        prefixes = 0
        with open(work / "deny.acl", "w") as f:
            for a, b, cc in ranges:
                if cc == "??" or cc == args.keep:
                    continue
                for n in ipaddress.summarize_address_range(a, b):
                    f.write("%s\n" % n)
                    prefixes += 1
        cport, hport = free_port(), free_port()
        keys = "".join("deny_country = %s\n" % ", ".join(countries[i:i + 20])
                       for i in range(0, len(countries), 20))
        (work / "condgate.ini").write_text(
            "[gateway]\nworkers = 1\n\n[rules]\ndefault = allow\ngeoip_csv = %s\n"
            "geoip_csv = %s\n%s\n[listener:web]\nbind = 127.0.0.1:%d\nbackend = echo\n"
            "prefilter = off\n\n[admin]\nlisten = off\n"
            % (args.geoip, args.geoip6, keys, cport))
        (work / "haproxy.cfg").write_text(
            "global\n    maxconn 1000\n    nbthread 1\n\n"
            "defaults\n    mode tcp\n    timeout connect 1s\n    timeout client 5s\n"
            "    timeout server 5s\n\n"
            "frontend web\n    bind 127.0.0.1:%d\n    acl geo src -f %s\n"
            "    tcp-request connection reject if geo\n    default_backend b\n\n"
            "backend b\n    server s 127.0.0.1:9\n" % (hport, work / "deny.acl"))

        cg_t = [args.condgate, "-t", "-c", str(work / "condgate.ini")]
        ha_c = [args.haproxy, "-c", "-f", str(work / "haproxy.cfg")]
        rows = {"condgate": {"check_s": [], "check_kib": [], "ready_s": [], "run_kib": []},
                "haproxy": {"check_s": [], "check_kib": [], "ready_s": [], "run_kib": []}}
        summary = ""
        for _ in range(args.rounds):
            s, k, out = timed(cg_t)
            summary = out
            rows["condgate"]["check_s"].append(s)
            rows["condgate"]["check_kib"].append(k)
            s, k, _ = timed(ha_c)
            rows["haproxy"]["check_s"].append(s)
            rows["haproxy"]["check_kib"].append(k)
            r, k = running_rss([args.condgate, "-c", str(work / "condgate.ini")], cport)
            rows["condgate"]["ready_s"].append(r)
            rows["condgate"]["run_kib"].append(k)
            r, k = running_rss([args.haproxy, "-db", "-f", str(work / "haproxy.cfg")], hport)
            rows["haproxy"]["ready_s"].append(r)
            rows["haproxy"]["run_kib"].append(k)

        ranges4 = sum(1 for a, _, _ in ranges if a.version == 4)
        print("input: %s + %s: %d IPv4 and %d IPv6 ranges; denied: %d countries (all but %s)"
              " = %d prefixes" % (args.geoip, args.geoip6, ranges4, len(ranges) - ranges4,
                                  len(countries), args.keep, prefixes))
        for line in summary.splitlines():
            if line.startswith("rules") or line.startswith("geoip"):
                print("condgate -t: " + line[:160] + ("..." if len(line) > 160 else ""))
        med = {w: {k: statistics.median(v) for k, v in r.items()} for w, r in rows.items()}
        print("\nmedian of %d rounds   %12s %12s %8s" % (args.rounds, "condgate", "haproxy",
                                                       "ratio"))
        for key, label, scale, fmt in (("check_s", "check time (s)", 1, "%.2f"),
                                       ("check_kib", "check max RSS (MiB)", 1024, "%.1f"),
                                       ("ready_s", "start to ready (s)", 1, "%.2f"),
                                       ("run_kib", "running RSS (MiB)", 1024, "%.1f")):
            c, h = med["condgate"][key] / scale, med["haproxy"][key] / scale
            print("%-22s %12s %12s %8.2f" % (label, fmt % c, fmt % h, c / h if h else 0))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
