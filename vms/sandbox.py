"""Clean guests for authoritative grading (Submit).

A Submit is graded in a guest nobody has touched: restored from the warm pool
when an entry is ready (about a second), otherwise booted cold from the base
image. It has its own folder, ``<VM_DIR>/grading/<attempt-id>/``, and its
domain's metadata says ``grading-<attempt-id>`` so that the reaper can tell
it from students' VMs: it keeps the guest while its attempt is being graded
and destroys it otherwise (a worker that died in the middle of a Submit).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from vms import lifecycle
from vms.guest_folder import GuestFolder
from vms.guests import GuestRole, PreparedGuest, discard, prepare_guest
from vms.hosts import guest_is_ours
from vms.hypervisor.agent import GuestAgent
from vms.hypervisor.errors import GuestNotFound, HypervisorError
from vms.hypervisor.guest import Guest
from vms.hypervisor.host import Host as HypervisorHost
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
    folder: GuestFolder
    boot_seconds: float
    from_pool: bool

    @property
    def kernel_log(self) -> Path:
        return self.folder.kernel_log


def grading_role(attempt_id: int) -> GuestRole:
    return GuestRole(
        title=f"KernelLab grading of attempt {attempt_id}",
        vm_id=f"{PREFIX}{attempt_id}",
        hostname="grading",
        grading=True,
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
    folder = GuestFolder(grading_dir() / str(attempt_id))
    remove(host.uri, attempt_id)  # what a worker that died here left behind
    domain: list[uuid.UUID] = []
    prepared: PreparedGuest | None = None
    try:
        prepared = prepare_guest(
            hv,
            profile,
            folder,
            grading_role(attempt_id),
            boot_timeout=settings.VM_BOOT_TIMEOUT_SECONDS,
            use_pool=bool(settings.VM_POOL_SIZE),
            on_domain=domain.append,
        )
        yield GradingGuest(
            guest=prepared.guest,
            agent=prepared.agent,
            folder=folder,
            boot_seconds=time.monotonic() - started,
            from_pool=prepared.from_pool,
        )
    finally:
        for domain_uuid in domain:
            _discard(hv, domain_uuid)
        folder.remove()
        if prepared is not None and prepared.from_pool:
            lifecycle.refill_pool_later(host, memory_mib, vcpus)


def _discard(hv: HypervisorHost, domain_uuid: uuid.UUID) -> None:
    try:
        discard(hv, domain_uuid)  # a restored guest is persistent, a cold-booted one transient
    except HypervisorError as exc:
        log.error("grading guest %s: cleanup failed: %s", domain_uuid, exc.message)


def remove(host_uri: str, attempt_id: int) -> None:
    """Destroy a grading guest and its folder, if any (idempotent)."""
    hv = lifecycle.hypervisor(host_uri)
    for guest in hv.guests():
        try:
            metadata = guest.metadata()
        except GuestNotFound:
            continue  # gone since the listing: another grading's guest, a removed VM
        if (
            metadata is not None
            and metadata.vm_id == f"{PREFIX}{attempt_id}"
            and guest_is_ours(guest)
        ):
            _discard(hv, uuid.UUID(guest.uuid))
    GuestFolder(grading_dir() / str(attempt_id)).remove()
