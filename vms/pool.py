"""The warm pool: guests booted ahead of time and saved to disk, per host.

A lab start claims one saved guest by renaming its folder into the VM's
folder (atomic: two workers cannot claim the same entry) and restores it,
which takes under a second instead of a full boot. Each entry is its own
boot, used once: students never share a boot (KASLR offset, random state).
libvirt insists that a restored guest keeps its saved name and uuid, which is
why a VM records its domain uuid instead of deriving it.

Folder of an entry: ``<VM_DIR>/pool/<profile>/<domain-uuid>/`` with
``state.save`` (memory), ``disk.qcow2`` (overlay on the base image) and the
logs of its boot, removed on claim.
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

from vms.hypervisor.agent import GuestAgent
from vms.hypervisor.domain import DomainSpec, LabMetadata
from vms.hypervisor.guest import Guest
from vms.hypervisor.host import Host as HypervisorHost
from vms.hypervisor.overlay import overlay_create, vm_files_remove
from vms.images import BuiltImage
from vms.models import domain_name_for

log = logging.getLogger(__name__)

POOL_VM_ID = "pool"  # metadata vm-id of a guest being booted for the pool
STATE_FILE = "state.save"
BOOT_LOGS = ("boot-shell.log", "boot-kernel.log")


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
class Claimed:
    domain_uuid: uuid.UUID
    state_file: Path


def claim(profile: Profile, destination: Path) -> Claimed | None:
    """Move one ready entry to ``destination``; None when the pool is empty."""
    if not profile.directory.is_dir():
        return None
    destination.parent.mkdir(parents=True, exist_ok=True)
    for entry in sorted(profile.directory.iterdir(), key=lambda p: p.stat().st_mtime):
        if entry.name.endswith(".tmp") or not (entry / STATE_FILE).is_file():
            continue
        try:
            os.rename(entry, destination)
        except OSError:
            continue  # another worker took it, or destination exists: try the next
        for name in BOOT_LOGS:
            (destination / name).unlink(missing_ok=True)
        return Claimed(domain_uuid=uuid.UUID(entry.name), state_file=destination / STATE_FILE)
    return None


def ready_count(profile: Profile) -> int:
    if not profile.directory.is_dir():
        return 0
    return sum(
        1
        for e in profile.directory.iterdir()
        if not e.name.endswith(".tmp") and (e / STATE_FILE).is_file()
    )


def building_count(profile: Profile) -> int:
    if not profile.directory.is_dir():
        return 0
    return sum(1 for e in profile.directory.iterdir() if e.name.endswith(".tmp"))


def guest_spec(
    profile: Profile,
    domain_uuid: uuid.UUID,
    *,
    title: str,
    metadata: LabMetadata,
    disk: Path,
    shell_log: Path,
    kernel_log: Path,
    extra_cmdline: tuple[str, ...] = (),
) -> DomainSpec:
    """The domain of a guest of this profile: every guest the platform runs
    (pool entries, students' VMs, grading guests) is built from here, so that
    a saved pool entry can be restored as any of them."""
    image = profile.image
    return DomainSpec(
        name=domain_name_for(domain_uuid),
        uuid=str(domain_uuid),
        title=title,
        metadata=metadata,
        virt_type=profile.virt_type,
        memory_mib=profile.memory_mib,
        vcpus=profile.vcpus,
        kernel=image.kernel,
        initrd=image.initrd,
        cmdline=image.cmdline,
        extra_cmdline=extra_cmdline,
        disk=disk,
        shell_log=shell_log,
        kernel_log=kernel_log,
    )


def pool_spec(profile: Profile, domain_uuid: uuid.UUID, folder: Path) -> DomainSpec:
    return guest_spec(
        profile,
        domain_uuid,
        title="KernelLab warm pool",
        metadata=LabMetadata(vm_id=POOL_VM_ID, owner="", exercise="", image=profile.image.hash),
        disk=folder / "disk.qcow2",
        shell_log=folder / BOOT_LOGS[0],
        kernel_log=folder / BOOT_LOGS[1],
    )


def restore(
    hypervisor: HypervisorHost,
    state_file: Path,
    spec: DomainSpec,
    *,
    agent_timeout: float = 30,
    remove_state_file: bool = False,
) -> tuple[Guest, GuestAgent]:
    """Start a saved guest as ``spec`` and wait for its agent, with the clock
    set (a restored guest wakes up at the time it was saved). A claimed pool
    entry is used once: ``remove_state_file`` deletes it once restored."""
    guest = hypervisor.restore(str(state_file), spec.to_xml())
    if remove_state_file:
        state_file.unlink()
    agent = GuestAgent(guest)
    agent.wait_ready(agent_timeout)
    agent.set_time()
    return guest, agent


def add_entry(hypervisor: HypervisorHost, profile: Profile, *, boot_timeout: float) -> Path:
    """Boot one guest, let it settle at its prompt, save it into the pool."""
    domain_uuid = uuid.uuid4()
    building = profile.directory / f"{domain_uuid}.tmp"
    building.mkdir(parents=True)
    try:
        spec = pool_spec(profile, domain_uuid, building)
        overlay_create(base=profile.image.disk, overlay=spec.disk)
        guest = hypervisor.create_transient(spec.to_xml())
        try:
            GuestAgent(guest).wait_ready(boot_timeout)
            _wait_for_prompt(spec.shell_log, boot_timeout)
            guest.save(str(building / STATE_FILE))  # a transient guest is gone after this
        except BaseException:
            guest.destroy()
            raise
        final = profile.directory / str(domain_uuid)
        os.rename(building, final)
        return final
    finally:
        if building.exists():
            vm_files_remove(building)


def fill(hypervisor: HypervisorHost, profile: Profile, *, size: int, boot_timeout: float) -> int:
    """Top the pool up to ``size`` entries; returns how many were added.
    Entries other workers are building count, so concurrent fills do not overshoot."""
    added = 0
    while ready_count(profile) + building_count(profile) < size:
        started = time.monotonic()
        add_entry(hypervisor, profile, boot_timeout=boot_timeout)
        added += 1
        log.info("pool %s: added an entry in %.1fs", profile.key, time.monotonic() - started)
    return added


def _wait_for_prompt(shell_log: Path, timeout: float) -> None:
    """The shell has printed its prompt: the guest is idle, ready to be saved."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if shell_log.is_file() and shell_log.read_bytes().rstrip().endswith(b"#"):
            return
        time.sleep(0.1)
    raise TimeoutError(f"no shell prompt in {shell_log} after {timeout:.0f}s")


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
