"""The grading pages under /teach/: who may open and post what (personas),
and what assignments, extensions and grade overrides do."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from unittest import mock
from zoneinfo import ZoneInfo

import pytest
from django.template.loader import render_to_string
from django.test import Client, RequestFactory
from django.utils import timezone

from exercises.models import Attempt
from labplatform.courses.grades.gradebook import cell_of
from labplatform.courses.models import (
    Assignment,
    AuditEntry,
    Cohort,
    Extension,
    GradeOverride,
    LatePer,
    RegradeJob,
)
from tests.conftest import World, client_for, exercise_version_for, make_exercise
from tests.support.grades import attempt_at, ta_in

PARIS = ZoneInfo("Europe/Paris")


@pytest.fixture
def enqueued() -> Any:
    with mock.patch("celery.app.task.Task.apply_async") as apply_async:
        yield apply_async


@pytest.fixture
def paris(world: World) -> Cohort:
    Cohort.objects.filter(pk=world.autumn.pk).update(time_zone="Europe/Paris")
    world.autumn.refresh_from_db()
    world.hello.refresh_from_db()
    return world.autumn


@dataclass
class Endpoint:
    name: str
    method: str
    path: Callable[[World, Attempt], str]
    data: Callable[[World], dict[str, str]]
    ta_may: bool
    ok: int


def nothing(world: World) -> dict[str, str]:
    return {}


def new_assignment(world: World) -> dict[str, str]:
    make_exercise("bpf-trace", "Tracing, with BPF", "tracing")
    exercise = make_exercise("bpf-trace2", "Tracing again", "tracing")
    exercise_version_for(exercise)
    return {
        "exercise": str(exercise.pk),
        "opens_at": "2026-10-01T09:00",
        "due_at": "2026-10-08T09:00",
        "closes_at": "2026-10-10T09:00",
        "late_penalty_percent": "10",
        "late_penalty_per": "day",
        "late_floor_percent": "50",
    }


def edit_assignment(world: World) -> dict[str, str]:
    data = new_assignment(world)
    del data["exercise"]
    return data


def grant(world: World) -> dict[str, str]:
    return {
        "action": "grant",
        "student": str(world.alice.pk),
        "due_at": "2030-01-01T09:00",
        "closes_at": "2030-01-02T09:00",
        "reason": "ill",
    }


def override(world: World) -> dict[str, str]:
    return {"score": "7.5", "reason": "re-marked by hand"}


def cohort_path(suffix: str) -> Callable[[World, Attempt], str]:
    return lambda w, a: f"/teach/cohorts/{w.autumn.pk}/{suffix}".format(a=w.hello.pk, s=w.alice.pk)


ENDPOINTS = [
    Endpoint("assignment_list", "get", cohort_path("assignments/"), nothing, True, 200),
    Endpoint("assignment_create", "get", cohort_path("assignments/new"), nothing, False, 200),
    Endpoint(
        "assignment_create", "post", cohort_path("assignments/new"), new_assignment, False, 302
    ),
    Endpoint("assignment_edit", "get", cohort_path("assignments/{a}/edit"), nothing, False, 200),
    Endpoint(
        "assignment_edit", "post", cohort_path("assignments/{a}/edit"), edit_assignment, False, 302
    ),
    Endpoint(
        "extension_list", "get", cohort_path("assignments/{a}/extensions/"), nothing, False, 200
    ),
    Endpoint(
        "extension_list", "post", cohort_path("assignments/{a}/extensions/"), grant, False, 302
    ),
    Endpoint(
        "grade_override",
        "post",
        cohort_path("assignments/{a}/students/{s}/override"),
        override,
        False,
        302,
    ),
    Endpoint(
        "assignment_regrade", "post", cohort_path("assignments/{a}/regrade"), nothing, True, 302
    ),
    Endpoint(
        "student_regrade",
        "post",
        cohort_path("assignments/{a}/students/{s}/regrade"),
        nothing,
        True,
        302,
    ),
    Endpoint(
        "attempt_regrade_staff",
        "post",
        lambda w, a: f"/teach/attempts/{a.pk}/regrade",
        nothing,
        True,
        302,
    ),
    Endpoint("regrade_job", "get", lambda w, a: "/teach/regrades/{job}", nothing, True, 200),
    Endpoint("gradebook", "get", cohort_path("gradebook/"), nothing, True, 200),
    Endpoint("gradebook_csv", "get", cohort_path("gradebook.csv"), nothing, True, 200),
    Endpoint("gradebook_json", "get", cohort_path("gradebook.json"), nothing, True, 200),
]


def persona_client(world: World, persona: str) -> Client:
    if persona == "anonymous":
        return Client()
    if persona == "ta":
        return client_for(ta_in(world.autumn))
    return client_for(getattr(world, persona))


@pytest.mark.parametrize("persona", ["anonymous", "alice", "charlie", "ta", "tess"])
@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=[f"{e.method}-{e.name}" for e in ENDPOINTS])
def test_personas(world: World, enqueued: Any, persona: str, endpoint: Endpoint) -> None:
    exercise_version_for(world.hello.exercise)
    attempt = attempt_at(world.alice, world.hello, timezone.now(), score=4, files=True)
    job = RegradeJob.objects.create(assignment=world.hello, scope="assignment")
    client = persona_client(world, persona)
    path = endpoint.path(world, attempt).replace("{job}", str(job.pk))
    data = endpoint.data(world)
    jobs, overrides = RegradeJob.objects.count(), GradeOverride.objects.count()
    response = getattr(client, endpoint.method)(path, data=data)
    if persona == "anonymous":
        assert response.status_code == 302
        assert response["Location"].startswith("/accounts/login/")
    elif persona in ("alice", "charlie") or (persona == "ta" and not endpoint.ta_may):
        assert response.status_code == 404
    else:
        assert response.status_code == endpoint.ok, response.content[:2000]
        return
    assert (RegradeJob.objects.count(), GradeOverride.objects.count()) == (jobs, overrides)
    assert not Extension.objects.exists()
    assert Assignment.objects.filter(cohort=world.autumn).count() == 1


def test_state_changes_need_the_csrf_token(world: World) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(world.tess)
    response = client.post(
        f"/teach/cohorts/{world.autumn.pk}/assignments/{world.hello.pk}/students/"
        f"{world.alice.pk}/override",
        data={"score": "1", "reason": "x"},
    )
    assert response.status_code == 403
    assert not GradeOverride.objects.exists()


# --- assignments ----------------------------------------------------------------


def test_dates_are_entered_on_the_cohort_clock(world: World, paris: Cohort) -> None:
    data = new_assignment(world)
    response = client_for(world.tess).post(f"/teach/cohorts/{paris.pk}/assignments/new", data=data)
    assert response.status_code == 302
    assignment = Assignment.objects.get(cohort=paris, exercise_id=data["exercise"])
    assert assignment.due_at == datetime(2026, 10, 8, 9, 0, tzinfo=PARIS)
    assert (assignment.late_penalty_percent, assignment.late_floor_percent) == (10, 50)
    assert assignment.late_penalty_per == LatePer.DAY
    entry = AuditEntry.objects.get(action="assignment.create")
    assert (entry.cohort, entry.actor) == (paris, world.tess)


def test_the_manifest_defaults_fill_empty_due_and_close(world: World, paris: Cohort) -> None:
    data = new_assignment(world)
    data["due_at"] = data["closes_at"] = ""
    # 25 October 2026: the clocks go back; 7 local days later is still 09:00.
    data["opens_at"] = "2026-10-20T09:00"
    response = client_for(world.tess).post(f"/teach/cohorts/{paris.pk}/assignments/new", data=data)
    assert response.status_code == 302
    assignment = Assignment.objects.get(cohort=paris, exercise_id=data["exercise"])
    assert assignment.due_at == datetime(2026, 10, 27, 9, 0, tzinfo=PARIS)  # due_days 7
    assert assignment.closes_at == datetime(2026, 10, 29, 9, 0, tzinfo=PARIS)  # late_days 2


def test_the_create_page_prefills_from_the_exercise(world: World, paris: Cohort) -> None:
    data = new_assignment(world)
    response = client_for(world.tess).get(
        f"/teach/cohorts/{paris.pk}/assignments/new?exercise=bpf-trace2"
    )
    html = response.content.decode()
    assert "Europe/Paris" in html
    opens = response.context["form"].initial["opens_at"]
    assert (opens.minute, opens.second) == (0, 0)
    due = response.context["form"].initial["due_at"]
    wall = opens.astimezone(PARIS).replace(tzinfo=None) + timedelta(days=7)  # due_days 7
    assert due.astimezone(PARIS).replace(tzinfo=None) == wall
    # only active exercises with a version, not yet assigned here
    choices = list(response.context["form"].fields["exercise"].queryset)
    assert [e.slug for e in choices] == ["bpf-trace2"]
    assert data["exercise"]


def test_dates_out_of_order_are_errors_by_field(world: World, paris: Cohort) -> None:
    data = new_assignment(world)
    data["due_at"] = "2026-09-30T09:00"  # before opens
    data["closes_at"] = "2026-09-29T09:00"  # before due
    response = client_for(world.tess).post(f"/teach/cohorts/{paris.pk}/assignments/new", data=data)
    assert response.status_code == 400
    form = response.context["form"]
    assert "due_at" in form.errors
    assert "closes_at" in form.errors
    assert Assignment.objects.filter(cohort=paris).count() == 1
    assert not AuditEntry.objects.exists()


def test_editing_changes_the_policy(world: World, paris: Cohort) -> None:
    data = edit_assignment(world)
    data.update(late_penalty_per="hour", late_penalty_percent="2.5")
    response = client_for(world.tess).post(
        f"/teach/cohorts/{paris.pk}/assignments/{world.hello.pk}/edit", data=data
    )
    assert response.status_code == 302
    world.hello.refresh_from_db()
    assert (world.hello.late_penalty_per, world.hello.late_penalty_percent) == (
        LatePer.HOUR,
        Decimal("2.5"),
    )
    assert AuditEntry.objects.filter(action="assignment.edit").count() == 1


def test_the_list_shows_dates_in_the_zone_with_its_abbreviation(
    world: World, paris: Cohort
) -> None:
    Assignment.objects.filter(pk=world.hello.pk).update(
        due_at=datetime(2026, 12, 1, 23, 59, tzinfo=PARIS)
    )
    html = client_for(world.tess).get(f"/teach/cohorts/{paris.pk}/assignments/").content.decode()
    assert "Tue 1 Dec 2026, 23:59 CET" in html
    assert "No late penalty" in html


# --- extensions -----------------------------------------------------------------


def test_an_extension_may_reach_past_the_hard_close(world: World, paris: Cohort) -> None:
    client = client_for(world.tess)
    url = f"/teach/cohorts/{paris.pk}/assignments/{world.hello.pk}/extensions/"
    assert client.post(url, data=grant(world)).status_code == 302
    extension = Extension.objects.get(assignment=world.hello, student=world.alice)
    assert extension.closes_at == datetime(2030, 1, 2, 9, 0, tzinfo=PARIS)
    assert extension.closes_at > world.hello.closes_at
    changed = {**grant(world), "due_at": "2030-01-01T12:00"}
    assert client.post(url, data=changed).status_code == 302
    extension.refresh_from_db()
    assert extension.due_at == datetime(2030, 1, 1, 12, 0, tzinfo=PARIS)
    response = client.post(url, data={"action": "revoke", "extension": str(extension.pk)})
    assert response.status_code == 302
    assert not Extension.objects.exists()
    actions = list(AuditEntry.objects.order_by("id").values_list("action", flat=True))
    assert actions == ["extension.grant", "extension.change", "extension.revoke"]


def test_an_extension_for_someone_outside_the_cohort_is_refused(world: World) -> None:
    client = client_for(world.tess)
    url = f"/teach/cohorts/{world.autumn.pk}/assignments/{world.hello.pk}/extensions/"
    response = client.post(url, data={**grant(world), "student": str(world.bob.pk)})
    assert response.status_code == 400
    assert "student" in response.context["form"].errors
    assert not Extension.objects.exists()


# --- grade overrides ------------------------------------------------------------


def override_url(world: World) -> str:
    return (
        f"/teach/cohorts/{world.autumn.pk}/assignments/{world.hello.pk}/students/"
        f"{world.alice.pk}/override"
    )


def test_an_override_needs_a_reason(world: World) -> None:
    response = client_for(world.tess).post(override_url(world), data={"score": "5", "reason": ""})
    assert response.status_code == 400
    assert "reason" in response.context["override_form"].errors
    assert not GradeOverride.objects.exists()
    assert not AuditEntry.objects.exists()


def test_an_override_stays_within_the_maximum(world: World) -> None:
    exercise_version_for(world.hello.exercise)
    response = client_for(world.tess).post(
        override_url(world), data={"score": "10.01", "reason": "generous"}
    )
    assert response.status_code == 400
    assert "score" in response.context["override_form"].errors
    assert not GradeOverride.objects.exists()


def test_an_override_is_set_then_cleared_and_all_of_it_shows(world: World) -> None:
    exercise_version_for(world.hello.exercise)
    attempt_at(world.alice, world.hello, timezone.now(), score=4)
    client = client_for(world.tess)
    assert client.post(override_url(world), data=override(world)).status_code == 302
    cell = cell_of(cohort=world.autumn, assignment=world.hello, student_id=world.alice.pk)
    assert cell is not None
    assert cell.final_score == Decimal("7.5")
    response = client.post(override_url(world), data={"clear": "on", "reason": "back to the run"})
    assert response.status_code == 302
    cell = cell_of(cohort=world.autumn, assignment=world.hello, student_id=world.alice.pk)
    assert cell is not None
    assert (cell.final_score, cell.override) == (Decimal(4), None)
    assert list(AuditEntry.objects.order_by("id").values_list("action", flat=True)) == [
        "grade.override",
        "grade.override_clear",
    ]
    request = RequestFactory().get("/")
    request.user = world.tess
    html = render_to_string(
        "courses/grades/_cell_grading.html",
        {
            "cohort": world.autumn,
            "assignment": world.hello,
            "student": world.alice,
            "cell": cell,
        },
        request=request,
    )
    assert "re-marked by hand" in html
    assert "back to the run" in html
    assert "cleared" in html
    assert 'data-testid="override-form"' in html
    assert 'data-testid="student-regrade"' in html


def test_a_ta_sees_the_history_but_no_override_form(world: World) -> None:
    ta = ta_in(world.autumn)
    cell = cell_of(cohort=world.autumn, assignment=world.hello, student_id=world.alice.pk)
    request = RequestFactory().get("/")
    request.user = ta
    html = render_to_string(
        "courses/grades/_cell_grading.html",
        {"cohort": world.autumn, "assignment": world.hello, "student": world.alice, "cell": cell},
        request=request,
    )
    assert 'data-testid="override-form"' not in html
    assert 'data-testid="student-regrade"' in html
