"""The host's reading of what a student's guest sent: a hostile tar.gz in, a
clean archive out, or a refusal that says why.

Only what the manifest declares passes: folders, and regular files whose
names match the artifact's ``include`` patterns, under the declared paths.
Links, devices and FIFOs are skipped (and the student is told); owners become
root, modes 0644 for files (0755 for the names ``programs`` matches) and 0755
for folders, so no set-id or executable file can reach the grading guest by
accident. Sizes and counts are capped per artifact, and reading stops as soon
as a cap is passed, however the archive was made.
"""

from __future__ import annotations

import fnmatch
import gzip
import hashlib
import io
import re
import tarfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

from exercises.artifacts.files import ArtifactFile
from exercises.artifacts.validators import validate
from exercises.manifest import ArtifactSpec

# A name the grading guest gets: printable, no control characters.
SAFE_PART = re.compile(r"^[A-Za-z0-9._@+,=%~ -]{1,255}$")
MAX_MEMBERS = 5000  # of the raw archive, whatever they are
MAX_NOTES = 20
FILE_MODE, PROGRAM_MODE, DIR_MODE = 0o644, 0o755, 0o755


class ArtifactsRefused(Exception):
    """The files cannot be graded; ``message`` tells the student why."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class CleanArchive:
    data: bytes  # tar.gz, deterministic for the same files
    sha256: str
    size: int  # bytes of all files, uncompressed
    files: tuple[ArtifactFile, ...]
    notes: tuple[str, ...]  # what was left out, and why

    def listing(self) -> list[dict[str, object]]:
        return [
            {"path": f.path, "size": len(f.data), "executable": f.executable} for f in self.files
        ]


def human_size(size: int) -> str:
    if size < 1 << 10:
        return f"{size} bytes"
    if size < 1 << 20:
        return f"{size / (1 << 10):.1f} KiB"
    return f"{size / (1 << 20):.1f} MiB"


def _spec_for(parts: tuple[str, ...], specs: Sequence[ArtifactSpec]) -> ArtifactSpec | None:
    for spec in specs:
        root = PurePosixPath(spec.path).parts[1:]
        if parts[: len(root)] == root:
            return spec
    return None


def _matches(name: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


def _what(member: tarfile.TarInfo) -> str:
    if member.issym():
        return "a symbolic link"
    if member.islnk():
        return "a hard link"
    if member.isfifo():
        return "a FIFO"
    if member.ischr() or member.isblk():
        return "a device"
    return "not a regular file"


def sanitize(
    raw: bytes, specs: Sequence[ArtifactSpec], *, reported_size: int | None = None
) -> CleanArchive:
    """Read ``raw`` (a tar.gz from a guest) under the artifact ``specs``;
    raise ArtifactsRefused for what cannot be graded (too large, too many
    files, unreadable, a validator's findings)."""
    notes: list[str] = []
    dirs: dict[str, ArtifactSpec] = {}
    files: dict[str, ArtifactFile] = {}
    sizes = {spec.path: 0 for spec in specs}
    counts = {spec.path: 0 for spec in specs}
    members = 0
    try:
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r|gz") as tar:
            for member in tar:
                members += 1
                if members > MAX_MEMBERS:
                    raise ArtifactsRefused(
                        f"Your files hold more than {MAX_MEMBERS} entries; that cannot be graded."
                    )
                parts = PurePosixPath(member.name.lstrip("/")).parts
                parts = tuple(p for p in parts if p != ".")
                if not parts or ".." in parts:
                    continue
                spec = _spec_for(parts, specs)
                path = "/" + "/".join(parts)
                if spec is None:
                    continue  # not declared: never collected
                if not all(SAFE_PART.match(p) for p in parts):
                    _note(
                        notes, f"Skipped a file in {spec.path} whose name has unusual characters."
                    )
                    continue
                if member.isdir():
                    dirs[path] = spec
                    continue
                if not member.isreg():
                    _note(notes, f"Skipped {path}: {_what(member)}; only regular files are graded.")
                    continue
                if path != spec.path and not _matches(parts[-1], spec.include):
                    continue  # collected by mistake or by a lying guest: not graded
                sizes[spec.path] += member.size
                counts[spec.path] += 1
                _within_caps(spec, sizes[spec.path], counts[spec.path], reported_size)
                handle = tar.extractfile(member)
                data = handle.read(member.size + 1) if handle is not None else b""
                if len(data) != member.size:
                    raise ArtifactsRefused("Your files could not be read whole; please try again.")
                files[path] = ArtifactFile(path, data, _matches(parts[-1], spec.programs))
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise ArtifactsRefused(
            f"Your files could not be read ({type(exc).__name__}); please try again."
        ) from exc
    for spec in specs:
        findings = validate(spec, [f for p, f in files.items() if _spec_for(_parts(p), [spec])])
        if findings:
            raise ArtifactsRefused(
                f"Your {spec.path} cannot be graded: " + "; ".join(findings) + "."
            )
    for path in list(dirs):  # keep the folders that lead to a kept file, and the roots
        spec = dirs[path]
        if path != spec.path and not any(f.startswith(path + "/") for f in files):
            del dirs[path]
    data = _build(sorted(dirs), [files[p] for p in sorted(files)])
    return CleanArchive(
        data=data,
        sha256=hashlib.sha256(data).hexdigest(),
        size=sum(len(f.data) for f in files.values()),
        files=tuple(files[p] for p in sorted(files)),
        notes=tuple(notes),
    )


def _parts(path: str) -> tuple[str, ...]:
    return PurePosixPath(path).parts[1:]


def _note(notes: list[str], text: str) -> None:
    if len(notes) < MAX_NOTES and text not in notes:
        notes.append(text)


def _within_caps(spec: ArtifactSpec, size: int, count: int, reported_size: int | None) -> None:
    if size > spec.max_bytes:
        shown = max(size, reported_size or 0)
        raise ArtifactsRefused(
            f"Your {spec.path} is {human_size(shown)}{' or more' if shown == size else ''}; "
            f"the limit is {human_size(spec.max_bytes)}. Remove what does not need grading."
        )
    if count > spec.max_files:
        raise ArtifactsRefused(
            f"Your {spec.path} holds more than {spec.max_files} files; the limit is "
            f"{spec.max_files}. Remove what does not need grading."
        )


def too_large(specs: Sequence[ArtifactSpec], reported_size: int | None) -> ArtifactsRefused:
    """The refusal when the guest's archive is larger than anything allowed."""
    limit = sum(spec.max_bytes for spec in specs)
    paths = ", ".join(spec.path for spec in specs)
    size = f" are {human_size(reported_size)};" if reported_size else " are too large;"
    return ArtifactsRefused(
        f"Your files ({paths}){size} the limit is {human_size(limit)}. "
        "Remove what does not need grading."
    )


def _build(dirs: list[str], files: list[ArtifactFile]) -> bytes:
    """A deterministic tar.gz: sorted, root-owned, fixed modes, no times."""
    body = io.BytesIO()
    with tarfile.open(fileobj=body, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in dirs:
            info = tarfile.TarInfo(path.lstrip("/"))
            info.type = tarfile.DIRTYPE
            info.mode = DIR_MODE
            tar.addfile(_owned(info))
        for item in files:
            info = tarfile.TarInfo(item.path.lstrip("/"))
            info.size = len(item.data)
            info.mode = PROGRAM_MODE if item.executable else FILE_MODE
            tar.addfile(_owned(info), io.BytesIO(item.data))
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as gz:
        gz.write(body.getvalue())
    return out.getvalue()


def _owned(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    info.mtime = 0
    return info
