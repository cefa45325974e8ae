"""For instructors: their cohorts, rosters, assignments and gradebooks."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from ninja import Query, Router

from labplatform.api.auth import COHORT_ADMIN, user_of
from labplatform.api.routers.common import ERRORS, Page, PageParams, paginate
from labplatform.api.schemas import AssignmentOut, CohortOut, GradebookOut, MemberOut
from labplatform.api.selectors import cohort_get_for_instructor, cohort_gradebook, cohort_members
from labplatform.courses.grades.gradebook import gradebook_csv_text, gradebook_for_cohort
from labplatform.courses.selectors import cohort_list_for_instructor

router = Router(tags=["cohorts"])


@router.get("/cohorts", response={200: Page[CohortOut], **ERRORS}, auth=COHORT_ADMIN)
def cohort_list(request: HttpRequest, page: Query[PageParams]) -> Page[CohortOut]:
    """The cohorts you teach."""
    return paginate(cohort_list_for_instructor(user=user_of(request)), page, CohortOut.of)


@router.get(
    "/cohorts/{cohort_id}/roster", response={200: list[MemberOut], **ERRORS}, auth=COHORT_ADMIN
)
def cohort_roster(request: HttpRequest, cohort_id: int) -> list[MemberOut]:
    """Everyone enrolled, instructors first."""
    cohort = cohort_get_for_instructor(user=user_of(request), cohort_id=cohort_id)
    return cohort_members(cohort=cohort)


@router.get(
    "/cohorts/{cohort_id}/assignments",
    response={200: list[AssignmentOut], **ERRORS},
    auth=COHORT_ADMIN,
)
def cohort_assignments(request: HttpRequest, cohort_id: int) -> list[AssignmentOut]:
    cohort = cohort_get_for_instructor(user=user_of(request), cohort_id=cohort_id)
    assignments = cohort.assignments.select_related("exercise", "cohort__course")
    return [AssignmentOut.of(a) for a in assignments.order_by("due_at", "id")]


@router.get(
    "/cohorts/{cohort_id}/gradebook", response={200: GradebookOut, **ERRORS}, auth=COHORT_ADMIN
)
def cohort_gradebook_json(request: HttpRequest, cohort_id: int) -> GradebookOut:
    """Each student's counted Submit per assignment (the latest graded one on
    time, judged by their own window with any extension, else the latest late
    one), its raw score and its final score: after the late policy's penalty,
    or the instructor's override."""
    cohort = cohort_get_for_instructor(user=user_of(request), cohort_id=cohort_id)
    return cohort_gradebook(cohort=cohort)


@router.get(
    "/cohorts/{cohort_id}/gradebook.csv",
    response={200: str, **ERRORS},
    auth=COHORT_ADMIN,
    openapi_extra={
        "responses": {
            "200": {
                "description": "one row per student, one column per exercise, then the total",
                "content": {"text/csv": {"schema": {"type": "string"}}},
            }
        }
    },
)
def cohort_gradebook_csv(request: HttpRequest, cohort_id: int) -> HttpResponse:
    """The gradebook as CSV, exactly as the gradebook page downloads it:
    Username, Email, Last name, First name, Student ID, one column per
    assignment ("<title> [<slug>]") with the final score (after the late
    policy, extensions and overrides; blank: no counted Submit), Total."""
    cohort = cohort_get_for_instructor(user=user_of(request), cohort_id=cohort_id)
    text = gradebook_csv_text(gradebook_for_cohort(cohort=cohort))
    response = HttpResponse(text, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="gradebook-{cohort.slug}.csv"'
    return response
