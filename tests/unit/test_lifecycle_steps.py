"""Every outcome of every worker-side lifecycle step (vms.lifecycle: provision,
stop, resume, reset, destroy), one scenario per test: what the row says after
it (state, error code and message, progress), which events the pages hear,
what is left on the host, and whether the error reaches Celery's log.

Against libvirt's test:///default driver, with the failing call injected. A
Start's and a Reset's boot (``_boot``: image, guest, agent, starter files) is
replaced by a stand-in: tests/integration/test_vm_lifecycle.py boots real ones.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from django.conf import LazySettings
from django.utils import timezone

from tests.conftest import World
from tests.unit.test_domain_xml import spec
from vms import lifecycle
from vms.hypervisor.domain import LabMetadata
from vms.hypervisor.errors import GuestOperationFailed
from vms.hypervisor.guest import Guest
from vms.hypervisor.host import Host as HypervisorHost
from vms.models import Host, LabVM, VMState

URI = "test:///default"
KEPT = " Your disk is kept: try Resume again, or Reset for a fresh one."

Work = Callable[..., Any]


@dataclass(frozen=True)
class Step:
    """A step as its task runs it: the state its row is in when the task
    starts, and the call inside it that does the step's work (replaced here
    to make it fail, or to change the row under it)."""

    run: Callable[[str], None]
    claims: VMState
    work: Callable[[Work], AbstractContextManager[Any]]


def _boot_replaced(side_effect: Work) -> AbstractContextManager[Any]:
    return mock.patch("vms.lifecycle._boot", autospec=True, side_effect=side_effect)


def _guest_call_replaced(name: str) -> Callable[[Work], AbstractContextManager[Any]]:
    def replaced(side_effect: Work) -> AbstractContextManager[Any]:
        return mock.patch.object(Guest, name, autospec=True, side_effect=side_effect)

    return replaced


STEPS = {
    "provision": Step(lifecycle.provision, VMState.REQUESTED, _boot_replaced),
    "stop": Step(lifecycle.stop, VMState.STOPPING, _guest_call_replaced("managed_save")),
    "resume": Step(lifecycle.resume, VMState.RESUMING, _guest_call_replaced("start")),
    "reset": Step(lifecycle.reset, VMState.RESETTING, _boot_replaced),
    "destroy": Step(lifecycle.destroy, VMState.DESTROYING, _guest_call_replaced("destroy")),
}


@pytest.fixture
def hv() -> HypervisorHost:
    return lifecycle.hypervisor(URI)


@pytest.fixture
def lab(
    world: World, hv: HypervisorHost, settings: LazySettings, tmp_path: Path
) -> Iterator[LabVM]:
    """Alice's lab VM: its domain running on the test driver, its folder on disk."""
    settings.VM_DIR = tmp_path
    vm = LabVM.objects.create(
        owner=world.alice,
        exercise=world.hello.exercise,
        assignment=world.hello,
        host=Host.objects.create(name="testdriver", uri=URI),
        state=VMState.RUNNING,
        domain_uuid=uuid.uuid4(),
        expires_at=timezone.now() + timedelta(days=1),
    )
    files = lifecycle.vm_files(vm)
    files.create()
    files.disk.write_bytes(b"the student's disk")
    guest = hv.define_and_start(
        spec(
            name=vm.domain_name,
            uuid=str(vm.domain_uuid),
            metadata=LabMetadata(vm_id=str(vm.pk), owner="alice", exercise="x", image="x"),
            disk=files.disk,
            shell_log=files.shell_log,
            kernel_log=files.kernel_log,
        ).to_xml()
    )
    yield vm
    left = hv.find(guest.name)
    if left is not None:
        left.destroy()
        left.undefine()


@pytest.fixture
def events() -> Iterator[list[tuple[str, str]]]:
    """(state, progress) of each event the lifecycle publishes."""
    heard: list[tuple[str, str]] = []

    def publish(vm: LabVM, **_extra: object) -> None:
        heard.append((vm.state, vm.progress))

    # Progress is published by the lifecycle, transitions by vms.events.
    with (
        mock.patch("vms.lifecycle.publish_vm_event", side_effect=publish),
        mock.patch("vms.events.publish_vm_event", side_effect=publish),
    ):
        yield heard


@pytest.fixture
def no_agent() -> Iterator[mock.MagicMock]:
    """The test driver's guests have no guest agent: a resumed one answers at once."""
    with mock.patch("vms.lifecycle.GuestAgent", autospec=True) as agent:
        yield agent


def row(vm: LabVM) -> LabVM:
    return LabVM.objects.get(pk=vm.pk)


def put(vm: LabVM, state: VMState) -> None:
    LabVM.objects.filter(pk=vm.pk).update(state=state)


def booted(vm: LabVM) -> list[tuple[str, float]]:
    """What ``_boot`` leaves on the VM when it succeeds."""
    vm.boot_seconds = 1.5
    vm.image_hash = "abc123"
    return []


def saved(hv: HypervisorHost, vm: LabVM) -> None:
    """Stopped by an earlier Stop: memory saved, domain kept."""
    hv.lookup(vm.domain_name).managed_save()


def raising(error: BaseException) -> Work:
    def work(*_args: object, **_kwargs: object) -> None:
        raise error

    return work


def moving_to(vm: LabVM, state: VMState, then: Work = lambda *_a, **_k: None) -> Work:
    """Work during which another worker or request moves the row on."""

    def work(*args: object, **kwargs: object) -> Any:
        put(vm, state)
        return then(*args, **kwargs)

    return work


def ready_to(step: str, hv: HypervisorHost, vm: LabVM) -> None:
    """The row (and the guest) as the step's task finds them."""
    put(vm, STEPS[step].claims)
    if step == "resume":
        saved(hv, vm)


# -- success -----------------------------------------------------------------------------


def test_a_start_runs_with_its_boot_recorded(lab: LabVM, events: list[tuple[str, str]]) -> None:
    put(lab, VMState.REQUESTED)
    with _boot_replaced(booted):
        lifecycle.provision(str(lab.pk))
    vm = row(lab)
    assert (vm.state, vm.progress, vm.error_code) == (VMState.RUNNING, "Ready", "")
    assert (vm.boot_seconds, vm.image_hash) == (1.5, "abc123")
    assert vm.worker == lifecycle.this_worker()
    assert events == [(VMState.RUNNING, "Ready")]


def test_a_stop_saves_the_guest(
    lab: LabVM, hv: HypervisorHost, events: list[tuple[str, str]]
) -> None:
    put(lab, VMState.STOPPING)
    lifecycle.stop(str(lab.pk))
    assert (row(lab).state, row(lab).progress) == (VMState.STOPPED, "Stopped")
    guest = hv.lookup(lab.domain_name)
    assert not guest.is_running()
    assert guest.has_managed_save()
    assert events == [(VMState.STOPPED, "Stopped")]


def test_a_resume_restores_the_saved_guest_and_sets_its_clock(
    lab: LabVM, hv: HypervisorHost, events: list[tuple[str, str]], no_agent: mock.MagicMock
) -> None:
    ready_to("resume", hv, lab)
    lifecycle.resume(str(lab.pk))
    assert (row(lab).state, row(lab).progress) == (VMState.RUNNING, "Ready")
    assert hv.lookup(lab.domain_name).is_running()
    no_agent.return_value.wait_ready.assert_called_once()
    no_agent.return_value.set_time.assert_called_once_with()
    assert events == [(VMState.RUNNING, "Ready")]


def test_a_resume_of_a_guest_already_running_just_says_ready(
    lab: LabVM, events: list[tuple[str, str]], no_agent: mock.MagicMock
) -> None:
    put(lab, VMState.RESUMING)
    lifecycle.resume(str(lab.pk))
    assert row(lab).state == VMState.RUNNING
    no_agent.assert_not_called()
    assert events == [(VMState.RUNNING, "Ready")]


def test_a_reset_boots_fresh_after_removing_the_old_guest_and_disk(
    lab: LabVM, hv: HypervisorHost, events: list[tuple[str, str]]
) -> None:
    put(lab, VMState.RESETTING)
    seen: dict[str, bool] = {}

    def boot(vm: LabVM) -> list[tuple[str, float]]:
        seen["old guest gone"] = hv.find(vm.domain_name) is None
        seen["old disk gone"] = not lifecycle.vm_files(vm).directory.exists()
        return booted(vm)

    with _boot_replaced(boot):
        lifecycle.reset(str(lab.pk))
    vm = row(lab)
    assert (vm.state, vm.progress) == (VMState.RUNNING, "Ready")
    assert (vm.boot_seconds, vm.image_hash) == (1.5, "abc123")
    assert seen == {"old guest gone": True, "old disk gone": True}
    assert events == [(VMState.RUNNING, "Ready")]


def test_a_destroy_leaves_nothing(
    lab: LabVM, hv: HypervisorHost, events: list[tuple[str, str]]
) -> None:
    put(lab, VMState.DESTROYING)
    lifecycle.destroy(str(lab.pk))
    assert (row(lab).state, row(lab).progress) == (VMState.DESTROYED, "Destroyed")
    assert hv.find(lab.domain_name) is None
    assert not lifecycle.vm_files(lab).directory.exists()
    assert events == [(VMState.DESTROYED, "Destroyed")]


# -- a hypervisor error: FAILED with its code and a sentence (Resume: STOPPED, disk kept) --

HYPERVISOR_SAID = "the hypervisor said no"


@pytest.mark.parametrize(
    ("step", "message"),
    [
        ("provision", HYPERVISOR_SAID),
        ("stop", f"Stopping failed: {HYPERVISOR_SAID}"),
        ("reset", f"Reset failed: {HYPERVISOR_SAID}"),
    ],
)
def test_a_hypervisor_error_fails_the_vm_with_its_code_and_leaves_nothing(
    step: str, message: str, lab: LabVM, hv: HypervisorHost, events: list[tuple[str, str]]
) -> None:
    ready_to(step, hv, lab)
    with STEPS[step].work(raising(GuestOperationFailed(HYPERVISOR_SAID))):
        STEPS[step].run(str(lab.pk))  # not raised: the row says it all
    vm = row(lab)
    assert (vm.state, vm.error_code, vm.error_message) == (
        VMState.FAILED,
        "guest_operation_failed",
        message,
    )
    assert vm.progress == "Failed"
    assert hv.find(lab.domain_name) is None
    assert not lifecycle.vm_files(lab).directory.exists()
    assert events == [(VMState.FAILED, "Failed")]


def test_a_stop_of_a_vanished_domain_fails_with_guest_not_found(
    lab: LabVM, hv: HypervisorHost, events: list[tuple[str, str]]
) -> None:
    put(lab, VMState.STOPPING)
    guest = hv.lookup(lab.domain_name)
    guest.destroy()
    guest.undefine()
    lifecycle.stop(str(lab.pk))
    vm = row(lab)
    assert (vm.state, vm.error_code) == (VMState.FAILED, "guest_not_found")
    assert vm.error_message.startswith("Stopping failed: no domain named ")
    assert events == [(VMState.FAILED, "Failed")]


def test_a_hypervisor_error_in_a_resume_stops_it_with_the_reason_and_keeps_the_disk(
    lab: LabVM, hv: HypervisorHost, events: list[tuple[str, str]]
) -> None:
    ready_to("resume", hv, lab)
    with STEPS["resume"].work(raising(GuestOperationFailed(HYPERVISOR_SAID))):
        lifecycle.resume(str(lab.pk))
    vm = row(lab)
    message = f"Resuming failed: {HYPERVISOR_SAID}"
    assert (vm.state, vm.error_code, vm.error_message) == (
        VMState.STOPPED,
        "guest_operation_failed",
        message,
    )
    assert vm.progress == message + KEPT
    assert hv.lookup(lab.domain_name).has_managed_save(), "the saved guest stays"
    assert lifecycle.vm_files(lab).disk.exists()
    assert events == [(VMState.STOPPED, message + KEPT)]


def test_a_hypervisor_error_in_a_destroy_leaves_it_for_the_reapers_next_pass(
    lab: LabVM, hv: HypervisorHost, events: list[tuple[str, str]], caplog: pytest.LogCaptureFixture
) -> None:
    put(lab, VMState.DESTROYING)
    with STEPS["destroy"].work(raising(GuestOperationFailed(HYPERVISOR_SAID))):
        lifecycle.destroy(str(lab.pk))
    vm = row(lab)
    assert (vm.state, vm.error_code) == (VMState.DESTROYING, "")
    assert hv.find(lab.domain_name) is not None
    assert lifecycle.vm_files(lab).disk.exists(), "the files stay until the domain goes"
    assert events == []
    assert f"destroying VM {lab.pk} failed: {HYPERVISOR_SAID}" in caplog.text


# -- an unexpected error: internal_error and re-raised, or left for the reaper -----------


def test_an_unexpected_error_in_a_start_fails_it_as_internal_and_is_raised(
    lab: LabVM, hv: HypervisorHost, events: list[tuple[str, str]]
) -> None:
    put(lab, VMState.REQUESTED)
    with _boot_replaced(raising(RuntimeError("boom"))), pytest.raises(RuntimeError, match="boom"):
        lifecycle.provision(str(lab.pk))
    vm = row(lab)
    assert (vm.state, vm.error_code, vm.error_message) == (
        VMState.FAILED,
        "internal_error",
        "Starting the VM failed unexpectedly: boom",
    )
    assert hv.find(lab.domain_name) is None
    assert not lifecycle.vm_files(lab).directory.exists()
    assert events == [(VMState.FAILED, "Failed")]


def test_an_unexpected_error_in_a_resume_stops_it_as_internal_and_is_raised(
    lab: LabVM, hv: HypervisorHost, events: list[tuple[str, str]]
) -> None:
    ready_to("resume", hv, lab)
    with STEPS["resume"].work(raising(RuntimeError("boom"))), pytest.raises(RuntimeError):
        lifecycle.resume(str(lab.pk))
    vm = row(lab)
    message = "Resuming failed unexpectedly: boom"
    assert (vm.state, vm.error_code, vm.error_message) == (
        VMState.STOPPED,
        "internal_error",
        message,
    )
    assert vm.progress == message + KEPT
    assert hv.lookup(lab.domain_name).has_managed_save()
    assert events == [(VMState.STOPPED, message + KEPT)]


@pytest.mark.parametrize("step", ["stop", "reset", "destroy"])
def test_an_unexpected_error_in_another_step_is_raised_and_leaves_the_row_to_the_reaper(
    step: str, lab: LabVM, hv: HypervisorHost, events: list[tuple[str, str]]
) -> None:
    """No internal_error for these three: the row stays in its step's state,
    and the reaper finishes the step after its deadline from what libvirt shows."""
    ready_to(step, hv, lab)
    with STEPS[step].work(raising(RuntimeError("boom"))), pytest.raises(RuntimeError):
        STEPS[step].run(str(lab.pk))
    vm = row(lab)
    assert (vm.state, vm.error_code) == (STEPS[step].claims, "")
    assert events == []


# -- a lost race: the row moved on under the step, which then publishes nothing ----------


@pytest.mark.parametrize("step", ["provision", "stop", "reset"])
def test_a_step_whose_row_was_destroyed_meanwhile_leaves_it_to_the_destroy(
    step: str, lab: LabVM, hv: HypervisorHost, events: list[tuple[str, str]]
) -> None:
    ready_to(step, hv, lab)
    then = booted if STEPS[step].work is _boot_replaced else (lambda *_a, **_k: None)
    with STEPS[step].work(moving_to(lab, VMState.DESTROYING, then)):
        STEPS[step].run(str(lab.pk))
    assert row(lab).state == VMState.DESTROYING
    assert events == []


def test_a_resume_whose_row_was_destroyed_meanwhile_leaves_it_to_the_destroy(
    lab: LabVM, hv: HypervisorHost, events: list[tuple[str, str]], no_agent: mock.MagicMock
) -> None:
    ready_to("resume", hv, lab)
    no_agent.return_value.wait_ready.side_effect = moving_to(lab, VMState.DESTROYING)
    lifecycle.resume(str(lab.pk))
    assert row(lab).state == VMState.DESTROYING
    assert events == []


def test_a_failed_resume_whose_row_was_destroyed_meanwhile_publishes_nothing(
    lab: LabVM, hv: HypervisorHost, events: list[tuple[str, str]]
) -> None:
    ready_to("resume", hv, lab)
    failing = moving_to(lab, VMState.DESTROYING, raising(GuestOperationFailed(HYPERVISOR_SAID)))
    with STEPS["resume"].work(failing):
        lifecycle.resume(str(lab.pk))
    assert (row(lab).state, row(lab).error_code) == (VMState.DESTROYING, "")
    assert events == []


def test_a_destroy_another_worker_finished_meanwhile_publishes_nothing_more(
    lab: LabVM, hv: HypervisorHost, events: list[tuple[str, str]]
) -> None:
    put(lab, VMState.DESTROYING)
    real_destroy = Guest.destroy
    with STEPS["destroy"].work(moving_to(lab, VMState.DESTROYED, real_destroy)):
        lifecycle.destroy(str(lab.pk))
    assert row(lab).state == VMState.DESTROYED
    assert hv.find(lab.domain_name) is None
    assert events == []


def test_a_failure_whose_row_moved_on_meanwhile_publishes_nothing(
    lab: LabVM, events: list[tuple[str, str]]
) -> None:
    """fail() reads the row's state, then moves it to FAILED from there: a row
    another worker moved in between is its, and so is the event."""
    put(lab, VMState.STOPPING)
    real_refresh = LabVM.refresh_from_db

    def refreshed_then_moved(vm: LabVM, *args: Any, **kwargs: Any) -> None:
        real_refresh(vm, *args, **kwargs)
        put(vm, VMState.DESTROYING)

    with (
        STEPS["stop"].work(raising(GuestOperationFailed(HYPERVISOR_SAID))),
        mock.patch.object(
            LabVM, "refresh_from_db", autospec=True, side_effect=refreshed_then_moved
        ),
    ):
        lifecycle.stop(str(lab.pk))
    assert (row(lab).state, row(lab).error_code) == (VMState.DESTROYING, "")
    assert events == []


# -- a redelivered or stale task: the row is not in the step's state ---------------------


@pytest.mark.parametrize("step", list(STEPS))
def test_a_task_for_a_row_in_another_state_does_nothing(
    step: str, lab: LabVM, hv: HypervisorHost, events: list[tuple[str, str]]
) -> None:
    LabVM.objects.filter(pk=lab.pk).update(worker="")
    with STEPS[step].work(raising(AssertionError("no work for a row not in its state"))):
        STEPS[step].run(str(lab.pk))
    vm = row(lab)
    assert (vm.state, vm.worker) == (VMState.RUNNING, "")
    assert hv.lookup(lab.domain_name).is_running()
    assert events == []
