"""Reads of course data, always scoped to the user asking.

The `*_get_for_user` helpers fetch and authorise in one step and raise Http404
for anything the user may not see, so a view cannot forget the check and a
stranger cannot tell "exists" from "not yours".
"""

from __future__ import annotations

from django.conf import settings
from django.db.models import Q, QuerySet
from django.http import Http404

from labplatform.accounts.models import User
from labplatform.courses.models import STAFF_ROLES, Assignment, Cohort, Course, Enrolment, Role
from vms.models import LabVM, VMKind


def assignment_list_for_student(*, user: User) -> QuerySet[Assignment]:
    return (
        Assignment.objects.filter(
            cohort__enrolments__user=user,
            cohort__enrolments__role=Role.STUDENT,
            exercise__is_active=True,
        )
        .select_related("exercise", "cohort__course")
        .order_by("due_at", "exercise__title")
    )


def cohort_list_for_instructor(*, user: User) -> QuerySet[Cohort]:
    return (
        Cohort.objects.filter(enrolments__user=user, enrolments__role=Role.INSTRUCTOR)
        .select_related("course")
        .order_by("course__title", "name")
    )


def cohort_list_for_staff(*, user: User) -> QuerySet[Cohort]:
    """The cohorts the user teaches in, as an instructor or a TA."""
    return Cohort.objects.filter(enrolments__user=user, enrolments__role__in=STAFF_ROLES)


def course_get_for_user(*, user: User, slug: str) -> Course:
    """The course if the user studies or teaches in any of its cohorts."""
    course = Course.objects.filter(slug=slug, cohorts__enrolments__user=user).distinct().first()
    if course is None:
        raise Http404("No such course")
    return course


def cohort_list_for_user_in_course(*, user: User, course: Course) -> QuerySet[Cohort]:
    return Cohort.objects.filter(course=course, enrolments__user=user).distinct()


def assignment_get_for_student(*, user: User, exercise_slug: str) -> Assignment:
    """The student's assignment of this exercise; when the exercise is set in
    several of their cohorts, the one due soonest that is still open."""
    assignment = (
        assignment_list_for_student(user=user)
        .filter(exercise__slug=exercise_slug)
        .order_by("-closes_at")
        .first()
    )
    if assignment is None:
        raise Http404("No such exercise")
    return assignment


def assignment_access(*, user: User, exercise_slug: str) -> tuple[Assignment, bool]:
    """The assignment of this exercise the user may work on, and whether it is
    a preview: the student's own (False) when they study it; else, for an
    instructor or TA, the one in a cohort they teach, whose attempts never
    count (True). Http404 for anyone else."""
    try:
        return assignment_get_for_student(user=user, exercise_slug=exercise_slug), False
    except Http404:
        pass
    assignment = (
        Assignment.objects.filter(
            cohort__enrolments__user=user,
            cohort__enrolments__role__in=STAFF_ROLES,
            exercise__is_active=True,
            exercise__slug=exercise_slug,
        )
        .select_related("exercise", "cohort__course")
        .order_by("-closes_at")
        .first()
    )
    if assignment is None or not user.is_active:
        raise Http404("No such exercise")
    return assignment, True


def user_is_instructor_of(*, user: User, cohort: Cohort) -> bool:
    return cohort.enrolments.filter(user=user, role=Role.INSTRUCTOR).exists()


def user_teaches_student(*, user: User, student_id: int, cohort_id: int | None) -> bool:
    """Whether the user teaches (instructor or TA) in this cohort or, when
    the work is tied to no cohort (its assignment was deleted), in any cohort
    the student studies in: what watching a console and reading an attempt
    need."""
    if cohort_id is not None:
        cohorts = Q(cohort_id=cohort_id)
    else:
        cohorts = Q(cohort__enrolments__user_id=student_id, cohort__enrolments__role=Role.STUDENT)
    return Enrolment.objects.filter(cohorts, user=user, role__in=STAFF_ROLES).exists()


def cohort_vm_limit(*, cohort: Cohort) -> int:
    """How many lab VMs the cohort's students may run at once: the cohort's
    own limit when its instructor set one, else the site's."""
    if cohort.max_running_vms is not None:
        return cohort.max_running_vms
    return int(settings.VM_MAX_PER_COHORT)


def cohort_vms_active(*, cohort: Cohort) -> QuerySet[LabVM]:
    """The cohort's students' lab VMs that hold a place on a host now (the
    staff's preview VMs neither count nor are counted)."""
    staff = Enrolment.objects.filter(cohort=cohort, role__in=STAFF_ROLES).values("user_id")
    return (
        LabVM.objects.active()
        .filter(assignment__cohort=cohort, kind=VMKind.LAB)
        .exclude(owner_id__in=staff)
    )
