"""Allow / deny / default verdicts (SPEC §4), IPv6 and dual-stack listeners,
reject log lines (§7) and the counters behind them."""

import json
import re

from cgtest import connect, echo_check, event_re, expect_rejected


def reject_hit(gate, src, lport, since=0):
    """The event=reject line for the caller src:lport (a dual-stack listener
    may print the peer either as a.b.c.d:P or [::ffff:a.b.c.d]:P)."""
    peer = r"\[?(?:::ffff:)?%s\]?:%d(?=\s|$)" % (re.escape(src), lport)
    return gate.wait_log(event_re("reject") + r".*\bpeer=" + peer, since=since)


def admitted(port, src, host=None):
    s = connect(port, src, host)
    echo_check(s, b"hello from %s\n" % src.encode())
    return s


def host_rx(addr, bits):
    """The rule field of a single-host entry: '127.0.0.3' or '127.0.0.3/32'."""
    return r"%s(/%d)?" % (re.escape(addr), bits)


def test_start_line_fields(gate):
    gate.write("""
        [gateway]
        workers = 2

        [rules]
        allow = 127.0.0.2

        [listener:a]
        bind = 127.0.0.1:$a
        backend = echo
        rules = default

        [listener:b]
        bind = 127.0.0.1:$b
        backend = echo
        rules = default
        """)
    hit = gate.start()
    assert hit["level"] == "info"
    assert hit["version"] == "0.1.0"
    assert hit["generation"] == "1"
    assert hit["workers"] == "2"
    assert hit["listeners"] == "2"
    assert hit["config"].endswith("condgate.ini")
    s = gate.stats()
    assert s["generation"] == 1
    assert s["reloads"] == 0
    assert set(s["listeners"]) == {"a", "b"}
    gate.stop()
    gate.wait_log(event_re("stop"))


def test_longest_prefix_wins(gate, echo_backend):
    """SPEC §4 example on 127.x: allow /8 + deny /16 + allow one host."""
    gate.write("""
        [gateway]
        workers = 2

        [rules]
        default = deny
        allow = 127.0.0.0/8
        deny = 127.66.0.0/16
        allow = 127.66.1.7

        [listener:web]
        bind = 127.0.0.1:$web
        backend = %s
        rules = default
        """ % echo_backend.addr)
    gate.start()
    port = gate.port("web")
    deny_line = gate.line_of("deny = 127.66.0.0/16")

    a = admitted(port, "127.66.1.7")       # the /32 allow beats the /16 deny
    b = admitted(port, "127.1.1.1")        # only the /8 matches
    for src in ("127.66.2.2", "127.66.1.8"):  # the /16 deny beats the /8 allow
        lport = expect_rejected(port, src)
        hit = reject_hit(gate, src, lport)
        assert hit["level"] == "info"
        assert hit["listener"] == "web"
        assert hit["reason"] == "rule"
        assert hit["rule"] == "127.66.0.0/16"
        assert re.search(r"condgate\.ini:%d$" % deny_line, hit["source"]), hit.line
    a.close()
    b.close()

    s = gate.wait_stats(lambda s: s["accepted"] == 2 and s["rejected"] == 2,
                        what="accepted=2 rejected=2")
    assert (s["rejected_rule"], s["rejected_default"], s["rejected_limit"]) == (2, 0, 0)
    w = s["listeners"]["web"]
    assert (w["accepted"], w["rejected"], w["rejected_rule"]) == (2, 2, 2)
    # Rejected callers are never handed on: the backend saw the two admitted only.
    assert echo_backend.accepted == 2
    gate.stop()


def test_allow_deny_default_and_rule_sources(gate):
    """Verdicts from INI entries, a JSON include and a plain list file, the
    default verdict, 'deny wins' on the same prefix, and a second rule set
    with default = allow."""
    gate.write("""
        [gateway]
        workers = 2

        [rules]
        default = deny
        allow = 127.0.0.2
        deny = 127.0.0.3
        allow = 127.0.0.5
        include = rules.json
        deny_file = deny.netset

        [rules:open]
        default = allow
        deny = 127.0.0.3

        [listener:web]
        bind = 127.0.0.1:$web
        backend = echo
        rules = default

        [listener:open]
        bind = 127.0.0.1:$open
        backend = echo
        rules = open
        """, files={
        "rules.json": """
            {
              "allow": ["127.0.0.6"],
              "rules": [
                {"action": "deny", "cidr": "127.0.0.7", "label": "scanner"}
              ]
            }
            """,
        "deny.netset": """
            # FireHOL-style list
            127.0.0.8   # a comment

            127.0.0.5
            """,
    })
    gate.start()
    web, open_ = gate.port("web"), gate.port("open")

    keep = [admitted(web, "127.0.0.2"), admitted(web, "127.0.0.6")]
    expected = {
        # src: (reason, rule regex, source regex)
        "127.0.0.3": ("rule", host_rx("127.0.0.3", 32),
                      r"condgate\.ini:%d$" % gate.line_of("deny = 127.0.0.3")),
        "127.0.0.4": ("default", r"", r""),
        # allowed in the INI, denied in the list: deny wins
        "127.0.0.5": ("rule", host_rx("127.0.0.5", 32),
                      r"deny\.netset:%d$" % gate.line_of("127.0.0.5", "deny.netset")),
        "127.0.0.7": ("rule", host_rx("127.0.0.7", 32),
                      r"rules\.json:%d$" % gate.line_of("127.0.0.7", "rules.json")),
        "127.0.0.8": ("rule", host_rx("127.0.0.8", 32),
                      r"deny\.netset:%d$" % gate.line_of("127.0.0.8", "deny.netset")),
    }
    for src, (reason, rule, source) in expected.items():
        lport = expect_rejected(web, src)
        hit = reject_hit(gate, src, lport)
        assert hit["listener"] == "web", hit.line
        assert hit["reason"] == reason, hit.line
        assert re.fullmatch(rule, hit.get("rule", "")), hit.line
        if source:
            assert re.search(source, hit.get("source", "")), hit.line
        else:
            assert hit.get("source", "") == "", hit.line

    # default = allow on the other listener; its own deny still applies
    keep.append(admitted(open_, "127.0.0.4"))
    lport = expect_rejected(open_, "127.0.0.3")
    hit = reject_hit(gate, "127.0.0.3", lport)
    assert (hit["listener"], hit["reason"]) == ("open", "rule")
    for s in keep:
        s.close()

    s = gate.wait_stats(lambda s: s["accepted"] == 3 and s["rejected"] == 6,
                        what="accepted=3 rejected=6")
    assert (s["rejected_rule"], s["rejected_default"], s["rejected_limit"]) == (5, 1, 0)
    w, o = s["listeners"]["web"], s["listeners"]["open"]
    assert (w["accepted"], w["rejected_rule"], w["rejected_default"]) == (2, 4, 1)
    assert (o["accepted"], o["rejected_rule"], o["rejected_default"]) == (1, 1, 0)
    gate.stop()


def test_ipv6_loopback_rules(gate, ipv6):
    """[::1] listeners: allowed by an IPv6 rule, denied by the longest IPv6
    prefix, and refused by default when only IPv4 rules exist."""
    gate.write("""
        [gateway]
        workers = 2

        [rules]
        default = deny
        allow = ::1

        [rules:deny6]
        default = deny
        allow = all
        deny = ::1

        [rules:v4only]
        default = deny
        allow = 127.0.0.0/8

        [listener:allow6]
        bind = [::1]:$allow6
        backend = echo
        rules = default

        [listener:deny6]
        bind = [::1]:$deny6
        backend = echo
        rules = deny6

        [listener:v4only]
        bind = [::1]:$v4only
        backend = echo
        rules = v4only
        """)
    gate.start()
    c = admitted(gate.port("allow6"), "::1")
    c.close()

    lport = expect_rejected(gate.port("deny6"), "::1")
    hit = reject_hit(gate, "::1", lport)
    assert (hit["listener"], hit["reason"]) == ("deny6", "rule"), hit.line
    assert re.fullmatch(host_rx("::1", 128), hit["rule"]), hit.line
    assert re.search(r"condgate\.ini:%d$" % gate.line_of("deny = ::1"), hit["source"]), hit.line

    lport = expect_rejected(gate.port("v4only"), "::1")
    hit = reject_hit(gate, "::1", lport)
    assert (hit["listener"], hit["reason"]) == ("v4only", "default"), hit.line

    s = gate.wait_stats(lambda s: s["rejected"] == 2, what="rejected=2")
    assert (s["accepted"], s["rejected_rule"], s["rejected_default"]) == (1, 1, 1)
    gate.stop()


def test_dual_stack_judges_ipv4_callers_by_ipv4_rules(gate, ipv6):
    """On [::]:P an IPv4 caller arrives as ::ffff:a.b.c.d and must be matched
    exactly as a.b.c.d (SPEC §4): IPv4 rules cannot be bypassed."""
    gate.write("""
        [gateway]
        workers = 2

        [rules]
        default = deny
        allow = 127.0.0.2
        deny = 127.0.0.3
        allow = 127.0.9.0/24

        [listener:ds]
        bind = [::]:$ds
        backend = echo
        rules = default
        """)
    gate.start()
    port = gate.port("ds")
    keep = [admitted(port, "127.0.0.2"), admitted(port, "127.0.9.9")]

    lport = expect_rejected(port, "127.0.0.3")
    hit = reject_hit(gate, "127.0.0.3", lport)
    assert hit["reason"] == "rule", hit.line
    assert re.fullmatch(host_rx("127.0.0.3", 32) + r"|::ffff:127\.0\.0\.3(/128)?",
                        hit["rule"]), hit.line

    lport = expect_rejected(port, "127.0.0.4")
    assert reject_hit(gate, "127.0.0.4", lport)["reason"] == "default"

    # IPv6 callers on the same listener: no IPv6 entry matches -> default
    lport = expect_rejected(port, "::1", host="::1")
    assert reject_hit(gate, "::1", lport)["reason"] == "default"
    for s in keep:
        s.close()
    s = gate.wait_stats(lambda s: s["rejected"] == 3, what="rejected=3")
    assert (s["accepted"], s["rejected_rule"], s["rejected_default"]) == (2, 1, 2)
    gate.stop()


def test_mapped_rule_entries_are_normalised_no_bypass(gate, ipv6):
    """A rule written as ::ffff:a.b.c.d[/96+n] means a.b.c.d[/n]: callers are
    normalised to IPv4, so the entry must be too, or it could never match
    and the caller would walk past a deny. Checked on a dual-stack and on a
    plain IPv4 listener sharing the set."""
    gate.write("""
        [gateway]
        workers = 2

        [rules]
        default = allow
        deny = ::ffff:127.0.0.4
        deny = ::ffff:127.0.5.0/120

        [listener:ds]
        bind = [::]:$ds
        backend = echo
        rules = default

        [listener:v4]
        bind = 127.0.0.1:$v4
        backend = echo
        rules = default
        """)
    gate.start()
    for name in ("ds", "v4"):
        port = gate.port(name)
        c = admitted(port, "127.0.0.2")  # default allow
        c.close()
        for src in ("127.0.0.4", "127.0.5.9"):
            lport = expect_rejected(port, src)
            hit = reject_hit(gate, src, lport)
            assert (hit["listener"], hit["reason"]) == (name, "rule"), hit.line
    # the IPv6 caller ::1 is not inside ::ffff:0:0/96: default allow
    c = admitted(gate.port("ds"), "::1", host="::1")
    c.close()
    s = gate.wait_stats(lambda s: s["rejected"] == 4, what="rejected=4")
    assert s["rejected_rule"] == 4 and s["accepted"] == 3
    gate.stop()


def test_json_log_format(gate):
    gate.write("""
        [gateway]
        workers = 1
        log_format = json

        [rules]
        default = deny
        allow = 127.0.0.2

        [listener:web]
        bind = 127.0.0.1:$web
        backend = echo
        rules = default
        """)
    gate.start()
    c = admitted(gate.port("web"), "127.0.0.2")
    c.close()
    lport = expect_rejected(gate.port("web"), "127.0.0.4")
    hit = gate.wait_log(event_re("reject"))
    gate.stop()
    objs = [json.loads(l) for l in gate.lines if l.strip()]  # every line is one object
    start = [o for o in objs if o.get("event") == "start"]
    assert start and start[0]["version"] == "0.1.0"
    rej = json.loads(hit.line)
    assert rej["level"] == "info"
    assert rej["listener"] == "web"
    assert rej["reason"] == "default"
    assert rej["peer"] == "127.0.0.4:%d" % lport
    assert "ts" in rej
    assert any(o.get("event") == "stop" for o in objs)


def test_rejected_caller_gets_no_byte_even_if_it_talks_first(gate, server):
    """A rejected caller never reaches a worker or the backend, whatever it
    sends; a banner-speaking backend would otherwise leak bytes to it."""
    from cgtest import banner_then_read_handler
    banner = server(banner_then_read_handler(b"220 welcome\r\n"))
    gate.write("""
        [gateway]
        workers = 2

        [rules]
        default = deny
        allow = 127.0.0.2

        [listener:web]
        bind = 127.0.0.1:$web
        backend = %s
        rules = default
        """ % banner.addr)
    gate.start()
    for i in range(10):
        expect_rejected(gate.port("web"), "127.0.0.3", probe=b"GET / HTTP/1.0\r\n\r\n")
    c = connect(gate.port("web"), "127.0.0.2")
    assert c.recv(64) == b"220 welcome\r\n"
    c.close()
    s = gate.wait_stats(lambda s: s["rejected"] == 10, what="rejected=10")
    assert s["accepted"] == 1
    assert banner.accepted == 1
    gate.stop()


def test_list_file_ranges(gate):
    """A range line in a list file (SPEC §16) covers exactly its addresses:
    127.0.0.21-127.0.0.26 is .21/32 .22/31 .24/31 .26/32, so .20 and .27
    stay with the default, every address inside is denied, and the reject
    names the deciding prefix and the range's line. IPv6 ranges load too."""
    gate.write("""
        [rules]
        default = allow
        deny_file = ranges.txt

        [listener:web]
        bind = 127.0.0.1:$web
        backend = echo
        rules = default
        """, files={
        "ranges.txt": """
            # ranges, both families
            127.0.0.21-127.0.0.26
            2001:db8::-2001:db8::1:ff
            """,
    })
    gate.start()
    web = gate.port("web")
    line = gate.line_of("127.0.0.21-127.0.0.26", "ranges.txt")
    keep = [admitted(web, "127.0.0.20"), admitted(web, "127.0.0.27")]
    prefixes = {21: "127.0.0.21/32", 22: "127.0.0.22/31", 23: "127.0.0.22/31",
                24: "127.0.0.24/31", 25: "127.0.0.24/31", 26: "127.0.0.26/32"}
    for last, prefix in prefixes.items():
        src = "127.0.0.%d" % last
        lport = expect_rejected(web, src)
        hit = reject_hit(gate, src, lport)
        assert hit["reason"] == "rule", hit.line
        assert re.fullmatch(host_rx(prefix.split("/")[0], int(prefix.split("/")[1])),
                            hit["rule"]), hit.line
        assert hit["source"].endswith("ranges.txt:%d" % line), hit.line
    s = gate.stats()
    assert s["rejected"] == len(prefixes) and s["rejected_rule"] == len(prefixes), s
    for k in keep:
        k.close()
