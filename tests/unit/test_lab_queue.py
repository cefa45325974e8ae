"""A burst of Starts on one host queues first come, first served, and each
waiting page is told its place, again whenever the queue moves."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from unittest import mock

import pytest

from labplatform.accounts.models import User
from labplatform.courses.models import Role
from labplatform.courses.services import enrolment_set
from tests.conftest import World, make_user
from vms import lifecycle, services
from vms.models import Host, LabVM, VMState


@pytest.fixture
def students(world: World) -> list[User]:
    """Four students of alice's cohort (one lab VM each)."""
    users = [world.alice]
    for name in ("dave", "erin", "frank"):
        user = make_user(name)
        enrolment_set(user=user, cohort=world.autumn, role=Role.STUDENT)
        users.append(user)
    return users


@pytest.fixture
def published() -> Iterator[mock.Mock]:
    with mock.patch("vms.waiting.publish_vm_event") as publish:
        yield publish


def start_all(world: World, students: list[User], capture: Any) -> list[LabVM]:
    vms = []
    with mock.patch("celery.app.task.Task.apply_async"), capture(execute=True):
        for user in students:
            vms.append(services.lab_start(user=user, assignment=world.hello))
    return vms


def progress(vms: list[LabVM]) -> list[str]:
    return [LabVM.objects.get(pk=vm.pk).progress for vm in vms]


def test_each_start_of_a_burst_says_how_many_are_ahead(
    world: World, students: list[User], django_capture_on_commit_callbacks: Any
) -> None:
    vms = start_all(world, students, django_capture_on_commit_callbacks)
    assert progress(vms) == [
        "Waiting for a worker",
        "Waiting for a free slot: 1 ahead of you",
        "Waiting for a free slot: 2 ahead of you",
        "Waiting for a free slot: 3 ahead of you",
    ]


def test_when_a_worker_takes_the_first_the_others_move_up_and_are_told(
    world: World,
    students: list[User],
    published: mock.Mock,
    django_capture_on_commit_callbacks: Any,
) -> None:
    first, *others = start_all(world, students, django_capture_on_commit_callbacks)
    with (
        mock.patch("vms.lifecycle._boot"),
        mock.patch("vms.lifecycle.publish_vm_event"),
        mock.patch("vms.events.publish_vm_event"),
    ):
        lifecycle.provision(str(first.pk))
    assert LabVM.objects.get(pk=first.pk).state == VMState.RUNNING
    assert progress(others) == [
        "Waiting for a worker",
        "Waiting for a free slot: 1 ahead of you",
        "Waiting for a free slot: 2 ahead of you",
    ]
    told = {(str(c.args[0].pk), c.args[0].progress) for c in published.call_args_list}
    assert told == {(str(vm.pk), text) for vm, text in zip(others, progress(others), strict=True)}


def test_a_start_given_up_while_waiting_moves_the_ones_behind_it(
    world: World,
    students: list[User],
    published: mock.Mock,
    django_capture_on_commit_callbacks: Any,
) -> None:
    vms = start_all(world, students, django_capture_on_commit_callbacks)
    with (
        mock.patch("celery.app.task.Task.apply_async"),
        django_capture_on_commit_callbacks(execute=True),
    ):
        services.lab_destroy(vm=vms[1])
    assert progress([vms[0], vms[2], vms[3]]) == [
        "Waiting for a worker",
        "Waiting for a free slot: 1 ahead of you",
        "Waiting for a free slot: 2 ahead of you",
    ]
    assert {c.args[0].pk for c in published.call_args_list} == {vms[2].pk, vms[3].pk}


def test_starts_on_another_host_do_not_count(
    world: World, students: list[User], django_capture_on_commit_callbacks: Any
) -> None:
    vms = start_all(world, students[:2], django_capture_on_commit_callbacks)
    other = Host.objects.create(name="h2", uri="test:///default", enabled=False)
    LabVM.objects.filter(pk=vms[0].pk).update(host=other)
    (third,) = start_all(world, students[2:3], django_capture_on_commit_callbacks)
    assert third.host.name == "local"
    assert third.progress == "Waiting for a free slot: 1 ahead of you"
