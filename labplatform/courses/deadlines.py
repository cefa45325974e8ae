"""When one student's work on an assignment is accepted, and when it is late.

An extension replaces the assignment's due date and hard close for its
student (it may reach past the assignment's hard close); everything that
judges a student's time (Start, Check, Submit, lateness, the gradebook)
asks window_for (or window_from, given the extension already fetched),
never the assignment's own dates.

The late policy (late_penalty):

- A Submit made at or before the student's due moment is on time. One
  second after it, it is one unit late.
- The unit is the assignment's late_penalty_per. An hour is elapsed real
  time: a Submit is n hours late when it is more than n-1 hours and at most
  n hours after due. A day is counted on the cohort's wall clock
  (Cohort.time_zone): n days late means after due + (n-1) local days and at
  or before due + n local days, at the same local time, so a day that has
  23 or 25 hours when the clocks change still counts as one day.
- Each started unit takes late_penalty_percent of the raw score, and the
  Submit always keeps at least late_floor_percent of it.
- Scores are Decimals quantized to 0.01, rounding half up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

from labplatform.accounts.models import User
from labplatform.courses.models import (
    Assignment,
    AssignmentStatus,
    Extension,
    LatePer,
    window_status,
)

CENT = Decimal("0.01")
HUNDRED = Decimal(100)


@dataclass(frozen=True)
class Window:
    opens_at: datetime
    due_at: datetime
    closes_at: datetime
    extended: bool = False

    def status(self, now: datetime | None = None) -> AssignmentStatus:
        return window_status(self.opens_at, self.due_at, self.closes_at, now)


def window_for(*, assignment: Assignment, student: User | int) -> Window:
    student_id = student if isinstance(student, int) else student.pk
    extension = Extension.objects.filter(assignment=assignment, student_id=student_id).first()
    return window_from(assignment=assignment, extension=extension)


def window_from(*, assignment: Assignment, extension: Extension | None) -> Window:
    """The student's window given their extension of this assignment (or None)."""
    if extension is None:
        return Window(assignment.opens_at, assignment.due_at, assignment.closes_at)
    return Window(assignment.opens_at, extension.due_at, extension.closes_at, extended=True)


def quantize(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def late_units(*, due_at: datetime, submitted_at: datetime, per: LatePer, tz: ZoneInfo) -> int:
    """How many started units (hours, or the cohort's local days) after due
    a Submit was made; 0 at or before due."""
    if submitted_at <= due_at:
        return 0
    if per == LatePer.HOUR:
        return math.ceil((submitted_at - due_at) / timedelta(hours=1))
    local_due = due_at.astimezone(tz)

    def day_end(n: int) -> datetime:
        # Aware arithmetic in one ZoneInfo adds wall-clock days; compare in
        # UTC, since datetimes sharing a tzinfo compare by wall clock.
        return (local_due + timedelta(days=n)).astimezone(UTC)

    days = max(1, math.ceil((submitted_at - due_at) / timedelta(days=1)))
    while day_end(days) < submitted_at:
        days += 1
    while days > 1 and day_end(days - 1) >= submitted_at:
        days -= 1
    return days


def late_penalty(*, assignment: Assignment, units: int) -> Decimal:
    """The percent of the raw score the policy takes for `units` late."""
    taken = assignment.late_penalty_percent * units
    return quantize(max(Decimal(0), min(taken, HUNDRED - assignment.late_floor_percent)))


def score_after_penalty(*, raw: int | Decimal, penalty_percent: Decimal) -> Decimal:
    return quantize(Decimal(raw) * (HUNDRED - penalty_percent) / HUNDRED)


def late_policy_summary(*, assignment: Assignment) -> str:
    """One sentence for the assignment pages."""
    percent = assignment.late_penalty_percent.normalize()
    if not assignment.late_penalty_percent:
        return "No late penalty: a late Submit keeps its full score."
    unit = "hour" if assignment.late_penalty_per == LatePer.HOUR else "day"
    floor = assignment.late_floor_percent.normalize()
    text = f"A late Submit loses {percent:f}% of its score per started {unit} late"
    if assignment.late_floor_percent:
        text += f", keeping at least {floor:f}%"
    return text + "."
