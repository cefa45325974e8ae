"""The warm pool: guests booted ahead of time and saved to disk, per host.

A lab start claims one saved guest by renaming its folder into the VM's
folder (atomic: two workers cannot claim the same entry) and restores it,
which takes under a second instead of a full boot. Each entry is its own
boot, used once: students never share a boot (KASLR offset, random state).
libvirt insists that a restored guest keeps its saved name and uuid, which is
why a VM records its domain uuid instead of deriving it.

Folder of an entry: ``<VM_DIR>/pool/<profile>/<domain-uuid>/``, a
``GuestFolder`` with its saved memory. The profile's key covers all a saved
guest must share with the guest it becomes: the image, the virt type, the
size and the layout of the domain XML (``layout_fingerprint``: a console's
backend, a device, a limit element), so that a guest saved under an older
layout is never restored into a newer one. Each profile folder says what it
is (``profile.json``); the reaper removes the folders of profiles nothing
claims any more (an image rebuilt, a layout changed) with their entries.
On claim the shell log of its boot is removed (the prompt it shows is the
pool's, not the student's); its kernel log stays: it is this guest's boot,
which the student may read.

This module is the pool's storage; booting and saving entries is
``vms.guests``' job, like every other way of preparing a guest.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from vms.guest_folder import GuestFolder
from vms.hypervisor.domain import layout_fingerprint
from vms.images import BuiltImage, RecipeError, find_image

log = logging.getLogger(__name__)

POOL_VM_ID = "pool"  # metadata vm-id of a guest being booted for the pool
PROFILE_FILE = "profile.json"  # in each profile's folder: what the profile is


@dataclass(frozen=True)
class Profile:
    """What must match for a saved guest to serve a VM."""

    image: BuiltImage
    virt_type: str
    memory_mib: int
    vcpus: int

    @property
    def key(self) -> str:
        text = ":".join(
            (
                self.image.hash,
                self.virt_type,
                str(self.memory_mib),
                str(self.vcpus),
                layout_fingerprint(self.virt_type),
            )
        )
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def directory(self) -> Path:
        return pool_root() / self.key

    def describe(self) -> dict[str, object]:
        """What ``profile.json`` says: enough to tell, later, whether this
        profile is still the one a guest of its image would get."""
        return {
            "recipe": self.image.name,
            "image": self.image.hash,
            "virt_type": self.virt_type,
            "memory_mib": self.memory_mib,
            "vcpus": self.vcpus,
        }


def pool_root() -> Path:
    return Path(settings.VM_DIR) / "pool"


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
    """Where an entry is booted and saved; invisible to claim() until published.
    The profile's folder says what it is before its first entry is in it."""
    description = profile.directory / PROFILE_FILE
    if not description.is_file():
        profile.directory.mkdir(parents=True, exist_ok=True)
        temporary = description.with_name(f".{PROFILE_FILE}.{domain_uuid}")
        temporary.write_text(json.dumps(profile.describe(), sort_keys=True) + "\n")
        os.replace(temporary, description)
    return GuestFolder(profile.directory / f"{domain_uuid}.tmp")


def building_alive(building: GuestFolder) -> None:
    """A build under way says so by its folder's mtime, however long its guest
    has been paused for students (vms.guests.YieldToStudents): ``remove_stale``
    and ``entry_is_being_built`` only take an entry nobody has touched for
    their deadline as abandoned."""
    # Gone when published meanwhile, or removed: its boot then fails to save, and says so.
    with contextlib.suppress(FileNotFoundError):
        os.utime(building.directory)


def publish(building: GuestFolder, domain_uuid: uuid.UUID, profile: Profile) -> Path:
    """A saved entry becomes claimable (atomic rename)."""
    final = profile.directory / str(domain_uuid)
    os.rename(building.directory, final)
    return final


def remove_stale(max_age_seconds: float) -> None:
    """Half-built entries left by a worker that died, and every entry of a
    profile nothing claims any more (see ``profile_is_current``)."""
    root = pool_root()
    if not root.is_dir():
        return
    now = time.time()
    for profile_dir in root.iterdir():
        if not profile_dir.is_dir():
            continue
        current = profile_is_current(profile_dir)
        for entry in profile_dir.iterdir():
            if entry.name == PROFILE_FILE:
                continue
            building = entry.name.endswith(".tmp")
            if building and now - entry.stat().st_mtime <= max_age_seconds:
                continue  # a worker is booting it, or holding it paused (building_alive)
            if building or not current:
                _remove(entry)
        if not current and not any(e.name != PROFILE_FILE for e in profile_dir.iterdir()):
            log.info("pool: removed the entries of stale profile %s", profile_dir.name)
            shutil.rmtree(profile_dir, ignore_errors=True)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def profile_is_current(profile_dir: Path) -> bool:
    """Whether a Start could still claim this folder's entries: its image is
    the current build of its recipe, and this code, given the same profile,
    keys it with the same layout. A folder that does not say what it is was
    made by older code: it is not."""
    try:
        described = json.loads((profile_dir / PROFILE_FILE).read_text())
        recipe, image_hash = str(described["recipe"]), str(described["image"])
        virt_type = str(described["virt_type"])
        memory_mib, vcpus = int(described["memory_mib"]), int(described["vcpus"])
    except (OSError, ValueError, KeyError, TypeError):
        return False
    try:
        image = find_image(recipe)
    except RecipeError:
        return False  # the recipe is gone
    if image is None or image.hash != image_hash:
        return False
    return Profile(image, virt_type, memory_mib, vcpus).key == profile_dir.name


def entry_is_being_built(domain_uuid: str, *, max_age_seconds: float) -> bool:
    root = pool_root()
    now = time.time()
    return any(
        now - folder.stat().st_mtime < max_age_seconds
        for folder in root.glob(f"*/{domain_uuid}.tmp")
    )
