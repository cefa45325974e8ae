"""A Submit's grading begins by removing whatever clean guest a dead worker
left for its attempt (vms.sandbox.remove), looking through every domain on
the host. On a busy host, domains come and go while it looks (another
Submit's clean guest destroyed, a student's VM removed): one that vanishes
between the listing and the reading is not a reason to fail the Submit.
Seen as a Submit ending in "Grading could not run (… is gone (reading the
metadata) …)" in tests/integration/test_faults_wave.py; libvirt's test
driver stands in for QEMU here."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import pytest
from django.conf import LazySettings

from tests.unit.test_domain_xml import spec
from vms import lifecycle, sandbox
from vms.hypervisor.domain import LabMetadata
from vms.hypervisor.host import Host as HypervisorHost
from vms.models import domain_name_for

URI = "test:///default"


def grading_guest_defined(folder: Path, attempt_id: int) -> str:
    domain_uuid = uuid.uuid4()
    vm_id = f"{sandbox.PREFIX}{attempt_id}"
    s = spec(
        name=domain_name_for(domain_uuid),
        uuid=str(domain_uuid),
        metadata=LabMetadata(vm_id=vm_id, owner="-", exercise="hello-module", image="abc"),
        disk=folder / str(attempt_id) / "disk.qcow2",
        shell_log=folder / str(attempt_id) / "shell.log",
        kernel_log=folder / str(attempt_id) / "kernel.log",
    )
    lifecycle.hypervisor(URI).define_and_start(s.to_xml())
    return s.name


@pytest.fixture
def grading_folder(settings: LazySettings, tmp_path: Path) -> Iterator[Path]:
    settings.VM_DIR = tmp_path
    yield tmp_path / "grading"
    hv = lifecycle.hypervisor(URI)
    for guest in list(hv.guests()):
        if str(tmp_path) in guest.xml():
            guest.destroy()
            guest.undefine()


def test_a_domain_gone_between_listing_and_reading_does_not_stop_the_clean_up(
    grading_folder: Path,
) -> None:
    hv = lifecycle.hypervisor(URI)
    left_behind = grading_guest_defined(grading_folder, 7)
    finishing = grading_guest_defined(grading_folder, 8)
    listed = list(hv.guests())
    # Another Submit's clean guest is destroyed between the listing and the reading.
    other = hv.lookup(finishing)
    other.destroy()
    other.undefine()

    with mock.patch.object(HypervisorHost, "guests", return_value=iter(listed)):
        sandbox.remove(URI, 7)

    assert hv.find(left_behind) is None, "the dead worker's guest was not removed"
