"""Fixtures for the condgate end-to-end tests.

The binary comes from $CONDGATE_BIN (ctest sets it). When it is unset or
missing, every test FAILS with a message saying so: a suite that silently
skips is a suite that silently passes.
"""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cgtest  # noqa: E402


@pytest.fixture(scope="session")
def condgate_bin():
    path = os.environ.get("CONDGATE_BIN")
    if not path:
        pytest.fail("CONDGATE_BIN is not set: point it at the condgate binary, e.g. "
                    "CONDGATE_BIN=build/default/condgate (ctest -L e2e sets it)", pytrace=False)
    if not os.path.isfile(path) or not os.access(path, os.X_OK):
        pytest.fail("CONDGATE_BIN=%s is not an executable file" % path, pytrace=False)
    return os.path.abspath(path)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On failure, attach the full log of every gate the test started."""
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        for g in getattr(item, "_condgate_gates", []):
            rep.sections.append(("condgate log (%s)" % g.name, g.log_text()))


@pytest.fixture
def make_gate(condgate_bin, tmp_path, request):
    """Factory: make_gate(name) -> cgtest.Gate working in tmp_path/name.
    Teardown kills leftovers and fails on sanitizer reports in the log."""
    gates = []
    request.node._condgate_gates = gates

    def factory(name="gate"):
        d = tmp_path / name
        d.mkdir()
        g = cgtest.Gate(condgate_bin, d, name)
        gates.append(g)
        return g

    yield factory
    problems = []
    for g in gates:
        g.kill()
        found = g.sanitizer_report()
        if found:
            problems.append("%s: %s\n%s" % (g.name, ", ".join(found), g.log_text()))
    if problems:
        pytest.fail("sanitizer reports in the gate's log:\n" + "\n".join(problems),
                    pytrace=False)


@pytest.fixture
def gate(make_gate):
    return make_gate("gate")


@pytest.fixture
def free_port():
    return cgtest.free_port


@pytest.fixture
def server():
    """Factory: server(handler, host='127.0.0.1') -> cgtest.Server."""
    made = []

    def factory(handler, **kw):
        s = cgtest.Server(handler, **kw)
        made.append(s)
        return s

    yield factory
    for s in made:
        s.close()


@pytest.fixture
def echo_backend(server):
    return server(cgtest.echo_handler)


@pytest.fixture
def closed_port():
    """Factory: closed_port() -> cgtest.ClosedPort (connects are refused)."""
    made = []

    def factory():
        c = cgtest.ClosedPort()
        made.append(c)
        return c

    yield factory
    for c in made:
        c.close()


@pytest.fixture
def blackhole():
    b = cgtest.Blackhole()
    yield b
    b.close()


@pytest.fixture
def ipv6():
    if not cgtest.HAVE_IPV6:
        pytest.skip("this machine has no IPv6 loopback (::1)")


@pytest.fixture(scope="session")
def cgload_bin(condgate_bin):
    """The cgload load generator: $CGLOAD_BIN (ctest sets it), else
    tests/cgload in condgate's build tree. Missing: the test FAILS."""
    path = cgtest.find_cgload(condgate_bin)
    if not path or not os.path.isfile(path) or not os.access(path, os.X_OK):
        pytest.fail("cgload not found (CGLOAD_BIN=%r, nothing at tests/cgload beside %s): "
                    "build it (cmake --build --preset default) or set CGLOAD_BIN"
                    % (os.environ.get("CGLOAD_BIN"), condgate_bin), pytrace=False)
    return path


@pytest.fixture
def cgload(cgload_bin):
    """Factory: cgload(mode, target, *args) -> a started cgtest.CgLoad.
    Teardown kills (by PID) whatever is still running."""
    made = []

    def factory(mode, target, *args):
        c = cgtest.CgLoad(cgload_bin, mode, target, *args)
        made.append(c)
        return c

    yield factory
    for c in made:
        c.kill()
