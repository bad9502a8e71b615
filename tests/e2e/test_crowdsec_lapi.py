"""Self-checks of the CrowdSec Local API fixture (crowdsec_lapi.py), no
condgate involved: what the real LAPI (Debian's crowdsec 1.4.x) answers a
bouncer, so the tests of condgate's client rest on checked ground.

One decision of a startup answer, as 1.4.6 sends it (the `duration` counts
down; `scenario` is cscli's --reason, or "manual 'ban' from 'MACHINE'"
without one; `origin` is "cscli", "cscli-import" for imports, "crowdsec" for
the agent's own, "CAPI"/"lists" for the Central API's):

    {"deleted": null,
     "new": [{"duration": "4m58.739181693s", "id": 1, "origin": "cscli",
              "scenario": "condgate-test", "scope": "Ip", "type": "ban",
              "value": "127.0.0.9"},
             {"duration": "4m59.739179068s", "id": 2, "origin": "cscli",
              "scenario": "condgate-test", "scope": "Range", "type": "ban",
              "value": "127.0.1.0/24"}]}

A deleted one in a later delta: the same object with a negative duration,
e.g. "duration": "-24.032756ms".
"""

import re
import socket
import time

from crowdsec_lapi import bulk_ips, lapi, make_lapi  # noqa: F401  (fixtures)

DECISION_KEYS = {"duration", "id", "origin", "scenario", "scope", "type", "value"}
GO_DURATION = re.compile(r"-?(\d+h)?(\d+m)?(\d+(\.\d+)?(s|ms|µs|us|ns))?$")


def by_value(decisions):
    return {d["value"]: d for d in decisions or []}


def test_startup_stream_has_ip_and_range(lapi):
    key = lapi.add_bouncer("startup-ip-range")
    status, answer = lapi.stream(key, startup=True)
    assert status == 200
    assert not by_value(answer["new"]).keys() & {"127.0.0.9", "127.0.1.0/24"}
    lapi.add_decision(ip="127.0.0.9", duration="5m")
    lapi.add_decision(range="127.0.1.0/24", duration="5m")

    fresh = lapi.add_bouncer("startup-ip-range-2")
    status, answer = lapi.stream(fresh, startup=True)
    assert status == 200
    assert set(answer) == {"new", "deleted"}
    new = by_value(answer["new"])
    ip, rng = new["127.0.0.9"], new["127.0.1.0/24"]
    for d in (ip, rng):
        assert set(d) == DECISION_KEYS, d
        assert d["type"] == "ban" and d["origin"] == "cscli"
        assert d["scenario"] == "condgate-test"
        assert GO_DURATION.match(d["duration"]) and not d["duration"].startswith("-"), d
        assert d["duration"].startswith("4m5"), d
    assert ip["scope"] == "Ip" and rng["scope"] == "Range"

    # startup=true is not a one-shot: the same key gets the whole set again.
    status, again = lapi.stream(fresh, startup=True)
    assert status == 200 and by_value(again["new"]).keys() == new.keys()
    # The delta after a startup answer: nothing new.
    status, delta = lapi.stream(fresh)
    assert status == 200 and delta == {"deleted": None, "new": None}, delta


def test_delta_new_then_deleted(lapi):
    key = lapi.add_bouncer("delta")
    assert lapi.stream(key, startup=True)[0] == 200
    lapi.add_decision(ip="127.0.0.10", duration="5m", reason="delta-check")
    status, delta = lapi.stream(key)
    assert status == 200
    assert [d["value"] for d in delta["new"]] == ["127.0.0.10"], delta
    assert delta["new"][0]["scenario"] == "delta-check"
    added_id = delta["new"][0]["id"]

    assert lapi.delete_decision(ip="127.0.0.10") == 1
    status, delta = lapi.stream(key)
    assert status == 200
    assert delta["new"] is None, delta
    gone = by_value(delta["deleted"])
    assert gone["127.0.0.10"]["id"] == added_id
    assert gone["127.0.0.10"]["duration"].startswith("-"), gone
    assert GO_DURATION.match(gone["127.0.0.10"]["duration"]), gone
    # And it is no longer in a startup answer.
    status, full = lapi.stream(key, startup=True)
    assert "127.0.0.10" not in by_value(full["new"])


def test_delete_by_id_and_range(lapi):
    key = lapi.add_bouncer("delete-id")
    lapi.add_decision(range="127.0.2.0/24", duration="5m")
    lapi.add_decision(ip="127.0.0.11", duration="5m")
    ids = {d["value"]: d["id"] for d in lapi.decisions()}
    assert lapi.stream(key, startup=True)[0] == 200
    assert lapi.delete_decision(id=ids["127.0.0.11"]) == 1
    assert lapi.delete_decision(range="127.0.2.0/24") == 1
    _, delta = lapi.stream(key)
    assert {"127.0.0.11", "127.0.2.0/24"} <= by_value(delta["deleted"]).keys(), delta


def test_expiry_comes_as_deleted(lapi):
    key = lapi.add_bouncer("expiry")
    assert lapi.stream(key, startup=True)[0] == 200
    lapi.add_decision(ip="127.0.0.12", duration="2s")
    # Poll the deltas (no fixed sleep): the decision comes in `new` while it
    # lasts (unless a loaded machine, CI under ASan, took the 2 s before the
    # first poll), then in `deleted` once it has expired.
    seen_new = False
    deadline = time.monotonic() + 20
    while True:
        _, delta = lapi.stream(key)
        seen_new = seen_new or "127.0.0.12" in by_value(delta["new"])
        if "127.0.0.12" in by_value(delta["deleted"]):
            break
        assert time.monotonic() < deadline, "an expired decision never came as deleted"
        time.sleep(0.1)
    print("seen in new before it expired:", seen_new)
    _, full = lapi.stream(key, startup=True)
    assert "127.0.0.12" not in by_value(full["new"])


def test_other_types_and_scopes(lapi):
    """Other types reach every bouncer (it must ignore them itself); other
    scopes only when asked for with ?scopes= (the default is ip,range)."""
    key = lapi.add_bouncer("types")
    lapi.add_decision(ip="127.0.0.13", type="captcha")
    lapi.add_decision(scope="Country", value="FR")
    lapi.add_decision(ip="::1:13")
    lapi.add_decision(scope="range", value="::1:0/112")
    _, full = lapi.stream(key, startup=True)
    new = by_value(full["new"])
    assert new["127.0.0.13"]["type"] == "captcha"
    assert new["::1:13"]["scope"] == "Ip"
    assert new["::1:0/112"]["scope"] == "Range"    # cscli's "range" comes as "Range"
    assert "FR" not in new
    _, full = lapi.stream(key, startup=True, scopes="ip,range,country")
    new = by_value(full["new"])
    assert new["FR"]["scope"] == "Country" and new["FR"]["type"] == "ban"


def test_wrong_key_is_403(lapi):
    status, body = lapi.stream("0123456789abcdef0123456789abcdef", startup=True)
    assert status == 403
    assert body == {"message": "access forbidden"}
    key = lapi.add_bouncer("revoked")
    lapi.delete_bouncer("revoked")
    assert lapi.stream(key)[0] == 403


def test_restart_keeps_decisions_and_bouncer_state(make_lapi):
    api = make_lapi()
    key = api.add_bouncer("restart")
    api.add_decision(ip="127.0.0.14", duration="10m")
    api.add_decision(range="127.0.3.0/24", duration="10m")
    _, full = api.stream(key, startup=True)
    assert {"127.0.0.14", "127.0.3.0/24"} <= by_value(full["new"]).keys()
    port = api.port

    api.stop()
    assert not api.running()
    api.restart()
    assert api.port == port
    # The key still works and the bouncer's pull state survived: nothing new.
    status, delta = api.stream(key)
    assert status == 200 and delta == {"deleted": None, "new": None}, delta
    _, full = api.stream(key, startup=True)
    assert {"127.0.0.14", "127.0.3.0/24"} <= by_value(full["new"]).keys()
    # Changes made while it was down (cscli writes through the API, so after
    # the restart) show up in the next delta.
    api.delete_decision(ip="127.0.0.14")
    _, delta = api.stream(key)
    assert "127.0.0.14" in by_value(delta["deleted"])


def test_bulk_load(make_lapi):
    """A small bulk load (the 100,000 figure is tests/bench/crowdsec.py's)."""
    api = make_lapi()
    seconds = api.bulk_decisions(2000)
    assert seconds > 0
    key = api.add_bouncer("bulk")
    _, full = api.stream(key, startup=True)
    new = by_value(full["new"])
    assert set(bulk_ips(2000)) <= new.keys()
    d = new["10.0.7.207"]
    assert d["origin"] == "cscli-import" and d["scope"] == "Ip" and d["type"] == "ban"
    assert d["scenario"] == "condgate-bulk" and d["duration"].startswith("3h59m"), d


def test_delta_needs_a_startup_first(lapi):
    """A key that never asked startup=true gets empty deltas, not the set."""
    lapi.add_decision(ip="127.0.0.15", duration="5m")
    key = lapi.add_bouncer("no-startup")
    assert lapi.stream(key) == (200, {"deleted": None, "new": None})
    assert "127.0.0.15" in by_value(lapi.stream(key, startup=True)[1]["new"])


def test_one_decision_per_value(lapi):
    """Two decisions on one address: the stream holds one (the longest);
    deleting it while the other is in force sends nothing in the delta."""
    lapi.add_decision(ip="127.0.0.16", duration="5m")
    lapi.add_decision(ip="127.0.0.16", duration="10m")
    key = lapi.add_bouncer("one-per-value")
    _, full = lapi.stream(key, startup=True)
    mine = [d for d in full["new"] if d["value"] == "127.0.0.16"]
    assert len(mine) == 1 and mine[0]["duration"].startswith("9m5"), mine
    assert lapi.delete_decision(id=mine[0]["id"]) == 1
    _, delta = lapi.stream(key)
    assert "127.0.0.16" not in by_value(delta["deleted"]), delta
    _, full = lapi.stream(key, startup=True)
    assert by_value(full["new"])["127.0.0.16"]["duration"].startswith("4m5"), full


def test_deleted_then_added_again(lapi):
    """A deleted decision comes in `deleted` (for a while in every delta),
    but never once the same value has a decision in force again."""
    key = lapi.add_bouncer("readd")
    lapi.add_decision(ip="127.0.0.17", duration="5m")
    assert lapi.stream(key, startup=True)[0] == 200
    lapi.delete_decision(ip="127.0.0.17")
    _, delta = lapi.stream(key)
    assert "127.0.0.17" in by_value(delta["deleted"]), delta
    lapi.add_decision(ip="127.0.0.17", duration="5m")
    _, delta = lapi.stream(key)
    assert "127.0.0.17" in by_value(delta["new"]), delta
    assert "127.0.0.17" not in by_value(delta["deleted"]), delta
    _, delta = lapi.stream(key)
    assert "127.0.0.17" not in by_value(delta["deleted"]), delta


def test_expired_while_down_comes_after_restart(make_lapi):
    """The bouncer's pull time is kept in the LAPI's database: a decision
    that expired while the LAPI was down is in the first delta after it."""
    api = make_lapi()
    key = api.add_bouncer("down")
    api.add_decision(ip="127.0.0.18", duration="5s")
    api.add_decision(ip="127.0.0.19", duration="10m")
    _, full = api.stream(key, startup=True)
    expires = time.monotonic() + 5.5
    assert {"127.0.0.18", "127.0.0.19"} <= by_value(full["new"]).keys()
    api.stop()
    while time.monotonic() < expires:  # the decision's own lifetime: a wait, not a sync
        time.sleep(0.1)
    api.start()
    _, delta = api.stream(key)
    assert "127.0.0.18" in by_value(delta["deleted"]), delta
    assert "127.0.0.19" not in by_value(delta["deleted"]), delta


def test_raw_decisions_as_an_agent_sends_them(lapi):
    """What other agents may store and how the stream hands it on: a CIDR in
    scope Ip is streamed as scope Ip; a lowercase scope is stored but never
    streamed (the stream's scope filter is exact: Ip, Range); an expired
    decision is in a startup answer's `deleted`; scenario text is any UTF-8."""
    lapi.raw_decisions([
        {"value": "127.0.4.0/24"},                       # scope Ip, a CIDR
        {"value": "127.0.0.21", "scope": "ip"},          # lowercase scope
        {"value": "127.0.0.22", "duration": "-5m"},      # already expired
        {"value": "127.0.0.23", "scenario": 'caf\u00e9 "q" \\ <x>'},
        {"value": "127.0.5.0/24", "scope": "Range", "type": "captcha"},
    ])
    key = lapi.add_bouncer("raw")
    status, full = lapi.stream(key, startup=True)
    assert status == 200
    new, gone = by_value(full["new"]), by_value(full["deleted"])
    assert new["127.0.4.0/24"]["scope"] == "Ip"
    assert "127.0.0.21" not in new and "127.0.0.21" not in gone
    assert "127.0.0.22" not in new and gone["127.0.0.22"]["duration"].startswith("-5m"), gone
    assert new["127.0.0.23"]["scenario"] == 'caf\u00e9 "q" \\ <x>'
    assert new["127.0.5.0/24"]["type"] == "captcha"
    # The LAPI itself refuses a value that is no address in scope Ip.
    status, _ = lapi.raw_decisions([{"value": "not-an-ip"}], expect=None)
    assert status == 500


def test_values_passed_on_as_given(lapi):
    """cscli and the LAPI do not canonicalise: host bits, case, mapped
    addresses reach the bouncer as typed."""
    lapi.add_decision(range="127.0.6.5/24")
    lapi.add_decision(range="2001:DB8:0:1::1/64")
    lapi.add_decision(ip="::ffff:127.0.0.24")
    lapi.add_decision(ip="10.6.6.6", duration="168h")
    key = lapi.add_bouncer("as-given")
    new = by_value(lapi.stream(key, startup=True)[1]["new"])
    assert new["127.0.6.5/24"]["scope"] == "Range"
    assert new["2001:DB8:0:1::1/64"]["scope"] == "Range"
    assert new["::ffff:127.0.0.24"]["scope"] == "Ip"
    assert re.match(r"167h59m\d", new["10.6.6.6"]["duration"]), new["10.6.6.6"]


def test_a_lost_delta_is_not_sent_again(lapi):
    """The LAPI moves the key's pull time when it answers, whether or not
    the bouncer got the answer: after any failed poll (timeout, cut
    connection, an answer it could not parse or apply) only a startup
    answer brings the missed decisions back."""
    key = lapi.add_bouncer("lost-delta")
    assert lapi.stream(key, startup=True)[0] == 200
    lapi.add_decision(ip="127.0.0.26", duration="5m")
    with socket.create_connection(("127.0.0.1", lapi.port), timeout=10) as s:
        s.sendall(("GET /v1/decisions/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                   "X-Api-Key: %s\r\nConnection: close\r\n\r\n" % key).encode())
        assert s.recv(12) == b"HTTP/1.1 200"   # answered; the rest is dropped
    _, delta = lapi.stream(key)
    assert "127.0.0.26" not in by_value(delta["new"]), delta
    _, full = lapi.stream(key, startup=True)
    assert "127.0.0.26" in by_value(full["new"])
