"""Clean guests for authoritative grading (Submit).

A Submit is graded in a guest nobody has touched: restored from the warm pool
when an entry is ready (about a second), otherwise booted cold from the base
image. It has its own folder, ``<VM_DIR>/grading/<attempt-id>/``, and its
domain's metadata says ``grading-<attempt-id>`` so that the reaper can tell
it from students' VMs: it keeps the guest while its attempt is being graded
and destroys it otherwise (a worker that died in the middle of a Submit).
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from vms import lifecycle, pool
from vms.hypervisor.agent import GuestAgent
from vms.hypervisor.domain import DomainSpec, LabMetadata
from vms.hypervisor.errors import HypervisorError
from vms.hypervisor.guest import Guest
from vms.hypervisor.overlay import overlay_create, vm_files_remove
from vms.images import ensure_image
from vms.models import Host

log = logging.getLogger(__name__)

PREFIX = "grading-"


def grading_dir() -> Path:
    return Path(settings.VM_DIR) / "grading"


def attempt_id_of(vm_id: str) -> int | None:
    """The attempt a grading guest's metadata vm-id names, if it is one."""
    if not vm_id.startswith(PREFIX):
        return None
    try:
        return int(vm_id.removeprefix(PREFIX))
    except ValueError:
        return None


@dataclass
class GradingGuest:
    guest: Guest
    agent: GuestAgent
    folder: Path
    boot_seconds: float
    from_pool: bool

    @property
    def kernel_log(self) -> Path:
        return self.folder / "kernel.log"

    @property
    def shell_log(self) -> Path:
        return self.folder / "shell.log"


def _spec(
    attempt_id: int, profile: pool.Profile, domain_uuid: uuid.UUID, folder: Path
) -> DomainSpec:
    return pool.guest_spec(
        profile,
        domain_uuid,
        title=f"KernelLab grading of attempt {attempt_id}",
        metadata=LabMetadata(
            vm_id=f"{PREFIX}{attempt_id}", owner="", exercise="", image=profile.image.hash
        ),
        extra_cmdline=("systemd.hostname=grading",),
        disk=folder / "disk.qcow2",
        shell_log=folder / "shell.log",
        kernel_log=folder / "kernel.log",
    )


@contextmanager
def grading_guest(
    *, attempt_id: int, host: Host, recipe: str, memory_mib: int, vcpus: int
) -> Iterator[GradingGuest]:
    """A clean running guest for one attempt, destroyed with its folder on exit,
    whatever happens inside."""
    started = time.monotonic()
    image = ensure_image(recipe, progress=lambda text: log.info("grading image: %s", text))
    profile = lifecycle.profile_for(host.uri, image, memory_mib, vcpus)
    hv = lifecycle.hypervisor(host.uri)
    folder = grading_dir() / str(attempt_id)
    remove(host.uri, attempt_id)  # what a worker that died here left behind
    folder.parent.mkdir(parents=True, exist_ok=True)
    guest: Guest | None = None
    claimed: pool.Claimed | None = None
    try:
        claimed = pool.claim(profile, folder) if settings.VM_POOL_SIZE else None
        if claimed is not None:
            spec = _spec(attempt_id, profile, claimed.domain_uuid, folder)
            guest, agent = pool.restore(hv, claimed.state_file, spec, remove_state_file=True)
        else:
            folder.mkdir(parents=True)
            spec = _spec(attempt_id, profile, uuid.uuid4(), folder)
            overlay_create(base=image.disk, overlay=spec.disk)
            guest = hv.create_transient(spec.to_xml())
            agent = GuestAgent(guest)
            agent.wait_ready(settings.VM_BOOT_TIMEOUT_SECONDS)
        yield GradingGuest(
            guest=guest,
            agent=agent,
            folder=folder,
            boot_seconds=time.monotonic() - started,
            from_pool=claimed is not None,
        )
    finally:
        if guest is not None:
            _discard(guest)
        vm_files_remove(folder)
        if claimed is not None:
            lifecycle.refill_pool_later(host, memory_mib, vcpus)


def _discard(guest: Guest) -> None:
    try:
        guest.destroy()
    except HypervisorError as exc:
        log.error("grading guest %s: cleanup failed: %s", guest.name, exc.message)
    # A restored guest is persistent; a cold-booted one is transient and gone.
    with contextlib.suppress(HypervisorError):
        guest.undefine()


def remove(host_uri: str, attempt_id: int) -> None:
    """Destroy a grading guest and its folder, if any (idempotent)."""
    hv = lifecycle.hypervisor(host_uri)
    for guest in hv.guests():
        metadata = guest.metadata()
        if metadata is not None and metadata.vm_id == f"{PREFIX}{attempt_id}":
            _discard(guest)
    vm_files_remove(grading_dir() / str(attempt_id))
