"""When one student's work on an assignment is accepted, and when it is late.

An extension replaces the assignment's due date and hard close for its
student (it may reach past the assignment's hard close); everything that
judges a student's time (Start, Check, Submit, lateness, the gradebook)
asks window_for, never the assignment's own dates.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.utils import timezone

from labplatform.accounts.models import User
from labplatform.courses.models import Assignment, AssignmentStatus, Extension


@dataclass(frozen=True)
class Window:
    opens_at: datetime
    due_at: datetime
    closes_at: datetime
    extended: bool = False

    def status(self, now: datetime | None = None) -> AssignmentStatus:
        now = now or timezone.now()
        if now < self.opens_at:
            return AssignmentStatus.UPCOMING
        if now <= self.due_at:
            return AssignmentStatus.OPEN
        if now <= self.closes_at:
            return AssignmentStatus.LATE
        return AssignmentStatus.CLOSED


def window_for(*, assignment: Assignment, student: User | int) -> Window:
    student_id = student if isinstance(student, int) else student.pk
    extension = Extension.objects.filter(assignment=assignment, student_id=student_id).first()
    if extension is None:
        return Window(assignment.opens_at, assignment.due_at, assignment.closes_at)
    return Window(assignment.opens_at, extension.due_at, extension.closes_at, extended=True)
