"""The exercise page, and Check / Submit with their results.

Check and Submit are POSTs: they redirect back to the exercise page, or answer
JSON to the page's script (Accept: application/json), which then follows the
attempt through its status URL until it is graded.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import Count, Prefetch, prefetch_related_objects
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST, require_safe

from exercises import selectors, services
from exercises.errors import AttemptRefused
from exercises.models import Attempt, AttemptComment, AttemptKind, Exercise, ExerciseVersion
from exercises.payloads import attempt_payload
from exercises.rendering import render_markdown
from labplatform.accounts.models import User
from labplatform.courses.access import Can, role_allows, staff_role
from labplatform.courses.models import AssignmentStatus
from labplatform.courses.selectors import assignment_access
from labplatform.ratelimits import rate_limit
from vms.models import VMState
from vms.selectors import vm_current_for_student

ATTEMPTS_PER_PAGE = 10
# Assignment windows in which Check and Submit are accepted.
ACCEPTING = (AssignmentStatus.OPEN, AssignmentStatus.LATE)
# Why Check and Submit are disabled; the page's script switches between them
# as the VM and the last attempt change.
HINT_UPCOMING = "This exercise is not open yet."
HINT_CLOSED = "This exercise is closed: no more checks or submissions are accepted."
HINT_NOT_READY = "This exercise cannot be graded right now."
HINT_NO_VM = "Start your lab VM to check or submit your work."
HINT_BUSY = "Your last attempt is being graded…"


def _user(request: HttpRequest) -> User:
    assert isinstance(request.user, User)  # guaranteed by @login_required
    return request.user


def _wants_json(request: HttpRequest) -> bool:
    return "application/json" in request.headers.get("Accept", "")


@login_required
@require_safe
def exercise_detail(request: HttpRequest, slug: str) -> HttpResponse:
    user = _user(request)
    assignment, preview = assignment_access(user=user, exercise_slug=slug)
    exercise = assignment.exercise
    status = assignment.status()
    vm = vm_current_for_student(user=user, exercise=exercise)
    attempts = selectors.attempts_for_student(user=user, exercise=exercise).annotate(
        comment_count=Count("comments")
    )
    latest = attempts.first()
    # A preview works whatever the window (services.attempt_start agrees).
    accepting = (preview or status in ACCEPTING) and exercise.current_version_id is not None
    vm_running = vm is not None and vm.state == VMState.RUNNING
    closed = {AssignmentStatus.UPCOMING: HINT_UPCOMING, AssignmentStatus.CLOSED: HINT_CLOSED}
    hints = {"closed": closed.get(status, HINT_NOT_READY), "no_vm": HINT_NO_VM, "busy": HINT_BUSY}
    if not accepting:
        hint = hints["closed"]
    elif latest is not None and not latest.is_finished:
        hint = HINT_BUSY
    elif not vm_running:
        hint = HINT_NO_VM
    else:
        hint = ""
    return render(
        request,
        "exercises/exercise_detail.html",
        {
            "assignment": assignment,
            "preview": preview,
            "exercise": exercise,
            "status": status,
            "vm": vm,
            "instructions": render_markdown(_instructions(exercise)),
            "accepting": accepting,
            "hints": hints,
            "hint": hint,
            "latest": latest,
            "attempts": Paginator(attempts, ATTEMPTS_PER_PAGE).get_page(request.GET.get("page")),
            "counted": selectors.attempt_result_counted(user=user, assignment=assignment),
        },
    )


def _instructions(exercise: Exercise) -> str:
    """The Markdown of the version new attempts are graded with (not its bundle)."""
    if exercise.current_version_id is None:
        return exercise.instructions
    current = ExerciseVersion.objects.filter(pk=exercise.current_version_id)
    return current.values_list("instructions_md", flat=True).first() or exercise.instructions


def _attempt_start(request: HttpRequest, slug: str, kind: AttemptKind) -> HttpResponse:
    user = _user(request)
    assignment, preview = assignment_access(user=user, exercise_slug=slug)
    try:
        attempt = services.attempt_start(
            user=user, assignment=assignment, kind=kind, preview=preview
        )
    except AttemptRefused as exc:
        if _wants_json(request):
            return JsonResponse({"error": exc.code, "message": exc.message}, status=409)
        messages.error(request, exc.message)
        return redirect("exercise_detail", slug=slug)
    if _wants_json(request):
        return JsonResponse(attempt_payload(attempt), status=202)
    return redirect(f"{reverse('exercise_detail', args=[slug])}#attempt-{attempt.pk}")


@login_required
@require_POST
@rate_limit("check")
def attempt_check(request: HttpRequest, slug: str) -> HttpResponse:
    return _attempt_start(request, slug, AttemptKind.CHECK)


@login_required
@require_POST
@rate_limit("submit")
def attempt_submit(request: HttpRequest, slug: str) -> HttpResponse:
    return _attempt_start(request, slug, AttemptKind.SUBMIT)


@login_required
@require_GET
def attempt_status(request: HttpRequest, attempt_id: int) -> JsonResponse:
    attempt = selectors.attempt_get_for_viewer(user=_user(request), attempt_id=attempt_id)
    return JsonResponse(attempt_payload(attempt, counts=_counts(attempt)))


def _counts(attempt: Attempt) -> bool:
    """Whether this is the submission that counts for its assignment."""
    if attempt.kind != AttemptKind.SUBMIT or attempt.assignment is None:
        return False
    counted = selectors.attempt_result_counted(user=attempt.student, assignment=attempt.assignment)
    return counted is not None and counted.pk == attempt.pk


@login_required
@require_GET
def attempt_detail(request: HttpRequest, attempt_id: int) -> HttpResponse:
    user = _user(request)
    attempt = selectors.attempt_get_for_viewer(user=user, attempt_id=attempt_id)
    comments = AttemptComment.objects.select_related("author")
    prefetch_related_objects([attempt], Prefetch("comments", queryset=comments))
    return render(
        request,
        "exercises/attempt_detail.html",
        {
            "attempt": attempt,
            "is_owner": attempt.student_id == user.pk,
            "counts": _counts(attempt),
            "can_comment": _can_comment(user, attempt),
        },
    )


def _can_comment(user: User, attempt: Attempt) -> bool:
    """Whether the staff's comment form belongs on this attempt's page."""
    if attempt.student_id == user.pk or attempt.assignment is None:
        return False
    role = staff_role(user=user, cohort=attempt.assignment.cohort)
    return role is not None and role_allows(role, Can.COMMENT)


@login_required
@require_GET
def attempt_files(request: HttpRequest, attempt_id: int) -> HttpResponse:
    """The files a Submit graded, exactly as stored (a tar.gz): for the
    student and the cohort's instructors, 404 for anyone else."""
    attempt = selectors.attempt_get_for_viewer(user=_user(request), attempt_id=attempt_id)
    files = selectors.attempt_files(attempt=attempt)
    response = HttpResponse(bytes(files.archive), content_type="application/gzip")
    name = f"{attempt.exercise.slug}-attempt-{attempt.pk}-{files.sha256[:12]}.tar.gz"
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    response["X-Content-SHA256"] = files.sha256
    return response
