"""Reads for the progress board and the student drill-down.

The board is the gradebook (scores after late policy and overrides, from
labplatform.courses.grades.gradebook) plus what the student is doing now:
their attempts and their lab VM per assignment. Its queries are bounded: a
fixed number whatever the cohort's size.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from django.db.models import Count, Q
from django.http import Http404

from exercises.models import ATTEMPT_OPEN_STATUSES, Attempt, AttemptKind
from labplatform.accounts.models import User
from labplatform.courses.grades.gradebook import Cell, gradebook_for_cohort
from labplatform.courses.models import Assignment, Cohort, Enrolment, Role
from vms.models import ConsoleMode, LabVM, VMKind, VMState


class CellState(enum.StrEnum):
    NOT_STARTED = "not_started"
    WORKING = "working"
    PASSED = "passed"
    FAILED = "failed"

    @property
    def label(self) -> str:
        return self.value.replace("_", " ").capitalize()


@dataclass(frozen=True)
class Activity:
    """What a student did on one assignment besides the counted Submit."""

    attempts: int = 0  # Checks and Submits, previews excluded
    open_attempts: int = 0  # queued or being graded


@dataclass(frozen=True)
class BoardCell:
    grade: Cell
    state: CellState
    activity: Activity
    vm: LabVM | None  # the student's live lab VM for the exercise

    @property
    def vm_running(self) -> bool:
        return self.vm is not None and self.vm.state == VMState.RUNNING

    @property
    def grading(self) -> bool:
        return self.activity.open_attempts > 0


@dataclass(frozen=True)
class BoardRow:
    student: User
    cells: list[BoardCell]
    total: Decimal


@dataclass(frozen=True)
class Board:
    cohort: Cohort
    assignments: list[Assignment]
    rows: list[BoardRow]

    @property
    def max_total(self) -> int:
        return sum(a.exercise.points for a in self.assignments)


def cell_state(*, grade: Cell, activity: Activity, vm: LabVM | None) -> CellState:
    """Passed: the counted Submit has full marks, or the final score (after
    an override) is the maximum. Failed: graded (a counted Submit, or an
    override) below the maximum. Working: nothing counted yet, but a lab VM
    exists, a Check or Submit was made, or one is being graded. Else not
    started."""
    counted = grade.attempt
    full_marks = (
        counted is not None and counted.max_score > 0 and counted.score >= counted.max_score
    )
    final = grade.final_score
    at_max = final is not None and grade.max_score > 0 and final >= grade.max_score
    if full_marks or (grade.override is not None and at_max):
        return CellState.PASSED
    if counted is not None or grade.override is not None:
        return CellState.FAILED
    if vm is not None or activity.attempts or activity.open_attempts:
        return CellState.WORKING
    return CellState.NOT_STARTED


def _activity(
    *, assignments: Iterable[Assignment], student_ids: Iterable[int]
) -> dict[tuple[int, int], Activity]:
    rows = (
        Attempt.objects.filter(
            assignment__in=list(assignments),
            student_id__in=list(student_ids),
            is_preview=False,
            kind__in=(AttemptKind.CHECK, AttemptKind.SUBMIT),
        )
        .values("student_id", "assignment_id")
        .annotate(
            attempts=Count("id"),
            open_attempts=Count("id", filter=Q(status__in=ATTEMPT_OPEN_STATUSES)),
        )
    )
    return {
        (row["student_id"], row["assignment_id"]): Activity(row["attempts"], row["open_attempts"])
        for row in rows
    }


def _live_vms(
    *, assignments: Iterable[Assignment], student_ids: Iterable[int]
) -> dict[tuple[int, int], LabVM]:
    """The students' live lab VMs, keyed by (student, exercise); the newest wins."""
    vms = (
        LabVM.objects.live()
        .filter(
            kind=VMKind.LAB,
            owner_id__in=list(student_ids),
            exercise_id__in=[a.exercise_id for a in assignments],
        )
        .only("id", "owner_id", "exercise_id", "state", "created_at")
        .order_by("created_at")
    )
    return {(vm.owner_id, vm.exercise_id): vm for vm in vms}


def board_for_cohort(
    *, cohort: Cohort, student_id: int | None = None, assignment_id: int | None = None
) -> Board:
    """The progress board: every student of the cohort by every assignment,
    or just one student's row / one assignment's column when asked."""
    students = None if student_id is None else [student_id]
    gradebook = gradebook_for_cohort(cohort=cohort, students=students)
    assignments = [
        a for a in gradebook.assignments if assignment_id is None or a.pk == assignment_id
    ]
    grade_rows = gradebook.rows
    student_ids = [r.student.pk for r in grade_rows]
    activity = _activity(assignments=assignments, student_ids=student_ids)
    vms = _live_vms(assignments=assignments, student_ids=student_ids)
    wanted = {a.pk for a in assignments}
    rows = []
    for grade_row in grade_rows:
        cells = []
        for grade in grade_row.cells:
            if grade.assignment.pk not in wanted:
                continue
            key = (grade_row.student.pk, grade.assignment.pk)
            vm = vms.get((grade_row.student.pk, grade.assignment.exercise_id))
            work = activity.get(key, Activity())
            cells.append(
                BoardCell(
                    grade=grade,
                    state=cell_state(grade=grade, activity=work, vm=vm),
                    activity=work,
                    vm=vm,
                )
            )
        rows.append(BoardRow(student=grade_row.student, cells=cells, total=grade_row.total))
    return Board(cohort=cohort, assignments=assignments, rows=rows)


def board_cell_get(
    *, cohort: Cohort, student_id: int, assignment_id: int
) -> tuple[BoardRow, BoardCell]:
    """One student's row (for its total) and one cell of it; Http404 when the
    student or the assignment is not the cohort's."""
    board = board_for_cohort(cohort=cohort, student_id=student_id, assignment_id=assignment_id)
    if not board.rows or not board.rows[0].cells:
        raise Http404("No such cell")
    return board.rows[0], board.rows[0].cells[0]


# --- The drill-down ------------------------------------------------------------


def cohort_student_get(*, cohort: Cohort, student_id: object) -> User:
    """A student of the cohort, or one who was (they have attempts on its
    assignments); Http404 for anyone else."""
    try:
        pk = int(str(student_id))
    except ValueError:
        raise Http404("No such student") from None
    enrolled = Enrolment.objects.filter(cohort=cohort, role=Role.STUDENT, user_id=pk)
    worked = Attempt.objects.filter(assignment__cohort=cohort, student_id=pk, is_preview=False)
    student = User.objects.filter(pk=pk).first()
    if student is None or not (enrolled.exists() or worked.exists()):
        raise Http404("No such student")
    return student


@dataclass(frozen=True)
class AssignmentWork:
    assignment: Assignment
    attempts: list[Attempt]  # newest first
    cell: BoardCell | None  # None for a former student (no gradebook row)
    recorded_vms: list[LabVM]  # the student's lab VMs of the exercise with recordings


def student_work_for(*, cohort: Cohort, student: User) -> list[AssignmentWork]:
    """Per assignment of the cohort: the student's attempts, newest first,
    with their checks (hidden ones too), files, comments and regrade links."""
    board = board_for_cohort(cohort=cohort, student_id=student.pk)
    cells = {c.grade.assignment.pk: c for row in board.rows for c in row.cells}
    assignments = list(
        Assignment.objects.filter(cohort=cohort).select_related("exercise").order_by("due_at")
    )
    attempts = (
        Attempt.objects.filter(assignment__cohort=cohort, student=student, is_preview=False)
        .select_related("student", "files", "regrade_of", "vm")
        .defer("files__archive")
        .prefetch_related("results", "comments__author", "regrades")
        .order_by("-created_at", "-id")
    )
    by_assignment: dict[int, list[Attempt]] = {}
    for attempt in attempts:
        assert attempt.assignment_id is not None
        by_assignment.setdefault(attempt.assignment_id, []).append(attempt)
    recorded = (
        LabVM.objects.filter(
            kind=VMKind.LAB, owner=student, exercise_id__in=[a.exercise_id for a in assignments]
        )
        .annotate(
            recordings=Count(
                "console_sessions",
                filter=Q(console_sessions__mode=ConsoleMode.READ_WRITE)
                & ~Q(console_sessions__recording=""),
            )
        )
        .filter(recordings__gt=0)
        .order_by("-created_at")
    )
    vms_by_exercise: dict[int, list[LabVM]] = {}
    for vm in recorded:
        vms_by_exercise.setdefault(vm.exercise_id, []).append(vm)
    return [
        AssignmentWork(
            assignment=a,
            attempts=by_assignment.get(a.pk, []),
            cell=cells.get(a.pk),
            recorded_vms=vms_by_exercise.get(a.exercise_id, []),
        )
        for a in assignments
    ]
