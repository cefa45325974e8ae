"""Celery tasks of the VM lifecycle. Thin: each takes a VM id and calls the
worker-side service in vms.lifecycle, which is idempotent (compare-and-set
transitions), so a redelivered task after a worker crash does no harm."""

from __future__ import annotations

from typing import Any

from celery import Task, shared_task

VMTask = Task  # the type services use for "a task that takes a VM id"

_OPTS: dict[str, Any] = {"acks_late": True, "reject_on_worker_lost": True, "ignore_result": True}


@shared_task(name="vms.provision", **_OPTS)
def provision(vm_id: str) -> None:
    from vms import lifecycle

    lifecycle.provision(vm_id)


@shared_task(name="vms.stop", **_OPTS)
def stop(vm_id: str) -> None:
    from vms import lifecycle

    lifecycle.stop(vm_id)


@shared_task(name="vms.resume", **_OPTS)
def resume(vm_id: str) -> None:
    from vms import lifecycle

    lifecycle.resume(vm_id)


@shared_task(name="vms.reset", **_OPTS)
def reset(vm_id: str) -> None:
    from vms import lifecycle

    lifecycle.reset(vm_id)


@shared_task(name="vms.destroy", **_OPTS)
def destroy(vm_id: str) -> None:
    from vms import lifecycle

    lifecycle.destroy(vm_id)


@shared_task(name="vms.pool_fill", ignore_result=True)
def pool_fill(host_name: str, memory_mib: int, vcpus: int) -> None:
    """Top up the host's warm pool (runs on the host's own worker)."""
    from vms import lifecycle

    lifecycle.pool_fill(host_name, memory_mib, vcpus)


@shared_task(name="vms.reap", **_OPTS)
def reap(host_name: str) -> None:
    from vms import reaper

    reaper.reap_host(host_name)


@shared_task(name="vms.reap_all", ignore_result=True)
def reap_all() -> None:
    """Beat's entry point (on the site-wide queue, so any host's worker runs
    it): every host is asked whether it answers (a lost host's labs fail),
    then the reaper runs on each answering host's own worker, drained ones
    too (their running labs still idle out and expire)."""
    from vms.hosts import HostCondition, hosts_check_all
    from vms.models import Host
    from vms.queues import Work

    conditions = hosts_check_all()
    for host in Host.objects.all():
        if conditions.get(host.name) == HostCondition.ANSWERS:
            reap.apply_async((host.name,), queue=host.queue_for(Work.HOUSEKEEPING), expires=55)


@shared_task(name="vms.console_housekeeping", ignore_result=True)
def console_housekeeping() -> None:
    from vms.console.housekeeping import console_housekeeping as run

    run()


@shared_task(name="vms.guest_log_read", ignore_result=False)  # the web waits for it
def guest_log_read(vm_id: str, which: str, offset: int, file: str) -> dict[str, object]:
    """A lab guest's log, read on its host for a web process on another
    machine (vms.guest_logs). Read-only, and the web waits for the answer."""
    from vms.guest_logs import Which, read_here
    from vms.models import LabVM

    vm = LabVM.objects.select_related("host").get(pk=vm_id)
    kind: Which = "kernel" if which == "kernel" else "shell"
    return read_here(vm=vm, which=kind, offset=offset, file=file)
