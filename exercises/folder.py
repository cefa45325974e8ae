"""The files of an exercise folder: a bounded, symlink-aware walk, the content
hash, and the deterministic tar.gz bundle shipped to the grading guest.

Nothing here knows what the files mean (that is manifest.py); this module
only makes sure that reading a folder cannot be made to read anything else,
or too much.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import re
import stat
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

MAX_FILE_BYTES = 2 << 20  # one file
MAX_FOLDER_BYTES = 16 << 20  # every file of one exercise, solution/ and wrong/ included
MAX_ENTRIES = 2000  # files, folders and links of one exercise
# Build products of a local run; never part of an exercise (git ignores them too).
IGNORED_DIRS = frozenset({"__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache"})
IGNORED_SUFFIXES = (".pyc",)
# Names the guest receives unquoted in tar listings and shell scripts.
SAFE_NAME = re.compile(r"^[A-Za-z0-9._@+][A-Za-z0-9._@+-]*$")

FILE_MODE = 0o644
EXECUTABLE_MODE = 0o755
DIR_MODE = 0o755
HASH_SCHEME = b"kernellab-exercise-content-v1\n"


@dataclass(frozen=True)
class Entry:
    """One thing found in an exercise folder (never followed if a link)."""

    rel: PurePosixPath
    kind: str  # "file", "dir" or "symlink"
    size: int = 0
    executable: bool = False


@dataclass(frozen=True)
class Issue:
    rel: str  # relative to the folder; "" for the folder itself
    reason: str


def walk(folder: Path) -> tuple[list[Entry], list[Issue]]:
    """Every entry under ``folder``, sorted, with what is wrong about them.

    Symbolic links are reported as links and never followed; a link whose
    target is absolute, dangling or outside the folder is an issue. Anything
    that is not a file, folder or link (a FIFO, a device) is an issue. The walk
    stops after MAX_ENTRIES entries.
    """
    entries: list[Entry] = []
    issues: list[Issue] = []
    root_real = folder.resolve()
    total = 0
    pending = [PurePosixPath()]
    while pending:
        here = pending.pop()
        try:
            children = sorted(os.scandir(folder / here), key=lambda e: e.name)
        except OSError as exc:
            issues.append(Issue(str(here) if here.parts else "", f"cannot list: {exc.strerror}"))
            continue
        for child in children:
            rel = here / child.name
            if child.name in IGNORED_DIRS or child.name.endswith(IGNORED_SUFFIXES):
                continue
            if len(entries) >= MAX_ENTRIES:
                issues.append(Issue("", f"more than {MAX_ENTRIES} files and folders"))
                return sorted(entries, key=lambda e: e.rel), issues
            if not SAFE_NAME.match(child.name):
                issues.append(
                    Issue(str(rel), "name must use only letters, digits and . _ @ + - characters")
                )
            try:
                info = child.stat(follow_symlinks=False)
            except OSError as exc:
                issues.append(Issue(str(rel), f"cannot read: {exc.strerror}"))
                continue
            if stat.S_ISLNK(info.st_mode):
                problem = _link_problem(folder, root_real, rel)
                if problem:
                    issues.append(Issue(str(rel), problem))
                entries.append(Entry(rel, "symlink"))
            elif stat.S_ISDIR(info.st_mode):
                entries.append(Entry(rel, "dir"))
                pending.append(rel)
            elif stat.S_ISREG(info.st_mode):
                if info.st_size > MAX_FILE_BYTES:
                    issues.append(
                        Issue(
                            str(rel),
                            f"is {info.st_size} bytes; a file may have at most {MAX_FILE_BYTES}",
                        )
                    )
                total += info.st_size
                executable = bool(info.st_mode & stat.S_IXUSR)
                entries.append(Entry(rel, "file", info.st_size, executable))
            else:
                issues.append(Issue(str(rel), "is not a regular file, folder or symbolic link"))
    if total > MAX_FOLDER_BYTES:
        issues.append(
            Issue(
                "", f"holds {total} bytes of files; an exercise may have at most {MAX_FOLDER_BYTES}"
            )
        )
    return sorted(entries, key=lambda e: e.rel), issues


def _link_problem(folder: Path, root_real: Path, rel: PurePosixPath) -> str:
    path = folder / rel
    try:
        target = os.readlink(path)
    except OSError as exc:
        return f"cannot read the link: {exc.strerror}"
    if os.path.isabs(target):
        return f"is a symbolic link to the absolute path {target!r}; use a relative link"
    resolved = path.resolve()
    if not resolved.is_relative_to(root_real):
        return f"is a symbolic link to {target!r}, outside the exercise folder"
    if not resolved.exists():
        return f"is a dangling symbolic link (to {target!r})"
    return ""


# -- content hash and bundle ------------------------------------------------------


@dataclass(frozen=True)
class BundleEntry:
    """A file or folder as it appears in the bundle (and in the content hash)."""

    arcname: str  # POSIX path inside the tar, e.g. "check/check.py"
    data: bytes = b""
    executable: bool = False
    is_dir: bool = False

    @property
    def mode(self) -> int:
        if self.is_dir:
            return DIR_MODE
        return EXECUTABLE_MODE if self.executable else FILE_MODE


def content_hash(entries: Iterable[BundleEntry]) -> str:
    """sha256 over every entry's kind, path, mode and bytes, in path order.

    Each field is length-delimited, so no two different sets of files can
    feed the digest the same byte stream.
    """
    digest = hashlib.sha256(HASH_SCHEME)
    for entry in sorted(entries, key=lambda e: e.arcname):
        name = entry.arcname.encode()
        kind = b"d" if entry.is_dir else b"f"
        digest.update(b"%s %d:%s %o %d:" % (kind, len(name), name, entry.mode, len(entry.data)))
        digest.update(entry.data)
    return digest.hexdigest()


def make_bundle(entries: Iterable[BundleEntry]) -> bytes:
    """A reproducible tar.gz: entries sorted by path, every mtime 0, owner
    root (uid/gid 0), modes normalised, and a gzip header without name or time.
    The same entries always give the same bytes."""
    raw = io.BytesIO()
    with (
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=9, mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for entry in sorted(entries, key=lambda e: e.arcname):
            info = tarfile.TarInfo(entry.arcname)
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            info.mode = entry.mode
            if entry.is_dir:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(entry.data)
                tar.addfile(info, io.BytesIO(entry.data))
    return raw.getvalue()


def tree_tar(source: Path) -> bytes:
    """A host folder as a tar.gz, owner root, modes kept (``__pycache__`` left
    out): how development tools and tests copy a solution or a wrong answer
    into a guest."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for path in sorted(source.rglob("*")):
            if "__pycache__" in path.parts:
                continue
            info = tar.gettarinfo(str(path), arcname=str(path.relative_to(source)))
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            if path.is_file():
                with path.open("rb") as handle:
                    tar.addfile(info, handle)
            else:
                tar.addfile(info)
    return buffer.getvalue()
