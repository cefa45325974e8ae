"""Reads of the API app, scoped to the user asking: other people's things are 404."""

from __future__ import annotations

from typing import Any

from django.db.models import Q, QuerySet
from django.http import Http404

from exercises.models import Attempt
from labplatform.accounts.models import User
from labplatform.api.models import ApiToken, WebhookDelivery, WebhookEndpoint, WebhookEvent
from labplatform.api.schemas import (
    AttemptOut,
    CohortOut,
    GradebookOut,
    GradebookRow,
    GradeCell,
    MemberOut,
)
from labplatform.courses.grades.gradebook import gradebook_for_cohort
from labplatform.courses.models import Cohort, Enrolment, Role
from labplatform.courses.selectors import cohort_list_for_instructor
from vms.models import LabVM, VMKind


def token_list_for_user(*, user: User) -> QuerySet[ApiToken]:
    return ApiToken.objects.filter(user=user).order_by("-created_at", "-id")


def token_get_for_user(*, user: User, token_id: int) -> ApiToken:
    token = ApiToken.objects.filter(pk=token_id, user=user).first()
    if token is None:
        raise Http404("No such token")
    return token


def lab_list_for_owner(*, user: User) -> QuerySet[LabVM]:
    return (
        LabVM.objects.filter(owner=user, kind=VMKind.LAB)
        .select_related("exercise")
        .order_by("-created_at")
    )


def attempt_list_for_student(*, user: User) -> QuerySet[Attempt]:
    return (
        Attempt.objects.filter(student=user)
        .select_related("exercise", "student", "files")
        .defer("files__archive")
        .prefetch_related("results")
        .order_by("-created_at", "-id")
    )


def attempt_detail_payload(attempt: Attempt) -> dict[str, Any]:
    """An attempt as the API and its webhooks show it (one shape for both)."""
    return AttemptOut.of(attempt).model_dump(mode="json")


def cohort_get_for_instructor(*, user: User, cohort_id: int) -> Cohort:
    cohort = cohort_list_for_instructor(user=user).filter(pk=cohort_id).first()
    if cohort is None:
        raise Http404("No such cohort")
    return cohort


def cohort_members(*, cohort: Cohort) -> list[MemberOut]:
    enrolments = (
        Enrolment.objects.filter(cohort=cohort)
        .select_related("user")
        .order_by("role", "user__username")
    )
    return [
        MemberOut(
            username=e.user.username,
            name=e.user.get_full_name(),
            email=e.user.email,
            role=e.role,
        )
        for e in enrolments
    ]


def cohort_gradebook(*, cohort: Cohort) -> GradebookOut:
    """Each student's counted Submit per assignment and its final score
    (labplatform.courses.grades.gradebook: the rule the pages use), and
    their totals."""
    book = gradebook_for_cohort(cohort=cohort)
    rows = []
    for row in book.rows:
        cells = [
            GradeCell(
                exercise=cell.assignment.exercise.slug,
                attempt_id=cell.attempt.pk if cell.attempt else None,
                score=cell.raw_score,
                max_score=cell.max_score,
                is_late=cell.is_late,
                final_score=float(cell.final_score) if cell.final_score is not None else None,
                penalty_percent=float(cell.penalty_percent),
                overridden=cell.override is not None,
                extended=cell.extended,
            )
            for cell in row.cells
        ]
        rows.append(
            GradebookRow(
                username=row.student.username,
                name=row.student.get_full_name(),
                grades=cells,
                total=sum(c.score or 0 for c in cells),
                final_total=float(row.total),
            )
        )
    return GradebookOut(
        cohort=CohortOut.of(cohort),
        exercises=[a.exercise.slug for a in book.assignments],
        rows=rows,
    )


def webhook_endpoint_list_for_user(*, user: User) -> QuerySet[WebhookEndpoint]:
    return WebhookEndpoint.objects.filter(owner=user).select_related("cohort__course")


def webhook_endpoint_get_for_user(*, user: User, endpoint_id: int) -> WebhookEndpoint:
    endpoint = webhook_endpoint_list_for_user(user=user).filter(pk=endpoint_id).first()
    if endpoint is None:
        raise Http404("No such webhook")
    return endpoint


def webhook_delivery_list(*, endpoint: WebhookEndpoint) -> QuerySet[WebhookDelivery]:
    """An endpoint's deliveries, newest first."""
    return endpoint.deliveries.order_by("-created_at", "-id")


def webhook_deliveries(*, endpoint: WebhookEndpoint, limit: int = 20) -> list[WebhookDelivery]:
    return list(webhook_delivery_list(endpoint=endpoint)[:limit])


def webhook_endpoints_for_attempt(*, attempt: Attempt) -> list[WebhookEndpoint]:
    """The student's own endpoints, and those of the cohort the attempt was
    made in whose owner still teaches it."""
    cohort_id = attempt.assignment.cohort_id if attempt.assignment is not None else None
    mine = Q(owner_id=attempt.student_id, cohort__isnull=True)
    theirs = (
        Q(
            cohort_id=cohort_id,
            owner__enrolments__cohort_id=cohort_id,
            owner__enrolments__role=Role.INSTRUCTOR,
        )
        if cohort_id is not None
        else Q(pk__in=[])
    )
    endpoints = WebhookEndpoint.objects.filter(mine | theirs, is_active=True).distinct()
    return [e for e in endpoints if e.wants(WebhookEvent.ATTEMPT_FINISHED)]


def webhook_endpoints_for_lab(*, vm: LabVM) -> list[WebhookEndpoint]:
    """The owner's own endpoints that asked for lab state changes."""
    endpoints = WebhookEndpoint.objects.filter(owner_id=vm.owner_id, cohort__isnull=True)
    return [e for e in endpoints.filter(is_active=True) if e.wants(WebhookEvent.LAB_STATE_CHANGED)]
