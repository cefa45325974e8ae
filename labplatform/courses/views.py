from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from labplatform.accounts.models import User
from labplatform.courses import selectors
from labplatform.courses.roster.selectors import teaching_rows


def request_user(request: HttpRequest) -> User:
    assert isinstance(request.user, User)  # guaranteed by @login_required
    return request.user


@login_required
def dashboard(request: HttpRequest) -> HttpResponse:
    user = request_user(request)
    now = timezone.now()
    # Archived cohorts (or courses) leave the dashboard.
    assignments = list(
        selectors.assignment_list_for_student(user=user).filter(
            cohort__archived_at__isnull=True, cohort__course__archived_at__isnull=True
        )
    )
    teaching, _ = teaching_rows(user=user)
    return render(
        request,
        "courses/dashboard.html",
        {
            "now": now,
            "assignment_rows": [(a, a.status(now), a.is_due_soon(now)) for a in assignments],
            "teaching": teaching,
        },
    )


@login_required
def course_detail(request: HttpRequest, slug: str) -> HttpResponse:
    user = request_user(request)
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
            # Cohorts the user helps teach: their exercises open as a preview.
            "teaching_ids": set(
                selectors.cohort_list_for_staff(user=user).values_list("pk", flat=True)
            ),
        },
    )
