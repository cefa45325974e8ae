"""A burst of Starts queues fairly on its host's lab queue (first come, first
served), and each waiting page says its place: "Waiting for a free slot: 2
ahead of you". The place is the number of Starts on the same host requested
earlier and not yet taken by a worker; it is recomputed, and published to the
pages, whenever a worker takes one (lifecycle.provision) or one is given up."""

from __future__ import annotations

from vms.events import publish_vm_event
from vms.models import Host, LabVM, VMKind, VMState

WAITING_FOR_A_WORKER = "Waiting for a worker"


def waiting_progress(ahead: int) -> str:
    if ahead <= 0:
        return WAITING_FOR_A_WORKER
    return f"Waiting for a free slot: {ahead} ahead of you"


def _waiting(host: Host) -> list[LabVM]:
    return list(
        LabVM.objects.filter(host=host, kind=VMKind.LAB, state=VMState.REQUESTED)
        .select_related("exercise")
        .order_by("created_at", "id")
    )


def lab_queue_ahead(*, host: Host) -> int:
    """How many Starts a new one on this host would wait behind."""
    return LabVM.objects.filter(host=host, kind=VMKind.LAB, state=VMState.REQUESTED).count()


def lab_queue_moved(*, host: Host) -> None:
    """Tell every Start still waiting on this host its new place."""
    for ahead, vm in enumerate(_waiting(host)):
        progress = waiting_progress(ahead)
        if vm.progress == progress:
            continue
        # Only while it still waits: a worker may have taken it meanwhile.
        if LabVM.objects.filter(pk=vm.pk, state=VMState.REQUESTED).update(progress=progress):
            vm.progress = progress
            publish_vm_event(vm)
