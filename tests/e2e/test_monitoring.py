"""Watching condgate: the example Grafana dashboard and Prometheus alerting
rules in examples/monitoring/, and the metrics they need.

- The rules pass `promtool check rules`, and `promtool test rules` proves
  each alert firing on the series that should fire it and quiet otherwise
  (every alert has both kinds of case).
- The dashboard is valid JSON Grafana can import: a datasource variable, a
  listener variable from label_values, every panel with a datasource and
  queries, unique ids, no two panels on the same cells.
- Every metric name in the dashboard's and the rules' expressions is in a
  real gate's /metrics (one with a [crowdsec] section, so that the CrowdSec
  families are there), every label they match, group by, print or template
  is one that metric has, and every fixed label value (reason="limit") is
  one it takes.
- The metrics added for them count what they say: failed reloads, callers
  shed for want of descriptors, descriptors open and their limit, the
  effective max_connections.
"""

import json
import os
import re
import resource
import shutil
import socket
import subprocess

import pytest

from cgtest import connect, echo_check, event_re, expect_rejected, wait_for
from test_admin import fetch_metrics, parse_metrics
from test_limits import ECHO_GATE, RLIMIT_WRAPPER

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLES = os.path.join(HERE, "..", "..", "examples", "monitoring")
RULES = os.path.join(EXAMPLES, "condgate-alerts.yml")
RULES_TEST = os.path.join(EXAMPLES, "condgate-alerts.test.yml")
DASHBOARD = os.path.join(EXAMPLES, "condgate-grafana.json")

# Labels Prometheus gives every series of a scrape target.
TARGET_LABELS = {"job", "instance"}
# Series Prometheus makes itself for each target.
SYNTHETIC = {"up": TARGET_LABELS}


def promtool():
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool not found: install the Debian package 'prometheus' "
                    "(CI installs it)", pytrace=False)
    return path


def run_promtool(*args):
    p = subprocess.run([promtool()] + list(args), capture_output=True, timeout=60, cwd=EXAMPLES)
    return p.returncode, (p.stdout + p.stderr).decode("utf-8", "replace")


def load_yaml(path):
    try:
        import yaml
    except ImportError:
        pytest.fail("PyYAML not found: install the Debian package 'python3-yaml' (CI installs "
                    "it) to read the alerting rules", pytrace=False)
    with open(path) as f:
        return yaml.safe_load(f)


def alert_rules():
    return [r for g in load_yaml(RULES)["groups"] for r in g["rules"] if "alert" in r]


def load_dashboard():
    with open(DASHBOARD) as f:
        return json.load(f)


def dashboard_panels(dash):
    """Every panel, those inside collapsed rows included."""
    for p in dash["panels"]:
        yield p
        for q in p.get("panels", []):
            yield q


# ---------------------------------------------------------------------------
# PromQL, as far as these files use it


_TOKEN = re.compile(r"""
    (?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<range>\[[^\]]*\])
  | (?P<var>\$\{?\w+\}?)
  | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
  | (?P<num>\d+(?:\.\d+)?(?:e[+-]?\d+)?)
  | (?P<op>=~|!~|!=|==|>=|<=|[-+*/%^<>=(){},])
  | (?P<space>\s+)
""", re.X)

GROUPING = {"by", "without", "on", "ignoring", "group_left", "group_right"}
KEYWORDS = {"and", "or", "unless", "bool", "offset"}
AGGREGATIONS = {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count",
                "count_values", "bottomk", "topk", "quantile"}


def tokens(expr):
    pos, out = 0, []
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        assert m, "cannot read PromQL %r at %r" % (expr, expr[pos:pos + 20])
        pos = m.end()
        if m.lastgroup != "space":
            out.append((m.lastgroup, m.group()))
    return out


def parse_promql(expr):
    """-> (selectors, groupings): selectors are (metric, [(label, op,
    value)]); groupings the label lists of by/without/on/ignoring/group_*."""
    toks = tokens(expr)
    selectors, groupings = [], []
    i = 0
    while i < len(toks):
        kind, text = toks[i]
        nxt = toks[i + 1][1] if i + 1 < len(toks) else None
        if kind == "op" and text == "{":
            raise AssertionError("a selector without a metric name in %r" % expr)
        if kind != "ident" or text in KEYWORDS or text in AGGREGATIONS:
            i += 1
            continue
        if text in GROUPING and nxt == "(":
            j = toks.index(("op", ")"), i)
            groupings.append([t for k, t in toks[i + 2:j] if k == "ident"])
            i = j + 1
            continue
        if nxt == "(":  # a function or an aggregation
            i += 1
            continue
        matchers = []
        i += 1
        if nxt == "{":
            j = toks.index(("op", "}"), i)
            body = [t for k, t in toks[i + 1:j] if t != ","]
            assert len(body) % 3 == 0, "bad matchers in %r" % expr
            for k in range(0, len(body), 3):
                matchers.append((body[k], body[k + 1], json.loads(body[k + 2])))
            i = j + 1
        selectors.append((text, matchers))
    return selectors, groupings


def scraped(labels):
    return set(labels) | TARGET_LABELS


def check_expr(expr, real, printed=(), where=""):
    """Problems with expr against real {metric: {label: {values}}}: unknown
    metrics, labels a metric has not, fixed values it never takes, and
    printed labels (legends, $labels.x) the result cannot have."""
    problems = []
    selectors, groupings = parse_promql(expr)
    assert selectors, "%s: no metric in %r" % (where, expr)
    have = set()
    for name, matchers in selectors:
        labels = SYNTHETIC.get(name)
        if labels is None and name not in real:
            problems.append("%s: metric %s is not in /metrics (%s)" % (where, name, expr))
            continue
        labels = scraped(labels if labels is not None else real[name])
        have |= labels
        for label, op, value in matchers:
            if label not in labels:
                problems.append("%s: %s has no label %s (%s)" % (where, name, label, expr))
            elif (op == "=" and label not in TARGET_LABELS and "$" not in value
                  and value not in real.get(name, {}).get(label, ())):
                problems.append("%s: %s{%s} is never %r (%s)" % (where, name, label, value, expr))
    for g in groupings:
        for label in g:
            if label not in have:
                problems.append("%s: no metric of %s has the label %s" % (where, expr, label))
    out = set(have)
    for g in groupings:
        out &= set(g)
    for label in printed:
        if label not in out:
            problems.append("%s: %s printed, but %s has no such label" % (where, label, expr))
    return problems


def real_labels(text):
    """/metrics text -> {metric: {label: {values}}}."""
    real = {}
    samples, _ = parse_metrics(text)
    for name, labels in samples:
        d = real.setdefault(name, {})
        for k, v in labels:
            d.setdefault(k, set()).add(v)
    return real


def legend_labels(text):
    return re.findall(r"\{\{\s*(\w+)\s*\}\}", text or "")


def dashboard_queries(dash):
    """(where, expr, printed labels) for every query of the dashboard."""
    for p in dashboard_panels(dash):
        for t in p.get("targets", []):
            yield ("panel %r %s" % (p.get("title"), t.get("refId")), t["expr"],
                   legend_labels(t.get("legendFormat")))
    for a in dash["annotations"]["list"]:
        if "expr" in a:
            printed = legend_labels(a.get("titleFormat")) + legend_labels(a.get("textFormat"))
            yield ("annotation %r" % a["name"], a["expr"], printed)


def variable_queries(dash):
    """(where, selector expr, label) of every label_values() variable."""
    for v in dash["templating"]["list"]:
        if v.get("type") != "query":
            continue
        q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
        assert v.get("definition", q) == q, "variable %s: definition and query differ" % v["name"]
        m = re.fullmatch(r"\s*label_values\((.*),\s*(\w+)\s*\)\s*", q)
        assert m, "variable %s: not a label_values(metric, label) query: %r" % (v["name"], q)
        yield "variable %s" % v["name"], m.group(1), m.group(2)


def rule_queries():
    for r in alert_rules():
        text = " ".join(r.get("annotations", {}).values())
        yield ("alert %s" % r["alert"], r["expr"], re.findall(r"\$labels\.(\w+)", text))


# ---------------------------------------------------------------------------
# The alerting rules


def test_alert_rules_pass_promtool_check():
    rc, out = run_promtool("check", "rules", RULES)
    assert rc == 0, "promtool check rules %s: exit %d\n%s" % (RULES, rc, out)


def test_alert_rules_fire_and_stay_quiet_under_promtool_test():
    rc, out = run_promtool("test", "rules", RULES_TEST)
    assert rc == 0, "promtool test rules %s: exit %d\n%s" % (RULES_TEST, rc, out)

    cases = {}
    for test in load_yaml(RULES_TEST)["tests"]:
        for case in test.get("alert_rule_test", []):
            kinds = cases.setdefault(case["alertname"], set())
            kinds.add("fires" if case.get("exp_alerts") else "quiet")
    problems = []
    for r in alert_rules():
        for kind in ("fires", "quiet"):
            if kind not in cases.get(r["alert"], ()):
                problems.append("%s: no case where it %s" % (r["alert"], kind))
    unknown = set(cases) - {r["alert"] for r in alert_rules()}
    if unknown:
        problems.append("cases for alerts the rules do not have: %s" % sorted(unknown))
    assert not problems, "\n".join(problems)


def test_alert_rules_have_for_severity_and_annotations():
    problems = []
    for r in alert_rules():
        if "for" not in r:
            problems.append("%s: no for:" % r["alert"])
        if r.get("labels", {}).get("severity") not in ("critical", "warning", "info"):
            problems.append("%s: severity %r" % (r["alert"], r.get("labels", {}).get("severity")))
        for key in ("summary", "description"):
            if not r.get("annotations", {}).get(key, "").strip():
                problems.append("%s: no %s" % (r["alert"], key))
    names = [r["alert"] for r in alert_rules()]
    if len(names) != len(set(names)):
        problems.append("alert names given twice: %s" % names)
    assert not problems, "\n".join(problems)


# ---------------------------------------------------------------------------
# The dashboard


def test_dashboard_is_importable_json():
    dash = load_dashboard()
    assert dash.get("schemaVersion", 0) >= 36, dash.get("schemaVersion")
    assert dash.get("title") and dash.get("uid"), "a dashboard needs a title and a uid"
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    ds = [v for v in variables.values() if v["type"] == "datasource"]
    assert len(ds) == 1 and ds[0]["query"] == "prometheus", "one Prometheus datasource variable"
    ds_ref = "${%s}" % ds[0]["name"]
    listener = variables.get("listener")
    assert listener is not None and listener["type"] == "query", "no listener variable"
    assert ("variable listener", "listener") in {(w, label) for w, _, label
                                                 in variable_queries(dash)}, (
        "listener does not come from label_values(..., listener)")

    problems = []
    ids = [p.get("id") for p in dashboard_panels(dash)]
    if len(ids) != len(set(ids)) or None in ids:
        problems.append("panel ids missing or not unique: %s" % ids)
    cells = {}
    for p in dashboard_panels(dash):
        title = p.get("title")
        if not title:
            problems.append("panel %s has no title" % p.get("id"))
        g = p.get("gridPos", {})
        if not (g.get("w", 0) > 0 and g.get("h", 0) > 0 and g.get("x", -1) >= 0
                and g.get("x", 0) + g.get("w", 0) <= 24 and g.get("y", -1) >= 0):
            problems.append("%r: bad gridPos %r" % (title, g))
        for x in range(g.get("x", 0), g.get("x", 0) + g.get("w", 0)):
            for y in range(g.get("y", 0), g.get("y", 0) + g.get("h", 0)):
                if (x, y) in cells:
                    problems.append("%r overlaps %r at (%d, %d)" % (title, cells[(x, y)], x, y))
                cells[(x, y)] = title
        if p.get("type") == "row":
            continue
        sources = [p.get("datasource")] + [t.get("datasource") for t in p.get("targets", [])]
        if any(not isinstance(s, dict) or s.get("uid") != ds_ref for s in sources):
            problems.append("%r: datasource not %s: %r" % (title, ds_ref, sources))
        targets = p.get("targets", [])
        if not targets or not all(t.get("expr", "").strip() for t in targets):
            problems.append("%r: no queries" % title)
        refs = [t.get("refId") for t in targets]
        if len(refs) != len(set(refs)) or None in refs:
            problems.append("%r: refIds %r" % (title, refs))
    assert not problems, "\n".join(sorted(set(problems)))


# ---------------------------------------------------------------------------
# Against a real gate


CROWDSEC_SECTION = """
    [crowdsec]
    url = http://127.0.0.1:$lapi
    api_key_file = crowdsec.key
    interval_ms = 200
    """


def built_with(gate, feature):
    rc, out, err = gate.run(["-V"])
    m = re.search(r"^features:(.*)$", out + err, re.M)
    return m is not None and feature in m.group(1).split()


def test_dashboard_and_alerts_use_metrics_a_gate_exports(gate):
    """Every query is checked against what a running gate exports. The
    [crowdsec] section names a port nobody listens on: the client is down,
    its families are there all the same."""
    crowdsec = built_with(gate, "crowdsec")
    gate.write(ECHO_GATE + CROWDSEC_SECTION if crowdsec else ECHO_GATE, admin=True)
    fd = os.open(os.path.join(gate.dir, "crowdsec.key"), os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"not-a-real-key\n")
    os.close(fd)
    gate.start()
    c = connect(gate.port("web"), "127.0.0.2")
    echo_check(c)
    c.close()
    real = real_labels(fetch_metrics(gate)[0].text)

    dash = load_dashboard()
    problems, unchecked = [], []
    queries = list(dashboard_queries(dash)) + list(rule_queries())
    queries += [(w, sel, [label]) for w, sel, label in variable_queries(dash)]
    for where, expr, printed in queries:
        if not crowdsec and "condgate_crowdsec_" in expr:
            unchecked.append(where)
            continue
        problems += check_expr(expr, real, printed, where)
    assert not problems, "\n".join(problems)
    assert len(queries) - len(unchecked) > 30, "too few queries found: %d" % len(queries)
    gate.stop()
    if unchecked:
        pytest.skip("built without crowdsec: %d queries unchecked (%s)"
                    % (len(unchecked), ", ".join(unchecked)))


def metric(gate, name, **labels):
    return fetch_metrics(gate)[0].value(name, **labels)


def reload_counters(gate):
    """(failures, last reload successful, reloads, generation) from /metrics."""
    m = fetch_metrics(gate)[0]
    return tuple(m.value(name) for name in (
        "condgate_reload_failures_total", "condgate_config_last_reload_successful",
        "condgate_reloads_total", "condgate_config_generation"))


def test_failed_reloads_counted_and_last_reload_flag(gate):
    gate.write(ECHO_GATE, admin=True)
    gate.start()
    assert reload_counters(gate) == (0, 1, 0, 1)

    gate.write(ECHO_GATE.replace("127.0.0.0/8", "127.0.0.0/8, 300.0.0.1"), admin=True)
    gate.json("/reload?dry_run=1", method="POST", expect=422)
    assert metric(gate, "condgate_reload_failures_total") == 0, "a preview counted as a reload"
    body = gate.json("/reload", method="POST", expect=422)
    assert "invalid address '300.0.0.1'" in body["error"], body
    gate.reload(expect="failed")  # SIGHUP fails the same way
    assert reload_counters(gate) == (2, 0, 0, 1)

    gate.write(ECHO_GATE, admin=True)
    assert gate.json("/reload", method="POST")["ok"] is True
    assert reload_counters(gate) == (2, 1, 1, 2)
    gate.stop()


def test_descriptor_metrics_and_sheds_at_emfile(gate):
    """Under RLIMIT_NOFILE 64: condgate_max_fds is 64, condgate_open_fds
    what /proc shows, condgate_max_connections the effective value the gate
    lowered to fit (as /stats says). Then the soft limit drops under what
    the gate holds: callers are shed, and condgate_connections_shed_total
    counts them (within the limit refusals)."""
    gate.write(ECHO_GATE, admin=True)
    gate.start(prefix=RLIMIT_WRAPPER)
    stats = gate.json("/stats")
    m = fetch_metrics(gate)[0]
    assert m.value("condgate_max_fds") == 64
    assert m.value("condgate_max_connections") == stats["max_connections"] < 10000, stats
    assert m.value("condgate_connections_shed_total", listener="web") == 0
    held = gate.fd_count()
    open_fds = m.value("condgate_open_fds")
    assert held - 2 <= open_fds <= held + 2, "condgate_open_fds %d, /proc shows %d" % (
        open_fds, held)

    # The soft limit drops to just above what the gate holds (the hard one stays).
    resource.prlimit(gate.pid, resource.RLIMIT_NOFILE, (held + 1, 64))
    mark = gate.mark()
    flood = []
    try:
        for i in range(40):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            s.bind(("127.0.0.%d" % (2 + i % 8), 0))
            s.connect_ex(("127.0.0.1", gate.port("web")))
            flood.append(s)
        gate.wait_log(event_re("fd_exhausted"), since=mark, timeout=15)
    finally:
        for s in flood:
            s.close()
        resource.prlimit(gate.pid, resource.RLIMIT_NOFILE, (64, 64))

    def settled():
        m = fetch_metrics(gate)[0]
        return m if m.value("condgate_connections_active", listener="web") == 0 else None

    m = wait_for(settled, 15, "the flood closed")
    shed = m.value("condgate_connections_shed_total", listener="web")
    assert shed >= 1, m.text
    assert m.value("condgate_connections_rejected_total", listener="web", reason="limit") >= shed
    assert m.value("condgate_max_fds") == 64
    gate.stop()


def test_shed_counter_stays_zero_when_the_limit_refuses(gate):
    """A caller refused by max_connections is counted under limit, and not
    as shed: the two are told apart."""
    gate.write(ECHO_GATE.replace("10000", "1"), admin=True)
    gate.start()
    c = connect(gate.port("web"), "127.0.0.2")
    echo_check(c)
    # Refused at once: the reset may even beat connect() back to the caller.
    expect_rejected(gate.port("web"), "127.0.0.3")
    wait_for(lambda: metric(gate, "condgate_connections_rejected_total", listener="web",
                            reason="limit") == 1, 10, "one limit refusal")
    assert metric(gate, "condgate_connections_shed_total", listener="web") == 0
    assert metric(gate, "condgate_max_connections") == 1
    c.close()
    gate.stop()


def test_a_misspelt_metric_or_label_is_caught():
    """The checker itself: names and labels that are not exported, fixed
    values never taken, printed labels the aggregation dropped."""
    real = {"condgate_bans": {},
            "condgate_connections_rejected_total": {"listener": {"web"},
                                                    "reason": {"rule", "limit"}}}
    ok = ('sum by (instance, listener) '
          '(rate(condgate_connections_rejected_total{reason="limit"}[5m]))')
    assert check_expr(ok, real, ["listener"]) == []
    assert check_expr("condgate_banz > 0", real)
    assert check_expr('condgate_bans{listener="web"}', real)
    assert check_expr(ok.replace('"limit"', '"limits"'), real)
    assert check_expr(ok.replace("listener)", "listner)"), real)
    assert check_expr(ok, real, ["reason"])
    assert check_expr('up{job="condgate"} == 0', real, ["instance"]) == []
