"""The API's bodies: one pydantic schema per shape, built from the models by
explicit constructors (no attribute magic), so the OpenAPI schema is exactly
what is sent."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from django.urls import reverse
from ninja import Schema
from pydantic import Field, field_validator

from exercises.models import Attempt, AttemptKind, AttemptStatus, CheckResult, Exercise
from labplatform.api.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint
from labplatform.courses.models import Assignment, AssignmentStatus, Cohort
from vms.models import LabVM, VMState


class Problem(Schema):
    """RFC 9457 problem details; ``code`` is stable, ``detail`` is for people."""

    type: str
    title: str
    status: int
    detail: str
    code: str


class ArtifactOut(Schema):
    path: str = Field(description="where the files live in the guest, e.g. /root/hello")
    include: list[str]
    max_bytes: int
    max_files: int


class AssignmentOut(Schema):
    id: int
    cohort_id: int
    cohort: str
    course: str
    exercise: str
    opens_at: datetime
    due_at: datetime
    closes_at: datetime
    status: AssignmentStatus

    @classmethod
    def of(cls, assignment: Assignment) -> AssignmentOut:
        return cls(
            id=assignment.pk,
            cohort_id=assignment.cohort_id,
            cohort=assignment.cohort.name,
            course=assignment.cohort.course.title,
            exercise=assignment.exercise.slug,
            opens_at=assignment.opens_at,
            due_at=assignment.due_at,
            closes_at=assignment.closes_at,
            status=assignment.status(),
        )


class ExerciseOut(Schema):
    slug: str
    title: str
    topic: str
    difficulty: str
    summary: str
    points: int
    assignment: AssignmentOut

    @classmethod
    def of(cls, assignment: Assignment) -> ExerciseOut:
        exercise: Exercise = assignment.exercise
        return cls(
            slug=exercise.slug,
            title=exercise.title,
            topic=exercise.topic,
            difficulty=exercise.difficulty,
            summary=exercise.summary,
            points=exercise.points,
            assignment=AssignmentOut.of(assignment),
        )


class ExerciseDetailOut(ExerciseOut):
    instructions_md: str
    artifacts: list[ArtifactOut] = Field(
        description="what a Submit grades: upload a tar.gz with these paths (without the "
        "leading slash) as its members"
    )


class LabOut(Schema):
    id: str
    exercise: str
    state: VMState
    state_label: str
    progress: str
    error_code: str
    error_message: str = Field(description="why the VM failed, for people")
    state_changed_at: datetime
    expires_at: datetime | None

    @classmethod
    def of(cls, vm: LabVM) -> LabOut:
        return cls(
            id=str(vm.pk),
            exercise=vm.exercise.slug,
            state=VMState(vm.state),
            state_label=vm.get_state_display(),
            progress=vm.progress,
            error_code=vm.error_code,
            error_message=vm.error_message,
            state_changed_at=vm.state_changed_at,
            expires_at=vm.expires_at,
        )


class CheckResultOut(Schema):
    check_id: str
    title: str
    passed: bool
    points: int
    max_points: int
    message: str
    hidden: bool

    @classmethod
    def of(cls, result: CheckResult) -> CheckResultOut:
        return cls(
            check_id=result.check_id,
            title=result.title,
            passed=result.passed,
            points=result.points,
            max_points=result.max_points,
            message=result.message,
            hidden=result.hidden,
        )


class FilesOut(Schema):
    url: str = Field(description="the graded files as stored, a tar.gz (same token)")
    sha256: str
    size: int
    count: int
    notes: list[str] = Field(description="what was left out, and why")


class AttemptOut(Schema):
    id: int
    exercise: str
    student: str
    kind: AttemptKind
    status: AttemptStatus
    status_label: str
    is_finished: bool
    passed_all: bool
    score: int
    max_score: int
    reason: str
    is_late: bool
    kernel_log: str = Field(description="oops/BUG/panic lines seen while grading")
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    results: list[CheckResultOut]
    files: FilesOut | None
    regrade_of: int | None = Field(description="the Submit this attempt grades again, if any")

    @classmethod
    def of(cls, attempt: Attempt) -> AttemptOut:
        files = attempt.files if attempt.files_id is not None else None
        return cls(
            id=attempt.pk,
            exercise=attempt.exercise.slug,
            student=attempt.student.username,
            kind=AttemptKind(attempt.kind),
            status=AttemptStatus(attempt.status),
            status_label=attempt.get_status_display(),
            is_finished=attempt.is_finished,
            passed_all=attempt.passed_all,
            score=attempt.score,
            max_score=attempt.max_score,
            reason=attempt.reason,
            is_late=attempt.is_late,
            kernel_log=attempt.kernel_log,
            created_at=attempt.created_at,
            started_at=attempt.started_at,
            finished_at=attempt.finished_at,
            results=[CheckResultOut.of(r) for r in attempt.results.all()],
            files=None
            if files is None
            else FilesOut(
                url=reverse("api-v1:attempt_files", args=[attempt.pk]),
                sha256=files.sha256,
                size=files.size,
                count=len(files.listing),
                notes=[str(n) for n in files.notes],
            ),
            regrade_of=attempt.regrade_of_id,
        )


# Query-string filters: refused with 422 when malformed, never passed on to
# the database (PostgreSQL refuses a NUL in text, SQLite does not).
SlugFilter = Annotated[str, Field(max_length=64, pattern=r"^[-a-zA-Z0-9_]+$")]
TextFilter = Annotated[str, Field(max_length=64, pattern=r"^[^\x00]*$")]


class AttemptIn(Schema):
    kind: Literal["check", "submit"] = Field(
        description="check: the checker runs in your lab VM (advisory); submit: your declared "
        "files are collected from your lab VM now and graded in a clean guest"
    )


class CohortOut(Schema):
    id: int
    slug: str
    name: str
    course: str
    course_slug: str

    @classmethod
    def of(cls, cohort: Cohort) -> CohortOut:
        return cls(
            id=cohort.pk,
            slug=cohort.slug,
            name=cohort.name,
            course=cohort.course.title,
            course_slug=cohort.course.slug,
        )


class MemberOut(Schema):
    username: str
    name: str
    email: str
    role: str


class GradeCell(Schema):
    exercise: str
    attempt_id: int | None
    score: int | None = Field(description="the counted Submit's raw score")
    max_score: int
    is_late: bool
    final_score: float | None = Field(
        description="what the student gets: the override if any, else the score after the late "
        "penalty; null: nothing counted"
    )
    penalty_percent: float = Field(description="what the late policy took, in percent")
    overridden: bool = Field(description="an instructor's override sets final_score")
    extended: bool = Field(description="the student has an extension")


class GradebookRow(Schema):
    username: str
    name: str
    grades: list[GradeCell]
    total: int = Field(description="the sum of the raw scores")
    final_total: float = Field(description="the sum of the final scores")


class GradebookOut(Schema):
    cohort: CohortOut
    exercises: list[str]
    rows: list[GradebookRow]


# -- webhooks -----------------------------------------------------------------------

SubscribableEvent = Literal["attempt.finished", "lab.state_changed"]  # models.SUBSCRIBABLE


def _attempts_only() -> list[SubscribableEvent]:
    return ["attempt.finished"]


class WebhookIn(Schema):
    url: str = Field(
        max_length=500,
        description="an http(s) URL of a public receiver (no private, loopback or link-local "
        "address; no user name or password); redirects are not followed",
    )
    description: str = Field("", max_length=200, description="what it is for")
    events: list[SubscribableEvent] = Field(
        default_factory=_attempts_only,
        min_length=1,
        max_length=2,
        description="lab.state_changed is sent for your own labs only",
    )
    cohort_id: int | None = Field(
        None,
        description="every attempt in this cohort instead of your own (instructors of the "
        "cohort, with a token that also has the cohort-admin scope)",
    )

    @field_validator("url", "description")
    @classmethod
    def _printable(cls, value: str) -> str:
        # PostgreSQL refuses a NUL in text; no other control character belongs here either.
        if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
            raise ValueError("must not contain control characters")
        return value


class WebhookOut(Schema):
    id: int
    url: str
    description: str
    events: list[str]
    cohort_id: int | None
    cohort: str | None = Field(description="the cohort's name, if the webhook is a cohort's")
    is_active: bool
    created_at: datetime

    @classmethod
    def of(cls, endpoint: WebhookEndpoint) -> WebhookOut:
        return cls(**cls.fields_of(endpoint))

    @staticmethod
    def fields_of(endpoint: WebhookEndpoint) -> dict[str, Any]:
        return {
            "id": endpoint.pk,
            "url": endpoint.url,
            "description": endpoint.description,
            "events": list(endpoint.events),
            "cohort_id": endpoint.cohort_id,
            "cohort": str(endpoint.cohort.name) if endpoint.cohort is not None else None,
            "is_active": endpoint.is_active,
            "created_at": endpoint.created_at,
        }


class WebhookCreatedOut(WebhookOut):
    secret: str = Field(
        description="the Standard Webhooks signing secret (whsec_...): shown in this answer "
        "only, keep it"
    )

    @classmethod
    def of(cls, endpoint: WebhookEndpoint) -> WebhookCreatedOut:
        return cls(**cls.fields_of(endpoint), secret=endpoint.secret)


class DeliveryOut(Schema):
    id: int
    event_id: str = Field(description="the webhook-id header, the same on every try")
    event_type: str
    status: DeliveryStatus
    tries: int
    last_status_code: int | None = Field(description="the receiver's last answer, if any")
    last_error: str
    created_at: datetime
    delivered_at: datetime | None

    @classmethod
    def of(cls, delivery: WebhookDelivery) -> DeliveryOut:
        return cls(
            id=delivery.pk,
            event_id=delivery.event_id,
            event_type=delivery.event_type,
            status=DeliveryStatus(delivery.status),
            tries=delivery.tries,
            last_status_code=delivery.last_status_code,
            last_error=delivery.last_error,
            created_at=delivery.created_at,
            delivered_at=delivery.delivered_at,
        )
