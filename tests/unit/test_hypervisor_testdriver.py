"""Host and Guest against libvirt's test:///default driver: fast checks of
our wrapper logic. The real QEMU runs are in tests/integration."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.unit.test_domain_xml import spec
from vms.hypervisor.domain import DomainSpec
from vms.hypervisor.errors import GuestNotFound, HypervisorError
from vms.hypervisor.guest import GuestState
from vms.hypervisor.host import Host


@pytest.fixture
def host() -> Iterator[Host]:
    # Each open of test:///default is a fresh in-memory hypervisor.
    host = Host("test:///default")
    yield host
    host.close()


def unique_spec() -> DomainSpec:
    vm_id = uuid.uuid4().hex[:8]
    return spec(name=f"kernellab-{vm_id}", uuid=str(uuid.uuid4()))


def test_define_start_and_read_metadata(host: Host) -> None:
    s = unique_spec()
    guest = host.define_and_start(s.to_xml())
    assert guest.state() == GuestState.RUNNING
    assert guest.metadata() == s.metadata
    assert host.lookup(s.name).uuid == s.uuid


def test_managed_save_then_start_resumes(host: Host) -> None:
    guest = host.define_and_start(unique_spec().to_xml())
    guest.managed_save()
    assert guest.state() == GuestState.SHUTOFF
    assert guest.has_managed_save()
    guest.start()
    assert guest.state() == GuestState.RUNNING
    assert not guest.has_managed_save()


def test_destroy_and_undefine_are_idempotent(host: Host) -> None:
    s = unique_spec()
    guest = host.define_and_start(s.to_xml())
    guest.destroy()
    guest.destroy()
    assert guest.state() == GuestState.SHUTOFF
    guest.undefine()
    with pytest.raises(GuestNotFound):
        host.lookup(s.name)
    assert host.find(s.name) is None


def test_a_transient_guest_that_vanished_is_off(host: Host) -> None:
    """A transient guest ends when its kernel panics (on_crash destroy): the
    wrapper still answers, and cleaning it up again is harmless."""
    guest = host.create_transient(unique_spec().to_xml())
    assert guest.state() == GuestState.RUNNING
    host.conn.lookupByUUIDString(guest.uuid).destroy()  # gone behind our back
    assert guest.state() == GuestState.SHUTOFF
    guest.destroy()
    guest.undefine()


def test_foreign_domains_have_no_metadata(host: Host) -> None:
    # test:///default ships one domain, "test", that KernelLab did not create.
    foreign = host.lookup("test")
    assert foreign.metadata() is None


def test_bad_xml_is_a_clear_error(host: Host) -> None:
    with pytest.raises(HypervisorError, match="refused the domain definition"):
        host.define_and_start("<domain type='qemu'><name>x</name></domain")


def test_unreachable_host_is_a_clear_error() -> None:
    from vms.hypervisor.errors import HostUnavailable

    with pytest.raises(HostUnavailable, match="cannot connect"):
        _ = Host("qemu+unix:///system?socket=/nonexistent/sock").conn
