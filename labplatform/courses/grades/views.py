"""The grading pages of a cohort: assignments and their late policy,
extensions, grade overrides, regrades and the gradebook. Every view fetches
and authorises through access_cohort with the capability it needs."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Count
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.text import slugify
from django.views.decorators.http import require_POST, require_safe

from exercises.models import ATTEMPT_OPEN_STATUSES, Attempt
from labplatform.accounts.models import User
from labplatform.courses.access import Can, access_cohort
from labplatform.courses.deadlines import late_policy_summary
from labplatform.courses.grades import forms
from labplatform.courses.grades.gradebook import (
    Gradebook,
    cell_of,
    gradebook_csv_text,
    gradebook_for_cohort,
    override_history,
)
from labplatform.courses.grades.services import (
    GradesRefused,
    assignment_save,
    extension_grant,
    extension_revoke,
    grade_override_set,
    regrade_job_start,
)
from labplatform.courses.models import (
    Assignment,
    Cohort,
    Extension,
    LatePer,
    RegradeJob,
    RegradeJobStatus,
    RegradeScope,
)
from labplatform.courses.views import request_user


def _assignment(cohort: Cohort, assignment_id: int) -> Assignment:
    return get_object_or_404(
        Assignment.objects.select_related("exercise__current_version", "cohort__course"),
        pk=assignment_id,
        cohort=cohort,
    )


def _student(cohort: Cohort, student_id: int) -> User:
    return get_object_or_404(forms.cohort_students(cohort=cohort), pk=student_id)


def _back(request: HttpRequest, fallback: str) -> HttpResponse:
    """To the page the form came from (`next`, this site only), else `fallback`."""
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return redirect(target)
    return redirect(fallback)


def student_work_url(cohort: Cohort, student_id: int) -> str:
    """The board's drill-down of a student, or the gradebook while it is missing."""
    try:
        return reverse("student_work", args=[cohort.pk, student_id])
    except NoReverseMatch:
        return reverse("gradebook", args=[cohort.pk])


# --- assignments ----------------------------------------------------------------


@login_required
@require_safe
def assignment_list(request: HttpRequest, cohort_id: int) -> HttpResponse:
    cohort = access_cohort(user=request_user(request), cohort_id=cohort_id, need=Can.VIEW)
    book = gradebook_for_cohort(cohort=cohort)
    extensions = dict(
        Extension.objects.filter(assignment__cohort=cohort)
        .values_list("assignment_id")
        .annotate(n=Count("id"))
    )
    rows = []
    now = timezone.now()
    for index, assignment in enumerate(book.assignments):
        cells = [row.cells[index] for row in book.rows]
        rows.append(
            {
                "assignment": assignment,
                "status": assignment.status(now),
                "policy": late_policy_summary(assignment=assignment),
                "submitted": sum(1 for c in cells if c.attempt is not None),
                "late": sum(1 for c in cells if c.is_late),
                "extensions": extensions.get(assignment.pk, 0),
            }
        )
    return render(
        request,
        "courses/grades/assignment_list.html",
        {
            "cohort": cohort,
            "rows": rows,
            "students": len(book.rows),
            "can_manage": _can(request_user(request), cohort, Can.MANAGE),
            "can_regrade": _can(request_user(request), cohort, Can.REGRADE),
        },
    )


def _can(user: Any, cohort: Cohort, need: Can) -> bool:
    try:
        access_cohort(user=user, cohort_id=cohort.pk, need=need)
    except Http404:
        return False
    return True


@login_required
def assignment_create(request: HttpRequest, cohort_id: int) -> HttpResponse:
    cohort = access_cohort(user=request_user(request), cohort_id=cohort_id, need=Can.MANAGE)
    tz = cohort.tzinfo
    if request.method == "POST":
        form = forms.AssignmentForm(request.POST, cohort=cohort)
        if form.is_valid():
            return _assignment_saved(request, cohort, form, form.cleaned_data["exercise"])
    else:
        opens = forms.next_hour(tz=tz)
        initial: dict[str, Any] = {"opens_at": opens}
        chosen = forms.assignable_exercises(cohort=cohort).filter(
            slug=request.GET.get("exercise", "")
        )
        exercise = chosen.first()
        if exercise is not None:
            initial["exercise"] = exercise
            defaults = forms.default_dates(exercise=exercise, opens_at=opens, tz=tz)
            if defaults is not None:
                initial["due_at"], initial["closes_at"] = defaults
        form = forms.AssignmentForm(initial=initial, cohort=cohort)
    return _assignment_form(request, cohort, form, None)


@login_required
def assignment_edit(request: HttpRequest, cohort_id: int, assignment_id: int) -> HttpResponse:
    cohort = access_cohort(user=request_user(request), cohort_id=cohort_id, need=Can.MANAGE)
    assignment = _assignment(cohort, assignment_id)
    if request.method == "POST":
        form = forms.AssignmentForm(request.POST, cohort=cohort, assignment=assignment)
        if form.is_valid():
            return _assignment_saved(request, cohort, form, assignment.exercise)
    else:
        form = forms.AssignmentForm(
            initial={
                "opens_at": assignment.opens_at,
                "due_at": assignment.due_at,
                "closes_at": assignment.closes_at,
                "late_penalty_percent": assignment.late_penalty_percent,
                "late_penalty_per": assignment.late_penalty_per,
                "late_floor_percent": assignment.late_floor_percent,
            },
            cohort=cohort,
            assignment=assignment,
        )
    return _assignment_form(request, cohort, form, assignment)


def _assignment_saved(
    request: HttpRequest, cohort: Cohort, form: forms.AssignmentForm, exercise: Any
) -> HttpResponse:
    data = form.cleaned_data
    assignment_save(
        cohort=cohort,
        exercise=exercise,
        opens_at=data["opens_at"],
        due_at=data["due_at"],
        closes_at=data["closes_at"],
        late_penalty_percent=data["late_penalty_percent"],
        late_penalty_per=LatePer(data["late_penalty_per"]),
        late_floor_percent=data["late_floor_percent"],
        actor=request_user(request),
    )
    messages.success(request, f"{exercise.title} is assigned.")
    return redirect("assignment_list", cohort.pk)


def _assignment_form(
    request: HttpRequest, cohort: Cohort, form: forms.AssignmentForm, assignment: Any
) -> HttpResponse:
    return render(
        request,
        "courses/grades/assignment_form.html",
        {"cohort": cohort, "form": form, "assignment": assignment},
        status=400 if form.is_bound else 200,
    )


# --- extensions -----------------------------------------------------------------


@login_required
def extension_list(request: HttpRequest, cohort_id: int, assignment_id: int) -> HttpResponse:
    """The assignment's extensions; POST grants (or changes) one, or revokes
    one (action=revoke, extension=<id>)."""
    cohort = access_cohort(user=request_user(request), cohort_id=cohort_id, need=Can.MANAGE)
    assignment = _assignment(cohort, assignment_id)
    user = request_user(request)
    form = forms.ExtensionForm(assignment=assignment)
    status = 200
    if request.method == "POST" and request.POST.get("action") == "revoke":
        extension = get_object_or_404(
            Extension.objects.select_related("student", "assignment__cohort"),
            pk=int(request.POST["extension"]) if request.POST.get("extension", "").isdigit() else 0,
            assignment=assignment,
        )
        extension_revoke(extension=extension, actor=user)
        messages.success(request, f"{extension.student.username}'s extension is revoked.")
        return redirect("extension_list", cohort.pk, assignment.pk)
    if request.method == "POST":
        form = forms.ExtensionForm(request.POST, assignment=assignment)
        if form.is_valid():
            data = form.cleaned_data
            try:
                extension_grant(
                    assignment=assignment,
                    student=data["student"],
                    due_at=data["due_at"],
                    closes_at=data["closes_at"],
                    reason=data["reason"],
                    actor=user,
                )
            except GradesRefused as exc:
                form.add_error(exc.field, exc.message)
            else:
                messages.success(request, f"{data['student'].username} has an extension.")
                return redirect("extension_list", cohort.pk, assignment.pk)
        status = 400
    elif "student" in request.GET:
        current = assignment.extensions.filter(student__pk=request.GET["student"]).first()
        if current is not None:
            form = forms.ExtensionForm(
                initial={
                    "student": current.student_id,
                    "due_at": current.due_at,
                    "closes_at": current.closes_at,
                    "reason": current.reason,
                },
                assignment=assignment,
            )
    extensions = assignment.extensions.select_related("student", "granted_by").order_by(
        "student__last_name", "student__first_name", "student__username"
    )
    return render(
        request,
        "courses/grades/extension_list.html",
        {"cohort": cohort, "assignment": assignment, "extensions": extensions, "form": form},
        status=status,
    )


# --- grade overrides ------------------------------------------------------------


@login_required
@require_POST
def grade_override(
    request: HttpRequest, cohort_id: int, assignment_id: int, student_id: int
) -> HttpResponse:
    cohort = access_cohort(user=request_user(request), cohort_id=cohort_id, need=Can.OVERRIDE)
    assignment = _assignment(cohort, assignment_id)
    student = _student(cohort, student_id)
    form = forms.OverrideForm(request.POST)
    if form.is_valid():
        data = form.cleaned_data
        try:
            grade_override_set(
                assignment=assignment,
                student=student,
                score=None if data["clear"] else data["score"],
                reason=data["reason"],
                actor=request_user(request),
            )
        except GradesRefused as exc:
            form.add_error(exc.field, exc.message)
        else:
            messages.success(request, f"{student.username}'s grade is saved.")
            return _back(request, student_work_url(cohort, student.pk))
    context = cell_grading_context(
        user=request_user(request), cohort=cohort, assignment=assignment, student=student
    )
    return render(
        request,
        "courses/grades/override.html",
        {**context, "override_form": form},
        status=400,
    )


def cell_grading_context(
    *, user: Any, cohort: Cohort, assignment: Assignment, student: User
) -> dict[str, Any]:
    """What courses/grades/_cell_grading.html needs besides cohort,
    assignment, student and cell (the drill-down page may pass these too)."""
    return {
        "cohort": cohort,
        "assignment": assignment,
        "student": student,
        "cell": cell_of(cohort=cohort, assignment=assignment, student_id=student.pk),
        "overrides": override_history(assignment=assignment, student_id=student.pk),
        "can_override": _can(user, cohort, Can.OVERRIDE),
        "can_regrade": _can(user, cohort, Can.REGRADE),
    }


# --- regrades -------------------------------------------------------------------


def _regrade_started(request: HttpRequest, job: RegradeJob) -> HttpResponse:
    messages.success(request, "The regrade is queued.")
    return redirect("regrade_job", job.pk)


def _refused(request: HttpRequest, exc: GradesRefused, fallback: str) -> HttpResponse:
    messages.error(request, exc.message)
    return _back(request, fallback)


@login_required
@require_POST
def assignment_regrade(request: HttpRequest, cohort_id: int, assignment_id: int) -> HttpResponse:
    cohort = access_cohort(user=request_user(request), cohort_id=cohort_id, need=Can.REGRADE)
    assignment = _assignment(cohort, assignment_id)
    job = regrade_job_start(
        assignment=assignment,
        scope=RegradeScope.ASSIGNMENT,
        actor=request_user(request),
    )
    return _regrade_started(request, job)


@login_required
@require_POST
def student_regrade(
    request: HttpRequest, cohort_id: int, assignment_id: int, student_id: int
) -> HttpResponse:
    cohort = access_cohort(user=request_user(request), cohort_id=cohort_id, need=Can.REGRADE)
    assignment = _assignment(cohort, assignment_id)
    student = _student(cohort, student_id)
    job = regrade_job_start(
        assignment=assignment,
        scope=RegradeScope.STUDENT,
        student=student,
        actor=request_user(request),
    )
    return _regrade_started(request, job)


@login_required
@require_POST
def attempt_regrade_staff(request: HttpRequest, attempt_id: int) -> HttpResponse:
    attempt = (
        Attempt.objects.select_related("assignment__cohort", "student")
        .filter(pk=attempt_id, assignment__isnull=False, is_preview=False)
        .first()
    )
    if attempt is None or attempt.assignment is None:
        raise Http404("No such attempt")
    cohort = access_cohort(
        user=request_user(request), cohort_id=attempt.assignment.cohort_id, need=Can.REGRADE
    )
    if attempt.student_id == request_user(request).pk:
        raise Http404("No such attempt")
    try:
        job = regrade_job_start(
            assignment=attempt.assignment,
            scope=RegradeScope.ATTEMPT,
            student=attempt.student,
            attempt=attempt,
            actor=request_user(request),
        )
    except GradesRefused as exc:
        return _refused(request, exc, student_work_url(cohort, attempt.student_id))
    return _regrade_started(request, job)


def regrade_job_progress(job: RegradeJob) -> dict[str, Any]:
    regrades = list(job.regrades.values_list("status", flat=True))
    graded = sum(1 for status in regrades if status not in ATTEMPT_OPEN_STATUSES)
    finished = job.status in (RegradeJobStatus.DONE, RegradeJobStatus.FAILED)
    return {
        "id": job.pk,
        "status": job.status,
        "status_label": job.get_status_display(),
        "scope": job.scope,
        "total": job.total,
        "done": job.done,
        "regrades": len(regrades),
        "graded": graded,
        "error": job.error,
        "finished": finished,
        "settled": finished and graded >= len(regrades),
    }


@login_required
@require_safe
def regrade_job(request: HttpRequest, job_id: int) -> HttpResponse:
    job = get_object_or_404(
        RegradeJob.objects.select_related(
            "assignment__exercise", "assignment__cohort", "student", "created_by"
        ),
        pk=job_id,
    )
    cohort = access_cohort(
        user=request_user(request), cohort_id=job.assignment.cohort_id, need=Can.VIEW
    )
    progress = regrade_job_progress(job)
    if "application/json" in request.headers.get("Accept", ""):
        return JsonResponse(progress)
    new_attempts = job.regrades.select_related("student", "regrade_of").order_by("id")
    return render(
        request,
        "courses/grades/regrade_job.html",
        {"cohort": cohort, "job": job, "progress": progress, "new_attempts": new_attempts},
    )


# --- gradebook ------------------------------------------------------------------


@login_required
@require_safe
def gradebook(request: HttpRequest, cohort_id: int) -> HttpResponse:
    cohort = access_cohort(user=request_user(request), cohort_id=cohort_id, need=Can.VIEW)
    book = gradebook_for_cohort(cohort=cohort)
    has_drilldown = student_work_url(cohort, 0) != reverse("gradebook", args=[cohort.pk])
    return render(
        request,
        "courses/grades/gradebook.html",
        {"cohort": cohort, "book": book, "has_drilldown": has_drilldown},
    )


@login_required
@require_safe
def gradebook_csv(request: HttpRequest, cohort_id: int) -> HttpResponse:
    """One row per student, one column per assignment with the final score
    (after the late policy, extensions and overrides; empty: nothing
    counted), then the total: what LMS gradebook imports read."""
    cohort = access_cohort(user=request_user(request), cohort_id=cohort_id, need=Can.VIEW)
    book = gradebook_for_cohort(cohort=cohort)
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response.write(gradebook_csv_text(book))
    name = slugify(f"{cohort.course.slug}-{cohort.slug}") or "cohort"
    stamp = timezone.now().astimezone(cohort.tzinfo).strftime("%Y%m%d")
    response["Content-Disposition"] = f'attachment; filename="gradebook-{name}-{stamp}.csv"'
    return response


def gradebook_payload(book: Gradebook) -> dict[str, Any]:
    def number(value: Any) -> float | None:
        return None if value is None else float(value)

    return {
        "cohort": {"id": book.cohort.pk, "slug": book.cohort.slug, "name": book.cohort.name},
        "assignments": [
            {
                "id": a.pk,
                "exercise": a.exercise.slug,
                "title": a.exercise.title,
                "due_at": a.due_at.isoformat(),
            }
            for a in book.assignments
        ],
        "rows": [
            {
                "student_id": row.student.pk,
                "username": row.student.username,
                "email": row.student.email,
                "last_name": row.student.last_name,
                "first_name": row.student.first_name,
                "cells": [
                    {
                        "assignment_id": cell.assignment.pk,
                        "attempt_id": cell.attempt.pk if cell.attempt else None,
                        "raw_score": cell.raw_score,
                        "max_score": cell.max_score,
                        "late_units": cell.late_units,
                        "penalty_percent": number(cell.penalty_percent),
                        "overridden": cell.override is not None,
                        "extended": cell.extended,
                        "final_score": number(cell.final_score),
                    }
                    for cell in row.cells
                ],
                "total": number(row.total),
            }
            for row in book.rows
        ],
    }


@login_required
@require_safe
def gradebook_json(request: HttpRequest, cohort_id: int) -> HttpResponse:
    cohort = access_cohort(user=request_user(request), cohort_id=cohort_id, need=Can.VIEW)
    return JsonResponse(gradebook_payload(gradebook_for_cohort(cohort=cohort)))
