"""Confinement read off the running system, not the domain XML: a real lab
guest (a warm-pool entry restored as a lab VM, the way most Starts go),
whose QEMU process is found through libvirt's pid file, then its cgroups,
its credentials, QEMU's own block throttling and the guest's network devices
are read where the kernel and QEMU keep them.

What enforces what, on this host (cgroup v1 through cgroupfs, no systemd):
CPU by the guest's cpu cgroup (CFS quota), memory by its memory cgroup,
disk bytes and IOPS by QEMU's block layer (iotune), the user by libvirt's
qemu.conf (Debian's libvirt-qemu)."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.conf import LazySettings
from django.test import override_settings

from tests.conftest import World
from tests.integration.conftest import TEST_VM_ROOT
from vms import lifecycle, pool, services
from vms.guest_folder import GuestFolder
from vms.guests import GuestRole, PreparedGuest, discard, pool_add_entry, prepare_guest
from vms.hypervisor.agent import GuestAgent
from vms.hypervisor.domain import LAB_CPU_WEIGHT
from vms.hypervisor.overlay import disk_info
from vms.images import BuiltImage
from vms.models import VMState

pytestmark = [pytest.mark.libvirt]

MIB = 1024 * 1024
MEMORY_MIB = 1024
LIMITS = {
    "VM_CPU_PERCENT": 25,
    "VM_MEMORY_OVERHEAD_MIB": 384,
    "VM_DISK_READ_BYTES_PER_SEC": 0,
    "VM_DISK_WRITE_BYTES_PER_SEC": 2 * MIB,
    "VM_DISK_READ_IOPS": 0,
    "VM_DISK_WRITE_IOPS": 300,
    "GRADING_CPU_WEIGHT_PERCENT": 25,
}


@dataclass
class Confined:
    prepared: PreparedGuest

    @property
    def name(self) -> str:
        return self.prepared.guest.name

    @property
    def agent(self) -> GuestAgent:
        return self.prepared.agent

    def pid(self) -> int:
        return qemu_pid(self.name)

    def sh(self, script: str, timeout: float = 60) -> str:
        result = self.agent.exec(["sh", "-c", script], timeout=timeout)
        assert result.exit_code == 0, result
        return result.stdout.decode()


@pytest.fixture(scope="module")
def confined(lab_image: BuiltImage) -> Iterator[Confined]:
    """A grading guest restored from a warm-pool entry, with LIMITS. The entry
    is booted with the default limits (a halved CPU would double the boot) and
    a lab guest's CPU weight, so the restore also shows that a pool entry takes
    on the limits and weight of its new domain."""
    root = TEST_VM_ROOT / f"confine-{uuid.uuid4().hex[:8]}"
    root.mkdir(parents=True, mode=0o755)
    hv = lifecycle.hypervisor("qemu:///system")
    profile = pool.Profile(lab_image, "qemu", MEMORY_MIB, 1)
    prepared: PreparedGuest | None = None
    try:
        with override_settings(VM_DIR=root, VIRT_TYPE="qemu"):
            pool_add_entry(hv, profile, boot_timeout=180)
            with override_settings(**LIMITS):
                prepared = prepare_guest(
                    hv,
                    profile,
                    GuestFolder(root / "lab"),
                    GuestRole(
                        title="KernelLab confinement test", vm_id="confinement-test", grading=True
                    ),
                    boot_timeout=180,
                    use_pool=True,
                    persistent=True,
                )
                assert prepared.from_pool
                yield Confined(prepared)
    finally:
        if prepared is not None:
            discard(hv, uuid.UUID(prepared.guest.uuid))
        shutil.rmtree(root, ignore_errors=True)


# -- reading cgroups (v1 controllers, as here, or the v2 unified hierarchy) -----------


def cgroup_of(pid: int, controller: str) -> tuple[Path, int]:
    """The domain's cgroup folder for ``controller`` and the cgroup version:
    QEMU's own line in /proc/<pid>/cgroup, its thread folder (emulator) left out."""
    lines = [line.split(":", 2) for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines()]
    for _id, controllers, path in lines:
        if controller in controllers.split(","):
            return _mount_of(controller, version=1) / _domain_part(path), 1
    for _id, controllers, path in lines:
        if controllers == "":
            return _mount_of("", version=2) / _domain_part(path), 2
    raise AssertionError(f"QEMU {pid} is in no {controller} cgroup")


def _domain_part(path: str) -> str:
    return re.sub(r"/(emulator|vcpu\d+|iothread\d+)$", "", path).lstrip("/")


def _mount_of(controller: str, *, version: int) -> Path:
    for line in Path("/proc/self/mounts").read_text().splitlines():
        _dev, mountpoint, fstype, options, *_ = line.split()
        if version == 1 and fstype == "cgroup" and controller in options.split(","):
            return Path(mountpoint)
        if version == 2 and fstype == "cgroup2":
            return Path(mountpoint)
    raise AssertionError(f"no cgroup v{version} mount for {controller or 'the unified tree'}")


def cpu_quota(pid: int) -> tuple[int, int]:
    """(quota, period) in microseconds of the domain's cgroup."""
    folder, version = cgroup_of(pid, "cpu")
    if version == 1:
        quota = int((folder / "cpu.cfs_quota_us").read_text())
        return quota, int((folder / "cpu.cfs_period_us").read_text())
    quota_text, period = (folder / "cpu.max").read_text().split()
    return (-1 if quota_text == "max" else int(quota_text)), int(period)


def cpu_weight(pid: int) -> int:
    """The domain's cgroup cpu weight: v1 shares, or v2 weight (libvirt maps
    shares onto 1..10000)."""
    folder, version = cgroup_of(pid, "cpu")
    return int((folder / ("cpu.shares" if version == 1 else "cpu.weight")).read_text())


def qemu_pid(domain_name: str) -> int:
    """A running domain's QEMU pid, from libvirt's pid file."""
    return int(Path(f"/run/libvirt/qemu/{domain_name}.pid").read_text().strip())


def cpu_throttled(pid: int) -> int:
    folder, _version = cgroup_of(pid, "cpu")
    stats = dict(line.split() for line in (folder / "cpu.stat").read_text().splitlines())
    return int(stats["nr_throttled"])


def memory_limit(pid: int) -> int:
    folder, version = cgroup_of(pid, "memory")
    name = "memory.limit_in_bytes" if version == 1 else "memory.max"
    return int((folder / name).read_text())


def cpu_seconds(pid: int) -> float:
    """User and system time of all of QEMU's threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- the tests -------------------------------------------------------------------------


def test_qemu_runs_as_an_unprivileged_user(confined: Confined) -> None:
    status = Path(f"/proc/{confined.pid()}/status").read_text()
    ids = {
        key: [int(value) for value in rest.split()]
        for key, rest in (line.split(":", 1) for line in status.splitlines())
        if key in ("Uid", "Gid")
    }
    assert 0 not in ids["Uid"], f"QEMU runs as root: {ids}"
    assert 0 not in ids["Gid"], f"QEMU runs in group root: {ids}"
    assert "CapEff:\t0000000000000000" in status, "QEMU keeps capabilities"


def test_the_guests_cpu_cgroup_has_its_quota(confined: Confined) -> None:
    assert cpu_quota(confined.pid()) == (25_000, 100_000)


def test_a_pool_entry_restored_as_a_grading_guest_weighs_a_quarter_of_a_lab_guest(
    confined: Confined,
) -> None:
    assert cpu_weight(confined.pid()) == LAB_CPU_WEIGHT * 25 // 100


def test_a_cpu_hog_in_the_guest_gets_no_more_than_its_quota(confined: Confined) -> None:
    pid = confined.pid()
    confined.sh("timeout 60 sh -c 'while :; do :; done' >/dev/null 2>&1 & echo $! > /run/hog")
    try:
        time.sleep(1.0)
        used, throttled, started = cpu_seconds(pid), cpu_throttled(pid), time.monotonic()
        time.sleep(4.0)
        share = (cpu_seconds(pid) - used) / (time.monotonic() - started)
        throttled = cpu_throttled(pid) - throttled
    finally:
        confined.sh("kill $(cat /run/hog)")
    print(f"CPU hog: {share:.0%} of one host CPU, throttled in {throttled} periods")
    # A quarter of a CPU: throttled even when other work on the host leaves
    # the hog well short of a whole CPU.
    assert throttled > 0, "the quota never held QEMU back"
    assert share <= 0.35


def test_the_guests_memory_cgroup_bounds_qemu(confined: Confined) -> None:
    # RAM, overhead and TCG's 1 GiB translation cache
    assert memory_limit(confined.pid()) == (MEMORY_MIB + 384 + 1024) * MIB


def test_qemu_throttles_the_disk_itself(confined: Confined) -> None:
    """The cap is QEMU's (its block layer), read back from QEMU over QMP."""
    reply = subprocess.run(
        ["virsh", "qemu-monitor-command", confined.name, '{"execute":"query-block"}'],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    (disk,) = [d for d in json.loads(reply.stdout)["return"] if d.get("inserted")]
    inserted = disk["inserted"]
    assert inserted["bps_wr"] == 2 * MIB
    assert inserted["iops_wr"] == 300
    assert inserted["bps_rd"] == 0


def test_a_guest_writing_its_disk_is_held_to_the_write_cap(confined: Confined) -> None:
    out = confined.sh(
        "dd if=/dev/zero of=/root/fill bs=1M count=10 oflag=direct 2>&1; rm -f /root/fill"
    )
    match = re.search(r"copied, ([\d.]+) s", out)
    assert match, out
    seconds = float(match.group(1))
    print(f"dd of 10 MiB with oflag=direct: {seconds:.2f} s ({10 / seconds:.2f} MiB/s)")
    # 5 s at 2 MiB/s, less QEMU's burst allowance; uncapped it takes well under a second
    assert seconds >= 3.5


def virtual_size(disk: Path) -> int:
    info = disk_info(disk)
    assert info is not None, disk
    return int(str(info["virtual-size"]))


def test_the_guests_disk_is_bounded_by_its_overlays_virtual_size(
    confined: Confined, lab_image: BuiltImage
) -> None:
    """Whatever the guest writes lands in its own overlay, which can grow to
    the image's virtual size and no further (its file system is no larger)."""
    overlay = confined.prepared.folder.disk
    assert virtual_size(overlay) == virtual_size(lab_image.disk)
    assert [str(path) for path in confined.prepared.guest.disk_paths()] == [str(overlay)]
    filesystem_bytes = int(confined.sh("df -B1 --output=size / | tail -n1"))
    assert filesystem_bytes <= virtual_size(overlay)


def test_the_guest_has_no_network_but_loopback(confined: Confined) -> None:
    assert "<interface" not in confined.prepared.guest.xml()
    interfaces = confined.agent.command("guest-network-get-interfaces")
    assert [interface["name"] for interface in interfaces] == ["lo"]


def test_limits_hold_again_after_stop_and_resume(confined: Confined) -> None:
    """Stop is a managed save and Resume a start from it (vms.lifecycle):
    the saved image must start (no memory limit inside it) and get its limits back."""
    guest = confined.prepared.guest
    guest.managed_save()
    assert guest.has_managed_save()
    guest.start()
    confined.agent.wait_ready(30)
    pid = confined.pid()
    assert memory_limit(pid) == (MEMORY_MIB + 384 + 1024) * MIB
    assert cpu_quota(pid) == (25_000, 100_000)


# -- a nearly full host disk -------------------------------------------------------------


@pytest.fixture
def small_vm_dir(settings: LazySettings) -> Iterator[Path]:
    """A VM_DIR on its own 16 MiB tmpfs, filled to 4 MiB short of full, with
    a floor of 8 MiB free."""
    folder = TEST_VM_ROOT / f"diskfull-{uuid.uuid4().hex[:8]}"
    folder.mkdir(parents=True, mode=0o755)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(folder)], check=True)
    try:
        (folder / "filler").write_bytes(b"\0" * 12 * MIB)
        settings.VM_DIR = folder
        settings.VIRT_TYPE = "qemu"
        settings.HOST_DISK_MIN_FREE_MIB = 8
        settings.HOST_DISK_MIN_FREE_PERCENT = 0
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)
        folder.rmdir()


@pytest.mark.django_db(transaction=True)
def test_a_start_on_a_nearly_full_host_disk_is_refused_and_leaves_nothing(
    world: World, small_vm_dir: Path, no_enqueue: Any, caplog: pytest.LogCaptureFixture
) -> None:
    vm = services.lab_start(user=world.alice, assignment=world.hello)
    with caplog.at_level(logging.ERROR):
        lifecycle.provision(str(vm.id))
    vm.refresh_from_db()
    assert vm.state == VMState.FAILED
    assert vm.error_code == "host_disk_full"
    assert "out of disk space" in vm.error_message
    assert "host disk nearly full" in caplog.text  # the staff's line, with the figures
    assert sorted(p.name for p in small_vm_dir.iterdir()) == ["filler"]
    assert lifecycle.hypervisor(vm.host.uri).find(vm.domain_name) is None
    assert lifecycle.pool_fill("local", 1024, 1) == 0
    assert sorted(p.name for p in small_vm_dir.iterdir()) == ["filler"]
