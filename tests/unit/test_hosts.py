"""Several hypervisor hosts: placement spreads labs over the hosts taking
them, staff drain a host from the status page, and a host whose libvirtd stops
answering is marked unreachable, then lost (its labs FAILED with the reason).
The real machine runs in tests/integration/test_two_hosts.py; here a host that
does not answer is a libvirt URI whose socket does not exist."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from unittest import mock

import pytest
from django.conf import LazySettings
from django.test import Client
from django.utils import timezone

from labplatform.accounts.models import User
from labplatform.courses.models import Assignment
from tests.conftest import World, client_for
from vms import services, tasks
from vms.errors import NoCapacity
from vms.hosts import HostCondition, host_check, hosts_check_all
from vms.models import Host, LabVM, VMState


@pytest.fixture
def no_enqueue() -> Iterator[mock.MagicMock]:
    with mock.patch("celery.app.task.Task.apply_async") as apply_async:
        yield apply_async


@pytest.fixture
def local(world: World) -> Host:
    return Host.objects.get(name="local")


@pytest.fixture
def h2(world: World) -> Host:
    return Host.objects.create(name="h2", uri="test:///default")


@pytest.fixture
def silent(world: World, tmp_path: Path) -> Host:
    """A host whose libvirtd is gone: its socket does not exist."""
    socket = tmp_path / "gone" / "libvirt-sock"
    return Host.objects.create(name="silent", uri=f"qemu+unix:///system?socket={socket}")


@pytest.fixture
def staff(world: World) -> Client:
    world.tess.is_staff = True
    world.tess.save(update_fields=["is_staff"])
    return client_for(world.tess)


def _start(user: User, assignment: Assignment) -> LabVM:
    return services.lab_start(user=user, assignment=assignment, preview=True)


def _lab_on(host: Host, world: World, state: VMState = VMState.RUNNING) -> LabVM:
    return LabVM.objects.create(
        owner=world.alice,
        exercise=world.hello.exercise,
        assignment=world.hello,
        host=host,
        state=state,
        expires_at=timezone.now() + timedelta(days=1),
    )


# --- placement ----------------------------------------------------------------------


def test_starts_spread_over_the_hosts(
    world: World, local: Host, h2: Host, no_enqueue: None
) -> None:
    first = _start(world.alice, world.hello)
    second = _start(world.bob, world.strace)
    assert {first.host.name, second.host.name} == {"local", "h2"}


def test_the_least_loaded_host_for_its_size_gets_the_next_lab(
    world: World, local: Host, h2: Host, no_enqueue: None
) -> None:
    Host.objects.filter(pk=h2.pk).update(max_vms=2)
    _lab_on(h2, world)  # h2: 1 of 2; local: 0 of 8
    assert _start(world.bob, world.strace).host == local


# --- drain --------------------------------------------------------------------------


def test_a_drained_host_gets_no_new_lab_and_its_running_labs_go_on(
    world: World, local: Host, h2: Host, staff: Client, no_enqueue: None
) -> None:
    running = _lab_on(local, world)
    response = staff.post("/staff/hosts/local/drain", follow=True)
    assert response.status_code == 200
    assert "Host local is drained" in response.content.decode()
    local.refresh_from_db()
    assert not local.enabled
    assert _start(world.bob, world.strace).host == h2
    running.refresh_from_db()
    assert running.state == VMState.RUNNING


def test_a_drained_host_keeps_a_stopped_lab_from_booting_there(
    world: World, local: Host, h2: Host, staff: Client, no_enqueue: None
) -> None:
    stopped = _lab_on(local, world, VMState.STOPPED)
    staff.post("/staff/hosts/local/drain")
    with pytest.raises(NoCapacity):
        services.lab_resume(vm=stopped)


def test_with_every_host_drained_a_start_is_refused(
    world: World, local: Host, staff: Client, no_enqueue: None
) -> None:
    staff.post("/staff/hosts/local/drain")
    with pytest.raises(NoCapacity):
        _start(world.alice, world.hello)


def test_undrain_takes_labs_again(
    world: World, local: Host, staff: Client, no_enqueue: None
) -> None:
    staff.post("/staff/hosts/local/drain")
    response = staff.post("/staff/hosts/local/undrain", follow=True)
    assert "Host local takes new labs again" in response.content.decode()
    assert _start(world.alice, world.hello).host == local


def test_the_status_page_shows_each_hosts_placement(
    world: World, local: Host, h2: Host, staff: Client
) -> None:
    _lab_on(h2, world)
    staff.post("/staff/hosts/h2/drain")
    html = staff.get("/staff/status").content.decode()
    assert (
        '<tr data-host="h2"><td>h2</td>\n        <td data-testid="host-condition">drained' in html
    )
    assert "<td>1 of 8</td>" in html
    assert 'action="/staff/hosts/h2/undrain"' in html
    assert 'action="/staff/hosts/local/drain"' in html


@pytest.mark.parametrize("persona", ["anonymous", "alice", "tess", "charlie"])
def test_only_staff_drain_a_host(world: World, local: Host, persona: str) -> None:
    client = Client() if persona == "anonymous" else client_for(getattr(world, persona))
    assert client.post("/staff/hosts/local/drain").status_code == 404
    local.refresh_from_db()
    assert local.enabled


def test_drain_is_a_post(world: World, local: Host, staff: Client) -> None:
    assert staff.get("/staff/hosts/local/drain").status_code == 405
    local.refresh_from_db()
    assert local.enabled


def test_draining_an_unknown_host_is_404(staff: Client) -> None:
    assert staff.post("/staff/hosts/nowhere/drain").status_code == 404


# --- a host that stops answering ----------------------------------------------------


def test_a_host_that_answers_is_not_touched(world: World, h2: Host) -> None:
    lab = _lab_on(h2, world)
    assert host_check(host=h2) == HostCondition.ANSWERS
    lab.refresh_from_db()
    assert lab.state == VMState.RUNNING


def test_a_silent_host_is_unreachable_first_and_takes_no_new_lab(
    world: World, local: Host, silent: Host, settings: LazySettings, no_enqueue: None
) -> None:
    settings.HOST_LOST_AFTER_SECONDS = 180
    lab = _lab_on(silent, world)
    assert host_check(host=silent) == HostCondition.UNREACHABLE
    silent.refresh_from_db()
    assert silent.unreachable_since is not None
    lab.refresh_from_db()
    assert lab.state == VMState.RUNNING  # a libvirtd restart is no reason to fail labs
    # The silent host is the less loaded (1 of 8 against 1 of 2), yet skipped.
    Host.objects.filter(pk=local.pk).update(max_vms=2)
    _lab_on(local, world)
    assert _start(world.bob, world.strace).host == local


def test_a_host_silent_past_the_limit_is_lost_and_its_labs_fail_with_the_reason(
    world: World, silent: Host, settings: LazySettings
) -> None:
    settings.HOST_LOST_AFTER_SECONDS = 180
    running, stopped = _lab_on(silent, world), _lab_on(silent, world, VMState.STOPPED)
    destroyed = _lab_on(silent, world, VMState.DESTROYED)
    first = timezone.now()
    assert host_check(host=silent, now=first) == HostCondition.UNREACHABLE
    later = first + timedelta(seconds=181)
    assert host_check(host=silent, now=later) == HostCondition.LOST
    for lab in (running, stopped):
        lab.refresh_from_db()
        assert lab.state == VMState.FAILED
        assert lab.error_code == "host_unreachable"
        assert "host silent" in lab.error_message
        assert "unreachable" in lab.error_message
    destroyed.refresh_from_db()
    assert destroyed.state == VMState.DESTROYED


def test_a_lab_of_a_lost_host_is_not_reset_there(
    world: World, silent: Host, settings: LazySettings, no_enqueue: None
) -> None:
    settings.HOST_LOST_AFTER_SECONDS = 0
    lab = _lab_on(silent, world)
    assert host_check(host=silent) == HostCondition.LOST
    lab.refresh_from_db()
    with pytest.raises(NoCapacity):
        services.lab_reset(vm=lab)


def test_a_host_that_answers_again_takes_labs_again(
    world: World, silent: Host, settings: LazySettings, no_enqueue: None
) -> None:
    settings.HOST_LOST_AFTER_SECONDS = 0
    host_check(host=silent)
    Host.objects.filter(pk=silent.pk).update(uri="test:///default")
    silent.refresh_from_db()
    assert host_check(host=silent) == HostCondition.ANSWERS
    silent.refresh_from_db()
    assert silent.unreachable_since is None
    Host.objects.exclude(pk=silent.pk).update(enabled=False)
    assert _start(world.alice, world.hello).host == silent


def test_beats_fan_out_checks_every_host_and_reaps_only_those_answering(
    world: World, local: Host, silent: Host, settings: LazySettings, no_enqueue: mock.MagicMock
) -> None:
    settings.HOST_LOST_AFTER_SECONDS = 0
    Host.objects.filter(pk=local.pk).update(uri="test:///default", enabled=False)
    lab = _lab_on(silent, world)
    assert hosts_check_all() == {"local": HostCondition.ANSWERS, "silent": HostCondition.LOST}
    tasks.reap_all()
    queues = [call.kwargs["queue"] for call in no_enqueue.call_args_list]
    assert queues == ["host.local.housekeeping"]  # drained, still reaped; the lost one not
    lab.refresh_from_db()
    assert lab.state == VMState.FAILED


def test_a_hung_libvirtd_is_unreachable_within_the_checks_time_limit(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A libvirtd that accepts and never answers (a hung daemon, a half-dead
    machine) must not hold beat's fan-out, which shares the site-wide queue
    with webhook deliveries."""
    monkeypatch.setattr("vms.hosts.HOST_CHECK_TIMEOUT_SECONDS", 1.0)
    path = tmp_path / "hung-sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as hung:
        hung.bind(str(path))
        hung.listen(8)  # never accepted, never answered
        host = Host.objects.create(name="hung", uri=f"qemu+unix:///system?socket={path}")
        started = time.monotonic()
        assert host_check(host=host) == HostCondition.UNREACHABLE
        assert time.monotonic() - started < 5
