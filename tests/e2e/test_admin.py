"""The admin HTTP port (SPEC §6): health, exact counters in /stats and
/metrics, rule explanations, access control, token, errors, reload over
HTTP, and robustness (idle and oversized clients).

Every test enables the admin port on 127.0.0.1:$admin through
Gate.write(..., admin=True) and talks to it with Gate.http()/Gate.json()
(see cgtest). Traffic comes from 127.0.0.x source addresses; counters are
read once the gate has settled (polling /stats with a timeout)."""

import errno
import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
import urllib.parse

import pytest

from cgtest import (connect, echo_check, expect_rejected, expect_reset,
                    event_re, is_served, make_socket, recv_exact, recv_until_eof)

SETTLE_TIMEOUT = 10.0
JSON_TYPE = "application/json"


# ---------------------------------------------------------------------------
# helpers


def media_type(headers):
    """'text/plain; version=0.0.4; charset=utf-8' -> ('text/plain',
    {'version': '0.0.4', 'charset': 'utf-8'})."""
    ct = headers.get("Content-Type")
    assert ct, "no Content-Type header in %r" % dict(headers)
    parts = [p.strip() for p in ct.split(";")]
    params = {}
    for p in parts[1:]:
        if "=" in p:
            k, v = p.split("=", 1)
            params[k.strip().lower()] = v.strip().strip('"')
    return parts[0].lower(), params


def assert_json_type(headers, what):
    mt, _ = media_type(headers)
    assert mt == JSON_TYPE, "%s: Content-Type %r, wanted %s" % (
        what, headers.get("Content-Type"), JSON_TYPE)


def admin_stats(gate, **kw):
    return gate.json("/stats", **kw)


def by_name(items, key="name"):
    assert isinstance(items, list), "wanted a JSON array, got %r" % (items,)
    out = {}
    for it in items:
        assert it[key] not in out, "duplicate %s %r in %r" % (key, it[key], items)
        out[it[key]] = it
    return out


def settle(gate, pred, what, timeout=SETTLE_TIMEOUT):
    """Poll /stats until pred(stats) holds; return that snapshot. Fails
    with the last snapshot after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        s = admin_stats(gate)
        if pred(s):
            return s
        if time.monotonic() > deadline:
            pytest.fail("/stats never satisfied %s within %.0fs; last: %r"
                        % (what, timeout, s), pytrace=False)
        time.sleep(0.05)  # polling interval


def explain(gate, addr=None, set_=None, expect=200, raw_query=None):
    if raw_query is not None:
        q = raw_query
    else:
        params = []
        if addr is not None:
            params.append(("addr", addr))
        if set_ is not None:
            params.append(("set", set_))
        q = urllib.parse.urlencode(params, quote_via=urllib.parse.quote)
    path = "/rules/explain" + ("?" + q if q else "")
    status, headers, body = gate.http("GET", path)
    want = expect if isinstance(expect, tuple) else (expect,)
    assert status in want, "GET %s: status %d, wanted %s; body %r" % (path, status, want, body[:300])
    if status == 200:
        assert_json_type(headers, path)
        return json.loads(body)
    return status, headers, body


def source_rx(fname, line):
    """FILE:LINE, FILE as given or as a path ending in /FILE."""
    return r"(?:^|/)%s:%d$" % (re.escape(fname), line)


def assert_source(rule, fname, line, what):
    src = rule.get("source")
    assert isinstance(src, str) and re.search(source_rx(fname, line), src), (
        "%s: source %r, wanted %s:%d" % (what, src, fname, line))


def check_verdict(gate, addr, verdict, cidr=None, action=None, src=None, label=None,
                  set_=None, echo_addr=None):
    """Explain `addr` and check every field. cidr None: no entry matched
    (rule null, reason default). src: (file, line)."""
    what = "explain %s%s" % (addr, " set=%s" % set_ if set_ else "")
    d = explain(gate, addr, set_)
    want_addr = echo_addr or (addr,)
    assert d.get("addr") in want_addr, "%s: addr %r, wanted %s" % (what, d.get("addr"), want_addr)
    assert d.get("set") == (set_ or "default"), "%s: set %r" % (what, d.get("set"))
    assert d.get("verdict") == verdict, "%s: verdict %r, wanted %s (%r)" % (
        what, d.get("verdict"), verdict, d)
    if cidr is None:
        assert "rule" in d and d["rule"] is None, "%s: rule should be null: %r" % (what, d)
        assert d.get("reason") == "default", "%s: reason %r (%r)" % (what, d.get("reason"), d)
        return d
    assert d.get("reason") == "rule", "%s: reason %r (%r)" % (what, d.get("reason"), d)
    rule = d.get("rule")
    assert isinstance(rule, dict), "%s: rule %r" % (what, rule)
    assert rule.get("cidr") == cidr, "%s: rule.cidr %r, wanted %s" % (what, rule.get("cidr"), cidr)
    assert rule.get("action") == (action or verdict), "%s: rule.action %r" % (what, rule)
    if src is not None:
        assert_source(rule, src[0], src[1], what)
    assert "label" in rule, "%s: rule has no label field: %r" % (what, rule)
    assert rule["label"] == label, "%s: rule.label %r, wanted %r" % (what, rule["label"], label)
    return d


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?[ \t]+(\S+)(?:[ \t]+(-?\d+))?$")
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\\n]|\\.)*)"\s*(,|$)')


def parse_metrics(text):
    """Prometheus text format 0.0.4 -> (samples, types): samples maps
    (name, ((label, value), ...sorted)) to a float; types name -> type."""
    samples, types = {}, {}
    for line in text.splitlines():
        if not line.strip():
            continue
        if line.startswith("#"):
            parts = line.split(None, 3)
            if len(parts) >= 4 and parts[1] == "TYPE":
                assert parts[2] not in types, "TYPE given twice for %s" % parts[2]
                types[parts[2]] = parts[3].strip()
            continue
        m = _SAMPLE.match(line)
        assert m, "unparseable metrics line %r" % line
        name, labeltext, value = m.group(1), m.group(2) or "", m.group(3)
        labels = {}
        pos = 0
        while pos < len(labeltext):
            lm = _LABEL.match(labeltext, pos)
            assert lm, "bad labels in metrics line %r" % line
            labels[lm.group(1)] = re.sub(r"\\(.)", r"\1", lm.group(2))
            pos = lm.end()
        key = (name, tuple(sorted(labels.items())))
        assert key not in samples, "series given twice: %r" % line
        samples[key] = float(value)
    return samples, types


class Metrics:
    def __init__(self, text):
        self.text = text
        self.samples, self.types = parse_metrics(text)

    def get(self, name, default=None, **labels):
        return self.samples.get((name, tuple(sorted(labels.items()))), default)

    def value(self, name, **labels):
        v = self.get(name, **labels)
        assert v is not None, "no series %s%r in /metrics:\n%s" % (name, labels, self.text)
        return v

    def series(self, name):
        return {k[1]: v for k, v in self.samples.items() if k[0] == name}


def fetch_metrics(gate):
    status, headers, body = gate.http("GET", "/metrics")
    assert status == 200, "GET /metrics: %d %r" % (status, body[:300])
    return Metrics(body.decode("utf-8")), headers, body


def summary_entries(gate):
    """{set: (default, ipv4, ipv6)} from `condgate -t`."""
    rc, out, err = gate.run(["-c", gate.ini_path, "-t"])
    assert rc == 0, "condgate -t failed:\n%s%s" % (out, err)
    sets = {}
    for m in re.finditer(r"^rules\s+(\S+)\s+default=(\w+)\s+ipv4=(\d+)\s+ipv6=(\d+)", out, re.M):
        sets[m.group(1)] = (m.group(2), int(m.group(3)), int(m.group(4)))
    assert sets, "no 'rules' lines in condgate -t output:\n%s" % out
    return sets


FAMILY = {"ipv4": 4, "ipv6": 6}


def _complete(buf):
    """Whether buf holds a whole HTTP response (headers + Content-Length)."""
    head, sep, body = bytes(buf).partition(b"\r\n\r\n")
    if not sep:
        return False
    m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    return m is not None and len(body) >= int(m.group(1))


def raw_request(gate, data, src="127.0.0.1", timeout=5.0):
    """Send raw bytes to the admin port; return what came back: until EOF,
    a reset, or one complete response."""
    s = make_socket(src, timeout=timeout)
    s.connect((gate.admin_host, gate.admin_port))
    buf = bytearray()
    try:
        try:
            s.sendall(data)
        except OSError as e:
            if e.errno not in (errno.ECONNRESET, errno.EPIPE):
                raise
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            s.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = s.recv(65536)
            except OSError as e:
                if e.errno == errno.ECONNRESET:
                    break
                raise
            if not chunk:
                break
            buf += chunk
            if _complete(buf):
                break
        else:
            raise AssertionError("no EOF within %.0fs after %d bytes" % (timeout, len(buf)))
    finally:
        s.close()
    return bytes(buf)


def status_of(raw):
    m = re.match(rb"HTTP/1\.[01] (\d{3})", raw)
    return int(m.group(1)) if m else None


def allow_methods(headers):
    a = headers.get("Allow")
    return {t.strip().upper() for t in a.split(",")} if a else set()


ECHO_GATE = """
    [gateway]
    workers = 2

    [rules]
    allow = 127.0.0.0/8

    [listener:web]
    bind = 127.0.0.1:$web
    backend = echo
    rules = default
    """


# ---------------------------------------------------------------------------
# health and content types


def test_healthz(gate):
    gate.write(ECHO_GATE, admin=True)
    gate.start()
    status, headers, body = gate.http("GET", "/healthz")
    assert status == 200, (status, body)
    assert body.strip() == b"ok", body
    assert media_type(headers)[0] == "text/plain", headers
    gate.stop()


def test_content_types_and_keep_alive(gate):
    gate.write(ECHO_GATE, admin=True)
    gate.start()
    for path in ("/stats", "/rules", "/rules/explain?addr=127.0.0.1"):
        status, headers, body = gate.http("GET", path)
        assert status == 200, (path, status, body[:300])
        assert_json_type(headers, path)
    status, headers, _ = gate.http("POST", "/reload")
    assert status == 200
    assert_json_type(headers, "POST /reload")
    status, headers, _ = gate.http("GET", "/metrics")
    mt, params = media_type(headers)
    assert mt == "text/plain" and params.get("version") == "0.0.4", (
        "/metrics Content-Type %r, wanted text/plain; version=0.0.4" % headers.get("Content-Type"))

    # HTTP/1.1: several requests on one connection (scrapers keep it alive)
    conn = http.client.HTTPConnection(gate.admin_host, gate.admin_port, timeout=5)
    try:
        for path in ("/healthz", "/stats", "/metrics", "/healthz"):
            conn.request("GET", path)
            r = conn.getresponse()
            data = r.read()
            assert r.status == 200, (path, r.status, data[:200])
    finally:
        conn.close()
    gate.stop()


def listening_ports(pid):
    """TCP ports the process `pid` listens on (from /proc)."""
    inodes = set()
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            link = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        m = re.fullmatch(r"socket:\[(\d+)\]", link)
        if m:
            inodes.add(m.group(1))
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            if cols[3] == "0A" and cols[9] in inodes:  # TCP_LISTEN
                ports.add(int(cols[1].rsplit(":", 1)[1], 16))
    return ports


def test_admin_off_binds_nothing_and_admin_on_binds_one_port(gate):
    gate.write(ECHO_GATE)                      # cgtest appends [admin] listen = off
    gate.start()
    assert listening_ports(gate.pid) == {gate.port("web")}
    gate.stop()
    gate.write(ECHO_GATE, admin=True)
    gate.start()
    assert listening_ports(gate.pid) == {gate.port("web"), gate.admin_port}
    gate.stop()


def test_admin_bind_failure_exits_1(gate):
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))
    squatter.listen(1)
    try:
        port = squatter.getsockname()[1]
        gate.write(ECHO_GATE + "\n[admin]\nlisten = 127.0.0.1:%d\n" % port)
        try:
            rc, out, err = gate.run(["-c", gate.ini_path], timeout=15)
        except subprocess.TimeoutExpired:
            pytest.fail("condgate kept running although its admin port 127.0.0.1:%d is taken"
                        % port, pytrace=False)
        assert rc == 1, "exit %s, wanted 1:\n%s" % (rc, err)
        assert str(port) in err, "the error does not name the admin address:\n%s" % err
    finally:
        squatter.close()


# ---------------------------------------------------------------------------
# exact counters: /stats and /metrics


COUNTERS_GATE = """
    [gateway]
    workers = 2
    max_connections = 1

    [rules]
    default = deny
    allow = 127.0.0.2, 127.0.0.3
    deny = 127.0.0.66
    deny = 127.0.0.67
    allow = 2001:db8::/32

    [rules:office]
    default = deny
    allow = 127.0.0.2

    [listener:web]
    bind = 127.0.0.1:$web
    backend = echo
    rules = default

    [listener:office]
    bind = 127.0.0.1:$office
    backend = $backend_addr
    rules = office
    """


def hello_handler(conn, server):
    """Read 5 bytes, answer 12, then wait for the client to leave."""
    got = recv_exact(conn, 5)
    conn.sendall(b"hello world\n")
    rest = recv_until_eof(conn, timeout=30)
    conn.shutdown(socket.SHUT_WR)
    return got + rest


def check_stats(s, expect, listeners, workers):
    """Compare /stats to the expected totals and per-listener figures."""
    problems = []

    def eq(path, got, want):
        if got != want or type(got) is not int:
            problems.append("%s = %r, wanted %r" % (path, got, want))

    assert s.get("version") == "0.1.0", s.get("version")
    eq("generation", s.get("generation"), 1)
    eq("reloads", s.get("reloads"), 0)
    up = s.get("uptime_s")
    assert type(up) is int and 0 <= up < 600, "uptime_s %r" % (up,)
    c, rb, b = s.get("connections", {}), s.get("rejected_by", {}), s.get("bytes", {})
    for k in ("active", "accepted", "rejected", "closed"):
        eq("connections." + k, c.get(k), expect[k])
    for k in ("rule", "default", "limit"):
        eq("rejected_by." + k, rb.get(k), expect["rejected_" + k])
    eq("bytes.in", b.get("in"), expect["bytes_in"])
    eq("bytes.out", b.get("out"), expect["bytes_out"])
    ls = by_name(s.get("listeners"))
    if set(ls) != set(listeners):
        problems.append("listeners %r, wanted %r" % (sorted(ls), sorted(listeners)))
    for name, want in listeners.items():
        got = ls.get(name, {})
        for k, v in want.items():
            if k == "bind":
                if got.get(k) != v:
                    problems.append("listeners[%s].bind = %r, wanted %r" % (name, got.get(k), v))
            else:
                eq("listeners[%s].%s" % (name, k), got.get(k), v)
    ws = s.get("workers")
    assert isinstance(ws, list), "workers %r" % (ws,)
    if sorted(w.get("id") for w in ws) != list(range(workers)):
        problems.append("worker ids %r, wanted 0..%d" % ([w.get("id") for w in ws], workers - 1))
    eq("sum(workers.handled)", sum(w.get("handled", 0) for w in ws), expect["accepted"])
    eq("sum(workers.active)", sum(w.get("active", 0) for w in ws), expect["active"])
    assert not problems, "/stats is off:\n  " + "\n  ".join(problems) + "\n%r" % s


def check_metrics(m, expect_l, active_w, rule_entries, generation=1, reloads=0):
    problems = []

    def eq(what, got, want):
        if got != want:
            problems.append("%s = %r, wanted %r" % (what, got, want))

    for name, w in expect_l.items():
        eq('accepted_total{listener="%s"}' % name,
           m.get("condgate_connections_accepted_total", listener=name), w["accepted"])
        for reason in ("rule", "default", "limit"):
            got = m.get("condgate_connections_rejected_total", 0.0 if not w[reason] else None,
                        listener=name, reason=reason)
            eq('rejected_total{listener="%s",reason="%s"}' % (name, reason), got, w[reason])
        eq('connections_active{listener="%s"}' % name,
           m.get("condgate_connections_active", listener=name), w["active"])
        for d in ("in", "out"):
            eq('bytes_total{listener="%s",direction="%s"}' % (name, d),
               m.get("condgate_bytes_total", listener=name, direction=d), w["bytes_" + d])
        eq('backend_errors_total{listener="%s"}' % name,
           m.get("condgate_backend_errors_total", listener=name), 0)
    eq("listeners in accepted_total",
       sorted(dict(k).get("listener") for k in m.series("condgate_connections_accepted_total")),
       sorted(expect_l))
    workers = m.series("condgate_worker_connections_active")
    eq("sum(condgate_worker_connections_active)", sum(workers.values()), active_w)
    entries = {}
    for labels, v in m.series("condgate_rule_entries").items():
        d = dict(labels)
        fam = FAMILY.get(d.get("family"))
        if fam is None:
            problems.append("condgate_rule_entries family label %r (wanted ipv4/ipv6)" % (d,))
            continue
        entries[(d.get("set"), fam)] = v
    for set_name, (_, v4, v6) in rule_entries.items():
        eq('rule_entries{set="%s",family="ipv4"}' % set_name, entries.get((set_name, 4)), v4)
        eq('rule_entries{set="%s",family="ipv6"}' % set_name, entries.get((set_name, 6)), v6)
    eq("condgate_reloads_total", m.get("condgate_reloads_total"), reloads)
    eq("condgate_config_generation", m.get("condgate_config_generation"), generation)
    up = m.get("condgate_uptime_seconds")
    if up is None or not 0 <= up < 600:
        problems.append("condgate_uptime_seconds = %r" % (up,))
    for name in ("condgate_connections_accepted_total", "condgate_connections_rejected_total",
                 "condgate_bytes_total", "condgate_backend_errors_total",
                 "condgate_reloads_total"):
        eq("TYPE %s" % name, m.types.get(name), "counter")
    for name in ("condgate_connections_active", "condgate_worker_connections_active",
                 "condgate_rule_entries", "condgate_config_generation",
                 "condgate_uptime_seconds"):
        eq("TYPE %s" % name, m.types.get(name), "gauge")
    assert not problems, "/metrics is off:\n  " + "\n  ".join(problems) + "\n" + m.text


def test_exact_counters_in_stats_and_metrics(gate, server):
    backend = server(hello_handler)
    gate.write(COUNTERS_GATE.replace("$backend_addr", backend.addr), admin=True)
    gate.start()
    web, office = gate.port("web"), gate.port("office")

    def idle(s):
        return s["connections"]["active"] == 0

    # 1. three allowed exchanges, one at a time (max_connections = 1)
    c = connect(web, "127.0.0.2")
    echo_check(c, b"0123456789")                       # web: 10 in, 10 out
    c.close()
    settle(gate, lambda s: s["connections"]["closed"] == 1 and idle(s), "closed=1 active=0")
    c = connect(web, "127.0.0.3")
    echo_check(c, b"x" * 20)                           # web: +40 in, +40 out
    echo_check(c, b"y" * 20)
    c.close()
    settle(gate, lambda s: s["connections"]["closed"] == 2 and idle(s), "closed=2 active=0")
    held = connect(office, "127.0.0.2")
    held.sendall(b"hello")                             # office: 5 in, 12 out
    assert recv_exact(held, 12) == b"hello world\n"

    # 2. rejects: two by deny rules, one by default, one by the limit
    expect_rejected(web, "127.0.0.66")
    expect_rejected(web, "127.0.0.67")
    expect_rejected(office, "127.0.0.9")               # office: default deny
    expect_rejected(web, "127.0.0.2")                  # allowed, but the one slot is taken

    expect = dict(active=1, accepted=3, rejected=4, closed=2, rejected_rule=2,
                  rejected_default=1, rejected_limit=1, bytes_in=55, bytes_out=62)
    listeners = {
        "web": dict(bind="127.0.0.1:%d" % web, active=0, accepted=2, rejected=3,
                    backend_errors=0, bytes_in=50, bytes_out=50),
        "office": dict(bind="127.0.0.1:%d" % office, active=1, accepted=1, rejected=1,
                       backend_errors=0, bytes_in=5, bytes_out=12),
    }
    s = settle(gate, lambda s: (s["connections"]["active"] == 1
                                and s["connections"]["rejected"] >= 4
                                and s["bytes"]["out"] >= 62), "active=1 with the held client")
    check_stats(s, expect, listeners, workers=2)

    rule_entries = summary_entries(gate)
    assert rule_entries["default"][1:] == (4, 1) and rule_entries["office"][1:] == (1, 0), \
        rule_entries
    m, _, _ = fetch_metrics(gate)
    expect_l = {
        "web": dict(accepted=2, rule=2, default=0, limit=1, active=0, bytes_in=50, bytes_out=50),
        "office": dict(accepted=1, rule=0, default=1, limit=0, active=1, bytes_in=5,
                       bytes_out=12),
    }
    check_metrics(m, expect_l, 1, rule_entries)

    # 3. the held client leaves
    held.shutdown(socket.SHUT_WR)
    assert recv_until_eof(held) == b""
    held.close()
    s = settle(gate, lambda s: idle(s) and s["connections"]["closed"] == 3, "active=0 closed=3")
    expect.update(active=0, closed=3)
    listeners["office"]["active"] = 0
    check_stats(s, expect, listeners, workers=2)
    expect_l["office"]["active"] = 0
    m, _, _ = fetch_metrics(gate)
    check_metrics(m, expect_l, 0, rule_entries)

    # The admin port and SIGUSR1 read the same counters.
    u = gate.stats()
    assert (u["accepted"], u["rejected"], u["closed"], u["active"], u["bytes_in"],
            u["bytes_out"]) == (3, 4, 3, 0, 55, 62), u
    assert backend.accepted == 1
    gate.stop()


def test_promtool_accepts_metrics(gate):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool not found: install the Debian package 'prometheus' "
                    "(apt-get install -y prometheus; CI installs it) to check /metrics",
                    pytrace=False)
    gate.write("""
        [gateway]
        workers = 2

        [rules]
        allow = 127.0.0.2, ::1
        deny = 127.0.0.66

        [rules:other]
        default = allow

        [listener:web]
        bind = 127.0.0.1:$web
        backend = echo
        rules = default

        [listener:b.x-1]
        bind = 127.0.0.1:$b
        backend = echo
        rules = other
        """, admin=True)
    gate.start()
    c = connect(gate.port("web"), "127.0.0.2")
    echo_check(c)
    expect_rejected(gate.port("web"), "127.0.0.66")
    expect_rejected(gate.port("web"), "127.0.0.7")
    c2 = connect(gate.port("b"), "127.0.0.9")
    echo_check(c2)
    _, _, body = fetch_metrics(gate)
    p = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True,
                       timeout=30)
    out = (p.stdout + p.stderr).decode("utf-8", "replace")
    assert p.returncode == 0 and not out.strip(), (
        "promtool check metrics: exit %d\n%s\n--- /metrics ---\n%s"
        % (p.returncode, out, body.decode("utf-8", "replace")))
    c.close()
    c2.close()
    gate.stop()


# ---------------------------------------------------------------------------
# /rules and /rules/explain


EXPLAIN_GATE = """
    [gateway]
    workers = 1

    [rules]
    default = deny
    allow = 10.0.0.0/8
    deny = 10.66.0.0/16
    allow = 10.66.1.7
    allow = 127.0.0.2, 127.0.0.3
    deny = 127.0.0.66
    include = rules.json
    allow_file = partners.txt

    [rules:office]
    default = allow
    deny = 203.0.113.0/24
    allow = 203.0.113.7

    [listener:web]
    bind = 127.0.0.1:$web
    backend = echo
    rules = default

    [listener:office]
    bind = 127.0.0.1:$office
    backend = echo
    rules = office
    """

EXPLAIN_FILES = {
    "rules.json": """
        {
          "allow": ["2001:db8::/32"],
          "deny": ["2001:db8:66::/48"],
          "rules": [
            {"action": "deny", "cidr": "198.51.100.0/24", "label": "scanner-net"},
            {"action": "allow", "cidr": "198.51.100.7", "label": "our-scanner"}
          ]
        }
        """,
    "partners.txt": """
        # partners
        192.0.2.0/24   # partner A

        2001:db8:1::/48
        """,
}


def test_explain_verdicts_and_sources(gate):
    gate.write(EXPLAIN_GATE, files=EXPLAIN_FILES, admin=True)
    gate.start()
    ini = gate.ini_path.rsplit("/", 1)[1]
    L = gate.line_of

    def jl(needle):
        return ("rules.json", L(needle, "rules.json"))

    # SPEC §4: longest prefix wins, allow or deny
    check_verdict(gate, "10.66.1.7", "allow", "10.66.1.7/32", src=(ini, L("allow = 10.66.1.7")))
    check_verdict(gate, "10.66.2.2", "deny", "10.66.0.0/16", src=(ini, L("deny = 10.66.0.0/16")))
    check_verdict(gate, "10.1.1.1", "allow", "10.0.0.0/8", src=(ini, L("allow = 10.0.0.0/8")))
    check_verdict(gate, "8.8.8.8", "deny")
    # JSON rules with labels, a list file, IPv6
    check_verdict(gate, "198.51.100.9", "deny", "198.51.100.0/24", src=jl("scanner-net"),
                  label="scanner-net")
    check_verdict(gate, "198.51.100.7", "allow", "198.51.100.7/32", src=jl("our-scanner"),
                  label="our-scanner")
    check_verdict(gate, "192.0.2.55", "allow", "192.0.2.0/24", src=("partners.txt", 2))
    check_verdict(gate, "2001:db8::1", "allow", "2001:db8::/32", src=jl('"2001:db8::/32"'))
    check_verdict(gate, "2001:db8:66::1", "deny", "2001:db8:66::/48",
                  src=jl('"2001:db8:66::/48"'))
    check_verdict(gate, "2001:db8:1::5", "allow", "2001:db8:1::/48", src=("partners.txt", 4))
    check_verdict(gate, "2001:db9::1", "deny")
    # IPv4-mapped callers are judged as IPv4; IPv4-compatible ones are not
    check_verdict(gate, "::ffff:10.66.2.2", "deny", "10.66.0.0/16",
                  echo_addr=("::ffff:10.66.2.2", "10.66.2.2"))
    check_verdict(gate, "::ffff:10.66.1.7", "allow", "10.66.1.7/32",
                  echo_addr=("::ffff:10.66.1.7", "10.66.1.7"))
    check_verdict(gate, "::10.1.1.1", "deny", echo_addr=("::10.1.1.1", "::a01:101"))
    # another set
    check_verdict(gate, "203.0.113.9", "deny", "203.0.113.0/24", set_="office",
                  src=(ini, L("deny = 203.0.113.0/24")))
    check_verdict(gate, "203.0.113.7", "allow", "203.0.113.7/32", set_="office")
    check_verdict(gate, "10.66.2.2", "allow", set_="office")   # office default = allow
    check_verdict(gate, "10.66.2.2", "deny", "10.66.0.0/16", set_="default")
    # bad input
    for bad in ("10.0.0.300", "", "banana", "010.1.2.3", "10.0.0.0/8", "1.2.3", "::ffff:1.2.3",
                "10.0.0.1 ", "fe80::1%lo"):
        explain(gate, bad, expect=400)
    explain(gate, raw_query="", expect=400)                 # no addr at all
    explain(gate, raw_query="set=default", expect=400)
    # an unknown set: 404 (the resource does not exist)
    status, _, body = explain(gate, "10.1.1.1", set_="nosuchset", expect=404)
    assert b"nosuchset" in body, body
    # a name no set can have is not echoed: the answer is JSON, which must
    # stay valid UTF-8 (fuzz_admin found the raw bytes of ?set= sent back)
    status, _, body = explain(gate, raw_query="addr=10.1.1.1&set=x%FF%C3", expect=404)
    err = json.loads(body.decode("utf-8"))["error"]
    assert err.startswith("no rule set by that name"), err
    gate.stop()


def rule_sets(doc):
    """/rules -> {set name: set object}."""
    sets = doc.get("sets") if isinstance(doc, dict) else doc
    assert isinstance(sets, list), "/rules: wanted {\"sets\": [...]}, got %r" % (doc,)
    return by_name(sets)


def top_of(s):
    top = s.get("top")
    assert isinstance(top, list), "set %r has no 'top' list" % (s,)
    return {e["cidr"]: e for e in top}


def test_rules_listing_and_hits(gate):
    gate.write(EXPLAIN_GATE, files=EXPLAIN_FILES, admin=True)
    gate.start()
    ini = gate.ini_path.rsplit("/", 1)[1]
    web = gate.port("web")
    summary = summary_entries(gate)

    sets = rule_sets(gate.json("/rules"))
    assert {"default", "office"} <= set(sets), sets
    assert summary["default"][1:] == (9, 3), summary
    for name, (default, v4, v6) in summary.items():
        s = sets[name]
        assert s.get("default") == default, s
        assert s.get("entries") == {"ipv4": v4, "ipv6": v6}, (name, s.get("entries"), summary)
    for name in ("default", "office"):
        for e in top_of(sets[name]).values():   # listed or not, nothing is hit yet
            assert e.get("hits") == 0, "hits before any traffic: %r" % e

    # traffic: 127.0.0.2 three times, 127.0.0.3 once, 127.0.0.66 denied twice
    for src in ("127.0.0.2", "127.0.0.2", "127.0.0.3", "127.0.0.2"):
        c = connect(web, src)
        echo_check(c)
        c.close()
    expect_rejected(web, "127.0.0.66")
    expect_rejected(web, "127.0.0.66")
    expect_rejected(web, "127.0.0.99")      # default: no entry is hit
    # explaining is not traffic: it must not count as a hit
    explain(gate, "127.0.0.2")
    explain(gate, "127.0.0.66")

    sets = rule_sets(gate.json("/rules"))
    top_list = sets["default"]["top"]
    top = top_of(sets["default"])
    for cidr, hits, action, needle in (("127.0.0.2/32", 3, "allow", "allow = 127.0.0.2"),
                                       ("127.0.0.66/32", 2, "deny", "deny = 127.0.0.66"),
                                       ("127.0.0.3/32", 1, "allow", "allow = 127.0.0.2")):
        e = top.get(cidr)
        assert e is not None, "%s is not among the most-hit entries: %r" % (cidr, top_list)
        assert e.get("hits") == hits, "%s hits %r, wanted %d" % (cidr, e.get("hits"), hits)
        assert e.get("action") == action, e
        assert_source(e, ini, gate.line_of(needle), cidr)
        assert "label" in e and e["label"] is None, e
    hits = [e.get("hits") for e in top_list]
    assert hits == sorted(hits, reverse=True), "top entries not by hits: %r" % top_list
    assert top_list[0]["cidr"] == "127.0.0.2/32", top_list
    for cidr, e in top.items():
        if cidr not in ("127.0.0.2/32", "127.0.0.66/32", "127.0.0.3/32"):
            assert e.get("hits") == 0, e
    gate.stop()


# ---------------------------------------------------------------------------
# access control and token


def test_admin_allow_refuses_before_http(gate):
    gate.write(ECHO_GATE, admin=True, admin_allow="127.0.0.1")
    gate.start()
    status, _, body = gate.http("GET", "/healthz", src="127.0.0.1")
    assert status == 200 and body.strip() == b"ok"
    for src in ("127.0.0.2", "127.0.0.77"):
        s = make_socket(src)
        s.connect((gate.admin_host, gate.admin_port))
        try:
            expect_reset(s, timeout=5, probe=b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        finally:
            s.close()
    # still serving the allowed caller
    assert gate.http("GET", "/stats", src="127.0.0.1")[0] == 200

    # [admin] allow is re-read on reload
    gate.write(ECHO_GATE, admin=True, admin_allow="127.0.0.2")
    st, _, body = gate.http("POST", "/reload", src="127.0.0.1")
    assert st == 200, body
    assert gate.http("GET", "/healthz", src="127.0.0.2")[0] == 200
    s = make_socket("127.0.0.1")
    s.connect((gate.admin_host, gate.admin_port))
    try:
        expect_reset(s, timeout=5, probe=b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    finally:
        s.close()
    gate.stop()


def test_admin_default_allow_is_loopback(gate):
    gate.write(ECHO_GATE, admin=True)
    gate.start()
    for src in ("127.0.0.1", "127.0.0.2", "127.0.0.200"):
        status, _, body = gate.http("GET", "/healthz", src=src)
        assert status == 200 and body.strip() == b"ok", (src, status, body)
    gate.stop()


def test_admin_dual_stack_judges_mapped_callers_as_ipv4(gate, ipv6):
    gate.write(ECHO_GATE + "\n[admin]\nlisten = [::]:$admin\nallow = 127.0.0.1, ::1\n")
    gate.start()
    port = gate.port("admin")
    for src, host in (("127.0.0.1", "127.0.0.1"), ("::1", "::1")):
        s = connect(port, src, host=host)
        try:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = recv_until_eof(s)
        finally:
            s.close()
        assert data.startswith(b"HTTP/1.1 200"), (src, data[:200])
    s = connect(port, "127.0.0.2", host="127.0.0.1")   # seen as ::ffff:127.0.0.2
    try:
        expect_reset(s, timeout=5, probe=b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    finally:
        s.close()
    gate.stop()


ENDPOINTS = [("GET", "/healthz"), ("GET", "/stats"), ("GET", "/metrics"), ("GET", "/rules"),
             ("GET", "/rules/explain?addr=10.1.1.1"), ("POST", "/reload")]


def test_token_required_on_every_endpoint(gate):
    token = "s3cret-T0ken"
    gate.write(ECHO_GATE, admin=True, token=token)
    gate.start()
    wrong = {
        "none": None,
        "same length": "Bearer " + "x" * len(token),
        "prefix": "Bearer " + token[:-1],
        "longer": "Bearer " + token + "x",
        "empty": "Bearer ",
        "basic": "Basic " + token,
        "no scheme": token,
    }
    for method, path in ENDPOINTS:
        for what, value in wrong.items():
            headers = {"Authorization": value} if value is not None else None
            status, h, body = gate.http(method, path, headers=headers, auth=False)
            assert status == 401, "%s %s with %s token: %d %r" % (method, path, what, status,
                                                                    body[:200])
            assert "bearer" in h.get("WWW-Authenticate", "").lower(), (
                "401 without 'WWW-Authenticate: Bearer' (RFC 7235): %r" % dict(h))
    # nothing was reloaded by the refused requests
    s = admin_stats(gate)
    assert (s["generation"], s["reloads"]) == (1, 0), s
    for method, path in ENDPOINTS:
        status, _, body = gate.http(method, path)          # with the right token
        assert status == 200, "%s %s with the right token: %d %r" % (method, path, status,
                                                                   body[:200])
    # the scheme name is case-insensitive (RFC 7235)
    status, _, _ = gate.http("GET", "/stats", headers={"Authorization": "bearer " + token})
    assert status == 200, status
    gate.stop()


# ---------------------------------------------------------------------------
# errors


def test_unknown_path_404_wrong_method_405(gate):
    gate.write(ECHO_GATE, admin=True)
    gate.start()
    for path in ("/nope", "/stats/extra", "/rules/explainx", "/reloadx", "/healthz/"):
        status, _, body = gate.http("GET", path)
        assert status == 404, "GET %s: %d %r" % (path, status, body[:200])
    for method, path, allowed in (("POST", "/stats", "GET"), ("PUT", "/metrics", "GET"),
                                  ("DELETE", "/healthz", "GET"), ("POST", "/rules", "GET"),
                                  ("POST", "/rules/explain?addr=10.1.1.1", "GET"),
                                  ("GET", "/reload", "POST"), ("PUT", "/reload", "POST")):
        status, h, body = gate.http(method, path)
        assert status == 405, "%s %s: %d %r" % (method, path, status, body[:200])
        methods = allow_methods(h)
        assert allowed in methods, "%s %s: 405 with Allow %r, wanted %s in it" % (
            method, path, h.get("Allow"), allowed)
        other = "POST" if allowed == "GET" else "GET"
        assert other not in methods, "%s %s: Allow %r" % (method, path, h.get("Allow"))
    s = admin_stats(gate)
    assert s["generation"] == 1, "GET/PUT /reload reloaded: %r" % s
    # %00 in the path: the decoded path would end there and name another
    # endpoint ("/reload%00.html" served as /reload; fuzz_admin found it)
    for method, path in (("POST", "/reload%00.html"), ("GET", "/healthz%00"),
                         ("GET", "/stats%00/x?y=1")):
        status, _, body = gate.http(method, path)
        assert status == 400 and b"NUL byte" in body, "%s %s: %d %r" % (method, path, status,
                                                                       body[:200])
    s = admin_stats(gate)
    assert s["generation"] == 1, "POST /reload%%00.html reloaded: %r" % s
    gate.stop()


def test_oversized_requests_are_refused_and_gate_keeps_serving(gate):
    gate.write(ECHO_GATE, admin=True)
    gate.start()
    big_header = (b"GET /stats HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100000
                  + b"\r\nConnection: close\r\n\r\n")
    big_url = b"GET /rules/explain?addr=" + b"1" * 100000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    many_headers = (b"GET /stats HTTP/1.1\r\nHost: x\r\n"
                    + b"".join(b"X-H%d: v\r\n" % i for i in range(5000)) + b"\r\n")
    for what, req in (("100 KB header", big_header), ("100 KB URL", big_url),
                      ("5000 headers", many_headers)):
        raw = raw_request(gate, req)
        st = status_of(raw)
        assert st is None or 400 <= st < 600, "%s: answered %r" % (what, raw[:200])
        status, _, body = gate.http("GET", "/healthz")
        assert status == 200 and body.strip() == b"ok", what
    # a big body on POST /reload: refused or ignored, never a hang or a crash
    raw = raw_request(gate, b"POST /reload HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                      b"Content-Length: 200000\r\n\r\n" + b"z" * 200000)
    st = status_of(raw)
    assert st is None or st in (200, 400, 413), raw[:200]
    assert gate.alive()
    assert gate.http("GET", "/healthz")[0] == 200
    gate.stop()


# ---------------------------------------------------------------------------
# reload over HTTP


RELOAD_GATE = """
    [gateway]
    workers = 1
    %s

    [rules]
    default = deny
    allow_file = allow.txt

    [listener:web]
    bind = 127.0.0.1:$web
    backend = echo
    rules = default
    """


def test_post_reload(gate):
    gate.write(RELOAD_GATE % "", files={"allow.txt": "127.0.0.2\n"}, admin=True)
    gate.start()
    web = gate.port("web")
    check_verdict(gate, "127.0.0.3", "deny")

    # a good reload
    gate.write(RELOAD_GATE % "", files={"allow.txt": "# v2\n127.0.0.2\n127.0.0.3\n"}, admin=True)
    m = gate.mark()
    status, headers, body = gate.http("POST", "/reload")
    assert status == 200, body
    assert_json_type(headers, "POST /reload")
    assert json.loads(body) == {"ok": True, "generation": 2}, body
    hit = gate.wait_log(event_re("reload"), since=m)
    assert hit.get("result") == "ok" and hit.get("generation") == "2", hit.line
    check_verdict(gate, "127.0.0.3", "allow", "127.0.0.3/32", src=("allow.txt", 3))
    c = connect(web, "127.0.0.3")
    echo_check(c)
    c.close()
    s = admin_stats(gate)
    assert (s["generation"], s["reloads"]) == (2, 1), s

    # a bad list file: host bits set on line 3
    gate.write(RELOAD_GATE % "", files={"allow.txt": "# v3\n127.0.0.4\n10.1.2.3/8\n"}, admin=True)
    status, headers, body = gate.http("POST", "/reload")
    assert status == 422, (status, body)
    assert_json_type(headers, "POST /reload (422)")
    d = json.loads(body)
    assert d.get("ok") is False, d
    assert re.search(r"(?:^|/)allow\.txt:3: \S", d.get("error", "")), d
    assert "10.0.0.0/8" in d["error"], d
    check_verdict(gate, "127.0.0.3", "allow", "127.0.0.3/32", src=("allow.txt", 3))
    check_verdict(gate, "127.0.0.4", "deny")
    expect_rejected(web, "127.0.0.4")
    assert is_served(web, "127.0.0.3")

    # a bad INI key
    gate.write(RELOAD_GATE % "bogus_key = 1", files={"allow.txt": "127.0.0.4\n"}, admin=True)
    status, _, body = gate.http("POST", "/reload")
    assert status == 422, (status, body)
    d = json.loads(body)
    ini = gate.ini_path.rsplit("/", 1)[1]
    assert d.get("ok") is False and re.search(
        r"(?:^|/)%s:%d: \S" % (re.escape(ini), gate.line_of("bogus_key")), d.get("error", "")), d

    # a listener change needs a restart
    gate.write((RELOAD_GATE % "").replace("127.0.0.1:$web", "127.0.0.1:$web2"),
               files={"allow.txt": "127.0.0.4\n"}, admin=True)
    status, _, body = gate.http("POST", "/reload")
    assert status == 422, (status, body)
    d = json.loads(body)
    assert d.get("ok") is False and "restart" in d.get("error", "").lower(), d

    s = admin_stats(gate)
    assert (s["generation"], s["reloads"]) == (2, 1), s
    mt = Metrics(gate.http("GET", "/metrics")[2].decode())
    assert mt.value("condgate_reloads_total") == 1 and mt.value("condgate_config_generation") == 2

    # fixed: goes through
    gate.write(RELOAD_GATE % "", files={"allow.txt": "127.0.0.4\n"}, admin=True)
    assert gate.json("/reload", method="POST") == {"ok": True, "generation": 3}
    check_verdict(gate, "127.0.0.4", "allow", "127.0.0.4/32", src=("allow.txt", 1))
    check_verdict(gate, "127.0.0.3", "deny")

    # concurrent requests: each answered, none lost, generations consistent
    results = [None] * 4

    def post(i):
        try:
            results[i] = gate.http("POST", "/reload", timeout=15)
        except Exception as e:  # reported below
            results[i] = e

    threads = [threading.Thread(target=post, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    gens = []
    for r in results:
        assert isinstance(r, tuple) and r[0] == 200, r
        d = json.loads(r[2])
        assert d.get("ok") is True, d
        gens.append(d["generation"])
    s = admin_stats(gate)
    assert all(4 <= g <= 7 for g in gens) and max(gens) == s["generation"], (gens, s)
    assert s["reloads"] == s["generation"] - 1, s
    gate.stop()


# ---------------------------------------------------------------------------
# slow and idle clients (the two scenarios run side by side)


def _silent_client_is_cut_off(gate):
    t0 = time.monotonic()
    silent = make_socket("127.0.0.1", timeout=20)
    silent.connect((gate.admin_host, gate.admin_port))
    partial = make_socket("127.0.0.1", timeout=20)
    partial.connect((gate.admin_host, gate.admin_port))
    partial.sendall(b"GET /stats HTTP/1.1\r\nHost: x\r\n")   # and never the end
    served = 0
    result = {}

    def watch(name, s):
        try:
            data = s.recv(65536)
            result[name] = (time.monotonic() - t0, data)
        except OSError as e:
            result[name] = (time.monotonic() - t0, e)

    ws = [threading.Thread(target=watch, args=(n, s), daemon=True)
          for n, s in (("silent", silent), ("partial", partial))]
    for w in ws:
        w.start()
    try:
        # others are served meanwhile, promptly
        while any(w.is_alive() for w in ws) and time.monotonic() - t0 < 16:
            t1 = time.monotonic()
            status, _, _ = gate.http("GET", "/stats", src="127.0.0.2", timeout=3)
            assert status == 200
            assert time.monotonic() - t1 < 3.0, "a request took %.1fs while an idle client " \
                "was connected" % (time.monotonic() - t1)
            served += 1
            time.sleep(0.2)  # request pacing
        for w in ws:
            w.join(1)
        for name in ("silent", "partial"):
            assert name in result, "the %s admin client was not cut off within 16 s" % name
            took, data = result[name]
            assert 3.0 <= took <= 15.0, "%s client cut off after %.1fs (timeout is 5 s)" % (
                name, took)
            if name == "silent":
                assert not isinstance(data, bytes) or data == b"", (
                    "the silent client received %r" % data[:100])
        assert served >= 5, served
    finally:
        silent.close()
        partial.close()


def _idle_flood_does_not_lock_out(gate):
    t0 = time.monotonic()
    flood = []
    try:
        for i in range(100):
            s = socket.socket()
            s.setblocking(False)
            s.bind(("127.0.0.%d" % (10 + i % 50), 0))
            s.connect_ex((gate.admin_host, gate.admin_port))
            flood.append(s)
        first_ok = None
        while time.monotonic() - t0 < 15:
            try:
                status, _, _ = gate.http("GET", "/healthz", src="127.0.0.1", timeout=2)
            except (OSError, http.client.HTTPException):
                status = None
            if status == 200:
                first_ok = time.monotonic() - t0
                break
            time.sleep(0.1)  # retry pacing
        assert first_ok is not None, "100 idle admin connections locked a legitimate client " \
            "out for more than 15 s"
    finally:
        for s in flood:
            s.close()
    # and once they are gone, requests are prompt again
    t1 = time.monotonic()
    assert gate.http("GET", "/healthz", timeout=5)[0] == 200
    assert time.monotonic() - t1 < 3.0


def test_idle_admin_clients_are_cut_off(make_gate):
    a, b = make_gate("single"), make_gate("flood")
    for g in (a, b):
        g.write(ECHO_GATE, admin=True)
        g.start()
    errors = []

    def run(fn, g):
        try:
            fn(g)
        except BaseException as e:  # pytest.fail raises a BaseException
            errors.append((fn.__name__, e))

    ts = [threading.Thread(target=run, args=(_silent_client_is_cut_off, a)),
          threading.Thread(target=run, args=(_idle_flood_does_not_lock_out, b))]
    for t in ts:
        t.start()
    for t in ts:
        t.join(40)
    assert not any(t.is_alive() for t in ts), "a scenario hung"
    if errors:
        raise AssertionError("\n".join("%s: %s" % (n, e) for n, e in errors))

    # SIGTERM with an admin client hanging on: the gate still exits promptly
    hang = make_socket("127.0.0.1")
    hang.connect((a.admin_host, a.admin_port))
    hang.sendall(b"GET /stats HTTP/1.1\r\n")
    t0 = time.monotonic()
    a.stop(timeout=10)
    hang.close()
    b.stop(timeout=10)
    assert time.monotonic() - t0 < 10


def test_reload_keeps_the_admin_address(gate):
    """The admin port is bound once: a reload that moves it is applied
    otherwise (200), the port stays where it was and the log says that a
    restart is needed (as for a change of workers)."""
    gate.write(ECHO_GATE, admin=True)
    gate.start()
    old = gate.admin_port
    new = gate.port("admin2")
    gate.write(ECHO_GATE + "\n[admin]\nlisten = 127.0.0.1:$admin2\n")
    m = gate.mark()
    # gate.http() would follow the rendered INI (the new port): talk to the old one
    raw = raw_request_to(old, b"POST /reload HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
                              b"Connection: close\r\n\r\n")
    assert status_of(raw) == 200, raw[:300]
    hit = gate.wait_log(r"restart", since=m)
    assert "admin" in hit.line, hit.line
    assert listening_ports(gate.pid) == {gate.port("web"), old}, (old, new)
    gate.stop()


def raw_request_to(port, data, host="127.0.0.1", timeout=5.0):
    class _G:
        admin_host, admin_port = host, port
    return raw_request(_G, data, timeout=timeout)
