"""Reads of attempts, scoped to the user asking: other people's attempts are 404."""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import QuerySet
from django.http import Http404

from exercises.models import Attempt, AttemptKind, AttemptStatus, Exercise, SubmittedFiles
from labplatform.accounts.models import User
from labplatform.courses.deadlines import Window, window_for
from labplatform.courses.models import Assignment
from labplatform.courses.selectors import user_teaches_student


def attempts_for_student(*, user: User, exercise: Exercise) -> QuerySet[Attempt]:
    """The student's Checks and Submits of this exercise, newest first, with
    their per-check results."""
    return (
        Attempt.objects.filter(student=user, exercise=exercise)
        .order_by("-created_at", "-id")
        .prefetch_related("results")
    )


def attempt_get_for_viewer(*, user: User, attempt_id: int) -> Attempt:
    """The attempt, for its student or an instructor of the cohort it was made
    in; Http404 for anyone else (a stranger cannot tell "exists" from "not yours")."""
    attempt = (
        Attempt.objects.select_related("exercise", "assignment__cohort__course", "student", "files")
        .defer("files__archive")
        .prefetch_related("results")
        .filter(pk=attempt_id)
        .first()
    )
    if attempt is None or not user.is_active:
        raise Http404("No such attempt")
    if attempt.student_id == user.pk:
        return attempt
    if user_teaches_student(user=user, student_id=attempt.student_id, cohort_id=_cohort(attempt)):
        return attempt
    raise Http404("No such attempt")


def attempt_get_for_instructor(*, user: User, attempt_id: int) -> Attempt:
    """The attempt, for an instructor of the cohort it was made in (not for
    its student: a student cannot regrade their own work); Http404 otherwise."""
    attempt = attempt_get_for_viewer(user=user, attempt_id=attempt_id)
    if attempt.student_id == user.pk:
        raise Http404("No such attempt")
    return attempt


def attempt_files(*, attempt: Attempt) -> SubmittedFiles:
    """The files stored with an attempt the caller may already see; 404 if none."""
    if attempt.files_id is None:
        raise Http404("No files were stored with this attempt")
    return SubmittedFiles.objects.get(pk=attempt.files_id)


def _cohort(attempt: Attempt) -> int | None:
    return attempt.assignment.cohort_id if attempt.assignment is not None else None


COUNTED_STATUSES = (AttemptStatus.GRADED, AttemptStatus.KERNEL_CRASHED)


def attempt_result_counted(*, user: User, assignment: Assignment) -> Attempt | None:
    """The submission that counts for this assignment: the student's latest
    Graded Submit made on time (created at or before their due moment, as it
    is now: a deadline moved later, or an extension, makes earlier late
    submissions count). Only when there is none, their latest Graded late
    Submit (before their hard close; the late policy takes its penalty,
    labplatform.courses.deadlines). Checks never count, nor do submissions
    that were not graded (a checker failure, a time-out, our error: the
    student submits again), nor a staff preview. A Submit whose kernel
    crashed is a result of the student's work, like a graded one: it counts,
    with the points of whatever it reached (none). A finished regrade keeps
    its original's click and, made later, is the latest of that moment.
    """
    submits = Attempt.objects.filter(
        student=user,
        assignment=assignment,
        kind=AttemptKind.SUBMIT,
        status__in=COUNTED_STATUSES,
        is_preview=False,
    ).order_by("-created_at", "-id")
    return submit_counted(submits=submits, window=window_for(assignment=assignment, student=user))


def submit_counted(*, submits: Iterable[Attempt], window: Window) -> Attempt | None:
    """attempt_result_counted's rule over one student's Submits of one
    assignment already fetched (the gradebook fetches a cohort's at once)."""
    candidates = sorted(
        (
            a
            for a in submits
            if a.kind == AttemptKind.SUBMIT
            and a.status in COUNTED_STATUSES
            and not a.is_preview
            and a.created_at <= window.closes_at
        ),
        key=lambda a: (a.created_at, a.pk),
        reverse=True,
    )
    on_time = next((a for a in candidates if a.created_at <= window.due_at), None)
    return on_time if on_time is not None else next(iter(candidates), None)
