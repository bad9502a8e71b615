"""Helpers for the condgate end-to-end tests (standard library only).

- Gate: writes an INI file (and rule files) into a directory, starts the real
  binary, collects its stderr/stdout line by line in reader threads and lets a
  test wait for log lines, send signals, read counters (SIGUSR1) and stop it.
- free_port(): a TCP port that is free on every address family.
- connect()/expect_reset()/echo_check(): clients with a chosen source address.
- Server: a backend in threads with pluggable per-connection handlers;
  Blackhole: a port whose handshakes never complete; closed_port().

Admin port (SPEC §6). By default every config gets "[admin] listen = off".
To test the admin port:

    gate.write(ini, admin=True, admin_allow=None, token=None)
        appends "[admin] listen = 127.0.0.1:$admin" (a free port, stable
        across rewrites like every $name), plus "allow = ..." when
        admin_allow is given (a string or a list of CIDRs; None: the key is
        left out, i.e. the default loopback-only) and "token = ..." when
        token is given. A template with its own [admin] section wins over
        all of this and is used verbatim (write "listen = 127.0.0.1:$admin"
        in it to get a free port).
    gate.start()            the admin port is expected to be serving once
                            event=start is logged.
    gate.admin_url          "http://127.0.0.1:PORT" (None when off),
                            from the rendered [admin] listen value;
    gate.admin_host, gate.admin_port, gate.admin_token (as rendered).
    gate.http(method, path, headers=None, src=None, timeout=5, body=None,
              auth=True) -> (status, headers, body bytes)
        one request on a fresh connection (http.client) from source
        address `src` (e.g. "127.0.0.2"; None: the kernel's choice).
        `headers` of the answer is a dict with case-insensitive lookups
        (h["content-type"] == h["Content-Type"]). When the config has a
        token and `auth` is true, "Authorization: Bearer TOKEN" is sent
        unless `headers` has its own Authorization.
    gate.json(path, method="GET", expect=200, **kw) -> parsed JSON body
        asserts the status is `expect` (an int or a tuple of ints); kw go
        to http().

Every wait has a timeout; nothing synchronises by sleeping.
"""

import errno
import hashlib
import http.client
import json as _json
import os
import random
import re
import select
import signal as _signal
import socket
import string
import subprocess
import textwrap
import threading
import time

import pytest

# Generous by default: the suite must survive a loaded 2-core machine.
START_TIMEOUT = 15.0
LOG_TIMEOUT = 10.0
IO_TIMEOUT = 10.0

# ---------------------------------------------------------------------------
# Addresses and ports


def _have_ipv6():
    try:
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    except OSError:
        return False
    try:
        s.bind(("::1", 0))
        return True
    except OSError:
        return False
    finally:
        s.close()


HAVE_IPV6 = _have_ipv6()

_ports_lock = threading.Lock()
_ports_handed_out = set()


def _ephemeral_low():
    """The kernel's first ephemeral port: connect() picks local ports from
    there up, and each of them may sit in TIME_WAIT for a minute."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


# Ports for listeners come from below the ephemeral range. Asking the kernel
# for port 0 instead ran dry in CI: after the suite's load tests tens of
# thousands of ephemeral ports were in TIME_WAIT, bind(0) kept returning the
# few free ones, and every one of those had been handed out already.
_PORT_LOW = 10000
_PORT_HIGH = max(_PORT_LOW + 2000, min(_ephemeral_low(), 32768)) - 1
_port_rng = random.Random(os.getpid() ^ int(time.time()))


def _bindable(port):
    """Whether port is free on the wildcard (dual-stack when possible), hence
    for 0.0.0.0, 127.x, [::] and [::1]."""
    fam = socket.AF_INET6 if HAVE_IPV6 else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    try:
        if HAVE_IPV6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        s.bind(("::" if HAVE_IPV6 else "0.0.0.0", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def free_port():
    """A port nobody is bound to right now, below the ephemeral range and
    never handed out twice in this session. The gate may still lose a race
    for it: Gate.start() retries with new ports when the gate reports a bind
    failure."""
    for _ in range(2000):
        port = _port_rng.randint(_PORT_LOW, _PORT_HIGH)
        with _ports_lock:
            if port in _ports_handed_out:
                continue
        if not _bindable(port):
            continue
        with _ports_lock:
            if port not in _ports_handed_out:
                _ports_handed_out.add(port)
                return port
    raise RuntimeError("could not find a free TCP port")


def port_is_free(port, host="127.0.0.1"):
    """Whether we can bind (and listen on) host:port ourselves."""
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    try:
        s.bind((host, port))
        s.listen(1)
        return True
    except OSError:
        return False
    finally:
        s.close()


# ---------------------------------------------------------------------------
# Log lines

_KV = re.compile(r'([A-Za-z_][A-Za-z0-9_.\-]*)=("(?:[^"\\]|\\.)*"|\S*)')


def _unquote(v):
    if len(v) >= 2 and v[0] == '"' and v[-1] == '"':
        return re.sub(r"\\(.)", r"\1", v[1:-1])
    return v


def parse_kv(line):
    """'ts=.. level=info event=reject peer=1.2.3.4:5 msg="a b"' -> dict."""
    return {k: _unquote(v) for k, v in _KV.findall(line)}


def _intify(d):
    out = {}
    for k, v in d.items():
        out[k] = int(v) if re.fullmatch(r"-?\d+", v or "") else v
    return out


def event_re(name):
    """Regex for a text line (or JSON object) of event `name`."""
    n = re.escape(name)
    return r'(?:\bevent=%s(?=\s|$)|"event"\s*:\s*"%s")' % (n, n)


class Hit:
    """One matching log line."""

    def __init__(self, index, line, match):
        self.index = index
        self.line = line
        self.match = match
        self.fields = parse_kv(line)

    def __getitem__(self, key):
        return self.fields[key]

    def get(self, key, default=None):
        return self.fields.get(key, default)

    def __repr__(self):
        return "Hit(%d, %r)" % (self.index, self.line)


class HeaderDict(dict):
    """Response headers: keys as sent, lookups case-insensitive. A header
    sent several times is joined with ", "."""

    def __init__(self, pairs=()):
        super().__init__()
        for k, v in pairs:
            old = self.get(k)
            self[k] = v if old is None else old + ", " + v

    def _key(self, key):
        if not isinstance(key, str):
            return key
        for k in dict.keys(self):
            if k.lower() == key.lower():
                return k
        return key

    def __getitem__(self, key):
        return dict.__getitem__(self, self._key(key))

    def __setitem__(self, key, value):
        dict.__setitem__(self, self._key(key), value)

    def __contains__(self, key):
        return dict.__contains__(self, self._key(key))

    def get(self, key, default=None):
        return dict.get(self, self._key(key), default)


class _PortMap(dict):
    """$name placeholders in a config template: a fresh port per new name."""

    def __missing__(self, key):
        port = free_port()
        self[key] = port
        return port


SANITIZER_MARKERS = (
    "ERROR: AddressSanitizer",
    "ERROR: LeakSanitizer",
    "WARNING: ThreadSanitizer",
    "runtime error:",
    "ERROR: UndefinedBehaviorSanitizer",
)


def _with_prefilter(template, mode):
    """`prefilter = mode` added to each [listener:...] section without one,
    after its last key line."""
    if mode is None:
        return template
    out, section, has, last_key = [], None, False, None
    lines = template.split("\n")

    def close():
        if section is not None and section.startswith("listener:") and not has \
                and last_key is not None:
            out.insert(last_key + 1, "prefilter = %s" % mode)

    for line in lines:
        m = re.match(r"^\s*\[([^\]]*)\]", line)
        if m:
            close()
            section, has, last_key = m.group(1).strip(), False, None
        elif re.match(r"^\s*prefilter\s*=", line):
            has = True
        if re.match(r"^\s*[A-Za-z_]+\s*=", line) or m:
            last_key = len(out)
        out.append(line)
    close()
    return "\n".join(out)


class Gate:
    """One condgate process driven by a test.

    g.write(ini, files) renders the INI template: "$name" (or "${name}") is
    replaced by a TCP port allocated for that name (stable across rewrites,
    so reload configs can reuse the same ports); `files` are written next to
    it verbatim (dedented). "[admin] listen = off" is appended unless the
    template has an [admin] section; with admin=True an enabled [admin]
    section is appended instead (see the module docstring).
    """

    def __init__(self, binary, workdir, name="gate"):
        self.binary = os.path.abspath(str(binary))
        self.dir = str(workdir)
        self.name = name
        self.ini_path = os.path.join(self.dir, "condgate.ini")
        self.ports = _PortMap()
        self.template = None
        self.files = {}
        self.ini_text = ""
        self._admin_off = True
        self._admin = (False, None, None)
        self.proc = None
        self.cmd = None
        self.lines = []       # stderr lines of the current run
        self.out_lines = []   # stdout lines of the current run
        self.history = []     # text of earlier runs/attempts, for reports
        self.listeners = []   # listener names of the running configuration
        self._cond = threading.Condition()
        self._eof = {"err": True, "out": True}
        self._readers = []

    # -- configuration ----------------------------------------------------

    def write(self, ini, files=None, admin_off=True, admin=False, admin_allow=None,
              token=None, prefilter="off"):
        """prefilter: written into every [listener:...] section that does
        not say (at the end of its keys): "off" by default, so that tests of
        judging after accept keep testing it whatever the machine may load;
        None leaves the listeners at the product's default (auto)."""
        self.template = _with_prefilter(textwrap.dedent(ini).lstrip("\n"), prefilter)
        self._admin_off = admin_off
        self._admin = (admin, admin_allow, token)
        if files:
            for fname, content in files.items():
                self.files[fname] = content
        self._render()
        return self.ini_path

    def _render(self):
        template = self.template
        admin, admin_allow, token = self._admin
        has_admin = re.search(r"^\s*\[admin\]", template, re.M)
        if admin and not has_admin:
            extra = "\n[admin]\nlisten = 127.0.0.1:$admin\n"
            if admin_allow is not None:
                if not isinstance(admin_allow, str):
                    admin_allow = ", ".join(admin_allow)
                extra += "allow = %s\n" % admin_allow
            if token is not None:
                extra += "token = %s\n" % token
            if not template.endswith("\n"):
                template += "\n"
            template += extra
        text = string.Template(template).substitute(self.ports)
        if self._admin_off and not re.search(r"^\s*\[admin\]", text, re.M):
            if not text.endswith("\n"):
                text += "\n"
            text += "\n[admin]\nlisten = off\n"
        self.ini_text = text
        for fname, content in self.files.items():
            path = os.path.join(self.dir, fname)
            if content is None:
                if os.path.exists(path):
                    os.unlink(path)
                continue
            if isinstance(content, str):
                content = textwrap.dedent(content).lstrip("\n").encode()
            _atomic_write(path, content)
        _atomic_write(self.ini_path, text.encode())

    def port(self, name):
        return self.ports[name]

    # -- admin port -------------------------------------------------------

    def _admin_key(self, key):
        """Value of `key` in the rendered [admin] section (None if absent)."""
        section = None
        value = None
        for raw in self.ini_text.splitlines():
            line = raw.strip()
            if not line or line[0] in ";#":
                continue
            m = re.match(r"\[([^\]]*)\]", line)
            if m:
                section = m.group(1).strip()
                continue
            if section != "admin" or "=" not in line:
                continue
            k, v = line.split("=", 1)
            if k.strip() == key:
                value = re.split(r"\s;", v, 1)[0].strip()
        return value

    @property
    def admin_endpoint(self):
        """(host, port) of the admin port as rendered, or None when off.
        A missing listen key means the default 127.0.0.1:9090."""
        listen = self._admin_key("listen")
        if listen is None:
            listen = "127.0.0.1:9090"
        if listen == "off":
            return None
        host, port = listen.rsplit(":", 1)
        return host.strip("[]"), int(port)

    @property
    def admin_host(self):
        ep = self.admin_endpoint
        return ep and ep[0]

    @property
    def admin_port(self):
        ep = self.admin_endpoint
        return ep and ep[1]

    @property
    def admin_url(self):
        ep = self.admin_endpoint
        if ep is None:
            return None
        host = "[%s]" % ep[0] if ":" in ep[0] else ep[0]
        return "http://%s:%d" % (host, ep[1])

    @property
    def admin_token(self):
        return self._admin_key("token")

    def http(self, method, path, headers=None, src=None, timeout=5, body=None, auth=True):
        """One request to the admin port on a fresh connection:
        (status, headers (case-insensitive dict), body bytes)."""
        ep = self.admin_endpoint
        assert ep is not None, "the admin port is off in this configuration"
        hdrs = dict(headers or {})
        token = self.admin_token
        if auth and token and not any(k.lower() == "authorization" for k in hdrs):
            hdrs["Authorization"] = "Bearer %s" % token
        if isinstance(body, str):
            body = body.encode()
        conn = http.client.HTTPConnection(ep[0], ep[1], timeout=timeout,
                                          source_address=(src, 0) if src else None)
        try:
            conn.request(method, path, body=body, headers=hdrs)
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, HeaderDict(resp.getheaders()), data
        finally:
            conn.close()

    def json(self, path, method="GET", expect=200, **kw):
        """http() and parse the body as JSON, asserting the status."""
        status, headers, body = self.http(method, path, **kw)
        want = expect if isinstance(expect, tuple) else (expect,)
        assert status in want, "%s %s: status %d, wanted %s; body %r" % (
            method, path, status, "/".join(map(str, want)), body[:500])
        try:
            return _json.loads(body)
        except ValueError as e:
            raise AssertionError("%s %s: body is not JSON (%s): %r"
                                 % (method, path, e, body[:500]))

    def line_of(self, needle, fname=None, nth=1):
        """1-based line number of the nth line containing `needle` in the
        rendered INI (or in rule file `fname`)."""
        if fname is None:
            text = self.ini_text
        else:
            with open(os.path.join(self.dir, fname), encoding="utf-8") as f:
                text = f.read()
        seen = 0
        for i, l in enumerate(text.splitlines(), 1):
            if needle in l:
                seen += 1
                if seen == nth:
                    return i
        raise AssertionError("%r not found in %s" % (needle, fname or "INI"))

    @staticmethod
    def listener_names(text):
        return re.findall(r"^\s*\[listener:([^\]\s]+)\]", text, re.M)

    # -- process ----------------------------------------------------------

    def _spawn(self, args, prefix, env):
        if self.proc is not None:
            self._archive()
        self.lines = []
        self.out_lines = []
        self.cmd = list(prefix) + [self.binary, "-c", self.ini_path] + list(args)
        full_env = dict(os.environ)
        if env:
            full_env.update(env)
        self.proc = subprocess.Popen(
            self.cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, cwd=self.dir, env=full_env)
        self._eof = {"err": False, "out": False}
        self._readers = [
            threading.Thread(target=self._reader, args=(self.proc.stderr, self.lines, "err"),
                             daemon=True),
            threading.Thread(target=self._reader, args=(self.proc.stdout, self.out_lines, "out"),
                             daemon=True),
        ]
        for t in self._readers:
            t.start()

    def _reader(self, stream, sink, key):
        try:
            for raw in iter(stream.readline, b""):
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                with self._cond:
                    sink.append(line)
                    self._cond.notify_all()
        finally:
            with self._cond:
                self._eof[key] = True
                self._cond.notify_all()

    def _archive(self):
        self.join_readers(2.0)
        self.history.append("--- %s (exit %s)\n%s" % (
            " ".join(self.cmd or []), self.proc.returncode if self.proc else None,
            "\n".join(self.lines + ["[stdout]"] + self.out_lines)))

    def start(self, args=(), prefix=(), env=None, timeout=START_TIMEOUT, retries=3):
        """Start the gate and wait for its event=start line. When the gate
        exits with a bind failure (our port was taken meanwhile), retry with
        freshly allocated ports."""
        assert self.template is not None, "write() a config first"
        for attempt in range(retries):
            self._spawn(args, prefix, env)
            hit = self.wait_log(event_re("start"), timeout=timeout, fail=False)
            if hit is not None:
                self.listeners = self.listener_names(self.ini_text)
                return hit
            rc = self.wait_exit(5.0, fail=False)
            text = "\n".join(self.lines)
            if (rc == 1 and attempt + 1 < retries and self.ports
                    and re.search(r"in use|EADDRINUSE|address.*use", text, re.I)):
                for k in list(self.ports):
                    self.ports[k] = free_port()
                self._render()
                continue
            self.kill()
            pytest.fail("condgate did not log event=start within %.0fs (exit status %s)\n"
                        "command: %s\n--- log tail ---\n%s"
                        % (timeout, rc, " ".join(self.cmd), self.log_tail()), pytrace=False)
        raise AssertionError("unreachable")

    def run(self, args, timeout=20.0, prefix=()):
        """Run the binary to completion (for -t, -V, bad configs)."""
        cmd = list(prefix) + [self.binary] + list(args)
        p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True,
                           cwd=self.dir, timeout=timeout)
        out = p.stdout.decode("utf-8", "replace")
        err = p.stderr.decode("utf-8", "replace")
        self.history.append("--- %s (exit %s)\n[stderr]\n%s[stdout]\n%s"
                            % (" ".join(cmd), p.returncode, err, out))
        return p.returncode, out, err

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig):
        assert self.alive(), "gate is not running:\n" + self.log_tail()
        os.kill(self.proc.pid, sig)

    def wait_exit(self, timeout=LOG_TIMEOUT, fail=True):
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            if fail:
                pytest.fail("condgate still running after %.1fs\n--- log tail ---\n%s"
                            % (timeout, self.log_tail()), pytrace=False)
            return None
        self.join_readers(5.0)
        return rc

    def stop(self, sig=_signal.SIGTERM, timeout=15.0):
        """SIGTERM (or sig) and assert exit status 0."""
        self.signal(sig)
        rc = self.wait_exit(timeout)
        assert rc == 0, "condgate exited with %s after %s\n--- log tail ---\n%s" % (
            rc, _signal.Signals(sig).name, self.log_tail())
        return rc

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
        if self.proc is not None:
            self.join_readers(5.0)

    def join_readers(self, timeout=5.0):
        for t in self._readers:
            t.join(timeout)

    # -- log --------------------------------------------------------------

    def mark(self):
        with self._cond:
            return len(self.lines)

    def log_text(self):
        with self._cond:
            cur = "\n".join(self.lines)
            out = "\n".join(self.out_lines)
        parts = list(self.history)
        if self.proc is not None:
            parts.append("--- %s (running=%s, exit %s)\n%s%s" % (
                " ".join(self.cmd or []), self.alive(), self.proc.returncode, cur,
                ("\n[stdout]\n" + out) if out else ""))
        return "\n".join(parts)

    def log_tail(self, n=40):
        """The last n lines of the current run (failure messages; the whole
        log of every run is attached to the test report)."""
        with self._cond:
            tail = self.lines[-n:]
            skipped = len(self.lines) - len(tail)
        return ("[%d earlier lines]\n" % skipped if skipped else "") + "\n".join(tail)

    def grep(self, pattern, since=0):
        rx = re.compile(pattern)
        with self._cond:
            lines = list(self.lines[since:])
        return [Hit(since + i, l, m) for i, l in enumerate(lines) for m in [rx.search(l)] if m]

    def events(self, name, since=0):
        return self.grep(event_re(name), since)

    def wait_log(self, pattern, timeout=LOG_TIMEOUT, since=0, fail=True):
        """First stderr line at index >= since matching `pattern` (regex).
        Fails at once if the gate exits without writing it."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        i = since
        with self._cond:
            while True:
                while i < len(self.lines):
                    m = rx.search(self.lines[i])
                    if m:
                        return Hit(i, self.lines[i], m)
                    i += 1
                remaining = deadline - time.monotonic()
                if self._eof["err"] or remaining <= 0:
                    break
                self._cond.wait(min(remaining, 0.5))
        if not fail:
            return None
        why = "the gate exited" if self._eof["err"] else "timeout %.1fs" % timeout
        pytest.fail("no log line matching %r (%s)\n--- log tail ---\n%s"
                    % (pattern, why, self.log_tail()), pytrace=False)

    def wait_count(self, pattern, count, timeout=LOG_TIMEOUT, since=0):
        deadline = time.monotonic() + timeout
        while True:
            hits = self.grep(pattern, since)
            if len(hits) >= count:
                return hits
            if time.monotonic() > deadline or not self.alive():
                pytest.fail("wanted %d lines matching %r, got %d\n--- log tail ---\n%s"
                            % (count, pattern, len(hits), self.log_tail()), pytrace=False)
            with self._cond:
                self._cond.wait(0.2)

    # -- counters ---------------------------------------------------------

    def stats(self, timeout=LOG_TIMEOUT):
        """SIGUSR1, then the next event=stats line and one listener_stats
        line per listener, as ints: {'accepted': 3, ..., 'listeners':
        {'web': {...}}}."""
        m = self.mark()
        self.signal(_signal.SIGUSR1)
        hit = self.wait_log(event_re("stats"), timeout=timeout, since=m)
        result = _intify(hit.fields)
        per = {}
        for name in self.listeners:
            h = self.wait_log(event_re("listener_stats") + r".*\blistener=%s(?=\s|$)"
                              % re.escape(name), timeout=timeout, since=hit.index)
            per[name] = _intify(h.fields)
        result["listeners"] = per
        return result

    def wait_stats(self, pred, timeout=LOG_TIMEOUT, what="condition"):
        """Poll stats() until pred(stats) is true."""
        deadline = time.monotonic() + timeout
        while True:
            s = self.stats()
            if pred(s):
                return s
            if time.monotonic() > deadline:
                pytest.fail("counters never satisfied %s; last: %r\n--- log tail ---\n%s"
                            % (what, s, self.log_tail()), pytrace=False)
            with self._cond:
                self._cond.wait(0.1)

    def reload(self, expect="ok", timeout=LOG_TIMEOUT):
        """SIGHUP and return the fields of the next event=reload line,
        asserting result=expect (unless expect is None)."""
        m = self.mark()
        self.signal(_signal.SIGHUP)
        hit = self.wait_log(event_re("reload"), timeout=timeout, since=m)
        if expect is not None:
            assert hit.get("result") == expect, (
                "reload: wanted result=%s, got %r\n--- log tail ---\n%s"
                % (expect, hit.line, self.log_tail()))
        return hit

    # -- /proc ------------------------------------------------------------

    def cpu_seconds(self):
        with open("/proc/%d/stat" % self.pid) as f:
            rest = f.read().rsplit(")", 1)[1].split()
        # rest[0] is field 3 (state); utime is field 14, stime field 15.
        return (int(rest[11]) + int(rest[12])) / os.sysconf("SC_CLK_TCK")

    def fd_count(self):
        return len(os.listdir("/proc/%d/fd" % self.pid))

    def sanitizer_report(self):
        text = self.log_text()
        return [m for m in SANITIZER_MARKERS if m in text]


def _atomic_write(path, data):
    tmp = path + ".tmp%d" % os.getpid()
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


# ---------------------------------------------------------------------------
# Clients

def _family_of(addr):
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def make_socket(src="127.0.0.2", family=None, timeout=IO_TIMEOUT):
    family = family or _family_of(src or "127.0.0.1")
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(timeout)
    if src:
        s.bind((src, 0))
    return s


def connect(port, src="127.0.0.2", host=None, family=None, timeout=IO_TIMEOUT):
    """A client socket bound to source address `src`, connected to
    host:port (host defaults to 127.0.0.1, or ::1 for IPv6 sources)."""
    family = family or _family_of(host or src or "127.0.0.1")
    if host is None:
        host = "::1" if family == socket.AF_INET6 else "127.0.0.1"
    s = make_socket(src, family, timeout)
    try:
        s.connect((host, port))
    except BaseException:
        s.close()
        raise
    return s


def local_port(sock):
    return sock.getsockname()[1]


_RESET_ERRNOS = (errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED)


def expect_reset(sock, timeout=5.0, probe=None):
    """Assert the peer closes `sock` (reset, or EOF) without ever sending a
    byte, within `timeout`. Returns 'reset' or 'eof'. With `probe`, send it
    first (a relayed echo would answer it at once)."""
    deadline = time.monotonic() + timeout
    if probe:
        try:
            sock.sendall(probe)
        except OSError as e:
            if e.errno not in _RESET_ERRNOS:
                raise
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            pytest.fail("connection neither reset nor closed within %.1fs" % timeout,
                        pytrace=False)
        sock.settimeout(remaining)
        try:
            data = sock.recv(65536)
        except socket.timeout:
            continue
        except OSError as e:
            if e.errno in _RESET_ERRNOS:
                return "reset"
            raise
        if data:
            pytest.fail("a caller that should have been rejected received %d bytes: %r"
                        % (len(data), data[:64]), pytrace=False)
        return "eof"


def expect_rejected(port, src, host=None, timeout=5.0, probe=b"ping\n"):
    """Connect from src and assert a reject (refused at connect, or reset /
    closed without data). Returns the client's local port."""
    s = make_socket(src, _family_of(host or src), timeout)
    lport = local_port(s)
    if host is None:
        host = "::1" if s.family == socket.AF_INET6 else "127.0.0.1"
    try:
        try:
            s.connect((host, port))
        except OSError as e:
            if e.errno in _RESET_ERRNOS + (errno.ECONNREFUSED,):
                return lport
            raise
        expect_reset(s, timeout, probe)
        return lport
    finally:
        s.close()


def recv_exact(sock, n, timeout=IO_TIMEOUT):
    deadline = time.monotonic() + timeout
    buf = bytearray()
    while len(buf) < n:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError("timed out after %d of %d bytes" % (len(buf), n))
        sock.settimeout(remaining)
        chunk = sock.recv(min(1 << 20, n - len(buf)))
        if not chunk:
            raise AssertionError("EOF after %d of %d bytes" % (len(buf), n))
        buf += chunk
    return bytes(buf)


def recv_until_eof(sock, timeout=IO_TIMEOUT):
    deadline = time.monotonic() + timeout
    buf = bytearray()
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError("no EOF within %.1fs (got %d bytes)" % (timeout, len(buf)))
        sock.settimeout(remaining)
        chunk = sock.recv(1 << 20)
        if not chunk:
            return bytes(buf)
        buf += chunk


def echo_check(sock, payload=b"hello condgate\n", timeout=IO_TIMEOUT):
    """Send payload, expect the very same bytes back."""
    sock.sendall(payload)
    got = recv_exact(sock, len(payload), timeout)
    assert got == payload, "echo mismatch: sent %r got %r" % (payload, got)


def is_served(port, src="127.0.0.2", host=None, timeout=3.0):
    """True when a new connection from src is relayed (echo answers), False
    when it is refused, reset, closed without data or not answered within
    `timeout` (still queued, say)."""
    try:
        s = connect(port, src, host, timeout=timeout)
    except socket.timeout:
        return False
    except OSError as e:
        if e.errno in _RESET_ERRNOS + (errno.ECONNREFUSED,):
            return False
        raise
    try:
        try:
            s.sendall(b"probe\n")
            data = s.recv(64)
        except socket.timeout:
            return False
        except OSError as e:
            if e.errno in _RESET_ERRNOS:
                return False
            raise
        return bool(data)
    finally:
        s.close()


class Transfer:
    """Send `data` on sock from a thread (then optionally SHUT_WR) while the
    caller receives: big transfers never deadlock on full buffers."""

    def __init__(self, sock, data, shut_wr=True, chunk=1 << 16, pace=0.0):
        self.sock = sock
        self.data = data
        self.shut_wr = shut_wr
        self.chunk = chunk
        self.pace = pace
        self.sent = 0
        self.error = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            view = memoryview(self.data)
            while self.sent < len(view):
                n = self.sock.send(view[self.sent:self.sent + self.chunk])
                self.sent += n
                if self.pace:
                    time.sleep(self.pace)
            if self.shut_wr:
                self.sock.shutdown(socket.SHUT_WR)
        except Exception as e:  # reported by join()
            self.error = e

    def join(self, timeout=IO_TIMEOUT * 3):
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "sender still running after %.0fs (%d sent)" % (
            timeout, self.sent)
        if self.error:
            raise AssertionError("sender failed after %d bytes: %r" % (self.sent, self.error))


def sha256(b):
    return hashlib.sha256(b).hexdigest()


def recv_hash_until_eof(sock, timeout=IO_TIMEOUT * 3, progress=None):
    """Receive until EOF; return (count, sha256). progress(n) is called
    after each chunk with the running total."""
    h = hashlib.sha256()
    n = 0
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError("no EOF within %.1fs (got %d bytes)" % (timeout, n))
        sock.settimeout(remaining)
        chunk = sock.recv(1 << 20)
        if not chunk:
            return n, h.hexdigest()
        h.update(chunk)
        n += len(chunk)
        if progress:
            progress(n)


# ---------------------------------------------------------------------------
# Backends

class Server:
    """A TCP server in threads: handler(conn, server) runs per connection in
    its own thread; its return value lands in server.results."""

    def __init__(self, handler, host="127.0.0.1", backlog=128):
        self.handler = handler
        self.sock = socket.socket(_family_of(host), socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.sock.listen(backlog)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.addr = "%s:%d" % (host if ":" not in host else "[%s]" % host, self.port)
        self.accepted = 0
        self.peers = []
        self.results = []
        self.errors = []
        self.conns = []
        self._stop = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()

    def _accept_loop(self):
        while not self._stop:
            try:
                conn, peer = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                break
            conn.settimeout(IO_TIMEOUT * 3)
            with self._cond:
                self.accepted += 1
                self.peers.append(peer)
                self.conns.append(conn)
                self._cond.notify_all()
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        try:
            r = self.handler(conn, self)
            with self._cond:
                self.results.append(r)
                self._cond.notify_all()
        except Exception as e:
            with self._cond:
                self.errors.append(e)
                self.results.append(e)
                self._cond.notify_all()
        finally:
            try:
                conn.close()
            except OSError:
                pass

    def wait_accepted(self, n, timeout=LOG_TIMEOUT):
        with self._cond:
            ok = self._cond.wait_for(lambda: self.accepted >= n, timeout)
        assert ok, "backend accepted %d connections, wanted %d" % (self.accepted, n)

    def wait_results(self, n, timeout=LOG_TIMEOUT * 3):
        with self._cond:
            ok = self._cond.wait_for(lambda: len(self.results) >= n, timeout)
            res = list(self.results)
        assert ok, "backend finished %d connections, wanted %d" % (len(res), n)
        return res

    def close(self):
        self._stop = True
        self._thread.join(2.0)
        self.sock.close()
        with self._cond:
            conns = list(self.conns)
        for c in conns:
            try:
                c.close()
            except OSError:
                pass


def echo_handler(conn, server):
    total = 0
    while True:
        data = conn.recv(1 << 16)
        if not data:
            break
        conn.sendall(data)
        total += len(data)
    conn.shutdown(socket.SHUT_WR)
    return total


def hash_handler(reply=b""):
    """Receive until EOF (hashing) while sending `reply` concurrently, then
    SHUT_WR. Result: {'received': n, 'sha': hex}."""

    def handler(conn, server):
        t = Transfer(conn, reply, shut_wr=True) if reply else None
        n, digest = recv_hash_until_eof(conn, timeout=60)
        if t is not None:
            t.join(60)
        else:
            conn.shutdown(socket.SHUT_WR)
        return {"received": n, "sha": digest}

    return handler


def reply_after_eof_handler(conn, server):
    """Read everything until EOF, then answer 'got N bytes: <data>' and
    close."""
    data = recv_until_eof(conn, timeout=30)
    conn.sendall(b"got %d bytes: " % len(data) + data)
    conn.shutdown(socket.SHUT_WR)
    return data


def banner_then_read_handler(banner):
    """Send banner, half-close (SHUT_WR), then read until EOF."""

    def handler(conn, server):
        conn.sendall(banner)
        conn.shutdown(socket.SHUT_WR)
        return recv_until_eof(conn, timeout=30)

    return handler


def silent_handler(conn, server):
    """Accept and never answer; result: ('eof'|'reset', seconds open, data)."""
    t0 = time.monotonic()
    data = bytearray()
    try:
        while True:
            chunk = conn.recv(65536)
            if not chunk:
                return ("eof", time.monotonic() - t0, bytes(data))
            data += chunk
    except OSError as e:
        if e.errno in _RESET_ERRNOS:
            return ("reset", time.monotonic() - t0, bytes(data))
        raise


class ClosedPort:
    """A port bound by us but not listening: connects are refused and
    nobody else can take it meanwhile."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.addr = "127.0.0.1:%d" % self.port

    def close(self):
        self.sock.close()


class Blackhole:
    """A loopback port whose handshakes never complete: listen(0) and fill
    the accept queue with connections nobody accepts; further SYNs are
    dropped by the kernel, so a connect() just hangs."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(0)
        self.port = self.sock.getsockname()[1]
        self.addr = "127.0.0.1:%d" % self.port
        self.fillers = []
        for _ in range(16):
            c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            c.setblocking(False)
            c.connect_ex(("127.0.0.1", self.port))
            self.fillers.append(c)
            _, w, _ = select.select([], [c], [], 0.5)
            if not w:
                break  # this SYN was dropped: the queue is full
        else:
            raise RuntimeError("could not fill the accept queue of a listen(0) socket")

    def close(self):
        for c in self.fillers:
            c.close()
        self.sock.close()


# ---------------------------------------------------------------------------
# Load generator (tests/bench/cgload) and /proc probes
#
# cgload is the epoll load generator of the benchmarks (tests/bench/README.md).
# The exhaustion and reload-under-load tests drive thousands of callers with
# it; find_cgload() locates it ($CGLOAD_BIN, which ctest sets, else
# tests/cgload in the build tree of the condgate binary).


def find_cgload(condgate_bin):
    """Path of the cgload binary, or None. $CGLOAD_BIN wins; otherwise
    tests/cgload beside the build tree's condgate (build/X/condgate ->
    build/X/tests/cgload)."""
    env = os.environ.get("CGLOAD_BIN")
    if env:
        return os.path.abspath(env)
    cand = os.path.join(os.path.dirname(os.path.abspath(condgate_bin)), "tests", "cgload")
    return cand if os.path.isfile(cand) else None


class CgLoad:
    """One cgload process: CgLoad(binary, "hold", "127.0.0.1:PORT", "-n", 100).
    stdout/stderr are collected by reader threads; --json is always passed,
    so result() parses the JSON summary line (the last line starting with
    '{'). Kill what is left with kill() (the cgload fixture does)."""

    def __init__(self, binary, mode, target, *args):
        self.cmd = [binary, mode] + [str(a) for a in args] + ["--json", target]
        self.out = []
        self.err = []
        self._cond = threading.Condition()
        self._eof = 0
        self.t_start = time.monotonic()
        self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.t_end = None
        self._threads = [threading.Thread(target=self._reader, args=(s, sink), daemon=True)
                         for s, sink in ((self.proc.stdout, self.out),
                                         (self.proc.stderr, self.err))]
        for t in self._threads:
            t.start()

    def _reader(self, stream, sink):
        try:
            for raw in iter(stream.readline, b""):
                with self._cond:
                    sink.append(raw.decode("utf-8", "replace").rstrip("\n"))
                    self._cond.notify_all()
        finally:
            with self._cond:
                self._eof += 1
                self._cond.notify_all()

    @property
    def pid(self):
        return self.proc.pid

    def describe(self):
        with self._cond:
            return "%s (exit %s)\n[stdout]\n%s\n[stderr]\n%s" % (
                " ".join(self.cmd), self.proc.poll(), "\n".join(self.out[-5:]),
                "\n".join(self.err[-10:]))

    def wait_line(self, pattern, timeout):
        """First stdout line matching pattern (a regex match object)."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        i = 0
        with self._cond:
            while True:
                while i < len(self.out):
                    m = rx.search(self.out[i])
                    if m:
                        return m
                    i += 1
                remaining = deadline - time.monotonic()
                if self._eof >= 2 or remaining <= 0:
                    break
                self._cond.wait(min(remaining, 0.5))
        pytest.fail("cgload printed no line matching %r within %.0fs: %s"
                    % (pattern, timeout, self.describe()), pytrace=False)

    def wait_held(self, timeout):
        """hold mode: the N of its 'held N' line (every connection settled)."""
        return int(self.wait_line(r"^held (\d+)$", timeout).group(1))

    def result(self, timeout):
        """Wait for the exit and return the parsed JSON summary."""
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail("cgload still running after %.0fs: %s" % (timeout, self.describe()),
                        pytrace=False)
        if self.t_end is None:
            self.t_end = time.monotonic()
        for t in self._threads:
            t.join(5)
        with self._cond:
            lines = [l for l in self.out if l.startswith("{")]
        if not lines:
            pytest.fail("cgload printed no JSON summary: %s" % self.describe(), pytrace=False)
        return _json.loads(lines[-1])

    def stop(self, timeout=60.0, sig=_signal.SIGTERM):
        """Signal it (hold mode lets its connections go) and return result()."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.result(timeout)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def run_cgload(binary, mode, target, *args, timeout=120.0):
    """Run cgload to completion; returns its JSON summary with the wall
    clock of the run added as "_t_start"/"_t_end" (time.monotonic())."""
    c = CgLoad(binary, mode, target, *args)
    res = c.result(timeout)
    res["_t_start"], res["_t_end"] = c.t_start, c.t_end
    return res


def wait_for(pred, timeout, what, interval=0.05):
    """Poll pred() until it returns a true value (returned) or fail after
    `timeout` s saying `what`. A readiness check, not a sleep: the interval
    only paces the polling."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            pytest.fail("timed out after %.0fs waiting for %s" % (timeout, what), pytrace=False)
        time.sleep(interval)


def rss_bytes(pid):
    """Resident set size of a process (VmRSS), in bytes."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS for pid %d" % pid)


def cpu_used(gate, seconds=1.0):
    """CPU time (user + system, all threads) the gate uses over the next
    `seconds` of wall clock, and the interval actually measured."""
    c0, t0 = gate.cpu_seconds(), time.monotonic()
    time.sleep(seconds)  # the measurement window itself
    return gate.cpu_seconds() - c0, time.monotonic() - t0


def listen_queue(port):
    """Callers waiting in the accept queue of the IPv4 listening socket on
    `port` (rx_queue of its LISTEN line in /proc/net/tcp), or None."""
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            parts = line.split()
            local, state, queues = parts[1], parts[3], parts[4]
            if state == "0A" and int(local.split(":")[1], 16) == port:
                return int(queues.split(":")[1], 16)
    return None


def half_open(port):
    """Handshakes in progress towards IPv4 port `port` (SYN_RECV request
    sockets in /proc/net/tcp): callers that may still reach the accept
    queue, e.g. once it has room again."""
    n = 0
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            parts = line.split()
            if parts[3] == "03" and int(parts[1].split(":")[1], 16) == port:
                n += 1
    return n


def sanitizer_of(binary):
    """'address', 'thread' or None: which sanitizer a binary was built with
    (the runtime's init symbol is referenced by every instrumented
    executable)."""
    with open(binary, "rb") as f:
        data = f.read()
    if b"__asan_init" in data:
        return "address"
    if b"__tsan_init" in data:
        return "thread"
    return None


def admin_conn_inodes(port):
    """Socket inodes of TCP connections (not the listener) on local port
    `port`: the admin port's own short-lived request connections."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    if parts[3] != "0A" and int(parts[1].rsplit(":", 1)[1], 16) == port:
                        inodes.add(parts[9])
        except FileNotFoundError:
            pass
    return inodes


def gate_fds(gate):
    """Descriptors the gate has open, not counting connections to its admin
    port: libmicrohttpd closes a request's socket on its own thread a moment
    after the answer, so a /stats poll would otherwise show up as +1."""
    if gate.admin_port is None:
        return gate.fd_count()
    skip = {"socket:[%s]" % i for i in admin_conn_inodes(gate.admin_port)}
    d = "/proc/%d/fd" % gate.pid
    n = 0
    for name in os.listdir(d):
        try:
            if os.readlink(os.path.join(d, name)) in skip:
                continue
        except FileNotFoundError:
            continue
        n += 1
    return n


def settled_fds(gate, quiet=0.2, timeout=5.0):
    """gate_fds once it has not changed for `quiet` seconds: a relayed
    connection is counted closed (active drops) before libuv's close
    callback has closed its sockets, so a count taken right after
    /stats says active=0 can still include them."""
    deadline = time.monotonic() + timeout
    last, since = gate_fds(gate), time.monotonic()
    while time.monotonic() - since < quiet and time.monotonic() < deadline:
        time.sleep(0.02)
        n = gate_fds(gate)
        if n != last:
            last, since = n, time.monotonic()
    return last


def wait_fds(gate, want, timeout=30.0, what="descriptors"):
    """Poll until the gate has exactly `want` descriptors open."""
    last = [None]

    def ok():
        last[0] = gate_fds(gate)
        return last[0] == want
    deadline = time.monotonic() + timeout
    while not ok():
        if time.monotonic() > deadline:
            pytest.fail("%s: the gate has %d descriptors open, wanted %d" % (what, last[0], want),
                        pytrace=False)
        time.sleep(0.05)
