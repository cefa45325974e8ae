"""Checks and Submits: from the live lab VM, or from uploaded files."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from ninja import Query, Router, Status

from exercises import selectors as exercise_selectors
from exercises import services as exercise_services
from exercises.models import Attempt, AttemptKind, AttemptStatus
from labplatform.api import uploads
from labplatform.api.auth import COHORT_ADMIN, READ, SUBMIT, user_of
from labplatform.api.routers.common import (
    CREATE_ERRORS,
    ERRORS,
    IDEMPOTENT,
    Page,
    PageParams,
    paginate,
)
from labplatform.api.schemas import AttemptIn, AttemptOut, Problem, SlugFilter
from labplatform.api.selectors import attempt_list_for_student
from labplatform.courses.selectors import assignment_get_for_student

router = Router(tags=["attempts"])


def _reloaded(attempt: Attempt) -> AttemptOut:
    """The attempt as a viewer sees it (results, files), freshly read."""
    return AttemptOut.of(
        exercise_selectors.attempt_get_for_viewer(user=attempt.student, attempt_id=attempt.pk)
    )


@router.post(
    "/exercises/{slug}/attempts",
    response={202: AttemptOut, **CREATE_ERRORS},
    auth=SUBMIT,
    openapi_extra=IDEMPOTENT,
)
def attempt_create(request: HttpRequest, slug: str, body: AttemptIn) -> Status[AttemptOut]:
    """A Check or a Submit of the work in your running lab VM, exactly as the
    exercise page's buttons. Follow ``GET /attempts/{id}`` until ``is_finished``."""
    user = user_of(request)
    assignment = assignment_get_for_student(user=user, exercise_slug=slug)
    attempt = exercise_services.attempt_start(
        user=user, assignment=assignment, kind=AttemptKind(body.kind)
    )
    return Status(202, _reloaded(attempt))


@router.post(
    "/exercises/{slug}/submissions",
    response={202: AttemptOut, 413: Problem, 415: Problem, **CREATE_ERRORS},
    auth=SUBMIT,
    openapi_extra={**IDEMPOTENT, "requestBody": uploads.REQUEST_BODY},
)
def submission_upload(request: HttpRequest, slug: str) -> Status[AttemptOut]:
    """A Submit of uploaded files, no lab VM needed: a tar.gz whose members
    are the exercise's artifact paths without the leading slash
    (``root/hello/hello.c``), sent as the body (``Content-Type:
    application/gzip``) or as the ``archive`` file of a multipart form. The
    files pass the same rules as files collected from a VM (regular files
    only, the declared names, size and count caps, the exercise's
    validator) and are graded in a clean guest."""
    user = user_of(request)
    assignment = assignment_get_for_student(user=user, exercise_slug=slug)
    attempt = exercise_services.attempt_submit_files(
        user=user, assignment=assignment, raw_archive=uploads.uploaded_archive(request)
    )
    return Status(202, _reloaded(attempt))


@router.post(
    "/attempts/{attempt_id}/regrade",
    response={202: AttemptOut, **CREATE_ERRORS},
    auth=COHORT_ADMIN,
    openapi_extra=IDEMPOTENT,
)
def attempt_regrade(request: HttpRequest, attempt_id: int) -> Status[AttemptOut]:
    """For the cohort's instructors: grade a Submit's stored files again with
    the exercise's current checker. The new attempt keeps the original's time
    and lateness and counts in its place once graded; the old one stays."""
    attempt = exercise_selectors.attempt_get_for_instructor(
        user=user_of(request), attempt_id=attempt_id
    )
    regrade = exercise_services.attempt_regrade(attempt=attempt)
    return Status(202, _reloaded(regrade))


@router.get("/attempts", response={200: Page[AttemptOut], **ERRORS}, auth=READ)
def attempt_list(
    request: HttpRequest,
    page: Query[PageParams],
    exercise: SlugFilter | None = None,
    kind: AttemptKind | None = None,
    status: AttemptStatus | None = None,
) -> Page[AttemptOut]:
    """Your Checks and Submits, newest first; filter by exercise slug, kind, status."""
    attempts = attempt_list_for_student(user=user_of(request))
    if exercise:
        attempts = attempts.filter(exercise__slug=exercise)
    if kind is not None:
        attempts = attempts.filter(kind=kind)
    if status is not None:
        attempts = attempts.filter(status=status)
    return paginate(attempts, page, AttemptOut.of)


@router.get("/attempts/{attempt_id}", response={200: AttemptOut, **ERRORS}, auth=READ)
def attempt_detail(request: HttpRequest, attempt_id: int) -> AttemptOut:
    """Status, score, every check's result, the kernel's oops text and a link
    to the graded files: for its student and the cohort's instructors."""
    return AttemptOut.of(
        exercise_selectors.attempt_get_for_viewer(user=user_of(request), attempt_id=attempt_id)
    )


@router.get(
    "/attempts/{attempt_id}/files",
    response={200: bytes, **ERRORS},
    auth=READ,
    url_name="attempt_files",
    openapi_extra={
        "responses": {
            "200": {
                "description": "the files as stored with the attempt",
                "content": {"application/gzip": {"schema": {"type": "string", "format": "binary"}}},
            }
        }
    },
)
def attempt_files(request: HttpRequest, attempt_id: int) -> HttpResponse:
    """The files a Submit graded, exactly as stored (tar.gz)."""
    attempt = exercise_selectors.attempt_get_for_viewer(
        user=user_of(request), attempt_id=attempt_id
    )
    files = exercise_selectors.attempt_files(attempt=attempt)
    response = HttpResponse(bytes(files.archive), content_type="application/gzip")
    name = f"{attempt.exercise.slug}-attempt-{attempt.pk}-{files.sha256[:12]}.tar.gz"
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    response["X-Content-SHA256"] = files.sha256
    return response
