"""An instructor or TA previews an exercise assigned in their cohort: the
exercise page, their own lab, Check and Submit, whatever the dates, none of
it counting; a student's flow stays as it was."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from unittest import mock

import pytest
from django.http import Http404
from django.test import Client
from django.utils import timezone

from exercises.artifacts.archive import sanitize
from exercises.manifest import ArtifactSpec
from exercises.models import Attempt, AttemptKind, AttemptStatus
from exercises.selectors import attempt_result_counted
from labplatform.accounts.models import User
from labplatform.courses.models import Assignment, Cohort, Role
from labplatform.courses.selectors import assignment_access
from labplatform.courses.services import assignment_set, enrolment_set
from tests.conftest import World, client_for, exercise_version_for, make_exercise, make_user
from tests.support.labs import lab_vm_for
from vms import services as vm_services
from vms.errors import QuotaExceeded
from vms.models import LabVM, VMState

PAGE = "/exercises/hello-module/"
BANNER = "Preview — your attempts don't count."


@pytest.fixture
def ta(world: World) -> User:
    tara = make_user("tara")
    enrolment_set(user=tara, cohort=world.autumn, role=Role.TA)
    return tara


@pytest.fixture
def hello(world: World) -> Assignment:
    exercise_version_for(world.hello.exercise)
    return world.hello


@pytest.fixture
def enqueued() -> Iterator[mock.MagicMock]:
    with mock.patch("celery.app.task.Task.apply_async") as apply_async:
        yield apply_async


@pytest.fixture(autouse=True)
def collected() -> Iterator[mock.MagicMock]:
    """A Submit collects files from the guest: here, an empty set."""
    import io
    import tarfile

    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz"):
        pass
    clean = sanitize(raw.getvalue(), [ArtifactSpec(path="/root/hello")])
    with mock.patch("exercises.artifacts.collect.collect_from_vm", return_value=clean) as collect:
        yield collect


def set_window(assignment: Assignment, *, opens: int, due: int, closes: int) -> None:
    now = timezone.now()
    assignment.opens_at = now + timedelta(hours=opens)
    assignment.due_at = now + timedelta(hours=due)
    assignment.closes_at = now + timedelta(hours=closes)
    assignment.save()


# -- the selector --------------------------------------------------------------------


def test_a_student_gets_their_assignment_and_no_preview(world: World) -> None:
    assert assignment_access(user=world.alice, exercise_slug="hello-module") == (world.hello, False)


@pytest.mark.parametrize("persona", ["tess", "ta"])
def test_the_cohorts_staff_get_it_as_a_preview(world: World, ta: User, persona: str) -> None:
    user = ta if persona == "ta" else world.tess
    assert assignment_access(user=user, exercise_slug="hello-module") == (world.hello, True)


@pytest.mark.parametrize("persona", ["bob", "charlie"])
def test_others_get_404(world: World, persona: str) -> None:
    with pytest.raises(Http404):
        assignment_access(user=getattr(world, persona), exercise_slug="hello-module")


def test_who_studies_it_too_gets_the_students_side(world: World) -> None:
    winter = Cohort.objects.create(course=world.kernel_course, slug="winter", name="Winter")
    enrolment_set(user=world.tess, cohort=winter, role=Role.STUDENT)
    now = timezone.now()
    studied = assignment_set(
        cohort=winter,
        exercise=world.hello.exercise,
        opens_at=now,
        due_at=now + timedelta(days=1),
        closes_at=now + timedelta(days=2),
    )
    assert assignment_access(user=world.tess, exercise_slug="hello-module") == (studied, False)


# -- the exercise page ---------------------------------------------------------------


@pytest.mark.parametrize("persona", ["tess", "ta"])
def test_the_staff_open_the_exercise_page_with_the_preview_banner(
    world: World, ta: User, persona: str
) -> None:
    user = ta if persona == "ta" else world.tess
    page = client_for(user).get(PAGE)
    assert page.status_code == 200
    assert BANNER in page.content.decode()
    assert page.context["preview"] is True


def test_the_student_sees_no_banner(world: World) -> None:
    page = client_for(world.alice).get(PAGE)
    assert page.status_code == 200
    assert BANNER not in page.content.decode()


@pytest.mark.parametrize("persona", ["bob", "charlie"])
def test_strangers_get_404_for_the_page(world: World, persona: str) -> None:
    assert client_for(getattr(world, persona)).get(PAGE).status_code == 404


def test_anonymous_is_sent_to_log_in(world: World) -> None:
    response = Client().get(PAGE)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_a_preview_accepts_checks_before_the_assignment_opens(
    world: World, hello: Assignment
) -> None:
    set_window(hello, opens=24, due=48, closes=72)
    assert client_for(world.tess).get(PAGE).context["accepting"] is True
    assert client_for(world.alice).get(PAGE).context["accepting"] is False


def test_the_course_page_offers_the_staff_a_preview_link(world: World) -> None:
    link = 'data-testid="preview-link"'
    assert link in client_for(world.tess).get("/courses/kernel-internals/").content.decode()
    assert link not in client_for(world.alice).get("/courses/kernel-internals/").content.decode()


# -- the lab -----------------------------------------------------------------------


def test_tess_starts_her_own_lab_on_hello_module(
    world: World, hello: Assignment, enqueued: Any, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(world.tess).post(f"{PAGE}start")
    assert response.status_code == 302
    vm = LabVM.objects.get()
    assert (vm.owner, vm.assignment, vm.state) == (world.tess, hello, VMState.REQUESTED)
    assert enqueued.call_count == 1


@pytest.mark.parametrize(("opens", "closes"), [(24, 72), (-72, -24)])
def test_a_preview_lab_starts_outside_the_window(
    world: World, hello: Assignment, enqueued: Any, opens: int, closes: int
) -> None:
    set_window(hello, opens=opens, due=opens + 1, closes=closes)
    vm = vm_services.lab_start(user=world.tess, assignment=hello, preview=True)
    assert vm.owner == world.tess
    client_for(world.alice).post(f"{PAGE}start")
    assert not LabVM.objects.filter(owner=world.alice).exists()


def test_a_preview_ignores_the_cohorts_limit(
    world: World, hello: Assignment, enqueued: Any
) -> None:
    world.autumn.max_running_vms = 1
    world.autumn.save()
    lab_vm_for(world.alice, hello)
    client_for(world.tess).post(f"{PAGE}start")
    assert LabVM.objects.filter(owner=world.tess).exists()


def test_a_preview_keeps_the_per_user_quota(world: World, hello: Assignment, enqueued: Any) -> None:
    other = assignment_set(
        cohort=world.autumn,
        exercise=make_exercise("sysctl-tuning", "Tuning sysctls", "sysctl"),
        opens_at=timezone.now() - timedelta(days=1),
        due_at=timezone.now() + timedelta(days=1),
        closes_at=timezone.now() + timedelta(days=2),
    )
    lab_vm_for(world.tess, other)
    with pytest.raises(QuotaExceeded, match="already have 1 lab VM"):
        vm_services.lab_start(user=world.tess, assignment=hello, preview=True)


# -- Check and Submit ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("action", "kind"), [("check", AttemptKind.CHECK), ("submit", AttemptKind.SUBMIT)]
)
def test_tess_checks_and_submits_as_a_preview(
    world: World,
    hello: Assignment,
    enqueued: Any,
    django_capture_on_commit_callbacks: Any,
    action: str,
    kind: AttemptKind,
) -> None:
    lab_vm_for(world.tess, hello)
    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(world.tess).post(f"{PAGE}{action}")
    assert response.status_code == 302
    attempt = Attempt.objects.get()
    assert (attempt.student, attempt.kind, attempt.is_preview) == (world.tess, kind, True)
    assert enqueued.call_count == 1


def test_a_graded_preview_submit_never_counts(
    world: World, hello: Assignment, enqueued: Any
) -> None:
    lab_vm_for(world.tess, hello)
    client_for(world.tess).post(f"{PAGE}submit")
    Attempt.objects.update(status=AttemptStatus.GRADED, score=10)
    assert attempt_result_counted(user=world.tess, assignment=hello) is None


def test_a_preview_submit_after_the_hard_close_is_accepted_and_not_late(
    world: World, hello: Assignment, enqueued: Any
) -> None:
    set_window(hello, opens=-72, due=-48, closes=-24)
    lab_vm_for(world.tess, hello)
    client_for(world.tess).post(f"{PAGE}submit")
    attempt = Attempt.objects.get()
    assert (attempt.is_preview, attempt.is_late) == (True, False)


def test_the_students_attempts_are_not_previews_and_count(
    world: World, hello: Assignment, enqueued: Any
) -> None:
    lab_vm_for(world.alice, hello)
    client_for(world.alice).post(f"{PAGE}submit")
    Attempt.objects.update(status=AttemptStatus.GRADED, score=10)
    attempt = Attempt.objects.get()
    assert attempt.is_preview is False
    assert attempt_result_counted(user=world.alice, assignment=hello) == attempt


def test_the_preview_attempts_page_says_it_does_not_count(
    world: World, hello: Assignment, enqueued: Any
) -> None:
    lab_vm_for(world.tess, hello)
    client_for(world.tess).post(f"{PAGE}check")
    attempt = Attempt.objects.get()
    html = client_for(world.tess).get(f"/exercises/attempts/{attempt.pk}/").content.decode()
    assert "Preview — this attempt doesn't count." in html


def test_strangers_cannot_start_a_preview(world: World, hello: Assignment, enqueued: Any) -> None:
    charlie = client_for(world.charlie)
    assert charlie.post(f"{PAGE}start").status_code == 404
    assert charlie.post(f"{PAGE}check").status_code == 404
    assert not LabVM.objects.exists()
    assert not Attempt.objects.exists()
