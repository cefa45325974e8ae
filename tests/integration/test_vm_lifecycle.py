"""The whole life of a lab VM on real libvirt + QEMU: the worker-side steps
run here synchronously, exactly as the Celery tasks call them."""

from __future__ import annotations

import time
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


def test_a_cold_boot_keeps_what_the_platform_and_the_exercises_need(
    world: World, lab_image: BuiltImage, vm_dir: Path, no_enqueue: Any
) -> None:
    """The image's trimmed boot (its own initramfs, the PVH kernel, masked units
    and generators, a narrow udev coldplug) loses nothing: the agent answers
    (or the VM would not be RUNNING), every unit started, the kernel spoke on
    ttyS0 from its first line, the student's shell logged in by itself on hvc0,
    panics are reported, modules load, the exercises' tools are there."""
    vm = started(world)
    files = lifecycle.vm_files(vm)
    deadline = time.monotonic() + 30
    while f"root@{vm.hostname}".encode() not in files.shell_log.read_bytes():
        assert time.monotonic() < deadline, "no autologin prompt on hvc0"
        time.sleep(0.2)
    kernel_log = files.kernel_log.read_text(errors="replace")
    assert kernel_log.index("Linux version") < kernel_log.index("Run /init as init process")
    assert "systemd" in kernel_log[kernel_log.index("Run /init") :]

    assert sh(vm, "systemctl is-system-running --wait || systemctl --failed").strip() == "running"
    driver = "/sys/bus/acpi/devices/QEMU0001:00/physical_node/driver"
    assert sh(vm, f"readlink {driver}").strip().endswith("/pvpanic-mmio")
    # Free page reporting (feature bit 5) negotiated by the balloon's driver.
    features = sh(vm, "cat /sys/bus/virtio/drivers/virtio_balloon/virtio*/features").strip()
    assert features[5:6] == "1", features
    assert sh(vm, "modprobe loop && grep -c '^loop ' /proc/modules").strip() == "1"
    assert sh(vm, "findmnt -no OPTIONS /").startswith("rw")
    assert sh(vm, "test -e /sys/kernel/tracing/trace && systemctl is-active systemd-sysctl").strip()
    tools = "gcc make bpftrace trace-cmd sysctl strace insmod"
    sh(vm, f"for t in {tools}; do command -v $t || exit 1; done")
    sh(vm, "test -d /lib/modules/$(uname -r)/build")  # kbuild for the students' modules
    services.lab_destroy(vm=vm)
    lifecycle.destroy(str(vm.id))
