"""The reaper removes only its own site's orphans: a guest of another site (or
another test run) on the same libvirtd, with its files in another VM_DIR,
is left alone. libvirt's test:///default driver stands in for QEMU."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from tests.conftest import World
from tests.unit.test_domain_xml import spec
from vms import lifecycle, reaper
from vms.hypervisor.domain import LabMetadata
from vms.models import Host

URI = "test:///default"


def define_lab_guest(folder: Path) -> str:
    vm_id = str(uuid.uuid4())
    s = spec(
        name=f"kernellab-{vm_id[:8]}",
        uuid=str(uuid.uuid4()),
        metadata=LabMetadata(vm_id=vm_id, owner="alice", exercise="hello-module", image="abc"),
        disk=folder / vm_id / "disk.qcow2",
        shell_log=folder / vm_id / "shell.log",
        kernel_log=folder / vm_id / "kernel.log",
    )
    lifecycle.hypervisor(URI).define_and_start(s.to_xml())
    return s.name


def test_disk_paths_are_read_from_the_definition(tmp_path: Path) -> None:
    name = define_lab_guest(tmp_path)
    guest = lifecycle.hypervisor(URI).lookup(name)
    assert [p.name for p in guest.disk_paths()] == ["disk.qcow2"]
    assert all(p.is_relative_to(tmp_path) for p in guest.disk_paths())
    guest.destroy()
    guest.undefine()


def test_an_orphan_of_ours_goes_and_another_sites_guest_stays(
    world: World, settings: Any, tmp_path: Path
) -> None:
    settings.VM_DIR = tmp_path / "ours"
    (tmp_path / "ours").mkdir()
    orphan = define_lab_guest(tmp_path / "ours")
    theirs = define_lab_guest(tmp_path / "another-site")
    host = Host.objects.create(name="testdriver", uri=URI)

    reaper.reconcile(host)

    hv = lifecycle.hypervisor(URI)
    assert hv.find(orphan) is None
    survivor = hv.lookup(theirs)
    assert survivor.is_running()
    survivor.destroy()
    survivor.undefine()
