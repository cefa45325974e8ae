"""Hypervisor hosts as the deployment declares them.

Each hypervisor host runs its own worker and watcher (its compose services,
or its Procfile): they create the guests' files on that host's disk and
drive its libvirtd locally. Web nodes reach the host's libvirtd through the
URI registered here (consoles); placement picks among the enabled hosts.
"""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.db import transaction

from vms.hypervisor.errors import GuestNotFound
from vms.hypervisor.guest import Guest
from vms.models import Host


@transaction.atomic
def host_register(*, name: str, uri: str, max_vms: int | None = None) -> tuple[Host, bool]:
    """Create the host, or bring its URI (and capacity, when given) up to date.
    Its ``enabled`` flag is the staff's (drain), never changed here. Returns
    the host and whether anything changed."""
    wanted: dict[str, object] = {"uri": uri}
    if max_vms is not None:
        wanted["max_vms"] = max_vms
    host, created = Host.objects.select_for_update().get_or_create(name=name, defaults=wanted)
    if created:
        return host, True
    changed = [field for field, value in wanted.items() if getattr(host, field) != value]
    for field in changed:
        setattr(host, field, wanted[field])
    if changed:
        host.save(update_fields=changed)
    return host, bool(changed)


def guest_is_ours(guest: Guest) -> bool:
    """Whether a KernelLab guest on this libvirtd is this site's: its disks are
    in our VM_DIR. Another site, or another test run, sharing the libvirtd keeps
    its own folder (and its own attempt and VM ids): the reaper and the
    grading clean-up never take its guests for ours."""
    vm_dir = Path(settings.VM_DIR)
    try:
        return any(path.is_relative_to(vm_dir) for path in guest.disk_paths())
    except GuestNotFound:
        return False  # gone meanwhile (any other error: the caller leaves it alone)
