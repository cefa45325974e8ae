"""The guest's kernel console (ttyS0) as the host captured it to a file."""

from __future__ import annotations

from pathlib import Path


def log_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:  # none yet, or one virtlogd rotated (root's, 0600)
        return 0


def log_since(path: Path, offset: int, limit: int = 1 << 20) -> str:
    """What the guest printed on its kernel console since ``offset`` (the
    file may have been rotated meanwhile: then from its start)."""
    try:
        with path.open("rb") as handle:
            size = handle.seek(0, 2)
            start = offset if offset <= size else 0
            start = max(start, size - limit)
            handle.seek(start)
            return handle.read(limit).decode("utf-8", errors="replace")
    except OSError:  # none yet, or one virtlogd rotated (root's, 0600)
        return ""
