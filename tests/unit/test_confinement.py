"""Confinement without a real guest: the limits each domain declares, the
memory limit the hypervisor layer applies after every start (libvirt's
test:///default driver), and the free-space floor that refuses to write a
guest's files on a nearly full host (the free-space probe substituted).
tests/integration/test_confinement.py reads the same limits on a running QEMU."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import uuid
import xml.etree.ElementTree as ET
from datetime import timedelta
from pathlib import Path
from unittest import mock

import libvirt
import pytest
from django.conf import LazySettings
from django.utils import timezone

from tests.conftest import World
from tests.unit.test_domain_xml import spec
from vms import confinement, lifecycle
from vms.confinement import DiskSpace, guest_limits, host_disk_room_check
from vms.hypervisor.domain import (
    LIMITS_NS,
    GuestLimits,
    LabMetadata,
    declared_cpu_shares,
    declared_memory_hard_limit_kib,
)
from vms.hypervisor.errors import GuestOperationFailed, HostDiskFull
from vms.hypervisor.guest import Guest
from vms.hypervisor.host import Host as HypervisorHost
from vms.models import Host, LabVM, VMState

URI = "test:///default"
GIB = 1024**3
MIB = 1024**2


def domain(**overrides: object) -> ET.Element:
    return ET.fromstring(spec(**overrides).to_xml())  # noqa: S314 - our own output


# -- what a domain declares ------------------------------------------------------------


def test_cpu_quota_covers_the_whole_guest_in_proportion_to_its_vcpus() -> None:
    root = domain(vcpus=2, limits=GuestLimits(cpu_percent=50))
    assert root.findtext("cputune/shares") == "2048"
    assert root.findtext("cputune/global_period") == "100000"
    # two vCPUs at half a host CPU each: one host CPU's worth in all
    assert root.findtext("cputune/global_quota") == "100000"


def test_a_grading_guest_weighs_less_than_a_lab_guest(settings: LazySettings) -> None:
    """A wave of Submits competes with students at their consoles and with
    Starts booting: when the cores are short, the labs come first."""
    settings.GRADING_CPU_WEIGHT_PERCENT = 25
    lab = domain(vcpus=2, limits=guest_limits())
    grading = domain(vcpus=2, limits=guest_limits(grading=True))
    assert lab.findtext("cputune/shares") == "2048"
    assert grading.findtext("cputune/shares") == "512"
    # Declared for the live cgroup too: a pool entry restored as a grading guest
    # was saved with a lab guest's shares.
    declared = grading.find(f"metadata/{{{LIMITS_NS}}}limits")
    assert declared is not None
    assert declared_cpu_shares(ET.tostring(declared, encoding="unicode")) == 512
    # The quota, the bound, is the same for both.
    assert lab.findtext("cputune/global_quota") == grading.findtext("cputune/global_quota")


def test_a_started_guest_gets_its_declared_shares_live() -> None:
    """Guest.enforce_limits sets the cgroup's shares the domain declares (the
    test driver has no cpu shares: the call is checked on a stand-in)."""
    guest = Guest(mock.Mock(spec=libvirt.virDomain))
    limits = domain(limits=guest_limits(grading=True)).find(f"metadata/{{{LIMITS_NS}}}limits")
    assert limits is not None
    declared = ET.tostring(limits, encoding="unicode")
    guest.domain.metadata.return_value = declared
    guest.enforce_limits()
    guest.domain.setSchedulerParametersFlags.assert_called_once_with(
        {"cpu_shares": 256}, libvirt.VIR_DOMAIN_AFFECT_LIVE
    )
    guest.domain.destroy.assert_not_called()


def test_disk_caps_are_the_disks_iotune() -> None:
    limits = GuestLimits(
        disk_read_bytes_sec=100 * MIB,
        disk_write_bytes_sec=50 * MIB,
        disk_read_iops_sec=2000,
        disk_write_iops_sec=1000,
    )
    iotune = domain(limits=limits).find("devices/disk/iotune")
    assert iotune is not None
    assert {child.tag: child.text for child in iotune} == {
        "read_bytes_sec": str(100 * MIB),
        "write_bytes_sec": str(50 * MIB),
        "read_iops_sec": "2000",
        "write_iops_sec": "1000",
    }


def test_an_uncapped_disk_has_no_iotune() -> None:
    assert domain(limits=GuestLimits()).find("devices/disk/iotune") is None


def declared_limit_mib(root: ET.Element) -> int | None:
    element = root.find(f"metadata/{{{LIMITS_NS}}}limits")
    assert element is not None
    kib = declared_memory_hard_limit_kib(ET.tostring(element, encoding="unicode"))
    return None if kib is None else kib // 1024


def test_memory_limit_is_declared_in_metadata_not_memtune() -> None:
    root = domain(virt_type="kvm", memory_mib=1024, limits=GuestLimits(memory_overhead_mib=512))
    assert root.find("memtune") is None  # libvirt would refuse to start it here
    assert declared_limit_mib(root) == 1024 + 512


def test_under_tcg_the_memory_limit_holds_the_translation_cache_too() -> None:
    root = domain(virt_type="qemu", memory_mib=1024, limits=GuestLimits(memory_overhead_mib=512))
    assert declared_limit_mib(root) == 1024 + 512 + 1024


def test_a_guest_has_no_network_device() -> None:
    assert domain().find("devices/interface") is None


@pytest.mark.parametrize(
    ("field", "value"),
    [("cpu_percent", 0), ("cpu_percent", 101), ("memory_overhead_mib", 32)],
)
def test_out_of_range_limits_are_refused(field: str, value: int) -> None:
    with pytest.raises(ValueError, match=field.split("_")[0]):
        GuestLimits(**{field: value})


def test_limits_come_from_the_settings(settings: LazySettings) -> None:
    settings.VM_CPU_PERCENT = 40
    settings.VM_MEMORY_OVERHEAD_MIB = 300
    settings.VM_DISK_WRITE_BYTES_PER_SEC = 7 * MIB
    settings.VM_DISK_READ_IOPS = 0
    limits = guest_limits()
    assert limits.cpu_percent == 40
    assert limits.memory_overhead_mib == 300
    assert limits.disk_write_bytes_sec == 7 * MIB
    assert limits.disk_read_iops_sec == 0


# -- the memory limit applied after every start (test:///default) -------------------------


@pytest.fixture
def hv() -> HypervisorHost:
    return HypervisorHost(URI)


def unique_spec(tmp_path: Path, **overrides: object) -> str:
    domain_uuid = uuid.uuid4()
    return spec(
        name=f"kernellab-{domain_uuid}",
        uuid=str(domain_uuid),
        disk=tmp_path / "disk.qcow2",
        **overrides,
    ).to_xml()


def hard_limit_kib(hv: HypervisorHost, name: str) -> int:
    params = hv.lookup(name).domain.memoryParameters(0)
    return int(params["hard_limit"])


def test_a_started_guest_gets_its_memory_limit(hv: HypervisorHost, tmp_path: Path) -> None:
    xml = unique_spec(tmp_path, memory_mib=512, limits=GuestLimits(memory_overhead_mib=256))
    guest = hv.define_and_start(xml)
    try:
        assert hard_limit_kib(hv, guest.name) == (512 + 256 + 1024) * 1024
    finally:
        guest.destroy()
        guest.undefine()


def test_a_transient_guest_gets_its_memory_limit(hv: HypervisorHost, tmp_path: Path) -> None:
    guest = hv.create_transient(unique_spec(tmp_path, memory_mib=256))
    try:
        assert hard_limit_kib(hv, guest.name) == (256 + 512 + 1024) * 1024
    finally:
        guest.destroy()


def test_a_save_carries_no_limit_and_a_restore_gets_it_back(
    hv: HypervisorHost, tmp_path: Path
) -> None:
    xml = unique_spec(tmp_path, memory_mib=512, limits=GuestLimits(memory_overhead_mib=256))
    guest = hv.create_transient(xml)
    saved_limits: list[int] = []
    real_save = guest.domain.save

    def save(path: str) -> int:
        saved_limits.append(int(guest.domain.memoryParameters(0)["hard_limit"]))
        return int(real_save(path))

    with mock.patch.object(guest.domain, "save", save):
        guest.save(str(tmp_path / "state.save"))
    assert saved_limits[0] > 2**50, "the limit must be lifted while saving"
    # The test driver restores without new XML (QEMU can: tests/integration).
    with mock.patch.object(
        libvirt.virConnect,
        "restoreFlags",
        lambda conn, path, _xml, _flags: conn.restore(path),
    ):
        restored = hv.restore(str(tmp_path / "state.save"), xml)
    try:
        assert hard_limit_kib(hv, restored.name) == (512 + 256 + 1024) * 1024
    finally:
        restored.destroy()
        restored.undefine()


def test_a_guest_whose_limit_cannot_be_set_is_not_left_running(
    hv: HypervisorHost, tmp_path: Path
) -> None:
    xml = unique_spec(tmp_path)
    with (
        mock.patch.object(
            libvirt.virDomain, "setMemoryParameters", side_effect=libvirt.libvirtError("no cgroup")
        ),
        pytest.raises(GuestOperationFailed, match="memory limit"),
    ):
        hv.create_transient(xml)
    name = ET.fromstring(xml).findtext("name")  # noqa: S314 - our own output
    assert name is not None
    assert hv.find(name) is None


# -- the free-space floor -----------------------------------------------------------------


@pytest.fixture
def disk(monkeypatch: pytest.MonkeyPatch) -> list[DiskSpace]:
    """The guests' file system as the check sees it: set ``disk[0]``."""
    space = [DiskSpace(total=100 * GIB, free=50 * GIB)]
    monkeypatch.setattr(confinement, "disk_space", lambda _directory: space[0])
    return space


def test_room_enough_passes(disk: list[DiskSpace], tmp_path: Path) -> None:
    host_disk_room_check(directory=tmp_path, doing="test")


def test_below_the_mib_floor_is_refused_and_logged_for_staff(
    disk: list[DiskSpace],
    settings: LazySettings,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings.HOST_DISK_MIN_FREE_MIB = 2048
    settings.HOST_DISK_MIN_FREE_PERCENT = 0
    disk[0] = DiskSpace(total=100 * GIB, free=1 * GIB)
    with caplog.at_level(logging.ERROR), pytest.raises(HostDiskFull) as refused:
        host_disk_room_check(directory=tmp_path, doing="boot VM x")
    assert refused.value.code == "host_disk_full"
    assert "out of disk space" in refused.value.message
    assert "1024 MiB free" in caplog.text
    assert "boot VM x" in caplog.text


def test_below_the_percent_floor_is_refused(
    disk: list[DiskSpace], settings: LazySettings, tmp_path: Path
) -> None:
    settings.HOST_DISK_MIN_FREE_MIB = 0
    settings.HOST_DISK_MIN_FREE_PERCENT = 5
    disk[0] = DiskSpace(total=1000 * GIB, free=40 * GIB)  # 4 %, though 40 GiB
    with pytest.raises(HostDiskFull):
        host_disk_room_check(directory=tmp_path, doing="test")


def test_the_real_probe_reads_the_nearest_existing_folder(tmp_path: Path) -> None:
    space = confinement.disk_space(tmp_path / "not" / "yet")
    assert 0 < space.free <= space.total


@pytest.fixture
def lab_vm(world: World, settings: LazySettings, tmp_path: Path) -> LabVM:
    settings.VM_DIR = tmp_path
    host = Host.objects.create(name="testdriver", uri=URI)
    return LabVM.objects.create(
        owner=world.alice,
        exercise=world.hello.exercise,
        assignment=world.hello,
        host=host,
        state=VMState.REQUESTED,
        expires_at=timezone.now() + timedelta(days=1),
    )


def never(*_args: object, **_kwargs: object) -> None:
    raise AssertionError("nothing may be prepared on a full disk")


def test_a_start_on_a_full_disk_fails_with_the_reason_and_leaves_nothing(
    lab_vm: LabVM, disk: list[DiskSpace], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    disk[0] = DiskSpace(total=100 * GIB, free=10 * MIB)
    monkeypatch.setattr(lifecycle, "ensure_image", never)
    lifecycle.provision(str(lab_vm.id))
    lab_vm.refresh_from_db()
    assert lab_vm.state == VMState.FAILED
    assert lab_vm.error_code == "host_disk_full"
    assert "out of disk space" in lab_vm.error_message
    assert list(tmp_path.iterdir()) == []


def test_a_reset_on_a_full_disk_fails_with_the_reason(
    lab_vm: LabVM, disk: list[DiskSpace], monkeypatch: pytest.MonkeyPatch
) -> None:
    LabVM.objects.filter(pk=lab_vm.pk).update(state=VMState.RESETTING)
    disk[0] = DiskSpace(total=100 * GIB, free=10 * MIB)
    monkeypatch.setattr(lifecycle, "ensure_image", never)
    lifecycle.reset(str(lab_vm.id))
    lab_vm.refresh_from_db()
    assert lab_vm.state == VMState.FAILED
    assert lab_vm.error_code == "host_disk_full"


def test_a_resume_on_a_full_disk_keeps_the_vm_stopped_with_the_reason(
    lab_vm: LabVM, disk: list[DiskSpace], hv: HypervisorHost, tmp_path: Path
) -> None:
    lab_vm.domain_uuid = uuid.uuid4()
    LabVM.objects.filter(pk=lab_vm.pk).update(
        state=VMState.RESUMING, domain_uuid=lab_vm.domain_uuid
    )
    xml = spec(
        name=lab_vm.domain_name,
        uuid=str(lab_vm.domain_uuid),
        metadata=LabMetadata(vm_id=str(lab_vm.pk), owner="alice", exercise="x", image="x"),
        disk=tmp_path / str(lab_vm.pk) / "disk.qcow2",
    ).to_xml()
    guest = lifecycle.hypervisor(URI).define_and_start(xml)
    guest.destroy()  # stopped, its definition kept
    try:
        disk[0] = DiskSpace(total=100 * GIB, free=10 * MIB)
        lifecycle.resume(str(lab_vm.id))
        lab_vm.refresh_from_db()
        assert lab_vm.state == VMState.STOPPED
        assert lab_vm.error_code == "host_disk_full"
        assert not guest.is_running()
    finally:
        guest.undefine()


def test_the_pool_is_not_refilled_on_a_full_disk(
    lab_vm: LabVM, disk: list[DiskSpace], monkeypatch: pytest.MonkeyPatch
) -> None:
    disk[0] = DiskSpace(total=100 * GIB, free=10 * MIB)
    monkeypatch.setattr(lifecycle, "ensure_image", never)
    assert lifecycle.pool_fill("testdriver", 1024, 1) == 0


# -- set-up: QEMU never as root (./kernellab services) -----------------------------------

KERNELLAB = Path(__file__).resolve().parents[2] / "kernellab"


def check_qemu_user(conf: Path) -> subprocess.CompletedProcess[str]:
    """The script's check_qemu_user (with its say and die) against ``conf``."""
    script = KERNELLAB.read_text()
    functions = re.findall(r"^(?:say|die)\(\) .*$", script, re.M)
    functions += re.findall(r"^check_qemu_user\(\) \{$.*?^\}$", script, re.M | re.S)
    assert len(functions) == 3, functions
    return subprocess.run(
        ["bash", "-c", "\n".join([*functions, "check_qemu_user"])],
        env={**os.environ, "LIBVIRT_QEMU_CONF": str(conf)},
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )


def test_services_refuse_a_qemu_conf_that_runs_qemu_as_root(tmp_path: Path) -> None:
    conf = tmp_path / "qemu.conf"
    conf.write_text('#user = "libvirt-qemu"\nuser = "root"\n')
    result = check_qemu_user(conf)
    assert result.returncode != 0
    assert "runs QEMU as root" in result.stderr


def test_services_accept_libvirts_unprivileged_default(tmp_path: Path) -> None:
    conf = tmp_path / "qemu.conf"
    conf.write_text('#user = "root"\n')
    result = check_qemu_user(conf)
    assert result.returncode == 0, result.stderr
    assert "QEMU user" in result.stdout
