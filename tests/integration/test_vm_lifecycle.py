"""The whole life of a lab VM on real libvirt + QEMU: the worker-side steps
run here synchronously, exactly as the Celery tasks call them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import World
from vms import lifecycle, services
from vms.hypervisor.agent import GuestAgent
from vms.hypervisor.guest import GuestState
from vms.images import BuiltImage
from vms.models import LabVM, VMState

pytestmark = [pytest.mark.libvirt, pytest.mark.django_db(transaction=True)]


def agent_of(vm: LabVM) -> GuestAgent:
    vm.refresh_from_db()
    return GuestAgent(lifecycle.hypervisor(vm.host.uri).lookup(vm.domain_name))


def sh(vm: LabVM, script: str) -> str:
    result = agent_of(vm).exec(["sh", "-c", script], timeout=30)
    assert result.exit_code == 0, result
    return result.stdout.decode()


def started(world: World, user: str = "alice") -> LabVM:
    assignment = world.hello if user == "alice" else world.strace
    vm = services.lab_start(user=getattr(world, user), assignment=assignment)
    lifecycle.provision(str(vm.id))
    vm.refresh_from_db()
    assert vm.state == VMState.RUNNING, (vm.error_code, vm.error_message)
    return vm


def test_start_stop_resume_reset_destroy(
    world: World, lab_image: BuiltImage, vm_dir: Path, no_enqueue: Any
) -> None:
    vm = started(world)
    assert vm.boot_seconds is not None
    assert vm.boot_seconds > 0
    assert sh(vm, "uname -r").strip() == lab_image.kernel_release
    assert sh(vm, "hostname").strip() == vm.hostname
    sh(vm, "echo kept > /root/marker && sync")

    services.lab_stop(vm=vm)
    lifecycle.stop(str(vm.id))
    vm.refresh_from_db()
    assert vm.state == VMState.STOPPED
    guest = lifecycle.hypervisor(vm.host.uri).lookup(vm.domain_name)
    assert guest.state() == GuestState.SHUTOFF

    services.lab_resume(vm=vm)
    lifecycle.resume(str(vm.id))
    vm.refresh_from_db()
    assert vm.state == VMState.RUNNING
    assert sh(vm, "cat /root/marker").strip() == "kept"

    services.lab_reset(vm=vm)
    lifecycle.reset(str(vm.id))
    vm.refresh_from_db()
    assert vm.state == VMState.RUNNING
    assert sh(vm, "test -e /root/marker && echo present || echo gone").strip() == "gone"

    folder = lifecycle.vm_files(vm).directory
    assert lifecycle.vm_files(vm).disk.exists()
    services.lab_destroy(vm=vm)
    lifecycle.destroy(str(vm.id))
    vm.refresh_from_db()
    assert vm.state == VMState.DESTROYED
    assert lifecycle.hypervisor(vm.host.uri).find(vm.domain_name) is None
    assert not folder.exists(), "overlay and logs must be gone"


def test_two_students_run_side_by_side(
    world: World, lab_image: BuiltImage, vm_dir: Path, no_enqueue: Any
) -> None:
    alice_vm = started(world, "alice")
    bob_vm = started(world, "bob")
    assert alice_vm.domain_name != bob_vm.domain_name
    sh(alice_vm, "echo alice > /root/who")
    assert sh(bob_vm, "cat /root/who 2>/dev/null || echo nobody").strip() == "nobody"
    for vm in (alice_vm, bob_vm):
        services.lab_destroy(vm=vm)
        lifecycle.destroy(str(vm.id))
