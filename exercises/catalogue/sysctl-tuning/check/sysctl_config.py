"""What the boot of Submit's machine will set, worked out from the files.

At Submit the platform copies the student's /etc/sysctl.d into a clean
machine (regular files only: links, FIFOs and devices are skipped, and the
machine's own /etc/sysctl.d, with Debian's link to /etc/sysctl.conf, is
replaced), reboots it, and systemd-sysctl applies the files. This module
works that boot out from the files alone, so that Check says what Submit
will find. Every rule below was measured on the lab image (Debian bookworm:
systemd 252, kernel 6.1):

Which files: the regular *.conf files directly in /etc/sysctl.d (not
starting with '.', and with a name Submit copies; not at all when
/etc/sysctl.d is itself a link), and the system's own in
/usr/local/lib/sysctl.d and /usr/lib/sysctl.d (as installed: Submit's
machine has the image's, whatever this one has); a
file in /etc hides a same-named one in a system folder; all are read in the
order of their names. /run/sysctl.d is emptied by a reboot. /etc/sysctl.conf
is not read (only Debian's link 99-sysctl.conf made it so, and Submit does
not carry links).

How systemd-sysctl reads them: a line ends at a newline, a CR or a NUL;
blanks around it are dropped (a UTF-8 byte-order mark is not: it becomes
part of the first key); '#' or ';' starts a comment; `-key = value`
ignores failures; `-key` alone excludes the key from globs. A key's first
separator decides: '.' separates and '/' is a literal dot, or the other way
round; empty and '.' parts vanish (`vm..swappiness` is vm.swappiness). Every
key is applied once, with its last value, at the place where that value was
first given: a later line that repeats a key's current value does not move
it (so `vm.dirty_ratio = 15` restated after a `vm.dirty_bytes` line does not
win). A glob key (* ? [ ]) writes every match, sorted, except keys that have
an explicit line of their own. A value that reads exactly as the variable
already does is not written at all.

What the kernel does with a write (vm/page-writeback.c, net/ipv4/devinet.c):
numbers are parsed like C (`012` is 10 in octal, `0xa` is 10) and only the
first one counts; vm.dirty_ratio and vm.dirty_bytes are one setting in two
units: writing one with a changed value sets the other to 0; the same for
vm.dirty_background_ratio and vm.dirty_background_bytes (on any write);
net.ipv4.ip_forward and net.ipv4.conf.all.forwarding are one variable.

Only reads; never applies anything.
"""

from __future__ import annotations

import difflib
import functools
import glob
import hashlib
import os
import re
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

PROC_SYS = Path("/proc/sys")
ETC_DIR = Path("/etc/sysctl.d")
SYSTEM_DIRS = [Path("/usr/local/lib/sysctl.d"), Path("/usr/lib/sysctl.d"), Path("/lib/sysctl.d")]
OTHER_PLACES = [Path("/etc/sysctl.conf"), Path("/run/sysctl.d")]
DPKG_INFO = Path("/var/lib/dpkg/info")
MAX_FILE_BYTES = 256 * 1024  # read no more of a file than this

# What Submit accepts (mirrors exercise.toml; a unit test keeps them equal).
ALLOWED_KEYS = ["vm.*", "net.ipv4.*", "net.ipv6.*"]
SUBMIT_MAX_BYTES = 65536
SUBMIT_MAX_FILES = 32
# The names Submit copies (exercises/artifacts/archive.py skips any other).
SUBMIT_NAME = re.compile(r"^[A-Za-z0-9._@+,=%~ -]{1,255}$")

BLANKS = " \t\n\r"  # what systemd's strstrip() drops
LINE_BREAKS = re.compile(rb"[\r\0]")
GLOB = frozenset("*?[")
REFUSED_CHARACTERS = frozenset("[]{}\\")

# Variables modelled, with their value at boot before any file (6.1 defaults).
SWAPPINESS = "vm/swappiness"
DIRTY_RATIO = "vm/dirty_ratio"
DIRTY_BYTES = "vm/dirty_bytes"
BG_RATIO = "vm/dirty_background_ratio"
BG_BYTES = "vm/dirty_background_bytes"
IP_FORWARD = "net/ipv4/ip_forward"
ALIASES = {"net/ipv4/conf/all/forwarding": IP_FORWARD}
DEFAULTS = {
    SWAPPINESS: 60,
    DIRTY_RATIO: 20,
    DIRTY_BYTES: 0,
    BG_RATIO: 10,
    BG_BYTES: 0,
    IP_FORWARD: 0,
}
INT_MIN, INT_MAX, ULONG_MAX = -(1 << 31), (1 << 31) - 1, (1 << 64) - 1
# variable -> (min, max) accepted by the kernel
RANGES = {
    SWAPPINESS: (0, 200),
    DIRTY_RATIO: (0, 100),
    DIRTY_BYTES: (2 * 4096, ULONG_MAX),
    BG_RATIO: (0, 100),
    BG_BYTES: (1, ULONG_MAX),
    IP_FORWARD: (INT_MIN, INT_MAX),
}
# Writing the first (a change, for the dirty_* pair) sets the second to 0.
PARTNERS = {
    DIRTY_RATIO: DIRTY_BYTES,
    DIRTY_BYTES: DIRTY_RATIO,
    BG_RATIO: BG_BYTES,
    BG_BYTES: BG_RATIO,
}
ONLY_ON_CHANGE = {DIRTY_RATIO, DIRTY_BYTES}


def dotted(key: str) -> str:
    """vm/swappiness -> vm.swappiness (a dot inside a part is written '/')."""
    return ".".join(part.replace(".", "/") for part in key.split("/"))


def normalise(key: str) -> str:
    """systemd's sysctl_normalize() and path_simplify(): the path of ``key``
    below /proc/sys, parts joined by '/'."""
    first = re.search(r"[./]", key)
    if first is not None and first.group() == ".":
        key = key.translate(str.maketrans("./", "/."))
    return "/".join(part for part in key.split("/") if part not in ("", "."))


def is_glob(key: str) -> bool:
    return any(ch in GLOB for ch in key)


def kernel_number(value: str) -> int | None:
    """The number the kernel's proc_dointvec/proc_doulongvec take from
    ``value`` (systemd adds a newline), or None if it refuses the write.
    Leading blanks are skipped; base as in C (0x.., 0..); the number must be
    followed by a space, a tab or the end; anything after it is ignored."""
    text = value.lstrip(" \t\n\v\f\r") + "\n"
    negative = text.startswith("-")
    digits = text[1:] if negative else text
    match = re.match(r"0[xX]([0-9a-fA-F]+)|(0[0-7]*)|([1-9][0-9]*)", digits)
    if match is None:
        return None
    end = digits[match.end()]
    if end not in " \t\n" or match.end() + negative >= 21:
        return None
    hexa, octal, decimal = match.groups()
    number = int(hexa, 16) if hexa else int(octal, 8) if octal else int(decimal)
    if number > ULONG_MAX:
        return None
    return -number if negative else number


# -- reading files ----------------------------------------------------------------------


@dataclass(frozen=True)
class Assignment:
    key: str  # normalised: "vm/swappiness"
    value: str | None  # None: a "-key" line, which only excludes the key from globs
    path: Path
    line: int
    optional: bool  # "-key = value": failures ignored

    @property
    def dotted(self) -> str:
        return dotted(self.key)

    @property
    def where(self) -> str:
        return f"{self.path.name} line {self.line}"


@dataclass
class Parsed:
    assignments: list[Assignment] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # human sentences about bad lines


def read_bytes(path: Path) -> bytes | None:
    """The content of a regular file (a link, FIFO or device is not read)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return os.read(fd, MAX_FILE_BYTES)
    finally:
        os.close(fd)


def parse_text(data: bytes, path: Path) -> Parsed:
    parsed = Parsed()
    for number, physical in enumerate(data.split(b"\n"), start=1):
        for raw in LINE_BREAKS.split(physical):
            line = raw.decode("utf-8", errors="surrogateescape").strip(BLANKS)
            if not line or line[0] in "#;":
                continue
            key, sep, value = line.partition("=")
            if not sep:
                if line.startswith("-"):  # excludes the key from glob lines
                    key = normalise(line[1:].strip(BLANKS))
                    parsed.assignments.append(Assignment(key, None, path, number, True))
                else:
                    parsed.problems.append(
                        f"{path.name} line {number}: `{shown(line, 60)}` is not a "
                        "`key = value` assignment, so it is ignored"
                    )
                continue
            optional = key.startswith("-")
            key = normalise((key[1:] if optional else key).strip(BLANKS))
            if not key:
                parsed.problems.append(f"{path.name} line {number}: no key before '='")
                continue
            parsed.assignments.append(Assignment(key, value.strip(BLANKS), path, number, optional))
    return parsed


def parse_file(path: Path) -> Parsed:
    data = read_bytes(path)
    if data is None:
        return Parsed(problems=[f"{path} is not a regular file that can be read"])
    return parse_text(data, path)


def shown(text: str, limit: int = 80) -> str:
    text = text.encode("utf-8", errors="surrogateescape").decode("utf-8", errors="replace")
    text = "".join(ch if ch.isprintable() else "?" for ch in text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


# -- which files ------------------------------------------------------------------------


def reads_at_boot(name: str) -> bool:
    return name.endswith(".conf") and not name.startswith(".")


def student_files() -> list[Path]:
    """The files of the student's that Submit carries and its boot reads:
    regular files directly in /etc/sysctl.d, named *.conf, not hidden. None
    when /etc/sysctl.d is itself a link (Submit does not follow it)."""
    found: list[Path] = []
    if ETC_DIR.is_symlink():
        return found
    for entry in entries(ETC_DIR):
        if reads_at_boot(entry.name) and SUBMIT_NAME.match(entry.name) and is_regular(entry):
            found.append(entry)
    return found


def entries(folder: Path) -> list[Path]:
    try:
        return sorted(folder.iterdir())
    except OSError:
        return []


def is_regular(path: Path) -> bool:
    try:
        return stat.S_ISREG(path.lstat().st_mode)
    except OSError:
        return False


def not_counted() -> list[str]:
    """Sentences about what is in /etc/sysctl.d (or near it) but does not
    count: links, non-.conf names, hidden names, folders, FIFOs."""
    if ETC_DIR.is_symlink():
        return [
            f"{ETC_DIR} is a link (to {shown(os.readlink(ETC_DIR), 60)}): Submit copies only "
            "regular files and folders, so nothing in it counts; make it a real folder"
        ]
    notes = []
    for entry in entries(ETC_DIR):
        name = entry.name
        if name == "README.sysctl":
            continue
        if entry.is_symlink():
            if name == "99-sysctl.conf" and os.readlink(entry) in (
                "../sysctl.conf",
                "/etc/sysctl.conf",
            ):
                continue  # Debian's; /etc/sysctl.conf is explained on its own
            notes.append(
                f"{name} is a link (to {shown(os.readlink(entry), 60)}): Submit copies only "
                "regular files, so it does not count; put the file itself in /etc/sysctl.d"
            )
        elif entry.is_dir():
            notes.append(f"{name}/ is a folder: systemd-sysctl does not look inside folders")
        elif not is_regular(entry):
            notes.append(f"{name} is not a regular file: Submit skips it and it does not count")
        elif not SUBMIT_NAME.match(name):
            notes.append(
                f"{shown(name, 60)} is not copied by Submit: a name may have only letters, "
                "digits, spaces and . _ @ + , = % ~ -"
            )
        elif not name.endswith(".conf"):
            notes.append(f"{name} is ignored at boot because only *.conf files are read")
        elif name.startswith("."):
            notes.append(f"{name} is ignored at boot because its name starts with '.'")
    return notes


def stock_system_files() -> dict[str, str]:
    """{path: md5} of the sysctl.d files the installed packages ship."""
    found: dict[str, str] = {}
    for info in sorted(DPKG_INFO.glob("*.md5sums")):
        try:
            data = info.read_bytes()
        except OSError:
            continue
        if b"sysctl.d/" not in data:
            continue
        for line in data.decode(errors="replace").splitlines():
            digest, _, name = line.partition("  ")
            if "/sysctl.d/" in f"/{name}":
                found["/" + name.strip()] = digest.strip()
    return found


def md5_of(path: Path) -> str | None:
    data = read_bytes(path)
    return None if data is None else hashlib.md5(data, usedforsecurity=False).hexdigest()


def system_files() -> tuple[list[Path], list[Path]]:
    """The system folders' *.conf files as installed (which Submit's clean
    machine has too), and those that are not (added or changed here)."""
    stock = stock_system_files()
    mine: list[Path] = []
    other: list[Path] = []
    seen: set[str] = set()
    for folder in SYSTEM_DIRS:
        for entry in entries(folder):
            real = os.path.realpath(entry)
            if not reads_at_boot(entry.name) or real in seen:
                continue
            seen.add(real)
            if stock.get(real) is not None and stock.get(real) == md5_of(Path(real)):
                mine.append(entry)
            else:
                other.append(entry)
    return mine, other


def boot_files() -> list[Path]:
    """The files Submit's reboot reads, in the order it reads them."""
    chosen = {path.name: path for path in student_files()}
    for path in system_files()[0]:
        chosen.setdefault(path.name, path)
    return [chosen[name] for name in sorted(chosen)]


# -- the boot ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    value: int
    by: Assignment
    how: str  # why the variable has this value, as a sentence


@dataclass
class Boot:
    """What a boot leaves the modelled variables at, and why."""

    values: dict[str, int] = field(default_factory=lambda: dict(DEFAULTS))
    changes: dict[str, Change] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @staticmethod
    def variable(key: str) -> str:
        key = normalise(key)
        return ALIASES.get(key, key)

    def value(self, key: str) -> int:
        return self.values[self.variable(key)]

    def change(self, key: str) -> Change | None:
        return self.changes.get(self.variable(key))

    def explain(self, key: str) -> str:
        """'vm.dirty_ratio would be 0: ...' for a modelled key."""
        name = dotted(self.variable(key))
        change = self.change(key)
        if change is None:
            return f"{name} would stay at its default, {self.value(key)} (no file sets it)"
        return f"{name} would be {change.value}, because {change.how}"

    def write(self, key: str, item: Assignment) -> None:
        """systemd-sysctl writes ``item``'s value to ``key`` (an expansion
        of item.key when that is a glob)."""
        variable = ALIASES.get(key, key)
        if variable not in self.values or item.value is None:
            return
        if item.value == str(self.values[variable]):
            return  # systemd-sysctl does not write a value the file already reads
        number = kernel_number(item.value)
        low, high = RANGES[variable]
        if number is None or not low <= number <= high:
            self.problems.append(
                f"{item.where}: the kernel refuses `{shown(item.value, 40)}` for {dotted(key)}"
            )
            return
        if variable in ONLY_ON_CHANGE and number == self.values[variable]:
            return  # the kernel sees no change: nothing else moves
        how = f"{item.where} sets {shown(item.dotted, 60)} = {shown(item.value, 40)}"
        if item.key != key:
            how += f", which covers {dotted(key)}"
        if key != variable:
            how += f", the same kernel variable as {dotted(variable)}"
        self.values[variable] = number
        self.changes[variable] = Change(number, item, how)
        partner = PARTNERS.get(variable)
        if partner is not None and self.values[partner] != 0:
            self.values[partner] = 0
            self.changes[partner] = Change(
                0,
                item,
                f"{how}, and then the kernel sets {dotted(partner)} to 0 (the two are one "
                "limit in two units: only the one written last is kept)",
            )


def options(files: Iterable[Path]) -> tuple[dict[str, Assignment], list[str]]:
    """Key -> the assignment systemd-sysctl applies, in the order it applies them."""
    chosen: dict[str, Assignment] = {}
    problems: list[str] = []
    for path in files:
        parsed = parse_file(path)
        problems += parsed.problems
        for item in parsed.assignments:
            existing = chosen.get(item.key)
            if existing is not None:
                if existing.value == item.value:
                    continue  # the same value again: the earlier place stands
                del chosen[item.key]
            chosen[item.key] = item
    return chosen, problems


def expand(key: str) -> list[str]:
    """The /proc/sys keys a glob key names, sorted (as glob(3) returns them)."""
    pattern = str(PROC_SYS / key)
    return sorted(str(Path(p).relative_to(PROC_SYS)) for p in glob.glob(pattern))


def boot(files: Iterable[Path]) -> Boot:
    """Apply ``files`` (in order) to a freshly booted kernel, on paper."""
    chosen, problems = options(files)
    outcome = Boot(problems=problems)
    for item in chosen.values():
        if item.value is None:
            continue
        if is_glob(item.key):
            for key in expand(item.key):
                if key not in chosen:  # an explicit line of its own beats a glob
                    outcome.write(key, item)
        else:
            outcome.write(item.key, item)
    return outcome


# -- what Submit will refuse ---------------------------------------------------------------


def covers(pattern: str, key: str) -> bool:
    """Whether every name the glob ``key`` ('*' and '?') can stand for
    matches ``pattern`` (fnmatch: '*' matches anything, '/' included);
    the platform's validator decides the same way."""

    @functools.cache
    def included(i: int, j: int) -> bool:
        if i == len(key):
            return all(ch == "*" for ch in pattern[j:])
        if j == len(pattern):
            return False
        k, p = key[i], pattern[j]
        if p == "*":
            return included(i, j + 1) or included(i + 1, j)
        if k == "*":
            return False
        if p == "?":
            return included(i + 1, j + 1)
        return k == p and k != "?" and included(i + 1, j + 1)

    return included(0, 0)


def key_allowed(key: str) -> bool:
    """Whether Submit accepts a line setting the normalised ``key``."""
    if len(key.encode("utf-8", errors="surrogateescape")) > 255:
        return False
    if any(ch in REFUSED_CHARACTERS for ch in key):
        return False
    if any(part.startswith(".") for part in key.split("/")):
        return False
    if not key or key.startswith("\ufeff"):
        return True  # names nothing: graded (it fails), not refused
    return any(covers(normalise(p), key) for p in ALLOWED_KEYS)


def submit_refusals() -> list[str]:
    """Why Submit would refuse this /etc/sysctl.d (caps and allowed keys)."""
    problems: list[str] = []
    total = count = 0
    if ETC_DIR.is_symlink():
        return problems
    for root, dirs, names in os.walk(ETC_DIR):
        dirs[:] = [d for d in dirs if not Path(root, d).is_symlink()]
        for name in names:
            path = Path(root, name)
            if SUBMIT_NAME.match(name) and is_regular(path):
                count += 1
                total += path.lstat().st_size
                if name.endswith(".conf"):
                    for item in parse_file(path).assignments:
                        if item.value is not None and item.key and not key_allowed(item.key):
                            problems.append(
                                f"{path} line {item.line} sets {shown(item.dotted, 60)}, which "
                                "this exercise does not allow (allowed: "
                                + ", ".join(ALLOWED_KEYS)
                                + ")"
                            )
    if total > SUBMIT_MAX_BYTES:
        problems.append(
            f"/etc/sysctl.d holds {total} bytes of files; Submit accepts at most "
            f"{SUBMIT_MAX_BYTES // 1024} KiB"
        )
    if count > SUBMIT_MAX_FILES:
        problems.append(
            f"/etc/sysctl.d holds {count} files; Submit accepts at most {SUBMIT_MAX_FILES}"
        )
    return problems


# -- elsewhere ------------------------------------------------------------------------------


def elsewhere(keys: Iterable[str]) -> list[str]:
    """Sentences about places that set one of ``keys`` but that Submit does
    not carry (/etc/sysctl.conf, /run/sysctl.d, files added to the system
    folders)."""
    wanted = {ALIASES.get(normalise(k), normalise(k)) for k in keys}
    places: list[Path] = []
    for place in OTHER_PLACES:
        if place.is_dir():
            places += [p for p in entries(place) if reads_at_boot(p.name)]
        elif is_regular(place):
            places.append(place)
    places += system_files()[1]
    notes = []
    for path in places:
        hits = sorted(
            {
                item.dotted
                for item in parse_file(path).assignments
                if ALIASES.get(item.key, item.key) in wanted
            }
        )
        if hits:
            notes.append(
                f"{path} sets {', '.join(hits)}, but it does not count: Submit copies only "
                "the regular files of /etc/sysctl.d into a clean machine"
            )
    return notes


def key_exists(key: str) -> bool:
    return (PROC_SYS / key).is_file()


def suggestion(key: str) -> str:
    """' (did you mean vm.swappiness?)' for a misspelt key, if one is close."""
    parent = (PROC_SYS / key).parent
    try:
        siblings = [p.name for p in parent.iterdir()]
    except OSError:
        return ""
    close = difflib.get_close_matches(Path(key).name, siblings, n=1, cutoff=0.75)
    if not close:
        return ""
    return f" (did you mean {dotted(str(Path(key).with_name(close[0])))}?)"


def misspelt(files: Iterable[Path], *, optional: bool = True) -> list[str]:
    """Sentences about keys that do not exist (``optional``: also on `-key`
    lines, whose failures systemd-sysctl does not report)."""
    notes = []
    for path in files:
        for item in parse_file(path).assignments:
            if item.value is None or is_glob(item.key) or key_exists(item.key):
                continue
            if item.optional and not optional:
                continue
            if item.key.startswith("\ufeff"):
                notes.append(
                    f"{item.where} starts with an invisible byte-order mark (U+FEFF, added by "
                    "some editors), which systemd-sysctl takes as part of the key, so "
                    f"`{shown(item.dotted.lstrip(chr(0xFEFF)), 60)}` is not set; save the file "
                    "without it"
                )
                continue
            notes.append(
                f"{item.where} sets `{shown(item.dotted, 60)}`, which does not exist"
                + suggestion(item.key)
            )
    return notes
