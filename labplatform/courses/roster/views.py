"""The instructor's courses, cohorts, roster and audit log, under /teach/.

Every view fetches and authorises through access_cohort/access_course (a
TA may look, only an instructor may change; anyone else gets 404) and every
change is a POST that goes through roster.services.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import urlencode
from django.views.decorators.http import require_POST

from labplatform.accounts.models import User
from labplatform.courses.access import Can, access_cohort, access_course, role_allows, staff_role
from labplatform.courses.models import Cohort, Role
from labplatform.courses.roster import selectors, services
from labplatform.courses.roster.csv_import import COLUMN_ALIASES, MAX_ROWS, roster_csv_import
from labplatform.courses.roster.forms import (
    CohortForm,
    CourseCreateForm,
    CourseForm,
    RosterImportForm,
    StaffAddForm,
    StudentAddForm,
)
from labplatform.courses.roster.services import RosterRefused
from labplatform.courses.views import request_user

AUDIT_PER_PAGE = 50


@contextmanager
def refusals_as_messages(request: HttpRequest) -> Iterator[None]:
    """A refused change becomes an error message on the page it returns to."""
    try:
        yield
    except RosterRefused as refused:
        messages.error(request, refused.message)


def _roster(cohort: Cohort) -> HttpResponse:
    return redirect("cohort_roster", cohort_id=cohort.pk)


# --- courses and cohorts --------------------------------------------------------------


@login_required
def teach_home(request: HttpRequest) -> HttpResponse:
    user = request_user(request)
    current, archived = selectors.teaching_rows(user=user)
    may_create = services.user_may_create_course(user=user)
    if not (current or archived or may_create):
        raise Http404("Nothing to teach")
    return render(
        request,
        "courses/roster/teach_home.html",
        {
            "current": current,
            "archived": archived,
            "may_create": may_create,
            "instructed": set(selectors.course_list_instructed(user=user)),
        },
    )


@login_required
def course_create(request: HttpRequest) -> HttpResponse:
    user = request_user(request)
    if not services.user_may_create_course(user=user):
        raise Http404("No such page")
    form = CourseCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        cohort = services.course_create(actor=user, **form.cleaned_data)
        messages.success(request, f"Created {cohort}. Add its students below.")
        return _roster(cohort)
    return render(request, "courses/roster/course_form.html", {"form": form, "course": None})


@login_required
def course_edit(request: HttpRequest, slug: str) -> HttpResponse:
    user = request_user(request)
    course = access_course(user=user, slug=slug, need=Can.MANAGE)
    # The form validates a copy, so the service sees what changed.
    form = CourseForm(request.POST or None, instance=copy.copy(course))
    if request.method == "POST" and form.is_valid():
        services.course_update(course=course, actor=user, values=form.cleaned_data)
        messages.success(request, f"Saved {course.title}.")
        return redirect("teach_home")
    return render(request, "courses/roster/course_form.html", {"form": form, "course": course})


@login_required
@require_POST
def course_archive(request: HttpRequest, slug: str) -> HttpResponse:
    user = request_user(request)
    course = access_course(user=user, slug=slug, need=Can.MANAGE)
    archived = request.POST.get("archived") == "1"
    services.course_archive_set(course=course, actor=user, archived=archived)
    messages.success(request, f"{'Archived' if archived else 'Unarchived'} {course.title}.")
    return redirect("teach_home")


@login_required
def cohort_create(request: HttpRequest, slug: str) -> HttpResponse:
    user = request_user(request)
    course = access_course(user=user, slug=slug, need=Can.MANAGE)
    form = CohortForm(request.POST or None, instance=Cohort(course=course))
    if request.method == "POST" and form.is_valid():
        cohort = services.cohort_create(course=course, actor=user, values=form.cleaned_data)
        messages.success(request, f"Created {cohort}.")
        return _roster(cohort)
    return render(
        request, "courses/roster/cohort_form.html", {"form": form, "course": course, "cohort": None}
    )


@login_required
def cohort_edit(request: HttpRequest, cohort_id: int) -> HttpResponse:
    user = request_user(request)
    cohort = access_cohort(user=user, cohort_id=cohort_id, need=Can.MANAGE)
    form = CohortForm(request.POST or None, instance=copy.copy(cohort))
    if request.method == "POST" and form.is_valid():
        services.cohort_update(cohort=cohort, actor=user, values=form.cleaned_data)
        messages.success(request, f"Saved {cohort.name}.")
        return redirect("cohort_edit", cohort_id=cohort.pk)
    return render(
        request,
        "courses/roster/cohort_form.html",
        {"form": form, "course": cohort.course, "cohort": cohort},
    )


@login_required
@require_POST
def cohort_archive(request: HttpRequest, cohort_id: int) -> HttpResponse:
    user = request_user(request)
    cohort = access_cohort(user=user, cohort_id=cohort_id, need=Can.MANAGE)
    archived = request.POST.get("archived") == "1"
    services.cohort_archive_set(cohort=cohort, actor=user, archived=archived)
    messages.success(request, f"{'Archived' if archived else 'Unarchived'} {cohort.name}.")
    return redirect("teach_home")


# --- the roster ---------------------------------------------------------------------


@login_required
def cohort_roster(request: HttpRequest, cohort_id: int) -> HttpResponse:
    user = request_user(request)
    cohort = access_cohort(user=user, cohort_id=cohort_id, need=Can.VIEW)
    role = staff_role(user=user, cohort=cohort)
    return render(
        request,
        "courses/roster/roster.html",
        {
            "cohort": cohort,
            "can_change": role is not None and role_allows(role, Can.ROSTER),
            "archived": selectors.cohort_is_archived(cohort),
            "students": selectors.roster_students(cohort=cohort),
            "staff": selectors.roster_staff(cohort=cohort),
            "student_form": StudentAddForm(),
            "staff_form": StaffAddForm(),
        },
    )


RosterChange = Callable[..., str]


def roster_change(change: RosterChange) -> Callable[..., HttpResponse]:
    """A POST that changes the roster: authorise (an instructor; anyone else
    gets 404), run `change`, which returns the success message or raises
    RosterRefused, and go back to the roster with that message."""

    @login_required
    @require_POST
    @wraps(change)
    def view(request: HttpRequest, cohort_id: int, **ids: int) -> HttpResponse:
        user = request_user(request)
        cohort = access_cohort(user=user, cohort_id=cohort_id, need=Can.ROSTER)
        with refusals_as_messages(request):
            messages.success(request, change(request, user=user, cohort=cohort, **ids))
        return _roster(cohort)

    return view


@roster_change
def roster_add(request: HttpRequest, *, user: User, cohort: Cohort) -> str:
    form = StudentAddForm(request.POST)
    if not form.is_valid():
        raise RosterRefused("invalid", "Give the student's e-mail address or username.")
    enrolment, invited = services.roster_student_add(
        cohort=cohort, actor=user, identifier=form.cleaned_data["identifier"]
    )
    return f"Added {enrolment.user}" + (" and mailed a link to set a password." if invited else ".")


@roster_change
def roster_remove(request: HttpRequest, *, user: User, cohort: Cohort, student_id: int) -> str:
    student = services.roster_student_remove(cohort=cohort, actor=user, student_id=student_id)
    return f"Removed {student} from {cohort.name}. Their work is kept."


@roster_change
def roster_invite(request: HttpRequest, *, user: User, cohort: Cohort, student_id: int) -> str:
    student = services.roster_invite_resend(cohort=cohort, actor=user, student_id=student_id)
    return f"Mailed a new set-password link to {student.email}."


@roster_change
def roster_staff_add(request: HttpRequest, *, user: User, cohort: Cohort) -> str:
    form = StaffAddForm(request.POST)
    if not form.is_valid():
        raise RosterRefused("invalid", "Give an e-mail address or username, and a role.")
    enrolment = services.roster_staff_add(
        cohort=cohort,
        actor=user,
        identifier=form.cleaned_data["identifier"],
        role=Role(form.cleaned_data["role"]),
    )
    return f"{enrolment.user} is now {enrolment.get_role_display().lower()}."


@roster_change
def roster_staff_remove(request: HttpRequest, *, user: User, cohort: Cohort, user_id: int) -> str:
    removed = services.roster_staff_remove(cohort=cohort, actor=user, user_id=user_id)
    return f"Removed {removed} from the staff of {cohort.name}."


@login_required
def roster_import(request: HttpRequest, cohort_id: int) -> HttpResponse:
    user = request_user(request)
    cohort = access_cohort(user=user, cohort_id=cohort_id, need=Can.ROSTER)
    form = RosterImportForm(request.POST or None, request.FILES or None)
    errors = []
    if request.method == "POST" and form.is_valid():
        try:
            result = roster_csv_import(cohort=cohort, actor=user, data=form.cleaned_data["file"])
        except RosterRefused as refused:
            messages.error(request, refused.message)
            return _roster(cohort)
        if result.ok:
            messages.success(request, f"Imported the file: {result.summary}.")
            return _roster(cohort)
        errors = result.errors
    return render(
        request,
        "courses/roster/import.html",
        {
            "cohort": cohort,
            "form": form,
            "errors": errors,
            "archived": selectors.cohort_is_archived(cohort),
            "aliases": COLUMN_ALIASES,
            "max_rows": MAX_ROWS,
        },
        status=400 if errors else 200,
    )


# --- the audit log ------------------------------------------------------------------


@login_required
def cohort_audit(request: HttpRequest, cohort_id: int) -> HttpResponse:
    user = request_user(request)
    cohort = access_cohort(user=user, cohort_id=cohort_id, need=Can.VIEW)
    prefix = request.GET.get("action", "").strip()
    entries = selectors.audit_entries(cohort=cohort, action_prefix=prefix)
    return render(
        request,
        "courses/roster/audit.html",
        {
            "cohort": cohort,
            "action": prefix,
            "actions": selectors.audit_action_prefixes(cohort=cohort),
            "entries": Paginator(entries, AUDIT_PER_PAGE).get_page(request.GET.get("page")),
            "page_query": urlencode({"action": prefix}) + "&" if prefix else "",
            "audit_url": reverse("cohort_audit", args=[cohort.pk]),
        },
    )
