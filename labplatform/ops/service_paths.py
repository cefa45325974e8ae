"""What the service user needs on disk, read from the settings as set-up sees them.

``./kernellab serve`` (and so ``./kernellab run``) runs as root until the
Procfile's processes start; it then drops to the unprivileged user kernellab.
Before it does, it runs this module, as root, with the environment the
processes will get, and applies its answer:

- ``env NAME VALUE``: settings whose default depends on who asks
  (``VM_DIR`` and ``IMAGE_CACHE_DIR`` fall back to the caller's home when it is
  not root), pinned to root's answer, so that the services use the image the
  install step built and the VM folder set-up prepared;
- ``own-dir PATH``: folders the services write (created if missing, owned by
  the service user): the data folder (SQLite and its WAL files, beat's
  schedule), the VM folder, console recordings;
- ``own-tree PATH``: a folder of which whatever root left (a VM folder written
  by an earlier run as root) is handed over too;
- ``own-file PATH``: files set-up may have created as root that the services
  write (the SQLite database and its -wal/-shm, beat's schedule), if present;
- ``read PATH``: what they only read (the code, the virtualenv, static files,
  the guest images): checked, never changed.

One line each, the kind and the path separated by a tab. A folder to hand
over that is a system folder (KERNELLAB_DATA_DIR=/var, say), or a tree that
holds the code or the virtualenv, is refused: exit status 1, nothing printed.

    python -m labplatform.ops.service_paths
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

Kind = Literal["env", "own-dir", "own-tree", "own-file", "read"]

SQLITE_SUFFIXES = ("", "-wal", "-shm", "-journal")
# Beat's schedule is a shelve: one file, or dbm's suffixed ones.
BEAT_SUFFIXES = ("", ".db", ".dat", ".dir", ".bak")


# Folders no setting may hand to the service user, whatever it says.
SYSTEM_FOLDERS = frozenset(
    Path(p)
    for p in [
        *("/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib64", "/media", "/mnt"),
        *("/opt", "/proc", "/root", "/run", "/sbin", "/srv", "/sys", "/tmp", "/usr", "/var"),  # noqa: S108 (refused)
        *("/usr/lib", "/usr/local", "/usr/share", "/var/cache", "/var/lib", "/var/log"),
        *("/var/tmp", "/var/run", "/var/spool", "/run/libvirt", "/var/lib/libvirt"),  # noqa: S108
        "/var/cache/libvirt",
    ]
)


class UnsafePath(ValueError):
    pass


@dataclass(frozen=True)
class Entry:
    kind: Kind
    value: str
    name: str = ""  # for "env": the variable

    def line(self) -> str:
        if self.kind == "env":
            return f"env\t{self.name}\t{self.value}"
        return f"{self.kind}\t{self.value}"


def _sqlite_databases(databases: dict[str, dict[str, Any]]) -> list[Path]:
    paths = []
    for database in databases.values():
        name = str(database.get("NAME") or "")
        file_backed = name and name != ":memory:" and not name.startswith("file:")
        if str(database.get("ENGINE", "")).endswith("sqlite3") and file_backed:
            paths.append(Path(name))
    return paths


def _with_suffixes(path: Path, suffixes: tuple[str, ...]) -> list[Path]:
    return [path.with_name(path.name + suffix) for suffix in suffixes]


def service_paths(settings: Any) -> list[Entry]:
    """The entries for these settings (django.conf.settings, or a stand-in)."""
    databases = _sqlite_databases(settings.DATABASES)
    beat = Path(settings.CELERY_BEAT_SCHEDULE_FILENAME)
    # SQLite writes its -wal and -shm beside the database: its folder too.
    folders = [Path(settings.DATA_DIR), *(db.parent for db in databases), beat.parent]
    files = [path for db in databases for path in _with_suffixes(db, SQLITE_SUFFIXES)]
    entries = [
        Entry("env", str(settings.VM_DIR), "VM_DIR"),
        Entry("env", str(settings.IMAGE_CACHE_DIR), "IMAGE_CACHE_DIR"),
        *(Entry("own-dir", str(folder)) for folder in dict.fromkeys(folders)),
        Entry("own-tree", str(settings.VM_DIR)),
        Entry("own-tree", str(settings.CONSOLE_RECORDING_DIR)),
        *(Entry("own-file", str(path)) for path in files),
        *(Entry("own-file", str(path)) for path in _with_suffixes(beat, BEAT_SUFFIXES)),
        Entry("read", str(settings.BASE_DIR)),
        Entry("read", sys.prefix),
        Entry("read", str(settings.STATIC_ROOT)),
        Entry("read", str(settings.IMAGE_CACHE_DIR)),
    ]
    protected = [Path(settings.BASE_DIR).resolve(), Path(sys.prefix).resolve()]
    for entry in entries:
        if entry.kind in ("own-dir", "own-tree", "own-file"):
            _check_handover(Path(entry.value), tree=entry.kind == "own-tree", protected=protected)
    return entries


def _check_handover(path: Path, *, tree: bool, protected: list[Path]) -> None:
    resolved = path.resolve()
    if resolved == Path("/") or resolved in SYSTEM_FOLDERS:
        raise UnsafePath(f"{path} is a system folder: it cannot be the service user's")
    if tree and any(p == resolved or resolved in p.parents for p in protected):
        raise UnsafePath(f"{path} holds the code or the virtualenv: it cannot be handed over")


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "labplatform.settings")
    from django.conf import settings

    try:
        entries = service_paths(settings)
    except UnsafePath as exc:
        sys.exit(f"service_paths: {exc}")
    for entry in entries:
        print(entry.line())


if __name__ == "__main__":
    main()
