"""Booting a stopped, crashed or failed lab again (Resume, Restart, Reset)
takes a place like a Start: the VM's host must have room, the student must be
under their quota and the cohort under its limit."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from unittest import mock

import pytest
from django.conf import LazySettings
from django.utils import timezone

from labplatform.courses.models import Role
from labplatform.courses.services import enrolment_set
from tests.conftest import World, make_user
from vms import services
from vms.errors import NoCapacity, QuotaExceeded
from vms.models import Host, LabVM, VMState


@pytest.fixture(autouse=True)
def enqueued() -> Iterator[mock.Mock]:
    with mock.patch("celery.app.task.Task.apply_async") as apply_async:
        yield apply_async


def lab(world: World, state: VMState, user: str = "alice") -> LabVM:
    owner = world.alice if user == "alice" else make_user(user)
    if user != "alice":
        enrolment_set(user=owner, cohort=world.autumn, role=Role.STUDENT)
    return LabVM.objects.create(
        owner=owner,
        exercise=world.hello.exercise,
        assignment=world.hello,
        host=Host.objects.get(name="local"),
        state=state,
        expires_at=timezone.now() + timedelta(days=1),
    )


@pytest.mark.parametrize("state", [VMState.STOPPED, VMState.CRASHED])
def test_resume_on_a_full_host_is_refused(world: World, state: VMState) -> None:
    Host.objects.update(max_vms=1)
    lab(world, VMState.RUNNING, user="dave")
    vm = lab(world, state)
    with pytest.raises(NoCapacity, match="full"):
        services.lab_resume(vm=vm)
    assert LabVM.objects.get(pk=vm.pk).state == state


def test_reset_of_a_stopped_vm_on_a_full_host_is_refused(world: World) -> None:
    Host.objects.update(max_vms=1)
    lab(world, VMState.RUNNING, user="dave")
    vm = lab(world, VMState.STOPPED)
    with pytest.raises(NoCapacity):
        services.lab_reset(vm=vm)
    assert LabVM.objects.get(pk=vm.pk).state == VMState.STOPPED


def test_reset_of_a_running_vm_takes_no_new_place(world: World) -> None:
    Host.objects.update(max_vms=1)
    vm = lab(world, VMState.RUNNING)
    assert services.lab_reset(vm=vm).state == VMState.RESETTING


def test_resume_on_a_disabled_host_is_refused(world: World) -> None:
    vm = lab(world, VMState.STOPPED)
    Host.objects.update(enabled=False)
    with pytest.raises(NoCapacity):
        services.lab_resume(vm=vm)


def test_resume_with_room_is_accepted(world: World) -> None:
    Host.objects.update(max_vms=2)
    lab(world, VMState.RUNNING, user="dave")
    vm = lab(world, VMState.STOPPED)
    assert services.lab_resume(vm=vm).state == VMState.RESUMING


def test_reset_of_a_failed_vm_counts_against_the_students_quota(world: World) -> None:
    lab(world, VMState.RUNNING)
    failed = lab(world, VMState.FAILED)
    with pytest.raises(QuotaExceeded, match="already have 1 lab VM"):
        services.lab_reset(vm=failed)


def test_resume_respects_the_cohort_limit(world: World, settings: LazySettings) -> None:
    settings.VM_MAX_PER_COHORT = 1
    lab(world, VMState.RUNNING, user="dave")
    vm = lab(world, VMState.STOPPED)
    with pytest.raises(QuotaExceeded, match="cohort"):
        services.lab_resume(vm=vm)
