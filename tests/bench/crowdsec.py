#!/usr/bin/python3
"""CrowdSec startup figure of condgate (issue 15, SPEC §15): run by hand, not
by ctest. Needs Debian's crowdsec (the real Local API) and a condgate built
with libcurl.

1. Starts a private Local API (tests/e2e/crowdsec_lapi.py: `crowdsec -c COPY
   -no-cs` on a free port, its database in a temporary directory) and loads
   --decisions (100,000) ban decisions on 10.0.0.0, 10.0.0.1, ... with one
   `cscli decisions import` of a generated CSV, plus one on PROBE
   (127.0.0.77) to check that the bans are in force: the LAPI's load time.
2. Reads the startup stream once with urllib under a key of its own: the
   answer's size, decision count and time (what condgate will download).
3. Starts condgate (--condgate, default build/default/condgate) with
   [crowdsec] on that LAPI (interval_ms --interval-ms), the admin port and an
   echo listener; polls GET /stats every 20 ms until `crowdsec.decisions`
   reaches the decisions loaded and `up` and `last_sync` say the answer is
   applied, then prints: the time from the spawn to all
   decisions in force, `crowdsec.last_apply_ms` (parse + apply of the
   startup answer, condgate's own figure), the RSS of condgate with them
   against a run without [crowdsec], and checks that a connect from PROBE is
   refused (reset, refused or closed without its echo) while one from
   127.0.0.1 is echoed.

With --lapi-only, steps 1 and 2 only (no condgate needed).

    /usr/bin/python3 tests/bench/crowdsec.py [--decisions 100000]
        [--condgate build/default/condgate] [--interval-ms 1000]
        [--prefilter auto|refuse|drop|off]
        [--lapi-only] [--keep-tmp] [--json FILE]

Python 3 standard library, plus pytest importable (crowdsec_lapi.py and
cgtest.py import it; Debian's python3-pytest). Linux only (RSS from /proc).
Processes run in their own process groups and are stopped on exit or error;
the temporary directory is removed unless --keep-tmp or a failure.
"""

import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(REPO / "tests" / "e2e"))

from crowdsec_lapi import Lapi, installed  # noqa: E402
from cgtest import free_port  # noqa: E402
from bans import BenchError, loadavg, log, rss_stable  # noqa: E402  (shared bench helpers)

PROBE = "127.0.0.77"  # banned through the LAPI; a connect from it must fail
CLIENT = "127.0.0.1"  # never_ban by default; its connects must be echoed


def echo_from(src, port, timeout=2.0):
    """True when a 16-byte exchange from src through the listener echoes."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.bind((src, 0))
            s.connect(("127.0.0.1", port))
            s.sendall(b"x" * 16)
            got = b""
            while len(got) < 16:
                chunk = s.recv(16 - len(got))
                if not chunk:
                    return False
                got += chunk
            return True
    except OSError:
        return False


class Condgate:
    """One condgate process in its own process group, logging to a file."""

    def __init__(self, binary, cfg, logpath):
        self.log = logpath
        with open(logpath, "ab") as f:
            self.proc = subprocess.Popen([str(binary), "-c", str(cfg)],
                                         stdin=subprocess.DEVNULL, stdout=f, stderr=f,
                                         start_new_session=True)
        self.t0 = time.monotonic()

    def alive(self):
        return self.proc.poll() is None

    def tail(self, n=15):
        try:
            lines = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join("    " + ln for ln in lines[-n:])

    def stop(self):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


class Bench:
    def __init__(self, args):
        self.a = args
        self.tmp = Path(tempfile.mkdtemp(prefix="cgcrowdsec."))
        self.lapi = None
        self.gates = []
        self.out = {"decisions": args.decisions}

    def close(self):
        for g in self.gates:
            g.stop()
        if self.lapi is not None:
            self.lapi.stop()

    # -- the LAPI ---------------------------------------------------------------

    def load_lapi(self):
        ok, why = installed()
        if not ok:
            raise BenchError(why)
        self.lapi = Lapi(self.tmp / "lapi")
        t = time.monotonic()
        self.lapi.start()
        log("LAPI: %s up in %.2f s (crowdsec -c %s -no-cs)"
            % (self.lapi.url, time.monotonic() - t, self.lapi.config))
        secs = self.lapi.bulk_decisions(self.a.decisions, duration="4h")
        self.lapi.add_decision(ip=PROBE, duration="4h", reason="bench-probe")
        self.total = self.a.decisions + 1
        self.out["lapi_load_s"] = secs
        log("LAPI: %d decisions imported in %.2f s (%.0f/s, cscli decisions import)"
            % (self.a.decisions, secs, self.a.decisions / secs))

    def read_stream(self):
        """The startup stream as condgate will read it, timed with urllib."""
        key = self.lapi.add_bouncer("bench-probe")
        req = urllib.request.Request(self.lapi.url + "/v1/decisions/stream?startup=true",
                                     headers={"X-Api-Key": key})
        t = time.monotonic()
        with urllib.request.urlopen(req, timeout=600) as r:
            body = r.read()
        t_answer = time.monotonic() - t
        t = time.monotonic()
        n = len(json.loads(body)["new"] or [])
        t_json = time.monotonic() - t
        if n != self.total:
            raise BenchError("the startup stream holds %d decisions, not %d" % (n, self.total))
        self.out.update(stream_bytes=len(body), stream_s=t_answer, stream_python_json_s=t_json)
        log("stream: startup answer %d decisions, %.1f MB in %.2f s (Python's json.loads: "
            "%.2f s)" % (n, len(body) / 1e6, t_answer, t_json))

    # -- condgate ---------------------------------------------------------------

    def write_ini(self, name, crowdsec):
        port, admin = free_port(), free_port()
        key = self.tmp / "crowdsec.key"
        if crowdsec:
            key.write_text(self.lapi.add_bouncer("condgate-bench-%s" % name) + "\n")
            key.chmod(0o600)
        ini = self.tmp / ("%s.ini" % name)
        text = """; generated by tests/bench/crowdsec.py
[gateway]
workers = 1
log_level = info
max_bans = %d

[admin]
listen = 127.0.0.1:%d

[rules]
default = deny
allow = 127.0.0.0/8

[listener:echo]
bind = 127.0.0.1:%d
backend = echo
prefilter = %s
""" % (max(1000000, self.a.decisions + 1000), admin, port, self.a.prefilter)
        if crowdsec:
            text += """
[crowdsec]
url = %s
api_key_file = crowdsec.key
interval_ms = %d
timeout_ms = 60000
""" % (self.lapi.url, self.a.interval_ms)
        ini.write_text(text)
        r = subprocess.run([str(self.a.condgate), "-t", "-c", str(ini)], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=60)
        if r.returncode != 0:
            raise BenchError("condgate -t refuses %s:\n%s" % (ini, r.stdout))
        return ini, port, admin

    def stats(self, admin):
        c = http.client.HTTPConnection("127.0.0.1", admin, timeout=10)
        try:
            c.request("GET", "/stats")
            r = c.getresponse()
            body = r.read()
        finally:
            c.close()
        if r.status != 200:
            raise BenchError("GET /stats: %d %r" % (r.status, body[:200]))
        return json.loads(body)

    def start(self, name, crowdsec):
        ini, port, admin = self.write_ini(name, crowdsec)
        g = Condgate(self.a.condgate, ini, self.tmp / ("%s.log" % name))
        self.gates.append(g)
        while True:
            if not g.alive():
                raise BenchError("condgate exited (%d) while starting; its log:\n%s"
                                 % (g.proc.returncode, g.tail()))
            if time.monotonic() - g.t0 > self.a.timeout:
                raise BenchError("condgate not serving after %d s:\n%s" % (self.a.timeout,
                                                                           g.tail()))
            try:
                st = self.stats(admin)
                if echo_from(CLIENT, port):
                    return g, port, admin, st
            except (OSError, http.client.HTTPException, ValueError):
                pass
            time.sleep(0.02)

    def baseline(self):
        g, _, _, _ = self.start("baseline", crowdsec=False)
        self.out["rss_baseline_kib"] = rss_stable(g.proc.pid)
        g.stop()
        self.gates.remove(g)

    def sync(self):
        g, port, admin, st = self.start("crowdsec", crowdsec=True)
        t_serving = time.monotonic() - g.t0
        while True:
            cs = st.get("crowdsec")
            if cs is None:
                raise BenchError("/stats has no \"crowdsec\" object: %s"
                                 % json.dumps(st)[:400])
            # decisions counts the ban table live, while the answer is being
            # applied; up and last_sync are set once the whole answer is in.
            if cs.get("decisions", 0) >= self.total and cs.get("last_sync") and cs.get("up"):
                break
            if not g.alive():
                raise BenchError("condgate exited (%d); its log:\n%s"
                                 % (g.proc.returncode, g.tail()))
            if time.monotonic() - g.t0 > self.a.timeout:
                raise BenchError("only %s of %d decisions after %d s; /stats crowdsec: %s\n%s"
                                 % (cs.get("decisions"), self.total, self.a.timeout,
                                    json.dumps(cs), g.tail()))
            time.sleep(0.02)
            st = self.stats(admin)
        t_all = time.monotonic() - g.t0
        self.out["loadavg"] = loadavg()
        rss = rss_stable(g.proc.pid)
        refused = not echo_from(PROBE, port)
        echoed = echo_from(CLIENT, port)
        self.out.update(condgate_serving_s=t_serving, condgate_all_decisions_s=t_all,
                        last_apply_ms=cs.get("last_apply_ms"), crowdsec_stats=cs,
                        rss_kib=rss, probe_refused=refused, client_echoed=echoed)
        base = self.out.get("rss_baseline_kib")
        log("condgate: serving %.2f s after the spawn; all %d decisions in force %.2f s after "
            "it; last_apply_ms %s; RSS %s KiB%s"
            % (t_serving, cs["decisions"], t_all, cs.get("last_apply_ms"), rss,
               " (without [crowdsec]: %s KiB, +%.0f B per decision)"
               % (base, (rss - base) * 1024 / self.total) if base and rss else ""))
        log("condgate: /stats crowdsec %s" % json.dumps(cs))
        log("load average: %s" % self.out["loadavg"])
        if not refused or not echoed:
            raise BenchError("a connect from %s was %s and one from %s %s"
                             % (PROBE, "refused" if refused else "ECHOED (not banned)",
                                CLIENT, "echoed" if echoed else "NOT echoed"))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--decisions", type=int, default=100000)
    p.add_argument("--condgate", default=str(REPO / "build" / "default" / "condgate"))
    p.add_argument("--interval-ms", type=int, default=1000)
    p.add_argument("--prefilter", default="auto", choices=("auto", "refuse", "drop", "off"),
                   help="the listener's kernel prefilter (every ban goes into its map too)")
    p.add_argument("--timeout", type=int, default=300, help="seconds to wait for condgate")
    p.add_argument("--lapi-only", action="store_true",
                   help="load the LAPI and time its startup stream only")
    p.add_argument("--keep-tmp", action="store_true")
    p.add_argument("--json", help="write the figures to this file")
    a = p.parse_args()
    if not (1 <= a.decisions <= 10000000):
        p.error("--decisions: 1..10000000")
    if not a.lapi_only and not os.access(a.condgate, os.X_OK):
        p.error("%s is not an executable (cmake --preset default && cmake --build --preset "
                "default --target condgate), or use --lapi-only" % a.condgate)
    b = Bench(a)
    ok = False
    try:
        b.load_lapi()
        b.read_stream()
        if not a.lapi_only:
            b.baseline()
            b.sync()
        ok = True
    except BenchError as e:
        log("FAILED: %s" % e)
    finally:
        b.close()
        if a.json:
            Path(a.json).write_text(json.dumps(b.out, indent=2) + "\n")
        print(json.dumps(b.out, indent=2))
        if ok and not a.keep_tmp:
            shutil.rmtree(b.tmp, ignore_errors=True)
        else:
            log("kept %s" % b.tmp)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
