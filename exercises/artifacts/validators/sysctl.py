"""sysctl.d files: only the keys the exercise allows.

The grading guest's boot applies these files as root (systemd-sysctl), so a
key such as kernel.modprobe, kernel.core_pattern or fs.binfmt_misc.register
would make the kernel run a program of the student's choosing as root, before
the checker. Dropping exec bits is not enough: `kernel.core_pattern =
|/usr/bin/python3 /etc/sysctl.d/x.py` ran a 0644 script as root at the first
crash in a guest. So every key a Submit's *.conf files
set must be one the exercise allows, read exactly the way systemd-sysctl 252
(Debian bookworm) reads it, as measured in a guest:

- a line ends at a newline, a carriage return or a NUL byte: a NUL does not
  hide the rest of a line from systemd-sysctl, it starts a new line;
- space, tab, CR and LF around the line, the key and the value are dropped;
  a line starting with '#' or ';' is a comment; a line without '=' is
  ignored (`-key` alone only excludes that key from globs);
- a leading '-' on an assignment only means "ignore failures";
- in the key, if the first separator is '.', dots separate and a '/' stands
  for a literal dot, otherwise '/' separates and dots are literal; empty and
  '.' components vanish, so `vm..swappiness` and `/vm/swappiness` both set
  vm.swappiness; names are case-sensitive;
- '*', '?' and '[...]' make the key a glob over /proc/sys, and then braces
  expand too (`vm.{a,b}*`);
- a UTF-8 byte-order mark is not skipped: it becomes part of the first key,
  which then names nothing (graded, and failed, rather than refused).

A key passes when every name it can stand for matches one of the allowed
patterns (fnmatch on the dotted name: the pattern's '*' matches anything,
dots included). Refused outright: a component that starts with '.' (`..`
climbs out of the allowed folder; systemd-sysctl 252 refuses to write such a
path, but nothing here relies on that), the characters `[ ] { } \\`, which
no sysctl name has and which would make the glob analysis unsound, and keys
longer than 255 characters.

Every file whose name ends in .conf is read (systemd-sysctl reads only those
directly in the folder and not starting with '.', so this is a superset);
other names are data the boot never reads.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

from exercises.artifacts.files import ArtifactFile
from exercises.manifest import SysctlValidatorSpec

MAX_REPORTED = 5
MAX_KEY_LENGTH = 255  # the longest sysctl names are under 100 characters
# What systemd-sysctl's strstrip() drops around a line, a key and a value.
BLANKS = " \t\n\r"
# Within a physical line (split at '\n'), systemd's read_line() also ends a
# line at '\r' and at NUL.
LINE_BREAKS = re.compile(rb"[\r\0]")
GLOB = frozenset("*?[")
REFUSED_CHARACTERS = frozenset("[]{}\\")
BOM = "\xef\xbb\xbf"  # U+FEFF in UTF-8, as latin-1 text: no sysctl name starts with it


@dataclass(frozen=True)
class Key:
    path: str  # normalised: "vm/swappiness", components joined by '/'
    written: str  # as the line has it, for messages

    @property
    def dotted(self) -> str:
        """vm.swappiness; a dot inside a component is written '/' (sysctl.d(5))."""
        return ".".join(part.replace(".", "/") for part in self.path.split("/"))

    @property
    def is_glob(self) -> bool:
        return any(ch in GLOB for ch in self.path)


def normalise(key: str) -> str:
    """systemd's sysctl_normalize() and path_simplify(): the /proc/sys path
    of ``key`` relative to /proc/sys, components joined by '/'."""
    first = re.search(r"[./]", key)
    if first is not None and first.group() == ".":
        key = key.translate(str.maketrans("./", "/."))
    return "/".join(part for part in key.split("/") if part not in ("", "."))


def assignments(data: bytes) -> list[tuple[int, Key]]:
    """(line number, key) of every assignment, the way systemd-sysctl splits
    and strips the file. Line numbers count newlines only (what an editor
    shows); the bytes are read as latin-1 so that none can vanish."""
    found = []
    for number, physical in enumerate(data.split(b"\n"), start=1):
        for raw in LINE_BREAKS.split(physical):
            line = raw.decode("latin-1").strip(BLANKS)
            if not line or line[0] in "#;":
                continue
            written, sep, _value = line.partition("=")
            if not sep:
                continue  # ignored by systemd-sysctl (or only excludes a key from globs)
            if written.startswith("-"):
                written = written[1:]
            written = written.strip(BLANKS)
            found.append((number, Key(normalise(written), written)))
    return found


def _covers(pattern: str, key: str) -> bool:
    """Whether every name the glob ``key`` ('*' and '?' only) can stand for
    matches ``pattern`` (fnmatch: '*' matches any string, '/' included).
    Conservative: a no can be a glob that is in fact covered."""

    @cache
    def included(i: int, j: int) -> bool:
        if i == len(key):
            return all(ch == "*" for ch in pattern[j:])
        if j == len(pattern):
            return False
        k, p = key[i], pattern[j]
        if p == "*":  # matches nothing more, or absorbs key[i], whatever it is
            return included(i, j + 1) or included(i + 1, j)
        if k == "*":  # any string, which a literal or '?' of the pattern is not
            return False
        if p == "?":
            return included(i + 1, j + 1)
        return k == p and k != "?" and included(i + 1, j + 1)

    return included(0, 0)


def _shown(text: str, limit: int = 80) -> str:
    text = text.encode("latin-1").decode("utf-8", errors="replace")
    text = "".join(ch if ch.isprintable() else "?" for ch in text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def key_problem(key: Key, allowed: Sequence[str]) -> str | None:
    """Why ``key`` may not reach the grading guest, or None."""
    if len(key.path) > MAX_KEY_LENGTH:
        return f"sets a key of {len(key.path)} characters, longer than any sysctl name"
    if any(ch in REFUSED_CHARACTERS for ch in key.path):
        return f"sets `{_shown(key.written)}`, and [ ] {{ }} \\ are not accepted in a key"
    if any(part.startswith(".") for part in key.path.split("/")):
        return (
            f"sets `{_shown(key.written)}`, whose path has a part starting with '.' "
            "(such as `..`), which is not accepted in a key"
        )
    if not key.path or key.path.startswith(BOM):
        # "= value", or a key behind a byte-order mark an editor added (which
        # systemd-sysctl does not skip): it names nothing, so it only fails.
        return None
    if any(_covers(pattern, key.path) for pattern in allowed):
        return None
    what = "names keys outside" if key.is_glob else "is not one of"
    return f"sets {_shown(key.dotted)}, which {what} the keys this exercise allows"


def validate(files: Sequence[ArtifactFile], spec: SysctlValidatorSpec) -> list[str]:
    allowed = [normalise(pattern) for pattern in spec.keys]
    problems: list[str] = []
    for item in files:
        if not item.name.endswith(".conf"):
            continue
        for number, key in assignments(item.data):
            problem = key_problem(key, allowed)
            if problem is not None:
                problems.append(f"{item.path} line {number} {problem}")
    if not problems:
        return []
    # Clauses: the platform joins them with "; " into one sentence.
    shown = problems[:MAX_REPORTED]
    if len(problems) > MAX_REPORTED:
        shown.append(f"and {len(problems) - MAX_REPORTED} more such lines")
    shown.append(f"your sysctl files may set only these keys: {', '.join(spec.keys)}")
    return shown
