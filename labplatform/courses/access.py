"""Who may do what in a cohort they help teach: fetch and authorise in one step.

Every instructor page and action calls access_cohort (or access_course) with
the capability it needs. Anyone without it gets Http404, like a stranger,
whether they are a student of the cohort, a TA asking for an instructor's
action, or an instructor of another course: nobody learns what exists
outside their own courses.
"""

from __future__ import annotations

import enum

from django.http import Http404

from labplatform.accounts.models import User
from labplatform.courses.models import STAFF_ROLES, Cohort, Course, Enrolment, Role


class Can(enum.Enum):
    """What an action needs. A TA watches, comments and regrades; an
    instructor may do everything."""

    VIEW = "view"  # board, roster, attempts, gradebook, recordings, audit log
    WATCH = "watch"  # a student's console, read-only
    COMMENT = "comment"
    REGRADE = "regrade"
    OVERRIDE = "override"  # grade overrides
    MANAGE = "manage"  # cohort settings, assignments, extensions, VMs, archive
    ROSTER = "roster"  # enrol, import, remove; staff


TA_CAN = frozenset({Can.VIEW, Can.WATCH, Can.COMMENT, Can.REGRADE})


def role_allows(role: str, need: Can) -> bool:
    if role == Role.INSTRUCTOR:
        return True
    return role == Role.TA and need in TA_CAN


def staff_role(*, user: User, cohort: Cohort) -> Role | None:
    """The user's teaching role in the cohort, or None."""
    if not user.is_active:
        return None
    enrolment = Enrolment.objects.filter(user=user, cohort=cohort, role__in=STAFF_ROLES).first()
    return Role(enrolment.role) if enrolment is not None else None


def access_cohort(*, user: User, cohort_id: object, need: Can) -> Cohort:
    """The cohort, if the user teaches in it with a role that allows `need`."""
    try:
        pk = int(str(cohort_id))
    except ValueError:
        raise Http404("No such cohort") from None
    cohort = Cohort.objects.select_related("course").filter(pk=pk).first()
    if cohort is None or not user.is_authenticated:
        raise Http404("No such cohort")
    role = staff_role(user=user, cohort=cohort)
    if role is None or not role_allows(role, need):
        raise Http404("No such cohort")
    return cohort


def access_course(*, user: User, slug: str, need: Can) -> Course:
    """The course, if the user's role in one of its cohorts allows `need`
    (editing a course takes an instructor of it)."""
    course = Course.objects.filter(slug=slug).first()
    if course is None or not user.is_authenticated or not user.is_active:
        raise Http404("No such course")
    roles = Enrolment.objects.filter(
        user=user, cohort__course=course, role__in=STAFF_ROLES
    ).values_list("role", flat=True)
    if not any(role_allows(role, need) for role in roles):
        raise Http404("No such course")
    return course
