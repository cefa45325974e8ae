"""Helpers of the grading tests: students, a TA, attempts made at a given moment."""

from __future__ import annotations

from datetime import datetime

from exercises.models import Attempt, AttemptKind, AttemptStatus, SubmittedFiles
from labplatform.accounts.models import User
from labplatform.courses.models import Assignment, Cohort, Role
from labplatform.courses.services import enrolment_set
from tests.conftest import exercise_version_for, make_user


def student_in(cohort: Cohort, username: str, first: str = "", last: str = "") -> User:
    user = make_user(username, first_name=first, last_name=last)
    enrolment_set(user=user, cohort=cohort, role=Role.STUDENT)
    return user


def ta_in(cohort: Cohort, username: str = "tina") -> User:
    user = make_user(username)
    enrolment_set(user=user, cohort=cohort, role=Role.TA)
    return user


def stored_files(student: User, assignment: Assignment) -> SubmittedFiles:
    return SubmittedFiles.objects.create(
        student=student,
        exercise=assignment.exercise,
        archive=b"",
        sha256="0" * 64,
        size=0,
        listing=[],
    )


def attempt_at(
    student: User,
    assignment: Assignment,
    at: datetime,
    *,
    score: int = 0,
    status: AttemptStatus = AttemptStatus.GRADED,
    kind: AttemptKind = AttemptKind.SUBMIT,
    regrade_of: Attempt | None = None,
    files: bool = False,
) -> Attempt:
    """A finished attempt clicked at `at`, graded with the exercise's
    current version (max 10 unless the version says otherwise)."""
    exercise = assignment.exercise
    version = exercise.current_version or exercise_version_for(exercise)
    return Attempt.objects.create(
        student=student,
        assignment=assignment,
        exercise=exercise,
        version=version,
        kind=kind,
        status=status,
        score=score,
        max_score=version.parsed_manifest.max_score(
            "submit" if kind == AttemptKind.SUBMIT else "check"
        ),
        created_at=at,
        regrade_of=regrade_of,
        files=stored_files(student, assignment) if files else None,
    )
