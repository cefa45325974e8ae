"""The progress board of a cohort, its live cells, and a student's drill-down."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.template.loader import render_to_string
from django.views.decorators.http import require_GET

from labplatform.accounts.models import User
from labplatform.courses.access import Can, access_cohort, role_allows, staff_role
from labplatform.courses.board.selectors import (
    CellState,
    board_cell_get,
    board_for_cohort,
    cohort_student_get,
    student_work_for,
)
from labplatform.courses.models import Cohort


def _user(request: HttpRequest) -> User:
    assert isinstance(request.user, User)
    return request.user


def _int_param(request: HttpRequest, name: str) -> int:
    try:
        return int(request.GET.get(name, ""))
    except ValueError:
        raise Http404(f"No such {name}") from None


def _can(user: User, cohort: Cohort, need: Can) -> bool:
    role = staff_role(user=user, cohort=cohort)
    return role is not None and role_allows(role, need)


@login_required
@require_GET
def cohort_board(request: HttpRequest, cohort_id: int) -> HttpResponse:
    cohort = access_cohort(user=_user(request), cohort_id=cohort_id, need=Can.VIEW)
    board = board_for_cohort(cohort=cohort)
    return render(
        request,
        "courses/board/board.html",
        {"cohort": cohort, "board": board, "states": list(CellState)},
    )


@login_required
@require_GET
def board_cell(request: HttpRequest, cohort_id: int) -> JsonResponse:
    """One cell of the board, rendered as on the page, and its row's total:
    what the page fetches when a live event says the cell changed."""
    cohort = access_cohort(user=_user(request), cohort_id=cohort_id, need=Can.VIEW)
    row, cell = board_cell_get(
        cohort=cohort,
        student_id=_int_param(request, "student"),
        assignment_id=_int_param(request, "assignment"),
    )
    html = render_to_string(
        "courses/board/_cell.html", {"cohort": cohort, "row": row, "cell": cell}, request
    )
    return JsonResponse(
        {
            "student": row.student.pk,
            "assignment": cell.grade.assignment.pk,
            "state": cell.state.value,
            "total": str(row.total),
            "html": html,
        }
    )


@login_required
@require_GET
def student_work(request: HttpRequest, cohort_id: int, student_id: int) -> HttpResponse:
    user = _user(request)
    cohort = access_cohort(user=user, cohort_id=cohort_id, need=Can.VIEW)
    student = cohort_student_get(cohort=cohort, student_id=student_id)
    return render(
        request,
        "courses/board/student_work.html",
        {
            "cohort": cohort,
            "student": student,
            "work": student_work_for(cohort=cohort, student=student),
            "can_comment": _can(user, cohort, Can.COMMENT),
            "can_watch": _can(user, cohort, Can.WATCH),
        },
    )
