"""A lab guest whose kernel panics (`echo c > /proc/sysrq-trigger`, typed by
the student) says so within seconds, keeps its disk, and comes back with
Restart; the reaper catches a panic the watcher did not see."""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import World
from tests.integration.test_vm_lifecycle import agent_of, sh, started
from vms import lifecycle, reaper, services
from vms.crashes import vm_crashed
from vms.hypervisor.errors import HypervisorError
from vms.hypervisor.watch import PanicWatch
from vms.images import BuiltImage
from vms.models import LabVM, VMState

pytestmark = [pytest.mark.libvirt, pytest.mark.django_db(transaction=True)]


def panic(vm: LabVM) -> None:
    """Type the crash, as a student would; returns as the write is sent (the
    agent's exec never answers: the guest dies under it)."""
    agent = agent_of(vm)

    def write() -> None:
        with contextlib.suppress(HypervisorError):
            agent.exec(["sh", "-c", "echo c > /proc/sysrq-trigger"], timeout=10)

    threading.Thread(target=write, daemon=True).start()


def state_within(vm: LabVM, seconds: float) -> tuple[VMState, float]:
    started_at = time.monotonic()
    while time.monotonic() - started_at < seconds:
        vm.refresh_from_db()
        if vm.state != VMState.RUNNING:
            break
        time.sleep(0.2)
    return VMState(vm.state), time.monotonic() - started_at


def test_a_kernel_panic_shows_as_crashed_within_seconds_and_restart_keeps_the_disk(
    world: World, lab_image: BuiltImage, vm_dir: Path, no_enqueue: Any
) -> None:
    vm = started(world)
    sh(vm, "echo kept > /root/marker && sync")
    crashed: list[LabVM | None] = []
    watch = PanicWatch(
        vm.host.uri, on_panic=lambda uuid: crashed.append(vm_crashed(domain_uuid=uuid))
    )
    thread = threading.Thread(target=watch.run, daemon=True)
    thread.start()
    try:
        assert watch.connected.wait(10), "the watcher did not connect to libvirtd"
        panic(vm)
        state, seconds = state_within(vm, 20)
    finally:
        watch.stop()
        thread.join(10)
    assert state == VMState.CRASHED, vm.error_message
    assert [c.pk for c in crashed if c is not None] == [vm.pk], "one crash, marked once"
    print(f"panic shown {seconds:.2f} s after the sysrq write was sent")
    assert seconds < 10, f"noticed after {seconds:.1f} s"
    assert vm.error_code == "kernel_panic"
    assert "sysrq" in vm.crash_log.lower() or "Kernel panic" in vm.crash_log, vm.crash_log
    assert "\x1b" not in vm.crash_log

    # Restart: the same disk, booted again.
    services.lab_start(user=world.alice, assignment=world.hello)
    vm.refresh_from_db()
    assert vm.state == VMState.RESUMING
    lifecycle.resume(str(vm.id))
    vm.refresh_from_db()
    assert vm.state == VMState.RUNNING, vm.error_message
    assert vm.crash_log == ""
    assert sh(vm, "cat /root/marker").strip() == "kept"

    # A panic nobody watched: the reaper's round finds it.
    panic(vm)
    time.sleep(10)
    vm.refresh_from_db()
    assert vm.state == VMState.RUNNING, "nothing watches: the row still says running"
    reaper.reconcile(vm.host)
    vm.refresh_from_db()
    assert vm.state == VMState.CRASHED
    assert vm.error_code == "kernel_panic"

    services.lab_destroy(vm=vm)
    lifecycle.destroy(str(vm.id))
