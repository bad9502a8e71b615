"""Command line (SPEC §1): -V, -h, -t, exit statuses, configuration errors
as one FILE:LINE line, bind failures."""

import os
import re
import socket

import pytest

from cgtest import connect, echo_check, port_is_free

GOOD = """
    [gateway]
    workers = 2

    [rules]
    default = deny
    allow = 127.0.0.2, 127.0.0.3
    deny = 127.0.0.4

    [rules:office]
    default = deny
    allow = 203.0.113.0/24, 2001:db8::/32

    [listener:web]
    bind = 127.0.0.1:$web
    backend = echo
    rules = default

    [listener:office]
    bind = 127.0.0.1:$office
    backend = echo
    rules = office
    """


def test_version(gate):
    for flag in ("-V", "--version"):
        rc, out, err = gate.run([flag])
        assert rc == 0, err
        lines = out.splitlines()
        assert lines[0] == "condgate 0.1.0", out
        # the optional features built in, in a fixed order, or none
        assert len(lines) == 2 and lines[1].startswith("features: "), out
        names = lines[1].split(" ", 1)[1].split()
        order = ["prefilter", "crowdsec", "geoip", "systemd"]
        assert names == ["none"] or names == [n for n in order if n in names], out


def test_help(gate):
    rc, out, err = gate.run(["-h"])
    assert rc == 0, err
    assert "--config" in out + err and "-t" in out + err


def test_bad_usage_exits_2(gate):
    rc, out, err = gate.run(["--no-such-option"])
    assert rc == 2
    assert err.strip()


def test_missing_config_file_exits_2(gate, tmp_path):
    missing = str(tmp_path / "nope" / "condgate.ini")
    rc, out, err = gate.run(["-c", missing])
    assert rc == 2
    assert missing in err
    assert "event=start" not in err


def test_test_mode_prints_summary_and_binds_nothing(gate):
    gate.write(GOOD)
    rc, out, err = gate.run(["-c", gate.ini_path, "-t"])
    assert rc == 0, err
    text = out + err
    for word in ("web", "office", "default", str(gate.port("web")), str(gate.port("office"))):
        assert word in text, "-t output lacks %r:\n%s" % (word, text)
    assert "event=start" not in text
    assert port_is_free(gate.port("web")) and port_is_free(gate.port("office"))


def test_test_mode_warns_same_prefix_allowed_and_denied(gate):
    gate.write("""
        [rules]
        default = deny
        allow = 127.0.0.5
        deny = 127.0.0.5

        [listener:web]
        bind = 127.0.0.1:$web
        backend = echo
        rules = default
        """)
    rc, out, err = gate.run(["-c", gate.ini_path, "-t"])
    assert rc == 0, err
    lines = (gate.line_of("allow = 127.0.0.5"), gate.line_of("deny = 127.0.0.5"))
    assert re.search(r"condgate\.ini:(%d|%d):" % lines, out + err), \
        "no FILE:LINE warning for 127.0.0.5 both allowed and denied:\n" + out + err


LISTENER = """
    [listener:web]
    bind = 127.0.0.1:$web
    backend = echo
    rules = default
    """

# id: (ini, files, file with the error, text on the bad line (or None for a
# given line number), extra text expected in the message)
BAD = {
    "bad-cidr-ini": ("[rules]\nallow = 127.0.0.300\n" + LISTENER, {}, "condgate.ini",
                     "127.0.0.300", None),
    "host-bits": ("[rules]\ndeny = 10.1.2.3/8\n" + LISTENER, {}, "condgate.ini",
                  "10.1.2.3/8", "10.0.0.0/8"),
    "unknown-key": ("[gateway]\nworkers = 2\ncolour = blue\n[rules]\nallow = all\n" + LISTENER,
                    {}, "condgate.ini", "colour", None),
    "unknown-section": ("[rules]\nallow = all\n[frobnicate]\nx = 1\n" + LISTENER, {},
                        "condgate.ini", "[frobnicate]", None),
    "workers-range": ("[gateway]\nworkers = 0\n[rules]\nallow = all\n" + LISTENER, {},
                      "condgate.ini", "workers", None),
    "missing-ruleset": ("[rules]\nallow = all\n" + LISTENER.replace("rules = default",
                                                                     "rules = nosuch"),
                        {}, "condgate.ini", "nosuch", None),
    "duplicate-listener": ("[rules]\nallow = all\n" + LISTENER + LISTENER.replace(
        "$web", "$web2"), {}, "condgate.ini", "[listener:web]", None),
    "bad-backend": ("[rules]\nallow = all\n" + LISTENER.replace("backend = echo",
                                                                 "backend = nowhere"),
                    {}, "condgate.ini", "nowhere", None),
    "missing-include": ("[rules]\ninclude = absent.json\n" + LISTENER, {}, "condgate.ini",
                        "absent.json", None),
    "json-bad-cidr": ("[rules]\ninclude = rules.json\n" + LISTENER,
                      {"rules.json": '{\n  "allow": [\n    "127.0.0.2",\n    "bogus"\n  ]\n}\n'},
                      "rules.json", '"bogus"', None),
    "json-unknown-key": ("[rules]\ninclude = rules.json\n" + LISTENER,
                         {"rules.json": '{\n  "allow": ["127.0.0.2"],\n  "alow": []\n}\n'},
                         "rules.json", '"alow"', None),
    "json-wrong-type": ("[rules]\ninclude = rules.json\n" + LISTENER,
                        {"rules.json": '{\n  "deny":\n    "127.0.0.2"\n}\n'},
                        "rules.json", '"127.0.0.2"', None),
    "list-bad-line": ("[rules]\nallow_file = allow.txt\n" + LISTENER,
                      {"allow.txt": "# partners\n127.0.0.2\n127.0.0.999\n"},
                      "allow.txt", "127.0.0.999", None),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_config_exits_2_with_file_line(gate, case):
    ini, files, bad_file, needle, extra = BAD[case]
    # The first listener is valid and comes first, so a gate that binds
    # before validating everything would be caught holding its port.
    ini = ("[listener:first]\nbind = 127.0.0.1:$first\nbackend = echo\nrules = default\n\n" + ini)
    gate.write(ini, files={k: v for k, v in files.items()})
    rc, out, err = gate.run(["-c", gate.ini_path])
    assert rc == 2, "exit %s for a bad config (%s)\n%s" % (rc, case, err)
    lines = [l for l in err.splitlines() if l.strip()]
    assert len(lines) == 1, "want exactly one error line, got:\n" + err
    m = re.match(r"^(.+?):(\d+): (\S.*)$", lines[0])
    assert m, "not FILE:LINE: message: %r" % lines[0]
    assert os.path.basename(m.group(1)) == bad_file, lines[0]
    if needle is not None:
        src = gate.ini_text if bad_file == "condgate.ini" else files[bad_file]
        want = [i for i, l in enumerate(src.splitlines(), 1) if needle in l]
        assert int(m.group(2)) in want, "line %s, expected %s: %s" % (m.group(2), want, lines[0])
    else:
        assert int(m.group(2)) > 0
    if extra:
        assert extra in m.group(3), lines[0]
    assert "event=start" not in err + out
    assert port_is_free(gate.port("first"))


def test_long_line_is_never_silently_split(gate):
    """inih splits lines past 199 chars: a long allow list either works as
    written (its last entry too) or is an error naming its line."""
    hosts = ["127.0.1.%d" % i for i in range(1, 41)] + ["127.0.0.9"]
    long_line = "allow = " + ", ".join(hosts)
    assert len(long_line) > 400
    gate.write("""
        [rules]
        default = deny
        %s
        allow = 127.0.0.2

        [listener:web]
        bind = 127.0.0.1:$web
        backend = echo
        rules = default
        """ % long_line)
    rc, out, err = gate.run(["-c", gate.ini_path, "-t"])
    line = gate.line_of("allow = 127.0.1.1,")
    if rc != 0:
        assert rc == 2, err
        assert re.search(r"condgate\.ini:%d: " % line, err), \
            "a long line must be reported with its own line number:\n" + err
        return
    gate.start()
    for src in ("127.0.1.1", "127.0.0.9", "127.0.0.2"):
        c = connect(gate.port("web"), src)
        echo_check(c)
        c.close()
    gate.stop()


def test_bind_failure_exits_1(gate):
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    taken = holder.getsockname()[1]
    try:
        gate.write("""
            [rules]
            allow = all

            [listener:ok]
            bind = 127.0.0.1:$ok
            backend = echo
            rules = default

            [listener:taken]
            bind = 127.0.0.1:%d
            backend = echo
            rules = default
            """ % taken)
        rc, out, err = gate.run(["-c", gate.ini_path], timeout=20)
        assert rc == 1, "exit %s when a bind fails\n%s" % (rc, err)
        assert re.search(r"level=error\b", err), err
        assert str(taken) in err, "the error should name the address:\n" + err
        assert "event=start" not in err
        assert port_is_free(gate.port("ok"))
    finally:
        holder.close()


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_rule_file_must_be_a_regular_file(gate, kind):
    """A FIFO named as a list file would block the loader (and a reload)
    for ever; a device such as /dev/zero would be read up to the size bound.
    Both are refused at once with the INI line that names them."""
    if kind == "fifo":
        path = os.path.join(gate.dir, "blocklist.fifo")
        os.mkfifo(path)
    else:
        path = "/dev/zero"
    gate.write("""
        [rules]
        default = deny
        deny_file = %s

        [listener:web]
        bind = 127.0.0.1:$web
        backend = echo
        """ % path)
    rc, out, err = gate.run(["-c", gate.ini_path, "-t"], timeout=10)
    assert rc == 2, err
    line = gate.line_of("deny_file = ")
    assert re.search(r"condgate\.ini:%d: deny_file: cannot read .*not a regular file" % line,
                     err), err
