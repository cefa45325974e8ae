"""Writes of course data."""

from __future__ import annotations

from datetime import datetime

from django.db import transaction

from exercises.models import Exercise
from labplatform.accounts.models import User
from labplatform.courses.models import Assignment, Cohort, Enrolment, Role


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
) -> Assignment:
    assignment, _ = Assignment.objects.update_or_create(
        cohort=cohort,
        exercise=exercise,
        defaults={"opens_at": opens_at, "due_at": due_at, "closes_at": closes_at},
    )
    assignment.full_clean()
    return assignment
