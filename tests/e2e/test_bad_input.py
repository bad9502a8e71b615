"""Bad input catalogue (issue 7, part 5): malformed INI files, JSON rule
files, list files and admin requests, each a test of its own.

Configuration cases (kinds "ini", "json", "list") are checked twice:

(a) at start: `condgate -c condgate.ini` in a directory holding the bad
    file exits 2 with exactly one line on stderr, `FILE:LINE: message`
    (the file and line asserted exactly, a key part of the message by
    regex), valid UTF-8 without control characters, nothing on stdout, and
    it never gets as far as logging a listener;
(b) at reload: one gate per kind runs the good configuration below for the
    whole module. Each case writes its bad file over the good one, then
    POST /reload must answer 422 with the same FILE:LINE error (the path
    as the gate was started with), the reload log line must carry it, and
    SIGHUP must fail the same way. Afterwards nothing has changed: the
    generation is still 1, no reload succeeded, reload_failures counts
    exactly the failed attempts, the rule entry counts are the same, the
    callers the good rules admit (from the INI, the JSON file and the list
    file) are still served, the ones they deny are still reset, the
    relayed connection opened at the start still echoes and the process
    is alive. Then the good files are put back for the next case.

Admin cases send raw bytes from 127.0.0.1 to a gate with a token and check
the answer's status (what SPEC §6 says, or what libmicrohttpd sends for
broken HTTP) or a clean close without a byte, then that the admin port
still answers, the listener still serves and rejects, the generation and
reload counters are unchanged and `admin.unauthorized` moved by exactly the
401s sent.

Where SPEC is silent, the cases follow the code's documented choices: a
whole-file problem (unreadable, too large, not a regular file) is reported
at line 0; an empty INI file is a valid configuration without listeners
(so only its reload is refused: the listener would vanish); a UTF-8 BOM and
CRLF line ends are accepted, so they are not in the catalogue (the last
test checks that they stay accepted), but a BOM in the middle of a file,
UTF-16 and bare CR line ends are.
"""

import errno
import json
import os
import random
import re
import select
import shutil
import socket
import subprocess
import tempfile
import time

import pytest

import cgtest
from cgtest import echo_check, event_re, expect_rejected, free_port, is_served

RUN_TIMEOUT = 30.0

# ---------------------------------------------------------------------------
# The good configuration every configuration case starts from

GOOD_INI = b"""\
; condgate bad-input catalogue: the good configuration
[gateway]
workers = 2

[rules]
default = deny
allow = 127.0.0.2
deny = 127.0.0.66
include = rules.json
allow_file = allow.txt

[listener:web]
bind = 127.0.0.1:$web
backend = echo
rules = default

[admin]
listen = 127.0.0.1:$admin
"""
GOOD_JSON = b"""\
{
  "allow": ["127.0.0.3"],
  "rules": [
    {"action": "deny", "cidr": "127.0.0.67", "label": "json-deny"}
  ]
}
"""
GOOD_LIST = b"# partners\n127.0.0.4\n"
GOOD = {"condgate.ini": GOOD_INI, "rules.json": GOOD_JSON, "allow.txt": GOOD_LIST}

SERVED = ("127.0.0.2", "127.0.0.3", "127.0.0.4")    # by the INI, the JSON and the list file
REJECTED = ("127.0.0.66", "127.0.0.67", "127.0.0.99")  # INI deny, JSON deny, the default


def line_of(data, needle, nth=1):
    """1-based number of the nth line of `data` (bytes) holding `needle`."""
    seen = 0
    for i, l in enumerate(data.split(b"\n"), 1):
        if needle in l:
            seen += 1
            if seen == nth:
                return i
    raise AssertionError("%r not in %r" % (needle, data[:200]))


INCLUDE_LINE = line_of(GOOD_INI, b"include = rules.json")
LIST_LINE = line_of(GOOD_INI, b"allow_file = allow.txt")


def ini_sub(old, new):
    """The good INI with the first `old` replaced by `new`."""
    assert old in GOOD_INI, old
    return GOOD_INI.replace(old, new, 1)


def ini_after(anchor, text):
    """The good INI with the line(s) `text` inserted after the line
    holding `anchor`."""
    assert anchor in GOOD_INI, anchor
    head, sep, tail = GOOD_INI.partition(anchor)
    nl = tail.index(b"\n") + 1
    return head + sep + tail[:nl] + text + b"\n" + tail[nl:]


def cut(data, needle, keep):
    """`data` cut `keep` bytes into the first `needle` (a truncated file)."""
    i = data.index(needle)
    return data[:i + keep]


# File contents that are not plain bytes
class Fifo:
    def __repr__(self):
        return "FIFO"


class Dir:
    def __repr__(self):
        return "DIR"


class Symlink:
    def __init__(self, target):
        self.target = target


class Sparse:
    """A file of `size` bytes (zeros) that takes no disk space."""

    def __init__(self, size):
        self.size = size


FIFO, DIR, MISSING = Fifo(), Dir(), None

ELF_HEAD = None


def elf_head():
    """The first 2 KiB of the condgate binary: what -c gets when someone
    points it at the wrong file."""
    global ELF_HEAD
    if ELF_HEAD is None:
        with open(os.environ["CONDGATE_BIN"], "rb") as f:
            ELF_HEAD = f.read(2048)
    return ELF_HEAD


def high_bytes(n, seed):
    """n bytes of binary garbage past ASCII (no NUL, no newline): invalid
    UTF-8 throughout."""
    r = random.Random(seed)
    return bytes(r.randrange(0x80, 0x100) for _ in range(n))


def esc(data):
    """How an excerpt shows bytes in a message: past-ASCII and control bytes
    as \\xHH (the regex of it)."""
    out = ""
    for b in data:
        if b < 0x20 or b >= 0x7F:
            out += "\\x%02x" % b
        elif b == 0x5C:
            out += "\\\\"
        else:
            out += chr(b)
    return re.escape(out)


class Case:
    """One bad configuration. `files` maps file names to their bad content
    (bytes, FIFO, DIR, Symlink, Sparse, MISSING, or a callable returning
    one); "$web"/"$admin" in an INI are the directory's ports. The error
    must be `where:line: ` followed by a match of `msg`, in which "{dir}"
    stands for the directory prefix of paths ("" at start, "/abs/dir/" in
    the running gate)."""

    def __init__(self, id, files, where, line, msg, start=True, reload=True):
        self.id = id
        self.files = files
        self.where = where
        self.line = line
        self.msg = msg
        self.start = start
        self.reload = reload

    def pattern(self, prefix):
        head = re.escape("%s%s:%d: " % (prefix, self.where, self.line))
        return head + self.msg.replace("{dir}", re.escape(prefix))


def I(id, content, line, msg, **kw):
    """An INI case (the error is in condgate.ini)."""
    return Case(id, {"condgate.ini": content}, "condgate.ini", line, msg, **kw)


def J(id, content, line, msg, where="rules.json", **kw):
    """A JSON rule file case (rules.json, included on INCLUDE_LINE)."""
    return Case(id, {"rules.json": content}, where, line, msg, **kw)


def L(id, content, line, msg, where="allow.txt", **kw):
    """A list file case (allow.txt, named on LIST_LINE)."""
    return Case(id, {"allow.txt": content}, where, line, msg, **kw)


# ---------------------------------------------------------------------------
# INI files

_LONG_ALLOW = b"allow = " + b", ".join(b"10.0.%d.%d" % (i // 250, i % 250) for i in range(20))
_HUGE_LINE = b"deny = " + b", ".join(b"10.1.%d.%d" % (i // 250, i % 250) for i in range(9000))
_GARBAGE = high_bytes(150, 1)

INI_CASES = [
    # truncated: a deploy cut short
    I("truncated-section-header", cut(GOOD_INI, b"[listener:web]", 11),
      line_of(GOOD_INI, b"[listener:web]"),
      r"syntax error: section header '\[listener:w' has no closing '\]'"),
    I("truncated-value", cut(GOOD_INI, b"allow = 127.0.0.2", 14),
      line_of(GOOD_INI, b"allow = 127.0.0.2"), r"allow: invalid address '127\.0\.'$"),
    I("truncated-key", cut(GOOD_INI, b"backend = echo", 4),
      line_of(GOOD_INI, b"backend = echo"),
      r"syntax error: expected '\[section\]' or 'key = value', not 'back'"),
    I("truncated-listener", cut(GOOD_INI, b"backend = echo", 0),
      line_of(GOOD_INI, b"[listener:web]"), r"\[listener:web\] has no 'backend'; add e\.g\. "),
    # huge: past the 1 MiB bound (a whole-file error: line 0)
    I("huge-file", GOOD_INI + b"".join(b"; padding line %06d\n" % i for i in range(60000)), 0,
      r"the file is larger than 1 MiB"),
    I("huge-sparse-file", Sparse((1 << 20) + 1), 0, r"the file is larger than 1 MiB"),
    # binary
    I("binary-elf", elf_head, 1, r"NUL byte in the line; is this a text file\?"),
    I("binary-garbage", _GARBAGE + b"\n" + GOOD_INI, 1,
      r"syntax error: expected '\[section\]' or 'key = value', not '" + esc(_GARBAGE[:15])),
    # NUL bytes
    I("nul-in-value", ini_sub(b"allow = 127.0.0.2", b"allow = 127.0.0.2\x00, 10.0.0.1"),
      line_of(GOOD_INI, b"allow = 127.0.0.2"), r"NUL byte in the line; is this a text file\?"),
    I("nul-in-comment", ini_sub(b"; condgate", b";\x00 condgate"), 1,
      r"NUL byte in the line; is this a text file\?"),
    # invalid UTF-8 and other encodings
    I("invalid-utf8-value", ini_sub(b"allow = 127.0.0.2", b"allow = 127.0.0.\xff"),
      line_of(GOOD_INI, b"allow = 127.0.0.2"), r"allow: invalid address '127\.0\.0\.\\xff'"),
    I("invalid-utf8-section", ini_after(b"rules = default", b"\n[rules:caf\xe9]"),
      line_of(GOOD_INI, b"rules = default") + 2,
      r"bad name 'caf\\xe9' in \[rules:caf\?\]: use 1 to 32 letters"),
    I("invalid-utf8-key", ini_sub(b"workers = 2", b"w\xf6rkers = 2"),
      line_of(GOOD_INI, b"workers = 2"), r"unknown key 'w\\xf6rkers' in \[gateway\]"),
    I("utf16-file", b"\xff\xfe" + GOOD_INI.decode().encode("utf-16-le"), 1,
      r"NUL byte in the line; is this a text file\?"),
    I("bom-mid-file", ini_sub(b"workers = 2", b"\xef\xbb\xbfworkers = 2"),
      line_of(GOOD_INI, b"workers = 2"), r"unknown key '\\xef\\xbb\\xbfworkers' in \[gateway\]"),
    I("fullwidth-colon", ini_sub(b"bind = 127.0.0.1:$web", b"bind = 127.0.0.1\xef\xbc\x9a$web"),
      line_of(GOOD_INI, b"bind = "),
      r"'bind' in \[listener:web\]: bad endpoint '127\.0\.0\.1\\xef\\xbc\\x9a"),
    # line ends
    # bare CR line ends: the file would be one comment line, i.e. empty
    I("cr-only-line-ends", GOOD_INI.replace(b"\n", b"\r"), 1,
      r"carriage return inside the line; save the file with LF or CRLF line ends"),
    I("cr-inside-comment", ini_sub(b"deny = 127.0.0.66", b"; old rule\rdeny = 127.0.0.66"),
      line_of(GOOD_INI, b"deny = 127.0.0.66"), r"carriage return inside the line"),
    # control characters must not reach a terminal or a log as they are
    I("escape-sequence", ini_after(b"workers = 2", b"log_format = \x1b[31mjson\x1b[0m"),
      line_of(GOOD_INI, b"workers = 2") + 1,
      r"bad value '\\x1b\[31mjson\\x1b\[0m' for 'log_format' in \[gateway\]"),
    I("token-control-char", GOOD_INI + b"token = s3cret\x07bell\n",
      line_of(GOOD_INI, b"listen =") + 1,
      r"'token' in \[admin\] may hold only printable ASCII characters without spaces"),
    # overlong lines
    I("overlong-line", ini_after(b"allow = 127.0.0.2", _LONG_ALLOW),
      line_of(GOOD_INI, b"allow = 127.0.0.2") + 1,
      r"line longer than 198 characters; split the list over repeated 'allow =' keys or use "
      r"allow_file"),
    I("overlong-line-100k", ini_after(b"deny = 127.0.0.66", _HUGE_LINE),
      line_of(GOOD_INI, b"deny = 127.0.0.66") + 1,
      r"line longer than 198 characters; split the list over repeated 'deny =' keys or use "
      r"deny_file"),
    I("overlong-line-last-no-newline", GOOD_INI + b"token = " + b"t" * 300,
      line_of(GOOD_INI, b"listen =") + 1,
      r"line longer than 198 characters, the limit of the INI reader"),
    # wrong types
    I("wrong-type-word", ini_sub(b"workers = 2", b"workers = two"), line_of(GOOD_INI, b"workers"),
      r"bad value 'two' for 'workers' in \[gateway\]: expected a whole number from 1 to 64"),
    I("wrong-type-negative", ini_after(b"workers = 2", b"max_connections = -1"),
      line_of(GOOD_INI, b"workers") + 1,
      r"bad value '-1' for 'max_connections' in \[gateway\]: expected a whole number"),
    I("wrong-type-float", ini_after(b"workers = 2", b"drain_timeout_ms = 2.5"),
      line_of(GOOD_INI, b"workers") + 1, r"bad value '2\.5' for 'drain_timeout_ms'"),
    I("wrong-type-bool", ini_sub(b"default = deny", b"default = yes"),
      line_of(GOOD_INI, b"default = deny"),
      r"bad value 'yes' for 'default' in \[rules\]: expected allow or deny"),
    I("wrong-type-port-only", ini_sub(b"bind = 127.0.0.1:$web", b"bind = 8080"),
      line_of(GOOD_INI, b"bind = "), r"'bind' in \[listener:web\]: bad endpoint '8080'"),
    I("wrong-type-list-for-scalar", ini_after(b"workers = 2", b"log_level = info, debug"),
      line_of(GOOD_INI, b"workers") + 1, r"bad value 'info, debug' for 'log_level'"),
    I("number-overflow", ini_after(b"workers = 2", b"max_connections = 99999999999999999999"),
      line_of(GOOD_INI, b"workers") + 1, r"bad value '99999999999999999999' for 'max_connections'"),
    # structure
    I("duplicate-key", ini_after(b"workers = 2", b"workers = 3"), line_of(GOOD_INI, b"workers") + 1,
      r"'workers' given twice in \[gateway\] \(first on line %d\)" % line_of(GOOD_INI, b"workers")),
    I("duplicate-section", GOOD_INI + b"[listener:web]\nbind = 127.0.0.1:1\nbackend = echo\n",
      GOOD_INI.count(b"\n") + 1,
      r"duplicate section \[listener:web\] \(first on line %d\)"
      % line_of(GOOD_INI, b"[listener:web]")),
    I("unknown-section", GOOD_INI + b"[listner:api]\n", GOOD_INI.count(b"\n") + 1,
      r"unknown section \[listner:api\]; did you mean \[listener:api\]\?"),
    I("unknown-key", ini_after(b"backend = echo", b"timeout = 5"),
      line_of(GOOD_INI, b"backend = echo") + 1, r"unknown key 'timeout' in \[listener:web\]"),
    I("key-before-section", b"workers = 2\n" + GOOD_INI, 1,
      r"key 'workers' is outside any section; it belongs in \[gateway\]"),
    # empty: a valid configuration without listeners, so only the reload
    # (which would remove the running listener) is refused
    I("empty-file", b"", 0,
      r"listener 'web' was removed; removing listeners needs a restart", start=False),
    # not a regular file, or not there
    I("missing", MISSING, 0, r"cannot read the configuration: no such file or directory"),
    I("directory", DIR, 0, r"cannot read the configuration: is a directory"),
    I("fifo", FIFO, 0,
      r"cannot read the configuration: not a regular file \(a device, FIFO or socket\)"),
    Case("include-directory", {"rules.json": DIR}, "condgate.ini", INCLUDE_LINE,
         r"include: cannot read '{dir}rules\.json': is a directory"),
    Case("include-fifo", {"rules.json": FIFO}, "condgate.ini", INCLUDE_LINE,
         r"include: cannot read '{dir}rules\.json': not a regular file \(a device, FIFO or "
         r"socket\)"),
    Case("include-symlink-loop", {"rules.json": Symlink("rules.json")}, "condgate.ini",
         INCLUDE_LINE,
         r"include: cannot read '{dir}rules\.json': too many levels of symbolic links"),
    Case("include-dev-zero", {"condgate.ini": ini_sub(b"allow_file = allow.txt",
                                                      b"allow_file = /dev/zero")},
         "condgate.ini", LIST_LINE,
         r"allow_file: cannot read '/dev/zero': not a regular file \(a device, FIFO or socket\)"),
    Case("include-missing", {"rules.json": MISSING}, "condgate.ini", INCLUDE_LINE,
         r"include: cannot read '{dir}rules\.json': no such file or directory"),
]

# ---------------------------------------------------------------------------
# JSON rule files

_JSON_GARBAGE = high_bytes(64, 2)
_LONG_CIDR = b"1" * 100000


def _deep(n):
    return b'{"allow": ' + b"[" * n + b'"127.0.0.3"' + b"]" * n + b"}"


def _many_then_bad():
    return b'{"allow": [' + b"".join(b'"10.%d.%d.1", ' % (i // 250, i % 250)
                                     for i in range(20000)) + b'"bad"]}'


def _rule(extra):
    return b'{"rules": [\n  {"action": "allow", "cidr": "127.0.0.3"%s}\n]}\n' % extra


JSON_CASES = [
    # truncated
    J("empty", b"", 1, r"JSON syntax error: unexpected end of file"),
    J("whitespace-only", b"  \n\n  \n", 3, r"JSON syntax error: unexpected end of file"),
    J("truncated-array", cut(GOOD_JSON, b'"rules"', 0), 3,
      r"JSON syntax error: unexpected end of file"),
    J("truncated-string", cut(GOOD_JSON, b"127.0.0.3", 6), 2, r"JSON syntax error at '127\.0\.'"),
    # huge: past 64 MiB, reported where the INI includes it
    J("huge-sparse", Sparse((64 << 20) + 1), INCLUDE_LINE,
      r"include: '{dir}rules\.json' is larger than 64 MiB", where="condgate.ini"),
    J("overlong-line-20k-entries", _many_then_bad, 1, r"allow: invalid address 'bad'"),
    J("overlong-string", b'{"allow": ["' + _LONG_CIDR + b'"]}', 1,
      r"allow: invalid address '1{40,}\.\.\.'"),
    # binary
    J("binary-elf", elf_head, 1, r"NUL byte in the file; is this a text file\?"),
    J("binary-garbage", _JSON_GARBAGE, 1, r"JSON syntax error at '" + esc(_JSON_GARBAGE[:12])),
    # deeply nested: past depth 16, refused before cJSON recurses
    J("nested-17", _deep(16), 1, r"JSON nested deeper than 16 levels"),
    J("nested-100k-arrays", b"[" * 100000, 1, r"JSON nested deeper than 16 levels"),
    J("nested-100k-objects", b'{"a":' * 100000, 1, r"JSON nested deeper than 16 levels"),
    # wrong types
    J("top-level-null", b"null\n", 1, r"the top level must be an object .*, not null"),
    J("top-level-array", b'["127.0.0.3"]\n', 1,
      r"the top level must be an object .*, not an array"),
    J("allow-string", b'{\n  "allow": "127.0.0.3"\n}\n', 2,
      r'"allow" must be an array of address strings, not a string'),
    J("allow-entry-number", b'{\n  "allow": [\n    2130706435\n  ]\n}\n', 3,
      r'"allow" entries must be address strings, not a number'),
    J("number-overflow", b'{"deny": [1e999]}', 1,
      r'"deny" entries must be address strings, not a number'),
    J("rules-object", b'{\n  "rules": {"action": "deny"}\n}\n', 2,
      r'"rules" must be an array of objects, not an object'),
    J("rule-string", b'{"rules": [\n  "deny 127.0.0.3"\n]}\n', 2,
      r'"rules" entries must be objects like .*, not a string'),
    J("action-bool", b'{"rules": [\n  {"action": true, "cidr": "127.0.0.3"}\n]}\n', 2,
      r'"action" must be a string, not a boolean'),
    J("label-number", _rule(b', "label": 7'), 2, r'"label" must be a string, not a number'),
    J("cidr-array", b'{"rules": [\n  {"action": "deny",\n   "cidr": ["127.0.0.3"]}\n]}\n', 3,
      r'"cidr" must be a string, not an array'),
    J("label-too-long", _rule(b', "label": "' + b"x" * 100000 + b'"'), 2,
      r'"label" is 100000 bytes long; at most 128 are allowed'),
    # invalid UTF-8
    J("invalid-utf8-label", _rule(b', "label": "caf\xe9"'), 2,
      r'"label" is not valid UTF-8 \(byte 4\)'),
    J("invalid-utf8-key", b'{"al\xfflow": ["127.0.0.3"]}\n', 1,
      r"unknown key 'al\\xfflow'; did you mean \"allow\"\?"),
    J("invalid-utf8-cidr", b'{"allow": ["127.0.0.\xc0\xae"]}\n', 1,
      r"allow: invalid address '127\.0\.0\.\\xc0\\xae'"),
    J("lone-surrogate", _rule(b', "label": "\\ud800"'), 2, r"JSON syntax error at "),
    J("utf16-file", b"\xff\xfe" + GOOD_JSON.decode().encode("utf-16-le"), 1,
      r"NUL byte in the file; is this a text file\?"),
    # NUL bytes
    J("nul-raw-in-string", b'{"allow": [\n  "127.0.0.3\x00"\n]}\n', 2,
      r"NUL byte in the file; is this a text file\?"),
    J("nul-escape", b'{"allow": [\n  "127.0.0.3\\u0000, 10.0.0.0/8"\n]}\n', 2,
      r"\\u0000 is not allowed in strings"),
    J("nul-after-document", GOOD_JSON + b"\x00", GOOD_JSON.count(b"\n") + 1,
      r"NUL byte in the file; is this a text file\?"),
    # other mistakes operators make
    J("duplicate-key", b'{\n  "allow": ["127.0.0.3"],\n  "allow": ["127.0.0.5"]\n}\n', 3,
      r'duplicate key "allow" \(first on line 2\)'),
    J("duplicate-key-in-rule", _rule(b',\n   "cidr": "127.0.0.5"'), 3,
      r'duplicate key "cidr" in a rule \(first on line 2\)'),
    J("unknown-key", b'{\n  "allows": ["127.0.0.3"]\n}\n', 2,
      r"unknown key 'allows'; did you mean \"allow\"\?"),
    J("comment", b"// partners\n" + GOOD_JSON, 1, r"JSON syntax error at '// partners'"),
    J("trailing-comma", b'{"allow": ["127.0.0.3",]}\n', 1, r"JSON syntax error at '\]}'"),
    J("two-documents", GOOD_JSON + GOOD_JSON, GOOD_JSON.count(b"\n") + 1,
      r"JSON syntax error: text after the end of the top-level value: '{'"),
    J("missing-action", b'{"rules": [\n  {"cidr": "127.0.0.3"}\n]}\n', 2,
      r'rule has no "action"; add "action": "allow" or "deny"'),
]

# ---------------------------------------------------------------------------
# Plain list files

_LIST_GARBAGE = high_bytes(40, 3)

LIST_CASES = [
    L("truncated-last-line", b"127.0.0.4\n10.0.0.", 2, r"allow_file: invalid address '10\.0\.0\.'"),
    L("huge-sparse", Sparse((512 << 20) + 1), LIST_LINE,
      r"allow_file: '{dir}allow\.txt' is larger than 512 MiB", where="condgate.ini"),
    L("binary-elf", elf_head, None, r"NUL byte in the line; is this a text file\?"),
    L("binary-garbage", _LIST_GARBAGE + b"\n", 1,
      r"allow_file: invalid address '" + esc(_LIST_GARBAGE[:12])),
    L("nul-byte", b"127.0.0.4\n127.0.0.5\x00\n", 2, r"NUL byte in the line; is this a text file\?"),
    L("overlong-line", b"127.0.0.4\n" + b"1" * 1025 + b"\n", 2, r"line longer than 1024 bytes"),
    L("invalid-utf8", b"127.0.0.4\n127.0.0.\xff\n", 2,
      r"allow_file: invalid address '127\.0\.0\.\\xff'"),
    L("utf16-file", b"\xff\xfe" + GOOD_LIST.decode().encode("utf-16-le"), 1,
      r"NUL byte in the line; is this a text file\?"),
    L("cr-only-line-ends", b"# partners\r127.0.0.4\r10.0.0.0/8\r", 1,
      r"carriage return inside the line; save the file with LF or CRLF line ends"),
    L("json-given", GOOD_JSON, 1, r"allow_file: invalid address '{'"),
    L("range-backwards", b"127.0.0.9-127.0.0.1\n", 1,
      r"allow_file: range '127\.0\.0\.9-127\.0\.0\.1': a range must not end before it starts"),
    L("range-families", b"127.0.0.1-::1\n", 1,
      r"allow_file: range '127\.0\.0\.1-::1': a range's two ends must be of one family "
      r"\(IPv4 or IPv6\)"),
    L("host-bits", b"127.0.0.4/8\n", 1,
      r"allow_file: host bits set past /8; did you mean 127\.0\.0\.0/8\?"),
    L("fifo", FIFO, LIST_LINE,
      r"allow_file: cannot read '{dir}allow\.txt': not a regular file \(a device, FIFO or socket\)",
      where="condgate.ini"),
]


def _fix_elf_line(case):
    """The ELF list case: the line of the binary's first NUL byte."""
    if case.line is None:
        data = elf_head()
        case.line = data[:data.index(b"\x00")].count(b"\n") + 1
    return case


CONFIG_CASES = ([pytest.param("ini", c, id="ini-" + c.id) for c in INI_CASES]
                + [pytest.param("json", c, id="json-" + c.id) for c in JSON_CASES]
                + [pytest.param("list", c, id="list-" + c.id) for c in LIST_CASES])


# ---------------------------------------------------------------------------
# Writing case files


def _remove(path):
    if os.path.islink(path) or (os.path.exists(path) and not os.path.isdir(path)):
        os.unlink(path)
    elif os.path.isdir(path):
        shutil.rmtree(path)


def _put(path, content, ports):
    """Write one file (atomically for plain bytes)."""
    if callable(content):
        content = content()
    if isinstance(content, bytes):
        for name, port in ports.items():
            content = content.replace(b"$" + name.encode(), str(port).encode())
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        tmp = path + ".tmp"
        with open(tmp, "wb") as f:
            f.write(content)
        os.replace(tmp, path)
        return
    _remove(path)
    if content is None:
        return
    if isinstance(content, Fifo):
        os.mkfifo(path)
    elif isinstance(content, Dir):
        os.mkdir(path)
    elif isinstance(content, Symlink):
        os.symlink(content.target, path)
    elif isinstance(content, Sparse):
        with open(path, "wb") as f:
            f.truncate(content.size)
    else:
        raise AssertionError("bad case content %r" % (content,))


class Stage:
    """A directory holding a configuration, with its own ports."""

    def __init__(self, path, ports):
        self.path = path
        self.ports = ports

    def put(self, files):
        for name, content in files.items():
            _put(os.path.join(self.path, name), content, self.ports)

    def restore(self, case):
        self.put({name: GOOD[name] if name in GOOD else MISSING for name in case.files})


# ---------------------------------------------------------------------------
# One running gate per configuration kind, for the whole module


class Running:
    def __init__(self, gate):
        self.gate = gate
        self.stage = Stage(gate.dir, {"web": gate.port("web"), "admin": gate.port("admin")})
        self.failures = 0
        self.held = None
        self.entries = None


class Bench:
    def __init__(self, binary):
        self.binary = binary
        self.root = tempfile.mkdtemp(prefix="cgbad-", dir="/tmp")  # short paths in messages
        self.running = {}
        self.starts = {}
        self.gates = []

    def start_stage(self, kind):
        st = self.starts.get(kind)
        if st is None:
            d = os.path.join(self.root, kind + "-start")
            os.mkdir(d)
            st = Stage(d, {"web": free_port(), "admin": free_port()})
            st.put(GOOD)
            self.starts[kind] = st
        return st

    def gate_for(self, kind):
        run = self.running.get(kind)
        if run is not None:
            return run
        d = os.path.join(self.root, kind)
        os.mkdir(d)
        g = cgtest.Gate(self.binary, d, "gate-" + kind)
        self.gates.append(g)
        g.write(GOOD_INI.decode(), files={"rules.json": GOOD_JSON, "allow.txt": GOOD_LIST},
                admin_off=False)
        g.start()
        run = Running(g)
        self.running[kind] = run
        # the connection that must outlive every failed reload
        run.held = cgtest.connect(g.port("web"), "127.0.0.2")
        echo_check(run.held, b"opened before any bad reload\n")
        run.entries = entries_of(g)
        assert run.entries["default"] == {"ipv4": 5, "ipv6": 0}, run.entries
        check_unchanged(run)
        return run

    def close(self):
        problems = []
        for run in self.running.values():
            try:
                # still healthy: a good reload goes through at the end
                run.stage.put(GOOD)
                st, _, body = run.gate.http("POST", "/reload", timeout=RUN_TIMEOUT)
                if st != 200 or json.loads(body).get("generation") != 2:
                    problems.append("%s: final good reload: %d %r" % (run.gate.name, st, body))
                if run.held is not None:
                    echo_check(run.held, b"still here after the good reload\n")
                    run.held.close()
                run.gate.stop()
            except BaseException as e:  # reported below, after every gate is down
                problems.append("%s: %r" % (run.gate.name, e))
        for g in self.gates:
            g.kill()
            found = g.sanitizer_report()
            if found:
                problems.append("%s: %s\n%s" % (g.name, ", ".join(found), g.log_text()))
        shutil.rmtree(self.root, ignore_errors=True)
        return problems


@pytest.fixture(scope="module")
def bench(condgate_bin):
    b = Bench(condgate_bin)
    yield b
    problems = b.close()
    if problems:
        pytest.fail("after the catalogue:\n" + "\n".join(problems), pytrace=False)


@pytest.fixture(autouse=True)
def _attach_logs(request):
    """Failures show the logs of the module's gates (conftest's hook)."""
    if "bench" in request.fixturenames:
        b = request.getfixturevalue("bench")
        request.node._condgate_gates = b.gates
    yield


def entries_of(gate):
    sets = gate.json("/rules")
    sets = sets.get("sets") if isinstance(sets, dict) else sets
    return {s["name"]: s["entries"] for s in sets}


def check_unchanged(run):
    """Nothing a failed reload may change has changed."""
    g = run.gate
    assert g.alive(), "the gate died:\n" + g.log_tail()
    s = g.json("/stats")
    assert (s["generation"], s["reloads"], s["reload_failures"]) == (1, 0, run.failures), (
        "generation/reloads/reload_failures %r, wanted (1, 0, %d)"
        % ((s["generation"], s["reloads"], s["reload_failures"]), run.failures))
    assert entries_of(g) == run.entries
    echo_check(run.held, b"still relayed\n")
    web = g.port("web")
    for src in SERVED:
        assert is_served(web, src), "%s is no longer served" % src
    for src in REJECTED:
        expect_rejected(web, src)


def assert_error_line(line, prefix, case, what):
    assert not re.search(r"[\x00-\x1f\x7f]", line), "%s: control character in %r" % (what, line)
    pat = case.pattern(prefix)
    assert re.match(pat, line), "%s: got\n  %r\nwanted a match of\n  %r" % (what, line, pat)


# ---------------------------------------------------------------------------
# The configuration cases


@pytest.mark.parametrize("kind,case", CONFIG_CASES)
def test_bad_config(bench, kind, case):
    _fix_elf_line(case)
    if case.start:
        st = bench.start_stage(kind)
        st.put(case.files)
        try:
            check_start_fails(bench, st, case)
        finally:
            st.restore(case)
    if case.reload:
        run = bench.gate_for(kind)
        # counted from what the gate says now, so one failure does not
        # spill into the next cases
        run.failures = run.gate.json("/stats")["reload_failures"]
        run.stage.put(case.files)
        try:
            check_reload_fails(run, case)
        finally:
            run.stage.restore(case)
        check_unchanged(run)


def run_to_exit(argv, cwd):
    """Run argv until it exits; (status, stdout, stderr). Fails at once if
    it starts serving (logs a listener or its start) instead of exiting."""
    p = subprocess.Popen(argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    err = bytearray()
    deadline = time.monotonic() + RUN_TIMEOUT
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                pytest.fail("condgate neither exited nor started within %.0fs" % RUN_TIMEOUT,
                            pytrace=False)
            r, _, _ = select.select([p.stderr], [], [], left)
            if not r:
                continue
            chunk = os.read(p.stderr.fileno(), 65536)
            if not chunk:
                break
            err += chunk
            if re.search(rb"\bevent=(listen|start|admin)\b", err):
                pytest.fail("condgate started on the bad configuration instead of exiting 2:\n"
                            + err.decode("utf-8", "replace"), pytrace=False)
        out = p.stdout.read()
        return p.wait(RUN_TIMEOUT), out, bytes(err)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        p.stdout.close()
        p.stderr.close()


def check_start_fails(bench, st, case):
    rc, out, raw = run_to_exit([bench.binary, "-c", "condgate.ini"], st.path)
    err = raw.decode("utf-8")  # strictly: the error line is UTF-8
    assert rc == 2, "exit %s, wanted 2; stderr %r" % (rc, err)
    assert out == b"", out
    assert err.endswith("\n") and err.count("\n") == 1, (
        "stderr is not exactly one line (nothing may be started or logged): %r" % err[:2000])
    assert_error_line(err[:-1], "", case, "start")


def check_reload_fails(run, case):
    g = run.gate
    prefix = g.dir + "/"
    m = g.mark()
    run.failures += 1
    status, headers, body = g.http("POST", "/reload", timeout=RUN_TIMEOUT)
    assert status == 422, "POST /reload: %d %r" % (status, body[:300])
    d = json.loads(body.decode("utf-8"))
    assert d.get("ok") is False, d
    err = d.get("error")
    assert isinstance(err, str)
    assert_error_line(err, prefix, case, "POST /reload")
    hit = g.wait_log(event_re("reload"), since=m, timeout=RUN_TIMEOUT)
    assert (hit.get("result"), hit.get("generation"), hit.get("error")) == ("failed", "1", err), (
        hit.line)
    run.failures += 1
    hit = g.reload(expect="failed", timeout=RUN_TIMEOUT)        # SIGHUP
    assert hit.get("error") == err, hit.line


# ---------------------------------------------------------------------------
# Admin requests

TOKEN = b"s3cret-T0k3n"
AUTH = b"Authorization: Bearer " + TOKEN + b"\r\n"

ADMIN_INI = """
    [gateway]
    workers = 1

    [rules]
    allow = 127.0.0.2
    deny = 127.0.0.66

    [listener:web]
    bind = 127.0.0.1:$web
    backend = echo

    [admin]
    listen = 127.0.0.1:$admin
    token = %s
    """ % TOKEN.decode()

CLOSE = "close"  # the connection is closed (FIN or reset) without a byte


def get(target, headers=b"", version=b"HTTP/1.1", method=b"GET"):
    return (method + b" " + target + b" " + version + b"\r\nHost: x\r\n" + AUTH + headers
            + b"\r\n")


def post_reload(headers, body=b""):
    return b"POST /reload HTTP/1.1\r\nHost: x\r\n" + AUTH + headers + b"\r\n" + body


class Req:
    """One raw admin request. `expect`: the allowed outcomes of the first
    answer (a status, or CLOSE). `then`: allowed outcomes after it (None:
    nothing more may come). `unauth`: how many 401s it costs. `mhd_garbled`:
    libmicrohttpd 0.9.75 answers a bad Content-Length with its header block
    sent twice, so only the first status line is checked."""

    def __init__(self, id, data, expect, then=(None,), unauth=0, body_re=None, mhd_garbled=False):
        self.id = id
        self.mhd_garbled = mhd_garbled
        self.data = data
        self.expect = expect
        self.then = then
        self.unauth = unauth
        self.body_re = body_re


def _explain(addr):
    return get(b"/rules/explain?addr=" + addr)


ADMIN_CASES = [
    # broken request lines
    Req("garbage-request-line", b"GARBAGE\r\n\r\n", (400, CLOSE)),
    Req("no-http-version", b"GET /stats\r\n\r\n", (400,)),
    Req("extra-token-in-request-line", get(b"/healthz", version=b"HTTP/1.1 extra"), (400,)),
    Req("http-2-request-line", get(b"/healthz", version=b"HTTP/2.0"), (505,)),
    Req("http2-preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", (400, 505, CLOSE)),
    Req("tls-client-hello", bytes.fromhex("16030100a5010000a10303") + os.urandom(32) + b"\x00" * 64,
        (400, CLOSE)),
    Req("header-without-colon", get(b"/healthz", headers=b"NoColonHere\r\n"), (400,)),
    # NUL bytes
    Req("nul-in-path", get(b"/sta\x00ts"), (400, 404)),
    Req("nul-in-query", _explain(b"127.0.0.2%00junk"), (400,), body_re=rb"NUL byte"),
    Req("nul-in-set-name", get(b"/rules/explain?addr=127.0.0.2&set=default%00x"), (400,),
        body_re=rb"NUL byte"),
    # invalid UTF-8 and percent-encoding in the query
    Req("raw-invalid-utf8-in-query", _explain(b"\xff\xfe127.0.0.1"), (400,), body_re=rb"bad addr"),
    Req("pct-invalid-utf8", _explain(b"%ff%fe"), (400,), body_re=rb"bad addr"),
    Req("pct-overlong-utf8", _explain(b"127.0.0.%c0%ae"), (400,), body_re=rb"bad addr"),
    Req("pct-malformed", _explain(b"%zz%4"), (400,), body_re=rb"bad addr"),
    # explain with junk addresses
    Req("explain-prefix", _explain(b"10.0.0.0/8"), (400,), body_re=rb"one address"),
    Req("explain-too-many-octets", _explain(b"::ffff:1.2.3.4.5"), (400,)),
    Req("explain-script", _explain(b"%3Cscript%3Ealert(1)%3C/script%3E"), (400,),
        body_re=rb"bad addr"),
    Req("explain-sql", _explain(b"1'%20or%20'1'='1"), (400,)),
    Req("explain-zone-id", _explain(b"fe80::1%25eth0"), (400,)),
    Req("explain-integer", _explain(b"2130706433"), (400,)),
    Req("explain-long-addr", _explain(b"1" * 20000), (400,)),
    Req("explain-unknown-set", get(b"/rules/explain?addr=127.0.0.2&set=../../etc/passwd"), (404,)),
    Req("explain-set-invalid-utf8", get(b"/rules/explain?addr=127.0.0.2&set=%ff%fe%22"), (404,),
        body_re=rb"no rule set by that name"),
    # past the 32 KiB of request a connection may hold
    Req("huge-url", get(b"/rules/explain?addr=" + b"1" * 40000), (414,)),
    Req("huge-header", get(b"/stats", headers=b"X-Big: " + b"a" * 40000 + b"\r\n"), (431,)),
    Req("many-headers", get(b"/stats", headers=b"".join(b"X-H%d: v\r\n" % i for i in range(4000))),
        (431,)),
    # bodies and their lengths
    Req("oversize-body-announced", post_reload(b"Content-Length: 5000\r\n", b"z" * 5000), (413,)),
    Req("oversize-body-chunked", post_reload(b"Transfer-Encoding: chunked\r\n",
                                             b"1400\r\n" + b"z" * 5120 + b"\r\n0\r\n\r\n"),
        (413, CLOSE)),
    Req("content-length-word", post_reload(b"Content-Length: abc\r\n"), (400,), mhd_garbled=True),
    Req("content-length-negative", post_reload(b"Content-Length: -1\r\n"), (400,),
        mhd_garbled=True),
    Req("content-length-overflow", post_reload(b"Content-Length: 99999999999999999999999\r\n"),
        (400, 413), mhd_garbled=True),
    Req("content-length-twice", post_reload(b"Content-Length: 1\r\nContent-Length: 2\r\n", b"ab"),
        (400,), body_re=rb"ambiguous body length"),
    Req("content-length-and-chunked",
        post_reload(b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n"), (400,),
        body_re=rb"ambiguous body length"),
    Req("truncated-body", post_reload(b"Content-Length: 100\r\n", b"short"), (CLOSE,)),
    # wrong methods
    Req("unknown-method", get(b"/stats", method=b"BREW"), (405,)),
    Req("get-reload", get(b"/reload"), (405,)),
    Req("delete-stats", get(b"/stats", method=b"DELETE"), (405,)),
    # truncated, garbage, pipelined
    Req("truncated-then-close", b"GET /sta", (CLOSE,)),
    Req("truncated-headers", b"GET /stats HTTP/1.1\r\nHost: x\r\n" + AUTH[:10], (CLOSE,)),
    Req("binary-garbage", bytes(range(1, 256)) * 16, (400, CLOSE)),
    Req("pipelined-junk", get(b"/healthz") + b"\x01\x02junk\x7f\r\n\r\n", (200,),
        then=(None, 400, CLOSE)),
    # the token
    Req("no-token", b"GET /stats HTTP/1.1\r\nHost: x\r\n\r\n", (401,), unauth=1),
    Req("wrong-token", b"GET /stats HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer wrong\r\n\r\n",
        (401,), unauth=1),
    Req("token-prefix", b"GET /stats HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
        + TOKEN[:-1] + b"\r\n\r\n", (401,), unauth=1),
    Req("nul-hides-wrong-token", b"GET /stats HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
        + TOKEN[:4] + b"\x00" + TOKEN[4:] + b"\r\n\r\n", (400, 401), unauth=1),
    Req("token-huge", b"GET /stats HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + b"t" * 20000
        + b"\r\n\r\n", (401,), unauth=1),
    Req("token-wrong-then-right", b"GET /stats HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer x\r\n"
        + AUTH + b"\r\n", (401,), unauth=1),
    Req("reload-without-token", b"POST /reload HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
        (401,), unauth=1),
]


def _responses(data):
    """Split raw bytes into [(status, headers bytes, body)]; fails on bytes
    that are not HTTP responses."""
    out = []
    pos = 0
    while pos < len(data):
        m = re.compile(rb"HTTP/1\.[01] (\d{3}) [^\r\n]*\r\n").match(data, pos)
        assert m, "not an HTTP response at byte %d: %r" % (pos, data[pos:pos + 200])
        end = data.find(b"\r\n\r\n", m.end() - 2)
        assert end >= 0, "response headers never end: %r" % data[pos:pos + 300]
        head = data[m.end():end]
        cl = re.search(rb"(?im)^content-length:\s*(\d+)\s*$", head)
        assert cl, "response without Content-Length: %r" % head
        body_end = end + 4 + int(cl.group(1))
        assert body_end <= len(data), "response body cut short: %r" % data[pos:pos + 300]
        out.append((int(m.group(1)), head, data[end + 4:body_end]))
        pos = body_end
    return out


def exchange(port, data, timeout=RUN_TIMEOUT):
    """Send `data` from 127.0.0.1, half-close, read until EOF or a reset.
    Returns the bytes received."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    buf = bytearray()
    try:
        s.bind(("127.0.0.1", 0))
        s.connect(("127.0.0.1", port))
        try:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
        except OSError as e:
            # the server may have answered and closed before all was sent
            if e.errno not in (errno.ECONNRESET, errno.EPIPE, errno.ENOTCONN):
                raise
        deadline = time.monotonic() + timeout
        while True:
            s.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                raise AssertionError("the admin port neither answered nor closed within %.0fs "
                                     "(%d bytes so far)" % (timeout, len(buf)))
            except OSError as e:
                if e.errno == errno.ECONNRESET:
                    break
                raise
            if not chunk:
                break
            buf += chunk
    finally:
        s.close()
    return bytes(buf)


class AdminBench:
    def __init__(self, gate):
        self.gate = gate


@pytest.fixture(scope="module")
def admin_bench(condgate_bin):
    root = tempfile.mkdtemp(prefix="cgbad-admin-", dir="/tmp")
    g = cgtest.Gate(condgate_bin, root, "gate-admin")
    g.write(ADMIN_INI)
    g.start()
    ab = AdminBench(g)
    yield ab
    problems = []
    try:
        g.stop()
    except BaseException as e:  # reported below
        problems.append(repr(e))
    g.kill()
    found = g.sanitizer_report()
    if found:
        problems.append("%s\n%s" % (", ".join(found), g.log_text()))
    shutil.rmtree(root, ignore_errors=True)
    if problems:
        pytest.fail("admin gate: " + "\n".join(problems), pytrace=False)


@pytest.mark.parametrize("req", [pytest.param(r, id=r.id) for r in ADMIN_CASES])
def test_bad_admin_request(admin_bench, req, request):
    g = admin_bench.gate
    request.node._condgate_gates = [g]
    before = g.json("/stats")
    raw = exchange(g.admin_port, req.data)
    if req.mhd_garbled:
        m = re.match(rb"HTTP/1\.[01] (\d{3}) ", raw)
        assert m, raw[:300]
        answers = [(int(m.group(1)), b"", b"")]
    else:
        answers = _responses(raw)
    first = answers[0][0] if answers else CLOSE
    assert first in req.expect, "first answer %r, wanted one of %r; got %r" % (
        first, req.expect, raw[:300])
    rest = [a[0] for a in answers[1:]] or [None]
    if first == CLOSE:
        rest = [None]
    assert len(rest) == 1 and rest[0] in req.then, "then %r, wanted one of %r; got %r" % (
        rest, req.then, raw[:600])
    if req.body_re is not None:
        assert answers and re.search(req.body_re, answers[0][2]), answers
    for status, head, body in answers:
        if re.search(rb"(?im)^content-type:\s*application/json", head):
            json.loads(body.decode("utf-8"))  # our answers are valid JSON in UTF-8

    # afterwards: still serving, nothing changed
    assert g.alive(), "the gate died:\n" + g.log_tail()
    st, _, body = g.http("GET", "/healthz")
    assert (st, body) == (200, b"ok\n")
    s = g.json("/stats")
    keys = ("generation", "reloads", "reload_failures")
    assert [s[k] for k in keys] == [before[k] for k in keys], (
        "the request changed the configuration: %r -> %r"
        % ([before[k] for k in keys], [s[k] for k in keys]))
    assert s["admin"]["unauthorized"] == before["admin"]["unauthorized"] + req.unauth, (
        s["admin"], before["admin"])
    assert s["admin"]["refused"] == 0, s["admin"]
    assert is_served(g.port("web"), "127.0.0.2")
    expect_rejected(g.port("web"), "127.0.0.66")


# ---------------------------------------------------------------------------
# The other side of the line: oddities that are accepted


def test_accepted_oddities(make_gate):
    """What the catalogue does not count as bad (README): a UTF-8 BOM, CRLF
    and LF line ends mixed, blanks around values, comment lines of any
    length; the same in JSON and list files. Accepted at start and at
    reload, with the same verdicts."""
    g = make_gate("oddities")
    ini = (b"\xef\xbb\xbf; BOM first\r\n[gateway]\r\nworkers = 2\n\n[rules]  \r\n"
           b"default = deny\t\r\n  allow = 127.0.0.2  \n; " + b"c" * 5000 + b"\r\n"
           b"include = rules.json\r\nallow_file = allow.txt\n"
           b"[listener:web]\r\nbind = 127.0.0.1:$web\nbackend = echo\r\n")
    files = {"rules.json": b'\xef\xbb\xbf{\r\n  "allow": ["127.0.0.3"]\n}\r\n',
             "allow.txt": b"\xef\xbb\xbf# list\r\n  127.0.0.4 ; SBL1\r\n\r\n127.0.0.5\t# x\n"}
    g.write(ini.decode("utf-8"), files=files)
    g.start()
    web = g.port("web")
    for src in ("127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"):
        assert is_served(web, src), src
    expect_rejected(web, "127.0.0.9")
    g.reload(expect="ok")
    for src in ("127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"):
        assert is_served(web, src), src
    expect_rejected(web, "127.0.0.9")
    g.stop()
