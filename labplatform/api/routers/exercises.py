from __future__ import annotations

from django.http import HttpRequest
from ninja import Query, Router

from exercises.models import ExerciseVersion
from labplatform.api.auth import READ, user_of
from labplatform.api.routers.common import ERRORS, Page, PageParams, paginate
from labplatform.api.schemas import ArtifactOut, ExerciseDetailOut, ExerciseOut, TextFilter
from labplatform.courses.selectors import assignment_get_for_student, assignment_list_for_student

router = Router(tags=["exercises"])


@router.get("/exercises", response={200: Page[ExerciseOut], **ERRORS}, auth=READ)
def exercise_list(
    request: HttpRequest, page: Query[PageParams], topic: TextFilter | None = None
) -> Page[ExerciseOut]:
    """The exercises assigned to you, soonest due first; ``topic`` filters."""
    assignments = assignment_list_for_student(user=user_of(request))
    if topic:
        assignments = assignments.filter(exercise__topic=topic)
    return paginate(assignments, page, ExerciseOut.of)


@router.get("/exercises/{slug}", response={200: ExerciseDetailOut, **ERRORS}, auth=READ)
def exercise_detail(request: HttpRequest, slug: str) -> ExerciseDetailOut:
    """One of your exercises, with its instructions and what a Submit grades."""
    assignment = assignment_get_for_student(user=user_of(request), exercise_slug=slug)
    exercise = assignment.exercise
    versions = ExerciseVersion.objects.defer("bundle")
    version_id = exercise.current_version_id
    version = versions.filter(pk=version_id).first() if version_id is not None else None
    artifacts = version.parsed_manifest.grading.artifacts if version is not None else []
    base = ExerciseOut.of(assignment)
    return ExerciseDetailOut(
        **base.model_dump(exclude={"assignment"}),
        assignment=base.assignment,
        instructions_md=version.instructions_md if version is not None else exercise.instructions,
        artifacts=[
            ArtifactOut(
                path=a.path, include=list(a.include), max_bytes=a.max_bytes, max_files=a.max_files
            )
            for a in artifacts
        ],
    )
