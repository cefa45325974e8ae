"""The reconciler must never destroy a running VM because libvirt hiccuped.
A metadata read that fails for another reason than "no such metadata" is not
"not ours"; raw libvirt errors never escape Host and Guest; a Resume that
meets an error goes back to STOPPED with a reason (its disk kept) instead
of staying RESUMING.
Against libvirt's test:///default driver, with the failing call injected."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from unittest import mock

import libvirt
import pytest
from django.conf import LazySettings
from django.utils import timezone

from tests.conftest import World
from tests.unit.test_domain_xml import spec
from vms import lifecycle, reaper
from vms.hypervisor.domain import LabMetadata
from vms.hypervisor.errors import GuestNotFound, GuestOperationFailed, HypervisorError
from vms.hypervisor.guest import Guest, GuestState
from vms.hypervisor.host import Host as HypervisorHost
from vms.models import Host, LabVM, VMState

URI = "test:///default"


def libvirt_error(code: int, message: str = "internal error: injected") -> libvirt.libvirtError:
    error = libvirt.libvirtError(message)
    error.err = (code, libvirt.VIR_FROM_DOMAIN, message, libvirt.VIR_ERR_ERROR, "", "", "", 0, 0)
    return error


@pytest.fixture
def hv() -> HypervisorHost:
    """The connection the reaper and lifecycle use in this process."""
    return lifecycle.hypervisor(URI)


@pytest.fixture
def running(
    world: World, hv: HypervisorHost, settings: LazySettings, tmp_path: Path
) -> Iterator[LabVM]:
    """Alice's RUNNING lab VM, with its domain on the test driver."""
    settings.VM_DIR = tmp_path
    host = Host.objects.create(name="testdriver", uri=URI)
    vm = LabVM.objects.create(
        owner=world.alice,
        exercise=world.hello.exercise,
        assignment=world.hello,
        host=host,
        state=VMState.RUNNING,
        domain_uuid=uuid.uuid4(),
        expires_at=timezone.now() + timedelta(days=1),
    )
    folder = tmp_path / str(vm.pk)
    domain = spec(
        name=vm.domain_name,
        uuid=str(vm.domain_uuid),
        metadata=LabMetadata(vm_id=str(vm.pk), owner="alice", exercise="hello-module", image="x"),
        disk=folder / "disk.qcow2",
        shell_log=folder / "shell.log",
        kernel_log=folder / "kernel.log",
    )
    folder.mkdir()
    guest = hv.define_and_start(domain.to_xml())
    yield vm
    guest.destroy()
    guest.undefine()


def domain_running(hv: HypervisorHost, vm: LabVM) -> bool:
    guest = hv.find(vm.domain_name)
    return guest is not None and guest.state() == GuestState.RUNNING


def test_the_reconciler_leaves_a_running_vm_alone_when_its_metadata_cannot_be_read(
    running: LabVM, hv: HypervisorHost
) -> None:
    reaper.reconcile(running.host)  # the healthy pass: nothing to do
    assert LabVM.objects.get(pk=running.pk).state == VMState.RUNNING
    failing = mock.patch.object(
        libvirt.virDomain,
        "metadata",
        side_effect=libvirt_error(libvirt.VIR_ERR_INTERNAL_ERROR),
    )
    with failing:
        reaper.reconcile(running.host)
    vm = LabVM.objects.get(pk=running.pk)
    assert (vm.state, vm.error_code) == (VMState.RUNNING, "")
    assert domain_running(hv, running)


def test_the_reconciler_leaves_it_alone_when_its_definition_cannot_be_read(
    running: LabVM, hv: HypervisorHost
) -> None:
    with mock.patch.object(
        libvirt.virDomain, "XMLDesc", side_effect=libvirt_error(libvirt.VIR_ERR_INTERNAL_ERROR)
    ):
        reaper.reconcile(running.host)
    assert LabVM.objects.get(pk=running.pk).state == VMState.RUNNING
    assert domain_running(hv, running)


def test_a_vm_whose_domain_is_really_gone_still_fails(running: LabVM, hv: HypervisorHost) -> None:
    guest = hv.lookup(running.domain_name)
    guest.destroy()
    guest.undefine()
    reaper.reconcile(running.host)
    vm = LabVM.objects.get(pk=running.pk)
    assert (vm.state, vm.error_code) == (VMState.FAILED, "domain_missing")


def test_no_metadata_is_not_ours_and_another_error_is_raised(hv: HypervisorHost) -> None:
    assert hv.lookup("test").metadata() is None  # the driver's own domain
    guest = hv.lookup("test")
    error = libvirt_error(libvirt.VIR_ERR_INTERNAL_ERROR)
    with (
        mock.patch.object(libvirt.virDomain, "metadata", side_effect=error),
        pytest.raises(GuestOperationFailed, match="metadata"),
    ):
        guest.metadata()


def test_raw_libvirt_errors_do_not_escape_host_and_guest(hv: HypervisorHost) -> None:
    guest = hv.lookup("test")
    error = libvirt_error(libvirt.VIR_ERR_INTERNAL_ERROR)
    with (
        mock.patch.object(libvirt.virConnect, "listAllDomains", side_effect=error),
        pytest.raises(HypervisorError),
    ):
        list(hv.guests())
    with (
        mock.patch.object(libvirt.virDomain, "hasManagedSaveImage", side_effect=error),
        pytest.raises(GuestOperationFailed),
    ):
        guest.has_managed_save()


def test_a_resume_that_meets_an_error_stops_with_a_reason_and_keeps_the_disk(
    running: LabVM, hv: HypervisorHost
) -> None:
    hv.lookup(running.domain_name).managed_save()
    LabVM.objects.filter(pk=running.pk).update(state=VMState.RESUMING)
    with (
        mock.patch.object(
            Guest, "has_managed_save", autospec=True, side_effect=RuntimeError("unexpected")
        ),
        pytest.raises(RuntimeError),
    ):
        lifecycle.resume(str(running.pk))
    vm = LabVM.objects.get(pk=running.pk)
    assert vm.state == VMState.STOPPED
    assert vm.error_code == "internal_error"
    assert "Resuming failed" in vm.error_message
    assert "Your disk is kept" in vm.progress
    assert hv.find(running.domain_name) is not None, "the domain (and its disk) stay"


def test_a_definition_that_cannot_be_read_is_a_hypervisor_error(hv: HypervisorHost) -> None:
    guest = hv.lookup("test")
    assert "<domain" in guest.xml()
    with (
        mock.patch.object(
            libvirt.virDomain, "XMLDesc", side_effect=libvirt_error(libvirt.VIR_ERR_INTERNAL_ERROR)
        ),
        pytest.raises(GuestOperationFailed, match="reading the definition"),
    ):
        guest.xml()


def test_a_definition_of_a_domain_gone_meanwhile_is_guest_not_found(hv: HypervisorHost) -> None:
    guest = hv.lookup("test")
    with (
        mock.patch.object(
            libvirt.virDomain, "XMLDesc", side_effect=libvirt_error(libvirt.VIR_ERR_NO_DOMAIN)
        ),
        pytest.raises(GuestNotFound),
    ):
        guest.xml()
