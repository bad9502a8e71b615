"""SIGHUP reload (SPEC §5): verdicts and backends swap atomically, open
connections survive, a broken reload changes nothing, listener changes are
refused."""

import re

from cgtest import (connect, echo_check, echo_handler, event_re, expect_rejected, is_served)


def reject_hit(gate, src, lport, since=0):
    return gate.wait_log(event_re("reject") + r".*\bpeer=%s:%d(?=\s|$)" % (re.escape(src), lport),
                         since=since)


RULES_V1 = """
    [gateway]
    workers = 2

    [rules]
    default = deny
    allow_file = allow.txt
    %s

    [listener:web]
    bind = 127.0.0.1:$web
    backend = echo
    rules = default
    """


def test_reload_flips_verdict_open_connection_survives(gate):
    gate.write(RULES_V1 % "", files={"allow.txt": "127.0.0.2\n127.0.0.3\n"})
    gate.start()
    port = gate.port("web")
    old = connect(port, "127.0.0.3")
    echo_check(old, b"before reload\n")

    # 1. an INI change: deny the caller that was allowed
    gate.write(RULES_V1 % "deny = 127.0.0.3")
    hit = gate.reload("ok")
    assert hit["generation"] == "2", hit.line
    assert hit["level"] == "info", hit.line
    echo_check(old, b"after reload the open connection still works\n")
    m = gate.mark()
    lport = expect_rejected(port, "127.0.0.3")
    assert reject_hit(gate, "127.0.0.3", lport, since=m)["reason"] == "rule"
    c = connect(port, "127.0.0.2")
    echo_check(c)
    c.close()
    s = gate.stats()
    assert (s["generation"], s["reloads"]) == (2, 1), s

    # 2. only a rule file changes: it is re-read too
    gate.write(RULES_V1 % "deny = 127.0.0.3", files={"allow.txt": "127.0.0.4\n"})
    assert gate.reload("ok")["generation"] == "3"
    m = gate.mark()
    lport = expect_rejected(port, "127.0.0.2")
    assert reject_hit(gate, "127.0.0.2", lport, since=m)["reason"] == "default"
    c = connect(port, "127.0.0.4")
    echo_check(c)
    c.close()

    echo_check(old, b"and after the second one\n")
    old.close()
    s = gate.wait_stats(lambda s: s["active"] == 0, what="active=0")
    assert (s["generation"], s["reloads"]) == (3, 2), s
    gate.stop()


def test_reload_swaps_backends(gate, server):
    a, b = server(echo_handler), server(echo_handler)
    cfg = """
        [gateway]
        workers = 2

        [rules]
        allow = 127.0.0.0/8

        [listener:web]
        bind = 127.0.0.1:$web
        backend = %s
        rules = default
        """
    gate.write(cfg % a.addr)
    gate.start()
    old = connect(gate.port("web"), "127.0.0.2")
    echo_check(old)
    gate.write(cfg % b.addr)
    gate.reload("ok")
    new = connect(gate.port("web"), "127.0.0.2")
    echo_check(new)
    echo_check(old, b"old connection still on backend a\n")
    assert (a.accepted, b.accepted) == (1, 1)
    old.close()
    new.close()
    gate.stop()


def test_broken_reload_keeps_old_rules(gate):
    cfg = """
        [gateway]
        workers = 2

        [rules]
        default = deny
        allow = 127.0.0.2
        deny_file = deny.txt
        %s

        [listener:web]
        bind = 127.0.0.1:$web
        backend = echo
        rules = default
        """
    gate.write(cfg % "", files={"deny.txt": "127.0.0.3\n"})
    gate.start()
    port = gate.port("web")

    def verdicts_unchanged():
        c = connect(port, "127.0.0.2")
        echo_check(c)
        c.close()
        m = gate.mark()
        lport = expect_rejected(port, "127.0.0.3")
        hit = reject_hit(gate, "127.0.0.3", lport, since=m)
        # old rules: denied by deny.txt:1, not by the default
        assert hit["reason"] == "rule" and re.search(r"deny\.txt:1$", hit["source"]), hit.line

    verdicts_unchanged()

    # A bad CIDR on line 3 of the list file; line 2 would deny 127.0.0.2
    # if anything of the new set leaked in.
    gate.write(cfg % "", files={"deny.txt": "# new list\n127.0.0.2\n127.0.0.300\n"})
    hit = gate.reload("failed")
    assert hit["level"] == "error", hit.line
    assert re.search(r"deny\.txt:3: \S", hit["error"]), hit.line
    verdicts_unchanged()

    # A bad entry in the INI itself
    gate.write(cfg % "allow = 10.1.2.3/8", files={"deny.txt": "127.0.0.3\n"})
    hit = gate.reload("failed")
    line = gate.line_of("allow = 10.1.2.3/8")
    assert re.search(r"condgate\.ini:%d: " % line, hit["error"]), hit.line
    assert "10.0.0.0/8" in hit["error"], hit.line
    verdicts_unchanged()
    s = gate.stats()
    assert s["generation"] == 1, s

    # Fixed: the next reload goes through
    gate.write(cfg % "allow = 127.0.0.4")
    assert gate.reload("ok")["generation"] == "2"
    c = connect(port, "127.0.0.4")
    echo_check(c)
    c.close()
    verdicts_unchanged()
    gate.stop()


def test_reload_refuses_listener_changes(gate, free_port):
    cfg = """
        [gateway]
        workers = 2

        [rules]
        allow = 127.0.0.0/8

        [listener:web]
        bind = 127.0.0.1:%s
        backend = echo
        rules = default

        %s
        """
    other = """
        [listener:other]
        bind = 127.0.0.1:$other
        backend = echo
        rules = default
        """
    gate.write(cfg % ("$web", other))
    gate.start()
    web, oth = gate.port("web"), gate.port("other")
    new_port = free_port()

    changes = {
        "bind changed": cfg % (str(new_port), other),
        "listener added": cfg % ("$web", other + other.replace("other", "third")),
        "listener removed": cfg % ("$web", ""),
    }
    for what, text in changes.items():
        gate.write(text)
        hit = gate.reload("failed")
        assert "restart" in hit.line.lower(), "%s: %s" % (what, hit.line)
        assert is_served(web), what
        assert is_served(oth), what
        assert not is_served(new_port), "%s: the new bind is live" % what
    s = gate.stats()
    assert s["generation"] == 1, s
    assert set(s["listeners"]) == {"web", "other"}
    gate.stop()
