"""Writes of grading: assignments and their late policy, extensions, grade
overrides and regrade jobs. Each change is one entry in the cohort's audit
log; a refusal is a GradesRefused with the sentence the instructor sees."""

from __future__ import annotations

import logging
from datetime import datetime
from decimal import Decimal

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from exercises.errors import AttemptRefused
from exercises.models import Attempt, AttemptKind, Exercise
from exercises.services import attempt_regrade
from labplatform.accounts.models import User
from labplatform.courses.audit import audit_record
from labplatform.courses.grades.gradebook import cell_of
from labplatform.courses.models import (
    Assignment,
    Cohort,
    Extension,
    GradeOverride,
    LatePer,
    RegradeJob,
    RegradeJobStatus,
    RegradeScope,
)
from labplatform.courses.services import assignment_set

log = logging.getLogger(__name__)


class GradesRefused(Exception):
    """A change the platform will not make; `field` names the form field at
    fault (None: the whole form), `message` says why, to a person."""

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field


def _iso(moment: datetime) -> str:
    return moment.isoformat()


# --- assignments ----------------------------------------------------------------


@transaction.atomic
def assignment_save(
    *,
    cohort: Cohort,
    exercise: Exercise,
    opens_at: datetime,
    due_at: datetime,
    closes_at: datetime,
    late_penalty_percent: Decimal,
    late_penalty_per: LatePer,
    late_floor_percent: Decimal,
    actor: User,
) -> Assignment:
    """Create or change the cohort's assignment of `exercise`, with the audit entry."""
    created = not Assignment.objects.filter(cohort=cohort, exercise=exercise).exists()
    assignment = assignment_set(
        cohort=cohort,
        exercise=exercise,
        opens_at=opens_at,
        due_at=due_at,
        closes_at=closes_at,
        late_penalty_percent=late_penalty_percent,
        late_penalty_per=late_penalty_per,
        late_floor_percent=late_floor_percent,
    )
    verb = "Assigned" if created else "Changed the assignment of"
    audit_record(
        cohort=cohort,
        actor=actor,
        action="assignment.create" if created else "assignment.edit",
        summary=f"{verb} {exercise.title} (due {due_at:%Y-%m-%d %H:%M %Z})",
        detail={
            "assignment": assignment.pk,
            "exercise": exercise.slug,
            "opens_at": _iso(opens_at),
            "due_at": _iso(due_at),
            "closes_at": _iso(closes_at),
            "late_penalty_percent": str(late_penalty_percent),
            "late_penalty_per": str(late_penalty_per),
            "late_floor_percent": str(late_floor_percent),
        },
    )
    return assignment


# --- extensions -----------------------------------------------------------------


@transaction.atomic
def extension_grant(
    *,
    assignment: Assignment,
    student: User,
    due_at: datetime,
    closes_at: datetime,
    reason: str,
    actor: User,
) -> Extension:
    """Give the student their own due date and hard close (it may reach past
    the assignment's); granting again changes the extension."""
    if due_at > closes_at:
        raise GradesRefused(
            "dates_out_of_order", "The new due date must not be after the new close.", "closes_at"
        )
    if due_at < assignment.opens_at:
        raise GradesRefused(
            "before_open", "The new due date must not be before the assignment opens.", "due_at"
        )
    extension, created = Extension.objects.update_or_create(
        assignment=assignment,
        student=student,
        defaults={
            "due_at": due_at,
            "closes_at": closes_at,
            "reason": reason,
            "granted_by": actor,
            "granted_at": timezone.now(),
        },
    )
    audit_record(
        cohort=assignment.cohort,
        actor=actor,
        action="extension.grant" if created else "extension.change",
        summary=(
            f"{'Granted' if created else 'Changed'} {student.username} an extension of "
            f"{assignment.exercise.title} to {due_at:%Y-%m-%d %H:%M %Z}"
        ),
        detail={
            "assignment": assignment.pk,
            "student": student.pk,
            "due_at": _iso(due_at),
            "closes_at": _iso(closes_at),
            "reason": reason,
        },
    )
    return extension


@transaction.atomic
def extension_revoke(*, extension: Extension, actor: User) -> None:
    assignment, student = extension.assignment, extension.student
    extension.delete()
    audit_record(
        cohort=assignment.cohort,
        actor=actor,
        action="extension.revoke",
        summary=f"Revoked {student.username}'s extension of {assignment.exercise.title}",
        detail={"assignment": assignment.pk, "student": student.pk},
    )


# --- grade overrides ------------------------------------------------------------


@transaction.atomic
def grade_override_set(
    *,
    assignment: Assignment,
    student: User,
    score: Decimal | None,
    reason: str,
    actor: User,
) -> GradeOverride:
    """Set the student's grade on the assignment to `score` (None: clear the
    override, the counted Submit's score applies again). A new row each
    time: the rows are the history."""
    reason = reason.strip()
    if not reason:
        raise GradesRefused("reason_required", "Say why the grade changes.", "reason")
    cell = cell_of(cohort=assignment.cohort, assignment=assignment, student_id=student.pk)
    if cell is None:
        raise GradesRefused("not_a_student", f"{student.username} is no student of this cohort.")
    if score is not None and not Decimal(0) <= score <= cell.max_score:
        raise GradesRefused(
            "score_out_of_range", f"The score must be between 0 and {cell.max_score}.", "score"
        )
    override = GradeOverride.objects.create(
        assignment=assignment, student=student, score=score, reason=reason, created_by=actor
    )
    what = "cleared the override" if score is None else f"set the grade to {score}"
    audit_record(
        cohort=assignment.cohort,
        actor=actor,
        action="grade.override_clear" if score is None else "grade.override",
        summary=f"On {assignment.exercise.title} for {student.username}: {what} ({reason})",
        detail={
            "assignment": assignment.pk,
            "student": student.pk,
            "score": None if score is None else str(score),
            "previous": None if cell.final_score is None else str(cell.final_score),
            "reason": reason,
        },
    )
    return override


# --- regrades -------------------------------------------------------------------


def regrade_targets(*, job: RegradeJob) -> list[Attempt]:
    """The Submits a job grades again: the attempt itself, or each student's
    counted Submit that has stored files. A counted regrade stands for its
    original, so a retried job finds the same list after its regrades finished."""
    if job.scope == RegradeScope.ATTEMPT:
        assert job.attempt is not None
        return [job.attempt]
    students = [job.student_id] if job.scope == RegradeScope.STUDENT and job.student_id else None
    from labplatform.courses.grades.gradebook import gradebook_for_cohort

    book = gradebook_for_cohort(cohort=job.assignment.cohort, students=students)
    targets = []
    for row in book.rows:
        for cell in row.cells:
            if cell.assignment.pk != job.assignment_id or cell.attempt is None:
                continue
            original = cell.attempt
            while original.regrade_of_id is not None:
                original = Attempt.objects.get(pk=original.regrade_of_id)
            if original.files_id is not None:
                targets.append(original)
    return targets


@transaction.atomic
def regrade_job_start(
    *,
    assignment: Assignment,
    scope: RegradeScope,
    actor: User,
    student: User | None = None,
    attempt: Attempt | None = None,
) -> RegradeJob:
    """Queue a regrade (of one Submit, a student's counted Submit, or every
    student's) from the stored files; the task runs after commit."""
    from labplatform.courses.grades import tasks

    if attempt is not None and (attempt.kind != AttemptKind.SUBMIT or attempt.files_id is None):
        raise GradesRefused("not_regradable", "Only a Submit with stored files can be regraded.")
    job = RegradeJob.objects.create(
        assignment=assignment, scope=scope, student=student, attempt=attempt, created_by=actor
    )
    whom = {
        RegradeScope.ATTEMPT: f"attempt #{attempt.pk if attempt else ''}",
        RegradeScope.STUDENT: f"{student.username if student else ''}'s counted Submit",
        RegradeScope.ASSIGNMENT: "every student's counted Submit",
    }[scope]
    audit_record(
        cohort=assignment.cohort,
        actor=actor,
        action="regrade.start",
        summary=f"Started a regrade of {whom} on {assignment.exercise.title}",
        detail={
            "job": job.pk,
            "scope": str(scope),
            "assignment": assignment.pk,
            "student": student.pk if student else None,
            "attempt": attempt.pk if attempt else None,
        },
    )
    job_id = job.pk
    transaction.on_commit(lambda: tasks.regrade_run.delay(job_id))
    return job


def regrade_job_run(*, job_id: int) -> RegradeJob | None:
    """Run a job: regrade each target it has not regraded yet (a retried
    task resumes), counting progress, then mark it done, or failed with the
    reasons of the Submits it could not regrade. A finished job is left alone."""
    claimed = RegradeJob.objects.filter(
        pk=job_id, status__in=(RegradeJobStatus.QUEUED, RegradeJobStatus.RUNNING)
    ).update(status=RegradeJobStatus.RUNNING)
    if not claimed:
        return None
    job = RegradeJob.objects.select_related("assignment__cohort", "attempt").get(pk=job_id)
    errors: list[str] = []
    try:
        targets = regrade_targets(job=job)
        RegradeJob.objects.filter(pk=job_id).update(total=len(targets), done=0)
        for target in targets:
            errors += _regrade_one(job=job, target=target)
    except Exception as exc:
        log.exception("regrade job %s failed", job_id)
        errors.append(f"{type(exc).__name__}: {exc}")
    RegradeJob.objects.filter(pk=job_id, status=RegradeJobStatus.RUNNING).update(
        status=RegradeJobStatus.FAILED if errors else RegradeJobStatus.DONE,
        error="\n".join(errors),
        finished_at=timezone.now(),
    )
    job.refresh_from_db()
    return job


def _regrade_one(*, job: RegradeJob, target: Attempt) -> list[str]:
    """Regrade one Submit for the job unless it did already; the new attempt
    and the progress commit together. Returns the refusal, if any."""
    with transaction.atomic():
        RegradeJob.objects.filter(pk=job.pk).update(done=F("done") + 1)
        if job.regrades.filter(regrade_of=target).exists():
            return []
        try:
            regrade = attempt_regrade(attempt=target)
        except AttemptRefused as exc:
            return [f"attempt #{target.pk}: {exc.message}"]
        job.regrades.add(regrade)
    return []
