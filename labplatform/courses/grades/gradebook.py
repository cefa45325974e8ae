"""A cohort's gradebook: each student's final score per assignment.

One rule for every place that shows a grade (the gradebook page, its CSV and
JSON, the API, a student's drill-down): the counted Submit
(exercises.selectors.submit_counted, judged by the student's own window),
minus the late policy's penalty (labplatform.courses.deadlines), unless an
instructor's override applies. A bounded number of queries whatever the
cohort's size: attempts, extensions and overrides are fetched per cohort.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from functools import cached_property

from exercises.models import Attempt, AttemptKind
from exercises.selectors import COUNTED_STATUSES, submit_counted
from labplatform.accounts.models import User
from labplatform.courses.deadlines import (
    CENT,
    late_penalty,
    late_units,
    score_after_penalty,
    window_from,
)
from labplatform.courses.models import (
    Assignment,
    Cohort,
    Enrolment,
    Extension,
    GradeOverride,
    LatePer,
    Role,
)


@dataclass(frozen=True)
class Cell:
    assignment: Assignment
    student_id: int
    attempt: Attempt | None  # the counted Submit, None if none
    raw_score: int | None  # attempt.score
    max_score: int
    late_units: int  # days or hours late (0 on time), per the policy and the student's window
    penalty_percent: Decimal  # what the late policy took (respecting the floor)
    override: GradeOverride | None  # the newest override row if its score is not None
    final_score: Decimal | None  # override if any, else raw after penalty; None = nothing counted
    extended: bool  # the student has an extension

    @property
    def is_late(self) -> bool:
        return self.late_units > 0

    @property
    def cleared(self) -> bool:
        """An override was set, then cleared: the counted Submit applies again."""
        return self.override is None and bool(self.history)

    @cached_property
    def history(self) -> list[GradeOverride]:
        """Every override of this grade, newest first (one query, when asked)."""
        return override_history(assignment=self.assignment, student_id=self.student_id)


@dataclass(frozen=True)
class Row:
    student: User
    cells: list[Cell]  # in assignment order
    total: Decimal
    student_number: str = ""  # the university's id, from the roster (Enrolment)


@dataclass(frozen=True)
class Gradebook:
    cohort: Cohort
    assignments: list[Assignment]  # ordered by due_at, id
    rows: list[Row]  # current students by last name, first name, username


def cell_for(
    *,
    assignment: Assignment,
    student_id: int,
    submits: Iterable[Attempt],
    extension: Extension | None,
    overrides: Iterable[GradeOverride],
    cohort: Cohort,
) -> Cell:
    """One student's grade on one assignment from their rows, already fetched
    (`overrides` newest first)."""
    window = window_from(assignment=assignment, extension=extension)
    attempt = submit_counted(submits=submits, window=window)
    newest = next(iter(overrides), None)
    override = newest if newest is not None and newest.score is not None else None
    units, penalty, final = 0, Decimal(0), None
    if attempt is not None:
        units = late_units(
            due_at=window.due_at,
            submitted_at=attempt.created_at,
            per=LatePer(assignment.late_penalty_per),
            tz=cohort.tzinfo,
        )
        penalty = late_penalty(assignment=assignment, units=units)
        final = score_after_penalty(raw=attempt.score, penalty_percent=penalty)
    if override is not None:
        final = override.score
    return Cell(
        assignment=assignment,
        student_id=student_id,
        attempt=attempt,
        raw_score=attempt.score if attempt is not None else None,
        max_score=attempt.max_score if attempt is not None else assignment.exercise.points,
        late_units=units,
        penalty_percent=penalty,
        override=override,
        final_score=final,
        extended=extension is not None,
    )


def gradebook_for_cohort(*, cohort: Cohort, students: Iterable[int] | None = None) -> Gradebook:
    """The cohort's current students (optionally only those ids) by its
    assignments."""
    assignments = list(
        Assignment.objects.filter(cohort=cohort).select_related("exercise").order_by("due_at", "id")
    )
    enrolments = Enrolment.objects.filter(cohort=cohort, role=Role.STUDENT).select_related("user")
    if students is not None:
        enrolments = enrolments.filter(user_id__in=list(students))
    ordered = list(enrolments.order_by("user__last_name", "user__first_name", "user__username"))
    users = [e.user for e in ordered]
    numbers = {e.user_id: e.student_number for e in ordered}
    user_ids = [u.pk for u in users]
    assignment_ids = [a.pk for a in assignments]

    submits: dict[tuple[int, int], list[Attempt]] = defaultdict(list)
    for attempt in Attempt.objects.filter(
        assignment_id__in=assignment_ids,
        student_id__in=user_ids,
        kind=AttemptKind.SUBMIT,
        status__in=COUNTED_STATUSES,
        is_preview=False,
    ).defer("kernel_log", "console_tail", "reason"):
        assert attempt.assignment_id is not None
        submits[attempt.assignment_id, attempt.student_id].append(attempt)
    extensions = {
        (e.assignment_id, e.student_id): e
        for e in Extension.objects.filter(assignment_id__in=assignment_ids, student_id__in=user_ids)
    }
    overrides: dict[tuple[int, int], list[GradeOverride]] = defaultdict(list)
    for override in (
        GradeOverride.objects.filter(assignment_id__in=assignment_ids, student_id__in=user_ids)
        .select_related("created_by")
        .order_by("-created_at", "-id")
    ):
        overrides[override.assignment_id, override.student_id].append(override)

    rows = []
    for user in users:
        cells = [
            cell_for(
                assignment=assignment,
                student_id=user.pk,
                submits=submits[assignment.pk, user.pk],
                extension=extensions.get((assignment.pk, user.pk)),
                overrides=overrides[assignment.pk, user.pk],
                cohort=cohort,
            )
            for assignment in assignments
        ]
        total = sum((c.final_score for c in cells if c.final_score is not None), Decimal(0))
        rows.append(Row(student=user, cells=cells, total=total, student_number=numbers[user.pk]))
    return Gradebook(cohort=cohort, assignments=assignments, rows=rows)


def cell_of(*, cohort: Cohort, assignment: Assignment, student_id: int) -> Cell | None:
    """One cell of the gradebook (None when the user is no current student)."""
    book = gradebook_for_cohort(cohort=cohort, students=[student_id])
    if not book.rows:
        return None
    return next(c for c in book.rows[0].cells if c.assignment.pk == assignment.pk)


def override_history(*, assignment: Assignment, student_id: int) -> list[GradeOverride]:
    """Every override of the student's grade on the assignment, newest first."""
    return list(
        GradeOverride.objects.filter(assignment=assignment, student_id=student_id)
        .select_related("created_by")
        .order_by("-created_at", "-id")
    )


def score_text(score: Decimal | float | None) -> str:
    """A score as a plain number for exports: dot decimal, no trailing zeros
    ("54.5", "60"); "" for nothing counted."""
    if score is None:
        return ""
    value = Decimal(str(score)).quantize(CENT)
    text = f"{value:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def column_title(assignment: Assignment) -> str:
    return f"{assignment.exercise.title} [{assignment.exercise.slug}]"


def spreadsheet_text(value: str) -> str:
    """Text a spreadsheet will not run as a formula."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def gradebook_csv_rows(book: Gradebook) -> list[list[str]]:
    header = ["Username", "Email", "Last name", "First name", "Student ID"]
    rows = [[*header, *(column_title(a) for a in book.assignments), "Total"]]
    for row in book.rows:
        student = row.student
        rows.append(
            [
                spreadsheet_text(student.username),
                spreadsheet_text(student.email),
                spreadsheet_text(student.last_name),
                spreadsheet_text(student.first_name),
                spreadsheet_text(row.student_number),
                *(score_text(cell.final_score) for cell in row.cells),
                score_text(row.total),
            ]
        )
    return rows


def gradebook_csv_text(book: Gradebook) -> str:
    """The gradebook as CSV, for the page's download and the API alike: one
    row per student, one column per assignment with the final score (empty:
    nothing counted), then the total."""
    out = io.StringIO()
    csv.writer(out).writerows(gradebook_csv_rows(book))
    return out.getvalue()
