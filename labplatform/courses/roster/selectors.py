"""Reads for the instructor's roster, course and audit pages."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Count, Q, QuerySet

from labplatform.accounts.models import User
from labplatform.courses.models import STAFF_ROLES, AuditEntry, Cohort, Course, Enrolment, Role


def cohort_is_archived(cohort: Cohort) -> bool:
    return cohort.archived_at is not None or cohort.course.archived_at is not None


def cohort_list_for_staff(*, user: User) -> QuerySet[Cohort]:
    """Cohorts the user teaches as instructor or TA, archived ones included."""
    return (
        Cohort.objects.filter(enrolments__user=user, enrolments__role__in=STAFF_ROLES)
        .select_related("course")
        .annotate(
            student_count=Count(
                "enrolments", filter=Q(enrolments__role=Role.STUDENT), distinct=True
            )
        )
        .order_by("course__title", "name")
    )


@dataclass(frozen=True)
class TeachingRow:
    cohort: Cohort
    role: str


def teaching_rows(*, user: User) -> tuple[list[TeachingRow], list[TeachingRow]]:
    """(current, archived) cohorts the user teaches, with their role in each."""
    roles = dict(
        Enrolment.objects.filter(user=user, role__in=STAFF_ROLES).values_list("cohort_id", "role")
    )
    current: list[TeachingRow] = []
    archived: list[TeachingRow] = []
    for cohort in cohort_list_for_staff(user=user):
        row = TeachingRow(cohort=cohort, role=Role(roles[cohort.pk]).label)
        (archived if cohort_is_archived(cohort) else current).append(row)
    return current, archived


def course_list_instructed(*, user: User) -> QuerySet[Course]:
    return Course.objects.filter(
        cohorts__enrolments__user=user, cohorts__enrolments__role=Role.INSTRUCTOR
    ).distinct()


def roster_students(*, cohort: Cohort) -> QuerySet[Enrolment]:
    """The cohort's students, with how many attempts each has made in it
    (attempts outlive a removal, so a re-added student shows them again)."""
    return (
        Enrolment.objects.filter(cohort=cohort, role=Role.STUDENT)
        .select_related("user")
        .annotate(
            attempt_count=Count(
                "user__attempts",
                filter=Q(user__attempts__assignment__cohort=cohort),
                distinct=True,
            )
        )
        .order_by("user__last_name", "user__first_name", "user__username")
    )


def roster_staff(*, cohort: Cohort) -> QuerySet[Enrolment]:
    return (
        Enrolment.objects.filter(cohort=cohort, role__in=STAFF_ROLES)
        .select_related("user")
        .order_by("role", "user__username")
    )


def audit_entries(*, cohort: Cohort, action_prefix: str = "") -> QuerySet[AuditEntry]:
    entries = AuditEntry.objects.filter(cohort=cohort).select_related("actor")
    if action_prefix:
        entries = entries.filter(action__startswith=action_prefix)
    return entries.order_by("-created_at", "-id")


def audit_action_prefixes(*, cohort: Cohort) -> list[str]:
    """The first part of each action in the cohort's log (roster, grade, ...)."""
    actions = AuditEntry.objects.filter(cohort=cohort).values_list("action", flat=True).distinct()
    return sorted({action.split(".", 1)[0] for action in actions})
