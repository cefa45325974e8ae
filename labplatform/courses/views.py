from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from labplatform.accounts.models import User
from labplatform.courses import selectors


def _user(request: HttpRequest) -> User:
    assert isinstance(request.user, User)  # guaranteed by @login_required
    return request.user


@login_required
def dashboard(request: HttpRequest) -> HttpResponse:
    user = _user(request)
    now = timezone.now()
    assignments = list(selectors.assignment_list_for_student(user=user))
    return render(
        request,
        "courses/dashboard.html",
        {
            "now": now,
            "assignment_rows": [(a, a.status(now), a.is_due_soon(now)) for a in assignments],
            "teaching": selectors.cohort_list_for_instructor(user=user),
        },
    )


@login_required
def course_detail(request: HttpRequest, slug: str) -> HttpResponse:
    user = _user(request)
    course = selectors.course_get_for_user(user=user, slug=slug)
    now = timezone.now()
    cohorts = selectors.cohort_list_for_user_in_course(user=user, course=course).prefetch_related(
        "assignments__exercise"
    )
    return render(
        request,
        "courses/course_detail.html",
        {
            "course": course,
            "cohort_rows": [
                (cohort, [(a, a.status(now)) for a in cohort.assignments.all()])
                for cohort in cohorts
            ],
        },
    )
