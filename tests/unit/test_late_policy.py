"""The late policy at its boundaries: exactly at due, one second after, whole
local days across the clock changes of the cohort's zone, hours of elapsed
time, the floor; an extension moves due and close (past the hard close too)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from unittest import mock
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone

from exercises.errors import AttemptRefused
from exercises.models import AttemptKind, AttemptStatus
from exercises.services import attempt_submit_files, attempt_transition
from labplatform.courses.deadlines import (
    late_penalty,
    late_policy_summary,
    late_units,
    score_after_penalty,
    window_for,
)
from labplatform.courses.grades.gradebook import gradebook_for_cohort
from labplatform.courses.models import Assignment, Extension, LatePer
from tests.conftest import World, exercise_version_for
from tests.support.api import tar_gz

PARIS = ZoneInfo("Europe/Paris")
SECOND = timedelta(seconds=1)


def paris(year: int, month: int, day: int, hour: int, minute: int) -> datetime:
    """A Paris wall-clock moment, in UTC as the database gives it (arithmetic
    on datetimes sharing a ZoneInfo is wall-clock, not elapsed time)."""
    return datetime(year, month, day, hour, minute, tzinfo=PARIS).astimezone(UTC)


def days_late(due: datetime, submitted: datetime) -> int:
    return late_units(due_at=due, submitted_at=submitted, per=LatePer.DAY, tz=PARIS)


def hours_late(due: datetime, submitted: datetime) -> int:
    return late_units(due_at=due, submitted_at=submitted, per=LatePer.HOUR, tz=PARIS)


def test_exactly_at_due_is_on_time() -> None:
    due = paris(2026, 5, 4, 23, 59)
    assert days_late(due, due) == 0
    assert hours_late(due, due) == 0
    assert days_late(due, due - SECOND) == 0


def test_one_second_after_due_is_one_unit_late() -> None:
    due = paris(2026, 5, 4, 23, 59)
    assert days_late(due, due + SECOND) == 1
    assert hours_late(due, due + SECOND) == 1


def test_a_day_ends_at_the_same_local_time() -> None:
    due = paris(2026, 5, 4, 12, 0)
    assert days_late(due, due + timedelta(days=1)) == 1
    assert days_late(due, due + timedelta(days=1) + SECOND) == 2
    assert days_late(due, due + timedelta(days=3)) == 3


def test_the_25_hour_day_of_october_counts_as_one() -> None:
    # Clocks go back on Sunday 25 October 2026 at 03:00 CEST: that day has 25 hours.
    due = paris(2026, 10, 24, 12, 0)
    one_day_later = paris(2026, 10, 25, 12, 0)
    assert one_day_later - due == timedelta(hours=25)
    assert days_late(due, one_day_later) == 1
    assert days_late(due, due + timedelta(hours=24, minutes=30)) == 1  # 11:30 local on Sunday
    assert days_late(due, one_day_later + SECOND) == 2
    assert hours_late(due, one_day_later) == 25


def test_the_23_hour_day_of_march_counts_as_one() -> None:
    # Clocks go forward on Sunday 29 March 2026 at 02:00 CET: that day has 23 hours.
    due = paris(2026, 3, 28, 12, 0)
    one_day_later = paris(2026, 3, 29, 12, 0)
    assert one_day_later - due == timedelta(hours=23)
    assert days_late(due, one_day_later) == 1
    assert days_late(due, one_day_later + SECOND) == 2
    assert days_late(due, due + timedelta(hours=24)) == 2  # 13:00 local on Sunday
    assert hours_late(due, due + timedelta(hours=24)) == 24


def test_a_due_moment_given_in_paris_time_counts_the_same() -> None:
    due = datetime(2026, 10, 24, 12, 0, tzinfo=PARIS)
    assert days_late(due, paris(2026, 10, 25, 12, 0)) == 1
    assert days_late(due, paris(2026, 10, 25, 12, 0) + SECOND) == 2


def test_hours_count_elapsed_time() -> None:
    due = paris(2026, 5, 4, 10, 0)
    assert hours_late(due, due + timedelta(hours=1)) == 1
    assert hours_late(due, due + timedelta(hours=1, seconds=1)) == 2
    assert hours_late(due, due + timedelta(minutes=150)) == 3


def policy(percent: str, floor: str, per: LatePer = LatePer.DAY) -> Assignment:
    return Assignment(
        late_penalty_percent=Decimal(percent),
        late_floor_percent=Decimal(floor),
        late_penalty_per=per,
    )


def test_each_started_unit_takes_the_percent() -> None:
    assignment = policy("10", "0")
    assert late_penalty(assignment=assignment, units=0) == Decimal("0.00")
    assert late_penalty(assignment=assignment, units=1) == Decimal("10.00")
    assert late_penalty(assignment=assignment, units=3) == Decimal("30.00")
    assert late_penalty(assignment=assignment, units=20) == Decimal("100.00")


def test_the_floor_keeps_a_share_of_the_score() -> None:
    assignment = policy("25", "40")
    assert late_penalty(assignment=assignment, units=2) == Decimal("50.00")
    assert late_penalty(assignment=assignment, units=3) == Decimal("60.00")
    assert late_penalty(assignment=assignment, units=9) == Decimal("60.00")
    assert score_after_penalty(raw=80, penalty_percent=Decimal(60)) == Decimal("32.00")


def test_scores_are_rounded_half_up_to_cents() -> None:
    assert score_after_penalty(raw=7, penalty_percent=Decimal("33.33")) == Decimal("4.67")
    assert score_after_penalty(raw=1, penalty_percent=Decimal("12.5")) == Decimal("0.88")
    assert score_after_penalty(raw=3, penalty_percent=Decimal("50")) == Decimal("1.50")


def test_the_summary_says_the_rule() -> None:
    assert late_policy_summary(assignment=policy("10", "50", LatePer.HOUR)) == (
        "A late Submit loses 10% of its score per started hour late, keeping at least 50%."
    )
    assert "No late penalty" in late_policy_summary(assignment=policy("0", "0"))


# --- extensions, through the real Submit path ---------------------------------------


@pytest.fixture
def enqueued() -> Any:
    with mock.patch("celery.app.task.Task.apply_async") as apply_async:
        yield apply_async


def submit_now(world: World) -> Any:
    return attempt_submit_files(
        user=world.alice,
        assignment=world.hello,
        raw_archive=tar_gz({"root/work/hello.c": b"int x;\n"}),
    )


def close_for_everyone(world: World) -> None:
    """The assignment's due and hard close are both in the past."""
    now = timezone.now()
    Assignment.objects.filter(pk=world.hello.pk).update(
        opens_at=now - timedelta(days=10),
        due_at=now - timedelta(days=3),
        closes_at=now - timedelta(days=1),
        late_penalty_percent=Decimal(20),
    )
    world.hello.refresh_from_db()


def test_an_extension_past_the_hard_close_accepts_an_on_time_submit(
    world: World, enqueued: Any
) -> None:
    exercise_version_for(world.hello.exercise)
    close_for_everyone(world)
    with pytest.raises(AttemptRefused) as refused:
        submit_now(world)
    assert refused.value.code == AttemptRefused.CLOSED
    now = timezone.now()
    Extension.objects.create(
        assignment=world.hello,
        student=world.alice,
        due_at=now + timedelta(days=1),
        closes_at=now + timedelta(days=2),
    )
    attempt = submit_now(world)
    assert (attempt.kind, attempt.is_late) == (AttemptKind.SUBMIT, False)
    assert attempt_transition(attempt.pk, AttemptStatus.QUEUED, AttemptStatus.GRADED, score=10)
    [row] = gradebook_for_cohort(cohort=world.autumn).rows
    [cell] = row.cells
    assert (cell.attempt, cell.extended, cell.late_units) == (attempt, True, 0)
    assert cell.final_score == Decimal(10)


def test_a_submit_after_the_extended_due_is_late_from_that_due(world: World, enqueued: Any) -> None:
    exercise_version_for(world.hello.exercise)
    close_for_everyone(world)
    now = timezone.now()
    extended_due = now - timedelta(hours=1)
    Extension.objects.create(
        assignment=world.hello,
        student=world.alice,
        due_at=extended_due,
        closes_at=now + timedelta(days=2),
    )
    attempt = submit_now(world)
    assert attempt.is_late
    assert attempt_transition(attempt.pk, AttemptStatus.QUEUED, AttemptStatus.GRADED, score=10)
    [cell] = gradebook_for_cohort(cohort=world.autumn).rows[0].cells
    # One hour after the extended due, three days after the assignment's: 1 day late.
    assert (cell.late_units, cell.penalty_percent) == (1, Decimal("20.00"))
    assert cell.final_score == Decimal("8.00")
    assert window_for(assignment=world.hello, student=world.alice).due_at == extended_due
