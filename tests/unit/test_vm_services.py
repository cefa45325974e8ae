"""The web side of the VM lifecycle: quotas, placement, compare-and-set
transitions and ownership. Tasks are captured, not run (the worker side has
its own tests against real QEMU)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from unittest import mock

import pytest
from django.test import override_settings
from django.utils import timezone

from tests.conftest import World, client_for
from vms import services
from vms.errors import AssignmentClosed, InvalidState, NoCapacity, QuotaExceeded
from vms.models import Host, LabVM, VMState


@pytest.fixture
def enqueued() -> Any:
    """Record the tasks services enqueue after commit instead of sending them."""
    with mock.patch("celery.app.task.Task.apply_async") as apply_async:
        yield apply_async


def start(world: World, django_capture_on_commit_callbacks: Any, user: str = "alice") -> LabVM:
    assignment = world.hello if user == "alice" else world.strace
    with django_capture_on_commit_callbacks(execute=True):
        return services.lab_start(user=getattr(world, user), assignment=assignment)


def test_start_creates_a_requested_vm_and_enqueues_provision_on_its_host(
    world: World, enqueued: Any, django_capture_on_commit_callbacks: Any
) -> None:
    vm = start(world, django_capture_on_commit_callbacks)
    assert vm.state == VMState.REQUESTED
    assert vm.host.name == "local"
    ((args, kwargs),) = [c for c in enqueued.call_args_list]
    assert args == ((str(vm.id),),)
    assert kwargs == {"queue": "host.local.lab"}


def test_second_start_returns_the_same_vm(
    world: World, enqueued: Any, django_capture_on_commit_callbacks: Any
) -> None:
    first = start(world, django_capture_on_commit_callbacks)
    second = start(world, django_capture_on_commit_callbacks)
    assert first.pk == second.pk
    assert enqueued.call_count == 1


def test_start_of_a_stopped_vm_resumes_it(
    world: World, enqueued: Any, django_capture_on_commit_callbacks: Any
) -> None:
    vm = start(world, django_capture_on_commit_callbacks)
    LabVM.objects.filter(pk=vm.pk).update(state=VMState.STOPPED)
    again = start(world, django_capture_on_commit_callbacks)
    assert again.pk == vm.pk
    assert again.state == VMState.RESUMING


def test_quota_per_student_is_a_clear_error_and_creates_nothing(
    world: World, enqueued: Any, django_capture_on_commit_callbacks: Any
) -> None:
    start(world, django_capture_on_commit_callbacks)
    from labplatform.courses.services import assignment_set
    from tests.conftest import make_exercise

    other = assignment_set(
        cohort=world.autumn,
        exercise=make_exercise("sysctl-tuning", "Tuning sysctls", "sysctl"),
        opens_at=timezone.now() - timedelta(days=1),
        due_at=timezone.now() + timedelta(days=1),
        closes_at=timezone.now() + timedelta(days=2),
    )
    with pytest.raises(QuotaExceeded, match="already have 1 lab VM"):
        services.lab_start(user=world.alice, assignment=other)
    assert LabVM.objects.count() == 1


def test_full_hosts_give_no_capacity(
    world: World, enqueued: Any, django_capture_on_commit_callbacks: Any
) -> None:
    Host.objects.update(max_vms=1)
    start(world, django_capture_on_commit_callbacks, user="bob")
    with pytest.raises(NoCapacity, match="All lab machines are full"):
        start(world, django_capture_on_commit_callbacks, user="alice")
    assert LabVM.objects.count() == 1


def test_placement_prefers_the_emptier_host(
    world: World, enqueued: Any, django_capture_on_commit_callbacks: Any
) -> None:
    Host.objects.create(name="big", uri="qemu+ssh://big/system", max_vms=100)
    vm = start(world, django_capture_on_commit_callbacks)
    assert vm.host.name == "big"


def test_disabled_hosts_are_not_used(
    world: World, enqueued: Any, django_capture_on_commit_callbacks: Any
) -> None:
    Host.objects.update(enabled=False)
    with pytest.raises(NoCapacity):
        start(world, django_capture_on_commit_callbacks)


@override_settings(VM_MAX_PER_COHORT=1)
def test_cohort_quota(world: World, enqueued: Any, django_capture_on_commit_callbacks: Any) -> None:
    from labplatform.courses.models import Role
    from labplatform.courses.services import enrolment_set
    from tests.conftest import make_user

    start(world, django_capture_on_commit_callbacks)
    dave = make_user("dave")
    enrolment_set(user=dave, cohort=world.autumn, role=Role.STUDENT)
    with pytest.raises(QuotaExceeded, match="cohort"):
        services.lab_start(user=dave, assignment=world.hello)


def test_closed_assignment_refuses_to_start(world: World, enqueued: Any) -> None:
    world.hello.opens_at = timezone.now() - timedelta(days=10)
    world.hello.due_at = world.hello.closes_at = timezone.now() - timedelta(days=1)
    world.hello.save()
    with pytest.raises(AssignmentClosed, match="closed"):
        services.lab_start(user=world.alice, assignment=world.hello)


def test_transitions_are_compare_and_set(
    world: World, enqueued: Any, django_capture_on_commit_callbacks: Any
) -> None:
    vm = start(world, django_capture_on_commit_callbacks)
    with pytest.raises(InvalidState, match="Cannot stop a VM that is requested"):
        services.lab_stop(vm=vm)
    LabVM.objects.filter(pk=vm.pk).update(state=VMState.RUNNING)
    vm.refresh_from_db()
    stale = LabVM.objects.get(pk=vm.pk)
    with django_capture_on_commit_callbacks(execute=True):
        services.lab_stop(vm=vm)
    # A second request holding the old state loses the race, cleanly.
    with pytest.raises(InvalidState, match="stopping"):
        services.lab_stop(vm=stale)
    assert LabVM.objects.get(pk=vm.pk).state == VMState.STOPPING


def test_destroy_from_any_state_but_not_twice(
    world: World, enqueued: Any, django_capture_on_commit_callbacks: Any
) -> None:
    vm = start(world, django_capture_on_commit_callbacks)
    services.lab_destroy(vm=vm)
    with pytest.raises(InvalidState):
        services.lab_destroy(vm=LabVM.objects.get(pk=vm.pk))


ACTIONS = ["stop", "resume", "reset", "destroy"]


@pytest.mark.parametrize("action", [*ACTIONS, "status"])
def test_another_students_vm_id_is_404_in_every_url(
    world: World, enqueued: Any, django_capture_on_commit_callbacks: Any, action: str
) -> None:
    vm = start(world, django_capture_on_commit_callbacks)
    LabVM.objects.filter(pk=vm.pk).update(state=VMState.RUNNING)
    url = f"/vms/{vm.id}/{action}"
    for persona in ("bob", "tess", "charlie"):
        client = client_for(getattr(world, persona))
        response = client.get(url) if action == "status" else client.post(url)
        assert response.status_code == 404, (persona, url)
    assert LabVM.objects.get(pk=vm.pk).state == VMState.RUNNING


def test_malformed_vm_id_is_404(world: World) -> None:
    assert client_for(world.alice).post("/vms/not-a-uuid/stop").status_code == 404


def test_state_changes_need_post(world: World, enqueued: Any) -> None:
    alice = client_for(world.alice)
    assert alice.get("/exercises/hello-module/start").status_code == 405
    assert LabVM.objects.count() == 0


def test_start_through_the_page_returns_json(world: World, enqueued: Any) -> None:
    response = client_for(world.alice).post(
        "/exercises/hello-module/start", HTTP_ACCEPT="application/json"
    )
    assert response.status_code == 200
    body = response.json()
    assert body["state"] == "requested"
    assert body["exercise"] == "hello-module"


def test_quota_error_reaches_the_page_as_json(world: World, enqueued: Any) -> None:
    Host.objects.update(enabled=False)
    response = client_for(world.alice).post(
        "/exercises/hello-module/start", HTTP_ACCEPT="application/json"
    )
    assert response.status_code == 409
    assert response.json()["error"] == "no_capacity"


def test_student_cannot_start_someone_elses_exercise(world: World, enqueued: Any) -> None:
    assert client_for(world.alice).post("/exercises/strace-syscalls/start").status_code == 404
    assert LabVM.objects.count() == 0
