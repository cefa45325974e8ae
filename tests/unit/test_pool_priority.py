"""A student's Start comes before the warm pool's refills (vms.pool_priority):
while a Start on the host waits for a cold boot, a refill begins no new entry
and is queued again a few seconds later (once, however many yield), and the
guest of an entry under way is paused, kept fresh for the reaper, and running
again before it is saved.

The pausing runs against libvirt's test:///default driver here; the real
QEMU run is tests/integration/test_pool_yields.py."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from unittest import mock

import pytest
from django.conf import LazySettings

from tests.conftest import World
from tests.unit.test_domain_xml import spec
from tests.unit.test_pool_profiles import cache_image, saved_entry
from vms import guests, lifecycle, pool, services
from vms.guest_folder import GuestFolder
from vms.guests import BOOTING_THE_KERNEL, WAITING_FOR_THE_GUEST, YieldToStudents
from vms.hypervisor.guest import Guest, GuestState
from vms.hypervisor.host import Host as HypervisorHost
from vms.models import Host, LabVM, VMState, domain_name_for
from vms.pool_priority import refill_must_yield, students_boot_cold, students_wait_for_a_cold_boot

BUILD_DEADLINE = 600.0


@pytest.fixture
def profile(tmp_path: Path, settings: LazySettings) -> pool.Profile:
    settings.VM_DIR = tmp_path / "vms"
    return pool.Profile(cache_image(tmp_path / "images", "abc123"), "qemu", 1024, 1)


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not {what} after {timeout}s"
        time.sleep(0.01)


# -- the decision -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("waiting", "booting_cold", "ready", "yields"),
    [
        (0, 0, 0, False),  # a quiet host refills
        (1, 0, 0, True),  # a Start waits and the pool is empty: it will boot cold
        (2, 0, 2, False),  # the ready entries go round: those Starts are restores
        (3, 0, 2, True),  # one of them will boot cold
        (0, 1, 5, True),  # a Start is booting cold now
    ],
)
def test_a_refill_yields_exactly_when_a_start_waits_for_a_cold_boot(
    waiting: int, booting_cold: int, ready: int, yields: bool
) -> None:
    assert refill_must_yield(waiting=waiting, booting_cold=booting_cold, ready=ready) is yields


def start(world: World) -> LabVM:
    with mock.patch("celery.app.task.Task.apply_async"):
        return services.lab_start(user=world.alice, assignment=world.hello)


def set_state(vm: LabVM, state: VMState, progress: str) -> None:
    LabVM.objects.filter(pk=vm.pk).update(state=state, progress=progress)


@pytest.mark.django_db
def test_a_start_waiting_for_a_worker_counts_when_the_pool_is_empty(
    world: World, profile: pool.Profile
) -> None:
    vm = start(world)
    assert vm.state == VMState.REQUESTED
    assert students_wait_for_a_cold_boot(host=vm.host, profile=profile)


@pytest.mark.django_db
def test_a_start_the_pool_will_serve_does_not_count(world: World, profile: pool.Profile) -> None:
    vm = start(world)
    saved_entry(profile)
    assert not students_wait_for_a_cold_boot(host=vm.host, profile=profile)


@pytest.mark.django_db
@pytest.mark.parametrize("state", [VMState.PROVISIONING, VMState.RESETTING])
@pytest.mark.parametrize("step", [BOOTING_THE_KERNEL, WAITING_FOR_THE_GUEST])
def test_a_start_or_reset_booting_cold_counts(
    world: World, profile: pool.Profile, state: VMState, step: str
) -> None:
    vm = start(world)
    set_state(vm, state, step)
    saved_entry(profile)  # ready entries do not change that
    assert students_wait_for_a_cold_boot(host=vm.host, profile=profile)


@pytest.mark.django_db
@pytest.mark.parametrize("step", ["Restoring a prepared guest", "Copying the starter files"])
def test_a_start_restoring_from_the_pool_or_past_its_boot_does_not_count(
    world: World, profile: pool.Profile, step: str
) -> None:
    vm = start(world)
    set_state(vm, VMState.PROVISIONING, step)
    assert not students_wait_for_a_cold_boot(host=vm.host, profile=profile)


@pytest.mark.django_db
def test_starts_on_another_host_do_not_count(world: World, profile: pool.Profile) -> None:
    vm = start(world)
    other = Host.objects.create(name="other", uri="test:///default")
    assert students_wait_for_a_cold_boot(host=vm.host, profile=profile)
    assert not students_wait_for_a_cold_boot(host=other, profile=profile)


@pytest.mark.django_db
def test_only_a_cold_boot_under_way_pauses_a_refills_guest(
    world: World, profile: pool.Profile
) -> None:
    """A queued Start may wait for the refill's own worker (one worker taking
    every queue): pausing for it would hold both until the pause limit."""
    vm = start(world)
    assert students_wait_for_a_cold_boot(host=vm.host, profile=profile)  # no new entry
    assert not students_boot_cold(host=vm.host)  # but no pause
    set_state(vm, VMState.PROVISIONING, guests.BOOTING_THE_KERNEL)
    assert students_boot_cold(host=vm.host)


def test_the_guest_under_way_pauses_for_booting_students_only(
    profile: pool.Profile, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[object] = []

    def add(_hv: HypervisorHost, profile: pool.Profile, **kwargs: object) -> GuestFolder:
        asked.append(kwargs["students_booting"])
        return saved_entry(profile)

    def booting() -> bool:
        return False

    monkeypatch.setattr(guests, "pool_add_entry", add)
    guests.pool_fill(
        mock.Mock(),
        profile,
        size=1,
        boot_timeout=60,
        students_waiting=lambda: False,
        students_booting=booting,
    )
    assert asked == [booting]


# -- the fill: no new boot while students wait ---------------------------------------------


def add_saved_entry(_hv: HypervisorHost, profile: pool.Profile, **_kwargs: object) -> GuestFolder:
    return saved_entry(profile)


def test_a_refill_begins_no_boot_while_students_wait(profile: pool.Profile) -> None:
    hv = mock.Mock(spec=HypervisorHost)
    fill = guests.pool_fill(hv, profile, size=2, boot_timeout=60, students_waiting=lambda: True)
    assert fill == guests.PoolFill(added=0, yielded=True)
    assert hv.mock_calls == []
    assert pool.building_count(profile) == 0


def test_a_refill_stops_between_entries_when_a_student_starts_waiting(
    profile: pool.Profile, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(guests, "pool_add_entry", add_saved_entry)
    answers = iter([False, True])
    fill = guests.pool_fill(
        mock.Mock(), profile, size=3, boot_timeout=60, students_waiting=lambda: next(answers)
    )
    assert fill == guests.PoolFill(added=1, yielded=True)
    assert pool.ready_count(profile) == 1


def test_a_refill_fills_the_pool_when_no_student_waits(
    profile: pool.Profile, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(guests, "pool_add_entry", add_saved_entry)
    fill = guests.pool_fill(
        mock.Mock(), profile, size=2, boot_timeout=60, students_waiting=lambda: False
    )
    assert fill == guests.PoolFill(added=2)


# -- a boot under way is paused (test:///default) ----------------------------------------


@pytest.fixture
def hv() -> Iterator[HypervisorHost]:
    host = HypervisorHost("test:///default")  # a fresh in-memory hypervisor
    yield host
    host.close()


@pytest.fixture
def building(profile: pool.Profile) -> tuple[uuid.UUID, GuestFolder]:
    domain_uuid = uuid.uuid4()
    folder = pool.building_folder(profile, domain_uuid)
    folder.create()
    return domain_uuid, folder


def booting_guest(hv: HypervisorHost, domain_uuid: uuid.UUID) -> Guest:
    return hv.create_transient(
        spec(name=domain_name_for(domain_uuid), uuid=str(domain_uuid)).to_xml()
    )


def test_a_building_guest_is_paused_while_a_student_waits_and_runs_again_after(
    hv: HypervisorHost, building: tuple[uuid.UUID, GuestFolder]
) -> None:
    domain_uuid, folder = building
    guest = booting_guest(hv, domain_uuid)
    waiting = [False]
    with YieldToStudents(hv, domain_uuid, folder, lambda: waiting[0], poll=0.01) as yielding:
        time.sleep(0.05)
        assert guest.state() == GuestState.RUNNING, "no student waits: it boots on"
        waiting[0] = True
        wait_until(lambda: guest.state() == GuestState.PAUSED, "paused")
        waiting[0] = False
        wait_until(lambda: guest.state() == GuestState.RUNNING, "running again")
    assert yielding.pauses == 1
    assert yielding.paused_seconds > 0


def test_a_paused_guest_runs_again_before_it_is_saved(
    hv: HypervisorHost, building: tuple[uuid.UUID, GuestFolder]
) -> None:
    domain_uuid, folder = building
    guest = booting_guest(hv, domain_uuid)
    with YieldToStudents(hv, domain_uuid, folder, lambda: True, poll=0.01):
        wait_until(lambda: guest.state() == GuestState.PAUSED, "paused")
    assert guest.state() == GuestState.RUNNING, "a guest saved paused would be restored paused"


def test_a_guest_is_paused_for_a_bounded_time_in_all(
    hv: HypervisorHost, building: tuple[uuid.UUID, GuestFolder]
) -> None:
    domain_uuid, folder = building
    guest = booting_guest(hv, domain_uuid)
    with YieldToStudents(
        hv, domain_uuid, folder, lambda: True, poll=0.01, max_pause=0.1
    ) as yielding:
        wait_until(lambda: guest.state() == GuestState.PAUSED, "paused")
        wait_until(lambda: guest.state() == GuestState.RUNNING, "running after its pause budget")
        time.sleep(0.1)
        assert guest.state() == GuestState.RUNNING, "not paused again once the budget is spent"
    assert yielding.pauses == 1


def test_a_long_paused_build_is_not_taken_for_an_abandoned_one(
    hv: HypervisorHost, building: tuple[uuid.UUID, GuestFolder], profile: pool.Profile
) -> None:
    domain_uuid, folder = building
    guest = booting_guest(hv, domain_uuid)
    an_hour_ago = time.time() - 3600
    os.utime(folder.directory, (an_hour_ago, an_hour_ago))
    assert not pool.entry_is_being_built(str(domain_uuid), max_age_seconds=BUILD_DEADLINE)
    with YieldToStudents(hv, domain_uuid, folder, lambda: True, poll=0.01):
        wait_until(lambda: guest.state() == GuestState.PAUSED, "paused")
        assert pool.entry_is_being_built(str(domain_uuid), max_age_seconds=BUILD_DEADLINE)
        pool.remove_stale(BUILD_DEADLINE)
        assert folder.directory.is_dir(), "the reaper left the paused build alone"
        assert pool.building_count(profile) == 1


def test_a_guest_not_started_yet_is_left_to_its_boot(
    hv: HypervisorHost, building: tuple[uuid.UUID, GuestFolder]
) -> None:
    domain_uuid, folder = building
    asked: list[bool] = []

    def waiting() -> bool:
        asked.append(True)
        return True

    with YieldToStudents(hv, domain_uuid, folder, waiting, poll=0.01) as yielding:
        wait_until(lambda: len(asked) > 3, "asked")
    assert yielding.pauses == 0


# -- the retry: queued again, once -------------------------------------------------------------


@pytest.fixture
def queued() -> Iterator[mock.Mock]:
    with mock.patch("vms.tasks.pool_fill.apply_async") as apply_async:
        yield apply_async


@pytest.mark.django_db
def test_a_refill_after_a_claim_is_queued_at_once(world: World, queued: mock.Mock) -> None:
    host = Host.objects.get(name="local")
    lifecycle.refill_pool_later(host, 1024, 1)
    lifecycle.refill_pool_later(host, 1024, 1)
    assert queued.call_count == 2
    assert queued.call_args.args == (("local", 1024, 1),)
    assert queued.call_args.kwargs["queue"] == "host.local.housekeeping"
    assert queued.call_args.kwargs["countdown"] == 0


@pytest.mark.django_db
def test_refills_that_yield_queue_one_retry_however_many_yield(
    world: World, queued: mock.Mock
) -> None:
    host = Host.objects.get(name="local")
    for _ in range(5):
        lifecycle.refill_pool_later(host, 1024, 1, retry=True)
    assert queued.call_count == 1
    assert queued.call_args.kwargs["countdown"] == lifecycle.POOL_RETRY_SECONDS
    lifecycle.refill_pool_later(host, 2048, 2, retry=True)
    assert queued.call_count == 2, "another profile has a retry of its own"


@pytest.mark.django_db
def test_a_retry_that_yields_again_queues_the_next_one(
    world: World, queued: mock.Mock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The mark expires a second before the retry runs.
    monkeypatch.setattr(lifecycle, "POOL_RETRY_SECONDS", 1.1)
    host = Host.objects.get(name="local")
    lifecycle.refill_pool_later(host, 1024, 1, retry=True)
    time.sleep(0.2)
    lifecycle.refill_pool_later(host, 1024, 1, retry=True)
    assert queued.call_count == 2


@pytest.mark.django_db
def test_a_refill_with_a_start_waiting_boots_nothing_and_comes_back(
    world: World,
    profile: pool.Profile,
    queued: mock.Mock,
    monkeypatch: pytest.MonkeyPatch,
    settings: LazySettings,
) -> None:
    settings.VM_POOL_SIZE, settings.VIRT_TYPE = 2, "qemu"
    monkeypatch.setattr(lifecycle, "ensure_image", lambda **_kwargs: profile.image)
    hv = mock.Mock(spec=HypervisorHost)
    monkeypatch.setattr(lifecycle, "hypervisor", lambda _uri: hv)
    start(world)
    assert lifecycle.pool_fill("local", 1024, 1) == 0
    assert hv.mock_calls == [], "no guest booted"
    assert queued.call_count == 1
    assert queued.call_args.kwargs["countdown"] == lifecycle.POOL_RETRY_SECONDS


@pytest.mark.django_db
def test_the_log_says_when_the_pool_is_warm_and_not_before(
    world: World,
    profile: pool.Profile,
    queued: mock.Mock,
    monkeypatch: pytest.MonkeyPatch,
    settings: LazySettings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """What `./kernellab run` shows the person who just installed the site."""
    settings.VM_POOL_SIZE, settings.VIRT_TYPE = 2, "qemu"
    monkeypatch.setattr(lifecycle, "ensure_image", lambda **_kwargs: profile.image)
    monkeypatch.setattr(lifecycle, "hypervisor", lambda _uri: mock.Mock(spec=HypervisorHost))
    monkeypatch.setattr(guests, "pool_add_entry", add_saved_entry)
    vm = start(world)
    assert lifecycle.pool_fill("local", 1024, 1) == 0
    assert "warm pool of local is ready" not in caplog.text
    set_state(vm, VMState.RUNNING, "Ready")
    assert lifecycle.pool_fill("local", 1024, 1) == 2
    assert "the warm pool of local is ready (2 guests)" in caplog.text
