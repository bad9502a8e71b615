#!/usr/bin/python3
"""condgate side by side with HAProxy and nginx (issue 6).

One run starts the backends (cgload serve), then, scenario by scenario and
round by round, condgate, HAProxy (tcp mode, `tcp-request connection
reject`) and nginx's stream module (`allow`/`deny`) on the same rules, the
same backends and the same thread count, drives each with cgload in turn
(direct to the backend first, as the ceiling), and prints one table of
medians and ratios condgate / peer. See tests/bench/README.md ("compare.py").

Python 3 standard library only. Linux only (cgload is epoll, /proc is read
for memory and CPU). Every child runs in its own process group and is killed
on exit, error or Ctrl+C.
"""

import argparse
import http.client
import json
import os
import platform
import random
import resource
import select
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent

SCENARIOS = ("conn", "reject", "bulk", "idle", "bigrules", "limits", "proxy")
CONTENDERS = ("direct", "condgate", "condgate-off", "condgate-nolim", "haproxy", "nginx")
PROXIES = ("condgate", "condgate-off", "haproxy", "nginx")
# ratio columns condgate / peer (condgate-off: what the kernel prefilter
# changes; condgate-nolim: what the per-source limits change)
PEERS = ("haproxy", "nginx", "condgate-off", "condgate-nolim")
PEER_HEAD = {"condgate-off": "cg/off", "condgate-nolim": "cg/nolim"}
# condgate-off (prefilter = off: every caller judged after accept) is measured
# only in these, to keep the run time; bigrules starts it once per round for
# the start->serving time only
OFF_SCENARIOS = ("conn", "reject")
# The limits scenario compares condgate with itself: per-source limits on
# (and a source table pre-filled with --sources sources) against the same
# configuration without limits (condgate-nolim, measured in limits only).
# The limits are set so high that no caller is ever refused by them.
LIMITS_SCENARIOS = ("limits",)
LIMITS_ON = {"max_per_source": "100000", "rate_per_source": "1000000/s",
             "source_prefix": "32, 64"}
PREFILL_FIRST = (127 << 24) | (1 << 16)  # 127.1.0.0: the pre-fill's first source
# --prefilter: both = condgate with prefilter = refuse and condgate-off (the
# default); refuse = condgate with refuse alone, and an error if the kernel
# prefilter cannot be loaded (no quiet fall-back to off); off = condgate with
# prefilter = off alone (the prefilter targets then read "not measured")
PREFILTER_CHOICES = ("both", "refuse", "off")
PF_OFF_ASKED = "--prefilter off asked"
# The proxy scenario compares each of condgate and HAProxy with itself: the
# conn listener accepting a PROXY header from trusted senders (cgload, which
# names its own address) and sending one to its backends (cgload serve
# --proxy-vN, which skips it), against the plain configuration. Variant
# "proxy" of the configurations; only the conn listener changes.
TRUSTED_NET = "127.0.10.0/24"  # trusted_proxies: the allowed sources and the probe
PP2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"

# The rules, identical for the three proxies (10 entries in the small set):
#   allow 127.0.0.0/8, deny 127.66.0.0/16, deny 8 random prefixes outside
#   127.0.0.0/8, everything else denied by default.
ALLOW_NET = "127.0.0.0/8"
DENY_NET = "127.66.0.0/16"
SMALL_RANDOM = 8
ALLOWED_SRC = "127.0.10.1-127.0.10.16"  # allowed by the explicit allow rule
DENIED_SRC = "127.66.0.1-127.66.0.8"  # denied by the explicit deny rule
PROBE_SRC = "127.0.10.100"  # readiness probes (allowed)
MAX_PREFILL = 1 << 20  # cgload's --src limit; 127.1.0.0 + 2^20 stays below 127.66/16
NGINX_MODULE = "/usr/lib/nginx/modules/ngx_stream_module.so"
APT_HINT = "install them with: sudo apt-get install -y haproxy nginx libnginx-mod-stream"

REQ_SIZE = 64  # request bytes; the reply backends answer with as many
NBACKENDS = 4  # backend ports per backend set (TIME_WAIT cap per port pair)


class BenchError(Exception):
    """A failure with a message meant for the user."""


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------
# /proc helpers

def _stat_fields(pid):
    with open(f"/proc/{pid}/stat", "r", encoding="ascii", errors="replace") as f:
        s = f.read()
    return s[s.rindex(")") + 2:].split()


def group_pids(pgid):
    """Live processes whose process group is pgid (a proxy and its workers)."""
    pids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            st = _stat_fields(d)
        except (OSError, ValueError):
            continue
        if int(st[2]) == pgid and st[0] not in ("Z", "X"):
            pids.append(int(d))
    return pids


def rss_kib(pids):
    """Sum of the resident set (Rss of smaps_rollup, else VmRSS) in KiB."""
    total = 0
    for pid in pids:
        val = None
        try:
            with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as f:
                for line in f:
                    if line.startswith("Rss:"):
                        val = int(line.split()[1])
                        break
        except OSError:
            pass
        if val is None:
            try:
                with open(f"/proc/{pid}/status", encoding="ascii") as f:
                    for line in f:
                        if line.startswith("VmRSS:"):
                            val = int(line.split()[1])
                            break
            except OSError:
                pass
        total += val or 0
    return total


CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids):
    """User + system CPU time of the processes (all their threads)."""
    total = 0
    for pid in pids:
        try:
            st = _stat_fields(pid)
            total += int(st[11]) + int(st[12])
        except (OSError, ValueError, IndexError):
            pass
    return total / CLK_TCK


def cpu_times():
    """The machine's CPU time by kind (the first line of /proc/stat)."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            v = [int(x) for x in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    return dict(zip(("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal"), v))


def busy_ticks(ct):
    """Non-idle CPU time of the whole machine in clock ticks: user, nice,
    system, irq, softirq (idle, iowait and the hypervisor's steal left out).
    On a shared machine this counts everyone's work, not only the
    benchmark's."""
    return sum(ct[k] for k in ("user", "nice", "system", "irq", "softirq"))


def machine_us(ct0, ct1, n):
    """The whole machine's non-idle CPU (busy_ticks) between two cpu_times()
    readings, in us per unit of work (n units: exchanges, rejected callers),
    or None without readings or units."""
    if not (n and ct0 and ct1):
        return None
    return 1e6 * (busy_ticks(ct1) - busy_ticks(ct0)) / CLK_TCK / n


# Names of the prefilter's maps in src/bpf/prefilter.bpf.c (the kernel keeps
# the first 15 characters); a generation's table is created by the process.
PF_MAP_NAMES = ("listeners", "filters", "tables", "counters", "cg_pf")


def bpf_maps(bpftool):
    """`bpftool -j map show` as a list, or a string saying why not."""
    if not bpftool:
        return "bpftool not found (Debian package bpftool)"
    try:
        r = subprocess.run([bpftool, "-j", "map", "show"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"bpftool failed: {e}"
    if r.returncode != 0:
        return f"bpftool -j map show: status {r.returncode}: {r.stderr.strip()[:200]}"
    try:
        return json.loads(r.stdout or "[]")
    except ValueError as e:
        return f"bpftool printed no JSON: {e}"


def prefilter_map_bytes(maps, pids, before_ids):
    """bytes_memlock of the prefilter's maps: those the condgate processes
    hold a descriptor of (bpftool's `pids`), plus maps that appeared since
    before_ids without an owner but with one of the prefilter's names (a
    generation's table held only by the outer map). Returns (bytes, maps)."""
    pids = set(pids)
    total, used = 0, []
    for m in maps:
        owners = {o.get("pid") for o in m.get("pids", [])}
        name = m.get("name", "")
        mine = bool(owners & pids) or (
            not owners and m.get("id") not in before_ids and name.startswith(PF_MAP_NAMES))
        if mine:
            total += int(m.get("bytes_memlock", 0))
            used.append({k: m.get(k) for k in ("id", "name", "type", "max_entries",
                                               "bytes_memlock")})
    return total, used


def tw_buckets():
    try:
        with open("/proc/sys/net/ipv4/tcp_max_tw_buckets", encoding="ascii") as f:
            return f"{int(f.read()):,}"
    except (OSError, ValueError):
        return "?"


def loadavg():
    try:
        with open("/proc/loadavg", encoding="ascii") as f:
            return [float(x) for x in f.read().split()[:3]]
    except OSError:
        return None


# ---------------------------------------------------------------------------
# Child processes

class Procs:
    """Every child in its own process group; stop_all() kills them all."""

    def __init__(self, logdir):
        self.logdir = logdir
        self.live = []
        self.seq = 0

    def spawn(self, name, argv, stdout=None, cwd=None):
        self.seq += 1
        logpath = self.logdir / f"{self.seq:04d}-{name}.log"
        with open(logpath, "ab") as logf:
            logf.write(("$ " + " ".join(str(a) for a in argv) + "\n").encode())
            logf.flush()
            p = subprocess.Popen([str(a) for a in argv], stdin=subprocess.DEVNULL,
                                 stdout=logf if stdout is None else stdout, stderr=logf,
                                 cwd=cwd, start_new_session=True)
        p.cg_name = name
        p.cg_log = logpath
        self.live.append(p)
        return p

    def stop(self, p, sig=signal.SIGTERM, grace=10.0):
        if p.poll() is None:
            try:
                os.killpg(p.pid, sig)
            except ProcessLookupError:
                pass
            try:
                p.wait(grace)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait()
        # whatever is left of its group (workers outliving their master)
        for pid in group_pids(p.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for f in (p.stdout,):
            if f:
                try:
                    f.close()
                except OSError:
                    pass
        if p in self.live:
            self.live.remove(p)

    def stop_all(self):
        for p in reversed(list(self.live)):
            self.stop(p, grace=3.0)


def log_tail(p, n=12):
    try:
        lines = Path(p.cg_log).read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join("    " + ln for ln in lines[-n:])


# ---------------------------------------------------------------------------
# Sockets

def port_free(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


class Ports:
    def __init__(self, base):
        self.next = base

    def take(self):
        while self.next < 65535:
            p = self.next
            self.next += 1
            if port_free(p):
                return p
        raise BenchError("no free TCP port left above --port-base")


def proxy_header(version, src, dst):
    """A PROXY protocol header (v1 or v2, TCP over IPv4) naming src as the
    client and dst as the destination, both (address, port)."""
    if version == 1:
        return f"PROXY TCP4 {src[0]} {dst[0]} {src[1]} {dst[1]}\r\n".encode("ascii")
    return (PP2_SIG + bytes((0x21, 0x11, 0, 12)) + socket.inet_aton(src[0])
            + socket.inet_aton(dst[0]) + struct.pack("!HH", src[1], dst[1]))


def probe(port, deadline, proc, exchange=True, proxy=None):
    """Wait until 127.0.0.1:port accepts (and, with exchange, answers a
    64-byte request with data: the proxy relays). With proxy (1 or 2) the
    request starts with a PROXY header of that version naming the probe's
    own address. Polls every 2 ms."""
    payload = b"p" * REQ_SIZE
    while True:
        if proc is not None and proc.poll() is not None:
            raise BenchError(f"{proc.cg_name} exited with status {proc.returncode} before "
                             f"serving port {port}; its log ({proc.cg_log}):\n{log_tail(proc)}")
        left = deadline - time.monotonic()
        if left <= 0:
            raise BenchError(f"port {port} not ready in time"
                             + (f"; log of {proc.cg_name}:\n{log_tail(proc)}" if proc else ""))
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.settimeout(min(left, 30.0))
                s.bind((PROBE_SRC, 0))
                s.connect(("127.0.0.1", port))
                if not exchange:
                    return
                hdr = proxy_header(proxy, s.getsockname(), ("127.0.0.1", port)) if proxy else b""
                s.sendall(hdr + payload)
                if s.recv(REQ_SIZE):
                    return
        except OSError:
            pass
        time.sleep(0.002)


# ---------------------------------------------------------------------------
# The rule lists

def fmt_prefix(net, plen):
    a = f"{net >> 24}.{(net >> 16) & 255}.{(net >> 8) & 255}.{net & 255}"
    return a if plen == 32 else f"{a}/{plen}"


# Prefix lengths of the random deny entries: mostly hosts and /24s, like
# reputation and country lists, some shorter networks.
_PLENS = [32] * 40 + [24] * 25 + [16] * 3 + [20] * 5 + [22] * 6 + [23] * 6 + \
         [28] * 5 + [29] * 5 + [30] * 5


def random_prefixes(n, seed):
    """n distinct random IPv4 prefixes (/16-/32) in unicast space outside
    0.0.0.0/8 and 127.0.0.0/8 (so no allowed source is covered),
    deterministic for a seed."""
    rng = random.Random(seed)
    seen = set()
    out = []
    while len(out) < n:
        a = rng.getrandbits(32)
        if a >> 24 in (0, 127) or a >> 24 >= 224:
            continue
        plen = rng.choice(_PLENS)
        net = a & (0xFFFFFFFF << (32 - plen)) & 0xFFFFFFFF
        key = net << 6 | plen
        if key in seen:
            continue
        seen.add(key)
        out.append((net, plen))
    return out


def write_lists(tmp, nbig, seed, with_big):
    """allow.lst, deny-small.lst (10 entries with the allow) and, if asked,
    deny-big.lst (nbig deny entries). The small list is the head of the big
    one."""
    lists = {"allow": tmp / "allow.lst", "small": tmp / "deny-small.lst"}
    lists["allow"].write_text(f"# generated by compare.py\n{ALLOW_NET}\n")
    count = max(SMALL_RANDOM, nbig - 1) if with_big else SMALL_RANDOM
    t0 = time.monotonic()
    pref = random_prefixes(count, seed)
    small = [DENY_NET] + [fmt_prefix(*p) for p in pref[:SMALL_RANDOM]]
    lists["small"].write_text("\n".join(small) + "\n")
    lists["small_entries"] = small
    if with_big:
        lists["big"] = tmp / "deny-big.lst"
        with open(lists["big"], "w", encoding="ascii") as f:
            f.write(DENY_NET + "\n")
            f.write("\n".join(fmt_prefix(*p) for p in pref[:nbig - 1]))
            f.write("\n")
        log(f"  generated {nbig:,} deny entries (seed {seed}) in {time.monotonic() - t0:.1f} s")
    return lists


# ---------------------------------------------------------------------------
# The contenders

class Proxy:
    name = "?"

    def __init__(self, bench):
        self.b = bench
        self.conn_port = bench.ports.take()
        self.echo_port = bench.ports.take()

    def config(self, variant):
        raise NotImplementedError

    def argv(self, cfg):
        raise NotImplementedError

    def check_argv(self, cfg):
        raise NotImplementedError


class Condgate(Proxy):
    """condgate with the kernel prefilter refusing denied callers before any
    handshake (`prefilter = refuse`), or `off` when it cannot be loaded.
    In the limits scenario (variant "limits") it also has per-source limits
    on both listeners (LIMITS_ON) and its admin port open (GET /stats)."""
    name = "condgate"
    prefilter = "refuse"
    limits = True  # per-source limits in the "limits" variant

    def __init__(self, bench):
        super().__init__(bench)
        self.admin_port = bench.ports.take() if "limits" in bench.args.only else None

    def config(self, variant):
        b = self.b
        path = b.tmp / f"{self.name}-{variant}.ini"
        pxy = variant == "proxy"
        rb = ", ".join(f"127.0.0.1:{p}" for p in (b.proxy_ports if pxy else b.reply_ports))
        eb = ", ".join(f"127.0.0.1:{p}" for p in b.echo_ports)
        lim = variant == "limits"
        deny = b.lists["small" if lim or pxy else variant]
        admin = f"127.0.0.1:{self.admin_port}" if lim else "off"
        per = ""
        if lim and self.limits:
            per = ("; per-source limits on, never reached\n"
                   + "".join(f"{k} = {v}\n" for k, v in LIMITS_ON.items()))
        elif lim:
            per = "; per-source limits off (no source is tracked)\n"
        table = "; the default, said aloud\nsource_table_max = 1000000\n" if lim else ""
        pp = ""
        if pxy:
            v = f"v{b.args.proxy_version}"
            pp = (f"; PROXY protocol from cgload (trusted), to cgload serve --proxy-{v}\n"
                  f"accept_proxy = {v}\ntrusted_proxies = {TRUSTED_NET}\nsend_proxy = {v}\n")
        path.write_text(f"""; generated by tests/bench/compare.py
[gateway]
workers = {b.args.condgate_workers}
max_connections = {b.conn_limit}
drain_timeout_ms = 1000
; reject lines are info: warn logs nothing per connection
log_level = warn
{table}
[admin]
listen = {admin}

[rules]
default = deny
allow_file = {b.lists['allow']}
deny_file = {deny}

[listener:conn]
bind = 127.0.0.1:{self.conn_port}
backend = {rb}
connect_timeout_ms = 3000
idle_timeout_ms = 300000
prefilter = {self.prefilter}
{per}{pp}
[listener:echo]
bind = 127.0.0.1:{self.echo_port}
backend = {eb}
connect_timeout_ms = 3000
idle_timeout_ms = 300000
prefilter = {self.prefilter}
{per}""")
        return path

    def argv(self, cfg):
        return [self.b.condgate, "-c", cfg]

    def check_argv(self, cfg):
        return [self.b.condgate, "-t", "-c", cfg]


class CondgateOff(Condgate):
    """The same condgate, the same rules, with `prefilter = off`: every
    caller is accepted, then judged (the behaviour before the prefilter)."""
    name = "condgate-off"
    prefilter = "off"


class CondgateNoLim(Condgate):
    """The condgate of the limits scenario without per-source limits: the
    same configuration, admin port and prefilter, no max_per_source,
    rate_per_source or source_prefix (so no source is tracked)."""
    name = "condgate-nolim"
    limits = False


class HAProxy(Proxy):
    name = "haproxy"

    def config(self, variant):
        b = self.b
        path = b.tmp / f"haproxy-{variant}.cfg"
        pxy = variant == "proxy"
        deny = b.lists["small" if pxy else variant]
        rules = (f"    tcp-request connection reject if {{ src -f {deny} }}\n"
                 f"    tcp-request connection reject unless {{ src -f {b.lists['allow']} }}\n")
        bind_opt, crules, send = "", rules, ""
        if pxy:
            # accept-proxy: "tcp-request connection" rules see the sender (the
            # trusted_proxies check), "tcp-request session" rules run once the
            # header is read and see the client it names (condgate's rules)
            bind_opt = " accept-proxy"
            crules = (f"    tcp-request connection reject unless {{ src {TRUSTED_NET} }}\n"
                      + rules.replace("tcp-request connection", "tcp-request session"))
            send = " send-proxy-v2" if b.args.proxy_version == 2 else " send-proxy"
        rs = "".join(f"    server r{i} 127.0.0.1:{p}{send}\n"
                     for i, p in enumerate(b.proxy_ports if pxy else b.reply_ports, 1))
        es = "".join(f"    server e{i} 127.0.0.1:{p}\n" for i, p in enumerate(b.echo_ports, 1))
        path.write_text(f"""# generated by tests/bench/compare.py
global
    nbthread {b.args.threads}
    maxconn {b.conn_limit}
    # no "log" line: nothing is logged

defaults
    mode tcp
    maxconn {b.conn_limit}
    timeout connect 3s
    timeout client 300s
    timeout server 300s

frontend conn
    bind 127.0.0.1:{self.conn_port}{bind_opt}
{crules}    default_backend reply

frontend echo
    bind 127.0.0.1:{self.echo_port}
{rules}    default_backend echo

backend reply
    balance roundrobin
{rs}
backend echo
    balance roundrobin
{es}""")
        return path

    def argv(self, cfg):
        return [self.b.haproxy, "-f", cfg, "-db"]

    def check_argv(self, cfg):
        return [self.b.haproxy, "-c", "-q", "-f", cfg]


class Nginx(Proxy):
    name = "nginx"

    def config(self, variant):
        if variant != "small":
            raise BenchError("nginx runs only with the 10-entry rules")
        b = self.b
        path = b.tmp / "nginx.conf"
        acl = "".join(f"        deny {e};\n" for e in b.lists["small_entries"])
        acl += f"        allow {ALLOW_NET};\n        deny all;\n"
        rs = "".join(f"        server 127.0.0.1:{p};\n" for p in b.reply_ports)
        es = "".join(f"        server 127.0.0.1:{p};\n" for p in b.echo_ports)
        path.write_text(f"""# generated by tests/bench/compare.py
load_module {b.nginx_module};
worker_processes {b.args.threads};
worker_rlimit_nofile {b.nofile};
# crit: nginx logs every denied caller at "error" ("access forbidden by rule")
error_log {b.tmp}/nginx-error.log crit;

events {{
    worker_connections {2 * b.conn_limit};
}}

stream {{
    # no access_log: the stream module logs nothing per session by default
    upstream reply {{
{rs}    }}
    upstream echo {{
{es}    }}
    server {{
        listen 127.0.0.1:{self.conn_port};
{acl}        proxy_pass reply;
        proxy_connect_timeout 3s;
        proxy_timeout 300s;
    }}
    server {{
        listen 127.0.0.1:{self.echo_port};
{acl}        proxy_pass echo;
        proxy_connect_timeout 3s;
        proxy_timeout 300s;
    }}
}}
""")
        return path

    def _base(self, cfg):
        return [self.b.nginx, "-p", f"{self.b.tmp}/", "-e", f"{self.b.tmp}/nginx-error.log",
                "-c", cfg]

    def argv(self, cfg):
        return self._base(cfg) + ["-g", f"daemon off; pid {self.b.tmp}/nginx.pid;"]

    def check_argv(self, cfg):
        return self._base(cfg) + ["-q", "-t", "-g", f"daemon off; pid {self.b.tmp}/nginx.pid;"]


class Running:
    def __init__(self, proc, ready_s):
        self.proc = proc
        self.ready_s = ready_s

    def pids(self):
        return group_pids(self.proc.pid)


# ---------------------------------------------------------------------------
# Statistics and formatting

def med(vals):
    return statistics.median(vals) if vals else None


def span(lo, hi):
    """min-max of two formatted numbers; "lo to hi" when one is negative."""
    return f"{lo} to {hi}" if lo.startswith("-") or hi.startswith("-") else f"{lo}-{hi}"


def fmt_num(v, kind):
    if v is None:
        return "-"
    if kind in ("f1", "f2", "f3") and round(v, int(kind[1])) == 0:
        v = 0.0  # no "-0.0"
    if kind == "int":
        return f"{v:,.0f}"
    if kind == "f1":
        return f"{v:,.1f}"
    if kind == "f2":
        return f"{v:.2f}"
    if kind == "f3":
        return f"{v:.3f}"
    return str(v)


# figure key, label, better (high/low), format, scenario
FIGURES = [
    ("conn_rate", "allowed conn/s (32 in flight)", "high", "int", "conn"),
    ("conn_p50", "  exchange latency p50 us", "low", "int", "conn"),
    ("conn_p99", "  exchange latency p99 us", "low", "int", "conn"),
    ("conn_cpu", "  proxy CPU % (of 1 core)", "low", "int", "conn"),
    ("conn_cpu_us", "  proxy CPU us per exchange", "low", "f1", "conn"),
    ("conn_machine_us", "  machine CPU us per exchange", "low", "f1", "conn"),
    ("conn_rest_us", "  machine - proxy us per exchange", "low", "f1", "conn"),
    ("reject_rate", "rejected callers/s (denied src)", "high", "int", "reject"),
    ("reject_cpu_us", "  proxy CPU us per reject", "low", "f1", "reject"),
    ("reject_machine_us", "  machine CPU us per reject", "low", "f1", "reject"),
    ("reject_vs_haproxy", "  rejected/s / HAProxy's", "high", "f2", "reject"),
    ("bulk_tx", "bulk MB/s client->backend", "high", "int", "bulk"),
    ("bulk_rx", "bulk MB/s backend->client", "high", "int", "bulk"),
    ("bulk_cpu", "  proxy CPU % (of 1 core)", "low", "int", "bulk"),
    ("idle_bytes", "bytes per idle conn (RSS)", "low", "int", "idle"),
    ("big_ready", "1M list: start->serving s", "low", "f2", "bigrules"),
    ("big_kernel_s", "  kernel table load s (vs off)", "low", "f2", "bigrules"),
    ("big_kernel_mib", "1M list: kernel maps MiB", "low", "f1", "bigrules"),
    ("big_check", "1M list: -t / -c check s", "low", "f2", "bigrules"),
    ("big_rss", "1M list: RSS MiB", "low", "f1", "bigrules"),
    ("big_growth", "1M list: RSS over 10-entry MiB", "low", "f1", "bigrules"),
    ("small_rate", "conn/s, 10 entries", "high", "int", "bigrules"),
    ("big_rate", "conn/s, 1M entries", "high", "int", "bigrules"),
    ("big_conn_ratio", "conn/s 1M / 10 entries", "high", "f3", "bigrules"),
    ("big_cpu_ratio", "  CPU per exchange 1M / 10", "low", "f3", "bigrules"),
    ("lim_prefill_rate", "limits: pre-fill conn/s (new srcs)", "high", "int", "limits"),
    ("lim_tracked", "limits: sources tracked", "-", "int", "limits"),
    ("lim_rss_per_src", "limits: RSS growth B per source", "low", "f1", "limits"),
    ("lim_table_per_src", "  source table B per source", "low", "f1", "limits"),
    ("lim_rate", "limits: allowed conn/s, 100k srcs", "high", "int", "limits"),
    ("lim_p50", "  exchange latency p50 us", "low", "int", "limits"),
    ("lim_p99", "  exchange latency p99 us", "low", "int", "limits"),
    ("lim_cpu", "  proxy CPU % (of 1 core)", "low", "int", "limits"),
    ("lim_cpu_us", "  proxy CPU us per exchange", "low", "f1", "limits"),
    ("lim_cpu_diff", "  CPU us per exchange, on - off", "low", "f2", "limits"),
    ("px_plain_rate", "proxy: allowed conn/s, no PROXY", "high", "int", "proxy"),
    ("px_rate", "proxy: conn/s, PROXY in + out", "high", "int", "proxy"),
    ("px_ratio", "  conn/s, PROXY / no PROXY", "high", "f3", "proxy"),
    ("px_gap", "  that ratio, condgate - HAProxy", "high", "f3", "proxy"),
    ("px_p50", "  PROXY: latency p50 us", "low", "int", "proxy"),
    ("px_p99", "  PROXY: latency p99 us", "low", "int", "proxy"),
    ("px_plain_cpu_us", "  proxy CPU us/exchange, no PROXY", "low", "f1", "proxy"),
    ("px_cpu_us", "  proxy CPU us/exchange, PROXY", "low", "f1", "proxy"),
    ("px_cpu_diff", "  CPU us/exchange, PROXY - no", "low", "f2", "proxy"),
]
FIG = {f[0]: f for f in FIGURES}

# Figures per contender shown without a condgate / peer ratio
NO_RATIO = ("big_conn_ratio", "big_cpu_ratio", "reject_vs_haproxy", "big_kernel_s",
            "lim_tracked", "lim_rss_per_src", "lim_table_per_src", "lim_cpu_diff",
            "px_ratio", "px_gap", "px_cpu_diff")

# figure, peer (None: condgate's own value), comparison, bound, what, and
# whether it needs the kernel prefilter (not measured when condgate cannot
# load it and runs with prefilter = off)
TARGETS = [
    ("conn_rate", "haproxy", ">=", 1.10, "allowed conn/s >= 1.10 x HAProxy", False),
    ("conn_rate", "nginx", ">=", 1.10, "allowed conn/s >= 1.10 x nginx", False),
    ("reject_rate", "haproxy", ">=", 1.5,
     "rejected callers/s, prefilter refuse >= 1.5 x HAProxy", True),
    ("reject_cpu_us", "haproxy", "<=", 0.2,
     "condgate CPU per rejected caller <= 0.2 x HAProxy's", True),
    ("conn_rate", "condgate-off", ">=", 0.98,
     "allowed conn/s, prefilter refuse >= 0.98 x prefilter off", True),
    ("bulk_tx", "haproxy", ">=", 1.0, "bulk MB/s client->backend >= HAProxy", False),
    ("bulk_rx", "haproxy", ">=", 1.0, "bulk MB/s backend->client >= HAProxy", False),
    ("idle_bytes", "haproxy", "<=", 1.0, "bytes per idle connection <= HAProxy", False),
    ("big_conn_ratio", None, ">=", 0.97, "conn/s with 1M entries within 3 % of 10 entries",
     False),
    ("big_ready", "haproxy", "<=", 1 / 3, "1M list load time <= 1/3 of HAProxy", False),
    ("big_rss", "haproxy", "<=", 1 / 3, "1M list RSS <= 1/3 of HAProxy", False),
    ("big_kernel_mib", None, "<=", 128.0, "1M list in the kernel prefilter's maps <= 128 MiB",
     True),
    ("conn_p99", "haproxy", "<=", 0.9, "p99 latency of an allowed exchange <= 0.9 x HAProxy",
     False),
    ("conn_cpu_us", "haproxy", "<=", 0.75, "proxy CPU per relayed exchange <= 0.75 x HAProxy",
     False),
    ("conn_cpu_us", "nginx", "<=", 0.8, "proxy CPU per relayed exchange <= 0.8 x nginx", False),
    ("lim_rate", "condgate-nolim", ">=", 0.97,
     "allowed conn/s, per-source limits on with 100k sources tracked >= 0.97 x limits off",
     False),
    ("px_gap", None, ">=", -0.03,
     "conn/s with PROXY in + out / without: condgate's ratio >= HAProxy's - 0.03", False),
]


# ---------------------------------------------------------------------------
# The benchmark

class Bench:
    def __init__(self, args):
        self.args = args
        self.samples = []  # every measurement, raw cgload output included
        self.values = {}  # figure -> contender -> {round: value}
        self.notes = []
        self.unmeasured = {}  # figure -> why it was not measured
        self.pf_why = None  # why condgate runs without its prefilter (None: it has it)
        self.pf_modes = None  # what condgate -t said about each listener's prefilter
        self.cpu_start = cpu_times()
        self.procs = None
        self.tmp = None

    # -- setup ---------------------------------------------------------------

    def find_tools(self):
        a = self.args
        want = set(a.contenders)
        self.haproxy = shutil.which(a.haproxy) if "haproxy" in want else None
        self.nginx = shutil.which(a.nginx) if "nginx" in want else None
        self.nginx_module = a.nginx_module
        self.bpftool = shutil.which("bpftool") or next(
            (p for p in ("/usr/sbin/bpftool", "/sbin/bpftool") if os.access(p, os.X_OK)), None)
        missing = []
        if "haproxy" in want and not self.haproxy:
            missing.append(f"haproxy ('{a.haproxy}' not found; Debian package haproxy)")
        if "nginx" in want:
            if not self.nginx:
                missing.append(f"nginx ('{a.nginx}' not found; Debian package nginx)")
            if not Path(self.nginx_module).is_file():
                missing.append(f"nginx stream module ({self.nginx_module} missing; Debian "
                               f"package libnginx-mod-stream)")
        if missing:
            raise BenchError("missing: " + "; ".join(missing) + "\n  " + APT_HINT +
                             "\n  (or leave them out with --contenders direct,condgate)")

    def build(self):
        a = self.args
        bdir = Path(a.build_dir).resolve() if a.build_dir else REPO / "build" / "bench"
        self.condgate = bdir / "condgate"
        self.cgload_bin = bdir / "tests" / "cgload"
        have = self.condgate.is_file() and self.cgload_bin.is_file()
        if a.no_build:
            if not have:
                raise BenchError(f"{self.condgate} or {self.cgload_bin} missing and --no-build "
                                 f"given; build with: cmake -S . -B {bdir} "
                                 "-DCMAKE_BUILD_TYPE=Release -DCG_BUILD_TESTS=ON && cmake "
                                 f"--build {bdir} --target condgate cgload")
        else:
            if shutil.which("cmake") is None:
                raise BenchError("cmake not found (sudo apt-get install -y cmake build-essential)")
            if not (bdir / "CMakeCache.txt").is_file():
                log(f"configuring {bdir} (Release)")
                self.run_build(["cmake", "-S", str(REPO), "-B", str(bdir),
                                "-DCMAKE_BUILD_TYPE=Release", "-DCG_BUILD_TESTS=ON"])
            log(f"building condgate and cgload in {bdir}")
            try:
                self.run_build(["cmake", "--build", str(bdir), "--target", "condgate",
                                "cgload", "-j", str(os.cpu_count() or 2)])
            except BenchError as e:
                if have:
                    raise BenchError(f"{e}\n(--no-build runs the binaries already in {bdir})")
                raise
        cache = bdir / "CMakeCache.txt"
        btype = "?"
        if cache.is_file():
            for line in cache.read_text(errors="replace").splitlines():
                if line.startswith("CMAKE_BUILD_TYPE:"):
                    btype = line.split("=", 1)[1] or "(none)"
        if btype not in ("Release", "RelWithDebInfo"):
            log(f"warning: {bdir} is a {btype} build; use an optimised one (Release)")
        self.build_type = btype
        for exe in (self.condgate, self.cgload_bin):
            if not os.access(exe, os.X_OK):
                raise BenchError(f"{exe} is not an executable")

    @staticmethod
    def run_build(argv):
        r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if r.returncode != 0:
            tail = "\n".join(r.stdout.splitlines()[-25:])
            raise BenchError(f"build failed: {' '.join(argv)}\n{tail}")

    def versions(self):
        v = {"condgate": self._first_line([self.condgate, "-V"])}
        if self.haproxy:  # "HAProxy version 2.6.12-1+deb12u4 2026/10/17 - https://..."
            w = self._first_line([self.haproxy, "-v"]).split()
            v["haproxy"] = f"HAProxy {w[2]}" if len(w) > 2 else " ".join(w)
        if self.nginx:  # "nginx version: nginx/1.22.1"
            v["nginx"] = self._first_line([self.nginx, "-v"]).split(":")[-1].strip() \
                .replace("/", " ")
        v["kernel"] = platform.release()
        v["cpus"] = os.cpu_count()
        return v

    @staticmethod
    def _first_line(argv):
        try:
            r = subprocess.run([str(x) for x in argv], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, timeout=10)
            return (r.stdout.strip().splitlines() or ["?"])[0]
        except (OSError, subprocess.TimeoutExpired):
            return "?"

    def setup(self):
        a = self.args
        self.nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        if self.nofile == resource.RLIM_INFINITY:
            self.nofile = 1 << 20
        # One limit for all three: two descriptors per relayed connection
        # (client + backend) and a reserve must fit the hard limit (HAProxy
        # refuses to start otherwise; condgate lowers its own limit).
        self.conn_limit = max(100, min(10000, (self.nofile - 40) // 2))
        fit = self.conn_limit - 80
        self.idle_asked = a.idle_conns
        a.idle_conns = min(a.idle_conns, fit)
        self.tmp = Path(tempfile.mkdtemp(prefix="cgcompare."))
        (self.tmp / "logs").mkdir()
        self.procs = Procs(self.tmp / "logs")
        self.ports = Ports(a.port_base)
        self.lists = write_lists(self.tmp, a.rules, a.seed, "bigrules" in a.only)
        # backends: NBACKENDS reply ports (serve --reply 64) for conn/reject,
        # NBACKENDS echo ports for bulk/idle; the same for every contender
        self.reply_ports = [self.ports.take() for _ in range(NBACKENDS)]
        self.echo_ports = [self.ports.take() for _ in range(NBACKENDS)]
        # proxy: NBACKENDS more reply ports that skip a PROXY header first
        self.proxy_ports = ([self.ports.take() for _ in range(NBACKENDS)]
                            if "proxy" in a.only else [])
        self.proxies = {}
        for cls in (Condgate, CondgateOff, CondgateNoLim, HAProxy, Nginx):
            if cls is CondgateNoLim and "limits" not in a.only:
                continue  # it runs in limits only
            if cls.name in a.contenders:
                self.proxies[cls.name] = cls(self)
        backends = []
        for p in self.reply_ports:
            backends.append((p, self.procs.spawn(
                f"serve-reply-{p}", self.pinned("load") + [self.cgload_bin, "serve", "--reply", str(REQ_SIZE),
                                     "--size", str(REQ_SIZE), "-t", str(a.backend_threads),
                                     f"127.0.0.1:{p}"])))
        for p in self.echo_ports:
            backends.append((p, self.procs.spawn(
                f"serve-echo-{p}", self.pinned("load") + [self.cgload_bin, "serve", "-t", str(a.backend_threads),
                                    f"127.0.0.1:{p}"])))
        for p in self.proxy_ports:
            backends.append((p, self.procs.spawn(
                f"serve-proxy-{p}", self.pinned("load") + [self.cgload_bin, "serve", "--reply", str(REQ_SIZE),
                                     "--size", str(REQ_SIZE), f"--proxy-v{a.proxy_version}",
                                     "-t", str(a.backend_threads), f"127.0.0.1:{p}"])))
        for p, proc in backends:
            probe(p, time.monotonic() + 10, proc,
                  proxy=a.proxy_version if p in self.proxy_ports else None)
        if "condgate" in self.proxies:
            if a.prefilter == "off":
                self.prefilter_off(PF_OFF_ASKED)
            else:
                self.check_prefilter()
        # the configurations must be valid before anything is measured
        for name, px in self.proxies.items():
            variants = ["small"]
            if "bigrules" in a.only and name != "nginx":
                variants.append("big")
            if "limits" in a.only and name in ("condgate", "condgate-nolim"):
                variants.append("limits")
            if "proxy" in a.only and name in ("condgate", "haproxy"):
                variants.append("proxy")
            for variant in variants:
                cfg = px.config(variant)
                if variant in ("small", "limits", "proxy"):
                    r = subprocess.run([str(x) for x in px.check_argv(cfg)],
                                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                       text=True, timeout=60)
                    if r.returncode != 0:
                        raise BenchError(f"{name} refuses its configuration {cfg}:\n{r.stdout}")

    def check_prefilter(self):
        """condgate -t on the prefilter = refuse configuration, then one trial
        start. If either fails, say so, run condgate with prefilter = off
        only (no condgate-off: it would be the same) and leave the prefilter
        targets unmeasured."""
        a = self.args
        px = self.proxies["condgate"]
        cfg = px.config("small")
        r = subprocess.run([str(x) for x in px.check_argv(cfg)], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=60)
        lines = [ln.strip() for ln in r.stdout.splitlines() if ln.startswith("prefilter ")]
        self.pf_modes = lines
        why = None
        bad = [ln for ln in lines if " mode=refuse" not in ln]
        if bad:
            why = "condgate -t: " + "; ".join(bad)
        elif not lines:
            why = (f"condgate -t printed no 'prefilter NAME mode=' line (status "
                   f"{r.returncode}): {r.stdout.strip()[-300:]}")
        elif r.returncode != 0:
            why = f"condgate -t refused the configuration: {r.stdout.strip()[-300:]}"
        else:
            try:
                self.stop(self.start("condgate"))
            except BenchError as e:
                why = f"condgate with prefilter = refuse did not start: {e}"
        if why is None:
            log("  condgate: " + "; ".join(lines))
            return
        if a.prefilter == "refuse":
            raise BenchError(f"--prefilter refuse: the kernel prefilter cannot be used: {why}")
        self.prefilter_off(why)
        log(f"WARNING: the kernel prefilter cannot be used: {why}\n"
            "  condgate runs with prefilter = off only (callers judged after accept); "
            "the prefilter targets are not measured")
        self.notes.append(f"prefilter NOT in use: {why}; condgate ran with prefilter = off "
                          "and no condgate-off contender")

    def prefilter_off(self, why):
        """condgate (and condgate-nolim) with prefilter = off, no condgate-off
        (it would be the same); why goes to the prefilter targets, which are
        then not measured."""
        a = self.args
        self.pf_why = why
        self.proxies["condgate"].prefilter = "off"
        if "condgate-nolim" in self.proxies:  # the same condgate, limits off
            self.proxies["condgate-nolim"].prefilter = "off"
        self.proxies.pop("condgate-off", None)
        a.contenders = [c for c in a.contenders if c != "condgate-off"]

    # -- recording -----------------------------------------------------------

    def record(self, figure, contender, rnd, value):
        if value is None:
            return
        self.values.setdefault(figure, {}).setdefault(contender, {})[rnd] = value

    def sample(self, **kw):
        self.samples.append(kw)

    # -- running pieces -------------------------------------------------------

    def start(self, name, variant="small"):
        px = self.proxies[name]
        cfg = px.config(variant)
        t0 = time.monotonic()
        p = self.procs.spawn(f"{name}-{variant}", self.pinned("proxy") + px.argv(cfg))
        probe(px.conn_port, t0 + 120, p,
              proxy=self.args.proxy_version if variant == "proxy" else None)
        ready = time.monotonic() - t0
        probe(px.echo_port, time.monotonic() + 30, p)
        return Running(p, ready)

    def stop(self, run):
        self.procs.stop(run.proc)

    def pinned(self, role):
        """taskset's prefix for a process of `role` ("proxy": the proxy
        under test; "load": cgload and the backends), or nothing."""
        cpus = self.args.proxy_cpus if role == "proxy" else self.args.load_cpus
        return ["taskset", "-c", cpus] if cpus else []

    def cgload(self, mode, port, opts, timeout, name=None):
        argv = self.pinned("load") + [self.cgload_bin, mode, *[str(o) for o in opts], "--json", f"127.0.0.1:{port}"]
        p = self.procs.spawn(name or f"cgload-{mode}", argv, stdout=subprocess.PIPE)
        try:
            out, _ = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.procs.stop(p)
            raise BenchError(f"cgload {mode} on port {port} did not finish in {timeout:.0f} s")
        self.procs.stop(p)
        return self.parse_cgload(p, out)

    @staticmethod
    def parse_cgload(p, out):
        text = out.decode(errors="replace") if isinstance(out, bytes) else out
        if p.returncode not in (0, 3):
            raise BenchError(f"cgload failed (status {p.returncode}); log {p.cg_log}:\n"
                             f"{log_tail(p)}")
        for line in reversed(text.splitlines()):
            if line.startswith("{"):
                return json.loads(line)
        raise BenchError(f"cgload printed no JSON; log {p.cg_log}:\n{log_tail(p)}")

    def conn_opts(self, duration, proxy=None):
        a = self.args
        return ["-c", a.concurrency, "-d", f"{duration:g}", "--size", REQ_SIZE, "--resp", 0,
                "--src", ALLOWED_SRC, "-t", a.client_threads, "--timeout", 5000] + (
                    [f"--proxy-v{proxy}"] if proxy else [])

    def warmup(self, port, mode="conn", proxy=None):
        w = min(1.0, self.args.duration / 4)
        if mode == "conn":
            self.cgload("conn", port, self.conn_opts(w, proxy), w + 30, name="warmup")
        else:
            self.cgload("reject", port, ["-c", self.args.concurrency, "-d", f"{w:g}",
                                         "--src", DENIED_SRC], w + 30, name="warmup")

    def measure_conn(self, port, pgid_pids, proxy=None):
        """cgload conn (with proxy 1 or 2: a PROXY header of that version
        before each request) after a warm-up; rate, latency, the proxy's CPU."""
        d = self.args.duration
        self.warmup(port, proxy=proxy)
        pids = pgid_pids() if pgid_pids else []
        c0, t0, m0 = cpu_seconds(pids), time.monotonic(), cpu_times()
        j = self.cgload("conn", port, self.conn_opts(d, proxy), d + 60)
        m1 = cpu_times()
        cpu = cpu_us = None
        if pgid_pids:
            used = cpu_seconds(pids) - c0
            cpu = 100.0 * used / (time.monotonic() - t0)
            cpu_us = 1e6 * used / j["completed"] if j["completed"] else None
        lat = j.get("latency_us", {})
        errs = j["errors"]["total"]
        # the whole machine (proxy, cgload, backends, the kernel's loopback
        # work charged to whichever process sends) per completed exchange
        mach = machine_us(m0, m1, j["completed"])
        res = {"rate": j["rate_per_s"], "p50": lat.get("p50"), "p99": lat.get("p99"),
               "cpu_pct": cpu, "cpu_us_per_exchange": cpu_us, "machine_us_per_exchange": mach,
               "errors": errs, "cgload": j}
        if errs:
            share = errs / max(1, errs + j["completed"])
            res["warning"] = f"{errs} errors ({100 * share:.2f} %)"
            self.notes.append(f"{port}: {errs} failed exchanges ({100 * share:.2f} %), "
                              f"see the samples")
        return res

    # -- scenarios ------------------------------------------------------------

    def order(self, contenders, scen):
        return [c for c in CONTENDERS if c in self.args.contenders and c in contenders
                and (c != "condgate-off" or scen in OFF_SCENARIOS)
                and (c != "condgate-nolim" or scen in LIMITS_SCENARIOS)]

    def scen_conn(self, rnd):
        for c in self.order(CONTENDERS, "conn"):
            if c == "direct":
                res = self.measure_conn(self.reply_ports[0], None)
            else:
                run = self.start(c)
                try:
                    res = self.measure_conn(self.proxies[c].conn_port, run.pids)
                finally:
                    self.stop(run)
            self.record("conn_rate", c, rnd, res["rate"])
            self.record("conn_p50", c, rnd, res["p50"])
            self.record("conn_p99", c, rnd, res["p99"])
            self.record("conn_cpu", c, rnd, res["cpu_pct"])
            self.record("conn_cpu_us", c, rnd, res["cpu_us_per_exchange"])
            mach = res["machine_us_per_exchange"]
            self.record("conn_machine_us", c, rnd, mach)
            if mach is not None:  # direct: no proxy, all of it is the rest
                self.record("conn_rest_us", c, rnd, mach - (res["cpu_us_per_exchange"] or 0.0))
            self.sample(scenario="conn", round=rnd, contender=c, **res)
            self.progress("conn", rnd, c, f"{res['rate']:,.0f}/s  p50 {res['p50']:,.0f} us  "
                          f"p99 {res['p99']:,.0f} us"
                          + (f"  cpu {res['cpu_pct']:.0f} %" if res["cpu_pct"] is not None
                             else "")
                          + (f"  machine {mach:.1f} us/exchange" if mach is not None else "")
                          + (f"  ({res['warning']})" if "warning" in res else ""))

    def scen_reject(self, rnd):
        a = self.args
        for c in self.order(PROXIES, "reject"):
            run = self.start(c)
            try:
                self.warmup(self.proxies[c].conn_port, "reject")
                pids = run.pids()
                c0, t0, m0 = cpu_seconds(pids), time.monotonic(), cpu_times()
                j = self.cgload("reject", self.proxies[c].conn_port,
                                ["-c", a.concurrency, "-d", f"{a.duration:g}", "--src",
                                 DENIED_SRC, "-t", a.client_threads, "--timeout", 5000],
                                a.duration + 60)
                used = cpu_seconds(pids) - c0
                m1 = cpu_times()
                cpu = 100.0 * used / (time.monotonic() - t0)
            finally:
                self.stop(run)
            n = j["completed"]
            cpu_us = 1e6 * used / n if n else None
            # The whole machine's non-idle CPU (/proc/stat) over the measured
            # window, per rejected caller: the proxy, cgload, the kernel's
            # work for both sides. On loopback the kernel's work for a SYN
            # refused by the prefilter (sk_lookup, the reset) runs in the
            # client's context (its connect() softirq), so it is charged to
            # cgload, not to condgate: the proxy's own CPU alone would miss it.
            # Counts other work on a shared machine too.
            mach = machine_us(m0, m1, n)
            admitted = j["errors"].get("admitted", 0)
            self.record("reject_rate", c, rnd, j["rate_per_s"])
            self.record("reject_cpu_us", c, rnd, cpu_us)
            self.record("reject_machine_us", c, rnd, mach)
            self.sample(scenario="reject", round=rnd, contender=c, rate=j["rate_per_s"],
                        cpu_pct=cpu, cpu_us_per_reject=cpu_us,
                        machine_cpu_us_per_reject=mach, rejected=j.get("rejected"),
                        prefilter=getattr(self.proxies[c], "prefilter", None), cgload=j)
            rej = j.get("rejected", {})
            how = ", ".join(f"{k} {v:,}" for k, v in rej.items() if k != "total" and v)
            self.progress("reject", rnd, c, f"{j['rate_per_s']:,.0f}/s  ({how})  cpu {cpu:.0f} %"
                          + (f"  machine {mach:.1f} us/reject" if mach is not None else "")
                          + (f"  ADMITTED {admitted}" if admitted else ""))
            if admitted:
                self.notes.append(f"reject: {c} admitted {admitted} callers from the denied "
                                  f"range in round {rnd}")
            if (getattr(self.proxies[c], "prefilter", "off") == "refuse" and n
                    and rej.get("refused", 0) < 0.9 * n):
                self.notes.append(f"reject: {c} (prefilter = refuse) had only "
                                  f"{rej.get('refused', 0):,} of {n:,} callers refused at "
                                  f"connect in round {rnd}: the prefilter did not take them all")
        # condgate's and condgate-off's rate over HAProxy's in the same
        # round, as plain figures (the target is on condgate / HAProxy)
        hp = self.values.get("reject_rate", {}).get("haproxy", {}).get(rnd)
        for c in ("condgate", "condgate-off"):
            v = self.values.get("reject_rate", {}).get(c, {}).get(rnd)
            if hp and v is not None:
                self.record("reject_vs_haproxy", c, rnd, v / hp)

    def scen_bulk(self, rnd):
        a = self.args
        for c in self.order(CONTENDERS, "bulk"):
            port = self.echo_ports[0] if c == "direct" else self.proxies[c].echo_port
            run = None if c == "direct" else self.start(c)
            cpu = None
            try:
                pids = run.pids() if run else []
                c0, t0 = cpu_seconds(pids), time.monotonic()
                j = self.cgload("bulk", port, ["--bytes", a.bulk_bytes, "--timeout", 10000],
                                60 + a.bulk_bytes / 20e6)
                if run:
                    cpu = 100.0 * (cpu_seconds(pids) - c0) / (time.monotonic() - t0)
            finally:
                if run:
                    self.stop(run)
            bad = j["errors"]["total"] or j["completed"] != 1
            if not bad:
                self.record("bulk_tx", c, rnd, j["sent_MBps"])
                self.record("bulk_rx", c, rnd, j["received_MBps"])
                self.record("bulk_cpu", c, rnd, cpu)
            self.sample(scenario="bulk", round=rnd, contender=c, sent_MBps=j["sent_MBps"],
                        received_MBps=j["received_MBps"], cpu_pct=cpu, valid=not bad, cgload=j)
            self.progress("bulk", rnd, c, f"{j['sent_MBps']:,.0f} MB/s out, "
                          f"{j['received_MBps']:,.0f} MB/s back"
                          + (f"  cpu {cpu:.0f} %" if cpu is not None else "")
                          + ("  (FAILED: errors or not completed; not counted)" if bad else ""))

    def wait_rss_stable(self, run, limit_s=3.0):
        """RSS once two reads 200 ms apart agree within 64 KiB."""
        end = time.monotonic() + limit_s
        last = rss_kib(run.pids())
        while time.monotonic() < end:
            time.sleep(0.2)
            cur = rss_kib(run.pids())
            if abs(cur - last) <= 64:
                return cur
            last = cur
        return last

    def scen_idle(self, rnd):
        a = self.args
        n = a.idle_conns
        for c in self.order(PROXIES, "idle"):
            px = self.proxies[c]
            run = self.start(c)
            hold = None
            try:
                # warm-up: a few exchanges on the echo listener, so lazily
                # made per-thread state is in the baseline
                self.cgload("conn", px.echo_port, ["-n", 256, "-c", 32, "--src", ALLOWED_SRC],
                            60, name="warmup")
                before = self.wait_rss_stable(run)
                hold = self.procs.spawn(
                    "cgload-hold", self.pinned("load") + [self.cgload_bin, "hold", "-n", n, "-c", 64, "--src", ALLOWED_SRC,
                                    "--timeout", 30000, "--json", f"127.0.0.1:{px.echo_port}"],
                    stdout=subprocess.PIPE)
                buf, held = self.read_held(hold, 60 + n / 200)
                after = self.wait_rss_stable(run)
                os.killpg(hold.pid, signal.SIGINT)
                try:
                    rest, _ = hold.communicate(timeout=60)
                except subprocess.TimeoutExpired:
                    raise BenchError("cgload hold did not stop on SIGINT")
                j = self.parse_cgload(hold, buf + rest)
            finally:
                if hold:
                    self.procs.stop(hold)
                self.stop(run)
            per = (after - before) * 1024 / held if held else None
            self.record("idle_bytes", c, rnd, per)
            self.sample(scenario="idle", round=rnd, contender=c, requested=n, held=held,
                        rss_before_kib=before, rss_after_kib=after, bytes_per_conn=per, cgload=j)
            self.progress("idle", rnd, c, f"held {held:,} of {n:,}: RSS {before / 1024:.1f} -> "
                          f"{after / 1024:.1f} MiB = {per:,.0f} B per connection"
                          if per is not None else f"held {held} of {n}: no figure")
            if held != n:
                self.notes.append(f"idle: {c} held {held:,} of {n:,} connections in round {rnd}")

    @staticmethod
    def read_held(p, timeout):
        """Read cgload hold's stdout up to its 'held N' line."""
        fd = p.stdout.fileno()
        buf = b""
        end = time.monotonic() + timeout
        while b"\n" not in buf or not any(ln.startswith(b"held ") for ln in buf.splitlines()):
            left = end - time.monotonic()
            if left <= 0:
                raise BenchError(f"cgload hold printed no 'held N' in {timeout:.0f} s; "
                                 f"log {p.cg_log}:\n{log_tail(p)}")
            r, _, _ = select.select([fd], [], [], min(left, 1.0))
            if r:
                chunk = os.read(fd, 4096)
                if not chunk:
                    raise BenchError(f"cgload hold ended early; log {p.cg_log}:\n{log_tail(p)}")
                buf += chunk
        for ln in buf.splitlines():
            if ln.startswith(b"held "):
                return buf, int(ln.split()[1])
        raise AssertionError("unreachable")

    def scen_bigrules(self, rnd):
        order = ("big", "small") if rnd % 2 else ("small", "big")
        # condgate-off: a start only (bigrules_off_ready), right after condgate
        for c in [c for c in CONTENDERS if c in self.args.contenders
                  and c in ("condgate", "condgate-off", "haproxy")]:
            px = self.proxies[c]
            if c == "condgate-off":
                self.bigrules_off_ready(rnd)
                continue
            # the configuration check (condgate -t, haproxy -c) of the 1M list
            cfg = px.config("big")
            t0 = time.monotonic()
            r = subprocess.run([str(x) for x in px.check_argv(cfg)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True, timeout=600)
            check_s = time.monotonic() - t0
            if r.returncode != 0:
                raise BenchError(f"{c} refuses the 1M-entry configuration:\n{r.stderr[-2000:]}")
            self.record("big_check", c, rnd, check_s)
            got = {}
            kernel = {}
            # the prefilter's maps in the kernel (condgate with refuse only)
            want_maps = c == "condgate" and self.pf_why is None
            for variant in order:
                before = bpf_maps(self.bpftool) if want_maps else None
                run = self.start(c, variant)
                try:
                    rss = self.wait_rss_stable(run, 2.0)
                    kmaps = None
                    if want_maps and isinstance(before, list):
                        after = bpf_maps(self.bpftool)
                        if isinstance(after, list):
                            kmaps = prefilter_map_bytes(
                                after, run.pids(), {m.get("id") for m in before})
                        else:
                            before = after
                    if want_maps and not isinstance(before, list):
                        self.unmeasured.setdefault("big_kernel_mib", before)
                    if kmaps is not None:
                        kernel[variant] = kmaps[0]
                    res = self.measure_conn(px.conn_port, run.pids)
                finally:
                    self.stop(run)
                got[variant] = (run.ready_s, rss, res)
                self.sample(scenario="bigrules", round=rnd, contender=c, variant=variant,
                            entries=self.args.rules if variant == "big" else 10,
                            ready_s=run.ready_s, rss_kib=rss, check_s=check_s
                            if variant == "big" else None,
                            kernel_map_bytes=kmaps[0] if kmaps else None,
                            kernel_maps=kmaps[1] if kmaps else None, **res)
                self.progress("bigrules", rnd, c,
                              f"{self.big_label() if variant == 'big' else '10'} entries: "
                              f"start->serving "
                              f"{run.ready_s:.2f} s, RSS {rss / 1024:.1f} MiB, "
                              + (f"kernel maps {kmaps[0] / 1048576:.1f} MiB, " if kmaps else "")
                              + f"{res['rate']:,.0f} conn/s" + (f", check {check_s:.2f} s"
                                                                if variant == "big" else ""))
            if "big" in kernel:
                self.record("big_kernel_mib", c, rnd, kernel["big"] / 1048576)
            big_ready, big_rss = got["big"][0], got["big"][1]
            small_rss = got["small"][1]
            self.record("big_ready", c, rnd, big_ready)
            self.record("big_rss", c, rnd, big_rss / 1024)
            self.record("big_growth", c, rnd, (big_rss - small_rss) / 1024)
            self.record("small_rate", c, rnd, got["small"][2]["rate"])
            self.record("big_rate", c, rnd, got["big"][2]["rate"])
            self.record("big_conn_ratio", c, rnd, got["big"][2]["rate"] / got["small"][2]["rate"])
            cb, cs = got["big"][2]["cpu_us_per_exchange"], got["small"][2]["cpu_us_per_exchange"]
            if cb and cs:
                self.record("big_cpu_ratio", c, rnd, cb / cs)

    def bigrules_off_ready(self, rnd):
        """condgate-off with the big list: start->serving only (no conn run,
        to keep the run time), so condgate's start->serving with refuse
        minus this one is the time to put the list into the kernel."""
        run = self.start("condgate-off", "big")
        self.stop(run)
        self.record("big_ready", "condgate-off", rnd, run.ready_s)
        cg = self.values.get("big_ready", {}).get("condgate", {}).get(rnd)
        if cg is not None:
            self.record("big_kernel_s", "condgate", rnd, cg - run.ready_s)
        self.sample(scenario="bigrules", round=rnd, contender="condgate-off", variant="big",
                    entries=self.args.rules, ready_s=run.ready_s)
        self.progress("bigrules", rnd, "condgate-off",
                      f"{self.big_label()} entries: start->serving {run.ready_s:.2f} s "
                      "(start only)" + (f"; condgate with refuse {cg:.2f} s, "
                                        f"difference {cg - run.ready_s:+.2f} s"
                                        if cg is not None else ""))

    # -- limits: condgate with per-source limits vs without -------------------

    def prefill_range(self):
        """--src range of the pre-fill: --sources addresses from 127.1.0.0."""
        last = PREFILL_FIRST + self.args.sources - 1
        return f"{fmt_prefix(PREFILL_FIRST, 32)}-{fmt_prefix(last, 32)}"

    def admin_stats(self, px):
        """GET /stats on condgate's admin port, as a dict."""
        c = http.client.HTTPConnection("127.0.0.1", px.admin_port, timeout=10)
        try:
            c.request("GET", "/stats")
            r = c.getresponse()
            body = r.read()
            if r.status != 200:
                raise BenchError(f"GET /stats on {px.name} (port {px.admin_port}): status "
                                 f"{r.status}: {body[:200]!r}")
            return json.loads(body)
        except (OSError, ValueError, http.client.HTTPException) as e:
            raise BenchError(f"GET /stats on {px.name} (port {px.admin_port}): {e}")
        finally:
            c.close()

    def scen_limits(self, rnd):
        """condgate with per-source limits on (never reached) and its source
        table pre-filled with --sources sources, against the same condgate
        without limits (condgate-nolim), fresh starts, in turn; the order
        alternates by round. Both get the same pre-fill (the same connections
        made before measuring), so only the limits differ."""
        a = self.args
        n = a.sources
        order = ["condgate", "condgate-nolim"]
        if rnd % 2 == 0:
            order.reverse()
        for c in order:
            px = self.proxies[c]
            run = self.start(c, "limits")
            try:
                # a few exchanges, so lazily made state is in the baseline
                self.cgload("conn", px.conn_port, ["-n", 256, "-c", 32, "--size", REQ_SIZE,
                                                    "--resp", 0, "--src", ALLOWED_SRC],
                            60, name="warmup")
                before = self.wait_rss_stable(run)
                # the pre-fill: one exchange from each of n new sources
                t0 = time.monotonic()
                pf = self.cgload("conn", px.conn_port,
                                 ["-n", n, "-c", a.concurrency, "--size", REQ_SIZE, "--resp", 0,
                                  "--src", self.prefill_range(), "--timeout", 10000],
                                 120 + n / 500, name="prefill")
                prefill_s = time.monotonic() - t0
                after = self.wait_rss_stable(run)
                st = self.admin_stats(px)
                src = st.get("sources", {})
                tracked = src.get("tracked")
                table_bytes = src.get("bytes")
                if c == "condgate" and (tracked is None or tracked < n):
                    raise BenchError(f"limits: after the pre-fill of {n:,} sources condgate "
                                     f"tracks {tracked} (GET /stats sources); pre-fill: "
                                     f"{pf['completed']:,} completed, "
                                     f"{pf['errors']['total']:,} errors")
                if c == "condgate-nolim" and tracked:
                    self.notes.append(f"limits: condgate-nolim tracks {tracked:,} sources "
                                      f"(expected none) in round {rnd}")
                res = self.measure_conn(px.conn_port, run.pids)
                st_end = self.admin_stats(px)
            finally:
                self.stop(run)
            by = st_end.get("rejected_by", {})
            refused = {k: by.get(k, 0) for k in ("source_limit", "source_rate") if by.get(k)}
            if refused:
                self.notes.append(f"limits: {c} refused callers by its source limits in round "
                                  f"{rnd}: {refused} (they must never be reached)")
            if pf["errors"]["total"]:
                self.notes.append(f"limits: {c}'s pre-fill had {pf['errors']['total']:,} "
                                  f"failed exchanges of {n:,} in round {rnd}")
            per_src = (after - before) * 1024 / n
            self.record("lim_prefill_rate", c, rnd, pf["rate_per_s"])
            if c == "condgate":
                self.record("lim_tracked", c, rnd, tracked)
                if tracked:
                    self.record("lim_table_per_src", c, rnd, table_bytes / tracked)
            self.record("lim_rss_per_src", c, rnd, per_src)
            self.record("lim_rate", c, rnd, res["rate"])
            self.record("lim_p50", c, rnd, res["p50"])
            self.record("lim_p99", c, rnd, res["p99"])
            self.record("lim_cpu", c, rnd, res["cpu_pct"])
            self.record("lim_cpu_us", c, rnd, res["cpu_us_per_exchange"])
            self.sample(scenario="limits", round=rnd, contender=c, limits=px.limits,
                        sources=n, prefill_s=prefill_s, prefill_cgload=pf,
                        rss_before_kib=before, rss_after_prefill_kib=after,
                        rss_growth_per_source=per_src, stats_sources=src,
                        stats_rejected_by=by, **res)
            self.progress("limits", rnd, c,
                          f"pre-fill {n:,} sources {prefill_s:.1f} s ({pf['rate_per_s']:,.0f}/s), "
                          f"tracked {tracked:,}, RSS {before / 1024:.1f} -> {after / 1024:.1f} MiB "
                          f"({per_src:,.0f} B/source); {res['rate']:,.0f} conn/s  "
                          f"p99 {res['p99']:,.0f} us"
                          + (f"  cpu {res['cpu_pct']:.0f} %, {res['cpu_us_per_exchange']:.1f} "
                             "us/exchange" if res["cpu_pct"] is not None else "")
                          + (f"  ({res['warning']})" if "warning" in res else ""))
        on = self.values.get("lim_cpu_us", {}).get("condgate", {}).get(rnd)
        off = self.values.get("lim_cpu_us", {}).get("condgate-nolim", {}).get(rnd)
        if on is not None and off is not None:
            self.record("lim_cpu_diff", "condgate", rnd, on - off)

    # -- proxy: PROXY protocol in and out vs plain, condgate and HAProxy -----

    def scen_proxy(self, rnd):
        """condgate and HAProxy, each plain (the small variant, as in conn)
        and with the PROXY protocol on the conn listener (variant proxy:
        accept_proxy + send_proxy / accept-proxy + send-proxy[-v2]), fresh
        starts. Odd rounds run condgate plain, condgate proxy, haproxy plain,
        haproxy proxy; even rounds the reverse, so a drift of the machine
        hits both sides of every ratio alike."""
        ver = self.args.proxy_version
        steps = [(c, v) for c in ("condgate", "haproxy") for v in ("small", "proxy")]
        if rnd % 2 == 0:
            steps.reverse()
        for c, variant in steps:
            pxy = variant == "proxy"
            run = self.start(c, variant)
            try:
                res = self.measure_conn(self.proxies[c].conn_port, run.pids,
                                        proxy=ver if pxy else None)
            finally:
                self.stop(run)
            pre = "px_" if pxy else "px_plain_"
            self.record(pre + "rate", c, rnd, res["rate"])
            self.record(pre + "cpu_us", c, rnd, res["cpu_us_per_exchange"])
            if pxy:
                self.record("px_p50", c, rnd, res["p50"])
                self.record("px_p99", c, rnd, res["p99"])
            self.sample(scenario="proxy", round=rnd, contender=c,
                        proxy_protocol=f"v{ver}" if pxy else None, **res)
            self.progress("proxy", rnd, c,
                          (f"PROXY v{ver} in+out " if pxy else "no PROXY       ")
                          + f"{res['rate']:,.0f} conn/s  p99 {res['p99']:,.0f} us"
                          + (f"  cpu {res['cpu_pct']:.0f} %, {res['cpu_us_per_exchange']:.1f} "
                             "us/exchange" if res["cpu_us_per_exchange"] is not None else "")
                          + (f"  ({res['warning']})" if "warning" in res else ""))
        ratio = {}
        for c in ("condgate", "haproxy"):
            on = self.values.get("px_rate", {}).get(c, {}).get(rnd)
            off = self.values.get("px_plain_rate", {}).get(c, {}).get(rnd)
            if on is not None and off:
                ratio[c] = on / off
                self.record("px_ratio", c, rnd, on / off)
            con = self.values.get("px_cpu_us", {}).get(c, {}).get(rnd)
            coff = self.values.get("px_plain_cpu_us", {}).get(c, {}).get(rnd)
            if con is not None and coff is not None:
                self.record("px_cpu_diff", c, rnd, con - coff)
        if len(ratio) == 2:
            self.record("px_gap", "condgate", rnd, ratio["condgate"] - ratio["haproxy"])
            self.progress("proxy", rnd, "ratios", f"PROXY / plain: condgate "
                          f"{ratio['condgate']:.3f}, haproxy {ratio['haproxy']:.3f}")

    def proxy_summary(self):
        """The three ratios of the proxy scenario as lines (median of the
        per-round ratios, min-max)."""
        def fmt(s):
            return (f"{s['median']:.3f} ({s['min']:.3f}-{s['max']:.3f} over {s['n']} rounds)"
                    if s else "-")
        out = []
        for c in ("condgate", "haproxy"):
            out.append(f"{c}(PROXY) / {c}(plain) conn/s".ljust(44)
                       + fmt(self.stats("px_ratio", c)))
        out.append("condgate(PROXY) / haproxy(PROXY) conn/s".ljust(44)
                   + fmt(self.ratio("px_rate", "haproxy")))
        out.append("condgate(plain) / haproxy(plain) conn/s".ljust(44)
                   + fmt(self.ratio("px_plain_rate", "haproxy")))
        return out

    def src_label(self):
        n = self.args.sources
        return f"{n / 1000:g}k" if n >= 1000 else f"{n:,}"

    def big_label(self):
        n = self.args.rules
        return f"{n / 1e6:g}M" if n >= 100000 else f"{n:,}"

    def progress(self, scen, rnd, c, text):
        log(f"  [{scen} {rnd}/{self.args.rounds}] {c:<12} {text}")

    # -- the run --------------------------------------------------------------

    def run(self):
        a = self.args
        for scen in SCENARIOS:
            if scen not in a.only:
                continue
            if scen == "limits" and not {"condgate", "condgate-nolim"} <= set(a.contenders):
                log("limits: skipped (needs the contenders condgate and condgate-nolim)")
                self.notes.append("limits: skipped: it compares condgate with condgate-nolim, "
                                  "and --contenders left one out")
                continue
            if scen == "proxy" and not {"condgate", "haproxy"} <= set(a.contenders):
                log("proxy: skipped (needs the contenders condgate and haproxy)")
                self.notes.append("proxy: skipped: it compares condgate's and HAProxy's cost "
                                  "of the PROXY protocol, and --contenders left one out")
                continue
            log(f"{scen}:")
            fn = getattr(self, f"scen_{scen}")
            for rnd in range(1, a.rounds + 1):
                fn(rnd)

    # -- the report -----------------------------------------------------------

    def stats(self, figure, contender):
        d = self.values.get(figure, {}).get(contender)
        if not d:
            return None
        v = list(d.values())
        return {"median": med(v), "min": min(v), "max": max(v), "n": len(v)}

    def ratio(self, figure, peer):
        cg = self.values.get(figure, {}).get("condgate", {})
        pr = self.values.get(figure, {}).get(peer, {})
        rs = [cg[r] / pr[r] for r in cg if r in pr and pr[r]]
        if not rs:
            return None
        return {"median": med(rs), "min": min(rs), "max": max(rs), "n": len(rs)}

    def judge(self):
        out = []
        for fig, peer, op, bound, what, needs_pf in TARGETS:
            if FIG[fig][4] not in self.args.only:
                continue
            if fig.startswith("big_"):
                what = what.replace("1M", self.big_label())
            if fig.startswith("lim_"):
                what = what.replace("100k", self.src_label())
            why = (self.pf_why if needs_pf and self.pf_why and "condgate" in self.args.contenders
                   else None)
            if why is None and fig in self.unmeasured and self.stats(fig, "condgate") is None:
                why = self.unmeasured[fig]
            if why:
                out.append({"figure": fig, "peer": peer, "target": what, "op": op,
                            "bound": bound, "status": "not measured", "why": why})
                continue
            if peer is None:
                s = self.stats(fig, "condgate")
                label = "condgate"
            else:
                if peer not in self.args.contenders or "condgate" not in self.args.contenders:
                    continue
                s = self.ratio(fig, peer)
                label = f"condgate/{peer}"
            if s is None:
                out.append({"figure": fig, "peer": peer, "target": what, "status": "n/a"})
                continue
            v = s["median"]
            ok = v >= bound if op == ">=" else v <= bound
            out.append({"figure": fig, "peer": peer, "target": what, "op": op, "bound": bound,
                        "value": v, "min": s["min"], "max": s["max"], "what": label,
                        "status": "PASS" if ok else "MISS"})
        return out

    def table(self, verdicts):
        a = self.args
        shown = [f[0] for f in FIGURES if f[4] in a.only]
        # a column nobody measured in the rows shown is left out (condgate-nolim
        # runs in limits only, condgate-off in conn and reject)
        cols = [c for c in CONTENDERS if c in a.contenders
                and any(self.stats(fig, c) for fig in shown)]
        peers = [p for p in PEERS if p in cols and "condgate" in cols]
        status = {(v["figure"], v["peer"]): v["status"] for v in verdicts
                  if v["status"] in ("PASS", "MISS")}
        head = ["figure", "better"] + cols + [PEER_HEAD.get(p, f"cg/{p}") for p in peers]
        rows = []
        for fig, label, better, kind, scen in FIGURES:
            if scen not in a.only:
                continue
            if fig == "idle_bytes":
                label = f"bytes per idle conn ({a.idle_conns:,} held)"
            if fig.startswith("big_"):
                label = label.replace("1M", self.big_label())
            if fig.startswith("lim_"):
                label = label.replace("100k", self.src_label())
            med_row = [label, better]
            rng_row = ["", ""]
            if not any(self.stats(fig, c) for c in cols):
                continue  # nobody measured it (e.g. the prefilter's figures without it)
            for c in cols:
                s = self.stats(fig, c)
                med_row.append(fmt_num(s["median"], kind) if s else "-")
                rng_row.append(span(fmt_num(s['min'], kind), fmt_num(s['max'], kind))
                               if s and s["n"] > 1 else "")
            for p in peers:
                if fig in NO_RATIO:
                    med_row.append("")
                    rng_row.append("")
                    continue
                s = self.ratio(fig, p)
                mark = status.get((fig, p))
                med_row.append((f"{s['median']:.2f}" + (f" {mark}" if mark else "")) if s else "-")
                rng_row.append(f"{s['min']:.2f}-{s['max']:.2f}" if s and s["n"] > 1 else "")
            if status.get((fig, None)) and "condgate" in cols:
                med_row[cols.index("condgate") + 2] += " " + status[(fig, None)]
            rows.append(med_row)
            if any(rng_row[2:]):
                rows.append(rng_row)
        widths = [max(len(r[i]) for r in rows + [head]) for i in range(len(head))]
        lines = []

        def fmt(r):
            cells = [r[0].ljust(widths[0]), r[1].ljust(widths[1])]
            cells += [r[i].rjust(widths[i]) for i in range(2, len(r))]
            return "  ".join(cells).rstrip()
        lines.append(fmt(head))
        lines.append("  ".join("-" * w for w in widths))
        for r in rows:
            lines.append(fmt(r))
        return "\n".join(lines)

    def report(self, t_start, load_start):
        a = self.args
        verdicts = self.judge()
        print()
        rounds = f"{a.rounds} round" + ("s" if a.rounds > 1 else "")
        print(f"condgate vs HAProxy vs nginx: {rounds}, {a.duration:g} s per conn/reject "
              f"measurement, {a.threads} threads each; medians, second line min-max over rounds")
        print("  " + "; ".join(self.vers[k] for k in ("condgate", "haproxy", "nginx")
                               if k in self.vers)
              + f"; condgate build {self.build_type}; Linux {self.vers['kernel']}, "
              f"{self.vers['cpus']} CPUs")
        if "condgate" in a.contenders:
            if self.pf_why == PF_OFF_ASKED:
                print("  condgate: prefilter = off (--prefilter off: every caller accepted, "
                      "then judged)")
            elif self.pf_why:
                print(f"  condgate: prefilter = off (kernel prefilter NOT available: "
                      f"{self.pf_why})")
            else:
                print("  condgate: prefilter = refuse (denied callers refused by the kernel "
                      "before any handshake)"
                      + ("; condgate-off: prefilter = off (judged after accept), "
                         + "/".join(OFF_SCENARIOS) + " only" if "condgate-off" in a.contenders
                         else ""))
        if "limits" in a.only and "condgate-nolim" in self.proxies and "condgate" in self.proxies:
            print("  limits: condgate with " + ", ".join(f"{k} = {v}" for k, v in LIMITS_ON.items())
                  + f" (never reached), {a.sources:,} sources pre-filled; condgate-nolim: the "
                  "same condgate, the same pre-fill, no limits (limits only)")
        if "proxy" in a.only and {"condgate", "haproxy"} <= set(self.proxies):
            v = f"v{a.proxy_version}"
            print(f"  proxy: the conn listener with accept_proxy = {v} (trusted_proxies = "
                  f"{TRUSTED_NET}) + send_proxy = {v} / HAProxy bind accept-proxy + server "
                  f"send-proxy{'-v2' if a.proxy_version == 2 else ''}, against the same "
                  "proxy without (plain); cgload sends the header, cgload serve skips it")
        print()
        print(self.table(verdicts))
        if "proxy" in a.only and self.values.get("px_ratio"):
            print()
            print("PROXY protocol (median of per-round ratios):")
            for ln in self.proxy_summary():
                print("  " + ln)
        print()
        print("cg/peer = median over rounds of the per-round ratio condgate / peer (cg/off: "
              "condgate / condgate-off); for figures where lower is better (latency, CPU, "
              "memory, time) a ratio below 1 favours condgate.")
        if verdicts:
            print()
            print("targets (median of per-round ratios, this run):")
            for v in verdicts:
                if v["status"] == "n/a":
                    print(f"  n/a   {v['target']}: no samples")
                    continue
                if v["status"] == "not measured":
                    print(f"  --    {v['target']}: not measured: {v['why']}")
                    continue
                rounds = span(f"{v['min']:.3f}", f"{v['max']:.3f}")
                print(f"  {v['status']}  {v['target']}: {v['what']} = {v['value']:.3f} "
                      f"(rounds {rounds}; wanted {v['op']} {v['bound']:.3f})")
        notes = list(self.notes)
        if "bigrules" in a.only and "nginx" in a.contenders:
            notes.append("bigrules: nginx skipped - its allow/deny rules are a list checked in "
                         "order on every connection, so a million of them is no deployment "
                         "anyone would run")
        if "idle" in a.only:
            asked = (f" ({self.idle_asked:,} asked: a relayed connection takes 2 descriptors "
                     f"and the hard limit is {self.nofile:,})"
                     if self.idle_asked > a.idle_conns else "")
            notes.append(f"idle: {a.idle_conns:,} connections held{asked}; RSS of all "
                         "processes of a proxy, user memory only (kernel socket buffers not "
                         "counted)")
        if "conn" in a.only:
            notes.append("conn: machine CPU = all non-idle CPU time of the machine "
                         "(/proc/stat) over the measured window / completed exchanges: the "
                         "proxy, cgload, the backends and the kernel's loopback work (charged "
                         "to whichever process sends); machine - proxy = everything but the "
                         "proxy's own processes (direct: all of it). It counts any other work "
                         "on the machine too")
        if "reject" in a.only:
            notes.append("reject: machine CPU = all non-idle CPU time of the machine "
                         "(/proc/stat: user, nice, system, irq, softirq) over the measured "
                         "window / rejected callers; on loopback the kernel's work for a SYN "
                         "refused by the prefilter runs in the client's (cgload's) context, so "
                         "the proxy's own CPU misses it. It counts any other work on the "
                         "machine too")
        if "limits" in a.only and "limits" in {s["scenario"] for s in self.samples}:
            notes.append(f"limits: each round starts condgate (limits on) and condgate-nolim "
                         f"(off) fresh, in turn (the order alternates), with the admin port "
                         f"open on both; pre-fill = one exchange from each of {a.sources:,} "
                         f"new sources ({self.prefill_range()}), checked with GET /stats "
                         f"sources.tracked >= {a.sources:,} before measuring; RSS growth per "
                         "source = RSS after the pre-fill minus before, / sources (for "
                         "condgate-nolim the same pre-fill with nothing tracked: the baseline); "
                         "source table B per source = /stats sources.bytes / tracked; CPU on - "
                         "off = condgate's CPU us per exchange minus condgate-nolim's, per round; "
                         f"each pre-fill leaves up to {2 * a.sources:,} sockets in TIME_WAIT "
                         f"(the kernel keeps at most {tw_buckets()}), the same for both")
        if "proxy" in a.only and "proxy" in {s["scenario"] for s in self.samples}:
            notes.append(f"proxy: each round starts condgate and HAProxy plain and with the "
                         f"PROXY protocol (v{a.proxy_version}) fresh, in turn (the order "
                         "reverses every other round); with it cgload sends a header naming its "
                         "own address before each request, the proxy checks the sender "
                         f"against {TRUSTED_NET} (condgate: trusted_proxies, with the prefilter "
                         "when in use; HAProxy: tcp-request connection), judges the client the "
                         "header names (condgate's rules; HAProxy: the same lists in "
                         "tcp-request session rules, which run after the header) and sends a "
                         f"header to {NBACKENDS} backends running cgload serve "
                         f"--proxy-v{a.proxy_version} (a connection without a valid header is "
                         "reset there, so it counts as an error); the plain runs are the conn "
                         "configuration and backends")
        if "bigrules" in a.only and "condgate" in a.contenders and not self.pf_why:
            notes.append("bigrules: kernel maps = bytes_memlock (bpftool -j map show) of the "
                         "maps held by the condgate processes, plus unowned new maps with the "
                         "prefilter's names; kernel table load s = condgate's start->serving "
                         "minus condgate-off's (started once per round, no conn run)")
        th = []
        ran = {smp.get("contender") for smp in self.samples}
        if "condgate" in ran:
            th.append(f"condgate workers = {a.condgate_workers} worker threads, each accepting, "
                      "judging and relaying its own callers, plus a control thread idle on the "
                      "hot path (Linux)")
        if "haproxy" in ran:
            th.append(f"haproxy nbthread {a.threads}")
        if "nginx" in ran:
            th.append(f"nginx worker_processes {a.threads} plus an idle master")
        if th:
            notes.append("threads: " + "; ".join(th))
        if a.proxy_cpus or a.load_cpus:
            notes.append(f"pinned with taskset: proxies on CPUs {a.proxy_cpus or 'any'}, cgload "
                         f"and the backends on CPUs {a.load_cpus or 'any'}")
        la_end = loadavg()
        notes.append(f"load average at start {load_start}, at end {la_end}; cgload, the "
                     "backends and the proxy share the machine's CPUs")
        ct0, ct1 = self.cpu_start, cpu_times()
        if ct0 and ct1:
            d = {k: ct1[k] - ct0[k] for k in ct0}
            tot = sum(d.values()) or 1
            share = {k: 100.0 * v / tot for k, v in d.items()}
            notes.append("machine CPU time during the run: " + ", ".join(
                f"{k} {share[k]:.0f} %" for k in ("user", "system", "softirq", "idle", "nice",
                                                   "steal"))
                + ("; nice = other programs running at a lower priority (not this benchmark)"
                   if share["nice"] >= 5 else "")
                + ("; steal = CPU taken by the hypervisor" if share["steal"] >= 2 else ""))
        notes.append(f"took {time.monotonic() - t_start:.1f} s; logs and configurations in "
                     f"{self.tmp}" + (" (kept)" if a.keep_tmp else " (removed)"))
        print()
        for n in notes:
            print(f"note: {n}")
        if a.json:
            doc = {"meta": {"args": {k: (list(v) if isinstance(v, (list, tuple)) else v)
                                     for k, v in vars(a).items()},
                            "versions": self.vers, "build_type": self.build_type,
                            "nofile_hard": self.nofile, "conn_limit": self.conn_limit,
                            "ports": {"reply_backends": self.reply_ports,
                                      "echo_backends": self.echo_ports,
                                      "proxy_backends": self.proxy_ports,
                                      **{n: [p.conn_port, p.echo_port]
                                         for n, p in self.proxies.items()}},
                            "loadavg_start": load_start, "loadavg_end": la_end,
                            "prefilter": {"in_use": self.pf_why is None
                                          and "condgate" in a.contenders,
                                          "why_not": self.pf_why,
                                          "condgate_t": self.pf_modes,
                                          "condgate": self.proxies["condgate"].prefilter
                                          if "condgate" in self.proxies else None,
                                          "unmeasured": self.unmeasured},
                            "notes": notes},
                   "summary": {fig: {c: self.stats(fig, c) for c in CONTENDERS
                                     if self.stats(fig, c)} for fig in self.values},
                   "ratios": {fig: {p: self.ratio(fig, p) for p in PEERS if self.ratio(fig, p)}
                              for fig in self.values},
                   "targets": verdicts,
                   "cpu_times": {"start": self.cpu_start, "end": ct1},
                   "samples": self.samples}
            with open(a.json, "w", encoding="utf-8") as f:
                json.dump(doc, f, indent=1)
                f.write("\n")
            print(f"note: raw samples written to {a.json}")


# ---------------------------------------------------------------------------
# Command line

def size_arg(s):
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    s = s.strip().upper()
    try:
        if s and s[-1] in mult:
            v = int(float(s[:-1]) * mult[s[-1]])
        else:
            v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {s!r} (e.g. 1G, 256M, 1048576)")
    if v <= 0:
        raise argparse.ArgumentTypeError("size must be positive")
    return v


def list_arg(choices):
    def parse(s):
        items = [x.strip() for x in s.split(",") if x.strip()]
        bad = [x for x in items if x not in choices]
        if bad or not items:
            raise argparse.ArgumentTypeError(
                f"unknown: {', '.join(bad) or '(empty)'}; choose from {', '.join(choices)}")
        return items
    return parse


def parse_args(argv):
    ap = argparse.ArgumentParser(
        prog="compare.py",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="condgate side by side with HAProxy and nginx (stream): the same rules, "
                    "backends and thread count, measured in turn, medians and ratios.",
        epilog="""scenarios (each round runs direct, condgate, condgate-off, haproxy, nginx in
this order, each proxy freshly started):
  conn      new allowed connections/s: connect, 64-byte request, 64-byte reply,
            the backend closes (cgload serve --reply 64, conn --resp 0);
            32 in flight; p50/p99 latency; direct = the ceiling
  reject    rejected callers/s from a source denied by an explicit rule
  bulk      one connection, --bulk-bytes each way through an echo backend
  idle      RSS growth per idle relayed connection (--idle-conns held)
  bigrules  condgate and haproxy with --rules deny entries: start->serving
            time, -t/-c time, RSS, conn/s with them vs with 10 entries; the
            prefilter's kernel maps (bpftool) and load time (vs condgate-off)
  limits    condgate against itself: per-source limits on (max_per_source
            = 100000, rate_per_source = 1000000/s: never reached) with
            --sources sources pre-filled into its table, vs the same
            without limits (condgate-nolim); conn/s, CPU per exchange, RSS
            per tracked source; no HAProxy/nginx
  proxy     condgate and haproxy each against itself: the conn listener
            with the PROXY protocol in and out (accept_proxy + send_proxy;
            accept-proxy + send-proxy[-v2]; --proxy-version) vs plain;
            conn/s ratios PROXY / plain and condgate / haproxy; no nginx

condgate runs with prefilter = refuse; condgate-off, the same configuration
with prefilter = off (judged after accept), runs in conn and reject only.
If the prefilter cannot be loaded (condgate -t or the start fails), condgate
runs with prefilter = off alone and the prefilter targets are not measured.
--prefilter refuse runs condgate with refuse alone and stops with an error
when the prefilter cannot be loaded; --prefilter off runs it with off alone.
In reject, "rejected/s / HAProxy's" shows condgate (refuse) and condgate-off
over HAProxy side by side; the target (>= 1.5) is on condgate with refuse.

needs haproxy, nginx and libnginx-mod-stream (Debian packages), cmake and a C
compiler for the build. Example:
  tests/bench/compare.py                   # full run, about 10 minutes
  tests/bench/compare.py --quick           # smoke run, about 1 minute
  tests/bench/compare.py --only conn,reject --rounds 3 --json /tmp/cmp.json
  tests/bench/compare.py --only reject --prefilter refuse --contenders condgate,haproxy""")
    ap.add_argument("--build-dir", help="build directory with condgate and tests/cgload "
                    "(default build/bench, configured Release and built if needed)")
    ap.add_argument("--no-build", action="store_true",
                    help="do not run cmake; use the binaries as they are")
    ap.add_argument("--threads", type=int, default=2,
                    help="condgate workers, haproxy nbthread, nginx worker_processes (2)")
    ap.add_argument("--condgate-workers", type=int,
                    help="condgate workers if not --threads (on Linux each accepts, judges and "
                         "relays; the control thread comes on top)")
    ap.add_argument("--proxy-cpus",
                    help="run the proxies under taskset -c PROXY_CPUS (e.g. 1): with "
                         "--load-cpus, the proxy alone on its cores")
    ap.add_argument("--load-cpus",
                    help="run cgload and the backends under taskset -c LOAD_CPUS (e.g. 0)")
    ap.add_argument("--rounds", type=int, help="rounds per scenario (5; --quick 2)")
    ap.add_argument("--duration", type=float,
                    help="seconds per conn/reject measurement (4; --quick 1.5)")
    ap.add_argument("--bulk-bytes", type=size_arg, help="bytes each way in bulk (1G; --quick 128M)")
    ap.add_argument("--idle-conns", type=int,
                    help="connections held in idle (10000, less if the descriptor limit "
                         "cannot fit 2 per connection; --quick 2000)")
    ap.add_argument("--rules", type=int,
                    help="deny entries in bigrules (1000000; --quick 200000)")
    ap.add_argument("--sources", type=int,
                    help="sources pre-filled in limits (100000; --quick 20000; at most "
                         f"{MAX_PREFILL:,})")
    ap.add_argument("--seed", type=int, default=6, help="seed of the random deny entries (6)")
    ap.add_argument("--proxy-version", type=int, choices=(1, 2), default=2,
                    help="PROXY protocol version in the proxy scenario, in and out (2)")
    ap.add_argument("--only", type=list_arg(SCENARIOS), default=list(SCENARIOS),
                    help="scenarios to run, comma-separated (" + ",".join(SCENARIOS) + ")")
    ap.add_argument("--contenders", type=list_arg(CONTENDERS), default=list(CONTENDERS),
                    help="who runs, comma-separated (" + ",".join(CONTENDERS) + ")")
    ap.add_argument("--prefilter", choices=PREFILTER_CHOICES, default="both",
                    help="condgate's kernel prefilter: both = condgate with prefilter = refuse "
                         "and condgate-off with prefilter = off side by side (conn, reject); "
                         "refuse = condgate with refuse only, an error if it cannot be loaded; "
                         "off = condgate with off only (both)")
    ap.add_argument("--quick", action="store_true",
                    help="fast smoke run: 2 rounds, 1.5 s, 128M bulk, 2000 idle, 200k rules, "
                         "20k sources")
    ap.add_argument("--concurrency", type=int, default=32,
                    help="exchanges in flight in conn/reject (32)")
    ap.add_argument("--client-threads", type=int, default=1, help="cgload threads (1)")
    ap.add_argument("--backend-threads", type=int, default=1,
                    help="threads of each cgload serve backend (1)")
    ap.add_argument("--port-base", type=int, default=21000,
                    help="first port tried for backends and listeners (21000)")
    ap.add_argument("--json", metavar="FILE", help="write every raw sample and the summary")
    ap.add_argument("--keep-tmp", action="store_true",
                    help="keep the temporary directory (configurations, logs)")
    ap.add_argument("--haproxy", default="haproxy", help="haproxy binary (haproxy)")
    ap.add_argument("--nginx", default="nginx", help="nginx binary (nginx)")
    ap.add_argument("--nginx-module", default=NGINX_MODULE,
                    help=f"the stream module to load ({NGINX_MODULE})")
    a = ap.parse_args(argv)
    quick = {"rounds": 2, "duration": 1.5, "bulk_bytes": 128 << 20, "idle_conns": 2000,
             "rules": 200000, "sources": 20000}
    full = {"rounds": 5, "duration": 4.0, "bulk_bytes": 1 << 30, "idle_conns": 10000,
            "rules": 1000000, "sources": 100000}
    for k, v in (quick if a.quick else full).items():
        if getattr(a, k) is None:
            setattr(a, k, v)
    if a.condgate_workers is None:
        a.condgate_workers = a.threads
    if not 1 <= a.threads <= 64 or not 1 <= a.condgate_workers <= 64:
        ap.error("--threads and --condgate-workers must be 1..64")
    if a.rounds < 1:
        ap.error("--rounds must be at least 1")
    if a.duration <= 0:
        ap.error("--duration must be positive")
    if a.idle_conns < 1:
        ap.error("--idle-conns must be positive")
    if a.rules < SMALL_RANDOM + 2:
        ap.error(f"--rules must be at least {SMALL_RANDOM + 2}")
    if not 1 <= a.sources <= MAX_PREFILL:
        ap.error(f"--sources must be 1..{MAX_PREFILL:,}")
    if not 1024 <= a.port_base <= 65000:
        ap.error("--port-base must be 1024..65000")
    if a.concurrency < 1 or a.client_threads < 1 or a.backend_threads < 1:
        ap.error("--concurrency, --client-threads and --backend-threads must be positive")
    # keep the order of SCENARIOS / CONTENDERS
    a.only = [s for s in SCENARIOS if s in a.only]
    a.contenders = [c for c in CONTENDERS if c in a.contenders
                    and (c != "condgate-off" or a.prefilter == "both")]
    return a


def run_bench(b, body, prog="compare.py"):
    """Runs body(b) on a Bench b made of parsed arguments: finds the tools,
    builds, reads the versions, starts the backends and checks the
    configurations first; Ctrl+C, SIGTERM and SIGHUP stop it cleanly, and
    every child is stopped whatever happens. Returns (status, load average
    at the start): status 0 when body returned, 1 after a BenchError, 130
    after Ctrl+C, 128 + signal after a signal. Main thread only."""
    def on_signal(sig, _frame):
        raise SystemExit(128 + sig)
    # Ctrl+C or kill -INT must always clean up, even when started in the
    # background (where the shell leaves SIGINT ignored); SIGHUP only when
    # not ignored (nohup).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, on_signal)
    if signal.getsignal(signal.SIGHUP) != signal.SIG_IGN:
        signal.signal(signal.SIGHUP, on_signal)
    rc, la = 1, None
    try:
        b.find_tools()
        b.build()
        b.vers = b.versions()
        la = loadavg()
        if la and la[0] > 0.5 * (os.cpu_count() or 1):
            log(f"warning: load average {la[0]:.2f} at start: other work is running, expect "
                "noisy figures")
        b.setup()
        log(f"temporary directory {b.tmp}")
        body(b)
        rc = 0
    except BenchError as e:
        print(f"{prog}: {e}", file=sys.stderr)
        rc = 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted, stopping every child", file=sys.stderr)
        rc = 130
    except SystemExit as e:
        print(f"{prog}: stopped by a signal, stopping every child", file=sys.stderr)
        rc = e.code if isinstance(e.code, int) else 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if b.procs:
            b.procs.stop_all()
        signal.signal(signal.SIGINT, signal.default_int_handler)
    return rc, la


def remove_tmp(b, ok, prog="compare.py"):
    """Removes b's temporary directory after a good run (unless --keep-tmp);
    otherwise says where it is."""
    if b.tmp and b.tmp.exists():
        if ok and not b.args.keep_tmp:
            shutil.rmtree(b.tmp, ignore_errors=True)
        else:
            print(f"{prog}: configurations and logs kept in {b.tmp}", file=sys.stderr)


def main(argv):
    args = parse_args(argv)
    if not sys.platform.startswith("linux"):
        print("compare.py: Linux only (cgload uses epoll; memory and CPU come from /proc)",
              file=sys.stderr)
        return 2
    b = Bench(args)
    t_start = time.monotonic()
    rc, la = run_bench(b, Bench.run)
    if rc == 0:
        b.report(t_start, la)
    remove_tmp(b, rc == 0)
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
