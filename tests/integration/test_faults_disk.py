"""The fault-and-abuse suite: a student fills their guest's disk.

alice types `dd if=/dev/zero of=/root/fill bs=1M` in her console until the
guest's file system says "No space left on device". Defined outcome: the host
is unaffected (her overlay grows to no more than the guest's disk, its
virtual size, which vms.confinement's limits leave to the image), her console
still answers, a Check still reports (a failing check, not a hang or an
internal error), and Stop then Destroy leave nothing behind, as does the
reaper's next pass."""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from exercises.models import AttemptStatus
from tests.conftest import World
from tests.integration.test_console_abuse import echo_latencies, run
from tests.integration.test_faults import check_now, version_with_checker
from tests.integration.test_vm_lifecycle import started
from tests.support.console_client import ConsoleClient
from tests.support.processes import asgi_server_process
from vms import lifecycle, reaper, services
from vms.hypervisor.overlay import disk_info
from vms.models import LabVM, VMState

pytestmark = [pytest.mark.libvirt, pytest.mark.redis, pytest.mark.django_db(transaction=True)]

MIB = 1024 * 1024
# What dd writes for real after the ballast: enough to see the overlay grow,
# little enough to take seconds under TCG (filling the whole 6 GiB image with
# dd would take minutes; where the file system ends is what matters).
LEFT_FOR_DD_MIB = 192
# qcow2's own tables (L1/L2, refcounts) on top of the guest's data.
QCOW2_METADATA_SLACK = 64 * MIB

# A check a full disk fails: room left on the guest's root file system.
DISK_ROOM_CHECKER = """\
import json, shutil
nonce = open(".kernellab-nonce").read().strip()
free = shutil.disk_usage("/").free
print(json.dumps({"nonce": nonce, "checks": [
    {"id": "works", "title": "Check works", "passed": free >= 64 * 1048576, "points": 10,
     "message": f"{free // 1048576} MiB free on /"}]}))
"""

FILL = (
    "fallocate -l $(( $(df -B1 --output=avail / | tail -n1) - "
    f"{LEFT_FOR_DD_MIB} * 1048576 )) /root/ballast; "
    "dd if=/dev/zero of=/root/fill bs=1M; echo dd-exit-$?; sync; echo synced-$((6*7))"
)


def qcow2_sizes(disk: Path) -> tuple[int, int]:
    """(virtual size, bytes the file takes on the host's disk)."""
    info = disk_info(disk)
    assert info is not None, disk
    return int(str(info["virtual-size"])), int(str(info["actual-size"]))


async def test_a_guest_that_fills_its_disk_leaves_the_host_and_its_console_alone(
    world: World, vm_dir: Path, tmp_path: Path, no_enqueue: Any
) -> None:
    await sync_to_async(version_with_checker)(world, DISK_ROOM_CHECKER, limit_seconds=30)
    vm = await sync_to_async(started)(world)
    overlay = (await sync_to_async(lifecycle.vm_files)(vm)).disk
    virtual, before = qcow2_sizes(overlay)
    env = {"VM_DIR": str(vm_dir), "CONSOLE_RECORDING_DIR": str(tmp_path / "rec")}
    try:
        with asgi_server_process(tmp_path, **env) as (url, _server):
            term = await ConsoleClient.open(url, vm, world.alice)
            await run(term, "echo ready-$((1+1))", b"ready-2")
            began = time.monotonic()
            mark = len(term.output)
            await run(term, FILL, b"synced-42", timeout=180)
            fill_seconds = time.monotonic() - began
            said = bytes(term.output[mark:])
            assert b"No space left on device" in said, said[-400:]
            assert b"dd-exit-1" in said, said[-400:]
            # The console answers at once, full disk or not.
            await run(term, "df -B1M --output=avail / | tail -n1", b"\n")
            await run(term, "echo alive-$((2+3))", b"alive-5")
            latencies = await echo_latencies(term, 10)
            await term.close()
        _, after = qcow2_sizes(overlay)

        attempt, check_seconds = await sync_to_async(check_now)(world)
        results = await sync_to_async(lambda: list(attempt.results.values("passed", "message")))()
        print(
            f"\nfull guest disk: dd to ENOSPC in {fill_seconds:.1f}s; overlay "
            f"{before // MIB} -> {after // MIB} MiB of {virtual // MIB} MiB virtual; "
            f"echo p50 {statistics.median(latencies) * 1000:.1f} ms (max "
            f"{max(latencies) * 1000:.1f} ms); Check -> {attempt.status} in "
            f"{check_seconds:.1f}s {results}"
        )
        # The host: the fill landed in the overlay, which stays within the guest's disk.
        assert after - before >= (LEFT_FOR_DD_MIB // 2) * MIB, "dd's writes never reached the host"
        assert after <= virtual + QCOW2_METADATA_SLACK
        assert max(latencies) < 2.0, "the console of a guest with a full disk stalls"
        # The Check ran and reported a failing check, not an internal error or a hang.
        assert attempt.status == AttemptStatus.GRADED, attempt.reason
        assert attempt.score == 0
        assert results == [{"passed": False, "message": "0 MiB free on /"}]
        assert check_seconds < 30 + 15, "the Check outlived its checker's time limit"

        # Stop (a managed save of the full guest), then Destroy: nothing left.
        await sync_to_async(services.lab_stop)(vm=vm)
        await sync_to_async(lifecycle.stop)(str(vm.id))
        stopped = await sync_to_async(LabVM.objects.get)(pk=vm.pk)
        assert stopped.state == VMState.STOPPED, (stopped.error_code, stopped.error_message)
    finally:
        vm = await sync_to_async(LabVM.objects.get)(pk=vm.pk)
        if vm.state != VMState.DESTROYED:
            await sync_to_async(services.lab_destroy)(vm=vm)
            await sync_to_async(lifecycle.destroy)(str(vm.id))
    await sync_to_async(nothing_left_after_the_reaper)(vm, vm_dir)


def nothing_left_after_the_reaper(vm: LabVM, vm_dir: Path) -> None:
    """The reaper's next pass finds nothing to do: no domain, no folder, no
    state left half way."""
    folder = lifecycle.vm_files(vm).directory
    reaper.reap_host("local")
    vm.refresh_from_db()
    assert vm.state == VMState.DESTROYED
    assert lifecycle.hypervisor(vm.host.uri).find(vm.domain_name) is None
    assert not folder.exists(), "the overlay outlived its VM"
    assert [p.name for p in vm_dir.iterdir() if p.name != "grading"] == []
