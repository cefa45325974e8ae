"""Writes of course data."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from django.db import transaction

from exercises.models import Exercise
from labplatform.accounts.models import User
from labplatform.courses.models import Assignment, Cohort, Enrolment, LatePer, Role


def enrolment_set(*, user: User, cohort: Cohort, role: Role) -> Enrolment:
    enrolment, _ = Enrolment.objects.update_or_create(
        user=user, cohort=cohort, defaults={"role": role}
    )
    return enrolment


@transaction.atomic
def assignment_set(
    *,
    cohort: Cohort,
    exercise: Exercise,
    opens_at: datetime,
    due_at: datetime,
    closes_at: datetime,
    late_penalty_percent: Decimal | None = None,
    late_penalty_per: LatePer | None = None,
    late_floor_percent: Decimal | None = None,
) -> Assignment:
    """Set the exercise for the cohort with these dates (and late policy:
    the fields given replace the stored ones)."""
    defaults: dict[str, object] = {"opens_at": opens_at, "due_at": due_at, "closes_at": closes_at}
    policy = {
        "late_penalty_percent": late_penalty_percent,
        "late_penalty_per": late_penalty_per,
        "late_floor_percent": late_floor_percent,
    }
    defaults.update({name: value for name, value in policy.items() if value is not None})
    assignment, _ = Assignment.objects.update_or_create(
        cohort=cohort, exercise=exercise, defaults=defaults
    )
    assignment.full_clean()
    return assignment
