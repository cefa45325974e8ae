"""The reaper: runs every minute on each host's worker and makes the database
and libvirt agree.

- idle RUNNING VMs are stopped (saved), expired VMs destroyed;
- a step whose worker process died (SIGKILL, OOM, host reboot) is finished
  from what libvirt shows, or failed with a reason;
- domains carrying our metadata but no live row are destroyed with their
  files; live rows whose domain vanished become FAILED;
- running rows whose guest's kernel panicked become CRASHED (vms.crashes),
  if the panic watcher missed it.
"""

from __future__ import annotations

import logging
import socket
import uuid
from datetime import datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.utils import timezone

from vms import lifecycle, pool, sandbox
from vms.crashes import vm_crashed
from vms.events import transition_and_publish
from vms.hosts import guest_is_ours
from vms.hypervisor.agent import GuestAgent
from vms.hypervisor.errors import GuestNotFound, HypervisorError
from vms.hypervisor.guest import Guest, GuestState
from vms.hypervisor.overlay import vm_files_remove
from vms.models import LIVE_STATES, TRANSITIONAL_STATES, Host, LabVM, VMState

log = logging.getLogger(__name__)

# A step signed by a worker on another machine, or by one still alive, is left
# alone this long before it is treated as lost.
STEP_DEADLINE = timedelta(minutes=20)
POOL_BUILD_DEADLINE = 10 * 60.0


def reap_host(host_name: str) -> None:
    host = Host.objects.filter(name=host_name).first()
    if host is None:
        log.warning("reaper: no host named %s", host_name)
        return
    now = timezone.now()
    stop_idle(host, now)
    destroy_expired(host, now)
    recover_orphaned_steps(host, now)
    reconcile(host)
    pool.remove_stale(POOL_BUILD_DEADLINE)


def stop_idle(host: Host, now: datetime) -> None:
    cutoff = now - timedelta(minutes=settings.VM_IDLE_STOP_MINUTES)
    for vm in LabVM.objects.filter(host=host, state=VMState.RUNNING, last_activity_at__lt=cutoff):
        if vm.transition(VMState.RUNNING, VMState.STOPPING, progress="Stopped after inactivity"):
            log.info("reaper: stopping idle VM %s", vm.id)
            lifecycle.stop(str(vm.id))


def destroy_expired(host: Host, now: datetime) -> None:
    expired = LabVM.objects.filter(host=host, expires_at__lt=now).exclude(
        state__in=(VMState.DESTROYING, VMState.DESTROYED)
    )
    for vm in expired:
        if vm.transition(vm.state, VMState.DESTROYING, progress="Lifetime over"):
            log.info("reaper: destroying expired VM %s", vm.id)
            lifecycle.destroy(str(vm.id))


def _worker_is_gone(worker: str) -> bool:
    """True when the process that signed the step is certainly dead: it ran on
    this machine and its pid no longer exists, or is a zombie (a pool process
    of a worker killed as a whole is reparented, and stays one where nothing
    reaps orphans)."""
    machine, _, pid = worker.rpartition(":")
    if machine != socket.gethostname() or not pid.isdigit():
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return True
    # The state follows the command name, which may itself hold ") ".
    return stat.rpartition(")")[2].split()[0] in ("Z", "X")


def recover_orphaned_steps(host: Host, now: datetime) -> None:
    stale_before = now - STEP_DEADLINE
    for vm in LabVM.objects.filter(host=host, state__in=TRANSITIONAL_STATES).select_related(
        "host", "exercise", "owner"
    ):
        lost = (vm.worker and _worker_is_gone(vm.worker)) or vm.state_changed_at < stale_before
        if not lost:
            continue
        log.warning("reaper: VM %s stuck in %s (worker %s gone)", vm.id, vm.state, vm.worker)
        finish_lost_step(vm)


def finish_lost_step(vm: LabVM) -> None:
    """Decide a step whose worker died from what libvirt shows now."""
    if vm.state == VMState.DESTROYING:
        lifecycle.destroy(str(vm.id))
        return
    guest = lifecycle.hypervisor(vm.host.uri).find(vm.domain_name) if vm.domain_uuid else None
    if vm.state in (VMState.PROVISIONING, VMState.RESUMING, VMState.RESETTING):
        if guest is not None and guest.state() == GuestState.RUNNING and _agent_answers(guest):
            transition_and_publish(vm, vm.state, VMState.RUNNING, progress="Ready")
            return
        lifecycle.fail(
            vm,
            "worker_lost",
            "The worker preparing this VM stopped before it finished. "
            "Nothing was left behind; start the lab again.",
        )
        return
    if vm.state == VMState.STOPPING:
        if guest is not None and guest.state() == GuestState.SHUTOFF:
            transition_and_publish(vm, VMState.STOPPING, VMState.STOPPED, progress="Stopped")
            return
        if guest is not None and guest.state() == GuestState.RUNNING:
            # The save never happened; the guest is fine. Back to where it was.
            transition_and_publish(vm, VMState.STOPPING, VMState.RUNNING, progress="Ready")
            return
        lifecycle.fail(vm, "worker_lost", "The VM was lost while it was being stopped.")


def _agent_answers(guest: Guest) -> bool:
    return GuestAgent(guest).ping()


def reconcile(host: Host) -> None:
    hv = lifecycle.hypervisor(host.uri)
    listed_at = timezone.now()
    try:
        guests = list(hv.guests())
    except HypervisorError as exc:
        log.error("reaper: cannot list domains on %s: %s", host.name, exc.message)
        return
    ours = {}
    # Domains this pass could not read (libvirtd busy or restarting): whose
    # they are is unknown, so they and their VMs are left for the next pass.
    unreadable: set[str] = set()
    for guest in guests:
        try:
            metadata = guest.metadata()
            if metadata is None or not guest_is_ours(guest):
                continue
        except GuestNotFound:
            continue  # gone since the listing
        except HypervisorError as exc:
            log.warning("reaper: cannot read %s, left alone: %s", guest.name, exc.message)
            unreadable.add(guest.uuid)
            continue
        if metadata.vm_id == pool.POOL_VM_ID:
            _reap_pool_guest(guest)
        elif (attempt_id := sandbox.attempt_id_of(metadata.vm_id)) is not None:
            _reap_grading_guest(host, guest, attempt_id)
        else:
            ours[metadata.vm_id] = guest
    live_rows = {
        str(vm.id): vm
        for vm in LabVM.objects.filter(host=host, state__in=LIVE_STATES).select_related(
            "host", "exercise", "owner"
        )
    }
    # Domains of ours with no live row: leftovers of a crash or a lost task.
    for vm_id, guest in ours.items():
        if vm_id not in live_rows:
            log.warning("reaper: destroying orphan domain %s", guest.name)
            try:
                guest.destroy()
                guest.undefine()
            except HypervisorError as exc:
                log.error("reaper: could not remove %s: %s", guest.name, exc.message)
                continue
            vm_files_remove(Path(settings.VM_DIR) / vm_id)
    # Running rows whose guest's kernel panicked (missed by the panic watcher).
    for vm_id, vm in live_rows.items():
        found = ours.get(vm_id)
        if vm.state == VMState.RUNNING and found is not None:
            try:
                panicked = found.ended_by_panic()
            except HypervisorError as exc:
                log.error("reaper: cannot read the state of %s: %s", found.name, exc.message)
                continue
            if panicked:
                vm_crashed(domain_uuid=found.uuid)
    # Live rows whose domain is gone (not one that came to be after the
    # listing, nor one whose domain could not be read).
    for vm_id, vm in live_rows.items():
        if vm.state_changed_at >= listed_at or str(vm.domain_uuid) in unreadable:
            continue
        if vm.state in (VMState.RUNNING, VMState.STOPPED, VMState.CRASHED) and vm_id not in ours:
            lifecycle.fail(
                vm,
                "domain_missing",
                "This VM no longer exists on its host (the host may have been restarted "
                "or the VM removed by an administrator). Reset it to get a fresh one.",
            )
    remove_orphan_folders()


def _reap_grading_guest(host: Host, guest: Guest, attempt_id: int) -> None:
    """A clean guest grading a Submit lives while its attempt is being graded;
    one whose worker died (the attempt moved on, or is gone) is removed."""
    from exercises.models import Attempt, AttemptStatus

    if Attempt.objects.filter(pk=attempt_id, status=AttemptStatus.RUNNING).exists():
        return
    log.warning("reaper: destroying grading guest %s of attempt %s", guest.name, attempt_id)
    sandbox.remove(host.uri, attempt_id)


def _reap_pool_guest(guest: Guest) -> None:
    """A guest booting for the warm pool lives a minute at most; one whose
    worker died keeps running with no one to save it."""
    if pool.entry_is_being_built(guest.uuid, max_age_seconds=POOL_BUILD_DEADLINE):
        return
    log.warning("reaper: destroying abandoned pool guest %s", guest.name)
    guest.destroy()


def remove_orphan_folders() -> None:
    """VM folders (overlay, logs) whose VM is not live any more."""
    vm_dir = Path(settings.VM_DIR)
    if not vm_dir.is_dir():
        return
    folders = {f.name: f for f in vm_dir.iterdir() if f.is_dir() and _is_uuid(f.name)}
    live = {
        str(pk) for pk in LabVM.objects.live().filter(pk__in=folders).values_list("pk", flat=True)
    }
    for name, folder in folders.items():
        if name not in live:
            log.warning("reaper: removing orphan VM folder %s", folder)
            vm_files_remove(folder)
    _remove_orphan_grading_folders()


def _remove_orphan_grading_folders() -> None:
    from exercises.models import Attempt, AttemptStatus

    grading = sandbox.grading_dir()
    if not grading.is_dir():
        return
    folders = {f.name: f for f in grading.iterdir() if f.is_dir() and f.name.isdigit()}
    running = {
        str(pk)
        for pk in Attempt.objects.filter(
            pk__in=[int(n) for n in folders], status=AttemptStatus.RUNNING
        ).values_list("pk", flat=True)
    }
    for name, folder in folders.items():
        if name not in running:
            log.warning("reaper: removing orphan grading folder %s", folder)
            vm_files_remove(folder)


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True
