"""Small status events about a VM, for the pages that show it.

They go to the owner's user group (every open page of theirs) and to the VM's
own group (instructors watching). Losing one is harmless (the page also reads
the row), so a Redis hiccup is logged, never raised into a provisioning task.
"""

from __future__ import annotations

import logging
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from labplatform.consumers import user_group
from vms.models import LabVM, VMState

log = logging.getLogger(__name__)


def vm_group(vm_id: object) -> str:
    return f"vm-{vm_id}"


def vm_event_payload(vm: LabVM, **extra: Any) -> dict[str, Any]:
    return {
        "kind": "vm",
        "vm": str(vm.id),
        "exercise": vm.exercise.slug if vm.exercise_id else None,
        "state": vm.state,
        "state_label": vm.get_state_display(),
        "progress": vm.progress,
        "error": vm.error_message or None,
        "crash_log": vm.crash_log or None,
        **extra,
    }


def publish_vm_event(vm: LabVM, **extra: Any) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    event = vm_event_payload(vm, **extra)
    try:
        for group in (user_group(vm.owner_id), vm_group(vm.id)):
            async_to_sync(layer.group_send)(group, {"type": "user.event", "event": event})
    except Exception:  # the channel layer is best effort; the row is the truth
        log.warning("could not publish event for VM %s", vm.id, exc_info=True)


def transition_and_publish(vm: LabVM, old: str, new: VMState, **fields: object) -> bool:
    """Compare-and-set ``old`` -> ``new`` (LabVM.transition) and, if this
    call made it, tell the pages. False: the row had moved on, and whoever
    moved it tells them."""
    if not vm.transition(old, new, **fields):
        return False
    publish_vm_event(vm)
    return True
