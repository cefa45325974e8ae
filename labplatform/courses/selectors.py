"""Reads of course data, always scoped to the user asking.

The `*_get_for_user` helpers fetch and authorise in one step and raise Http404
for anything the user may not see, so a view cannot forget the check and a
stranger cannot tell "exists" from "not yours".
"""

from __future__ import annotations

from django.db.models import Q, QuerySet
from django.http import Http404

from labplatform.accounts.models import User
from labplatform.courses.models import STAFF_ROLES, Assignment, Cohort, Course, Enrolment, Role


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
