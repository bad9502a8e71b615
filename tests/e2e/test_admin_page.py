"""The admin page (GET /, src/admin_page.html) in a real browser.

Headless Chromium (Debian package `chromium`) loads the page from a running
gate, lets its timers run on virtual time and prints the DOM; the figures the
page shows must be exactly those of /stats and /rules fetched right after.
Then a 1280x800 screenshot, kept as a test artifact (copied to
$CONDGATE_ARTIFACTS when that is set).

No Chromium is a failure, not a skip: a page nobody renders is a page nobody
tested.
"""

import html.parser
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import threading
import time

import pytest

from cgtest import connect, echo_check, expect_rejected, is_served

PAGE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "src",
                    "admin_page.html")
PAGE_MAX_BYTES = 30 * 1024
CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
CHROMIUM_TIMEOUT = 30.0

GATE = """
[gateway]
workers = 2

[rules]
default = deny
allow = 127.0.0.0/24
deny = 127.0.0.66

[rules:office]
default = deny
allow = 127.0.0.5

[listener:web]
bind = 127.0.0.1:$web
backend = echo
rules = default

[listener:office]
bind = 127.0.0.1:$office
backend = echo
rules = office
"""


# ---------------------------------------------------------------------------
# Chromium

def chromium():
    override = os.environ.get("CONDGATE_CHROMIUM")
    for path in ((override,) if override else CHROMIUM_CANDIDATES):
        if path and os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    pytest.fail("no headless browser for the admin page test: install the Debian package "
                "`chromium` (apt-get install -y chromium), or point CONDGATE_CHROMIUM at a "
                "Chromium binary", pytrace=False)


def run_chromium(tmp_path, url, *args, name="run"):
    """One headless Chromium run on `url` with a fresh profile; returns
    stdout. Chromium runs in its own session, so a hung run is ended with
    every helper process it started."""
    profile = tmp_path / ("profile-" + name)
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    cmd = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
           "--no-first-run", "--disable-background-networking", "--disable-component-update",
           "--disable-sync", "--disable-extensions", "--user-data-dir=%s" % profile]
    cmd += list(args) + [url]
    env = dict(os.environ, HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"),
               XDG_CACHE_HOME=str(home / ".cache"))
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=CHROMIUM_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail("chromium did not finish within %.0fs: %s\n%s"
                    % (CHROMIUM_TIMEOUT, " ".join(cmd), err.decode(errors="replace")[-3000:]),
                    pytrace=False)
    assert proc.returncode == 0, "chromium exited with %d: %s\n%s" % (
        proc.returncode, " ".join(cmd), err.decode(errors="replace")[-3000:])
    return out.decode("utf-8", "replace")


def render_dom(tmp_path, url, name="dom", budget_ms=5000):
    """The DOM after the page's scripts ran for `budget_ms` of virtual time
    (enough for two or three 2 s polls; virtual time waits for fetches)."""
    return run_chromium(tmp_path, url, "--virtual-time-budget=%d" % budget_ms, "--dump-dom",
                        name=name)


class Fields(html.parser.HTMLParser):
    """Every element carrying data-field: its attributes and its text.
    Also the attributes of <body> and of each canvas."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.fields = []
        self.body = {}
        self.canvases = []
        self._open = []  # [(tag, record)]

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "body":
            self.body = a
        if tag == "canvas":
            self.canvases.append(a)
        if "data-field" in a:
            rec = dict(a, text="")
            self.fields.append(rec)
            self._open.append((tag, rec))
        elif self._open:
            self._open.append((tag, None))

    def handle_endtag(self, tag):
        while self._open:
            t, _ = self._open.pop()
            if t == tag:
                break

    def handle_data(self, data):
        for _, rec in self._open:
            if rec is not None:
                rec["text"] += data

    SCOPES = ("data-listener", "data-worker", "data-rule")

    def one(self, **match):
        """The single field whose attributes match (data_x=... for data-x);
        a scope (data-listener, ...) not asked for must be absent: the
        gate's rejected_by.ban, not a listener's."""
        want = {k.replace("_", "-"): str(v) for k, v in match.items()}
        found = [f for f in self.fields
                 if all(f.get(k) == v for k, v in want.items())
                 and not any(s in f for s in self.SCOPES if s not in want)]
        assert len(found) == 1, "wanted one element with %r in the rendered page, found %d: %r" % (
            want, len(found), found)
        return found[0]

    def without(self, *scopes):
        """Fields that belong to none of the scopes (data-listener, ...)."""
        return [f for f in self.fields if not any(s in f for s in scopes)]


def parse_dom(dom):
    p = Fields()
    p.feed(dom)
    p.close()
    return p


def pick(doc, path):
    for k in path.split("."):
        doc = doc[k]
    return doc


def assert_shown(field, value, where):
    """data-value is the raw number; the text is its human form."""
    assert field.get("data-value") == str(value), "%s: the page shows %r (data-value %r), /stats says %r" % (
        where, field["text"], field.get("data-value"), value)
    text = field["text"].strip()
    fmt = field.get("data-format")
    if fmt == "int":
        assert text == "{:,}".format(value), "%s: text %r for %r" % (where, text, value)
    elif fmt == "bytes":
        if value < 1024:
            assert text == "%d B" % value, "%s: text %r for %r bytes" % (where, text, value)
        else:
            assert re.fullmatch(r"[\d.]+ [KMGTP]iB", text), "%s: text %r for %r bytes" % (
                where, text, value)


def png_size(path):
    """(width, height) of a PNG file, asserting its signature and IHDR."""
    with open(path, "rb") as f:
        head = f.read(33)
    assert head[:8] == b"\x89PNG\r\n\x1a\n", "%s is not a PNG (starts %r)" % (path, head[:8])
    assert head[12:16] == b"IHDR", "%s: no IHDR chunk first" % path
    return struct.unpack(">II", head[16:24])


# ---------------------------------------------------------------------------
# The gate and its traffic

def settle(gate, timeout=10.0):
    """/stats once nothing moves: no connection open, every accepted one
    closed, and two reads in a row the same."""
    deadline = time.monotonic() + timeout
    prev = None
    while True:
        s = gate.json("/stats")
        s.pop("uptime_s", None)
        s.pop("admin", None)  # the admin port's own request counters move with every read
        c = s["connections"]
        quiet = (c["active"] == 0 and c["closed"] == c["accepted"]
                 and all(w["active"] == 0 for w in s["workers"]))
        if quiet and s == prev:
            return s
        if time.monotonic() > deadline:
            pytest.fail("the gate's counters never settled: %r" % s, pytrace=False)
        prev = s if quiet else None
        time.sleep(0.05)


def traffic(gate):
    """Admitted and rejected callers of both listeners, each counted by a
    different amount so a figure in the wrong place cannot pass."""
    web, office = gate.port("web"), gate.port("office")
    for src, n in (("127.0.0.2", 3), ("127.0.0.3", 2), ("127.0.0.5", 1)):
        for _ in range(n):
            c = connect(web, src)
            echo_check(c, b"page test %s\n" % src.encode())
            c.close()
    c = connect(office, "127.0.0.5")
    echo_check(c, b"x" * 3000)  # past 1 KiB: the bytes format shows KiB
    c.close()
    for _ in range(4):
        expect_rejected(web, "127.0.0.66")     # deny rule
    expect_rejected(web, "127.0.1.9")          # default deny
    for _ in range(2):
        expect_rejected(office, "127.0.0.7")   # default deny


class Background:
    """Keep a little traffic going (admitted and rejected) while the
    screenshot is taken, so its charts have something to draw."""

    def __init__(self, gate):
        self.gate = gate
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        web = self.gate.port("web")
        i = 0
        while not self.stop.is_set():
            try:
                if i % 3 == 2:
                    expect_rejected(web, "127.0.0.66", timeout=2)
                else:
                    c = connect(web, "127.0.0.2", timeout=2)
                    echo_check(c, b"bg\n", timeout=2)
                    c.close()
            except Exception:  # only decoration: never fail the test here
                pass
            i += 1
            self.stop.wait(0.02)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(5)


# ---------------------------------------------------------------------------
# Tests

def test_page_is_small_self_contained_and_served_verbatim(gate):
    with open(PAGE, "rb") as f:
        page = f.read()
    assert len(page) < PAGE_MAX_BYTES, "admin_page.html is %d bytes, over %d" % (
        len(page), PAGE_MAX_BYTES)
    text = page.decode("utf-8")
    assert text.startswith("<!DOCTYPE html>"), text[:40]
    # Nothing loaded from elsewhere, no inline handlers, no innerHTML.
    markup = re.sub(r"<(script|style)\b.*?</\1>", "", text, flags=re.S | re.I)
    refs = re.findall(r"""\s(?:src|href|action)\s*=\s*["']?([^"'\s>]*)""", markup, re.I)
    assert all(r.startswith(("data:", "#")) for r in refs), "external references: %r" % refs
    assert not re.search(r"\b(https?:)?//[a-z0-9]", re.sub(r"<!--.*?-->", "", text, flags=re.S),
                         re.I), "a URL in the page"
    assert not re.search(r"\son[a-z]+\s*=", text, re.I), "an inline event handler"
    assert "innerHTML" not in text and "insertAdjacentHTML" not in text and "eval(" not in text

    gate.write(GATE, admin=True)
    gate.start()
    status, headers, body = gate.http("GET", "/")
    assert status == 200, (status, body[:200])
    assert headers.get("content-type", "").startswith("text/html"), headers
    assert body == page, "GET / is not src/admin_page.html byte for byte (%d vs %d bytes)" % (
        len(body), len(page))
    gate.stop()


def test_page_shows_what_stats_says(gate, tmp_path, request):
    t0 = time.monotonic()
    gate.write(GATE, admin=True)
    gate.start()
    traffic(gate)
    settle(gate)
    url = gate.admin_url + "/"

    dom = render_dom(tmp_path, url)
    stats = gate.json("/stats")
    rules = gate.json("/rules")
    page = parse_dom(dom)

    assert page.body.get("data-state") == "ok", "page state %r; banner: %s" % (
        page.body.get("data-state"), re.findall(r'id="banner"[^>]*>([^<]*)<', dom))
    assert int(page.body.get("data-polls", "0")) >= 2, "the page polled /stats %s times" % (
        page.body.get("data-polls"))

    # Header and totals.
    for path in ("generation", "reloads", "connections.accepted", "connections.rejected",
                 "connections.active", "connections.closed", "rejected_by.rule",
                 "rejected_by.default", "rejected_by.limit", "rejected_by.ban",
                 "rejected_by.source_limit", "rejected_by.source_rate", "bans.count",
                 "bans.closed_connections", "sources.table_full", "bytes.in", "bytes.out"):
        assert_shown(page.one(data_field=path), pick(stats, path), path)
    assert page.one(data_field="version")["text"].strip() == "v" + stats["version"]
    up = int(page.one(data_field="uptime_s")["data-value"])
    assert 0 <= stats["uptime_s"] - up <= 10, (up, stats["uptime_s"])
    # The traffic above, as the page must show it (and /stats agree).
    assert stats["connections"]["accepted"] == 7 and stats["connections"]["rejected"] == 7, stats
    assert stats["rejected_by"] == {"rule": 4, "default": 3, "limit": 0, "ban": 0,
                                    "source_limit": 0, "source_rate": 0,
                                    "untrusted_proxy": 0, "proxy_header": 0}, stats
    # No ban: the page says so.
    assert stats["bans"]["newest"] is None, stats["bans"]
    assert page.one(data_field="bans.newest.cidr")["text"].strip() == "none"

    # Per listener.
    names = [l["name"] for l in stats["listeners"]]
    assert sorted(names) == ["office", "web"], names
    for l in stats["listeners"]:
        for key in ("accepted", "rejected", "active", "backend_errors", "bytes_in", "bytes_out"):
            assert_shown(page.one(data_listener=l["name"], data_field=key), l[key],
                         "listener %s %s" % (l["name"], key))
    shown = {f["data-listener"] for f in page.fields if "data-listener" in f}
    assert shown == set(names), shown
    charts = [c for c in page.canvases if c.get("role") == "img"]
    assert len(charts) == 2, page.canvases
    for c in charts:
        assert int(c.get("data-points", "0")) >= 1, "a chart without samples: %r" % c
        assert c.get("aria-label"), c

    # Workers.
    assert len(stats["workers"]) == 2, stats["workers"]
    for w in stats["workers"]:
        for key in ("active", "handled"):
            assert_shown(page.one(data_worker=str(w["id"]), data_field=key), w[key],
                         "worker %s %s" % (w["id"], key))
    assert sum(w["handled"] for w in stats["workers"]) == 7, stats["workers"]

    # Most-hit rules: every entry with hits, with its count.
    hit = {e["cidr"]: e["hits"] for s in rules["sets"] for e in s["top"] if e["hits"] > 0}
    assert hit.get("127.0.0.66/32") == 4 and hit.get("127.0.0.0/24") == 6, hit
    rows = {f["data-rule"]: f for f in page.fields if f.get("data-field") == "hits"}
    assert set(rows) == set(hit), "rules shown %r, hit %r" % (sorted(rows), hit)
    for cidr, n in hit.items():
        assert_shown(rows[cidr], n, "hits of %s" % cidr)

    # Everything inserted as text: no markup smuggled in by names.
    assert "<script" not in dom.split("</script>", 1)[1], "a script element after the page's own"

    # The screenshot, with a little traffic so the charts have lines.
    shot = tmp_path / "admin.png"
    with Background(gate):
        # 40 s of page time: twenty polls, each a real round trip.
        run_chromium(tmp_path, url, "--virtual-time-budget=40000", "--window-size=1280,800",
                     "--hide-scrollbars", "--screenshot=%s" % shot, name="shot")
    assert shot.is_file(), "chromium wrote no screenshot"
    assert png_size(shot) == (1280, 800), png_size(shot)
    size = shot.stat().st_size
    assert 20_000 < size < 5_000_000, "screenshot of %d bytes: blank or broken?" % size
    print("admin page screenshot: %s (%d bytes)" % (shot, size))
    request.node.user_properties.append(("screenshot", str(shot)))
    artifacts = os.environ.get("CONDGATE_ARTIFACTS")
    if artifacts:
        os.makedirs(artifacts, exist_ok=True)
        dest = os.path.join(artifacts, "admin_page.png")
        shutil.copyfile(shot, dest)
        print("copied to %s" % dest)
    gate.stop()
    assert time.monotonic() - t0 < 60, "the page test took %.1fs" % (time.monotonic() - t0)


def test_page_asks_for_a_token(gate, tmp_path):
    gate.write(GATE, admin=True, token="page-s3cret")
    gate.start()
    status, _, _ = gate.http("GET", "/stats", auth=False)
    assert status == 401, status
    # A browser opening the page cannot send a bearer token: the page itself
    # (static, no figures in it) must load without one, then ask for it.
    status, _, body = gate.http("GET", "/", auth=False)
    assert status == 200, (
        "GET / without a token answers %d %r: with [admin] token set the page cannot be "
        "opened in a browser at all (it cannot send Authorization when navigating), so its "
        "token field is useless. Serve the static page without a token; the data endpoints "
        "keep requiring it." % (status, body[:100]))
    dom = render_dom(tmp_path, gate.admin_url + "/", budget_ms=3000)
    page = parse_dom(dom)
    assert page.body.get("data-state") == "auth", page.body
    banner = re.search(r'id="banner"[^>]*>([^<]*)<', dom)
    assert banner and "token" in banner.group(1).lower() and "401" in banner.group(1), banner
    assert "page-s3cret" not in dom
    # No figure was made up.
    assert all(f.get("data-value", "") == "" for f in page.fields), page.fields
    gate.stop()


GATE_BANS = """
[gateway]
state_file = bans.json
source_table_max = 2

[rules]
default = deny
allow = 127.0.0.0/8
deny = 127.0.0.66

[listener:web]
bind = 127.0.0.1:$web
backend = echo
max_per_source = 1

[listener:trial]
bind = 127.0.0.1:$trial
backend = echo
mode = shadow
"""


def test_page_shows_bans_sources_and_shadow(gate, tmp_path):
    """Bans (count, newest, connections closed), refusals by ban and by
    source_limit (one of them a full source table), a shadow listener: the
    page shows what /stats says, and a ban's reason only ever as text."""
    gate.write(GATE_BANS, admin=True)
    gate.start()
    web, trial = gate.port("web"), gate.port("trial")

    def ban(cidr, reason):
        body = json.dumps({"cidr": cidr, "ttl_s": 600, "reason": reason})
        return gate.json("/bans", method="POST", expect=201, body=body)["ban"]

    # A ban closes the open connection its caller had.
    victim = connect(web, "127.0.0.99")
    echo_check(victim)
    ban("127.0.0.99/32", "older")
    victim.settimeout(2.0)
    try:
        assert victim.recv(16) == b""
    except ConnectionResetError:
        pass
    victim.close()
    newest = ban("127.0.0.77/32", "<b>x</b>")
    for _ in range(2):
        expect_rejected(web, "127.0.0.77")         # ban
    # max_per_source = 1, and a source table of 2 sources with open
    # connections: a third source is refused too (table_full).
    held = [connect(web, src) for src in ("127.0.0.2", "127.0.0.3")]
    for s in held:
        echo_check(s)
    for _ in range(2):
        expect_rejected(web, "127.0.0.2")          # source_limit
    expect_rejected(web, "127.0.0.4")              # source_limit, table full
    for s in held:
        s.close()
    settle(gate)
    s = connect(trial, "127.0.0.66")               # denied by rule, admitted: shadow
    echo_check(s)
    s.close()
    assert is_served(web, "127.0.0.5")
    stats = settle(gate)

    assert stats["bans"]["count"] == 2 and stats["bans"]["closed_connections"] == 1, stats["bans"]
    nb = stats["bans"]["newest"]
    assert nb["cidr"] == "127.0.0.77/32" and nb["reason"] == "<b>x</b>", nb
    assert nb["origin"] == newest["origin"] == "admin", nb
    assert stats["rejected_by"]["ban"] == 2 and stats["rejected_by"]["source_limit"] == 3, stats
    assert stats["sources"]["table_full"] == 1, stats["sources"]
    lst = {l["name"]: l for l in stats["listeners"]}
    assert lst["trial"]["mode"] == "shadow" and lst["trial"]["shadow_rejected"] == 1, lst["trial"]
    assert lst["web"]["mode"] == "enforce", lst["web"]

    dom = render_dom(tmp_path, gate.admin_url + "/")
    page = parse_dom(dom)
    assert page.body.get("data-state") == "ok", page.body
    for path in ("bans.count", "bans.closed_connections", "bans.kernel_full", "rejected_by.ban",
                 "rejected_by.source_limit", "rejected_by.source_rate", "rejected_by.rule",
                 "sources.tracked", "sources.table_full", "sources.bytes",
                 "bans.newest.hits"):
        assert_shown(page.one(data_field=path), pick(stats, path), path)
    for key in ("cidr", "origin", "reason"):
        f = page.one(data_field="bans.newest." + key)
        # The reason as text: markup in it is not interpreted (an element
        # would leave only "x" as the field's text).
        assert f["text"].strip() == nb[key], "newest ban %s: page %r, /stats %r" % (
            key, f["text"], nb[key])
    assert "<b>x</b>" not in re.sub(r'data-value="[^"]*"', "", dom), "the ban reason became markup"
    left = int(page.one(data_field="bans.newest.ttl_s")["data-value"])
    assert 0 <= nb["ttl_s"] - left <= 15, (left, nb["ttl_s"])  # the page read /stats later
    # Per listener: refusals by reason, the shadow mode and what it admitted.
    for name, l in lst.items():
        for key in ("rejected_by.ban", "rejected_by.source_limit", "rejected_by.rule",
                    "shadow_rejected", "closed_by_ban"):
            assert_shown(page.one(data_listener=name, data_field=key), pick(l, key),
                         "listener %s %s" % (name, key))
        assert page.one(data_listener=name, data_field="mode").get("data-value") == l["mode"]
    assert page.one(data_listener="trial", data_field="mode")["text"].strip() == "shadow"
    gate.stop()
