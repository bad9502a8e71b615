"""The man pages (src/man/condgate.8, src/man/condgate.ini.5).

They render without a warning from groff or man, and they document what
the binary has and nothing it lacks: the options `condgate -h` prints, the
sections and keys the INI parser accepts (asked of the binary itself, whose
"unknown key" error lists the keys of a section), the admin port's routes
(src/admin.c's table), and the EXAMPLE of condgate.ini(5) passes `-t`.

No groff or man is a failure, not a skip: install groff-base and man-db.
"""

import os
import re
import shutil
import subprocess

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
MAN_DIR = os.path.join(HERE, "..", "..", "src", "man")
GATE_PAGE = os.path.join(MAN_DIR, "condgate.8")
INI_PAGE = os.path.join(MAN_DIR, "condgate.ini.5")
ADMIN_SRC = os.path.join(HERE, "..", "..", "src", "admin.c")

# A key no section has and none is suggested for: its "unknown key" error
# lists the section's keys.
PROBE_KEY = "zqxv"
UNKNOWN_KEY_RE = re.compile(r":2: unknown key '%s' in \[[^]]*\]; expected (.*)$" % PROBE_KEY,
                            re.M)
SECTION_RE = re.compile(r"\[([a-z]+)(?::NAME)?\]")
OPTION_RE = re.compile(r"(?<![\w-])(--?[A-Za-z][\w-]*)")
# Sections that exist only in builds with an optional part (condgate -V).
SECTION_FEATURE = {"crowdsec": "crowdsec"}
# The EXAMPLE's path keys: each gets a file of this text in the test's directory.
EXAMPLE_FILES = {"include": "{}\n", "allow_file": "", "deny_file": "", "geoip_csv": "",
                 "state_file": None}

# ---------------------------------------------------------------------------
# Reading roff


def plain(roff):
    """A roff line as text: the macro name, quotes and font changes dropped,
    the escapes these pages use turned into their characters."""
    s = re.sub(r"^\.[A-Za-z]+\s*", "", roff).replace('"', "")
    s = re.sub(r"\\f(\[[^]]*\]|\(..|.)", "", s)
    for esc, ch in ((r"\-", "-"), (r"\(dq", '"'), (r"\(aq", "'"), (r"\&", ""), (r"\e", "\\")):
        s = s.replace(esc, ch)
    return s


def read_page(path):
    with open(path, encoding="utf-8") as f:
        return f.read().splitlines()


def headings(lines, macro):
    """{title: [lines under it]} for each heading line `macro` (.SH, .SS)."""
    out, cur = {}, None
    for line in lines:
        if line.startswith(macro + " "):
            cur = plain(line)
            out[cur] = []
        elif cur is not None:
            out[cur].append(line)
    return out


def tags(lines):
    """The tag (the line after .TP) of every tagged paragraph, as text."""
    return [plain(lines[i + 1]) for i in range(len(lines) - 1) if lines[i].startswith(".TP")]


def gate_section(title):
    return headings(read_page(GATE_PAGE), ".SH")[title]


def ini_sections():
    """{section base name: [lines]} from the .SS headings under SECTIONS;
    "[rules] and [rules:NAME]" is "rules"."""
    sub = headings(headings(read_page(INI_PAGE), ".SH")["SECTIONS"], ".SS")
    out = {}
    for title, lines in sub.items():
        for base in set(SECTION_RE.findall(title)):
            out[base] = lines
    return out


def page_keys():
    """{(section, key)} documented in condgate.ini(5)."""
    return {(sec, re.match(r"[a-z_]+", tag).group(0))
            for sec, lines in ini_sections().items() for tag in tags(lines)}


# ---------------------------------------------------------------------------
# Asking the binary


def run_ini(gate, name, text):
    """condgate -t on an INI file of `text`: (exit status, stderr)."""
    path = os.path.join(str(gate.dir), name)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    rc, out, err = gate.run(["-t", "-c", path])
    return rc, err


def features(gate):
    rc, out, err = gate.run(["-V"])
    assert rc == 0, err
    return out.splitlines()[1].split(":", 1)[1].split()


def header(section):
    return "[listener:t]" if section == "listener" else "[%s]" % section


def parser_sections(gate):
    """The section names the parser accepts, from its "unknown section" error."""
    rc, err = run_ini(gate, "sections.ini", "[%s]\n" % PROBE_KEY)
    m = re.search(r"unknown section \[%s\]; expected (.*)$" % PROBE_KEY, err, re.M)
    assert m, "no 'unknown section ... expected' error to read the sections from:\n" + err
    return set(SECTION_RE.findall(m.group(1)))


def parser_keys(gate, section):
    """The keys the parser accepts in `section`, from its "unknown key" error."""
    rc, err = run_ini(gate, "keys.ini", "%s\n%s = 1\n" % (header(section), PROBE_KEY))
    m = UNKNOWN_KEY_RE.search(err)
    assert m, "no 'unknown key ... expected' error for %s:\n%s" % (header(section), err)
    # A list cut short by the parser's message buffer would lack its " or ".
    assert " or " in m.group(1) or "," not in m.group(1), "key list cut short: " + m.group(1)
    keys = re.split(r", | or ", m.group(1))
    assert all(re.fullmatch(r"[a-z_]+", k) for k in keys), "unreadable key list: " + m.group(1)
    return set(keys)


def built_sections(gate):
    """The parser's sections this build can open (not those of a missing feature)."""
    have = features(gate)
    return {s for s in parser_sections(gate)
            if SECTION_FEATURE.get(s) is None or SECTION_FEATURE[s] in have}


def help_options(gate):
    rc, out, err = gate.run(["-h"])
    assert rc == 0, err
    opts = set()
    for line in out.splitlines():
        m = re.match(r"\s+(-\w)(?:, (--[\w-]+))?", line)
        if m:
            opts |= {o for o in m.groups() if o}
    assert {"-h", "--help"} <= opts, "could not read the options of -h:\n" + out
    return opts


def admin_routes():
    """{(method, path)} of src/admin.c's route table."""
    with open(ADMIN_SRC, encoding="utf-8") as f:
        routes = set(re.findall(r'\{"(/[^"]*)", "(GET|POST|PUT|DELETE)"', f.read()))
    assert len(routes) >= 8, "could not read the route table of src/admin.c"
    return {(m, p) for p, m in routes}


# ---------------------------------------------------------------------------
# Rendering


def need_tool(name, package):
    path = shutil.which(name)
    if not path:
        pytest.fail("%s not found: install %s (apt-get install %s)" % (name, package, package),
                    pytrace=False)
    return path


@pytest.mark.parametrize("page,title", [(GATE_PAGE, "CONDGATE(8)"),
                                        (INI_PAGE, "CONDGATE.INI(5)")])
def test_groff_renders_without_warnings(page, title):
    groff = need_tool("groff", "groff-base")
    p = subprocess.run([groff, "-man", "-ww", "-Tutf8", page], capture_output=True, text=True)
    assert p.returncode == 0 and p.stderr == "", p.stderr
    assert title in p.stdout


@pytest.mark.parametrize("page", [GATE_PAGE, INI_PAGE])
def test_man_renders_without_warnings(page):
    man = need_tool("man", "man-db")
    env = dict(os.environ, MANWIDTH="80", LC_ALL="C.UTF-8")
    p = subprocess.run([man, "--warnings", "-l", page], capture_output=True, text=True, env=env)
    assert p.returncode == 0 and p.stderr == "", p.stderr
    text = re.sub(".\x08", "", p.stdout)  # bold and underline by overstriking
    assert "NAME" in text and "SEE ALSO" in text


def test_gate_page_has_its_sections():
    want = {"NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "SIGNALS", "EXIT STATUS",
            "ENVIRONMENT", "FILES", "ADMIN PORT", "LOGS", "SEE ALSO"}
    assert want <= set(headings(read_page(GATE_PAGE), ".SH"))


# ---------------------------------------------------------------------------
# condgate(8) against the binary


def page_options():
    return {o for tag in tags(gate_section("OPTIONS")) for o in OPTION_RE.findall(tag)}


def test_every_option_of_help_is_documented(gate):
    missing = help_options(gate) - page_options()
    assert not missing, "options of condgate -h missing from condgate.8 OPTIONS: %s" % missing


def test_every_documented_option_exists(gate):
    extra = page_options() - help_options(gate)
    assert not extra, "condgate.8 OPTIONS has options condgate -h lacks: %s" % extra


def test_admin_routes_are_documented():
    documented = set()
    for tag in tags(gate_section("ADMIN PORT")):
        m = re.match(r"(GET|POST|PUT|DELETE) (/[\w/]*)", tag)
        if m:
            documented.add(m.groups())
    missing, extra = admin_routes() - documented, documented - admin_routes()
    assert not missing, "routes of src/admin.c missing from ADMIN PORT: %s" % missing
    assert not extra, "ADMIN PORT documents routes src/admin.c lacks: %s" % extra


# ---------------------------------------------------------------------------
# condgate.ini(5) against the parser


def test_sections_match_the_parser(gate):
    assert parser_sections(gate) == set(ini_sections())


def test_every_key_of_the_parser_is_documented(gate):
    documented = page_keys()
    missing = sorted((s, k) for s in built_sections(gate) for k in parser_keys(gate, s)
                     if (s, k) not in documented)
    assert not missing, "keys the parser accepts, missing from condgate.ini.5: %s" % missing


def key_is_known(gate, section, key):
    """Whether `condgate -t` takes `key` in `section` for a key (its value may
    still be refused). The header is one the parser opens: built_sections."""
    rc, err = run_ini(gate, "key.ini", "%s\n%s = x\n" % (header(section), key))
    return "unknown key" not in err


def test_every_documented_key_is_accepted(gate):
    sections = built_sections(gate)
    unknown = sorted((s, k) for s, k in page_keys()
                     if s in sections and not key_is_known(gate, s, k))
    assert not unknown, "condgate.ini.5 documents keys the parser calls unknown: %s" % unknown


# ---------------------------------------------------------------------------
# The EXAMPLE of condgate.ini(5)


def example_text(gate):
    """The EXAMPLE's INI text, its path keys pointed at files made here."""
    lines = headings(read_page(INI_PAGE), ".SH")["EXAMPLE"]
    body = lines[lines.index(".EX") + 1:lines.index(".EE")]
    out, section = [], None
    for n, line in enumerate(plain(l) for l in body):
        m = re.match(r"\[([a-z]+)", line)
        section = m.group(1) if m else section
        key = re.match(r"([a-z_]+) = ", line)
        if key and key.group(1) in EXAMPLE_FILES:
            line = "%s = %s" % (key.group(1), example_file(gate, n, key.group(1)))
        out.append(line)
    return "\n".join(out) + "\n"


def example_file(gate, n, key):
    path = os.path.join(str(gate.dir), "example-%d" % n)
    if EXAMPLE_FILES[key] is not None:
        with open(path, "w", encoding="utf-8") as f:
            f.write(EXAMPLE_FILES[key])
    return path


def test_example_passes_the_check(gate):
    text = example_text(gate)
    rc, err = run_ini(gate, "example.ini", text)
    assert rc == 0, "the EXAMPLE of condgate.ini.5 fails condgate -t:\n%s\n%s" % (err, text)
