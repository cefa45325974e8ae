from __future__ import annotations

import zoneinfo
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import F, Q
from django.utils import timezone


def validate_time_zone(value: str) -> None:
    if value not in zoneinfo.available_timezones():
        raise ValidationError(f"{value!r} is not a time zone name such as Europe/Paris.")


class Course(models.Model):
    slug = models.SlugField(max_length=64, unique=True)
    title = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    archived_at = models.DateTimeField(
        null=True, blank=True, help_text="archived: read-only, hidden from dashboards"
    )

    class Meta:
        ordering = ["title"]

    def __str__(self) -> str:
        return self.title


class Cohort(models.Model):
    """A group of students taking a course together (a term, a section)."""

    course = models.ForeignKey(Course, on_delete=models.CASCADE, related_name="cohorts")
    slug = models.SlugField(max_length=64)
    name = models.CharField(max_length=200)
    starts_on = models.DateField(null=True, blank=True)
    ends_on = models.DateField(null=True, blank=True)
    time_zone = models.CharField(
        max_length=64,
        default="UTC",
        validators=[validate_time_zone],
        help_text="dates are shown and entered in this zone (IANA name, e.g. Europe/Paris)",
    )
    max_running_vms = models.PositiveIntegerField(
        null=True, blank=True, help_text="running lab VMs of the cohort's students at once"
    )
    archived_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["course__title", "name"]
        constraints = [
            models.UniqueConstraint(fields=["course", "slug"], name="cohort_slug_unique_in_course")
        ]

    def __str__(self) -> str:
        return f"{self.course.title} — {self.name}"

    @property
    def tzinfo(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.time_zone)


class Role(models.TextChoices):
    STUDENT = "student", "Student"
    INSTRUCTOR = "instructor", "Instructor"
    # Watches consoles, comments, regrades; no grade overrides, no roster changes.
    TA = "ta", "Teaching assistant"


STAFF_ROLES = (Role.INSTRUCTOR, Role.TA)


class Enrolment(models.Model):
    """A user's role in one cohort: the same account can teach one cohort and
    study in another."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="enrolments"
    )
    cohort = models.ForeignKey(Cohort, on_delete=models.CASCADE, related_name="enrolments")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.STUDENT)
    student_number = models.CharField(
        max_length=64,
        blank=True,
        help_text="the university's id of the student (roster import), exported in the gradebook",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["cohort", "role", "user__username"]
        constraints = [
            models.UniqueConstraint(fields=["user", "cohort"], name="one_enrolment_per_cohort")
        ]

    def __str__(self) -> str:
        return f"{self.user} — {self.get_role_display()} in {self.cohort}"


class AssignmentStatus(models.TextChoices):
    UPCOMING = "upcoming", "Not open yet"
    OPEN = "open", "Open"
    LATE = "late", "Past due (late submissions accepted)"
    CLOSED = "closed", "Closed"


def window_status(
    opens_at: datetime, due_at: datetime, closes_at: datetime, now: datetime | None = None
) -> AssignmentStatus:
    """Where `now` falls in a window: before it opens, up to due (on time),
    up to the hard close (late), after it."""
    now = now or timezone.now()
    if now < opens_at:
        return AssignmentStatus.UPCOMING
    if now <= due_at:
        return AssignmentStatus.OPEN
    if now <= closes_at:
        return AssignmentStatus.LATE
    return AssignmentStatus.CLOSED


class LatePer(models.TextChoices):
    DAY = "day", "per day late"
    HOUR = "hour", "per hour late"


class Assignment(models.Model):
    """An exercise set for a cohort, with its window: it opens, is due, and at
    the hard close stops accepting work at all. A Submit after due loses
    late_penalty_percent of its score per started day (or hour) late, never
    going below late_floor_percent of it (labplatform.courses.deadlines)."""

    cohort = models.ForeignKey(Cohort, on_delete=models.CASCADE, related_name="assignments")
    exercise = models.ForeignKey(
        "exercises.Exercise", on_delete=models.PROTECT, related_name="assignments"
    )
    opens_at = models.DateTimeField()
    due_at = models.DateTimeField()
    closes_at = models.DateTimeField(help_text="Hard close: no work accepted after this")
    late_penalty_percent = models.DecimalField(
        max_digits=5,
        decimal_places=2,
        default=Decimal(0),
        validators=[MinValueValidator(Decimal(0)), MaxValueValidator(Decimal(100))],
    )
    late_penalty_per = models.CharField(max_length=8, choices=LatePer.choices, default=LatePer.DAY)
    late_floor_percent = models.DecimalField(
        max_digits=5,
        decimal_places=2,
        default=Decimal(0),
        validators=[MinValueValidator(Decimal(0)), MaxValueValidator(Decimal(100))],
        help_text="a late Submit keeps at least this percent of its score",
    )

    class Meta:
        ordering = ["due_at", "exercise__title"]
        constraints = [
            models.UniqueConstraint(
                fields=["cohort", "exercise"], name="exercise_assigned_once_per_cohort"
            ),
            models.CheckConstraint(
                condition=Q(opens_at__lte=F("due_at")) & Q(due_at__lte=F("closes_at")),
                name="assignment_dates_in_order",
                violation_error_message="Dates must be in order: opens ≤ due ≤ hard close.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.exercise} for {self.cohort}"

    def status(self, now: datetime | None = None) -> AssignmentStatus:
        """The assignment's own window; a student's (with an extension) is
        labplatform.courses.deadlines.window_for."""
        return window_status(self.opens_at, self.due_at, self.closes_at, now)

    def is_due_soon(self, now: datetime | None = None) -> bool:
        now = now or timezone.now()
        return self.status(now) == AssignmentStatus.OPEN and self.due_at - now < timedelta(days=2)


class Extension(models.Model):
    """One student's own due date and hard close for an assignment (it may
    reach past the assignment's hard close)."""

    assignment = models.ForeignKey(Assignment, on_delete=models.CASCADE, related_name="extensions")
    student = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="extensions"
    )
    due_at = models.DateTimeField()
    closes_at = models.DateTimeField()
    reason = models.CharField(max_length=500, blank=True)
    granted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    granted_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["assignment", "student"], name="one_extension_per_student"
            ),
            models.CheckConstraint(
                condition=Q(due_at__lte=F("closes_at")),
                name="extension_dates_in_order",
                violation_error_message="The extension's due date must not be after its close.",
            ),
        ]

    def __str__(self) -> str:
        return f"Extension of {self.assignment} for {self.student_id}"


class GradeOverride(models.Model):
    """An instructor's grade for one student on one assignment, with the
    reason. Rows are never updated or deleted: the newest one applies
    (score None clears the override), and all of them are the audit trail."""

    assignment = models.ForeignKey(Assignment, on_delete=models.CASCADE, related_name="overrides")
    student = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="grade_overrides"
    )
    score = models.DecimalField(max_digits=7, decimal_places=2, null=True, blank=True)
    reason = models.CharField(max_length=1000)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=~Q(reason=""), name="grade_override_has_reason")
        ]

    def __str__(self) -> str:
        return f"Override of {self.assignment} for {self.student_id}: {self.score}"


class AuditEntry(models.Model):
    """Who changed what in a cohort, and when: roster changes, extensions,
    overrides, regrades, settings. Append-only."""

    cohort = models.ForeignKey(Cohort, on_delete=models.CASCADE, related_name="audit_entries")
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    action = models.CharField(max_length=64, help_text="e.g. roster.add, grade.override")
    summary = models.CharField(max_length=500, help_text="one human sentence")
    detail = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "audit entries"

    def __str__(self) -> str:
        return self.summary


class RegradeScope(models.TextChoices):
    ATTEMPT = "attempt", "One attempt"
    STUDENT = "student", "One student's counted Submit"
    ASSIGNMENT = "assignment", "Every student's counted Submit"


class RegradeJobStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"


class RegradeJob(models.Model):
    """A regrade of one attempt, a student or a whole assignment, run by a
    Celery task from the files stored with each Submit; progress is
    done/total. The new attempts point at the old ones (Attempt.regrade_of)."""

    assignment = models.ForeignKey(Assignment, on_delete=models.CASCADE, related_name="regrades")
    scope = models.CharField(max_length=16, choices=RegradeScope.choices)
    student = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    attempt = models.ForeignKey(
        "exercises.Attempt", on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    status = models.CharField(
        max_length=16, choices=RegradeJobStatus.choices, default=RegradeJobStatus.QUEUED
    )
    total = models.PositiveIntegerField(default=0)
    done = models.PositiveIntegerField(default=0, help_text="regrade attempts queued so far")
    error = models.TextField(blank=True)
    # The attempts this job made: what its page follows, and what a retried
    # task skips (one regrade per original per job).
    regrades = models.ManyToManyField("exercises.Attempt", blank=True, related_name="+")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"Regrade ({self.get_scope_display()}) of {self.assignment}"
