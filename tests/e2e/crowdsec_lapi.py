"""The real CrowdSec Local API (LAPI) as a test peer (issue 15, SPEC §15).

Runs Debian's crowdsec (1.4.x) as "Local API only" (`crowdsec -c COPY -no-cs`)
on a free port of 127.0.0.1, with its own config, database and credentials
in a temporary directory: the system's crowdsec state (/etc/crowdsec,
/var/lib/crowdsec/data) is only read, never written. Decisions are added and
deleted with the same version's `cscli -c COPY`.

    lapi = Lapi(workdir)        # writes WORKDIR/config.yaml, nothing runs yet
    lapi.start()                # spawns crowdsec, waits until GET /health is 200
    key = lapi.add_bouncer("cg")            # the bouncer's X-Api-Key
    lapi.add_decision(ip="127.0.0.9", duration="5m")
    lapi.add_decision(range="127.0.1.0/24")
    lapi.delete_decision(ip="127.0.0.9")    # -> how many were deleted
    status, answer = lapi.stream(key, startup=True)
    seconds = lapi.bulk_decisions(100000)   # bulk_ips(100000) are then banned
    lapi.raw_decisions([{"value": "127.0.0.0/24", "scope": "Ip"}])  # as an agent
    lapi.stop(); lapi.restart()             # same port, same database

Fixtures: `lapi` (one per test module, started; do not stop it) and
`make_lapi` (a factory: make_lapi(name="lapi", start=True) -> Lapi, one per
test, stopped after it; for tests that stop or restart the API). Import them
into a test module:  from crowdsec_lapi import lapi, make_lapi  # noqa: F401

Without crowdsec/cscli installed the tests using these fixtures are skipped
(as tests/e2e/test_proxy.py does without HAProxy), unless
CG_REQUIRE_PEERS=1 is in the environment (CI sets it): then they fail.

Things this crowdsec version does that a bouncer must live with (seen with
1.4.6, checked by test_crowdsec_lapi.py):
- every answer is {"deleted": [...] | null, "new": [...] | null}, both keys
  always present, null rather than [] when empty;
- `startup=true` returns every decision in force each time it is asked, for
  the same key too (it is not a one-shot);
- a delta (no `startup`) returns what changed since the key's previous pull;
  the LAPI keeps that per bouncer in its database, so it survives a restart
  of the LAPI; it moves when the LAPI answers, so a delta the bouncer lost
  (timeout, cut connection, an answer it could not apply) is never sent
  again: after any failed poll, ask startup=true;
- a deleted or expired decision comes back in `deleted` with its id, value and
  a negative duration ("-24.03ms"), and may come back in several deltas in a
  row (seen for about 3 s): applying `deleted` must be idempotent;
- a startup answer may hold `deleted` too: decisions expired (not yet
  flushed from the database), with their negative durations;
- a key that never asked startup=true gets empty deltas, not the set;
- one decision per value: of two on one address the stream holds the
  longest; `deleted` never names a value that has a decision in force;
- values are passed on as stored: a Range may have host bits set
  ("127.0.1.5/24": `cscli decisions add --range` takes it, and crowdsec
  means the network, as Go's ParseCIDR does: a client should mask it, not
  refuse it), IPv6 may be uppercase, "::ffff:127.0.0.8" is an Ip, and
  an agent (POST /v1/alerts, see raw_decisions) may put a CIDR in scope Ip
  ("1.2.3.4/0" is accepted!); cscli refuses those, the LAPI does not;
- durations are Go's: "4m58.739181693s", "167h59m59.16s" (no days),
  "-24.03ms", and "µs" (UTF-8) for sub-millisecond ones;
- only scopes Ip and Range are streamed unless the bouncer asks for others
  (`?scopes=ip,range,country`); other types (captcha, ...) are streamed;
- a wrong key: 403 {"message":"access forbidden"}.

Standard library only (no PyYAML): the config is written from a template,
taking the read-only paths (profiles, simulation, hub, plugins) from
/etc/crowdsec/config.yaml.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from cgtest import free_port

CROWDSEC = shutil.which("crowdsec") or "/usr/bin/crowdsec"
CSCLI = shutil.which("cscli") or "/usr/bin/cscli"
SYSTEM_CONFIG = "/etc/crowdsec/config.yaml"
START_TIMEOUT = 60.0    # a loaded 2-core machine; a start takes ~0.2 s idle
CSCLI_TIMEOUT = 120.0   # one cscli call, bulk imports excepted
MACHINE = "condgate-tests"

# Keys whose values are taken from the system config (read-only paths the
# LAPI reads), with the Debian defaults when the system config lacks them.
_SYSTEM_PATHS = {
    "simulation_path": "/etc/crowdsec/simulation.yaml",
    "hub_dir": "/var/lib/crowdsec/hub/",
    "index_path": "/var/lib/crowdsec/hub/.index.json",
    "notification_dir": "/etc/crowdsec/notifications/",
    "plugin_dir": "/usr/lib/crowdsec/plugins/",
    "profiles_path": "/etc/crowdsec/profiles.yaml",
}

_TEMPLATE = """\
# Private copy of {system} for condgate's tests (tests/e2e/crowdsec_lapi.py).
# Changed: no daemon, log to stdout; config, data, database, credentials and
# console in {dir}; no online_client (no Central API); listen_uri on a free
# port; prometheus off (its port 6060 is the system's); no flush (a bulk
# load of 100,000 decisions must stay).
common:
  daemonize: false
  log_media: stdout
  log_level: info
  log_dir: {dir}/
  working_dir: .
config_paths:
  config_dir: {dir}/
  data_dir: {dir}/data/
  simulation_path: {simulation_path}
  hub_dir: {hub_dir}
  index_path: {index_path}
  notification_dir: {notification_dir}
  plugin_dir: {plugin_dir}
crowdsec_service:
  acquisition_path: {dir}/acquis.yaml
  parser_routines: 1
cscli:
  output: human
  color: "no"
db_config:
  log_level: info
  type: sqlite
  db_path: {dir}/data/crowdsec.db
  use_wal: true
plugin_config:
  user: nobody
  group: nogroup
api:
  client:
    insecure_skip_verify: false
    credentials_path: {dir}/local_api_credentials.yaml
  server:
    log_level: info
    listen_uri: 127.0.0.1:{port}
    profiles_path: {profiles_path}
    console_path: {dir}/console.yaml
    trusted_ips:
      - 127.0.0.1
      - ::1
prometheus:
  enabled: false
  level: full
  listen_addr: 127.0.0.1
  listen_port: 6060
"""


def installed():
    """(True, "") when crowdsec and cscli can run here, else (False, why)."""
    for path in (CROWDSEC, CSCLI):
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            return False, "%s is not installed (Debian package crowdsec)" % path
    if not os.path.isfile(_SYSTEM_PATHS["profiles_path"]):
        return False, "%s is missing" % _SYSTEM_PATHS["profiles_path"]
    return True, ""


def require_installed():
    """Skip the calling test without crowdsec, or fail if CG_REQUIRE_PEERS=1."""
    ok, why = installed()
    if ok:
        return
    if os.environ.get("CG_REQUIRE_PEERS") == "1":
        pytest.fail("CG_REQUIRE_PEERS=1 but " + why, pytrace=False)
    pytest.skip(why)


def system_paths(config=SYSTEM_CONFIG):
    """The read-only paths of the system config (see _SYSTEM_PATHS)."""
    found = dict(_SYSTEM_PATHS)
    try:
        with open(config, encoding="utf-8") as f:
            text = f.read()
    except OSError:
        return found
    for key in found:
        m = re.search(r"^\s+%s:\s*(\S+)\s*(#.*)?$" % key, text, re.M)
        if m:
            found[key] = m.group(1)
    return found


def bulk_ips(n, first=(10 << 24)):
    """The n distinct IPv4 addresses bulk_decisions(n) bans, in order:
    10.0.0.0, 10.0.0.1, ... (first: the first address as an int)."""
    assert 0 < n and first + n <= 1 << 32
    out = []
    for a in range(first, first + n):
        out.append("%d.%d.%d.%d" % (a >> 24, (a >> 16) & 255, (a >> 8) & 255, a & 255))
    return out


class Lapi:
    """One private crowdsec Local API. Not thread-safe: one test drives it."""

    def __init__(self, workdir, port=None):
        self.dir = os.path.abspath(str(workdir))
        os.makedirs(os.path.join(self.dir, "data"), exist_ok=True)
        self.config = os.path.join(self.dir, "config.yaml")
        self.log_path = os.path.join(self.dir, "lapi.log")
        self.db_path = os.path.join(self.dir, "data", "crowdsec.db")
        self.fixed_port = port is not None
        self.port = port if port is not None else free_port()
        self.proc = None
        self.machine_ready = False
        self.last_bulk_seconds = None
        self._token, self._token_until = None, 0.0
        self._write_config()

    @property
    def url(self):
        """Base URL, e.g. http://127.0.0.1:PORT (no trailing slash)."""
        return "http://127.0.0.1:%d" % self.port

    def _write_config(self):
        paths = system_paths()
        with open(self.config, "w", encoding="utf-8") as f:
            f.write(_TEMPLATE.format(system=SYSTEM_CONFIG, dir=self.dir, port=self.port, **paths))
        # -no-cs reads no acquisition, but the path must name a file.
        open(os.path.join(self.dir, "acquis.yaml"), "a").close()

    # --- process ----------------------------------------------------------

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout=START_TIMEOUT):
        """Spawn crowdsec -no-cs and wait until GET /health answers 200.
        A first start that loses its port to someone else retries on a new
        one; a restart (same database) keeps its port or fails."""
        assert not self.running(), "the LAPI is already running"
        for attempt in range(5):
            self._spawn()
            why = self._wait_ready(timeout)
            if why is None:
                return self
            self._reap()
            lost_port = "address already in use" in self.log_text().lower()
            if not lost_port or self.fixed_port or self.machine_ready or attempt == 4:
                raise AssertionError("crowdsec LAPI did not start (%s):\n%s"
                                     % (why, self.log_tail()))
            self.port = free_port()
            self._write_config()
        raise AssertionError("unreachable")

    def _spawn(self):
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen([CROWDSEC, "-c", self.config, "-no-cs"],
                                         stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, cwd=self.dir,
                                         start_new_session=True)
        finally:
            log.close()

    def _wait_ready(self, timeout):
        """None once /health answers 200; else why not (exit, timeout)."""
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                return "exited with status %d" % self.proc.returncode
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as r:
                    if r.status == 200:
                        return None
            except (OSError, urllib.error.URLError):
                pass
            if time.monotonic() > deadline:
                return "no 200 from /health within %.0f s" % timeout
            time.sleep(0.02)

    def stop(self, timeout=30.0):
        """SIGTERM, wait for the exit (SIGKILL after timeout). Idempotent."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def _reap(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait(10)
        self.proc = None

    def restart(self, timeout=START_TIMEOUT):
        """stop() then start() on the same port with the same database."""
        self.stop()
        self.fixed_port = True
        return self.start(timeout)

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def log_tail(self, lines=40):
        return "\n".join(self.log_text().splitlines()[-lines:])

    # --- cscli ------------------------------------------------------------

    def cscli(self, *args, timeout=CSCLI_TIMEOUT):
        """Run `cscli -c COPY ARGS...`; returns (stdout, stderr); raises
        AssertionError with both (and the LAPI's log tail) on failure."""
        argv = [CSCLI, "-c", self.config, "--color", "no"] + [str(a) for a in args]
        p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                           timeout=timeout, cwd=self.dir)
        out = p.stdout.decode("utf-8", "replace")
        err = p.stderr.decode("utf-8", "replace")
        if p.returncode != 0:
            raise AssertionError("%s failed (%d):\n%s%s\nLAPI log:\n%s"
                                 % (" ".join(argv), p.returncode, out, err, self.log_tail()))
        return out, err

    def add_bouncer(self, name):
        """Register a bouncer; returns its API key (the X-Api-Key value)."""
        out, _ = self.cscli("bouncers", "add", name, "-o", "raw")
        key = out.strip()
        assert re.fullmatch(r"[0-9A-Za-z]{16,}", key), "unexpected key %r" % out
        return key

    def delete_bouncer(self, name):
        self.cscli("bouncers", "delete", name)

    def _machine(self):
        """The machine cscli's decision commands log in as: written once into
        this LAPI's database and credentials file (the LAPI need not run)."""
        if not self.machine_ready:
            self.cscli("machines", "add", MACHINE, "--auto", "--force", "-f",
                       os.path.join(self.dir, "local_api_credentials.yaml"))
            self.machine_ready = True

    def add_decision(self, ip=None, range=None, duration="5m", type="ban", scope=None,
                     value=None, reason="condgate-test"):
        """`cscli decisions add`: one of ip, range, or scope + value (e.g.
        scope="Country", value="FR"). Returns nothing; decisions() lists."""
        self._machine()
        args = ["decisions", "add", "--duration", duration, "--type", type]
        if ip is not None:
            args += ["--ip", ip]
        elif range is not None:
            args += ["--range", range]
        else:
            assert scope and value is not None, "name ip, range or scope+value"
            args += ["--scope", scope, "--value", value]
        if reason is not None:
            args += ["--reason", reason]
        _, err = self.cscli(*args)
        assert "successfully added" in err, err

    def delete_decision(self, ip=None, range=None, id=None):
        """`cscli decisions delete` by ip, range or id; returns the number of
        decisions the LAPI says it deleted."""
        self._machine()
        args = ["decisions", "delete"]
        if ip is not None:
            args += ["--ip", ip]
        elif range is not None:
            args += ["--range", range]
        else:
            assert id is not None, "name ip, range or id"
            args += ["--id", str(id)]
        _, err = self.cscli(*args)
        m = re.search(r"(\d+) decision\(s\) deleted", err)
        assert m, "no count in cscli's answer:\n" + err
        return int(m.group(1))

    def decisions(self):
        """The decisions in force, flattened from `cscli decisions list -o
        json` (each a dict with id, value, scope, type, duration, ...)."""
        self._machine()
        out, _ = self.cscli("decisions", "list", "-o", "json", "--limit", "0")
        alerts = json.loads(out) if out.strip() and out.strip() != "null" else []
        return [d for a in alerts or [] for d in a.get("decisions") or []]

    def bulk_decisions(self, n, duration="4h", reason="condgate-bulk", first=(10 << 24)):
        """Ban the n addresses bulk_ips(n, first) with one `cscli decisions
        import` of a generated CSV; returns the seconds it took (also in
        last_bulk_seconds). 100,000 take ~6 s on the project's VM."""
        self._machine()
        path = os.path.join(self.dir, "bulk-%d.csv" % n)
        with open(path, "w", encoding="ascii") as f:
            f.write("duration,scope,value,type,reason\n")
            for ip in bulk_ips(n, first):
                f.write("%s,ip,%s,ban,%s\n" % (duration, ip, reason))
        t0 = time.monotonic()
        _, err = self.cscli("decisions", "import", "-i", path, timeout=max(600, n / 100))
        self.last_bulk_seconds = time.monotonic() - t0
        assert "%d decisions successfully imported" % n in err, err
        return self.last_bulk_seconds

    def _machine_token(self):
        """A JWT of this LAPI's machine (POST /v1/watchers/login), cached for
        its life (an hour)."""
        self._machine()
        if self._token and time.monotonic() < self._token_until:
            return self._token
        with open(os.path.join(self.dir, "local_api_credentials.yaml"), encoding="utf-8") as f:
            cred = f.read()
        login = re.search(r"^login:\s*(\S+)", cred, re.M).group(1)
        password = re.search(r"^password:\s*(\S+)", cred, re.M).group(1)
        status, body = self._post("/v1/watchers/login", {"machine_id": login,
                                                         "password": password,
                                                         "scenarios": []})
        assert status == 200, "machine login: %d %r" % (status, body)
        self._token = json.loads(body)["token"]
        self._token_until = time.monotonic() + 1800
        return self._token

    def _post(self, path, doc, token=None, timeout=600.0):
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = "Bearer " + token
        req = urllib.request.Request(self.url + path, data=json.dumps(doc).encode("utf-8"),
                                     headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def raw_decisions(self, decisions, expect=201):
        """POST /v1/alerts as a machine (an agent would): one alert holding
        `decisions`, each a dict {"value", "scope", "type", "duration",
        "scenario", "origin"} (defaults: Ip, ban, 5m, "condgate-raw",
        crowdsec). Unlike cscli this takes what cscli refuses and the LAPI
        still stores: lowercase scopes, a CIDR in scope Ip, negative
        durations (expired), any scenario text. Returns (status, body bytes);
        asserts status == expect unless expect is None."""
        full = []
        for d in decisions:
            one = {"duration": "5m", "origin": "crowdsec", "scenario": "condgate-raw",
                   "scope": "Ip", "type": "ban"}
            one.update(d)
            full.append(one)
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        alert = {"scenario": "condgate-raw", "scenario_hash": "", "scenario_version": "",
                 "message": "condgate tests", "events_count": 1, "events": [],
                 "start_at": now, "stop_at": now, "capacity": 0, "leakspeed": "0",
                 "simulated": False, "source": {"scope": "Ip", "value": "127.0.0.1"},
                 "decisions": full}
        status, body = self._post("/v1/alerts", [alert], token=self._machine_token())
        if expect is not None:
            assert status == expect, "POST /v1/alerts: %d %r" % (status, body[:300])
        return status, body

    # --- the bouncer's side -----------------------------------------------

    def stream(self, key, startup=False, scopes=None, timeout=60.0):
        """GET /v1/decisions/stream[?startup=true] with X-Api-Key: key, as a
        bouncer does (scopes: e.g. "ip,range,country"; the LAPI's default
        is ip,range). Returns (status, parsed JSON body or None)."""
        query = []
        if startup:
            query.append("startup=true")
        if scopes is not None:
            query.append("scopes=" + urllib.parse.quote(scopes, safe=","))
        url = self.url + "/v1/decisions/stream" + ("?" + "&".join(query) if query else "")
        req = urllib.request.Request(url, headers={"X-Api-Key": key,
                                                   "User-Agent": "condgate-tests"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                status, body = r.status, r.read()
        except urllib.error.HTTPError as e:
            status, body = e.code, e.read()
        try:
            return status, json.loads(body) if body else None
        except ValueError:
            return status, None


def _new_lapi(workdir):
    require_installed()
    return Lapi(workdir)


@pytest.fixture(scope="module")
def lapi(tmp_path_factory):
    """A started LAPI shared by the tests of one module: do not stop it;
    use your own bouncer names and addresses."""
    api = _new_lapi(tmp_path_factory.mktemp("lapi"))
    try:
        api.start()
        yield api
    finally:
        api.stop()


@pytest.fixture
def make_lapi(tmp_path):
    """Factory: make_lapi(name="lapi", start=True) -> Lapi of this test only
    (it may stop and restart it); all stopped after the test."""
    made = []

    def factory(name="lapi", start=True):
        d = tmp_path / name
        d.mkdir()
        api = _new_lapi(d)
        made.append(api)
        if start:
            api.start()
        return api

    yield factory
    for api in made:
        api.stop()
