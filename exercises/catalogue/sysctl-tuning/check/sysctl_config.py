"""What systemd-sysctl would apply at boot, worked out from the files alone.

Follows sysctl.d(5): *.conf files from a fixed list of folders, a file in an
earlier folder hiding a same-named file in a later one, all files processed in
the order of their names, the last assignment of a key winning. Only reads.
"""

from __future__ import annotations

import difflib
import fnmatch
import os
from dataclasses import dataclass, field
from pathlib import Path

from kernellab_check import sysctl_path

SYSCTL_DIRS = [
    Path("/etc/sysctl.d"),
    Path("/run/sysctl.d"),
    Path("/usr/local/lib/sysctl.d"),
    Path("/usr/lib/sysctl.d"),
    Path("/lib/sysctl.d"),
]
MAX_FILE_BYTES = 256 * 1024


@dataclass(frozen=True)
class Assignment:
    key: str  # normalised: "vm/swappiness"
    value: str
    path: Path
    line: int
    optional: bool  # "-key = value": failures ignored

    @property
    def dotted(self) -> str:
        return self.key.replace(".", "\0").replace("/", ".").replace("\0", "/")


@dataclass
class Parsed:
    assignments: list[Assignment] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # human sentences about bad lines


def normalise(key: str) -> str:
    return str(sysctl_path(key).relative_to("/proc/sys"))


def parse_file(path: Path) -> Parsed:
    parsed = Parsed()
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            parsed.problems.append(f"{path} is too large to be a sysctl file; skipped")
            return parsed
        text = path.read_text(errors="replace")
    except OSError as exc:
        parsed.problems.append(f"{path} cannot be read ({exc.strerror})")
        return parsed
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        key, sep, value = line.partition("=")
        if not sep:
            parsed.problems.append(
                f"{path.name} line {number}: `{line[:60]}` is not a `key = value` assignment"
            )
            continue
        key = key.strip()
        optional = key.startswith("-")
        key = key.lstrip("-").strip()
        if not key:
            parsed.problems.append(f"{path.name} line {number}: no key before '='")
            continue
        parsed.assignments.append(
            Assignment(normalise(key), " ".join(value.split()), path, number, optional)
        )
    return parsed


def boot_files() -> list[Path]:
    """The *.conf files systemd-sysctl reads at boot, in the order it reads them."""
    chosen: dict[str, Path] = {}
    for folder in SYSCTL_DIRS:
        try:
            entries = sorted(folder.iterdir())
        except OSError:
            continue
        for entry in entries:
            if entry.name.endswith(".conf") and entry.name not in chosen:
                if entry.is_file():  # follows symlinks; a dangling link is skipped
                    chosen[entry.name] = entry
                elif entry.is_symlink() and os.readlink(entry) == "/dev/null":
                    chosen[entry.name] = entry  # masks the same name in later folders
    return [chosen[name] for name in sorted(chosen) if chosen[name].is_file()]


def effective(files: list[Path]) -> tuple[dict[str, Assignment], list[str]]:
    """Key -> the assignment that wins, applying ``files`` in order."""
    winners: dict[str, Assignment] = {}
    problems: list[str] = []
    for path in files:
        parsed = parse_file(path)
        problems += parsed.problems
        for item in parsed.assignments:
            if any(ch in item.key for ch in "*?["):
                for known in list(winners):
                    if fnmatch.fnmatch(known, item.key):
                        winners[known] = item
                continue
            winners[item.key] = item
    return winners, problems


def student_files() -> list[Path]:
    """Files the student made in /etc/sysctl.d (not the distribution's link to
    /etc/sysctl.conf or its README), whatever their names."""
    found = []
    try:
        entries = sorted(Path("/etc/sysctl.d").iterdir())
    except OSError:
        return found
    for entry in entries:
        if entry.name == "README.sysctl" or not entry.is_file():
            continue
        if entry.is_symlink() and entry.resolve() == Path("/etc/sysctl.conf"):
            continue
        found.append(entry)
    return found


def key_exists(key: str) -> bool:
    return (Path("/proc/sys") / key).is_file()


def suggestion(key: str) -> str:
    """' (did you mean vm.swappiness?)' for a misspelt key, if one is close."""
    parent = (Path("/proc/sys") / key).parent
    try:
        siblings = [p.name for p in parent.iterdir()]
    except OSError:
        return ""
    close = difflib.get_close_matches(Path(key).name, siblings, n=1, cutoff=0.75)
    if not close:
        return ""
    fixed = str(Path(key).with_name(close[0]))
    return f" (did you mean {fixed.replace('/', '.')}?)"
