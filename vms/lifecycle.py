"""The worker side of the VM lifecycle: what the Celery tasks do on the
hypervisor host that owns the VM.

Every function takes a VM id, starts with a compare-and-set transition and
is safe to run twice: a task redelivered after a worker died finds the row in
its transitional state, cleans up whatever half-made state libvirt has, and
does the step again. Failures end in FAILED with a code and a sentence.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.utils import timezone

from vms import pool
from vms.events import publish_vm_event
from vms.hypervisor.agent import GuestAgent
from vms.hypervisor.domain import DomainSpec, LabMetadata
from vms.hypervisor.errors import HypervisorError
from vms.hypervisor.guest import Guest
from vms.hypervisor.host import Host as HypervisorHost
from vms.hypervisor.overlay import overlay_create, vm_files_remove
from vms.images import BuiltImage, ensure_image
from vms.models import Host, LabVM, VMState

log = logging.getLogger(__name__)

_hosts: dict[str, HypervisorHost] = {}
_hosts_lock = threading.Lock()


def hypervisor(uri: str) -> HypervisorHost:
    """One connection per libvirt URI per process."""
    with _hosts_lock:
        if uri not in _hosts:
            _hosts[uri] = HypervisorHost(uri)
        return _hosts[uri]


@dataclass(frozen=True)
class VMFiles:
    directory: Path

    @property
    def disk(self) -> Path:
        return self.directory / "disk.qcow2"

    @property
    def shell_log(self) -> Path:
        return self.directory / "shell.log"

    @property
    def kernel_log(self) -> Path:
        return self.directory / "kernel.log"


def vm_files(vm: LabVM) -> VMFiles:
    return VMFiles(Path(settings.VM_DIR) / str(vm.id))


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
    vm_files_remove(vm_files(vm).directory)
    vm.refresh_from_db(fields=["state"])
    if vm.state not in (VMState.DESTROYED, VMState.FAILED):
        vm.transition(
            vm.state, VMState.FAILED, error_code=code, error_message=message, progress="Failed"
        )
        publish_vm_event(vm)


def _remove_guest(vm: LabVM) -> None:
    if not vm.domain_uuid:
        return
    guest = hypervisor(vm.host.uri).find(vm.domain_name)
    if guest is not None:
        guest.destroy()
        guest.undefine()


def domain_spec(vm: LabVM, profile: pool.Profile, files: VMFiles) -> DomainSpec:
    assert vm.domain_uuid is not None
    return pool.guest_spec(
        profile,
        vm.domain_uuid,
        title=f"KernelLab {vm.exercise.slug} for {vm.owner.username}",
        metadata=LabMetadata(
            vm_id=str(vm.id),
            owner=vm.owner.username,
            exercise=vm.exercise.slug,
            image=profile.image.hash,
        ),
        extra_cmdline=(f"systemd.hostname={vm.hostname}",),
        disk=files.disk,
        shell_log=files.shell_log,
        kernel_log=files.kernel_log,
    )


def resolve_virt_type(uri: str, image: BuiltImage) -> str:
    if settings.VIRT_TYPE != "auto":
        return str(settings.VIRT_TYPE)
    from vms.hypervisor.probe import probe_virt_type

    return probe_virt_type(hypervisor(uri), image, Path(settings.VM_DIR))


def profile_for(host_uri: str, image: BuiltImage, memory_mib: int, vcpus: int) -> pool.Profile:
    return pool.Profile(image, resolve_virt_type(host_uri, image), memory_mib, vcpus)


# Run in a restored guest: it was saved as "kernellab" at a login prompt, so
# give it this VM's hostname and a fresh login shell that shows it.
def _personalise_argv(hostname: str) -> list[str]:
    script = (
        'hostname "$1" && echo "$1" > /etc/hostname && systemctl restart serial-getty@hvc0.service'
    )
    return ["sh", "-c", script, "personalise", hostname]


def _set_domain_uuid(vm: LabVM, domain_uuid: uuid.UUID) -> None:
    """Recorded before the domain exists, so that a cleanup after a crash
    in the next step knows which domain to look for."""
    vm.domain_uuid = domain_uuid
    LabVM.objects.filter(pk=vm.pk).update(domain_uuid=domain_uuid)


def _boot(vm: LabVM) -> None:
    """Give the VM a running guest: restored from the warm pool when an entry
    is ready (about a second), otherwise booted cold."""
    started = time.monotonic()
    image = ensure_image(progress=lambda text: _progress(vm, text))
    profile = profile_for(vm.host.uri, image, vm.memory_mib, vm.vcpus)
    files = vm_files(vm)
    _remove_guest(vm)  # whatever a worker that died in this step left behind
    vm_files_remove(files.directory)
    hv = hypervisor(vm.host.uri)
    claimed = pool.claim(profile, files.directory) if settings.VM_POOL_SIZE else None
    if claimed is not None:
        _progress(vm, "Restoring a prepared guest")
        _set_domain_uuid(vm, claimed.domain_uuid)
        guest, agent = pool.restore(
            hv, claimed.state_file, domain_spec(vm, profile, files), remove_state_file=True
        )
        agent.exec(_personalise_argv(vm.hostname), timeout=30)
    else:
        _progress(vm, "Booting the kernel")
        _set_domain_uuid(vm, uuid.uuid4())
        overlay_create(base=image.disk, overlay=files.disk)
        guest = hv.define_and_start(domain_spec(vm, profile, files).to_xml())
        _progress(vm, "Waiting for the guest to come up")
        GuestAgent(guest).wait_ready(settings.VM_BOOT_TIMEOUT_SECONDS)
    _place_starter(vm, guest)
    vm.boot_seconds = time.monotonic() - started
    vm.image_hash = image.hash
    if settings.VM_POOL_SIZE:
        _refill_pool_later(vm)


def _place_starter(vm: LabVM, guest: Guest) -> None:
    """The exercise's starter files, in /root of a fresh guest."""
    version = vm.exercise.current_version
    if version is None:
        return
    from exercises.grading.runner import place_starter

    _progress(vm, "Copying the starter files")
    place_starter(GuestAgent(guest), version)


def _refill_pool_later(vm: LabVM) -> None:
    refill_pool_later(vm.host, vm.memory_mib, vm.vcpus)


def refill_pool_later(host: Host, memory_mib: int, vcpus: int) -> None:
    from vms.tasks import pool_fill

    pool_fill.apply_async((host.name, memory_mib, vcpus), queue=host.queue, expires=600)


def pool_fill(host_name: str, memory_mib: int, vcpus: int) -> int:
    from vms.models import Host

    host = Host.objects.get(name=host_name)
    image = ensure_image(progress=lambda text: log.info("pool: %s", text))
    profile = profile_for(host.uri, image, memory_mib, vcpus)
    return pool.fill(
        hypervisor(host.uri),
        profile,
        size=settings.VM_POOL_SIZE,
        boot_timeout=settings.VM_BOOT_TIMEOUT_SECONDS,
    )


def provision(vm_id: str) -> None:
    LabVM.objects.filter(pk=vm_id, state=VMState.REQUESTED).update(
        state=VMState.PROVISIONING, state_changed_at=timezone.now()
    )
    vm = _claim(vm_id, VMState.PROVISIONING)
    if vm is None:
        return
    try:
        _boot(vm)
    except HypervisorError as exc:
        fail(vm, exc.code, exc.message)
        return
    except Exception as exc:
        fail(vm, "internal_error", f"Starting the VM failed unexpectedly: {exc}")
        raise
    if vm.transition(
        VMState.PROVISIONING,
        VMState.RUNNING,
        progress="Ready",
        boot_seconds=vm.boot_seconds,
        image_hash=vm.image_hash,
    ):
        publish_vm_event(vm)
    else:
        # Destroyed while booting: the destroy task owns the cleanup.
        log.info("VM %s left PROVISIONING while booting (now %s)", vm.id, vm.state)


def _guest(vm: LabVM) -> Guest:
    return hypervisor(vm.host.uri).lookup(vm.domain_name)


def stop(vm_id: str) -> None:
    vm = _claim(vm_id, VMState.STOPPING)
    if vm is None:
        return
    try:
        guest = _guest(vm)
        if guest.is_running():
            guest.managed_save()
    except HypervisorError as exc:
        fail(vm, exc.code, f"Stopping failed: {exc.message}")
        return
    if vm.transition(VMState.STOPPING, VMState.STOPPED, progress="Stopped"):
        publish_vm_event(vm)


def resume(vm_id: str) -> None:
    vm = _claim(vm_id, VMState.RESUMING)
    if vm is None:
        return
    try:
        guest = _guest(vm)
        if not guest.is_running():
            restored = guest.has_managed_save()
            guest.start()
            agent = GuestAgent(guest)
            agent.wait_ready(settings.VM_BOOT_TIMEOUT_SECONDS)
            if restored:
                agent.set_time()
    except HypervisorError as exc:
        fail(vm, exc.code, f"Resuming failed: {exc.message}")
        return
    if vm.transition(VMState.RESUMING, VMState.RUNNING, progress="Ready"):
        publish_vm_event(vm)


def reset(vm_id: str) -> None:
    """Throw the disk away and boot fresh from the base image."""
    vm = _claim(vm_id, VMState.RESETTING)
    if vm is None:
        return
    try:
        _remove_guest(vm)
        vm_files_remove(vm_files(vm).directory)
        _boot(vm)
    except HypervisorError as exc:
        fail(vm, exc.code, f"Reset failed: {exc.message}")
        return
    if vm.transition(
        VMState.RESETTING,
        VMState.RUNNING,
        progress="Ready",
        boot_seconds=vm.boot_seconds,
        image_hash=vm.image_hash,
    ):
        publish_vm_event(vm)


def destroy(vm_id: str) -> None:
    vm = _claim(vm_id, VMState.DESTROYING)
    if vm is None:
        return
    try:
        _remove_guest(vm)
    except HypervisorError as exc:
        # Keep DESTROYING: the reaper retries, and the files stay until it can.
        log.error("destroying VM %s failed: %s", vm.id, exc.message)
        return
    vm_files_remove(vm_files(vm).directory)
    if vm.transition(VMState.DESTROYING, VMState.DESTROYED, progress="Destroyed"):
        publish_vm_event(vm)
