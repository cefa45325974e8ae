"""The warm pool: guests booted ahead of time and saved to disk, per host.

A lab start claims one saved guest by renaming its folder into the VM's
folder (atomic: two workers cannot claim the same entry) and restores it,
which takes under a second instead of a full boot. Each entry is its own
boot, used once: students never share a boot (KASLR offset, random state).
libvirt insists that a restored guest keeps its saved name and uuid, which is
why a VM records its domain uuid instead of deriving it.

Folder of an entry: ``<VM_DIR>/pool/<profile>/<domain-uuid>/``, a
``GuestFolder`` with its saved memory. On claim the shell log of its boot is
removed (the prompt it shows is the pool's, not the student's); its kernel log
stays: it is this guest's boot, which the student may read.

This module is the pool's storage; booting and saving entries is
``vms.guests``' job, like every other way of preparing a guest.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from vms.guest_folder import GuestFolder
from vms.images import BuiltImage

log = logging.getLogger(__name__)

POOL_VM_ID = "pool"  # metadata vm-id of a guest being booted for the pool


@dataclass(frozen=True)
class Profile:
    """What must match for a saved guest to serve a VM."""

    image: BuiltImage
    virt_type: str
    memory_mib: int
    vcpus: int

    @property
    def key(self) -> str:
        text = f"{self.image.hash}:{self.virt_type}:{self.memory_mib}:{self.vcpus}"
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def directory(self) -> Path:
        return Path(settings.VM_DIR) / "pool" / self.key


@dataclass(frozen=True)
class SavedGuest:
    """A booted guest saved to disk, ready to be restored in ``folder``.
    A pool entry is restored once (its state file is removed then); a trial's
    pristine guest (exercises.trial) is kept and restored again and again."""

    domain_uuid: uuid.UUID
    folder: GuestFolder
    reusable: bool = False


def claim(profile: Profile, destination: GuestFolder) -> SavedGuest | None:
    """Move one ready entry to ``destination``; None when the pool is empty."""
    if not profile.directory.is_dir():
        return None
    destination.directory.parent.mkdir(parents=True, exist_ok=True)
    for entry in sorted(profile.directory.iterdir(), key=lambda p: p.stat().st_mtime):
        if entry.name.endswith(".tmp") or not GuestFolder(entry).state_file.is_file():
            continue
        try:
            os.rename(entry, destination.directory)
        except OSError:
            continue  # another worker took it, or destination exists: try the next
        destination.shell_log.unlink(missing_ok=True)
        return SavedGuest(domain_uuid=uuid.UUID(entry.name), folder=destination)
    return None


def ready_count(profile: Profile) -> int:
    if not profile.directory.is_dir():
        return 0
    return sum(
        1
        for e in profile.directory.iterdir()
        if not e.name.endswith(".tmp") and GuestFolder(e).state_file.is_file()
    )


def building_count(profile: Profile) -> int:
    if not profile.directory.is_dir():
        return 0
    return sum(1 for e in profile.directory.iterdir() if e.name.endswith(".tmp"))


def building_folder(profile: Profile, domain_uuid: uuid.UUID) -> GuestFolder:
    """Where an entry is booted and saved; invisible to claim() until published."""
    return GuestFolder(profile.directory / f"{domain_uuid}.tmp")


def publish(building: GuestFolder, domain_uuid: uuid.UUID, profile: Profile) -> Path:
    """A saved entry becomes claimable (atomic rename)."""
    final = profile.directory / str(domain_uuid)
    os.rename(building.directory, final)
    return final


def remove_stale(max_age_seconds: float) -> None:
    """Half-built entries left by a worker that died."""
    root = Path(settings.VM_DIR) / "pool"
    if not root.is_dir():
        return
    now = time.time()
    for profile_dir in root.iterdir():
        for entry in profile_dir.iterdir():
            if entry.name.endswith(".tmp") and now - entry.stat().st_mtime > max_age_seconds:
                shutil.rmtree(entry, ignore_errors=True)


def entry_is_being_built(domain_uuid: str, *, max_age_seconds: float) -> bool:
    root = Path(settings.VM_DIR) / "pool"
    now = time.time()
    return any(
        now - folder.stat().st_mtime < max_age_seconds
        for folder in root.glob(f"*/{domain_uuid}.tmp")
    )
