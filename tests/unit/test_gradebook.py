"""The gradebook: what its CSV, JSON and the API say equals what the
attempts, the late policy, extensions and overrides say, case by case; and
its cost does not grow with students times assignments."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from exercises.models import AttemptKind, AttemptStatus
from labplatform.accounts.models import User
from labplatform.api.models import Scope
from labplatform.courses.grades.gradebook import Cell, gradebook_for_cohort, score_text
from labplatform.courses.grades.services import grade_override_set
from labplatform.courses.models import Assignment, Cohort, Enrolment, Extension, LatePer
from labplatform.courses.services import assignment_set
from tests.conftest import World, client_for, exercise_version_for, make_exercise
from tests.support.api import api_as
from tests.support.grades import attempt_at, student_in

DUE = datetime(2026, 10, 20, 23, 59, tzinfo=UTC)
DAY, HOUR = timedelta(days=1), timedelta(hours=1)


@dataclass
class Book:
    world: World
    a: Assignment  # 10%/day, floor 50%
    b: Assignment  # no late penalty
    students: dict[str, User]


@pytest.fixture
def book(world: World) -> Book:
    """A cohort with every kind of case (see the expected table below)."""
    cohort = world.autumn
    Cohort.objects.filter(pk=cohort.pk).update(time_zone="Europe/Paris")
    cohort.refresh_from_db()
    exercise_version_for(world.hello.exercise)
    a = assignment_set(
        cohort=cohort,
        exercise=world.hello.exercise,
        opens_at=DUE - 10 * DAY,
        due_at=DUE,
        closes_at=DUE + 20 * DAY,
        late_penalty_percent=Decimal(10),
        late_penalty_per=LatePer.DAY,
        late_floor_percent=Decimal(50),
    )
    bpf = make_exercise("bpf-trace", "Tracing, with BPF", "tracing")
    exercise_version_for(bpf)
    b = assignment_set(
        cohort=cohort, exercise=bpf, opens_at=DUE - DAY, due_at=DUE + DAY, closes_at=DUE + 2 * DAY
    )
    s = {
        "ann": student_in(cohort, "ann", "Ann", "Adams"),
        "ben": student_in(cohort, "ben", "Ben", "Brown"),
        "cid": student_in(cohort, "cid", "Cid", "Clark"),
        "dan": student_in(cohort, "dan", "Dan", "Davis"),
        "eve": student_in(cohort, "eve", "Eve", "Evans"),
        "fay": student_in(cohort, "fay", "Fay", "Fox"),
        "gus": student_in(cohort, "gus", "Gus", "Green"),
        "hal": student_in(cohort, "hal", "Hal", "Hill"),
    }
    # on time, full marks; on time, partial
    attempt_at(s["ann"], a, DUE, score=10)
    attempt_at(s["ben"], a, DUE - HOUR, score=6)
    # a Check only counts for nothing
    attempt_at(s["ben"], b, DUE, score=10, kind=AttemptKind.CHECK)
    # late by 2 days and an hour: 3 started days, 30%
    attempt_at(s["cid"], a, DUE + 2 * DAY + HOUR, score=10)
    # an ungraded error Submit counts for nothing
    attempt_at(s["cid"], b, DUE, status=AttemptStatus.ERROR)
    # 9 days late: 90% would be taken, the floor keeps 50%
    attempt_at(s["dan"], a, DUE + 9 * DAY, score=8)
    # an extension: late for the class, on time for her
    Extension.objects.create(
        assignment=a, student=s["eve"], due_at=DUE + 5 * DAY, closes_at=DUE + 6 * DAY
    )
    attempt_at(s["eve"], a, DUE + 4 * DAY, score=9)
    # an override; an override cleared again
    attempt_at(s["fay"], a, DUE, score=5)
    grade_override_set(
        assignment=a, student=s["fay"], score=Decimal("8.5"), reason="re-marked", actor=world.tess
    )
    attempt_at(s["fay"], b, DUE, score=7)
    grade_override_set(
        assignment=b, student=s["fay"], score=Decimal(0), reason="copied", actor=world.tess
    )
    grade_override_set(
        assignment=b, student=s["fay"], score=None, reason="not copied after all", actor=world.tess
    )
    # a finished regrade of an on-time Submit counts in its place; a newer
    # Submit whose grading failed does not
    original = attempt_at(s["gus"], a, DUE - DAY, score=3, files=True)
    attempt_at(s["gus"], a, DUE - DAY, score=10, regrade_of=original)
    attempt_at(s["gus"], a, DUE - HOUR, status=AttemptStatus.CHECKER_ERROR)
    # a student removed from the cohort is absent, his work kept
    attempt_at(s["hal"], a, DUE, score=10)
    Enrolment.objects.filter(user=s["hal"], cohort=cohort).delete()
    return Book(world, a, b, s)


HEADER = [
    "Username",
    "Email",
    "Last name",
    "First name",
    "Student ID",
    "Hello, kernel module [hello-module]",
    "Tracing, with BPF [bpf-trace]",
    "Total",
]
# username: (A, B, total), as the CSV says them
EXPECTED = {
    "alice": ("", "", "0"),  # no submission
    "ann": ("10", "", "10"),
    "ben": ("6", "", "6"),
    "cid": ("7", "", "7"),
    "dan": ("4", "", "4"),
    "eve": ("9", "", "9"),
    "fay": ("8.5", "7", "15.5"),
    "gus": ("10", "", "10"),
}


def test_the_csv_says_what_attempts_policy_and_overrides_say(book: Book) -> None:
    numbers = {"ann": "S-1001", "ben": "=1+1"}  # the second one a spreadsheet would run
    for username, number in numbers.items():
        Enrolment.objects.filter(user__username=username).update(student_number=number)
    response = client_for(book.world.tess).get(
        f"/teach/cohorts/{book.world.autumn.pk}/gradebook.csv"
    )
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith(
        'attachment; filename="gradebook-kernel-internals-autumn-'
    )
    body = response.content.decode("utf-8")
    assert "\r\n" in body
    rows = list(csv.reader(io.StringIO(body)))
    assert rows[0] == HEADER
    # alice has no last name: she comes first; then by last name
    assert [r[0] for r in rows[1:]] == list(EXPECTED)
    for row in rows[1:]:
        user = User.objects.get(username=row[0])
        number = {"ann": "S-1001", "ben": "'=1+1"}.get(user.username, "")
        assert row[1:5] == [user.email, user.last_name, user.first_name, number]
        assert tuple(row[5:]) == EXPECTED[row[0]], row[0]


def cells(book: Book) -> dict[str, list[Cell]]:
    gradebook = gradebook_for_cohort(cohort=book.world.autumn)
    return {row.student.username: row.cells for row in gradebook.rows}


def test_the_cells_say_why(book: Book) -> None:
    by = cells(book)
    assert "hal" not in by
    cid_a = by["cid"][0]
    assert (cid_a.late_units, cid_a.penalty_percent, cid_a.raw_score) == (3, Decimal(30), 10)
    dan_a = by["dan"][0]
    assert (dan_a.late_units, dan_a.penalty_percent, dan_a.final_score) == (9, 50, Decimal(4))
    eve_a = by["eve"][0]
    assert (eve_a.extended, eve_a.late_units, eve_a.final_score) == (True, 0, Decimal(9))
    fay_a, fay_b = by["fay"]
    assert fay_a.override is not None
    assert fay_a.override.reason == "re-marked"
    assert fay_a.raw_score == 5
    assert fay_b.override is None
    assert fay_b.cleared
    assert [o.score for o in fay_b.history] == [None, Decimal(0)]
    gus_a = by["gus"][0]
    assert gus_a.attempt is not None
    assert gus_a.attempt.regrade_of is not None
    assert by["ben"][1].attempt is None
    assert by["cid"][1].attempt is None


def test_the_json_has_the_same_numbers(book: Book) -> None:
    response = client_for(book.world.tess).get(
        f"/teach/cohorts/{book.world.autumn.pk}/gradebook.json"
    )
    body = response.json()
    assert [a["exercise"] for a in body["assignments"]] == ["hello-module", "bpf-trace"]
    for row in body["rows"]:
        a, b, total = EXPECTED[row["username"]]
        finals = [score_text(c["final_score"]) for c in row["cells"]]
        assert (*finals, score_text(row["total"])) == (a, b, total), row["username"]


def test_the_api_gradebook_uses_the_same_rule(book: Book) -> None:
    body = (
        api_as(book.world.tess, Scope.COHORT_ADMIN)
        .get(f"/cohorts/{book.world.autumn.pk}/gradebook")
        .json()
    )
    assert body["exercises"] == ["hello-module", "bpf-trace"]
    for row in body["rows"]:
        a, b, total = EXPECTED[row["username"]]
        finals = [score_text(c["final_score"]) for c in row["grades"]]
        assert (*finals, score_text(row["final_total"])) == (a, b, total), row["username"]
    fay = next(r for r in body["rows"] if r["username"] == "fay")
    assert [c["overridden"] for c in fay["grades"]] == [True, False]
    cid = next(r for r in body["rows"] if r["username"] == "cid")
    assert (cid["grades"][0]["score"], cid["grades"][0]["penalty_percent"]) == (10, 30.0)


def test_the_page_shows_marks_and_totals(book: Book) -> None:
    response = client_for(book.world.tess).get(f"/teach/cohorts/{book.world.autumn.pk}/gradebook/")
    assert response.status_code == 200
    html = response.content.decode()
    assert 'data-student="fay"' in html
    assert "15.5" in html
    assert "late \u221230%" in html
    assert "override" in html
    assert ">ext<" in html
    assert 'data-student="hal"' not in html


def test_the_query_count_is_bounded(world: World, django_assert_max_num_queries: Any) -> None:
    exercise_version_for(world.hello.exercise)
    assignments = [world.hello]
    for n in range(2):
        exercise = make_exercise(f"extra-{n}", f"Extra {n}", "extra")
        exercise_version_for(exercise)
        assignments.append(
            assignment_set(
                cohort=world.autumn,
                exercise=exercise,
                opens_at=DUE - DAY,
                due_at=DUE,
                closes_at=DUE + DAY,
            )
        )
    for i in range(10):
        student = student_in(world.autumn, f"student{i}")
        for assignment in assignments:
            attempt_at(student, assignment, DUE + i * HOUR, score=i)
            Extension.objects.create(
                assignment=assignment, student=student, due_at=DUE, closes_at=DUE + 2 * DAY
            )
            grade_override_set(
                assignment=assignment,
                student=student,
                score=Decimal(1),
                reason="r",
                actor=world.tess,
            )
    with django_assert_max_num_queries(6):
        gradebook = gradebook_for_cohort(cohort=world.autumn)
        assert len(gradebook.rows) == 11
        students = [row for row in gradebook.rows if row.student != world.alice]
        assert all(c.final_score == 1 and c.extended for row in students for c in row.cells)
