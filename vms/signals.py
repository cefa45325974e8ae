"""When a worker of a hypervisor host starts, fill that host's warm pool, so
the first student after a restart does not wait for a cold boot. A Start that
comes while it fills still comes first (vms.pool_priority): the fill's guest
is paused meanwhile, and the Start boots alone, not beside the pool's boots.

Also the signal other apps may listen to (so that vms never imports them):
``vm_state_changed``, ``lab_guest_ready``."""

from __future__ import annotations

import logging
from typing import Any

from celery.signals import worker_ready
from django.conf import settings
from django.dispatch import Signal

log = logging.getLogger(__name__)

# Sent after the transaction of a compare-and-set state change (LabVM.transition)
# has committed, with vm_id=<UUID> and state=<VMState>. Receivers must not raise.
vm_state_changed = Signal()

# Sent in the worker when a lab's fresh guest (a Start or a Reset) answers,
# before the VM is Running, with vm=<LabVM> and agent=<GuestAgent>: the
# exercises app puts the starter files in. A receiver that raises fails the start.
lab_guest_ready = Signal()


@worker_ready.connect
def fill_pool_on_start(sender: Any = None, **kwargs: Any) -> None:
    if not settings.VM_POOL_SIZE:
        return
    from vms.models import DEFAULT_MEMORY_MIB, DEFAULT_VCPUS, Host
    from vms.queues import Work
    from vms.tasks import pool_fill

    host = Host.objects.filter(name=settings.KERNELLAB_HOST_NAME, enabled=True).first()
    consumer = getattr(sender, "task_consumer", None)
    queues = {q.name for q in consumer.queues} if consumer is not None else set()
    # Only the host's housekeeping worker: the pool is its work.
    if host is None or host.queue_for(Work.HOUSEKEEPING) not in queues:
        return
    log.info("filling the warm pool of %s", host.name)
    pool_fill.apply_async(
        (host.name, DEFAULT_MEMORY_MIB, DEFAULT_VCPUS),
        queue=host.queue_for(Work.HOUSEKEEPING),
        expires=600,
    )
