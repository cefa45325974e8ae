"""The worker side of the VM lifecycle: what the Celery tasks do on the
hypervisor host that owns the VM.

Every function takes a VM id, starts with a compare-and-set transition and
is safe to run twice: a task redelivered after a worker died finds the row in
its transitional state, cleans up whatever half-made state libvirt has, and
does the step again. Failures end in FAILED with a code and a sentence.
Each step is one call of ``_run_step``, which claims, maps errors,
transitions and publishes the same way for all of them.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from django.conf import settings
from django.utils import timezone

from vms import guests, pool
from vms.confinement import host_disk_room_check
from vms.events import publish_vm_event, transition_and_publish
from vms.guest_folder import GuestFolder
from vms.guests import GuestRole, prepare_guest
from vms.hypervisor.agent import GuestAgent
from vms.hypervisor.console import ConsoleHold
from vms.hypervisor.domain import SHELL_CONSOLE
from vms.hypervisor.errors import HostDiskFull, HypervisorError
from vms.hypervisor.guest import Guest
from vms.hypervisor.host import Host as HypervisorHost
from vms.images import BuiltImage, ensure_image
from vms.models import Host, LabVM, VMState
from vms.queues import Work
from vms.signals import lab_guest_ready
from vms.waiting import lab_queue_moved

log = logging.getLogger(__name__)

_hosts: dict[str, HypervisorHost] = {}
_hosts_lock = threading.Lock()


def hypervisor(uri: str) -> HypervisorHost:
    """One connection per libvirt URI per process."""
    with _hosts_lock:
        if uri not in _hosts:
            _hosts[uri] = HypervisorHost(uri)
        return _hosts[uri]


def vm_files(vm: LabVM) -> GuestFolder:
    return GuestFolder(Path(settings.VM_DIR) / str(vm.id))


def this_worker() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _claim(vm_id: str, state: VMState) -> LabVM | None:
    """Load the VM if it is in ``state`` and sign the row with this worker, so
    that the reaper can tell an orphaned step (its worker is gone) from a slow one."""
    updated = LabVM.objects.filter(pk=vm_id, state=state).update(worker=this_worker())
    if not updated:
        log.info("VM %s is not %s (any more); nothing to do", vm_id, state)
        return None
    return LabVM.objects.select_related("host", "exercise", "owner").get(pk=vm_id)


def _progress(vm: LabVM, text: str) -> None:
    LabVM.objects.filter(pk=vm.pk).update(progress=text)
    vm.progress = text
    publish_vm_event(vm)


def fail(vm: LabVM, code: str, message: str) -> None:
    """Leave nothing running or on disk, then record why."""
    log.error("VM %s failed (%s): %s", vm.id, code, message)
    try:
        _remove_guest(vm)
    except HypervisorError:
        log.exception("cleaning up failed VM %s", vm.id)
    vm_files(vm).remove()
    vm.refresh_from_db(fields=["state"])
    if vm.state not in (VMState.DESTROYED, VMState.FAILED):
        transition_and_publish(
            vm, vm.state, VMState.FAILED, error_code=code, error_message=message, progress="Failed"
        )


def _run_step(
    vm_id: str,
    *,
    claim: VMState,
    work: Callable[[LabVM], dict[str, object] | None],
    done: VMState,
    progress: str,
    failed: str = "",
    unexpected: str | None = None,
    on_error: Callable[[LabVM, str, str], None] = fail,
) -> None:
    """One lifecycle step, each the same way: claim the row in ``claim`` (or
    do nothing: the task was redelivered or the row moved on), do ``work``,
    then compare-and-set ``claim`` -> ``done`` with ``progress`` and the
    fields ``work`` returns. A row moved on meanwhile (destroyed while
    booting) belongs to the step that moved it: nothing more is done here.

    A HypervisorError is an outcome, not a bug: ``on_error`` gets its code
    and its message (after ``failed``: "Stopping failed: ...") and nothing is
    raised. Any other error is raised for Celery's log, after ``on_error``
    got it as internal_error (after ``unexpected``); with ``unexpected`` None
    the row stays in ``claim`` for the reaper, which decides the step after
    its deadline from what libvirt shows."""
    vm = _claim(vm_id, claim)
    if vm is None:
        return
    try:
        fields = work(vm) or {}
    except HypervisorError as exc:
        on_error(vm, exc.code, f"{failed}: {exc.message}" if failed else exc.message)
        return
    except Exception as exc:
        if unexpected is not None:
            on_error(vm, "internal_error", f"{unexpected}: {exc}")
        raise
    if not transition_and_publish(vm, claim, done, progress=progress, **fields):
        log.info("VM %s left %s during the step; the step that moved it owns it", vm.id, claim)


def _booted(vm: LabVM) -> dict[str, object]:
    """A guest for the VM (``_boot``), and what its row records of it."""
    _boot(vm)
    return {"boot_seconds": vm.boot_seconds, "image_hash": vm.image_hash}


def _remove_guest(vm: LabVM) -> None:
    if not vm.domain_uuid:
        return
    guest = hypervisor(vm.host.uri).find(vm.domain_name)
    if guest is not None:
        guest.destroy()
        guest.undefine()


def guest_role(vm: LabVM) -> GuestRole:
    return GuestRole(
        title=f"KernelLab {vm.exercise.slug} for {vm.owner.username}",
        vm_id=str(vm.id),
        owner=vm.owner.username,
        exercise=vm.exercise.slug,
        hostname=vm.hostname,
    )


def resolve_virt_type(uri: str, image: BuiltImage) -> str:
    if settings.VIRT_TYPE != "auto":
        return str(settings.VIRT_TYPE)
    from vms.virt_probe import probe_virt_type

    return probe_virt_type(hypervisor(uri), image, Path(settings.VM_DIR))


def profile_for(host_uri: str, image: BuiltImage, memory_mib: int, vcpus: int) -> pool.Profile:
    return pool.Profile(image, resolve_virt_type(host_uri, image), memory_mib, vcpus)


def _set_domain_uuid(vm: LabVM, domain_uuid: uuid.UUID) -> None:
    """Recorded before the domain exists, so that a cleanup after a crash
    in the next step knows which domain to look for."""
    vm.domain_uuid = domain_uuid
    LabVM.objects.filter(pk=vm.pk).update(domain_uuid=domain_uuid)


def _domain_known(vm: LabVM, domain_uuid: uuid.UUID) -> ConsoleHold:
    """Record the uuid, and hold the shell console from the moment the guest
    runs, so that QEMU has seen a reader of it by the time the student's
    console opens (its first keystroke is then answered at once, not after
    QEMU's once-a-second poll: see ConsoleHold)."""
    _set_domain_uuid(vm, domain_uuid)
    return ConsoleHold(
        hypervisor(vm.host.uri),
        str(domain_uuid),
        SHELL_CONSOLE,
        seconds=settings.VM_BOOT_TIMEOUT_SECONDS + CONSOLE_HOLD_SECONDS,
    ).start()


# How long a console held for a new guest stays held once the guest is ready,
# for the student's page to open it.
CONSOLE_HOLD_SECONDS = 60


def _boot(vm: LabVM) -> list[tuple[str, float]]:
    """Give the VM a running guest: restored from the warm pool when an entry
    is ready (about a second), otherwise booted cold. Returns the time each
    step took (logged; ``./kernellab bench start`` prints them)."""
    started = time.monotonic()
    host_disk_room_check(directory=Path(settings.VM_DIR), doing=f"boot VM {vm.id}")
    image = ensure_image(progress=lambda text: _progress(vm, text))
    profile = profile_for(vm.host.uri, image, vm.memory_mib, vm.vcpus)
    files = vm_files(vm)
    _remove_guest(vm)  # whatever a worker that died in this step left behind
    files.remove()
    steps = [("image and profile", time.monotonic() - started)]
    holds: list[ConsoleHold] = []
    prepared = prepare_guest(
        hypervisor(vm.host.uri),
        profile,
        files,
        guest_role(vm),
        boot_timeout=settings.VM_BOOT_TIMEOUT_SECONDS,
        use_pool=bool(settings.VM_POOL_SIZE),
        persistent=True,
        on_domain=lambda domain_uuid: holds.append(_domain_known(vm, domain_uuid)),
        progress=lambda text: _progress(vm, text),
    )
    steps += prepared.steps  # a restored guest has its clock and the VM's hostname
    mark = time.monotonic()
    _place_starter(vm, prepared.agent)
    steps.append(("starter files", time.monotonic() - mark))
    for hold in holds:
        hold.release(keep_seconds=CONSOLE_HOLD_SECONDS)  # for the student's console to open
    vm.boot_seconds = time.monotonic() - started
    vm.image_hash = image.hash
    log.info(
        "VM %s: guest ready in %.2fs (%s)",
        vm.id,
        vm.boot_seconds,
        ", ".join(f"{step} {seconds:.2f}s" for step, seconds in steps),
    )
    if settings.VM_POOL_SIZE:
        _refill_pool_later(vm)
    return steps


def _place_starter(vm: LabVM, agent: GuestAgent) -> None:
    """The exercise's starter files, in /root of a fresh guest: the exercises
    app listens (the VM layer knows no exercise); a receiver's error fails the start."""
    _progress(vm, "Copying the starter files")
    lab_guest_ready.send(sender=LabVM, vm=vm, agent=agent)


def _refill_pool_later(vm: LabVM) -> None:
    refill_pool_later(vm.host, vm.memory_mib, vm.vcpus)


# A refill that yielded to students tries again this much later.
POOL_RETRY_SECONDS = 5


def refill_pool_later(host: Host, memory_mib: int, vcpus: int, *, retry: bool = False) -> None:
    """Top the host's pool up on its housekeeping worker: now (after a claim),
    or, for a refill that yielded to students (``retry``), a few seconds later.
    At most one such retry per host and profile is queued at a time, so a
    burst of Starts does not queue a storm of them; the mark expires before
    the retry runs, so a retry that yields again can queue the next one."""
    from django.core.cache import cache

    from vms.tasks import pool_fill

    countdown = 0
    if retry:
        countdown = POOL_RETRY_SECONDS
        mark = f"pool-retry:{host.name}:{memory_mib}:{vcpus}"
        if not cache.add(mark, True, timeout=POOL_RETRY_SECONDS - 1):
            return  # one is queued already
    pool_fill.apply_async(
        (host.name, memory_mib, vcpus),
        queue=host.queue_for(Work.HOUSEKEEPING),
        countdown=countdown,
        expires=countdown + 600,
    )


def pool_fill(host_name: str, memory_mib: int, vcpus: int) -> int:
    """Top the host's pool up; a student's Start comes first (vms.pool_priority):
    a refill that yields is queued again, until the Starts are through."""
    from vms.models import Host
    from vms.pool_priority import students_boot_cold, students_wait_for_a_cold_boot

    host = Host.objects.get(name=host_name)
    try:
        host_disk_room_check(directory=Path(settings.VM_DIR), doing="fill the warm pool")
    except HostDiskFull:
        return 0  # Starts boot cold meanwhile, and are refused the same way
    image = ensure_image(progress=lambda text: log.info("pool: %s", text))
    profile = profile_for(host.uri, image, memory_mib, vcpus)
    fill = guests.pool_fill(
        hypervisor(host.uri),
        profile,
        size=settings.VM_POOL_SIZE,
        boot_timeout=settings.VM_BOOT_TIMEOUT_SECONDS,
        students_waiting=lambda: students_wait_for_a_cold_boot(host=host, profile=profile),
        students_booting=lambda: students_boot_cold(host=host),
    )
    if fill.yielded:
        refill_pool_later(host, memory_mib, vcpus, retry=True)
    elif fill.added:
        # What `./kernellab run` shows the person who just installed the site.
        log.info(
            "the warm pool of %s is ready (%d guests): a Start now takes about two seconds",
            host.name,
            settings.VM_POOL_SIZE,
        )
    return fill.added


def provision(vm_id: str) -> None:
    LabVM.objects.filter(pk=vm_id, state=VMState.REQUESTED).update(
        state=VMState.PROVISIONING, state_changed_at=timezone.now()
    )
    _run_step(
        vm_id,
        claim=VMState.PROVISIONING,
        work=_start,
        done=VMState.RUNNING,
        progress="Ready",
        unexpected="Starting the VM failed unexpectedly",
    )


def _start(vm: LabVM) -> dict[str, object]:
    lab_queue_moved(host=vm.host)  # the Starts behind this one move up
    return _booted(vm)


def _guest(vm: LabVM) -> Guest:
    return hypervisor(vm.host.uri).lookup(vm.domain_name)


def stop(vm_id: str) -> None:
    _run_step(
        vm_id,
        claim=VMState.STOPPING,
        work=_save,
        done=VMState.STOPPED,
        progress="Stopped",
        failed="Stopping failed",
    )


def _save(vm: LabVM) -> None:
    guest = _guest(vm)
    if guest.is_running():
        guest.managed_save()


def resume(vm_id: str) -> None:
    _run_step(
        vm_id,
        claim=VMState.RESUMING,
        work=_start_again,
        done=VMState.RUNNING,
        progress="Ready",
        failed="Resuming failed",
        # Never left RESUMING until the reaper's deadline.
        unexpected="Resuming failed unexpectedly",
        on_error=_resume_failed,
    )


def _start_again(vm: LabVM) -> None:
    """The guest Stop saved (or a crashed one's disk, booted again)."""
    guest = _guest(vm)
    if guest.is_running():
        return
    host_disk_room_check(directory=Path(settings.VM_DIR), doing=f"resume VM {vm.id}")
    restored = guest.has_managed_save()
    guest.start()
    agent = GuestAgent(guest)
    agent.wait_ready(settings.VM_BOOT_TIMEOUT_SECONDS)
    if restored:
        agent.set_time()


def _resume_failed(vm: LabVM, code: str, message: str) -> None:
    """Back to STOPPED with the reason, the student's disk kept: Resume can
    be tried again, and Reset is the student's choice, not ours."""
    log.error("VM %s could not resume (%s): %s", vm.id, code, message)
    try:
        guest = hypervisor(vm.host.uri).find(vm.domain_name)
        if guest is not None:
            guest.destroy()
    except HypervisorError:
        log.exception("stopping VM %s after a failed resume", vm.id)
    transition_and_publish(
        vm,
        VMState.RESUMING,
        VMState.STOPPED,
        error_code=code,
        error_message=message,
        progress=f"{message} Your disk is kept: try Resume again, or Reset for a fresh one.",
    )


def reset(vm_id: str) -> None:
    """Throw the disk away and boot fresh from the base image."""
    _run_step(
        vm_id,
        claim=VMState.RESETTING,
        work=_boot_fresh,
        done=VMState.RUNNING,
        progress="Ready",
        failed="Reset failed",
    )


def _boot_fresh(vm: LabVM) -> dict[str, object]:
    _remove_guest_and_files(vm)
    return _booted(vm)


def destroy(vm_id: str) -> None:
    _run_step(
        vm_id,
        claim=VMState.DESTROYING,
        work=_remove_guest_and_files,
        done=VMState.DESTROYED,
        progress="Destroyed",
        on_error=_destroy_failed,
    )


def _remove_guest_and_files(vm: LabVM) -> None:
    _remove_guest(vm)
    vm_files(vm).remove()


def _destroy_failed(vm: LabVM, code: str, message: str) -> None:
    """Keep DESTROYING: the reaper retries, and the files stay until it can."""
    log.error("destroying VM %s failed: %s", vm.id, message)
