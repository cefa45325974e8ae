"""The warm pool, and the faults a lab VM must survive: a worker killed in
the middle of a provision, and libvirtd restarting under running guests."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from unittest import mock

import pytest
from django.conf import LazySettings

from tests.conftest import World
from tests.integration.test_vm_lifecycle import sh, started
from tests.support.processes import celery_worker
from vms import lifecycle, pool, reaper, services
from vms.hypervisor.agent import GuestAgent
from vms.hypervisor.guest import GuestState
from vms.images import BuiltImage
from vms.models import LabVM, VMState

pytestmark = [pytest.mark.libvirt, pytest.mark.django_db(transaction=True)]


def domains_of(vm: LabVM) -> list[str]:
    return [
        g.name
        for g in lifecycle.hypervisor("qemu:///system").guests()
        if (m := g.metadata()) is not None and m.vm_id == str(vm.id)
    ]


def test_start_restores_a_pooled_guest(
    world: World, lab_image: BuiltImage, vm_dir: Path, settings: LazySettings
) -> None:
    settings.VM_POOL_SIZE = 1
    assert lifecycle.pool_fill("local", 1024, 1) == 1
    assert lifecycle.pool_fill("local", 1024, 1) == 0, "a full pool is left alone"
    with mock.patch("celery.app.task.Task.apply_async") as apply_async:
        vm = started(world)
    assert vm.boot_seconds is not None
    assert vm.boot_seconds < 10, "a restore, not a cold boot"
    profile = lifecycle.profile_for(vm.host.uri, lab_image, 1024, 1)
    assert pool.ready_count(profile) == 0
    # The claimed guest became this VM: its hostname, its metadata, a fresh prompt.
    assert sh(vm, "hostname").strip() == vm.hostname
    assert domains_of(vm) == [vm.domain_name]
    files = lifecycle.vm_files(vm)
    folder = files.directory
    assert not files.state_file.exists()
    deadline = time.monotonic() + 20
    while f"root@{vm.hostname}".encode() not in files.shell_log.read_bytes():
        assert time.monotonic() < deadline, "no prompt with the new hostname"
        time.sleep(0.2)
    # ...and the pool is refilled behind it, on the VM's host.
    refills = [c for c in apply_async.call_args_list if c.args[0] == ("local", 1024, 1)]
    assert refills
    assert refills[0].kwargs["queue"] == "host.local.housekeeping"
    # A restored guest stops and resumes like any other.
    services.lab_stop(vm=vm)
    lifecycle.stop(str(vm.id))
    services.lab_resume(vm=LabVM.objects.get(pk=vm.pk))
    lifecycle.resume(str(vm.id))
    assert LabVM.objects.get(pk=vm.pk).state == VMState.RUNNING
    services.lab_destroy(vm=LabVM.objects.get(pk=vm.pk))
    lifecycle.destroy(str(vm.id))
    assert domains_of(vm) == []
    assert not folder.exists()


def test_worker_killed_mid_provision_is_reconciled(
    world: World, lab_image: BuiltImage, vm_dir: Path, tmp_path: Path
) -> None:
    env = {"VM_DIR": str(vm_dir), "VIRT_TYPE": "qemu", "VM_POOL_SIZE": "0"}
    with celery_worker(tmp_path, "host.local.lab", **env) as worker:
        vm = services.lab_start(user=world.alice, assignment=world.hello)
        # Kill it while the guest boots: the domain exists, the step is half done.
        deadline = time.monotonic() + 60
        while not (LabVM.objects.get(pk=vm.pk).progress or "").startswith("Waiting for the guest"):
            assert time.monotonic() < deadline, worker.output()
            time.sleep(0.1)
        os.killpg(worker.popen.pid, signal.SIGKILL)
        worker.popen.wait()
        killed_at = time.monotonic()
    vm.refresh_from_db()
    assert vm.state == VMState.PROVISIONING
    assert vm.worker.endswith(f":{worker.popen.pid}")

    # The next reaper run (beat, every minute) finds the step's worker gone.
    reaper.reap_host("local")
    vm.refresh_from_db()
    assert vm.state in (VMState.RUNNING, VMState.FAILED)
    assert time.monotonic() - killed_at < 120
    if vm.state == VMState.FAILED:
        assert vm.error_code == "worker_lost"
        assert "start the lab again" in vm.error_message
        assert domains_of(vm) == []
        assert not lifecycle.vm_files(vm).directory.exists()
    else:
        assert domains_of(vm) == [vm.domain_name]


def test_orphans_are_removed_both_ways(
    world: World, lab_image: BuiltImage, vm_dir: Path, settings: LazySettings
) -> None:
    with mock.patch("celery.app.task.Task.apply_async"):
        kept = started(world, "alice")
        lost = started(world, "bob")
    # A row deleted behind the platform's back leaves a domain nobody owns...
    orphan_domain = lost.domain_name
    LabVM.objects.filter(pk=lost.pk).update(state=VMState.DESTROYED)
    # ...and a domain removed behind its back leaves a RUNNING row with nothing.
    guest = lifecycle.hypervisor("qemu:///system").lookup(kept.domain_name)
    guest.destroy()
    guest.undefine()
    # And a folder of a VM that no longer exists.
    stray = vm_dir / "0b6e4f8e-1c1e-4c9a-9a38-000000000000"
    stray.mkdir()

    reaper.reap_host("local")
    assert lifecycle.hypervisor("qemu:///system").find(orphan_domain) is None
    assert not lifecycle.vm_files(lost).directory.exists()
    kept.refresh_from_db()
    assert kept.state == VMState.FAILED
    assert kept.error_code == "domain_missing"
    assert not stray.exists()


def test_libvirtd_restart_keeps_guests_and_reconnects(
    world: World, lab_image: BuiltImage, vm_dir: Path
) -> None:
    with mock.patch("celery.app.task.Task.apply_async"):
        vm = started(world)
    sh(vm, "echo before > /root/note")
    # Started again as it was started (./kernellab services gives it the
    # project's configuration, which the service user needs to reach it).
    pid = Path("/run/libvirtd.pid").read_text().split()[0]
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").decode().split("\0")
    subprocess.run(["pkill", "-x", "libvirtd"], check=True)
    for _ in range(100):
        if subprocess.run(["pgrep", "-x", "libvirtd"], check=False, capture_output=True).returncode:
            break
        time.sleep(0.1)
    subprocess.run(argv, check=True)
    # The same per-process connection object notices and reconnects.
    deadline = time.monotonic() + 60
    while True:
        try:
            guest = lifecycle.hypervisor("qemu:///system").lookup(vm.domain_name)
            break
        except Exception:
            assert time.monotonic() < deadline
            time.sleep(0.5)
    assert guest.state() == GuestState.RUNNING
    # libvirtd reconnects to the guest agent's socket after its restart; the
    # agent answers again once that is done.
    GuestAgent(guest).wait_ready(60)
    assert sh(vm, "cat /root/note").strip() == "before"
    services.lab_destroy(vm=vm)
    lifecycle.destroy(str(vm.id))
    assert LabVM.objects.get(pk=vm.pk).state == VMState.DESTROYED
