from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils import timezone


class Course(models.Model):
    slug = models.SlugField(max_length=64, unique=True)
    title = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

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

    class Meta:
        ordering = ["course__title", "name"]
        constraints = [
            models.UniqueConstraint(fields=["course", "slug"], name="cohort_slug_unique_in_course")
        ]

    def __str__(self) -> str:
        return f"{self.course.title} — {self.name}"


class Role(models.TextChoices):
    STUDENT = "student", "Student"
    INSTRUCTOR = "instructor", "Instructor"


class Enrolment(models.Model):
    """A user's role in one cohort: the same account can teach one cohort and
    study in another."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="enrolments"
    )
    cohort = models.ForeignKey(Cohort, on_delete=models.CASCADE, related_name="enrolments")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.STUDENT)
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


class Assignment(models.Model):
    """An exercise set for a cohort, with its window: it opens, is due, and at
    the hard close stops accepting work at all."""

    cohort = models.ForeignKey(Cohort, on_delete=models.CASCADE, related_name="assignments")
    exercise = models.ForeignKey(
        "exercises.Exercise", on_delete=models.PROTECT, related_name="assignments"
    )
    opens_at = models.DateTimeField()
    due_at = models.DateTimeField()
    closes_at = models.DateTimeField(help_text="Hard close: no work accepted after this")

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
        now = now or timezone.now()
        if now < self.opens_at:
            return AssignmentStatus.UPCOMING
        if now <= self.due_at:
            return AssignmentStatus.OPEN
        if now <= self.closes_at:
            return AssignmentStatus.LATE
        return AssignmentStatus.CLOSED

    def is_due_soon(self, now: datetime | None = None) -> bool:
        now = now or timezone.now()
        return self.status(now) == AssignmentStatus.OPEN and self.due_at - now < timedelta(days=2)
