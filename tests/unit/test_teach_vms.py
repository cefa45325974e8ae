"""The cohort's lab VMs for its instructor: the list, stop and destroy
(queued on the VM's host through vms.services), and the cohort's limit on
running VMs that lab_start enforces. Tasks are captured, not run."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from unittest import mock

import pytest
from django.test import Client, override_settings
from django.utils import timezone

from labplatform.accounts.models import User
from labplatform.courses.models import AuditEntry, Role
from labplatform.courses.services import enrolment_set
from tests.conftest import World, client_for, make_user
from tests.support.labs import lab_vm_for
from vms import services, tasks
from vms.errors import QuotaExceeded
from vms.models import LabVM, VMState


@pytest.fixture
def ta(world: World) -> User:
    tara = make_user("tara")
    enrolment_set(user=tara, cohort=world.autumn, role=Role.TA)
    return tara


@dataclass
class Queued:
    stop: mock.MagicMock
    destroy: mock.MagicMock
    provision: mock.MagicMock


@pytest.fixture
def queued() -> Iterator[Queued]:
    """Which VM task each service sends (instead of sending it)."""
    with (
        mock.patch.object(tasks.stop, "apply_async") as stop,
        mock.patch.object(tasks.destroy, "apply_async") as destroy,
        mock.patch.object(tasks.provision, "apply_async") as provision,
    ):
        yield Queued(stop, destroy, provision)


def vms_url(world: World, vm: LabVM | None = None, action: str = "") -> str:
    base = f"/teach/cohorts/{world.autumn.pk}/vms/"
    return f"{base}{vm.pk}/{action}" if vm is not None else base


# -- the list ------------------------------------------------------------------------


def test_the_instructor_sees_the_cohorts_vms_with_owner_size_and_totals(world: World) -> None:
    vm = lab_vm_for(world.alice, world.hello, memory_mib=2048, vcpus=2)
    lab_vm_for(world.bob, world.strace)  # another cohort's: not listed
    page = client_for(world.tess).get(vms_url(world))
    assert page.status_code == 200
    html = page.content.decode()
    assert f'data-vm="{vm.pk}"' in html
    assert "Alice" in html
    assert "(alice)" in html
    assert "Hello, kernel module" in html
    assert "2048 MiB, 2 vCPUs" in html
    assert "bob" not in html
    assert page.context["vms"].running == 1
    assert page.context["vms"].limit == 60


def test_uptime_counts_from_when_the_vm_became_running(world: World) -> None:
    running = lab_vm_for(world.alice, world.hello)
    since = timezone.now() - timedelta(hours=3)
    LabVM.objects.filter(pk=running.pk).update(state_changed_at=since)
    (row,) = client_for(world.tess).get(vms_url(world)).context["vms"].rows
    assert row.up_since == since
    assert row.uptime is not None
    assert row.uptime >= timedelta(hours=3)


def test_a_stopped_vm_is_listed_without_uptime_and_destroyed_ones_are_not(world: World) -> None:
    lab_vm_for(world.alice, world.hello, VMState.STOPPED)
    lab_vm_for(world.alice, world.hello, VMState.DESTROYED)
    (row,) = client_for(world.tess).get(vms_url(world)).context["vms"].rows
    assert row.vm.state == VMState.STOPPED
    assert row.uptime is None


def test_the_cohorts_own_limit_is_shown(world: World) -> None:
    world.autumn.max_running_vms = 3
    world.autumn.save()
    lab_vm_for(world.alice, world.hello)
    page = client_for(world.tess).get(vms_url(world))
    totals = page.context["vms"]
    assert (totals.running, totals.limit, totals.limit_is_cohorts) == (1, 3, True)
    assert "this cohort's limit" in page.content.decode()


@pytest.mark.parametrize("persona", ["alice", "bob", "charlie", "ta"])
def test_everyone_but_the_instructor_gets_404_for_the_list(
    world: World, ta: User, persona: str
) -> None:
    user = ta if persona == "ta" else getattr(world, persona)
    assert client_for(user).get(vms_url(world)).status_code == 404


def test_anonymous_is_sent_to_log_in(world: World) -> None:
    response = Client().get(vms_url(world))
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


# -- stop and destroy --------------------------------------------------------------


def test_stop_queues_the_stop_task_on_the_vms_host_and_is_audited(
    world: World, queued: Queued, django_capture_on_commit_callbacks: Any
) -> None:
    vm = lab_vm_for(world.alice, world.hello)
    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(world.tess).post(vms_url(world, vm, "stop"))
    assert response.status_code == 302
    assert response["Location"] == vms_url(world)
    vm.refresh_from_db()
    assert vm.state == VMState.STOPPING
    queued.stop.assert_called_once_with((str(vm.pk),), queue="host.local.lab")
    queued.destroy.assert_not_called()
    entry = AuditEntry.objects.get(cohort=world.autumn)
    assert (entry.action, entry.actor) == ("vm.stop", world.tess)
    assert entry.detail["owner"] == "alice"


def test_destroy_queues_the_destroy_task_and_is_audited(
    world: World, queued: Queued, django_capture_on_commit_callbacks: Any
) -> None:
    vm = lab_vm_for(world.alice, world.hello, VMState.STOPPED)
    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(world.tess).post(vms_url(world, vm, "destroy"))
    assert response.status_code == 302
    vm.refresh_from_db()
    assert vm.state == VMState.DESTROYING
    queued.destroy.assert_called_once_with((str(vm.pk),), queue="host.local.lab")
    queued.stop.assert_not_called()
    assert AuditEntry.objects.get(cohort=world.autumn).action == "vm.destroy"


def test_stopping_a_vm_that_is_not_running_says_why_and_changes_nothing(
    world: World, queued: Queued, django_capture_on_commit_callbacks: Any
) -> None:
    vm = lab_vm_for(world.alice, world.hello, VMState.STOPPED)
    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(world.tess).post(vms_url(world, vm, "stop"), follow=True)
    assert "Cannot stop a VM that is stopped." in response.content.decode()
    vm.refresh_from_db()
    assert vm.state == VMState.STOPPED
    queued.stop.assert_not_called()
    assert not AuditEntry.objects.exists()


@pytest.mark.parametrize("action", ["stop", "destroy"])
@pytest.mark.parametrize("persona", ["alice", "bob", "charlie", "ta"])
def test_nobody_but_the_instructor_stops_or_destroys(
    world: World, ta: User, queued: Queued, persona: str, action: str
) -> None:
    vm = lab_vm_for(world.alice, world.hello)
    user = ta if persona == "ta" else getattr(world, persona)
    assert client_for(user).post(vms_url(world, vm, action)).status_code == 404
    vm.refresh_from_db()
    assert vm.state == VMState.RUNNING
    assert not AuditEntry.objects.exists()


@pytest.mark.parametrize("action", ["stop", "destroy"])
def test_a_vm_of_another_cohort_in_the_url_is_404(
    world: World, queued: Queued, action: str
) -> None:
    bobs = lab_vm_for(world.bob, world.strace)
    assert client_for(world.tess).post(vms_url(world, bobs, action)).status_code == 404
    bobs.refresh_from_db()
    assert bobs.state == VMState.RUNNING


def test_stop_and_destroy_need_post_and_csrf(world: World, queued: Queued) -> None:
    vm = lab_vm_for(world.alice, world.hello)
    assert client_for(world.tess).get(vms_url(world, vm, "stop")).status_code == 405
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(world.tess)
    assert strict.post(vms_url(world, vm, "destroy")).status_code == 403
    vm.refresh_from_db()
    assert vm.state == VMState.RUNNING


def test_anonymous_post_goes_to_login(world: World, queued: Queued) -> None:
    vm = lab_vm_for(world.alice, world.hello)
    response = Client().post(vms_url(world, vm, "stop"))
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


# -- the cohort's limit in lab_start -------------------------------------------------


@pytest.fixture
def dave(world: World) -> User:
    """A second student of the cohort."""
    student = make_user("dave")
    enrolment_set(user=student, cohort=world.autumn, role=Role.STUDENT)
    return student


def test_the_cohorts_limit_refuses_a_start_with_a_clear_message(
    world: World, dave: User, queued: Queued
) -> None:
    world.autumn.max_running_vms = 1
    world.autumn.save()
    lab_vm_for(dave, world.hello)
    with pytest.raises(QuotaExceeded, match="already runs 1 lab VM, its limit of 1"):
        services.lab_start(user=world.alice, assignment=world.hello)
    assert not LabVM.objects.filter(owner=world.alice).exists()


@override_settings(VM_MAX_PER_COHORT=1)
def test_the_cohorts_limit_replaces_the_sites_default(
    world: World, dave: User, queued: Queued, django_capture_on_commit_callbacks: Any
) -> None:
    world.autumn.max_running_vms = 2
    world.autumn.save()
    lab_vm_for(dave, world.hello)
    with django_capture_on_commit_callbacks(execute=True):
        vm = services.lab_start(user=world.alice, assignment=world.hello)
    assert vm.state == VMState.REQUESTED
    queued.provision.assert_called_once()


def test_a_stopped_vm_frees_its_place_in_the_cohort(
    world: World, dave: User, queued: Queued
) -> None:
    world.autumn.max_running_vms = 1
    world.autumn.save()
    lab_vm_for(dave, world.hello, VMState.STOPPED)
    assert services.lab_start(user=world.alice, assignment=world.hello).owner == world.alice


def test_the_staffs_preview_vms_do_not_take_the_students_places(
    world: World, queued: Queued
) -> None:
    world.autumn.max_running_vms = 1
    world.autumn.save()
    lab_vm_for(world.tess, world.hello)
    assert services.lab_start(user=world.alice, assignment=world.hello).owner == world.alice


def test_a_refused_start_is_shown_to_the_student(world: World, dave: User, queued: Queued) -> None:
    world.autumn.max_running_vms = 1
    world.autumn.save()
    lab_vm_for(dave, world.hello)
    page = client_for(world.alice).post("/exercises/hello-module/start", follow=True)
    assert "its limit of 1" in page.content.decode()


def test_resuming_a_stopped_vm_also_respects_the_cohorts_limit(
    world: World, dave: User, queued: Queued
) -> None:
    world.autumn.max_running_vms = 1
    world.autumn.save()
    stopped = lab_vm_for(world.alice, world.hello, VMState.STOPPED)
    lab_vm_for(dave, world.hello)
    with pytest.raises(QuotaExceeded, match="its limit of 1"):
        services.lab_start(user=world.alice, assignment=world.hello)
    stopped.refresh_from_db()
    assert stopped.state == VMState.STOPPED
